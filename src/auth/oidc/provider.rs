//! The configuration of one external OpenID Connect provider, as identity
//! pools and user pools store it (replicated, so plain serde data), and the
//! mapping between Cognito's provider *names* and issuer URLs.
//!
//! # Names and issuers
//!
//! Cognito names an OpenID provider by its issuer without `https://`: the
//! `Logins` map of `GetId` has keys such as `accounts.google.com`,
//! `appleid.apple.com` or `login.example.com/tenant`. Tessera does the same:
//!
//! * [`OidcProvider::issuer`] may be stored either way, `accounts.google.com`
//!   or `https://accounts.google.com`; [`OidcProvider::issuer_url`] is the
//!   URL (`https://` is prepended to a bare name) and is what a token's
//!   `iss` must equal, byte for byte.
//! * [`OidcProvider::name`] is the `Logins` key: the issuer URL without
//!   `https://`. An `http://` issuer (a test provider on loopback) keeps its
//!   scheme, so its name is the whole URL; [`issuer_for_name`] maps a name
//!   back the same way.
//!
//! Google is the one deliberate exception on the token side: its id tokens
//! carry `iss` either as `https://accounts.google.com` or as the bare
//! `accounts.google.com` (Google documents both), so a provider whose issuer
//! URL is `https://accounts.google.com` accepts both. No other provider gets
//! that leniency.

use serde::{Deserialize, Serialize};

use crate::model::ValidationError;

/// Most client ids (audiences) one provider may list; Cognito allows 100.
pub const MAX_AUDIENCES: usize = 100;
/// Longest client id accepted.
pub const MAX_AUDIENCE_LEN: usize = 256;
/// Longest issuer accepted.
pub const MAX_ISSUER_LEN: usize = 512;
/// Longest `jwks_uri` or `discovery_url` accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Google's issuer URL, the one issuer whose tokens may also carry the bare
/// host as `iss` (see the module docs).
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// Path appended to an issuer to find its discovery document (OpenID
/// Connect Discovery 1.0, section 4).
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// One external OpenID Connect provider whose id tokens a pool accepts.
///
/// Stored inside pool settings, which are encoded with postcard: fields are
/// never skipped when serializing, and a new field must go at the end with
/// `#[serde(default)]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcProvider {
    /// The issuer: an `https://` (or, for tests, `http://`) URL, or a bare
    /// host and path as Cognito names providers (`accounts.google.com`),
    /// which means `https://` + that.
    pub issuer: String,
    /// The client ids this pool accepts: a token's `aud` must contain one.
    pub audiences: Vec<String>,
    /// Where the provider publishes its keys. At most one of `jwks_uri` and
    /// `discovery_url`; with neither, the discovery document is read from
    /// the issuer URL + `/.well-known/openid-configuration`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Where the provider's discovery document is, when it is not at the
    /// usual place under the issuer. Its `jwks_uri` is then used.
    #[serde(default)]
    pub discovery_url: Option<String>,
}

/// Where a provider's keys come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeySource {
    /// The JWKS itself, at this URL.
    Jwks(String),
    /// A discovery document at this URL, whose `jwks_uri` names the JWKS.
    Discovery(String),
}

impl KeySource {
    /// The URL fetched first.
    pub fn url(&self) -> &str {
        match self {
            KeySource::Jwks(u) | KeySource::Discovery(u) => u,
        }
    }
}

impl OidcProvider {
    /// A provider for `issuer` (URL or Cognito name) accepting `audiences`,
    /// with keys found by discovery.
    pub fn new(issuer: impl Into<String>, audiences: impl IntoIterator<Item = impl Into<String>>) -> Self {
        OidcProvider {
            issuer: issuer.into(),
            audiences: audiences.into_iter().map(Into::into).collect(),
            jwks_uri: None,
            discovery_url: None,
        }
    }

    /// Checks every field; the error names the field and says what would
    /// be accepted.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_issuer(&self.issuer)?;
        if self.audiences.is_empty() {
            return Err(ValidationError::new(
                "audiences",
                "at least one client id is needed: tokens whose aud matches none are refused",
            ));
        }
        if self.audiences.len() > MAX_AUDIENCES {
            return Err(ValidationError::new(
                "audiences",
                format!("at most {MAX_AUDIENCES} client ids, got {}", self.audiences.len()),
            ));
        }
        for (i, aud) in self.audiences.iter().enumerate() {
            if aud.is_empty() || aud.len() > MAX_AUDIENCE_LEN || aud.chars().any(char::is_control) {
                return Err(ValidationError::new(
                    "audiences",
                    format!("client id {i} must be 1 to {MAX_AUDIENCE_LEN} bytes without control characters"),
                ));
            }
            if self.audiences[..i].contains(aud) {
                return Err(ValidationError::new(
                    "audiences",
                    format!("client id {aud:?} is listed twice"),
                ));
            }
        }
        if self.jwks_uri.is_some() && self.discovery_url.is_some() {
            return Err(ValidationError::new(
                "jwks_uri",
                "give either jwks_uri or discovery_url, not both (or neither, to discover from the issuer)",
            ));
        }
        if let Some(u) = &self.jwks_uri {
            validate_url("jwks_uri", u, MAX_URL_LEN, true)?;
        }
        if let Some(u) = &self.discovery_url {
            validate_url("discovery_url", u, MAX_URL_LEN, true)?;
        }
        Ok(())
    }

    /// The issuer as a URL: what a token's `iss` must equal.
    pub fn issuer_url(&self) -> String {
        issuer_for_name(&self.issuer)
    }

    /// The provider's name as Cognito's `Logins` map keys it: the issuer
    /// URL without `https://` (an `http://` issuer keeps its scheme).
    pub fn name(&self) -> String {
        let url = self.issuer_url();
        match url.strip_prefix("https://") {
            Some(rest) => rest.to_string(),
            None => url,
        }
    }

    /// Whether a token's `iss` names this provider: exactly the issuer URL,
    /// or, for Google only, also the bare `accounts.google.com`.
    pub fn accepts_issuer(&self, iss: &str) -> bool {
        let url = self.issuer_url();
        iss == url || (url == GOOGLE_ISSUER && iss == "accounts.google.com")
    }

    /// Where the keys come from: `jwks_uri`, else `discovery_url`, else
    /// the issuer URL (without a trailing `/`) + [`DISCOVERY_PATH`].
    pub fn key_source(&self) -> KeySource {
        if let Some(u) = &self.jwks_uri {
            return KeySource::Jwks(u.clone());
        }
        if let Some(u) = &self.discovery_url {
            return KeySource::Discovery(u.clone());
        }
        let issuer = self.issuer_url();
        KeySource::Discovery(format!("{}{DISCOVERY_PATH}", issuer.trim_end_matches('/')))
    }
}

/// The issuer URL for a provider name (a `Logins` key) or an issuer as
/// stored: a name without a scheme gets `https://`; a URL stays as it is.
pub fn issuer_for_name(name: &str) -> String {
    if name.starts_with("https://") || name.starts_with("http://") {
        name.to_string()
    } else {
        format!("https://{name}")
    }
}

/// An issuer: an http(s) URL without query or fragment, or a bare
/// `host[:port][/path]` that means `https://` + it.
fn validate_issuer(issuer: &str) -> Result<(), ValidationError> {
    if issuer.is_empty() || issuer.len() > MAX_ISSUER_LEN {
        return Err(ValidationError::new(
            "issuer",
            format!("must be 1 to {MAX_ISSUER_LEN} bytes: an https:// URL or a host such as accounts.google.com"),
        ));
    }
    if issuer.contains("://") && !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        return Err(ValidationError::new(
            "issuer",
            "only https:// (or http:// for local testing) issuers are supported",
        ));
    }
    if issuer.contains('?') {
        return Err(ValidationError::new(
            "issuer",
            "an issuer has no query (OpenID Connect Discovery 1.0)",
        ));
    }
    validate_url("issuer", &issuer_for_name(issuer), MAX_ISSUER_LEN + 8, false)
}

/// An absolute `http(s)://host[:port][/path][?query]` URL without user
/// info, fragment, whitespace or control characters.
fn validate_url(field: &'static str, url: &str, max: usize, query_ok: bool) -> Result<(), ValidationError> {
    let bad = |why: &str| {
        ValidationError::new(
            field,
            format!("{why}; expected an https:// URL such as https://example.com/path"),
        )
    };
    if url.len() > max {
        return Err(ValidationError::new(field, format!("at most {max} bytes")));
    }
    let rest = if let Some(r) = url.strip_prefix("https://") {
        r
    } else if let Some(r) = url.strip_prefix("http://") {
        r
    } else {
        return Err(bad("not an http:// or https:// URL"));
    };
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("contains whitespace or control characters"));
    }
    if url.contains('#') {
        return Err(bad("has a fragment"));
    }
    if !query_ok && url.contains('?') {
        return Err(bad("has a query"));
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(bad("has user info"));
    }
    let (host_ok, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((v6, after)) = bracketed.split_once(']') else {
            return Err(bad("has an invalid IPv6 host"));
        };
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("has an invalid port"))?),
        };
        (v6.parse::<std::net::Ipv6Addr>().is_ok(), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let ok = !host.is_empty()
            && host.len() <= 253
            && host
                .split('.')
                .all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        (ok, port)
    };
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(n) if n != 0) {
            return Err(bad("has an invalid port"));
        }
    }
    if !host_ok {
        return Err(bad("has an invalid host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(issuer: &str) -> OidcProvider {
        OidcProvider::new(issuer, ["client-1"])
    }

    #[test]
    fn names_map_to_issuers_and_back() {
        let g = p("accounts.google.com");
        assert_eq!(g.issuer_url(), "https://accounts.google.com");
        assert_eq!(g.name(), "accounts.google.com");
        let g2 = p("https://accounts.google.com");
        assert_eq!(g2.name(), g.name());
        assert_eq!(issuer_for_name(&g.name()), g.issuer_url());

        let local = p("http://127.0.0.1:4000");
        assert_eq!(local.name(), "http://127.0.0.1:4000");
        assert_eq!(issuer_for_name(&local.name()), "http://127.0.0.1:4000");

        let tenant = p("login.example.com/tenant-1");
        assert_eq!(tenant.issuer_url(), "https://login.example.com/tenant-1");
        assert_eq!(tenant.name(), "login.example.com/tenant-1");
    }

    #[test]
    fn only_google_accepts_its_bare_issuer() {
        let g = p("accounts.google.com");
        assert!(g.accepts_issuer("https://accounts.google.com"));
        assert!(g.accepts_issuer("accounts.google.com"));
        assert!(!g.accepts_issuer("https://accounts.google.com/"));
        let apple = p("https://appleid.apple.com");
        assert!(apple.accepts_issuer("https://appleid.apple.com"));
        assert!(!apple.accepts_issuer("appleid.apple.com"));
        assert!(!apple.accepts_issuer("https://appleid.apple.com/"));
    }

    #[test]
    fn key_source_is_explicit_or_derived_from_the_issuer() {
        let mut x = p("https://id.example.com/t/");
        assert_eq!(
            x.key_source(),
            KeySource::Discovery("https://id.example.com/t/.well-known/openid-configuration".into())
        );
        x.discovery_url = Some("https://id.example.com/d".into());
        assert_eq!(x.key_source(), KeySource::Discovery("https://id.example.com/d".into()));
        x.discovery_url = None;
        x.jwks_uri = Some("https://id.example.com/keys".into());
        assert_eq!(x.key_source(), KeySource::Jwks("https://id.example.com/keys".into()));
    }

    #[test]
    fn validation_names_the_field() {
        let ok = [
            "accounts.google.com",
            "https://appleid.apple.com",
            "http://127.0.0.1:8080",
            "https://login.example.com/tenant/v2.0",
            "http://[::1]:9000/x",
            "login.example.com/tenant",
        ];
        for i in ok {
            assert_eq!(p(i).validate(), Ok(()), "{i}");
        }
        let bad = [
            "",
            "ftp://x.example.com",
            "https://",
            "https://a b.example.com",
            "https://u@example.com",
            "https://example.com/#x",
            "https://example.com/?q=1",
            "https://example.com:0",
            "https://example.com:99999",
            "https://exa_mple.com",
            "accounts.google.com?x",
        ];
        for i in bad {
            let e = p(i).validate().unwrap_err();
            assert_eq!(e.field, "issuer", "{i}: {e}");
        }
        let long = format!("https://{}.com", "a.".repeat(300));
        assert_eq!(p(&long).validate().unwrap_err().field, "issuer");

        let mut x = p("accounts.google.com");
        x.audiences.clear();
        assert_eq!(x.validate().unwrap_err().field, "audiences");
        x.audiences = vec!["a".into(), "a".into()];
        assert_eq!(x.validate().unwrap_err().field, "audiences");
        x.audiences = vec!["x".repeat(MAX_AUDIENCE_LEN + 1)];
        assert_eq!(x.validate().unwrap_err().field, "audiences");
        x.audiences = (0..=MAX_AUDIENCES).map(|i| i.to_string()).collect();
        assert_eq!(x.validate().unwrap_err().field, "audiences");
        x.audiences = vec!["a\n".into()];
        assert_eq!(x.validate().unwrap_err().field, "audiences");

        x.audiences = vec!["a".into()];
        x.jwks_uri = Some("https://k.example.com/jwks".into());
        x.discovery_url = Some("https://k.example.com/d".into());
        assert_eq!(x.validate().unwrap_err().field, "jwks_uri");
        x.discovery_url = None;
        assert_eq!(x.validate(), Ok(()));
        x.jwks_uri = Some("file:///etc/passwd".into());
        assert_eq!(x.validate().unwrap_err().field, "jwks_uri");
        x.jwks_uri = None;
        x.discovery_url = Some("https://k.example.com/d?tenant=1".into());
        assert_eq!(x.validate(), Ok(()));
        x.discovery_url = Some(format!("https://k.example.com/{}", "d".repeat(MAX_URL_LEN)));
        assert_eq!(x.validate().unwrap_err().field, "discovery_url");
    }

    #[test]
    fn serde_round_trips_through_postcard_and_json() {
        let mut x = p("accounts.google.com");
        x.jwks_uri = Some("https://www.googleapis.com/oauth2/v3/certs".into());
        let bytes = postcard::to_stdvec(&x).unwrap();
        assert_eq!(postcard::from_bytes::<OidcProvider>(&bytes).unwrap(), x);
        let json: OidcProvider =
            serde_json::from_str(r#"{"issuer":"appleid.apple.com","audiences":["com.example.app"]}"#).unwrap();
        assert_eq!(json.jwks_uri, None);
        assert_eq!(json.validate(), Ok(()));
    }
}
