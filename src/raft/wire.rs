//! What travels inside the peer service's opaque payloads.
//!
//! Raft messages are openraft's own types, encoded with the versioned codec.
//! Forwarded requests are Tessera's: a follower sends them to the leader,
//! which answers with a [`ForwardReply`] or a [`ForwardError`].

use serde::{Deserialize, Serialize};

use crate::command::{Command, Outcome};
use crate::model::cluster::NodeAddr;

/// Metadata key naming the cluster a peer call belongs to.
pub const HDR_CLUSTER: &str = "x-tessera-cluster-id";
/// Metadata key naming the sending node id.
pub const HDR_FROM: &str = "x-tessera-from";
/// Metadata key naming the node id the sender means to reach.
pub const HDR_TO: &str = "x-tessera-to";

/// A request only the leader can serve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardRequest {
    /// Append a command and answer with its outcome once applied.
    Propose(Box<Command>),
    /// Confirm leadership with a quorum and answer with the read index.
    ReadIndex,
    /// Add a learner and wait until it has caught up.
    AddLearner { node_id: u64, addr: NodeAddr },
    /// Make an existing learner a voter. The leader computes the new voter
    /// set from its own, current membership.
    PromoteVoter { node_id: u64 },
    /// Remove a node (voter or learner) from the membership.
    RemoveNode { node_id: u64 },
}

/// The leader's answer to a [`ForwardRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardReply {
    Outcome(Box<Outcome>),
    ReadIndex(u64),
    Membership,
}

/// Why a forwarded request failed.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// The receiver is not the leader (any more); try this one.
    #[error("not the leader; leader is {leader:?}")]
    NotLeader { leader: Option<(u64, NodeAddr)> },
    /// The entry may or may not commit: the leader changed under it.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// A membership change was refused.
    #[error("membership change refused: {0}")]
    Membership(String),
    /// No quorum could be reached in time.
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// The leader's Raft stopped.
    #[error("raft stopped: {0}")]
    Fatal(String),
}
