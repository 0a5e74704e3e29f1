//! Codes by SMS and email at sign-in, choice-based sign-in and magic links:
//!
//! - the MFA factors `SMS_MFA` and `EMAIL_OTP` after a correct password
//!   (chosen by [`super::mfa`]);
//! - Cognito's `USER_AUTH` flow: `PREFERRED_CHALLENGE` `PASSWORD`,
//!   `EMAIL_OTP` or `SMS_OTP` (no password, and no MFA after it, as
//!   Cognito), or `SELECT_CHALLENGE` listing the choices
//!   (`available_challenges`) when none is preferred;
//! - magic links (a Tessera addition, `PREFERRED_CHALLENGE=MAGIC_LINK`): a
//!   signed, single-use, short-lived link by email, approved in a browser
//!   (`POST /{pool_id}/magic-link`), which the device that asked then
//!   collects (`RespondToAuthChallenge(MAGIC_LINK)`, polling), or whose
//!   token that device presents itself (`MAGIC_LINK_TOKEN`).
//!
//! # Codes
//!
//! A code is drawn by the node that sends it, with a random salt. The
//! salt goes into the challenge session (claim `otp`, signed), and the
//! stored record is the salted hash of the challenge name and the code
//! (`IssueCode`, purpose `SignIn`, one per user: a newer one replaces it).
//! An answer is hashed with the salt of the session it comes with, so a
//! code sent for one session never matches under another, and a code of
//! one user never under another user's session (the record is per user).
//! `ConsumeSignInCode` spends it in `apply`: once, on every node, within
//! the session's lifetime, with the record's attempt limit. Every answer is
//! evaluated under a lockout reservation and a wrong one is a replicated
//! failure, exactly as a wrong TOTP code or password is. Sends count
//! against the user's send window (`IssueCode`) and the destination's rate.
//!
//! # Unknown users
//!
//! When the client hides user existence (`prevent_user_existence_errors`),
//! a sign-in for an unknown user, or for a user who cannot use the asked
//! factor (no verified email, say), gets the same answer shape: the
//! challenge with a masked destination and a session (of a random `sub`),
//! after a write of the same cost as a real send (`decoy_code_send`), and
//! no message. Its answers fail as wrong codes do; a magic link for it is
//! never approved. `SELECT_CHALLENGE` then lists the pool's allowed first
//! factors for everyone. Otherwise the errors say what is wrong.
//!
//! # Magic links
//!
//! A link carries a token signed by the node that sent it (so any node can
//! check it), naming pool, client, user, the link's random id and the
//! session binding; the challenge session carries the same id. The record
//! (`IssueCode`, purpose `MagicLink`) holds the id's salted hash.
//! `MagicLinkStep` moves it to approved (once) and spends it (once), in
//! `apply`. A GET of the link only shows a confirmation page with a form,
//! because mail scanners fetch links; only its POST approves.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::signin::{param, required, AuthAnswer};
use super::{AuthService, Caller};
use crate::auth::codes::{hash_code, CodeError, CodeRecord};
use crate::command::{ClearSignInFailures, ConsumeSignInCode, IssueCode, LinkAction, MagicLinkStep, Rejection};
use crate::model::app_client::AppClient;
use crate::model::auth_event::{AuthEvent, AuthEventType};
use crate::model::mfa::{session_binding, MfaFactor};
use crate::model::outbox::{mask_destination, DeliveryMedium, MessageKind};
use crate::model::passwordless::{FirstFactor, SignInPolicy};
use crate::model::pool::UserPool;
use crate::model::pool_settings::SignInAlias;
use crate::model::user::{User, UserStatus};
use crate::service::tokens::Verified;
use crate::service::{ErrorKind, Origin, ServiceError};
use crate::store::auth_state::CodePurpose;

/// The MFA challenge of a code by SMS.
pub const SMS_MFA: &str = "SMS_MFA";
/// The challenge of a code by email: MFA after a password, or a first
/// factor of `USER_AUTH`.
pub const EMAIL_OTP: &str = "EMAIL_OTP";
/// The `USER_AUTH` challenge of a code by SMS (no password).
pub const SMS_OTP: &str = "SMS_OTP";
/// `USER_AUTH` without `PREFERRED_CHALLENGE`: pick one of
/// `available_challenges`.
pub const SELECT_CHALLENGE: &str = "SELECT_CHALLENGE";
/// The challenge of a magic link (Tessera addition).
pub const MAGIC_LINK: &str = "MAGIC_LINK";
/// The `challenge` claim of a magic link's own token: never a session
/// for any challenge, so neither can stand for the other.
const LINK_TOKEN_CHALLENGE: &str = "MAGIC_LINK_APPROVAL";

/// Session claim: [`session_binding`] of the user at issue time.
const BIND_CLAIM: &str = "bind";
/// Session claim: the salt of the code sent for this session (hex).
const SALT_CLAIM: &str = "otp";
/// Session and link-token claim: the magic link's id (hex).
const LINK_CLAIM: &str = "link";
/// Session claim: what this session's code answers (`mfa` after a
/// password, `first` for `USER_AUTH`), for the audit log.
const STAGE_CLAIM: &str = "stage";

/// Longest `USERNAME` of a sign-in.
const MAX_USERNAME_CHARS: usize = 128;

/// A code sent at sign-in: which challenge, by which medium, how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CodeFactor {
    /// `SMS_MFA`: after a password, 6 digits by SMS.
    SmsMfa,
    /// `EMAIL_OTP` after a password: 8 digits by email.
    EmailMfa,
    /// `EMAIL_OTP` as a first factor: 8 digits by email.
    EmailOtp,
    /// `SMS_OTP` as a first factor: 6 digits by SMS.
    SmsOtp,
}

impl CodeFactor {
    fn challenge(self) -> &'static str {
        match self {
            CodeFactor::SmsMfa => SMS_MFA,
            CodeFactor::EmailMfa | CodeFactor::EmailOtp => EMAIL_OTP,
            CodeFactor::SmsOtp => SMS_OTP,
        }
    }

    fn medium(self) -> DeliveryMedium {
        match self {
            CodeFactor::SmsMfa | CodeFactor::SmsOtp => DeliveryMedium::Sms,
            CodeFactor::EmailMfa | CodeFactor::EmailOtp => DeliveryMedium::Email,
        }
    }

    /// Cognito's lengths: 6 digits by SMS, 8 by email.
    fn digits(self) -> usize {
        match self.medium() {
            DeliveryMedium::Sms => 6,
            DeliveryMedium::Email => 8,
        }
    }

    fn stage(self) -> &'static str {
        match self {
            CodeFactor::SmsMfa | CodeFactor::EmailMfa => "mfa",
            CodeFactor::EmailOtp | CodeFactor::SmsOtp => "first",
        }
    }

    /// The MFA factor sent this way after a password.
    pub(super) fn mfa(factor: MfaFactor) -> Option<Self> {
        match factor {
            MfaFactor::Sms => Some(CodeFactor::SmsMfa),
            MfaFactor::Email => Some(CodeFactor::EmailMfa),
            MfaFactor::SoftwareToken => None,
        }
    }
}

/// The response key that answers `challenge` with a code.
fn code_response_key(challenge: &str) -> &'static str {
    match challenge {
        SMS_MFA => "SMS_MFA_CODE",
        SMS_OTP => "SMS_OTP_CODE",
        _ => "EMAIL_OTP_CODE",
    }
}

/// `n` decimal digits from 8 random bytes (drawn while preparing).
fn digits_from_random(random: [u8; 8], n: usize) -> String {
    let modulus = 10u64.pow(u32::try_from(n).unwrap_or(8));
    format!("{:0width$}", u64::from_be_bytes(random) % modulus, width = n)
}

/// What is hashed for a code: the challenge it answers and the code.
fn code_material(challenge: &str, code: &str) -> String {
    format!("{challenge}\0{}", code.trim())
}

fn salt_of(v: &Verified) -> Option<[u8; 16]> {
    let bytes = hex::decode(v.str(SALT_CLAIM)).ok()?;
    <[u8; 16]>::try_from(bytes.as_slice()).ok()
}

fn invalid_session() -> ServiceError {
    ServiceError::not_authorized("Invalid session for the user, session is expired.")
}

/// Cognito's answer to a wrong code.
fn code_mismatch() -> ServiceError {
    ServiceError::new(
        ErrorKind::InvalidParameter,
        "CodeMismatchException",
        "Invalid code or auth state for the user.",
    )
}

/// A code or link used already, replaced by a newer one, or expired.
fn code_spent() -> ServiceError {
    ServiceError::new(
        ErrorKind::InvalidParameter,
        "ExpiredCodeException",
        "The code or link was already used, replaced by a newer one, or has expired; sign in again.",
    )
}

/// The magic link has not been approved yet: poll again.
fn link_pending() -> ServiceError {
    ServiceError::new(
        ErrorKind::FailedPrecondition,
        "MagicLinkNotApprovedException",
        "The magic link has not been opened and confirmed yet; retry this call in a few seconds (until the session expires).",
    )
}

/// The destination of `medium` if `user` has it verified.
fn verified_destination(user: &User, medium: DeliveryMedium) -> Option<(SignInAlias, String)> {
    match medium {
        DeliveryMedium::Email if user.email_verified => {
            user.attributes.get("email").map(|v| (SignInAlias::Email, v.clone()))
        }
        DeliveryMedium::Sms if user.phone_number_verified => user
            .attributes
            .get("phone_number")
            .map(|v| (SignInAlias::PhoneNumber, v.clone())),
        _ => None,
    }
}

/// A masked destination for a user that does not exist (or cannot use
/// the factor), stable for a name so asking twice shows the same.
fn decoy_destination(pool_id: &str, username: &str, medium: DeliveryMedium) -> String {
    let h = Sha256::digest(format!("tessera decoy destination\0{pool_id}\0{username}").as_bytes());
    let letter = |b: u8| char::from(b'a' + b % 26);
    match medium {
        DeliveryMedium::Email if username.contains('@') => mask_destination(medium, username),
        DeliveryMedium::Email => format!("{}***@{}***", letter(h[0]), letter(h[1])),
        DeliveryMedium::Sms => {
            let tail: String = h[2..6].iter().map(|b| char::from(b'0' + b % 10)).collect();
            format!("+*******{tail}")
        }
    }
}

/// The first factors `user` can use now, among those `policy` allows
/// (`has_passkey`: whether the user registered one).
fn usable_first_factors(policy: &SignInPolicy, user: &User, has_passkey: bool) -> Vec<FirstFactor> {
    policy
        .allowed_first_auth_factors
        .iter()
        .copied()
        .filter(|f| match f {
            FirstFactor::Password => user.password_phc.is_some(),
            FirstFactor::EmailOtp | FirstFactor::MagicLink => {
                verified_destination(user, DeliveryMedium::Email).is_some()
            }
            FirstFactor::SmsOtp => verified_destination(user, DeliveryMedium::Sms).is_some(),
            FirstFactor::WebAuthn => has_passkey,
        })
        .collect()
}

/// Whether `user` may be sent a passwordless code or link at all.
fn can_sign_in(user: &User) -> bool {
    user.enabled && user.status == UserStatus::Confirmed
}

impl AuthService {
    /// Sends `factor`'s code to `user` and answers with its challenge and
    /// a session that the code is bound to (see the module docs).
    pub(super) async fn send_sign_in_code(
        &self,
        pool: &UserPool,
        client: &AppClient,
        user: &User,
        factor: CodeFactor,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let store = self.node.store();
        let cfg = store.pool_mfa(&pool.id)?;
        let medium = factor.medium();
        let Some((alias, destination)) = verified_destination(user, medium) else {
            return Err(ServiceError::invalid(format!(
                "{}: the user has no verified {}",
                factor.challenge(),
                medium.attribute()
            )));
        };
        self.limit_destination(&destination)?;
        let now = crate::clock::now_millis();
        let validity = cfg.session_validity_secs;
        let code = digits_from_random(crate::clock::random_bytes::<8>(), factor.digits());
        let salt = crate::clock::random_bytes::<16>();
        let mut record =
            CodeRecord::issue(&code_material(factor.challenge(), &code), salt, now).bound_to(alias, &destination);
        record.expires_at = now + i64::from(validity) * 1000;
        let template = match medium {
            DeliveryMedium::Sms => ("", cfg.sms_message.as_str()),
            DeliveryMedium::Email => (cfg.email_subject.as_str(), cfg.email_message.as_str()),
        };
        let custom = self
            .triggers
            .custom_message(
                &pool.id,
                crate::service::triggers::custom_message::MessageSource::Authentication,
                user,
                &client.client_id,
                &origin.client_metadata,
                medium,
            )
            .await?;
        let message = crate::service::outbox::sign_in_code_message(
            &*crate::service::sealing_key(&self.sealing)?,
            pool,
            &user.username,
            medium,
            &destination,
            &code,
            template,
            validity,
            custom.as_ref(),
            self.deliver,
        );
        let cmd = IssueCode {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            purpose: CodePurpose::SignIn,
            record,
            message: Some(message),
            now,
        };
        let event = AuthEvent::draft(&pool.id, AuthEventType::SignInCode, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip)
            .detail(format!("{} code sent by {}", factor.challenge(), medium.as_cognito()));
        match crate::service::try_submit_audited(&self.node, cmd, event).await? {
            Ok(_) => {}
            // The address changed between reading and applying.
            Err(Rejection::Code(_)) => return Err(invalid_session()),
            Err(r) => return Err(r.into()),
        }
        let binding = session_binding(user);
        let salt_hex = hex::encode(salt);
        let session = self.tokens.mint_challenge_session(
            &pool.id,
            &client.client_id,
            &user.sub,
            factor.challenge(),
            i64::from(validity),
            &[
                (BIND_CLAIM, binding.as_str()),
                (SALT_CLAIM, salt_hex.as_str()),
                (STAGE_CLAIM, factor.stage()),
            ],
        )?;
        Ok(AuthAnswer::Challenge {
            name: factor.challenge().into(),
            session,
            parameters: delivery_parameters(&user.username, medium, &mask_destination(medium, &destination)),
            available: Vec::new(),
        })
    }

    /// What an unknown user (or one who cannot use the factor) gets when
    /// the client hides user existence: a write of a real send's cost, the
    /// challenge's shape and a session of a random `sub`, no message.
    #[allow(
        clippy::too_many_arguments,
        reason = "the answer it imitates is made from as many parts"
    )]
    async fn decoy_challenge(
        &self,
        pool: &UserPool,
        client: &AppClient,
        username: &str,
        challenge: &str,
        medium: DeliveryMedium,
        validity_secs: u32,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let now = crate::clock::now_millis();
        let event = AuthEvent::draft(&pool.id, AuthEventType::SignInCode, now)
            .user(username, "")
            .origin(&client.client_id, &origin.ip);
        let kind = if challenge == MAGIC_LINK {
            MessageKind::MagicLink
        } else {
            MessageKind::SignInCode
        };
        let purpose = if challenge == MAGIC_LINK {
            CodePurpose::MagicLink
        } else {
            CodePurpose::SignIn
        };
        self.decoy_code_send(pool, event, purpose, kind).await?;
        let sub = crate::clock::new_uuid().to_string();
        let bind = hex::encode(crate::clock::random_bytes::<16>());
        let random = hex::encode(crate::clock::random_bytes::<16>());
        let claim = if challenge == MAGIC_LINK {
            LINK_CLAIM
        } else {
            SALT_CLAIM
        };
        let mut claims = vec![(BIND_CLAIM, bind.as_str()), (claim, random.as_str())];
        if challenge != MAGIC_LINK {
            claims.push((STAGE_CLAIM, "first"));
        }
        let session = self.tokens.mint_challenge_session(
            &pool.id,
            &client.client_id,
            &sub,
            challenge,
            i64::from(validity_secs),
            &claims,
        )?;
        Ok(AuthAnswer::Challenge {
            name: challenge.into(),
            session,
            parameters: delivery_parameters(username, medium, &decoy_destination(&pool.id, username, medium)),
            available: Vec::new(),
        })
    }

    /// `InitiateAuth(USER_AUTH)`: `USERNAME`, optional `PREFERRED_CHALLENGE`
    /// (`PASSWORD` with `PASSWORD`, `EMAIL_OTP`, `SMS_OTP`, `MAGIC_LINK`),
    /// `SECRET_HASH`.
    pub(super) async fn user_auth(
        &self,
        caller: Caller,
        params: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let policy = self.node.store().pool_sign_in(&caller.pool.id)?;
        // A passkey may name its user itself (username-less sign-in).
        if param(params, "USERNAME").is_empty() && param(params, "PREFERRED_CHALLENGE") == "WEB_AUTHN" {
            return self
                .first_factor(caller, &policy, FirstFactor::WebAuthn, params, origin)
                .await;
        }
        let username = required(params, "auth_parameters", "USERNAME")?;
        if username.chars().count() > MAX_USERNAME_CHARS {
            return Err(ServiceError::invalid(format!(
                "auth_parameters.USERNAME: at most {MAX_USERNAME_CHARS} characters"
            )));
        }
        match param(params, "PREFERRED_CHALLENGE") {
            "" => {
                self.check_secret_hash(&caller.client, &[username], param(params, "SECRET_HASH"))?;
                self.select_challenge(&caller, &policy, username).await
            }
            name => {
                let factor = FirstFactor::parse("auth_parameters.PREFERRED_CHALLENGE", name)?;
                self.first_factor(caller, &policy, factor, params, origin).await
            }
        }
    }

    /// Starts `factor` for `params`' `USERNAME` (checked by the caller),
    /// from `InitiateAuth` or from a `SELECT_CHALLENGE` answer.
    async fn first_factor(
        &self,
        caller: Caller,
        policy: &SignInPolicy,
        factor: FirstFactor,
        params: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        if !policy.allows(factor) {
            return Err(ServiceError::invalid(format!(
                "{} is not an allowed first factor of this user pool (sign_in_policy.allowed_first_auth_factors)",
                factor.as_cognito()
            )));
        }
        if factor == FirstFactor::Password {
            // USER_PASSWORD_AUTH, MFA included.
            return self.password_auth(caller, params, origin).await;
        }
        if factor == FirstFactor::WebAuthn {
            let username = param(params, "USERNAME");
            if username.chars().count() > MAX_USERNAME_CHARS {
                return Err(ServiceError::invalid(format!(
                    "auth_parameters.USERNAME: at most {MAX_USERNAME_CHARS} characters"
                )));
            }
            return self
                .web_authn_first_factor(&caller, username, param(params, "SECRET_HASH"))
                .await;
        }
        let username = required(params, "auth_parameters", "USERNAME")?;
        let Caller { pool, client } = caller;
        self.check_secret_hash(&client, &[username], param(params, "SECRET_HASH"))?;
        let (challenge, medium) = match factor {
            FirstFactor::SmsOtp => (SMS_OTP, DeliveryMedium::Sms),
            FirstFactor::MagicLink => (MAGIC_LINK, DeliveryMedium::Email),
            _ => (EMAIL_OTP, DeliveryMedium::Email),
        };
        let user = self.find_user(&pool, username).await?;
        let usable = user
            .as_ref()
            .filter(|u| can_sign_in(u) && verified_destination(u, medium).is_some());
        let Some(user) = usable else {
            if client.prevent_user_existence_errors {
                let validity = if factor == FirstFactor::MagicLink {
                    policy.magic_link_validity_secs
                } else {
                    self.node.store().pool_mfa(&pool.id)?.session_validity_secs
                };
                return self
                    .decoy_challenge(&pool, &client, username, challenge, medium, validity, origin)
                    .await;
            }
            return Err(match user {
                None => ServiceError::user_not_found(),
                Some(u) if !u.enabled => ServiceError::not_authorized("User is disabled."),
                Some(u) if u.status != UserStatus::Confirmed => ServiceError::new(
                    ErrorKind::FailedPrecondition,
                    "UserNotConfirmedException",
                    format!("{challenge} needs a confirmed user"),
                ),
                Some(_) => {
                    ServiceError::invalid(format!("{challenge}: the user has no verified {}", medium.attribute()))
                }
            });
        };
        match factor {
            FirstFactor::MagicLink => self.send_magic_link(&pool, &client, user, policy, origin).await,
            FirstFactor::SmsOtp => {
                self.send_sign_in_code(&pool, &client, user, CodeFactor::SmsOtp, origin)
                    .await
            }
            _ => {
                self.send_sign_in_code(&pool, &client, user, CodeFactor::EmailOtp, origin)
                    .await
            }
        }
    }

    /// `SELECT_CHALLENGE`: the first factors the user can use (the pool's
    /// allowed ones, for everyone, when the client hides user existence).
    async fn select_challenge(
        &self,
        caller: &Caller,
        policy: &SignInPolicy,
        username: &str,
    ) -> Result<AuthAnswer, ServiceError> {
        let Caller { pool, client } = caller;
        let user = self.find_user(pool, username).await?;
        let (sub, bind, available) = match (&user, client.prevent_user_existence_errors) {
            (Some(u), hide) => {
                let list = if hide {
                    policy.allowed_first_auth_factors.clone()
                } else {
                    let has_passkey = self.node.store().has_web_authn_credential(&pool.id, &u.sub)?;
                    usable_first_factors(policy, u, has_passkey)
                };
                (u.sub.clone(), session_binding(u), list)
            }
            (None, true) => (
                crate::clock::new_uuid().to_string(),
                hex::encode(crate::clock::random_bytes::<16>()),
                policy.allowed_first_auth_factors.clone(),
            ),
            (None, false) => return Err(ServiceError::user_not_found()),
        };
        let validity = self.node.store().pool_mfa(&pool.id)?.session_validity_secs;
        let session = self.tokens.mint_challenge_session(
            &pool.id,
            &client.client_id,
            &sub,
            SELECT_CHALLENGE,
            i64::from(validity),
            &[(BIND_CLAIM, bind.as_str())],
        )?;
        let mut parameters = BTreeMap::new();
        parameters.insert("USERNAME".to_string(), username.to_string());
        Ok(AuthAnswer::Challenge {
            name: SELECT_CHALLENGE.into(),
            session,
            parameters,
            available: available.iter().map(|f| f.as_cognito().to_string()).collect(),
        })
    }

    /// `RespondToAuthChallenge(SELECT_CHALLENGE)`: `USERNAME`, `ANSWER`
    /// (one of the available challenges), and `PASSWORD` with `PASSWORD`.
    /// Continues as `InitiateAuth(USER_AUTH)` with that preference.
    pub(super) async fn select_challenge_answer(
        &self,
        caller: Caller,
        session: &str,
        responses: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let v = self.open_session(&caller, session, SELECT_CHALLENGE).await?;
        let username = required(responses, "challenge_responses", "USERNAME")?;
        if username.chars().count() > MAX_USERNAME_CHARS {
            return Err(invalid_session());
        }
        let answer = required(responses, "challenge_responses", "ANSWER")?;
        let factor = FirstFactor::parse("challenge_responses.ANSWER", answer)?;
        // The session names the user that USERNAME names (or nobody, for a
        // decoy session): a session never continues for another user.
        let user = self.find_user(&caller.pool, username).await?;
        if let Some(u) = &user {
            if u.sub != v.str("sub") {
                return Err(invalid_session());
            }
        }
        let policy = self.node.store().pool_sign_in(&caller.pool.id)?;
        let mut params = responses.clone();
        params.remove("ANSWER");
        self.first_factor(caller, &policy, factor, &params, origin).await
    }

    /// Checks a session for `challenge` (signature, expiry, challenge, the
    /// caller's pool and client), without reading its user.
    pub(super) async fn open_session(
        &self,
        caller: &Caller,
        session: &str,
        challenge: &str,
    ) -> Result<Verified, ServiceError> {
        let v = self
            .tokens
            .verify(session, "session")
            .await
            .map_err(|_| invalid_session())?;
        if v.str("challenge") != challenge
            || v.pool_id != caller.pool.id
            || v.str("client_id") != caller.client.client_id
        {
            return Err(invalid_session());
        }
        Ok(v)
    }

    /// `RespondToAuthChallenge` with a code: `SMS_MFA` (`SMS_MFA_CODE`),
    /// `EMAIL_OTP` (`EMAIL_OTP_CODE`) or `SMS_OTP` (`SMS_OTP_CODE`), with
    /// `USERNAME` and `SECRET_HASH`. Tokens follow a right code, with no
    /// further challenge.
    pub(super) async fn sign_in_code_answer(
        &self,
        caller: &Caller,
        challenge: &str,
        session: &str,
        responses: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let key = code_response_key(challenge);
        let v = self.open_session(caller, session, challenge).await?;
        let username = required(responses, "challenge_responses", "USERNAME")?;
        let code = required(responses, "challenge_responses", key)?;
        let salt = salt_of(&v).ok_or_else(invalid_session)?;
        if self.user_by_sub(&caller.pool.id, v.str("sub")).await?.is_none() {
            // A decoy session (or a user deleted since): the answer costs
            // a write and fails as a wrong code does.
            self.check_secret_hash(&caller.client, &[username], param(responses, "SECRET_HASH"))?;
            let cmd = ConsumeSignInCode {
                pool_id: caller.pool.id.clone(),
                sub: v.str("sub").to_string(),
                guess_hash: hash_code(&salt, &code_material(challenge, code)),
                session_binding: v.str(BIND_CLAIM).to_string(),
                now: crate::clock::now_millis(),
            };
            crate::service::try_submit(&self.node, cmd).await?.ok();
            return Err(code_mismatch());
        }
        let ctx = self.open_answer(caller, challenge, session, responses).await?;
        let (pool, client, user) = (&ctx.pool, &ctx.client, &ctx.user);
        let stage = v.str(STAGE_CLAIM);
        // Reserve before checking: parallel answers cannot exceed the
        // lockout, and a locked user's answer is not evaluated at all.
        let slot = self.check_lockout(&pool.id, &user.sub).await?;
        let now = crate::clock::now_millis();
        let digits = if challenge == EMAIL_OTP { 8 } else { 6 };
        let shaped = code.len() == digits && code.bytes().all(|b| b.is_ascii_digit());
        let result = if shaped {
            let cmd = ConsumeSignInCode {
                pool_id: pool.id.clone(),
                sub: user.sub.clone(),
                guess_hash: hash_code(&salt, &code_material(challenge, code)),
                session_binding: v.str(BIND_CLAIM).to_string(),
                now,
            };
            crate::service::try_submit(&self.node, cmd).await?
        } else {
            Err(Rejection::Code(CodeError::Mismatch))
        };
        match result {
            Ok(_) => {
                self.code_signed_in(
                    pool,
                    client,
                    user,
                    slot,
                    now,
                    origin,
                    &format!("{challenge} ({stage}) answered"),
                )
                .await
            }
            Err(Rejection::NotAuthorized(_)) => Err(invalid_session()),
            Err(r @ (Rejection::Code(_) | Rejection::NoCode)) => {
                let detail = match r {
                    Rejection::Code(CodeError::Mismatch) => "incorrect code",
                    Rejection::Code(CodeError::TooManyAttempts) => "code attempts exhausted",
                    _ => "code expired, replaced or used",
                };
                self.record_failure_as(
                    AuthEventType::SignInCode,
                    &pool.id,
                    &client.client_id,
                    user,
                    origin,
                    detail,
                    slot,
                )
                .await?;
                Err(match r {
                    Rejection::Code(CodeError::Mismatch) => code_mismatch(),
                    Rejection::Code(CodeError::TooManyAttempts) => r.into(),
                    _ => code_spent(),
                })
            }
            // Not an evaluated guess: the slot is freed on drop.
            Err(r) => Err(r.into()),
        }
    }

    /// The end of a successful sign-in by code or link: failures cleared
    /// when there are any, the slot released as a success, tokens minted,
    /// the sign-in audited.
    #[allow(
        clippy::too_many_arguments,
        reason = "the sign-in's context, as the MFA answers have it"
    )]
    async fn code_signed_in(
        &self,
        pool: &UserPool,
        client: &AppClient,
        user: &User,
        slot: crate::auth::attempts::Reservation,
        now: i64,
        origin: &Origin,
        detail: &str,
    ) -> Result<AuthAnswer, ServiceError> {
        if self
            .node
            .store()
            .lockout(&pool.id, &user.sub)?
            .is_some_and(|l| l.needs_reset(now))
        {
            self.node
                .propose(ClearSignInFailures {
                    pool_id: pool.id.clone(),
                    sub: user.sub.clone(),
                })
                .await?;
        }
        slot.succeeded();
        let tokens = self.tokens.mint(pool, client, user, now / 1000, Default::default())?;
        self.audit.record_later(
            AuthEvent::draft(&pool.id, AuthEventType::SignIn, now)
                .user(&user.username, &user.sub)
                .origin(&client.client_id, &origin.ip)
                .detail(detail),
        );
        Ok(AuthAnswer::Tokens(tokens))
    }

    /// Sends a magic link to `user`'s verified email and answers with the
    /// `MAGIC_LINK` challenge.
    async fn send_magic_link(
        &self,
        pool: &UserPool,
        client: &AppClient,
        user: &User,
        policy: &SignInPolicy,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let Some((alias, destination)) = verified_destination(user, DeliveryMedium::Email) else {
            return Err(ServiceError::invalid("MAGIC_LINK: the user has no verified email"));
        };
        self.limit_destination(&destination)?;
        let now = crate::clock::now_millis();
        let validity = policy.magic_link_validity_secs;
        let link_id = hex::encode(crate::clock::random_bytes::<16>());
        let binding = session_binding(user);
        let claims = [(BIND_CLAIM, binding.as_str()), (LINK_CLAIM, link_id.as_str())];
        let token = self.tokens.mint_challenge_session(
            &pool.id,
            &client.client_id,
            &user.sub,
            LINK_TOKEN_CHALLENGE,
            i64::from(validity),
            &claims,
        )?;
        let link = format!("{}/{}/magic-link?token={token}", self.public_url, pool.id);
        let mut record =
            CodeRecord::issue(&link_id, crate::clock::random_bytes::<16>(), now).bound_to(alias, &destination);
        record.expires_at = now + i64::from(validity) * 1000;
        let message = crate::service::outbox::magic_link_message(
            &*crate::service::sealing_key(&self.sealing)?,
            pool,
            &user.username,
            &destination,
            &link,
            validity,
            self.deliver,
        );
        let cmd = IssueCode {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            purpose: CodePurpose::MagicLink,
            record,
            message: Some(message),
            now,
        };
        let event = AuthEvent::draft(&pool.id, AuthEventType::SignInCode, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip)
            .detail("MAGIC_LINK sent by EMAIL");
        match crate::service::try_submit_audited(&self.node, cmd, event).await? {
            Ok(_) => {}
            Err(Rejection::Code(_)) => return Err(invalid_session()),
            Err(r) => return Err(r.into()),
        }
        let session = self.tokens.mint_challenge_session(
            &pool.id,
            &client.client_id,
            &user.sub,
            MAGIC_LINK,
            i64::from(validity),
            &claims,
        )?;
        Ok(AuthAnswer::Challenge {
            name: MAGIC_LINK.into(),
            session,
            parameters: delivery_parameters(
                &user.username,
                DeliveryMedium::Email,
                &mask_destination(DeliveryMedium::Email, &destination),
            ),
            available: Vec::new(),
        })
    }

    /// `RespondToAuthChallenge(MAGIC_LINK)`: `USERNAME`, `SECRET_HASH`,
    /// and optionally `MAGIC_LINK_TOKEN` (the link's token, pasted). Without
    /// a token, tokens follow once the link was approved in a browser
    /// (until then [`link_pending`], to poll); with one, the token approves
    /// and completes at once. Either way the link signs in once.
    pub(super) async fn magic_link_answer(
        &self,
        caller: &Caller,
        session: &str,
        responses: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let v = self.open_session(caller, session, MAGIC_LINK).await?;
        let username = required(responses, "challenge_responses", "USERNAME")?;
        let pasted = param(responses, "MAGIC_LINK_TOKEN");
        if self.user_by_sub(&caller.pool.id, v.str("sub")).await?.is_none() {
            // A decoy session: never approved.
            self.check_secret_hash(&caller.client, &[username], param(responses, "SECRET_HASH"))?;
            return Err(if pasted.is_empty() {
                link_pending()
            } else {
                code_mismatch()
            });
        }
        let ctx = self.open_answer(caller, MAGIC_LINK, session, responses).await?;
        let (pool, client, user) = (&ctx.pool, &ctx.client, &ctx.user);
        let link_id = v.str(LINK_CLAIM).to_string();
        let binding = v.str(BIND_CLAIM).to_string();
        let now = crate::clock::now_millis();
        if pasted.is_empty() {
            // Polling: local reads, and a barrier only while the link is
            // not approved here; nothing is written until it is.
            let mut state = self.link_state(pool, user, &link_id)?;
            if state != LinkState::Approved {
                self.node.read_barrier().await?;
                state = self.link_state(pool, user, &link_id)?;
            }
            match state {
                LinkState::Approved => {}
                LinkState::Pending => return Err(link_pending()),
                // Used, replaced by a newer link, or expired.
                LinkState::Spent | LinkState::Gone => return Err(code_spent()),
            }
            let slot = self.check_lockout(&pool.id, &user.sub).await?;
            let cmd = MagicLinkStep {
                pool_id: pool.id.clone(),
                sub: user.sub.clone(),
                link_id,
                action: LinkAction::Complete,
                session_binding: binding,
                now,
            };
            return match crate::service::try_submit(&self.node, cmd).await? {
                Ok(_) => {
                    self.code_signed_in(
                        pool,
                        client,
                        user,
                        slot,
                        now,
                        origin,
                        "MAGIC_LINK approved and collected",
                    )
                    .await
                }
                Err(Rejection::NotAuthorized(_)) => Err(invalid_session()),
                Err(Rejection::NoCode | Rejection::Code(_)) => Err(code_spent()),
                Err(r) => Err(r.into()),
            };
        }
        // A pasted token is a guess: evaluated under a reservation, and a
        // forged or foreign one counts toward the lockout.
        let slot = self.check_lockout(&pool.id, &user.sub).await?;
        let token_ok = match self.tokens.verify(pasted, "session").await {
            Ok(t) => {
                t.str("challenge") == LINK_TOKEN_CHALLENGE
                    && t.pool_id == pool.id
                    && t.str("client_id") == client.client_id
                    && t.str("sub") == user.sub
                    && bool::from(t.str(LINK_CLAIM).as_bytes().ct_eq(link_id.as_bytes()))
            }
            Err(_) => false,
        };
        if !token_ok {
            self.record_failure_as(
                AuthEventType::SignInCode,
                &pool.id,
                &client.client_id,
                user,
                origin,
                "invalid MAGIC_LINK_TOKEN",
                slot,
            )
            .await?;
            return Err(code_mismatch());
        }
        let cmd = MagicLinkStep {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            link_id,
            action: LinkAction::ApproveAndComplete,
            session_binding: binding,
            now,
        };
        match crate::service::try_submit(&self.node, cmd).await? {
            Ok(_) => {
                self.code_signed_in(pool, client, user, slot, now, origin, "MAGIC_LINK token presented")
                    .await
            }
            Err(Rejection::NotAuthorized(_)) => Err(invalid_session()),
            // A genuine token used before: not a guess.
            Err(Rejection::NoCode | Rejection::Code(_)) => Err(code_spent()),
            Err(r) => Err(r.into()),
        }
    }

    /// Where the link `link_id` of `user` is, as this node has applied it.
    fn link_state(&self, pool: &UserPool, user: &User, link_id: &str) -> Result<LinkState, ServiceError> {
        let store = self.node.store();
        let matches = |r: &CodeRecord| bool::from(hash_code(&r.salt, link_id).ct_eq(&r.hash));
        if let Some(r) = store
            .code(&pool.id, &user.sub, CodePurpose::MagicLinkApproved)?
            .filter(|r| matches(r))
        {
            return Ok(if r.attempts_left == 0 {
                LinkState::Spent
            } else {
                LinkState::Approved
            });
        }
        if store
            .code(&pool.id, &user.sub, CodePurpose::MagicLink)?
            .is_some_and(|r| matches(&r))
        {
            return Ok(LinkState::Pending);
        }
        Ok(LinkState::Gone)
    }

    /// Checks a magic link's token for `pool_id` (the link's path) without
    /// changing anything: what the confirmation page shows. Returns the
    /// pool's name and the username.
    pub async fn preview_magic_link(&self, pool_id: &str, token: &str) -> Result<(String, String), ServiceError> {
        self.require_fresh().await?;
        let (pool, user, _) = self.open_link_token(pool_id, token).await?;
        Ok((pool.name, user.username))
    }

    /// `POST /{pool_id}/magic-link`: approves the link (replicated, once).
    /// The device that asked can then collect its tokens.
    pub async fn approve_magic_link(&self, pool_id: &str, token: &str, origin: &Origin) -> Result<(), ServiceError> {
        self.require_fresh().await?;
        let (pool, user, v) = self.open_link_token(pool_id, token).await?;
        let now = crate::clock::now_millis();
        let cmd = MagicLinkStep {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            link_id: v.str(LINK_CLAIM).to_string(),
            action: LinkAction::Approve,
            session_binding: v.str(BIND_CLAIM).to_string(),
            now,
        };
        let event = AuthEvent::draft(&pool.id, AuthEventType::SignInCode, now)
            .user(&user.username, &user.sub)
            .origin(v.str("client_id"), &origin.ip)
            .detail("MAGIC_LINK approved");
        match crate::service::try_submit_audited(&self.node, cmd, event).await? {
            Ok(_) => Ok(()),
            Err(Rejection::NotAuthorized(_)) => Err(ServiceError::not_authorized(
                "This link is no longer valid: the account's password or sessions changed since it was sent.",
            )),
            Err(Rejection::NoCode | Rejection::Code(_)) => Err(code_spent()),
            Err(r) => Err(r.into()),
        }
    }

    /// A magic link's token: signed by a node of this cluster, unexpired,
    /// a link token (not a session), for `pool_id` and a user who exists.
    async fn open_link_token(&self, pool_id: &str, token: &str) -> Result<(UserPool, User, Verified), ServiceError> {
        let invalid = || ServiceError::not_authorized("This link is invalid or has expired.");
        let v = self.tokens.verify(token, "session").await.map_err(|_| invalid())?;
        if v.str("challenge") != LINK_TOKEN_CHALLENGE || v.pool_id != pool_id || v.str(LINK_CLAIM).len() != 32 {
            return Err(invalid());
        }
        let pool = crate::service::pools::existing_pool(&self.node, pool_id).await?;
        let user = self.user_by_sub(&pool.id, v.str("sub")).await?.ok_or_else(invalid)?;
        Ok((pool, user, v))
    }
}

/// Where a magic link is (see `MagicLinkStep`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    /// Sent, not approved yet.
    Pending,
    /// Approved in a browser, not collected yet.
    Approved,
    /// Collected (or its token presented): used.
    Spent,
    /// Neither: replaced by a newer link, expired, or never sent.
    Gone,
}

/// Cognito's delivery parameters of a code challenge.
fn delivery_parameters(username: &str, medium: DeliveryMedium, masked: &str) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    p.insert("USERNAME".to_string(), username.to_string());
    p.insert(
        "CODE_DELIVERY_DELIVERY_MEDIUM".to_string(),
        medium.as_cognito().to_string(),
    );
    p.insert("CODE_DELIVERY_DESTINATION".to_string(), masked.to_string());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_cognitos_lengths() {
        assert_eq!(digits_from_random([0; 8], 6), "000000");
        assert_eq!(digits_from_random([0xff; 8], 8).len(), 8);
        assert_eq!(CodeFactor::EmailOtp.digits(), 8);
        assert_eq!(CodeFactor::EmailMfa.digits(), 8);
        assert_eq!(CodeFactor::SmsMfa.digits(), 6);
        assert_eq!(CodeFactor::SmsOtp.challenge(), SMS_OTP);
        assert_eq!(code_response_key(SMS_MFA), "SMS_MFA_CODE");
        assert_eq!(code_response_key(EMAIL_OTP), "EMAIL_OTP_CODE");
    }

    #[test]
    fn a_code_hashes_with_its_challenge() {
        let salt = [7; 16];
        assert_ne!(
            hash_code(&salt, &code_material(SMS_MFA, "123456")),
            hash_code(&salt, &code_material(SMS_OTP, "123456"))
        );
        assert_eq!(
            hash_code(&salt, &code_material(SMS_MFA, " 123456 ")),
            hash_code(&salt, &code_material(SMS_MFA, "123456"))
        );
    }

    #[test]
    fn decoy_destinations_are_stable_and_shaped_like_real_ones() {
        let a = decoy_destination("local_p", "nobody", DeliveryMedium::Email);
        assert_eq!(a, decoy_destination("local_p", "nobody", DeliveryMedium::Email));
        assert!(a.ends_with("***") && a.contains("***@"), "{a}");
        assert_eq!(
            decoy_destination("local_p", "x@example.com", DeliveryMedium::Email),
            "x***@e***"
        );
        let s = decoy_destination("local_p", "nobody", DeliveryMedium::Sms);
        assert!(s.starts_with("+*******") && s.len() == 12, "{s}");
    }
}
