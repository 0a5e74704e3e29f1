//! The client-credentials grant (RFC 6749 §4.4): a service authenticates
//! with its app client's id and secret and gets an access token of its
//! own, carrying the resource-server scopes it asked for (or all it is
//! allowed), with no user.
//!
//! Answered entirely by the receiving node: the client, its OAuth
//! settings and the resource servers are read from the local replica, and
//! the token is signed with the node's own key. No Raft write, so the
//! grant scales with nodes and cores like a refresh does. The token is
//! bound to the client and to scopes that exist when it is signed: a
//! client whose secret no longer opens, or a scope whose resource server
//! was deleted, gets nothing.

use subtle::ConstantTimeEq;

use super::{OAuthError, OAuthService};
use crate::model::app_client::validate_client_id;
use crate::model::oauth_client::OAuthFlow;
use crate::model::pool::validate_pool_id;

/// Longest `scope` parameter accepted.
pub const MAX_SCOPE_PARAM: usize = 8 * 1024;
/// Longest client id or secret accepted (ours are 26 and 52 characters).
pub const MAX_CREDENTIAL: usize = 256;

/// How the client authenticated (HTTP Basic or the form's parameters).
#[derive(Debug, Clone, Copy)]
pub struct ClientCredentials<'a> {
    /// `client_id`.
    pub client_id: &'a str,
    /// `client_secret`.
    pub client_secret: &'a str,
}

/// What the token endpoint hands back.
#[derive(Debug, Clone)]
pub struct GrantedToken {
    /// The signed access token (JWT).
    pub access_token: String,
    /// Seconds it is valid (the client's access-token validity).
    pub expires_in: u32,
    /// The scopes it carries, space-separated.
    pub scope: String,
}

impl OAuthService {
    /// `grant_type=client_credentials` at `/{pool_id}/oauth2/token`.
    /// `scope`: the `scope` parameter, if given.
    pub async fn client_credentials(
        &self,
        pool_id: &str,
        creds: ClientCredentials<'_>,
        scope: Option<&str>,
    ) -> Result<GrantedToken, OAuthError> {
        self.require_fresh().await?;
        if validate_pool_id(pool_id).is_err() {
            return Err(OAuthError::bad(
                "invalid_request",
                "the user pool id in the path is malformed",
            ));
        }
        let client = self.authenticate_client(pool_id, creds).await?;
        let store = self.node.store();
        let oauth = store
            .client_oauth(&client.client_id)
            .map_err(crate::service::ServiceError::from)?;
        if !oauth.allows(OAuthFlow::ClientCredentials) {
            return Err(OAuthError::bad(
                "unauthorized_client",
                "this client is not allowed the client_credentials grant; allow it with allowed_oauth_flows \
                 [client_credentials] and allowed_oauth_flows_user_pool_client true",
            ));
        }
        let exists = |s: &str| {
            store
                .scope_exists(pool_id, s)
                .map_err(|e| OAuthError::from(crate::service::ServiceError::from(e)))
        };
        let mut granted: Vec<&str> = Vec::new();
        match scope.map(str::trim).filter(|s| !s.is_empty()) {
            Some(requested) => {
                if requested.len() > MAX_SCOPE_PARAM {
                    return Err(OAuthError::bad("invalid_scope", "the scope parameter is too long"));
                }
                for s in requested.split(' ').filter(|s| !s.is_empty()) {
                    if !oauth.scopes.contains(s) {
                        return Err(OAuthError::bad(
                            "invalid_scope",
                            format!(
                                "the client is not allowed the scope {:?}",
                                s.chars().take(128).collect::<String>()
                            ),
                        ));
                    }
                    if !exists(s)? {
                        return Err(OAuthError::bad(
                            "invalid_scope",
                            format!("the scope {s:?} is no longer defined by a resource server of this pool"),
                        ));
                    }
                    if !granted.contains(&s) {
                        granted.push(s);
                    }
                }
            }
            None => {
                for s in oauth.custom_scopes() {
                    if exists(s)? {
                        granted.push(s);
                    }
                }
            }
        }
        if granted.is_empty() {
            return Err(OAuthError::bad(
                "invalid_scope",
                "none of the client's allowed scopes is defined by a resource server of this pool",
            ));
        }
        let scope = granted.join(" ");
        let expires_in = client.token_validity.access_token_secs;
        let access_token = self
            .tokens
            .mint_client_token(pool_id, &client.client_id, &scope, expires_in)?;
        Ok(GrantedToken {
            access_token,
            expires_in,
            scope,
        })
    }

    /// The client of `pool_id` that `creds` name, if the secret is its
    /// own; `invalid_client` otherwise, alike for an unknown client, a
    /// public one and a wrong secret. The secret is compared in constant
    /// time.
    pub async fn authenticate_client(
        &self,
        pool_id: &str,
        creds: ClientCredentials<'_>,
    ) -> Result<crate::model::app_client::AppClient, OAuthError> {
        if creds.client_id.len() > MAX_CREDENTIAL
            || creds.client_secret.len() > MAX_CREDENTIAL
            || validate_client_id(creds.client_id).is_err()
        {
            return Err(OAuthError::invalid_client());
        }
        let store = self.node.store();
        let client = match store
            .app_client(creds.client_id)
            .map_err(crate::service::ServiceError::from)?
        {
            Some(c) => c,
            None => {
                // Created a moment ago through another node?
                self.node
                    .read_barrier()
                    .await
                    .map_err(crate::service::ServiceError::from)?;
                store
                    .app_client(creds.client_id)
                    .map_err(crate::service::ServiceError::from)?
                    .ok_or_else(OAuthError::invalid_client)?
            }
        };
        if client.pool_id != pool_id {
            return Err(OAuthError::invalid_client());
        }
        let Some(sealed) = &client.secret else {
            // A public client has nothing to authenticate with.
            return Err(OAuthError::invalid_client());
        };
        let key = self.sealing.get().ok_or_else(|| OAuthError {
            status: 503,
            error: "temporarily_unavailable",
            description: "this node has no cluster sealing key yet and cannot check client secrets".into(),
        })?;
        let secret = key
            .open(pool_id, &client.client_id, sealed)
            .map_err(|e| crate::service::ServiceError::internal(e.to_string()))?;
        if !bool::from(secret.as_bytes().ct_eq(creds.client_secret.as_bytes())) {
            return Err(OAuthError::invalid_client());
        }
        Ok(client)
    }
}
