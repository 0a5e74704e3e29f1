//! Multi-factor authentication, as Cognito models it: a pool's MFA setting
//! (`MfaConfiguration` and the factors it allows) and a user's factors and
//! preferences, with the decision of which challenge a sign-in gets after
//! its password.
//!
//! Three factors: the software token (TOTP, `SOFTWARE_TOKEN_MFA`), a code
//! by SMS (`SMS_MFA`) and a code by email (`EMAIL_OTP`). A user has the
//! SMS factor while its `phone_number` is verified and the email factor
//! while its `email` is verified ([`usable_factor`]); the codes of both
//! are one-time codes bound to the challenge session
//! (`service::flows::passwordless`).
//!
//! Secrets here are sealed (the TOTP secret, like client secrets) or
//! hashed (recovery codes); nothing in this module can open them.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::app_client::SealedSecret;
use super::user::User;
use super::ValidationError;

/// Lifetime of an MFA challenge session by default (Cognito: 3 minutes).
pub const DEFAULT_SESSION_SECS: u32 = 180;
/// Shortest challenge session a pool may ask for. Below Cognito's 3
/// minutes (a Tessera allowance: short sessions for kiosks and tests).
pub const MIN_SESSION_SECS: u32 = 10;
/// Longest challenge session (Cognito: 15 minutes).
pub const MAX_SESSION_SECS: u32 = 900;
/// How many recovery codes a user gets at a time.
pub const RECOVERY_CODES: usize = 10;
/// Longest `friendly_device_name` of a software token.
pub const MAX_DEVICE_NAME_CHARS: usize = 128;
/// Longest `SmsMfaConfiguration.SmsAuthenticationMessage` (Cognito: 140).
pub const MAX_SMS_MESSAGE_CHARS: usize = 140;
/// Longest `EmailMfaConfiguration.Message` (Cognito: 20,000).
pub const MAX_EMAIL_MESSAGE_CHARS: usize = 20_000;
/// Longest `EmailMfaConfiguration.Subject` (Cognito: 140).
pub const MAX_EMAIL_SUBJECT_CHARS: usize = 140;
/// The placeholder a message template must hold, replaced by the code.
pub const CODE_PLACEHOLDER: &str = "{####}";

/// Cognito's `MfaConfiguration` of a user pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MfaConfiguration {
    /// No sign-in is challenged.
    Off,
    /// Users who enabled a factor are challenged.
    Optional,
    /// Every sign-in is challenged; a user without a factor sets one up
    /// first (`MFA_SETUP`).
    On,
}

impl MfaConfiguration {
    /// The string Cognito uses on the wire.
    pub fn as_cognito(self) -> &'static str {
        match self {
            MfaConfiguration::Off => "OFF",
            MfaConfiguration::Optional => "OPTIONAL",
            MfaConfiguration::On => "ON",
        }
    }

    /// Parses Cognito's string (`OFF`, `OPTIONAL`, `ON`).
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s {
            "OFF" => Ok(MfaConfiguration::Off),
            "OPTIONAL" => Ok(MfaConfiguration::Optional),
            "ON" => Ok(MfaConfiguration::On),
            other => Err(ValidationError::new(
                "mfa_configuration",
                format!("{other:?} is not one of OFF, OPTIONAL, ON"),
            )),
        }
    }
}

/// A second factor, by Cognito's challenge name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MfaFactor {
    /// TOTP from an authenticator app (`SOFTWARE_TOKEN_MFA`).
    SoftwareToken,
    /// A code by SMS to the verified phone number (`SMS_MFA`).
    Sms,
    /// A code by email to the verified email address (`EMAIL_OTP`).
    Email,
}

impl MfaFactor {
    /// Cognito's name of the factor (and of its challenge).
    pub fn as_cognito(self) -> &'static str {
        match self {
            MfaFactor::SoftwareToken => "SOFTWARE_TOKEN_MFA",
            MfaFactor::Sms => "SMS_MFA",
            MfaFactor::Email => "EMAIL_OTP",
        }
    }

    /// Parses Cognito's name of a factor.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SOFTWARE_TOKEN_MFA" => Some(MfaFactor::SoftwareToken),
            "SMS_MFA" => Some(MfaFactor::Sms),
            "EMAIL_OTP" => Some(MfaFactor::Email),
            _ => None,
        }
    }
}

/// A pool's MFA setting (`SetUserPoolMfaConfig`). Kept beside the pool,
/// not inside `PoolSettings`, so pools written before MFA existed decode
/// unchanged; a pool without one is [`PoolMfaConfig::default`] (OFF).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolMfaConfig {
    /// OFF, OPTIONAL or ON.
    pub mfa_configuration: MfaConfiguration,
    /// `SoftwareTokenMfaConfiguration.Enabled`: TOTP is allowed.
    pub software_token_enabled: bool,
    /// `SmsMfaConfiguration` present: `SMS_MFA` is allowed.
    pub sms_enabled: bool,
    /// `EmailMfaConfiguration` present: `EMAIL_OTP` is allowed.
    pub email_enabled: bool,
    /// Lifetime of a challenge session, in seconds.
    pub session_validity_secs: u32,
    /// Proposer's clock (Unix ms) when it was last set; 0 for the default.
    pub modified_at: i64,
    /// `SmsMfaConfiguration.SmsAuthenticationMessage`: the SMS text, with
    /// [`CODE_PLACEHOLDER`]; empty for the default text.
    pub sms_message: String,
    /// `EmailMfaConfiguration.Message`, with [`CODE_PLACEHOLDER`]; empty
    /// for the default text.
    pub email_message: String,
    /// `EmailMfaConfiguration.Subject`; empty for the default subject.
    pub email_subject: String,
}

/// [`PoolMfaConfig`] as the first MFA release stored it (TOTP only, no
/// message templates). `Store::pool_mfa` reads it, so a pool
/// set up then keeps its setting after an upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolMfaConfigV1 {
    /// As [`PoolMfaConfig::mfa_configuration`].
    pub mfa_configuration: MfaConfiguration,
    /// As [`PoolMfaConfig::software_token_enabled`].
    pub software_token_enabled: bool,
    /// As [`PoolMfaConfig::sms_enabled`].
    pub sms_enabled: bool,
    /// As [`PoolMfaConfig::email_enabled`].
    pub email_enabled: bool,
    /// As [`PoolMfaConfig::session_validity_secs`].
    pub session_validity_secs: u32,
    /// As [`PoolMfaConfig::modified_at`].
    pub modified_at: i64,
}

impl From<PoolMfaConfigV1> for PoolMfaConfig {
    fn from(v: PoolMfaConfigV1) -> Self {
        PoolMfaConfig {
            mfa_configuration: v.mfa_configuration,
            software_token_enabled: v.software_token_enabled,
            sms_enabled: v.sms_enabled,
            email_enabled: v.email_enabled,
            session_validity_secs: v.session_validity_secs,
            modified_at: v.modified_at,
            sms_message: String::new(),
            email_message: String::new(),
            email_subject: String::new(),
        }
    }
}

impl Default for PoolMfaConfig {
    fn default() -> Self {
        PoolMfaConfig {
            mfa_configuration: MfaConfiguration::Off,
            software_token_enabled: false,
            sms_enabled: false,
            email_enabled: false,
            session_validity_secs: DEFAULT_SESSION_SECS,
            modified_at: 0,
            sms_message: String::new(),
            email_message: String::new(),
            email_subject: String::new(),
        }
    }
}

impl PoolMfaConfig {
    /// Checks the setting as a whole, as Cognito does: OPTIONAL or ON
    /// needs an allowed factor, and message templates are bounded and
    /// hold the code's placeholder.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let template = |field: &'static str, text: &str, max: usize| {
            if text.chars().count() > max {
                return Err(ValidationError::new(field, format!("at most {max} characters")));
            }
            if !text.is_empty() && !text.contains(CODE_PLACEHOLDER) {
                return Err(ValidationError::new(
                    field,
                    format!("must contain {CODE_PLACEHOLDER}, which is replaced by the code"),
                ));
            }
            Ok(())
        };
        template(
            "sms_mfa_configuration.sms_authentication_message",
            &self.sms_message,
            MAX_SMS_MESSAGE_CHARS,
        )?;
        template(
            "email_mfa_configuration.message",
            &self.email_message,
            MAX_EMAIL_MESSAGE_CHARS,
        )?;
        if self.email_subject.chars().count() > MAX_EMAIL_SUBJECT_CHARS
            || self.email_subject.chars().any(char::is_control)
        {
            return Err(ValidationError::new(
                "email_mfa_configuration.subject",
                format!("at most {MAX_EMAIL_SUBJECT_CHARS} characters, no control characters"),
            ));
        }
        if (!self.sms_enabled && !self.sms_message.is_empty())
            || (!self.email_enabled && (!self.email_message.is_empty() || !self.email_subject.is_empty()))
        {
            return Err(ValidationError::new(
                "mfa_configuration",
                "a message template needs its factor's configuration",
            ));
        }
        if self.mfa_configuration != MfaConfiguration::Off && self.allowed().is_empty() {
            return Err(ValidationError::new(
                "mfa_configuration",
                format!(
                    "{} needs at least one enabled factor: software_token_mfa_configuration.enabled, sms_mfa_configuration or email_mfa_configuration",
                    self.mfa_configuration.as_cognito()
                ),
            ));
        }
        if !(MIN_SESSION_SECS..=MAX_SESSION_SECS).contains(&self.session_validity_secs) {
            return Err(ValidationError::new(
                "auth_session_validity_seconds",
                format!("must be {MIN_SESSION_SECS} to {MAX_SESSION_SECS} seconds"),
            ));
        }
        Ok(())
    }

    /// The factors the pool allows, in Cognito's order.
    pub fn allowed(&self) -> Vec<MfaFactor> {
        let mut out = Vec::new();
        if self.sms_enabled {
            out.push(MfaFactor::Sms);
        }
        if self.software_token_enabled {
            out.push(MfaFactor::SoftwareToken);
        }
        if self.email_enabled {
            out.push(MfaFactor::Email);
        }
        out
    }

    /// Whether the pool allows `factor`.
    pub fn allows(&self, factor: MfaFactor) -> bool {
        self.allowed().contains(&factor)
    }
}

/// A TOTP secret of a user, sealed under the cluster sealing key and bound
/// (by the sealing's additional data) to its pool, user and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpSecret {
    /// Random id chosen when the secret was made (32 hex characters): a
    /// code checked against one secret never counts for another.
    pub id: String,
    /// The 20 raw secret bytes, sealed.
    pub sealed: SealedSecret,
    /// Proposer's clock (Unix ms) at `AssociateSoftwareToken`.
    pub associated_at: i64,
    /// `friendly_device_name` given at verification (empty while pending).
    pub friendly_device_name: String,
}

/// A user's MFA state: the verified software token and one waiting for its
/// first code, what the user enabled and prefers, the last TOTP time step
/// accepted, and the hashes of unused recovery codes. Replicated: a code
/// or recovery code used through one node is spent on every node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMfa {
    /// The verified software token, if any.
    pub totp: Option<TotpSecret>,
    /// A secret from `AssociateSoftwareToken` waiting for
    /// `VerifySoftwareToken`. Replaced by a new association; never replaces
    /// `totp` until verified.
    pub pending_totp: Option<TotpSecret>,
    /// Factors the user enabled (`SetUserMFAPreference`).
    pub enabled: BTreeSet<MfaFactor>,
    /// The factor the user prefers (`PreferredMfa`).
    pub preferred: Option<MfaFactor>,
    /// The latest TOTP time step (Unix seconds / 30) accepted for `totp`;
    /// a code of this step or an earlier one is refused, so each code
    /// works once.
    pub last_totp_step: u64,
    /// SHA-256 of each unused recovery code.
    pub recovery_codes: Vec<[u8; 32]>,
    /// Proposer's clock (Unix ms) of the latest change.
    pub modified_at: i64,
}

impl UserMfa {
    /// Whether `factor` is set up for the user as far as this record
    /// knows: a verified software token; SMS and email once enabled (they
    /// were checked against a verified phone number or email then; the
    /// sign-in checks the attribute again, [`usable_factor`]).
    pub fn has(&self, factor: MfaFactor) -> bool {
        match factor {
            MfaFactor::SoftwareToken => self.totp.is_some(),
            MfaFactor::Sms | MfaFactor::Email => self.enabled.contains(&factor),
        }
    }

    /// Cognito's `UserMFASettingList`: the factors the user enabled that
    /// are set up.
    pub fn setting_list(&self) -> Vec<&'static str> {
        self.enabled
            .iter()
            .filter(|f| self.has(**f))
            .map(|f| f.as_cognito())
            .collect()
    }

    /// Cognito's `PreferredMfaSetting`, if the preferred factor is set up.
    pub fn preferred_setting(&self) -> Option<&'static str> {
        self.preferred
            .filter(|f| self.has(*f) && self.enabled.contains(f))
            .map(MfaFactor::as_cognito)
    }

    /// A summary that carries no secret, for outcomes and reads.
    pub fn summary(&self) -> MfaSummary {
        MfaSummary {
            software_token_verified: self.totp.is_some(),
            software_token_pending: self.pending_totp.is_some(),
            setting_list: self.setting_list().into_iter().map(str::to_string).collect(),
            preferred: self.preferred_setting().map(str::to_string),
            recovery_codes_left: u32::try_from(self.recovery_codes.len()).unwrap_or(u32::MAX),
        }
    }
}

/// What a user's MFA state says, without its secrets: what an outcome
/// carries back to the proposer and what `GetUser` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaSummary {
    /// A software token is verified.
    pub software_token_verified: bool,
    /// A software token waits for its first code.
    pub software_token_pending: bool,
    /// Cognito's `UserMFASettingList`.
    pub setting_list: Vec<String>,
    /// Cognito's `PreferredMfaSetting`.
    pub preferred: Option<String>,
    /// Unused recovery codes.
    pub recovery_codes_left: u32,
}

/// What a sign-in needs after a correct password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MfaStep {
    /// Nothing: tokens.
    None,
    /// `MFA_SETUP`: the pool requires MFA and the user has no factor.
    Setup,
    /// The challenge of this factor.
    Challenge(MfaFactor),
    /// `SELECT_MFA_TYPE`: several factors, none preferred.
    Select(Vec<MfaFactor>),
}

/// Which challenge a sign-in gets after its password, from the pool's
/// setting and the user's factors (`None` for a user who never touched
/// MFA). OFF: none. OPTIONAL: the factors the user enabled and set up. ON:
/// every factor the user set up, enabled or not, and `MFA_SETUP` when
/// there is none. Only factors the pool allows count. Several factors go to
/// the preferred one, or to `SELECT_MFA_TYPE` when none is preferred.
pub fn mfa_step(pool: &PoolMfaConfig, user: Option<&UserMfa>) -> MfaStep {
    let empty = UserMfa::default();
    let user = user.unwrap_or(&empty);
    mfa_step_with(pool, user, |f| user.has(f))
}

/// Whether `user` can be challenged with `factor` now: a verified software
/// token, or a verified phone number (SMS) or email (email). What
/// `SetUserMFAPreference` needs before it enables a factor, and what a
/// sign-in asks of it.
pub fn usable_factor(mfa: Option<&UserMfa>, user: &User, factor: MfaFactor) -> bool {
    match factor {
        MfaFactor::SoftwareToken => mfa.is_some_and(|m| m.totp.is_some()),
        MfaFactor::Sms => user.phone_number_verified && user.attributes.contains_key("phone_number"),
        MfaFactor::Email => user.email_verified && user.attributes.contains_key("email"),
    }
}

/// [`mfa_step`] for a sign-in of `user`: SMS and email count as set up
/// while the phone number or email is verified ([`usable_factor`]).
pub fn mfa_step_for(pool: &PoolMfaConfig, mfa: Option<&UserMfa>, user: &User) -> MfaStep {
    let empty = UserMfa::default();
    mfa_step_with(pool, mfa.unwrap_or(&empty), |f| usable_factor(mfa, user, f))
}

/// [`mfa_step`] with `has` saying which factors the user has set up.
pub fn mfa_step_with(pool: &PoolMfaConfig, user: &UserMfa, has: impl Fn(MfaFactor) -> bool) -> MfaStep {
    if pool.mfa_configuration == MfaConfiguration::Off {
        return MfaStep::None;
    }
    let usable: Vec<MfaFactor> = pool
        .allowed()
        .into_iter()
        .filter(|f| has(*f))
        .filter(|f| pool.mfa_configuration == MfaConfiguration::On || user.enabled.contains(f))
        .collect();
    match usable.as_slice() {
        [] if pool.mfa_configuration == MfaConfiguration::On => MfaStep::Setup,
        [] => MfaStep::None,
        [one] => MfaStep::Challenge(*one),
        many => match user.preferred.filter(|p| many.contains(p)) {
            Some(p) => MfaStep::Challenge(p),
            None => MfaStep::Select(many.to_vec()),
        },
    }
}

/// What an MFA challenge session is bound to besides its user: a digest
/// of the user's password hash and sign-out times. It changes with a
/// password change or reset, a global sign-out and disabling, so a session
/// issued before any of those no longer opens. The node that issues a
/// session puts it in the session; the commands that spend a code carry it
/// and `apply` compares it with the user as the log has it then, so a node
/// that has not applied a password change yet still cannot honour an old
/// session.
pub fn session_binding(user: &User) -> String {
    let mut h = Sha256::new();
    h.update(b"tessera mfa session\0");
    h.update(user.sub.as_bytes());
    h.update([0]);
    h.update(user.password_phc.as_deref().unwrap_or("").as_bytes());
    h.update([0]);
    h.update(user.tokens_revoked_before_ms.to_be_bytes());
    h.update(user.refresh_revoked_before_ms.to_be_bytes());
    hex::encode(&h.finalize()[..16])
}

/// A `friendly_device_name`: at most [`MAX_DEVICE_NAME_CHARS`]
/// characters, no control characters.
pub fn validate_device_name(name: &str) -> Result<(), ValidationError> {
    if name.chars().count() > MAX_DEVICE_NAME_CHARS {
        return Err(ValidationError::new(
            "friendly_device_name",
            format!("at most {MAX_DEVICE_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ValidationError::new(
            "friendly_device_name",
            "must not contain control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(id: &str) -> TotpSecret {
        TotpSecret {
            id: id.into(),
            sealed: SealedSecret {
                nonce: [0; 12],
                ciphertext: vec![1, 2, 3],
            },
            associated_at: 1,
            friendly_device_name: String::new(),
        }
    }

    fn pool(c: MfaConfiguration) -> PoolMfaConfig {
        PoolMfaConfig {
            mfa_configuration: c,
            software_token_enabled: true,
            ..PoolMfaConfig::default()
        }
    }

    #[test]
    fn settings_are_checked_as_cognito_does() {
        PoolMfaConfig::default().validate().unwrap();
        pool(MfaConfiguration::On).validate().unwrap();
        let mut no_factor = pool(MfaConfiguration::On);
        no_factor.software_token_enabled = false;
        let err = no_factor.validate().unwrap_err().to_string();
        assert!(err.contains("at least one enabled factor"), "{err}");
        no_factor.mfa_configuration = MfaConfiguration::Optional;
        assert!(no_factor.validate().is_err());
        no_factor.mfa_configuration = MfaConfiguration::Off;
        no_factor.validate().unwrap();
        let mut sms = pool(MfaConfiguration::Optional);
        sms.sms_enabled = true;
        sms.validate().unwrap();
        sms.sms_message = "no placeholder".into();
        let err = sms.validate().unwrap_err().to_string();
        assert!(err.contains("{####}"), "{err}");
        sms.sms_message = "Code {####}".into();
        sms.validate().unwrap();
        sms.sms_message = format!("{{####}}{}", "x".repeat(140));
        assert!(sms.validate().is_err());
        let mut email = pool(MfaConfiguration::Optional);
        email.email_subject = "Your code".into();
        assert!(email.validate().is_err(), "a template without its factor");
        email.email_enabled = true;
        email.validate().unwrap();
        email.email_subject = "a\nb".into();
        assert!(email.validate().is_err());
        let only_email = PoolMfaConfig {
            mfa_configuration: MfaConfiguration::On,
            email_enabled: true,
            ..PoolMfaConfig::default()
        };
        only_email.validate().unwrap();
        let mut short = pool(MfaConfiguration::On);
        short.session_validity_secs = 5;
        assert!(short.validate().is_err());
        assert_eq!(MfaConfiguration::parse("ON").unwrap(), MfaConfiguration::On);
        assert!(MfaConfiguration::parse("on").is_err());
    }

    #[test]
    fn which_challenge_follows_pool_and_user() {
        let none = UserMfa::default();
        let mut verified = UserMfa {
            totp: Some(secret("a")),
            ..UserMfa::default()
        };
        // OFF never challenges.
        assert_eq!(mfa_step(&pool(MfaConfiguration::Off), Some(&verified)), MfaStep::None);
        // OPTIONAL: only an enabled, verified factor.
        let optional = pool(MfaConfiguration::Optional);
        assert_eq!(mfa_step(&optional, None), MfaStep::None);
        assert_eq!(mfa_step(&optional, Some(&verified)), MfaStep::None);
        verified.enabled.insert(MfaFactor::SoftwareToken);
        assert_eq!(
            mfa_step(&optional, Some(&verified)),
            MfaStep::Challenge(MfaFactor::SoftwareToken)
        );
        // Enabled but only pending: nothing to challenge with.
        let pending = UserMfa {
            pending_totp: Some(secret("b")),
            enabled: [MfaFactor::SoftwareToken].into(),
            ..UserMfa::default()
        };
        assert_eq!(mfa_step(&optional, Some(&pending)), MfaStep::None);
        // ON: set up first, then always challenged, enabled or not.
        let on = pool(MfaConfiguration::On);
        assert_eq!(mfa_step(&on, None), MfaStep::Setup);
        assert_eq!(mfa_step(&on, Some(&none)), MfaStep::Setup);
        assert_eq!(mfa_step(&on, Some(&pending)), MfaStep::Setup);
        verified.enabled.clear();
        assert_eq!(
            mfa_step(&on, Some(&verified)),
            MfaStep::Challenge(MfaFactor::SoftwareToken)
        );
        // The pool's allowed factors bound the user's.
        let mut off_totp = pool(MfaConfiguration::Off);
        off_totp.software_token_enabled = false;
        assert_eq!(mfa_step(&off_totp, Some(&verified)), MfaStep::None);
    }

    /// `SELECT_MFA_TYPE` needs two usable factors.
    #[test]
    fn several_factors_select_or_follow_the_preference() {
        let mut two = pool(MfaConfiguration::Optional);
        two.sms_enabled = true;
        let mut user = UserMfa {
            totp: Some(secret("a")),
            enabled: [MfaFactor::SoftwareToken, MfaFactor::Sms].into(),
            preferred: None,
            ..UserMfa::default()
        };
        assert_eq!(
            mfa_step_with(&two, &user, |_| true),
            MfaStep::Select(vec![MfaFactor::Sms, MfaFactor::SoftwareToken])
        );
        user.preferred = Some(MfaFactor::SoftwareToken);
        assert_eq!(
            mfa_step_with(&two, &user, |_| true),
            MfaStep::Challenge(MfaFactor::SoftwareToken)
        );
        // A preference for a factor that is not usable selects.
        user.preferred = Some(MfaFactor::Email);
        assert!(matches!(mfa_step_with(&two, &user, |_| true), MfaStep::Select(_)));
        // SMS needs a verified phone number at sign-in.
        user.preferred = None;
        let mut account = sample_user();
        assert_eq!(
            mfa_step_for(&two, Some(&user), &account),
            MfaStep::Challenge(MfaFactor::SoftwareToken)
        );
        account.attributes.insert("phone_number".into(), "+15550100".into());
        assert_eq!(
            mfa_step_for(&two, Some(&user), &account),
            MfaStep::Challenge(MfaFactor::SoftwareToken),
            "unverified"
        );
        account.phone_number_verified = true;
        assert!(matches!(mfa_step_for(&two, Some(&user), &account), MfaStep::Select(_)));
        // ON: a verified email is a factor even if never enabled.
        let on_email = PoolMfaConfig {
            mfa_configuration: MfaConfiguration::On,
            email_enabled: true,
            ..PoolMfaConfig::default()
        };
        assert_eq!(mfa_step_for(&on_email, None, &account), MfaStep::Setup);
        account.attributes.insert("email".into(), "a@x.io".into());
        account.email_verified = true;
        assert_eq!(
            mfa_step_for(&on_email, None, &account),
            MfaStep::Challenge(MfaFactor::Email)
        );
    }

    fn sample_user() -> User {
        User {
            pool_id: "local_p".into(),
            sub: "s1".into(),
            username: "ann".into(),
            attributes: Default::default(),
            status: super::super::user::UserStatus::Confirmed,
            enabled: true,
            password_phc: Some("phc".into()),
            email_verified: false,
            phone_number_verified: false,
            created_at: 0,
            modified_at: 0,
            tokens_revoked_before_ms: 0,
            temporary_password_expires_at: None,
            refresh_revoked_before_ms: 0,
            pending_attributes: Default::default(),
        }
    }

    #[test]
    fn the_binding_changes_with_password_and_sign_out() {
        let user = sample_user();
        let b = session_binding(&user);
        assert_eq!(b.len(), 32);
        assert_eq!(session_binding(&user.clone()), b, "stable");
        let mut changed = user.clone();
        changed.password_phc = Some("another".into());
        assert_ne!(session_binding(&changed), b, "password change");
        let mut signed_out = user.clone();
        signed_out.tokens_revoked_before_ms = 5;
        assert_ne!(session_binding(&signed_out), b, "global sign-out");
        let mut disabled = user.clone();
        disabled.refresh_revoked_before_ms = 5;
        assert_ne!(session_binding(&disabled), b, "disabled, or a reset");
        let mut other = user;
        other.sub = "s2".into();
        assert_ne!(session_binding(&other), b, "another user");
    }

    #[test]
    fn summaries_report_what_is_set_up_and_hold_no_secret() {
        let user = UserMfa {
            totp: Some(secret("a")),
            enabled: [MfaFactor::SoftwareToken].into(),
            preferred: Some(MfaFactor::SoftwareToken),
            recovery_codes: vec![[1; 32], [2; 32]],
            ..UserMfa::default()
        };
        let s = user.summary();
        assert_eq!(s.setting_list, vec!["SOFTWARE_TOKEN_MFA"]);
        assert_eq!(s.preferred.as_deref(), Some("SOFTWARE_TOKEN_MFA"));
        assert_eq!(s.recovery_codes_left, 2);
        let unverified = UserMfa {
            pending_totp: Some(secret("b")),
            enabled: [MfaFactor::SoftwareToken].into(),
            preferred: Some(MfaFactor::SoftwareToken),
            ..UserMfa::default()
        };
        assert!(unverified.summary().setting_list.is_empty());
        assert_eq!(unverified.summary().preferred, None);
        assert!(validate_device_name("Ann's phone").is_ok());
        assert!(validate_device_name("a\nb").is_err());
        assert!(validate_device_name(&"x".repeat(129)).is_err());
    }
}
