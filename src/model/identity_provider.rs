//! External identity providers of a user pool (Cognito's
//! `CreateIdentityProvider`): OpenID Connect issuers whose id tokens sign
//! users in, and the mapping of their claims onto user attributes.
//!
//! The token exchange that mobile apps use with the Google and Apple SDKs
//! needs only the issuer, the accepted client ids and where the keys are;
//! the client secrets and signing keys that the browser redirect flow needs
//! are refused until that flow exists (with the hosted sign-in page), so no
//! secret sits in the store unused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// Most providers in one pool (Cognito's default quota is 300).
pub const MAX_PROVIDERS_PER_POOL: usize = 300;
/// Most entries in an attribute mapping.
pub const MAX_MAPPINGS: usize = 50;
/// Detail keys that hold secrets of the redirect flow.
const SECRET_DETAILS: &[&str] = &["client_secret", "private_key"];
/// Detail keys understood here.
const KNOWN_DETAILS: &[&str] = &[
    "client_id",
    "oidc_issuer",
    "jwks_uri",
    "discovery_url",
    "authorize_scopes",
    "attributes_request_method",
    "team_id",
    "key_id",
    "api_version",
    "authorize_url",
    "token_url",
    "attributes_url",
    "attributes_url_add_attributes",
];

/// The kinds of providers (Cognito's `ProviderType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderType {
    /// Any OpenID Connect issuer (`oidc_issuer` in the details).
    Oidc,
    /// Google (`https://accounts.google.com`).
    Google,
    /// Sign in with Apple (`https://appleid.apple.com`).
    SignInWithApple,
    /// Facebook Limited Login (`https://www.facebook.com`).
    Facebook,
}

impl ProviderType {
    /// Cognito's string.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderType::Oidc => "OIDC",
            ProviderType::Google => "Google",
            ProviderType::SignInWithApple => "SignInWithApple",
            ProviderType::Facebook => "Facebook",
        }
    }

    /// Parses Cognito's string.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s {
            "OIDC" => Ok(Self::Oidc),
            "Google" => Ok(Self::Google),
            "SignInWithApple" => Ok(Self::SignInWithApple),
            "Facebook" => Ok(Self::Facebook),
            "SAML" | "LoginWithAmazon" => Err(ValidationError::new(
                "provider_type",
                format!("{s} is not supported: its tokens are not OpenID Connect id tokens"),
            )),
            other => Err(ValidationError::new(
                "provider_type",
                format!("{other:?}: use OIDC, Google, SignInWithApple or Facebook"),
            )),
        }
    }

    /// The issuer of the fixed providers.
    fn fixed_issuer(self) -> Option<&'static str> {
        match self {
            ProviderType::Oidc => None,
            ProviderType::Google => Some("https://accounts.google.com"),
            ProviderType::SignInWithApple => Some("https://appleid.apple.com"),
            ProviderType::Facebook => Some("https://www.facebook.com"),
        }
    }
}

/// An identity provider as stored and replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityProvider {
    /// The user pool.
    pub pool_id: String,
    /// Its name in the pool (`Google`, `corp-oidc`); the prefix of its
    /// federated users' names.
    pub provider_name: String,
    /// What kind of provider.
    pub provider_type: ProviderType,
    /// Cognito's `ProviderDetails`, secrets excluded.
    pub details: BTreeMap<String, String>,
    /// User-pool attribute -> provider claim.
    pub attribute_mapping: BTreeMap<String, String>,
    /// Other names of the provider (Cognito's `IdpIdentifiers`).
    pub idp_identifiers: Vec<String>,
    /// Unix milliseconds.
    pub creation_date: i64,
    /// Unix milliseconds of the latest change.
    pub last_modified_date: i64,
}

impl IdentityProvider {
    /// The issuer its id tokens carry.
    pub fn issuer(&self) -> String {
        match self.provider_type.fixed_issuer() {
            Some(i) => self
                .details
                .get("oidc_issuer")
                .cloned()
                .unwrap_or_else(|| i.to_string()),
            None => self.details.get("oidc_issuer").cloned().unwrap_or_default(),
        }
    }

    /// The accepted client ids (`client_id`, several separated by spaces
    /// or commas).
    pub fn client_ids(&self) -> Vec<String> {
        self.details
            .get("client_id")
            .map(|s| {
                s.split([' ', ','])
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The name of the federated user of `subject`: `{provider}_{subject}`.
    pub fn username_for(&self, subject: &str) -> String {
        format!("{}_{subject}", self.provider_name)
    }

    /// Checks every field, as the edge does before a command is proposed.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_provider_name(&self.provider_name)?;
        for (k, v) in &self.details {
            if SECRET_DETAILS.contains(&k.as_str()) {
                return Err(ValidationError::new(
                    "provider_details",
                    format!(
                        "{k}: the token exchange does not use it, and the browser redirect flow that does is not \
                         available yet; leave it out"
                    ),
                ));
            }
            if !KNOWN_DETAILS.contains(&k.as_str()) {
                return Err(ValidationError::new(
                    "provider_details",
                    format!(
                        "{k:?} is not a provider detail Tessera knows ({})",
                        KNOWN_DETAILS.join(", ")
                    ),
                ));
            }
            if v.chars().count() > 2048 || v.chars().any(char::is_control) {
                return Err(ValidationError::new(
                    "provider_details",
                    format!("{k}: at most 2048 characters, no control characters"),
                ));
            }
        }
        let ids = self.client_ids();
        if ids.is_empty() || ids.len() > 100 {
            return Err(ValidationError::new(
                "provider_details.client_id",
                "1 to 100 client ids: tokens whose aud matches none are refused",
            ));
        }
        let issuer = self.issuer();
        if !(issuer.starts_with("https://") || issuer.starts_with("http://")) || issuer.len() < 9 {
            return Err(ValidationError::new(
                "provider_details.oidc_issuer",
                format!("{issuer:?}: the issuer's http(s) URL is required for an OIDC provider"),
            ));
        }
        if self.details.contains_key("jwks_uri") && self.details.contains_key("discovery_url") {
            return Err(ValidationError::new(
                "provider_details",
                "give jwks_uri or discovery_url, not both",
            ));
        }
        if self.attribute_mapping.len() > MAX_MAPPINGS {
            return Err(ValidationError::new(
                "attribute_mapping",
                format!("at most {MAX_MAPPINGS} entries"),
            ));
        }
        for (attr, claim) in &self.attribute_mapping {
            if attr == "sub" || attr == "identities" {
                return Err(ValidationError::new(
                    "attribute_mapping",
                    format!("{attr} is set by Tessera and cannot be mapped"),
                ));
            }
            for (what, s) in [("attribute", attr), ("claim", claim)] {
                if s.is_empty() || s.chars().count() > 128 || s.chars().any(char::is_control) {
                    return Err(ValidationError::new(
                        "attribute_mapping",
                        format!("{what} names are 1 to 128 characters"),
                    ));
                }
            }
        }
        if self.idp_identifiers.len() > 50 {
            return Err(ValidationError::new("idp_identifiers", "at most 50"));
        }
        for i in &self.idp_identifiers {
            if i.is_empty() || i.chars().count() > 40 || !i.chars().all(|c| c.is_alphanumeric() || "_.-".contains(c)) {
                return Err(ValidationError::new(
                    "idp_identifiers",
                    format!("{i:?}: 1 to 40 of letters, digits, _ . -"),
                ));
            }
        }
        Ok(())
    }
}

/// Cognito's provider name: 1..=32 characters without control characters
/// or `_`-free constraints beyond Cognito's (`[^_\p{Z}][\p{L}\p{M}\p{S}\p{N}\p{P}][^_\p{Z}]+`),
/// and never `Cognito`, which names the pool's own users.
pub fn validate_provider_name(name: &str) -> Result<(), ValidationError> {
    let n = name.chars().count();
    if !(1..=32).contains(&n) {
        return Err(ValidationError::new("provider_name", "1 to 32 characters"));
    }
    if name.eq_ignore_ascii_case("cognito") {
        return Err(ValidationError::new(
            "provider_name",
            "Cognito names the pool's own users; choose another name",
        ));
    }
    if name.contains('_') || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValidationError::new(
            "provider_name",
            "no underscore, space or control character (federated users are named {provider}_{subject})",
        ));
    }
    Ok(())
}

/// One external identity linked to a user (Cognito's `identities` claim).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderLink {
    /// The provider's name in the pool.
    pub provider_name: String,
    /// The provider's `sub`.
    pub subject: String,
    /// Unix milliseconds.
    pub linked_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn google() -> IdentityProvider {
        IdentityProvider {
            pool_id: "local_abc".into(),
            provider_name: "Google".into(),
            provider_type: ProviderType::Google,
            details: [("client_id".to_string(), "web-client android-client".to_string())].into(),
            attribute_mapping: [("email".to_string(), "email".to_string())].into(),
            idp_identifiers: vec![],
            creation_date: 1,
            last_modified_date: 1,
        }
    }

    #[test]
    fn fixed_providers_know_their_issuer_and_take_several_client_ids() {
        let g = google();
        g.validate().unwrap();
        assert_eq!(g.issuer(), "https://accounts.google.com");
        assert_eq!(g.client_ids(), vec!["web-client", "android-client"]);
        assert_eq!(g.username_for("1234"), "Google_1234");
    }

    #[test]
    fn secrets_names_and_issuers_are_checked() {
        let mut g = google();
        g.details.insert("client_secret".into(), "s3cret".into());
        assert!(g.validate().unwrap_err().reason.contains("client_secret"));
        let mut o = google();
        o.provider_type = ProviderType::Oidc;
        assert_eq!(o.validate().unwrap_err().field, "provider_details.oidc_issuer");
        o.details
            .insert("oidc_issuer".into(), "https://login.example.com".into());
        o.validate().unwrap();
        assert!(validate_provider_name("Cognito").is_err());
        assert!(validate_provider_name("my_idp").is_err());
        assert!(ProviderType::parse("SAML").is_err());
        let mut m = google();
        m.attribute_mapping.insert("sub".into(), "sub".into());
        assert!(m.validate().is_err());
    }
}
