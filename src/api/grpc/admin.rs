//! `tessera.v1.Admin`: pool administration, admin token required.

use tonic::{Request, Response, Status};

use super::bearer;
use crate::model::pool::UserPool;
use crate::proto::admin_server::Admin;
use crate::proto::*;
use crate::service::admin_auth::AdminAuth;
use crate::service::pools::PoolService;
use crate::service::ServiceError;

/// The Admin service adapter.
pub struct AdminApi {
    pub auth: AdminAuth,
    pub pools: PoolService,
}

fn pool_type(p: UserPool) -> UserPoolType {
    UserPoolType {
        id: p.id,
        name: p.name,
        creation_date: p.creation_date,
        last_modified_date: p.last_modified_date,
        deletion_protection: if p.deletion_protection { "ACTIVE" } else { "INACTIVE" }.into(),
    }
}

fn deletion_protection(value: &str) -> Result<bool, ServiceError> {
    match value {
        "" | "INACTIVE" => Ok(false),
        "ACTIVE" => Ok(true),
        other => Err(ServiceError::invalid(format!(
            "deletion_protection: {other:?} is not ACTIVE or INACTIVE"
        ))),
    }
}

#[tonic::async_trait]
impl Admin for AdminApi {
    #[tracing::instrument(skip_all)]
    async fn create_user_pool(
        &self,
        req: Request<CreateUserPoolRequest>,
    ) -> Result<Response<CreateUserPoolResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let r = req.into_inner();
        let protect = deletion_protection(&r.deletion_protection)?;
        let pool = self.pools.create(&r.pool_name, protect).await?;
        tracing::info!(pool_id = %pool.id, "user pool created");
        Ok(Response::new(CreateUserPoolResponse {
            user_pool: Some(pool_type(pool)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_user_pools(
        &self,
        req: Request<ListUserPoolsRequest>,
    ) -> Result<Response<ListUserPoolsResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let r = req.into_inner();
        let (pools, next) = self.pools.list(r.max_results, &r.next_token, r.consistent_read).await?;
        Ok(Response::new(ListUserPoolsResponse {
            user_pools: pools.into_iter().map(pool_type).collect(),
            next_token: next.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn describe_user_pool(
        &self,
        req: Request<DescribeUserPoolRequest>,
    ) -> Result<Response<DescribeUserPoolResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        let pool = self.pools.describe(&r.user_pool_id, r.consistent_read).await?;
        Ok(Response::new(DescribeUserPoolResponse {
            user_pool: Some(pool_type(pool)),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn delete_user_pool(
        &self,
        req: Request<DeleteUserPoolRequest>,
    ) -> Result<Response<DeleteUserPoolResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        self.pools.delete(&r.user_pool_id).await?;
        tracing::info!(pool_id = %r.user_pool_id, "user pool deleted");
        Ok(Response::new(DeleteUserPoolResponse {}))
    }
}
