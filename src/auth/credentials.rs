//! Credentials of identity-pool identities: an EdDSA-signed credentials
//! token that carries the identity, its role and the role's policy, and
//! the offline check that resource servers run on it.
//!
//! Cognito hands out AWS credentials (an access key id, a secret key and a
//! session token) that AWS services check against IAM. Tessera keeps that
//! shape, but the session token is self-contained: a resource server that
//! has the cluster's JWKS verifies it and evaluates its policy with no
//! network call ([`CredentialsVerifier`]), the same way it verifies
//! access tokens with `TokenVerifier`. A role change therefore reaches
//! credentials when they are next issued (at most their lifetime, 1 h by
//! default), as with AWS's own session credentials.
//!
//! ```no_run
//! # fn demo(jwks: &tessera::auth::jwks::Jwks, token: &str) -> Result<(), tessera::auth::AuthError> {
//! use tessera::auth::credentials::CredentialsVerifier;
//! let v = CredentialsVerifier::new("https://id.example.com", jwks);
//! let creds = v.verify(token, tessera::clock::now_millis() / 1000)?;
//! let decision = creds.authorize("s3:GetObject", &format!("user-data/{}/photo.jpg", creds.identity_id));
//! assert!(decision.allowed);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::jwks::Jwks;
use super::jwt::{self, Claims, Expect};
use super::signing_key::NodeSigningKey;
use super::verifier::DEFAULT_LEEWAY_SECS;
use super::AuthError;
use crate::model::policy::{CompiledPolicy, Decision, PolicyContext, PolicyDocument};

/// `token_use` of a credentials token.
pub const TOKEN_USE: &str = "credentials";
/// Shortest lifetime of credentials (AWS's floor for session credentials).
pub const MIN_DURATION_SECS: i64 = 900;
/// Default lifetime of credentials.
pub const DEFAULT_DURATION_SECS: i64 = 3600;
/// Longest lifetime of credentials.
pub const MAX_DURATION_SECS: i64 = 12 * 3600;

/// What a credentials token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsGrant<'a> {
    /// `{public_url}`: the issuer is `{public_url}/{identity_pool_id}`.
    pub public_url: &'a str,
    /// The identity pool.
    pub identity_pool_id: &'a str,
    /// The identity.
    pub identity_id: &'a str,
    /// The role's name.
    pub role_name: &'a str,
    /// The role's policy, canonical JSON.
    pub policy_document: &'a str,
    /// `authenticated` or `unauthenticated`, then the login providers.
    pub amr: &'a [String],
    /// The user-pool user's `sub` and username, when the identity signed
    /// in through a user pool (for `${user.sub}` and `${user.username}`).
    pub user: Option<(&'a str, &'a str)>,
    /// Issue time, seconds.
    pub now: i64,
    /// Lifetime, seconds.
    pub duration_secs: i64,
    /// The credentials' id (the access key id): unique, safe to log.
    pub access_key_id: &'a str,
}

/// The access key id of new credentials: `TSIA` and 16 random
/// upper-case alphanumerics, in the shape of AWS's `ASIA...` ids.
pub fn new_access_key_id(random: [u8; 16]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let tail: String = random
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!("TSIA{tail}")
}

/// The secret key of credentials: HMAC-SHA256 of the access key id under
/// the cluster's sealing key. Every node can derive it again (to check a
/// request signed with it) and nobody else can; it is never stored.
pub fn secret_key(sealing_key: &[u8; 32], access_key_id: &str) -> String {
    use base64::Engine;
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(sealing_key) else {
        return String::new();
    };
    mac.update(b"tessera credentials secret v1\0");
    mac.update(access_key_id.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&mac.finalize().into_bytes()[..30])
}

/// Signs a credentials token for `grant`. Fails only if the policy is not
/// valid JSON (it was validated when the role was written).
pub fn mint(grant: &CredentialsGrant<'_>, key: &NodeSigningKey) -> Result<String, AuthError> {
    let policy: Value = serde_json::from_str(grant.policy_document)
        .map_err(|_| AuthError::InvalidToken("the role's policy is not JSON"))?;
    let mut c = Claims::new();
    c.insert(
        "iss".into(),
        json!(format!("{}/{}", grant.public_url, grant.identity_pool_id)),
    );
    c.insert("sub".into(), json!(grant.identity_id));
    c.insert("aud".into(), json!(grant.identity_pool_id));
    c.insert("token_use".into(), json!(TOKEN_USE));
    c.insert("jti".into(), json!(grant.access_key_id));
    c.insert("iat".into(), json!(grant.now));
    c.insert("exp".into(), json!(grant.now + grant.duration_secs));
    c.insert("amr".into(), json!(grant.amr));
    c.insert("role".into(), json!(grant.role_name));
    c.insert("role_arn".into(), json!(crate::model::role::role_arn(grant.role_name)));
    c.insert("policy".into(), policy);
    if let Some((sub, username)) = grant.user {
        c.insert("user_sub".into(), json!(sub));
        c.insert("username".into(), json!(username));
    }
    Ok(jwt::mint(&c, key))
}

/// Verified credentials, ready to answer decisions.
#[derive(Debug, Clone)]
pub struct VerifiedCredentials {
    /// The identity pool.
    pub identity_pool_id: String,
    /// The identity.
    pub identity_id: String,
    /// The role's canonical ARN.
    pub role_arn: String,
    /// The access key id.
    pub access_key_id: String,
    /// Expiry, seconds.
    pub expires_at: i64,
    /// The user-pool user's `sub`, if any.
    pub user_sub: Option<String>,
    /// The user-pool user's username, if any.
    pub username: Option<String>,
    policy: CompiledPolicy,
}

impl VerifiedCredentials {
    /// Whether the role allows `action` on `resource`, and which statement
    /// decided. Explicit Deny wins; no matching Allow is a deny.
    pub fn authorize(&self, action: &str, resource: &str) -> Decision<'_> {
        let ctx = PolicyContext {
            identity_id: &self.identity_id,
            user_sub: self.user_sub.as_deref(),
            username: self.username.as_deref(),
        };
        self.policy.evaluate(action, resource, &ctx)
    }
}

/// Verifies credentials tokens of one cluster against its published keys.
#[derive(Debug, Clone)]
pub struct CredentialsVerifier {
    public_url: String,
    keys: BTreeMap<String, VerifyingKey>,
    leeway: i64,
}

impl CredentialsVerifier {
    /// A verifier for credentials issued under `public_url` (any identity
    /// pool of the cluster) and signed by a key in `jwks`.
    pub fn new(public_url: &str, jwks: &Jwks) -> Self {
        CredentialsVerifier {
            public_url: public_url.trim_end_matches('/').to_string(),
            keys: jwks
                .keys
                .iter()
                .filter_map(|k| Some((k.kid.clone(), k.verifying_key()?)))
                .collect(),
            leeway: DEFAULT_LEEWAY_SECS,
        }
    }

    /// A verifier over already decoded keys (what the server keeps).
    pub fn with_keys(public_url: &str, keys: BTreeMap<String, VerifyingKey>) -> Self {
        CredentialsVerifier {
            public_url: public_url.trim_end_matches('/').to_string(),
            keys,
            leeway: DEFAULT_LEEWAY_SECS,
        }
    }

    /// Checks the signature, issuer, expiry and shape of a credentials
    /// token, and compiles its policy. `now` is in seconds.
    pub fn verify(&self, token: &str, now: i64) -> Result<VerifiedCredentials, AuthError> {
        let claims = verify_claims(token, &self.keys, &self.public_url, now, self.leeway)?;
        from_claims(&claims)
    }
}

/// Verifies a credentials token's signature and claims against `keys`.
pub fn verify_claims(
    token: &str,
    keys: &impl jwt::KeyLookup,
    public_url: &str,
    now: i64,
    leeway: i64,
) -> Result<Claims, AuthError> {
    // The issuer names the identity pool; read it first to know what to
    // expect, then let the signature check vouch for it.
    let (_, issuer) = super::verifier::peek_kid_and_issuer(token).ok_or(AuthError::InvalidToken("malformed token"))?;
    let pool_id = issuer
        .strip_prefix(public_url)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or(AuthError::InvalidToken("credentials of another issuer"))?;
    crate::model::identity_pool::validate_identity_id("identity_pool_id", pool_id)
        .map_err(|_| AuthError::InvalidToken("credentials of another issuer"))?;
    let expect = Expect {
        issuer: &issuer,
        token_use: Some(TOKEN_USE),
        now,
        leeway,
    };
    let claims = jwt::verify(token, keys, &expect)?;
    if claims.get("aud").and_then(Value::as_str) != Some(pool_id) {
        return Err(AuthError::InvalidToken("credentials for another identity pool"));
    }
    Ok(claims)
}

/// The verified credentials of checked `claims`.
pub fn from_claims(claims: &Claims) -> Result<VerifiedCredentials, AuthError> {
    let s = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
    let policy_json = claims
        .get("policy")
        .ok_or(AuthError::InvalidToken("credentials without a policy"))?
        .to_string();
    let doc = PolicyDocument::from_json(&policy_json)
        .map_err(|_| AuthError::InvalidToken("credentials with a malformed policy"))?;
    Ok(VerifiedCredentials {
        identity_pool_id: s("aud").unwrap_or_default(),
        identity_id: s("sub").ok_or(AuthError::InvalidToken("credentials without an identity"))?,
        role_arn: s("role_arn").unwrap_or_default(),
        access_key_id: s("jti").unwrap_or_default(),
        expires_at: claims.get("exp").and_then(Value::as_i64).unwrap_or(0),
        user_sub: s("user_sub"),
        username: s("username"),
        policy: doc.compile(),
    })
}
