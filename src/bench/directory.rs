//! `tessera bench directory`: load on the user directory through the admin
//! API, `ListUsers` reads and `AdminUpdateUserAttributes` writes, judged
//! against the product's targets.
//!
//! A separate command rather than more `bench auth` scenarios because its
//! setup, defaults and pass marks differ: it builds pools of up to millions
//! of users with `AdminImportUsers` instead of signing users up one by one,
//! never hashes a password under load (so the argon2 limit means nothing
//! here), and one of its targets is a latency, not a rate.
//!
//! A run has two phases, and only the second is timed:
//!
//! 1. **Setup**, with the admin token: a fresh pool holding `--users` users
//!    `user0000000`, `user0000001`, ..., imported in batches of 1,000 by
//!    `--import-concurrency` callers, all CONFIRMED with one password (which
//!    the server hashes once per batch) and verified emails. Each has email
//!    `<username>@example.com` and a given and family name picked
//!    deterministically from fixed lists, so that the bench knows which
//!    filters match how many users without asking. `--pool-id` skips the
//!    import and reuses a pool an earlier run populated (with the same
//!    `--users`), since a million users take minutes to import.
//! 2. **Load**: `--concurrency` callers over a few shared HTTP/2 connections
//!    spread round-robin over the endpoints, exactly as in `bench auth`:
//!    `--warmup` seconds unrecorded, then `--duration` seconds recorded, a
//!    call counting when it completes inside the window.
//!
//! | scenario       | each call                                              | target                      |
//! |----------------|--------------------------------------------------------|-----------------------------|
//! | `listusers`    | `ListUsers` limit 60, `email ^=` or `given_name ^=`    | p99 < 20 ms, no errors      |
//! | `admin-update` | `AdminUpdateUserAttributes` `given_name` of a random user | ≥ 3,000 writes/s (3 nodes) |
//!
//! Every `listusers` prefix matches at least two full pages, and every
//! fourth call follows the pagination token of the call before it, so each
//! answer must hold exactly 60 users, all matching the filter: a short page
//! or a stray user is counted as an error, as is a first page without a
//! pagination token.
//!
//! A pool the bench created is deleted at the end unless `--keep-pool` (keep
//! a `listusers` pool to rerun with `--pool-id`); a pool given with
//! `--pool-id` is left as it is, except for the given names `admin-update`
//! changed.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::StreamExt as _;
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::auth::{default_connections, secs, status_error, PASSWORD};
use super::stats::TaskStats;
use super::{format_rate, group_thousands, parse_endpoints, OutputFormat, DEFAULT_ENDPOINT};
use crate::client::Client;
use crate::clock::{instant, random_bytes};
use crate::proto::admin_client::AdminClient;
use crate::proto::{
    AdminImportUsersRequest, AdminUpdateUserAttributesRequest, AttributeValue, ImportUserType, ListUsersRequest,
    UserType,
};

/// Users per `AdminImportUsers` call: the most the server accepts.
pub const IMPORT_BATCH: usize = 1_000;
/// Users per `ListUsers` page: Cognito's (and the server's) maximum.
pub const PAGE: usize = 60;
/// Every this many calls, a `listusers` caller fetches the next page of its
/// previous call instead of a new first page.
pub const FOLLOW_EVERY: u64 = 4;
/// Users sharing one email prefix: the first four of the seven digits fix a
/// block of 1,000, two full pages and more.
pub const EMAIL_BLOCK: usize = 1_000;
/// `user{i:07}` has seven digits, so ten million users at most.
pub const MAX_USERS: usize = 10_000_000;
/// How often the import prints its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Attempts at one import batch when the cluster answers with a transient
/// error (a leader change, a full queue).
const IMPORT_ATTEMPTS: u32 = 5;
/// `listusers` p99 must be under this.
const LISTUSERS_P99_MS: f64 = 20.0;
/// `admin-update` must reach this many writes per second.
const ADMIN_UPDATE_RATE: f64 = 3_000.0;

/// Given names, ASCII (prefixes are cut by characters) and with varied
/// initials, so that short prefixes match one name or several.
// Kept as a block: one name a line would be a hundred lines of names.
#[rustfmt::skip]
pub const GIVEN_NAMES: [&str; 50] = [
    "Aaliyah", "Adam", "Alice", "Amelia", "Benjamin", "Bianca", "Carlos", "Charlotte", "Chloe", "Daniel", "David",
    "Elena", "Emma", "Ethan", "Fatima", "Felix", "Gabriel", "Grace", "Hannah", "Henry", "Isabel", "Ivan", "Jack",
    "James", "Julia", "Kai", "Karen", "Leo", "Liam", "Lucia", "Maria", "Mateo", "Mia", "Noah", "Nora", "Olivia",
    "Omar", "Paul", "Priya", "Quinn", "Rosa", "Ryan", "Sara", "Sofia", "Thomas", "Uma", "Victor", "William", "Yuki",
    "Zoe",
];

/// Family names, drawn independently of the given name.
// Kept as a block: one name a line would be a hundred lines of names.
#[rustfmt::skip]
pub const FAMILY_NAMES: [&str; 50] = [
    "Adams", "Ahmed", "Anderson", "Baker", "Brown", "Chen", "Clark", "Cohen", "Costa", "Davis", "Diaz", "Evans",
    "Fischer", "Garcia", "Gonzalez", "Green", "Hall", "Hernandez", "Ivanov", "Jackson", "Johnson", "Kim", "King",
    "Kowalski", "Lee", "Lopez", "Martin", "Meyer", "Miller", "Moore", "Nakamura", "Nguyen", "Okafor", "Patel",
    "Perez", "Rossi", "Santos", "Schmidt", "Silva", "Singh", "Smith", "Suzuki", "Taylor", "Thompson", "Walker",
    "Wang", "White", "Williams", "Wilson", "Young",
];

/// The flags of `tessera bench directory`.
///
/// `--endpoint` and `--token` repeat the CLI's global flags with the same
/// ids, types, env vars and defaults, and `--output` is left to the global
/// flag, for the reasons given on [`super::AuthBenchArgs`].
#[derive(Clone, clap::Args)]
pub struct DirectoryBenchArgs {
    /// Api endpoints, comma separated; load callers are spread over them
    /// round-robin. Setup uses the first.
    #[arg(long, env = "TESSERA_ENDPOINT", default_value = DEFAULT_ENDPOINT, value_name = "URL[,URL...]")]
    pub endpoint: String,
    /// Admin token (printed by `cluster init` and `dev`): every call of this
    /// bench is an admin call.
    #[arg(long, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Which load to run.
    #[arg(long, value_enum, default_value_t = DirectoryScenario::Listusers)]
    pub scenario: DirectoryScenario,
    /// Concurrent callers, each with at most one call in flight. Default:
    /// 16 for `listusers`, 64 for `admin-update`.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// HTTP/2 connections the callers share. Default: one per 8 callers, at
    /// least one per endpoint, rounded up to a multiple of the endpoints.
    #[arg(long)]
    pub connections: Option<usize>,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring, not recorded.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Users in the pool, `user0000000` onwards. Default: 1,000,000 for
    /// `listusers` (at least 1,000), 1,000 for `admin-update`. With
    /// `--pool-id`, how many the earlier run imported.
    #[arg(long)]
    pub users: Option<usize>,
    /// Concurrent `AdminImportUsers` calls (of 1,000 users each) during
    /// setup.
    #[arg(long, default_value_t = 4)]
    pub import_concurrency: usize,
    /// Reuse this pool, populated by an earlier run kept with
    /// `--keep-pool`, instead of creating and populating `bench-<random>`.
    #[arg(long)]
    pub pool_id: Option<String>,
    /// Keep the pool the bench created instead of deleting it at the end,
    /// to rerun with `--pool-id`.
    #[arg(long)]
    pub keep_pool: bool,
}

/// By hand, so that the admin token never reaches a log line.
impl std::fmt::Debug for DirectoryBenchArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryBenchArgs")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("scenario", &self.scenario)
            .field("concurrency", &self.concurrency)
            .field("connections", &self.connections)
            .field("duration", &self.duration)
            .field("warmup", &self.warmup)
            .field("users", &self.users)
            .field("import_concurrency", &self.import_concurrency)
            .field("pool_id", &self.pool_id)
            .field("keep_pool", &self.keep_pool)
            .finish()
    }
}

/// The load a `bench directory` run applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirectoryScenario {
    /// `ListUsers` pages of 60 under a prefix filter on an indexed attribute.
    Listusers,
    /// `AdminUpdateUserAttributes` of random users: replicated writes.
    AdminUpdate,
}

impl DirectoryScenario {
    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryScenario::Listusers => "listusers",
            DirectoryScenario::AdminUpdate => "admin-update",
        }
    }

    /// What the scenario must reach.
    pub fn target(self) -> DirectoryTarget {
        match self {
            DirectoryScenario::Listusers => DirectoryTarget::P99BelowMs(LISTUSERS_P99_MS),
            DirectoryScenario::AdminUpdate => DirectoryTarget::Rate(ADMIN_UPDATE_RATE),
        }
    }

    fn default_users(self) -> usize {
        match self {
            DirectoryScenario::Listusers => 1_000_000,
            DirectoryScenario::AdminUpdate => 1_000,
        }
    }

    fn default_concurrency(self) -> usize {
        match self {
            DirectoryScenario::Listusers => 16,
            DirectoryScenario::AdminUpdate => 64,
        }
    }

    /// The fewest users the scenario works with: `listusers` needs one
    /// full email block, so that its prefixes match two pages.
    fn min_users(self) -> usize {
        match self {
            DirectoryScenario::Listusers => EMAIL_BLOCK,
            DirectoryScenario::AdminUpdate => 1,
        }
    }
}

/// A scenario's pass mark.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "threshold")]
pub enum DirectoryTarget {
    /// The p99 latency of successful calls, in ms, must be under this, and
    /// no call may fail: a failed read (a short page above all) would
    /// otherwise pass unseen, since only successes are timed.
    P99BelowMs(f64),
    /// Successful calls per second must reach this.
    Rate(f64),
}

/// A target checked against a run.
#[derive(Debug, Clone, Serialize)]
pub struct DirectoryTargetCheck {
    pub target: DirectoryTarget,
    /// The measured value the threshold applies to: p99 in ms, or ok/s.
    pub value: f64,
    pub pass: bool,
}

impl DirectoryTarget {
    /// Checks a run that had `ok` successes at `throughput` per second, a
    /// p99 of `p99_us` and `errors` failures.
    pub fn check(self, ok: u64, throughput: f64, p99_us: u64, errors: u64) -> DirectoryTargetCheck {
        match self {
            DirectoryTarget::P99BelowMs(t) => {
                let value = p99_us as f64 / 1_000.0;
                DirectoryTargetCheck {
                    target: self,
                    value,
                    pass: ok > 0 && errors == 0 && value < t,
                }
            }
            DirectoryTarget::Rate(t) => DirectoryTargetCheck {
                target: self,
                value: throughput,
                pass: throughput.is_finite() && throughput >= t,
            },
        }
    }
}

/// Latency percentiles of successful calls, in µs; all zero when nothing
/// succeeded. Its own type rather than [`super::stats::LatencySummary`]
/// because the directory targets want p90 too.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles {
                p50_us: 0,
                p90_us: 0,
                p99_us: 0,
                p999_us: 0,
                max_us: 0,
                mean_us: 0.0,
            };
        }
        Percentiles {
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// How the setup import went.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// Users the server reported imported.
    pub imported: u64,
    /// Per-user failures in batches that were retried after a transient
    /// error: most likely users the first attempt had already created.
    pub failures_after_retry: u64,
    pub concurrency: usize,
    pub seconds: f64,
    /// imported / seconds.
    pub users_per_sec: f64,
}

/// The `listusers` query mix.
#[derive(Debug, Clone, Serialize)]
pub struct QueryMix {
    /// Distinct `email ^=` prefixes drawn from.
    pub email_prefixes: usize,
    /// Distinct `given_name ^=` prefixes drawn from.
    pub given_name_prefixes: usize,
    /// Every this many calls follows a pagination token.
    pub follow_every: u64,
}

/// One kind of call within a run (`email`, `given_name`, `next_page`,
/// `update`).
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    pub ok: u64,
    pub errors: u64,
    pub latency_us: Percentiles,
}

/// Everything a run measured, printable as a table or JSON.
#[derive(Debug, Clone, Serialize)]
pub struct DirectoryBenchReport {
    pub scenario: DirectoryScenario,
    pub endpoints: Vec<String>,
    pub connections: usize,
    pub concurrency: usize,
    pub pool_id: String,
    /// Users the load draws from.
    pub users: usize,
    /// Absent when the pool was reused.
    pub import: Option<ImportReport>,
    /// `listusers` only.
    pub queries: Option<QueryMix>,
    pub warmup_secs: f64,
    /// The measured window.
    pub duration_secs: f64,
    /// Calls that succeeded in the window (pages that passed every check).
    pub ok: u64,
    /// ok per second.
    pub throughput: f64,
    /// Calls that failed in the window, by gRPC code or bench check
    /// (`ShortPage`, `WrongUser`, `NoPaginationToken`).
    pub errors: BTreeMap<String, u64>,
    /// One message per error code.
    pub error_samples: BTreeMap<String, String>,
    /// Latency of the successful calls.
    pub latency_us: Percentiles,
    pub by_kind: BTreeMap<String, KindReport>,
    pub target: DirectoryTargetCheck,
    /// Whether the pool the bench created was deleted afterwards.
    pub pool_deleted: bool,
}

impl DirectoryBenchReport {
    /// Whether the scenario met its target.
    pub fn passed(&self) -> bool {
        self.target.pass
    }

    /// The report in `format`, ending with a newline.
    pub fn render(&self, format: OutputFormat) -> String {
        match format {
            OutputFormat::Json => match serde_json::to_string(self) {
                Ok(s) => s + "\n",
                Err(e) => format!("{{\"error\":\"serializing the report: {e}\"}}\n"),
            },
            OutputFormat::Table => self.table(),
        }
    }

    /// Prints the report to stdout in `format`.
    pub fn print(&self, format: OutputFormat) {
        print!("{}", self.render(format));
    }

    fn table(&self) -> String {
        let mut s = String::new();
        let errors: u64 = self.errors.values().sum();
        // Writing to a String cannot fail.
        let _ = writeln!(s, "tessera bench directory: {}", self.scenario.as_str());
        let _ = writeln!(
            s,
            "  endpoints     {} ({} callers over {} connection{})",
            self.endpoints.join(", "),
            self.concurrency,
            self.connections,
            if self.connections == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            s,
            "  pool          {} ({} users{})",
            self.pool_id,
            group_thousands(self.users as u64),
            if self.pool_deleted {
                ", deleted"
            } else if self.import.is_some() {
                ", kept: rerun with --pool-id"
            } else {
                ""
            }
        );
        match &self.import {
            Some(i) => {
                let _ = writeln!(
                    s,
                    "  import        {} users in {:.1} s ({} users/s, {} callers, batches of {}{})",
                    group_thousands(i.imported),
                    i.seconds,
                    format_rate(i.users_per_sec),
                    i.concurrency,
                    group_thousands(IMPORT_BATCH as u64),
                    if i.failures_after_retry > 0 {
                        format!(
                            "; {} failures in retried batches",
                            group_thousands(i.failures_after_retry)
                        )
                    } else {
                        String::new()
                    }
                );
            }
            None => {
                let _ = writeln!(s, "  import        none (reused pool)");
            }
        }
        if let Some(q) = &self.queries {
            let _ = writeln!(
                s,
                "  queries       ListUsers limit {PAGE}: email ^= ({} prefixes), given_name ^= ({} prefixes); every {}th call the next page",
                q.email_prefixes,
                q.given_name_prefixes,
                q.follow_every
            );
        }
        let _ = writeln!(
            s,
            "  window        {} s warmup, {} s measured",
            self.warmup_secs, self.duration_secs
        );
        let unit = match self.scenario {
            DirectoryScenario::Listusers => "pages",
            DirectoryScenario::AdminUpdate => "writes",
        };
        let _ = writeln!(
            s,
            "  ok            {} {unit} ({}/s)",
            group_thousands(self.ok),
            format_rate(self.throughput)
        );
        let by_code: Vec<String> = self
            .errors
            .iter()
            .map(|(code, n)| format!("{code} {}", group_thousands(*n)))
            .collect();
        if by_code.is_empty() {
            let _ = writeln!(s, "  errors        0");
        } else {
            let _ = writeln!(
                s,
                "  errors        {} ({})",
                group_thousands(errors),
                by_code.join(", ")
            );
            for (code, msg) in &self.error_samples {
                let _ = writeln!(s, "                {code}: {msg}");
            }
        }
        let _ = writeln!(s, "  latency       {}", latency_line(&self.latency_us));
        if self.by_kind.len() > 1 {
            for (kind, k) in &self.by_kind {
                let _ = writeln!(
                    s,
                    "    {kind:<11} {} ok, {} errors; {}",
                    group_thousands(k.ok),
                    group_thousands(k.errors),
                    latency_line(&k.latency_us)
                );
            }
        }
        let verdict = if self.target.pass { "PASS" } else { "FAIL" };
        let _ = match self.target.target {
            DirectoryTarget::P99BelowMs(t) => writeln!(
                s,
                "  target        p99 = {:.2} ms (< {t} ms for a {PAGE}-user page), {} errors (0)  {verdict}",
                self.target.value,
                group_thousands(errors)
            ),
            DirectoryTarget::Rate(t) => writeln!(
                s,
                "  target        throughput = {} writes/s (>= {} on a 3-node cluster)  {verdict}",
                format_rate(self.target.value),
                format_rate(t)
            ),
        };
        s
    }
}

/// `p50 1.23 ms  p90 ...  p99 ...  max ...`: milliseconds throughout, the
/// unit the targets are stated in.
fn latency_line(l: &Percentiles) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  max {}",
        ms(l.p50_us),
        ms(l.p90_us),
        ms(l.p99_us),
        ms(l.max_us)
    )
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1_000.0)
}

/// The validated arguments of a run. (No `Debug`: it holds the admin
/// token.)
#[derive(Clone)]
struct Plan {
    scenario: DirectoryScenario,
    endpoints: Vec<String>,
    token: String,
    concurrency: usize,
    connections: usize,
    users: usize,
    import_concurrency: usize,
    warmup: Duration,
    duration: Duration,
}

impl Plan {
    fn from_args(args: &DirectoryBenchArgs) -> anyhow::Result<Plan> {
        let scenario = args.scenario;
        let endpoints = parse_endpoints(&args.endpoint);
        if endpoints.is_empty() {
            bail!("--endpoint: give at least one endpoint");
        }
        let Some(token) = args.token.clone().filter(|t| !t.is_empty()) else {
            bail!("--token (or TESSERA_ADMIN_TOKEN) is required: every call of this bench is an admin call");
        };
        let concurrency = args.concurrency.unwrap_or_else(|| scenario.default_concurrency());
        if concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if args.connections == Some(0) {
            bail!("--connections must be at least 1");
        }
        let users = args.users.unwrap_or_else(|| scenario.default_users());
        if users < scenario.min_users() {
            bail!(
                "--users must be at least {} for the {} scenario{}",
                group_thousands(scenario.min_users() as u64),
                scenario.as_str(),
                if scenario == DirectoryScenario::Listusers {
                    ", so that every email prefix matches two full pages"
                } else {
                    ""
                }
            );
        }
        if users > MAX_USERS {
            bail!(
                "--users: at most {} (usernames have seven digits)",
                group_thousands(MAX_USERS as u64)
            );
        }
        if args.import_concurrency == 0 {
            bail!("--import-concurrency must be at least 1");
        }
        let duration = secs("--duration", args.duration)?;
        if duration.is_zero() {
            bail!("--duration must be more than 0 seconds");
        }
        Ok(Plan {
            scenario,
            connections: args
                .connections
                .unwrap_or_else(|| default_connections(concurrency, endpoints.len())),
            endpoints,
            token,
            concurrency,
            users,
            import_concurrency: args.import_concurrency,
            warmup: secs("--warmup", args.warmup)?,
            duration,
        })
    }
}

/// Runs the bench: setup, then the timed load.
pub async fn run(args: DirectoryBenchArgs) -> anyhow::Result<DirectoryBenchReport> {
    let plan = Plan::from_args(&args)?;
    let admin = Client::connect(&plan.endpoints[0], Some(plan.token.clone()))
        .await
        .with_context(|| format!("connecting to {}", plan.endpoints[0]))?;

    let (pool_id, created) = match &args.pool_id {
        Some(id) => {
            let pool = admin
                .describe_user_pool(id, true)
                .await
                .map_err(|s| status_error(&format!("DescribeUserPool {id}"), s))?;
            (pool.id, false)
        }
        None => {
            let name = format!("bench-{}", hex::encode(random_bytes::<4>()));
            let pool = admin
                .create_user_pool(&name)
                .await
                .map_err(|s| status_error("CreateUserPool", s))?;
            (pool.id, true)
        }
    };

    let result = run_in_pool(&plan, &admin, &pool_id, created).await;

    let mut pool_deleted = false;
    if created && !args.keep_pool {
        eprintln!("deleting pool {pool_id}");
        match admin.delete_user_pool(&pool_id).await {
            Ok(()) => pool_deleted = true,
            Err(s) => eprintln!(
                "could not delete the bench pool {pool_id}: {:?}: {}",
                s.code(),
                s.message()
            ),
        }
    } else if created {
        eprintln!(
            "kept pool {pool_id}; rerun with --pool-id {pool_id} --users {}",
            plan.users
        );
    }
    result.map(|mut r| {
        r.pool_deleted = pool_deleted;
        r
    })
}

/// Everything after the pool exists.
async fn run_in_pool(
    plan: &Plan,
    admin: &Client,
    pool_id: &str,
    created: bool,
) -> anyhow::Result<DirectoryBenchReport> {
    let import = if created {
        Some(import_users(admin, pool_id, plan.users, plan.import_concurrency).await?)
    } else {
        None
    };
    check_population(admin, pool_id, plan.users).await?;

    let (workload, queries) = match plan.scenario {
        DirectoryScenario::Listusers => {
            let email_prefixes = email_prefixes(plan.users);
            let name_prefixes = given_name_prefixes(plan.users);
            if name_prefixes.is_empty() {
                eprintln!("too few users for a given_name prefix to match two pages: email prefixes only");
            }
            let mix = QueryMix {
                email_prefixes: email_prefixes.len(),
                given_name_prefixes: name_prefixes.len(),
                follow_every: FOLLOW_EVERY,
            };
            let workload = Workload::ListUsers {
                pool_id: pool_id.to_string(),
                email_prefixes,
                name_prefixes,
            };
            (workload, Some(mix))
        }
        DirectoryScenario::AdminUpdate => (
            Workload::AdminUpdate {
                pool_id: pool_id.to_string(),
                users: plan.users,
            },
            None,
        ),
    };

    eprintln!(
        "running {} with {} callers: {} s warmup, {} s measured",
        plan.scenario.as_str(),
        plan.concurrency,
        plan.warmup.as_secs_f64(),
        plan.duration.as_secs_f64()
    );
    let by_kind = load(plan, Arc::new(workload)).await?;

    let mut total = TaskStats::new()?;
    let mut kinds = BTreeMap::new();
    for (kind, stats) in by_kind {
        kinds.insert(
            kind.to_string(),
            KindReport {
                ok: stats.ok,
                errors: stats.error_total(),
                latency_us: Percentiles::of(&stats.latency),
            },
        );
        total.merge(stats)?;
    }
    let secs = plan.duration.as_secs_f64();
    let throughput = total.ok as f64 / secs;
    let latency = Percentiles::of(&total.latency);
    Ok(DirectoryBenchReport {
        scenario: plan.scenario,
        endpoints: plan.endpoints.clone(),
        connections: plan.connections,
        concurrency: plan.concurrency,
        pool_id: pool_id.to_string(),
        users: plan.users,
        import,
        queries,
        warmup_secs: plan.warmup.as_secs_f64(),
        duration_secs: secs,
        target: plan
            .scenario
            .target()
            .check(total.ok, throughput, latency.p99_us, total.error_total()),
        ok: total.ok,
        throughput,
        latency_us: latency,
        by_kind: kinds,
        errors: total.errors,
        error_samples: total.error_samples,
        pool_deleted: false,
    })
}

/// The `i`-th bench user's name.
pub fn username(i: usize) -> String {
    format!("user{i:07}")
}

/// SplitMix64's finaliser: spreads consecutive indexes over the name lists
/// evenly, and independently of the email blocks, without a random draw,
/// so that a later run knows every user's names without reading them.
fn mix(i: usize) -> u64 {
    let mut x = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The index of user `i`'s given name in [`GIVEN_NAMES`].
fn given_name_index(i: usize) -> usize {
    // Less than 50, so it fits.
    (mix(i) % GIVEN_NAMES.len() as u64) as usize
}

/// The `i`-th bench user's given name.
pub fn given_name(i: usize) -> &'static str {
    GIVEN_NAMES[given_name_index(i)]
}

/// The `i`-th bench user's family name, from the high half of the same mix
/// so that it varies independently of the given name.
pub fn family_name(i: usize) -> &'static str {
    FAMILY_NAMES[((mix(i) >> 32) % FAMILY_NAMES.len() as u64) as usize]
}

/// The `i`-th bench user as imported.
pub fn import_user(i: usize) -> ImportUserType {
    let name = username(i);
    let attr = |n: &str, v: String| AttributeValue {
        name: n.to_string(),
        value: v,
    };
    ImportUserType {
        attributes: vec![
            attr("email", format!("{name}@example.com")),
            attr("given_name", given_name(i).to_string()),
            attr("family_name", family_name(i).to_string()),
        ],
        username: name,
    }
}

/// The email prefixes `listusers` draws from: `user` and the first four of
/// the seven digits, one per *full* block of [`EMAIL_BLOCK`] users, so
/// every prefix matches exactly 1,000 users: two full pages and more.
pub fn email_prefixes(users: usize) -> Vec<String> {
    (0..users / EMAIL_BLOCK).map(|b| format!("user{b:04}")).collect()
}

/// The `given_name` prefixes `listusers` draws from: the first two to four
/// letters of each name, kept when the users they match (counted over the
/// deterministic names, and matched ignoring case as the server does) fill
/// at least two pages.
pub fn given_name_prefixes(users: usize) -> Vec<String> {
    let mut per_name = [0usize; GIVEN_NAMES.len()];
    for i in 0..users {
        per_name[given_name_index(i)] += 1;
    }
    let candidates: BTreeSet<String> = GIVEN_NAMES
        .iter()
        .flat_map(|n| (2..=4).map(move |len| n.chars().take(len).collect::<String>()))
        .collect();
    candidates
        .into_iter()
        .filter(|p| {
            let p = p.to_lowercase();
            let matched: usize = GIVEN_NAMES
                .iter()
                .zip(per_name)
                .filter(|(n, _)| n.to_lowercase().starts_with(&p))
                .map(|(_, c)| c)
                .sum();
            matched >= 2 * PAGE
        })
        .collect()
}

/// Whether `status` is worth retrying an import batch for: the cluster was
/// between leaders or busy, and the batch may or may not have landed.
fn transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted
    )
}

/// The user indexes of batch `b` out of `users`.
fn batch_range(b: usize, users: usize) -> std::ops::Range<usize> {
    let start = b * IMPORT_BATCH;
    start..(start + IMPORT_BATCH).min(users)
}

/// Imports users `0..users` with `concurrency` calls in flight, printing
/// the rate every [`PROGRESS_EVERY`] to stderr (stdout is for the report).
async fn import_users(admin: &Client, pool_id: &str, users: usize, concurrency: usize) -> anyhow::Result<ImportReport> {
    eprintln!(
        "importing {} users into {pool_id} ({} callers, batches of {})",
        group_thousands(users as u64),
        concurrency,
        group_thousands(IMPORT_BATCH as u64)
    );
    let batches = users.div_ceil(IMPORT_BATCH);
    let mut calls = futures::stream::iter(0..batches)
        .map(|b| import_batch(admin, pool_id, batch_range(b, users)))
        .buffer_unordered(concurrency);
    let start = instant();
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    // The first tick is immediate; progress starts one period in.
    ticker.tick().await;
    let (mut imported, mut failures) = (0u64, 0u64);
    let (mut last_at, mut last_imported) = (start, 0u64);
    loop {
        tokio::select! {
            next = calls.next() => match next {
                Some(r) => {
                    let (n, f) = r?;
                    imported += n;
                    failures += f;
                }
                None => break,
            },
            _ = ticker.tick() => {
                let now = instant();
                let recent = (imported - last_imported) as f64 / (now - last_at).as_secs_f64();
                eprintln!(
                    "  {} / {} users, {} users/s (average {} users/s)",
                    group_thousands(imported),
                    group_thousands(users as u64),
                    format_rate(recent),
                    format_rate(imported as f64 / (now - start).as_secs_f64())
                );
                (last_at, last_imported) = (now, imported);
            }
        }
    }
    let seconds = (instant() - start).as_secs_f64();
    let users_per_sec = if seconds > 0.0 { imported as f64 / seconds } else { 0.0 };
    eprintln!(
        "imported {} users in {seconds:.1} s ({} users/s)",
        group_thousands(imported),
        format_rate(users_per_sec)
    );
    Ok(ImportReport {
        imported,
        failures_after_retry: failures,
        concurrency,
        seconds,
        users_per_sec,
    })
}

/// One `AdminImportUsers` call for `range`, retried on transient errors.
/// Returns the users imported and the failures tolerated. A failure in a
/// first attempt is fatal (the pool is fresh, so it is a bug or a bad
/// request); after a retry, failures are expected, since the attempt that
/// timed out may have created the users, and are only counted.
async fn import_batch(admin: &Client, pool_id: &str, range: std::ops::Range<usize>) -> anyhow::Result<(u64, u64)> {
    let body = AdminImportUsersRequest {
        user_pool_id: pool_id.to_string(),
        users: range.clone().map(import_user).collect(),
        password: PASSWORD.to_string(),
        mark_verified: true,
    };
    let what = || {
        format!(
            "AdminImportUsers {}..{}",
            username(range.start),
            username(range.end - 1)
        )
    };
    let mut attempt = 1;
    loop {
        match admin.admin().admin_import_users(admin.req(body.clone())).await {
            Ok(resp) => {
                let r = resp.into_inner();
                if attempt == 1 {
                    if let Some(f) = r.failures.first() {
                        bail!(
                            "{}: {} users failed, e.g. {}: {}",
                            what(),
                            r.failures.len(),
                            f.username,
                            f.reason
                        );
                    }
                }
                return Ok((u64::try_from(r.imported).unwrap_or(0), r.failures.len() as u64));
            }
            Err(s) if attempt < IMPORT_ATTEMPTS && transient(s.code()) => {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                attempt += 1;
            }
            Err(s) => return Err(status_error(&what(), s)),
        }
    }
}

/// Checks that the last user the load may pick exists, so that a reused
/// pool populated with fewer users (or a broken import) fails here, with a
/// clear message, rather than as a run of short pages or NotFound errors.
async fn check_population(admin: &Client, pool_id: &str, users: usize) -> anyhow::Result<()> {
    let last = username(users - 1);
    let body = ListUsersRequest {
        user_pool_id: pool_id.to_string(),
        limit: 1,
        filter: format!("username = \"{last}\""),
        consistent_read: true,
        ..Default::default()
    };
    let found = admin
        .admin()
        .list_users(admin.req(body))
        .await
        .map_err(|s| status_error(&format!("ListUsers username = {last:?}"), s))?
        .into_inner()
        .users;
    if found.is_empty() {
        bail!(
            "pool {pool_id} has no user {last}: it holds fewer than --users {users} bench users \
             (populate one by leaving out --pool-id, or pass the --users it was populated with)"
        );
    }
    Ok(())
}

/// A failed call: a gRPC error, or an answer the bench's checks reject.
#[derive(Debug)]
struct Failure {
    code: String,
    message: String,
}

impl From<Status> for Failure {
    fn from(s: Status) -> Self {
        Failure {
            code: format!("{:?}", s.code()),
            message: s.message().to_string(),
        }
    }
}

fn failure(code: &str, message: String) -> Failure {
    Failure {
        code: code.to_string(),
        message,
    }
}

/// One `ListUsers` prefix query.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Query {
    attribute: &'static str,
    prefix: String,
}

impl Query {
    fn filter(&self) -> String {
        format!("{} ^= \"{}\"", self.attribute, self.prefix)
    }
}

/// Checks one page of `query`: exactly [`PAGE`] users, each matching the
/// prefix (ignoring case, as the server does), and, on a first page, a
/// token for the next one, since every prefix matches two pages or more.
fn check_page(query: &Query, first_page: bool, users: &[UserType], token: &str) -> Result<(), Failure> {
    let page = if first_page { "first page" } else { "next page" };
    if users.len() != PAGE {
        return Err(failure(
            "ShortPage",
            format!("{}: {page} has {} users, not {PAGE}", query.filter(), users.len()),
        ));
    }
    let prefix = query.prefix.to_lowercase();
    for u in users {
        let value = u
            .attributes
            .iter()
            .find(|a| a.name == query.attribute)
            .map(|a| a.value.as_str());
        if !value.is_some_and(|v| v.to_lowercase().starts_with(&prefix)) {
            return Err(failure(
                "WrongUser",
                format!(
                    "{}: {page} holds {} with {} {value:?}",
                    query.filter(),
                    u.username,
                    query.attribute
                ),
            ));
        }
    }
    if first_page && token.is_empty() {
        return Err(failure(
            "NoPaginationToken",
            format!("{}: a full first page without a pagination token", query.filter()),
        ));
    }
    Ok(())
}

/// What the load callers call, and with what.
enum Workload {
    ListUsers {
        pool_id: String,
        email_prefixes: Vec<String>,
        name_prefixes: Vec<String>,
    },
    AdminUpdate {
        pool_id: String,
        users: usize,
    },
}

/// One caller's connection and state.
struct Caller {
    client: Client,
    admin: AdminClient<Channel>,
    /// Seeded from the OS once per caller: fast to draw from, and the
    /// callers do not share a lock.
    rng: SmallRng,
    /// The previous call's query and pagination token, for the next page.
    pending: Option<(Query, String)>,
    seq: u64,
}

impl Workload {
    /// One call; returns the kind it was, for the per-kind breakdown.
    async fn call(&self, c: &mut Caller) -> (&'static str, Result<(), Failure>) {
        match self {
            Workload::ListUsers {
                pool_id,
                email_prefixes,
                name_prefixes,
            } => {
                let follow = c.seq % FOLLOW_EVERY == FOLLOW_EVERY - 1;
                let (kind, query, token) = match c.pending.take() {
                    Some((q, t)) if follow => ("next_page", q, t),
                    _ => {
                        let email = name_prefixes.is_empty() || c.rng.random_bool(0.5);
                        let (kind, attribute, prefixes) = if email {
                            ("email", "email", email_prefixes)
                        } else {
                            ("given_name", "given_name", name_prefixes)
                        };
                        let prefix = prefixes[c.rng.random_range(0..prefixes.len())].clone();
                        (kind, Query { attribute, prefix }, String::new())
                    }
                };
                let first_page = token.is_empty();
                let body = ListUsersRequest {
                    user_pool_id: pool_id.clone(),
                    limit: PAGE as i32,
                    pagination_token: token,
                    filter: query.filter(),
                    ..Default::default()
                };
                let outcome = match c.admin.list_users(c.client.req(body)).await {
                    Ok(resp) => {
                        let r = resp.into_inner();
                        let checked = check_page(&query, first_page, &r.users, &r.pagination_token);
                        if first_page && checked.is_ok() {
                            c.pending = Some((query, r.pagination_token));
                        }
                        checked
                    }
                    Err(s) => Err(s.into()),
                };
                (kind, outcome)
            }
            Workload::AdminUpdate { pool_id, users } => {
                let body = AdminUpdateUserAttributesRequest {
                    user_pool_id: pool_id.clone(),
                    username: username(c.rng.random_range(0..*users)),
                    user_attributes: vec![AttributeValue {
                        name: "given_name".to_string(),
                        value: GIVEN_NAMES[c.rng.random_range(0..GIVEN_NAMES.len())].to_string(),
                    }],
                };
                let outcome = c
                    .admin
                    .admin_update_user_attributes(c.client.req(body))
                    .await
                    .map(drop)
                    .map_err(Failure::from);
                ("update", outcome)
            }
        }
    }
}

/// Opens the connections, runs the callers through warmup and the measured
/// window, and merges what they recorded, by kind of call.
async fn load(plan: &Plan, workload: Arc<Workload>) -> anyhow::Result<BTreeMap<&'static str, TaskStats>> {
    let mut clients = Vec::with_capacity(plan.connections);
    for j in 0..plan.connections {
        let endpoint = &plan.endpoints[j % plan.endpoints.len()];
        let client = Client::connect(endpoint, Some(plan.token.clone()))
            .await
            .with_context(|| format!("connecting to {endpoint}"))?;
        clients.push(client);
    }
    let start = instant();
    let record_from = start + plan.warmup;
    let end = record_from + plan.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..plan.concurrency {
        let client = clients[task % clients.len()].clone();
        let caller = Caller {
            admin: client.admin(),
            client,
            rng: SmallRng::from_seed(random_bytes::<32>()),
            pending: None,
            seq: 0,
        };
        let workload = workload.clone();
        tasks.spawn(async move { run_caller(caller, workload, record_from, end).await });
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
/// complete in `[record_from, end)` under their kind.
async fn run_caller(
    mut caller: Caller,
    workload: Arc<Workload>,
    record_from: Instant,
    end: Instant,
) -> anyhow::Result<BTreeMap<&'static str, TaskStats>> {
    let mut stats: BTreeMap<&'static str, TaskStats> = BTreeMap::new();
    let deadline = tokio::time::Instant::from_std(end);
    loop {
        let t0 = instant();
        if t0 >= end {
            break;
        }
        let (kind, outcome) = tokio::select! {
            r = workload.call(&mut caller) => r,
            _ = tokio::time::sleep_until(deadline) => break,
        };
        caller.seq += 1;
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

#[cfg(test)]
mod tests {
    use clap::{Parser, Subcommand, ValueEnum};

    use super::*;

    /// The shape of `src/main.rs`, as in the `bench auth` tests.
    #[derive(Parser, Debug)]
    struct Cli {
        #[arg(long, global = true, env = "TESSERA_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
        endpoint: String,
        #[arg(long, global = true, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[arg(long, global = true, value_enum, default_value = "table")]
        output: MainOutput,
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
    enum MainOutput {
        Json,
        Table,
    }

    #[derive(Subcommand, Debug)]
    enum Cmd {
        #[command(subcommand)]
        Bench(BenchCmd),
    }

    #[derive(Subcommand, Debug)]
    enum BenchCmd {
        Auth(crate::bench::AuthBenchArgs),
        Directory(DirectoryBenchArgs),
    }

    fn parse(argv: &[&str]) -> (Cli, DirectoryBenchArgs) {
        let cli = Cli::try_parse_from(argv).unwrap();
        let Cmd::Bench(BenchCmd::Directory(a)) = &cli.cmd else {
            panic!("not bench directory: {:?}", cli.cmd);
        };
        let a = a.clone();
        (cli, a)
    }

    #[test]
    fn cli_shape_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn debug_hides_the_token() {
        let (_, a) = parse(&["tessera", "bench", "directory", "--token", "s3cret-admin"]);
        let d = format!("{a:?}");
        assert!(!d.contains("s3cret-admin"), "{d}");
        assert!(d.contains("<redacted>"), "{d}");
    }

    #[test]
    fn flags_coexist_with_the_global_ones() {
        let (cli, a) = parse(&[
            "tessera",
            "bench",
            "directory",
            "--endpoint",
            "http://a:7700,http://b:7700",
            "--token",
            "t0k",
            "--scenario",
            "admin-update",
            "--concurrency",
            "32",
            "--users",
            "500",
            "--import-concurrency",
            "2",
            "--pool-id",
            "local_abc",
            "--keep-pool",
            "--output",
            "json",
        ]);
        assert_eq!(parse_endpoints(&a.endpoint), vec!["http://a:7700", "http://b:7700"]);
        assert_eq!(a.token.as_deref(), Some("t0k"));
        assert_eq!(a.scenario, DirectoryScenario::AdminUpdate);
        assert_eq!(a.concurrency, Some(32));
        assert_eq!(a.users, Some(500));
        assert_eq!(a.import_concurrency, 2);
        assert_eq!(a.pool_id.as_deref(), Some("local_abc"));
        assert!(a.keep_pool);
        assert_eq!(cli.output, MainOutput::Json);
        assert_eq!(cli.token.as_deref(), Some("t0k"));
        let (_, a) = parse(&[
            "tessera",
            "--token",
            "t",
            "bench",
            "directory",
            "--scenario",
            "listusers",
        ]);
        assert_eq!(a.scenario, DirectoryScenario::Listusers);
        assert_eq!(a.token.as_deref(), Some("t"));
    }

    fn args(scenario: DirectoryScenario) -> DirectoryBenchArgs {
        let (_, mut a) = parse(&["tessera", "bench", "directory", "--token", "t"]);
        a.scenario = scenario;
        a
    }

    #[test]
    fn defaults_depend_on_the_scenario() {
        let p = Plan::from_args(&args(DirectoryScenario::Listusers)).unwrap();
        assert_eq!((p.users, p.concurrency, p.connections), (1_000_000, 16, 2));
        assert_eq!(p.import_concurrency, 4);
        assert_eq!(p.duration, Duration::from_secs(10));
        assert_eq!(p.warmup, Duration::from_secs(2));
        let p = Plan::from_args(&args(DirectoryScenario::AdminUpdate)).unwrap();
        assert_eq!((p.users, p.concurrency, p.connections), (1_000, 64, 8));
    }

    #[test]
    fn plans_validate_their_arguments() {
        let bad = |f: &dyn Fn(&mut DirectoryBenchArgs), s: DirectoryScenario| {
            let mut a = args(s);
            f(&mut a);
            Plan::from_args(&a).is_err()
        };
        use DirectoryScenario::*;
        assert!(bad(&|a| a.token = None, Listusers));
        assert!(bad(&|a| a.users = Some(999), Listusers));
        assert!(!bad(&|a| a.users = Some(1_000), Listusers));
        assert!(!bad(&|a| a.users = Some(1), AdminUpdate));
        assert!(bad(&|a| a.users = Some(0), AdminUpdate));
        assert!(bad(&|a| a.users = Some(MAX_USERS + 1), AdminUpdate));
        assert!(bad(&|a| a.concurrency = Some(0), AdminUpdate));
        assert!(bad(&|a| a.connections = Some(0), AdminUpdate));
        assert!(bad(&|a| a.import_concurrency = 0, Listusers));
        assert!(bad(&|a| a.duration = 0.0, Listusers));
        assert!(bad(&|a| a.warmup = -1.0, Listusers));
        assert!(bad(&|a| a.endpoint = " , ".into(), Listusers));
    }

    #[test]
    fn users_are_named_and_described_deterministically() {
        let u = import_user(123_456);
        assert_eq!(u.username, "user0123456");
        let get = |n: &str| u.attributes.iter().find(|a| a.name == n).unwrap().value.clone();
        assert_eq!(get("email"), "user0123456@example.com");
        assert_eq!(get("given_name"), given_name(123_456));
        assert_eq!(get("family_name"), family_name(123_456));
        assert!(GIVEN_NAMES.contains(&given_name(7)));
        // Every name is used, roughly evenly.
        let mut per = [0usize; GIVEN_NAMES.len()];
        for i in 0..50_000 {
            per[given_name_index(i)] += 1;
        }
        assert!(per.iter().all(|&n| (800..1_200).contains(&n)), "{per:?}");
        let distinct: BTreeSet<&str> = GIVEN_NAMES.iter().copied().collect();
        assert_eq!(distinct.len(), GIVEN_NAMES.len());
    }

    #[test]
    fn import_batches_cover_every_user_once() {
        assert_eq!(batch_range(0, 2_500), 0..1_000);
        assert_eq!(batch_range(2, 2_500), 2_000..2_500);
        assert_eq!(2_500usize.div_ceil(IMPORT_BATCH), 3);
    }

    #[test]
    fn email_prefixes_cover_full_blocks_only() {
        assert_eq!(email_prefixes(999), Vec::<String>::new());
        assert_eq!(email_prefixes(1_500), vec!["user0000"]);
        let p = email_prefixes(1_000_000);
        assert_eq!(p.len(), 1_000);
        assert_eq!(p[123], "user0123");
        assert_eq!(p[999], "user0999");
        // Each prefix matches exactly the 1,000 users of its block.
        let n = 20_000;
        for prefix in email_prefixes(n) {
            let matched = (0..n).filter(|&i| username(i).starts_with(&prefix)).count();
            assert_eq!(matched, EMAIL_BLOCK, "{prefix}");
        }
    }

    #[test]
    fn every_name_prefix_fills_two_pages() {
        for n in [1_000, 20_000] {
            let prefixes = given_name_prefixes(n);
            for p in &prefixes {
                let p = p.to_lowercase();
                let matched = (0..n).filter(|&i| given_name(i).to_lowercase().starts_with(&p)).count();
                assert!(matched >= 2 * PAGE, "{p}: {matched} of {n}");
            }
        }
        // Too few users for any name to fill two pages: email prefixes only.
        assert!(given_name_prefixes(1_000).is_empty());
        assert!(given_name_prefixes(20_000).len() > 50);
        // With a million users every 2-to-4 letter prefix qualifies.
        assert!(given_name_prefixes(1_000_000).len() > 100);
    }

    fn user(name: &str, email: &str) -> UserType {
        UserType {
            username: name.to_string(),
            attributes: vec![AttributeValue {
                name: "email".into(),
                value: email.into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn pages_are_checked() {
        let q = Query {
            attribute: "email",
            prefix: "user0123".into(),
        };
        assert_eq!(q.filter(), "email ^= \"user0123\"");
        let full: Vec<UserType> = (0..PAGE)
            .map(|i| user(&username(123_000 + i), &format!("USER{:07}@example.com", 123_000 + i)))
            .collect();
        assert!(check_page(&q, true, &full, "tok").is_ok());
        assert!(check_page(&q, false, &full, "").is_ok());
        assert_eq!(check_page(&q, true, &full, "").unwrap_err().code, "NoPaginationToken");
        assert_eq!(check_page(&q, true, &full[1..], "tok").unwrap_err().code, "ShortPage");
        let mut stray = full.clone();
        stray[5] = user("user0999999", "user0999999@example.com");
        assert_eq!(check_page(&q, false, &stray, "").unwrap_err().code, "WrongUser");
        stray[5].attributes.clear();
        assert_eq!(check_page(&q, false, &stray, "").unwrap_err().code, "WrongUser");
    }

    #[test]
    fn targets_pass_and_fail_at_the_threshold() {
        let l = DirectoryScenario::Listusers.target();
        assert!(l.check(10, 1.0, 19_999, 0).pass);
        assert!(!l.check(10, 1.0, 20_000, 0).pass);
        assert!(!l.check(10, 1.0, 1_000, 1).pass, "an error fails a latency target");
        assert!(!l.check(0, 0.0, 0, 0).pass, "nothing measured");
        let u = DirectoryScenario::AdminUpdate.target();
        assert!(u.check(1, 3_000.0, 1, 5).pass);
        assert!(!u.check(1, 2_999.0, 1, 0).pass);
    }

    fn report() -> DirectoryBenchReport {
        let mut stats = TaskStats::new().unwrap();
        stats.record_ok(Duration::from_millis(2));
        stats.record_error("ShortPage", "email ^= \"user0123\": first page has 42 users, not 60");
        let latency = Percentiles {
            p50_us: 1_234,
            p90_us: 5_000,
            p99_us: 19_990,
            p999_us: 25_000,
            max_us: 31_000,
            mean_us: 2_000.0,
        };
        DirectoryBenchReport {
            scenario: DirectoryScenario::Listusers,
            endpoints: vec![DEFAULT_ENDPOINT.into()],
            connections: 2,
            concurrency: 16,
            pool_id: "local_abc".into(),
            users: 1_000_000,
            import: Some(ImportReport {
                imported: 1_000_000,
                failures_after_retry: 0,
                concurrency: 4,
                seconds: 200.0,
                users_per_sec: 5_000.0,
            }),
            queries: Some(QueryMix {
                email_prefixes: 1_000,
                given_name_prefixes: 120,
                follow_every: FOLLOW_EVERY,
            }),
            warmup_secs: 2.0,
            duration_secs: 10.0,
            ok: stats.ok,
            throughput: 10.0,
            errors: stats.errors.clone(),
            error_samples: stats.error_samples.clone(),
            by_kind: [(
                "email".to_string(),
                KindReport {
                    ok: stats.ok,
                    errors: 1,
                    latency_us: latency,
                },
            )]
            .into_iter()
            .collect(),
            target: DirectoryScenario::Listusers
                .target()
                .check(stats.ok, 10.0, latency.p99_us, 1),
            latency_us: latency,
            pool_deleted: false,
        }
    }

    #[test]
    fn table_shows_latencies_in_ms_and_the_verdict() {
        let t = report().render(OutputFormat::Table);
        assert!(
            t.contains("p50 1.23 ms  p90 5.00 ms  p99 19.99 ms  max 31.00 ms"),
            "{t}"
        );
        assert!(
            t.contains("p99 = 19.99 ms (< 20 ms for a 60-user page), 1 errors (0)  FAIL"),
            "{t}"
        );
        assert!(t.contains("errors        1 (ShortPage 1)"), "{t}");
        assert!(t.contains("1,000,000 users in 200.0 s (5,000 users/s"), "{t}");
        assert!(t.contains("every 4th call the next page"), "{t}");
    }

    #[test]
    fn json_is_one_parseable_object() {
        let j = report().render(OutputFormat::Json);
        assert_eq!(j.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["scenario"], "listusers");
        assert_eq!(v["target"]["pass"], false);
        assert_eq!(v["target"]["target"]["kind"], "p99_below_ms");
        assert_eq!(v["target"]["target"]["threshold"], 20.0);
        assert_eq!(v["errors"]["ShortPage"], 1);
        assert_eq!(v["import"]["users_per_sec"], 5_000.0);
        assert_eq!(v["by_kind"]["email"]["ok"], 1);
        let mut r = report();
        r.scenario = DirectoryScenario::AdminUpdate;
        let v: serde_json::Value = serde_json::from_str(&r.render(OutputFormat::Json)).unwrap();
        assert_eq!(v["scenario"], "admin-update");
    }
}
