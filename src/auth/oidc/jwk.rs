//! A provider's JWKS, read into the keys Tessera can verify with.
//!
//! Each usable key carries the one algorithm it may verify: the algorithm
//! comes from the key, never from a token. `kty: RSA` means RS256,
//! `kty: EC` with `crv: P-256` ES256, `kty: OKP` with `crv: Ed25519` EdDSA;
//! a JWK `alg`, when present, must agree, and a key whose `use` is not
//! `sig` (or whose `key_ops` lack `verify`) is not used. Anything else,
//! symmetric `oct` keys above all, is skipped, never an error for the
//! whole set: providers publish encryption keys and newer algorithms
//! beside the ones Tessera checks.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// Most keys read from one JWKS; later ones are ignored.
pub const MAX_KEYS: usize = 64;
/// Longest `kid` kept.
pub const MAX_KID_LEN: usize = 256;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (ring's verification limit).
pub const MAX_RSA_BITS: usize = 8192;

/// base64url as JWKs use it. Padding is tolerated, since a few providers
/// publish padded values; the bytes are checked for length afterwards.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The signature algorithms accepted from external providers, each tied to
/// the key type that alone may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, for `kty: RSA` keys.
    Rs256,
    /// ECDSA on P-256 with SHA-256, for `kty: EC, crv: P-256` keys.
    Es256,
    /// Ed25519, for `kty: OKP, crv: Ed25519` keys.
    EdDsa,
}

impl KeyAlg {
    /// The JOSE name (`RS256`, `ES256`, `EdDSA`).
    pub fn name(self) -> &'static str {
        match self {
            KeyAlg::Rs256 => "RS256",
            KeyAlg::Es256 => "ES256",
            KeyAlg::EdDsa => "EdDSA",
        }
    }

    /// The algorithm named `alg` in a token header, if it is one of ours.
    /// Exact, case-sensitive match, as JOSE names are.
    pub fn from_name(alg: &str) -> Option<KeyAlg> {
        match alg {
            "RS256" => Some(KeyAlg::Rs256),
            "ES256" => Some(KeyAlg::Es256),
            "EdDSA" => Some(KeyAlg::EdDsa),
            _ => None,
        }
    }

    /// The jsonwebtoken algorithm that verifies it.
    pub(crate) fn jwt(self) -> Algorithm {
        match self {
            KeyAlg::Rs256 => Algorithm::RS256,
            KeyAlg::Es256 => Algorithm::ES256,
            KeyAlg::EdDsa => Algorithm::EdDSA,
        }
    }
}

impl std::fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One key that can verify signatures, with the algorithm it allows.
#[derive(Clone)]
pub struct UsableKey {
    /// The JWK's `kid`, if it has one.
    pub kid: Option<String>,
    /// The only algorithm this key verifies.
    pub alg: KeyAlg,
    pub(crate) key: DecodingKey,
}

impl std::fmt::Debug for UsableKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsableKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl UsableKey {
    /// The kid for messages (`(no kid)` when the JWK has none).
    pub fn kid_for_display(&self) -> &str {
        self.kid.as_deref().unwrap_or("(no kid)")
    }
}

/// The usable keys of one JWKS document.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<UsableKey>,
    /// Why keys were left out (`kid: reason`), for the log.
    pub skipped: Vec<String>,
}

/// What looking a `kid` up in a [`KeySet`] found.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The key to verify with.
    Found(&'a UsableKey),
    /// No usable key has that kid.
    Unknown,
    /// The token has no kid and the set does not have exactly one key
    /// (how many it has).
    NeedKid(usize),
}

impl KeySet {
    /// Reads a JWKS document (`{"keys": [...]}`). Fails only when the
    /// document is not a JWKS at all; unusable keys are skipped.
    pub fn from_jwks(doc: &Value) -> Result<KeySet, String> {
        let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
            return Err("the document has no \"keys\" array".into());
        };
        let mut set = KeySet::default();
        for jwk in keys.iter().take(MAX_KEYS) {
            let kid = jwk.get("kid").and_then(Value::as_str);
            let label = kid.unwrap_or("(no kid)").chars().take(64).collect::<String>();
            match parse_jwk(jwk) {
                Ok(key) if key.kid.is_some() && set.keys.iter().any(|k| k.kid == key.kid) => {
                    set.skipped.push(format!("{label}: a key with this kid came earlier"));
                }
                Ok(key) => set.keys.push(key),
                Err(why) => set.skipped.push(format!("{label}: {why}")),
            }
        }
        if keys.len() > MAX_KEYS {
            set.skipped.push(format!(
                "{} keys past the first {MAX_KEYS} were ignored",
                keys.len() - MAX_KEYS
            ));
        }
        Ok(set)
    }

    /// How many usable keys the set has.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token's `kid`. A token without a kid gets the set's
    /// only key when it has exactly one, which is how single-key providers
    /// (and RFC 7515, where `kid` is optional) work; with several keys
    /// guessing would mean trying each, so a kid is required.
    pub fn find(&self, kid: Option<&str>) -> Lookup<'_> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .map_or(Lookup::Unknown, Lookup::Found),
            None => match self.keys.as_slice() {
                [only] => Lookup::Found(only),
                keys => Lookup::NeedKid(keys.len()),
            },
        }
    }
}

/// One JWK into a usable key, or why it is not usable.
fn parse_jwk(jwk: &Value) -> Result<UsableKey, String> {
    let field = |name: &str| -> Result<Option<&str>, String> {
        match jwk.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("\"{name}\" is not a string")),
        }
    };
    let required = |name: &str| -> Result<Vec<u8>, String> {
        let s = field(name)?.ok_or_else(|| format!("\"{name}\" is missing"))?;
        B64URL.decode(s).map_err(|_| format!("\"{name}\" is not base64url"))
    };
    let kid = field("kid")?;
    if kid.is_some_and(|k| k.is_empty() || k.len() > MAX_KID_LEN) {
        return Err(format!("kid must be 1 to {MAX_KID_LEN} bytes"));
    }
    if let Some(u) = field("use")? {
        if u != "sig" {
            return Err(format!("use is {u:?}, not \"sig\""));
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o.as_str() == Some("verify")));
        if !verifies {
            return Err("key_ops does not include \"verify\"".into());
        }
    }
    let kty = field("kty")?.ok_or("\"kty\" is missing")?;
    let crv = field("crv")?;
    let (alg, key) = match kty {
        "RSA" => {
            let n = required("n")?;
            let e = required("e")?;
            let n = strip_leading_zeros(&n);
            let bits = n.first().map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(format!(
                    "an RSA modulus of {bits} bits (accepted: {MIN_RSA_BITS} to {MAX_RSA_BITS})"
                ));
            }
            let e = strip_leading_zeros(&e);
            if e.is_empty() || e.len() > 4 {
                return Err("the RSA exponent is out of range".into());
            }
            (KeyAlg::Rs256, DecodingKey::from_rsa_raw_components(n, e))
        }
        "EC" => {
            if crv != Some("P-256") {
                return Err(format!("EC curve {crv:?} is not supported (only P-256)"));
            }
            let x = required("x")?;
            let y = required("y")?;
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates must be 32 bytes each".into());
            }
            // The uncompressed SEC1 point, which ring verifies against.
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (KeyAlg::Es256, DecodingKey::from_ec_der(&point))
        }
        "OKP" => {
            if crv != Some("Ed25519") {
                return Err(format!("OKP curve {crv:?} is not supported (only Ed25519)"));
            }
            let x = required("x")?;
            if x.len() != 32 {
                return Err("an Ed25519 key must be 32 bytes".into());
            }
            (KeyAlg::EdDsa, DecodingKey::from_ed_der(&x))
        }
        other => return Err(format!("key type {other:?} is not supported")),
    };
    if let Some(declared) = field("alg")? {
        if declared != alg.name() {
            return Err(format!(
                "alg {declared:?} does not match the {kty} key (accepted: {})",
                alg.name()
            ));
        }
    }
    Ok(UsableKey {
        kid: kid.map(str::to_string),
        alg,
        key,
    })
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa(kid: &str) -> Value {
        let mut n = vec![0xC5u8; 256];
        n[255] = 0x01;
        json!({"kty": "RSA", "kid": kid, "n": b64(&n), "e": "AQAB"})
    }

    fn ec(kid: &str) -> Value {
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&[1; 32]), "y": b64(&[2; 32])})
    }

    fn ed(kid: &str) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(&[3; 32])})
    }

    #[test]
    fn the_algorithm_comes_from_the_key_type() {
        let set = KeySet::from_jwks(&json!({"keys": [rsa("r"), ec("e"), ed("d")]})).unwrap();
        assert_eq!(set.len(), 3, "{:?}", set.skipped);
        let alg = |kid| match set.find(Some(kid)) {
            Lookup::Found(k) => k.alg,
            other => panic!("{other:?}"),
        };
        assert_eq!(alg("r"), KeyAlg::Rs256);
        assert_eq!(alg("e"), KeyAlg::Es256);
        assert_eq!(alg("d"), KeyAlg::EdDsa);
        assert!(matches!(set.find(Some("x")), Lookup::Unknown));
        assert!(matches!(set.find(None), Lookup::NeedKid(3)));
    }

    #[test]
    fn a_kidless_token_needs_a_single_key_set() {
        let set = KeySet::from_jwks(&json!({"keys": [rsa("r"), {"kty": "oct", "k": "c2VjcmV0"}]})).unwrap();
        assert!(matches!(set.find(None), Lookup::Found(k) if k.kid.as_deref() == Some("r")));
        let empty = KeySet::from_jwks(&json!({"keys": []})).unwrap();
        assert!(matches!(empty.find(None), Lookup::NeedKid(0)));
    }

    #[test]
    fn unusable_keys_are_skipped_with_a_reason() {
        let mut small = rsa("small");
        small["n"] = json!(b64(&[0xC5; 128]));
        let mut rs512 = rsa("rs512");
        rs512["alg"] = json!("RS512");
        let mut hs = ec("hs");
        hs["alg"] = json!("HS256");
        let mut enc = rsa("enc");
        enc["use"] = json!("enc");
        let mut ops = ed("ops");
        ops["key_ops"] = json!(["sign"]);
        let mut short = ec("short");
        short["x"] = json!(b64(&[1; 31]));
        let p384 = json!({"kty": "EC", "crv": "P-384", "kid": "p384", "x": b64(&[1; 48]), "y": b64(&[2; 48])});
        let x448 = json!({"kty": "OKP", "crv": "X25519", "kid": "x", "x": b64(&[1; 32])});
        let oct = json!({"kty": "oct", "kid": "oct", "k": "c2VjcmV0"});
        let mut ok_alg = rsa("ok");
        ok_alg["alg"] = json!("RS256");
        ok_alg["use"] = json!("sig");
        let dup = ec("ok");
        let doc = json!({"keys": [small, rs512, hs, enc, ops, short, p384, x448, oct, "junk", ok_alg, dup]});
        let set = KeySet::from_jwks(&doc).unwrap();
        assert_eq!(set.len(), 1, "{:?}", set.skipped);
        assert_eq!(set.skipped.len(), 11, "{:?}", set.skipped);
        assert!(set.skipped[0].contains("1024 bits"), "{}", set.skipped[0]);
        assert!(set.skipped[1].contains("RS512"), "{}", set.skipped[1]);
        assert!(matches!(set.find(Some("ok")), Lookup::Found(k) if k.alg == KeyAlg::Rs256));
        assert!(matches!(set.find(Some("oct")), Lookup::Unknown));
    }

    #[test]
    fn padded_values_are_read_and_non_jwks_refused() {
        let mut k = ed("p");
        k["x"] = json!(base64::engine::general_purpose::URL_SAFE.encode([3u8; 32]));
        assert_eq!(KeySet::from_jwks(&json!({"keys": [k]})).unwrap().len(), 1);
        assert!(KeySet::from_jwks(&json!({"issuer": "x"})).is_err());
        assert!(KeySet::from_jwks(&json!([])).is_err());
    }

    #[test]
    fn only_the_first_keys_are_read() {
        let keys: Vec<Value> = (0..MAX_KEYS + 5).map(|i| ed(&format!("k{i}"))).collect();
        let set = KeySet::from_jwks(&json!({ "keys": keys })).unwrap();
        assert_eq!(set.len(), MAX_KEYS);
        assert!(matches!(set.find(Some("k70")), Lookup::Unknown));
    }

    #[test]
    fn jose_names_are_exact() {
        assert_eq!(KeyAlg::from_name("RS256"), Some(KeyAlg::Rs256));
        assert_eq!(KeyAlg::from_name("rs256"), None);
        assert_eq!(KeyAlg::from_name("EDDSA"), None);
        assert_eq!(KeyAlg::from_name("HS256"), None);
        assert_eq!(KeyAlg::from_name("none"), None);
    }
}
