//! Multi-factor authentication in the user flows: the challenge that
//! follows a correct password (`SOFTWARE_TOKEN_MFA`, `MFA_SETUP`,
//! `SELECT_MFA_TYPE`; `SMS_MFA` and `EMAIL_OTP` send their code through
//! [`super::passwordless`]) and its answers, software-token association and
//! verification (`AssociateSoftwareToken`, `VerifySoftwareToken`),
//! `SetUserMFAPreference` and recovery codes (`GenerateRecoveryCodes`, a
//! Tessera addition, answered as `RECOVERY_CODE`).
//!
//! # Sessions
//!
//! A challenge session is a token signed by the node that issued it, so
//! any node can check it: it names the pool, the app client, the user
//! (`sub`) and the challenge, expires after the pool's session validity
//! (3 minutes by default), and carries `bind`, a digest of the user's
//! password hash and sign-out times. A password change, reset or global
//! sign-out changes the digest, and every session issued before it stops
//! working. After `VerifySoftwareToken` with an `MFA_SETUP` session, the
//! new session also names the verified token, which is what
//! `RespondToAuthChallenge(MFA_SETUP)` requires.
//!
//! # Codes
//!
//! The node that receives a code opens the user's sealed secret and finds
//! which time step the code is (RFC 6238, one step of skew). The step is
//! then spent in `apply` (`ConsumeSoftwareTokenCode`), which refuses it if
//! it is not newer than the last one spent: a code works once, wherever it
//! is replayed. Recovery codes are spent the same way
//! (`ConsumeRecoveryCode`). Every answer to `SOFTWARE_TOKEN_MFA` is
//! evaluated under a lockout reservation taken before the code is
//! checked, and a wrong one is a replicated failure, exactly as a wrong
//! password is (`check_lockout`, `record_failure`).

use std::collections::BTreeMap;

use subtle::ConstantTimeEq;

use super::hooks::TokenSource;
use super::signin::{param, required, AuthAnswer};
use super::{AuthService, Caller};
use crate::auth::codes::CodeError;
use crate::auth::totp;
use crate::command::{
    AssociateSoftwareToken, ConsumeRecoveryCode, ConsumeSoftwareTokenCode, Rejection, SetRecoveryCodes,
    VerifySoftwareToken,
};
use crate::model::app_client::AppClient;
use crate::model::auth_event::{AuthEvent, AuthEventType};
pub use crate::model::mfa::session_binding;
use crate::model::mfa::{
    mfa_step_for, validate_device_name, MfaConfiguration, MfaFactor, MfaStep, MfaSummary, PoolMfaConfig, TotpSecret,
    RECOVERY_CODES,
};
use crate::model::pool::UserPool;
use crate::model::user::{User, UserStatus};
use crate::service::mfa::MfaPreferenceRequest;
use crate::service::tokens::Verified;
use crate::service::{ErrorKind, Origin, ServiceError};

/// The TOTP challenge (and factor) name.
pub const SOFTWARE_TOKEN_MFA: &str = "SOFTWARE_TOKEN_MFA";
/// The challenge of a user who must set up MFA first.
pub const MFA_SETUP: &str = "MFA_SETUP";
/// The challenge of a user with several factors and no preference.
pub const SELECT_MFA_TYPE: &str = "SELECT_MFA_TYPE";

/// Session claim: [`session_binding`] of the user at issue time.
const BIND_CLAIM: &str = "bind";
/// Session claim of an `MFA_SETUP` session after `VerifySoftwareToken`:
/// the id of the token verified with it.
const VERIFIED_CLAIM: &str = "totp_verified";

fn invalid_session() -> ServiceError {
    ServiceError::not_authorized("Invalid session for the user, session is expired.")
}

/// Cognito's answer to a wrong `SOFTWARE_TOKEN_MFA` code.
fn mfa_code_mismatch() -> ServiceError {
    ServiceError::new(
        ErrorKind::InvalidParameter,
        "CodeMismatchException",
        "Invalid code or auth state for the user.",
    )
}

/// Cognito's answer to a TOTP code used a second time.
fn code_already_used() -> ServiceError {
    ServiceError::new(
        ErrorKind::InvalidParameter,
        "ExpiredCodeException",
        "Your software token has already been used once.",
    )
}

/// Software-token MFA is not allowed in the pool, or the user has none.
fn software_token_not_found(why: &str) -> ServiceError {
    ServiceError::new(ErrorKind::InvalidParameter, "SoftwareTokenMFANotFoundException", why)
}

/// Cognito's answer to a wrong first code in `VerifySoftwareToken`.
fn enable_mismatch(why: &str) -> ServiceError {
    ServiceError::new(ErrorKind::InvalidParameter, "EnableSoftwareTokenMFAException", why)
}

/// A checked challenge session: the pool, client and user it is for, and
/// its claims.
pub(super) struct SessionCtx {
    pub(super) pool: UserPool,
    pub(super) client: AppClient,
    pub(super) claims: Verified,
    pub(super) user: User,
}

/// What `AssociateSoftwareToken` answers.
#[derive(Debug, Clone)]
pub struct Associated {
    /// The secret, base32 (Cognito's `SecretCode`). Shown this once.
    pub secret_code: String,
    /// `otpauth://totp/<pool name>:<username>?secret=...` (Tessera
    /// addition), for a QR code.
    pub secret_uri: String,
    /// A fresh `MFA_SETUP` session, when called with one.
    pub session: Option<String>,
}

/// How an answer to `SOFTWARE_TOKEN_MFA` failed.
enum Refused {
    /// A wrong (or spent) code: counts toward the lockout.
    Wrong {
        /// The audit detail.
        detail: &'static str,
        /// What the caller is told.
        error: ServiceError,
    },
    /// Not an evaluated guess (no token, storage, no quorum).
    Other(ServiceError),
}

impl From<ServiceError> for Refused {
    fn from(e: ServiceError) -> Self {
        Refused::Other(e)
    }
}

/// Who an MFA set-up call is for: an access token's user, or an
/// `MFA_SETUP` session's.
struct SetupCaller {
    pool: UserPool,
    client: AppClient,
    user: User,
    /// `Some` when the caller holds an `MFA_SETUP` session.
    session: Option<Verified>,
}

impl AuthService {
    /// The challenge that follows a correct password, if the pool's MFA
    /// setting and the user's factors call for one. A pool whose MFA is
    /// OFF costs one local read; only `SMS_MFA` and `EMAIL_OTP` write (the
    /// code they send).
    pub(super) async fn mfa_challenge(
        &self,
        pool: &UserPool,
        client: &AppClient,
        user: &User,
        origin: &Origin,
    ) -> Result<Option<AuthAnswer>, ServiceError> {
        let store = self.node.store();
        let cfg = store.pool_mfa(&pool.id)?;
        if cfg.mfa_configuration == MfaConfiguration::Off {
            return Ok(None);
        }
        let mfa = store.user_mfa(&pool.id, &user.sub)?;
        let mut parameters = BTreeMap::new();
        parameters.insert("USER_ID_FOR_SRP".to_string(), user.username.clone());
        let list = |factors: &[MfaFactor]| {
            serde_json::to_string(&factors.iter().map(|f| f.as_cognito()).collect::<Vec<_>>()).unwrap_or_default()
        };
        // A passkey answers MFA where the pool allows it (Tessera addition):
        // it is the user's factor when the user has no other, and one of
        // the choices when the user has several.
        let passkey = self.passkey_mfa_available(&pool.id, user)?;
        let name = match mfa_step_for(&cfg, mfa.as_ref(), user) {
            MfaStep::None | MfaStep::Setup if passkey => {
                return self
                    .web_authn_challenge(pool, client, super::webauthn::Subject::User(user), &user.username, true)
                    .map(Some);
            }
            MfaStep::None => return Ok(None),
            MfaStep::Setup => {
                parameters.insert("MFAS_CAN_SETUP".into(), list(&cfg.allowed()));
                MFA_SETUP
            }
            MfaStep::Challenge(MfaFactor::SoftwareToken) => {
                if let Some(t) = mfa.as_ref().and_then(|m| m.totp.as_ref()) {
                    parameters.insert("FRIENDLY_DEVICE_NAME".into(), t.friendly_device_name.clone());
                }
                SOFTWARE_TOKEN_MFA
            }
            MfaStep::Challenge(other) => {
                let Some(factor) = super::passwordless::CodeFactor::mfa(other) else {
                    return Err(ServiceError::internal("a software token is challenged above"));
                };
                return self
                    .send_sign_in_code(pool, client, user, factor, origin)
                    .await
                    .map(Some);
            }
            MfaStep::Select(factors) => {
                let mut names: Vec<&str> = factors.iter().map(|f| f.as_cognito()).collect();
                if passkey {
                    names.push(super::webauthn::WEB_AUTHN);
                }
                parameters.insert(
                    "MFAS_CAN_CHOOSE".into(),
                    serde_json::to_string(&names).unwrap_or_default(),
                );
                SELECT_MFA_TYPE
            }
        };
        let session = self.mfa_session(&cfg, &pool.id, &client.client_id, user, name, &[])?;
        Ok(Some(AuthAnswer::Challenge {
            name: name.into(),
            session,
            parameters,
            available: Vec::new(),
        }))
    }

    fn mfa_session(
        &self,
        cfg: &PoolMfaConfig,
        pool_id: &str,
        client_id: &str,
        user: &User,
        challenge: &str,
        extra: &[(&str, &str)],
    ) -> Result<String, ServiceError> {
        let binding = session_binding(user);
        let mut claims = vec![(BIND_CLAIM, binding.as_str())];
        claims.extend_from_slice(extra);
        self.tokens.mint_challenge_session(
            pool_id,
            client_id,
            &user.sub,
            challenge,
            i64::from(cfg.session_validity_secs),
            &claims,
        )
    }

    /// Checks a challenge session for `challenge` (signature, expiry,
    /// binding to the user's current credentials) and returns what it is
    /// for. A binding that does not match may be this node lagging behind
    /// (or ahead of) the node that issued it: it is checked again after a
    /// read barrier before the session is refused.
    ///
    /// `caller` is the pool and client the request named, when it named
    /// one: a session for them is opened without reading them again (the
    /// answer's path is a write away from its reply, and every read on it
    /// counts); a session for another client is refused.
    async fn open_mfa_session(
        &self,
        session: &str,
        challenge: &str,
        caller: Option<&Caller>,
    ) -> Result<SessionCtx, ServiceError> {
        let claims = self
            .tokens
            .verify(session, "session")
            .await
            .map_err(|_| invalid_session())?;
        if claims.str("challenge") != challenge {
            return Err(invalid_session());
        }
        let store = self.node.store();
        let (pool, client) = match caller {
            Some(c) => {
                if c.pool.id != claims.pool_id || c.client.client_id != claims.str("client_id") {
                    return Err(invalid_session());
                }
                (c.pool.clone(), c.client.clone())
            }
            None => {
                let pool = store.pool(&claims.pool_id)?.ok_or_else(invalid_session)?;
                let client = match store.app_client(claims.str("client_id"))? {
                    Some(c) => c,
                    None => {
                        self.node.read_barrier().await?;
                        store.app_client(claims.str("client_id"))?.ok_or_else(invalid_session)?
                    }
                };
                (pool, client)
            }
        };
        if client.pool_id != pool.id {
            return Err(invalid_session());
        }
        let user = self
            .user_by_sub(&pool.id, claims.str("sub"))
            .await?
            .ok_or_else(invalid_session)?;
        let bound = |u: &User| bool::from(session_binding(u).as_bytes().ct_eq(claims.str(BIND_CLAIM).as_bytes()));
        let user = if bound(&user) {
            user
        } else {
            self.node.read_barrier().await?;
            let fresh = store.user(&pool.id, &user.sub)?.ok_or_else(invalid_session)?;
            if !bound(&fresh) {
                return Err(invalid_session());
            }
            fresh
        };
        if !user.enabled {
            return Err(ServiceError::not_authorized("User is disabled."));
        }
        if user.status != UserStatus::Confirmed {
            return Err(invalid_session());
        }
        Ok(SessionCtx {
            pool,
            client,
            claims,
            user,
        })
    }

    /// What every MFA answer checks first: the session (for this caller's
    /// pool and client), `USERNAME` naming the session's user, and
    /// `SECRET_HASH`. A session for one user or client never answers for
    /// another.
    pub(super) async fn open_answer(
        &self,
        caller: &Caller,
        challenge: &str,
        session: &str,
        responses: &BTreeMap<String, String>,
    ) -> Result<SessionCtx, ServiceError> {
        let ctx = self.open_mfa_session(session, challenge, Some(caller)).await?;
        let username = required(responses, "challenge_responses", "USERNAME")?;
        let settings = &ctx.pool.settings;
        if settings.normalize_username(username) != settings.normalize_username(&ctx.user.username)
            && username != ctx.user.sub
        {
            return Err(invalid_session());
        }
        self.check_secret_hash(&caller.client, &[username], param(responses, "SECRET_HASH"))?;
        Ok(ctx)
    }

    /// `RespondToAuthChallenge(SOFTWARE_TOKEN_MFA)`: a TOTP code
    /// (`SOFTWARE_TOKEN_MFA_CODE`) or a recovery code (`RECOVERY_CODE`,
    /// a Tessera addition). Evaluated under a lockout reservation; a wrong
    /// or spent code is a replicated failure.
    pub(super) async fn software_token_answer(
        &self,
        caller: &Caller,
        session: &str,
        responses: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let ctx = self.open_answer(caller, SOFTWARE_TOKEN_MFA, session, responses).await?;
        let code = param(responses, "SOFTWARE_TOKEN_MFA_CODE");
        let recovery = param(responses, "RECOVERY_CODE");
        let (event_type, by_recovery) = match (code.is_empty(), recovery.is_empty()) {
            (true, true) => {
                return Err(ServiceError::invalid(
                    "Missing required parameter challenge_responses.SOFTWARE_TOKEN_MFA_CODE (or RECOVERY_CODE)",
                ))
            }
            (false, false) => {
                return Err(ServiceError::invalid(
                    "challenge_responses: give SOFTWARE_TOKEN_MFA_CODE or RECOVERY_CODE, not both",
                ))
            }
            (false, true) => (AuthEventType::SoftwareTokenMfa, false),
            (true, false) => (AuthEventType::RecoveryCode, true),
        };
        let SessionCtx {
            pool,
            client,
            user,
            claims,
        } = ctx;
        let binding = claims.str(BIND_CLAIM).to_string();
        // Reserve before checking: parallel answers cannot exceed the
        // lockout, and a locked user's answer is not evaluated at all.
        let slot = self.check_lockout(&pool.id, &user.sub).await?;
        let now = crate::clock::now_millis();
        let mut early = None;
        let result = if by_recovery {
            self.spend_recovery_code(&pool, &user, &binding, recovery).await
        } else {
            self.spend_totp_code(&pool, &user, &binding, code, now, || {
                early = self.mint_in_background(&pool, &client, &user, now / 1000, origin)?;
                Ok(())
            })
            .await
        };
        match result {
            Ok(detail) => {
                self.settle_success(&pool.id, &user.sub, Some(slot), now).await?;
                let tokens = match early {
                    Some(minted) => minted
                        .await
                        .map_err(|e| ServiceError::internal(format!("minting: {e}")))??,
                    None => {
                        self.issue_tokens(&pool, &client, &user, now / 1000, TokenSource::Authentication, origin)
                            .await?
                    }
                };
                let event = |t: AuthEventType, d: &str| {
                    AuthEvent::draft(&pool.id, t, now)
                        .user(&user.username, &user.sub)
                        .origin(&client.client_id, &origin.ip)
                        .detail(d)
                };
                self.audit.record_later(event(event_type, &detail));
                self.audit
                    .record_later(event(AuthEventType::SignIn, &format!("{SOFTWARE_TOKEN_MFA} answered")));
                Ok(AuthAnswer::Tokens(tokens))
            }
            Err(Refused::Wrong { detail, error }) => {
                self.record_failure_as(event_type, &pool.id, &client.client_id, &user, origin, detail, slot)
                    .await?;
                Err(error)
            }
            // Not a guess that was evaluated: the slot is freed on drop.
            Err(Refused::Other(e)) => Err(e),
        }
    }

    /// Checks a TOTP code against the user's verified token and spends its
    /// time step; returns the audit detail. `before_write` runs once the
    /// code is known to be right, just before the spend is proposed (the
    /// answer starts minting the tokens there, so that the signing overlaps
    /// the write).
    async fn spend_totp_code(
        &self,
        pool: &UserPool,
        user: &User,
        binding: &str,
        code: &str,
        now: i64,
        before_write: impl FnOnce() -> Result<(), ServiceError>,
    ) -> Result<String, Refused> {
        let mismatch = || Refused::Wrong {
            detail: "incorrect software token code",
            error: mfa_code_mismatch(),
        };
        let store = self.node.store();
        let token = || -> Result<Option<TotpSecret>, ServiceError> {
            Ok(store.user_mfa(&pool.id, &user.sub)?.and_then(|m| m.totp))
        };
        let mut secret = match token()? {
            Some(t) => t,
            None => {
                self.node.read_barrier().await.map_err(ServiceError::from)?;
                token()?
                    .ok_or_else(|| software_token_not_found("Software Token MFA has not been set up for the user."))?
            }
        };
        if !totp::is_code_shape(code) {
            return Err(mismatch());
        }
        let key = crate::service::sealing_key(&self.sealing)?;
        let check = |t: &TotpSecret| -> Result<Option<u64>, ServiceError> {
            let raw = key.open_totp(&pool.id, &user.sub, &t.id, &t.sealed)?;
            Ok(totp::matching_step(&raw, code, u64::try_from(now / 1000).unwrap_or(0))?)
        };
        let mut step = check(&secret)?;
        if step.is_none() {
            // The user may have verified a new token through a node ahead
            // of this one: check against the latest before refusing.
            self.node.read_barrier().await.map_err(ServiceError::from)?;
            if let Some(latest) = token()?.filter(|t| t.id != secret.id) {
                step = check(&latest)?;
                secret = latest;
            }
        }
        let Some(step) = step else {
            return Err(mismatch());
        };
        let cmd = ConsumeSoftwareTokenCode {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            secret_id: secret.id.clone(),
            step,
            session_binding: binding.to_string(),
        };
        before_write().map_err(Refused::Other)?;
        match crate::service::try_submit(&self.node, cmd).await? {
            Ok(_) => Ok(format!("{SOFTWARE_TOKEN_MFA} code accepted")),
            Err(Rejection::Code(CodeError::Expired)) => Err(Refused::Wrong {
                detail: "software token code already used",
                error: code_already_used(),
            }),
            Err(Rejection::Code(_)) => Err(mismatch()),
            Err(Rejection::NotAuthorized(_)) => Err(Refused::Other(invalid_session())),
            Err(r) => Err(Refused::Other(r.into())),
        }
    }

    /// Spends a recovery code (checked in `apply`, in constant time
    /// against every unused one); returns the audit detail.
    async fn spend_recovery_code(
        &self,
        pool: &UserPool,
        user: &User,
        binding: &str,
        code: &str,
    ) -> Result<String, Refused> {
        let mismatch = || Refused::Wrong {
            detail: "incorrect recovery code",
            error: mfa_code_mismatch(),
        };
        let Some(canonical) = totp::normalize_recovery_code(code) else {
            return Err(mismatch());
        };
        let cmd = ConsumeRecoveryCode {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            hash: totp::hash_recovery_code(&canonical),
            session_binding: binding.to_string(),
        };
        match crate::service::try_submit(&self.node, cmd).await? {
            Ok(left) => Ok(format!("recovery code used; {} left", left.recovery_codes_left)),
            Err(Rejection::Code(_)) => Err(mismatch()),
            Err(Rejection::NotAuthorized(_)) => Err(Refused::Other(invalid_session())),
            Err(r) => Err(Refused::Other(r.into())),
        }
    }

    /// `RespondToAuthChallenge(MFA_SETUP)`: completes the sign-in once a
    /// software token was verified with this session.
    pub(super) async fn mfa_setup_answer(
        &self,
        caller: &Caller,
        session: &str,
        responses: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        // Tokens follow without a write, so see every password change and
        // sign-out acknowledged anywhere before deciding (once per user).
        self.node.read_barrier().await?;
        let ctx = self.open_answer(caller, MFA_SETUP, session, responses).await?;
        let verified = ctx.claims.str(VERIFIED_CLAIM);
        if verified.is_empty() {
            return Err(ServiceError::not_authorized(
                "Invalid session for the user: verify a software token with this session first (AssociateSoftwareToken, VerifySoftwareToken).",
            ));
        }
        let store = self.node.store();
        let has = || -> Result<bool, ServiceError> {
            Ok(store
                .user_mfa(&ctx.pool.id, &ctx.user.sub)?
                .and_then(|m| m.totp)
                .is_some_and(|t| t.id == verified))
        };
        if !has()? {
            self.node.read_barrier().await?;
            if !has()? {
                return Err(invalid_session());
            }
        }
        let now = crate::clock::now_millis();
        let tokens = self
            .issue_tokens(
                &ctx.pool,
                &ctx.client,
                &ctx.user,
                now / 1000,
                TokenSource::Authentication,
                origin,
            )
            .await?;
        self.audit.record_later(
            AuthEvent::draft(&ctx.pool.id, AuthEventType::SignIn, now)
                .user(&ctx.user.username, &ctx.user.sub)
                .origin(&ctx.client.client_id, &origin.ip)
                .detail(format!("{MFA_SETUP} answered")),
        );
        Ok(AuthAnswer::Tokens(tokens))
    }

    /// `RespondToAuthChallenge(SELECT_MFA_TYPE)`: `ANSWER` names one of
    /// the user's factors; its challenge follows, with a new session.
    pub(super) async fn select_mfa_answer(
        &self,
        caller: &Caller,
        session: &str,
        responses: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let ctx = self.open_answer(caller, SELECT_MFA_TYPE, session, responses).await?;
        let answer = required(responses, "challenge_responses", "ANSWER")?;
        if answer == super::webauthn::WEB_AUTHN {
            if !self.passkey_mfa_available(&ctx.pool.id, &ctx.user)? {
                return Err(ServiceError::invalid(
                    "challenge_responses.ANSWER: WEB_AUTHN is not one of the user's factors",
                ));
            }
            let user = &ctx.user;
            return self.web_authn_challenge(
                &ctx.pool,
                &ctx.client,
                super::webauthn::Subject::User(user),
                &user.username,
                true,
            );
        }
        let factor = MfaFactor::parse(answer).ok_or_else(|| {
            ServiceError::invalid(format!(
                "challenge_responses.ANSWER: {answer:?} is not SOFTWARE_TOKEN_MFA, SMS_MFA, EMAIL_OTP or WEB_AUTHN"
            ))
        })?;
        let store = self.node.store();
        let cfg = store.pool_mfa(&ctx.pool.id)?;
        let mfa = store.user_mfa(&ctx.pool.id, &ctx.user.sub)?;
        let usable = match mfa_step_for(&cfg, mfa.as_ref(), &ctx.user) {
            MfaStep::Select(list) => list,
            MfaStep::Challenge(f) => vec![f],
            MfaStep::None | MfaStep::Setup => Vec::new(),
        };
        if !usable.contains(&factor) {
            return Err(ServiceError::invalid(format!(
                "challenge_responses.ANSWER: {answer} is not one of the user's factors"
            )));
        }
        if let Some(code) = super::passwordless::CodeFactor::mfa(factor) {
            return self
                .send_sign_in_code(&ctx.pool, &ctx.client, &ctx.user, code, origin)
                .await;
        }
        let name = factor.as_cognito();
        let session = self.mfa_session(&cfg, &ctx.pool.id, &ctx.client.client_id, &ctx.user, name, &[])?;
        let mut parameters = BTreeMap::new();
        parameters.insert("USER_ID_FOR_SRP".to_string(), ctx.user.username.clone());
        Ok(AuthAnswer::Challenge {
            name: name.into(),
            session,
            parameters,
            available: Vec::new(),
        })
    }

    /// The user an MFA set-up call is for: by access token, or by an
    /// `MFA_SETUP` session (exactly one of them).
    async fn setup_caller(&self, access_token: &str, session: &str) -> Result<SetupCaller, ServiceError> {
        self.require_fresh().await?;
        match (access_token.is_empty(), session.is_empty()) {
            (false, true) => {
                let (_, user, client) = self.authenticate_client(access_token).await?;
                let pool = self
                    .node
                    .store()
                    .pool(&client.pool_id)?
                    .ok_or_else(|| ServiceError::not_authorized("Invalid Access Token."))?;
                Ok(SetupCaller {
                    pool,
                    client,
                    user,
                    session: None,
                })
            }
            (true, false) => {
                let ctx = self.open_mfa_session(session, MFA_SETUP, None).await?;
                Ok(SetupCaller {
                    pool: ctx.pool,
                    client: ctx.client,
                    user: ctx.user,
                    session: Some(ctx.claims),
                })
            }
            (true, true) => Err(ServiceError::invalid(
                "give access_token, or the session of an MFA_SETUP challenge",
            )),
            (false, false) => Err(ServiceError::invalid("give access_token or session, not both")),
        }
    }

    fn software_token_pool(&self, pool: &UserPool) -> Result<PoolMfaConfig, ServiceError> {
        let cfg = self.node.store().pool_mfa(&pool.id)?;
        if !cfg.software_token_enabled {
            return Err(software_token_not_found(
                "Software Token MFA has not been enabled by the userPool.",
            ));
        }
        Ok(cfg)
    }

    /// `AssociateSoftwareToken`: a fresh 160-bit secret, sealed and stored
    /// as the user's pending token until `VerifySoftwareToken`. It replaces
    /// a token still pending, never a verified one.
    pub async fn associate_software_token(
        &self,
        access_token: &str,
        session: &str,
        origin: &Origin,
    ) -> Result<Associated, ServiceError> {
        let SetupCaller {
            pool,
            client,
            user,
            session,
        } = self.setup_caller(access_token, session).await?;
        let cfg = self.software_token_pool(&pool)?;
        let raw = crate::clock::random_bytes::<{ totp::SECRET_BYTES }>();
        let id = hex::encode(crate::clock::random_bytes::<16>());
        let key = crate::service::sealing_key(&self.sealing)?;
        let sealed = key.seal_totp(&pool.id, &user.sub, &id, &raw, crate::clock::random_bytes::<12>());
        let now = crate::clock::now_millis();
        let cmd = AssociateSoftwareToken {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            secret: TotpSecret {
                id,
                sealed,
                associated_at: now,
                friendly_device_name: String::new(),
            },
            session_binding: session.as_ref().map(|v| v.str(BIND_CLAIM).to_string()),
            now,
        };
        let event = AuthEvent::draft(&pool.id, AuthEventType::MfaSetup, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip)
            .detail("AssociateSoftwareToken");
        crate::service::submit_audited(&self.node, cmd, event).await?;
        let secret_code = totp::secret_base32(&raw);
        let secret_uri = totp::otpauth_uri(&pool.name, &user.username, &secret_code);
        let session = match session {
            Some(_) => Some(self.mfa_session(&cfg, &pool.id, &client.client_id, &user, MFA_SETUP, &[])?),
            None => None,
        };
        Ok(Associated {
            secret_code,
            secret_uri,
            session,
        })
    }

    /// `VerifySoftwareToken`: the first code of the pending token makes it
    /// the user's verified software token (and spends the code). Returns
    /// Cognito's status and, for an `MFA_SETUP` session, the session that
    /// completes the challenge.
    pub async fn verify_software_token(
        &self,
        access_token: &str,
        session: &str,
        user_code: &str,
        friendly_device_name: &str,
        origin: &Origin,
    ) -> Result<(&'static str, Option<String>), ServiceError> {
        validate_device_name(friendly_device_name)?;
        if !totp::is_code_shape(user_code) {
            return Err(ServiceError::invalid("user_code: six digits"));
        }
        let SetupCaller {
            pool,
            client,
            user,
            session,
        } = self.setup_caller(access_token, session).await?;
        let cfg = self.software_token_pool(&pool)?;
        let store = self.node.store();
        let pending = || -> Result<Option<TotpSecret>, ServiceError> {
            Ok(store.user_mfa(&pool.id, &user.sub)?.and_then(|m| m.pending_totp))
        };
        let key = crate::service::sealing_key(&self.sealing)?;
        let now = crate::clock::now_millis();
        let check = |t: &TotpSecret| -> Result<Option<u64>, ServiceError> {
            let raw = key.open_totp(&pool.id, &user.sub, &t.id, &t.sealed)?;
            Ok(totp::matching_step(
                &raw,
                user_code,
                u64::try_from(now / 1000).unwrap_or(0),
            )?)
        };
        let mut found = None;
        let local = pending()?;
        if let Some(t) = &local {
            found = check(t)?.map(|step| (t.clone(), step));
        }
        if found.is_none() {
            // An association made through another node may not be applied
            // here yet.
            self.node.read_barrier().await?;
            if let Some(t) = pending()?.filter(|t| local.as_ref().is_none_or(|l| l.id != t.id)) {
                found = check(&t)?.map(|step| (t, step));
            } else if local.is_none() {
                return Err(ServiceError::invalid(
                    "No software token is waiting for verification: call AssociateSoftwareToken first",
                ));
            }
        }
        let event = AuthEvent::draft(&pool.id, AuthEventType::MfaSetup, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip)
            .detail("VerifySoftwareToken");
        let Some((secret, step)) = found else {
            self.audit
                .record_later(event.detail("VerifySoftwareToken: code mismatch").failed());
            return Err(enable_mismatch("Code mismatch and fail enable Software Token MFA"));
        };
        let cmd = VerifySoftwareToken {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            secret_id: secret.id.clone(),
            step,
            friendly_device_name: friendly_device_name.to_string(),
            session_binding: session.as_ref().map(|v| v.str(BIND_CLAIM).to_string()),
            now,
        };
        match crate::service::try_submit_audited(&self.node, cmd, event).await? {
            Ok(_) => {}
            Err(Rejection::NoCode) => {
                return Err(enable_mismatch(
                    "The software token was replaced by a newer AssociateSoftwareToken; verify the newer one",
                ))
            }
            Err(r) => return Err(r.into()),
        }
        let session = match session {
            Some(_) => Some(self.mfa_session(
                &cfg,
                &pool.id,
                &client.client_id,
                &user,
                MFA_SETUP,
                &[(VERIFIED_CLAIM, &secret.id)],
            )?),
            None => None,
        };
        Ok(("SUCCESS", session))
    }

    /// `SetUserMFAPreference`: which factors the token's user enabled and
    /// prefers; a factor must be verified before it is enabled.
    pub async fn set_user_mfa_preference(
        &self,
        access_token: &str,
        req: &MfaPreferenceRequest,
        origin: &Origin,
    ) -> Result<MfaSummary, ServiceError> {
        let (_, user, client) = self.authenticate_client(access_token).await?;
        let cfg = self.node.store().pool_mfa(&user.pool_id)?;
        let changes = crate::service::mfa::preference_changes(req, &cfg)?;
        let event = AuthEvent::draft(&user.pool_id, AuthEventType::MfaSetup, crate::clock::now_millis())
            .origin(&client.client_id, &origin.ip)
            .detail("SetUserMFAPreference");
        crate::service::mfa::set_preference(&self.node, &user, changes, event).await
    }

    /// `GenerateRecoveryCodes` (Tessera addition): ten new single-use
    /// codes replace the user's unused ones. Returned this once; only
    /// their hashes are stored.
    pub async fn generate_recovery_codes(
        &self,
        access_token: &str,
        origin: &Origin,
    ) -> Result<Vec<String>, ServiceError> {
        let (_, user, client) = self.authenticate_client(access_token).await?;
        let codes: Vec<String> = (0..RECOVERY_CODES)
            .map(|_| totp::recovery_code_from_random(crate::clock::random_bytes::<{ totp::RECOVERY_CODE_BYTES }>()))
            .collect();
        let hashes = codes
            .iter()
            .filter_map(|c| totp::normalize_recovery_code(c))
            .map(|c| totp::hash_recovery_code(&c))
            .collect();
        let now = crate::clock::now_millis();
        let cmd = SetRecoveryCodes {
            pool_id: user.pool_id.clone(),
            sub: user.sub.clone(),
            hashes,
            now,
        };
        let event = AuthEvent::draft(&user.pool_id, AuthEventType::RecoveryCode, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip)
            .detail(format!("GenerateRecoveryCodes: {RECOVERY_CODES} new codes"));
        crate::service::submit_audited(&self.node, cmd, event).await?;
        Ok(codes)
    }

    /// The MFA state of a user, without secrets (`GetUser`'s MFA fields).
    pub(crate) fn mfa_summary(&self, pool_id: &str, sub: &str) -> Result<MfaSummary, ServiceError> {
        Ok(self
            .node
            .store()
            .user_mfa(pool_id, sub)?
            .map(|m| m.summary())
            .unwrap_or_default())
    }
}
