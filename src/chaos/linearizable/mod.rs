//! Linearizability checking of one read/write register's history.
//!
//! This module owns the Wing–Gong search with Lowe's improvements (WGL) that
//! the chaos harness runs over each attribute register. The caller splits the
//! history per key (a register's linearizability does not depend on other
//! registers: P-compositionality) and hands one key's [`Operation`]s to
//! [`check_register`].
//!
//! What it must never do: run without bound (the memo table is capped by
//! [`SearchLimits`] and hitting the cap yields [`Verdict::Unknown`], never a
//! guess), recurse (histories have thousands of operations), or give a
//! verdict that depends on hash iteration order.
//!
//! # Semantics
//! * `write(v)` with outcome `ok` took effect exactly once, between its
//!   invocation and its completion.
//! * `write(v)` with outcome `fail` never took effect and is dropped.
//! * `write(v)` with outcome `info` (unknown) took effect at most once, at
//!   any time after its invocation (it has no deadline), or never.
//! * `read` with outcome `ok` observed `output` at its linearization point;
//!   reads that failed or timed out constrain nothing and are dropped.
//! * Values are compared as JSON values; `null` is the absent attribute.
//! * An invocation at the same instant as another operation's completion is
//!   treated as concurrent with it (the conservative choice for a checker).
//!
//! # Algorithm
//! The history becomes a doubly linked list of call and return entries,
//! sorted by time (Wing & Gong). The operations that may be linearized next
//! are those whose call entry comes before the first return entry; the first
//! return entry belongs to the pending operation with the earliest deadline
//! ("due"). Linearizing an operation applies it to the register model and
//! lifts its entries out of the list; backtracking puts them back. The
//! search is a depth-first loop over an explicit stack of levels, never
//! recursion. Lowe's memoization records every position reached (set of
//! linearized operations as a bitset, register value, and the two search
//! flags below); a position seen before cannot succeed where it failed, so
//! it is skipped. The memo table's size is what [`SearchLimits`] bounds.
//!
//! Plain WGL tries every pending operation at every step, which on a
//! register with twenty concurrent clients means every subset of the
//! concurrent writes in every order. The search prunes moves that no
//! linearization needs, each justified by an exchange argument (any
//! linearization can be rearranged into one that avoids the move):
//! * A read of the current value, when one may go next, is the only move:
//!   reads change nothing, so moving one earlier keeps any order valid.
//! * A write goes early only if a pending read wants its value, and then a
//!   read of it must come next (`must_read`). A write nobody reads before
//!   it is overwritten can be moved later, up to its deadline: it is placed
//!   when due, either visibly or *hidden* (leaving the register as it is,
//!   as if it had taken effect just before the last visible write). Hidden
//!   is only allowed when that spot respects real time: the last visible
//!   write and every read after it completed no earlier than this write's
//!   invocation (tracked as `cover`).
//! * Writes of unknown outcome get a call entry but no return entry: they
//!   are never due, so they never force a backtrack and may be left out.
//!   The search succeeds as soon as every operation with a known outcome is
//!   linearized. One is placed only right before a read of its value; of
//!   several already-invoked unknown writes of the same value only the
//!   first is tried (they are interchangeable); and once no pending read
//!   wants a value, the memo key forgets which of its unknown writes were
//!   used. Before searching, an unknown write is dropped when no successful
//!   read of its value completes after its invocation.
//! * A read of a value no write could have produced by its completion is
//!   reported up front, without searching.
//!
//! These rules are cross-checked in the tests against an exhaustive search
//! on many thousands of small random histories.
//!
//! # Layout
//! This file holds the interface ([`check_register`], [`SearchLimits`],
//! [`Verdict`]); `model` turns a history into the search's problem (the
//! operations, interned values, what is dropped); `search` is the checker
//! (the depth-first loop, its moves and memo); `entries` the dancing-links
//! entry list and the linearized-set bitsets the search walks and keys its
//! memo by; `report` the evidence a person reads when the answer is no.

mod entries;
mod model;
mod report;
mod search;
#[cfg(test)]
mod tests;

use serde_json::Value;

use super::history::Operation;
use model::Problem;

/// Bounds on one [`check_register`] call, so the search stops by itself even
/// on a pathological history (linearizability checking is NP-complete).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLimits {
    /// How many distinct search positions (linearized set, register value,
    /// flags) may be memoized before the search gives up with
    /// [`Verdict::Unknown`]. Each costs about a hundred bytes; the default
    /// (5 million) stays within about half a gigabyte and is far above what
    /// a history of a few thousand operations with unique written values
    /// needs (about one per operation when linearizable, a few hundred per
    /// operation to refute the worst we tested).
    pub max_states: usize,
}

impl Default for SearchLimits {
    fn default() -> Self {
        SearchLimits { max_states: 5_000_000 }
    }
}

/// The outcome of checking one register's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some total order of the operations respects real time and the
    /// register's sequential behaviour.
    Linearizable,
    /// No such order exists. `evidence` is for a person, over several
    /// lines: the longest linearizable prefix the search found (its length
    /// and last operations), the register value after it, and the
    /// operations that could go next with why each fails; or the read whose
    /// value no write explains.
    NotLinearizable {
        /// The explanation described above, for a person.
        evidence: String,
    },
    /// The search hit [`SearchLimits`] (or the history could not be
    /// interpreted) before reaching a verdict.
    Unknown {
        /// Which limit was hit, or what could not be interpreted.
        reason: String,
    },
}

impl Verdict {
    /// True only for [`Verdict::Linearizable`]; `Unknown` is not a pass.
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Checks whether one register's history is linearizable, starting from
/// `initial` (use `null` for an attribute that does not exist yet).
///
/// `ops` should all be about the same key, with `f` either `"write"` or
/// `"read"`; any other `f` yields [`Verdict::Unknown`], because silently
/// ignoring an operation could hide a violation.
pub fn check_register(ops: &[Operation], initial: &Value, limits: SearchLimits) -> Verdict {
    let problem = match Problem::build(ops, initial) {
        Ok(p) => p,
        Err(reason) => return Verdict::Unknown { reason },
    };
    problem.search(ops, limits)
}
