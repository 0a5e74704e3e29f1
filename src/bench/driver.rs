//! The part of every `tessera bench` run that is not a scenario: the load
//! shape (endpoints, callers, connections, warm-up and measured window)
//! validated from the flags, the callers that call back to back and record
//! what completes inside the window, the bench pool's life, and the report
//! lines every bench prints the same way.
//!
//! A scenario implements [`Caller`] (one call, and what kind it was) and
//! hands a factory of callers to [`run_load`]; everything about timing and
//! counting lives here, so the benches measure the same way.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde::Serialize;
use tonic::Status;

use super::stats::TaskStats;
use super::{group_thousands, parse_endpoints, OutputFormat};
use crate::client::Client;
use crate::clock::instant;
use crate::proto::UserPoolType;

/// Load tasks that share one HTTP/2 connection by default. HTTP/2
/// multiplexes them; a few connections rather than one keep a single TCP
/// stream (and one server connection task) from being the bottleneck.
pub const TASKS_PER_CONNECTION: usize = 8;

/// The load-shaping flags every bench has, as given.
#[derive(Clone, Copy)]
pub struct LoadFlags<'a> {
    /// `--endpoint`: a comma-separated list.
    pub endpoint: &'a str,
    /// `--token`.
    pub token: Option<&'a str>,
    /// Why this bench needs the admin token, for the error without one.
    pub token_needed_for: &'a str,
    /// `--concurrency`, or the scenario's default.
    pub concurrency: usize,
    /// `--connections`, if given.
    pub connections: Option<usize>,
    /// `--warmup` seconds.
    pub warmup: f64,
    /// `--duration` seconds.
    pub duration: f64,
}

/// The validated load shape of a run. (No `Debug`: it holds the admin
/// token.)
#[derive(Clone)]
pub struct LoadPlan {
    /// The api endpoints the callers are spread over, round-robin.
    pub endpoints: Vec<String>,
    /// The admin token, for the calls that need one (setup, teardown).
    pub token: String,
    /// Callers, each calling back to back.
    pub concurrency: usize,
    /// HTTP/2 connections the callers share, round-robin over the
    /// endpoints.
    pub connections: usize,
    /// Calls completing before this much time are not recorded.
    pub warmup: Duration,
    /// The measured window after the warm-up.
    pub duration: Duration,
}

impl LoadPlan {
    /// Checks the flags: at least one endpoint, an admin token, at least
    /// one caller and one connection, a measured window of more than zero
    /// seconds and a warm-up of zero or more.
    pub fn from_flags(f: LoadFlags<'_>) -> anyhow::Result<LoadPlan> {
        let endpoints = parse_endpoints(f.endpoint);
        if endpoints.is_empty() {
            bail!("--endpoint: give at least one endpoint");
        }
        let Some(token) = f.token.filter(|t| !t.is_empty()) else {
            bail!("--token (or TESSERA_ADMIN_TOKEN) is required: {}", f.token_needed_for);
        };
        if f.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if f.connections == Some(0) {
            bail!("--connections must be at least 1");
        }
        let duration = secs("--duration", f.duration)?;
        if duration.is_zero() {
            bail!("--duration must be more than 0 seconds");
        }
        Ok(LoadPlan {
            connections: f
                .connections
                .unwrap_or_else(|| default_connections(f.concurrency, endpoints.len())),
            endpoints,
            token: token.to_string(),
            concurrency: f.concurrency,
            warmup: secs("--warmup", f.warmup)?,
            duration,
        })
    }

    /// Connects to the first endpoint with the admin token, for setup.
    pub async fn admin_client(&self) -> anyhow::Result<Client> {
        Client::connect(&self.endpoints[0], Some(self.token.clone()))
            .await
            .with_context(|| format!("connecting to {}", self.endpoints[0]))
    }
}

/// A non-negative, finite number of seconds.
pub fn secs(flag: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| anyhow!("{flag}: {s} is not a non-negative number of seconds"))
}

/// One connection per [`TASKS_PER_CONNECTION`] callers, at least one per
/// endpoint (but no more than there are callers), rounded up to a multiple
/// of the endpoints so that every endpoint carries the same number of
/// callers.
pub fn default_connections(concurrency: usize, endpoints: usize) -> usize {
    let endpoints = endpoints.max(1);
    let concurrency = concurrency.max(1);
    let wanted = concurrency
        .div_ceil(TASKS_PER_CONNECTION)
        .max(endpoints.min(concurrency));
    if concurrency >= endpoints {
        wanted.div_ceil(endpoints) * endpoints
    } else {
        wanted
    }
}

/// `"<what>: <code>: <message>"`, shorter than `Status`'s own Display.
pub fn status_error(what: &str, s: Status) -> anyhow::Error {
    anyhow!("{what}: {:?}: {}", s.code(), s.message())
}

/// A failed call: a gRPC error, or an answer the scenario's checks reject
/// (then `code` is the bench's own name for it, such as `NoTokens`).
#[derive(Debug)]
pub struct Failure {
    /// The gRPC code's name (`Unavailable`, ...) or the bench's own check name.
    pub code: String,
    /// What the server or the check said.
    pub message: String,
}

impl Failure {
    /// A failure the bench's own checks found, named `code`.
    pub fn new(code: &str, message: String) -> Failure {
        Failure {
            code: code.to_string(),
            message,
        }
    }
}

impl From<Status> for Failure {
    fn from(s: Status) -> Self {
        Failure {
            code: format!("{:?}", s.code()),
            message: s.message().to_string(),
        }
    }
}

/// One load task of a scenario: its connection and state.
pub trait Caller: Send + 'static {
    /// Makes the `seq`-th call of this caller (0, 1, 2, ...); returns the
    /// kind of call it was, for a per-kind breakdown, and how it went.
    fn call(&mut self, seq: u64) -> impl Future<Output = (&'static str, Result<(), Failure>)> + Send;
}

/// Opens `plan.connections` connections (sending `token` on every call when
/// given), starts `plan.concurrency` callers made by `make(task, client)`,
/// runs them through the warm-up and the measured window, and merges what
/// they recorded, by kind of call.
pub async fn run_load<C, F>(
    plan: &LoadPlan,
    token: Option<String>,
    mut make: F,
) -> anyhow::Result<BTreeMap<&'static str, TaskStats>>
where
    C: Caller,
    F: FnMut(usize, &Client) -> C,
{
    let mut clients = Vec::with_capacity(plan.connections);
    for j in 0..plan.connections {
        let endpoint = &plan.endpoints[j % plan.endpoints.len()];
        let client = Client::connect(endpoint, token.clone())
            .await
            .with_context(|| format!("connecting to {endpoint}"))?;
        clients.push(client);
    }
    let start = instant();
    let record_from = start + plan.warmup;
    let end = record_from + plan.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..plan.concurrency {
        let caller = make(task, &clients[task % clients.len()]);
        tasks.spawn(run_caller(caller, record_from, end));
    }
    let mut total: BTreeMap<&'static str, TaskStats> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        for (kind, stats) in joined.context("load task")?? {
            match total.entry(kind) {
                Entry::Occupied(mut o) => o.get_mut().merge(stats)?,
                Entry::Vacant(v) => {
                    v.insert(stats);
                }
            }
        }
    }
    Ok(total)
}

/// One caller: calls back to back until `end`, recording the calls that
/// complete in `[record_from, end)` under their kind. A call still in
/// flight at `end` is dropped: counting calls by completion inside the
/// window is the unbiased estimate of a steady-state rate.
async fn run_caller<C: Caller>(
    mut caller: C,
    record_from: Instant,
    end: Instant,
) -> anyhow::Result<BTreeMap<&'static str, TaskStats>> {
    let mut stats: BTreeMap<&'static str, TaskStats> = BTreeMap::new();
    let deadline = tokio::time::Instant::from_std(end);
    let mut seq = 0u64;
    loop {
        let t0 = instant();
        if t0 >= end {
            break;
        }
        let (kind, outcome) = tokio::select! {
            r = caller.call(seq) => r,
            _ = tokio::time::sleep_until(deadline) => break,
        };
        seq += 1;
        let t1 = instant();
        if t1 < record_from || t1 >= end {
            continue;
        }
        let s = match stats.entry(kind) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => v.insert(TaskStats::new()?),
        };
        match outcome {
            Ok(()) => s.record_ok(t1 - t0),
            Err(f) => s.record_error(&f.code, &f.message),
        }
    }
    Ok(stats)
}

/// Every kind's stats merged into one.
pub fn merge_kinds(by_kind: BTreeMap<&'static str, TaskStats>) -> anyhow::Result<TaskStats> {
    let mut total = TaskStats::new()?;
    for stats in by_kind.into_values() {
        total.merge(stats)?;
    }
    Ok(total)
}

/// The pool a run loads: the one `--pool-id` names (read consistently),
/// or a fresh one named `name`. Returns it and whether the bench created
/// it.
pub async fn open_pool(admin: &Client, pool_id: Option<&str>, name: &str) -> anyhow::Result<(UserPoolType, bool)> {
    match pool_id {
        Some(id) => {
            let pool = admin
                .describe_user_pool(id, true)
                .await
                .map_err(|s| status_error(&format!("DescribeUserPool {id}"), s))?;
            Ok((pool, false))
        }
        None => {
            tracing::info!(pool_name = %name, "creating the bench pool");
            let pool = admin
                .create_user_pool(name)
                .await
                .map_err(|s| status_error("CreateUserPool", s))?;
            Ok((pool, true))
        }
    }
}

/// Deletes the pool the bench created; whether that worked. A failure is
/// reported on stderr and does not fail the run, whose numbers stand.
pub async fn delete_pool(admin: &Client, pool_id: &str) -> bool {
    match admin.delete_user_pool(pool_id).await {
        Ok(()) => true,
        Err(s) => {
            eprintln!(
                "could not delete the bench pool {pool_id}: {:?}: {}",
                s.code(),
                s.message()
            );
            false
        }
    }
}

/// A report in `format`, ending with a newline: JSON of `report`, or the
/// `table` for people.
pub fn render<R: Serialize>(report: &R, format: OutputFormat, table: impl FnOnce() -> String) -> String {
    match format {
        OutputFormat::Json => match serde_json::to_string(report) {
            Ok(s) => s + "\n",
            Err(e) => format!("{{\"error\":\"serializing the report: {e}\"}}\n"),
        },
        OutputFormat::Table => table(),
    }
}

/// The table's `endpoints` line.
pub fn write_endpoints(s: &mut String, endpoints: &[String], concurrency: usize, connections: usize) {
    // Writing to a String cannot fail.
    let _ = writeln!(
        s,
        "  endpoints     {} ({} callers over {} connection{})",
        endpoints.join(", "),
        concurrency,
        connections,
        if connections == 1 { "" } else { "s" }
    );
}

/// The table's `window` line.
pub fn write_window(s: &mut String, warmup_secs: f64, duration_secs: f64) {
    let _ = writeln!(s, "  window        {warmup_secs} s warmup, {duration_secs} s measured");
}

/// The table's `errors` line: the total and the count per code, then one
/// sample message per code.
pub fn write_errors(s: &mut String, errors: &BTreeMap<String, u64>, samples: &BTreeMap<String, String>) {
    let total: u64 = errors.values().sum();
    let by_code: Vec<String> = errors
        .iter()
        .map(|(code, n)| format!("{code} {}", group_thousands(*n)))
        .collect();
    if by_code.is_empty() {
        let _ = writeln!(s, "  errors        0");
        return;
    }
    let _ = writeln!(s, "  errors        {} ({})", group_thousands(total), by_code.join(", "));
    for (code, msg) in samples {
        let _ = writeln!(s, "                {code}: {msg}");
    }
}

/// The shape of `src/main.rs` for the benches' flag tests: global
/// `--endpoint`, `--token` and `--output` flags of the same ids and (for
/// the first two) types, and a private output enum of its own.
#[cfg(test)]
pub mod test_cli {
    use clap::{Parser, Subcommand, ValueEnum};

    use super::super::{AuthBenchArgs, DirectoryBenchArgs, IdentityBenchArgs, SyncBenchArgs, DEFAULT_ENDPOINT};

    /// The top-level command, as `src/main.rs` declares it.
    #[derive(Parser, Debug)]
    pub struct Cli {
        /// Any node's api address.
        #[arg(long, global = true, env = "TESSERA_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
        pub endpoint: String,
        /// Admin token (printed by `cluster init` and `dev`).
        #[arg(long, global = true, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true)]
        pub token: Option<String>,
        /// Output format.
        #[arg(long, global = true, value_enum, default_value = "table")]
        pub output: MainOutput,
        /// The subcommand.
        #[command(subcommand)]
        pub cmd: Cmd,
    }

    /// `--output`, private to the binary as in `src/main.rs`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
    pub enum MainOutput {
        /// JSON output.
        Json,
        /// Table output.
        Table,
    }

    /// The subcommands; only `bench` here.
    #[derive(Subcommand, Debug)]
    pub enum Cmd {
        /// Load generators: drive a cluster and check the performance targets.
        #[command(subcommand)]
        Bench(BenchCmd),
    }

    /// The `bench` subcommands.
    #[derive(Subcommand, Debug)]
    pub enum BenchCmd {
        /// Sign-in, refresh, token-check or sign-up load.
        Auth(AuthBenchArgs),
        /// ListUsers pages or AdminUpdateUserAttributes writes over a pool of imported users.
        Directory(DirectoryBenchArgs),
        /// GetId, first-time identities, credentials or Authorize load on identity pools.
        Identity(IdentityBenchArgs),
        /// Live sync to devices over QUIC: push latency, idle memory, reconnect storm.
        Sync(SyncBenchArgs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> LoadFlags<'static> {
        LoadFlags {
            endpoint: "a:1,b:2",
            token: Some("t"),
            token_needed_for: "setup",
            concurrency: 16,
            connections: None,
            warmup: 1.0,
            duration: 2.0,
        }
    }

    #[test]
    fn load_flags_are_validated() {
        let p = LoadPlan::from_flags(flags()).unwrap();
        assert_eq!(p.endpoints, vec!["a:1", "b:2"]);
        assert_eq!(p.connections, 2);
        assert_eq!(p.warmup, Duration::from_secs(1));
        let bad = [
            LoadFlags {
                endpoint: " ,",
                ..flags()
            },
            LoadFlags { token: None, ..flags() },
            LoadFlags {
                token: Some(""),
                ..flags()
            },
            LoadFlags {
                concurrency: 0,
                ..flags()
            },
            LoadFlags {
                connections: Some(0),
                ..flags()
            },
            LoadFlags {
                duration: 0.0,
                ..flags()
            },
            LoadFlags {
                warmup: -1.0,
                ..flags()
            },
            LoadFlags {
                duration: f64::NAN,
                ..flags()
            },
        ];
        for f in bad {
            assert!(LoadPlan::from_flags(f).is_err());
        }
        let Err(e) = LoadPlan::from_flags(LoadFlags { token: None, ..flags() }) else {
            panic!("a plan without a token");
        };
        assert!(e.to_string().ends_with("is required: setup"), "{e}");
    }

    #[test]
    fn connections_spread_evenly_over_endpoints() {
        assert_eq!(default_connections(1, 1), 1);
        assert_eq!(default_connections(16, 1), 2);
        assert_eq!(default_connections(17, 1), 3);
        // Three endpoints: a multiple of three, every endpoint busy.
        assert_eq!(default_connections(16, 3), 3);
        assert_eq!(default_connections(32, 3), 6);
        // Fewer callers than endpoints: one connection per caller.
        assert_eq!(default_connections(2, 3), 2);
        for (c, e) in [(16, 3), (64, 3), (5, 2), (1, 1)] {
            let n = default_connections(c, e);
            assert_eq!(n % e, 0, "{c} callers over {e} endpoints: {n} connections");
        }
    }

    #[test]
    fn error_lines_list_codes_and_samples() {
        let mut s = String::new();
        write_errors(&mut s, &BTreeMap::new(), &BTreeMap::new());
        assert_eq!(s, "  errors        0\n");
        let errors = BTreeMap::from([("NotFound".to_string(), 2), ("Unavailable".to_string(), 1_000)]);
        let samples = BTreeMap::from([("NotFound".to_string(), "nope".to_string())]);
        let mut s = String::new();
        write_errors(&mut s, &errors, &samples);
        assert_eq!(
            s,
            "  errors        1,002 (NotFound 2, Unavailable 1,000)\n                NotFound: nope\n"
        );
    }
}
