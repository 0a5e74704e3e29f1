//! The endpoint's state and the one task that drives it (see the parent
//! module for why it is one task).

// Node-local tables that no replicated state depends on; the only
// iterations (closing every connection) do not depend on the order.
#![allow(clippy::disallowed_types)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use quinn_proto::{
    self as proto, ConnectionError, ConnectionHandle, DatagramEvent, Dir, Event, FinishError, ReadError, ReadableError,
    StreamId, VarInt, WriteError,
};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;

use super::{Shared, StreamError};

/// Datagrams read from the socket before the connections they touched are
/// served, so that a flood of datagrams cannot starve timers and sends.
const RECV_BATCH: usize = 256;
/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// Connection attempts waiting for the accept loop; more are refused, so a
/// burst of handshakes cannot grow memory without bound.
const MAX_INCOMING: usize = 8_192;
/// Datagrams held while the socket's send buffer is full; more are
/// dropped (QUIC recovers them as losses), so a stalled socket cannot grow
/// memory without bound.
const MAX_OUTGOING: usize = 4_096;

/// One connection: quinn's state machine and the tasks waiting on it.
pub(super) struct Conn {
    /// `None` once the connection has drained and only handles remain.
    proto: Option<Box<proto::Connection>>,
    handle: ConnectionHandle,
    /// Handles alive (connections and streams).
    pub(super) handles: usize,
    /// On the driver's list of connections to serve.
    dirty: bool,
    /// The earliest time this connection has in the timer heap.
    scheduled: Option<Instant>,
    /// The handshake completed.
    pub(super) connected: bool,
    /// Why it closed, once it has.
    pub(super) error: Option<ConnectionError>,
    /// Tasks waiting on anything of this connection; all are woken on every
    /// event, and each polls again for what it wants (a session is one
    /// task, so this is usually one waker).
    waiters: Vec<Waker>,
}

impl Conn {
    fn gone() -> Conn {
        Conn {
            proto: None,
            handle: ConnectionHandle(usize::MAX),
            handles: 0,
            dirty: false,
            scheduled: None,
            connected: false,
            error: Some(ConnectionError::LocallyClosed),
            waiters: Vec::new(),
        }
    }

    pub(super) fn register(&mut self, cx: &Context<'_>) {
        if !self.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            self.waiters.push(cx.waker().clone());
        }
    }

    fn wake_all(&mut self) {
        for w in self.waiters.drain(..) {
            w.wake();
        }
    }

    pub(super) fn remote_address(&mut self) -> SocketAddr {
        self.proto
            .as_ref()
            .map(|p| p.remote_address())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The connection's state machine, unless it has closed.
    fn live(&mut self) -> Result<&mut proto::Connection, ConnectionError> {
        match (&self.error, self.proto.as_deref_mut()) {
            (None, Some(p)) => Ok(p),
            _ => Err(self.error.clone().unwrap_or(ConnectionError::LocallyClosed)),
        }
    }

    pub(super) fn poll_accept(
        &mut self,
        cx: &Context<'_>,
        dir: Dir,
    ) -> (Poll<Result<StreamId, ConnectionError>>, bool) {
        let p = match self.live() {
            Ok(p) => p,
            Err(e) => return (Poll::Ready(Err(e)), false),
        };
        match p.streams().accept(dir) {
            // Accepting raises the device's stream credit: tell it.
            Some(id) => (Poll::Ready(Ok(id)), true),
            None => {
                self.register(cx);
                (Poll::Pending, false)
            }
        }
    }

    pub(super) fn poll_read(
        &mut self,
        cx: &Context<'_>,
        id: StreamId,
        buf: &mut ReadBuf<'_>,
    ) -> (Poll<Result<usize, StreamError>>, bool) {
        let p = match self.live() {
            Ok(p) => p,
            Err(e) => return (Poll::Ready(Err(StreamError::ConnectionLost(e))), false),
        };
        let mut stream = p.recv_stream(id);
        let mut chunks = match stream.read(true) {
            Ok(c) => c,
            Err(ReadableError::ClosedStream) => return (Poll::Ready(Ok(0)), false),
            Err(ReadableError::IllegalOrderedRead) => return (Poll::Ready(Err(StreamError::Closed)), false),
        };
        let read = chunks.next(buf.remaining());
        // Reading frees receive window: the device may need to hear of it.
        let transmit = chunks.finalize().should_transmit();
        match read {
            Ok(Some(chunk)) => {
                buf.put_slice(&chunk.bytes);
                (Poll::Ready(Ok(chunk.bytes.len())), transmit)
            }
            Ok(None) => (Poll::Ready(Ok(0)), transmit),
            Err(ReadError::Blocked) => {
                self.register(cx);
                (Poll::Pending, transmit)
            }
            Err(ReadError::Reset(code)) => (Poll::Ready(Err(StreamError::Reset(code))), transmit),
        }
    }

    pub(super) fn poll_write(
        &mut self,
        cx: &Context<'_>,
        id: StreamId,
        data: &[u8],
    ) -> (Poll<Result<usize, StreamError>>, bool) {
        let p = match self.live() {
            Ok(p) => p,
            Err(e) => return (Poll::Ready(Err(StreamError::ConnectionLost(e))), false),
        };
        match p.send_stream(id).write(data) {
            Ok(n) => (Poll::Ready(Ok(n)), true),
            Err(WriteError::Blocked) => {
                self.register(cx);
                (Poll::Pending, false)
            }
            Err(WriteError::Stopped(code)) => (Poll::Ready(Err(StreamError::Stopped(code))), false),
            Err(WriteError::ClosedStream) => (Poll::Ready(Err(StreamError::Closed)), false),
        }
    }

    pub(super) fn finish(&mut self, id: StreamId) -> Result<(), StreamError> {
        let p = self.live().map_err(StreamError::ConnectionLost)?;
        p.send_stream(id).finish().map_err(|e| match e {
            FinishError::Stopped(code) => StreamError::Stopped(code),
            FinishError::ClosedStream => StreamError::Closed,
        })
    }

    pub(super) fn poll_stopped(&mut self, cx: &Context<'_>, id: StreamId) -> Poll<Result<Option<VarInt>, StreamError>> {
        let p = match self.live() {
            Ok(p) => p,
            Err(e) => return Poll::Ready(Err(StreamError::ConnectionLost(e))),
        };
        match p.send_stream(id).stopped() {
            Ok(Some(code)) => Poll::Ready(Ok(Some(code))),
            Ok(None) => {
                self.register(cx);
                Poll::Pending
            }
            // Finished and fully acknowledged: the stream is gone.
            Err(_) => Poll::Ready(Ok(None)),
        }
    }

    pub(super) fn stop(&mut self, id: StreamId) {
        if let Ok(p) = self.live() {
            let _ = p.recv_stream(id).stop(VarInt::from_u32(0));
        }
    }

    pub(super) fn close(&mut self, code: VarInt, reason: Bytes) {
        if self.error.is_some() {
            return;
        }
        if let Some(p) = self.proto.as_deref_mut() {
            p.close(Instant::now(), code, reason);
        }
        self.error = Some(ConnectionError::LocallyClosed);
        self.wake_all();
    }
}

/// A datagram the socket could not take yet.
struct Outgoing {
    to: SocketAddr,
    data: Vec<u8>,
}

/// Everything the driver owns.
pub(super) struct State {
    endpoint: proto::Endpoint,
    /// By our own id, which (unlike quinn's handle) is never reused, so a
    /// handle that outlives its connection never reaches a newer one.
    conns: HashMap<u64, Box<Conn>>,
    /// quinn's handle to our id, while the endpoint knows the connection.
    routes: HashMap<ConnectionHandle, u64>,
    next_id: u64,
    dirty: Vec<u64>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    pub(super) incoming: VecDeque<proto::Incoming>,
    pub(super) accept_waker: Option<Waker>,
    /// Closed: new attempts are refused and `accept` answers `None`.
    pub(super) closing: bool,
    /// The application dropped the endpoint: the driver stops.
    pub(super) endpoint_dropped: bool,
    outgoing: VecDeque<Outgoing>,
    /// Scratch for transmits.
    buf: Vec<u8>,
    /// What the bounds above threw away, for the node's metrics.
    counters: DriverCounters,
}

/// Counters of what the driver's bounds refused, shared with the node's
/// metrics (`tessera_sync_datagrams_dropped_total`,
/// `tessera_sync_handshakes_refused_total`).
#[derive(Clone, Default)]
pub struct DriverCounters {
    /// Outgoing datagrams dropped because [`MAX_OUTGOING`] were waiting
    /// for the socket.
    pub datagrams_dropped: prometheus_client::metrics::counter::Counter,
    /// Connection attempts refused because [`MAX_INCOMING`] were waiting
    /// for the accept loop.
    pub handshakes_refused: prometheus_client::metrics::counter::Counter,
}

impl State {
    pub(super) fn new(endpoint: proto::Endpoint, counters: DriverCounters) -> Self {
        State {
            counters,
            endpoint,
            conns: HashMap::new(),
            routes: HashMap::new(),
            next_id: 1,
            dirty: Vec::new(),
            timers: BinaryHeap::new(),
            incoming: VecDeque::new(),
            accept_waker: None,
            closing: false,
            endpoint_dropped: false,
            outgoing: VecDeque::new(),
            buf: Vec::new(),
        }
    }

    fn mark(dirty: &mut Vec<u64>, conn: &mut Conn, id: u64) {
        if !conn.dirty {
            conn.dirty = true;
            dirty.push(id);
        }
    }

    /// Runs `f` on connection `id`; when `f` says it produced something to
    /// send, the connection is put on the driver's list (and the caller
    /// wakes the driver).
    pub(super) fn with_conn<T>(&mut self, id: u64, f: impl FnOnce(&mut Conn) -> (T, bool)) -> (T, bool) {
        match self.conns.get_mut(&id) {
            Some(conn) => {
                let (out, transmit) = f(conn);
                if transmit && conn.proto.is_some() {
                    Self::mark(&mut self.dirty, conn, id);
                }
                (out, transmit)
            }
            // A connection lives while a handle to it does; should that
            // ever not hold, the handle sees a closed connection.
            None => (f(&mut Conn::gone()).0, false),
        }
    }

    /// Drops one handle of `id`. Returns whether the driver has work: the
    /// last handle closes the connection (code 0, as quinn does).
    pub(super) fn release(&mut self, id: u64) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        conn.handles = conn.handles.saturating_sub(1);
        if conn.handles > 0 {
            return false;
        }
        conn.close(VarInt::from_u32(0), Bytes::new());
        if conn.proto.is_none() {
            self.conns.remove(&id);
            return false;
        }
        Self::mark(&mut self.dirty, conn, id);
        true
    }

    pub(super) fn accept(&mut self, incoming: proto::Incoming) -> Result<u64, ConnectionError> {
        if self.closing {
            self.refuse(incoming);
            return Err(ConnectionError::LocallyClosed);
        }
        let now = Instant::now();
        match self.endpoint.accept(incoming, now, &mut self.buf, None) {
            Ok((handle, proto)) => {
                self.buf.clear();
                let id = self.next_id;
                self.next_id += 1;
                let mut conn = Box::new(Conn {
                    proto: Some(Box::new(proto)),
                    handle,
                    handles: 1,
                    dirty: false,
                    scheduled: None,
                    connected: false,
                    error: None,
                    waiters: Vec::new(),
                });
                Self::mark(&mut self.dirty, &mut conn, id);
                self.routes.insert(handle, id);
                self.conns.insert(id, conn);
                Ok(id)
            }
            Err(e) => {
                if let Some(t) = e.response {
                    let data = self.buf[..t.size].to_vec();
                    self.queue(t.destination, data);
                }
                self.buf.clear();
                Err(e.cause)
            }
        }
    }

    pub(super) fn refuse(&mut self, incoming: proto::Incoming) {
        let t = self.endpoint.refuse(incoming, &mut self.buf);
        let data = self.buf[..t.size].to_vec();
        self.buf.clear();
        self.queue(t.destination, data);
    }

    pub(super) fn close_all(&mut self, code: VarInt, reason: Bytes) {
        self.closing = true;
        for inc in std::mem::take(&mut self.incoming) {
            self.refuse(inc);
        }
        if let Some(w) = self.accept_waker.take() {
            w.wake();
        }
        for (id, conn) in self.conns.iter_mut() {
            conn.close(code, reason.clone());
            Self::mark(&mut self.dirty, conn, *id);
        }
    }

    /// No connection is still closing.
    pub(super) fn idle(&self) -> bool {
        self.routes.is_empty()
    }

    fn queue(&mut self, to: SocketAddr, data: Vec<u8>) {
        if self.outgoing.len() < MAX_OUTGOING {
            self.outgoing.push_back(Outgoing { to, data });
        } else {
            self.counters.datagrams_dropped.inc();
        }
    }

    /// Sends what is queued, in order, until the socket is full.
    fn flush(&mut self, socket: &UdpSocket) {
        while let Some(o) = self.outgoing.front() {
            match socket.try_send_to(&o.data, o.to) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => tracing::debug!(to = %o.to, error = %e, "sync datagram not sent"),
                Ok(_) => {}
            }
            self.outgoing.pop_front();
        }
    }

    /// One datagram from `from`.
    fn datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let event = self
            .endpoint
            .handle(now, from, None, None, BytesMut::from(data), &mut self.buf);
        match event {
            Some(DatagramEvent::ConnectionEvent(handle, event)) => {
                if let Some(id) = self.routes.get(&handle).copied() {
                    if let Some(conn) = self.conns.get_mut(&id) {
                        if let Some(p) = conn.proto.as_deref_mut() {
                            p.handle_event(event);
                        }
                        Self::mark(&mut self.dirty, conn, id);
                    }
                }
            }
            Some(DatagramEvent::NewConnection(incoming)) => {
                if self.closing || self.incoming.len() >= MAX_INCOMING {
                    if !self.closing {
                        self.counters.handshakes_refused.inc();
                    }
                    self.buf.clear();
                    self.refuse(incoming);
                } else {
                    self.incoming.push_back(incoming);
                    if let Some(w) = self.accept_waker.take() {
                        w.wake();
                    }
                }
            }
            Some(DatagramEvent::Response(t)) => {
                let data = self.buf[..t.size].to_vec();
                self.queue(t.destination, data);
            }
            None => {}
        }
        self.buf.clear();
    }

    /// Puts the connections whose timers are due on the list.
    fn due_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                return;
            }
            self.timers.pop();
            if let Some(conn) = self.conns.get_mut(&id) {
                if conn.scheduled == Some(at) {
                    conn.scheduled = None;
                    Self::mark(&mut self.dirty, conn, id);
                }
            }
        }
    }

    /// Serves every connection on the list.
    fn serve_dirty(&mut self, now: Instant) {
        while let Some(id) = self.dirty.pop() {
            self.serve(id, now);
        }
    }

    /// Timers, events to and from the endpoint, wakeups, and transmits of
    /// one connection.
    fn serve(&mut self, id: u64, now: Instant) {
        let State {
            endpoint,
            conns,
            routes,
            timers,
            outgoing,
            buf,
            counters,
            ..
        } = self;
        let Some(conn) = conns.get_mut(&id) else { return };
        conn.dirty = false;
        let Some(mut p) = conn.proto.take() else { return };
        if p.poll_timeout().is_some_and(|t| t <= now) {
            p.handle_timeout(now);
        }
        let mut woke = false;
        let mut drained = false;
        loop {
            let mut again = false;
            while let Some(event) = p.poll_endpoint_events() {
                drained |= event.is_drained();
                if let Some(reply) = endpoint.handle_event(conn.handle, event) {
                    p.handle_event(reply);
                    again = true;
                }
            }
            while let Some(event) = p.poll() {
                match event {
                    Event::Connected => conn.connected = true,
                    Event::ConnectionLost { reason } if conn.error.is_none() => conn.error = Some(reason),
                    _ => {}
                }
                woke = true;
            }
            while let Some(t) = p.poll_transmit(now, 1, buf) {
                let data = buf[..t.size].to_vec();
                buf.clear();
                if outgoing.len() < MAX_OUTGOING {
                    outgoing.push_back(Outgoing {
                        to: t.destination,
                        data,
                    });
                } else {
                    counters.datagrams_dropped.inc();
                }
            }
            if !again {
                break;
            }
        }
        if drained {
            // The endpoint forgot it; what is left is for its handles.
            routes.remove(&conn.handle);
            if conn.error.is_none() {
                conn.error = Some(ConnectionError::TimedOut);
            }
            woke = true;
        } else {
            if let Some(at) = p.poll_timeout() {
                if conn.scheduled.is_none_or(|s| at < s) {
                    conn.scheduled = Some(at);
                    timers.push(Reverse((at, id)));
                }
            }
            conn.proto = Some(p);
        }
        if woke {
            conn.wake_all();
        }
        if conn.proto.is_none() && conn.handles == 0 {
            conns.remove(&id);
        }
    }

    /// The earliest timer.
    fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// The driver is stopping: every handle left sees the connection gone.
    fn abandon(&mut self) {
        for conn in self.conns.values_mut() {
            if conn.error.is_none() {
                conn.error = Some(ConnectionError::LocallyClosed);
            }
            conn.proto = None;
            conn.wake_all();
        }
        self.routes.clear();
        if let Some(w) = self.accept_waker.take() {
            w.wake();
        }
    }
}

/// The driver: runs until the endpoint is dropped.
pub(super) async fn drive(shared: Arc<Shared>) {
    let mut recv = vec![0u8; MAX_DATAGRAM];
    loop {
        let (next_timer, blocked) = {
            let now = Instant::now();
            let mut st = shared.lock();
            if st.endpoint_dropped {
                st.abandon();
                return;
            }
            for _ in 0..RECV_BATCH {
                match shared.socket.try_recv_from(&mut recv) {
                    Ok((n, from)) => st.datagram(now, from, &recv[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // An ICMP error for an earlier send; nothing to do.
                    Err(e) => tracing::trace!(error = %e, "sync socket receive error"),
                }
            }
            st.due_timers(now);
            st.serve_dirty(now);
            st.flush(&shared.socket);
            (st.next_timer(), !st.outgoing.is_empty())
        };
        let sleep = async {
            match next_timer {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = shared.socket.readable() => {}
            _ = shared.socket.writable(), if blocked => {}
            _ = sleep => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::server::tls;

    /// A server endpoint's driver state, with a generated certificate.
    fn server_state(counters: DriverCounters) -> State {
        let dir = tempfile::tempdir().unwrap();
        let identity = tls::load_or_generate(None, None, dir.path(), &["localhost".into()]).unwrap();
        let crypto = tls::server_crypto(&identity).unwrap();
        let server = proto::ServerConfig::with_crypto(crypto);
        let endpoint = proto::Endpoint::new(
            Arc::new(proto::EndpointConfig::default()),
            Some(Arc::new(server)),
            false,
            None,
        );
        State::new(endpoint, counters)
    }

    /// The first datagram (an Initial with a ClientHello) of a fresh
    /// client connection, as any device would send it.
    fn client_initial(client: &mut proto::Endpoint, config: &proto::ClientConfig, to: SocketAddr) -> Vec<u8> {
        let (_, mut conn) = client.connect(Instant::now(), config.clone(), to, "localhost").unwrap();
        let mut buf = Vec::new();
        let t = conn.poll_transmit(Instant::now(), 1, &mut buf).unwrap();
        buf.truncate(t.size);
        buf
    }

    fn client() -> (proto::Endpoint, proto::ClientConfig) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        tls.alpn_protocols = vec![crate::sync::frame::ALPN.to_vec()];
        let quic = quinn_proto::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let config = proto::ClientConfig::new(Arc::new(quic));
        let endpoint = proto::Endpoint::new(Arc::new(proto::EndpointConfig::default()), None, false, None);
        (endpoint, config)
    }

    #[test]
    fn a_stalled_socket_holds_at_most_max_outgoing_datagrams() {
        let counters = DriverCounters::default();
        let mut st = server_state(counters.clone());
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let extra = 904;
        for _ in 0..MAX_OUTGOING + extra {
            st.queue(to, vec![0; 1200]);
        }
        assert_eq!(st.outgoing.len(), MAX_OUTGOING, "the queue is bounded");
        assert_eq!(counters.datagrams_dropped.get(), extra as u64, "every drop is counted");
    }

    #[test]
    fn a_burst_of_handshakes_waits_at_most_max_incoming() {
        let counters = DriverCounters::default();
        let mut st = server_state(counters.clone());
        let server: SocketAddr = "127.0.0.1:7702".parse().unwrap();
        let (mut client, config) = client();
        let extra = 50;
        for i in 0..MAX_INCOMING + extra {
            // Each attempt from its own address, as from many devices.
            let from = SocketAddr::from(([127, 0, (i / 60_000) as u8 + 1, 1], 1024 + (i % 60_000) as u16));
            let initial = client_initial(&mut client, &config, server);
            st.datagram(Instant::now(), from, &initial);
        }
        assert_eq!(st.incoming.len(), MAX_INCOMING, "waiting handshakes are bounded");
        assert_eq!(
            counters.handshakes_refused.get(),
            extra as u64,
            "every refused attempt is counted"
        );
        // Each refusal answered the device (CONNECTION_REFUSED), so it
        // does not wait for a timeout.
        assert_eq!(st.outgoing.len(), extra, "one refusal sent per refused attempt");
    }
}
