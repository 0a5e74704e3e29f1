//! Apply logic of the hosted page's branding: one record per app client
//! and one for the pool (`model::branding`). Whether the client exists is
//! decided here, so a branding racing a client's deletion cannot outlive
//! it; deleting the client or the pool deletes its branding.

use serde::{Deserialize, Serialize};

use super::{not_found, Apply, ApplyError, Outcome, Rejection};
use crate::model::branding::Branding;
use crate::store::keys::{pool_key, Table};
use crate::store::{codec, SmBatch, Store};

/// How a [`PutBranding`] meets the stored record. Decided in `apply`, so
/// a create racing a create, or an update racing a delete, ends one way
/// on every node (an update never brings a deleted branding back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PutMode {
    /// `CreateManagedLoginBranding`: refused if the client has one.
    Create,
    /// `UpdateManagedLoginBranding`: refused if it is gone.
    Update,
    /// `SetUICustomization`: creates or replaces.
    Upsert,
}

/// Creates or replaces the branding of a client or the pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutBranding {
    /// The branding as the proposer validated it (string keys included,
    /// which `apply` does not check again: the set of keys grows with
    /// versions, and a follower must not refuse what its leader accepted).
    pub branding: Branding,
    /// Create, update or either.
    pub mode: PutMode,
}

impl Apply for PutBranding {
    type Output = Branding;

    fn validate(&self) -> Result<(), Rejection> {
        self.branding
            .validate(&|_| true)
            .map_err(|e| Rejection::Invalid(e.to_string()))
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let b = &self.branding;
        if store.pool(&b.pool_id)?.is_none() {
            return Ok(not_found("user pool", &b.pool_id));
        }
        if !b.client_id.is_empty() && store.app_client(&b.client_id)?.is_none_or(|c| c.pool_id != b.pool_id) {
            return Ok(not_found("app client", &b.client_id));
        }
        let mut stored = b.clone();
        match store.branding(&b.pool_id, &b.client_id)? {
            Some(_) if self.mode == PutMode::Create => {
                return Ok(Outcome::Rejected(Rejection::AlreadyExists {
                    kind: "managed login branding for client".into(),
                    id: if b.client_id.is_empty() {
                        "ALL".into()
                    } else {
                        b.client_id.clone()
                    },
                }))
            }
            // An update names the record it read; one deleted and made
            // again since is another record.
            Some(old) if self.mode == PutMode::Update && old.branding_id != b.branding_id => {
                return Ok(not_found("managed login branding", &b.branding_id));
            }
            // A replacement keeps the record's identity and age.
            Some(old) => {
                stored.branding_id = old.branding_id;
                stored.created_at = old.created_at;
            }
            None if self.mode == PutMode::Update => {
                return Ok(not_found("managed login branding", &b.branding_id));
            }
            None => {}
        }
        batch.put(
            Table::Brandings,
            &pool_key(&b.pool_id, b.client_id.as_bytes()),
            &codec::encode(&stored)?,
        )?;
        Ok(Outcome::Branding(Box::new(stored)))
    }
}

/// Deletes a branding by its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteBranding {
    /// The user pool.
    pub pool_id: String,
    /// `ManagedLoginBrandingId`.
    pub branding_id: String,
}

impl Apply for DeleteBranding {
    type Output = Branding;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let Some(b) = store.branding_by_id(&self.pool_id, &self.branding_id)? else {
            return Ok(not_found("managed login branding", &self.branding_id));
        };
        batch.delete(Table::Brandings, &pool_key(&self.pool_id, b.client_id.as_bytes()))?;
        Ok(Outcome::Branding(Box::new(b)))
    }
}
