//! A raw device of the sync protocol for tests: a real quinn client that
//! speaks frames (`tessera::sync::frame`, `tessera::proto`) one by one,
//! so that a test can send exactly what it wants, hostile bytes included,
//! and see exactly what the server answers. It is not the product's
//! client (`tessera::sync::client`), and does not depend on it.
//!
//! The server's certificate is accepted whatever it is (a test checks its
//! fingerprint against `/sync-info`), and the DER it presented is kept.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use prost::Message;
use quinn::crypto::rustls::QuicClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tessera::proto::device_frame::Msg as Up;
use tessera::proto::server_frame::Msg as Down;
use tessera::proto::*;
use tessera::sync::frame::{encode_frame, read_frame, ALPN, DEFAULT_MAX_FRAME_BYTES};
use tokio::io::AsyncWriteExt;

/// How long a test waits for one frame before it calls the server stuck.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(15);

/// Accepts any server certificate (checking its signatures) and keeps the
/// one presented.
#[derive(Debug)]
struct KeepCert {
    presented: Arc<Mutex<Option<Vec<u8>>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for KeepCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.presented.lock().unwrap() = Some(end_entity.as_ref().to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// How a raw device connects.
#[derive(Debug, Clone)]
pub struct Options {
    /// The ALPN offered.
    pub alpn: Vec<u8>,
    /// The receive window of each stream (small: a device that reads
    /// slowly makes the server wait sooner).
    pub stream_window: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            alpn: ALPN.to_vec(),
            stream_window: 1 << 20,
        }
    }
}

/// One QUIC connection of a raw device.
pub struct RawConn {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    /// The DER of the certificate the server presented.
    pub presented_cert: Vec<u8>,
}

/// The control stream of a raw device.
pub struct RawStream {
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
}

/// A client endpoint and its TLS configuration, reused across
/// connections so that a reconnect can resume its TLS session (and send
/// 0-RTT data).
pub struct Connector {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    presented: Arc<Mutex<Option<Vec<u8>>>>,
}

impl Connector {
    /// A client with `opts`, offering 0-RTT on resumed sessions.
    pub fn new(opts: &Options) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let presented = Arc::new(Mutex::new(None));
        let mut crypto = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(KeepCert {
                presented: presented.clone(),
                provider,
            }))
            .with_no_client_auth();
        crypto.alpn_protocols = vec![opts.alpn.clone()];
        crypto.enable_early_data = true;
        let mut transport = quinn::TransportConfig::default();
        transport.stream_receive_window(quinn::VarInt::from_u32(opts.stream_window));
        transport.receive_window(quinn::VarInt::from_u32(opts.stream_window.saturating_mul(2)));
        let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(crypto)?));
        config.transport_config(Arc::new(transport));
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        Ok(Connector {
            endpoint,
            config,
            presented,
        })
    }

    fn connecting(&self, addr: &str) -> Result<quinn::Connecting> {
        let addr: SocketAddr = addr.parse().with_context(|| format!("sync address {addr}"))?;
        Ok(self.endpoint.connect_with(self.config.clone(), addr, "localhost")?)
    }

    fn presented(&self) -> Result<Vec<u8>> {
        self.presented
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| anyhow!("the server presented no certificate"))
    }

    /// A full (1-RTT) handshake with the sync listener at `addr`.
    pub async fn connect(&self, addr: &str) -> Result<RawConn> {
        let conn = tokio::time::timeout(FRAME_TIMEOUT, self.connecting(addr)?)
            .await
            .map_err(|_| anyhow!("QUIC handshake with {addr} timed out"))??;
        Ok(RawConn {
            endpoint: self.endpoint.clone(),
            conn,
            presented_cert: self.presented()?,
        })
    }

    /// A resumed connection whose first data goes out as 0-RTT, and the
    /// handshake's verdict on it (true: the server accepted the 0-RTT
    /// data). Fails if there is no session to resume.
    pub fn connect_0rtt(&self, addr: &str) -> Result<(RawConn, quinn::ZeroRttAccepted)> {
        let (conn, accepted) = self
            .connecting(addr)?
            .into_0rtt()
            .map_err(|_| anyhow!("no TLS session to resume with {addr}"))?;
        Ok((
            RawConn {
                endpoint: self.endpoint.clone(),
                conn,
                presented_cert: Vec::new(),
            },
            accepted,
        ))
    }
}

/// Connects to the sync listener at `addr` with a fresh client.
pub async fn connect(addr: &str, opts: &Options) -> Result<RawConn> {
    Connector::new(opts)?.connect(addr).await
}

impl RawConn {
    /// Opens the control stream (QUIC opens it with its first bytes).
    pub async fn open(&self) -> Result<RawStream> {
        let (send, recv) = self.conn.open_bi().await?;
        Ok(RawStream { send, recv })
    }

    /// Waits until the server closes the connection; its application
    /// close code and reason.
    pub async fn closed(&self, within: Duration) -> Result<(u64, String)> {
        let e = tokio::time::timeout(within, self.conn.closed())
            .await
            .map_err(|_| anyhow!("the connection was still open after {within:?}"))?;
        match e {
            quinn::ConnectionError::ApplicationClosed(c) => Ok((
                c.error_code.into_inner(),
                String::from_utf8_lossy(&c.reason).into_owned(),
            )),
            other => bail!("the connection ended without an application close: {other}"),
        }
    }
}

/// A `DeviceFrame` with `msg`.
pub fn up(msg: Up) -> DeviceFrame {
    DeviceFrame { msg: Some(msg) }
}

/// A Hello with the identity's credentials.
pub fn hello(identity_pool_id: &str, credentials: &str, device_id: &str) -> DeviceFrame {
    up(Up::Hello(DeviceHello {
        version: 1,
        identity_pool_id: identity_pool_id.into(),
        credential: Some(device_hello::Credential::Credentials(credentials.into())),
        device_id: device_id.into(),
    }))
}

/// A Subscribe to `dataset` ("" for all) from `cursor`.
pub fn subscribe(dataset: &str, cursor: Option<SyncCursor>) -> DeviceFrame {
    up(Up::Subscribe(DeviceSubscribe {
        dataset_name: dataset.into(),
        cursor,
    }))
}

/// A write of `patches` to `dataset`.
pub fn write(request_id: u64, dataset: &str, patches: Vec<RecordPatch>) -> DeviceFrame {
    up(Up::Write(DeviceWrite {
        request_id,
        dataset_name: dataset.into(),
        patches,
    }))
}

/// A `replace` patch.
pub fn replace(key: &str, value: &str, sync_count: i64) -> RecordPatch {
    RecordPatch {
        op: "replace".into(),
        key: key.into(),
        value: Some(value.into()),
        sync_count,
        device_last_modified_date: 0,
    }
}

/// A ping.
pub fn ping(nonce: u64) -> DeviceFrame {
    up(Up::Ping(DevicePing { nonce }))
}

impl RawStream {
    /// Sends one frame.
    pub async fn send(&mut self, f: &DeviceFrame) -> Result<()> {
        let bytes = encode_frame(f, DEFAULT_MAX_FRAME_BYTES)?;
        self.send.write_all(&bytes).await?;
        Ok(())
    }

    /// Sends bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.send.write_all(bytes).await?;
        self.send.flush().await?;
        Ok(())
    }

    /// The next frame; `None` when the server finished the stream.
    pub async fn recv(&mut self) -> Result<Option<ServerFrame>> {
        self.recv_within(FRAME_TIMEOUT).await
    }

    /// The next frame within `within`.
    pub async fn recv_within(&mut self, within: Duration) -> Result<Option<ServerFrame>> {
        tokio::time::timeout(
            within,
            read_frame::<ServerFrame, _>(&mut self.recv, DEFAULT_MAX_FRAME_BYTES, None),
        )
        .await
        .map_err(|_| anyhow!("no frame from the server within {within:?}"))?
        .map_err(|e| anyhow!("reading a server frame: {e}"))
    }

    /// The next frame's message; an error if the stream ended.
    pub async fn next(&mut self) -> Result<Down> {
        self.recv()
            .await?
            .ok_or_else(|| anyhow!("the server ended the stream"))?
            .msg
            .ok_or_else(|| anyhow!("an empty ServerFrame"))
    }

    /// Sends a Hello and expects the Welcome.
    pub async fn hello(&mut self, identity_pool_id: &str, credentials: &str, device_id: &str) -> Result<SyncWelcome> {
        self.send(&hello(identity_pool_id, credentials, device_id)).await?;
        match self.next().await? {
            Down::Welcome(w) => Ok(w),
            other => bail!("expected a Welcome, got {other:?}"),
        }
    }

    /// Reads until the server's Goodbye (skipping other frames).
    pub async fn goodbye(&mut self) -> Result<SyncGoodbye> {
        loop {
            match self.recv().await? {
                Some(ServerFrame {
                    msg: Some(Down::Goodbye(g)),
                }) => return Ok(g),
                Some(_) => continue,
                None => bail!("the stream ended without a Goodbye"),
            }
        }
    }

    /// Reads frames until `SyncCaughtUp`; the changes on the way, and the
    /// other frames (Reload, Resync) as they came.
    pub async fn until_caught_up(&mut self) -> Result<(Vec<SyncChange>, Vec<Down>, SyncCursor)> {
        let mut changes = vec![];
        let mut others = vec![];
        loop {
            match self.next().await? {
                Down::Change(c) => changes.push(c),
                Down::CaughtUp(c) => {
                    return Ok((changes, others, c.cursor.unwrap_or_default()));
                }
                Down::Goodbye(g) => bail!("Goodbye while catching up: {g:?}"),
                other => others.push(other),
            }
        }
    }

    /// Writes and waits for that write's result, keeping the changes
    /// that arrived meanwhile in `seen`.
    pub async fn write_and_wait(
        &mut self,
        request_id: u64,
        dataset: &str,
        patches: Vec<RecordPatch>,
        seen: &mut Vec<SyncChange>,
    ) -> Result<sync_write_result::Result> {
        self.send(&write(request_id, dataset, patches)).await?;
        loop {
            match self.next().await? {
                Down::WriteResult(r) if r.request_id == request_id => {
                    return r.result.ok_or_else(|| anyhow!("a WriteResult without a result"))
                }
                Down::Change(c) => seen.push(c),
                Down::Goodbye(g) => bail!("Goodbye while waiting for write {request_id}: {g:?}"),
                _ => {}
            }
        }
    }

    /// Ends the device's side of the stream.
    pub async fn finish(&mut self) -> Result<()> {
        self.send.finish()?;
        Ok(())
    }
}

/// A frame whose body decodes as a `DeviceFrame` with no `msg`: only
/// field 9, which the protocol does not define (a varint).
pub fn unknown_message() -> Vec<u8> {
    let body = [9 << 3, 1];
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// A frame header announcing `len` bytes.
pub fn length_prefix(len: u32) -> Vec<u8> {
    len.to_be_bytes().to_vec()
}

/// Encodes a `DeviceFrame` to its body bytes.
pub fn body(f: &DeviceFrame) -> Vec<u8> {
    f.encode_to_vec()
}

/// Opens another bidirectional stream and sends a few bytes on it (QUIC
/// opens a stream with its first bytes), as a hostile device would.
pub async fn open_extra_stream(conn: &quinn::Connection) -> Result<()> {
    let (mut send, _recv) = conn.open_bi().await?;
    send.write_all(&[0, 0, 0, 0]).await?;
    send.flush().await?;
    Ok(())
}
