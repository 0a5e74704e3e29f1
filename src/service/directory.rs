//! `ListUsers` with Cognito's filter syntax, served from secondary indexes;
//! the bulk paths of the same service are `AdminImportUsers`
//! (`service::import`) and `AdminExportUsers` (`service::export`).

use std::sync::Arc;

use super::cursor::{Cursors, Scope};
use super::ServiceError;
use crate::auth::password::PasswordHasher;
use crate::model::user::{User, MAX_ATTRIBUTES};
use crate::model::user_filter::{index_value, indexed_attribute, parse_filter, FilterOp};
use crate::raft::RaftNode;
use crate::store::directory::{index_stem, sub_of_index_key};

/// Most users one `AdminImportUsers` call creates.
pub const MAX_IMPORT: usize = crate::command::MAX_IMPORT_PER_COMMAND;
/// Most names in `attributes_to_get`.
const MAX_ATTRIBUTES_TO_GET: usize = MAX_ATTRIBUTES;

pub use super::import::{ImportResult, ImportUser};

/// The user directory's list and bulk paths on one node.
#[derive(Clone)]
pub struct DirectoryService {
    pub(super) node: Arc<RaftNode>,
    pub(super) hasher: PasswordHasher,
    pub(super) cursors: Cursors,
}

/// The scope of a `ListUsers` cursor: the pool and the filter as given.
pub fn list_users_scope<'a>(parts: &'a [&'a str; 2]) -> Scope<'a> {
    Scope {
        call: "ListUsers",
        field: "pagination_token",
        parts,
    }
}

/// Checks the position an opened `ListUsers` cursor carries. Without a
/// filter it is a user's sub (UTF-8); with one it is an index key of that
/// filter, so it must start with the filter's `stem`. The cursor is sealed
/// for this pool and filter, so this cannot fail for a token the node
/// issued; it keeps a scan inside the filter's range even if a cursor key
/// leaked (the `pagination_token` fuzz target feeds it arbitrary ones).
pub fn checked_position(key: Vec<u8>, stem: Option<&[u8]>) -> Result<Vec<u8>, ServiceError> {
    let stray = || ServiceError::invalid("pagination_token: it belongs to another filter; start again without it");
    match stem {
        None if std::str::from_utf8(&key).is_err() => Err(stray()),
        Some(stem) if !key.starts_with(stem) => Err(stray()),
        _ => Ok(key),
    }
}

impl DirectoryService {
    /// The directory service of `node`; `hasher` hashes import passwords, `cursors` seals page tokens.
    pub fn new(node: Arc<RaftNode>, hasher: PasswordHasher, cursors: Cursors) -> Self {
        DirectoryService { node, hasher, cursors }
    }

    /// `ListUsers`: a page of users matching `filter`, ordered by (indexed
    /// value, sub), or every user by sub without a filter. The page token
    /// is the last index key returned, so pages neither skip nor repeat a
    /// user while the set is stable.
    pub async fn list_users(
        &self,
        pool_id: &str,
        filter: &str,
        attributes_to_get: &[String],
        limit: i32,
        pagination_token: &str,
        consistent: bool,
    ) -> Result<(Vec<User>, Option<String>), ServiceError> {
        let limit = super::page_limit("limit", limit)?;
        if attributes_to_get.len() > MAX_ATTRIBUTES_TO_GET {
            return Err(ServiceError::invalid(format!(
                "attributes_to_get: at most {MAX_ATTRIBUTES_TO_GET} names"
            )));
        }
        let parsed = parse_filter(filter).map_err(|e| ServiceError::invalid(e.to_string()))?;
        let pool = super::pools::existing_pool(&self.node, pool_id).await?;
        for name in attributes_to_get {
            let known = matches!(name.as_str(), "sub" | "email_verified" | "phone_number_verified")
                || pool.settings.schema.contains_key(name);
            if !known {
                return Err(ServiceError::invalid(format!(
                    "attributes_to_get: {name:?} is not an attribute of this pool"
                )));
            }
        }
        if consistent {
            self.node.read_barrier().await?;
        }
        let store = self.node.store();
        let metrics = self.node.metrics();
        let parts = [pool.id.as_str(), filter];
        let scope = list_users_scope(&parts);
        let position = self.cursors.resume(&scope, pagination_token)?;
        let (users, next) = match parsed {
            None => {
                let after = position
                    .map(|p| checked_position(p, None))
                    .transpose()?
                    .map(String::from_utf8)
                    .transpose()
                    .map_err(|_| ServiceError::invalid("pagination_token: not a token this call returned"))?;
                let mut page = store.users_page(&pool.id, after.as_deref(), limit + 1)?;
                metrics.list_users_rows_scanned.inc_by(page.len() as u64);
                let next = if page.len() > limit {
                    page.truncate(limit);
                    Some(self.cursors.issue(&scope, page[limit - 1].sub.as_bytes())?)
                } else {
                    None
                };
                (page, next)
            }
            Some(f) => {
                let attribute =
                    indexed_attribute(&pool.settings, &f).map_err(|e| ServiceError::invalid(e.to_string()))?;
                let mut stem = index_stem(&attribute, &index_value(&f));
                if f.op == FilterOp::Equals {
                    stem.push(0);
                }
                let after = position.map(|p| checked_position(p, Some(&stem))).transpose()?;
                let mut keys = store.index_page(&pool.id, &stem, after.as_deref(), limit + 1)?;
                metrics.list_users_rows_scanned.inc_by(keys.len() as u64);
                let next = if keys.len() > limit {
                    keys.truncate(limit);
                    Some(self.cursors.issue(&scope, &keys[limit - 1])?)
                } else {
                    None
                };
                let subs: Vec<String> = keys.iter().filter_map(|k| sub_of_index_key(k)).collect();
                (store.users_by_sub(&pool.id, &subs)?, next)
            }
        };
        Ok((users, next))
    }
}
