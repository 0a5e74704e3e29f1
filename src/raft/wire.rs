//! What travels inside the peer service's opaque payloads.
//!
//! Raft messages are openraft's own types, encoded with the versioned codec.
//! Forwarded requests are Tessera's: a follower sends them to the leader,
//! which answers with a [`ForwardReply`] or a [`ConsensusError`](super::ConsensusError).

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
    AddLearner {
        /// The new node's id.
        node_id: u64,
        /// Where it serves its peer and api ports.
        addr: NodeAddr,
    },
    /// Make an existing learner a voter. The leader computes the new voter
    /// set from its own, current membership.
    PromoteVoter {
        /// The learner to promote.
        node_id: u64,
    },
    /// Remove a node (voter or learner) from the membership.
    RemoveNode {
        /// The node to remove; its id is never reused.
        node_id: u64,
    },
}

/// The leader's answer to a [`ForwardRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardReply {
    /// The outcome of applying a proposed command.
    Outcome(Box<Outcome>),
    /// The leader's commit index, confirmed by a quorum.
    ReadIndex(u64),
    /// The membership change was committed.
    Membership,
}

#[cfg(test)]
mod tests {
    use super::super::ConsensusError;
    use crate::store::codec::{decode, encode};

    /// The error half of a forwarded reply keeps the variant indices of
    /// the `ForwardError` that nodes of the previous version send and
    /// expect (0 not leader, 1 unknown, 2 membership, 3 no quorum, 4
    /// fatal), so a mixed-version cluster still understands its leader.
    #[test]
    fn consensus_errors_keep_the_forward_error_encoding() {
        let cases = [
            (ConsensusError::NotLeader { leader: None }, 0u8),
            (ConsensusError::Unknown("u".into()), 1),
            (ConsensusError::Membership("m".into()), 2),
            (ConsensusError::Unavailable("q".into()), 3),
            (ConsensusError::Fatal("f".into()), 4),
        ];
        for (e, index) in cases {
            let bytes = encode(&Err::<(), _>(e.clone())).unwrap();
            // The codec's version byte, `Result::Err` (variant 1), then
            // the error's own index.
            assert_eq!(&bytes[1..3], &[1, index], "{e:?}");
            let back: Result<(), ConsensusError> = decode(&bytes).unwrap();
            assert_eq!(back.unwrap_err().to_string(), e.to_string());
        }
    }
}
