//! Remembered devices, as Cognito tracks them (`DeviceConfiguration`,
//! `ConfirmDevice`, `DEVICE_SRP_AUTH`): the pool's setting and a user's
//! devices.
//!
//! A device proves itself with SRP against a verifier it made itself at
//! `ConfirmDevice` (its own random password never leaves it). A forgotten
//! device stays as a tombstone, so its key can never be confirmed again
//! and the refresh tokens it was issued are refused.

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// Most live devices one user may have.
pub const MAX_DEVICES_PER_USER: usize = 100;
/// Most device rows (forgotten ones included) one user may have: a bound
/// on the scan that counts live devices.
pub const MAX_DEVICE_ROWS: usize = 10_000;
/// Longest `DeviceName`.
pub const MAX_DEVICE_NAME_CHARS: usize = 1024;
/// Longest device verifier (a number modulo the 3072-bit group, with a
/// sign byte).
pub const MAX_VERIFIER_BYTES: usize = 385;
/// Longest device salt.
pub const MAX_SALT_BYTES: usize = 64;
/// Longest device key (`<region>_<uuid>`).
pub const MAX_DEVICE_KEY_CHARS: usize = 55;

/// A pool's `DeviceConfiguration`; absent means devices are not tracked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceConfig {
    /// Cognito's `ChallengeRequiredOnNewDevice`: MFA is asked only on new
    /// devices, so a remembered device signs in without it.
    pub challenge_required_on_new_device: bool,
    /// Cognito's `DeviceOnlyRememberedOnUserPrompt`: a confirmed device is
    /// remembered only once `UpdateDeviceStatus` says so; otherwise every
    /// confirmed device is remembered.
    pub device_only_remembered_on_user_prompt: bool,
    /// Unix ms of the last change.
    pub modified_at: i64,
}

/// One device of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// `DeviceKey`: `<pool id prefix>_<uuid>`.
    pub device_key: String,
    /// `DeviceGroupKey` it was issued with: the SRP realm of its verifier.
    pub group_key: String,
    /// `DeviceName` (`device_name` attribute).
    pub name: String,
    /// SRP salt the device made (`DeviceSecretVerifierConfig.Salt`).
    pub salt: Vec<u8>,
    /// SRP verifier the device made for its own random password
    /// (`DeviceSecretVerifierConfig.PasswordVerifier`).
    pub verifier: Vec<u8>,
    /// `dev:device_remembered_status`: remembered devices may skip MFA.
    pub remembered: bool,
    /// Forgotten: a tombstone, neither listed nor usable.
    pub forgotten: bool,
    /// `last_ip_used` at confirmation.
    pub last_ip: String,
    /// Unix ms of the confirmation.
    pub created_at: i64,
    /// Unix ms of the latest change (remembered, forgotten).
    pub modified_at: i64,
}

impl Device {
    /// Shape checks of a device a proposer sends.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_device_key(&self.device_key)?;
        if self.name.chars().count() > MAX_DEVICE_NAME_CHARS || self.name.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "device_name",
                format!("at most {MAX_DEVICE_NAME_CHARS} characters, no control characters"),
            ));
        }
        if self.verifier.is_empty() || self.verifier.len() > MAX_VERIFIER_BYTES {
            return Err(ValidationError::new(
                "device_secret_verifier_config.password_verifier",
                format!("1 to {MAX_VERIFIER_BYTES} bytes"),
            ));
        }
        if self.salt.is_empty() || self.salt.len() > MAX_SALT_BYTES {
            return Err(ValidationError::new(
                "device_secret_verifier_config.salt",
                format!("1 to {MAX_SALT_BYTES} bytes"),
            ));
        }
        if self.group_key.is_empty() || self.group_key.len() > 64 {
            return Err(ValidationError::new("device_group_key", "1 to 64 characters"));
        }
        Ok(())
    }

    /// Whether this device may be used to sign in.
    pub fn usable(&self) -> bool {
        !self.forgotten
    }
}

/// A `DeviceKey` as Tessera issues them: `<prefix>_<hex or dashes>`.
pub fn validate_device_key(key: &str) -> Result<(), ValidationError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_DEVICE_KEY_CHARS
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "device_key",
            format!("a device key like \"local_6f1c...\" (at most {MAX_DEVICE_KEY_CHARS} characters)"),
        ))
    }
}

/// Cognito's `DeviceRememberedStatus` values.
pub fn parse_remembered_status(s: &str) -> Result<bool, ValidationError> {
    match s {
        "remembered" => Ok(true),
        "not_remembered" => Ok(false),
        _ => Err(ValidationError::new(
            "device_remembered_status",
            "use remembered or not_remembered",
        )),
    }
}
