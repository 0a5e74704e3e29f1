//! Apply of the commands that decide who may speak on the peer port:
//! admitting a node's peer key with a join token, and managing join tokens.
//!
//! Admission is decided here, in log order, so two nodes racing to spend the
//! last use of a token cannot both succeed.

use super::{Apply, ApplyError};
use super::{Outcome, Rejection};
use crate::model::cluster::ClusterInfo;
use crate::model::cluster::{JoinTokenRecord, PeerKeyRecord};
use crate::store::keys::{id_key, Table};
use crate::store::state::CLUSTER_KEY;
use crate::store::{codec, SmBatch, Store, StoreError};
use serde::{Deserialize, Serialize};

/// Records `public_key` as node `node_id`'s peer key.
///
/// * Without a token: only while no node is admitted (the node that forms
///   the cluster), or as a repeat of that same admission.
/// * With a token: the token must exist, be unexpired, have uses left and
///   name this node if it names one. A repeat of an admission that already
///   happened with the same key and token is a no-op that spends nothing,
///   so a retried `add-node` does not burn a single-use token.
/// * A retired node id is never admitted again.
pub fn admit(
    store: &Store,
    batch: &mut SmBatch<'_>,
    node_id: u64,
    public_key: &[u8; 32],
    token_id: Option<&str>,
    now: i64,
) -> Result<Outcome, StoreError> {
    let refuse = |why: String| Ok(Outcome::Rejected(Rejection::JoinRefused(why)));
    if store.is_retired(node_id)? {
        return refuse(format!(
            "node id {node_id} was removed from this cluster and can never be reused"
        ));
    }
    let existing = store.peer_key(node_id)?;
    if let Some(e) = &existing {
        if &e.public_key == public_key && e.token_id.as_deref() == token_id {
            return Ok(Outcome::Done);
        }
    }
    match token_id {
        None => {
            if !store.peer_keys()?.is_empty() {
                return refuse("a join token is required to join this cluster".into());
            }
        }
        Some(id) => {
            let Some(mut token) = store.join_token(id)? else {
                return refuse(format!("join token {id} does not exist (revoked or never issued)"));
            };
            if let Some(why) = token.refusal(node_id, now) {
                return refuse(why);
            }
            token.uses = token.uses.saturating_add(1);
            batch.put(Table::JoinTokens, id.as_bytes(), &codec::encode(&token)?)?;
        }
    }
    let record = PeerKeyRecord {
        node_id,
        public_key: *public_key,
        admitted_at: now,
        token_id: token_id.map(str::to_string),
    };
    batch.put(Table::PeerKeys, &id_key(node_id), &codec::encode(&record)?)?;
    Ok(Outcome::Done)
}

/// Stores a new join token.
pub fn create_token(store: &Store, batch: &mut SmBatch<'_>, token: &JoinTokenRecord) -> Result<Outcome, StoreError> {
    if store.join_token(&token.id)?.is_some() {
        return Ok(Outcome::Rejected(Rejection::AlreadyExists {
            kind: "join token".into(),
            id: token.id.clone(),
        }));
    }
    batch.put(Table::JoinTokens, token.id.as_bytes(), &codec::encode(token)?)?;
    Ok(Outcome::Done)
}

/// Deletes a join token. Nodes already admitted with it stay members.
pub fn revoke_token(store: &Store, batch: &mut SmBatch<'_>, id: &str) -> Result<Outcome, StoreError> {
    if store.join_token(id)?.is_none() {
        return Ok(Outcome::Rejected(Rejection::NotFound {
            kind: "join token".into(),
            id: id.to_string(),
        }));
    }
    batch.delete(Table::JoinTokens, id.as_bytes())?;
    Ok(Outcome::Done)
}

/// A removed node loses its peer key with its id.
pub fn retire(batch: &mut SmBatch<'_>, node_id: u64) -> Result<Outcome, StoreError> {
    batch.put(Table::RetiredNodes, &id_key(node_id), &[])?;
    batch.delete(Table::PeerKeys, &id_key(node_id))?;
    Ok(Outcome::Done)
}

/// Sets the cluster-wide settings, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitCluster(pub ClusterInfo);

impl Apply for InitCluster {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if store.cluster_info()?.is_some() {
            return Ok(Outcome::Rejected(Rejection::AlreadyInitialized));
        }
        batch.put(Table::Cluster, CLUSTER_KEY, &codec::encode(&self.0)?)?;
        Ok(Outcome::Done)
    }
}
/// Records that a node id left the membership and may never return; its
/// keys stop being trusted to sign at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetireNode {
    /// The node id that left; never reused.
    pub node_id: u64,
}

impl Apply for RetireNode {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let out = retire(batch, self.node_id)?;
        super::tokens::retire_node_keys(store, batch, self.node_id)?;
        Ok(out)
    }
}
/// Admits a node to the peer port: records its peer public key,
/// spending one use of the join token it proved it holds. Without a
/// token, only the node that forms the cluster is admitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmitNode {
    /// The node admitted.
    pub node_id: u64,
    /// Its raw Ed25519 peer public key, which its peer calls are checked against.
    pub public_key: [u8; 32],
    /// The join token it proved; `None` only for the node that forms the cluster.
    pub token_id: Option<String>,
    /// Proposer's clock (Unix ms): checks the token's expiry and stamps `admitted_at`.
    pub now: i64,
}

impl Apply for AdmitNode {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(admit(
            store,
            batch,
            self.node_id,
            &self.public_key,
            self.token_id.as_deref(),
            self.now,
        )?)
    }
}
/// Stores a new join token (its verifier, never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateJoinToken(pub JoinTokenRecord);

impl Apply for CreateJoinToken {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(create_token(store, batch, &self.0)?)
    }
}
/// Deletes a join token: nodes not yet admitted with it cannot join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeJoinToken {
    /// Public id of the token to delete.
    pub id: String,
}

impl Apply for RevokeJoinToken {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(revoke_token(store, batch, &self.id)?)
    }
}
