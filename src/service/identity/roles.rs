//! Roles (IAM's names: CreateRole, GetRole, UpdateRole, DeleteRole,
//! ListRoles) and the per-user role assignment.

use super::IdentityService;
use crate::command::{DeleteRole, PutRole, SetUserRole};
use crate::model::policy::PolicyDocument;
use crate::model::role::{role_name_of, validate_description, validate_role_name, Role};
use crate::model::user::validate_username;
use crate::service::cursor::Scope;
use crate::service::{page_limit, submit, ServiceError};

impl IdentityService {
    /// `CreateRole` (`create`) or `UpdateRole`: the policy is parsed,
    /// validated and stored in canonical form; a malformed one is refused
    /// with `InvalidParameterException` naming what is wrong.
    pub async fn put_role(
        &self,
        name: &str,
        description: &str,
        policy_document: &str,
        create: bool,
    ) -> Result<Role, ServiceError> {
        validate_role_name("role_name", name)?;
        validate_description(description)?;
        let doc = PolicyDocument::from_json(policy_document)
            .map_err(|e| ServiceError::invalid(format!("policy_document: {e}")))?;
        let now = crate::clock::now_millis();
        let role = Role {
            name: name.to_string(),
            description: description.to_string(),
            policy_document: doc.to_json(),
            create_date: now,
            last_modified_date: now,
        };
        submit(&self.node, PutRole { role, create }).await
    }

    /// `GetRole`: an admin read, so after a barrier (an update or a
    /// deletion just made through this node must show).
    pub async fn get_role(&self, name: &str) -> Result<Role, ServiceError> {
        validate_role_name("role_name", name)?;
        self.node.read_barrier().await?;
        self.node.store().role(name)?.ok_or_else(|| {
            ServiceError::new(
                crate::service::ErrorKind::NotFound,
                "NoSuchEntityException",
                format!("The role with name {name} cannot be found."),
            )
        })
    }

    /// `DeleteRole`: refused while an identity pool uses the role.
    pub async fn delete_role(&self, name: &str) -> Result<(), ServiceError> {
        validate_role_name("role_name", name)?;
        submit(&self.node, DeleteRole { name: name.to_string() }).await?;
        Ok(())
    }

    /// `ListRoles`: a page in name order, with a sealed cursor.
    pub async fn list_roles(
        &self,
        max_results: i32,
        next_token: &str,
    ) -> Result<(Vec<Role>, Option<String>), ServiceError> {
        let limit = page_limit("max_results", max_results)?;
        let scope = Scope::next_token("ListRoles", &[]);
        let after = self.cursors.resume_text(&scope, next_token)?;
        self.node.read_barrier().await?;
        let mut page = self.node.store().roles_page(after.as_deref(), limit + 1)?;
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last()
                .map(|r| self.cursors.issue(&scope, r.name.as_bytes()))
                .transpose()?
        } else {
            None
        };
        Ok((page, next))
    }

    /// The sub of `username` in `user_pool_id`, after a barrier on a miss.
    async fn user_sub(&self, user_pool_id: &str, username: &str) -> Result<String, ServiceError> {
        validate_username(username)?;
        let pool = crate::service::pools::existing_pool(&self.node, user_pool_id).await?;
        let find = || -> Result<Option<String>, ServiceError> {
            let normalized = pool.settings.normalize_username(username);
            Ok(self.node.store().sub_by_username(user_pool_id, &normalized)?)
        };
        if let Some(sub) = find()? {
            return Ok(sub);
        }
        self.node.read_barrier().await?;
        find()?.ok_or_else(crate::service::ServiceError::user_not_found)
    }

    /// `AdminSetUserRole`: a role for one user that wins over group and
    /// rule mappings; an empty `role_arn` removes it.
    pub async fn set_user_role(&self, user_pool_id: &str, username: &str, role_arn: &str) -> Result<(), ServiceError> {
        let sub = self.user_sub(user_pool_id, username).await?;
        let role = match role_arn {
            "" => None,
            arn => Some(role_name_of(arn)?.to_string()),
        };
        submit(
            &self.node,
            SetUserRole {
                user_pool_id: user_pool_id.to_string(),
                sub,
                role,
            },
        )
        .await
    }

    /// `AdminGetUserRole`: the user's own role's ARN, or empty; an admin
    /// read, so after a barrier.
    pub async fn get_user_role(&self, user_pool_id: &str, username: &str) -> Result<String, ServiceError> {
        let sub = self.user_sub(user_pool_id, username).await?;
        self.node.read_barrier().await?;
        Ok(self
            .node
            .store()
            .user_role(user_pool_id, &sub)?
            .map(|r| crate::model::role::role_arn(&r))
            .unwrap_or_default())
    }
}
