//! Apply logic of multi-factor authentication: a pool's MFA setting, a
//! user's software token (associated, then verified with a first code),
//! preferences, the TOTP steps and recovery codes spent at sign-in.
//!
//! The proposer checks a TOTP code against the user's (sealed) secret,
//! which `apply` cannot open; `apply` decides what must be decided once
//! for the whole cluster: that a time step is newer than the last one
//! accepted (so a code works once, whichever node sees it again), that the
//! secret the code was checked against is still the user's, and that a
//! recovery code is still unused.

use serde::{Deserialize, Serialize};

use super::{not_found, Apply, ApplyError, Outcome, Rejection};
use crate::auth::codes::CodeError;
use crate::model::mfa::{
    session_binding, usable_factor, MfaFactor, MfaSummary, PoolMfaConfig, PoolMfaConfigV1, TotpSecret, UserMfa,
    RECOVERY_CODES,
};
use crate::model::user::User;
use crate::store::keys::Table;
use crate::store::mfa::user_mfa_key;
use crate::store::{codec, SmBatch, Store, StoreError};

/// The user's MFA state (default when none), or the rejection for a
/// missing pool or user, or for a challenge session (`binding`) that the
/// user's password change, reset or sign-out has ended.
fn load(
    store: &Store,
    pool_id: &str,
    sub: &str,
    binding: Option<&str>,
) -> Result<Result<UserMfa, Outcome>, StoreError> {
    if store.pool(pool_id)?.is_none() {
        return Ok(Err(not_found("user pool", pool_id)));
    }
    let Some(user) = store.user(pool_id, sub)? else {
        return Ok(Err(not_found("user", sub)));
    };
    if binding.is_some_and(|b| !bound(&user, b)) {
        return Ok(Err(Outcome::Rejected(Rejection::NotAuthorized(
            "Invalid session for the user, session is expired.".into(),
        ))));
    }
    Ok(Ok(store.user_mfa(pool_id, sub)?.unwrap_or_default()))
}

fn bound(user: &User, binding: &str) -> bool {
    session_binding(user) == binding
}

fn save(batch: &mut SmBatch<'_>, pool_id: &str, sub: &str, mfa: &UserMfa) -> Result<Outcome, StoreError> {
    batch.put(Table::UserMfa, &user_mfa_key(pool_id, sub), &codec::encode(mfa)?)?;
    Ok(Outcome::Mfa(mfa.summary()))
}

/// `SetUserPoolMfaConfig`: replaces a pool's MFA setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetUserPoolMfaConfig {
    /// The pool.
    pub pool_id: String,
    /// The new setting, stamped with the proposer's clock.
    pub config: PoolMfaConfig,
}

impl Apply for SetUserPoolMfaConfig {
    type Output = PoolMfaConfig;

    fn validate(&self) -> Result<(), Rejection> {
        self.config.validate().map_err(|e| Rejection::Invalid(e.to_string()))
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if store.pool(&self.pool_id)?.is_none() {
            return Ok(not_found("user pool", &self.pool_id));
        }
        batch.put(Table::PoolMfa, self.pool_id.as_bytes(), &codec::encode(&self.config)?)?;
        Ok(Outcome::MfaConfig(self.config.clone()))
    }
}

/// `SetUserPoolMfaConfig` as the first MFA release proposed it (no message
/// templates). Only decoded from old logs; applies as the current one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetUserPoolMfaConfigV1 {
    /// The pool.
    pub pool_id: String,
    /// The setting, in its first encoding.
    pub config: PoolMfaConfigV1,
}

impl Apply for SetUserPoolMfaConfigV1 {
    type Output = PoolMfaConfig;

    fn validate(&self) -> Result<(), Rejection> {
        self.current().validate()
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        self.current().apply(store, batch)
    }
}

impl SetUserPoolMfaConfigV1 {
    fn current(&self) -> SetUserPoolMfaConfig {
        SetUserPoolMfaConfig {
            pool_id: self.pool_id.clone(),
            config: self.config.clone().into(),
        }
    }
}

/// `AssociateSoftwareToken`: a new secret waits for its first code. It
/// replaces a secret still waiting, never the verified one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssociateSoftwareToken {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// The new secret, sealed by the proposer.
    pub secret: TotpSecret,
    /// The binding of the `MFA_SETUP` session the caller holds, when it
    /// holds one rather than an access token (a password, no second
    /// factor): refused once the session ended or the user has a verified
    /// token, so such a session can never replace one.
    pub session_binding: Option<String>,
    /// Proposer's clock (Unix ms).
    pub now: i64,
}

impl Apply for AssociateSoftwareToken {
    type Output = MfaSummary;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let mut mfa = match load(store, &self.pool_id, &self.sub, self.session_binding.as_deref())? {
            Ok(m) => m,
            Err(rejected) => return Ok(rejected),
        };
        if self.session_binding.is_some() && mfa.totp.is_some() {
            return Ok(Outcome::Rejected(Rejection::NotAuthorized(
                "Invalid session for the user: MFA is already set up.".into(),
            )));
        }
        mfa.pending_totp = Some(self.secret.clone());
        mfa.modified_at = self.now;
        Ok(save(batch, &self.pool_id, &self.sub, &mfa)?)
    }
}

/// `VerifySoftwareToken`: the pending secret, whose code the proposer
/// checked, becomes the user's verified software token, and the step of
/// that code is spent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifySoftwareToken {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// The id of the pending secret the code was checked against.
    pub secret_id: String,
    /// The time step the code matched.
    pub step: u64,
    /// `friendly_device_name`, validated at the edge.
    pub friendly_device_name: String,
    /// As for [`AssociateSoftwareToken::session_binding`]; a token
    /// verified with an `MFA_SETUP` session is also enabled (and
    /// preferred, absent another preference).
    pub session_binding: Option<String>,
    /// Proposer's clock (Unix ms).
    pub now: i64,
}

impl Apply for VerifySoftwareToken {
    type Output = MfaSummary;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let mut mfa = match load(store, &self.pool_id, &self.sub, self.session_binding.as_deref())? {
            Ok(m) => m,
            Err(rejected) => return Ok(rejected),
        };
        if self.session_binding.is_some() && mfa.totp.is_some() {
            return Ok(Outcome::Rejected(Rejection::NotAuthorized(
                "Invalid session for the user: MFA is already set up.".into(),
            )));
        }
        // Replaced by a newer association (or already verified) meanwhile.
        let Some(mut secret) = mfa.pending_totp.take().filter(|p| p.id == self.secret_id) else {
            return Ok(Outcome::Rejected(Rejection::NoCode));
        };
        secret.friendly_device_name = self.friendly_device_name.clone();
        mfa.totp = Some(secret);
        mfa.last_totp_step = self.step;
        if self.session_binding.is_some() {
            // Set up to answer a required MFA_SETUP challenge: the token is
            // the user's enabled (and, absent another, preferred) factor
            // from now on, as Cognito does.
            mfa.enabled.insert(MfaFactor::SoftwareToken);
            mfa.preferred = mfa.preferred.or(Some(MfaFactor::SoftwareToken));
        }
        mfa.modified_at = self.now;
        Ok(save(batch, &self.pool_id, &self.sub, &mfa)?)
    }
}

/// One factor's setting in `SetUserMFAPreference`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaPreferenceChange {
    /// The factor.
    pub factor: MfaFactor,
    /// `Enabled`.
    pub enabled: bool,
    /// `PreferredMfa`.
    pub preferred: bool,
}

/// `SetUserMFAPreference` / `AdminSetUserMFAPreference`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetUserMfaPreference {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// The factors whose setting changes, each at most once.
    pub changes: Vec<MfaPreferenceChange>,
    /// Proposer's clock (Unix ms).
    pub now: i64,
}

impl Apply for SetUserMfaPreference {
    type Output = MfaSummary;

    fn validate(&self) -> Result<(), Rejection> {
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.changes {
            if !seen.insert(c.factor) {
                return Err(Rejection::Invalid(format!("{} given twice", c.factor.as_cognito())));
            }
        }
        if self.changes.iter().filter(|c| c.preferred && c.enabled).count() > 1 {
            return Err(Rejection::Invalid("only one factor can be preferred".into()));
        }
        Ok(())
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let mut mfa = match load(store, &self.pool_id, &self.sub, None)? {
            Ok(m) => m,
            Err(rejected) => return Ok(rejected),
        };
        let Some(user) = store.user(&self.pool_id, &self.sub)? else {
            return Ok(not_found("user", &self.sub));
        };
        for c in &self.changes {
            // SMS needs a verified phone number and email a verified email
            // (Cognito's rule), as the log has them now.
            if c.enabled && !usable_factor(Some(&mfa), &user, c.factor) {
                let what = match c.factor {
                    MfaFactor::SoftwareToken => "a verified software token",
                    MfaFactor::Sms => "a verified phone_number",
                    MfaFactor::Email => "a verified email",
                };
                return Ok(Outcome::Rejected(Rejection::Invalid(format!(
                    "User has not verified {}: {} needs {what}",
                    c.factor.as_cognito(),
                    c.factor.as_cognito()
                ))));
            }
            if c.enabled {
                mfa.enabled.insert(c.factor);
            } else {
                mfa.enabled.remove(&c.factor);
            }
            if c.enabled && c.preferred {
                mfa.preferred = Some(c.factor);
            } else if mfa.preferred == Some(c.factor) {
                mfa.preferred = None;
            }
        }
        mfa.modified_at = self.now;
        Ok(save(batch, &self.pool_id, &self.sub, &mfa)?)
    }
}

/// Spends the time step of a TOTP code the proposer checked at sign-in.
/// Refused if the step is not newer than the last one spent (a replay,
/// through any node), if the user's token changed meanwhile, or if the
/// challenge session was ended by a password change or sign-out that the
/// proposer had not applied yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumeSoftwareTokenCode {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// The id of the verified secret the code was checked against.
    pub secret_id: String,
    /// The time step the code matched.
    pub step: u64,
    /// The `bind` claim of the challenge session answered.
    pub session_binding: String,
}

impl Apply for ConsumeSoftwareTokenCode {
    type Output = MfaSummary;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let mut mfa = match load(store, &self.pool_id, &self.sub, Some(&self.session_binding))? {
            Ok(m) => m,
            Err(rejected) => return Ok(rejected),
        };
        if mfa.totp.as_ref().is_none_or(|t| t.id != self.secret_id) {
            return Ok(Outcome::Rejected(Rejection::Code(CodeError::Mismatch)));
        }
        if self.step <= mfa.last_totp_step {
            return Ok(Outcome::Rejected(Rejection::Code(CodeError::Expired)));
        }
        mfa.last_totp_step = self.step;
        Ok(save(batch, &self.pool_id, &self.sub, &mfa)?)
    }
}

/// Replaces a user's recovery codes (their hashes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetRecoveryCodes {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// SHA-256 of each new code; at most `RECOVERY_CODES`.
    pub hashes: Vec<[u8; 32]>,
    /// Proposer's clock (Unix ms).
    pub now: i64,
}

impl Apply for SetRecoveryCodes {
    type Output = MfaSummary;

    fn validate(&self) -> Result<(), Rejection> {
        if self.hashes.len() > RECOVERY_CODES {
            return Err(Rejection::Invalid(format!("at most {RECOVERY_CODES} recovery codes")));
        }
        Ok(())
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let mut mfa = match load(store, &self.pool_id, &self.sub, None)? {
            Ok(m) => m,
            Err(rejected) => return Ok(rejected),
        };
        if mfa.totp.is_none() {
            return Ok(Outcome::Rejected(Rejection::Invalid(
                "Recovery codes need a verified software token: call AssociateSoftwareToken and VerifySoftwareToken first"
                    .into(),
            )));
        }
        mfa.recovery_codes = self.hashes.clone();
        mfa.modified_at = self.now;
        Ok(save(batch, &self.pool_id, &self.sub, &mfa)?)
    }
}

/// Spends a recovery code (by its hash): it works once, cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumeRecoveryCode {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// SHA-256 of the presented code (as stored); the code itself never
    /// enters the log.
    pub hash: [u8; 32],
    /// The `bind` claim of the challenge session answered.
    pub session_binding: String,
}

impl Apply for ConsumeRecoveryCode {
    type Output = MfaSummary;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let mut mfa = match load(store, &self.pool_id, &self.sub, Some(&self.session_binding))? {
            Ok(m) => m,
            Err(rejected) => return Ok(rejected),
        };
        match crate::auth::totp::find_recovery_code(&mfa.recovery_codes, &self.hash) {
            Some(i) => {
                mfa.recovery_codes.remove(i);
                Ok(save(batch, &self.pool_id, &self.sub, &mfa)?)
            }
            None => Ok(Outcome::Rejected(Rejection::Code(CodeError::Mismatch))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testkit::{run, store_with_ann, user_in, POOL};
    use crate::command::DeleteUser;
    use crate::model::app_client::SealedSecret;
    use crate::model::mfa::MfaConfiguration;
    use crate::model::user::UserStatus;

    fn setup() -> (tempfile::TempDir, Store) {
        store_with_ann()
    }

    fn secret(id: &str) -> TotpSecret {
        TotpSecret {
            id: id.into(),
            sealed: SealedSecret {
                nonce: [1; 12],
                ciphertext: id.as_bytes().to_vec(),
            },
            associated_at: 5,
            friendly_device_name: String::new(),
        }
    }

    /// The binding of a session issued to the user `setup` creates.
    fn bind() -> String {
        session_binding(&user_in(UserStatus::Confirmed, "s1", "ann", "ann@x.io"))
    }

    fn associate(id: &str, setup_only: bool) -> AssociateSoftwareToken {
        AssociateSoftwareToken {
            pool_id: POOL.into(),
            sub: "s1".into(),
            secret: secret(id),
            session_binding: setup_only.then(bind),
            now: 10,
        }
    }

    fn verify(id: &str, step: u64) -> VerifySoftwareToken {
        VerifySoftwareToken {
            pool_id: POOL.into(),
            sub: "s1".into(),
            secret_id: id.into(),
            step,
            friendly_device_name: "phone".into(),
            session_binding: None,
            now: 20,
        }
    }

    fn consume(id: &str, step: u64) -> ConsumeSoftwareTokenCode {
        ConsumeSoftwareTokenCode {
            pool_id: POOL.into(),
            sub: "s1".into(),
            secret_id: id.into(),
            step,
            session_binding: bind(),
        }
    }

    #[test]
    fn pool_settings_are_validated_and_replaced() {
        let (_d, store) = setup();
        assert_eq!(store.pool_mfa(POOL).unwrap(), PoolMfaConfig::default());
        let on = PoolMfaConfig {
            mfa_configuration: MfaConfiguration::On,
            software_token_enabled: true,
            modified_at: 7,
            ..PoolMfaConfig::default()
        };
        let set = |config: PoolMfaConfig| SetUserPoolMfaConfig {
            pool_id: POOL.into(),
            config,
        };
        assert!(matches!(run(&store, set(on.clone())), Outcome::MfaConfig(_)));
        assert_eq!(store.pool_mfa(POOL).unwrap(), on);
        // A peer's entry that no edge would send is refused, unapplied.
        let mut bad = on.clone();
        bad.software_token_enabled = false;
        assert!(matches!(
            run(&store, set(bad)),
            Outcome::Rejected(Rejection::Invalid(_))
        ));
        assert_eq!(store.pool_mfa(POOL).unwrap(), on);
        let mut missing = set(on);
        missing.pool_id = "local_nope".into();
        assert!(matches!(
            run(&store, missing),
            Outcome::Rejected(Rejection::NotFound { .. })
        ));
    }

    #[test]
    fn association_waits_for_verification_and_never_replaces_a_verified_token() {
        let (_d, store) = setup();
        assert!(matches!(run(&store, associate("a", false)), Outcome::Mfa(_)));
        // Verifying a secret that was replaced meanwhile is refused.
        assert!(matches!(run(&store, associate("b", false)), Outcome::Mfa(_)));
        assert_eq!(run(&store, verify("a", 100)), Outcome::Rejected(Rejection::NoCode));
        let Outcome::Mfa(s) = run(&store, verify("b", 100)) else {
            panic!("verify b")
        };
        assert!(s.software_token_verified && !s.software_token_pending);
        assert!(
            s.setting_list.is_empty(),
            "verified, not enabled until SetUserMFAPreference"
        );
        // A new association waits beside the verified token.
        run(&store, associate("c", false));
        let mfa = store.user_mfa(POOL, "s1").unwrap().unwrap();
        assert_eq!(mfa.totp.as_ref().map(|t| t.id.as_str()), Some("b"));
        assert_eq!(mfa.pending_totp.as_ref().map(|t| t.id.as_str()), Some("c"));
        assert_eq!(mfa.totp.as_ref().unwrap().friendly_device_name, "phone");
        // An MFA_SETUP session cannot touch a user who has a token.
        assert!(matches!(
            run(&store, associate("d", true)),
            Outcome::Rejected(Rejection::NotAuthorized(_))
        ));
        let mut v = verify("c", 200);
        v.session_binding = Some(bind());
        assert!(matches!(run(&store, v), Outcome::Rejected(Rejection::NotAuthorized(_))));
        assert_eq!(
            store.user_mfa(POOL, "s1").unwrap().unwrap().totp.unwrap().id,
            "b",
            "still the verified one"
        );
    }

    #[test]
    fn a_token_set_up_for_mfa_setup_is_enabled_and_preferred() {
        let (_d, store) = setup();
        run(&store, associate("a", true));
        let mut v = verify("a", 7);
        v.session_binding = Some(bind());
        let Outcome::Mfa(s) = run(&store, v) else {
            panic!("verify")
        };
        assert_eq!(s.setting_list, vec!["SOFTWARE_TOKEN_MFA"]);
        assert_eq!(s.preferred.as_deref(), Some("SOFTWARE_TOKEN_MFA"));
    }

    #[test]
    fn a_time_step_is_spent_once() {
        let (_d, store) = setup();
        run(&store, associate("a", false));
        run(&store, verify("a", 100));
        assert_eq!(
            run(&store, consume("a", 100)),
            Outcome::Rejected(Rejection::Code(CodeError::Expired)),
            "the verification code's step is spent"
        );
        assert!(matches!(run(&store, consume("a", 101)), Outcome::Mfa(_)));
        assert_eq!(
            run(&store, consume("a", 101)),
            Outcome::Rejected(Rejection::Code(CodeError::Expired)),
            "replayed"
        );
        assert_eq!(
            run(&store, consume("a", 99)),
            Outcome::Rejected(Rejection::Code(CodeError::Expired)),
            "older"
        );
        assert_eq!(
            run(&store, consume("other", 105)),
            Outcome::Rejected(Rejection::Code(CodeError::Mismatch)),
            "checked against a secret that is not the user's"
        );
        assert_eq!(store.user_mfa(POOL, "s1").unwrap().unwrap().last_totp_step, 101);
    }

    /// A session ended by a password change is refused in `apply`, even
    /// when the proposing node had not applied the change yet: nothing is
    /// spent.
    #[test]
    fn a_session_ended_by_a_password_change_spends_nothing() {
        let (_d, store) = setup();
        run(&store, associate("a", false));
        run(&store, verify("a", 100));
        let mut stale = consume("a", 101);
        stale.session_binding = "0123456789abcdef0123456789abcdef".into();
        assert!(matches!(
            run(&store, stale),
            Outcome::Rejected(Rejection::NotAuthorized(_))
        ));
        assert_eq!(store.user_mfa(POOL, "s1").unwrap().unwrap().last_totp_step, 100);
        let mut set_up = associate("b", true);
        set_up.session_binding = Some("00".into());
        assert!(matches!(
            run(&store, set_up),
            Outcome::Rejected(Rejection::NotAuthorized(_))
        ));
        assert!(matches!(run(&store, consume("a", 101)), Outcome::Mfa(_)));
    }

    #[test]
    fn preferences_need_a_verified_factor() {
        let (_d, store) = setup();
        let pref = |enabled, preferred| SetUserMfaPreference {
            pool_id: POOL.into(),
            sub: "s1".into(),
            changes: vec![MfaPreferenceChange {
                factor: MfaFactor::SoftwareToken,
                enabled,
                preferred,
            }],
            now: 30,
        };
        assert!(matches!(
            run(&store, pref(true, true)),
            Outcome::Rejected(Rejection::Invalid(_))
        ));
        run(&store, associate("a", false));
        run(&store, verify("a", 1));
        let Outcome::Mfa(s) = run(&store, pref(true, true)) else {
            panic!("preference")
        };
        assert_eq!(s.setting_list, vec!["SOFTWARE_TOKEN_MFA"]);
        assert_eq!(s.preferred.as_deref(), Some("SOFTWARE_TOKEN_MFA"));
        let Outcome::Mfa(s) = run(&store, pref(false, false)) else {
            panic!("preference")
        };
        assert!(s.setting_list.is_empty() && s.preferred.is_none());
        let sms = SetUserMfaPreference {
            pool_id: POOL.into(),
            sub: "s1".into(),
            changes: vec![MfaPreferenceChange {
                factor: MfaFactor::Sms,
                enabled: true,
                preferred: false,
            }],
            now: 30,
        };
        assert!(matches!(run(&store, sms), Outcome::Rejected(Rejection::Invalid(_))));
    }

    #[test]
    fn recovery_codes_work_once_and_go_with_the_user() {
        let (_d, store) = setup();
        let set = SetRecoveryCodes {
            pool_id: POOL.into(),
            sub: "s1".into(),
            hashes: vec![[1; 32], [2; 32]],
            now: 40,
        };
        assert!(
            matches!(run(&store, set.clone()), Outcome::Rejected(Rejection::Invalid(_))),
            "no software token yet"
        );
        run(&store, associate("a", false));
        run(&store, verify("a", 1));
        assert!(matches!(run(&store, set), Outcome::Mfa(s) if s.recovery_codes_left == 2));
        let spend = |h| ConsumeRecoveryCode {
            pool_id: POOL.into(),
            sub: "s1".into(),
            hash: h,
            session_binding: bind(),
        };
        assert!(matches!(run(&store, spend([2; 32])), Outcome::Mfa(s) if s.recovery_codes_left == 1));
        assert_eq!(
            run(&store, spend([2; 32])),
            Outcome::Rejected(Rejection::Code(CodeError::Mismatch))
        );
        assert_eq!(
            run(&store, spend([3; 32])),
            Outcome::Rejected(Rejection::Code(CodeError::Mismatch))
        );
        run(
            &store,
            DeleteUser {
                pool_id: POOL.into(),
                sub: "s1".into(),
            },
        );
        assert!(store.user_mfa(POOL, "s1").unwrap().is_none(), "deleted with the user");
    }
}
