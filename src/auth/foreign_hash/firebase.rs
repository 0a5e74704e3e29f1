//! Firebase Authentication's modified scrypt, in one self-contained string.
//!
//! Firebase hashes a password by deriving a 64-byte key with scrypt
//! (N = 2^mem_cost, r = rounds, p = 1) from the password and the user's
//! salt followed by the project's salt separator, and encrypting the
//! project's signer key with AES-256-CTR under the first 32 bytes of that
//! key (zero IV); the ciphertext is the stored hash. Checking a password
//! needs the project's parameters (from the console's "password hash
//! parameters") as well as the user's salt and hash (from
//! `firebase auth:export`), so Tessera keeps all of them in one string:
//!
//! ```text
//! $firebase-scrypt$ln=<mem_cost>,r=<rounds>$<signer key>$<salt separator>$<salt>$<hash>
//! ```
//!
//! each of the last four in standard base64 exactly as Firebase prints it
//! (padding optional; the separator may be empty). No maintained crate
//! implements this variant, so it is built from the `scrypt`, `aes` and
//! `ctr` crates.

use aes::cipher::{KeyIvInit, StreamCipher};
use subtle::ConstantTimeEq;

use super::{b64, bad, number, params_of, scrypt_bounds, HashFormatError, MAX_SCRYPT_LN};

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// A parsed, bounded Firebase hash.
pub(super) struct FirebaseHash {
    params: scrypt::Params,
    signer_key: Vec<u8>,
    salt_and_separator: Vec<u8>,
    hash: Vec<u8>,
}

/// Parses what follows `$firebase-scrypt$`.
pub(super) fn parse(rest: &str) -> Result<FirebaseHash, HashFormatError> {
    let parts: Vec<&str> = rest.split('$').collect();
    let [params, key, separator, salt, hash] = parts[..] else {
        return Err(bad(
            "firebase-scrypt hash must be $firebase-scrypt$ln=..,r=..$signer_key$salt_separator$salt$hash",
        ));
    };
    let map = params_of(params)?;
    if map.keys().any(|k| !matches!(*k, "ln" | "r")) {
        return Err(bad("firebase-scrypt parameters are ln (mem_cost) and r (rounds)"));
    }
    let ln = number(&map, "ln", 1..=MAX_SCRYPT_LN)?;
    let r = number(&map, "r", 1..=32)?;
    scrypt_bounds(ln, r, 1)?;
    let signer_key = b64("firebase signer key", key, 16, 128)?;
    let separator = if separator.is_empty() {
        Vec::new()
    } else {
        b64("firebase salt separator", separator, 0, 32)?
    };
    let mut salt_and_separator = b64("firebase salt", salt, 1, 128)?;
    salt_and_separator.extend_from_slice(&separator);
    let hash = b64("firebase hash", hash, 16, 128)?;
    if hash.len() != signer_key.len() {
        return Err(bad("firebase hash is not as long as the signer key"));
    }
    let params = scrypt::Params::new(ln as u8, r, 1, 64).map_err(|e| bad(format!("scrypt: {e}")))?;
    Ok(FirebaseHash {
        params,
        signer_key,
        salt_and_separator,
        hash,
    })
}

impl FirebaseHash {
    /// Derives the key from `password` and compares the encrypted signer
    /// key with the stored hash, in constant time.
    pub(super) fn verify(&self, password: &[u8]) -> Result<bool, HashFormatError> {
        let mut derived = [0u8; 64];
        scrypt::scrypt(password, &self.salt_and_separator, &self.params, &mut derived)
            .map_err(|e| bad(format!("scrypt: {e}")))?;
        let mut out = self.signer_key.clone();
        let mut cipher = Aes256Ctr::new(derived[..32].into(), &[0u8; 16].into());
        cipher.apply_keystream(&mut out);
        Ok(bool::from(out.ct_eq(&self.hash)))
    }
}
