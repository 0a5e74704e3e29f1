//! Consensus: the only module that names openraft types.
//!
//! [`RaftNode`] is what the rest of Tessera sees: `propose` a [`Command`] and
//! get its [`Outcome`] once it is committed on a quorum and applied here;
//! ask for a `read_barrier` before a read that must observe every earlier
//! acknowledged write; change membership; read progress. A node that is not
//! the leader forwards to the leader over the peer channel, so callers never
//! look for the leader themselves.
//!
//! Submodules: [`types`] (type config), [`log_store`] (log + group commit),
//! [`state_machine`] (apply + snapshots), [`snapshot_file`] (snapshot
//! format), [`network`] and [`peer_server`] (the peer transport), [`wire`]
//! (what travels on it), [`peer_auth`] (proof of membership on every peer
//! call), [`join`] (join tokens and the handshake that admits a node) and
//! [`freshness`] (bounded staleness).
#![allow(
    clippy::disallowed_methods,
    reason = "proposing, forwarding and waiting for the cluster need deadlines; apply runs in state_machine.rs"
)]

pub mod freshness;
pub mod join;
pub mod log_store;
pub mod network;
pub mod peer_auth;
pub mod peer_server;
pub mod read_index;
pub mod snapshot_file;
pub mod state_machine;
pub mod types;
pub mod wire;

use crate::command::AdmitNode;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::{ChangeMembers, ReadPolicy, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tonic::transport::ClientTlsConfig;

use crate::clock;
use crate::command::{Command, Outcome};
use crate::metrics::Metrics;
use crate::model::cluster::NodeAddr;
use crate::store::{Store, StoreError};
use log_store::LogStore;
use network::{PeerCallError, PeerContext, PeerNetwork};
use snapshot_file::SnapshotDir;
use state_machine::StateMachine;
/// The openraft instance over Tessera's types and state machine (here, not
/// in `types`, so that `types` and `state_machine` do not import each other).
type Raft = openraft::Raft<types::TypeConfig, state_machine::StateMachine>;
use wire::{ForwardReply, ForwardRequest};

use crate::proto::{JoinAccepted, JoinHelloRequest, JoinHelloResponse, JoinOffer, PeerKey};
use join::{JoinError, JoinToken};
use peer_auth::PeerIdentity;

/// Stores the cluster sealing key that a join handed over; fails if this
/// node already holds a different one.
pub type SealingKeySink = Box<dyn Fn(&[u8; 32]) -> Result<(), String> + Send + Sync>;

/// How a node proves itself on the peer port and how it joins.
pub struct PeerSetup {
    /// This node's peer key (`peer.key` in the data dir).
    pub identity: PeerIdentity,
    /// The join token the node was started with, if any.
    pub join_token: Option<JoinToken>,
    /// Called with the cluster sealing key once a join hands it over.
    pub on_sealing_key: SealingKeySink,
}

/// Why a join handshake message was refused.
#[derive(Debug, thiserror::Error)]
pub enum JoinRefusal {
    /// The node already belongs to a cluster: like every other peer call,
    /// it is for members only.
    #[error("this node has already joined a cluster; it accepts peer calls from its members only")]
    Joined,
    /// The token or a proof did not check out.
    #[error("{0}")]
    Proof(#[from] JoinError),
    /// A handshake field is malformed (bad length or shape).
    #[error("{0}")]
    Invalid(String),
    /// This node cannot join as asked (no join token, or another node id); the message says how to fix it.
    #[error("{0}")]
    Precondition(String),
    /// This node failed to read its own state.
    #[error("{0}")]
    Internal(String),
}

/// Why a member could not admit a node.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The node refused or failed the handshake, or its token is not valid.
    #[error("{0}")]
    Refused(String),
    /// Proposing the admission failed.
    #[error(transparent)]
    Consensus(#[from] ConsensusError),
}

impl From<StoreError> for AdmitError {
    fn from(e: StoreError) -> Self {
        AdmitError::Consensus(e.into())
    }
}

/// A fresh node's half of a handshake in progress.
struct PendingHello {
    cluster_id: String,
    nonce: [u8; 32],
    at: std::time::Instant,
}

/// How often [`RaftNode::wait_fatal`] looks at Raft's running state: a
/// node whose storage failed exits (for its supervisor to restart) this
/// soon after.
const FATAL_POLL: Duration = Duration::from_millis(100);
/// How long a fresh node waits between hello and offer.
const HELLO_VALID: Duration = Duration::from_secs(60);
/// Most members a join offer may list.
const MAX_OFFER_MEMBERS: usize = 1000;

/// Raft timing and log-retention settings (see `config.rs` for the docs of
/// each field as the operator sees them).
#[derive(Debug, Clone)]
pub struct RaftSettings {
    /// Interval between the leader's heartbeats.
    pub heartbeat_ms: u64,
    /// Shortest election timeout; a follower that hears no leader this long may stand.
    pub election_timeout_min_ms: u64,
    /// Longest election timeout; each node picks at random between the bounds.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind the snapshot, so a briefly lagging
    /// follower catches up from the log instead of a full snapshot.
    pub keep_logs_after_snapshot: u64,
    /// Largest snapshot a follower accepts from a leader.
    pub max_snapshot_bytes: u64,
    /// How long a proposal may wait for a leader and a commit.
    pub propose_timeout: Duration,
    /// Node-local addresses to reach some peers at instead of the address
    /// in the membership (NAT, or the chaos harness's per-link proxies).
    pub peer_address_overrides: BTreeMap<u64, String>,
    /// Longest time since a quorum last confirmed this node's state before
    /// it refuses sign-in, refresh and access-token calls (see
    /// [`freshness`]).
    pub max_staleness: Duration,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            heartbeat_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            snapshot_every: 10_000,
            keep_logs_after_snapshot: 1_000,
            max_snapshot_bytes: 64 << 30,
            propose_timeout: Duration::from_secs(10),
            peer_address_overrides: BTreeMap::new(),
            max_staleness: Duration::from_millis(3 * 800),
        }
    }
}

/// Why a consensus operation failed, on this node or on the leader that a
/// request was forwarded to: the one error of the consensus layer, and
/// the error half of a forwarded reply on the peer wire (so it is
/// serializable, and a leader's answer reaches the caller unchanged). Each
/// variant tells the caller whether the write may have happened. Services
/// map it to a `ServiceError` once (`service::ServiceError::from`), and the
/// api edge maps that to a gRPC status once.
///
/// The variants keep their order: it is the peer encoding (postcard's
/// variant index), shared with nodes of the previous version during a
/// rolling upgrade.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ConsensusError {
    /// The receiver is not the leader (any more); try this one. Only
    /// between nodes: the forwarding loop retries it, and gives up with
    /// [`Unavailable`](Self::Unavailable) at its deadline.
    #[error("not the leader; leader is {leader:?}")]
    NotLeader {
        /// The leader the receiver knows of, by id and address; `None` while there is none.
        leader: Option<(u64, NodeAddr)>,
    },
    /// The write may or may not have been applied (leader changed or the
    /// answer was lost). Callers must report this as unknown, not failed.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The membership change was refused.
    #[error("{0}")]
    Membership(String),
    /// No leader or no quorum could be reached in time; the write did not
    /// happen.
    #[error("no leader available: {0}")]
    Unavailable(String),
    /// The node's consensus engine stopped; it must be restarted.
    #[error("raft stopped: {0}")]
    Fatal(String),
    /// The local store or file system failed.
    #[error("storage: {0}")]
    Storage(String),
}

impl From<StoreError> for ConsensusError {
    fn from(e: StoreError) -> Self {
        ConsensusError::Storage(e.to_string())
    }
}

impl From<std::io::Error> for ConsensusError {
    fn from(e: std::io::Error) -> Self {
        ConsensusError::Storage(format!("i/o: {e}"))
    }
}

/// A node's Raft progress, as reported by `cluster status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RaftStatus {
    /// The node reporting.
    pub node_id: u64,
    /// "Leader", "Follower", "Candidate", "Learner" or "Shutdown".
    pub state: String,
    /// Its current Raft term.
    pub term: u64,
    /// The leader it knows of, if any.
    pub leader_id: Option<u64>,
    /// Index of the last entry in its log (0 when empty).
    pub last_log_index: u64,
    /// Highest index it knows to be committed.
    pub committed_index: u64,
    /// Highest index its state machine has applied.
    pub applied_index: u64,
    /// Last index its latest snapshot covers (0 without one).
    pub snapshot_index: u64,
    /// Highest index purged from its log (0 when none).
    pub purged_index: u64,
    /// `(node id, address, is voter)` of every member.
    pub members: Vec<(u64, NodeAddr, bool)>,
}

/// The consensus handle of one node.
pub struct RaftNode {
    raft: Raft,
    ctx: Arc<PeerContext>,
    network: PeerNetwork,
    store: Store,
    snapshots: SnapshotDir,
    metrics: Arc<Metrics>,
    settings: RaftSettings,
    join_token: Option<JoinToken>,
    on_sealing_key: SealingKeySink,
    pending_hello: std::sync::Mutex<Option<PendingHello>>,
    freshness: freshness::Freshness,
    /// Shares ReadIndex rounds among concurrent `read_barrier` callers.
    read_index: read_index::ReadIndexCoalescer,
    /// Where the state machine publishes applied sync changes.
    hub: Arc<crate::sync::hub::ChangeHub>,
}

impl RaftNode {
    /// Opens Raft over `store`, recovering whatever the data dir holds.
    pub async fn start(
        node_id: u64,
        store: Store,
        data_dir: &Path,
        settings: RaftSettings,
        metrics: Arc<Metrics>,
        client_tls: Option<ClientTlsConfig>,
        peer: PeerSetup,
    ) -> Result<Arc<Self>, ConsensusError> {
        let identity = store.claim_identity(node_id)?;
        let PeerSetup {
            identity: peer_identity,
            join_token,
            on_sealing_key,
        } = peer;
        let ctx = Arc::new(PeerContext {
            node_id,
            identity: peer_identity,
            credentials: Default::default(),
            cluster_id: std::sync::RwLock::new(identity.cluster_id),
            client_tls,
            forward_timeout: settings.propose_timeout,
            metrics: metrics.clone(),
            peer_address_overrides: settings.peer_address_overrides.clone(),
        });
        let config = openraft::Config {
            cluster_name: "tessera".into(),
            heartbeat_interval: settings.heartbeat_ms,
            election_timeout_min: settings.election_timeout_min_ms,
            election_timeout_max: settings.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every),
            max_in_snapshot_log_to_keep: settings.keep_logs_after_snapshot,
            install_snapshot_timeout: 600_000,
            max_payload_entries: 512,
            ..Default::default()
        };
        let config = config
            .validate()
            .map_err(|e| ConsensusError::Fatal(format!("invalid raft settings: {e}")))?;
        let snapshots = SnapshotDir::open(&data_dir.join("snapshots"))?;
        let log_store = LogStore::new(store.clone(), metrics.clone())?;
        let hub = Arc::new(crate::sync::hub::ChangeHub::default());
        let sm = StateMachine::new(store.clone(), snapshots.clone(), metrics.clone(), hub.clone())?;
        let network = PeerNetwork::new(ctx.clone());
        let raft = Raft::new(node_id, Arc::new(config), network.clone(), log_store, sm)
            .await
            .map_err(|e| ConsensusError::Fatal(e.to_string()))?;
        let patience = Duration::from_millis(settings.election_timeout_max_ms);
        let freshness = freshness::Freshness::new(node_id, settings.max_staleness, patience);
        Ok(Arc::new(RaftNode {
            raft,
            ctx,
            network,
            store,
            snapshots,
            read_index: read_index::ReadIndexCoalescer::new(
                metrics.read_index_rounds.clone(),
                metrics.read_index_callers.clone(),
            ),
            metrics,
            settings,
            join_token,
            on_sealing_key,
            pending_hello: std::sync::Mutex::new(None),
            freshness,
            hub,
        }))
    }

    /// This node's peer public key, as admitted into the membership.
    pub fn peer_public_key(&self) -> [u8; 32] {
        self.ctx.identity.public()
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.ctx.node_id
    }

    /// The node's metrics, for services that count what they do.
    pub fn metrics(&self) -> &Metrics {
        &self.ctx.metrics
    }

    /// The store this node applies into.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The hub on which this node's state machine publishes sync changes.
    pub fn hub(&self) -> &Arc<crate::sync::hub::ChangeHub> {
        &self.hub
    }

    pub(crate) fn raft(&self) -> &Raft {
        &self.raft
    }

    pub(crate) fn snapshots(&self) -> &SnapshotDir {
        &self.snapshots
    }

    pub(crate) fn settings(&self) -> &RaftSettings {
        &self.settings
    }

    /// How recently a quorum confirmed this node's state (bounded
    /// staleness; kept up by [`freshness::maintain`]).
    pub fn freshness(&self) -> &freshness::Freshness {
        &self.freshness
    }

    /// The cluster id, once known.
    pub fn cluster_id(&self) -> Option<String> {
        let id = self.ctx.cluster_id();
        (!id.is_empty()).then_some(id)
    }

    /// Records the cluster id in memory and on disk (refusing a different
    /// one).
    pub fn bind_cluster(&self, cluster_id: &str) -> Result<(), ConsensusError> {
        self.store.bind_cluster(cluster_id)?;
        if let Ok(mut c) = self.ctx.cluster_id.write() {
            *c = Some(cluster_id.to_string());
        }
        Ok(())
    }

    /// Whether this node has joined or formed a cluster.
    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    /// Forms a one-member cluster of this node.
    pub async fn initialize(&self, addr: NodeAddr) -> Result<(), ConsensusError> {
        let members = std::collections::BTreeMap::from([(self.ctx.node_id, addr)]);
        self.raft
            .initialize(members)
            .await
            .map_err(|e| ConsensusError::Membership(e.to_string()))?;
        // Wait until this node leads, so the caller can propose at once.
        self.raft
            .wait(Some(Duration::from_secs(10)))
            .state(ServerState::Leader, "become leader after init")
            .await
            .map_err(|e| ConsensusError::Unavailable(e.to_string()))?;
        Ok(())
    }

    /// Replicates `cmd` through the leader and returns its outcome once it
    /// is committed on a quorum and applied on this node's leader.
    pub async fn propose(&self, cmd: impl Into<Command>) -> Result<Outcome, ConsensusError> {
        let started = clock::instant();
        let req = ForwardRequest::Propose(Box::new(cmd.into()));
        let reply = self.to_leader(req).await;
        self.metrics.record_proposal(started.elapsed());
        match reply? {
            ForwardReply::Outcome(o) => Ok(*o),
            other => Err(ConsensusError::Unknown(format!("unexpected reply {other:?}"))),
        }
    }

    /// Waits until this node has applied everything committed before the
    /// call, as confirmed by the leader with a quorum round (ReadIndex).
    pub async fn read_barrier(&self) -> Result<(), ConsensusError> {
        // Concurrent callers share one round (see `read_index`).
        let index = self
            .read_index
            .read_index(|| async {
                match self.to_leader(ForwardRequest::ReadIndex).await? {
                    ForwardReply::ReadIndex(i) => Ok(i),
                    other => Err(ConsensusError::Unknown(format!("unexpected reply {other:?}"))),
                }
            })
            .await
            .map_err(read_index::owned_error)?;
        self.raft
            .wait(Some(self.settings.propose_timeout))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map_err(|e| ConsensusError::Unavailable(format!("catching up to read index {index}: {e}")))?;
        Ok(())
    }

    /// Adds a node as learner, waits for it to catch up, then makes it a
    /// voter.
    pub async fn add_node(&self, node_id: u64, addr: NodeAddr) -> Result<(), ConsensusError> {
        self.to_leader(ForwardRequest::AddLearner { node_id, addr }).await?;
        self.to_leader(ForwardRequest::PromoteVoter { node_id }).await?;
        Ok(())
    }

    /// Removes a node from the membership.
    pub async fn remove_node(&self, node_id: u64) -> Result<(), ConsensusError> {
        self.to_leader(ForwardRequest::RemoveNode { node_id }).await?;
        Ok(())
    }

    /// Sends `req` to the leader (this node or another), retrying while no
    /// leader is known or the request reached a node that is no longer
    /// leader. Never retries a request that may have been appended.
    async fn to_leader(&self, req: ForwardRequest) -> Result<ForwardReply, ConsensusError> {
        let deadline = clock::instant() + self.settings.propose_timeout;
        let mut hint: Option<(u64, NodeAddr)> = None;
        let mut pause = Duration::from_millis(20);
        loop {
            let leader = match hint.take() {
                Some(h) => Some(h),
                None => self.known_leader(),
            };
            let attempt = match &leader {
                Some((id, _)) if *id == self.ctx.node_id => self.handle_forward(req.clone()).await,
                Some((id, addr)) => {
                    // A read index proposes nothing (and freshness rounds
                    // would swamp the count).
                    if !matches!(req, ForwardRequest::ReadIndex) {
                        self.metrics.forwarded_proposals.inc();
                    }
                    let remaining = deadline.saturating_duration_since(clock::instant());
                    let mut client = self.network.client(*id, addr);
                    match client.forward(&req, remaining.max(Duration::from_millis(100))).await {
                        Ok(r) => Ok(r),
                        Err(PeerCallError::Forward(e)) => Err(e),
                        Err(PeerCallError::Unreachable(_, msg)) => Err(ConsensusError::NotLeader { leader: None })
                            .inspect_err(|_| tracing::debug!(leader = id, %msg, "leader unreachable; retrying")),
                        // A read index request changes nothing: always safe to retry.
                        Err(e) if matches!(req, ForwardRequest::ReadIndex) => {
                            tracing::debug!(error = %e, "read index via leader failed; retrying");
                            Err(ConsensusError::NotLeader { leader: None })
                        }
                        Err(e) => return Err(ConsensusError::Unknown(e.to_string())),
                    }
                }
                None => Err(ConsensusError::NotLeader { leader: None }),
            };
            match attempt {
                Ok(reply) => return Ok(reply),
                Err(ConsensusError::NotLeader { leader }) => {
                    if clock::instant() >= deadline {
                        return Err(ConsensusError::Unavailable(
                            "no leader could be reached before the deadline".into(),
                        ));
                    }
                    if leader.is_none() {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(200));
                    }
                    hint = leader;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn known_leader(&self) -> Option<(u64, NodeAddr)> {
        let m = self.raft.metrics().borrow_watched().clone();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, addr))
    }

    fn not_leader(&self, leader_id: Option<u64>, leader_node: Option<NodeAddr>) -> ConsensusError {
        let leader = match (leader_id, leader_node) {
            (Some(id), Some(addr)) => Some((id, addr)),
            (Some(id), None) => self
                .raft
                .metrics()
                .borrow_watched()
                .membership_config
                .membership()
                .get_node(&id)
                .map(|a| (id, a.clone())),
            _ => None,
        };
        // Pointing at ourselves would loop; let the caller re-read metrics.
        let leader = leader.filter(|(id, _)| *id != self.ctx.node_id);
        ConsensusError::NotLeader { leader }
    }

    /// Serves a request that only the leader can serve; a non-leader answers
    /// `NotLeader` with its best leader hint.
    pub async fn handle_forward(&self, req: ForwardRequest) -> Result<ForwardReply, ConsensusError> {
        match req {
            ForwardRequest::Propose(cmd) => match self.raft.client_write(*cmd).await {
                Ok(resp) => Ok(ForwardReply::Outcome(Box::new(resp.data))),
                Err(e) => Err(self.write_error(e)),
            },
            ForwardRequest::ReadIndex => match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
                Ok(read) => Ok(ForwardReply::ReadIndex(read.index())),
                Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                    Err(self.not_leader(f.leader_id, f.leader_node))
                }
                Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(q))) => {
                    Err(ConsensusError::Unavailable(q.to_string()))
                }
                Err(RaftError::Fatal(f)) => Err(ConsensusError::Fatal(f.to_string())),
            },
            ForwardRequest::AddLearner { node_id, addr } => {
                if !self.raft.is_leader() {
                    return Err(self.not_leader(self.known_leader().map(|l| l.0), None));
                }
                // Only an admitted node (its peer key replicated) may receive
                // the log: a learner gets every user record.
                match self.store.peer_key(node_id) {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        return Err(ConsensusError::Membership(format!(
                            "node {node_id} has not been admitted with a join token; add it with 'tessera cluster add-node' after starting it with --join-token"
                        )))
                    }
                    Err(e) => return Err(ConsensusError::Fatal(e.to_string())),
                }
                match self.raft.add_learner(node_id, addr, true).await {
                    Ok(_) => Ok(ForwardReply::Membership),
                    Err(e) => Err(self.write_error(e)),
                }
            }
            ForwardRequest::PromoteVoter { node_id } => {
                let set = BTreeSet::from([node_id]);
                match self.raft.change_membership(ChangeMembers::AddVoterIds(set), true).await {
                    Ok(_) => Ok(ForwardReply::Membership),
                    Err(e) => Err(self.write_error(e)),
                }
            }
            ForwardRequest::RemoveNode { node_id } => {
                let is_voter = self.raft.voter_ids().any(|v| v == node_id);
                if is_voter {
                    let set = BTreeSet::from([node_id]);
                    if let Err(e) = self
                        .raft
                        .change_membership(ChangeMembers::RemoveVoters(set), true)
                        .await
                    {
                        return Err(self.write_error(e));
                    }
                }
                let set = BTreeSet::from([node_id]);
                match self
                    .raft
                    .change_membership(ChangeMembers::RemoveNodes(set), false)
                    .await
                {
                    Ok(_) => Ok(ForwardReply::Membership),
                    Err(e) => Err(self.write_error(e)),
                }
            }
        }
    }

    fn write_error(&self, e: RaftError<types::TypeConfig, ClientWriteError<types::TypeConfig>>) -> ConsensusError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => self.not_leader(f.leader_id, f.leader_node),
            RaftError::APIError(ClientWriteError::LogEntryDiscarded(f)) => {
                ConsensusError::Unknown(format!("leader changed before the entry committed; {f}"))
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(m)) => {
                ConsensusError::Membership(m.to_string())
            }
            RaftError::APIError(ClientWriteError::PreconditionFailed(p)) => ConsensusError::Membership(p.to_string()),
            RaftError::Fatal(f) => ConsensusError::Fatal(f.to_string()),
        }
    }

    /// This node's current Raft progress.
    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, addr)| (*id, addr.clone(), voters.contains(id)))
            .collect();
        RaftStatus {
            node_id: m.id,
            state: format!("{:?}", m.state),
            term: m.current_term,
            leader_id: m.current_leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            committed_index: m.local_committed.as_ref().map(|l| l.index()).unwrap_or(0),
            applied_index: m.last_applied.as_ref().map(|l| l.index()).unwrap_or(0),
            snapshot_index: m.snapshot.as_ref().map(|l| l.index()).unwrap_or(0),
            purged_index: m.purged.as_ref().map(|l| l.index()).unwrap_or(0),
            members,
        }
    }

    /// Copies Raft progress into the Prometheus gauges.
    pub fn refresh_metrics(&self) {
        let s = self.status();
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.metrics.term.set(g(s.term));
        self.metrics.leader_id.set(g(s.leader_id.unwrap_or(0)));
        self.metrics.is_leader.set(i64::from(s.leader_id == Some(s.node_id)));
        self.metrics.last_log_index.set(g(s.last_log_index));
        self.metrics.committed_index.set(g(s.committed_index));
        self.metrics.applied_index.set(g(s.applied_index));
        self.metrics.snapshot_index.set(g(s.snapshot_index));
    }

    /// Asks another member for its progress.
    pub async fn peer_status(&self, node_id: u64, addr: &NodeAddr) -> Result<RaftStatus, ConsensusError> {
        let mut client = self.network.client(node_id, addr);
        let r = client
            .node_status()
            .await
            .map_err(|e| ConsensusError::Unavailable(e.to_string()))?;
        Ok(RaftStatus {
            node_id: r.node_id,
            state: r.state,
            term: r.term,
            leader_id: r.leader_id,
            last_log_index: r.last_log_index,
            committed_index: r.committed_index,
            applied_index: r.applied_index,
            snapshot_index: r.snapshot_index,
            purged_index: r.purged_index,
            members: Vec::new(),
        })
    }

    /// Whether the consensus engine is still running. After a fatal storage
    /// error it is not, and the node must be restarted.
    pub fn is_alive(&self) -> bool {
        self.raft.metrics().borrow_watched().running_state.is_ok()
    }

    /// Resolves when the consensus engine stops on a fatal error, within
    /// [`FATAL_POLL`] of it. A clean stop never resolves it: only the
    /// node's own shutdown stops Raft cleanly, and that path does not wait
    /// here.
    ///
    /// Polled rather than watched: openraft publishes its metrics on every
    /// step of every write (log flushed, committed, applied), so a task
    /// waiting on that channel was woken, on a thread of its own, several
    /// times per write, which cost each write a context switch on the
    /// path and a share of the cores it runs on.
    pub async fn wait_fatal(&self) -> String {
        let mut tick = tokio::time::interval(FATAL_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = &self.raft.metrics().borrow_watched().running_state {
                return e.to_string();
            }
        }
    }

    /// Whether this node is a voter or learner, knows a leader, and has
    /// applied everything it knows to be committed.
    pub fn is_ready(&self) -> bool {
        let s = self.status();
        let member = s.members.iter().any(|(id, _, _)| *id == s.node_id);
        self.is_alive() && member && s.leader_id.is_some() && s.applied_index >= s.committed_index
    }

    /// Asks Raft to build a snapshot now and waits for it (operations and
    /// tests).
    pub async fn snapshot_now(&self) -> Result<u64, ConsensusError> {
        let applied = self.status().applied_index;
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| ConsensusError::Fatal(e.to_string()))?;
        let m = self
            .raft
            .wait(Some(Duration::from_secs(30)))
            .snapshot_index_at_least(applied)
            .await?;
        Ok(m)
    }

    /// If this node leads, hands leadership to the most caught-up voter and
    /// waits briefly for the handover, so that stopping it does not cost the
    /// cluster an election timeout.
    pub async fn step_down(&self) {
        if !self.raft.is_leader() {
            return;
        }
        let m = self.raft.metrics().borrow_watched().clone();
        let Some(target) = m.replication.as_ref().and_then(|r| {
            r.iter()
                .filter(|(id, _)| **id != self.ctx.node_id && self.raft.voter_ids().any(|v| v == **id))
                .max_by_key(|(_, matched)| matched.as_ref().map(|l| l.index()))
                .map(|(id, _)| *id)
        }) else {
            return;
        };
        if self.raft.trigger().transfer_leader(target).await.is_err() {
            return;
        }
        let _ = self
            .raft
            .wait(Some(Duration::from_secs(2)))
            .metrics(
                |m| m.current_leader.is_some() && m.current_leader != Some(m.id),
                "leader handed over",
            )
            .await;
    }

    /// Stops Raft.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// The join handshake: the fresh node's side ([`RaftNode::join_hello`],
/// [`RaftNode::accept_join`]) and the member's ([`RaftNode::admit`]).
impl RaftNode {
    /// Whether a join for `cluster_id` may still be handled: the node is
    /// fresh, or it joined `cluster_id` but has not yet applied its own
    /// admission (a retried `add-node` whose first answer was lost).
    fn may_join(&self, cluster_id: &str) -> Result<(), JoinRefusal> {
        match self.cluster_id() {
            None => Ok(()),
            Some(ours) if ours == cluster_id => match self.store.peer_key(self.node_id()) {
                Ok(None) => Ok(()),
                Ok(Some(_)) => Err(JoinRefusal::Joined),
                Err(e) => Err(JoinRefusal::Internal(e.to_string())),
            },
            Some(_) => Err(JoinRefusal::Joined),
        }
    }

    /// Handshake step 1 on the fresh node: prove that it holds its join
    /// token, for the member's nonce, and name its peer key.
    pub fn join_hello(&self, req: JoinHelloRequest) -> Result<JoinHelloResponse, JoinRefusal> {
        if req.cluster_id.is_empty() || req.cluster_id.len() > 64 {
            return Err(JoinRefusal::Invalid("cluster_id: 1 to 64 characters".into()));
        }
        if req.nonce.len() != 32 {
            return Err(JoinRefusal::Invalid("nonce: 32 bytes".into()));
        }
        self.may_join(&req.cluster_id)?;
        let Some(token) = &self.join_token else {
            return Err(JoinRefusal::Precondition(
                "this node was started without a join token; start it with --join-token (from 'tessera cluster join-token create')".into(),
            ));
        };
        if req.node_id != self.node_id() {
            return Err(JoinRefusal::Precondition(
                "the join names another node id than this node was started with".into(),
            ));
        }
        let nonce = crate::clock::random_bytes::<32>();
        let peer_key = self.peer_public_key();
        let proof = join::hello_proof(
            &token.verifier(),
            &req.cluster_id,
            req.node_id,
            &peer_key,
            &req.nonce,
            &nonce,
        );
        if let Ok(mut p) = self.pending_hello.lock() {
            *p = Some(PendingHello {
                cluster_id: req.cluster_id,
                nonce,
                at: crate::clock::instant(),
            });
        }
        Ok(JoinHelloResponse {
            token_id: token.id.clone(),
            peer_key: peer_key.to_vec(),
            nonce: nonce.to_vec(),
            proof: proof.to_vec(),
        })
    }

    /// Handshake step 2 on the fresh node: check that the offer comes from
    /// the cluster that issued the token, then bind to it, record the
    /// members' peer keys and store the sealing key.
    pub async fn accept_join(&self, offer: JoinOffer) -> Result<JoinAccepted, JoinRefusal> {
        self.may_join(&offer.cluster_id)?;
        let Some(token) = &self.join_token else {
            return Err(JoinRefusal::Precondition(
                "this node was started without a join token".into(),
            ));
        };
        let pending = self.pending_hello.lock().ok().and_then(|mut p| p.take());
        let Some(pending) = pending.filter(|p| p.at.elapsed() < HELLO_VALID) else {
            return Err(JoinRefusal::Precondition(
                "no join hello is pending; run add-node again".into(),
            ));
        };
        if pending.cluster_id != offer.cluster_id
            || pending.nonce[..] != offer.nonce[..]
            || offer.node_id != self.node_id()
        {
            return Err(JoinError::BadProof.into());
        }
        if offer.members.len() > MAX_OFFER_MEMBERS {
            return Err(JoinRefusal::Invalid(format!("at most {MAX_OFFER_MEMBERS} members")));
        }
        let mut members = Vec::with_capacity(offer.members.len());
        for m in &offer.members {
            let key: [u8; 32] = m
                .public_key
                .as_slice()
                .try_into()
                .map_err(|_| JoinRefusal::Invalid("members: peer keys are 32 bytes".into()))?;
            members.push((m.node_id, key));
        }
        let verifier = token.verifier();
        let expected = join::offer_proof(
            &verifier,
            &offer.cluster_id,
            offer.node_id,
            &pending.nonce,
            &members,
            &offer.sealed_key,
        );
        if !join::proof_matches(&expected, &offer.proof) {
            return Err(JoinError::BadProof.into());
        }
        if let Some(key) = join::open_key(&verifier, &offer.cluster_id, &offer.sealed_key)? {
            (self.on_sealing_key)(&key).map_err(JoinRefusal::Precondition)?;
        }
        self.store
            .set_bootstrap_peers(&members)
            .map_err(|e| JoinRefusal::Internal(e.to_string()))?;
        self.bind_cluster(&offer.cluster_id)
            .map_err(|e| JoinRefusal::Internal(e.to_string()))?;
        tracing::info!(cluster_id = %offer.cluster_id, members = members.len(), "joined the cluster; waiting for the log");
        Ok(JoinAccepted {})
    }

    /// The member's side: runs the handshake with the fresh node `node_id`
    /// at `addr`, checks its join token, admits its peer key through Raft,
    /// and hands it the members' keys and `sealing_key`. After this, the
    /// node may be added as a learner.
    pub async fn admit(&self, node_id: u64, addr: &NodeAddr, sealing_key: Option<&[u8; 32]>) -> Result<(), AdmitError> {
        let cluster_id = self
            .cluster_id()
            .ok_or_else(|| AdmitError::Refused("this node has not joined a cluster".into()))?;
        let mut client = self.network.client(node_id, addr);
        let our_nonce = crate::clock::random_bytes::<32>();
        let hello = client
            .join_hello(JoinHelloRequest {
                cluster_id: cluster_id.clone(),
                node_id,
                nonce: our_nonce.to_vec(),
            })
            .await
            .map_err(|e| AdmitError::Refused(format!("node {node_id} at {} refused to join: {e}", addr.peer_addr)))?;
        let token = self.store.join_token(&hello.token_id)?.ok_or_else(|| {
            AdmitError::Refused(format!(
                "node {node_id} holds join token {:?}, which this cluster does not know (revoked, or issued by another cluster)",
                hello.token_id
            ))
        })?;
        let now = crate::clock::now_millis();
        if let Some(why) = token.refusal(node_id, now) {
            return Err(AdmitError::Refused(why));
        }
        let peer_key: [u8; 32] = hello
            .peer_key
            .as_slice()
            .try_into()
            .map_err(|_| AdmitError::Refused(format!("node {node_id} sent a malformed peer key")))?;
        let expected = join::hello_proof(
            &token.verifier,
            &cluster_id,
            node_id,
            &peer_key,
            &our_nonce,
            &hello.nonce,
        );
        if !join::proof_matches(&expected, &hello.proof) {
            return Err(AdmitError::Refused(format!(
                "node {node_id} does not hold the secret of join token {}: start it with the exact token printed by 'join-token create'",
                token.id
            )));
        }
        let admitted = self
            .propose(AdmitNode {
                node_id,
                public_key: peer_key,
                token_id: Some(token.id.clone()),
                now,
            })
            .await?;
        if let Outcome::Rejected(r) = admitted {
            return Err(AdmitError::Refused(r.to_string()));
        }
        let members: Vec<(u64, [u8; 32])> = self
            .store
            .peer_keys()?
            .into_iter()
            .map(|k| (k.node_id, k.public_key))
            .chain(std::iter::once((node_id, peer_key)))
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect();
        let sealed_key = join::seal_key(&token.verifier, &cluster_id, sealing_key);
        let proof = join::offer_proof(
            &token.verifier,
            &cluster_id,
            node_id,
            &hello.nonce,
            &members,
            &sealed_key,
        );
        client
            .join(JoinOffer {
                cluster_id,
                node_id,
                members: members
                    .iter()
                    .map(|(id, key)| PeerKey {
                        node_id: *id,
                        public_key: key.to_vec(),
                    })
                    .collect(),
                sealed_key,
                nonce: hello.nonce,
                proof: proof.to_vec(),
            })
            .await
            .map_err(|e| AdmitError::Refused(format!("node {node_id} refused the join offer: {e}")))?;
        Ok(())
    }
}

/// Waiting helpers not provided by openraft's `Wait`.
trait WaitExt {
    async fn snapshot_index_at_least(self, index: u64) -> Result<u64, ConsensusError>;
}

impl WaitExt for openraft::metrics::Wait<types::TypeConfig> {
    async fn snapshot_index_at_least(self, index: u64) -> Result<u64, ConsensusError> {
        let m = self
            .metrics(
                move |m| m.snapshot.as_ref().map(|l| l.index()).unwrap_or(0) >= index,
                "snapshot built",
            )
            .await
            .map_err(|e| ConsensusError::Unavailable(e.to_string()))?;
        Ok(m.snapshot.as_ref().map(|l| l.index()).unwrap_or(0))
    }
}
