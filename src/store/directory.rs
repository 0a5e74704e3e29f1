//! Typed reads and key layout of the user directory: groups and
//! memberships, the `ListUsers` secondary index, lockout counters, code-send
//! windows and the audit log. Shared by `apply` and the read paths.

use std::collections::BTreeSet;

use super::keys::{pool_key, Table};
use super::{codec, Store, StoreError};
use crate::model::auth_event::AuthEvent;
use crate::model::group::{precedence_order, Group};
use crate::model::lockout::LockoutState;
use crate::model::pool_settings::PoolSettings;
use crate::model::user::User;
use crate::model::user_filter::STANDARD_INDEXED;

/// `pool_id | 0 | a | 0 | b`.
pub fn pair_key(pool_id: &str, a: &str, b: &str) -> Vec<u8> {
    let mut rest = Vec::with_capacity(a.len() + 1 + b.len());
    rest.extend_from_slice(a.as_bytes());
    rest.push(0);
    rest.extend_from_slice(b.as_bytes());
    pool_key(pool_id, &rest)
}

/// `attribute | 0 | lowercased value`, the part of an index key a filter
/// matches on (without the pool prefix).
pub fn index_stem(attribute: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(attribute.len() + 1 + value.len());
    out.extend_from_slice(attribute.as_bytes());
    out.push(0);
    // Character-wise, as filters fold their values (see `fold_case`).
    out.extend_from_slice(crate::model::user_filter::fold_case(value).as_bytes());
    out
}

/// Every index key of `user` in a pool with `settings`: the standard
/// filterable attributes, status, and custom attributes declared indexed.
pub fn index_keys(settings: &PoolSettings, user: &User) -> BTreeSet<Vec<u8>> {
    let mut values: Vec<(&str, String)> = Vec::new();
    for name in STANDARD_INDEXED {
        let v = match *name {
            "username" => Some(user.username.clone()),
            "sub" => Some(user.sub.clone()),
            "cognito:user_status" => Some(user.status.as_cognito().to_string()),
            "status" => Some(if user.enabled { "enabled" } else { "disabled" }.to_string()),
            other => user.attributes.get(other).cloned(),
        };
        if let Some(v) = v {
            values.push((name, v));
        }
    }
    for (name, schema) in &settings.schema {
        if schema.indexed {
            if let Some(v) = user.attributes.get(name) {
                values.push((name.as_str(), v.clone()));
            }
        }
    }
    values
        .into_iter()
        .map(|(attr, v)| {
            let mut rest = index_stem(attr, &v);
            rest.push(0);
            rest.extend_from_slice(user.sub.as_bytes());
            pool_key(&user.pool_id, &rest)
        })
        .collect()
}

/// The sub at the end of an index key.
pub fn sub_of_index_key(key: &[u8]) -> Option<String> {
    let pos = key.iter().rposition(|b| *b == 0)?;
    String::from_utf8(key[pos + 1..].to_vec()).ok()
}

/// `pool_id | 0 | seq`.
pub fn event_key(pool_id: &str, seq: u64) -> Vec<u8> {
    pool_key(pool_id, &seq.to_be_bytes())
}

/// `pool_id | 0 | sub | 0 | seq`.
pub fn user_event_key(pool_id: &str, sub: &str, seq: u64) -> Vec<u8> {
    let mut rest = sub.as_bytes().to_vec();
    rest.push(0);
    rest.extend_from_slice(&seq.to_be_bytes());
    pool_key(pool_id, &rest)
}

/// The audit log's sequence range of one pool: events live in
/// `[first, next)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventBounds {
    /// Sequence of the oldest event kept.
    pub first: u64,
    /// Sequence the next event will get.
    pub next: u64,
}

/// Code sends of one user and purpose within a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SendWindow {
    /// Unix ms when the current window began (the first send in it).
    pub window_start: i64,
    /// Codes sent in the current window.
    pub count: u32,
}

fn decode_opt<T: serde::de::DeserializeOwned>(v: Option<Vec<u8>>) -> Result<Option<T>, StoreError> {
    v.map(|b| codec::decode(&b)).transpose().map_err(Into::into)
}

fn seq_of(key: &[u8]) -> Option<u64> {
    let tail = key.get(key.len().checked_sub(8)?..)?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

impl Store {
    /// One group.
    pub fn group(&self, pool_id: &str, name: &str) -> Result<Option<Group>, StoreError> {
        decode_opt(self.sm_get(Table::Groups, &pool_key(pool_id, name.as_bytes()))?)
    }

    /// Up to `limit` groups of a pool, by name, after `after`.
    pub fn groups_page(&self, pool_id: &str, after: Option<&str>, limit: usize) -> Result<Vec<Group>, StoreError> {
        let prefix = pool_key(pool_id, &[]);
        self.sm_scan_prefix(Table::Groups, &prefix, after.map(str::as_bytes), limit)?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(Into::into))
            .collect()
    }

    /// Names of the groups `sub` belongs to, by name (at most `limit`).
    pub fn group_names_of(&self, pool_id: &str, sub: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let prefix = pair_key(pool_id, sub, "");
        Ok(self
            .sm_scan_prefix(Table::UserGroups, &prefix, None, limit)?
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
            .collect())
    }

    /// The groups of `sub`, in `cognito:groups` order (precedence, name).
    pub fn groups_of(&self, pool_id: &str, sub: &str) -> Result<Vec<Group>, StoreError> {
        let mut out = Vec::new();
        for name in self.group_names_of(pool_id, sub, crate::model::group::MAX_GROUPS_PER_USER)? {
            if let Some(g) = self.group(pool_id, &name)? {
                out.push(g);
            }
        }
        out.sort_by(precedence_order);
        Ok(out)
    }

    /// Whether `sub` is in group `name`.
    pub fn is_member(&self, pool_id: &str, name: &str, sub: &str) -> Result<bool, StoreError> {
        Ok(self
            .sm_get(Table::GroupMembers, &pair_key(pool_id, name, sub))?
            .is_some())
    }

    /// Up to `limit` subs of group `name`'s members, after `after`.
    pub fn member_subs(
        &self,
        pool_id: &str,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = pair_key(pool_id, name, "");
        Ok(self
            .sm_scan_prefix(Table::GroupMembers, &prefix, after.map(str::as_bytes), limit)?
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
            .collect())
    }

    /// Up to `limit` users of a pool in sub order, after `after`.
    pub fn users_page(&self, pool_id: &str, after: Option<&str>, limit: usize) -> Result<Vec<User>, StoreError> {
        let prefix = pool_key(pool_id, &[]);
        self.sm_scan_prefix(Table::Users, &prefix, after.map(str::as_bytes), limit)?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(Into::into))
            .collect()
    }

    /// The users with these subs that exist, in the order given (one
    /// batched lookup: a `ListUsers` page reads 60 at once).
    pub fn users_by_sub(&self, pool_id: &str, subs: &[String]) -> Result<Vec<User>, StoreError> {
        let keys: Vec<Vec<u8>> = subs.iter().map(|s| pool_key(pool_id, s.as_bytes())).collect();
        let mut out = Vec::with_capacity(subs.len());
        for v in self.sm_multi_get(Table::Users, &keys)?.into_iter().flatten() {
            out.push(codec::decode(&v)?);
        }
        Ok(out)
    }

    /// Up to `limit` index keys (without the pool prefix) that start with
    /// `stem` and sort after `after` (also without the pool prefix).
    pub fn index_page(
        &self,
        pool_id: &str,
        stem: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let pool_prefix = pool_key(pool_id, &[]);
        let prefix = pool_key(pool_id, stem);
        let after = after.map(|a| a.get(stem.len()..).unwrap_or_default());
        Ok(self
            .sm_scan_prefix(Table::UserIndex, &prefix, after, limit)?
            .into_iter()
            .map(|(k, _)| k[pool_prefix.len()..].to_vec())
            .collect())
    }

    /// The lockout counter of a user.
    pub fn lockout(&self, pool_id: &str, sub: &str) -> Result<Option<LockoutState>, StoreError> {
        decode_opt(self.sm_get(Table::SignInFailures, &pool_key(pool_id, sub.as_bytes()))?)
    }

    /// The code-send window of a user for a purpose.
    pub fn send_window(&self, key: &[u8]) -> Result<Option<SendWindow>, StoreError> {
        decode_opt(self.sm_get(Table::CodeSends, key)?)
    }

    /// The audit log bounds of a pool.
    pub fn event_bounds(&self, pool_id: &str) -> Result<EventBounds, StoreError> {
        Ok(decode_opt(self.sm_get(Table::AuthEventBounds, pool_id.as_bytes())?)?.unwrap_or_default())
    }

    /// One audit event.
    pub fn auth_event(&self, pool_id: &str, seq: u64) -> Result<Option<AuthEvent>, StoreError> {
        decode_opt(self.sm_get(Table::AuthEvents, &event_key(pool_id, seq))?)
    }

    /// Up to `limit` events of a pool, or of one user when `sub` is given,
    /// newest first, with sequence below `before`.
    pub fn auth_events_page(
        &self,
        pool_id: &str,
        sub: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuthEvent>, StoreError> {
        let (table, prefix) = match sub {
            Some(s) => (Table::UserAuthEvents, pair_key(pool_id, s, "")),
            None => (Table::AuthEvents, pool_key(pool_id, &[])),
        };
        let mut out = Vec::new();
        for (k, v) in self.sm_scan_prefix_rev(table, &prefix, before.map(|b| b.to_be_bytes().to_vec()), limit)? {
            let event = match sub {
                None => Some(codec::decode(&v)?),
                Some(_) => match seq_of(&k) {
                    Some(seq) => self.auth_event(pool_id, seq)?,
                    None => None,
                },
            };
            out.extend(event);
        }
        Ok(out)
    }
}
