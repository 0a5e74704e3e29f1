//! `tessera.v1.Admin`: pools, app clients, users and the outbox. Every call
//! needs the admin token, which `admin_layer` checks before a handler here
//! runs.

use tonic::{Request, Response, Status};

use super::convert::*;
use super::origin;
use crate::proto::admin_server::Admin;
use crate::proto::*;
use crate::service::audit::AuditService;
use crate::service::clients::AppClientService;
use crate::service::directory::DirectoryService;
use crate::service::flows::devices::DeviceOwner;
use crate::service::flows::AuthService;
use crate::service::groups::{GroupService, GroupSpec};
use crate::service::outbox::OutboxService;
use crate::service::pools::PoolService;
use crate::service::users::{AdminCreateUser, UserAdminService};
use crate::service::ServiceError;

/// The client settings of a `CreateUserPoolClient` or
/// `UpdateUserPoolClient` request: two prost types with the same fields,
/// read by one `client_spec`.
macro_rules! client_spec_of {
    ($r:expr) => {
        client_spec(
            &$r.client_name,
            $r.access_token_validity,
            $r.id_token_validity,
            $r.refresh_token_validity,
            $r.token_validity_units.as_ref(),
            &$r.read_attributes,
            &$r.write_attributes,
            &$r.explicit_auth_flows,
            &$r.prevent_user_existence_errors,
            $r.enable_token_revocation,
        )
        .and_then(|spec| {
            with_oauth(
                spec,
                ClientOAuthInput {
                    user_pool_client: $r.allowed_oauth_flows_user_pool_client,
                    flows: &$r.allowed_oauth_flows,
                    scopes: &$r.allowed_oauth_scopes,
                    callback_urls: &$r.callback_urls,
                    logout_urls: &$r.logout_urls,
                    default_redirect_uri: &$r.default_redirect_uri,
                    identity_providers: &$r.supported_identity_providers,
                },
            )
        })
    };
}

/// The Admin service adapter.
pub struct AdminApi {
    /// User pool calls (`CreateUserPool`, ...).
    pub pools: PoolService,
    /// App client calls (`CreateUserPoolClient`, ...).
    pub clients: AppClientService,
    /// Admin user calls (`AdminCreateUser`, ...).
    pub users: UserAdminService,
    /// Outbox reads for admins.
    pub outbox: OutboxService,
    /// Group calls (`CreateGroup`, `AdminAddUserToGroup`, ...).
    pub groups: GroupService,
    /// `ListUsers`, `AdminImportUsers` and `AdminExportUsers`.
    pub directory: DirectoryService,
    /// Audit log reads.
    pub audit: AuditService,
    /// For `AdminInitiateAuth`, which runs the user flows.
    pub sign_in: AuthService,
    /// Identity providers and links of external identities.
    pub federation: crate::service::federation::FederationService,
    /// Resource servers and their scopes.
    pub resource_servers: crate::service::resource_servers::ResourceServerService,
    /// The hosted page's branding.
    pub branding: crate::service::branding::BrandingService,
    /// Admin access keys (SigV4).
    pub admin_keys: crate::service::admin_keys::AdminKeyService,
    /// The account id of the ARNs in answers (config `account_id`).
    pub account_id: String,
}

impl AdminApi {
    fn pool_type(&self, p: crate::model::pool::UserPool) -> UserPoolType {
        let users = self.pools.user_count(&p.id).unwrap_or(0);
        let triggers = self.pools.triggers(&p.id).ok().flatten();
        let sign_in = self.pools.sign_in_policy(&p.id).unwrap_or_default();
        let mut t = pool_type(p, users as i64);
        t.lambda_config = triggers.as_ref().map(super::triggers::lambda_config_type);
        t.srp_enabled = self.pools.srp_enabled(&t.id).unwrap_or(false);
        let region = t.id.split('_').next().unwrap_or_default();
        t.arn = format!("arn:aws:cognito-idp:{region}:{}:userpool/{}", self.account_id, t.id);
        t.device_configuration = self
            .pools
            .device_config(&t.id)
            .ok()
            .flatten()
            .as_ref()
            .map(super::devices::device_configuration_type);
        if let Some(policies) = t.policies.as_mut() {
            policies.sign_in_policy = Some(super::convert::sign_in_policy_type(&sign_in));
        }
        t
    }
}

#[tonic::async_trait]
impl Admin for AdminApi {
    #[tracing::instrument(skip_all)]
    async fn create_admin_access_key(
        &self,
        req: Request<CreateAdminAccessKeyRequest>,
    ) -> Result<Response<CreateAdminAccessKeyResponse>, Status> {
        let r = req.into_inner();
        let given = match (r.access_key_id.is_empty(), r.secret_access_key.is_empty()) {
            (true, true) => None,
            (false, false) => Some((r.access_key_id, r.secret_access_key)),
            _ => {
                return Err(ServiceError::invalid(
                    "access_key_id and secret_access_key: give both (a key of your own) or neither (a random one)",
                )
                .into())
            }
        };
        let created = self.admin_keys.create(given, &r.description).await?;
        Ok(Response::new(CreateAdminAccessKeyResponse {
            access_key: Some(admin_access_key_type(created.summary)),
            secret_access_key: created.secret,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_admin_access_keys(
        &self,
        _req: Request<ListAdminAccessKeysRequest>,
    ) -> Result<Response<ListAdminAccessKeysResponse>, Status> {
        let keys = self.admin_keys.list().await?;
        Ok(Response::new(ListAdminAccessKeysResponse {
            access_keys: keys.into_iter().map(admin_access_key_type).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_admin_access_key(
        &self,
        req: Request<DeleteAdminAccessKeyRequest>,
    ) -> Result<Response<DeleteAdminAccessKeyResponse>, Status> {
        self.admin_keys.delete(&req.into_inner().access_key_id).await?;
        Ok(Response::new(DeleteAdminAccessKeyResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn create_user_pool(
        &self,
        req: Request<CreateUserPoolRequest>,
    ) -> Result<Response<CreateUserPoolResponse>, Status> {
        let r = req.into_inner();
        let protect = deletion_protection(&r.deletion_protection)?.unwrap_or(false);
        let settings = pool_settings(&r)?;
        let triggers = r
            .lambda_config
            .as_ref()
            .map(super::triggers::triggers_update)
            .transpose()?;
        if triggers
            .as_ref()
            .is_some_and(|t| !t.urls.is_empty() && t.signing_secret.is_none())
        {
            return Err(ServiceError::invalid(
                "lambda_config.signing_secret: required when a trigger is configured: every trigger request is signed with it",
            )
            .into());
        }
        let sign_in = super::convert::sign_in_policy_of(r.policies.as_ref())?;
        let pool = self.pools.create(&r.pool_name, protect, settings).await?;
        tracing::info!(pool_id = %pool.id, "user pool created");
        if let Some(t) = triggers {
            // Checked above, so this second write fails only if the
            // cluster does; the pool exists then and UpdateUserPool sets them.
            self.pools.set_triggers(&pool.id, t).await?;
        }
        if let Some(policy) = sign_in {
            // A second entry: the pool exists already, so a failure here
            // leaves it with the default policy (PASSWORD), and says so.
            self.pools.set_sign_in_policy(&pool.id, policy).await?;
        }
        if r.srp_enabled == Some(true) {
            self.pools.set_srp(&pool.id, true).await?;
        }
        if let Some(d) = &r.device_configuration {
            self.pools
                .set_device_config(&pool.id, Some(super::devices::device_config(d)))
                .await?;
        }
        Ok(Response::new(CreateUserPoolResponse {
            user_pool: Some(self.pool_type(pool)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_user_pools(
        &self,
        req: Request<ListUserPoolsRequest>,
    ) -> Result<Response<ListUserPoolsResponse>, Status> {
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
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        let update = pool_update(&r)?;
        let triggers = r
            .lambda_config
            .as_ref()
            .map(super::triggers::triggers_update)
            .transpose()?;
        let sign_in = super::convert::sign_in_policy_of(r.policies.as_ref())?;
        let mut pool = self.pools.update(&r.user_pool_id, update).await?;
        if let Some(t) = triggers {
            self.pools.set_triggers(&r.user_pool_id, t).await?;
            pool = self.pools.describe(&r.user_pool_id, false).await?;
        }
        if let Some(policy) = sign_in {
            self.pools.set_sign_in_policy(&pool.id, policy).await?;
        }
        if let Some(enabled) = r.srp_enabled {
            self.pools.set_srp(&pool.id, enabled).await?;
        }
        if r.clear_device_configuration {
            self.pools.set_device_config(&pool.id, None).await?;
        } else if let Some(d) = &r.device_configuration {
            self.pools
                .set_device_config(&pool.id, Some(super::devices::device_config(d)))
                .await?;
        }
        Ok(Response::new(UpdateUserPoolResponse {
            user_pool: Some(self.pool_type(pool)),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn create_user_pool_client(
        &self,
        req: Request<CreateUserPoolClientRequest>,
    ) -> Result<Response<CreateUserPoolClientResponse>, Status> {
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        let spec = client_spec_of!(r)?;
        let view = self.clients.create(&r.user_pool_id, &spec, r.generate_secret).await?;
        tracing::info!(client_id = %view.client.client_id, "app client created");
        Ok(Response::new(CreateUserPoolClientResponse {
            user_pool_client: Some(client_type(view)),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn describe_user_pool_client(
        &self,
        req: Request<DescribeUserPoolClientRequest>,
    ) -> Result<Response<DescribeUserPoolClientResponse>, Status> {
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        let view = self
            .clients
            .describe(&r.user_pool_id, &r.client_id, r.consistent_read)
            .await?;
        Ok(Response::new(DescribeUserPoolClientResponse {
            user_pool_client: Some(client_type(view)),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn update_user_pool_client(
        &self,
        req: Request<UpdateUserPoolClientRequest>,
    ) -> Result<Response<UpdateUserPoolClientResponse>, Status> {
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        let spec = client_spec_of!(r)?;
        let view = self.clients.update(&r.user_pool_id, &r.client_id, &spec).await?;
        Ok(Response::new(UpdateUserPoolClientResponse {
            user_pool_client: Some(client_type(view)),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn delete_user_pool_client(
        &self,
        req: Request<DeleteUserPoolClientRequest>,
    ) -> Result<Response<DeleteUserPoolClientResponse>, Status> {
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
        let origin = origin(&req);
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        if r.desired_delivery_mediums.len() > 2 {
            return Err(
                crate::service::ServiceError::invalid("desired_delivery_mediums: at most EMAIL and SMS").into(),
            );
        }
        let user = self
            .users
            .create(
                AdminCreateUser {
                    pool_id: r.user_pool_id,
                    username: r.username,
                    attributes: attributes("user_attributes", &r.user_attributes)?,
                    temporary_password: r.temporary_password,
                    message_action: r.message_action,
                    desired_delivery_mediums: r.desired_delivery_mediums,
                    force_alias_creation: r.force_alias_creation,
                    validation_data: {
                        let v = attributes("validation_data", &r.validation_data)?;
                        crate::service::flows::check_parameters("validation_data", &v)?;
                        v
                    },
                },
                &origin.with_client_metadata(&r.client_metadata)?,
            )
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
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        let u = self.users.get(&r.user_pool_id, &r.username, r.consistent_read).await?;
        let mfa = self.users.mfa_summary(&u)?;
        Ok(Response::new(AdminGetUserResponse {
            username: u.username.clone(),
            user_attributes: user_attributes(&u),
            user_create_date: u.created_at,
            user_last_modified_date: u.modified_at,
            enabled: u.enabled,
            user_status: u.status.as_cognito().into(),
            preferred_mfa_setting: mfa.preferred.unwrap_or_default(),
            user_mfa_setting_list: mfa.setting_list,
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn admin_confirm_sign_up(
        &self,
        req: Request<AdminConfirmSignUpRequest>,
    ) -> Result<Response<AdminConfirmSignUpResponse>, Status> {
        let origin = origin(&req);
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        self.users
            .confirm_sign_up(&r.user_pool_id, &r.username, &origin)
            .await?;
        Ok(Response::new(AdminConfirmSignUpResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_outbox_messages(
        &self,
        req: Request<ListOutboxMessagesRequest>,
    ) -> Result<Response<ListOutboxMessagesResponse>, Status> {
        let r = req.into_inner();
        let (messages, next) = self
            .outbox
            .list(&r.user_pool_id, r.max_results, &r.next_token, r.consistent_read)
            .await?;
        Ok(Response::new(ListOutboxMessagesResponse {
            messages: messages.into_iter().map(|(m, c)| outbox_message(m, c)).collect(),
            next_token: next.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn admin_update_user_attributes(
        &self,
        req: Request<AdminUpdateUserAttributesRequest>,
    ) -> Result<Response<AdminUpdateUserAttributesResponse>, Status> {
        let origin = origin(&req);
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        let attrs = attributes("user_attributes", &r.user_attributes)?;
        self.users
            .update_attributes(&r.user_pool_id, &r.username, attrs, &origin)
            .await?;
        Ok(Response::new(AdminUpdateUserAttributesResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn admin_delete_user_attributes(
        &self,
        req: Request<AdminDeleteUserAttributesRequest>,
    ) -> Result<Response<AdminDeleteUserAttributesResponse>, Status> {
        let origin = origin(&req);
        let r = req.into_inner();
        self.users
            .delete_attributes(&r.user_pool_id, &r.username, r.user_attribute_names, &origin)
            .await?;
        Ok(Response::new(AdminDeleteUserAttributesResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn admin_delete_user(
        &self,
        req: Request<AdminDeleteUserRequest>,
    ) -> Result<Response<AdminDeleteUserResponse>, Status> {
        let origin = origin(&req);
        let r = req.into_inner();
        self.users.delete(&r.user_pool_id, &r.username, &origin).await?;
        Ok(Response::new(AdminDeleteUserResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn admin_disable_user(
        &self,
        req: Request<AdminDisableUserRequest>,
    ) -> Result<Response<AdminDisableUserResponse>, Status> {
        let origin = origin(&req);
        let r = req.into_inner();
        self.users
            .set_enabled(&r.user_pool_id, &r.username, false, &origin)
            .await?;
        Ok(Response::new(AdminDisableUserResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn admin_enable_user(
        &self,
        req: Request<AdminEnableUserRequest>,
    ) -> Result<Response<AdminEnableUserResponse>, Status> {
        let origin = origin(&req);
        let r = req.into_inner();
        self.users
            .set_enabled(&r.user_pool_id, &r.username, true, &origin)
            .await?;
        Ok(Response::new(AdminEnableUserResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn admin_set_user_password(
        &self,
        req: Request<AdminSetUserPasswordRequest>,
    ) -> Result<Response<AdminSetUserPasswordResponse>, Status> {
        let origin = origin(&req);
        let r = req.into_inner();
        self.users
            .set_password(&r.user_pool_id, &r.username, &r.password, r.permanent, &origin)
            .await?;
        Ok(Response::new(AdminSetUserPasswordResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn admin_reset_user_password(
        &self,
        req: Request<AdminResetUserPasswordRequest>,
    ) -> Result<Response<AdminResetUserPasswordResponse>, Status> {
        let mut origin = origin(&req);
        let r = req.into_inner();
        origin = origin.with_client_metadata(&r.client_metadata)?;
        self.users.reset_password(&r.user_pool_id, &r.username, &origin).await?;
        Ok(Response::new(AdminResetUserPasswordResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn admin_user_global_sign_out(
        &self,
        req: Request<AdminUserGlobalSignOutRequest>,
    ) -> Result<Response<AdminUserGlobalSignOutResponse>, Status> {
        let origin = origin(&req);
        let r = req.into_inner();
        self.users
            .global_sign_out(&r.user_pool_id, &r.username, &origin)
            .await?;
        Ok(Response::new(AdminUserGlobalSignOutResponse {}))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn admin_get_device(
        &self,
        req: Request<AdminGetDeviceRequest>,
    ) -> Result<Response<AdminGetDeviceResponse>, Status> {
        let r = req.into_inner();
        let owner = DeviceOwner::Admin {
            pool_id: &r.user_pool_id,
            username: &r.username,
        };
        let d = self.sign_in.get_device(owner, &r.device_key).await?;
        Ok(Response::new(AdminGetDeviceResponse {
            device: Some(super::devices::device_type(d)),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn admin_list_devices(
        &self,
        req: Request<AdminListDevicesRequest>,
    ) -> Result<Response<AdminListDevicesResponse>, Status> {
        let r = req.into_inner();
        let owner = DeviceOwner::Admin {
            pool_id: &r.user_pool_id,
            username: &r.username,
        };
        let (devices, pagination_token) = self.sign_in.list_devices(owner, r.limit, &r.pagination_token).await?;
        Ok(Response::new(AdminListDevicesResponse {
            devices: devices.into_iter().map(super::devices::device_type).collect(),
            pagination_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn admin_update_device_status(
        &self,
        req: Request<AdminUpdateDeviceStatusRequest>,
    ) -> Result<Response<AdminUpdateDeviceStatusResponse>, Status> {
        let r = req.into_inner();
        let owner = DeviceOwner::Admin {
            pool_id: &r.user_pool_id,
            username: &r.username,
        };
        self.sign_in
            .update_device_status(owner, &r.device_key, &r.device_remembered_status)
            .await?;
        Ok(Response::new(AdminUpdateDeviceStatusResponse {}))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn admin_forget_device(
        &self,
        req: Request<AdminForgetDeviceRequest>,
    ) -> Result<Response<AdminForgetDeviceResponse>, Status> {
        let r = req.into_inner();
        let owner = DeviceOwner::Admin {
            pool_id: &r.user_pool_id,
            username: &r.username,
        };
        self.sign_in.forget_device(owner, &r.device_key).await?;
        Ok(Response::new(AdminForgetDeviceResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn admin_initiate_auth(
        &self,
        req: Request<AdminInitiateAuthRequest>,
    ) -> Result<Response<AdminInitiateAuthResponse>, Status> {
        let mut origin = origin(&req);
        let r = req.into_inner();
        origin = origin.with_client_metadata(&r.client_metadata)?;
        if let Some(ip) = r
            .context_data
            .as_ref()
            .map(|c| c.ip_address.as_str())
            .filter(|ip| !ip.is_empty())
        {
            // The back end calling on a user's behalf names the user's address.
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(ServiceError::invalid("context_data.ip_address: not an IP address").into());
            }
            origin.ip = ip.to_string();
        }
        let answer = self
            .sign_in
            .admin_initiate_auth(&r.user_pool_id, &r.auth_flow, &r.client_id, &r.auth_parameters, &origin)
            .await?;
        let (challenge_name, session, challenge_parameters, result, available_challenges) = super::auth::answer(answer);
        Ok(Response::new(AdminInitiateAuthResponse {
            challenge_name,
            session,
            challenge_parameters,
            available_challenges,
            authentication_result: result.map(|t| AdminAuthenticationResultType {
                access_token: t.access_token,
                expires_in: t.expires_in,
                token_type: t.token_type,
                refresh_token: t.refresh_token,
                id_token: t.id_token,
                new_device_metadata: t.new_device_metadata,
            }),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn admin_respond_to_auth_challenge(
        &self,
        req: Request<AdminRespondToAuthChallengeRequest>,
    ) -> Result<Response<AdminRespondToAuthChallengeResponse>, Status> {
        let mut origin = origin(&req);
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        origin = origin.with_client_metadata(&r.client_metadata)?;
        if let Some(ip) = r
            .context_data
            .as_ref()
            .map(|c| c.ip_address.as_str())
            .filter(|ip| !ip.is_empty())
        {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(ServiceError::invalid("context_data.ip_address: not an IP address").into());
            }
            origin.ip = ip.to_string();
        }
        let answer = self
            .sign_in
            .admin_respond_to_auth_challenge(
                &r.user_pool_id,
                &r.client_id,
                &r.challenge_name,
                &r.session,
                &r.challenge_responses,
                &origin,
            )
            .await?;
        let (challenge_name, session, challenge_parameters, result, available_challenges) = super::auth::answer(answer);
        Ok(Response::new(AdminRespondToAuthChallengeResponse {
            challenge_name,
            session,
            challenge_parameters,
            available_challenges,
            authentication_result: result.map(|t| AdminAuthenticationResultType {
                access_token: t.access_token,
                expires_in: t.expires_in,
                token_type: t.token_type,
                refresh_token: t.refresh_token,
                id_token: t.id_token,
                new_device_metadata: t.new_device_metadata,
            }),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn set_user_pool_mfa_config(
        &self,
        req: Request<SetUserPoolMfaConfigRequest>,
    ) -> Result<Response<SetUserPoolMfaConfigResponse>, Status> {
        let origin = origin(&req);
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        let config = mfa_config_of(&r)?;
        // Both parts are checked before either is written.
        let web_authn = r.web_authn_configuration.as_ref().map(web_authn_of).transpose()?;
        config.validate().map_err(ServiceError::from)?;
        if let Some(w) = web_authn {
            self.pools.set_web_authn_config(&r.user_pool_id, w, &origin).await?;
        }
        let c = self.pools.set_mfa_config(&r.user_pool_id, config, &origin).await?;
        let v = mfa_config_view(&c);
        let w = self.pools.web_authn_config(&r.user_pool_id)?;
        Ok(Response::new(SetUserPoolMfaConfigResponse {
            sms_mfa_configuration: v.0,
            software_token_mfa_configuration: v.1,
            mfa_configuration: v.2,
            email_mfa_configuration: v.3,
            auth_session_validity_seconds: v.4,
            web_authn_configuration: Some(web_authn_view(&w)),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn get_user_pool_mfa_config(
        &self,
        req: Request<GetUserPoolMfaConfigRequest>,
    ) -> Result<Response<GetUserPoolMfaConfigResponse>, Status> {
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        let c = self.pools.mfa_config(&r.user_pool_id, r.consistent_read).await?;
        let v = mfa_config_view(&c);
        let w = self.pools.web_authn_config(&r.user_pool_id)?;
        Ok(Response::new(GetUserPoolMfaConfigResponse {
            sms_mfa_configuration: v.0,
            software_token_mfa_configuration: v.1,
            mfa_configuration: v.2,
            email_mfa_configuration: v.3,
            auth_session_validity_seconds: v.4,
            web_authn_configuration: Some(web_authn_view(&w)),
        }))
    }

    #[tracing::instrument(skip_all, fields(pool_id))]
    async fn admin_set_user_mfa_preference(
        &self,
        req: Request<AdminSetUserMfaPreferenceRequest>,
    ) -> Result<Response<AdminSetUserMfaPreferenceResponse>, Status> {
        let origin = origin(&req);
        let r = req.into_inner();
        tracing::Span::current().record("pool_id", r.user_pool_id.as_str());
        let prefs = super::auth::mfa_preferences(
            r.sms_mfa_settings.map(|s| (s.enabled, s.preferred_mfa)),
            r.software_token_mfa_settings.map(|s| (s.enabled, s.preferred_mfa)),
            r.email_mfa_settings.map(|s| (s.enabled, s.preferred_mfa)),
        );
        self.users
            .set_mfa_preference(&r.user_pool_id, &r.username, &prefs, &origin)
            .await?;
        Ok(Response::new(AdminSetUserMfaPreferenceResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_users(&self, req: Request<ListUsersRequest>) -> Result<Response<ListUsersResponse>, Status> {
        let r = req.into_inner();
        let (users, next) = self
            .directory
            .list_users(
                &r.user_pool_id,
                &r.filter,
                &r.attributes_to_get,
                r.limit,
                &r.pagination_token,
                r.consistent_read,
            )
            .await?;
        let wanted = &r.attributes_to_get;
        Ok(Response::new(ListUsersResponse {
            users: users
                .iter()
                .map(|u| {
                    let mut t = user_type(u);
                    // Only what was asked for, `sub` and the flags included.
                    if !wanted.is_empty() {
                        t.attributes.retain(|a| wanted.contains(&a.name));
                    }
                    t
                })
                .collect(),
            pagination_token: next.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn admin_import_users(
        &self,
        req: Request<AdminImportUsersRequest>,
    ) -> Result<Response<AdminImportUsersResponse>, Status> {
        let origin = origin(&req);
        let r = req.into_inner();
        let mut users = Vec::with_capacity(r.users.len());
        for (i, u) in r.users.into_iter().enumerate() {
            users.push(super::transfer::import_user(i, u)?);
        }
        let result = self
            .directory
            .import(&r.user_pool_id, users, &r.password, r.mark_verified, &origin)
            .await?;
        Ok(Response::new(AdminImportUsersResponse {
            imported: result.imported as i32,
            failures: result
                .failures
                .into_iter()
                .map(|(username, reason)| ImportFailure { username, reason })
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn admin_export_users(
        &self,
        req: Request<AdminExportUsersRequest>,
    ) -> Result<Response<AdminExportUsersResponse>, Status> {
        let origin = origin(&req);
        let r = req.into_inner();
        let (users, next) = self
            .directory
            .export(&r.user_pool_id, r.limit, &r.pagination_token, &origin)
            .await?;
        Ok(Response::new(AdminExportUsersResponse {
            users: users.into_iter().map(super::transfer::exported_user_type).collect(),
            pagination_token: next.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_group(&self, req: Request<CreateGroupRequest>) -> Result<Response<CreateGroupResponse>, Status> {
        let origin = origin(&req);
        let r = req.into_inner();
        let spec = GroupSpec {
            description: Some(r.description),
            role_arn: Some(r.role_arn),
            precedence: Some(r.precedence),
            permissions: Some(r.permissions),
        };
        let g = self
            .groups
            .create(&r.user_pool_id, &r.group_name, spec, &origin)
            .await?;
        Ok(Response::new(CreateGroupResponse {
            group: Some(group_type(g)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_group(&self, req: Request<GetGroupRequest>) -> Result<Response<GetGroupResponse>, Status> {
        let r = req.into_inner();
        let g = self
            .groups
            .get(&r.user_pool_id, &r.group_name, r.consistent_read)
            .await?;
        Ok(Response::new(GetGroupResponse {
            group: Some(group_type(g)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_group(&self, req: Request<UpdateGroupRequest>) -> Result<Response<UpdateGroupResponse>, Status> {
        let origin = origin(&req);
        let r = req.into_inner();
        let spec = GroupSpec {
            description: r.description,
            role_arn: r.role_arn,
            precedence: r.precedence.map(Some),
            permissions: r.permissions.map(|p| p.values),
        };
        let g = self
            .groups
            .update(&r.user_pool_id, &r.group_name, spec, &origin)
            .await?;
        Ok(Response::new(UpdateGroupResponse {
            group: Some(group_type(g)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_group(&self, req: Request<DeleteGroupRequest>) -> Result<Response<DeleteGroupResponse>, Status> {
        let origin = origin(&req);
        let r = req.into_inner();
        self.groups.delete(&r.user_pool_id, &r.group_name, &origin).await?;
        Ok(Response::new(DeleteGroupResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_groups(&self, req: Request<ListGroupsRequest>) -> Result<Response<ListGroupsResponse>, Status> {
        let r = req.into_inner();
        let (groups, next) = self
            .groups
            .list(&r.user_pool_id, r.limit, &r.next_token, r.consistent_read)
            .await?;
        Ok(Response::new(ListGroupsResponse {
            groups: groups.into_iter().map(group_type).collect(),
            next_token: next.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn admin_add_user_to_group(
        &self,
        req: Request<AdminAddUserToGroupRequest>,
    ) -> Result<Response<AdminAddUserToGroupResponse>, Status> {
        let origin = origin(&req);
        let r = req.into_inner();
        self.groups
            .add_user(&r.user_pool_id, &r.username, &r.group_name, &origin)
            .await?;
        Ok(Response::new(AdminAddUserToGroupResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn admin_remove_user_from_group(
        &self,
        req: Request<AdminRemoveUserFromGroupRequest>,
    ) -> Result<Response<AdminRemoveUserFromGroupResponse>, Status> {
        let origin = origin(&req);
        let r = req.into_inner();
        self.groups
            .remove_user(&r.user_pool_id, &r.username, &r.group_name, &origin)
            .await?;
        Ok(Response::new(AdminRemoveUserFromGroupResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn admin_list_groups_for_user(
        &self,
        req: Request<AdminListGroupsForUserRequest>,
    ) -> Result<Response<AdminListGroupsForUserResponse>, Status> {
        let r = req.into_inner();
        let (groups, next) = self
            .groups
            .groups_for_user(&r.user_pool_id, &r.username, r.limit, &r.next_token, r.consistent_read)
            .await?;
        Ok(Response::new(AdminListGroupsForUserResponse {
            groups: groups.into_iter().map(group_type).collect(),
            next_token: next.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_users_in_group(
        &self,
        req: Request<ListUsersInGroupRequest>,
    ) -> Result<Response<ListUsersInGroupResponse>, Status> {
        let r = req.into_inner();
        let (users, next) = self
            .groups
            .users_in_group(
                &r.user_pool_id,
                &r.group_name,
                r.limit,
                &r.next_token,
                r.consistent_read,
            )
            .await?;
        Ok(Response::new(ListUsersInGroupResponse {
            users: users.iter().map(user_type).collect(),
            next_token: next.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn admin_list_user_auth_events(
        &self,
        req: Request<AdminListUserAuthEventsRequest>,
    ) -> Result<Response<AdminListUserAuthEventsResponse>, Status> {
        let r = req.into_inner();
        let sub = if r.username.is_empty() {
            None
        } else {
            Some(
                self.users
                    .get(&r.user_pool_id, &r.username, r.consistent_read)
                    .await?
                    .sub,
            )
        };
        if sub.is_none() {
            self.pools.describe(&r.user_pool_id, r.consistent_read).await?;
        }
        let (events, next) = self
            .audit
            .list(
                &r.user_pool_id,
                sub.as_deref(),
                r.max_results,
                &r.next_token,
                r.consistent_read,
            )
            .await?;
        Ok(Response::new(AdminListUserAuthEventsResponse {
            auth_events: events.into_iter().map(auth_event_type).collect(),
            next_token: next.unwrap_or_default(),
        }))
    }

    async fn create_resource_server(
        &self,
        req: Request<CreateResourceServerRequest>,
    ) -> Result<Response<ResourceServerResponse>, Status> {
        let r = req.into_inner();
        let scopes = resource_server_scopes(r.scopes)?;
        let s = self
            .resource_servers
            .put(&r.user_pool_id, &r.identifier, &r.name, scopes, true)
            .await?;
        Ok(Response::new(resource_server_response(s)))
    }

    async fn describe_resource_server(
        &self,
        req: Request<DescribeResourceServerRequest>,
    ) -> Result<Response<ResourceServerResponse>, Status> {
        let r = req.into_inner();
        let s = self.resource_servers.describe(&r.user_pool_id, &r.identifier).await?;
        Ok(Response::new(resource_server_response(s)))
    }

    async fn update_resource_server(
        &self,
        req: Request<UpdateResourceServerRequest>,
    ) -> Result<Response<ResourceServerResponse>, Status> {
        let r = req.into_inner();
        let scopes = resource_server_scopes(r.scopes)?;
        let s = self
            .resource_servers
            .put(&r.user_pool_id, &r.identifier, &r.name, scopes, false)
            .await?;
        Ok(Response::new(resource_server_response(s)))
    }

    async fn delete_resource_server(
        &self,
        req: Request<DeleteResourceServerRequest>,
    ) -> Result<Response<DeleteResourceServerResponse>, Status> {
        let r = req.into_inner();
        self.resource_servers.delete(&r.user_pool_id, &r.identifier).await?;
        Ok(Response::new(DeleteResourceServerResponse {}))
    }

    async fn list_resource_servers(
        &self,
        req: Request<ListResourceServersRequest>,
    ) -> Result<Response<ListResourceServersResponse>, Status> {
        let r = req.into_inner();
        let (servers, next) = self
            .resource_servers
            .list(&r.user_pool_id, r.max_results, &r.next_token)
            .await?;
        Ok(Response::new(ListResourceServersResponse {
            resource_servers: servers
                .into_iter()
                .filter_map(|s| resource_server_response(s).resource_server)
                .collect(),
            next_token: next.unwrap_or_default(),
        }))
    }

    async fn create_managed_login_branding(
        &self,
        req: Request<CreateManagedLoginBrandingRequest>,
    ) -> Result<Response<ManagedLoginBrandingResponse>, Status> {
        let r = req.into_inner();
        let assets = super::branding::assets_from(r.assets)?;
        let b = self
            .branding
            .create(
                &r.user_pool_id,
                &r.client_id,
                r.use_cognito_provided_values,
                &r.settings_document,
                assets,
            )
            .await?;
        Ok(Response::new(super::branding::branding_response(b)))
    }

    async fn describe_managed_login_branding(
        &self,
        req: Request<DescribeManagedLoginBrandingRequest>,
    ) -> Result<Response<ManagedLoginBrandingResponse>, Status> {
        let r = req.into_inner();
        let b = self
            .branding
            .describe(&r.user_pool_id, &r.managed_login_branding_id, r.return_merged_resources)
            .await?;
        Ok(Response::new(super::branding::branding_response(b)))
    }

    async fn describe_managed_login_branding_by_client(
        &self,
        req: Request<DescribeManagedLoginBrandingByClientRequest>,
    ) -> Result<Response<ManagedLoginBrandingResponse>, Status> {
        let r = req.into_inner();
        let b = self
            .branding
            .describe_by_client(&r.user_pool_id, &r.client_id, r.return_merged_resources)
            .await?;
        Ok(Response::new(super::branding::branding_response(b)))
    }

    async fn update_managed_login_branding(
        &self,
        req: Request<UpdateManagedLoginBrandingRequest>,
    ) -> Result<Response<ManagedLoginBrandingResponse>, Status> {
        let r = req.into_inner();
        let assets = if r.assets.is_empty() {
            None
        } else {
            Some(super::branding::assets_from(r.assets)?)
        };
        let settings = (!r.settings_document.is_empty()).then_some(r.settings_document.as_str());
        let b = self
            .branding
            .update(
                &r.user_pool_id,
                &r.managed_login_branding_id,
                r.use_cognito_provided_values,
                settings,
                assets,
            )
            .await?;
        Ok(Response::new(super::branding::branding_response(b)))
    }

    async fn delete_managed_login_branding(
        &self,
        req: Request<DeleteManagedLoginBrandingRequest>,
    ) -> Result<Response<DeleteManagedLoginBrandingResponse>, Status> {
        let r = req.into_inner();
        self.branding
            .delete(&r.user_pool_id, &r.managed_login_branding_id)
            .await?;
        Ok(Response::new(DeleteManagedLoginBrandingResponse {}))
    }

    async fn set_ui_customization(
        &self,
        req: Request<SetUiCustomizationRequest>,
    ) -> Result<Response<UiCustomizationResponse>, Status> {
        let r = req.into_inner();
        let b = self
            .branding
            .set_ui(&r.user_pool_id, &r.client_id, &r.css, Some(&r.image_file))
            .await?;
        Ok(Response::new(super::branding::ui_response(
            &r.user_pool_id,
            &r.client_id,
            Some(b),
        )))
    }

    async fn get_ui_customization(
        &self,
        req: Request<GetUiCustomizationRequest>,
    ) -> Result<Response<UiCustomizationResponse>, Status> {
        let r = req.into_inner();
        let b = self.branding.get_ui(&r.user_pool_id, &r.client_id).await?;
        Ok(Response::new(super::branding::ui_response(
            &r.user_pool_id,
            &r.client_id,
            b,
        )))
    }

    async fn create_identity_provider(
        &self,
        req: Request<CreateIdentityProviderRequest>,
    ) -> Result<Response<IdentityProviderResponse>, Status> {
        let r = req.into_inner();
        let p = self
            .federation
            .create(
                &r.user_pool_id,
                &r.provider_name,
                &r.provider_type,
                super::federation::input(
                    Some(r.provider_details),
                    Some(r.attribute_mapping),
                    Some(r.idp_identifiers),
                ),
            )
            .await?;
        Ok(Response::new(super::federation::provider_response(p)))
    }

    async fn describe_identity_provider(
        &self,
        req: Request<DescribeIdentityProviderRequest>,
    ) -> Result<Response<IdentityProviderResponse>, Status> {
        let r = req.into_inner();
        let p = self.federation.describe(&r.user_pool_id, &r.provider_name).await?;
        Ok(Response::new(super::federation::provider_response(p)))
    }

    async fn update_identity_provider(
        &self,
        req: Request<UpdateIdentityProviderRequest>,
    ) -> Result<Response<IdentityProviderResponse>, Status> {
        let r = req.into_inner();
        let input = super::federation::input(
            Some(r.provider_details).filter(|m| !m.is_empty()),
            Some(r.attribute_mapping).filter(|m| !m.is_empty()),
            Some(r.idp_identifiers).filter(|v| !v.is_empty()),
        );
        let p = self.federation.update(&r.user_pool_id, &r.provider_name, input).await?;
        Ok(Response::new(super::federation::provider_response(p)))
    }

    async fn delete_identity_provider(
        &self,
        req: Request<DeleteIdentityProviderRequest>,
    ) -> Result<Response<DeleteIdentityProviderResponse>, Status> {
        let r = req.into_inner();
        self.federation.delete(&r.user_pool_id, &r.provider_name).await?;
        Ok(Response::new(DeleteIdentityProviderResponse {}))
    }

    async fn list_identity_providers(
        &self,
        req: Request<ListIdentityProvidersRequest>,
    ) -> Result<Response<ListIdentityProvidersResponse>, Status> {
        let r = req.into_inner();
        let (providers, next) = self
            .federation
            .list(&r.user_pool_id, r.max_results, &r.next_token)
            .await?;
        Ok(Response::new(ListIdentityProvidersResponse {
            providers: providers
                .into_iter()
                .map(|p| ProviderDescription {
                    provider_name: p.provider_name,
                    provider_type: p.provider_type.as_str().into(),
                    last_modified_date: p.last_modified_date / 1000,
                    creation_date: p.creation_date / 1000,
                })
                .collect(),
            next_token: next.unwrap_or_default(),
        }))
    }

    async fn admin_link_provider_for_user(
        &self,
        req: Request<AdminLinkProviderForUserRequest>,
    ) -> Result<Response<AdminLinkProviderForUserResponse>, Status> {
        let r = req.into_inner();
        let dest = r.destination_user.unwrap_or_default();
        let src = r.source_user.unwrap_or_default();
        self.federation
            .link(
                &r.user_pool_id,
                &dest.provider_name,
                &dest.provider_attribute_value,
                (
                    &src.provider_name,
                    &src.provider_attribute_name,
                    &src.provider_attribute_value,
                ),
            )
            .await?;
        Ok(Response::new(AdminLinkProviderForUserResponse {}))
    }

    async fn admin_disable_provider_for_user(
        &self,
        req: Request<AdminDisableProviderForUserRequest>,
    ) -> Result<Response<AdminDisableProviderForUserResponse>, Status> {
        let r = req.into_inner();
        let u = r.user.unwrap_or_default();
        self.federation
            .disable(
                &r.user_pool_id,
                (
                    &u.provider_name,
                    &u.provider_attribute_name,
                    &u.provider_attribute_value,
                ),
            )
            .await?;
        Ok(Response::new(AdminDisableProviderForUserResponse {}))
    }
}

/// A `SetUserPoolMfaConfig` request as the setting it asks for (checked as
/// a whole by the service).
fn mfa_config_of(r: &SetUserPoolMfaConfigRequest) -> Result<crate::model::mfa::PoolMfaConfig, ServiceError> {
    use crate::model::mfa::{MfaConfiguration, PoolMfaConfig, DEFAULT_SESSION_SECS};
    let mfa_configuration = match r.mfa_configuration.as_str() {
        "" => MfaConfiguration::Off,
        other => MfaConfiguration::parse(other)?,
    };
    let session_validity_secs = match r.auth_session_validity_seconds {
        0 => DEFAULT_SESSION_SECS,
        n => u32::try_from(n).map_err(|_| ServiceError::invalid("auth_session_validity_seconds: must be positive"))?,
    };
    // Bounded in bytes here (4 bytes a character at most); the model
    // checks characters and the {####} placeholder.
    if let Some(sms) = &r.sms_mfa_configuration {
        if sms.sms_authentication_message.len() > 4 * crate::model::mfa::MAX_SMS_MESSAGE_CHARS {
            return Err(ServiceError::invalid(
                "sms_mfa_configuration.sms_authentication_message: at most 140 characters",
            ));
        }
    }
    if let Some(email) = &r.email_mfa_configuration {
        if email.message.len() > 4 * crate::model::mfa::MAX_EMAIL_MESSAGE_CHARS
            || email.subject.len() > 4 * crate::model::mfa::MAX_EMAIL_SUBJECT_CHARS
        {
            return Err(ServiceError::invalid(
                "email_mfa_configuration: message at most 20000 characters, subject at most 140",
            ));
        }
    }
    Ok(PoolMfaConfig {
        mfa_configuration,
        software_token_enabled: r.software_token_mfa_configuration.as_ref().is_some_and(|t| t.enabled),
        sms_enabled: r.sms_mfa_configuration.is_some(),
        email_enabled: r.email_mfa_configuration.is_some(),
        session_validity_secs,
        modified_at: 0,
        sms_message: r
            .sms_mfa_configuration
            .as_ref()
            .map(|c| c.sms_authentication_message.clone())
            .unwrap_or_default(),
        email_message: r
            .email_mfa_configuration
            .as_ref()
            .map(|c| c.message.clone())
            .unwrap_or_default(),
        email_subject: r
            .email_mfa_configuration
            .as_ref()
            .map(|c| c.subject.clone())
            .unwrap_or_default(),
    })
}

/// A pool's passkey setting from `WebAuthnConfigurationType`.
fn web_authn_of(t: &WebAuthnConfigurationType) -> Result<crate::model::webauthn::WebAuthnConfig, ServiceError> {
    use crate::model::webauthn::{UserVerification, WebAuthnConfig, MAX_ALLOWED_AAGUIDS};
    if t.allowed_aaguids.len() > MAX_ALLOWED_AAGUIDS {
        return Err(ServiceError::invalid(format!(
            "web_authn_configuration.allowed_aaguids: at most {MAX_ALLOWED_AAGUIDS}"
        )));
    }
    let c = WebAuthnConfig {
        relying_party_id: t.relying_party_id.clone(),
        user_verification: UserVerification::parse("web_authn_configuration.user_verification", &t.user_verification)?,
        require_attestation: t.require_attestation,
        allowed_aaguids: t.allowed_aaguids.iter().map(|a| a.to_ascii_lowercase()).collect(),
        challenge_validity_secs: u32::try_from(t.challenge_validity_seconds).map_err(|_| {
            ServiceError::invalid("web_authn_configuration.challenge_validity_seconds: must not be negative")
        })?,
        passkey_mfa: t.passkey_mfa,
    };
    c.validate()?;
    Ok(c)
}

/// `WebAuthnConfigurationType` of a pool's passkey setting.
fn web_authn_view(c: &crate::model::webauthn::WebAuthnConfig) -> WebAuthnConfigurationType {
    WebAuthnConfigurationType {
        relying_party_id: c.relying_party_id.clone(),
        user_verification: c.user_verification.as_cognito().into(),
        require_attestation: c.require_attestation,
        allowed_aaguids: c.allowed_aaguids.clone(),
        challenge_validity_seconds: i32::try_from(c.challenge_secs()).unwrap_or(i32::MAX),
        passkey_mfa: c.passkey_mfa,
    }
}

/// The response fields of a pool's MFA setting.
fn mfa_config_view(
    c: &crate::model::mfa::PoolMfaConfig,
) -> (
    Option<SmsMfaConfigType>,
    Option<SoftwareTokenMfaConfigType>,
    String,
    Option<EmailMfaConfigType>,
    i32,
) {
    (
        c.sms_enabled.then(|| SmsMfaConfigType {
            sms_authentication_message: c.sms_message.clone(),
        }),
        Some(SoftwareTokenMfaConfigType {
            enabled: c.software_token_enabled,
        }),
        c.mfa_configuration.as_cognito().into(),
        c.email_enabled.then(|| EmailMfaConfigType {
            message: c.email_message.clone(),
            subject: c.email_subject.clone(),
        }),
        i32::try_from(c.session_validity_secs).unwrap_or(i32::MAX),
    )
}

/// The wire form of a key summary (never a secret).
fn admin_access_key_type(k: crate::service::admin_keys::AdminKeySummary) -> AdminAccessKeyType {
    AdminAccessKeyType {
        access_key_id: k.key_id,
        description: k.description,
        create_date: k.created_at,
    }
}
