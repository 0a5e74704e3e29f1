//! Apply logic of token revocation and signing-key commands.

use super::{not_found, Outcome};
use super::{Apply, ApplyError};
use crate::model::app_client::AppClient;
use crate::model::cluster::{KeyState, SigningKeyRecord};
use crate::model::pool::UserPool;
use crate::model::pool_settings::TokenValidity;
use crate::model::user::User;
use crate::store::auth_state::KEY_ROTATION_KEY;
use crate::store::keys::{pool_key, Table};
use crate::store::{codec, SmBatch, Store, StoreError};
use serde::{Deserialize, Serialize};

pub(super) fn global_sign_out(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    sub: &str,
    at: i64,
) -> Result<Outcome, StoreError> {
    let Some(mut user) = store.user(pool_id, sub)? else {
        return Ok(not_found("user", sub));
    };
    user.tokens_revoked_before_ms = user.tokens_revoked_before_ms.max(at);
    batch.put(Table::Users, &pool_key(pool_id, sub.as_bytes()), &codec::encode(&user)?)?;
    Ok(Outcome::User(user))
}

pub(super) fn revoke(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    origin_jti: &str,
    expires_at: i64,
) -> Result<Outcome, StoreError> {
    if store.pool(pool_id)?.is_none() {
        return Ok(not_found("user pool", pool_id));
    }
    batch.put(
        Table::RevokedTokens,
        &pool_key(pool_id, origin_jti.as_bytes()),
        &codec::encode(&expires_at)?,
    )?;
    Ok(Outcome::Done)
}

/// Publishes a key as active. A key of a removed node is refused: node ids
/// are never reused, so such a record can only come from a node that should
/// no longer sign. A known kid is left as it is (a retired key never comes
/// back by being registered again).
pub(super) fn register_key(
    store: &Store,
    batch: &mut SmBatch<'_>,
    rec: &SigningKeyRecord,
) -> Result<Outcome, StoreError> {
    if store.is_retired(rec.node_id)? {
        return Ok(not_found("cluster member", &rec.node_id.to_string()));
    }
    if store.sm_get(Table::SigningKeys, rec.kid.as_bytes())?.is_none() {
        let fresh = SigningKeyRecord {
            state: KeyState::Active,
            stopped_signing_at: None,
            retire_at: None,
            ..rec.clone()
        };
        batch.put(Table::SigningKeys, rec.kid.as_bytes(), &codec::encode(&fresh)?)?;
    }
    Ok(Outcome::Done)
}

/// Smallest retiring period: a challenge session (3 minutes) plus the
/// verification leeway, for a cluster with no app client yet.
const MIN_RETIRING_MS: i64 = 180_000 + LEEWAY_MS;
/// The leeway verification allows on `exp`.
const LEEWAY_MS: i64 = crate::auth::verifier::DEFAULT_LEEWAY_SECS * 1000;

/// How long a key that stops signing now stays in the retiring state: the
/// longest lifetime (id, access or refresh) configured on any pool or app
/// client, plus the leeway on `exp`, so every token it signed has expired
/// when it is retired. `cap` (the proposer's `tokens.max_key_retiring_secs`,
/// for tests) bounds it. Reads pools and clients in key order, so every
/// node computes the same value.
fn retiring_period_ms(store: &Store, cap: Option<i64>) -> Result<i64, StoreError> {
    let longest =
        |v: &TokenValidity| i64::from(v.id_token_secs.max(v.access_token_secs).max(v.refresh_token_secs)) * 1000;
    let mut period = MIN_RETIRING_MS;
    for (_, bytes) in store.sm_scan(Table::Pools, None, usize::MAX)? {
        let pool: UserPool = codec::decode(&bytes)?;
        period = period.max(longest(&pool.settings.token_validity) + LEEWAY_MS);
    }
    for (_, bytes) in store.sm_scan(Table::AppClients, None, usize::MAX)? {
        let client: AppClient = codec::decode(&bytes)?;
        period = period.max(longest(&client.token_validity) + LEEWAY_MS);
    }
    Ok(match cap {
        Some(cap) => period.min(cap.max(0)),
        None => period,
    })
}

/// Stamps `rec` as retiring from `at` (an active key, or a removed node's
/// key not stamped yet); returns whether it changed.
fn start_retiring(rec: &mut SigningKeyRecord, at: i64, period_ms: i64) -> bool {
    if rec.state == KeyState::Retired || rec.stopped_signing_at.is_some() {
        return false;
    }
    rec.state = KeyState::Retiring;
    rec.stopped_signing_at = Some(at);
    rec.retire_at = Some(at.saturating_add(period_ms));
    true
}

/// A node stopped signing with `kid` at `at` (rotation): it verifies until
/// the retiring period has passed, then `ExpireSigningKeys` retires it.
pub(super) fn retire_key(
    store: &Store,
    batch: &mut SmBatch<'_>,
    kid: &str,
    at: i64,
    cap: Option<i64>,
) -> Result<Outcome, StoreError> {
    let Some(bytes) = store.sm_get(Table::SigningKeys, kid.as_bytes())? else {
        return Ok(not_found("signing key", kid));
    };
    let mut rec: SigningKeyRecord = codec::decode(&bytes)?;
    if start_retiring(&mut rec, at, retiring_period_ms(store, cap)?) {
        batch.put(Table::SigningKeys, kid.as_bytes(), &codec::encode(&rec)?)?;
    }
    Ok(Outcome::Done)
}

/// `RetireNode`: every active key of the node becomes retiring at once
/// (verify only). The command carries no time, so the retiring period
/// starts at the next `ExpireSigningKeys`, which every node's key
/// maintenance proposes within a second.
pub(super) fn retire_node_keys(store: &Store, batch: &mut SmBatch<'_>, node_id: u64) -> Result<(), StoreError> {
    for rec in store.signing_keys()? {
        if rec.node_id == node_id && rec.state == KeyState::Active {
            let rec = SigningKeyRecord {
                state: KeyState::Retiring,
                ..rec
            };
            batch.put(Table::SigningKeys, rec.kid.as_bytes(), &codec::encode(&rec)?)?;
        }
    }
    Ok(())
}

/// `ExpireSigningKeys`: at `now`, stamps the retiring period of removed
/// nodes' keys and retires every key whose period is over. Idempotent, so
/// any number of nodes may propose it for the same transition.
pub(super) fn expire_keys(
    store: &Store,
    batch: &mut SmBatch<'_>,
    now: i64,
    cap: Option<i64>,
) -> Result<Outcome, StoreError> {
    let mut period = None;
    for mut rec in store.signing_keys()? {
        let changed = match rec.state {
            KeyState::Retiring if rec.stopped_signing_at.is_none() => {
                let p = match period {
                    Some(p) => p,
                    None => *period.insert(retiring_period_ms(store, cap)?),
                };
                start_retiring(&mut rec, now, p)
            }
            KeyState::Retiring if rec.retire_at.is_some_and(|t| t <= now) => {
                rec.state = KeyState::Retired;
                true
            }
            _ => false,
        };
        if changed {
            batch.put(Table::SigningKeys, rec.kid.as_bytes(), &codec::encode(&rec)?)?;
        }
    }
    Ok(Outcome::Done)
}

pub(super) fn request_rotation(store: &Store, batch: &mut SmBatch<'_>, at: i64) -> Result<Outcome, StoreError> {
    let current = store.key_rotation_requested_at()?.unwrap_or(i64::MIN);
    batch.put(Table::Cluster, KEY_ROTATION_KEY, &codec::encode(&current.max(at))?)?;
    Ok(Outcome::Done)
}

/// Refuses every token of the user issued before `at` (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalSignOut {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// Unix ms chosen by the proposer; tokens issued before it are refused.
    pub at: i64,
}

impl Apply for GlobalSignOut {
    type Output = User;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(global_sign_out(store, batch, &self.pool_id, &self.sub, self.at)?)
    }
}
/// Revokes a refresh-token family and the tokens minted from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeToken {
    /// The pool the family belongs to.
    pub pool_id: String,
    /// `jti` of the refresh token that started the family; every token minted from it carries it.
    pub origin_jti: String,
    /// When the family's refresh token expires (Unix ms), after which the entry can be dropped.
    pub expires_at: i64,
}

impl Apply for RevokeToken {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(revoke(store, batch, &self.pool_id, &self.origin_jti, self.expires_at)?)
    }
}
/// Publishes a node's public signing key into the JWKS. Idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterSigningKey(pub SigningKeyRecord);

impl Apply for RegisterSigningKey {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(register_key(store, batch, &self.0)?)
    }
}
/// A node stopped signing with its old key at `at` (rotation): the key
/// becomes retiring (verify only) for the longest token lifetime of any
/// pool, bounded by `max_retiring_ms` (the proposer's test knob
/// `tokens.max_key_retiring_secs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetireSigningKey {
    /// The key that stopped signing.
    pub kid: String,
    /// When it stopped signing (Unix ms); the retiring period starts here.
    pub at: i64,
    /// Upper bound on the retiring period, from `tokens.max_key_retiring_secs`; `None` for no bound.
    pub max_retiring_ms: Option<i64>,
}

impl Apply for RetireSigningKey {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(retire_key(store, batch, &self.kid, self.at, self.max_retiring_ms)?)
    }
}
/// Asks every node to replace signing keys created before `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestKeyRotation {
    /// Unix ms chosen by the proposer; keys created before it are replaced.
    pub at: i64,
}

impl Apply for RequestKeyRotation {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(request_rotation(store, batch, self.at)?)
    }
}
/// The timed key transitions at `now`: starts the retiring period of
/// removed nodes' keys and retires keys whose period is over (out of the
/// JWKS, tokens refused). Any node's key maintenance may propose it;
/// applying it twice changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpireSigningKeys {
    /// The proposer's clock (Unix ms) the transitions are decided at.
    pub now: i64,
    /// Upper bound on the retiring period, as for [`RetireSigningKey`].
    pub max_retiring_ms: Option<i64>,
}

impl Apply for ExpireSigningKeys {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(expire_keys(store, batch, self.now, self.max_retiring_ms)?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Command, Outcome, Rejection};
    use crate::command::*;
    use crate::model::cluster::{ClusterInfo, KeyState, SigningKeyRecord};
    use crate::store::Store;

    fn run(store: &Store, cmd: impl Into<Command>) -> Outcome {
        let cmd: Command = cmd.into();
        let mut b = store.sm_batch();
        let out = cmd.apply(store, &mut b).unwrap();
        b.commit().unwrap();
        out
    }

    fn key(kid: &str, node_id: u64) -> SigningKeyRecord {
        SigningKeyRecord {
            kid: kid.into(),
            node_id,
            public_key: [7; 32],
            created_at: 1,
            // A proposer cannot register a key in another state.
            state: KeyState::Retiring,
            stopped_signing_at: Some(5),
            retire_at: Some(6),
        }
    }

    fn state(store: &Store, kid: &str) -> SigningKeyRecord {
        store
            .signing_keys()
            .unwrap()
            .into_iter()
            .find(|k| k.kid == kid)
            .unwrap()
    }

    fn setup() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        run(
            &store,
            InitCluster(ClusterInfo {
                cluster_id: "c".into(),
                public_url: "http://x".into(),
                root_token_sha256: [0; 32],
                created_at: 0,
            }),
        );
        (dir, store)
    }

    const DAY_MS: i64 = 86_400_000;

    #[test]
    fn rotated_key_retires_after_the_longest_lifetime_of_any_pool() {
        let (_d, store) = setup();
        let mut pool = crate::model::pool::UserPool {
            id: "local_a".into(),
            name: "n".into(),
            creation_date: 1,
            last_modified_date: 1,
            deletion_protection: false,
            settings: Default::default(),
        };
        pool.settings.token_validity.refresh_token_secs = 10 * 86_400;
        run(&store, CreateUserPool(pool));
        run(&store, RegisterSigningKey(key("n1-a", 1)));
        let k = state(&store, "n1-a");
        assert_eq!(
            (k.state, k.stopped_signing_at, k.retire_at),
            (KeyState::Active, None, None)
        );
        run(
            &store,
            &RetireSigningKey {
                kid: "n1-a".into(),
                at: 1_000,
                max_retiring_ms: None,
            },
        );
        let k = state(&store, "n1-a");
        assert_eq!(k.state, KeyState::Retiring);
        assert_eq!(k.stopped_signing_at, Some(1_000));
        // 10 days of refresh tokens plus the 5 s leeway on `exp`.
        assert_eq!(k.retire_at, Some(1_000 + 10 * DAY_MS + 5_000));
        assert!(k.verifies_at(1_000 + 10 * DAY_MS) && !k.verifies_at(1_000 + 10 * DAY_MS + 5_000));
        // Retiring again keeps the first stamp.
        run(
            &store,
            &RetireSigningKey {
                kid: "n1-a".into(),
                at: 9_000,
                max_retiring_ms: None,
            },
        );
        assert_eq!(state(&store, "n1-a").stopped_signing_at, Some(1_000));
        // Too early: nothing happens; on time: retired, for good.
        let expire = |now| ExpireSigningKeys {
            now,
            max_retiring_ms: None,
        };
        run(&store, expire(1_000 + 10 * DAY_MS));
        assert_eq!(state(&store, "n1-a").state, KeyState::Retiring);
        run(&store, expire(1_000 + 11 * DAY_MS));
        assert_eq!(state(&store, "n1-a").state, KeyState::Retired);
        run(&store, expire(1_000 + 12 * DAY_MS));
        run(&store, RegisterSigningKey(key("n1-a", 1)));
        assert_eq!(
            state(&store, "n1-a").state,
            KeyState::Retired,
            "a retired kid never comes back"
        );
    }

    #[test]
    fn removed_nodes_keys_retire_on_the_next_expiry_schedule() {
        let (_d, store) = setup();
        run(&store, RegisterSigningKey(key("n2-a", 2)));
        run(&store, RegisterSigningKey(key("n3-a", 3)));
        run(&store, &RetireNode { node_id: 3 });
        let k = state(&store, "n3-a");
        assert_eq!((k.state, k.stopped_signing_at), (KeyState::Retiring, None));
        assert!(!k.signs() && k.verifies_at(i64::MAX - 1));
        assert_eq!(state(&store, "n2-a").state, KeyState::Active);
        // The test bound shortens the period; no pool: the 3-minute floor.
        run(
            &store,
            &ExpireSigningKeys {
                now: 50_000,
                max_retiring_ms: Some(2_000),
            },
        );
        let k = state(&store, "n3-a");
        assert_eq!((k.stopped_signing_at, k.retire_at), (Some(50_000), Some(52_000)));
        run(
            &store,
            &ExpireSigningKeys {
                now: 52_000,
                max_retiring_ms: None,
            },
        );
        assert_eq!(state(&store, "n3-a").state, KeyState::Retired);
        assert_eq!(state(&store, "n2-a").state, KeyState::Active);
        // A removed node cannot publish a new key.
        assert!(matches!(
            run(&store, RegisterSigningKey(key("n3-b", 3))),
            Outcome::Rejected(Rejection::NotFound { .. })
        ));
        assert!(store.signing_keys().unwrap().iter().all(|k| k.kid != "n3-b"));
    }
}
