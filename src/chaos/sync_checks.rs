//! Checkers of the sync workload ([`super::sync_load`]).
//!
//! * **sync-convergence**: after healing, every node holds the same data
//!   for each identity, and every device's copy equals it.
//! * **sync-acknowledged-writes**: every `sync_put` acknowledged `ok` is
//!   in that data with exactly its value (keys are never reused, so
//!   nothing may have overwritten it).
//! * **sync-order**: every device saw its identity's changes in order,
//!   each change's sequence number one more than the one before, with no
//!   gap and no duplicate, except across a reload the server announced
//!   (a resync resends from the store and must itself be gapless). The
//!   device client's own gap and duplicate counters must be zero too.

use std::collections::BTreeMap;

use super::checkers::CheckResult;
use super::history::{EventType, Operation};
use super::sync_load::{FinalSync, Seen};
use crate::sync::client::Stats;

/// What the checkers need of one device.
pub struct DeviceReport {
    /// Its name (`i<identity>d<device>`).
    pub name: String,
    /// Its identity.
    pub identity_id: String,
    /// Its copy at the end.
    pub copy: BTreeMap<String, String>,
    /// What it saw, in order.
    pub seen: Vec<Seen>,
    /// Its client's counters.
    pub stats: Stats,
}

/// The replicated data of each identity, when every node agrees on it.
pub fn agreed(finals: &FinalSync) -> Result<BTreeMap<String, BTreeMap<String, String>>, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for (identity, per_node) in finals {
        let mut first: Option<&BTreeMap<String, String>> = None;
        for (node, read) in per_node {
            match read {
                Err(e) => problems.push(format!("{identity} on node {node}: {e}")),
                Ok(values) => match first {
                    None => first = Some(values),
                    Some(f) if f != values => problems.push(format!(
                        "{identity}: node {node} holds {} records, another node {}",
                        values.len(),
                        f.len()
                    )),
                    Some(_) => {}
                },
            }
        }
        if let Some(f) = first {
            out.insert(identity.clone(), f.clone());
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Nodes agree, and every device's copy equals the agreed data.
pub fn convergence(finals: &FinalSync, devices: &[DeviceReport]) -> CheckResult {
    let agreed = match agreed(finals) {
        Ok(a) => a,
        Err(p) => {
            return CheckResult::new(
                "sync-convergence",
                false,
                format!(
                    "nodes disagree: {}",
                    p.into_iter().take(10).collect::<Vec<_>>().join("; ")
                ),
            )
        }
    };
    let mut problems = Vec::new();
    for d in devices {
        let want = agreed.get(&d.identity_id).cloned().unwrap_or_default();
        if d.copy != want {
            let missing = want.keys().filter(|k| !d.copy.contains_key(*k)).count();
            let extra = d.copy.keys().filter(|k| !want.contains_key(*k)).count();
            let differ = want
                .iter()
                .filter(|(k, v)| d.copy.get(*k).is_some_and(|c| c != *v))
                .count();
            problems.push(format!(
                "device {}: {missing} records missing, {extra} extra, {differ} with another value",
                d.name
            ));
        }
    }
    let records: usize = agreed.values().map(BTreeMap::len).sum();
    let evidence = if problems.is_empty() {
        format!(
            "{} identities, {records} records, the same on every node and in all {} device copies",
            agreed.len(),
            devices.len()
        )
    } else {
        problems.join("; ")
    };
    CheckResult::new("sync-convergence", problems.is_empty(), evidence)
}

/// Every acknowledged `sync_put` is in the replicated data with its value.
pub fn acknowledged_writes(ops: &[Operation], finals: &FinalSync) -> CheckResult {
    let agreed = agreed(finals).unwrap_or_default();
    let acked: Vec<&Operation> = ops
        .iter()
        .filter(|o| o.f == "sync_put" && o.outcome == EventType::Ok)
        .collect();
    let mut lost = Vec::new();
    for o in &acked {
        let Some((identity, key)) = o.key.split_once('/') else {
            lost.push(format!("{}: malformed key", o.key));
            continue;
        };
        let want = o.input.as_str().unwrap_or_default();
        match agreed.get(identity).and_then(|m| m.get(key)) {
            Some(v) if v == want => {}
            found => lost.push(format!("{}: wrote {want:?}, found {found:?}", o.key)),
        }
    }
    let evidence = if lost.is_empty() {
        format!("{} acknowledged sync writes all present with their values", acked.len())
    } else {
        format!(
            "{} of {} acknowledged sync writes missing or changed: {}",
            lost.len(),
            acked.len(),
            lost.iter().take(20).cloned().collect::<Vec<_>>().join("; ")
        )
    };
    CheckResult::new("sync-acknowledged-writes", lost.is_empty(), evidence)
}

/// The problems in what one device saw: a change whose number is not the
/// one after the previous, outside an announced reload.
pub fn order_problems(seen: &[Seen]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut last: Option<u64> = None;
    for (i, s) in seen.iter().enumerate() {
        match s {
            Seen::Reload(seq) => last = Some(*seq),
            Seen::Change(seq) => {
                if let Some(prev) = last {
                    if *seq != prev + 1 {
                        let what = if *seq <= prev { "duplicate" } else { "gap" };
                        problems.push(format!("{what} at event {i}: change {seq} after {prev}"));
                    }
                }
                last = Some(*seq);
            }
            Seen::Lagged(n) => {
                problems.push(format!(
                    "the event log lagged by {n} at event {i}: order not judged past it"
                ));
                last = None;
            }
            Seen::Session(_) | Seen::Resync => {}
        }
    }
    problems
}

/// Every device saw its changes in order with no gap or duplicate outside
/// announced reloads, and its client counted none.
pub fn order(devices: &[DeviceReport]) -> CheckResult {
    let mut problems = Vec::new();
    let (mut changes, mut sessions, mut reloads, mut resyncs) = (0usize, 0usize, 0usize, 0usize);
    for d in devices {
        for s in &d.seen {
            match s {
                Seen::Change(_) => changes += 1,
                Seen::Session(_) => sessions += 1,
                Seen::Reload(_) => reloads += 1,
                Seen::Resync => resyncs += 1,
                Seen::Lagged(_) => {}
            }
        }
        for p in order_problems(&d.seen).into_iter().take(5) {
            problems.push(format!("device {}: {p}", d.name));
        }
        if d.stats.gaps > 0 || d.stats.duplicates > 0 {
            problems.push(format!(
                "device {}: its client counted {} gaps and {} duplicates",
                d.name, d.stats.gaps, d.stats.duplicates
            ));
        }
    }
    let passed = problems.is_empty();
    let evidence = if passed {
        format!(
            "{} devices saw {changes} changes in order over {sessions} sessions ({reloads} reloads, {resyncs} resyncs announced)",
            devices.len()
        )
    } else {
        problems.into_iter().take(20).collect::<Vec<_>>().join("; ")
    };
    CheckResult::new("sync-order", passed, evidence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_allows_reloads_and_catches_gaps_and_duplicates() {
        use Seen::*;
        assert!(order_problems(&[Session(1), Reload(0), Change(1), Change(2), Session(2), Change(3)]).is_empty());
        assert!(order_problems(&[Reload(5), Change(6), Resync, Change(7), Reload(40), Change(41)]).is_empty());
        let gap = order_problems(&[Reload(0), Change(1), Change(3)]);
        assert_eq!(gap.len(), 1);
        assert!(gap[0].starts_with("gap"), "{gap:?}");
        let dup = order_problems(&[Reload(0), Change(1), Change(2), Change(2)]);
        assert!(dup[0].starts_with("duplicate"), "{dup:?}");
    }

    #[test]
    fn convergence_and_acknowledged_writes_see_a_lost_write() {
        let values: BTreeMap<String, String> = [("d-1".to_string(), "v1".to_string())].into();
        let mut finals = FinalSync::new();
        finals.entry("id".into()).or_default().insert(1, Ok(values.clone()));
        finals.entry("id".into()).or_default().insert(2, Ok(values.clone()));
        let ok = |key: &str, v: &str| Operation {
            process: 0,
            f: "sync_put".into(),
            key: format!("id/{key}"),
            input: serde_json::json!(v),
            output: serde_json::Value::Null,
            outcome: EventType::Ok,
            invoked_at: 0,
            completed_at: Some(1),
            node: 1,
        };
        assert!(acknowledged_writes(&[ok("d-1", "v1")], &finals).passed);
        assert!(!acknowledged_writes(&[ok("d-2", "v2")], &finals).passed);
        let device = |copy: BTreeMap<String, String>| DeviceReport {
            name: "i0d0".into(),
            identity_id: "id".into(),
            copy,
            seen: vec![],
            stats: Stats::default(),
        };
        assert!(convergence(&finals, &[device(values.clone())]).passed);
        assert!(!convergence(&finals, &[device(BTreeMap::new())]).passed);
        finals.entry("id".into()).or_default().insert(3, Ok(BTreeMap::new()));
        assert!(!convergence(&finals, &[device(values)]).passed, "nodes disagree");
    }
}
