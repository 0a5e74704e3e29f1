//! Per-address rate limits for the calls that send or check one-time codes.
//!
//! Token buckets keyed by (client address, kind of call), kept in memory on
//! the node that serves the call. Per-user limits are replicated and live
//! in `apply` (a user's code sends are counted cluster-wide); an address is
//! only ever seen by the nodes it talks to, so its buckets stay local. The
//! table is bounded: when full, the bucket touched longest ago is evicted.
//!
//! Time is a parameter (milliseconds), so tests drive it directly.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// What a call does, for limiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LimitKind {
    /// Sends a code (forgot password, resend, attribute verification).
    CodeSend,
    /// Checks a code (confirm sign-up or reset, verify attribute).
    CodeCheck,
}

/// A bucket's size and refill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    /// Tokens added per minute.
    pub per_minute: u32,
}

/// Most buckets kept; an address beyond it evicts the stalest.
pub const MAX_BUCKETS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens in thousandths, so slow refills stay exact.
    milli_tokens: u64,
    updated_ms: i64,
}

/// The limiter of one node.
#[derive(Debug)]
pub struct RateLimiter {
    send: Rate,
    check: Rate,
    buckets: Mutex<BTreeMap<(String, LimitKind), Bucket>>,
}

impl RateLimiter {
    pub fn new(send: Rate, check: Rate) -> Self {
        RateLimiter {
            send,
            check,
            buckets: Mutex::new(BTreeMap::new()),
        }
    }

    /// Takes one token for `address` and `kind` at `now_ms`; `false` means
    /// the caller is over its rate and should be refused.
    pub fn allow(&self, address: &str, kind: LimitKind, now_ms: i64) -> bool {
        let rate = match kind {
            LimitKind::CodeSend => self.send,
            LimitKind::CodeCheck => self.check,
        };
        if rate.burst == 0 {
            return true;
        }
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        let key = (address.to_string(), kind);
        if !buckets.contains_key(&key) && buckets.len() >= MAX_BUCKETS {
            let stalest = buckets.iter().min_by_key(|(_, b)| b.updated_ms).map(|(k, _)| k.clone());
            if let Some(k) = stalest {
                buckets.remove(&k);
            }
        }
        let full = u64::from(rate.burst) * 1000;
        let b = buckets.entry(key).or_insert(Bucket {
            milli_tokens: full,
            updated_ms: now_ms,
        });
        let elapsed = (now_ms - b.updated_ms).max(0) as u64;
        // per_minute tokens per 60,000 ms = per_minute milli-tokens per 60 ms.
        let refill = elapsed * u64::from(rate.per_minute) / 60;
        b.milli_tokens = (b.milli_tokens + refill).min(full);
        b.updated_ms = now_ms;
        if b.milli_tokens >= 1000 {
            b.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_per_address() {
        let l = RateLimiter::new(
            Rate {
                burst: 3,
                per_minute: 60,
            },
            Rate {
                burst: 0,
                per_minute: 0,
            },
        );
        for _ in 0..3 {
            assert!(l.allow("10.0.0.1", LimitKind::CodeSend, 0));
        }
        assert!(!l.allow("10.0.0.1", LimitKind::CodeSend, 0));
        assert!(l.allow("10.0.0.2", LimitKind::CodeSend, 0), "addresses are separate");
        assert!(!l.allow("10.0.0.1", LimitKind::CodeSend, 500));
        assert!(l.allow("10.0.0.1", LimitKind::CodeSend, 1000), "one token per second");
        assert!(l.allow("10.0.0.1", LimitKind::CodeCheck, 0), "burst 0 means unlimited");
    }
}
