//! Lazy user migration: the `UserMigration` trigger, asked about a user the
//! pool does not have when a password sign-in names it.
//!
//! The trigger gets the name and the password (over its signed request;
//! never logged) and checks them against the old system. If it answers
//! with `userAttributes`, the user is created here with that password,
//! hashed by this node with the pool's argon2id, in `finalUserStatus`
//! (`CONFIRMED` by default, or `RESET_REQUIRED`), and the sign-in goes on
//! as for any user: nobody resets a password. If it refuses (any status
//! but `2xx`) or answers without attributes, the caller gets exactly the
//! unknown-user answer, after the same dummy hash, so nothing tells a
//! migrated name from an unknown one. A trigger that times out or answers
//! nonsense fails the sign-in with `UserLambdaValidationException`.
//!
//! `ForgotPassword` for an unknown name asks the same trigger
//! (`UserMigration_ForgotPassword`, without a password): a user it knows
//! is created in `RESET_REQUIRED` with no password, and the reset code
//! goes to the verified email or phone number it answered.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::AuthService;
use crate::command::{CreateUser, Rejection};
use crate::model::app_client::AppClient;
use crate::model::auth_event::{AuthEvent, AuthEventType};
use crate::model::pool::UserPool;
use crate::model::triggers::TriggerKind;
use crate::model::user::{validate_new_attributes, validate_username_for_pool, User, UserStatus};
use crate::service::triggers::events::{self, invalid_answer, Caller};
use crate::service::{try_submit_audited, Origin, ServiceError};

const T: &str = "UserMigration";

impl AuthService {
    /// Asks `UserMigration` about `username`, unknown to the pool, signing
    /// in with `password`; the created user, or `None` for "no" (or no
    /// trigger).
    pub(crate) async fn migrate_on_sign_in(
        &self,
        pool: &UserPool,
        client: &AppClient,
        username: &str,
        password: &str,
        origin: &Origin,
    ) -> Result<Option<User>, ServiceError> {
        self.migrate(pool, client, username, Some(password), origin).await
    }

    /// Asks `UserMigration` about `username`, unknown to the pool, for
    /// `ForgotPassword`; the created user (in `RESET_REQUIRED`, without a
    /// password), or `None` for "no" (or no trigger).
    pub(crate) async fn migrate_on_forgot_password(
        &self,
        pool: &UserPool,
        client: &AppClient,
        username: &str,
        origin: &Origin,
    ) -> Result<Option<User>, ServiceError> {
        self.migrate(pool, client, username, None, origin).await
    }

    async fn migrate(
        &self,
        pool: &UserPool,
        client: &AppClient,
        username: &str,
        password: Option<&str>,
        origin: &Origin,
    ) -> Result<Option<User>, ServiceError> {
        let Some(config) = self.triggers.configured(&pool.id, TriggerKind::UserMigration)? else {
            return Ok(None);
        };
        if validate_username_for_pool(&pool.settings, username).is_err() {
            return Ok(None);
        }
        let mut request = json!({
            "validationData": events::string_map(&origin.client_metadata),
            "clientMetadata": events::string_map(&origin.client_metadata),
        });
        if let Some(p) = password {
            request["password"] = json!(p);
        }
        let source = match password {
            Some(_) => "UserMigration_Authentication",
            None => "UserMigration_ForgotPassword",
        };
        let caller = Caller {
            pool_id: &pool.id,
            username,
            client_id: &client.client_id,
        };
        let event = events::event(source, caller, request, "1");
        let Some(response) = self
            .triggers
            .call_or_refusal(&pool.id, &config, TriggerKind::UserMigration, &event)
            .await?
        else {
            return Ok(None);
        };
        let Some(Value::Object(given)) = response.get("userAttributes") else {
            return Ok(None);
        };
        let mut attributes = BTreeMap::new();
        for (name, value) in given {
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => return Err(invalid_answer(T, format!("userAttributes.{name} must be a string"))),
            };
            attributes.insert(name.clone(), value);
        }
        // The old system's id, if it sends one, is not ours: every user
        // gets a fresh sub.
        attributes.remove("sub");
        attributes.remove("username");
        let flag = |attrs: &mut BTreeMap<String, String>, name: &str| attrs.remove(name).is_some_and(|v| v == "true");
        let email_verified = flag(&mut attributes, "email_verified");
        let phone_number_verified = flag(&mut attributes, "phone_number_verified");
        validate_new_attributes(&pool.settings, &attributes).map_err(|e| invalid_answer(T, e))?;
        let status = match response.get("finalUserStatus").and_then(Value::as_str) {
            // Without a password the user can only reset one.
            _ if password.is_none() => UserStatus::ResetRequired,
            None | Some("") | Some("CONFIRMED") => UserStatus::Confirmed,
            Some("RESET_REQUIRED") => UserStatus::ResetRequired,
            Some(other) => {
                return Err(invalid_answer(
                    T,
                    format!("finalUserStatus {other:?} is not CONFIRMED or RESET_REQUIRED"),
                ))
            }
        };
        let force_alias_creation = response
            .get("forceAliasCreation")
            .is_some_and(|v| v == &Value::Bool(true) || v == "true");
        let phc = match password {
            Some(p) => Some(
                self.hasher
                    .hash(p, crate::clock::random_bytes::<16>(), pool.settings.argon2)
                    .await?,
            ),
            None => None,
        };
        let now = crate::clock::now_millis();
        let user = User {
            pool_id: pool.id.clone(),
            sub: crate::clock::new_uuid().to_string(),
            username: username.to_string(),
            attributes,
            status,
            enabled: true,
            password_phc: phc,
            email_verified,
            phone_number_verified,
            created_at: now,
            modified_at: now,
            tokens_revoked_before_ms: 0,
            temporary_password_expires_at: None,
            refresh_revoked_before_ms: 0,
            pending_attributes: Default::default(),
        };
        let event = AuthEvent::draft(&pool.id, AuthEventType::SignUp, now)
            .user(&user.username, &user.sub)
            .origin(&client.client_id, &origin.ip)
            .detail("migrated by UserMigration");
        let cmd = CreateUser {
            user,
            code: None,
            message: None,
            force_alias_creation,
        };
        match try_submit_audited(&self.node, cmd, event).await? {
            // The outcome carries no password hash, which the challenge
            // sessions bind to: sign in with the user as stored.
            Ok(created) => self.user_by_sub(&pool.id, &created.sub).await,
            // Another node migrated the same name at the same moment: the
            // caller signs in again and finds the user.
            Err(Rejection::UsernameExists) => Err(ServiceError::too_many_requests(
                "The user was being migrated by a concurrent sign-in; retry.",
            )),
            Err(r) => Err(r.into()),
        }
    }
}
