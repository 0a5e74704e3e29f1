//! `tessera identity-provider` end to end: the real binary with
//! `--output json` against a real node. A user pool with an OpenID Connect
//! provider, read back; an update that replaces the attribute mapping and
//! keeps the details; the provider listed; a provider with a client_secret
//! accepted, sealed, and never shown back by `get`; one with the secret
//! in the wrong place (a private_key for Google) refused with
//! InvalidParameterException and a non-zero exit, and not stored; a confirmed user linked to an external subject (a second link of
//! the same subject is refused, which shows the first is kept), unlinked,
//! and unlinking again refused with a clear error; the provider deleted.
//! Also: flag errors name the flag, and an update with nothing is refused
//! before a round trip.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::process::Output;

use anyhow::{ensure, Result};
use common::{run_cli, TestCluster};
use serde_json::Value;

const ISSUER: &str = "https://login.example.com/realm";
const PASSWORD: &str = "Federated-Pass-1!";

/// Runs an admin command through node 1 and returns its output, whatever
/// the exit status, for the checks of refusals.
async fn cli_admin(c: &TestCluster, args: &[&str]) -> Result<Output> {
    let mut all = c.admin_args(1);
    all.extend(args.iter().map(|s| s.to_string()));
    run_cli(&c.bin, all).await
}

/// Requires a non-zero exit whose stderr contains every one of `want`.
fn refused(out: &Output, what: &str, want: &[&str]) -> Result<String> {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    ensure!(
        !out.status.success(),
        "{what} succeeded; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for w in want {
        ensure!(stderr.contains(w), "{what}: stderr lacks {w:?}: {stderr}");
    }
    Ok(stderr)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// `{"k": "v", ...}` as sorted pairs, for comparing maps.
fn pairs(v: &Value, pointer: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v
        .pointer(pointer)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn owned(ps: &[(&str, &str)]) -> Vec<(String, String)> {
    ps.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_provider_commands_through_the_binary() {
    let c = TestCluster::start(1).await.expect("a 1-node cluster forms");
    let r = body(&c).await;
    c.finish(r);
}

async fn body(c: &TestCluster) -> Result<()> {
    let pool = c.cli_admin_json(1, &["pool", "create", "--name", "federated"]).await?;
    let pool_id = str_at(&pool, "/id").to_string();
    ensure!(!pool_id.is_empty(), "pool create printed no id: {pool}");
    let p = pool_id.as_str();

    // An OpenID Connect provider with two accepted client ids.
    let issuer_detail = format!("oidc_issuer={ISSUER}");
    let created = c
        .cli_admin_json(
            1,
            &[
                "identity-provider",
                "create",
                "--pool-id",
                p,
                "--name",
                "Corp",
                "--type",
                "OIDC",
                "--detail",
                "client_id=web-app mobile-app",
                "--detail",
                &issuer_detail,
                "--attribute-mapping",
                "email=email",
                "--attribute-mapping",
                "email_verified=email_verified",
                "--idp-identifier",
                "corp.example.com",
            ],
        )
        .await?;
    ensure!(str_at(&created, "/provider_name") == "Corp", "{created}");
    ensure!(str_at(&created, "/user_pool_id") == p, "{created}");
    ensure!(str_at(&created, "/provider_type") == "OIDC", "{created}");
    let details = owned(&[("client_id", "web-app mobile-app"), ("oidc_issuer", ISSUER)]);
    ensure!(pairs(&created, "/provider_details") == details, "details: {created}");
    ensure!(
        pairs(&created, "/attribute_mapping") == owned(&[("email", "email"), ("email_verified", "email_verified")]),
        "attribute mapping: {created}"
    );
    ensure!(
        created["idp_identifiers"] == serde_json::json!(["corp.example.com"]),
        "identifiers: {created}"
    );

    // Get shows the same provider.
    let got = c
        .cli_admin_json(1, &["identity-provider", "get", "--pool-id", p, "--name", "Corp"])
        .await?;
    ensure!(got == created, "get {got} vs create {created}");

    // Update replaces the whole attribute mapping and keeps the rest.
    let updated = c
        .cli_admin_json(
            1,
            &[
                "identity-provider",
                "update",
                "--pool-id",
                p,
                "--name",
                "Corp",
                "--attribute-mapping",
                "email=mail",
                "--attribute-mapping",
                "name=display_name",
            ],
        )
        .await?;
    ensure!(
        pairs(&updated, "/attribute_mapping") == owned(&[("email", "mail"), ("name", "display_name")]),
        "the mapping is replaced as a whole: {updated}"
    );
    ensure!(
        pairs(&updated, "/provider_details") == details,
        "details kept: {updated}"
    );
    ensure!(
        updated["idp_identifiers"] == created["idp_identifiers"],
        "identifiers kept: {updated}"
    );
    let got = c
        .cli_admin_json(1, &["identity-provider", "get", "--pool-id", p, "--name", "Corp"])
        .await?;
    ensure!(
        pairs(&got, "/attribute_mapping") == pairs(&updated, "/attribute_mapping"),
        "get after update: {got}"
    );
    let out = cli_admin(c, &["identity-provider", "update", "--pool-id", p, "--name", "Corp"]).await?;
    refused(
        &out,
        "an update with nothing",
        &["nothing to update", "--attribute-mapping"],
    )?;

    // The provider is listed.
    let list = c
        .cli_admin_json(1, &["identity-provider", "list", "--pool-id", p])
        .await?;
    let listed: Vec<(&str, &str)> = list["providers"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|x| (str_at(x, "/provider_name"), str_at(x, "/provider_type")))
                .collect()
        })
        .unwrap_or_default();
    ensure!(listed == [("Corp", "OIDC")], "list: {list}");

    // A client secret is accepted and sealed; `get` never shows it back.
    let created = c
        .cli_admin_json(
            1,
            &[
                "identity-provider",
                "create",
                "--pool-id",
                p,
                "--name",
                "Secretive",
                "--type",
                "Google",
                "--detail",
                "client_id=web-app",
                "--detail",
                "client_secret=s3cret",
            ],
        )
        .await?;
    let got = c
        .cli_admin_json(1, &["identity-provider", "get", "--pool-id", p, "--name", "Secretive"])
        .await?;
    for v in [&created, &got] {
        ensure!(
            !v.to_string().contains("s3cret") && v.pointer("/provider_details/client_secret").is_none(),
            "the secret is never shown back: {v}"
        );
    }
    ensure!(
        str_at(&got, "/provider_details/client_id") == "web-app",
        "the rest of the details: {got}"
    );
    c.cli_admin_json(
        1,
        &["identity-provider", "delete", "--pool-id", p, "--name", "Secretive"],
    )
    .await?;

    // A secret in the wrong place is refused by the server, which says
    // why; nothing is stored.
    let out = cli_admin(
        c,
        &[
            "identity-provider",
            "create",
            "--pool-id",
            p,
            "--name",
            "Misplaced",
            "--type",
            "Google",
            "--detail",
            "client_id=web-app",
            "--detail",
            "private_key=s3cret",
        ],
    )
    .await?;
    let stderr = refused(
        &out,
        "a Google provider with a private_key",
        &["InvalidParameterException", "private_key"],
    )?;
    ensure!(!stderr.contains("s3cret"), "the secret is not echoed: {stderr}");
    let out = cli_admin(c, &["identity-provider", "get", "--pool-id", p, "--name", "Misplaced"]).await?;
    refused(&out, "getting the refused provider", &["NotFound"])?;

    // Flag errors name the flag, before anything is sent.
    let out = cli_admin(
        c,
        &[
            "identity-provider",
            "create",
            "--pool-id",
            p,
            "--name",
            "Bad",
            "--type",
            "OIDC",
            "--detail",
            "client_id",
        ],
    )
    .await?;
    refused(&out, "a detail without '='", &["--detail", "KEY=VALUE"])?;

    // A confirmed user of the pool, linked to an external subject.
    c.cli_admin_json(
        1,
        &["user", "create", "--pool-id", p, "--username", "ann", "--suppress"],
    )
    .await?;
    c.cli_admin_json(
        1,
        &[
            "user",
            "set-password",
            "--pool-id",
            p,
            "--username",
            "ann",
            "--password",
            PASSWORD,
            "--permanent",
        ],
    )
    .await?;
    let ann = c
        .cli_admin_json(1, &["user", "get", "--pool-id", p, "--username", "ann"])
        .await?;
    ensure!(str_at(&ann, "/user_status") == "CONFIRMED", "ann is confirmed: {ann}");
    let linked = c
        .cli_admin_json(
            1,
            &[
                "identity-provider",
                "link",
                "--pool-id",
                p,
                "--username",
                "ann",
                "--provider",
                "Corp",
                "--subject",
                "ext-123",
            ],
        )
        .await?;
    ensure!(
        str_at(&linked, "/linked") == "ann"
            && str_at(&linked, "/provider") == "Corp"
            && str_at(&linked, "/subject") == "ext-123",
        "{linked}"
    );
    // The link holds: the same subject cannot sign in as someone else.
    c.cli_admin_json(
        1,
        &["user", "create", "--pool-id", p, "--username", "bob", "--suppress"],
    )
    .await?;
    let out = cli_admin(
        c,
        &[
            "identity-provider",
            "link",
            "--pool-id",
            p,
            "--username",
            "bob",
            "--provider",
            "Corp",
            "--subject",
            "ext-123",
        ],
    )
    .await?;
    refused(
        &out,
        "linking a linked subject to another user",
        &["AliasExistsException", "ext-123", "already signs in as another user"],
    )?;
    // Linking to a provider the pool lacks is refused.
    let out = cli_admin(
        c,
        &[
            "identity-provider",
            "link",
            "--pool-id",
            p,
            "--username",
            "ann",
            "--provider",
            "Nowhere",
            "--subject",
            "ext-123",
        ],
    )
    .await?;
    refused(&out, "linking through a missing provider", &["NotFound", "Nowhere"])?;

    // Unlink, then unlinking again is refused and says what is missing.
    let unlinked = c
        .cli_admin_json(
            1,
            &[
                "identity-provider",
                "unlink",
                "--pool-id",
                p,
                "--provider",
                "Corp",
                "--subject",
                "ext-123",
            ],
        )
        .await?;
    ensure!(
        str_at(&unlinked, "/unlinked") == "ext-123" && str_at(&unlinked, "/provider") == "Corp",
        "{unlinked}"
    );
    let out = cli_admin(
        c,
        &[
            "identity-provider",
            "unlink",
            "--pool-id",
            p,
            "--provider",
            "Corp",
            "--subject",
            "ext-123",
        ],
    )
    .await?;
    refused(
        &out,
        "unlinking twice",
        &["NotFound", "ResourceNotFoundException", "Corp:ext-123"],
    )?;
    // The user itself is untouched: a pool user, still enabled.
    let ann = c
        .cli_admin_json(1, &["user", "get", "--pool-id", p, "--username", "ann"])
        .await?;
    ensure!(
        str_at(&ann, "/user_status") == "CONFIRMED" && ann["enabled"] == Value::Bool(true),
        "ann after unlink: {ann}"
    );

    // Delete the provider: gone from get and list.
    let deleted = c
        .cli_admin_json(1, &["identity-provider", "delete", "--pool-id", p, "--name", "Corp"])
        .await?;
    ensure!(str_at(&deleted, "/deleted") == "Corp", "{deleted}");
    let out = cli_admin(c, &["identity-provider", "get", "--pool-id", p, "--name", "Corp"]).await?;
    refused(&out, "getting a deleted provider", &["NotFound", "Corp"])?;
    let list = c
        .cli_admin_json(1, &["identity-provider", "list", "--pool-id", p])
        .await?;
    ensure!(
        list["providers"].as_array().is_some_and(Vec::is_empty),
        "list after delete: {list}"
    );
    Ok(())
}
