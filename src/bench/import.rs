//! `tessera bench import`: bulk import of users with existing bcrypt
//! hashes (issue 12), reported as users per second.
//!
//! The hashes are made once, before the clock starts, at the cost given
//! (10 by default, a common production cost); each user reuses one of a
//! few of them, since the server never recomputes an imported hash (it
//! only parses and bounds it) and the cost of making them is not what is
//! measured. The users then go through exactly what `tessera user import`
//! runs ([`crate::client::bulk::import_stream`]): batches of 1,000 per
//! `AdminImportUsers` call, a few calls in flight, each batch one Raft
//! entry. The number is users created per second of wall time, from the
//! first call to the last answer.

use std::time::Instant;

use anyhow::{bail, Context as _};
use serde::Serialize;

use super::driver::{delete_pool, open_pool, render};
use super::{OutputFormat, DEFAULT_ENDPOINT};
use crate::client::bulk::{import_stream, ImportPlan, Line, Lines, StreamReport};
use crate::client::Client;
use crate::proto::{AttributeValue, ImportUserType};

/// Distinct hashes the users share.
const DISTINCT_HASHES: usize = 8;

/// The flags of `tessera bench import`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportBenchArgs {
    /// Api endpoint of a node (e.g. `tessera dev`'s).
    #[arg(long, env = "TESSERA_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Admin token (printed by `cluster init` and `dev`).
    #[arg(long, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Users to import.
    #[arg(long, default_value_t = 100_000)]
    pub users: usize,
    /// bcrypt cost of the hashes (4 to 16).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=16))]
    pub cost: u32,
    /// Users per AdminImportUsers call (1 to 1000).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Calls in flight (1 to 16).
    #[arg(long, default_value_t = 4)]
    pub in_flight: usize,
    /// Keep the pool instead of deleting it at the end.
    #[arg(long)]
    pub keep_pool: bool,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ImportBenchReport {
    /// Users asked for.
    pub users: usize,
    /// Users created.
    pub imported: u64,
    /// Users refused (should be none).
    pub refused: usize,
    /// bcrypt cost of the hashes.
    pub cost: u32,
    /// Seconds spent making the hashes (not measured).
    pub hash_setup_seconds: f64,
    /// Seconds from the first call to the last answer.
    pub seconds: f64,
    /// The figure: users created per second.
    pub users_per_sec: f64,
    /// Users per call and calls in flight.
    pub batch: usize,
    /// Calls in flight.
    pub in_flight: usize,
    /// The pool, when kept.
    pub pool_id: Option<String>,
}

impl ImportBenchReport {
    /// Prints the report in `format`.
    pub fn print(&self, format: OutputFormat) {
        print!(
            "{}",
            render(self, format, || format!(
                "bench import: {} users with bcrypt (cost {}) hashes, {} per call, {} in flight\n\
                 imported {} ({} refused) in {:.1} s: {:.0} users/s\n\
                 (hashes made once beforehand in {:.1} s, not measured)\n",
                self.users,
                self.cost,
                self.batch,
                self.in_flight,
                self.imported,
                self.refused,
                self.seconds,
                self.users_per_sec,
                self.hash_setup_seconds
            ))
        );
    }

    /// Whether every user went in.
    pub fn passed(&self) -> bool {
        self.refused == 0 && self.imported == self.users as u64
    }
}

/// Runs the bench against `args.endpoint`.
pub async fn run(args: ImportBenchArgs) -> anyhow::Result<ImportBenchReport> {
    if args.users == 0 {
        bail!("--users must be at least 1");
    }
    let admin = Client::connect(&args.endpoint, args.token.clone())
        .await
        .with_context(|| format!("connecting to {}", args.endpoint))?;
    let setup = Instant::now();
    let cost = args.cost;
    let hashes = tokio::task::spawn_blocking(move || {
        (0..DISTINCT_HASHES)
            .map(|i| bcrypt::hash(format!("Bench-Passw0rd-{i}"), cost))
            .collect::<Result<Vec<String>, _>>()
    })
    .await??;
    let hash_setup_seconds = setup.elapsed().as_secs_f64();
    let name = format!("bench-import-{}", hex::encode(crate::clock::random_bytes::<4>()));
    let (pool, _) = open_pool(&admin, None, &name).await?;
    let users: Vec<Line> = (0..args.users)
        .map(|i| Line {
            line: i as u64 + 1,
            user: Ok(ImportUserType {
                username: format!("user{i:07}"),
                attributes: vec![AttributeValue {
                    name: "email".into(),
                    value: format!("user{i:07}@bench.example"),
                }],
                password_hash: hashes[i % hashes.len()].clone(),
                email_verified: Some(true),
                ..Default::default()
            }),
        })
        .collect();
    let lines: Lines = Box::new(users.into_iter().map(Ok));
    let plan = ImportPlan {
        pool_id: pool.id.clone(),
        password: String::new(),
        mark_verified: false,
        batch: args.batch,
        in_flight: args.in_flight,
    };
    let started = Instant::now();
    let report: StreamReport = import_stream(&admin, lines, &plan, &mut |_| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    let kept = if args.keep_pool {
        Some(pool.id.clone())
    } else {
        delete_pool(&admin, &pool.id).await;
        None
    };
    Ok(ImportBenchReport {
        users: args.users,
        imported: report.imported,
        refused: report.rejected.len(),
        cost,
        hash_setup_seconds,
        seconds,
        users_per_sec: report.imported as f64 / seconds.max(1e-9),
        batch: args.batch.clamp(1, 1000),
        in_flight: args.in_flight.clamp(1, crate::client::bulk::MAX_IN_FLIGHT),
        pool_id: kept,
    })
}
