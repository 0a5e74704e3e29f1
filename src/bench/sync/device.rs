//! The bench's own device: a lean QUIC session of the device protocol
//! (docs/sync-protocol.md), with nothing a measurement does not need.
//!
//! The product's client (`sync::client`) keeps a copy of the data, queues
//! writes and reconnects by itself; a bench that opens ten thousand
//! sessions and stamps every frame as it arrives needs none of that, and
//! must not pay for it. A [`Connector`] holds a few quinn endpoints (UDP
//! sockets) that every device shares, and one client configuration per
//! node, pinned to the SHA-256 fingerprint of that node's certificate from
//! its `/sync-info`: a certificate with another fingerprint fails the
//! handshake, whatever names it carries.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use quinn::crypto::rustls::QuicClientConfig;

use super::setup::SyncNode;
use crate::bench::driver::Failure;
use crate::proto::device_frame::Msg as Up;
use crate::proto::server_frame::Msg as Down;
use crate::proto::{
    device_hello, DeviceFrame, DeviceHello, DeviceSubscribe, DeviceWrite, RecordPatch, ServerFrame, SyncCursor,
    SyncWelcome,
};
use crate::sync::client::{PinnedCertificate, Trust};
use crate::sync::close::CloseCode;
use crate::sync::frame::{encode_frame, read_frame, ALPN, PROTOCOL_VERSION};

/// How long one step of a session (the handshake, one frame) may take
/// before the bench calls the server stuck.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes the server may send on the session's stream before the device
/// reads them. A device reads at once; the window only has to hold a
/// Reload of the bench's small datasets and a burst of changes.
const STREAM_WINDOW: u32 = 256 * 1024;
/// A device keeps its session open for at most this long without hearing
/// from the node; the node's keepalive (15 s by default) is well inside.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// The receive (and send) buffer asked for each device socket. With the
/// kernel's default (about 208 KiB on Linux) a reconnect storm of a
/// thousand devices overflows the bench's own sockets: the handshake
/// packets are dropped, and QUIC's retransmission timers (1 s, 2 s,
/// 4 s...) would be measured instead of the node. The kernel caps the
/// request at `net.core.rmem_max`; the report shows what was granted.
pub const SOCKET_BUFFER: usize = 8 << 20;
/// The certificate name asked for. Pinning by fingerprint makes the name
/// irrelevant; the node's self-signed certificate carries `localhost`.
const SERVER_NAME: &str = "localhost";

/// A quinn client configuration that pins `fingerprint`.
fn client_config(fingerprint: &str) -> anyhow::Result<quinn::ClientConfig> {
    let pins = match Trust::fingerprints(&[fingerprint]).map_err(|e| anyhow::anyhow!("{e}"))? {
        Trust::Fingerprints(pins) => pins,
        Trust::CaPem(_) => anyhow::bail!("a fingerprint gave no pin"),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCertificate::new(pins, provider)))
        .with_no_client_auth();
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(quinn::VarInt::from_u32(STREAM_WINDOW));
    transport.receive_window(quinn::VarInt::from_u32(STREAM_WINDOW * 2));
    transport.send_window(u64::from(STREAM_WINDOW));
    // The server opens no stream.
    transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(0));
    transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    transport.datagram_receive_buffer_size(None);
    transport.max_idle_timeout(Some(quinn::IdleTimeout::try_from(IDLE_TIMEOUT)?));
    // The node pings quiet connections; the devices only answer.
    transport.keep_alive_interval(None);
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(crypto)?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// What every device of a run connects with: the shared UDP sockets and
/// each node's pinned configuration.
pub struct Connector {
    sockets: Vec<quinn::Endpoint>,
    next: AtomicUsize,
    nodes: Vec<(SyncNode, quinn::ClientConfig)>,
    ports: Vec<u16>,
    recv_buffer: usize,
}

/// A UDP socket bound to `bind` with [`SOCKET_BUFFER`] asked for both
/// ways, and the receive buffer the kernel granted (Linux reports twice
/// the usable size; halved here).
fn udp_socket(bind: SocketAddr) -> std::io::Result<(std::net::UdpSocket, usize)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer still works, and the report says so.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&bind.into())?;
    let granted = s
        .recv_buffer_size()
        .map_or(0, |b| if cfg!(target_os = "linux") { b / 2 } else { b });
    Ok((s.into(), granted))
}

impl Connector {
    /// `sockets` quinn endpoints bound to an ephemeral port of the nodes'
    /// address family, and a configuration per node.
    pub fn new(nodes: &[SyncNode], sockets: usize) -> anyhow::Result<Connector> {
        let v6 = nodes.first().is_some_and(|n| n.sync_addr.is_ipv6());
        let bind: SocketAddr = if v6 {
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
        };
        let runtime = quinn::default_runtime().ok_or_else(|| anyhow::anyhow!("no async runtime for quinn"))?;
        let mut granted = usize::MAX;
        let mut endpoints = Vec::with_capacity(sockets.max(1));
        for _ in 0..sockets.max(1) {
            let (socket, buffer) = udp_socket(bind).context("binding a UDP socket for the devices")?;
            granted = granted.min(buffer);
            endpoints.push(
                quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime.clone())
                    .context("a quinn endpoint for the devices")?,
            );
        }
        let ports = endpoints
            .iter()
            .filter_map(|e| e.local_addr().ok().map(|a| a.port()))
            .collect();
        let nodes = nodes
            .iter()
            .map(|n| Ok((n.clone(), client_config(&n.fingerprint_sha256)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Connector {
            sockets: endpoints,
            next: AtomicUsize::new(0),
            nodes,
            ports,
            recv_buffer: granted,
        })
    }

    /// The local UDP ports of the devices' sockets.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The receive buffer the kernel granted each device socket, in bytes.
    pub fn recv_buffer(&self) -> usize {
        self.recv_buffer
    }

    /// The nodes, in `--endpoint` order.
    pub fn node(&self, i: usize) -> Option<&SyncNode> {
        self.nodes.get(i).map(|(n, _)| n)
    }

    /// How many nodes there are.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Connects a device to node `node` and says Hello with `token`; the
    /// session once the Welcome came.
    pub async fn open(
        &self,
        node: usize,
        identity_pool_id: &str,
        token: &str,
        device_id: &str,
    ) -> Result<Session, Failure> {
        let Some((info, config)) = self.nodes.get(node) else {
            return Err(Failure::new("NoNode", format!("no node #{node}")));
        };
        let started = crate::clock::instant();
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.sockets.len();
        let connecting = self.sockets[i]
            .connect_with(config.clone(), info.sync_addr, SERVER_NAME)
            .map_err(|e| Failure::new("Connect", format!("{}: {e}", info.sync_addr)))?;
        let conn = match tokio::time::timeout(STEP_TIMEOUT, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(connection_failure(&e)),
            Err(_) => {
                return Err(Failure::new(
                    "Timeout",
                    format!("no QUIC handshake with {} within {STEP_TIMEOUT:?}", info.sync_addr),
                ))
            }
        };
        let handshake = crate::clock::instant() - started;
        let (send, recv) = match tokio::time::timeout(STEP_TIMEOUT, conn.open_bi()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(connection_failure(&e)),
            Err(_) => return Err(Failure::new("Timeout", "no stream credit from the node".into())),
        };
        let mut session = Session {
            conn,
            send,
            recv,
            max_frame: info.max_frame_bytes,
            welcome: SyncWelcome::default(),
            handshake,
            hello: Duration::ZERO,
        };
        let hello_sent = crate::clock::instant();
        session
            .send(&up(Up::Hello(DeviceHello {
                version: PROTOCOL_VERSION,
                identity_pool_id: identity_pool_id.to_string(),
                credential: Some(device_hello::Credential::Credentials(token.to_string())),
                device_id: device_id.to_string(),
            })))
            .await?;
        match session.next().await? {
            Down::Welcome(w) => {
                session.welcome = w;
                session.hello = crate::clock::instant() - hello_sent;
                Ok(session)
            }
            other => Err(unexpected("a Welcome", &other)),
        }
    }

    /// Waits (at most `within`) until every connection of every socket has
    /// finished closing, so that the nodes have seen the closes.
    pub async fn wait_idle(&self, within: Duration) {
        let all = futures::future::join_all(self.sockets.iter().map(|s| s.wait_idle()));
        let _ = tokio::time::timeout(within, all).await;
    }
}

/// A `DeviceFrame` with `msg`.
pub fn up(msg: Up) -> DeviceFrame {
    DeviceFrame { msg: Some(msg) }
}

/// A write of one `replace` patch of `key` to `dataset`.
pub fn write_frame(request_id: u64, dataset: &str, key: &str, value: String, sync_count: i64) -> DeviceFrame {
    up(Up::Write(DeviceWrite {
        request_id,
        dataset_name: dataset.to_string(),
        patches: vec![RecordPatch {
            op: "replace".into(),
            key: key.to_string(),
            value: Some(value),
            sync_count,
            device_last_modified_date: 0,
        }],
    }))
}

/// How a connection ended, as a failure: the node's close code by name.
pub fn connection_failure(e: &quinn::ConnectionError) -> Failure {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => {
            let code = c.error_code.into_inner();
            let name = u32::try_from(code).map_or("UNKNOWN", |c| CloseCode::from_u32(c).name());
            Failure::new(
                &format!("Closed{name}"),
                format!(
                    "the node closed the connection: {code} {name}: {}",
                    String::from_utf8_lossy(&c.reason)
                ),
            )
        }
        quinn::ConnectionError::TimedOut => Failure::new("Timeout", "the QUIC connection timed out".into()),
        other => Failure::new("Connection", other.to_string()),
    }
}

fn unexpected(wanted: &str, got: &Down) -> Failure {
    match got {
        Down::Goodbye(g) => {
            let name = CloseCode::from_u32(g.code).name();
            Failure::new(&format!("Closed{name}"), format!("Goodbye {}: {}", g.code, g.reason))
        }
        other => Failure::new("Protocol", format!("expected {wanted}, got {}", kind(other))),
    }
}

/// The name of a server message, for error messages.
pub fn kind(m: &Down) -> &'static str {
    match m {
        Down::Welcome(_) => "Welcome",
        Down::Change(_) => "Change",
        Down::Resync(_) => "Resync",
        Down::Reload(_) => "Reload",
        Down::CaughtUp(_) => "CaughtUp",
        Down::WriteResult(_) => "WriteResult",
        Down::Pong(_) => "Pong",
        Down::Goodbye(_) => "Goodbye",
    }
}

/// What a Subscribe came to, up to its `SyncCaughtUp`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// The node could not resume the cursor and sent a Reload.
    pub reloaded: bool,
    /// `SyncChange`s before the `SyncCaughtUp`.
    pub changes: u64,
    /// Changes whose `seq` skipped ahead of the previous one + 1
    /// (resumes only: a Reload's changes carry no sequence to check).
    pub gaps: u64,
    /// Changes whose `seq` was not above the previous one.
    pub dups: u64,
    /// The `SyncCaughtUp` cursor.
    pub cursor: SyncCursor,
}

/// Tracks `cursor.seq` across a device's changes: it must rise by
/// exactly one from change to change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqCheck {
    /// The last change's seq (or the cursor the stream started after).
    pub last: u64,
    /// Changes that skipped ahead.
    pub gaps: u64,
    /// Changes at or below the last one.
    pub dups: u64,
}

impl SeqCheck {
    /// A check of a stream that starts after `seq`.
    pub fn after(seq: u64) -> Self {
        SeqCheck {
            last: seq,
            gaps: 0,
            dups: 0,
        }
    }

    /// Records a change of `seq`; whether it was the expected one.
    pub fn see(&mut self, seq: u64) -> bool {
        if seq == self.last.wrapping_add(1) {
            self.last = seq;
            true
        } else if seq > self.last {
            self.gaps += 1;
            self.last = seq;
            false
        } else {
            self.dups += 1;
            false
        }
    }
}

/// One device session: its connection and its one stream.
pub struct Session {
    /// The QUIC connection.
    pub conn: quinn::Connection,
    /// The device's half of the control stream.
    pub send: quinn::SendStream,
    /// The node's half.
    pub recv: quinn::RecvStream,
    /// The largest frame either side may send.
    pub max_frame: u32,
    /// The node's answer to the Hello.
    pub welcome: SyncWelcome,
    /// How long the QUIC handshake took.
    pub handshake: Duration,
    /// From sending the Hello to the Welcome (the node checks the
    /// credential).
    pub hello: Duration,
}

impl Session {
    /// Sends one frame.
    pub async fn send(&mut self, f: &DeviceFrame) -> Result<(), Failure> {
        let bytes = encode_frame(f, self.max_frame).map_err(|e| Failure::new("Encode", e.to_string()))?;
        send_bytes(&mut self.send, &bytes).await
    }

    /// The next server message, within [`STEP_TIMEOUT`].
    pub async fn next(&mut self) -> Result<Down, Failure> {
        match tokio::time::timeout(STEP_TIMEOUT, next_frame(&mut self.recv, self.max_frame)).await {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(f)) => Err(self.why(f)),
            Err(_) => Err(Failure::new(
                "Timeout",
                format!("no frame from the node within {STEP_TIMEOUT:?}"),
            )),
        }
    }

    /// A stream failure explained by the connection's close, when it was
    /// closed.
    fn why(&self, f: Failure) -> Failure {
        match self.conn.close_reason() {
            Some(e) => connection_failure(&e),
            None => f,
        }
    }

    /// Subscribes to every dataset from `cursor` (none: a Reload) and
    /// reads until `SyncCaughtUp`, checking a resume's sequence.
    pub async fn subscribe(&mut self, cursor: Option<SyncCursor>) -> Result<CatchUp, Failure> {
        let mut check = SeqCheck::after(cursor.map_or(0, |c| c.seq));
        self.send(&up(Up::Subscribe(DeviceSubscribe {
            dataset_name: String::new(),
            cursor,
        })))
        .await?;
        let mut out = CatchUp::default();
        loop {
            match self.next().await? {
                Down::Change(c) => {
                    out.changes += 1;
                    if !out.reloaded {
                        check.see(c.cursor.map_or(0, |c| c.seq));
                    }
                }
                Down::Reload(_) => out.reloaded = true,
                Down::Resync(_) | Down::Pong(_) | Down::WriteResult(_) => {}
                Down::CaughtUp(c) => {
                    out.cursor = c.cursor.unwrap_or_default();
                    out.gaps = check.gaps;
                    out.dups = check.dups;
                    return Ok(out);
                }
                other => return Err(unexpected("changes or CaughtUp", &other)),
            }
        }
    }

    /// Closes the connection at once, as a device that goes away does.
    pub fn close(&self) {
        self.conn.close(quinn::VarInt::from_u32(0), b"bench device leaving");
    }
}

/// Writes `bytes` on a device's stream.
pub async fn send_bytes(send: &mut quinn::SendStream, bytes: &[u8]) -> Result<(), Failure> {
    match tokio::time::timeout(STEP_TIMEOUT, send.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure::new("Stream", format!("sending: {e}"))),
        Err(_) => Err(Failure::new(
            "Timeout",
            format!("the node took no frame for {STEP_TIMEOUT:?}"),
        )),
    }
}

/// The next server message on `recv`, without a time limit (a live
/// reader waits as long as the run lasts).
pub async fn next_frame(recv: &mut quinn::RecvStream, max_frame: u32) -> Result<Down, Failure> {
    match read_frame::<ServerFrame, _>(recv, max_frame, None).await {
        Ok(Some(ServerFrame { msg: Some(m) })) => Ok(m),
        Ok(Some(ServerFrame { msg: None })) => Err(Failure::new("Protocol", "an empty ServerFrame".into())),
        Ok(None) => Err(Failure::new("Stream", "the node ended the stream".into())),
        Err(e) => Err(Failure::new("Stream", e.to_string())),
    }
}

/// Packets the kernel dropped, for want of buffer room, on the UDP
/// sockets bound to one of `ports` on this machine (the `drops` column of
/// `/proc/net/udp` and `/proc/net/udp6`, counted since each socket was
/// made). `None` where procfs is not there.
pub fn udp_drops(ports: &[u16]) -> Option<u64> {
    let mut total = None;
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            *total.get_or_insert(0) += parse_udp_drops(&text, ports);
        }
    }
    total
}

/// The drops of the sockets of `ports` in a `/proc/net/udp` text.
pub fn parse_udp_drops(text: &str, ports: &[u16]) -> u64 {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
            let drops: u64 = fields.get(12)?.parse().ok()?;
            ports.contains(&port).then_some(drops)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_must_rise_by_one() {
        let mut c = SeqCheck::after(4);
        assert!(c.see(5));
        assert!(c.see(6));
        assert!(!c.see(6), "a duplicate");
        assert!(!c.see(3), "a change from the past");
        assert!(!c.see(9), "a gap");
        assert!(c.see(10));
        assert_eq!((c.last, c.gaps, c.dups), (10, 1, 2));
    }

    #[test]
    fn udp_drops_are_read_per_port() {
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  1: 0100007F:6C48 00000000:0000 07 00000000:00033E00 00:00000000 00000000     0        0 123 2 0000000000000000 405\n\
  2: 00000000:8F57 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 124 2 0000000000000000 229\n\
  3: 0100007F:6C52 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 125 2 0000000000000000 5\n";
        assert_eq!(parse_udp_drops(text, &[0x6C48]), 405);
        assert_eq!(parse_udp_drops(text, &[0x6C48, 0x6C52]), 410);
        assert_eq!(parse_udp_drops(text, &[36695]), 229);
        assert_eq!(parse_udp_drops(text, &[1]), 0);
    }

    #[test]
    fn close_codes_are_named() {
        let f = unexpected(
            "a Welcome",
            &Down::Goodbye(crate::proto::SyncGoodbye {
                code: 1,
                reason: "bad token".into(),
            }),
        );
        assert_eq!(f.code, "ClosedUNAUTHENTICATED");
        assert!(f.message.contains("bad token"));
        let f = unexpected("a Welcome", &Down::Pong(crate::proto::SyncPong { nonce: 1 }));
        assert_eq!(f.code, "Protocol");
    }
}
