//! Tokens: the JWTs every api call and resource server verifies, checked
//! against the fuzz harness's own key set, issuer and clock.

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::auth::jwks::{Jwk, Jwks};
use crate::auth::jwt::{self, Expect};
use crate::auth::signing_key::NodeSigningKey;
use crate::auth::verifier::{peek_kid_and_issuer, TokenVerifier};

use super::Seeds;

/// The issuer the fuzzed tokens are checked against.
pub const FUZZ_ISSUER: &str = "http://127.0.0.1:7700/local_fuzz";
/// "Now" for the fuzzed tokens, Unix seconds.
pub const FUZZ_NOW: i64 = 1_700_000_000;

/// The fuzz harness's signing key (a fixed seed, known to the corpus).
pub fn fuzz_signing_key() -> &'static NodeSigningKey {
    static KEY: OnceLock<NodeSigningKey> = OnceLock::new();
    KEY.get_or_init(|| NodeSigningKey::from_seed(1, [7; 32]))
}

pub(super) fn fuzz_jwks() -> &'static Jwks {
    static JWKS: OnceLock<Jwks> = OnceLock::new();
    JWKS.get_or_init(|| {
        let key = fuzz_signing_key();
        let other = NodeSigningKey::from_seed(2, [8; 32]);
        Jwks {
            keys: vec![
                Jwk::ed25519(key.kid(), &key.public()),
                Jwk::ed25519(other.kid(), &other.public()),
            ],
        }
    })
}

/// Signs `header.payload` (raw JSON bytes, base64url-encoded here) with
/// the harness key: how the `jwt` target reaches the claim checks that
/// follow the signature check.
pub fn sign_raw(header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let sig = fuzz_signing_key().sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Token parsing and verification (`auth::jwt::verify`, the
/// `TokenVerifier` of resource servers, `peek_kid_and_issuer`).
///
/// The first byte picks the mode: even, the rest is a compact token as a
/// client presents it; odd, the rest is `header JSON \n payload JSON`,
/// which the harness signs with a key of the JWKS, so that the checks
/// after the signature (alg, kid, exp, iat, iss, token_use, aud) get fuzzed
/// too. A token that verifies must satisfy every expectation.
pub fn jwt(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode & 1 == 1 {
        let (h, p) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        };
        sign_raw(h, p)
    } else {
        match std::str::from_utf8(rest) {
            Ok(s) => s.to_string(),
            Err(_) => return,
        }
    };
    let jwks = fuzz_jwks();
    let leeway = i64::from(mode >> 4);
    for token_use in [Some("access"), Some("id"), None] {
        let expect = Expect {
            issuer: FUZZ_ISSUER,
            token_use,
            now: FUZZ_NOW,
            leeway,
        };
        if let Ok(claims) = jwt::verify(&token, jwks, &expect) {
            assert!(token.len() <= jwt::MAX_TOKEN_BYTES);
            assert_eq!(claims.get("iss").and_then(|v| v.as_str()), Some(FUZZ_ISSUER));
            let exp = claims
                .get("exp")
                .and_then(|v| v.as_i64())
                .expect("verified without exp");
            assert!(exp > FUZZ_NOW - leeway, "verified an expired token: exp {exp}");
            if let Some(iat) = claims.get("iat").and_then(|v| v.as_i64()) {
                assert!(iat <= FUZZ_NOW + leeway, "verified a token from the future: iat {iat}");
            }
            if let Some(want) = token_use {
                assert_eq!(claims.get("token_use").and_then(|v| v.as_str()), Some(want));
            }
            let header: serde_json::Value = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(token.split('.').next().unwrap_or(""))
                    .expect("verified a token whose header is not base64url"),
            )
            .expect("verified a token whose header is not JSON");
            assert_eq!(header["alg"], "EdDSA");
        }
    }
    let v = TokenVerifier::new(FUZZ_ISSUER, jwks);
    let _ = v.verify_access(&token, FUZZ_NOW);
    if let Ok(claims) = v.verify_id(&token, "fuzzclient", FUZZ_NOW) {
        assert_eq!(claims.get("aud").and_then(|v| v.as_str()), Some("fuzzclient"));
    }
    if let Some((kid, _iss)) = peek_kid_and_issuer(&token) {
        let _ = v.knows(&kid);
    }
}

pub(super) fn jwt_seeds(out: &mut Seeds) {
    let key = fuzz_signing_key();
    let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": key.kid()}).to_string();
    let claims = [
        serde_json::json!({"sub": "s1", "iss": FUZZ_ISSUER, "token_use": "access", "iat": FUZZ_NOW - 10,
                           "exp": FUZZ_NOW + 3600, "username": "alice", "scope": "aws.cognito.signin.user.admin",
                           "client_id": "fuzzclient", "jti": "j1"}),
        serde_json::json!({"sub": "s1", "iss": FUZZ_ISSUER, "token_use": "id", "aud": "fuzzclient",
                           "iat": FUZZ_NOW, "exp": FUZZ_NOW + 1, "email": "a@x.io", "cognito:groups": ["g"]}),
        serde_json::json!({"iss": FUZZ_ISSUER, "token_use": "refresh", "exp": 1.5e10}),
        serde_json::json!({"iss": "http://evil/local_fuzz", "exp": FUZZ_NOW + 5}),
    ];
    for c in &claims {
        let payload = c.to_string();
        // Mode 0: the token as a client presents it.
        let mut raw = vec![0u8];
        raw.extend_from_slice(sign_raw(header.as_bytes(), payload.as_bytes()).as_bytes());
        out.push(("jwt", raw.clone()));
        // Truncated signature, and an `alg: none` forgery.
        raw.truncate(raw.len() - 3);
        out.push(("jwt", raw));
        // Mode 1: header and payload JSON, signed by the harness.
        out.push((
            "jwt",
            [&[0x51u8][..], header.as_bytes(), b"\n", payload.as_bytes()].concat(),
        ));
    }
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"x"}"#),
        URL_SAFE_NO_PAD.encode(claims[0].to_string())
    );
    out.push(("jwt", [&[0u8][..], none.as_bytes()].concat()));
    out.push(("jwt", b"\0a.b.c.d".to_vec()));
    // Extreme times: exp + leeway and iat - leeway must not overflow.
    let extreme = format!(r#"{{"iss":"{FUZZ_ISSUER}","exp":{},"iat":{}}}"#, i64::MAX, i64::MIN);
    out.push((
        "jwt",
        [&[0x51u8][..], header.as_bytes(), b"\n", extreme.as_bytes()].concat(),
    ));
}
