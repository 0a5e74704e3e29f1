//! `USER_SRP_AUTH` and its `PASSWORD_VERIFIER` challenge: Amplify's
//! default sign-in, where the password never leaves the device
//! (`crate::auth::srp` holds the arithmetic).
//!
//! # The exchange
//!
//! `InitiateAuth(USER_SRP_AUTH, USERNAME, SRP_A)` answers `PASSWORD_VERIFIER`
//! with the user's `SALT`, the server's `SRP_B`, `USER_ID_FOR_SRP` and a
//! `SECRET_BLOCK`. The client proves the password by signing the secret
//! block and Cognito's `TIMESTAMP` with the session key;
//! `RespondToAuthChallenge(PASSWORD_VERIFIER)` checks the signature and
//! continues as a password sign-in does (MFA, `NEW_PASSWORD_REQUIRED`,
//! tokens).
//!
//! # The secret block
//!
//! Cognito keeps the server's ephemeral `b` on its side. Here the secret
//! block *is* that state: `b`, `A`, `B`, the user and an expiry, sealed
//! (ChaCha20-Poly1305 under the cluster sealing key, bound to the pool and
//! the app client), so the answer can reach any node and the client can
//! neither read `b` nor change what it signs for. It also names the
//! user's credential digest, so a password change or a global sign-out in
//! between ends it.
//!
//! # Unknown users and users without a verifier
//!
//! With `PreventUserExistenceErrors`, an unknown user gets a challenge
//! that looks like a real one: a salt and a verifier derived from the
//! sealing key and the name, the same on every try and every node, and
//! the same arithmetic on answer, so neither the parameters nor the timing
//! tell. A known user whose verifier is not made yet (SRP turned on after
//! the password was set) gets the same decoy, and signs in with SRP after
//! one password sign-in has made the verifier. Both fail as a wrong
//! password does, and the audit log says why.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::signin::{param, required, AuthAnswer};
use super::{AuthService, Caller};
use crate::auth::password::PasswordHasher;
use crate::auth::srp;
use crate::command::SetSrpVerifier;
use crate::model::auth_event::{AuthEvent, AuthEventType};
use crate::model::mfa::session_binding;
use crate::model::pool::UserPool;
use crate::model::srp::{credential_digest, SrpVerifier, SALT_BYTES, VERIFIER_BYTES};
use crate::model::user::User;
use crate::raft::RaftNode;
use crate::service::{Origin, ServiceError};

/// The challenge `USER_SRP_AUTH` poses.
pub const PASSWORD_VERIFIER: &str = "PASSWORD_VERIFIER";
/// Longest `PASSWORD_CLAIM_SECRET_BLOCK` accepted (a sealed block is ~1.2 KiB).
const MAX_BLOCK_CHARS: usize = 4096;

/// The server's side of one SRP exchange, sealed into `SECRET_BLOCK`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Block {
    pub pool_id: String,
    pub client_id: String,
    /// `USER_ID_FOR_SRP`: the name the verifier is made with.
    pub user_id: String,
    /// Empty for an unknown user.
    pub sub: String,
    /// No usable verifier: the challenge was a decoy and cannot succeed.
    pub decoy: bool,
    /// The user's credential digest when the challenge was made.
    pub bind: String,
    /// Unix ms after which the answer is refused.
    pub exp_ms: i64,
    /// The server's ephemeral secret.
    pub b: [u8; 32],
    /// The client's `A` and the server's `B`, minimal big-endian bytes.
    pub big_a: Vec<u8>,
    pub big_b: Vec<u8>,
    /// The device a `DEVICE_SRP_AUTH` exchange proves; empty for a
    /// password (`USER_SRP_AUTH`).
    pub device_key: String,
}

fn incorrect() -> ServiceError {
    ServiceError::not_authorized("Incorrect username or password.")
}

/// A request's `SRP_A`, checked: hex below the group modulus, not 0 mod N.
pub(super) fn parse_srp_a(params: &BTreeMap<String, String>, field: &str) -> Result<Vec<u8>, ServiceError> {
    srp::parse_a(required(params, field, "SRP_A")?).map_err(|_| {
        ServiceError::invalid(format!(
            "{field}.SRP_A: not an SRP value (hex below the 3072-bit group modulus, not 0)"
        ))
    })
}

pub(super) fn expired() -> ServiceError {
    ServiceError::not_authorized("Invalid session for the user, session is expired.")
}

/// What `PASSWORD_VERIFIER` and `DEVICE_PASSWORD_VERIFIER` answers carry:
/// the client's claim over the secret block it got.
pub(super) struct Claim<'a> {
    /// `USERNAME` as the client sent it.
    pub username: &'a str,
    /// `PASSWORD_CLAIM_SIGNATURE`, decoded.
    pub signature: Vec<u8>,
    /// `TIMESTAMP`, in Cognito's format.
    pub timestamp: &'a str,
    /// `PASSWORD_CLAIM_SECRET_BLOCK`, decoded: what the signature covers.
    pub block_bytes: Vec<u8>,
    /// The block, opened.
    pub block: Block,
}

fn seal_context(pool_id: &str, client_id: &str) -> Vec<u8> {
    format!("tessera/srp-secret-block|{pool_id}|{client_id}").into_bytes()
}

impl AuthService {
    /// Refuses SRP on a pool that has not turned it on.
    fn require_srp(&self, pool: &UserPool) -> Result<(), ServiceError> {
        if self.node.store().pool_srp(&pool.id)?.enabled {
            Ok(())
        } else {
            Err(ServiceError::invalid(format!(
                "USER_SRP_AUTH is not enabled for user pool {}: turn on srp_enabled in UpdateUserPool (tessera pool update --srp on)",
                pool.id
            )))
        }
    }

    /// `InitiateAuth(USER_SRP_AUTH)`.
    pub(super) async fn user_srp_auth(
        &self,
        caller: Caller,
        params: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let Caller { pool, client } = caller;
        self.require_srp(&pool)?;
        let username = required(params, "auth_parameters", "USERNAME")?;
        if username.chars().count() > 128 {
            return Err(ServiceError::invalid(
                "auth_parameters.USERNAME: at most 128 characters",
            ));
        }
        let big_a = parse_srp_a(params, "auth_parameters")?;
        self.check_secret_hash(&client, &[username], param(params, "SECRET_HASH"))?;
        let user = self.find_user(&pool, username).await?;
        self.pre_authentication(&pool, &client.client_id, username, user.as_ref(), origin)
            .await?;
        if user.is_none() && !client.prevent_user_existence_errors {
            self.audit_srp_failure(&pool, &client.client_id, username, "", origin, "no such user")
                .await?;
            return Err(ServiceError::user_not_found());
        }
        let current = match &user {
            Some(u) => self
                .node
                .store()
                .user_srp(&pool.id, &u.sub)?
                .filter(|v| v.is_current_for(u)),
            None => None,
        };
        let user_id = user.as_ref().map_or(username, |u| u.username.as_str()).to_string();
        let (salt, verifier, decoy) = match current {
            Some(v) => (v.salt, v.verifier, false),
            None => {
                let (salt, verifier) = self.decoy(&pool.id, &user_id)?;
                (salt, verifier, true)
            }
        };
        let b = crate::clock::random_bytes::<32>();
        let big_b = self
            .hasher
            .compute(move || srp::server_public(&verifier, &b))
            .await?
            .map_err(|e| ServiceError::internal(format!("SRP: {e}")))?;
        let validity = self.node.store().pool_mfa(&pool.id)?.session_validity_secs;
        let block = Block {
            pool_id: pool.id.clone(),
            client_id: client.client_id.clone(),
            user_id: user_id.clone(),
            sub: user.as_ref().map(|u| u.sub.clone()).unwrap_or_default(),
            decoy,
            bind: user.as_ref().map(session_binding).unwrap_or_default(),
            exp_ms: crate::clock::now_millis() + i64::from(validity) * 1000,
            b,
            big_a,
            big_b: big_b.clone(),
            device_key: String::new(),
        };
        let mut parameters = BTreeMap::new();
        parameters.insert("SALT".to_string(), hex::encode(&salt));
        parameters.insert("SRP_B".to_string(), srp::to_hex(&big_b));
        parameters.insert("SECRET_BLOCK".to_string(), STANDARD.encode(self.seal_block(&block)?));
        parameters.insert("USERNAME".to_string(), user_id.clone());
        parameters.insert("USER_ID_FOR_SRP".to_string(), user_id);
        Ok(AuthAnswer::Challenge {
            name: PASSWORD_VERIFIER.to_string(),
            session: String::new(),
            parameters,
            available: Vec::new(),
        })
    }

    /// `RespondToAuthChallenge(PASSWORD_VERIFIER)`: `USERNAME`,
    /// `PASSWORD_CLAIM_SECRET_BLOCK`, `PASSWORD_CLAIM_SIGNATURE`,
    /// `TIMESTAMP` (and `SECRET_HASH` for a client with a secret).
    pub(super) async fn password_verifier_answer(
        &self,
        caller: Caller,
        responses: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let Caller { pool, client } = caller;
        self.require_srp(&pool)?;
        let Claim {
            username,
            signature,
            timestamp,
            block_bytes,
            block,
        } = self.read_claim(&pool.id, &client.client_id, responses)?;
        if !block.device_key.is_empty() {
            return Err(expired());
        }
        self.check_secret_hash(&client, &[username], param(responses, "SECRET_HASH"))?;
        let norm = |s: &str| pool.settings.normalize_username(s);
        if norm(username) != norm(&block.user_id) && username != block.sub {
            return Err(incorrect());
        }
        let realm = srp::pool_realm(&pool.id).to_string();
        let expected = |verifier: Vec<u8>| {
            let (block, realm, block_bytes, timestamp) =
                (block.clone(), realm.clone(), block_bytes.clone(), timestamp.to_string());
            move || {
                srp::server_key(&block.big_a, &verifier, &block.b, &block.big_b)
                    .map(|key| srp::claim_signature(&key, &realm, &block.user_id, &block_bytes, &timestamp))
            }
        };
        let user = match block.sub.as_str() {
            "" => None,
            sub => self.user_by_sub(&pool.id, sub).await?,
        };
        let verifier = match &user {
            Some(u) if !block.decoy && session_binding(u) == block.bind => self
                .node
                .store()
                .user_srp(&pool.id, &u.sub)?
                .filter(|v| v.is_current_for(u)),
            _ => None,
        };
        let Some((user, verifier)) = user.zip(verifier) else {
            // The same work as a real answer, then the same refusal.
            let (_, decoy) = self.decoy(&pool.id, &block.user_id)?;
            let _ = self.hasher.compute(expected(decoy)).await?;
            let why = if block.sub.is_empty() {
                "no such user"
            } else {
                "no SRP verifier for the current password (one password sign-in makes it)"
            };
            self.audit_srp_failure(&pool, &client.client_id, &block.user_id, &block.sub, origin, why)
                .await?;
            return Err(incorrect());
        };
        let slot = self.check_lockout(&pool.id, &user.sub).await?;
        let computed = self
            .hasher
            .compute(expected(verifier.verifier))
            .await?
            .map_err(|_| incorrect());
        let ok = computed.is_ok_and(|sig| srp::signature_matches(&sig, &signature));
        if !ok {
            self.record_failure(
                &pool.id,
                &client.client_id,
                &user,
                origin,
                "incorrect password (SRP)",
                slot,
            )
            .await?;
            return Err(incorrect());
        }
        self.finish_sign_in(pool, client, user, Some(slot), origin).await
    }

    /// [`remember_verifier`] with this service's node and hasher.
    pub(crate) async fn remember_srp(&self, pool_id: &str, user: &User, phc: &str, password: &str) {
        remember_verifier(&self.node, &self.hasher, pool_id, user, phc, password).await;
    }

    /// The decoy salt and verifier of a name: HMAC of the sealing key, so
    /// stable across tries and nodes and unpredictable without the key.
    /// Any residue is a plausible verifier, so no exponentiation is
    /// needed to make one.
    fn decoy(&self, pool_id: &str, user_id: &str) -> Result<(Vec<u8>, Vec<u8>), ServiceError> {
        let key = crate::service::sealing_key(&self.sealing)?;
        let mut out = Vec::with_capacity(SALT_BYTES + VERIFIER_BYTES);
        let mut counter = 0u8;
        while out.len() < SALT_BYTES + VERIFIER_BYTES {
            let mut mac =
                <Hmac<Sha256> as Mac>::new_from_slice(key.raw()).map_err(|_| ServiceError::internal("HMAC key"))?;
            mac.update(b"tessera/srp-decoy\0");
            mac.update(pool_id.as_bytes());
            mac.update(&[0]);
            mac.update(user_id.to_lowercase().as_bytes());
            mac.update(&[counter]);
            out.extend_from_slice(&mac.finalize().into_bytes());
            counter += 1;
        }
        let mut salt: [u8; SALT_BYTES] = [0; SALT_BYTES];
        salt.copy_from_slice(&out[..SALT_BYTES]);
        let mut verifier = out[SALT_BYTES..SALT_BYTES + VERIFIER_BYTES].to_vec();
        // Below N, whose top 64 bits are all ones.
        verifier[0] &= 0x7f;
        Ok((srp::user_salt(salt).to_vec(), verifier))
    }

    /// Reads and checks a claim's fields and opens its secret block.
    pub(super) fn read_claim<'a>(
        &self,
        pool_id: &str,
        client_id: &str,
        responses: &'a BTreeMap<String, String>,
    ) -> Result<Claim<'a>, ServiceError> {
        let username = required(responses, "challenge_responses", "USERNAME")?;
        let block_b64 = required(responses, "challenge_responses", "PASSWORD_CLAIM_SECRET_BLOCK")?;
        let signature = required(responses, "challenge_responses", "PASSWORD_CLAIM_SIGNATURE")?;
        let timestamp = required(responses, "challenge_responses", "TIMESTAMP")?;
        if !srp::valid_timestamp(timestamp) {
            return Err(ServiceError::invalid(
                "challenge_responses.TIMESTAMP: expected Cognito's format, e.g. \"Sun Dec 6 17:02:03 UTC 2026\"",
            ));
        }
        let signature = STANDARD
            .decode(signature)
            .map_err(|_| ServiceError::invalid("challenge_responses.PASSWORD_CLAIM_SIGNATURE: not base64"))?;
        if block_b64.len() > MAX_BLOCK_CHARS {
            return Err(expired());
        }
        let block_bytes = STANDARD.decode(block_b64).map_err(|_| expired())?;
        let block = self.open_block(pool_id, client_id, &block_bytes)?;
        Ok(Claim {
            username,
            signature,
            timestamp,
            block_bytes,
            block,
        })
    }

    pub(super) fn seal_block(&self, block: &Block) -> Result<Vec<u8>, ServiceError> {
        let plain = crate::store::codec::encode(block)
            .map_err(|e| ServiceError::internal(format!("encoding an SRP block: {e}")))?;
        self.seal_state(&seal_context(&block.pool_id, &block.client_id), &plain)
    }

    fn open_block(&self, pool_id: &str, client_id: &str, bytes: &[u8]) -> Result<Block, ServiceError> {
        // The context names the pool and the client: a block made for
        // another client or pool does not open here.
        let plain = self
            .open_state(&seal_context(pool_id, client_id), bytes)?
            .ok_or_else(expired)?;
        let block: Block = crate::store::codec::decode(&plain).map_err(|_| expired())?;
        if block.pool_id != pool_id || block.client_id != client_id || crate::clock::now_millis() >= block.exp_ms {
            return Err(expired());
        }
        Ok(block)
    }

    async fn audit_srp_failure(
        &self,
        pool: &UserPool,
        client_id: &str,
        username: &str,
        sub: &str,
        origin: &Origin,
        why: &str,
    ) -> Result<(), ServiceError> {
        let event = AuthEvent::draft(&pool.id, AuthEventType::SignIn, crate::clock::now_millis())
            .user(username, sub)
            .origin(client_id, &origin.ip)
            .detail(format!("USER_SRP_AUTH: {why}"))
            .failed();
        self.audit.record_now(event).await
    }
}

/// Makes and stores `user`'s verifier for `password` (whose hash is `phc`)
/// when the pool has SRP on and the stored one is missing or for another
/// password. Called wherever a password is seen: sign-up, admin-set
/// passwords, changes and resets, and password sign-ins. A failure is
/// logged and costs only SRP sign-ins until the password is seen again.
pub(crate) async fn remember_verifier(
    node: &RaftNode,
    hasher: &PasswordHasher,
    pool_id: &str,
    user: &User,
    phc: &str,
    password: &str,
) {
    if let Err(e) = try_remember(node, hasher, pool_id, user, phc, password).await {
        tracing::warn!(pool_id, error = %e, "could not store an SRP verifier");
    }
}

async fn try_remember(
    node: &RaftNode,
    hasher: &PasswordHasher,
    pool_id: &str,
    user: &User,
    phc: &str,
    password: &str,
) -> Result<(), ServiceError> {
    let store = node.store();
    if !store.pool_srp(pool_id)?.enabled {
        return Ok(());
    }
    let credential = credential_digest(phc);
    if store
        .user_srp(pool_id, &user.sub)?
        .is_some_and(|v| v.credential == credential)
    {
        return Ok(());
    }
    let salt = srp::user_salt(crate::clock::random_bytes::<16>());
    let (realm, user_id, password) = (
        srp::pool_realm(pool_id).to_string(),
        user.username.clone(),
        password.to_string(),
    );
    let verifier = hasher
        .compute(move || srp::verifier(&realm, &user_id, &password, &salt))
        .await?;
    let cmd = SetSrpVerifier {
        pool_id: pool_id.to_string(),
        sub: user.sub.clone(),
        verifier: SrpVerifier {
            salt: salt.to_vec(),
            verifier,
            credential,
            set_at: crate::clock::now_millis(),
        },
    };
    crate::service::submit(node, cmd).await
}
