//! Cognito Sync's REST routes, driven by botocore's own `cognito-sync`
//! client (`tests/python/cognito_sync_rest.py`) against a real two-node
//! cluster: guests get credentials through `cognito-identity` on one node
//! and sign ListRecords, UpdateRecords (with a conflict) and the rest with
//! them on the other, as an old Cognito Sync client does.
//!
//! `make test` sets `TESSERA_PYTHON` to the venv's interpreter; without it
//! the test uses `python3`, which must have boto3 installed.
//!
//! Run with: `cargo test --test cognito_sync_rest`

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use common::sync_fixture::SyncWorld;
use common::TestCluster;

fn python() -> String {
    std::env::var("TESSERA_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn botocore_cognito_sync_lists_updates_and_conflicts() -> Result<()> {
    let c = TestCluster::start(2).await?;
    let world = SyncWorld::create(&c, "rest-sync").await?;
    let args = json!({
        "endpoints": [format!("http://{}", c.node(1).api_addr), format!("http://{}", c.node(2).api_addr)],
        "identity_pool_id": world.pool_id,
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/cognito_sync_rest.py");
    let run = tokio::process::Command::new(python())
        .arg(script)
        .arg(args.to_string())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .context("the cognito-sync script did not finish in 120 s")?
        .with_context(|| format!("starting {} (set TESSERA_PYTHON to a Python with boto3)", python()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "the script crashed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).with_context(|| format!("script output {stdout}"))?;
    let steps = report["steps"].as_array().context("no steps")?;
    ensure!(steps.len() >= 9, "the script stopped early: {report}");
    let failed: Vec<String> = steps
        .iter()
        .filter(|s| s["ok"] != json!(true))
        .map(|s| format!("{}: {}", s["name"], s["error"]))
        .collect();
    ensure!(failed.is_empty(), "failed steps:\n{}", failed.join("\n"));
    Ok(())
}
