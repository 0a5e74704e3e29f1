//! SRP-6a as Amazon Cognito speaks it (`USER_SRP_AUTH` /
//! `PASSWORD_VERIFIER`, and `DEVICE_SRP_AUTH` / `DEVICE_PASSWORD_VERIFIER`
//! for remembered devices): the server's half of the arithmetic.
//!
//! The constants are Cognito's, the ones its client libraries (Amplify,
//! pycognito's `aws_srp.py`) hard-code: the 3072-bit group of RFC 5054
//! with g = 2, SHA-256, `k = H(0x00 | N | 0x02)`, and a 16-byte session key
//! from HKDF-SHA256 (salt `u`, info `"Caldera Derived Key"`). Numbers are
//! hashed in the clients' "padded hex" form: big-endian with no leading
//! zero bytes, plus one zero byte when the top bit is set (a Java
//! `BigInteger`'s bytes), never padded to the length of N.
//!
//! * The *realm* is what the clients put before the user id: the part of
//!   the pool id after its first `_` for users, the device group key for
//!   devices. The *user id* is `USER_ID_FOR_SRP` (the username), or the
//!   device key.
//! * The verifier `v = g^x` with `x = H(salt | H(realm | user | ":" | password))`
//!   is stored instead of anything the password could be read from; it is
//!   still a weaker secret than an argon2id hash (one SHA-256 per guess),
//!   which is why SRP is a pool setting.
//!
//! Every exponentiation is constant time in its operands (crypto-bigint's
//! Montgomery ladder over fixed-size integers), so neither the server's
//! ephemeral `b` nor a verifier leaks through timing; exponents are 256
//! bits (`b` is random, `u` and `x` are hashes), which keeps one sign-in to
//! a few milliseconds. The claim signature is compared in constant time.

use std::sync::OnceLock;

use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Encoding, U256, U3072};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The 3072-bit MODP group of RFC 5054 (RFC 3526 group 15), as Cognito uses it.
const N_HEX: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
);

/// Bytes of a number modulo N.
pub const N_BYTES: usize = 384;

/// The HKDF info string every Cognito client uses.
const INFO: &[u8] = b"Caldera Derived Key";

/// Why an SRP step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrpError {
    /// `SRP_A` is not a hex number below 2^3072, or is 0 mod N (which
    /// would make the session key predictable).
    #[error("SRP_A is not a valid SRP value")]
    BadA,
    /// A stored verifier is not a number below N.
    #[error("stored SRP verifier is malformed")]
    BadVerifier,
    /// `u` came out 0 (negligible; the client must start over).
    #[error("SRP_A and SRP_B give u = 0; start the sign-in again")]
    ZeroU,
}

struct Group {
    params: DynResidueParams<{ U3072::LIMBS }>,
    g: DynResidue<{ U3072::LIMBS }>,
    k: DynResidue<{ U3072::LIMBS }>,
}

fn group() -> &'static Group {
    static GROUP: OnceLock<Group> = OnceLock::new();
    GROUP.get_or_init(|| {
        let n = U3072::from_be_hex(N_HEX);
        let params = DynResidueParams::new(&n);
        let g = DynResidue::new(&U3072::from_u8(2), params);
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(n.to_be_bytes());
        h.update([2u8]);
        let k = DynResidue::new(&U256::from_be_slice(&h.finalize()).resize(), params);
        Group { params, g, k }
    })
}

/// A number in the clients' padded form: no leading zero bytes, one zero
/// byte in front when the top bit is set, and `[0]` for zero.
pub fn padded(bytes: &[u8]) -> Vec<u8> {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let digits = &bytes[first..];
    let mut out = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|&b| b >= 0x80) {
        out.push(0);
    }
    out.extend_from_slice(digits);
    out
}

/// Lowercase hex of a number with no leading zeros (the clients parse it
/// as an integer).
pub fn to_hex(bytes: &[u8]) -> String {
    let h = hex::encode(bytes);
    let trimmed = h.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_string()
    } else {
        trimmed.to_string()
    }
}

fn to_uint(bytes: &[u8]) -> Option<U3072> {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let digits = &bytes[first..];
    if digits.len() > N_BYTES {
        return None;
    }
    let mut full = [0u8; N_BYTES];
    full[N_BYTES - digits.len()..].copy_from_slice(digits);
    Some(U3072::from_be_slice(&full))
}

fn hash_to_u256(parts: &[&[u8]]) -> U256 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    U256::from_be_slice(&h.finalize())
}

/// `x = H(salt | H(realm | user | ":" | password))`, as the clients
/// compute it (the salt in padded form).
fn private_x(realm: &str, user_id: &str, password: &str, salt: &[u8]) -> U256 {
    let inner = Sha256::new()
        .chain_update(realm.as_bytes())
        .chain_update(user_id.as_bytes())
        .chain_update(b":")
        .chain_update(password.as_bytes())
        .finalize();
    hash_to_u256(&[&padded(salt), &inner])
}

/// The verifier `g^x` (384 big-endian bytes) for a password, stored at
/// sign-up, password change or reset, and on a password sign-in of a user
/// who has none yet.
pub fn verifier(realm: &str, user_id: &str, password: &str, salt: &[u8]) -> Vec<u8> {
    let x = private_x(realm, user_id, password, salt);
    group().g.pow(&x).retrieve().to_be_bytes().to_vec()
}

/// A fresh user salt: 16 random bytes whose first byte is 1..=0x7f, so
/// that every client's reading of the `SALT` hex (as a string or as an
/// integer) gives the same bytes.
pub fn user_salt(mut random: [u8; 16]) -> [u8; 16] {
    random[0] = (random[0] & 0x7f).max(1);
    random
}

/// The server's public value `B = k·v + g^b` for a verifier and the
/// ephemeral secret `b` (random, chosen by the caller). Minimal bytes.
pub fn server_public(verifier: &[u8], b: &[u8; 32]) -> Result<Vec<u8>, SrpError> {
    let grp = group();
    let v = residue(verifier).ok_or(SrpError::BadVerifier)?;
    let gb = grp.g.pow(&U256::from_be_slice(b));
    let big_b = grp.k.mul(&v).add(&gb).retrieve().to_be_bytes();
    Ok(minimal(&big_b))
}

/// Big-endian bytes without leading zeros (`[0]` for zero).
pub fn minimal(bytes: &[u8]) -> Vec<u8> {
    let first = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    bytes[first..].to_vec()
}

fn residue(bytes: &[u8]) -> Option<DynResidue<{ U3072::LIMBS }>> {
    let grp = group();
    let n = grp.params.modulus();
    let value = to_uint(bytes)?;
    // Stored values are below N; anything else was not written by us.
    if value >= *n {
        return None;
    }
    Some(DynResidue::new(&value, grp.params))
}

/// Parses a client's `SRP_A` (hex): at most 3072 bits, and not 0 mod N.
pub fn parse_a(hex_a: &str) -> Result<Vec<u8>, SrpError> {
    if hex_a.is_empty() || hex_a.len() > 2 * N_BYTES + 2 || !hex_a.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(SrpError::BadA);
    }
    let even = if hex_a.len() % 2 == 1 {
        format!("0{hex_a}")
    } else {
        hex_a.to_string()
    };
    let bytes = hex::decode(even).map_err(|_| SrpError::BadA)?;
    let value = to_uint(&bytes).ok_or(SrpError::BadA)?;
    let a = DynResidue::new(&value, group().params).retrieve();
    if bool::from(a.ct_eq(&U3072::ZERO)) {
        return Err(SrpError::BadA);
    }
    Ok(bytes)
}

/// The 16-byte session key the server derives from the client's `A`, the
/// verifier and its own `b` and `B`: `S = (A·v^u)^b`, then HKDF.
pub fn server_key(a: &[u8], verifier: &[u8], b: &[u8; 32], big_b: &[u8]) -> Result<[u8; 16], SrpError> {
    let grp = group();
    let v = residue(verifier).ok_or(SrpError::BadVerifier)?;
    let a_value = to_uint(a).ok_or(SrpError::BadA)?;
    let a_res = DynResidue::new(&a_value, grp.params);
    let u_bytes = Sha256::new()
        .chain_update(padded(a))
        .chain_update(padded(big_b))
        .finalize();
    let u = U256::from_be_slice(&u_bytes);
    if bool::from(u.ct_eq(&U256::ZERO)) {
        return Err(SrpError::ZeroU);
    }
    let s = a_res
        .mul(&v.pow(&u))
        .pow(&U256::from_be_slice(b))
        .retrieve()
        .to_be_bytes();
    Ok(session_key(&s, &u_bytes))
}

/// HKDF-SHA256 of `S` (padded) with `u` (padded) as salt, first 16 bytes.
fn session_key(s: &[u8], u: &[u8]) -> [u8; 16] {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(padded(u).as_slice()), &padded(s));
    let mut okm = [0u8; 16];
    // 16 bytes are far below HKDF-SHA256's limit of 255 * 32.
    let _ = hk.expand(INFO, &mut okm);
    okm
}

/// The claim signature a client sends: HMAC-SHA256 under the session key
/// of `realm | user_id | secret_block | timestamp`.
pub fn claim_signature(key: &[u8; 16], realm: &str, user_id: &str, secret_block: &[u8], timestamp: &str) -> [u8; 32] {
    // HMAC pads a key shorter than its block with zeros, so the padded
    // key is the same key, and this constructor cannot fail.
    let mut block = [0u8; 64];
    block[..16].copy_from_slice(key);
    let mut mac =
        <Hmac<Sha256> as hmac::digest::KeyInit>::new(hmac::digest::generic_array::GenericArray::from_slice(&block));
    mac.update(realm.as_bytes());
    mac.update(user_id.as_bytes());
    mac.update(secret_block);
    mac.update(timestamp.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Whether a client's signature matches, in constant time.
pub fn signature_matches(expected: &[u8; 32], given: &[u8]) -> bool {
    given.len() == 32 && bool::from(expected.as_slice().ct_eq(given))
}

/// The realm of a user pool's users: the part of the pool id after its
/// first `_`, as every Cognito client splits it.
pub fn pool_realm(pool_id: &str) -> &str {
    pool_id.split('_').nth(1).unwrap_or(pool_id)
}

/// Checks Cognito's `TIMESTAMP` shape, `"Sun Dec 6 17:02:03 UTC 2026"`
/// (day of month without a leading zero), without reading the clock: the
/// sealed `SECRET_BLOCK` bounds how old a claim can be.
pub fn valid_timestamp(ts: &str) -> bool {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    if ts.len() > 40 {
        return false;
    }
    fn digits(s: &str, min: usize, max: usize) -> bool {
        (min..=max).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_digit())
    }
    let parts: Vec<&str> = ts.split(' ').collect();
    let [day, month, date, time, zone, year] = parts[..] else {
        return false;
    };
    let clock: Vec<&str> = time.split(':').collect();
    DAYS.contains(&day)
        && MONTHS.contains(&month)
        && digits(date, 1, 2)
        && !date.starts_with('0')
        && clock.len() == 3
        && clock.iter().all(|p| digits(p, 2, 2))
        && zone == "UTC"
        && digits(year, 4, 4)
}

#[cfg(test)]
pub(crate) mod client {
    //! The client's half, for tests: what Amplify and pycognito compute.
    use super::*;

    /// `A = g^a`, minimal bytes.
    pub fn public_a(a: &[u8; 32]) -> Vec<u8> {
        minimal(&group().g.pow(&U256::from_be_slice(a)).retrieve().to_be_bytes())
    }

    /// The client's session key: `S = (B - k·g^x)^(a + u·x)`, computed as
    /// `base^a · (base^u)^x` so every exponent stays 256 bits.
    pub fn key(a: &[u8; 32], big_b: &[u8], realm: &str, user: &str, password: &str, salt: &[u8]) -> [u8; 16] {
        let grp = group();
        let big_a = public_a(a);
        let x = private_x(realm, user, password, salt);
        let b_value = to_uint(big_b).expect("B fits");
        let base = DynResidue::new(&b_value, grp.params).sub(&grp.k.mul(&grp.g.pow(&x)));
        let u_bytes = Sha256::new()
            .chain_update(padded(&big_a))
            .chain_update(padded(big_b))
            .finalize();
        let u = U256::from_be_slice(&u_bytes);
        let s = base
            .pow(&U256::from_be_slice(a))
            .mul(&base.pow(&u).pow(&x))
            .retrieve()
            .to_be_bytes();
        session_key(&s, &u_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_follows_the_clients() {
        assert_eq!(padded(&[0, 0, 0x12, 0x34]), vec![0x12, 0x34]);
        assert_eq!(padded(&[0x80, 1]), vec![0, 0x80, 1]);
        assert_eq!(padded(&[0, 0]), vec![0]);
        assert_eq!(to_hex(&[0, 0x0a, 0xbc]), "abc");
        assert_eq!(to_hex(&[0]), "0");
    }

    #[test]
    fn k_is_cognitos() {
        // H(0x00 | N | 0x02) as pycognito's aws_srp.py computes it
        // (hex_hash("00" + n_hex + "0" + g_hex)).
        let k = group().k.retrieve().to_be_bytes();
        let expected = Sha256::new()
            .chain_update(hex::decode(format!("00{N_HEX}02")).unwrap())
            .finalize();
        assert_eq!(&k[N_BYTES - 32..], expected.as_slice());
        assert!(k[..N_BYTES - 32].iter().all(|&b| b == 0));
    }

    #[test]
    fn client_and_server_agree_only_on_the_right_password() {
        let salt = user_salt([0xff; 16]);
        assert_eq!(salt[0], 0x7f);
        let v = verifier("AbC123", "alice", "Correct-Horse-1", &salt);
        let a = [7u8; 32];
        let b = [9u8; 32];
        let big_a = client::public_a(&a);
        let big_b = server_public(&v, &b).unwrap();
        let server = server_key(&parse_a(&to_hex(&big_a)).unwrap(), &v, &b, &big_b).unwrap();
        let good = client::key(&a, &big_b, "AbC123", "alice", "Correct-Horse-1", &salt);
        assert_eq!(server, good);
        let wrong = client::key(&a, &big_b, "AbC123", "alice", "correct-horse-1", &salt);
        assert_ne!(server, wrong);
        let other_pool = client::key(&a, &big_b, "XyZ", "alice", "Correct-Horse-1", &salt);
        assert_ne!(server, other_pool);
        let sig = claim_signature(&good, "AbC123", "alice", b"block", "Sun Dec 6 17:02:03 UTC 2026");
        assert!(signature_matches(
            &claim_signature(&server, "AbC123", "alice", b"block", "Sun Dec 6 17:02:03 UTC 2026"),
            &sig
        ));
        assert!(!signature_matches(
            &claim_signature(&server, "AbC123", "alice", b"block", "Sun Dec 6 17:02:04 UTC 2026"),
            &sig
        ));
        assert!(!signature_matches(&sig, &sig[..31]));
    }

    #[test]
    fn degenerate_a_is_refused() {
        assert_eq!(parse_a("0"), Err(SrpError::BadA));
        assert_eq!(parse_a(N_HEX), Err(SrpError::BadA), "A = N is 0 mod N");
        assert_eq!(parse_a(""), Err(SrpError::BadA));
        assert_eq!(parse_a("xyz"), Err(SrpError::BadA));
        assert_eq!(parse_a(&"f".repeat(2 * N_BYTES + 3)), Err(SrpError::BadA));
        assert!(parse_a("2").is_ok());
    }

    #[test]
    fn timestamps_have_cognitos_shape() {
        assert!(valid_timestamp("Sun Dec 6 17:02:03 UTC 2026"));
        assert!(valid_timestamp("Mon Jan 12 01:02:03 UTC 2026"));
        assert!(!valid_timestamp("Sun Dec 06 17:02:03 UTC 2026"));
        assert!(!valid_timestamp("Sun Dec 6 17:02:03 GMT 2026"));
        assert!(!valid_timestamp("2026-12-06T17:02:03Z"));
        assert!(!valid_timestamp(""));
    }
}
