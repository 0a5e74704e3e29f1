//! Apply of the commands that decide who may speak on the peer port:
//! admitting a node's peer key with a join token, and managing join tokens.
//!
//! Admission is decided here, in log order, so two nodes racing to spend the
//! last use of a token cannot both succeed.

use super::{Outcome, Rejection};
use crate::model::cluster::{JoinTokenRecord, PeerKeyRecord};
use crate::store::keys::{id_key, Table};
use crate::store::{codec, SmBatch, Store, StoreError};

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
