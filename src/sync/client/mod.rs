//! The device client: keeps a local copy of one identity's datasets in step
//! with the cluster over QUIC (docs/sync-protocol.md), and writes to it.
//!
//! ```text
//!   application ──put/remove──▶ write queue ─┐        ┌─▶ node 1
//!        ▲   ◀──get/records── local copy ◀───┤ task ──┼─▶ node 2  (one at a time,
//!        └──────── events ◀──────────────────┘        └─▶ node 3   rotating on failure)
//! ```
//!
//! * [`SyncClient::start`] loads the local copy (memory, or a file with its
//!   cursor and queued writes) and starts a background task. The task
//!   connects to one node, says Hello, subscribes from the copy's cursor,
//!   applies what arrives, and sends queued writes once caught up. On any
//!   failure it reconnects with exponential backoff and jitter, to the next
//!   address, resuming from the cursor; nothing is lost or applied twice.
//! * **Writes** ([`SyncClient::put`], [`SyncClient::remove`],
//!   [`SyncClient::write`]) are queued first (durably, with a file store),
//!   then sent when a session is caught up, and return once the server
//!   acknowledged them. Offline, they wait in the queue until the client
//!   reconnects: they do not fail. [`SyncClient::enqueue`] queues without
//!   waiting; [`Event::Acked`] reports the answer.
//! * **Conflicts** go to the configured [`Resolver`] (by default
//!   [`LastWriterWins`], Cognito's default), and the application is told
//!   with [`Event::Conflict`].
//! * **Reads** ([`SyncClient::get`], [`SyncClient::records`], ...) are local.
//!   `get` shows the device's own queued edits; the rest show only what the
//!   server confirmed.
//! * The task checks the server's ordering promise (each change's `seq` is
//!   the previous one's plus one) and counts any gap or duplicate in
//!   [`Stats`]; both are server bugs, and the client heals a gap by
//!   resubscribing from its cursor.
//!
//! Modules: `config` (what a client is started with), `connection` (QUIC
//! and TLS: pinned fingerprints or a CA), `session` (one session's protocol
//! rules, no I/O), `replica` (the local copy and write queue, and its
//! versioned encoding), `store` (the file), `resolve` (conflict
//! resolution), `task` (the background task: sessions, reconnects,
//! flushing).

mod config;
mod connection;
mod replica;
mod resolve;
mod session;
mod store;
mod task;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, oneshot, watch, Notify};
use tokio::task::JoinHandle;

pub use self::config::{Credential, CredentialRefresh, LocalStore, SyncConfig, Timing, Trust};
pub use self::connection::PinnedCertificate;
pub use self::replica::DecodeError;
pub use self::resolve::{Conflict, LastWriterWins, Patch, Resolution, Resolver, ServerWins, WriteId};
use crate::model::sync::{
    validate_device_id, validate_existing_dataset_name, validate_patches, PatchOp, RecordPatch, SyncLimits,
};
pub use crate::model::sync::{Cursor, Record};
use replica::Replica;

/// How many times one write is resolved before it fails with
/// [`SyncClientError::Unresolved`]: two devices that both insist (last
/// writer wins on both) settle within a round or two; more means a
/// resolver that keeps losing to a busy key.
pub const MAX_RESOLUTIONS: u32 = 16;
/// Events buffered for each subscriber; one that falls further behind
/// misses events (`RecvError::Lagged`), never the client's progress.
const EVENT_CAPACITY: usize = 4096;

pub use super::close::CloseCode;

/// What a change did to its dataset (`SyncChange.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeKind {
    /// `UPDATE`: the change's records were written (a record without a
    /// value was removed).
    Update,
    /// `DATASET_DELETED`: the dataset and its records are gone.
    DatasetDeleted,
    /// `DATASET`: the dataset whole, replacing the local one (a reload, or
    /// a dataset merged in from another identity).
    Dataset,
}

impl ChangeKind {
    /// The kind of a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "UPDATE" => Some(ChangeKind::Update),
            "DATASET_DELETED" => Some(ChangeKind::DatasetDeleted),
            "DATASET" => Some(ChangeKind::Dataset),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Update => "UPDATE",
            ChangeKind::DatasetDeleted => "DATASET_DELETED",
            ChangeKind::Dataset => "DATASET",
        }
    }
}

/// One change as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    /// The dataset.
    pub dataset: String,
    /// What happened to it.
    pub kind: ChangeKind,
    /// The identity's cursor after the change.
    pub cursor: Cursor,
    /// The dataset's sync count after it.
    pub dataset_sync_count: u64,
    /// The records written (all of them for [`ChangeKind::Dataset`]).
    pub records: Vec<Record>,
    /// The device that made it ("" for a server-side change).
    pub device_id: String,
    /// Server time of the change, Unix milliseconds.
    pub at: i64,
    /// When this client read it off the connection (for latency).
    pub received: Instant,
    /// Part of a reload: the copy takes it at the reload's
    /// [`Event::Reloaded`], not before.
    pub reloading: bool,
}

/// A write the server acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The local write.
    pub write_id: WriteId,
    /// Its dataset.
    pub dataset: String,
    /// The records as written, with their new sync counts.
    pub records: Vec<Record>,
    /// The dataset's sync count after it.
    pub dataset_sync_count: u64,
    /// The identity's cursor after the change (for an `observed` write,
    /// the copy's cursor when it was recognised: at or after the change).
    pub cursor: Cursor,
    /// The answer was lost with its connection, and the write was found
    /// applied in the caught-up copy instead.
    pub observed: bool,
}

/// How a write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written.
    Written(Ack),
    /// It conflicted, and the resolver dropped it: the server's values
    /// stand.
    Discarded {
        /// The local write.
        write_id: WriteId,
        /// The server's records that won.
        remote: Vec<Record>,
    },
}

impl WriteOutcome {
    /// The acknowledgement, if written.
    pub fn ack(&self) -> Option<&Ack> {
        match self {
            WriteOutcome::Written(a) => Some(a),
            WriteOutcome::Discarded { .. } => None,
        }
    }
}

/// What the client tells the application (through
/// [`SyncClient::events`]).
#[derive(Debug, Clone)]
pub enum Event {
    /// A session started.
    Connected {
        /// The node serving it.
        node_id: u64,
        /// Its address.
        addr: SocketAddr,
        /// The identity the credential proved.
        identity_id: String,
    },
    /// A session ended, or an attempt to start one failed (the client
    /// tries again unless stopped or paused).
    Disconnected {
        /// The server's close code, if it gave one.
        code: Option<CloseCode>,
        /// What happened.
        reason: String,
    },
    /// A change arrived and was applied (or staged, during a reload).
    Change(Arc<ChangeEvent>),
    /// The copy was replaced whole: the server could not resume from its
    /// cursor (first start, another epoch, trimmed history).
    Reloaded {
        /// The cursor of the new copy.
        cursor: Cursor,
        /// The server's reason.
        reason: String,
    },
    /// The server dropped changes this client read too slowly, and is
    /// sending them again from its store.
    Resynced {
        /// The cursor the server resumes from.
        from: Option<Cursor>,
        /// The server's reason.
        reason: String,
    },
    /// Everything up to `cursor` is in the copy; live changes follow.
    CaughtUp {
        /// The copy's cursor.
        cursor: Cursor,
    },
    /// A write conflicted and was resolved.
    Conflict {
        /// The conflict, with the server's current records.
        conflict: Arc<Conflict>,
        /// What the resolver decided.
        resolution: Resolution,
    },
    /// A queued write was acknowledged.
    Acked(Arc<Ack>),
    /// A queued write was refused (a limit, an invalid parameter); it is
    /// dropped from the queue.
    WriteRejected {
        /// The local write.
        write_id: WriteId,
        /// Its dataset.
        dataset: String,
        /// Cognito's exception name.
        exception: String,
        /// The server's message.
        message: String,
    },
    /// The client stopped for good (the identity is gone and no new
    /// credential came, or the protocol version is refused).
    Stopped {
        /// Why.
        reason: String,
    },
}

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncClientError {
    /// The configuration cannot work.
    #[error("sync client configuration: {0}")]
    Config(String),
    /// The local file could not be read or written.
    #[error("sync client store: {0}")]
    Store(String),
    /// The write is invalid (checked before it is queued).
    #[error("InvalidParameterException: {0}")]
    Invalid(String),
    /// The write does not fit in a frame.
    #[error("LimitExceededException: {0}")]
    TooLarge(String),
    /// The server refused the write.
    #[error("{exception}: {message}")]
    Rejected {
        /// Cognito's exception name.
        exception: String,
        /// The server's message.
        message: String,
    },
    /// The write still conflicted after [`MAX_RESOLUTIONS`] resolutions.
    #[error("write {write_id} still conflicts after {resolutions} resolutions")]
    Unresolved {
        /// The local write.
        write_id: WriteId,
        /// Resolutions tried.
        resolutions: u32,
    },
    /// The client was shut down, or stopped for good; a queued write stays
    /// in a file store's queue for the next start.
    #[error("sync client stopped: {0}")]
    Stopped(String),
    /// A wait ran out of time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

/// Counts of what the client saw, for tests, metrics and the chaos
/// checker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Changes that skipped ahead of the copy's cursor outside a reload
    /// (a server bug; healed by resubscribing).
    pub gaps: u64,
    /// Changes at or below the copy's cursor outside a resync (a server
    /// bug; ignored).
    pub duplicates: u64,
    /// Sessions started after the first one.
    pub reconnects: u64,
    /// Sessions started.
    pub sessions: u64,
    /// Reloads (the copy replaced whole).
    pub reloads: u64,
    /// Resyncs (the server's queue for this device overflowed).
    pub resyncs: u64,
    /// Conflicts the server answered.
    pub conflicts: u64,
    /// Changes applied (reloads not counted).
    pub changes: u64,
    /// Writes acknowledged.
    pub writes_acked: u64,
    /// Of those, recognised in the copy after their answer was lost.
    pub writes_observed: u64,
}

/// One counter.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one; the value before.
    pub fn get_and_inc(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub gaps: Counter,
    pub duplicates: Counter,
    pub reconnects: Counter,
    pub sessions: Counter,
    pub reloads: Counter,
    pub resyncs: Counter,
    pub conflicts: Counter,
    pub changes: Counter,
    pub writes_acked: Counter,
    pub writes_observed: Counter,
}

impl Counters {
    fn snapshot(&self) -> Stats {
        Stats {
            gaps: self.gaps.get(),
            duplicates: self.duplicates.get(),
            reconnects: self.reconnects.get(),
            sessions: self.sessions.get(),
            reloads: self.reloads.get(),
            resyncs: self.resyncs.get(),
            conflicts: self.conflicts.get(),
            changes: self.changes.get(),
            writes_acked: self.writes_acked.get(),
            writes_observed: self.writes_observed.get(),
        }
    }
}

/// Where the client is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The node of the current session, if connected.
    pub node_id: Option<u64>,
    /// The identity, once a server told.
    pub identity_id: Option<String>,
    /// The copy's cursor.
    pub cursor: Option<Cursor>,
    /// Connected and caught up: changes arrive live.
    pub caught_up: bool,
}

/// A dataset of the local copy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DatasetInfo {
    /// Its name.
    pub name: String,
    /// Its sync count.
    pub sync_count: u64,
    /// Records with a value.
    pub records: usize,
    /// Removed records the server still keeps.
    pub deleted: usize,
}

type Waiter = oneshot::Sender<Result<WriteOutcome, SyncClientError>>;

/// What the task and the handle share under one lock.
pub(crate) struct State {
    pub replica: Replica,
    /// Callers waiting for a write's outcome.
    pub waiters: BTreeMap<WriteId, Vec<Waiter>>,
    /// Set when the client stops for good.
    pub stopped: Option<String>,
}

/// Whether the task should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Control {
    pub online: bool,
    pub stop: bool,
}

/// Shared by the handle and the background tasks.
pub(crate) struct Shared {
    pub cfg: SyncConfig,
    pub state: Mutex<State>,
    pub events: broadcast::Sender<Event>,
    pub counters: Counters,
    pub status: watch::Sender<Status>,
    pub control: watch::Sender<Control>,
    /// The write queue changed: the session may have writes to send.
    pub wake: Notify,
    /// The copy changed: a file store should be rewritten soon.
    pub dirty: Notify,
    pub store: Option<store::FileStore>,
}

impl Shared {
    /// The state, even if a panic poisoned its lock (it holds plain data).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rewrites the file store now, with the copy as it is.
    pub async fn flush(&self) -> Result<(), SyncClientError> {
        let Some(store) = &self.store else { return Ok(()) };
        store
            .save_with(|| {
                self.lock()
                    .replica
                    .encode()
                    .map_err(|e| SyncClientError::Store(format!("encoding the copy: {e}")))
            })
            .await
    }

    /// Tells the application; nobody listening is fine.
    pub fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    /// Answers everyone waiting for write `id`.
    pub fn finish_write(&self, id: WriteId, outcome: Result<WriteOutcome, SyncClientError>) {
        let waiters = self.lock().waiters.remove(&id).unwrap_or_default();
        if let Ok(WriteOutcome::Written(ack)) = &outcome {
            self.emit(Event::Acked(Arc::new(ack.clone())));
        }
        for w in waiters {
            let _ = w.send(outcome.clone());
        }
    }

    /// Fails every waiting caller (the writes stay queued).
    pub fn fail_waiters(&self, reason: &str) {
        let waiters = std::mem::take(&mut self.lock().waiters);
        for w in waiters.into_values().flatten() {
            let _ = w.send(Err(SyncClientError::Stopped(reason.to_string())));
        }
    }
}

/// A running device client. Dropping it stops the background task (a file
/// store keeps what was flushed; [`SyncClient::shutdown`] also waits for
/// the last rewrite).
pub struct SyncClient {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
    flusher: Option<JoinHandle<()>>,
}

impl SyncClient {
    /// Loads the local copy and starts the background task, which connects
    /// at once. Fails only on a configuration that cannot work or a store
    /// that cannot be read, never because no node answers.
    pub async fn start(cfg: SyncConfig) -> Result<SyncClient, SyncClientError> {
        Self::start_with_events(cfg).await.map(|(c, _)| c)
    }

    /// [`SyncClient::start`], with a subscription to the events made before
    /// the task starts, so that none is missed (the first `Connected`,
    /// `Reloaded` or `CaughtUp`).
    pub async fn start_with_events(
        cfg: SyncConfig,
    ) -> Result<(SyncClient, broadcast::Receiver<Event>), SyncClientError> {
        if cfg.addrs.is_empty() {
            return Err(SyncClientError::Config("no sync address to connect to".into()));
        }
        if cfg.identity_pool_id.is_empty() {
            return Err(SyncClientError::Config("no identity pool id".into()));
        }
        validate_device_id(&cfg.device_id).map_err(|e| SyncClientError::Config(e.reason))?;
        if let Some(d) = &cfg.dataset {
            validate_existing_dataset_name(d).map_err(|e| SyncClientError::Config(e.reason))?;
        }
        let connector = connection::Connector::new(&cfg)?;
        let (store, replica) = match &cfg.store {
            LocalStore::Memory => (None, Replica::new(&cfg.identity_pool_id, &cfg.device_id)),
            LocalStore::File(path) => {
                let store = store::FileStore::new(path.clone());
                let replica = match store.load().await? {
                    Some(r) => {
                        if r.identity_pool_id != cfg.identity_pool_id || r.device_id != cfg.device_id {
                            return Err(SyncClientError::Config(format!(
                                "{} holds the copy of device {:?} of identity pool {:?}, not of device {:?} of {:?}",
                                path.display(),
                                r.device_id,
                                r.identity_pool_id,
                                cfg.device_id,
                                cfg.identity_pool_id
                            )));
                        }
                        r
                    }
                    None => Replica::new(&cfg.identity_pool_id, &cfg.device_id),
                };
                (Some(store), replica)
            }
        };
        let status = Status {
            node_id: None,
            identity_id: replica.identity_id.clone(),
            cursor: replica.cursor,
            caught_up: false,
        };
        let (events, first_events) = broadcast::channel(EVENT_CAPACITY);
        let shared = Arc::new(Shared {
            cfg,
            state: Mutex::new(State {
                replica,
                waiters: BTreeMap::new(),
                stopped: None,
            }),
            events,
            counters: Counters::default(),
            status: watch::Sender::new(status),
            control: watch::Sender::new(Control {
                online: true,
                stop: false,
            }),
            wake: Notify::new(),
            dirty: Notify::new(),
            store,
        });
        let flusher = shared
            .store
            .is_some()
            .then(|| tokio::spawn(task::flusher(shared.clone())));
        let task = tokio::spawn(task::run(shared.clone(), connector));
        Ok((
            SyncClient {
                shared,
                task: Some(task),
                flusher,
            },
            first_events,
        ))
    }

    /// Sets `key` of `dataset` to `value`; returns once the server
    /// acknowledged it (or a resolver dropped it). Offline, it waits in the
    /// queue until the client reconnects.
    pub async fn put(&self, dataset: &str, key: &str, value: &str) -> Result<WriteOutcome, SyncClientError> {
        self.write(dataset, vec![Patch::replace(key, value)]).await
    }

    /// Removes `key` of `dataset`, like [`SyncClient::put`].
    pub async fn remove(&self, dataset: &str, key: &str) -> Result<WriteOutcome, SyncClientError> {
        self.write(dataset, vec![Patch::remove(key)]).await
    }

    /// Writes `patches` to `dataset` all or nothing, like
    /// [`SyncClient::put`].
    pub async fn write(&self, dataset: &str, patches: Vec<Patch>) -> Result<WriteOutcome, SyncClientError> {
        let (_, rx) = self.queue(dataset, patches, true).await?;
        match rx {
            Some(rx) => rx
                .await
                .unwrap_or_else(|_| Err(SyncClientError::Stopped("the client stopped".into()))),
            None => Err(SyncClientError::Stopped("the client stopped".into())),
        }
    }

    /// Queues `patches` for `dataset` and returns at once (after the queue
    /// is on disk, with a file store). The outcome comes as
    /// [`Event::Acked`], [`Event::Conflict`] or [`Event::WriteRejected`].
    pub async fn enqueue(&self, dataset: &str, patches: Vec<Patch>) -> Result<WriteId, SyncClientError> {
        self.queue(dataset, patches, false).await.map(|(id, _)| id)
    }

    async fn queue(
        &self,
        dataset: &str,
        patches: Vec<Patch>,
        wait: bool,
    ) -> Result<
        (
            WriteId,
            Option<oneshot::Receiver<Result<WriteOutcome, SyncClientError>>>,
        ),
        SyncClientError,
    > {
        validate_existing_dataset_name(dataset).map_err(|e| SyncClientError::Invalid(e.reason))?;
        if patches.is_empty() {
            return Err(SyncClientError::Invalid("a write needs at least one patch".into()));
        }
        let checked: Vec<RecordPatch> = patches
            .iter()
            .map(|p| RecordPatch {
                op: if p.value.is_some() {
                    PatchOp::Replace
                } else {
                    PatchOp::Remove
                },
                key: p.key.clone(),
                value: p.value.clone(),
                sync_count: 0,
                device_last_modified_date: 0,
            })
            .collect();
        validate_patches(&checked, &SyncLimits::default()).map_err(|e| SyncClientError::Invalid(e.reason))?;
        let (id, rx) = {
            let mut st = self.shared.lock();
            if let Some(reason) = &st.stopped {
                return Err(SyncClientError::Stopped(reason.clone()));
            }
            let id = st.replica.enqueue(dataset, patches, crate::clock::now_millis());
            let rx = wait.then(|| {
                let (tx, rx) = oneshot::channel();
                st.waiters.entry(id).or_default().push(tx);
                rx
            });
            (id, rx)
        };
        if let Err(e) = self.shared.flush().await {
            // Not durable: take it back rather than promise it.
            let mut st = self.shared.lock();
            st.replica.finish(id, &BTreeMap::new(), None);
            st.waiters.remove(&id);
            return Err(e);
        }
        self.shared.wake.notify_one();
        Ok((id, rx))
    }

    /// The value of `key` as this device sees it: its own latest queued
    /// edit, else the server's. `None` if unset or removed.
    pub fn get(&self, dataset: &str, key: &str) -> Option<String> {
        self.shared.lock().replica.local_value(dataset, key)
    }

    /// The record of `key` as the server confirmed it (a removed one has no
    /// value).
    pub fn record(&self, dataset: &str, key: &str) -> Option<Record> {
        self.shared.lock().replica.record(dataset, key).cloned()
    }

    /// Every record of `dataset` as the server confirmed them, by key,
    /// removed ones (no value) included, as `ListRecords` returns them.
    pub fn records(&self, dataset: &str) -> Vec<Record> {
        self.shared
            .lock()
            .replica
            .datasets
            .get(dataset)
            .map(|d| d.records.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The confirmed values of `dataset`, removed records left out.
    pub fn values(&self, dataset: &str) -> BTreeMap<String, String> {
        self.shared
            .lock()
            .replica
            .datasets
            .get(dataset)
            .map(|d| {
                d.records
                    .values()
                    .filter_map(|r| r.value.clone().map(|v| (r.key.clone(), v)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The datasets of the copy, by name.
    pub fn datasets(&self) -> Vec<DatasetInfo> {
        self.shared
            .lock()
            .replica
            .datasets
            .iter()
            .map(|(name, d)| {
                let live = d.records.values().filter(|r| r.value.is_some()).count();
                DatasetInfo {
                    name: name.clone(),
                    sync_count: d.sync_count,
                    records: live,
                    deleted: d.records.len() - live,
                }
            })
            .collect()
    }

    /// The cursor of the last change in the copy.
    pub fn cursor(&self) -> Option<Cursor> {
        self.shared.lock().replica.cursor
    }

    /// The identity the copy belongs to, once a server said.
    pub fn identity_id(&self) -> Option<String> {
        self.shared.lock().replica.identity_id.clone()
    }

    /// Writes queued and not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.shared.lock().replica.pending.len()
    }

    /// A new subscription to the client's events (see [`Event`]); events
    /// from before the call are not replayed.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Where the client is now.
    pub fn status(&self) -> Status {
        self.shared.status.borrow().clone()
    }

    /// Follows [`SyncClient::status`] as it changes.
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.shared.status.subscribe()
    }

    /// Goes offline (`false`: the session is closed and no other is
    /// started; writes queue up) or back online (`true`).
    pub fn set_online(&self, online: bool) {
        self.shared.control.send_modify(|c| c.online = online);
    }

    /// Waits until `pred` holds for the status, at most `timeout`.
    pub async fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl FnMut(&Status) -> bool,
    ) -> Result<Status, SyncClientError> {
        let mut rx = self.shared.status.subscribe();
        let found = tokio::time::timeout(timeout, async { rx.wait_for(pred).await.map(|s| s.clone()) }).await;
        match found {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(_)) => Err(SyncClientError::Stopped("the client stopped".into())),
            Err(_) => Err(SyncClientError::Timeout(what.to_string())),
        }
    }

    /// Waits until the copy is at `cursor` or later (same epoch).
    pub async fn wait_until(&self, cursor: Cursor, timeout: Duration) -> Result<Cursor, SyncClientError> {
        let s = self
            .wait_status(&format!("cursor {cursor:?}"), timeout, |s| {
                s.cursor.is_some_and(|c| c.epoch == cursor.epoch && c.seq >= cursor.seq)
            })
            .await?;
        Ok(s.cursor.unwrap_or(cursor))
    }

    /// Waits until a session is caught up.
    pub async fn wait_caught_up(&self, timeout: Duration) -> Result<Status, SyncClientError> {
        self.wait_status("a caught-up session", timeout, |s| s.caught_up).await
    }

    /// Waits until no write is queued.
    pub async fn wait_idle(&self, timeout: Duration) -> Result<(), SyncClientError> {
        let deadline = crate::clock::instant() + timeout;
        loop {
            if self.pending() == 0 {
                return Ok(());
            }
            if crate::clock::instant() >= deadline {
                return Err(SyncClientError::Timeout(format!("{} queued writes", self.pending())));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the client: closes the session (code `DONE`), rewrites the
    /// file store, and waits for both. Queued writes stay in a file store
    /// for the next start; their callers get [`SyncClientError::Stopped`].
    pub async fn shutdown(mut self) -> Result<(), SyncClientError> {
        self.shared.control.send_modify(|c| c.stop = true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        if let Some(f) = self.flusher.take() {
            let _ = f.await;
        }
        self.shared.fail_waiters("the client was shut down");
        self.shared.flush().await
    }
}

impl Drop for SyncClient {
    fn drop(&mut self) {
        self.shared.control.send_modify(|c| c.stop = true);
    }
}
