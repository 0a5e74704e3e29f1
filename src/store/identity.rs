//! Typed reads of identity pools, identities, their login index and roles,
//! shared by `apply` and the read path.

use super::keys::{pool_key, Table};
use super::{codec, Store, StoreError};
use crate::model::identity::{Identity, Login};
use crate::model::identity_pool::IdentityPool;
use crate::model::identity_provider::{IdentityProvider, ProviderLink};
use crate::model::role::Role;

/// `identity_pool_id | 0 | provider | 0 | subject`: the unique login index
/// key. Provider names and subjects never hold a zero byte (validated at
/// the edge and in `apply`), so keys of different logins never collide.
pub fn login_key(pool_id: &str, login: &Login) -> Vec<u8> {
    let mut rest = Vec::with_capacity(login.provider.len() + 1 + login.subject.len());
    rest.extend_from_slice(login.provider.as_bytes());
    rest.push(0);
    rest.extend_from_slice(login.subject.as_bytes());
    pool_key(pool_id, &rest)
}

/// `user_pool_id | 0 | sub`: key of a user's own role.
pub fn user_role_key(user_pool_id: &str, sub: &str) -> Vec<u8> {
    pool_key(user_pool_id, sub.as_bytes())
}

/// `pool_id | 0 | provider | 0 | subject`: the external-identity index key.
pub fn provider_link_key(pool_id: &str, provider: &str, subject: &str) -> Vec<u8> {
    let mut rest = Vec::with_capacity(provider.len() + 1 + subject.len());
    rest.extend_from_slice(provider.as_bytes());
    rest.push(0);
    rest.extend_from_slice(subject.as_bytes());
    pool_key(pool_id, &rest)
}

/// `pool_id | 0 | sub | 0 | provider`: a user's link to a provider.
pub fn user_link_key(pool_id: &str, sub: &str, provider: &str) -> Vec<u8> {
    provider_link_key(pool_id, sub, provider)
}

/// Kind byte of a group's reference to a role.
pub const REF_GROUP: u8 = b'g';
/// Kind byte of a user's own role.
pub const REF_USER: u8 = b'u';

/// `role | 0 | pool_id | 0 | kind | name`: one holder of a role.
pub fn role_ref_key(role: &str, pool_id: &str, kind: u8, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(role.len() + pool_id.len() + name.len() + 3);
    k.extend_from_slice(role.as_bytes());
    k.push(0);
    k.extend_from_slice(pool_id.as_bytes());
    k.push(0);
    k.push(kind);
    k.extend_from_slice(name.as_bytes());
    k
}

fn decode_opt<T: serde::de::DeserializeOwned>(v: Option<Vec<u8>>) -> Result<Option<T>, StoreError> {
    v.map(|b| codec::decode(&b)).transpose().map_err(Into::into)
}

impl Store {
    /// An identity pool by id.
    pub fn identity_pool(&self, id: &str) -> Result<Option<IdentityPool>, StoreError> {
        decode_opt(self.sm_get(Table::IdentityPools, id.as_bytes())?)
    }

    /// Up to `limit` identity pools with id after `after`, in id order.
    pub fn identity_pools_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<IdentityPool>, StoreError> {
        self.sm_scan(Table::IdentityPools, after.map(str::as_bytes), limit)?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(StoreError::from))
            .collect()
    }

    /// An identity by id.
    pub fn identity_by_id(&self, id: &str) -> Result<Option<Identity>, StoreError> {
        decode_opt(self.sm_get(Table::Identities, id.as_bytes())?)
    }

    /// The identity a login is linked to in a pool.
    pub fn identity_of_login(&self, pool_id: &str, login: &Login) -> Result<Option<String>, StoreError> {
        decode_opt(self.sm_get(Table::IdentityLogins, &login_key(pool_id, login))?)
    }

    /// Up to `limit` identity ids of a pool after `after`, in id order.
    pub fn pool_identity_ids(
        &self,
        pool_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = pool_key(pool_id, &[]);
        self.sm_scan_prefix(Table::PoolIdentities, &prefix, after.map(str::as_bytes), limit)?
            .into_iter()
            .map(|(k, _)| {
                String::from_utf8(k[prefix.len()..].to_vec())
                    .map_err(|_| StoreError::Identity("an identity id in the index is not UTF-8".into()))
            })
            .collect()
    }

    /// Many identities by id, in the order given (missing ones skipped).
    pub fn identities_by_id(&self, ids: &[String]) -> Result<Vec<Identity>, StoreError> {
        let keys: Vec<Vec<u8>> = ids.iter().map(|i| i.as_bytes().to_vec()).collect();
        let mut out = Vec::with_capacity(ids.len());
        for v in self.sm_multi_get(Table::Identities, &keys)?.into_iter().flatten() {
            out.push(codec::decode(&v)?);
        }
        Ok(out)
    }

    /// A role by name.
    pub fn role(&self, name: &str) -> Result<Option<Role>, StoreError> {
        decode_opt(self.sm_get(Table::Roles, name.as_bytes())?)
    }

    /// Up to `limit` roles with name after `after`, in name order.
    pub fn roles_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<Role>, StoreError> {
        self.sm_scan(Table::Roles, after.map(str::as_bytes), limit)?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(StoreError::from))
            .collect()
    }

    /// The role assigned to one user-pool user, by name.
    pub fn user_role(&self, user_pool_id: &str, sub: &str) -> Result<Option<String>, StoreError> {
        decode_opt(self.sm_get(Table::UserRoles, &user_role_key(user_pool_id, sub))?)
    }

    /// An identity provider of a user pool.
    pub fn identity_provider(&self, pool_id: &str, name: &str) -> Result<Option<IdentityProvider>, StoreError> {
        decode_opt(self.sm_get(Table::IdentityProviders, &pool_key(pool_id, name.as_bytes()))?)
    }

    /// Up to `limit` identity providers of a pool after `after`, by name.
    pub fn identity_providers_page(
        &self,
        pool_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<IdentityProvider>, StoreError> {
        let prefix = pool_key(pool_id, &[]);
        self.sm_scan_prefix(Table::IdentityProviders, &prefix, after.map(str::as_bytes), limit)?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(StoreError::from))
            .collect()
    }

    /// The sub of the user an external identity signs in as.
    pub fn provider_link(&self, pool_id: &str, provider: &str, subject: &str) -> Result<Option<String>, StoreError> {
        decode_opt(self.sm_get(Table::ProviderLinks, &provider_link_key(pool_id, provider, subject))?)
    }

    /// Every external identity linked to a user, by provider.
    pub fn user_links(&self, pool_id: &str, sub: &str) -> Result<Vec<ProviderLink>, StoreError> {
        let prefix = user_link_key(pool_id, sub, "");
        self.sm_scan_prefix(Table::UserProviderLinks, &prefix, None, 64)?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(StoreError::from))
            .collect()
    }

    /// One holder of `role`, if any: `(pool_id, kind, name)`.
    pub fn role_holder(&self, role: &str) -> Result<Option<(String, u8, String)>, StoreError> {
        let mut prefix = role.as_bytes().to_vec();
        prefix.push(0);
        let rows = self.sm_scan_prefix(Table::RoleRefs, &prefix, None, 1)?;
        Ok(rows.into_iter().next().and_then(|(k, _)| {
            let rest = k.get(prefix.len()..)?;
            let zero = rest.iter().position(|b| *b == 0)?;
            let pool = String::from_utf8(rest[..zero].to_vec()).ok()?;
            let kind = *rest.get(zero + 1)?;
            let name = String::from_utf8(rest.get(zero + 2..)?.to_vec()).ok()?;
            Some((pool, kind, name))
        }))
    }
}
