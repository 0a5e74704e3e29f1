//! Choice-based sign-in (Cognito's `USER_AUTH`, 2024) and magic links (a
//! Tessera addition): which first factors a pool allows
//! (`SignInPolicy.AllowedFirstAuthFactors`) and the challenges a sign-in
//! may choose.
//!
//! Kept beside the pool (its own table), not inside `PoolSettings`, so
//! pools written before it existed decode unchanged; a pool without one
//! allows `PASSWORD` only, as Cognito's default.

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// How long a magic link is valid by default.
pub const DEFAULT_MAGIC_LINK_SECS: u32 = 600;
/// Shortest magic-link validity a pool may ask for.
pub const MIN_MAGIC_LINK_SECS: u32 = 60;
/// Longest magic-link validity a pool may ask for (one hour).
pub const MAX_MAGIC_LINK_SECS: u32 = 3600;

/// A first factor of `USER_AUTH` (Cognito's `AuthFactorType`, plus
/// `MAGIC_LINK`). New variants go at the end: the enum is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FirstFactor {
    /// The password (`PASSWORD`), then MFA as the pool says.
    Password,
    /// A code by email, no password (`EMAIL_OTP`).
    EmailOtp,
    /// A code by SMS, no password (`SMS_OTP`).
    SmsOtp,
    /// A single-use link by email, approved in a browser (`MAGIC_LINK`,
    /// Tessera addition).
    MagicLink,
    /// A passkey (`WEB_AUTHN`): a WebAuthn assertion, no password.
    WebAuthn,
}

impl FirstFactor {
    /// Every factor this release knows, in the order `available_challenges`
    /// lists them.
    pub const ALL: [FirstFactor; 5] = [
        FirstFactor::Password,
        FirstFactor::EmailOtp,
        FirstFactor::SmsOtp,
        FirstFactor::MagicLink,
        FirstFactor::WebAuthn,
    ];

    /// The name on the wire (Cognito's, where Cognito has one).
    pub fn as_cognito(self) -> &'static str {
        match self {
            FirstFactor::Password => "PASSWORD",
            FirstFactor::EmailOtp => "EMAIL_OTP",
            FirstFactor::SmsOtp => "SMS_OTP",
            FirstFactor::MagicLink => "MAGIC_LINK",
            FirstFactor::WebAuthn => "WEB_AUTHN",
        }
    }

    /// Parses a wire name. `PASSWORD_SRP` is Cognito's too, but not a
    /// choice of `USER_AUTH` here: it is refused with a clear reason.
    pub fn parse(field: &'static str, s: &str) -> Result<Self, ValidationError> {
        match s {
            "PASSWORD" => Ok(FirstFactor::Password),
            "EMAIL_OTP" => Ok(FirstFactor::EmailOtp),
            "SMS_OTP" => Ok(FirstFactor::SmsOtp),
            "MAGIC_LINK" => Ok(FirstFactor::MagicLink),
            "WEB_AUTHN" => Ok(FirstFactor::WebAuthn),
            "PASSWORD_SRP" => Err(ValidationError::new(
                field,
                format!("{s} is not implemented; sign in with USER_SRP_AUTH, or use PASSWORD, EMAIL_OTP, SMS_OTP, MAGIC_LINK or WEB_AUTHN"),
            )),
            other => Err(ValidationError::new(
                field,
                format!(
                    "{:?} is not one of PASSWORD, EMAIL_OTP, SMS_OTP, MAGIC_LINK, WEB_AUTHN",
                    other.chars().take(32).collect::<String>()
                ),
            )),
        }
    }
}

/// A pool's `SignInPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInPolicy {
    /// `AllowedFirstAuthFactors`, without duplicates, in [`FirstFactor`]
    /// order. Always holds `PASSWORD` (Cognito requires it).
    pub allowed_first_auth_factors: Vec<FirstFactor>,
    /// How long a magic link (and the session waiting for it) is valid, in
    /// seconds (Tessera addition).
    pub magic_link_validity_secs: u32,
    /// Proposer's clock (Unix ms) when it was last set; 0 for the default.
    pub modified_at: i64,
}

impl Default for SignInPolicy {
    fn default() -> Self {
        SignInPolicy {
            allowed_first_auth_factors: vec![FirstFactor::Password],
            magic_link_validity_secs: DEFAULT_MAGIC_LINK_SECS,
            modified_at: 0,
        }
    }
}

impl SignInPolicy {
    /// A policy from wire names: duplicates go, the order is canonical.
    pub fn from_names<'a>(
        names: impl IntoIterator<Item = &'a str>,
        magic_link_validity_secs: u32,
    ) -> Result<Self, ValidationError> {
        let mut factors = Vec::new();
        for (i, n) in names.into_iter().enumerate() {
            if i >= 16 {
                return Err(ValidationError::new(
                    "sign_in_policy.allowed_first_auth_factors",
                    "at most 16 entries",
                ));
            }
            factors.push(FirstFactor::parse("sign_in_policy.allowed_first_auth_factors", n)?);
        }
        factors.sort();
        factors.dedup();
        let policy = SignInPolicy {
            allowed_first_auth_factors: factors,
            magic_link_validity_secs: if magic_link_validity_secs == 0 {
                DEFAULT_MAGIC_LINK_SECS
            } else {
                magic_link_validity_secs
            },
            modified_at: 0,
        };
        policy.validate()?;
        Ok(policy)
    }

    /// Checks the policy as Cognito does (`PASSWORD` must be allowed), and
    /// the magic-link validity's bounds.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if !self.allowed_first_auth_factors.contains(&FirstFactor::Password) {
            return Err(ValidationError::new(
                "sign_in_policy.allowed_first_auth_factors",
                "must include PASSWORD",
            ));
        }
        let mut sorted = self.allowed_first_auth_factors.clone();
        sorted.sort();
        sorted.dedup();
        if sorted != self.allowed_first_auth_factors {
            return Err(ValidationError::new(
                "sign_in_policy.allowed_first_auth_factors",
                "each factor once, in canonical order",
            ));
        }
        if !(MIN_MAGIC_LINK_SECS..=MAX_MAGIC_LINK_SECS).contains(&self.magic_link_validity_secs) {
            return Err(ValidationError::new(
                "sign_in_policy.magic_link_validity_seconds",
                format!("must be {MIN_MAGIC_LINK_SECS} to {MAX_MAGIC_LINK_SECS} seconds"),
            ));
        }
        Ok(())
    }

    /// Whether the pool allows `factor` as a first factor.
    pub fn allows(&self, factor: FirstFactor) -> bool {
        self.allowed_first_auth_factors.contains(&factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_need_password_and_bounded_links() {
        SignInPolicy::default().validate().unwrap();
        let p = SignInPolicy::from_names(["EMAIL_OTP", "PASSWORD", "EMAIL_OTP", "MAGIC_LINK"], 0).unwrap();
        assert_eq!(
            p.allowed_first_auth_factors,
            vec![FirstFactor::Password, FirstFactor::EmailOtp, FirstFactor::MagicLink]
        );
        assert_eq!(p.magic_link_validity_secs, DEFAULT_MAGIC_LINK_SECS);
        assert!(p.allows(FirstFactor::EmailOtp) && !p.allows(FirstFactor::SmsOtp));
        let err = SignInPolicy::from_names(["EMAIL_OTP"], 0).unwrap_err();
        assert!(err.to_string().contains("must include PASSWORD"), "{err}");
        let p = SignInPolicy::from_names(["WEB_AUTHN", "PASSWORD"], 0).unwrap();
        assert_eq!(
            p.allowed_first_auth_factors,
            vec![FirstFactor::Password, FirstFactor::WebAuthn]
        );
        let err = SignInPolicy::from_names(["PASSWORD", "PASSWORD_SRP"], 0).unwrap_err();
        assert!(err.to_string().contains("USER_SRP_AUTH"), "{err}");
        assert!(SignInPolicy::from_names(["PASSWORD", "password"], 0).is_err());
        assert!(SignInPolicy::from_names(["PASSWORD"], 30).is_err());
        assert!(SignInPolicy::from_names(["PASSWORD"], 3601).is_err());
        assert!(SignInPolicy::from_names(["PASSWORD"], 60).is_ok());
        let unsorted = SignInPolicy {
            allowed_first_auth_factors: vec![FirstFactor::EmailOtp, FirstFactor::Password],
            ..SignInPolicy::default()
        };
        assert!(unsorted.validate().is_err(), "a peer's entry is checked as well");
    }
}
