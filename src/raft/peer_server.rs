//! The server half of the peer transport: the `tessera.v1.Peer` service.
//!
//! Every call must prove that it comes from an admitted member of this
//! node's cluster (see [`super::peer_auth`]) before anything else is looked
//! at: a caller without a valid credential gets `Unauthenticated` and learns
//! nothing, not even this node's id. Only then is the call checked to be
//! addressed to this node id, and under mutual TLS the certificate must name
//! the sender. A fresh node trusts no one; it is bound to a cluster only by
//! the join handshake ([`super::join`]) with the cluster whose join token it
//! holds. Snapshot transfers are written to a temporary file with a bounded
//! size and only handed to Raft once complete.
#![allow(
    clippy::disallowed_methods,
    reason = "peer RPC handling reads the clock for credential checks"
)]

use std::io::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::join::JoinError;
use super::peer_auth::{PeerAuthError, VerifiedCache, HDR_PEER_AUTH};
use super::snapshot_file::SnapshotFile;
use super::types::{Snapshot, SnapshotMeta, Vote};
use super::wire::{ForwardReply, ForwardRequest, HDR_FROM, HDR_TO};
use super::ConsensusError;
use super::RaftNode;
use crate::proto::peer_server::Peer;
use crate::proto::{
    JoinAccepted, JoinHelloRequest, JoinHelloResponse, JoinOffer, NodeStatusRequest, NodeStatusResponse, RaftMessage,
    SnapshotChunk,
};
use crate::store::codec;

/// The peer service of one node.
pub struct PeerService {
    node: Arc<RaftNode>,
    verified: VerifiedCache,
    /// Unix seconds of the last refusal logged, so a flood of bad calls
    /// costs one log line per second.
    last_logged: AtomicI64,
}

impl PeerService {
    /// The peer service of `node`, with an empty cache of verified credentials.
    pub fn new(node: Arc<RaftNode>) -> Self {
        PeerService {
            node,
            verified: VerifiedCache::default(),
            last_logged: AtomicI64::new(0),
        }
    }

    /// The replicated peer key of `from`, or, until this node has applied
    /// it, the key the join handed over. A retired node has none.
    fn member_key(&self, from: u64) -> Option<[u8; 32]> {
        let store = self.node.store();
        match store.peer_key(from) {
            Ok(Some(rec)) => Some(rec.public_key),
            Ok(None) => {
                if store.is_retired(from).unwrap_or(true) {
                    return None;
                }
                let peers = store.bootstrap_peers().ok()?;
                peers.into_iter().find(|(id, _)| *id == from).map(|(_, k)| k)
            }
            Err(_) => None,
        }
    }

    /// Authenticates the caller, then refuses calls meant for another node.
    /// Returns the proven sender.
    fn check<T>(&self, req: &Request<T>, method: &'static str) -> Result<u64, Status> {
        let md = req.metadata();
        let now = crate::clock::now_millis() / 1000;
        let proven = match self.node.cluster_id() {
            None => Err(PeerAuthError::NotJoined),
            Some(cluster_id) => self.verified.check(
                md.get(HDR_PEER_AUTH).and_then(|v| v.to_str().ok()),
                &cluster_id,
                self.node.node_id(),
                now,
                |from| self.member_key(from),
            ),
        };
        let from = match proven {
            Ok(from) => from,
            Err(e) => {
                self.node.metrics().peer_auth_failures.inc();
                if self.last_logged.swap(now, Ordering::Relaxed) != now {
                    tracing::warn!(
                        method,
                        remote = ?req.remote_addr(),
                        reason = %e,
                        "refused a peer call without valid membership credentials"
                    );
                }
                return Err(Status::unauthenticated(e.to_string()));
            }
        };
        let to = md
            .get(HDR_TO)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if to != Some(self.node.node_id()) {
            return Err(Status::failed_precondition(format!(
                "this is node {}, not node {}; check the peer address in the membership",
                self.node.node_id(),
                to.map(|t| t.to_string()).unwrap_or_else(|| "?".into())
            )));
        }
        if let Some(certs) = req.peer_certs() {
            // Mutual TLS: the certificate must name the node id the caller
            // proved, or one node could impersonate another.
            let named = certs.first().is_some_and(|cert| cert_names_node(cert.as_ref(), from));
            if !named {
                return Err(Status::permission_denied(format!(
                    "peer certificate does not identify node {from}; peer certificates need SAN node-<id>"
                )));
            }
        }
        let claimed = md
            .get(HDR_FROM)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if claimed.is_some_and(|c| c != from) {
            return Err(Status::permission_denied(format!(
                "the call claims to come from node {} but is signed by node {from}",
                claimed.unwrap_or_default()
            )));
        }
        Ok(from)
    }
}

fn decode<T: serde::de::DeserializeOwned>(msg: &RaftMessage) -> Result<T, Status> {
    codec::decode(&msg.payload).map_err(|e| Status::invalid_argument(format!("undecodable peer message: {e}")))
}

fn reply<T: serde::Serialize, E: std::fmt::Display>(result: Result<T, E>) -> Result<Response<RaftMessage>, Status> {
    let result = result.map_err(|e| e.to_string());
    let payload = codec::encode(&result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftMessage { payload }))
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.check(&req, "AppendEntries")?;
        let rpc = decode(req.get_ref())?;
        reply(self.node.raft().append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.check(&req, "Vote")?;
        let rpc = decode(req.get_ref())?;
        reply(self.node.raft().vote(rpc).await)
    }

    async fn pre_vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.check(&req, "PreVote")?;
        let rpc = decode(req.get_ref())?;
        reply(self.node.raft().pre_vote(rpc).await)
    }

    async fn transfer_leader(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.check(&req, "TransferLeader")?;
        let rpc = decode(req.get_ref())?;
        reply(self.node.raft().handle_transfer_leader(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<Streaming<SnapshotChunk>>) -> Result<Response<RaftMessage>, Status> {
        self.check(&req, "InstallSnapshot")?;
        let mut stream = req.into_inner();
        let max = self.node.settings().max_snapshot_bytes;
        let path = self.node.snapshots().temp("recv");
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(&path).map_err(|e| Status::internal(format!("creating snapshot file: {e}")))?,
        );
        let cleanup = TempGuard(Some(path.clone()));
        let mut header: Option<(Vote, SnapshotMeta)> = None;
        let mut received: u64 = 0;
        let mut done = false;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if header.is_none() {
                header = Some(
                    codec::decode(&chunk.header)
                        .map_err(|e| Status::invalid_argument(format!("bad snapshot header: {e}")))?,
                );
            }
            received += chunk.data.len() as u64;
            if received > max {
                return Err(Status::resource_exhausted(format!(
                    "snapshot exceeds the {max}-byte limit (max_snapshot_bytes)"
                )));
            }
            file.write_all(&chunk.data)
                .map_err(|e| Status::internal(format!("writing snapshot: {e}")))?;
            if chunk.done {
                done = true;
                break;
            }
        }
        let Some((vote, meta)) = header else {
            return Err(Status::invalid_argument("snapshot stream carried no header"));
        };
        if !done {
            return Err(Status::aborted("snapshot stream ended before its last chunk"));
        }
        let file = file.into_inner().map_err(|e| Status::internal(e.to_string()))?;
        file.sync_all().map_err(|e| Status::internal(e.to_string()))?;
        drop(file);
        let data = SnapshotFile::open(&path).map_err(|e| Status::internal(e.to_string()))?;
        let result = self
            .node
            .raft()
            .install_full_snapshot(vote, Snapshot { meta, snapshot: data })
            .await;
        drop(cleanup);
        reply(result)
    }

    async fn forward(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let from = self.check(&req, "Forward")?;
        let fwd: ForwardRequest = decode(req.get_ref())?;
        tracing::trace!(from, "forwarded request");
        let result: Result<ForwardReply, ConsensusError> = self.node.handle_forward(fwd).await;
        let payload = codec::encode(&result).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(RaftMessage { payload }))
    }

    async fn node_status(&self, req: Request<NodeStatusRequest>) -> Result<Response<NodeStatusResponse>, Status> {
        self.check(&req, "NodeStatus")?;
        let s = self.node.status();
        Ok(Response::new(NodeStatusResponse {
            node_id: s.node_id,
            state: s.state,
            term: s.term,
            leader_id: s.leader_id,
            last_log_index: s.last_log_index,
            committed_index: s.committed_index,
            applied_index: s.applied_index,
            snapshot_index: s.snapshot_index,
            purged_index: s.purged_index,
        }))
    }

    async fn join_hello(&self, req: Request<JoinHelloRequest>) -> Result<Response<JoinHelloResponse>, Status> {
        let r = req.into_inner();
        self.node.join_hello(r).map(Response::new).map_err(join_status)
    }

    async fn join(&self, req: Request<JoinOffer>) -> Result<Response<JoinAccepted>, Status> {
        let offer = req.into_inner();
        self.node
            .accept_join(offer)
            .await
            .map(Response::new)
            .map_err(join_status)
    }
}

/// Join refusals: a bad proof is an authentication failure; anything else
/// (already joined, no token) a precondition the operator can fix.
fn join_status(e: super::JoinRefusal) -> Status {
    match e {
        super::JoinRefusal::Joined => Status::unauthenticated(e.to_string()),
        super::JoinRefusal::Proof(JoinError::BadProof) | super::JoinRefusal::Proof(JoinError::BadSeal) => {
            Status::unauthenticated(e.to_string())
        }
        super::JoinRefusal::Proof(JoinError::Malformed) | super::JoinRefusal::Invalid(_) => {
            Status::invalid_argument(e.to_string())
        }
        super::JoinRefusal::Precondition(_) => Status::failed_precondition(e.to_string()),
        super::JoinRefusal::Internal(_) => Status::internal(e.to_string()),
    }
}

/// Deletes a received snapshot file when the transfer ends, whatever the
/// outcome: an installed snapshot has been copied by then.
struct TempGuard(Option<std::path::PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Whether a DER certificate names `node-<id>` as a DNS SAN or common name.
pub fn cert_names_node(der: &[u8], node_id: u64) -> bool {
    use x509_parser::prelude::*;
    let want = format!("node-{node_id}");
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return false;
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        if san
            .value
            .general_names
            .iter()
            .any(|n| matches!(n, GeneralName::DNSName(d) if *d == want))
        {
            return true;
        }
    }
    let by_cn = cert
        .subject()
        .iter_common_name()
        .any(|cn| cn.as_str().map(|s| s == want).unwrap_or(false));
    by_cn
}
