#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
//! Acceptance benchmark of the foundation: replicated, durable writes on a
//! real three-node cluster.
//!
//! The bench starts three `tessera serve` processes of the real binary on
//! loopback, each with its own data dir (fsync stays on: the product has no
//! switch to turn it off), forms the cluster with the CLI exactly as an
//! operator would (`cluster init`, then `cluster add-node` twice), and then
//! drives `CreateUserPool` — one Raft entry, fsynced on a quorum before the
//! answer — from 1, 16, 64 and 256 concurrent clients spread round-robin over
//! all three nodes (followers forward to the leader).
//!
//! For each level it warms up for about a second, then measures for
//! `BENCH_SECS` seconds (default 5) and prints writes/s, p50 and p99 latency
//! and errors, the group-commit figures of the leader over the window, the
//! targets of the foundation issue (>= 5,000 writes/s at 64 clients, and
//! throughput(64) / throughput(1) >= 8) as PASS/MISS, and one JSON line with
//! every number.
//!
//! ```text
//! CARGO_TARGET_DIR=/var/tmp/tessera-target cargo bench --bench replicated_writes
//! BENCH_SECS=10 BENCH_LEVELS=1,64 cargo bench --bench replicated_writes
//! ```
//!
//! Environment: `BENCH_SECS` (measured seconds per level, default 5),
//! `BENCH_WARMUP_SECS` (default 1), `BENCH_LEVELS` (comma-separated client
//! counts, default `1,16,64,256`), `BENCH_DIR` (parent of the node data dirs,
//! default the system temp dir; it should be on the disk you mean to
//! measure, never tmpfs). Under `cargo test --benches` (no `--bench` flag)
//! the bench only says how to run it, unless `BENCH_SMOKE=1`, which runs a
//! short smoke pass.
//!
//! Every node process is killed when the cluster guard drops: at the end, on
//! an error and on a panic.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;
use serde_json::json;
use tessera::client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// Clients that share one gRPC connection (HTTP/2 multiplexes them).
const CLIENTS_PER_CONNECTION: usize = 16;
/// A single write that takes longer than this counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the cluster may take to come up, each step.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Environment variables the nodes and the CLI must not inherit.
const SCRUBBED_ENV: &[&str] = &[
    "TESSERA_CONFIG",
    "TESSERA_NODE_ID",
    "TESSERA_DATA_DIR",
    "TESSERA_API_ADDR",
    "TESSERA_PEER_ADDR",
    "TESSERA_ADVERTISE_API_ADDR",
    "TESSERA_ADVERTISE_PEER_ADDR",
    "TESSERA_LOG_FORMAT",
    "TESSERA_ENDPOINT",
    "TESSERA_ADMIN_TOKEN",
];

// ---------------------------------------------------------------------------
// Settings

struct Settings {
    secs: f64,
    warmup_secs: f64,
    levels: Vec<usize>,
    base_dir: PathBuf,
}

fn env_f64(name: &str, default: f64) -> Result<f64> {
    match std::env::var(name) {
        Ok(v) => {
            let x: f64 = v
                .trim()
                .parse()
                .with_context(|| format!("{name}={v:?} is not a number"))?;
            if !(x.is_finite() && x >= 0.0) {
                bail!("{name}={v:?} must be a non-negative number of seconds");
            }
            Ok(x)
        }
        Err(_) => Ok(default),
    }
}

impl Settings {
    fn from_env(smoke: bool) -> Result<Self> {
        let (secs, warmup, levels) = if smoke {
            (1.0, 0.3, "1,16".to_string())
        } else {
            (5.0, 1.0, "1,16,64,256".to_string())
        };
        let secs = env_f64("BENCH_SECS", secs)?;
        if secs <= 0.0 {
            bail!("BENCH_SECS must be positive");
        }
        let warmup_secs = env_f64("BENCH_WARMUP_SECS", warmup)?;
        let levels_text = std::env::var("BENCH_LEVELS").unwrap_or(levels);
        let levels = levels_text
            .split(',')
            .map(|s| s.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .ok()
            .filter(|l| !l.is_empty() && l.iter().all(|&c| (1..=4096).contains(&c)))
            .ok_or_else(|| anyhow!("BENCH_LEVELS={levels_text:?}: want comma-separated client counts in 1..=4096"))?;
        let base_dir = std::env::var_os("BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        Ok(Settings {
            secs,
            warmup_secs,
            levels,
            base_dir,
        })
    }
}

// ---------------------------------------------------------------------------
// The cluster: three node processes and the guard that kills them

struct Node {
    id: u64,
    api: String,
    peer: String,
    child: Option<Child>,
    log: PathBuf,
    /// Holds the data dir and the log; removed when the node is dropped.
    _dir: tempfile::TempDir,
}

impl Node {
    fn url(&self) -> String {
        format!("http://{}", self.api)
    }
}

/// Kills every node process when dropped: at the end, on error, on panic.
struct Cluster {
    nodes: Vec<Node>,
    token: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Cluster {
    /// Prints the tail of every node's log (for diagnosing a failed start).
    fn dump_logs(&self, lines: usize) {
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            eprintln!("--- node {} log ({} lines, last {lines}) ---", n.id, all.len());
            for l in &all[all.len().saturating_sub(lines)..] {
                eprintln!("{l}");
            }
        }
    }

    /// Fails if a node process has exited.
    fn check_alive(&mut self) -> Result<()> {
        for n in &mut self.nodes {
            if let Some(child) = n.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("node {} exited early with {status}", n.id);
                }
            }
        }
        Ok(())
    }
}

/// `n` distinct free loopback ports: all bound at once, then released.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok(ports)
}

fn spawn_node(id: u64, api: String, peer: String, base: &Path) -> Result<Node> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("tessera-bench-n{id}-"))
        .tempdir_in(base)
        .with_context(|| format!("creating a temp dir in {}", base.display()))?;
    let data = dir.path().join("data");
    let log = dir.path().join("node.log");
    let out = File::create(&log)?;
    let err = out.try_clone()?;
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("serve")
        .arg("--node-id")
        .arg(id.to_string())
        .arg("--data-dir")
        .arg(&data)
        .arg("--api-addr")
        .arg(&api)
        .arg("--peer-addr")
        .arg(&peer)
        .env("RUST_LOG", "warn")
        .env("TESSERA_JOIN_TOKEN", join_token())
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    for v in SCRUBBED_ENV {
        cmd.env_remove(v);
    }
    let child = cmd.spawn().with_context(|| format!("starting {BIN}"))?;
    Ok(Node {
        id,
        api,
        peer,
        child: Some(child),
        log,
        _dir: dir,
    })
}

/// Runs the CLI with a deadline and returns its stdout.
async fn cli(args: &[&str]) -> Result<String> {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for v in SCRUBBED_ENV {
        cmd.env_remove(v);
    }
    let shown: Vec<&str> = args
        .iter()
        .scan(false, |secret, a| {
            let s = if *secret { "<token>" } else { *a };
            *secret = *a == "--token";
            Some(s)
        })
        .collect();
    let out = tokio::time::timeout(STEP_TIMEOUT, cmd.output())
        .await
        .map_err(|_| anyhow!("`tessera {}` did not finish within {STEP_TIMEOUT:?}", shown.join(" ")))??;
    if !out.status.success() {
        bail!(
            "`tessera {}` failed ({}): {}{}",
            shown.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `GET path` until it answers 200, or fails after [`STEP_TIMEOUT`].
async fn wait_http_ok(cluster: &mut Cluster, idx: usize, path: &str) -> Result<()> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let addr = cluster.nodes[idx].api.clone();
    loop {
        let last = match http_get(&addr, path).await {
            Ok((200, _)) => return Ok(()),
            Ok((code, body)) => format!("HTTP {code}: {}", body.trim()),
            Err(e) => e.to_string(),
        };
        cluster.check_alive()?;
        if Instant::now() >= deadline {
            bail!(
                "node {} never answered 200 on {path} within {STEP_TIMEOUT:?}; last: {last}",
                idx + 1
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_cluster(base: &Path) -> Result<Cluster> {
    let ports = free_ports(6)?;
    let mut cluster = Cluster {
        nodes: Vec::new(),
        token: String::new(),
    };
    for i in 0..3u64 {
        let api = format!("127.0.0.1:{}", ports[2 * i as usize]);
        let peer = format!("127.0.0.1:{}", ports[2 * i as usize + 1]);
        cluster.nodes.push(spawn_node(i + 1, api, peer, base)?);
    }
    match form_cluster(&mut cluster).await {
        Ok(()) => Ok(cluster),
        Err(e) => {
            cluster.dump_logs(30);
            Err(e)
        }
    }
}

/// The join token every node is started with, registered after init.
fn join_token() -> String {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN
        .get_or_init(|| tessera::raft::join::JoinToken::generate().reveal())
        .clone()
}

/// `cluster init` on node 1, then `cluster add-node` for nodes 2 and 3, then
/// waits until every node is ready (member, knows the leader, caught up).
async fn form_cluster(cluster: &mut Cluster) -> Result<()> {
    for i in 0..3 {
        wait_http_ok(cluster, i, "/healthz").await?;
    }
    let endpoint = cluster.nodes[0].url();
    let out = cli(&["--endpoint", &endpoint, "--output", "json", "cluster", "init"]).await?;
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).with_context(|| format!("`cluster init` printed {out:?}, not JSON"))?;
    cluster.token = v["admin_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| anyhow!("`cluster init` printed no admin_token: {out}"))?
        .to_string();
    let cluster_id = v["cluster_id"].as_str().unwrap_or("?").to_string();
    println!("cluster {cluster_id} initialised on node 1 ({endpoint})");
    let token = cluster.token.clone();
    let join = join_token();
    cli(&[
        "--endpoint",
        &endpoint,
        "--token",
        &token,
        "--output",
        "json",
        "cluster",
        "join-token",
        "create",
        "--max-uses",
        "0",
        "--join-token",
        &join,
    ])
    .await?;
    for i in 1..3 {
        wait_http_ok(cluster, 0, "/healthz").await?;
        wait_http_ok(cluster, i, "/healthz").await?;
        let (id, peer, api) = {
            let n = &cluster.nodes[i];
            (n.id.to_string(), n.peer.clone(), n.api.clone())
        };
        let token = cluster.token.clone();
        cli(&[
            "--endpoint",
            &endpoint,
            "--token",
            &token,
            "--output",
            "json",
            "cluster",
            "add-node",
            "--node-id",
            &id,
            "--peer-addr",
            &peer,
            "--api-addr",
            &api,
        ])
        .await?;
        println!("node {id} added (api {api}, peer {peer})");
    }
    for i in 0..3 {
        wait_http_ok(cluster, i, "/readyz").await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// HTTP/1.1 and Prometheus scraping

/// A minimal HTTP/1.1 GET (`Connection: close`), bounded in time.
async fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| anyhow!("GET {addr}{path} timed out"))??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("GET {addr}{path}: truncated response"))?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("GET {addr}{path}: bad status line"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Ok((code, body))
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size_line, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// Unlabelled samples of one `/metrics` scrape.
#[derive(Default, Clone)]
struct Prom(BTreeMap<String, f64>);

impl Prom {
    fn parse(text: &str) -> Self {
        let mut m = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.contains('{') {
                continue;
            }
            let mut parts = line.split_whitespace();
            if let (Some(name), Some(value)) = (parts.next(), parts.next()) {
                if let Ok(v) = value.parse::<f64>() {
                    m.insert(name.to_string(), v);
                }
            }
        }
        Prom(m)
    }

    fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }
}

const M_FSYNC_SUM: &str = "tessera_wal_fsync_batch_size_sum";
const M_FSYNC_COUNT: &str = "tessera_wal_fsync_batch_size_count";
const M_FSYNCS: &str = "tessera_wal_fsyncs_total";
const M_LAST_LOG: &str = "tessera_raft_last_log_index";
const M_IS_LEADER: &str = "tessera_raft_is_leader";
const M_PROPOSAL_SUM: &str = "tessera_proposal_latency_seconds_sum";
const M_PROPOSAL_COUNT: &str = "tessera_proposal_latency_seconds_count";
const M_APPLY_SUM: &str = "tessera_apply_batch_size_sum";
const M_APPLY_COUNT: &str = "tessera_apply_batch_size_count";
const M_FORWARDED: &str = "tessera_forwarded_proposals_total";
const M_SNAPSHOTS: &str = "tessera_snapshots_built_total";

async fn scrape(addr: &str) -> Result<Prom> {
    let (code, body) = http_get(addr, "/metrics").await?;
    if code != 200 {
        bail!("GET {addr}/metrics answered HTTP {code}");
    }
    Ok(Prom::parse(&body))
}

/// One scrape per node, in node order; a node that cannot be scraped gets an
/// empty sample.
async fn scrape_all(addrs: &[String]) -> Vec<Prom> {
    let mut out = Vec::new();
    for a in addrs {
        out.push(scrape(a).await.unwrap_or_default());
    }
    out
}

fn leader_of(scrapes: &[Prom]) -> Option<usize> {
    scrapes.iter().position(|p| p.get(M_IS_LEADER) > 0.5)
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| num / den)
}

// ---------------------------------------------------------------------------
// The workload

#[derive(Default)]
struct TaskResult {
    ok: u64,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    hist: Option<Histogram<u64>>,
}

fn new_hist() -> Histogram<u64> {
    // Microseconds, 1 us .. 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// One closed-loop client: writes back to back until `end`, counting only
/// the writes that complete inside `[start, end)`.
async fn client_loop(client: Client, id: usize, clients: usize, start: Instant, end: Instant) -> TaskResult {
    let mut r = TaskResult {
        hist: Some(new_hist()),
        ..Default::default()
    };
    let mut n = 0u64;
    while Instant::now() < end {
        let name = format!("bench-c{clients}-t{id}-{n}");
        n += 1;
        let t0 = Instant::now();
        let res = tokio::time::timeout(REQUEST_TIMEOUT, client.create_user_pool(&name)).await;
        let done = Instant::now();
        if done < start || done >= end {
            continue;
        }
        match res {
            Ok(Ok(_)) => {
                r.ok += 1;
                let us = u64::try_from(done.duration_since(t0).as_micros()).unwrap_or(u64::MAX);
                if let Some(h) = r.hist.as_mut() {
                    h.saturating_record(us.max(1));
                }
            }
            Ok(Err(status)) => {
                r.errors += 1;
                let msg: String = status.message().chars().take(100).collect();
                *r.error_kinds.entry(format!("{:?}: {msg}", status.code())).or_default() += 1;
            }
            Err(_) => {
                r.errors += 1;
                *r.error_kinds
                    .entry(format!("client timeout after {REQUEST_TIMEOUT:?}"))
                    .or_default() += 1;
            }
        }
    }
    r
}

struct LevelResult {
    clients: usize,
    connections: usize,
    secs: f64,
    ok: u64,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    aborted_tasks: usize,
    hist: Histogram<u64>,
    leader: Option<usize>,
    /// Leader-side deltas over the measured window.
    fsyncs: f64,
    appends_per_fsync: Option<f64>,
    entries_per_fsync: Option<f64>,
    server_proposal_ms: Option<f64>,
}

impl LevelResult {
    fn writes_per_sec(&self) -> f64 {
        self.ok as f64 / self.secs
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

async fn run_level(cluster: &Cluster, clients: usize, settings: &Settings) -> Result<LevelResult> {
    // Client i talks to node i % 3; every 16 clients of a node share one
    // connection.
    let mut conns: Vec<Vec<Client>> = Vec::new();
    for (node, n) in cluster.nodes.iter().enumerate() {
        let on_node = (clients + 2 - node) / 3;
        let wanted = on_node.div_ceil(CLIENTS_PER_CONNECTION);
        let mut v = Vec::new();
        for _ in 0..wanted {
            v.push(
                Client::connect(&n.url(), Some(cluster.token.clone()))
                    .await
                    .with_context(|| format!("connecting to node {}", n.id))?,
            );
        }
        conns.push(v);
    }
    let connections = conns.iter().map(Vec::len).sum();
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.api.clone()).collect();

    let t0 = Instant::now();
    let start = t0 + Duration::from_secs_f64(settings.warmup_secs);
    let end = start + Duration::from_secs_f64(settings.secs);
    let mut tasks = JoinSet::new();
    for i in 0..clients {
        let node = i % 3;
        let client = conns[node][(i / 3) / CLIENTS_PER_CONNECTION].clone();
        tasks.spawn(client_loop(client, i, clients, start, end));
    }

    tokio::time::sleep_until(start.into()).await;
    let before = scrape_all(&addrs).await;
    tokio::time::sleep_until(end.into()).await;
    let after = scrape_all(&addrs).await;

    // Every task stops by itself within REQUEST_TIMEOUT of `end`; anything
    // still running after a grace period is aborted and reported.
    let mut results = Vec::new();
    let mut aborted_tasks = 0;
    let grace = tokio::time::sleep(REQUEST_TIMEOUT + Duration::from_secs(5));
    tokio::pin!(grace);
    loop {
        tokio::select! {
            next = tasks.join_next() => match next {
                Some(Ok(r)) => results.push(r),
                Some(Err(_)) => aborted_tasks += 1,
                None => break,
            },
            _ = &mut grace => {
                aborted_tasks += tasks.len();
                tasks.abort_all();
                break;
            }
        }
    }

    let mut hist = new_hist();
    let (mut ok, mut errors) = (0, 0);
    let mut error_kinds = BTreeMap::new();
    for r in results {
        ok += r.ok;
        errors += r.errors;
        for (k, v) in r.error_kinds {
            *error_kinds.entry(k).or_insert(0) += v;
        }
        if let Some(h) = r.hist {
            hist.add(&h).expect("histograms with equal bounds merge");
        }
    }

    let leader = leader_of(&after);
    let d = |name: &str| leader.map(|l| after[l].get(name) - before[l].get(name)).unwrap_or(0.0);
    Ok(LevelResult {
        clients,
        connections,
        secs: settings.secs,
        ok,
        errors,
        error_kinds,
        aborted_tasks,
        hist,
        leader,
        fsyncs: d(M_FSYNCS),
        appends_per_fsync: ratio(d(M_FSYNC_SUM), d(M_FSYNC_COUNT)),
        entries_per_fsync: ratio(d(M_LAST_LOG), d(M_FSYNC_COUNT)),
        server_proposal_ms: ratio(d(M_PROPOSAL_SUM) * 1000.0, d(M_PROPOSAL_COUNT)),
    })
}

// ---------------------------------------------------------------------------
// Environment probes

/// The filesystem type holding `path`, from /proc/mounts (Linux).
fn fs_type(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, mnt, ty) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(mnt).then(|| (mnt.len(), ty.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, ty)| ty)
        .unwrap_or_else(|| "unknown".into())
}

/// Mean latency of a small write + fdatasync in `dir`, the floor under every
/// durable Raft append on this disk.
fn fsync_probe(dir: &Path) -> Result<(f64, usize)> {
    let probe = tempfile::Builder::new()
        .prefix("tessera-bench-fsync-")
        .tempfile_in(dir)?;
    let mut f = probe.as_file();
    let block = [0x5au8; 512];
    let started = Instant::now();
    let mut n = 0;
    while n < 500 && started.elapsed() < Duration::from_millis(500) {
        f.write_all(&block)?;
        f.sync_data()?;
        n += 1;
    }
    Ok((started.elapsed().as_secs_f64() * 1000.0 / n.max(1) as f64, n))
}

// ---------------------------------------------------------------------------
// Main

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "-".into())
}

fn main() -> Result<()> {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let smoke = !bench_mode && std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1");
    if !bench_mode && !smoke {
        println!(
            "replicated_writes: skipped (test mode). Run it with `cargo bench --bench replicated_writes`, \
             or set BENCH_SMOKE=1 for a short smoke pass."
        );
        return Ok(());
    }
    let settings = Settings::from_env(smoke)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(settings))
}

async fn run(settings: Settings) -> Result<()> {
    let (fsync_ms, fsync_n) = fsync_probe(&settings.base_dir)?;
    println!(
        "replicated_writes: 3 nodes on loopback, data under {} ({}), fsync probe: {fsync_ms:.3} ms per 512 B write+fdatasync ({fsync_n} samples)",
        settings.base_dir.display(),
        fs_type(&settings.base_dir)
    );
    println!(
        "levels {:?}, warm-up {:.1} s, measured {:.1} s each, {} clients per connection, {} cores",
        settings.levels,
        settings.warmup_secs,
        settings.secs,
        CLIENTS_PER_CONNECTION,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );

    let setup = Instant::now();
    let mut cluster = start_cluster(&settings.base_dir).await?;
    println!("cluster formed in {:.1} s", setup.elapsed().as_secs_f64());

    let mut results = Vec::new();
    for &clients in &settings.levels {
        cluster.check_alive()?;
        let r = run_level(&cluster, clients, &settings).await?;
        println!(
            "  {:>4} clients: {:>9.0} writes/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
            r.clients,
            r.writes_per_sec(),
            r.quantile_ms(0.5),
            r.quantile_ms(0.99),
            r.errors
        );
        results.push(r);
    }
    cluster.check_alive()?;

    // Table.
    println!();
    println!(
        "{:>7} {:>6} {:>10} {:>8} {:>8} {:>8} {:>7} {:>7} {:>9} {:>9} {:>10}",
        "clients",
        "conns",
        "writes/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "leader",
        "app/fsync",
        "ent/fsync",
        "server ms"
    );
    for r in &results {
        println!(
            "{:>7} {:>6} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>7} {:>9} {:>9} {:>10}",
            r.clients,
            r.connections,
            r.writes_per_sec(),
            r.quantile_ms(0.5),
            r.quantile_ms(0.99),
            r.hist.max() as f64 / 1000.0,
            r.errors,
            r.leader.map(|l| (l + 1).to_string()).unwrap_or_else(|| "?".into()),
            fmt_opt(r.appends_per_fsync, 1),
            fmt_opt(r.entries_per_fsync, 1),
            fmt_opt(r.server_proposal_ms, 2),
        );
    }
    println!(
        "(app/fsync, ent/fsync: log appends and entries per WAL fsync on the leader during the window; \
         server ms: mean proposal latency on the leader)"
    );
    for r in &results {
        if r.aborted_tasks > 0 {
            println!(
                "  {} clients: {} client tasks did not stop in time and were aborted",
                r.clients, r.aborted_tasks
            );
        }
        for (kind, n) in &r.error_kinds {
            println!("  {} clients: {n} x {kind}", r.clients);
        }
    }

    // Targets.
    let thr = |c: usize| results.iter().find(|r| r.clients == c).map(LevelResult::writes_per_sec);
    let (t1, t64) = (thr(1), thr(64));
    let scaling = match (t64, t1) {
        (Some(a), Some(b)) => ratio(a, b),
        _ => None,
    };
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "PASS",
        Some(false) => "MISS",
        None => "n/a (level not run)",
    };
    let pass_64 = t64.map(|t| t >= 5000.0);
    let pass_ratio = scaling.map(|s| s >= 8.0);
    println!();
    println!("throughput(64)/throughput(1) = {}", fmt_opt(scaling, 2));
    println!(
        "target >= 5000 writes/s at 64 clients: {} ({} writes/s)",
        verdict(pass_64),
        fmt_opt(t64, 0)
    );
    println!("target ratio >= 8: {} ({})", verdict(pass_ratio), fmt_opt(scaling, 2));

    // Group-commit evidence, cumulative since start.
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.api.clone()).collect();
    let finals = scrape_all(&addrs).await;
    let leader = leader_of(&finals);
    println!();
    println!("group commit (cumulative, from /metrics):");
    for (i, p) in finals.iter().enumerate() {
        let role = if Some(i) == leader { "leader  " } else { "follower" };
        println!(
            "  node {} {role}: {M_FSYNC_SUM}={} {M_FSYNC_COUNT}={} -> {} appends/fsync; {M_FSYNCS}={}; \
             last_log_index={} -> {} entries/fsync; apply batch {}; forwarded={}; snapshots={}",
            i + 1,
            p.get(M_FSYNC_SUM),
            p.get(M_FSYNC_COUNT),
            fmt_opt(ratio(p.get(M_FSYNC_SUM), p.get(M_FSYNC_COUNT)), 2),
            p.get(M_FSYNCS),
            p.get(M_LAST_LOG),
            fmt_opt(ratio(p.get(M_LAST_LOG), p.get(M_FSYNCS)), 2),
            fmt_opt(ratio(p.get(M_APPLY_SUM), p.get(M_APPLY_COUNT)), 2),
            p.get(M_FORWARDED),
            p.get(M_SNAPSHOTS),
        );
    }

    // Machine-readable line.
    let levels: Vec<_> = results
        .iter()
        .map(|r| {
            json!({
                "clients": r.clients,
                "connections": r.connections,
                "secs": r.secs,
                "writes": r.ok,
                "writes_per_sec": r.writes_per_sec(),
                "p50_ms": r.quantile_ms(0.5),
                "p90_ms": r.quantile_ms(0.9),
                "p99_ms": r.quantile_ms(0.99),
                "max_ms": r.hist.max() as f64 / 1000.0,
                "errors": r.errors,
                "aborted_tasks": r.aborted_tasks,
                "leader_node": r.leader.map(|l| l + 1),
                "leader_fsyncs": r.fsyncs,
                "leader_appends_per_fsync": r.appends_per_fsync,
                "leader_entries_per_fsync": r.entries_per_fsync,
                "leader_proposal_ms": r.server_proposal_ms,
            })
        })
        .collect();
    let leader_p = leader.map(|l| &finals[l]);
    let line = json!({
        "bench": "replicated_writes",
        "nodes": 3,
        "fsync_probe_ms": fsync_ms,
        "warmup_secs": settings.warmup_secs,
        "levels": levels,
        "ratio_64_over_1": scaling,
        "target_5000_at_64": pass_64,
        "target_ratio_8": pass_ratio,
        "leader_node": leader.map(|l| l + 1),
        "leader_wal_fsync_batch_size_sum": leader_p.map(|p| p.get(M_FSYNC_SUM)),
        "leader_wal_fsync_batch_size_count": leader_p.map(|p| p.get(M_FSYNC_COUNT)),
        "leader_wal_fsyncs_total": leader_p.map(|p| p.get(M_FSYNCS)),
        "leader_appends_per_fsync": leader_p.and_then(|p| ratio(p.get(M_FSYNC_SUM), p.get(M_FSYNC_COUNT))),
    });
    println!();
    println!("{line}");

    drop(cluster);
    Ok(())
}
