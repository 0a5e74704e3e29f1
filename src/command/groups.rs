//! Apply logic of groups and group membership.

use super::{not_found, Outcome, Rejection};
use super::{Apply, ApplyError};
use crate::model::group::{Group, MAX_GROUPS_PER_POOL, MAX_GROUPS_PER_USER};
use crate::store::directory::pair_key;
use crate::store::keys::{pool_key, Table};
use crate::store::{codec, SmBatch, Store, StoreError};
use serde::{Deserialize, Serialize};

pub(super) fn put(store: &Store, batch: &mut SmBatch<'_>, group: &Group, create: bool) -> Result<Outcome, StoreError> {
    if store.pool(&group.pool_id)?.is_none() {
        return Ok(not_found("user pool", &group.pool_id));
    }
    let existing = store.group(&group.pool_id, &group.name)?;
    let mut stored = group.clone();
    match (&existing, create) {
        (Some(_), true) => {
            return Ok(Outcome::Rejected(Rejection::AlreadyExists {
                kind: "group".into(),
                id: group.name.clone(),
            }))
        }
        (None, false) => return Ok(not_found("group", &group.name)),
        (Some(old), false) => stored.created_at = old.created_at,
        (None, true) => {
            if store.groups_page(&group.pool_id, None, MAX_GROUPS_PER_POOL)?.len() >= MAX_GROUPS_PER_POOL {
                return Ok(Outcome::Rejected(Rejection::LimitExceeded(format!(
                    "a user pool holds at most {MAX_GROUPS_PER_POOL} groups"
                ))));
            }
        }
    }
    set_role_ref(batch, &group.pool_id, &group.name, existing.as_ref(), Some(&stored))?;
    batch.put(
        Table::Groups,
        &pool_key(&group.pool_id, group.name.as_bytes()),
        &codec::encode(&stored)?,
    )?;
    Ok(Outcome::Group(stored))
}

/// Keeps `RoleRefs` in step with a group's `role_arn` (one that names no
/// role, such as an ARN of another service, is no reference).
pub(super) fn set_role_ref(
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    name: &str,
    old: Option<&Group>,
    new: Option<&Group>,
) -> Result<(), StoreError> {
    use crate::store::identity::{role_ref_key, REF_GROUP};
    let role =
        |g: Option<&Group>| g.and_then(|g| crate::model::role::role_name_of(&g.role_arn).ok().map(str::to_string));
    let (before, after) = (role(old), role(new));
    if before == after {
        return Ok(());
    }
    if let Some(r) = before {
        batch.delete(Table::RoleRefs, &role_ref_key(&r, pool_id, REF_GROUP, name))?;
    }
    if let Some(r) = after {
        batch.put(Table::RoleRefs, &role_ref_key(&r, pool_id, REF_GROUP, name), &[])?;
    }
    Ok(())
}

pub(super) fn delete(store: &Store, batch: &mut SmBatch<'_>, pool_id: &str, name: &str) -> Result<Outcome, StoreError> {
    let Some(group) = store.group(pool_id, name)? else {
        return Ok(not_found("group", name));
    };
    // Each member's reverse entry goes too; a group is small next to a pool.
    for sub in store.member_subs(pool_id, name, None, usize::MAX)? {
        batch.delete(Table::UserGroups, &pair_key(pool_id, &sub, name))?;
    }
    batch.delete_prefix(Table::GroupMembers, &pair_key(pool_id, name, ""))?;
    set_role_ref(batch, pool_id, name, Some(&group), None)?;
    batch.delete(Table::Groups, &pool_key(pool_id, name.as_bytes()))?;
    Ok(Outcome::Group(group))
}

pub(super) fn add_member(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    name: &str,
    sub: &str,
) -> Result<Outcome, StoreError> {
    let Some(group) = store.group(pool_id, name)? else {
        return Ok(not_found("group", name));
    };
    let Some(user) = store.user(pool_id, sub)? else {
        return Ok(not_found("user", sub));
    };
    if !store.is_member(pool_id, name, sub)?
        && store.group_names_of(pool_id, sub, MAX_GROUPS_PER_USER)?.len() >= MAX_GROUPS_PER_USER
    {
        return Ok(Outcome::Rejected(Rejection::LimitExceeded(format!(
            "a user belongs to at most {MAX_GROUPS_PER_USER} groups"
        ))));
    }
    batch.put(Table::GroupMembers, &pair_key(pool_id, &group.name, sub), &[])?;
    batch.put(Table::UserGroups, &pair_key(pool_id, sub, &group.name), &[])?;
    Ok(Outcome::User(user))
}

pub(super) fn remove_member(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    name: &str,
    sub: &str,
) -> Result<Outcome, StoreError> {
    if store.group(pool_id, name)?.is_none() {
        return Ok(not_found("group", name));
    }
    let Some(user) = store.user(pool_id, sub)? else {
        return Ok(not_found("user", sub));
    };
    batch.delete(Table::GroupMembers, &pair_key(pool_id, name, sub))?;
    batch.delete(Table::UserGroups, &pair_key(pool_id, sub, name))?;
    Ok(Outcome::User(user))
}

/// Removes every membership of `sub` (the user is being deleted).
pub(super) fn drop_memberships(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    sub: &str,
) -> Result<(), StoreError> {
    for name in store.group_names_of(pool_id, sub, usize::MAX)? {
        batch.delete(Table::GroupMembers, &pair_key(pool_id, &name, sub))?;
    }
    batch.delete_prefix(Table::UserGroups, &pair_key(pool_id, sub, ""))?;
    Ok(())
}

/// Creates (`create`) or replaces a group; a replacement keeps the
/// creation date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutGroup {
    /// The group as the proposer wants it stored.
    pub group: Group,
    /// `CreateGroup` (refused if it exists) rather than `UpdateGroup` (refused if it does not).
    pub create: bool,
}

impl Apply for PutGroup {
    type Output = Group;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(put(store, batch, &self.group, self.create)?)
    }
}
/// Deletes a group and every membership in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteGroup {
    /// The pool of the group.
    pub pool_id: String,
    /// The group to delete.
    pub name: String,
}

impl Apply for DeleteGroup {
    type Output = Group;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(delete(store, batch, &self.pool_id, &self.name)?)
    }
}
/// Adds a user to a group (bounded per user and per pool).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddUserToGroup {
    /// The pool of the group and the user.
    pub pool_id: String,
    /// The group's name.
    pub group: String,
    /// The user to add, by `sub`.
    pub sub: String,
}

impl Apply for AddUserToGroup {
    type Output = crate::model::user::User;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(add_member(store, batch, &self.pool_id, &self.group, &self.sub)?)
    }
}
/// Removes a user from a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveUserFromGroup {
    /// The pool of the group and the user.
    pub pool_id: String,
    /// The group's name.
    pub group: String,
    /// The user to remove, by `sub`.
    pub sub: String,
}

impl Apply for RemoveUserFromGroup {
    type Output = crate::model::user::User;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(remove_member(store, batch, &self.pool_id, &self.group, &self.sub)?)
    }
}
