//! State that the OAuth flows hand to a browser or an app and take back
//! later, possibly on another node: sealed (encrypted and authenticated)
//! with the cluster sealing key that every node holds, so no node needs to
//! store it and no holder can read or change it.
//!
//! The text is `base64url(nonce || ciphertext)`. The `context` (what the
//! blob is, and its pool) is the AEAD's associated data, so a blob sealed
//! for one purpose or pool never opens as another.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::sealing::SealingKey;
use crate::model::app_client::SealedSecret;
use crate::service::ServiceError;

/// Longest sealed text accepted back: bounds the work of opening one.
pub const MAX_SEALED_CHARS: usize = 8 * 1024;

/// The associated data of a blob of `purpose` for `pool_id`.
pub fn context(purpose: &str, pool_id: &str) -> Vec<u8> {
    let mut c = b"tessera-oauth\0".to_vec();
    c.extend_from_slice(purpose.as_bytes());
    c.push(0);
    c.extend_from_slice(pool_id.as_bytes());
    c
}

/// Seals `value` for `context`.
pub fn seal<T: Serialize>(key: &SealingKey, context: &[u8], value: &T) -> Result<String, ServiceError> {
    let plain = postcard::to_stdvec(value).map_err(|e| ServiceError::internal(format!("sealing: {e}")))?;
    let sealed = key.seal_bytes(context, &plain, crate::clock::random_bytes::<12>());
    let mut raw = sealed.nonce.to_vec();
    raw.extend_from_slice(&sealed.ciphertext);
    Ok(URL_SAFE_NO_PAD.encode(raw))
}

/// Opens a blob sealed by [`seal`] for the same `context`; `None` for
/// anything else (tampered, truncated, another purpose or pool, too long).
pub fn open<T: DeserializeOwned>(key: &SealingKey, context: &[u8], text: &str) -> Option<T> {
    if text.is_empty() || text.len() > MAX_SEALED_CHARS {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(text).ok()?;
    if raw.len() < 12 {
        return None;
    }
    let (nonce, ciphertext) = raw.split_at(12);
    let sealed = SealedSecret {
        nonce: nonce.try_into().ok()?,
        ciphertext: ciphertext.to_vec(),
    };
    let plain = key.open_bytes(context, &sealed)?;
    postcard::from_bytes(&plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let key = SealingKey::from_bytes([7; 32]);
        let ctx = context("code", "local_abc");
        let text = seal(&key, &ctx, &("ann".to_string(), 42u32)).unwrap();
        assert_eq!(open::<(String, u32)>(&key, &ctx, &text), Some(("ann".into(), 42)));
        assert_eq!(
            open::<(String, u32)>(&key, &context("code", "local_other"), &text),
            None
        );
        assert_eq!(
            open::<(String, u32)>(&key, &context("request", "local_abc"), &text),
            None
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(open::<(String, u32)>(&key, &ctx, &URL_SAFE_NO_PAD.encode(bytes)), None);
        assert_eq!(
            open::<(String, u32)>(&SealingKey::from_bytes([8; 32]), &ctx, &text),
            None
        );
    }
}
