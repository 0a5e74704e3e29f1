//! One device connection: the protocol's state machine
//! (docs/sync-protocol.md), from the first stream to the Goodbye.
//!
//! A session is three tasks:
//!
//! * the **reader** owns the receive half of the control stream and
//!   decodes frames, each under the node's [`FrameBudget`]. It hands one
//!   frame at a time to the session, and takes one of the session's write
//!   slots before it hands over a write, so a device that sends faster
//!   than it is served is held back by QUIC flow control, not buffered;
//! * the **writer** owns the send half, fed by a small bounded channel. A
//!   device that stops reading fills its QUIC send window, then the
//!   channel, and then only its own session waits;
//! * the **session** loop below: Hello, Subscribe, writes, pings, live
//!   changes, timers, shutdown. It takes the next change (from the store
//!   or the hub) only when the writer has room, so what a slow device
//!   costs is bounded by the hub's queue for it; when that overflows, the
//!   feed resyncs from the store.
//!
//! Writes run as their own tasks (at most [`WRITES_IN_FLIGHT`]), answered
//! through the writer with the device's `request_id`. A write that came
//! before the TLS handshake completed (0-RTT data, which an attacker may
//! have replayed) is held until it completes.
//!
//! The session never logs a token: the span carries the remote address,
//! then the identity and device ids.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep_until, timeout_at, Instant};
use tracing::Instrument;

use super::convert;
use super::feed::{Feed, StoreSource};
use super::limits::{ConnectionLimits, IdentitySlot, NodeSlot};
use super::quic::{Connection, Handshake, Incoming, RecvStream, SendStream};
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
use crate::sync::frame::{encode_frame, read_frame_leased, FrameBudget, FrameError, FrameLease, PROTOCOL_VERSION};
use crate::sync::hub::{Delivery, Subscription};

/// Frames the writer's channel holds. Small: the QUIC send window is the
/// real buffer, and every frame queued here is memory a slow device holds.
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

/// What the writer task takes.
enum Out {
    /// An encoded frame.
    Frame(Vec<u8>),
    /// Finish the stream once what is queued is sent, wait (bounded) for
    /// the device to acknowledge it, then report.
    Finish(oneshot::Sender<()>),
}

/// A frame as the reader hands it over: the frame, its share of the
/// node's frame budget, and for a write its write slot.
struct InFrame {
    frame: DeviceFrame,
    lease: FrameLease,
    slot: Option<OwnedSemaphorePermit>,
}

/// What the reader task hands over. Frames are boxed: the channel
/// allocates its slots up front, and an idle session should not pay for
/// 32 frames' worth of them.
enum Inbound {
    /// A frame.
    Frame(Box<InFrame>),
    /// The device finished its stream between frames.
    End,
    /// The stream failed or carried something that is not a frame.
    Failed(FrameError),
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
    slot: OwnedSemaphorePermit,
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

async fn run(
    shared: Arc<Shared>,
    conn: Connection,
    accepted: Option<Handshake>,
    hello_deadline: Instant,
    mut stop: watch::Receiver<bool>,
    remote: SocketAddr,
) {
    // The control stream: the device's first bidirectional stream.
    let (send, recv) = tokio::select! {
        biased;
        _ = wait_stop(&mut stop) => {
            conn.close(CloseCode::ShuttingDown.var_int(), b"the node is stopping; reconnect to another node");
            return;
        }
        _ = sleep_until(hello_deadline) => {
            shared.metrics.sync_frames_refused.inc();
            let reason = format!("no Hello within {} ms", shared.hello_timeout.as_millis());
            tracing::info!(%reason, "closing sync connection");
            conn.close(CloseCode::HelloTimeout.var_int(), reason.as_bytes());
            return;
        }
        s = conn.accept_bi() => match s {
            Ok(s) => s,
            Err(_) => return,
        },
        s = conn.accept_uni() => {
            if s.is_ok() {
                conn.close(CloseCode::Protocol.var_int(), b"the device protocol has no unidirectional streams");
            }
            return;
        }
    };
    tracing::debug!(%remote, "sync control stream open");
    let (out_tx, out_rx) = mpsc::channel(WRITER_QUEUE);
    let (in_tx, in_rx) = mpsc::channel(1);
    let write_slots = Arc::new(Semaphore::new(WRITES_IN_FLIGHT));
    let writer = tokio::spawn(write_loop(send, out_rx).in_current_span());
    let reader = tokio::spawn(
        read_loop(recv, in_tx, shared.max_frame_bytes, shared.budget.clone(), write_slots).in_current_span(),
    );
    let mut session = Session {
        shared,
        conn,
        out: out_tx,
        inbound: in_rx,
        handshake: accepted,
        held: Vec::new(),
        device: None,
        hello_deadline,
        stop,
    };
    let exit = session.run().await;
    Box::pin(session.finish(exit)).await;
    reader.abort();
    // The writer ends once the connection is closed; it owns nothing else.
    drop(writer);
}

/// Reads frames until the stream ends, fails, or the session is gone.
async fn read_loop(
    mut recv: RecvStream,
    tx: mpsc::Sender<Inbound>,
    max: u32,
    budget: FrameBudget,
    write_slots: Arc<Semaphore>,
) {
    let mut first = true;
    loop {
        let read = if first {
            read_frame_leased::<DeviceFrame, _>(&mut recv, max.min(MAX_HELLO_BYTES), None).await
        } else {
            read_frame_leased::<DeviceFrame, _>(&mut recv, max, Some(&budget)).await
        };
        first = false;
        let item = match read {
            Ok(Some((frame, lease))) => {
                let slot = if matches!(frame.msg, Some(device_frame::Msg::Write(_))) {
                    match write_slots.clone().acquire_owned().await {
                        Ok(p) => Some(p),
                        Err(_) => return,
                    }
                } else {
                    None
                };
                Inbound::Frame(Box::new(InFrame { frame, lease, slot }))
            }
            Ok(None) => Inbound::End,
            Err(e) => Inbound::Failed(e),
        };
        let last = !matches!(item, Inbound::Frame(..));
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}

/// Writes frames in order until told to finish or the stream fails.
async fn write_loop(mut send: SendStream, mut rx: mpsc::Receiver<Out>) {
    while let Some(item) = rx.recv().await {
        match item {
            Out::Frame(bytes) => {
                if send.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Out::Finish(done) => {
                let _ = send.finish();
                let _ = tokio::time::timeout(GOODBYE_GRACE, send.stopped()).await;
                let _ = done.send(());
                return;
            }
        }
    }
}

struct Session {
    shared: Arc<Shared>,
    conn: Connection,
    out: mpsc::Sender<Out>,
    inbound: mpsc::Receiver<Inbound>,
    /// Until the TLS handshake completes: writes wait for it.
    handshake: Option<Handshake>,
    held: Vec<HeldWrite>,
    device: Option<Device>,
    hello_deadline: Instant,
    stop: watch::Receiver<bool>,
}

impl Session {
    async fn run(&mut self) -> Exit {
        loop {
            let feed = self.device.as_ref().and_then(|d| d.feed.as_ref());
            let backlog = feed.is_some_and(Feed::has_backlog);
            let live = feed.is_some() && !backlog;
            let expires = self.device.as_ref().map(|d| d.expires);
            let hub = self.device.as_ref().filter(|_| !backlog).map(|d| &d.hub);
            let (out, out_live) = (self.out.clone(), self.out.clone());
            tokio::select! {
                biased;
                _ = wait_stop(&mut self.stop) => {
                    return close(CloseCode::ShuttingDown, "the node is stopping; reconnect to another node");
                }
                _ = sleep_until(expires.unwrap_or(self.hello_deadline)), if expires.is_some() => {
                    return self.expired();
                }
                _ = sleep_until(self.hello_deadline), if expires.is_none() => {
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
                m = self.inbound.recv() => {
                    let Some(m) = m else { return Exit::Lost };
                    // Boxed: what a frame's handling awaits (a token check,
                    // a Welcome) lives on the heap only while it runs, so
                    // an idle session's future stays small.
                    if let Err(exit) = Box::pin(self.on_inbound(m)).await {
                        return exit;
                    }
                }
                permit = out.reserve_owned(), if backlog => {
                    let Ok(permit) = permit else { return Exit::Lost };
                    match self.next_backlog() {
                        Ok(Some(bytes)) => {
                            permit.send(Out::Frame(bytes));
                        }
                        Ok(None) => {}
                        Err(exit) => return exit,
                    }
                }
                (permit, d) = pull(out_live, hub, live), if hub.is_some() => {
                    if let Err(exit) = self.on_delivery(permit, d) {
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

    /// Queues one frame for the writer, giving up on shutdown, expiry or a
    /// lost connection instead of waiting on a device that stopped reading.
    async fn send(&mut self, msg: Msg) -> Result<(), Exit> {
        let bytes = self.encode(msg)?;
        let expires = self.device.as_ref().map(|d| d.expires);
        tokio::select! {
            r = self.out.send(Out::Frame(bytes)) => r.map_err(|_| Exit::Lost),
            _ = wait_stop(&mut self.stop) => {
                Err(close(CloseCode::ShuttingDown, "the node is stopping; reconnect to another node"))
            }
            _ = sleep_until(expires.unwrap_or(self.hello_deadline)), if expires.is_some() => Err(self.expired()),
            _ = self.conn.closed() => Err(Exit::Lost),
        }
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
            Inbound::Frame(f) => {
                let InFrame { frame, lease, slot } = *f;
                (frame, lease, slot)
            }
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

    fn on_delivery(&mut self, permit: Option<mpsc::OwnedPermit<Out>>, d: Delivery) -> Result<(), Exit> {
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
                    let bytes = self.encode(msg)?;
                    let Some(permit) = permit else { return Err(Exit::Lost) };
                    permit.send(Out::Frame(bytes));
                }
                Ok(())
            }
        }
    }

    /// Runs a write as its own task; its answer goes straight to the
    /// writer. The task keeps the write's frame lease and write slot until
    /// the answer is queued.
    fn spawn_write(&self, held: HeldWrite) {
        let Some(d) = self.device.as_ref() else { return };
        let who = d.who.clone();
        let service = self.shared.service.clone();
        let out = self.out.clone();
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
                let _ = out.send(Out::Frame(bytes)).await;
                drop(lease);
                drop(slot);
            }
            .in_current_span(),
        );
    }

    /// Says Goodbye (bounded by [`GOODBYE_GRACE`]) and closes.
    async fn finish(self, exit: Exit) {
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
            if let Ok(Ok(())) = timeout_at(deadline, self.out.send(Out::Frame(bytes))).await {
                let (tx, rx) = oneshot::channel();
                if let Ok(Ok(())) = timeout_at(deadline, self.out.send(Out::Finish(tx))).await {
                    let _ = timeout_at(deadline, rx).await;
                }
            }
        }
        self.conn.close(code.var_int(), reason.as_bytes());
    }
}

/// Takes the next delivery from the hub; when the session is live, only
/// once the writer has room for what it may produce.
async fn pull(
    out: mpsc::Sender<Out>,
    hub: Option<&Subscription>,
    live: bool,
) -> (Option<mpsc::OwnedPermit<Out>>, Delivery) {
    let permit = if live { out.reserve_owned().await.ok() } else { None };
    let Some(hub) = hub else {
        return std::future::pending().await;
    };
    (permit, hub.recv().await)
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
