//! `tessera sync watch|put|remove|get|list` end to end: the real binary
//! against a real two-node cluster, as a guest identity's devices. `watch`
//! runs as a child process on node 2 and must print, as JSON lines, the
//! writes that `put` makes through node 1 (one with the sync address and
//! fingerprint from `/sync-info`, one with them given as flags); `get`,
//! `list` and `remove` read and change the same data; a refused credential
//! and an unpinned certificate fail with a message that says so.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use common::sync_client_fixture::Devices;
use common::{json_stdout, run_cli, TestCluster};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_commands_through_the_binary() {
    let c = TestCluster::start(2).await.expect("a 2-node cluster forms");
    let r = body(&c).await;
    c.finish(r);
}

/// `--endpoint <node> [--output json] sync <args> --identity-pool-id …
/// --credentials …`.
fn sync_args(c: &TestCluster, via: u64, json: bool, args: &[&str], pool: &str, token: &str) -> Vec<String> {
    let mut all = vec!["--endpoint".to_string(), c.node(via).url()];
    if json {
        all.extend(["--output".to_string(), "json".to_string()]);
    }
    all.push("sync".into());
    all.extend(args.iter().map(|s| s.to_string()));
    all.extend([
        "--identity-pool-id".to_string(),
        pool.to_string(),
        "--credentials".to_string(),
        token.to_string(),
    ]);
    all
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

async fn body(c: &TestCluster) -> Result<()> {
    let w = Devices::create(c, "cli").await?;
    let g = w.guest(c, 1).await?;
    let (pool, token) = (w.pool_id.as_str(), g.token.as_str());

    // watch, on node 2, until two changes arrived.
    let mut watch = tokio::process::Command::new(&c.bin)
        .args(sync_args(
            c,
            2,
            true,
            &["watch", "--device-id", "watcher", "--count", "2"],
            pool,
            token,
        ))
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawning tessera sync watch")?;
    let stderr = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let stderr = stderr.clone();
        let pipe = watch.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                stderr.lock().unwrap().push(l);
            }
        });
    }
    let stdout = watch.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let start = Instant::now();
    while !stderr.lock().unwrap().iter().any(|l| l.starts_with("caught up")) {
        ensure!(
            start.elapsed() < Duration::from_secs(30),
            "watch never caught up; stderr: {:?}",
            stderr.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(
        stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("connected to node 2")),
        "watch is not on node 2: {:?}",
        stderr.lock().unwrap()
    );

    // put through node 1, finding the node from /sync-info.
    let out = json_stdout(
        &run_cli(
            &c.bin,
            sync_args(
                c,
                1,
                true,
                &["put", "prefs", "theme", "dark", "--device-id", "laptop"],
                pool,
                token,
            ),
        )
        .await?,
    )?;
    ensure!(
        out["record"]["value"] == "dark" && out["record"]["sync_count"] == 1,
        "put: {out}"
    );
    ensure!(out["cursor"]["seq"] == 1, "put: {out}");
    let epoch = out["cursor"]["epoch"].as_str().unwrap_or_default().to_string();
    ensure!(
        epoch.parse::<u64>().is_ok_and(|e| e != 0),
        "the epoch is a decimal string (exact in any JSON tool): {out}"
    );

    // put with the address and the pin given.
    let n1 = &w.nodes[&1];
    let out = json_stdout(
        &run_cli(
            &c.bin,
            sync_args(
                c,
                1,
                true,
                &[
                    "put",
                    "prefs",
                    "lang",
                    "fr",
                    "--sync-addr",
                    &n1.sync_addr,
                    "--fingerprint",
                    &n1.fingerprint,
                ],
                pool,
                token,
            ),
        )
        .await?,
    )?;
    ensure!(
        out["record"]["value"] == "fr" && out["cursor"]["seq"] == 2,
        "put with flags: {out}"
    );

    // watch printed both, in order, and exited.
    let mut lines = BufReader::new(stdout).lines();
    let mut printed: Vec<Value> = Vec::new();
    while printed.len() < 2 {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .map_err(|_| anyhow!("watch printed {printed:?} only"))??
            .ok_or_else(|| anyhow!("watch ended after {printed:?}"))?;
        printed.push(serde_json::from_str(&line).with_context(|| format!("watch printed {line:?}"))?);
    }
    for (i, (key, value)) in [("theme", "dark"), ("lang", "fr")].into_iter().enumerate() {
        let p = &printed[i];
        ensure!(
            p["kind"] == "UPDATE"
                && p["dataset"] == "prefs"
                && p["cursor"]["seq"] == i as u64 + 1
                && p["cursor"]["epoch"] == epoch.as_str()
                && p["records"][0]["key"] == key
                && p["records"][0]["value"] == value,
            "watch line {i}: {p}"
        );
    }
    let status = tokio::time::timeout(Duration::from_secs(20), watch.wait()).await??;
    ensure!(status.success(), "watch exited {status}");

    // get and list, in both formats.
    let out = run_cli(&c.bin, sync_args(c, 2, false, &["get", "prefs", "theme"], pool, token)).await?;
    ensure!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "dark",
        "get: {out:?}"
    );
    let all = json_stdout(&run_cli(&c.bin, sync_args(c, 2, true, &["get", "prefs"], pool, token)).await?)?;
    let keys: Vec<&str> = all["records"]
        .as_array()
        .map(|r| r.iter().filter_map(|x| x["key"].as_str()).collect())
        .unwrap_or_default();
    ensure!(keys == ["lang", "theme"], "get prefs: {all}");
    let list = json_stdout(&run_cli(&c.bin, sync_args(c, 1, true, &["list"], pool, token)).await?)?;
    ensure!(
        list["identity_id"] == g.identity_id.as_str()
            && list["datasets"][0]["name"] == "prefs"
            && list["datasets"][0]["records"] == 2
            && list["cursor"]["seq"] == 2
            && list["cursor"]["epoch"] == epoch.as_str(),
        "list: {list}"
    );
    let table = run_cli(&c.bin, sync_args(c, 1, false, &["list"], pool, token)).await?;
    let text = String::from_utf8_lossy(&table.stdout);
    ensure!(table.status.success() && text.contains("prefs"), "list table: {text}");

    // remove, then the key is gone.
    let out = json_stdout(
        &run_cli(
            &c.bin,
            sync_args(c, 2, true, &["remove", "prefs", "theme"], pool, token),
        )
        .await?,
    )?;
    ensure!(
        out["record"]["value"].is_null() && out["cursor"]["seq"] == 3,
        "remove: {out}"
    );
    let out = run_cli(&c.bin, sync_args(c, 1, false, &["get", "prefs", "theme"], pool, token)).await?;
    ensure!(
        !out.status.success() && stderr_of(&out).contains("no record"),
        "get of a removed key: {out:?}"
    );

    // A refused credential fails at once, saying why.
    let out = run_cli(
        &c.bin,
        sync_args(c, 1, false, &["list", "--timeout", "20"], pool, "forged-credentials"),
    )
    .await?;
    ensure!(
        !out.status.success() && stderr_of(&out).contains("UNAUTHENTICATED"),
        "a forged credential: {}",
        stderr_of(&out)
    );

    // A certificate that is not pinned is never trusted.
    let zero = "00".repeat(32);
    let out = run_cli(
        &c.bin,
        sync_args(
            c,
            1,
            false,
            &["list", "--timeout", "3", "--fingerprint", &zero],
            pool,
            token,
        ),
    )
    .await?;
    ensure!(
        !out.status.success() && stderr_of(&out).contains("not a pinned fingerprint"),
        "an unpinned certificate: {}",
        stderr_of(&out)
    );
    Ok(())
}
