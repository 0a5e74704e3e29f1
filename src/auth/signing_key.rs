//! Each node's own Ed25519 token-signing key.
//!
//! The private key is generated on the node, written to `keys/` in its data
//! dir with mode 0600, and never leaves it (ARCHITECTURE.md §2.3). Only the
//! public key is replicated, into the JWKS, under a `kid` that names the
//! node and a fingerprint of the key, so any node can verify any node's
//! tokens.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::AuthError;

/// A node's signing key and its key id.
pub struct NodeSigningKey {
    kid: String,
    key: SigningKey,
    /// When the key was generated (Unix ms); drives scheduled rotation.
    created_at: i64,
}

impl std::fmt::Debug for NodeSigningKey {
    /// Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The `kid` of `public` on node `node_id`: stable, unique per key.
pub fn key_id(node_id: u64, public: &VerifyingKey) -> String {
    let fp = Sha256::digest(public.as_bytes());
    format!("n{node_id}-{}", hex::encode(&fp[..8]))
}

impl NodeSigningKey {
    /// A key from a 32-byte seed drawn by the caller.
    pub fn from_seed(node_id: u64, seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        NodeSigningKey {
            kid: key_id(node_id, &key.verifying_key()),
            key,
            created_at: 0,
        }
    }

    /// Loads the newest key in `dir`, or creates one. The file holds the
    /// hex seed and is created with mode 0600 and fsynced.
    pub fn load_or_create(dir: &Path, node_id: u64) -> Result<Self, AuthError> {
        std::fs::create_dir_all(dir)?;
        if let Some(path) = newest_key_file(dir)? {
            let text = std::fs::read_to_string(&path)?;
            let seed: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| AuthError::Key(format!("{} is not a 32-byte hex seed", path.display())))?;
            let mut key = Self::from_seed(node_id, seed);
            key.created_at = created_at_of(&path);
            return Ok(key);
        }
        Self::create(dir, node_id)
    }

    /// Creates a fresh key file in `dir` (rotation adds one; the newest is
    /// used for signing).
    pub fn create(dir: &Path, node_id: u64) -> Result<Self, AuthError> {
        let mut key = Self::from_seed(node_id, crate::clock::random_bytes::<32>());
        let seq = crate::clock::now_millis();
        key.created_at = seq;
        let path = dir.join(format!("ed25519-{seq:016}-{}.key", key.kid));
        let mut opts = std::fs::OpenOptions::new();
        opts.create_new(true).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&path)?;
        f.write_all(hex::encode(key.key.to_bytes()).as_bytes())?;
        f.sync_all()?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(key)
    }

    /// The key id published with this key in the JWKS and set in the tokens it signs.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// When the key was generated (Unix ms; 0 for keys made from a seed).
    pub fn created_at(&self) -> i64 {
        self.created_at
    }

    /// Deletes the private key files in `dir` other than this key's, once a
    /// rotation has made this key the one that signs: old private keys are
    /// no longer needed (their public halves stay in the JWKS).
    pub fn remove_older_files(&self, dir: &Path) -> Result<(), AuthError> {
        for path in key_files(dir)? {
            let is_mine = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&format!("-{}.key", self.kid)));
            if !is_mine {
                std::fs::remove_file(&path)?;
            }
        }
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    /// The public half, replicated into the JWKS.
    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// The creation time encoded in a key file's name (`ed25519-<ms>-<kid>.key`).
fn created_at_of(path: &Path) -> i64 {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("ed25519-"))
        .and_then(|n| n.get(..16))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn newest_key_file(dir: &Path) -> Result<Option<PathBuf>, AuthError> {
    let mut files = key_files(dir)?;
    files.sort();
    Ok(files.pop())
}

fn key_files(dir: &Path) -> Result<Vec<PathBuf>, AuthError> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ed25519-") && n.ends_with(".key"))
        })
        .collect();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_private_stable_across_loads_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let a = NodeSigningKey::load_or_create(dir.path(), 3).unwrap();
        assert!(a.kid().starts_with("n3-"));
        let b = NodeSigningKey::load_or_create(dir.path(), 3).unwrap();
        assert_eq!(a.kid(), b.kid(), "reloading keeps the key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for e in std::fs::read_dir(dir.path()).unwrap() {
                let mode = e.unwrap().metadata().unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600);
            }
        }
        assert!(
            !format!("{a:?}").contains(&hex::encode(a.key.to_bytes())),
            "Debug hides the key"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
        let c = NodeSigningKey::create(dir.path(), 3).unwrap();
        let d = NodeSigningKey::load_or_create(dir.path(), 3).unwrap();
        assert_ne!(a.kid(), c.kid());
        assert_eq!(c.kid(), d.kid(), "the newest key signs after rotation");
        assert!(d.created_at() > 0 && d.created_at() == c.created_at());
        d.remove_older_files(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(NodeSigningKey::load_or_create(dir.path(), 3).unwrap().kid(), c.kid());
    }
}
