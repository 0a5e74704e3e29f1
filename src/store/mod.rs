//! RocksDB: one database per node, holding the Raft log, the Raft metadata
//! and the state machine in separate column families.
//!
//! This module owns key layout ([`keys`]), value encoding ([`codec`]) and the
//! durability primitives the Raft layer builds on. It knows nothing of
//! openraft: log entries and metadata arrive here as already-encoded bytes.
//! It must never decide *when* something is durable; the caller chooses
//! between a buffered write and an fsync ([`Store::sync_wal`]).

pub mod admin_keys;
pub mod auth_state;
pub mod codec;
pub mod directory;
pub mod identity;
pub mod keys;
pub mod mfa;
pub mod oauth;
pub mod srp;
pub mod state;
pub mod sync;
pub mod triggers;
pub mod webauthn;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};

pub use codec::CodecError;
use keys::Table;

/// Column family of the Raft log.
pub const CF_LOG: &str = "raft_log";
/// Column family of vote, committed and purged ids, and node identity.
pub const CF_META: &str = "raft_meta";
/// Column family of the state machine.
pub const CF_SM: &str = "sm";
/// Block cache shared by the state machine's tables.
pub const BLOCK_CACHE_BYTES: usize = 256 << 20;
/// Live WAL a node keeps before RocksDB flushes the column families that
/// pin the oldest WAL file. Raft's metadata column family takes a few
/// bytes per commit, so its memtable almost never fills, and it pins every
/// WAL file since its last flush. RocksDB's default limit, four times
/// every memtable, is 2 GiB here: disk a node holds for nothing, and all
/// of it replayed before a restarted node serves. etcd keeps five 64 MB
/// WAL segments; this is the same order.
pub const MAX_TOTAL_WAL_BYTES: u64 = 256 << 20;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB refused a read or write.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A stored value did not decode.
    #[error("stored value: {0}")]
    Codec(#[from] CodecError),
    /// The database was opened without a column family this node needs.
    #[error("column family {0} is missing")]
    MissingColumnFamily(&'static str),
    /// The data dir belongs to another node or cluster, or has no identity yet; the message says which.
    #[error("{0}")]
    Identity(String),
    /// A file-system call failed (creating the data dir, or a failpoint standing in for one).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Which cluster and node a data dir belongs to. Written on first start and
/// checked on every start after, so that a data dir is never reused under
/// another node id or joined to another cluster (ARCHITECTURE.md §2.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The node id this data dir was created for; never reused.
    pub node_id: u64,
    /// Learned at `cluster init` or from the first leader that contacts us.
    pub cluster_id: Option<String>,
}

/// A `(key, value)` pair read from a table.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A node's database. Cheap to clone; all clones share one RocksDB.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: DB,
    /// The live state-machine generation; see [`keys`].
    generation: AtomicU64,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the database under `dir/db`, then removes any
    /// state-machine generation left behind by a crash mid-install.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("db");
        std::fs::create_dir_all(&path)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Raft's log and the state machine share one WAL; syncing it once
        // makes every earlier write of either durable (group commit).
        opts.set_manual_wal_flush(false);
        opts.set_keep_log_file_num(4);
        opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        // Reads of the state machine (sign-in, ListUsers pages) are point
        // lookups and short prefix scans over what can be millions of users:
        // a shared block cache keeps hot blocks decompressed, and bloom
        // filters let a lookup skip the files that cannot hold its key.
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let cfs = [CF_LOG, CF_META, CF_SM].map(|name| {
            let mut cf_opts = Options::default();
            cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
            if name == CF_SM {
                let mut table = rocksdb::BlockBasedOptions::default();
                table.set_block_cache(&cache);
                table.set_bloom_filter(10.0, false);
                table.set_cache_index_and_filter_blocks(true);
                table.set_pin_l0_filter_and_index_blocks_in_cache(true);
                cf_opts.set_block_based_table_factory(&table);
            }
            ColumnFamilyDescriptor::new(name, cf_opts)
        });
        let db = DB::open_cf_descriptors(&opts, &path, cfs)?;
        let generation = match db.get_cf(cf(&db, CF_META)?, keys::meta::SM_GENERATION)? {
            Some(bytes) => codec::decode::<u64>(&bytes)?,
            None => 1,
        };
        let store = Store {
            inner: Arc::new(Inner {
                db,
                generation: AtomicU64::new(generation),
                path,
            }),
        };
        store.drop_stale_generations()?;
        Ok(store)
    }

    /// Where the database lives, for log messages.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn cf(&self, name: &'static str) -> Result<&ColumnFamily, StoreError> {
        cf(&self.inner.db, name)
    }

    // ---- identity -----------------------------------------------------

    /// Reads the identity recorded in this data dir, if any.
    pub fn identity(&self) -> Result<Option<NodeIdentity>, StoreError> {
        self.get_meta(keys::meta::IDENTITY)
    }

    /// Checks that this data dir belongs to `node_id`, recording it on first
    /// start. A mismatch is refused with a message an operator can act on.
    pub fn claim_identity(&self, node_id: u64) -> Result<NodeIdentity, StoreError> {
        match self.identity()? {
            Some(id) if id.node_id == node_id => Ok(id),
            Some(id) => Err(StoreError::Identity(format!(
                "data dir {} belongs to node {} but this process was started as node {node_id}; \
                 node ids are never reused: start it with --node-id {} or use an empty data dir",
                self.inner.path.display(),
                id.node_id,
                id.node_id
            ))),
            None => {
                let id = NodeIdentity {
                    node_id,
                    cluster_id: None,
                };
                self.put_meta_sync(keys::meta::IDENTITY, &id)?;
                Ok(id)
            }
        }
    }

    /// Binds this data dir to `cluster_id`, or refuses if it already belongs
    /// to another cluster.
    pub fn bind_cluster(&self, cluster_id: &str) -> Result<(), StoreError> {
        let mut id = self
            .identity()?
            .ok_or_else(|| StoreError::Identity("data dir has no node identity yet".into()))?;
        match &id.cluster_id {
            Some(existing) if existing == cluster_id => Ok(()),
            Some(existing) => Err(StoreError::Identity(format!(
                "data dir {} belongs to cluster {existing}, not {cluster_id}",
                self.inner.path.display()
            ))),
            None => {
                id.cluster_id = Some(cluster_id.to_string());
                self.put_meta_sync(keys::meta::IDENTITY, &id)
            }
        }
    }

    // ---- raft metadata --------------------------------------------------

    /// Reads a metadata value.
    pub fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.inner.db.get_cf(self.cf(CF_META)?, key)? {
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Writes a metadata value and fsyncs the WAL before returning.
    pub fn put_meta_sync<T: Serialize + ?Sized>(&self, key: &[u8], value: &T) -> Result<(), StoreError> {
        let bytes = codec::encode(value)?;
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.inner.db.put_cf_opt(self.cf(CF_META)?, key, bytes, &opts)?;
        Ok(())
    }

    /// Writes a metadata value into the WAL buffer without fsync.
    pub fn put_meta(&self, key: &[u8], value: &impl Serialize) -> Result<(), StoreError> {
        let bytes = codec::encode(value)?;
        self.inner.db.put_cf(self.cf(CF_META)?, key, bytes)?;
        Ok(())
    }

    // ---- raft log -------------------------------------------------------

    /// Appends encoded entries in one batch, *without* fsync. The caller
    /// makes them durable with [`Store::sync_wal`] before acknowledging.
    pub fn append_log(&self, entries: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        let cf = self.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        for (index, bytes) in entries {
            batch.put_cf(cf, keys::log_key(*index), bytes);
        }
        self.inner.db.write(batch)?;
        Ok(())
    }

    /// Fsyncs the write-ahead log: every write issued before this call is
    /// durable when it returns.
    pub fn sync_wal(&self) -> Result<(), StoreError> {
        self.inner.db.flush_wal(true)?;
        Ok(())
    }

    /// Encoded log entries with `start <= index < end`, in order, from the
    /// first present index and stopping at the first gap after it.
    pub fn log_range(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let cf = self.cf(CF_LOG)?;
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let from = keys::log_key(start);
        let iter = self
            .inner
            .db
            .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward));
        let mut expected: Option<u64> = None;
        for item in iter {
            let (k, v) = item?;
            let Some(index) = keys::log_index(&k) else { break };
            if index >= end || expected.is_some_and(|e| e != index) {
                break;
            }
            out.push((index, v.to_vec()));
            expected = Some(index + 1);
        }
        Ok(out)
    }

    /// The last log entry, if the log is not empty.
    pub fn last_log(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let cf = self.cf(CF_LOG)?;
        let mut iter = self.inner.db.iterator_cf(cf, IteratorMode::End);
        match iter.next() {
            Some(item) => {
                let (k, v) = item?;
                Ok(keys::log_index(&k).map(|i| (i, v.to_vec())))
            }
            None => Ok(None),
        }
    }

    /// Deletes log entries with `start <= index` (truncation of a conflicting
    /// suffix). Synced: a truncated suffix must not come back after a crash
    /// while a replacement was acknowledged.
    pub fn truncate_log_from(&self, start: u64) -> Result<(), StoreError> {
        let cf = self.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, keys::log_key(start), keys::log_key(u64::MAX));
        batch.delete_cf(cf, keys::log_key(u64::MAX));
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.inner.db.write_opt(batch, &opts)?;
        Ok(())
    }

    /// Records `purged` and deletes log entries with `index <= upto`, in one
    /// synced batch.
    pub fn purge_log_upto(&self, upto: u64, purged: &impl Serialize) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META)?, keys::meta::PURGED, codec::encode(purged)?);
        batch.delete_range_cf(
            self.cf(CF_LOG)?,
            keys::log_key(0),
            keys::log_key(upto.saturating_add(1)),
        );
        if upto == u64::MAX {
            batch.delete_cf(self.cf(CF_LOG)?, keys::log_key(u64::MAX));
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.inner.db.write_opt(batch, &opts)?;
        Ok(())
    }

    // ---- state machine ----------------------------------------------------

    /// The live state-machine generation.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Reads `table/key` from the live state machine.
    pub fn sm_get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let k = keys::sm_key(self.generation(), table, key);
        Ok(self.inner.db.get_cf(self.cf(CF_SM)?, k)?)
    }

    /// Up to `limit` entries of `table` whose key starts with `prefix` and
    /// sorts after `prefix + after` (or from the prefix), prefix kept. One
    /// bounded iterator that seeks straight to the start, so the cost is
    /// the rows returned, not the rows that sort before them.
    pub fn sm_scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let generation = self.generation();
        let base_len = keys::sm_key(generation, table, &[]).len();
        let lower = keys::sm_key(generation, table, prefix);
        let start = match after {
            Some(a) => {
                let mut k = lower.clone();
                k.extend_from_slice(a);
                k.push(0); // the smallest key strictly after prefix + after
                k
            }
            None => lower.clone(),
        };
        let upper = successor(&lower).unwrap_or_else(|| keys::generation_end(generation).to_vec());
        let mut read_opts = rocksdb::ReadOptions::default();
        read_opts.set_iterate_upper_bound(upper);
        let mut iter = self.inner.db.raw_iterator_cf_opt(self.cf(CF_SM)?, read_opts);
        iter.seek(&start);
        let mut out = Vec::new();
        while out.len() < limit && iter.valid() {
            let (Some(k), Some(v)) = (iter.key(), iter.value()) else {
                break;
            };
            out.push((k[base_len..].to_vec(), v.to_vec()));
            iter.next();
        }
        iter.status()?;
        Ok(out)
    }

    /// Reads many keys of `table` in one batched lookup, in the order given.
    pub fn sm_multi_get(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let generation = self.generation();
        let full: Vec<Vec<u8>> = keys.iter().map(|k| keys::sm_key(generation, table, k)).collect();
        self.inner
            .db
            .batched_multi_get_cf(self.cf(CF_SM)?, full.iter(), false)
            .into_iter()
            .map(|r| Ok(r?.map(|v| v.to_vec())))
            .collect()
    }

    /// Up to `limit` entries of `table` with key strictly after `after`
    /// (or from the start), in key order, with the table prefix stripped.
    pub fn sm_scan(&self, table: Table, after: Option<&[u8]>, limit: usize) -> Result<Vec<KeyValue>, StoreError> {
        // The bounded prefix scan with an empty prefix: its upper bound
        // stops RocksDB at the end of the table. Without one, a scan of a
        // small table (the signing keys, every 300 ms) stepped over every
        // deletion marker of the tables after it until a live key, which
        // kept an idle node busy after a large pool was deleted.
        self.sm_scan_prefix(table, &[], after, limit)
    }

    /// Up to `limit` entries of `table` whose key starts with `prefix` and
    /// sorts before `prefix + before` (or anywhere under the prefix), in
    /// descending key order, prefix kept. For newest-first listings.
    pub fn sm_scan_prefix_rev(
        &self,
        table: Table,
        prefix: &[u8],
        before: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let generation = self.generation();
        let full_prefix = keys::sm_key(generation, table, prefix);
        let start = match before {
            Some(b) => keys::sm_key(generation, table, &[prefix, &b].concat()),
            None => {
                // The first key after every key with this prefix.
                let mut end = full_prefix.clone();
                end.extend_from_slice(&[0xff; 16]);
                end
            }
        };
        let mut read_opts = rocksdb::ReadOptions::default();
        read_opts.set_iterate_lower_bound(full_prefix.clone());
        read_opts.set_iterate_upper_bound(start);
        let mut iter = self.inner.db.raw_iterator_cf_opt(self.cf(CF_SM)?, read_opts);
        iter.seek_to_last();
        let mut out = Vec::new();
        while iter.valid() && out.len() < limit {
            let (Some(k), Some(v)) = (iter.key(), iter.value()) else {
                break;
            };
            let Some(rest) = k.strip_prefix(&full_prefix[..full_prefix.len() - prefix.len()]) else {
                break;
            };
            out.push((rest.to_vec(), v.to_vec()));
            iter.prev();
        }
        iter.status()?;
        Ok(out)
    }

    /// Starts a batch of state-machine writes against the live generation.
    pub fn sm_batch(&self) -> SmBatch<'_> {
        SmBatch {
            store: self,
            generation: self.generation(),
            batch: WriteBatch::default(),
            events: Vec::new(),
        }
    }

    /// Walks every `(table|key, value)` of the live generation under one
    /// RocksDB snapshot, so the walk sees a single consistent state even while
    /// entries keep being applied.
    pub fn export_state(
        &self,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let generation = self.generation();
        let snap = self.inner.db.snapshot();
        let cf = self.cf(CF_SM)?;
        let mut read_opts = rocksdb::ReadOptions::default();
        read_opts.set_iterate_upper_bound(keys::generation_end(generation).to_vec());
        let start = keys::generation_start(generation);
        let iter = snap.iterator_cf_opt(cf, read_opts, IteratorMode::From(&start, Direction::Forward));
        for item in iter {
            let (k, v) = item?;
            if let Some(rest) = keys::strip_generation(&k) {
                visit(rest, &v)?;
            }
        }
        Ok(())
    }

    /// Begins writing a replacement state machine under a fresh generation.
    /// Nothing written through the returned installer is visible until
    /// [`Installer::commit`]; a crash before that leaves the old state, and
    /// the partial generation is deleted on the next open.
    pub fn begin_install(&self) -> Installer<'_> {
        let generation = self.generation() + 1;
        let mut batch = WriteBatch::default();
        // A failed earlier attempt may have left records in this generation.
        if let Ok(cf) = self.cf(CF_SM) {
            batch.delete_range_cf(cf, keys::generation_start(generation), keys::generation_end(generation));
        }
        Installer {
            store: self,
            generation,
            batch,
            batch_bytes: 0,
        }
    }

    fn drop_stale_generations(&self) -> Result<(), StoreError> {
        let live = self.generation();
        let cf = self.cf(CF_SM)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, keys::generation_start(0), keys::generation_start(live));
        batch.delete_range_cf(cf, &keys::generation_end(live)[..], &[0xffu8; 9][..]);
        self.inner.db.write(batch)?;
        Ok(())
    }
}

/// The smallest key greater than every key that starts with `prefix`, if
/// there is one (not for a prefix of all 0xff bytes).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut to = prefix.to_vec();
    while let Some(last) = to.pop() {
        if last < 0xff {
            to.push(last + 1);
            return Some(to);
        }
    }
    None
}

fn cf<'a>(db: &'a DB, name: &'static str) -> Result<&'a ColumnFamily, StoreError> {
    db.cf_handle(name).ok_or(StoreError::MissingColumnFamily(name))
}

/// State-machine writes that commit together, effects and applied log id
/// alike (ARCHITECTURE.md §2.2).
pub struct SmBatch<'a> {
    store: &'a Store,
    generation: u64,
    batch: WriteBatch,
    /// Sync events of the staged effects, published by the state machine
    /// once the batch is written (never before: a subscriber that reads
    /// the store on an event must find the change).
    events: Vec<crate::model::sync::SyncEvent>,
}

impl SmBatch<'_> {
    /// Puts `table/key = value`.
    pub fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let k = keys::sm_key(self.generation, table, key);
        self.batch.put_cf(self.store.cf(CF_SM)?, k, value);
        Ok(())
    }

    /// Deletes `table/key`.
    pub fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        let k = keys::sm_key(self.generation, table, key);
        self.batch.delete_cf(self.store.cf(CF_SM)?, k);
        Ok(())
    }

    /// Deletes every key of `table` starting with `prefix`.
    pub fn delete_prefix(&mut self, table: Table, prefix: &[u8]) -> Result<(), StoreError> {
        let from = keys::sm_key(self.generation, table, prefix);
        let to = successor(&from).unwrap_or_else(|| keys::generation_end(self.generation).to_vec());
        self.batch.delete_range_cf(self.store.cf(CF_SM)?, from, to);
        Ok(())
    }

    /// Records a sync event of the staged effects.
    pub fn emit(&mut self, event: crate::model::sync::SyncEvent) {
        self.events.push(event);
    }

    /// Takes the events recorded so far (to publish after the commit).
    pub fn take_events(&mut self) -> Vec<crate::model::sync::SyncEvent> {
        std::mem::take(&mut self.events)
    }

    /// Writes the batch atomically (buffered in the WAL; Raft's log already
    /// holds the entries durably, so a lost tail is re-applied on restart).
    pub fn commit(self) -> Result<(), StoreError> {
        self.store.inner.db.write(self.batch)?;
        Ok(())
    }
}

/// Writes a snapshot into a fresh generation in bounded batches.
pub struct Installer<'a> {
    store: &'a Store,
    generation: u64,
    batch: WriteBatch,
    batch_bytes: usize,
}

/// How many bytes an installer buffers before writing them out; bounds the
/// memory an install uses whatever the snapshot's size.
const INSTALL_BATCH_BYTES: usize = 4 << 20;

impl Installer<'_> {
    /// Adds one `table|key -> value` record, as produced by
    /// [`Store::export_state`].
    pub fn put(&mut self, table_key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut k = keys::generation_start(self.generation).to_vec();
        k.extend_from_slice(table_key);
        self.batch.put_cf(self.store.cf(CF_SM)?, k, value);
        self.batch_bytes += table_key.len() + value.len() + 16;
        if self.batch_bytes >= INSTALL_BATCH_BYTES {
            let full = std::mem::take(&mut self.batch);
            self.store.inner.db.write(full)?;
            self.batch_bytes = 0;
        }
        Ok(())
    }

    /// Makes the new generation live with one synced write, then deletes the
    /// old one. Because RocksDB's WAL is ordered, the sync also makes every
    /// record written before it durable.
    pub fn commit(mut self) -> Result<(), StoreError> {
        fail::fail_point!("snapshot-install-before-commit", |_| Err(StoreError::Io(
            std::io::Error::other("failpoint snapshot-install-before-commit")
        )));
        let full = std::mem::take(&mut self.batch);
        self.store.inner.db.write(full)?;
        let mut pointer = WriteBatch::default();
        pointer.put_cf(
            self.store.cf(CF_META)?,
            keys::meta::SM_GENERATION,
            codec::encode(&self.generation)?,
        );
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.store.inner.db.write_opt(pointer, &opts)?;
        let old = self.store.inner.generation.swap(self.generation, Ordering::AcqRel);
        let mut cleanup = WriteBatch::default();
        cleanup.delete_range_cf(
            self.store.cf(CF_SM)?,
            keys::generation_start(old),
            keys::generation_end(old),
        );
        self.store.inner.db.write(cleanup)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn identity_is_claimed_once_and_mismatch_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.claim_identity(3).unwrap();
        store.bind_cluster("c1").unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.claim_identity(3).unwrap().cluster_id.as_deref(), Some("c1"));
        let err = store.claim_identity(4).unwrap_err().to_string();
        assert!(err.contains("belongs to node 3"), "{err}");
        assert!(store.bind_cluster("c2").unwrap_err().to_string().contains("cluster c1"));
    }

    #[test]
    fn log_range_stops_at_gaps_and_truncation_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let entries: Vec<_> = (1..=10).map(|i| (i, vec![i as u8])).collect();
        store.append_log(&entries).unwrap();
        store.sync_wal().unwrap();
        assert_eq!(store.log_range(3, 6).unwrap().len(), 3);
        store.truncate_log_from(8).unwrap();
        assert_eq!(store.last_log().unwrap().unwrap().0, 7);
        store.purge_log_upto(4, &4u64).unwrap();
        assert_eq!(store.log_range(0, 100).unwrap().len(), 3, "purged prefix is skipped");
        assert_eq!(store.log_range(5, 100).unwrap().len(), 3);
    }

    /// The WAL files of `dir`'s database, by number, with their sizes.
    fn wal_files(dir: &Path) -> BTreeMap<u64, u64> {
        std::fs::read_dir(dir.join("db"))
            .unwrap()
            .filter_map(|e| {
                let e = e.unwrap();
                let name = e.file_name().into_string().unwrap();
                let number = name.strip_suffix(".log")?.parse().ok()?;
                Some((number, e.metadata().unwrap().len()))
            })
            .collect()
    }

    /// The options file RocksDB writes holds the options it actually runs
    /// with. Then the attack on the bound: Raft's metadata pins the first
    /// WAL file, and 448 MiB of log entries follow it.
    #[test]
    fn the_live_wal_stays_near_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let options = std::fs::read_dir(dir.path().join("db"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("OPTIONS-"))
            .max()
            .unwrap();
        let options = std::fs::read_to_string(options).unwrap();
        assert!(
            options.contains(&format!("max_total_wal_size={MAX_TOTAL_WAL_BYTES}\n")),
            "{options}"
        );

        store.put_meta(keys::meta::COMMITTED, &7u64).unwrap();
        let entry = vec![0x5a; 1 << 20];
        for index in 1..=448 {
            store.append_log(&[(index, entry.clone())]).unwrap();
        }
        store.sync_wal().unwrap();
        // Obsolete WAL files are deleted once the forced flush is done.
        let bound = MAX_TOTAL_WAL_BYTES + (96 << 20);
        // At most 30 s of polls (the store's code may not read the clock).
        let mut live = u64::MAX;
        for _ in 0..600 {
            live = wal_files(dir.path()).values().sum();
            if live <= bound {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(
            live <= bound,
            "{live} bytes of WAL, over {bound}: {:?}",
            wal_files(dir.path())
        );
        assert_eq!(store.log_range(448, 449).unwrap().len(), 1);
        assert_eq!(store.get_meta::<u64>(keys::meta::COMMITTED).unwrap(), Some(7));

        // Recovery with the bound in force: writes after the forced
        // flushes live only in the WAL until the next one, and a reopen
        // must replay them; the flushed ones must come back from the SST
        // files whose WAL was deleted.
        let tail = vec![0xa5; 4096];
        for index in 449..=452 {
            store.append_log(&[(index, tail.clone())]).unwrap();
        }
        store.put_meta(keys::meta::COMMITTED, &452u64).unwrap();
        store.sync_wal().unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let all = store.log_range(1, 453).unwrap();
        assert_eq!(all.len(), 452);
        for (index, bytes) in &all {
            let want = if *index <= 448 { &entry } else { &tail };
            assert!(bytes == want, "entry {index} came back changed");
        }
        assert_eq!(all.first().map(|e| e.0), Some(1));
        assert_eq!(all.last().map(|e| e.0), Some(452));
        assert_eq!(store.get_meta::<u64>(keys::meta::COMMITTED).unwrap(), Some(452));
    }

    #[test]
    fn install_replaces_state_atomically_and_partial_install_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut b = store.sm_batch();
            b.put(Table::Pools, b"a", b"old").unwrap();
            b.commit().unwrap();
            // A crash halfway through an install: records written, no commit.
            let mut inst = store.begin_install();
            inst.put(&[Table::Pools as u8, b'z'], b"new").unwrap();
            let full = std::mem::take(&mut inst.batch);
            store.inner.db.write(full).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.sm_get(Table::Pools, b"a").unwrap().as_deref(), Some(&b"old"[..]));
        assert_eq!(store.sm_get(Table::Pools, b"z").unwrap(), None);
        let mut inst = store.begin_install();
        inst.put(&[Table::Pools as u8, b'z'], b"new").unwrap();
        inst.commit().unwrap();
        assert_eq!(store.sm_get(Table::Pools, b"a").unwrap(), None);
        assert_eq!(store.sm_get(Table::Pools, b"z").unwrap().as_deref(), Some(&b"new"[..]));
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.sm_get(Table::Pools, b"z").unwrap().as_deref(), Some(&b"new"[..]));
        let mut seen = Vec::new();
        store
            .export_state(|k, v| {
                seen.push((k.to_vec(), v.to_vec()));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, vec![(vec![Table::Pools as u8, b'z'], b"new".to_vec())]);
    }
}
