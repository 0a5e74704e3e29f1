//! The argon2 limit: how many argon2id hashes per second this machine's
//! cores can compute with a pool's parameters.
//!
//! A password sign-in verifies one argon2id hash and a sign-up computes one,
//! and at the recommended cost (m=19 MiB, t=2) that hash is nearly all of
//! the CPU a request takes. So the hash rate of all cores is the ceiling of
//! both flows, and "throughput / argon2 limit" says how much of the machine
//! the server turns into answers rather than overhead (gRPC, Raft, fsync,
//! token signing). The ratio is meaningful when the server runs on the same
//! cores as this measurement, as with `tessera dev` or a cluster on one host.
//!
//! The measurement hashes exactly as the server does (the same crate,
//! algorithm and version, with each thread's argon2 memory reused between
//! hashes as the server's hashing threads reuse theirs), on one OS thread
//! per core. It runs in slices between the load's rounds, never during them.

use std::time::Duration;

use anyhow::Context as _;
use argon2::{Algorithm, Argon2, Params, Version};
use serde::Serialize;

use crate::clock::{instant, random_bytes};
use crate::model::pool_settings::Argon2Params;

/// The password hashed by the measurement; its length is that of the
/// bench's passwords, which makes no measurable difference anyway.
const PASSWORD: &[u8] = b"Bench-Passw0rd!";

/// The measured hash rate.
#[derive(Debug, Clone, Serialize)]
pub struct Argon2Limit {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// Hashing threads, one per available core.
    pub threads: usize,
    /// Hashes completed by all threads.
    pub hashes: u64,
    /// How long the threads hashed, in seconds (the longest thread).
    pub seconds: f64,
    /// The limit: the sum over threads of each thread's own rate.
    pub hashes_per_sec: f64,
}

impl Argon2Limit {
    /// The limit over a whole run from slices measured between its load
    /// windows: the mean of their rates, with their hashes and seconds
    /// added up (`None` without a slice). A small shared machine drifts by
    /// tens of percent within a minute (frequency, neighbours sharing the
    /// memory bus that argon2 is bound by), so a limit taken at one time
    /// misjudges a load taken at another either way; slices interleaved
    /// with the load follow the drift.
    pub fn interleaved(slices: &[Argon2Limit]) -> Option<Argon2Limit> {
        let first = slices.first()?;
        let n = slices.len() as f64;
        Some(Argon2Limit {
            hashes: slices.iter().map(|s| s.hashes).sum(),
            seconds: slices.iter().map(|s| s.seconds).sum(),
            hashes_per_sec: slices.iter().map(|s| s.hashes_per_sec).sum::<f64>() / n,
            ..first.clone()
        })
    }
}

/// Hashes on `threads` OS threads for about `for_how_long` and returns the
/// combined rate. Blocking: call it from `spawn_blocking` or a plain thread.
///
/// Each thread finishes the hash that crosses the deadline and divides its
/// own count by its own elapsed time, so a slow last hash does not skew the
/// rate of the other threads.
pub fn measure_blocking(params: Argon2Params, threads: usize, for_how_long: Duration) -> anyhow::Result<Argon2Limit> {
    let threads = threads.max(1);
    let argon = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(params.m_kib, params.t, params.p, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters {params:?}: {e}"))?,
    );
    let start = instant();
    let deadline = start + for_how_long;
    let per_thread: Vec<anyhow::Result<(u64, Duration)>> = std::thread::scope(|scope| {
        let argon = &argon;
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || -> anyhow::Result<(u64, Duration)> {
                    let mut hashes = 0u64;
                    // Reused memory, as the server's hashing threads do:
                    // the limit is the best raw rate, not an allocator test.
                    let mut memory = vec![argon2::Block::default(); argon.params().block_count()];
                    let mut out = [0u8; 32];
                    loop {
                        argon
                            .hash_password_into_with_memory(PASSWORD, &random_bytes::<16>(), &mut out, &mut memory)
                            .map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))?;
                        std::hint::black_box(&out);
                        hashes += 1;
                        let now = instant();
                        if now >= deadline {
                            return Ok((hashes, now - start));
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("argon2 thread panicked")))
            })
            .collect()
    });
    let mut hashes = 0u64;
    let mut longest = Duration::ZERO;
    let mut rate = 0.0;
    for r in per_thread {
        let (n, elapsed) = r.context("measuring the argon2 limit")?;
        hashes += n;
        longest = longest.max(elapsed);
        rate += n as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    }
    Ok(Argon2Limit {
        memory_kib: params.m_kib,
        iterations: params.t,
        parallelism: params.p,
        threads,
        hashes,
        seconds: longest.as_secs_f64(),
        hashes_per_sec: rate,
    })
}

/// [`measure_blocking`] with one thread per available core, off the async
/// runtime.
pub async fn measure(params: Argon2Params, for_how_long: Duration) -> anyhow::Result<Argon2Limit> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    tokio::task::spawn_blocking(move || measure_blocking(params, threads, for_how_long))
        .await
        .context("argon2 measurement task")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cheap_parameters_give_a_positive_rate() {
        let cheap = Argon2Params { m_kib: 64, t: 1, p: 1 };
        let l = measure_blocking(cheap, 2, Duration::from_millis(50)).unwrap();
        assert_eq!(l.threads, 2);
        assert!(l.hashes >= 2, "{l:?}");
        assert!(l.hashes_per_sec > 0.0, "{l:?}");
        assert!(l.seconds >= 0.05, "{l:?}");
    }

    #[test]
    fn invalid_parameters_are_an_error() {
        let bad = Argon2Params { m_kib: 1, t: 0, p: 0 };
        assert!(measure_blocking(bad, 1, Duration::from_millis(10)).is_err());
    }

    #[test]
    fn the_interleaved_limit_is_the_mean_rate_of_its_slices() {
        let m = |hashes, rate| Argon2Limit {
            memory_kib: 19456,
            iterations: 2,
            parallelism: 1,
            threads: 2,
            hashes,
            seconds: 3.0,
            hashes_per_sec: rate,
        };
        let b = Argon2Limit::interleaved(&[m(390, 130.0), m(330, 110.0), m(360, 90.0)]).unwrap();
        assert_eq!(b.hashes_per_sec, 110.0);
        assert_eq!((b.hashes, b.seconds, b.threads), (1080, 9.0, 2));
        assert!(Argon2Limit::interleaved(&[]).is_none());
    }
}
