//! Admin token checks.
//!
//! The root admin token is 32 random bytes shown once at `cluster init`; only
//! its SHA-256 is replicated. A high-entropy token needs no slow hash, but
//! the comparison is constant-time so that response timing leaks nothing.

use std::sync::Arc;

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ServiceError;
use crate::raft::RaftNode;

/// Prefix that makes Tessera admin tokens recognisable (and greppable by
/// secret scanners).
pub const TOKEN_PREFIX: &str = "tsr_";

/// Draws a fresh admin token and its hash.
pub fn new_admin_token() -> (String, [u8; 32]) {
    let raw = crate::clock::random_bytes::<32>();
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let hash = hash_token(&token);
    (token, hash)
}

/// SHA-256 of a token as presented.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Verifies admin bearer tokens against the replicated hash.
#[derive(Clone)]
pub struct AdminAuth {
    node: Arc<RaftNode>,
}

impl AdminAuth {
    /// A checker reading the admin token hash from `node`'s replicated state.
    pub fn new(node: Arc<RaftNode>) -> Self {
        AdminAuth { node }
    }

    /// Accepts the call if `token` is the cluster's admin token.
    pub async fn check(&self, token: Option<&str>) -> Result<(), ServiceError> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(ServiceError::not_authorized(
                "missing admin token: send 'authorization: Bearer <token>'",
            ));
        };
        let mut info = self.node.store().cluster_info()?;
        if info.is_none() && self.node.is_initialized().await {
            // A node that just joined may not have applied the cluster
            // settings yet; catch up once before refusing.
            if self.node.read_barrier().await.is_ok() {
                info = self.node.store().cluster_info()?;
            }
        }
        let Some(info) = info else {
            return Err(ServiceError::not_authorized(
                "this node is not part of an initialised cluster yet; run 'tessera cluster init' or add it to a cluster",
            ));
        };
        let presented = hash_token(token);
        if bool::from(presented.ct_eq(&info.root_token_sha256)) {
            Ok(())
        } else {
            Err(ServiceError::not_authorized("invalid admin token"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hash_stably() {
        let (a, ha) = new_admin_token();
        let (b, hb) = new_admin_token();
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() > 40);
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(hash_token(&a), ha);
    }
}
