//! The evidence of a "no": the longest linearizable prefix, the register
//! value after it, and why nothing can go next, in terms of the caller's
//! operations.

use std::fmt::Write as _;

use super::super::history::{EventType, Operation};
use super::model::{Kind, Problem};
use super::search::DeadEnd;

impl Problem {
    pub(super) fn describe(&self, input: &[Operation], id: usize) -> String {
        let Some(op) = self.ops.get(id) else {
            return format!("operation #{id}");
        };
        let Some(o) = input.get(op.source) else {
            return format!("operation #{id}");
        };
        let done = match o.completed_at {
            Some(t) if o.outcome != EventType::Info => format!("completed {t}"),
            _ => "outcome unknown".to_string(),
        };
        format!(
            "process {} {} {} (invoked {}, {done})",
            o.process,
            o.f,
            self.values.text(op.value),
            o.invoked_at
        )
    }

    pub(super) fn evidence(&self, input: &[Operation], dead: Option<&DeadEnd>) -> String {
        let mut s = format!(
            "no linearization of {} operations ({} with known outcome, {} of unknown outcome considered, {} dropped)",
            input.len(),
            self.required,
            self.ops.len() - self.required,
            self.dropped
        );
        let Some(d) = dead else { return s };
        let _ = write!(
            s,
            ". Longest linearizable prefix: {} operations, after which the register holds {}",
            d.depth,
            self.values.text(d.state)
        );
        if !d.tail.is_empty() {
            let _ = write!(s, "; its last {}:", d.tail.len());
            for &(id, hidden) in &d.tail {
                let note = if hidden {
                    " (overwritten before anyone read it)"
                } else {
                    ""
                };
                let _ = write!(s, "\n    {}{note}", self.describe(input, id));
            }
        }
        if let Some(id) = d.blocked {
            let deadline = self.ops.get(id).and_then(|op| op.deadline).unwrap_or(u64::MAX);
            let _ = write!(
                s,
                "\n  {} must take effect by {deadline}, but nothing can be placed next:",
                self.describe(input, id)
            );
        } else {
            let _ = write!(s, "\n  nothing can be placed next:");
        }
        for &id in &d.candidates {
            let op = self.ops[id];
            let why = if op.kind == Kind::Read && op.value != d.state {
                format!(
                    "reads {} but the register holds {}",
                    self.values.text(op.value),
                    self.values.text(d.state)
                )
            } else {
                "fits here, but no continuation after it succeeds".to_string()
            };
            let _ = write!(s, "\n    {}: {why}", self.describe(input, id));
        }
        s
    }
}
