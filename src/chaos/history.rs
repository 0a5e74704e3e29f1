//! The history of a chaos run, in Jepsen's shape: one JSON object per line,
//! an `invoke` when a client starts an operation and an `ok`, `fail` or
//! `info` when it learns the outcome. `info` means the outcome is unknown
//! (a timeout, a lost connection): the operation may or may not have taken
//! effect, and checkers must allow both.

use serde::{Deserialize, Serialize};

/// What a history event says about its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// A client started the operation.
    Invoke,
    /// It took effect.
    Ok,
    /// It certainly did not take effect.
    Fail,
    /// Its outcome is unknown (timeout, lost connection).
    Info,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The logical client that performed the operation. A process runs one
    /// operation at a time; after an `info` it takes a fresh process id,
    /// as in Jepsen, because its previous operation may still be pending.
    pub process: u64,
    /// `invoke`, `ok`, `fail` or `info`.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The operation: `sign_up`, `write`, `read`, `sign_in`, `refresh`, ...
    pub f: String,
    /// What the operation is about: a username, a register's user, ...
    pub key: String,
    /// The value written, or (on `ok` of a read) the value read; `null`
    /// when none.
    pub value: serde_json::Value,
    /// Nanoseconds since the start of the run (monotonic).
    pub time: u64,
    /// The node the client talked to.
    pub node: u64,
    /// Error text of a `fail` or `info`, for people reading the history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An operation: its invocation paired with its completion (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// The logical client that ran it.
    pub process: u64,
    /// The operation's name (`write`, `read`, ...).
    pub f: String,
    /// What it is about (a username, a register's user).
    pub key: String,
    /// The value of the invocation (what was written).
    pub input: serde_json::Value,
    /// `Ok`, `Fail` or `Info`; `Info` also for an invocation that never
    /// completed.
    pub outcome: EventType,
    /// The value of the completion (what was read).
    pub output: serde_json::Value,
    /// When it was invoked (ns since the start of the run).
    pub invoked_at: u64,
    /// `None` when the outcome is unknown: the operation may take effect at
    /// any time after its invocation.
    pub completed_at: Option<u64>,
    /// The node the client talked to.
    pub node: u64,
}

/// Pairs invocations with completions by process. An invocation without a
/// completion, or completed by `info`, is an operation of unknown outcome.
pub fn operations(events: &[Event]) -> Vec<Operation> {
    let mut open: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    let mut ops: Vec<Operation> = Vec::new();
    for e in events {
        match e.kind {
            EventType::Invoke => {
                open.insert(e.process, ops.len());
                ops.push(Operation {
                    process: e.process,
                    f: e.f.clone(),
                    key: e.key.clone(),
                    input: e.value.clone(),
                    outcome: EventType::Info,
                    output: serde_json::Value::Null,
                    invoked_at: e.time,
                    completed_at: None,
                    node: e.node,
                });
            }
            kind => {
                if let Some(i) = open.remove(&e.process) {
                    let op = &mut ops[i];
                    op.outcome = kind;
                    op.output = e.value.clone();
                    if kind != EventType::Info {
                        op.completed_at = Some(e.time);
                    }
                }
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(process: u64, kind: EventType, f: &str, value: serde_json::Value, time: u64) -> Event {
        Event {
            process,
            kind,
            f: f.into(),
            key: "k".into(),
            value,
            time,
            node: 1,
            error: None,
        }
    }

    #[test]
    fn events_round_trip_as_jepsen_json_and_pair_up() {
        let e = ev(3, EventType::Invoke, "write", json!("a"), 10);
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.contains(r#""type":"invoke""#), "{line}");
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);
        let ops = operations(&[
            ev(1, EventType::Invoke, "write", json!("a"), 1),
            ev(2, EventType::Invoke, "read", json!(null), 2),
            ev(1, EventType::Ok, "write", json!("a"), 3),
            ev(2, EventType::Info, "read", json!(null), 4),
            ev(3, EventType::Invoke, "write", json!("b"), 5),
        ]);
        assert_eq!(ops.len(), 3);
        assert_eq!((ops[0].outcome, ops[0].completed_at), (EventType::Ok, Some(3)));
        assert_eq!((ops[1].outcome, ops[1].completed_at), (EventType::Info, None));
        assert_eq!((ops[2].outcome, ops[2].completed_at), (EventType::Info, None));
    }
}
