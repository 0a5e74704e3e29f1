//! The user-pool fixture every API-level test builds on: pools, app
//! clients and users made through the real gRPC API, codes read from the
//! replicated outbox, exception checks, and token verification with the
//! independent `jsonwebtoken` crate against the JWKS each node serves.
//!
//! [`Fixture`] is the base; `common::directory::Dir` adds the directory
//! calls (groups, listings, audit) on top of it rather than repeating it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::Sha256;
use tessera::client::Client;
use tessera::proto::*;
use tonic::Code;

use crate::common::{http_get, poll_until, TestCluster};

/// A password that satisfies the default policy (length, lower, upper,
/// digit, symbol).
pub const GOOD_PASSWORD: &str = "Corr3ct-Horse!";
/// Another one, for password changes.
pub const OTHER_PASSWORD: &str = "B4ttery-Staple?";

/// The exception-name metadata key every Tessera error carries.
pub const EXCEPTION_HEADER: &str = "x-tessera-exception";

/// Cheap argon2 so that tests spend their time on the flows, not on hashing.
pub fn fast_hashing() -> Option<PasswordHashingType> {
    Some(PasswordHashingType {
        memory_kib: 8192,
        iterations: 1,
        parallelism: 1,
    })
}

/// Seconds since the epoch, as the test's clock sees them.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Cognito's `SECRET_HASH`: Base64(HMAC-SHA256(secret, username + client_id)).
pub fn secret_hash(secret: &str, username: &str, client_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    mac.update(client_id.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// `AttributeType` list from pairs.
pub fn attrs(pairs: &[(&str, &str)]) -> Vec<AttributeType> {
    pairs
        .iter()
        .map(|(n, v)| AttributeType {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect()
}

/// Owned pairs, collected into whatever map type the generated code uses
/// for `auth_parameters` and `challenge_responses` (or a `Vec` to extend).
pub fn params<M: FromIterator<(String, String)>>(pairs: &[(&str, &str)]) -> M {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
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

/// Requires `r` to have failed with `exception` (see [`check_exception`]);
/// returns the status, for tests that look further into it.
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

/// The two spellings of "too large for the transport" tonic uses.
pub fn expect_too_large<T: std::fmt::Debug>(what: &str, r: Result<T, tonic::Status>) -> Result<()> {
    match r {
        Ok(v) => bail!("{what}: expected OUT_OF_RANGE or RESOURCE_EXHAUSTED, got success: {v:?}"),
        Err(s) => {
            ensure!(
                matches!(s.code(), Code::OutOfRange | Code::ResourceExhausted),
                "{what}: expected OUT_OF_RANGE or RESOURCE_EXHAUSTED, got {:?}: {}",
                s.code(),
                s.message()
            );
            println!("  ok: {what} -> {:?} {}", s.code(), s.message());
            Ok(())
        }
    }
}

/// A pool, an app client and a connected client per node, for one test.
pub struct Fixture {
    /// `clients[i]` talks to node `i + 1`.
    pub clients: Vec<Client>,
    /// `host:port` of each node's api, same indexing.
    pub api_addrs: Vec<String>,
    pub pool_id: String,
    pub client_id: String,
    /// The app client's secret, when it was created with one.
    pub client_secret: Option<String>,
    /// `iss` of this pool's tokens, from the discovery document.
    pub issuer: String,
}

/// What [`Fixture::create`] sets up.
#[derive(Debug, Clone)]
pub struct PoolSpec<'a> {
    pub name: &'a str,
    pub alias_attributes: &'a [&'a str],
    pub generate_secret: bool,
}

impl Default for PoolSpec<'_> {
    fn default() -> Self {
        PoolSpec {
            name: "auth-test",
            alias_attributes: &[],
            generate_secret: false,
        }
    }
}

/// A custom attribute to declare at pool creation.
#[derive(Debug, Clone, Copy)]
pub struct CustomAttr<'a> {
    /// Without the `custom:` prefix.
    pub name: &'a str,
    pub indexed: bool,
}

/// Everything pool creation can vary, for [`Fixture::create_pool`]: the
/// union of what [`PoolSpec`] and `directory::DirSpec` ask for.
#[derive(Debug, Clone)]
pub struct PoolSetup<'a> {
    pub name: &'a str,
    pub alias_attributes: &'a [&'a str],
    pub custom: &'a [CustomAttr<'a>],
    /// Cheap argon2 (else the pool's default cost).
    pub fast: bool,
    pub generate_secret: bool,
}

/// The tokens of one sign-in.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub id_token: String,
    pub access_token: String,
    /// Empty in refresh replies.
    pub refresh_token: String,
    pub expires_in: i32,
    pub token_type: String,
}

impl Tokens {
    pub fn from_result(what: &str, r: Option<AuthenticationResultType>) -> Result<Self> {
        let r = r.ok_or_else(|| anyhow!("{what}: no authentication_result"))?;
        ensure!(r.token_type == "Bearer", "{what}: token_type {:?}", r.token_type);
        ensure!(!r.id_token.is_empty(), "{what}: empty id_token");
        ensure!(!r.access_token.is_empty(), "{what}: empty access_token");
        ensure!(r.expires_in > 0, "{what}: expires_in {}", r.expires_in);
        Ok(Tokens {
            id_token: r.id_token,
            access_token: r.access_token,
            refresh_token: r.refresh_token,
            expires_in: r.expires_in,
            token_type: r.token_type,
        })
    }

    /// The same checks for the admin flows' result, which has the same
    /// fields under another message name.
    pub fn from_admin_result(what: &str, r: Option<AdminAuthenticationResultType>) -> Result<Self> {
        let r = r.map(|r| AuthenticationResultType {
            access_token: r.access_token,
            expires_in: r.expires_in,
            token_type: r.token_type,
            refresh_token: r.refresh_token,
            id_token: r.id_token,
            new_device_metadata: r.new_device_metadata,
        });
        Self::from_result(what, r)
    }
}

impl Fixture {
    /// Creates a pool (email required and mutable, cheap argon2) through
    /// node 1 and an app client through node 2, and connects to every node.
    pub async fn create(c: &TestCluster, spec: PoolSpec<'_>) -> Result<Self> {
        let setup = PoolSetup {
            name: spec.name,
            alias_attributes: spec.alias_attributes,
            custom: &[],
            fast: true,
            generate_secret: spec.generate_secret,
        };
        Self::create_pool(c, setup).await
    }

    /// Creates a pool with an email attribute (required, mutable,
    /// auto-verified) and `setup.custom`, through node 1, and an app client
    /// named `<name>-app` through node 2; connects to every node and reads
    /// the issuer from node 1's discovery document.
    pub async fn create_pool(c: &TestCluster, setup: PoolSetup<'_>) -> Result<Self> {
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
        schema.extend(setup.custom.iter().map(|a| SchemaAttributeType {
            name: format!("custom:{}", a.name),
            attribute_data_type: "String".into(),
            mutable: true,
            required: false,
            indexed: a.indexed,
            ..Default::default()
        }));
        let pool = clients[0]
            .create_user_pool_with(CreateUserPoolRequest {
                pool_name: setup.name.to_string(),
                alias_attributes: setup.alias_attributes.iter().map(|s| s.to_string()).collect(),
                auto_verified_attributes: vec!["email".into()],
                schema,
                password_hashing: if setup.fast { fast_hashing() } else { None },
                ..Default::default()
            })
            .await
            .map_err(status_err("CreateUserPool"))?;
        ensure!(!pool.id.is_empty(), "CreateUserPool returned no id");
        let mut fx = Fixture {
            clients,
            api_addrs,
            pool_id: pool.id,
            client_id: String::new(),
            client_secret: None,
            issuer: String::new(),
        };
        let app_name = format!("{}-app", setup.name);
        let created = fx
            .create_app_client_with(2, &app_name, &[], setup.generate_secret)
            .await?;
        let client_secret = if setup.generate_secret {
            ensure!(
                !created.client_secret.is_empty(),
                "generate_secret: true returned no client_secret"
            );
            Some(created.client_secret.clone())
        } else {
            ensure!(
                created.client_secret.is_empty(),
                "a client created without generate_secret has a secret"
            );
            None
        };
        fx.client_id = created.client_id;
        fx.client_secret = client_secret;
        // Node 1 may not have applied the pool yet if another node leads.
        fx.issuer = discovery_issuer_eventually(&fx.api_addrs[0], &fx.pool_id).await?;
        Ok(fx)
    }

    /// Another app client of this pool, through node `via` (modulo the
    /// node count); empty `flows` means the defaults. Returns its id.
    pub async fn create_app_client(&self, via: u64, name: &str, flows: &[&str]) -> Result<String> {
        Ok(self.create_app_client_with(via, name, flows, false).await?.client_id)
    }

    /// [`Fixture::create_app_client`], optionally with a secret; returns
    /// the whole client description.
    pub async fn create_app_client_with(
        &self,
        via: u64,
        name: &str,
        flows: &[&str],
        generate_secret: bool,
    ) -> Result<UserPoolClientType> {
        self.create_app_client_from(
            via,
            CreateUserPoolClientRequest {
                client_name: name.to_string(),
                explicit_auth_flows: flows.iter().map(|s| s.to_string()).collect(),
                generate_secret,
                ..Default::default()
            },
        )
        .await
    }

    /// `CreateUserPoolClient` of `request` in this pool (its
    /// `user_pool_id` is filled in) through node `via`, for settings the
    /// other helpers do not take (e.g. `prevent_user_existence_errors`).
    pub async fn create_app_client_from(
        &self,
        via: u64,
        request: CreateUserPoolClientRequest,
    ) -> Result<UserPoolClientType> {
        let admin = &self.clients[((via - 1) as usize) % self.clients.len()];
        let created = admin
            .admin()
            .create_user_pool_client(admin.req(CreateUserPoolClientRequest {
                user_pool_id: self.pool_id.clone(),
                ..request
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
        Ok(created)
    }

    /// The client for node `id` (1-based).
    pub fn node(&self, id: u64) -> &Client {
        &self.clients[(id - 1) as usize]
    }

    pub fn node_ids(&self) -> Vec<u64> {
        (1..=self.clients.len() as u64).collect()
    }

    /// `SECRET_HASH` for `username` when the client has a secret, else "".
    pub fn hash_for(&self, username: &str) -> String {
        match &self.client_secret {
            Some(s) => secret_hash(s, username, &self.client_id),
            None => String::new(),
        }
    }

    /// A `SignUp` request with an email and the right `SECRET_HASH`.
    pub fn sign_up_request(&self, username: &str, password: &str, email: &str) -> SignUpRequest {
        SignUpRequest {
            client_id: self.client_id.clone(),
            secret_hash: self.hash_for(username),
            username: username.to_string(),
            password: password.to_string(),
            user_attributes: attrs(&[("email", email)]),
            ..Default::default()
        }
    }

    /// `SignUp` through node `via`.
    pub async fn sign_up(&self, via: u64, req: SignUpRequest) -> Result<SignUpResponse, tonic::Status> {
        Ok(self.node(via).auth().sign_up(req).await?.into_inner())
    }

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
    /// `kind` for `username`; returns the newest. Polls, since a courier
    /// may store a message just after the write that caused it.
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

    /// The newest outbox message of `kind` for `username` in this pool
    /// (waits for one).
    pub async fn outbox_message(&self, via: u64, username: &str, kind: &str) -> Result<OutboxMessageType> {
        self.outbox_after(via, username, kind, 0).await
    }

    /// The newest code of `kind` sent to `username` (waits for one): six
    /// digits, carried in the body.
    pub async fn code(&self, via: u64, username: &str, kind: &str) -> Result<String> {
        let m = self.outbox_message(via, username, kind).await?;
        check_code_message(&m)?;
        Ok(m.code)
    }

    /// The confirmation code sent to `username`.
    pub async fn confirmation_code(&self, via: u64, username: &str) -> Result<String> {
        self.code(via, username, "CONFIRM_SIGN_UP").await
    }

    /// `ConfirmSignUp` through node `via`.
    pub async fn confirm(&self, via: u64, username: &str, code: &str) -> Result<(), tonic::Status> {
        self.node(via)
            .auth()
            .confirm_sign_up(ConfirmSignUpRequest {
                client_id: self.client_id.clone(),
                secret_hash: self.hash_for(username),
                username: username.to_string(),
                confirmation_code: code.to_string(),
                force_alias_creation: false,
            })
            .await?;
        Ok(())
    }

    /// Signs up through `via`, reads the code and confirms through `via`.
    pub async fn confirmed_user(&self, via: u64, username: &str, password: &str, email: &str) -> Result<String> {
        let r = self
            .sign_up(via, self.sign_up_request(username, password, email))
            .await
            .map_err(status_err(&format!("SignUp {username}")))?;
        let code = self.confirmation_code(via, username).await?;
        self.confirm(via, username, &code)
            .await
            .map_err(status_err(&format!("ConfirmSignUp {username}")))?;
        Ok(r.user_sub)
    }

    /// `InitiateAuth` with `auth_parameters`, raw.
    pub async fn initiate(
        &self,
        via: u64,
        flow: &str,
        auth_parameters: Vec<(String, String)>,
    ) -> Result<InitiateAuthResponse, tonic::Status> {
        self.initiate_as(via, &self.client_id, flow, auth_parameters).await
    }

    /// `InitiateAuth` as app client `client_id` (another client of this
    /// pool, or a wrong one), raw.
    pub async fn initiate_as(
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

    /// `USER_PASSWORD_AUTH` with the right `SECRET_HASH` (if any), raw.
    pub async fn password_auth(
        &self,
        via: u64,
        username: &str,
        password: &str,
    ) -> Result<InitiateAuthResponse, tonic::Status> {
        let mut p: Vec<(String, String)> = params(&[("USERNAME", username), ("PASSWORD", password)]);
        if self.client_secret.is_some() {
            p.push(("SECRET_HASH".into(), self.hash_for(username)));
        }
        self.initiate(via, "USER_PASSWORD_AUTH", p).await
    }

    /// A password sign-in that must yield tokens, with a refresh token.
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

    /// `REFRESH_TOKEN_AUTH`, raw. `username` is sent as `USERNAME` and used
    /// for `SECRET_HASH` when the client has a secret.
    pub async fn refresh_raw(
        &self,
        via: u64,
        refresh_token: &str,
        username: &str,
    ) -> Result<InitiateAuthResponse, tonic::Status> {
        let mut p: Vec<(String, String)> = params(&[("REFRESH_TOKEN", refresh_token)]);
        if self.client_secret.is_some() {
            p.push(("USERNAME".into(), username.to_string()));
            p.push(("SECRET_HASH".into(), self.hash_for(username)));
        }
        self.initiate(via, "REFRESH_TOKEN_AUTH", p).await
    }

    /// A refresh that must yield new id and access tokens and no refresh
    /// token.
    pub async fn refresh(&self, via: u64, refresh_token: &str, username: &str) -> Result<Tokens> {
        let what = format!("REFRESH_TOKEN_AUTH for {username} on node {via}");
        let r = self
            .refresh_raw(via, refresh_token, username)
            .await
            .map_err(status_err(&what))?;
        ensure!(
            r.challenge_name.is_empty(),
            "{what}: unexpected challenge {:?}",
            r.challenge_name
        );
        let t = Tokens::from_result(&what, r.authentication_result)?;
        ensure!(
            t.refresh_token.is_empty(),
            "{what}: a refresh reply must not carry a refresh token"
        );
        Ok(t)
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

    /// This pool's JWKS as node `via` serves it: the raw JSON (shape
    /// checked) and the `jsonwebtoken` key set parsed from it.
    pub async fn jwks(&self, via: u64) -> Result<(Value, JwkSet)> {
        fetch_jwks(&self.api_addrs[(via - 1) as usize], &self.pool_id).await
    }

    /// Polls node `via`'s JWKS until it lists `kid` (a key published through
    /// Raft may reach a follower a moment after the signing node).
    pub async fn jwks_with(&self, via: u64, kid: &str) -> Result<JwkSet> {
        let addr = self.api_addrs[(via - 1) as usize].clone();
        let pool_id = self.pool_id.clone();
        poll_until(
            &format!("kid {kid} in node {via}'s JWKS"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                let addr = addr.clone();
                let pool_id = pool_id.clone();
                async move {
                    let (_, set) = fetch_jwks(&addr, &pool_id).await?;
                    Ok(set.find(kid).is_some().then_some(set))
                }
            },
        )
        .await
    }

    /// Waits until every node's JWKS lists a key of every node (kids are
    /// `n<node id>-...`). Nodes publish their first key a moment after the
    /// cluster forms; the scenarios start once that is done, and
    /// `signs_only_with_published_keys` checks the moment before.
    pub async fn wait_keys_published(&self) -> Result<Duration> {
        let start = std::time::Instant::now();
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
                        let (_, set) = fetch_jwks(&addr, &pool_id).await?;
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
        Ok(start.elapsed())
    }

    /// Verifies an id token with `jsonwebtoken` against every node's JWKS
    /// (EdDSA only; `iss`, `aud` = client id and `exp` checked); returns the
    /// claims, which must agree across nodes.
    pub async fn verify_id_token_everywhere(&self, token: &str) -> Result<(String, Value)> {
        self.verify_everywhere(token, Some(&self.client_id)).await
    }

    /// Like [`Fixture::verify_id_token_everywhere`] for an access token,
    /// which has no `aud`; its `client_id` claim is checked instead.
    pub async fn verify_access_token_everywhere(&self, token: &str) -> Result<(String, Value)> {
        let (kid, claims) = self.verify_everywhere(token, None).await?;
        ensure!(
            claims["client_id"] == self.client_id.as_str(),
            "access token client_id {} is not {}",
            claims["client_id"],
            self.client_id
        );
        Ok((kid, claims))
    }

    /// Verifies `token` against every node's JWKS, with `aud` when given
    /// (an id token of another app client than the fixture's).
    pub async fn verify_everywhere(&self, token: &str, aud: Option<&str>) -> Result<(String, Value)> {
        let header = jsonwebtoken::decode_header(token).context("decoding the JWT header")?;
        ensure!(
            header.alg == Algorithm::EdDSA,
            "header alg is {:?}, not EdDSA",
            header.alg
        );
        let kid = header.kid.clone().ok_or_else(|| anyhow!("the JWT header has no kid"))?;
        let mut first: Option<Value> = None;
        for id in self.node_ids() {
            let set = self.jwks_with(id, &kid).await?;
            let claims = verify_with_jwks(token, &set, &self.issuer, aud)
                .with_context(|| format!("verifying against node {id}'s JWKS"))?;
            match &first {
                None => first = Some(claims),
                Some(f) => ensure!(*f == claims, "node {id}'s JWKS verified different claims"),
            }
        }
        Ok((kid, first.unwrap_or(Value::Null)))
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

/// The `issuer` of a pool's discovery document on `addr`.
pub async fn discovery_issuer(addr: &str, pool_id: &str) -> Result<String> {
    let r = http_get(addr, &format!("/{pool_id}/.well-known/openid-configuration")).await?;
    ensure!(r.status == 200, "openid-configuration: {} {}", r.status, r.body);
    let doc: Value = serde_json::from_str(&r.body).context("openid-configuration is not JSON")?;
    let issuer = doc["issuer"]
        .as_str()
        .ok_or_else(|| anyhow!("openid-configuration has no issuer: {doc}"))?;
    ensure!(
        issuer.ends_with(&format!("/{pool_id}")),
        "issuer {issuer} does not end with /{pool_id}"
    );
    Ok(issuer.to_string())
}

/// [`discovery_issuer`], polled for a few seconds: a node serves a pool's
/// documents once it has applied the pool's creation.
pub async fn discovery_issuer_eventually(addr: &str, pool_id: &str) -> Result<String> {
    poll_until(
        &format!("the discovery document of {pool_id} on {addr}"),
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async move { discovery_issuer(addr, pool_id).await.map(Some) },
    )
    .await
}

/// Checks the RFC 8037 shape of every key of a JWKS document: `kty` OKP,
/// `crv` Ed25519, `alg` EdDSA, `use` sig, a unique `kid`, a 32-byte `x`,
/// and no private part.
pub fn check_jwks_shape(doc: &Value) -> Result<()> {
    let keys = doc["keys"]
        .as_array()
        .ok_or_else(|| anyhow!("JWKS has no keys array: {doc}"))?;
    ensure!(!keys.is_empty(), "JWKS has no keys");
    let mut kids = std::collections::BTreeSet::new();
    for k in keys {
        ensure!(k["kty"] == "OKP", "kty is not OKP: {k}");
        ensure!(k["crv"] == "Ed25519", "crv is not Ed25519: {k}");
        ensure!(k["alg"] == "EdDSA", "alg is not EdDSA: {k}");
        ensure!(k["use"] == "sig", "use is not sig: {k}");
        ensure!(
            k.get("d").is_none(),
            "a private key part is published: kid {}",
            k["kid"]
        );
        let kid = k["kid"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| anyhow!("no kid: {k}"))?;
        ensure!(kids.insert(kid.to_string()), "kid {kid} appears twice");
        let x = k["x"].as_str().ok_or_else(|| anyhow!("no x: {k}"))?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(x)
            .with_context(|| format!("x of {kid} is not unpadded base64url"))?;
        ensure!(raw.len() == 32, "x of {kid} is {} bytes, not 32", raw.len());
    }
    Ok(())
}

/// GETs `/{pool_id}/.well-known/jwks.json` from `addr`, checks its shape,
/// and parses it with `jsonwebtoken`.
pub async fn fetch_jwks(addr: &str, pool_id: &str) -> Result<(Value, JwkSet)> {
    let r = http_get(addr, &format!("/{pool_id}/.well-known/jwks.json")).await?;
    ensure!(r.status == 200, "jwks.json on {addr}: {} {}", r.status, r.body);
    let doc: Value = serde_json::from_str(&r.body).context("jwks.json is not JSON")?;
    check_jwks_shape(&doc)?;
    let set: JwkSet = serde_json::from_str(&r.body).context("jsonwebtoken cannot parse the JWKS")?;
    Ok((doc, set))
}

/// Verifies `token` with `jsonwebtoken` and nothing but `set`: EdDSA, the
/// key named by the header's kid, `iss`, `exp`, and `aud` when given.
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

/// The `kid` of a token's header.
pub fn kid_of(token: &str) -> Result<String> {
    jsonwebtoken::decode_header(token)
        .context("decoding the JWT header")?
        .kid
        .ok_or_else(|| anyhow!("the JWT header has no kid"))
}

/// A copy of `token` whose payload has `claim` set to `value`, keeping the
/// original signature (so it must no longer verify).
pub fn tamper(token: &str, claim: &str, value: Value) -> Result<String> {
    let parts: Vec<&str> = token.split('.').collect();
    ensure!(parts.len() == 3, "not a compact JWS");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1])?)?;
    payload[claim] = value;
    Ok(format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(serde_json::to_vec(&payload)?),
        parts[2]
    ))
}

fn claim_str<'a>(claims: &'a Value, name: &str) -> Result<&'a str> {
    claims[name]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| anyhow!("claim {name} missing or not a non-empty string: {claims}"))
}

fn claim_int(claims: &Value, name: &str) -> Result<i64> {
    claims[name]
        .as_i64()
        .ok_or_else(|| anyhow!("claim {name} missing or not an integer: {claims}"))
}

/// What the claims of a user's tokens must say.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub sub: &'a str,
    pub username: &'a str,
    pub email: &'a str,
    pub email_verified: bool,
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// Seconds the tokens are valid for (the pool's default: 3600).
    pub validity: i64,
}

/// Checks the Cognito claims of an id token.
pub fn check_id_claims(c: &Value, e: &Expected<'_>) -> Result<()> {
    ensure!(claim_str(c, "sub")? == e.sub, "id sub {} != {}", c["sub"], e.sub);
    ensure!(c["aud"] == e.client_id, "id aud {} != {}", c["aud"], e.client_id);
    ensure!(c["iss"] == e.issuer, "id iss {} != {}", c["iss"], e.issuer);
    ensure!(c["token_use"] == "id", "id token_use {}", c["token_use"]);
    check_times(c, e.validity)?;
    claim_str(c, "jti")?;
    claim_str(c, "origin_jti")?;
    ensure!(
        c["cognito:username"] == e.username,
        "cognito:username {} != {}",
        c["cognito:username"],
        e.username
    );
    ensure!(c["email"] == e.email, "email {} != {}", c["email"], e.email);
    ensure!(
        c["email_verified"] == e.email_verified,
        "email_verified {} != {} (must be a JSON boolean)",
        c["email_verified"],
        e.email_verified
    );
    Ok(())
}

/// Checks the Cognito claims of an access token.
pub fn check_access_claims(c: &Value, e: &Expected<'_>) -> Result<()> {
    ensure!(claim_str(c, "sub")? == e.sub, "access sub {} != {}", c["sub"], e.sub);
    ensure!(c["iss"] == e.issuer, "access iss {} != {}", c["iss"], e.issuer);
    ensure!(
        c["client_id"] == e.client_id,
        "access client_id {} != {}",
        c["client_id"],
        e.client_id
    );
    ensure!(c["token_use"] == "access", "access token_use {}", c["token_use"]);
    ensure!(
        claim_str(c, "scope")?
            .split(' ')
            .any(|s| s == "aws.cognito.signin.user.admin"),
        "access scope {} lacks aws.cognito.signin.user.admin",
        c["scope"]
    );
    check_times(c, e.validity)?;
    claim_str(c, "jti")?;
    claim_str(c, "origin_jti")?;
    ensure!(
        c["username"] == e.username,
        "access username {} != {}",
        c["username"],
        e.username
    );
    ensure!(
        c.get("email").is_none(),
        "attributes do not belong in access tokens: {c}"
    );
    Ok(())
}

fn check_times(c: &Value, validity: i64) -> Result<()> {
    let now = now_secs();
    let iat = claim_int(c, "iat")?;
    let exp = claim_int(c, "exp")?;
    let auth_time = claim_int(c, "auth_time")?;
    ensure!((iat - now).abs() <= 120, "iat {iat} is far from now {now}");
    ensure!(exp == iat + validity, "exp {exp} != iat {iat} + {validity}");
    ensure!(
        auth_time <= iat && auth_time > now - 3600,
        "auth_time {auth_time} is not a recent time before iat {iat}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Passwordless sign-in (tests/passwordless.rs; bench-like helpers shared
// with any test that needs USER_AUTH, codes from the outbox or magic links)
// ---------------------------------------------------------------------------

impl Fixture {
    /// Sets the pool's `SignInPolicy` through `UpdateUserPool` on `via`.
    pub async fn set_sign_in_policy(&self, via: u64, factors: &[&str], link_secs: i32) -> Result<UserPoolType> {
        let c = self.node(via);
        c.admin()
            .update_user_pool(c.req(UpdateUserPoolRequest {
                user_pool_id: self.pool_id.clone(),
                policies: Some(UserPoolPolicyType {
                    password_policy: None,
                    sign_in_policy: Some(SignInPolicyType {
                        allowed_first_auth_factors: factors.iter().map(|s| s.to_string()).collect(),
                        magic_link_validity_seconds: link_secs,
                    }),
                }),
                ..Default::default()
            }))
            .await
            .map_err(status_err("UpdateUserPool sign_in_policy"))?
            .into_inner()
            .user_pool
            .ok_or_else(|| anyhow!("UpdateUserPool returned no pool"))
    }

    /// `InitiateAuth(USER_AUTH)` as `client_id`, with `PREFERRED_CHALLENGE`
    /// when given and `extra` parameters, raw.
    pub async fn user_auth_as(
        &self,
        via: u64,
        client_id: &str,
        username: &str,
        preferred: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<InitiateAuthResponse, tonic::Status> {
        let mut p: Vec<(String, String)> = params(&[("USERNAME", username)]);
        if let Some(c) = preferred {
            p.push(("PREFERRED_CHALLENGE".into(), c.into()));
        }
        p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.initiate_as(via, client_id, "USER_AUTH", p).await
    }

    /// `RespondToAuthChallenge` as `client_id`, raw.
    pub async fn respond_as(
        &self,
        via: u64,
        client_id: &str,
        challenge: &str,
        session: &str,
        responses: &[(&str, &str)],
    ) -> Result<RespondToAuthChallengeResponse, tonic::Status> {
        Ok(self
            .node(via)
            .auth()
            .respond_to_auth_challenge(RespondToAuthChallengeRequest {
                client_id: client_id.into(),
                challenge_name: challenge.into(),
                session: session.into(),
                challenge_responses: params(responses),
            })
            .await?
            .into_inner())
    }

    /// The `SIGN_IN_CODE` message sent to `username` after `seen` earlier
    /// ones (waits for it): its code, checked to be `digits` long and in
    /// the body.
    pub async fn sign_in_code_after(&self, via: u64, username: &str, seen: usize, digits: usize) -> Result<String> {
        let m = self.outbox_after(via, username, "SIGN_IN_CODE", seen).await?;
        ensure!(
            m.code.len() == digits && m.code.bytes().all(|b| b.is_ascii_digit()),
            "sign-in code {:?} is not {digits} digits",
            m.code
        );
        ensure!(
            m.body.contains(&m.code),
            "the body does not carry the code: {:?}",
            m.body
        );
        Ok(m.code)
    }

    /// How many messages of `kind` `username` was sent so far.
    pub async fn outbox_count(&self, via: u64, username: &str, kind: &str) -> Result<usize> {
        Ok(self.outbox_messages(via, username, kind).await?.len())
    }
}

/// One HTTP/1.1 request to `addr` (`host:port`), `Connection: close`:
/// the status and the body. For the api port's HTML pages (magic links),
/// which the product's JSON-only client does not fetch.
pub async fn http_request(addr: &str, method: &str, path: &str, form: Option<&str>) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let body = form.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: text/html\r\n");
    if form.is_some() {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("{method} {path}: not an HTTP answer: {text:.200}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Creates an admin access key (SigV4) through `admin` and waits until every node
/// has applied it, so that an SDK's first signed call, on any node, finds
/// it. Returns the key id and its secret.
pub async fn admin_access_key(c: &TestCluster, admin: &Client, description: &str) -> Result<(String, String)> {
    let created = admin
        .admin()
        .create_admin_access_key(admin.req(CreateAdminAccessKeyRequest {
            description: description.into(),
            ..Default::default()
        }))
        .await
        .map_err(status_err("CreateAdminAccessKey"))?
        .into_inner();
    let key_id = created
        .access_key
        .map(|k| k.access_key_id)
        .ok_or_else(|| anyhow!("CreateAdminAccessKey returned no key"))?;
    for id in c.live_ids() {
        let node = c.client(id).await?;
        let key_id = key_id.clone();
        poll_until(
            &format!("key {key_id} on node {id}"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                let (node, key_id) = (node.clone(), key_id.clone());
                async move {
                    let keys = node
                        .admin()
                        .list_admin_access_keys(node.req(ListAdminAccessKeysRequest {}))
                        .await
                        .map_err(status_err("ListAdminAccessKeys"))?
                        .into_inner()
                        .access_keys;
                    Ok(keys.iter().any(|k| k.access_key_id == key_id).then_some(()))
                }
            },
        )
        .await?;
    }
    Ok((key_id, created.secret_access_key))
}
