//! `tessera.v1.Admin`: pools, app clients, users and the outbox. Every call
//! needs the admin token.

use tonic::{Request, Response, Status};

use super::bearer;
use super::convert::*;
use crate::proto::admin_server::Admin;
use crate::proto::*;
use crate::service::admin_auth::AdminAuth;
use crate::service::clients::AppClientService;
use crate::service::outbox::OutboxService;
use crate::service::pools::PoolService;
use crate::service::users::{AdminCreateUser, UserAdminService};

/// The Admin service adapter.
pub struct AdminApi {
    pub auth: AdminAuth,
    pub pools: PoolService,
    pub clients: AppClientService,
    pub users: UserAdminService,
    pub outbox: OutboxService,
}

impl AdminApi {
    fn pool_type(&self, p: crate::model::pool::UserPool) -> UserPoolType {
        let users = self.pools.user_count(&p.id).unwrap_or(0);
        pool_type(p, users as i64)
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
        let protect = deletion_protection(&r.deletion_protection)?.unwrap_or(false);
        let settings = pool_settings(&r)?;
        let pool = self.pools.create(&r.pool_name, protect, settings).await?;
        tracing::info!(pool_id = %pool.id, "user pool created");
        Ok(Response::new(CreateUserPoolResponse {
            user_pool: Some(pool_type(pool, 0)),
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
            // Like Cognito's ListUserPools, no user counts: counting is a scan.
            user_pools: pools.into_iter().map(|p| pool_type(p, 0)).collect(),
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
            user_pool: Some(self.pool_type(pool)),
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

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn update_user_pool(
        &self,
        req: Request<UpdateUserPoolRequest>,
    ) -> Result<Response<UpdateUserPoolResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        let update = pool_update(&r)?;
        let pool = self.pools.update(&r.user_pool_id, update).await?;
        Ok(Response::new(UpdateUserPoolResponse {
            user_pool: Some(self.pool_type(pool)),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn create_user_pool_client(
        &self,
        req: Request<CreateUserPoolClientRequest>,
    ) -> Result<Response<CreateUserPoolClientResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        let spec = client_spec(
            &r.client_name,
            r.access_token_validity,
            r.id_token_validity,
            r.refresh_token_validity,
            r.token_validity_units.as_ref(),
            &r.read_attributes,
            &r.write_attributes,
            &r.explicit_auth_flows,
            &r.prevent_user_existence_errors,
            r.enable_token_revocation,
        )?;
        let view = self.clients.create(&r.user_pool_id, &spec, r.generate_secret).await?;
        tracing::info!(client_id = %view.client.client_id, "app client created");
        Ok(Response::new(CreateUserPoolClientResponse {
            user_pool_client: Some(client_type(view.client, view.secret)),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn describe_user_pool_client(
        &self,
        req: Request<DescribeUserPoolClientRequest>,
    ) -> Result<Response<DescribeUserPoolClientResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        let view = self
            .clients
            .describe(&r.user_pool_id, &r.client_id, r.consistent_read)
            .await?;
        Ok(Response::new(DescribeUserPoolClientResponse {
            user_pool_client: Some(client_type(view.client, view.secret)),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn update_user_pool_client(
        &self,
        req: Request<UpdateUserPoolClientRequest>,
    ) -> Result<Response<UpdateUserPoolClientResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        let spec = client_spec(
            &r.client_name,
            r.access_token_validity,
            r.id_token_validity,
            r.refresh_token_validity,
            r.token_validity_units.as_ref(),
            &r.read_attributes,
            &r.write_attributes,
            &r.explicit_auth_flows,
            &r.prevent_user_existence_errors,
            r.enable_token_revocation,
        )?;
        let client = self.clients.update(&r.user_pool_id, &r.client_id, &spec).await?;
        Ok(Response::new(UpdateUserPoolClientResponse {
            user_pool_client: Some(client_type(client, None)),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn delete_user_pool_client(
        &self,
        req: Request<DeleteUserPoolClientRequest>,
    ) -> Result<Response<DeleteUserPoolClientResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        self.clients.delete(&r.user_pool_id, &r.client_id).await?;
        Ok(Response::new(DeleteUserPoolClientResponse {}))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn list_user_pool_clients(
        &self,
        req: Request<ListUserPoolClientsRequest>,
    ) -> Result<Response<ListUserPoolClientsResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        let (clients, next) = self
            .clients
            .list(&r.user_pool_id, r.max_results, &r.next_token, r.consistent_read)
            .await?;
        Ok(Response::new(ListUserPoolClientsResponse {
            user_pool_clients: clients
                .into_iter()
                .map(|c| UserPoolClientDescription {
                    client_id: c.client_id,
                    user_pool_id: c.pool_id,
                    client_name: c.client_name,
                })
                .collect(),
            next_token: next.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn admin_create_user(
        &self,
        req: Request<AdminCreateUserRequest>,
    ) -> Result<Response<AdminCreateUserResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        if r.desired_delivery_mediums.len() > 2 {
            return Err(
                crate::service::ServiceError::invalid("desired_delivery_mediums: at most EMAIL and SMS").into(),
            );
        }
        let user = self
            .users
            .create(AdminCreateUser {
                pool_id: r.user_pool_id,
                username: r.username,
                attributes: attributes("user_attributes", &r.user_attributes)?,
                temporary_password: r.temporary_password,
                message_action: r.message_action,
                desired_delivery_mediums: r.desired_delivery_mediums,
            })
            .await?;
        Ok(Response::new(AdminCreateUserResponse {
            user: Some(user_type(&user)),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn admin_get_user(
        &self,
        req: Request<AdminGetUserRequest>,
    ) -> Result<Response<AdminGetUserResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        let u = self.users.get(&r.user_pool_id, &r.username, r.consistent_read).await?;
        Ok(Response::new(AdminGetUserResponse {
            username: u.username.clone(),
            user_attributes: user_attributes(&u),
            user_create_date: u.created_at,
            user_last_modified_date: u.modified_at,
            enabled: u.enabled,
            user_status: u.status.as_cognito().into(),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn admin_confirm_sign_up(
        &self,
        req: Request<AdminConfirmSignUpRequest>,
    ) -> Result<Response<AdminConfirmSignUpResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        self.users.confirm_sign_up(&r.user_pool_id, &r.username).await?;
        Ok(Response::new(AdminConfirmSignUpResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_outbox_messages(
        &self,
        req: Request<ListOutboxMessagesRequest>,
    ) -> Result<Response<ListOutboxMessagesResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let r = req.into_inner();
        let (messages, next) = self
            .outbox
            .list(&r.user_pool_id, r.max_results, &r.next_token, r.consistent_read)
            .await?;
        Ok(Response::new(ListOutboxMessagesResponse {
            messages: messages.into_iter().map(outbox_message).collect(),
            next_token: next.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn admin_update_user_attributes(
        &self,
        req: Request<AdminUpdateUserAttributesRequest>,
    ) -> Result<Response<AdminUpdateUserAttributesResponse>, Status> {
        self.auth.check(bearer(req.metadata())).await?;
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        let attrs = attributes("user_attributes", &r.user_attributes)?;
        self.users
            .update_attributes(&r.user_pool_id, &r.username, attrs)
            .await?;
        Ok(Response::new(AdminUpdateUserAttributesResponse {}))
    }
}
