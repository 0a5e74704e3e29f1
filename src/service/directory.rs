//! `ListUsers` with Cognito's filter syntax, served from secondary indexes,
//! and `AdminImportUsers` (bulk creation with one shared password hash).

use crate::command::ImportUsers;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::cursor::{Cursors, Scope};
use super::{admin_event, submit_audited, Origin, ServiceError};
use crate::auth::password::PasswordHasher;
use crate::model::auth_event::AuthEventType;
use crate::model::user::{validate_new_attributes, User, UserStatus, MAX_ATTRIBUTES};
use crate::model::user_filter::{index_value, indexed_attribute, parse_filter, FilterOp};
use crate::raft::RaftNode;
use crate::store::directory::{index_stem, sub_of_index_key};

/// Most users one `AdminImportUsers` call creates.
pub const MAX_IMPORT: usize = 1000;
/// Most names in `attributes_to_get`.
const MAX_ATTRIBUTES_TO_GET: usize = MAX_ATTRIBUTES;

/// One user to import.
#[derive(Debug, Clone)]
pub struct ImportUser {
    /// The username to create.
    pub username: String,
    /// Its attributes, validated against the pool schema.
    pub attributes: BTreeMap<String, String>,
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportResult {
    /// Users created.
    pub imported: u32,
    /// `(username, reason)` of each user not created.
    pub failures: Vec<(String, String)>,
}

/// The user directory's list and bulk paths on one node.
#[derive(Clone)]
pub struct DirectoryService {
    node: Arc<RaftNode>,
    hasher: PasswordHasher,
    cursors: Cursors,
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

    /// `AdminImportUsers`: validates every user, hashes `password` once for
    /// the batch, and creates them in one replicated command.
    pub async fn import(
        &self,
        pool_id: &str,
        users: Vec<ImportUser>,
        password: &str,
        mark_verified: bool,
        origin: &Origin,
    ) -> Result<ImportResult, ServiceError> {
        if users.is_empty() || users.len() > MAX_IMPORT {
            return Err(ServiceError::invalid(format!("users: 1 to {MAX_IMPORT} per call")));
        }
        let pool = super::pools::existing_pool(&self.node, pool_id).await?;
        let mut result = ImportResult::default();
        let mut valid = Vec::with_capacity(users.len());
        for u in users {
            // In an alias pool, an email- or phone-form username would
            // shadow another user's alias (Cognito refuses it too).
            let check = crate::model::user::validate_username_for_pool(&pool.settings, &u.username)
                .and_then(|_| validate_new_attributes(&pool.settings, &u.attributes));
            match check {
                Ok(()) => valid.push(u),
                Err(e) => result.failures.push((u.username, e.to_string())),
            }
        }
        let (phc, status) = if password.is_empty() {
            (None, UserStatus::ResetRequired)
        } else {
            pool.settings.password_policy.check(password).map_err(|e| {
                ServiceError::invalid_password(format!("Password does not conform to policy: {}", e.reason))
            })?;
            let phc = self
                .hasher
                .hash(password, crate::clock::random_bytes::<16>(), pool.settings.argon2)
                .await?;
            (Some(phc), UserStatus::Confirmed)
        };
        let now = crate::clock::now_millis();
        let records: Vec<User> = valid
            .into_iter()
            .map(|u| {
                let email = mark_verified && u.attributes.contains_key("email");
                let phone = mark_verified && u.attributes.contains_key("phone_number");
                User {
                    pool_id: pool.id.clone(),
                    sub: crate::clock::new_uuid().to_string(),
                    username: u.username,
                    attributes: u.attributes,
                    status,
                    enabled: true,
                    password_phc: phc.clone(),
                    email_verified: email,
                    phone_number_verified: phone,
                    created_at: now,
                    modified_at: now,
                    tokens_revoked_before_ms: 0,
                    temporary_password_expires_at: None,
                    refresh_revoked_before_ms: 0,
                    pending_attributes: BTreeMap::new(),
                }
            })
            .collect();
        if records.is_empty() {
            return Ok(result);
        }
        let n = records.len();
        let event = admin_event(
            &pool.id,
            AuthEventType::AdminAction,
            origin,
            &format!("AdminImportUsers: {n} users submitted"),
        );
        let cmd = ImportUsers {
            pool_id: pool.id.clone(),
            users: records,
        };
        let report = submit_audited(&self.node, cmd, event).await?;
        result.imported = report.imported;
        result.failures.extend(report.failures);
        Ok(result)
    }
}
