//! `tessera bench auth`: load on the public `tessera.v1.Auth` flows, judged
//! against what the hardware allows.
//!
//! A run has three phases, and only the last is timed:
//!
//! 1. **Setup**, with the admin token: a fresh pool (or `--pool-id`), an app
//!    client without a secret that allows the password and refresh flows,
//!    and `--users` users made by `SignUp` then `AdminConfirmSignUp`, the
//!    way real users arrive. The refresh and verify scenarios also sign each
//!    user in once for its tokens.
//! 2. **The argon2 limit** ([`super::argon2_limit`]): the hash rate of all
//!    cores with the pool's own argon2 parameters. It is measured in
//!    slices interleaved with the load (3), never beside it, so neither
//!    disturbs the other: a slice before each of `--rounds` load windows
//!    and one after the last. The limit is the mean of the slices. A small
//!    shared machine's hash rate drifts by a fifth within seconds (argon2
//!    is bound by memory, which neighbours share), so one measurement
//!    before the load and one after it misjudge the load's share by as
//!    much; slices a few seconds apart follow the drift.
//! 3. **Load**, in `--rounds` windows: `--concurrency` tasks, each calling
//!    in a loop with no think time, over a few shared HTTP/2 connections
//!    spread round-robin over the endpoints. In each window the first
//!    `--warmup` seconds are not recorded (connections, caches, the
//!    server's queue and the allocator settle), then `--duration` ÷
//!    `--rounds` seconds are. A call counts when it *completes* inside a
//!    measured window, which is the unbiased estimate of a steady-state
//!    rate; a call still in flight when the window closes is dropped.
//!
//! The scenarios and their targets:
//!
//! | scenario  | each call                                   | target                          |
//! |-----------|---------------------------------------------|---------------------------------|
//! | `signin`  | `InitiateAuth` `USER_PASSWORD_AUTH`         | ok/s ÷ argon2 limit ≥ 0.95      |
//! | `refresh` | `InitiateAuth` `REFRESH_TOKEN_AUTH`         | ≥ 4,000 ok/s                    |
//! | `verify`  | `GetUser` with an access token              | ≥ 10,000 ok/s                   |
//! | `signup`  | `SignUp` of a new username                  | ok/s ÷ argon2 limit ≥ 0.80      |
//! | `mfa`     | `USER_PASSWORD_AUTH`, then `SOFTWARE_TOKEN_MFA` | ok/s ÷ argon2 limit ≥ 0.85  |
//! | `email-otp` | `USER_AUTH` `EMAIL_OTP`, the code read from the outbox, answered | ≥ 50 ok/s |
//! | `passkey` | `USER_AUTH` `WEB_AUTHN`, the assertion signed, answered | ≥ 5,000 ok/s |
//!
//! `mfa` signs users in with a password and a TOTP code (computed by the
//! bench from the secret it associated at setup) and reports the two
//! steps' latencies side by side: the MFA step's cost is what it adds to
//! the password sign-in of the same run. After its windows it also
//! answers challenges back to back, a batch of password steps first, and
//! reports that answer latency as `step 2 alone`: the step's own cost,
//! without the cache the hash right before it swept
//! ([`super::auth_mfa::answers_alone`]). A TOTP code works once per user
//! and 30 s step, and the bench uses the current and the next step, so
//! each user signs in at most twice per 30 s: give `--users` of at least
//! 15 × the expected sign-ins per second. `email-otp` asks for a code,
//! reads it from the outbox (one tailing reader, as a mail gateway would
//! see it) and answers it; each user receives at most 5 codes an hour (the
//! per-user send limit), so give `--users` of at least the sign-ins of the
//! run ÷ 5.
//!
//! `passkey` ([`super::auth_passkey`]) registers a software passkey for
//! each user at setup, then signs in with no password: `USER_AUTH` with
//! `WEB_AUTHN`, and the assertion the bench signs, verified by the server
//! (its signature counter advanced in `apply`). It reports the two steps
//! like `mfa`, and, after its windows, runs the `signin` load (the same
//! users and callers, `USER_PASSWORD_AUTH`) for one more window, so the
//! report sets the passkey rate next to the password rate of the same run
//! and machine. Each caller signs in only its own users, one at a time
//! (a user's counter must rise in the order the server applies it), so
//! `--users` must be at least `--concurrency`.
//!
//! Sign-in verifies one argon2 hash and sign-up computes one (and is a
//! replicated, fsynced write besides), so their ceiling is the hash rate and
//! the target is a fraction of it: the share of the machine the server
//! loses to everything else. Refresh, verify and passkey hash nothing (an
//! EdDSA signature and a local read; passkey adds an ECDSA verification
//! and a replicated write), so their targets are absolute rates.
//!
//! A pool the bench created is deleted at the end (unless `--keep-pool`);
//! users it added to a pool given with `--pool-id` stay there, under
//! `bench-<run id>-` usernames.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use tonic::transport::Channel;

use super::argon2_limit::{self, Argon2Limit};
use super::cognito_json::JsonConn;
use super::driver::{
    delete_pool, merge_kinds, open_pool, render, run_load, status_error, write_endpoints, write_errors, write_window,
    Caller, Failure, LoadFlags, LoadPlan,
};
use super::stats::{LatencySummary, TaskStats};
use super::{format_micros, format_rate, group_thousands, OutputFormat, DEFAULT_ENDPOINT};
use crate::client::Client;
use crate::clock::random_bytes;
use crate::model::pool_settings::Argon2Params;
use crate::proto::auth_client::AuthClient;
use crate::proto::{
    AdminConfirmSignUpRequest, AuthenticationResultType, CreateUserPoolClientRequest, GetUserRequest,
    InitiateAuthRequest, InitiateAuthResponse, SignUpRequest, UserPoolType,
};

/// The password of every bench user. It satisfies Cognito's default policy
/// (length 8, upper, lower, digit, symbol), which a fresh pool enforces.
pub const PASSWORD: &str = "Bench-Passw0rd!";
/// How long each slice of the argon2 limit is measured: about 150 hashes
/// on two cores, enough to average out scheduler noise, short enough to
/// follow the machine's drift.
pub const ARGON2_SLICE: Duration = Duration::from_millis(1500);
/// Setup calls in flight at once: enough to overlap round trips, few enough
/// not to trip the server's hashing queue while it creates the users.
const SETUP_CONCURRENCY: usize = 8;
/// The app client's auth flows: exactly what the scenarios use.
const AUTH_FLOWS: [&str; 3] = [
    "ALLOW_USER_PASSWORD_AUTH",
    "ALLOW_REFRESH_TOKEN_AUTH",
    "ALLOW_USER_AUTH",
];

/// The flags of `tessera bench auth`.
///
/// `--endpoint` and `--token` have the ids, types, env vars and defaults of
/// the CLI's global flags of the same names, so they coexist with them:
/// these definitions shadow the global ones (for this command's help text),
/// and clap copies the values between the two, which it can only do when
/// the types match. `--output` is deliberately *not* redefined here: the
/// CLI's global flag has its own enum type, and a second definition of
/// another type makes clap panic when it copies the value across. The CLI
/// passes its global `--output` to [`AuthBenchReport::print`] instead.
#[derive(Clone, clap::Args)]
pub struct AuthBenchArgs {
    /// Api endpoints, comma separated; load tasks are spread over them
    /// round-robin. Setup uses the first.
    #[arg(long, env = "TESSERA_ENDPOINT", default_value = DEFAULT_ENDPOINT, value_name = "URL[,URL...]")]
    pub endpoint: String,
    /// Admin token (printed by `cluster init` and `dev`), for setup.
    #[arg(long, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Which flow to load.
    #[arg(long, value_enum, default_value_t = Scenario::Signin)]
    pub scenario: Scenario,
    /// Concurrent callers, each with at most one call in flight.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// HTTP/2 connections the callers share. Default: one per 8 callers, at
    /// least one per endpoint, rounded up to a multiple of the endpoints.
    #[arg(long)]
    pub connections: Option<usize>,
    /// Seconds measured, in all rounds together.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before each round's measured window, not recorded.
    #[arg(long, default_value_t = 1.5)]
    pub warmup: f64,
    /// Load windows, each after a slice of the argon2 limit (and one slice
    /// after the last), so that the limit follows the machine's drift.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Users created before the load (`signin`, `refresh` and `verify`
    /// cycle over them; `signup` creates its own).
    #[arg(long, default_value_t = 64)]
    pub users: usize,
    /// Use this pool instead of creating `bench-<random>` with default
    /// settings. Its argon2 parameters are the ones measured.
    #[arg(long)]
    pub pool_id: Option<String>,
    /// Keep the pool the bench created instead of deleting it at the end.
    #[arg(long)]
    pub keep_pool: bool,
    /// The protocol of the timed calls: gRPC, or Cognito's JSON protocol
    /// (`POST /`, one HTTP/1.1 connection per caller, as an AWS SDK's
    /// pool). Setup always uses gRPC. `cognito-json` serves `signin`,
    /// `refresh`, `verify` and `signup`.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    pub protocol: Protocol,
}

/// The wire protocol of a bench's timed calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// `tessera.v1.Auth` over HTTP/2.
    Grpc,
    /// Cognito's JSON 1.1 protocol (`X-Amz-Target`) over HTTP/1.1.
    CognitoJson,
}

/// By hand, so that the admin token never reaches a log line.
impl std::fmt::Debug for AuthBenchArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthBenchArgs")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("scenario", &self.scenario)
            .field("concurrency", &self.concurrency)
            .field("connections", &self.connections)
            .field("duration", &self.duration)
            .field("warmup", &self.warmup)
            .field("users", &self.users)
            .field("pool_id", &self.pool_id)
            .field("keep_pool", &self.keep_pool)
            .field("protocol", &self.protocol)
            .finish()
    }
}

/// The flow a bench run loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// `InitiateAuth` `USER_PASSWORD_AUTH`: one argon2 verify, no write.
    Signin,
    /// `InitiateAuth` `REFRESH_TOKEN_AUTH`: a token check and new tokens.
    Refresh,
    /// `GetUser` with an access token: a token check and a local read.
    Verify,
    /// `SignUp` of a fresh username: one argon2 hash and a replicated write.
    Signup,
    /// `USER_PASSWORD_AUTH` then `SOFTWARE_TOKEN_MFA` (TOTP): one argon2
    /// verify and a replicated write (the spent time step).
    Mfa,
    /// `USER_AUTH` with `EMAIL_OTP`: a code sent (a replicated write with
    /// its outbox message), read from the outbox and answered (a second
    /// write).
    #[serde(rename = "email-otp")]
    EmailOtp,
    /// `USER_AUTH` with `WEB_AUTHN` and a signed assertion: an ECDSA
    /// verification and a replicated write (the credential's counter).
    Passkey,
}

impl Scenario {
    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Signin => "signin",
            Scenario::Refresh => "refresh",
            Scenario::Verify => "verify",
            Scenario::Signup => "signup",
            Scenario::Mfa => "mfa",
            Scenario::EmailOtp => "email-otp",
            Scenario::Passkey => "passkey",
        }
    }

    /// What the scenario must reach. Flows bound by argon2 are judged as a
    /// share of the measured hash rate, the others by an absolute rate.
    pub fn target(self) -> Target {
        match self {
            Scenario::Signin => Target::ShareOfArgon2Limit(0.95),
            Scenario::Signup => Target::ShareOfArgon2Limit(0.80),
            Scenario::Refresh => Target::Rate(4_000.0),
            Scenario::Verify => Target::Rate(10_000.0),
            Scenario::Mfa => Target::ShareOfArgon2Limit(0.85),
            Scenario::EmailOtp => Target::Rate(50.0),
            Scenario::Passkey => Target::Rate(5_000.0),
        }
    }

    /// Whether the scenario signs in with the pre-created users.
    fn needs_users(self) -> bool {
        !matches!(self, Scenario::Signup)
    }
}

/// A scenario's pass mark.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "threshold")]
pub enum Target {
    /// ok/s divided by the argon2 limit must reach this.
    ShareOfArgon2Limit(f64),
    /// ok/s must reach this.
    Rate(f64),
}

/// A target checked against a run.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    /// The target the run was judged against.
    pub target: Target,
    /// The measured value the target applies to.
    pub value: f64,
    /// Whether the measured value reached it.
    pub pass: bool,
}

impl Target {
    /// Checks `throughput` (ok/s), given the argon2 limit (hashes/s).
    pub fn check(self, throughput: f64, argon2_per_sec: f64) -> TargetCheck {
        let (value, threshold) = match self {
            Target::ShareOfArgon2Limit(t) => (ratio(throughput, argon2_per_sec), t),
            Target::Rate(t) => (throughput, t),
        };
        TargetCheck {
            target: self,
            value,
            pass: value.is_finite() && value >= threshold,
        }
    }
}

/// `a / b`, or 0 when `b` is not a positive number.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 && b.is_finite() {
        a / b
    } else {
        0.0
    }
}

/// Everything a run measured, printable as a table or JSON.
#[derive(Debug, Clone, Serialize)]
pub struct AuthBenchReport {
    /// The flow that was loaded.
    pub scenario: Scenario,
    /// The protocol of the timed calls.
    pub protocol: Protocol,
    /// The api endpoints the load was spread over.
    pub endpoints: Vec<String>,
    /// HTTP/2 connections the callers shared.
    pub connections: usize,
    /// Concurrent callers, each with at most one call in flight.
    pub concurrency: usize,
    /// The pool loaded (created by the bench unless `--pool-id` was given).
    pub pool_id: String,
    /// The app client the calls went through.
    pub client_id: String,
    /// Users created before the load (0 for `signup`).
    pub users: usize,
    /// Seconds run before each measured window and not recorded.
    pub warmup_secs: f64,
    /// The measured windows, together.
    pub duration_secs: f64,
    /// Load windows, each after a slice of the argon2 limit.
    pub rounds: u32,
    /// The hash rate the hardware allows with the pool's argon2 parameters:
    /// the mean of the slices interleaved with the load.
    pub argon2_limit: Argon2Limit,
    /// Each slice's hash rate, in order (one before each round, one after
    /// the last).
    pub argon2_slices: Vec<f64>,
    /// Calls that succeeded in the window.
    pub ok: u64,
    /// ok per second.
    pub throughput: f64,
    /// throughput / argon2 limit, for every scenario (only `signin` and
    /// `signup` are judged on it).
    pub argon2_ratio: f64,
    /// Calls that failed in the window, by gRPC code.
    pub errors: BTreeMap<String, u64>,
    /// One message per error code.
    pub error_samples: BTreeMap<String, String>,
    /// Latency of the successful calls.
    pub latency_us: LatencySummary,
    /// The scenario's target and whether the run met it.
    pub target: TargetCheck,
    /// Whether the pool the bench created was deleted afterwards.
    pub pool_deleted: bool,
    /// `mfa`, `email-otp` and `passkey`: the latencies of each sign-in's
    /// two calls (the first step, then the answer), from the same calls.
    pub steps: Option<StepReport>,
    /// `passkey`: the password sign-in rate of the same run, measured
    /// after the passkey windows, and the passkey rate's ratio to it.
    pub password_signin: Option<PasswordComparison>,
}

/// The `signin` load run after another scenario's windows, with the same
/// users, callers and connections, for a rate to set beside it.
#[derive(Debug, Clone, Serialize)]
pub struct PasswordComparison {
    /// The measured window (one round's), after the usual warm-up.
    pub duration_secs: f64,
    /// `USER_PASSWORD_AUTH` sign-ins that succeeded in the window.
    pub ok: u64,
    /// ok per second.
    pub throughput: f64,
    /// The scenario's throughput ÷ this throughput (0 if none succeeded).
    pub scenario_ratio: f64,
    /// Calls that failed in the window, by gRPC code.
    pub errors: BTreeMap<String, u64>,
    /// Latency of the successful calls.
    pub latency_us: LatencySummary,
}

/// The two calls of a two-step sign-in, measured separately.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// What the first call is (`USER_PASSWORD_AUTH`, `USER_AUTH EMAIL_OTP`).
    pub first: &'static str,
    /// What the second call is (`SOFTWARE_TOKEN_MFA`, `EMAIL_OTP`).
    pub second: &'static str,
    /// Latency of the first call, over the completed sign-ins.
    pub first_us: LatencySummary,
    /// Latency of the second call.
    pub second_us: LatencySummary,
    /// `email-otp`: from the first call's answer until the code was read
    /// from the outbox (not part of either call).
    pub code_wait_us: Option<LatencySummary>,
    /// Sign-ins that waited for a user with a free TOTP step or send.
    pub waits: u64,
    /// `mfa`: latency of the answers run back to back after the windows,
    /// with no password hash right before them
    /// ([`super::auth_mfa::answers_alone`]).
    pub second_alone_us: Option<LatencySummary>,
    /// Answers recorded in that window.
    pub alone_answers: u64,
    /// Failed calls of that window, by error code.
    pub alone_errors: BTreeMap<String, u64>,
}

impl AuthBenchReport {
    /// Whether the scenario met its target.
    pub fn passed(&self) -> bool {
        self.target.pass
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
        let a = &self.argon2_limit;
        let l = &self.latency_us;
        // Writing to a String cannot fail.
        let protocol = match self.protocol {
            Protocol::Grpc => "gRPC",
            Protocol::CognitoJson => "Cognito JSON",
        };
        let _ = writeln!(s, "tessera bench auth: {} over {protocol}", self.scenario.as_str());
        write_endpoints(&mut s, &self.endpoints, self.concurrency, self.connections);
        let _ = writeln!(
            s,
            "  pool          {} (client {}, {} users{})",
            self.pool_id,
            self.client_id,
            self.users,
            if self.pool_deleted { ", deleted" } else { "" }
        );
        let low = self.argon2_slices.iter().copied().fold(f64::INFINITY, f64::min);
        let high = self.argon2_slices.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            s,
            "  argon2 limit  {} hashes/s (mean of {} slices between {} load windows, {} to {}; m={} KiB, t={}, p={}; {} threads, {} hashes in {:.2} s)",
            format_rate(a.hashes_per_sec),
            self.argon2_slices.len(),
            self.rounds,
            format_rate(low),
            format_rate(high),
            a.memory_kib,
            a.iterations,
            a.parallelism,
            a.threads,
            a.hashes,
            a.seconds
        );
        write_window(&mut s, self.warmup_secs, self.duration_secs);
        let _ = writeln!(
            s,
            "  ok            {} ({}/s, {:.3} of the argon2 limit)",
            group_thousands(self.ok),
            format_rate(self.throughput),
            self.argon2_ratio
        );
        write_errors(&mut s, &self.errors, &self.error_samples);
        let _ = writeln!(
            s,
            "  latency       p50 {}  p99 {}  p99.9 {}  max {}",
            format_micros(l.p50_us),
            format_micros(l.p99_us),
            format_micros(l.p999_us),
            format_micros(l.max_us)
        );
        if let Some(st) = &self.steps {
            let row = |s: &mut String, what: &str, l: &LatencySummary| {
                let _ = writeln!(
                    s,
                    "  {what:<13} p50 {}  p99 {}  max {}",
                    format_micros(l.p50_us),
                    format_micros(l.p99_us),
                    format_micros(l.max_us)
                );
            };
            let _ = writeln!(s, "  steps         1: {}   2: {}", st.first, st.second);
            row(&mut s, "step 1", &st.first_us);
            row(&mut s, "step 2", &st.second_us);
            if let Some(w) = &st.code_wait_us {
                row(&mut s, "code wait", w);
            }
            if let Some(a) = &st.second_alone_us {
                if st.alone_answers > 0 {
                    row(&mut s, "step 2 alone", a);
                } else {
                    let _ = writeln!(s, "  step 2 alone  no answer recorded");
                }
                let errors: u64 = st.alone_errors.values().sum();
                let _ = writeln!(
                    s,
                    "  (alone)       {} answers back to back, {} per caller after their password steps, so no hash runs right before them{}",
                    group_thousands(st.alone_answers),
                    super::auth_mfa::ALONE_BATCH,
                    if errors > 0 {
                        format!("; {} errors {:?}", group_thousands(errors), st.alone_errors)
                    } else {
                        String::new()
                    }
                );
            }
            let _ = writeln!(
                s,
                "  added         step 2 adds {} (p50) to step 1's {} (p50){}",
                format_micros(st.second_us.p50_us),
                format_micros(st.first_us.p50_us),
                if st.waits > 0 {
                    format!("; {} sign-ins waited for a free user", st.waits)
                } else {
                    String::new()
                }
            );
        }
        if let Some(p) = &self.password_signin {
            let pw_errors: u64 = p.errors.values().sum();
            let _ = writeln!(
                s,
                "  password      {} ok in {} s ({}/s, USER_PASSWORD_AUTH, same users and callers, after the load){}",
                group_thousands(p.ok),
                p.duration_secs,
                format_rate(p.throughput),
                if pw_errors > 0 {
                    format!(", {} errors", group_thousands(pw_errors))
                } else {
                    String::new()
                }
            );
            let _ = writeln!(
                s,
                "  password lat  p50 {}  p99 {}  max {}",
                format_micros(p.latency_us.p50_us),
                format_micros(p.latency_us.p99_us),
                format_micros(p.latency_us.max_us)
            );
            let _ = writeln!(
                s,
                "  vs password   {} sign-ins/s with {} ÷ {}/s with a password = {:.2}",
                format_rate(self.throughput),
                self.scenario.as_str(),
                format_rate(p.throughput),
                p.scenario_ratio
            );
        }
        let verdict = if self.target.pass { "PASS" } else { "FAIL" };
        let _ = match self.target.target {
            Target::ShareOfArgon2Limit(t) => writeln!(
                s,
                "  target        throughput / argon2 limit = {:.3} (>= {t:.2})  {verdict}",
                self.target.value
            ),
            Target::Rate(t) => writeln!(
                s,
                "  target        throughput = {}/s (>= {}/s)  {verdict}",
                format_rate(self.target.value),
                format_rate(t)
            ),
        };
        s
    }
}

/// Runs the bench: setup, the argon2 limit, then the timed load.
pub async fn run(args: AuthBenchArgs) -> anyhow::Result<AuthBenchReport> {
    let plan = Plan::from_args(&args)?;
    let admin = plan.load.admin_client().await?;
    let run_id = hex::encode(random_bytes::<4>());
    let (pool, created) = open_pool(&admin, args.pool_id.as_deref(), &format!("bench-{run_id}")).await?;

    let result = run_in_pool(&plan, &admin, &pool, &run_id).await;

    let pool_deleted = created && !args.keep_pool && delete_pool(&admin, &pool.id).await;
    result.map(|mut r| {
        r.pool_deleted = pool_deleted;
        r
    })
}

/// The validated arguments of a run. (No `Debug`: it holds the admin
/// token.)
#[derive(Clone)]
struct Plan {
    scenario: Scenario,
    protocol: Protocol,
    users: usize,
    rounds: u32,
    load: LoadPlan,
}

impl Plan {
    fn from_args(args: &AuthBenchArgs) -> anyhow::Result<Plan> {
        let load = LoadPlan::from_flags(LoadFlags {
            endpoint: &args.endpoint,
            token: args.token.as_deref(),
            token_needed_for: "setup creates the pool, app client and users",
            concurrency: args.concurrency,
            connections: args.connections,
            warmup: args.warmup,
            duration: args.duration,
        })?;
        if args.scenario.needs_users() && args.users == 0 {
            bail!("--users must be at least 1 for the {} scenario", args.scenario.as_str());
        }
        if args.scenario == Scenario::Passkey && args.users < args.concurrency {
            bail!(
                "--users ({}) must be at least --concurrency ({}) for the passkey scenario: each caller signs in only its own users, so that a user's signature counter rises in the order the server applies it",
                args.users,
                args.concurrency
            );
        }
        if args.protocol == Protocol::CognitoJson
            && !matches!(
                args.scenario,
                Scenario::Signin | Scenario::Refresh | Scenario::Verify | Scenario::Signup
            )
        {
            bail!(
                "--protocol cognito-json serves the signin, refresh, verify and signup scenarios, not {}",
                args.scenario.as_str()
            );
        }
        Ok(Plan {
            scenario: args.scenario,
            protocol: args.protocol,
            users: if args.scenario.needs_users() { args.users } else { 0 },
            rounds: args.rounds.max(1),
            load,
        })
    }
}

/// Everything after the pool exists.
async fn run_in_pool(
    plan: &Plan,
    admin: &Client,
    pool: &UserPoolType,
    run_id: &str,
) -> anyhow::Result<AuthBenchReport> {
    let params = argon2_params(pool);
    let client_id = create_app_client(admin, &pool.id, run_id).await?;

    let usernames: Vec<String> = (0..plan.users).map(|i| format!("bench-{run_id}-u{i}")).collect();
    if !usernames.is_empty() && plan.scenario != Scenario::EmailOtp {
        tracing::info!(users = usernames.len(), "creating and confirming the bench users");
        create_users(admin, &pool.id, &client_id, &usernames).await?;
    }
    let steps = Arc::new(std::sync::Mutex::new(StepTimes::new()?));
    let workload = match plan.scenario {
        Scenario::Mfa => Workload::Mfa {
            client_id: client_id.clone(),
            users: super::auth_mfa::setup_totp_users(admin, &pool.id, &client_id, &usernames).await?,
            steps: steps.clone(),
        },
        Scenario::EmailOtp => {
            super::auth_mfa::setup_email_otp(admin, &pool.id, &usernames).await?;
            Workload::EmailOtp {
                client_id: client_id.clone(),
                users: usernames.iter().map(|u| tokio::sync::Mutex::new(u.clone())).collect(),
                outbox: super::auth_mfa::OutboxTail::start(admin.clone(), pool.id.clone()),
                steps: steps.clone(),
            }
        }
        Scenario::Passkey => Workload::Passkey {
            client_id: client_id.clone(),
            users: super::auth_passkey::setup_passkey_users(admin, &pool.id, &client_id, &usernames).await?,
            steps: steps.clone(),
        },
        Scenario::Signin => Workload::Signin {
            client_id: client_id.clone(),
            usernames: usernames.clone(),
        },
        Scenario::Refresh => Workload::Refresh {
            client_id: client_id.clone(),
            refresh_tokens: sign_in_all(admin, &client_id, &usernames)
                .await?
                .into_iter()
                .map(|t| t.refresh_token)
                .collect(),
        },
        Scenario::Verify => Workload::Verify {
            access_tokens: sign_in_all(admin, &client_id, &usernames)
                .await?
                .into_iter()
                .map(|t| t.access_token)
                .collect(),
        },
        Scenario::Signup => Workload::Signup {
            client_id: client_id.clone(),
            prefix: format!("bench-{run_id}-s"),
        },
    };

    let load = &plan.load;
    let workload = Arc::new(workload);
    let tasks = load.concurrency;
    let round = LoadPlan {
        duration: load.duration / plan.rounds,
        ..load.clone()
    };
    let mut slices = Vec::with_capacity(plan.rounds as usize + 1);
    let mut stats: Option<TaskStats> = None;
    for r in 0..plan.rounds {
        tracing::info!(?params, round = r + 1, "measuring a slice of the argon2 limit");
        slices.push(argon2_limit::measure(params, ARGON2_SLICE).await?);
        tracing::info!(scenario = plan.scenario.as_str(), round = r + 1, "running the load");
        let by_kind = run_load(&round, None, |task, client| AuthCaller {
            auth: client.auth(),
            json: (plan.protocol == Protocol::CognitoJson)
                .then(|| JsonConn::new(&round.endpoints[task % round.endpoints.len()])),
            workload: workload.clone(),
            task,
            tasks,
        })
        .await?;
        let window = merge_kinds(by_kind)?;
        match stats.as_mut() {
            Some(s) => s.merge(window)?,
            None => stats = Some(window),
        }
    }
    tracing::info!(?params, "measuring the last slice of the argon2 limit");
    slices.push(argon2_limit::measure(params, ARGON2_SLICE).await?);
    let stats = match stats {
        Some(s) => s,
        None => TaskStats::new()?,
    };
    let limit = Argon2Limit::interleaved(&slices).ok_or_else(|| anyhow!("no argon2 limit was measured"))?;

    let secs = round.duration.as_secs_f64() * f64::from(plan.rounds);
    let throughput = stats.ok as f64 / secs;
    let alone = match &*workload {
        Workload::Mfa { client_id, users, .. } => {
            tracing::info!("answering SOFTWARE_TOKEN_MFA with no hash before the answers");
            let a = super::auth_mfa::answers_alone(admin.auth(), client_id, users, tasks, round.duration).await?;
            Some((LatencySummary::of(&a.latency), a.latency.len(), a.errors))
        }
        _ => None,
    };
    let password_signin = if plan.scenario == Scenario::Passkey {
        tracing::info!("running the signin load for the password rate beside it");
        let signin = Arc::new(Workload::Signin {
            client_id: client_id.clone(),
            usernames,
        });
        let by_kind = run_load(&round, None, |task, client| AuthCaller {
            auth: client.auth(),
            json: None,
            workload: signin.clone(),
            task,
            tasks,
        })
        .await?;
        let s = merge_kinds(by_kind)?;
        let pw_secs = round.duration.as_secs_f64();
        let pw_throughput = s.ok as f64 / pw_secs;
        Some(PasswordComparison {
            duration_secs: pw_secs,
            ok: s.ok,
            throughput: pw_throughput,
            scenario_ratio: ratio(throughput, pw_throughput),
            latency_us: s.latency_summary(),
            errors: s.errors,
        })
    } else {
        None
    };
    Ok(AuthBenchReport {
        scenario: plan.scenario,
        protocol: plan.protocol,
        endpoints: load.endpoints.clone(),
        connections: load.connections,
        concurrency: load.concurrency,
        pool_id: pool.id.clone(),
        client_id,
        users: plan.users,
        warmup_secs: load.warmup.as_secs_f64(),
        duration_secs: secs,
        rounds: plan.rounds,
        target: plan.scenario.target().check(throughput, limit.hashes_per_sec),
        argon2_ratio: ratio(throughput, limit.hashes_per_sec),
        argon2_slices: slices.iter().map(|s| s.hashes_per_sec).collect(),
        argon2_limit: limit,
        ok: stats.ok,
        throughput,
        latency_us: stats.latency_summary(),
        errors: stats.errors,
        error_samples: stats.error_samples,
        pool_deleted: false,
        steps: match plan.scenario {
            Scenario::Mfa => {
                let mut r = lock_steps(&steps).report("USER_PASSWORD_AUTH", "SOFTWARE_TOKEN_MFA", false);
                if let Some((latency, answers, errors)) = alone {
                    r.second_alone_us = Some(latency);
                    r.alone_answers = answers;
                    r.alone_errors = errors;
                }
                Some(r)
            }
            Scenario::EmailOtp => Some(lock_steps(&steps).report("USER_AUTH EMAIL_OTP", "EMAIL_OTP", true)),
            Scenario::Passkey => Some(lock_steps(&steps).report("USER_AUTH WEB_AUTHN", "WEB_AUTHN", false)),
            _ => None,
        },
        password_signin,
    })
}

/// Per-step latencies of the two-step scenarios, shared by their tasks
/// (one short lock per sign-in, which takes tens of milliseconds).
pub(super) struct StepTimes {
    first: hdrhistogram::Histogram<u64>,
    second: hdrhistogram::Histogram<u64>,
    code_wait: hdrhistogram::Histogram<u64>,
    pub(super) waits: u64,
}

impl StepTimes {
    fn new() -> anyhow::Result<Self> {
        let h = step_histogram;
        Ok(StepTimes {
            first: h()?,
            second: h()?,
            code_wait: h()?,
            waits: 0,
        })
    }

    /// Records one completed sign-in's steps.
    pub(super) fn record(&mut self, first: Duration, wait: Option<Duration>, second: Duration) {
        record_step(&mut self.first, first);
        record_step(&mut self.second, second);
        if let Some(w) = wait {
            record_step(&mut self.code_wait, w);
        }
    }

    fn report(&self, first: &'static str, second: &'static str, with_wait: bool) -> StepReport {
        StepReport {
            first,
            second,
            first_us: LatencySummary::of(&self.first),
            second_us: LatencySummary::of(&self.second),
            code_wait_us: with_wait.then(|| LatencySummary::of(&self.code_wait)),
            waits: self.waits,
            second_alone_us: None,
            alone_answers: 0,
            alone_errors: BTreeMap::new(),
        }
    }
}

/// A histogram of one step's latencies, in µs, from 1 µs to 60 s.
pub(super) fn step_histogram() -> Result<hdrhistogram::Histogram<u64>, hdrhistogram::CreationError> {
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)
}

/// Records `took` in a [`step_histogram`], clamped to its bounds.
pub(super) fn record_step(h: &mut hdrhistogram::Histogram<u64>, took: Duration) {
    h.saturating_record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX).clamp(1, 60_000_000));
}

pub(super) fn lock_steps(s: &std::sync::Mutex<StepTimes>) -> std::sync::MutexGuard<'_, StepTimes> {
    match s.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The pool's argon2 parameters, or the product defaults where the pool
/// reports none (an older server, or a zero that means "default").
fn argon2_params(pool: &UserPoolType) -> Argon2Params {
    let d = Argon2Params::default();
    match &pool.password_hashing {
        Some(h) => Argon2Params {
            m_kib: if h.memory_kib == 0 { d.m_kib } else { h.memory_kib },
            t: if h.iterations == 0 { d.t } else { h.iterations },
            p: if h.parallelism == 0 { d.p } else { h.parallelism },
        },
        None => d,
    }
}

async fn create_app_client(admin: &Client, pool_id: &str, run_id: &str) -> anyhow::Result<String> {
    let body = CreateUserPoolClientRequest {
        user_pool_id: pool_id.to_string(),
        client_name: format!("bench-{run_id}"),
        generate_secret: false,
        explicit_auth_flows: AUTH_FLOWS.iter().map(|f| f.to_string()).collect(),
        ..Default::default()
    };
    let resp = admin
        .admin()
        .create_user_pool_client(admin.req(body))
        .await
        .map_err(|s| status_error("CreateUserPoolClient", s))?
        .into_inner();
    resp.user_pool_client
        .map(|c| c.client_id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| anyhow!("CreateUserPoolClient returned no client id"))
}

/// `SignUp` then `AdminConfirmSignUp` for each name, a few at a time.
pub(super) async fn create_users(
    admin: &Client,
    pool_id: &str,
    client_id: &str,
    usernames: &[String],
) -> anyhow::Result<()> {
    futures::stream::iter(usernames)
        .map(|username| async move {
            let body = SignUpRequest {
                client_id: client_id.to_string(),
                username: username.clone(),
                password: PASSWORD.to_string(),
                ..Default::default()
            };
            admin
                .auth()
                .sign_up(body)
                .await
                .map_err(|s| status_error(&format!("SignUp {username}"), s))?;
            let body = AdminConfirmSignUpRequest {
                user_pool_id: pool_id.to_string(),
                username: username.clone(),
            };
            admin
                .admin()
                .admin_confirm_sign_up(admin.req(body))
                .await
                .map_err(|s| status_error(&format!("AdminConfirmSignUp {username}"), s))?;
            anyhow::Ok(())
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Signs every user in once, in order, for the tokens the refresh and
/// verify scenarios reuse.
pub(super) async fn sign_in_all(
    admin: &Client,
    client_id: &str,
    usernames: &[String],
) -> anyhow::Result<Vec<AuthenticationResultType>> {
    tracing::info!(users = usernames.len(), "signing the bench users in");
    futures::stream::iter(usernames)
        .map(|username| async move {
            let resp = admin
                .auth()
                .initiate_auth(password_auth(client_id, username))
                .await
                .map_err(|s| status_error(&format!("InitiateAuth {username}"), s))?
                .into_inner();
            tokens(resp).map_err(|f| anyhow!("InitiateAuth {username}: {}: {}", f.code, f.message))
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await
}

pub(super) fn password_auth(client_id: &str, username: &str) -> InitiateAuthRequest {
    InitiateAuthRequest {
        auth_flow: "USER_PASSWORD_AUTH".to_string(),
        auth_parameters: [
            ("USERNAME".to_string(), username.to_string()),
            ("PASSWORD".to_string(), PASSWORD.to_string()),
        ]
        .into_iter()
        .collect(),
        client_id: client_id.to_string(),
        ..Default::default()
    }
}

/// The tokens of a completed sign-in; a challenge is a failure, since the
/// bench users never have one pending.
pub(super) fn tokens(resp: InitiateAuthResponse) -> Result<AuthenticationResultType, Failure> {
    match resp.authentication_result {
        Some(t) if !t.access_token.is_empty() => Ok(t),
        _ => Err(Failure::new(
            "NoTokens",
            format!("answered challenge {:?} instead of tokens", resp.challenge_name),
        )),
    }
}

/// What the load tasks call, and with what.
enum Workload {
    Signin {
        client_id: String,
        usernames: Vec<String>,
    },
    Refresh {
        client_id: String,
        refresh_tokens: Vec<String>,
    },
    Verify {
        access_tokens: Vec<String>,
    },
    Signup {
        client_id: String,
        prefix: String,
    },
    Mfa {
        client_id: String,
        users: Vec<super::auth_mfa::TotpUser>,
        steps: Arc<std::sync::Mutex<StepTimes>>,
    },
    EmailOtp {
        client_id: String,
        /// Held while a sign-in of that user runs, so its code is its own.
        users: Vec<tokio::sync::Mutex<String>>,
        outbox: super::auth_mfa::OutboxTail,
        steps: Arc<std::sync::Mutex<StepTimes>>,
    },
    Passkey {
        client_id: String,
        users: Vec<super::auth_passkey::PasskeyUser>,
        steps: Arc<std::sync::Mutex<StepTimes>>,
    },
}

/// The `seq`-th item of task `task` out of `tasks`, among `len`: the tasks
/// interleave, so that together they cycle over every item evenly rather
/// than all hitting the same one at once.
pub fn pick(task: usize, tasks: usize, seq: u64, len: usize) -> usize {
    let len = len.max(1) as u64;
    let i = seq.wrapping_mul(tasks as u64).wrapping_add(task as u64) % len;
    // Less than `len`, which came from a usize.
    usize::try_from(i).unwrap_or(0)
}

impl Workload {
    /// The one kind of call a scenario makes.
    fn kind(&self) -> &'static str {
        match self {
            Workload::Signin { .. } => "signin",
            Workload::Refresh { .. } => "refresh",
            Workload::Verify { .. } => "verify",
            Workload::Signup { .. } => "signup",
            Workload::Mfa { .. } => "mfa",
            Workload::EmailOtp { .. } => "email-otp",
            Workload::Passkey { .. } => "passkey",
        }
    }

    async fn call(&self, auth: &mut AuthClient<Channel>, task: usize, tasks: usize, seq: u64) -> Result<(), Failure> {
        match self {
            Workload::Signin { client_id, usernames } => {
                let username = &usernames[pick(task, tasks, seq, usernames.len())];
                let resp = auth.initiate_auth(password_auth(client_id, username)).await?;
                tokens(resp.into_inner()).map(drop)
            }
            Workload::Refresh {
                client_id,
                refresh_tokens,
            } => {
                let token = &refresh_tokens[pick(task, tasks, seq, refresh_tokens.len())];
                let body = InitiateAuthRequest {
                    auth_flow: "REFRESH_TOKEN_AUTH".to_string(),
                    auth_parameters: [("REFRESH_TOKEN".to_string(), token.clone())].into_iter().collect(),
                    client_id: client_id.clone(),
                    ..Default::default()
                };
                tokens(auth.initiate_auth(body).await?.into_inner()).map(drop)
            }
            Workload::Verify { access_tokens } => {
                let token = &access_tokens[pick(task, tasks, seq, access_tokens.len())];
                let body = GetUserRequest {
                    access_token: token.clone(),
                };
                auth.get_user(body).await?;
                Ok(())
            }
            Workload::Signup { client_id, prefix } => {
                let body = SignUpRequest {
                    client_id: client_id.clone(),
                    username: format!("{prefix}{task}-{seq}"),
                    password: PASSWORD.to_string(),
                    ..Default::default()
                };
                auth.sign_up(body).await?;
                Ok(())
            }
            Workload::Mfa {
                client_id,
                users,
                steps,
            } => super::auth_mfa::mfa_sign_in(auth, client_id, users, pick(task, tasks, seq, users.len()), steps).await,
            Workload::EmailOtp {
                client_id,
                users,
                outbox,
                steps,
            } => {
                super::auth_mfa::email_otp_sign_in(
                    auth,
                    client_id,
                    users,
                    pick(task, tasks, seq, users.len()),
                    outbox,
                    steps,
                )
                .await
            }
            Workload::Passkey {
                client_id,
                users,
                steps,
            } => {
                let index = super::auth_passkey::own_user(task, tasks, seq, users.len());
                super::auth_passkey::passkey_sign_in(auth, client_id, users, index, steps).await
            }
        }
    }
}

impl Workload {
    /// [`Workload::call`] over Cognito's JSON protocol, with the same
    /// requests and the same checks of the answers.
    async fn call_json(&self, conn: &mut JsonConn, task: usize, tasks: usize, seq: u64) -> Result<(), Failure> {
        let signed_in = |v: &serde_json::Value| {
            if v["AuthenticationResult"]["AccessToken"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
            {
                Ok(())
            } else {
                Err(Failure::new("NoTokens", format!("answered {v} instead of tokens")))
            }
        };
        match self {
            Workload::Signin { client_id, usernames } => {
                let username = &usernames[pick(task, tasks, seq, usernames.len())];
                let body = serde_json::json!({
                    "AuthFlow": "USER_PASSWORD_AUTH",
                    "ClientId": client_id,
                    "AuthParameters": {"USERNAME": username, "PASSWORD": PASSWORD},
                });
                signed_in(&conn.call("InitiateAuth", &body).await?)
            }
            Workload::Refresh {
                client_id,
                refresh_tokens,
            } => {
                let token = &refresh_tokens[pick(task, tasks, seq, refresh_tokens.len())];
                let body = serde_json::json!({
                    "AuthFlow": "REFRESH_TOKEN_AUTH",
                    "ClientId": client_id,
                    "AuthParameters": {"REFRESH_TOKEN": token},
                });
                signed_in(&conn.call("InitiateAuth", &body).await?)
            }
            Workload::Verify { access_tokens } => {
                let token = &access_tokens[pick(task, tasks, seq, access_tokens.len())];
                conn.call("GetUser", &serde_json::json!({ "AccessToken": token }))
                    .await?;
                Ok(())
            }
            Workload::Signup { client_id, prefix } => {
                let body = serde_json::json!({
                    "ClientId": client_id,
                    "Username": format!("{prefix}{task}-{seq}"),
                    "Password": PASSWORD,
                });
                conn.call("SignUp", &body).await?;
                Ok(())
            }
            Workload::Mfa { .. } | Workload::EmailOtp { .. } | Workload::Passkey { .. } => {
                Err(Failure::new("Unsupported", "this scenario runs over gRPC only".into()))
            }
        }
    }
}

/// One load task: its share of a connection and its place among the
/// tasks, which [`pick`] needs to interleave them.
struct AuthCaller {
    auth: AuthClient<Channel>,
    /// Set with `--protocol cognito-json`: the timed calls go here.
    json: Option<JsonConn>,
    workload: Arc<Workload>,
    task: usize,
    tasks: usize,
}

impl Caller for AuthCaller {
    async fn call(&mut self, seq: u64) -> (&'static str, Result<(), Failure>) {
        let outcome = match self.json.as_mut() {
            Some(conn) => self.workload.call_json(conn, self.task, self.tasks, seq).await,
            None => self.workload.call(&mut self.auth, self.task, self.tasks, seq).await,
        };
        (self.workload.kind(), outcome)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::driver::test_cli::{BenchCmd, Cli, Cmd, MainOutput};
    use super::super::parse_endpoints;
    use super::super::stats::TaskStats;
    use super::*;

    fn parse(argv: &[&str]) -> (Cli, AuthBenchArgs) {
        let cli = Cli::try_parse_from(argv).unwrap();
        let Cmd::Bench(BenchCmd::Auth(a)) = &cli.cmd else {
            panic!("not bench auth: {argv:?}");
        };
        let a = a.clone();
        (cli, a)
    }

    #[test]
    fn debug_hides_the_token() {
        let (_, a) = parse(&["tessera", "bench", "auth", "--token", "s3cret-admin"]);
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
        let (_, a) = parse(&["tessera", "bench", "auth"]);
        if std::env::var_os("TESSERA_ENDPOINT").is_none() {
            assert_eq!(parse_endpoints(&a.endpoint), vec![DEFAULT_ENDPOINT]);
        }
        assert_eq!(a.scenario, Scenario::Signin);
        assert_eq!(a.concurrency, 16);
        assert_eq!(a.duration, 10.0);
        assert_eq!(a.warmup, 1.5);
        assert_eq!(a.rounds, 5);
        assert_eq!(a.users, 64);
        assert_eq!(a.pool_id, None);
        assert!(!a.keep_pool);
    }

    #[test]
    fn flags_after_the_subcommand_coexist_with_the_global_ones() {
        let (cli, a) = parse(&[
            "tessera",
            "bench",
            "auth",
            "--endpoint",
            "http://a:7700,http://b:7700",
            "--token",
            "t0k",
            "--scenario",
            "verify",
            "--concurrency",
            "64",
            "--duration",
            "0.5",
            "--warmup",
            "0",
            "--users",
            "8",
            "--pool-id",
            "local_abc",
            "--output",
            "json",
        ]);
        assert_eq!(parse_endpoints(&a.endpoint), vec!["http://a:7700", "http://b:7700"]);
        assert_eq!(a.token.as_deref(), Some("t0k"));
        assert_eq!(a.scenario, Scenario::Verify);
        assert_eq!(a.concurrency, 64);
        assert_eq!(a.duration, 0.5);
        assert_eq!(a.warmup, 0.0);
        assert_eq!(a.users, 8);
        assert_eq!(a.pool_id.as_deref(), Some("local_abc"));
        // The global flags see the same values.
        assert_eq!(cli.output, MainOutput::Json);
        assert_eq!(cli.token.as_deref(), Some("t0k"));
        assert_eq!(cli.endpoint, "http://a:7700,http://b:7700");
    }

    #[test]
    fn global_flags_before_the_subcommand_reach_it() {
        let (_, a) = parse(&["tessera", "--endpoint", "x:1,y:2", "--token", "t", "bench", "auth"]);
        assert_eq!(parse_endpoints(&a.endpoint), vec!["x:1", "y:2"]);
        assert_eq!(a.token.as_deref(), Some("t"));
    }

    fn args(scenario: Scenario) -> AuthBenchArgs {
        let (_, mut a) = parse(&["tessera", "bench", "auth", "--token", "t"]);
        a.scenario = scenario;
        a
    }

    #[test]
    fn plans_validate_their_arguments() {
        let p = Plan::from_args(&args(Scenario::Signin)).unwrap();
        assert_eq!(p.load.connections, 2);
        assert_eq!(p.users, 64);
        assert_eq!(p.load.duration, Duration::from_secs(10));
        assert_eq!(Plan::from_args(&args(Scenario::Signup)).unwrap().users, 0);

        let mut a = args(Scenario::Signin);
        a.token = None;
        assert!(Plan::from_args(&a).is_err());
        let mut a = args(Scenario::Signin);
        a.duration = 0.0;
        assert!(Plan::from_args(&a).is_err());
        let mut a = args(Scenario::Signin);
        a.warmup = -1.0;
        assert!(Plan::from_args(&a).is_err());
        let mut a = args(Scenario::Signin);
        a.concurrency = 0;
        assert!(Plan::from_args(&a).is_err());
        let mut a = args(Scenario::Refresh);
        a.users = 0;
        assert!(Plan::from_args(&a).is_err());
        let mut a = args(Scenario::Signup);
        a.users = 0;
        assert!(Plan::from_args(&a).is_ok());
        let mut a = args(Scenario::Signin);
        a.endpoint = " , ".into();
        assert!(Plan::from_args(&a).is_err());
    }

    #[test]
    fn pick_cycles_over_every_item_evenly() {
        let (tasks, len) = (16, 64);
        let mut hits = vec![0u32; len];
        for task in 0..tasks {
            for seq in 0..8 {
                hits[pick(task, tasks, seq, len)] += 1;
            }
        }
        assert!(hits.iter().all(|&h| h == 2), "{hits:?}");
        assert_eq!(pick(3, 4, 0, 0), 0);
    }

    #[test]
    fn targets_pass_and_fail_at_the_threshold() {
        let t = Scenario::Signin.target().check(95.0, 100.0);
        assert!(t.pass, "{t:?}");
        assert!(!Scenario::Signin.target().check(94.0, 100.0).pass);
        assert!(!Scenario::Signup.target().check(79.0, 100.0).pass);
        assert!(Scenario::Signup.target().check(80.0, 100.0).pass);
        assert!(Scenario::Refresh.target().check(4_000.0, 1.0).pass);
        assert!(!Scenario::Verify.target().check(9_999.0, 1.0).pass);
        // No argon2 measurement: a ratio target cannot pass.
        assert!(!Scenario::Signin.target().check(100.0, 0.0).pass);
        assert!(Scenario::Mfa.target().check(85.0, 100.0).pass);
        assert!(!Scenario::EmailOtp.target().check(49.0, 1.0).pass);
    }

    fn report() -> AuthBenchReport {
        let mut stats = TaskStats::new().unwrap();
        stats.record_ok(Duration::from_millis(20));
        stats.record_error("Unavailable", "node down");
        AuthBenchReport {
            scenario: Scenario::Signin,
            protocol: Protocol::Grpc,
            endpoints: vec![DEFAULT_ENDPOINT.into()],
            connections: 2,
            concurrency: 16,
            pool_id: "local_abc".into(),
            client_id: "c1".into(),
            users: 64,
            warmup_secs: 2.0,
            duration_secs: 10.0,
            argon2_limit: Argon2Limit {
                memory_kib: 19456,
                iterations: 2,
                parallelism: 1,
                threads: 2,
                hashes: 300,
                seconds: 3.0,
                hashes_per_sec: 100.0,
            },
            rounds: 5,
            argon2_slices: vec![104.0, 96.0, 100.0, 98.0, 102.0, 100.0],
            ok: 960,
            throughput: 96.0,
            argon2_ratio: 0.96,
            latency_us: stats.latency_summary(),
            errors: stats.errors.clone(),
            error_samples: stats.error_samples.clone(),
            target: Scenario::Signin.target().check(96.0, 100.0),
            pool_deleted: true,
            steps: None,
            password_signin: None,
        }
    }

    fn passkey_report() -> AuthBenchReport {
        let mut r = report();
        r.scenario = Scenario::Passkey;
        r.ok = 52_000;
        r.throughput = 5_200.0;
        r.target = Scenario::Passkey.target().check(5_200.0, 100.0);
        let mut steps = StepTimes::new().unwrap();
        steps.record(Duration::from_micros(900), None, Duration::from_micros(2_100));
        r.steps = Some(steps.report("USER_AUTH WEB_AUTHN", "WEB_AUTHN", false));
        r.password_signin = Some(PasswordComparison {
            duration_secs: 2.0,
            ok: 200,
            throughput: 100.0,
            scenario_ratio: 52.0,
            errors: BTreeMap::new(),
            latency_us: r.latency_us,
        });
        r
    }

    #[test]
    fn mfa_reports_the_answer_alone_beside_the_interleaved_one() {
        let mut r = report();
        r.scenario = Scenario::Mfa;
        let mut steps = StepTimes::new().unwrap();
        steps.record(Duration::from_micros(21_000), None, Duration::from_micros(1_300));
        let mut st = steps.report("USER_PASSWORD_AUTH", "SOFTWARE_TOKEN_MFA", false);
        let mut alone = StepTimes::new().unwrap();
        alone.record(Duration::from_micros(1), None, Duration::from_micros(800));
        st.second_alone_us = Some(LatencySummary::of(&alone.second));
        r.steps = Some(st.clone());
        let t = r.render(OutputFormat::Table);
        assert!(t.contains("step 2 alone  no answer recorded"), "{t}");
        st.alone_answers = 1;
        r.steps = Some(st.clone());
        let t = r.render(OutputFormat::Table);
        assert!(t.contains("step 2 alone  p50 800"), "{t}");
        assert!(
            t.contains("1 answers back to back, 16 per caller after their password steps"),
            "{t}"
        );
        assert!(!t.contains("errors {"), "{t}");
        st.alone_errors.insert("Unavailable".into(), 3);
        r.steps = Some(st);
        let t = r.render(OutputFormat::Table);
        assert!(t.contains("; 3 errors {\"Unavailable\": 3}"), "{t}");
        let v: serde_json::Value = serde_json::from_str(&r.render(OutputFormat::Json)).unwrap();
        assert_eq!(v["steps"]["second_alone_us"]["p50_us"], 800);
        // Other two-step scenarios have no such window.
        let v: serde_json::Value = serde_json::from_str(&passkey_report().render(OutputFormat::Json)).unwrap();
        assert!(v["steps"]["second_alone_us"].is_null());
    }

    #[test]
    fn passkey_reports_the_password_rate_beside_its_own() {
        let t = passkey_report().render(OutputFormat::Table);
        assert!(t.contains("throughput = 5,200/s (>= 5,000/s)  PASS"), "{t}");
        assert!(t.contains("steps         1: USER_AUTH WEB_AUTHN   2: WEB_AUTHN"), "{t}");
        assert!(
            t.contains("password      200 ok in 2 s (100.0/s, USER_PASSWORD_AUTH"),
            "{t}"
        );
        assert!(
            t.contains("vs password   5,200 sign-ins/s with passkey ÷ 100.0/s with a password = 52.00"),
            "{t}"
        );
        let v: serde_json::Value = serde_json::from_str(&passkey_report().render(OutputFormat::Json)).unwrap();
        assert_eq!(v["scenario"], "passkey");
        assert_eq!(v["password_signin"]["throughput"], 100.0);
        assert_eq!(v["password_signin"]["scenario_ratio"], 52.0);
        assert_eq!(v["steps"]["second"], "WEB_AUTHN");
        assert!(!Scenario::Passkey.target().check(4_999.0, 1.0).pass);
        // Other scenarios carry no comparison.
        let v: serde_json::Value = serde_json::from_str(&report().render(OutputFormat::Json)).unwrap();
        assert!(v["password_signin"].is_null());
    }

    #[test]
    fn passkey_needs_a_user_per_caller() {
        let mut a = args(Scenario::Passkey);
        a.concurrency = 32;
        a.users = 31;
        let e = Plan::from_args(&a).err().unwrap().to_string();
        assert!(e.contains("--users (31) must be at least --concurrency (32)"), "{e}");
        a.users = 32;
        assert!(Plan::from_args(&a).is_ok());
        a.protocol = Protocol::CognitoJson;
        assert!(Plan::from_args(&a).is_err());
    }

    #[test]
    fn table_shows_the_verdict_and_errors() {
        let t = report().render(OutputFormat::Table);
        assert!(t.contains("throughput / argon2 limit = 0.960 (>= 0.95)  PASS"), "{t}");
        assert!(t.contains("errors        1 (Unavailable 1)"), "{t}");
        assert!(t.contains("Unavailable: node down"), "{t}");
        assert!(t.contains("p50 20.0 ms"), "{t}");
        assert!(
            t.contains("mean of 6 slices between 5 load windows, 96.0 to 104"),
            "{t}"
        );
    }

    #[test]
    fn json_is_one_parseable_object() {
        let j = report().render(OutputFormat::Json);
        assert_eq!(j.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["scenario"], "signin");
        assert_eq!(v["target"]["pass"], true);
        assert_eq!(v["target"]["target"]["kind"], "share_of_argon2_limit");
        assert_eq!(v["target"]["target"]["threshold"], 0.95);
        assert_eq!(v["errors"]["Unavailable"], 1);
        assert_eq!(v["argon2_limit"]["hashes_per_sec"], 100.0);
    }
}
