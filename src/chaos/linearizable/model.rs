//! The history model: a register's operations as the search sees them.
//! Failed writes and reads that observed nothing are dropped, values are
//! interned to integers, and writes of unknown outcome that no read can
//! observe are left out.

use std::collections::BTreeMap;

use serde_json::Value;

use super::super::history::{EventType, Operation};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Read,
    Write,
}

/// An operation that takes part in the search.
#[derive(Debug, Clone, Copy)]
pub(super) struct Op {
    pub(super) kind: Kind,
    /// The interned value written or read.
    pub(super) value: u32,
    pub(super) invoke: u64,
    /// When it must have taken effect by; `None` for a write of unknown
    /// outcome, which may take effect later or never.
    pub(super) deadline: Option<u64>,
    /// Index into the caller's operations, for evidence.
    pub(super) source: usize,
}

impl Op {
    /// The deadline, or "never" for an unknown outcome.
    pub(super) fn due(&self) -> u64 {
        self.deadline.unwrap_or(u64::MAX)
    }
}

/// Interns JSON values to small integers so the model state is a `u32`.
///
/// Keys are the compact JSON text: serde_json's `Map` is sorted (the
/// `preserve_order` feature is not enabled in this crate), so equal values
/// print identically and different values differently.
#[derive(Default)]
pub(super) struct Interner {
    pub(super) ids: BTreeMap<String, u32>,
    pub(super) texts: Vec<String>,
}

impl Interner {
    pub(super) fn intern(&mut self, v: &Value) -> u32 {
        let text = v.to_string();
        if let Some(&id) = self.ids.get(&text) {
            return id;
        }
        let id = u32::try_from(self.texts.len()).unwrap_or(u32::MAX);
        self.ids.insert(text.clone(), id);
        self.texts.push(text);
        id
    }

    pub(super) fn text(&self, id: u32) -> &str {
        self.texts.get(id as usize).map_or("?", String::as_str)
    }
}

/// A history prepared for the search.
pub(super) struct Problem {
    /// Operations with a known outcome first (ids `0..required`, sorted by
    /// invocation), then the kept writes of unknown outcome.
    pub(super) ops: Vec<Op>,
    pub(super) required: usize,
    pub(super) initial: u32,
    pub(super) values: Interner,
    /// For each interned value, the unknown-outcome writes of it.
    pub(super) unknown_writes_of: Vec<Vec<usize>>,
    /// Invocation times of the `ok` writes, sorted (see
    /// [`Problem::cover_class`]).
    pub(super) write_invokes: Vec<u64>,
    /// How many of the caller's operations were dropped (failed writes,
    /// failed or unknown reads, unknown writes that no read can observe).
    pub(super) dropped: usize,
}

impl Problem {
    pub(super) fn build(input: &[Operation], initial: &Value) -> Result<Problem, String> {
        let mut values = Interner::default();
        let initial = values.intern(initial);
        let mut required = Vec::new();
        let mut optional = Vec::new();
        let mut dropped = 0;
        for (source, o) in input.iter().enumerate() {
            if let Some(done) = o.completed_at {
                if done < o.invoked_at {
                    return Err(format!(
                        "operation {source} (process {}, {}) completes at {done} before its invocation at {}",
                        o.process, o.f, o.invoked_at
                    ));
                }
            }
            let kind = match o.f.as_str() {
                "write" => Kind::Write,
                "read" => Kind::Read,
                other => {
                    return Err(format!(
                        "operation {source} (process {}) has f = {other:?}; a register has only read and write",
                        o.process
                    ))
                }
            };
            match (kind, o.outcome) {
                (Kind::Write, EventType::Fail)
                | (Kind::Read, EventType::Fail | EventType::Info | EventType::Invoke) => {
                    dropped += 1;
                }
                (Kind::Write, EventType::Info | EventType::Invoke) => optional.push(Op {
                    kind,
                    value: values.intern(&o.input),
                    invoke: o.invoked_at,
                    deadline: None,
                    source,
                }),
                (Kind::Write, EventType::Ok) | (Kind::Read, EventType::Ok) => {
                    let value = if kind == Kind::Write { &o.input } else { &o.output };
                    required.push(Op {
                        kind,
                        value: values.intern(value),
                        invoke: o.invoked_at,
                        // An `ok` without a completion time cannot come out of
                        // `history::operations`; if it does, it must still
                        // take effect, at the latest at the end.
                        deadline: Some(o.completed_at.unwrap_or(u64::MAX)),
                        source,
                    });
                }
            }
        }

        // The latest completion of a successful read of each value: an
        // unknown write invoked after it can never be observed.
        let mut last_read: BTreeMap<u32, u64> = BTreeMap::new();
        for op in required.iter().filter(|op| op.kind == Kind::Read) {
            let at = op.deadline.unwrap_or(u64::MAX);
            let e = last_read.entry(op.value).or_insert(at);
            *e = (*e).max(at);
        }
        let before = optional.len();
        optional.retain(|op| last_read.get(&op.value).is_some_and(|&at| at >= op.invoke));
        dropped += before - optional.len();

        required.sort_by_key(|op| (op.invoke, op.source));
        optional.sort_by_key(|op| (op.invoke, op.source));
        let mut write_invokes: Vec<u64> = required
            .iter()
            .filter(|op| op.kind == Kind::Write)
            .map(|op| op.invoke)
            .collect();
        write_invokes.sort_unstable();
        let n_required = required.len();
        required.extend(optional);
        let mut unknown_writes_of = vec![Vec::new(); values.texts.len()];
        for (id, op) in required.iter().enumerate().skip(n_required) {
            if let Some(list) = unknown_writes_of.get_mut(op.value as usize) {
                list.push(id);
            }
        }
        Ok(Problem {
            ops: required,
            required: n_required,
            initial,
            values,
            unknown_writes_of,
            write_invokes,
            dropped,
        })
    }
}
