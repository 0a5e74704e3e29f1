//! `tessera.v1.Cluster`: init (unauthenticated, fresh nodes only), membership
//! changes and status (admin token, checked by `admin_layer` for every
//! method but [`INIT_CLUSTER`]).

use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::model::cluster::NodeAddr;
use crate::proto::cluster_server::Cluster;
use crate::proto::*;
use crate::service::cluster::{ClusterService, MemberView};
use crate::service::keys::KeyService;
use crate::service::ServiceError;

/// The one Cluster method without the admin token: it is what creates the
/// token, and [`init_allowed`] guards it instead.
pub const INIT_CLUSTER: &str = "/tessera.v1.Cluster/InitCluster";

/// The Cluster service adapter.
pub struct ClusterApi {
    /// Cluster lifecycle calls (init, add and remove nodes, status).
    pub cluster: ClusterService,
    /// Signing-key rotation.
    pub keys: KeyService,
    /// The bootstrap token this node was started with, if any.
    pub bootstrap_token: Option<String>,
}

/// Whether `InitCluster` may be answered: the caller is on this node's
/// loopback interface, or presents the bootstrap token. A wrong token is
/// refused even from loopback, so that a mistyped one is noticed.
pub fn init_allowed(
    remote: Option<std::net::SocketAddr>,
    configured: Option<&str>,
    presented: &str,
) -> Result<(), ServiceError> {
    use subtle::ConstantTimeEq;
    if !presented.is_empty() {
        let ok = configured.is_some_and(|c| bool::from(c.as_bytes().ct_eq(presented.as_bytes())));
        return if ok {
            Ok(())
        } else {
            Err(ServiceError::not_authorized("wrong bootstrap token for InitCluster"))
        };
    }
    if remote.is_some_and(|r| r.ip().is_loopback()) {
        return Ok(());
    }
    Err(ServiceError::not_authorized(match configured {
        Some(_) => "InitCluster from another host needs the bootstrap token this node was started with (--bootstrap-token on 'cluster init')",
        None => "InitCluster is answered only on this node's loopback interface; run 'tessera cluster init' on the node itself, or start the node with a bootstrap token (TESSERA_BOOTSTRAP_TOKEN) and pass it with --bootstrap-token",
    }))
}

fn join_token_info(t: crate::model::cluster::JoinTokenRecord) -> JoinTokenInfo {
    JoinTokenInfo {
        token_id: t.id,
        created_at: t.created_at,
        expires_at: t.expires_at,
        max_uses: t.max_uses,
        uses: t.uses,
        node_id: t.node_id,
        description: t.description,
    }
}

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
        if let Err(e) = init_allowed(
            req.remote_addr(),
            self.bootstrap_token.as_deref(),
            &req.get_ref().bootstrap_token,
        ) {
            tracing::warn!(remote = ?req.remote_addr(), "refused InitCluster from an unauthenticated caller");
            return Err(e.into());
        }
        let r = req.into_inner();
        let res = self.cluster.init(Some(r.public_url)).await?;
        tracing::info!(cluster_id = %res.cluster_id, "cluster initialised");
        // Answer once the node can sign tokens, so that a sign-in right
        // after `cluster init` works. The cluster exists either way: a slow
        // publication is logged, not reported as a failed init.
        if let Err(e) = self.keys.wait_published(Duration::from_secs(10)).await {
            tracing::warn!(error = %e, "cluster initialised; the signing key is not published yet");
        }
        Ok(Response::new(InitClusterResponse {
            cluster_id: res.cluster_id,
            admin_token: res.admin_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(node_id))]
    async fn add_node(&self, req: Request<AddNodeRequest>) -> Result<Response<AddNodeResponse>, Status> {
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

    #[tracing::instrument(skip_all)]
    async fn create_join_token(
        &self,
        req: Request<CreateJoinTokenRequest>,
    ) -> Result<Response<CreateJoinTokenResponse>, Status> {
        let r = req.into_inner();
        let (join_token, record) = self
            .cluster
            .create_join_token(
                r.ttl_seconds,
                r.max_uses.unwrap_or(1),
                r.node_id,
                r.description,
                Some(r.token.as_str()).filter(|t| !t.is_empty()),
            )
            .await?;
        tracing::info!(token_id = %record.id, "join token issued");
        Ok(Response::new(CreateJoinTokenResponse {
            join_token,
            info: Some(join_token_info(record)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_join_tokens(
        &self,
        _req: Request<ListJoinTokensRequest>,
    ) -> Result<Response<ListJoinTokensResponse>, Status> {
        let tokens = self.cluster.join_tokens().await?;
        Ok(Response::new(ListJoinTokensResponse {
            tokens: tokens.into_iter().map(join_token_info).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_join_token(
        &self,
        req: Request<RevokeJoinTokenRequest>,
    ) -> Result<Response<RevokeJoinTokenResponse>, Status> {
        let id = req.into_inner().token_id;
        self.cluster.revoke_join_token(&id).await?;
        tracing::info!(token_id = %id, "join token revoked");
        Ok(Response::new(RevokeJoinTokenResponse {}))
    }

    #[tracing::instrument(skip_all, fields(node_id))]
    async fn remove_node(&self, req: Request<RemoveNodeRequest>) -> Result<Response<RemoveNodeResponse>, Status> {
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
        _req: Request<DescribeClusterRequest>,
    ) -> Result<Response<DescribeClusterResponse>, Status> {
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
        let wait = req.into_inner().wait;
        let (requested_at, keys) = self.keys.rotate_cluster(wait).await?;
        Ok(Response::new(RotateSigningKeysResponse {
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
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_node_state(
        &self,
        _req: Request<GetNodeStateRequest>,
    ) -> Result<Response<GetNodeStateResponse>, Status> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_is_answered_on_loopback_or_with_the_bootstrap_token() {
        let local: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: std::net::SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let v6: std::net::SocketAddr = "[::1]:5000".parse().unwrap();
        assert!(init_allowed(Some(local), None, "").is_ok());
        assert!(init_allowed(Some(v6), None, "").is_ok());
        assert_eq!(
            init_allowed(Some(remote), None, "").unwrap_err().exception,
            "NotAuthorizedException"
        );
        assert_eq!(
            init_allowed(None, None, "").unwrap_err().exception,
            "NotAuthorizedException"
        );
        assert_eq!(
            init_allowed(Some(remote), Some("s3cret-bootstrap"), "")
                .unwrap_err()
                .exception,
            "NotAuthorizedException"
        );
        assert!(init_allowed(Some(remote), Some("s3cret-bootstrap"), "s3cret-bootstrap").is_ok());
        assert!(init_allowed(Some(remote), Some("s3cret-bootstrap"), "wrong").is_err());
        assert!(
            init_allowed(Some(local), Some("s3cret-bootstrap"), "wrong").is_err(),
            "a wrong token is refused even locally"
        );
        assert!(init_allowed(Some(remote), None, "anything").is_err());
    }
}
