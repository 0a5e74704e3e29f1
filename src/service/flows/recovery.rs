//! Account recovery: `ForgotPassword`, `ConfirmForgotPassword`, and
//! `ChangePassword` for a signed-in user. Each password change ends every
//! refresh token the user holds.

use super::hooks::ConfirmSource;
use super::signup::CodeDelivery;
use super::{AuthService, Caller};
use crate::auth::codes::{code_from_random, hash_code, CodeRecord};
use crate::auth::rate_limit::LimitKind;
use crate::command::Outcome;
use crate::command::{ConfirmForgotPassword, IssueCode, SetPassword};
use crate::model::auth_event::{AuthEvent, AuthEventType};
use crate::model::outbox::{mask_destination, DeliveryMedium, MessageKind};
use crate::model::pool_settings::MAX_PASSWORD_BYTES;
use crate::model::user::{validate_username, User, UserStatus};
use crate::service::outbox::{code_message, recovery_destination};
use crate::service::triggers::custom_message::MessageSource;
use crate::service::{propose_audited, submit_audited, ErrorKind, Origin, ServiceError};
use crate::store::auth_state::CodePurpose;

/// The answer for a user that does not exist, shaped like a real one.
fn decoy_delivery() -> CodeDelivery {
    CodeDelivery {
        destination: "u***@e***".into(),
        medium: DeliveryMedium::Email,
        attribute: "email".into(),
    }
}

fn check_code_shape(code: &str) -> Result<(), ServiceError> {
    if code.is_empty() || code.len() > 2048 || code.chars().any(char::is_whitespace) {
        return Err(ServiceError::invalid(
            "confirmation_code: must be the code that was sent",
        ));
    }
    Ok(())
}

impl AuthService {
    /// Checks a proposed password against the pool's policy.
    pub(crate) fn check_new_password(
        &self,
        pool: &crate::model::pool::UserPool,
        password: &str,
    ) -> Result<(), ServiceError> {
        if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
            return Err(ServiceError::invalid_password(format!(
                "password must be 1 to {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        pool.settings
            .password_policy
            .check(password)
            .map_err(|e| ServiceError::invalid_password(format!("Password does not conform to policy: {}", e.reason)))
    }

    /// `ForgotPassword`: sends a reset code to the user's verified email or
    /// phone number. An unknown user gets the same answer after the same
    /// kind of work (a replicated write), revealing nothing.
    pub async fn forgot_password(
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
        let now = crate::clock::now_millis();
        let event =
            AuthEvent::draft(&pool.id, AuthEventType::ForgotPassword, now).origin(&client.client_id, &origin.ip);
        let found = match self.find_user(&pool, username).await? {
            Some(u) => Some(u),
            // Unknown here: the old system may know it (lazy migration).
            None => {
                self.migrate_on_forgot_password(&pool, &client, username, origin)
                    .await?
            }
        };
        let Some(user) = found else {
            let event = event.user(username, "");
            self.decoy_code_send(&pool, event, CodePurpose::ForgotPassword, MessageKind::ForgotPassword)
                .await?;
            if client.prevent_user_existence_errors {
                return Ok(decoy_delivery());
            }
            return Err(ServiceError::user_not_found());
        };
        // An unknown user paid for a read barrier in `find_user`.
        let user = self
            .fresh_user(&pool, username, user, client.prevent_user_existence_errors, |u| {
                !u.enabled || recovery_destination(u).is_none()
            })
            .await?;
        if !user.enabled {
            return Err(ServiceError::not_authorized("User is disabled."));
        }
        let Some((alias, medium, destination)) = recovery_destination(&user) else {
            return Err(ServiceError::invalid(
                "Cannot reset password for the user as there is no registered/verified email or phone_number",
            ));
        };
        self.limit_destination(&destination)?;
        let code = code_from_random(crate::clock::random_bytes::<8>());
        let record = CodeRecord::issue(&code, crate::clock::random_bytes::<16>(), now).bound_to(alias, &destination);
        let custom = self
            .triggers
            .custom_message(
                &pool.id,
                MessageSource::ForgotPassword,
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
            MessageKind::ForgotPassword,
            medium,
            &destination,
            &code,
            custom.as_ref(),
            self.deliver,
        );
        let cmd = IssueCode {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            purpose: CodePurpose::ForgotPassword,
            record,
            message: Some(message),
            now,
        };
        submit_audited(&self.node, cmd, event.user(&user.username, &user.sub)).await?;
        Ok(CodeDelivery {
            destination: mask_destination(medium, &destination),
            medium,
            attribute: alias.attribute().into(),
        })
    }

    /// `ConfirmForgotPassword`: the code from `ForgotPassword` (or
    /// `AdminResetUserPassword`) and a new password.
    pub async fn confirm_forgot_password(
        &self,
        client_id: &str,
        secret_hash: &str,
        username: &str,
        code: &str,
        password: &str,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        validate_username(username)?;
        check_code_shape(code)?;
        self.limit(origin, LimitKind::CodeCheck)?;
        let Caller { pool, client } = self.caller(client_id).await?;
        self.check_secret_hash(&client, &[username], secret_hash)?;
        self.check_new_password(&pool, password)?;
        let Some(user) = self.find_user(&pool, username).await? else {
            // The same replicated write a known user's wrong code costs: an
            // audited ConfirmForgotPassword (for no user, so apply refuses
            // it), with a code guess hashed the same way. Its event names no
            // user, so floods of them are aggregated in the audit log.
            let now = crate::clock::now_millis();
            let cmd = ConfirmForgotPassword {
                pool_id: pool.id.clone(),
                sub: String::new(),
                guess_hash: hash_code(&crate::clock::random_bytes::<16>(), code),
                password_phc: String::new(),
                now,
            };
            let event = AuthEvent::draft(&pool.id, AuthEventType::PasswordReset, now)
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
        if client.prevent_user_existence_errors {
            self.node.read_barrier().await?;
        }
        let Some((record, guess_hash)) = self
            .pending_code(
                &pool.id,
                &user.sub,
                CodePurpose::ForgotPassword,
                code,
                client.prevent_user_existence_errors,
            )
            .await?
        else {
            return Err(crate::command::Rejection::NoCode.into());
        };
        // Hashing the new password is the costly part; a guess that is
        // already wrong here never pays for it. Apply re-checks and counts.
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&guess_hash[..], &record.hash[..])) {
            let now = crate::clock::now_millis();
            let cmd = ConfirmForgotPassword {
                pool_id: pool.id.clone(),
                sub: user.sub.clone(),
                guess_hash,
                password_phc: String::new(),
                now,
            };
            let event = AuthEvent::draft(&pool.id, AuthEventType::PasswordReset, now)
                .user(&user.username, &user.sub)
                .origin(&client.client_id, &origin.ip);
            return match propose_audited(&self.node, cmd, event).await? {
                Outcome::Rejected(r) => Err(r.into()),
                _ => Err(ServiceError::internal("a wrong code was accepted")),
            };
        }
        let phc = self
            .hasher
            .hash(password, crate::clock::random_bytes::<16>(), pool.settings.argon2)
            .await?;
        let now = crate::clock::now_millis();
        let cmd = ConfirmForgotPassword {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            guess_hash,
            password_phc: phc.clone(),
            now,
        };
        let event = AuthEvent::draft(&pool.id, AuthEventType::PasswordReset, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip);
        let user: User = submit_audited(&self.node, cmd, event).await?;
        self.remember_srp(&pool.id, &user, &phc, password).await;
        self.post_confirmation(
            &pool,
            &client.client_id,
            &user,
            origin,
            ConfirmSource::ConfirmForgotPassword,
        )
        .await
    }

    /// `ChangePassword`: the previous password (a wrong one counts toward
    /// lockout, like a failed sign-in) and a new one.
    pub async fn change_password(
        &self,
        access_token: &str,
        previous: &str,
        proposed: &str,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        let (v, user) = self.authenticate(access_token).await?;
        let pool = crate::service::pools::existing_pool(&self.node, &v.pool_id).await?;
        self.check_new_password(&pool, proposed)?;
        if previous.len() > MAX_PASSWORD_BYTES {
            return Err(ServiceError::not_authorized("Incorrect username or password."));
        }
        // The previous password is a guess like a sign-in's: evaluated only
        // under a lockout reservation, so parallel calls with a stolen
        // access token cannot test more passwords than a sign-in could.
        let slot = self.check_lockout(&pool.id, &user.sub).await?;
        let now = crate::clock::now_millis();
        let client_id = v.str("client_id").to_string();
        if !self.check_password(&pool, Some(&user), previous).await? {
            self.record_failure(
                &pool.id,
                &client_id,
                &user,
                origin,
                "ChangePassword: incorrect previous password",
                slot,
            )
            .await?;
            return Err(ServiceError::not_authorized("Incorrect username or password."));
        }
        slot.release();
        if user.status != UserStatus::Confirmed {
            return Err(ServiceError::new(
                ErrorKind::NotAuthorized,
                "NotAuthorizedException",
                format!("the user's status is {}", user.status.as_cognito()),
            ));
        }
        let phc = self
            .hasher
            .hash(proposed, crate::clock::random_bytes::<16>(), pool.settings.argon2)
            .await?;
        let cmd = SetPassword {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            password_phc: phc.clone(),
            status: UserStatus::Confirmed,
            require_status: Some(UserStatus::Confirmed),
            attributes: Default::default(),
            temporary_password_expires_at: None,
            revoke_refresh: true,
            now,
        };
        let event = AuthEvent::draft(&pool.id, AuthEventType::PasswordChange, now)
            .user(&user.username, &user.sub)
            .origin(&client_id, &origin.ip);
        let changed: User = submit_audited(&self.node, cmd, event).await?;
        self.remember_srp(&pool.id, &changed, &phc, proposed).await;
        Ok(())
    }
}
