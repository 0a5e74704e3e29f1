//! What a signed-in user does with an access token (`GetUser`,
//! `GlobalSignOut`), and `RevokeToken` for refresh tokens.

use subtle::ConstantTimeEq;

use super::AuthService;
use crate::command::{Command, Outcome};
use crate::model::user::User;
use crate::service::tokens::Verified;
use crate::service::{ErrorKind, ServiceError};

impl AuthService {
    /// Verifies an access token and returns its claims and the current
    /// user, refusing revoked tokens and disabled or deleted users.
    pub async fn authenticate(&self, access_token: &str) -> Result<(Verified, User), ServiceError> {
        self.require_fresh().await?;
        let v = self.tokens.verify(access_token, "access").await?;
        let user = self
            .user_by_sub(&v.pool_id, v.str("sub"))
            .await?
            .ok_or_else(|| ServiceError::not_authorized("Invalid Access Token."))?;
        if self.tokens.is_revoked(&v, &user)? {
            return Err(ServiceError::not_authorized("Access Token has been revoked"));
        }
        if !user.enabled {
            return Err(ServiceError::not_authorized("User is disabled."));
        }
        Ok((v, user))
    }

    /// `GetUser`: the username and the attributes the token's app client
    /// may read, with `sub` and the verification flags as Cognito lists
    /// them.
    pub async fn get_user(&self, access_token: &str) -> Result<(String, Vec<(String, String)>), ServiceError> {
        let (v, user) = self.authenticate(access_token).await?;
        let readable = self
            .node
            .store()
            .app_client(v.str("client_id"))?
            .and_then(|c| c.read_attributes);
        let may_read = |name: &str| readable.as_ref().is_none_or(|r| r.contains(name));
        let mut attrs = vec![("sub".to_string(), user.sub.clone())];
        for (k, val) in &user.attributes {
            if may_read(k) {
                attrs.push((k.clone(), val.clone()));
            }
        }
        if user.attributes.contains_key("email") && may_read("email_verified") {
            attrs.push(("email_verified".into(), user.email_verified.to_string()));
        }
        if user.attributes.contains_key("phone_number") && may_read("phone_number_verified") {
            attrs.push(("phone_number_verified".into(), user.phone_number_verified.to_string()));
        }
        Ok((user.username, attrs))
    }

    /// `GlobalSignOut`: every token the user holds stops working on every
    /// node, refresh tokens included.
    pub async fn global_sign_out(&self, access_token: &str) -> Result<(), ServiceError> {
        let (v, user) = self.authenticate(access_token).await?;
        match self
            .node
            .propose(Command::GlobalSignOut {
                pool_id: v.pool_id.clone(),
                sub: user.sub,
                at: crate::clock::now_millis(),
            })
            .await?
        {
            Outcome::Rejected(r) => Err(r.into()),
            _ => Ok(()),
        }
    }

    /// `RevokeToken`: revokes a refresh token and every id and access token
    /// minted from it. Clients with a secret must present it.
    pub async fn revoke_token(&self, token: &str, client_id: &str, client_secret: &str) -> Result<(), ServiceError> {
        let caller = self.caller(client_id).await?;
        let client = &caller.client;
        if let Some(secret) = self.client_secret(client)? {
            if !bool::from(secret.as_bytes().ct_eq(client_secret.as_bytes())) {
                return Err(ServiceError::not_authorized(format!(
                    "Unable to verify secret for client {client_id}"
                )));
            }
        }
        if !client.enable_token_revocation {
            return Err(ServiceError::new(
                ErrorKind::FailedPrecondition,
                "UnsupportedOperationException",
                "Token revocation is not enabled for this app client.",
            ));
        }
        let v = self.tokens.verify(token, "refresh").await?;
        if v.pool_id != caller.pool.id || v.str("client_id") != client.client_id {
            return Err(ServiceError::new(
                ErrorKind::InvalidParameter,
                "UnauthorizedException",
                "the refresh token was not issued to this client",
            ));
        }
        match self
            .node
            .propose(Command::RevokeToken {
                pool_id: v.pool_id.clone(),
                origin_jti: v.str("origin_jti").to_string(),
                expires_at: v.int("exp") * 1000,
            })
            .await?
        {
            Outcome::Rejected(r) => Err(r.into()),
            _ => Ok(()),
        }
    }
}
