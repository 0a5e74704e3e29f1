//! Identity-pool administration: create, describe, update, delete, list,
//! and the pool's roles and role mappings.

use std::collections::BTreeMap;

use super::IdentityService;
use crate::command::{CreateIdentityPool, DeleteIdentityPool, Rejection, SetIdentityPoolRoles, UpdateIdentityPool};
use crate::model::identity_pool::{
    identity_id_from_random, validate_identity_id, IdentityPool, PoolRoles, RoleMapping,
};
use crate::service::cursor::Scope;
use crate::service::{page_limit, try_submit, ServiceError};

impl IdentityService {
    /// `CreateIdentityPool`: `settings` with a fresh id and dates (its own
    /// id, dates and roles are ignored; roles come with
    /// `SetIdentityPoolRoles`).
    pub async fn create_pool(&self, mut settings: IdentityPool) -> Result<IdentityPool, ServiceError> {
        settings.roles = PoolRoles::default();
        settings.role_mappings = BTreeMap::new();
        for _ in 0..3 {
            let now = crate::clock::now_millis();
            settings.id = identity_id_from_random(&self.region, crate::clock::random_bytes::<16>());
            settings.creation_date = now;
            settings.last_modified_date = now;
            settings.validate()?;
            match try_submit(&self.node, CreateIdentityPool(settings.clone())).await? {
                Ok(p) => return Ok(p),
                // An id collision: draw again.
                Err(Rejection::AlreadyExists { .. }) => continue,
                Err(r) => return Err(r.into()),
            }
        }
        Err(ServiceError::internal("could not draw a unique identity pool id"))
    }

    /// `DescribeIdentityPool`; `consistent` reads after a barrier.
    pub async fn describe_pool(&self, pool_id: &str, consistent: bool) -> Result<IdentityPool, ServiceError> {
        validate_identity_id("identity_pool_id", pool_id)?;
        if consistent {
            self.node.read_barrier().await?;
        }
        self.existing_pool(pool_id).await
    }

    /// `UpdateIdentityPool`: every setting replaced by `settings`', keeping
    /// the id, creation date and roles.
    pub async fn update_pool(&self, mut settings: IdentityPool) -> Result<IdentityPool, ServiceError> {
        let current = self.existing_pool(&settings.id).await?;
        settings.creation_date = current.creation_date;
        settings.last_modified_date = crate::clock::now_millis();
        settings.roles = current.roles.clone();
        settings.role_mappings = current
            .role_mappings
            .into_iter()
            .filter(|(p, _)| settings.provider(p).is_some())
            .collect();
        settings.validate()?;
        crate::service::submit(&self.node, UpdateIdentityPool(settings)).await
    }

    /// `DeleteIdentityPool`, with every identity in it.
    pub async fn delete_pool(&self, pool_id: &str) -> Result<(), ServiceError> {
        validate_identity_id("identity_pool_id", pool_id)?;
        crate::service::submit(
            &self.node,
            DeleteIdentityPool {
                pool_id: pool_id.to_string(),
            },
        )
        .await?;
        Ok(())
    }

    /// `ListIdentityPools`: a page in id order, with a sealed cursor.
    pub async fn list_pools(
        &self,
        max_results: i32,
        next_token: &str,
    ) -> Result<(Vec<IdentityPool>, Option<String>), ServiceError> {
        let limit = page_limit("max_results", max_results)?;
        let scope = Scope::next_token("ListIdentityPools", &[]);
        let after = self.cursors.resume_text(&scope, next_token)?;
        self.node.read_barrier().await?;
        let mut page = self.node.store().identity_pools_page(after.as_deref(), limit + 1)?;
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last()
                .map(|p| self.cursors.issue(&scope, p.id.as_bytes()))
                .transpose()?
        } else {
            None
        };
        Ok((page, next))
    }

    /// `SetIdentityPoolRoles`. Every role named must exist.
    pub async fn set_roles(
        &self,
        pool_id: &str,
        roles: PoolRoles,
        role_mappings: BTreeMap<String, RoleMapping>,
    ) -> Result<IdentityPool, ServiceError> {
        let mut preview = self.existing_pool(pool_id).await?;
        preview.roles = roles.clone();
        preview.role_mappings = role_mappings.clone();
        preview.validate()?;
        crate::service::submit(
            &self.node,
            SetIdentityPoolRoles {
                pool_id: pool_id.to_string(),
                roles,
                role_mappings,
                now: crate::clock::now_millis(),
            },
        )
        .await
    }
}
