//! argon2id password hashing, off the async runtime and bounded.
//!
//! One hash at OWASP's parameters (m=19 MiB, t=2, p=1) costs ~20 ms of CPU
//! and 19 MiB of memory. Hashing runs on a fixed set of dedicated threads
//! that reuse their argon2 memory between hashes (one per core by default),
//! so a burst of sign-ins queues instead of starving the runtime or
//! exhausting memory. A semaphore admits two jobs per thread: the one it
//! runs and the next, already handed over, so a thread that finishes a hash
//! starts the next at once instead of idling until the async runtime gets
//! a core to dispatch it (on a small machine whose cores the hashes fill,
//! that wait is a measurable share of every hash). A caller that waits too
//! long for a slot gets [`AuthError::Overloaded`].

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::SaltString;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use tokio::sync::{oneshot, Semaphore};

use super::AuthError;

pub use crate::model::pool_settings::{Argon2Params, MAX_PASSWORD_BYTES};

/// Jobs admitted per hashing thread: the running one and the next.
const JOBS_PER_THREAD: usize = 2;

/// Work for a hashing thread: it gets the thread's reusable memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The dedicated hashing threads. Each keeps its argon2 memory between
/// hashes, so a hash does not allocate and page in 19 MiB every time, and
/// the threads never block the async runtime.
struct Pool {
    jobs: Mutex<Sender<Job>>,
}

impl Pool {
    fn start(threads: usize) -> Arc<Self> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx: Arc<Mutex<Receiver<Job>>> = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tessera-argon2-{i}"))
                .spawn(move || {
                    let mut memory: Vec<Block> = Vec::new();
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut memory),
                            // Every hasher was dropped.
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "starting a password hashing thread");
            }
        }
        Arc::new(Pool { jobs: Mutex::new(tx) })
    }
}

/// Hashes and verifies passwords with bounded concurrency.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
    pool: Arc<Pool>,
}

impl PasswordHasher {
    /// At most `max_concurrent` hashes run at once, on as many dedicated
    /// threads, each with one more job handed over and waiting; a caller
    /// waits at most `queue_timeout` for a slot.
    pub fn new(max_concurrent: usize, queue_timeout: Duration) -> Self {
        let n = max_concurrent.max(1);
        PasswordHasher {
            permits: Arc::new(Semaphore::new(n * JOBS_PER_THREAD)),
            queue_timeout,
            pool: Pool::start(n),
        }
    }

    /// One slot per available core, 5 s queue.
    pub fn per_core() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Self::new(cores, Duration::from_secs(5))
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let permit = tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| AuthError::Overloaded)?
            .map_err(|_| AuthError::Overloaded)?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _permit = permit;
            let _ = tx.send(f(memory));
        });
        self.pool
            .jobs
            .lock()
            .map_err(|_| AuthError::Hashing("hashing pool poisoned".into()))?
            .send(job)
            .map_err(|_| AuthError::Hashing("hashing threads stopped".into()))?;
        rx.await
            .map_err(|_| AuthError::Hashing("a hashing thread dropped its job".into()))
    }

    /// Runs other password-derived work (SRP's 3072-bit exponentiations)
    /// on the same bounded threads as the hashes: it stays off the async
    /// runtime, and a burst of it queues behind the same limit.
    pub async fn compute<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, AuthError> {
        self.run(move |_memory| f()).await
    }

    /// Hashes `password` with `salt` (16 random bytes chosen by the caller
    /// while preparing the command) into a PHC string.
    pub async fn hash(&self, password: &str, salt: [u8; 16], params: Argon2Params) -> Result<String, AuthError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AuthError::Hashing(format!(
                "password longer than {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        let password = password.to_owned();
        self.run(move |memory| {
            let argon = argon2_with(params, 32)?;
            let mut out = [0u8; 32];
            compute(&argon, password.as_bytes(), &salt, &mut out, memory)?;
            let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hashing(e.to_string()))?;
            Ok(format!(
                "$argon2id$v=19$m={},t={},p={}${}${}",
                params.m_kib,
                params.t,
                params.p,
                salt.as_str(),
                STANDARD_NO_PAD.encode(out)
            ))
        })
        .await?
    }

    /// Checks `password` against a stored hash, in constant time: the
    /// pool's argon2id, or any format an import accepts
    /// (`auth::foreign_hash`). A malformed stored hash is an error, not a
    /// mismatch.
    pub async fn verify(&self, password: &str, phc: &str) -> Result<bool, AuthError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(false);
        }
        let password = password.to_owned();
        let phc = phc.to_owned();
        self.run(move |memory| {
            super::foreign_hash::verify(password.as_bytes(), &phc, memory)
                .map_err(|e| AuthError::Hashing(format!("stored hash: {e}")))
        })
        .await?
    }
}

/// Runs argon2 into `out`, reusing (and growing) the thread's `memory`.
pub(super) fn compute(
    argon: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> Result<(), AuthError> {
    let blocks = argon.params().block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let result = argon
        .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
        .map_err(|e| AuthError::Hashing(e.to_string()));
    // Keep the usual 19 MiB warm, but do not hold on to the memory of an
    // unusually expensive pool.
    if blocks > KEEP_BLOCKS {
        *memory = Vec::new();
    }
    result
}

/// Argon2 memory (in 1 KiB blocks) a hashing thread keeps between hashes.
const KEEP_BLOCKS: usize = 64 * 1024;

fn argon2_with(p: Argon2Params, output_len: usize) -> Result<Argon2<'static>, AuthError> {
    let params = Params::new(p.m_kib, p.t, p.p, Some(output_len)).map_err(|e| AuthError::Hashing(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordHash;

    /// Cheap parameters so unit tests stay fast; production uses the default.
    const CHEAP: Argon2Params = Argon2Params { m_kib: 256, t: 1, p: 1 };

    #[tokio::test]
    async fn hash_verify_round_trip_and_phc_shape() {
        let h = PasswordHasher::new(2, Duration::from_secs(5));
        let phc = h.hash("Correct-Horse-1", [7; 16], CHEAP).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{phc}");
        assert!(h.verify("Correct-Horse-1", &phc).await.unwrap());
        assert!(!h.verify("correct-horse-1", &phc).await.unwrap());
        assert!(!h.verify(&"x".repeat(MAX_PASSWORD_BYTES + 1), &phc).await.unwrap());
        assert!(h.verify("x", "not a phc string").await.is_err());
        // The PHC string is standard: the argon2 crate's own verifier agrees.
        use argon2::password_hash::PasswordVerifier;
        let parsed = PasswordHash::new(&phc).unwrap();
        assert!(Argon2::default().verify_password(b"Correct-Horse-1", &parsed).is_ok());
        // And hashes made by the argon2 crate verify here.
        use argon2::password_hash::PasswordHasher as _;
        let theirs = Argon2::default()
            .hash_password(b"pw", &SaltString::encode_b64(&[9; 16]).unwrap())
            .unwrap()
            .to_string();
        assert!(h.verify("pw", &theirs).await.unwrap());
        assert!(!h.verify("pX", &theirs).await.unwrap());
        // Same password, different salt: different hash.
        let other = h.hash("Correct-Horse-1", [8; 16], CHEAP).await.unwrap();
        assert_ne!(phc, other);
    }

    #[tokio::test]
    async fn default_parameters_are_owasp() {
        let h = PasswordHasher::per_core();
        let phc = h.hash("pw", [1; 16], Argon2Params::default()).await.unwrap();
        assert!(phc.contains("m=19456,t=2,p=1"), "{phc}");
    }

    #[tokio::test]
    async fn a_full_queue_reports_overload_instead_of_waiting_forever() {
        let h = PasswordHasher::new(1, Duration::from_millis(1));
        let slow = Argon2Params {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        };
        // One thread takes the running job and the next one waiting.
        let busy = h.clone();
        let first = tokio::spawn(async move { busy.hash("a", [1; 16], slow).await });
        let queued = h.clone();
        let second = tokio::spawn(async move { queued.hash("b", [2; 16], slow).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let third = h.hash("c", [3; 16], CHEAP).await;
        assert!(matches!(third, Err(AuthError::Overloaded)), "{third:?}");
        assert!(first.await.unwrap().is_ok());
        assert!(second.await.unwrap().is_ok());
    }
}
