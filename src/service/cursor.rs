//! Pagination cursors: the `next_token` and `pagination_token` that list
//! calls hand out and take back.
//!
//! A cursor carries the store position the next page starts after (an
//! index key, a sub, a name). Handed out raw, that position lets a caller
//! steer the scan: present an index key of another filter, a name from
//! another pool's range, or one made up. So a cursor is sealed
//! (ChaCha20-Poly1305 under the cluster sealing key) with what it is for as
//! the additional data: the call that issued it and the request fields that
//! select the listed set (the pool, the filter, the group). It opens only
//! for that same query, on any node of the cluster (they share the key),
//! and shows nothing of the store's key layout.
//!
//! A cursor does not expire: like Cognito's, it names a position, not a
//! snapshot, so pages neither skip nor repeat an entry while the set is
//! stable, however long the caller waits between them.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::{sealing_key, ServiceError};
use crate::auth::sealing::{SealingCell, SealingKey};
use crate::model::app_client::SealedSecret;

/// The first byte of every cursor, so the format can change later.
const VERSION: u8 = 1;
/// Longest token accepted, in characters: far above any position the store
/// issues (an index key is at most a few KiB), and it bounds the decoding
/// work a caller can ask for.
pub const MAX_TOKEN_CHARS: usize = 8 * 1024;

/// The request a cursor belongs to: the call's name and the fields that
/// pick what it lists, in a fixed order per call.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The Cognito action, e.g. `ListUsers`.
    pub call: &'static str,
    /// The request field a token travels in, for error messages.
    pub field: &'static str,
    /// Pool id first where there is one, then the query's own fields.
    pub parts: &'a [&'a str],
}

impl<'a> Scope<'a> {
    /// The scope of a call whose token travels in `next_token` (every list
    /// call but `ListUsers`).
    pub fn next_token(call: &'static str, parts: &'a [&'a str]) -> Self {
        Scope {
            call,
            field: "next_token",
            parts,
        }
    }

    /// The additional data: every part length-prefixed, so no two
    /// different scopes encode alike (`("ab", "c")` differs from
    /// `("a", "bc")`).
    fn context(&self) -> Vec<u8> {
        let mut out = b"tessera cursor v1\0".to_vec();
        for part in std::iter::once(self.call).chain(self.parts.iter().copied()) {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }

    fn refused(&self) -> ServiceError {
        ServiceError::invalid(format!(
            "{}: not a token that {} returned for this pool and query; start again without it",
            self.field, self.call
        ))
    }
}

/// Issues and opens cursors with the cluster sealing key.
#[derive(Clone)]
pub struct Cursors {
    sealing: Arc<SealingCell>,
}

impl Cursors {
    /// Cursors under the node's sealing key (which may arrive after start:
    /// list calls answer `Unavailable` until the node has joined).
    pub fn new(sealing: Arc<SealingCell>) -> Self {
        Cursors { sealing }
    }

    /// The token for the page after `position`.
    pub fn issue(&self, scope: &Scope<'_>, position: &[u8]) -> Result<String, ServiceError> {
        Ok(seal(&*sealing_key(&self.sealing)?, scope, position))
    }

    /// The position a presented token resumes after: `None` for an empty
    /// token (the first page), an `InvalidParameterException` for anything
    /// this scope did not issue.
    pub fn resume(&self, scope: &Scope<'_>, token: &str) -> Result<Option<Vec<u8>>, ServiceError> {
        if token.is_empty() {
            return Ok(None);
        }
        open(&*sealing_key(&self.sealing)?, scope, token).map(Some)
    }

    /// [`resume`](Self::resume) for positions that are text (names, subs,
    /// ids).
    pub fn resume_text(&self, scope: &Scope<'_>, token: &str) -> Result<Option<String>, ServiceError> {
        self.resume(scope, token)?
            .map(|b| String::from_utf8(b).map_err(|_| scope.refused()))
            .transpose()
    }
}

/// Seals `position` for `scope` under `key` with a fresh random nonce.
pub fn seal(key: &SealingKey, scope: &Scope<'_>, position: &[u8]) -> String {
    let sealed = key.seal_bytes(&scope.context(), position, crate::clock::random_bytes::<12>());
    let mut raw = Vec::with_capacity(1 + 12 + sealed.ciphertext.len());
    raw.push(VERSION);
    raw.extend_from_slice(&sealed.nonce);
    raw.extend_from_slice(&sealed.ciphertext);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Opens a token sealed by [`seal`] for the same scope; anything else (too
/// long, not base64, another version, another scope, another key, a
/// flipped bit) is refused alike.
pub fn open(key: &SealingKey, scope: &Scope<'_>, token: &str) -> Result<Vec<u8>, ServiceError> {
    if token.len() > MAX_TOKEN_CHARS {
        return Err(scope.refused());
    }
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| scope.refused())?;
    let (&version, rest) = raw.split_first().ok_or_else(|| scope.refused())?;
    if version != VERSION || rest.len() < 12 {
        return Err(scope.refused());
    }
    let (nonce, ciphertext) = rest.split_at(12);
    let sealed = SealedSecret {
        nonce: nonce.try_into().map_err(|_| scope.refused())?,
        ciphertext: ciphertext.to_vec(),
    };
    key.open_bytes(&scope.context(), &sealed).ok_or_else(|| scope.refused())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SealingKey {
        SealingKey::from_bytes([b; 32])
    }

    const A: Scope<'static> = Scope {
        call: "ListUsers",
        field: "pagination_token",
        parts: &["local_A", "email ^= \"a\""],
    };

    #[test]
    fn a_cursor_opens_only_for_its_own_scope_and_key() {
        let token = seal(&key(1), &A, b"email\0a@x.io\0sub-1");
        assert_eq!(open(&key(1), &A, &token).unwrap(), b"email\0a@x.io\0sub-1");
        let other_pool = Scope {
            parts: &["local_B", "email ^= \"a\""],
            ..A
        };
        let other_filter = Scope {
            parts: &["local_A", "email ^= \"b\""],
            ..A
        };
        let other_call = Scope {
            call: "ListGroups",
            ..A
        };
        let shifted = Scope {
            parts: &["local_Aemail ^= \"a\"", ""],
            ..A
        };
        for scope in [other_pool, other_filter, other_call, shifted] {
            let e = open(&key(1), &scope, &token).unwrap_err();
            assert_eq!(e.exception, "InvalidParameterException", "{scope:?}");
            assert!(e.message.contains("pagination_token"), "{}", e.message);
        }
        assert!(open(&key(2), &A, &token).is_err(), "another cluster's key");
    }

    #[test]
    fn raw_positions_and_tampered_tokens_are_refused() {
        // Today's format before cursors: the raw index key in base64.
        let raw = URL_SAFE_NO_PAD.encode(b"email\0a@x.io\0sub");
        assert!(open(&key(1), &A, &raw).is_err());
        let token = seal(&key(1), &A, b"sub-9");
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..bytes.len() {
            bytes[i] ^= 1;
            assert!(open(&key(1), &A, &URL_SAFE_NO_PAD.encode(&bytes)).is_err(), "bit {i}");
            bytes[i] ^= 1;
        }
        assert!(open(&key(1), &A, "").is_err());
        assert!(open(&key(1), &A, "!!").is_err());
        assert!(open(&key(1), &A, &"A".repeat(MAX_TOKEN_CHARS + 4)).is_err());
    }

    #[test]
    fn two_cursors_for_one_position_differ() {
        // A fresh nonce each time: equal tokens would tell a caller that
        // two pages ended at the same entry.
        assert_ne!(seal(&key(1), &A, b"x"), seal(&key(1), &A, b"x"));
    }
}
