//! PKCE (RFC 7636) for the authorization code grant: the app sends
//! `code_challenge = BASE64URL(SHA-256(code_verifier))` when it starts an
//! authorization, and must present the verifier when it exchanges the
//! code, so a code intercepted on its way back to the app is worthless to
//! whoever took it. Only `S256`: `plain` protects nothing against an
//! attacker who can read the authorization request.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest and longest verifier (RFC 7636 §4.1).
pub const VERIFIER_CHARS: std::ops::RangeInclusive<usize> = 43..=128;
/// A challenge is BASE64URL of 32 bytes, without padding.
pub const CHALLENGE_CHARS: usize = 43;

/// Why a challenge or a verifier is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    /// `code_challenge_method` other than `S256`.
    #[error("code_challenge_method must be S256")]
    Method,
    /// A challenge that is not BASE64URL(SHA-256(...)).
    #[error("code_challenge must be 43 characters of base64url (SHA-256 of the verifier)")]
    Challenge,
    /// A verifier of the wrong length or alphabet.
    #[error("code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")]
    Verifier,
    /// The verifier does not hash to the challenge.
    #[error("code_verifier does not match the code_challenge")]
    Mismatch,
}

/// Checks a challenge as the authorization request gives it. The method
/// must be named: RFC 7636 reads a missing one as `plain`, which is
/// refused.
pub fn check_challenge(challenge: &str, method: &str) -> Result<(), PkceError> {
    if method != "S256" {
        return Err(PkceError::Method);
    }
    let ok = challenge.len() == CHALLENGE_CHARS && URL_SAFE_NO_PAD.decode(challenge).is_ok_and(|b| b.len() == 32);
    if ok {
        Ok(())
    } else {
        Err(PkceError::Challenge)
    }
}

/// Whether `verifier` is the one `challenge` was made from.
pub fn verify(challenge: &str, verifier: &str) -> Result<(), PkceError> {
    if !VERIFIER_CHARS.contains(&verifier.len())
        || !verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    {
        return Err(PkceError::Verifier);
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if bool::from(computed.as_bytes().ct_eq(challenge.as_bytes())) {
        Ok(())
    } else {
        Err(PkceError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        // The example of RFC 7636, Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(check_challenge(challenge, "S256"), Ok(()));
        assert_eq!(verify(challenge, verifier), Ok(()));
        assert_eq!(verify(challenge, &verifier.replace('d', "e")), Err(PkceError::Mismatch));
        assert_eq!(verify(challenge, "short"), Err(PkceError::Verifier));
        assert_eq!(check_challenge(challenge, "plain"), Err(PkceError::Method));
        assert_eq!(check_challenge(challenge, ""), Err(PkceError::Method));
        assert_eq!(check_challenge("abc", "S256"), Err(PkceError::Challenge));
    }
}
