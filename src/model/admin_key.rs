//! Admin access keys: the AWS-style key pairs that sign admin calls with
//! Signature Version 4 (`crate::auth::sigv4`), beside the admin bearer
//! token of the gRPC API.
//!
//! SigV4 is an HMAC keyed by the secret, so a node must read the secret
//! back to check a signature: it is stored sealed under the cluster
//! sealing key (`crate::auth::sealing`), bound to its key id, never
//! hashed and never in the clear.

use serde::{Deserialize, Serialize};

use super::app_client::SealedSecret;
use super::ValidationError;

/// Shortest and longest access key id an operator may choose (AWS: 16 to 128).
pub const KEY_ID_CHARS: std::ops::RangeInclusive<usize> = 16..=128;
/// Shortest and longest secret an operator may choose.
pub const SECRET_CHARS: std::ops::RangeInclusive<usize> = 16..=128;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 256;
/// Most admin access keys a cluster keeps: a bound on the table and on
/// `ListAdminAccessKeys`, far above what operators use.
pub const MAX_KEYS: usize = 1000;

/// One admin access key as stored and replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminAccessKey {
    /// The access key id (`AKIA...`), unique in the cluster.
    pub key_id: String,
    /// The secret access key, sealed with [`secret_context`] of `key_id`.
    pub secret: SealedSecret,
    /// Unix ms when it was created.
    pub created_at: i64,
    /// What the operator said it is for; may be empty.
    pub description: String,
}

/// The sealing context of a key's secret: a sealed secret copied to
/// another key id does not open.
pub fn secret_context(key_id: &str) -> Vec<u8> {
    format!("tessera admin access key\0{key_id}").into_bytes()
}

/// An access key id: 16 to 128 of `A-Z 0-9`, like AWS's.
pub fn validate_key_id(key_id: &str) -> Result<(), ValidationError> {
    if !KEY_ID_CHARS.contains(&key_id.len()) || !key_id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
        return Err(ValidationError::new(
            "key_id",
            "16 to 128 characters of A-Z and 0-9 (like AWS access key ids)",
        ));
    }
    Ok(())
}

/// A secret: 16 to 128 printable ASCII characters, no spaces (it travels
/// in config files and environment variables).
pub fn validate_secret(secret: &str) -> Result<(), ValidationError> {
    if !SECRET_CHARS.contains(&secret.len()) || !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ValidationError::new(
            "secret",
            "16 to 128 printable ASCII characters without spaces",
        ));
    }
    Ok(())
}

/// A description: at most [`MAX_DESCRIPTION_CHARS`] characters, no control characters.
pub fn validate_description(description: &str) -> Result<(), ValidationError> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS || description.chars().any(char::is_control) {
        return Err(ValidationError::new(
            "description",
            format!("at most {MAX_DESCRIPTION_CHARS} characters, without control characters"),
        ));
    }
    Ok(())
}

impl AdminAccessKey {
    /// Shape checks of a proposed key (the sealed secret is opaque here).
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_key_id(&self.key_id)?;
        validate_description(&self.description)?;
        if self.secret.ciphertext.len() > SECRET_CHARS.end() + 16 {
            return Err(ValidationError::new("secret", "the sealed secret is too long"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_secrets_and_descriptions_are_bounded() {
        assert!(validate_key_id("AKIAABCDEFGHIJKLMNOP").is_ok());
        assert!(validate_key_id("AKIA0123456789AB").is_ok());
        assert!(validate_key_id("AKIA0123456789A").is_err());
        assert!(validate_key_id("akia0123456789ab").is_err());
        assert!(validate_key_id(&"A".repeat(129)).is_err());
        assert!(validate_secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY").is_ok());
        assert!(validate_secret("short").is_err());
        assert!(validate_secret("with a space in it!").is_err());
        assert!(validate_secret(&"x".repeat(129)).is_err());
        assert!(validate_description("CI of the billing service").is_ok());
        assert!(validate_description("line\nbreak").is_err());
        assert!(validate_description(&"d".repeat(257)).is_err());
    }
}
