//! Cluster lifecycle: init, add and remove nodes, status.

use crate::command::{AdmitNode, CreateJoinToken, InitCluster, RetireNode, RevokeJoinToken};
use std::sync::Arc;
use std::time::Duration;

use super::admin_auth::new_admin_token;
use super::{ErrorKind, ServiceError};
use crate::auth::sealing::SealingCell;
use crate::command::Outcome;
use crate::model::cluster::{
    validate_host_port, validate_node_id, validate_public_url, ClusterInfo, JoinTokenRecord, NodeAddr,
};
use crate::raft::join::JoinToken;
use crate::raft::{AdmitError, RaftNode, RaftStatus};

/// Longest join token lifetime an admin may ask for.
pub const MAX_JOIN_TOKEN_TTL_SECS: u64 = 30 * 24 * 3600;
/// Lifetime of a join token when none is given.
pub const DEFAULT_JOIN_TOKEN_TTL_SECS: u64 = 3600;
/// Most join tokens that may exist at once.
pub const MAX_JOIN_TOKENS: usize = 1000;

/// What `cluster init` hands back, once.
#[derive(Debug, Clone)]
pub struct InitResult {
    /// The new cluster's id.
    pub cluster_id: String,
    /// The root admin token. Only its hash is stored.
    pub admin_token: String,
}

/// One member as `cluster status` shows it.
#[derive(Debug, Clone)]
pub struct MemberView {
    /// The member's id.
    pub node_id: u64,
    /// Its peer and api addresses.
    pub addr: NodeAddr,
    /// Whether it votes (else a learner).
    pub voter: bool,
}

/// One node's progress, or why it could not be asked.
#[derive(Debug, Clone)]
pub struct ProgressView {
    /// The node asked.
    pub node_id: u64,
    /// Its Raft status, or why it could not be asked (unreachable, timed out).
    pub status: Result<RaftStatus, String>,
}

/// The whole picture for `cluster status`.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// Empty before `cluster init`.
    pub cluster_id: String,
    /// External base URL of the token issuers; empty before init.
    pub public_url: String,
    /// The leader as this node knows it.
    pub leader_id: Option<u64>,
    /// This node's current term.
    pub term: u64,
    /// The membership as this node knows it.
    pub members: Vec<MemberView>,
    /// Each member's own progress.
    pub nodes: Vec<ProgressView>,
    /// Node ids that were removed; never reused.
    pub retired: Vec<u64>,
}

/// Cluster lifecycle operations of one node.
#[derive(Clone)]
pub struct ClusterService {
    node: Arc<RaftNode>,
    /// This node's own addresses, as other members should reach it.
    self_addr: NodeAddr,
    /// Created at init, handed to every node that joins.
    sealing: Arc<SealingCell>,
}

impl ClusterService {
    /// The cluster service of `node`, which members reach at `self_addr`; `sealing` holds the sealing key made at init and handed to joiners.
    pub fn new(node: Arc<RaftNode>, self_addr: NodeAddr, sealing: Arc<SealingCell>) -> Self {
        ClusterService {
            node,
            self_addr,
            sealing,
        }
    }

    /// Turns this fresh node into a one-member cluster and returns the root
    /// admin token. Safe to re-run after a crash between forming the
    /// membership and recording the settings.
    pub async fn init(&self, public_url: Option<String>) -> Result<InitResult, ServiceError> {
        let store = self.node.store();
        if store.cluster_info()?.is_some() {
            return Err(already_initialized());
        }
        let public_url = match public_url.filter(|u| !u.is_empty()) {
            Some(u) => u,
            None => format!("http://{}", self.self_addr.api_addr),
        };
        validate_public_url(&public_url)?;
        if self.node.is_initialized().await {
            let status = self.node.status();
            let only_me = status.members.len() == 1 && status.members[0].0 == self.node.node_id();
            if !only_me {
                return Err(already_initialized());
            }
        }
        let cluster_id = match self.node.cluster_id() {
            Some(id) => id,
            None => crate::clock::new_uuid().to_string(),
        };
        self.node.bind_cluster(&cluster_id)?;
        if !self.node.is_initialized().await {
            self.node.initialize(self.self_addr.clone()).await?;
        }
        // The cluster's sealing key is born with it; joining nodes receive it.
        self.sealing
            .ensure()
            .map_err(|e| ServiceError::internal(format!("creating the cluster sealing key: {e}")))?;
        // The first member's peer key, admitted without a join token. A
        // repeat after a crash is a no-op.
        let admitted = self
            .node
            .propose(AdmitNode {
                node_id: self.node.node_id(),
                public_key: self.node.peer_public_key(),
                token_id: None,
                now: crate::clock::now_millis(),
            })
            .await?;
        if let Outcome::Rejected(r) = admitted {
            return Err(r.into());
        }
        let (admin_token, hash) = new_admin_token();
        let info = ClusterInfo {
            cluster_id: cluster_id.clone(),
            public_url,
            root_token_sha256: hash,
            created_at: crate::clock::now_millis(),
        };
        match self.node.propose(InitCluster(info)).await? {
            Outcome::Rejected(r) => Err(r.into()),
            _ => Ok(InitResult {
                cluster_id,
                admin_token,
            }),
        }
    }

    /// Adds a node: learner first, voter once caught up.
    pub async fn add_node(&self, node_id: u64, addr: NodeAddr) -> Result<Vec<MemberView>, ServiceError> {
        validate_node_id(node_id)?;
        validate_host_port("peer_addr", &addr.peer_addr)?;
        validate_host_port("api_addr", &addr.api_addr)?;
        self.node.read_barrier().await?;
        if self.node.store().is_retired(node_id)? {
            return Err(ServiceError::new(
                ErrorKind::FailedPrecondition,
                "NodeIdRetiredException",
                format!("node id {node_id} was removed from this cluster and can never be reused; pick a new id"),
            ));
        }
        let status = self.node.status();
        if let Some((_, existing, _)) = status.members.iter().find(|(id, _, _)| *id == node_id) {
            return Err(ServiceError::new(
                ErrorKind::AlreadyExists,
                "NodeExistsException",
                format!("node id {node_id} is already a member ({existing})"),
            ));
        }
        if let Some((other, _, _)) = status
            .members
            .iter()
            .find(|(_, a, _)| a.peer_addr == addr.peer_addr || a.api_addr == addr.api_addr)
        {
            return Err(ServiceError::new(
                ErrorKind::AlreadyExists,
                "NodeExistsException",
                format!("node {other} already uses one of these addresses"),
            ));
        }
        // The node proves it holds a join token and is admitted before it
        // may receive a single log entry.
        let sealing = self.sealing.get();
        self.node
            .admit(node_id, &addr, sealing.as_deref().map(|k| k.raw()))
            .await
            .map_err(|e| match e {
                AdmitError::Refused(m) => ServiceError::new(
                    ErrorKind::FailedPrecondition,
                    "JoinRefusedException",
                    format!("{m}; issue a token with 'tessera cluster join-token create' and start the node with --join-token"),
                ),
                AdmitError::Consensus(c) => c.into(),
            })?;
        self.node.add_node(node_id, addr).await?;
        Ok(self.members())
    }

    /// Issues a join token. Returns the token (shown once) and its record.
    pub async fn create_join_token(
        &self,
        ttl_secs: u64,
        max_uses: u32,
        node_id: Option<u64>,
        description: String,
        given: Option<&str>,
    ) -> Result<(String, JoinTokenRecord), ServiceError> {
        let ttl_secs = if ttl_secs == 0 {
            DEFAULT_JOIN_TOKEN_TTL_SECS
        } else {
            ttl_secs
        };
        if ttl_secs > MAX_JOIN_TOKEN_TTL_SECS {
            return Err(ServiceError::invalid(format!(
                "ttl_seconds: at most {MAX_JOIN_TOKEN_TTL_SECS} (30 days)"
            )));
        }
        if let Some(n) = node_id {
            validate_node_id(n)?;
        }
        if description.chars().count() > 256 {
            return Err(ServiceError::invalid("description: at most 256 characters"));
        }
        self.node.read_barrier().await?;
        if self.node.store().join_tokens()?.len() >= MAX_JOIN_TOKENS {
            return Err(ServiceError::limit_exceeded(format!(
                "at most {MAX_JOIN_TOKENS} join tokens may exist; revoke unused ones"
            )));
        }
        let token = match given {
            Some(t) => JoinToken::parse(t).map_err(|e| ServiceError::invalid(format!("token: {e}")))?,
            None => JoinToken::generate(),
        };
        let now = crate::clock::now_millis();
        let record = token.record(now, (ttl_secs * 1000) as i64, max_uses, node_id, description);
        match self.node.propose(CreateJoinToken(record.clone())).await? {
            Outcome::Rejected(r) => Err(r.into()),
            _ => Ok((token.reveal(), record)),
        }
    }

    /// Every join token (never the secrets).
    pub async fn join_tokens(&self) -> Result<Vec<JoinTokenRecord>, ServiceError> {
        self.node.read_barrier().await?;
        Ok(self.node.store().join_tokens()?)
    }

    /// Revokes a join token.
    pub async fn revoke_join_token(&self, token_id: &str) -> Result<(), ServiceError> {
        if token_id.is_empty() || token_id.len() > 64 {
            return Err(ServiceError::invalid("token_id: 1 to 64 characters"));
        }
        match self
            .node
            .propose(RevokeJoinToken {
                id: token_id.to_string(),
            })
            .await?
        {
            Outcome::Rejected(r) => Err(r.into()),
            _ => Ok(()),
        }
    }

    /// Removes a node and retires its id for good.
    pub async fn remove_node(&self, node_id: u64) -> Result<Vec<MemberView>, ServiceError> {
        validate_node_id(node_id)?;
        self.node.read_barrier().await?;
        let status = self.node.status();
        if !status.members.iter().any(|(id, _, _)| *id == node_id) {
            return Err(ServiceError::not_found(format!("node {node_id} is not a member")));
        }
        let voters = status.members.iter().filter(|(_, _, v)| *v).count();
        if voters == 1 && status.members.iter().any(|(id, _, v)| *id == node_id && *v) {
            return Err(ServiceError::new(
                ErrorKind::FailedPrecondition,
                "InvalidMembershipChangeException",
                "cannot remove the last voter",
            ));
        }
        self.node.remove_node(node_id).await?;
        self.node.propose(RetireNode { node_id }).await?;
        Ok(self.members())
    }

    /// Members as this node sees them.
    pub fn members(&self) -> Vec<MemberView> {
        self.node
            .status()
            .members
            .into_iter()
            .map(|(node_id, addr, voter)| MemberView { node_id, addr, voter })
            .collect()
    }

    /// Members, leader, term and every member's progress.
    pub async fn describe(&self) -> Result<ClusterView, ServiceError> {
        let local = self.node.status();
        let info = self.node.store().cluster_info()?;
        let mut nodes = Vec::new();
        let asks = local.members.iter().map(|(id, addr, _)| {
            let node = self.node.clone();
            let (id, addr) = (*id, addr.clone());
            async move {
                if id == node.node_id() {
                    return ProgressView {
                        node_id: id,
                        status: Ok(node.status()),
                    };
                }
                let status = match tokio::time::timeout(Duration::from_secs(2), node.peer_status(id, &addr)).await {
                    Ok(Ok(s)) => Ok(s),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".into()),
                };
                ProgressView { node_id: id, status }
            }
        });
        nodes.extend(futures::future::join_all(asks).await);
        Ok(ClusterView {
            cluster_id: info
                .as_ref()
                .map(|i| i.cluster_id.clone())
                .or(self.node.cluster_id())
                .unwrap_or_default(),
            public_url: info.map(|i| i.public_url).unwrap_or_default(),
            leader_id: local.leader_id,
            term: local.term,
            members: self.members(),
            nodes,
            retired: self.node.store().retired_nodes()?,
        })
    }
}

fn already_initialized() -> ServiceError {
    ServiceError::new(
        ErrorKind::FailedPrecondition,
        "ClusterAlreadyInitializedException",
        "this node already belongs to an initialised cluster",
    )
}

/// One node's own view of the replicated state.
#[derive(Debug, Clone)]
pub struct NodeState {
    /// The node reporting.
    pub node_id: u64,
    /// The last log index its state machine applied.
    pub applied_index: u64,
    /// Digest of its whole replicated state; equal on nodes at the same applied index.
    pub digest: [u8; 32],
    /// Users per pool, in pool id order.
    pub pools: Vec<(String, u64)>,
}

impl ClusterService {
    /// This node's applied index, state digest and user counts. The digest
    /// and counts are read while nothing is being applied only if the
    /// cluster is idle; callers compare nodes at equal applied indexes.
    pub fn node_state(&self) -> Result<NodeState, ServiceError> {
        let store = self.node.store();
        let applied_index = self.node.status().applied_index;
        let digest = store.state_digest()?;
        let mut pools = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.pools_page(after.as_deref(), 100)?;
            for p in &page {
                pools.push((p.id.clone(), store.user_count(&p.id)?));
            }
            match page.last() {
                Some(p) if page.len() == 100 => after = Some(p.id.clone()),
                _ => break,
            }
        }
        Ok(NodeState {
            node_id: self.node.node_id(),
            applied_index,
            digest,
            pools,
        })
    }
}
