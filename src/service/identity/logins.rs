//! Verifying the tokens of a `logins` map: each key names a provider that
//! the identity pool accepts, each value is that provider's id token.
//!
//! * A user pool of this cluster: our own id token, checked against the
//!   cluster's keys, its issuer and the configured app client; with
//!   `server_side_token_check`, also that the user is still enabled and
//!   the token not revoked.
//! * An external OpenID Connect provider: its id token, checked against
//!   its JWKS (`auth::oidc`), with the algorithm taken from the key.
//! * `cognito-identity.amazonaws.com`: an OpenID token this cluster minted
//!   for an identity of this pool (`GetOpenIdToken`,
//!   `GetOpenIdTokenForDeveloperIdentity`), which stands for the identity
//!   itself, as in Cognito's enhanced flow for developer identities.
//!
//! A developer provider's name never appears here: only the developer's
//! back end (an admin call) vouches for its users.

use std::collections::BTreeMap;

use serde_json::Value;

use super::IdentityService;
use crate::auth::jwt::Claims;
use crate::model::identity::Login;
use crate::model::identity_pool::{same_cognito_provider, strip_scheme, IdentityPool, ProviderKind};
use crate::service::ServiceError;

/// Most entries in one `logins` map (Cognito's bound).
pub const MAX_LOGINS: usize = 10;
/// Longest token accepted in `logins` (Cognito's bound is 50,000 characters).
pub const MAX_LOGIN_TOKEN: usize = 50_000;
/// The provider name under which this cluster's own OpenID tokens for an
/// identity are presented (Cognito's).
pub const OPENID_TOKEN_PROVIDER: &str = "cognito-identity.amazonaws.com";

/// A login whose token checked out.
#[derive(Debug, Clone)]
pub struct VerifiedLogin {
    /// Provider and subject, as the login index keys them.
    pub login: Login,
    /// The token's claims, for role rules.
    pub claims: Claims,
    /// For a user pool of this cluster: its id, the user's sub and username.
    pub user: Option<(String, String, String)>,
}

/// What a `logins` map proved.
#[derive(Debug, Clone, Default)]
pub struct VerifiedLogins {
    /// Provider logins, sorted by provider.
    pub logins: Vec<VerifiedLogin>,
    /// An identity that one of our OpenID tokens vouched for.
    pub identity_id: Option<String>,
}

impl VerifiedLogins {
    /// The logins as the login index keys them.
    pub fn keys(&self) -> Vec<Login> {
        self.logins.iter().map(|l| l.login.clone()).collect()
    }
}

fn invalid_login(provider: &str, why: impl std::fmt::Display) -> ServiceError {
    ServiceError::not_authorized(format!("Invalid login token for provider {provider}: {why}"))
}

impl IdentityService {
    /// Verifies every token of `logins` for `pool`. Any bad token fails the
    /// whole call: a caller never gets an identity for part of its logins.
    pub async fn verify_logins(
        &self,
        pool: &IdentityPool,
        logins: &BTreeMap<String, String>,
    ) -> Result<VerifiedLogins, ServiceError> {
        if logins.len() > MAX_LOGINS {
            return Err(ServiceError::invalid(format!("logins: at most {MAX_LOGINS} entries")));
        }
        let mut out = VerifiedLogins::default();
        let now = crate::clock::now_millis() / 1000;
        for (provider, token) in logins {
            if token.is_empty() || token.len() > MAX_LOGIN_TOKEN {
                return Err(ServiceError::invalid(format!(
                    "logins[{provider}]: a token of 1 to {MAX_LOGIN_TOKEN} characters"
                )));
            }
            if strip_scheme(provider) == OPENID_TOKEN_PROVIDER {
                let claims = self.verify_openid_token(pool, token).await?;
                out.identity_id = claims.get("sub").and_then(Value::as_str).map(str::to_string);
                continue;
            }
            let verified = match pool.provider(provider) {
                None => {
                    return Err(ServiceError::invalid(format!(
                        "logins: provider {provider:?} is not configured for identity pool {}; it accepts {}",
                        pool.id,
                        pool.provider_names().join(", ")
                    )))
                }
                Some(ProviderKind::Developer) => {
                    return Err(ServiceError::not_authorized(format!(
                        "logins: {provider} is the developer provider; its users get tokens from \
                         GetOpenIdTokenForDeveloperIdentity, presented as {OPENID_TOKEN_PROVIDER}"
                    )))
                }
                Some(ProviderKind::Cognito(c)) => {
                    let v = self
                        .tokens
                        .verify(token, "id")
                        .await
                        .map_err(|e| invalid_login(provider, e.message))?;
                    let iss = v.str("iss");
                    if !same_cognito_provider(strip_scheme(iss), &c.provider_name) {
                        return Err(invalid_login(provider, "Issuer doesn't match providerName"));
                    }
                    if v.str("aud") != c.client_id {
                        return Err(invalid_login(
                            provider,
                            "the token is not for the configured app client",
                        ));
                    }
                    let sub = v.str("sub").to_string();
                    let username = v.str("cognito:username").to_string();
                    if c.server_side_token_check {
                        let user = self
                            .node
                            .store()
                            .user(&v.pool_id, &sub)?
                            .ok_or_else(|| invalid_login(provider, "the user no longer exists"))?;
                        if !user.enabled {
                            return Err(invalid_login(provider, "the user is disabled"));
                        }
                        if self.tokens.is_revoked(&v, &user)? {
                            return Err(invalid_login(provider, "the token has been revoked"));
                        }
                    }
                    VerifiedLogin {
                        login: Login {
                            provider: c.provider_name.clone(),
                            subject: sub.clone(),
                        },
                        user: Some((v.pool_id.clone(), sub, username)),
                        claims: v.claims,
                    }
                }
                Some(ProviderKind::Oidc(config)) => {
                    let provider_cfg = crate::auth::oidc::OidcProvider {
                        issuer: config.issuer.clone(),
                        audiences: config.client_ids.clone(),
                        jwks_uri: config.jwks_uri.clone(),
                        discovery_url: config.discovery_url.clone(),
                    };
                    let t = self
                        .oidc
                        .verify(&provider_cfg, token, now)
                        .await
                        .map_err(|e| oidc_error(provider, e))?;
                    VerifiedLogin {
                        login: Login {
                            provider: config.provider_name.clone(),
                            subject: t.subject.clone(),
                        },
                        claims: t.claims.into_iter().collect(),
                        user: None,
                    }
                }
            };
            verified.login.validate()?;
            out.logins.push(verified);
        }
        out.logins.sort_by(|a, b| a.login.cmp(&b.login));
        Ok(out)
    }
}

/// Maps a verification failure of an external token to Cognito's
/// exceptions: a provider we could not reach is `ExternalServiceException`,
/// everything else `NotAuthorizedException`.
fn oidc_error(provider: &str, e: crate::auth::oidc::OidcError) -> ServiceError {
    let exception = e.cognito_exception();
    if exception == "ExternalServiceException" {
        ServiceError::new(
            crate::service::ErrorKind::Unavailable,
            "ExternalServiceException",
            format!("provider {provider}: {e}"),
        )
    } else {
        invalid_login(provider, e)
    }
}
