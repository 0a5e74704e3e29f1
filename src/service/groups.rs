//! Groups: `CreateGroup`, `GetGroup`, `UpdateGroup`, `DeleteGroup`,
//! `ListGroups`, membership calls, and the live permission check behind
//! `Auth/CheckPermission`.

use crate::command::{AddUserToGroup, DeleteGroup, PutGroup, RemoveUserFromGroup};
use std::sync::Arc;

use super::cursor::{Cursors, Scope};
use super::users::user_by_name;
use super::{admin_event, page_limit, submit_audited, Origin, ServiceError};
use crate::model::auth_event::AuthEventType;
use crate::model::group::{normalize_permissions, validate_details, validate_group_name, Group, MAX_GROUPS_PER_USER};
use crate::model::pool::UserPool;
use crate::model::user::User;
use crate::raft::RaftNode;

/// The fields of a `CreateGroup` or `UpdateGroup`; `None` keeps (update)
/// or defaults (create).
#[derive(Debug, Clone, Default)]
pub struct GroupSpec {
    /// Free text for admins.
    pub description: Option<String>,
    /// Role reference for identity pools.
    pub role_arn: Option<String>,
    /// Precedence; `Some(None)` clears it (lower wins, unset ranks last).
    pub precedence: Option<Option<i32>>,
    /// Permission strings the group's members hold.
    pub permissions: Option<Vec<String>>,
}

/// Group administration of one node.
#[derive(Clone)]
pub struct GroupService {
    node: Arc<RaftNode>,
    cursors: Cursors,
}

fn check_precedence(p: Option<i32>) -> Result<(), ServiceError> {
    if p.is_some_and(|p| p < 0) {
        return Err(ServiceError::invalid("precedence: must be 0 or more"));
    }
    Ok(())
}

impl GroupService {
    /// The group service of `node`; `cursors` seals page tokens.
    pub fn new(node: Arc<RaftNode>, cursors: Cursors) -> Self {
        GroupService { node, cursors }
    }

    async fn pool(&self, pool_id: &str) -> Result<UserPool, ServiceError> {
        super::pools::existing_pool(&self.node, pool_id).await
    }

    /// `CreateGroup`, audited.
    pub async fn create(
        &self,
        pool_id: &str,
        name: &str,
        spec: GroupSpec,
        origin: &Origin,
    ) -> Result<Group, ServiceError> {
        validate_group_name(name)?;
        let description = spec.description.unwrap_or_default();
        let role_arn = spec.role_arn.unwrap_or_default();
        validate_details(&description, &role_arn)?;
        let precedence = spec.precedence.flatten();
        check_precedence(precedence)?;
        let permissions = normalize_permissions(&spec.permissions.unwrap_or_default())?;
        let pool = self.pool(pool_id).await?;
        let now = crate::clock::now_millis();
        let group = Group {
            pool_id: pool.id.clone(),
            name: name.to_string(),
            description,
            role_arn,
            precedence,
            permissions,
            created_at: now,
            modified_at: now,
        };
        let event = admin_event(
            &pool.id,
            AuthEventType::GroupChange,
            origin,
            &format!("CreateGroup {name}"),
        );
        submit_audited(&self.node, PutGroup { group, create: true }, event).await
    }

    /// `GetGroup`. `consistent` waits for a read barrier first; otherwise a miss is retried after one, so a group just created on another node is found.
    pub async fn get(&self, pool_id: &str, name: &str, consistent: bool) -> Result<Group, ServiceError> {
        validate_group_name(name)?;
        let pool = self.pool(pool_id).await?;
        if consistent {
            self.node.read_barrier().await?;
        }
        let store = self.node.store();
        if let Some(g) = store.group(&pool.id, name)? {
            return Ok(g);
        }
        if !consistent {
            self.node.read_barrier().await?;
            if let Some(g) = store.group(&pool.id, name)? {
                return Ok(g);
            }
        }
        Err(ServiceError::not_found(format!("Group {name} not found.")))
    }

    /// `UpdateGroup`: changes only the fields the spec sets.
    pub async fn update(
        &self,
        pool_id: &str,
        name: &str,
        spec: GroupSpec,
        origin: &Origin,
    ) -> Result<Group, ServiceError> {
        let mut group = self.get(pool_id, name, true).await?;
        if let Some(d) = spec.description {
            group.description = d;
        }
        if let Some(r) = spec.role_arn {
            group.role_arn = r;
        }
        validate_details(&group.description, &group.role_arn)?;
        if let Some(p) = spec.precedence {
            check_precedence(p)?;
            group.precedence = p;
        }
        if let Some(p) = spec.permissions {
            group.permissions = normalize_permissions(&p)?;
        }
        group.modified_at = crate::clock::now_millis();
        let event = admin_event(
            pool_id,
            AuthEventType::GroupChange,
            origin,
            &format!("UpdateGroup {name}"),
        );
        submit_audited(&self.node, PutGroup { group, create: false }, event).await
    }

    /// `DeleteGroup`, with every membership in it.
    pub async fn delete(&self, pool_id: &str, name: &str, origin: &Origin) -> Result<(), ServiceError> {
        validate_group_name(name)?;
        let pool = self.pool(pool_id).await?;
        let event = admin_event(
            &pool.id,
            AuthEventType::GroupChange,
            origin,
            &format!("DeleteGroup {name}"),
        );
        let cmd = DeleteGroup {
            pool_id: pool.id.clone(),
            name: name.to_string(),
        };
        submit_audited(&self.node, cmd, event).await.map(|_| ())
    }

    /// Groups by name, a page at a time.
    pub async fn list(
        &self,
        pool_id: &str,
        limit: i32,
        next_token: &str,
        consistent: bool,
    ) -> Result<(Vec<Group>, Option<String>), ServiceError> {
        let limit = page_limit("limit", limit)?;
        let pool = self.pool(pool_id).await?;
        let parts = [pool.id.as_str()];
        let scope = Scope::next_token("ListGroups", &parts);
        let after = self.cursors.resume_text(&scope, next_token)?;
        if consistent {
            self.node.read_barrier().await?;
        }
        let mut page = self.node.store().groups_page(&pool.id, after.as_deref(), limit + 1)?;
        let next = if page.len() > limit {
            page.truncate(limit);
            Some(self.cursors.issue(&scope, page[limit - 1].name.as_bytes())?)
        } else {
            None
        };
        Ok((page, next))
    }

    async fn membership(
        &self,
        pool_id: &str,
        username: &str,
        group: &str,
        add: bool,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        validate_group_name(group)?;
        let pool = self.pool(pool_id).await?;
        let user = user_by_name(&self.node, &pool, username, false).await?;
        let (pool_id, group_name, sub) = (pool.id.clone(), group.to_string(), user.sub.clone());
        let verb = if add { "added to" } else { "removed from" };
        let event = admin_event(
            &pool.id,
            AuthEventType::GroupChange,
            origin,
            &format!("{verb} group {group}"),
        )
        .user(&user.username, &user.sub);
        if add {
            let cmd = AddUserToGroup {
                pool_id,
                group: group_name,
                sub,
            };
            return submit_audited(&self.node, cmd, event).await.map(|_| ());
        }
        let cmd = RemoveUserFromGroup {
            pool_id,
            group: group_name,
            sub,
        };
        submit_audited(&self.node, cmd, event).await.map(|_| ())
    }

    /// `AdminAddUserToGroup`.
    pub async fn add_user(
        &self,
        pool_id: &str,
        username: &str,
        group: &str,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        self.membership(pool_id, username, group, true, origin).await
    }

    /// `AdminRemoveUserFromGroup`.
    pub async fn remove_user(
        &self,
        pool_id: &str,
        username: &str,
        group: &str,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        self.membership(pool_id, username, group, false, origin).await
    }

    /// A user's groups in precedence order, a page at a time (a user has at
    /// most 100).
    pub async fn groups_for_user(
        &self,
        pool_id: &str,
        username: &str,
        limit: i32,
        next_token: &str,
        consistent: bool,
    ) -> Result<(Vec<Group>, Option<String>), ServiceError> {
        let limit = page_limit("limit", limit)?;
        let pool = self.pool(pool_id).await?;
        let parts = [pool.id.as_str(), username];
        let scope = Scope::next_token("AdminListGroupsForUser", &parts);
        let skip: usize = match self.cursors.resume_text(&scope, next_token)? {
            None => 0,
            Some(t) => t
                .parse()
                .ok()
                .filter(|n| *n <= MAX_GROUPS_PER_USER)
                .ok_or_else(|| ServiceError::invalid("next_token: not a token this call returned"))?,
        };
        let user = user_by_name(&self.node, &pool, username, consistent).await?;
        let all = self.node.store().groups_of(&pool.id, &user.sub)?;
        let page: Vec<Group> = all.iter().skip(skip).take(limit).cloned().collect();
        let next = if skip + limit < all.len() {
            Some(self.cursors.issue(&scope, (skip + limit).to_string().as_bytes())?)
        } else {
            None
        };
        Ok((page, next))
    }

    /// Members of a group in sub order, a page at a time.
    pub async fn users_in_group(
        &self,
        pool_id: &str,
        group: &str,
        limit: i32,
        next_token: &str,
        consistent: bool,
    ) -> Result<(Vec<User>, Option<String>), ServiceError> {
        let limit = page_limit("limit", limit)?;
        let parts = [pool_id, group];
        let scope = Scope::next_token("ListUsersInGroup", &parts);
        let after = self.cursors.resume_text(&scope, next_token)?;
        self.get(pool_id, group, consistent).await?;
        let store = self.node.store();
        let mut subs = store.member_subs(pool_id, group, after.as_deref(), limit + 1)?;
        let next = if subs.len() > limit {
            subs.truncate(limit);
            Some(self.cursors.issue(&scope, subs[limit - 1].as_bytes())?)
        } else {
            None
        };
        Ok((store.users_by_sub(pool_id, &subs)?, next))
    }
}
