//! Apply logic of SRP state: a pool's SRP setting and users' verifiers
//! (`crate::model::srp`).

use serde::{Deserialize, Serialize};

use super::{not_found, Apply, ApplyError, Outcome, Rejection};
use crate::model::srp::{PoolSrp, SrpVerifier};
use crate::store::keys::{pool_key, Table};
use crate::store::srp::user_srp_key;
use crate::store::{codec, SmBatch, Store};

/// Turns SRP sign-in on or off for a pool. Off deletes every verifier of
/// the pool in the same batch: a pool that stops offering SRP keeps no
/// password-derived secret weaker than its argon2id hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetPoolSrp {
    /// The pool.
    pub pool_id: String,
    /// The new setting, stamped by the proposer.
    pub setting: PoolSrp,
}

impl Apply for SetPoolSrp {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if store.pool(&self.pool_id)?.is_none() {
            return Ok(not_found("user pool", &self.pool_id));
        }
        if self.setting.enabled {
            batch.put(Table::PoolSrp, self.pool_id.as_bytes(), &codec::encode(&self.setting)?)?;
        } else {
            batch.delete(Table::PoolSrp, self.pool_id.as_bytes())?;
            batch.delete_prefix(Table::UserSrp, &pool_key(&self.pool_id, b""))?;
        }
        Ok(Outcome::Done)
    }
}

/// Stores a user's SRP verifier, made by the node that saw the password.
/// It takes effect only while the pool has SRP on and the user's password
/// hash is still the one the verifier was made with: a password changed
/// meanwhile (on any node) wins, and its own sign-in makes the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetSrpVerifier {
    /// The pool.
    pub pool_id: String,
    /// The user.
    pub sub: String,
    /// Salt, verifier and the digest of the password hash they go with.
    pub verifier: SrpVerifier,
}

impl Apply for SetSrpVerifier {
    type Output = ();

    fn validate(&self) -> Result<(), Rejection> {
        self.verifier.validate().map_err(|e| Rejection::Invalid(e.to_string()))
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if !store.pool_srp(&self.pool_id)?.enabled {
            return Ok(Outcome::Rejected(Rejection::Invalid(format!(
                "SRP is off for user pool {}",
                self.pool_id
            ))));
        }
        let Some(user) = store.user(&self.pool_id, &self.sub)? else {
            return Ok(not_found("user", &self.sub));
        };
        if !self.verifier.is_current_for(&user) {
            return Ok(Outcome::Rejected(Rejection::ResourceConflict(
                "the password changed since this verifier was made".into(),
            )));
        }
        batch.put(
            Table::UserSrp,
            &user_srp_key(&self.pool_id, &self.sub),
            &codec::encode(&self.verifier)?,
        )?;
        Ok(Outcome::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testkit::{run, store_with_ann, POOL};
    use crate::command::{Command, SetPassword};
    use crate::model::srp::credential_digest;
    use crate::model::user::UserStatus;

    fn verifier_for(phc: &str) -> SrpVerifier {
        SrpVerifier {
            salt: vec![1; 16],
            verifier: vec![2; 384],
            credential: credential_digest(phc),
            set_at: 5,
        }
    }

    #[test]
    fn a_verifier_needs_srp_on_and_the_current_password() {
        let (_dir, store) = store_with_ann();
        let user = store.user(POOL, "s1").unwrap().unwrap();
        let phc = user.password_phc.clone().unwrap();
        let set = |v: SrpVerifier| {
            Command::SetSrpVerifier(SetSrpVerifier {
                pool_id: user.pool_id.clone(),
                sub: user.sub.clone(),
                verifier: v,
            })
        };
        // SRP off: refused, nothing stored.
        assert!(matches!(run(&store, set(verifier_for(&phc))), Outcome::Rejected(_)));
        assert_eq!(store.user_srp(&user.pool_id, &user.sub).unwrap(), None);
        let on = |enabled| {
            Command::SetPoolSrp(SetPoolSrp {
                pool_id: user.pool_id.clone(),
                setting: PoolSrp {
                    enabled,
                    modified_at: 1,
                },
            })
        };
        assert_eq!(run(&store, on(true)), Outcome::Done);
        // A verifier made for another password hash is refused.
        assert!(matches!(
            run(&store, set(verifier_for("an older hash"))),
            Outcome::Rejected(Rejection::ResourceConflict(_))
        ));
        assert_eq!(run(&store, set(verifier_for(&phc))), Outcome::Done);
        let stored = store.user_srp(&user.pool_id, &user.sub).unwrap().unwrap();
        assert!(stored.is_current_for(&store.user(&user.pool_id, &user.sub).unwrap().unwrap()));
        // A password change retires it without touching it.
        let change = SetPassword {
            pool_id: user.pool_id.clone(),
            sub: user.sub.clone(),
            password_phc: "$argon2id$new".into(),
            status: UserStatus::Confirmed,
            require_status: None,
            attributes: Default::default(),
            temporary_password_expires_at: None,
            revoke_refresh: true,
            now: 9,
        };
        run(&store, Command::SetPassword(change));
        let changed = store.user(&user.pool_id, &user.sub).unwrap().unwrap();
        assert!(!stored.is_current_for(&changed));
        // Turning SRP off deletes every verifier of the pool.
        assert_eq!(run(&store, set(verifier_for("$argon2id$new"))), Outcome::Done);
        assert_eq!(run(&store, on(false)), Outcome::Done);
        assert_eq!(store.user_srp(&user.pool_id, &user.sub).unwrap(), None);
        assert!(!store.pool_srp(&user.pool_id).unwrap().enabled);
    }

    #[test]
    fn malformed_verifiers_are_refused_before_apply() {
        let bad = SetSrpVerifier {
            pool_id: "local_p".into(),
            sub: "s".into(),
            verifier: SrpVerifier {
                salt: vec![1; 3],
                ..verifier_for("x")
            },
        };
        assert!(bad.validate().is_err());
    }
}
