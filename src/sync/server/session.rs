//! One device connection: the protocol's state machine
//! (docs/sync-protocol.md), from the first stream to the Goodbye.
//!
//! A session is one task, which owns the control stream's two halves:
//!
//! * it **reads** frames with a [`FrameReader`], each under the node's
//!   [`FrameBudget`], one at a time; a write takes one of the session's
//!   write slots first, and while none is free the session reads nothing,
//!   so a device that sends faster than it is served is held back by QUIC
//!   flow control, not buffered;
//! * it **writes** from a small queue ([`WRITER_QUEUE`] frames). A device
//!   that stops reading fills its QUIC send window, then the queue, and
//!   then only its own session waits;
//! * between the two it serves Hello, Subscribe, writes, pings, live
//!   changes, timers and shutdown. It takes the next change (from the
//!   store or the hub) only when the queue has room, so what a slow device
//!   costs is bounded by the hub's queue for it; when that overflows, the
//!   feed resyncs from the store.
//!
//! One task rather than a reader and a writer task joined by channels:
//! an idle session then holds no channel blocks and no extra tasks, which
//! is most of what ten thousand idle devices would otherwise cost.
//!
//! Writes run as their own tasks (at most [`WRITES_IN_FLIGHT`]); their
//! answers come back to the session through [`Answers`], with the device's
//! `request_id`. A write that came
//! before the TLS handshake completed (0-RTT data, which an attacker may
//! have replayed) is held until it completes.
//!
//! The session never logs a token: the span carries the remote address,
//! then the identity and device ids.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::Poll;

use tokio::sync::{watch, Notify};
use tokio::time::{sleep_until, timeout_at, Instant};
use tracing::Instrument;

use super::convert;
use super::feed::{Feed, StoreSource};
use super::limits::{ConnectionLimits, IdentitySlot, NodeSlot};
use super::quic::{Connection, Handshake, Incoming, RecvStream, SendStream, StreamError};
use crate::metrics::Metrics;
use crate::model::sync::{validate_device_id, validate_existing_dataset_name};
use crate::proto::device_hello::Credential;
use crate::proto::server_frame::Msg;
use crate::proto::sync_write_result::Result as WriteResult;
use crate::proto::{device_frame, DeviceFrame, DeviceHello, DeviceSubscribe, DeviceWrite};
use crate::proto::{SyncConflict, SyncGoodbye, SyncPong, SyncWelcome, SyncWriteResult};
use crate::service::identity::callers::ProvenIdentity;
use crate::service::sync::{Caller, IdentityFate, SyncService, WriteOutcome};
use crate::service::{ErrorKind, ServiceError};
use crate::sync::close::CloseCode;
use crate::sync::frame::{encode_frame, FrameBudget, FrameError, FrameLease, FrameReader, PROTOCOL_VERSION};
use crate::sync::hub::{Delivery, Subscription};

/// Frames a session queues for its device. Small: the QUIC send window is
/// the real buffer, and every frame queued here is memory a slow device
/// holds.
pub const WRITER_QUEUE: usize = 4;
/// Writes of one session in flight at once; the reader stops reading (and
/// QUIC flow control stops the device) while all are taken.
pub const WRITES_IN_FLIGHT: usize = 8;
/// How long a closing session waits for its Goodbye to reach the device.
const GOODBYE_GRACE: Duration = Duration::from_secs(2);
/// Longest close reason sent (it must fit one packet with room to spare).
const MAX_REASON_BYTES: usize = 400;
/// The largest first frame (the Hello: a token is at most 16 KiB). It is
/// read without the node's frame budget, so that connections that have
/// proven nothing cannot take that budget from the devices that have
/// (announce large frames, send their bodies slowly, and every other
/// device's frames would wait); what it costs instead is bounded per
/// connection, like the QUIC receive window.
pub const MAX_HELLO_BYTES: u32 = 64 * 1024;

/// What every session of a node shares.
pub struct Shared {
    /// Reads, writes and token checks.
    pub service: SyncService,
    /// Node-wide bound on bytes of frames being read or held.
    pub budget: FrameBudget,
    /// Connection slots.
    pub limits: Arc<ConnectionLimits>,
    /// The largest frame either side may send.
    pub max_frame_bytes: u32,
    /// How long a connection may take to send its Hello.
    pub hello_timeout: Duration,
    /// Counters and gauges.
    pub metrics: Arc<Metrics>,
}

/// How a session ends.
#[derive(Debug)]
enum Exit {
    /// Say Goodbye with this code and reason, then close.
    Close(CloseCode, String),
    /// The connection is gone already; nothing to say.
    Lost,
}

fn close(code: CloseCode, reason: impl Into<String>) -> Exit {
    Exit::Close(code, reason.into())
}

fn internal(e: &ServiceError) -> Exit {
    tracing::error!(error = %e, "sync session failed");
    close(CloseCode::Internal, format!("{}: {}", e.exception, e.message))
}

/// A frame as the session read it: the frame, its share of the node's
/// frame budget, and for a write its write slot.
struct InFrame {
    frame: DeviceFrame,
    lease: FrameLease,
    slot: Option<WriteSlot>,
}

/// What reading the control stream brought.
enum Inbound {
    /// A frame.
    Frame(InFrame),
    /// The device finished its stream between frames.
    End,
    /// The stream failed or carried something that is not a frame.
    Failed(FrameError),
}

/// What a session shares with its write tasks: their count, and their
/// answers on the way back. One allocation per session, and its queue
/// holds nothing while no write is in flight.
struct Answers {
    /// Write slots taken ([`WriteSlot`]s alive).
    in_flight: AtomicUsize,
    ready: Mutex<VecDeque<Answer>>,
    /// Wakes the session when an answer arrives or a slot frees.
    notify: Notify,
}

/// One of the session's [`WRITES_IN_FLIGHT`] write slots, from the frame
/// being read until its answer is queued for the device. Freeing it (by
/// any path, a failed task included) wakes the session, which may be
/// waiting for a slot to read the next write.
struct WriteSlot(Arc<Answers>);

impl Drop for WriteSlot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.notify.notify_one();
    }
}

/// A write's answer. It keeps the write's frame lease and write slot until
/// the session has room to queue it for the device, so a device that sends
/// writes and never reads stops being read.
struct Answer {
    bytes: Vec<u8>,
    _lease: FrameLease,
    _slot: WriteSlot,
}

impl Answers {
    fn new() -> Arc<Self> {
        Arc::new(Answers {
            in_flight: AtomicUsize::new(0),
            ready: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
        })
    }

    /// A write slot, if one is free. Only the session takes slots, so the
    /// count can only fall between the check and the increment.
    fn try_slot(self: &Arc<Self>) -> Option<WriteSlot> {
        if self.in_flight.load(Ordering::Acquire) >= WRITES_IN_FLIGHT {
            return None;
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(WriteSlot(self.clone()))
    }

    fn push(&self, a: Answer) {
        self.ready.lock().unwrap_or_else(|p| p.into_inner()).push_back(a);
        self.notify.notify_one();
    }

    fn pop(&self) -> Option<Answer> {
        let mut q = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        let a = q.pop_front();
        if q.is_empty() {
            // Back to holding nothing.
            *q = VecDeque::new();
        }
        a
    }
}

/// The proven device of a session.
struct Who {
    caller: Caller,
    identity_pool_id: String,
    identity_id: String,
    device_id: String,
}

/// Session state once the Hello was accepted.
struct Device {
    who: Arc<Who>,
    expires: Instant,
    hub: Subscription,
    feed: Option<Feed>,
    _slot: IdentitySlot,
}

/// A write that waits for the handshake (it came as 0-RTT data).
struct HeldWrite {
    write: DeviceWrite,
    lease: FrameLease,
    slot: WriteSlot,
}

/// Waits until `stop` says true (or its sender is gone).
pub(super) async fn wait_stop(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn handshake_done(h: &mut Option<Handshake>) -> bool {
    match h {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The time left until a credential's expiry (Unix seconds) at `now_secs`;
/// zero when it is past.
pub fn time_left(expires_at: i64, now_secs: i64) -> Duration {
    Duration::from_secs(u64::try_from(expires_at.saturating_sub(now_secs)).unwrap_or(0))
}

/// Serves one incoming connection, holding `slot` until it is closed.
pub(super) async fn serve(shared: Arc<Shared>, incoming: Incoming, slot: NodeSlot, stop: watch::Receiver<bool>) {
    let remote = incoming.remote_address();
    let hello_deadline = Instant::now() + shared.hello_timeout;
    // A server's 0.5-RTT connection: usable at once (a resumed device's
    // 0-RTT Hello is read without waiting), with the handshake's end
    // reported by `accepted`.
    let conn = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "sync handshake refused");
            return;
        }
    };
    let accepted = Some(conn.handshake());
    let span = tracing::info_span!(
        "sync_session",
        %remote,
        conn = conn.stable_id(),
        identity_id = tracing::field::Empty,
        device_id = tracing::field::Empty
    );
    run(shared, conn, accepted, hello_deadline, stop, remote)
        .instrument(span)
        .await;
    drop(slot);
}

/// The control stream: the device's first bidirectional stream (`None`,
/// having closed the connection, if none comes in time).
async fn control_stream(
    shared: &Shared,
    conn: &Connection,
    hello_deadline: Instant,
    stop: &mut watch::Receiver<bool>,
) -> Option<(SendStream, RecvStream)> {
    tokio::select! {
        biased;
        _ = wait_stop(stop) => {
            conn.close(CloseCode::ShuttingDown.var_int(), b"the node is stopping; reconnect to another node");
            None
        }
        _ = sleep_until(hello_deadline) => {
            shared.metrics.sync_frames_refused.inc();
            let reason = format!("no Hello within {} ms", shared.hello_timeout.as_millis());
            tracing::info!(%reason, "closing sync connection");
            conn.close(CloseCode::HelloTimeout.var_int(), reason.as_bytes());
            None
        }
        s = conn.accept_bi() => s.ok(),
        s = conn.accept_uni() => {
            if s.is_ok() {
                conn.close(CloseCode::Protocol.var_int(), b"the device protocol has no unidirectional streams");
            }
            None
        }
    }
}

async fn run(
    shared: Arc<Shared>,
    conn: Connection,
    accepted: Option<Handshake>,
    hello_deadline: Instant,
    mut stop: watch::Receiver<bool>,
    remote: SocketAddr,
) {
    // Boxed: waiting for the control stream is brief, and what it awaits
    // need not take room in the session's task for the session's life.
    let Some((send, recv)) = Box::pin(control_stream(&shared, &conn, hello_deadline, &mut stop)).await else {
        return;
    };
    tracing::debug!(%remote, "sync control stream open");
    let mut session = Session {
        shared,
        conn,
        send,
        recv,
        reader: FrameReader::default(),
        first_frame: true,
        waiting: None,
        out: VecDeque::new(),
        written: 0,
        answers: Answers::new(),
        handshake: accepted,
        held: Vec::new(),
        device: None,
        hello_deadline,
        stop,
    };
    let exit = session.run().await;
    Box::pin(session.finish(exit)).await;
}

struct Session {
    shared: Arc<Shared>,
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    /// The frame being read, kept across the loop's turns.
    reader: FrameReader,
    /// The next frame is the first (the Hello, read without the budget).
    first_frame: bool,
    /// A write that was read while every write slot was taken.
    waiting: Option<Box<InFrame>>,
    /// Frames for the device, oldest first, at most [`WRITER_QUEUE`] (and
    /// the Goodbye).
    out: VecDeque<Vec<u8>>,
    /// Bytes of the oldest queued frame already on the stream.
    written: usize,
    answers: Arc<Answers>,
    /// Until the TLS handshake completes: writes wait for it.
    handshake: Option<Handshake>,
    held: Vec<HeldWrite>,
    device: Option<Device>,
    hello_deadline: Instant,
    stop: watch::Receiver<bool>,
}

/// The next frame from the device (or the stream's end or failure); the
/// first (the Hello) is read without the node's budget. Cancel-safe: the
/// [`FrameReader`] keeps what arrived. A poll rather than an `async fn`,
/// so an idle session's task holds no reading state but the reader.
fn read_next<'a>(
    reader: &'a mut FrameReader,
    recv: &'a mut RecvStream,
    first: bool,
    shared: &'a Shared,
) -> impl Future<Output = Result<Option<(DeviceFrame, FrameLease)>, FrameError>> + 'a {
    let (max, budget) = if first {
        (shared.max_frame_bytes.min(MAX_HELLO_BYTES), None)
    } else {
        (shared.max_frame_bytes, Some(&shared.budget))
    };
    poll_fn(move |cx| reader.poll_next(cx, recv, max, budget))
}

/// Puts more of the oldest queued frame on the stream; the number of
/// bytes. Never resolves while nothing is queued.
fn write_some<'a>(
    send: &'a mut SendStream,
    out: &'a VecDeque<Vec<u8>>,
    written: usize,
) -> impl Future<Output = Result<usize, StreamError>> + 'a {
    poll_fn(move |cx| match out.front() {
        Some(f) => send.poll_write(cx, &f[written..]),
        None => Poll::Pending,
    })
}

impl Session {
    fn has_room(&self) -> bool {
        self.out.len() < WRITER_QUEUE
    }

    /// Records `n` more bytes of the oldest frame as written.
    fn wrote(&mut self, n: usize) {
        self.written += n;
        if self.out.front().is_some_and(|f| self.written >= f.len()) {
            self.out.pop_front();
            self.written = 0;
            if self.out.is_empty() {
                // An idle session holds no queue.
                self.out = VecDeque::new();
            }
        }
    }

    /// Moves write answers into the queue while it has room.
    fn take_answers(&mut self) {
        while self.has_room() {
            let Some(a) = self.answers.pop() else { return };
            self.out.push_back(a.bytes);
        }
    }

    async fn run(&mut self) -> Exit {
        loop {
            self.take_answers();
            if let Some(f) = self.waiting.take() {
                // A write waits for a slot; taking answers may have freed one.
                match self.answers.try_slot() {
                    Some(slot) => {
                        let mut f = *f;
                        f.slot = Some(slot);
                        if let Err(exit) = Box::pin(self.on_inbound(Inbound::Frame(f))).await {
                            return exit;
                        }
                        continue;
                    }
                    None => self.waiting = Some(f),
                }
            }
            let feed = self.device.as_ref().and_then(|d| d.feed.as_ref());
            let backlog = feed.is_some_and(Feed::has_backlog);
            let live = feed.is_some() && !backlog;
            let room = self.has_room();
            // One timer: the credential's expiry once there is a device,
            // the Hello's deadline before.
            let deadline = self.device.as_ref().map_or(self.hello_deadline, |d| d.expires);
            // Changes are taken from the hub only when what they produce
            // can be queued (before the feed exists they produce nothing).
            let hub = self
                .device
                .as_ref()
                .filter(|_| !backlog && (room || !live))
                .map(|d| &d.hub);
            let reading = self.waiting.is_none();
            tokio::select! {
                biased;
                _ = wait_stop(&mut self.stop) => {
                    return close(CloseCode::ShuttingDown, "the node is stopping; reconnect to another node");
                }
                _ = sleep_until(deadline) => {
                    if self.device.is_some() {
                        return self.expired();
                    }
                    self.shared.metrics.sync_frames_refused.inc();
                    return close(
                        CloseCode::HelloTimeout,
                        format!("no Hello within {} ms", self.shared.hello_timeout.as_millis()),
                    );
                }
                _ = handshake_done(&mut self.handshake), if self.handshake.is_some() => {
                    self.handshake = None;
                    for w in std::mem::take(&mut self.held) {
                        self.spawn_write(w);
                    }
                }
                s = self.conn.accept_bi() => {
                    return match s {
                        Ok(_) => {
                            self.shared.metrics.sync_frames_refused.inc();
                            close(CloseCode::Protocol, "a second stream: the device protocol uses exactly one")
                        }
                        Err(_) => Exit::Lost,
                    };
                }
                s = self.conn.accept_uni() => {
                    return match s {
                        Ok(_) => close(CloseCode::Protocol, "the device protocol has no unidirectional streams"),
                        Err(_) => Exit::Lost,
                    };
                }
                w = write_some(&mut self.send, &self.out, self.written), if !self.out.is_empty() => {
                    match w {
                        Ok(n) => self.wrote(n),
                        Err(_) => return Exit::Lost,
                    }
                }
                _ = self.answers.notify.notified() => {}
                m = read_next(&mut self.reader, &mut self.recv, self.first_frame, &self.shared), if reading => {
                    let m = match m {
                        Ok(Some((frame, lease))) => {
                            self.first_frame = false;
                            let mut f = InFrame { frame, lease, slot: None };
                            if matches!(f.frame.msg, Some(device_frame::Msg::Write(_))) {
                                match self.answers.try_slot() {
                                    Some(slot) => f.slot = Some(slot),
                                    None => {
                                        // Read nothing more until an answer
                                        // is taken and frees a slot.
                                        self.waiting = Some(Box::new(f));
                                        continue;
                                    }
                                }
                            }
                            Inbound::Frame(f)
                        }
                        Ok(None) => Inbound::End,
                        Err(e) => Inbound::Failed(e),
                    };
                    // Boxed: what a frame's handling awaits (a token check,
                    // a Welcome) lives on the heap only while it runs, so
                    // an idle session's future stays small.
                    if let Err(exit) = Box::pin(self.on_inbound(m)).await {
                        return exit;
                    }
                }
                _ = std::future::ready(()), if backlog && room => {
                    match self.next_backlog() {
                        Ok(Some(bytes)) => self.out.push_back(bytes),
                        Ok(None) => {}
                        Err(exit) => return exit,
                    }
                }
                d = recv_from(hub), if hub.is_some() => {
                    if let Err(exit) = self.on_delivery(d) {
                        return exit;
                    }
                }
            }
        }
    }

    fn expired(&self) -> Exit {
        close(
            CloseCode::CredentialsExpired,
            "the credential expired: get new credentials (or a new access token) and reconnect with the cursor",
        )
    }

    fn encode(&self, msg: Msg) -> Result<Vec<u8>, Exit> {
        encode_frame(&convert::frame(msg), self.shared.max_frame_bytes).map_err(|e| {
            tracing::error!(error = %e, "a frame is larger than sync.max_frame_bytes");
            close(
                CloseCode::Internal,
                format!("the server cannot send a frame this large ({e}); raise sync.max_frame_bytes"),
            )
        })
    }

    /// Queues one frame for the device, writing while the queue is full,
    /// and giving up on shutdown, expiry or a lost connection instead of
    /// waiting on a device that stopped reading.
    async fn send(&mut self, msg: Msg) -> Result<(), Exit> {
        let bytes = self.encode(msg)?;
        while !self.has_room() {
            let expires = self.device.as_ref().map(|d| d.expires);
            tokio::select! {
                w = write_some(&mut self.send, &self.out, self.written) => match w {
                    Ok(n) => self.wrote(n),
                    Err(_) => return Err(Exit::Lost),
                },
                _ = wait_stop(&mut self.stop) => {
                    return Err(close(CloseCode::ShuttingDown, "the node is stopping; reconnect to another node"));
                }
                _ = sleep_until(expires.unwrap_or(self.hello_deadline)), if expires.is_some() => {
                    return Err(self.expired());
                }
                _ = self.conn.closed() => return Err(Exit::Lost),
            }
        }
        self.out.push_back(bytes);
        Ok(())
    }

    async fn on_inbound(&mut self, m: Inbound) -> Result<(), Exit> {
        let refused = |code, reason: String| {
            self.shared.metrics.sync_frames_refused.inc();
            Err(close(code, reason))
        };
        let (frame, lease, slot) = match m {
            Inbound::End => return Err(close(CloseCode::Done, "the device ended its stream")),
            Inbound::Failed(FrameError::TooLarge { len, max }) => {
                let bound = if self.device.is_none() {
                    format!("a first frame (the Hello) may be at most {max}")
                } else {
                    format!("max_frame_bytes is {max}")
                };
                return refused(
                    CloseCode::FrameTooLarge,
                    format!("a frame of {len} bytes is too large: {bound}"),
                );
            }
            Inbound::Failed(FrameError::Decode(e)) => {
                return refused(CloseCode::Protocol, format!("a frame that is not a DeviceFrame: {e}"))
            }
            Inbound::Failed(FrameError::Truncated) => {
                return refused(CloseCode::Protocol, "the stream ended inside a frame".into())
            }
            Inbound::Failed(FrameError::Empty) => return refused(CloseCode::Protocol, "an empty frame".into()),
            Inbound::Failed(FrameError::Io(e)) => {
                if self.conn.close_reason().is_some() {
                    return Err(Exit::Lost);
                }
                return refused(CloseCode::Protocol, format!("the control stream failed: {e}"));
            }
            Inbound::Frame(InFrame { frame, lease, slot }) => (frame, lease, slot),
        };
        match frame.msg {
            None => refused(
                CloseCode::Protocol,
                "an empty DeviceFrame, or a message this server does not know".into(),
            ),
            Some(device_frame::Msg::Hello(h)) => {
                if self.device.is_some() {
                    return refused(CloseCode::Protocol, "a second Hello".into());
                }
                self.on_hello(h).await
            }
            Some(_) if self.device.is_none() => {
                refused(CloseCode::Protocol, "the first frame must be a DeviceHello".into())
            }
            Some(device_frame::Msg::Subscribe(s)) => self.on_subscribe(s),
            Some(device_frame::Msg::Write(w)) => {
                let Some(slot) = slot else {
                    return Err(close(CloseCode::Internal, "a write without a write slot"));
                };
                let held = HeldWrite { write: w, lease, slot };
                if self.handshake.is_some() {
                    self.held.push(held);
                } else {
                    self.spawn_write(held);
                }
                Ok(())
            }
            Some(device_frame::Msg::Ping(p)) => self.send(Msg::Pong(SyncPong { nonce: p.nonce })).await,
        }
    }

    async fn on_hello(&mut self, h: DeviceHello) -> Result<(), Exit> {
        if h.version != PROTOCOL_VERSION {
            return Err(close(
                CloseCode::UnsupportedVersion,
                format!(
                    "this server speaks device protocol version {PROTOCOL_VERSION}, not {}",
                    h.version
                ),
            ));
        }
        let token = match h.credential {
            Some(Credential::Credentials(t)) | Some(Credential::AccessToken(t)) if !t.is_empty() => t,
            _ => {
                return Err(close(
                    CloseCode::Unauthenticated,
                    "a Hello needs the identity's credentials or an access token",
                ))
            }
        };
        if let Err(e) = validate_device_id(&h.device_id) {
            self.shared.metrics.sync_frames_refused.inc();
            return Err(close(CloseCode::Protocol, e.to_string()));
        }
        let proven = self.authenticate(&token, &h.identity_pool_id).await?;
        drop(token);
        let now = crate::clock::now_millis() / 1000;
        if proven.expires_at <= now {
            return Err(close(CloseCode::Unauthenticated, "the credential has expired"));
        }
        if !h.identity_pool_id.is_empty() && h.identity_pool_id != proven.identity_pool_id {
            return Err(close(
                CloseCode::Unauthenticated,
                format!(
                    "the credential is for identity pool {}, not {}",
                    proven.identity_pool_id, h.identity_pool_id
                ),
            ));
        }
        let span = tracing::Span::current();
        span.record("identity_id", proven.identity_id.as_str());
        span.record("device_id", h.device_id.as_str());
        let Some(slot) = self.shared.limits.try_identity(&proven.identity_id) else {
            self.shared.metrics.sync_connections_refused.inc();
            return Err(close(
                CloseCode::TooManyConnections,
                format!(
                    "identity {} already has {} device sessions on this node (sync.max_connections_per_identity); \
                     close one, or try another node",
                    proven.identity_id,
                    self.shared.limits.max_per_identity()
                ),
            ));
        };
        // Subscribed before anything is read from the store, so no change
        // can fall between what the store shows and what the hub brings.
        let hub = self.shared.service.hub().subscribe(&proven.identity_id);
        let state = self
            .shared
            .service
            .state(&proven.identity_pool_id, &proven.identity_id)
            .map_err(|e| internal(&e))?;
        let cursor = state
            .map(|s| s.cursor())
            .unwrap_or(crate::model::sync::Cursor { epoch: 0, seq: 0 });
        let welcome = SyncWelcome {
            identity_pool_id: proven.identity_pool_id.clone(),
            identity_id: proven.identity_id.clone(),
            expires_at: proven.expires_at,
            cursor: Some(convert::cursor(cursor)),
            node_id: self.shared.service.node_id(),
            max_frame_bytes: self.shared.max_frame_bytes,
        };
        let expires = Instant::now() + time_left(proven.expires_at, now);
        tracing::info!(expires_at = proven.expires_at, "device session open");
        self.device = Some(Device {
            who: Arc::new(Who {
                caller: Caller::Identity(proven.clone()),
                identity_pool_id: proven.identity_pool_id,
                identity_id: proven.identity_id,
                device_id: h.device_id,
            }),
            expires,
            hub,
            feed: None,
            _slot: slot,
        });
        self.send(Msg::Welcome(welcome)).await
    }

    /// The identity a Hello's token proves; an admin token is refused.
    async fn authenticate(&self, token: &str, identity_pool_id: &str) -> Result<ProvenIdentity, Exit> {
        // Boxed: checking a token is the deepest call a session makes, and
        // its state would otherwise sit in every idle session's task.
        match Box::pin(self.shared.service.authenticate(token, identity_pool_id)).await {
            Ok(Caller::Identity(p)) => Ok(p),
            Ok(Caller::Admin) => Err(close(
                CloseCode::Unauthenticated,
                "an admin token cannot open a device session: use the identity's credentials or a user's access token",
            )),
            Err(e) => match e.kind {
                ErrorKind::Unavailable | ErrorKind::Internal | ErrorKind::OutcomeUnknown => Err(close(
                    CloseCode::Internal,
                    format!("the credential could not be checked now ({}); retry", e.message),
                )),
                _ => {
                    tracing::info!(exception = e.exception, reason = %e.message, "device credential refused");
                    Err(close(CloseCode::Unauthenticated, e.message))
                }
            },
        }
    }

    fn on_subscribe(&mut self, s: DeviceSubscribe) -> Result<(), Exit> {
        let dataset = if s.dataset_name.is_empty() {
            None
        } else {
            if let Err(e) = validate_existing_dataset_name(&s.dataset_name) {
                self.shared.metrics.sync_frames_refused.inc();
                return Err(close(CloseCode::Protocol, e.to_string()));
            }
            Some(s.dataset_name)
        };
        let Some(d) = self.device.as_mut() else {
            return Err(close(CloseCode::Protocol, "the first frame must be a DeviceHello"));
        };
        // The feed reads the store now: what the hub dropped before is in
        // it, but an IdentityGone dropped with it is not.
        if d.hub.take_overflow() {
            self.fate()?;
        }
        let Some(d) = self.device.as_mut() else {
            return Err(Exit::Lost);
        };
        let who = d.who.clone();
        let src = StoreSource {
            service: &self.shared.service,
            identity_pool_id: &who.identity_pool_id,
            identity_id: &who.identity_id,
        };
        let cursor = s.cursor.as_ref().map(convert::cursor_from);
        d.feed = Some(Feed::subscribe(dataset, cursor, &src).map_err(|e| internal(&e))?);
        Ok(())
    }

    /// Closes the session if its identity is gone (its `IdentityGone`
    /// may have been dropped with an overflowed queue).
    fn fate(&self) -> Result<(), Exit> {
        let Some(d) = self.device.as_ref() else { return Ok(()) };
        match self.shared.service.identity_fate(&d.who.identity_id) {
            Ok(IdentityFate::Live) => Ok(()),
            Ok(IdentityFate::Deleted) => Err(gone(&d.who.identity_id, None)),
            Ok(IdentityFate::MergedInto(s)) => Err(gone(&d.who.identity_id, Some(&s))),
            Err(e) => Err(internal(&e)),
        }
    }

    fn next_backlog(&mut self) -> Result<Option<Vec<u8>>, Exit> {
        let Some(d) = self.device.as_mut() else { return Ok(None) };
        let Some(feed) = d.feed.as_mut() else { return Ok(None) };
        let who = d.who.clone();
        let src = StoreSource {
            service: &self.shared.service,
            identity_pool_id: &who.identity_pool_id,
            identity_id: &who.identity_id,
        };
        let hub = &d.hub;
        let mut overflowed = || hub.take_overflow();
        match feed.next_backlog(&src, &mut overflowed) {
            Ok(Some(msg)) => self.encode(msg).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(internal(&e)),
        }
    }

    fn on_delivery(&mut self, d: Delivery) -> Result<(), Exit> {
        let Some(dev) = self.device.as_ref() else { return Ok(()) };
        let who = dev.who.clone();
        match d {
            Delivery::Event(crate::model::sync::SyncEvent::IdentityGone { merged_into, .. }) => {
                Err(gone(&who.identity_id, merged_into.as_deref()))
            }
            Delivery::Overflowed => {
                self.shared.metrics.sync_resyncs.inc();
                self.fate()?;
                let src = StoreSource {
                    service: &self.shared.service,
                    identity_pool_id: &who.identity_pool_id,
                    identity_id: &who.identity_id,
                };
                if let Some(feed) = self.device.as_mut().and_then(|d| d.feed.as_mut()) {
                    tracing::debug!(from = feed.last().seq, "the device read too slowly: resync");
                    feed.resync(
                        &src,
                        "the device read too slowly and the server dropped its queue; changes after the cursor follow from the store",
                    )
                    .map_err(|e| internal(&e))?;
                }
                Ok(())
            }
            Delivery::Event(crate::model::sync::SyncEvent::Change(c)) => {
                let src = StoreSource {
                    service: &self.shared.service,
                    identity_pool_id: &who.identity_pool_id,
                    identity_id: &who.identity_id,
                };
                let Some(feed) = self.device.as_mut().and_then(|d| d.feed.as_mut()) else {
                    // Not subscribed: the change is in the store for later.
                    return Ok(());
                };
                let msg = feed.on_change(&c, &src).map_err(|e| internal(&e))?;
                if let Some(msg) = msg {
                    // The loop took this change only with room to queue it.
                    let bytes = self.encode(msg)?;
                    self.out.push_back(bytes);
                }
                Ok(())
            }
        }
    }

    /// Runs a write as its own task; its answer comes back through
    /// [`Answers`], with the write's frame lease and write slot.
    fn spawn_write(&self, held: HeldWrite) {
        let Some(d) = self.device.as_ref() else { return };
        let who = d.who.clone();
        let service = self.shared.service.clone();
        let answers = self.answers.clone();
        let max = self.shared.max_frame_bytes;
        tokio::spawn(
            async move {
                let HeldWrite { write, lease, slot } = held;
                let outcome = match convert::patches(&write.patches) {
                    Ok(p) => {
                        service
                            .update_records(
                                &who.caller,
                                &who.identity_pool_id,
                                &who.identity_id,
                                &write.dataset_name,
                                &who.device_id,
                                p,
                            )
                            .await
                    }
                    Err(e) => Err(e),
                };
                let result = match outcome {
                    Ok(WriteOutcome::Written(c)) => WriteResult::Ok(convert::written(&c)),
                    Ok(WriteOutcome::Conflict {
                        records,
                        dataset_sync_count,
                    }) => WriteResult::Conflict(SyncConflict {
                        records: records.iter().map(convert::record).collect(),
                        dataset_sync_count: i64::try_from(dataset_sync_count).unwrap_or(i64::MAX),
                        // A QUIC frame holds them all (max_frame_bytes
                        // holds a whole dataset).
                        omitted_records: 0,
                    }),
                    Err(e) => {
                        tracing::debug!(
                            request_id = write.request_id,
                            exception = e.exception,
                            "device write refused"
                        );
                        WriteResult::Error(convert::error(&e))
                    }
                };
                let answer = |result| {
                    convert::frame(Msg::WriteResult(SyncWriteResult {
                        request_id: write.request_id,
                        result: Some(result),
                    }))
                };
                let bytes = match encode_frame(&answer(result), max) {
                    Ok(b) => b,
                    Err(e) => {
                        let err = ServiceError::internal(format!("the answer is larger than max_frame_bytes: {e}"));
                        match encode_frame(&answer(WriteResult::Error(convert::error(&err))), max) {
                            Ok(b) => b,
                            Err(_) => return,
                        }
                    }
                };
                answers.push(Answer {
                    bytes,
                    _lease: lease,
                    _slot: slot,
                });
            }
            .in_current_span(),
        );
    }

    /// Says Goodbye (bounded by [`GOODBYE_GRACE`]) and closes.
    async fn finish(mut self, exit: Exit) {
        let (code, reason) = match exit {
            Exit::Lost => {
                tracing::debug!("sync connection lost");
                return;
            }
            Exit::Close(code, reason) => (code, truncate(reason, MAX_REASON_BYTES)),
        };
        match code {
            CloseCode::Done | CloseCode::ShuttingDown | CloseCode::CredentialsExpired => {
                tracing::debug!(code = %code, %reason, "closing sync session")
            }
            _ => tracing::info!(code = %code, %reason, "closing sync session"),
        }
        let deadline = Instant::now() + GOODBYE_GRACE;
        let goodbye = convert::frame(Msg::Goodbye(SyncGoodbye {
            code: code.as_u32(),
            reason: reason.clone(),
        }));
        if let Ok(bytes) = encode_frame(&goodbye, self.shared.max_frame_bytes) {
            // Answers of writes that finished go out before the Goodbye.
            while let Some(a) = self.answers.pop() {
                self.out.push_back(a.bytes);
            }
            self.out.push_back(bytes);
            let flushed = timeout_at(deadline, async {
                while !self.out.is_empty() {
                    let n = write_some(&mut self.send, &self.out, self.written).await?;
                    self.wrote(n);
                }
                Ok::<_, StreamError>(())
            })
            .await;
            if let Ok(Ok(())) = flushed {
                if self.send.finish().is_ok() {
                    let _ = timeout_at(deadline, self.send.stopped()).await;
                }
            }
        }
        self.conn.close(code.var_int(), reason.as_bytes());
    }
}

/// The next delivery from the hub, if the session takes any now.
async fn recv_from(hub: Option<&Subscription>) -> Delivery {
    match hub {
        Some(hub) => hub.recv().await,
        None => std::future::pending().await,
    }
}

fn gone(identity_id: &str, survivor: Option<&str>) -> Exit {
    close(
        CloseCode::IdentityGone,
        match survivor {
            Some(s) => format!(
                "identity {identity_id} was merged into {s}: its datasets are now merged datasets of {s}; \
                 get credentials for {s}"
            ),
            None => format!("identity {identity_id} was deleted"),
        },
    )
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_deadline_is_the_time_left_on_the_credential() {
        let now = 1_700_000_000;
        assert_eq!(time_left(now + 90, now), Duration::from_secs(90));
        assert_eq!(time_left(now - 5, now), Duration::ZERO, "a past expiry fires at once");
        assert_eq!(time_left(i64::MIN, i64::MAX), Duration::ZERO);
    }

    #[test]
    fn reasons_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("ééé".into(), 3), "é");
        assert_eq!(truncate("abc".into(), 10), "abc");
    }
}
