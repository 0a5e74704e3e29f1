//! Who is calling, for the services an identity uses with its own
//! tokens (per-identity sync): its credentials, or the access token of a
//! user-pool user whose login maps to it.

use super::IdentityService;
use crate::auth::credentials as creds;
use crate::model::identity_pool::{strip_scheme, validate_identity_id};
use crate::service::ServiceError;

/// An identity proven by a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenIdentity {
    /// The identity pool.
    pub identity_pool_id: String,
    /// The identity (the survivor, if the token named a merged one).
    pub identity_id: String,
    /// When the token stops working, Unix seconds.
    pub expires_at: i64,
}

fn invalid() -> ServiceError {
    ServiceError::not_authorized("Invalid credentials or access token.")
}

impl IdentityService {
    /// Verifies an identity's credentials token (the `session_token` of
    /// `GetCredentialsForIdentity`): signature, issuer, expiry, and that the
    /// identity still exists. A merged identity's credentials are refused:
    /// its data moved to the survivor, whose credentials the device gets
    /// from `GetCredentialsForIdentity` again.
    pub async fn prove_by_credentials(&self, token: &str) -> Result<ProvenIdentity, ServiceError> {
        if token.is_empty() || token.len() > 16 * 1024 {
            return Err(invalid());
        }
        let (_, issuer) = crate::auth::verifier::peek_kid_and_issuer(token).ok_or_else(invalid)?;
        let claims = self
            .tokens
            .verify_issued(token, creds::TOKEN_USE, &issuer)
            .await
            .map_err(|_| invalid())?;
        let public_url = self.public_url()?;
        let pool_id = issuer
            .strip_prefix(&public_url)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(invalid)?;
        let v = creds::from_claims(&claims).map_err(|_| invalid())?;
        if v.identity_pool_id != pool_id {
            return Err(invalid());
        }
        let identity = self.existing_identity(&v.identity_id).await.map_err(|_| invalid())?;
        if identity.pool_id != pool_id {
            return Err(invalid());
        }
        if let Some(survivor) = identity.merged_into {
            return Err(ServiceError::not_authorized(format!(
                "identity {} was merged into {survivor}; get credentials for it again",
                identity.id
            )));
        }
        Ok(ProvenIdentity {
            identity_pool_id: pool_id.to_string(),
            identity_id: identity.id,
            expires_at: v.expires_at,
        })
    }

    /// Verifies a user-pool access token and finds the identity of its
    /// user in `identity_pool_id`: the pool must accept that user pool as a
    /// login provider, the user must have an identity there (from
    /// `GetId`), be enabled, and the token must not be revoked.
    pub async fn prove_by_access_token(
        &self,
        identity_pool_id: &str,
        token: &str,
    ) -> Result<ProvenIdentity, ServiceError> {
        // The token first: a caller without a valid one is refused as
        // such, whatever else its request says.
        let v = self.tokens.verify(token, "access").await?;
        if crate::service::flows::session::is_client_token(&v) {
            return Err(ServiceError::not_authorized(
                "Invalid Access Token: a client_credentials token names no user, so it has no identity",
            ));
        }
        if identity_pool_id.is_empty() {
            return Err(ServiceError::invalid(
                "identity_pool_id: required to map an access token to its identity",
            ));
        }
        validate_identity_id("identity_pool_id", identity_pool_id)?;
        let pool = self.existing_pool(identity_pool_id).await?;
        let provider = strip_scheme(v.str("iss"));
        let Some(c) = pool.cognito_providers.iter().find(|c| c.provider_name == provider) else {
            return Err(ServiceError::not_authorized(format!(
                "identity pool {identity_pool_id} does not accept users of user pool {}",
                v.pool_id
            )));
        };
        let sub = v.str("sub");
        let user = self
            .node
            .store()
            .user(&v.pool_id, sub)?
            .ok_or_else(|| ServiceError::not_authorized("Access Token has been revoked"))?;
        if !user.enabled || self.tokens.is_revoked(&v, &user)? {
            return Err(ServiceError::not_authorized("Access Token has been revoked"));
        }
        let login = crate::model::identity::Login {
            provider: c.provider_name.clone(),
            subject: sub.to_string(),
        };
        let mut id = self.node.store().identity_of_login(identity_pool_id, &login)?;
        if id.is_none() {
            self.node.read_barrier().await?;
            id = self.node.store().identity_of_login(identity_pool_id, &login)?;
        }
        let id = id.ok_or_else(|| {
            ServiceError::not_found(format!(
                "the user has no identity in {identity_pool_id} yet; call GetId with its id token first"
            ))
        })?;
        // Follow merges to the survivor (the login index already points
        // there after a merge; this covers an index written before it).
        let mut identity = self.existing_identity(&id).await?;
        for _ in 0..8 {
            match identity.merged_into.clone() {
                Some(next) => identity = self.existing_identity(&next).await?,
                None => break,
            }
        }
        Ok(ProvenIdentity {
            identity_pool_id: identity_pool_id.to_string(),
            identity_id: identity.id,
            expires_at: v.int("exp"),
        })
    }
}
