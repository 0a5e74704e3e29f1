//! Typed reads of the OAuth side of a pool: app clients' OAuth settings
//! and resource servers; shared by `apply` and the read paths.

use super::keys::{pool_key, Table};
use super::{codec, Store, StoreError};
use crate::model::oauth_client::ClientOAuth;
use crate::model::resource_server::ResourceServer;

impl Store {
    /// An app client's OAuth settings; the default (no OAuth grant) when
    /// none were ever set.
    pub fn client_oauth(&self, client_id: &str) -> Result<ClientOAuth, StoreError> {
        match self.sm_get(Table::AppClientOAuth, client_id.as_bytes())? {
            Some(v) => Ok(codec::decode(&v)?),
            None => Ok(ClientOAuth::default()),
        }
    }

    /// One resource server of a pool.
    pub fn resource_server(&self, pool_id: &str, identifier: &str) -> Result<Option<ResourceServer>, StoreError> {
        self.sm_get(Table::ResourceServers, &pool_key(pool_id, identifier.as_bytes()))?
            .map(|v| codec::decode(&v).map_err(StoreError::from))
            .transpose()
    }

    /// Up to `limit` resource servers of a pool after `after`, by identifier.
    pub fn resource_servers_page(
        &self,
        pool_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ResourceServer>, StoreError> {
        let prefix = pool_key(pool_id, &[]);
        self.sm_scan_prefix(Table::ResourceServers, &prefix, after.map(str::as_bytes), limit)?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(StoreError::from))
            .collect()
    }

    /// Whether `scope` (`identifier/name`) is defined by a resource server
    /// of the pool now. Scope names hold no `/`, so the identifier is
    /// everything before the last one.
    pub fn scope_exists(&self, pool_id: &str, scope: &str) -> Result<bool, StoreError> {
        let Some((identifier, _)) = scope.rsplit_once('/') else {
            return Ok(false);
        };
        Ok(self
            .resource_server(pool_id, identifier)?
            .is_some_and(|rs| rs.defines(scope)))
    }
}

impl Store {
    /// The branding stored for `client_id` (empty: the pool's default).
    pub fn branding(
        &self,
        pool_id: &str,
        client_id: &str,
    ) -> Result<Option<crate::model::branding::Branding>, StoreError> {
        self.sm_get(Table::Brandings, &pool_key(pool_id, client_id.as_bytes()))?
            .map(|v| codec::decode(&v).map_err(StoreError::from))
            .transpose()
    }

    /// The branding with id `branding_id`: a scan of the pool's brandings,
    /// of which there are at most one per client and one for the pool.
    pub fn branding_by_id(
        &self,
        pool_id: &str,
        branding_id: &str,
    ) -> Result<Option<crate::model::branding::Branding>, StoreError> {
        let prefix = pool_key(pool_id, &[]);
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.sm_scan_prefix(Table::Brandings, &prefix, after.as_deref(), 256)?;
            let Some((last, _)) = page.last() else {
                return Ok(None);
            };
            let last = last[prefix.len()..].to_vec();
            for (_, v) in page {
                let b: crate::model::branding::Branding = codec::decode(&v)?;
                if b.branding_id == branding_id {
                    return Ok(Some(b));
                }
            }
            after = Some(last);
        }
    }
}
