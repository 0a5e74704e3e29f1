//! Issue 14, server-to-server: resource servers and the client-credentials
//! grant at `POST /{pool_id}/oauth2/token`, on a real three-node cluster.
//!
//! A resource server is made through node 1, a confidential client allowed
//! its scopes through node 2, and tokens are asked of node 3 and node 1
//! with both client authentication methods. Each token is verified with
//! `jsonwebtoken` and nothing but the pool's published JWKS. Then every
//! attack on the endpoint is made and must be refused with RFC 6749's
//! error: a wrong secret, an unknown client, another pool's client, a
//! public client, a client not allowed the grant, a scope it was not
//! given, a scope whose resource server changed, two authentications, a
//! repeated parameter, a body that is not a form or is too large. A
//! service's token must not pass for a user's, and a deleted client gets
//! nothing from any node.
//!
//! `authlib_gets_a_service_token` does the same with clients nobody here
//! wrote: boto3 through the Cognito JSON front for the setup, authlib for
//! the grant and joserfc for the token (`tests/python/oauth_client.py`);
//! then the authorization code flow as authlib does it (PKCE S256, state,
//! nonce), with `requests` on the hosted page, joserfc on the id token and
//! userInfo with the access token.
//! `make test` sets `TESSERA_PYTHON` to the venv's interpreter.
//!
//! Run with: `cargo test --test oauth -- --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use base64::Engine as _;
use common::auth::{expect_exception, fetch_jwks, status_err, verify_with_jwks, Fixture, PoolSpec};
use common::http::{enc, hidden, post, query_param, request, Answer, FORM};
use common::{poll_until, TestCluster};
use serde_json::Value;
use tessera::proto::*;
use tonic::Code;

const ORDERS: &str = "https://orders.example.com";

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// Asks node `addr` for a token with HTTP Basic authentication.
async fn token_basic(addr: &str, pool: &str, id: &str, secret: &str, scope: Option<&str>) -> Result<Answer> {
    let auth = basic(id, secret);
    let body = match scope {
        Some(s) => format!(
            "grant_type=client_credentials&scope={}",
            s.replace(' ', "+").replace('/', "%2F").replace(':', "%3A")
        ),
        None => "grant_type=client_credentials".to_string(),
    };
    post(
        addr,
        &format!("/{pool}/oauth2/token"),
        &[FORM, ("Authorization", &auth)],
        &body,
    )
    .await
}

fn scopes(names: &[&str]) -> Vec<ResourceServerScopeType> {
    names
        .iter()
        .map(|n| ResourceServerScopeType {
            scope_name: n.to_string(),
            scope_description: format!("{n} orders"),
        })
        .collect()
}

fn python() -> String {
    std::env::var("TESSERA_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_gets_a_service_token() {
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = authlib_suite(&c).await;
    c.finish(r);
}

async fn authlib_suite(c: &TestCluster) -> Result<()> {
    let admin = c.client(1).await?;
    let (key_id, secret) = common::auth::admin_access_key(c, &admin, "authlib suite").await?;
    let urls: Vec<String> = c.nodes.values().map(|n| n.url()).collect();
    let args = serde_json::json!({"urls": urls, "key_id": key_id, "secret": secret});
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/oauth_client.py");
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(script).arg(args.to_string());
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        cmd.env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("the authlib suite did not finish in 180 s")?
    .with_context(|| {
        format!(
            "starting {} (set TESSERA_PYTHON to a Python with authlib and boto3)",
            python()
        )
    })?;
    let log = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("the suite printed no report ({}); its log:\n{log}", out.status))?;
    let steps = report["steps"].as_array().cloned().unwrap_or_default();
    let failed: Vec<String> = steps
        .iter()
        .filter(|s| s["ok"] != true)
        .map(|s| format!("{}: {}", s["name"], s["detail"]))
        .collect();
    for s in &steps {
        println!("  {} {}", if s["ok"] == true { "ok:" } else { "FAILED:" }, s["name"]);
    }
    ensure!(steps.len() >= 13, "only {} steps reported; log:\n{log}", steps.len());
    ensure!(failed.is_empty(), "failed steps:\n{}\nlog:\n{log}", failed.join("\n"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_on_a_three_node_cluster() {
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = body(&c).await;
    c.finish(r);
}

async fn body(c: &TestCluster) -> Result<()> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "oauth",
            ..Default::default()
        },
    )
    .await?;
    let pool = fx.pool_id.clone();
    let n1 = fx.node(1);
    let n2 = fx.node(2);

    // Resource servers: validated, unique, listed in pages.
    expect_exception(
        "an identifier with a space",
        n1.admin()
            .create_resource_server(n1.req(CreateResourceServerRequest {
                user_pool_id: pool.clone(),
                identifier: "orders api".into(),
                name: "Orders".into(),
                scopes: scopes(&["read"]),
            }))
            .await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    expect_exception(
        "a scope name with a slash",
        n1.admin()
            .create_resource_server(n1.req(CreateResourceServerRequest {
                user_pool_id: pool.clone(),
                identifier: ORDERS.into(),
                name: "Orders".into(),
                scopes: scopes(&["read/all"]),
            }))
            .await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    let created = n1
        .admin()
        .create_resource_server(n1.req(CreateResourceServerRequest {
            user_pool_id: pool.clone(),
            identifier: ORDERS.into(),
            name: "Orders API".into(),
            scopes: scopes(&["read", "write"]),
        }))
        .await
        .map_err(status_err("CreateResourceServer"))?
        .into_inner()
        .resource_server
        .ok_or_else(|| anyhow!("CreateResourceServer returned no server"))?;
    ensure!(created.scopes.len() == 2 && created.identifier == ORDERS, "{created:?}");
    expect_exception(
        "the same identifier twice",
        n2.admin()
            .create_resource_server(n2.req(CreateResourceServerRequest {
                user_pool_id: pool.clone(),
                identifier: ORDERS.into(),
                name: "Again".into(),
                scopes: vec![],
            }))
            .await,
        Code::AlreadyExists,
        "ResourceExistsException",
    )?;
    for i in 0..2 {
        n1.admin()
            .create_resource_server(n1.req(CreateResourceServerRequest {
                user_pool_id: pool.clone(),
                identifier: format!("urn:inventory:{i}"),
                name: format!("Inventory {i}"),
                scopes: scopes(&["read"]),
            }))
            .await
            .map_err(status_err("CreateResourceServer inventory"))?;
    }
    let n3 = fx.node(3);
    let first = n3
        .admin()
        .list_resource_servers(n3.req(ListResourceServersRequest {
            user_pool_id: pool.clone(),
            max_results: 2,
            next_token: String::new(),
        }))
        .await
        .map_err(status_err("ListResourceServers"))?
        .into_inner();
    ensure!(
        first.resource_servers.len() == 2 && !first.next_token.is_empty(),
        "a first page of 2 with a token: {first:?}"
    );
    let rest = n3
        .admin()
        .list_resource_servers(n3.req(ListResourceServersRequest {
            user_pool_id: pool.clone(),
            max_results: 2,
            next_token: first.next_token.clone(),
        }))
        .await
        .map_err(status_err("ListResourceServers page 2"))?
        .into_inner();
    let mut all: Vec<String> = first
        .resource_servers
        .iter()
        .chain(&rest.resource_servers)
        .map(|s| s.identifier.clone())
        .collect();
    all.sort();
    ensure!(
        all == [ORDERS.to_string(), "urn:inventory:0".into(), "urn:inventory:1".into()] && rest.next_token.is_empty(),
        "every server once over two pages: {all:?}, token {:?}",
        rest.next_token
    );

    // Client settings: Cognito's rules, attack first.
    let read = format!("{ORDERS}/read");
    let write = format!("{ORDERS}/write");
    let m2m = |secret: bool, flows: &[&str], scopes: &[&str]| CreateUserPoolClientRequest {
        user_pool_id: pool.clone(),
        client_name: "billing-service".into(),
        generate_secret: secret,
        allowed_oauth_flows_user_pool_client: true,
        allowed_oauth_flows: flows.iter().map(|s| s.to_string()).collect(),
        allowed_oauth_scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    for (what, req, exception) in [
        (
            "client_credentials without a secret",
            m2m(false, &["client_credentials"], &[&read]),
            "InvalidParameterException",
        ),
        (
            "a scope no resource server defines",
            m2m(true, &["client_credentials"], &[&format!("{ORDERS}/delete")]),
            "ScopeDoesNotExistException",
        ),
        (
            "a user scope on a client_credentials client",
            m2m(true, &["client_credentials"], &["openid"]),
            "InvalidParameterException",
        ),
        (
            "client_credentials with code",
            m2m(true, &["client_credentials", "code"], &[&read]),
            "InvalidParameterException",
        ),
        (
            "an unknown flow",
            m2m(true, &["password"], &[&read]),
            "InvalidParameterException",
        ),
    ] {
        expect_exception(
            what,
            n2.admin().create_user_pool_client(n2.req(req)).await,
            Code::InvalidArgument,
            exception,
        )?;
    }
    let service = n2
        .admin()
        .create_user_pool_client(n2.req(m2m(true, &["client_credentials"], &[&read, &write])))
        .await
        .map_err(status_err("CreateUserPoolClient m2m"))?
        .into_inner()
        .user_pool_client
        .ok_or_else(|| anyhow!("no client"))?;
    let (id, secret) = (service.client_id.clone(), service.client_secret.clone());
    ensure!(!secret.is_empty(), "the service client has no secret");
    let described = poll_until(
        "node 3 knows the service client",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let d = n3
                .admin()
                .describe_user_pool_client(n3.req(DescribeUserPoolClientRequest {
                    user_pool_id: pool.clone(),
                    client_id: id.clone(),
                    consistent_read: false,
                }))
                .await;
            Ok(d.ok().and_then(|d| d.into_inner().user_pool_client))
        },
    )
    .await?;
    ensure!(
        described.allowed_oauth_flows == ["client_credentials"]
            && described.allowed_oauth_flows_user_pool_client
            && described.allowed_oauth_scopes.len() == 2,
        "DescribeUserPoolClient on node 3 shows the OAuth settings: {described:?}"
    );

    // The grant, with HTTP Basic on node 3 and a form on node 1.
    let addr1 = fx.api_addrs[0].clone();
    let addr3 = fx.api_addrs[2].clone();
    let a = token_basic(&addr3, &pool, &id, &secret, Some(&read)).await?;
    ensure!(a.status == 200, "client_credentials on node 3: {} {}", a.status, a.body);
    ensure!(
        a.header("cache-control").as_deref() == Some("no-store"),
        "no Cache-Control: no-store"
    );
    let t = a.json()?;
    ensure!(
        t["token_type"] == "Bearer" && t["expires_in"] == 3600 && t["scope"] == read.as_str(),
        "the token answer: {t}"
    );
    let access = t["access_token"]
        .as_str()
        .ok_or_else(|| anyhow!("no access_token: {t}"))?;
    let (_, jwks) = fetch_jwks(&addr1, &pool).await?;
    let claims = verify_with_jwks(access, &jwks, &fx.issuer, None)?;
    ensure!(
        claims["sub"] == id.as_str()
            && claims["client_id"] == id.as_str()
            && claims["token_use"] == "access"
            && claims["scope"] == read.as_str()
            && claims.get("username").is_none()
            && claims.get("origin_jti").is_none(),
        "a service token's claims name the client, its scope and no user: {claims}"
    );
    println!("  ok: node 3 signed a client_credentials token that the JWKS verifies: {claims}");
    let form = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    let a = post(&addr1, &format!("/{pool}/oauth2/token"), &[FORM], &form).await?;
    ensure!(a.status == 200, "client_secret_post on node 1: {} {}", a.status, a.body);
    let t = a.json()?;
    ensure!(
        t["scope"] == format!("{read} {write}").as_str(),
        "without a scope parameter, every allowed scope: {t}"
    );

    // A service's token is not a user's.
    let as_user = fx
        .node(1)
        .auth()
        .get_user(GetUserRequest {
            access_token: t["access_token"].as_str().unwrap_or("").to_string(),
        })
        .await;
    expect_exception(
        "GetUser with a client_credentials token",
        as_user,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;

    // Attacks on the endpoint.
    let path = format!("/{pool}/oauth2/token");
    // The last character changed, never to itself: a secret that already
    // ends in 'x' must not make this "wrong" secret the right one.
    let (head, last) = secret.split_at(secret.len() - 1);
    let wrong_secret = format!("{head}{}", if last == "x" { 'y' } else { 'x' });
    let wrong = token_basic(&addr3, &pool, &id, &wrong_secret, None).await?;
    wrong.expect_error("a wrong secret", 401, "invalid_client")?;
    ensure!(
        wrong.header("www-authenticate").is_some_and(|h| h.starts_with("Basic")),
        "a 401 to HTTP Basic names the scheme: {}",
        wrong.headers
    );
    let unknown = token_basic(&addr3, &pool, "abcdefghijklmnopqrstuvwxyz", &secret, None).await?;
    unknown.expect_error("an unknown client", 401, "invalid_client")?;
    ensure!(
        unknown.json()?["error_description"] == wrong.json()?["error_description"],
        "an unknown client and a wrong secret must read the same"
    );
    token_basic(&addr3, &pool, &fx.client_id, "anything", None)
        .await?
        .expect_error("a public client", 401, "invalid_client")?;
    let confidential = fx.create_app_client_with(1, "web-with-secret", &[], true).await?;
    token_basic(
        &addr3,
        &pool,
        &confidential.client_id,
        &confidential.client_secret,
        None,
    )
    .await?
    .expect_error("a client not allowed the grant", 400, "unauthorized_client")?;
    token_basic(&addr3, &pool, &id, &secret, Some(&format!("{ORDERS}/delete")))
        .await?
        .expect_error("a scope the client was not given", 400, "invalid_scope")?;
    token_basic(&addr3, &pool, &id, &secret, Some("urn:inventory:0/read"))
        .await?
        .expect_error("another server's scope the client was not given", 400, "invalid_scope")?;
    let auth = basic(&id, &secret);
    post(
        &addr3,
        &path,
        &[FORM, ("Authorization", &auth)],
        &format!("grant_type=client_credentials&client_secret={secret}"),
    )
    .await?
    .expect_error("two client authentications", 400, "invalid_request")?;
    post(
        &addr3,
        &path,
        &[FORM, ("Authorization", &auth)],
        "grant_type=client_credentials&grant_type=client_credentials",
    )
    .await?
    .expect_error("a repeated parameter", 400, "invalid_request")?;
    post(
        &addr3,
        &path,
        &[("Content-Type", "application/json"), ("Authorization", &auth)],
        "{\"grant_type\":\"client_credentials\"}",
    )
    .await?
    .expect_error("a JSON body", 400, "invalid_request")?;
    let huge = format!("grant_type=client_credentials&pad={}", "a".repeat(64 * 1024));
    post(&addr3, &path, &[FORM, ("Authorization", &auth)], &huge)
        .await?
        .expect_error("a 64 KiB form", 400, "invalid_request")?;
    post(
        &addr3,
        &path,
        &[FORM, ("Authorization", &auth)],
        "grant_type=password&username=a&password=b",
    )
    .await?
    .expect_error("the password grant", 400, "unsupported_grant_type")?;
    post(&addr3, &path, &[FORM], "grant_type=client_credentials")
        .await?
        .expect_error("no client authentication", 401, "invalid_client")?;
    let other = Fixture::create(
        c,
        PoolSpec {
            name: "oauth-other",
            ..Default::default()
        },
    )
    .await?;
    token_basic(&addr3, &other.pool_id, &id, &secret, None)
        .await?
        .expect_error("a client on another pool's endpoint", 401, "invalid_client")?;

    // A scope is granted only while its resource server defines it.
    n1.admin()
        .update_resource_server(n1.req(UpdateResourceServerRequest {
            user_pool_id: pool.clone(),
            identifier: ORDERS.into(),
            name: "Orders API".into(),
            scopes: scopes(&["read"]),
        }))
        .await
        .map_err(status_err("UpdateResourceServer"))?;
    poll_until(
        "node 3 stops granting the dropped scope",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let a = token_basic(&addr3, &pool, &id, &secret, Some(&write)).await?;
            Ok((a.status == 400).then_some(a))
        },
    )
    .await?
    .expect_error("a scope its resource server dropped", 400, "invalid_scope")?;
    let a = token_basic(&addr3, &pool, &id, &secret, None).await?;
    ensure!(
        a.status == 200 && a.json()?["scope"] == read.as_str(),
        "the default grant leaves the dropped scope out: {} {}",
        a.status,
        a.body
    );
    n2.admin()
        .delete_resource_server(n2.req(DeleteResourceServerRequest {
            user_pool_id: pool.clone(),
            identifier: ORDERS.into(),
        }))
        .await
        .map_err(status_err("DeleteResourceServer"))?;
    poll_until(
        "node 3 grants nothing of a deleted server",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let a = token_basic(&addr3, &pool, &id, &secret, None).await?;
            Ok((a.status == 400).then_some(a))
        },
    )
    .await?
    .expect_error("every scope's server deleted", 400, "invalid_scope")?;

    // Discovery lists the endpoint.
    let (status, doc) = common::auth::http_request(
        &addr3,
        "GET",
        &format!("/{pool}/.well-known/openid-configuration"),
        None,
    )
    .await?;
    ensure!(status == 200, "discovery: {status} {doc}");
    let doc: Value = serde_json::from_str(&doc)?;
    ensure!(
        doc["token_endpoint"] == format!("{}/oauth2/token", fx.issuer).as_str()
            && doc["grant_types_supported"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g == "client_credentials")),
        "discovery names the token endpoint and the grant: {doc}"
    );

    // A deleted client gets nothing, from any node.
    n1.admin()
        .create_resource_server(n1.req(CreateResourceServerRequest {
            user_pool_id: pool.clone(),
            identifier: ORDERS.into(),
            name: "Orders API".into(),
            scopes: scopes(&["read"]),
        }))
        .await
        .map_err(status_err("CreateResourceServer again"))?;
    poll_until(
        "the recreated scope is granted on node 3",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async { Ok((token_basic(&addr3, &pool, &id, &secret, None).await?.status == 200).then_some(())) },
    )
    .await?;
    n1.admin()
        .delete_user_pool_client(n1.req(DeleteUserPoolClientRequest {
            user_pool_id: pool.clone(),
            client_id: id.clone(),
        }))
        .await
        .map_err(status_err("DeleteUserPoolClient"))?;
    for addr in &fx.api_addrs {
        poll_until(
            &format!("{addr} refuses the deleted client"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async {
                let a = token_basic(addr, &pool, &id, &secret, None).await?;
                Ok((a.status == 401).then_some(a))
            },
        )
        .await?
        .expect_error(&format!("a deleted client on {addr}"), 401, "invalid_client")?;
    }
    Ok(())
}

const CALLBACK: &str = "https://app.example.com/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_with_pkce_through_the_hosted_page() {
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = code_flow(&c).await;
    c.finish(r);
}

async fn code_flow(c: &TestCluster) -> Result<()> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "hosted",
            ..Default::default()
        },
    )
    .await?;
    let pool = fx.pool_id.clone();
    fx.confirmed_user(1, "ann", "Correct-Horse-9", "ann@example.com")
        .await?;
    let n2 = fx.node(2);
    let app = n2
        .admin()
        .create_user_pool_client(n2.req(CreateUserPoolClientRequest {
            user_pool_id: pool.clone(),
            client_name: "spa".into(),
            allowed_oauth_flows_user_pool_client: true,
            allowed_oauth_flows: vec!["code".into()],
            allowed_oauth_scopes: vec!["openid".into(), "email".into(), "aws.cognito.signin.user.admin".into()],
            callback_urls: vec![CALLBACK.into()],
            logout_urls: vec!["https://app.example.com/bye".into()],
            ..Default::default()
        }))
        .await
        .map_err(status_err("CreateUserPoolClient spa"))?
        .into_inner()
        .user_pool_client
        .ok_or_else(|| anyhow!("no client"))?;
    let client_id = app.client_id.clone();
    let (a1, a2, a3) = (
        fx.api_addrs[0].clone(),
        fx.api_addrs[1].clone(),
        fx.api_addrs[2].clone(),
    );
    let authorize = |redirect: &str, pkce: bool| {
        let mut q = format!(
            "/{pool}/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope=openid+email&state=st-42&nonce=n-42",
            enc(redirect)
        );
        if pkce {
            q.push_str(&format!("&code_challenge={CHALLENGE}&code_challenge_method=S256"));
        }
        q
    };
    poll_until(
        "node 1 knows the client",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let a = request(&a1, "GET", &authorize(CALLBACK, true), &[], "").await?;
            Ok((a.status == 200).then_some(()))
        },
    )
    .await?;

    // Attacks on the authorization request: never a redirect to a URI
    // that is not registered exactly.
    for bad in [
        "https://app.example.com/cb/extra",
        "https://app.example.com/c",
        "http://app.example.com/cb",
        "https://app.example.com/cb?x=1",
        "https://evil.example/cb",
    ] {
        let a = request(&a1, "GET", &authorize(bad, true), &[], "").await?;
        ensure!(
            a.status == 400 && a.header("location").is_none(),
            "redirect_uri {bad}: expected our own 400 page and no redirect, got {} {:?}",
            a.status,
            a.header("location")
        );
        println!("  ok: redirect_uri {bad} refused on the page, no redirect");
    }
    let a = request(&a1, "GET", &authorize(CALLBACK, false), &[], "").await?;
    let loc = a.header("location").unwrap_or_default();
    ensure!(
        a.status == 303
            && loc.starts_with(CALLBACK)
            && query_param(&loc, "error").as_deref() == Some("invalid_request")
            && query_param(&loc, "state").as_deref() == Some("st-42"),
        "a public client without PKCE goes back with invalid_request and its state: {} {loc}",
        a.status
    );
    println!("  ok: no code_challenge for a public client -> {loc}");

    // The page: framing forbidden, a CSRF cookie, a sealed request.
    let page = request(&a1, "GET", &authorize(CALLBACK, true), &[], "").await?;
    ensure!(page.status == 200, "the sign-in page: {} {}", page.status, page.body);
    ensure!(
        page.header("x-frame-options").as_deref() == Some("DENY")
            && page
                .header("content-security-policy")
                .is_some_and(|c| c.contains("frame-ancestors 'none'")),
        "the page must forbid framing: {}",
        page.headers
    );
    let set_cookie = page.header("set-cookie").ok_or_else(|| anyhow!("no CSRF cookie"))?;
    ensure!(
        set_cookie.contains("Secure") && set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "the cookie must be Secure, HttpOnly and SameSite=Lax: {set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_string();
    let sealed = hidden(&page.body, "request")?;
    let csrf = hidden(&page.body, "csrf")?;
    let login = format!("/{pool}/login");
    let form = |user: &str, pw: &str, csrf: &str, sealed: &str| {
        format!(
            "request={}&csrf={}&username={}&password={}",
            enc(sealed),
            enc(csrf),
            enc(user),
            enc(pw)
        )
    };
    // A cross-site post has no cookie (SameSite), or a forged token.
    let a = post(&a2, &login, &[FORM], &form("ann", "Correct-Horse-9", &csrf, &sealed)).await?;
    ensure!(
        a.status == 403 && a.header("location").is_none(),
        "a post without the CSRF cookie: {} {}",
        a.status,
        a.body
    );
    let a = post(
        &a2,
        &login,
        &[FORM, ("Cookie", &cookie)],
        &form("ann", "Correct-Horse-9", &"0".repeat(64), &sealed),
    )
    .await?;
    ensure!(
        a.status == 403,
        "a post with a forged CSRF token: {} {}",
        a.status,
        a.body
    );
    println!("  ok: cross-site posts without the CSRF cookie or token are refused (403)");
    // A tampered request.
    let mut tampered = sealed.clone();
    tampered.replace_range(10..11, if &sealed[10..11] == "A" { "B" } else { "A" });
    let a = post(
        &a2,
        &login,
        &[FORM, ("Cookie", &cookie)],
        &form("ann", "Correct-Horse-9", &csrf, &tampered),
    )
    .await?;
    ensure!(
        a.status == 400 && a.header("location").is_none(),
        "a tampered request: {} {}",
        a.status,
        a.body
    );
    // A wrong password shows the page again, with the error.
    let a = post(
        &a2,
        &login,
        &[FORM, ("Cookie", &cookie)],
        &form("ann", "wrong-password-1", &csrf, &sealed),
    )
    .await?;
    ensure!(
        a.status == 200 && a.body.contains("Incorrect username or password") && a.header("location").is_none(),
        "a wrong password: {} {:.300}",
        a.status,
        a.body
    );
    println!("  ok: a wrong password shows the form again with the error");
    // Signed in on node 2: back to the app with a code and the state.
    let a = post(
        &a2,
        &login,
        &[FORM, ("Cookie", &cookie)],
        &form("ann", "Correct-Horse-9", &csrf, &sealed),
    )
    .await?;
    let loc = a.header("location").unwrap_or_default();
    ensure!(
        a.status == 303 && loc.starts_with(&format!("{CALLBACK}?")),
        "sign-in: {} {loc} {:.300}",
        a.status,
        a.body
    );
    ensure!(
        query_param(&loc, "state").as_deref() == Some("st-42"),
        "the state comes back: {loc}"
    );
    let code = query_param(&loc, "code").ok_or_else(|| anyhow!("no code in {loc}"))?;
    let session = a
        .header("set-cookie")
        .filter(|c| c.starts_with("tessera_session=") && c.contains("Secure") && c.contains("HttpOnly"))
        .ok_or_else(|| anyhow!("no Secure, HttpOnly session cookie after the sign-in: {}", a.headers))?;
    let session = session.split(';').next().unwrap_or_default().to_string();
    println!("  ok: node 2 signed ann in and sent the browser back with a code");

    // The exchange on node 3: PKCE and the redirect URI are checked.
    let path = format!("/{pool}/oauth2/token");
    let exchange = |verifier: Option<&str>, redirect: &str| {
        let mut f = format!(
            "grant_type=authorization_code&client_id={client_id}&code={}&redirect_uri={}",
            enc(&code),
            enc(redirect)
        );
        if let Some(v) = verifier {
            f.push_str(&format!("&code_verifier={v}"));
        }
        f
    };
    post(&a3, &path, &[FORM], &exchange(None, CALLBACK))
        .await?
        .expect_error("no code_verifier", 400, "invalid_grant")?;
    post(
        &a3,
        &path,
        &[FORM],
        &exchange(Some(&VERIFIER.replace('d', "e")), CALLBACK),
    )
    .await?
    .expect_error("a wrong code_verifier", 400, "invalid_grant")?;
    post(
        &a3,
        &path,
        &[FORM],
        &exchange(Some(VERIFIER), "https://app.example.com/other"),
    )
    .await?
    .expect_error("another redirect_uri", 400, "invalid_grant")?;
    let a = post(&a3, &path, &[FORM], &exchange(Some(VERIFIER), CALLBACK)).await?;
    ensure!(a.status == 200, "the exchange: {} {}", a.status, a.body);
    let t = a.json()?;
    let (id_token, access, refresh) = (
        t["id_token"].as_str().unwrap_or_default().to_string(),
        t["access_token"].as_str().unwrap_or_default().to_string(),
        t["refresh_token"].as_str().unwrap_or_default().to_string(),
    );
    let (_, jwks) = fetch_jwks(&a1, &pool).await?;
    let claims = verify_with_jwks(&id_token, &jwks, &fx.issuer, Some(&client_id))?;
    ensure!(
        claims["nonce"] == "n-42" && claims["cognito:username"] == "ann" && claims["email"] == "ann@example.com",
        "the id token carries the nonce and the user: {claims}"
    );
    let ac = verify_with_jwks(&access, &jwks, &fx.issuer, None)?;
    ensure!(
        ac["scope"] == "openid email",
        "the access token's scope is what was granted: {ac}"
    );
    println!(
        "  ok: node 3 exchanged the code (PKCE checked): id token with nonce, scope {}",
        ac["scope"]
    );

    // userInfo.
    let bearer = format!("Bearer {access}");
    let a = request(
        &a1,
        "GET",
        &format!("/{pool}/oauth2/userInfo"),
        &[("Authorization", &bearer)],
        "",
    )
    .await?;
    ensure!(a.status == 200, "userInfo: {} {}", a.status, a.body);
    let info = a.json()?;
    ensure!(
        info["username"] == "ann" && info["email"] == "ann@example.com",
        "userInfo: {info}"
    );
    let a = request(&a1, "GET", &format!("/{pool}/oauth2/userInfo"), &[], "").await?;
    ensure!(
        a.status == 401 && a.header("www-authenticate").is_some_and(|h| h.starts_with("Bearer")),
        "userInfo without a token: {} {}",
        a.status,
        a.headers
    );
    println!("  ok: userInfo answers for the token, and 401 without one");

    // The refresh grant keeps the granted scopes.
    let a = post(
        &a2,
        &path,
        &[FORM],
        &format!(
            "grant_type=refresh_token&client_id={client_id}&refresh_token={}",
            enc(&refresh)
        ),
    )
    .await?;
    ensure!(a.status == 200, "refresh_token grant: {} {}", a.status, a.body);
    let r = a.json()?;
    let rc = verify_with_jwks(r["access_token"].as_str().unwrap_or(""), &jwks, &fx.issuer, None)?;
    ensure!(
        rc["scope"] == "openid email" && r["id_token"].is_string() && r.get("refresh_token").is_none(),
        "a refresh keeps the OAuth scopes and returns no new refresh token: {r} / {rc}"
    );
    println!("  ok: refresh_token grant on node 2 keeps scope {}", rc["scope"]);
    // Sign-out: only to a registered URL.
    let a = request(
        &a1,
        "GET",
        &format!(
            "/{pool}/logout?client_id={client_id}&logout_uri={}",
            enc("https://evil.example/bye")
        ),
        &[],
        "",
    )
    .await?;
    ensure!(
        a.status == 400 && a.header("location").is_none(),
        "logout to an unregistered URL: {} {:?}",
        a.status,
        a.header("location")
    );
    let a = request(
        &a1,
        "GET",
        &format!(
            "/{pool}/logout?client_id={client_id}&logout_uri={}",
            enc("https://app.example.com/bye")
        ),
        &[],
        "",
    )
    .await?;
    ensure!(
        a.status == 303 && a.header("location").as_deref() == Some("https://app.example.com/bye"),
        "logout to the registered URL: {} {:?}",
        a.status,
        a.header("location")
    );
    println!("  ok: logout redirects only to a registered sign-out URL");

    // The refresh token works, until the code is replayed.
    let refresh_once = || async {
        fx.node(1)
            .auth()
            .initiate_auth(InitiateAuthRequest {
                auth_flow: "REFRESH_TOKEN_AUTH".into(),
                client_id: client_id.clone(),
                auth_parameters: [("REFRESH_TOKEN".to_string(), refresh.clone())].into(),
                ..Default::default()
            })
            .await
    };
    refresh_once().await.map_err(status_err("refresh before the replay"))?;
    post(&a1, &path, &[FORM], &exchange(Some(VERIFIER), CALLBACK))
        .await?
        .expect_error("the code replayed on node 1", 400, "invalid_grant")?;
    poll_until(
        "the replay revokes the first exchange's tokens",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async { Ok(refresh_once().await.err()) },
    )
    .await
    .and_then(|s| {
        ensure!(s.code() == Code::Unauthenticated, "refresh after the replay: {s:?}");
        println!("  ok: after the replay, the refresh token is refused: {}", s.message());
        Ok(())
    })?;
    // Revocation: a client must be known; a dead token is still a 200.
    post(
        &a3,
        &format!("/{pool}/oauth2/revoke"),
        &[FORM],
        &format!("client_id=abcdefghijklmnopqrstuvwxyz&token={}", enc(&refresh)),
    )
    .await?
    .expect_error("revoke for an unknown client", 401, "invalid_client")?;
    let a = post(
        &a3,
        &format!("/{pool}/oauth2/revoke"),
        &[FORM],
        &format!("client_id={client_id}&token={}", enc(&refresh)),
    )
    .await?;
    ensure!(a.status == 200, "revoking a revoked token: {} {}", a.status, a.body);

    // The page's session: another authorization on another node needs no
    // password, until the app asks for one, the cookie is forged, or the
    // user signs out everywhere.
    let a = request(&a3, "GET", &authorize(CALLBACK, true), &[("Cookie", &session)], "").await?;
    let loc = a.header("location").unwrap_or_default();
    ensure!(
        a.status == 303
            && query_param(&loc, "code").is_some()
            && query_param(&loc, "state").as_deref() == Some("st-42"),
        "a signed-in browser on node 3 goes straight back with a code: {} {loc} {:.200}",
        a.status,
        a.body
    );
    println!("  ok: the page's session signs the browser in on node 3 without a password");
    // Its code, exchanged twice at once on two nodes: exactly one wins.
    let raced = query_param(&loc, "code").unwrap_or_default();
    let race_form = format!(
        "grant_type=authorization_code&client_id={client_id}&code={}&redirect_uri={}&code_verifier={VERIFIER}",
        enc(&raced),
        enc(CALLBACK)
    );
    let (r1, r3) = tokio::join!(
        post(&a1, &path, &[FORM], &race_form),
        post(&a3, &path, &[FORM], &race_form)
    );
    let (r1, r3) = (r1?, r3?);
    let mut statuses = [r1.status, r3.status];
    statuses.sort();
    ensure!(
        statuses == [200, 400],
        "one code raced on two nodes: exactly one exchange wins, got {} {} / {} {}",
        r1.status,
        r1.body,
        r3.status,
        r3.body
    );
    let loser = if r1.status == 400 { &r1 } else { &r3 };
    loser.expect_error("the losing side of a raced exchange", 400, "invalid_grant")?;
    let a = request(
        &a3,
        "GET",
        &format!("{}&prompt=login", authorize(CALLBACK, true)),
        &[("Cookie", &session)],
        "",
    )
    .await?;
    ensure!(
        a.status == 200 && a.body.contains("id=\"password\""),
        "prompt=login shows the form: {}",
        a.status
    );
    let mut forged = session.clone();
    let mid = session.len() / 2 + 8;
    forged.replace_range(mid..mid + 1, if &session[mid..mid + 1] == "A" { "B" } else { "A" });
    let a = request(&a3, "GET", &authorize(CALLBACK, true), &[("Cookie", &forged)], "").await?;
    ensure!(
        a.status == 200 && a.body.contains("id=\"password\""),
        "a forged session shows the form: {}",
        a.status
    );
    let a = request(
        &a1,
        "GET",
        &format!(
            "/{pool}/logout?client_id={client_id}&logout_uri={}",
            enc("https://app.example.com/bye")
        ),
        &[("Cookie", &session)],
        "",
    )
    .await?;
    ensure!(
        a.headers.contains("tessera_session=; ") && a.headers.contains("Max-Age=0"),
        "logout clears the session cookie: {}",
        a.headers
    );
    let n1 = fx.node(1);
    n1.admin()
        .admin_user_global_sign_out(n1.req(AdminUserGlobalSignOutRequest {
            user_pool_id: pool.clone(),
            username: "ann".into(),
        }))
        .await
        .map_err(status_err("AdminUserGlobalSignOut"))?;
    poll_until(
        "node 3 forgets the signed-out session",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let a = request(&a3, "GET", &authorize(CALLBACK, true), &[("Cookie", &session)], "").await?;
            Ok((a.status == 200 && a.body.contains("id=\"password\"")).then_some(()))
        },
    )
    .await?;
    println!(
        "  ok: prompt=login, a forged cookie and a global sign-out each bring the form back; logout clears the cookie"
    );
    Ok(())
}

/// The implicit grant (`response_type=token`), as Cognito keeps it for
/// old single-page apps: only for a client allowed it, tokens in the
/// fragment (never a refresh token), the id token with the nonce, signed
/// in on node 2 after the page came from node 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn implicit_grant_puts_tokens_in_the_fragment() {
    let c = TestCluster::start(2).await.expect("a 2-node cluster forms");
    let r = implicit(&c).await;
    c.finish(r);
}

async fn implicit(c: &TestCluster) -> Result<()> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "implicit",
            ..Default::default()
        },
    )
    .await?;
    let pool = fx.pool_id.clone();
    fx.confirmed_user(1, "ann", "Correct-Horse-9", "ann@example.com")
        .await?;
    let n1 = fx.node(1);
    let mut ids = Vec::new();
    for flow in ["implicit", "code"] {
        let app = n1
            .admin()
            .create_user_pool_client(n1.req(CreateUserPoolClientRequest {
                user_pool_id: pool.clone(),
                client_name: format!("{flow}-app"),
                allowed_oauth_flows_user_pool_client: true,
                allowed_oauth_flows: vec![flow.into()],
                allowed_oauth_scopes: vec!["openid".into(), "email".into()],
                callback_urls: vec![CALLBACK.into()],
                ..Default::default()
            }))
            .await
            .map_err(status_err("CreateUserPoolClient"))?
            .into_inner()
            .user_pool_client
            .ok_or_else(|| anyhow!("no client"))?;
        ids.push(app.client_id);
    }
    let (implicit_app, code_app) = (ids[0].clone(), ids[1].clone());
    let (a1, a2) = (fx.api_addrs[0].clone(), fx.api_addrs[1].clone());
    let authorize = |client: &str, response_type: &str| {
        format!(
            "/{pool}/oauth2/authorize?response_type={response_type}&client_id={client}&redirect_uri={}\
             &scope=openid+email&state=st-9&nonce=n-9",
            enc(CALLBACK)
        )
    };
    // Each client gets only the grant it is allowed.
    for (client, rt, what) in [
        (&code_app, "token", "a code-only client asking for tokens"),
        (&implicit_app, "code", "an implicit-only client asking for a code"),
    ] {
        let a = request(&a1, "GET", &authorize(client, rt), &[], "").await?;
        let loc = a.header("location").unwrap_or_default();
        ensure!(
            a.status == 303 && query_param(&loc, "error").as_deref() == Some("unauthorized_client"),
            "{what}: expected unauthorized_client, got {} {loc}",
            a.status
        );
        println!("  ok: {what} -> unauthorized_client");
    }
    let a = request(&a1, "GET", &authorize(&implicit_app, "id_token"), &[], "").await?;
    ensure!(
        query_param(&a.header("location").unwrap_or_default(), "error").as_deref() == Some("unsupported_response_type"),
        "response_type=id_token: {:?}",
        a.header("location")
    );

    // The page from node 1, the sign-in on node 2.
    let page = request(&a1, "GET", &authorize(&implicit_app, "token"), &[], "").await?;
    ensure!(page.status == 200, "the page: {} {:.300}", page.status, page.body);
    let cookie = page
        .header("set-cookie")
        .and_then(|c| c.split(';').next().map(str::to_string))
        .ok_or_else(|| anyhow!("no CSRF cookie"))?;
    let form = format!(
        "request={}&csrf={}&username=ann&password=Correct-Horse-9",
        enc(&hidden(&page.body, "request")?),
        enc(&hidden(&page.body, "csrf")?)
    );
    let done = post(&a2, &format!("/{pool}/login"), &[FORM, ("Cookie", &cookie)], &form).await?;
    let loc = done.header("location").unwrap_or_default();
    let (base, fragment) = loc
        .split_once('#')
        .ok_or_else(|| anyhow!("tokens must come in the fragment: {} {loc:.200}", done.status))?;
    ensure!(
        done.status == 303 && base == CALLBACK,
        "back to the callback: {} {base}",
        done.status
    );
    let field = |name: &str| query_param(&format!("?{fragment}"), name);
    ensure!(
        field("refresh_token").is_none() && field("code").is_none(),
        "the implicit grant never hands out a refresh token or a code: {fragment:.200}"
    );
    ensure!(
        field("token_type").as_deref() == Some("Bearer") && field("state").as_deref() == Some("st-9"),
        "token_type and state in the fragment"
    );
    let (_, jwks) = fetch_jwks(&a1, &pool).await?;
    let id = verify_with_jwks(
        &field("id_token").ok_or_else(|| anyhow!("no id_token"))?,
        &jwks,
        &fx.issuer,
        Some(&implicit_app),
    )?;
    ensure!(
        id["nonce"] == "n-9" && id["cognito:username"] == "ann",
        "the id token carries the nonce and the user: {id}"
    );
    let access = verify_with_jwks(
        &field("access_token").ok_or_else(|| anyhow!("no access_token"))?,
        &jwks,
        &fx.issuer,
        None,
    )?;
    ensure!(
        access["scope"] == "openid email" && access["client_id"] == implicit_app.as_str(),
        "the access token's scope and client: {access}"
    );
    println!("  ok: tokens in the fragment, verified with the JWKS, nonce and scope kept");
    Ok(())
}
