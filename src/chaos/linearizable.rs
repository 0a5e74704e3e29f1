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
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::history::{EventType, Operation};

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
    NotLinearizable { evidence: String },
    /// The search hit [`SearchLimits`] (or the history could not be
    /// interpreted) before reaching a verdict.
    Unknown { reason: String },
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

/// An operation that takes part in the search.
#[derive(Debug, Clone, Copy)]
struct Op {
    kind: Kind,
    /// The interned value written or read.
    value: u32,
    invoke: u64,
    /// When it must have taken effect by; `None` for a write of unknown
    /// outcome, which may take effect later or never.
    deadline: Option<u64>,
    /// Index into the caller's operations, for evidence.
    source: usize,
}

impl Op {
    /// The deadline, or "never" for an unknown outcome.
    fn due(&self) -> u64 {
        self.deadline.unwrap_or(u64::MAX)
    }
}

/// Interns JSON values to small integers so the model state is a `u32`.
///
/// Keys are the compact JSON text: serde_json's `Map` is sorted (the
/// `preserve_order` feature is not enabled in this crate), so equal values
/// print identically and different values differently.
#[derive(Default)]
struct Interner {
    ids: BTreeMap<String, u32>,
    texts: Vec<String>,
}

impl Interner {
    fn intern(&mut self, v: &Value) -> u32 {
        let text = v.to_string();
        if let Some(&id) = self.ids.get(&text) {
            return id;
        }
        let id = u32::try_from(self.texts.len()).unwrap_or(u32::MAX);
        self.ids.insert(text.clone(), id);
        self.texts.push(text);
        id
    }

    fn text(&self, id: u32) -> &str {
        self.texts.get(id as usize).map_or("?", String::as_str)
    }
}

/// A history prepared for the search.
struct Problem {
    /// Operations with a known outcome first (ids `0..required`, sorted by
    /// invocation), then the kept writes of unknown outcome.
    ops: Vec<Op>,
    required: usize,
    initial: u32,
    values: Interner,
    /// For each interned value, the unknown-outcome writes of it.
    unknown_writes_of: Vec<Vec<usize>>,
    /// Invocation times of the `ok` writes, sorted (see
    /// [`Problem::cover_class`]).
    write_invokes: Vec<u64>,
    /// How many of the caller's operations were dropped (failed writes,
    /// failed or unknown reads, unknown writes that no read can observe).
    dropped: usize,
}

impl Problem {
    fn build(input: &[Operation], initial: &Value) -> Result<Problem, String> {
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

    fn describe(&self, input: &[Operation], id: usize) -> String {
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

    fn search(&self, input: &[Operation], limits: SearchLimits) -> Verdict {
        if self.required == 0 {
            return Verdict::Linearizable;
        }
        if let Some(id) = self.unexplained_read() {
            return Verdict::NotLinearizable {
                evidence: format!(
                    "{} returned a value that no write could have put there: every write of it (failed ones aside) \
                     began after the read completed, or there is none",
                    self.describe(input, id)
                ),
            };
        }
        let mut list = EntryList::new(&self.ops);
        let mut lin = Linearized::new(self.required, self.ops.len() - self.required);
        // Reads not yet linearized, per value: once none is left for a
        // value, whether its unknown writes were used no longer matters,
        // and the memo key forgets it (see `Linearized::live`).
        let mut unread = vec![0usize; self.values.texts.len()];
        for op in self.ops.iter().filter(|op| op.kind == Kind::Read) {
            unread[op.value as usize] += 1;
        }
        #[allow(clippy::disallowed_types)]
        // Only membership is ever asked of this set, never its iteration
        // order, so the verdict is deterministic; hashing is several times
        // faster than a BTreeSet of word slices on large histories.
        let mut seen: std::collections::HashSet<Box<[u64]>> = std::collections::HashSet::new();
        let mut remaining = self.required;
        let mut deepest: Option<DeadEnd> = None;
        let mut max_depth = 0;
        let mut levels = vec![Level {
            state: self.initial,
            must_read: false,
            cover: None,
            moves: self.moves(&list, self.initial, false, None),
            next: 0,
            chosen: None,
        }];
        loop {
            let depth = levels.len().saturating_sub(1);
            let Some(level) = levels.last_mut() else {
                return Verdict::NotLinearizable {
                    evidence: self.evidence(input, deepest.as_ref()),
                };
            };
            if let Some((node, placement)) = level.chosen.take() {
                let id = list.op[node];
                lin.clear(id);
                list.unlift(node);
                if id < self.required {
                    remaining += 1;
                }
                if placement == Placement::Read {
                    self.count_read(&mut unread, &mut lin, self.ops[id].value, true);
                }
            }
            let mut descend = None;
            while let Some(&(node, placement)) = level.moves.get(level.next) {
                level.next += 1;
                let id = list.op[node];
                let op = self.ops[id];
                let after = match placement {
                    Placement::Read => (level.state, false, level.cover.map(|g| g.min(op.due()))),
                    Placement::Write { must_read } => (op.value, must_read, Some(op.due())),
                    Placement::Hidden => (level.state, false, level.cover),
                };
                if seen.len() >= limits.max_states {
                    return Verdict::Unknown {
                        reason: format!(
                            "search stopped after {} memoized states (limit {}) without a verdict; {} operations \
                             ({} with known outcome), deepest linearizable prefix {max_depth} operations",
                            seen.len(),
                            limits.max_states,
                            self.ops.len(),
                            self.required,
                        ),
                    };
                }
                lin.set(id);
                if placement == Placement::Read {
                    self.count_read(&mut unread, &mut lin, op.value, false);
                }
                if seen.insert(lin.key(after.0, after.1, self.cover_class(after.2))) {
                    list.lift(node);
                    if id < self.required {
                        remaining -= 1;
                    }
                    level.chosen = Some((node, placement));
                    descend = Some(after);
                    break;
                }
                lin.clear(id);
                if placement == Placement::Read {
                    self.count_read(&mut unread, &mut lin, op.value, true);
                }
            }
            match descend {
                Some((state, must_read, cover)) => {
                    if remaining == 0 {
                        return Verdict::Linearizable;
                    }
                    max_depth = max_depth.max(depth + 1);
                    let moves = self.moves(&list, state, must_read, cover);
                    levels.push(Level {
                        state,
                        must_read,
                        cover,
                        moves,
                        next: 0,
                        chosen: None,
                    });
                }
                None => {
                    // Every move from here fails (or was refuted before).
                    // Right after a write that must be read next, that only
                    // says the write does not go there: evidence skips it.
                    if !level.must_read && deepest.as_ref().is_none_or(|d| depth > d.depth) {
                        let state = level.state;
                        // Only the tail is shown, so only the tail is copied.
                        let tail = levels[depth.saturating_sub(DeadEnd::SHOWN)..depth]
                            .iter()
                            .filter_map(|l| l.chosen)
                            .map(|(n, p)| (list.op[n], p == Placement::Hidden))
                            .collect();
                        deepest = Some(DeadEnd::capture(&list, depth, tail, state));
                    }
                    levels.pop();
                }
            }
        }
    }

    /// Counts a read of `value` as linearized (`undo` false) or not any
    /// more, and marks the unknown writes of `value` live while some read of
    /// it is still to be linearized.
    fn count_read(&self, unread: &mut [usize], lin: &mut Linearized, value: u32, undo: bool) {
        let Some(n) = unread.get_mut(value as usize) else {
            return;
        };
        let was = *n;
        *n = if undo { was + 1 } else { was.saturating_sub(1) };
        if (was == 0) != (*n == 0) {
            for &id in self
                .unknown_writes_of
                .get(value as usize)
                .map_or(&[][..], Vec::as_slice)
            {
                lin.set_live(id, *n > 0);
            }
        }
    }

    /// A read whose value no write can explain: not the initial value, and
    /// no write of it (failed ones aside) invoked before the read completed.
    /// Found up front because the search would otherwise have to exhaust
    /// every order of everything before it to prove the same.
    fn unexplained_read(&self) -> Option<usize> {
        let mut first_write: BTreeMap<u32, u64> = BTreeMap::new();
        for op in self.ops.iter().filter(|op| op.kind == Kind::Write) {
            let e = first_write.entry(op.value).or_insert(op.invoke);
            *e = (*e).min(op.invoke);
        }
        self.ops.iter().position(|op| {
            op.kind == Kind::Read
                && op.value != self.initial
                && first_write.get(&op.value).is_none_or(|&at| at > op.due())
        })
    }

    /// The memo-key form of a level's `cover`: how many `ok` writes were
    /// invoked by then. Only comparisons with those invocation times are ever
    /// made of `cover`, so levels alike in this number are alike.
    fn cover_class(&self, cover: Option<u64>) -> u64 {
        cover.map_or(0, |g| self.write_invokes.partition_point(|&t| t <= g) as u64)
    }

    /// The moves worth trying from a position, best first. Only operations
    /// whose call entry comes before the first return entry (the earliest
    /// deadline still pending, "due") may go next.
    ///
    /// * A read of the current value is the only move when there is one:
    ///   moving such a read to the front of any continuation keeps it valid
    ///   (reads change nothing, and every pending deadline is after the
    ///   read's invocation), so the other moves need no trying.
    /// * Right after a write placed to be read, only such a read may follow.
    /// * A write placed before it is due must be read next (`must_read`):
    ///   only writes whose value a pending read wants are tried early.
    /// * The due write (if the earliest deadline is a write's) is placed
    ///   visibly, or hidden if the cover allows (see [`Placement::Hidden`]).
    ///
    /// Any linearization can be rearranged into this shape: a write that
    /// nobody reads before the next write can be moved later, up to its
    /// deadline, and then stands hidden right before that next write. This
    /// is what keeps the search from trying every subset of concurrent
    /// writes in every order.
    fn moves(&self, list: &EntryList, state: u32, must_read: bool, cover: Option<u64>) -> Vec<(usize, Placement)> {
        let mut window = Vec::new();
        let mut n = list.next[HEAD];
        while n != NIL && list.is_call[n] {
            window.push(n);
            n = list.next[n];
        }
        let op = |node: usize| self.ops[list.op[node]];
        if let Some(&read) = window
            .iter()
            .find(|&&c| op(c).kind == Kind::Read && op(c).value == state)
        {
            return vec![(read, Placement::Read)];
        }
        if must_read {
            return Vec::new();
        }
        let due = (n != NIL).then(|| list.op[n]);
        let due_read = due
            .map(|id| self.ops[id])
            .filter(|o| o.kind == Kind::Read)
            .map(|o| o.value);
        let mut wanted: Vec<u32> = window
            .iter()
            .map(|&c| op(c))
            .filter(|o| o.kind == Kind::Read)
            .map(|o| o.value)
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut moves: Vec<(u8, usize, Placement)> = Vec::new();
        // Unknown writes of the same value already invoked are
        // interchangeable (no deadlines), so only the first is tried.
        let mut unknown_tried: Vec<u32> = Vec::new();
        for &c in &window {
            let o = op(c);
            if o.kind != Kind::Write {
                continue;
            }
            if o.deadline.is_none() {
                if unknown_tried.contains(&o.value) {
                    continue;
                }
                unknown_tried.push(o.value);
            }
            let needed = wanted.binary_search(&o.value).is_ok();
            if Some(list.op[c]) == due {
                let visible = (1, c, Placement::Write { must_read: false });
                let hidden = cover
                    .is_some_and(|g| g >= o.invoke)
                    .then_some((1, c, Placement::Hidden));
                if needed {
                    moves.push(visible);
                    moves.extend(hidden);
                } else {
                    moves.extend(hidden);
                    moves.push(visible);
                }
            } else if needed {
                let rank = if Some(o.value) == due_read { 0 } else { 2 };
                moves.push((rank, c, Placement::Write { must_read: true }));
            }
        }
        // Stable: ties keep list (invocation) order.
        moves.sort_by_key(|&(rank, _, _)| rank);
        moves.into_iter().map(|(_, c, p)| (c, p)).collect()
    }

    fn evidence(&self, input: &[Operation], dead: Option<&DeadEnd>) -> String {
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

/// How a move places its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// A read of the current value.
    Read,
    /// A write that sets the register; with `must_read`, the next move must
    /// be a read of its value.
    Write { must_read: bool },
    /// An `ok` write, at its deadline, that took effect unobserved: placed
    /// right before the last visible write, which overwrote it at once. The
    /// register keeps its value. Allowed only when that position respects
    /// real time, i.e. when the last visible write and every read after it
    /// completed no earlier than this write's invocation (the level's
    /// `cover`).
    Hidden,
}

/// One step of the depth-first search: the register before it, the moves
/// from here in the order to try them, and the move being explored below.
struct Level {
    state: u32,
    /// Set right after a write placed before its deadline: the next
    /// operation must be a read of its value (else the write would have
    /// been placed at its deadline or hidden, see [`Problem::moves`]).
    must_read: bool,
    /// The earliest completion among the last visible write and the reads
    /// placed after it; `None` before the first visible write. A due write
    /// invoked no later than this can be hidden.
    cover: Option<u64>,
    moves: Vec<(usize, Placement)>,
    next: usize,
    chosen: Option<(usize, Placement)>,
}

/// The deepest point where the search got stuck, kept for the evidence.
struct DeadEnd {
    /// How many operations the prefix has.
    depth: usize,
    /// Its last operations (ids, in linearization order, and whether each
    /// was hidden).
    tail: Vec<(usize, bool)>,
    /// The register value after the prefix.
    state: u32,
    /// The pending operation with the earliest deadline, if any.
    blocked: Option<usize>,
    /// The operations that were candidates to go next.
    candidates: Vec<usize>,
}

impl DeadEnd {
    /// How many operations of the prefix the evidence shows.
    const SHOWN: usize = 5;

    fn capture(list: &EntryList, depth: usize, tail: Vec<(usize, bool)>, state: u32) -> DeadEnd {
        let mut candidates = Vec::new();
        let mut n = list.next[HEAD];
        while n != NIL && list.is_call[n] {
            candidates.push(list.op[n]);
            n = list.next[n];
        }
        DeadEnd {
            depth,
            tail,
            state,
            blocked: (n != NIL).then(|| list.op[n]),
            candidates,
        }
    }
}

const HEAD: usize = 0;
const NIL: usize = usize::MAX;

/// The call/return entries as a doubly linked list over arrays (node 0 is
/// the head sentinel), so lifting an operation out and putting it back are
/// O(1) and exactly undo each other ("dancing links").
struct EntryList {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The operation of each node.
    op: Vec<usize>,
    is_call: Vec<bool>,
    /// For a call node, its return node (NIL for unknown outcomes).
    ret: Vec<usize>,
}

impl EntryList {
    fn new(ops: &[Op]) -> EntryList {
        // (time, 0 = call / 1 = return, op id): at equal times calls come
        // first, so an invocation at another operation's completion instant
        // counts as concurrent with it.
        let mut entries: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
        for (id, op) in ops.iter().enumerate() {
            entries.push((op.invoke, 0, id));
            if let Some(d) = op.deadline {
                entries.push((d, 1, id));
            }
        }
        entries.sort_unstable();
        let n = entries.len() + 1;
        let mut list = EntryList {
            next: (1..=n).map(|i| if i == n { NIL } else { i }).collect(),
            prev: (0..n).map(|i| i.wrapping_sub(1)).collect(),
            op: vec![0; n],
            is_call: vec![false; n],
            ret: vec![NIL; n],
        };
        let mut call_node = vec![NIL; ops.len()];
        for (i, &(_, kind, id)) in entries.iter().enumerate() {
            let node = i + 1;
            list.op[node] = id;
            if kind == 0 {
                list.is_call[node] = true;
                call_node[id] = node;
            } else if let Some(&c) = call_node.get(id) {
                if c != NIL {
                    list.ret[c] = node;
                }
            }
        }
        list
    }

    fn unlink(&mut self, n: usize) {
        let (p, x) = (self.prev[n], self.next[n]);
        self.next[p] = x;
        if x != NIL {
            self.prev[x] = p;
        }
    }

    fn relink(&mut self, n: usize) {
        let (p, x) = (self.prev[n], self.next[n]);
        self.next[p] = n;
        if x != NIL {
            self.prev[x] = n;
        }
    }

    /// Removes a call node and its return node.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        let r = self.ret[call];
        if r != NIL {
            self.unlink(r);
        }
    }

    /// Undoes [`EntryList::lift`] (in reverse order, as dancing links need).
    fn unlift(&mut self, call: usize) {
        let r = self.ret[call];
        if r != NIL {
            self.relink(r);
        }
        self.relink(call);
    }
}

/// The set of linearized operations as two bitsets (known outcomes, then
/// unknown ones), tracking the leading full words and the last non-zero word
/// of the first so the memo key stays short.
///
/// Operations are numbered by invocation time and the search can only have
/// linearized operations invoked before the earliest pending deadline, so
/// the known-outcome bitset is "all ones, then a window about as wide as the
/// concurrency, then zeros". The key stores only the window, which keeps a
/// state at a few dozen bytes instead of one bit per operation.
struct Linearized {
    known: Vec<u64>,
    n_known: usize,
    unknown: Vec<u64>,
    /// Which unknown-outcome writes the memo key distinguishes: those of a
    /// value some pending read may still observe. For the others, used or
    /// not changes nothing to come (the search never places an unknown
    /// write no pending read wants), so positions differing only there are
    /// the same position.
    live: Vec<u64>,
    /// Number of leading words of `known` with every valid bit set.
    full: usize,
    /// Number of words of `known` up to and including the last non-zero one.
    used: usize,
}

impl Linearized {
    fn new(n_known: usize, n_unknown: usize) -> Linearized {
        Linearized {
            known: vec![0; n_known.div_ceil(64)],
            n_known,
            unknown: vec![0; n_unknown.div_ceil(64)],
            live: vec![u64::MAX; n_unknown.div_ceil(64)],
            full: 0,
            used: 0,
        }
    }

    fn full_mask(&self, word: usize) -> u64 {
        let rem = self.n_known % 64;
        if word + 1 == self.known.len() && rem != 0 {
            (1u64 << rem) - 1
        } else {
            u64::MAX
        }
    }

    fn set(&mut self, id: usize) {
        if id < self.n_known {
            let w = id / 64;
            self.known[w] |= 1u64 << (id % 64);
            self.used = self.used.max(w + 1);
            while self.full < self.known.len() && self.known[self.full] == self.full_mask(self.full) {
                self.full += 1;
            }
        } else {
            let u = id - self.n_known;
            self.unknown[u / 64] |= 1u64 << (u % 64);
        }
    }

    fn clear(&mut self, id: usize) {
        if id < self.n_known {
            let w = id / 64;
            self.known[w] &= !(1u64 << (id % 64));
            self.full = self.full.min(w);
            while self.used > 0 && self.known[self.used - 1] == 0 {
                self.used -= 1;
            }
        } else {
            let u = id - self.n_known;
            self.unknown[u / 64] &= !(1u64 << (u % 64));
        }
    }

    fn set_live(&mut self, id: usize, live: bool) {
        let Some(u) = id.checked_sub(self.n_known) else { return };
        if live {
            self.live[u / 64] |= 1u64 << (u % 64);
        } else {
            self.live[u / 64] &= !(1u64 << (u % 64));
        }
    }

    /// An exact encoding of (this set, `state`, `must_read`, `cover` class):
    /// a header word with the state, the number of full leading words and
    /// the flag (top bit; 2^31 words of operations is far beyond any
    /// history), the cover class, the live unknown-outcome words (fixed length),
    /// then the known words between the full prefix and the zero suffix.
    /// Positions with distinct futures give distinct keys.
    fn key(&self, state: u32, must_read: bool, cover: u64) -> Box<[u64]> {
        let window = self.known.get(self.full..self.used).unwrap_or(&[]);
        let mut k = Vec::with_capacity(2 + self.unknown.len() + window.len());
        k.push(u64::from(state) | ((self.full as u64) << 32) | (u64::from(must_read) << 63));
        k.push(cover);
        k.extend(self.unknown.iter().zip(&self.live).map(|(u, l)| u & l));
        k.extend_from_slice(window);
        k.into_boxed_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use EventType::{Fail, Info, Ok as Done};

    fn op(
        process: u64,
        f: &str,
        value: Value,
        invoked_at: u64,
        completed_at: Option<u64>,
        outcome: EventType,
    ) -> Operation {
        let (input, output) = if f == "write" {
            (value.clone(), value)
        } else {
            (Value::Null, value)
        };
        Operation {
            process,
            f: f.into(),
            key: "k".into(),
            input,
            outcome,
            output,
            invoked_at,
            completed_at: if outcome == Info { None } else { completed_at },
            node: 1,
        }
    }
    fn w(p: u64, v: Value, a: u64, b: u64) -> Operation {
        op(p, "write", v, a, Some(b), Done)
    }
    fn r(p: u64, v: Value, a: u64, b: u64) -> Operation {
        op(p, "read", v, a, Some(b), Done)
    }
    fn w_info(p: u64, v: Value, a: u64) -> Operation {
        op(p, "write", v, a, None, Info)
    }
    fn w_fail(p: u64, v: Value, a: u64, b: u64) -> Operation {
        op(p, "write", v, a, Some(b), Fail)
    }

    fn check(ops: &[Operation]) -> Verdict {
        check_register(ops, &Value::Null, SearchLimits::default())
    }

    /// (name, history, linearizable?) with the register starting at `null`.
    fn cases() -> Vec<(&'static str, Vec<Operation>, bool)> {
        vec![
            (
                "sequential writes and reads",
                vec![
                    r(1, json!(null), 0, 5),
                    w(1, json!(1), 10, 20),
                    r(2, json!(1), 30, 40),
                    w(2, json!(2), 50, 60),
                    r(1, json!(2), 70, 80),
                ],
                true,
            ),
            (
                "read concurrent with a write returns the old value",
                vec![w(1, json!(1), 0, 10), w(1, json!(2), 20, 40), r(2, json!(1), 25, 30)],
                true,
            ),
            (
                "read concurrent with a write returns the new value",
                vec![w(1, json!(1), 0, 10), w(1, json!(2), 20, 40), r(2, json!(2), 25, 30)],
                true,
            ),
            (
                "read sees a write that completes after the read",
                vec![w(1, json!(1), 0, 100), r(2, json!(1), 10, 20), r(3, json!(1), 30, 40)],
                true,
            ),
            (
                "invocation at another completion's instant is concurrent",
                vec![w(1, json!(1), 0, 10), r(2, json!(null), 10, 20)],
                true,
            ),
            (
                "info write that later reads observe",
                vec![
                    w(1, json!(1), 0, 10),
                    w_info(2, json!(2), 20),
                    r(3, json!(2), 100, 110),
                    r(3, json!(2), 120, 130),
                ],
                true,
            ),
            (
                "info write never observed",
                vec![w(1, json!(1), 0, 10), w_info(2, json!(2), 20), r(3, json!(1), 100, 110)],
                true,
            ),
            (
                "info write takes effect long after its invocation",
                vec![
                    w(1, json!(1), 0, 10),
                    w_info(2, json!(2), 20),
                    w(3, json!(3), 30, 40),
                    r(3, json!(3), 50, 60),
                    r(3, json!(2), 70, 80),
                ],
                true,
            ),
            (
                "failed write never observed",
                vec![
                    w(1, json!(1), 0, 10),
                    w_fail(2, json!(2), 20, 30),
                    r(3, json!(1), 40, 50),
                ],
                true,
            ),
            (
                "failed and unknown reads constrain nothing",
                vec![
                    w(1, json!(1), 0, 10),
                    op(2, "read", json!(99), 20, Some(30), Fail),
                    op(3, "read", json!(98), 20, None, Info),
                    r(4, json!(1), 40, 50),
                ],
                true,
            ),
            (
                "structured values compare as JSON",
                vec![
                    w(1, json!({"a": 1, "b": [1, 2]}), 0, 10),
                    r(2, json!({"b": [1, 2], "a": 1}), 20, 30),
                ],
                true,
            ),
            (
                "an unread write hides before a concurrent write whose value reads see",
                vec![w(1, json!(2), 0, 10), w(2, json!(9), 0, 15), r(3, json!(2), 16, 20)],
                true,
            ),
            (
                "an unread write cannot hide behind a write that completed before it began",
                vec![
                    w(1, json!(2), 0, 10),
                    r(2, json!(2), 11, 12),
                    w(3, json!(9), 13, 20),
                    r(2, json!(2), 21, 30),
                ],
                false,
            ),
            (
                // Reaches the same (set, value) by two routes whose hiding
                // options differ; a memo key without `cover` merges them
                // and wrongly rejects this.
                "of two writes of one value, the longer takes effect after a later write",
                vec![
                    w(1, json!(1), 13, 37),
                    w(2, json!(3), 41, 71),
                    w(3, json!(1), 3, 63),
                    r(4, json!(1), 89, 135),
                ],
                true,
            ),
            (
                // The unknown write must be kept for the last read; a memo
                // key that forgot which unknown writes were used would
                // merge the route that spent it early with the one that
                // did not, and wrongly reject this.
                "an unknown write is saved for a later read",
                vec![
                    w_info(1, json!(2), 0),
                    w(2, json!(2), 1, 50),
                    r(3, json!(2), 10, 20),
                    w(4, json!(3), 60, 70),
                    r(3, json!(2), 80, 90),
                ],
                true,
            ),
            (
                "stale read after a completed write",
                vec![w(1, json!(1), 0, 10), w(1, json!(2), 20, 30), r(2, json!(1), 40, 50)],
                false,
            ),
            (
                "read of a value never written",
                vec![w(1, json!(1), 0, 10), r(2, json!(7), 20, 30)],
                false,
            ),
            (
                "initial value read after a completed write",
                vec![w(1, json!(1), 0, 10), r(2, json!(null), 20, 30)],
                false,
            ),
            (
                "sequential reads go backwards",
                vec![
                    w(1, json!(1), 0, 10),
                    w(1, json!(2), 20, 100),
                    r(2, json!(2), 30, 40),
                    r(2, json!(1), 50, 60),
                ],
                false,
            ),
            (
                "read observes a failed write",
                vec![
                    w(1, json!(1), 0, 10),
                    w_fail(2, json!(2), 20, 30),
                    r(3, json!(2), 40, 50),
                ],
                false,
            ),
            (
                "info write observed before its invocation",
                vec![w(1, json!(1), 0, 10), r(2, json!(2), 20, 30), w_info(3, json!(2), 40)],
                false,
            ),
            (
                "info write takes effect at most once",
                vec![
                    w(1, json!(1), 0, 10),
                    w_info(2, json!(2), 20),
                    r(3, json!(2), 30, 40),
                    w(4, json!(3), 50, 60),
                    r(3, json!(2), 70, 80),
                ],
                false,
            ),
            (
                "a string is not the number it spells",
                vec![w(1, json!(1), 0, 10), r(2, json!("1"), 20, 30)],
                false,
            ),
        ]
    }

    #[test]
    fn known_histories() {
        for (name, history, linearizable) in cases() {
            let verdict = check(&history);
            assert_eq!(verdict.is_linearizable(), linearizable, "{name}: {verdict:?}");
            if !linearizable {
                assert!(
                    matches!(verdict, Verdict::NotLinearizable { .. }),
                    "{name}: {verdict:?}"
                );
            }
        }
    }

    #[test]
    fn evidence_names_the_prefix_and_the_operation_that_cannot_go_next() {
        let history = [w(1, json!(1), 0, 10), w(1, json!(2), 20, 30), r(7, json!(1), 40, 50)];
        let Verdict::NotLinearizable { evidence } = check(&history) else {
            panic!("should fail")
        };
        assert!(
            evidence.contains("Longest linearizable prefix: 2 operations"),
            "{evidence}"
        );
        assert!(evidence.contains("register holds 2"), "{evidence}");
        assert!(
            evidence.contains("process 7 read 1 (invoked 40, completed 50)"),
            "{evidence}"
        );
        assert!(evidence.contains("reads 1 but the register holds 2"), "{evidence}");
    }

    #[test]
    fn unsupported_or_malformed_operations_are_unknown() {
        let cas = op(1, "cas", json!(1), 0, Some(10), Done);
        assert!(matches!(check(&[cas]), Verdict::Unknown { .. }));
        let backwards = w(1, json!(1), 10, 5);
        assert!(matches!(check(&[backwards]), Verdict::Unknown { .. }));
        assert_eq!(check(&[]), Verdict::Linearizable);
    }

    /// `writers` concurrent writes, each read by a concurrent read, then two
    /// reads that each need a different write to have been the last one: no
    /// order works, and proving it means visiting every subset of the writes.
    fn pathological(writers: u64) -> Vec<Operation> {
        let mut h: Vec<Operation> = (0..writers).map(|i| w(i, json!(i), 0, 100)).collect();
        h.extend((0..writers).map(|i| r(100 + i, json!(i), 0, 100)));
        h.push(r(1000, json!(0), 200, 210));
        h.push(r(1000, json!(1), 220, 230));
        h
    }

    #[test]
    fn the_state_limit_stops_the_search() {
        let verdict = check_register(&pathological(14), &Value::Null, SearchLimits { max_states: 1000 });
        let Verdict::Unknown { reason } = verdict else {
            panic!("expected Unknown, got {verdict:?}")
        };
        assert!(reason.contains("limit 1000"), "{reason}");
        assert!(matches!(check(&pathological(10)), Verdict::NotLinearizable { .. }));
    }

    /// splitmix64: a tiny deterministic generator, so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    /// A history produced by a real register: `clients` sequential clients
    /// with random overlapping intervals, each operation taking effect at a
    /// random instant inside its interval (or, for unknown outcomes, at any
    /// later instant or never). Linearizable by construction; values written
    /// are unique.
    fn simulate(seed: u64, clients: usize, n: usize) -> Vec<Operation> {
        simulate_with(seed, clients, n, None)
    }

    /// [`simulate`], with written values drawn from `1..=k` when `values` is
    /// `Some(k)` (so values repeat) instead of unique.
    fn simulate_with(seed: u64, clients: usize, n: usize, values: Option<u64>) -> Vec<Operation> {
        let mut rng = Rng(seed);
        let mut free_at = vec![0u64; clients];
        let mut process: Vec<u64> = (0..clients as u64).collect();
        let mut next_process = clients as u64;
        let mut ops = Vec::with_capacity(n);
        // (instant it takes effect, op index)
        let mut effects: Vec<(u64, usize)> = Vec::new();
        for i in 0..n {
            let c = rng.below(clients as u64) as usize;
            let invoke = free_at[c] + rng.below(20);
            let complete = invoke + 1 + rng.below(60);
            let at = invoke + rng.below(complete - invoke + 1);
            free_at[c] = complete;
            let is_write = rng.chance(50);
            let roll = rng.below(100);
            let outcome = if roll < 85 {
                Done
            } else if roll < 92 {
                Fail
            } else {
                Info
            };
            let value = match (is_write, values) {
                (false, _) => Value::Null,
                (true, None) => json!(i),
                (true, Some(k)) => json!(1 + rng.below(k)),
            };
            ops.push(op(
                process[c],
                if is_write { "write" } else { "read" },
                value,
                invoke,
                Some(complete),
                outcome,
            ));
            match (is_write, outcome) {
                (_, Done) => effects.push((at, i)),
                (true, Info) if rng.chance(50) => effects.push((invoke + rng.below(300), i)),
                _ => {}
            }
            if outcome == Info {
                process[c] = next_process;
                next_process += 1;
            }
        }
        effects.sort_unstable();
        let mut register = Value::Null;
        for (_, i) in effects {
            if ops[i].f == "write" {
                register = ops[i].input.clone();
            } else {
                ops[i].output = register.clone();
            }
        }
        ops
    }

    fn done(o: &Operation) -> u64 {
        o.completed_at.unwrap_or(u64::MAX)
    }

    /// Makes one successful read return the value of a write that was
    /// overwritten, in real time, before the read began: write `w`
    /// completes, then write `w2` runs entirely, then the read starts. With
    /// unique values no linearization can explain it.
    fn corrupt_stale(ops: &mut [Operation], rng: &mut Rng) -> bool {
        let ok_writes: Vec<usize> = (0..ops.len())
            .filter(|&i| ops[i].f == "write" && ops[i].outcome == Done)
            .collect();
        let reads: Vec<usize> = (0..ops.len())
            .filter(|&i| ops[i].f == "read" && ops[i].outcome == Done)
            .collect();
        for _ in 0..1000 {
            let ri = reads[rng.below(reads.len() as u64) as usize];
            let w2 = ok_writes[rng.below(ok_writes.len() as u64) as usize];
            if done(&ops[w2]) >= ops[ri].invoked_at {
                continue;
            }
            let older: Vec<usize> = ok_writes
                .iter()
                .copied()
                .filter(|&w| done(&ops[w]) < ops[w2].invoked_at)
                .collect();
            if let Some(&w) = older.last() {
                ops[ri].output = ops[w].input.clone();
                return true;
            }
        }
        false
    }

    /// Makes one successful read return the value of a write invoked only
    /// after the read completed.
    fn corrupt_future(ops: &mut [Operation], rng: &mut Rng) -> bool {
        for _ in 0..1000 {
            let ri = rng.below(ops.len() as u64) as usize;
            let wi = rng.below(ops.len() as u64) as usize;
            if ops[ri].f == "read"
                && ops[ri].outcome == Done
                && ops[wi].f == "write"
                && ops[wi].outcome != Fail
                && ops[wi].invoked_at > done(&ops[ri])
            {
                ops[ri].output = ops[wi].input.clone();
                return true;
            }
        }
        false
    }

    #[test]
    fn simulated_histories_pass_and_corrupted_ones_fail() {
        for seed in 0..20 {
            let ops = simulate(seed, 1 + (seed as usize % 10), 500);
            let verdict = check(&ops);
            assert!(verdict.is_linearizable(), "seed {seed}: {verdict:?}");
            let mut rng = Rng(seed ^ 0xC0FFEE);
            for corrupt in [corrupt_stale, corrupt_future] {
                let mut bad = ops.clone();
                assert!(corrupt(&mut bad, &mut rng), "seed {seed}: no read to corrupt");
                let verdict = check(&bad);
                assert!(
                    matches!(verdict, Verdict::NotLinearizable { .. }),
                    "seed {seed}: {verdict:?}"
                );
            }
        }
    }

    /// 5000 operations from 20 always-busy clients on one register (about
    /// fifteen operations in flight at any time, half of them writes). The
    /// state budgets make the efficiency check deterministic: plain WGL
    /// needs millions of states here; this search about two per operation
    /// to accept, and a few hundred thousand to refute. Times are printed
    /// (`--nocapture`) for the record.
    #[test]
    fn large_history_checks_within_a_small_state_budget() {
        let ops = simulate(42, 20, 5000);
        #[allow(clippy::disallowed_methods)] // timing a test, not the state machine
        let start = std::time::Instant::now();
        let verdict = check_register(&ops, &Value::Null, SearchLimits { max_states: 20_000 });
        let took = start.elapsed();
        assert!(verdict.is_linearizable(), "{verdict:?}");
        let mut bad = ops.clone();
        assert!(corrupt_stale(&mut bad, &mut Rng(7)));
        #[allow(clippy::disallowed_methods)]
        let start_bad = std::time::Instant::now();
        let verdict = check_register(&bad, &Value::Null, SearchLimits { max_states: 1_000_000 });
        let took_bad = start_bad.elapsed();
        assert!(matches!(verdict, Verdict::NotLinearizable { .. }), "{verdict:?}");
        eprintln!("5000 ops, 20 clients: linearizable in {took:?}, corrupted rejected in {took_bad:?}");
    }

    /// An independent, exhaustive checker for tiny histories: tries every
    /// order (and every subset of unknown writes) directly, with no entry
    /// list, memo table or pruning.
    fn brute_force(ops: &[Operation], initial: &Value) -> bool {
        struct Item<'a> {
            write: bool,
            value: &'a Value,
            invoke: u64,
            deadline: Option<u64>,
        }
        let items: Vec<Item> = ops
            .iter()
            .filter_map(|o| match (o.f.as_str(), o.outcome) {
                ("write", Done) => Some(Item {
                    write: true,
                    value: &o.input,
                    invoke: o.invoked_at,
                    deadline: o.completed_at,
                }),
                ("write", Info) => Some(Item {
                    write: true,
                    value: &o.input,
                    invoke: o.invoked_at,
                    deadline: None,
                }),
                ("read", Done) => Some(Item {
                    write: false,
                    value: &o.output,
                    invoke: o.invoked_at,
                    deadline: o.completed_at,
                }),
                _ => None,
            })
            .collect();
        fn go(items: &[Item], placed: &mut Vec<bool>, state: &Value) -> bool {
            if items
                .iter()
                .zip(placed.iter())
                .all(|(it, &p)| p || it.deadline.is_none())
            {
                return true;
            }
            for i in 0..items.len() {
                if placed[i] {
                    continue;
                }
                let blocked = (0..items.len())
                    .any(|j| j != i && !placed[j] && items[j].deadline.is_some_and(|d| d < items[i].invoke));
                if blocked || (!items[i].write && items[i].value != state) {
                    continue;
                }
                placed[i] = true;
                let next = if items[i].write { items[i].value } else { state };
                if go(items, placed, next) {
                    return true;
                }
                placed[i] = false;
            }
            false
        }
        go(&items, &mut vec![false; items.len()], initial)
    }

    /// A small history of `n` operations: either arbitrary (`real` false:
    /// random intervals, values and outcomes, mostly not linearizable) or
    /// simulated by a real register and then, half the time, one read
    /// changed to a random value (mostly linearizable or nearly so, which is
    /// where a search that wrongly prunes would say no).
    fn small_history(rng: &mut Rng, n: u64, span: u64, values: u64, real: bool) -> Vec<Operation> {
        let value = |rng: &mut Rng| match rng.below(values + 1) {
            0 => Value::Null,
            x => json!(x),
        };
        if real {
            let mut ops = simulate_with(rng.next(), 1 + rng.below(4) as usize, n as usize, Some(values));
            if rng.chance(50) {
                let reads: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].f == "read").collect();
                if !reads.is_empty() {
                    let i = reads[rng.below(reads.len() as u64) as usize];
                    ops[i].output = value(rng);
                }
            }
            return ops;
        }
        (0..n)
            .map(|p| {
                let invoke = rng.below(span);
                let complete = invoke + rng.below(span / 2);
                let outcome = match rng.below(100) {
                    0..70 => Done,
                    70..85 => Fail,
                    _ => Info,
                };
                if rng.chance(50) {
                    let v = value(rng);
                    op(p, "write", v, invoke, Some(complete), outcome)
                } else {
                    let v = value(rng);
                    op(p, "read", v, invoke, Some(complete), outcome)
                }
            })
            .collect()
    }

    #[test]
    fn agrees_with_brute_force_on_small_random_histories() {
        // (cases, max operations, time span, distinct values, simulated)
        let configs = [
            (1500, 7, 30, 3, false),
            (1500, 8, 12, 2, false),
            (1500, 8, 0, 3, true),
            (800, 9, 0, 5, true),
        ];
        for (config, &(cases, max_ops, span, values, real)) in configs.iter().enumerate() {
            let mut rng = Rng(2024 + config as u64);
            let mut verdicts = [0usize; 2];
            for case in 0..cases {
                let n = 2 + rng.below(max_ops - 1);
                let ops = small_history(&mut rng, n, span, values, real);
                let expected = brute_force(&ops, &Value::Null);
                let verdict = check(&ops);
                assert_eq!(
                    verdict.is_linearizable(),
                    expected,
                    "config {config} case {case}: {ops:#?}\n{verdict:?}"
                );
                if !expected {
                    assert!(
                        matches!(verdict, Verdict::NotLinearizable { .. }),
                        "case {case}: {verdict:?}"
                    );
                }
                verdicts[usize::from(expected)] += 1;
            }
            // Both verdicts must be well represented, or the comparison proves little.
            assert!(
                verdicts[0] > cases / 8 && verdicts[1] > cases / 8,
                "config {config}: {verdicts:?}"
            );
        }
    }
}
