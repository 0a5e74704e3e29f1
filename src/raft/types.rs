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

pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, super::snapshot_file::SnapshotFile>;
