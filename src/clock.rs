//! The one place that reads the wall clock and draws randomness.
//!
//! `clippy.toml` bans `SystemTime::now`, `Instant::now` and the RNG entry
//! points crate-wide so that nothing on the replicated apply path can reach
//! them by accident (ARCHITECTURE.md §2.1). Code that *prepares* commands, or
//! measures latency, comes here instead; `apply` never does.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::RngCore;

/// Milliseconds since the Unix epoch, for timestamps carried in commands.
#[allow(clippy::disallowed_methods)] // the sanctioned clock read
pub fn now_millis() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A monotonic instant, for latency measurement and deadlines only.
#[allow(clippy::disallowed_methods)] // monotonic time never enters apply
pub fn instant() -> Instant {
    Instant::now()
}

/// `n` bytes from the operating system's CSPRNG, for ids, tokens and salts.
#[allow(clippy::disallowed_methods)] // randomness is drawn while preparing
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::rng().fill_bytes(&mut out);
    out
}

/// A fresh random UUID (v4), for ids chosen while preparing a command.
#[allow(clippy::disallowed_methods)] // randomness is drawn while preparing
pub fn new_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(random_bytes::<16>()).into_uuid()
}
