//! Bounded staleness: how long ago a quorum last vouched for this node's
//! state, and the background task that keeps asking.
//!
//! Sign-in, refresh and access-token checks read only the local state
//! machine (ARCHITECTURE.md §1). A node cut off from the quorum would go on
//! answering them from state that no longer holds: a refresh token revoked,
//! a user disabled or a password changed through the majority is still good
//! on the minority side. [`Freshness`] bounds that window. A node is *fresh*
//! while a read barrier (a ReadIndex round confirmed by a quorum, then
//! applied locally) that **started** less than `max_staleness` ago has
//! succeeded. Everything committed before that round started is applied
//! here, so a fresh node's security state is at most `max_staleness` behind
//! the cluster's.
//!
//! The rule holds for every role, because a ReadIndex round only succeeds
//! when a quorum answers the current leader:
//! * a follower (or learner) cut off from the leader cannot get a read
//!   index, so it goes stale `max_staleness` after its last round started;
//! * a leader cut off from the majority cannot confirm its leadership (the
//!   round needs fresh heartbeat acknowledgements from a quorum), so it goes
//!   stale the same way, even while it still believes it leads;
//! * a node that never completed a round since it started is stale.
//!
//! [`maintain`] runs one round every `max_staleness / 4`, so a healthy node
//! stays fresh with three spare rounds; a caller that finds the node stale
//! wakes it and waits briefly ([`Freshness::ensure`]) before being refused,
//! so that a node that just started, or just healed, is not refused for
//! want of a round. Only the start instant of a *successful* round counts,
//! so a round that hangs in a partition can never make a node look fresh.
//!
//! Time is a parameter ([`Freshness::check`] takes `now`) so the rule is
//! tested without sleeping; the monotonic clock is read through
//! [`crate::clock::instant`] only.
#![allow(
    clippy::disallowed_methods,
    reason = "staleness rounds are timed with the monotonic clock, beside the state machine"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use super::RaftNode;
use crate::clock;

/// Why a node refuses a call that depends on security state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Stale {
    /// The node that refused, so the caller knows which one is cut off.
    pub node_id: u64,
    /// Time since the start of the last quorum-confirmed round; `None` when
    /// no round succeeded since the node started.
    pub age: Option<Duration>,
    /// The configured bound (`raft.max_staleness`) the age exceeded.
    pub max_staleness: Duration,
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let max = secs(self.max_staleness);
        match self.age {
            Some(age) => write!(
                f,
                "node {} has not heard from a quorum for {} (max_staleness {max}); retry on another node",
                self.node_id,
                secs(age)
            ),
            None => write!(
                f,
                "node {} has not heard from a quorum since it started (max_staleness {max}); retry on another node",
                self.node_id
            ),
        }
    }
}

/// `4.2 s`, `3 s`, `0.25 s`: seconds as an operator reads them.
fn secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else if ms.is_multiple_of(100) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// The freshness of one node: the start of its latest quorum-confirmed
/// round, and the bound callers are held to.
#[derive(Debug)]
pub struct Freshness {
    node_id: u64,
    max_staleness: Duration,
    /// How long a caller that finds the node stale waits for a new round
    /// before it is refused.
    patience: Duration,
    /// Start instant of the latest successful round (monotone: a late
    /// answer to an older round never moves it back).
    confirmed: watch::Sender<Option<Instant>>,
    /// Asks [`maintain`] for a round now rather than at its next tick.
    wake: Notify,
}

impl Freshness {
    /// A node that has not yet heard from a quorum. `patience` is how long
    /// [`Freshness::ensure`] waits for a round before refusing (capped at
    /// `max_staleness`).
    pub fn new(node_id: u64, max_staleness: Duration, patience: Duration) -> Self {
        Freshness {
            node_id,
            max_staleness,
            patience: patience.min(max_staleness),
            confirmed: watch::Sender::new(None),
            wake: Notify::new(),
        }
    }

    /// The configured bound.
    pub fn max_staleness(&self) -> Duration {
        self.max_staleness
    }

    /// Records that a round which started at `started` was confirmed by a
    /// quorum and applied here. Never moves the instant backwards.
    pub fn record(&self, started: Instant) {
        self.confirmed.send_if_modified(|c| match c {
            Some(prev) if *prev >= started => false,
            _ => {
                *c = Some(started);
                true
            }
        });
    }

    /// Whether the node is fresh at `now`: the latest confirmed round
    /// started at most `max_staleness` before it.
    pub fn check(&self, now: Instant) -> Result<(), Stale> {
        let stale = |age| Stale {
            node_id: self.node_id,
            age,
            max_staleness: self.max_staleness,
        };
        match *self.confirmed.borrow() {
            None => Err(stale(None)),
            Some(at) => {
                let age = now.saturating_duration_since(at);
                if age <= self.max_staleness {
                    Ok(())
                } else {
                    Err(stale(Some(age)))
                }
            }
        }
    }

    /// [`Freshness::check`] now; when stale, asks for a round at once and
    /// waits up to the patience for one to succeed before refusing. Fresh
    /// callers pay one uncontended read lock and no wait.
    pub async fn ensure(&self) -> Result<(), Stale> {
        let now = clock::instant();
        if self.check(now).is_ok() {
            return Ok(());
        }
        let mut rx = self.confirmed.subscribe();
        self.wake.notify_one();
        let deadline = now + self.patience;
        loop {
            let remaining = deadline.saturating_duration_since(clock::instant());
            // Out of patience, or (never, while `self` holds the sender)
            // the channel closed: the answer is what the state says now.
            if remaining.is_zero() || !matches!(tokio::time::timeout(remaining, rx.changed()).await, Ok(Ok(()))) {
                return self.check(clock::instant());
            }
            if self.check(clock::instant()).is_ok() {
                return Ok(());
            }
        }
    }

    /// Interval between background rounds: four per window, so three may
    /// fail (an election, a slow disk) before a healthy node goes stale.
    fn interval(&self) -> Duration {
        (self.max_staleness / 4).max(Duration::from_millis(10))
    }

    /// Longest one round may take. A round that answers later than half the
    /// window would leave the node fresh for less than half of it; cutting
    /// it off lets the next one (for instance right after a partition
    /// heals) start.
    fn round_timeout(&self) -> Duration {
        (self.max_staleness / 2).max(Duration::from_millis(10))
    }
}

/// Keeps `node` fresh while it can reach a quorum: a read barrier every
/// `max_staleness / 4`, or at once when a stale caller asks, recording the
/// start of every round that succeeds. Stops when `stop` turns true.
pub async fn maintain(node: Arc<RaftNode>, mut stop: watch::Receiver<bool>) {
    let fresh = node.freshness();
    loop {
        if *stop.borrow() {
            return;
        }
        let started = clock::instant();
        match tokio::time::timeout(fresh.round_timeout(), node.read_barrier()).await {
            Ok(Ok(())) => fresh.record(started),
            Ok(Err(e)) => tracing::debug!(error = %e, "freshness round failed"),
            Err(_) => tracing::debug!(timeout = ?fresh.round_timeout(), "freshness round timed out"),
        }
        let next = started + fresh.interval();
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = fresh.wake.notified() => {}
            r = stop.changed() => {
                if r.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_millis(3000);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_node_is_fresh_only_within_max_staleness_of_its_last_confirmed_round() {
        let t0 = clock::instant();
        let f = Freshness::new(3, MAX, ms(500));
        // Never confirmed: stale, whatever the time.
        let e = f.check(t0).unwrap_err();
        assert_eq!(e.age, None);
        assert!(e.to_string().contains("since it started"), "{e}");

        f.record(t0);
        assert_eq!(f.check(t0), Ok(()));
        assert_eq!(f.check(t0 + MAX), Ok(()), "the bound is inclusive");
        let e = f.check(t0 + ms(4200)).unwrap_err();
        assert_eq!(e.age, Some(ms(4200)));
        assert_eq!(
            e.to_string(),
            "node 3 has not heard from a quorum for 4.2 s (max_staleness 3 s); retry on another node"
        );

        // A later round refreshes; an older answer arriving late does not
        // move the instant back.
        f.record(t0 + ms(2000));
        f.record(t0 + ms(100));
        assert_eq!(f.check(t0 + ms(5000)), Ok(()));
        assert!(f.check(t0 + ms(5001)).is_err());
        // An instant before the last record (a caller's clock read raced a
        // round) counts as age zero.
        assert_eq!(f.check(t0 + ms(1000)), Ok(()));
    }

    #[test]
    fn rounds_fit_the_window() {
        let f = Freshness::new(1, MAX, ms(10_000));
        assert_eq!(f.patience, MAX, "patience never exceeds the window");
        assert_eq!(f.interval(), ms(750));
        assert_eq!(f.round_timeout(), ms(1500));
        assert!(f.interval() * 4 <= f.max_staleness());
        assert_eq!(secs(ms(250)), "0.25 s");
        assert_eq!(secs(ms(2400)), "2.4 s");
    }

    #[tokio::test]
    async fn a_stale_caller_waits_for_a_round_then_is_refused_or_served() {
        let f = Arc::new(Freshness::new(2, MAX, ms(300)));
        // No round comes: refused after the patience.
        let started = clock::instant();
        let e = f.ensure().await.unwrap_err();
        assert!(started.elapsed() >= ms(300), "waited {:?}", started.elapsed());
        assert_eq!(e.node_id, 2);

        // A round that succeeds while the caller waits serves it: the
        // caller's wake-up reaches the round-runner, whose success ends
        // the wait.
        let f = Arc::new(Freshness::new(2, MAX, ms(5000)));
        let f2 = f.clone();
        let waiter = tokio::spawn(async move { f2.ensure().await });
        f.wake.notified().await;
        let asked = clock::instant();
        f.record(clock::instant());
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert!(asked.elapsed() < ms(2000), "served at once, not after the patience");
        // Fresh now: no wait at all.
        assert_eq!(f.ensure().await, Ok(()));
    }
}
