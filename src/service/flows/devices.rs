//! Remembered devices, with Cognito's protocol so that Amplify's device
//! tracking works unchanged.
//!
//! * **New device.** Where the pool has a `DeviceConfiguration`, a sign-in
//!   that ends in tokens without a known device gets `NewDeviceMetadata`
//!   (`DeviceKey`, `DeviceGroupKey`), and its tokens carry `device_key`.
//!   Nothing is written then: `ConfirmDevice`, with an access token of
//!   that sign-in (so a device key is bound to the session it was issued
//!   to), stores the device and the SRP verifier it made for its own
//!   random password.
//! * **Known device.** A later sign-in that passes `DEVICE_KEY` and gets
//!   the password right is asked `DEVICE_SRP_AUTH`; the device answers
//!   with `SRP_A`, gets `DEVICE_PASSWORD_VERIFIER`, and signs the secret
//!   block as in `USER_SRP_AUTH` (realm: the group key, user: the device
//!   key). A remembered device then skips MFA when the pool says
//!   `ChallengeRequiredOnNewDevice`; any other goes on to MFA as usual.
//!   A wrong proof is a failed sign-in, counted toward the lockout.
//! * **Forgetting** leaves a tombstone: the key cannot be confirmed again,
//!   and refresh tokens issued to the device are refused.
//!   `GlobalSignOut` does not touch devices.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::hooks::TokenSource;
use super::signin::{param, required, AuthAnswer};
use super::srp::{expired, parse_srp_a, Block, Claim};
use super::{AuthService, Caller};
use crate::auth::srp;
use crate::command::{ChangeDevice, ConfirmDevice};
use crate::model::device::{parse_remembered_status, validate_device_key, Device};
use crate::model::mfa::session_binding;
use crate::model::pool::UserPool;
use crate::model::user::{User, UserStatus};
use crate::service::cursor::{self, Scope};
use crate::service::{Origin, ServiceError};

/// The challenge that asks a known device to prove itself.
pub const DEVICE_SRP_AUTH: &str = "DEVICE_SRP_AUTH";
/// The challenge that carries the server's half of the device's SRP.
pub const DEVICE_PASSWORD_VERIFIER: &str = "DEVICE_PASSWORD_VERIFIER";
/// Most devices one `ListDevices` page returns (Cognito's limit).
pub const MAX_LIST: usize = 60;
/// Longest base64 of a device's verifier or salt.
const MAX_VERIFIER_B64: usize = 1024;

fn incorrect() -> ServiceError {
    ServiceError::not_authorized("Incorrect username or password.")
}

fn no_device() -> ServiceError {
    ServiceError::not_found("Device does not exist.")
}

impl AuthService {
    /// The user's group key: the same for all of a user's devices on every
    /// node (derived from the sealing key), unguessable without the key.
    fn group_key(&self, pool_id: &str, sub: &str) -> Result<String, ServiceError> {
        let key = crate::service::sealing_key(&self.sealing)?;
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(key.raw()).map_err(|_| ServiceError::internal("HMAC key"))?;
        mac.update(b"tessera/device-group\0");
        mac.update(pool_id.as_bytes());
        mac.update(&[0]);
        mac.update(sub.as_bytes());
        let digest = mac.finalize().into_bytes();
        Ok(format!("-{}", crate::model::app_client::lower_alnum(&digest[..9])))
    }

    /// The usable device `origin` names for `user`, where the pool tracks
    /// devices.
    fn presented_device(&self, pool: &UserPool, user: &User, origin: &Origin) -> Result<Option<Device>, ServiceError> {
        if origin.device_key.is_empty() || validate_device_key(&origin.device_key).is_err() {
            return Ok(None);
        }
        let store = self.node.store();
        if store.pool_devices(&pool.id)?.is_none() {
            return Ok(None);
        }
        Ok(store
            .device(&pool.id, &user.sub, &origin.device_key)?
            .filter(Device::usable))
    }

    /// Which device tokens minted now belong to, and the new device's
    /// metadata when the sign-in is on a device the pool does not know.
    pub(super) fn device_for_tokens(
        &self,
        pool: &UserPool,
        user: &User,
        source: TokenSource<'_>,
        origin: &Origin,
    ) -> Result<TokenDevice, ServiceError> {
        if let TokenSource::RefreshTokens { .. } = source {
            return Ok(TokenDevice {
                key: (!origin.device_key.is_empty()).then(|| origin.device_key.clone()),
                new: None,
            });
        }
        if let Some(d) = self.presented_device(pool, user, origin)? {
            return Ok(TokenDevice {
                key: Some(d.device_key),
                new: None,
            });
        }
        if self.node.store().pool_devices(&pool.id)?.is_none() {
            return Ok(TokenDevice { key: None, new: None });
        }
        let prefix = pool.id.split('_').next().unwrap_or("local");
        let key = format!("{prefix}_{}", crate::clock::new_uuid());
        let group = self.group_key(&pool.id, &user.sub)?;
        Ok(TokenDevice {
            key: Some(key.clone()),
            new: Some((key, group)),
        })
    }

    /// Asks the device the sign-in named to prove itself, when it is one
    /// of the user's. Called once the password is known to be right.
    pub(super) fn device_challenge(
        &self,
        pool: &UserPool,
        client_id: &str,
        user: &User,
        origin: &Origin,
    ) -> Result<Option<AuthAnswer>, ServiceError> {
        let Some(device) = self.presented_device(pool, user, origin)? else {
            return Ok(None);
        };
        let bind = session_binding(user);
        let session = self.tokens.mint_challenge_session(
            &pool.id,
            client_id,
            &user.sub,
            DEVICE_SRP_AUTH,
            crate::service::tokens::SESSION_SECS,
            &[("bind", bind.as_str()), ("device_key", device.device_key.as_str())],
        )?;
        let mut parameters = BTreeMap::new();
        parameters.insert("USERNAME".to_string(), user.username.clone());
        parameters.insert("DEVICE_KEY".to_string(), device.device_key);
        Ok(Some(AuthAnswer::Challenge {
            name: DEVICE_SRP_AUTH.to_string(),
            session,
            parameters,
            available: Vec::new(),
        }))
    }

    /// `RespondToAuthChallenge(DEVICE_SRP_AUTH)`: `USERNAME`, `DEVICE_KEY`,
    /// `SRP_A`, with the session of the challenge.
    pub(super) async fn device_srp_answer(
        &self,
        caller: &Caller,
        session: &str,
        responses: &BTreeMap<String, String>,
    ) -> Result<AuthAnswer, ServiceError> {
        let Caller { pool, client } = caller;
        let v = self.tokens.verify(session, "session").await.map_err(|_| expired())?;
        if v.pool_id != pool.id || v.str("client_id") != client.client_id || v.str("challenge") != DEVICE_SRP_AUTH {
            return Err(expired());
        }
        let username = required(responses, "challenge_responses", "USERNAME")?;
        let key = required(responses, "challenge_responses", "DEVICE_KEY")?;
        if key != v.str("device_key") {
            return Err(expired());
        }
        self.check_secret_hash(client, &[username], param(responses, "SECRET_HASH"))?;
        let big_a = parse_srp_a(responses, "challenge_responses")?;
        let user = self.user_by_sub(&pool.id, v.str("sub")).await?.ok_or_else(expired)?;
        let norm = |s: &str| pool.settings.normalize_username(s);
        if session_binding(&user) != v.str("bind") || (norm(username) != norm(&user.username) && username != user.sub) {
            return Err(expired());
        }
        let device = self
            .node
            .store()
            .device(&pool.id, &user.sub, key)?
            .filter(Device::usable)
            .ok_or_else(no_device)?;
        let b = crate::clock::random_bytes::<32>();
        let verifier = device.verifier.clone();
        let big_b = self
            .hasher
            .compute(move || srp::server_public(&verifier, &b))
            .await?
            .map_err(|_| {
                ServiceError::not_authorized(
                    "The device's verifier is not usable; forget the device and confirm it again.",
                )
            })?;
        let validity = self.node.store().pool_mfa(&pool.id)?.session_validity_secs;
        let block = Block {
            pool_id: pool.id.clone(),
            client_id: client.client_id.clone(),
            user_id: device.device_key.clone(),
            sub: user.sub.clone(),
            decoy: false,
            bind: session_binding(&user),
            exp_ms: crate::clock::now_millis() + i64::from(validity) * 1000,
            b,
            big_a,
            big_b: big_b.clone(),
            device_key: device.device_key.clone(),
        };
        let mut parameters = BTreeMap::new();
        parameters.insert("SALT".to_string(), hex::encode(&device.salt));
        parameters.insert("SRP_B".to_string(), srp::to_hex(&big_b));
        parameters.insert("SECRET_BLOCK".to_string(), STANDARD.encode(self.seal_block(&block)?));
        parameters.insert("USERNAME".to_string(), user.username.clone());
        parameters.insert("DEVICE_KEY".to_string(), device.device_key);
        Ok(AuthAnswer::Challenge {
            name: DEVICE_PASSWORD_VERIFIER.to_string(),
            session: String::new(),
            parameters,
            available: Vec::new(),
        })
    }

    /// `RespondToAuthChallenge(DEVICE_PASSWORD_VERIFIER)`: the device's
    /// claim, as in `PASSWORD_VERIFIER`, plus `DEVICE_KEY`.
    pub(super) async fn device_verifier_answer(
        &self,
        caller: Caller,
        responses: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let Caller { pool, client } = caller;
        let key = required(responses, "challenge_responses", "DEVICE_KEY")?;
        let Claim {
            username,
            signature,
            timestamp,
            block_bytes,
            block,
        } = self.read_claim(&pool.id, &client.client_id, responses)?;
        if block.device_key.is_empty() || block.device_key != key {
            return Err(expired());
        }
        self.check_secret_hash(&client, &[username], param(responses, "SECRET_HASH"))?;
        let user = self.user_by_sub(&pool.id, &block.sub).await?.ok_or_else(expired)?;
        let norm = |s: &str| pool.settings.normalize_username(s);
        if session_binding(&user) != block.bind || (norm(username) != norm(&user.username) && username != user.sub) {
            return Err(expired());
        }
        let device = self
            .node
            .store()
            .device(&pool.id, &user.sub, key)?
            .filter(Device::usable)
            .ok_or_else(no_device)?;
        let slot = self.check_lockout(&pool.id, &user.sub).await?;
        let (verifier, group, ts) = (device.verifier.clone(), device.group_key.clone(), timestamp.to_string());
        let expected = self
            .hasher
            .compute(move || {
                srp::server_key(&block.big_a, &verifier, &block.b, &block.big_b)
                    .map(|k| srp::claim_signature(&k, &group, &block.device_key, &block_bytes, &ts))
            })
            .await?;
        if !expected.is_ok_and(|sig| srp::signature_matches(&sig, &signature)) {
            self.record_failure(
                &pool.id,
                &client.client_id,
                &user,
                origin,
                "incorrect device proof",
                slot,
            )
            .await?;
            return Err(incorrect());
        }
        if !user.enabled {
            slot.release();
            return Err(ServiceError::not_authorized("User is disabled."));
        }
        if user.status != UserStatus::Confirmed {
            slot.release();
            return Err(incorrect());
        }
        let origin = origin.with_device_key(&device.device_key);
        let skips_mfa = device.remembered
            && self
                .node
                .store()
                .pool_devices(&pool.id)?
                .is_some_and(|c| c.challenge_required_on_new_device);
        if !skips_mfa {
            if let Some(challenge) = self.mfa_challenge(&pool, &client, &user, &origin).await? {
                slot.release();
                return Ok(challenge);
            }
        }
        let now = crate::clock::now_millis();
        self.settle_success(&pool.id, &user.sub, Some(slot), now).await?;
        let tokens = self
            .issue_tokens(&pool, &client, &user, now / 1000, TokenSource::Authentication, &origin)
            .await?;
        self.audit.record_later(
            crate::model::auth_event::AuthEvent::draft(&pool.id, crate::model::auth_event::AuthEventType::SignIn, now)
                .user(&user.username, &user.sub)
                .origin(&client.client_id, &origin.ip)
                .detail(if skips_mfa {
                    "remembered device, MFA skipped"
                } else {
                    "device proved"
                }),
        );
        Ok(AuthAnswer::Tokens(tokens))
    }

    // -- Management (with the user's access token, or the admin's) --

    /// `ConfirmDevice`: the device key must be the one the access token
    /// was issued with.
    pub async fn confirm_device(
        &self,
        access_token: &str,
        device_key: &str,
        password_verifier: &str,
        salt: &str,
        device_name: &str,
        origin: &Origin,
    ) -> Result<bool, ServiceError> {
        let (v, user) = self.authenticate(access_token).await?;
        validate_device_key(device_key)?;
        if v.str("device_key") != device_key {
            return Err(ServiceError::not_authorized(
                "device_key: not the device this access token was issued to",
            ));
        }
        let config = self.node.store().pool_devices(&v.pool_id)?.ok_or_else(|| {
            ServiceError::invalid(format!(
                "user pool {} does not track devices: set its device_configuration first",
                v.pool_id
            ))
        })?;
        if password_verifier.len() > MAX_VERIFIER_B64 || salt.len() > MAX_VERIFIER_B64 {
            return Err(ServiceError::invalid(
                "device_secret_verifier_config: password_verifier and salt are at most 1024 base64 characters",
            ));
        }
        let decode = |field: &str, s: &str| {
            STANDARD
                .decode(s)
                .map_err(|_| ServiceError::invalid(format!("device_secret_verifier_config.{field}: not base64")))
        };
        let now = crate::clock::now_millis();
        let device = Device {
            device_key: device_key.to_string(),
            group_key: self.group_key(&v.pool_id, &user.sub)?,
            name: device_name.to_string(),
            salt: decode("salt", salt)?,
            verifier: decode("password_verifier", password_verifier)?,
            remembered: !config.device_only_remembered_on_user_prompt,
            forgotten: false,
            last_ip: origin.ip.clone(),
            created_at: now,
            modified_at: now,
        };
        device.validate()?;
        crate::service::submit(
            &self.node,
            ConfirmDevice {
                pool_id: v.pool_id.clone(),
                sub: user.sub.clone(),
                device,
            },
        )
        .await?;
        Ok(config.device_only_remembered_on_user_prompt)
    }

    /// The user an access token or an admin call names, with its pool id.
    async fn device_owner(&self, who: &DeviceOwner<'_>) -> Result<(String, User), ServiceError> {
        match who {
            DeviceOwner::Token(token) => {
                let (v, user) = self.authenticate(token).await?;
                Ok((v.pool_id, user))
            }
            DeviceOwner::Admin { pool_id, username } => {
                let pool = crate::service::pools::existing_pool(&self.node, pool_id).await?;
                let user = self
                    .find_user(&pool, username)
                    .await?
                    .ok_or_else(ServiceError::user_not_found)?;
                Ok((pool.id, user))
            }
        }
    }

    /// `GetDevice` / `AdminGetDevice`.
    pub async fn get_device(&self, who: DeviceOwner<'_>, device_key: &str) -> Result<Device, ServiceError> {
        validate_device_key(device_key)?;
        let (pool_id, user) = self.device_owner(&who).await?;
        self.node
            .store()
            .device(&pool_id, &user.sub, device_key)?
            .filter(Device::usable)
            .ok_or_else(no_device)
    }

    /// `ListDevices` / `AdminListDevices`: a page of the user's devices
    /// and the token of the next (sealed to this user's list).
    pub async fn list_devices(
        &self,
        who: DeviceOwner<'_>,
        limit: i32,
        token: &str,
    ) -> Result<(Vec<Device>, String), ServiceError> {
        let limit = match limit {
            0 => MAX_LIST,
            n if (1..=MAX_LIST as i32).contains(&n) => n as usize,
            n => {
                return Err(ServiceError::invalid(format!(
                    "limit: {n} is out of range; use 1 to {MAX_LIST}"
                )))
            }
        };
        let (pool_id, user) = self.device_owner(&who).await?;
        let parts = [pool_id.as_str(), user.sub.as_str()];
        let scope = Scope {
            call: "ListDevices",
            field: "pagination_token",
            parts: &parts,
        };
        let key = crate::service::sealing_key(&self.sealing)?;
        let after = match token {
            "" => None,
            t => Some(
                String::from_utf8(cursor::open(&key, &scope, t)?)
                    .map_err(|_| ServiceError::invalid("pagination_token: not a token that ListDevices returned"))?,
            ),
        };
        let store = self.node.store();
        let mut out = Vec::new();
        let mut position = after;
        // Tombstones are skipped; the scan is bounded by the per-user limit.
        loop {
            let batch = store.devices(&pool_id, &user.sub, position.as_deref(), limit + 1)?;
            let exhausted = batch.len() <= limit;
            for d in batch {
                position = Some(d.device_key.clone());
                if d.usable() {
                    if out.len() == limit {
                        let next = out.last().map(|d: &Device| d.device_key.clone()).unwrap_or_default();
                        return Ok((out, cursor::seal(&key, &scope, next.as_bytes())));
                    }
                    out.push(d);
                }
            }
            if exhausted {
                return Ok((out, String::new()));
            }
        }
    }

    /// `UpdateDeviceStatus` / `AdminUpdateDeviceStatus`.
    pub async fn update_device_status(
        &self,
        who: DeviceOwner<'_>,
        device_key: &str,
        status: &str,
    ) -> Result<(), ServiceError> {
        validate_device_key(device_key)?;
        let remembered = parse_remembered_status(status)?;
        self.change_device(who, device_key, Some(remembered)).await
    }

    /// `ForgetDevice` / `AdminForgetDevice`.
    pub async fn forget_device(&self, who: DeviceOwner<'_>, device_key: &str) -> Result<(), ServiceError> {
        validate_device_key(device_key)?;
        self.change_device(who, device_key, None).await
    }

    async fn change_device(
        &self,
        who: DeviceOwner<'_>,
        device_key: &str,
        remembered: Option<bool>,
    ) -> Result<(), ServiceError> {
        let (pool_id, user) = self.device_owner(&who).await?;
        let cmd = ChangeDevice {
            pool_id,
            sub: user.sub,
            device_key: device_key.to_string(),
            remembered,
            now: crate::clock::now_millis(),
        };
        match crate::service::try_submit(&self.node, cmd).await? {
            Ok(()) => Ok(()),
            Err(crate::command::Rejection::NotFound { .. }) => Err(no_device()),
            Err(r) => Err(r.into()),
        }
    }
}

/// The device tokens are minted for.
pub(super) struct TokenDevice {
    /// The `device_key` claim.
    pub key: Option<String>,
    /// A device the pool does not know yet: `(DeviceKey, DeviceGroupKey)`.
    pub new: Option<(String, String)>,
}

/// Whose devices a management call is about.
pub enum DeviceOwner<'a> {
    /// The user of an access token.
    Token(&'a str),
    /// A user named by an admin call.
    Admin {
        /// The pool.
        pool_id: &'a str,
        /// The username (or an alias).
        username: &'a str,
    },
}
