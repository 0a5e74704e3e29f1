//! Typed reads of per-identity sync data (datasets, records, the change
//! log), shared by `apply` and the read path. Every key starts with
//! `identity_pool_id | 0 | identity_id | 0`, so deleting an identity pool
//! or one identity clears its data with one prefix delete per table.

use super::keys::{pool_key, Table};
use super::{codec, Store, StoreError};
use crate::model::sync::{Change, Dataset, Record, SyncState};

/// `identity_pool_id | 0 | identity_id`: the identity's `SyncState` key.
pub fn state_key(pool_id: &str, identity_id: &str) -> Vec<u8> {
    pool_key(pool_id, identity_id.as_bytes())
}

/// `identity_pool_id | 0 | identity_id | 0`: every row of the identity in
/// the dataset, record and log tables starts with it.
pub fn identity_prefix(pool_id: &str, identity_id: &str) -> Vec<u8> {
    let mut k = state_key(pool_id, identity_id);
    k.push(0);
    k
}

/// `... | dataset`: a dataset's key.
pub fn dataset_key(pool_id: &str, identity_id: &str, dataset: &str) -> Vec<u8> {
    let mut k = identity_prefix(pool_id, identity_id);
    k.extend_from_slice(dataset.as_bytes());
    k
}

/// `... | dataset | 0`: every record of a dataset starts with it.
pub fn records_prefix(pool_id: &str, identity_id: &str, dataset: &str) -> Vec<u8> {
    let mut k = dataset_key(pool_id, identity_id, dataset);
    k.push(0);
    k
}

/// `... | dataset | 0 | key`: a record's key.
pub fn record_key(pool_id: &str, identity_id: &str, dataset: &str, key: &str) -> Vec<u8> {
    let mut k = records_prefix(pool_id, identity_id, dataset);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `... | seq`: a change's key in the log.
pub fn log_key(pool_id: &str, identity_id: &str, seq: u64) -> Vec<u8> {
    let mut k = identity_prefix(pool_id, identity_id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn decode_opt<T: serde::de::DeserializeOwned>(v: Option<Vec<u8>>) -> Result<Option<T>, StoreError> {
    v.map(|b| codec::decode(&b)).transpose().map_err(Into::into)
}

impl Store {
    /// The identity's sync bookkeeping, if it ever changed its data.
    pub fn sync_state(&self, pool_id: &str, identity_id: &str) -> Result<Option<SyncState>, StoreError> {
        decode_opt(self.sm_get(Table::SyncStates, &state_key(pool_id, identity_id))?)
    }

    /// One dataset's metadata.
    pub fn dataset(&self, pool_id: &str, identity_id: &str, name: &str) -> Result<Option<Dataset>, StoreError> {
        decode_opt(self.sm_get(Table::Datasets, &dataset_key(pool_id, identity_id, name))?)
    }

    /// Up to `limit` datasets of the identity, by name, after `after`.
    pub fn datasets_page(
        &self,
        pool_id: &str,
        identity_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Dataset>, StoreError> {
        self.sm_scan_prefix(
            Table::Datasets,
            &identity_prefix(pool_id, identity_id),
            after.map(str::as_bytes),
            limit,
        )?
        .into_iter()
        .map(|(_, v)| codec::decode(&v).map_err(Into::into))
        .collect()
    }

    /// One record.
    pub fn record(
        &self,
        pool_id: &str,
        identity_id: &str,
        dataset: &str,
        key: &str,
    ) -> Result<Option<Record>, StoreError> {
        decode_opt(self.sm_get(Table::Records, &record_key(pool_id, identity_id, dataset, key))?)
    }

    /// Many records of one dataset, in the order of `keys`.
    pub fn records_by_key(
        &self,
        pool_id: &str,
        identity_id: &str,
        dataset: &str,
        keys: &[&str],
    ) -> Result<Vec<Option<Record>>, StoreError> {
        let keys: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| record_key(pool_id, identity_id, dataset, k))
            .collect();
        self.sm_multi_get(Table::Records, &keys)?
            .into_iter()
            .map(decode_opt)
            .collect()
    }

    /// Up to `limit` records of a dataset, by key, after `after`.
    pub fn records_page(
        &self,
        pool_id: &str,
        identity_id: &str,
        dataset: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.sm_scan_prefix(
            Table::Records,
            &records_prefix(pool_id, identity_id, dataset),
            after.map(str::as_bytes),
            limit,
        )?
        .into_iter()
        .map(|(_, v)| codec::decode(&v).map_err(Into::into))
        .collect()
    }

    /// One change of the log, if still kept.
    pub fn sync_change(&self, pool_id: &str, identity_id: &str, seq: u64) -> Result<Option<Change>, StoreError> {
        decode_opt(self.sm_get(Table::SyncLog, &log_key(pool_id, identity_id, seq))?)
    }

    /// Up to `limit` changes after `after_seq`, in order. The caller checks
    /// with `SyncState::can_resume` that none was trimmed.
    pub fn sync_changes_after(
        &self,
        pool_id: &str,
        identity_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError> {
        // `after` excludes exactly `after_seq`; seq 0 is never stored, so
        // starting after it reads from the first change.
        self.sm_scan_prefix(
            Table::SyncLog,
            &identity_prefix(pool_id, identity_id),
            Some(&after_seq.to_be_bytes()),
            limit,
        )?
        .into_iter()
        .map(|(_, v)| codec::decode(&v).map_err(Into::into))
        .collect()
    }
}
