//! SRP state: whether a pool allows SRP sign-in, and a user's verifier.
//!
//! A verifier is derived from the password, so it is a secret of the same
//! kind as the password hash, but weaker (one SHA-256 per guess against
//! argon2id's 20 ms): a pool keeps verifiers only while SRP is on, and
//! turning it off deletes them all.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::user::User;
use super::ValidationError;

/// Bytes of an SRP salt.
pub const SALT_BYTES: usize = 16;
/// Bytes of a verifier (a number modulo the 3072-bit group).
pub const VERIFIER_BYTES: usize = 384;

/// A pool's SRP setting (`srp_enabled` of `CreateUserPool` and
/// `UpdateUserPool`), in its own table so the pool record and its logged
/// commands keep their encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSrp {
    /// `USER_SRP_AUTH` is allowed and verifiers are kept.
    pub enabled: bool,
    /// Unix ms of the last change.
    pub modified_at: i64,
}

/// A user's SRP salt and verifier, with the password hash they were made
/// alongside: a verifier counts only while the user's password hash is
/// still that one, so every password change or reset (on any path)
/// retires it at once, and the next sign-in that sees the password makes
/// a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SrpVerifier {
    /// [`SALT_BYTES`] random bytes, first byte 1..=0x7f.
    pub salt: Vec<u8>,
    /// `g^x mod N`, [`VERIFIER_BYTES`] big-endian.
    pub verifier: Vec<u8>,
    /// [`credential_digest`] of the password hash it goes with.
    pub credential: [u8; 32],
    /// Unix ms when it was made.
    pub set_at: i64,
}

impl SrpVerifier {
    /// Shape checks of a proposed verifier.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.salt.len() != SALT_BYTES || self.verifier.len() != VERIFIER_BYTES {
            return Err(ValidationError::new(
                "srp_verifier",
                format!("a salt of {SALT_BYTES} bytes and a verifier of {VERIFIER_BYTES} bytes"),
            ));
        }
        Ok(())
    }

    /// Whether this verifier goes with `user`'s current password.
    pub fn is_current_for(&self, user: &User) -> bool {
        user.password_phc
            .as_deref()
            .is_some_and(|phc| credential_digest(phc) == self.credential)
    }
}

/// SHA-256 of a stored password hash: what binds a verifier to it.
pub fn credential_digest(password_phc: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"tessera srp credential\0")
        .chain_update(password_phc.as_bytes())
        .finalize()
        .into()
}
