//! Apply logic of the bulk import that carries each user's groups
//! (`AdminImportUsers` with groups or existing password hashes, issue 12),
//! and of the rehash that replaces an imported password hash with the
//! pool's argon2id after a successful sign-in.
//!
//! A group an imported user names is created when the pool does not have
//! it yet (no description, precedence or permissions), so that a file
//! exported elsewhere imports without preparing its groups first; the
//! pool's group limit still holds, and a user whose group would pass it
//! is refused with the reason.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::account::{import_with, MAX_IMPORT_PER_COMMAND};
use super::users::save;
use super::{not_found, Apply, ApplyError, Outcome, Rejection};
use crate::model::group::{Group, MAX_GROUPS_PER_POOL, MAX_GROUPS_PER_USER};
use crate::model::user::User;
use crate::store::directory::pair_key;
use crate::store::keys::{pool_key, Table};
use crate::store::{codec, SmBatch, Store, StoreError};

/// One user of an [`ImportUserRecords`], with the groups it joins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedUser {
    /// The complete user as prepared (sub, timestamps and hash chosen).
    pub user: User,
    /// Names of the groups it joins, created when missing.
    pub groups: Vec<String>,
}

/// Creates many users with their group memberships; collisions and
/// groups beyond the pool's limit are reported per user, not fatal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportUserRecords {
    /// The pool the users go into.
    pub pool_id: String,
    /// At most `MAX_IMPORT_PER_COMMAND`.
    pub users: Vec<ImportedUser>,
    /// Proposer's clock (Unix ms): the creation date of groups created here.
    pub now: i64,
}

impl Apply for ImportUserRecords {
    type Output = super::ImportReport;

    fn validate(&self) -> Result<(), Rejection> {
        if self.users.len() > MAX_IMPORT_PER_COMMAND {
            return Err(Rejection::Invalid(format!(
                "{} users in one import; at most {MAX_IMPORT_PER_COMMAND}",
                self.users.len()
            )));
        }
        if self.users.iter().any(|u| u.groups.len() > MAX_GROUPS_PER_USER) {
            return Err(Rejection::Invalid(format!(
                "an imported user joins at most {MAX_GROUPS_PER_USER} groups"
            )));
        }
        Ok(())
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let pool_id = self.pool_id.as_str();
        let any_groups = self.users.iter().any(|u| !u.groups.is_empty());
        let existing = if any_groups {
            store.groups_page(pool_id, None, MAX_GROUPS_PER_POOL)?.len()
        } else {
            0
        };
        // Groups this entry creates, so that the next user finds them.
        let mut created: BTreeSet<String> = BTreeSet::new();
        let now = self.now;
        let mut join =
            |batch: &mut SmBatch<'_>, user: &User, groups: &[String]| -> Result<Option<String>, StoreError> {
                let mut new = Vec::new();
                for name in groups {
                    if !created.contains(name) && store.group(pool_id, name)?.is_none() && !new.contains(name) {
                        new.push(name.clone());
                    }
                }
                if existing + created.len() + new.len() > MAX_GROUPS_PER_POOL {
                    return Ok(Some(format!(
                        "creating its groups would pass the limit of {MAX_GROUPS_PER_POOL} groups per pool"
                    )));
                }
                for name in new {
                    let group = Group {
                        pool_id: pool_id.to_string(),
                        name: name.clone(),
                        description: String::new(),
                        role_arn: String::new(),
                        precedence: None,
                        permissions: Vec::new(),
                        created_at: now,
                        modified_at: now,
                    };
                    batch.put(
                        Table::Groups,
                        &pool_key(pool_id, name.as_bytes()),
                        &codec::encode(&group)?,
                    )?;
                    created.insert(name);
                }
                for name in groups {
                    batch.put(Table::GroupMembers, &pair_key(pool_id, name, &user.sub), &[])?;
                    batch.put(Table::UserGroups, &pair_key(pool_id, &user.sub, name), &[])?;
                }
                Ok(None)
            };
        let users = self.users.iter().map(|u| (&u.user, u.groups.as_slice()));
        Ok(import_with(store, batch, pool_id, users, &mut join)?)
    }
}

/// Replaces a user's password hash with the pool's argon2id after a
/// sign-in verified the password against it; nothing else of the user
/// changes (sessions and refresh tokens stay valid). Takes effect only if
/// the stored hash is still the one that was verified, so a password
/// change committed in between wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RehashPassword {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// SHA-256 of the stored hash the password was verified against.
    pub verified_sha256: [u8; 32],
    /// The new argon2id PHC string (pool parameters, proposer's salt).
    pub password_phc: String,
}

/// SHA-256 of a stored hash string: what [`RehashPassword`] compares.
pub fn hash_fingerprint(stored: &str) -> [u8; 32] {
    Sha256::digest(stored.as_bytes()).into()
}

impl Apply for RehashPassword {
    type Output = ();

    fn validate(&self) -> Result<(), Rejection> {
        if !self.password_phc.starts_with("$argon2id$")
            || self.password_phc.len() > crate::auth::foreign_hash::MAX_HASH_LEN
        {
            return Err(Rejection::Invalid("a rehash writes an argon2id PHC string".into()));
        }
        Ok(())
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let Some(pool) = store.pool(&self.pool_id)? else {
            return Ok(not_found("user pool", &self.pool_id));
        };
        let Some(old) = store.user(&self.pool_id, &self.sub)? else {
            return Ok(not_found("user", &self.sub));
        };
        let current = old.password_phc.as_deref().map(hash_fingerprint);
        if current != Some(self.verified_sha256) {
            return Ok(Outcome::Rejected(Rejection::ResourceConflict(
                "the password changed since it was verified".into(),
            )));
        }
        let mut user = old.clone();
        user.password_phc = Some(self.password_phc.clone());
        save(batch, &pool.settings, Some(&old), &user)?;
        Ok(Outcome::Done)
    }
}

#[cfg(test)]
mod tests;
