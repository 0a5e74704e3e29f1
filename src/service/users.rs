//! Administration of users: creation, reads, confirmation, attribute
//! changes, deletion, enabling and disabling, passwords and sign-out. Every
//! change is committed together with its audit event.

use crate::command::{
    ConfirmUser, CreateUser, DeleteUser, DeleteUserAttributes, GlobalSignOut, ResetUserPassword, SetPassword,
    SetUserEnabled, UpdateUserAttributes,
};
use std::collections::BTreeMap;
use std::sync::Arc;

use super::outbox::temporary_password_message;
use super::{admin_event, submit_audited, Origin, ServiceError};
use crate::auth::codes::{code_from_random, CodeRecord};
use crate::auth::password::PasswordHasher;
use crate::auth::sealing::SealingCell;
use crate::command::{Command, Rejection};
use crate::model::auth_event::AuthEventType;
use crate::model::outbox::DeliveryMedium;
use crate::model::outbox::MessageKind;
use crate::model::pool::UserPool;
use crate::model::pool_settings::{PasswordPolicy, MAX_PASSWORD_BYTES};
use crate::model::user::{validate_new_attributes, validate_username, validate_username_for_pool, User, UserStatus};
use crate::raft::RaftNode;
use crate::service::triggers::custom_message::MessageSource;

/// An `AdminCreateUser` request, decoded.
#[derive(Debug, Clone, Default)]
pub struct AdminCreateUser {
    /// The pool to create the user in.
    pub pool_id: String,
    /// The username to create.
    pub username: String,
    /// Attributes, including `email_verified` and `phone_number_verified` which only admins may set.
    pub attributes: BTreeMap<String, String>,
    /// Empty: generate one that satisfies the policy.
    pub temporary_password: String,
    /// "", "SUPPRESS".
    pub message_action: String,
    /// "EMAIL", "SMS"; empty means EMAIL.
    pub desired_delivery_mediums: Vec<String>,
    /// Cognito's `ForceAliasCreation`: a verified email or phone number
    /// that another user holds as an alias moves to the new user (and is
    /// unverified on the old one) instead of failing with
    /// `AliasExistsException`.
    pub force_alias_creation: bool,
    /// Cognito's `ValidationData`, for the `PreSignUp` trigger only.
    pub validation_data: BTreeMap<String, String>,
}

/// Admin user operations of one node.
#[derive(Clone)]
pub struct UserAdminService {
    node: Arc<RaftNode>,
    hasher: PasswordHasher,
    deliver: bool,
    /// Seals temporary passwords and codes into the outbox.
    sealing: Arc<SealingCell>,
    /// Calls `PreSignUp` (`PreSignUp_AdminCreateUser`).
    triggers: super::triggers::Triggers,
}

/// A password that satisfies `policy`: random letters, digits and symbols,
/// with one of each class the policy requires.
pub fn generate_temporary_password(policy: &PasswordPolicy) -> String {
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const DIGITS: &[u8] = b"23456789";
    const SYMBOLS: &[u8] = b"!#%&*+-=?@^_";
    let len = (policy.minimum_length as usize).max(12);
    let random = crate::clock::random_bytes::<64>();
    let pick = |set: &[u8], i: usize| set[usize::from(random[i % random.len()]) % set.len()] as char;
    let all: Vec<u8> = [LOWER, UPPER, DIGITS, SYMBOLS].concat();
    let mut out: Vec<char> = vec![pick(LOWER, 0), pick(UPPER, 1), pick(DIGITS, 2), pick(SYMBOLS, 3)];
    for i in 4..len {
        out.push(pick(&all, i));
    }
    // Move the guaranteed classes away from the front.
    let shift = usize::from(random[63]) % out.len();
    out.rotate_left(shift);
    out.into_iter().collect()
}

impl UserAdminService {
    /// The user admin service of `node`; `deliver` says whether a courier backend sends messages, `sealing` seals them.
    pub fn new(node: Arc<RaftNode>, hasher: PasswordHasher, deliver: bool, sealing: Arc<SealingCell>) -> Self {
        UserAdminService {
            triggers: super::triggers::Triggers::new(node.clone(), sealing.clone()),
            node,
            hasher,
            deliver,
            sealing,
        }
    }

    async fn pool(&self, pool_id: &str) -> Result<UserPool, ServiceError> {
        super::pools::existing_pool(&self.node, pool_id).await
    }

    async fn user(&self, pool: &UserPool, username: &str, consistent: bool) -> Result<User, ServiceError> {
        user_by_name(&self.node, pool, username, consistent).await
    }

    /// Creates a user in `FORCE_CHANGE_PASSWORD` with a temporary password
    /// that expires after the policy's validity, and sends it.
    pub async fn create(&self, req: AdminCreateUser, origin: &Origin) -> Result<User, ServiceError> {
        validate_username(&req.username)?;
        let pool = self.pool(&req.pool_id).await?;
        validate_username_for_pool(&pool.settings, &req.username)?;
        let mut attributes = req.attributes;
        let mut email_verified = take_flag(&mut attributes, "email_verified")?;
        let mut phone_verified = take_flag(&mut attributes, "phone_number_verified")?;
        validate_new_attributes(&pool.settings, &attributes)?;
        // An admin-created user always starts in FORCE_CHANGE_PASSWORD;
        // the trigger may refuse it or verify its addresses.
        let pre = self
            .triggers
            .pre_sign_up(
                &pool.id,
                "",
                &req.username,
                &attributes,
                &req.validation_data,
                &origin.client_metadata,
                true,
            )
            .await?;
        email_verified |= pre.auto_verify_email && attributes.contains_key("email");
        phone_verified |= pre.auto_verify_phone && attributes.contains_key("phone_number");
        let password = if req.temporary_password.is_empty() {
            generate_temporary_password(&pool.settings.password_policy)
        } else {
            if req.temporary_password.len() > MAX_PASSWORD_BYTES {
                return Err(ServiceError::invalid_password(format!(
                    "temporary_password: at most {MAX_PASSWORD_BYTES} bytes"
                )));
            }
            pool.settings
                .password_policy
                .check(&req.temporary_password)
                .map_err(|e| {
                    ServiceError::invalid_password(format!("Password did not conform with policy: {}", e.reason))
                })?;
            req.temporary_password.clone()
        };
        let suppress = match req.message_action.as_str() {
            "" => false,
            "SUPPRESS" => true,
            "RESEND" => {
                return Err(ServiceError::invalid(
                    "message_action: RESEND is not supported yet; use AdminCreateUser with a new user",
                ))
            }
            other => {
                return Err(ServiceError::invalid(format!(
                    "message_action: {other:?} is not SUPPRESS or RESEND"
                )))
            }
        };
        let mut mediums = Vec::new();
        for m in &req.desired_delivery_mediums {
            mediums.push(match m.as_str() {
                "EMAIL" => DeliveryMedium::Email,
                "SMS" => DeliveryMedium::Sms,
                other => {
                    return Err(ServiceError::invalid(format!(
                        "desired_delivery_mediums: {other:?} is not EMAIL or SMS"
                    )))
                }
            });
        }
        if mediums.is_empty() {
            mediums.push(DeliveryMedium::Email);
        }
        if self
            .node
            .store()
            .sub_by_username(&pool.id, &pool.settings.normalize_username(&req.username))?
            .is_some()
        {
            return Err(Rejection::UsernameExists.into());
        }
        let phc = self
            .hasher
            .hash(&password, crate::clock::random_bytes::<16>(), pool.settings.argon2)
            .await?;
        let now = crate::clock::now_millis();
        let validity_ms = i64::from(pool.settings.password_policy.temporary_password_validity_days) * 86_400_000;
        let user = User {
            pool_id: pool.id.clone(),
            sub: crate::clock::new_uuid().to_string(),
            username: req.username.clone(),
            attributes,
            status: UserStatus::ForceChangePassword,
            enabled: true,
            password_phc: Some(phc.clone()),
            email_verified,
            phone_number_verified: phone_verified,
            created_at: now,
            modified_at: now,
            tokens_revoked_before_ms: 0,
            temporary_password_expires_at: Some(now + validity_ms),
            refresh_revoked_before_ms: 0,
            pending_attributes: Default::default(),
        };
        let message = if suppress {
            None
        } else {
            let dest = mediums
                .iter()
                .find_map(|m| user.attributes.get(m.attribute()).map(|d| (*m, d.clone())));
            match dest {
                Some((medium, destination)) => {
                    let custom = self
                        .triggers
                        .custom_message(
                            &pool.id,
                            MessageSource::AdminCreateUser,
                            &user,
                            "",
                            &origin.client_metadata,
                            medium,
                        )
                        .await?;
                    Some(temporary_password_message(
                        &*super::sealing_key(&self.sealing)?,
                        &pool,
                        &user,
                        medium,
                        &destination,
                        &password,
                        custom.as_ref(),
                        self.deliver,
                    ))
                }
                None => {
                    return Err(ServiceError::invalid(
                        "the user has no email or phone_number for the requested delivery medium; add one or use message_action SUPPRESS",
                    ))
                }
            }
        };
        let event = admin_event(&pool.id, AuthEventType::AdminAction, origin, "AdminCreateUser")
            .user(&user.username, &user.sub);
        let cmd = CreateUser {
            user,
            code: None,
            message,
            force_alias_creation: req.force_alias_creation,
        };
        let created: User = submit_audited(&self.node, cmd, event).await?;
        super::flows::srp::remember_verifier(&self.node, &self.hasher, &pool.id, &created, &phc, &password).await;
        Ok(created)
    }

    /// `AdminGetUser`; `consistent` waits for a read barrier first, else a miss is retried after one.
    pub async fn get(&self, pool_id: &str, username: &str, consistent: bool) -> Result<User, ServiceError> {
        let pool = self.pool(pool_id).await?;
        self.user(&pool, username, consistent).await
    }

    /// Sets attributes of a user; validated against the schema as a whole.
    pub async fn update_attributes(
        &self,
        pool_id: &str,
        username: &str,
        mut attributes: BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<User, ServiceError> {
        let pool = self.pool(pool_id).await?;
        let user = self.user(&pool, username, false).await?;
        let flag = |a: &mut BTreeMap<String, String>, name: &'static str| -> Result<Option<bool>, ServiceError> {
            if a.contains_key(name) {
                take_flag(a, name).map(Some)
            } else {
                Ok(None)
            }
        };
        let email_verified = flag(&mut attributes, "email_verified")?;
        let phone_number_verified = flag(&mut attributes, "phone_number_verified")?;
        if attributes.is_empty() && email_verified.is_none() && phone_number_verified.is_none() {
            return Err(ServiceError::invalid("user_attributes: nothing to update"));
        }
        for name in attributes.keys() {
            if pool.settings.schema.get(name).is_some_and(|s| !s.mutable) {
                return Err(ServiceError::invalid(format!(
                    "user_attributes: {name} cannot be changed"
                )));
            }
        }
        let mut merged = user.attributes.clone();
        merged.extend(attributes.clone());
        validate_new_attributes(&pool.settings, &merged)?;
        let event = admin_event(
            &pool.id,
            AuthEventType::AttributeChange,
            origin,
            "AdminUpdateUserAttributes",
        )
        .user(&user.username, &user.sub);
        let cmd = UpdateUserAttributes {
            pool_id: pool.id.clone(),
            sub: user.sub,
            attributes,
            email_verified,
            phone_number_verified,
            pending: BTreeMap::new(),
            code: None,
            message: None,
            now: crate::clock::now_millis(),
        };
        submit_audited(&self.node, cmd, event).await
    }

    /// Confirms an `UNCONFIRMED` user without a code.
    pub async fn confirm_sign_up(&self, pool_id: &str, username: &str, origin: &Origin) -> Result<(), ServiceError> {
        let pool = self.pool(pool_id).await?;
        let user = self.user(&pool, username, false).await?;
        let event = admin_event(&pool.id, AuthEventType::ConfirmSignUp, origin, "AdminConfirmSignUp")
            .user(&user.username, &user.sub);
        let cmd = ConfirmUser {
            pool_id: pool.id.clone(),
            sub: user.sub,
            guess_hash: None,
            force_alias_creation: false,
            now: crate::clock::now_millis(),
        };
        submit_audited(&self.node, cmd, event).await.map(|_| ())
    }

    /// Proposes an admin action on `username`, recorded in the audit log.
    async fn act<C>(
        &self,
        pool_id: &str,
        username: &str,
        origin: &Origin,
        event_type: AuthEventType,
        action: &str,
        make: impl FnOnce(&UserPool, &User, i64) -> C,
    ) -> Result<User, ServiceError>
    where
        C: crate::command::Apply<Output = User> + Into<Command>,
    {
        let pool = self.pool(pool_id).await?;
        let user = self.user(&pool, username, false).await?;
        let now = crate::clock::now_millis();
        let cmd = make(&pool, &user, now);
        let event = admin_event(&pool.id, event_type, origin, action).user(&user.username, &user.sub);
        submit_audited(&self.node, cmd, event).await
    }

    /// `AdminDeleteUser`.
    pub async fn delete(&self, pool_id: &str, username: &str, origin: &Origin) -> Result<(), ServiceError> {
        self.act(
            pool_id,
            username,
            origin,
            AuthEventType::DeleteUser,
            "AdminDeleteUser",
            |p, u, _| DeleteUser {
                pool_id: p.id.clone(),
                sub: u.sub.clone(),
            },
        )
        .await
        .map(|_| ())
    }

    /// `AdminDeleteUserAttributes`.
    pub async fn delete_attributes(
        &self,
        pool_id: &str,
        username: &str,
        names: Vec<String>,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        if names.is_empty() || names.len() > crate::model::user::MAX_ATTRIBUTES {
            return Err(ServiceError::invalid(format!(
                "user_attribute_names: 1 to {} names",
                crate::model::user::MAX_ATTRIBUTES
            )));
        }
        let pool = self.pool(pool_id).await?;
        super::flows::profile::check_deletable(&pool, None, &names)?;
        self.act(
            pool_id,
            username,
            origin,
            AuthEventType::AttributeChange,
            "AdminDeleteUserAttributes",
            |p, u, now| DeleteUserAttributes {
                pool_id: p.id.clone(),
                sub: u.sub.clone(),
                names,
                now,
            },
        )
        .await
        .map(|_| ())
    }

    /// `AdminDisableUser` / `AdminEnableUser`.
    pub async fn set_enabled(
        &self,
        pool_id: &str,
        username: &str,
        enabled: bool,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        let action = if enabled { "AdminEnableUser" } else { "AdminDisableUser" };
        self.act(
            pool_id,
            username,
            origin,
            AuthEventType::AdminAction,
            action,
            |p, u, now| SetUserEnabled {
                pool_id: p.id.clone(),
                sub: u.sub.clone(),
                enabled,
                now,
            },
        )
        .await
        .map(|_| ())
    }

    /// `AdminSetUserMFAPreference`: which factors the user enabled and
    /// prefers, as `SetUserMFAPreference` sets them.
    pub async fn set_mfa_preference(
        &self,
        pool_id: &str,
        username: &str,
        req: &crate::service::mfa::MfaPreferenceRequest,
        origin: &Origin,
    ) -> Result<crate::model::mfa::MfaSummary, ServiceError> {
        let pool = self.pool(pool_id).await?;
        let user = self.user(&pool, username, false).await?;
        let cfg = self.node.store().pool_mfa(&pool.id)?;
        let changes = crate::service::mfa::preference_changes(req, &cfg)?;
        let event = admin_event(&pool.id, AuthEventType::MfaSetup, origin, "AdminSetUserMFAPreference");
        crate::service::mfa::set_preference(&self.node, &user, changes, event).await
    }

    /// A user's MFA settings, without secrets (`AdminGetUser`).
    pub fn mfa_summary(&self, user: &User) -> Result<crate::model::mfa::MfaSummary, ServiceError> {
        Ok(self
            .node
            .store()
            .user_mfa(&user.pool_id, &user.sub)?
            .map(|m| m.summary())
            .unwrap_or_default())
    }

    /// `AdminUserGlobalSignOut`: every token of the user stops working.
    pub async fn global_sign_out(&self, pool_id: &str, username: &str, origin: &Origin) -> Result<(), ServiceError> {
        let pool = self.pool(pool_id).await?;
        let user = self.user(&pool, username, false).await?;
        let now = crate::clock::now_millis();
        let event = admin_event(&pool.id, AuthEventType::SignOut, origin, "AdminUserGlobalSignOut")
            .user(&user.username, &user.sub);
        let cmd = GlobalSignOut {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            at: now,
        };
        submit_audited(&self.node, cmd, event).await.map(|_| ())
    }

    /// `AdminSetUserPassword`: permanent (`CONFIRMED`) or temporary
    /// (`FORCE_CHANGE_PASSWORD`, expiring like an admin-created user's).
    /// Refresh tokens issued before it stop working either way.
    pub async fn set_password(
        &self,
        pool_id: &str,
        username: &str,
        password: &str,
        permanent: bool,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        let pool = self.pool(pool_id).await?;
        if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
            return Err(ServiceError::invalid_password(format!(
                "password must be 1 to {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        pool.settings.password_policy.check(password).map_err(|e| {
            ServiceError::invalid_password(format!("Password does not conform to policy: {}", e.reason))
        })?;
        let user = self.user(&pool, username, false).await?;
        let phc = self
            .hasher
            .hash(password, crate::clock::random_bytes::<16>(), pool.settings.argon2)
            .await?;
        let now = crate::clock::now_millis();
        let validity_ms = i64::from(pool.settings.password_policy.temporary_password_validity_days) * 86_400_000;
        let cmd = SetPassword {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            password_phc: phc.clone(),
            status: if permanent {
                UserStatus::Confirmed
            } else {
                UserStatus::ForceChangePassword
            },
            require_status: None,
            attributes: BTreeMap::new(),
            temporary_password_expires_at: (!permanent).then_some(now + validity_ms),
            revoke_refresh: true,
            now,
        };
        let detail = if permanent {
            "AdminSetUserPassword (permanent)"
        } else {
            "AdminSetUserPassword (temporary)"
        };
        let event = admin_event(&pool.id, AuthEventType::PasswordReset, origin, detail).user(&user.username, &user.sub);
        let changed: User = submit_audited(&self.node, cmd, event).await?;
        super::flows::srp::remember_verifier(&self.node, &self.hasher, &pool.id, &changed, &phc, password).await;
        Ok(())
    }

    /// `AdminResetUserPassword`: `RESET_REQUIRED`, refresh tokens ended,
    /// and a code for `ConfirmForgotPassword` sent to the verified email or
    /// phone number (none is sent when the user has neither; an admin then
    /// sets a password with `AdminSetUserPassword`).
    pub async fn reset_password(&self, pool_id: &str, username: &str, origin: &Origin) -> Result<(), ServiceError> {
        let pool = self.pool(pool_id).await?;
        let user = self.user(&pool, username, false).await?;
        let now = crate::clock::now_millis();
        let (code, message) = match super::outbox::recovery_destination(&user) {
            Some((alias, medium, destination)) => {
                let code = code_from_random(crate::clock::random_bytes::<8>());
                let record =
                    CodeRecord::issue(&code, crate::clock::random_bytes::<16>(), now).bound_to(alias, &destination);
                let custom = self
                    .triggers
                    .custom_message(
                        &pool.id,
                        MessageSource::ForgotPassword,
                        &user,
                        "",
                        &origin.client_metadata,
                        medium,
                    )
                    .await?;
                let message = super::outbox::code_message(
                    &*super::sealing_key(&self.sealing)?,
                    &pool,
                    &user.username,
                    MessageKind::ForgotPassword,
                    medium,
                    &destination,
                    &code,
                    custom.as_ref(),
                    self.deliver,
                );
                (Some(record), Some(message))
            }
            None => (None, None),
        };
        let cmd = ResetUserPassword {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            code,
            message,
            now,
        };
        let event = admin_event(&pool.id, AuthEventType::PasswordReset, origin, "AdminResetUserPassword")
            .user(&user.username, &user.sub);
        submit_audited(&self.node, cmd, event).await.map(|_| ())
    }
}

/// A user by username. With `consistent`, reads after a barrier so that
/// the answer reflects every acknowledged write; otherwise a miss is
/// retried once after a barrier (the user may be new on another node).
pub(crate) async fn user_by_name(
    node: &RaftNode,
    pool: &UserPool,
    username: &str,
    consistent: bool,
) -> Result<User, ServiceError> {
    validate_username(username)?;
    if consistent {
        node.read_barrier().await?;
    }
    let store = node.store();
    let find = || -> Result<Option<User>, ServiceError> {
        match store.sub_by_username(&pool.id, &pool.settings.normalize_username(username))? {
            Some(sub) => Ok(store.user(&pool.id, &sub)?),
            None => Ok(None),
        }
    };
    if let Some(u) = find()? {
        return Ok(u);
    }
    if !consistent {
        node.read_barrier().await?;
        if let Some(u) = find()? {
            return Ok(u);
        }
    }
    Err(ServiceError::user_not_found())
}

/// Removes a `true`/`false` attribute and returns its value.
fn take_flag(attributes: &mut BTreeMap<String, String>, name: &'static str) -> Result<bool, ServiceError> {
    match attributes.remove(name).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ServiceError::invalid(format!(
            "user_attributes: {name} must be true or false"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_temporary_passwords_meet_the_policy() {
        for min in [8, 12, 30] {
            let policy = PasswordPolicy {
                minimum_length: min,
                ..PasswordPolicy::default()
            };
            for _ in 0..50 {
                let p = generate_temporary_password(&policy);
                policy.check(&p).unwrap();
            }
        }
    }
}
