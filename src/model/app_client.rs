//! App clients: how an application identifies itself to a user pool, which
//! auth flows it may use, and what it may read and write.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::pool_settings::{TokenValidity, STANDARD_ATTRIBUTES};
use super::ValidationError;

/// Cognito's client-id length; ids are lowercase letters and digits.
pub const CLIENT_ID_CHARS: usize = 26;
/// Length of generated client secrets (Cognito's are 51 or 52).
pub const CLIENT_SECRET_CHARS: usize = 52;

/// Auth flows an app client may be allowed (Cognito's `ALLOW_*` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AuthFlow {
    /// `ALLOW_USER_PASSWORD_AUTH`: sign-in with username and password (`USER_PASSWORD_AUTH`).
    UserPassword,
    /// `ALLOW_REFRESH_TOKEN_AUTH`: new access and id tokens from a refresh token.
    RefreshToken,
    /// `ALLOW_ADMIN_USER_PASSWORD_AUTH`: password sign-in on a user's behalf by an admin caller.
    AdminUserPassword,
    /// `ALLOW_FEDERATED_ID_TOKEN_AUTH` (Tessera addition): sign-in with an
    /// external identity provider's id token (`FEDERATED_ID_TOKEN_AUTH`),
    /// the exchange mobile apps do after the Google or Apple SDK.
    FederatedIdToken,
    /// `ALLOW_CUSTOM_AUTH`: sign-in driven by the pool's custom-auth
    /// triggers (`CUSTOM_AUTH`).
    CustomAuth,
    /// `ALLOW_USER_AUTH`: choice-based sign-in (`USER_AUTH`): password,
    /// a code by email or SMS, or a magic link, as the pool's sign-in
    /// policy allows.
    UserAuth,
    /// `ALLOW_USER_SRP_AUTH`: Amplify's default, SRP proof of the password
    /// (`USER_SRP_AUTH`), where the pool has SRP on.
    UserSrp,
}

impl AuthFlow {
    /// Every flow, in the order [`AuthFlow::parse`] tries them.
    pub const ALL: [AuthFlow; 7] = [
        AuthFlow::UserPassword,
        AuthFlow::RefreshToken,
        AuthFlow::AdminUserPassword,
        AuthFlow::FederatedIdToken,
        AuthFlow::CustomAuth,
        AuthFlow::UserAuth,
        AuthFlow::UserSrp,
    ];

    /// Cognito's `ExplicitAuthFlows` spelling.
    pub fn as_cognito(self) -> &'static str {
        match self {
            AuthFlow::UserPassword => "ALLOW_USER_PASSWORD_AUTH",
            AuthFlow::RefreshToken => "ALLOW_REFRESH_TOKEN_AUTH",
            AuthFlow::AdminUserPassword => "ALLOW_ADMIN_USER_PASSWORD_AUTH",
            AuthFlow::FederatedIdToken => "ALLOW_FEDERATED_ID_TOKEN_AUTH",
            AuthFlow::CustomAuth => "ALLOW_CUSTOM_AUTH",
            AuthFlow::UserAuth => "ALLOW_USER_AUTH",
            AuthFlow::UserSrp => "ALLOW_USER_SRP_AUTH",
        }
    }

    /// Parses an `ExplicitAuthFlows` value.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        AuthFlow::ALL
            .into_iter()
            .find(|f| f.as_cognito() == s)
            .ok_or_else(|| {
                ValidationError::new(
                    "explicit_auth_flows",
                    format!(
                        "{s:?} is not supported; use ALLOW_USER_PASSWORD_AUTH, ALLOW_REFRESH_TOKEN_AUTH, ALLOW_ADMIN_USER_PASSWORD_AUTH, ALLOW_FEDERATED_ID_TOKEN_AUTH, ALLOW_CUSTOM_AUTH, ALLOW_USER_AUTH or ALLOW_USER_SRP_AUTH"
                    ),
                )
            })
    }
}

/// Units in which a client's token validity is expressed (kept so that
/// `DescribeUserPoolClient` answers in the units it was given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeUnit {
    /// Lifetime given in seconds.
    Seconds,
    /// Lifetime given in minutes.
    Minutes,
    /// Lifetime given in hours.
    Hours,
    /// Lifetime given in days.
    Days,
}

impl TimeUnit {
    /// Seconds in one of this unit, to resolve a validity into seconds.
    pub fn seconds(self) -> u32 {
        match self {
            TimeUnit::Seconds => 1,
            TimeUnit::Minutes => 60,
            TimeUnit::Hours => 3600,
            TimeUnit::Days => 86_400,
        }
    }

    /// Cognito's `TokenValidityUnits` spelling.
    pub fn as_cognito(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "seconds",
            TimeUnit::Minutes => "minutes",
            TimeUnit::Hours => "hours",
            TimeUnit::Days => "days",
        }
    }

    /// Parses a `TokenValidityUnits` value; empty gives `default`.
    pub fn parse(s: &str, default: TimeUnit) -> Result<Self, ValidationError> {
        Ok(match s {
            "" => default,
            "seconds" => TimeUnit::Seconds,
            "minutes" => TimeUnit::Minutes,
            "hours" => TimeUnit::Hours,
            "days" => TimeUnit::Days,
            other => {
                return Err(ValidationError::new(
                    "token_validity_units",
                    format!("{other:?} is not seconds, minutes, hours or days"),
                ))
            }
        })
    }
}

/// Units of the access, id and refresh token validity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidityUnits {
    /// Unit the access token validity was given in.
    pub access: TimeUnit,
    /// Unit the id token validity was given in.
    pub id: TimeUnit,
    /// Unit the refresh token validity was given in.
    pub refresh: TimeUnit,
}

impl Default for ValidityUnits {
    /// Cognito's defaults.
    fn default() -> Self {
        ValidityUnits {
            access: TimeUnit::Hours,
            id: TimeUnit::Hours,
            refresh: TimeUnit::Days,
        }
    }
}

/// A client secret encrypted with the cluster sealing key
/// (`auth::sealing`). Only ciphertext is ever replicated or snapshotted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// AEAD nonce, drawn fresh for each sealing.
    pub nonce: [u8; 12],
    /// The encrypted secret with its authentication tag.
    pub ciphertext: Vec<u8>,
}

/// An app client as stored and replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppClient {
    /// The pool the client belongs to.
    pub pool_id: String,
    /// Generated id ([`CLIENT_ID_CHARS`] lowercase letters and digits); never changes.
    pub client_id: String,
    /// Display name chosen by the admin.
    pub client_name: String,
    /// Sealed client secret; `None` for a public client (no `SECRET_HASH` required).
    pub secret: Option<SealedSecret>,
    /// Flows this client may start; any other is refused.
    pub auth_flows: BTreeSet<AuthFlow>,
    /// Resolved lifetimes in seconds.
    pub token_validity: TokenValidity,
    /// Units the admin gave, so the lifetimes are reported back as they were set.
    pub validity_units: ValidityUnits,
    /// Attributes the client may read; `None` means all.
    pub read_attributes: Option<BTreeSet<String>>,
    /// Attributes the client may write; `None` means all mutable ones.
    pub write_attributes: Option<BTreeSet<String>>,
    /// Answer "incorrect username or password" rather than revealing that a
    /// user does not exist.
    pub prevent_user_existence_errors: bool,
    /// Cognito's `EnableTokenRevocation`, kept and reported as the admin set it.
    pub enable_token_revocation: bool,
    /// Unix milliseconds.
    pub creation_date: i64,
    /// Unix milliseconds of the latest update.
    pub last_modified_date: i64,
}

impl AppClient {
    /// Whether this client may start `flow`.
    pub fn allows(&self, flow: AuthFlow) -> bool {
        self.auth_flows.contains(&flow)
    }

    /// Whether the client may write attribute `name`.
    pub fn may_write(&self, name: &str) -> bool {
        self.write_attributes.as_ref().is_none_or(|w| w.contains(name))
    }
}

/// Cognito's client-name rule: 1..=128 characters of `[\w\s+=,.@-]`.
pub fn validate_client_name(name: &str) -> Result<(), ValidationError> {
    let n = name.chars().count();
    if n == 0 || n > 128 || name.trim().is_empty() {
        return Err(ValidationError::new("client_name", "must be 1 to 128 characters"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || c.is_whitespace() || "_+=,.@-".contains(*c)))
    {
        return Err(ValidationError::new(
            "client_name",
            format!("character {bad:?} is not allowed; use letters, digits, spaces and _+=,.@-"),
        ));
    }
    Ok(())
}

/// A client id as this pool generates them (also bounds what is looked up).
pub fn validate_client_id(id: &str) -> Result<(), ValidationError> {
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ValidationError::new(
            "client_id",
            "is missing or malformed; use the client_id from CreateUserPoolClient",
        ));
    }
    Ok(())
}

/// Draws characters from `[a-z0-9]` using the given random bytes.
pub fn lower_alnum(random: &[u8]) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    random
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Checks an attribute list (`read_attributes`, `write_attributes`) against
/// standard and `custom:` names.
pub fn validate_attribute_names(field: &'static str, names: &BTreeSet<String>) -> Result<(), ValidationError> {
    if names.len() > 100 {
        return Err(ValidationError::new(field, "at most 100 attributes"));
    }
    for n in names {
        let known = STANDARD_ATTRIBUTES.iter().any(|(s, _)| s == n) || n.starts_with("custom:");
        if !known || n.len() > 64 {
            return Err(ValidationError::new(field, format!("{n:?} is not an attribute name")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_units_and_names() {
        assert_eq!(
            AuthFlow::parse("ALLOW_REFRESH_TOKEN_AUTH").unwrap(),
            AuthFlow::RefreshToken
        );
        assert_eq!(AuthFlow::parse("ALLOW_CUSTOM_AUTH").unwrap(), AuthFlow::CustomAuth);
        assert_eq!(AuthFlow::parse("ALLOW_USER_AUTH").unwrap(), AuthFlow::UserAuth);
        assert_eq!(AuthFlow::parse("ALLOW_USER_SRP_AUTH").unwrap(), AuthFlow::UserSrp);
        assert!(AuthFlow::parse("ALLOW_USER_SRP").is_err());
        assert_eq!(TimeUnit::parse("", TimeUnit::Days).unwrap(), TimeUnit::Days);
        assert!(TimeUnit::parse("weeks", TimeUnit::Days).is_err());
        assert!(validate_client_name("web app").is_ok());
        assert!(validate_client_name("bad/name").is_err());
        assert!(validate_client_id("abc123").is_ok());
        assert!(validate_client_id("abc 123").is_err());
        assert_eq!(lower_alnum(&[0, 25, 26, 35, 36]), "az09a");
        let names: BTreeSet<String> = ["email".to_string(), "custom:tier".to_string()].into();
        assert!(validate_attribute_names("read_attributes", &names).is_ok());
        let bad: BTreeSet<String> = ["shoe".to_string()].into();
        assert!(validate_attribute_names("read_attributes", &bad).is_err());
    }
}
