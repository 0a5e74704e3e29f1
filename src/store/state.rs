//! Typed reads of the replicated state, shared by `apply` and the read path.

use super::keys::{id_key, Table};
use super::{codec, Store, StoreError};
use crate::model::cluster::{ClusterInfo, JoinTokenRecord, PeerKeyRecord};
use crate::model::pool::UserPool;

/// The singleton key of the cluster settings.
pub const CLUSTER_KEY: &[u8] = b"cluster";

impl Store {
    /// Cluster settings, once `cluster init` has been applied.
    pub fn cluster_info(&self) -> Result<Option<ClusterInfo>, StoreError> {
        self.sm_get(Table::Cluster, CLUSTER_KEY)?
            .map(|b| codec::decode(&b))
            .transpose()
            .map_err(Into::into)
    }

    /// Whether `node_id` was removed from the cluster at some point.
    pub fn is_retired(&self, node_id: u64) -> Result<bool, StoreError> {
        Ok(self.sm_get(Table::RetiredNodes, &id_key(node_id))?.is_some())
    }

    /// Every retired node id, in order.
    pub fn retired_nodes(&self) -> Result<Vec<u64>, StoreError> {
        let rows = self.sm_scan(Table::RetiredNodes, None, 10_000)?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, _)| k.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes))
            .collect())
    }

    /// The admitted peer key of `node_id`, if it is a member.
    pub fn peer_key(&self, node_id: u64) -> Result<Option<PeerKeyRecord>, StoreError> {
        self.sm_get(Table::PeerKeys, &id_key(node_id))?
            .map(|b| codec::decode(&b))
            .transpose()
            .map_err(Into::into)
    }

    /// Every admitted peer key, in node id order.
    pub fn peer_keys(&self) -> Result<Vec<PeerKeyRecord>, StoreError> {
        self.sm_scan(Table::PeerKeys, None, 10_000)?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(StoreError::from))
            .collect()
    }

    /// A join token by id.
    pub fn join_token(&self, id: &str) -> Result<Option<JoinTokenRecord>, StoreError> {
        self.sm_get(Table::JoinTokens, id.as_bytes())?
            .map(|b| codec::decode(&b))
            .transpose()
            .map_err(Into::into)
    }

    /// Every join token, in id order.
    pub fn join_tokens(&self) -> Result<Vec<JoinTokenRecord>, StoreError> {
        self.sm_scan(Table::JoinTokens, None, 10_000)?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(StoreError::from))
            .collect()
    }

    /// Peer keys a join handed over (node-local, not replicated).
    pub fn bootstrap_peers(&self) -> Result<Vec<(u64, [u8; 32])>, StoreError> {
        Ok(self.get_meta(super::keys::meta::BOOTSTRAP_PEERS)?.unwrap_or_default())
    }

    /// Records the peer keys a join handed over, durably.
    pub fn set_bootstrap_peers(&self, peers: &[(u64, [u8; 32])]) -> Result<(), StoreError> {
        self.put_meta_sync(super::keys::meta::BOOTSTRAP_PEERS, peers)
    }

    /// One user pool by id.
    pub fn pool(&self, pool_id: &str) -> Result<Option<UserPool>, StoreError> {
        self.sm_get(Table::Pools, pool_id.as_bytes())?
            .map(|b| codec::decode(&b))
            .transpose()
            .map_err(Into::into)
    }

    /// Up to `limit` pools with id after `after`, in id order.
    pub fn pools_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<UserPool>, StoreError> {
        self.sm_scan(Table::Pools, after.map(str::as_bytes), limit)?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(StoreError::from))
            .collect()
    }

    /// Number of pools; used by convergence checks.
    pub fn pool_count(&self) -> Result<u64, StoreError> {
        Ok(self.sm_scan(Table::Pools, None, usize::MAX)?.len() as u64)
    }

    /// SHA-256 over every record of the replicated state except Raft's own
    /// bookkeeping, so nodes can prove they converged on the same state.
    pub fn state_digest(&self) -> Result<[u8; 32], StoreError> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        self.export_state(|k, v| {
            if k.first() != Some(&(Table::Applied as u8)) {
                h.update((k.len() as u64).to_be_bytes());
                h.update(k);
                h.update((v.len() as u64).to_be_bytes());
                h.update(v);
            }
            Ok(())
        })?;
        Ok(h.finalize().into())
    }
}

/// Reads of users and their unique indexes.
impl Store {
    /// A user by pool and sub.
    pub fn user(&self, pool_id: &str, sub: &str) -> Result<Option<crate::model::user::User>, StoreError> {
        use super::keys::pool_key;
        self.sm_get(Table::Users, &pool_key(pool_id, sub.as_bytes()))?
            .map(|b| codec::decode(&b))
            .transpose()
            .map_err(Into::into)
    }

    /// The sub owning a normalized username.
    pub fn sub_by_username(&self, pool_id: &str, normalized: &str) -> Result<Option<String>, StoreError> {
        use super::keys::pool_key;
        self.sm_get(Table::UserNames, &pool_key(pool_id, normalized.as_bytes()))?
            .map(|b| codec::decode(&b))
            .transpose()
            .map_err(Into::into)
    }

    /// The sub owning a normalized alias value.
    pub fn sub_by_alias(
        &self,
        pool_id: &str,
        alias: crate::model::pool_settings::SignInAlias,
        normalized: &str,
    ) -> Result<Option<String>, StoreError> {
        self.sm_get(Table::UserAliases, &alias_key(pool_id, alias, normalized))?
            .map(|b| codec::decode(&b))
            .transpose()
            .map_err(Into::into)
    }

    /// Number of users in a pool as the maintained counter says (cheap).
    pub fn estimated_users(&self, pool_id: &str) -> Result<u64, StoreError> {
        Ok(self
            .sm_get(Table::UserCounts, pool_id.as_bytes())?
            .map(|b| codec::decode::<u64>(&b))
            .transpose()?
            .unwrap_or(0))
    }

    /// Number of users in a pool, counted by a scan (convergence checks,
    /// tests): independent of the maintained counter.
    pub fn user_count(&self, pool_id: &str) -> Result<u64, StoreError> {
        use super::keys::pool_key;
        let prefix = pool_key(pool_id, &[]);
        let mut n = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.sm_scan(
                Table::Users,
                after.as_deref().or(Some(&prefix[..prefix.len() - 1])),
                1000,
            )?;
            let mut last = None;
            for (k, _) in &page {
                if !k.starts_with(&prefix) {
                    return Ok(n);
                }
                n += 1;
                last = Some(k.clone());
            }
            match last {
                Some(l) if page.len() == 1000 => after = Some(l),
                _ => return Ok(n),
            }
        }
    }
}

/// `pool_id | 0 | alias | value`.
pub fn alias_key(pool_id: &str, alias: crate::model::pool_settings::SignInAlias, normalized: &str) -> Vec<u8> {
    let mut rest = vec![alias as u8];
    rest.extend_from_slice(normalized.as_bytes());
    super::keys::pool_key(pool_id, &rest)
}

impl Store {
    /// Every registered public signing key, in kid order.
    pub fn signing_keys(&self) -> Result<Vec<crate::model::cluster::SigningKeyRecord>, StoreError> {
        self.sm_scan(Table::SigningKeys, None, 10_000)?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(StoreError::from))
            .collect()
    }
}
