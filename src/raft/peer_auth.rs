//! Proof of membership on the peer port.
//!
//! Every node holds its own Ed25519 *peer key* (`peer.key` in its data dir,
//! mode 0600), separate from its token-signing key. The public half of each
//! member's peer key is replicated (`Table::PeerKeys`), written when the
//! node is admitted with a join token, and deleted when the node is removed.
//! Every peer call carries a short-lived credential in [`HDR_PEER_AUTH`]:
//!
//! ```text
//! v1.<from node id>.<issued at, unix seconds>.<base64url signature>
//! ```
//!
//! The signature covers the cluster id, the sender, the receiver and the
//! time, so a credential works only on the link it was made for, only in
//! this cluster and only for [`CREDENTIAL_LIFETIME_SECS`] either side of its
//! issue time. A removed node's key is gone from the replicated table, so
//! its credentials stop working as soon as the removal is applied.
//!
//! Credentials do not hide traffic: without TLS a listener on the network
//! reads the calls (and could replay one credential on its own link within
//! its lifetime). That is why `serve` refuses a plaintext peer listener on a
//! non-loopback address unless the operator says the network is private.
//!
//! Signing costs ~15 µs and verifying ~31 µs, so both sides cache: a sender
//! reuses a credential for [`REUSE_SECS`], and a receiver remembers the
//! credentials it verified (bounded), re-checking only that the sender's key
//! is still the replicated one.
#![allow(
    clippy::disallowed_methods,
    reason = "peer credentials are signed over the current time"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// Metadata key of the peer credential.
pub const HDR_PEER_AUTH: &str = "x-tessera-peer-auth";

/// How far a credential's issue time may be from the receiver's clock, in
/// either direction. Bounds replay, and tolerates this much clock skew
/// between nodes.
pub const CREDENTIAL_LIFETIME_SECS: i64 = 120;

/// How long a sender reuses one credential before signing a new one.
pub const REUSE_SECS: i64 = 30;

/// Verified credentials a receiver remembers (one per live link is enough).
const VERIFIED_CACHE: usize = 1024;

/// Longest credential header accepted; anything longer is refused unread.
const MAX_CREDENTIAL_LEN: usize = 256;

/// Why a peer credential was refused. Messages never include the
/// credential itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerAuthError {
    /// The call carries no credential.
    #[error("no peer credential ({HDR_PEER_AUTH}); only members of this cluster may call the peer port")]
    Missing,
    /// The credential does not parse; says which part is wrong.
    #[error("malformed peer credential: {0}")]
    Malformed(&'static str),
    /// The credential's time is too far from the receiver's clock (stale, replayed, or skewed clocks).
    #[error("peer credential issued at {issued_at}, more than {CREDENTIAL_LIFETIME_SECS} s from this node's clock ({now}); check the nodes' clocks")]
    Expired {
        /// When the credential says it was made (Unix seconds).
        issued_at: i64,
        /// The receiver's clock (Unix seconds).
        now: i64,
    },
    /// The sender names a node id without a replicated peer key (never admitted, or removed).
    #[error("node {0} is not an admitted member of this cluster")]
    UnknownNode(u64),
    /// The signature does not verify under the sender's peer key.
    #[error("peer credential of node {0} has a bad signature")]
    BadSignature(u64),
    /// This node knows no cluster yet (not joined), so no caller can be proven a member.
    #[error("this node has not joined a cluster; it accepts only a join from the cluster whose join token it holds")]
    NotJoined,
}

/// A parsed, not yet verified, credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The node id the sender claims to be.
    pub from: u64,
    /// When the credential was made (Unix seconds).
    pub issued_at: i64,
    /// Ed25519 signature over cluster id, sender, receiver and time.
    pub signature: [u8; 64],
}

/// Parses a credential header. Pure and bounded: safe on any input.
pub fn parse(header: &str) -> Result<Credential, PeerAuthError> {
    if header.len() > MAX_CREDENTIAL_LEN {
        return Err(PeerAuthError::Malformed("too long"));
    }
    let mut parts = header.split('.');
    if parts.next() != Some("v1") {
        return Err(PeerAuthError::Malformed("unknown version"));
    }
    let from = parts
        .next()
        .and_then(|p| p.parse::<u64>().ok())
        .filter(|n| *n > 0)
        .ok_or(PeerAuthError::Malformed("bad node id"))?;
    let issued_at = parts
        .next()
        .and_then(|p| p.parse::<i64>().ok())
        .ok_or(PeerAuthError::Malformed("bad issue time"))?;
    let sig = parts.next().ok_or(PeerAuthError::Malformed("no signature"))?;
    if parts.next().is_some() {
        return Err(PeerAuthError::Malformed("trailing fields"));
    }
    let signature: [u8; 64] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(PeerAuthError::Malformed("bad signature encoding"))?;
    Ok(Credential {
        from,
        issued_at,
        signature,
    })
}

/// The bytes a credential signs.
fn signed_bytes(cluster_id: &str, from: u64, to: u64, issued_at: i64) -> Vec<u8> {
    format!("tessera peer credential v1\0{cluster_id}\0{from}\0{to}\0{issued_at}").into_bytes()
}

/// This node's peer key.
pub struct PeerIdentity {
    key: SigningKey,
}

impl std::fmt::Debug for PeerIdentity {
    /// Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerIdentity")
            .field("public", &hex::encode(self.public()))
            .finish_non_exhaustive()
    }
}

impl PeerIdentity {
    /// A key from a seed (tests; `load_or_create` draws one).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        PeerIdentity {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// Loads `path` (hex seed), or creates it with a fresh key, mode 0600,
    /// fsynced before use.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        if path.exists() {
            let text = std::fs::read_to_string(path)?;
            let seed: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} does not hold a 32-byte hex peer key", path.display()),
                    )
                })?;
            return Ok(Self::from_seed(seed));
        }
        let id = Self::from_seed(crate::clock::random_bytes::<32>());
        crate::auth::write_private_file(path, hex::encode(id.key.to_bytes()).as_bytes())?;
        Ok(id)
    }

    /// The public key that other members verify this node's calls with.
    pub fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// A credential for a call from `from` (this node) to `to`.
    pub fn credential(&self, cluster_id: &str, from: u64, to: u64, now_secs: i64) -> String {
        let sig = self.key.sign(&signed_bytes(cluster_id, from, to, now_secs));
        format!(
            "v1.{from}.{now_secs}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig.to_bytes())
        )
    }
}

/// Verifies `cred` as a call to `to` in `cluster_id` at `now_secs`, with
/// the sender's public key `key`.
pub fn verify(
    cred: &Credential,
    key: &[u8; 32],
    cluster_id: &str,
    to: u64,
    now_secs: i64,
) -> Result<(), PeerAuthError> {
    if (cred.issued_at - now_secs).abs() > CREDENTIAL_LIFETIME_SECS {
        return Err(PeerAuthError::Expired {
            issued_at: cred.issued_at,
            now: now_secs,
        });
    }
    let public = VerifyingKey::from_bytes(key).map_err(|_| PeerAuthError::BadSignature(cred.from))?;
    public
        .verify(
            &signed_bytes(cluster_id, cred.from, to, cred.issued_at),
            &Signature::from_bytes(&cred.signature),
        )
        .map_err(|_| PeerAuthError::BadSignature(cred.from))
}

/// Credentials this node made, per receiver, for reuse.
#[derive(Default)]
pub struct CredentialCache {
    made: Mutex<BTreeMap<(String, u64), (i64, String)>>,
}

impl CredentialCache {
    /// A credential for `to`, reusing one made less than [`REUSE_SECS`] ago.
    pub fn get(&self, id: &PeerIdentity, cluster_id: &str, from: u64, to: u64, now_secs: i64) -> String {
        let mut made = match self.made.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let key = (cluster_id.to_string(), to);
        if let Some((at, cred)) = made.get(&key) {
            if (0..REUSE_SECS).contains(&(now_secs - at)) {
                return cred.clone();
            }
        }
        let cred = id.credential(cluster_id, from, to, now_secs);
        made.insert(key, (now_secs, cred.clone()));
        cred
    }
}

/// Credentials this node verified, so that a link costs one signature
/// check per [`REUSE_SECS`] instead of one per call.
#[derive(Default)]
pub struct VerifiedCache {
    seen: Mutex<BTreeMap<String, [u8; 32]>>,
}

impl VerifiedCache {
    /// Checks `header` for a call to `to` at `now_secs`. `key_of` returns
    /// the sender's current replicated key; it is consulted on every call,
    /// cached or not, so a removed node is refused at once.
    pub fn check(
        &self,
        header: Option<&str>,
        cluster_id: &str,
        to: u64,
        now_secs: i64,
        key_of: impl Fn(u64) -> Option<[u8; 32]>,
    ) -> Result<u64, PeerAuthError> {
        let header = header.ok_or(PeerAuthError::Missing)?;
        let cred = parse(header)?;
        let key = key_of(cred.from).ok_or(PeerAuthError::UnknownNode(cred.from))?;
        if (cred.issued_at - now_secs).abs() > CREDENTIAL_LIFETIME_SECS {
            return Err(PeerAuthError::Expired {
                issued_at: cred.issued_at,
                now: now_secs,
            });
        }
        let cache_key = format!("{cluster_id}\0{to}\0{header}");
        {
            let seen = match self.seen.lock() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            if let Some(k) = seen.get(&cache_key) {
                if subtle::ConstantTimeEq::ct_eq(&k[..], &key[..]).into() {
                    return Ok(cred.from);
                }
            }
        }
        verify(&cred, &key, cluster_id, to, now_secs)?;
        let mut seen = match self.seen.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if seen.len() >= VERIFIED_CACHE {
            // Old credentials expire within minutes; starting over is
            // cheaper than tracking ages, and costs one verify per link.
            seen.clear();
        }
        seen.insert(cache_key, key);
        Ok(cred.from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (PeerIdentity, [u8; 32]) {
        let id = PeerIdentity::from_seed([7; 32]);
        let public = id.public();
        (id, public)
    }

    #[test]
    fn a_credential_verifies_only_on_its_link_cluster_and_time() {
        let (id, public) = keys();
        let cred = id.credential("c1", 2, 1, 1_000);
        let parsed = parse(&cred).unwrap();
        assert_eq!(parsed.from, 2);
        assert!(verify(&parsed, &public, "c1", 1, 1_000).is_ok());
        assert!(verify(&parsed, &public, "c1", 1, 1_000 + CREDENTIAL_LIFETIME_SECS).is_ok());
        assert_eq!(
            verify(&parsed, &public, "c1", 3, 1_000),
            Err(PeerAuthError::BadSignature(2)),
            "another receiver"
        );
        assert_eq!(
            verify(&parsed, &public, "c2", 1, 1_000),
            Err(PeerAuthError::BadSignature(2)),
            "another cluster"
        );
        assert!(matches!(
            verify(&parsed, &public, "c1", 1, 1_000 + CREDENTIAL_LIFETIME_SECS + 1),
            Err(PeerAuthError::Expired { .. })
        ));
        let other = PeerIdentity::from_seed([8; 32]).public();
        assert_eq!(
            verify(&parsed, &other, "c1", 1, 1_000),
            Err(PeerAuthError::BadSignature(2))
        );
    }

    #[test]
    fn a_claimed_sender_must_match_the_signature() {
        let (id, public) = keys();
        // Node 2's signature presented as node 3's.
        let cred = id.credential("c1", 2, 1, 50).replacen("v1.2.", "v1.3.", 1);
        let parsed = parse(&cred).unwrap();
        assert_eq!(
            verify(&parsed, &public, "c1", 1, 50),
            Err(PeerAuthError::BadSignature(3))
        );
    }

    #[test]
    fn parse_refuses_malformed_headers() {
        for bad in [
            "",
            "v2.1.1.AAAA",
            "v1.0.1.AAAA",
            "v1.x.1.AAAA",
            "v1.1.x.AAAA",
            "v1.1.1",
            "v1.1.1.AAAA",
            "v1.1.1.AAAA.extra",
            &"v1.1.1.".repeat(100),
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn the_verified_cache_still_refuses_a_removed_node() {
        let (id, public) = keys();
        let cache = VerifiedCache::default();
        let cred = id.credential("c1", 2, 1, 100);
        let admitted = |n: u64| (n == 2).then_some(public);
        assert_eq!(cache.check(Some(&cred), "c1", 1, 100, admitted), Ok(2));
        assert_eq!(cache.check(Some(&cred), "c1", 1, 101, admitted), Ok(2), "cached");
        assert_eq!(
            cache.check(Some(&cred), "c1", 1, 101, |_| None),
            Err(PeerAuthError::UnknownNode(2)),
            "removed after it was cached"
        );
        assert_eq!(cache.check(None, "c1", 1, 101, admitted), Err(PeerAuthError::Missing));
        assert!(matches!(
            cache.check(Some(&cred), "c1", 1, 100 + CREDENTIAL_LIFETIME_SECS + 1, admitted),
            Err(PeerAuthError::Expired { .. })
        ));
    }

    #[test]
    fn the_sender_reuses_a_credential_then_renews_it() {
        let (id, _) = keys();
        let cache = CredentialCache::default();
        let a = cache.get(&id, "c", 1, 2, 10);
        assert_eq!(cache.get(&id, "c", 1, 2, 10 + REUSE_SECS - 1), a);
        assert_ne!(cache.get(&id, "c", 1, 2, 10 + REUSE_SECS), a);
        assert_ne!(cache.get(&id, "c", 1, 3, 10), a, "per receiver");
    }
}
