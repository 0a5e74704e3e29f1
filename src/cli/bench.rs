//! `tessera bench` and `tessera chaos`: the load generators and the chaos
//! harness, both judged runs that exit non-zero when they fail.

use anyhow::Result;
use clap::Subcommand;
use tessera::bench::OutputFormat;
use tessera::config::LogFormat;

use super::node::init_logging;
use crate::{Global, Output};

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Sign-in, refresh, token-check or sign-up load, judged against the
    /// argon2 limit measured in the same run. Exits non-zero when a target
    /// is missed.
    Auth(tessera::bench::AuthBenchArgs),
    /// ListUsers pages over a pool of imported users (p99 target), or
    /// AdminUpdateUserAttributes writes (rate target). Exits non-zero when a
    /// target is missed.
    Directory(tessera::bench::DirectoryBenchArgs),
    /// Identity-pool load: GetId for known logins (>= 5,000/s on one
    /// node), first-time identities (>= 3,000/s on three nodes),
    /// GetCredentialsForIdentity (>= 5,000/s on one node) or Authorize
    /// (reported). Exits non-zero when a target is missed.
    Identity(tessera::bench::IdentityBenchArgs),
    /// Live sync to devices over QUIC (issue 11): write-to-push latency
    /// with devices on every node (p99 < 25 ms), one node's memory per
    /// idle device connection (<= 20 KiB), or a reconnect storm resuming
    /// from cursors (all within 5 s). Exits non-zero when a floor is
    /// missed.
    Sync(tessera::bench::SyncBenchArgs),
    /// Bulk import of users with existing bcrypt hashes (made once
    /// beforehand, not measured), through AdminImportUsers as `user import`
    /// sends it: reports users/s. Exits non-zero when a user was refused.
    Import(tessera::bench::import::ImportBenchArgs),
    /// Server-to-server tokens (client_credentials) from
    /// /{pool_id}/oauth2/token: tokens/s against the 8,000/s floor on one
    /// node. Exits non-zero when the floor is missed.
    Oauth(tessera::bench::oauth::OAuthBenchArgs),
}

/// Runs one benchmark, prints its report, and exits with 1 when a target
/// was missed.
pub async fn bench(g: &Global, cmd: BenchCmd) -> Result<()> {
    let format = match g.output {
        Output::Json => OutputFormat::Json,
        Output::Table => OutputFormat::Table,
    };
    let passed = match cmd {
        BenchCmd::Auth(args) => {
            let report = tessera::bench::auth::run(args).await?;
            report.print(format);
            report.passed()
        }
        BenchCmd::Directory(args) => {
            let report = tessera::bench::directory::run(args).await?;
            report.print(format);
            report.passed()
        }
        BenchCmd::Identity(args) => {
            let report = tessera::bench::identity::run(args).await?;
            report.print(format);
            report.passed()
        }
        BenchCmd::Import(args) => {
            let report = tessera::bench::import::run(args).await?;
            report.print(format);
            report.passed()
        }
        BenchCmd::Oauth(args) => {
            let report = tessera::bench::oauth::run(args).await?;
            report.print(format);
            report.passed()
        }
        BenchCmd::Sync(args) => {
            let report = tessera::bench::sync::run(args).await?;
            report.print(format);
            report.passed()
        }
    };
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}

/// Runs the chaos harness, prints one line per checker and the run
/// directory, and exits with 1 when a checker failed.
pub async fn chaos(args: tessera::chaos::ChaosArgs) -> Result<()> {
    init_logging(LogFormat::Text);
    let outcome = tessera::chaos::run(args).await?;
    for c in &outcome.checks {
        println!(
            "{:<28} {}  {}",
            c.name,
            if c.passed { "PASS" } else { "FAIL" },
            c.evidence
        );
    }
    println!("run directory: {}", outcome.dir.display());
    if !outcome.passed() {
        std::process::exit(1);
    }
    Ok(())
}
