//! Typed read of a pool's triggers (`LambdaConfig`); shared by `apply`
//! and the request paths that call them.

use super::keys::Table;
use super::{codec, Store, StoreError};
use crate::model::triggers::LambdaConfig;

impl Store {
    /// A pool's triggers; `None` when none was ever set.
    pub fn pool_triggers(&self, pool_id: &str) -> Result<Option<LambdaConfig>, StoreError> {
        match self.sm_get(Table::PoolTriggers, pool_id.as_bytes())? {
            Some(v) => Ok(Some(codec::decode(&v)?)),
            None => Ok(None),
        }
    }
}
