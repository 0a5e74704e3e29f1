//! Identity pools on a real three-node cluster (issue 10): one identity per
//! person on every node, guests and their upgrade and merge, external
//! OpenID Connect providers and the tokens they must refuse, role mapping
//! (groups, rules, per-user roles, `custom_role_arn`), policy decisions
//! through `Authorize` and offline with `CredentialsVerifier`, developer
//! identities, and malformed input.
//!
//! Every call goes through the real gRPC API of real `tessera` processes;
//! the public calls (GetId, GetCredentialsForIdentity, Authorize) go
//! through clients that carry no admin token. The external provider is
//! `common::oidc_provider`, a real HTTP server on loopback.
//!
//! Run with:
//! `cargo test --test identity -- --test-threads=1 --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::auth::*;
use common::directory::*;
use common::oidc_provider::{KeyKind, OidcTestProvider, PublicKeyBytes};
use common::{http_get, poll_until, RaftTuning, TestCluster};
use serde_json::{json, Value};
use tessera::auth::credentials::{CredentialsVerifier, VerifiedCredentials};
use tessera::client::Client;
use tessera::proto::*;
use tonic::Code;

async fn three_nodes(tuning: RaftTuning) -> TestCluster {
    let started = Instant::now();
    let c = TestCluster::start_with(3, tuning)
        .await
        .expect("a 3-node cluster forms");
    println!("cluster formed in {:?}", started.elapsed());
    c
}

/// A test that runs `$body` on a fresh three-node cluster (default tuning,
/// or `$tuning`) and reports its time; on failure the nodes' logs are
/// printed.
macro_rules! scenario {
    ($name:ident, $body:ident) => {
        scenario!($name, $body, RaftTuning::default());
    };
    ($name:ident, $body:ident, $tuning:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let start = Instant::now();
            let c = three_nodes($tuning).await;
            let r = $body(&c).await;
            println!(
                "{}: {} after {:?}",
                stringify!($name),
                if r.is_ok() { "passed" } else { "FAILED" },
                start.elapsed()
            );
            c.finish(r);
        }
    };
}

// ---------------------------------------------------------------------------
// Harness: the user pool, identity pools, roles, calls
// ---------------------------------------------------------------------------

/// Cognito's provider name for the OpenID tokens of this cluster's
/// identities.
const OPENID_PROVIDER: &str = "cognito-identity.amazonaws.com";
/// The developer provider name of the pools that have one.
const DEV_PROVIDER: &str = "login.idtests";

/// A role's canonical ARN.
fn arn(role: &str) -> String {
    format!("arn:tessera:iam:::role/{role}")
}

/// An owned, ordered map (the generated code's map type).
fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A policy document from `(sid, effect, actions, resources)` statements.
fn policy(statements: &[(&str, &str, &[&str], &[&str])]) -> String {
    let list: Vec<Value> = statements
        .iter()
        .map(|(sid, effect, actions, resources)| {
            let mut s = json!({"Effect": effect, "Action": actions, "Resource": resources});
            if !sid.is_empty() {
                s["Sid"] = json!(sid);
            }
            s
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": list}).to_string()
}

fn without_scheme(url: &str) -> &str {
    url.strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url)
}

/// One test's world: a user pool with an app client (the [`Dir`]
/// fixture), the cluster's public URL, the user pool's provider name as
/// identity pools key it, and a client per node without the admin token
/// for the public calls.
struct World {
    d: Dir,
    public_url: String,
    /// `{public_url without scheme}/{user_pool_id}`.
    provider: String,
    public: Vec<Client>,
}

impl World {
    async fn create(c: &TestCluster, name: &str, custom: &[CustomAttr<'_>]) -> Result<World> {
        let d = Dir::create(
            c,
            DirSpec {
                name,
                custom,
                ..Default::default()
            },
        )
        .await?;
        // Every node signs tokens and credentials here: each must have
        // published its key first.
        d.wait_keys_published().await?;
        let cluster = d
            .node(1)
            .describe_cluster()
            .await
            .map_err(status_err("DescribeCluster"))?;
        let public_url = cluster.public_url.trim_end_matches('/').to_string();
        ensure!(!public_url.is_empty(), "DescribeCluster has no public_url");
        // The id token's `iss` is the same thing, read the other way.
        ensure!(
            d.issuer == format!("{public_url}/{}", d.pool_id),
            "issuer {} is not {public_url}/{}",
            d.issuer,
            d.pool_id
        );
        let provider = format!("{}/{}", without_scheme(&public_url), d.pool_id);
        let mut public = Vec::new();
        for id in 1..=c.nodes.len() as u64 {
            public.push(
                Client::connect(&c.node(id).url(), None)
                    .await
                    .with_context(|| format!("connecting to node {id} without a token"))?,
            );
        }
        Ok(World {
            d,
            public_url,
            provider,
            public,
        })
    }

    /// Waits until every node has applied every write acknowledged so far:
    /// a consistent DescribeIdentityPool (a ReadIndex barrier) on each
    /// node. The public calls read the local state machine, as sign-in
    /// does, so a role change made through one node reaches another's
    /// credentials once that node has applied it.
    async fn everywhere(&self, pool_id: &str) -> Result<()> {
        for via in 1..=self.public.len() as u64 {
            let a = self.admin(via);
            a.identity()
                .describe_identity_pool(a.req(DescribeIdentityPoolRequest {
                    identity_pool_id: pool_id.to_string(),
                }))
                .await
                .map_err(status_err(&format!("DescribeIdentityPool (a barrier) on node {via}")))?;
        }
        Ok(())
    }

    /// The admin client of node `via`.
    fn admin(&self, via: u64) -> &Client {
        self.d.node(via)
    }

    /// The token-less client of node `via`.
    fn public(&self, via: u64) -> &Client {
        &self.public[(via - 1) as usize]
    }

    fn addr(&self, via: u64) -> &str {
        &self.d.api_addrs[(via - 1) as usize]
    }

    /// A confirmed user with `attributes` (an email is added), created by
    /// the admin with a permanent password, signed in through node `via`.
    async fn user(&self, via: u64, username: &str, attributes: &[(&str, &str)]) -> Result<Tokens> {
        let email = format!("{username}@example.com");
        let mut all = vec![("email", email.as_str())];
        all.extend_from_slice(attributes);
        self.d
            .admin_create_user(via, username, &all, "Temp-Passw0rd!")
            .await
            .map_err(status_err(&format!("AdminCreateUser {username}")))?;
        let a = self.admin(via);
        a.admin()
            .admin_set_user_password(a.req(AdminSetUserPasswordRequest {
                user_pool_id: self.d.pool_id.clone(),
                username: username.to_string(),
                password: GOOD_PASSWORD.to_string(),
                permanent: true,
            }))
            .await
            .map_err(status_err(&format!("AdminSetUserPassword {username}")))?;
        self.d.barrier(via).await?;
        self.d.sign_in(via, username, GOOD_PASSWORD).await
    }

    /// A group of the user pool with a role ARN and a precedence.
    async fn group(&self, via: u64, name: &str, role_arn: &str, precedence: i32) -> Result<()> {
        let a = self.admin(via);
        let g = a
            .admin()
            .create_group(a.req(CreateGroupRequest {
                group_name: name.to_string(),
                user_pool_id: self.d.pool_id.clone(),
                description: format!("the {name}"),
                role_arn: role_arn.to_string(),
                precedence: Some(precedence),
                permissions: Vec::new(),
            }))
            .await
            .map_err(status_err(&format!("CreateGroup {name}")))?
            .into_inner()
            .group
            .ok_or_else(|| anyhow!("CreateGroup {name} returned no group"))?;
        ensure!(g.role_arn == role_arn, "group {name} has role_arn {:?}", g.role_arn);
        Ok(())
    }

    /// The user pool as a login provider of an identity pool.
    fn cognito_provider(&self) -> CognitoIdentityProvider {
        CognitoIdentityProvider {
            provider_name: self.provider.clone(),
            client_id: self.d.client_id.clone(),
            server_side_token_check: false,
        }
    }

    /// `logins` with this user pool's id token.
    fn login(&self, t: &Tokens) -> BTreeMap<String, String> {
        map(&[(&self.provider, &t.id_token)])
    }

    /// Verifies credentials offline, the way a resource server does: the
    /// identity pool's JWKS from node `via` and `CredentialsVerifier`.
    async fn offline(&self, via: u64, pool_id: &str, session_token: &str) -> Result<VerifiedCredentials> {
        let addr = self.addr(via).to_string();
        let path = format!("/{pool_id}/.well-known/jwks.json");
        let jwks: tessera::auth::jwks::Jwks = poll_until(
            &format!("the JWKS of {pool_id} on node {via}"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                let (addr, path) = (addr.clone(), path.clone());
                async move {
                    let r = http_get(&addr, &path).await?;
                    ensure!(r.status == 200, "{path}: {} {}", r.status, r.body);
                    Ok(Some(serde_json::from_str(&r.body).context("the identity pool's JWKS")?))
                }
            },
        )
        .await?;
        CredentialsVerifier::new(&self.public_url, &jwks)
            .verify(session_token, now_secs())
            .map_err(|e| anyhow!("CredentialsVerifier refused the credentials: {e}"))
    }

    /// Requires `session_token` to carry `role` for `identity_id`, offline
    /// and through `Authorize` on node `via`.
    async fn expect_role(
        &self,
        via: u64,
        pool_id: &str,
        identity_id: &str,
        session_token: &str,
        role: &str,
    ) -> Result<VerifiedCredentials> {
        let v = self.offline(via, pool_id, session_token).await?;
        ensure!(
            v.identity_id == identity_id,
            "offline: credentials for {} instead of {identity_id}",
            v.identity_id
        );
        ensure!(
            v.identity_pool_id == pool_id,
            "offline: credentials of pool {}",
            v.identity_pool_id
        );
        ensure!(
            v.role_arn == arn(role),
            "offline: role {} instead of {}",
            v.role_arn,
            arn(role)
        );
        // Any action will do: the answer names the role either way.
        let a = authorize(self.public(via), session_token, "probe:Role", "probe")
            .await
            .map_err(status_err("Authorize"))?;
        ensure!(
            a.role_arn == arn(role),
            "Authorize on node {via}: role {} instead of {}",
            a.role_arn,
            arn(role)
        );
        ensure!(
            a.identity_id == identity_id,
            "Authorize on node {via}: identity {} instead of {identity_id}",
            a.identity_id
        );
        Ok(v)
    }
}

async fn create_role(c: &Client, name: &str, policy_document: &str) -> Result<RoleType, tonic::Status> {
    c.identity()
        .create_role(c.req(CreateRoleRequest {
            role_name: name.to_string(),
            description: format!("the {name} role"),
            policy_document: policy_document.to_string(),
        }))
        .await?
        .into_inner()
        .role
        .ok_or_else(|| tonic::Status::internal("test harness: CreateRole returned no role"))
}

async fn create_pool(c: &Client, req: CreateIdentityPoolRequest) -> Result<IdentityPool> {
    let name = req.identity_pool_name.clone();
    let p = c
        .identity()
        .create_identity_pool(c.req(req))
        .await
        .map_err(status_err(&format!("CreateIdentityPool {name}")))?
        .into_inner();
    ensure!(
        p.identity_pool_id.starts_with("local:"),
        "identity pool id {:?}",
        p.identity_pool_id
    );
    Ok(p)
}

async fn set_roles(
    c: &Client,
    pool_id: &str,
    roles: &[(&str, &str)],
    role_mappings: BTreeMap<String, RoleMapping>,
) -> Result<(), tonic::Status> {
    c.identity()
        .set_identity_pool_roles(c.req(SetIdentityPoolRolesRequest {
            identity_pool_id: pool_id.to_string(),
            roles: roles.iter().map(|(k, r)| (k.to_string(), arn(r))).collect(),
            role_mappings,
        }))
        .await?;
    Ok(())
}

async fn get_id(c: &Client, pool_id: &str, logins: &BTreeMap<String, String>) -> Result<String, tonic::Status> {
    Ok(c.identity()
        .get_id(GetIdRequest {
            account_id: String::new(),
            identity_pool_id: pool_id.to_string(),
            logins: logins.clone(),
        })
        .await?
        .into_inner()
        .identity_id)
}

/// `GetCredentialsForIdentity`: the identity id answered and the
/// credentials (checked for shape).
async fn credentials(
    c: &Client,
    identity_id: &str,
    logins: &BTreeMap<String, String>,
    custom_role_arn: &str,
) -> Result<(String, Credentials), tonic::Status> {
    let r = c
        .identity()
        .get_credentials_for_identity(GetCredentialsForIdentityRequest {
            identity_id: identity_id.to_string(),
            logins: logins.clone(),
            custom_role_arn: custom_role_arn.to_string(),
            duration_seconds: 0,
        })
        .await?
        .into_inner();
    let creds = r
        .credentials
        .ok_or_else(|| tonic::Status::internal("test harness: no credentials in the answer"))?;
    let now = now_secs();
    let shaped = creds.access_key_id.starts_with("TSIA")
        && creds.access_key_id.len() == 20
        && !creds.secret_key.is_empty()
        && !creds.session_token.is_empty()
        && (creds.expiration - (now + 3600)).abs() <= 120;
    if !shaped {
        return Err(tonic::Status::internal(format!(
            "test harness: malformed credentials: key id {:?}, secret {} chars, expiration {} (now {now})",
            creds.access_key_id,
            creds.secret_key.len(),
            creds.expiration
        )));
    }
    Ok((r.identity_id, creds))
}

async fn authorize(
    c: &Client,
    credentials: &str,
    action: &str,
    resource: &str,
) -> Result<AuthorizeResponse, tonic::Status> {
    Ok(c.identity()
        .authorize(AuthorizeRequest {
            credentials: credentials.to_string(),
            action: action.to_string(),
            resource: resource.to_string(),
        })
        .await?
        .into_inner())
}

/// Requires `Authorize` on `c` to answer `decision` (Allow, ExplicitDeny
/// or ImplicitDeny) for `action` on `resource`, and the offline verifier
/// `v` to agree.
async fn expect_decision(
    c: &Client,
    v: &VerifiedCredentials,
    session_token: &str,
    action: &str,
    resource: &str,
    decision: &str,
) -> Result<AuthorizeResponse> {
    let what = format!("{action} on {resource}");
    let a = authorize(c, session_token, action, resource)
        .await
        .map_err(status_err(&format!("Authorize {what}")))?;
    ensure!(
        a.decision == decision,
        "Authorize {what} for {}: {} (statement {} {:?}), expected {decision}",
        a.identity_id,
        a.decision,
        a.statement_index,
        a.statement_sid
    );
    ensure!(
        a.allowed == (decision == "Allow"),
        "Authorize {what}: allowed {} with decision {}",
        a.allowed,
        a.decision
    );
    if decision == "ImplicitDeny" {
        ensure!(
            a.statement_index == -1,
            "{what}: implicit deny names statement {}",
            a.statement_index
        );
    }
    let offline = v.authorize(action, resource);
    ensure!(
        offline.allowed == a.allowed,
        "{what}: offline says allowed={}, Authorize says {}",
        offline.allowed,
        a.decision
    );
    ensure!(
        offline.statement.map_or(-1, |s| s.index as i32) == a.statement_index,
        "{what}: offline decided by statement {:?}, Authorize by {}",
        offline.statement.map(|s| s.index),
        a.statement_index
    );
    Ok(a)
}

async fn describe_identity(c: &Client, identity_id: &str) -> Result<IdentityDescription, tonic::Status> {
    Ok(c.identity()
        .describe_identity(c.req(DescribeIdentityRequest {
            identity_id: identity_id.to_string(),
        }))
        .await?
        .into_inner())
}

/// Every identity of a pool, page by page (small pages, so paging is
/// exercised too), checking that none is listed twice.
async fn list_identities(c: &Client, pool_id: &str, hide_disabled: bool) -> Result<Vec<IdentityDescription>> {
    let mut out = Vec::new();
    let mut next_token = String::new();
    for _ in 0..1000 {
        let page = c
            .identity()
            .list_identities(c.req(ListIdentitiesRequest {
                identity_pool_id: pool_id.to_string(),
                max_results: 2,
                next_token: next_token.clone(),
                hide_disabled,
            }))
            .await
            .map_err(status_err("ListIdentities"))?
            .into_inner();
        ensure!(
            page.identities.len() <= 2,
            "a page of {} identities",
            page.identities.len()
        );
        out.extend(page.identities);
        if page.next_token.is_empty() {
            let ids: BTreeSet<&str> = out.iter().map(|i| i.identity_id.as_str()).collect();
            ensure!(
                ids.len() == out.len(),
                "ListIdentities listed an identity twice: {out:?}"
            );
            return Ok(out);
        }
        next_token = page.next_token;
    }
    bail!("ListIdentities did not end after 1000 pages")
}

fn ids_of(list: &[IdentityDescription]) -> BTreeSet<String> {
    list.iter().map(|i| i.identity_id.clone()).collect()
}

/// `GetOpenIdTokenForDeveloperIdentity`: the identity id and the token.
async fn developer_token(
    c: &Client,
    pool_id: &str,
    identity_id: &str,
    logins: &BTreeMap<String, String>,
    token_duration: i64,
) -> Result<(String, String), tonic::Status> {
    let r = c
        .identity()
        .get_open_id_token_for_developer_identity(c.req(GetOpenIdTokenForDeveloperIdentityRequest {
            identity_pool_id: pool_id.to_string(),
            identity_id: identity_id.to_string(),
            logins: logins.clone(),
            principal_tags: BTreeMap::new(),
            token_duration,
        }))
        .await?
        .into_inner();
    Ok((r.identity_id, r.token))
}

async fn lookup(
    c: &Client,
    pool_id: &str,
    identity_id: &str,
    developer_user_identifier: &str,
) -> Result<LookupDeveloperIdentityResponse, tonic::Status> {
    Ok(c.identity()
        .lookup_developer_identity(c.req(LookupDeveloperIdentityRequest {
            identity_pool_id: pool_id.to_string(),
            identity_id: identity_id.to_string(),
            developer_user_identifier: developer_user_identifier.to_string(),
            max_results: 10,
            next_token: String::new(),
        }))
        .await?
        .into_inner())
}

/// Requires `r` to fail with `exception` and a message that contains every
/// one of `says` (the reason, not just the name).
fn refused<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, tonic::Status>,
    code: Code,
    exception: &str,
    says: &[&str],
) -> Result<tonic::Status> {
    let s = expect_exception(what, r, code, exception)?;
    for part in says {
        ensure!(
            s.message().contains(part),
            "{what}: the message should say {part:?}: {:?}",
            s.message()
        );
    }
    Ok(s)
}

/// Each node's last log index and applied index (from its own
/// `/metrics`), once they are equal on every node and have not moved for
/// a second (successful sign-ins are audited in batches a moment later).
async fn settled_index(c: &TestCluster) -> Result<(u64, u64)> {
    let read = || async {
        let mut all = Vec::new();
        for id in c.live_ids() {
            let m = c.node(id).metrics().await?;
            let log = common::metric_value(&m, "tessera_raft_last_log_index")
                .ok_or_else(|| anyhow!("node {id}: no tessera_raft_last_log_index"))?;
            let applied = common::metric_value(&m, "tessera_raft_applied_index")
                .ok_or_else(|| anyhow!("node {id}: no tessera_raft_applied_index"))?;
            all.push((log as u64, applied as u64));
        }
        anyhow::Ok(all)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = read().await?;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = read().await?;
        let same_everywhere = now.windows(2).all(|w| w[0] == w[1]) && now[0].0 == now[0].1;
        if now != last || !same_everywhere {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_secs(1) {
            return Ok(last[0]);
        }
        ensure!(
            Instant::now() < deadline,
            "the log did not settle within 20 s: {last:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// 1. One identity everywhere
// ---------------------------------------------------------------------------

scenario!(one_identity_everywhere, one_identity_body);

async fn one_identity_body(c: &TestCluster) -> Result<()> {
    let w = World::create(c, "idtests-one", &[]).await?;
    create_role(
        w.admin(1),
        "Members",
        &policy(&[("", "Allow", &["s3:GetObject"], &["public/*"])]),
    )
    .await
    .map_err(status_err("CreateRole Members"))?;
    let pool = create_pool(
        w.admin(2),
        CreateIdentityPoolRequest {
            identity_pool_name: "one identity".into(),
            cognito_identity_providers: vec![w.cognito_provider()],
            ..Default::default()
        },
    )
    .await?;
    let pool_id = pool.identity_pool_id.clone();
    ensure!(
        pool.cognito_identity_providers
            .first()
            .map(|p| p.provider_name.as_str())
            == Some(w.provider.as_str()),
        "the pool's provider is {:?}, expected {}",
        pool.cognito_identity_providers,
        w.provider
    );
    set_roles(w.admin(3), &pool_id, &[("authenticated", "Members")], BTreeMap::new())
        .await
        .map_err(status_err("SetIdentityPoolRoles"))?;
    w.everywhere(&pool_id).await?;

    // The same user through GetId on every node: one identity id.
    let alice = w.user(1, "alice", &[]).await?;
    let mut ids = Vec::new();
    for via in [2, 3, 1] {
        ids.push(
            get_id(w.public(via), &pool_id, &w.login(&alice))
                .await
                .map_err(status_err(&format!("GetId for alice on node {via}")))?,
        );
    }
    let alice_id = ids[0].clone();
    ensure!(
        ids.iter().all(|i| *i == alice_id),
        "alice got different identity ids on the three nodes: {ids:?}"
    );
    // The provider name may carry the scheme (the token's `iss` as it is).
    let with_scheme = map(&[(&format!("{}/{}", w.public_url, w.d.pool_id), &alice.id_token)]);
    let again = get_id(w.public(2), &pool_id, &with_scheme)
        .await
        .map_err(status_err("GetId with the provider name's scheme"))?;
    ensure!(again == alice_id, "with the scheme: {again}, without: {alice_id}");
    // A fresh sign-in (another token of the same user) on another node.
    let alice2 = w.d.sign_in(3, "alice", GOOD_PASSWORD).await?;
    ensure!(
        alice2.id_token != alice.id_token,
        "a second sign-in gave the same id token"
    );
    let again = get_id(w.public(3), &pool_id, &w.login(&alice2))
        .await
        .map_err(status_err("GetId with a second sign-in's token"))?;
    ensure!(
        again == alice_id,
        "a second sign-in gave identity {again}, not {alice_id}"
    );
    let listed = list_identities(w.admin(1), &pool_id, false).await?;
    ensure!(
        ids_of(&listed) == BTreeSet::from([alice_id.clone()]),
        "ListIdentities after alice's GetIds: {listed:?}"
    );
    ensure!(
        listed[0].logins == vec![w.provider.clone()] && !listed[0].disabled,
        "alice's identity: {:?}",
        listed[0]
    );

    // A repeat GetId for a known login is a local read: no node's log or
    // applied index moves (each node's own /metrics, read before and after,
    // with the log settled).
    let before = settled_index(c).await?;
    for round in 0..3 {
        for via in 1..=3 {
            let id = get_id(w.public(via), &pool_id, &w.login(&alice))
                .await
                .map_err(status_err(&format!("repeat GetId {round} on node {via}")))?;
            ensure!(id == alice_id, "repeat GetId on node {via}: {id}");
        }
    }
    let after = settled_index(c).await?;
    ensure!(
        after == before,
        "nine repeat GetIds for a known login moved the log: (last log, applied) {before:?} -> {after:?}"
    );
    // The measure can see a write: a first GetId for a new user moves it.
    let bob = w.user(2, "bob", &[]).await?;
    let before = settled_index(c).await?;
    let bob_id = get_id(w.public(1), &pool_id, &w.login(&bob))
        .await
        .map_err(status_err("GetId for bob"))?;
    ensure!(bob_id != alice_id, "bob and alice share identity {bob_id}");
    let after = settled_index(c).await?;
    ensure!(
        after.1 > before.1,
        "a first GetId wrote nothing? (last log, applied) {before:?} -> {after:?}"
    );
    println!("a first GetId moved the applied index {} -> {}", before.1, after.1);

    // Concurrent first GetIds for one login on two nodes: one identity.
    let pairs = [(1u64, 2u64), (2, 3), (3, 1), (2, 1), (3, 2)];
    let mut count = listed.len() + 1; // alice and bob
    let mut round_ids = Vec::new();
    for (round, (x, y)) in pairs.iter().enumerate() {
        let name = format!("racer{round}");
        let t = w.user(1 + (round as u64 % 3), &name, &[]).await?;
        let logins = w.login(&t);
        let (cx, cy) = (w.public(*x).clone(), w.public(*y).clone());
        let (px, py) = (pool_id.clone(), pool_id.clone());
        let (lx, ly) = (logins.clone(), logins.clone());
        let tx = tokio::spawn(async move { get_id(&cx, &px, &lx).await });
        let ty = tokio::spawn(async move { get_id(&cy, &py, &ly).await });
        let rx = tx.await?.map_err(status_err(&format!("{name}: GetId on node {x}")))?;
        let ry = ty.await?.map_err(status_err(&format!("{name}: GetId on node {y}")))?;
        ensure!(
            rx == ry,
            "{name}: concurrent first GetIds on nodes {x} and {y} gave two identities: {rx} and {ry}"
        );
        count += 1;
        let listed = list_identities(w.admin(1 + (round as u64 + 1) % 3), &pool_id, false).await?;
        ensure!(
            listed.len() == count,
            "{name}: {} identities listed, expected {count} (one per user): {listed:?}",
            listed.len()
        );
        ensure!(ids_of(&listed).contains(&rx), "{name}: {rx} is not listed");
        round_ids.push((name, logins, rx));
    }
    // Each login still leads to its one identity, on every node.
    for (name, logins, id) in &round_ids {
        for via in 1..=3 {
            let again = get_id(w.public(via), &pool_id, logins)
                .await
                .map_err(status_err(&format!("{name}: GetId again on node {via}")))?;
            ensure!(again == *id, "{name}: GetId on node {via} gave {again}, first {id}");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. Guests: credentials, upgrade, merge, refusal
// ---------------------------------------------------------------------------

scenario!(guests_upgrade_and_merge, guests_body);

async fn guests_body(c: &TestCluster) -> Result<()> {
    let w = World::create(c, "idtests-guests", &[]).await?;
    create_role(
        w.admin(1),
        "Guests",
        &policy(&[("PublicRead", "Allow", &["s3:GetObject"], &["public/*"])]),
    )
    .await
    .map_err(status_err("CreateRole Guests"))?;
    create_role(
        w.admin(2),
        "Members",
        &policy(&[
            ("PublicRead", "Allow", &["s3:GetObject"], &["public/*"]),
            ("OwnData", "Allow", &["s3:*"], &["user-data/${identity.id}/*"]),
        ]),
    )
    .await
    .map_err(status_err("CreateRole Members"))?;
    // A second public provider, for a caller who is not alice.
    let op = OidcTestProvider::start().await?;
    let ext = without_scheme(op.issuer()).to_string();
    let pool = create_pool(
        w.admin(1),
        CreateIdentityPoolRequest {
            identity_pool_name: "guests".into(),
            allow_unauthenticated_identities: true,
            developer_provider_name: DEV_PROVIDER.into(),
            cognito_identity_providers: vec![w.cognito_provider()],
            open_id_connect_providers: vec![OpenIdConnectProvider {
                provider_name: ext.clone(),
                issuer: op.issuer().to_string(),
                client_ids: vec!["idtests-app".into()],
                jwks_uri: op.jwks_uri(),
                discovery_url: String::new(),
            }],
            ..Default::default()
        },
    )
    .await?;
    let pool_id = pool.identity_pool_id.clone();
    set_roles(
        w.admin(2),
        &pool_id,
        &[("authenticated", "Members"), ("unauthenticated", "Guests")],
        BTreeMap::new(),
    )
    .await
    .map_err(status_err("SetIdentityPoolRoles"))?;
    w.everywhere(&pool_id).await?;
    let none = BTreeMap::new();

    // A guest: an identity with no login, the unauthenticated role.
    let g1 = get_id(w.public(2), &pool_id, &none)
        .await
        .map_err(status_err("GetId for a guest"))?;
    let d = describe_identity(w.admin(1), &g1)
        .await
        .map_err(status_err("DescribeIdentity of the guest"))?;
    ensure!(d.logins.is_empty() && !d.disabled, "the guest: {d:?}");
    let (id, guest_creds) = credentials(w.public(3), &g1, &none, "")
        .await
        .map_err(status_err("GetCredentialsForIdentity for the guest"))?;
    ensure!(id == g1, "the guest's credentials are for {id}, not {g1}");
    let v = w
        .expect_role(1, &pool_id, &g1, &guest_creds.session_token, "Guests")
        .await?;
    ensure!(
        v.user_sub.is_none() && v.username.is_none(),
        "a guest's credentials name a user: {v:?}"
    );
    ensure!(
        v.access_key_id == guest_creds.access_key_id,
        "offline access key id {} != {}",
        v.access_key_id,
        guest_creds.access_key_id
    );
    expect_decision(
        w.public(2),
        &v,
        &guest_creds.session_token,
        "s3:GetObject",
        "public/readme.txt",
        "Allow",
    )
    .await?;
    expect_decision(
        w.public(3),
        &v,
        &guest_creds.session_token,
        "s3:PutObject",
        &format!("user-data/{g1}/photo.jpg"),
        "ImplicitDeny",
    )
    .await?;
    // Credentials that were tampered with are refused, offline and online.
    let forged = tamper(&guest_creds.session_token, "role_arn", json!(arn("Members")))?;
    ensure!(
        w.offline(1, &pool_id, &forged).await.is_err(),
        "CredentialsVerifier accepted tampered credentials"
    );
    refused(
        "Authorize with tampered credentials",
        authorize(w.public(1), &forged, "s3:GetObject", "public/x").await,
        Code::Unauthenticated,
        "NotAuthorizedException",
        &["Invalid credentials"],
    )?;

    // The guest signs in: the same identity, now authenticated.
    let alice = w.user(1, "alice", &[]).await?;
    let (id, alice_creds) = credentials(w.public(1), &g1, &w.login(&alice), "")
        .await
        .map_err(status_err("GetCredentialsForIdentity for the guest with alice's login"))?;
    ensure!(id == g1, "the upgraded guest got identity {id}, not {g1}");
    let v = w
        .expect_role(2, &pool_id, &g1, &alice_creds.session_token, "Members")
        .await?;
    ensure!(
        v.username.as_deref() == Some("alice"),
        "credentials username {:?}",
        v.username
    );
    expect_decision(
        w.public(3),
        &v,
        &alice_creds.session_token,
        "s3:PutObject",
        &format!("user-data/{g1}/photo.jpg"),
        "Allow",
    )
    .await?;
    let d = describe_identity(w.admin(3), &g1)
        .await
        .map_err(status_err("DescribeIdentity after the upgrade"))?;
    ensure!(
        d.logins == vec![w.provider.clone()],
        "the upgraded identity's logins: {d:?}"
    );
    for via in 1..=3 {
        let id = get_id(w.public(via), &pool_id, &w.login(&alice))
            .await
            .map_err(status_err(&format!("GetId for alice on node {via}")))?;
        ensure!(
            id == g1,
            "GetId for alice on node {via}: {id}, not the upgraded guest {g1}"
        );
    }
    // Authenticated now: its id alone no longer gets credentials.
    refused(
        "GetCredentialsForIdentity for the upgraded identity without logins",
        credentials(w.public(2), &g1, &none, "").await,
        Code::Unauthenticated,
        "NotAuthorizedException",
        &["Logins don't match"],
    )?;

    // A second guest that then signs in as alice merges into her identity.
    let g2 = get_id(w.public(3), &pool_id, &none)
        .await
        .map_err(status_err("GetId for a second guest"))?;
    ensure!(g2 != g1, "two guests share identity {g1}");
    let (id, merged_creds) = credentials(w.public(2), &g2, &w.login(&alice), "")
        .await
        .map_err(status_err(
            "GetCredentialsForIdentity for the second guest with alice's login",
        ))?;
    ensure!(id == g1, "the merge answered identity {id}, not the first one {g1}");
    w.expect_role(3, &pool_id, &g1, &merged_creds.session_token, "Members")
        .await?;
    for via in 1..=3 {
        let d = describe_identity(w.admin(via), &g2).await.map_err(status_err(&format!(
            "DescribeIdentity of the merged guest on node {via}"
        )))?;
        ensure!(
            d.disabled && d.merged_into == g1 && d.logins.is_empty(),
            "the merged guest on node {via}: {d:?}"
        );
    }
    refused(
        "GetCredentialsForIdentity for the merged guest without logins",
        credentials(w.public(1), &g2, &none, "").await,
        Code::Unauthenticated,
        "NotAuthorizedException",
        &["merged into", &g1],
    )?;
    let all = list_identities(w.admin(1), &pool_id, false).await?;
    ensure!(
        ids_of(&all) == BTreeSet::from([g1.clone(), g2.clone()]),
        "ListIdentities: {all:?}"
    );
    let shown = list_identities(w.admin(2), &pool_id, true).await?;
    ensure!(
        ids_of(&shown) == BTreeSet::from([g1.clone()]),
        "ListIdentities hiding disabled ones: {shown:?}"
    );
    // The merged guest's id is no key to alice's identity: someone else
    // who presents it with a login of their own is refused, and their
    // login is not linked to alice's identity.
    let mallory = map(&[(
        &ext,
        &op.mint(KeyKind::Ec, &op.claims("ext-mallory", "idtests-app", now_secs()))?,
    )]);
    let r = credentials(w.public(1), &g2, &mallory, "").await;
    let a = describe_identity(w.admin(1), &g1)
        .await
        .map_err(status_err("DescribeIdentity alice after mallory's try"))?;
    ensure!(
        a.logins == vec![w.provider.clone()],
        "mallory's login was linked to alice's identity through the merged guest's id: {a:?} \
         (GetCredentialsForIdentity answered {:?})",
        r.as_ref()
            .map(|(id, _)| id.clone())
            .map_err(|s| s.message().to_string())
    );
    refused(
        "GetCredentialsForIdentity for the merged guest with someone else's login",
        r,
        Code::Unauthenticated,
        "NotAuthorizedException",
        &[],
    )?;
    let mallory_id = get_id(w.public(2), &pool_id, &mallory)
        .await
        .map_err(status_err("GetId for mallory"))?;
    ensure!(mallory_id != g1, "mallory's login leads to alice's identity");

    // Two logins of one public provider on one identity: bob's identity
    // (his user-pool login and a developer login) is presented, with its
    // own OpenID token, together with alice's login, which would merge
    // alice's identity into bob's.
    let bob = w.user(2, "bob", &[]).await?;
    let mut dev_logins = w.login(&bob);
    dev_logins.insert(DEV_PROVIDER.into(), "bob-dev".into());
    let (bob_id, bob_token) = developer_token(w.admin(3), &pool_id, "", &dev_logins, 0)
        .await
        .map_err(status_err("GetOpenIdTokenForDeveloperIdentity for bob"))?;
    ensure!(bob_id != g1 && bob_id != g2, "bob got an existing identity {bob_id}");
    let mut both = w.login(&alice);
    both.insert(OPENID_PROVIDER.into(), bob_token.clone());
    refused(
        "GetCredentialsForIdentity merging alice's identity into bob's",
        credentials(w.public(1), &bob_id, &both, "").await,
        Code::FailedPrecondition,
        "ResourceConflictException",
        &["two logins of provider", &w.provider],
    )?;
    let mut dev_alice = w.login(&alice);
    dev_alice.insert(DEV_PROVIDER.into(), "bob-dev".into());
    refused(
        "GetOpenIdTokenForDeveloperIdentity linking alice's login to bob's developer login",
        developer_token(w.admin(2), &pool_id, "", &dev_alice, 0).await,
        Code::FailedPrecondition,
        "ResourceConflictException",
        &["two logins of provider"],
    )?;
    // Nothing was written: both identities are as they were.
    let a = describe_identity(w.admin(2), &g1)
        .await
        .map_err(status_err("DescribeIdentity alice"))?;
    ensure!(
        a.logins == vec![w.provider.clone()] && !a.disabled,
        "alice's identity after the conflict: {a:?}"
    );
    let b = describe_identity(w.admin(3), &bob_id)
        .await
        .map_err(status_err("DescribeIdentity bob"))?;
    let mut want = vec![DEV_PROVIDER.to_string(), w.provider.clone()];
    want.sort();
    let mut got = b.logins.clone();
    got.sort();
    ensure!(got == want && !b.disabled, "bob's identity after the conflict: {b:?}");
    for (who, t, id) in [("alice", &alice, &g1), ("bob", &bob, &bob_id)] {
        let again = get_id(w.public(3), &pool_id, &w.login(t))
            .await
            .map_err(status_err(&format!("GetId for {who} after the conflict")))?;
        ensure!(again == *id, "{who}'s login now leads to {again}, not {id}");
    }

    // Guests are refused once the pool no longer allows them.
    let g3 = get_id(w.public(1), &pool_id, &none)
        .await
        .map_err(status_err("GetId for a third guest"))?;
    let mut settings = w
        .admin(1)
        .identity()
        .describe_identity_pool(w.admin(1).req(DescribeIdentityPoolRequest {
            identity_pool_id: pool_id.clone(),
        }))
        .await
        .map_err(status_err("DescribeIdentityPool"))?
        .into_inner();
    ensure!(
        settings.allow_unauthenticated_identities,
        "the pool does not say it allows guests"
    );
    settings.allow_unauthenticated_identities = false;
    let updated = w
        .admin(2)
        .identity()
        .update_identity_pool(w.admin(2).req(settings))
        .await
        .map_err(status_err("UpdateIdentityPool without guests"))?
        .into_inner();
    ensure!(
        !updated.allow_unauthenticated_identities,
        "the update kept guests allowed"
    );
    for via in 1..=3 {
        refused_within(
            &format!("node {via} to refuse guests"),
            Code::Unauthenticated,
            "NotAuthorizedException",
            || get_id(w.public(via), &pool_id, &none),
        )
        .await?;
        refused(
            &format!("GetId for a guest on node {via}"),
            get_id(w.public(via), &pool_id, &none).await,
            Code::Unauthenticated,
            "NotAuthorizedException",
            &["Unauthenticated access is not supported"],
        )?;
        refused(
            &format!("credentials for an existing guest on node {via}"),
            credentials(w.public(via), &g3, &none, "").await,
            Code::Unauthenticated,
            "NotAuthorizedException",
            &["Unauthenticated access is not supported"],
        )?;
    }
    // Signed-in users are still served.
    let (id, _) = credentials(w.public(2), &g1, &w.login(&alice), "")
        .await
        .map_err(status_err("alice's credentials with guests off"))?;
    ensure!(id == g1, "alice's credentials with guests off are for {id}");
    // A pool created without guests refuses them from the start.
    let closed = create_pool(
        w.admin(3),
        CreateIdentityPoolRequest {
            identity_pool_name: "no guests".into(),
            cognito_identity_providers: vec![w.cognito_provider()],
            ..Default::default()
        },
    )
    .await?;
    refused(
        "GetId for a guest of a pool without guests",
        get_id(w.public(3), &closed.identity_pool_id, &none).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
        &["Unauthenticated access is not supported"],
    )?;
    let listed = list_identities(w.admin(1), &closed.identity_pool_id, false).await?;
    ensure!(listed.is_empty(), "a refused guest left identities: {listed:?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. An external OpenID Connect provider
// ---------------------------------------------------------------------------

/// Every unknown kid makes the node fetch the provider's keys again (the
/// default waits 30 s between fetches), so that the test can see a refetch
/// that finds a rotated key and one that does not find a forged kid.
fn refetch_always() -> RaftTuning {
    RaftTuning {
        extra_config: "[oidc]\nmin_refetch_secs = 0\n".into(),
        ..RaftTuning::default()
    }
}

scenario!(external_provider, external_body, refetch_always());

async fn external_body(c: &TestCluster) -> Result<()> {
    // Federated user-pool users (a user pool that trusts an external
    // provider, then an identity pool that trusts the user pool) are not
    // implemented yet; this covers an identity pool that trusts the
    // provider directly.
    let w = World::create(c, "idtests-external", &[]).await?;
    let op = OidcTestProvider::start().await?;
    let name = without_scheme(op.issuer()).to_string();
    create_role(
        w.admin(1),
        "Members",
        &policy(&[("OwnData", "Allow", &["s3:*"], &["user-data/${identity.id}/*"])]),
    )
    .await
    .map_err(status_err("CreateRole Members"))?;
    let pool = create_pool(
        w.admin(2),
        CreateIdentityPoolRequest {
            identity_pool_name: "external".into(),
            open_id_connect_providers: vec![OpenIdConnectProvider {
                provider_name: name.clone(),
                issuer: op.issuer().to_string(),
                client_ids: vec!["idtests-app".into()],
                jwks_uri: String::new(),
                discovery_url: String::new(),
            }],
            ..Default::default()
        },
    )
    .await?;
    let pool_id = pool.identity_pool_id.clone();
    ensure!(
        pool.open_id_connect_provider_arns == vec![name.clone()],
        "open_id_connect_provider_arns: {:?}",
        pool.open_id_connect_provider_arns
    );
    set_roles(w.admin(3), &pool_id, &[("authenticated", "Members")], BTreeMap::new())
        .await
        .map_err(status_err("SetIdentityPoolRoles"))?;
    w.everywhere(&pool_id).await?;
    let login = |token: String| map(&[(&name, &token)]);

    // A good token gives an identity; tokens of the same subject signed
    // with each of the provider's keys, on each node, give the same one.
    let now = now_secs();
    let claims = op.claims("ext-alice", "idtests-app", now);
    let good = op.mint(KeyKind::Rsa, &claims)?;
    let alice_id = get_id(w.public(1), &pool_id, &login(good.clone()))
        .await
        .map_err(status_err("GetId with the provider's RS256 token"))?;
    for (via, kind) in [(2, KeyKind::Ec), (3, KeyKind::Ed), (3, KeyKind::Rsa)] {
        let t = op.mint(kind, &claims)?;
        let id = get_id(w.public(via), &pool_id, &login(t))
            .await
            .map_err(status_err(&format!("GetId with a {kind:?} token on node {via}")))?;
        ensure!(
            id == alice_id,
            "a {kind:?} token on node {via} gave {id}, not {alice_id}"
        );
    }
    let (id, creds) = credentials(w.public(2), &alice_id, &login(good.clone()), "")
        .await
        .map_err(status_err("GetCredentialsForIdentity with the provider's token"))?;
    ensure!(id == alice_id, "credentials for {id}");
    let v = w
        .expect_role(3, &pool_id, &alice_id, &creds.session_token, "Members")
        .await?;
    expect_decision(
        w.public(1),
        &v,
        &creds.session_token,
        "s3:GetObject",
        &format!("user-data/{alice_id}/a.txt"),
        "Allow",
    )
    .await?;

    // A key the provider rotated in after the nodes cached its keys is
    // found by a refetch.
    let rotated = op.rotate(KeyKind::Ec)?;
    let fetched = op.jwks_fetches();
    let t = op.mint_with_kid(&rotated, &claims)?;
    let id = get_id(w.public(1), &pool_id, &login(t))
        .await
        .map_err(status_err("GetId with a token of a freshly rotated key"))?;
    ensure!(id == alice_id, "the rotated key's token gave {id}");
    ensure!(
        op.jwks_fetches() > fetched,
        "the rotated kid was found without a refetch"
    );

    // Each of these is refused, on every node, saying why; none creates
    // an identity (each names a subject of its own, so one would show).
    let mallory = |sub: &str| op.claims(sub, "idtests-app", now_secs());
    let mut cases: Vec<(&str, String, Vec<String>)> = Vec::new();
    cases.push((
        "wrong aud",
        op.mint(KeyKind::Rsa, &op.claims("ext-aud", "someone-else", now))?,
        vec!["audience".into(), "someone-else".into()],
    ));
    let mut expired = mallory("ext-expired");
    expired["iat"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    cases.push(("expired", op.mint(KeyKind::Ec, &expired)?, vec!["expired".into()]));
    cases.push((
        "wrong signature (payload changed)",
        common::oidc_provider::tamper(&op.mint(KeyKind::Rsa, &mallory("ext-tamper-src"))?, |c| {
            c["sub"] = json!("ext-tampered")
        })?,
        vec!["signature does not verify".into(), "rsa-1".into()],
    ));
    let forger = op.foreign_key(KeyKind::Ec, "forger")?;
    let ec_kid = op.kid(KeyKind::Ec)?;
    cases.push((
        "wrong signature (another key claiming a published kid)",
        op.mint_claiming_kid(&forger, &ec_kid, &mallory("ext-forged"))?,
        vec!["signature does not verify".into(), ec_kid.clone()],
    ));
    cases.push((
        "alg none",
        op.mint_alg_none(&mallory("ext-none"))?,
        vec!["alg none is refused".into()],
    ));
    cases.push((
        "HS256 keyed with the RSA public key (PEM)",
        op.mint_hs256_with_public_key(PublicKeyBytes::Pem, &mallory("ext-hs-pem"))?,
        vec!["alg HS256 is not allowed".into(), "rsa-1".into()],
    ));
    cases.push((
        "HS256 keyed with the RSA public key (DER)",
        op.mint_hs256_with_public_key(PublicKeyBytes::Der, &mallory("ext-hs-der"))?,
        vec!["alg HS256 is not allowed".into()],
    ));
    let ghost = op.foreign_key(KeyKind::Rsa, "ghost-1")?;
    cases.push((
        "unknown kid",
        op.mint_with_kid(&ghost, &mallory("ext-ghost"))?,
        vec!["unknown key id ghost-1".into(), "refetched".into()],
    ));
    for (what, token, says) in &cases {
        for via in 1..=3 {
            let fetched = op.jwks_fetches();
            let says: Vec<&str> = says.iter().map(String::as_str).collect();
            let mut all = vec!["Invalid login token for provider", name.as_str()];
            all.extend(says);
            refused(
                &format!("GetId with {what} on node {via}"),
                get_id(w.public(via), &pool_id, &login(token.clone())).await,
                Code::Unauthenticated,
                "NotAuthorizedException",
                &all,
            )?;
            if *what == "unknown kid" {
                ensure!(
                    op.jwks_fetches() > fetched,
                    "node {via} refused the unknown kid without fetching the JWKS again"
                );
            }
            // Presented for alice's identity: refused, nothing is linked.
            refused(
                &format!("GetCredentialsForIdentity with {what} on node {via}"),
                credentials(w.public(via), &alice_id, &login(token.clone()), "").await,
                Code::Unauthenticated,
                "NotAuthorizedException",
                &["Invalid login token for provider"],
            )?;
        }
    }
    let listed = list_identities(w.admin(1), &pool_id, false).await?;
    ensure!(
        ids_of(&listed) == BTreeSet::from([alice_id.clone()]),
        "refused tokens left identities behind: {listed:?}"
    );
    // The good token still works after all that, on every node.
    for via in 1..=3 {
        let id = get_id(w.public(via), &pool_id, &login(good.clone()))
            .await
            .map_err(status_err(&format!(
                "GetId with the good token on node {via} at the end"
            )))?;
        ensure!(id == alice_id, "node {via}: {id}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 4. Role mapping: groups, rules, per-user roles, custom_role_arn
// ---------------------------------------------------------------------------

scenario!(role_mapping, role_mapping_body);

async fn role_mapping_body(c: &TestCluster) -> Result<()> {
    let dept = [CustomAttr {
        name: "dept",
        indexed: false,
    }];
    let w = World::create(c, "idtests-roles", &dept).await?;
    let own = "user-data/${identity.id}/*";
    let roles: [(&str, String); 5] = [
        (
            "Teachers",
            policy(&[
                ("Courses", "Allow", &["course:*"], &["courses/*"]),
                ("OwnData", "Allow", &["s3:*"], &[own]),
            ]),
        ),
        (
            "Students",
            policy(&[
                ("Courses", "Allow", &["course:Read"], &["courses/*"]),
                ("OwnData", "Allow", &["s3:GetObject", "s3:PutObject"], &[own]),
            ]),
        ),
        ("Members", policy(&[("OwnData", "Allow", &["s3:GetObject"], &[own])])),
        ("Science", policy(&[("Labs", "Allow", &["lab:*"], &["labs/*"])])),
        ("Principal", policy(&[("Everything", "Allow", &["*"], &["*"])])),
    ];
    for (i, (name, doc)) in roles.iter().enumerate() {
        let r = create_role(w.admin(1 + i as u64 % 3), name, doc)
            .await
            .map_err(status_err(&format!("CreateRole {name}")))?;
        ensure!(r.role_arn == arn(name), "{name}: role_arn {}", r.role_arn);
    }
    w.group(1, "teachers", &arn("Teachers"), 1).await?;
    w.group(2, "students", &arn("Students"), 10).await?;
    // A group without a role: it must not hide the others.
    w.group(3, "everyone", "", 0).await?;
    let people = [
        ("tina", "science", &["teachers", "everyone"][..]),
        ("sam", "history", &["students"][..]),
        ("tom", "science", &["students", "teachers"][..]),
        ("una", "art", &[][..]),
        ("pete", "history", &["students"][..]),
    ];
    for (name, _, groups) in &people {
        w.d.admin_create_user(1, name, &[("email", &format!("{name}@example.com"))], "Temp-Passw0rd!")
            .await
            .map_err(status_err(&format!("AdminCreateUser {name}")))?;
        for g in *groups {
            w.d.add_to_group(2, name, g)
                .await
                .map_err(status_err(&format!("add {name} to {g}")))?;
        }
    }
    let mut tokens = BTreeMap::new();
    for (name, dept, _) in &people {
        // The user exists already: set the attribute and the password.
        w.d.admin_update_attributes(3, name, aattrs(&[("custom:dept", dept)]))
            .await
            .map_err(status_err(&format!("set custom:dept of {name}")))?;
        let a = w.admin(1);
        a.admin()
            .admin_set_user_password(a.req(AdminSetUserPasswordRequest {
                user_pool_id: w.d.pool_id.clone(),
                username: name.to_string(),
                password: GOOD_PASSWORD.to_string(),
                permanent: true,
            }))
            .await
            .map_err(status_err(&format!("AdminSetUserPassword {name}")))?;
        w.d.barrier(2).await?;
        let t = w.d.sign_in(2, name, GOOD_PASSWORD).await?;
        let claims = peek_claims(&t.id_token)?;
        ensure!(
            claims["custom:dept"] == *dept,
            "{name}'s id token: custom:dept {}",
            claims["custom:dept"]
        );
        tokens.insert(name.to_string(), t);
    }
    let t = |name: &str| tokens[name].clone();

    let pool = create_pool(
        w.admin(2),
        CreateIdentityPoolRequest {
            identity_pool_name: "school".into(),
            cognito_identity_providers: vec![w.cognito_provider()],
            ..Default::default()
        },
    )
    .await?;
    let pool_id = pool.identity_pool_id.clone();
    let token_mapping = |ambiguous: &str| RoleMapping {
        r#type: "Token".into(),
        ambiguous_role_resolution: ambiguous.into(),
        rules_configuration: None,
    };
    set_roles(
        w.admin(3),
        &pool_id,
        &[("authenticated", "Members")],
        BTreeMap::from([(w.provider.clone(), token_mapping("AuthenticatedRole"))]),
    )
    .await
    .map_err(status_err("SetIdentityPoolRoles with a Token mapping"))?;
    w.everywhere(&pool_id).await?;
    let got = w
        .admin(1)
        .identity()
        .get_identity_pool_roles(w.admin(1).req(GetIdentityPoolRolesRequest {
            identity_pool_id: pool_id.clone(),
        }))
        .await
        .map_err(status_err("GetIdentityPoolRoles"))?
        .into_inner();
    ensure!(
        got.roles.get("authenticated") == Some(&arn("Members"))
            && got.role_mappings.get(&w.provider).map(|m| m.r#type.as_str()) == Some("Token"),
        "GetIdentityPoolRoles: {got:?}"
    );

    let mut ids = BTreeMap::new();
    for (name, _, _) in &people {
        let id = get_id(w.public(1), &pool_id, &w.login(&t(name)))
            .await
            .map_err(status_err(&format!("GetId for {name}")))?;
        ids.insert(name.to_string(), id);
    }
    let id = |name: &str| ids[name].clone();
    // Credentials of `name` (with `custom` as custom_role_arn) through
    // node `via`, required to carry `role`.
    let creds_as = |name: &'static str, via: u64, custom: String, role: &'static str| {
        let (w, pool_id, t, id) = (&w, pool_id.clone(), t(name), id(name));
        async move {
            let (got, cr) = credentials(w.public(via), &id, &w.login(&t), &custom)
                .await
                .map_err(status_err(&format!("credentials for {name} (custom role {custom:?})")))?;
            ensure!(got == id, "{name}'s credentials are for {got}");
            let v = w
                .expect_role(1 + via % 3, &pool_id, &id, &cr.session_token, role)
                .await
                .with_context(|| format!("{name}'s credentials (custom role {custom:?})"))?;
            anyhow::Ok((v, cr.session_token))
        }
    };

    // Token mapping: the role of the group with the best precedence.
    let (tina_v, tina) = creds_as("tina", 1, String::new(), "Teachers").await?;
    let (sam_v, sam) = creds_as("sam", 2, String::new(), "Students").await?;
    creds_as("tom", 3, String::new(), "Teachers").await?;
    creds_as("una", 1, String::new(), "Members").await?;
    creds_as("pete", 2, String::new(), "Students").await?;
    expect_decision(w.public(1), &tina_v, &tina, "course:Edit", "courses/math", "Allow").await?;
    expect_decision(w.public(2), &sam_v, &sam, "course:Edit", "courses/math", "ImplicitDeny").await?;
    expect_decision(w.public(3), &sam_v, &sam, "course:Read", "courses/math", "Allow").await?;
    // ${identity.id} confines each identity to its own prefix.
    let (ti, si) = (id("tina"), id("sam"));
    expect_decision(
        w.public(1),
        &tina_v,
        &tina,
        "s3:PutObject",
        &format!("user-data/{ti}/notes"),
        "Allow",
    )
    .await?;
    expect_decision(
        w.public(2),
        &tina_v,
        &tina,
        "s3:PutObject",
        &format!("user-data/{si}/notes"),
        "ImplicitDeny",
    )
    .await?;
    expect_decision(
        w.public(3),
        &sam_v,
        &sam,
        "s3:GetObject",
        &format!("user-data/{si}/essay"),
        "Allow",
    )
    .await?;
    expect_decision(
        w.public(1),
        &sam_v,
        &sam,
        "s3:GetObject",
        &format!("user-data/{ti}/notes"),
        "ImplicitDeny",
    )
    .await?;
    // Neither a prefix of the other's id nor a longer id slips through.
    expect_decision(
        w.public(2),
        &sam_v,
        &sam,
        "s3:GetObject",
        &format!("user-data/{si}x/essay"),
        "ImplicitDeny",
    )
    .await?;
    expect_decision(
        w.public(3),
        &sam_v,
        &sam,
        "s3:GetObject",
        &format!("user-data/{si}"),
        "ImplicitDeny",
    )
    .await?;

    // custom_role_arn: honoured when the mapping offers the role.
    creds_as("tom", 1, arn("Students"), "Students").await?;
    creds_as("tom", 2, "arn:aws:iam::123456789012:role/Students".into(), "Students").await?;
    creds_as("tom", 3, arn("Teachers"), "Teachers").await?;
    for (name, role) in [
        ("tom", "Science"),
        ("sam", "Teachers"),
        ("una", "Principal"),
        ("tina", "Members"),
    ] {
        refused(
            &format!("{name} asking for custom role {role}"),
            credentials(w.public(2), &id(name), &w.login(&t(name)), &arn(role)).await,
            Code::Unauthenticated,
            "NotAuthorizedException",
            &["custom_role_arn", role],
        )?;
    }
    // The fallback of a mapping that found nothing is not a role the
    // mapping offers (module docs of service::identity::credentials).
    refused(
        "una asking for the authenticated role her mapping falls back to",
        credentials(w.public(3), &id("una"), &w.login(&t("una")), &arn("Members")).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
        &["custom_role_arn", "Members"],
    )?;

    // A per-user role wins over the groups.
    let set_user_role = |name: &'static str, role: String| {
        let (w, pool_id) = (&w, pool_id.clone());
        async move {
            let a = w.admin(2);
            a.identity()
                .admin_set_user_role(a.req(AdminSetUserRoleRequest {
                    user_pool_id: w.d.pool_id.clone(),
                    username: name.to_string(),
                    role_arn: role.clone(),
                }))
                .await
                .map_err(status_err(&format!("AdminSetUserRole {name} {role:?}")))?;
            let got = a
                .identity()
                .admin_get_user_role(a.req(AdminGetUserRoleRequest {
                    user_pool_id: w.d.pool_id.clone(),
                    username: name.to_string(),
                }))
                .await
                .map_err(status_err("AdminGetUserRole"))?
                .into_inner();
            ensure!(
                got.role_arn == role,
                "AdminGetUserRole {name}: {:?}, set {role:?}",
                got.role_arn
            );
            w.everywhere(&pool_id).await
        }
    };
    set_user_role("pete", arn("Principal")).await?;
    let (pete_v, pete) = creds_as("pete", 3, String::new(), "Principal").await?;
    expect_decision(w.public(1), &pete_v, &pete, "course:Delete", "courses/all", "Allow").await?;
    refused(
        "pete asking for his group's role while his own role wins",
        credentials(w.public(1), &id("pete"), &w.login(&t("pete")), &arn("Students")).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
        &["custom_role_arn"],
    )?;
    set_user_role("pete", String::new()).await?;
    creds_as("pete", 1, String::new(), "Students").await?;
    refused(
        "AdminSetUserRole with a role that does not exist",
        w.admin(1)
            .identity()
            .admin_set_user_role(w.admin(1).req(AdminSetUserRoleRequest {
                user_pool_id: w.d.pool_id.clone(),
                username: "pete".into(),
                role_arn: arn("NoSuchRole"),
            }))
            .await,
        Code::NotFound,
        "ResourceNotFoundException",
        &["NoSuchRole"],
    )?;
    // Groups are read live: sam joins the teachers and is a teacher at his
    // next credentials, with the same id token.
    w.d.add_to_group(3, "sam", "teachers")
        .await
        .map_err(status_err("add sam to teachers"))?;
    w.everywhere(&pool_id).await?;
    creds_as("sam", 2, String::new(), "Teachers").await?;
    w.d.remove_from_group(1, "sam", "teachers")
        .await
        .map_err(status_err("remove sam from teachers"))?;
    w.everywhere(&pool_id).await?;
    creds_as("sam", 3, String::new(), "Students").await?;

    // Rules mapping on claims: the first matching rule decides.
    let rule = |claim: &str, match_type: &str, value: &str, role: &str| MappingRule {
        claim: claim.into(),
        match_type: match_type.into(),
        value: value.into(),
        role_arn: arn(role),
    };
    let rules = |ambiguous: &str| RoleMapping {
        r#type: "Rules".into(),
        ambiguous_role_resolution: ambiguous.into(),
        rules_configuration: Some(RulesConfigurationType {
            rules: vec![
                rule("custom:dept", "Equals", "science", "Science"),
                rule("email", "StartsWith", "sam@", "Students"),
                rule("cognito:groups", "Contains", "teachers", "Teachers"),
            ],
        }),
    };
    set_roles(
        w.admin(1),
        &pool_id,
        &[("authenticated", "Members")],
        BTreeMap::from([(w.provider.clone(), rules("Deny"))]),
    )
    .await
    .map_err(status_err("SetIdentityPoolRoles with a Rules mapping"))?;
    w.everywhere(&pool_id).await?;
    // tina and tom are science teachers: the first rule wins.
    let (tina_v, tina) = creds_as("tina", 2, String::new(), "Science").await?;
    expect_decision(w.public(3), &tina_v, &tina, "lab:Open", "labs/chem", "Allow").await?;
    expect_decision(
        w.public(1),
        &tina_v,
        &tina,
        "course:Edit",
        "courses/math",
        "ImplicitDeny",
    )
    .await?;
    creds_as("tom", 3, String::new(), "Science").await?;
    // A later matching rule's role may be asked for; others may not.
    creds_as("tom", 1, arn("Teachers"), "Teachers").await?;
    refused(
        "tom asking for a role no rule of his gives",
        credentials(w.public(1), &id("tom"), &w.login(&t("tom")), &arn("Students")).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
        &["custom_role_arn", "Students"],
    )?;
    creds_as("sam", 1, String::new(), "Students").await?;
    // una matches nothing, and the mapping says Deny.
    refused(
        "una with no matching rule under Deny",
        credentials(w.public(2), &id("una"), &w.login(&t("una")), "").await,
        Code::Unauthenticated,
        "NotAuthorizedException",
        &["No role matched"],
    )?;
    // A per-user role wins over rules too (pete matches no rule).
    set_user_role("pete", arn("Principal")).await?;
    creds_as("pete", 2, String::new(), "Principal").await?;
    set_user_role("pete", String::new()).await?;
    refused(
        "pete with no matching rule under Deny",
        credentials(w.public(3), &id("pete"), &w.login(&t("pete")), "").await,
        Code::Unauthenticated,
        "NotAuthorizedException",
        &["No role matched"],
    )?;
    set_roles(
        w.admin(2),
        &pool_id,
        &[("authenticated", "Members")],
        BTreeMap::from([(w.provider.clone(), rules("AuthenticatedRole"))]),
    )
    .await
    .map_err(status_err("SetIdentityPoolRoles with AuthenticatedRole"))?;
    w.everywhere(&pool_id).await?;
    creds_as("una", 3, String::new(), "Members").await?;
    creds_as("pete", 1, String::new(), "Members").await?;

    // Without a mapping, everyone gets the authenticated role, and that is
    // the only custom_role_arn on offer.
    set_roles(w.admin(3), &pool_id, &[("authenticated", "Members")], BTreeMap::new())
        .await
        .map_err(status_err("SetIdentityPoolRoles without mappings"))?;
    w.everywhere(&pool_id).await?;
    creds_as("tina", 1, String::new(), "Members").await?;
    creds_as("tom", 2, arn("Members"), "Members").await?;
    refused(
        "tom asking for his group's role without a mapping",
        credentials(w.public(3), &id("tom"), &w.login(&t("tom")), &arn("Teachers")).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
        &["custom_role_arn", "Teachers"],
    )?;
    // The per-user role still wins.
    set_user_role("pete", arn("Principal")).await?;
    creds_as("pete", 3, String::new(), "Principal").await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// 5. Policy evaluation through the API; malformed policies; DeleteRole
// ---------------------------------------------------------------------------

scenario!(policy_evaluation, policy_body);

async fn policy_body(c: &TestCluster) -> Result<()> {
    let w = World::create(c, "idtests-policy", &[]).await?;
    let mixed = policy(&[
        ("ReadAll", "Allow", &["s3:*"], &["*"]),
        ("NoSecrets", "Deny", &["s3:GetObject", "s3:PutObject"], &["secret/*"]),
        ("Own", "Allow", &["s3:*"], &["user-data/${identity.id}/*"]),
    ]);
    create_role(w.admin(1), "Mixed", &mixed)
        .await
        .map_err(status_err("CreateRole Mixed"))?;
    let pool = create_pool(
        w.admin(2),
        CreateIdentityPoolRequest {
            identity_pool_name: "policies".into(),
            allow_unauthenticated_identities: true,
            ..Default::default()
        },
    )
    .await?;
    let pool_id = pool.identity_pool_id.clone();
    set_roles(w.admin(3), &pool_id, &[("unauthenticated", "Mixed")], BTreeMap::new())
        .await
        .map_err(status_err("SetIdentityPoolRoles"))?;
    w.everywhere(&pool_id).await?;
    let none = BTreeMap::new();
    let g = get_id(w.public(1), &pool_id, &none)
        .await
        .map_err(status_err("GetId"))?;
    let (_, cr) = credentials(w.public(2), &g, &none, "")
        .await
        .map_err(status_err("guest credentials"))?;
    let token = cr.session_token;
    let v = w.expect_role(3, &pool_id, &g, &token, "Mixed").await?;

    // Explicit Deny beats Allow, whatever the order of the statements.
    let a = expect_decision(w.public(1), &v, &token, "s3:GetObject", "public/readme", "Allow").await?;
    ensure!(
        a.statement_index == 0 && a.statement_sid == "ReadAll",
        "the Allow was decided by {} {:?}",
        a.statement_index,
        a.statement_sid
    );
    let a = expect_decision(w.public(2), &v, &token, "s3:GetObject", "secret/keys", "ExplicitDeny").await?;
    ensure!(
        a.statement_index == 1 && a.statement_sid == "NoSecrets",
        "the Deny was decided by {} {:?}",
        a.statement_index,
        a.statement_sid
    );
    // Actions compare case-insensitively (as IAM): no way around the Deny.
    expect_decision(w.public(3), &v, &token, "S3:GETOBJECT", "secret/keys", "ExplicitDeny").await?;
    // The Deny names PutObject too.
    expect_decision(w.public(1), &v, &token, "s3:PutObject", "secret/new", "ExplicitDeny").await?;
    // An action the Deny does not name is allowed on the same resource.
    expect_decision(w.public(2), &v, &token, "s3:ListBucket", "secret/", "Allow").await?;
    // Resources compare exactly (case-sensitive).
    expect_decision(w.public(3), &v, &token, "s3:GetObject", "Secret/keys", "Allow").await?;
    expect_decision(
        w.public(1),
        &v,
        &token,
        "ec2:StartInstances",
        "secret/keys",
        "ImplicitDeny",
    )
    .await?;
    // Authorize refuses what is not credentials.
    for (what, bad) in [
        ("garbage", "not-a-token".to_string()),
        ("an id token of a user pool", w.user(1, "alice", &[]).await?.id_token),
    ] {
        refused(
            &format!("Authorize with {what}"),
            authorize(w.public(2), &bad, "s3:GetObject", "public/readme").await,
            Code::Unauthenticated,
            "NotAuthorizedException",
            &["Invalid credentials"],
        )?;
    }

    // A malformed policy is refused at CreateRole, naming the problem, and
    // nothing is stored.
    let bad: [(&str, String, &[&str]); 8] = [
        ("not JSON", "{\"Version\": \"2012-10-17\", \"Statement\": [".into(), &["policy_document"]),
        (
            "Effect Permit",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Permit","Action":"s3:*","Resource":"*"}]}"#.into(),
            &["Statement[0].Effect", "Permit"],
        ),
        (
            "no Statement",
            r#"{"Version":"2012-10-17"}"#.into(),
            &["Statement", "missing"],
        ),
        (
            "no Action",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Resource":"*"}]}"#.into(),
            &["Statement[0].Action", "missing"],
        ),
        (
            "a Condition",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{}}]}"#
                .into(),
            &["Statement[0].Condition", "not supported"],
        ),
        (
            "a misspelt key",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Actions":"s3:*","Resource":"*"}]}"#.into(),
            &["Statement[0].Actions", "unknown key"],
        ),
        (
            "a duplicate Sid",
            policy(&[("Same", "Allow", &["a:b"], &["r"]), ("Same", "Deny", &["a:c"], &["r"])]),
            &["Statement[1].Sid", "unique"],
        ),
        (
            "a variable under the 2008 version",
            r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"user-data/${identity.id}/*"}]}"#
                .into(),
            &["Statement[0].Resource"],
        ),
    ];
    for (i, (what, doc, says)) in bad.iter().enumerate() {
        let name = format!("Bad{i}");
        let via = 1 + i as u64 % 3;
        let mut all = vec!["policy_document"];
        all.extend_from_slice(says);
        refused(
            &format!("CreateRole with {what} on node {via}"),
            create_role(w.admin(via), &name, doc).await,
            Code::InvalidArgument,
            "InvalidParameterException",
            &all,
        )?;
        refused(
            &format!("GetRole of the refused role {name}"),
            w.admin(1)
                .identity()
                .get_role(w.admin(1).req(GetRoleRequest {
                    role_name: name.clone(),
                }))
                .await,
            Code::NotFound,
            "NoSuchEntityException",
            &[&name],
        )?;
    }
    // UpdateRole is held to the same rules, and keeps the old document.
    refused(
        "UpdateRole Mixed with Effect Permit",
        w.admin(2)
            .identity()
            .update_role(w.admin(2).req(UpdateRoleRequest {
                role_name: "Mixed".into(),
                description: String::new(),
                policy_document: bad[1].1.clone(),
            }))
            .await,
        Code::InvalidArgument,
        "InvalidParameterException",
        &["Statement[0].Effect"],
    )?;
    let kept = w
        .admin(3)
        .identity()
        .get_role(w.admin(3).req(GetRoleRequest {
            role_name: "Mixed".into(),
        }))
        .await
        .map_err(status_err("GetRole Mixed"))?
        .into_inner()
        .role
        .ok_or_else(|| anyhow!("GetRole returned no role"))?;
    ensure!(
        serde_json::from_str::<Value>(&kept.policy_document)? == serde_json::from_str::<Value>(&mixed)?,
        "Mixed's policy changed after a refused update: {}",
        kept.policy_document
    );

    // DeleteRole of a role in use (a pool's default role, or a rule's).
    refused(
        "DeleteRole of the pool's unauthenticated role",
        w.admin(1)
            .identity()
            .delete_role(w.admin(1).req(DeleteRoleRequest {
                role_name: "Mixed".into(),
            }))
            .await,
        Code::FailedPrecondition,
        "ResourceConflictException",
        &["Mixed", &pool_id],
    )?;
    create_role(w.admin(2), "RuleOnly", &policy(&[("", "Allow", &["a:b"], &["r"])]))
        .await
        .map_err(status_err("CreateRole RuleOnly"))?;
    create_role(w.admin(3), "Unused", &policy(&[("", "Allow", &["a:b"], &["r"])]))
        .await
        .map_err(status_err("CreateRole Unused"))?;
    let users_pool = create_pool(
        w.admin(1),
        CreateIdentityPoolRequest {
            identity_pool_name: "rules".into(),
            cognito_identity_providers: vec![w.cognito_provider()],
            ..Default::default()
        },
    )
    .await?;
    set_roles(
        w.admin(2),
        &users_pool.identity_pool_id,
        &[],
        BTreeMap::from([(
            w.provider.clone(),
            RoleMapping {
                r#type: "Rules".into(),
                ambiguous_role_resolution: "Deny".into(),
                rules_configuration: Some(RulesConfigurationType {
                    rules: vec![MappingRule {
                        claim: "email".into(),
                        match_type: "Contains".into(),
                        value: "@".into(),
                        role_arn: arn("RuleOnly"),
                    }],
                }),
            },
        )]),
    )
    .await
    .map_err(status_err("SetIdentityPoolRoles with a rule naming RuleOnly"))?;
    w.everywhere(&users_pool.identity_pool_id).await?;
    let delete = |via: u64, name: &'static str| {
        let cl = w.admin(via).clone();
        async move {
            cl.identity()
                .delete_role(cl.req(DeleteRoleRequest { role_name: name.into() }))
                .await
                .map(|_| ())
        }
    };
    refused(
        "DeleteRole of a role a rule names",
        delete(3, "RuleOnly").await,
        Code::FailedPrecondition,
        "ResourceConflictException",
        &["RuleOnly", &users_pool.identity_pool_id],
    )?;
    delete(1, "Unused").await.map_err(status_err("DeleteRole Unused"))?;
    refused(
        "GetRole of the deleted role",
        w.admin(2)
            .identity()
            .get_role(w.admin(2).req(GetRoleRequest {
                role_name: "Unused".into(),
            }))
            .await,
        Code::NotFound,
        "NoSuchEntityException",
        &["Unused"],
    )?;
    // Once the pool lets go of it, Mixed can go; the guest's credentials
    // already issued keep their policy (they are self-contained), new ones
    // cannot be had.
    set_roles(w.admin(2), &pool_id, &[], BTreeMap::new())
        .await
        .map_err(status_err("SetIdentityPoolRoles without roles"))?;
    w.everywhere(&pool_id).await?;
    delete(3, "Mixed")
        .await
        .map_err(status_err("DeleteRole Mixed once unused"))?;
    expect_decision(w.public(1), &v, &token, "s3:GetObject", "secret/keys", "ExplicitDeny").await?;
    refused(
        "guest credentials with no unauthenticated role",
        credentials(w.public(1), &g, &none, "").await,
        Code::FailedPrecondition,
        "InvalidIdentityPoolConfigurationException",
        &["unauthenticated role"],
    )?;
    Ok(())
}

scenario!(delete_role_refused_while_users_or_groups_hold_it, delete_role_held_body);

/// The proto promises that DeleteRole is "refused while an identity pool,
/// a role mapping or a user refers to it". A role that only a user
/// (AdminSetUserRole) or a group (role_arn) names is still in use: the
/// user's, or the group members', credentials depend on it.
async fn delete_role_held_body(c: &TestCluster) -> Result<()> {
    let w = World::create(c, "idtests-held", &[]).await?;
    for name in ["Members", "Personal", "Grouped"] {
        create_role(w.admin(1), name, &policy(&[("", "Allow", &["a:b"], &["r"])]))
            .await
            .map_err(status_err(&format!("CreateRole {name}")))?;
    }
    let pool = create_pool(
        w.admin(2),
        CreateIdentityPoolRequest {
            identity_pool_name: "held".into(),
            cognito_identity_providers: vec![w.cognito_provider()],
            ..Default::default()
        },
    )
    .await?;
    set_roles(
        w.admin(3),
        &pool.identity_pool_id,
        &[("authenticated", "Members")],
        BTreeMap::from([(
            w.provider.clone(),
            RoleMapping {
                r#type: "Token".into(),
                ambiguous_role_resolution: "AuthenticatedRole".into(),
                rules_configuration: None,
            },
        )]),
    )
    .await
    .map_err(status_err("SetIdentityPoolRoles"))?;
    w.everywhere(&pool.identity_pool_id).await?;
    w.group(1, "grouped", &arn("Grouped"), 1).await?;
    let alice = w.user(2, "alice", &[]).await?;
    let bob_tokens = w.user(3, "bob", &[]).await?;
    w.d.add_to_group(1, "bob", "grouped")
        .await
        .map_err(status_err("add bob to grouped"))?;
    let a = w.admin(1);
    a.identity()
        .admin_set_user_role(a.req(AdminSetUserRoleRequest {
            user_pool_id: w.d.pool_id.clone(),
            username: "alice".into(),
            role_arn: arn("Personal"),
        }))
        .await
        .map_err(status_err("AdminSetUserRole alice Personal"))?;
    w.everywhere(&pool.identity_pool_id).await?;
    let alice_id = get_id(w.public(1), &pool.identity_pool_id, &w.login(&alice))
        .await
        .map_err(status_err("GetId alice"))?;
    let (_, cr) = credentials(w.public(2), &alice_id, &w.login(&alice), "")
        .await
        .map_err(status_err("alice's credentials"))?;
    w.expect_role(3, &pool.identity_pool_id, &alice_id, &cr.session_token, "Personal")
        .await?;
    let bob_id = get_id(w.public(1), &pool.identity_pool_id, &w.login(&bob_tokens))
        .await
        .map_err(status_err("GetId bob"))?;
    let (_, cr) = credentials(w.public(2), &bob_id, &w.login(&bob_tokens), "")
        .await
        .map_err(status_err("bob's credentials"))?;
    w.expect_role(3, &pool.identity_pool_id, &bob_id, &cr.session_token, "Grouped")
        .await?;
    let mut broken = Vec::new();
    for (role, holder) in [
        ("Personal", "alice's own role"),
        ("Grouped", "the grouped group's role"),
    ] {
        let r = w
            .admin(2)
            .identity()
            .delete_role(w.admin(2).req(DeleteRoleRequest { role_name: role.into() }))
            .await;
        if r.is_ok() {
            // Show what the deletion did to the holder.
            let who = if role == "Personal" {
                (&alice_id, &alice)
            } else {
                (&bob_id, &bob_tokens)
            };
            w.everywhere(&pool.identity_pool_id).await?;
            let after = match credentials(w.public(3), who.0, &w.login(who.1), "").await {
                Ok((_, cr)) => match w.offline(3, &pool.identity_pool_id, &cr.session_token).await {
                    Ok(v) => format!("credentials with role {}", v.role_arn),
                    Err(e) => format!("credentials that do not verify: {e}"),
                },
                Err(s) => format!("{:?}: {}", s.code(), s.message()),
            };
            broken.push(format!(
                "DeleteRole {role} succeeded while it is {holder}; the holder's next GetCredentialsForIdentity: {after}"
            ));
            continue;
        }
        refused(
            &format!("DeleteRole of {holder}"),
            r,
            Code::FailedPrecondition,
            "ResourceConflictException",
            &[role],
        )?;
    }
    ensure!(broken.is_empty(), "{}", broken.join("\n"));
    Ok(())
}

// ---------------------------------------------------------------------------
// 6. Developer-authenticated identities
// ---------------------------------------------------------------------------

scenario!(developer_identities, developer_body);

async fn developer_body(c: &TestCluster) -> Result<()> {
    let w = World::create(c, "idtests-dev", &[]).await?;
    create_role(
        w.admin(1),
        "Members",
        &policy(&[("OwnData", "Allow", &["s3:*"], &["user-data/${identity.id}/*"])]),
    )
    .await
    .map_err(status_err("CreateRole Members"))?;
    let pool = create_pool(
        w.admin(2),
        CreateIdentityPoolRequest {
            identity_pool_name: "developer".into(),
            developer_provider_name: DEV_PROVIDER.into(),
            ..Default::default()
        },
    )
    .await?;
    let pool_id = pool.identity_pool_id.clone();
    ensure!(
        pool.developer_provider_name == DEV_PROVIDER,
        "developer_provider_name {:?}",
        pool.developer_provider_name
    );
    set_roles(w.admin(3), &pool_id, &[("authenticated", "Members")], BTreeMap::new())
        .await
        .map_err(status_err("SetIdentityPoolRoles"))?;
    w.everywhere(&pool_id).await?;
    let dev = |user: &str| map(&[(DEV_PROVIDER, user)]);

    // The developer's back end gets an identity and a token per user; the
    // same user gets the same identity on every node.
    let (id1, token1) = developer_token(w.admin(2), &pool_id, "", &dev("user-1"), 0)
        .await
        .map_err(status_err("GetOpenIdTokenForDeveloperIdentity user-1"))?;
    for via in [3, 1] {
        let (again, _) = developer_token(w.admin(via), &pool_id, "", &dev("user-1"), 0)
            .await
            .map_err(status_err(&format!(
                "GetOpenIdTokenForDeveloperIdentity user-1 on node {via}"
            )))?;
        ensure!(again == id1, "user-1 on node {via}: {again}, first {id1}");
    }
    let (id2, token2) = developer_token(w.admin(3), &pool_id, "", &dev("user-2"), 3600)
        .await
        .map_err(status_err("GetOpenIdTokenForDeveloperIdentity user-2"))?;
    ensure!(id2 != id1, "user-1 and user-2 share identity {id1}");
    // It is an admin call.
    refused(
        "GetOpenIdTokenForDeveloperIdentity without the admin token",
        w.public(1)
            .identity()
            .get_open_id_token_for_developer_identity(GetOpenIdTokenForDeveloperIdentityRequest {
                identity_pool_id: pool_id.clone(),
                logins: dev("user-1"),
                ..Default::default()
            })
            .await,
        Code::Unauthenticated,
        "NotAuthorizedException",
        &[],
    )?;

    // The tokens verify with jsonwebtoken against the pool's JWKS URL, on
    // every node.
    let issuer = format!("{}/{pool_id}", w.public_url);
    for (token, id, life) in [(&token1, &id1, 900), (&token2, &id2, 3600)] {
        for via in 1..=3 {
            let (_, set) = fetch_jwks(w.addr(via), &pool_id).await?;
            let claims = verify_with_jwks(token, &set, &issuer, Some(&pool_id))
                .with_context(|| format!("the developer token of {id} against node {via}'s JWKS"))?;
            ensure!(claims["sub"] == id.as_str(), "sub {} != {id}", claims["sub"]);
            ensure!(claims["token_use"] == "identity", "token_use {}", claims["token_use"]);
            let exp = claims["exp"].as_i64().unwrap_or(0);
            let iat = claims["iat"].as_i64().unwrap_or(0);
            ensure!(exp - iat == life, "the token lives {} s, expected {life}", exp - iat);
            let amr: Vec<&str> = claims["amr"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            ensure!(
                amr.contains(&"authenticated") && amr.contains(&DEV_PROVIDER),
                "amr {amr:?}"
            );
        }
    }
    // It does not verify as another pool's token.
    let (_, set) = fetch_jwks(w.addr(1), &pool_id).await?;
    ensure!(
        verify_with_jwks(
            &token1,
            &set,
            &issuer,
            Some("local:00000000-0000-4000-8000-000000000000")
        )
        .is_err(),
        "the developer token verified for another audience"
    );

    // LookupDeveloperIdentity, both ways.
    let l = lookup(w.admin(1), &pool_id, &id1, "")
        .await
        .map_err(status_err("Lookup by identity"))?;
    ensure!(
        l.identity_id == id1 && l.developer_user_identifier_list == vec!["user-1".to_string()],
        "lookup by {id1}: {l:?}"
    );
    let l = lookup(w.admin(2), &pool_id, "", "user-2")
        .await
        .map_err(status_err("Lookup by user"))?;
    ensure!(
        l.identity_id == id2 && l.developer_user_identifier_list == vec!["user-2".to_string()],
        "lookup by user-2: {l:?}"
    );
    let l = lookup(w.admin(3), &pool_id, &id1, "user-1")
        .await
        .map_err(status_err("Lookup by both"))?;
    ensure!(l.identity_id == id1, "lookup by both: {l:?}");
    refused(
        "LookupDeveloperIdentity of another identity's user",
        lookup(w.admin(3), &pool_id, &id1, "user-2").await,
        Code::FailedPrecondition,
        "ResourceConflictException",
        &["another identity"],
    )?;
    refused(
        "LookupDeveloperIdentity of an unknown user",
        lookup(w.admin(1), &pool_id, "", "nobody").await,
        Code::NotFound,
        "ResourceNotFoundException",
        &["nobody"],
    )?;
    refused(
        "LookupDeveloperIdentity with neither",
        lookup(w.admin(1), &pool_id, "", "").await,
        Code::InvalidArgument,
        "InvalidParameterException",
        &["developer_user_identifier"],
    )?;

    // The token as a login under cognito-identity.amazonaws.com.
    let as_login = |t: &str| map(&[(OPENID_PROVIDER, t)]);
    let (got, cr) = credentials(w.public(3), &id1, &as_login(&token1), "")
        .await
        .map_err(status_err("GetCredentialsForIdentity with the developer token"))?;
    ensure!(got == id1, "credentials for {got}, not {id1}");
    let v = w.expect_role(1, &pool_id, &id1, &cr.session_token, "Members").await?;
    expect_decision(
        w.public(2),
        &v,
        &cr.session_token,
        "s3:PutObject",
        &format!("user-data/{id1}/a"),
        "Allow",
    )
    .await?;
    expect_decision(
        w.public(3),
        &v,
        &cr.session_token,
        "s3:PutObject",
        &format!("user-data/{id2}/a"),
        "ImplicitDeny",
    )
    .await?;
    let got = get_id(w.public(2), &pool_id, &as_login(&token1))
        .await
        .map_err(status_err("GetId with the developer token"))?;
    ensure!(got == id1, "GetId with user-1's token: {got}");
    refused(
        "user-1's token presented for user-2's identity",
        credentials(w.public(1), &id2, &as_login(&token1), "").await,
        Code::Unauthenticated,
        "NotAuthorizedException",
        &["Logins don't match"],
    )?;
    refused(
        "a tampered developer token",
        credentials(w.public(2), &id2, &as_login(&tamper(&token1, "sub", json!(id2))?), "").await,
        Code::Unauthenticated,
        "NotAuthorizedException",
        &[OPENID_PROVIDER],
    )?;
    refused(
        "the developer provider as a public login",
        get_id(w.public(3), &pool_id, &dev("user-1")).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
        &["developer provider", "GetOpenIdTokenForDeveloperIdentity"],
    )?;

    // MergeDeveloperIdentities: user-2's identity goes into user-1's.
    let merge = |via: u64, provider: &str, source: &str, destination: &str| {
        let cl = w.admin(via).clone();
        let req = MergeDeveloperIdentitiesRequest {
            source_user_identifier: source.into(),
            destination_user_identifier: destination.into(),
            developer_provider_name: provider.into(),
            identity_pool_id: pool_id.clone(),
        };
        async move {
            cl.identity()
                .merge_developer_identities(cl.req(req))
                .await
                .map(|r| r.into_inner().identity_id)
        }
    };
    refused(
        "MergeDeveloperIdentities under another provider name",
        merge(1, "login.other", "user-2", "user-1").await,
        Code::Unauthenticated,
        "NotAuthorizedException",
        &["login.other"],
    )?;
    let survivor = merge(2, DEV_PROVIDER, "user-2", "user-1")
        .await
        .map_err(status_err("MergeDeveloperIdentities"))?;
    ensure!(survivor == id1, "the merge kept {survivor}, not the destination {id1}");
    for via in 1..=3 {
        let l = lookup(w.admin(via), &pool_id, "", "user-2")
            .await
            .map_err(status_err(&format!("Lookup user-2 after the merge on node {via}")))?;
        ensure!(l.identity_id == id1, "user-2 after the merge on node {via}: {l:?}");
        let d = describe_identity(w.admin(via), &id2)
            .await
            .map_err(status_err("DescribeIdentity of the merged identity"))?;
        ensure!(
            d.disabled && d.merged_into == id1,
            "the merged identity on node {via}: {d:?}"
        );
    }
    let l = lookup(w.admin(1), &pool_id, &id1, "")
        .await
        .map_err(status_err("Lookup id1"))?;
    let mut users = l.developer_user_identifier_list.clone();
    users.sort();
    ensure!(
        users == vec!["user-1".to_string(), "user-2".into()],
        "id1's users after the merge: {l:?}"
    );
    let (again, _) = developer_token(w.admin(3), &pool_id, "", &dev("user-2"), 0)
        .await
        .map_err(status_err("GetOpenIdTokenForDeveloperIdentity user-2 after the merge"))?;
    ensure!(again == id1, "user-2 after the merge gets {again}");
    // user-2's token from before the merge names the merged identity: it
    // leads to the survivor (as a new token for user-2 does), never to
    // credentials of the disabled identity, and never passes for a guest.
    for via in 1..=3 {
        let (got, cr) = credentials(w.public(via), &id2, &as_login(&token2), "")
            .await
            .map_err(status_err(&format!(
                "credentials for the merged identity with its old token on node {via}"
            )))?;
        ensure!(
            got == id1,
            "the merged identity's old token got credentials for {got}, not {id1}"
        );
        w.expect_role(via, &pool_id, &id1, &cr.session_token, "Members").await?;
        let got = get_id(w.public(via), &pool_id, &as_login(&token2))
            .await
            .map_err(status_err("GetId with the merged identity's old token"))?;
        ensure!(
            got == id1,
            "GetId with the merged identity's old token: {got}, not {id1}"
        );
    }
    refused(
        "the merged identity without a login",
        credentials(w.public(2), &id2, &BTreeMap::new(), "").await,
        Code::Unauthenticated,
        "NotAuthorizedException",
        &["merged into", &id1],
    )?;

    // UnlinkDeveloperIdentity: user-2 leaves id1.
    let unlink = |via: u64, identity_id: &str, user: &str| {
        let cl = w.admin(via).clone();
        let req = UnlinkDeveloperIdentityRequest {
            identity_id: identity_id.into(),
            identity_pool_id: pool_id.clone(),
            developer_provider_name: DEV_PROVIDER.into(),
            developer_user_identifier: user.into(),
        };
        async move { cl.identity().unlink_developer_identity(cl.req(req)).await.map(|_| ()) }
    };
    unlink(3, &id1, "user-2")
        .await
        .map_err(status_err("UnlinkDeveloperIdentity"))?;
    for via in 1..=3 {
        refused(
            &format!("Lookup user-2 after the unlink on node {via}"),
            lookup(w.admin(via), &pool_id, "", "user-2").await,
            Code::NotFound,
            "ResourceNotFoundException",
            &["user-2"],
        )?;
    }
    let l = lookup(w.admin(2), &pool_id, &id1, "")
        .await
        .map_err(status_err("Lookup id1"))?;
    ensure!(
        l.developer_user_identifier_list == vec!["user-1".to_string()],
        "id1 after the unlink: {l:?}"
    );
    refused(
        "UnlinkDeveloperIdentity again",
        unlink(1, &id1, "user-2").await,
        Code::NotFound,
        "ResourceNotFoundException",
        &["user-2"],
    )?;
    // user-1 is untouched; user-2 starts afresh.
    let (got, _) = credentials(w.public(2), &id1, &as_login(&token1), "")
        .await
        .map_err(status_err("user-1's credentials after the unlink"))?;
    ensure!(got == id1, "user-1 after the unlink: {got}");
    let (id3, _) = developer_token(w.admin(1), &pool_id, "", &dev("user-2"), 0)
        .await
        .map_err(status_err("GetOpenIdTokenForDeveloperIdentity user-2 after the unlink"))?;
    ensure!(
        id3 != id1 && id3 != id2,
        "user-2 after the unlink got the old identity {id3}"
    );
    // A second developer user identifier linked to an identity by id (as
    // Cognito lets a developer do): one identity, both identifiers.
    let (got, _) = developer_token(w.admin(2), &pool_id, &id1, &dev("user-1b"), 0)
        .await
        .map_err(status_err("GetOpenIdTokenForDeveloperIdentity linking user-1b to id1"))?;
    ensure!(got == id1, "linking user-1b to {id1} answered {got}");
    let l = lookup(w.admin(3), &pool_id, &id1, "")
        .await
        .map_err(status_err("Lookup id1"))?;
    let mut users = l.developer_user_identifier_list.clone();
    users.sort();
    ensure!(
        users == vec!["user-1".to_string(), "user-1b".into()],
        "id1's users after the link: {l:?}"
    );
    let l = lookup(w.admin(1), &pool_id, "", "user-1b")
        .await
        .map_err(status_err("Lookup user-1b"))?;
    ensure!(l.identity_id == id1, "user-1b: {l:?}");
    let all = list_identities(w.admin(3), &pool_id, true).await?;
    ensure!(
        ids_of(&all) == BTreeSet::from([id1.clone(), id3.clone()]),
        "the enabled identities at the end: {all:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// 7. Malformed input
// ---------------------------------------------------------------------------

scenario!(bad_input, bad_input_body);

async fn bad_input_body(c: &TestCluster) -> Result<()> {
    let w = World::create(c, "idtests-bad", &[]).await?;
    create_role(w.admin(1), "Members", &policy(&[("", "Allow", &["a:b"], &["r"])]))
        .await
        .map_err(status_err("CreateRole Members"))?;
    let pool = create_pool(
        w.admin(2),
        CreateIdentityPoolRequest {
            identity_pool_name: "bad input".into(),
            cognito_identity_providers: vec![w.cognito_provider()],
            developer_provider_name: DEV_PROVIDER.into(),
            ..Default::default()
        },
    )
    .await?;
    let pool_id = pool.identity_pool_id.clone();
    set_roles(w.admin(3), &pool_id, &[("authenticated", "Members")], BTreeMap::new())
        .await
        .map_err(status_err("SetIdentityPoolRoles"))?;
    w.everywhere(&pool_id).await?;
    let alice = w.user(1, "alice", &[]).await?;
    let alice_id = get_id(w.public(1), &pool_id, &w.login(&alice))
        .await
        .map_err(status_err("GetId alice"))?;
    let still_serving = |via: u64| {
        let (w, pool_id, alice, alice_id) = (&w, &pool_id, &alice, &alice_id);
        async move {
            let id = get_id(w.public(via), pool_id, &w.login(alice))
                .await
                .map_err(status_err(&format!("GetId on node {via} after bad input")))?;
            ensure!(id == *alice_id, "node {via} now answers {id}");
            let h = http_get(w.addr(via), "/healthz").await?;
            ensure!(h.status == 200, "node {via} /healthz: {}", h.status);
            anyhow::Ok(())
        }
    };

    for (i, bad_id) in [
        "not-an-id",
        "local:",
        ":0b7c",
        "local:xyz!",
        "local:0b7c/../x",
        &"a".repeat(56),
    ]
    .into_iter()
    .enumerate()
    {
        let via = 1 + i as u64 % 3;
        refused(
            &format!("GetId with identity pool id {bad_id:?} on node {via}"),
            get_id(w.public(via), bad_id, &w.login(&alice)).await,
            Code::InvalidArgument,
            "InvalidParameterException",
            &["identity_pool_id"],
        )?;
        refused(
            &format!("GetCredentialsForIdentity with identity id {bad_id:?} on node {via}"),
            credentials(w.public(via), bad_id, &w.login(&alice), "").await,
            Code::InvalidArgument,
            "InvalidParameterException",
            &["identity_id"],
        )?;
        refused(
            &format!("DescribeIdentityPool {bad_id:?} on node {via}"),
            w.admin(via)
                .identity()
                .describe_identity_pool(w.admin(via).req(DescribeIdentityPoolRequest {
                    identity_pool_id: bad_id.to_string(),
                }))
                .await,
            Code::InvalidArgument,
            "InvalidParameterException",
            &["identity_pool_id"],
        )?;
        still_serving(via).await?;
    }
    // A well-formed id of no pool is not found, not invalid.
    refused(
        "GetId for a pool that does not exist",
        get_id(
            w.public(2),
            "local:00000000-0000-4000-8000-000000000000",
            &w.login(&alice),
        )
        .await,
        Code::NotFound,
        "ResourceNotFoundException",
        &[],
    )?;

    // One provider under two spellings (with and without its scheme), for
    // two users who have no identity yet: two logins of one provider,
    // refused; nothing is written, and listing still works (a refused
    // first GetId must not leave an identity id behind in the pool's
    // index, which ListIdentities would then have to step over).
    let carol = w.user(2, "carol", &[]).await?;
    let dave = w.user(3, "dave", &[]).await?;
    let mut twice = w.login(&carol);
    twice.insert(format!("{}/{}", w.public_url, w.d.pool_id), dave.id_token.clone());
    ensure!(twice.len() == 2, "built {} logins", twice.len());
    for attempt in 0..8u64 {
        let via = 1 + attempt % 3;
        refused(
            &format!("GetId with one provider spelt two ways, attempt {attempt} on node {via}"),
            get_id(w.public(via), &pool_id, &twice).await,
            Code::FailedPrecondition,
            "ResourceConflictException",
            &["two logins of provider"],
        )?;
    }
    for via in 1..=3 {
        let listed = tokio::time::timeout(Duration::from_secs(10), async {
            let mut out = Vec::new();
            for max_results in [1, 2, 60] {
                let page = w
                    .admin(via)
                    .identity()
                    .list_identities(w.admin(via).req(ListIdentitiesRequest {
                        identity_pool_id: pool_id.clone(),
                        max_results,
                        next_token: String::new(),
                        hide_disabled: false,
                    }))
                    .await
                    .map_err(status_err("ListIdentities"))?
                    .into_inner();
                out.push((max_results, ids_of(&page.identities), page.next_token.is_empty()));
            }
            anyhow::Ok(out)
        })
        .await
        .map_err(|_| anyhow!("ListIdentities on node {via} did not answer within 10 s after refused GetIds"))??;
        for (max_results, ids, last) in listed {
            ensure!(
                ids == BTreeSet::from([alice_id.clone()]) && last,
                "ListIdentities (max_results {max_results}) on node {via} after refused GetIds: {ids:?}, last page {last}"
            );
        }
        still_serving(via).await?;
    }

    // Too many logins (Cognito's bound is 10).
    let mut many = w.login(&alice);
    for i in 0..10 {
        many.insert(format!("provider{i}.example.com"), alice.id_token.clone());
    }
    ensure!(many.len() == 11, "built {} logins", many.len());
    for via in 1..=3 {
        refused(
            &format!("GetId with 11 logins on node {via}"),
            get_id(w.public(via), &pool_id, &many).await,
            Code::InvalidArgument,
            "InvalidParameterException",
            &["logins", "at most 10"],
        )?;
        refused(
            &format!("GetCredentialsForIdentity with 11 logins on node {via}"),
            credentials(w.public(via), &alice_id, &many, "").await,
            Code::InvalidArgument,
            "InvalidParameterException",
            &["logins", "at most 10"],
        )?;
        still_serving(via).await?;
    }

    // A token over 50,000 characters, for a real provider and for our own
    // OpenID tokens; exactly 50,000 is a bad token, not a bad parameter.
    let long = format!("{}.{}.sig", "e".repeat(100), "x".repeat(50_000));
    ensure!(long.len() > 50_000, "the long token is {} chars", long.len());
    let at_limit = "x".repeat(50_000);
    for via in 1..=3 {
        for provider in [w.provider.as_str(), OPENID_PROVIDER] {
            refused(
                &format!("GetId with a {}-char token for {provider} on node {via}", long.len()),
                get_id(w.public(via), &pool_id, &map(&[(provider, &long)])).await,
                Code::InvalidArgument,
                "InvalidParameterException",
                &["50000"],
            )?;
        }
        refused(
            &format!("GetCredentialsForIdentity with a long token on node {via}"),
            credentials(w.public(via), &alice_id, &map(&[(&w.provider, &long)]), "").await,
            Code::InvalidArgument,
            "InvalidParameterException",
            &["50000"],
        )?;
        refused(
            &format!("GetId with a 50,000-char token on node {via}"),
            get_id(w.public(via), &pool_id, &map(&[(&w.provider, &at_limit)])).await,
            Code::Unauthenticated,
            "NotAuthorizedException",
            &["Invalid login token"],
        )?;
        refused(
            &format!("GetId with an empty token on node {via}"),
            get_id(w.public(via), &pool_id, &map(&[(&w.provider, "")])).await,
            Code::InvalidArgument,
            "InvalidParameterException",
            &["logins"],
        )?;
        refused(
            &format!("GetId with an unknown provider on node {via}"),
            get_id(
                w.public(via),
                &pool_id,
                &map(&[("login.unknown.example", &alice.id_token)]),
            )
            .await,
            Code::InvalidArgument,
            "InvalidParameterException",
            &["login.unknown.example", "not configured"],
        )?;
        still_serving(via).await?;
    }
    // Authorize's own bounds.
    let (_, cr) = credentials(w.public(1), &alice_id, &w.login(&alice), "")
        .await
        .map_err(status_err("alice's credentials"))?;
    for (what, action, resource) in [
        ("an empty action", String::new(), "r".to_string()),
        ("a 257-char action", "a".repeat(257), "r".to_string()),
        ("a 2049-char resource", "a:b".to_string(), "r".repeat(2049)),
    ] {
        refused(
            &format!("Authorize with {what}"),
            authorize(w.public(2), &cr.session_token, &action, &resource).await,
            Code::InvalidArgument,
            "InvalidParameterException",
            &[],
        )?;
    }
    // The developer user identifier's bounds.
    refused(
        "a developer user identifier of 1025 characters",
        developer_token(w.admin(3), &pool_id, "", &map(&[(DEV_PROVIDER, &"u".repeat(1025))]), 0).await,
        Code::InvalidArgument,
        "InvalidParameterException",
        &["1024"],
    )?;
    refused(
        "a developer token that lives too long",
        developer_token(w.admin(3), &pool_id, "", &map(&[(DEV_PROVIDER, "u1")]), 86_401).await,
        Code::InvalidArgument,
        "InvalidParameterException",
        &["token_duration"],
    )?;
    // A request far beyond the transport's limit is refused; the node
    // keeps serving.
    let huge = map(&[(&w.provider, &"x".repeat(8 * 1024 * 1024))]);
    match get_id(w.public(3), &pool_id, &huge).await {
        Ok(id) => bail!("an 8 MiB GetId was answered: {id}"),
        Err(s) => println!("  ok: an 8 MiB GetId -> {:?} {}", s.code(), s.message()),
    }
    for via in 1..=3 {
        still_serving(via).await?;
    }
    for id in 1..=3 {
        ensure!(c.node(id).is_started(), "node {id} is not running");
    }
    let listed = list_identities(w.admin(1), &pool_id, false).await?;
    ensure!(
        ids_of(&listed) == BTreeSet::from([alice_id.clone()]),
        "bad input left identities: {listed:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// 8. The guest limit holds under a parallel flood
// ---------------------------------------------------------------------------

scenario!(
    a_parallel_guest_flood_is_limited_per_address,
    guest_flood_body,
    RaftTuning {
        extra_config: "[limits]\nguests_burst = 10\nguests_per_minute = 1\n".into(),
        ..Default::default()
    }
);

/// The attack: one address asks for 40 guest identities at once from one
/// node. Guests cost no password, so without the per-address limit every
/// call would mint an identity. With a burst of 10 at most 10 succeed, the
/// rest get `TooManyRequestsException`, and the pool holds at most 10.
async fn guest_flood_body(c: &TestCluster) -> Result<()> {
    let admin = c.client(1).await?;
    let pool = create_pool(
        &admin,
        CreateIdentityPoolRequest {
            identity_pool_name: "flood".into(),
            allow_unauthenticated_identities: true,
            ..Default::default()
        },
    )
    .await?;
    let public = Client::connect(&c.node(2).url(), None).await?;
    let none = BTreeMap::new();
    let calls = (0..40).map(|_| {
        let p = public.clone();
        let id = pool.identity_pool_id.clone();
        let none = none.clone();
        async move { get_id(&p, &id, &none).await }
    });
    let results = futures::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let limited = results
        .iter()
        .filter(|r| matches!(r, Err(s) if s.code() == Code::ResourceExhausted && s.message().contains("TooManyRequestsException")))
        .count();
    ensure!(
        (1..=10).contains(&ok),
        "{ok} of 40 parallel guest GetIds succeeded; the burst is 10"
    );
    ensure!(ok + limited == 40, "unexpected answers: {results:?}");
    let listed = list_identities(&admin, &pool.identity_pool_id, false).await?;
    ensure!(
        listed.len() == ok,
        "{} identities for {ok} answered guests",
        listed.len()
    );
    println!("  ok: 40 parallel guests -> {ok} identities, {limited} refused with TooManyRequestsException");
    Ok(())
}
