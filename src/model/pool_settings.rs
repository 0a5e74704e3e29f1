//! User pool settings: password policy, sign-in aliases, attribute schema,
//! token validity and hashing cost. Defaults follow Cognito's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// Longest password accepted (Cognito's limit), checked before hashing so
/// that huge inputs cannot buy extra CPU.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// argon2id cost parameters, stored per user pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for Argon2Params {
    /// OWASP's recommendation: m=19 MiB, t=2, p=1.
    fn default() -> Self {
        Argon2Params {
            m_kib: 19 * 1024,
            t: 2,
            p: 1,
        }
    }
}

/// Cognito's password rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordPolicy {
    /// Fewest characters a password may have.
    pub minimum_length: u32,
    /// Whether a password needs a lowercase letter.
    pub require_lowercase: bool,
    /// Whether a password needs an uppercase letter.
    pub require_uppercase: bool,
    /// Whether a password needs a digit.
    pub require_numbers: bool,
    /// Whether a password needs a symbol.
    pub require_symbols: bool,
    /// Days an admin-set temporary password stays valid.
    pub temporary_password_validity_days: u32,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            minimum_length: 8,
            require_lowercase: true,
            require_uppercase: true,
            require_numbers: true,
            require_symbols: true,
            temporary_password_validity_days: 7,
        }
    }
}

/// Cognito's symbol set for password policies.
const SYMBOLS: &str = "^$*.[]{}()?\"!@#%&/\\,><':;|_~`=+-";

impl PasswordPolicy {
    /// Checks `password` against the policy; the message lists what is
    /// missing, never the password.
    pub fn check(&self, password: &str) -> Result<(), ValidationError> {
        let mut missing = Vec::new();
        if (password.chars().count() as u32) < self.minimum_length {
            missing.push(format!("at least {} characters", self.minimum_length));
        }
        if self.require_lowercase && !password.chars().any(|c| c.is_lowercase()) {
            missing.push("a lowercase letter".into());
        }
        if self.require_uppercase && !password.chars().any(|c| c.is_uppercase()) {
            missing.push("an uppercase letter".into());
        }
        if self.require_numbers && !password.chars().any(|c| c.is_ascii_digit()) {
            missing.push("a number".into());
        }
        if self.require_symbols && !password.chars().any(|c| SYMBOLS.contains(c) || c == ' ') {
            missing.push("a symbol".into());
        }
        if password.len() > MAX_PASSWORD_BYTES {
            missing.push(format!("at most {} bytes", MAX_PASSWORD_BYTES));
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ValidationError::new(
                "password",
                format!("does not conform to the policy: needs {}", missing.join(", ")),
            ))
        }
    }

    /// Checks the policy itself.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if !(6..=99).contains(&self.minimum_length) {
            return Err(ValidationError::new("minimum_length", "must be 6 to 99"));
        }
        if !(1..=365).contains(&self.temporary_password_validity_days) {
            return Err(ValidationError::new(
                "temporary_password_validity_days",
                "must be 1 to 365",
            ));
        }
        Ok(())
    }
}

/// Attributes a user may sign in with besides the username.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SignInAlias {
    /// The `email` attribute.
    Email,
    /// The `phone_number` attribute.
    PhoneNumber,
}

impl SignInAlias {
    /// The attribute name carrying this alias.
    pub fn attribute(self) -> &'static str {
        match self {
            SignInAlias::Email => "email",
            SignInAlias::PhoneNumber => "phone_number",
        }
    }
}

/// Value type of a schema attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttributeType {
    /// Free text.
    String,
    /// A number, kept as its decimal text.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A date and time, kept as text.
    DateTime,
}

/// One attribute of the pool's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeSchema {
    /// What values the attribute accepts.
    pub attribute_type: AttributeType,
    /// Whether a value may change after the user is created.
    pub mutable: bool,
    /// Whether every user must have a value.
    pub required: bool,
    /// Longest accepted value, in characters.
    pub max_length: u32,
    /// Custom attributes only: kept in a secondary index so `ListUsers`
    /// can filter on it. Fixed at creation, since turning it on later would
    /// need a backfill of every user.
    pub indexed: bool,
}

/// The standard OIDC attributes Cognito knows, with their types.
pub const STANDARD_ATTRIBUTES: &[(&str, AttributeType)] = &[
    ("address", AttributeType::String),
    ("birthdate", AttributeType::String),
    ("email", AttributeType::String),
    ("email_verified", AttributeType::Boolean),
    ("family_name", AttributeType::String),
    ("gender", AttributeType::String),
    ("given_name", AttributeType::String),
    ("locale", AttributeType::String),
    ("middle_name", AttributeType::String),
    ("name", AttributeType::String),
    ("nickname", AttributeType::String),
    ("phone_number", AttributeType::String),
    ("phone_number_verified", AttributeType::Boolean),
    ("picture", AttributeType::String),
    ("preferred_username", AttributeType::String),
    ("profile", AttributeType::String),
    ("updated_at", AttributeType::Number),
    ("website", AttributeType::String),
    ("zoneinfo", AttributeType::String),
];

/// Token lifetimes, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenValidity {
    /// Lifetime of id tokens.
    pub id_token_secs: u32,
    /// Lifetime of access tokens.
    pub access_token_secs: u32,
    /// Lifetime of refresh tokens.
    pub refresh_token_secs: u32,
}

impl Default for TokenValidity {
    /// Cognito's defaults: 1 h id and access tokens, 30 days refresh.
    fn default() -> Self {
        TokenValidity {
            id_token_secs: 3600,
            access_token_secs: 3600,
            refresh_token_secs: 30 * 24 * 3600,
        }
    }
}

impl TokenValidity {
    /// Cognito's bounds: 5 min to 1 day for id/access, 1 h to 10 years for
    /// refresh.
    pub fn validate(&self) -> Result<(), ValidationError> {
        for (field, v) in [
            ("id_token_validity", self.id_token_secs),
            ("access_token_validity", self.access_token_secs),
        ] {
            if !(300..=86_400).contains(&v) {
                return Err(ValidationError::new(field, "must be 5 minutes to 1 day"));
            }
        }
        if !(3600..=315_360_000).contains(&self.refresh_token_secs) {
            return Err(ValidationError::new(
                "refresh_token_validity",
                "must be 1 hour to 10 years",
            ));
        }
        Ok(())
    }
}

/// Every setting of a user pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSettings {
    /// Rules new passwords must meet.
    pub password_policy: PasswordPolicy,
    /// Aliases users may sign in with; each is unique within the pool.
    pub alias_attributes: Vec<SignInAlias>,
    /// Whether `Alice` and `alice` are different users (default: no).
    pub username_case_sensitive: bool,
    /// Attributes whose verification is offered at sign-up.
    pub auto_verified_attributes: Vec<SignInAlias>,
    /// Cognito's `UserAttributeUpdateSettings.AttributesRequireVerificationBeforeUpdate`:
    /// a verified email or phone number listed here keeps serving (sign-in,
    /// recovery) until a new value is verified with a code; the new value
    /// waits in `User::pending_attributes`. An attribute not listed is
    /// replaced at once, unverified. Must be a subset of
    /// `auto_verified_attributes` (a value nobody can verify would never
    /// take over). Default: the auto-verified attributes.
    pub attributes_require_verification_before_update: Vec<SignInAlias>,
    /// Standard attributes as configured, and `custom:*` ones.
    pub schema: BTreeMap<String, AttributeSchema>,
    /// Default token lifetimes for the pool's app clients.
    pub token_validity: TokenValidity,
    /// argon2id cost for hashing this pool's passwords.
    pub argon2: Argon2Params,
}

impl Default for PoolSettings {
    fn default() -> Self {
        let schema = STANDARD_ATTRIBUTES
            .iter()
            .map(|(name, t)| {
                (
                    (*name).to_string(),
                    AttributeSchema {
                        attribute_type: *t,
                        mutable: true,
                        required: false,
                        max_length: 2048,
                        indexed: false,
                    },
                )
            })
            .collect();
        PoolSettings {
            password_policy: PasswordPolicy::default(),
            alias_attributes: Vec::new(),
            username_case_sensitive: false,
            auto_verified_attributes: vec![SignInAlias::Email],
            attributes_require_verification_before_update: vec![SignInAlias::Email],
            schema,
            token_validity: TokenValidity::default(),
            argon2: Argon2Params::default(),
        }
    }
}

impl PoolSettings {
    /// Checks the settings as a whole.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.password_policy.validate()?;
        self.token_validity.validate()?;
        for name in self.schema.keys() {
            let standard = STANDARD_ATTRIBUTES.iter().any(|(n, _)| n == name);
            let custom = name.strip_prefix("custom:").is_some_and(|rest| {
                !rest.is_empty() && rest.len() <= 20 && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
            if !standard && !custom {
                return Err(ValidationError::new(
                    "schema",
                    format!("{name:?} is neither a standard attribute nor custom:<1-20 letters, digits or _>"),
                ));
            }
        }
        if let Some(a) = self
            .attributes_require_verification_before_update
            .iter()
            .find(|a| !self.auto_verified_attributes.contains(a))
        {
            return Err(ValidationError::new(
                "attributes_require_verification_before_update",
                format!(
                    "{} must also be in auto_verified_attributes: only an attribute verified by a code can wait for verification",
                    a.attribute()
                ),
            ));
        }
        if self.schema.len() > 50 + STANDARD_ATTRIBUTES.len() {
            return Err(ValidationError::new("schema", "at most 50 custom attributes"));
        }
        let a = &self.argon2;
        if !(8 * 1024..=1024 * 1024).contains(&a.m_kib) || !(1..=10).contains(&a.t) || !(1..=8).contains(&a.p) {
            return Err(ValidationError::new(
                "argon2",
                "memory 8 MiB to 1 GiB, iterations 1 to 10, parallelism 1 to 8",
            ));
        }
        Ok(())
    }

    /// Whether a change to the verified value of `alias` waits for the new
    /// value to be verified (the old one serving meanwhile). Only an
    /// attribute that is also auto-verified can wait: after an
    /// `UpdateUserPool` dropped it from auto-verification, changes apply
    /// at once.
    pub fn keeps_original_until_verified(&self, alias: SignInAlias) -> bool {
        self.attributes_require_verification_before_update.contains(&alias)
            && self.auto_verified_attributes.contains(&alias)
    }

    /// The key under which `username` is unique in this pool.
    pub fn normalize_username(&self, username: &str) -> String {
        if self.username_case_sensitive {
            username.to_string()
        } else {
            username.to_lowercase()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_names_what_is_missing() {
        let p = PasswordPolicy::default();
        assert!(p.check("Correct-Horse-1").is_ok());
        let err = p.check("short").unwrap_err().to_string();
        assert!(
            err.contains("at least 8 characters")
                && err.contains("an uppercase letter")
                && err.contains("a number")
                && err.contains("a symbol"),
            "{err}"
        );
        assert!(!err.contains("short"), "the message must not echo the password");
        let relaxed = PasswordPolicy {
            require_symbols: false,
            require_uppercase: false,
            ..PasswordPolicy::default()
        };
        assert!(relaxed.check("password1").is_ok());
    }

    #[test]
    fn defaults_are_valid_and_bad_settings_are_explained() {
        let s = PoolSettings::default();
        s.validate().unwrap();
        assert_eq!(s.token_validity.refresh_token_secs, 2_592_000);
        assert_eq!(s.normalize_username("Alice"), "alice");
        let mut bad = s.clone();
        bad.schema.insert("shoe_size".into(), s.schema["email"].clone());
        assert!(bad.validate().unwrap_err().to_string().contains("shoe_size"));
        let mut good = s.clone();
        good.schema.insert("custom:tier".into(), s.schema["email"].clone());
        good.validate().unwrap();
        let mut waits = s.clone();
        waits.attributes_require_verification_before_update = vec![SignInAlias::PhoneNumber];
        assert!(waits
            .validate()
            .unwrap_err()
            .to_string()
            .contains("auto_verified_attributes"));
        assert!(s.keeps_original_until_verified(SignInAlias::Email));
        assert!(!s.keeps_original_until_verified(SignInAlias::PhoneNumber));
        let mut weak = s;
        weak.argon2.m_kib = 1024;
        assert!(weak.validate().is_err());
    }
}
