//! The OAuth 2.0 side of an app client (Cognito's `AllowedOAuthFlows`,
//! `AllowedOAuthScopes`, `CallbackURLs` and the rest): which grants the
//! client may use at `/oauth2/token` and `/oauth2/authorize`, which scopes
//! it may ask for, and where the browser may be sent back to.
//!
//! Stored beside the [`AppClient`](super::app_client::AppClient) rather
//! than in it: app clients are postcard-encoded in the log and the store,
//! where a new field would stop old entries from decoding.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// Most scopes one client may be allowed (Cognito: 50).
pub const MAX_CLIENT_SCOPES: usize = 50;
/// Most callback or logout URLs of one client (Cognito: 100).
pub const MAX_URLS: usize = 100;
/// Longest callback or logout URL (Cognito: 1024).
pub const MAX_URL_CHARS: usize = 1024;
/// Most identity providers one client may offer.
pub const MAX_CLIENT_PROVIDERS: usize = 50;

/// The OpenID Connect and Cognito scopes that need no resource server.
pub const STANDARD_SCOPES: &[&str] = &["openid", "email", "phone", "profile", "aws.cognito.signin.user.admin"];

/// The built-in provider: the pool's own users (Cognito's `COGNITO`).
pub const COGNITO_PROVIDER: &str = "COGNITO";

/// OAuth grants a client may use (Cognito's `AllowedOAuthFlows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OAuthFlow {
    /// `code`: the authorization code grant, through the hosted page.
    Code,
    /// `implicit`: tokens in the redirect's fragment (kept for Cognito
    /// parity; the code grant with PKCE is what new apps should use).
    Implicit,
    /// `client_credentials`: a service's own token, no user.
    ClientCredentials,
}

impl OAuthFlow {
    /// Cognito's spelling.
    pub fn as_cognito(self) -> &'static str {
        match self {
            OAuthFlow::Code => "code",
            OAuthFlow::Implicit => "implicit",
            OAuthFlow::ClientCredentials => "client_credentials",
        }
    }

    /// Parses Cognito's spelling.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s {
            "code" => Ok(OAuthFlow::Code),
            "implicit" => Ok(OAuthFlow::Implicit),
            "client_credentials" => Ok(OAuthFlow::ClientCredentials),
            other => Err(ValidationError::new(
                "allowed_oauth_flows",
                format!(
                    "{:?} is not an OAuth flow; use code, implicit or client_credentials",
                    other.chars().take(64).collect::<String>()
                ),
            )),
        }
    }
}

/// An app client's OAuth settings; the default is a client that uses no
/// OAuth grant (what every client created before them is).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientOAuth {
    /// `AllowedOAuthFlowsUserPoolClient`: the switch for all the rest.
    pub enabled: bool,
    /// `AllowedOAuthFlows`.
    pub flows: BTreeSet<OAuthFlow>,
    /// `AllowedOAuthScopes`: standard ones and `identifier/scope`.
    pub scopes: BTreeSet<String>,
    /// `CallbackURLs`, matched exactly at `/oauth2/authorize`.
    pub callback_urls: BTreeSet<String>,
    /// `LogoutURLs`, matched exactly at `/logout`.
    pub logout_urls: BTreeSet<String>,
    /// `DefaultRedirectURI`; one of the callback URLs when set.
    pub default_redirect_uri: Option<String>,
    /// `SupportedIdentityProviders`: `COGNITO` and provider names.
    pub identity_providers: BTreeSet<String>,
}

impl ClientOAuth {
    /// Whether the client may use `flow` (the switch is on and the flow
    /// is allowed).
    pub fn allows(&self, flow: OAuthFlow) -> bool {
        self.enabled && self.flows.contains(&flow)
    }

    /// The custom (resource-server) scopes among the allowed ones.
    pub fn custom_scopes(&self) -> impl Iterator<Item = &str> {
        self.scopes
            .iter()
            .map(String::as_str)
            .filter(|s| !STANDARD_SCOPES.contains(s))
    }

    /// Checks the settings against Cognito's rules. `has_secret`: the
    /// client has a secret (the client-credentials grant needs one).
    /// Deterministic: `apply` runs it on a peer's entry too.
    pub fn validate(&self, has_secret: bool) -> Result<(), ValidationError> {
        if self.scopes.len() > MAX_CLIENT_SCOPES {
            return Err(ValidationError::new(
                "allowed_oauth_scopes",
                format!("at most {MAX_CLIENT_SCOPES} scopes"),
            ));
        }
        for s in &self.scopes {
            if s.is_empty() || s.len() > 2 * super::resource_server::MAX_TEXT + 1 {
                return Err(ValidationError::new(
                    "allowed_oauth_scopes",
                    "a scope must be 1 to 513 characters",
                ));
            }
            if !STANDARD_SCOPES.contains(&s.as_str()) && !is_custom_scope(s) {
                return Err(ValidationError::new(
                    "allowed_oauth_scopes",
                    format!(
                        "{:?} is neither a standard scope ({}) nor a resource server's identifier/scope",
                        s.chars().take(64).collect::<String>(),
                        STANDARD_SCOPES.join(", ")
                    ),
                ));
            }
        }
        for (field, urls) in [
            ("callback_urls", &self.callback_urls),
            ("logout_urls", &self.logout_urls),
        ] {
            if urls.len() > MAX_URLS {
                return Err(ValidationError::new(field, format!("at most {MAX_URLS} URLs")));
            }
            for u in urls {
                validate_redirect_url(field, u)?;
            }
        }
        if let Some(d) = &self.default_redirect_uri {
            if !self.callback_urls.contains(d) {
                return Err(ValidationError::new(
                    "default_redirect_uri",
                    "must be one of the callback_urls",
                ));
            }
        }
        if self.identity_providers.len() > MAX_CLIENT_PROVIDERS {
            return Err(ValidationError::new(
                "supported_identity_providers",
                format!("at most {MAX_CLIENT_PROVIDERS} providers"),
            ));
        }
        for p in &self.identity_providers {
            if p != COGNITO_PROVIDER {
                super::identity_provider::validate_provider_name(p)
                    .map_err(|e| ValidationError::new("supported_identity_providers", e.reason))?;
            }
        }
        let cc = self.flows.contains(&OAuthFlow::ClientCredentials);
        if cc && self.flows.len() > 1 {
            return Err(ValidationError::new(
                "allowed_oauth_flows",
                "client_credentials cannot be combined with code or implicit: a client acts for itself or for users, not both",
            ));
        }
        if !self.enabled {
            return Ok(());
        }
        if self.flows.is_empty() || self.scopes.is_empty() {
            return Err(ValidationError::new(
                "allowed_oauth_flows",
                "allowed_oauth_flows and allowed_oauth_scopes are required when allowed_oauth_flows_user_pool_client is true",
            ));
        }
        if cc {
            if !has_secret {
                return Err(ValidationError::new(
                    "allowed_oauth_flows",
                    "client_credentials needs a client with a secret; create the client with generate_secret",
                ));
            }
            if let Some(s) = self.scopes.iter().find(|s| STANDARD_SCOPES.contains(&s.as_str())) {
                return Err(ValidationError::new(
                    "allowed_oauth_scopes",
                    format!("{s:?} is a user scope; a client_credentials client may only be allowed resource servers' scopes"),
                ));
            }
        } else {
            if self.callback_urls.is_empty() {
                return Err(ValidationError::new(
                    "callback_urls",
                    "the code and implicit flows need at least one callback URL",
                ));
            }
            let openid = self.scopes.contains("openid");
            if let Some(s) = ["email", "phone", "profile"]
                .into_iter()
                .find(|s| self.scopes.contains(*s) && !openid)
            {
                return Err(ValidationError::new(
                    "allowed_oauth_scopes",
                    format!("the {s} scope needs openid as well"),
                ));
            }
        }
        Ok(())
    }
}

/// Whether `scope` has the shape `identifier/name` of a resource
/// server's scope (the name holds no `/`; the identifier may).
pub fn is_custom_scope(scope: &str) -> bool {
    match scope.rsplit_once('/') {
        Some((identifier, name)) => {
            super::resource_server::validate_identifier(identifier).is_ok()
                && super::resource_server::validate_scope_name(name).is_ok()
        }
        None => false,
    }
}

/// Cognito's redirect-URL rule: an absolute URL without a fragment, over
/// https, or http only to `localhost` (a developer's machine), or an app's
/// own scheme (`myapp://callback`, for mobile apps).
pub fn validate_redirect_url(field: &'static str, url: &str) -> Result<(), ValidationError> {
    let shown = || url.chars().take(64).collect::<String>();
    if url.is_empty() || url.chars().count() > MAX_URL_CHARS {
        return Err(ValidationError::new(
            field,
            format!("a URL must be 1 to {MAX_URL_CHARS} characters"),
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) || url.contains('#') {
        return Err(ValidationError::new(
            field,
            format!("{:?}: no spaces, control characters or fragment (#) allowed", shown()),
        ));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(ValidationError::new(
            field,
            format!(
                "{:?} is not an absolute URL such as https://app.example.com/callback",
                shown()
            ),
        ));
    };
    let valid_scheme = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !valid_scheme {
        return Err(ValidationError::new(field, format!("{:?}: malformed scheme", shown())));
    }
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host_name = match host.rsplit_once('@') {
        Some(_) => {
            return Err(ValidationError::new(
                field,
                format!("{:?}: user information in a redirect URL is not allowed", shown()),
            ))
        }
        None => host,
    };
    let bare = if host_name.starts_with('[') {
        host_name.split(']').next().map(|h| &h[1..]).unwrap_or("")
    } else {
        host_name.split(':').next().unwrap_or("")
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" if !bare.is_empty() => Ok(()),
        "http" if matches!(bare, "localhost" | "127.0.0.1" | "::1") => Ok(()),
        "http" => Err(ValidationError::new(
            field,
            format!("{:?}: http is allowed only for localhost; use https", shown()),
        )),
        "https" => Err(ValidationError::new(field, format!("{:?}: no host", shown()))),
        // A mobile app's own scheme; no javascript:, data: or file: (they
        // carry no `://` host form anyway, but say so plainly).
        "javascript" | "data" | "file" | "vbscript" => Err(ValidationError::new(
            field,
            format!("{:?}: the {scheme} scheme is not allowed", shown()),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth(flows: &[OAuthFlow], scopes: &[&str], callbacks: &[&str]) -> ClientOAuth {
        ClientOAuth {
            enabled: true,
            flows: flows.iter().copied().collect(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            callback_urls: callbacks.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn cognito_rules() {
        let cc = oauth(&[OAuthFlow::ClientCredentials], &["https://api.example.com/read"], &[]);
        assert!(cc.validate(true).is_ok());
        assert!(cc.validate(false).is_err(), "client_credentials needs a secret");
        assert!(cc.allows(OAuthFlow::ClientCredentials));
        assert!(!ClientOAuth {
            enabled: false,
            ..cc.clone()
        }
        .allows(OAuthFlow::ClientCredentials));
        assert!(oauth(&[OAuthFlow::ClientCredentials], &["openid"], &[])
            .validate(true)
            .is_err());
        assert!(oauth(
            &[OAuthFlow::ClientCredentials, OAuthFlow::Code],
            &["a/b"],
            &["https://x.test/cb"]
        )
        .validate(true)
        .is_err());
        assert!(
            oauth(&[OAuthFlow::Code], &["openid"], &[]).validate(false).is_err(),
            "callback needed"
        );
        assert!(oauth(&[OAuthFlow::Code], &["openid", "email"], &["https://x.test/cb"])
            .validate(false)
            .is_ok());
        assert!(oauth(&[OAuthFlow::Code], &["email"], &["https://x.test/cb"])
            .validate(false)
            .is_err());
        assert!(oauth(&[OAuthFlow::Code], &["nonsense"], &["https://x.test/cb"])
            .validate(false)
            .is_err());
        assert!(oauth(&[], &[], &[]).validate(false).is_err());
        assert!(ClientOAuth::default().validate(false).is_ok());
        let mut d = oauth(&[OAuthFlow::Code], &["openid"], &["https://x.test/cb"]);
        d.default_redirect_uri = Some("https://x.test/other".into());
        assert!(d.validate(false).is_err());
    }

    #[test]
    fn redirect_urls() {
        for ok in [
            "https://app.example.com/cb",
            "https://app.example.com:8443/cb?x=1",
            "http://localhost:3000/cb",
            "http://127.0.0.1:8080/cb",
            "http://[::1]:8080/cb",
            "myapp://callback",
        ] {
            assert!(validate_redirect_url("callback_urls", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "http://app.example.com/cb",
            "https://app.example.com/cb#frag",
            "https:///cb",
            "/relative",
            "javascript://alert(1)",
            "https://user@app.example.com/cb",
            "https://app.example.com/ cb",
            "http://localhost.evil.com/cb",
        ] {
            assert!(validate_redirect_url("callback_urls", bad).is_err(), "{bad}");
        }
        assert!(is_custom_scope("https://api.example.com/read"));
        assert!(!is_custom_scope("read"));
        assert!(!is_custom_scope("api/"));
    }
}
