//! The chaos harness, run the way CI and operators run it: `tessera chaos`
//! as a process, on a real local cluster with faults. One run must pass
//! every checker; a deliberately broken build (uniqueness not enforced in
//! apply, switched on by a failpoint) must make the uniqueness checker
//! fail, which proves the harness can fail.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use serde_json::Value;

async fn chaos(root: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Result<(std::process::Output, Value)> {
    let bin = pin_binary(root)?;
    let out_dir = root.join("run");
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.arg("chaos")
        .args(args)
        .arg("--out")
        .arg(&out_dir)
        .env("RUST_LOG", "warn")
        .env_remove("FAILPOINTS")
        .envs(env.iter().copied())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .context("tessera chaos ran longer than 4 minutes")??;
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).with_context(|| {
            format!(
                "no summary.json; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })?)?;
    for f in ["history.jsonl", "report.html", "checkers.json"] {
        ensure!(out_dir.join(f).exists(), "the run directory lacks {f}");
    }
    let history = std::fs::read_to_string(out_dir.join("history.jsonl"))?;
    for line in history.lines().take(200) {
        let e: Value = serde_json::from_str(line)?;
        for field in ["process", "type", "f", "key", "value", "time", "node"] {
            ensure!(e.get(field).is_some(), "history line without {field}: {line}");
        }
    }
    Ok((out, summary))
}

fn check<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn a_seeded_run_with_every_fault_passes_every_checker() {
    let root = tempfile::Builder::new().prefix("tessera-chaos-").tempdir().unwrap();
    let (out, summary) = chaos(
        root.path(),
        &["--duration", "50", "--seed", "7", "--rate", "10", "--concurrency", "10"],
        &[],
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "chaos failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary["passed"], true);
    assert!(
        summary["faults_applied"].as_array().is_some_and(|f| f.len() >= 3),
        "faults were injected: {}",
        summary["faults_applied"]
    );
    assert!(summary["ok"].as_u64().unwrap_or(0) > 100, "the workload made progress");
    for name in [
        "no-lost-acknowledged-writes",
        "uniqueness",
        "linearizable-registers",
        "convergence",
        "token-validity",
        "bounded-staleness",
        "one-identity-per-login",
        "sync-convergence",
        "sync-acknowledged-writes",
        "sync-order",
    ] {
        assert_eq!(
            check(&summary, name)["passed"],
            true,
            "{name}: {}",
            check(&summary, name)
        );
    }
}

/// Only a build with failpoints can switch uniqueness off.
#[cfg(feature = "failpoints")]
#[tokio::test]
async fn skipping_the_unique_index_is_caught_by_the_uniqueness_checker() {
    let root = tempfile::Builder::new()
        .prefix("tessera-chaos-broken-")
        .tempdir()
        .unwrap();
    let (out, summary) = chaos(
        root.path(),
        &["--duration", "12", "--seed", "3", "--faults=", "--concurrency", "10"],
        &[("FAILPOINTS", "apply-skip-unique-check=return")],
    )
    .await
    .unwrap();
    assert!(!out.status.success(), "a broken build must fail the run");
    assert_eq!(summary["passed"], false);
    let unique = check(&summary, "uniqueness");
    assert_eq!(unique["passed"], false, "{unique}");
    assert!(
        unique["evidence"]
            .as_str()
            .unwrap_or("")
            .contains("sign-ups acknowledged"),
        "{unique}"
    );
}

/// Only a build with failpoints can ignore the login index of identity
/// pools: each first `GetId` then makes its own identity, and the checker
/// must catch two identities for one login.
#[cfg(feature = "failpoints")]
#[tokio::test]
async fn skipping_the_login_index_is_caught_by_the_identity_checker() {
    let root = tempfile::Builder::new()
        .prefix("tessera-chaos-broken-ids-")
        .tempdir()
        .unwrap();
    let (out, summary) = chaos(
        root.path(),
        &["--duration", "12", "--seed", "5", "--faults=", "--concurrency", "10"],
        &[("FAILPOINTS", "apply-skip-login-index=return")],
    )
    .await
    .unwrap();
    assert!(!out.status.success(), "a broken build must fail the run");
    let ids = check(&summary, "one-identity-per-login");
    assert_eq!(ids["passed"], false, "{ids}");
    assert!(ids["evidence"].as_str().unwrap_or("").contains("identities"), "{ids}");
    // The user-pool checkers are untouched by this fault.
    assert_eq!(check(&summary, "uniqueness")["passed"], true);
}

/// The same harness against the Docker Compose cluster, when a Docker
/// engine is reachable (CI machines without one skip it, saying why).
#[tokio::test]
async fn a_seeded_run_on_the_compose_cluster_passes_every_checker() {
    let docker = std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    if !docker.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("skipping the docker backend run: no reachable Docker engine ({docker:?})");
        return;
    }
    let root = tempfile::Builder::new()
        .prefix("tessera-chaos-docker-")
        .tempdir()
        .unwrap();
    let compose_dir = format!("{}/cluster", env!("CARGO_MANIFEST_DIR"));
    let (out, summary) = chaos(
        root.path(),
        &[
            "--backend",
            "docker",
            "--compose-dir",
            &compose_dir,
            "--duration",
            "40",
            "--seed",
            "11",
            "--rate",
            "10",
            "--faults",
            "kill,pause,partition,leader-isolate,restart-all",
            "--concurrency",
            "8",
        ],
        &[],
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "chaos failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary["passed"], true);
    assert!(
        summary["faults_applied"].as_array().is_some_and(|f| f.len() >= 2),
        "faults were injected: {}",
        summary["faults_applied"]
    );
}
