//! Helpers for the user-directory tests in `tests/directory.rs` (issue 5):
//! a pool with an app client and a connected client per node, users made
//! through the real gRPC API, codes read from the replicated outbox,
//! exception checks, token claims verified with the independent
//! `jsonwebtoken` crate against the JWKS each node serves, and paginated
//! listings (users, groups, audit events) collected page by page with
//! duplicate checks.
//!
//! Every test binary that declares `mod common` compiles this file, so it
//! depends on nothing but `crate::common`, the `tessera` library and the
//! dev-dependencies.

#![allow(dead_code, clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tessera::client::Client;
use tessera::proto::*;
use tonic::Code;

use crate::common::{http_get, poll_until, TestCluster};

/// A password that satisfies the default policy.
pub const GOOD_PASSWORD: &str = "Corr3ct-Horse!";
/// Another one, for resets and changes.
pub const OTHER_PASSWORD: &str = "B4ttery-Staple?";
/// A third one.
pub const THIRD_PASSWORD: &str = "Th1rd-Passw0rd#";
/// A fourth one.
pub const FOURTH_PASSWORD: &str = "F0urth-Secret$";
/// A wrong password that satisfies the policy (so only its value is wrong).
pub const WRONG_PASSWORD: &str = "Wr0ng-Password!";

/// The exception-name metadata key every Tessera error carries.
pub const EXCEPTION_HEADER: &str = "x-tessera-exception";
/// The message of a refused password sign-in (also for unknown users).
pub const INCORRECT: &str = "NotAuthorizedException: Incorrect username or password.";
/// The message of a sign-in refused by the lockout.
pub const LOCKED: &str = "NotAuthorizedException: Password attempts exceeded";
/// The message of a sign-in by a disabled user.
pub const DISABLED: &str = "NotAuthorizedException: User is disabled.";
/// The scope every access token carries.
pub const SIGNIN_SCOPE: &str = "aws.cognito.signin.user.admin";
/// The ListUsers rows-scanned counter on `/metrics`.
pub const ROWS_SCANNED: &str = "tessera_list_users_rows_scanned_total";

/// How long a follower may lag behind an acknowledged write before a test
/// calls it a bug.
pub const REPLICATION: Duration = Duration::from_secs(5);

/// Cheap argon2 so that tests spend their time on the flows, not on hashing.
pub fn fast_hashing() -> Option<PasswordHashingType> {
    Some(PasswordHashingType {
        memory_kib: 8192,
        iterations: 1,
        parallelism: 1,
    })
}

/// `AttributeType` list (self-service calls) from pairs.
pub fn uattrs(pairs: &[(&str, &str)]) -> Vec<AttributeType> {
    pairs
        .iter()
        .map(|(n, v)| AttributeType {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect()
}

/// `AttributeValue` list (admin calls) from pairs.
pub fn aattrs(pairs: &[(&str, &str)]) -> Vec<AttributeValue> {
    pairs
        .iter()
        .map(|(n, v)| AttributeValue {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect()
}

/// Owned pairs, collected into a map or a `Vec`.
pub fn params<M: FromIterator<(String, String)>>(pairs: &[(&str, &str)]) -> M {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The value of `name` in an admin attribute list.
pub fn admin_attr<'a>(list: &'a [AttributeValue], name: &str) -> Option<&'a str> {
    list.iter().find(|a| a.name == name).map(|a| a.value.as_str())
}

/// The value of `name` in a self-service attribute list.
pub fn user_attr<'a>(list: &'a [AttributeType], name: &str) -> Option<&'a str> {
    list.iter().find(|a| a.name == name).map(|a| a.value.as_str())
}

/// Converts a status into an error naming what failed.
pub fn status_err(what: &str) -> impl FnOnce(tonic::Status) -> anyhow::Error + '_ {
    move |s| {
        anyhow!(
            "{what}: {:?}: {} (exception header {:?})",
            s.code(),
            s.message(),
            s.metadata().get(EXCEPTION_HEADER)
        )
    }
}

/// The exception name in a status's metadata.
pub fn exception_of(s: &tonic::Status) -> Option<String> {
    s.metadata()
        .get(EXCEPTION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Checks that `s` is the Tessera error for `exception`: gRPC `code`, a
/// message that starts with `"<exception>: "`, and the bare name in the
/// `x-tessera-exception` metadata.
pub fn check_exception(what: &str, s: &tonic::Status, code: Code, exception: &str) -> Result<()> {
    ensure!(
        s.code() == code,
        "{what}: expected {code:?} ({exception}), got {:?}: {}",
        s.code(),
        s.message()
    );
    ensure!(
        s.message().starts_with(&format!("{exception}: ")),
        "{what}: the message should start with \"{exception}: \": {:?}",
        s.message()
    );
    let header = exception_of(s);
    ensure!(
        header.as_deref() == Some(exception),
        "{what}: metadata {EXCEPTION_HEADER} should be {exception:?}, got {header:?} (message {:?})",
        s.message()
    );
    Ok(())
}

/// Requires `r` to have failed with `exception`; returns the status.
pub fn expect_exception<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, tonic::Status>,
    code: Code,
    exception: &str,
) -> Result<tonic::Status> {
    match r {
        Ok(v) => bail!("{what}: expected {exception} ({code:?}), got success: {v:?}"),
        Err(s) => {
            check_exception(what, &s, code, exception)?;
            println!("  ok: {what} -> {:?} {}", s.code(), s.message());
            Ok(s)
        }
    }
}

/// Requires `r` to have failed with exactly the message `message` (which
/// starts with the exception name) and the matching code and metadata.
pub fn expect_message<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, tonic::Status>,
    code: Code,
    message: &str,
) -> Result<()> {
    let exception = message.split(':').next().unwrap_or_default();
    let s = expect_exception(what, r, code, exception)?;
    ensure!(
        s.message() == message,
        "{what}: expected the message {message:?}, got {:?}",
        s.message()
    );
    Ok(())
}

/// Requires `r` to fail with one of `exceptions` (when the contract leaves
/// the choice open); returns the name it got.
pub fn expect_one_of<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, tonic::Status>,
    allowed: &[(Code, &str)],
) -> Result<String> {
    match r {
        Ok(v) => bail!("{what}: expected one of {allowed:?}, got success: {v:?}"),
        Err(s) => {
            for (code, exception) in allowed {
                if check_exception(what, &s, *code, exception).is_ok() {
                    println!("  ok: {what} -> {:?} {}", s.code(), s.message());
                    return Ok(exception.to_string());
                }
            }
            bail!(
                "{what}: expected one of {allowed:?}, got {:?}: {} (header {:?})",
                s.code(),
                s.message(),
                exception_of(&s)
            )
        }
    }
}

/// Polls `f` until it fails with `exception`: for a node that may not have
/// applied an acknowledged write yet. An unexpected error fails at once; a
/// success after [`REPLICATION`] fails.
pub async fn refused_within<T, F, Fut>(what: &str, code: Code, exception: &str, mut f: F) -> Result<tonic::Status>
where
    T: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let start = std::time::Instant::now();
    loop {
        match f().await {
            Err(s) => {
                check_exception(what, &s, code, exception)?;
                println!("  ok: {what} -> {} after {:?}", s.message(), start.elapsed());
                return Ok(s);
            }
            Ok(v) => {
                if start.elapsed() > REPLICATION {
                    bail!("{what}: still accepted after {REPLICATION:?}: {v:?}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `f` until it succeeds, for a node that may lag; fails with the
/// last error after [`REPLICATION`].
pub async fn accepted_within<T, F, Fut>(what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let start = std::time::Instant::now();
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(s) => {
                if start.elapsed() > REPLICATION {
                    bail!(
                        "{what}: still refused after {REPLICATION:?}: {:?}: {}",
                        s.code(),
                        s.message()
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Decodes a JWT's payload without verifying it (for messages only).
pub fn peek_claims(token: &str) -> Result<Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).ok_or_else(|| anyhow!("not a compact JWS"))?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .context("JWT payload is not base64url")?;
    serde_json::from_slice(&raw).context("JWT payload is not JSON")
}

/// The `cognito:groups` claim as a list (absent: empty).
pub fn groups_claim(claims: &Value) -> Result<Vec<String>> {
    match claims.get("cognito:groups") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("cognito:groups holds a non-string: {v}"))
            })
            .collect(),
        Some(other) => bail!("cognito:groups is not an array: {other}"),
    }
}

/// The `scope` claim, split on spaces.
pub fn scope_claim(claims: &Value) -> Result<Vec<String>> {
    let s = claims["scope"]
        .as_str()
        .ok_or_else(|| anyhow!("no string scope claim in {claims}"))?;
    Ok(s.split(' ').map(str::to_string).collect())
}

/// The scope an access token must carry for a user whose groups grant
/// `permissions`: the sign-in scope, then the sorted union.
pub fn expected_scope(permissions: &[&str]) -> String {
    let set: BTreeSet<&str> = permissions.iter().copied().collect();
    let mut out = vec![SIGNIN_SCOPE];
    out.extend(set);
    out.join(" ")
}

/// Offline permission check from verified claims, the way a resource
/// server without Tessera's library would do it: the permission is one of
/// the space-separated `scope` entries.
pub fn scope_grants(claims: &Value, permission: &str) -> bool {
    claims["scope"]
        .as_str()
        .is_some_and(|s| s.split(' ').any(|p| p == permission))
}

/// The tokens of one sign-in.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub id_token: String,
    pub access_token: String,
    /// Empty in refresh replies.
    pub refresh_token: String,
}

impl Tokens {
    pub fn from_result(what: &str, r: Option<AuthenticationResultType>) -> Result<Self> {
        let r = r.ok_or_else(|| anyhow!("{what}: no authentication_result"))?;
        ensure!(r.token_type == "Bearer", "{what}: token_type {:?}", r.token_type);
        ensure!(!r.id_token.is_empty(), "{what}: empty id_token");
        ensure!(!r.access_token.is_empty(), "{what}: empty access_token");
        Ok(Tokens {
            id_token: r.id_token,
            access_token: r.access_token,
            refresh_token: r.refresh_token,
        })
    }

    pub fn from_admin_result(what: &str, r: Option<AdminAuthenticationResultType>) -> Result<Self> {
        let r = r.ok_or_else(|| anyhow!("{what}: no authentication_result"))?;
        ensure!(r.token_type == "Bearer", "{what}: token_type {:?}", r.token_type);
        ensure!(!r.id_token.is_empty(), "{what}: empty id_token");
        ensure!(!r.access_token.is_empty(), "{what}: empty access_token");
        Ok(Tokens {
            id_token: r.id_token,
            access_token: r.access_token,
            refresh_token: r.refresh_token,
        })
    }
}

/// A custom attribute to declare at pool creation.
#[derive(Debug, Clone, Copy)]
pub struct CustomAttr<'a> {
    /// Without the `custom:` prefix.
    pub name: &'a str,
    pub indexed: bool,
}

/// What [`Dir::create`] sets up.
#[derive(Debug, Clone)]
pub struct DirSpec<'a> {
    pub name: &'a str,
    pub alias_attributes: &'a [&'a str],
    pub custom: &'a [CustomAttr<'a>],
    /// Cheap argon2 (else the pool's default cost).
    pub fast: bool,
}

impl Default for DirSpec<'_> {
    fn default() -> Self {
        DirSpec {
            name: "directory-test",
            alias_attributes: &[],
            custom: &[],
            fast: true,
        }
    }
}

/// A pool, an app client and a connected client per node, for one test.
pub struct Dir {
    /// `clients[i]` talks to node `i + 1`.
    pub clients: Vec<Client>,
    /// `host:port` of each node's api, same indexing.
    pub api_addrs: Vec<String>,
    pub pool_id: String,
    pub client_id: String,
    /// `iss` of this pool's tokens, from the discovery document.
    pub issuer: String,
}

impl Dir {
    /// Creates a pool (email required and mutable) through node 1 and an
    /// app client through node 2, connects to every node, and waits until
    /// every node's signing key is published in every node's JWKS.
    pub async fn create(c: &TestCluster, spec: DirSpec<'_>) -> Result<Self> {
        let mut clients = Vec::new();
        let mut api_addrs = Vec::new();
        for id in 1..=c.nodes.len() as u64 {
            clients.push(c.client(id).await?);
            api_addrs.push(c.node(id).api_addr.clone());
        }
        let mut schema = vec![SchemaAttributeType {
            name: "email".into(),
            attribute_data_type: "String".into(),
            mutable: true,
            required: true,
            ..Default::default()
        }];
        for a in spec.custom {
            schema.push(SchemaAttributeType {
                name: format!("custom:{}", a.name),
                attribute_data_type: "String".into(),
                mutable: true,
                required: false,
                indexed: a.indexed,
                ..Default::default()
            });
        }
        let pool = clients[0]
            .create_user_pool_with(CreateUserPoolRequest {
                pool_name: spec.name.to_string(),
                alias_attributes: spec.alias_attributes.iter().map(|s| s.to_string()).collect(),
                auto_verified_attributes: vec!["email".into()],
                schema,
                password_hashing: if spec.fast { fast_hashing() } else { None },
                ..Default::default()
            })
            .await
            .map_err(status_err("CreateUserPool"))?;
        ensure!(!pool.id.is_empty(), "CreateUserPool returned no id");
        let mut dir = Dir {
            clients,
            api_addrs,
            pool_id: pool.id,
            client_id: String::new(),
            issuer: String::new(),
        };
        dir.client_id = dir.create_app_client(2, &format!("{}-app", spec.name), &[]).await?;
        dir.issuer = discovery_issuer_eventually(&dir.api_addrs[0], &dir.pool_id).await?;
        dir.wait_keys_published().await?;
        Ok(dir)
    }

    /// Another app client of this pool, through node `via`; empty `flows`
    /// means the defaults.
    pub async fn create_app_client(&self, via: u64, name: &str, flows: &[&str]) -> Result<String> {
        let admin = self.node(via);
        let created = admin
            .admin()
            .create_user_pool_client(admin.req(CreateUserPoolClientRequest {
                user_pool_id: self.pool_id.clone(),
                client_name: name.to_string(),
                explicit_auth_flows: flows.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }))
            .await
            .map_err(status_err("CreateUserPoolClient"))?
            .into_inner()
            .user_pool_client
            .ok_or_else(|| anyhow!("CreateUserPoolClient returned no client"))?;
        ensure!(
            !created.client_id.is_empty(),
            "CreateUserPoolClient returned no client_id"
        );
        Ok(created.client_id)
    }

    /// The client for node `id` (1-based).
    pub fn node(&self, id: u64) -> &Client {
        &self.clients[(id - 1) as usize]
    }

    pub fn node_ids(&self) -> Vec<u64> {
        (1..=self.clients.len() as u64).collect()
    }

    /// Waits until every node's JWKS lists a key of every node (kids are
    /// `n<node id>-...`).
    pub async fn wait_keys_published(&self) -> Result<()> {
        let ids = self.node_ids();
        for id in &ids {
            let addr = self.api_addrs[(*id - 1) as usize].clone();
            let pool_id = self.pool_id.clone();
            let ids = ids.clone();
            poll_until(
                &format!("a key of every node in node {id}'s JWKS"),
                Duration::from_secs(10),
                Duration::from_millis(50),
                || {
                    let (addr, pool_id, ids) = (addr.clone(), pool_id.clone(), ids.clone());
                    async move {
                        let set = fetch_jwks(&addr, &pool_id).await?;
                        let kids: Vec<String> = set.keys.iter().filter_map(|k| k.common.key_id.clone()).collect();
                        let all = ids
                            .iter()
                            .all(|n| kids.iter().any(|k| k.starts_with(&format!("n{n}-"))));
                        Ok(all.then_some(()))
                    }
                },
            )
            .await?;
        }
        Ok(())
    }

    /// A ReadIndex barrier on node `via`: after it, the node has applied
    /// every write acknowledged before the call. (A consistent
    /// `DescribeUserPool`, which the harness already relies on.)
    pub async fn barrier(&self, via: u64) -> Result<()> {
        self.node(via)
            .describe_user_pool(&self.pool_id, true)
            .await
            .map_err(status_err(&format!("consistent DescribeUserPool on node {via}")))?;
        Ok(())
    }

    /// Barriers on every node.
    pub async fn barrier_all(&self) -> Result<()> {
        for id in self.node_ids() {
            self.barrier(id).await?;
        }
        Ok(())
    }

    // ----- users ---------------------------------------------------------

    /// A `SignUp` request with an email.
    pub fn sign_up_request(&self, username: &str, password: &str, email: &str) -> SignUpRequest {
        SignUpRequest {
            client_id: self.client_id.clone(),
            username: username.to_string(),
            password: password.to_string(),
            user_attributes: uattrs(&[("email", email)]),
            ..Default::default()
        }
    }

    /// `SignUp` through node `via`.
    pub async fn sign_up(&self, via: u64, req: SignUpRequest) -> Result<SignUpResponse, tonic::Status> {
        Ok(self.node(via).auth().sign_up(req).await?.into_inner())
    }

    /// `ConfirmSignUp` through node `via`.
    pub async fn confirm(&self, via: u64, username: &str, code: &str) -> Result<(), tonic::Status> {
        self.node(via)
            .auth()
            .confirm_sign_up(ConfirmSignUpRequest {
                client_id: self.client_id.clone(),
                username: username.to_string(),
                confirmation_code: code.to_string(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Signs up through `via`, reads the code and confirms through `via`;
    /// returns the sub.
    pub async fn confirmed_user(&self, via: u64, username: &str, password: &str, email: &str) -> Result<String> {
        let r = self
            .sign_up(via, self.sign_up_request(username, password, email))
            .await
            .map_err(status_err(&format!("SignUp {username}")))?;
        let code = self.code(via, username, "CONFIRM_SIGN_UP").await?;
        self.confirm(via, username, &code)
            .await
            .map_err(status_err(&format!("ConfirmSignUp {username}")))?;
        Ok(r.user_sub)
    }

    /// `AdminGetUser` with a consistent read through node `via`.
    pub async fn admin_get_user(&self, via: u64, username: &str) -> Result<AdminGetUserResponse, tonic::Status> {
        let c = self.node(via);
        Ok(c.admin()
            .admin_get_user(c.req(AdminGetUserRequest {
                user_pool_id: self.pool_id.clone(),
                username: username.to_string(),
                consistent_read: true,
            }))
            .await?
            .into_inner())
    }

    /// `GetUser` through node `via`.
    pub async fn get_user(&self, via: u64, access_token: &str) -> Result<GetUserResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .get_user(GetUserRequest {
                access_token: access_token.to_string(),
            })
            .await?
            .into_inner())
    }

    /// `AdminCreateUser` with a temporary password and no message.
    pub async fn admin_create_user(
        &self,
        via: u64,
        username: &str,
        attributes: &[(&str, &str)],
        temporary: &str,
    ) -> Result<UserType, tonic::Status> {
        let c = self.node(via);
        let r = c
            .admin()
            .admin_create_user(c.req(AdminCreateUserRequest {
                user_pool_id: self.pool_id.clone(),
                username: username.to_string(),
                user_attributes: aattrs(attributes),
                temporary_password: temporary.to_string(),
                message_action: "SUPPRESS".into(),
                ..Default::default()
            }))
            .await?
            .into_inner();
        r.user
            .ok_or_else(|| tonic::Status::internal("test harness: AdminCreateUser returned no user"))
    }

    /// `AdminUpdateUserAttributes` through node `via`.
    pub async fn admin_update_attributes(
        &self,
        via: u64,
        username: &str,
        attributes: Vec<AttributeValue>,
    ) -> Result<(), tonic::Status> {
        let c = self.node(via);
        c.admin()
            .admin_update_user_attributes(c.req(AdminUpdateUserAttributesRequest {
                user_pool_id: self.pool_id.clone(),
                username: username.to_string(),
                user_attributes: attributes,
            }))
            .await?;
        Ok(())
    }

    /// `AdminImportUsers` through node `via`.
    pub async fn import_users(
        &self,
        via: u64,
        users: Vec<ImportUserType>,
        password: &str,
        mark_verified: bool,
    ) -> Result<AdminImportUsersResponse, tonic::Status> {
        let c = self.node(via);
        Ok(c.admin()
            .admin_import_users(c.req(AdminImportUsersRequest {
                user_pool_id: self.pool_id.clone(),
                users,
                password: password.to_string(),
                mark_verified,
            }))
            .await?
            .into_inner())
    }

    // ----- sign-in -------------------------------------------------------

    /// `InitiateAuth` through node `via`, raw.
    pub async fn initiate(
        &self,
        via: u64,
        client_id: &str,
        flow: &str,
        auth_parameters: Vec<(String, String)>,
    ) -> Result<InitiateAuthResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .initiate_auth(InitiateAuthRequest {
                auth_flow: flow.to_string(),
                auth_parameters: auth_parameters.into_iter().collect(),
                client_id: client_id.to_string(),
                client_metadata: Default::default(),
            })
            .await?
            .into_inner())
    }

    /// `USER_PASSWORD_AUTH`, raw.
    pub async fn password_auth(
        &self,
        via: u64,
        username: &str,
        password: &str,
    ) -> Result<InitiateAuthResponse, tonic::Status> {
        let p = params(&[("USERNAME", username), ("PASSWORD", password)]);
        self.initiate(via, &self.client_id, "USER_PASSWORD_AUTH", p).await
    }

    /// A password sign-in that must yield tokens with a refresh token.
    pub async fn sign_in(&self, via: u64, username: &str, password: &str) -> Result<Tokens> {
        let what = format!("USER_PASSWORD_AUTH of {username} on node {via}");
        let r = self
            .password_auth(via, username, password)
            .await
            .map_err(status_err(&what))?;
        ensure!(
            r.challenge_name.is_empty(),
            "{what}: unexpected challenge {:?}",
            r.challenge_name
        );
        let t = Tokens::from_result(&what, r.authentication_result)?;
        ensure!(!t.refresh_token.is_empty(), "{what}: no refresh token");
        Ok(t)
    }

    /// `REFRESH_TOKEN_AUTH`, raw.
    pub async fn refresh_raw(&self, via: u64, refresh_token: &str) -> Result<InitiateAuthResponse, tonic::Status> {
        let p = params(&[("REFRESH_TOKEN", refresh_token)]);
        self.initiate(via, &self.client_id, "REFRESH_TOKEN_AUTH", p).await
    }

    /// A refresh that must yield new tokens.
    pub async fn refresh(&self, via: u64, refresh_token: &str) -> Result<Tokens> {
        let what = format!("REFRESH_TOKEN_AUTH on node {via}");
        let r = self.refresh_raw(via, refresh_token).await.map_err(status_err(&what))?;
        Tokens::from_result(&what, r.authentication_result)
    }

    /// `RespondToAuthChallenge` NEW_PASSWORD_REQUIRED through node `via`.
    pub async fn new_password(
        &self,
        via: u64,
        session: &str,
        username: &str,
        new_password: &str,
    ) -> Result<RespondToAuthChallengeResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .respond_to_auth_challenge(RespondToAuthChallengeRequest {
                client_id: self.client_id.clone(),
                challenge_name: "NEW_PASSWORD_REQUIRED".into(),
                session: session.to_string(),
                challenge_responses: params(&[("USERNAME", username), ("NEW_PASSWORD", new_password)]),
            })
            .await?
            .into_inner())
    }

    // ----- self-service ----------------------------------------------------

    pub async fn forgot_password(&self, via: u64, username: &str) -> Result<ForgotPasswordResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .forgot_password(ForgotPasswordRequest {
                client_id: self.client_id.clone(),
                username: username.to_string(),
                ..Default::default()
            })
            .await?
            .into_inner())
    }

    pub async fn confirm_forgot_password(
        &self,
        via: u64,
        username: &str,
        code: &str,
        password: &str,
    ) -> Result<ConfirmForgotPasswordResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .confirm_forgot_password(ConfirmForgotPasswordRequest {
                client_id: self.client_id.clone(),
                username: username.to_string(),
                confirmation_code: code.to_string(),
                password: password.to_string(),
                ..Default::default()
            })
            .await?
            .into_inner())
    }

    pub async fn change_password(
        &self,
        via: u64,
        access_token: &str,
        previous: &str,
        proposed: &str,
    ) -> Result<ChangePasswordResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .change_password(ChangePasswordRequest {
                previous_password: previous.to_string(),
                proposed_password: proposed.to_string(),
                access_token: access_token.to_string(),
            })
            .await?
            .into_inner())
    }

    pub async fn update_user_attributes(
        &self,
        via: u64,
        access_token: &str,
        attributes: &[(&str, &str)],
    ) -> Result<UpdateUserAttributesResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .update_user_attributes(UpdateUserAttributesRequest {
                user_attributes: uattrs(attributes),
                access_token: access_token.to_string(),
                client_metadata: Default::default(),
            })
            .await?
            .into_inner())
    }

    pub async fn verify_user_attribute(
        &self,
        via: u64,
        access_token: &str,
        name: &str,
        code: &str,
    ) -> Result<VerifyUserAttributeResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .verify_user_attribute(VerifyUserAttributeRequest {
                access_token: access_token.to_string(),
                attribute_name: name.to_string(),
                code: code.to_string(),
            })
            .await?
            .into_inner())
    }

    pub async fn get_verification_code(
        &self,
        via: u64,
        access_token: &str,
        name: &str,
    ) -> Result<GetUserAttributeVerificationCodeResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .get_user_attribute_verification_code(GetUserAttributeVerificationCodeRequest {
                access_token: access_token.to_string(),
                attribute_name: name.to_string(),
                client_metadata: Default::default(),
            })
            .await?
            .into_inner())
    }

    pub async fn resend_confirmation_code(
        &self,
        via: u64,
        username: &str,
    ) -> Result<ResendConfirmationCodeResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .resend_confirmation_code(ResendConfirmationCodeRequest {
                client_id: self.client_id.clone(),
                username: username.to_string(),
                ..Default::default()
            })
            .await?
            .into_inner())
    }

    pub async fn check_permission(
        &self,
        via: u64,
        access_token: &str,
        permission: &str,
        consistent_read: bool,
    ) -> Result<CheckPermissionResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .check_permission(CheckPermissionRequest {
                access_token: access_token.to_string(),
                permission: permission.to_string(),
                consistent_read,
            })
            .await?
            .into_inner())
    }

    // ----- outbox ----------------------------------------------------------

    /// Every outbox message of `kind` for `username` in this pool, oldest
    /// first, read with a consistent read through node `via`.
    pub async fn outbox_messages(&self, via: u64, username: &str, kind: &str) -> Result<Vec<OutboxMessageType>> {
        let client = self.node(via);
        let mut found = Vec::new();
        let mut next_token = String::new();
        for _page in 0..1000 {
            let page = client
                .admin()
                .list_outbox_messages(client.req(ListOutboxMessagesRequest {
                    user_pool_id: self.pool_id.clone(),
                    max_results: 1000,
                    next_token: next_token.clone(),
                    consistent_read: true,
                }))
                .await
                .map_err(status_err("ListOutboxMessages"))?
                .into_inner();
            for m in page.messages {
                ensure!(
                    m.user_pool_id == self.pool_id,
                    "ListOutboxMessages for {} returned a message of pool {}",
                    self.pool_id,
                    m.user_pool_id
                );
                if m.username == username && m.kind == kind {
                    found.push(m);
                }
            }
            if page.next_token.is_empty() {
                return Ok(found);
            }
            next_token = page.next_token;
        }
        bail!("ListOutboxMessages did not end after 1000 pages")
    }

    /// Waits (up to 10 s) until there are more than `seen` messages of
    /// `kind` for `username`; returns the newest.
    pub async fn outbox_after(&self, via: u64, username: &str, kind: &str, seen: usize) -> Result<OutboxMessageType> {
        poll_until(
            &format!("message #{} of kind {kind} for {username} in the outbox", seen + 1),
            Duration::from_secs(10),
            Duration::from_millis(100),
            || async move {
                let all = self.outbox_messages(via, username, kind).await?;
                Ok((all.len() > seen).then(|| all.last().cloned()).flatten())
            },
        )
        .await
    }

    /// The newest code of `kind` sent to `username` (waits for one): six
    /// digits, carried in the body.
    pub async fn code(&self, via: u64, username: &str, kind: &str) -> Result<String> {
        let m = self.outbox_after(via, username, kind, 0).await?;
        check_code_message(&m)?;
        Ok(m.code)
    }

    // ----- groups ----------------------------------------------------------

    pub async fn create_group(
        &self,
        via: u64,
        name: &str,
        precedence: Option<i32>,
        permissions: &[&str],
    ) -> Result<GroupType, tonic::Status> {
        let c = self.node(via);
        let r = c
            .admin()
            .create_group(c.req(CreateGroupRequest {
                group_name: name.to_string(),
                user_pool_id: self.pool_id.clone(),
                description: format!("the {name} group"),
                role_arn: String::new(),
                precedence,
                permissions: permissions.iter().map(|s| s.to_string()).collect(),
            }))
            .await?
            .into_inner();
        r.group
            .ok_or_else(|| tonic::Status::internal("test harness: CreateGroup returned no group"))
    }

    pub async fn get_group(&self, via: u64, name: &str) -> Result<GroupType, tonic::Status> {
        let c = self.node(via);
        let r = c
            .admin()
            .get_group(c.req(GetGroupRequest {
                group_name: name.to_string(),
                user_pool_id: self.pool_id.clone(),
                consistent_read: true,
            }))
            .await?
            .into_inner();
        r.group
            .ok_or_else(|| tonic::Status::internal("test harness: GetGroup returned no group"))
    }

    pub async fn update_group(&self, via: u64, req: UpdateGroupRequest) -> Result<GroupType, tonic::Status> {
        let c = self.node(via);
        let r = c.admin().update_group(c.req(req)).await?.into_inner();
        r.group
            .ok_or_else(|| tonic::Status::internal("test harness: UpdateGroup returned no group"))
    }

    pub async fn delete_group(&self, via: u64, name: &str) -> Result<(), tonic::Status> {
        let c = self.node(via);
        c.admin()
            .delete_group(c.req(DeleteGroupRequest {
                group_name: name.to_string(),
                user_pool_id: self.pool_id.clone(),
            }))
            .await?;
        Ok(())
    }

    pub async fn add_to_group(&self, via: u64, username: &str, group: &str) -> Result<(), tonic::Status> {
        let c = self.node(via);
        c.admin()
            .admin_add_user_to_group(c.req(AdminAddUserToGroupRequest {
                user_pool_id: self.pool_id.clone(),
                username: username.to_string(),
                group_name: group.to_string(),
            }))
            .await?;
        Ok(())
    }

    pub async fn remove_from_group(&self, via: u64, username: &str, group: &str) -> Result<(), tonic::Status> {
        let c = self.node(via);
        c.admin()
            .admin_remove_user_from_group(c.req(AdminRemoveUserFromGroupRequest {
                user_pool_id: self.pool_id.clone(),
                username: username.to_string(),
                group_name: group.to_string(),
            }))
            .await?;
        Ok(())
    }

    /// Every group of the pool, `limit` per page, checking that no group
    /// appears twice; returns the groups in listing order and the number
    /// of pages.
    pub async fn list_groups_all(&self, via: u64, limit: i32) -> Result<(Vec<GroupType>, usize)> {
        let c = self.node(via);
        let mut out = Vec::new();
        let mut next_token = String::new();
        for page_no in 1..=1000 {
            let page = c
                .admin()
                .list_groups(c.req(ListGroupsRequest {
                    user_pool_id: self.pool_id.clone(),
                    limit,
                    next_token: next_token.clone(),
                    consistent_read: true,
                }))
                .await
                .map_err(status_err(&format!("ListGroups page {page_no}")))?
                .into_inner();
            ensure!(
                limit <= 0 || page.groups.len() <= limit as usize,
                "ListGroups page {page_no} has {} groups, more than the limit {limit}",
                page.groups.len()
            );
            out.extend(page.groups);
            if page.next_token.is_empty() {
                check_unique("ListGroups", out.iter().map(|g| g.group_name.clone()))?;
                return Ok((out, page_no));
            }
            next_token = page.next_token;
        }
        bail!("ListGroups did not end after 1000 pages")
    }

    /// Every group of `username`, `limit` per page.
    pub async fn groups_for_user_all(&self, via: u64, username: &str, limit: i32) -> Result<Vec<String>> {
        let c = self.node(via);
        let mut out = Vec::new();
        let mut next_token = String::new();
        for page_no in 1..=1000 {
            let page = c
                .admin()
                .admin_list_groups_for_user(c.req(AdminListGroupsForUserRequest {
                    username: username.to_string(),
                    user_pool_id: self.pool_id.clone(),
                    limit,
                    next_token: next_token.clone(),
                    consistent_read: true,
                }))
                .await
                .map_err(status_err(&format!("AdminListGroupsForUser {username} page {page_no}")))?
                .into_inner();
            ensure!(
                limit <= 0 || page.groups.len() <= limit as usize,
                "AdminListGroupsForUser page {page_no} has {} groups, more than the limit {limit}",
                page.groups.len()
            );
            out.extend(page.groups.into_iter().map(|g| g.group_name));
            if page.next_token.is_empty() {
                check_unique("AdminListGroupsForUser", out.iter().cloned())?;
                return Ok(out);
            }
            next_token = page.next_token;
        }
        bail!("AdminListGroupsForUser did not end after 1000 pages")
    }

    /// Every member of `group` (usernames, sorted), `limit` per page.
    pub async fn users_in_group_all(&self, via: u64, group: &str, limit: i32) -> Result<Vec<String>> {
        let c = self.node(via);
        let mut out = Vec::new();
        let mut next_token = String::new();
        for page_no in 1..=1000 {
            let page = c
                .admin()
                .list_users_in_group(c.req(ListUsersInGroupRequest {
                    user_pool_id: self.pool_id.clone(),
                    group_name: group.to_string(),
                    limit,
                    next_token: next_token.clone(),
                    consistent_read: true,
                }))
                .await
                .map_err(status_err(&format!("ListUsersInGroup {group} page {page_no}")))?
                .into_inner();
            ensure!(
                limit <= 0 || page.users.len() <= limit as usize,
                "ListUsersInGroup page {page_no} has {} users, more than the limit {limit}",
                page.users.len()
            );
            out.extend(page.users.into_iter().map(|u| u.username));
            if page.next_token.is_empty() {
                check_unique("ListUsersInGroup", out.iter().cloned())?;
                out.sort();
                return Ok(out);
            }
            next_token = page.next_token;
        }
        bail!("ListUsersInGroup did not end after 1000 pages")
    }

    // ----- ListUsers ---------------------------------------------------------

    /// One `ListUsers` page, raw.
    pub async fn list_users(
        &self,
        via: u64,
        filter: &str,
        limit: i32,
        pagination_token: &str,
        attributes_to_get: &[&str],
    ) -> Result<ListUsersResponse, tonic::Status> {
        let c = self.node(via);
        Ok(c.admin()
            .list_users(c.req(ListUsersRequest {
                user_pool_id: self.pool_id.clone(),
                attributes_to_get: attributes_to_get.iter().map(|s| s.to_string()).collect(),
                limit,
                pagination_token: pagination_token.to_string(),
                filter: filter.to_string(),
                consistent_read: true,
            }))
            .await?
            .into_inner())
    }

    /// Every user matching `filter`, `limit` per page: checks page sizes
    /// (every page but the last is full) and that no user appears twice.
    /// Returns the users in listing order and the number of pages.
    pub async fn list_users_all(
        &self,
        via: u64,
        filter: &str,
        limit: i32,
        attributes_to_get: &[&str],
    ) -> Result<(Vec<UserType>, usize)> {
        let mut out = Vec::new();
        let mut token = String::new();
        let page_size = if limit == 0 { 60 } else { limit as usize };
        for page_no in 1..=100_000 {
            let page = self
                .list_users(via, filter, limit, &token, attributes_to_get)
                .await
                .map_err(status_err(&format!(
                    "ListUsers {filter:?} limit {limit} page {page_no} on node {via}"
                )))?;
            ensure!(
                page.users.len() <= page_size,
                "ListUsers {filter:?}: page {page_no} has {} users, more than the limit {page_size}",
                page.users.len()
            );
            let done = page.pagination_token.is_empty();
            ensure!(
                done || page.users.len() == page_size,
                "ListUsers {filter:?}: page {page_no} has {} users but a pagination token (limit {page_size})",
                page.users.len()
            );
            out.extend(page.users);
            if done {
                check_unique(
                    &format!("ListUsers {filter:?} limit {limit}"),
                    out.iter().map(|u| u.username.clone()),
                )?;
                return Ok((out, page_no));
            }
            token = page.pagination_token;
        }
        bail!("ListUsers {filter:?} did not end after 100000 pages")
    }

    // ----- audit -----------------------------------------------------------

    /// One page of `AdminListUserAuthEvents`, raw.
    pub async fn auth_events_page(
        &self,
        via: u64,
        username: &str,
        max_results: i32,
        next_token: &str,
    ) -> Result<AdminListUserAuthEventsResponse, tonic::Status> {
        let c = self.node(via);
        Ok(c.admin()
            .admin_list_user_auth_events(c.req(AdminListUserAuthEventsRequest {
                user_pool_id: self.pool_id.clone(),
                username: username.to_string(),
                max_results,
                next_token: next_token.to_string(),
                consistent_read: true,
            }))
            .await?
            .into_inner())
    }

    /// Every audit event (of `username`, or of the pool when empty),
    /// `max_results` per page, in listing order; checks page sizes and
    /// unique event ids (the order is checked by [`newest_first`]). Returns
    /// the events and the number of pages.
    pub async fn auth_events_all(
        &self,
        via: u64,
        username: &str,
        max_results: i32,
    ) -> Result<(Vec<AuthEventType>, usize)> {
        let mut out: Vec<AuthEventType> = Vec::new();
        let mut token = String::new();
        let page_size = if max_results == 0 { 60 } else { max_results as usize };
        for page_no in 1..=10_000 {
            let page = self
                .auth_events_page(via, username, max_results, &token)
                .await
                .map_err(status_err(&format!(
                    "AdminListUserAuthEvents {username:?} page {page_no} on node {via}"
                )))?;
            ensure!(
                page.auth_events.len() <= page_size,
                "AdminListUserAuthEvents: page {page_no} has {} events, more than {page_size}",
                page.auth_events.len()
            );
            out.extend(page.auth_events);
            if page.next_token.is_empty() {
                check_unique(
                    "AdminListUserAuthEvents event ids",
                    out.iter().map(|e| e.event_id.clone()),
                )?;
                return Ok((out, page_no));
            }
            token = page.next_token;
        }
        bail!("AdminListUserAuthEvents did not end after 10000 pages")
    }

    // ----- tokens ----------------------------------------------------------

    /// Verifies `token` with `jsonwebtoken` against node `via`'s JWKS
    /// (EdDSA, `iss`, `exp`) and returns its claims; checks `token_use`.
    pub async fn verified_claims(&self, via: u64, token: &str, token_use: &str) -> Result<Value> {
        let header = jsonwebtoken::decode_header(token).context("decoding the JWT header")?;
        ensure!(header.alg == Algorithm::EdDSA, "alg {:?}, not EdDSA", header.alg);
        let kid = header.kid.ok_or_else(|| anyhow!("the JWT header has no kid"))?;
        let addr = self.api_addrs[(via - 1) as usize].clone();
        let set = poll_until(
            &format!("kid {kid} in node {via}'s JWKS"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                let addr = addr.clone();
                let pool_id = self.pool_id.clone();
                let kid = kid.clone();
                async move {
                    let set = fetch_jwks(&addr, &pool_id).await?;
                    Ok(set.find(&kid).is_some().then_some(set))
                }
            },
        )
        .await?;
        let aud = (token_use == "id").then_some(self.client_id.as_str());
        let claims = verify_with_jwks(token, &set, &self.issuer, aud)?;
        ensure!(
            claims["token_use"] == token_use,
            "token_use is {}, expected {token_use}",
            claims["token_use"]
        );
        Ok(claims)
    }

    /// Tessera's own resource-server verifier for this pool, built from
    /// node `via`'s JWKS (as an API behind Tessera would build it).
    pub async fn library_verifier(&self, via: u64) -> Result<tessera::auth::verifier::TokenVerifier> {
        let addr = &self.api_addrs[(via - 1) as usize];
        let r = http_get(addr, &format!("/{}/.well-known/jwks.json", self.pool_id)).await?;
        ensure!(r.status == 200, "jwks.json on {addr}: {} {}", r.status, r.body);
        let jwks: tessera::auth::jwks::Jwks =
            serde_json::from_str(&r.body).context("tessera cannot parse its own JWKS")?;
        Ok(tessera::auth::verifier::TokenVerifier::new(&self.issuer, &jwks))
    }

    /// Claims of both tokens of a sign-in, verified on node `via`'s JWKS.
    pub async fn claims(&self, via: u64, t: &Tokens) -> Result<(Value, Value)> {
        let id = self.verified_claims(via, &t.id_token, "id").await?;
        let access = self.verified_claims(via, &t.access_token, "access").await?;
        Ok((id, access))
    }
}

/// A code message: six digits, carried in the body.
pub fn check_code_message(m: &OutboxMessageType) -> Result<()> {
    ensure!(
        m.code.len() == 6 && m.code.chars().all(|c| c.is_ascii_digit()),
        "{} code {:?} is not six digits",
        m.kind,
        m.code
    );
    ensure!(
        m.body.contains(&m.code),
        "the {} message body does not carry the code: {:?}",
        m.kind,
        m.body
    );
    Ok(())
}

/// Fails unless `events` are newest first in commit order (`event_id`
/// descending), and the events committed together with their change (all
/// but successful sign-ins, which a node commits in batches) also descend
/// by `creation_date`.
pub fn newest_first(what: &str, events: &[AuthEventType]) -> Result<()> {
    let ids: Vec<u64> = events
        .iter()
        .map(|e| {
            e.event_id
                .parse::<u64>()
                .map_err(|_| anyhow::anyhow!("{what}: event id {:?}", e.event_id))
        })
        .collect::<Result<_>>()?;
    ensure!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "{what}: event ids are not strictly descending: {ids:?}"
    );
    let synchronous: Vec<&AuthEventType> = events
        .iter()
        .filter(|e| !(e.event_type == "SignIn" && e.event_response == "Pass"))
        .collect();
    for w in synchronous.windows(2) {
        ensure!(
            w[0].creation_date >= w[1].creation_date,
            "{what}: events are not newest first: {} {} ({}, at {}) is listed before {} {} ({}, at {})",
            w[0].event_type,
            w[0].event_response,
            w[0].detail,
            w[0].creation_date,
            w[1].event_type,
            w[1].event_response,
            w[1].detail,
            w[1].creation_date
        );
    }
    Ok(())
}

/// Fails if `items` holds a duplicate.
pub fn check_unique(what: &str, items: impl IntoIterator<Item = String>) -> Result<()> {
    let mut seen = BTreeSet::new();
    for i in items {
        ensure!(seen.insert(i.clone()), "{what}: {i:?} appears twice");
    }
    Ok(())
}

/// A six-digit code that differs from `code`.
pub fn wrong_code(code: &str) -> String {
    if code == "000000" {
        "111111".into()
    } else {
        "000000".into()
    }
}

/// The `issuer` of a pool's discovery document on `addr`, polled for a few
/// seconds (a node serves it once it applied the pool's creation).
pub async fn discovery_issuer_eventually(addr: &str, pool_id: &str) -> Result<String> {
    poll_until(
        &format!("the discovery document of {pool_id} on {addr}"),
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async move {
            let r = http_get(addr, &format!("/{pool_id}/.well-known/openid-configuration")).await?;
            ensure!(r.status == 200, "openid-configuration: {} {}", r.status, r.body);
            let doc: Value = serde_json::from_str(&r.body).context("openid-configuration is not JSON")?;
            let issuer = doc["issuer"]
                .as_str()
                .ok_or_else(|| anyhow!("openid-configuration has no issuer: {doc}"))?;
            Ok(Some(issuer.to_string()))
        },
    )
    .await
}

/// GETs and parses `/{pool_id}/.well-known/jwks.json` from `addr`.
pub async fn fetch_jwks(addr: &str, pool_id: &str) -> Result<JwkSet> {
    let r = http_get(addr, &format!("/{pool_id}/.well-known/jwks.json")).await?;
    ensure!(r.status == 200, "jwks.json on {addr}: {} {}", r.status, r.body);
    serde_json::from_str(&r.body).context("jsonwebtoken cannot parse the JWKS")
}

/// Verifies `token` with `jsonwebtoken` and nothing but `set`.
pub fn verify_with_jwks(token: &str, set: &JwkSet, issuer: &str, aud: Option<&str>) -> Result<Value> {
    let header = jsonwebtoken::decode_header(token).context("decoding the JWT header")?;
    let kid = header.kid.ok_or_else(|| anyhow!("the JWT header has no kid"))?;
    let jwk = set.find(&kid).ok_or_else(|| anyhow!("kid {kid} is not in the JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).context("DecodingKey::from_jwk")?;
    let mut v = Validation::new(Algorithm::EdDSA);
    v.leeway = 5;
    v.set_issuer(&[issuer]);
    match aud {
        Some(aud) => {
            v.set_audience(&[aud]);
            v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        }
        None => {
            v.validate_aud = false;
            v.set_required_spec_claims(&["exp", "iss", "sub"]);
        }
    }
    let data = jsonwebtoken::decode::<Value>(token, &key, &v).context("jsonwebtoken::decode")?;
    Ok(data.claims)
}

/// The median of some durations (the upper one for an even count).
pub fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s.get(s.len() / 2).copied().unwrap_or_default()
}

/// The `sub` attribute of a listed user.
pub fn sub_of(u: &UserType) -> Result<String> {
    admin_attr(&u.attributes, "sub")
        .map(str::to_string)
        .ok_or_else(|| anyhow!("listed user {} has no sub attribute: {:?}", u.username, u.attributes))
}

/// Attribute map of a listed user.
pub fn attr_map(u: &UserType) -> BTreeMap<String, String> {
    u.attributes.iter().map(|a| (a.name.clone(), a.value.clone())).collect()
}
