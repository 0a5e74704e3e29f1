//! What each load task records, and the merge into one summary.
//!
//! Every task owns its [`TaskStats`] (no locks or atomics on the hot path,
//! so the generator measures the server and not its own contention); the
//! runner merges them once the load has stopped.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The highest latency the histogram tracks: one minute, in µs. Anything
/// slower is clamped (and the clients' own 30 s deadline ends it first).
const MAX_TRACKED_MICROS: u64 = 60_000_000;
/// Significant digits kept by the histogram: 0.1 % resolution.
const SIGNIFICANT_DIGITS: u8 = 3;
/// Longest error message kept as a sample, so one odd answer cannot bloat
/// the report.
const MAX_SAMPLE_CHARS: usize = 200;

/// Latencies and outcomes of one task during the measured window.
#[derive(Debug, Clone)]
pub struct TaskStats {
    /// Latency of successful calls, in µs.
    pub latency: Histogram<u64>,
    /// Successful calls.
    pub ok: u64,
    /// Failed calls by gRPC code (`Unavailable`, `NotFound`, ...).
    pub errors: BTreeMap<String, u64>,
    /// The first message seen for each code, so that a failing run says why.
    pub error_samples: BTreeMap<String, String>,
}

impl TaskStats {
    /// Empty stats.
    pub fn new() -> anyhow::Result<Self> {
        Ok(TaskStats {
            latency: Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, SIGNIFICANT_DIGITS)?,
            ok: 0,
            errors: BTreeMap::new(),
            error_samples: BTreeMap::new(),
        })
    }

    /// Records a successful call that took `elapsed`.
    pub fn record_ok(&mut self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).max(1);
        self.latency.saturating_record(us);
        self.ok += 1;
    }

    /// Records a failed call under `code` (a gRPC code such as
    /// `Unavailable`, or a bench-made one such as `NoTokens`).
    pub fn record_error(&mut self, code: &str, message: &str) {
        *self.errors.entry(code.to_string()).or_insert(0) += 1;
        if !self.error_samples.contains_key(code) {
            self.error_samples
                .insert(code.to_string(), message.chars().take(MAX_SAMPLE_CHARS).collect());
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: TaskStats) -> anyhow::Result<()> {
        self.latency.add(&other.latency)?;
        self.ok += other.ok;
        for (code, n) in other.errors {
            *self.errors.entry(code).or_insert(0) += n;
        }
        for (code, msg) in other.error_samples {
            self.error_samples.entry(code).or_insert(msg);
        }
        Ok(())
    }

    /// Failed calls of every code.
    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The latency percentiles of the successful calls.
    pub fn latency_summary(&self) -> LatencySummary {
        LatencySummary::of(&self.latency)
    }
}

/// Latency percentiles of successful calls, in µs, as `bench auth`
/// reports them. All zero when nothing succeeded (and by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Median latency.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest call.
    pub max_us: u64,
    /// Mean latency.
    pub mean_us: f64,
}

impl LatencySummary {
    /// Reads the percentiles off `h`.
    pub fn of(h: &Histogram<u64>) -> Self {
        let p = Percentiles::of(h);
        LatencySummary {
            p50_us: p.p50_us,
            p99_us: p.p99_us,
            p999_us: p.p999_us,
            max_us: p.max_us,
            mean_us: p.mean_us,
        }
    }
}

/// [`LatencySummary`] with p90 too, which the directory targets want; a
/// type of its own so that each bench's JSON keeps exactly its fields.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median latency.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest call.
    pub max_us: u64,
    /// Mean latency.
    pub mean_us: f64,
}

impl Percentiles {
    /// Reads the percentiles off `h`; all zero when it is empty.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_keeps_first_samples() {
        let mut a = TaskStats::new().unwrap();
        let mut b = TaskStats::new().unwrap();
        for ms in 1..=100u64 {
            a.record_ok(Duration::from_millis(ms));
        }
        b.record_ok(Duration::from_secs(2));
        a.record_error("Unavailable", "first");
        b.record_error("Unavailable", "second");
        b.record_error("NotFound", "UserNotFoundException: nope");
        a.merge(b).unwrap();
        assert_eq!(a.ok, 101);
        assert_eq!(a.error_total(), 3);
        assert_eq!(a.errors["Unavailable"], 2);
        assert_eq!(a.errors["NotFound"], 1);
        assert_eq!(a.error_samples["Unavailable"], "first");
        let s = a.latency_summary();
        // Within the histogram's 0.1 % resolution.
        assert!((50_000..=51_100).contains(&s.p50_us), "{s:?}");
        assert!((100_000..=100_100).contains(&s.p99_us), "{s:?}");
        assert!((1_999_000..=2_002_000).contains(&s.max_us), "{s:?}");
    }

    #[test]
    fn empty_summary_is_zero() {
        let s = TaskStats::new().unwrap().latency_summary();
        assert_eq!(s.p50_us, 0);
        assert_eq!(s.max_us, 0);
    }
}
