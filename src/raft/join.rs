//! Join tokens and the handshake that admits a fresh node.
//!
//! An admin issues a join token (`tessera cluster join-token create`); the
//! cluster stores only its *verifier*, a hash of the secret. The new node is
//! started with the token (`--join-token`), and `tessera cluster add-node`
//! on any member then runs a two-message handshake over the new node's peer
//! port, keyed by the verifier, which both sides can compute:
//!
//! 1. `JoinHello`: the member sends its nonce; the fresh node answers with
//!    the token id, its peer public key, its own nonce, and an HMAC over all
//!    of them. The member checks the token (exists, unexpired, uses left)
//!    and the HMAC: the node holds the token, and the key is the one it
//!    presented. The member then admits the key through Raft.
//! 2. `Join`: the member sends the cluster id, every member's peer key and
//!    the cluster sealing key encrypted under the verifier, with an HMAC
//!    over the fresh node's nonce. The fresh node checks the HMAC (only the
//!    cluster that issued its token can produce it), then binds itself to
//!    the cluster, records the keys and stores the sealing key.
//!
//! So a fresh node is bound only by the cluster whose token it holds, and a
//! caller without a valid token learns nothing and changes nothing. The
//! handshake carries no secret in the clear: the token secret never leaves
//! the node it was given to, and the sealing key travels encrypted.
#![allow(
    clippy::disallowed_methods,
    reason = "join tokens and handshakes draw randomness and read the clock before any command exists"
)]

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::model::cluster::JoinTokenRecord;

/// Prefix that makes join tokens recognisable (and greppable by secret
/// scanners).
pub const JOIN_TOKEN_PREFIX: &str = "tsrj_";

/// Longest join token accepted anywhere.
const MAX_TOKEN_LEN: usize = 128;

/// A join token as the node that joins holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Public id (16 hex characters).
    pub id: String,
    secret: [u8; 32],
}

impl std::fmt::Debug for JoinToken {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why a join token or handshake message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The text does not have the shape of a join token.
    #[error("not a join token: expected tsrj_<16 hex>_<secret> as printed by 'tessera cluster join-token create'")]
    Malformed,
    /// The other side does not hold the same token, or is not the cluster it names.
    #[error(
        "the join handshake proof does not match: the token is wrong, or the caller is not the cluster that issued it"
    )]
    BadProof,
    /// The sealing key handed over does not decrypt under the token: tampered, or for another token.
    #[error("the sealed sealing key does not open")]
    BadSeal,
}

impl JoinToken {
    /// Draws a fresh token.
    pub fn generate() -> Self {
        JoinToken {
            id: hex::encode(crate::clock::random_bytes::<8>()),
            secret: crate::clock::random_bytes::<32>(),
        }
    }

    /// Parses a token as printed. Pure and bounded.
    pub fn parse(text: &str) -> Result<Self, JoinError> {
        let text = text.trim();
        if text.len() > MAX_TOKEN_LEN {
            return Err(JoinError::Malformed);
        }
        let rest = text.strip_prefix(JOIN_TOKEN_PREFIX).ok_or(JoinError::Malformed)?;
        let (id, secret) = rest.split_once('_').ok_or(JoinError::Malformed)?;
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(JoinError::Malformed);
        }
        let secret: [u8; 32] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(secret)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(JoinError::Malformed)?;
        Ok(JoinToken {
            id: id.to_string(),
            secret,
        })
    }

    /// The token as an operator copies it.
    pub fn reveal(&self) -> String {
        format!(
            "{JOIN_TOKEN_PREFIX}{}_{}",
            self.id,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.secret)
        )
    }

    /// What the cluster stores in place of the secret.
    pub fn verifier(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"tessera join token v1\0");
        h.update(self.secret);
        h.finalize().into()
    }

    /// The record to replicate for a new token.
    pub fn record(
        &self,
        now: i64,
        ttl_ms: i64,
        max_uses: u32,
        node_id: Option<u64>,
        description: String,
    ) -> JoinTokenRecord {
        JoinTokenRecord {
            id: self.id.clone(),
            verifier: self.verifier(),
            created_at: now,
            expires_at: now.saturating_add(ttl_ms),
            max_uses,
            uses: 0,
            node_id,
            description,
        }
    }
}

fn mac(verifier: &[u8; 32], label: &str, parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(verifier) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    m.update(label.as_bytes());
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// What the fresh node proves in its hello.
pub fn hello_proof(
    verifier: &[u8; 32],
    cluster_id: &str,
    node_id: u64,
    peer_key: &[u8],
    member_nonce: &[u8],
    node_nonce: &[u8],
) -> [u8; 32] {
    mac(
        verifier,
        "tessera join hello v1",
        &[
            cluster_id.as_bytes(),
            &node_id.to_be_bytes(),
            peer_key,
            member_nonce,
            node_nonce,
        ],
    )
}

/// What the cluster proves in its offer.
pub fn offer_proof(
    verifier: &[u8; 32],
    cluster_id: &str,
    node_id: u64,
    node_nonce: &[u8],
    members: &[(u64, [u8; 32])],
    sealed_key: &[u8],
) -> [u8; 32] {
    let mut listed = Vec::with_capacity(members.len() * 40);
    for (id, key) in members {
        listed.extend_from_slice(&id.to_be_bytes());
        listed.extend_from_slice(key);
    }
    mac(
        verifier,
        "tessera join offer v1",
        &[
            cluster_id.as_bytes(),
            &node_id.to_be_bytes(),
            node_nonce,
            &listed,
            sealed_key,
        ],
    )
}

/// Constant-time check of a presented proof.
pub fn proof_matches(expected: &[u8; 32], presented: &[u8]) -> bool {
    presented.len() == 32 && bool::from(expected.ct_eq(presented))
}

fn seal_cipher(verifier: &[u8; 32]) -> ChaCha20Poly1305 {
    let k = mac(verifier, "tessera join seal v1", &[]);
    ChaCha20Poly1305::new(Key::from_slice(&k))
}

/// Encrypts the cluster sealing key for the node holding the token:
/// `nonce (12) | ciphertext`. Empty when the cluster has no sealing key.
pub fn seal_key(verifier: &[u8; 32], cluster_id: &str, sealing_key: Option<&[u8; 32]>) -> Vec<u8> {
    let Some(key) = sealing_key else {
        return Vec::new();
    };
    let nonce = crate::clock::random_bytes::<12>();
    let ct = seal_cipher(verifier)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: key,
                aad: cluster_id.as_bytes(),
            },
        )
        .unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    out
}

/// Opens what [`seal_key`] produced; `None` when none was sent.
pub fn open_key(verifier: &[u8; 32], cluster_id: &str, sealed: &[u8]) -> Result<Option<[u8; 32]>, JoinError> {
    if sealed.is_empty() {
        return Ok(None);
    }
    if sealed.len() < 12 {
        return Err(JoinError::BadSeal);
    }
    let (nonce, ct) = sealed.split_at(12);
    let plain = seal_cipher(verifier)
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: cluster_id.as_bytes(),
            },
        )
        .map_err(|_| JoinError::BadSeal)?;
    plain.try_into().map(Some).map_err(|_| JoinError::BadSeal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_malformed_ones_are_refused() {
        let t = JoinToken::generate();
        let text = t.reveal();
        assert!(text.starts_with(JOIN_TOKEN_PREFIX));
        assert_eq!(JoinToken::parse(&text).unwrap(), t);
        assert_eq!(JoinToken::parse(&format!(" {text}\n")).unwrap(), t);
        assert!(!format!("{t:?}").contains(&text[22..]), "Debug hides the secret");
        for bad in [
            "",
            "tsrj_",
            "tsra_0123456789abcdef_AAAA",
            "tsrj_0123456789abcde_AAAA",
            "tsrj_0123456789ABCDEF_AAAA",
            "tsrj_0123456789abcdef_AAAA",
            &format!("{text}x"),
        ] {
            assert!(JoinToken::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn proofs_bind_every_field() {
        let t = JoinToken::generate();
        let v = t.verifier();
        let p = hello_proof(&v, "c", 4, &[1; 32], &[2; 32], &[3; 32]);
        assert!(proof_matches(
            &p,
            &hello_proof(&v, "c", 4, &[1; 32], &[2; 32], &[3; 32])
        ));
        assert!(!proof_matches(
            &p,
            &hello_proof(&v, "c", 5, &[1; 32], &[2; 32], &[3; 32])
        ));
        assert!(!proof_matches(
            &p,
            &hello_proof(&v, "d", 4, &[1; 32], &[2; 32], &[3; 32])
        ));
        assert!(!proof_matches(
            &p,
            &hello_proof(&v, "c", 4, &[9; 32], &[2; 32], &[3; 32])
        ));
        let other = JoinToken::generate().verifier();
        assert!(!proof_matches(
            &p,
            &hello_proof(&other, "c", 4, &[1; 32], &[2; 32], &[3; 32])
        ));
        assert!(!proof_matches(&p, &p[..31]));
        let o = offer_proof(&v, "c", 4, &[3; 32], &[(1, [5; 32])], b"sealed");
        assert!(!proof_matches(
            &o,
            &offer_proof(&v, "c", 4, &[3; 32], &[(1, [6; 32])], b"sealed")
        ));
        assert!(!proof_matches(
            &o,
            &offer_proof(&v, "c", 4, &[3; 32], &[(1, [5; 32])], b"sealeD")
        ));
    }

    #[test]
    fn the_sealing_key_opens_only_with_the_same_token_and_cluster() {
        let v = JoinToken::generate().verifier();
        let sealed = seal_key(&v, "c", Some(&[7; 32]));
        assert_eq!(open_key(&v, "c", &sealed).unwrap(), Some([7; 32]));
        assert_eq!(open_key(&v, "d", &sealed), Err(JoinError::BadSeal));
        assert_eq!(
            open_key(&JoinToken::generate().verifier(), "c", &sealed),
            Err(JoinError::BadSeal)
        );
        assert_eq!(open_key(&v, "c", &[]).unwrap(), None);
        assert_eq!(open_key(&v, "c", &[1, 2, 3]), Err(JoinError::BadSeal));
    }
}
