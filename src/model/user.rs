//! Users of a pool, and validation of their attributes against the pool's
//! schema.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::pool_settings::{AttributeType, PoolSettings, SignInAlias};
use super::ValidationError;

/// Longest username (Cognito: 128).
pub const MAX_USERNAME_CHARS: usize = 128;
/// Most attributes one request may carry.
pub const MAX_ATTRIBUTES: usize = 100;

/// Cognito's user statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserStatus {
    /// Signed up, but the sign-up is not confirmed yet; cannot sign in.
    Unconfirmed,
    /// Confirmed; may sign in.
    Confirmed,
    /// Created by an admin with a temporary password, which must be changed at the first sign-in.
    ForceChangePassword,
    /// An admin required a password reset; the user must reset it with a code before signing in.
    ResetRequired,
    /// Created by a sign-in through an external identity provider; it has
    /// no password and signs in only through that provider.
    ExternalProvider,
}

impl UserStatus {
    /// The string Cognito uses on the wire.
    pub fn as_cognito(self) -> &'static str {
        match self {
            UserStatus::Unconfirmed => "UNCONFIRMED",
            UserStatus::Confirmed => "CONFIRMED",
            UserStatus::ForceChangePassword => "FORCE_CHANGE_PASSWORD",
            UserStatus::ResetRequired => "RESET_REQUIRED",
            UserStatus::ExternalProvider => "EXTERNAL_PROVIDER",
        }
    }
}

/// A user as stored and replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The pool the user belongs to.
    pub pool_id: String,
    /// A UUID chosen by the proposer; never changes.
    pub sub: String,
    /// As the user chose it (case preserved).
    pub username: String,
    /// Attribute values other than `sub`, `email_verified` and
    /// `phone_number_verified`, which are fields.
    pub attributes: BTreeMap<String, String>,
    /// Where the user is in sign-up and password life.
    pub status: UserStatus,
    /// A disabled user cannot sign in and their tokens are refused.
    pub enabled: bool,
    /// argon2id PHC string; `None` for users without a password.
    pub password_phc: Option<String>,
    /// Whether `email` was proven with a code (or set verified by an admin).
    pub email_verified: bool,
    /// Whether `phone_number` was proven with a code (or set verified by an admin).
    pub phone_number_verified: bool,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds of the latest update.
    pub modified_at: i64,
    /// Tokens issued before this time (Unix ms) are refused: set by
    /// `GlobalSignOut`. 0 when never signed out.
    pub tokens_revoked_before_ms: i64,
    /// When an admin-set temporary password stops working (Unix ms).
    pub temporary_password_expires_at: Option<i64>,
    /// Refresh tokens issued before this time (Unix ms) are refused: set
    /// by password changes and resets and by disabling the user, which end
    /// every session without cutting off the access token in hand.
    pub refresh_revoked_before_ms: i64,
    /// New email or phone number values waiting for verification. Until
    /// verified, the old value in `attributes` stays in force for sign-in
    /// and recovery, so a typo or a hijacked session cannot take over the
    /// account's recovery address.
    pub pending_attributes: BTreeMap<String, String>,
}

impl User {
    /// The user without its password hash: what an outcome carries back to
    /// the proposer, possibly over the peer link, since no caller of a
    /// write needs the hash.
    pub fn without_secrets(mut self) -> Self {
        self.password_phc = None;
        self
    }

    /// Whether the current value of `alias`'s attribute is verified.
    pub fn is_verified(&self, alias: SignInAlias) -> bool {
        match alias {
            SignInAlias::Email => self.email_verified,
            SignInAlias::PhoneNumber => self.phone_number_verified,
        }
    }

    /// Sets the verification flag of `alias`'s attribute.
    pub fn set_verified(&mut self, alias: SignInAlias, verified: bool) {
        match alias {
            SignInAlias::Email => self.email_verified = verified,
            SignInAlias::PhoneNumber => self.phone_number_verified = verified,
        }
    }

    /// The alias values this user holds in `settings`' pool, normalized
    /// for uniqueness (emails are case-insensitive). Only a verified value
    /// holds an alias (as in Cognito): an unverified email reserves
    /// nothing, so typing someone else's address blocks no one, and the
    /// value is claimed (or refused with `AliasExistsException`) when it
    /// is verified.
    pub fn alias_keys(&self, settings: &PoolSettings) -> Vec<(SignInAlias, String)> {
        settings
            .alias_attributes
            .iter()
            .filter(|alias| self.is_verified(**alias))
            .filter_map(|alias| {
                let value = self.attributes.get(alias.attribute())?;
                let key = match alias {
                    SignInAlias::Email => value.to_lowercase(),
                    SignInAlias::PhoneNumber => value.clone(),
                };
                Some((*alias, key))
            })
            .collect()
    }
}

/// Cognito's username rule: 1..=128 characters, no whitespace or control
/// characters.
pub fn validate_username(username: &str) -> Result<(), ValidationError> {
    let n = username.chars().count();
    if n == 0 || n > MAX_USERNAME_CHARS {
        return Err(ValidationError::new("username", "must be 1 to 128 characters"));
    }
    if username.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValidationError::new(
            "username",
            "must not contain spaces or control characters",
        ));
    }
    Ok(())
}

/// Cognito's rule for pools that sign in with an email or phone alias: a
/// username in that form is refused, since it would shadow the alias of
/// another user (a username is looked up before aliases).
pub fn validate_username_for_pool(settings: &PoolSettings, username: &str) -> Result<(), ValidationError> {
    validate_username(username)?;
    for alias in &settings.alias_attributes {
        match alias {
            // Any `@` makes the lookup try the email alias.
            SignInAlias::Email if username.contains('@') => {
                return Err(ValidationError::new(
                    "username",
                    "Username cannot be of email format, since user pool is configured for email alias.",
                ))
            }
            SignInAlias::PhoneNumber if validate_phone(username).is_ok() => {
                return Err(ValidationError::new(
                    "username",
                    "Username cannot be of phone format, since user pool is configured for phone_number alias.",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A plausible email: one `@`, a non-empty local part and a dotted domain.
pub fn validate_email(value: &str) -> Result<(), ValidationError> {
    let ok = value.len() <= 254
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.chars().any(|c| c.is_whitespace())
        });
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "email",
            format!("{value:?} is not a valid email address"),
        ))
    }
}

/// E.164: `+` then 2 to 15 digits.
pub fn validate_phone(value: &str) -> Result<(), ValidationError> {
    let digits = value.strip_prefix('+').unwrap_or("");
    if (2..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ValidationError::new(
            "phone_number",
            format!("{value:?} is not in E.164 form, like +14325551212"),
        ))
    }
}

/// Checks attributes supplied at sign-up or by an admin against the schema:
/// known names, types, lengths, formats, and every required attribute
/// present.
pub fn validate_new_attributes(
    settings: &PoolSettings,
    attributes: &BTreeMap<String, String>,
) -> Result<(), ValidationError> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(ValidationError::new(
            "user_attributes",
            format!("at most {MAX_ATTRIBUTES} attributes"),
        ));
    }
    for (name, value) in attributes {
        // Index keys separate fields with a zero byte.
        if value.contains('\0') {
            return Err(ValidationError::new(
                "user_attributes",
                format!("{name} contains a zero byte"),
            ));
        }
        if name == "sub" {
            return Err(ValidationError::new("user_attributes", "sub is assigned by the pool"));
        }
        let Some(schema) = settings.schema.get(name) else {
            return Err(ValidationError::new(
                "user_attributes",
                format!("{name:?} is not in the pool's schema"),
            ));
        };
        if value.chars().count() > schema.max_length as usize {
            return Err(ValidationError::new(
                "user_attributes",
                format!("{name} is longer than {} characters", schema.max_length),
            ));
        }
        match schema.attribute_type {
            AttributeType::Number if value.parse::<f64>().is_err() => {
                return Err(ValidationError::new(
                    "user_attributes",
                    format!("{name} must be a number"),
                ));
            }
            AttributeType::Boolean if value != "true" && value != "false" => {
                return Err(ValidationError::new(
                    "user_attributes",
                    format!("{name} must be true or false"),
                ));
            }
            _ => {}
        }
        match name.as_str() {
            "email" => validate_email(value)?,
            "phone_number" => validate_phone(value)?,
            _ => {}
        }
    }
    for (name, schema) in &settings.schema {
        if schema.required && !attributes.contains_key(name) {
            return Err(ValidationError::new(
                "user_attributes",
                format!("the required attribute {name} is missing"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn usernames_emails_phones() {
        assert!(validate_username("alice").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("a b").is_err());
        assert!(validate_username(&"x".repeat(129)).is_err());
        assert!(validate_email("a@example.com").is_ok());
        for bad in ["a@b", "@example.com", "a@@b.com", "a b@c.com", "a@.com"] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
        assert!(validate_phone("+14325551212").is_ok());
        assert!(validate_phone("4325551212").is_err());
        assert!(validate_phone("+1-432").is_err());
    }

    #[test]
    fn attributes_follow_the_schema() {
        let mut settings = PoolSettings::default();
        assert!(validate_new_attributes(&settings, &attrs(&[("email", "a@example.com")])).is_ok());
        assert!(validate_new_attributes(&settings, &attrs(&[("email", "nope")])).is_err());
        assert!(
            validate_new_attributes(&settings, &attrs(&[("custom:tier", "gold")])).is_err(),
            "not in schema"
        );
        assert!(validate_new_attributes(&settings, &attrs(&[("sub", "x")])).is_err());
        assert!(validate_new_attributes(&settings, &attrs(&[("updated_at", "soon")])).is_err());
        if let Some(s) = settings.schema.get_mut("email") {
            s.required = true;
        }
        let err = validate_new_attributes(&settings, &attrs(&[("name", "A")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("required attribute email"), "{err}");
    }

    #[test]
    fn alias_keys_are_normalized() {
        let settings = PoolSettings {
            alias_attributes: vec![SignInAlias::Email],
            ..PoolSettings::default()
        };
        let user = User {
            pool_id: "local_x".into(),
            sub: "s".into(),
            username: "Alice".into(),
            attributes: attrs(&[("email", "Alice@Example.com"), ("phone_number", "+15550001")]),
            status: UserStatus::Unconfirmed,
            enabled: true,
            password_phc: None,
            email_verified: true,
            phone_number_verified: false,
            created_at: 0,
            modified_at: 0,
            tokens_revoked_before_ms: 0,
            temporary_password_expires_at: None,
            refresh_revoked_before_ms: 0,
            pending_attributes: BTreeMap::new(),
        };
        assert_eq!(
            user.alias_keys(&settings),
            vec![(SignInAlias::Email, "alice@example.com".to_string())]
        );
        let mut unverified = user.clone();
        unverified.email_verified = false;
        assert!(
            unverified.alias_keys(&settings).is_empty(),
            "an unverified email holds no alias"
        );
    }

    #[test]
    fn alias_pools_refuse_usernames_in_alias_form() {
        let mut settings = PoolSettings::default();
        assert!(validate_username_for_pool(&settings, "a@example.com").is_ok());
        settings.alias_attributes = vec![SignInAlias::Email, SignInAlias::PhoneNumber];
        let err = validate_username_for_pool(&settings, "bob@example.com").unwrap_err();
        assert!(err.reason.contains("email format"), "{err}");
        let err = validate_username_for_pool(&settings, "+14325551212").unwrap_err();
        assert!(err.reason.contains("phone format"), "{err}");
        assert!(validate_username_for_pool(&settings, "bob").is_ok());
        assert!(validate_username_for_pool(&settings, "+bob").is_ok());
    }
}
