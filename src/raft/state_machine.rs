//! The replicated state machine on RocksDB, and its snapshots.
//!
//! Each entry's effects and the new last-applied log id (with membership)
//! are written in one `WriteBatch`, so the node never reports an applied
//! index whose effects it lost (ARCHITECTURE.md §2.2). Snapshots are files
//! built from a RocksDB snapshot and installed into a fresh state-machine
//! generation that goes live with one synced pointer write, so a crash
//! mid-install leaves the old state intact.

use std::io;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};

use super::snapshot_file::{self, SnapshotDir, SnapshotFile, SnapshotWriter};
use super::types::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::command::Outcome;
use crate::metrics::Metrics;
use crate::store::keys::Table;
use crate::store::{codec, Store, StoreError};
use crate::sync::hub::ChangeHub;

/// Key of the applied-state record inside [`Table::Applied`].
const APPLIED_KEY: &[u8] = b"applied";

/// Raft's view of how far the state machine got.
type AppliedState = (Option<LogId>, StoredMembership);

fn io_err(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::other(e)
}

/// The state machine handed to openraft.
pub struct StateMachine {
    store: Store,
    snapshots: SnapshotDir,
    metrics: Arc<Metrics>,
    membership: StoredMembership,
    /// Serializes builds so two never write `current.snap` at once.
    build_lock: Arc<tokio::sync::Mutex<()>>,
    /// Receives each entry's sync events once its batch is written.
    hub: Arc<ChangeHub>,
}

impl StateMachine {
    /// Loads the applied state from `store`.
    pub fn new(
        store: Store,
        snapshots: SnapshotDir,
        metrics: Arc<Metrics>,
        hub: Arc<ChangeHub>,
    ) -> Result<Self, StoreError> {
        let (_, membership) = read_applied(&store)?;
        Ok(StateMachine {
            store,
            snapshots,
            metrics,
            membership,
            build_lock: Arc::new(tokio::sync::Mutex::new(())),
            hub,
        })
    }
}

fn read_applied(store: &Store) -> Result<AppliedState, StoreError> {
    match store.sm_get(Table::Applied, APPLIED_KEY)? {
        Some(bytes) => Ok(codec::decode(&bytes)?),
        None => Ok((None, StoredMembership::default())),
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<AppliedState, io::Error> {
        read_applied(&self.store).map_err(io_err)
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        // Tests make one node apply late, to show that a read which must
        // see another node's write waits for a read barrier. An async
        // sleep: the node keeps serving while its state falls behind.
        if let Some(Some(ms)) = fail::eval("apply-delay-ms", |v| v.and_then(|ms| ms.parse::<u64>().ok())) {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        let mut n = 0usize;
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = entry.log_id();
            let mut batch = self.store.sm_batch();
            let outcome = match &entry.payload {
                EntryPayload::Blank => Outcome::Done,
                EntryPayload::Normal(cmd) => cmd.apply(&self.store, &mut batch).map_err(io_err)?,
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(log_id), m.clone());
                    Outcome::Done
                }
            };
            let applied: AppliedState = (Some(log_id), self.membership.clone());
            batch
                .put(Table::Applied, APPLIED_KEY, &codec::encode(&applied).map_err(io_err)?)
                .map_err(io_err)?;
            let events = batch.take_events();
            batch.commit().map_err(io_err)?;
            // After the write: a session that reads the store on an event
            // finds the change. Publishing only queues (bounded), so a slow
            // device never holds apply up.
            for e in events {
                self.hub.publish(e);
            }
            if let Some(r) = responder {
                r.send(outcome);
            }
            n += 1;
        }
        if n > 0 {
            self.metrics.apply_batch_size.observe(n as f64);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            snapshots: self.snapshots.clone(),
            metrics: self.metrics.clone(),
            build_lock: self.build_lock.clone(),
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotFile) -> Result<(), io::Error> {
        let store = self.store.clone();
        let snapshots = self.snapshots.clone();
        let expected = meta.clone();
        let _guard = self.build_lock.lock().await;
        let membership = tokio::task::spawn_blocking(move || install_file(&store, &snapshots, &expected, snapshot))
            .await
            .map_err(io_err)??;
        self.membership = membership;
        self.metrics.snapshots_installed.inc();
        // The state jumped without per-change events: every session
        // catches up from the store.
        self.hub.overflow_all();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let path = self.snapshots.current();
        match SnapshotFile::open(&path) {
            Ok(mut file) => {
                let meta: SnapshotMeta = snapshot_file::read_meta(&mut file.file)?;
                Ok(Some(Snapshot { meta, snapshot: file }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Verifies `snapshot` while writing it into a fresh generation, keeps the
/// file as this node's current snapshot, then makes the generation live.
/// Runs on a blocking thread.
fn install_file(
    store: &Store,
    snapshots: &SnapshotDir,
    expected: &SnapshotMeta,
    mut snapshot: SnapshotFile,
) -> Result<StoredMembership, io::Error> {
    let meta: SnapshotMeta = snapshot_file::read_meta(&mut snapshot.file)?;
    if &meta != expected {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "snapshot metadata does not match its file",
        ));
    }
    let mut installer = store.begin_install();
    snapshot_file::read_records(&mut snapshot.file, |k, v| installer.put(k, v).map_err(io_err))?;
    // The records carry the applied state of the snapshot; make sure it is
    // the one the metadata promises, even for an empty state.
    let applied: AppliedState = (meta.last_log_id, meta.last_membership.clone());
    let mut applied_key = vec![Table::Applied as u8];
    applied_key.extend_from_slice(APPLIED_KEY);
    installer
        .put(&applied_key, &codec::encode(&applied).map_err(io_err)?)
        .map_err(io_err)?;
    // Keep the file as our current snapshot *before* the new state goes
    // live. A crash in between leaves a snapshot newer than the state, which
    // openraft re-installs on restart; the reverse order could leave applied
    // entries (and a purged log) that no snapshot covers.
    if snapshot.path != snapshots.current() {
        let keep = snapshots.temp("installed");
        std::fs::copy(&snapshot.path, &keep)?;
        File::open(&keep)?.sync_all()?;
        snapshots.promote(&keep)?;
    }
    fail::fail_point!("snapshot-install-after-promote", |_| Err(io::Error::other(
        "failpoint snapshot-install-after-promote"
    )));
    installer.commit().map_err(io_err)?;
    Ok(meta.last_membership)
}

use std::fs::File;

/// Builds a snapshot file from a consistent RocksDB snapshot.
pub struct SnapshotBuilder {
    store: Store,
    snapshots: SnapshotDir,
    metrics: Arc<Metrics>,
    build_lock: Arc<tokio::sync::Mutex<()>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let _guard = self.build_lock.lock().await;
        let store = self.store.clone();
        let snapshots = self.snapshots.clone();
        let snapshot = tokio::task::spawn_blocking(move || build_file(&store, &snapshots))
            .await
            .map_err(io_err)??;
        self.metrics.snapshots_built.inc();
        Ok(snapshot)
    }
}

fn build_file(store: &Store, snapshots: &SnapshotDir) -> Result<Snapshot, io::Error> {
    let tmp = snapshots.temp("build");
    let mut writer = SnapshotWriter::create(&tmp)?;
    let mut applied: Option<AppliedState> = None;
    store
        .export_state(|k, v| {
            if k.first() == Some(&(Table::Applied as u8)) && k.get(1..) == Some(APPLIED_KEY) {
                applied = Some(codec::decode(v)?);
            }
            writer.record(k, v).map_err(StoreError::Io)
        })
        .map_err(io_err)?;
    let (last_log_id, last_membership) = applied.unwrap_or((None, StoredMembership::default()));
    let meta = SnapshotMeta {
        last_log_id,
        last_membership,
    };
    let path = writer.finish(&meta)?;
    snapshots.promote(&path)?;
    let file = SnapshotFile::open(&snapshots.current())?;
    Ok(Snapshot { meta, snapshot: file })
}
