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

mod load;
mod report;
mod users;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use rand::rngs::SmallRng;
use rand::SeedableRng as _;
use serde::Serialize;

pub use report::{DirectoryBenchReport, ImportReport, KindReport, QueryMix};
pub use users::{
    email_prefixes, family_name, given_name, given_name_prefixes, import_user, username, FAMILY_NAMES, GIVEN_NAMES,
};

use super::driver::{delete_pool, merge_kinds, open_pool, run_load, LoadFlags, LoadPlan};
use super::stats::Percentiles;
use super::{group_thousands, DEFAULT_ENDPOINT};
use crate::client::Client;
use crate::clock::random_bytes;
use load::{DirCaller, Workload};
use users::{check_population, import_users};

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
    /// The target the run was judged against.
    pub target: DirectoryTarget,
    /// The measured value the threshold applies to: p99 in ms, or ok/s.
    pub value: f64,
    /// Whether the run met it.
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

/// The validated arguments of a run. (No `Debug`: it holds the admin
/// token.)
#[derive(Clone)]
struct Plan {
    scenario: DirectoryScenario,
    users: usize,
    import_concurrency: usize,
    load: LoadPlan,
}

impl Plan {
    fn from_args(args: &DirectoryBenchArgs) -> anyhow::Result<Plan> {
        let scenario = args.scenario;
        let load = LoadPlan::from_flags(LoadFlags {
            endpoint: &args.endpoint,
            token: args.token.as_deref(),
            token_needed_for: "every call of this bench is an admin call",
            concurrency: args.concurrency.unwrap_or_else(|| scenario.default_concurrency()),
            connections: args.connections,
            warmup: args.warmup,
            duration: args.duration,
        })?;
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
        Ok(Plan {
            scenario,
            users,
            import_concurrency: args.import_concurrency,
            load,
        })
    }
}

/// Runs the bench: setup, then the timed load.
pub async fn run(args: DirectoryBenchArgs) -> anyhow::Result<DirectoryBenchReport> {
    let plan = Plan::from_args(&args)?;
    let admin = plan.load.admin_client().await?;
    let name = format!("bench-{}", hex::encode(random_bytes::<4>()));
    let (pool, created) = open_pool(&admin, args.pool_id.as_deref(), &name).await?;
    let pool_id = pool.id;

    let result = run_in_pool(&plan, &admin, &pool_id, created).await;

    let mut pool_deleted = false;
    if created && !args.keep_pool {
        eprintln!("deleting pool {pool_id}");
        pool_deleted = delete_pool(&admin, &pool_id).await;
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

    let load = &plan.load;
    eprintln!(
        "running {} with {} callers: {} s warmup, {} s measured",
        plan.scenario.as_str(),
        load.concurrency,
        load.warmup.as_secs_f64(),
        load.duration.as_secs_f64()
    );
    let workload = Arc::new(workload);
    let by_kind = run_load(load, Some(load.token.clone()), |_, client| {
        DirCaller::new(workload.clone(), client, SmallRng::from_seed(random_bytes::<32>()))
    })
    .await?;

    let kinds: BTreeMap<String, KindReport> = by_kind
        .iter()
        .map(|(kind, stats)| {
            let report = KindReport {
                ok: stats.ok,
                errors: stats.error_total(),
                latency_us: Percentiles::of(&stats.latency),
            };
            (kind.to_string(), report)
        })
        .collect();
    let total = merge_kinds(by_kind)?;
    let secs = load.duration.as_secs_f64();
    let throughput = total.ok as f64 / secs;
    let latency = Percentiles::of(&total.latency);
    Ok(DirectoryBenchReport {
        scenario: plan.scenario,
        endpoints: load.endpoints.clone(),
        connections: load.connections,
        concurrency: load.concurrency,
        pool_id: pool_id.to_string(),
        users: plan.users,
        import,
        queries,
        warmup_secs: load.warmup.as_secs_f64(),
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::driver::test_cli::{BenchCmd, Cli, Cmd, MainOutput};
    use super::super::parse_endpoints;
    use super::*;

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
        assert_eq!((p.users, p.load.concurrency, p.load.connections), (1_000_000, 16, 2));
        assert_eq!(p.import_concurrency, 4);
        assert_eq!(p.load.duration, Duration::from_secs(10));
        assert_eq!(p.load.warmup, Duration::from_secs(2));
        let p = Plan::from_args(&args(DirectoryScenario::AdminUpdate)).unwrap();
        assert_eq!((p.users, p.load.concurrency, p.load.connections), (1_000, 64, 8));
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
}
