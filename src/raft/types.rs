//! The openraft type configuration: what Tessera's log carries and how nodes
//! are named. Everything openraft-specific is aliased here so that the rest
//! of `raft/` reads in Tessera's terms.

use crate::command::{Command, Outcome};
use crate::model::cluster::NodeAddr;

openraft::declare_raft_types!(
    /// Tessera's Raft types: commands in, outcomes out, `u64` node ids, and
    /// each node's peer and api addresses in the membership.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = u64,
        Node = NodeAddr,
);

/// Identifies a log entry: its index and the leader (term and node) that wrote it.
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// A node's vote: the term and the candidate it voted for.
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// One log entry: a command, a membership change or a blank.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// A membership with the log id where it was written.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// What a snapshot covers: its last log id and membership.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot with its data in a file.
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, super::snapshot_file::SnapshotFile>;
