//! Token-signing keys: publishing this node's public key into the
//! replicated JWKS, and reading the JWKS and OpenID discovery documents.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::ServiceError;
use crate::auth::jwks::{Jwk, Jwks};
use crate::auth::signing_key::NodeSigningKey;
use crate::command::Command;
use crate::model::cluster::SigningKeyRecord;
use crate::model::pool::validate_pool_id;
use crate::raft::RaftNode;

/// This node's signing key and the cluster's key set.
#[derive(Clone)]
pub struct KeyService {
    node: Arc<RaftNode>,
    key: Arc<NodeSigningKey>,
}

impl KeyService {
    pub fn new(node: Arc<RaftNode>, key: Arc<NodeSigningKey>) -> Self {
        KeyService { node, key }
    }

    /// The key this node signs with.
    pub fn signing_key(&self) -> &Arc<NodeSigningKey> {
        &self.key
    }

    /// Whether this node's public key is in the replicated key set.
    pub fn is_registered(&self) -> Result<bool, ServiceError> {
        let kid = self.key.kid();
        Ok(self.node.store().signing_keys()?.iter().any(|k| k.kid == kid))
    }

    /// Publishes this node's public key once the node belongs to an
    /// initialised cluster; retries until it is replicated or `stop` fires.
    pub async fn publish_until_registered(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let ready = self.node.store().cluster_info().ok().flatten().is_some() && self.node.is_ready();
            if ready {
                match self.is_registered() {
                    Ok(true) => return,
                    Ok(false) => {
                        let rec = SigningKeyRecord {
                            kid: self.key.kid().to_string(),
                            node_id: self.node.node_id(),
                            public_key: self.key.public().to_bytes(),
                            created_at: crate::clock::now_millis(),
                        };
                        match self.node.propose(Command::RegisterSigningKey(rec)).await {
                            Ok(_) => {
                                tracing::info!(kid = self.key.kid(), "signing key published to the JWKS");
                                return;
                            }
                            Err(e) => tracing::debug!(error = %e, "publishing signing key; will retry"),
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "reading signing keys"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// The JWKS of `pool_id`: every node's public key (keys are
    /// cluster-wide; every pool publishes the same set).
    pub fn jwks(&self, pool_id: &str) -> Result<Jwks, ServiceError> {
        self.require_pool(pool_id)?;
        let keys = self
            .node
            .store()
            .signing_keys()?
            .into_iter()
            .filter_map(|rec| {
                let public = ed25519_dalek::VerifyingKey::from_bytes(&rec.public_key).ok()?;
                Some(Jwk::ed25519(&rec.kid, &public))
            })
            .collect();
        Ok(Jwks { keys })
    }

    /// The issuer of `pool_id`'s tokens: `{public_url}/{pool_id}`.
    pub fn issuer(&self, pool_id: &str) -> Result<String, ServiceError> {
        let info = self
            .node
            .store()
            .cluster_info()?
            .ok_or_else(|| ServiceError::not_found("the cluster is not initialised"))?;
        Ok(format!("{}/{pool_id}", info.public_url))
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
