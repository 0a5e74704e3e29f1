//! Brute-force protection, as Cognito does it: after [`THRESHOLD`] failed
//! sign-ins a user is locked out for `2^(n - THRESHOLD)` seconds after the
//! n-th failure, capped at [`MAX_LOCK_MS`]; a success, or [`QUIET_RESET_MS`]
//! without failures after the last lock ends, starts over.
//!
//! The state is replicated (failures are Raft writes), so attempts spread
//! over every node count against one counter. Time is a parameter: `apply`
//! passes the proposer's clock, tests pass whatever they like.

use serde::{Deserialize, Serialize};

/// Failures tolerated before the first lock.
pub const THRESHOLD: u32 = 5;
/// Longest single lock.
pub const MAX_LOCK_MS: i64 = 15 * 60 * 1000;
/// Quiet time after the last failure that forgets the count.
pub const QUIET_RESET_MS: i64 = 15 * 60 * 1000;

/// A user's failed sign-ins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutState {
    /// Failures counted since the last success or quiet reset.
    pub failures: u32,
    /// Unix ms of the latest failure.
    pub last_failure_at: i64,
    /// Attempts before this time (Unix ms) are refused without checking
    /// the password.
    pub locked_until: i64,
}

impl LockoutState {
    /// The failures that still count at `now`. Quiet time runs from the
    /// end of the last lock, so waiting out a long lock does not by itself
    /// wipe the count.
    pub fn live_failures(&self, now: i64) -> u32 {
        if now - self.last_failure_at.max(self.locked_until) >= QUIET_RESET_MS {
            0
        } else {
            self.failures
        }
    }

    /// Counts a failure at `now`. Returns whether it (re)locked the user.
    pub fn record_failure(&mut self, now: i64) -> bool {
        self.failures = self.live_failures(now).saturating_add(1);
        self.last_failure_at = now;
        if self.failures >= THRESHOLD {
            let exp = (self.failures - THRESHOLD).min(20);
            self.locked_until = now + (1000i64 << exp).min(MAX_LOCK_MS);
            true
        } else {
            self.locked_until = 0;
            false
        }
    }

    /// Milliseconds the user stays locked at `now`, if locked.
    pub fn locked_for(&self, now: i64) -> Option<i64> {
        (now < self.locked_until).then(|| self.locked_until - now)
    }

    /// Whether a success at `now` has anything to reset (if not, the
    /// success needs no write).
    pub fn needs_reset(&self, now: i64) -> bool {
        self.live_failures(now) > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_fifth_failure_and_caps() {
        let mut s = LockoutState::default();
        let mut t = 1_000_000;
        for _ in 0..4 {
            assert!(!s.record_failure(t));
            assert_eq!(s.locked_for(t), None);
            t += 10;
        }
        assert!(s.record_failure(t));
        assert_eq!(s.locked_for(t), Some(1000));
        t += 1000;
        assert_eq!(s.locked_for(t), None);
        s.record_failure(t);
        assert_eq!(s.locked_for(t), Some(2000));
        t += 2000;
        s.record_failure(t);
        assert_eq!(s.locked_for(t), Some(4000));
        for _ in 0..30 {
            t += s.locked_for(t).unwrap_or(0);
            s.record_failure(t);
        }
        assert_eq!(s.locked_for(t), Some(MAX_LOCK_MS));
    }

    #[test]
    fn quiet_time_forgets() {
        let mut s = LockoutState::default();
        for i in 0..4 {
            s.record_failure(i);
        }
        assert!(s.needs_reset(10));
        assert!(!s.needs_reset(3 + QUIET_RESET_MS));
        assert!(!s.record_failure(3 + QUIET_RESET_MS), "the count started over");
        assert_eq!(s.failures, 1);
    }
}
