//! External identity providers of a user pool (Cognito's
//! `CreateIdentityProvider`): OpenID Connect issuers whose id tokens sign
//! users in, and the mapping of their claims onto user attributes.
//!
//! The token exchange that mobile apps use with the Google and Apple SDKs
//! needs only the issuer, the accepted client ids and where the keys are.
//! Social sign-in by redirect on the hosted page (`service::oauth::social`)
//! also needs the provider's endpoints ([`IdentityProvider::endpoints`]),
//! the scopes to ask for, and a way to authenticate at its token endpoint:
//! `client_secret` (OIDC, Google, Facebook) or, for Sign in with Apple,
//! `private_key` (PKCS#8 PEM, ES256) with `team_id` and `key_id`, from
//! which the client-secret JWT is made at each exchange.
//!
//! Those secrets are never stored in clear: the service seals them with the
//! cluster sealing key before it proposes the provider, and keeps them as
//! detail values `sealed:<base64url>` ([`SEALED_PREFIX`]), bound to the
//! pool, the provider and the detail's name. [`IdentityProvider::validate`]
//! refuses a secret detail that is not sealed, so a clear secret can never
//! reach the Raft log, and [`IdentityProvider::redacted`] is what Describe
//! and List answer: without the secret details at all. Keeping secrets in
//! `details` (rather than a new field) keeps the postcard encoding of old
//! log entries and snapshots readable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// Most providers in one pool (Cognito's default quota is 300).
pub const MAX_PROVIDERS_PER_POOL: usize = 300;
/// Most entries in an attribute mapping.
pub const MAX_MAPPINGS: usize = 50;
/// Detail keys that hold secrets of the redirect flow: stored sealed,
/// never answered.
pub const SECRET_DETAILS: &[&str] = &["client_secret", "private_key"];
/// The prefix of a sealed secret detail's value.
pub const SEALED_PREFIX: &str = "sealed:";
/// Longest sealed secret detail value (a sealed 1 KiB secret or a PEM key
/// fits easily).
const MAX_SEALED_DETAIL: usize = 4096;
/// Most scopes in `authorize_scopes`.
const MAX_SCOPES: usize = 50;
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

    /// The authorization and token endpoints of the fixed providers, as
    /// they document them (Facebook's versioned by `api_version`).
    fn fixed_endpoints(self, api_version: Option<&str>) -> Option<(String, String)> {
        match self {
            ProviderType::Oidc => None,
            ProviderType::Google => Some((
                "https://accounts.google.com/o/oauth2/v2/auth".into(),
                "https://oauth2.googleapis.com/token".into(),
            )),
            ProviderType::SignInWithApple => Some((
                "https://appleid.apple.com/auth/authorize".into(),
                "https://appleid.apple.com/auth/token".into(),
            )),
            ProviderType::Facebook => {
                let v = api_version.unwrap_or("v19.0");
                Some((
                    format!("https://www.facebook.com/{v}/dialog/oauth"),
                    format!("https://graph.facebook.com/{v}/oauth/access_token"),
                ))
            }
        }
    }

    /// The scopes asked for when `authorize_scopes` is not set. Apple
    /// knows `name` rather than `profile`, Facebook `public_profile`.
    fn default_scopes(self) -> &'static str {
        match self {
            ProviderType::Oidc | ProviderType::Google => "openid email profile",
            ProviderType::SignInWithApple => "openid email name",
            ProviderType::Facebook => "openid email public_profile",
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

    /// The client id the redirect flow presents to the provider: the first
    /// of [`IdentityProvider::client_ids`] (the others are apps' own ids,
    /// accepted as audiences of the token exchange).
    pub fn web_client_id(&self) -> Option<String> {
        self.client_ids().into_iter().next()
    }

    /// The scopes the redirect flow asks for: `authorize_scopes`, else the
    /// provider type's default.
    pub fn authorize_scopes(&self) -> String {
        self.details
            .get("authorize_scopes")
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.provider_type.default_scopes().to_string())
    }

    /// The authorization and token endpoints when they are known without
    /// asking the provider: `authorize_url` and `token_url` from the
    /// details, else the fixed providers' documented ones. `None` for an
    /// OIDC provider without both: its discovery document says
    /// (`authorization_endpoint`, `token_endpoint`).
    pub fn endpoints(&self) -> Option<(String, String)> {
        let fixed = self
            .provider_type
            .fixed_endpoints(self.details.get("api_version").map(String::as_str));
        let authorize = self.details.get("authorize_url").cloned();
        let token = self.details.get("token_url").cloned();
        match (authorize, token, fixed) {
            (Some(a), Some(t), _) => Some((a, t)),
            (a, t, Some((fa, ft))) => Some((a.unwrap_or(fa), t.unwrap_or(ft))),
            _ => None,
        }
    }

    /// Whether the redirect flow can authenticate at the token endpoint
    /// with a secret (or, for Apple, a signing key).
    pub fn has_secret(&self) -> bool {
        SECRET_DETAILS.iter().any(|k| self.details.contains_key(*k))
    }

    /// The provider as Describe and List answer it: the secret details
    /// left out (they are write-only; an update that leaves one out keeps
    /// it).
    pub fn redacted(&self) -> IdentityProvider {
        let mut p = self.clone();
        p.details.retain(|k, _| !SECRET_DETAILS.contains(&k.as_str()));
        p
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
                // The service seals secrets before this check; a clear one
                // here would reach the Raft log.
                let sealed = v.strip_prefix(SEALED_PREFIX).is_some_and(|b| {
                    !b.is_empty() && b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
                });
                if !sealed || v.len() > MAX_SEALED_DETAIL {
                    return Err(ValidationError::new(
                        "provider_details",
                        format!("{k}: a secret is stored only sealed by the service"),
                    ));
                }
                continue;
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
        self.validate_redirect_details()?;
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

impl IdentityProvider {
    /// The details of the redirect flow: which secret suits which provider
    /// type, Apple's key with its team and key ids, the endpoints' URLs and
    /// the scopes (which must ask for `openid`: the flow needs an id token).
    fn validate_redirect_details(&self) -> Result<(), ValidationError> {
        let has = |k: &str| self.details.contains_key(k);
        let apple = self.provider_type == ProviderType::SignInWithApple;
        if apple && has("client_secret") {
            return Err(ValidationError::new(
                "provider_details.client_secret",
                "Sign in with Apple takes private_key, team_id and key_id (its client secret is a JWT made from them)",
            ));
        }
        if !apple && has("private_key") {
            return Err(ValidationError::new(
                "provider_details.private_key",
                "only Sign in with Apple takes a private_key; other providers take client_secret",
            ));
        }
        if apple && has("private_key") && !(has("team_id") && has("key_id")) {
            return Err(ValidationError::new(
                "provider_details",
                "private_key needs team_id and key_id (from Apple's developer account)",
            ));
        }
        for k in ["team_id", "key_id"] {
            if let Some(v) = self.details.get(k) {
                if v.is_empty() || v.len() > 64 || !v.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(ValidationError::new(
                        "provider_details",
                        format!("{k}: 1 to 64 letters and digits"),
                    ));
                }
            }
        }
        for k in ["authorize_url", "token_url"] {
            if let Some(v) = self.details.get(k) {
                let scheme_ok = v.starts_with("https://") || v.starts_with("http://");
                if !scheme_ok || v.len() < 10 || v.contains('#') || v.contains(char::is_whitespace) {
                    return Err(ValidationError::new(
                        "provider_details",
                        format!("{k}: an http(s) URL without a fragment or spaces"),
                    ));
                }
            }
        }
        if let Some(v) = self.details.get("api_version") {
            let ok = v.starts_with('v') && v.len() <= 8 && v[1..].chars().all(|c| c.is_ascii_digit() || c == '.');
            if !ok {
                return Err(ValidationError::new(
                    "provider_details.api_version",
                    "a Graph API version such as v19.0",
                ));
            }
        }
        if let Some(v) = self.details.get("authorize_scopes") {
            let scopes: Vec<&str> = v.split_whitespace().collect();
            if scopes.len() > MAX_SCOPES
                || scopes
                    .iter()
                    .any(|s| s.len() > 256 || !s.bytes().all(|c| c.is_ascii_graphic() && c != b'"' && c != b'\\'))
            {
                return Err(ValidationError::new(
                    "provider_details.authorize_scopes",
                    format!("at most {MAX_SCOPES} scopes separated by spaces, each printable ASCII"),
                ));
            }
            if !scopes.contains(&"openid") {
                return Err(ValidationError::new(
                    "provider_details.authorize_scopes",
                    "must include openid: sign-in by redirect needs the provider's id token",
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
        g.details.insert("client_secret".into(), "sealed:AbC-_9".into());
        g.validate().unwrap();
        assert!(g.has_secret());
        assert!(!g.redacted().details.contains_key("client_secret"));
        g.details.insert("client_secret".into(), "sealed:not base64!".into());
        assert!(g.validate().is_err());
        let mut k = google();
        k.details.insert("private_key".into(), "sealed:AA".into());
        assert!(k.validate().unwrap_err().field.contains("private_key"));
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

    #[test]
    fn redirect_details_endpoints_and_scopes() {
        let mut g = google();
        assert_eq!(g.endpoints().unwrap().1, "https://oauth2.googleapis.com/token");
        assert_eq!(g.authorize_scopes(), "openid email profile");
        assert_eq!(g.web_client_id().as_deref(), Some("web-client"));
        g.details
            .insert("token_url".into(), "https://idp.example.com/token".into());
        assert_eq!(g.endpoints().unwrap().1, "https://idp.example.com/token");
        g.details.insert("authorize_scopes".into(), "email profile".into());
        assert!(g.validate().unwrap_err().reason.contains("openid"));
        g.details.insert("authorize_scopes".into(), "openid  email".into());
        g.validate().unwrap();
        assert_eq!(g.authorize_scopes(), "openid email");
        g.details.insert("token_url".into(), "ftp://x/y/z/w".into());
        assert!(g.validate().is_err());

        let mut o = google();
        o.provider_type = ProviderType::Oidc;
        o.details
            .insert("oidc_issuer".into(), "https://login.example.com".into());
        assert_eq!(o.endpoints(), None);
        o.details
            .insert("authorize_url".into(), "https://login.example.com/a".into());
        assert_eq!(o.endpoints(), None, "both URLs, or discovery");

        let mut a = google();
        a.provider_type = ProviderType::SignInWithApple;
        assert_eq!(a.authorize_scopes(), "openid email name");
        a.details.insert("private_key".into(), "sealed:AA".into());
        assert!(a.validate().is_err(), "team_id and key_id are needed");
        a.details.insert("team_id".into(), "TEAM123456".into());
        a.details.insert("key_id".into(), "KEY1234567".into());
        a.validate().unwrap();
        a.details.insert("client_secret".into(), "sealed:AA".into());
        assert!(a.validate().is_err());

        let mut f = google();
        f.provider_type = ProviderType::Facebook;
        f.details.insert("api_version".into(), "v17.0".into());
        assert_eq!(f.endpoints().unwrap().0, "https://www.facebook.com/v17.0/dialog/oauth");
    }
}
