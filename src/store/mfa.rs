//! Typed reads of MFA state: a pool's MFA setting and a user's MFA state;
//! shared by `apply` and the read paths.

use super::keys::{pool_key, Table};
use super::{codec, Store, StoreError};
use crate::model::mfa::{PoolMfaConfig, UserMfa};

/// `pool_id | 0 | sub`: the key of a user's MFA state.
pub fn user_mfa_key(pool_id: &str, sub: &str) -> Vec<u8> {
    pool_key(pool_id, sub.as_bytes())
}

impl Store {
    /// A pool's MFA setting; the default (OFF) when it was never set.
    pub fn pool_mfa(&self, pool_id: &str) -> Result<PoolMfaConfig, StoreError> {
        match self.sm_get(Table::PoolMfa, pool_id.as_bytes())? {
            Some(v) => Ok(codec::decode(&v)?),
            None => Ok(PoolMfaConfig::default()),
        }
    }

    /// A user's MFA state, if the user ever set any up.
    pub fn user_mfa(&self, pool_id: &str, sub: &str) -> Result<Option<UserMfa>, StoreError> {
        match self.sm_get(Table::UserMfa, &user_mfa_key(pool_id, sub))? {
            Some(v) => Ok(Some(codec::decode(&v)?)),
            None => Ok(None),
        }
    }
}
