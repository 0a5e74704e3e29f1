//! `tessera.v1.Identity`: identity pools, identities, roles, credentials
//! and decisions. Admin methods sit behind `AdminAuthLayer`; the public
//! ones ([`PUBLIC_METHODS`]) authenticate by the logins and credentials
//! they carry.

use std::collections::BTreeMap;

use tonic::{Request, Response, Status};

use crate::model::identity::Identity;
use crate::model::identity_pool as m;
use crate::model::role::{role_arn, role_name_of, Role};
use crate::proto::identity_server::Identity as IdentityRpc;
use crate::proto::*;
use crate::service::identity::IdentityService;
use crate::service::ServiceError;

/// The methods callers reach without the admin token (full paths).
pub const PUBLIC_METHODS: &[&str] = &[
    "/tessera.v1.Identity/GetId",
    "/tessera.v1.Identity/GetCredentialsForIdentity",
    "/tessera.v1.Identity/GetOpenIdToken",
    "/tessera.v1.Identity/UnlinkIdentity",
    "/tessera.v1.Identity/Authorize",
];

/// The Identity service adapter.
pub struct IdentityApi {
    /// Where every call goes.
    pub identity: IdentityService,
}

fn role_arn_or_none(field: &'static str, arn: &str) -> Result<Option<String>, ServiceError> {
    match arn {
        "" => Ok(None),
        a => role_name_of(a)
            .map(|n| Some(n.to_string()))
            .map_err(|e| ServiceError::invalid(format!("{field}: {}", e.reason))),
    }
}

/// A pool's settings from the request fields (ids and dates are the
/// service's to set).
#[allow(clippy::too_many_arguments, reason = "Cognito's flat request shape")]
fn settings(
    id: String,
    name: String,
    allow_unauthenticated: bool,
    allow_classic_flow: bool,
    supported_login_providers: BTreeMap<String, String>,
    developer_provider_name: String,
    cognito: Vec<CognitoIdentityProvider>,
    tags: BTreeMap<String, String>,
    oidc: Vec<OpenIdConnectProvider>,
) -> Result<m::IdentityPool, ServiceError> {
    if cognito.len() > m::MAX_PROVIDERS || oidc.len() > m::MAX_PROVIDERS {
        return Err(ServiceError::invalid(format!(
            "at most {} providers of each kind",
            m::MAX_PROVIDERS
        )));
    }
    Ok(m::IdentityPool {
        id,
        name,
        allow_unauthenticated,
        allow_classic_flow,
        supported_login_providers,
        developer_provider_name,
        cognito_providers: cognito
            .into_iter()
            .map(|c| m::CognitoProvider {
                provider_name: m::strip_scheme(&c.provider_name).to_string(),
                client_id: c.client_id,
                server_side_token_check: c.server_side_token_check,
            })
            .collect(),
        oidc_providers: oidc
            .into_iter()
            .map(|o| {
                let name = m::strip_scheme(&o.provider_name).to_string();
                m::OidcProviderConfig {
                    issuer: match o.issuer.as_str() {
                        "" => format!("https://{name}"),
                        i => i.to_string(),
                    },
                    provider_name: name,
                    client_ids: o.client_ids,
                    jwks_uri: Some(o.jwks_uri).filter(|s| !s.is_empty()),
                    discovery_url: Some(o.discovery_url).filter(|s| !s.is_empty()),
                }
            })
            .collect(),
        tags,
        roles: Default::default(),
        role_mappings: BTreeMap::new(),
        creation_date: 0,
        last_modified_date: 0,
    })
}

/// The proto shape of a pool.
pub fn pool_out(p: m::IdentityPool) -> IdentityPool {
    IdentityPool {
        open_id_connect_provider_arns: p.oidc_providers.iter().map(|o| o.provider_name.clone()).collect(),
        identity_pool_id: p.id,
        identity_pool_name: p.name,
        allow_unauthenticated_identities: p.allow_unauthenticated,
        allow_classic_flow: p.allow_classic_flow,
        supported_login_providers: p.supported_login_providers,
        developer_provider_name: p.developer_provider_name,
        cognito_identity_providers: p
            .cognito_providers
            .into_iter()
            .map(|c| CognitoIdentityProvider {
                provider_name: c.provider_name,
                client_id: c.client_id,
                server_side_token_check: c.server_side_token_check,
            })
            .collect(),
        identity_pool_tags: p.tags,
        open_id_connect_providers: p
            .oidc_providers
            .into_iter()
            .map(|o| OpenIdConnectProvider {
                provider_name: o.provider_name,
                issuer: o.issuer,
                client_ids: o.client_ids,
                jwks_uri: o.jwks_uri.unwrap_or_default(),
                discovery_url: o.discovery_url.unwrap_or_default(),
            })
            .collect(),
        creation_date: p.creation_date / 1000,
        last_modified_date: p.last_modified_date / 1000,
    }
}

fn identity_out(i: Identity) -> IdentityDescription {
    IdentityDescription {
        logins: i.provider_names(),
        identity_id: i.id,
        creation_date: i.creation_date / 1000,
        last_modified_date: i.last_modified_date / 1000,
        disabled: i.merged_into.is_some(),
        merged_into: i.merged_into.unwrap_or_default(),
    }
}

fn role_out(r: Role) -> RoleType {
    RoleType {
        role_arn: r.arn(),
        role_name: r.name,
        description: r.description,
        policy_document: r.policy_document,
        create_date: r.create_date / 1000,
        last_modified_date: r.last_modified_date / 1000,
    }
}

fn mapping_in(provider: &str, r: RoleMapping) -> Result<m::RoleMapping, ServiceError> {
    let ambiguous = match r.ambiguous_role_resolution.as_str() {
        "" => m::AmbiguousRoleResolution::AuthenticatedRole,
        s => m::AmbiguousRoleResolution::parse(s)
            .map_err(|e| ServiceError::invalid(format!("role_mappings[{provider}].{e}")))?,
    };
    let kind = match r.r#type.as_str() {
        "Token" => m::RoleMappingKind::Token,
        "Rules" => {
            let rules = r.rules_configuration.map(|c| c.rules).unwrap_or_default();
            if rules.is_empty() || rules.len() > m::MAX_RULES {
                return Err(ServiceError::invalid(format!(
                    "role_mappings[{provider}].rules_configuration: 1 to {} rules",
                    m::MAX_RULES
                )));
            }
            let mut out = Vec::with_capacity(rules.len());
            for rule in rules {
                out.push(m::MappingRule {
                    match_type: m::MatchType::parse(&rule.match_type)
                        .map_err(|e| ServiceError::invalid(format!("role_mappings[{provider}].rules.{e}")))?,
                    role: role_arn_or_none("role_mappings.rules.role_arn", &rule.role_arn)?
                        .ok_or_else(|| ServiceError::invalid("role_mappings.rules.role_arn: required"))?,
                    claim: rule.claim,
                    value: rule.value,
                });
            }
            m::RoleMappingKind::Rules(out)
        }
        other => {
            return Err(ServiceError::invalid(format!(
                "role_mappings[{provider}].type: {other:?}; use Token or Rules"
            )))
        }
    };
    Ok(m::RoleMapping {
        kind,
        ambiguous_role_resolution: ambiguous,
    })
}

fn mapping_out(r: &m::RoleMapping) -> RoleMapping {
    let (kind, rules) = match &r.kind {
        m::RoleMappingKind::Token => ("Token", None),
        m::RoleMappingKind::Rules(rules) => (
            "Rules",
            Some(RulesConfigurationType {
                rules: rules
                    .iter()
                    .map(|x| MappingRule {
                        claim: x.claim.clone(),
                        match_type: x.match_type.as_str().into(),
                        value: x.value.clone(),
                        role_arn: role_arn(&x.role),
                    })
                    .collect(),
            }),
        ),
    };
    RoleMapping {
        r#type: kind.into(),
        ambiguous_role_resolution: r.ambiguous_role_resolution.as_str().into(),
        rules_configuration: rules,
    }
}

fn roles_out(p: &m::IdentityPool) -> BTreeMap<String, String> {
    let mut roles = BTreeMap::new();
    if let Some(r) = &p.roles.authenticated {
        roles.insert("authenticated".into(), role_arn(r));
    }
    if let Some(r) = &p.roles.unauthenticated {
        roles.insert("unauthenticated".into(), role_arn(r));
    }
    roles
}

fn some(s: Option<String>) -> String {
    s.unwrap_or_default()
}

#[tonic::async_trait]
impl IdentityRpc for IdentityApi {
    async fn create_identity_pool(
        &self,
        req: Request<CreateIdentityPoolRequest>,
    ) -> Result<Response<IdentityPool>, Status> {
        let r = req.into_inner();
        let s = settings(
            String::new(),
            r.identity_pool_name,
            r.allow_unauthenticated_identities,
            r.allow_classic_flow,
            r.supported_login_providers,
            r.developer_provider_name,
            r.cognito_identity_providers,
            r.identity_pool_tags,
            r.open_id_connect_providers,
        )?;
        let p = self.identity.create_pool(s).await?;
        Ok(Response::new(pool_out(p)))
    }

    async fn describe_identity_pool(
        &self,
        req: Request<DescribeIdentityPoolRequest>,
    ) -> Result<Response<IdentityPool>, Status> {
        let p = self
            .identity
            .describe_pool(&req.into_inner().identity_pool_id, true)
            .await?;
        Ok(Response::new(pool_out(p)))
    }

    async fn update_identity_pool(&self, req: Request<IdentityPool>) -> Result<Response<IdentityPool>, Status> {
        let r = req.into_inner();
        m::validate_identity_id("identity_pool_id", &r.identity_pool_id).map_err(ServiceError::from)?;
        let s = settings(
            r.identity_pool_id,
            r.identity_pool_name,
            r.allow_unauthenticated_identities,
            r.allow_classic_flow,
            r.supported_login_providers,
            r.developer_provider_name,
            r.cognito_identity_providers,
            r.identity_pool_tags,
            r.open_id_connect_providers,
        )?;
        let p = self.identity.update_pool(s).await?;
        Ok(Response::new(pool_out(p)))
    }

    async fn delete_identity_pool(
        &self,
        req: Request<DeleteIdentityPoolRequest>,
    ) -> Result<Response<DeleteIdentityPoolResponse>, Status> {
        self.identity.delete_pool(&req.into_inner().identity_pool_id).await?;
        Ok(Response::new(DeleteIdentityPoolResponse {}))
    }

    async fn list_identity_pools(
        &self,
        req: Request<ListIdentityPoolsRequest>,
    ) -> Result<Response<ListIdentityPoolsResponse>, Status> {
        let r = req.into_inner();
        let (pools, next) = self.identity.list_pools(r.max_results, &r.next_token).await?;
        Ok(Response::new(ListIdentityPoolsResponse {
            identity_pools: pools
                .into_iter()
                .map(|p| IdentityPoolShortDescription {
                    identity_pool_id: p.id,
                    identity_pool_name: p.name,
                })
                .collect(),
            next_token: some(next),
        }))
    }

    async fn set_identity_pool_roles(
        &self,
        req: Request<SetIdentityPoolRolesRequest>,
    ) -> Result<Response<SetIdentityPoolRolesResponse>, Status> {
        let r = req.into_inner();
        let mut roles = m::PoolRoles::default();
        for (k, v) in &r.roles {
            match k.as_str() {
                "authenticated" => roles.authenticated = role_arn_or_none("roles.authenticated", v)?,
                "unauthenticated" => roles.unauthenticated = role_arn_or_none("roles.unauthenticated", v)?,
                other => {
                    return Err(ServiceError::invalid(format!(
                        "roles: {other:?}; the keys are authenticated and unauthenticated"
                    ))
                    .into())
                }
            }
        }
        if r.role_mappings.len() > m::MAX_ROLE_MAPPINGS {
            return Err(ServiceError::invalid(format!("role_mappings: at most {}", m::MAX_ROLE_MAPPINGS)).into());
        }
        let mut mappings = BTreeMap::new();
        for (provider, mapping) in r.role_mappings {
            let name = m::strip_scheme(&provider).to_string();
            mappings.insert(name, mapping_in(&provider, mapping)?);
        }
        self.identity.set_roles(&r.identity_pool_id, roles, mappings).await?;
        Ok(Response::new(SetIdentityPoolRolesResponse {}))
    }

    async fn get_identity_pool_roles(
        &self,
        req: Request<GetIdentityPoolRolesRequest>,
    ) -> Result<Response<GetIdentityPoolRolesResponse>, Status> {
        let p = self
            .identity
            .describe_pool(&req.into_inner().identity_pool_id, true)
            .await?;
        Ok(Response::new(GetIdentityPoolRolesResponse {
            roles: roles_out(&p),
            role_mappings: p
                .role_mappings
                .iter()
                .map(|(k, v)| (k.clone(), mapping_out(v)))
                .collect(),
            identity_pool_id: p.id,
        }))
    }

    async fn list_identities(
        &self,
        req: Request<ListIdentitiesRequest>,
    ) -> Result<Response<ListIdentitiesResponse>, Status> {
        let r = req.into_inner();
        let (ids, next) = self
            .identity
            .list_identities(&r.identity_pool_id, r.max_results, &r.next_token, r.hide_disabled)
            .await?;
        Ok(Response::new(ListIdentitiesResponse {
            identity_pool_id: r.identity_pool_id,
            identities: ids.into_iter().map(identity_out).collect(),
            next_token: some(next),
        }))
    }

    async fn describe_identity(
        &self,
        req: Request<DescribeIdentityRequest>,
    ) -> Result<Response<IdentityDescription>, Status> {
        let i = self.identity.describe_identity(&req.into_inner().identity_id).await?;
        Ok(Response::new(identity_out(i)))
    }

    async fn delete_identities(
        &self,
        req: Request<DeleteIdentitiesRequest>,
    ) -> Result<Response<DeleteIdentitiesResponse>, Status> {
        self.identity
            .delete_identities(&req.into_inner().identity_ids_to_delete)
            .await?;
        Ok(Response::new(DeleteIdentitiesResponse {
            unprocessed_identity_ids: Vec::new(),
        }))
    }

    #[tracing::instrument(skip_all, fields(identity_pool_id))]
    async fn get_id(&self, req: Request<GetIdRequest>) -> Result<Response<GetIdResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        tracing::Span::current().record("identity_pool_id", r.identity_pool_id.as_str());
        let identity_id = self.identity.get_id(&r.identity_pool_id, &r.logins, &origin).await?;
        Ok(Response::new(GetIdResponse { identity_id }))
    }

    #[tracing::instrument(skip_all, fields(identity_id))]
    async fn get_credentials_for_identity(
        &self,
        req: Request<GetCredentialsForIdentityRequest>,
    ) -> Result<Response<GetCredentialsForIdentityResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        tracing::Span::current().record("identity_id", r.identity_id.as_str());
        let c = self
            .identity
            .get_credentials(
                &r.identity_id,
                &r.logins,
                &r.custom_role_arn,
                r.duration_seconds,
                &origin,
            )
            .await?;
        Ok(Response::new(GetCredentialsForIdentityResponse {
            identity_id: c.identity_id,
            credentials: Some(Credentials {
                access_key_id: c.access_key_id,
                secret_key: c.secret_key,
                session_token: c.session_token,
                expiration: c.expiration,
            }),
        }))
    }

    async fn get_open_id_token(
        &self,
        req: Request<GetOpenIdTokenRequest>,
    ) -> Result<Response<GetOpenIdTokenResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        let (identity_id, token) = self
            .identity
            .get_open_id_token(&r.identity_id, &r.logins, &origin)
            .await?;
        Ok(Response::new(GetOpenIdTokenResponse { identity_id, token }))
    }

    async fn unlink_identity(
        &self,
        req: Request<UnlinkIdentityRequest>,
    ) -> Result<Response<UnlinkIdentityResponse>, Status> {
        let origin = super::origin(&req);
        let r = req.into_inner();
        self.identity
            .unlink_identity(&r.identity_id, &r.logins, &r.logins_to_remove, &origin)
            .await?;
        Ok(Response::new(UnlinkIdentityResponse {}))
    }

    async fn get_open_id_token_for_developer_identity(
        &self,
        req: Request<GetOpenIdTokenForDeveloperIdentityRequest>,
    ) -> Result<Response<GetOpenIdTokenForDeveloperIdentityResponse>, Status> {
        let r = req.into_inner();
        let (identity_id, token) = self
            .identity
            .get_open_id_token_for_developer_identity(
                &r.identity_pool_id,
                &r.identity_id,
                &r.logins,
                &r.principal_tags,
                r.token_duration,
            )
            .await?;
        Ok(Response::new(GetOpenIdTokenForDeveloperIdentityResponse {
            identity_id,
            token,
        }))
    }

    async fn lookup_developer_identity(
        &self,
        req: Request<LookupDeveloperIdentityRequest>,
    ) -> Result<Response<LookupDeveloperIdentityResponse>, Status> {
        let r = req.into_inner();
        let (identity_id, list, next) = self
            .identity
            .lookup_developer_identity(
                &r.identity_pool_id,
                &r.identity_id,
                &r.developer_user_identifier,
                r.max_results,
                &r.next_token,
            )
            .await?;
        Ok(Response::new(LookupDeveloperIdentityResponse {
            identity_id,
            developer_user_identifier_list: list,
            next_token: some(next),
        }))
    }

    async fn merge_developer_identities(
        &self,
        req: Request<MergeDeveloperIdentitiesRequest>,
    ) -> Result<Response<MergeDeveloperIdentitiesResponse>, Status> {
        let r = req.into_inner();
        let identity_id = self
            .identity
            .merge_developer_identities(
                &r.identity_pool_id,
                &r.developer_provider_name,
                &r.source_user_identifier,
                &r.destination_user_identifier,
            )
            .await?;
        Ok(Response::new(MergeDeveloperIdentitiesResponse { identity_id }))
    }

    async fn unlink_developer_identity(
        &self,
        req: Request<UnlinkDeveloperIdentityRequest>,
    ) -> Result<Response<UnlinkDeveloperIdentityResponse>, Status> {
        let r = req.into_inner();
        self.identity
            .unlink_developer_identity(
                &r.identity_id,
                &r.identity_pool_id,
                &r.developer_provider_name,
                &r.developer_user_identifier,
            )
            .await?;
        Ok(Response::new(UnlinkDeveloperIdentityResponse {}))
    }

    async fn create_role(&self, req: Request<CreateRoleRequest>) -> Result<Response<RoleResponse>, Status> {
        let r = req.into_inner();
        let role = self
            .identity
            .put_role(&r.role_name, &r.description, &r.policy_document, true)
            .await?;
        Ok(Response::new(RoleResponse {
            role: Some(role_out(role)),
        }))
    }

    async fn get_role(&self, req: Request<GetRoleRequest>) -> Result<Response<RoleResponse>, Status> {
        let role = self.identity.get_role(&req.into_inner().role_name).await?;
        Ok(Response::new(RoleResponse {
            role: Some(role_out(role)),
        }))
    }

    async fn update_role(&self, req: Request<UpdateRoleRequest>) -> Result<Response<RoleResponse>, Status> {
        let r = req.into_inner();
        let role = self
            .identity
            .put_role(&r.role_name, &r.description, &r.policy_document, false)
            .await?;
        Ok(Response::new(RoleResponse {
            role: Some(role_out(role)),
        }))
    }

    async fn delete_role(&self, req: Request<DeleteRoleRequest>) -> Result<Response<DeleteRoleResponse>, Status> {
        self.identity.delete_role(&req.into_inner().role_name).await?;
        Ok(Response::new(DeleteRoleResponse {}))
    }

    async fn list_roles(&self, req: Request<ListRolesRequest>) -> Result<Response<ListRolesResponse>, Status> {
        let r = req.into_inner();
        let (roles, next) = self.identity.list_roles(r.max_results, &r.next_token).await?;
        Ok(Response::new(ListRolesResponse {
            roles: roles.into_iter().map(role_out).collect(),
            next_token: some(next),
        }))
    }

    async fn admin_set_user_role(
        &self,
        req: Request<AdminSetUserRoleRequest>,
    ) -> Result<Response<AdminSetUserRoleResponse>, Status> {
        let r = req.into_inner();
        self.identity
            .set_user_role(&r.user_pool_id, &r.username, &r.role_arn)
            .await?;
        Ok(Response::new(AdminSetUserRoleResponse {}))
    }

    async fn admin_get_user_role(
        &self,
        req: Request<AdminGetUserRoleRequest>,
    ) -> Result<Response<AdminGetUserRoleResponse>, Status> {
        let r = req.into_inner();
        let role_arn = self.identity.get_user_role(&r.user_pool_id, &r.username).await?;
        Ok(Response::new(AdminGetUserRoleResponse { role_arn }))
    }

    async fn authorize(&self, req: Request<AuthorizeRequest>) -> Result<Response<AuthorizeResponse>, Status> {
        let r = req.into_inner();
        let a = self.identity.authorize(&r.credentials, &r.action, &r.resource).await?;
        Ok(Response::new(AuthorizeResponse {
            allowed: a.allowed,
            decision: a.decision.into(),
            statement_index: a.statement_index.map_or(-1, |i| i as i32),
            statement_sid: a.statement_sid.unwrap_or_default(),
            identity_id: a.identity_id,
            role_arn: a.role_arn,
        }))
    }
}
