//! Load generators behind `tessera bench`: tools that drive a running
//! cluster through its public gRPC API, exactly as applications would, and
//! report throughput and latency against the product's targets.
//!
//! * [`auth`]: `tessera bench auth`, the sign-in, refresh, token-check and
//!   sign-up load, judged against the argon2 hash rate of this machine.
//! * [`directory`]: `tessera bench directory`, `ListUsers` pages over a
//!   pool of up to millions of imported users, and admin attribute writes.
//! * [`identity`]: `tessera bench identity`, the identity-pool flows:
//!   `GetId` for known and new logins, credentials, and `Authorize`.
//! * [`sync`]: `tessera bench sync`, live sync to devices over QUIC:
//!   write-to-push latency with devices of each identity on different
//!   nodes (`push`), one node's resident memory per idle device connection
//!   (`idle`), and a reconnect storm resuming from cursors (`reconnect`).
//!   It drives the sync listeners with its own lean device driver on
//!   quinn, pinned to each node's certificate from `/sync-info`, so that
//!   thousands of sessions cost the bench little and every frame is
//!   stamped as it is decoded.
//! * [`import`]: `tessera bench import`, bulk import of users with
//!   existing bcrypt hashes, in users per second.
//! * [`oauth`]: `tessera bench oauth`, client-credentials tokens from the
//!   OAuth token endpoint, in tokens per second.
//! * [`argon2_limit`]: measures that hash rate, the ceiling any
//!   password-checking flow can reach on these cores.
//! * [`driver`]: what every bench shares: the load shape from the flags,
//!   the callers timed through warm-up and the measured window, the bench
//!   pool's life, and the report lines printed alike.
//! * [`stats`]: per-task latency histograms and error counts, merged after
//!   the run.
//!
//! This module is a client of the cluster, never part of it: it talks to
//! nodes only over the network, through [`crate::client`] (and the device
//! protocol's own framing for `bench sync`), and owns no state that a node
//! reads. Being a tool, it reports failures with `anyhow`.

pub mod argon2_limit;
pub mod auth;
pub mod auth_mfa;
pub mod auth_passkey;
pub mod cognito_json;
pub mod directory;
pub mod driver;
pub mod identity;
pub mod import;
pub mod oauth;
pub mod stats;
pub mod sync;

pub use auth::{AuthBenchArgs, AuthBenchReport, Scenario};
pub use directory::{DirectoryBenchArgs, DirectoryBenchReport, DirectoryScenario};
pub use identity::{IdentityBenchArgs, IdentityBenchReport, IdentityScenario};
pub use sync::{SyncBenchArgs, SyncBenchReport, SyncScenario};

/// The default api endpoint, that of `tessera dev`.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7700";

/// How a bench prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Aligned lines for a person, with PASS/FAIL next to each target.
    #[default]
    Table,
    /// One JSON object with every number, for scripts and CI.
    Json,
}

/// Splits a comma-separated endpoint list (`a:7700,b:7700`), trimming
/// blanks and dropping empty items, so that a list pasted from a shell or a
/// config file with stray spaces or a trailing comma still works.
pub fn parse_endpoints(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A latency in microseconds as a person reads it: `850 µs`, `12.3 ms`,
/// `1.25 s`, keeping three significant figures, which is all an HdrHistogram
/// with three significant digits can vouch for.
pub fn format_micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        let ms = us as f64 / 1_000.0;
        if ms < 10.0 {
            format!("{ms:.2} ms")
        } else if ms < 100.0 {
            format!("{ms:.1} ms")
        } else {
            format!("{ms:.0} ms")
        }
    } else {
        format!("{:.2} s", us as f64 / 1_000_000.0)
    }
}

/// A rate (per second) with a precision that suits its size: `0.417`,
/// `98.3`, `12,345`.
pub fn format_rate(per_sec: f64) -> String {
    if !per_sec.is_finite() {
        return "-".to_string();
    }
    if per_sec < 10.0 {
        format!("{per_sec:.3}")
    } else if per_sec < 1_000.0 {
        format!("{per_sec:.1}")
    } else {
        group_thousands(per_sec.round() as u64)
    }
}

/// `12345678` as `12,345,678`.
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_lists_split_on_commas_and_ignore_blanks() {
        assert_eq!(parse_endpoints(DEFAULT_ENDPOINT), vec![DEFAULT_ENDPOINT.to_string()]);
        assert_eq!(
            parse_endpoints("http://a:7700, b:7700 ,,http://c:7700,"),
            vec!["http://a:7700", "b:7700", "http://c:7700"]
        );
        assert!(parse_endpoints(" , ").is_empty());
    }

    #[test]
    fn micros_read_naturally() {
        assert_eq!(format_micros(0), "0 µs");
        assert_eq!(format_micros(999), "999 µs");
        assert_eq!(format_micros(1_000), "1.00 ms");
        assert_eq!(format_micros(1_234), "1.23 ms");
        assert_eq!(format_micros(12_345), "12.3 ms");
        assert_eq!(format_micros(123_456), "123 ms");
        assert_eq!(format_micros(999_999), "1000 ms");
        assert_eq!(format_micros(1_250_000), "1.25 s");
    }

    #[test]
    fn rates_read_naturally() {
        assert_eq!(format_rate(0.4166), "0.417");
        assert_eq!(format_rate(98.34), "98.3");
        assert_eq!(format_rate(12_345.4), "12,345");
        assert_eq!(format_rate(f64::NAN), "-");
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1_000), "1,000");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
    }
}
