//! Apply logic of passkeys: a pool's WebAuthn setting, registrations and
//! sign-ins.
//!
//! The proposer verifies attestations and assertions (webauthn-rs); what
//! must hold on every node regardless of which node verified is decided
//! here:
//! - a registration completes once, for the challenge its user started;
//! - a sign-in challenge is answered once, cluster-wide (`SpentChallenges`);
//! - the signature counter only moves forward. Two nodes may each verify
//!   an assertion against the counter they last applied; only here are
//!   the two ordered, so a cloned authenticator replaying a lower counter
//!   is refused however the sign-ins were spread.

use serde::{Deserialize, Serialize};

use super::spent::prune_expired;
use super::{not_found, Apply, ApplyError, Outcome, Rejection};
use crate::model::webauthn::{
    PendingRegistration, WebAuthnConfig, WebAuthnCredential, MAX_CREDENTIALS_PER_USER, MAX_CREDENTIAL_ID_BYTES,
    MAX_NAME_CHARS, MAX_REGISTRATION_JSON,
};
use crate::store::keys::Table;
use crate::store::webauthn::{credential_key, pending_key, spent_challenge_key, user_credentials_prefix};
use crate::store::{codec, SmBatch, Store, StoreError};

/// Longest credential id in base64url (of [`MAX_CREDENTIAL_ID_BYTES`]).
const MAX_CREDENTIAL_ID_CHARS: usize = MAX_CREDENTIAL_ID_BYTES.div_ceil(3) * 4;

fn malformed(what: &str) -> Rejection {
    Rejection::Invalid(format!("malformed {what}"))
}

fn ids_ok(pool_id: &str, sub: &str) -> bool {
    !pool_id.is_empty() && pool_id.len() <= 128 && !sub.is_empty() && sub.len() <= 128
}

fn credential_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CREDENTIAL_ID_CHARS
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Sets a pool's passkey setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetPoolWebAuthn {
    /// The user pool.
    pub pool_id: String,
    /// The setting as the proposer validated it.
    pub config: WebAuthnConfig,
}

impl Apply for SetPoolWebAuthn {
    type Output = ();

    fn validate(&self) -> Result<(), Rejection> {
        self.config.validate().map_err(|e| Rejection::Invalid(e.reason))
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if store.pool(&self.pool_id)?.is_none() {
            return Ok(not_found("user pool", &self.pool_id));
        }
        batch.put(
            Table::PoolWebAuthn,
            self.pool_id.as_bytes(),
            &codec::encode(&self.config)?,
        )?;
        Ok(Outcome::Done)
    }
}

/// Keeps a started registration (`StartWebAuthnRegistration`), replacing
/// one the user started before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartWebAuthnRegistration {
    /// The user pool.
    pub pool_id: String,
    /// The user.
    pub sub: String,
    /// What the completion must match.
    pub pending: PendingRegistration,
}

impl Apply for StartWebAuthnRegistration {
    type Output = ();

    fn validate(&self) -> Result<(), Rejection> {
        let p = &self.pending;
        if !ids_ok(&self.pool_id, &self.sub)
            || p.id.len() != 32
            || p.client_id.len() > 128
            || p.relying_party_id.len() > 253
            || p.state_json.len() > MAX_REGISTRATION_JSON
        {
            return Err(malformed("passkey registration"));
        }
        Ok(())
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if store.user(&self.pool_id, &self.sub)?.is_none() {
            return Ok(not_found("user", &self.sub));
        }
        batch.put(
            Table::WebAuthnPending,
            &pending_key(&self.pool_id, &self.sub),
            &codec::encode(&self.pending)?,
        )?;
        Ok(Outcome::Done)
    }
}

/// Stores a credential whose attestation the proposer verified against
/// the pending registration `pending_id`, and spends that registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddWebAuthnCredential {
    /// The user pool.
    pub pool_id: String,
    /// The user.
    pub sub: String,
    /// The pending registration the proposer verified against.
    pub pending_id: String,
    /// The credential to store.
    pub credential: WebAuthnCredential,
    /// The proposer's clock (Unix ms).
    pub now: i64,
}

impl Apply for AddWebAuthnCredential {
    type Output = ();

    fn validate(&self) -> Result<(), Rejection> {
        let c = &self.credential;
        if !ids_ok(&self.pool_id, &self.sub)
            || self.pending_id.len() != 32
            || !credential_id_ok(&c.credential_id)
            || c.name.chars().count() > MAX_NAME_CHARS
            || c.credential_json.len() > 2 * MAX_REGISTRATION_JSON
            || c.transports.len() > 16
            || c.transports.iter().any(|t| t.len() > 32)
            || c.aaguid.len() > 36
            || c.attestation_format.len() > 32
            || c.authenticator_attachment.len() > 32
            || c.relying_party_id.len() > 253
        {
            return Err(malformed("passkey"));
        }
        Ok(())
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if store.user(&self.pool_id, &self.sub)?.is_none() {
            return Ok(not_found("user", &self.sub));
        }
        let live = store
            .web_authn_pending(&self.pool_id, &self.sub)?
            .is_some_and(|p| p.id == self.pending_id && p.expires_at > self.now);
        if !live {
            return Ok(not_found("passkey registration challenge", &self.pending_id));
        }
        // Spent whatever follows: a failed completion is not retried with
        // the same challenge.
        batch.delete(Table::WebAuthnPending, &pending_key(&self.pool_id, &self.sub))?;
        let existing = store.web_authn_credentials(&self.pool_id, &self.sub)?;
        if existing
            .iter()
            .any(|c| c.credential_id == self.credential.credential_id)
        {
            return Ok(Outcome::Rejected(Rejection::AlreadyExists {
                kind: "passkey".into(),
                id: self.credential.credential_id.clone(),
            }));
        }
        if existing.len() >= MAX_CREDENTIALS_PER_USER {
            return Ok(Outcome::Rejected(Rejection::LimitExceeded(format!(
                "a user has at most {MAX_CREDENTIALS_PER_USER} passkeys; delete one first"
            ))));
        }
        let mut c = self.credential.clone();
        c.created_at = self.now;
        c.last_used_at = 0;
        batch.put(
            Table::WebAuthnCredentials,
            &credential_key(&self.pool_id, &self.sub, &c.credential_id),
            &codec::encode(&c)?,
        )?;
        Ok(Outcome::Done)
    }
}

/// A sign-in with a passkey whose assertion the proposer verified: spends
/// the challenge and advances the signature counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UseWebAuthnCredential {
    /// The user pool.
    pub pool_id: String,
    /// The user.
    pub sub: String,
    /// The credential that signed.
    pub credential_id: String,
    /// The counter the assertion carries.
    pub sign_count: u32,
    /// The backup state the assertion carries.
    pub backup_state: bool,
    /// The challenge's id (from its signed session).
    pub challenge_id: String,
    /// When the challenge expires (Unix ms); its spend is kept until then.
    pub challenge_expires_at: i64,
    /// The proposer's clock (Unix ms).
    pub now: i64,
}

impl Apply for UseWebAuthnCredential {
    type Output = ();

    fn validate(&self) -> Result<(), Rejection> {
        if !ids_ok(&self.pool_id, &self.sub)
            || !credential_id_ok(&self.credential_id)
            || self.challenge_id.len() != 32
            || !self.challenge_id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(malformed("passkey sign-in"));
        }
        Ok(())
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if store.pool(&self.pool_id)?.is_none() {
            return Ok(not_found("user pool", &self.pool_id));
        }
        if !spend_challenge(
            store,
            batch,
            &self.pool_id,
            self.challenge_expires_at,
            &self.challenge_id,
            self.now,
        )? {
            return Ok(Outcome::Rejected(Rejection::ResourceConflict(
                "the passkey challenge was already answered or has expired; sign in again".into(),
            )));
        }
        let Some(mut c) = store.web_authn_credential(&self.pool_id, &self.sub, &self.credential_id)? else {
            return Ok(not_found("passkey", &self.credential_id));
        };
        // WebAuthn §6.1.1: a counter that does not rise, where either side
        // counts, means two authenticators hold the key.
        if (self.sign_count > 0 || c.sign_count > 0) && self.sign_count <= c.sign_count {
            return Ok(Outcome::Rejected(Rejection::CounterRegressed {
                stored: c.sign_count,
                presented: self.sign_count,
            }));
        }
        c.sign_count = self.sign_count;
        c.backup_state = self.backup_state;
        c.last_used_at = self.now;
        batch.put(
            Table::WebAuthnCredentials,
            &credential_key(&self.pool_id, &self.sub, &self.credential_id),
            &codec::encode(&c)?,
        )?;
        Ok(Outcome::Done)
    }
}

/// Deletes one of a user's passkeys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteWebAuthnCredential {
    /// The user pool.
    pub pool_id: String,
    /// The user.
    pub sub: String,
    /// The credential.
    pub credential_id: String,
}

impl Apply for DeleteWebAuthnCredential {
    type Output = ();

    fn validate(&self) -> Result<(), Rejection> {
        if !ids_ok(&self.pool_id, &self.sub) || self.credential_id.len() > MAX_CREDENTIAL_ID_CHARS {
            return Err(malformed("passkey deletion"));
        }
        Ok(())
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if store
            .web_authn_credential(&self.pool_id, &self.sub, &self.credential_id)?
            .is_none()
        {
            return Ok(not_found("passkey", &self.credential_id));
        }
        batch.delete(
            Table::WebAuthnCredentials,
            &credential_key(&self.pool_id, &self.sub, &self.credential_id),
        )?;
        Ok(Outcome::Done)
    }
}

/// Marks a sign-in challenge spent, pruning expired spends first. False
/// when it was spent already or has expired.
fn spend_challenge(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    expires_at: i64,
    id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    if expires_at <= now || store.challenge_spent(pool_id, expires_at, id)? {
        return Ok(false);
    }
    prune_expired(store, batch, Table::SpentChallenges, pool_id, now)?;
    batch.put(
        Table::SpentChallenges,
        &spent_challenge_key(pool_id, expires_at, id),
        &[],
    )?;
    Ok(true)
}

/// Deletes every passkey and pending registration of a user (with the
/// user).
pub(super) fn drop_credentials(batch: &mut SmBatch<'_>, pool_id: &str, sub: &str) -> Result<(), StoreError> {
    batch.delete_prefix(Table::WebAuthnCredentials, &user_credentials_prefix(pool_id, sub))?;
    batch.delete(Table::WebAuthnPending, &pending_key(pool_id, sub))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testkit::{run, store_with_ann, POOL};
    use crate::command::Command;

    fn credential(id: &str) -> WebAuthnCredential {
        WebAuthnCredential {
            credential_id: id.into(),
            name: "Passkey".into(),
            relying_party_id: "example.com".into(),
            credential_json: "{}".into(),
            sign_count: 0,
            transports: vec!["internal".into()],
            aaguid: "00000000-0000-0000-0000-000000000000".into(),
            attestation_format: "none".into(),
            authenticator_attachment: String::new(),
            backup_eligible: false,
            backup_state: false,
            created_at: 0,
            last_used_at: 0,
        }
    }

    fn registered(sub: &str, id: &str) -> (tempfile::TempDir, Store) {
        let (dir, store) = store_with_ann();
        let pending = PendingRegistration {
            id: "p".repeat(32),
            client_id: "c".into(),
            relying_party_id: "example.com".into(),
            state_json: "{}".into(),
            expires_at: 10_000,
        };
        let start = StartWebAuthnRegistration {
            pool_id: POOL.into(),
            sub: sub.into(),
            pending,
        };
        assert_eq!(run(&store, Command::StartWebAuthnRegistration(start)), Outcome::Done);
        let add = AddWebAuthnCredential {
            pool_id: POOL.into(),
            sub: sub.into(),
            pending_id: "p".repeat(32),
            credential: credential(id),
            now: 1_000,
        };
        assert_eq!(run(&store, Command::AddWebAuthnCredential(add.clone())), Outcome::Done);
        // The registration was spent: the same completion again is refused.
        assert!(matches!(
            run(&store, Command::AddWebAuthnCredential(add)),
            Outcome::Rejected(Rejection::NotFound { .. })
        ));
        (dir, store)
    }

    fn use_cred(sub: &str, id: &str, count: u32, challenge: &str, now: i64) -> Command {
        Command::UseWebAuthnCredential(UseWebAuthnCredential {
            pool_id: POOL.into(),
            sub: sub.into(),
            credential_id: id.into(),
            sign_count: count,
            backup_state: false,
            challenge_id: challenge.into(),
            challenge_expires_at: now + 300_000,
            now,
        })
    }

    #[test]
    fn a_counter_only_moves_forward_and_a_challenge_is_answered_once() {
        let sub = "s1";
        let (_dir, store) = registered(sub, "cred1");
        let a = "a".repeat(32);
        let b = "b".repeat(32);
        let c = "c".repeat(32);
        assert_eq!(run(&store, use_cred(sub, "cred1", 5, &a, 2_000)), Outcome::Done);
        // The same challenge again (a replayed answer): refused.
        assert!(matches!(
            run(&store, use_cred(sub, "cred1", 6, &a, 2_000)),
            Outcome::Rejected(Rejection::ResourceConflict(_))
        ));
        // A lower or equal counter: a clone.
        assert_eq!(
            run(&store, use_cred(sub, "cred1", 5, &b, 3_000)),
            Outcome::Rejected(Rejection::CounterRegressed {
                stored: 5,
                presented: 5
            })
        );
        assert_eq!(
            store
                .web_authn_credential(POOL, sub, "cred1")
                .unwrap()
                .unwrap()
                .sign_count,
            5
        );
        assert_eq!(run(&store, use_cred(sub, "cred1", 9, &c, 4_000)), Outcome::Done);
        let stored = store.web_authn_credential(POOL, sub, "cred1").unwrap().unwrap();
        assert_eq!((stored.sign_count, stored.last_used_at), (9, 4_000));
    }

    #[test]
    fn a_deleted_credential_signs_in_nowhere() {
        let sub = "s1";
        let (_dir, store) = registered(sub, "cred1");
        let del = DeleteWebAuthnCredential {
            pool_id: POOL.into(),
            sub: sub.into(),
            credential_id: "cred1".into(),
        };
        assert_eq!(run(&store, Command::DeleteWebAuthnCredential(del)), Outcome::Done);
        assert!(matches!(
            run(&store, use_cred(sub, "cred1", 1, &"d".repeat(32), 2_000)),
            Outcome::Rejected(Rejection::NotFound { .. })
        ));
    }

    #[test]
    fn expired_spends_are_pruned_past_a_watermark_and_live_ones_kept() {
        let sub = "s1";
        let (_dir, store) = registered(sub, "cred1");
        let spent = |store: &Store| {
            store
                .sm_scan_prefix(
                    Table::SpentChallenges,
                    &crate::store::keys::pool_key(POOL, &[]),
                    None,
                    1000,
                )
                .unwrap()
                .len()
        };
        // 100 sign-ins whose challenges expire at 300_000 + i ms.
        for i in 0..100u32 {
            let id = format!("{i:032x}");
            assert_eq!(
                run(&store, use_cred(sub, "cred1", i + 1, &id, i64::from(i))),
                Outcome::Done
            );
        }
        assert_eq!(spent(&store), 100);
        // Once all have expired, each spend prunes at most 64, oldest
        // first, and leaves a watermark (one more key) behind.
        let late = 1_000_000;
        assert_eq!(
            run(&store, use_cred(sub, "cred1", 200, &"e".repeat(32), late)),
            Outcome::Done
        );
        assert_eq!(spent(&store), 100 - 64 + 1 + 1);
        assert_eq!(
            run(&store, use_cred(sub, "cred1", 201, &"f".repeat(32), late)),
            Outcome::Done
        );
        // The 36 left were pruned from the watermark on; the two live
        // spends and the watermark remain.
        assert_eq!(spent(&store), 3);
        // A live spend is still a replay.
        assert!(matches!(
            run(&store, use_cred(sub, "cred1", 202, &"f".repeat(32), late)),
            Outcome::Rejected(Rejection::ResourceConflict(_))
        ));
    }
}
