//! What a `bench identity` run stands on, made and removed through the
//! admin API: the user pool and its signed-in users, the role, the identity
//! pool, and an identity (and for `authorize`, credentials) per user.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context as _};
use futures::{StreamExt as _, TryStreamExt as _};

use super::{IdentityScenario, NewIdentity};
use crate::bench::auth::PASSWORD;
use crate::bench::driver::{delete_pool, status_error};
use crate::bench::group_thousands;
use crate::client::Client;
use crate::clock::instant;
use crate::proto::{
    AdminImportUsersRequest, CognitoIdentityProvider, CreateIdentityPoolRequest, CreateRoleRequest,
    CreateUserPoolClientRequest, CreateUserPoolRequest, DeleteIdentityPoolRequest, DeleteRoleRequest,
    GetCredentialsForIdentityRequest, GetIdRequest, ImportUserType, InitiateAuthRequest, PasswordHashingType,
    SetIdentityPoolRolesRequest,
};

/// The bench user pool's argon2 parameters: the cheapest the server takes
/// (8 MiB, one pass, one lane). Setup signs every user in once; nothing in
/// the timed load hashes a password.
pub const BENCH_ARGON2: PasswordHashingType = PasswordHashingType {
    memory_kib: 8 * 1024,
    iterations: 1,
    parallelism: 1,
};
/// The identity pool's developer provider name (`getid-new`).
pub const DEVELOPER_PROVIDER: &str = "login.bench.tessera";
/// Users per `AdminImportUsers` call: the most the server accepts.
const IMPORT_BATCH: usize = 1_000;
/// Sign-ins in flight during setup: enough to overlap round trips, few
/// enough not to overflow the server's hashing queue.
const SIGN_IN_CONCURRENCY: usize = 8;
/// Other setup calls in flight (GetId writes, credentials).
const SETUP_CONCURRENCY: usize = 32;

/// The authenticated role's policy, as an application would write it:
/// each identity reads and writes its own prefix of a bucket, lists the
/// bucket, reads a shared prefix and its own profile row (keyed by the
/// user pool `sub`), and is explicitly denied an admin prefix. Five
/// statements, variables in three of them: `Authorize` evaluates a
/// document of a realistic size rather than a single `*`.
pub fn policy_document() -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OwnData",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": "arn:aws:s3:::bench-data/${identity.id}/*"
            },
            {
                "Sid": "ListBucket",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": "arn:aws:s3:::bench-data"
            },
            {
                "Sid": "SharedRead",
                "Effect": "Allow",
                "Action": "s3:Get*",
                "Resource": ["arn:aws:s3:::bench-shared/*", "arn:aws:s3:::bench-public/*"]
            },
            {
                "Sid": "Profile",
                "Effect": "Allow",
                "Action": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                "Resource": "arn:aws:dynamodb:*:*:table/profiles/${user.sub}"
            },
            {
                "Sid": "NoAdmin",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "arn:aws:s3:::bench-data/admin/*"
            }
        ]
    })
    .to_string()
}

/// What setup needs to know.
pub(super) struct SetupPlan {
    pub scenario: IdentityScenario,
    pub users: usize,
    pub new_identity: NewIdentity,
    pub server_side_token_check: bool,
}

/// What the bench created, recorded as soon as each thing exists, so that
/// it is deleted even when a later setup step or the load fails.
#[derive(Debug, Default)]
pub(super) struct Created {
    pub user_pool_id: Option<String>,
    pub role_name: Option<String>,
    pub identity_pool_id: Option<String>,
}

impl Created {
    /// Deletes the identity pool (with its identities) first, since a role
    /// an identity pool refers to cannot be deleted; then the role and the
    /// user pool. Whether everything went; a failure is reported on stderr
    /// and does not fail the run, whose numbers stand.
    pub async fn delete(&self, admin: &Client) -> bool {
        let mut ok = true;
        if let Some(id) = &self.identity_pool_id {
            tracing::info!(identity_pool_id = %id, "deleting the bench identity pool");
            let body = DeleteIdentityPoolRequest {
                identity_pool_id: id.clone(),
            };
            if let Err(s) = admin.identity().delete_identity_pool(admin.req(body)).await {
                eprintln!(
                    "could not delete the bench identity pool {id}: {:?}: {}",
                    s.code(),
                    s.message()
                );
                ok = false;
            }
        }
        if let Some(name) = &self.role_name {
            let body = DeleteRoleRequest {
                role_name: name.clone(),
            };
            if let Err(s) = admin.identity().delete_role(admin.req(body)).await {
                eprintln!(
                    "could not delete the bench role {name}: {:?}: {}",
                    s.code(),
                    s.message()
                );
                ok = false;
            }
        }
        if let Some(id) = &self.user_pool_id {
            ok &= delete_pool(admin, id).await;
        }
        ok
    }
}

/// One signed-in user with its identity.
#[derive(Clone)]
pub(super) struct BenchUser {
    /// Its id token, the value of its login.
    pub id_token: String,
    /// The identity `GetId` gave it during setup.
    pub identity_id: String,
    /// Credentials for the identity (`authorize` only).
    pub session_token: Option<String>,
}

/// Everything the load calls with.
pub(super) struct Fixture {
    pub user_pool_id: Option<String>,
    pub identity_pool_id: String,
    pub role_arn: Option<String>,
    /// The user pool's key in `logins`: its issuer without the scheme.
    pub provider_name: String,
    pub users: Vec<BenchUser>,
    pub setup_secs: f64,
}

/// Creates what `plan.scenario` needs, recording it in `created`.
pub(super) async fn prepare(
    admin: &Client,
    plan: &SetupPlan,
    run_id: &str,
    created: &mut Created,
) -> anyhow::Result<Fixture> {
    let start = instant();
    let mut fixture = Fixture {
        user_pool_id: None,
        identity_pool_id: String::new(),
        role_arn: None,
        provider_name: String::new(),
        users: Vec::new(),
        setup_secs: 0.0,
    };
    let mut cognito = Vec::new();
    let mut id_tokens = Vec::new();
    if plan.scenario.needs_users() {
        let pool = admin
            .create_user_pool_with(CreateUserPoolRequest {
                pool_name: format!("bench-id-{run_id}"),
                password_hashing: Some(BENCH_ARGON2),
                ..Default::default()
            })
            .await
            .map_err(|s| status_error("CreateUserPool", s))?;
        created.user_pool_id = Some(pool.id.clone());
        fixture.user_pool_id = Some(pool.id.clone());
        let client_id = create_app_client(admin, &pool.id, run_id).await?;
        let usernames: Vec<String> = (0..plan.users).map(|i| format!("bench-{run_id}-u{i}")).collect();
        eprintln!(
            "setup: importing and signing in {} users into {}",
            group_thousands(plan.users as u64),
            pool.id
        );
        import_users(admin, &pool.id, &usernames).await?;
        id_tokens = sign_in_all(admin, &client_id, &usernames).await?;
        fixture.provider_name = provider_name(&id_tokens)?;
        cognito.push(CognitoIdentityProvider {
            provider_name: fixture.provider_name.clone(),
            client_id,
            server_side_token_check: plan.server_side_token_check,
        });

        let role_name = format!("bench-{run_id}-authenticated");
        let role = admin
            .identity()
            .create_role(admin.req(CreateRoleRequest {
                role_name: role_name.clone(),
                description: "tessera bench identity: own data, shared reads, own profile".into(),
                policy_document: policy_document(),
            }))
            .await
            .map_err(|s| status_error("CreateRole", s))?
            .into_inner()
            .role
            .ok_or_else(|| anyhow!("CreateRole returned no role"))?;
        created.role_name = Some(role_name);
        fixture.role_arn = Some(role.role_arn);
    }

    let guests = plan.scenario == IdentityScenario::GetidNew && plan.new_identity == NewIdentity::Guest;
    let pool = admin
        .identity()
        .create_identity_pool(admin.req(CreateIdentityPoolRequest {
            identity_pool_name: format!("bench_{run_id}"),
            allow_unauthenticated_identities: guests,
            developer_provider_name: DEVELOPER_PROVIDER.into(),
            cognito_identity_providers: cognito,
            ..Default::default()
        }))
        .await
        .map_err(|s| status_error("CreateIdentityPool", s))?
        .into_inner();
    created.identity_pool_id = Some(pool.identity_pool_id.clone());
    fixture.identity_pool_id = pool.identity_pool_id;

    if let Some(arn) = &fixture.role_arn {
        admin
            .identity()
            .set_identity_pool_roles(admin.req(SetIdentityPoolRolesRequest {
                identity_pool_id: fixture.identity_pool_id.clone(),
                roles: BTreeMap::from([("authenticated".to_string(), arn.clone())]),
                role_mappings: BTreeMap::new(),
            }))
            .await
            .map_err(|s| status_error("SetIdentityPoolRoles", s))?;
    }

    if !id_tokens.is_empty() {
        eprintln!("setup: one GetId per user");
        let identity_ids = get_ids(admin, &fixture.identity_pool_id, &fixture.provider_name, &id_tokens).await?;
        fixture.users = id_tokens
            .into_iter()
            .zip(identity_ids)
            .map(|(id_token, identity_id)| BenchUser {
                id_token,
                identity_id,
                session_token: None,
            })
            .collect();
        if plan.scenario == IdentityScenario::Authorize {
            eprintln!("setup: credentials for every identity");
            let tokens = credentials_all(admin, &fixture.provider_name, &fixture.users).await?;
            for (u, t) in fixture.users.iter_mut().zip(tokens) {
                u.session_token = Some(t);
            }
        }
    }
    fixture.setup_secs = (instant() - start).as_secs_f64();
    Ok(fixture)
}

async fn create_app_client(admin: &Client, pool_id: &str, run_id: &str) -> anyhow::Result<String> {
    let body = CreateUserPoolClientRequest {
        user_pool_id: pool_id.to_string(),
        client_name: format!("bench-id-{run_id}"),
        generate_secret: false,
        explicit_auth_flows: vec!["ALLOW_USER_PASSWORD_AUTH".into()],
        ..Default::default()
    };
    admin
        .admin()
        .create_user_pool_client(admin.req(body))
        .await
        .map_err(|s| status_error("CreateUserPoolClient", s))?
        .into_inner()
        .user_pool_client
        .map(|c| c.client_id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| anyhow!("CreateUserPoolClient returned no client id"))
}

/// `AdminImportUsers` in batches, every user CONFIRMED with [`PASSWORD`]
/// (which the server hashes once per batch).
async fn import_users(admin: &Client, pool_id: &str, usernames: &[String]) -> anyhow::Result<()> {
    for batch in usernames.chunks(IMPORT_BATCH) {
        let body = AdminImportUsersRequest {
            user_pool_id: pool_id.to_string(),
            users: batch
                .iter()
                .map(|u| ImportUserType {
                    username: u.clone(),
                    attributes: Vec::new(),
                    ..Default::default()
                })
                .collect(),
            password: PASSWORD.to_string(),
            mark_verified: false,
        };
        let r = admin
            .admin()
            .admin_import_users(admin.req(body))
            .await
            .map_err(|s| status_error("AdminImportUsers", s))?
            .into_inner();
        if let Some(f) = r.failures.first() {
            bail!(
                "AdminImportUsers: {} users failed, e.g. {}: {}",
                r.failures.len(),
                f.username,
                f.reason
            );
        }
    }
    Ok(())
}

/// Signs every user in once, in order, for its id token.
async fn sign_in_all(admin: &Client, client_id: &str, usernames: &[String]) -> anyhow::Result<Vec<String>> {
    futures::stream::iter(usernames)
        .map(|username| async move {
            let body = InitiateAuthRequest {
                auth_flow: "USER_PASSWORD_AUTH".to_string(),
                auth_parameters: BTreeMap::from([
                    ("USERNAME".to_string(), username.clone()),
                    ("PASSWORD".to_string(), PASSWORD.to_string()),
                ]),
                client_id: client_id.to_string(),
                ..Default::default()
            };
            let resp = admin
                .auth()
                .initiate_auth(body)
                .await
                .map_err(|s| status_error(&format!("InitiateAuth {username}"), s))?
                .into_inner();
            resp.authentication_result
                .map(|t| t.id_token)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    anyhow!(
                        "InitiateAuth {username}: answered challenge {:?} instead of tokens",
                        resp.challenge_name
                    )
                })
        })
        .buffered(SIGN_IN_CONCURRENCY)
        .try_collect()
        .await
}

/// The provider name of the user pool in `logins`: the issuer of its id
/// tokens without the scheme, exactly what the identity pool compares.
fn provider_name(id_tokens: &[String]) -> anyhow::Result<String> {
    let first = id_tokens.first().context("no id token to read the issuer from")?;
    let (_, iss) =
        crate::auth::verifier::peek_kid_and_issuer(first).context("the id token has no readable kid and iss")?;
    Ok(crate::model::identity_pool::strip_scheme(&iss).to_string())
}

/// One `GetId` per id token, in order: the identities the load expects.
async fn get_ids(
    admin: &Client,
    identity_pool_id: &str,
    provider: &str,
    id_tokens: &[String],
) -> anyhow::Result<Vec<String>> {
    futures::stream::iter(id_tokens.iter().enumerate())
        .map(|(i, token)| async move {
            let body = GetIdRequest {
                identity_pool_id: identity_pool_id.to_string(),
                logins: [(provider.to_string(), token.clone())].into_iter().collect(),
                ..Default::default()
            };
            let id = admin
                .identity()
                .get_id(body)
                .await
                .map_err(|s| status_error(&format!("GetId for user {i}"), s))?
                .into_inner()
                .identity_id;
            if id.is_empty() {
                bail!("GetId for user {i} returned no identity id");
            }
            Ok(id)
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await
}

/// Credentials for every user's identity, in order.
async fn credentials_all(admin: &Client, provider: &str, users: &[BenchUser]) -> anyhow::Result<Vec<String>> {
    futures::stream::iter(users)
        .map(|u| async move {
            let body = GetCredentialsForIdentityRequest {
                identity_id: u.identity_id.clone(),
                logins: [(provider.to_string(), u.id_token.clone())].into_iter().collect(),
                ..Default::default()
            };
            let c = admin
                .identity()
                .get_credentials_for_identity(body)
                .await
                .map_err(|s| status_error(&format!("GetCredentialsForIdentity {}", u.identity_id), s))?
                .into_inner()
                .credentials
                .filter(|c| !c.session_token.is_empty())
                .ok_or_else(|| anyhow!("GetCredentialsForIdentity {}: no credentials", u.identity_id))?;
            Ok(c.session_token)
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::PolicyDocument;

    #[test]
    fn the_policy_is_accepted_and_keeps_its_statements() {
        let doc = PolicyDocument::from_json(&policy_document()).unwrap();
        assert_eq!(doc.statements().len(), 5);
        assert!(doc.to_json().len() < crate::model::policy::MAX_POLICY_BYTES);
    }

    #[test]
    fn the_argon2_parameters_are_the_cheapest_a_pool_takes() {
        let mut settings = crate::model::pool_settings::PoolSettings {
            argon2: crate::model::pool_settings::Argon2Params {
                m_kib: BENCH_ARGON2.memory_kib,
                t: BENCH_ARGON2.iterations,
                p: BENCH_ARGON2.parallelism,
            },
            ..Default::default()
        };
        assert!(settings.validate().is_ok());
        settings.argon2.m_kib -= 1;
        assert!(settings.validate().is_err());
    }

    #[test]
    fn the_developer_provider_is_a_valid_name() {
        let ok = DEVELOPER_PROVIDER
            .chars()
            .all(|c| c.is_alphanumeric() || "_.-".contains(c));
        assert!(ok && !DEVELOPER_PROVIDER.is_empty());
    }

    #[test]
    fn the_provider_name_is_the_issuer_without_its_scheme() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let part = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let token = format!(
            "{}.{}.sig",
            part(serde_json::json!({"alg": "EdDSA", "kid": "k1"})),
            part(serde_json::json!({"iss": "http://127.0.0.1:7900/local_abc", "sub": "s"}))
        );
        assert_eq!(provider_name(&[token]).unwrap(), "127.0.0.1:7900/local_abc");
        assert!(provider_name(&[]).is_err());
        assert!(provider_name(&["not a jwt".into()]).is_err());
    }
}
