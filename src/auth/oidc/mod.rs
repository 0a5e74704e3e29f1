//! Verification of id tokens issued by external OpenID Connect providers
//! (Google, Apple, Facebook Limited Login, any issuer), for identity pools'
//! `Logins` and for federated sign-in to user pools.
//!
//! * [`provider`]: [`OidcProvider`], the stored configuration of one
//!   provider, its validation, and how Cognito's provider names map to
//!   issuer URLs.
//! * [`jwk`]: a provider's JWKS read into keys, each tied to the one
//!   algorithm it may verify.
//! * `cache`: the node's key cache: fetches (discovery, then JWKS) over
//!   `crate::client::http`, refetches on an unknown kid at most once per
//!   interval per provider, shares one fetch among concurrent callers, and
//!   keeps using cached keys while a provider is down.
//! * `token`: the pure checks (JWS parsing, claims at a given time).
//! * [`error`]: [`OidcError`], which says what is wrong so an app developer
//!   can act.
//!
//! The rules that make it safe:
//!
//! * **The algorithm comes from the key, never from the token.** The
//!   token's `kid` picks a key; the key's type fixes the algorithm (RS256,
//!   ES256 or EdDSA); the header's `alg` must equal it. `alg: none`, every
//!   `HS*` (the key-confusion attack, an HMAC keyed with the public key)
//!   and anything else are refused.
//! * Keys come only from the configured JWKS; the header's `jku`, `x5u`,
//!   `jwk` and `x5c` are ignored, and `crit` is refused.
//! * A token is bounded ([`MAX_TOKEN_BYTES`]) before it is decoded,
//!   and never appears in an error or a log line.
//!
//! This module reads no clock: `now_secs` is a parameter, for the claims
//! and for the cache's refetch and freshness timing alike. It stores
//! nothing and serves nothing; the only I/O is fetching keys.
//!
//! One [`OidcVerifier`] per node, built at startup with [`OidcConfig`] and
//! cloned into every service that verifies external tokens (clones share
//! the cache):
//!
//! ```no_run
//! # async fn demo(token: &str) -> Result<(), tessera::auth::oidc::OidcError> {
//! use tessera::auth::oidc::{OidcConfig, OidcProvider, OidcVerifier};
//! let verifier = OidcVerifier::new(OidcConfig::default());
//! let google = OidcProvider::new("accounts.google.com", ["1234.apps.googleusercontent.com"]);
//! let now = tessera::clock::now_millis() / 1000;
//! let verified = verifier.verify(&google, token, now).await?;
//! println!("{} signed in as {}", google.name(), verified.subject);
//! # Ok(()) }
//! ```

pub(crate) mod cache;
pub mod error;
pub mod jwk;
pub mod provider;
pub(crate) mod token;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

pub use error::{OidcError, Refetch};
pub use jwk::KeyAlg;
pub use provider::{issuer_for_name, KeySource, OidcProvider};
pub use token::{MAX_SUBJECT_LEN, MAX_TOKEN_BYTES};

use cache::KeyCache;
use error::echo;

/// Tuning of [`OidcVerifier`]. Durations count in whole seconds, since the
/// clock they are measured on is the callers' `now_secs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    /// Default 60: providers' clocks and ours drift, but a token's lifetime
    /// (an hour at Google) must stay meaningful.
    pub leeway_secs: i64,
    /// Least time between two fetches of one provider's keys. An unknown
    /// kid within this interval of the last fetch is refused without
    /// fetching, so forged kids cannot turn the node into a load generator
    /// against the provider. Default 30 s.
    pub min_refetch_interval: Duration,
    /// How long fetched keys are used before they are fetched again. A
    /// JWKS response's `Cache-Control: max-age` shortens it (but not below
    /// `min_refetch_interval`). Default 1 hour.
    pub max_age: Duration,
    /// Most providers whose keys are cached; the least recently used is
    /// dropped beyond it. Default 1024.
    pub max_providers: usize,
}

impl Default for OidcConfig {
    fn default() -> Self {
        OidcConfig {
            leeway_secs: 60,
            min_refetch_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(3600),
            max_providers: 1024,
        }
    }
}

/// An id token that verified: signed by a key of the provider, for one of
/// its configured client ids, valid at the time it was checked.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedIdToken {
    /// The provider's issuer URL (for Google also when the token carried
    /// the bare `accounts.google.com`).
    pub issuer: String,
    /// `sub`: the user's id at the provider, stable per provider.
    pub subject: String,
    /// The configured client id that `aud` matched.
    pub audience: String,
    /// Every claim of the token, as sent.
    pub claims: Map<String, Value>,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
}

/// Verifies external id tokens against their providers' keys, which it
/// fetches and caches. Cheap to clone; clones share one cache, so a node
/// should make one and hand clones around.
#[derive(Clone)]
pub struct OidcVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    config: OidcConfig,
    cache: KeyCache,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Default for OidcVerifier {
    fn default() -> Self {
        OidcVerifier::new(OidcConfig::default())
    }
}

impl OidcVerifier {
    /// A verifier with an empty key cache.
    pub fn new(config: OidcConfig) -> Self {
        OidcVerifier {
            inner: Arc::new(Inner {
                cache: KeyCache::new(config.clone()),
                config,
            }),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &OidcConfig {
        &self.inner.config
    }

    /// Verifies an id token from `provider` at `now_secs` (Unix seconds).
    ///
    /// In order: the provider configuration validates; the token is at
    /// most [`MAX_TOKEN_BYTES`] and a compact JWS; `alg` is not `none`;
    /// its `kid` names a key of the provider (fetching the keys if needed);
    /// `alg` is that key's algorithm; the signature verifies; then the
    /// claims (`iss`, `aud`, `exp`, `nbf`, `iat`, `sub`) are checked.
    ///
    /// A token without a `kid` is accepted only when the provider's JWKS
    /// has exactly one usable key. The error says which check failed; it
    /// never contains the token.
    pub async fn verify(
        &self,
        provider: &OidcProvider,
        token: &str,
        now_secs: i64,
    ) -> Result<VerifiedIdToken, OidcError> {
        let result = self.check(provider, token, now_secs).await;
        if let Err(e) = &result {
            tracing::debug!(issuer = %provider.issuer_url(), error = %e, "refused an external id token");
        }
        result
    }

    async fn check(&self, provider: &OidcProvider, token: &str, now: i64) -> Result<VerifiedIdToken, OidcError> {
        provider.validate()?;
        let jws = token::parse(token)?;
        if jws.alg.eq_ignore_ascii_case("none") {
            return Err(OidcError::AlgNone);
        }
        let wanted = KeyAlg::from_name(&jws.alg);
        // An alg that no key could allow never causes a fetch; the cache
        // is still read, to name the key's algorithm in the error.
        let found = self
            .inner
            .cache
            .key(provider, jws.kid.as_deref(), now, wanted.is_some())
            .await;
        let key = match (wanted, found) {
            (Some(alg), Ok(key)) if alg == key.alg => key,
            (_, Ok(key)) => {
                return Err(OidcError::AlgMismatch {
                    alg: echo(&jws.alg),
                    kid: echo(key.kid_for_display()),
                    key_alg: key.alg.name(),
                })
            }
            (None, Err(_)) => return Err(OidcError::UnsupportedAlg { alg: echo(&jws.alg) }),
            (Some(_), Err(e)) => return Err(e),
        };
        // The key's own algorithm, not the header's (they are equal here,
        // and this keeps it so if the check above ever changes).
        let valid = jsonwebtoken::crypto::verify(jws.signature, jws.signing_input.as_bytes(), &key.key, key.alg.jwt())
            .unwrap_or(false);
        if !valid {
            return Err(OidcError::BadSignature {
                kid: echo(key.kid_for_display()),
                issuer: provider.issuer_url(),
            });
        }
        token::check_claims(provider, jws.payload, now, self.inner.config.leeway_secs)
    }

    /// Fetches `provider`'s keys now unless fresh ones are cached, and
    /// returns how many usable keys it has: for checking a provider when
    /// an admin configures it, and for warming the cache. Rate-limited
    /// like every fetch.
    pub async fn prefetch(&self, provider: &OidcProvider, now_secs: i64) -> Result<usize, OidcError> {
        provider.validate()?;
        self.inner.cache.prefetch(provider, now_secs).await
    }
}
