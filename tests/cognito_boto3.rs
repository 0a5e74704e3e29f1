//! boto3 against the Cognito JSON front (issue 13, tests 1 to 3) on a real
//! three-node cluster: `tests/python/cognito_boto3.py` drives boto3's
//! `cognito-idp` and `cognito-identity` clients (pycognito's `AWSSRP` for
//! USER_SRP_AUTH, pyotp for TOTP) with only `endpoint_url`, the region and
//! an admin access key changed, and reports each step by name. This file
//! makes the key, the two identity-pool roles (Tessera-only objects, not
//! on the Cognito front), answers the script's requests for what the
//! front does not offer (the Tessera-only `srp_enabled` pool setting,
//! and the codes of the outbox courier, which stand in for email), and
//! fails naming every failed step.
//!
//! `make test` sets `TESSERA_PYTHON` to the venv's interpreter; without it
//! the test uses `python3`, which must have boto3, pycognito and pyotp
//! (tests/python/requirements.txt).
//!
//! Run with: `cargo test --test cognito_boto3 -- --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::auth::{fast_hashing, status_err};
use common::{poll_until, TestCluster};
use serde_json::{json, Value};
use tessera::client::Client;
use tessera::proto::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The whole run, MFA's waits for fresh TOTP steps (up to a minute)
/// included; a hung call fails its step after its own 30 s timeout.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(420);

/// Fewer steps than this means the script stopped early, whatever the
/// steps it did report say.
const MIN_STEPS: usize = 154;

/// Roles the identity pool maps to; the script names them by AWS-style
/// ARNs, which resolve to the Tessera role of the same name.
const AUTH_ROLE: &str = "Boto3Authenticated";
const GUEST_ROLE: &str = "Boto3Guests";

fn python() -> String {
    std::env::var("TESSERA_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_runs_through_the_cognito_front() {
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = body(&c).await;
    c.finish(r);
}

async fn body(c: &TestCluster) -> Result<()> {
    let admin = c.client(1).await?;
    let (key_id, secret) = common::auth::admin_access_key(c, &admin, "boto3 suite").await?;
    for (name, actions) in [(AUTH_ROLE, "s3:*"), (GUEST_ROLE, "s3:GetObject")] {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": [actions], "Resource": ["public/*"]}],
        });
        admin
            .identity()
            .create_role(admin.req(CreateRoleRequest {
                role_name: name.into(),
                description: format!("issue 13's boto3 suite: {name}"),
                policy_document: policy.to_string(),
            }))
            .await
            .map_err(status_err(&format!("CreateRole {name}")))?;
    }
    let urls: Vec<String> = c.nodes.values().map(|n| n.url()).collect();
    ensure!(urls.len() == 3, "{} nodes", urls.len());
    let args = json!({
        "urls": urls,
        "key_id": key_id,
        "secret": secret,
        "roles": {
            "authenticated": format!("arn:aws:iam::123456789012:role/{AUTH_ROLE}"),
            "unauthenticated": format!("arn:aws:iam::123456789012:role/{GUEST_ROLE}"),
        },
    });
    let (report, log) = run_script(c, &args).await?;
    let r = check_report(&report);
    if r.is_err() {
        eprintln!("----- the boto3 suite's log -----\n{log}");
    }
    r
}

/// Runs the script and answers its requests until it prints its report.
/// Returns the report and the script's log (its stderr: one line a step),
/// which is shown only when something failed.
async fn run_script(c: &TestCluster, args: &Value) -> Result<(Value, String)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/cognito_boto3.py");
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(script).arg(args.to_string());
    // Nothing from the environment may sign or route the calls: boto3
    // sees only what the script gives it.
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (set TESSERA_PYTHON to a Python with boto3, pycognito, pyotp)",
                python()
            )
        })?;
    let mut lines = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?).lines();
    // Drained as it comes, so a full pipe never stalls the script.
    let mut stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let log = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let result = converse(c, &mut child, &mut lines).await;
    // The child is dead or done here (converse waited for it, or it
    // is killed now), so its stderr ends.
    let _ = child.start_kill();
    let log = tokio::time::timeout(Duration::from_secs(10), log)
        .await
        .map(|r| r.unwrap_or_default())
        .unwrap_or_else(|_| "(the log did not end)".into());
    match result {
        Ok(report) => Ok((report, log)),
        Err(e) => Err(e.context(format!("the boto3 suite's log:\n{log}"))),
    }
}

/// Reads the script's lines, answering its requests, until its report.
async fn converse(
    c: &TestCluster,
    child: &mut tokio::process::Child,
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> Result<Value> {
    let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
    let deadline = tokio::time::Instant::now() + SCRIPT_TIMEOUT;
    let admin = c.client(1).await?;
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .with_context(|| format!("the boto3 suite did not finish in {SCRIPT_TIMEOUT:?}"))??
            .ok_or_else(|| anyhow!("the boto3 suite exited without a report"))?;
        let msg: Value = serde_json::from_str(&line).with_context(|| format!("the suite printed {line:?}"))?;
        if msg.get("steps").is_some() {
            let status = tokio::time::timeout_at(deadline, child.wait())
                .await
                .context("the suite did not exit after its report")??;
            ensure!(status.success(), "the boto3 suite crashed ({status}) after its report");
            return Ok(msg);
        }
        let reply = match answer(c, &admin, &msg).await {
            Ok(v) => json!({ "ok": v }),
            Err(e) => json!({ "error": format!("{e:#}") }),
        };
        stdin.write_all(format!("{reply}\n").as_bytes()).await?;
        stdin.flush().await?;
    }
}

/// One request of the script (see the protocol in its docstring).
async fn answer(c: &TestCluster, admin: &Client, msg: &Value) -> Result<Value> {
    let text = |k: &str| msg[k].as_str().unwrap_or_default().to_string();
    match msg["need"].as_str() {
        Some("enable_srp") => {
            enable_srp(c, admin, &text("pool_id")).await?;
            Ok(json!(true))
        }
        Some("code") => {
            let seen = msg["seen"].as_u64().unwrap_or(0) as usize;
            Ok(json!(
                outbox_code(admin, &text("pool_id"), &text("username"), &text("kind"), seen).await?
            ))
        }
        other => bail!("unknown request {other:?}: {msg}"),
    }
}

/// Turns on USER_SRP_AUTH (a Tessera-only setting: Cognito always offers
/// SRP) with cheap hashing for the test, and waits until every node has
/// applied it, since a sign-up makes its SRP verifier on the node that
/// receives it.
async fn enable_srp(c: &TestCluster, admin: &Client, pool_id: &str) -> Result<()> {
    admin
        .admin()
        .update_user_pool(admin.req(UpdateUserPoolRequest {
            user_pool_id: pool_id.to_string(),
            srp_enabled: Some(true),
            password_hashing: fast_hashing(),
            ..Default::default()
        }))
        .await
        .map_err(status_err("UpdateUserPool srp_enabled"))?;
    for id in c.live_ids() {
        let node = c.client(id).await?;
        poll_until(
            &format!("srp_enabled on node {id}"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                let node = node.clone();
                async move {
                    let p = node
                        .describe_user_pool(pool_id, false)
                        .await
                        .map_err(status_err("DescribeUserPool"))?;
                    Ok(p.srp_enabled.then_some(()))
                }
            },
        )
        .await?;
    }
    Ok(())
}

/// The newest code of `kind` for `username` once there are more than
/// `seen` such messages (a courier may store one just after the write).
async fn outbox_code(admin: &Client, pool_id: &str, username: &str, kind: &str, seen: usize) -> Result<String> {
    poll_until(
        &format!("message #{} of kind {kind} for {username} in the outbox", seen + 1),
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async move {
            let mut found = Vec::new();
            let mut next_token = String::new();
            for _page in 0..100 {
                let page = admin
                    .admin()
                    .list_outbox_messages(admin.req(ListOutboxMessagesRequest {
                        user_pool_id: pool_id.to_string(),
                        max_results: 1000,
                        next_token: next_token.clone(),
                        consistent_read: true,
                    }))
                    .await
                    .map_err(status_err("ListOutboxMessages"))?
                    .into_inner();
                found.extend(
                    page.messages
                        .into_iter()
                        .filter(|m| m.username == username && m.kind == kind),
                );
                if page.next_token.is_empty() {
                    break;
                }
                next_token = page.next_token;
            }
            Ok((found.len() > seen)
                .then(|| found.last().map(|m| m.code.clone()))
                .flatten())
        },
    )
    .await
}

/// Fails naming every failed step with its error; also fails if the
/// report is too short to have run the whole suite.
fn check_report(report: &Value) -> Result<()> {
    let steps = report["steps"].as_array().context("no steps in the report")?;
    let failed: Vec<String> = steps
        .iter()
        .filter(|s| s["ok"].as_bool() != Some(true))
        .map(|s| {
            format!(
                "  {}: {}",
                s["name"].as_str().unwrap_or("?"),
                s["error"].as_str().unwrap_or("(no error)")
            )
        })
        .collect();
    eprintln!("boto3 suite: {} steps, {} failed", steps.len(), failed.len());
    ensure!(
        failed.is_empty(),
        "{} of {} boto3 steps failed:\n{}",
        failed.len(),
        steps.len(),
        failed.join("\n")
    );
    ensure!(
        steps.len() >= MIN_STEPS,
        "only {} steps ran (at least {MIN_STEPS} expected)",
        steps.len()
    );
    Ok(())
}
