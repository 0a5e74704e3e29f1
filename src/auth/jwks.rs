//! JSON Web Key Sets with Ed25519 keys in RFC 8037 form (`kty: OKP`,
//! `crv: Ed25519`), which standard JWT libraries verify EdDSA tokens with.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

/// One public key of the set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: always `OKP` (RFC 8037).
    pub kty: String,
    /// Curve: always `Ed25519`.
    pub crv: String,
    /// Algorithm: always `EdDSA`.
    pub alg: String,
    /// Key use: always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// Key id; matches the `kid` header of the tokens it verifies.
    pub kid: String,
    /// Base64url of the 32-byte public key.
    pub x: String,
}

/// The document served at `/{pool_id}/.well-known/jwks.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// Every key tokens of the cluster may be verified with (active and retiring).
    pub keys: Vec<Jwk>,
}

impl Jwk {
    /// The JWK of an Ed25519 public key.
    pub fn ed25519(kid: &str, public: &VerifyingKey) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            alg: "EdDSA".into(),
            use_: "sig".into(),
            kid: kid.into(),
            x: URL_SAFE_NO_PAD.encode(public.as_bytes()),
        }
    }

    /// The public key, if this JWK is a well-formed Ed25519 signing key.
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return None;
        }
        let bytes: [u8; 32] = URL_SAFE_NO_PAD.decode(&self.x).ok()?.try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok()
    }
}

impl Jwks {
    /// The key with `kid`, if present.
    pub fn find(&self, kid: &str) -> Option<VerifyingKey> {
        self.keys.iter().find(|k| k.kid == kid).and_then(Jwk::verifying_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::signing_key::NodeSigningKey;

    #[test]
    fn jwk_is_rfc8037_and_round_trips() {
        let k = NodeSigningKey::from_seed(1, [9; 32]);
        let jwk = Jwk::ed25519(k.kid(), &k.public());
        let json = serde_json::to_value(&jwk).unwrap();
        assert_eq!(json["kty"], "OKP");
        assert_eq!(json["crv"], "Ed25519");
        assert_eq!(json["alg"], "EdDSA");
        assert_eq!(json["use"], "sig");
        assert_eq!(
            json["x"].as_str().unwrap().len(),
            43,
            "32 bytes, base64url without padding"
        );
        let set = Jwks { keys: vec![jwk] };
        assert_eq!(set.find(k.kid()), Some(k.public()));
        assert_eq!(set.find("other"), None);
    }
}
