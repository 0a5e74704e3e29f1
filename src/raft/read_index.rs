//! Coalescing of ReadIndex rounds.
//!
//! A read barrier costs the leader one quorum round (ReadIndex: a heartbeat
//! that a majority must answer). Without coalescing, a flood of admin reads
//! with `consistent = true` turns into as many rounds, all queued on the
//! leader's single Raft core, and writes stall behind them.
//!
//! [`ReadIndexCoalescer`] lets every caller on a node share one round in
//! flight. A round only proves what was committed *before it started*, so
//! a caller that arrives while a round is already running cannot use that
//! round's answer: it waits for the next one, which starts as soon as the
//! current one ends and serves everyone who arrived meanwhile. So with any
//! number of concurrent callers there are at most two rounds per round-trip
//! time, and each caller still observes every write acknowledged before its
//! call began (linearizable reads are preserved).
//!
//! The coalescer never holds its lock across an `await`, and a driver that
//! is cancelled mid-round hands the job to the next waiter (drop guard), so
//! a dropped request cannot wedge the node's barriers.

use std::future::Future;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;

use super::ConsensusError;

/// A round's result as every caller that shares it sees it.
pub type SharedResult = Result<u64, Arc<ConsensusError>>;

/// What a caller does next.
enum Step {
    Done(SharedResult),
    Drive(u64),
    Wait(watch::Receiver<u64>),
}

#[derive(Debug)]
struct State {
    /// Number of the last round started (rounds are numbered from 1).
    started: u64,
    /// Whether round `started` is still running.
    in_flight: bool,
    /// Number of the last round that finished, and what it returned.
    done: u64,
    last: Option<SharedResult>,
}

/// Shares ReadIndex rounds among the concurrent callers of one node.
#[derive(Debug)]
pub struct ReadIndexCoalescer {
    state: Mutex<State>,
    /// Carries `done` to waiters.
    finished: watch::Sender<u64>,
    /// Rounds actually sent to the leader.
    pub rounds: Counter,
    /// Callers that asked for a barrier.
    pub callers: Counter,
}

impl Default for ReadIndexCoalescer {
    fn default() -> Self {
        Self::new(Counter::default(), Counter::default())
    }
}

/// Marks an abandoned round as finished-without-result, so a waiter starts
/// a new one instead of waiting forever.
struct DriverGuard<'a> {
    c: &'a ReadIndexCoalescer,
    armed: bool,
}

impl Drop for DriverGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut s = self.c.lock();
            s.in_flight = false;
            drop(s);
            // Wake the waiters; none of them is satisfied, one starts anew.
            self.c.finished.send_modify(|_| {});
        }
    }
}

impl ReadIndexCoalescer {
    /// A coalescer counting into `rounds` and `callers` (registered metrics).
    pub fn new(rounds: Counter, callers: Counter) -> Self {
        ReadIndexCoalescer {
            state: Mutex::new(State {
                started: 0,
                in_flight: false,
                done: 0,
                last: None,
            }),
            finished: watch::channel(0).0,
            rounds,
            callers,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Returns a read index from a round that started after this call did,
    /// running `round` only if no such round is already under way.
    pub async fn read_index<F, Fut>(&self, round: F) -> SharedResult
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<u64, ConsensusError>>,
    {
        self.callers.inc();
        let target = {
            let s = self.lock();
            // Round `started` (if running) began before us; we need the next.
            s.started + 1
        };
        loop {
            let next = self.step(target);
            match next {
                Step::Done(r) => return r,
                Step::Drive(n) => return self.drive(n, &round).await,
                Step::Wait(mut rx) => {
                    // The lock is released: wait for the running round to end.
                    if rx.changed().await.is_err() {
                        return Err(Arc::new(ConsensusError::Unavailable(
                            "read barrier coalescer closed".into(),
                        )));
                    }
                }
            }
        }
    }

    /// Decides, under the lock, what a caller needing round `target` does.
    fn step(&self, target: u64) -> Step {
        let mut s = self.lock();
        if s.done >= target {
            if let Some(r) = &s.last {
                return Step::Done(r.clone());
            }
        }
        if !s.in_flight {
            s.in_flight = true;
            s.started += 1;
            return Step::Drive(s.started);
        }
        Step::Wait(self.finished.subscribe())
    }

    async fn drive<F, Fut>(&self, n: u64, round: &F) -> SharedResult
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<u64, ConsensusError>>,
    {
        let mut guard = DriverGuard { c: self, armed: true };
        self.rounds.inc();
        let result: SharedResult = round().await.map_err(Arc::new);
        guard.armed = false;
        {
            let mut s = self.lock();
            s.in_flight = false;
            s.done = n;
            s.last = Some(result.clone());
        }
        self.finished.send_replace(n);
        result
    }
}

/// Turns a shared error back into an owned one for the caller.
pub fn owned_error(e: Arc<ConsensusError>) -> ConsensusError {
    Arc::try_unwrap(e).unwrap_or_else(|shared| (*shared).clone())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    /// 200 concurrent barriers against a round that takes 20 ms: they share
    /// rounds (at most a handful), and every caller gets an index from a
    /// round that started after it arrived.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_barriers_share_rounds() {
        let c = Arc::new(ReadIndexCoalescer::default());
        let commit = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let c = c.clone();
            let commit = commit.clone();
            tasks.push(tokio::spawn(async move {
                // What was committed when this caller arrived.
                let seen = commit.fetch_add(1, Ordering::SeqCst) + 1;
                let idx = c
                    .read_index(|| {
                        let commit = commit.clone();
                        async move {
                            let at_start = commit.load(Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok(at_start)
                        }
                    })
                    .await
                    .unwrap();
                assert!(idx >= seen, "index {idx} misses a write {seen} made before the call");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let rounds = c.rounds.get();
        assert_eq!(c.callers.get(), 200);
        assert!(rounds <= 10, "{rounds} rounds for 200 callers");
    }

    /// A driver cancelled mid-round does not wedge the others.
    #[tokio::test]
    async fn cancelled_driver_hands_over() {
        let c = Arc::new(ReadIndexCoalescer::default());
        let slow = {
            let c = c.clone();
            tokio::spawn(async move {
                c.read_index(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(1)
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.read_index(|| async { Ok(7) }).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        slow.abort();
        let r = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.unwrap(), 7);
        assert_eq!(c.rounds.get(), 2);
    }

    /// Errors reach every caller of the round.
    #[tokio::test]
    async fn errors_are_shared() {
        let c = ReadIndexCoalescer::default();
        let r = c
            .read_index(|| async { Err(ConsensusError::Unavailable("no leader".into())) })
            .await;
        assert!(matches!(owned_error(r.unwrap_err()), ConsensusError::Unavailable(_)));
    }
}
