//! Rehash on sign-in: a password that was just verified against a stored
//! hash that is not the pool's own argon2id (an imported bcrypt, scrypt,
//! PBKDF2, argon2i or Firebase hash, or an argon2id of other parameters)
//! is hashed again with the pool's argon2id and the result proposed as a
//! `RehashPassword` command, which takes effect only if the stored hash
//! is still the one verified (a password change in between wins).
//!
//! This is best effort by design: a failure is logged (never with the
//! password or either hash) and counted, and the sign-in goes on, since
//! the user proved the password either way and the next sign-in retries.
//! Nothing else of the user changes: sessions and refresh tokens stay.

use super::AuthService;
use crate::auth::foreign_hash::{self, Scheme};
use crate::command::{hash_fingerprint, Outcome, RehashPassword};
use crate::model::pool::UserPool;
use crate::model::user::User;

impl AuthService {
    /// Rehashes `user`'s stored hash with the pool's argon2id when it is
    /// not that already; call only after `password` verified against it.
    ///
    /// Returns the user's password hash afterwards (the new one when the
    /// rehash took effect), which the SRP verifier is then bound to.
    pub(crate) async fn rehash_if_needed(&self, pool: &UserPool, user: &User, password: &str) -> Option<String> {
        let stored = user.password_phc.as_deref()?;
        if foreign_hash::is_current(stored, pool.settings.argon2) {
            return Some(stored.to_string());
        }
        let scheme = foreign_hash::scheme_of(stored).map_or("unknown", Scheme::name);
        let mut current = Some(stored.to_string());
        let outcome = match self.rehash(pool, user, stored, password).await {
            Ok((Outcome::Done, phc)) => {
                current = Some(phc);
                "ok"
            }
            Ok(_) => {
                tracing::info!(pool_id = %pool.id, sub = %user.sub, scheme, "rehash superseded: the password changed meanwhile");
                "superseded"
            }
            Err(e) => {
                tracing::warn!(pool_id = %pool.id, sub = %user.sub, scheme, error = %e, "rehashing a password after sign-in failed");
                "failed"
            }
        };
        self.node
            .metrics()
            .password_rehashes
            .get_or_create(&[("scheme", scheme), ("outcome", outcome)])
            .inc();
        current
    }

    async fn rehash(
        &self,
        pool: &UserPool,
        user: &User,
        stored: &str,
        password: &str,
    ) -> Result<(Outcome, String), crate::service::ServiceError> {
        let phc = self
            .hasher
            .hash(password, crate::clock::random_bytes::<16>(), pool.settings.argon2)
            .await?;
        let cmd = RehashPassword {
            pool_id: pool.id.clone(),
            sub: user.sub.clone(),
            verified_sha256: hash_fingerprint(stored),
            password_phc: phc.clone(),
        };
        Ok((self.node.propose(cmd).await?, phc))
    }
}
