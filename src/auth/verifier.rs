//! Offline verification of this cluster's tokens, for resource servers: an
//! API that receives a Tessera access or id token checks it with nothing
//! but the pool's JWKS and issuer, fetched once and refreshed when an
//! unknown `kid` shows up (after a key rotation).
//!
//! ```no_run
//! # fn demo(jwks: &tessera::auth::jwks::Jwks, token: &str) -> Result<(), tessera::auth::AuthError> {
//! use tessera::auth::verifier::TokenVerifier;
//! let v = TokenVerifier::new("https://id.example.com/local_AbC123", jwks);
//! let claims = v.verify_access(token, tessera::clock::now_millis() / 1000)?;
//! println!("user {}", claims["username"]);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use serde_json::Value;

use super::jwks::Jwks;
use super::jwt::{verify, Claims, Expect};
use super::AuthError;

/// Seconds of clock skew tolerated on `exp` and `iat`.
pub const DEFAULT_LEEWAY_SECS: i64 = 5;

/// Verifies tokens of one pool against its published keys.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    issuer: String,
    keys: BTreeMap<String, VerifyingKey>,
    leeway: i64,
}

impl TokenVerifier {
    /// A verifier for tokens issued by `issuer` (`{public_url}/{pool_id}`)
    /// and signed by a key in `jwks`. Malformed keys are skipped.
    pub fn new(issuer: &str, jwks: &Jwks) -> Self {
        TokenVerifier {
            issuer: issuer.to_string(),
            keys: jwks
                .keys
                .iter()
                .filter_map(|k| Some((k.kid.clone(), k.verifying_key()?)))
                .collect(),
            leeway: DEFAULT_LEEWAY_SECS,
        }
    }

    /// Whether the key set knows `kid` (else refetch the JWKS).
    pub fn knows(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Whether verified access-token `claims` grant `permission`: the
    /// offline twin of `Auth/CheckPermission`. It reads the `scope` the
    /// token was minted with (group permissions at sign-in or refresh), so
    /// a membership change shows once the token is refreshed; ask
    /// `CheckPermission` for the live answer.
    pub fn has_permission(claims: &Claims, permission: &str) -> bool {
        super::claims::scope_grants(claims, permission)
    }

    /// Verifies an access token at `now` (Unix seconds) and returns its
    /// claims.
    pub fn verify_access(&self, token: &str, now: i64) -> Result<Claims, AuthError> {
        self.verify(token, "access", now)
    }

    /// Verifies an id token meant for app client `client_id`.
    pub fn verify_id(&self, token: &str, client_id: &str, now: i64) -> Result<Claims, AuthError> {
        let claims = self.verify(token, "id", now)?;
        if claims.get("aud").and_then(Value::as_str) != Some(client_id) {
            return Err(AuthError::InvalidToken("token is for another app client"));
        }
        Ok(claims)
    }

    /// Verifies a token with the given `token_use` ("access" or "id").
    pub fn verify(&self, token: &str, token_use: &str, now: i64) -> Result<Claims, AuthError> {
        verify(
            token,
            &self.keys,
            &Expect {
                issuer: &self.issuer,
                token_use: Some(token_use),
                now,
                leeway: self.leeway,
            },
        )
    }
}

/// The `kid` and `iss` of a token, read without verifying it: enough to
/// know which pool's JWKS to fetch. Never trust them before [`verify`].
pub fn peek_kid_and_issuer(token: &str) -> Option<(String, String)> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut parts = token.split('.');
    let header: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next()?).ok()?).ok()?;
    let payload: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next()?).ok()?).ok()?;
    Some((
        header.get("kid")?.as_str()?.to_string(),
        payload.get("iss")?.as_str()?.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwks::Jwk;
    use crate::auth::jwt::mint;
    use crate::auth::signing_key::NodeSigningKey;
    use serde_json::json;

    #[test]
    fn verifies_offline_with_only_the_jwks() {
        let key = NodeSigningKey::from_seed(2, [4; 32]);
        let jwks = Jwks {
            keys: vec![Jwk::ed25519(key.kid(), &key.public())],
        };
        let iss = "http://127.0.0.1:7700/local_X";
        let v = TokenVerifier::new(iss, &jwks);
        let access = json!({"iss": iss, "token_use": "access", "iat": 100, "exp": 200, "username": "a"});
        let t = mint(access.as_object().unwrap(), &key);
        assert_eq!(v.verify_access(&t, 150).unwrap()["username"], "a");
        assert!(v.verify_access(&t, 300).is_err(), "expired");
        assert!(v.verify(&t, "id", 150).is_err(), "wrong token_use");
        let id = json!({"iss": iss, "token_use": "id", "aud": "c1", "iat": 100, "exp": 200});
        let t = mint(id.as_object().unwrap(), &key);
        assert!(v.verify_id(&t, "c1", 150).is_ok());
        assert!(v.verify_id(&t, "c2", 150).is_err());
        let (kid, issuer) = peek_kid_and_issuer(&t).unwrap();
        assert!(v.knows(&kid));
        assert_eq!(issuer, iss);
        assert!(TokenVerifier::new("http://other/local_X", &jwks)
            .verify_id(&t, "c1", 150)
            .is_err());
    }
}
