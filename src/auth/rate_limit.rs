//! Per-address and per-destination rate limits for the guest-facing calls
//! that create users or send or check one-time codes.
//!
//! Keyed GCRA limiters from the maintained `governor` crate, kept in memory
//! on the node that serves the call. A check is O(1): a hash lookup in a
//! sharded map (`dashmap`) and one compare-and-swap, never a scan and never
//! one lock for every caller. Per-user limits are replicated and live in
//! `apply` (a user's code sends are counted cluster-wide); an address or a
//! destination is only seen by the nodes that serve it, so these limits are
//! per node: the cluster-wide worst case is the limit times the number of
//! nodes an attacker can reach.
//!
//! * An IPv4 caller is keyed by its address, an IPv6 caller by its /64 (one
//!   subscriber usually gets a whole /64, so per-address keys would give
//!   them 2^64 buckets). IPv4-mapped IPv6 addresses count as IPv4.
//! * A destination is the email address or phone number a message goes to,
//!   lowercased, so many accounts naming one victim cannot flood them.
//!
//! Memory stays bounded: keys whose bucket is full again (indistinguishable
//! from a fresh one) are dropped every [`HOUSEKEEPING_EVERY`] checks once
//! the table holds more than [`MAX_KEYS`].

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::Quota;

/// What a call does, for limiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LimitKind {
    /// Sends a code (forgot password, resend, attribute verification).
    CodeSend,
    /// Checks a code (confirm sign-up or reset, verify attribute).
    CodeCheck,
    /// Creates a user (`SignUp`).
    SignUp,
    /// A guest call of an identity pool (`GetId` or credentials with no login).
    Guest,
}

/// A bucket's size and refill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many calls may come at once; 0 turns the limit off.
    pub burst: u32,
    /// Calls earned back per `per`.
    pub refill: u32,
    /// The period over which `refill` calls come back.
    pub per: Duration,
}

impl Rate {
    /// `burst` at once, `per_minute` earned back each minute.
    pub fn per_minute(burst: u32, per_minute: u32) -> Self {
        Rate {
            burst,
            refill: per_minute,
            per: Duration::from_secs(60),
        }
    }

    /// `burst` at once, `per_hour` earned back each hour.
    pub fn per_hour(burst: u32, per_hour: u32) -> Self {
        Rate {
            burst,
            refill: per_hour,
            per: Duration::from_secs(3600),
        }
    }

    fn quota(self) -> Option<Quota> {
        let burst = NonZeroU32::new(self.burst)?;
        // A refill of 0 means the burst never comes back within any
        // practical time: one token per year.
        let period = match self.refill {
            0 => Duration::from_secs(365 * 24 * 3600),
            n => (self.per / n).max(Duration::from_nanos(1)),
        };
        Some(Quota::with_period(period)?.allow_burst(burst))
    }
}

/// The limits of one node, as configured under `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    /// Code sends per caller address.
    pub code_send: Rate,
    /// Code checks per caller address.
    pub code_check: Rate,
    /// Sign-ups per caller address.
    pub sign_up: Rate,
    /// Messages to one email address or phone number.
    pub destination: Rate,
    /// Guest calls of identity pools per caller address.
    pub guest: Rate,
}

/// Keys beyond which idle buckets are swept.
pub const MAX_KEYS: usize = 100_000;
/// How often (in checks) the table size is looked at.
pub const HOUSEKEEPING_EVERY: u64 = 4096;

type Keyed<C> = governor::RateLimiter<String, DashMapStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One keyed limiter, or none when its burst is 0.
struct Bucket<C: Clock> {
    limiter: Option<Keyed<C>>,
}

impl<C: Clock + Clone> Bucket<C> {
    fn new(rate: Rate, clock: &C) -> Self {
        Bucket {
            limiter: rate
                .quota()
                .map(|q| governor::RateLimiter::new(q, DashMapStateStore::default(), clock.clone())),
        }
    }

    fn allow(&self, key: &str, checks: u64) -> bool {
        let Some(l) = &self.limiter else {
            return true;
        };
        if checks.is_multiple_of(HOUSEKEEPING_EVERY) && l.len() > MAX_KEYS {
            l.retain_recent();
            l.shrink_to_fit();
        }
        l.check_key(&key.to_string()).is_ok()
    }
}

/// The limiter of one node. `C` is the clock (`governor`'s fake clock in
/// tests).
pub struct RateLimiter<C: Clock = DefaultClock> {
    code_send: Bucket<C>,
    code_check: Bucket<C>,
    sign_up: Bucket<C>,
    destination: Bucket<C>,
    guest: Bucket<C>,
    checks: AtomicU64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").finish_non_exhaustive()
    }
}

impl RateLimiter<DefaultClock> {
    /// Limits on the real clock.
    pub fn new(rates: Rates) -> Self {
        Self::with_clock(rates, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    /// Limits on `clock`.
    pub fn with_clock(rates: Rates, clock: C) -> Self {
        RateLimiter {
            code_send: Bucket::new(rates.code_send, &clock),
            code_check: Bucket::new(rates.code_check, &clock),
            sign_up: Bucket::new(rates.sign_up, &clock),
            destination: Bucket::new(rates.destination, &clock),
            guest: Bucket::new(rates.guest, &clock),
            checks: AtomicU64::new(1),
        }
    }

    /// Takes one token for the caller at `ip` and `kind`; `false` means the
    /// caller is over its rate and should be refused.
    pub fn allow(&self, ip: &str, kind: LimitKind) -> bool {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        let bucket = match kind {
            LimitKind::CodeSend => &self.code_send,
            LimitKind::CodeCheck => &self.code_check,
            LimitKind::SignUp => &self.sign_up,
            LimitKind::Guest => &self.guest,
        };
        bucket.allow(&address_key(ip), n)
    }

    /// Takes one token for messages to `destination` (an email address or
    /// phone number); `false` means it was sent too many already.
    pub fn allow_destination(&self, destination: &str) -> bool {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        self.destination.allow(&destination_key(destination), n)
    }
}

/// The key of a caller's address: IPv4 as is, IPv6 by its /64.
pub fn address_key(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        // Not an address (a test double or a proxy's label): itself, bounded.
        Err(_) => ip.chars().take(64).collect(),
    }
}

/// The key of a destination: trimmed and lowercased, bounded.
pub fn destination_key(destination: &str) -> String {
    destination.trim().to_lowercase().chars().take(320).collect()
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn rates(send: Rate) -> Rates {
        Rates {
            code_send: send,
            code_check: Rate::per_minute(0, 0),
            sign_up: Rate::per_minute(2, 60),
            destination: Rate::per_hour(3, 3),
            guest: Rate::per_minute(0, 0),
        }
    }

    #[test]
    fn bursts_then_refills_per_address() {
        let clock = FakeRelativeClock::default();
        let l = RateLimiter::with_clock(rates(Rate::per_minute(3, 60)), clock.clone());
        for _ in 0..3 {
            assert!(l.allow("10.0.0.1", LimitKind::CodeSend));
        }
        assert!(!l.allow("10.0.0.1", LimitKind::CodeSend));
        assert!(l.allow("10.0.0.2", LimitKind::CodeSend), "addresses are separate");
        clock.advance(Duration::from_millis(500));
        assert!(!l.allow("10.0.0.1", LimitKind::CodeSend));
        clock.advance(Duration::from_millis(500));
        assert!(l.allow("10.0.0.1", LimitKind::CodeSend), "one token per second");
        for _ in 0..1000 {
            assert!(l.allow("10.0.0.1", LimitKind::CodeCheck), "burst 0 means unlimited");
        }
        assert!(l.allow("10.0.0.1", LimitKind::SignUp));
        assert!(l.allow("10.0.0.1", LimitKind::SignUp));
        assert!(!l.allow("10.0.0.1", LimitKind::SignUp), "kinds have their own buckets");
    }

    /// An IPv6 attacker who rotates through its /64 stays in one bucket;
    /// the next /64 is someone else.
    #[test]
    fn ipv6_is_keyed_by_slash_64() {
        assert_eq!(address_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(address_key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
        assert_eq!(address_key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(address_key("192.0.2.7"), "192.0.2.7");
        let l = RateLimiter::with_clock(rates(Rate::per_minute(3, 1)), FakeRelativeClock::default());
        for host in 1..=3 {
            assert!(l.allow(&format!("2001:db8:1:2::{host:x}"), LimitKind::CodeSend));
        }
        for host in [4u32, 0xffff, 0xdead] {
            assert!(
                !l.allow(&format!("2001:db8:1:2:{host:x}::9"), LimitKind::CodeSend),
                "a new host in the same /64 shares the bucket"
            );
        }
        assert!(l.allow("2001:db8:1:3::1", LimitKind::CodeSend), "another /64");
    }

    #[test]
    fn destinations_are_limited_case_insensitively() {
        let l = RateLimiter::with_clock(rates(Rate::per_minute(0, 0)), FakeRelativeClock::default());
        assert!(l.allow_destination("Victim@Example.com"));
        assert!(l.allow_destination("victim@example.com"));
        assert!(l.allow_destination(" victim@EXAMPLE.com "));
        assert!(!l.allow_destination("victim@example.com"));
        assert!(l.allow_destination("other@example.com"));
    }
}
