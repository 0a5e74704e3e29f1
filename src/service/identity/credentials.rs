//! What an identity is handed: role-based credentials
//! (`GetCredentialsForIdentity`), OpenID tokens (`GetOpenIdToken`,
//! `GetOpenIdTokenForDeveloperIdentity`), and decisions (`Authorize`).
//!
//! # Choosing the role
//!
//! 1. A guest gets the pool's unauthenticated role, and nothing else.
//! 2. A user-pool user with a role of its own (`AdminSetUserRole`) gets it:
//!    it wins over every mapping.
//! 3. The role mapping of the login's provider, if any:
//!    * `Token`: the role of the user's group with the best precedence
//!      that has one. Groups are read live from the store, so a user
//!      removed from a group loses its role at the next credentials, not
//!      at the next sign-in.
//!    * `Rules`: the first rule whose claim matches.
//!    * nothing matched: the authenticated role, or a refusal, as
//!      `AmbiguousRoleResolution` says.
//! 4. Otherwise the pool's authenticated role.
//!
//! `custom_role_arn` is honoured only when the mapping offers that role
//! (one of the user's group roles, or a matching rule's role).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::identities::logins_dont_match;
use super::logins::VerifiedLogins;
use super::IdentityService;
use crate::auth::credentials::{self as creds, CredentialsGrant};
use crate::auth::jwt::{self, Claims};
use crate::model::group::precedence_order;
use crate::model::identity::Identity;
use crate::model::identity_pool::{AmbiguousRoleResolution, ClaimValue, IdentityPool, RoleMappingKind};
use crate::model::role::{role_name_of, Role};
use crate::service::{ErrorKind, Origin, ServiceError};

/// Lifetime of a `GetOpenIdToken` token (Cognito: 10 minutes).
pub const OPENID_TOKEN_SECS: i64 = 600;
/// Default and longest lifetime of a developer identity's OpenID token
/// (Cognito: 15 minutes, at most 24 hours).
pub const DEVELOPER_TOKEN_DEFAULT_SECS: i64 = 900;
/// Longest lifetime of a developer identity's OpenID token.
pub const DEVELOPER_TOKEN_MAX_SECS: i64 = 86_400;
/// `token_use` of this cluster's OpenID tokens for identities.
pub const OPENID_TOKEN_USE: &str = "identity";

/// Credentials handed to an identity (Cognito's `Credentials`).
#[derive(Debug, Clone)]
pub struct IssuedCredentials {
    /// The identity they are for (the survivor, after a merge).
    pub identity_id: String,
    /// The credentials' id: the token's `jti`.
    pub access_key_id: String,
    /// Derived from the id under the sealing key; see `auth::credentials`.
    pub secret_key: String,
    /// The signed credentials token.
    pub session_token: String,
    /// Expiry, seconds since the epoch.
    pub expiration: i64,
    /// The role they carry.
    pub role_arn: String,
}

/// A decision of `Authorize`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeAnswer {
    /// Whether the action is allowed.
    pub allowed: bool,
    /// `Allow`, `ExplicitDeny` or `ImplicitDeny`.
    pub decision: &'static str,
    /// The deciding statement's index, if a statement decided.
    pub statement_index: Option<usize>,
    /// The deciding statement's `Sid`, if it has one.
    pub statement_sid: Option<String>,
    /// The credentials' identity.
    pub identity_id: String,
    /// The credentials' role.
    pub role_arn: String,
}

fn bad_config(why: impl Into<String>) -> ServiceError {
    ServiceError::new(
        ErrorKind::FailedPrecondition,
        "InvalidIdentityPoolConfigurationException",
        format!("Invalid identity pool configuration: {}", why.into()),
    )
}

/// A claim of a verified token as rules see it.
fn claim_value(claims: &Claims, name: &str) -> Option<(String, Vec<String>)> {
    match claims.get(name)? {
        Value::String(s) => Some((s.clone(), Vec::new())),
        Value::Array(items) => Some((
            String::new(),
            items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        )),
        Value::Null | Value::Object(_) => None,
        other => Some((other.to_string(), Vec::new())),
    }
}

impl IdentityService {
    /// The roles a mapping offers an authenticated identity, best first,
    /// or `None` when the identity has no mapping that applies.
    fn mapped_roles(
        &self,
        pool: &IdentityPool,
        verified: &VerifiedLogins,
    ) -> Result<Option<(Vec<String>, AmbiguousRoleResolution)>, ServiceError> {
        for login in &verified.logins {
            let Some(mapping) = pool.role_mappings.get(&login.login.provider) else {
                continue;
            };
            let roles = match &mapping.kind {
                RoleMappingKind::Token => match &login.user {
                    Some((user_pool_id, sub, _)) => {
                        let mut groups = self.node.store().groups_of(user_pool_id, sub)?;
                        groups.sort_by(precedence_order);
                        groups
                            .iter()
                            .filter(|g| !g.role_arn.is_empty())
                            .filter_map(|g| role_name_of(&g.role_arn).ok().map(str::to_string))
                            .collect()
                    }
                    None => login
                        .claims
                        .get("cognito:roles")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .filter_map(|r| role_name_of(r).ok().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                },
                RoleMappingKind::Rules(rules) => rules
                    .iter()
                    .filter(|r| {
                        claim_value(&login.claims, &r.claim).is_some_and(|(one, many)| {
                            let v = if many.is_empty() && !one.is_empty() {
                                ClaimValue::One(&one)
                            } else {
                                ClaimValue::Many(many.iter().map(String::as_str).collect())
                            };
                            r.match_type.matches(&v, &r.value)
                        })
                    })
                    .map(|r| r.role.clone())
                    .collect(),
            };
            return Ok(Some((roles, mapping.ambiguous_role_resolution)));
        }
        Ok(None)
    }

    /// The role of `identity` for this call (see the module docs).
    fn choose_role(
        &self,
        pool: &IdentityPool,
        identity: &Identity,
        verified: &VerifiedLogins,
        custom_role_arn: &str,
    ) -> Result<String, ServiceError> {
        let custom = match custom_role_arn {
            "" => None,
            arn => Some(role_name_of(arn)?.to_string()),
        };
        let refuse_custom = |name: &str| {
            ServiceError::not_authorized(format!(
                "custom_role_arn: role {name} is not one this identity's role mapping allows"
            ))
        };
        if identity.is_guest() {
            let role = pool
                .roles
                .unauthenticated
                .clone()
                .ok_or_else(|| bad_config("the pool has no unauthenticated role"))?;
            if let Some(c) = custom.filter(|c| *c != role) {
                return Err(refuse_custom(&c));
            }
            return Ok(role);
        }
        for login in &verified.logins {
            if let Some((user_pool_id, sub, _)) = &login.user {
                if let Some(role) = self.node.store().user_role(user_pool_id, sub)? {
                    if let Some(c) = custom.filter(|c| *c != role) {
                        return Err(refuse_custom(&c));
                    }
                    return Ok(role);
                }
            }
        }
        let fallback = || {
            pool.roles
                .authenticated
                .clone()
                .ok_or_else(|| bad_config("the pool has no authenticated role"))
        };
        match self.mapped_roles(pool, verified)? {
            Some((roles, resolution)) => match (custom, roles.first()) {
                (Some(c), _) if roles.contains(&c) => Ok(c),
                (Some(c), _) => Err(refuse_custom(&c)),
                (None, Some(best)) => Ok(best.clone()),
                (None, None) => match resolution {
                    AmbiguousRoleResolution::AuthenticatedRole => fallback(),
                    AmbiguousRoleResolution::Deny => Err(ServiceError::not_authorized(
                        "No role matched this identity and the pool's AmbiguousRoleResolution is Deny.",
                    )),
                },
            },
            None => {
                let role = fallback()?;
                match custom {
                    Some(c) if c != role => Err(refuse_custom(&c)),
                    _ => Ok(role),
                }
            }
        }
    }

    fn role(&self, name: &str) -> Result<Role, ServiceError> {
        self.node
            .store()
            .role(name)?
            .ok_or_else(|| bad_config(format!("role {name} does not exist")))
    }

    /// `GetCredentialsForIdentity`.
    pub async fn get_credentials(
        &self,
        identity_id: &str,
        logins: &BTreeMap<String, String>,
        custom_role_arn: &str,
        duration_seconds: i32,
        origin: &Origin,
    ) -> Result<IssuedCredentials, ServiceError> {
        let duration = match i64::from(duration_seconds) {
            0 => creds::DEFAULT_DURATION_SECS,
            d if (creds::MIN_DURATION_SECS..=creds::MAX_DURATION_SECS).contains(&d) => d,
            d => {
                return Err(ServiceError::invalid(format!(
                    "duration_seconds: {d} is out of range; use {} to {}",
                    creds::MIN_DURATION_SECS,
                    creds::MAX_DURATION_SECS
                )))
            }
        };
        self.require_fresh().await?;
        let (pool, identity, verified) = self.authenticate_identity(identity_id, logins, origin).await?;
        let role = self.role(&self.choose_role(&pool, &identity, &verified, custom_role_arn)?)?;
        let user = verified.logins.iter().find_map(|l| l.user.as_ref());
        let amr = amr(&identity, &verified);
        let access_key_id = creds::new_access_key_id(crate::clock::random_bytes::<16>());
        let now = crate::clock::now_millis() / 1000;
        let public_url = self.public_url()?;
        let key = self.keys.published_signing_key()?;
        let session_token = creds::mint(
            &CredentialsGrant {
                public_url: &public_url,
                identity_pool_id: &pool.id,
                identity_id: &identity.id,
                role_name: &role.name,
                policy_document: &role.policy_document,
                amr: &amr,
                user: user.map(|(_, sub, name)| (sub.as_str(), name.as_str())),
                now,
                duration_secs: duration,
                access_key_id: &access_key_id,
            },
            &key,
        )
        .map_err(|e| ServiceError::internal(e.to_string()))?;
        let sealing = self.sealing.get().ok_or_else(|| {
            ServiceError::new(
                ErrorKind::Unavailable,
                "ServiceUnavailableException",
                "this node has no sealing key yet",
            )
        })?;
        Ok(IssuedCredentials {
            identity_id: identity.id,
            secret_key: creds::secret_key(sealing.raw(), &access_key_id),
            access_key_id,
            session_token,
            expiration: now + duration,
            role_arn: role.arn(),
        })
    }

    fn mint_openid_token(
        &self,
        pool: &IdentityPool,
        identity: &Identity,
        amr: &[String],
        secs: i64,
        tags: &BTreeMap<String, String>,
    ) -> Result<String, ServiceError> {
        let now = crate::clock::now_millis() / 1000;
        let mut c = Claims::new();
        c.insert("iss".into(), json!(format!("{}/{}", self.public_url()?, pool.id)));
        c.insert("sub".into(), json!(identity.id));
        c.insert("aud".into(), json!(pool.id));
        c.insert("token_use".into(), json!(OPENID_TOKEN_USE));
        c.insert("amr".into(), json!(amr));
        c.insert("iat".into(), json!(now));
        c.insert("exp".into(), json!(now + secs));
        c.insert("jti".into(), json!(crate::clock::new_uuid().to_string()));
        if !tags.is_empty() {
            c.insert("https://aws.amazon.com/tags".into(), json!({ "principal_tags": tags }));
        }
        let key = self.keys.published_signing_key()?;
        Ok(jwt::mint(&c, &key))
    }

    /// `GetOpenIdToken`: an OpenID Connect id token for the identity (the
    /// basic flow, which the pool must allow).
    pub async fn get_open_id_token(
        &self,
        identity_id: &str,
        logins: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<(String, String), ServiceError> {
        self.require_fresh().await?;
        let (pool, identity, verified) = self.authenticate_identity(identity_id, logins, origin).await?;
        if !pool.allow_classic_flow {
            return Err(ServiceError::invalid(
                "Basic (classic) flow is not enabled for this identity pool; set allow_classic_flow or use GetCredentialsForIdentity.",
            ));
        }
        let amr = amr(&identity, &verified);
        let token = self.mint_openid_token(&pool, &identity, &amr, OPENID_TOKEN_SECS, &BTreeMap::new())?;
        Ok((identity.id, token))
    }

    /// `GetOpenIdTokenForDeveloperIdentity` (the developer's back end).
    pub async fn get_open_id_token_for_developer_identity(
        &self,
        pool_id: &str,
        identity_id: &str,
        logins: &BTreeMap<String, String>,
        principal_tags: &BTreeMap<String, String>,
        token_duration: i64,
    ) -> Result<(String, String), ServiceError> {
        let secs = match token_duration {
            0 => DEVELOPER_TOKEN_DEFAULT_SECS,
            d if (1..=DEVELOPER_TOKEN_MAX_SECS).contains(&d) => d,
            d => {
                return Err(ServiceError::invalid(format!(
                    "token_duration: {d} is out of range; use 1 to {DEVELOPER_TOKEN_MAX_SECS} seconds"
                )))
            }
        };
        if principal_tags.len() > 50
            || principal_tags
                .iter()
                .any(|(k, v)| k.chars().count() > 128 || v.chars().count() > 256)
        {
            return Err(ServiceError::invalid(
                "principal_tags: at most 50, keys up to 128 and values up to 256 characters",
            ));
        }
        let (pool, identity) = self.developer_identity(pool_id, identity_id, logins).await?;
        let mut amr = vec!["authenticated".to_string(), pool.developer_provider_name.clone()];
        amr.extend(identity.logins.iter().map(|l| l.provider.clone()));
        amr.dedup();
        let token = self.mint_openid_token(&pool, &identity, &amr, secs, principal_tags)?;
        Ok((identity.id, token))
    }

    /// Verifies an OpenID token this cluster minted for an identity of
    /// `pool`, presented back in `logins`.
    pub(crate) async fn verify_openid_token(&self, pool: &IdentityPool, token: &str) -> Result<Claims, ServiceError> {
        let invalid = || {
            ServiceError::not_authorized(format!(
                "Invalid login token for provider {}.",
                super::logins::OPENID_TOKEN_PROVIDER
            ))
        };
        let issuer = format!("{}/{}", self.public_url()?, pool.id);
        let claims = self
            .tokens
            .verify_issued(token, OPENID_TOKEN_USE, &issuer)
            .await
            .map_err(|_| invalid())?;
        if claims.get("aud").and_then(Value::as_str) != Some(pool.id.as_str()) {
            return Err(invalid());
        }
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
        let identity = self.existing_identity(sub).await.map_err(|_| logins_dont_match())?;
        if identity.pool_id != pool.id {
            return Err(invalid());
        }
        Ok(claims)
    }

    /// `Authorize`: verifies credentials (signature, expiry, issuer) and
    /// evaluates their policy.
    pub async fn authorize(
        &self,
        credentials: &str,
        action: &str,
        resource: &str,
    ) -> Result<AuthorizeAnswer, ServiceError> {
        if action.is_empty() || action.len() > 256 {
            return Err(ServiceError::invalid("action: 1 to 256 characters"));
        }
        if resource.is_empty() || resource.len() > 2048 {
            return Err(ServiceError::invalid("resource: 1 to 2048 characters"));
        }
        let invalid = || ServiceError::not_authorized("Invalid credentials.");
        let (_, issuer) = crate::auth::verifier::peek_kid_and_issuer(credentials).ok_or_else(invalid)?;
        let claims = self
            .tokens
            .verify_issued(credentials, creds::TOKEN_USE, &issuer)
            .await
            .map_err(|_| invalid())?;
        // The issuer was read before verifying; now that the signature
        // vouches for it, it must be one of this cluster's identity pools.
        let public_url = self.public_url()?;
        let pool_id = issuer
            .strip_prefix(&public_url)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(invalid)?;
        if claims.get("aud").and_then(Value::as_str) != Some(pool_id) {
            return Err(invalid());
        }
        let v = creds::from_claims(&claims).map_err(|_| invalid())?;
        let d = v.authorize(action, resource);
        Ok(AuthorizeAnswer {
            allowed: d.allowed,
            decision: match (d.allowed, d.statement.is_some()) {
                (true, _) => "Allow",
                (false, true) => "ExplicitDeny",
                (false, false) => "ImplicitDeny",
            },
            statement_index: d.statement.map(|s| s.index),
            statement_sid: d.statement.and_then(|s| s.sid.map(str::to_string)),
            identity_id: v.identity_id.clone(),
            role_arn: v.role_arn.clone(),
        })
    }
}

/// The `amr` of an identity's tokens: `authenticated` or
/// `unauthenticated`, then its login providers.
fn amr(identity: &Identity, verified: &VerifiedLogins) -> Vec<String> {
    if identity.is_guest() {
        return vec!["unauthenticated".into()];
    }
    let mut amr = vec!["authenticated".to_string()];
    for l in &verified.logins {
        if !amr.contains(&l.login.provider) {
            amr.push(l.login.provider.clone());
        }
    }
    amr
}
