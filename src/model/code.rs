//! One-time verification codes (sign-up confirmation, password reset).
//!
//! A code is 6 digits, valid for 24 hours, with at most 5 wrong attempts.
//! Only a salted SHA-256 of it is stored. The node that receives a guess
//! hashes it with the record's salt while *preparing* the command, so the
//! guess itself never enters the Raft log; `apply` compares hashes in
//! constant time and counts the attempt, identically on every node.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Digits in a code.
pub const CODE_DIGITS: usize = 6;
/// How long a code stays valid.
pub const CODE_VALIDITY_MS: i64 = 24 * 3600 * 1000;
/// Wrong guesses allowed before the code is spent.
pub const MAX_ATTEMPTS: u8 = 5;

/// What is stored for an outstanding code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    /// Random salt, so equal codes do not hash alike.
    pub salt: [u8; 16],
    /// SHA-256 of the salt and the code.
    pub hash: [u8; 32],
    /// Unix milliseconds.
    pub expires_at: i64,
    /// Wrong guesses still allowed; at 0 the code is spent.
    pub attempts_left: u8,
    /// The attribute whose value received the code; confirming verifies it.
    pub verifies: Option<crate::model::pool_settings::SignInAlias>,
    /// The value of `verifies` the code was sent to. A code proves control
    /// of one address only: once the attribute holds another value the
    /// code is void, so a code sent to phone A can never verify phone B.
    pub sent_to: Option<String>,
}

/// Why a guess was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CodeError {
    /// The guess is not the code.
    #[error("invalid verification code provided, please try again")]
    Mismatch,
    /// The code is past its expiry.
    #[error("the verification code has expired; request a new one")]
    Expired,
    /// No attempts are left.
    #[error("too many wrong attempts; request a new code")]
    TooManyAttempts,
}

/// Turns random bytes (drawn while preparing) into a 6-digit code.
pub fn code_from_random(random: [u8; 8]) -> String {
    let n = u64::from_be_bytes(random) % 10u64.pow(CODE_DIGITS as u32);
    format!("{n:0width$}", width = CODE_DIGITS)
}

/// The salted hash of a code or a guess.
pub fn hash_code(salt: &[u8; 16], code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(code.trim().as_bytes());
    h.finalize().into()
}

impl CodeRecord {
    /// A record for `code`, issued at `now`.
    pub fn issue(code: &str, salt: [u8; 16], now: i64) -> Self {
        CodeRecord {
            salt,
            hash: hash_code(&salt, code),
            expires_at: now + CODE_VALIDITY_MS,
            attempts_left: MAX_ATTEMPTS,
            verifies: None,
            sent_to: None,
        }
    }

    /// The same record, bound to the `value` of `alias` it is sent to.
    pub fn bound_to(self, alias: crate::model::pool_settings::SignInAlias, value: &str) -> Self {
        CodeRecord {
            verifies: Some(alias),
            sent_to: Some(value.to_string()),
            ..self
        }
    }

    /// Whether the address the code went to is still `current` (the value
    /// the attribute holds now, or waits to be verified with). A record
    /// bound to nothing (an admin reset to a user without an address) is
    /// valid whatever the attributes.
    pub fn still_bound(&self, current: Option<&str>) -> bool {
        match (&self.verifies, &self.sent_to) {
            (None, _) => true,
            (Some(_), Some(sent)) => current == Some(sent.as_str()),
            (Some(_), None) => false,
        }
    }

    /// Checks a guess's hash at `now` (both carried in the command). A wrong
    /// guess uses up an attempt; the caller stores the updated record.
    pub fn check(&mut self, guess_hash: &[u8; 32], now: i64) -> Result<(), CodeError> {
        if self.attempts_left == 0 {
            return Err(CodeError::TooManyAttempts);
        }
        if now >= self.expires_at {
            return Err(CodeError::Expired);
        }
        if bool::from(self.hash.ct_eq(guess_hash)) {
            Ok(())
        } else {
            self.attempts_left -= 1;
            if self.attempts_left == 0 {
                Err(CodeError::TooManyAttempts)
            } else {
                Err(CodeError::Mismatch)
            }
        }
    }
}

/// What a one-time code is for; part of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum CodePurpose {
    /// Confirms a sign-up.
    SignUp = 1,
    /// Authorizes a password reset.
    ForgotPassword = 2,
    /// Verifies the email attribute.
    VerifyEmail = 3,
    /// Verifies the phone_number attribute.
    VerifyPhone = 4,
    /// A sign-in code (`SMS_MFA`, `EMAIL_OTP`, `SMS_OTP`), bound to the
    /// challenge session it was sent for (`service::flows::passwordless`).
    SignIn = 5,
    /// A magic link waiting to be approved in a browser.
    MagicLink = 6,
    /// A magic link approved in a browser, waiting for the device that
    /// asked to collect its tokens.
    MagicLinkApproved = 7,
}

impl CodePurpose {
    /// The purpose of a code that verifies `alias`.
    pub fn verify(alias: crate::model::pool_settings::SignInAlias) -> Self {
        match alias {
            crate::model::pool_settings::SignInAlias::Email => CodePurpose::VerifyEmail,
            crate::model::pool_settings::SignInAlias::PhoneNumber => CodePurpose::VerifyPhone,
        }
    }

    /// Every purpose, for sweeps over a user's codes.
    pub const ALL: [CodePurpose; 7] = [
        CodePurpose::SignUp,
        CodePurpose::ForgotPassword,
        CodePurpose::VerifyEmail,
        CodePurpose::VerifyPhone,
        CodePurpose::SignIn,
        CodePurpose::MagicLink,
        CodePurpose::MagicLinkApproved,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits() {
        assert_eq!(code_from_random([0; 8]), "000000");
        assert_eq!(code_from_random([0, 0, 0, 0, 0, 0, 0x30, 0x39]), "012345");
        assert_eq!(code_from_random([0xff; 8]).len(), 6);
    }

    #[test]
    fn right_code_wrong_code_expiry_and_attempt_limit() {
        let mut r = CodeRecord::issue("123456", [1; 16], 1_000);
        assert_ne!(r.hash, hash_code(&[2; 16], "123456"), "the salt matters");
        assert_eq!(r.check(&hash_code(&r.salt.clone(), "123456"), 2_000), Ok(()));
        assert_eq!(
            r.check(&hash_code(&r.salt.clone(), "123456"), 1_000 + CODE_VALIDITY_MS),
            Err(CodeError::Expired)
        );
        let salt = r.salt;
        for _ in 0..MAX_ATTEMPTS - 1 {
            assert_eq!(r.check(&hash_code(&salt, "000000"), 2_000), Err(CodeError::Mismatch));
        }
        assert_eq!(
            r.check(&hash_code(&salt, "000000"), 2_000),
            Err(CodeError::TooManyAttempts)
        );
        // Once spent, even the right code is refused.
        assert_eq!(
            r.check(&hash_code(&salt, "123456"), 2_000),
            Err(CodeError::TooManyAttempts)
        );
    }
}
