//! Apply logic of remembered devices (`crate::model::device`): a pool's
//! `DeviceConfiguration`, and a user's devices.

use serde::{Deserialize, Serialize};

use super::{not_found, Apply, ApplyError, Outcome, Rejection};
use crate::model::device::{Device, DeviceConfig, MAX_DEVICES_PER_USER, MAX_DEVICE_ROWS};
use crate::store::keys::Table;
use crate::store::srp::{device_key, user_devices_prefix};
use crate::store::{codec, SmBatch, Store, StoreError};

/// Sets or clears a pool's `DeviceConfiguration`. Clearing stops tracking
/// new devices; the devices already confirmed stay listed until forgotten
/// or until their user is deleted, as in Cognito.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetPoolDeviceConfig {
    /// The pool.
    pub pool_id: String,
    /// The setting; `None` clears it.
    pub config: Option<DeviceConfig>,
}

impl Apply for SetPoolDeviceConfig {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if store.pool(&self.pool_id)?.is_none() {
            return Ok(not_found("user pool", &self.pool_id));
        }
        match &self.config {
            Some(c) => batch.put(Table::PoolDevices, self.pool_id.as_bytes(), &codec::encode(c)?)?,
            None => batch.delete(Table::PoolDevices, self.pool_id.as_bytes())?,
        }
        Ok(Outcome::Done)
    }
}

/// `ConfirmDevice`: stores a new device with the verifier it made. A key
/// that exists already, forgotten or not, is refused: a device is
/// confirmed once, and a forgotten one never comes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmDevice {
    /// The pool.
    pub pool_id: String,
    /// The user.
    pub sub: String,
    /// The device as prepared (remembered or not per the pool's setting).
    pub device: Device,
}

impl Apply for ConfirmDevice {
    type Output = ();

    fn validate(&self) -> Result<(), Rejection> {
        self.device.validate().map_err(|e| Rejection::Invalid(e.to_string()))
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if store.user(&self.pool_id, &self.sub)?.is_none() {
            return Ok(not_found("user", &self.sub));
        }
        if store
            .device(&self.pool_id, &self.sub, &self.device.device_key)?
            .is_some()
        {
            return Ok(Outcome::Rejected(Rejection::AlreadyExists {
                kind: "device".into(),
                id: self.device.device_key.clone(),
            }));
        }
        // Tombstones are kept (dropping one would let the refresh tokens
        // of its device work again), so only live devices count toward
        // the limit; the scan is bounded all the same.
        let existing = store.devices(&self.pool_id, &self.sub, None, MAX_DEVICE_ROWS + 1)?;
        let live = existing.iter().filter(|d| d.usable()).count();
        if live >= MAX_DEVICES_PER_USER || existing.len() > MAX_DEVICE_ROWS {
            return Ok(Outcome::Rejected(Rejection::LimitExceeded(format!(
                "a user has at most {MAX_DEVICES_PER_USER} devices; forget one first"
            ))));
        }
        batch.put(
            Table::UserDevices,
            &device_key(&self.pool_id, &self.sub, &self.device.device_key),
            &codec::encode(&self.device)?,
        )?;
        Ok(Outcome::Done)
    }
}

/// `UpdateDeviceStatus` (remembered or not) and `ForgetDevice` (a
/// tombstone: the verifier is erased, the key stays taken, and refresh
/// tokens issued to the device are refused from then on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeDevice {
    /// The pool.
    pub pool_id: String,
    /// The user.
    pub sub: String,
    /// The device.
    pub device_key: String,
    /// `Some(remembered)` for `UpdateDeviceStatus`; `None` forgets it.
    pub remembered: Option<bool>,
    /// Proposer's clock (Unix ms).
    pub now: i64,
}

impl Apply for ChangeDevice {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let Some(mut device) = store
            .device(&self.pool_id, &self.sub, &self.device_key)?
            .filter(Device::usable)
        else {
            return Ok(not_found("device", &self.device_key));
        };
        match self.remembered {
            Some(r) => device.remembered = r,
            None => {
                device.forgotten = true;
                device.remembered = false;
                device.salt.clear();
                device.verifier.clear();
            }
        }
        device.modified_at = self.now;
        batch.put(
            Table::UserDevices,
            &device_key(&self.pool_id, &self.sub, &self.device_key),
            &codec::encode(&device)?,
        )?;
        Ok(Outcome::Done)
    }
}

/// Deletes every device of a user (with the user).
pub(super) fn drop_devices(batch: &mut SmBatch<'_>, pool_id: &str, sub: &str) -> Result<(), StoreError> {
    batch.delete_prefix(Table::UserDevices, &user_devices_prefix(pool_id, sub))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testkit::{run, store_with_ann, POOL};
    use crate::command::Command;

    fn device(key: &str, at: i64) -> Device {
        Device {
            device_key: key.into(),
            group_key: "-grp".into(),
            name: "phone".into(),
            salt: vec![1; 16],
            verifier: vec![2; 384],
            remembered: true,
            forgotten: false,
            last_ip: "127.0.0.1".into(),
            created_at: at,
            modified_at: at,
        }
    }

    fn confirm(d: Device) -> Command {
        Command::ConfirmDevice(ConfirmDevice {
            pool_id: POOL.into(),
            sub: "s1".into(),
            device: d,
        })
    }

    fn change(key: &str, remembered: Option<bool>) -> Command {
        Command::ChangeDevice(ChangeDevice {
            pool_id: POOL.into(),
            sub: "s1".into(),
            device_key: key.into(),
            remembered,
            now: 50,
        })
    }

    #[test]
    fn a_device_is_confirmed_once_and_a_forgotten_one_never_returns() {
        let (_d, store) = store_with_ann();
        assert_eq!(run(&store, confirm(device("local_a", 1))), Outcome::Done);
        assert!(matches!(
            run(&store, confirm(device("local_a", 2))),
            Outcome::Rejected(Rejection::AlreadyExists { .. })
        ));
        assert_eq!(run(&store, change("local_a", Some(false))), Outcome::Done);
        assert!(!store.device(POOL, "s1", "local_a").unwrap().unwrap().remembered);
        assert_eq!(run(&store, change("local_a", None)), Outcome::Done);
        let tomb = store.device(POOL, "s1", "local_a").unwrap().unwrap();
        assert!(tomb.forgotten && tomb.verifier.is_empty() && !tomb.usable());
        // Forgotten: not changeable, not confirmable again.
        assert!(matches!(
            run(&store, change("local_a", Some(true))),
            Outcome::Rejected(_)
        ));
        assert!(matches!(
            run(&store, confirm(device("local_a", 3))),
            Outcome::Rejected(_)
        ));
        // Another user's device is not this user's.
        let other = Command::ChangeDevice(ChangeDevice {
            pool_id: POOL.into(),
            sub: "nobody".into(),
            device_key: "local_a".into(),
            remembered: Some(true),
            now: 1,
        });
        assert!(matches!(run(&store, other), Outcome::Rejected(_)));
    }

    #[test]
    fn the_device_limit_counts_live_devices_and_keeps_tombstones() {
        let (_d, store) = store_with_ann();
        for i in 0..MAX_DEVICES_PER_USER {
            assert_eq!(
                run(&store, confirm(device(&format!("local_{i:03}"), i as i64))),
                Outcome::Done
            );
        }
        assert!(matches!(
            run(&store, confirm(device("local_new", 500))),
            Outcome::Rejected(Rejection::LimitExceeded(_))
        ));
        assert_eq!(run(&store, change("local_007", None)), Outcome::Done);
        assert_eq!(run(&store, confirm(device("local_new", 501))), Outcome::Done);
        // The tombstone stays, so the forgotten key stays refused.
        assert!(store.device(POOL, "s1", "local_007").unwrap().unwrap().forgotten);
        assert_eq!(
            store.devices(POOL, "s1", None, 1000).unwrap().len(),
            MAX_DEVICES_PER_USER + 1
        );
    }
}
