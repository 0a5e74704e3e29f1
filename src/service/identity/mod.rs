//! Identity pools (Cognito's `cognito-identity`): pool administration
//! ([`pools`]), roles ([`roles`]), verifying the tokens of `logins`
//! ([`logins`]), identities and their logins ([`identities`]), and the
//! credentials, OpenID tokens and decisions handed to identities
//! ([`credentials`]).
//!
//! The write path is the usual one: the login index is decided in
//! `apply` (`command::ResolveIdentity`), so a first `GetId` for one login on
//! two nodes yields one identity. A repeat `GetId` for a known login is a
//! local read. Verifying an external token costs a JWKS fetch only the
//! first time, or when an unknown key id shows up.

pub mod callers;
pub mod credentials;
pub mod identities;
pub mod logins;
pub mod pools;
pub mod roles;

use std::sync::Arc;

use super::cursor::Cursors;
use super::keys::KeyService;
use super::tokens::TokenService;
use super::{Origin, ServiceError};
use crate::auth::oidc::OidcVerifier;
use crate::auth::rate_limit::{LimitKind, RateLimiter};
use crate::auth::sealing::SealingCell;
use crate::model::identity::Identity;
use crate::model::identity_pool::{validate_identity_id, IdentityPool};
use crate::raft::RaftNode;

/// Identity pools, identities, roles and credentials on one node.
#[derive(Clone)]
pub struct IdentityService {
    node: Arc<RaftNode>,
    tokens: TokenService,
    keys: KeyService,
    oidc: OidcVerifier,
    sealing: Arc<SealingCell>,
    cursors: Cursors,
    limiter: Arc<RateLimiter>,
    /// The prefix of new identity pools' ids (config `region`).
    region: String,
}

impl IdentityService {
    /// The identity service of `node`.
    pub fn new(
        node: Arc<RaftNode>,
        tokens: TokenService,
        keys: KeyService,
        oidc: OidcVerifier,
        sealing: Arc<SealingCell>,
        limiter: Arc<RateLimiter>,
    ) -> Self {
        IdentityService {
            node,
            tokens,
            keys,
            oidc,
            cursors: Cursors::new(sealing.clone()),
            sealing,
            limiter,
            region: crate::model::identity_pool::IDENTITY_ID_PREFIX.to_string(),
        }
    }

    /// New identity pools' ids lead with `region` (config `region`); an
    /// identity's id leads with its pool's.
    pub fn with_region(mut self, region: &str) -> Self {
        self.region = region.to_string();
        self
    }

    /// The cluster's public URL, the base of every issuer.
    fn public_url(&self) -> Result<String, ServiceError> {
        let issuer = self.keys.issuer("")?;
        Ok(issuer.trim_end_matches('/').to_string())
    }

    /// An identity pool that must exist: read locally and, on a miss, again
    /// after a read barrier (it may have just been created elsewhere).
    pub async fn existing_pool(&self, pool_id: &str) -> Result<IdentityPool, ServiceError> {
        validate_identity_id("identity_pool_id", pool_id)?;
        if let Some(p) = self.node.store().identity_pool(pool_id)? {
            return Ok(p);
        }
        self.node.read_barrier().await?;
        self.node
            .store()
            .identity_pool(pool_id)?
            .ok_or_else(|| ServiceError::not_found(format!("IdentityPool '{pool_id}' not found.")))
    }

    /// An identity that must exist, read like [`Self::existing_pool`].
    pub async fn existing_identity(&self, identity_id: &str) -> Result<Identity, ServiceError> {
        validate_identity_id("identity_id", identity_id)?;
        if let Some(i) = self.node.store().identity_by_id(identity_id)? {
            return Ok(i);
        }
        self.node.read_barrier().await?;
        self.node
            .store()
            .identity_by_id(identity_id)?
            .ok_or_else(|| ServiceError::not_found(format!("Identity '{identity_id}' not found.")))
    }

    /// Refuses, on a node that no quorum vouched for lately, the calls that
    /// hand out credentials from security state (roles, group membership,
    /// revocations), as sign-in does (`raft.max_staleness_ms`).
    async fn require_fresh(&self) -> Result<(), ServiceError> {
        self.node.freshness().ensure().await.map_err(|stale| {
            ServiceError::new(
                crate::service::ErrorKind::Unavailable,
                "ServiceUnavailableException",
                stale.to_string(),
            )
        })
    }

    /// Refuses a guest call beyond the per-address rate.
    fn guest_allowed(&self, origin: &Origin) -> Result<(), ServiceError> {
        if self.limiter.allow(&origin.ip, LimitKind::Guest) {
            Ok(())
        } else {
            Err(ServiceError::too_many_requests(
                "Too many guest requests from this address; retry later.",
            ))
        }
    }
}
