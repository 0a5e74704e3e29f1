//! The server half of the peer transport: the `tessera.v1.Peer` service.
//!
//! Every call is checked before it reaches Raft: it must be addressed to this
//! node id and come from this node's cluster. A node that does not know its
//! cluster yet (it is about to be added) adopts the caller's cluster id on
//! the first call. Snapshot transfers are written to a temporary file with a
//! bounded size and only handed to Raft once complete.

use std::io::Write;
use std::sync::Arc;

use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::snapshot_file::SnapshotFile;
use super::types::{Snapshot, SnapshotMeta, Vote};
use super::wire::{ForwardError, ForwardReply, ForwardRequest, HDR_CLUSTER, HDR_FROM, HDR_TO};
use super::RaftNode;
use crate::proto::peer_server::Peer;
use crate::proto::{NodeStatusRequest, NodeStatusResponse, RaftMessage, SnapshotChunk};
use crate::store::codec;

/// The peer service of one node.
pub struct PeerService {
    node: Arc<RaftNode>,
}

impl PeerService {
    pub fn new(node: Arc<RaftNode>) -> Self {
        PeerService { node }
    }

    /// Refuses calls meant for another node or cluster.
    fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let md = req.metadata();
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
            // claims, or one node could impersonate another.
            let from = md
                .get(HDR_FROM)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let proven = match (from, certs.first()) {
                (Some(from), Some(cert)) => cert_names_node(cert.as_ref(), from),
                _ => false,
            };
            if !proven {
                return Err(Status::permission_denied(format!(
                    "peer certificate does not identify node {}; peer certificates need SAN node-<id>",
                    from.map(|f| f.to_string()).unwrap_or_else(|| "?".into())
                )));
            }
        }
        let theirs = md.get(HDR_CLUSTER).and_then(|v| v.to_str().ok()).unwrap_or("");
        match self.node.cluster_id() {
            Some(ours) if !theirs.is_empty() && ours != theirs => Err(Status::failed_precondition(format!(
                "node {} belongs to cluster {ours}, not {theirs}",
                self.node.node_id()
            ))),
            None if !theirs.is_empty() => self
                .node
                .bind_cluster(theirs)
                .map_err(|e| Status::failed_precondition(e.to_string())),
            _ => Ok(()),
        }
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
        self.check(&req)?;
        let rpc = decode(req.get_ref())?;
        reply(self.node.raft().append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.check(&req)?;
        let rpc = decode(req.get_ref())?;
        reply(self.node.raft().vote(rpc).await)
    }

    async fn pre_vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.check(&req)?;
        let rpc = decode(req.get_ref())?;
        reply(self.node.raft().pre_vote(rpc).await)
    }

    async fn transfer_leader(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.check(&req)?;
        let rpc = decode(req.get_ref())?;
        reply(self.node.raft().handle_transfer_leader(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<Streaming<SnapshotChunk>>) -> Result<Response<RaftMessage>, Status> {
        self.check(&req)?;
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
        self.check(&req)?;
        let fwd: ForwardRequest = decode(req.get_ref())?;
        let result: Result<ForwardReply, ForwardError> = self.node.handle_forward(fwd).await;
        let payload = codec::encode(&result).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(RaftMessage { payload }))
    }

    async fn node_status(&self, req: Request<NodeStatusRequest>) -> Result<Response<NodeStatusResponse>, Status> {
        self.check(&req)?;
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
