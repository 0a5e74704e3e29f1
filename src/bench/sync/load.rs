//! The three scenarios of `bench sync`: connecting the devices, the
//! `push` write load and its latency accounting, the `idle` memory
//! reading, and the `reconnect` storm. Every time here is read from one
//! monotonic clock ([`crate::clock::instant`]) in this process, so a
//! push's arrival on one device and its acknowledgement on another are
//! comparable to the microsecond.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use futures::StreamExt as _;
use tokio::sync::watch;

use super::device::{kind, next_frame, send_bytes, udp_drops, write_frame, CatchUp, Connector, SeqCheck, Session};
use super::report::{
    Check, ConnectReport, IdleReport, NodeReport, PushReport, ReconnectReport, SyncBenchReport, UdpReport,
};
use super::setup::{self, Created, Guest};
use super::{DevicePlan, Plan, ReconnectTo, SplitMix, SyncScenario, IDLE_KIB_FLOOR, PUSH_P99_FLOOR, RECONNECT_FLOOR};
use crate::bench::driver::Failure;
use crate::bench::group_thousands;
use crate::bench::identity::ClusterShape;
use crate::bench::stats::{Percentiles, TaskStats};
use crate::client::Client;
use crate::clock::instant;
use crate::proto::server_frame::Msg as Down;
use crate::proto::sync_write_result::Result as WriteOutcome;
use crate::proto::SyncCursor;

/// How long after the measured window the pushes of its writes may still
/// arrive before they count as missing.
pub const DRAIN: Duration = Duration::from_secs(5);
/// The dataset every bench write goes to.
pub const DATASET: &str = "bench";
/// Device frames the reconnect storm's sessions may take to say Hello and
/// catch up before the run calls the storm stuck.
const STORM_LIMIT: Duration = Duration::from_secs(60);

/// Setup, then the scenario of `plan`.
pub(super) async fn run(
    plan: &Plan,
    admin: &Client,
    run_id: &str,
    created: &mut Created,
    cluster: Option<ClusterShape>,
) -> anyhow::Result<SyncBenchReport> {
    let started = instant();
    let nodes = setup::discover(&plan.endpoints).await?;
    let pool = setup::create_pool(admin, run_id, created).await?;
    let (sizes, devices) = plan.layout();
    let guests = setup::guests(admin, &pool.identity_pool_id, sizes.len()).await?;
    let connector = Arc::new(Connector::new(&nodes, plan.sockets)?);
    let setup_secs = (instant() - started).as_secs_f64();
    // The nodes' sockets are this machine's only on a loopback cluster.
    let node_ports: Vec<u16> = nodes
        .iter()
        .filter(|n| n.sync_addr.ip().is_loopback())
        .map(|n| n.sync_addr.port())
        .collect();
    let node_drops_before = udp_drops(&node_ports);

    let node_reports = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| NodeReport {
            node_id: n.node_id,
            api: n.api.clone(),
            sync_addr: n.sync_addr.to_string(),
            devices: devices.iter().filter(|d| d.node == i).count(),
        })
        .collect();
    let world = World {
        connector,
        pool_id: pool.identity_pool_id.clone(),
        guests,
        device_ids: devices.iter().map(|d| format!("bench-{run_id}-d{}", d.index)).collect(),
        devices,
        sizes,
    };
    let mut report = SyncBenchReport {
        scenario: plan.scenario,
        endpoints: plan.endpoints.clone(),
        nodes: node_reports,
        cluster,
        identity_pool_id: pool.identity_pool_id,
        role_arn: pool.role_arn,
        devices: world.devices.len(),
        identities: world.sizes.len(),
        devices_per_identity: [plan.per_identity.0, plan.per_identity.1],
        seed: plan.seed,
        sockets: plan.sockets,
        setup_secs,
        connect: ConnectReport::default(),
        push: None,
        idle: None,
        reconnect: None,
        checks: Vec::new(),
        udp: UdpReport::default(),
        cleaned_up: false,
    };
    match plan.scenario {
        SyncScenario::Push => push(plan, &world, &mut report).await?,
        SyncScenario::Idle => idle(plan, &world, &mut report).await?,
        SyncScenario::Reconnect => reconnect(plan, &world, run_id, &mut report).await?,
    }
    report.udp = UdpReport {
        bench_sockets: world.connector.ports().len(),
        bench_recv_buffer_bytes: world.connector.recv_buffer(),
        bench_drops: udp_drops(world.connector.ports()),
        node_drops: if node_ports.is_empty() {
            None
        } else {
            udp_drops(&node_ports)
                .zip(node_drops_before)
                .map(|(after, before)| after.saturating_sub(before))
        },
    };
    world.connector.wait_idle(Duration::from_secs(3)).await;
    Ok(report)
}

/// Everything the devices of a run are made from.
struct World {
    connector: Arc<Connector>,
    pool_id: String,
    guests: Vec<Guest>,
    devices: Vec<DevicePlan>,
    device_ids: Vec<String>,
    sizes: Vec<usize>,
}

impl World {
    /// The devices of each identity, by index.
    fn members(&self) -> Vec<Vec<usize>> {
        let mut m = vec![Vec::new(); self.sizes.len()];
        for d in &self.devices {
            m[d.identity].push(d.index);
        }
        m
    }

    /// Connects device `index` to node `node` (Hello).
    async fn open(&self, index: usize, node: usize) -> Result<Session, Failure> {
        let d = &self.devices[index];
        let token = &self.guests[d.identity].token;
        self.connector
            .open(node, &self.pool_id, token, &self.device_ids[index])
            .await
    }
}

/// A device connected and caught up.
struct Connected {
    session: Session,
    catch_up: CatchUp,
}

/// Connects every device to its node, `concurrency` at a time, each with
/// a Hello and a Subscribe without a cursor, until its `SyncCaughtUp`. A
/// Hello refused as UNAUTHENTICATED is tried again a few times: a node
/// may not have applied the newest guests yet when the first devices
/// arrive.
async fn connect_all(
    world: &World,
    concurrency: usize,
    report: &mut ConnectReport,
) -> anyhow::Result<Vec<Option<Connected>>> {
    let n = world.devices.len();
    eprintln!(
        "devices: connecting {} over {} node{}, {} at a time",
        group_thousands(n as u64),
        world.connector.nodes(),
        if world.connector.nodes() == 1 { "" } else { "s" },
        concurrency
    );
    let start = instant();
    let mut stats = TaskStats::new()?;
    let mut out: Vec<Option<Connected>> = (0..n).map(|_| None).collect();
    let mut results = futures::stream::iter(0..n)
        .map(|i| async move {
            let t0 = instant();
            let mut tries = 0;
            loop {
                tries += 1;
                let r = async {
                    let mut s = world.open(i, world.devices[i].node).await?;
                    let expected = &world.guests[world.devices[i].identity].identity_id;
                    if &s.welcome.identity_id != expected {
                        return Err(Failure::new(
                            "WrongIdentity",
                            format!(
                                "welcomed as {}, the credentials are {expected}'s",
                                s.welcome.identity_id
                            ),
                        ));
                    }
                    let c = s.subscribe(None).await?;
                    Ok::<_, Failure>(Connected {
                        session: s,
                        catch_up: c,
                    })
                }
                .await;
                match r {
                    Err(f) if f.code == "ClosedUNAUTHENTICATED" && tries < 5 => {
                        tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                    }
                    r => return (i, instant() - t0, r),
                }
            }
        })
        .buffer_unordered(concurrency.max(1));
    let mut reloads = 0;
    while let Some((i, took, r)) = results.next().await {
        match r {
            Ok(c) => {
                stats.record_ok(took);
                reloads += u64::from(c.catch_up.reloaded);
                out[i] = Some(c);
            }
            Err(f) => stats.record_error(&f.code, &f.message),
        }
    }
    *report = ConnectReport {
        devices: n,
        connected: stats.ok,
        concurrency,
        secs: (instant() - start).as_secs_f64(),
        latency_us: stats.latency_summary(),
        reloads,
        errors: stats.errors.clone(),
        error_samples: stats.error_samples.clone(),
    };
    eprintln!(
        "devices: {} of {} caught up in {:.1} s",
        group_thousands(stats.ok),
        group_thousands(n as u64),
        report.secs
    );
    Ok(out)
}

/// Every device's session, or an error naming what failed.
fn all_connected(out: Vec<Option<Connected>>, report: &ConnectReport) -> anyhow::Result<Vec<Connected>> {
    if out.iter().any(Option::is_none) {
        let sample = report
            .error_samples
            .iter()
            .next()
            .map(|(c, m)| format!("{c}: {m}"))
            .unwrap_or_default();
        bail!(
            "{} of {} devices could not connect and catch up ({sample})",
            report.devices as u64 - report.connected,
            report.devices
        );
    }
    Ok(out.into_iter().flatten().collect())
}

/// A value of `len` bytes that names the write.
fn value(k: u64, len: usize) -> String {
    let mut v = format!("w{k}:");
    while v.len() < len {
        v.push('x');
    }
    v.truncate(len);
    v
}

// ---------------------------------------------------------------------
// push
// ---------------------------------------------------------------------

/// What a device's reader and the write scheduler share.
struct DeviceState {
    /// A write of this device is waiting for its result; the scheduler
    /// sends no other (it would carry a stale sync count and conflict).
    in_flight: AtomicBool,
    /// The sync count of the device's own record, as its last result said.
    sync_count: AtomicI64,
}

/// Run-wide counts the drain waits on.
#[derive(Default)]
struct Counters {
    /// Pushes owed: for every acknowledged write, the writer's other
    /// devices.
    owed: AtomicU64,
    /// Changes that reached a device other than their writer.
    arrived: AtomicU64,
    /// Writes sent and not answered.
    pending: AtomicU64,
}

/// A write's result as the writer's reader saw it.
struct Ack {
    request_id: u64,
    at: Instant,
    outcome: Result<u64, (String, String)>,
}

/// What one device's reader recorded.
#[derive(Default)]
struct DeviceLog {
    /// Every live change: its seq and when it was decoded.
    arrivals: Vec<(u64, Instant)>,
    /// The results of this device's writes.
    acks: Vec<Ack>,
    gaps: u64,
    dups: u64,
    resyncs: u64,
    reloads: u64,
    /// Why the session ended before the run did.
    lost: Option<Failure>,
}

/// A device's reader during `push`: stamps every frame as it is decoded,
/// checks the sequence, and hands write results to the scheduler through
/// `state`.
#[allow(clippy::too_many_arguments, reason = "one task's whole context, passed once")]
async fn reader(
    mut recv: quinn::RecvStream,
    max_frame: u32,
    own_id: String,
    others: u64,
    mut check: SeqCheck,
    state: Arc<DeviceState>,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> DeviceLog {
    let mut log = DeviceLog::default();
    let mut reloading = false;
    loop {
        let m = tokio::select! {
            biased;
            r = next_frame(&mut recv, max_frame) => r,
            _ = stop.changed() => break,
        };
        let at = instant();
        match m {
            Ok(Down::Change(c)) => {
                let seq = c.cursor.map_or(0, |c| c.seq);
                if !reloading {
                    check.see(seq);
                }
                log.arrivals.push((seq, at));
                if c.device_id != own_id {
                    counters.arrived.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Down::WriteResult(r)) => {
                let outcome = match r.result {
                    Some(WriteOutcome::Ok(ok)) => {
                        let mine = ok
                            .records
                            .iter()
                            .find(|rec| rec.key == own_id)
                            .map(|rec| rec.sync_count);
                        state
                            .sync_count
                            .store(mine.unwrap_or(ok.dataset_sync_count), Ordering::Relaxed);
                        counters.owed.fetch_add(others, Ordering::Relaxed);
                        Ok(ok.cursor.map_or(0, |c| c.seq))
                    }
                    Some(WriteOutcome::Conflict(c)) => {
                        // Take the stored count, so the next write applies.
                        if let Some(rec) = c.records.iter().find(|rec| rec.key == own_id) {
                            state.sync_count.store(rec.sync_count, Ordering::Relaxed);
                        }
                        Err((
                            "ResourceConflictException".into(),
                            "a conflict on the device's own record".into(),
                        ))
                    }
                    Some(WriteOutcome::Error(e)) => Err((e.exception, e.message)),
                    None => Err(("NoResult".into(), "a SyncWriteResult without a result".into())),
                };
                log.acks.push(Ack {
                    request_id: r.request_id,
                    at,
                    outcome,
                });
                counters.pending.fetch_sub(1, Ordering::Relaxed);
                state.in_flight.store(false, Ordering::Release);
            }
            Ok(Down::Resync(_)) => log.resyncs += 1,
            Ok(Down::Reload(_)) => {
                log.reloads += 1;
                reloading = true;
            }
            Ok(Down::CaughtUp(c)) => {
                if reloading {
                    check.last = c.cursor.map_or(check.last, |c| c.seq);
                    reloading = false;
                }
            }
            Ok(Down::Goodbye(g)) => {
                log.lost = Some(Failure::new("Goodbye", format!("{}: {}", g.code, g.reason)));
                break;
            }
            Ok(other) => {
                log.lost = Some(Failure::new("Protocol", format!("an unexpected {}", kind(&other))));
                break;
            }
            Err(f) => {
                log.lost = Some(f);
                break;
            }
        }
    }
    log.gaps = check.gaps;
    log.dups = check.dups;
    log
}

/// A write the scheduler sent.
#[derive(Clone, Copy)]
struct Sent {
    device: usize,
    identity: usize,
    at: Instant,
}

async fn push(plan: &Plan, world: &World, report: &mut SyncBenchReport) -> anyhow::Result<()> {
    let connected = connect_all(world, plan.connect_concurrency, &mut report.connect).await?;
    let connected = all_connected(connected, &report.connect)?;
    let members = world.members();

    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sends = Vec::with_capacity(connected.len());
    let mut states = Vec::with_capacity(connected.len());
    let mut conns = Vec::with_capacity(connected.len());
    let mut readers = Vec::with_capacity(connected.len());
    for (i, c) in connected.into_iter().enumerate() {
        let state = Arc::new(DeviceState {
            in_flight: AtomicBool::new(false),
            sync_count: AtomicI64::new(0),
        });
        let others = (world.sizes[world.devices[i].identity] - 1) as u64;
        let Session {
            conn,
            send,
            recv,
            max_frame,
            ..
        } = c.session;
        readers.push(tokio::spawn(reader(
            recv,
            max_frame,
            world.device_ids[i].clone(),
            others,
            SeqCheck::after(c.catch_up.cursor.seq),
            state.clone(),
            counters.clone(),
            stop_rx.clone(),
        )));
        sends.push((send, max_frame));
        states.push(state);
        conns.push(conn);
    }

    // The order identities write in: a permutation from the seed, so that
    // neighbours (which share nodes) do not write back to back.
    let mut order: Vec<usize> = (0..world.sizes.len()).collect();
    let mut rng = SplitMix::new(plan.seed ^ 0x5eed_0f0d_e500);
    for i in (1..order.len()).rev() {
        let j = rng.in_range(0, i);
        order.swap(i, j);
    }
    let mut turn = vec![0usize; world.sizes.len()];

    eprintln!(
        "push: {} writes/s for {} s warm-up and {} s measured",
        plan.writes_per_sec,
        plan.warmup.as_secs_f64(),
        plan.duration.as_secs_f64()
    );
    let interval = Duration::from_secs_f64(1.0 / plan.writes_per_sec);
    let t0 = instant();
    let record_from = t0 + plan.warmup;
    let end = record_from + plan.duration;
    let mut sent: Vec<Option<Sent>> = Vec::new();
    let mut skipped_busy = 0u64;
    let mut send_failures = TaskStats::new()?;
    let mut k: u64 = 0;
    loop {
        let due = t0 + interval.mul_f64(k as f64);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
        let identity = order[(k as usize) % order.len()];
        let mine = &members[identity];
        let device = mine[turn[identity] % mine.len()];
        turn[identity] += 1;
        let state = &states[device];
        if state.in_flight.swap(true, Ordering::AcqRel) {
            skipped_busy += 1;
            sent.push(None);
            k += 1;
            continue;
        }
        let frame = write_frame(
            k,
            DATASET,
            &world.device_ids[device],
            value(k, plan.value_bytes),
            state.sync_count.load(Ordering::Relaxed),
        );
        let (send, max_frame) = &mut sends[device];
        let bytes =
            crate::sync::frame::encode_frame(&frame, *max_frame).map_err(|e| anyhow!("encoding a write: {e}"))?;
        counters.pending.fetch_add(1, Ordering::Relaxed);
        let at = instant();
        match send_bytes(send, &bytes).await {
            Ok(()) => sent.push(Some(Sent { device, identity, at })),
            Err(f) => {
                counters.pending.fetch_sub(1, Ordering::Relaxed);
                state.in_flight.store(false, Ordering::Release);
                if at >= record_from {
                    send_failures.record_error(&f.code, &f.message);
                }
                sent.push(None);
            }
        }
        k += 1;
    }

    // Drain: wait for the answers and the pushes still on their way.
    let drain_until = instant() + DRAIN;
    while instant() < drain_until {
        let owed = counters.owed.load(Ordering::Relaxed);
        let arrived = counters.arrived.load(Ordering::Relaxed);
        if counters.pending.load(Ordering::Relaxed) == 0 && arrived >= owed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    let mut logs = Vec::with_capacity(readers.len());
    for r in readers {
        logs.push(r.await.map_err(|e| anyhow!("a device reader failed: {e}"))?);
    }
    for c in &conns {
        c.close(quinn::VarInt::from_u32(0), b"bench done");
    }

    let p = account(plan, &members, &sent, &logs, record_from, end, send_failures)?;
    let p = PushReport {
        writes_per_sec_target: plan.writes_per_sec,
        warmup_secs: plan.warmup.as_secs_f64(),
        duration_secs: plan.duration.as_secs_f64(),
        writes_scheduled: k,
        skipped_busy,
        value_bytes: plan.value_bytes,
        ..p
    };
    report.checks = push_checks(&p);
    report.push = Some(p);
    Ok(())
}

/// Joins the scheduler's sends with the readers' stamps: which writes were
/// acknowledged in the window, and when each of their pushes arrived.
fn account(
    plan: &Plan,
    members: &[Vec<usize>],
    sent: &[Option<Sent>],
    logs: &[DeviceLog],
    record_from: Instant,
    end: Instant,
    mut errors: TaskStats,
) -> anyhow::Result<PushReport> {
    let secs = plan.duration.as_secs_f64();
    let arrivals: Vec<BTreeMap<u64, Instant>> = logs
        .iter()
        .map(|l| l.arrivals.iter().map(|&(seq, at)| (seq, at)).collect())
        .collect();
    let mut acks = TaskStats::new()?;
    let mut pushes = TaskStats::new()?;
    let mut answered = vec![false; sent.len()];
    let (mut missing, mut before_ack, mut writes_ok) = (0u64, 0u64, 0u64);
    for log in logs {
        for ack in &log.acks {
            let Some(Some(s)) = usize::try_from(ack.request_id).ok().and_then(|i| sent.get(i)) else {
                continue;
            };
            if let Some(a) = usize::try_from(ack.request_id).ok().and_then(|i| answered.get_mut(i)) {
                *a = true;
            }
            if ack.at < record_from || ack.at >= end {
                continue;
            }
            let seq = match &ack.outcome {
                Ok(seq) => *seq,
                Err((code, message)) => {
                    errors.record_error(code, message);
                    continue;
                }
            };
            writes_ok += 1;
            acks.record_ok(ack.at.saturating_duration_since(s.at));
            for &d in &members[s.identity] {
                if d == s.device {
                    continue;
                }
                match arrivals[d].get(&seq) {
                    Some(&arrived) => {
                        if arrived < ack.at {
                            before_ack += 1;
                        }
                        pushes.record_ok(arrived.saturating_duration_since(ack.at));
                    }
                    None => missing += 1,
                }
            }
        }
    }
    // Writes sent in the window that never got an answer.
    let unanswered = sent
        .iter()
        .zip(&answered)
        .filter(|(s, a)| s.is_some_and(|s| s.at >= record_from && s.at < end) && !**a)
        .count() as u64;
    if unanswered > 0 {
        errors.record_error(
            "Unanswered",
            &format!("no SyncWriteResult within {} s after the window", DRAIN.as_secs()),
        );
        if let Some(n) = errors.errors.get_mut("Unanswered") {
            *n = unanswered;
        }
    }
    let mut lost = BTreeMap::new();
    let mut lost_samples = BTreeMap::new();
    for l in logs.iter().filter_map(|l| l.lost.as_ref()) {
        *lost.entry(l.code.clone()).or_insert(0u64) += 1;
        lost_samples.entry(l.code.clone()).or_insert_with(|| l.message.clone());
    }
    Ok(PushReport {
        writes_per_sec_target: plan.writes_per_sec,
        warmup_secs: 0.0,
        duration_secs: secs,
        writes_scheduled: 0,
        skipped_busy: 0,
        value_bytes: 0,
        writes_ok,
        write_rate: writes_ok as f64 / secs,
        write_errors: errors.errors,
        write_error_samples: errors.error_samples,
        write_ack_latency_us: acks.latency_summary(),
        pushes: pushes.ok,
        pushes_per_sec: pushes.ok as f64 / secs,
        pushes_before_ack: before_ack,
        push_latency_us: Percentiles::of(&pushes.latency),
        missing_pushes: missing,
        gaps: logs.iter().map(|l| l.gaps).sum(),
        dups: logs.iter().map(|l| l.dups).sum(),
        resyncs: logs.iter().map(|l| l.resyncs).sum(),
        reloads: logs.iter().map(|l| l.reloads).sum(),
        sessions_lost: lost,
        sessions_lost_samples: lost_samples,
    })
}

fn push_checks(p: &PushReport) -> Vec<Check> {
    let floor_us = PUSH_P99_FLOOR.as_micros() as u64;
    let errors: u64 = p.write_errors.values().sum();
    let lost: u64 = p.sessions_lost.values().sum();
    vec![
        Check::new(
            "write-to-push p99",
            crate::bench::format_micros(p.push_latency_us.p99_us),
            format!("< {}", crate::bench::format_micros(floor_us)),
            p.pushes > 0 && p.push_latency_us.p99_us < floor_us,
        ),
        Check::new(
            "missing pushes",
            p.missing_pushes.to_string(),
            "= 0".into(),
            p.missing_pushes == 0,
        ),
        Check::new(
            "gaps / duplicates",
            format!("{} / {}", p.gaps, p.dups),
            "= 0 / 0".into(),
            p.gaps == 0 && p.dups == 0,
        ),
        Check::new(
            "failed writes, lost sessions",
            format!("{errors}, {lost}"),
            "= 0, 0".into(),
            errors == 0 && lost == 0 && p.writes_ok > 0,
        ),
    ]
}

// ---------------------------------------------------------------------
// idle
// ---------------------------------------------------------------------

/// The node's resident memory and open device connections now.
async fn node_memory(plan: &Plan, api: &str) -> anyhow::Result<(u64, Option<u64>)> {
    let text = crate::client::http::get_text(api, "/metrics")
        .await
        .map_err(|e| anyhow!("reading the node's /metrics: {e}"))?;
    let gauge = metric(&text, "tessera_sync_connections");
    let rss = match plan.node_pid {
        Some(pid) => {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .map_err(|e| anyhow!("--node-pid {pid}: reading /proc/{pid}/status: {e}"))?;
            crate::metrics::parse_vm_rss(&status).ok_or_else(|| anyhow!("/proc/{pid}/status has no VmRSS line"))?
        }
        None => metric(&text, "tessera_process_resident_memory_bytes").ok_or_else(|| {
            anyhow!(
                "the node's /metrics has no tessera_process_resident_memory_bytes (an older build?); pass --node-pid"
            )
        })?,
    };
    Ok((rss, gauge))
}

/// The value of an unlabelled metric in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        let v: f64 = rest.split_whitespace().next()?.parse().ok()?;
        (v.is_finite() && v >= 0.0).then_some(v as u64)
    })
}

async fn idle(plan: &Plan, world: &World, report: &mut SyncBenchReport) -> anyhow::Result<()> {
    let Some(node) = world.connector.node(0).cloned() else {
        bail!("no node to measure");
    };
    let (before, gauge_before) = node_memory(plan, &node.api).await?;
    let connected = connect_all(world, plan.connect_concurrency, &mut report.connect).await?;
    let held = connected.iter().filter(|c| c.is_some()).count() as u64;
    eprintln!(
        "idle: {} sessions held; settling {} s",
        group_thousands(held),
        plan.settle.as_secs_f64()
    );
    tokio::time::sleep(plan.settle).await;
    let (after, gauge_after) = node_memory(plan, &node.api).await?;
    for c in connected.iter().flatten() {
        c.session.close();
    }
    drop(connected);
    let growth = after.saturating_sub(before);
    let kib = if held > 0 {
        growth as f64 / 1024.0 / held as f64
    } else {
        f64::NAN
    };
    let i = IdleReport {
        node_id: node.node_id,
        api: node.api.clone(),
        source: if plan.node_pid.is_some() {
            "/proc/<pid>/status".into()
        } else {
            "/metrics".into()
        },
        settle_secs: plan.settle.as_secs_f64(),
        rss_before_bytes: before,
        rss_after_bytes: after,
        connections: held,
        node_connections_before: gauge_before,
        node_connections_after: gauge_after,
        kib_per_connection: kib,
    };
    report.checks = vec![
        Check::new(
            "resident memory per connection",
            format!("{kib:.1} KiB"),
            format!("<= {IDLE_KIB_FLOOR} KiB"),
            kib.is_finite() && kib <= IDLE_KIB_FLOOR,
        ),
        Check::new(
            "devices connected",
            format!(
                "{} of {}",
                group_thousands(held),
                group_thousands(world.devices.len() as u64)
            ),
            "= all".into(),
            held as usize == world.devices.len(),
        ),
    ];
    report.idle = Some(i);
    Ok(())
}

// ---------------------------------------------------------------------
// reconnect
// ---------------------------------------------------------------------

/// One identity's devices, each with the cursor of the change it got.
struct Warm {
    sessions: Vec<(usize, Session, SyncCursor)>,
}

/// One write through `members[0]`'s session, read by every device of the
/// identity: the first device also waits for its result. Each device's
/// cursor is then that change's.
async fn warm_identity(mut sessions: Vec<(usize, Session, u64)>, device_ids: &[String]) -> Result<Warm, Failure> {
    let Some((first, s0, seq0)) = sessions.first_mut() else {
        return Ok(Warm { sessions: Vec::new() });
    };
    let target = *seq0 + 1;
    s0.send(&write_frame(1, DATASET, &device_ids[*first], value(0, 16), 0))
        .await?;
    let mut out = Vec::with_capacity(sessions.len());
    for (pos, (i, mut s, _)) in sessions.into_iter().enumerate() {
        let mut cursor = None;
        let mut acked = pos != 0;
        while cursor.is_none() || !acked {
            match s.next().await? {
                Down::Change(c) if c.cursor.is_some_and(|c| c.seq == target) => cursor = c.cursor,
                Down::Change(c) => {
                    return Err(Failure::new(
                        "Sequence",
                        format!("expected change {target}, got {:?}", c.cursor.map(|c| c.seq)),
                    ))
                }
                Down::WriteResult(r) => match r.result {
                    Some(WriteOutcome::Ok(_)) => acked = true,
                    _ => {
                        return Err(Failure::new(
                            "WriteFailed",
                            format!("the warm-up write failed: {:?}", r.result),
                        ))
                    }
                },
                Down::Pong(_) | Down::Resync(_) => {}
                other => return Err(Failure::new("Protocol", format!("an unexpected {}", kind(&other)))),
            }
        }
        out.push((i, s, cursor.unwrap_or_default()));
    }
    Ok(Warm { sessions: out })
}

/// `k` writes to an identity from a separate session (its devices are
/// away); the identity's cursor after them.
async fn write_while_away(
    world: &World,
    identity: usize,
    node: usize,
    device_id: &str,
    k: usize,
) -> Result<Option<SyncCursor>, Failure> {
    if k == 0 {
        return Ok(None);
    }
    let token = &world.guests[identity].token;
    let mut s = world.connector.open(node, &world.pool_id, token, device_id).await?;
    let mut sync_count = 0;
    let mut cursor = None;
    for n in 0..k {
        s.send(&write_frame(
            n as u64,
            DATASET,
            device_id,
            value(n as u64, 16),
            sync_count,
        ))
        .await?;
        loop {
            match s.next().await? {
                Down::WriteResult(r) => match r.result {
                    Some(WriteOutcome::Ok(ok)) => {
                        sync_count = ok.records.first().map_or(ok.dataset_sync_count, |r| r.sync_count);
                        cursor = ok.cursor;
                        break;
                    }
                    other => {
                        return Err(Failure::new(
                            "WriteFailed",
                            format!("a write while away failed: {other:?}"),
                        ))
                    }
                },
                Down::Pong(_) => {}
                other => return Err(Failure::new("Protocol", format!("an unexpected {}", kind(&other)))),
            }
        }
    }
    s.close();
    Ok(cursor)
}

/// What one device's reconnection came to.
struct Back {
    /// From the storm's start to its `SyncCaughtUp`.
    took: Duration,
    /// The QUIC handshake.
    handshake: Duration,
    /// Hello to Welcome.
    hello: Duration,
    /// Subscribe to `SyncCaughtUp`.
    catch_up_time: Duration,
    catch_up: CatchUp,
    expected_seq: u64,
}

async fn reconnect(plan: &Plan, world: &World, run_id: &str, report: &mut SyncBenchReport) -> anyhow::Result<()> {
    let connected = connect_all(world, plan.connect_concurrency, &mut report.connect).await?;
    let connected = all_connected(connected, &report.connect)?;
    let members = world.members();

    // One live change per identity, so each device holds a cursor that a
    // live push gave it.
    eprintln!("reconnect: one write per identity, read by all its devices");
    let mut by_identity: Vec<Vec<(usize, Session, u64)>> = (0..members.len()).map(|_| Vec::new()).collect();
    for (i, c) in connected.into_iter().enumerate() {
        by_identity[world.devices[i].identity].push((i, c.session, c.catch_up.cursor.seq));
    }
    let warmed: Vec<Result<Warm, Failure>> = futures::stream::iter(by_identity)
        .map(|s| warm_identity(s, &world.device_ids))
        .buffer_unordered(plan.connect_concurrency.max(1))
        .collect()
        .await;
    let mut cursors: Vec<SyncCursor> = vec![SyncCursor::default(); world.devices.len()];
    let mut sessions = Vec::with_capacity(world.devices.len());
    for w in warmed {
        let w = w.map_err(|f| anyhow!("the warm-up write: {}: {}", f.code, f.message))?;
        for (i, s, c) in w.sessions {
            cursors[i] = c;
            sessions.push(s);
        }
    }

    eprintln!(
        "reconnect: all {} devices leave",
        group_thousands(sessions.len() as u64)
    );
    for s in &sessions {
        s.close();
    }
    drop(sessions);
    world.connector.wait_idle(Duration::from_secs(5)).await;

    eprintln!(
        "reconnect: {} writes per identity while they are away",
        plan.missed_writes
    );
    let nodes = world.connector.nodes();
    let away: Vec<(usize, Result<Option<SyncCursor>, Failure>)> = futures::stream::iter(0..members.len())
        .map(|identity| async move {
            let id = format!("bench-{run_id}-w{identity}");
            (
                identity,
                write_while_away(world, identity, identity % nodes, &id, plan.missed_writes).await,
            )
        })
        .buffer_unordered(plan.connect_concurrency.max(1))
        .collect()
        .await;
    let mut newest: Vec<u64> = vec![0; members.len()];
    for (identity, r) in away {
        let c = r.map_err(|f| anyhow!("writing while the devices are away: {}: {}", f.code, f.message))?;
        let warm = members[identity].first().map_or(0, |&d| cursors[d].seq);
        newest[identity] = c.map_or(warm, |c| c.seq);
    }
    world.connector.wait_idle(Duration::from_secs(5)).await;

    eprintln!(
        "reconnect: the storm, {} devices at once",
        group_thousands(world.devices.len() as u64)
    );
    let shift = match plan.reconnect_to {
        ReconnectTo::Same => 0,
        ReconnectTo::Other => 1,
    };
    let t0 = instant();
    let mut storm = tokio::task::JoinSet::new();
    let world_devices: Vec<(usize, usize, usize)> = world
        .devices
        .iter()
        .map(|d| (d.index, d.identity, (d.node + shift) % nodes))
        .collect();
    let shared = Arc::new(StormInputs {
        connector: world.connector.clone(),
        pool_id: world.pool_id.clone(),
        tokens: world.guests.iter().map(|g| g.token.clone()).collect(),
        device_ids: world.device_ids.clone(),
    });
    for (index, identity, node) in world_devices {
        let shared = shared.clone();
        let cursor = cursors[index];
        let expected_seq = newest[identity];
        storm.spawn(async move {
            let r = tokio::time::timeout(STORM_LIMIT, async {
                let mut s = shared
                    .connector
                    .open(
                        node,
                        &shared.pool_id,
                        &shared.tokens[identity],
                        &shared.device_ids[index],
                    )
                    .await?;
                let subscribed = instant();
                let c = s.subscribe(Some(cursor)).await?;
                Ok::<_, Failure>((s, c, instant() - subscribed))
            })
            .await
            .unwrap_or_else(|_| Err(Failure::new("Timeout", format!("not caught up within {STORM_LIMIT:?}"))));
            let took = instant() - t0;
            (
                index,
                r.map(|(s, c, catch_up_time)| {
                    let back = Back {
                        took,
                        handshake: s.handshake,
                        hello: s.hello,
                        catch_up_time,
                        catch_up: c,
                        expected_seq,
                    };
                    (s, back)
                }),
            )
        });
    }
    let mut times = TaskStats::new()?;
    let (mut handshakes, mut hellos, mut catch_ups) = (TaskStats::new()?, TaskStats::new()?, TaskStats::new()?);
    let mut failures = TaskStats::new()?;
    let mut held = Vec::with_capacity(world.devices.len());
    let (mut reloads, mut gaps, mut dups, mut wrong) = (0u64, 0u64, 0u64, 0u64);
    let mut last = Duration::ZERO;
    let mut changes = 0u64;
    while let Some(j) = storm.join_next().await {
        let (_index, r) = j.map_err(|e| anyhow!("a reconnecting device failed: {e}"))?;
        match r {
            Ok((s, b)) => {
                times.record_ok(b.took);
                handshakes.record_ok(b.handshake);
                hellos.record_ok(b.hello);
                catch_ups.record_ok(b.catch_up_time);
                last = last.max(b.took);
                changes += b.catch_up.changes;
                reloads += u64::from(b.catch_up.reloaded);
                gaps += b.catch_up.gaps;
                dups += b.catch_up.dups;
                if !b.catch_up.reloaded && b.catch_up.cursor.seq != b.expected_seq {
                    wrong += 1;
                    failures.record_error(
                        "WrongCursor",
                        &format!(
                            "caught up at {}, the identity is at {}",
                            b.catch_up.cursor.seq, b.expected_seq
                        ),
                    );
                }
                held.push(s);
            }
            Err(f) => failures.record_error(&f.code, &f.message),
        }
    }
    for s in &held {
        s.close();
    }
    drop(held);
    let caught_up = times.ok;
    let failed = failures.error_total() - wrong;
    let r = ReconnectReport {
        devices: world.devices.len(),
        reconnect_to: plan.reconnect_to,
        missed_writes: plan.missed_writes,
        caught_up,
        failed,
        reloads,
        gaps,
        dups,
        wrong_cursor: wrong,
        changes_replayed: changes,
        all_caught_up_us: u64::try_from(last.as_micros()).unwrap_or(u64::MAX),
        latency_us: times.latency_summary(),
        handshake_us: handshakes.latency_summary(),
        hello_us: hellos.latency_summary(),
        catch_up_us: catch_ups.latency_summary(),
        errors: failures.errors,
        error_samples: failures.error_samples,
    };
    let all = caught_up as usize == world.devices.len() && failed == 0;
    report.checks = vec![
        Check::new(
            "all caught up within",
            if all {
                crate::bench::format_micros(r.all_caught_up_us)
            } else {
                format!("{} of {} caught up", caught_up, world.devices.len())
            },
            format!("<= {}", crate::bench::format_micros(RECONNECT_FLOOR.as_micros() as u64)),
            all && last <= RECONNECT_FLOOR,
        ),
        Check::new(
            "reloads instead of resumes",
            reloads.to_string(),
            "= 0".into(),
            reloads == 0,
        ),
        Check::new(
            "gaps / duplicates / wrong cursors",
            format!("{gaps} / {dups} / {wrong}"),
            "= 0 / 0 / 0".into(),
            gaps == 0 && dups == 0 && wrong == 0,
        ),
    ];
    report.reconnect = Some(r);
    Ok(())
}

/// What every task of the storm needs, shared.
struct StormInputs {
    connector: Arc<Connector>,
    pool_id: String,
    tokens: Vec<String>,
    device_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_asked_length_and_name_the_write() {
        assert_eq!(value(7, 8), "w7:xxxxx");
        assert_eq!(value(123_456, 4), "w123");
        assert_eq!(value(1, 64).len(), 64);
    }

    #[test]
    fn metrics_are_read_from_the_exposition() {
        let text = "# HELP tessera_sync_connections Open\n# TYPE tessera_sync_connections gauge\n\
                    tessera_sync_connections 10000\n\
                    tessera_sync_connections_refused_total 3\n\
                    tessera_process_resident_memory_bytes 123456789\n# EOF\n";
        assert_eq!(metric(text, "tessera_sync_connections"), Some(10_000));
        assert_eq!(metric(text, "tessera_process_resident_memory_bytes"), Some(123_456_789));
        assert_eq!(metric(text, "tessera_sync_connections_refused"), None);
        assert_eq!(metric(text, "tessera_missing"), None);
    }
}
