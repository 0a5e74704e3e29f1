//! Software-token MFA primitives: RFC 6238 TOTP (HMAC-SHA1, 6 digits,
//! 30-second steps, one step of skew either way) through the `totp-rs`
//! crate, the `otpauth://` URI an authenticator app scans, and recovery
//! codes (random, shown once, stored as SHA-256 hashes).
//!
//! Which time step a code matched is returned, so that the replicated
//! state can refuse that step (and every earlier one) next time: a code
//! works once. Every comparison of a presented code is constant-time, and
//! nothing here logs a secret or a code.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};

use super::AuthError;

/// Digits of a code.
pub const DIGITS: usize = 6;
/// Seconds per time step.
pub const STEP_SECS: u64 = 30;
/// Steps of clock skew accepted on either side of the current one.
pub const SKEW_STEPS: u64 = 1;
/// Bytes of a TOTP secret (160 bits, RFC 4226's recommendation).
pub const SECRET_BYTES: usize = 20;
/// Random bytes of a recovery code (80 bits: 16 base32 characters).
pub const RECOVERY_CODE_BYTES: usize = 10;

fn totp(secret: &[u8], digits: usize) -> Result<TOTP, AuthError> {
    TOTP::new(Algorithm::SHA1, digits, 1, STEP_SECS, secret.to_vec())
        .map_err(|e| AuthError::Key(format!("unusable TOTP secret: {e}")))
}

/// The time step of a Unix time in seconds.
pub fn step_of(unix_secs: u64) -> u64 {
    unix_secs / STEP_SECS
}

/// The code of `step` for `secret`.
pub fn code_at_step(secret: &[u8], step: u64) -> Result<String, AuthError> {
    Ok(totp(secret, DIGITS)?.generate(step.saturating_mul(STEP_SECS)))
}

/// Whether `code` has the shape of a code (six ASCII digits); anything
/// else is refused before a secret is opened.
pub fn is_code_shape(code: &str) -> bool {
    code.len() == DIGITS && code.bytes().all(|b| b.is_ascii_digit())
}

/// The step in `now ± 1` whose code `code` is, if any. All three steps are
/// compared (constant-time, without an early exit); when more than one
/// matches, the latest wins.
pub fn matching_step(secret: &[u8], code: &str, now_secs: u64) -> Result<Option<u64>, AuthError> {
    let t = totp(secret, DIGITS)?;
    let now = step_of(now_secs);
    let mut found = None;
    for step in now.saturating_sub(SKEW_STEPS)..=now.saturating_add(SKEW_STEPS) {
        let expected = t.generate(step.saturating_mul(STEP_SECS));
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            found = Some(step);
        }
    }
    Ok(found)
}

/// The secret as base32 without padding (what `AssociateSoftwareToken`
/// returns as `secret_code`).
pub fn secret_base32(secret: &[u8]) -> String {
    base32::encode(base32::Alphabet::Rfc4648 { padding: false }, secret)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The key URI authenticator apps scan:
/// `otpauth://totp/<issuer>:<account>?secret=...&issuer=...&algorithm=SHA1&digits=6&period=30`,
/// issuer and account percent-encoded.
pub fn otpauth_uri(issuer: &str, account: &str, secret_b32: &str) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{}?secret={secret_b32}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        percent_encode(account)
    )
}

/// A recovery code from random bytes: 16 base32 characters in groups of
/// four, e.g. `ABCD-EFGH-IJKL-MNOP`.
pub fn recovery_code_from_random(random: [u8; RECOVERY_CODE_BYTES]) -> String {
    let plain = base32::encode(base32::Alphabet::Rfc4648 { padding: false }, &random);
    plain
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// A recovery code as typed (any case, with or without dashes and spaces)
/// in its canonical form, or `None` if it cannot be one.
pub fn normalize_recovery_code(input: &str) -> Option<String> {
    if input.len() > 64 {
        return None;
    }
    let plain: String = input
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let ok = plain.len() == 16
        && plain
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b));
    ok.then_some(plain)
}

/// What is stored of a recovery code: SHA-256 of its canonical form (a
/// high-entropy code needs no slow hash).
pub fn hash_recovery_code(canonical: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"tessera recovery code\0");
    h.update(canonical.as_bytes());
    h.finalize().into()
}

/// The index of `hash` among `stored`, compared in constant time against
/// every entry (no early exit).
pub fn find_recovery_code(stored: &[[u8; 32]], hash: &[u8; 32]) -> Option<usize> {
    let mut found = None;
    for (i, s) in stored.iter().enumerate() {
        if bool::from(s.ct_eq(hash)) {
            found = Some(i);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows: the 20-byte ASCII seed
    /// "12345678901234567890", 8 digits. A 6-digit code is the same
    /// truncation modulo 10^6, i.e. the last six digits.
    const VECTORS: &[(u64, &str)] = &[
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];
    const SEED: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc_6238_appendix_b_sha1() {
        let eight = totp(SEED, 8).unwrap();
        for (t, expected) in VECTORS {
            assert_eq!(eight.generate(*t), *expected, "8 digits at T={t}");
            assert_eq!(
                code_at_step(SEED, step_of(*t)).unwrap(),
                expected[2..],
                "6 digits at T={t}"
            );
            assert_eq!(
                matching_step(SEED, &expected[2..], *t).unwrap(),
                Some(step_of(*t)),
                "a code matches its own step at T={t}"
            );
        }
    }

    #[test]
    fn one_step_of_skew_either_way_and_no_more() {
        let now = 1_111_111_111;
        let step = step_of(now);
        for (delta, ok) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let s = step.checked_add_signed(delta).unwrap();
            let code = code_at_step(SEED, s).unwrap();
            let got = matching_step(SEED, &code, now).unwrap();
            if ok {
                assert_eq!(got, Some(s), "step {delta:+}");
            } else {
                assert_ne!(got, Some(s), "step {delta:+} must not be accepted");
            }
        }
        assert!(is_code_shape("012345"));
        for bad in ["12345", "1234567", "12a456", "", "１２３４５６"] {
            assert!(!is_code_shape(bad), "{bad:?}");
        }
    }

    #[test]
    fn uri_and_secret_encoding() {
        let secret = [0u8; SECRET_BYTES];
        let b32 = secret_base32(&secret);
        assert_eq!(b32.len(), 32, "160 bits are 32 base32 characters");
        assert_eq!(
            otpauth_uri("My Pool", "ann@x.io", &b32),
            format!(
                "otpauth://totp/My%20Pool:ann%40x.io?secret={b32}&issuer=My%20Pool&algorithm=SHA1&digits=6&period=30"
            )
        );
        assert!(totp(&[0; 10], 6).is_err(), "an 80-bit secret is refused");
    }

    #[test]
    fn recovery_codes_round_trip_and_compare() {
        let code = recovery_code_from_random([7; RECOVERY_CODE_BYTES]);
        assert_eq!(code.len(), 19, "{code}");
        let canonical = normalize_recovery_code(&code).unwrap();
        assert_eq!(
            normalize_recovery_code(&code.to_lowercase()).as_deref(),
            Some(canonical.as_str())
        );
        assert_eq!(
            normalize_recovery_code(&canonical.replace('-', " ")).as_deref(),
            Some(canonical.as_str())
        );
        assert_eq!(normalize_recovery_code("ABCD-EFGH-IJKL-MNO1"), None, "1 is not base32");
        assert_eq!(normalize_recovery_code("ABCD"), None);
        let h = hash_recovery_code(&canonical);
        let other = hash_recovery_code(&normalize_recovery_code(&recovery_code_from_random([8; 10])).unwrap());
        assert_eq!(find_recovery_code(&[other, h], &h), Some(1));
        assert_eq!(find_recovery_code(&[other], &h), None);
    }
}
