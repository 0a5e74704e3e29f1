//! The checker: Wing–Gong's depth-first search with Lowe's memo and the
//! pruning rules of the module documentation, as a loop over an explicit
//! stack of levels.

use std::collections::BTreeMap;

use super::super::history::Operation;
use super::entries::{EntryList, Linearized, HEAD, NIL};
use super::model::{Kind, Problem};
use super::{SearchLimits, Verdict};

impl Problem {
    pub(super) fn search(&self, input: &[Operation], limits: SearchLimits) -> Verdict {
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
    pub(super) fn count_read(&self, unread: &mut [usize], lin: &mut Linearized, value: u32, undo: bool) {
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
    pub(super) fn unexplained_read(&self) -> Option<usize> {
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
    pub(super) fn cover_class(&self, cover: Option<u64>) -> u64 {
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
    pub(super) fn moves(
        &self,
        list: &EntryList,
        state: u32,
        must_read: bool,
        cover: Option<u64>,
    ) -> Vec<(usize, Placement)> {
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
}

/// How a move places its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placement {
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
pub(super) struct Level {
    pub(super) state: u32,
    /// Set right after a write placed before its deadline: the next
    /// operation must be a read of its value (else the write would have
    /// been placed at its deadline or hidden, see [`Problem::moves`]).
    pub(super) must_read: bool,
    /// The earliest completion among the last visible write and the reads
    /// placed after it; `None` before the first visible write. A due write
    /// invoked no later than this can be hidden.
    pub(super) cover: Option<u64>,
    pub(super) moves: Vec<(usize, Placement)>,
    pub(super) next: usize,
    pub(super) chosen: Option<(usize, Placement)>,
}

/// The deepest point where the search got stuck, kept for the evidence.
pub(super) struct DeadEnd {
    /// How many operations the prefix has.
    pub(super) depth: usize,
    /// Its last operations (ids, in linearization order, and whether each
    /// was hidden).
    pub(super) tail: Vec<(usize, bool)>,
    /// The register value after the prefix.
    pub(super) state: u32,
    /// The pending operation with the earliest deadline, if any.
    pub(super) blocked: Option<usize>,
    /// The operations that were candidates to go next.
    pub(super) candidates: Vec<usize>,
}

impl DeadEnd {
    /// How many operations of the prefix the evidence shows.
    pub(super) const SHOWN: usize = 5;

    pub(super) fn capture(list: &EntryList, depth: usize, tail: Vec<(usize, bool)>, state: u32) -> DeadEnd {
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
