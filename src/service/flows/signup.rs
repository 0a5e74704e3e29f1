//! `SignUp`, `ConfirmSignUp` and `ResendConfirmationCode`.

use crate::command::{ConfirmUser, CreateUser, IssueCode};
use std::collections::BTreeMap;

use super::hooks::ConfirmSource;
use super::{AuthService, Caller};
use crate::auth::codes::{code_from_random, hash_code, CodeRecord};
use crate::auth::rate_limit::LimitKind;
use crate::command::{Outcome, Rejection};
use crate::model::auth_event::{AuthEvent, AuthEventType};
use crate::model::outbox::{mask_destination, DeliveryMedium, MessageKind};
use crate::model::pool_settings::MAX_PASSWORD_BYTES;
use crate::model::user::{validate_new_attributes, validate_username, validate_username_for_pool, User, UserStatus};
use crate::service::outbox::{code_destination, code_message};
use crate::service::triggers::custom_message::MessageSource;
use crate::service::{propose_audited, submit_audited, Origin, ServiceError};
use crate::store::auth_state::CodePurpose;

/// A sign-up request, already decoded from the transport.
#[derive(Debug, Clone)]
pub struct SignUp {
    /// The app client the user signs up through.
    pub client_id: String,
    /// Cognito's `SECRET_HASH`; required when the client has a secret.
    pub secret_hash: String,
    /// The username asked for.
    pub username: String,
    /// The password in clear; hashed while preparing and never stored or logged.
    pub password: String,
    /// Attributes the user gives; admin-only ones are refused.
    pub attributes: BTreeMap<String, String>,
    /// Cognito's `ValidationData`: passed to the `PreSignUp` trigger only,
    /// never stored.
    pub validation_data: BTreeMap<String, String>,
}

/// Where a code was sent (Cognito's `CodeDeliveryDetails`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeDelivery {
    /// The address masked as Cognito shows it (`a***@e***`).
    pub destination: String,
    /// Email or SMS.
    pub medium: DeliveryMedium,
    /// The attribute the address is in (`email` or `phone_number`).
    pub attribute: String,
}

/// What `SignUp` answers.
#[derive(Debug, Clone)]
pub struct SignUpResult {
    /// Cognito's `UserConfirmed`: true only when `PreSignUp` auto-confirmed it.
    pub user_confirmed: bool,
    /// Where the confirmation code went; `None` when the user has no address to send it to.
    pub delivery: Option<CodeDelivery>,
    /// The new user's `sub`.
    pub user_sub: String,
}

/// Attributes only an administrator may set.
const ADMIN_ONLY: &[&str] = &["email_verified", "phone_number_verified"];

impl AuthService {
    /// Validates everything, hashes the password off the runtime, and
    /// creates an `UNCONFIRMED` user together with its code and the message
    /// carrying it; uniqueness is decided when the command applies.
    pub async fn sign_up(&self, req: SignUp, origin: &Origin) -> Result<SignUpResult, ServiceError> {
        validate_username(&req.username)?;
        self.limit(origin, LimitKind::SignUp)?;
        if req.password.is_empty() || req.password.len() > MAX_PASSWORD_BYTES {
            return Err(ServiceError::invalid_password(format!(
                "password must be 1 to {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        let Caller { pool, client } = self.caller(&req.client_id).await?;
        validate_username_for_pool(&pool.settings, &req.username)?;
        self.check_secret_hash(&client, &[&req.username], &req.secret_hash)?;
        for name in req.attributes.keys() {
            if ADMIN_ONLY.contains(&name.as_str()) {
                return Err(ServiceError::invalid(format!(
                    "user_attributes: {name} can only be set by an administrator"
                )));
            }
            if !client.may_write(name) {
                return Err(ServiceError::not_authorized(format!(
                    "A client attempted to write unauthorized attribute {name}"
                )));
            }
        }
        validate_new_attributes(&pool.settings, &req.attributes)?;
        pool.settings.password_policy.check(&req.password).map_err(|e| {
            ServiceError::invalid_password(format!("Password did not conform with policy: {}", e.reason))
        })?;
        // A cheap early answer for the common duplicate; the decision that
        // counts is made in apply.
        let store = self.node.store();
        if store
            .sub_by_username(&pool.id, &pool.settings.normalize_username(&req.username))?
            .is_some()
        {
            return Err(Rejection::UsernameExists.into());
        }
        let pre = self
            .triggers
            .pre_sign_up(
                &pool.id,
                &client.client_id,
                &req.username,
                &req.attributes,
                &req.validation_data,
                &origin.client_metadata,
                false,
            )
            .await?;
        let phc = self
            .hasher
            .hash(&req.password, crate::clock::random_bytes::<16>(), pool.settings.argon2)
            .await?;
        let now = crate::clock::now_millis();
        let has = |name: &str| req.attributes.contains_key(name);
        let email_verified = pre.auto_verify_email && has("email");
        let phone_number_verified = pre.auto_verify_phone && has("phone_number");
        let user = User {
            pool_id: pool.id.clone(),
            sub: crate::clock::new_uuid().to_string(),
            username: req.username.clone(),
            attributes: req.attributes,
            status: if pre.auto_confirm_user {
                UserStatus::Confirmed
            } else {
                UserStatus::Unconfirmed
            },
            enabled: true,
            password_phc: Some(phc.clone()),
            email_verified,
            phone_number_verified,
            created_at: now,
            modified_at: now,
            tokens_revoked_before_ms: 0,
            temporary_password_expires_at: None,
            refresh_revoked_before_ms: 0,
            pending_attributes: Default::default(),
        };
        // An auto-confirmed user needs no confirmation code.
        let destination = code_destination(&pool, &user).filter(|_| !pre.auto_confirm_user);
        let (code, message, delivery) = match destination {
            Some((alias, medium, destination)) => {
                let code = code_from_random(crate::clock::random_bytes::<8>());
                let record =
                    CodeRecord::issue(&code, crate::clock::random_bytes::<16>(), now).bound_to(alias, &destination);
                self.limit_destination(&destination)?;
                let custom = self
                    .triggers
                    .custom_message(
                        &pool.id,
                        MessageSource::SignUp,
                        &user,
                        &client.client_id,
                        &origin.client_metadata,
                        medium,
                    )
                    .await?;
                let message = code_message(
                    &*crate::service::sealing_key(&self.sealing)?,
                    &pool,
                    &user.username,
                    MessageKind::ConfirmSignUp,
                    medium,
                    &destination,
                    &code,
                    custom.as_ref(),
                    self.deliver,
                );
                let delivery = CodeDelivery {
                    destination: mask_destination(medium, &destination),
                    medium,
                    attribute: alias.attribute().to_string(),
                };
                (Some(record), Some(message), Some(delivery))
            }
            None => (None, None, None),
        };
        let sub = user.sub.clone();
        let event = AuthEvent::draft(&pool.id, AuthEventType::SignUp, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip);
        let cmd = CreateUser {
            user,
            code,
            message,
            force_alias_creation: false,
        };
        let created: User = submit_audited(&self.node, cmd, event).await?;
        self.remember_srp(&pool.id, &created, &phc, &req.password).await;
        if pre.auto_confirm_user {
            self.post_confirmation(&pool, &client.client_id, &created, origin, ConfirmSource::ConfirmSignUp)
                .await?;
        }
        Ok(SignUpResult {
            user_confirmed: pre.auto_confirm_user,
            delivery,
            user_sub: sub,
        })
    }

    /// Confirms a sign-up with the emailed or texted code. The guess is
    /// hashed here with the stored salt; apply compares and counts it.
    /// With `force_alias_creation`, a verified alias another user holds
    /// moves to this user (Cognito's `ForceAliasCreation`); without it the
    /// confirmation fails with `AliasExistsException`.
    pub async fn confirm_sign_up(
        &self,
        client_id: &str,
        secret_hash: &str,
        username: &str,
        code: &str,
        force_alias_creation: bool,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        validate_username(username)?;
        self.limit(origin, LimitKind::CodeCheck)?;
        if code.is_empty() || code.len() > 2048 || code.chars().any(char::is_whitespace) {
            return Err(ServiceError::invalid(
                "confirmation_code: must be the code that was sent",
            ));
        }
        let Caller { pool, client } = self.caller(client_id).await?;
        self.check_secret_hash(&client, &[username], secret_hash)?;
        let Some(user) = self.find_user(&pool, username).await? else {
            // The same replicated write a real user's wrong guess costs: an
            // audited ConfirmUser with a guess hashed the same way, for no
            // user, so apply refuses it (its event names no user, so floods
            // are aggregated in the audit log).
            let now = crate::clock::now_millis();
            let cmd = ConfirmUser {
                pool_id: pool.id.clone(),
                sub: String::new(),
                guess_hash: Some(hash_code(&crate::clock::random_bytes::<16>(), code)),
                force_alias_creation,
                now,
            };
            let event = AuthEvent::draft(&pool.id, AuthEventType::ConfirmSignUp, now)
                .origin(&client.client_id, &origin.ip)
                .user(username, "")
                .detail("no such user")
                .failed();
            propose_audited(&self.node, cmd, event).await?;
            return Err(if client.prevent_user_existence_errors {
                ServiceError::code_mismatch()
            } else {
                ServiceError::user_not_found()
            });
        };
        // An unknown user paid for a read barrier in `find_user`; so does a
        // known one, and the two answers take the same time.
        let user = self
            .fresh_user(&pool, username, user, client.prevent_user_existence_errors, |u| {
                u.status != UserStatus::Unconfirmed
            })
            .await?;
        if user.status != UserStatus::Unconfirmed {
            return Err(Rejection::WrongStatus(user.status).into());
        }
        let Some((_, guess_hash)) = self
            .pending_code(
                &pool.id,
                &user.sub,
                CodePurpose::SignUp,
                code,
                client.prevent_user_existence_errors,
            )
            .await?
        else {
            return Err(Rejection::NoCode.into());
        };
        let now = crate::clock::now_millis();
        let event = AuthEvent::draft(&pool.id, AuthEventType::ConfirmSignUp, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip);
        let cmd = ConfirmUser {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            guess_hash: Some(guess_hash),
            force_alias_creation,
            now,
        };
        let user: User = submit_audited(&self.node, cmd, event).await?;
        self.post_confirmation(&pool, &client.client_id, &user, origin, ConfirmSource::ConfirmSignUp)
            .await
    }

    /// Sends a new confirmation code to an unconfirmed user.
    pub async fn resend_confirmation_code(
        &self,
        client_id: &str,
        secret_hash: &str,
        username: &str,
        origin: &Origin,
    ) -> Result<CodeDelivery, ServiceError> {
        validate_username(username)?;
        self.limit(origin, LimitKind::CodeSend)?;
        let Caller { pool, client } = self.caller(client_id).await?;
        self.check_secret_hash(&client, &[username], secret_hash)?;
        let Some(user) = self.find_user(&pool, username).await? else {
            let event = AuthEvent::draft(&pool.id, AuthEventType::ResendCode, crate::clock::now_millis())
                .origin(&client.client_id, &origin.ip)
                .user(username, "");
            self.decoy_code_send(&pool, event, CodePurpose::SignUp, MessageKind::ConfirmSignUp)
                .await?;
            if client.prevent_user_existence_errors {
                // Answer like a real user would get, after the same work
                // (a read barrier and a replicated write), revealing nothing.
                return Ok(CodeDelivery {
                    destination: "u***@e***".into(),
                    medium: DeliveryMedium::Email,
                    attribute: "email".into(),
                });
            }
            return Err(ServiceError::user_not_found());
        };
        let user = self
            .fresh_user(&pool, username, user, client.prevent_user_existence_errors, |u| {
                u.status != UserStatus::Unconfirmed || code_destination(&pool, u).is_none()
            })
            .await?;
        if user.status != UserStatus::Unconfirmed {
            return Err(ServiceError::invalid("User is already confirmed."));
        }
        let Some((alias, medium, destination)) = code_destination(&pool, &user) else {
            return Err(ServiceError::invalid(
                "the user has no email or phone number the pool verifies; an administrator must confirm them",
            ));
        };
        self.limit_destination(&destination)?;
        let now = crate::clock::now_millis();
        let code = code_from_random(crate::clock::random_bytes::<8>());
        let record = CodeRecord::issue(&code, crate::clock::random_bytes::<16>(), now).bound_to(alias, &destination);
        let custom = self
            .triggers
            .custom_message(
                &pool.id,
                MessageSource::ResendCode,
                &user,
                &client.client_id,
                &origin.client_metadata,
                medium,
            )
            .await?;
        let message = code_message(
            &*crate::service::sealing_key(&self.sealing)?,
            &pool,
            &user.username,
            MessageKind::ConfirmSignUp,
            medium,
            &destination,
            &code,
            custom.as_ref(),
            self.deliver,
        );
        let event = AuthEvent::draft(&pool.id, AuthEventType::ResendCode, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip);
        let cmd = IssueCode {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            purpose: CodePurpose::SignUp,
            record,
            message: Some(message),
            now,
        };
        match propose_audited(&self.node, cmd, event).await? {
            Outcome::Rejected(Rejection::WrongStatus(_)) => Err(ServiceError::invalid("User is already confirmed.")),
            Outcome::Rejected(r) => Err(r.into()),
            _ => Ok(CodeDelivery {
                destination: mask_destination(medium, &destination),
                medium,
                attribute: alias.attribute().into(),
            }),
        }
    }
}
