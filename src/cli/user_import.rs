//! `tessera user import` and `tessera user export`: the streaming bulk
//! paths of `tessera::client::bulk`, with a progress line on a terminal.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use tessera::client::bulk::{csv_lines, import_stream, jsonl_lines, Format, ImportPlan, Lines, StreamReport};
use tessera::client::Client;

use super::print;
use super::user::read_secret_line;
use crate::Global;

// The flags of `user import` (a plain comment: a doc comment would become
// the subcommand's help text).
#[derive(Args)]
pub struct ImportArgs {
    #[arg(long)]
    pub pool_id: String,
    /// The file: .jsonl (or starting with `{`) or .csv.
    #[arg(value_name = "FILE", required_unless_present = "file")]
    pub path: Option<PathBuf>,
    /// The file, as a flag (as before FILE could be given alone).
    #[arg(long, conflicts_with = "path")]
    pub file: Option<PathBuf>,
    /// Read one password for every user without a password_hash from the
    /// first line of stdin; they are then CONFIRMED. Without it such users
    /// are RESET_REQUIRED and choose a password through ForgotPassword.
    #[arg(long)]
    pub password_stdin: bool,
    /// Mark imported emails and phone numbers verified (where a line does
    /// not say otherwise).
    #[arg(long)]
    pub mark_verified: bool,
    /// Users per AdminImportUsers call (1 to 1000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub batch: u64,
    /// Calls in flight at once (1 to 16).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub in_flight: u64,
}

impl ImportArgs {
    fn file(&self) -> Result<&Path> {
        match (&self.path, &self.file) {
            (Some(p), _) | (None, Some(p)) => Ok(p),
            (None, None) => bail!("give the file to import"),
        }
    }
}

/// Opens the file and reads its header (CSV), so that a missing file or a
/// bad header fails before any call.
pub fn open(args: &ImportArgs) -> Result<Lines> {
    let path = args.file()?;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let head = reader
        .fill_buf()
        .with_context(|| format!("reading {}", path.display()))?;
    // A byte-order mark (spreadsheets write one) is not part of the header.
    if head.starts_with(&[0xef, 0xbb, 0xbf]) {
        reader.consume(3);
    }
    let first = reader
        .fill_buf()
        .with_context(|| format!("reading {}", path.display()))?
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace());
    Ok(match Format::of(path, first) {
        Format::Jsonl => jsonl_lines(reader),
        Format::Csv => csv_lines(reader).with_context(|| format!("parsing {}", path.display()))?,
    })
}

/// Imports the opened file; exits non-zero (after importing the rest) if
/// any line was refused.
pub async fn import(g: &Global, client: &Client, args: &ImportArgs, lines: Lines) -> Result<()> {
    let password = if args.password_stdin {
        read_secret_line("Password for every imported user without a hash")?
    } else {
        String::new()
    };
    let plan = ImportPlan {
        pool_id: args.pool_id.clone(),
        password,
        mark_verified: args.mark_verified,
        batch: args.batch as usize,
        in_flight: args.in_flight as usize,
    };
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut progress = move |r: &StreamReport| {
        if tty {
            let secs = started.elapsed().as_secs_f64().max(0.001);
            eprint!(
                "\r{} lines read, {} imported, {} refused, {:.0} users/s   ",
                r.read,
                r.imported,
                r.rejected.len(),
                r.imported as f64 / secs
            );
        }
    };
    let report = import_stream(client, lines, &plan, &mut progress).await?;
    if tty {
        eprintln!();
    }
    let secs = started.elapsed().as_secs_f64();
    let rejected: Vec<serde_json::Value> = report
        .rejected
        .iter()
        .map(|(line, reason)| serde_json::json!({ "line": line, "reason": reason }))
        .collect();
    print(
        g,
        &serde_json::json!({
            "imported": report.imported,
            "rejected": rejected,
            "seconds": secs,
        }),
        || {
            for (line, reason) in &report.rejected {
                println!("line {line}: {reason}");
            }
            println!(
                "imported {} of {} users in {secs:.1} s; {} lines refused",
                report.imported,
                report.read,
                report.rejected.len()
            );
        },
    )?;
    if !report.rejected.is_empty() {
        bail!(
            "{} lines were refused (the others were imported)",
            report.rejected.len()
        );
    }
    Ok(())
}

/// Writes every user of `pool_id` as JSONL to `out` (created with mode
/// 0600: it holds password hashes) or stdout.
pub async fn export(client: &Client, pool_id: &str, out: Option<&Path>) -> Result<()> {
    let n = match out {
        Some(path) => {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let file = opts
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut w = std::io::BufWriter::new(file);
            let n = tessera::client::bulk::export_users(client, pool_id, 0, &mut w).await?;
            w.flush()?;
            n
        }
        None => {
            let mut w = std::io::BufWriter::new(std::io::stdout());
            tessera::client::bulk::export_users(client, pool_id, 0, &mut w).await?
        }
    };
    eprintln!("exported {n} users");
    Ok(())
}
