//! Administration of users: `AdminCreateUser`, `AdminGetUser`,
//! `AdminConfirmSignUp`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::outbox::temporary_password_message;
use super::ServiceError;
use crate::auth::password::PasswordHasher;
use crate::command::{Command, Outcome, Rejection};
use crate::model::outbox::DeliveryMedium;
use crate::model::pool::UserPool;
use crate::model::pool_settings::{PasswordPolicy, MAX_PASSWORD_BYTES};
use crate::model::user::{validate_new_attributes, validate_username, User, UserStatus};
use crate::raft::RaftNode;

/// An `AdminCreateUser` request, decoded.
#[derive(Debug, Clone, Default)]
pub struct AdminCreateUser {
    pub pool_id: String,
    pub username: String,
    pub attributes: BTreeMap<String, String>,
    /// Empty: generate one that satisfies the policy.
    pub temporary_password: String,
    /// "", "SUPPRESS".
    pub message_action: String,
    /// "EMAIL", "SMS"; empty means EMAIL.
    pub desired_delivery_mediums: Vec<String>,
}

/// Admin user operations of one node.
#[derive(Clone)]
pub struct UserAdminService {
    node: Arc<RaftNode>,
    hasher: PasswordHasher,
    deliver: bool,
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
    pub fn new(node: Arc<RaftNode>, hasher: PasswordHasher, deliver: bool) -> Self {
        UserAdminService { node, hasher, deliver }
    }

    async fn pool(&self, pool_id: &str) -> Result<UserPool, ServiceError> {
        super::pools::existing_pool(&self.node, pool_id).await
    }

    /// A user by username, reading after a barrier so that the answer
    /// reflects every acknowledged write.
    async fn user(&self, pool: &UserPool, username: &str, consistent: bool) -> Result<User, ServiceError> {
        validate_username(username)?;
        if consistent {
            self.node.read_barrier().await?;
        }
        let store = self.node.store();
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
            self.node.read_barrier().await?;
            if let Some(u) = find()? {
                return Ok(u);
            }
        }
        Err(ServiceError::user_not_found())
    }

    /// Creates a user in `FORCE_CHANGE_PASSWORD` with a temporary password
    /// that expires after the policy's validity, and sends it.
    pub async fn create(&self, req: AdminCreateUser) -> Result<User, ServiceError> {
        validate_username(&req.username)?;
        let pool = self.pool(&req.pool_id).await?;
        let mut attributes = req.attributes;
        let email_verified = take_flag(&mut attributes, "email_verified")?;
        let phone_verified = take_flag(&mut attributes, "phone_number_verified")?;
        validate_new_attributes(&pool.settings, &attributes)?;
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
            password_phc: Some(phc),
            email_verified,
            phone_number_verified: phone_verified,
            created_at: now,
            modified_at: now,
            tokens_revoked_before_ms: 0,
            temporary_password_expires_at: Some(now + validity_ms),
        };
        let message = if suppress {
            None
        } else {
            let dest = mediums
                .iter()
                .find_map(|m| user.attributes.get(m.attribute()).map(|d| (*m, d.clone())));
            match dest {
                Some((medium, destination)) => Some(temporary_password_message(
                    &pool,
                    &user,
                    medium,
                    &destination,
                    &password,
                    self.deliver,
                )),
                None => {
                    return Err(ServiceError::invalid(
                        "the user has no email or phone_number for the requested delivery medium; add one or use message_action SUPPRESS",
                    ))
                }
            }
        };
        match self
            .node
            .propose(Command::CreateUser {
                user,
                code: None,
                message,
            })
            .await?
        {
            Outcome::User(u) => Ok(u),
            Outcome::Rejected(r) => Err(r.into()),
            other => Err(ServiceError::internal(format!("unexpected outcome {other}"))),
        }
    }

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
        match self
            .node
            .propose(Command::UpdateUserAttributes {
                pool_id: pool.id.clone(),
                sub: user.sub,
                attributes,
                email_verified,
                phone_number_verified,
                now: crate::clock::now_millis(),
            })
            .await?
        {
            Outcome::User(u) => Ok(u),
            Outcome::Rejected(r) => Err(r.into()),
            other => Err(ServiceError::internal(format!("unexpected outcome {other}"))),
        }
    }

    /// Confirms an `UNCONFIRMED` user without a code.
    pub async fn confirm_sign_up(&self, pool_id: &str, username: &str) -> Result<(), ServiceError> {
        let pool = self.pool(pool_id).await?;
        let user = self.user(&pool, username, false).await?;
        match self
            .node
            .propose(Command::ConfirmUser {
                pool_id: pool.id.clone(),
                sub: user.sub,
                guess_hash: None,
                now: crate::clock::now_millis(),
            })
            .await?
        {
            Outcome::User(_) => Ok(()),
            Outcome::Rejected(r) => Err(r.into()),
            other => Err(ServiceError::internal(format!("unexpected outcome {other}"))),
        }
    }
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
