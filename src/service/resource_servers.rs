//! Resource servers of a user pool (`CreateResourceServer` and the rest):
//! the APIs whose custom scopes app clients may be allowed and
//! server-to-server tokens carry (`service::oauth`).

use std::sync::Arc;

use super::cursor::{Cursors, Scope};
use super::pools::existing_pool;
use super::{page_limit, submit, ServiceError};
use crate::command::{DeleteResourceServer, PutResourceServer};
use crate::model::resource_server::{validate_identifier, ResourceServer, ResourceServerScope};
use crate::raft::RaftNode;

/// Resource-server administration of one node.
#[derive(Clone)]
pub struct ResourceServerService {
    node: Arc<RaftNode>,
    cursors: Cursors,
}

impl ResourceServerService {
    /// The resource-server service of `node`.
    pub fn new(node: Arc<RaftNode>, cursors: Cursors) -> Self {
        ResourceServerService { node, cursors }
    }

    /// `CreateResourceServer` (`create`) or `UpdateResourceServer`, which
    /// replaces the name and the whole list of scopes, as Cognito does.
    pub async fn put(
        &self,
        pool_id: &str,
        identifier: &str,
        name: &str,
        scopes: Vec<(String, String)>,
        create: bool,
    ) -> Result<ResourceServer, ServiceError> {
        existing_pool(&self.node, pool_id).await?;
        let server = ResourceServer {
            pool_id: pool_id.to_string(),
            identifier: identifier.to_string(),
            name: name.to_string(),
            scopes: scopes
                .into_iter()
                .map(|(name, description)| ResourceServerScope { name, description })
                .collect(),
        };
        server.validate()?;
        if !create {
            // Cognito's answer for a missing server is a plain not-found,
            // with the identifier named.
            self.describe(pool_id, identifier).await?;
        }
        submit(&self.node, PutResourceServer { server, create }).await
    }

    /// `DescribeResourceServer`. A miss waits for a read barrier first: the
    /// server may have been created a moment ago through another node.
    pub async fn describe(&self, pool_id: &str, identifier: &str) -> Result<ResourceServer, ServiceError> {
        existing_pool(&self.node, pool_id).await?;
        validate_identifier(identifier)?;
        let find = || self.node.store().resource_server(pool_id, identifier);
        if let Some(s) = find()? {
            return Ok(s);
        }
        self.node.read_barrier().await?;
        find()?.ok_or_else(|| ServiceError::not_found(format!("Resource server {identifier} does not exist.")))
    }

    /// `DeleteResourceServer`.
    pub async fn delete(&self, pool_id: &str, identifier: &str) -> Result<(), ServiceError> {
        validate_identifier(identifier)?;
        submit(
            &self.node,
            DeleteResourceServer {
                pool_id: pool_id.to_string(),
                identifier: identifier.to_string(),
            },
        )
        .await?;
        Ok(())
    }

    /// `ListResourceServers`: a page by identifier, with a sealed cursor.
    pub async fn list(
        &self,
        pool_id: &str,
        max_results: i32,
        next_token: &str,
    ) -> Result<(Vec<ResourceServer>, Option<String>), ServiceError> {
        existing_pool(&self.node, pool_id).await?;
        let limit = page_limit("max_results", max_results)?;
        let parts = [pool_id];
        let scope = Scope::next_token("ListResourceServers", &parts);
        let after = self.cursors.resume_text(&scope, next_token)?;
        self.node.read_barrier().await?;
        let mut page = self
            .node
            .store()
            .resource_servers_page(pool_id, after.as_deref(), limit + 1)?;
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last()
                .map(|s| self.cursors.issue(&scope, s.identifier.as_bytes()))
                .transpose()?
        } else {
            None
        };
        Ok((page, next))
    }
}
