//! The QUIC device-sync server: the listener, its accept loop, connection
//! limits and graceful shutdown. The protocol is docs/sync-protocol.md.
//!
//! * [`tls`]: the certificate (configured or self-signed and kept), its
//!   fingerprint, and the rustls configuration (TLS 1.3, ALPN
//!   `tessera-sync/1`, single-use resumption tickets for 0-RTT).
//! * [`quic`]: the QUIC endpoint, quinn's protocol core driven by one task
//!   for every connection, so that an idle device costs little memory.
//! * [`session`]: one connection's state machine (Hello, Subscribe,
//!   writes, pings, live changes, timers, Goodbye).
//! * [`feed`]: what a subscribed session sends, merged from the store and
//!   the hub with no gap and no duplicate.
//! * [`limits`]: connections per node and per identity, counted in flight.
//! * [`convert`]: device frames to and from the sync model.
//!
//! # What one connection can cost
//!
//! QUIC is configured for a fleet of devices sending small messages, not
//! for bulk transfer (quinn's defaults: 1.25 MB stream and 10 MB send
//! windows, 100 streams). The bounds below are per connection, with the
//! defaults (`[sync]` and the constants here):
//!
//! | what | bound |
//! |------|-------|
//! | data received and not yet read (connection receive window; each stream 64 KiB) | 128 KiB |
//! | data sent and not yet acknowledged, or queued behind the device's window (send window) | 128 KiB |
//! | TLS handshake buffer (quinn's crypto buffer, during the handshake) | 16 KiB |
//! | frames queued for the writer, and the one it is writing ([`session::WRITER_QUEUE`] + 1) | 5 frames |
//! | hub queue of live changes not yet taken (`queue_events`, `queue_bytes`) | 256 events, at most 4 MiB |
//! | the first frame (the Hello), read outside the frame budget ([`session::MAX_HELLO_BYTES`]) | 64 KiB |
//! | later frames read and not yet done with: one being read, one handed over, writes in flight with their answers ([`session::WRITES_IN_FLIGHT`]) | 10 frames, all leased from the node-wide `frame_budget_bytes` (64 MiB) |
//! | the feed's backlog: a catch-up page, or a reload's datasets until sent | 64 changes (an identity's log keeps at most 8 MiB), or the identity's data (`max_datasets` × `max_dataset_bytes`, 20 MiB) |
//!
//! A device that stops reading costs its send window, the writer's queue
//! and its hub queue; the queue then overflows (it is dropped, and the
//! device gets `SyncResync` and the changes from the store once it reads
//! again), so the cost never grows with the number of changes. With
//! changes of a few hundred bytes that is about 128 KiB + 5 frames + 256
//! events, about 220 KiB. The worst case, every frame at `max_frame_bytes`
//! (2 MiB), is 128 KiB (receive) + 128 KiB (send) + 16 KiB (handshake) + 5
//! frames (10 MiB) + 4 MiB (hub queue), about 14.3 MiB, plus the feed's
//! backlog (at most the identity's data) and its share of the node-wide
//! frame budget; such frames take datasets of a megabyte. The windows are
//! credit, not allocations: an idle connection costs quinn's connection
//! state, its resumption ticket and the session's three small tasks.

pub mod chacha_suite;
pub mod convert;
pub mod feed;
pub mod limits;
pub mod quic;
pub mod session;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, VarInt};
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use self::limits::ConnectionLimits;
use self::session::{wait_stop, Shared};
use crate::metrics::Metrics;
use crate::service::sync::SyncService;
use crate::sync::close::CloseCode;
use crate::sync::frame::{encode_frame, FrameBudget};

/// Bytes a device may send on its stream before the server reads them.
pub const STREAM_RECEIVE_WINDOW: u32 = 64 * 1024;
/// Bytes a device may send on the whole connection before the server
/// reads them (the second stream a device may open, only to be refused,
/// shares it).
pub const CONNECTION_RECEIVE_WINDOW: u32 = 128 * 1024;
/// Bytes the server keeps sent and unacknowledged, or queued, per
/// connection.
pub const SEND_WINDOW: u64 = 128 * 1024;
/// Connections refused at once with a Goodbye when the node is full;
/// beyond them, refusals are a bare QUIC CONNECTION_REFUSED, so that a
/// flood of handshakes cannot make the refusing itself costly.
const REFUSALS_AT_ONCE: usize = 64;
/// How long a refused connection gets to open its stream and read the
/// Goodbye.
const REFUSAL_GRACE: Duration = Duration::from_secs(2);
/// How long shutdown waits for sessions to say Goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the sync listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum SyncServerError {
    /// The UDP address could not be resolved or bound.
    #[error("binding sync address {0}: {1}")]
    Bind(String, std::io::Error),
    /// The certificate or key could not be read, made or used.
    #[error("sync TLS: {0}")]
    Tls(String),
    /// A setting is out of range.
    #[error("sync settings: {0}")]
    Settings(String),
}

/// What the sync listener runs with (from the node's `sync_addr` and
/// `[sync]` configuration).
#[derive(Debug, Clone)]
pub struct SyncServerSettings {
    /// The UDP address to bind (`host:port`).
    pub bind: String,
    /// The address devices are told (`/sync-info`); `None`: the bound one.
    pub advertise: Option<String>,
    /// PEM certificate chain; with `key`, or neither for self-signed.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Where the self-signed pair is kept (`data_dir/keys`).
    pub keys_dir: PathBuf,
    /// Connections on this node at once.
    pub max_connections: usize,
    /// Sessions of one identity on this node at once.
    pub max_connections_per_identity: usize,
    /// The largest frame either side may send.
    pub max_frame_bytes: u32,
    /// Time from the first packet to the Hello.
    pub hello_timeout: Duration,
    /// A connection with no packet from the device for this long is gone.
    pub idle_timeout: Duration,
    /// How often the server pings an idle connection (`None`: never).
    pub keepalive: Option<Duration>,
    /// Node-wide bytes of device frames being read or held at once.
    pub frame_budget_bytes: u64,
}

impl SyncServerSettings {
    /// Settings for a listener on `bind` with the defaults of `[sync]`,
    /// keeping a self-signed certificate in `keys_dir`.
    pub fn new(bind: impl Into<String>, keys_dir: PathBuf) -> Self {
        SyncServerSettings {
            bind: bind.into(),
            advertise: None,
            cert: None,
            key: None,
            keys_dir,
            max_connections: 20_000,
            max_connections_per_identity: 16,
            max_frame_bytes: crate::sync::frame::DEFAULT_MAX_FRAME_BYTES,
            hello_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            keepalive: Some(Duration::from_secs(15)),
            frame_budget_bytes: 64 << 20,
        }
    }
}

/// What `/sync-info` tells a device about this node's listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncEndpointInfo {
    /// The address devices use.
    pub sync_addr: String,
    /// Lowercase hex SHA-256 of the certificate's DER bytes.
    pub fingerprint_sha256: String,
    /// The largest frame either side may send.
    pub max_frame_bytes: u32,
}

/// A running sync listener.
pub struct SyncServer {
    /// The bound UDP address.
    pub local_addr: SocketAddr,
    /// What devices are told about it.
    pub info: SyncEndpointInfo,
    task: JoinHandle<()>,
}

/// What the sync socket asks the kernel to buffer each way. A reconnect
/// storm brings thousands of handshakes at once; the kernel's default
/// (about 208 KiB) drops most of a burst, and every dropped datagram costs a
/// device a retransmission timeout.
const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// The listener's UDP socket, with [`SOCKET_BUFFER_BYTES`] asked for. The
/// kernel may grant less (Linux caps it at `net.core.rmem_max` and
/// `wmem_max`); that still works, and the log says how to raise it.
fn udp_socket(bind: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = s.set_recv_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::warn!(error = %e, "could not size the sync socket's receive buffer");
    }
    if let Err(e) = s.set_send_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::warn!(error = %e, "could not size the sync socket's send buffer");
    }
    s.bind(&bind.into())?;
    // Linux reports twice the usable size it granted.
    let granted = s
        .recv_buffer_size()
        .map_or(0, |b| if cfg!(target_os = "linux") { b / 2 } else { b });
    if granted < SOCKET_BUFFER_BYTES {
        tracing::warn!(
            granted_kib = granted / 1024,
            wanted_kib = SOCKET_BUFFER_BYTES / 1024,
            "the sync socket's receive buffer is smaller than asked: bursts of reconnects may drop datagrams; \
             raise it with `sysctl -w net.core.rmem_max={SOCKET_BUFFER_BYTES}`"
        );
    }
    Ok(s.into())
}

/// The QUIC transport for device sessions (see the module doc for what it
/// costs).
fn transport(settings: &SyncServerSettings) -> Result<quinn::TransportConfig, SyncServerError> {
    let mut t = quinn::TransportConfig::default();
    // One stream for the session, and credit for one more only so that a
    // device which opens it is told PROTOCOL rather than left blocked;
    // the connection window bounds both streams together.
    t.max_concurrent_bidi_streams(VarInt::from_u32(2));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW));
    t.receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW));
    t.send_window(SEND_WINDOW);
    t.datagram_receive_buffer_size(None);
    t.datagram_send_buffer_size(0);
    // Device frames are small, so packets of the 1,200-byte initial size
    // carry them. Path-MTU probing would double every connection's transmit
    // buffer to hold a probe, and segmentation offload reserves room for a
    // batch of ten full packets in each connection's buffer, kept for its
    // lifetime: about 1.2 KiB and 12 KiB per idle connection.
    t.mtu_discovery_config(None);
    t.enable_segmentation_offload(false);
    let idle = IdleTimeout::try_from(settings.idle_timeout)
        .map_err(|_| SyncServerError::Settings("idle timeout out of range".into()))?;
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval(settings.keepalive);
    Ok(t)
}

impl SyncServer {
    /// Binds the listener and starts accepting; sessions end with
    /// SHUTTING_DOWN once `stop` says true, and the task returned by
    /// [`SyncServer::into_task`] ends after them.
    pub async fn start(
        settings: SyncServerSettings,
        service: SyncService,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
    ) -> Result<Self, SyncServerError> {
        let bind = tokio::net::lookup_host(&settings.bind)
            .await
            .map_err(|e| SyncServerError::Bind(settings.bind.clone(), e))?
            .next()
            .ok_or_else(|| {
                SyncServerError::Bind(
                    settings.bind.clone(),
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
                )
            })?;
        let mut names = Vec::new();
        for a in [Some(&settings.bind), settings.advertise.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Some((host, _)) = a.rsplit_once(':') {
                names.push(host.trim_start_matches('[').trim_end_matches(']').to_string());
            }
        }
        names.retain(|h| h != "0.0.0.0" && h != "::");
        let identity = tls::load_or_generate(
            settings.cert.as_deref(),
            settings.key.as_deref(),
            &settings.keys_dir,
            &names,
        )?;
        let crypto = tls::server_crypto(&identity)?;
        let mut server = quinn::ServerConfig::with_crypto(crypto);
        server.transport_config(Arc::new(transport(&settings)?));
        server.migration(true);
        // 0-RTT data buffered for a connection not yet accepted: small.
        server.incoming_buffer_size(64 * 1024);
        server.incoming_buffer_size_total(16 << 20);
        let bind_error = |e| SyncServerError::Bind(settings.bind.clone(), e);
        let socket = udp_socket(bind).map_err(bind_error)?;
        let counters = quic::DriverCounters {
            datagrams_dropped: metrics.sync_datagrams_dropped.clone(),
            handshakes_refused: metrics.sync_handshakes_refused.clone(),
        };
        let endpoint = quic::Endpoint::new(server, socket, counters).map_err(bind_error)?;
        let local_addr = endpoint.local_addr();
        let info = SyncEndpointInfo {
            sync_addr: settings.advertise.clone().unwrap_or_else(|| local_addr.to_string()),
            fingerprint_sha256: identity.fingerprint_sha256.clone(),
            max_frame_bytes: settings.max_frame_bytes,
        };
        let limits = ConnectionLimits::new(
            settings.max_connections,
            settings.max_connections_per_identity,
            metrics.sync_connections.clone(),
        );
        let shared = Arc::new(Shared {
            service,
            budget: FrameBudget::new(settings.frame_budget_bytes),
            limits,
            max_frame_bytes: settings.max_frame_bytes,
            hello_timeout: settings.hello_timeout,
            metrics,
        });
        tracing::info!(
            %local_addr,
            advertised = %info.sync_addr,
            fingerprint_sha256 = %info.fingerprint_sha256,
            "sync listener started"
        );
        let task = tokio::spawn(accept_loop(endpoint, shared, stop));
        Ok(SyncServer { local_addr, info, task })
    }

    /// The accept loop's task: it ends once every session said Goodbye
    /// after `stop` (or after a grace period).
    pub fn into_task(self) -> JoinHandle<()> {
        self.task
    }
}

async fn accept_loop(endpoint: quic::Endpoint, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut sessions = JoinSet::new();
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    loop {
        tokio::select! {
            biased;
            _ = wait_stop(&mut stop) => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                match shared.limits.try_node() {
                    Some(slot) => {
                        sessions.spawn(session::serve(shared.clone(), incoming, slot, stop.clone()));
                    }
                    None => {
                        shared.metrics.sync_connections_refused.inc();
                        let reason = format!(
                            "this node holds its limit of {} device connections (sync.max_connections); try another node",
                            shared.limits.max_node()
                        );
                        match refusals.clone().try_acquire_owned() {
                            Ok(permit) => {
                                let max = shared.max_frame_bytes;
                                sessions.spawn(async move {
                                    refuse_busy(incoming, max, reason).await;
                                    drop(permit);
                                });
                            }
                            Err(_) => incoming.refuse(),
                        }
                    }
                }
            }
        }
    }
    // Sessions watch `stop` too and say Goodbye (SHUTTING_DOWN).
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while sessions.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("sync sessions did not close within {SHUTDOWN_GRACE:?}; closing them");
        sessions.abort_all();
    }
    endpoint.close(CloseCode::ShuttingDown.var_int(), b"the node is stopping");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    tracing::info!("sync listener stopped");
}

/// Completes the handshake of a connection the node has no room for, to
/// tell it why: a Goodbye on its stream if it opens one in time, and the
/// close code TOO_MANY_CONNECTIONS with `reason`.
async fn refuse_busy(incoming: quic::Incoming, max_frame: u32, reason: String) {
    let Ok(conn) = incoming.accept() else { return };
    if !matches!(tokio::time::timeout(REFUSAL_GRACE, conn.handshake()).await, Ok(true)) {
        conn.close(CloseCode::TooManyConnections.var_int(), reason.as_bytes());
        return;
    }
    if let Ok(Ok((mut send, _recv))) = tokio::time::timeout(REFUSAL_GRACE, conn.accept_bi()).await {
        let goodbye = convert::frame(crate::proto::server_frame::Msg::Goodbye(crate::proto::SyncGoodbye {
            code: CloseCode::TooManyConnections.as_u32(),
            reason: reason.clone(),
        }));
        if let Ok(bytes) = encode_frame(&goodbye, max_frame) {
            if send.write_all(&bytes).await.is_ok() && send.finish().is_ok() {
                let _ = tokio::time::timeout(REFUSAL_GRACE, send.stopped()).await;
            }
        }
    }
    conn.close(CloseCode::TooManyConnections.var_int(), reason.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The listener's socket gets the buffer it asks for, up to what the
    /// kernel allows (`net.core.rmem_max`), not the kernel's default.
    #[test]
    fn the_sync_socket_asks_for_a_burst_sized_buffer() {
        let socket = udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let granted = socket2::SockRef::from(&socket).recv_buffer_size().unwrap() / 2;
        let cap = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(SOCKET_BUFFER_BYTES);
        let want = SOCKET_BUFFER_BYTES.min(cap);
        assert!(granted >= want, "granted {granted} bytes, wanted {want}");
    }
}
