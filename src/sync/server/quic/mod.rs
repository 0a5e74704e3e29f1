//! The sync listener's QUIC endpoint: quinn's protocol state machine
//! (`quinn-proto`, the core of the `quinn` crate) driven by one task for
//! every connection of the node.
//!
//! # Why not `quinn::Endpoint`
//! A device fleet is mostly idle connections, and what an idle connection
//! costs is what a node can hold. `quinn::Endpoint` gives each connection
//! its own driver task, timer, transmit buffer and UDP poller, and an
//! unbounded event channel from the endpoint whose blocks hold 32 events
//! each (about 6.7 KiB, two blocks once it has wrapped). Measured with
//! `tessera bench sync --scenario idle`, an idle device cost about 42 KiB
//! of resident memory, well over the 20 KiB that 10,000 phones on one node
//! call for. Here a connection is its `quinn_proto::Connection` and a few
//! wakers in one map that one driver owns; the timers are one heap, the
//! transmit buffer and the receive buffer one each.
//!
//! # What the driver does
//! [`driver::drive`] loops: it reads the datagrams the socket holds and
//! hands each to the endpoint (which routes it to its connection or starts
//! a handshake), fires the timers that are due, and then, for every
//! connection touched (by a datagram, a timer, or the application writing,
//! reading, accepting or closing), exchanges events with the endpoint,
//! wakes the tasks waiting on it, and sends what it has to send. Then it
//! sleeps until the socket is readable, a timer is due or the application
//! touches a connection.
//!
//! # The API
//! The subset of quinn's that the session uses, with the same meaning:
//! [`Endpoint::accept`], [`Incoming::accept`] (a server connection is
//! usable at once, 0.5-RTT, and [`Connection::handshake`] says when the
//! handshake completes, as quinn's `into_0rtt` does), [`Connection`]'s
//! `accept_bi`, `close`, `closed`, and [`RecvStream`] (tokio `AsyncRead`)
//! and [`SendStream`] (`poll_write`, `write_all`, `finish`, `stopped`). Dropping every
//! handle of a connection closes it (code 0), as quinn does.
//!
//! Everything runs under one mutex, held only for synchronous protocol
//! work (never across an await), which on a node's few cores costs less
//! than the per-connection tasks and channels it replaces.

mod driver;

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use quinn_proto::{self as proto, ConnectionError, Dir, StreamId, VarInt};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::UdpSocket;
use tokio::sync::Notify;

pub use driver::DriverCounters;
use driver::{Conn, State};

/// What a stream operation can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamError {
    /// The connection is gone.
    #[error("connection lost: {0}")]
    ConnectionLost(ConnectionError),
    /// The device stopped the stream (`STOP_SENDING`).
    #[error("stopped by the device: code {0}")]
    Stopped(VarInt),
    /// The device reset the stream.
    #[error("reset by the device: code {0}")]
    Reset(VarInt),
    /// The stream was already finished, reset or never opened.
    #[error("the stream is closed")]
    Closed,
}

impl From<StreamError> for io::Error {
    fn from(e: StreamError) -> Self {
        let kind = match e {
            StreamError::ConnectionLost(_) => io::ErrorKind::NotConnected,
            StreamError::Stopped(_) | StreamError::Reset(_) => io::ErrorKind::ConnectionReset,
            StreamError::Closed => io::ErrorKind::BrokenPipe,
        };
        io::Error::new(kind, e)
    }
}

/// What the driver and every handle share.
struct Shared {
    state: Mutex<State>,
    socket: UdpSocket,
    /// Tells the driver that the application touched a connection.
    wake: Notify,
    local_addr: SocketAddr,
}

impl Shared {
    /// The state; a panic while it was held poisons nothing we rely on
    /// (every operation leaves it consistent), so a poisoned lock is taken.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A QUIC server endpoint on one UDP socket.
pub struct Endpoint {
    shared: Arc<Shared>,
}

impl Endpoint {
    /// An endpoint serving `server` on `socket` (non-blocking is set
    /// here), with its driver spawned on the current tokio runtime.
    pub fn new(
        server: proto::ServerConfig,
        socket: std::net::UdpSocket,
        counters: driver::DriverCounters,
    ) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let local_addr = socket.local_addr()?;
        let socket = UdpSocket::from_std(socket)?;
        let endpoint = proto::Endpoint::new(
            Arc::new(proto::EndpointConfig::default()),
            Some(Arc::new(server)),
            false,
            None,
        );
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(endpoint, counters)),
            socket,
            wake: Notify::new(),
            local_addr,
        });
        tokio::spawn(driver::drive(shared.clone()));
        Ok(Endpoint { shared })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The next connection attempt; `None` once the endpoint is closed.
    pub async fn accept(&self) -> Option<Incoming> {
        poll_fn(|cx| {
            let mut st = self.shared.lock();
            if st.closing {
                return Poll::Ready(None);
            }
            match st.incoming.pop_front() {
                Some(inner) => Poll::Ready(Some(Incoming {
                    shared: self.shared.clone(),
                    inner: Some(Box::new(inner)),
                })),
                None => {
                    st.accept_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Closes every connection with `code` and `reason`, and refuses new
    /// ones.
    pub fn close(&self, code: VarInt, reason: &[u8]) {
        let mut st = self.shared.lock();
        st.close_all(code, Bytes::copy_from_slice(reason));
        drop(st);
        self.shared.wake.notify_one();
    }

    /// Waits until every connection has finished closing (its peer told,
    /// or its draining period over).
    pub async fn wait_idle(&self) {
        while !self.shared.lock().idle() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.shared.lock().endpoint_dropped = true;
        self.shared.wake.notify_one();
    }
}

/// A connection attempt not yet accepted or refused. Dropping it refuses
/// it.
pub struct Incoming {
    shared: Arc<Shared>,
    /// Boxed: a session's task holds its `Incoming` for the session's
    /// whole life (it is the task's argument), and quinn's is large.
    inner: Option<Box<proto::Incoming>>,
}

impl Incoming {
    /// Where the attempt comes from.
    pub fn remote_address(&self) -> SocketAddr {
        self.inner
            .as_ref()
            .map(|i| i.remote_address())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Accepts the attempt: the connection is usable at once (0.5-RTT;
    /// see [`Connection::handshake`]).
    pub fn accept(mut self) -> Result<Connection, ConnectionError> {
        let inner = self.inner.take().ok_or(ConnectionError::LocallyClosed)?;
        let id = self.shared.lock().accept(*inner)?;
        self.shared.wake.notify_one();
        Ok(Connection {
            shared: self.shared.clone(),
            id,
        })
    }

    /// Refuses the attempt (CONNECTION_REFUSED).
    pub fn refuse(mut self) {
        if let Some(inner) = self.inner.take() {
            self.shared.lock().refuse(*inner);
        }
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            self.shared.lock().refuse(*inner);
        }
    }
}

/// A handle to one connection. Clones share it; when the last handle of a
/// connection (streams included) is dropped, the connection is closed.
pub struct Connection {
    shared: Arc<Shared>,
    id: u64,
}

impl Connection {
    /// Runs `f` on the connection's state, and wakes the driver if `f` says
    /// it has something to send.
    fn with<T>(&self, f: impl FnOnce(&mut Conn) -> (T, bool)) -> T {
        with_conn(&self.shared, self.id, f)
    }

    /// An identifier unique among this endpoint's connections.
    pub fn stable_id(&self) -> u64 {
        self.id
    }

    /// The device's current address (it changes when the device migrates).
    pub fn remote_address(&self) -> SocketAddr {
        self.with(|c| (c.remote_address(), false))
    }

    /// The next bidirectional stream the device opens.
    pub async fn accept_bi(&self) -> Result<(SendStream, RecvStream), ConnectionError> {
        let id = poll_fn(|cx| self.with(|c| c.poll_accept(cx, Dir::Bi))).await?;
        Ok((self.send_stream(id), self.recv_stream(id)))
    }

    /// The next unidirectional stream the device opens.
    pub async fn accept_uni(&self) -> Result<RecvStream, ConnectionError> {
        let id = poll_fn(|cx| self.with(|c| c.poll_accept(cx, Dir::Uni))).await?;
        Ok(self.recv_stream(id))
    }

    fn send_stream(&self, id: StreamId) -> SendStream {
        SendStream {
            conn: self.clone(),
            id,
            done: false,
        }
    }

    fn recv_stream(&self, id: StreamId) -> RecvStream {
        RecvStream {
            conn: self.clone(),
            id,
            done: false,
        }
    }

    /// Closes the connection with an application `code` and `reason`; the
    /// device is told at once, and every operation on it fails from now on.
    pub fn close(&self, code: VarInt, reason: &[u8]) {
        self.with(|c| {
            c.close(code, Bytes::copy_from_slice(reason));
            ((), true)
        })
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<ConnectionError> {
        self.with(|c| (c.error.clone(), false))
    }

    /// Waits until the connection is closed, by either side or a timeout.
    pub async fn closed(&self) -> ConnectionError {
        poll_fn(|cx| {
            self.with(|c| match &c.error {
                Some(e) => (Poll::Ready(e.clone()), false),
                None => {
                    c.register(cx);
                    (Poll::Pending, false)
                }
            })
        })
        .await
    }

    /// Resolves when the TLS handshake has completed (`true`), or the
    /// connection closed first (`false`). Until then, what the device sent
    /// may be 0-RTT data, which an attacker can replay.
    pub fn handshake(&self) -> Handshake {
        Handshake { conn: self.clone() }
    }
}

impl Clone for Connection {
    fn clone(&self) -> Self {
        self.with(|c| {
            c.handles += 1;
            ((), false)
        });
        Connection {
            shared: self.shared.clone(),
            id: self.id,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if st.release(self.id) {
            drop(st);
            self.shared.wake.notify_one();
        }
    }
}

fn with_conn<T>(shared: &Shared, id: u64, f: impl FnOnce(&mut Conn) -> (T, bool)) -> T {
    let mut st = shared.lock();
    let (out, transmit) = st.with_conn(id, f);
    drop(st);
    if transmit {
        shared.wake.notify_one();
    }
    out
}

/// See [`Connection::handshake`].
pub struct Handshake {
    conn: Connection,
}

impl Future for Handshake {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        self.conn.with(|c| {
            if c.connected {
                (Poll::Ready(true), false)
            } else if c.error.is_some() {
                (Poll::Ready(false), false)
            } else {
                c.register(cx);
                (Poll::Pending, false)
            }
        })
    }
}

/// The receiving half of a stream. Dropping it before the stream's end
/// stops the stream (code 0).
pub struct RecvStream {
    conn: Connection,
    id: StreamId,
    done: bool,
}

impl AsyncRead for RecvStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let id = self.id;
        let r = self.conn.with(|c| c.poll_read(cx, id, buf));
        if let Poll::Ready(Ok(0)) = r {
            self.done = true;
        }
        r.map_ok(|_| ()).map_err(io::Error::from)
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        if !self.done {
            let id = self.id;
            self.conn.with(|c| (c.stop(id), true));
        }
    }
}

/// The sending half of a stream. Dropping it finishes the stream, as
/// quinn does.
pub struct SendStream {
    conn: Connection,
    id: StreamId,
    done: bool,
}

impl SendStream {
    /// Queues all of `data` on the stream, waiting while the device's flow
    /// control or the send window holds it back.
    pub async fn write_all(&mut self, mut data: &[u8]) -> Result<(), StreamError> {
        let id = self.id;
        while !data.is_empty() {
            let n = poll_fn(|cx| self.conn.with(|c| c.poll_write(cx, id, data))).await?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Queues as much of `data` as the device's flow control and the send
    /// window allow now (at least one byte); `Pending` while they allow
    /// none, having queued nothing.
    pub fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<Result<usize, StreamError>> {
        let id = self.id;
        self.conn.with(|c| c.poll_write(cx, id, data))
    }

    /// Ends the stream once what is queued is sent.
    pub fn finish(&mut self) -> Result<(), StreamError> {
        let id = self.id;
        self.done = true;
        self.conn.with(|c| {
            let r = c.finish(id);
            (r, true)
        })
    }

    /// Resolves once the device has acknowledged everything up to the end
    /// of a finished stream (`None`), or stopped it (`Some(code)`).
    pub async fn stopped(&mut self) -> Result<Option<VarInt>, StreamError> {
        let id = self.id;
        poll_fn(|cx| self.conn.with(|c| (c.poll_stopped(cx, id), false))).await
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        if !self.done {
            let id = self.id;
            self.conn.with(|c| {
                let _ = c.finish(id);
                ((), true)
            });
        }
    }
}
