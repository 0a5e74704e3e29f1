//! App-client administration: create, describe, update, delete, list.

use crate::command::{DeleteAppClient, PutAppClient};
use crate::model::oauth_client::{ClientOAuth, OAuthFlow};
use std::collections::BTreeSet;
use std::sync::Arc;

use super::cursor::{Cursors, Scope};
use super::ServiceError;
use crate::auth::sealing::{SealingCell, SealingKey};
use crate::command::{Outcome, Rejection};
use crate::model::app_client::{
    lower_alnum, validate_attribute_names, validate_client_id, validate_client_name, AppClient, AuthFlow, TimeUnit,
    ValidityUnits, CLIENT_ID_CHARS, CLIENT_SECRET_CHARS,
};
use crate::model::pool::{validate_pool_id, UserPool};
use crate::model::pool_settings::TokenValidity;
use crate::raft::RaftNode;

/// Largest page of `ListUserPoolClients`.
pub const MAX_CLIENT_PAGE: usize = 60;

/// The settings of an app client as a request gives them.
#[derive(Debug, Clone, Default)]
pub struct ClientSpec {
    /// Display name; required.
    pub client_name: String,
    /// 0 means the pool's default.
    pub access_token_validity: i32,
    /// Id token lifetime in `id_unit`; 0 means the pool's default.
    pub id_token_validity: i32,
    /// Refresh token lifetime in `refresh_unit`; 0 means the pool's default.
    pub refresh_token_validity: i32,
    /// Cognito unit names; empty for the default unit.
    pub access_unit: String,
    /// Unit of `id_token_validity`; empty for hours.
    pub id_unit: String,
    /// Unit of `refresh_token_validity`; empty for days.
    pub refresh_unit: String,
    /// Attributes the client may read; empty means all.
    pub read_attributes: Vec<String>,
    /// Attributes the client may write; empty means all mutable ones.
    pub write_attributes: Vec<String>,
    /// `ALLOW_*` flow names; empty allows password and refresh-token sign-in.
    pub explicit_auth_flows: Vec<String>,
    /// "ENABLED" (or empty) or "LEGACY".
    pub prevent_user_existence_errors: String,
    /// `None` turns revocation on, as Cognito does for new clients.
    pub enable_token_revocation: Option<bool>,
    /// `AllowedOAuthFlowsUserPoolClient`.
    pub allowed_oauth_flows_user_pool_client: bool,
    /// `AllowedOAuthFlows`: `code`, `implicit`, `client_credentials`.
    pub allowed_oauth_flows: Vec<String>,
    /// `AllowedOAuthScopes`.
    pub allowed_oauth_scopes: Vec<String>,
    /// `CallbackURLs`.
    pub callback_urls: Vec<String>,
    /// `LogoutURLs`.
    pub logout_urls: Vec<String>,
    /// `DefaultRedirectURI`; empty for none.
    pub default_redirect_uri: String,
    /// `SupportedIdentityProviders`.
    pub supported_identity_providers: Vec<String>,
}

/// Most entries in one of a request's OAuth lists (before they are
/// deduplicated and checked against the tighter per-field bounds).
const MAX_LIST_INPUT: usize = 200;

/// The OAuth settings a request gives, checked for shape (whether the
/// custom scopes and providers exist is decided when the write applies).
fn oauth_of(spec: &ClientSpec) -> Result<ClientOAuth, ServiceError> {
    for (field, list) in [
        ("allowed_oauth_flows", &spec.allowed_oauth_flows),
        ("allowed_oauth_scopes", &spec.allowed_oauth_scopes),
        ("callback_urls", &spec.callback_urls),
        ("logout_urls", &spec.logout_urls),
        ("supported_identity_providers", &spec.supported_identity_providers),
    ] {
        if list.len() > MAX_LIST_INPUT {
            return Err(ServiceError::invalid(format!("{field}: too many entries")));
        }
    }
    Ok(ClientOAuth {
        enabled: spec.allowed_oauth_flows_user_pool_client,
        flows: spec
            .allowed_oauth_flows
            .iter()
            .map(|f| OAuthFlow::parse(f))
            .collect::<Result<_, _>>()?,
        scopes: spec.allowed_oauth_scopes.iter().cloned().collect(),
        callback_urls: spec.callback_urls.iter().cloned().collect(),
        logout_urls: spec.logout_urls.iter().cloned().collect(),
        default_redirect_uri: Some(spec.default_redirect_uri.clone()).filter(|d| !d.is_empty()),
        identity_providers: spec.supported_identity_providers.iter().cloned().collect(),
    })
}

/// An app client and, for create and describe, its secret in clear.
#[derive(Debug, Clone)]
pub struct ClientView {
    /// The client as stored.
    pub client: AppClient,
    /// The client secret, opened from its seal; `None` for a public client.
    pub secret: Option<String>,
    /// Its OAuth settings.
    pub oauth: ClientOAuth,
}

fn attribute_set(field: &'static str, names: &[String]) -> Result<Option<BTreeSet<String>>, ServiceError> {
    if names.is_empty() {
        return Ok(None);
    }
    let set: BTreeSet<String> = names.iter().cloned().collect();
    validate_attribute_names(field, &set)?;
    Ok(Some(set))
}

fn validity(field: &'static str, value: i32, unit: TimeUnit, default_secs: u32) -> Result<u32, ServiceError> {
    match value {
        0 => Ok(default_secs),
        v if v > 0 => u32::try_from(i64::from(v) * i64::from(unit.seconds()))
            .map_err(|_| ServiceError::invalid(format!("{field}: too large"))),
        v => Err(ServiceError::invalid(format!("{field}: {v} must not be negative"))),
    }
}

/// Resolves a request's settings against the pool's defaults.
fn resolve(pool: &UserPool, spec: &ClientSpec) -> Result<(TokenValidity, ValidityUnits, AppClientParts), ServiceError> {
    validate_client_name(&spec.client_name)?;
    let defaults = ValidityUnits::default();
    let units = ValidityUnits {
        access: TimeUnit::parse(&spec.access_unit, defaults.access)?,
        id: TimeUnit::parse(&spec.id_unit, defaults.id)?,
        refresh: TimeUnit::parse(&spec.refresh_unit, defaults.refresh)?,
    };
    let d = pool.settings.token_validity;
    let tv = TokenValidity {
        access_token_secs: validity(
            "access_token_validity",
            spec.access_token_validity,
            units.access,
            d.access_token_secs,
        )?,
        id_token_secs: validity("id_token_validity", spec.id_token_validity, units.id, d.id_token_secs)?,
        refresh_token_secs: validity(
            "refresh_token_validity",
            spec.refresh_token_validity,
            units.refresh,
            d.refresh_token_secs,
        )?,
    };
    tv.validate()?;
    let auth_flows: BTreeSet<AuthFlow> = if spec.explicit_auth_flows.is_empty() {
        [AuthFlow::UserPassword, AuthFlow::RefreshToken].into()
    } else {
        spec.explicit_auth_flows
            .iter()
            .map(|f| AuthFlow::parse(f))
            .collect::<Result<_, _>>()?
    };
    let prevent = match spec.prevent_user_existence_errors.as_str() {
        "" | "ENABLED" => true,
        "LEGACY" => false,
        other => {
            return Err(ServiceError::invalid(format!(
                "prevent_user_existence_errors: {other:?} is not ENABLED or LEGACY"
            )))
        }
    };
    Ok((
        tv,
        units,
        AppClientParts {
            auth_flows,
            read: attribute_set("read_attributes", &spec.read_attributes)?,
            write: attribute_set("write_attributes", &spec.write_attributes)?,
            prevent,
        },
    ))
}

struct AppClientParts {
    auth_flows: BTreeSet<AuthFlow>,
    read: Option<BTreeSet<String>>,
    write: Option<BTreeSet<String>>,
    prevent: bool,
}

/// App-client operations of one node.
#[derive(Clone)]
pub struct AppClientService {
    node: Arc<RaftNode>,
    sealing: Arc<SealingCell>,
}

impl AppClientService {
    /// The app-client service of `node`; `sealing` seals and opens client secrets.
    pub fn new(node: Arc<RaftNode>, sealing: Arc<SealingCell>) -> Self {
        AppClientService { node, sealing }
    }

    async fn pool(&self, pool_id: &str) -> Result<UserPool, ServiceError> {
        super::pools::existing_pool(&self.node, pool_id).await
    }

    fn sealing(&self) -> Result<Arc<SealingKey>, ServiceError> {
        super::sealing_key(&self.sealing)
    }

    /// Creates a client with a fresh id and, if asked, a fresh secret.
    pub async fn create(
        &self,
        pool_id: &str,
        spec: &ClientSpec,
        generate_secret: bool,
    ) -> Result<ClientView, ServiceError> {
        let pool = self.pool(pool_id).await?;
        let (token_validity, validity_units, parts) = resolve(&pool, spec)?;
        let oauth = oauth_of(spec)?;
        oauth.validate(generate_secret)?;
        for _ in 0..3 {
            let client_id = lower_alnum(&crate::clock::random_bytes::<CLIENT_ID_CHARS>());
            let (secret, sealed) = if generate_secret {
                let secret = lower_alnum(&crate::clock::random_bytes::<CLIENT_SECRET_CHARS>());
                let sealed = self
                    .sealing()?
                    .seal(pool_id, &client_id, &secret, crate::clock::random_bytes::<12>());
                (Some(secret), Some(sealed))
            } else {
                (None, None)
            };
            let now = crate::clock::now_millis();
            let client = AppClient {
                pool_id: pool_id.to_string(),
                client_id,
                client_name: spec.client_name.clone(),
                secret: sealed,
                auth_flows: parts.auth_flows.clone(),
                token_validity,
                validity_units,
                read_attributes: parts.read.clone(),
                write_attributes: parts.write.clone(),
                prevent_user_existence_errors: parts.prevent,
                enable_token_revocation: spec.enable_token_revocation.unwrap_or(true),
                creation_date: now,
                last_modified_date: now,
            };
            let put = PutAppClient {
                client,
                oauth: oauth.clone(),
                create: true,
            };
            match super::try_submit(&self.node, put).await? {
                Ok((client, oauth)) => return Ok(ClientView { client, secret, oauth }),
                Err(Rejection::AlreadyExists { .. }) => continue,
                Err(r) => return Err(r.into()),
            }
        }
        Err(ServiceError::internal("could not draw a unique client id"))
    }

    /// One client with its secret.
    pub async fn describe(&self, pool_id: &str, client_id: &str, consistent: bool) -> Result<ClientView, ServiceError> {
        validate_pool_id(pool_id)?;
        validate_client_id(client_id)?;
        if consistent {
            self.node.read_barrier().await?;
        }
        let missing = || ServiceError::not_found(format!("User pool client {client_id} does not exist."));
        let client = match self.node.store().app_client(client_id)? {
            Some(c) => c,
            None if !consistent => {
                self.node.read_barrier().await?;
                self.node.store().app_client(client_id)?.ok_or_else(missing)?
            }
            None => return Err(missing()),
        };
        if client.pool_id != pool_id {
            return Err(missing());
        }
        let secret = match &client.secret {
            Some(sealed) => Some(
                self.sealing()?
                    .open(pool_id, client_id, sealed)
                    .map_err(|e| ServiceError::internal(e.to_string()))?,
            ),
            None => None,
        };
        let oauth = self.node.store().client_oauth(client_id)?;
        Ok(ClientView { client, secret, oauth })
    }

    /// Replaces a client's settings (Cognito semantics: omitted settings
    /// return to their defaults). The id, secret and creation date stay.
    pub async fn update(&self, pool_id: &str, client_id: &str, spec: &ClientSpec) -> Result<ClientView, ServiceError> {
        validate_client_id(client_id)?;
        let pool = self.pool(pool_id).await?;
        let (token_validity, validity_units, parts) = resolve(&pool, spec)?;
        // Whether the client has a secret is known only to the write; the
        // shape is checked here, the rest where it applies.
        let oauth = oauth_of(spec)?;
        oauth.validate(true)?;
        let now = crate::clock::now_millis();
        let client = AppClient {
            pool_id: pool_id.to_string(),
            client_id: client_id.to_string(),
            client_name: spec.client_name.clone(),
            secret: None,
            auth_flows: parts.auth_flows,
            token_validity,
            validity_units,
            read_attributes: parts.read,
            write_attributes: parts.write,
            prevent_user_existence_errors: parts.prevent,
            enable_token_revocation: spec.enable_token_revocation.unwrap_or(true),
            creation_date: now,
            last_modified_date: now,
        };
        let (client, oauth) = super::submit(
            &self.node,
            PutAppClient {
                client,
                oauth,
                create: false,
            },
        )
        .await?;
        Ok(ClientView {
            client,
            secret: None,
            oauth,
        })
    }

    /// `DeleteUserPoolClient`: its tokens are refused from then on.
    pub async fn delete(&self, pool_id: &str, client_id: &str) -> Result<(), ServiceError> {
        validate_pool_id(pool_id)?;
        validate_client_id(client_id)?;
        match self
            .node
            .propose(DeleteAppClient {
                pool_id: pool_id.into(),
                client_id: client_id.into(),
            })
            .await?
        {
            Outcome::Rejected(r) => Err(r.into()),
            _ => Ok(()),
        }
    }

    /// A page of a pool's clients in id order; the token is the last id.
    pub async fn list(
        &self,
        pool_id: &str,
        max_results: i32,
        next_token: &str,
        consistent: bool,
    ) -> Result<(Vec<AppClient>, Option<String>), ServiceError> {
        validate_pool_id(pool_id)?;
        let limit = match max_results {
            0 => MAX_CLIENT_PAGE,
            n if (1..=MAX_CLIENT_PAGE as i32).contains(&n) => n as usize,
            n => {
                return Err(ServiceError::invalid(format!(
                    "max_results: {n} is out of range; use 1 to {MAX_CLIENT_PAGE}"
                )))
            }
        };
        let parts = [pool_id];
        let scope = Scope::next_token("ListUserPoolClients", &parts);
        let cursors = Cursors::new(self.sealing.clone());
        let after = cursors.resume_text(&scope, next_token)?;
        if let Some(a) = &after {
            validate_client_id(a)
                .map_err(|_| ServiceError::invalid("next_token: not a token from a previous ListUserPoolClients"))?;
        }
        let after = after.as_deref();
        if consistent {
            self.node.read_barrier().await?;
        }
        if self.node.store().pool(pool_id)?.is_none() {
            return Err(ServiceError::not_found(format!("User pool {pool_id} does not exist.")));
        }
        let mut page = self.node.store().app_clients_page(pool_id, after, limit + 1)?;
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last()
                .map(|c| cursors.issue(&scope, c.client_id.as_bytes()))
                .transpose()?
        } else {
            None
        };
        Ok((page, next))
    }
}
