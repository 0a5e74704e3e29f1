//! `tessera bench sync`: live sync to devices over QUIC, measured from the
//! devices' side, judged against the floors of issue 11.
//!
//! A run has three parts:
//!
//! 1. **Setup**, with the admin token ([`setup`]): a role and an identity
//!    pool that lets guests in with that role as its unauthenticated role,
//!    one guest identity per group of devices (`GetId` without logins) and
//!    its credentials (`GetCredentialsForIdentity`, the `session_token` a
//!    device presents), and each node's `/sync-info` (sync address,
//!    certificate fingerprint, largest frame).
//! 2. **Devices** ([`device`]): the bench's own lean device driver on
//!    `quinn`, [`crate::sync::frame`] and [`crate::proto`], rather than the
//!    product's client library (`sync::client`), which keeps a local copy
//!    of the data, queues writes and reconnects by itself: thousands of
//!    those would measure the library and the bench's own memory, not the
//!    server. Each device pins its node's certificate by the SHA-256 of
//!    its DER, as `/sync-info` announces it. All devices share a few UDP
//!    sockets (`--sockets`, one quinn endpoint each), so ten thousand
//!    connections need ten thousand file descriptors on neither side.
//! 3. **The scenario** ([`load`]), timed with one monotonic clock in this
//!    process:
//!
//! | scenario    | what is measured                                                            | floor              |
//! |-------------|-----------------------------------------------------------------------------|--------------------|
//! | `push`      | write-to-push latency: a write's acknowledgement to its change on each other device of the identity | p99 < 25 ms |
//! | `idle`      | one node's resident memory before and after holding `--devices` idle sessions | ≤ 20 KiB per connection |
//! | `reconnect` | every device dropped and reconnected at once with its cursor, until its `SyncCaughtUp` | all within 5 s |
//!
//! # Devices and identities
//!
//! Identities have `--devices-per-identity` devices each (2 to 5 by
//! default), their sizes drawn from `--seed`, so a run can be repeated
//! device for device. A device's index decides its node, round-robin over
//! the `--endpoint` nodes, and an identity's devices have consecutive
//! indices: with three nodes, the devices of one identity sit on
//! different nodes (a fourth and fifth device share a node with the first
//! and second), so a push crosses Raft from the writer's node to the
//! others'.
//!
//! # `push`
//!
//! Every device connects, says Hello and subscribes without a cursor (a
//! Reload, then `SyncCaughtUp`). Writes then come open-loop at
//! `--writes-per-sec`, each identity in turn, each time from the next of
//! its devices, as a `DeviceWrite` of that device's own record (so writes
//! never conflict) over its QUIC session. Each device's reader stamps
//! every frame as it decodes it: the writer's `SyncWriteResult` (whose
//! `ok` carries the change's cursor) and every device's `SyncChange`.
//! A push's latency is `max(0, arrival − acknowledgement)`: the change
//! may reach another device before the writer hears its acknowledgement,
//! and that push then counts as instant. Writes acknowledged inside the
//! measured window count; their pushes may arrive up to [`load::DRAIN`]
//! after it, and one that never does is missing. Every device also checks
//! that `cursor.seq` rises by exactly one from change to change (a gap or
//! a duplicate fails the run).
//!
//! # `idle`
//!
//! `--devices` sessions (10,000 by default) on ONE node: each connects,
//! says Hello and subscribes, then sends nothing. The node's resident
//! memory is read before the first connection and again `--settle`
//! seconds after the last caught up, from the node's `/metrics`
//! (`tessera_process_resident_memory_bytes`) or, with `--node-pid`, from
//! `/proc/<pid>/status`; the growth divided by the connections is the
//! cost of one. The node must allow that many (`[sync] max_connections`,
//! 20,000 by default).
//!
//! # `reconnect`
//!
//! Every device connects and catches up, and one write per identity
//! reaches all its devices, so each holds a cursor of a live history.
//! Then all connections are closed, `--missed-writes` changes per identity
//! are written by a separate session of each identity while its devices
//! are away, and all devices reconnect at once (to the next node by
//! default, `--reconnect-to`), each subscribing with its cursor. Each
//! must get exactly the changes it missed, in order, and `SyncCaughtUp`
//! at the identity's newest cursor, without a Reload; the time from the
//! storm's start to the last `SyncCaughtUp` is the figure.
//!
//! Everything setup created (the identity pool with its identities and
//! their data, and the role) is deleted at the end unless `--keep-pools`.

pub mod device;
pub mod load;
mod report;
mod setup;

use std::time::Duration;

use anyhow::bail;
use serde::Serialize;

pub use report::{
    Check, ConnectReport, IdleReport, NodeReport, PushReport, ReconnectReport, SyncBenchReport, UdpReport,
};

use super::driver::secs;
use super::{parse_endpoints, DEFAULT_ENDPOINT};
use crate::bench::identity::ClusterShape;
use crate::clock::random_bytes;

/// Most `--devices`: each is a guest identity's session, made in setup.
pub const MAX_DEVICES: usize = 100_000;
/// Most devices per identity: the sync listener's default per-identity
/// limit on one node (`[sync] max_connections_per_identity`), which the
/// `idle` scenario, all on one node, must stay under.
pub const MAX_DEVICES_PER_IDENTITY: usize = 16;
/// The write-to-push floor: p99 under this.
pub const PUSH_P99_FLOOR: Duration = Duration::from_millis(25);
/// The idle floor: at most this much resident memory per connection.
pub const IDLE_KIB_FLOOR: f64 = 20.0;
/// The reconnect floor: every device caught up within this.
pub const RECONNECT_FLOOR: Duration = Duration::from_secs(5);

/// The flags of `tessera bench sync`.
///
/// `--endpoint` and `--token` have the ids, types, env vars and defaults of
/// the CLI's global flags of the same names, so they coexist with them (see
/// [`super::AuthBenchArgs`]); `--output` is the CLI's global flag.
#[derive(Clone, clap::Args)]
pub struct SyncBenchArgs {
    /// Api endpoints of the nodes, comma separated. Devices are spread
    /// over them round-robin; each node's sync address and certificate
    /// fingerprint come from its `GET /sync-info`. Setup uses the first.
    /// `idle` takes exactly one.
    #[arg(long, env = "TESSERA_ENDPOINT", default_value = DEFAULT_ENDPOINT, value_name = "URL[,URL...]")]
    pub endpoint: String,
    /// Admin token (printed by `cluster init` and `dev`), for setup and
    /// teardown: the role, the identity pool and its roles.
    #[arg(long, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// What to measure: write-to-push latency under a write load (`push`),
    /// one node's memory per idle connection (`idle`), or a reconnect
    /// storm resuming from cursors (`reconnect`).
    #[arg(long, value_enum, default_value_t = SyncScenario::Push)]
    pub scenario: SyncScenario,
    /// Device connections. Default: 1,000 for `push` and `reconnect`,
    /// 10,000 for `idle`.
    #[arg(long)]
    pub devices: Option<usize>,
    /// Devices per identity, `MIN-MAX` or `N`; each identity's size is
    /// drawn from the range with `--seed`.
    #[arg(long, default_value = "2-5", value_name = "MIN-MAX")]
    pub devices_per_identity: String,
    /// Seed of the identities' sizes and of the order identities write in.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// `push`: writes per second over all identities, sent open-loop
    /// (on schedule, whether or not earlier ones were answered).
    #[arg(long, default_value_t = 200.0)]
    pub writes_per_sec: f64,
    /// `push`: seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// `push`: seconds of write load before measuring, not recorded.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// `push`: bytes of each written value.
    #[arg(long, default_value_t = 64)]
    pub value_bytes: usize,
    /// `reconnect`: changes written to each identity while its devices
    /// are away, which each device must catch up on.
    #[arg(long, default_value_t = 2)]
    pub missed_writes: usize,
    /// `reconnect`: whether devices come back to the node they left or to
    /// the next one (a cursor resumes on any node).
    #[arg(long, value_enum, default_value_t = ReconnectTo::Other)]
    pub reconnect_to: ReconnectTo,
    /// `idle`: seconds to wait after the last device caught up before
    /// reading the node's memory again.
    #[arg(long, default_value_t = 5.0)]
    pub settle: f64,
    /// `idle`: read the node's resident memory from `/proc/<PID>/status`
    /// (the node runs on this machine) instead of its `/metrics`.
    #[arg(long, value_name = "PID")]
    pub node_pid: Option<u32>,
    /// Devices connecting at once while the devices are set up (`push`,
    /// `idle`, and `reconnect` before its storm; the storm itself
    /// reconnects every device at once).
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// UDP sockets (quinn endpoints) the devices share, round-robin.
    #[arg(long, default_value_t = 8)]
    pub sockets: usize,
    /// Keep the identity pool and role instead of deleting them at the end.
    #[arg(long)]
    pub keep_pools: bool,
}

/// By hand, so that the admin token never reaches a log line.
impl std::fmt::Debug for SyncBenchArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncBenchArgs")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("scenario", &self.scenario)
            .field("devices", &self.devices)
            .field("devices_per_identity", &self.devices_per_identity)
            .field("seed", &self.seed)
            .field("writes_per_sec", &self.writes_per_sec)
            .field("duration", &self.duration)
            .field("warmup", &self.warmup)
            .field("value_bytes", &self.value_bytes)
            .field("missed_writes", &self.missed_writes)
            .field("reconnect_to", &self.reconnect_to)
            .field("settle", &self.settle)
            .field("node_pid", &self.node_pid)
            .field("connect_concurrency", &self.connect_concurrency)
            .field("sockets", &self.sockets)
            .field("keep_pools", &self.keep_pools)
            .finish()
    }
}

/// What a `bench sync` run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncScenario {
    /// Write-to-push latency with devices connected to every node.
    Push,
    /// Resident memory per idle device connection on one node.
    Idle,
    /// All devices reconnecting at once, resuming from their cursors.
    Reconnect,
}

impl SyncScenario {
    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncScenario::Push => "push",
            SyncScenario::Idle => "idle",
            SyncScenario::Reconnect => "reconnect",
        }
    }

    /// `--devices` when not given.
    pub fn default_devices(self) -> usize {
        match self {
            SyncScenario::Push | SyncScenario::Reconnect => 1_000,
            SyncScenario::Idle => 10_000,
        }
    }
}

/// Where a device reconnects in the `reconnect` scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReconnectTo {
    /// The node it was connected to.
    Same,
    /// The next node of `--endpoint` (the same one when there is one).
    Other,
}

/// One device of the run: which identity it belongs to and which node it
/// connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePlan {
    /// Its place among all devices (0, 1, ...).
    pub index: usize,
    /// Its identity's place among the identities.
    pub identity: usize,
    /// Its node's place in `--endpoint`.
    pub node: usize,
}

/// The validated arguments of a run. (No `Debug`: it holds the admin
/// token.)
#[derive(Clone)]
pub(crate) struct Plan {
    pub scenario: SyncScenario,
    pub endpoints: Vec<String>,
    pub token: String,
    pub devices: usize,
    pub per_identity: (usize, usize),
    pub seed: u64,
    pub writes_per_sec: f64,
    pub warmup: Duration,
    pub duration: Duration,
    pub value_bytes: usize,
    pub missed_writes: usize,
    pub reconnect_to: ReconnectTo,
    pub settle: Duration,
    pub node_pid: Option<u32>,
    pub connect_concurrency: usize,
    pub sockets: usize,
}

impl Plan {
    pub fn from_args(args: &SyncBenchArgs) -> anyhow::Result<Plan> {
        let endpoints = parse_endpoints(&args.endpoint);
        if endpoints.is_empty() {
            bail!("--endpoint: give at least one endpoint");
        }
        if args.scenario == SyncScenario::Idle && endpoints.len() != 1 {
            bail!(
                "--endpoint: the idle scenario measures one node's memory; give exactly one endpoint, not {}",
                endpoints.len()
            );
        }
        let Some(token) = args.token.as_deref().filter(|t| !t.is_empty()) else {
            bail!("--token (or TESSERA_ADMIN_TOKEN) is required: setup creates the identity pool, its role and its guests, and deletes them afterwards");
        };
        let devices = args.devices.unwrap_or(args.scenario.default_devices());
        if devices == 0 || devices > MAX_DEVICES {
            bail!("--devices must be 1 to {MAX_DEVICES}, not {devices}");
        }
        let per_identity = parse_range(&args.devices_per_identity)?;
        if args.scenario == SyncScenario::Push {
            if per_identity.0 < 2 {
                bail!("--devices-per-identity: push needs at least 2 devices per identity (a push goes to the writer's other devices)");
            }
            if devices < per_identity.0 {
                bail!(
                    "--devices: push needs at least one whole identity of {} devices",
                    per_identity.0
                );
            }
        }
        if !(args.writes_per_sec.is_finite() && args.writes_per_sec > 0.0 && args.writes_per_sec <= 100_000.0) {
            bail!("--writes-per-sec must be more than 0 and at most 100,000");
        }
        let duration = secs("--duration", args.duration)?;
        if duration.is_zero() {
            bail!("--duration must be more than 0 seconds");
        }
        if !(1..=4096).contains(&args.value_bytes) {
            bail!("--value-bytes must be 1 to 4096");
        }
        if args.missed_writes > 1_000 {
            bail!("--missed-writes: at most 1,000 per identity");
        }
        if args.connect_concurrency == 0 {
            bail!("--connect-concurrency must be at least 1");
        }
        if !(1..=1024).contains(&args.sockets) {
            bail!("--sockets must be 1 to 1024");
        }
        Ok(Plan {
            scenario: args.scenario,
            endpoints,
            token: token.to_string(),
            devices,
            per_identity,
            seed: args.seed,
            writes_per_sec: args.writes_per_sec,
            warmup: secs("--warmup", args.warmup)?,
            duration,
            value_bytes: args.value_bytes,
            missed_writes: args.missed_writes,
            reconnect_to: args.reconnect_to,
            settle: secs("--settle", args.settle)?,
            node_pid: args.node_pid,
            connect_concurrency: args.connect_concurrency,
            sockets: args.sockets,
        })
    }

    /// The identities' sizes and every device's identity and node.
    pub fn layout(&self) -> (Vec<usize>, Vec<DevicePlan>) {
        let sizes = identity_sizes(self.devices, self.per_identity, self.seed);
        let devices = assign_devices(&sizes, self.endpoints.len());
        (sizes, devices)
    }
}

/// `MIN-MAX` or `N` devices per identity, each 1 to
/// [`MAX_DEVICES_PER_IDENTITY`], MIN ≤ MAX.
pub fn parse_range(s: &str) -> anyhow::Result<(usize, usize)> {
    let bad = || anyhow::anyhow!("--devices-per-identity: {s:?} is not MIN-MAX or N (1 to {MAX_DEVICES_PER_IDENTITY})");
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        ),
        None => {
            let n: usize = s.trim().parse().map_err(|_| bad())?;
            (n, n)
        }
    };
    if lo == 0 || lo > hi || hi > MAX_DEVICES_PER_IDENTITY {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// A small deterministic generator (splitmix64): the same seed gives the
/// same identities on every build and platform, which a library RNG does
/// not promise across versions.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi` (`lo` ≤ `hi`).
    pub fn in_range(&mut self, lo: usize, hi: usize) -> usize {
        let span = (hi - lo) as u64 + 1;
        lo + usize::try_from(self.next_u64() % span).unwrap_or(0)
    }
}

/// Splits `devices` into identities of `min..=max` devices each, sizes
/// drawn from `seed`. A draw that would leave fewer than `min` devices
/// for the next identity takes them too, or leaves exactly `min`; only
/// when the range cannot split the total (fewer than `min` devices, or a
/// narrow range such as 4–5 with 7 devices) is the last identity smaller.
/// The default 2–5 always splits exactly.
pub fn identity_sizes(devices: usize, (min, max): (usize, usize), seed: u64) -> Vec<usize> {
    let mut rng = SplitMix::new(seed);
    let mut sizes = Vec::new();
    let mut left = devices;
    while left > 0 {
        let mut s = rng.in_range(min, max).min(left);
        let rest = left - s;
        if rest > 0 && rest < min {
            if s + rest <= max {
                s += rest;
            } else if s >= min + (min - rest) {
                s -= min - rest;
            }
        }
        sizes.push(s);
        left -= s;
    }
    sizes
}

/// Device indices in identity order (an identity's devices consecutive),
/// each on node `index % nodes`.
pub fn assign_devices(sizes: &[usize], nodes: usize) -> Vec<DevicePlan> {
    let nodes = nodes.max(1);
    let mut out = Vec::with_capacity(sizes.iter().sum());
    for (identity, &n) in sizes.iter().enumerate() {
        for _ in 0..n {
            let index = out.len();
            out.push(DevicePlan {
                index,
                identity,
                node: index % nodes,
            });
        }
    }
    out
}

/// Runs the bench: setup, the scenario, then the teardown of whatever
/// setup created (also when setup or the scenario failed).
pub async fn run(args: SyncBenchArgs) -> anyhow::Result<SyncBenchReport> {
    let plan = Plan::from_args(&args)?;
    let admin = crate::client::Client::connect(&plan.endpoints[0], Some(plan.token.clone()))
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {}: {e}", plan.endpoints[0]))?;
    let run_id = hex::encode(random_bytes::<4>());
    let cluster = ClusterShape::of(&admin).await;
    let mut created = setup::Created::default();

    let result = load::run(&plan, &admin, &run_id, &mut created, cluster).await;

    let cleaned_up = if args.keep_pools {
        false
    } else {
        created.delete(&admin).await
    };
    result.map(|mut r| {
        r.cleaned_up = cleaned_up;
        r
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::driver::test_cli::{BenchCmd, Cli, Cmd, MainOutput};
    use super::*;

    fn parse(argv: &[&str]) -> (Cli, SyncBenchArgs) {
        let cli = Cli::try_parse_from(argv).unwrap();
        let Cmd::Bench(BenchCmd::Sync(a)) = &cli.cmd else {
            panic!("not bench sync: {argv:?}");
        };
        let a = a.clone();
        (cli, a)
    }

    fn args(scenario: SyncScenario) -> SyncBenchArgs {
        let (_, mut a) = parse(&["tessera", "bench", "sync", "--token", "t", "--endpoint", "a:1,b:2,c:3"]);
        a.scenario = scenario;
        if scenario == SyncScenario::Idle {
            a.endpoint = "a:1".into();
        }
        a
    }

    #[test]
    fn cli_shape_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn debug_hides_the_token() {
        let (_, a) = parse(&["tessera", "bench", "sync", "--token", "s3cret-admin"]);
        let d = format!("{a:?}");
        assert!(!d.contains("s3cret-admin"), "{d}");
        assert!(d.contains("<redacted>"), "{d}");
    }

    #[test]
    fn defaults() {
        let (_, a) = parse(&["tessera", "bench", "sync"]);
        if std::env::var_os("TESSERA_ENDPOINT").is_none() {
            assert_eq!(parse_endpoints(&a.endpoint), vec![DEFAULT_ENDPOINT]);
        }
        assert_eq!(a.scenario, SyncScenario::Push);
        assert_eq!(a.devices, None);
        assert_eq!(a.devices_per_identity, "2-5");
        assert_eq!(a.seed, 1);
        assert_eq!(a.writes_per_sec, 200.0);
        assert_eq!(a.duration, 10.0);
        assert_eq!(a.warmup, 2.0);
        assert_eq!(a.value_bytes, 64);
        assert_eq!(a.missed_writes, 2);
        assert_eq!(a.reconnect_to, ReconnectTo::Other);
        assert_eq!(a.settle, 5.0);
        assert_eq!(a.node_pid, None);
        assert_eq!(a.connect_concurrency, 64);
        assert_eq!(a.sockets, 8);
        assert!(!a.keep_pools);
        assert_eq!(SyncScenario::Push.default_devices(), 1_000);
        assert_eq!(SyncScenario::Idle.default_devices(), 10_000);
        assert_eq!(SyncScenario::Reconnect.default_devices(), 1_000);
    }

    #[test]
    fn every_flag_parses_and_coexists_with_the_global_ones() {
        let (cli, a) = parse(&[
            "tessera",
            "bench",
            "sync",
            "--endpoint",
            "http://a:7700,http://b:7700",
            "--token",
            "t0k",
            "--scenario",
            "reconnect",
            "--devices",
            "300",
            "--devices-per-identity",
            "3-4",
            "--seed",
            "9",
            "--writes-per-sec",
            "50.5",
            "--duration",
            "3",
            "--warmup",
            "0",
            "--value-bytes",
            "16",
            "--missed-writes",
            "7",
            "--reconnect-to",
            "same",
            "--settle",
            "1.5",
            "--node-pid",
            "4242",
            "--connect-concurrency",
            "16",
            "--sockets",
            "2",
            "--keep-pools",
            "--output",
            "json",
        ]);
        assert_eq!(a.scenario, SyncScenario::Reconnect);
        assert_eq!(a.devices, Some(300));
        assert_eq!(a.devices_per_identity, "3-4");
        assert_eq!(a.seed, 9);
        assert_eq!(a.writes_per_sec, 50.5);
        assert_eq!(a.duration, 3.0);
        assert_eq!(a.warmup, 0.0);
        assert_eq!(a.value_bytes, 16);
        assert_eq!(a.missed_writes, 7);
        assert_eq!(a.reconnect_to, ReconnectTo::Same);
        assert_eq!(a.settle, 1.5);
        assert_eq!(a.node_pid, Some(4242));
        assert_eq!(a.connect_concurrency, 16);
        assert_eq!(a.sockets, 2);
        assert!(a.keep_pools);
        assert_eq!(cli.output, MainOutput::Json);
        assert_eq!(cli.token.as_deref(), Some("t0k"));
        assert_eq!(cli.endpoint, "http://a:7700,http://b:7700");
        for (name, s) in [
            ("push", SyncScenario::Push),
            ("idle", SyncScenario::Idle),
            ("reconnect", SyncScenario::Reconnect),
        ] {
            let (_, a) = parse(&["tessera", "bench", "sync", "--scenario", name]);
            assert_eq!(a.scenario, s);
            assert_eq!(s.as_str(), name);
            assert_eq!(serde_json::to_value(s).unwrap(), name);
        }
        assert!(Cli::try_parse_from(["tessera", "bench", "sync", "--scenario", "storm"]).is_err());
        assert!(Cli::try_parse_from(["tessera", "bench", "sync", "--reconnect-to", "any"]).is_err());
    }

    #[test]
    fn global_flags_before_the_subcommand_reach_it() {
        let (_, a) = parse(&["tessera", "--endpoint", "x:1,y:2", "--token", "t", "bench", "sync"]);
        assert_eq!(parse_endpoints(&a.endpoint), vec!["x:1", "y:2"]);
        assert_eq!(a.token.as_deref(), Some("t"));
    }

    #[test]
    fn plans_validate_their_arguments() {
        let p = Plan::from_args(&args(SyncScenario::Push)).unwrap();
        assert_eq!(p.devices, 1_000);
        assert_eq!(p.per_identity, (2, 5));
        assert_eq!(p.endpoints.len(), 3);
        assert_eq!(p.duration, Duration::from_secs(10));
        assert_eq!(p.warmup, Duration::from_secs(2));
        assert_eq!(Plan::from_args(&args(SyncScenario::Idle)).unwrap().devices, 10_000);

        let mut a = args(SyncScenario::Push);
        a.token = None;
        let Err(e) = Plan::from_args(&a) else {
            panic!("a plan without a token");
        };
        assert!(e.to_string().contains("--token"), "{e}");

        // idle measures one node.
        let mut a = args(SyncScenario::Idle);
        a.endpoint = "a:1,b:2".into();
        let Err(e) = Plan::from_args(&a) else {
            panic!("idle over two nodes");
        };
        assert!(e.to_string().contains("exactly one endpoint"), "{e}");

        type Spoil = fn(&mut SyncBenchArgs);
        let bad: [(SyncScenario, Spoil); 16] = [
            (SyncScenario::Push, |a| a.devices = Some(0)),
            (SyncScenario::Push, |a| a.devices = Some(MAX_DEVICES + 1)),
            (SyncScenario::Push, |a| a.devices = Some(1)),
            (SyncScenario::Push, |a| a.devices_per_identity = "1-5".into()),
            (SyncScenario::Push, |a| a.devices_per_identity = "5-2".into()),
            (SyncScenario::Push, |a| a.devices_per_identity = "2-17".into()),
            (SyncScenario::Push, |a| a.devices_per_identity = "two".into()),
            (SyncScenario::Push, |a| a.writes_per_sec = 0.0),
            (SyncScenario::Push, |a| a.writes_per_sec = f64::NAN),
            (SyncScenario::Push, |a| a.duration = 0.0),
            (SyncScenario::Push, |a| a.warmup = -1.0),
            (SyncScenario::Push, |a| a.value_bytes = 0),
            (SyncScenario::Push, |a| a.connect_concurrency = 0),
            (SyncScenario::Push, |a| a.sockets = 0),
            (SyncScenario::Reconnect, |a| a.missed_writes = 1_001),
            (SyncScenario::Idle, |a| a.settle = f64::INFINITY),
        ];
        for (i, (scenario, spoil)) in bad.iter().enumerate() {
            let mut a = args(*scenario);
            spoil(&mut a);
            assert!(Plan::from_args(&a).is_err(), "bad flags #{i} were accepted");
        }
        // One device per identity is fine where no push is measured.
        let mut a = args(SyncScenario::Idle);
        a.devices_per_identity = "1".into();
        a.devices = Some(1);
        assert_eq!(Plan::from_args(&a).unwrap().per_identity, (1, 1));
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("2-5").unwrap(), (2, 5));
        assert_eq!(parse_range(" 3 - 3 ").unwrap(), (3, 3));
        assert_eq!(parse_range("4").unwrap(), (4, 4));
        assert_eq!(parse_range("16").unwrap(), (16, 16));
        for bad in ["", "0", "0-3", "3-2", "1-17", "a-b", "2-", "-2"] {
            assert!(parse_range(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn identity_sizes_cover_every_device_within_the_range() {
        for seed in 0..50 {
            for devices in [2usize, 3, 5, 6, 7, 11, 100, 1_000, 10_000] {
                for range in [(2, 5), (1, 1), (3, 3), (2, 16), (4, 5)] {
                    let sizes = identity_sizes(devices, range, seed);
                    assert_eq!(sizes.iter().sum::<usize>(), devices, "{devices} {range:?} {seed}");
                    let in_range = |s: &usize| *s >= range.0 && *s <= range.1;
                    let (last, rest) = sizes.split_last().unwrap();
                    assert!(
                        rest.iter().all(in_range),
                        "{devices} devices, {range:?}, seed {seed}: {sizes:?}"
                    );
                    assert!(*last <= range.1);
                    // A range as wide as 2-5 always splits exactly.
                    if devices >= range.0 && range.1 + 1 >= 2 * range.0 {
                        assert!(in_range(last), "{devices} devices, {range:?}, seed {seed}: {sizes:?}");
                    }
                }
            }
        }
        // Fewer devices than an identity's minimum: one small identity.
        assert_eq!(identity_sizes(1, (2, 5), 1), vec![1]);
        // Deterministic from the seed, and the seed matters.
        assert_eq!(identity_sizes(1_000, (2, 5), 7), identity_sizes(1_000, (2, 5), 7));
        assert_ne!(identity_sizes(1_000, (2, 5), 7), identity_sizes(1_000, (2, 5), 8));
        // Every size of the range occurs in a large run.
        let sizes = identity_sizes(10_000, (2, 5), 1);
        for n in 2..=5 {
            assert!(sizes.contains(&n), "no identity of {n} devices");
        }
    }

    #[test]
    fn devices_of_an_identity_sit_on_different_nodes() {
        let sizes = identity_sizes(1_000, (2, 5), 3);
        let devices = assign_devices(&sizes, 3);
        assert_eq!(devices.len(), 1_000);
        for (i, d) in devices.iter().enumerate() {
            assert_eq!(d.index, i);
            assert_eq!(d.node, i % 3);
        }
        let mut start = 0;
        for (identity, &n) in sizes.iter().enumerate() {
            let mine = &devices[start..start + n];
            assert!(mine.iter().all(|d| d.identity == identity));
            // The first three devices of an identity are on three nodes.
            let first: std::collections::BTreeSet<usize> = mine.iter().take(3).map(|d| d.node).collect();
            assert_eq!(first.len(), n.min(3), "identity {identity}: {mine:?}");
            start += n;
        }
        // Per node, the devices are spread evenly.
        for node in 0..3 {
            let n = devices.iter().filter(|d| d.node == node).count();
            assert!((333..=334).contains(&n), "node {node}: {n}");
        }
        // One node: everything on it.
        assert!(assign_devices(&[2, 3], 1).iter().all(|d| d.node == 0));
    }
}
