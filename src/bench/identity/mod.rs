//! `tessera bench identity`: load on the public `tessera.v1.Identity`
//! flows (identity pools), judged against the product's floors.
//!
//! A run has two phases, and only the second is timed:
//!
//! 1. **Setup**, with the admin token ([`setup`]): for the scenarios that
//!    need signed-in users, a user pool with cheap argon2 (8 MiB, one pass:
//!    the password is not what is measured), an app client that allows
//!    `USER_PASSWORD_AUTH`, `--users` users imported in batches of 1,000
//!    with one password, and one sign-in per user for its id token; then a
//!    role with a realistic policy (own data under `${identity.id}`, a
//!    shared read-only prefix, a profile row under `${user.sub}`, an
//!    explicit Deny), an identity pool with that user pool as its Cognito
//!    provider and the role as its authenticated role, and one `GetId` per
//!    user, so that every identity exists before the load. `getid-new`
//!    needs only the identity pool, with a developer provider (or guests).
//! 2. **Load**: `--concurrency` callers over a few shared HTTP/2
//!    connections spread round-robin over the endpoints, exactly as in
//!    `bench auth` ([`super::driver`]): `--warmup` seconds unrecorded, then
//!    `--duration` seconds recorded, a call counting when it completes
//!    inside the window.
//!
//! | scenario      | each call                                                      | floor                         |
//! |---------------|----------------------------------------------------------------|-------------------------------|
//! | `getid`       | `GetId` with a known user's id token                           | ≥ 5,000 ok/s on one node      |
//! | `getid-new`   | a first-time identity: one replicated write per call           | ≥ 3,000 ok/s on three nodes   |
//! | `credentials` | `GetCredentialsForIdentity` with the identity's login          | ≥ 5,000 ok/s on one node      |
//! | `authorize`   | `Authorize` with valid credentials, 3 allowed : 1 denied       | none: reported only           |
//!
//! Every answer is checked, not just its status: `GetId` must name the
//! identity setup got for that user, credentials must be for the identity
//! asked about and carry a session token and a secret, a new identity must
//! differ from the caller's previous one, and `Authorize` must decide as
//! the policy says. A wrong answer counts as an error under the bench's own
//! code (`WrongIdentity`, `NoCredentials`, `WrongDecision`). `authorize`
//! has no floor; it passes when every call in the window succeeded.
//!
//! # What `getid-new` calls
//!
//! A first-time `GetId` for a user-pool login needs a fresh id token per
//! call, and minting one costs a sign-in (an argon2 verify) per user:
//! pre-minting the hundred thousand tokens a run at 3,000/s consumes
//! would take longer than the run and measure the hash, not the write.
//! So by default (`--new-identity developer`) each call is
//! `GetOpenIdTokenForDeveloperIdentity` for a developer user identifier
//! never seen before (`bench-<run>-<task>-<seq>`), the developer back end's
//! admin call. On the server it is the same path as a first `GetId` for a
//! new login: the pool read, the login-index miss, a read barrier (another
//! node may have just created the identity), and the `ResolveIdentity`
//! write that decides the login in `apply`; it adds one EdDSA signature for
//! the OpenID token it returns. `--new-identity guest` calls `GetId` with
//! no logins instead (a guest: no barrier, one write), which the node
//! rate-limits per caller address (`[limits] guests_burst`,
//! `guests_per_minute`, 100 and 600/min by default), so a guest run needs
//! those limits raised, or set to 0, in every node's config; otherwise
//! the excess shows up as `ResourceExhausted` errors.
//!
//! Everything the bench created is deleted at the end (unless
//! `--keep-pools`): the identity pool with its identities, then the role,
//! then the user pool.

mod load;
mod report;
mod setup;

use std::sync::Arc;

use anyhow::bail;
use serde::Serialize;

pub use report::{ClusterShape, IdentityBenchReport, KindReport};
pub use setup::{policy_document, BENCH_ARGON2, DEVELOPER_PROVIDER};

use super::driver::{merge_kinds, run_load, LoadFlags, LoadPlan};
use super::DEFAULT_ENDPOINT;
use crate::clock::random_bytes;
use load::{IdentityCaller, Workload};
use setup::Created;

/// Most `--users`: each costs a sign-in and a `GetId` during setup.
pub const MAX_USERS: usize = 100_000;

/// The flags of `tessera bench identity`.
///
/// `--endpoint` and `--token` have the ids, types, env vars and defaults of
/// the CLI's global flags of the same names, so they coexist with them (see
/// [`super::AuthBenchArgs`]); `--output` is the CLI's global flag.
#[derive(Clone, clap::Args)]
pub struct IdentityBenchArgs {
    /// Api endpoints, comma separated; load tasks are spread over them
    /// round-robin. Setup uses the first.
    #[arg(long, env = "TESSERA_ENDPOINT", default_value = DEFAULT_ENDPOINT, value_name = "URL[,URL...]")]
    pub endpoint: String,
    /// Admin token (printed by `cluster init` and `dev`), for setup and
    /// teardown, and for the developer calls of `getid-new`.
    #[arg(long, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Which flow to load.
    #[arg(long, value_enum, default_value_t = IdentityScenario::Getid)]
    pub scenario: IdentityScenario,
    /// Concurrent callers, each with at most one call in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
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
    /// Signed-in users, each with its identity, that `getid`, `credentials`
    /// and `authorize` cycle over (`getid-new` makes its own identities).
    #[arg(long, default_value_t = 1_000)]
    pub users: usize,
    /// What a `getid-new` call creates: a developer identity
    /// (`GetOpenIdTokenForDeveloperIdentity`, admin) or a guest (`GetId`
    /// without logins, rate-limited per address by the node's `[limits]`).
    #[arg(long, value_enum, default_value_t = NewIdentity::Developer)]
    pub new_identity: NewIdentity,
    /// Configure the user pool provider with `server_side_token_check`, so
    /// that every login is also checked against the stored user
    /// (enabled, not signed out). Off by default, as in Cognito.
    #[arg(long)]
    pub server_side_token_check: bool,
    /// Keep what the bench created (user pool, role, identity pool) instead
    /// of deleting it at the end.
    #[arg(long)]
    pub keep_pools: bool,
}

/// By hand, so that the admin token never reaches a log line.
impl std::fmt::Debug for IdentityBenchArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityBenchArgs")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("scenario", &self.scenario)
            .field("concurrency", &self.concurrency)
            .field("connections", &self.connections)
            .field("duration", &self.duration)
            .field("warmup", &self.warmup)
            .field("users", &self.users)
            .field("new_identity", &self.new_identity)
            .field("server_side_token_check", &self.server_side_token_check)
            .field("keep_pools", &self.keep_pools)
            .finish()
    }
}

/// The flow a `bench identity` run loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityScenario {
    /// `GetId` for known logins: a token check and local reads.
    Getid,
    /// A first-time identity per call: a replicated write.
    GetidNew,
    /// `GetCredentialsForIdentity`: a token check, the role, a signature.
    Credentials,
    /// `Authorize`: a credentials check and a policy decision.
    Authorize,
}

impl IdentityScenario {
    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityScenario::Getid => "getid",
            IdentityScenario::GetidNew => "getid-new",
            IdentityScenario::Credentials => "credentials",
            IdentityScenario::Authorize => "authorize",
        }
    }

    /// What the scenario must reach.
    pub fn target(self) -> IdentityTarget {
        match self {
            IdentityScenario::Getid | IdentityScenario::Credentials => IdentityTarget::Rate {
                per_sec: 5_000.0,
                nodes: 1,
            },
            IdentityScenario::GetidNew => IdentityTarget::Rate {
                per_sec: 3_000.0,
                nodes: 3,
            },
            IdentityScenario::Authorize => IdentityTarget::ReportOnly,
        }
    }

    /// Whether the scenario loads the pre-made, signed-in users.
    pub fn needs_users(self) -> bool {
        !matches!(self, IdentityScenario::GetidNew)
    }
}

/// What a `getid-new` call creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NewIdentity {
    /// `GetOpenIdTokenForDeveloperIdentity` for a new developer user
    /// identifier (admin; not rate-limited).
    Developer,
    /// `GetId` without logins (public; rate-limited per address).
    Guest,
}

/// A scenario's pass mark.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum IdentityTarget {
    /// ok/s must reach `per_sec`; the floor is set for a cluster of
    /// `nodes` nodes (the verdict does not depend on the cluster's size,
    /// which the report shows beside it).
    Rate {
        /// The floor, in successful calls per second.
        per_sec: f64,
        /// The cluster size the floor is set for.
        nodes: usize,
    },
    /// No floor: the rate is reported, and the run passes when every call
    /// in the window succeeded.
    ReportOnly,
}

/// A target checked against a run.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityTargetCheck {
    /// The target the run was judged against.
    pub target: IdentityTarget,
    /// The measured throughput (ok/s).
    pub value: f64,
    /// Whether the run met the target.
    pub pass: bool,
}

impl IdentityTarget {
    /// Checks a run of `ok` successful and `errors` failed calls at
    /// `throughput` ok/s. Rates are judged on the successes alone, as in
    /// `bench auth`; a report-only run must have succeeded throughout.
    pub fn check(self, throughput: f64, ok: u64, errors: u64) -> IdentityTargetCheck {
        let pass = match self {
            IdentityTarget::Rate { per_sec, .. } => throughput.is_finite() && throughput >= per_sec,
            IdentityTarget::ReportOnly => ok > 0 && errors == 0,
        };
        IdentityTargetCheck {
            target: self,
            value: throughput,
            pass,
        }
    }
}

/// The validated arguments of a run. (No `Debug`: it holds the admin
/// token.)
#[derive(Clone)]
struct Plan {
    scenario: IdentityScenario,
    users: usize,
    new_identity: NewIdentity,
    server_side_token_check: bool,
    load: LoadPlan,
}

impl Plan {
    fn from_args(args: &IdentityBenchArgs) -> anyhow::Result<Plan> {
        let load = LoadPlan::from_flags(LoadFlags {
            endpoint: &args.endpoint,
            token: args.token.as_deref(),
            token_needed_for: "setup creates the pools, role and users, and deletes them afterwards",
            concurrency: args.concurrency,
            connections: args.connections,
            warmup: args.warmup,
            duration: args.duration,
        })?;
        let needs_users = args.scenario.needs_users();
        if needs_users && args.users == 0 {
            bail!("--users must be at least 1 for the {} scenario", args.scenario.as_str());
        }
        if needs_users && args.users > MAX_USERS {
            bail!(
                "--users: at most {MAX_USERS} (each is signed in and given an identity during setup), not {}",
                args.users
            );
        }
        Ok(Plan {
            scenario: args.scenario,
            users: if needs_users { args.users } else { 0 },
            new_identity: args.new_identity,
            server_side_token_check: args.server_side_token_check,
            load,
        })
    }
}

/// Runs the bench: setup, the timed load, then the teardown of whatever
/// setup created (also when setup or the load failed).
pub async fn run(args: IdentityBenchArgs) -> anyhow::Result<IdentityBenchReport> {
    let plan = Plan::from_args(&args)?;
    let admin = plan.load.admin_client().await?;
    let run_id = hex::encode(random_bytes::<4>());
    let cluster = ClusterShape::of(&admin).await;
    let mut created = Created::default();

    let result = run_with(&plan, &admin, &run_id, &mut created, cluster).await;

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

/// Setup and load; records what it creates in `created` as it goes, so
/// that the caller deletes it whatever happens.
async fn run_with(
    plan: &Plan,
    admin: &crate::client::Client,
    run_id: &str,
    created: &mut Created,
    cluster: Option<ClusterShape>,
) -> anyhow::Result<IdentityBenchReport> {
    let fixture = setup::prepare(
        admin,
        &setup::SetupPlan {
            scenario: plan.scenario,
            users: plan.users,
            new_identity: plan.new_identity,
            server_side_token_check: plan.server_side_token_check,
        },
        run_id,
        created,
    )
    .await?;
    let workload = Arc::new(Workload::new(plan.scenario, plan.new_identity, &fixture, run_id));

    tracing::info!(scenario = plan.scenario.as_str(), "running the load");
    let load = &plan.load;
    // Only the developer calls are admin calls; the public ones carry no
    // admin token, as an application's would not.
    let token = workload.needs_admin_token().then(|| load.token.clone());
    let tasks = load.concurrency;
    let by_kind = run_load(load, token, |task, client| {
        IdentityCaller::new(client, workload.clone(), task, tasks)
    })
    .await?;
    let kinds = report::kind_reports(&by_kind);
    let stats = merge_kinds(by_kind)?;

    let secs = load.duration.as_secs_f64();
    let throughput = stats.ok as f64 / secs;
    Ok(IdentityBenchReport {
        scenario: plan.scenario,
        new_identity: (plan.scenario == IdentityScenario::GetidNew).then_some(plan.new_identity),
        endpoints: load.endpoints.clone(),
        connections: load.connections,
        concurrency: load.concurrency,
        cluster,
        user_pool_id: fixture.user_pool_id.clone(),
        identity_pool_id: fixture.identity_pool_id.clone(),
        role_arn: fixture.role_arn.clone(),
        users: fixture.users.len(),
        server_side_token_check: plan.server_side_token_check,
        setup_secs: fixture.setup_secs,
        warmup_secs: load.warmup.as_secs_f64(),
        duration_secs: secs,
        ok: stats.ok,
        throughput,
        target: plan.scenario.target().check(throughput, stats.ok, stats.error_total()),
        latency_us: stats.latency_summary(),
        errors: stats.errors,
        error_samples: stats.error_samples,
        by_kind: kinds,
        cleaned_up: false,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::super::driver::test_cli::{BenchCmd, Cli, Cmd, MainOutput};
    use super::super::parse_endpoints;
    use super::*;

    fn parse(argv: &[&str]) -> (Cli, IdentityBenchArgs) {
        let cli = Cli::try_parse_from(argv).unwrap();
        let Cmd::Bench(BenchCmd::Identity(a)) = &cli.cmd else {
            panic!("not bench identity: {argv:?}");
        };
        let a = a.clone();
        (cli, a)
    }

    #[test]
    fn debug_hides_the_token() {
        let (_, a) = parse(&["tessera", "bench", "identity", "--token", "s3cret-admin"]);
        let d = format!("{a:?}");
        assert!(!d.contains("s3cret-admin"), "{d}");
        assert!(d.contains("<redacted>"), "{d}");
    }

    #[test]
    fn cli_shape_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let (_, a) = parse(&["tessera", "bench", "identity"]);
        if std::env::var_os("TESSERA_ENDPOINT").is_none() {
            assert_eq!(parse_endpoints(&a.endpoint), vec![DEFAULT_ENDPOINT]);
        }
        assert_eq!(a.scenario, IdentityScenario::Getid);
        assert_eq!(a.concurrency, 64);
        assert_eq!(a.connections, None);
        assert_eq!(a.duration, 10.0);
        assert_eq!(a.warmup, 2.0);
        assert_eq!(a.users, 1_000);
        assert_eq!(a.new_identity, NewIdentity::Developer);
        assert!(!a.server_side_token_check);
        assert!(!a.keep_pools);
    }

    #[test]
    fn scenarios_parse_by_their_names() {
        for (name, s) in [
            ("getid", IdentityScenario::Getid),
            ("getid-new", IdentityScenario::GetidNew),
            ("credentials", IdentityScenario::Credentials),
            ("authorize", IdentityScenario::Authorize),
        ] {
            let (_, a) = parse(&["tessera", "bench", "identity", "--scenario", name]);
            assert_eq!(a.scenario, s);
            assert_eq!(s.as_str(), name);
            assert_eq!(serde_json::to_value(s).unwrap(), name);
        }
        assert!(Cli::try_parse_from(["tessera", "bench", "identity", "--scenario", "getid_new"]).is_err());
        let (_, a) = parse(&["tessera", "bench", "identity", "--new-identity", "guest"]);
        assert_eq!(a.new_identity, NewIdentity::Guest);
        assert!(Cli::try_parse_from(["tessera", "bench", "identity", "--new-identity", "google"]).is_err());
    }

    #[test]
    fn flags_after_the_subcommand_coexist_with_the_global_ones() {
        let (cli, a) = parse(&[
            "tessera",
            "bench",
            "identity",
            "--endpoint",
            "http://a:7700,http://b:7700,http://c:7700",
            "--token",
            "t0k",
            "--scenario",
            "getid-new",
            "--concurrency",
            "128",
            "--connections",
            "6",
            "--duration",
            "0.5",
            "--warmup",
            "0",
            "--users",
            "8",
            "--server-side-token-check",
            "--keep-pools",
            "--output",
            "json",
        ]);
        assert_eq!(
            parse_endpoints(&a.endpoint),
            vec!["http://a:7700", "http://b:7700", "http://c:7700"]
        );
        assert_eq!(a.token.as_deref(), Some("t0k"));
        assert_eq!(a.scenario, IdentityScenario::GetidNew);
        assert_eq!(a.concurrency, 128);
        assert_eq!(a.connections, Some(6));
        assert_eq!(a.duration, 0.5);
        assert_eq!(a.warmup, 0.0);
        assert_eq!(a.users, 8);
        assert!(a.server_side_token_check);
        assert!(a.keep_pools);
        // The global flags see the same values.
        assert_eq!(cli.output, MainOutput::Json);
        assert_eq!(cli.token.as_deref(), Some("t0k"));
        assert_eq!(cli.endpoint, "http://a:7700,http://b:7700,http://c:7700");
    }

    #[test]
    fn global_flags_before_the_subcommand_reach_it() {
        let (_, a) = parse(&["tessera", "--endpoint", "x:1,y:2", "--token", "t", "bench", "identity"]);
        assert_eq!(parse_endpoints(&a.endpoint), vec!["x:1", "y:2"]);
        assert_eq!(a.token.as_deref(), Some("t"));
    }

    fn args(scenario: IdentityScenario) -> IdentityBenchArgs {
        let (_, mut a) = parse(&["tessera", "bench", "identity", "--token", "t"]);
        a.scenario = scenario;
        a
    }

    #[test]
    fn plans_validate_their_arguments() {
        let p = Plan::from_args(&args(IdentityScenario::Getid)).unwrap();
        assert_eq!(p.load.concurrency, 64);
        assert_eq!(p.load.connections, 8);
        assert_eq!(p.users, 1_000);
        assert_eq!(p.load.duration, Duration::from_secs(10));
        assert_eq!(p.load.warmup, Duration::from_secs(2));
        // getid-new makes its own identities: --users is ignored.
        assert_eq!(Plan::from_args(&args(IdentityScenario::GetidNew)).unwrap().users, 0);

        let mut a = args(IdentityScenario::Getid);
        a.token = None;
        let Err(e) = Plan::from_args(&a) else {
            panic!("a plan without a token");
        };
        assert!(e.to_string().contains("--token"), "{e}");
        for scenario in [
            IdentityScenario::Getid,
            IdentityScenario::Credentials,
            IdentityScenario::Authorize,
        ] {
            let mut a = args(scenario);
            a.users = 0;
            assert!(Plan::from_args(&a).is_err(), "{scenario:?} without users");
            let mut a = args(scenario);
            a.users = MAX_USERS + 1;
            assert!(Plan::from_args(&a).is_err(), "{scenario:?} with too many users");
            let mut a = args(scenario);
            a.users = MAX_USERS;
            assert!(Plan::from_args(&a).is_ok());
        }
        let mut a = args(IdentityScenario::GetidNew);
        a.users = 0;
        assert!(Plan::from_args(&a).is_ok());
        let mut a = args(IdentityScenario::GetidNew);
        a.users = MAX_USERS + 1;
        assert!(Plan::from_args(&a).is_ok(), "--users does not apply to getid-new");

        let bad: [fn(&mut IdentityBenchArgs); 6] = [
            |a| a.duration = 0.0,
            |a| a.duration = f64::INFINITY,
            |a| a.warmup = -1.0,
            |a| a.concurrency = 0,
            |a| a.connections = Some(0),
            |a| a.endpoint = " , ".into(),
        ];
        for (i, spoil) in bad.iter().enumerate() {
            let mut a = args(IdentityScenario::Credentials);
            spoil(&mut a);
            assert!(Plan::from_args(&a).is_err(), "bad flags #{i} were accepted");
        }
    }

    #[test]
    fn connections_default_to_a_multiple_of_the_endpoints() {
        let mut a = args(IdentityScenario::GetidNew);
        a.endpoint = "a:1,b:2,c:3".into();
        let p = Plan::from_args(&a).unwrap();
        assert_eq!(p.load.endpoints.len(), 3);
        assert_eq!(p.load.connections, 9);
        a.connections = Some(4);
        assert_eq!(Plan::from_args(&a).unwrap().load.connections, 4);
    }

    #[test]
    fn targets_pass_and_fail_at_the_floor() {
        assert!(IdentityScenario::Getid.target().check(5_000.0, 50_000, 0).pass);
        assert!(!IdentityScenario::Getid.target().check(4_999.0, 49_990, 0).pass);
        assert!(IdentityScenario::Credentials.target().check(5_000.0, 1, 7).pass);
        assert!(!IdentityScenario::Credentials.target().check(f64::NAN, 1, 0).pass);
        assert!(IdentityScenario::GetidNew.target().check(3_000.0, 1, 0).pass);
        assert!(!IdentityScenario::GetidNew.target().check(2_999.9, 1, 0).pass);
        assert_eq!(
            IdentityScenario::GetidNew.target(),
            IdentityTarget::Rate {
                per_sec: 3_000.0,
                nodes: 3
            }
        );
        // No floor: any rate passes, but only without errors.
        assert!(IdentityScenario::Authorize.target().check(1.0, 10, 0).pass);
        assert!(!IdentityScenario::Authorize.target().check(1.0, 10, 1).pass);
        assert!(!IdentityScenario::Authorize.target().check(0.0, 0, 0).pass);
    }
}
