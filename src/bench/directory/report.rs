//! What a `bench directory` run measured, and how it prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{DirectoryScenario, DirectoryTarget, DirectoryTargetCheck, IMPORT_BATCH, PAGE};
use crate::bench::driver::{render, write_endpoints, write_errors, write_window};
use crate::bench::stats::Percentiles;
use crate::bench::{format_rate, group_thousands, OutputFormat};

/// How the setup import went.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// Users the server reported imported.
    pub imported: u64,
    /// Per-user failures in batches that were retried after a transient
    /// error: most likely users the first attempt had already created.
    pub failures_after_retry: u64,
    /// Import calls in flight at once.
    pub concurrency: usize,
    /// Wall time the import took.
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
    /// Calls of this kind that succeeded.
    pub ok: u64,
    /// Calls of this kind that failed.
    pub errors: u64,
    /// Latency of the successful ones.
    pub latency_us: Percentiles,
}

/// Everything a run measured, printable as a table or JSON.
#[derive(Debug, Clone, Serialize)]
pub struct DirectoryBenchReport {
    /// The load that was run.
    pub scenario: DirectoryScenario,
    /// The api endpoints the load was spread over.
    pub endpoints: Vec<String>,
    /// HTTP/2 connections the callers shared.
    pub connections: usize,
    /// Concurrent callers, each with at most one call in flight.
    pub concurrency: usize,
    /// The pool loaded (created by the bench unless `--pool-id` was given).
    pub pool_id: String,
    /// Users the load draws from.
    pub users: usize,
    /// Absent when the pool was reused.
    pub import: Option<ImportReport>,
    /// `listusers` only.
    pub queries: Option<QueryMix>,
    /// Seconds run before the measured window and not recorded.
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
    /// The same counts split by kind of call.
    pub by_kind: BTreeMap<String, KindReport>,
    /// The scenario's target and whether the run met it.
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
        render(self, format, || self.table())
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
        write_endpoints(&mut s, &self.endpoints, self.concurrency, self.connections);
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
        write_window(&mut s, self.warmup_secs, self.duration_secs);
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
        write_errors(&mut s, &self.errors, &self.error_samples);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::FOLLOW_EVERY;
    use super::*;
    use crate::bench::stats::TaskStats;
    use crate::bench::DEFAULT_ENDPOINT;

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
