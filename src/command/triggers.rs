//! Apply logic of a pool's triggers (`LambdaConfig`): stored per pool, in
//! its own table, so that the pool record's encoding never changes for it.

use serde::{Deserialize, Serialize};

use super::{not_found, Apply, ApplyError, Outcome, Rejection};
use crate::model::triggers::LambdaConfig;
use crate::store::keys::Table;
use crate::store::{codec, SmBatch, Store};

/// Replaces a pool's triggers (`LambdaConfig` of `CreateUserPool` and
/// `UpdateUserPool`). An empty configuration removes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetUserPoolTriggers {
    /// The pool.
    pub pool_id: String,
    /// The new triggers, secret sealed and stamped by the proposer.
    pub config: LambdaConfig,
}

impl Apply for SetUserPoolTriggers {
    type Output = LambdaConfig;

    fn validate(&self) -> Result<(), Rejection> {
        self.config.validate().map_err(|e| Rejection::Invalid(e.to_string()))
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if store.pool(&self.pool_id)?.is_none() {
            return Ok(not_found("user pool", &self.pool_id));
        }
        if self.config.is_empty() {
            batch.delete(Table::PoolTriggers, self.pool_id.as_bytes())?;
        } else {
            batch.put(
                Table::PoolTriggers,
                self.pool_id.as_bytes(),
                &codec::encode(&self.config)?,
            )?;
        }
        Ok(Outcome::Triggers(Box::new(self.config.clone())))
    }
}
