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
    /// The value has no bytes at all, so not even a version.
    #[error("empty value: no version byte")]
    Empty,
    /// Written by a newer format than this node knows.
    #[error("unknown value format version {0}; this node is older than the data")]
    UnknownVersion(u8),
    /// The version is known but the bytes do not decode as the expected type.
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

/// Deepest nesting of boxed values (a `Command::Audited` inside another)
/// that decoding accepts; the services nest at most one level.
pub const MAX_NESTING: u32 = 8;

thread_local! {
    static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// `#[serde(deserialize_with = "...")]` for a recursive `Box` field:
/// refuses values nested deeper than [`MAX_NESTING`]. Postcard, like serde,
/// recurses once per level, and one byte opens a level, so without a bound a
/// 1 MiB peer frame (or log entry) overflows a 2 MiB tokio worker stack and
/// aborts the node (regressions in `fuzz/regressions/peer_message/`).
pub fn bounded_box<'de, D, T>(deserializer: D) -> Result<Box<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    struct Level;
    impl Drop for Level {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        }
    }
    let depth = DEPTH.with(|d| {
        d.set(d.get() + 1);
        d.get()
    });
    let _level = Level;
    if depth > MAX_NESTING {
        return Err(serde::de::Error::custom(format!(
            "values nested deeper than {MAX_NESTING} levels"
        )));
    }
    T::deserialize(deserializer).map(Box::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Audited, ClearSignInFailures};

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

    /// A peer frame of nested `Command::Audited` (one byte per level) must
    /// be refused, not recursed into until the stack overflows (before the
    /// bound, this test aborted with "has overflowed its stack"). Kept for
    /// the fuzz harness as `fuzz/regressions/peer_message/nested-audited-*`.
    #[test]
    fn deeply_nested_commands_are_refused_without_overflowing_the_stack() {
        use crate::command::Command;
        use crate::model::auth_event::{AuthEvent, AuthEventType};
        let inner = ClearSignInFailures {
            pool_id: "p".into(),
            sub: "s".into(),
        };
        let audited = Command::from(Audited {
            inner: Box::new(inner.into()),
            event: AuthEvent::draft("p", AuthEventType::AdminAction, 0),
        });
        let legit = encode(&audited).unwrap();
        assert!(matches!(decode::<Command>(&legit), Ok(Command::Audited(_))));
        let tag = legit[1];
        let mut hostile = vec![CURRENT_VERSION];
        hostile.extend(std::iter::repeat_n(tag, 1 << 20));
        // Decoded on a thread with tokio's default worker stack (2 MiB).
        let result = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || decode::<Command>(&hostile).map(|_| ()).map_err(|e| e.to_string()))
            .unwrap()
            .join()
            .unwrap();
        assert!(result.is_err(), "a 1 MiB nest of Audited decoded");
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
