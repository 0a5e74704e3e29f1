//! What a signed-in user does with an access token (`GetUser`,
//! `GlobalSignOut`), and `RevokeToken` for refresh tokens.

use crate::command::{GlobalSignOut, RevokeToken};
use subtle::ConstantTimeEq;

use super::AuthService;
use crate::command::Outcome;
use crate::model::app_client::AppClient;
use crate::model::user::User;
use crate::service::tokens::Verified;
use crate::service::{ErrorKind, ServiceError};

/// Whether a verified access token is a service's own
/// (client-credentials) token rather than a user's: it names no user.
/// Every user access token carries `username` (a claim no trigger may
/// remove), so a service's token cannot pass for a user whose `sub` it
/// happens to share.
pub fn is_client_token(v: &Verified) -> bool {
    v.str("username").is_empty()
}

impl AuthService {
    /// Verifies an access token and returns its claims and the current
    /// user, refusing revoked tokens, disabled or deleted users, and tokens
    /// of a deleted app client. Every call that takes an access token goes
    /// through here (or [`Self::authenticate_client`]).
    pub async fn authenticate(&self, access_token: &str) -> Result<(Verified, User), ServiceError> {
        self.authenticate_client(access_token)
            .await
            .map(|(v, user, _)| (v, user))
    }

    /// [`Self::authenticate`], also returning the app client the token was
    /// issued to. A client this node does not know may be one created a
    /// moment ago on another node, so a miss waits for a read barrier
    /// before the token is refused (the token's signature was checked
    /// first, so only holders of a real token can ask for one).
    pub async fn authenticate_client(&self, access_token: &str) -> Result<(Verified, User, AppClient), ServiceError> {
        // Bounded staleness: every call made with an access token passes here.
        self.require_fresh().await?;
        let invalid = || ServiceError::not_authorized("Invalid Access Token.");
        let v = self.tokens.verify(access_token, "access").await?;
        if is_client_token(&v) {
            return Err(invalid());
        }
        let client_id = v.str("client_id");
        let store = self.node.store();
        let client = match store.app_client(client_id)? {
            Some(c) => c,
            None => {
                self.node.read_barrier().await?;
                store.app_client(client_id)?.ok_or_else(invalid)?
            }
        };
        if client.pool_id != v.pool_id {
            return Err(invalid());
        }
        let user = self.user_by_sub(&v.pool_id, v.str("sub")).await?.ok_or_else(invalid)?;
        if self.tokens.is_revoked(&v, &user)? {
            return Err(ServiceError::not_authorized("Access Token has been revoked"));
        }
        if !user.enabled {
            return Err(ServiceError::not_authorized("User is disabled."));
        }
        Ok((v, user, client))
    }

    /// `GetUser`: the username and the attributes the token's app client
    /// may read, with `sub` and the verification flags as Cognito lists
    /// them, and the user's MFA settings.
    pub async fn get_user(
        &self,
        access_token: &str,
    ) -> Result<(String, Vec<(String, String)>, crate::model::mfa::MfaSummary), ServiceError> {
        let (_, user, client) = self.authenticate_client(access_token).await?;
        let readable = client.read_attributes;
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
        let mfa = self.mfa_summary(&user.pool_id, &user.sub)?;
        Ok((user.username, attrs, mfa))
    }

    /// `GlobalSignOut`: every token the user holds stops working on every
    /// node, refresh tokens included.
    pub async fn global_sign_out(&self, access_token: &str) -> Result<(), ServiceError> {
        let (v, user) = self.authenticate(access_token).await?;
        match self
            .node
            .propose(GlobalSignOut {
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
            .propose(RevokeToken {
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
