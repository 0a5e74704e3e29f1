//! The node's cache of external providers' keys.
//!
//! One slot per provider (issuer and key source). A slot holds the last
//! good key set, when it goes stale, and when its last fetch was tried.
//! The rules:
//!
//! * A fresh set that has the token's kid answers at once, with no lock
//!   held across an await and no I/O.
//! * Otherwise (no set yet, a stale set, or an unknown kid) the keys are
//!   fetched again, but at most once per `min_refetch_interval` per
//!   provider, so tokens with made-up kids cannot make the node hammer a
//!   provider; within the interval the cached set answers as it is.
//! * Concurrent callers that need a fetch share one: the first takes the
//!   slot's fetch lock and fetches, the others wait on the lock and then
//!   read what it fetched (an attempt counter tells them it happened).
//! * A set is stale after `max_age`, or sooner when the JWKS response's
//!   `Cache-Control: max-age` says so (never sooner than the refetch
//!   interval).
//! * A failed fetch keeps the cached set in use, stale or not; with no set
//!   at all the caller gets the fetch error.
//!
//! Time is the caller's `now` (Unix seconds), like the token checks, so
//! tests move it. The cache never holds or logs a token.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use super::error::{echo, OidcError, Refetch};
use super::jwk::{KeySet, Lookup, UsableKey};
use super::provider::{KeySource, OidcProvider, MAX_URL_LEN};
use super::OidcConfig;
use crate::client::http::{get_json_document, JsonDocument};

/// A provider's slot: its keys and the lock that makes fetches single.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    /// Held while fetching; waiters then read the result instead of
    /// fetching again.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default, Clone)]
struct SlotState {
    /// The last good key set.
    keys: Option<Arc<KeySet>>,
    /// The JWKS URL a discovery document named (discovery sources only).
    jwks_uri: Option<String>,
    /// When `keys` goes stale (Unix seconds).
    fresh_until: i64,
    /// When a fetch was last tried, successful or not.
    last_attempt: Option<i64>,
    /// How many fetches were tried; a waiter compares it to learn that a
    /// fetch happened while it waited.
    attempts: u64,
    /// Why the last fetch failed (`None` after a success).
    last_error: Option<String>,
    /// When the slot was last used, for eviction.
    last_used: i64,
}

/// Slots are per issuer and key source: two pools trusting the same
/// provider share its keys.
type SlotKey = (String, KeySource);

/// The key cache behind [`super::OidcVerifier`].
pub(crate) struct KeyCache {
    config: OidcConfig,
    slots: Mutex<BTreeMap<SlotKey, Arc<Slot>>>,
}

/// What [`KeyCache::key_set`] found: the set to use (if any) and whether
/// it was fetched again for this call.
struct Found {
    keys: Option<Arc<KeySet>>,
    refetch: Refetch,
    error: Option<String>,
}

/// Locks a std mutex; a panic elsewhere while it was held leaves plain
/// data that is still consistent (every update is one assignment), so
/// poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl KeyCache {
    pub(crate) fn new(config: OidcConfig) -> Self {
        KeyCache {
            config,
            slots: Mutex::new(BTreeMap::new()),
        }
    }

    /// The key that `kid` names for `provider`, fetching the JWKS when it
    /// is not cached, stale, or lacks the kid (rate-limited). With
    /// `may_fetch` false only the cache is read.
    pub(crate) async fn key(
        &self,
        provider: &OidcProvider,
        kid: Option<&str>,
        now: i64,
        may_fetch: bool,
    ) -> Result<UsableKey, OidcError> {
        let issuer = provider.issuer_url();
        let has_kid = |set: &KeySet| !matches!(set.find(kid), Lookup::Unknown);
        let found = self.key_set(provider, &issuer, now, may_fetch, has_kid).await;
        let Some(keys) = found.keys else {
            return Err(OidcError::Jwks {
                issuer,
                reason: found.error.unwrap_or_else(|| "no fetch was attempted".into()),
            });
        };
        match keys.find(kid) {
            Lookup::Found(key) => Ok(key.clone()),
            Lookup::NeedKid(keys) => Err(OidcError::NoKid { issuer, keys }),
            Lookup::Unknown => Err(OidcError::UnknownKid {
                kid: echo(kid.unwrap_or_default()),
                issuer,
                refetch: found.refetch,
            }),
        }
    }

    /// The provider's key set, fetched if none is cached or it is stale;
    /// how many usable keys it has.
    pub(crate) async fn prefetch(&self, provider: &OidcProvider, now: i64) -> Result<usize, OidcError> {
        let issuer = provider.issuer_url();
        let found = self.key_set(provider, &issuer, now, true, |_| true).await;
        match found.keys {
            Some(keys) => Ok(keys.len()),
            None => Err(OidcError::Jwks {
                issuer,
                reason: found.error.unwrap_or_else(|| "no fetch was attempted".into()),
            }),
        }
    }

    /// The cached set if it is fresh and `enough` says it will do;
    /// otherwise a fetch (single, rate-limited) and the set after it.
    async fn key_set(
        &self,
        provider: &OidcProvider,
        issuer: &str,
        now: i64,
        may_fetch: bool,
        enough: impl Fn(&KeySet) -> bool,
    ) -> Found {
        let source = provider.key_source();
        let slot = self.slot(issuer, &source, now);
        let seen = lock(&slot.state).clone();
        let fresh = now < seen.fresh_until;
        if let Some(keys) = &seen.keys {
            if fresh && enough(keys) {
                return Found {
                    keys: Some(keys.clone()),
                    refetch: Refetch::NotAttempted,
                    error: None,
                };
            }
        }
        if !may_fetch {
            return Found {
                keys: seen.keys,
                refetch: Refetch::NotAttempted,
                error: seen.last_error,
            };
        }
        if let Some(last) = seen.last_attempt {
            // `abs`: callers read the clock at slightly different moments,
            // and a caller a second behind the last attempt must not fetch
            // again; only a jump back of more than the interval does.
            if now.saturating_sub(last).saturating_abs() < secs(self.config.min_refetch_interval) {
                let ago = now.saturating_sub(last).max(0);
                let error = seen
                    .last_error
                    .map(|e| format!("{e} (not retried: last attempt {ago} s ago)"));
                return Found {
                    keys: seen.keys,
                    refetch: Refetch::RateLimited { ago },
                    error,
                };
            }
        }

        let _fetching = slot.fetching.lock().await;
        let current = lock(&slot.state).clone();
        if current.attempts == seen.attempts {
            // Nobody fetched while this call waited: fetch. Rediscover the
            // JWKS URL unless only a kid is missing from a fresh set.
            let rediscover = current.keys.is_none() || now >= current.fresh_until;
            let result = self
                .fetch(issuer, &source, current.jwks_uri.as_deref(), rediscover)
                .await;
            self.record(&slot, issuer, now, result);
        }
        let after = lock(&slot.state).clone();
        let refetch = match &after.last_error {
            Some(e) => Refetch::Failed(e.clone()),
            None => Refetch::Refetched,
        };
        Found {
            keys: after.keys,
            refetch,
            error: after.last_error,
        }
    }

    /// The slot for a provider, created if new; the least recently used
    /// slot is evicted when the cache is full.
    fn slot(&self, issuer: &str, source: &KeySource, now: i64) -> Arc<Slot> {
        let key = (issuer.to_string(), source.clone());
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get(&key) {
            lock(&slot.state).last_used = now;
            return slot.clone();
        }
        if slots.len() >= self.config.max_providers.max(1) {
            let oldest = slots
                .iter()
                .min_by_key(|(_, s)| lock(&s.state).last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                slots.remove(&k);
            }
        }
        let slot = Arc::new(Slot::default());
        lock(&slot.state).last_used = now;
        slots.insert(key, slot.clone());
        slot
    }

    /// Stores the outcome of one fetch attempt.
    fn record(&self, slot: &Slot, issuer: &str, now: i64, result: Result<Fetched, String>) {
        let mut state = lock(&slot.state);
        state.attempts += 1;
        state.last_attempt = Some(now);
        match result {
            Ok(fetched) => {
                let ceiling = secs(self.config.max_age);
                let floor = secs(self.config.min_refetch_interval).min(ceiling);
                let lifetime = fetched.max_age.map_or(ceiling, |m| secs(m).clamp(floor, ceiling));
                tracing::info!(
                    issuer,
                    jwks_uri = %fetched.jwks_uri,
                    keys = fetched.keys.len(),
                    skipped = fetched.keys.skipped.len(),
                    lifetime_secs = lifetime,
                    "fetched the keys of an OpenID provider"
                );
                for why in &fetched.keys.skipped {
                    tracing::debug!(issuer, key = %why, "skipped a key of an OpenID provider");
                }
                state.keys = Some(Arc::new(fetched.keys));
                state.fresh_until = now.saturating_add(lifetime);
                state.jwks_uri = fetched.discovered.then_some(fetched.jwks_uri);
                state.last_error = None;
            }
            Err(e) => {
                tracing::warn!(
                    issuer,
                    error = %e,
                    cached_keys = state.keys.as_ref().map_or(0, |k| k.len()),
                    "could not fetch the keys of an OpenID provider"
                );
                state.last_error = Some(e);
            }
        }
    }

    /// Fetches the key set (through discovery when the source says so).
    async fn fetch(
        &self,
        issuer: &str,
        source: &KeySource,
        cached_jwks_uri: Option<&str>,
        rediscover: bool,
    ) -> Result<Fetched, String> {
        let (jwks_uri, discovered) = match (source, cached_jwks_uri) {
            (KeySource::Jwks(u), _) => (u.clone(), false),
            (KeySource::Discovery(_), Some(u)) if !rediscover => (u.to_string(), true),
            (KeySource::Discovery(d), _) => (discover(d, issuer).await?, true),
        };
        let doc = get(&jwks_uri).await?;
        let keys = KeySet::from_jwks(&doc.value).map_err(|e| format!("{jwks_uri}: {e}"))?;
        if keys.is_empty() {
            let mut why = format!("{jwks_uri} has no usable signing key (RS256 RSA, ES256 P-256 or EdDSA Ed25519)");
            if !keys.skipped.is_empty() {
                why.push_str(&format!("; skipped: {}", keys.skipped.join("; ")));
            }
            return Err(why);
        }
        Ok(Fetched {
            keys,
            max_age: doc.max_age,
            jwks_uri,
            discovered,
        })
    }
}

/// One successful fetch.
struct Fetched {
    keys: KeySet,
    max_age: Option<std::time::Duration>,
    jwks_uri: String,
    discovered: bool,
}

/// Reads a discovery document and returns its `jwks_uri`, after checking
/// that it names the same issuer (OpenID Connect Discovery 1.0, §4.3) and
/// that an https document does not send keys over plain http.
async fn discover(url: &str, issuer: &str) -> Result<String, String> {
    let doc = get(url).await?.value;
    if let Some(named) = doc.get("issuer") {
        if named.as_str() != Some(issuer) {
            let shown = named.as_str().map_or_else(|| named.to_string(), echo);
            return Err(format!(
                "the discovery document at {url} names issuer {shown}, not {issuer}"
            ));
        }
    }
    let jwks_uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the discovery document at {url} has no jwks_uri"))?;
    let scheme_ok = jwks_uri.starts_with("https://") || (jwks_uri.starts_with("http://") && url.starts_with("http://"));
    if !scheme_ok || jwks_uri.len() > MAX_URL_LEN || split_url(jwks_uri).is_none() {
        return Err(format!(
            "the discovery document at {url} has an unusable jwks_uri {}",
            echo(jwks_uri)
        ));
    }
    Ok(jwks_uri.to_string())
}

/// GETs a JSON document by full URL.
async fn get(url: &str) -> Result<JsonDocument, String> {
    let (base, path) = split_url(url).ok_or_else(|| format!("{url} is not an http(s) URL"))?;
    get_json_document(base, &path).await.map_err(|e| e.to_string())
}

/// `scheme://authority` and the path with its query (`/` when empty), as
/// [`get_json_document`] takes them; a trailing `/` in the path is kept.
fn split_url(url: &str) -> Option<(&str, String)> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let authority_len = rest.find(['/', '?']).unwrap_or(rest.len());
    if authority_len == 0 {
        return None;
    }
    let (base, path) = url.split_at(scheme_end + authority_len);
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    Some((base, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_base_and_path() {
        assert_eq!(
            split_url("https://www.facebook.com/.well-known/oauth/openid/jwks/"),
            Some((
                "https://www.facebook.com",
                "/.well-known/oauth/openid/jwks/".to_string()
            ))
        );
        assert_eq!(
            split_url("http://127.0.0.1:9/k?x=1"),
            Some(("http://127.0.0.1:9", "/k?x=1".to_string()))
        );
        assert_eq!(split_url("https://h"), Some(("https://h", "/".to_string())));
        assert_eq!(split_url("https://h?q"), Some(("https://h", "/?q".to_string())));
        assert_eq!(split_url("https:///x"), None);
        assert_eq!(split_url("h/x"), None);
    }

    #[tokio::test]
    async fn an_unreachable_provider_is_a_clear_error_and_is_not_hammered() {
        // Port 1 on loopback refuses connections at once.
        let mut p = OidcProvider::new("http://127.0.0.1:1", ["app"]);
        p.jwks_uri = Some("http://127.0.0.1:1/jwks".into());
        let cache = KeyCache::new(OidcConfig::default());
        let e = cache.key(&p, Some("k"), 1000, true).await.unwrap_err();
        assert!(
            matches!(&e, OidcError::Jwks { issuer, reason } if issuer == "http://127.0.0.1:1" && reason.contains("/jwks")),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("could not fetch the JWKS of http://127.0.0.1:1: "),
            "{e}"
        );
        let e = cache.key(&p, Some("k"), 1010, true).await.unwrap_err();
        assert!(e.to_string().contains("not retried: last attempt 10 s ago"), "{e}");
        let state = lock(&cache.slot("http://127.0.0.1:1", &p.key_source(), 1010).state).clone();
        assert_eq!(state.attempts, 1);
        let _ = cache.key(&p, Some("k"), 1031, true).await.unwrap_err();
        let state = lock(&cache.slot("http://127.0.0.1:1", &p.key_source(), 1031).state).clone();
        assert_eq!(state.attempts, 2);
    }

    #[test]
    fn the_least_recently_used_slot_is_evicted() {
        let cache = KeyCache::new(OidcConfig {
            max_providers: 2,
            ..OidcConfig::default()
        });
        let src = |i: u32| KeySource::Jwks(format!("https://k{i}.example.com/"));
        cache.slot("https://a", &src(1), 1);
        cache.slot("https://b", &src(2), 2);
        cache.slot("https://a", &src(1), 3);
        cache.slot("https://c", &src(3), 4);
        let slots = lock(&cache.slots);
        assert_eq!(slots.len(), 2);
        assert!(slots.contains_key(&("https://a".to_string(), src(1))));
        assert!(!slots.contains_key(&("https://b".to_string(), src(2))));
    }
}
