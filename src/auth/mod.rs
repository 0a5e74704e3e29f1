//! Authentication primitives, independent of transport and storage:
//! verification codes ([`codes`]), Cognito token claims ([`claims`]),
//! password hashing ([`password`]) and the imported formats it verifies
//! ([`foreign_hash`]), the node's own token-signing key
//! ([`signing_key`]), JWT minting and verification ([`jwt`]), the JWKS
//! document ([`jwks`]), Cognito's `SECRET_HASH` ([`secret_hash`]) and
//! the lockout arithmetic ([`lockout`]) and the node-local reservations
//! that make it count guesses in flight ([`attempts`]), and software-token
//! MFA: RFC 6238 TOTP, `otpauth://` URIs and recovery codes ([`totp`]), and
//! AWS Signature Version 4 checks of admin access keys ([`sigv4`]).
//!
//! Nothing here logs a secret, and every comparison of secret material is
//! constant-time.

pub mod attempts;
pub mod claims;
pub mod credentials;
/// Codes moved to `model` (the store keeps them); the old path stays.
pub use crate::model::code as codes;
pub mod foreign_hash;
pub mod jwks;
pub mod jwt;
pub mod oidc;
/// Lockout state moved to `model` (the store keeps it); the old path stays.
pub use crate::model::lockout;
pub mod password;
pub mod pkce;
pub mod rate_limit;
pub mod sealing;
pub mod secret_hash;
pub mod signing_key;
pub mod sigv4;
pub mod srp;
pub mod totp;
pub mod verifier;
pub mod webauthn;

/// Errors of the auth primitives. Messages never include secret material.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// argon2 failed, or its worker pool broke.
    #[error("password hashing: {0}")]
    Hashing(String),
    /// Every hashing slot is busy and the wait timed out; the caller should retry.
    #[error("the password hasher is overloaded; retry shortly")]
    Overloaded,
    /// A key file or sealed value is unusable (unreadable, malformed, or does not open); the message says which.
    #[error("signing key: {0}")]
    Key(String),
    /// A token failed verification; says why, never with the token.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// Reading or writing a key file failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Creates `path` (and its directory) holding `contents`, readable by the
/// owner only (0600), fsynced before returning. Refuses to overwrite: a key
/// file is written once, and a second writer must read the first's.
pub fn write_private_file(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.create_new(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        // The new name must survive a crash too.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
