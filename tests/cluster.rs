//! Cluster integration tests: real `tessera` processes, real RocksDB data
//! dirs, real loopback sockets, driven through the CLI and the Rust client.
//!
//! Run with:
//! `cargo test --test cluster -- --nocapture --test-threads=1`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::{free_ports, poll_until, run_cli, TestCluster, STOP_TIMEOUT};
use tessera::client::Client;
use tonic::Code;

/// The name of the counter of snapshots a node installed from a leader
/// (`snapshots_installed` in src/metrics.rs, `tessera` prefix, `_total`
/// suffix added by prometheus-client).
const SNAPSHOTS_INSTALLED: &str = "tessera_snapshots_installed_total";
const SNAPSHOTS_SENT: &str = "tessera_snapshots_sent_total";
const FORWARDED: &str = "tessera_forwarded_proposals_total";

/// Asserts that `r` failed with `code` and a message naming `exception`.
fn expect_status<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, tonic::Status>,
    code: Code,
    exception: &str,
) -> Result<()> {
    match r {
        Ok(v) => bail!("{what}: expected {code:?} ({exception}), got success: {v:?}"),
        Err(s) => {
            ensure!(
                s.code() == code,
                "{what}: expected {code:?} ({exception}), got {:?}: {}",
                s.code(),
                s.message()
            );
            ensure!(
                s.message().contains(exception),
                "{what}: message should name {exception}: {:?}",
                s.message()
            );
            println!("  {what}: {:?} {:?}", s.code(), s.message());
            Ok(())
        }
    }
}

fn status_err(what: &str) -> impl FnOnce(tonic::Status) -> anyhow::Error + '_ {
    move |s| anyhow!("{what}: {:?}: {}", s.code(), s.message())
}

// ---------------------------------------------------------------------------
// a. formation through the CLI, and writes through a follower
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formation_and_forwarding() {
    let started = Instant::now();
    let c = TestCluster::start(3)
        .await
        .expect("a 3-node cluster forms through the CLI");
    println!("cluster formed in {:?}", started.elapsed());
    let r = formation_and_forwarding_body(&c).await;
    c.finish(r);
    println!("formation_and_forwarding took {:?}", started.elapsed());
}

async fn formation_and_forwarding_body(c: &TestCluster) -> Result<()> {
    let leader = c
        .lazy_client(1)
        .describe_cluster()
        .await
        .map_err(status_err("describe_cluster"))?
        .leader_id
        .ok_or_else(|| anyhow!("node 1 knows no leader right after formation"))?;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    println!("leader {leader}, writing through follower {follower}");

    let pool = c
        .client(follower)
        .await?
        .create_user_pool("through-a-follower")
        .await
        .map_err(status_err("create_user_pool through a follower"))?;
    ensure!(pool.name == "through-a-follower", "created pool came back as {pool:?}");
    ensure!(
        pool.id.starts_with("local_"),
        "pool id {:?} lacks the local_ prefix",
        pool.id
    );

    for id in 1..=3 {
        let p = c
            .client(id)
            .await?
            .describe_user_pool(&pool.id, true)
            .await
            .map_err(status_err(&format!("consistent describe on node {id}")))?;
        ensure!(p == pool, "node {id} returned {p:?}, expected {pool:?}");
    }
    let forwarded = c.node(follower).metric(FORWARDED).await?.unwrap_or(0.0);
    ensure!(
        forwarded >= 1.0,
        "follower {follower} reports {FORWARDED} = {forwarded}; the write was not forwarded"
    );

    // The CLI: `pool create --output json` prints the pool, with its id.
    let created = c
        .cli_admin_json(follower, &["pool", "create", "--name", "from the CLI"])
        .await?;
    let cli_id = created["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| anyhow!("pool create printed no id: {created}"))?
        .to_string();
    ensure!(created["name"] == "from the CLI", "pool create printed {created}");
    for id in 1..=3 {
        let p = c
            .lazy_client(id)
            .describe_user_pool(&cli_id, true)
            .await
            .map_err(status_err(&format!("describe CLI pool on node {id}")))?;
        ensure!(p.name == "from the CLI", "node {id} has {p:?}");
    }
    let got = c
        .cli_admin_json(leader, &["pool", "get", "--pool-id", &cli_id, "--consistent"])
        .await?;
    ensure!(got["id"] == cli_id.as_str(), "pool get printed {got}");

    // `cluster status --output json`: 3 voters and exactly one leader.
    let status = poll_until(
        "cluster status to show 3 voters and one leader",
        Duration::from_secs(10),
        Duration::from_millis(200),
        move || async move {
            let s = c.cli_admin_json(follower, &["cluster", "status"]).await?;
            let members = s["members"].as_array().cloned().unwrap_or_default();
            let voters: BTreeSet<u64> = members
                .iter()
                .filter(|m| m["role"] == "voter")
                .filter_map(|m| m["node_id"].as_u64())
                .collect();
            let nodes = s["nodes"].as_array().cloned().unwrap_or_default();
            let leaders: Vec<u64> = nodes
                .iter()
                .filter(|n| n["state"] == "Leader")
                .filter_map(|n| n["node_id"].as_u64())
                .collect();
            let ok = members.len() == 3
                && voters == BTreeSet::from([1, 2, 3])
                && nodes.len() == 3
                && leaders.len() == 1
                && s["leader_id"].as_u64() == Some(leaders[0])
                && s["cluster_id"] == c.cluster_id.as_str();
            if ok {
                Ok(Some(s))
            } else {
                Err(anyhow!("status: {s}"))
            }
        },
    )
    .await?;
    println!("cluster status: {status}");
    Ok(())
}

// ---------------------------------------------------------------------------
// b. kill -9 the leader
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash() {
    let started = Instant::now();
    let mut c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = leader_crash_body(&mut c).await;
    c.finish(r);
    println!("leader_crash took {:?}", started.elapsed());
}

async fn leader_crash_body(c: &mut TestCluster) -> Result<()> {
    let mut ids = c.create_pools(20, "before-crash").await?;
    let (old_leader, _) = c.wait_for_leader(None, Duration::from_secs(10)).await?;
    let follower = c
        .live_ids()
        .into_iter()
        .find(|id| *id != old_leader)
        .expect("a follower");

    // Meanwhile a client keeps writing through a follower, so that some
    // forwarded proposals are in flight when the leader dies.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let client = c.lazy_client(follower);
        let stop = stop.clone();
        async move {
            let (mut acked, mut failed) = (Vec::new(), Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("concurrent-{i}");
                i += 1;
                match client.create_user_pool(&name).await {
                    Ok(p) => acked.push((p.id, name)),
                    Err(s) => failed.push((name, format!("{:?}: {}", s.code(), s.message()))),
                }
            }
            (acked, failed)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    println!("killing leader {old_leader} with SIGKILL (a client keeps writing through node {follower})");
    c.node_mut(old_leader).kill9();
    let (new_leader, took) = c.wait_for_leader(Some(old_leader), Duration::from_secs(10)).await?;
    println!("new leader elected in {} ms (node {new_leader})", took.as_millis());
    ensure!(
        took < Duration::from_secs(3),
        "a new leader took {took:?} to be elected (election timeout is 300-600 ms)"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .map_err(|_| anyhow!("the concurrent writer did not stop"))??;
    println!(
        "concurrent writer: {} acknowledged, {} failed {:?}",
        acked.len(),
        failed.len(),
        failed
    );

    // Writes through the survivors (each forwards to the new leader).
    ids.extend(c.create_pools(10, "after-crash").await?);
    let survivor = c.live_ids()[0];
    let expected: BTreeSet<String> = ids.iter().cloned().collect();
    ensure!(expected.len() == 30, "pool ids are not unique: {ids:?}");
    for id in c.live_ids() {
        let client = c.lazy_client(id);
        for pool_id in &ids {
            client
                .describe_user_pool(pool_id, true)
                .await
                .map_err(status_err(&format!("consistent describe {pool_id} on node {id}")))?;
        }
    }
    let all = c.pool_list(survivor, true).await?;
    let listed: BTreeSet<String> = all
        .iter()
        .filter(|(_, name)| !name.starts_with("concurrent-"))
        .map(|(id, _)| id.clone())
        .collect();
    ensure!(
        listed == expected,
        "consistent list on node {survivor} differs from the 30 acknowledged writes: extra {:?}, missing {:?}",
        listed.difference(&expected).collect::<Vec<_>>(),
        expected.difference(&listed).collect::<Vec<_>>()
    );
    // Every acknowledged concurrent write survived, and no request was
    // applied twice (each name was sent in exactly one CreateUserPool).
    let listed_all: BTreeSet<(String, String)> = all.iter().cloned().collect();
    for (id, name) in &acked {
        ensure!(
            listed_all.contains(&(id.clone(), name.clone())),
            "acknowledged write {name} ({id}) is missing after the leader crash"
        );
    }
    let mut per_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, name) in &all {
        per_name.entry(name.as_str()).or_default().push(id.as_str());
    }
    let duplicated: Vec<_> = per_name.iter().filter(|(_, ids)| ids.len() > 1).collect();
    ensure!(
        duplicated.is_empty(),
        "CreateUserPool requests applied more than once across the leader crash: {duplicated:?}"
    );

    // The old leader restarts from its data dir and catches up.
    let healthy = c.start_node(old_leader).await?;
    println!("node {old_leader} restarted (healthy after {healthy:?})");
    let caught_up = c
        .wait_pools_described(old_leader, &ids, Duration::from_secs(20))
        .await?;
    println!("node {old_leader} serves all 30 pools locally after {caught_up:?}");
    // ... and ends with exactly the cluster's pool list.
    let local = converge_with_leader(c, old_leader, Duration::from_secs(20)).await?;
    let local_ids: BTreeSet<String> = local.into_iter().map(|(id, _)| id).collect();
    ensure!(
        expected.is_subset(&local_ids),
        "restarted node misses {:?}",
        expected.difference(&local_ids).collect::<Vec<_>>()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// c. a new node catches up by snapshot
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_catch_up() {
    let started = Instant::now();
    let mut c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = snapshot_catch_up_body(&mut c).await;
    c.finish(r);
    println!("snapshot_catch_up took {:?}", started.elapsed());
}

/// Writes `n` pools and waits until the leader has a snapshot covering at
/// least `n - snapshot_every` entries, so (with `keep_logs_after_snapshot =
/// 0`) a node added now can only catch up by snapshot.
async fn write_and_snapshot(c: &TestCluster, n: usize, prefix: &str) -> Result<(Vec<String>, u64)> {
    let t = Instant::now();
    let ids = c.create_pools(n, prefix).await?;
    println!("{n} pools written in {:?}", t.elapsed());
    let (leader, _) = c.wait_for_leader(None, Duration::from_secs(10)).await?;
    let want = n as u64 - c.tuning.snapshot_every;
    let snap = c
        .wait_snapshot_index(leader, leader, want, Duration::from_secs(20))
        .await?;
    println!("leader {leader} snapshot index {snap}");
    Ok((ids, leader))
}

async fn snapshot_catch_up_body(c: &mut TestCluster) -> Result<()> {
    let (ids, _) = write_and_snapshot(c, 150, "snap").await?;
    let expected: BTreeSet<String> = ids.iter().cloned().collect();

    c.prepare_node(4)?;
    c.start_node(4).await?;
    let t = Instant::now();
    let added = c.add_node_cli(4, 1).await?;
    println!("add-node 4 returned after {:?}: {added}", t.elapsed());

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let last = match c.pool_list(4, false).await {
            Ok(list) => {
                let got: BTreeSet<String> = list.into_iter().map(|(id, _)| id).collect();
                if got == expected {
                    break;
                }
                format!(
                    "node 4 has {} of {} pools",
                    got.intersection(&expected).count(),
                    expected.len()
                )
            }
            Err(e) => format!("{e:#}"),
        };
        ensure!(Instant::now() < deadline, "node 4 did not converge: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("node 4 serves all 150 pools after {:?}", t.elapsed());
    for pool_id in ids.iter().step_by(10) {
        c.lazy_client(4)
            .describe_user_pool(pool_id, false)
            .await
            .map_err(status_err(&format!("local describe {pool_id} on node 4")))?;
    }

    let installed = c.node(4).metric(SNAPSHOTS_INSTALLED).await?;
    println!("node 4 {SNAPSHOTS_INSTALLED} = {installed:?}");
    ensure!(
        installed.unwrap_or(0.0) >= 1.0,
        "node 4 caught up without installing a snapshot ({SNAPSHOTS_INSTALLED} = {installed:?}), \
         although the leader's log was purged"
    );

    // The leader side of the transfer is counted too (metrics.rs documents
    // `snapshots_sent` as "Snapshots streamed to followers").
    let mut sent = 0.0;
    for id in 1..=3 {
        sent += c.node(id).metric(SNAPSHOTS_SENT).await?.unwrap_or(0.0);
    }
    ensure!(
        sent >= 1.0,
        "a snapshot was installed on node 4 but no node counts one in {SNAPSHOTS_SENT} (sum {sent})"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// d. every node stopped and started again
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_restart() {
    let started = Instant::now();
    let mut c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = full_restart_body(&mut c).await;
    c.finish(r);
    println!("full_restart took {:?}", started.elapsed());
}

async fn full_restart_body(c: &mut TestCluster) -> Result<()> {
    let ids = c.create_pools(30, "restart").await?;
    let expected: BTreeSet<String> = ids.iter().cloned().collect();

    // SIGTERM every node at once, as a whole-cluster shutdown does, then
    // wait for each to exit.
    let mut nodes: Vec<&mut common::TestNode> = c.nodes.values_mut().collect();
    let stops = futures::future::join_all(nodes.iter_mut().map(|n| n.stop(STOP_TIMEOUT))).await;
    for (id, outcome) in (1..=3).zip(stops) {
        let o = outcome.with_context(|| format!("stopping node {id}"))?;
        println!("node {id} stopped: {o:?}");
        ensure!(
            o.graceful,
            "node {id} ignored SIGTERM for {STOP_TIMEOUT:?} and had to be killed"
        );
        ensure!(o.status.success(), "node {id} exited with {} after SIGTERM", o.status);
    }

    for id in 1..=3 {
        c.node_mut(id).start()?;
    }
    for id in 1..=3 {
        c.node_mut(id).wait_healthy(common::HEALTH_TIMEOUT).await?;
    }
    let (leader, took) = c.wait_for_leader(None, Duration::from_secs(15)).await?;
    println!("after a full restart node {leader} leads ({took:?})");

    for id in 1..=3 {
        let client = c.lazy_client(id);
        for pool_id in &ids {
            client
                .describe_user_pool(pool_id, true)
                .await
                .map_err(status_err(&format!(
                    "consistent describe {pool_id} on node {id} after restart"
                )))?;
        }
        let listed: BTreeSet<String> = c.pool_list(id, true).await?.into_iter().map(|(id, _)| id).collect();
        ensure!(
            listed == expected,
            "node {id} lists {listed:?} after restart, expected {expected:?}"
        );
    }
    let more = c.create_pools(3, "after-restart").await?;
    for id in 1..=3 {
        c.lazy_client(id)
            .describe_user_pool(&more[2], true)
            .await
            .map_err(status_err(&format!("new write visible on node {id}")))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// e. a joining node is killed again and again while it catches up
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_snapshot_install() {
    let started = Instant::now();
    let mut c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = crash_during_snapshot_install_body(&mut c).await;
    c.finish(r);
    println!("crash_during_snapshot_install took {:?}", started.elapsed());
}

async fn crash_during_snapshot_install_body(c: &mut TestCluster) -> Result<()> {
    let (_, leader) = write_and_snapshot(c, 150, "crash").await?;

    c.prepare_node(4)?;
    c.start_node(4).await?;
    // Ask for the join through the leader and let it run while node 4 dies
    // repeatedly; the leader keeps retrying replication to it.
    let args = c.add_node_args(4, leader);
    let bin = c.bin.clone();
    let add = tokio::spawn(async move { run_cli(&bin, args).await });

    // Let node 4 finish one install, so that it holds a current snapshot
    // of its own; later installs then replace an older one.
    let snapdir = c.node(4).data_dir.join("snapshots");
    let current = snapdir.join("current.snap");
    poll_until(
        "node 4 to finish its first snapshot install",
        Duration::from_secs(20),
        Duration::from_millis(5),
        || {
            let done = current.exists() && snapshot_temp_files(&snapdir).is_empty();
            async move { Ok(done.then_some(())) }
        },
    )
    .await?;
    c.node_mut(4).kill9();
    println!("node 4 installed its first snapshot; killed it");

    // Then targeted kills: while node 4 is down, more writes make the
    // leader snapshot and purge again, so that the restarted node needs a
    // fresh snapshot; SIGKILL it when the transfer or install reaches a
    // given point. `installed-*.tmp` exists only between the moment the
    // new state goes live and the moment the snapshot file is kept.
    let mut in_flight_kills = 0;
    let mut written = 150;
    let triggers = [("installed-", 0u64), ("recv-", 0), ("installed-", 0), ("recv-", 3)];
    for (round, (prefix, extra_ms)) in triggers.into_iter().enumerate() {
        let before = c
            .lazy_client(leader)
            .describe_cluster()
            .await
            .map_err(status_err("describe_cluster"))?
            .nodes
            .iter()
            .find(|n| n.node_id == leader)
            .map(|n| n.snapshot_index)
            .unwrap_or(0);
        c.create_pools(60, &format!("crash-round{round}")).await?;
        written += 60;
        c.wait_snapshot_index(leader, leader, before + 50, Duration::from_secs(20))
            .await?;
        c.start_node(4).await?;
        let (seen, at_kill) =
            kill_when_snapshot_file(c.node_mut(4), &snapdir, prefix, extra_ms, Duration::from_secs(3));
        if !at_kill.is_empty() {
            in_flight_kills += 1;
        }
        println!("targeted round {round}: waited for {prefix}* (+{extra_ms} ms): seen {seen:?}; killed with {at_kill:?} in flight");
    }
    c.start_node(4).await?;
    // Finally, kills at fixed points after the process answers /healthz.
    for (round, delay_ms) in [0u64, 50, 150, 250, 350, 500].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let installed = c.node(4).metric(SNAPSHOTS_INSTALLED).await.ok().flatten();
        c.node_mut(4).kill9();
        println!("timed round {round}: killed node 4 {delay_ms} ms after healthy (installed this run: {installed:?})");
        c.start_node(4).await?;
    }
    // Whether a kill lands mid-transfer depends on timing; the exact window
    // is covered deterministically by `crash_between_snapshot_keep_and_go_live`.
    println!("{in_flight_kills} kills landed while a snapshot transfer or install was in flight");

    let out = tokio::time::timeout(Duration::from_secs(90), add)
        .await
        .map_err(|_| anyhow!("add-node 4 did not finish"))??
        .context("add-node 4")?;
    let added = common::json_stdout(&out).context("add-node 4 while node 4 was being killed")?;
    println!("add-node 4: {added}");

    // Node 4 must converge to exactly the leader's state, and then keep
    // taking part: writes through every node, node 4 included.
    let converged = converge_with_leader(c, 4, Duration::from_secs(20)).await?;
    ensure!(
        converged.len() == written,
        "the leader lists {} pools, expected {written}",
        converged.len()
    );
    let extra = c.create_pools(10, "after-chaos").await?;
    let node4_list = converge_with_leader(c, 4, Duration::from_secs(10)).await?;
    ensure!(
        node4_list.len() == written + 10,
        "after 10 more writes node 4 lists {} pools, expected {}",
        node4_list.len(),
        written + 10
    );
    ensure!(
        node4_list.iter().any(|(id, _)| id == &extra[9]),
        "node 4 misses the last write"
    );
    println!(
        "node 4 converged: {} pools, identical to the leader's",
        node4_list.len()
    );

    let status = c
        .lazy_client(1)
        .describe_cluster()
        .await
        .map_err(status_err("describe_cluster"))?;
    ensure!(
        status.members.iter().any(|m| m.node_id == 4 && m.role == "voter"),
        "node 4 is not a voter: {:?}",
        status.members
    );
    // No half-received or half-installed snapshot is left behind.
    let snapdir = c.node(4).data_dir.join("snapshots");
    let leftovers = snapshot_temp_files(&snapdir);
    ensure!(
        leftovers.is_empty(),
        "partial snapshot files left in {}: {leftovers:?}",
        snapdir.display()
    );
    Ok(())
}

/// Polls until node `id`'s local pool list equals the leader's consistent
/// one, and returns it.
async fn converge_with_leader(c: &TestCluster, id: u64, timeout: Duration) -> Result<Vec<(String, String)>> {
    let deadline = Instant::now() + timeout;
    loop {
        let (leader, _) = c.wait_for_leader(None, Duration::from_secs(10)).await?;
        let last = match (c.pool_list(leader, true).await, c.pool_list(id, false).await) {
            (Ok(a), Ok(b)) if a == b => return Ok(b),
            (Ok(a), Ok(b)) => format!("leader {leader} has {} pools, node {id} has {}", a.len(), b.len()),
            (Err(e), _) | (_, Err(e)) => format!("{e:#}"),
        };
        ensure!(
            Instant::now() < deadline,
            "node {id} did not converge with the leader within {timeout:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `dir` every 200 µs until a file whose name starts with `prefix`
/// appears (or `timeout` passes), waits `extra_ms`, then SIGKILLs `node`.
/// Returns the files seen when triggered and those present at the kill.
fn kill_when_snapshot_file(
    node: &mut common::TestNode,
    dir: &std::path::Path,
    prefix: &str,
    extra_ms: u64,
    timeout: Duration,
) -> (Option<Vec<String>>, Vec<String>) {
    tokio::task::block_in_place(|| {
        let start = Instant::now();
        let seen = loop {
            let files = snapshot_temp_files(dir);
            if files.iter().any(|f| f.starts_with(prefix)) {
                break Some(files);
            }
            if start.elapsed() > timeout {
                break None;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        if seen.is_some() && extra_ms > 0 {
            std::thread::sleep(Duration::from_millis(extra_ms));
        }
        let at_kill = snapshot_temp_files(dir);
        node.kill9();
        (seen, at_kill)
    })
}

/// Names of the temporary files in a snapshot dir that exist only while a
/// snapshot is being received (`recv-*`) or installed (`installed-*`).
fn snapshot_temp_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| (n.starts_with("recv-") || n.starts_with("installed-")) && n.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// f. bad input gets the right status, and the node keeps serving
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input() {
    let started = Instant::now();
    let mut c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = bad_input_body(&mut c).await;
    c.finish(r);
    println!("bad_input took {:?}", started.elapsed());
}

async fn still_serving(c: &TestCluster, id: u64) -> Result<()> {
    let h = common::http_get(&c.node(id).api_addr, "/healthz").await?;
    ensure!(h.status == 200, "node {id} /healthz answered {}", h.status);
    c.lazy_client(id)
        .list_user_pools(1, "", false)
        .await
        .map_err(status_err(&format!("node {id} stopped serving after bad input")))?;
    Ok(())
}

async fn bad_input_body(c: &mut TestCluster) -> Result<()> {
    let admin = c.client(1).await?;
    let pool = admin
        .create_user_pool("valid")
        .await
        .map_err(status_err("create valid pool"))?;

    expect_status(
        "describe_user_pool(\"not a pool id!\")",
        admin.describe_user_pool("not a pool id!", false).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    expect_status(
        "create_user_pool(\"\")",
        admin.create_user_pool("").await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    expect_status(
        "create_user_pool(200 chars)",
        admin.create_user_pool(&"x".repeat(200)).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    expect_status(
        "create_user_pool(\"a/b\")",
        admin.create_user_pool("a/b").await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    expect_status(
        "describe_user_pool(unknown id)",
        admin.describe_user_pool("local_ZZZZZZZZZ", true).await,
        Code::NotFound,
        "ResourceNotFoundException",
    )?;
    expect_status(
        "list_user_pools(max_results 1000)",
        admin.list_user_pools(1000, "", false).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    expect_status(
        "list_user_pools(bogus next_token)",
        admin.list_user_pools(10, "not a token", false).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;

    // The exception name also travels as metadata for clients to branch on.
    let s = admin
        .describe_user_pool("local_ZZZZZZZZZ", false)
        .await
        .expect_err("an unknown pool is not found");
    let header = s.metadata().get("x-tessera-exception").and_then(|v| v.to_str().ok());
    ensure!(
        header == Some("ResourceNotFoundException"),
        "x-tessera-exception metadata is {header:?}"
    );

    // Authentication, on a follower and on the leader alike.
    let url = c.node(2).url();
    let wrong = Client::connect(&url, Some("tsr_not-the-token".into())).await?;
    expect_status(
        "wrong token",
        wrong.list_user_pools(10, "", false).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    expect_status(
        "wrong token on describe_cluster",
        wrong.describe_cluster().await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    let anonymous = Client::connect(&url, None).await?;
    expect_status(
        "no token",
        anonymous.create_user_pool("anonymous").await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    expect_status(
        "no token on add_node",
        anonymous.add_node(9, "127.0.0.1:1", "127.0.0.1:2").await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;

    // A request over the api's size limit is refused; the node stays up.
    match admin.create_user_pool(&"y".repeat(2 << 20)).await {
        Ok(p) => bail!("a 2 MiB request was accepted: {}", p.id),
        Err(s) => {
            println!("  2 MiB request: {:?} {:?}", s.code(), s.message());
            ensure!(
                matches!(
                    s.code(),
                    Code::ResourceExhausted | Code::OutOfRange | Code::InvalidArgument
                ),
                "a 2 MiB request got {:?}: {}",
                s.code(),
                s.message()
            );
        }
    }
    still_serving(c, 1).await?;

    // Membership changes with bad arguments.
    let fresh = free_ports(2)?;
    let (fresh_peer, fresh_api) = (format!("127.0.0.1:{}", fresh[0]), format!("127.0.0.1:{}", fresh[1]));
    expect_status(
        "add_node(duplicate id 2)",
        admin.add_node(2, &fresh_peer, &fresh_api).await,
        Code::AlreadyExists,
        "NodeExistsException",
    )?;
    expect_status(
        "add_node(id 0)",
        admin.add_node(0, &fresh_peer, &fresh_api).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    expect_status(
        "add_node(bad peer address)",
        admin.add_node(7, "no-port-here", &fresh_api).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    expect_status(
        "add_node(reused peer address of node 2)",
        admin.add_node(7, &c.node(2).peer_addr, &fresh_api).await,
        Code::AlreadyExists,
        "NodeExistsException",
    )?;
    expect_status(
        "remove_node(unknown id 42)",
        admin.remove_node(42).await,
        Code::NotFound,
        "ResourceNotFoundException",
    )?;

    // Remove node 3, then try to bring the same id back.
    let leader = c.leader_id().await?;
    println!("  removing node 3 (leader is {leader:?})");
    let removed = admin.remove_node(3).await.map_err(status_err("remove_node(3)"))?;
    ensure!(
        !removed.members.iter().any(|m| m.node_id == 3),
        "node 3 still listed after removal: {:?}",
        removed.members
    );
    c.node_mut(3).kill9();
    let status = c
        .lazy_client(1)
        .describe_cluster()
        .await
        .map_err(status_err("describe_cluster"))?;
    ensure!(
        status.retired_node_ids.contains(&3),
        "node 3 not retired: {:?}",
        status.retired_node_ids
    );
    let node3 = c.node(3);
    expect_status(
        "add_node(retired id 3)",
        admin.add_node(3, &node3.peer_addr, &node3.api_addr).await,
        Code::FailedPrecondition,
        "NodeIdRetiredException",
    )?;
    let retired = admin
        .add_node(3, &fresh_peer, &fresh_api)
        .await
        .expect_err("a retired id is refused");
    ensure!(
        retired.message().contains("NodeIdRetiredException"),
        "retired-id message: {}",
        retired.message()
    );

    // `cluster init` on an initialised node fails, on a leader or not.
    for id in [1, 2] {
        let out = c
            .cli(&["--endpoint", &c.node(id).url(), "--output", "json", "cluster", "init"])
            .await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success(),
            "cluster init on initialised node {id} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        ensure!(
            stderr.contains("AlreadyInitialized"),
            "cluster init on node {id}: stderr should say the cluster is already initialised: {stderr}"
        );
        println!(
            "  cluster init on node {id}: {}",
            stderr.lines().next().unwrap_or_default()
        );
    }
    // A data dir belongs to one node id for good: starting node 3's data
    // dir as another id must stop with a clear message, not serve.
    let ports = free_ports(2)?;
    let node3 = c.node(3);
    let args: Vec<String> = [
        "serve",
        "--config",
        &node3.config_path.to_string_lossy(),
        "--node-id",
        "9",
        "--data-dir",
        &node3.data_dir.to_string_lossy(),
        "--api-addr",
        &format!("127.0.0.1:{}", ports[0]),
        "--peer-addr",
        &format!("127.0.0.1:{}", ports[1]),
    ]
    .map(String::from)
    .to_vec();
    let out = common::run_cli_timeout(&c.bin, args, Duration::from_secs(20))
        .await
        .context("a node started on another node's data dir kept running")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success(),
        "serving node 3's data dir as node 9 exited with success"
    );
    ensure!(
        stderr.contains("belongs to node 3"),
        "serving node 3's data dir as node 9 should name the owner: {stderr}"
    );
    println!(
        "  node 3's data dir as node 9: {}",
        stderr.lines().next().unwrap_or_default()
    );

    // The CLI refuses admin commands without a token.
    let out = c.cli(&["--endpoint", &c.node(1).url(), "pool", "list"]).await?;
    ensure!(!out.status.success(), "pool list without a token succeeded");

    // After all of that, both remaining nodes still serve and accept writes.
    for id in [1, 2] {
        still_serving(c, id).await?;
    }
    let after = c
        .client(2)
        .await?
        .create_user_pool("still works")
        .await
        .map_err(status_err("valid create after bad input"))?;
    for id in [1, 2] {
        let listed = c.pool_list(id, true).await?;
        ensure!(
            listed.iter().any(|(p, _)| p == &after.id) && listed.iter().any(|(p, _)| p == &pool.id),
            "node {id} lists {listed:?}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// f. a crash exactly between keeping a received snapshot and making its
//    state live (failpoint `pause`, then SIGKILL)
// ---------------------------------------------------------------------------

/// Only a build with failpoints can pause the install.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_snapshot_keep_and_go_live() {
    let mut c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = crash_between_snapshot_keep_and_go_live_body(&mut c).await;
    c.finish(r);
}

#[cfg(feature = "failpoints")]
async fn crash_between_snapshot_keep_and_go_live_body(c: &mut TestCluster) -> Result<()> {
    let (ids, leader) = write_and_snapshot(c, 150, "keep").await?;
    c.prepare_node(4)?;
    // Node 4 stops dead right after its received snapshot became
    // current.snap and before the new state goes live.
    c.node_mut(4).env = vec![("FAILPOINTS".into(), "snapshot-install-after-promote=pause".into())];
    c.start_node(4).await?;
    let args = c.add_node_args(4, leader);
    let bin = c.bin.clone();
    let add = tokio::spawn(async move { run_cli(&bin, args).await });
    let current = c.node(4).data_dir.join("snapshots").join("current.snap");
    poll_until(
        "node 4 to keep the received snapshot",
        Duration::from_secs(20),
        Duration::from_millis(5),
        || {
            let kept = current.exists();
            async move { Ok(kept.then_some(())) }
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The failpoint really holds the install: the kept snapshot is not live,
    // so node 4 either serves none of the pools or, with the install holding
    // its state machine, does not answer at all.
    let paused = c.client(4).await?;
    match tokio::time::timeout(Duration::from_secs(3), paused.list_all_user_pools(false)).await {
        Err(_) => println!("node 4 does not answer while its install is paused"),
        Ok(listed) => {
            let visible = listed.map_err(status_err("list"))?;
            ensure!(
                visible.len() < ids.len(),
                "node 4 already serves {} of {} pools: the failpoint did not pause the install",
                visible.len(),
                ids.len()
            );
        }
    }
    c.node_mut(4).kill9();
    println!("node 4 killed while paused between keeping the snapshot and making it live");

    // Restarted without the failpoint, it must start and converge.
    c.node_mut(4).env.clear();
    c.start_node(4).await?;
    let out = tokio::time::timeout(Duration::from_secs(90), add)
        .await
        .map_err(|_| anyhow!("add-node 4 did not finish"))??
        .context("add-node 4")?;
    common::json_stdout(&out).context("add-node 4")?;
    let n4 = c.client(4).await?;
    poll_until(
        "node 4 to serve every pool",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let n4 = n4.clone();
            let ids = ids.clone();
            async move {
                let have = n4.list_all_user_pools(false).await.map_err(status_err("list"))?;
                Ok((have.len() >= ids.len()).then_some(()))
            }
        },
    )
    .await?;
    let on4: Vec<String> = n4
        .list_all_user_pools(false)
        .await
        .map_err(status_err("list"))?
        .into_iter()
        .map(|p| p.id)
        .collect();
    let on_leader: Vec<String> = c
        .client(leader)
        .await?
        .list_all_user_pools(true)
        .await
        .map_err(status_err("list"))?
        .into_iter()
        .map(|p| p.id)
        .collect();
    ensure!(on4 == on_leader, "node 4 converged to a different pool list");
    for id in &ids {
        ensure!(on4.contains(id), "pool {id} missing on node 4");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// A node whose log cannot be made durable stops, and says why
// ---------------------------------------------------------------------------

/// Only a build with failpoints can make the WAL fsync fail.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_wal_fsync_fails_exits_non_zero() {
    let mut c = TestCluster::start(1).await.expect("a 1-node cluster forms");
    let r = a_node_whose_wal_fsync_fails_exits_non_zero_body(&mut c).await;
    c.finish(r);
}

#[cfg(feature = "failpoints")]
async fn a_node_whose_wal_fsync_fails_exits_non_zero_body(c: &mut TestCluster) -> Result<()> {
    c.create_pools(1, "before-the-failure").await?;
    c.node_mut(1).stop(STOP_TIMEOUT).await?;
    // Restarted, the node leads again without a write; the next write's
    // fsync fails. openraft stops on a fatal storage error, and the process
    // must follow it out (for a supervisor to see and restart it) instead
    // of serving on with a dead consensus engine.
    c.node_mut(1).env = vec![("FAILPOINTS".into(), "log-fsync=return".into())];
    c.start_node(1).await?;
    let started = Instant::now();
    let write = tokio::time::timeout(Duration::from_secs(10), c.create_pools(1, "after-the-failure")).await;
    ensure!(
        !matches!(write, Ok(Ok(_))),
        "a write was acknowledged although its fsync failed"
    );
    let status = poll_until(
        "node 1 to exit after its WAL fsync failed",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || {
            let exited = c.node_mut(1).child.as_mut().map(|ch| ch.try_wait());
            async move {
                match exited {
                    Some(Ok(Some(status))) => Ok(Some(status)),
                    Some(Ok(None)) => Ok(None),
                    Some(Err(e)) => Err(anyhow!("waiting for node 1: {e}")),
                    None => Err(anyhow!("node 1 is not running")),
                }
            }
        },
    )
    .await?;
    c.node_mut(1).child = None;
    println!("node 1 exited ({status}) {:?} after the write", started.elapsed());
    ensure!(!status.success(), "node 1 exited with success after a failed fsync");
    let log = std::fs::read_to_string(&c.node(1).log_path)?;
    ensure!(
        log.contains("raft stopped on a fatal error") && log.contains("failpoint log-fsync"),
        "node 1 exited without naming the fatal error; log tail:\n{}",
        c.node(1).log_tail(60)
    );
    Ok(())
}
