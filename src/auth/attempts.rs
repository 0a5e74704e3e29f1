//! Node-local reservations for password guesses, so that the lockout
//! counts what is in flight (ARCHITECTURE.md §2, invariant 8).
//!
//! The replicated [`LockoutState`] only learns of a failure once its
//! `RecordSignInFailure` commits, after the argon2 verify. Checked alone,
//! it lets any number of parallel guesses through, and a node that cannot
//! commit (partitioned) never counts a failure at all. This table closes
//! both gaps on each node: a guess for a known user may start hashing only
//! after it reserves a slot here, and the slot is granted only while
//!
//! ```text
//! replicated live failures
//!   + failures this node saw that replicated state does not show yet
//!   + guesses being evaluated on this node      <  THRESHOLD
//! ```
//!
//! and the user is not locked by the lockout arithmetic run over the first
//! two terms together. Once the live failures reach the threshold, a lock
//! that has expired lets exactly one guess at a time through, as Cognito's
//! backoff does.
//!
//! A slot moves through three stages, each owned by one [`Reservation`]:
//! *in flight* (hashing), then, for a wrong guess, *pending* (its failure
//! is being written) and finally either gone (the write committed and this
//! node has applied it, so replicated state now counts it: no double
//! count) or *local* (the write failed or its fate is unknown: the failure
//! is kept here with the time it was given up on, and expires exactly as a
//! replicated one would). A pending failure counts as happening *now* for
//! as long as it is pending, so a node waiting on a quorum it cannot reach
//! stays locked rather than answering the right password. Dropping a
//! reservation at any stage (an error, a cancelled request) leaves the
//! table as conservative as that stage requires.
//!
//! Bounds: the table holds only users with a guess in flight or a failure
//! not yet reflected in replicated state, at most [`MAX_LOCAL_FAILURES`]
//! failures per user and `max_users` users; when full (after sweeping
//! expired entries, at most once per second per shard) a new user's guess
//! is refused rather than evaluated uncounted. A check is O(1): one hash
//! lookup in one of [`SHARDS`] mutex-guarded maps plus the lockout
//! arithmetic over at most `MAX_LOCAL_FAILURES + THRESHOLD` entries.
//!
//! Time is a parameter of every decision; only `Drop`, which has no
//! arguments, reads the table's clock (the real clock in production, a
//! fixed one in tests).

// A node-local table that no replicated state depends on: the hash maps'
// iteration order is never observed outside `retain`, whose result does not
// depend on it.
#![allow(clippy::disallowed_types)]

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::lockout::{LockoutState, MAX_LOCK_MS, QUIET_RESET_MS, THRESHOLD};

/// Mutex shards, so that sign-ins of distinct users rarely wait on each
/// other.
pub const SHARDS: usize = 16;
/// Failures kept per user that replicated state does not show; older ones
/// are dropped first (beyond this many, the lock is at its cap anyway).
pub const MAX_LOCAL_FAILURES: usize = 64;
/// How long a guess waits for a slot that guesses in flight hold before
/// it is refused as busy (a guess for a locked user waits not at all).
pub const MAX_WAIT: Duration = Duration::from_secs(5);
/// Default bound on users in the table.
pub const DEFAULT_MAX_USERS: usize = 65_536;
/// How long after its last failure a local entry can still matter: the
/// longest lock plus the quiet time that follows it.
const ENTRY_LIFETIME_MS: i64 = MAX_LOCK_MS + QUIET_RESET_MS;

/// Why a guess may not be evaluated now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The user is locked (replicated or local failures), for this many ms.
    Locked {
        /// Milliseconds until the lock ends.
        for_ms: i64,
    },
    /// Every slot the lockout leaves is taken by guesses in flight.
    Busy,
    /// The table is full of other users' live entries.
    Full,
}

/// A user's node-local share of the lockout.
#[derive(Debug, Default)]
struct Entry {
    /// Guesses being evaluated.
    in_flight: u32,
    /// Wrong guesses whose failure is being written.
    pending: u32,
    /// Unix ms of failures whose write failed or whose fate is unknown,
    /// oldest first.
    local: Vec<i64>,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.in_flight == 0 && self.pending == 0 && self.local.is_empty()
    }

    /// Replicated state with this node's unreflected failures replayed on
    /// top, pending ones at `now`.
    fn effective(&self, replicated: LockoutState, now: i64) -> LockoutState {
        let mut e = replicated;
        let pending = (0..self.pending).map(|_| now);
        for at in self.local.iter().copied().chain(pending) {
            e.record_failure(at.max(e.last_failure_at));
        }
        e
    }

    fn push_local(&mut self, at: i64) {
        if self.local.len() >= MAX_LOCAL_FAILURES {
            self.local.remove(0);
        }
        let pos = self.local.partition_point(|t| *t <= at);
        self.local.insert(pos, at);
    }

    fn expired(&self, now: i64) -> bool {
        self.in_flight == 0 && self.pending == 0 && self.local.last().is_none_or(|t| now - t >= ENTRY_LIFETIME_MS)
    }
}

type Key = (String, String);

#[derive(Default)]
struct Shard {
    users: HashMap<Key, Entry>,
    /// No sweep of a full shard before this time (Unix ms).
    next_sweep_at: i64,
}

/// The reservation table of one node. Share it behind an `Arc`.
pub struct Attempts {
    shards: Vec<Mutex<Shard>>,
    /// Woken whenever an entry of the same shard changes, for guesses
    /// waiting for a slot.
    changed: Vec<Notify>,
    max_per_shard: usize,
    clock: fn() -> i64,
}

impl std::fmt::Debug for Attempts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempts")
            .field("max_per_shard", &self.max_per_shard)
            .finish_non_exhaustive()
    }
}

impl Default for Attempts {
    fn default() -> Self {
        Attempts::new(DEFAULT_MAX_USERS, crate::clock::now_millis)
    }
}

impl Attempts {
    /// A table for at most `max_users` users (rounded up to a multiple of
    /// [`SHARDS`]); `clock` is read only when a reservation is dropped
    /// without being resolved and when a waiting guess checks again.
    pub fn new(max_users: usize, clock: fn() -> i64) -> Self {
        Attempts {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            changed: (0..SHARDS).map(|_| Notify::new()).collect(),
            max_per_shard: max_users.div_ceil(SHARDS).max(1),
            clock,
        }
    }

    fn shard_of(&self, key: &Key) -> usize {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() as usize) % self.shards.len()
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        match self.shards[i].lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Reserves the right to evaluate one guess for `sub` of `pool_id` at
    /// `now`. `replicated` reads the user's replicated lockout state; it is
    /// called under the shard's lock, so that a failure leaving this table
    /// (because this node has applied it) is counted either here or there,
    /// never in neither.
    ///
    /// A locked user is refused at once. When the slots are taken by
    /// guesses still being evaluated, the guess waits (up to `max_wait`)
    /// for one of them to end instead of being refused: if it was right,
    /// the slot is free again (so an account signing in from many clients
    /// at once is served); if it was wrong, the failure may lock the user,
    /// and the waiting guess is refused then without being evaluated.
    pub async fn reserve<E>(
        self: &Arc<Self>,
        pool_id: &str,
        sub: &str,
        now: i64,
        max_wait: Duration,
        mut replicated: impl FnMut() -> Result<Option<LockoutState>, E>,
    ) -> Result<Result<Reservation, Refusal>, E> {
        let key = (pool_id.to_string(), sub.to_string());
        let i = self.shard_of(&key);
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut now = now;
        loop {
            let changed = {
                let mut shard = self.lock(i);
                match self.try_reserve(&mut shard, &key, now, &mut replicated)? {
                    Ok(()) => {
                        return Ok(Ok(Reservation {
                            table: Arc::clone(self),
                            key,
                            shard: i,
                            stage: Stage::InFlight,
                        }))
                    }
                    // Registered before the lock is released, so no change
                    // in between is missed.
                    Err(Refusal::Busy) => self.changed[i].notified(),
                    Err(refusal) => return Ok(Err(refusal)),
                }
            };
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Ok(Err(Refusal::Busy));
            }
            now = (self.clock)();
        }
    }

    fn try_reserve<E>(
        &self,
        shard: &mut Shard,
        key: &Key,
        now: i64,
        replicated: &mut impl FnMut() -> Result<Option<LockoutState>, E>,
    ) -> Result<Result<(), Refusal>, E> {
        let state = replicated()?.unwrap_or_default();
        if !shard.users.contains_key(key) && shard.users.len() >= self.max_per_shard {
            if now >= shard.next_sweep_at {
                shard.users.retain(|_, e| !e.expired(now));
                shard.next_sweep_at = now + 1000;
            }
            if shard.users.len() >= self.max_per_shard {
                // Refused only when nothing at all is known of this user
                // here; its replicated lock still applies first.
                if let Some(for_ms) = state.locked_for(now) {
                    return Ok(Err(Refusal::Locked { for_ms }));
                }
                return Ok(Err(Refusal::Full));
            }
        }
        let entry = shard.users.entry(key.clone()).or_default();
        let e = entry.effective(state, now);
        let verdict = if let Some(for_ms) = e.locked_for(now) {
            Err(Refusal::Locked { for_ms })
        } else {
            let live = e.live_failures(now);
            if live == 0 {
                // Everything here has expired (or there was nothing).
                entry.local.clear();
            }
            let slots = THRESHOLD.saturating_sub(live).max(1);
            if entry.in_flight >= slots {
                Err(Refusal::Busy)
            } else {
                entry.in_flight += 1;
                Ok(())
            }
        };
        if verdict.is_err() && entry.is_empty() {
            shard.users.remove(key);
        }
        Ok(verdict)
    }

    fn update(&self, i: usize, key: &Key, f: impl FnOnce(&mut Entry)) {
        {
            let mut shard = self.lock(i);
            if let Some(entry) = shard.users.get_mut(key) {
                f(entry);
                if entry.is_empty() {
                    shard.users.remove(key);
                }
            }
        }
        self.changed[i].notify_waiters();
    }

    /// Users in the table (for tests and metrics).
    pub fn users(&self) -> usize {
        self.shards
            .iter()
            .map(|s| match s.lock() {
                Ok(g) => g.users.len(),
                Err(p) => p.into_inner().users.len(),
            })
            .sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    InFlight,
    Pending,
    Done,
}

/// One guess's slot. Dropped while in flight, it frees the slot (nothing
/// was learned); dropped while pending, it keeps the failure locally at
/// the drop time (its write may or may not have committed).
#[derive(Debug)]
pub struct Reservation {
    table: Arc<Attempts>,
    key: Key,
    shard: usize,
    stage: Stage,
}

impl Reservation {
    /// The guess was wrong: the slot becomes a pending failure, counted as
    /// happening now until [`Reservation::committed`] or
    /// [`Reservation::uncommitted`].
    pub fn failed(&mut self) {
        if self.stage == Stage::InFlight {
            self.table.update(self.shard, &self.key, |e| {
                e.in_flight = e.in_flight.saturating_sub(1);
                e.pending += 1;
            });
            self.stage = Stage::Pending;
        }
    }

    /// A pending failure was no failure after all (a newer password,
    /// applied elsewhere, matched): back in flight.
    pub fn unfailed(&mut self) {
        if self.stage == Stage::Pending {
            self.table.update(self.shard, &self.key, |e| {
                e.pending = e.pending.saturating_sub(1);
                e.in_flight += 1;
            });
            self.stage = Stage::InFlight;
        }
    }

    /// The failure committed and this node has applied it: replicated
    /// state counts it from now on.
    pub fn committed(mut self) {
        self.settle(|_| {});
    }

    /// Frees the slot without counting anything here: a guess that was
    /// right but led nowhere, or one for a user that no longer exists.
    pub fn release(mut self) {
        self.settle(|_| {});
    }

    /// The failure could not be committed (or this node cannot confirm it
    /// applied it): kept here, as a failure at `now`.
    pub fn uncommitted(mut self, now: i64) {
        self.keep_local(now);
    }

    /// The right password: frees the slot and forgets this node's
    /// unreflected failures of the user, as a success resets the
    /// replicated count. Other guesses' pending failures stay pending.
    pub fn succeeded(mut self) {
        self.settle(|e| e.local.clear());
    }

    /// A pending failure (if it was one) stays here, at `now`.
    fn keep_local(&mut self, now: i64) {
        if self.stage == Stage::Pending {
            self.settle(|e| e.push_local(now));
        } else {
            self.settle(|_| {});
        }
    }

    /// Gives the slot back (whichever stage it is in), then applies `f`.
    fn settle(&mut self, f: impl FnOnce(&mut Entry)) {
        let stage = std::mem::replace(&mut self.stage, Stage::Done);
        if stage == Stage::Done {
            return;
        }
        self.table.update(self.shard, &self.key, |e| {
            match stage {
                Stage::InFlight => e.in_flight = e.in_flight.saturating_sub(1),
                Stage::Pending => e.pending = e.pending.saturating_sub(1),
                Stage::Done => {}
            }
            f(e);
        });
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.stage != Stage::Done {
            let now = (self.table.clock)();
            self.keep_local(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn fixed_clock() -> i64 {
        T0
    }

    fn table() -> Arc<Attempts> {
        Arc::new(Attempts::new(1024, fixed_clock))
    }

    type Never = std::convert::Infallible;

    /// A reservation for user `s` that does not wait.
    async fn reserve(t: &Arc<Attempts>, now: i64, r: Option<LockoutState>) -> Result<Reservation, Refusal> {
        reserve_for(t, "s", now, r).await
    }

    async fn reserve_for(
        t: &Arc<Attempts>,
        sub: &str,
        now: i64,
        r: Option<LockoutState>,
    ) -> Result<Reservation, Refusal> {
        match t.reserve("p", sub, now, Duration::ZERO, || Ok::<_, Never>(r)).await {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    fn failures(times: &[i64]) -> LockoutState {
        let mut s = LockoutState::default();
        for t in times {
            s.record_failure(*t);
        }
        s
    }

    #[tokio::test]
    async fn in_flight_guesses_count_against_the_threshold() {
        let t = table();
        let mut held = Vec::new();
        for _ in 0..THRESHOLD {
            held.push(reserve(&t, T0, None).await.expect("a slot"));
        }
        assert_eq!(reserve(&t, T0, None).await.unwrap_err(), Refusal::Busy);
        assert!(
            reserve_for(&t, "other", T0, None).await.is_ok(),
            "another user is not affected"
        );
        drop(held);
        assert_eq!(t.users(), 0, "released slots leave nothing behind");
        assert!(
            reserve(&t, T0, None).await.is_ok(),
            "slots freed by a drop are free again"
        );
    }

    #[tokio::test]
    async fn pending_failures_lock_until_resolved_then_count_locally() {
        let t = table();
        let mut held = Vec::new();
        for _ in 0..THRESHOLD {
            held.push(reserve(&t, T0, None).await.unwrap());
        }
        for r in &mut held {
            r.failed();
        }
        // Pending failures count at "now": locked however long they pend.
        let later = T0 + 60_000;
        assert_eq!(
            reserve(&t, later, None).await.unwrap_err(),
            Refusal::Locked { for_ms: 1000 }
        );
        // The writes fail at `later`: kept locally, locked 1 s from then.
        for r in held {
            r.uncommitted(later);
        }
        assert_eq!(
            reserve(&t, later + 999, None).await.unwrap_err(),
            Refusal::Locked { for_ms: 1 }
        );
        // After the lock, one guess at a time; its failure locks for 2 s.
        let mut one = reserve(&t, later + 1000, None).await.expect("one guess after the lock");
        assert_eq!(reserve(&t, later + 1000, None).await.unwrap_err(), Refusal::Busy);
        one.failed();
        one.uncommitted(later + 1000);
        assert_eq!(
            reserve(&t, later + 2999, None).await.unwrap_err(),
            Refusal::Locked { for_ms: 1 }
        );
        // Local failures expire like replicated ones.
        let quiet = later + 3000 + QUIET_RESET_MS;
        let mut held = Vec::new();
        for _ in 0..THRESHOLD {
            held.push(reserve(&t, quiet, None).await.expect("the count started over"));
        }
        drop(held);
        assert_eq!(t.users(), 0);
    }

    #[tokio::test]
    async fn committed_failures_are_not_counted_twice() {
        let t = table();
        let mut r = reserve(&t, T0, None).await.unwrap();
        r.failed();
        r.committed();
        assert_eq!(t.users(), 0, "a committed failure is counted by replicated state only");
        // Replicated state shows 4 failures: one slot is left.
        let replicated = failures(&[T0, T0 + 1, T0 + 2, T0 + 3]);
        let one = reserve(&t, T0 + 10, Some(replicated)).await.unwrap();
        assert_eq!(reserve(&t, T0 + 10, Some(replicated)).await.unwrap_err(), Refusal::Busy);
        drop(one);
        // A replicated lock refuses without any local entry.
        let locked = failures(&[T0, T0 + 1, T0 + 2, T0 + 3, T0 + 20]);
        assert_eq!(
            reserve(&t, T0 + 20, Some(locked)).await.unwrap_err(),
            Refusal::Locked { for_ms: 1000 }
        );
    }

    #[tokio::test]
    async fn replicated_and_local_failures_add_up() {
        let t = table();
        let replicated = failures(&[T0, T0 + 1, T0 + 2]);
        let mut a = reserve(&t, T0 + 10, Some(replicated)).await.unwrap();
        let mut b = reserve(&t, T0 + 10, Some(replicated)).await.unwrap();
        assert_eq!(reserve(&t, T0 + 10, Some(replicated)).await.unwrap_err(), Refusal::Busy);
        a.failed();
        a.uncommitted(T0 + 20);
        b.failed();
        b.uncommitted(T0 + 30);
        assert_eq!(
            reserve(&t, T0 + 30, Some(replicated)).await.unwrap_err(),
            Refusal::Locked { for_ms: 1000 }
        );
    }

    #[tokio::test]
    async fn dropping_a_pending_failure_keeps_it() {
        let t = table();
        let mut held = Vec::new();
        for _ in 0..THRESHOLD {
            held.push(reserve(&t, T0, None).await.unwrap());
        }
        for r in &mut held {
            r.failed();
        }
        // Cancelled while writing: the fate is unknown, so it counts, at
        // the table's clock (T0).
        drop(held);
        assert_eq!(
            reserve(&t, T0 + 500, None).await.unwrap_err(),
            Refusal::Locked { for_ms: 500 }
        );
    }

    #[tokio::test]
    async fn success_frees_the_slot_and_forgets_local_failures() {
        let t = table();
        let mut r = reserve(&t, T0, None).await.unwrap();
        r.failed();
        r.uncommitted(T0);
        let ok = reserve(&t, T0 + 1, None).await.unwrap();
        let mut pending = reserve(&t, T0 + 1, None).await.unwrap();
        pending.failed();
        ok.succeeded();
        pending.committed();
        assert_eq!(t.users(), 0);
        let mut r = reserve(&t, T0 + 2, None).await.unwrap();
        r.failed();
        r.unfailed();
        r.succeeded();
        assert_eq!(t.users(), 0);
    }

    #[test]
    fn local_failures_per_user_are_bounded() {
        let mut e = Entry::default();
        for i in 0..(MAX_LOCAL_FAILURES as i64 + 10) {
            e.push_local(T0 + i);
        }
        assert_eq!(e.local.len(), MAX_LOCAL_FAILURES);
        assert_eq!(e.local.first(), Some(&(T0 + 10)), "the oldest are dropped");
    }

    #[tokio::test]
    async fn a_full_table_refuses_new_users_until_entries_expire() {
        let t = Arc::new(Attempts::new(SHARDS, fixed_clock));
        // One user per shard fills the table, each with a local failure.
        let mut users = Vec::new();
        for n in 0..10_000 {
            if t.users() == SHARDS {
                break;
            }
            let sub = format!("u{n}");
            if let Ok(mut r) = reserve_for(&t, &sub, T0, None).await {
                r.failed();
                r.uncommitted(T0);
                users.push(sub);
            }
        }
        assert_eq!(t.users(), SHARDS);
        for i in 0..200 {
            assert_eq!(
                reserve_for(&t, &format!("new{i}"), T0 + 1, None).await.unwrap_err(),
                Refusal::Full,
                "no new user fits while every entry is live"
            );
        }
        assert!(
            reserve_for(&t, &users[0], T0 + 2, None).await.is_ok(),
            "known users still get their slots"
        );
        let late = T0 + ENTRY_LIFETIME_MS + 1;
        assert!(
            reserve_for(&t, "new0", late, None).await.is_ok(),
            "a sweep makes room once entries expired"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_waiting_guess_gets_a_slot_when_a_right_one_ends() {
        let t = table();
        let mut held = Vec::new();
        for _ in 0..THRESHOLD {
            held.push(reserve(&t, T0, None).await.unwrap());
        }
        let waiter = {
            let t = t.clone();
            tokio::spawn(async move {
                t.reserve("p", "s", T0, Duration::from_secs(10), || Ok::<_, Never>(None))
                    .await
                    .map(|r| r.map(drop))
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "waits while every slot is in flight");
        if let Some(r) = held.pop() {
            r.succeeded();
        }
        assert_eq!(waiter.await.unwrap().unwrap(), Ok(()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn waiting_guesses_are_refused_once_the_evaluated_ones_fail() {
        let t = table();
        let mut held = Vec::new();
        for _ in 0..THRESHOLD {
            held.push(reserve(&t, T0, None).await.unwrap());
        }
        let waiters: Vec<_> = (0..20)
            .map(|_| {
                let t = t.clone();
                tokio::spawn(async move {
                    t.reserve("p", "s", T0, Duration::from_secs(10), || Ok::<_, Never>(None))
                        .await
                        .map(|r| r.map(drop))
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        for r in &mut held {
            r.failed();
        }
        for w in waiters {
            assert_eq!(w.await.unwrap().unwrap(), Err(Refusal::Locked { for_ms: 1000 }));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_tasks_never_exceed_the_threshold() {
        let t = table();
        let running = Arc::new(AtomicU32::new(0));
        let peak = Arc::new(AtomicU32::new(0));
        let evaluated = Arc::new(AtomicU32::new(0));
        // What "replicated state" holds: the failures whose write committed.
        let replicated = Arc::new(Mutex::new(LockoutState::default()));
        let tasks: Vec<_> = (0..200u32)
            .map(|i| {
                let (t, running, peak, evaluated) = (t.clone(), running.clone(), peak.clone(), evaluated.clone());
                let replicated = replicated.clone();
                tokio::spawn(async move {
                    let read = || Ok::<_, Never>(Some(*replicated.lock().unwrap()));
                    let reserved = t.reserve("p", "s", T0, Duration::from_secs(10), read).await;
                    let Ok(Ok(mut r)) = reserved else {
                        return;
                    };
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    evaluated.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    // Every guess is wrong; some writes commit, some fail,
                    // some are cancelled.
                    r.failed();
                    tokio::task::yield_now().await;
                    match i % 3 {
                        0 => r.uncommitted(T0),
                        1 => drop(r),
                        _ => {
                            // Applied here first, then the slot goes.
                            replicated.lock().unwrap().record_failure(T0);
                            r.committed();
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= THRESHOLD);
        assert!(evaluated.load(Ordering::SeqCst) <= THRESHOLD);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn cancelled_tasks_release_their_slots() {
        let t = table();
        let tasks: Vec<_> = (0..THRESHOLD)
            .map(|_| {
                let t = t.clone();
                tokio::spawn(async move {
                    let _r = t.reserve("p", "s", T0, Duration::ZERO, || Ok::<_, Never>(None)).await;
                    std::future::pending::<()>().await;
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(reserve(&t, T0, None).await.unwrap_err(), Refusal::Busy);
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        assert_eq!(t.users(), 0, "aborted evaluations free their slots");
        assert!(reserve(&t, T0, None).await.is_ok());
    }
}
