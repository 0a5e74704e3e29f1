//! What the search walks and remembers: the call and return entries as a
//! dancing-links list, and the set of linearized operations as bitsets
//! whose compact encoding keys the memo.

use super::model::Op;

pub(super) const HEAD: usize = 0;
pub(super) const NIL: usize = usize::MAX;

/// The call/return entries as a doubly linked list over arrays (node 0 is
/// the head sentinel), so lifting an operation out and putting it back are
/// O(1) and exactly undo each other ("dancing links").
pub(super) struct EntryList {
    pub(super) next: Vec<usize>,
    pub(super) prev: Vec<usize>,
    /// The operation of each node.
    pub(super) op: Vec<usize>,
    pub(super) is_call: Vec<bool>,
    /// For a call node, its return node (NIL for unknown outcomes).
    pub(super) ret: Vec<usize>,
}

impl EntryList {
    pub(super) fn new(ops: &[Op]) -> EntryList {
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

    pub(super) fn unlink(&mut self, n: usize) {
        let (p, x) = (self.prev[n], self.next[n]);
        self.next[p] = x;
        if x != NIL {
            self.prev[x] = p;
        }
    }

    pub(super) fn relink(&mut self, n: usize) {
        let (p, x) = (self.prev[n], self.next[n]);
        self.next[p] = n;
        if x != NIL {
            self.prev[x] = n;
        }
    }

    /// Removes a call node and its return node.
    pub(super) fn lift(&mut self, call: usize) {
        self.unlink(call);
        let r = self.ret[call];
        if r != NIL {
            self.unlink(r);
        }
    }

    /// Undoes [`EntryList::lift`] (in reverse order, as dancing links need).
    pub(super) fn unlift(&mut self, call: usize) {
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
pub(super) struct Linearized {
    pub(super) known: Vec<u64>,
    pub(super) n_known: usize,
    pub(super) unknown: Vec<u64>,
    /// Which unknown-outcome writes the memo key distinguishes: those of a
    /// value some pending read may still observe. For the others, used or
    /// not changes nothing to come (the search never places an unknown
    /// write no pending read wants), so positions differing only there are
    /// the same position.
    pub(super) live: Vec<u64>,
    /// Number of leading words of `known` with every valid bit set.
    pub(super) full: usize,
    /// Number of words of `known` up to and including the last non-zero one.
    pub(super) used: usize,
}

impl Linearized {
    pub(super) fn new(n_known: usize, n_unknown: usize) -> Linearized {
        Linearized {
            known: vec![0; n_known.div_ceil(64)],
            n_known,
            unknown: vec![0; n_unknown.div_ceil(64)],
            live: vec![u64::MAX; n_unknown.div_ceil(64)],
            full: 0,
            used: 0,
        }
    }

    pub(super) fn full_mask(&self, word: usize) -> u64 {
        let rem = self.n_known % 64;
        if word + 1 == self.known.len() && rem != 0 {
            (1u64 << rem) - 1
        } else {
            u64::MAX
        }
    }

    pub(super) fn set(&mut self, id: usize) {
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

    pub(super) fn clear(&mut self, id: usize) {
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

    pub(super) fn set_live(&mut self, id: usize, live: bool) {
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
    pub(super) fn key(&self, state: u32, must_read: bool, cover: u64) -> Box<[u64]> {
        let window = self.known.get(self.full..self.used).unwrap_or(&[]);
        let mut k = Vec::with_capacity(2 + self.unknown.len() + window.len());
        k.push(u64::from(state) | ((self.full as u64) << 32) | (u64::from(must_read) << 63));
        k.push(cover);
        k.extend(self.unknown.iter().zip(&self.live).map(|(u, l)| u & l));
        k.extend_from_slice(window);
        k.into_boxed_slice()
    }
}
