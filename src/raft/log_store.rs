//! The Raft log on RocksDB, with group commit.
//!
//! `append` writes entries into RocksDB's WAL buffer and hands the flush
//! callback to a dedicated flusher thread. The flusher takes every callback
//! that is waiting, fsyncs the WAL once, and only then reports them flushed:
//! one fsync serves every append that arrived while the previous one ran,
//! and no entry is reported durable before it is (ARCHITECTURE.md §2.2).
//!
//! If any method here returns an error, openraft stops the node: a storage
//! failure must never be papered over.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use tokio::sync::mpsc;

use super::types::{Entry, LogId, TypeConfig, Vote};
use crate::metrics::Metrics;
use crate::store::{codec, keys::meta, Store, StoreError};

/// The log store handed to openraft. Cloning shares the flusher.
#[derive(Clone)]
pub struct LogStore {
    store: Store,
    flusher: Arc<Flusher>,
}

/// The flusher thread's handle. Dropping the last one closes the queue and
/// joins the thread, so the thread never outlives the store's users (a
/// RocksDB handle released on a detached thread can race process exit).
struct Flusher {
    tx: Option<mpsc::UnboundedSender<IOFlushed<TypeConfig>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn io_err(e: StoreError) -> io::Error {
    io::Error::other(e)
}

impl LogStore {
    /// Wraps `store` and starts the flusher thread, which is joined when the
    /// last clone of this log store is dropped.
    pub fn new(store: Store, metrics: Arc<Metrics>) -> io::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let flush_store = store.clone();
        let thread = std::thread::Builder::new()
            .name("raft-log-flusher".into())
            .spawn(move || run_flusher(flush_store, rx, metrics))?;
        Ok(LogStore {
            store,
            flusher: Arc::new(Flusher {
                tx: Some(tx),
                thread: Some(thread),
            }),
        })
    }

    fn decode_entries(rows: Vec<(u64, Vec<u8>)>) -> Result<Vec<Entry>, io::Error> {
        rows.into_iter()
            .map(|(_, bytes)| codec::decode::<Entry>(&bytes).map_err(|e| io_err(e.into())))
            .collect()
    }
}

/// Waits for flush requests, batches all that are queued, fsyncs once and
/// completes them. An fsync failure is reported to every waiting callback,
/// which makes openraft stop the node rather than acknowledge lost data.
fn run_flusher(store: Store, mut rx: mpsc::UnboundedReceiver<IOFlushed<TypeConfig>>, metrics: Arc<Metrics>) {
    let mut waiting = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        waiting.push(first);
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        let result = sync_wal(&store);
        metrics.record_fsync_batch(waiting.len());
        match result {
            Ok(()) => waiting.drain(..).for_each(|cb| cb.io_completed(Ok(()))),
            Err(e) => {
                tracing::error!(error = %e, "WAL fsync failed; reporting the append as failed");
                let msg = e.to_string();
                waiting
                    .drain(..)
                    .for_each(|cb| cb.io_completed(Err(io::Error::other(msg.clone()))));
            }
        }
    }
}

/// One WAL fsync, with a failpoint so tests can make it fail.
fn sync_wal(store: &Store) -> Result<(), StoreError> {
    fail::fail_point!("log-fsync", |_| Err(StoreError::Io(io::Error::other(
        "failpoint log-fsync"
    ))));
    store.sync_wal()
}

fn range_to_bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = range_to_bounds(&range);
        let rows = self.store.log_range(start, end).map_err(io_err)?;
        Self::decode_entries(rows)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.store.get_meta(meta::VOTE).map_err(io_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.store.get_meta(meta::PURGED).map_err(io_err)?;
        let last = match self.store.last_log().map_err(io_err)? {
            Some((_, bytes)) => Some(codec::decode::<Entry>(&bytes).map_err(|e| io_err(e.into()))?.log_id()),
            None => None,
        };
        Ok(LogState {
            last_log_id: last.or(last_purged_log_id),
            last_purged_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        // Synced: a vote forgotten after a crash allows two leaders per term.
        self.store.put_meta_sync(meta::VOTE, vote).map_err(io_err)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not synced: it is only a hint that lets a restarted node re-apply
        // faster; correctness never depends on it.
        self.store.put_meta(meta::COMMITTED, &committed).map_err(io_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self
            .store
            .get_meta::<Option<LogId>>(meta::COMMITTED)
            .map_err(io_err)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for entry in entries {
            let bytes = codec::encode(&entry).map_err(|e| io_err(e.into()))?;
            rows.push((entry.index(), bytes));
        }
        self.store.append_log(&rows).map_err(io_err)?;
        self.flusher
            .tx
            .as_ref()
            .ok_or_else(|| io::Error::other("log flusher stopped"))?
            .send(callback)
            .map_err(|_| io::Error::other("log flusher stopped"))?;
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|l| l.index() + 1).unwrap_or(0);
        self.store.truncate_log_from(from).map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // The synced batch also makes every earlier state-machine write
        // durable (one ordered WAL), so the log is never purged past what the
        // state machine or a snapshot durably holds.
        self.store.purge_log_upto(log_id.index(), &log_id).map_err(io_err)
    }
}
