//! Compact JWTs signed with EdDSA (Ed25519), and their offline
//! verification: what a resource server needs is the issuer's JWKS.
//!
//! Verification is strict: the header must say `alg: EdDSA` (so `none` and
//! HMAC confusion are impossible), the `kid` must be in the key set, the
//! signature is checked with `verify_strict`, and `exp`, `iat`, `iss` and
//! optionally `token_use` are enforced. Time is a parameter, so callers and
//! tests control it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{json, Map, Value};

use super::jwks::Jwks;
use super::signing_key::NodeSigningKey;
use super::AuthError;

/// Largest token accepted for verification; bounds work per request.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// JWT claims as a JSON object.
pub type Claims = Map<String, Value>;

/// Signs `claims` with the node's key, naming it in the header's `kid`.
pub fn mint(claims: &Claims, key: &NodeSigningKey) -> String {
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": key.kid()});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string())
    );
    let sig = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// What a verified token must satisfy.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    /// Required `iss`.
    pub issuer: &'a str,
    /// Required `token_use` ("id" or "access"), if any.
    pub token_use: Option<&'a str>,
    /// The current time, seconds since the epoch.
    pub now: i64,
    /// Allowed clock skew between nodes, in seconds.
    pub leeway: i64,
}

/// Where verification finds the public key named by a token's `kid`.
pub trait KeyLookup {
    /// The public key named `kid`, or `None` if none is known (the token is refused).
    fn key(&self, kid: &str) -> Option<VerifyingKey>;
}

impl KeyLookup for Jwks {
    fn key(&self, kid: &str) -> Option<VerifyingKey> {
        self.find(kid)
    }
}

/// Decoded keys by kid: what a verifier that checks many tokens keeps, so
/// that each check skips decoding the JWK.
impl KeyLookup for std::collections::BTreeMap<String, VerifyingKey> {
    fn key(&self, kid: &str) -> Option<VerifyingKey> {
        self.get(kid).copied()
    }
}

/// Verifies `token` against `keys` and returns its claims.
pub fn verify(token: &str, keys: &impl KeyLookup, expect: &Expect<'_>) -> Result<Claims, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::InvalidToken("token too large"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::InvalidToken("not a compact JWT"));
    };
    let header: Claims = decode_json(h)?;
    if header.get("alg").and_then(Value::as_str) != Some("EdDSA") {
        return Err(AuthError::InvalidToken("alg must be EdDSA"));
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(AuthError::InvalidToken("missing kid"))?;
    let key = keys.key(kid).ok_or(AuthError::InvalidToken("unknown signing key"))?;
    let sig: [u8; 64] = URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(AuthError::InvalidToken("malformed signature"))?;
    let signing_input_len = h.len() + 1 + p.len();
    key.verify_strict(&token.as_bytes()[..signing_input_len], &Signature::from_bytes(&sig))
        .map_err(|_| AuthError::InvalidToken("bad signature"))?;
    let claims: Claims = decode_json(p)?;
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(AuthError::InvalidToken("missing exp"))?;
    // Saturating: a signed `exp` of i64::MAX must not overflow (a panic in
    // debug builds, a wrapped "expired" in release; found by the jwt fuzz target).
    if exp.saturating_add(expect.leeway) <= expect.now {
        return Err(AuthError::InvalidToken("token expired"));
    }
    if let Some(iat) = claims.get("iat").and_then(Value::as_i64) {
        if iat.saturating_sub(expect.leeway) > expect.now {
            return Err(AuthError::InvalidToken("token issued in the future"));
        }
    }
    if claims.get("iss").and_then(Value::as_str) != Some(expect.issuer) {
        return Err(AuthError::InvalidToken("wrong issuer"));
    }
    if let Some(want) = expect.token_use {
        if claims.get("token_use").and_then(Value::as_str) != Some(want) {
            return Err(AuthError::InvalidToken("wrong token_use"));
        }
    }
    Ok(claims)
}

fn decode_json(part: &str) -> Result<Claims, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::InvalidToken("malformed base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::InvalidToken("malformed JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwks::Jwk;

    fn setup() -> (NodeSigningKey, Jwks, Claims) {
        let key = NodeSigningKey::from_seed(1, [5; 32]);
        let jwks = Jwks {
            keys: vec![Jwk::ed25519(key.kid(), &key.public())],
        };
        let claims = json!({"sub": "u1", "iss": "https://id.example/local_X", "token_use": "access",
                            "iat": 1000, "exp": 4600})
        .as_object()
        .cloned()
        .unwrap();
        (key, jwks, claims)
    }

    fn expect(now: i64) -> Expect<'static> {
        Expect {
            issuer: "https://id.example/local_X",
            token_use: Some("access"),
            now,
            leeway: 5,
        }
    }

    #[test]
    fn minted_tokens_verify_and_carry_their_claims() {
        let (key, jwks, claims) = setup();
        let t = mint(&claims, &key);
        assert_eq!(verify(&t, &jwks, &expect(2000)).unwrap(), claims);
    }

    #[test]
    fn expiry_issuer_use_and_time_are_enforced() {
        let (key, jwks, claims) = setup();
        let t = mint(&claims, &key);
        assert!(verify(&t, &jwks, &expect(4605)).is_err(), "expired");
        assert!(verify(&t, &jwks, &expect(900)).is_err(), "issued in the future");
        let mut e = expect(2000);
        e.issuer = "https://evil/local_X";
        assert!(verify(&t, &jwks, &e).is_err());
        let mut e = expect(2000);
        e.token_use = Some("id");
        assert!(verify(&t, &jwks, &e).is_err());
    }

    #[test]
    fn tampering_unknown_keys_and_alg_confusion_are_rejected() {
        let (key, jwks, claims) = setup();
        let t = mint(&claims, &key);
        let parts: Vec<&str> = t.split('.').collect();
        // Change the payload, keep the signature.
        let mut forged = claims.clone();
        forged.insert("sub".into(), json!("admin"));
        let forged_payload = URL_SAFE_NO_PAD.encode(Value::Object(forged).to_string());
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert!(verify(&tampered, &jwks, &expect(2000)).is_err());
        // alg: none.
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"x"}"#);
        assert!(verify(&format!("{none_header}.{}.", parts[1]), &jwks, &expect(2000)).is_err());
        // A token from another key with the same kid text.
        let other = NodeSigningKey::from_seed(1, [6; 32]);
        let t2 = mint(&claims, &other);
        assert!(verify(&t2, &jwks, &expect(2000)).is_err(), "unknown kid");
        assert!(verify("a.b", &jwks, &expect(2000)).is_err());
        assert!(verify(&"a".repeat(MAX_TOKEN_BYTES + 1), &jwks, &expect(2000)).is_err());
    }
}
