//! `tessera admin-key create|list|delete` end to end: the real binary with
//! `--output json` against a real two-node cluster, with the admin bearer token (which
//! stays valid beside the keys). A random key (AKIA id, 40-character
//! secret, shown once); a key of the operator's own id and secret read
//! from stdin; the list shows ids and descriptions and never a secret; an
//! existing id is refused, not replaced; deletion, and deleting again is
//! refused; flag and shape errors name what is wrong.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::process::{Output, Stdio};

use anyhow::{ensure, Context, Result};
use common::{json_stdout, run_cli, TestCluster};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

const OWN_ID: &str = "AKIACITESTKEY0000001";
const OWN_SECRET: &str = "ci/Secret+Key-0123456789abcdefghijklmn";

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

async fn cli(c: &TestCluster, args: &[&str]) -> Result<Output> {
    let mut all = c.admin_args(1);
    all.extend(args.iter().map(|s| s.to_string()));
    run_cli(&c.bin, all).await
}

/// Runs `tessera admin-key create --key-id ID --secret-stdin` with `secret`
/// on stdin.
async fn create_own(c: &TestCluster, id: &str, secret: &str, description: &str) -> Result<Output> {
    let mut args = c.admin_args(1);
    args.extend(
        [
            "admin-key",
            "create",
            "--key-id",
            id,
            "--secret-stdin",
            "--description",
            description,
        ]
        .map(String::from),
    );
    let mut child = tokio::process::Command::new(&c.bin)
        .args(&args)
        .env_remove("TESSERA_ADMIN_TOKEN")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(format!("{secret}\n").as_bytes()).await?;
    drop(stdin);
    Ok(tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output()).await??)
}

fn refused(out: &Output, what: &str, want: &str) -> Result<()> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success(),
        "{what} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    ensure!(stderr.contains(want), "{what}: stderr lacks {want:?}: {stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_key_commands_through_the_binary() {
    let c = TestCluster::start(2).await.expect("a 2-node cluster forms");
    let r = body(&c).await;
    c.finish(r);
}

async fn body(c: &TestCluster) -> Result<()> {
    // A random key: AKIA + 16 of A-Z 0-9, and a 40-character secret.
    let random = c
        .cli_admin_json(1, &["admin-key", "create", "--description", "billing jobs"])
        .await?;
    let random_id = str_at(&random, "/access_key/access_key_id").to_string();
    let random_secret = str_at(&random, "/secret_access_key").to_string();
    ensure!(
        random_id.len() == 20
            && random_id.starts_with("AKIA")
            && random_id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
        "random id {random_id}"
    );
    ensure!(
        random_secret.len() == 40,
        "random secret of {} chars",
        random_secret.len()
    );
    ensure!(str_at(&random, "/access_key/description") == "billing jobs", "{random}");

    // The operator's own id and secret, from stdin.
    let own = json_stdout(&create_own(c, OWN_ID, OWN_SECRET, "ci").await?)?;
    ensure!(str_at(&own, "/access_key/access_key_id") == OWN_ID, "{own}");
    ensure!(str_at(&own, "/secret_access_key") == OWN_SECRET, "{own}");

    // An existing id is refused, not replaced.
    let again = create_own(c, OWN_ID, "another-secret-0123456789", "ci").await?;
    refused(&again, "creating an existing id", "ResourceExistsException")?;
    // Shape errors.
    let bad = create_own(c, "akia-lowercase-0000", OWN_SECRET, "").await?;
    refused(&bad, "a lowercase id", "key_id")?;
    let short = create_own(c, "AKIACITESTKEY0000002", "short", "").await?;
    refused(&short, "a short secret", "secret")?;
    let no_secret = cli(c, &["admin-key", "create", "--key-id", OWN_ID]).await?;
    refused(&no_secret, "--key-id without --secret-stdin", "--secret-stdin")?;

    // The list, through the other node (the keys are replicated): both
    // keys in id order, never a secret.
    let mut args = c.admin_args(2);
    args.extend(["admin-key", "list"].map(String::from));
    let out = run_cli(&c.bin, args).await?;
    let listed = json_stdout(&out)?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        !text.contains(OWN_SECRET) && !text.contains(&random_secret),
        "list shows a secret: {text}"
    );
    let ids: Vec<&str> = listed["access_keys"]
        .as_array()
        .context("access_keys")?
        .iter()
        .map(|k| str_at(k, "/access_key_id"))
        .collect();
    let mut want = vec![OWN_ID, random_id.as_str()];
    want.sort();
    ensure!(ids == want, "listed {ids:?}, want {want:?}");
    ensure!(
        listed["access_keys"][0]["create_date"].as_i64().unwrap_or(0) > 0,
        "no create_date: {listed}"
    );

    // The table output too.
    let mut args = c.admin_args(1);
    let at = args.iter().position(|a| a == "--output").context("--output")?;
    args[at + 1] = "table".into();
    args.extend(["admin-key", "list"].map(String::from));
    let table = run_cli(&c.bin, args).await?;
    ensure!(table.status.success(), "table list failed");
    let table = String::from_utf8_lossy(&table.stdout);
    ensure!(table.contains(OWN_ID) && table.contains("billing jobs"), "{table}");

    // Delete, then deleting again is refused.
    let deleted = c.cli_admin_json(1, &["admin-key", "delete", OWN_ID]).await?;
    ensure!(str_at(&deleted, "/deleted") == OWN_ID, "{deleted}");
    let gone = cli(c, &["admin-key", "delete", OWN_ID]).await?;
    refused(&gone, "deleting twice", "does not exist")?;
    let listed = c.cli_admin_json(1, &["admin-key", "list"]).await?;
    ensure!(
        listed["access_keys"].as_array().map(Vec::len) == Some(1),
        "after delete: {listed}"
    );

    // Without the admin token the calls are refused.
    let no_token = run_cli(
        &c.bin,
        vec![
            "--endpoint".into(),
            c.node(1).url(),
            "--token".into(),
            "wrong".into(),
            "admin-key".into(),
            "list".into(),
        ],
    )
    .await?;
    refused(&no_token, "a wrong admin token", "Unauthenticated")?;
    Ok(())
}
