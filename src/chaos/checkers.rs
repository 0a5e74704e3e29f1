//! Checkers over a finished run: each returns pass or fail with the
//! evidence a person needs to see why.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::history::{operations, Event, EventType, Operation};
use super::nemesis::AppliedFault;

/// One checker's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// The checker's name in the summary (`convergence`, `token-validity`, ...).
    pub name: String,
    /// Whether the property held.
    pub passed: bool,
    /// What was checked (counts) and, on failure, the offending items.
    pub evidence: String,
}

impl CheckResult {
    /// A verdict of checker `name`.
    pub fn new(name: &str, passed: bool, evidence: impl Into<String>) -> Self {
        CheckResult {
            name: name.into(),
            passed,
            evidence: evidence.into(),
        }
    }
}

/// The final state of one username as each node reports it: node id to
/// the user's sub, or `None` when that node has no such user.
pub type FinalUsers = BTreeMap<String, BTreeMap<u64, Option<String>>>;

/// Every sign-up acknowledged `ok` exists at the end, with the sub it was
/// acknowledged with, on every node.
pub fn no_lost_writes(ops: &[Operation], finals: &FinalUsers) -> CheckResult {
    let acked: Vec<&Operation> = ops
        .iter()
        .filter(|o| o.f == "sign_up" && o.outcome == EventType::Ok)
        .collect();
    let mut lost = Vec::new();
    for o in &acked {
        let sub = o.output.as_str().unwrap_or_default();
        match finals.get(&o.key) {
            None => lost.push(format!("{}: not checked", o.key)),
            Some(per_node) => {
                for (node, found) in per_node {
                    if found.as_deref() != Some(sub) {
                        lost.push(format!("{} (sub {sub}) on node {node}: found {found:?}", o.key));
                    }
                }
            }
        }
    }
    let evidence = if lost.is_empty() {
        format!("{} acknowledged sign-ups all present on every node", acked.len())
    } else {
        format!(
            "{} of {} acknowledged sign-ups missing or different: {}",
            lost.len(),
            acked.len(),
            lost.iter().take(20).cloned().collect::<Vec<_>>().join("; ")
        )
    };
    CheckResult::new("no-lost-acknowledged-writes", lost.is_empty(), evidence)
}

/// At most one sign-up per username succeeds, and a contended username ends
/// up with exactly one user when any attempt succeeded.
pub fn uniqueness(ops: &[Operation], finals: &FinalUsers) -> CheckResult {
    let mut by_name: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for o in ops.iter().filter(|o| o.f == "sign_up") {
        by_name.entry(o.key.as_str()).or_default().push(o);
    }
    let mut problems = Vec::new();
    let mut contended = 0;
    let mut contended_attempts = 0;
    for (name, attempts) in &by_name {
        let oks: Vec<&&Operation> = attempts.iter().filter(|o| o.outcome == EventType::Ok).collect();
        if name.starts_with("c-") && attempts.len() >= 2 {
            contended += 1;
            contended_attempts += attempts.len();
        }
        if oks.len() > 1 {
            problems.push(format!("{name}: {} sign-ups acknowledged", oks.len()));
        }
        let subs: BTreeSet<Option<String>> = finals
            .get(*name)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        if subs.len() > 1 {
            problems.push(format!("{name}: nodes disagree on the user: {subs:?}"));
        }
    }
    let evidence = if problems.is_empty() {
        format!(
            "{} usernames, {contended} contended ({contended_attempts} attempts): never more than one success",
            by_name.len()
        )
    } else {
        problems.iter().take(20).cloned().collect::<Vec<_>>().join("; ")
    };
    CheckResult::new("uniqueness", problems.is_empty(), evidence)
}

/// Exactly one identity per login: every acknowledged `GetId` of a login
/// answered the same identity id, and after healing every node answers that
/// id too (so no acknowledged identity was lost, and no node made a second).
pub fn one_identity_per_login(ops: &[Operation], finals: &FinalUsers) -> CheckResult {
    let mut by_login: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut attempts = 0usize;
    for o in ops.iter().filter(|o| o.f == "get_id") {
        attempts += 1;
        if o.outcome == EventType::Ok {
            if let Some(id) = o.output.as_str() {
                by_login.entry(o.key.as_str()).or_default().insert(id.to_string());
            }
        }
    }
    let mut problems = Vec::new();
    for (login, ids) in &by_login {
        if ids.len() > 1 {
            problems.push(format!("{login}: GetId answered {} identities: {ids:?}", ids.len()));
        }
        let on_nodes: BTreeSet<Option<String>> = finals
            .get(*login)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        let acked: BTreeSet<Option<String>> = ids.iter().cloned().map(Some).collect();
        if on_nodes != acked {
            problems.push(format!(
                "{login}: acknowledged {ids:?}, nodes answer {:?}",
                finals.get(*login)
            ));
        }
    }
    let evidence = if problems.is_empty() {
        format!(
            "{} logins, {attempts} GetId calls: one identity each, the same on every node",
            by_login.len()
        )
    } else {
        problems.iter().take(20).cloned().collect::<Vec<_>>().join("; ")
    };
    CheckResult::new("one-identity-per-login", problems.is_empty(), evidence)
}

/// Every register's history is linearizable.
pub fn linearizable_registers(ops: &[Operation], initial: &Value) -> CheckResult {
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for o in ops.iter().filter(|o| o.f == "write" || o.f == "read") {
        by_key.entry(o.key.as_str()).or_default().push(o.clone());
    }
    let mut lines = Vec::new();
    let mut passed = true;
    for (key, history) in &by_key {
        let verdict = super::linearizable::check_register(history, initial, Default::default());
        match verdict {
            super::linearizable::Verdict::Linearizable => {
                lines.push(format!("{key}: {} ops linearizable", history.len()))
            }
            super::linearizable::Verdict::NotLinearizable { evidence } => {
                passed = false;
                lines.push(format!("{key}: NOT linearizable: {evidence}"));
            }
            super::linearizable::Verdict::Unknown { reason } => {
                passed = false;
                lines.push(format!("{key}: undecided ({reason})"));
            }
        }
    }
    CheckResult::new("linearizable-registers", passed, lines.join("; "))
}

/// What a node reports about its replicated state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeState {
    /// The node reporting.
    pub node_id: u64,
    /// The last log index it applied.
    pub applied_index: u64,
    /// Hex digest of its replicated state; equal on nodes that hold the same state.
    pub digest: String,
    /// Users per pool, in pool id order.
    pub pools: Vec<(String, u64)>,
}

/// All nodes applied the same entries and hold the same state.
pub fn convergence(states: &[NodeState]) -> CheckResult {
    let digests: BTreeSet<&str> = states.iter().map(|s| s.digest.as_str()).collect();
    let counts: BTreeSet<&Vec<(String, u64)>> = states.iter().map(|s| &s.pools).collect();
    let applied: BTreeSet<u64> = states.iter().map(|s| s.applied_index).collect();
    let passed = !states.is_empty() && digests.len() == 1 && counts.len() == 1;
    let per_node: Vec<String> = states
        .iter()
        .map(|s| {
            format!(
                "node {} applied {} digest {} users {:?}",
                s.node_id,
                s.applied_index,
                &s.digest[..s.digest.len().min(12)],
                s.pools.iter().map(|p| p.1).collect::<Vec<_>>()
            )
        })
        .collect();
    let head = if passed {
        "every node holds the same state".to_string()
    } else if applied.len() > 1 {
        "nodes differ (and applied different indexes)".to_string()
    } else {
        "nodes differ at the same applied index".to_string()
    };
    CheckResult::new("convergence", passed, format!("{head}: {}", per_node.join("; ")))
}

/// Tokens minted during the run verify on every node afterwards.
pub fn token_validity(checked: usize, failures: &[String]) -> CheckResult {
    let passed = failures.is_empty();
    let evidence = if passed {
        format!("{checked} token checks (token x node) all passed")
    } else {
        format!(
            "{} of {checked} token checks failed: {}",
            failures.len(),
            failures.iter().take(10).cloned().collect::<Vec<_>>().join("; ")
        )
    };
    CheckResult::new("token-validity", passed, evidence)
}

/// Per-second throughput and errors, and recovery after each fault.
#[derive(Debug, Clone, Serialize)]
pub struct Availability {
    /// (second, ok, fail, info) for every second of the run.
    pub per_second: Vec<(u64, u64, u64, u64)>,
    /// For each fault: its description, start and heal (ms), and the time
    /// from the fault's start and from its heal to the first successful
    /// write after it (ms), if any.
    pub recoveries: Vec<Recovery>,
    /// The longest heal-to-first-write time over all faults (ms); `None` when no fault saw a write after healing.
    pub worst_recovery_after_heal_ms: Option<u64>,
}

/// How writes recovered from one fault.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// The fault's description.
    pub fault: String,
    /// When the fault started (ms since the run began).
    pub start_ms: u64,
    /// When it was healed (ms since the run began).
    pub healed_ms: u64,
    /// From the fault's start to the first successful write after it (ms), if any.
    pub first_write_after_start_ms: Option<u64>,
    /// From the heal to the first successful write after it (ms), if any.
    pub first_write_after_heal_ms: Option<u64>,
}

/// Computes availability from the events and the applied faults.
pub fn availability(events: &[Event], faults: &[(AppliedFault, u64, u64)]) -> Availability {
    let mut per: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
    let end = events.last().map(|e| e.time / 1_000_000_000).unwrap_or(0);
    for s in 0..=end {
        per.insert(s, (0, 0, 0));
    }
    let mut write_oks: Vec<u64> = Vec::new();
    for e in events {
        let s = per.entry(e.time / 1_000_000_000).or_default();
        match e.kind {
            EventType::Ok => s.0 += 1,
            EventType::Fail => s.1 += 1,
            EventType::Info => s.2 += 1,
            EventType::Invoke => {}
        }
        if e.kind == EventType::Ok && (e.f == "sign_up" || e.f == "write") {
            write_oks.push(e.time / 1_000_000);
        }
    }
    let first_after = |t: u64| write_oks.iter().find(|w| **w >= t).map(|w| w - t);
    let recoveries: Vec<Recovery> = faults
        .iter()
        .map(|(f, start, healed)| Recovery {
            fault: f.description.clone(),
            start_ms: *start,
            healed_ms: *healed,
            first_write_after_start_ms: first_after(*start),
            first_write_after_heal_ms: first_after(*healed),
        })
        .collect();
    let worst = recoveries.iter().filter_map(|r| r.first_write_after_heal_ms).max();
    Availability {
        per_second: per.into_iter().map(|(s, (o, f, i))| (s, o, f, i)).collect(),
        recoveries,
        worst_recovery_after_heal_ms: worst,
    }
}

/// Pairs the history's events into operations (re-exported for callers).
pub fn ops(events: &[Event]) -> Vec<Operation> {
    operations(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(f: &str, key: &str, outcome: EventType, output: Value) -> Operation {
        Operation {
            process: 1,
            f: f.into(),
            key: key.into(),
            input: Value::Null,
            outcome,
            output,
            invoked_at: 0,
            completed_at: Some(1),
            node: 1,
        }
    }

    #[test]
    fn two_identities_for_one_login_or_a_lost_one_fail_the_identity_check() {
        let finals = |pairs: &[(&str, Option<&str>)]| -> FinalUsers {
            pairs
                .iter()
                .map(|(login, id)| {
                    let on_nodes = (1..=3).map(|n| (n, id.map(str::to_string))).collect();
                    (login.to_string(), on_nodes)
                })
                .collect()
        };
        let good = vec![
            op("get_id", "i-1", EventType::Ok, json!("local:a")),
            op("get_id", "i-1", EventType::Ok, json!("local:a")),
            op("get_id", "i-2", EventType::Info, Value::Null),
        ];
        assert!(one_identity_per_login(&good, &finals(&[("i-1", Some("local:a"))])).passed);
        // Two clients were told different identities for one login.
        let mut split = good.clone();
        split.push(op("get_id", "i-1", EventType::Ok, json!("local:b")));
        assert!(!one_identity_per_login(&split, &finals(&[("i-1", Some("local:a"))])).passed);
        // An acknowledged identity no node knows after healing.
        assert!(!one_identity_per_login(&good, &finals(&[("i-1", Some("local:c"))])).passed);
        assert!(!one_identity_per_login(&good, &finals(&[("i-1", None)])).passed);
    }

    #[test]
    fn lost_and_duplicated_sign_ups_fail_their_checkers() {
        let ops = vec![
            op("sign_up", "u-1", EventType::Ok, json!("s1")),
            op("sign_up", "c-1", EventType::Ok, json!("s2")),
            op("sign_up", "c-1", EventType::Ok, json!("s3")),
        ];
        let mut finals = FinalUsers::new();
        finals.insert("u-1".into(), [(1, Some("s1".to_string())), (2, None)].into());
        finals.insert(
            "c-1".into(),
            [(1, Some("s2".to_string())), (2, Some("s2".to_string()))].into(),
        );
        let lost = no_lost_writes(&ops, &finals);
        assert!(!lost.passed && lost.evidence.contains("u-1"), "{}", lost.evidence);
        let unique = uniqueness(&ops, &finals);
        assert!(
            !unique.passed && unique.evidence.contains("c-1: 2 sign-ups"),
            "{}",
            unique.evidence
        );
        finals.insert(
            "u-1".into(),
            [(1, Some("s1".to_string())), (2, Some("s1".to_string()))].into(),
        );
        let ok_ops = &ops[..2];
        assert!(no_lost_writes(ok_ops, &finals).passed);
        assert!(uniqueness(ok_ops, &finals).passed);
    }

    #[test]
    fn convergence_needs_equal_digests_and_counts() {
        let s = |id, d: &str, n| NodeState {
            node_id: id,
            applied_index: 10,
            digest: d.into(),
            pools: vec![("p".into(), n)],
        };
        assert!(convergence(&[s(1, "aa", 3), s(2, "aa", 3)]).passed);
        assert!(!convergence(&[s(1, "aa", 3), s(2, "bb", 3)]).passed);
        assert!(!convergence(&[s(1, "aa", 3), s(2, "aa", 4)]).passed);
        assert!(!convergence(&[]).passed);
    }
}
