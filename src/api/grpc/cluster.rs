//! `tessera.v1.Cluster`: init (unauthenticated, fresh nodes only), membership
//! changes and status (admin token).

use tonic::{Request, Response, Status};

use super::bearer;
use crate::model::cluster::NodeAddr;
use crate::proto::cluster_server::Cluster;
use crate::proto::*;
use crate::service::admin_auth::AdminAuth;
use crate::service::cluster::{ClusterService, MemberView};
use crate::service::keys::KeyService;
use crate::service::{ErrorKind, ServiceError};

/// The Cluster service adapter.
pub struct ClusterApi {
    pub auth: AdminAuth,
    pub cluster: ClusterService,
    pub keys: KeyService,
}

/// How long `RotateSigningKeys { wait: true }` waits for every voter.
const ROTATION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

fn member(m: MemberView) -> Member {
    Member {
        node_id: m.node_id,
        api_addr: m.addr.api_addr,
        peer_addr: m.addr.peer_addr,
        role: if m.voter { "voter" } else { "learner" }.into(),
    }
}

#[tonic::async_trait]
impl Cluster for ClusterApi {
    #[tracing::instrument(skip_all)]
    async fn init_cluster(&self, req: Request<InitClusterRequest>) -> Result<Response<InitClusterResponse>, Status> {
        let r = req.into_inner();
        let res = self.cluster.init(Some(r.public_url)).await?;
        tracing::info!(cluster_id = %res.cluster_id, "cluster initialised");
        Ok(Response::new(InitClusterResponse {
            cluster_id: res.cluster_id,
            admin_token: res.admin_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(node_id))]
    async fn add_node(&self, req: Request<AddNodeRequest>) -> Result<Response<AddNodeResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let r = req.into_inner();
        tracing::Span::current().record("node_id", r.node_id);
        let addr = NodeAddr {
            peer_addr: r.peer_addr,
            api_addr: r.api_addr,
        };
        let members = self.cluster.add_node(r.node_id, addr).await?;
        tracing::info!(node_id = r.node_id, "node added");
        Ok(Response::new(AddNodeResponse {
            members: members.into_iter().map(member).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(node_id))]
    async fn remove_node(&self, req: Request<RemoveNodeRequest>) -> Result<Response<RemoveNodeResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let r = req.into_inner();
        tracing::Span::current().record("node_id", r.node_id);
        let members = self.cluster.remove_node(r.node_id).await?;
        tracing::info!(node_id = r.node_id, "node removed and retired");
        Ok(Response::new(RemoveNodeResponse {
            members: members.into_iter().map(member).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn describe_cluster(
        &self,
        req: Request<DescribeClusterRequest>,
    ) -> Result<Response<DescribeClusterResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let v = self.cluster.describe().await?;
        let nodes = v
            .nodes
            .into_iter()
            .map(|p| match p.status {
                Ok(s) => NodeProgress {
                    node_id: p.node_id,
                    state: s.state,
                    term: s.term,
                    last_log_index: s.last_log_index,
                    committed_index: s.committed_index,
                    applied_index: s.applied_index,
                    snapshot_index: s.snapshot_index,
                    error: String::new(),
                },
                Err(e) => NodeProgress {
                    node_id: p.node_id,
                    state: "unreachable".into(),
                    error: e,
                    ..Default::default()
                },
            })
            .collect();
        Ok(Response::new(DescribeClusterResponse {
            cluster_id: v.cluster_id,
            public_url: v.public_url,
            leader_id: v.leader_id,
            term: v.term,
            members: v.members.into_iter().map(member).collect(),
            nodes,
            retired_node_ids: v.retired,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn rotate_signing_keys(
        &self,
        req: Request<RotateSigningKeysRequest>,
    ) -> Result<Response<RotateSigningKeysResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let wait = req.into_inner().wait;
        let requested_at = self.keys.request_rotation().await?;
        tracing::info!(requested_at, "signing key rotation requested");
        let deadline = crate::clock::instant() + ROTATION_WAIT;
        loop {
            let keys = self.keys.key_records()?;
            let voters: Vec<u64> = self
                .cluster
                .members()
                .into_iter()
                .filter(|m| m.voter)
                .map(|m| m.node_id)
                .collect();
            // Done when every voter signs with a new key and has retired its
            // old one: a node publishes the new key before retiring the old,
            // so waiting for the first alone could answer in between.
            let done = voters.iter().all(|id| {
                let mine = || keys.iter().filter(|k| k.node_id == *id);
                mine().any(|k| k.created_at >= requested_at && k.signs())
                    && mine().all(|k| k.created_at >= requested_at || !k.signs())
            });
            if !wait || done {
                return Ok(Response::new(RotateSigningKeysResponse {
                    requested_at,
                    keys: keys
                        .into_iter()
                        .map(|k| SigningKeyInfo {
                            kid: k.kid,
                            node_id: k.node_id,
                            created_at: k.created_at,
                            retired_at: k.retire_at.unwrap_or(0),
                            state: k.state.as_str().into(),
                            stopped_signing_at: k.stopped_signing_at.unwrap_or(0),
                        })
                        .collect(),
                }));
            }
            if crate::clock::instant() >= deadline {
                return Err(ServiceError::new(
                    ErrorKind::Unavailable,
                    "ServiceUnavailableException",
                    "not every voter rotated its key within 30 s; a node may be down (it rotates when it returns)",
                )
                .into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    #[tracing::instrument(skip_all)]
    async fn get_node_state(
        &self,
        req: Request<GetNodeStateRequest>,
    ) -> Result<Response<GetNodeStateResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let s = self.cluster.node_state()?;
        Ok(Response::new(GetNodeStateResponse {
            node_id: s.node_id,
            applied_index: s.applied_index,
            state_digest: hex::encode(s.digest),
            pools: s
                .pools
                .into_iter()
                .map(|(user_pool_id, users)| PoolUserCount { user_pool_id, users })
                .collect(),
        }))
    }
}
