//! `InitiateAuth` (password and refresh-token flows) and
//! `RespondToAuthChallenge` / `AdminRespondToAuthChallenge`
//! (`NEW_PASSWORD_REQUIRED` here; the MFA challenges in [`super::mfa`]).

use crate::command::{ClearSignInFailures, IssueCode, RecordSignInFailure, SetPassword};
use std::collections::BTreeMap;

use super::hooks::TokenSource;
use super::{check_parameters, AuthService, Caller};
use crate::auth::attempts::{Refusal, Reservation, MAX_WAIT};
use crate::command::Rejection;
use crate::model::app_client::{AppClient, AuthFlow};
use crate::model::auth_event::{AuthEvent, AuthEventType};
use crate::model::pool::UserPool;
use crate::model::pool_settings::MAX_PASSWORD_BYTES;
use crate::model::user::{validate_new_attributes, User, UserStatus};
use crate::service::tokens::IssuedTokens;
use crate::service::{ErrorKind, Origin, ServiceError};

/// The challenge of a user whose (temporary) password must change.
pub const NEW_PASSWORD_REQUIRED: &str = "NEW_PASSWORD_REQUIRED";

/// What an authentication step answers: tokens, or the next challenge.
#[derive(Debug, Clone)]
pub enum AuthAnswer {
    /// Authenticated: the tokens to hand out.
    Tokens(IssuedTokens),
    /// Another step is needed before tokens are issued.
    Challenge {
        /// The challenge's name (`NEW_PASSWORD_REQUIRED`,
        /// `SOFTWARE_TOKEN_MFA`, `SMS_MFA`, `EMAIL_OTP`, `SMS_OTP`,
        /// `MFA_SETUP`, `SELECT_MFA_TYPE`, `SELECT_CHALLENGE`, `MAGIC_LINK`).
        name: String,
        /// Signed session that the answer to the challenge must carry back.
        session: String,
        /// Cognito's `ChallengeParameters`.
        parameters: BTreeMap<String, String>,
        /// Cognito's `AvailableChallenges` (`SELECT_CHALLENGE` only).
        available: Vec<String>,
    },
}

fn incorrect() -> ServiceError {
    ServiceError::not_authorized("Incorrect username or password.")
}

pub(super) fn param<'a>(params: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    params.get(name).map(String::as_str).unwrap_or("")
}

pub(super) fn required<'a>(
    params: &'a BTreeMap<String, String>,
    field: &str,
    name: &str,
) -> Result<&'a str, ServiceError> {
    match param(params, name) {
        "" => Err(ServiceError::invalid(format!(
            "Missing required parameter {field}.{name}"
        ))),
        v => Ok(v),
    }
}

impl AuthService {
    /// `InitiateAuth`: `USER_PASSWORD_AUTH`, `USER_AUTH` (choice-based,
    /// [`super::passwordless`]), `REFRESH_TOKEN_AUTH` (also spelled
    /// `REFRESH_TOKEN`), `CUSTOM_AUTH` ([`super::custom`]) or
    /// `FEDERATED_ID_TOKEN_AUTH`.
    pub async fn initiate_auth(
        &self,
        auth_flow: &str,
        client_id: &str,
        params: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        self.require_fresh().await?;
        check_parameters("auth_parameters", params)?;
        let flow = match auth_flow {
            "USER_PASSWORD_AUTH" => AuthFlow::UserPassword,
            "USER_AUTH" => AuthFlow::UserAuth,
            "USER_SRP_AUTH" => AuthFlow::UserSrp,
            "REFRESH_TOKEN_AUTH" | "REFRESH_TOKEN" => AuthFlow::RefreshToken,
            "FEDERATED_ID_TOKEN_AUTH" => AuthFlow::FederatedIdToken,
            "CUSTOM_AUTH" => AuthFlow::CustomAuth,
            "" => {
                return Err(ServiceError::invalid(
                    "auth_flow: missing; use USER_PASSWORD_AUTH, USER_SRP_AUTH, USER_AUTH, REFRESH_TOKEN_AUTH, CUSTOM_AUTH or FEDERATED_ID_TOKEN_AUTH",
                ))
            }
            other => {
                return Err(ServiceError::invalid(format!(
                    "auth_flow: {:?} is not supported; use USER_PASSWORD_AUTH, USER_SRP_AUTH, USER_AUTH, REFRESH_TOKEN_AUTH, CUSTOM_AUTH or FEDERATED_ID_TOKEN_AUTH",
                    other.chars().take(64).collect::<String>()
                )))
            }
        };
        let caller = self.caller(client_id).await?;
        if !caller.client.allows(flow) {
            return Err(ServiceError::invalid(format!(
                "{auth_flow} flow not enabled for this client"
            )));
        }
        let origin = &origin.with_device_key(param(params, "DEVICE_KEY"));
        match flow {
            AuthFlow::RefreshToken => self.refresh(caller, params, origin).await.map(AuthAnswer::Tokens),
            AuthFlow::FederatedIdToken => self.federated_auth(caller, params, origin).await,
            AuthFlow::CustomAuth => self.custom_auth(caller, params, origin).await,
            AuthFlow::UserAuth => self.user_auth(caller, params, origin).await,
            AuthFlow::UserSrp => self.user_srp_auth(caller, params, origin).await,
            _ => self.password_auth(caller, params, origin).await,
        }
    }

    /// `AdminInitiateAuth` (the caller holds the admin token):
    /// `ADMIN_USER_PASSWORD_AUTH` (also `ADMIN_NO_SRP_AUTH`),
    /// `REFRESH_TOKEN_AUTH`, `CUSTOM_AUTH`, `USER_AUTH` or `USER_SRP_AUTH`,
    /// for a client of `pool_id`.
    pub async fn admin_initiate_auth(
        &self,
        pool_id: &str,
        auth_flow: &str,
        client_id: &str,
        params: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        self.require_fresh().await?;
        check_parameters("auth_parameters", params)?;
        let flow = match auth_flow {
            "ADMIN_USER_PASSWORD_AUTH" | "ADMIN_NO_SRP_AUTH" => AuthFlow::AdminUserPassword,
            "REFRESH_TOKEN_AUTH" | "REFRESH_TOKEN" => AuthFlow::RefreshToken,
            "CUSTOM_AUTH" => AuthFlow::CustomAuth,
            "USER_AUTH" => AuthFlow::UserAuth,
            "USER_SRP_AUTH" => AuthFlow::UserSrp,
            other => {
                return Err(ServiceError::invalid(format!(
                    "auth_flow: {:?} is not supported; use ADMIN_USER_PASSWORD_AUTH, REFRESH_TOKEN_AUTH, CUSTOM_AUTH, USER_AUTH or USER_SRP_AUTH",
                    other.chars().take(64).collect::<String>()
                )))
            }
        };
        let caller = self.caller(client_id).await?;
        if caller.pool.id != pool_id {
            return Err(ServiceError::not_found(format!(
                "User pool client {client_id} does not exist in user pool {pool_id}."
            )));
        }
        if !caller.client.allows(flow) {
            return Err(ServiceError::invalid(format!(
                "{auth_flow} flow not enabled for this client"
            )));
        }
        let origin = &origin.with_device_key(param(params, "DEVICE_KEY"));
        match flow {
            AuthFlow::RefreshToken => self.refresh(caller, params, origin).await.map(AuthAnswer::Tokens),
            AuthFlow::CustomAuth => self.custom_auth(caller, params, origin).await,
            AuthFlow::UserAuth => self.user_auth(caller, params, origin).await,
            AuthFlow::UserSrp => self.user_srp_auth(caller, params, origin).await,
            _ => self.password_auth(caller, params, origin).await,
        }
    }

    /// Refuses a locked-out user before any hashing and reserves one of
    /// the guesses the lockout still allows (`crate::auth::attempts`):
    /// replicated failures, this node's failures not replicated yet and
    /// guesses in flight on this node together stay below the threshold.
    /// A node that has seen failures catches up first, so attempts spread
    /// over nodes meet one counter.
    pub(crate) async fn check_lockout(&self, pool_id: &str, sub: &str) -> Result<Reservation, ServiceError> {
        let now = crate::clock::now_millis();
        let store = self.node.store();
        if store.lockout(pool_id, sub)?.is_some_and(|s| s.needs_reset(now)) {
            self.node.read_barrier().await?;
        }
        let reserved = self
            .attempts
            .reserve(pool_id, sub, now, MAX_WAIT, || store.lockout(pool_id, sub))
            .await?;
        match reserved {
            Ok(slot) => Ok(slot),
            Err(Refusal::Locked { .. }) => Err(ServiceError::not_authorized("Password attempts exceeded")),
            Err(Refusal::Busy) => Err(ServiceError::too_many_requests(
                "Too many sign-in attempts for this user are in progress; retry shortly.",
            )),
            Err(Refusal::Full) => Err(ServiceError::too_many_requests(
                "Too many sign-in attempts in progress on this node; retry shortly.",
            )),
        }
    }

    /// Ends a completed sign-in: clears the user's failed attempts when
    /// they need it (rare, a success after failures, so it may cost a
    /// write; the common success costs none), then frees `slot` as a
    /// success.
    pub(crate) async fn settle_success(
        &self,
        pool_id: &str,
        sub: &str,
        slot: Option<Reservation>,
        now: i64,
    ) -> Result<(), ServiceError> {
        if self
            .node
            .store()
            .lockout(pool_id, sub)?
            .is_some_and(|l| l.needs_reset(now))
        {
            self.node
                .propose(ClearSignInFailures {
                    pool_id: pool_id.to_string(),
                    sub: sub.to_string(),
                })
                .await?;
        }
        if let Some(slot) = slot {
            slot.succeeded();
        }
        Ok(())
    }

    /// Counts a wrong password against the user (a replicated write, with
    /// its audit event). `slot` holds the failure on this node until this
    /// node has applied the write; if the write fails (no quorum) or its
    /// outcome cannot be confirmed, the failure stays counted here, so a
    /// node cut off from the quorum still locks the user.
    pub(crate) async fn record_failure(
        &self,
        pool_id: &str,
        client_id: &str,
        user: &User,
        origin: &Origin,
        detail: &str,
        slot: Reservation,
    ) -> Result<(), ServiceError> {
        self.record_failure_as(AuthEventType::SignIn, pool_id, client_id, user, origin, detail, slot)
            .await
    }

    /// [`Self::record_failure`] with an audit event of `event_type` (a
    /// wrong MFA code counts toward the same lockout as a wrong password).
    #[allow(
        clippy::too_many_arguments,
        reason = "the failure's context, as record_failure takes it, plus its event type"
    )]
    pub(crate) async fn record_failure_as(
        &self,
        event_type: AuthEventType,
        pool_id: &str,
        client_id: &str,
        user: &User,
        origin: &Origin,
        detail: &str,
        mut slot: Reservation,
    ) -> Result<(), ServiceError> {
        slot.failed();
        self.node.metrics().sign_in_failures.inc();
        let event = AuthEvent::draft(pool_id, event_type, crate::clock::now_millis())
            .user(&user.username, &user.sub)
            .origin(client_id, &origin.ip)
            .detail(detail)
            .failed();
        let written = self
            .node
            .propose(RecordSignInFailure {
                pool_id: pool_id.to_string(),
                sub: user.sub.clone(),
                event,
            })
            .await;
        if let Err(e) = written {
            slot.uncommitted(crate::clock::now_millis());
            return Err(e.into());
        }
        // The leader applied it; once this node has too, its replicated
        // state counts the failure and the slot may go.
        match self.node.read_barrier().await {
            Ok(()) => slot.committed(),
            Err(e) => {
                tracing::debug!(error = %e, "a recorded sign-in failure is not applied here yet; counting it locally");
                slot.uncommitted(crate::clock::now_millis());
            }
        }
        Ok(())
    }

    pub(super) async fn password_auth(
        &self,
        caller: Caller,
        params: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let Caller { pool, client } = caller;
        let username = required(params, "auth_parameters", "USERNAME")?;
        let password = required(params, "auth_parameters", "PASSWORD")?;
        if username.chars().count() > 128 {
            return Err(ServiceError::invalid(
                "auth_parameters.USERNAME: at most 128 characters",
            ));
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(incorrect());
        }
        self.check_secret_hash(&client, &[username], param(params, "SECRET_HASH"))?;
        let mut user = self.find_user(&pool, username).await?;
        self.pre_authentication(&pool, &client.client_id, username, user.as_ref(), origin)
            .await?;
        // A known user's guess is evaluated only under a reservation (the
        // sub it is for travels with it); an unknown user's is hashed
        // against the dummy hash as before.
        let mut slot = match &user {
            Some(u) => Some((u.sub.clone(), self.check_lockout(&pool.id, &u.sub).await?)),
            None => None,
        };
        let mut ok = self.check_password(&pool, user.as_ref(), password).await?;
        if let (false, Some((_, s))) = (ok, slot.as_mut()) {
            // Counted from here on: the barrier below may fail on a node
            // without a quorum, and the failure must not be lost then.
            s.failed();
        }
        let settled = |u: &Option<User>, ok: bool| {
            ok && u
                .as_ref()
                .is_some_and(|u| u.enabled && u.status == UserStatus::Confirmed)
        };
        if user.is_some() && !settled(&user, ok) {
            // Before refusing, catch up with changes made through another
            // node (a confirmation, a new password) that this node may not
            // have applied yet. Success never pays for this barrier.
            self.node.read_barrier().await?;
            let fresh = self.lookup(&pool, username)?;
            if fresh != user {
                let rehash = fresh.as_ref().map(|u| &u.password_phc) != user.as_ref().map(|u| &u.password_phc);
                if let Some(f) = &fresh {
                    if slot.as_ref().is_some_and(|(sub, _)| *sub != f.sub) {
                        // The name now belongs to another user (deleted
                        // and created again elsewhere): guess against it
                        // only under its own reservation.
                        if let Some((_, old)) = slot.take() {
                            old.release();
                        }
                        slot = Some((f.sub.clone(), self.check_lockout(&pool.id, &f.sub).await?));
                    }
                }
                if rehash {
                    ok = self.check_password(&pool, fresh.as_ref(), password).await?;
                    if let Some((_, s)) = slot.as_mut() {
                        if ok {
                            s.unfailed();
                        } else {
                            s.failed();
                        }
                    }
                }
                user = fresh;
            }
        }
        let (user, slot) = match (user, slot) {
            (Some(u), slot) if ok => (u, slot.map(|(_, s)| s)),
            (Some(u), Some((_, slot))) => {
                self.record_failure(&pool.id, &client.client_id, &u, origin, "incorrect password", slot)
                    .await?;
                return Err(incorrect());
            }
            (Some(_), None) => return Err(ServiceError::internal("a password was checked without a reservation")),
            (None, slot) => {
                // The user is gone: nothing to count against.
                if let Some((_, s)) = slot {
                    s.release();
                }
                // Unknown here: the old system may know it (lazy
                // migration). Its "no" is answered as any unknown user.
                if let Some(migrated) = self
                    .migrate_on_sign_in(&pool, &client, username, password, origin)
                    .await?
                {
                    if let Some(phc) = migrated.password_phc.clone() {
                        self.remember_srp(&pool.id, &migrated, &phc, password).await;
                    }
                    return self.finish_sign_in(pool, client, migrated, None, origin).await;
                }
                // Written before answering, like a real user's failure, so
                // the two take the same time.
                let event = AuthEvent::draft(&pool.id, AuthEventType::SignIn, crate::clock::now_millis())
                    .user(username, "")
                    .origin(&client.client_id, &origin.ip)
                    .detail("no such user")
                    .failed();
                self.audit.record_now(event).await?;
                return Err(if client.prevent_user_existence_errors {
                    incorrect()
                } else {
                    ServiceError::user_not_found()
                });
            }
        };
        // An imported hash becomes the pool's argon2id, and the SRP
        // verifier (where SRP is on) goes with the hash now stored.
        if let Some(phc) = self.rehash_if_needed(&pool, &user, password).await {
            self.remember_srp(&pool.id, &user, &phc, password).await;
        }
        self.finish_sign_in(pool, client, user, slot, origin).await
    }

    /// The rest of a sign-in once the password is known to be right: the
    /// user's state decides between tokens, an MFA or new-password
    /// challenge, and a refusal.
    pub(super) async fn finish_sign_in(
        &self,
        pool: UserPool,
        client: AppClient,
        user: User,
        slot: Option<Reservation>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        if !user.enabled {
            return Err(ServiceError::not_authorized("User is disabled."));
        }
        let now = crate::clock::now_millis();
        match user.status {
            UserStatus::Confirmed => {
                // A known device proves itself first (DEVICE_SRP_AUTH);
                // MFA, if any, comes after its proof.
                if let Some(challenge) = self.device_challenge(&pool, &client.client_id, &user, origin)? {
                    if let Some(slot) = slot {
                        slot.release();
                    }
                    return Ok(challenge);
                }
                if let Some(challenge) = self.mfa_challenge(&pool, &client, &user, origin).await? {
                    // The password was right, but the sign-in is not done:
                    // the slot goes without resetting the user's failures,
                    // since wrong MFA codes count toward the same lockout
                    // and a password alone must not wipe them.
                    if let Some(slot) = slot {
                        slot.release();
                    }
                    return Ok(challenge);
                }
                self.settle_success(&pool.id, &user.sub, slot, now).await?;
                let tokens = self
                    .issue_tokens(&pool, &client, &user, now / 1000, TokenSource::Authentication, origin)
                    .await?;
                self.audit.record_later(
                    AuthEvent::draft(&pool.id, AuthEventType::SignIn, now)
                        .user(&user.username, &user.sub)
                        .origin(&client.client_id, &origin.ip),
                );
                Ok(AuthAnswer::Tokens(tokens))
            }
            UserStatus::Unconfirmed => Err(ServiceError::new(
                ErrorKind::FailedPrecondition,
                "UserNotConfirmedException",
                "User is not confirmed.",
            )),
            UserStatus::ResetRequired => Err(ServiceError::new(
                ErrorKind::FailedPrecondition,
                "PasswordResetRequiredException",
                "Password reset required for the user",
            )),
            // No password: it signs in only through its provider.
            UserStatus::ExternalProvider => Err(incorrect()),
            UserStatus::ForceChangePassword => {
                if user.temporary_password_expires_at.is_some_and(|at| now >= at) {
                    return Err(ServiceError::not_authorized(
                        "Temporary password has expired and must be reset by an administrator.",
                    ));
                }
                self.new_password_challenge(&pool.id, &client.client_id, &user, &pool.settings)
            }
        }
    }

    fn new_password_challenge(
        &self,
        pool_id: &str,
        client_id: &str,
        user: &User,
        settings: &crate::model::pool_settings::PoolSettings,
    ) -> Result<AuthAnswer, ServiceError> {
        let required: Vec<String> = settings
            .schema
            .iter()
            .filter(|(name, s)| s.required && !user.attributes.contains_key(*name))
            .map(|(name, _)| format!("userAttributes.{name}"))
            .collect();
        let mut parameters = BTreeMap::new();
        parameters.insert("USER_ID_FOR_SRP".into(), user.username.clone());
        parameters.insert(
            "requiredAttributes".into(),
            serde_json::to_string(&required).unwrap_or_default(),
        );
        parameters.insert(
            "userAttributes".into(),
            serde_json::to_string(&user.attributes).unwrap_or_default(),
        );
        Ok(AuthAnswer::Challenge {
            name: NEW_PASSWORD_REQUIRED.into(),
            session: self
                .tokens
                .mint_session(pool_id, client_id, &user.sub, NEW_PASSWORD_REQUIRED)?,
            parameters,
            available: Vec::new(),
        })
    }

    async fn refresh(
        &self,
        caller: Caller,
        params: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<IssuedTokens, ServiceError> {
        let Caller { pool, client } = caller;
        let token = required(params, "auth_parameters", "REFRESH_TOKEN")?;
        let v = self.tokens.verify(token, "refresh").await?;
        if v.pool_id != pool.id || v.str("client_id") != client.client_id {
            return Err(ServiceError::not_authorized("Invalid Refresh Token."));
        }
        let user = self
            .user_by_sub(&pool.id, v.str("sub"))
            .await?
            .ok_or_else(|| ServiceError::not_authorized("Invalid Refresh Token."))?;
        let given = param(params, "USERNAME");
        let names: Vec<&str> = [given, user.username.as_str(), user.sub.as_str()]
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect();
        self.check_secret_hash(&client, &names, param(params, "SECRET_HASH"))?;
        if !user.enabled {
            return Err(ServiceError::not_authorized("User is disabled."));
        }
        if self.tokens.is_revoked(&v, &user)? {
            return Err(ServiceError::not_authorized("Refresh Token has been revoked"));
        }
        // Issued to a device since forgotten: ForgetDevice ended it.
        let device = v.str("device_key");
        if !device.is_empty()
            && self
                .node
                .store()
                .device(&pool.id, &user.sub, device)?
                .is_some_and(|d| d.forgotten)
        {
            return Err(ServiceError::not_authorized("Refresh Token has been revoked"));
        }
        let origin = &origin.with_device_key(device);
        if user.status != UserStatus::Confirmed {
            return Err(ServiceError::not_authorized("Invalid Refresh Token."));
        }
        self.issue_tokens(
            &pool,
            &client,
            &user,
            v.int("auth_time"),
            TokenSource::RefreshTokens {
                origin_jti: v.str("origin_jti"),
                scope: v.str("scope"),
            },
            origin,
        )
        .await
    }

    /// The hosted sign-in page's password step: `USER_PASSWORD_AUTH` for
    /// `client_id` whatever its explicit flows (the page is the client's
    /// OAuth front, as Cognito's hosted UI is), with the `SECRET_HASH` the
    /// page computes for a client with a secret.
    pub async fn hosted_password(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        self.require_fresh().await?;
        let caller = self.caller(client_id).await?;
        let mut params = BTreeMap::from([
            ("USERNAME".to_string(), username.to_string()),
            ("PASSWORD".to_string(), password.to_string()),
        ]);
        if let Some(secret) = self.client_secret(&caller.client)? {
            params.insert(
                "SECRET_HASH".into(),
                crate::auth::secret_hash::secret_hash(&secret, username, client_id),
            );
        }
        self.password_auth(caller, &params, origin).await
    }

    /// `grant_type=refresh_token` at the OAuth token endpoint: a refresh
    /// for `client_id`, whose secret (if any) the endpoint checked, with
    /// the `SECRET_HASH` the API wants computed here.
    pub async fn oauth_refresh(
        &self,
        client_id: &str,
        refresh_token: &str,
        origin: &Origin,
    ) -> Result<IssuedTokens, ServiceError> {
        self.require_fresh().await?;
        let caller = self.caller(client_id).await?;
        let v = self.tokens.verify(refresh_token, "refresh").await?;
        let mut params = BTreeMap::from([("REFRESH_TOKEN".to_string(), refresh_token.to_string())]);
        if let Some(secret) = self.client_secret(&caller.client)? {
            params.insert(
                "SECRET_HASH".into(),
                crate::auth::secret_hash::secret_hash(&secret, v.str("sub"), client_id),
            );
        }
        self.refresh(caller, &params, origin).await
    }

    /// The hosted page's answer to a challenge of its sign-in, with the
    /// `USERNAME` and `SECRET_HASH` the API wants added.
    pub async fn hosted_respond(
        &self,
        client_id: &str,
        challenge_name: &str,
        session: &str,
        username: &str,
        mut responses: BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        self.require_fresh().await?;
        check_parameters("challenge_responses", &responses)?;
        check_challenge_name(challenge_name)?;
        let caller = self.caller(client_id).await?;
        responses.insert("USERNAME".into(), username.to_string());
        if let Some(secret) = self.client_secret(&caller.client)? {
            responses.insert(
                "SECRET_HASH".into(),
                crate::auth::secret_hash::secret_hash(&secret, username, client_id),
            );
        }
        self.respond(caller, challenge_name, session, &responses, origin).await
    }

    /// `RespondToAuthChallenge`: `NEW_PASSWORD_REQUIRED`, one of the MFA
    /// challenges (`SOFTWARE_TOKEN_MFA`, `SMS_MFA`, `EMAIL_OTP`,
    /// `MFA_SETUP`, `SELECT_MFA_TYPE`), of `USER_AUTH`
    /// (`SELECT_CHALLENGE`, `EMAIL_OTP`, `SMS_OTP`, `MAGIC_LINK`) or
    /// `CUSTOM_CHALLENGE`. The session may come from any node.
    pub async fn respond_to_auth_challenge(
        &self,
        client_id: &str,
        challenge_name: &str,
        session: &str,
        responses: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        self.require_fresh().await?;
        check_parameters("challenge_responses", responses)?;
        check_challenge_name(challenge_name)?;
        let caller = self.caller(client_id).await?;
        self.respond(caller, challenge_name, session, responses, origin).await
    }

    /// `AdminRespondToAuthChallenge` (the caller holds the admin token):
    /// as [`Self::respond_to_auth_challenge`], for a client of `pool_id`.
    pub async fn admin_respond_to_auth_challenge(
        &self,
        pool_id: &str,
        client_id: &str,
        challenge_name: &str,
        session: &str,
        responses: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        self.require_fresh().await?;
        check_parameters("challenge_responses", responses)?;
        check_challenge_name(challenge_name)?;
        let caller = self.caller(client_id).await?;
        if caller.pool.id != pool_id {
            return Err(ServiceError::not_found(format!(
                "User pool client {client_id} does not exist in user pool {pool_id}."
            )));
        }
        self.respond(caller, challenge_name, session, responses, origin).await
    }

    async fn respond(
        &self,
        caller: Caller,
        challenge_name: &str,
        session: &str,
        responses: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let origin = &origin.with_device_key(param(responses, "DEVICE_KEY"));
        match challenge_name {
            super::mfa::SOFTWARE_TOKEN_MFA => self.software_token_answer(&caller, session, responses, origin).await,
            super::mfa::MFA_SETUP => self.mfa_setup_answer(&caller, session, responses, origin).await,
            super::mfa::SELECT_MFA_TYPE => self.select_mfa_answer(&caller, session, responses, origin).await,
            super::custom::CUSTOM_CHALLENGE => self.custom_challenge_answer(&caller, session, responses, origin).await,
            super::passwordless::SMS_MFA | super::passwordless::EMAIL_OTP | super::passwordless::SMS_OTP => {
                self.sign_in_code_answer(&caller, challenge_name, session, responses, origin)
                    .await
            }
            super::passwordless::SELECT_CHALLENGE => {
                self.select_challenge_answer(caller, session, responses, origin).await
            }
            super::passwordless::MAGIC_LINK => self.magic_link_answer(&caller, session, responses, origin).await,
            super::srp::PASSWORD_VERIFIER => self.password_verifier_answer(caller, responses, origin).await,
            super::devices::DEVICE_SRP_AUTH => self.device_srp_answer(&caller, session, responses).await,
            super::devices::DEVICE_PASSWORD_VERIFIER => self.device_verifier_answer(caller, responses, origin).await,
            super::webauthn::WEB_AUTHN => self.web_authn_answer(&caller, session, responses, origin).await,
            _ => self.new_password_answer(caller, session, responses, origin).await,
        }
    }

    /// `NEW_PASSWORD_REQUIRED`: sets the new password (and any required
    /// attributes) and signs the user in.
    async fn new_password_answer(
        &self,
        caller: Caller,
        session: &str,
        responses: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let challenge_name = NEW_PASSWORD_REQUIRED;
        let Caller { pool, client } = caller;
        let invalid_session = || ServiceError::not_authorized("Invalid session for the user, session is expired.");
        let v = self
            .tokens
            .verify(session, "session")
            .await
            .map_err(|_| invalid_session())?;
        if v.pool_id != pool.id || v.str("client_id") != client.client_id || v.str("challenge") != challenge_name {
            return Err(invalid_session());
        }
        let user = self
            .user_by_sub(&pool.id, v.str("sub"))
            .await?
            .ok_or_else(invalid_session)?;
        let username = required(responses, "challenge_responses", "USERNAME")?;
        let names = pool.settings.normalize_username(username);
        if names != pool.settings.normalize_username(&user.username) && username != user.sub {
            return Err(invalid_session());
        }
        self.check_secret_hash(&client, &[username], param(responses, "SECRET_HASH"))?;
        let new_password = required(responses, "challenge_responses", "NEW_PASSWORD")?;
        if new_password.len() > MAX_PASSWORD_BYTES {
            return Err(ServiceError::invalid_password(format!(
                "password must be at most {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        pool.settings.password_policy.check(new_password).map_err(|e| {
            ServiceError::invalid_password(format!("Password does not conform to policy: {}", e.reason))
        })?;
        let mut attributes = BTreeMap::new();
        for (k, value) in responses {
            let Some(name) = k.strip_prefix("userAttributes.") else {
                continue;
            };
            let schema = pool.settings.schema.get(name);
            if !client.may_write(name) || schema.is_some_and(|s| !s.mutable) || name.ends_with("_verified") {
                return Err(ServiceError::not_authorized(format!(
                    "A client attempted to write unauthorized attribute {name}"
                )));
            }
            attributes.insert(name.to_string(), value.clone());
        }
        let mut merged = user.attributes.clone();
        merged.extend(attributes.clone());
        validate_new_attributes(&pool.settings, &merged)?;
        // A changed email or phone number is unverified once applied (and
        // holds no alias); where the pool verifies it, a code goes to the
        // new value, as Cognito sends one.
        let to_verify: Vec<_> = attributes
            .iter()
            .filter(|(name, value)| user.attributes.get(*name) != Some(*value))
            .filter_map(|(name, value)| super::profile::alias_of(name).map(|(a, m)| (a, m, value.clone())))
            .filter(|(alias, _, _)| pool.settings.auto_verified_attributes.contains(alias))
            .collect();
        let phc = self
            .hasher
            .hash(new_password, crate::clock::random_bytes::<16>(), pool.settings.argon2)
            .await?;
        let now = crate::clock::now_millis();
        let event = AuthEvent::draft(&pool.id, AuthEventType::PasswordChange, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip)
            .detail("NEW_PASSWORD_REQUIRED answered");
        let cmd = SetPassword {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            password_phc: phc.clone(),
            status: UserStatus::Confirmed,
            require_status: Some(UserStatus::ForceChangePassword),
            attributes,
            temporary_password_expires_at: None,
            revoke_refresh: false,
            now,
        };
        match crate::service::try_submit_audited(&self.node, cmd, event).await? {
            Ok(user) => {
                self.remember_srp(&pool.id, &user, &phc, new_password).await;
                for (alias, medium, value) in to_verify {
                    let reason = super::profile::CodeReason {
                        source: crate::service::triggers::custom_message::MessageSource::UpdateUserAttribute,
                        client_id: &client.client_id,
                        origin,
                    };
                    let (record, message, _) =
                        super::profile::verification_code(self, &pool, &user, alias, medium, &value, now, reason)
                            .await?;
                    let cmd = IssueCode {
                        pool_id: pool.id.clone(),
                        sub: user.sub.clone(),
                        purpose: crate::store::auth_state::CodePurpose::verify(alias),
                        record,
                        message: Some(message),
                        now,
                    };
                    let event = AuthEvent::draft(&pool.id, AuthEventType::ResendCode, now)
                        .user(&user.username, &user.sub)
                        .origin(&client.client_id, &origin.ip)
                        .detail(format!(
                            "NEW_PASSWORD_REQUIRED: verification code for {}",
                            alias.attribute()
                        ));
                    // The password is already set: a code that cannot be
                    // sent (send limit) leaves the value unverified, and
                    // the user can ask for one with GetUserAttributeVerificationCode.
                    match crate::service::try_submit_audited(&self.node, cmd, event).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(r)) => {
                            tracing::warn!(attribute = alias.attribute(), rejection = %r, "verification code not sent")
                        }
                        Err(e) => {
                            tracing::warn!(attribute = alias.attribute(), error = %e, "verification code not sent")
                        }
                    }
                }
                // MFA follows a new password as it follows any password:
                // the pool's challenge (MFA_SETUP in an ON pool) comes
                // before tokens. The challenge session binds the new
                // password hash, which the outcome does not carry: read
                // the user as applied here, after a barrier (a first
                // sign-in, so rare).
                let store = self.node.store();
                if store.pool_mfa(&pool.id)?.mfa_configuration != crate::model::mfa::MfaConfiguration::Off {
                    self.node.read_barrier().await?;
                    let stored = store.user(&pool.id, &user.sub)?.ok_or_else(invalid_session)?;
                    if let Some(challenge) = self.mfa_challenge(&pool, &client, &stored, origin).await? {
                        return Ok(challenge);
                    }
                }
                let tokens = self
                    .issue_tokens(
                        &pool,
                        &client,
                        &user,
                        now / 1000,
                        TokenSource::NewPasswordChallenge,
                        origin,
                    )
                    .await?;
                Ok(AuthAnswer::Tokens(tokens))
            }
            Err(Rejection::WrongStatus(_)) => Err(invalid_session()),
            Err(r) => Err(r.into()),
        }
    }
}

/// The challenges `RespondToAuthChallenge` answers.
const CHALLENGES: [&str; 14] = [
    NEW_PASSWORD_REQUIRED,
    super::mfa::SOFTWARE_TOKEN_MFA,
    super::mfa::MFA_SETUP,
    super::mfa::SELECT_MFA_TYPE,
    super::custom::CUSTOM_CHALLENGE,
    super::passwordless::SMS_MFA,
    super::passwordless::EMAIL_OTP,
    super::passwordless::SMS_OTP,
    super::passwordless::SELECT_CHALLENGE,
    super::passwordless::MAGIC_LINK,
    super::srp::PASSWORD_VERIFIER,
    super::devices::DEVICE_SRP_AUTH,
    super::devices::DEVICE_PASSWORD_VERIFIER,
    super::webauthn::WEB_AUTHN,
];

fn check_challenge_name(name: &str) -> Result<(), ServiceError> {
    if CHALLENGES.contains(&name) {
        Ok(())
    } else {
        Err(ServiceError::invalid(format!(
            "challenge_name: {:?} is not supported; use one of {}",
            name.chars().take(64).collect::<String>(),
            CHALLENGES.join(", ")
        )))
    }
}
