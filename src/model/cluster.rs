//! Cluster-wide settings and membership descriptions.

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// Settings chosen once at `cluster init` and replicated to every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// Random id chosen at init; binds every node's data dir to this cluster.
    pub cluster_id: String,
    /// External base URL; token issuers are `{public_url}/{pool_id}`.
    pub public_url: String,
    /// SHA-256 of the root admin token. The token itself is never stored.
    pub root_token_sha256: [u8; 32],
    /// Unix milliseconds.
    pub created_at: i64,
}

/// The public half of a node's token-signing key, replicated so that every
/// node can verify every node's tokens and serve one JWKS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    /// Key id that tokens signed with this key carry in their header.
    pub kid: String,
    /// The node that holds the private half.
    pub node_id: u64,
    /// Raw Ed25519 public key.
    pub public_key: [u8; 32],
    /// Unix milliseconds.
    pub created_at: i64,
    /// Where the key is in its life; decided in `apply` (see [`KeyState`]).
    pub state: KeyState,
    /// When its node stopped signing with it (Unix ms): the start of the
    /// retiring period. `None` while active, and for a key of a removed
    /// node until the next `ExpireSigningKeys` stamps it.
    pub stopped_signing_at: Option<i64>,
    /// When it is (or was) retired (Unix ms): `stopped_signing_at` plus the
    /// longest token lifetime of any pool or app client at that moment.
    /// From then on no node verifies its tokens, even before the
    /// `ExpireSigningKeys` that records the state change is applied.
    pub retire_at: Option<i64>,
}

/// The life of a signing key. A key only moves forward:
/// `Active -> Retiring -> Retired`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KeyState {
    /// Its node signs with it; in the JWKS; its tokens verify.
    #[default]
    Active,
    /// Nobody signs with it (rotated out, or its node was removed); still in
    /// the JWKS so that the tokens it signed before verify until they expire.
    Retiring,
    /// Gone from the JWKS; every token it signed is refused.
    Retired,
}

impl KeyState {
    /// The name shown by `RotateSigningKeys` and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Retiring => "retiring",
            KeyState::Retired => "retired",
        }
    }
}

impl SigningKeyRecord {
    /// Whether tokens signed with this key verify at `now_ms`: not retired,
    /// and not past its scheduled retirement (a node's clock may pass
    /// `retire_at` before the command that records it is applied).
    pub fn verifies_at(&self, now_ms: i64) -> bool {
        self.state != KeyState::Retired && self.retire_at.is_none_or(|t| now_ms < t)
    }

    /// Whether its node may still sign with it.
    pub fn signs(&self) -> bool {
        self.state == KeyState::Active
    }
}

/// Where a node can be reached. Replicated inside Raft's membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeAddr {
    /// `host:port` of the peer (Raft) listener.
    pub peer_addr: String,
    /// `host:port` of the client API listener.
    pub api_addr: String,
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer={} api={}", self.peer_addr, self.api_addr)
    }
}

/// Node ids are positive; 0 is reserved as "none" on the wire.
pub fn validate_node_id(id: u64) -> Result<(), ValidationError> {
    if id == 0 {
        return Err(ValidationError::new("node_id", "must be a positive integer"));
    }
    Ok(())
}

/// Checks a `host:port` address: non-empty host, numeric non-zero port.
pub fn validate_host_port(field: &'static str, addr: &str) -> Result<(), ValidationError> {
    if addr.is_empty() || addr.len() > 255 {
        return Err(ValidationError::new(field, "must be host:port, at most 255 characters"));
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(ValidationError::new(field, format!("{addr:?} is not host:port")));
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(ValidationError::new(field, format!("{addr:?} has an invalid host")));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(ValidationError::new(field, format!("{addr:?} has an invalid port"))),
    }
}

/// Checks a public URL: http(s), no trailing slash, no query.
pub fn validate_public_url(url: &str) -> Result<(), ValidationError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| ValidationError::new("public_url", "must start with http:// or https://"))?;
    if rest.is_empty() || url.len() > 2048 {
        return Err(ValidationError::new(
            "public_url",
            "must name a host and be at most 2048 characters",
        ));
    }
    if url.ends_with('/') || url.contains(['?', '#', ' ']) {
        return Err(ValidationError::new(
            "public_url",
            "must not end with '/' or contain a query, fragment or space",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_urls() {
        assert!(validate_host_port("peer_addr", "127.0.0.1:7701").is_ok());
        assert!(validate_host_port("peer_addr", "node-1:7701").is_ok());
        assert!(validate_host_port("peer_addr", "[::1]:7701").is_ok());
        assert!(validate_host_port("peer_addr", "127.0.0.1").is_err());
        assert!(validate_host_port("peer_addr", ":7701").is_err());
        assert!(validate_host_port("peer_addr", "h:0").is_err());
        assert!(validate_host_port("peer_addr", "h:99999").is_err());
        assert!(validate_public_url("https://id.example.com").is_ok());
        assert!(validate_public_url("https://id.example.com/").is_err());
        assert!(validate_public_url("ftp://x").is_err());
        assert!(validate_node_id(0).is_err());
    }
}

/// The public half of a member's peer key: the proof of membership that
/// every peer call is checked against (see `raft::peer_auth`). Written when
/// the node is admitted, deleted when it is removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerKeyRecord {
    /// The member this key proves.
    pub node_id: u64,
    /// Raw Ed25519 public key.
    pub public_key: [u8; 32],
    /// Unix milliseconds.
    pub admitted_at: i64,
    /// The join token that admitted it; `None` for the node that formed the
    /// cluster.
    pub token_id: Option<String>,
}

/// A join token as the cluster stores it: never the secret, only a
/// verifier derived from it (which the joining node can derive too, so the
/// two can prove to each other that they hold the same token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenRecord {
    /// Public id, the part of the token before the secret.
    pub id: String,
    /// SHA-256 of the secret under a fixed label.
    pub verifier: [u8; 32],
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds; refused from then on.
    pub expires_at: i64,
    /// How many nodes it may admit; 0 means any number until it expires.
    pub max_uses: u32,
    /// Nodes admitted with it so far.
    pub uses: u32,
    /// Only this node id may join with it, when set.
    pub node_id: Option<u64>,
    /// Free text for operators ("node 4, rack B").
    pub description: String,
}

impl JoinTokenRecord {
    /// Why the token cannot admit `node_id` at `now`, if it cannot.
    pub fn refusal(&self, node_id: u64, now: i64) -> Option<String> {
        if now >= self.expires_at {
            Some(format!("join token {} expired", self.id))
        } else if self.max_uses > 0 && self.uses >= self.max_uses {
            Some(format!("join token {} was already used", self.id))
        } else if self.node_id.is_some_and(|n| n != node_id) {
            Some(format!("join token {} is not for node {node_id}", self.id))
        } else {
            None
        }
    }
}
