//! The public user-pool flows of `tessera.v1.Auth`: sign-up and
//! confirmation ([`signup`]), password sign-in, refresh and challenges
//! ([`signin`]), and what a signed-in user can do with an access token
//! ([`session`]).
//!
//! Callers are identified by app client id, plus `SECRET_HASH` when the
//! client has a secret. Successful sign-ins and refreshes read only the
//! local state and sign with this node's key; writes (sign-up, confirm,
//! sign-out, revocation) go through Raft.

pub mod custom;
pub mod devices;
pub mod federated;
pub mod hooks;
pub mod hosted;
pub mod mfa;
pub mod migration;
pub mod passwordless;
pub mod profile;
pub mod recovery;
pub mod rehash;
pub mod session;
pub mod signin;
pub mod signup;
pub mod srp;
pub mod webauthn;

use crate::auth::codes::{hash_code, CodeRecord};
use crate::command::IssueCode;
use crate::store::auth_state::CodePurpose;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

use super::audit::AuditService;
use super::tokens::TokenService;
use super::{ErrorKind, Origin, ServiceError};
use crate::auth::attempts::Attempts;
use crate::auth::password::PasswordHasher;
use crate::auth::rate_limit::{LimitKind, RateLimiter};
use crate::auth::sealing::SealingCell;
use crate::auth::secret_hash::verify_secret_hash;
use crate::model::app_client::{validate_client_id, AppClient};
use crate::model::pool::UserPool;
use crate::model::pool_settings::{Argon2Params, SignInAlias};
use crate::model::user::User;
use crate::raft::RaftNode;

/// Most entries in `auth_parameters`, `challenge_responses` or
/// `client_metadata`.
pub const MAX_PARAMETERS: usize = 50;
/// Longest key or value in those maps (a refresh token fits easily).
pub const MAX_PARAMETER_BYTES: usize = 16 * 1024;

/// Dummy password hashes by argon2 cost (m, t, p).
type DummyHashes = BTreeMap<(u32, u32, u32), String>;

/// The user-facing auth flows of one node.
#[derive(Clone)]
pub struct AuthService {
    node: Arc<RaftNode>,
    tokens: TokenService,
    hasher: PasswordHasher,
    sealing: Arc<SealingCell>,
    /// Whether this node's courier backend delivers messages (else they
    /// are only stored in the outbox).
    deliver: bool,
    /// A hash of a random password per argon2 cost, verified against when a
    /// user does not exist so that the answer takes as long as for a real
    /// user.
    dummy_hashes: Arc<Mutex<DummyHashes>>,
    audit: AuditService,
    limiter: Arc<RateLimiter>,
    /// Password guesses in flight and failures not yet replicated, per
    /// user, so that the lockout holds under parallel guesses and on a
    /// node that cannot commit (`crate::auth::attempts`).
    attempts: Arc<Attempts>,
    /// Verifies external providers' id tokens (federated sign-in).
    oidc: crate::auth::oidc::OidcVerifier,
    /// Calls the pools' triggers ([`hooks`]).
    triggers: crate::service::triggers::Triggers,
    /// Where this node's HTTP API is reached from outside, without a
    /// trailing slash: the base of magic links (`Config::public_url`).
    public_url: String,
}

/// The app client a call names, with its pool.
pub(crate) struct Caller {
    pub pool: UserPool,
    pub client: AppClient,
}

impl AuthService {
    /// The guest-facing auth service of `node`. `deliver` says whether a courier backend sends messages (else they are only stored); `limiter` holds the per-address rate limits.
    #[allow(
        clippy::too_many_arguments,
        reason = "built once, by node::start, from the node's shared parts"
    )]
    pub fn new(
        node: Arc<RaftNode>,
        tokens: TokenService,
        hasher: PasswordHasher,
        sealing: Arc<SealingCell>,
        deliver: bool,
        audit: AuditService,
        limiter: Arc<RateLimiter>,
        oidc: crate::auth::oidc::OidcVerifier,
    ) -> Self {
        AuthService {
            triggers: crate::service::triggers::Triggers::new(node.clone(), sealing.clone()),
            node,
            tokens,
            hasher,
            sealing,
            deliver,
            dummy_hashes: Arc::new(Mutex::new(BTreeMap::new())),
            audit,
            limiter,
            attempts: Arc::new(Attempts::default()),
            oidc,
            public_url: String::new(),
        }
    }

    /// The same service, with magic links pointing at `url` (this node's
    /// HTTP API as reached from outside, `Config::public_url`).
    pub fn with_public_url(mut self, url: &str) -> Self {
        self.public_url = url.trim_end_matches('/').to_string();
        self
    }

    /// Bounded staleness: refuses a call that depends on security state
    /// (sign-in, refresh, challenge answers, every access-token call) when
    /// no quorum has vouched for this node's state within `max_staleness`,
    /// so a node cut off from the majority cannot honour a token, password
    /// or user revoked there. Called first by each such entry point; a
    /// fresh node pays one uncontended read lock. Tokens already issued still verify
    /// offline: only this node's own answers are held back.
    pub(crate) async fn require_fresh(&self) -> Result<(), ServiceError> {
        self.node.freshness().ensure().await.map_err(|stale| {
            tracing::debug!(%stale, "refused: stale node");
            ServiceError::new(ErrorKind::Unavailable, "ServiceUnavailableException", stale.to_string())
        })
    }

    /// Refuses a caller over its per-address rate for `kind`.
    pub(crate) fn limit(&self, origin: &Origin, kind: LimitKind) -> Result<(), ServiceError> {
        if self.limiter.allow(&origin.ip, kind) {
            Ok(())
        } else {
            self.node.metrics().rate_limited.inc();
            Err(ServiceError::too_many_requests(
                "Too many requests from this address; slow down and retry later.",
            ))
        }
    }

    /// Refuses a message to a destination that was sent too many already,
    /// whichever accounts named it.
    pub(crate) fn limit_destination(&self, destination: &str) -> Result<(), ServiceError> {
        if self.limiter.allow_destination(destination) {
            Ok(())
        } else {
            self.node.metrics().rate_limited.inc();
            Err(ServiceError::limit_exceeded(
                "Attempt limit exceeded for this destination, please try after some time.",
            ))
        }
    }

    /// The app client `client_id` and its pool. A client unknown here may
    /// have just been created through another node, so a miss is retried
    /// once after a read barrier.
    pub(crate) async fn caller(&self, client_id: &str) -> Result<Caller, ServiceError> {
        validate_client_id(client_id)?;
        let store = self.node.store();
        let client = match store.app_client(client_id)? {
            Some(c) => c,
            None => {
                self.node.read_barrier().await?;
                store
                    .app_client(client_id)?
                    .ok_or_else(|| ServiceError::not_found(format!("User pool client {client_id} does not exist.")))?
            }
        };
        let pool = store
            .pool(&client.pool_id)?
            .ok_or_else(|| ServiceError::not_found(format!("User pool {} does not exist.", client.pool_id)))?;
        Ok(Caller { pool, client })
    }

    /// The client's secret, unsealed, if it has one.
    pub(crate) fn client_secret(&self, client: &AppClient) -> Result<Option<String>, ServiceError> {
        let Some(sealed) = &client.secret else {
            return Ok(None);
        };
        let key = self.sealing.get().ok_or_else(|| {
            ServiceError::internal("this node has no cluster sealing key yet and cannot check client secrets")
        })?;
        key.open(&client.pool_id, &client.client_id, sealed)
            .map(Some)
            .map_err(|e| ServiceError::internal(e.to_string()))
    }

    /// Enforces `SECRET_HASH` for clients with a secret. `usernames` are the
    /// names the hash may have been computed over (the one the caller sent,
    /// or for a refresh, the user's username or sub).
    pub(crate) fn check_secret_hash(
        &self,
        client: &AppClient,
        usernames: &[&str],
        presented: &str,
    ) -> Result<(), ServiceError> {
        let Some(secret) = self.client_secret(client)? else {
            return Ok(());
        };
        if presented.is_empty() {
            return Err(ServiceError::not_authorized(format!(
                "Client {} is configured with secret but SECRET_HASH was not received",
                client.client_id
            )));
        }
        let mut ok = false;
        for name in usernames {
            // No early exit: the work does not depend on which name matched.
            ok |= verify_secret_hash(&secret, name, &client.client_id, presented);
        }
        if ok {
            Ok(())
        } else {
            Err(ServiceError::not_authorized(format!(
                "Unable to verify secret hash for client {}",
                client.client_id
            )))
        }
    }

    /// Finds a user by username, or by a verified alias the pool allows.
    /// A miss is retried once after a read barrier, since the user may
    /// have just been created through another node.
    pub(crate) async fn find_user(&self, pool: &UserPool, name: &str) -> Result<Option<User>, ServiceError> {
        if let Some(u) = self.lookup(pool, name)? {
            return Ok(Some(u));
        }
        self.node.read_barrier().await?;
        self.lookup(pool, name)
    }

    /// `user`, re-read after a read barrier when the local copy would be
    /// refused (`refused`), or always when `always` (a client that hides
    /// user existence pays the barrier on every answer, as an unknown
    /// user does). A change just made through another node, such as a
    /// confirmation or a verified email, is then seen before anyone is
    /// refused; an answer that succeeds locally costs no round trip.
    pub(crate) async fn fresh_user(
        &self,
        pool: &UserPool,
        name: &str,
        user: User,
        always: bool,
        refused: impl Fn(&User) -> bool,
    ) -> Result<User, ServiceError> {
        if !always && !refused(&user) {
            return Ok(user);
        }
        self.node.read_barrier().await?;
        Ok(self.lookup(pool, name)?.unwrap_or(user))
    }

    /// What an unknown user's code request costs: an audited `IssueCode`
    /// of the same shape as a real one (a code record bound to a value and
    /// a sealed message), for no user, so apply refuses it. Sealing, the
    /// log entry and apply's reads match a known user's request, so the
    /// two answers take the same time; the event names no user, so floods
    /// of them are aggregated in the audit log.
    pub(crate) async fn decoy_code_send(
        &self,
        pool: &UserPool,
        event: crate::model::auth_event::AuthEvent,
        purpose: crate::store::auth_state::CodePurpose,
        kind: crate::model::outbox::MessageKind,
    ) -> Result<(), ServiceError> {
        use crate::auth::codes::{code_from_random, CodeRecord};
        let now = crate::clock::now_millis();
        let code = code_from_random(crate::clock::random_bytes::<8>());
        let destination = format!("{}@unknown.invalid", hex::encode(crate::clock::random_bytes::<6>()));
        let record = CodeRecord::issue(&code, crate::clock::random_bytes::<16>(), now)
            .bound_to(SignInAlias::Email, &destination);
        let message = crate::service::outbox::code_message(
            &*crate::service::sealing_key(&self.sealing)?,
            pool,
            &event.username,
            kind,
            crate::model::outbox::DeliveryMedium::Email,
            &destination,
            &code,
            None,
            self.deliver,
        );
        let cmd = IssueCode {
            pool_id: pool.id.clone(),
            sub: String::new(),
            purpose,
            record,
            message: Some(message),
            now,
        };
        crate::service::propose_audited(&self.node, cmd, event.detail("no such user").failed()).await?;
        Ok(())
    }

    pub(crate) fn lookup(&self, pool: &UserPool, name: &str) -> Result<Option<User>, ServiceError> {
        let store = self.node.store();
        if let Some(sub) = store.sub_by_username(&pool.id, &pool.settings.normalize_username(name))? {
            return Ok(store.user(&pool.id, &sub)?);
        }
        for alias in &pool.settings.alias_attributes {
            let key = match alias {
                SignInAlias::Email if name.contains('@') => name.to_lowercase(),
                SignInAlias::PhoneNumber if name.starts_with('+') => name.to_string(),
                _ => continue,
            };
            if let Some(sub) = store.sub_by_alias(&pool.id, *alias, &key)? {
                let user = store.user(&pool.id, &sub)?;
                // An alias signs in only once its value is verified.
                return Ok(user.filter(|u| match alias {
                    SignInAlias::Email => u.email_verified,
                    SignInAlias::PhoneNumber => u.phone_number_verified,
                }));
            }
        }
        Ok(None)
    }

    /// A user by sub, with a read barrier on a miss.
    pub(crate) async fn user_by_sub(&self, pool_id: &str, sub: &str) -> Result<Option<User>, ServiceError> {
        let store = self.node.store();
        if let Some(u) = store.user(pool_id, sub)? {
            return Ok(Some(u));
        }
        self.node.read_barrier().await?;
        Ok(store.user(pool_id, sub)?)
    }

    /// Verifies `password` against `user`'s hash, or against a dummy hash
    /// of the same cost when there is no user, so that both take as long.
    pub(crate) async fn check_password(
        &self,
        pool: &UserPool,
        user: Option<&User>,
        password: &str,
    ) -> Result<bool, ServiceError> {
        match user.and_then(|u| u.password_phc.as_deref()) {
            Some(phc) => Ok(self.hasher.verify(password, phc).await?),
            None => {
                let dummy = self.dummy_hash(pool.settings.argon2).await?;
                self.hasher.verify(password, &dummy).await?;
                Ok(false)
            }
        }
    }

    async fn dummy_hash(&self, p: Argon2Params) -> Result<String, ServiceError> {
        let key = (p.m_kib, p.t, p.p);
        if let Some(h) = self.lock_dummies().get(&key) {
            return Ok(h.clone());
        }
        let random = hex::encode(crate::clock::random_bytes::<16>());
        let h = self.hasher.hash(&random, crate::clock::random_bytes::<16>(), p).await?;
        self.lock_dummies().insert(key, h.clone());
        Ok(h)
    }

    fn lock_dummies(&self) -> std::sync::MutexGuard<'_, DummyHashes> {
        match self.dummy_hashes.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl AuthService {
    /// The user's pending code for `purpose` and `code` hashed with its
    /// salt, read so that a node behind the leader neither loses a fresh
    /// code nor judges a guess against an old one.
    ///
    /// Why: the code may have been issued through another node a moment
    /// ago (ForgotPassword on one node, the emailed code confirmed on
    /// another). A local read that finds no code, or a code the guess does
    /// not match, may be stale: it would answer `ExpiredCodeException` for
    /// a code that exists, or hash a right guess with the old code's salt,
    /// so that `apply` counts it as a wrong attempt. Either way this waits
    /// for a read barrier and reads again; a guess that matches needs no
    /// barrier (`apply` still checks it against the latest code).
    ///
    /// `fresh`: this request already waited for a read barrier, so the
    /// local read is current. A client that hides user existence pays one
    /// for every answer, known user or not; a second one here, only for
    /// known users' wrong codes, would make them measurably slower than
    /// unknown users' and tell the two apart.
    pub(crate) async fn pending_code(
        &self,
        pool_id: &str,
        sub: &str,
        purpose: CodePurpose,
        code: &str,
        fresh: bool,
    ) -> Result<Option<(CodeRecord, [u8; 32])>, ServiceError> {
        let read = || -> Result<Option<(CodeRecord, [u8; 32])>, ServiceError> {
            Ok(self.node.store().code(pool_id, sub, purpose)?.map(|record| {
                let guess = hash_code(&record.salt, code);
                (record, guess)
            }))
        };
        match read()? {
            found if fresh => Ok(found),
            Some((record, guess)) if bool::from(guess[..].ct_eq(&record.hash[..])) => Ok(Some((record, guess))),
            _ => {
                self.node.read_barrier().await?;
                read()
            }
        }
    }

    /// Seals a challenge's server-side state (ChaCha20-Poly1305 under the
    /// cluster sealing key, `context` as additional data) into
    /// `nonce | ciphertext`: the client carries it, any node opens it, and
    /// nobody can read or change it.
    pub(crate) fn seal_state(&self, context: &[u8], plain: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let key = crate::service::sealing_key(&self.sealing)?;
        let sealed = key.seal_bytes(context, plain, crate::clock::random_bytes::<12>());
        let mut bytes = sealed.nonce.to_vec();
        bytes.extend_from_slice(&sealed.ciphertext);
        Ok(bytes)
    }

    /// Opens what [`Self::seal_state`] sealed under the same `context`;
    /// `Ok(None)` for anything else (another context, a changed bit, too
    /// short).
    pub(crate) fn open_state(&self, context: &[u8], bytes: &[u8]) -> Result<Option<Vec<u8>>, ServiceError> {
        if bytes.len() < 12 {
            return Ok(None);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let Ok(nonce) = nonce.try_into() else {
            return Ok(None);
        };
        let sealed = crate::model::app_client::SealedSecret {
            nonce,
            ciphertext: ciphertext.to_vec(),
        };
        let key = crate::service::sealing_key(&self.sealing)?;
        Ok(key.open_bytes(context, &sealed))
    }
}

/// Checks the size of a parameter map from a request.
pub fn check_parameters(field: &'static str, map: &BTreeMap<String, String>) -> Result<(), ServiceError> {
    if map.len() > MAX_PARAMETERS {
        return Err(ServiceError::invalid(format!(
            "{field}: at most {MAX_PARAMETERS} entries"
        )));
    }
    if map.iter().any(|(k, v)| k.len() > 256 || v.len() > MAX_PARAMETER_BYTES) {
        return Err(ServiceError::invalid(format!(
            "{field}: keys are at most 256 bytes and values at most {MAX_PARAMETER_BYTES} bytes"
        )));
    }
    Ok(())
}
