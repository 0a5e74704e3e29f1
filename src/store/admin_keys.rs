//! Typed reads of admin access keys (`crate::model::admin_key`), shared by
//! `apply` and the SigV4 lookup.

use super::keys::Table;
use super::{codec, Store, StoreError};
use crate::model::admin_key::{AdminAccessKey, MAX_KEYS};

impl Store {
    /// One admin access key by id.
    pub fn admin_access_key(&self, key_id: &str) -> Result<Option<AdminAccessKey>, StoreError> {
        self.sm_get(Table::AdminAccessKeys, key_id.as_bytes())?
            .map(|b| codec::decode(&b))
            .transpose()
            .map_err(Into::into)
    }

    /// Every admin access key, in id order (at most [`MAX_KEYS`], which
    /// `CreateAdminAccessKey` enforces).
    pub fn admin_access_keys(&self) -> Result<Vec<AdminAccessKey>, StoreError> {
        self.sm_scan(Table::AdminAccessKeys, None, MAX_KEYS)?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(StoreError::from))
            .collect()
    }
}
