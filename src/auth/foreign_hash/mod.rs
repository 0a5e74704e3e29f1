//! Password hashes in the formats other systems export, so that users can
//! be imported with the password they have (issue 12): bcrypt, scrypt,
//! PBKDF2-SHA256 and -SHA512, argon2i and argon2id, and Firebase's
//! modified scrypt ([`firebase`]).
//!
//! [`check_import`] parses a hash at the edge of an import and refuses a
//! malformed one, or one whose cost is beyond the bounds below, with a
//! reason for a person; [`verify`] checks a password against a stored hash
//! on a hashing thread (`auth::password`), comparing in constant time.
//! Every cost is bounded on both paths, so that no stored hash can hold a
//! hashing thread for longer than a pool's own dearest argon2id would.
//! [`is_current`] says whether a stored hash is already the pool's own
//! argon2id, or should be replaced at the next successful sign-in.
//!
//! The accepted strings:
//!
//! * bcrypt: `$2a$`, `$2b$` or `$2y$`, cost 4 to 16 (Modular Crypt Format).
//! * scrypt: `$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<hash>` (PHC).
//! * PBKDF2: `$pbkdf2-sha256$i=<rounds>[,l=<len>]$<salt>$<hash>` (PHC), or
//!   passlib's `$pbkdf2-sha256$<rounds>$<salt>$<hash>`; likewise
//!   `pbkdf2-sha512`. Up to 10,000,000 rounds.
//! * argon2: `$argon2id$` and `$argon2i$` PHC strings, any version,
//!   m ≤ 1 GiB (256 MiB when imported), t ≤ 10, p ≤ 8.
//! * Firebase: see [`firebase`].
//!
//! Salts and hashes are base64, standard alphabet, with or without
//! padding; passlib's `.` for `+` is accepted too.
//!
//! This module never logs, and never puts a password or a hash into an
//! error message.

mod firebase;

use std::collections::BTreeMap;

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::model::pool_settings::Argon2Params;

/// Longest hash string accepted anywhere.
pub const MAX_HASH_LEN: usize = 512;
/// Highest bcrypt cost: 2^16 rounds take about 5 s on one core.
pub const MAX_BCRYPT_COST: u32 = 16;
/// Highest scrypt (and Firebase) log2 N.
pub const MAX_SCRYPT_LN: u32 = 20;
/// Most memory one scrypt evaluation may take, as `128 * r * N` bytes.
pub const MAX_SCRYPT_BYTES: u64 = 256 << 20;
/// Most work of one scrypt evaluation, as `N * r * p`.
pub const MAX_SCRYPT_WORK: u64 = 1 << 22;
/// Most PBKDF2 rounds.
pub const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;
/// Highest argon2 memory of a stored hash, in KiB: a pool's own maximum.
const MAX_ARGON2_KIB: u32 = 1024 * 1024;
/// Highest argon2 memory of an imported hash, in KiB.
pub const MAX_IMPORTED_ARGON2_KIB: u32 = 256 * 1024;
/// Highest argon2 iterations and lanes (a pool's own maxima).
const MAX_ARGON2_T: u32 = 10;
const MAX_ARGON2_P: u32 = 8;

/// The formats a stored password hash may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scheme {
    /// argon2id: what this server writes.
    Argon2id,
    /// argon2i.
    Argon2i,
    /// bcrypt (`$2a$`, `$2b$`, `$2y$`).
    Bcrypt,
    /// scrypt as a PHC string.
    Scrypt,
    /// PBKDF2 with HMAC-SHA256.
    Pbkdf2Sha256,
    /// PBKDF2 with HMAC-SHA512.
    Pbkdf2Sha512,
    /// Firebase Authentication's modified scrypt.
    FirebaseScrypt,
}

impl Scheme {
    /// A short name for metrics and messages.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Argon2id => "argon2id",
            Scheme::Argon2i => "argon2i",
            Scheme::Bcrypt => "bcrypt",
            Scheme::Scrypt => "scrypt",
            Scheme::Pbkdf2Sha256 => "pbkdf2-sha256",
            Scheme::Pbkdf2Sha512 => "pbkdf2-sha512",
            Scheme::FirebaseScrypt => "firebase-scrypt",
        }
    }
}

/// Why a hash string is refused; says what is wrong, never the hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HashFormatError(pub String);

fn bad(reason: impl Into<String>) -> HashFormatError {
    HashFormatError(reason.into())
}

/// A parsed, bounded hash, ready to verify.
enum Parsed {
    Argon2 {
        algorithm: Algorithm,
        version: Version,
        params: Params,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Bcrypt {
        cost: u32,
        salt: [u8; 16],
        /// The 31 characters of the hash after the salt.
        tail: String,
    },
    Scrypt {
        params: scrypt::Params,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Pbkdf2 {
        sha512: bool,
        rounds: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Firebase(firebase::FirebaseHash),
}

/// Checks a hash given to an import: its format, and its costs against
/// the bounds (stricter than at sign-in for argon2's memory). Returns its
/// scheme.
pub fn check_import(hash: &str) -> Result<Scheme, HashFormatError> {
    let (scheme, parsed) = parse(hash)?;
    if let Parsed::Argon2 { params, .. } = &parsed {
        if params.m_cost() > MAX_IMPORTED_ARGON2_KIB {
            return Err(bad(format!(
                "argon2 memory m={} KiB is above the import bound of {MAX_IMPORTED_ARGON2_KIB} KiB",
                params.m_cost()
            )));
        }
    }
    Ok(scheme)
}

/// The scheme of a stored hash, if it is a well-formed one.
pub fn scheme_of(hash: &str) -> Option<Scheme> {
    parse(hash).ok().map(|(s, _)| s)
}

/// Whether `stored` is the pool's own argon2id (version 0x13, the pool's
/// m, t and p), which needs no rehash after a sign-in.
pub fn is_current(stored: &str, params: Argon2Params) -> bool {
    let own = format!("$argon2id$v=19$m={},t={},p={}$", params.m_kib, params.t, params.p);
    stored.starts_with(&own)
}

/// Checks `password` against `stored`, in constant time, reusing the
/// hashing thread's argon2 `memory`. A malformed or out-of-bound stored
/// hash is an error, not a mismatch. Costly: call it on a hashing thread.
pub fn verify(password: &[u8], stored: &str, memory: &mut Vec<Block>) -> Result<bool, HashFormatError> {
    let (_, parsed) = parse(stored)?;
    match parsed {
        Parsed::Argon2 {
            algorithm,
            version,
            params,
            salt,
            hash,
        } => {
            let argon = Argon2::new(algorithm, version, params);
            let mut out = vec![0u8; hash.len()];
            argon2_into(&argon, password, &salt, &mut out, memory)?;
            Ok(bool::from(out.ct_eq(&hash)))
        }
        Parsed::Bcrypt { cost, salt, tail } => {
            // `hash_with_salt` truncates at 72 bytes as every bcrypt does,
            // so hashes made elsewhere of longer passwords still verify.
            let ours = bcrypt::hash_with_salt(password, cost, salt)
                .map_err(|e| bad(format!("bcrypt: {e}")))?
                .format_for_version(bcrypt::Version::TwoB);
            let ours_tail = ours.get(ours.len().saturating_sub(31)..).unwrap_or_default();
            Ok(bool::from(ours_tail.as_bytes().ct_eq(tail.as_bytes())))
        }
        Parsed::Scrypt { params, salt, hash } => {
            let mut out = vec![0u8; hash.len()];
            scrypt::scrypt(password, &salt, &params, &mut out).map_err(|e| bad(format!("scrypt: {e}")))?;
            Ok(bool::from(out.ct_eq(&hash)))
        }
        Parsed::Pbkdf2 {
            sha512,
            rounds,
            salt,
            hash,
        } => {
            let mut out = vec![0u8; hash.len()];
            if sha512 {
                pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, &salt, rounds, &mut out);
            } else {
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, &salt, rounds, &mut out);
            }
            Ok(bool::from(out.ct_eq(&hash)))
        }
        Parsed::Firebase(f) => f.verify(password),
    }
}

/// Runs argon2 into `out` with the thread's reusable memory; the memory of
/// an unusually costly hash is not kept.
fn argon2_into(
    argon: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> Result<(), HashFormatError> {
    super::password::compute(argon, password, salt, out, memory).map_err(|e| bad(e.to_string()))
}

fn parse(hash: &str) -> Result<(Scheme, Parsed), HashFormatError> {
    if hash.len() > MAX_HASH_LEN {
        return Err(bad(format!("longer than {MAX_HASH_LEN} characters")));
    }
    if let Some(rest) = hash.strip_prefix("$firebase-scrypt$") {
        return Ok((Scheme::FirebaseScrypt, Parsed::Firebase(firebase::parse(rest)?)));
    }
    if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        return Ok((Scheme::Bcrypt, parse_bcrypt(hash)?));
    }
    if let Some(rest) = hash.strip_prefix("$scrypt$") {
        return Ok((Scheme::Scrypt, parse_scrypt(rest)?));
    }
    if let Some(rest) = hash.strip_prefix("$pbkdf2-sha256$") {
        return Ok((Scheme::Pbkdf2Sha256, parse_pbkdf2(rest, false)?));
    }
    if let Some(rest) = hash.strip_prefix("$pbkdf2-sha512$") {
        return Ok((Scheme::Pbkdf2Sha512, parse_pbkdf2(rest, true)?));
    }
    if hash.starts_with("$argon2id$") || hash.starts_with("$argon2i$") {
        return parse_argon2(hash);
    }
    Err(bad(
        "unknown hash format: expected bcrypt ($2a$, $2b$, $2y$), $scrypt$, $pbkdf2-sha256$, \
         $pbkdf2-sha512$, $argon2i$, $argon2id$ or $firebase-scrypt$",
    ))
}

/// Standard base64, padding optional, passlib's `.` for `+` accepted.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// bcrypt's own base64 (`./A-Za-z0-9`), unpadded.
const BCRYPT_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::BCRYPT,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes a base64 field of `min..=max` bytes.
fn b64(field: &str, s: &str, min: usize, max: usize) -> Result<Vec<u8>, HashFormatError> {
    let normalized = s.replace('.', "+");
    let v = LENIENT
        .decode(normalized.as_bytes())
        .map_err(|_| bad(format!("{field} is not base64")))?;
    if !(min..=max).contains(&v.len()) {
        return Err(bad(format!("{field} is {} bytes; expected {min} to {max}", v.len())));
    }
    Ok(v)
}

/// `a=1,b=2` into a map; a key given twice is refused.
fn params_of(s: &str) -> Result<BTreeMap<&str, &str>, HashFormatError> {
    let mut out = BTreeMap::new();
    for kv in s.split(',') {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| bad(format!("parameter {kv:?} is not name=value")))?;
        if out.insert(k, v).is_some() {
            return Err(bad(format!("parameter {k} given twice")));
        }
    }
    Ok(out)
}

/// The number `name` of `map`, within `range`.
fn number(
    map: &BTreeMap<&str, &str>,
    name: &str,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, HashFormatError> {
    let v = map.get(name).ok_or_else(|| bad(format!("parameter {name} missing")))?;
    let n: u32 = v
        .parse()
        .map_err(|_| bad(format!("parameter {name} is not a number")))?;
    if !range.contains(&n) {
        return Err(bad(format!(
            "parameter {name}={n} is out of bounds ({} to {})",
            range.start(),
            range.end()
        )));
    }
    Ok(n)
}

/// Checks scrypt's cost against the memory and work bounds.
fn scrypt_bounds(ln: u32, r: u32, p: u32) -> Result<(), HashFormatError> {
    let n = 1u64 << ln;
    let bytes = 128 * u64::from(r) * n;
    if bytes > MAX_SCRYPT_BYTES {
        return Err(bad(format!(
            "scrypt memory 128*r*N = {bytes} bytes is above the bound of {MAX_SCRYPT_BYTES}"
        )));
    }
    if n * u64::from(r) * u64::from(p) > MAX_SCRYPT_WORK {
        return Err(bad(format!(
            "scrypt work N*r*p is above the bound of {MAX_SCRYPT_WORK}"
        )));
    }
    Ok(())
}

fn parse_bcrypt(hash: &str) -> Result<Parsed, HashFormatError> {
    // $2b$NN$ + 22 characters of salt + 31 of hash.
    let b = hash.as_bytes();
    if b.len() != 60 || b[6] != b'$' {
        return Err(bad(
            "bcrypt hash must be 60 characters: $2b$NN$ then 53 of salt and hash",
        ));
    }
    let cost: u32 = hash[4..6].parse().map_err(|_| bad("bcrypt cost is not a number"))?;
    if !(4..=MAX_BCRYPT_COST).contains(&cost) {
        return Err(bad(format!(
            "bcrypt cost {cost} is out of bounds (4 to {MAX_BCRYPT_COST})"
        )));
    }
    let salt = BCRYPT_B64
        .decode(&hash[7..29])
        .map_err(|_| bad("bcrypt salt is not bcrypt base64"))?;
    let salt: [u8; 16] = salt.try_into().map_err(|_| bad("bcrypt salt is not 16 bytes"))?;
    let tail = &hash[29..];
    if BCRYPT_B64.decode(tail).is_err() {
        return Err(bad("bcrypt hash is not bcrypt base64"));
    }
    Ok(Parsed::Bcrypt {
        cost,
        salt,
        tail: tail.to_string(),
    })
}

fn parse_scrypt(rest: &str) -> Result<Parsed, HashFormatError> {
    let parts: Vec<&str> = rest.split('$').collect();
    let [params, salt, hash] = parts[..] else {
        return Err(bad("scrypt hash must be $scrypt$ln=..,r=..,p=..$salt$hash"));
    };
    let map = params_of(params)?;
    let ln = number(&map, "ln", 1..=MAX_SCRYPT_LN)?;
    let r = number(&map, "r", 1..=32)?;
    let p = number(&map, "p", 1..=16)?;
    scrypt_bounds(ln, r, p)?;
    let salt = b64("scrypt salt", salt, 1, 128)?;
    let hash = b64("scrypt hash", hash, 16, 64)?;
    let params = scrypt::Params::new(ln as u8, r, p, hash.len()).map_err(|e| bad(format!("scrypt: {e}")))?;
    Ok(Parsed::Scrypt { params, salt, hash })
}

fn parse_pbkdf2(rest: &str, sha512: bool) -> Result<Parsed, HashFormatError> {
    let parts: Vec<&str> = rest.split('$').collect();
    let [params, salt, hash] = parts[..] else {
        return Err(bad("pbkdf2 hash must be $pbkdf2-sha256$i=<rounds>$salt$hash"));
    };
    let rounds = if params.contains('=') {
        let map = params_of(params)?;
        if map.keys().any(|k| !matches!(*k, "i" | "l")) {
            return Err(bad("pbkdf2 parameters are i (rounds) and l (length)"));
        }
        number(&map, "i", 1..=MAX_PBKDF2_ROUNDS)?
    } else {
        // passlib: the rounds alone.
        let mut map = BTreeMap::new();
        map.insert("i", params);
        number(&map, "i", 1..=MAX_PBKDF2_ROUNDS)?
    };
    let salt = b64("pbkdf2 salt", salt, 1, 128)?;
    let hash = b64("pbkdf2 hash", hash, 16, 64)?;
    if params.contains("l=") {
        let map = params_of(params)?;
        let l = number(&map, "l", 16..=64)?;
        if l as usize != hash.len() {
            return Err(bad("pbkdf2 l does not match the hash length"));
        }
    }
    Ok(Parsed::Pbkdf2 {
        sha512,
        rounds,
        salt,
        hash,
    })
}

fn parse_argon2(hash: &str) -> Result<(Scheme, Parsed), HashFormatError> {
    let parsed = PasswordHash::new(hash).map_err(|e| bad(format!("argon2: {e}")))?;
    let (scheme, algorithm) = match parsed.algorithm.as_str() {
        "argon2id" => (Scheme::Argon2id, Algorithm::Argon2id),
        "argon2i" => (Scheme::Argon2i, Algorithm::Argon2i),
        other => return Err(bad(format!("unsupported algorithm {other}"))),
    };
    // Without `v=`, the hash predates version 1.3 (0x13).
    let version = match parsed.version {
        None | Some(0x10) => Version::V0x10,
        Some(0x13) => Version::V0x13,
        Some(v) => return Err(bad(format!("argon2 version {v} is unknown"))),
    };
    let map: BTreeMap<&str, &str> = parsed.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let m = number(&map, "m", 8..=MAX_ARGON2_KIB)?;
    let t = number(&map, "t", 1..=MAX_ARGON2_T)?;
    let p = number(&map, "p", 1..=MAX_ARGON2_P)?;
    let expected = parsed.hash.ok_or_else(|| bad("argon2: no hash"))?;
    let expected = expected.as_bytes().to_vec();
    if !(16..=64).contains(&expected.len()) {
        return Err(bad("argon2 hash is not 16 to 64 bytes"));
    }
    let mut buf = [0u8; 64];
    let salt = parsed
        .salt
        .ok_or_else(|| bad("argon2: no salt"))?
        .decode_b64(&mut buf)
        .map_err(|e| bad(format!("argon2 salt: {e}")))?
        .to_vec();
    if salt.len() < 8 {
        return Err(bad("argon2 salt is shorter than 8 bytes"));
    }
    let params = Params::new(m, t, p, Some(expected.len())).map_err(|e| bad(format!("argon2: {e}")))?;
    Ok((
        scheme,
        Parsed::Argon2 {
            algorithm,
            version,
            params,
            salt,
            hash: expected,
        },
    ))
}

#[cfg(test)]
mod tests;
