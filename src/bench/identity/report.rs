//! What a `bench identity` run measured, and how it prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{IdentityScenario, IdentityTarget, IdentityTargetCheck, NewIdentity};
use crate::bench::driver::{render, write_endpoints, write_errors, write_window};
use crate::bench::stats::{LatencySummary, TaskStats};
use crate::bench::{format_micros, format_rate, group_thousands, OutputFormat};
use crate::client::Client;

/// The cluster the load ran against, as `DescribeCluster` told setup: the
/// floors are set for a given number of nodes, so the report says how
/// many there were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClusterShape {
    /// Voting members.
    pub voters: usize,
    /// Non-voting members (catching up).
    pub learners: usize,
    /// The leader when asked, if there was one.
    pub leader_id: Option<u64>,
}

impl ClusterShape {
    /// Asks `admin`'s node; `None` when it cannot say (the report then
    /// leaves the line out rather than failing a run over it).
    pub async fn of(admin: &Client) -> Option<ClusterShape> {
        match admin.describe_cluster().await {
            Ok(d) => Some(ClusterShape {
                voters: d.members.iter().filter(|m| m.role == "voter").count(),
                learners: d.members.iter().filter(|m| m.role != "voter").count(),
                leader_id: d.leader_id,
            }),
            Err(s) => {
                tracing::warn!(code = ?s.code(), message = %s.message(), "DescribeCluster failed");
                None
            }
        }
    }
}

/// One kind of call within a run (`authorize` has two: `authorize-allow`
/// and `authorize-deny`).
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    /// Calls of this kind that succeeded.
    pub ok: u64,
    /// Calls of this kind that failed.
    pub errors: u64,
    /// Latency of the successful ones.
    pub latency_us: LatencySummary,
}

/// The per-kind counts of a run, before the kinds are merged.
pub(super) fn kind_reports(by_kind: &BTreeMap<&'static str, TaskStats>) -> BTreeMap<String, KindReport> {
    by_kind
        .iter()
        .map(|(kind, s)| {
            (
                kind.to_string(),
                KindReport {
                    ok: s.ok,
                    errors: s.error_total(),
                    latency_us: s.latency_summary(),
                },
            )
        })
        .collect()
}

/// Everything a run measured, printable as a table or JSON.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityBenchReport {
    /// The flow that was loaded.
    pub scenario: IdentityScenario,
    /// What `getid-new` created (absent for the other scenarios).
    pub new_identity: Option<NewIdentity>,
    /// The api endpoints the load was spread over.
    pub endpoints: Vec<String>,
    /// HTTP/2 connections the callers shared.
    pub connections: usize,
    /// Concurrent callers, each with at most one call in flight.
    pub concurrency: usize,
    /// The cluster's members, when the first endpoint could say.
    pub cluster: Option<ClusterShape>,
    /// The user pool the bench created (absent for `getid-new`).
    pub user_pool_id: Option<String>,
    /// The identity pool the bench created.
    pub identity_pool_id: String,
    /// The authenticated role (absent for `getid-new`).
    pub role_arn: Option<String>,
    /// Signed-in users with an identity that the load cycled over.
    pub users: usize,
    /// Whether the user pool provider checked every login against the
    /// stored user.
    pub server_side_token_check: bool,
    /// Seconds setup took (pools, users, sign-ins, identities).
    pub setup_secs: f64,
    /// Seconds run before the measured window and not recorded.
    pub warmup_secs: f64,
    /// The measured window.
    pub duration_secs: f64,
    /// Calls that succeeded in the window (answers that passed every check).
    pub ok: u64,
    /// ok per second.
    pub throughput: f64,
    /// Calls that failed in the window, by gRPC code or bench check
    /// (`WrongIdentity`, `NoCredentials`, `WrongDecision`, ...).
    pub errors: BTreeMap<String, u64>,
    /// One message per error code.
    pub error_samples: BTreeMap<String, String>,
    /// Latency of the successful calls.
    pub latency_us: LatencySummary,
    /// The same counts split by kind of call.
    pub by_kind: BTreeMap<String, KindReport>,
    /// The scenario's target and whether the run met it.
    pub target: IdentityTargetCheck,
    /// Whether everything the bench created was deleted afterwards.
    pub cleaned_up: bool,
}

impl IdentityBenchReport {
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
        let l = &self.latency_us;
        // Writing to a String cannot fail.
        let _ = match self.new_identity {
            Some(n) => writeln!(
                s,
                "tessera bench identity: {} ({} identities)",
                self.scenario.as_str(),
                match n {
                    NewIdentity::Developer => "developer",
                    NewIdentity::Guest => "guest",
                }
            ),
            None => writeln!(s, "tessera bench identity: {}", self.scenario.as_str()),
        };
        write_endpoints(&mut s, &self.endpoints, self.concurrency, self.connections);
        if let Some(c) = &self.cluster {
            let _ = writeln!(
                s,
                "  cluster       {} voter{}{}{}",
                c.voters,
                if c.voters == 1 { "" } else { "s" },
                if c.learners > 0 {
                    format!(", {} learner{}", c.learners, if c.learners == 1 { "" } else { "s" })
                } else {
                    String::new()
                },
                c.leader_id.map(|id| format!(" (leader {id})")).unwrap_or_default()
            );
        }
        let _ = writeln!(
            s,
            "  pools         identity pool {}{}{}",
            self.identity_pool_id,
            self.user_pool_id
                .as_ref()
                .map(|p| format!(", user pool {p}"))
                .unwrap_or_default(),
            if self.cleaned_up { " (deleted)" } else { "" }
        );
        if self.users > 0 {
            let _ = writeln!(
                s,
                "  users         {} signed in, each with an identity; role {}{}",
                group_thousands(self.users as u64),
                self.role_arn.as_deref().unwrap_or("-"),
                if self.server_side_token_check {
                    "; server-side token check"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(s, "  setup         {:.1} s", self.setup_secs);
        write_window(&mut s, self.warmup_secs, self.duration_secs);
        let _ = writeln!(
            s,
            "  ok            {} ({}/s)",
            group_thousands(self.ok),
            format_rate(self.throughput)
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
        if self.by_kind.len() > 1 {
            for (kind, k) in &self.by_kind {
                let _ = writeln!(
                    s,
                    "    {kind:<18}{} ok, {} errors; p50 {}  p99 {}",
                    group_thousands(k.ok),
                    group_thousands(k.errors),
                    format_micros(k.latency_us.p50_us),
                    format_micros(k.latency_us.p99_us)
                );
            }
        }
        let verdict = if self.target.pass { "PASS" } else { "FAIL" };
        let _ = match self.target.target {
            IdentityTarget::Rate { per_sec, nodes } => {
                let cluster_note = match &self.cluster {
                    Some(c) if c.voters != nodes => format!("; this cluster has {}", c.voters),
                    _ => String::new(),
                };
                writeln!(
                    s,
                    "  target        throughput = {}/s (>= {}/s, set for {}{cluster_note})  {verdict}",
                    format_rate(self.target.value),
                    format_rate(per_sec),
                    if nodes == 1 {
                        "one node".to_string()
                    } else {
                        format!("{nodes} nodes")
                    },
                )
            }
            IdentityTarget::ReportOnly => writeln!(
                s,
                "  target        none; throughput = {}/s reported (passes without errors)  {verdict}",
                format_rate(self.target.value)
            ),
        };
        s
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn report(scenario: IdentityScenario) -> IdentityBenchReport {
        let mut allow = TaskStats::new().unwrap();
        allow.record_ok(Duration::from_micros(1_500));
        allow.record_error("WrongDecision", "expected Allow");
        let mut deny = TaskStats::new().unwrap();
        deny.record_ok(Duration::from_micros(900));
        let by_kind = BTreeMap::from([("authorize-allow", allow.clone()), ("authorize-deny", deny)]);
        let stats = allow;
        IdentityBenchReport {
            scenario,
            new_identity: (scenario == IdentityScenario::GetidNew).then_some(NewIdentity::Developer),
            endpoints: vec!["http://127.0.0.1:7900".into()],
            connections: 8,
            concurrency: 64,
            cluster: Some(ClusterShape {
                voters: 1,
                learners: 0,
                leader_id: Some(1),
            }),
            user_pool_id: Some("local_abc".into()),
            identity_pool_id: "local:0b7c".into(),
            role_arn: Some("arn:tessera:iam:::role/bench-1-authenticated".into()),
            users: 1_000,
            server_side_token_check: false,
            setup_secs: 12.34,
            warmup_secs: 2.0,
            duration_secs: 10.0,
            ok: 61_234,
            throughput: 6_123.4,
            target: scenario.target().check(6_123.4, 61_234, 1),
            latency_us: stats.latency_summary(),
            errors: stats.errors.clone(),
            error_samples: stats.error_samples.clone(),
            by_kind: if scenario == IdentityScenario::Authorize {
                kind_reports(&by_kind)
            } else {
                BTreeMap::new()
            },
            cleaned_up: true,
        }
    }

    #[test]
    fn table_shows_the_verdict_and_the_floor_s_cluster_size() {
        let t = report(IdentityScenario::Getid).render(OutputFormat::Table);
        assert!(t.starts_with("tessera bench identity: getid\n"), "{t}");
        assert!(
            t.contains("throughput = 6,123/s (>= 5,000/s, set for one node)  PASS"),
            "{t}"
        );
        assert!(t.contains("cluster       1 voter (leader 1)"), "{t}");
        assert!(t.contains("(deleted)"), "{t}");
        assert!(t.contains("errors        1 (WrongDecision 1)"), "{t}");
        assert!(t.contains("p50 1.50 ms"), "{t}");

        let t = report(IdentityScenario::GetidNew).render(OutputFormat::Table);
        assert!(
            t.starts_with("tessera bench identity: getid-new (developer identities)"),
            "{t}"
        );
        assert!(
            t.contains("(>= 3,000/s, set for 3 nodes; this cluster has 1)  PASS"),
            "{t}"
        );

        let t = report(IdentityScenario::Authorize).render(OutputFormat::Table);
        assert!(t.contains("target        none;"), "{t}");
        assert!(t.contains("FAIL"), "an authorize run with errors fails: {t}");
        assert!(t.contains("authorize-deny"), "{t}");
    }

    #[test]
    fn json_is_one_parseable_object() {
        let j = report(IdentityScenario::GetidNew).render(OutputFormat::Json);
        assert_eq!(j.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["scenario"], "getid-new");
        assert_eq!(v["new_identity"], "developer");
        assert_eq!(v["target"]["pass"], true);
        assert_eq!(v["target"]["target"]["kind"], "rate");
        assert_eq!(v["target"]["target"]["per_sec"], 3_000.0);
        assert_eq!(v["target"]["target"]["nodes"], 3);
        assert_eq!(v["cluster"]["voters"], 1);
        assert_eq!(v["errors"]["WrongDecision"], 1);

        let j = report(IdentityScenario::Authorize).render(OutputFormat::Json);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["target"]["target"]["kind"], "report_only");
        assert_eq!(v["by_kind"]["authorize-deny"]["ok"], 1);
        assert_eq!(v["new_identity"], serde_json::Value::Null);
    }
}
