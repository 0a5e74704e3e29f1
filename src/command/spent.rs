//! Pruning of spent single-use values (authorization codes, passkey
//! challenges) once they have expired.
//!
//! A spent value is kept under `pool prefix + expiry (u64 BE) + id` until
//! it expires, and each new spend prunes a bounded number of expired ones,
//! oldest first. Pruning writes deletions, and RocksDB keeps a deletion as
//! a tombstone until compaction: a scan that started at the pool's prefix
//! would step over every tombstone of every earlier prune, so each spend
//! would cost more than the last (seen as memtable skip-list searches
//! taking a few percent of a passkey sign-in after seconds of load). The
//! pool's prefix itself holds a watermark instead, the expiry of the last
//! pruned value, and the scan starts there: everything before it is gone.
//! The watermark is state like the values, so every node prunes the same.

use crate::store::keys::{pool_key, Table};
use crate::store::{SmBatch, Store, StoreError};

/// Most expired values one spend prunes, so an apply stays bounded
/// however long the pool was idle.
pub const PRUNE_PER_SPEND: usize = 64;

/// Deletes up to [`PRUNE_PER_SPEND`] of `pool_id`'s values in `table` that
/// expired at or before `now` (Unix ms), oldest first, and moves the
/// pool's watermark past them.
pub fn prune_expired(
    store: &Store,
    batch: &mut SmBatch<'_>,
    table: Table,
    pool_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    let prefix = pool_key(pool_id, &[]);
    let watermark = store
        .sm_get(table, &prefix)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(u64::from_be_bytes);
    let start = watermark.map(u64::to_be_bytes);
    let mut pruned_to = None;
    for (k, _) in store.sm_scan_prefix(table, &prefix, start.as_ref().map(|s| &s[..]), PRUNE_PER_SPEND)? {
        let Some(at) = k
            .get(prefix.len()..prefix.len() + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
        else {
            continue;
        };
        if i64::try_from(at).unwrap_or(i64::MAX) > now {
            break;
        }
        batch.delete(table, &k)?;
        pruned_to = Some(at);
    }
    if let Some(at) = pruned_to {
        batch.put(table, &prefix, &at.to_be_bytes())?;
    }
    Ok(())
}
