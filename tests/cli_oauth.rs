//! `tessera resource-server`, the OAuth flags of `tessera app-client` and
//! `tessera branding` end to end: the real binary with `--output json`
//! against a real node, and the node's own endpoints checked after each.
//!
//! A resource server with two scopes, a service client allowed one of
//! them that then gets a token from `/oauth2/token` with HTTP Basic (the
//! README's curl example, made by hand here), an app client for the code
//! flow, and a branding loaded from files that the hosted page then
//! wears. Refusals exit non-zero with the server's reason: CSS that loads
//! a resource, an update with nothing, a deleted branding.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::process::Output;

use anyhow::{ensure, Result};
use base64::Engine as _;
use common::http::{enc, post, request, FORM};
use common::{run_cli, TestCluster};
use serde_json::Value;

const ORDERS: &str = "https://orders.example.com";
const CALLBACK: &str = "https://app.example.com/cb";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0a, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

async fn cli(c: &TestCluster, args: &[&str]) -> Result<Output> {
    let mut all = c.admin_args(1);
    all.extend(args.iter().map(|s| s.to_string()));
    run_cli(&c.bin, all).await
}

/// Requires a non-zero exit whose stderr contains `want`.
fn refused(out: &Output, what: &str, want: &str) -> Result<()> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success(),
        "{what} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    ensure!(stderr.contains(want), "{what}: stderr lacks {want:?}: {stderr}");
    println!("  ok: {what} refused: {}", stderr.trim());
    Ok(())
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_and_branding_commands_through_the_binary() {
    let c = TestCluster::start(1).await.expect("a 1-node cluster forms");
    let r = body(&c).await;
    c.finish(r);
}

async fn body(c: &TestCluster) -> Result<()> {
    let addr = c.node(1).api_addr.clone();
    let pool = c.cli_admin_json(1, &["pool", "create", "--name", "cli-oauth"]).await?;
    let pool = str_at(&pool, "/id").to_string();
    let p = pool.as_str();

    // A resource server with two scopes.
    let rs = c
        .cli_admin_json(
            1,
            &[
                "resource-server",
                "create",
                "--pool-id",
                p,
                "--identifier",
                ORDERS,
                "--name",
                "Orders",
                "--scope",
                "read=Read orders",
                "--scope",
                "write=Change orders",
            ],
        )
        .await?;
    ensure!(
        str_at(&rs, "/identifier") == ORDERS && rs["scopes"].as_array().is_some_and(|s| s.len() == 2),
        "resource-server create: {rs}"
    );
    let listed = c
        .cli_admin_json(1, &["resource-server", "list", "--pool-id", p])
        .await?;
    ensure!(
        listed["resource_servers"].as_array().is_some_and(|l| l.len() == 1),
        "resource-server list: {listed}"
    );

    // A service client allowed one scope, and its token.
    let read = format!("{ORDERS}/read");
    let svc = c
        .cli_admin_json(
            1,
            &[
                "app-client",
                "create",
                "--pool-id",
                p,
                "--name",
                "svc",
                "--generate-secret",
                "--oauth-flows",
                "client_credentials",
                "--oauth-scopes",
                &read,
            ],
        )
        .await?;
    let (svc_id, secret) = (str_at(&svc, "/client_id"), str_at(&svc, "/client_secret"));
    ensure!(!svc_id.is_empty() && !secret.is_empty(), "app-client create: {svc}");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{svc_id}:{secret}"))
    );
    let token = post(
        &addr,
        &format!("/{p}/oauth2/token"),
        &[FORM, ("Authorization", &basic)],
        &format!("grant_type=client_credentials&scope={}", enc(&read)),
    )
    .await?;
    let t = token.json()?;
    ensure!(
        token.status == 200 && t["token_type"] == "Bearer" && t["access_token"].as_str().is_some(),
        "the service client's token: {} {}",
        token.status,
        token.body
    );
    println!("  ok: a client made by the CLI gets a service token");
    let write = format!("{ORDERS}/write");
    let denied = post(
        &addr,
        &format!("/{p}/oauth2/token"),
        &[FORM, ("Authorization", &basic)],
        &format!("grant_type=client_credentials&scope={}", enc(&write)),
    )
    .await?;
    denied.expect_error("a scope the CLI did not allow", 400, "invalid_scope")?;

    // An app client for the code flow, and its branding from files.
    let spa = c
        .cli_admin_json(
            1,
            &[
                "app-client",
                "create",
                "--pool-id",
                p,
                "--name",
                "spa",
                "--oauth-flows",
                "code",
                "--oauth-scopes",
                "openid",
                "--callback-urls",
                CALLBACK,
            ],
        )
        .await?;
    let spa_id = str_at(&spa, "/client_id").to_string();
    let dir = tempfile::tempdir()?;
    let settings = dir.path().join("settings.json");
    std::fs::write(
        &settings,
        serde_json::json!({"colors": {"primary": "#336699"}, "languages": {"de": {"signin.title": "Anmelden"}}})
            .to_string(),
    )?;
    let logo = dir.path().join("logo.png");
    std::fs::write(&logo, PNG)?;
    let (settings_s, logo_s) = (settings.to_string_lossy(), logo.to_string_lossy());
    let created = c
        .cli_admin_json(
            1,
            &[
                "branding",
                "create",
                "--pool-id",
                p,
                "--client-id",
                &spa_id,
                "--settings",
                &settings_s,
                "--logo",
                &logo_s,
            ],
        )
        .await?;
    let branding_id = str_at(&created, "/managed_login_branding_id").to_string();
    ensure!(
        !branding_id.is_empty() && created["assets"].as_array().is_some_and(|a| a.len() == 1),
        "branding create: {created}"
    );
    let merged = c
        .cli_admin_json(
            1,
            &["branding", "get", "--pool-id", p, "--client-id", &spa_id, "--merged"],
        )
        .await?;
    let doc: Value = serde_json::from_str(str_at(&merged, "/settings_document"))?;
    ensure!(
        doc["colors"]["primary"] == "#336699" && doc["colors"]["text"] == "#1b1f24",
        "branding get --merged: {doc}"
    );
    let page = request(
        &addr,
        "GET",
        &format!(
            "/{p}/oauth2/authorize?response_type=code&client_id={spa_id}&redirect_uri={}&scope=openid\
             &code_challenge={CHALLENGE}&code_challenge_method=S256&lang=de",
            enc(CALLBACK)
        ),
        &[],
        "",
    )
    .await?;
    ensure!(
        page.body.contains("<title>Anmelden</title>")
            && page.body.contains("#336699")
            && page.body.contains("data:image/png;base64,"),
        "the page wears the branding the CLI loaded: {:.800}",
        page.body
    );
    println!("  ok: the page wears the branding loaded from files");

    // Classic CSS: a hostile file refused with the server's reason, a good one kept.
    let css = dir.path().join("style.css");
    std::fs::write(&css, ".logo-customizable { background: url(https://evil.example/x) }")?;
    let css_s = css.to_string_lossy().to_string();
    let out = cli(
        c,
        &[
            "branding",
            "set-css",
            "--pool-id",
            p,
            "--client-id",
            &spa_id,
            "--css",
            &css_s,
        ],
    )
    .await?;
    refused(&out, "CSS that loads a resource", "url(")?;
    std::fs::write(&css, ".submitButton-customizable { background-color: #ff0000 }")?;
    let ui = c
        .cli_admin_json(
            1,
            &[
                "branding",
                "set-css",
                "--pool-id",
                p,
                "--client-id",
                &spa_id,
                "--css",
                &css_s,
            ],
        )
        .await?;
    ensure!(
        str_at(&ui, "/css") == ".submitButton-customizable{background-color:#ff0000;}",
        "set-css: {ui}"
    );
    let out = cli(
        c,
        &["branding", "update", "--pool-id", p, "--branding-id", &branding_id],
    )
    .await?;
    refused(&out, "an update with nothing", "nothing to update")?;
    let missing = dir.path().join("missing.json");
    let out = cli(
        c,
        &[
            "branding",
            "update",
            "--pool-id",
            p,
            "--branding-id",
            &branding_id,
            "--settings",
            &missing.to_string_lossy(),
        ],
    )
    .await?;
    refused(&out, "an unreadable settings file", "--settings")?;

    // Deletes.
    let deleted = c
        .cli_admin_json(
            1,
            &["branding", "delete", "--pool-id", p, "--branding-id", &branding_id],
        )
        .await?;
    ensure!(
        str_at(&deleted, "/deleted") == branding_id,
        "branding delete: {deleted}"
    );
    let out = cli(c, &["branding", "get", "--pool-id", p, "--branding-id", &branding_id]).await?;
    refused(&out, "the deleted branding", "does not exist")?;
    let gone = c
        .cli_admin_json(
            1,
            &["resource-server", "delete", "--pool-id", p, "--identifier", ORDERS],
        )
        .await?;
    ensure!(str_at(&gone, "/deleted") == ORDERS, "resource-server delete: {gone}");
    let after = post(
        &addr,
        &format!("/{p}/oauth2/token"),
        &[FORM, ("Authorization", &basic)],
        &format!("grant_type=client_credentials&scope={}", enc(&read)),
    )
    .await?;
    ensure!(
        after.status == 400,
        "no token for a deleted resource server's scope: {} {}",
        after.status,
        after.body
    );
    println!("  ok: deletes through the CLI take effect");
    Ok(())
}
