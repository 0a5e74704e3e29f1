//! What a `bench sync` run measured, and how it prints: the cluster and
//! devices it ran with, how connecting went, the scenario's figures, and
//! one PASS/FAIL line per floor.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{ReconnectTo, SyncScenario};
use crate::bench::driver::{render, write_errors};
use crate::bench::identity::ClusterShape;
use crate::bench::stats::{LatencySummary, Percentiles};
use crate::bench::{format_micros, format_rate, group_thousands, OutputFormat};

/// One node the devices connected to.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    /// Its node id (`/sync-info`).
    pub node_id: u64,
    /// The api endpoint it was found through.
    pub api: String,
    /// Its sync listener.
    pub sync_addr: String,
    /// Devices placed on it.
    pub devices: usize,
}

/// How the devices connected: Hello and Subscribe, until `SyncCaughtUp`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectReport {
    /// Devices that tried.
    pub devices: usize,
    /// Devices that caught up.
    pub connected: u64,
    /// Devices connecting at once.
    pub concurrency: usize,
    /// Seconds from the first connection to the last caught up.
    pub secs: f64,
    /// Per device: the QUIC handshake, Hello, Subscribe and catch-up.
    pub latency_us: LatencySummary,
    /// Subscriptions answered with a Reload (all of them, for devices
    /// without a cursor).
    pub reloads: u64,
    /// Devices that failed, by cause (a close code as `Closed<NAME>`,
    /// `Timeout`, `Connection`, ...).
    pub errors: BTreeMap<String, u64>,
    /// One message per cause.
    pub error_samples: BTreeMap<String, String>,
}

/// The `push` scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// `--writes-per-sec`.
    pub writes_per_sec_target: f64,
    /// Seconds of load before the window.
    pub warmup_secs: f64,
    /// The measured window.
    pub duration_secs: f64,
    /// Bytes of each written value.
    pub value_bytes: usize,
    /// Writes the schedule called for, warm-up included.
    pub writes_scheduled: u64,
    /// Scheduled writes not sent because that device's previous write was
    /// still unanswered (sending it would have conflicted).
    pub skipped_busy: u64,
    /// Writes acknowledged `ok` inside the window.
    pub writes_ok: u64,
    /// `writes_ok` per second.
    pub write_rate: f64,
    /// Writes in the window that failed, by cause (`Unanswered`, a
    /// Cognito exception name, a stream failure).
    pub write_errors: BTreeMap<String, u64>,
    /// One message per cause.
    pub write_error_samples: BTreeMap<String, String>,
    /// From sending a write to its acknowledgement (a Raft round trip).
    pub write_ack_latency_us: LatencySummary,
    /// Pushes of the window's writes that arrived on another device of
    /// the identity.
    pub pushes: u64,
    /// `pushes` per second of the window.
    pub pushes_per_sec: f64,
    /// Pushes that arrived before the writer's acknowledgement (counted
    /// as 0 µs).
    pub pushes_before_ack: u64,
    /// Write-to-push latency: acknowledgement to arrival, `max(0, ...)`.
    pub push_latency_us: Percentiles,
    /// Pushes owed to another device that never arrived within the drain.
    pub missing_pushes: u64,
    /// Changes whose seq skipped ahead, over all devices and the whole run.
    pub gaps: u64,
    /// Changes whose seq was not above the previous one.
    pub dups: u64,
    /// `SyncResync`s received (a device's queue overflowed on its node).
    pub resyncs: u64,
    /// `SyncReload`s received after the devices had caught up.
    pub reloads: u64,
    /// Sessions that ended before the run did, by cause.
    pub sessions_lost: BTreeMap<String, u64>,
    /// One message per cause.
    pub sessions_lost_samples: BTreeMap<String, String>,
}

/// The `idle` scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// The node measured.
    pub node_id: u64,
    /// Its api endpoint.
    pub api: String,
    /// Where the memory was read: `/metrics` or `/proc/<pid>/status`.
    pub source: String,
    /// Seconds waited after the last device caught up.
    pub settle_secs: f64,
    /// Resident memory before the first connection.
    pub rss_before_bytes: u64,
    /// Resident memory with every connection held.
    pub rss_after_bytes: u64,
    /// Sessions held when the memory was read.
    pub connections: u64,
    /// The node's `tessera_sync_connections` before.
    pub node_connections_before: Option<u64>,
    /// The same, after.
    pub node_connections_after: Option<u64>,
    /// (after − before) / connections, in KiB.
    pub kib_per_connection: f64,
}

/// The `reconnect` scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ReconnectReport {
    /// Devices in the storm.
    pub devices: usize,
    /// Where they reconnected.
    pub reconnect_to: ReconnectTo,
    /// Changes per identity written while its devices were away.
    pub missed_writes: usize,
    /// Devices that got their `SyncCaughtUp`.
    pub caught_up: u64,
    /// Devices that failed to reconnect or catch up.
    pub failed: u64,
    /// Resumes answered with a Reload (should be none).
    pub reloads: u64,
    /// Catch-up changes whose seq skipped ahead.
    pub gaps: u64,
    /// Catch-up changes whose seq was not above the previous one.
    pub dups: u64,
    /// Devices caught up at another cursor than the identity's newest.
    pub wrong_cursor: u64,
    /// Changes sent to the devices while catching up.
    pub changes_replayed: u64,
    /// From the storm's start to the last `SyncCaughtUp`.
    pub all_caught_up_us: u64,
    /// Per device, from the storm's start to its `SyncCaughtUp`.
    pub latency_us: LatencySummary,
    /// Per device, the QUIC handshake alone.
    pub handshake_us: LatencySummary,
    /// Per device, from Hello to Welcome (the credential check).
    pub hello_us: LatencySummary,
    /// Per device, from Subscribe to `SyncCaughtUp` (the catch-up).
    pub catch_up_us: LatencySummary,
    /// Failures by cause.
    pub errors: BTreeMap<String, u64>,
    /// One message per cause.
    pub error_samples: BTreeMap<String, String>,
}

/// Packets lost to full UDP receive buffers on this machine: what turns
/// a burst of handshakes into QUIC retransmissions a second or more later.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UdpReport {
    /// The devices' sockets.
    pub bench_sockets: usize,
    /// The receive buffer the kernel granted each (bytes).
    pub bench_recv_buffer_bytes: usize,
    /// Packets dropped on the devices' sockets during the run.
    pub bench_drops: Option<u64>,
    /// Packets dropped on the nodes' sync sockets during the run (only for
    /// nodes on loopback, whose sockets are this machine's).
    pub node_drops: Option<u64>,
}

/// One floor checked against the run.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// What the run measured.
    pub value: String,
    /// The floor.
    pub floor: String,
    /// Whether the run met it.
    pub pass: bool,
}

impl Check {
    /// A checked floor.
    pub fn new(name: &str, value: String, floor: String, pass: bool) -> Check {
        Check {
            name: name.to_string(),
            value,
            floor,
            pass,
        }
    }
}

/// Everything a run measured, printable as a table or JSON.
#[derive(Debug, Clone, Serialize)]
pub struct SyncBenchReport {
    /// What was measured.
    pub scenario: SyncScenario,
    /// The api endpoints given.
    pub endpoints: Vec<String>,
    /// The nodes' sync listeners and the devices on each.
    pub nodes: Vec<NodeReport>,
    /// The cluster's members, when the first endpoint could say.
    pub cluster: Option<ClusterShape>,
    /// The identity pool the bench created.
    pub identity_pool_id: String,
    /// Its guests' role.
    pub role_arn: String,
    /// Devices.
    pub devices: usize,
    /// Guest identities the devices belong to.
    pub identities: usize,
    /// The range of devices per identity.
    pub devices_per_identity: [usize; 2],
    /// The seed of the identities' sizes and the write order.
    pub seed: u64,
    /// UDP sockets the devices shared.
    pub sockets: usize,
    /// Seconds of setup (pool, guests, credentials, `/sync-info`).
    pub setup_secs: f64,
    /// How the devices connected.
    pub connect: ConnectReport,
    /// `push` only.
    pub push: Option<PushReport>,
    /// `idle` only.
    pub idle: Option<IdleReport>,
    /// `reconnect` only.
    pub reconnect: Option<ReconnectReport>,
    /// The floors and whether the run met each.
    pub checks: Vec<Check>,
    /// UDP packets dropped for want of buffer room.
    pub udp: UdpReport,
    /// Whether everything the bench created was deleted afterwards.
    pub cleaned_up: bool,
}

impl SyncBenchReport {
    /// Whether the run met every floor.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.pass)
    }

    /// The report in `format`, ending with a newline.
    pub fn render(&self, format: OutputFormat) -> String {
        render(self, format, || self.table())
    }

    /// Prints the report to stdout in `format`.
    pub fn print(&self, format: OutputFormat) {
        print!("{}", self.render(format));
    }

    fn table(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(s, "tessera bench sync: {}", self.scenario.as_str());
        for n in &self.nodes {
            let _ = writeln!(
                s,
                "  node {:<8} {} (sync {}): {} devices",
                n.node_id,
                n.api,
                n.sync_addr,
                group_thousands(n.devices as u64)
            );
        }
        if let Some(c) = &self.cluster {
            let _ = writeln!(
                s,
                "  cluster       {} voter{}{}",
                c.voters,
                if c.voters == 1 { "" } else { "s" },
                c.leader_id.map(|id| format!(" (leader {id})")).unwrap_or_default()
            );
        }
        let _ = writeln!(
            s,
            "  devices       {} of {} guest identities ({}-{} each, seed {}), over {} UDP socket{}",
            group_thousands(self.devices as u64),
            group_thousands(self.identities as u64),
            self.devices_per_identity[0],
            self.devices_per_identity[1],
            self.seed,
            self.sockets,
            if self.sockets == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            s,
            "  pool          identity pool {}{}",
            self.identity_pool_id,
            if self.cleaned_up { " (deleted)" } else { "" }
        );
        let _ = writeln!(s, "  setup         {:.1} s", self.setup_secs);
        let c = &self.connect;
        let _ = writeln!(
            s,
            "  connect       {} of {} caught up in {:.1} s ({} at a time); per device p50 {}  p99 {}  max {}",
            group_thousands(c.connected),
            group_thousands(c.devices as u64),
            c.secs,
            c.concurrency,
            format_micros(c.latency_us.p50_us),
            format_micros(c.latency_us.p99_us),
            format_micros(c.latency_us.max_us)
        );
        if !c.errors.is_empty() {
            write_errors(&mut s, &c.errors, &c.error_samples);
        }
        let drops = |d: Option<u64>| d.map_or("-".to_string(), group_thousands);
        let _ = writeln!(
            s,
            "  udp           {} dropped on the nodes' sync sockets, {} on the bench's ({} socket{} of {} KiB)",
            drops(self.udp.node_drops),
            drops(self.udp.bench_drops),
            self.udp.bench_sockets,
            if self.udp.bench_sockets == 1 { "" } else { "s" },
            self.udp.bench_recv_buffer_bytes / 1024
        );
        if let Some(p) = &self.push {
            push_table(&mut s, p);
        }
        if let Some(i) = &self.idle {
            idle_table(&mut s, i);
        }
        if let Some(r) = &self.reconnect {
            reconnect_table(&mut s, r);
        }
        for c in &self.checks {
            let _ = writeln!(
                s,
                "  target        {}: {} ({})  {}",
                c.name,
                c.value,
                c.floor,
                if c.pass { "PASS" } else { "FAIL" }
            );
        }
        s
    }
}

fn push_table(s: &mut String, p: &PushReport) {
    let _ = writeln!(
        s,
        "  window        {} s warmup, {} s measured; {}-byte values",
        p.warmup_secs, p.duration_secs, p.value_bytes
    );
    let _ = writeln!(
        s,
        "  writes        {} ok ({}/s of {}/s asked); {} skipped (device busy)",
        group_thousands(p.writes_ok),
        format_rate(p.write_rate),
        format_rate(p.writes_per_sec_target),
        group_thousands(p.skipped_busy)
    );
    write_errors(s, &p.write_errors, &p.write_error_samples);
    let a = &p.write_ack_latency_us;
    let _ = writeln!(
        s,
        "  write ack     p50 {}  p99 {}  max {}",
        format_micros(a.p50_us),
        format_micros(a.p99_us),
        format_micros(a.max_us)
    );
    let _ = writeln!(
        s,
        "  pushes        {} ({}/s); {} before the writer's ack; {} missing",
        group_thousands(p.pushes),
        format_rate(p.pushes_per_sec),
        group_thousands(p.pushes_before_ack),
        group_thousands(p.missing_pushes)
    );
    let l = &p.push_latency_us;
    let _ = writeln!(
        s,
        "  push latency  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        format_micros(l.p50_us),
        format_micros(l.p90_us),
        format_micros(l.p99_us),
        format_micros(l.p999_us),
        format_micros(l.max_us)
    );
    let lost: u64 = p.sessions_lost.values().sum();
    let _ = writeln!(
        s,
        "  streams       {} gaps, {} duplicates, {} resyncs, {} reloads, {} sessions lost",
        p.gaps, p.dups, p.resyncs, p.reloads, lost
    );
    for (code, msg) in &p.sessions_lost_samples {
        let _ = writeln!(s, "                {code}: {msg}");
    }
}

fn idle_table(s: &mut String, i: &IdleReport) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let gauge = |g: Option<u64>| g.map_or("-".to_string(), group_thousands);
    let _ = writeln!(
        s,
        "  node memory   {:.1} MiB before, {:.1} MiB with {} sessions ({} s settled; from {})",
        mib(i.rss_before_bytes),
        mib(i.rss_after_bytes),
        group_thousands(i.connections),
        i.settle_secs,
        i.source
    );
    let _ = writeln!(
        s,
        "  node gauge    tessera_sync_connections {} before, {} after",
        gauge(i.node_connections_before),
        gauge(i.node_connections_after)
    );
    let _ = writeln!(s, "  per session   {:.1} KiB", i.kib_per_connection);
}

fn reconnect_table(s: &mut String, r: &ReconnectReport) {
    let _ = writeln!(
        s,
        "  storm         {} devices at once to the {} node, {} change{} missed per identity",
        group_thousands(r.devices as u64),
        match r.reconnect_to {
            ReconnectTo::Same => "same",
            ReconnectTo::Other => "next",
        },
        r.missed_writes,
        if r.missed_writes == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        s,
        "  caught up     {} of {} ({} failed); {} changes replayed",
        group_thousands(r.caught_up),
        group_thousands(r.devices as u64),
        group_thousands(r.failed),
        group_thousands(r.changes_replayed)
    );
    write_errors(s, &r.errors, &r.error_samples);
    for (what, l) in [
        ("per device", &r.latency_us),
        ("  handshake", &r.handshake_us),
        ("  hello", &r.hello_us),
        ("  catch-up", &r.catch_up_us),
    ] {
        let _ = writeln!(
            s,
            "  {what:<12}  p50 {}  p99 {}  max {}{}",
            format_micros(l.p50_us),
            format_micros(l.p99_us),
            format_micros(l.max_us),
            if what == "per device" {
                " (from the storm's start to SyncCaughtUp)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        s,
        "  resumes       {} reloads, {} gaps, {} duplicates, {} wrong cursors",
        r.reloads, r.gaps, r.dups, r.wrong_cursor
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(scenario: SyncScenario) -> SyncBenchReport {
        SyncBenchReport {
            scenario,
            endpoints: vec!["http://127.0.0.1:7710".into()],
            nodes: vec![NodeReport {
                node_id: 1,
                api: "http://127.0.0.1:7710".into(),
                sync_addr: "127.0.0.1:7712".into(),
                devices: 1_000,
            }],
            cluster: Some(ClusterShape {
                voters: 3,
                learners: 0,
                leader_id: Some(1),
            }),
            identity_pool_id: "local:abc".into(),
            role_arn: "arn:tessera:iam:::role/r".into(),
            devices: 1_000,
            identities: 286,
            devices_per_identity: [2, 5],
            seed: 1,
            sockets: 8,
            setup_secs: 3.5,
            connect: ConnectReport {
                devices: 1_000,
                connected: 1_000,
                concurrency: 64,
                secs: 2.0,
                ..Default::default()
            },
            push: None,
            idle: None,
            reconnect: None,
            checks: Vec::new(),
            udp: UdpReport::default(),
            cleaned_up: true,
        }
    }

    #[test]
    fn a_run_passes_only_when_every_check_does() {
        let mut r = base(SyncScenario::Push);
        assert!(!r.passed(), "no checks: no verdict");
        r.checks = vec![Check::new("a", "1".into(), "< 2".into(), true)];
        assert!(r.passed());
        r.checks.push(Check::new("b", "3".into(), "= 0".into(), false));
        assert!(!r.passed());
        let t = r.render(OutputFormat::Table);
        assert!(t.starts_with("tessera bench sync: push\n"), "{t}");
        assert!(t.contains("target        a: 1 (< 2)  PASS"), "{t}");
        assert!(t.contains("target        b: 3 (= 0)  FAIL"), "{t}");
        assert!(t.contains("cluster       3 voters (leader 1)"), "{t}");
    }

    #[test]
    fn json_is_one_parseable_object() {
        let mut r = base(SyncScenario::Idle);
        r.idle = Some(IdleReport {
            node_id: 1,
            api: "http://127.0.0.1:7710".into(),
            source: "/metrics".into(),
            settle_secs: 5.0,
            rss_before_bytes: 50 << 20,
            rss_after_bytes: 150 << 20,
            connections: 10_000,
            node_connections_before: Some(0),
            node_connections_after: Some(10_000),
            kib_per_connection: 10.24,
        });
        let j = r.render(OutputFormat::Json);
        assert_eq!(j.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["scenario"], "idle");
        assert_eq!(v["idle"]["connections"], 10_000);
        assert_eq!(v["push"], serde_json::Value::Null);
        let t = r.render(OutputFormat::Table);
        assert!(t.contains("per session   10.2 KiB"), "{t}");
        assert!(t.contains("50.0 MiB before, 150.0 MiB with 10,000 sessions"), "{t}");
    }
}
