//! Value encoding for everything Tessera writes to RocksDB or sends to a peer.
//!
//! Every value starts with a format version byte followed by a postcard body.
//! The byte lets a later release read records written by an earlier one and
//! migrate them on the fly instead of failing to decode after an upgrade.

use serde::{de::DeserializeOwned, Serialize};

/// The format written today.
pub const CURRENT_VERSION: u8 = 1;

/// Why a stored value could not be turned back into a typed one.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty value: no version byte")]
    Empty,
    #[error("unknown value format version {0}; this node is older than the data")]
    UnknownVersion(u8),
    #[error("malformed value: {0}")]
    Malformed(#[from] postcard::Error),
}

/// Encodes `value` with the current version byte.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![CURRENT_VERSION];
    postcard::to_io(value, &mut out).map_err(CodecError::Malformed)?;
    Ok(out)
}

/// Decodes a value written by [`encode`], by this or an earlier release.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&CURRENT_VERSION, body)) => Ok(postcard::from_bytes(body)?),
        Some((&other, _)) => Err(CodecError::UnknownVersion(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        id: String,
        n: u64,
        tags: Vec<String>,
    }

    #[test]
    fn round_trips_with_version_byte() {
        let v = Sample {
            id: "p1".into(),
            n: 42,
            tags: vec!["a".into()],
        };
        let bytes = encode(&v).unwrap();
        assert_eq!(bytes[0], CURRENT_VERSION);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), v);
    }

    #[test]
    fn rejects_unknown_version_and_garbage() {
        let mut bytes = encode(&7u64).unwrap();
        bytes[0] = 99;
        assert!(matches!(decode::<u64>(&bytes), Err(CodecError::UnknownVersion(99))));
        assert!(matches!(decode::<u64>(&[]), Err(CodecError::Empty)));
        assert!(decode::<Sample>(&[CURRENT_VERSION, 0xff]).is_err());
    }
}
