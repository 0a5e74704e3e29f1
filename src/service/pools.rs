//! User pool administration.

use crate::command::{
    CreateUserPool, DeleteUserPool, SetPoolSignInPolicy, SetUserPoolMfaConfig, SetUserPoolTriggers, UpdateUserPool,
};
use crate::model::auth_event::AuthEventType;
use crate::model::mfa::PoolMfaConfig;
use crate::model::passwordless::SignInPolicy;
use crate::model::triggers::{LambdaConfig, PreTokenVersion, TriggerKind};
use std::sync::Arc;

use super::cursor::{Cursors, Scope};
use super::{Origin, ServiceError};
use crate::command::{Outcome, PoolUpdate};
use crate::model::pool::{pool_id_from_random, validate_pool_id, validate_pool_name, UserPool};
use crate::model::pool_settings::PoolSettings;
use crate::raft::RaftNode;

/// Cognito's page-size limit for `ListUserPools`.
pub const MAX_LIST_RESULTS: usize = 60;

/// A pool that must exist, read locally and, on a miss, again after a read
/// barrier (it may have just been created through another node).
pub async fn existing_pool(node: &RaftNode, pool_id: &str) -> Result<UserPool, ServiceError> {
    validate_pool_id(pool_id)?;
    if let Some(p) = node.store().pool(pool_id)? {
        return Ok(p);
    }
    node.read_barrier().await?;
    node.store()
        .pool(pool_id)?
        .ok_or_else(|| ServiceError::not_found(format!("User pool {pool_id} does not exist.")))
}

/// Pool operations of one node.
#[derive(Clone)]
pub struct PoolService {
    node: Arc<RaftNode>,
    cursors: Cursors,
    /// Seals the triggers' signing secret.
    sealing: Arc<crate::auth::sealing::SealingCell>,
    /// The prefix of new pool ids (config `region`).
    region: String,
}

/// A pool's triggers as an admin sends them (`LambdaConfig`).
#[derive(Debug, Clone, Default)]
pub struct TriggersUpdate {
    /// `(trigger, url)` for each trigger to set.
    pub urls: Vec<(TriggerKind, String)>,
    /// Event shape of `PreTokenGeneration`.
    pub pre_token_version: PreTokenVersion,
    /// Time a call may take; `None` for the default.
    pub timeout_ms: Option<u32>,
    /// A new signing secret; `None` keeps the stored one.
    pub signing_secret: Option<String>,
    /// Wrong `CUSTOM_AUTH` answers allowed; `None` for the default.
    pub custom_auth_max_wrong_answers: Option<u32>,
}

impl PoolService {
    /// The pool service of `node`.
    pub fn new(node: Arc<RaftNode>, cursors: Cursors, sealing: Arc<crate::auth::sealing::SealingCell>) -> Self {
        PoolService {
            node,
            cursors,
            sealing,
            region: crate::model::pool::POOL_ID_PREFIX.to_string(),
        }
    }

    /// New pools' ids lead with `region` (config `region`).
    pub fn with_region(mut self, region: &str) -> Self {
        self.region = region.to_string();
        self
    }

    /// A pool's triggers as applied on this node (`None`: none set).
    pub fn triggers(&self, pool_id: &str) -> Result<Option<LambdaConfig>, ServiceError> {
        Ok(self.node.store().pool_triggers(pool_id)?)
    }

    /// Replaces a pool's triggers (`LambdaConfig` of `CreateUserPool` and
    /// `UpdateUserPool`). A new signing secret is sealed here; without one
    /// the stored secret stays. Validated as a whole before proposing.
    pub async fn set_triggers(&self, pool_id: &str, update: TriggersUpdate) -> Result<LambdaConfig, ServiceError> {
        let pool = existing_pool(&self.node, pool_id).await?;
        let secret = match &update.signing_secret {
            Some(s) => {
                crate::model::triggers::validate_secret(s)?;
                let key = super::sealing_key(&self.sealing)?;
                Some(super::triggers::seal_secret(&key, &pool.id, s))
            }
            None => self.node.store().pool_triggers(&pool.id)?.and_then(|c| c.secret),
        };
        let config = LambdaConfig {
            urls: update.urls,
            pre_token_version: update.pre_token_version,
            timeout_ms: update.timeout_ms.unwrap_or(crate::model::triggers::DEFAULT_TIMEOUT_MS),
            secret,
            custom_auth_max_wrong_answers: update
                .custom_auth_max_wrong_answers
                .unwrap_or(crate::model::triggers::DEFAULT_CUSTOM_AUTH_MAX_WRONG),
            modified_at: crate::clock::now_millis(),
        };
        config.validate()?;
        let cmd = SetUserPoolTriggers {
            pool_id: pool.id.clone(),
            config,
        };
        super::submit(&self.node, cmd).await
    }

    /// Whether a pool has SRP sign-in on, as applied on this node.
    pub fn srp_enabled(&self, pool_id: &str) -> Result<bool, ServiceError> {
        Ok(self.node.store().pool_srp(pool_id)?.enabled)
    }

    /// Turns SRP sign-in on or off (`srp_enabled` of `CreateUserPool` and
    /// `UpdateUserPool`); off deletes the pool's verifiers.
    pub async fn set_srp(&self, pool_id: &str, enabled: bool) -> Result<(), ServiceError> {
        let pool = existing_pool(&self.node, pool_id).await?;
        let cmd = crate::command::SetPoolSrp {
            pool_id: pool.id,
            setting: crate::model::srp::PoolSrp {
                enabled,
                modified_at: crate::clock::now_millis(),
            },
        };
        super::submit(&self.node, cmd).await
    }

    /// A pool's `DeviceConfiguration` as applied on this node (`None`:
    /// devices are not tracked).
    pub fn device_config(&self, pool_id: &str) -> Result<Option<crate::model::device::DeviceConfig>, ServiceError> {
        Ok(self.node.store().pool_devices(pool_id)?)
    }

    /// Sets (or, with `None`, clears) a pool's `DeviceConfiguration`.
    pub async fn set_device_config(
        &self,
        pool_id: &str,
        config: Option<crate::model::device::DeviceConfig>,
    ) -> Result<(), ServiceError> {
        let pool = existing_pool(&self.node, pool_id).await?;
        let cmd = crate::command::SetPoolDeviceConfig {
            pool_id: pool.id,
            config,
        };
        super::submit(&self.node, cmd).await
    }

    /// Creates a pool with a fresh random id.
    pub async fn create(
        &self,
        name: &str,
        deletion_protection: bool,
        settings: PoolSettings,
    ) -> Result<UserPool, ServiceError> {
        validate_pool_name(name)?;
        settings.validate()?;
        // An id collision is astronomically unlikely, but it is decided in
        // apply, so retrying with a new id is always safe.
        for _ in 0..3 {
            let now = crate::clock::now_millis();
            let pool = UserPool {
                id: pool_id_from_random(&self.region, &crate::clock::random_bytes::<9>()),
                name: name.to_string(),
                creation_date: now,
                last_modified_date: now,
                deletion_protection,
                settings: settings.clone(),
            };
            match super::try_submit(&self.node, CreateUserPool(pool)).await? {
                Ok(p) => return Ok(p),
                Err(crate::command::Rejection::AlreadyExists { .. }) => continue,
                Err(r) => return Err(r.into()),
            }
        }
        Err(ServiceError::internal("could not draw a unique pool id"))
    }

    /// A page of pools in id order; the token is the last id returned.
    pub async fn list(
        &self,
        max_results: i32,
        next_token: &str,
        consistent: bool,
    ) -> Result<(Vec<UserPool>, Option<String>), ServiceError> {
        let limit = match max_results {
            0 => MAX_LIST_RESULTS,
            n if (1..=MAX_LIST_RESULTS as i32).contains(&n) => n as usize,
            n => {
                return Err(ServiceError::invalid(format!(
                    "max_results: {n} is out of range; use 1 to {MAX_LIST_RESULTS}"
                )))
            }
        };
        let scope = Scope::next_token("ListUserPools", &[]);
        let after = self.cursors.resume_text(&scope, next_token)?;
        if let Some(a) = &after {
            validate_pool_id(a)
                .map_err(|_| ServiceError::invalid("next_token: not a token from a previous ListUserPools"))?;
        }
        let after = after.as_deref();
        if consistent {
            self.node.read_barrier().await?;
        }
        let mut page = self.node.store().pools_page(after, limit + 1)?;
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last()
                .map(|p| self.cursors.issue(&scope, p.id.as_bytes()))
                .transpose()?
        } else {
            None
        };
        Ok((page, next))
    }

    /// One pool.
    pub async fn describe(&self, pool_id: &str, consistent: bool) -> Result<UserPool, ServiceError> {
        validate_pool_id(pool_id)?;
        if consistent {
            self.node.read_barrier().await?;
        }
        self.node
            .store()
            .pool(pool_id)?
            .ok_or_else(|| ServiceError::not_found(format!("user pool {pool_id} does not exist")))
    }

    /// Changes a pool's mutable settings; the result is validated as a
    /// whole before it is proposed.
    pub async fn update(&self, pool_id: &str, mut update: PoolUpdate) -> Result<UserPool, ServiceError> {
        let current = self.describe(pool_id, true).await?;
        let mut preview = current.settings.clone();
        if let Some(p) = &update.password_policy {
            preview.password_policy = p.clone();
        }
        if let Some(t) = update.token_validity {
            preview.token_validity = t;
        }
        if let Some(a) = update.argon2 {
            preview.argon2 = a;
        }
        preview.validate()?;
        update.modified_at = crate::clock::now_millis();
        let cmd = UpdateUserPool {
            pool_id: pool_id.to_string(),
            update,
        };
        super::submit(&self.node, cmd).await
    }

    /// `GetUserPoolMfaConfig`: the pool's MFA setting (OFF when never
    /// set); `consistent` waits for a read barrier first.
    pub async fn mfa_config(&self, pool_id: &str, consistent: bool) -> Result<PoolMfaConfig, ServiceError> {
        let pool = self.describe(pool_id, consistent).await?;
        Ok(self.node.store().pool_mfa(&pool.id)?)
    }

    /// `SetUserPoolMfaConfig`: replaces the pool's MFA setting, validated
    /// as a whole (factors this release cannot use are refused), with an
    /// audit event in the same entry.
    pub async fn set_mfa_config(
        &self,
        pool_id: &str,
        mut config: PoolMfaConfig,
        origin: &Origin,
    ) -> Result<PoolMfaConfig, ServiceError> {
        config.validate()?;
        let pool = super::pools::existing_pool(&self.node, pool_id).await?;
        config.modified_at = crate::clock::now_millis();
        let detail = format!(
            "SetUserPoolMfaConfig: {}, factors {:?}, sessions {} s",
            config.mfa_configuration.as_cognito(),
            config.allowed().iter().map(|f| f.as_cognito()).collect::<Vec<_>>(),
            config.session_validity_secs
        );
        let event = super::admin_event(&pool.id, AuthEventType::MfaSetup, origin, &detail);
        let cmd = SetUserPoolMfaConfig {
            pool_id: pool.id.clone(),
            config,
        };
        super::submit_audited(&self.node, cmd, event).await
    }

    /// A pool's passkey setting (the default when never set), as this node
    /// has it.
    pub fn web_authn_config(&self, pool_id: &str) -> Result<crate::model::webauthn::WebAuthnConfig, ServiceError> {
        Ok(self.node.store().pool_web_authn(pool_id)?)
    }

    /// Replaces a pool's passkey setting (`SetUserPoolMfaConfig`'s
    /// `web_authn_configuration`), with an audit event in the same entry.
    /// A new relying party makes the passkeys made for the old one
    /// unusable: the authenticator signs for the RP id it was made for.
    pub async fn set_web_authn_config(
        &self,
        pool_id: &str,
        config: crate::model::webauthn::WebAuthnConfig,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        config.validate()?;
        let pool = super::pools::existing_pool(&self.node, pool_id).await?;
        let detail = format!(
            "SetUserPoolMfaConfig: passkeys for relying party {:?}, user verification {}, attestation {}",
            config.relying_party_id,
            config.user_verification.as_cognito(),
            if config.require_attestation {
                "required"
            } else {
                "not required"
            }
        );
        let event = super::admin_event(&pool.id, AuthEventType::MfaSetup, origin, &detail);
        let cmd = crate::command::SetPoolWebAuthn {
            pool_id: pool.id.clone(),
            config,
        };
        super::submit_audited(&self.node, cmd, event).await
    }

    /// A pool's `SignInPolicy` (`PASSWORD` only when never set), as this
    /// node has it.
    pub fn sign_in_policy(&self, pool_id: &str) -> Result<SignInPolicy, ServiceError> {
        Ok(self.node.store().pool_sign_in(pool_id)?)
    }

    /// Replaces a pool's `SignInPolicy` (`CreateUserPool` and
    /// `UpdateUserPool` with `policies.sign_in_policy`).
    pub async fn set_sign_in_policy(&self, pool_id: &str, mut policy: SignInPolicy) -> Result<(), ServiceError> {
        policy.validate()?;
        let pool = existing_pool(&self.node, pool_id).await?;
        policy.modified_at = crate::clock::now_millis();
        super::submit(
            &self.node,
            SetPoolSignInPolicy {
                pool_id: pool.id,
                policy,
            },
        )
        .await
    }

    /// Users in a pool (Cognito's `EstimatedNumberOfUsers`).
    pub fn user_count(&self, pool_id: &str) -> Result<u64, ServiceError> {
        Ok(self.node.store().estimated_users(pool_id)?)
    }

    /// Deletes a pool unless it has deletion protection.
    pub async fn delete(&self, pool_id: &str) -> Result<(), ServiceError> {
        validate_pool_id(pool_id)?;
        match self
            .node
            .propose(DeleteUserPool {
                pool_id: pool_id.to_string(),
            })
            .await?
        {
            Outcome::Rejected(r) => Err(r.into()),
            _ => Ok(()),
        }
    }
}
