//! Typed reads of SRP state (a pool's setting, a user's verifier, remembered
//! devices and their verifiers); shared
//! by `apply` and the sign-in paths.

use super::keys::{pool_key, Table};
use super::{codec, Store, StoreError};
use crate::model::device::{Device, DeviceConfig};
use crate::model::srp::{PoolSrp, SrpVerifier};

/// `pool_id | 0 | sub`: the key of a user's verifier.
pub fn user_srp_key(pool_id: &str, sub: &str) -> Vec<u8> {
    pool_key(pool_id, sub.as_bytes())
}

impl Store {
    /// A pool's SRP setting; off when never set.
    pub fn pool_srp(&self, pool_id: &str) -> Result<PoolSrp, StoreError> {
        match self.sm_get(Table::PoolSrp, pool_id.as_bytes())? {
            Some(v) => Ok(codec::decode(&v)?),
            None => Ok(PoolSrp::default()),
        }
    }

    /// A user's stored verifier, current or not (see
    /// [`SrpVerifier::is_current_for`]).
    pub fn user_srp(&self, pool_id: &str, sub: &str) -> Result<Option<SrpVerifier>, StoreError> {
        match self.sm_get(Table::UserSrp, &user_srp_key(pool_id, sub))? {
            Some(v) => Ok(Some(codec::decode(&v)?)),
            None => Ok(None),
        }
    }
}

/// `pool_id | 0 | sub | 0`: the prefix of a user's devices.
pub fn user_devices_prefix(pool_id: &str, sub: &str) -> Vec<u8> {
    let mut rest = sub.as_bytes().to_vec();
    rest.push(0);
    pool_key(pool_id, &rest)
}

/// The key of one device of a user.
pub fn device_key(pool_id: &str, sub: &str, device_key: &str) -> Vec<u8> {
    let mut k = user_devices_prefix(pool_id, sub);
    k.extend_from_slice(device_key.as_bytes());
    k
}

impl Store {
    /// A pool's `DeviceConfiguration`; `None` when devices are not tracked.
    pub fn pool_devices(&self, pool_id: &str) -> Result<Option<DeviceConfig>, StoreError> {
        match self.sm_get(Table::PoolDevices, pool_id.as_bytes())? {
            Some(v) => Ok(Some(codec::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// One device of a user, tombstone or not.
    pub fn device(&self, pool_id: &str, sub: &str, key: &str) -> Result<Option<Device>, StoreError> {
        match self.sm_get(Table::UserDevices, &device_key(pool_id, sub, key))? {
            Some(v) => Ok(Some(codec::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` devices of a user (tombstones included) after the
    /// device key `after`, in key order.
    pub fn devices(
        &self,
        pool_id: &str,
        sub: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Device>, StoreError> {
        let prefix = user_devices_prefix(pool_id, sub);
        self.sm_scan_prefix(Table::UserDevices, &prefix, after.map(str::as_bytes), limit)?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(StoreError::from))
            .collect()
    }
}
