//! Integration-test harness: real `tessera` processes on loopback sockets,
//! each with its own RocksDB data dir, driven through the real CLI and the
//! real Rust client. No mocks.
//!
//! * [`TestNode`] is one `tessera serve` process: start, SIGKILL, SIGTERM,
//!   health and metrics scrapes over raw HTTP/1.1.
//! * [`TestCluster`] forms a cluster the way an operator does (`cluster
//!   init`, then `cluster add-node` per node) and offers the waits the tests
//!   need. Every wait has a timeout; dropping the cluster kills every child,
//!   and a failing test prints the tail of every node's log.

//!
//! The module tree every test binary declares with `mod common;`:
//!
//! * this file: processes, clusters, waits, HTTP scrapes, the CLI runner;
//! * [`auth`]: the user-pool [`auth::Fixture`] and the exception and token
//!   checks of the API-level tests;
//! * [`directory`]: [`directory::Dir`], the fixture plus the directory
//!   calls (groups, listings, audit), built on `auth`;
//! * [`sync_fixture`]: an identity pool with guests and their credentials
//!   for the sync tests, `/sync-info`, hand-made credential tokens;
//! * [`sync_raw`]: a raw device of the sync protocol (quinn and the frame
//!   codec), for tests that send exactly the frames they mean to;
//! * [`sync_client_fixture`]: devices (`tessera::sync::client`) of the
//!   guests of `sync_fixture`, on chosen nodes;
//! * [`webdriver`]: headless Chromium driven over W3C WebDriver, for the
//!   pages a person opens (magic links, the hosted sign-in page), with
//!   screenshots in the test output.

// Each test binary compiles the whole tree but uses only part of it, so
// whatever that binary leaves unused would warn as dead code; the harness
// also reads the wall clock and uses std collections freely, which the
// crate's clippy.toml forbids for the state machine only.
#![allow(dead_code, clippy::disallowed_methods, clippy::disallowed_types)]

pub mod auth;
pub mod directory;
pub mod hooks;
pub mod http;
pub mod oidc_provider;
pub mod sync_client_fixture;
pub mod sync_fixture;
pub mod sync_raw;
pub mod totp;
pub mod webdriver;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;
use tempfile::TempDir;
use tessera::client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `tessera` binary under test, as cargo built it.
pub const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// Pins the binary under test into `dir`: a hard link (or a copy), so that
/// a concurrent `cargo build` replacing the file in the shared target dir
/// cannot pull it away from a running test.
pub fn pin_binary(dir: &Path) -> Result<PathBuf> {
    let pinned = dir.join("tessera");
    if std::fs::hard_link(BIN, &pinned).is_err() {
        std::fs::copy(BIN, &pinned).with_context(|| format!("copying {BIN} to {}", pinned.display()))?;
    }
    Ok(pinned)
}

/// How long a node may take to answer `/healthz` after it was spawned.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one CLI invocation may run.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERM'd node may take to exit before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Raft tuning written into every node's config file.
#[derive(Debug, Clone)]
pub struct RaftTuning {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_every: u64,
    pub keep_logs_after_snapshot: u64,
    /// More TOML appended to every node's config (other sections, such as
    /// `[limits]`).
    pub extra_config: String,
}

impl Default for RaftTuning {
    /// Fast elections and frequent snapshots with no log kept behind them,
    /// so that catch-up by snapshot happens within a test's budget.
    fn default() -> Self {
        RaftTuning {
            heartbeat_ms: 50,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            snapshot_every: 50,
            keep_logs_after_snapshot: 0,
            extra_config: String::new(),
        }
    }
}

impl RaftTuning {
    fn toml(&self) -> String {
        format!(
            "[raft]\nheartbeat_ms = {}\nelection_timeout_min_ms = {}\nelection_timeout_max_ms = {}\n\
             snapshot_every = {}\nkeep_logs_after_snapshot = {}\n",
            self.heartbeat_ms,
            self.election_timeout_min_ms,
            self.election_timeout_max_ms,
            self.snapshot_every,
            self.keep_logs_after_snapshot
        ) + &self.extra_config
    }
}

/// Reserves `n` distinct free loopback ports: all are bound at once (so they
/// differ), then released for the nodes to bind.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("reserving a loopback port")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect::<std::io::Result<Vec<_>>>()
        .context("reading a reserved port")
}

/// Reserves `n` distinct free loopback UDP ports (for the sync
/// listeners), bound all at once like [`free_ports`].
pub fn free_udp_ports(n: usize) -> Result<Vec<u16>> {
    let sockets = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("reserving a loopback UDP port")?;
    sockets
        .iter()
        .map(|s| Ok(s.local_addr()?.port()))
        .collect::<std::io::Result<Vec<_>>>()
        .context("reading a reserved UDP port")
}

/// Polls `f` every `every` until it returns `Some`, or fails after `timeout`
/// with `what` and the last thing `f` reported.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, every: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last = String::from("(never answered)");
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if start.elapsed() >= timeout {
            bail!("timed out after {timeout:?} waiting for {what}; last: {last}");
        }
        tokio::time::sleep(every).await;
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// `GET path` on `addr` over a raw TCP connection (HTTP/1.1, `Connection:
/// close`), with a 5 s overall timeout.
pub async fn http_get(addr: &str, path: &str) -> Result<HttpResponse> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| anyhow!("GET http://{addr}{path} timed out"))?
        .with_context(|| format!("GET http://{addr}{path}"))?;
    parse_http_response(&raw).with_context(|| format!("GET http://{addr}{path}"))
}

fn parse_http_response(raw: &[u8]) -> Result<HttpResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {} bytes", raw.len()))?;
    let head = std::str::from_utf8(&raw[..split]).context("non-UTF-8 headers")?;
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(HttpResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunk size"))?;
        let size_text = std::str::from_utf8(&data[..eol])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        ensure!(data.len() >= size + 2, "truncated chunk");
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Value of the sample `name` (exact metric name, no labels) in a
/// Prometheus/OpenMetrics text exposition.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = rest.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// How a SIGTERM'd node ended.
#[derive(Debug, Clone, Copy)]
pub struct StopOutcome {
    /// It exited on its own before the timeout.
    pub graceful: bool,
    pub status: ExitStatus,
    pub took: Duration,
}

/// One `tessera serve` process and its on-disk state. Ports and data dir
/// stay the same across restarts.
pub struct TestNode {
    pub id: u64,
    pub api_addr: String,
    pub peer_addr: String,
    /// The device-sync listener's UDP address (`--sync-addr`).
    pub sync_addr: String,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    /// The `tessera` binary this node runs.
    pub bin: PathBuf,
    pub child: Option<Child>,
    /// How many times this node was spawned.
    pub starts: u32,
    /// Extra environment for the next spawns (e.g. `FAILPOINTS`).
    pub env: Vec<(String, String)>,
}

impl TestNode {
    /// Lays out `dir/node-<id>/{data,node.toml,node.log}` with fresh ports;
    /// does not start the process.
    pub fn create(id: u64, dir: &Path, bin: &Path, tuning: &RaftTuning) -> Result<Self> {
        let ports = free_ports(2)?;
        Self::create_with_ports(id, dir, bin, ports[0], ports[1], tuning)
    }

    /// Like [`TestNode::create`] with given api and peer ports (and a
    /// free UDP port for sync).
    pub fn create_with_ports(
        id: u64,
        dir: &Path,
        bin: &Path,
        api_port: u16,
        peer_port: u16,
        tuning: &RaftTuning,
    ) -> Result<Self> {
        let sync_port = free_udp_ports(1)?[0];
        Self::create_with_all_ports(id, dir, bin, api_port, peer_port, sync_port, tuning)
    }

    /// Like [`TestNode::create`] with every port given.
    pub fn create_with_all_ports(
        id: u64,
        dir: &Path,
        bin: &Path,
        api_port: u16,
        peer_port: u16,
        sync_port: u16,
        tuning: &RaftTuning,
    ) -> Result<Self> {
        let home = dir.join(format!("node-{id}"));
        let data_dir = home.join("data");
        std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        let config_path = home.join("node.toml");
        // No sealing key file: the cluster creates its key at init and hands
        // it to every node that joins, as operators get it by default.
        let config = tuning.toml();
        std::fs::write(&config_path, config).context("writing node config")?;
        Ok(TestNode {
            id,
            api_addr: format!("127.0.0.1:{api_port}"),
            peer_addr: format!("127.0.0.1:{peer_port}"),
            sync_addr: format!("127.0.0.1:{sync_port}"),
            data_dir,
            config_path,
            log_path: home.join("node.log"),
            bin: bin.to_path_buf(),
            child: None,
            starts: 0,
            env: Vec::new(),
        })
    }

    /// `http://<api_addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// Whether a process was spawned and not yet killed or stopped by us.
    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// The process id, while started.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Spawns `tessera serve` on this node's ports and data dir. Output is
    /// appended to the node's log file.
    pub fn start(&mut self) -> Result<()> {
        ensure!(self.child.is_none(), "node {} is already running", self.id);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        self.starts += 1;
        writeln!(
            log,
            "===== test harness: start #{} of node {} =====",
            self.starts, self.id
        )?;
        let err_log = log.try_clone()?;
        let level = std::env::var("TESSERA_TEST_RUST_LOG").unwrap_or_else(|_| "warn".into());
        let child = std::process::Command::new(&self.bin)
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .arg("--node-id")
            .arg(self.id.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--api-addr")
            .arg(&self.api_addr)
            .arg("--peer-addr")
            .arg(&self.peer_addr)
            .arg("--sync-addr")
            .arg(&self.sync_addr)
            .env("RUST_LOG", level)
            .env("NO_COLOR", "1")
            .envs(self.env.iter().cloned())
            .env_remove("TESSERA_CONFIG")
            .env_remove("TESSERA_NODE_ID")
            .env_remove("TESSERA_DATA_DIR")
            .env_remove("TESSERA_API_ADDR")
            .env_remove("TESSERA_PEER_ADDR")
            .env_remove("TESSERA_ADVERTISE_API_ADDR")
            .env_remove("TESSERA_ADVERTISE_PEER_ADDR")
            .env_remove("TESSERA_SYNC_ADDR")
            .env_remove("TESSERA_ADVERTISE_SYNC_ADDR")
            .env_remove("TESSERA_LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .spawn()
            .with_context(|| format!("spawning {} for node {}", self.bin.display(), self.id))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, then reap. A no-op if the node is not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (through `kill -TERM <pid>`), then wait up to `timeout` for a
    /// graceful exit, falling back to SIGKILL.
    pub async fn stop(&mut self, timeout: Duration) -> Result<StopOutcome> {
        let Some(mut child) = self.child.take() else {
            bail!("node {} is not running", self.id);
        };
        let start = Instant::now();
        let sent = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        if !matches!(sent, Ok(s) if s.success()) {
            let _ = child.kill();
            let status = child.wait()?;
            bail!(
                "node {}: `kill -TERM` failed ({sent:?}); killed instead ({status})",
                self.id
            );
        }
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(StopOutcome {
                    graceful: true,
                    status,
                    took: start.elapsed(),
                });
            }
            if start.elapsed() >= timeout {
                let _ = child.kill();
                let status = child.wait()?;
                return Ok(StopOutcome {
                    graceful: false,
                    status,
                    took: start.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Fails if the process has exited (it should be running).
    pub fn check_alive(&mut self) -> Result<()> {
        let id = self.id;
        let Some(child) = self.child.as_mut() else {
            bail!("node {id} was not started");
        };
        if let Some(status) = child.try_wait()? {
            self.child = None;
            bail!(
                "node {id} exited unexpectedly ({status}); log tail:\n{}",
                self.log_tail(40)
            );
        }
        Ok(())
    }

    /// Polls `GET /healthz` until it answers 200, failing early if the
    /// process exits.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            self.check_alive()?;
            match http_get(&self.api_addr, "/healthz").await {
                Ok(r) if r.status == 200 => return Ok(start.elapsed()),
                _ => {}
            }
            if start.elapsed() >= timeout {
                bail!(
                    "node {} did not become healthy within {timeout:?}; log tail:\n{}",
                    self.id,
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls `GET /readyz` until it answers 200: the node is a member with
    /// a leader, caught up, and its token-signing key is published.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            self.check_alive()?;
            let last = match http_get(&self.api_addr, "/readyz").await {
                Ok(r) if r.status == 200 => return Ok(start.elapsed()),
                Ok(r) => r.body,
                Err(e) => e.to_string(),
            };
            if start.elapsed() >= timeout {
                bail!(
                    "node {} did not become ready within {timeout:?} (last answer: {}); log tail:\n{}",
                    self.id,
                    last.trim(),
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> Result<String> {
        let r = http_get(&self.api_addr, "/metrics").await?;
        ensure!(r.status == 200, "/metrics on node {} answered {}", self.id, r.status);
        Ok(r.body)
    }

    /// One metric sample from `/metrics`, if present.
    pub async fn metric(&self, name: &str) -> Result<Option<f64>> {
        Ok(metric_value(&self.metrics().await?, name))
    }

    /// Up to `max` panics found in this node's log, each with the lines
    /// that follow it.
    pub fn log_panics(&self, max: usize) -> String {
        let Ok(bytes) = std::fs::read(&self.log_path) else {
            return String::new();
        };
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains("panicked at"))
            .take(max)
            .map(|(i, _)| lines[i..(i + 8).min(lines.len())].join("\n"))
            .collect::<Vec<_>>()
            .join("\n...\n")
    }

    /// The last `n` lines of this node's log.
    pub fn log_tail(&self, n: usize) -> String {
        match std::fs::read(&self.log_path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(n)..].join("\n")
            }
            Err(e) => format!("(no log at {}: {e})", self.log_path.display()),
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A cluster of [`TestNode`]s under one temporary directory.
pub struct TestCluster {
    pub nodes: BTreeMap<u64, TestNode>,
    pub token: String,
    pub cluster_id: String,
    /// A join token (any number of uses) that every node started after
    /// `cluster init` gets in `TESSERA_JOIN_TOKEN`.
    pub join_token: String,
    pub tuning: RaftTuning,
    /// The pinned `tessera` binary every node and CLI call runs.
    pub bin: PathBuf,
    dumped: Cell<bool>,
    // Dropped last: the nodes are killed before their files go.
    root: TempDir,
}

impl TestCluster {
    /// Forms an `n`-node cluster with the default tuning.
    pub async fn start(n: u64) -> Result<Self> {
        Self::start_with(n, RaftTuning::default()).await
    }

    /// Forms an `n`-node cluster the way an operator does: start node 1,
    /// `tessera cluster init`, then for each further node start it and
    /// `tessera cluster add-node` through node 1.
    pub async fn start_with(n: u64, tuning: RaftTuning) -> Result<Self> {
        ensure!(n >= 1, "a cluster needs at least one node");
        let root = tempfile::Builder::new().prefix("tessera-it-").tempdir()?;
        let bin = pin_binary(root.path())?;
        let ports = free_ports(2 * n as usize)?;
        let sync_ports = free_udp_ports(n as usize)?;
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            let i = (id as usize - 1) * 2;
            let node = TestNode::create_with_all_ports(
                id,
                root.path(),
                &bin,
                ports[i],
                ports[i + 1],
                sync_ports[id as usize - 1],
                &tuning,
            )?;
            nodes.insert(id, node);
        }
        let mut cluster = TestCluster {
            nodes,
            token: String::new(),
            cluster_id: String::new(),
            join_token: String::new(),
            tuning,
            bin,
            dumped: Cell::new(false),
            root,
        };
        if let Err(e) = cluster.form(n).await {
            cluster.dump_logs();
            return Err(e.context(format!("forming a {n}-node cluster")));
        }
        Ok(cluster)
    }

    async fn form(&mut self, n: u64) -> Result<()> {
        self.start_node(1).await?;
        let out = self
            .cli(&["--endpoint", &self.node(1).url(), "--output", "json", "cluster", "init"])
            .await?;
        let init = json_stdout(&out).context("tessera cluster init")?;
        self.cluster_id = init["cluster_id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| anyhow!("cluster init printed no cluster_id: {init}"))?
            .to_string();
        self.token = init["admin_token"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| anyhow!("cluster init printed no admin_token: {init}"))?
            .to_string();
        // `cluster init` answers once the node can sign tokens: a sign-in
        // right after it must not meet "still publishing its signing key".
        let ready = http_get(&self.node(1).api_addr, "/readyz").await?;
        ensure!(
            ready.status == 200,
            "/readyz right after cluster init answered {}: {}",
            ready.status,
            ready.body.trim()
        );
        if n > 1 {
            self.issue_join_token().await?;
        }
        for id in 2..=n {
            self.start_node(id).await?;
            self.add_node_cli(id, 1).await?;
        }
        // Tests begin on a cluster an operator would call up: every node
        // ready to sign in users, not still publishing its signing key.
        for id in 1..=n {
            self.node_mut(id).wait_ready(Duration::from_secs(30)).await?;
        }
        Ok(())
    }

    /// `tessera cluster join-token create` (any number of uses, 24 h),
    /// kept for every node started from now on.
    pub async fn issue_join_token(&mut self) -> Result<()> {
        let v = self
            .cli_admin_json(
                1,
                &["cluster", "join-token", "create", "--max-uses", "0", "--ttl", "86400"],
            )
            .await
            .context("tessera cluster join-token create")?;
        self.join_token = v["join_token"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| anyhow!("join-token create printed no token: {v}"))?
            .to_string();
        Ok(())
    }

    /// The temporary directory holding every node.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn node(&self, id: u64) -> &TestNode {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    pub fn node_mut(&mut self, id: u64) -> &mut TestNode {
        self.nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    /// Creates the files and ports of a new node `id` (not started, not a
    /// member).
    pub fn prepare_node(&mut self, id: u64) -> Result<&mut TestNode> {
        ensure!(!self.nodes.contains_key(&id), "node {id} already exists in the harness");
        let node = TestNode::create(id, self.root.path(), &self.bin, &self.tuning)?;
        Ok(self.nodes.entry(id).or_insert(node))
    }

    /// Starts node `id` (with the join token, once there is one) and waits
    /// for `/healthz`.
    pub async fn start_node(&mut self, id: u64) -> Result<Duration> {
        let join = self.join_token.clone();
        let node = self.node_mut(id);
        if !join.is_empty() {
            node.env.retain(|(k, _)| k != "TESSERA_JOIN_TOKEN");
            node.env.push(("TESSERA_JOIN_TOKEN".into(), join));
        }
        node.start()?;
        node.wait_healthy(HEALTH_TIMEOUT).await
    }

    /// `tessera cluster add-node` for node `id` through node `via`; returns
    /// the printed JSON (`{"members": [...]}`) after checking that `id` is
    /// listed as a voter.
    /// The full `tessera cluster add-node` argument list for node `id`,
    /// sent through node `via` with the admin token, for tests that run the
    /// command in the background while they break things.
    pub fn add_node_args(&self, id: u64, via: u64) -> Vec<String> {
        let node = self.node(id);
        let mut args = self.admin_args(via);
        args.extend([
            "cluster".to_string(),
            "add-node".into(),
            "--node-id".into(),
            id.to_string(),
            "--peer-addr".into(),
            node.peer_addr.clone(),
            "--api-addr".into(),
            node.api_addr.clone(),
        ]);
        args
    }

    pub async fn add_node_cli(&self, id: u64, via: u64) -> Result<Value> {
        let node = self.node(id);
        let id_s = id.to_string();
        let v = self
            .cli_admin_json(
                via,
                &[
                    "cluster",
                    "add-node",
                    "--node-id",
                    &id_s,
                    "--peer-addr",
                    &node.peer_addr,
                    "--api-addr",
                    &node.api_addr,
                ],
            )
            .await
            .with_context(|| format!("tessera cluster add-node --node-id {id}"))?;
        let listed = v["members"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["node_id"].as_u64() == Some(id) && m["role"] == "voter");
        ensure!(listed, "add-node {id} did not list it as a voter: {v}");
        Ok(v)
    }

    /// Ids of nodes whose process we started and have not killed or stopped.
    pub fn live_ids(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.is_started())
            .map(|(id, _)| *id)
            .collect()
    }

    /// A connected client for node `id`, with the admin token.
    pub async fn client(&self, id: u64) -> Result<Client> {
        let url = self.node(id).url();
        Client::connect(&url, Some(self.token.clone()))
            .await
            .with_context(|| format!("connecting to node {id} at {url}"))
    }

    /// A client for node `id` that connects on first use (the node may be
    /// down or restarting).
    pub fn lazy_client(&self, id: u64) -> Client {
        Client::connect_lazy(&self.node(id).url(), Some(self.token.clone())).expect("a valid loopback endpoint")
    }

    /// The leader as reported by `DescribeCluster` on the first live node
    /// that answers.
    pub async fn leader_id(&self) -> Result<Option<u64>> {
        let mut last = anyhow!("no live node");
        for id in self.live_ids() {
            match tokio::time::timeout(Duration::from_secs(5), self.lazy_client(id).describe_cluster()).await {
                Ok(Ok(r)) => return Ok(r.leader_id),
                Ok(Err(s)) => last = anyhow!("node {id}: {s}"),
                Err(_) => last = anyhow!("node {id}: describe_cluster timed out"),
            }
        }
        Err(last)
    }

    /// Polls `DescribeCluster` on every live node except `excluding`, every
    /// 20 ms, until one reports a leader that is live and not `excluding`.
    /// Returns the leader and how long the wait took.
    pub async fn wait_for_leader(&self, excluding: Option<u64>, timeout: Duration) -> Result<(u64, Duration)> {
        let start = Instant::now();
        let ids: Vec<u64> = self
            .live_ids()
            .into_iter()
            .filter(|id| Some(*id) != excluding)
            .collect();
        ensure!(!ids.is_empty(), "no live node to ask for a leader");
        let clients: Vec<(u64, Client)> = ids.iter().map(|id| (*id, self.lazy_client(*id))).collect();
        let mut last = String::from("(no answer)");
        loop {
            let answers = futures::future::join_all(clients.iter().map(|(id, c)| async move {
                (
                    *id,
                    tokio::time::timeout(Duration::from_secs(1), c.describe_cluster()).await,
                )
            }))
            .await;
            for (id, answer) in answers {
                match answer {
                    Ok(Ok(r)) => match r.leader_id {
                        Some(l) if Some(l) != excluding && ids.contains(&l) => return Ok((l, start.elapsed())),
                        other => last = format!("node {id} reports leader {other:?}"),
                    },
                    Ok(Err(s)) => last = format!("node {id}: {s}"),
                    Err(_) => last = format!("node {id}: describe_cluster timed out"),
                }
            }
            if start.elapsed() >= timeout {
                bail!("no leader (excluding {excluding:?}) within {timeout:?}; last: {last}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A live node other than the current leader.
    pub async fn follower(&self) -> Result<u64> {
        let (leader, _) = self.wait_for_leader(None, Duration::from_secs(10)).await?;
        self.live_ids()
            .into_iter()
            .find(|id| *id != leader)
            .ok_or_else(|| anyhow!("no live follower (leader is {leader})"))
    }

    /// Runs the `tessera` binary with `args` (no inherited `TESSERA_*`
    /// settings), killing it after [`CLI_TIMEOUT`].
    pub async fn cli(&self, args: &[&str]) -> Result<Output> {
        run_cli(&self.bin, args.iter().map(|s| s.to_string()).collect()).await
    }

    /// `--endpoint <node via> --token <admin token> --output json`.
    pub fn admin_args(&self, via: u64) -> Vec<String> {
        vec![
            "--endpoint".into(),
            self.node(via).url(),
            "--token".into(),
            self.token.clone(),
            "--output".into(),
            "json".into(),
        ]
    }

    /// Runs an admin CLI command through node `via`, requires exit status 0,
    /// and parses stdout as JSON.
    pub async fn cli_admin_json(&self, via: u64, args: &[&str]) -> Result<Value> {
        let mut all = self.admin_args(via);
        all.extend(args.iter().map(|s| s.to_string()));
        let out = run_cli(&self.bin, all).await?;
        json_stdout(&out)
    }

    /// Creates `n` pools named `<prefix>-<i>`, spreading the calls over the
    /// live nodes in turn (followers forward). Returns the ids in order.
    pub async fn create_pools(&self, n: usize, prefix: &str) -> Result<Vec<String>> {
        let live = self.live_ids();
        ensure!(!live.is_empty(), "no live node to write through");
        let clients: Vec<(u64, Client)> = live.iter().map(|id| (*id, self.lazy_client(*id))).collect();
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let (via, client) = &clients[i % clients.len()];
            let name = format!("{prefix}-{i}");
            let pool = client.create_user_pool(&name).await.map_err(|s| {
                anyhow!(
                    "create_user_pool({name}) through node {via}: {:?}: {}",
                    s.code(),
                    s.message()
                )
            })?;
            ensure!(
                pool.name == name,
                "created pool has name {:?}, expected {name:?}",
                pool.name
            );
            ids.push(pool.id);
        }
        Ok(ids)
    }

    /// The sorted `(id, name)` list of every pool on node `id`.
    pub async fn pool_list(&self, id: u64, consistent: bool) -> Result<Vec<(String, String)>> {
        let pools = tokio::time::timeout(
            Duration::from_secs(15),
            self.lazy_client(id).list_all_user_pools(consistent),
        )
        .await
        .map_err(|_| anyhow!("list_all_user_pools on node {id} timed out"))?
        .map_err(|s| anyhow!("list_all_user_pools on node {id}: {:?}: {}", s.code(), s.message()))?;
        let mut out: Vec<(String, String)> = pools.into_iter().map(|p| (p.id, p.name)).collect();
        out.sort();
        Ok(out)
    }

    /// Polls local (non-consistent) `DescribeUserPool` on node `id` until
    /// every pool in `ids` is found. Returns how long it took.
    pub async fn wait_pools_described(&self, id: u64, ids: &[String], timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let client = self.lazy_client(id);
        let mut missing: BTreeSet<String> = ids.iter().cloned().collect();
        let total = missing.len();
        let mut last = String::from("(no answer)");
        loop {
            let todo: Vec<String> = missing.iter().cloned().collect();
            for pool_id in todo {
                match tokio::time::timeout(Duration::from_secs(5), client.describe_user_pool(&pool_id, false)).await {
                    Ok(Ok(p)) if p.id == pool_id => {
                        missing.remove(&pool_id);
                    }
                    Ok(Ok(p)) => last = format!("asked for {pool_id}, got {}", p.id),
                    Ok(Err(s)) => last = format!("{pool_id}: {:?}: {}", s.code(), s.message()),
                    Err(_) => last = format!("{pool_id}: describe_user_pool timed out"),
                }
            }
            if missing.is_empty() {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= timeout {
                bail!(
                    "node {id} still misses {} of {total} pools after {timeout:?}; last: {last}",
                    missing.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls `DescribeCluster` on node `via` until node `of` reports a
    /// snapshot index of at least `index`.
    pub async fn wait_snapshot_index(&self, via: u64, of: u64, index: u64, timeout: Duration) -> Result<u64> {
        let client = self.lazy_client(via);
        poll_until(
            &format!("node {of} to build a snapshot at index >= {index}"),
            timeout,
            Duration::from_millis(100),
            || {
                let client = client.clone();
                async move {
                    let r = client.describe_cluster().await?;
                    let n = r
                        .nodes
                        .iter()
                        .find(|n| n.node_id == of)
                        .ok_or_else(|| anyhow!("node {of} not in DescribeCluster.nodes"))?;
                    if n.snapshot_index >= index {
                        Ok(Some(n.snapshot_index))
                    } else {
                        Err(anyhow!(
                            "snapshot_index is {} (state {}, applied {})",
                            n.snapshot_index,
                            n.state,
                            n.applied_index
                        ))
                    }
                }
            },
        )
        .await
    }

    /// Prints every panic and the tail of every node's log (once). With
    /// `TESSERA_TEST_KEEP=1` the cluster's directory is kept for a post-mortem.
    pub fn dump_logs(&self) {
        if self.dumped.replace(true) {
            return;
        }
        for (id, node) in &self.nodes {
            eprintln!(
                "----- node {id} (api {}, peer {}, log {}) -----",
                node.api_addr,
                node.peer_addr,
                node.log_path.display()
            );
            let panics = node.log_panics(5);
            if !panics.is_empty() {
                eprintln!("PANICS in node {id}:\n{panics}\n----- tail -----");
            }
            eprintln!("{}", node.log_tail(60));
        }
    }

    /// Ends a test body: on error, prints the node logs and panics.
    pub fn finish(&self, result: Result<()>) {
        if let Err(e) = result {
            self.dump_logs();
            panic!("{e:?}");
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
            if std::env::var_os("TESSERA_TEST_KEEP").is_some() {
                self.root.disable_cleanup(true);
                eprintln!("kept the cluster's files in {}", self.root.path().display());
            }
        }
        for node in self.nodes.values_mut() {
            node.kill9();
        }
    }
}

/// Runs `bin` (a `tessera` binary) with `args`; the child is killed if it
/// runs past [`CLI_TIMEOUT`] or the future is dropped.
pub async fn run_cli(bin: &Path, args: Vec<String>) -> Result<Output> {
    run_cli_timeout(bin, args, CLI_TIMEOUT).await
}

/// Like [`run_cli`] with another timeout.
pub async fn run_cli_timeout(bin: &Path, args: Vec<String>, timeout: Duration) -> Result<Output> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(&args)
        .env_remove("TESSERA_ADMIN_TOKEN")
        .env_remove("TESSERA_ENDPOINT")
        .env_remove("TESSERA_CONFIG")
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let shown = redact(&args);
    tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| anyhow!("`tessera {shown}` ran longer than {timeout:?}"))?
        .with_context(|| format!("running `tessera {shown}`"))
}

/// The arguments as a string, with the admin token masked.
fn redact(args: &[String]) -> String {
    let mut out = Vec::new();
    let mut mask = false;
    for a in args {
        out.push(if mask { "<token>".to_string() } else { a.clone() });
        mask = a == "--token";
    }
    out.join(" ")
}

/// Requires a successful exit and parses stdout as one JSON value.
pub fn json_stdout(out: &Output) -> Result<Value> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "CLI failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    serde_json::from_str(stdout.trim())
        .with_context(|| format!("CLI stdout is not JSON: {stdout:?} (stderr: {stderr})"))
}
