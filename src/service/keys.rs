//! Token-signing keys: publishing this node's public key into the
//! replicated JWKS, the key lifecycle, and reading the JWKS and OpenID
//! discovery documents.
//!
//! A key is *active* while its node signs with it, *retiring* (verify only)
//! once its node rotated it out or was removed, and *retired* (gone from the
//! JWKS, its tokens refused) once the longest token lifetime of any pool has
//! passed. The transitions are decided in `apply` (`command::tokens`); the
//! timed one is proposed by every node's [`KeyService::maintain`] loop as
//! `ExpireSigningKeys`, which is idempotent. Verification never trusts a key
//! past its scheduled retirement, even on a node that has not applied that
//! command yet.

use crate::command::{ExpireSigningKeys, RegisterSigningKey, RequestKeyRotation, RetireSigningKey};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;

use serde_json::{json, Value};

use super::ServiceError;
use crate::auth::jwks::{Jwk, Jwks};
use crate::auth::jwt::KeyLookup;
use crate::auth::signing_key::NodeSigningKey;
use crate::config::TokensConfig;
use crate::model::cluster::{KeyState, SigningKeyRecord};
use crate::model::pool::validate_pool_id;
use crate::raft::RaftNode;

/// How long verification trusts its cached key set before re-reading it.
const KEY_CACHE_TTL: Duration = Duration::from_secs(1);
/// The longest `RotateSigningKeys` waits for every voter to rotate.
pub const ROTATION_WAIT: Duration = Duration::from_secs(30);
/// Least time between two reloads forced by an unknown kid, so that tokens
/// with made-up kids cannot turn every request into a store scan.
const MISS_RELOAD_INTERVAL: Duration = Duration::from_millis(100);

/// A key that verifies tokens: active or retiring.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// The public key itself.
    pub key: VerifyingKey,
    /// Whether its node still signs with it (active).
    pub signs: bool,
    /// When its node stopped signing with it (Unix ms), once known.
    pub stopped_signing_at: Option<i64>,
    /// When it stops verifying (Unix ms), once known.
    pub retire_at: Option<i64>,
}

/// The keys that verify this cluster's tokens, by kid. Retired keys are not
/// in it; retiring ones are, until their `retire_at`.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    entries: BTreeMap<String, KeyEntry>,
}

impl KeySet {
    /// The set of `records` that are not retired. Malformed keys are skipped.
    pub fn from_records(records: impl IntoIterator<Item = SigningKeyRecord>) -> Self {
        let entries = records
            .into_iter()
            .filter(|rec| rec.state != KeyState::Retired)
            .filter_map(|rec| {
                let entry = KeyEntry {
                    key: VerifyingKey::from_bytes(&rec.public_key).ok()?,
                    signs: rec.signs(),
                    stopped_signing_at: rec.stopped_signing_at,
                    retire_at: rec.retire_at,
                };
                Some((rec.kid, entry))
            })
            .collect();
        KeySet { entries }
    }

    /// Whether `kid` is in the set (it may still be past `retire_at`).
    pub fn contains_key(&self, kid: &str) -> bool {
        self.entries.contains_key(kid)
    }

    /// The key named `kid`, if it is in the set.
    pub fn get(&self, kid: &str) -> Option<&KeyEntry> {
        self.entries.get(kid)
    }

    /// The keys as they verify at `now_ms`, for `jwt::verify`.
    pub fn at(&self, now_ms: i64) -> KeysAt<'_> {
        KeysAt { set: self, now_ms }
    }
}

/// A [`KeySet`] at one instant: keys past their retirement are missing.
pub struct KeysAt<'a> {
    set: &'a KeySet,
    now_ms: i64,
}

impl KeyLookup for KeysAt<'_> {
    fn key(&self, kid: &str) -> Option<VerifyingKey> {
        let e = self.set.entries.get(kid)?;
        e.retire_at.is_none_or(|t| self.now_ms < t).then_some(e.key)
    }
}

struct KeyCache {
    loaded: Instant,
    keys: Arc<KeySet>,
}

/// This node's signing key, its rotation, and the cluster's key set.
#[derive(Clone)]
pub struct KeyService {
    node: Arc<RaftNode>,
    key: Arc<RwLock<Arc<NodeSigningKey>>>,
    key_dir: PathBuf,
    /// Scheduled rotation period; 0 turns scheduled rotation off.
    rotation_ms: i64,
    /// `tokens.clock_skew_ms`.
    clock_skew_ms: i64,
    /// `tokens.max_key_retiring_secs`, in ms, carried in the commands that
    /// start a retiring period.
    max_retiring_ms: Option<i64>,
    cache: Arc<Mutex<Option<KeyCache>>>,
    public_url: Arc<OnceLock<String>>,
    last_barrier: Arc<Mutex<Option<Instant>>>,
}

impl KeyService {
    /// The key service of `node`: signs with `key` (whose private file is in `key_dir`) and rotates it every `rotation_days`.
    pub fn new(node: Arc<RaftNode>, key: Arc<NodeSigningKey>, key_dir: PathBuf, rotation_days: u32) -> Self {
        KeyService {
            node,
            key: Arc::new(RwLock::new(key)),
            key_dir,
            rotation_ms: i64::from(rotation_days) * 86_400_000,
            clock_skew_ms: crate::config::DEFAULT_CLOCK_SKEW_MS as i64,
            max_retiring_ms: None,
            cache: Arc::new(Mutex::new(None)),
            public_url: Arc::new(OnceLock::new()),
            last_barrier: Arc::new(Mutex::new(None)),
        }
    }

    /// Applies the `[tokens]` settings: the clock skew between nodes and
    /// the test bound on the retiring period.
    pub fn with_tokens(mut self, cfg: TokensConfig) -> Self {
        self.clock_skew_ms = i64::try_from(cfg.clock_skew_ms).unwrap_or(i64::MAX);
        self.max_retiring_ms = cfg
            .max_key_retiring_secs
            .map(|s| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX));
        self
    }

    /// The clock skew allowed between nodes, in ms (`tokens.clock_skew_ms`).
    pub fn clock_skew_ms(&self) -> i64 {
        self.clock_skew_ms
    }

    /// The key this node signs with now.
    pub fn signing_key(&self) -> Arc<NodeSigningKey> {
        match self.key.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether this node's public key is in the replicated key set.
    pub fn is_registered(&self) -> Result<bool, ServiceError> {
        let kid = self.signing_key().kid().to_string();
        Ok(self.node.store().signing_keys()?.iter().any(|k| k.kid == kid))
    }

    /// Keeps this node's key published and fresh until `stop` fires:
    /// publishes it once the node belongs to an initialised cluster, and
    /// rotates it when a rotation was requested after it was made or when
    /// it is older than the rotation period.
    pub async fn maintain(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let ready = self.node.store().cluster_info().ok().flatten().is_some() && self.node.is_ready();
            if ready {
                if let Err(e) = self.maintain_once().await {
                    tracing::debug!(error = %e, "maintaining the signing key; will retry");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn maintain_once(&self) -> Result<(), ServiceError> {
        if let Err(e) = self.expire_keys().await {
            tracing::debug!(error = %e, "proposing the timed signing-key transitions; will retry");
        }
        let current = self.signing_key();
        if !self.is_registered()? {
            self.register(&current).await?;
            tracing::info!(kid = current.kid(), "signing key published to the JWKS");
        }
        // An older key of this node still marked active (a rotation cut
        // short by a crash between switching keys and retiring the old
        // one): nothing signs with it any more, so start its retirement.
        let stale: Vec<String> = self
            .node
            .store()
            .signing_keys()?
            .into_iter()
            .filter(|k| k.node_id == self.node.node_id() && k.signs() && k.kid != current.kid())
            .map(|k| k.kid)
            .collect();
        for kid in stale {
            self.node
                .propose(RetireSigningKey {
                    kid,
                    at: crate::clock::now_millis(),
                    max_retiring_ms: self.max_retiring_ms,
                })
                .await?;
        }
        let requested = self.node.store().key_rotation_requested_at()?.unwrap_or(0);
        let now = crate::clock::now_millis();
        let due = current.created_at() < requested
            || (self.rotation_ms > 0 && current.created_at() > 0 && now - current.created_at() >= self.rotation_ms);
        if due {
            self.rotate(current).await?;
        }
        Ok(())
    }

    /// Proposes `ExpireSigningKeys` when this node's state shows a timed
    /// transition is due: a removed node's key whose retiring period has
    /// not started, or a retiring key past its `retire_at`. Every node does
    /// this; whichever entry applies first makes the others no-ops.
    async fn expire_keys(&self) -> Result<(), ServiceError> {
        let now = crate::clock::now_millis();
        let due = self.node.store().signing_keys()?.iter().any(|k| {
            k.state == KeyState::Retiring && (k.stopped_signing_at.is_none() || k.retire_at.is_some_and(|t| t <= now))
        });
        if !due {
            return Ok(());
        }
        self.node
            .propose(ExpireSigningKeys {
                now,
                max_retiring_ms: self.max_retiring_ms,
            })
            .await?;
        tracing::info!("signing-key retirements applied");
        Ok(())
    }

    async fn register(&self, key: &NodeSigningKey) -> Result<(), ServiceError> {
        let rec = SigningKeyRecord {
            kid: key.kid().to_string(),
            node_id: self.node.node_id(),
            public_key: key.public().to_bytes(),
            created_at: key.created_at(),
            state: KeyState::Active,
            stopped_signing_at: None,
            retire_at: None,
        };
        if let crate::command::Outcome::Rejected(r) = self.node.propose(RegisterSigningKey(rec)).await? {
            return Err(ServiceError::new(
                super::ErrorKind::FailedPrecondition,
                "NodeIdRetiredException",
                format!("this node's signing key was refused: {r}"),
            ));
        }
        // The proposal returns once the leader applied it; wait until this
        // node has too, so that it never signs with a key it cannot show.
        let deadline = crate::clock::instant() + Duration::from_secs(5);
        while !self.node.store().signing_keys()?.iter().any(|k| k.kid == key.kid()) {
            if crate::clock::instant() >= deadline {
                return Err(ServiceError::new(
                    super::ErrorKind::Unavailable,
                    "ServiceUnavailableException",
                    "this node has not applied its own signing key yet",
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.verifying_keys_with(key.kid())?;
        Ok(())
    }

    /// The key to sign with, once it is in the replicated key set: a token
    /// signed with an unpublished key would fail verification everywhere.
    /// Until then (the first moments after a node joins) signing answers
    /// `ServiceUnavailableException`, which clients retry.
    pub fn published_signing_key(&self) -> Result<Arc<NodeSigningKey>, ServiceError> {
        let key = self.signing_key();
        // Only an active key signs: a retiring one (this node was removed,
        // or is between rotation steps) would mint tokens that outlive it.
        if self
            .verifying_keys_with(key.kid())?
            .get(key.kid())
            .is_some_and(|e| e.signs)
        {
            Ok(key)
        } else {
            Err(ServiceError::new(
                super::ErrorKind::Unavailable,
                "ServiceUnavailableException",
                "this node is still publishing its token-signing key; retry shortly",
            ))
        }
    }

    /// Waits, at most `timeout`, until [`Self::published_signing_key`]
    /// succeeds. `cluster init` uses it so that the node it returns can sign
    /// in users at once, rather than answering the first sign-in with
    /// `ServiceUnavailableException` while [`Self::maintain`] catches up.
    pub async fn wait_published(&self, timeout: Duration) -> Result<(), ServiceError> {
        let deadline = crate::clock::instant() + timeout;
        loop {
            match self.published_signing_key() {
                Ok(_) => return Ok(()),
                Err(e) if crate::clock::instant() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Keys for verifying a token signed by `kid`. A kid this node does not
    /// know may belong to a key another node just published, so a miss
    /// reloads the set and, at most every 100 ms, first waits for a read
    /// barrier so the local state includes every committed key.
    pub async fn keys_for(&self, kid: &str) -> Result<Arc<KeySet>, ServiceError> {
        let keys = self.verifying_keys_with(kid)?;
        if keys.contains_key(kid) {
            return Ok(keys);
        }
        let barrier_due = {
            let mut last = match self.last_barrier.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            let due = last.is_none_or(|t: Instant| t.elapsed() >= MISS_RELOAD_INTERVAL);
            if due {
                *last = Some(crate::clock::instant());
            }
            due
        };
        if !barrier_due {
            return Ok(keys);
        }
        self.node.read_barrier().await?;
        self.cached(|_| false)
    }

    /// Replaces the signing key: the new public key is replicated *before*
    /// this node signs with it, so every node can verify its first token.
    async fn rotate(&self, old: Arc<NodeSigningKey>) -> Result<(), ServiceError> {
        let dir = self.key_dir.clone();
        let node_id = self.node.node_id();
        let new = tokio::task::spawn_blocking(move || NodeSigningKey::create(&dir, node_id))
            .await
            .map_err(|e| ServiceError::internal(e.to_string()))?
            .map_err(|e| ServiceError::internal(e.to_string()))?;
        let new = Arc::new(new);
        self.register(&new).await?;
        match self.key.write() {
            Ok(mut k) => *k = new.clone(),
            Err(poisoned) => *poisoned.into_inner() = new.clone(),
        }
        self.node
            .propose(RetireSigningKey {
                kid: old.kid().to_string(),
                at: crate::clock::now_millis(),
                max_retiring_ms: self.max_retiring_ms,
            })
            .await?;
        if let Err(e) = new.remove_older_files(&self.key_dir) {
            tracing::warn!(error = %e, "removing old private key files");
        }
        tracing::info!(old = old.kid(), new = new.kid(), "signing key rotated");
        Ok(())
    }

    /// Asks every node to rotate (a replicated request they all act on).
    pub async fn request_rotation(&self) -> Result<i64, ServiceError> {
        let at = crate::clock::now_millis();
        self.node.propose(RequestKeyRotation { at }).await?;
        Ok(at)
    }

    /// `RotateSigningKeys`: asks every node to replace its key and, with
    /// `wait`, waits up to [`ROTATION_WAIT`] until every voter signs with a
    /// key newer than the request and has stopped signing with its old one
    /// (a node publishes the new key before retiring the old, so waiting
    /// for the first alone could answer in between). Returns the request
    /// time and every key record.
    pub async fn rotate_cluster(&self, wait: bool) -> Result<(i64, Vec<SigningKeyRecord>), ServiceError> {
        let requested_at = self.request_rotation().await?;
        tracing::info!(requested_at, "signing key rotation requested");
        let deadline = crate::clock::instant() + ROTATION_WAIT;
        loop {
            let keys = self.key_records()?;
            let voters: Vec<u64> = self
                .node
                .status()
                .members
                .into_iter()
                .filter(|(_, _, voter)| *voter)
                .map(|(id, _, _)| id)
                .collect();
            let done = voters.iter().all(|id| {
                let mine = || keys.iter().filter(|k| k.node_id == *id);
                mine().any(|k| k.created_at >= requested_at && k.signs())
                    && mine().all(|k| k.created_at >= requested_at || !k.signs())
            });
            if !wait || done {
                return Ok((requested_at, keys));
            }
            if crate::clock::instant() >= deadline {
                return Err(ServiceError::new(
                    super::ErrorKind::Unavailable,
                    "ServiceUnavailableException",
                    "not every voter rotated its key within 30 s; a node may be down (it rotates when it returns)",
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every key record (retired ones included), in kid order.
    pub fn key_records(&self) -> Result<Vec<SigningKeyRecord>, ServiceError> {
        Ok(self.node.store().signing_keys()?)
    }

    /// The keys that verify tokens on the server: active and retiring ones,
    /// decoded. Retired keys are not in it, and a retiring key stops
    /// verifying at its `retire_at` (see [`KeySet::at`]).
    pub fn verifying_keys(&self) -> Result<Arc<KeySet>, ServiceError> {
        self.cached(|c| c.loaded.elapsed() < KEY_CACHE_TTL)
    }

    /// Like [`Self::verifying_keys`], re-read when `kid` is unknown (a key
    /// just published by another node), at most every 100 ms.
    pub fn verifying_keys_with(&self, kid: &str) -> Result<Arc<KeySet>, ServiceError> {
        let keys = self.verifying_keys()?;
        if keys.contains_key(kid) {
            return Ok(keys);
        }
        self.cached(|c| c.loaded.elapsed() < MISS_RELOAD_INTERVAL)
    }

    fn cached(&self, fresh: impl Fn(&KeyCache) -> bool) -> Result<Arc<KeySet>, ServiceError> {
        let mut guard = match self.cache.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(c) = guard.as_ref().filter(|c| fresh(c)) {
            return Ok(c.keys.clone());
        }
        let keys = Arc::new(KeySet::from_records(self.node.store().signing_keys()?));
        *guard = Some(KeyCache {
            loaded: crate::clock::instant(),
            keys: keys.clone(),
        });
        Ok(keys)
    }

    /// The JWKS of `pool_id`: the active and retiring keys of every node
    /// (keys are cluster-wide; every pool publishes the same set). A key
    /// leaves it when it is retired, or at its scheduled `retire_at`.
    pub fn jwks(&self, pool_id: &str) -> Result<Jwks, ServiceError> {
        self.require_pool(pool_id)?;
        let now = crate::clock::now_millis();
        let keys = self
            .node
            .store()
            .signing_keys()?
            .into_iter()
            .filter(|rec| rec.verifies_at(now))
            .filter_map(|rec| {
                let public = ed25519_dalek::VerifyingKey::from_bytes(&rec.public_key).ok()?;
                Some(Jwk::ed25519(&rec.kid, &public))
            })
            .collect();
        Ok(Jwks { keys })
    }

    /// The issuer of `pool_id`'s tokens: `{public_url}/{pool_id}`.
    pub fn issuer(&self, pool_id: &str) -> Result<String, ServiceError> {
        // The public URL is fixed at `cluster init`, so it is read once.
        if let Some(url) = self.public_url.get() {
            return Ok(format!("{url}/{pool_id}"));
        }
        let info = self
            .node
            .store()
            .cluster_info()?
            .ok_or_else(|| ServiceError::not_found("the cluster is not initialised"))?;
        let url = self.public_url.get_or_init(|| info.public_url);
        Ok(format!("{url}/{pool_id}"))
    }

    /// The OpenID Connect discovery document of `pool_id`.
    pub fn openid_configuration(&self, pool_id: &str) -> Result<Value, ServiceError> {
        self.require_pool(pool_id)?;
        let issuer = self.issuer(pool_id)?;
        if pool_id.contains(':') {
            // An identity pool: its OpenID tokens (GetOpenIdToken) and
            // credentials tokens, verified with the same keys.
            return Ok(json!({
                "issuer": issuer,
                "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
                "id_token_signing_alg_values_supported": ["EdDSA"],
                "subject_types_supported": ["public"],
                "response_types_supported": ["id_token"],
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "jti", "amr", "token_use"],
            }));
        }
        Ok(json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "subject_types_supported": ["public"],
            "response_types_supported": ["code", "token"],
            "response_modes_supported": ["query", "fragment"],
            "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
            "token_endpoint": format!("{issuer}/oauth2/token"),
            "userinfo_endpoint": format!("{issuer}/oauth2/userInfo"),
            "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
            "end_session_endpoint": format!("{issuer}/logout"),
            "grant_types_supported": ["authorization_code", "implicit", "refresh_token", "client_credentials"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "scopes_supported": ["openid", "email", "phone", "profile", "aws.cognito.signin.user.admin"],
            "claims_supported": [
                "sub", "iss", "aud", "exp", "iat", "auth_time", "jti", "origin_jti", "token_use",
                "cognito:username", "cognito:groups", "email", "email_verified", "nonce",
                "phone_number", "phone_number_verified", "client_id", "scope", "username"
            ],
        }))
    }

    /// A user pool, or an identity pool (`local:<uuid>`), which issues
    /// OpenID tokens and credentials under the same keys.
    fn require_pool(&self, pool_id: &str) -> Result<(), ServiceError> {
        if pool_id.contains(':') {
            crate::model::identity_pool::validate_identity_id("identity_pool_id", pool_id)?;
            if self.node.store().identity_pool(pool_id)?.is_none() {
                return Err(ServiceError::not_found(format!(
                    "identity pool {pool_id} does not exist"
                )));
            }
            return Ok(());
        }
        validate_pool_id(pool_id)?;
        if self.node.store().pool(pool_id)?.is_none() {
            return Err(ServiceError::not_found(format!("user pool {pool_id} does not exist")));
        }
        Ok(())
    }
}
