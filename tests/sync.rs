//! Per-identity sync on a real three-node cluster, through the device
//! client library (`tessera::sync::client`) over QUIC (issue 11): push
//! across nodes, offline catch-up on another node, conflicts, a node killed
//! under a connected device, the file store across restarts, queued offline
//! writes, and credential refresh.
//!
//! Devices are guests of an identity pool (`common::sync_client_fixture`);
//! two devices of one identity are two clients with the same credentials
//! and different device ids. Their copies are compared with each other and
//! with the cluster's data read through the gRPC `ListRecords`. Each test body returns an error instead of
//! panicking, so that a failure prints the nodes' logs.
//!
//! Run with:
//! `cargo test --features failpoints --test sync -- --test-threads=1 --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::sync_client_fixture::*;
use common::sync_fixture::{node_signing_key, now_secs, resign_credentials};
use common::TestCluster;
use tessera::proto::{ListDatasetsRequest, ListRecordsRequest};
use tessera::sync::client::{
    Conflict, Credential, CredentialRefresh, Cursor, Event, LocalStore, Patch, Resolution, Resolver, Stats, SyncClient,
    WriteOutcome,
};

async fn three_nodes() -> TestCluster {
    let started = Instant::now();
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    println!("cluster formed in {:?}", started.elapsed());
    c
}

/// A test that runs `$body` on a fresh three-node cluster and reports its
/// time; on failure the nodes' logs are printed.
macro_rules! scenario {
    ($name:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let start = Instant::now();
            let mut c = three_nodes().await;
            let r = $body(&mut c).await;
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

const WAIT: Duration = Duration::from_secs(30);

fn ack_of(what: &str, o: WriteOutcome) -> Result<tessera::sync::client::Ack> {
    match o {
        WriteOutcome::Written(a) => Ok(a),
        other => bail!("{what}: expected written, got {other:?}"),
    }
}

/// A copy as comparable data: dataset -> (its sync count, key -> (value,
/// sync count, writer)).
type Copy = BTreeMap<String, (u64, BTreeMap<String, (Option<String>, u64, String)>)>;

fn copy_of(d: &SyncClient) -> Copy {
    d.datasets()
        .into_iter()
        .map(|ds| {
            let records = d
                .records(&ds.name)
                .into_iter()
                .map(|r| (r.key, (r.value, r.sync_count, r.last_modified_by)))
                .collect();
            (ds.name, (ds.sync_count, records))
        })
        .collect()
}

/// The identity's data as the cluster has it, read through node `via`'s
/// gRPC `ListDatasets` and `ListRecords` (consistent reads; removed records
/// included), with the admin token.
async fn server_copy(c: &TestCluster, via: u64, pool: &str, identity: &str) -> Result<Copy> {
    let client = c.client(via).await?;
    let mut names = Vec::new();
    let mut next = String::new();
    loop {
        let r = client
            .sync()
            .list_datasets(client.req(ListDatasetsRequest {
                identity_pool_id: pool.into(),
                identity_id: identity.into(),
                next_token: next.clone(),
                max_results: 0,
            }))
            .await
            .map_err(|s| anyhow!("ListDatasets: {s}"))?
            .into_inner();
        names.extend(r.datasets.into_iter().map(|d| d.dataset_name));
        if r.next_token.is_empty() {
            break;
        }
        next = r.next_token;
    }
    let mut out = Copy::new();
    for name in names {
        let mut records = BTreeMap::new();
        let mut sync_count;
        let mut next = String::new();
        loop {
            let r = client
                .sync()
                .list_records(client.req(ListRecordsRequest {
                    identity_pool_id: pool.into(),
                    identity_id: identity.into(),
                    dataset_name: name.clone(),
                    last_sync_count: 0,
                    next_token: next.clone(),
                    max_results: 0,
                    sync_session_token: String::new(),
                }))
                .await
                .map_err(|s| anyhow!("ListRecords {name}: {s}"))?
                .into_inner();
            sync_count = r.dataset_sync_count as u64;
            for x in r.records {
                records.insert(x.key, (x.value, x.sync_count as u64, x.last_modified_by));
            }
            if r.next_token.is_empty() {
                break;
            }
            next = r.next_token;
        }
        out.insert(name, (sync_count, records));
    }
    Ok(out)
}

/// Requires `d`'s copy to equal the cluster's, read through node `via`.
async fn equals_server(what: &str, d: &SyncClient, c: &TestCluster, via: u64, pool: &str) -> Result<()> {
    let identity = d.identity_id().ok_or_else(|| anyhow!("{what}: no identity"))?;
    let server = server_copy(c, via, pool, &identity).await?;
    let local = copy_of(d);
    ensure!(
        !server.is_empty() && local == server,
        "{what}: the copy differs from ListRecords through node {via}:\n local  {local:?}\n server {server:?}"
    );
    Ok(())
}

fn no_gaps(what: &str, s: Stats) -> Result<()> {
    ensure!(
        s.gaps == 0 && s.duplicates == 0,
        "{what}: {} gaps and {} duplicates counted ({s:?})",
        s.gaps,
        s.duplicates
    );
    Ok(())
}

/// Requires the changes among `events` to have consecutive seqs after
/// `from`, ending at `to`; returns how many there were.
fn consecutive(what: &str, events: &[Event], from: Cursor, to: Cursor) -> Result<u64> {
    let mut at = from;
    let mut n = 0;
    for e in events {
        if let Event::Change(c) = e {
            if c.reloading {
                bail!("{what}: a reload's change {:?}", c.cursor);
            }
            ensure!(
                c.cursor.epoch == at.epoch && c.cursor.seq == at.seq + 1,
                "{what}: change {:?} after {:?}",
                c.cursor,
                at
            );
            at = c.cursor;
            n += 1;
        }
    }
    ensure!(at == to, "{what}: the changes end at {at:?}, not {to:?}");
    Ok(n)
}

// ---------------------------------------------------------------------------
// 1. Push across nodes
// ---------------------------------------------------------------------------

async fn push_body(c: &mut TestCluster) -> Result<()> {
    let w = Devices::create(c, "push").await?;
    let g = w.guest(c, 1).await?;
    // Both devices share one UDP socket, as a load generator's would.
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let (a, _) = w
        .start(w.config(&g, "phone", &[1]).with_endpoint(endpoint.clone()))
        .await?;
    let (b, mut b_events) = w
        .start(w.config(&g, "tablet", &[2]).with_endpoint(endpoint.clone()))
        .await?;
    ensure!(a.status().node_id == Some(1), "phone on {:?}", a.status());
    ensure!(b.status().node_id == Some(2), "tablet on {:?}", b.status());
    drain(&mut b_events);

    let n = 50;
    let mut latencies = Vec::with_capacity(n);
    let mut early = 0;
    for i in 0..n {
        let key = format!("k{i}");
        let out = a.put("prefs", &key, &format!("v{i}")).await.context("put")?;
        let acked = Instant::now();
        let ack = ack_of("put", out)?;
        let ch = next_change(&mut b_events, Duration::from_secs(5), |ch| ch.cursor == ack.cursor)
            .await
            .with_context(|| format!("write {i} ({:?}) reaching the tablet", ack.cursor))?;
        ensure!(
            ch.records
                .iter()
                .any(|r| r.key == key && r.value.as_deref() == Some(&format!("v{i}"))),
            "the pushed change is not the write: {ch:?}"
        );
        ensure!(ch.device_id == "phone", "written by {:?}", ch.device_id);
        match ch.received.checked_duration_since(acked) {
            Some(d) => latencies.push(d),
            None => {
                // Pushed before the writer even had its answer.
                early += 1;
                latencies.push(Duration::ZERO);
            }
        }
    }
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "push latency (write acknowledged on node 1 -> change on node 2's device), {n} writes: \
         p50 {:?}, p90 {:?}, p99 {:?}, max {:?}; {early} arrived before the writer's ack",
        p(0.5),
        p(0.9),
        p(0.99),
        latencies[latencies.len() - 1]
    );
    // One session, never resubscribed: every change came by push.
    let s = b.stats();
    ensure!(s.sessions == 1 && s.reconnects == 0, "the tablet reconnected: {s:?}");
    no_gaps("tablet", s)?;
    // The phone's own copy learns of its last write by push too, which may
    // land just after the tablet's.
    let end = b.cursor().ok_or_else(|| anyhow!("the tablet has no cursor"))?;
    a.wait_until(end, WAIT).await?;
    ensure!(b.cursor() == a.cursor(), "cursors {:?} / {:?}", b.cursor(), a.cursor());
    ensure!(copy_of(&a) == copy_of(&b), "the two copies differ");
    equals_server("the tablet", &b, c, 3, &w.pool_id).await?;
    ensure!(b.values("prefs").len() == n, "{} records", b.values("prefs").len());
    a.shutdown().await?;
    b.shutdown().await?;
    Ok(())
}

scenario!(push_across_nodes, push_body);

// ---------------------------------------------------------------------------
// 2. Offline catch-up, on another node, from a file store
// ---------------------------------------------------------------------------

async fn catch_up_body(c: &mut TestCluster) -> Result<()> {
    let w = Devices::create(c, "catchup").await?;
    let g = w.guest(c, 2).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("tablet.copy");
    let (a, _) = w.device(&g, "phone", &[1], LocalStore::Memory).await?;
    let (b, _) = w.device(&g, "tablet", &[2], LocalStore::File(file.clone())).await?;
    let mut last = None;
    for i in 0..10 {
        last = a
            .put("settings", &format!("s{i}"), "initial")
            .await?
            .ack()
            .map(|k| k.cursor);
    }
    // The cursor of the last write's acknowledgement: the phone's own copy
    // may not have seen that change pushed back yet when `put` returns.
    let before = last.ok_or_else(|| anyhow!("the last initial write was not acknowledged"))?;
    a.wait_until(before, WAIT).await?;
    b.wait_until(before, WAIT).await?;
    b.shutdown().await?;

    // 500 writes while the tablet is away: three datasets, replaces and
    // removes, pipelined through the phone's queue.
    let started = Instant::now();
    for i in 0..500u32 {
        let ds = ["settings", "notes", "scores"][(i % 3) as usize];
        let earlier = format!("k{}", (i + 94) % 97);
        let patch = if i % 10 == 9 && a.get(ds, &earlier).is_some() {
            Patch::remove(earlier)
        } else {
            Patch::replace(format!("k{}", i % 97), format!("v{i}"))
        };
        a.enqueue(ds, vec![patch]).await?;
    }
    a.wait_idle(Duration::from_secs(120)).await?;
    let s = a.stats();
    ensure!(s.writes_acked == 510, "the phone's acknowledged writes: {s:?}");
    let target = Cursor {
        epoch: before.epoch,
        seq: before.seq + 500,
    };
    a.wait_until(target, WAIT).await?;
    println!("500 offline writes in {:?}", started.elapsed());

    // Back, on node 3 only, from its file.
    let (b, mut events) =
        SyncClient::start_with_events(w.config(&g, "tablet", &[3]).with_store(LocalStore::File(file.clone()))).await?;
    ensure!(
        b.cursor() == Some(before),
        "the file resumes at {:?}, not {before:?}",
        b.cursor()
    );
    let resumed = Instant::now();
    b.wait_until(target, WAIT).await?;
    println!("caught up 500 changes in {:?}", resumed.elapsed());
    b.wait_caught_up(WAIT).await?;
    let seen = drain(&mut events);
    ensure!(
        seen.iter().any(|e| matches!(e, Event::Connected { node_id: 3, .. })),
        "the tablet did not connect to node 3: {seen:?}"
    );
    ensure!(
        !seen.iter().any(|e| matches!(e, Event::Reloaded { .. })),
        "the tablet reloaded instead of resuming from its cursor"
    );
    let n = consecutive("catch-up", &seen, before, target)?;
    ensure!(n == 500, "{n} changes arrived");
    let s = b.stats();
    no_gaps("tablet", s)?;
    ensure!(s.reloads == 0 && s.changes == 500, "{s:?}");
    ensure!(b.cursor() == a.cursor(), "cursors {:?} / {:?}", b.cursor(), a.cursor());
    ensure!(copy_of(&a) == copy_of(&b), "the tablet's copy differs from the phone's");
    equals_server("the tablet", &b, c, 1, &w.pool_id).await?;
    a.shutdown().await?;
    b.shutdown().await?;
    Ok(())
}

scenario!(offline_catch_up_on_another_node, catch_up_body);

// ---------------------------------------------------------------------------
// 3. Conflicts
// ---------------------------------------------------------------------------

/// What a recording resolver was given.
type Seen = Arc<Mutex<Vec<Conflict>>>;

/// A resolver that records what it is given and keeps the server's value.
fn recording() -> (Seen, Arc<dyn Resolver>) {
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let resolver = move |c: &Conflict| {
        log.lock().unwrap().push(c.clone());
        Resolution::KeepRemote
    };
    (seen, Arc::new(resolver))
}

/// Polls `cond` every 10 ms until it holds, at most `timeout`.
async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !cond() {
        ensure!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Both devices edit `key` offline on the same sync count, then come back
/// at once; returns both outcomes.
async fn race(a: &SyncClient, b: &SyncClient, ds: &str, key: &str) -> Result<(WriteOutcome, WriteOutcome)> {
    a.set_online(false);
    b.set_online(false);
    a.wait_status("phone offline", WAIT, |s| s.node_id.is_none()).await?;
    b.wait_status("tablet offline", WAIT, |s| s.node_id.is_none()).await?;
    let (ra, rb, _) = tokio::join!(a.put(ds, key, "from-phone"), b.put(ds, key, "from-tablet"), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.set_online(true);
        b.set_online(true);
    });
    Ok((ra?, rb?))
}

async fn conflicts_body(c: &mut TestCluster) -> Result<()> {
    let w = Devices::create(c, "conflicts").await?;

    // (a) The raw conflict, surfaced to the application's resolver, which
    // keeps the server's value.
    let g = w.guest(c, 1).await?;
    let (ra, resolver_a) = recording();
    let (rb, resolver_b) = recording();
    let (a, mut a_events) = w.start(w.config(&g, "phone", &[1]).with_resolver(resolver_a)).await?;
    let (b, mut b_events) = w.start(w.config(&g, "tablet", &[2]).with_resolver(resolver_b)).await?;
    let first = ack_of("first put", a.put("doc", "title", "v0").await?)?;
    b.wait_until(first.cursor, WAIT).await?;
    let base = first.records[0].sync_count;
    drain(&mut a_events);
    drain(&mut b_events);

    let (oa, ob) = race(&a, &b, "doc", "title").await?;
    let (winner, loser, loser_seen, winner_value, loser_value) = match (&oa, &ob) {
        (WriteOutcome::Written(_), WriteOutcome::Discarded { .. }) => (&oa, &ob, &rb, "from-phone", "from-tablet"),
        (WriteOutcome::Discarded { .. }, WriteOutcome::Written(_)) => (&ob, &oa, &ra, "from-tablet", "from-phone"),
        _ => bail!("not exactly one winner: phone {oa:?}, tablet {ob:?}"),
    };
    let won = winner.ack().ok_or_else(|| anyhow!("no ack"))?;
    ensure!(
        won.records[0].sync_count == base + 1,
        "the winner wrote {:?}",
        won.records
    );
    let seen = loser_seen.lock().unwrap().clone();
    ensure!(seen.len() == 1, "the loser's resolver saw {} conflicts", seen.len());
    let conflict = &seen[0];
    ensure!(
        conflict.dataset == "doc" && conflict.local == vec![Patch::replace("title", loser_value)],
        "the conflict's local side: {conflict:?}"
    );
    let remote = conflict
        .remote("title")
        .ok_or_else(|| anyhow!("no remote title: {conflict:?}"))?;
    ensure!(
        remote.value.as_deref() == Some(winner_value) && remote.sync_count == base + 1,
        "the conflict's current value: {remote:?}"
    );
    ensure!(
        matches!(loser, WriteOutcome::Discarded { remote, .. } if remote[0].value.as_deref() == Some(winner_value)),
        "the loser's outcome: {loser:?}"
    );
    let winner_seen = if Arc::ptr_eq(loser_seen, &ra) { &rb } else { &ra };
    ensure!(winner_seen.lock().unwrap().is_empty(), "the winner saw a conflict");
    let end = won.cursor;
    a.wait_until(end, WAIT).await?;
    b.wait_until(end, WAIT).await?;
    for d in [&a, &b] {
        ensure!(
            d.get("doc", "title").as_deref() == Some(winner_value),
            "a device shows {:?}",
            d.get("doc", "title")
        );
        ensure!(d.cursor() == Some(end), "one change only: {:?} / {end:?}", d.cursor());
    }
    let events: Vec<Event> = drain(&mut a_events).into_iter().chain(drain(&mut b_events)).collect();
    let conflicts: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Conflict { conflict, resolution } => Some((conflict.clone(), resolution.clone())),
            _ => None,
        })
        .collect();
    ensure!(
        conflicts.len() == 1 && conflicts[0].1 == Resolution::KeepRemote,
        "the application was told of {conflicts:?}"
    );
    a.shutdown().await?;
    b.shutdown().await?;

    // (b) Last writer wins by default: the loser writes again over the
    // server's sync count, and both copies converge on its value.
    let g = w.guest(c, 2).await?;
    let (a, mut a_events) = w.device(&g, "phone", &[2], LocalStore::Memory).await?;
    let (b, mut b_events) = w.device(&g, "tablet", &[3], LocalStore::Memory).await?;
    let first = ack_of("first put", a.put("doc", "title", "v0").await?)?;
    b.wait_until(first.cursor, WAIT).await?;
    let base = first.records[0].sync_count;
    drain(&mut a_events);
    drain(&mut b_events);
    let (oa, ob) = race(&a, &b, "doc", "title").await?;
    let (aa, ab) = (ack_of("phone", oa)?, ack_of("tablet", ob)?);
    let events: Vec<(&str, Event)> = drain(&mut a_events)
        .into_iter()
        .map(|e| ("from-phone", e))
        .chain(drain(&mut b_events).into_iter().map(|e| ("from-tablet", e)))
        .collect();
    let resolved: Vec<_> = events
        .iter()
        .filter_map(|(who, e)| match e {
            Event::Conflict { conflict, resolution } => Some((*who, conflict.clone(), resolution.clone())),
            _ => None,
        })
        .collect();
    ensure!(resolved.len() == 1, "conflicts: {resolved:?}");
    let (last_writer, conflict, resolution) = &resolved[0];
    ensure!(
        *resolution == Resolution::KeepLocal,
        "default resolution {resolution:?}"
    );
    ensure!(
        conflict
            .remote("title")
            .is_some_and(|r| r.sync_count == base + 1 && r.value.as_deref() != Some(last_writer)),
        "the conflict shows the other device's write: {conflict:?}"
    );
    let end = aa.cursor.max(ab.cursor);
    ensure!(
        end.seq == first.cursor.seq + 2,
        "two writes landed: {end:?} after {:?}",
        first.cursor
    );
    a.wait_until(end, WAIT).await?;
    b.wait_until(end, WAIT).await?;
    for d in [&a, &b] {
        let r = d.record("doc", "title").ok_or_else(|| anyhow!("no title"))?;
        ensure!(
            r.value.as_deref() == Some(last_writer) && r.sync_count == base + 2,
            "not converged on the last writer {last_writer}: {r:?}"
        );
    }
    ensure!(copy_of(&a) == copy_of(&b), "the copies differ");
    no_gaps("phone", a.stats())?;
    no_gaps("tablet", b.stats())?;
    a.shutdown().await?;
    b.shutdown().await?;
    Ok(())
}

scenario!(conflicts_one_wins_and_last_writer_wins, conflicts_body);

// ---------------------------------------------------------------------------
// 4. Node failure
// ---------------------------------------------------------------------------

async fn node_failure_body(c: &mut TestCluster) -> Result<()> {
    let w = Devices::create(c, "failure").await?;
    let g = w.guest(c, 1).await?;
    // The tablet sits on the leader (the harder case: the writes stall
    // for an election too), with the other nodes to fall back to.
    let (leader, _) = c.wait_for_leader(None, WAIT).await?;
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != leader).collect();
    let (b, mut b_events) = w
        .start(
            w.config(&g, "tablet", &[leader, others[0], others[1]])
                .with_timing(failover_timing()),
        )
        .await?;
    ensure!(b.status().node_id == Some(leader), "the tablet is on {:?}", b.status());
    drain(&mut b_events);
    let (a, _) = w
        .device(&g, "phone", &[others[0], others[1]], LocalStore::Memory)
        .await?;

    let a = Arc::new(a);
    let writer = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut acked: Vec<(String, String, Cursor)> = Vec::new();
            let mut refused = 0;
            for i in 0..300 {
                let (key, value) = (format!("k{i}"), format!("v{i}"));
                match a.put("log", &key, &value).await {
                    Ok(WriteOutcome::Written(ack)) => acked.push((key, value, ack.cursor)),
                    Ok(other) => return Err(anyhow!("write {i}: {other:?}")),
                    // Refused while the cluster has no leader: not
                    // acknowledged, so not owed.
                    Err(e) => {
                        refused += 1;
                        println!("write {i} refused: {e}");
                    }
                }
            }
            anyhow::Ok((acked, refused))
        })
    };
    let kill_after = Instant::now();
    while a.stats().writes_acked < 60 {
        ensure!(kill_after.elapsed() < WAIT, "the writer is stuck: {:?}", a.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.node_mut(leader).kill9();
    let killed = Instant::now();
    println!(
        "killed node {leader} (the tablet's) after {} writes",
        a.stats().writes_acked
    );
    let moved = b
        .wait_status("the tablet on another node", WAIT, |s| {
            s.caught_up && s.node_id.is_some_and(|n| n != leader)
        })
        .await?;
    println!(
        "the tablet resumed on node {:?} {:?} after the kill",
        moved.node_id,
        killed.elapsed()
    );

    let (acked, refused) = writer.await??;
    let last = acked
        .last()
        .map(|x| x.2)
        .ok_or_else(|| anyhow!("nothing acknowledged"))?;
    b.wait_until(last, WAIT).await?;
    a.wait_until(last, WAIT).await?;
    let values = b.values("log");
    let missing: Vec<&str> = acked
        .iter()
        .filter(|(k, v, _)| values.get(k) != Some(v))
        .map(|(k, _, _)| k.as_str())
        .collect();
    ensure!(
        missing.is_empty(),
        "acknowledged writes missing on the tablet: {missing:?}"
    );
    let s = b.stats();
    println!(
        "{} writes acknowledged, {refused} refused; tablet {s:?}; phone {:?}",
        acked.len(),
        a.stats()
    );
    no_gaps("tablet", s)?;
    ensure!(
        s.reconnects >= 1 && s.reloads == 1,
        "only the first start reloads: {s:?}"
    );
    let events = drain(&mut b_events);
    ensure!(
        events.iter().any(|e| matches!(e, Event::Disconnected { .. })),
        "the tablet never saw its node go"
    );
    ensure!(
        !events.iter().any(|e| matches!(e, Event::Reloaded { .. })),
        "the tablet reloaded instead of resuming"
    );
    ensure!(b.cursor() == a.cursor(), "cursors {:?} / {:?}", b.cursor(), a.cursor());
    ensure!(copy_of(&a) == copy_of(&b), "the copies differ");
    equals_server("the tablet", &b, c, others[1], &w.pool_id).await?;
    b.shutdown().await?;
    Arc::try_unwrap(a)
        .map_err(|_| anyhow!("the writer still holds the phone"))?
        .shutdown()
        .await?;
    Ok(())
}

scenario!(node_failure_reconnects_without_loss, node_failure_body);

/// A node stopped gracefully says Goodbye (SHUTTING_DOWN): its devices move
/// to another node at once, without waiting for an idle timeout.
async fn graceful_stop_body(c: &mut TestCluster) -> Result<()> {
    let w = Devices::create(c, "stopping").await?;
    let g = w.guest(c, 1).await?;
    let node = c.follower().await?;
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != node).collect();
    let (b, mut b_events) = w
        .device(&g, "tablet", &[node, others[0], others[1]], LocalStore::Memory)
        .await?;
    let (a, _) = w.device(&g, "phone", &others, LocalStore::Memory).await?;
    let before = ack_of("before", a.put("log", "before", "1").await?)?;
    b.wait_until(before.cursor, WAIT).await?;
    drain(&mut b_events);
    let stop = c.node_mut(node).stop(Duration::from_secs(15)).await?;
    ensure!(stop.graceful, "node {node} did not stop gracefully: {:?}", stop.status);
    let moved = b
        .wait_status("the tablet on another node", Duration::from_secs(5), |s| {
            s.caught_up && s.node_id.is_some_and(|n| n != node)
        })
        .await?;
    let events = drain(&mut b_events);
    let goodbye = events.iter().find_map(|e| match e {
        Event::Disconnected { code, reason } => Some((*code, reason.clone())),
        _ => None,
    });
    ensure!(
        matches!(goodbye, Some((Some(tessera::sync::client::CloseCode::ShuttingDown), _))),
        "the tablet was told {goodbye:?}"
    );
    let after = ack_of("after", a.put("log", "after", "2").await?)?;
    b.wait_until(after.cursor, WAIT).await?;
    ensure!(
        b.get("log", "after").as_deref() == Some("2"),
        "the write after the stop"
    );
    let s = b.stats();
    no_gaps("tablet", s)?;
    ensure!(s.reloads == 1 && s.reconnects == 1, "{s:?}");
    println!(
        "the tablet moved from node {node} to {:?} after a graceful stop",
        moved.node_id
    );
    a.shutdown().await?;
    b.shutdown().await?;
    Ok(())
}

scenario!(graceful_stop_moves_devices_at_once, graceful_stop_body);

// ---------------------------------------------------------------------------
// 5. Offline writes, the file store, credential refresh
// ---------------------------------------------------------------------------

/// A refresh hook that hands out the good credential and counts calls.
struct Refresh {
    good: String,
    calls: AtomicUsize,
}

impl CredentialRefresh for Refresh {
    fn refresh(&self, _reason: &str) -> futures::future::BoxFuture<'static, Result<Credential, String>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let good = self.good.clone();
        Box::pin(async move { Ok(Credential::Credentials(good)) })
    }
}

async fn offline_writes_body(c: &mut TestCluster) -> Result<()> {
    let w = Devices::create(c, "offline").await?;
    let g = w.guest(c, 3).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("phone.copy");
    let (watcher, _) = w.device(&g, "watcher", &[1], LocalStore::Memory).await?;

    // Offline writes, queued in memory, go out when the device is back.
    let (a, _) = w.device(&g, "phone", &[2], LocalStore::File(file.clone())).await?;
    a.set_online(false);
    a.wait_status("offline", WAIT, |s| s.node_id.is_none()).await?;
    for i in 0..5 {
        a.enqueue("queue", vec![Patch::replace(format!("m{i}"), format!("offline {i}"))])
            .await?;
    }
    a.enqueue("queue", vec![Patch::replace("m0", "edited offline")]).await?;
    ensure!(a.pending() == 6, "{} queued", a.pending());
    ensure!(
        a.get("queue", "m0").as_deref() == Some("edited offline"),
        "reads show queued edits"
    );
    ensure!(a.record("queue", "m0").is_none(), "but the confirmed copy does not");
    a.set_online(true);
    a.wait_idle(WAIT).await?;
    eventually("the queued writes on the watcher", WAIT, || {
        watcher.values("queue").len() == 5 && watcher.get("queue", "m0").as_deref() == Some("edited offline")
    })
    .await
    .with_context(|| format!("{:?}", watcher.values("queue")))?;
    no_gaps("phone", a.stats())?;

    // Queued writes survive a restart in the file, and the copy resumes
    // from its cursor without a reload.
    a.set_online(false);
    a.wait_status("offline", WAIT, |s| s.node_id.is_none()).await?;
    a.enqueue(
        "queue",
        vec![Patch::remove("m1"), Patch::replace("m9", "after restart")],
    )
    .await?;
    let cursor = a.cursor();
    a.shutdown().await?;
    let (a, mut events) =
        SyncClient::start_with_events(w.config(&g, "phone", &[3]).with_store(LocalStore::File(file.clone()))).await?;
    ensure!(
        a.pending() == 1 && a.cursor() == cursor,
        "after restart: {} queued at {:?}",
        a.pending(),
        a.cursor()
    );
    a.wait_idle(WAIT).await?;
    eventually("the queued write from the file on the watcher", WAIT, || {
        watcher.get("queue", "m9").as_deref() == Some("after restart") && watcher.get("queue", "m1").is_none()
    })
    .await?;
    let end = watcher.cursor().ok_or_else(|| anyhow!("no cursor"))?;
    a.wait_until(end, WAIT).await?;
    let seen = drain(&mut events);
    ensure!(
        !seen.iter().any(|e| matches!(e, Event::Reloaded { .. })),
        "the restarted device reloaded"
    );
    ensure!(a.stats().reloads == 0, "{:?}", a.stats());
    ensure!(copy_of(&a) == copy_of(&watcher), "the copies differ");
    a.shutdown().await?;

    // A refused credential is refreshed through the hook.
    let refresh = Arc::new(Refresh {
        good: g.token.clone(),
        calls: AtomicUsize::new(0),
    });
    let mut cfg = w.config(&g, "refreshed", &[1]);
    cfg.credential = Credential::Credentials("not-a-credential".into());
    let (d, mut events) = w.start(cfg.with_refresh(refresh.clone())).await?;
    ensure!(refresh.calls.load(Ordering::SeqCst) >= 1, "the hook was never called");
    let seen = drain(&mut events);
    ensure!(
        seen.iter().any(|e| matches!(
            e,
            Event::Disconnected {
                code: Some(tessera::sync::client::CloseCode::Unauthenticated),
                ..
            }
        )),
        "no UNAUTHENTICATED close before the refresh: {seen:?}"
    );
    ensure!(
        d.identity_id().as_deref() == Some(g.identity_id.as_str()),
        "{:?}",
        d.identity_id()
    );
    eventually("the refreshed device's copy", WAIT, || d.cursor() == watcher.cursor()).await?;
    ensure!(copy_of(&d) == copy_of(&watcher), "the refreshed device's copy differs");
    d.shutdown().await?;

    // A credential that expires mid-session: the node closes the session
    // with CREDENTIALS_EXPIRED, the hook gives a new credential, and the
    // device resumes from its cursor.
    let key = node_signing_key(c.node(1))?;
    let now = now_secs();
    let short = resign_credentials(&g.token, &key, now - 1, now + 4)?;
    let refresh = Arc::new(Refresh {
        good: g.token.clone(),
        calls: AtomicUsize::new(0),
    });
    let mut cfg = w.config(&g, "expiring", &[1]);
    cfg.credential = Credential::Credentials(short);
    let (d, mut events) = w.start(cfg.with_refresh(refresh.clone())).await?;
    let reloads = d.stats().reloads;
    let expired = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.recv().await {
                Ok(Event::Disconnected {
                    code: Some(code),
                    reason,
                }) => return Ok((code, reason)),
                Ok(_) => {}
                Err(e) => return Err(anyhow!("{e}")),
            }
        }
    })
    .await
    .map_err(|_| anyhow!("the session outlived its credential"))??;
    ensure!(
        expired.0 == tessera::sync::client::CloseCode::CredentialsExpired,
        "closed with {expired:?}"
    );
    d.wait_caught_up(WAIT).await?;
    ensure!(
        refresh.calls.load(Ordering::SeqCst) == 1,
        "refreshed {} times",
        refresh.calls.load(Ordering::SeqCst)
    );
    let after = watcher.put("queue", "late", "after the refresh").await?;
    d.wait_until(ack_of("late", after)?.cursor, WAIT).await?;
    let s = d.stats();
    ensure!(s.reloads == reloads && s.sessions == 2, "resumed, not reloaded: {s:?}");
    no_gaps("expiring", s)?;
    d.shutdown().await?;
    watcher.shutdown().await?;
    Ok(())
}

scenario!(offline_writes_file_store_and_refresh, offline_writes_body);
