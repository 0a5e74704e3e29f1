//! argon2id password hashing, off the async runtime and bounded.
//!
//! One hash at OWASP's parameters (m=19 MiB, t=2, p=1) costs ~20 ms of CPU
//! and 19 MiB of memory. Hashing runs on tokio's blocking pool, and a
//! semaphore caps how many run at once (one per core by default), so a burst
//! of sign-ins queues instead of starving the runtime or exhausting memory.
//! A caller that waits too long for a slot gets [`AuthError::Overloaded`].

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use super::AuthError;

pub use crate::model::pool_settings::{Argon2Params, MAX_PASSWORD_BYTES};

/// Hashes and verifies passwords with bounded concurrency.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
}

impl PasswordHasher {
    /// At most `max_concurrent` hashes run at once; a caller waits at most
    /// `queue_timeout` for a slot.
    pub fn new(max_concurrent: usize, queue_timeout: Duration) -> Self {
        PasswordHasher {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            queue_timeout,
        }
    }

    /// One slot per available core, 5 s queue.
    pub fn per_core() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Self::new(cores, Duration::from_secs(5))
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, AuthError> {
        let permit = tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| AuthError::Overloaded)?
            .map_err(|_| AuthError::Overloaded)?;
        let out = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(|e| AuthError::Hashing(e.to_string()))?;
        Ok(out)
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
        self.run(move || {
            let argon = argon2_with(params)?;
            let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hashing(e.to_string()))?;
            argon
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| AuthError::Hashing(e.to_string()))
        })
        .await?
    }

    /// Checks `password` against a PHC string, in constant time. A
    /// malformed stored hash is an error, not a mismatch.
    pub async fn verify(&self, password: &str, phc: &str) -> Result<bool, AuthError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(false);
        }
        let password = password.to_owned();
        let phc = phc.to_owned();
        self.run(move || {
            let parsed = PasswordHash::new(&phc).map_err(|e| AuthError::Hashing(format!("stored hash: {e}")))?;
            match Argon2::default().verify_password(password.as_bytes(), &parsed) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::Password) => Ok(false),
                Err(e) => Err(AuthError::Hashing(e.to_string())),
            }
        })
        .await?
    }
}

fn argon2_with(p: Argon2Params) -> Result<Argon2<'static>, AuthError> {
    let params = Params::new(p.m_kib, p.t, p.p, None).map_err(|e| AuthError::Hashing(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let busy = h.clone();
        let first = tokio::spawn(async move { busy.hash("a", [1; 16], slow).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = h.hash("b", [2; 16], CHEAP).await;
        assert!(matches!(second, Err(AuthError::Overloaded)), "{second:?}");
        assert!(first.await.unwrap().is_ok());
    }
}
