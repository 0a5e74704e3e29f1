//! Typed reads of app clients, one-time codes, token revocations, key
//! rotation and the courier outbox; shared by `apply` and the read paths.

use super::keys::{id_key, pool_key, Table};
use super::{codec, Store, StoreError};
use crate::model::app_client::AppClient;
use crate::model::code::CodeRecord;
use crate::model::outbox::OutboxMessage;

/// Singleton key (in `Table::Cluster`) of the last cluster-wide key
/// rotation request, in Unix ms.
pub const KEY_ROTATION_KEY: &[u8] = b"key_rotation";
/// Singleton key (in `Table::Cluster`) of the outbox bounds.
pub const OUTBOX_META_KEY: &[u8] = b"outbox_meta";

pub use crate::model::code::CodePurpose;

/// The outbox's counters (kept by `apply`, so reading them is O(1)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutboxMeta {
    /// The id the next message gets.
    pub next: u64,
    /// Messages a courier backend still has to deliver.
    pub pending: u64,
    /// Messages held against their pools' bounds (pending or stored).
    pub open: u64,
    /// Finished messages kept as history.
    pub done: u64,
}

/// `pool_id | 0 | sub | 0 | purpose`.
pub fn code_key(pool_id: &str, sub: &str, purpose: CodePurpose) -> Vec<u8> {
    let mut rest = sub.as_bytes().to_vec();
    rest.push(0);
    rest.push(purpose as u8);
    pool_key(pool_id, &rest)
}

fn decode_opt<T: serde::de::DeserializeOwned>(v: Option<Vec<u8>>) -> Result<Option<T>, StoreError> {
    v.map(|b| codec::decode(&b)).transpose().map_err(Into::into)
}

impl Store {
    /// One app client, by its cluster-wide unique id.
    pub fn app_client(&self, client_id: &str) -> Result<Option<AppClient>, StoreError> {
        decode_opt(self.sm_get(Table::AppClients, client_id.as_bytes())?)
    }

    /// Up to `limit` app clients of a pool with id after `after`.
    pub fn app_clients_page(
        &self,
        pool_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AppClient>, StoreError> {
        let prefix = pool_key(pool_id, &[]);
        let mut out = Vec::new();
        for (k, _) in self.sm_scan_prefix(Table::PoolClients, &prefix, after.map(str::as_bytes), limit)? {
            let id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if let Some(c) = self.app_client(&id)? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// The outstanding code of a user for `purpose`.
    pub fn code(&self, pool_id: &str, sub: &str, purpose: CodePurpose) -> Result<Option<CodeRecord>, StoreError> {
        decode_opt(self.sm_get(Table::Codes, &code_key(pool_id, sub, purpose))?)
    }

    /// Whether the refresh-token family `origin_jti` was revoked.
    pub fn is_revoked(&self, pool_id: &str, origin_jti: &str) -> Result<bool, StoreError> {
        Ok(self
            .sm_get(Table::RevokedTokens, &pool_key(pool_id, origin_jti.as_bytes()))?
            .is_some())
    }

    /// The last cluster-wide key rotation request (Unix ms), if any.
    pub fn key_rotation_requested_at(&self) -> Result<Option<i64>, StoreError> {
        decode_opt(self.sm_get(Table::Cluster, KEY_ROTATION_KEY)?)
    }

    /// The outbox bounds.
    pub fn outbox_meta(&self) -> Result<OutboxMeta, StoreError> {
        Ok(decode_opt(self.sm_get(Table::Cluster, OUTBOX_META_KEY)?)?.unwrap_or_default())
    }

    /// One outbox message.
    pub fn outbox_message(&self, id: u64) -> Result<Option<OutboxMessage>, StoreError> {
        decode_opt(self.sm_get(Table::Outbox, &id_key(id))?)
    }

    /// Up to `limit` outbox messages with id greater than `after`, oldest
    /// first, optionally of one pool. Scans at most the outbox's capacity.
    pub fn outbox_page(
        &self,
        pool_id: Option<&str>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let mut out = Vec::new();
        let mut cursor = after.map(id_key);
        loop {
            let page = self.sm_scan(Table::Outbox, cursor.as_ref().map(|c| &c[..]), 1024)?;
            let full = page.len() == 1024;
            for (k, v) in page {
                cursor = k.get(..8).and_then(|b| b.try_into().ok());
                let m: OutboxMessage = codec::decode(&v)?;
                if pool_id.is_none_or(|p| p == m.draft.pool_id) {
                    out.push(m);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if !full {
                return Ok(out);
            }
        }
    }

    /// Ids of messages waiting for delivery, oldest first.
    pub fn outbox_pending(&self, limit: usize) -> Result<Vec<u64>, StoreError> {
        Ok(self
            .sm_scan(Table::OutboxPending, None, limit)?
            .into_iter()
            .filter_map(|(k, _)| k.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_scans_stay_inside_their_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = store.sm_batch();
        for key in ["a\0x", "ab\0y", "b\0a", "b\0b", "b\0c", "b\x01z", "c\0a"] {
            b.put(Table::PoolClients, key.as_bytes(), b"v").unwrap();
        }
        b.commit().unwrap();
        let keys = |prefix: &str, after: Option<&str>, limit| -> Vec<String> {
            store
                .sm_scan_prefix(Table::PoolClients, prefix.as_bytes(), after.map(str::as_bytes), limit)
                .unwrap()
                .into_iter()
                .map(|(k, _)| String::from_utf8(k).unwrap())
                .collect()
        };
        assert_eq!(keys("b\0", None, 10), vec!["b\0a", "b\0b", "b\0c"]);
        assert_eq!(keys("b\0", Some("a"), 10), vec!["b\0b", "b\0c"]);
        assert_eq!(keys("b\0", None, 2), vec!["b\0a", "b\0b"]);
        assert_eq!(keys("a\0", None, 10), vec!["a\0x"]);
        assert!(keys("d\0", None, 10).is_empty());
    }
}
