//! Conversions between the protobuf messages of `tessera.v1.Admin` and the
//! domain types, with validation of every enumerated string.

use std::collections::BTreeMap;

use crate::command::PoolUpdate;
use crate::model::app_client::TimeUnit;
use crate::model::outbox::{MessageContent, OutboxMessage};
use crate::model::pool::UserPool;
use crate::model::pool_settings::{
    Argon2Params, AttributeSchema, AttributeType, PasswordPolicy, PoolSettings, SignInAlias, TokenValidity,
    STANDARD_ATTRIBUTES,
};
use crate::model::user::User;
use crate::proto::*;
use crate::service::clients::{ClientSpec, ClientView};
use crate::service::ServiceError;

/// Most entries in a repeated field of an admin request.
const MAX_LIST: usize = 100;

fn bounded<T>(field: &str, v: &[T]) -> Result<(), ServiceError> {
    if v.len() > MAX_LIST {
        return Err(ServiceError::invalid(format!("{field}: at most {MAX_LIST} entries")));
    }
    Ok(())
}

/// Parses Cognito's `DeletionProtection` (`ACTIVE`, `INACTIVE`); empty is `None`, left to the caller (off on create, unchanged on update).
pub fn deletion_protection(value: &str) -> Result<Option<bool>, ServiceError> {
    match value {
        "" => Ok(None),
        "INACTIVE" => Ok(Some(false)),
        "ACTIVE" => Ok(Some(true)),
        other => Err(ServiceError::invalid(format!(
            "deletion_protection: {other:?} is not ACTIVE or INACTIVE"
        ))),
    }
}

fn alias(field: &str, s: &str) -> Result<SignInAlias, ServiceError> {
    match s {
        "email" => Ok(SignInAlias::Email),
        "phone_number" => Ok(SignInAlias::PhoneNumber),
        other => Err(ServiceError::invalid(format!(
            "{field}: {other:?} is not supported; use email or phone_number"
        ))),
    }
}

fn aliases(field: &str, v: &[String]) -> Result<Vec<SignInAlias>, ServiceError> {
    bounded(field, v)?;
    let mut out: Vec<SignInAlias> = v.iter().map(|s| alias(field, s)).collect::<Result<_, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

fn password_policy(p: &PasswordPolicyType) -> Result<PasswordPolicy, ServiceError> {
    let num = |field: &str, v: i32, default: u32| -> Result<u32, ServiceError> {
        match v {
            0 => Ok(default),
            v => u32::try_from(v).map_err(|_| ServiceError::invalid(format!("{field}: must not be negative"))),
        }
    };
    let d = PasswordPolicy::default();
    let policy = PasswordPolicy {
        minimum_length: num("minimum_length", p.minimum_length, d.minimum_length)?,
        require_lowercase: p.require_lowercase,
        require_uppercase: p.require_uppercase,
        require_numbers: p.require_numbers,
        require_symbols: p.require_symbols,
        temporary_password_validity_days: num(
            "temporary_password_validity_days",
            p.temporary_password_validity_days,
            d.temporary_password_validity_days,
        )?,
    };
    policy.validate()?;
    Ok(policy)
}

fn token_validity(t: &TokenValidityType) -> Result<TokenValidity, ServiceError> {
    let units = t.token_validity_units.clone().unwrap_or_default();
    let d = TokenValidity::default();
    let one = |field: &'static str, v: i32, unit: &str, default_unit: TimeUnit, default: u32| {
        let unit = TimeUnit::parse(unit, default_unit)?;
        match v {
            0 => Ok(default),
            v if v > 0 => u32::try_from(i64::from(v) * i64::from(unit.seconds()))
                .map_err(|_| ServiceError::invalid(format!("{field}: too large"))),
            _ => Err(ServiceError::invalid(format!("{field}: must not be negative"))),
        }
    };
    let tv = TokenValidity {
        access_token_secs: one(
            "access_token_validity",
            t.access_token_validity,
            &units.access_token,
            TimeUnit::Hours,
            d.access_token_secs,
        )?,
        id_token_secs: one(
            "id_token_validity",
            t.id_token_validity,
            &units.id_token,
            TimeUnit::Hours,
            d.id_token_secs,
        )?,
        refresh_token_secs: one(
            "refresh_token_validity",
            t.refresh_token_validity,
            &units.refresh_token,
            TimeUnit::Days,
            d.refresh_token_secs,
        )?,
    };
    tv.validate()?;
    Ok(tv)
}

fn argon2(p: &PasswordHashingType) -> Argon2Params {
    let d = Argon2Params::default();
    let or = |v: u32, d: u32| if v == 0 { d } else { v };
    Argon2Params {
        m_kib: or(p.memory_kib, d.m_kib),
        t: or(p.iterations, d.t),
        p: or(p.parallelism, d.p),
    }
}

fn attribute_type(s: &str) -> Result<AttributeType, ServiceError> {
    match s {
        "" | "String" => Ok(AttributeType::String),
        "Number" => Ok(AttributeType::Number),
        "Boolean" => Ok(AttributeType::Boolean),
        "DateTime" => Ok(AttributeType::DateTime),
        other => Err(ServiceError::invalid(format!(
            "schema.attribute_data_type: {other:?} is not String, Number, DateTime or Boolean"
        ))),
    }
}

fn attribute_type_name(t: AttributeType) -> &'static str {
    match t {
        AttributeType::String => "String",
        AttributeType::Number => "Number",
        AttributeType::Boolean => "Boolean",
        AttributeType::DateTime => "DateTime",
    }
}

/// Settings for `CreateUserPool`: Cognito's defaults for what is absent.
pub fn pool_settings(r: &CreateUserPoolRequest) -> Result<PoolSettings, ServiceError> {
    let mut s = PoolSettings::default();
    if let Some(p) = r.policies.as_ref().and_then(|p| p.password_policy.as_ref()) {
        s.password_policy = password_policy(p)?;
    }
    s.alias_attributes = aliases("alias_attributes", &r.alias_attributes)?;
    if !r.auto_verified_attributes.is_empty() {
        s.auto_verified_attributes = aliases("auto_verified_attributes", &r.auto_verified_attributes)?;
    }
    if let Some(u) = &r.username_configuration {
        s.username_case_sensitive = u.case_sensitive;
    }
    bounded("schema", &r.schema)?;
    for a in &r.schema {
        let standard = STANDARD_ATTRIBUTES.iter().find(|(n, _)| *n == a.name);
        let name = match standard {
            Some(_) => a.name.clone(),
            None if a.name.starts_with("custom:") => a.name.clone(),
            None => format!("custom:{}", a.name),
        };
        let data_type = attribute_type(&a.attribute_data_type)?;
        if let Some((_, t)) = standard {
            if *t != data_type && !a.attribute_data_type.is_empty() {
                return Err(ServiceError::invalid(format!(
                    "schema: {} is a standard attribute of type {}",
                    a.name,
                    attribute_type_name(*t)
                )));
            }
        }
        let max_length = match a.string_attribute_constraints.as_ref().map(|c| c.max_length.as_str()) {
            None | Some("") => 2048,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=2048).contains(n))
                .ok_or_else(|| ServiceError::invalid(format!("schema: {name} max_length must be 1 to 2048")))?,
        };
        if a.indexed && standard.is_some() {
            return Err(ServiceError::invalid(format!(
                "schema: {name} is a standard attribute; only custom attributes take `indexed` (the standard ones ListUsers filters on are always indexed)"
            )));
        }
        s.schema.insert(
            name,
            AttributeSchema {
                attribute_type: standard.map(|(_, t)| *t).unwrap_or(data_type),
                mutable: a.mutable,
                required: a.required,
                max_length,
                indexed: a.indexed,
            },
        );
    }
    if let Some(t) = &r.default_token_validity {
        s.token_validity = token_validity(t)?;
    }
    if let Some(h) = &r.password_hashing {
        s.argon2 = argon2(h);
    }
    s.attributes_require_verification_before_update = match &r.user_attribute_update_settings {
        Some(u) => aliases(
            "attributes_require_verification_before_update",
            &u.attributes_require_verification_before_update,
        )?,
        None => s.auto_verified_attributes.clone(),
    };
    s.validate()?;
    Ok(s)
}

/// The changes an `UpdateUserPool` asks for.
pub fn pool_update(r: &UpdateUserPoolRequest) -> Result<PoolUpdate, ServiceError> {
    Ok(PoolUpdate {
        password_policy: r
            .policies
            .as_ref()
            .and_then(|p| p.password_policy.as_ref())
            .map(password_policy)
            .transpose()?,
        auto_verified_attributes: if r.update_auto_verified_attributes {
            Some(aliases("auto_verified_attributes", &r.auto_verified_attributes)?)
        } else {
            None
        },
        token_validity: r.default_token_validity.as_ref().map(token_validity).transpose()?,
        argon2: r.password_hashing.as_ref().map(argon2),
        deletion_protection: deletion_protection(&r.deletion_protection)?,
        attributes_require_verification_before_update: r
            .user_attribute_update_settings
            .as_ref()
            .map(|u| {
                aliases(
                    "attributes_require_verification_before_update",
                    &u.attributes_require_verification_before_update,
                )
            })
            .transpose()?,
        modified_at: 0,
    })
}

/// The `SignInPolicy` a `CreateUserPool` / `UpdateUserPool` request sets,
/// if it sets one.
pub fn sign_in_policy_of(
    policies: Option<&UserPoolPolicyType>,
) -> Result<Option<crate::model::passwordless::SignInPolicy>, ServiceError> {
    let Some(p) = policies.and_then(|p| p.sign_in_policy.as_ref()) else {
        return Ok(None);
    };
    let secs = u32::try_from(p.magic_link_validity_seconds)
        .map_err(|_| ServiceError::invalid("sign_in_policy.magic_link_validity_seconds: must not be negative"))?;
    Ok(Some(crate::model::passwordless::SignInPolicy::from_names(
        p.allowed_first_auth_factors.iter().map(String::as_str),
        secs,
    )?))
}

/// The wire form of a pool's `SignInPolicy`.
pub fn sign_in_policy_type(p: &crate::model::passwordless::SignInPolicy) -> SignInPolicyType {
    SignInPolicyType {
        allowed_first_auth_factors: p
            .allowed_first_auth_factors
            .iter()
            .map(|f| f.as_cognito().to_string())
            .collect(),
        magic_link_validity_seconds: i32::try_from(p.magic_link_validity_secs).unwrap_or(i32::MAX),
    }
}

/// The wire form of a pool.
pub fn pool_type(p: UserPool, users: i64) -> UserPoolType {
    let s = &p.settings;
    let pp = &s.password_policy;
    let names = |v: &[SignInAlias]| v.iter().map(|a| a.attribute().to_string()).collect::<Vec<_>>();
    UserPoolType {
        // Set by the admin API, which knows the configured account id.
        arn: String::new(),
        id: p.id.clone(),
        name: p.name.clone(),
        creation_date: p.creation_date,
        last_modified_date: p.last_modified_date,
        deletion_protection: if p.deletion_protection { "ACTIVE" } else { "INACTIVE" }.into(),
        policies: Some(UserPoolPolicyType {
            password_policy: Some(PasswordPolicyType {
                minimum_length: pp.minimum_length as i32,
                require_uppercase: pp.require_uppercase,
                require_lowercase: pp.require_lowercase,
                require_numbers: pp.require_numbers,
                require_symbols: pp.require_symbols,
                temporary_password_validity_days: pp.temporary_password_validity_days as i32,
            }),
            sign_in_policy: None,
        }),
        alias_attributes: names(&s.alias_attributes),
        auto_verified_attributes: names(&s.auto_verified_attributes),
        username_configuration: Some(UsernameConfigurationType {
            case_sensitive: s.username_case_sensitive,
        }),
        schema_attributes: s
            .schema
            .iter()
            .map(|(name, a)| SchemaAttributeType {
                name: name.clone(),
                attribute_data_type: attribute_type_name(a.attribute_type).into(),
                mutable: a.mutable,
                required: a.required,
                string_attribute_constraints: Some(StringAttributeConstraintsType {
                    min_length: "0".into(),
                    max_length: a.max_length.to_string(),
                }),
                indexed: a.indexed,
            })
            .collect(),
        default_token_validity: Some(TokenValidityType {
            access_token_validity: s.token_validity.access_token_secs as i32,
            id_token_validity: s.token_validity.id_token_secs as i32,
            refresh_token_validity: s.token_validity.refresh_token_secs as i32,
            token_validity_units: Some(TokenValidityUnitsType {
                access_token: "seconds".into(),
                id_token: "seconds".into(),
                refresh_token: "seconds".into(),
            }),
        }),
        password_hashing: Some(PasswordHashingType {
            memory_kib: s.argon2.m_kib,
            iterations: s.argon2.t,
            parallelism: s.argon2.p,
        }),
        estimated_number_of_users: users,
        user_attribute_update_settings: Some(UserAttributeUpdateSettingsType {
            attributes_require_verification_before_update: names(&s.attributes_require_verification_before_update),
        }),
        // Stored apart from the settings; `AdminApi::pool_type` adds them.
        lambda_config: None,
        srp_enabled: false,
        device_configuration: None,
    }
}

/// The settings of a create or update client request.
#[allow(clippy::too_many_arguments)]
pub fn client_spec(
    client_name: &str,
    access: i32,
    id: i32,
    refresh: i32,
    units: Option<&TokenValidityUnitsType>,
    read: &[String],
    write: &[String],
    flows: &[String],
    prevent: &str,
    revocation: Option<bool>,
) -> Result<ClientSpec, ServiceError> {
    bounded("read_attributes", read)?;
    bounded("write_attributes", write)?;
    bounded("explicit_auth_flows", flows)?;
    let units = units.cloned().unwrap_or_default();
    Ok(ClientSpec {
        client_name: client_name.to_string(),
        access_token_validity: access,
        id_token_validity: id,
        refresh_token_validity: refresh,
        access_unit: units.access_token,
        id_unit: units.id_token,
        refresh_unit: units.refresh_token,
        read_attributes: read.to_vec(),
        write_attributes: write.to_vec(),
        explicit_auth_flows: flows.to_vec(),
        prevent_user_existence_errors: prevent.to_string(),
        enable_token_revocation: revocation,
        ..ClientSpec::default()
    })
}

/// The wire form of an app client, with its secret where the view has it.
pub fn client_type(view: ClientView) -> UserPoolClientType {
    let ClientView {
        client: c,
        secret,
        oauth,
    } = view;
    let u = c.validity_units;
    let tv = c.token_validity;
    UserPoolClientType {
        user_pool_id: c.pool_id,
        client_name: c.client_name,
        client_id: c.client_id,
        client_secret: secret.unwrap_or_default(),
        creation_date: c.creation_date,
        last_modified_date: c.last_modified_date,
        refresh_token_validity: (tv.refresh_token_secs / u.refresh.seconds()) as i32,
        access_token_validity: (tv.access_token_secs / u.access.seconds()) as i32,
        id_token_validity: (tv.id_token_secs / u.id.seconds()) as i32,
        token_validity_units: Some(TokenValidityUnitsType {
            access_token: u.access.as_cognito().into(),
            id_token: u.id.as_cognito().into(),
            refresh_token: u.refresh.as_cognito().into(),
        }),
        read_attributes: c.read_attributes.map(|s| s.into_iter().collect()).unwrap_or_default(),
        write_attributes: c.write_attributes.map(|s| s.into_iter().collect()).unwrap_or_default(),
        explicit_auth_flows: c.auth_flows.iter().map(|f| f.as_cognito().to_string()).collect(),
        prevent_user_existence_errors: if c.prevent_user_existence_errors {
            "ENABLED"
        } else {
            "LEGACY"
        }
        .into(),
        enable_token_revocation: c.enable_token_revocation,
        allowed_oauth_flows: oauth.flows.iter().map(|f| f.as_cognito().to_string()).collect(),
        allowed_oauth_scopes: oauth.scopes.into_iter().collect(),
        allowed_oauth_flows_user_pool_client: oauth.enabled,
        callback_urls: oauth.callback_urls.into_iter().collect(),
        logout_urls: oauth.logout_urls.into_iter().collect(),
        default_redirect_uri: oauth.default_redirect_uri.unwrap_or_default(),
        supported_identity_providers: oauth.identity_providers.into_iter().collect(),
    }
}

/// The OAuth fields of a create or update client request.
pub struct ClientOAuthInput<'a> {
    /// `AllowedOAuthFlowsUserPoolClient`.
    pub user_pool_client: bool,
    /// `AllowedOAuthFlows`.
    pub flows: &'a [String],
    /// `AllowedOAuthScopes`.
    pub scopes: &'a [String],
    /// `CallbackURLs`.
    pub callback_urls: &'a [String],
    /// `LogoutURLs`.
    pub logout_urls: &'a [String],
    /// `DefaultRedirectURI`.
    pub default_redirect_uri: &'a str,
    /// `SupportedIdentityProviders`.
    pub identity_providers: &'a [String],
}

/// `spec` with the request's OAuth settings.
pub fn with_oauth(mut spec: ClientSpec, o: ClientOAuthInput<'_>) -> Result<ClientSpec, ServiceError> {
    bounded("allowed_oauth_flows", o.flows)?;
    bounded("allowed_oauth_scopes", o.scopes)?;
    bounded("callback_urls", o.callback_urls)?;
    bounded("logout_urls", o.logout_urls)?;
    bounded("supported_identity_providers", o.identity_providers)?;
    spec.allowed_oauth_flows_user_pool_client = o.user_pool_client;
    spec.allowed_oauth_flows = o.flows.to_vec();
    spec.allowed_oauth_scopes = o.scopes.to_vec();
    spec.callback_urls = o.callback_urls.to_vec();
    spec.logout_urls = o.logout_urls.to_vec();
    spec.default_redirect_uri = o.default_redirect_uri.to_string();
    spec.supported_identity_providers = o.identity_providers.to_vec();
    Ok(spec)
}

/// A request's scopes as `(name, description)` pairs, bounded.
pub fn resource_server_scopes(scopes: Vec<ResourceServerScopeType>) -> Result<Vec<(String, String)>, ServiceError> {
    if scopes.len() > crate::model::resource_server::MAX_SCOPES_PER_SERVER {
        return Err(ServiceError::invalid(format!(
            "scopes: at most {} per resource server",
            crate::model::resource_server::MAX_SCOPES_PER_SERVER
        )));
    }
    Ok(scopes
        .into_iter()
        .map(|s| (s.scope_name, s.scope_description))
        .collect())
}

/// The wire form of a resource server.
pub fn resource_server_response(s: crate::model::resource_server::ResourceServer) -> ResourceServerResponse {
    ResourceServerResponse {
        resource_server: Some(ResourceServerType {
            user_pool_id: s.pool_id,
            identifier: s.identifier,
            name: s.name,
            scopes: s
                .scopes
                .into_iter()
                .map(|s| ResourceServerScopeType {
                    scope_name: s.name,
                    scope_description: s.description,
                })
                .collect(),
        }),
    }
}

/// Attributes from a request, as a map; duplicates and oversize lists are
/// refused.
pub fn attributes(field: &str, v: &[AttributeValue]) -> Result<BTreeMap<String, String>, ServiceError> {
    bounded(field, v)?;
    let mut out = BTreeMap::new();
    for a in v {
        if out.insert(a.name.clone(), a.value.clone()).is_some() {
            return Err(ServiceError::invalid(format!("{field}: {} appears twice", a.name)));
        }
    }
    Ok(out)
}

/// A user's attributes as Cognito lists them: `sub` first, then the
/// stored attributes and the verification flags.
pub fn user_attributes(u: &User) -> Vec<AttributeValue> {
    let mut out = vec![AttributeValue {
        name: "sub".into(),
        value: u.sub.clone(),
    }];
    for (k, v) in &u.attributes {
        out.push(AttributeValue {
            name: k.clone(),
            value: v.clone(),
        });
    }
    if u.attributes.contains_key("email") {
        out.push(AttributeValue {
            name: "email_verified".into(),
            value: u.email_verified.to_string(),
        });
    }
    if u.attributes.contains_key("phone_number") {
        out.push(AttributeValue {
            name: "phone_number_verified".into(),
            value: u.phone_number_verified.to_string(),
        });
    }
    out
}

/// The Cognito `UserType` of a user: attributes with `sub` and the verification flags, never the password hash.
pub fn user_type(u: &User) -> UserType {
    UserType {
        username: u.username.clone(),
        attributes: user_attributes(u),
        user_create_date: u.created_at,
        user_last_modified_date: u.modified_at,
        enabled: u.enabled,
        user_status: u.status.as_cognito().into(),
    }
}

/// The wire form of an outbox message, with its opened body and code
/// while it still has them.
pub fn outbox_message(m: OutboxMessage, content: Option<MessageContent>) -> OutboxMessageType {
    let content = content.unwrap_or_default();
    OutboxMessageType {
        id: m.id,
        user_pool_id: m.draft.pool_id,
        username: m.draft.username,
        delivery_medium: m.draft.medium.as_cognito().into(),
        destination: m.draft.destination,
        kind: m.draft.kind.as_str().into(),
        subject: m.draft.subject,
        body: content.body,
        code: content.code,
        created_at: m.draft.created_at,
        status: m.status.as_str().into(),
        attempts: m.attempts,
    }
}

/// The wire form of a group.
pub fn group_type(g: crate::model::group::Group) -> GroupType {
    GroupType {
        group_name: g.name,
        user_pool_id: g.pool_id,
        description: g.description,
        role_arn: g.role_arn,
        precedence: g.precedence,
        last_modified_date: g.modified_at,
        creation_date: g.created_at,
        permissions: g.permissions,
    }
}

/// The wire form of an audit event.
pub fn auth_event_type(e: crate::model::auth_event::AuthEvent) -> AuthEventType {
    AuthEventType {
        event_id: e.id.to_string(),
        event_type: e.event_type.as_str().into(),
        creation_date: e.at,
        event_response: if e.pass { "Pass" } else { "Fail" }.into(),
        event_context_data: Some(EventContextDataType { ip_address: e.ip }),
        username: e.username,
        sub: e.sub,
        client_id: e.client_id,
        detail: e.detail,
    }
}
