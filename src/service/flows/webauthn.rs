//! Passkeys (WebAuthn) in the user flows: registration and management
//! with an access token (`StartWebAuthnRegistration`,
//! `CompleteWebAuthnRegistration`, `ListWebAuthnCredentials`,
//! `DeleteWebAuthnCredential`), and the `WEB_AUTHN` challenge, as a first
//! factor of `USER_AUTH` (with a username, or without one: a Tessera
//! addition) or as the MFA step after a password (`passkey_mfa`, also a
//! Tessera addition).
//!
//! # Challenges
//!
//! A registration's challenge is replicated (`StartWebAuthnRegistration`,
//! one per user, a newer one replaces it) because Cognito's completion
//! carries no session: it names the client and the relying party, and
//! `AddWebAuthnCredential` spends it. A sign-in's challenge travels in its
//! signed session (claims `wa_state`, `wa_challenge`, `wa_rp`), so any
//! node can check the answer, and `UseWebAuthnCredential` spends it in
//! `apply` with the counter check: a replayed answer is refused on every
//! node, and so is a counter that did not rise (a cloned authenticator),
//! which is audited.
//!
//! # Failures
//!
//! A refused assertion counts toward the user's lockout and is audited,
//! as a wrong code is. Verification is the library's (`auth::webauthn`).

use std::collections::BTreeMap;

use subtle::ConstantTimeEq;

use super::hooks::TokenSource;
use super::signin::{param, required, AuthAnswer};
use super::{AuthService, Caller};
use crate::auth::webauthn::{parse_assertion, user_handle, Refusal, RelyingParty};
use crate::command::{
    AddWebAuthnCredential, DeleteWebAuthnCredential, Rejection, StartWebAuthnRegistration, UseWebAuthnCredential,
};
use crate::model::app_client::AppClient;
use crate::model::auth_event::{AuthEvent, AuthEventType};
use crate::model::mfa::session_binding;
use crate::model::passwordless::FirstFactor;
use crate::model::pool::UserPool;
use crate::model::user::{User, UserStatus};
use crate::model::webauthn::{
    valid_rp_id, PendingRegistration, WebAuthnConfig, WebAuthnCredential, MAX_ASSERTION_JSON, MAX_CREDENTIALS_PER_USER,
    MAX_NAME_CHARS, MAX_REGISTRATION_JSON,
};
use crate::service::{ErrorKind, Origin, ServiceError};

/// The challenge (and first factor) name.
pub const WEB_AUTHN: &str = "WEB_AUTHN";
/// Challenge parameter: the options for `navigator.credentials.get()`.
pub const REQUEST_OPTIONS: &str = "CREDENTIAL_REQUEST_OPTIONS";

/// Session claim: the library's sign-in state (JSON, no credentials).
const STATE_CLAIM: &str = "wa_state";
/// Session claim: the challenge's id, spent in `apply`.
const CHALLENGE_CLAIM: &str = "wa_challenge";
/// Session claim: the relying party the options named.
const RP_CLAIM: &str = "wa_rp";
/// Session claim: `first` (a `USER_AUTH` factor) or `mfa` (after a
/// password).
const STAGE_CLAIM: &str = "stage";
/// Session claim of an MFA-stage session: [`session_binding`] of the user.
const BIND_CLAIM: &str = "bind";

/// Whom a `WEB_AUTHN` challenge is for.
pub(super) enum Subject<'a> {
    /// A user with passkeys: the options list them.
    User(&'a User),
    /// The same, with the passkeys the caller already read.
    UserWith(&'a User, Vec<WebAuthnCredential>),
    /// Whoever's passkey answers (username-less sign-in).
    Anyone,
    /// A user who does not exist or cannot use passkeys, when the client
    /// hides user existence: the challenge looks the same; no answer
    /// works.
    Nobody,
}

fn not_enabled() -> ServiceError {
    ServiceError::new(
        ErrorKind::FailedPrecondition,
        "WebAuthnNotEnabledException",
        "Passkeys are not enabled in this user pool: allow WEB_AUTHN in sign_in_policy.allowed_first_auth_factors (UpdateUserPool), or turn on passkey_mfa in web_authn_configuration (SetUserPoolMfaConfig).",
    )
}

fn challenge_not_found() -> ServiceError {
    ServiceError::new(
        ErrorKind::FailedPrecondition,
        "WebAuthnChallengeNotFoundException",
        "No passkey registration is waiting for this user, or it expired or was already completed: call StartWebAuthnRegistration again.",
    )
}

fn invalid_session() -> ServiceError {
    ServiceError::not_authorized("Invalid session for the user, session is expired.")
}

/// What a refused registration tells the caller.
fn registration_error(r: &Refusal) -> ServiceError {
    let msg = r.to_string();
    match r {
        Refusal::Origin(..) => ServiceError::new(ErrorKind::InvalidParameter, "WebAuthnOriginNotAllowedException", msg),
        Refusal::RelyingParty(_) => {
            ServiceError::new(ErrorKind::InvalidParameter, "WebAuthnRelyingPartyMismatchException", msg)
        }
        Refusal::Challenge => ServiceError::new(
            ErrorKind::FailedPrecondition,
            "WebAuthnChallengeNotFoundException",
            format!("{msg}: the credential was made for an older or another registration; call StartWebAuthnRegistration again"),
        ),
        Refusal::UserNotVerified | Refusal::NotSupported(_) => {
            ServiceError::new(ErrorKind::InvalidParameter, "WebAuthnCredentialNotSupportedException", msg)
        }
        Refusal::Malformed(_) | Refusal::Counter | Refusal::UnknownCredential | Refusal::Signature => {
            ServiceError::invalid(format!("credential_document: {msg}"))
        }
    }
}

/// What a refused assertion tells the caller.
fn sign_in_error(r: &Refusal) -> ServiceError {
    let msg = r.to_string();
    match r {
        Refusal::Malformed(_) => ServiceError::invalid(format!("challenge_responses.CREDENTIAL: {msg}")),
        Refusal::Origin(..) => ServiceError::new(ErrorKind::NotAuthorized, "WebAuthnOriginNotAllowedException", msg),
        Refusal::RelyingParty(_) => {
            ServiceError::new(ErrorKind::NotAuthorized, "WebAuthnRelyingPartyMismatchException", msg)
        }
        _ => ServiceError::not_authorized(format!("Incorrect passkey: {msg}.")),
    }
}

/// Whether `user` may sign in at all.
fn can_sign_in(user: &User) -> bool {
    user.enabled && user.status == UserStatus::Confirmed
}

impl AuthService {
    /// The pool's relying party and passkey setting. The RP id defaults
    /// to the public URL's host, which must then be a domain name.
    pub(crate) fn relying_party(&self, pool_id: &str) -> Result<(RelyingParty, WebAuthnConfig), ServiceError> {
        let cfg = self.node.store().pool_web_authn(pool_id)?;
        let rp_id = if cfg.relying_party_id.is_empty() {
            let host = url::Url::parse(&self.public_url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default();
            if valid_rp_id(&host).is_err() {
                return Err(ServiceError::new(
                    ErrorKind::FailedPrecondition,
                    "WebAuthnConfigurationMissingException",
                    format!("This user pool has no passkey relying party: set web_authn_configuration.relying_party_id (SetUserPoolMfaConfig). The public URL's host {host:?} cannot be one (WebAuthn refuses IP addresses)."),
                ));
            }
            host
        } else {
            cfg.relying_party_id.clone()
        };
        let rp = RelyingParty::new(&rp_id, &self.public_url, &cfg)
            .map_err(|e| ServiceError::internal(format!("relying party {rp_id}: {e}")))?;
        Ok((rp, cfg))
    }

    /// Passkeys are on when the pool allows `WEB_AUTHN` as a first factor
    /// or as MFA.
    fn passkeys_enabled(&self, pool_id: &str, cfg: &WebAuthnConfig) -> Result<(), ServiceError> {
        if cfg.passkey_mfa || self.node.store().pool_sign_in(pool_id)?.allows(FirstFactor::WebAuthn) {
            Ok(())
        } else {
            Err(not_enabled())
        }
    }

    /// `StartWebAuthnRegistration`: the options for
    /// `navigator.credentials.create()`, whose challenge is kept
    /// (replicated) for the completion.
    pub async fn start_web_authn_registration(
        &self,
        access_token: &str,
        origin: &Origin,
    ) -> Result<String, ServiceError> {
        let (_, user, client) = self.authenticate_client(access_token).await?;
        let pool_id = client.pool_id.clone();
        let (rp, cfg) = self.relying_party(&pool_id)?;
        self.passkeys_enabled(&pool_id, &cfg)?;
        let existing = self.node.store().web_authn_credentials(&pool_id, &user.sub)?;
        if existing.len() >= MAX_CREDENTIALS_PER_USER {
            return Err(ServiceError::limit_exceeded(format!(
                "A user has at most {MAX_CREDENTIALS_PER_USER} passkeys; delete one first (DeleteWebAuthnCredential)."
            )));
        }
        let display = user.attributes.get("email").unwrap_or(&user.username);
        let ids: Vec<String> = existing.iter().map(|c| c.credential_id.clone()).collect();
        let (options, state) = rp
            .start_registration(&user.sub, &user.username, display, &ids)
            .map_err(|e| ServiceError::internal(format!("passkey options: {e}")))?;
        let now = crate::clock::now_millis();
        let cmd = StartWebAuthnRegistration {
            pool_id: pool_id.clone(),
            sub: user.sub.clone(),
            pending: PendingRegistration {
                id: hex::encode(crate::clock::random_bytes::<16>()),
                client_id: client.client_id.clone(),
                relying_party_id: rp.id.clone(),
                state_json: state,
                expires_at: now + i64::from(cfg.challenge_secs()) * 1000,
            },
        };
        let event = AuthEvent::draft(&pool_id, AuthEventType::Passkey, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip)
            .detail("StartWebAuthnRegistration");
        crate::service::submit_audited(&self.node, cmd, event).await?;
        Ok(options)
    }

    /// `CompleteWebAuthnRegistration`: verifies the new credential
    /// against the user's pending registration and stores it.
    pub async fn complete_web_authn_registration(
        &self,
        access_token: &str,
        credential_json: &str,
        friendly_name: &str,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        if credential_json.trim().is_empty() {
            return Err(ServiceError::invalid(
                "credential_document: required (the RegistrationResponseJSON of navigator.credentials.create())",
            ));
        }
        if credential_json.len() > MAX_REGISTRATION_JSON {
            return Err(ServiceError::invalid(format!(
                "credential_document: at most {MAX_REGISTRATION_JSON} bytes"
            )));
        }
        if friendly_name.chars().count() > MAX_NAME_CHARS || friendly_name.chars().any(char::is_control) {
            return Err(ServiceError::invalid(format!(
                "friendly_credential_name: at most {MAX_NAME_CHARS} characters, no control characters"
            )));
        }
        let name = if friendly_name.trim().is_empty() {
            "Passkey"
        } else {
            friendly_name.trim()
        };
        let (_, user, client) = self.authenticate_client(access_token).await?;
        let pool_id = client.pool_id.clone();
        let (rp, cfg) = self.relying_party(&pool_id)?;
        self.passkeys_enabled(&pool_id, &cfg)?;
        let store = self.node.store();
        let mut pending = store.web_authn_pending(&pool_id, &user.sub)?;
        let mut fresh = false;
        if pending.is_none() {
            // Started through a node ahead of this one.
            self.node.read_barrier().await?;
            pending = store.web_authn_pending(&pool_id, &user.sub)?;
            fresh = true;
        }
        let mut pending = pending.ok_or_else(challenge_not_found)?;
        let now = crate::clock::now_millis();
        let event = AuthEvent::draft(&pool_id, AuthEventType::Passkey, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip);
        let mut verified = self.check_registration(&rp, &client, &pending, credential_json, name, now);
        if matches!(verified, Err(Some(Refusal::Challenge))) && !fresh {
            // A newer start through another node: check against it.
            self.node.read_barrier().await?;
            if let Some(p) = store.web_authn_pending(&pool_id, &user.sub)? {
                pending = p;
                verified = self.check_registration(&rp, &client, &pending, credential_json, name, now);
            }
        }
        let credential = match verified {
            Ok(c) => c,
            Err(refusal) => {
                let error = match &refusal {
                    Some(r) => registration_error(r),
                    None => challenge_not_found(),
                };
                self.audit.record_later(
                    event
                        .detail(format!("CompleteWebAuthnRegistration refused: {}", error.message))
                        .failed(),
                );
                return Err(error);
            }
        };
        let detail = format!(
            "passkey registered ({} attestation, model {})",
            credential.attestation_format, credential.aaguid
        );
        let cmd = AddWebAuthnCredential {
            pool_id,
            sub: user.sub.clone(),
            pending_id: pending.id.clone(),
            credential,
            now,
        };
        match crate::service::try_submit_audited(&self.node, cmd, event.detail(detail)).await? {
            Ok(()) => Ok(()),
            Err(Rejection::NotFound { kind, .. }) if kind.starts_with("passkey registration") => {
                Err(challenge_not_found())
            }
            Err(r) => Err(r.into()),
        }
    }

    /// Checks a registration against `pending`: `Err(None)` when the
    /// pending one cannot be used at all.
    fn check_registration(
        &self,
        rp: &RelyingParty,
        client: &AppClient,
        pending: &PendingRegistration,
        credential_json: &str,
        name: &str,
        now: i64,
    ) -> Result<WebAuthnCredential, Option<Refusal>> {
        if pending.expires_at <= now {
            return Err(None);
        }
        if pending.client_id != client.client_id {
            return Err(Some(Refusal::NotSupported(
                "the registration was started by another app client; complete it with a token of that client".into(),
            )));
        }
        if pending.relying_party_id != rp.id {
            return Err(Some(Refusal::RelyingParty(rp.id.clone())));
        }
        rp.finish_registration(&pending.state_json, credential_json, name)
            .map(|r| r.credential)
            .map_err(Some)
    }

    /// `ListWebAuthnCredentials`: the user's passkeys in credential-id
    /// order, `max_results` (1..=20, 0 for 20) at a time.
    pub async fn list_web_authn_credentials(
        &self,
        access_token: &str,
        next_token: &str,
        max_results: i32,
    ) -> Result<(Vec<WebAuthnCredential>, String), ServiceError> {
        let max = match max_results {
            0 => MAX_CREDENTIALS_PER_USER,
            n if (1..=MAX_CREDENTIALS_PER_USER as i32).contains(&n) => n as usize,
            _ => {
                return Err(ServiceError::invalid(format!(
                    "max_results: 1 to {MAX_CREDENTIALS_PER_USER} (0 means {MAX_CREDENTIALS_PER_USER})"
                )))
            }
        };
        if next_token.len() > 2048 {
            return Err(ServiceError::invalid("next_token: not a token this call returned"));
        }
        let (_, user, client) = self.authenticate_client(access_token).await?;
        let all = self.node.store().web_authn_credentials(&client.pool_id, &user.sub)?;
        let mut rest: Vec<WebAuthnCredential> = all
            .into_iter()
            .filter(|c| next_token.is_empty() || c.credential_id.as_str() > next_token)
            .collect();
        let more = rest.len() > max;
        rest.truncate(max);
        let next = if more {
            rest.last().map(|c| c.credential_id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok((rest, next))
    }

    /// `DeleteWebAuthnCredential`: once this returns, the credential
    /// signs in on no node (the sign-in's `apply` finds it gone).
    pub async fn delete_web_authn_credential(
        &self,
        access_token: &str,
        credential_id: &str,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        if credential_id.is_empty() || credential_id.len() > 1400 {
            return Err(ServiceError::invalid(
                "credential_id: required, the base64url id ListWebAuthnCredentials shows",
            ));
        }
        let (_, user, client) = self.authenticate_client(access_token).await?;
        let now = crate::clock::now_millis();
        let event = AuthEvent::draft(&client.pool_id, AuthEventType::Passkey, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip)
            .detail("DeleteWebAuthnCredential");
        let cmd = DeleteWebAuthnCredential {
            pool_id: client.pool_id.clone(),
            sub: user.sub.clone(),
            credential_id: credential_id.to_string(),
        };
        crate::service::submit_audited(&self.node, cmd, event).await
    }

    /// The `WEB_AUTHN` challenge for `subject`, as a first factor
    /// (`mfa` false) or after a password.
    pub(super) fn web_authn_challenge(
        &self,
        pool: &UserPool,
        client: &AppClient,
        subject: Subject<'_>,
        username: &str,
        mfa: bool,
    ) -> Result<AuthAnswer, ServiceError> {
        let (rp, cfg) = self.relying_party(&pool.id)?;
        let (sub, bind, creds) = match subject {
            Subject::User(u) => (
                u.sub.clone(),
                session_binding(u),
                self.node.store().web_authn_credentials(&pool.id, &u.sub)?,
            ),
            Subject::UserWith(u, creds) => (u.sub.clone(), session_binding(u), creds),
            Subject::Anyone => (String::new(), String::new(), Vec::new()),
            Subject::Nobody => (
                crate::clock::new_uuid().to_string(),
                hex::encode(crate::clock::random_bytes::<16>()),
                Vec::new(),
            ),
        };
        let ch = rp
            .start_sign_in(&creds)
            .map_err(|e| ServiceError::internal(format!("passkey options: {e}")))?;
        let stage = if mfa { "mfa" } else { "first" };
        let session = self.tokens.mint_challenge_session(
            &pool.id,
            &client.client_id,
            &sub,
            WEB_AUTHN,
            i64::from(cfg.challenge_secs()),
            &[
                (STATE_CLAIM, ch.state_json.as_str()),
                (CHALLENGE_CLAIM, ch.challenge_id.as_str()),
                (RP_CLAIM, rp.id.as_str()),
                (STAGE_CLAIM, stage),
                (BIND_CLAIM, bind.as_str()),
            ],
        )?;
        let mut parameters = BTreeMap::from([(REQUEST_OPTIONS.to_string(), ch.options_json)]);
        if !username.is_empty() {
            parameters.insert("USERNAME".into(), username.to_string());
        }
        Ok(AuthAnswer::Challenge {
            name: WEB_AUTHN.into(),
            session,
            parameters,
            available: Vec::new(),
        })
    }

    /// `USER_AUTH` with `PREFERRED_CHALLENGE=WEB_AUTHN`: with `USERNAME`,
    /// the user's passkeys; without, any discoverable passkey of the pool.
    pub(super) async fn web_authn_first_factor(
        &self,
        caller: &Caller,
        username: &str,
        secret_hash: &str,
    ) -> Result<AuthAnswer, ServiceError> {
        let Caller { pool, client } = caller;
        self.check_secret_hash(client, &[username], secret_hash)?;
        if username.is_empty() {
            return self.web_authn_challenge(pool, client, Subject::Anyone, "", false);
        }
        let user = self.find_user(pool, username).await?;
        // Read once: whether the user has passkeys, and which the options
        // list.
        let creds = match &user {
            Some(u) => self.node.store().web_authn_credentials(&pool.id, &u.sub)?,
            None => Vec::new(),
        };
        match user {
            Some(u) if can_sign_in(&u) && !creds.is_empty() => {
                self.web_authn_challenge(pool, client, Subject::UserWith(&u, creds), username, false)
            }
            _ if client.prevent_user_existence_errors => {
                self.web_authn_challenge(pool, client, Subject::Nobody, username, false)
            }
            None => Err(ServiceError::user_not_found()),
            Some(u) if !u.enabled => Err(ServiceError::not_authorized("User is disabled.")),
            Some(u) if u.status != UserStatus::Confirmed => Err(ServiceError::new(
                ErrorKind::FailedPrecondition,
                "UserNotConfirmedException",
                "WEB_AUTHN needs a confirmed user",
            )),
            Some(_) => Err(ServiceError::invalid(
                "WEB_AUTHN: the user has no passkey; sign in another way and register one (StartWebAuthnRegistration)",
            )),
        }
    }

    /// `RespondToAuthChallenge(WEB_AUTHN)`: `CREDENTIAL` (the assertion's
    /// JSON), `USERNAME` unless username-less, `SECRET_HASH`.
    pub(super) async fn web_authn_answer(
        &self,
        caller: &Caller,
        session: &str,
        responses: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let v = self.open_session(caller, session, WEB_AUTHN).await?;
        let credential = required(responses, "challenge_responses", "CREDENTIAL")?;
        if credential.len() > MAX_ASSERTION_JSON {
            return Err(ServiceError::invalid(format!(
                "challenge_responses.CREDENTIAL: at most {MAX_ASSERTION_JSON} bytes"
            )));
        }
        let assertion = parse_assertion(credential).map_err(|r| sign_in_error(&r))?;
        let username = param(responses, "USERNAME");
        self.check_secret_hash(&caller.client, &[username], param(responses, "SECRET_HASH"))?;
        let Caller { pool, client } = caller;
        let sub = match v.str("sub") {
            "" => user_handle(&assertion).ok_or_else(|| {
                ServiceError::not_authorized(
                    "Incorrect passkey: it returned no user handle, so it is not a discoverable passkey of this pool; sign in with a username.",
                )
            })?,
            // WebAuthn §7.2 step 6: a user handle, when the authenticator
            // returns one, names the user the challenge was for.
            s if user_handle(&assertion).is_some_and(|h| h != s) => {
                return Err(ServiceError::not_authorized(
                    "Incorrect passkey: it belongs to another user than the one signing in.",
                ))
            }
            s => s.to_string(),
        };
        let refused =
            || ServiceError::not_authorized("Incorrect passkey: it is not registered for a user who can sign in.");
        let Some(user) = self.user_by_sub(&pool.id, &sub).await?.filter(can_sign_in) else {
            return Err(refused());
        };
        if !username.is_empty() {
            let s = &pool.settings;
            if s.normalize_username(username) != s.normalize_username(&user.username) && username != user.sub {
                return Err(invalid_session());
            }
        }
        let mfa = v.str(STAGE_CLAIM) == "mfa";
        if mfa && !bool::from(session_binding(&user).as_bytes().ct_eq(v.str(BIND_CLAIM).as_bytes())) {
            // A password change or sign-out since the password step.
            return Err(invalid_session());
        }
        let (rp, _) = self.relying_party(&pool.id)?;
        if rp.id != v.str(RP_CLAIM) {
            return Err(ServiceError::new(
                ErrorKind::NotAuthorized,
                "WebAuthnRelyingPartyMismatchException",
                "The user pool's passkey relying party changed since this challenge; sign in again.",
            ));
        }
        let store = self.node.store();
        let challenge_id = v.str(CHALLENGE_CLAIM);
        let challenge_expires_at = v.int("exp").saturating_mul(1000);
        // A replay this node has seen applied is told as one (the counter
        // check below would call it a clone); `apply` decides the rest.
        let replayed = || ServiceError::not_authorized("This passkey challenge was already answered; sign in again.");
        if store.challenge_spent(&pool.id, challenge_expires_at, challenge_id)? {
            return Err(replayed());
        }
        // Reserve before checking: parallel answers cannot exceed the
        // lockout, and a locked user's answer is not evaluated at all.
        let slot = self.check_lockout(&pool.id, &user.sub).await?;
        // Only the credential that signed is looked up (a point read, not
        // a scan of the user's passkeys): the library refuses any other.
        let presented = crate::auth::webauthn::credential_id_of(&assertion);
        let mut cred = store.web_authn_credential(&pool.id, &user.sub, &presented)?;
        if cred.is_none() {
            // Registered through a node ahead of this one?
            self.node.read_barrier().await?;
            cred = store.web_authn_credential(&pool.id, &user.sub, &presented)?;
        }
        let creds: Vec<WebAuthnCredential> = cred.into_iter().collect();
        let asserted = match rp.finish_sign_in(v.str(STATE_CLAIM), &creds, &assertion) {
            Ok(a) => a,
            Err(r) => {
                let detail = format!("WEB_AUTHN refused: {r}");
                self.record_failure_as(
                    AuthEventType::Passkey,
                    &pool.id,
                    &client.client_id,
                    &user,
                    origin,
                    &detail,
                    slot,
                )
                .await?;
                return Err(sign_in_error(&r));
            }
        };
        let now = crate::clock::now_millis();
        let cmd = UseWebAuthnCredential {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            credential_id: asserted.credential_id.clone(),
            sign_count: asserted.counter,
            backup_state: asserted.backup_state,
            challenge_id: challenge_id.to_string(),
            challenge_expires_at,
            now,
        };
        let refusal = match crate::service::try_submit(&self.node, cmd).await? {
            Ok(()) => None,
            Err(Rejection::ResourceConflict(_)) => {
                Some(("WEB_AUTHN challenge answered twice (replay)".to_string(), replayed()))
            }
            Err(Rejection::NotFound { .. }) => Some((
                "WEB_AUTHN with a deleted passkey".to_string(),
                ServiceError::not_authorized("Incorrect passkey: it was deleted."),
            )),
            Err(r @ Rejection::CounterRegressed { .. }) => Some((
                format!("WEB_AUTHN refused, possible cloned authenticator: {r}"),
                r.into(),
            )),
            Err(r) => return Err(r.into()),
        };
        if let Some((detail, error)) = refusal {
            self.record_failure_as(
                AuthEventType::Passkey,
                &pool.id,
                &client.client_id,
                &user,
                origin,
                &detail,
                slot,
            )
            .await?;
            return Err(error);
        }
        self.settle_success(&pool.id, &user.sub, Some(slot), now).await?;
        let tokens = self
            .issue_tokens(pool, client, &user, now / 1000, TokenSource::Authentication, origin)
            .await?;
        self.audit.record_later(
            AuthEvent::draft(&pool.id, AuthEventType::SignIn, now)
                .user(&user.username, &user.sub)
                .origin(&client.client_id, &origin.ip)
                .detail(format!(
                    "{WEB_AUTHN} ({}) answered with passkey {}",
                    if mfa { "mfa" } else { "first" },
                    asserted.credential_id.chars().take(16).collect::<String>()
                )),
        );
        Ok(AuthAnswer::Tokens(tokens))
    }

    /// Whether `user` can answer MFA with a passkey: the pool allows it
    /// and the user has one.
    pub(super) fn passkey_mfa_available(&self, pool_id: &str, user: &User) -> Result<bool, ServiceError> {
        let store = self.node.store();
        Ok(store.pool_web_authn(pool_id)?.passkey_mfa && store.has_web_authn_credential(pool_id, &user.sub)?)
    }
}
