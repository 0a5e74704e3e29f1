//! Authentication primitives, independent of transport and storage:
//! verification codes ([`codes`]), Cognito token claims ([`claims`]),
//! password hashing ([`password`]), the node's own token-signing key
//! ([`signing_key`]), JWT minting and verification ([`jwt`]), the JWKS
//! document ([`jwks`]), Cognito's `SECRET_HASH` ([`secret_hash`]) and
//! the lockout arithmetic ([`lockout`]) and the node-local reservations
//! that make it count guesses in flight ([`attempts`]).
//!
//! Nothing here logs a secret, and every comparison of secret material is
//! constant-time.

pub mod attempts;
pub mod claims;
pub mod codes;
pub mod jwks;
pub mod jwt;
pub mod lockout;
pub mod password;
pub mod rate_limit;
pub mod sealing;
pub mod secret_hash;
pub mod signing_key;
pub mod verifier;

/// Errors of the auth primitives. Messages never include secret material.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password hashing: {0}")]
    Hashing(String),
    #[error("the password hasher is overloaded; retry shortly")]
    Overloaded,
    #[error("signing key: {0}")]
    Key(String),
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
