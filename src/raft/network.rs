//! The client half of the peer transport: openraft's network traits over the
//! `tessera.v1.Peer` gRPC service.
//!
//! One tonic channel is cached per peer (it reconnects by itself); every call
//! carries a deadline and the cluster id and node ids that the receiver
//! checks. Connection failures map to openraft's `Unreachable`, which makes
//! openraft back off before retrying that peer.
#![allow(clippy::disallowed_methods, reason = "peer RPC timeouts")]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use tokio::io::AsyncReadExt;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::peer_auth::HDR_PEER_AUTH;
use super::snapshot_file::SnapshotFile;
use super::types::{Snapshot, TypeConfig, Vote};
use super::wire::{ForwardReply, ForwardRequest, HDR_CLUSTER, HDR_FROM, HDR_TO};
use super::ConsensusError;
use crate::model::cluster::NodeAddr;
use crate::proto::peer_client::PeerClient as GrpcPeerClient;
use crate::proto::{
    JoinAccepted, JoinHelloRequest, JoinHelloResponse, JoinOffer, NodeStatusRequest, NodeStatusResponse, RaftMessage,
    SnapshotChunk,
};
use crate::store::codec;

/// Largest peer message accepted or sent, bounding memory per call.
pub const MAX_PEER_MESSAGE_BYTES: usize = 16 << 20;
/// Snapshot chunk size on the wire.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Who this node is, shared by the peer client and server.
pub struct PeerContext {
    /// This node's id: the sender named in every outgoing credential.
    pub node_id: u64,
    /// This node's peer key: every outgoing call is signed with it.
    pub identity: super::peer_auth::PeerIdentity,
    /// Credentials made for outgoing calls, reused for a while per peer.
    pub credentials: super::peer_auth::CredentialCache,
    /// Learned at `cluster init` or from the first leader that calls us.
    pub cluster_id: RwLock<Option<String>>,
    /// TLS for outgoing peer calls; `None` means plaintext.
    pub client_tls: Option<ClientTlsConfig>,
    /// Deadline for forwarded requests and status calls.
    pub forward_timeout: Duration,
    /// Where snapshot transfers are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Peers reached at another address than their advertised one.
    pub peer_address_overrides: BTreeMap<u64, String>,
}

impl PeerContext {
    /// The cluster id, or empty if not yet known.
    pub fn cluster_id(&self) -> String {
        self.cluster_id
            .read()
            .map(|c| c.clone().unwrap_or_default())
            .unwrap_or_default()
    }
}

/// Creates peer clients for openraft; cheap to clone.
#[derive(Clone)]
pub struct PeerNetwork {
    ctx: Arc<PeerContext>,
    channels: Arc<Mutex<BTreeMap<(u64, String), Channel>>>,
}

/// Bytes of entries one append carries at most: well under
/// [`MAX_PEER_MESSAGE_BYTES`], so that a follower catching up over large
/// entries (bulk imports) is never sent a message it must refuse.
pub const APPEND_BUDGET_BYTES: usize = 8 << 20;

/// Entries up to this many are never measured: each is bounded near 1 MiB
/// (the API request limit; a sync update, whose gRPC bound is 2 MiB, is
/// refused unless its keys and values fit one 1 MiB dataset), so they fit
/// the budget together.
const UNMEASURED_ENTRIES: usize = 8;

/// Trims `entries` to the prefix that fits [`APPEND_BUDGET_BYTES`] (at
/// least one entry). Returns the last log id kept when it trimmed.
fn fit_append(entries: &mut Vec<super::types::Entry>) -> Option<super::types::LogId> {
    if entries.len() <= UNMEASURED_ENTRIES {
        return None;
    }
    let mut used = 0usize;
    let mut keep = 0usize;
    for e in entries.iter() {
        let n = codec::encode(e).map(|b| b.len()).unwrap_or(usize::MAX);
        if keep > 0 && used.saturating_add(n) > APPEND_BUDGET_BYTES {
            break;
        }
        used = used.saturating_add(n);
        keep += 1;
    }
    if keep == entries.len() {
        return None;
    }
    entries.truncate(keep);
    entries.last().map(|e| e.log_id)
}

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerCallError {
    /// No connection to the peer (refused, timed out, unknown address).
    #[error("peer {0} unreachable: {1}")]
    Unreachable(u64, String),
    /// The peer answered with a gRPC error.
    #[error("peer {0} answered with an error: {1}")]
    Status(u64, tonic::Status),
    /// The peer's reply did not decode.
    #[error("peer {0} sent an undecodable reply: {1}")]
    Decode(u64, String),
    /// The leader answered a forwarded request with a consensus error.
    #[error(transparent)]
    Forward(#[from] ConsensusError),
}

impl PeerNetwork {
    /// A network over `ctx`, with no channel opened yet (they are opened on first use and reused).
    pub fn new(ctx: Arc<PeerContext>) -> Self {
        PeerNetwork {
            ctx,
            channels: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// A client for `target` at `addr`, reusing the cached channel.
    pub fn client(&self, target: u64, addr: &NodeAddr) -> PeerClient {
        let mut addr = addr.clone();
        if let Some(over) = self.ctx.peer_address_overrides.get(&target) {
            addr.peer_addr = over.clone();
        }
        let addr = &addr;
        let key = (target, addr.peer_addr.clone());
        let channel = {
            let mut cache = match self.channels.lock() {
                Ok(c) => c,
                Err(poisoned) => poisoned.into_inner(),
            };
            cache
                .entry(key)
                .or_insert_with(|| make_channel(&addr.peer_addr, target, self.ctx.client_tls.clone()))
                .clone()
        };
        PeerClient {
            target,
            addr: addr.clone(),
            grpc: GrpcPeerClient::new(channel)
                .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES),
            ctx: self.ctx.clone(),
        }
    }
}

fn make_channel(peer_addr: &str, target: u64, tls: Option<ClientTlsConfig>) -> Channel {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = format!("{scheme}://{peer_addr}");
    let endpoint = match Endpoint::from_shared(uri) {
        Ok(e) => e,
        // An address that is not a URI can never connect; a channel to an
        // unroutable placeholder surfaces that as Unreachable on every call.
        Err(_) => Endpoint::from_static("http://invalid.invalid:1"),
    };
    let mut endpoint = endpoint
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(8 << 20));
    if let Some(tls) = tls {
        let tls = tls.domain_name(format!("node-{target}"));
        endpoint = match endpoint.clone().tls_config(tls) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, target, "invalid peer TLS configuration");
                endpoint
            }
        };
    }
    endpoint.connect_lazy()
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &NodeAddr) -> Self::Network {
        self.client(target, node)
    }
}

/// A connection to one peer.
pub struct PeerClient {
    target: u64,
    addr: NodeAddr,
    grpc: GrpcPeerClient<Channel>,
    ctx: Arc<PeerContext>,
}

impl PeerClient {
    fn request<T>(&self, body: T, timeout: Option<Duration>) -> tonic::Request<T> {
        let mut req = tonic::Request::new(body);
        if let Some(t) = timeout {
            req.set_timeout(t);
        }
        let cluster_id = self.ctx.cluster_id();
        let credential = self.ctx.credentials.get(
            &self.ctx.identity,
            &cluster_id,
            self.ctx.node_id,
            self.target,
            crate::clock::now_millis() / 1000,
        );
        let md = req.metadata_mut();
        if let Ok(v) = credential.parse() {
            md.insert(HDR_PEER_AUTH, v);
        }
        if let Ok(v) = cluster_id.parse() {
            md.insert(HDR_CLUSTER, v);
        }
        if let Ok(v) = self.ctx.node_id.to_string().parse() {
            md.insert(HDR_FROM, v);
        }
        if let Ok(v) = self.target.to_string().parse() {
            md.insert(HDR_TO, v);
        }
        req
    }

    fn status_to_rpc(&self, s: tonic::Status) -> RPCError<TypeConfig> {
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown
                if s.message().contains("transport") || s.code() == tonic::Code::Unavailable =>
            {
                RPCError::Unreachable(Unreachable::new(&PeerCallError::Unreachable(
                    self.target,
                    s.message().to_string(),
                )))
            }
            _ => RPCError::Network(NetworkError::new(&PeerCallError::Status(self.target, s))),
        }
    }

    fn decode<T: DeserializeOwned>(&self, msg: RaftMessage) -> Result<T, PeerCallError> {
        codec::decode(&msg.payload).map_err(|e| PeerCallError::Decode(self.target, e.to_string()))
    }

    async fn raft_call<Req, Resp>(
        &mut self,
        method: Method,
        rpc: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: serde::Serialize,
        Resp: DeserializeOwned,
    {
        let payload = codec::encode(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let req = self.request(RaftMessage { payload }, Some(option.hard_ttl()));
        let reply = match method {
            Method::Append => self.grpc.append_entries(req).await,
            Method::Vote => self.grpc.vote(req).await,
            Method::PreVote => self.grpc.pre_vote(req).await,
            Method::TransferLeader => self.grpc.transfer_leader(req).await,
        }
        .map_err(|s| self.status_to_rpc(s))?;
        let result: Result<Resp, String> = self
            .decode(reply.into_inner())
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // A remote Raft that stopped is as good as unreachable.
        result.map_err(|e| RPCError::Unreachable(Unreachable::new(&PeerCallError::Unreachable(self.target, e))))
    }

    /// Sends a request only the leader can serve and waits for its answer.
    pub async fn forward(&mut self, req: &ForwardRequest, timeout: Duration) -> Result<ForwardReply, PeerCallError> {
        let payload = codec::encode(req).map_err(|e| PeerCallError::Decode(self.target, e.to_string()))?;
        let req = self.request(RaftMessage { payload }, Some(timeout));
        let reply = self.grpc.forward(req).await.map_err(|s| match s.code() {
            // Only a failed connect proves the request was never delivered;
            // anything else may have reached the leader, so it is not retried.
            tonic::Code::Unavailable if never_sent(&s) => {
                PeerCallError::Unreachable(self.target, s.message().to_string())
            }
            _ => PeerCallError::Status(self.target, s),
        })?;
        let result: Result<ForwardReply, ConsensusError> = self.decode(reply.into_inner())?;
        Ok(result?)
    }

    /// Asks the peer for its Raft progress.
    pub async fn node_status(&mut self) -> Result<NodeStatusResponse, PeerCallError> {
        let req = self.request(NodeStatusRequest {}, Some(self.ctx.forward_timeout));
        self.grpc
            .node_status(req)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| PeerCallError::Unreachable(self.target, s.message().to_string()))
    }

    /// Join handshake step 1, sent to a fresh node.
    pub async fn join_hello(&mut self, req: JoinHelloRequest) -> Result<JoinHelloResponse, PeerCallError> {
        let req = self.request(req, Some(self.ctx.forward_timeout));
        self.grpc
            .join_hello(req)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| PeerCallError::Status(self.target, s))
    }

    /// Join handshake step 2.
    pub async fn join(&mut self, offer: JoinOffer) -> Result<JoinAccepted, PeerCallError> {
        let req = self.request(offer, Some(self.ctx.forward_timeout));
        self.grpc
            .join(req)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| PeerCallError::Status(self.target, s))
    }

    /// The address this client talks to.
    pub fn addr(&self) -> &NodeAddr {
        &self.addr
    }
}

/// Whether a transport failure happened before the request left this node
/// (connection refused or not established), judged from the error chain.
fn never_sent(s: &tonic::Status) -> bool {
    let mut text = s.message().to_ascii_lowercase();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(e) = source {
        text.push_str(&e.to_string().to_ascii_lowercase());
        source = e.source();
    }
    [
        "connection refused",
        "tcp connect error",
        "connect error",
        "dns error",
        "timed out connecting",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

enum Method {
    Append,
    Vote,
    PreVote,
    TransferLeader,
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let mut rpc = rpc;
        let sent = fit_append(&mut rpc.entries);
        let resp = self.raft_call(Method::Append, &rpc, &option).await?;
        // Only a prefix went out: report that much as replicated, and the
        // leader sends the rest next.
        Ok(match (sent, resp) {
            (Some(last), AppendEntriesResponse::Success) => AppendEntriesResponse::PartialSuccess(Some(last)),
            (_, other) => other,
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(Method::Vote, &rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(Method::PreVote, &rpc, &option).await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(Method::TransferLeader, &req, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let header = codec::encode(&(vote, snapshot.meta.clone()))
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let std_file = snapshot
            .snapshot
            .file
            .try_clone()
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let mut file = tokio::fs::File::from_std(std_file);
        use tokio::io::AsyncSeekExt;
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        // A reader task feeds a two-slot channel: at most a few chunks are in
        // memory however large the snapshot is.
        let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(2);
        let target = self.target;
        let reader = tokio::spawn(async move {
            let mut header = Some(header);
            loop {
                let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES];
                let mut filled = 0;
                while filled < buf.len() {
                    match file.read(&mut buf[filled..]).await {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) => {
                            // Ending the stream without `done` makes the
                            // receiver discard the partial transfer.
                            tracing::warn!(target, error = %e, "reading snapshot for transfer failed");
                            return;
                        }
                    }
                }
                buf.truncate(filled);
                let done = filled < SNAPSHOT_CHUNK_BYTES;
                let chunk = SnapshotChunk {
                    header: header.take().unwrap_or_default(),
                    data: buf,
                    done,
                };
                if tx.send(chunk).await.is_err() || done {
                    return;
                }
            }
        });
        let req = self.request(tokio_stream::wrappers::ReceiverStream::new(rx), None);
        let mut grpc = self.grpc.clone();
        let call = async move { grpc.install_snapshot(req).await };
        let reply = tokio::select! {
            r = call => r,
            closed = cancel => {
                reader.abort();
                return Err(StreamingError::Closed(closed));
            }
        };
        let reply = reply.map_err(|s| match self.status_to_rpc(s) {
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            RPCError::Network(n) => StreamingError::Network(n),
            other => StreamingError::Network(NetworkError::new(&other)),
        })?;
        self.ctx.metrics.snapshots_sent.inc();
        let result: Result<SnapshotResponse<TypeConfig>, String> = self
            .decode(reply.into_inner())
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| StreamingError::Unreachable(Unreachable::new(&PeerCallError::Unreachable(self.target, e))))
    }
}
