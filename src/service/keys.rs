//! Token-signing keys: publishing this node's public key into the
//! replicated JWKS, and reading the JWKS and OpenID discovery documents.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;

use serde_json::{json, Value};

use super::ServiceError;
use crate::auth::jwks::{Jwk, Jwks};
use crate::auth::signing_key::NodeSigningKey;
use crate::command::Command;
use crate::model::cluster::SigningKeyRecord;
use crate::model::pool::validate_pool_id;
use crate::raft::RaftNode;

/// How long a retired key stays in the JWKS: the longest an id or access
/// token may live (Cognito's bound, 1 day), so every token it signed has
/// expired by then.
pub const RETIRED_KEY_PUBLISHED_MS: i64 = 86_400_000;

/// How long verification trusts its cached key set before re-reading it.
const KEY_CACHE_TTL: Duration = Duration::from_secs(1);
/// Least time between two reloads forced by an unknown kid, so that tokens
/// with made-up kids cannot turn every request into a store scan.
const MISS_RELOAD_INTERVAL: Duration = Duration::from_millis(100);

type KeyMap = BTreeMap<String, VerifyingKey>;

struct KeyCache {
    loaded: Instant,
    keys: Arc<KeyMap>,
}

/// This node's signing key, its rotation, and the cluster's key set.
#[derive(Clone)]
pub struct KeyService {
    node: Arc<RaftNode>,
    key: Arc<RwLock<Arc<NodeSigningKey>>>,
    key_dir: PathBuf,
    /// Scheduled rotation period; 0 turns scheduled rotation off.
    rotation_ms: i64,
    cache: Arc<Mutex<Option<KeyCache>>>,
    public_url: Arc<OnceLock<String>>,
    last_barrier: Arc<Mutex<Option<Instant>>>,
}

impl KeyService {
    pub fn new(node: Arc<RaftNode>, key: Arc<NodeSigningKey>, key_dir: PathBuf, rotation_days: u32) -> Self {
        KeyService {
            node,
            key: Arc::new(RwLock::new(key)),
            key_dir,
            rotation_ms: i64::from(rotation_days) * 86_400_000,
            cache: Arc::new(Mutex::new(None)),
            public_url: Arc::new(OnceLock::new()),
            last_barrier: Arc::new(Mutex::new(None)),
        }
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
        let current = self.signing_key();
        if !self.is_registered()? {
            self.register(&current).await?;
            tracing::info!(kid = current.kid(), "signing key published to the JWKS");
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

    async fn register(&self, key: &NodeSigningKey) -> Result<(), ServiceError> {
        let rec = SigningKeyRecord {
            kid: key.kid().to_string(),
            node_id: self.node.node_id(),
            public_key: key.public().to_bytes(),
            created_at: key.created_at(),
            retired_at: None,
        };
        self.node.propose(Command::RegisterSigningKey(rec)).await?;
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
        if self.verifying_keys_with(key.kid())?.contains_key(key.kid()) {
            Ok(key)
        } else {
            Err(ServiceError::new(
                super::ErrorKind::Unavailable,
                "ServiceUnavailableException",
                "this node is still publishing its token-signing key; retry shortly",
            ))
        }
    }

    /// Keys for verifying a token signed by `kid`. A kid this node does not
    /// know may belong to a key another node just published, so a miss
    /// reloads the set and, at most every 100 ms, first waits for a read
    /// barrier so the local state includes every committed key.
    pub async fn keys_for(&self, kid: &str) -> Result<Arc<KeyMap>, ServiceError> {
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
            .propose(Command::RetireSigningKey {
                kid: old.kid().to_string(),
                at: crate::clock::now_millis(),
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
        self.node.propose(Command::RequestKeyRotation { at }).await?;
        Ok(at)
    }

    /// Every key record, in kid order.
    pub fn key_records(&self) -> Result<Vec<SigningKeyRecord>, ServiceError> {
        Ok(self.node.store().signing_keys()?)
    }

    /// Every public key any node ever signed with, decoded, for verifying
    /// tokens on the server. Expiry, not key retirement, ends a token's
    /// life, so retired keys stay here.
    pub fn verifying_keys(&self) -> Result<Arc<KeyMap>, ServiceError> {
        self.cached(|c| c.loaded.elapsed() < KEY_CACHE_TTL)
    }

    /// Like [`Self::verifying_keys`], re-read when `kid` is unknown (a key
    /// just published by another node), at most every 100 ms.
    pub fn verifying_keys_with(&self, kid: &str) -> Result<Arc<KeyMap>, ServiceError> {
        let keys = self.verifying_keys()?;
        if keys.contains_key(kid) {
            return Ok(keys);
        }
        self.cached(|c| c.loaded.elapsed() < MISS_RELOAD_INTERVAL)
    }

    fn cached(&self, fresh: impl Fn(&KeyCache) -> bool) -> Result<Arc<KeyMap>, ServiceError> {
        let mut guard = match self.cache.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(c) = guard.as_ref().filter(|c| fresh(c)) {
            return Ok(c.keys.clone());
        }
        let keys: KeyMap = self
            .node
            .store()
            .signing_keys()?
            .into_iter()
            .filter_map(|rec| Some((rec.kid, VerifyingKey::from_bytes(&rec.public_key).ok()?)))
            .collect();
        let keys = Arc::new(keys);
        *guard = Some(KeyCache {
            loaded: crate::clock::instant(),
            keys: keys.clone(),
        });
        Ok(keys)
    }

    /// The JWKS of `pool_id`: every node's public key, and retired keys
    /// until every token they signed has expired (keys are cluster-wide;
    /// every pool publishes the same set).
    pub fn jwks(&self, pool_id: &str) -> Result<Jwks, ServiceError> {
        self.require_pool(pool_id)?;
        let now = crate::clock::now_millis();
        let keys = self
            .node
            .store()
            .signing_keys()?
            .into_iter()
            .filter(|rec| rec.retired_at.is_none_or(|at| now < at + RETIRED_KEY_PUBLISHED_MS))
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
        Ok(json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "subject_types_supported": ["public"],
            "response_types_supported": ["token"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "scopes_supported": ["openid", "email", "phone", "profile", "aws.cognito.signin.user.admin"],
            "claims_supported": [
                "sub", "iss", "aud", "exp", "iat", "auth_time", "jti", "origin_jti", "token_use",
                "cognito:username", "cognito:groups", "email", "email_verified",
                "phone_number", "phone_number_verified", "client_id", "scope", "username"
            ],
        }))
    }

    fn require_pool(&self, pool_id: &str) -> Result<(), ServiceError> {
        validate_pool_id(pool_id)?;
        if self.node.store().pool(pool_id)?.is_none() {
            return Err(ServiceError::not_found(format!("user pool {pool_id} does not exist")));
        }
        Ok(())
    }
}
