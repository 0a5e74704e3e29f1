//! Minting and checking this cluster's tokens: Cognito's id and access
//! tokens, refresh tokens, and the short-lived session tokens of auth
//! challenges. All are EdDSA JWTs signed with the node's own key, so any
//! node verifies any node's tokens from the replicated key set, and a
//! sign-in or refresh needs no Raft round trip.
//!
//! Refresh tokens are JWTs too (`token_use: "refresh"`), opaque to clients.
//! They carry the family id (`origin_jti`) that every id and access token
//! minted from them repeats, which is what `RevokeToken` revokes, and the
//! millisecond issue time that `GlobalSignOut` compares against.

use std::sync::Arc;

use serde_json::{json, Value};

use super::keys::KeyService;
use super::ServiceError;
use crate::auth::claims::{access_token_claims, id_token_claims, ClaimOverrides, TokenContext};
use crate::auth::jwt::{self, Claims, Expect, MAX_TOKEN_BYTES};
use crate::model::app_client::AppClient;
use crate::model::pool::{validate_pool_id, UserPool};
use crate::model::user::User;
use crate::raft::RaftNode;

/// Clock skew tolerated between nodes when checking `exp` and `iat`
/// (revocation uses `tokens.clock_skew_ms`, see [`TokenService::is_revoked`]).
pub const LEEWAY_SECS: i64 = 5;
/// Lifetime of a challenge session (Cognito: 3 minutes).
pub const SESSION_SECS: i64 = 180;

/// Tokens handed to a client after authentication.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    /// Signed access token (JWT).
    pub access_token: String,
    /// Signed id token (JWT).
    pub id_token: String,
    /// Only on a password sign-in; a refresh keeps its refresh token.
    pub refresh_token: Option<String>,
    /// Seconds the access token is valid.
    pub expires_in: u32,
    /// A sign-in on a device the pool does not know yet, where the pool
    /// tracks devices: `(device_key, device_group_key)` to confirm it with.
    pub new_device: Option<(String, String)>,
}

/// What new tokens descend from: the token family of a refresh (`None`
/// starts a new family, with a refresh token) and the device they are
/// issued to (`None`: no tracked device).
#[derive(Debug, Clone, Copy, Default)]
pub struct Lineage<'a> {
    /// The `origin_jti` of the refresh token being used.
    pub origin: Option<&'a str>,
    /// The `device_key` the tokens carry.
    pub device_key: Option<&'a str>,
    /// The id of the new family, when the caller chose it (an OAuth code
    /// records it before the tokens exist); random when `None`.
    pub family: Option<&'a str>,
    /// Tokens of an OAuth grant: their scopes and nonce.
    pub oauth: Option<OAuthGrant<'a>>,
}

/// What an OAuth authorization adds to a user's tokens: the access token's
/// `scope` is the granted scopes (then the group permissions), the id
/// token carries the request's `nonce` and is minted only with `openid`,
/// and the refresh token remembers the scopes for its refreshes.
#[derive(Debug, Clone, Copy)]
pub struct OAuthGrant<'a> {
    /// The granted scopes.
    pub scopes: &'a [String],
    /// The authorization request's `nonce`.
    pub nonce: Option<&'a str>,
}

/// A user's groups as tokens carry them.
#[derive(Debug, Clone, Default)]
pub struct Memberships {
    /// Group names, by precedence.
    pub names: Vec<String>,
    /// The groups' role ARNs, by precedence.
    pub roles: Vec<String>,
    /// The permissions the groups grant, sorted and deduplicated.
    pub permissions: Vec<String>,
}

/// A verified token and the pool it belongs to.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The pool whose issuer the token carries.
    pub pool_id: String,
    /// Its verified claims.
    pub claims: Claims,
}

impl Verified {
    /// The string claim `name`; empty when absent or not a string.
    pub fn str(&self, name: &str) -> &str {
        self.claims.get(name).and_then(Value::as_str).unwrap_or("")
    }

    /// The integer claim `name`; 0 when absent or not an integer.
    pub fn int(&self, name: &str) -> i64 {
        self.claims.get(name).and_then(Value::as_i64).unwrap_or(0)
    }
}

/// Mints and verifies tokens on this node.
#[derive(Clone)]
pub struct TokenService {
    node: Arc<RaftNode>,
    keys: KeyService,
}

fn invalid(what: &str) -> ServiceError {
    ServiceError::not_authorized(format!("Invalid {what}."))
}

impl TokenService {
    /// The token service of `node`, signing and verifying with `keys`.
    pub fn new(node: Arc<RaftNode>, keys: KeyService) -> Self {
        TokenService { node, keys }
    }

    /// `{public_url}/{pool_id}`.
    pub fn issuer(&self, pool_id: &str) -> Result<String, ServiceError> {
        self.keys.issuer(pool_id)
    }

    /// Mints id and access tokens (and a refresh token when `origin` is
    /// `None`, starting a new family) for `user` through `client`.
    pub fn mint(
        &self,
        pool: &UserPool,
        client: &AppClient,
        user: &User,
        auth_time: i64,
        lineage: Lineage<'_>,
    ) -> Result<IssuedTokens, ServiceError> {
        self.mint_with(pool, client, user, auth_time, lineage, &ClaimOverrides::default())
    }

    /// The user's groups as tokens name them (by precedence), their roles,
    /// and the permissions they grant, as applied on this node now.
    pub fn memberships(&self, pool_id: &str, sub: &str) -> Result<Memberships, ServiceError> {
        let groups = self.node.store().groups_of(pool_id, sub)?;
        Ok(Memberships {
            names: groups.iter().map(|g| g.name.clone()).collect(),
            roles: groups
                .iter()
                .filter(|g| !g.role_arn.is_empty())
                .map(|g| g.role_arn.clone())
                .collect(),
            permissions: groups
                .iter()
                .flat_map(|g| g.permissions.iter().cloned())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
        })
    }

    /// [`mint`](Self::mint), with the changes a `PreTokenGeneration`
    /// trigger asked for applied to both claim sets before signing.
    pub fn mint_with(
        &self,
        pool: &UserPool,
        client: &AppClient,
        user: &User,
        auth_time: i64,
        lineage: Lineage<'_>,
        overrides: &ClaimOverrides,
    ) -> Result<IssuedTokens, ServiceError> {
        let Lineage {
            origin,
            device_key,
            family,
            oauth,
        } = lineage;
        let issuer = self.issuer(&pool.id)?;
        let key = self.keys.published_signing_key()?;
        let now_ms = crate::clock::now_millis();
        let now = now_ms / 1000;
        // This node has applied every revocation in `user`, so the tokens
        // it mints now come after them; date them past the skew window of
        // `is_revoked` so that they are not caught by it.
        let skew = self.keys.clock_skew_ms();
        let iat_ms = [user.tokens_revoked_before_ms, user.refresh_revoked_before_ms]
            .into_iter()
            .filter(|t| *t > 0)
            .map(|t| t.saturating_add(skew).saturating_add(1))
            .fold(now_ms, i64::max);
        let new_origin;
        let origin_jti = match (origin, family) {
            (Some(o), _) | (None, Some(o)) => o,
            (None, None) => {
                new_origin = crate::clock::new_uuid().to_string();
                &new_origin
            }
        };
        let id_jti = crate::clock::new_uuid().to_string();
        let access_jti = crate::clock::new_uuid().to_string();
        let v = client.token_validity;
        // Membership as applied on this node now: a change applies to the
        // next token minted, as in Cognito.
        let Memberships {
            names,
            roles,
            permissions,
        } = self.memberships(&pool.id, &user.sub)?;
        let ctx = TokenContext {
            issuer: &issuer,
            client_id: &client.client_id,
            auth_time,
            now,
            id_token_secs: v.id_token_secs,
            access_token_secs: v.access_token_secs,
            id_jti: &id_jti,
            access_jti: &access_jti,
            origin_jti,
            groups: &names,
            roles: &roles,
            permissions: &permissions,
            readable: client.read_attributes.as_ref(),
        };
        let refresh_token = match origin {
            Some(_) => None,
            None => {
                let mut c = Claims::new();
                c.insert("iss".into(), json!(issuer));
                c.insert("sub".into(), json!(user.sub));
                c.insert("client_id".into(), json!(client.client_id));
                c.insert("token_use".into(), json!("refresh"));
                c.insert("origin_jti".into(), json!(origin_jti));
                c.insert("auth_time".into(), json!(auth_time));
                c.insert("iat".into(), json!(now));
                c.insert("iat_ms".into(), json!(iat_ms));
                c.insert("exp".into(), json!(now + i64::from(v.refresh_token_secs)));
                c.insert("jti".into(), json!(crate::clock::new_uuid().to_string()));
                // ForgetDevice ends the refresh tokens of its device.
                if let Some(d) = device_key {
                    c.insert("device_key".into(), json!(d));
                }
                if let Some(g) = oauth {
                    c.insert("scope".into(), json!(g.scopes.join(" ")));
                }
                Some(jwt::mint(&c, &key))
            }
        };
        let mut access = access_token_claims(user, &ctx);
        access.insert("iat_ms".into(), json!(iat_ms));
        if let Some(d) = device_key {
            access.insert("device_key".into(), json!(d));
        }
        let mut id = id_token_claims(user, &ctx);
        id.insert("iat_ms".into(), json!(iat_ms));
        if let Some(g) = oauth {
            let mut scope: Vec<&str> = g.scopes.iter().map(String::as_str).collect();
            for p in &permissions {
                if !scope.contains(&p.as_str()) {
                    scope.push(p.as_str());
                }
            }
            access.insert("scope".into(), json!(scope.join(" ")));
            if let Some(n) = g.nonce {
                id.insert("nonce".into(), json!(n));
            }
        }
        // Cognito's `identities` claim: the external identities the user
        // signs in with (a federated user's own, or linked ones).
        let links = self.node.store().user_links(&pool.id, &user.sub)?;
        if !links.is_empty() {
            let identities: Vec<Value> = links
                .iter()
                .map(|l| {
                    let provider = self
                        .node
                        .store()
                        .identity_provider(&pool.id, &l.provider_name)
                        .ok()
                        .flatten();
                    json!({
                        "userId": l.subject,
                        "providerName": l.provider_name,
                        "providerType": provider.as_ref().map(|p| p.provider_type.as_str()),
                        "issuer": provider.as_ref().map(|p| p.issuer()),
                        "primary": (user.status == crate::model::user::UserStatus::ExternalProvider).to_string(),
                        "dateCreated": l.linked_at.to_string(),
                    })
                })
                .collect();
            id.insert("identities".into(), Value::Array(identities));
        }
        overrides.apply(&mut id, &mut access).map_err(|why| {
            ServiceError::new(
                super::ErrorKind::FailedPrecondition,
                "UserLambdaValidationException",
                format!("PreTokenGeneration failed with error invalid answer: {why}."),
            )
        })?;
        // An OAuth grant without `openid` gets no id token (OpenID
        // Connect Core §3.1.2.1; Cognito answers the same).
        let wants_id = oauth.is_none_or(|g| g.scopes.iter().any(|s| s == "openid"));
        let access_token = jwt::mint(&access, &key);
        let id_token = if wants_id { jwt::mint(&id, &key) } else { String::new() };
        if access_token.len() > MAX_TOKEN_BYTES || id_token.len() > MAX_TOKEN_BYTES {
            // Only added claims can make a token this large; one that no
            // node would accept back must not be handed out.
            return Err(ServiceError::new(
                super::ErrorKind::FailedPrecondition,
                "UserLambdaValidationException",
                format!("PreTokenGeneration failed with error the tokens would exceed {MAX_TOKEN_BYTES} bytes."),
            ));
        }
        Ok(IssuedTokens {
            access_token,
            id_token,
            refresh_token,
            expires_in: v.access_token_secs,
            new_device: None,
        })
    }

    /// A client-credentials access token: Cognito's machine-to-machine
    /// shape, with `sub` and `client_id` both the client, the granted
    /// `scope`, and no user claims (no `username`, no `origin_jti`), so
    /// that no call made for a user accepts it (`flows::session`).
    pub fn mint_client_token(
        &self,
        pool_id: &str,
        client_id: &str,
        scope: &str,
        lifetime_secs: u32,
    ) -> Result<String, ServiceError> {
        let now = crate::clock::now_millis() / 1000;
        let mut c = Claims::new();
        c.insert("sub".into(), json!(client_id));
        c.insert("token_use".into(), json!("access"));
        c.insert("scope".into(), json!(scope));
        c.insert("auth_time".into(), json!(now));
        c.insert("iss".into(), json!(self.issuer(pool_id)?));
        c.insert("exp".into(), json!(now + i64::from(lifetime_secs)));
        c.insert("iat".into(), json!(now));
        c.insert("version".into(), json!(2));
        c.insert("jti".into(), json!(crate::clock::new_uuid().to_string()));
        c.insert("client_id".into(), json!(client_id));
        let key = self.keys.published_signing_key()?;
        Ok(jwt::mint(&c, &key))
    }

    /// A session token for an auth challenge, bound to user, client and
    /// challenge, valid for 3 minutes.
    pub fn mint_session(
        &self,
        pool_id: &str,
        client_id: &str,
        sub: &str,
        challenge: &str,
    ) -> Result<String, ServiceError> {
        self.mint_challenge_session(pool_id, client_id, sub, challenge, SESSION_SECS, &[])
    }

    /// A session token for an auth challenge, bound to user, client and
    /// challenge, valid for `lifetime_secs`, carrying the string claims
    /// `extra` (the MFA challenges bind their sessions to the user's
    /// credentials this way; see `service::flows::mfa`). Like every token,
    /// it is signed with this node's key, so any node can check it.
    pub fn mint_challenge_session(
        &self,
        pool_id: &str,
        client_id: &str,
        sub: &str,
        challenge: &str,
        lifetime_secs: i64,
        extra: &[(&str, &str)],
    ) -> Result<String, ServiceError> {
        let now = crate::clock::now_millis() / 1000;
        let mut c = Claims::new();
        c.insert("iss".into(), json!(self.issuer(pool_id)?));
        c.insert("sub".into(), json!(sub));
        c.insert("client_id".into(), json!(client_id));
        c.insert("token_use".into(), json!("session"));
        c.insert("challenge".into(), json!(challenge));
        c.insert("iat".into(), json!(now));
        c.insert("exp".into(), json!(now + lifetime_secs));
        c.insert("jti".into(), json!(crate::clock::new_uuid().to_string()));
        for (k, v) in extra {
            c.insert((*k).to_string(), json!(v));
        }
        let key = self.keys.published_signing_key()?;
        Ok(jwt::mint(&c, &key))
    }

    /// Verifies a token of this cluster with the given `token_use`, and
    /// returns its pool and claims. The pool is read from the unverified
    /// `iss` only to pick the expected issuer; the signature and the exact
    /// issuer are then checked.
    pub async fn verify(&self, token: &str, token_use: &str) -> Result<Verified, ServiceError> {
        let what = match token_use {
            "access" => "Access Token",
            "refresh" => "Refresh Token",
            "session" => "session for the user, session is expired",
            _ => "token",
        };
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(invalid(what));
        }
        let (_, pool_id) = peek(token).ok_or_else(|| invalid(what))?;
        validate_pool_id(&pool_id).map_err(|_| invalid(what))?;
        let issuer = self.issuer(&pool_id)?;
        let claims = self
            .verify_issued(token, token_use, &issuer)
            .await
            .map_err(|e| match e.kind {
                crate::service::ErrorKind::NotAuthorized => invalid(what),
                _ => e,
            })?;
        Ok(Verified { pool_id, claims })
    }

    /// Verifies a token of this cluster that must carry `issuer` and
    /// `token_use`: the signature against a key that verified at the
    /// token's time, `exp` and `iat` with the cluster's leeway, and that a
    /// retiring key did not sign it after it stopped signing. Any failure
    /// is `NotAuthorizedException` (the reason goes to the debug log, never
    /// the token).
    pub async fn verify_issued(&self, token: &str, token_use: &str, issuer: &str) -> Result<Claims, ServiceError> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("token"));
        }
        let (kid, _) = crate::auth::verifier::peek_kid_and_issuer(token).ok_or_else(|| invalid("token"))?;
        let keys = self.keys.keys_for(&kid).await?;
        let now_ms = crate::clock::now_millis();
        let expect = Expect {
            issuer,
            token_use: Some(token_use),
            now: now_ms / 1000,
            leeway: LEEWAY_SECS,
        };
        // Retired keys are not in the set, and a retiring key is missing
        // from `at(now)` once its retirement time has passed.
        let claims = jwt::verify(token, &keys.at(now_ms), &expect).map_err(|e| {
            tracing::debug!(error = %e, token_use, "token refused");
            invalid("token")
        })?;
        // A retiring key signs nothing any more: a token it signed after it
        // stopped (a removed node still running) is refused. `iat` is the
        // signer's clock in whole seconds, so allow the skew between nodes.
        if let Some(stopped) = keys.get(&kid).and_then(|e| e.stopped_signing_at) {
            let iat_ms = claims
                .get("iat")
                .and_then(Value::as_i64)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000);
            if iat_ms > stopped.saturating_add(self.keys.clock_skew_ms()) {
                tracing::debug!(kid, token_use, "token signed after its key stopped signing");
                return Err(invalid("token"));
            }
        }
        Ok(claims)
    }

    /// Whether tokens with these claims were revoked: their family by
    /// `RevokeToken`, or everything the user held by `GlobalSignOut`.
    ///
    /// The rule, with `skew` = `tokens.clock_skew_ms`: a token is revoked
    /// when `iat_ms <= revoked_before_ms + skew`. `iat_ms` is read on the
    /// clock of the node that minted the token, `revoked_before_ms` on the
    /// clock of the node that took the sign-out, and they may differ by up
    /// to `skew`, so a token minted up to `skew` *before* a sign-out may
    /// carry a later time; it still counts as revoked (the safe side). A
    /// token without `iat_ms` uses `iat` (whole seconds). [`Self::mint`]
    /// dates the tokens of a user it knows was signed out past this bound,
    /// so a sign-in after the sign-out is not caught by it.
    pub fn is_revoked(&self, v: &Verified, user: &User) -> Result<bool, ServiceError> {
        if self.node.store().is_revoked(&v.pool_id, v.str("origin_jti"))? {
            return Ok(true);
        }
        let issued_ms = match v.claims.get("iat_ms").and_then(Value::as_i64) {
            Some(ms) => ms,
            None => v.int("iat").saturating_mul(1000),
        };
        let skew = self.keys.clock_skew_ms();
        let covers = |before: i64| before > 0 && issued_ms <= before.saturating_add(skew);
        if covers(user.tokens_revoked_before_ms) {
            return Ok(true);
        }
        // Password changes, resets and disabling end refresh tokens only.
        Ok(v.str("token_use") == "refresh" && covers(user.refresh_revoked_before_ms))
    }
}

/// The `kid` and the pool id (the last path segment of `iss`) of a token,
/// read without verifying it.
fn peek(token: &str) -> Option<(String, String)> {
    let (kid, iss) = crate::auth::verifier::peek_kid_and_issuer(token)?;
    Some((kid, iss.rsplit('/').next()?.to_string()))
}
