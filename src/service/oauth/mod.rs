//! The OAuth 2.0 authority of a user pool: what `/{pool_id}/oauth2/token`
//! answers (`api::http::oauth`). Errors are RFC 6749's (`invalid_client`,
//! `invalid_scope`, ...), not Cognito's exceptions, since OAuth client
//! libraries read those.
//!
//! Today: the client-credentials grant ([`client_credentials`]), a
//! service's own token, minted and signed by the node that receives the
//! request with no Raft write, like a refresh.
//! The authorization code grant with PKCE behind the hosted page
//! ([`authorize`]), and social sign-in by redirect through the pool's
//! identity providers ([`social`]), all carried in sealed state
//! ([`sealed`]) so any node continues what another started.

pub mod authorize;
pub mod client_credentials;
pub mod sealed;
pub mod social;

use std::sync::Arc;

use crate::auth::sealing::SealingCell;
use crate::raft::RaftNode;
use crate::service::tokens::TokenService;
use crate::service::ServiceError;

/// An OAuth error response (RFC 6749 §5.2): the HTTP status, the
/// registered `error` code and a description a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// 400, 401 (client authentication failed) or 5xx.
    pub status: u16,
    /// `invalid_request`, `invalid_client`, `invalid_grant`,
    /// `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`,
    /// or `server_error` / `temporarily_unavailable`.
    pub error: &'static str,
    /// `error_description`: what was wrong. Never a secret or a token.
    pub description: String,
}

impl OAuthError {
    /// A 400 with `error`.
    pub fn bad(error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status: 400,
            error,
            description: description.into(),
        }
    }

    /// `invalid_request`: a missing, repeated or malformed parameter.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::bad("invalid_request", description)
    }

    /// `invalid_client` (401): the client is unknown, or its
    /// authentication failed. One description for both, so that an
    /// attacker learns nothing about which client ids exist.
    pub fn invalid_client() -> Self {
        OAuthError {
            status: 401,
            error: "invalid_client",
            description: "Client authentication failed: unknown client, or wrong client secret.".into(),
        }
    }
}

impl From<ServiceError> for OAuthError {
    /// A failure of the node itself (storage, a stale node, no sealing
    /// key yet), never the caller's.
    fn from(e: ServiceError) -> Self {
        use crate::service::ErrorKind;
        match e.kind {
            ErrorKind::Unavailable => OAuthError {
                status: 503,
                error: "temporarily_unavailable",
                description: e.message,
            },
            ErrorKind::LimitExceeded => OAuthError {
                status: 429,
                error: "temporarily_unavailable",
                description: e.message,
            },
            _ => {
                tracing::warn!(error = %e.message, "oauth: internal failure");
                OAuthError {
                    status: 500,
                    error: "server_error",
                    description: "The node could not answer; retry, or ask its operator to look at its log.".into(),
                }
            }
        }
    }
}

/// The OAuth side of one node.
#[derive(Clone)]
pub struct OAuthService {
    node: Arc<RaftNode>,
    tokens: TokenService,
    sealing: Arc<SealingCell>,
}

impl OAuthService {
    /// The OAuth service of `node`: `tokens` signs, `sealing` opens client
    /// secrets.
    pub fn new(node: Arc<RaftNode>, tokens: TokenService, sealing: Arc<SealingCell>) -> Self {
        OAuthService { node, tokens, sealing }
    }

    /// The branding the hosted page of `client_id` wears (its own, else
    /// the pool's), read locally.
    pub fn branding(&self, pool_id: &str, client_id: &str) -> Option<crate::model::branding::Branding> {
        crate::service::branding::BrandingService::new(self.node.clone()).for_page(pool_id, client_id)
    }

    /// Refuses to answer on a node that has lost touch with the cluster
    /// for longer than its staleness bound (a deleted client must not get
    /// tokens from a partitioned node for long).
    async fn require_fresh(&self) -> Result<(), OAuthError> {
        self.node.freshness().ensure().await.map_err(|stale| OAuthError {
            status: 503,
            error: "temporarily_unavailable",
            description: stale.to_string(),
        })
    }
}
