//! Apply logic of the OAuth side of a pool: resource servers and app
//! clients with their OAuth settings.
//!
//! Whether a client's custom scopes exist is decided here, against the
//! resource servers as applied, so a client and a resource-server change
//! racing on two nodes cannot leave a client allowed a scope that was
//! never defined. A scope deleted later stays in the client's settings
//! (as in Cognito) but is granted by no token: the token endpoint checks
//! each scope against the resource servers when it signs.

use serde::{Deserialize, Serialize};

use super::pools::put_client;
use super::{not_found, Apply, ApplyError, Outcome, Rejection};
use crate::model::app_client::AppClient;
use crate::model::oauth_client::{ClientOAuth, COGNITO_PROVIDER};
use crate::model::resource_server::{ResourceServer, MAX_RESOURCE_SERVERS_PER_POOL};
use crate::store::keys::{pool_key, Table};
use crate::store::{codec, SmBatch, Store};

/// Creates (`create`) or replaces a resource server of a user pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResourceServer {
    /// The server as the proposer validated it.
    pub server: ResourceServer,
    /// `CreateResourceServer` rather than `UpdateResourceServer`.
    pub create: bool,
}

impl Apply for PutResourceServer {
    type Output = ResourceServer;

    fn validate(&self) -> Result<(), Rejection> {
        self.server.validate().map_err(|e| Rejection::Invalid(e.to_string()))
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let s = &self.server;
        if store.pool(&s.pool_id)?.is_none() {
            return Ok(not_found("user pool", &s.pool_id));
        }
        match (store.resource_server(&s.pool_id, &s.identifier)?, self.create) {
            (Some(_), true) => {
                return Ok(Outcome::Rejected(Rejection::AlreadyExists {
                    kind: "resource server".into(),
                    id: s.identifier.clone(),
                }))
            }
            (None, false) => return Ok(not_found("resource server", &s.identifier)),
            (Some(_), false) => {}
            (None, true) => {
                if store
                    .resource_servers_page(&s.pool_id, None, MAX_RESOURCE_SERVERS_PER_POOL)?
                    .len()
                    >= MAX_RESOURCE_SERVERS_PER_POOL
                {
                    return Ok(Outcome::Rejected(Rejection::LimitExceeded(format!(
                        "a user pool has at most {MAX_RESOURCE_SERVERS_PER_POOL} resource servers"
                    ))));
                }
            }
        }
        batch.put(
            Table::ResourceServers,
            &pool_key(&s.pool_id, s.identifier.as_bytes()),
            &codec::encode(s)?,
        )?;
        Ok(Outcome::ResourceServer(s.clone()))
    }
}

/// Deletes a resource server. Clients keep the names of its scopes in
/// their settings, but no token grants them any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResourceServer {
    /// The user pool.
    pub pool_id: String,
    /// The server's identifier.
    pub identifier: String,
}

impl Apply for DeleteResourceServer {
    type Output = ResourceServer;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let Some(s) = store.resource_server(&self.pool_id, &self.identifier)? else {
            return Ok(not_found("resource server", &self.identifier));
        };
        batch.delete(
            Table::ResourceServers,
            &pool_key(&self.pool_id, self.identifier.as_bytes()),
        )?;
        Ok(Outcome::ResourceServer(s))
    }
}

/// Creates (`create`) or replaces an app client together with its OAuth
/// settings, in one write. A replacement keeps the stored secret and
/// creation date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutAppClient {
    /// The client as the proposer wants it stored (a new one carries its
    /// sealed secret).
    pub client: AppClient,
    /// Its OAuth settings, replacing the stored ones.
    pub oauth: ClientOAuth,
    /// `CreateUserPoolClient` (refused if it exists) rather than an
    /// update (refused if it does not).
    pub create: bool,
}

impl Apply for PutAppClient {
    type Output = (AppClient, ClientOAuth);

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let c = &self.client;
        if store.pool(&c.pool_id)?.is_none() {
            return Ok(not_found("user pool", &c.pool_id));
        }
        // The secret the client will have: a new client's own, or the
        // stored one that a replacement keeps.
        let has_secret = match (store.app_client(&c.client_id)?, self.create) {
            (Some(_), true) => {
                return Ok(Outcome::Rejected(Rejection::AlreadyExists {
                    kind: "app client".into(),
                    id: c.client_id.clone(),
                }))
            }
            (Some(old), false) if old.pool_id == c.pool_id => old.secret.is_some(),
            (_, false) => return Ok(not_found("app client", &c.client_id)),
            (None, true) => c.secret.is_some(),
        };
        if let Err(e) = self.oauth.validate(has_secret) {
            return Ok(Outcome::Rejected(Rejection::Invalid(e.to_string())));
        }
        for scope in self.oauth.custom_scopes() {
            if !store.scope_exists(&c.pool_id, scope)? {
                return Ok(not_found("scope", scope));
            }
        }
        for p in self.oauth.identity_providers.iter().filter(|p| *p != COGNITO_PROVIDER) {
            if store.identity_provider(&c.pool_id, p)?.is_none() {
                return Ok(Outcome::Rejected(Rejection::Invalid(format!(
                    "supported_identity_providers: the provider {p} does not exist in user pool {}",
                    c.pool_id
                ))));
            }
        }
        let stored = match put_client(store, batch, c, self.create)? {
            Outcome::AppClient(stored) => stored,
            other => return Ok(other),
        };
        if self.oauth == ClientOAuth::default() {
            batch.delete(Table::AppClientOAuth, c.client_id.as_bytes())?;
        } else {
            batch.put(
                Table::AppClientOAuth,
                c.client_id.as_bytes(),
                &codec::encode(&self.oauth)?,
            )?;
        }
        Ok(Outcome::OAuthAppClient(Box::new((stored, self.oauth.clone()))))
    }
}

/// The key of a spent code: ordered by expiry within the pool.
pub fn spent_code_key(pool_id: &str, expires_at: i64, code_id: &str) -> Vec<u8> {
    let mut rest = (expires_at.max(0) as u64).to_be_bytes().to_vec();
    rest.extend_from_slice(code_id.as_bytes());
    pool_key(pool_id, &rest)
}

/// Spends an authorization code at its exchange (`/oauth2/token`): the
/// first spend records the token family it starts; a second is a replay,
/// refused, and revokes that family (RFC 6749 §4.1.2: a code used twice
/// may have been stolen, so what it issued must stop working).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendAuthorizationCode {
    /// The user pool.
    pub pool_id: String,
    /// The code's random id (from its sealed body).
    pub code_id: String,
    /// When the code expires (Unix ms); the record is kept until then.
    pub expires_at: i64,
    /// The family (`origin_jti`) of the tokens this spend will mint.
    pub origin_jti: String,
    /// When the family's refresh token expires (Unix ms), for the
    /// revocation a replay writes.
    pub family_expires_at: i64,
    /// The proposer's clock (Unix ms): spent codes that expired before it
    /// are pruned.
    pub now: i64,
}

impl Apply for SpendAuthorizationCode {
    type Output = ();

    /// A peer's entry is decoded, not trusted: ids as the token endpoint
    /// draws them (32 hex characters for a code, a UUID for a family).
    fn validate(&self) -> Result<(), Rejection> {
        let hex32 = self.code_id.len() == 32 && self.code_id.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex32 || self.origin_jti.is_empty() || self.origin_jti.len() > 64 || self.pool_id.len() > 128 {
            return Err(Rejection::Invalid("malformed authorization code spend".into()));
        }
        Ok(())
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if store.pool(&self.pool_id)?.is_none() {
            return Ok(not_found("user pool", &self.pool_id));
        }
        let key = spent_code_key(&self.pool_id, self.expires_at, &self.code_id);
        if let Some(v) = store.sm_get(Table::SpentCodes, &key)? {
            let (family, family_expires_at): (String, i64) = codec::decode(&v)?;
            super::tokens::revoke(store, batch, &self.pool_id, &family, family_expires_at)?;
            return Ok(Outcome::Rejected(Rejection::ResourceConflict(
                "the authorization code was already used; the tokens issued for it are revoked".into(),
            )));
        }
        if self.expires_at <= self.now {
            return Ok(Outcome::Rejected(Rejection::Invalid(
                "the authorization code has expired".into(),
            )));
        }
        // Prune what expired, oldest first.
        super::spent::prune_expired(store, batch, Table::SpentCodes, &self.pool_id, self.now)?;
        batch.put(
            Table::SpentCodes,
            &key,
            &codec::encode(&(self.origin_jti.clone(), self.family_expires_at))?,
        )?;
        Ok(Outcome::Done)
    }
}
