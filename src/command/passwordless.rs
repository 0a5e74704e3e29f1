//! Apply logic of passwordless sign-in: a pool's `SignInPolicy`, spending
//! a sign-in code (`SMS_MFA`, `EMAIL_OTP`, `SMS_OTP`), and the two steps of
//! a magic link (approved in a browser, then collected by the device that
//! asked).
//!
//! Codes and links are issued with `IssueCode` (purposes `SignIn` and
//! `MagicLink`), so the per-user send window and the outbox bounds apply
//! to them as to every code. What is decided here, once for the whole
//! cluster: that a code or link is still outstanding and spent at most
//! once, that its attempts are counted, and that the challenge session it
//! belongs to was not ended by a password change or sign-out since
//! (`session_binding`).

use serde::{Deserialize, Serialize};

use super::users::code_is_current;
use super::{not_found, Apply, ApplyError, Outcome, Rejection};
use crate::auth::codes::{hash_code, CodeError};
use crate::model::mfa::session_binding;
use crate::model::passwordless::SignInPolicy;
use crate::model::user::User;
use crate::store::auth_state::{code_key, CodePurpose};
use crate::store::keys::Table;
use crate::store::{codec, SmBatch, Store, StoreError};

/// The user, or the rejection for a missing one or for a challenge
/// session (`binding`) that a password change, reset or sign-out ended.
fn bound_user(store: &Store, pool_id: &str, sub: &str, binding: &str) -> Result<Result<User, Outcome>, StoreError> {
    let Some(user) = store.user(pool_id, sub)? else {
        return Ok(Err(not_found("user", sub)));
    };
    if session_binding(&user) != binding {
        return Ok(Err(Outcome::Rejected(Rejection::NotAuthorized(
            "Invalid session for the user, session is expired.".into(),
        ))));
    }
    Ok(Ok(user))
}

/// `SignInPolicy` of `CreateUserPool` / `UpdateUserPool`: replaces the
/// pool's allowed first factors and magic-link validity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetPoolSignInPolicy {
    /// The pool.
    pub pool_id: String,
    /// The new policy, stamped with the proposer's clock.
    pub policy: SignInPolicy,
}

impl Apply for SetPoolSignInPolicy {
    type Output = ();

    fn validate(&self) -> Result<(), Rejection> {
        self.policy.validate().map_err(|e| Rejection::Invalid(e.to_string()))
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if store.pool(&self.pool_id)?.is_none() {
            return Ok(not_found("user pool", &self.pool_id));
        }
        batch.put(
            Table::PoolSignIn,
            self.pool_id.as_bytes(),
            &codec::encode(&self.policy)?,
        )?;
        Ok(Outcome::Done)
    }
}

/// Spends the user's outstanding sign-in code. The proposer hashed the
/// guess with the record's salt over the session's nonce and challenge
/// (`service::flows::passwordless`), so a code sent for one session never
/// matches under another. A wrong guess uses up one of the code's
/// attempts; the right one deletes it, so it works once, on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumeSignInCode {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// Salted hash of the guess (the guess never enters the log).
    pub guess_hash: [u8; 32],
    /// The `bind` claim of the challenge session answered.
    pub session_binding: String,
    /// Proposer's clock (Unix ms), for the expiry.
    pub now: i64,
}

impl Apply for ConsumeSignInCode {
    type Output = User;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let user = match bound_user(store, &self.pool_id, &self.sub, &self.session_binding)? {
            Ok(u) => u,
            Err(rejected) => return Ok(rejected),
        };
        let key = code_key(&self.pool_id, &self.sub, CodePurpose::SignIn);
        let Some(mut record) = store.code(&self.pool_id, &self.sub, CodePurpose::SignIn)? else {
            return Ok(Outcome::Rejected(Rejection::NoCode));
        };
        if !code_is_current(&record, &user, CodePurpose::SignIn) {
            // Sent to an address the user no longer has.
            batch.delete(Table::Codes, &key)?;
            return Ok(Outcome::Rejected(Rejection::Code(CodeError::Expired)));
        }
        match record.check(&self.guess_hash, self.now) {
            Ok(()) => {
                batch.delete(Table::Codes, &key)?;
                Ok(Outcome::User(user))
            }
            Err(e) => {
                // The spent attempt is part of the replicated state.
                batch.put(Table::Codes, &key, &codec::encode(&record)?)?;
                Ok(Outcome::Rejected(Rejection::Code(e)))
            }
        }
    }
}

/// What a [`MagicLinkStep`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkAction {
    /// The link was opened and confirmed in a browser (`POST
    /// /{pool_id}/magic-link`): it becomes approved, and can no longer be
    /// approved again.
    Approve,
    /// The device that asked collects its tokens: an approved link is
    /// spent.
    Complete,
    /// The link's token was pasted into the device that asked
    /// (`MAGIC_LINK_TOKEN`): approved and spent at once.
    ApproveAndComplete,
}

/// A step of a magic link, identified by the random `link_id` that its
/// signed token and its session both carry. The link's secret is the
/// token's signature, checked by the proposer; `apply` makes each step
/// happen once: one approval, one completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MagicLinkStep {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// The link's id (32 hex characters).
    pub link_id: String,
    /// Approve, complete, or both.
    pub action: LinkAction,
    /// The `bind` claim of the link's token or session.
    pub session_binding: String,
    /// Proposer's clock (Unix ms), for the expiry.
    pub now: i64,
}

impl Apply for MagicLinkStep {
    type Output = User;

    fn validate(&self) -> Result<(), Rejection> {
        if self.link_id.len() != 32 || !self.link_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Rejection::Invalid("link_id: 32 hex characters".into()));
        }
        Ok(())
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let user = match bound_user(store, &self.pool_id, &self.sub, &self.session_binding)? {
            Ok(u) => u,
            Err(rejected) => return Ok(rejected),
        };
        let from: &[CodePurpose] = match self.action {
            LinkAction::Approve => &[CodePurpose::MagicLink],
            LinkAction::Complete => &[CodePurpose::MagicLinkApproved],
            LinkAction::ApproveAndComplete => &[CodePurpose::MagicLink, CodePurpose::MagicLinkApproved],
        };
        for purpose in from {
            let key = code_key(&self.pool_id, &self.sub, *purpose);
            let Some(mut record) = store.code(&self.pool_id, &self.sub, *purpose)? else {
                continue;
            };
            let guess = hash_code(&record.salt, &self.link_id);
            match record.check(&guess, self.now) {
                Ok(()) => {
                    // What stays under `MagicLinkApproved`: the approved
                    // link, or once completed a spent marker (no attempts
                    // left), so that the device polling again learns that
                    // the link was used rather than that it waits.
                    if self.action != LinkAction::Approve {
                        record.attempts_left = 0;
                    }
                    let approved = code_key(&self.pool_id, &self.sub, CodePurpose::MagicLinkApproved);
                    if key != approved {
                        batch.delete(Table::Codes, &key)?;
                    }
                    batch.put(Table::Codes, &approved, &codec::encode(&record)?)?;
                    return Ok(Outcome::User(user));
                }
                // Another (newer) link of the user, or a spent one.
                Err(CodeError::Mismatch) | Err(CodeError::TooManyAttempts) => {}
                Err(CodeError::Expired) => {
                    batch.delete(Table::Codes, &key)?;
                    return Ok(Outcome::Rejected(Rejection::Code(CodeError::Expired)));
                }
            }
        }
        // Never issued, superseded, or already used.
        Ok(Outcome::Rejected(Rejection::NoCode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::codes::CodeRecord;
    use crate::command::testkit::{run, store_with_ann, user_in, POOL};
    use crate::command::IssueCode;
    use crate::model::passwordless::FirstFactor;
    use crate::model::pool_settings::SignInAlias;
    use crate::model::user::UserStatus;

    fn setup() -> (tempfile::TempDir, Store) {
        store_with_ann()
    }

    fn bind() -> String {
        session_binding(&user_in(UserStatus::Confirmed, "s1", "ann", "ann@x.io"))
    }

    fn issue(store: &Store, purpose: CodePurpose, secret: &str, now: i64) {
        let mut record = CodeRecord::issue(secret, [3; 16], now).bound_to(SignInAlias::Email, "ann@x.io");
        record.expires_at = now + 180_000;
        let out = run(
            store,
            IssueCode {
                pool_id: POOL.into(),
                sub: "s1".into(),
                purpose,
                record,
                message: None,
                now,
            },
        );
        assert!(matches!(out, Outcome::User(_)), "{out:?}");
    }

    fn consume(guess: &str, binding: &str, now: i64) -> ConsumeSignInCode {
        ConsumeSignInCode {
            pool_id: POOL.into(),
            sub: "s1".into(),
            guess_hash: hash_code(&[3; 16], guess),
            session_binding: binding.into(),
            now,
        }
    }

    #[test]
    fn a_sign_in_code_works_once_and_counts_attempts() {
        let (_d, store) = setup();
        issue(&store, CodePurpose::SignIn, "EMAIL_OTP:n1:123456", 1_000);
        // Another session's nonce does not match.
        let out = run(&store, consume("EMAIL_OTP:n2:123456", &bind(), 2_000));
        assert_eq!(out, Outcome::Rejected(Rejection::Code(CodeError::Mismatch)));
        let out = run(&store, consume("EMAIL_OTP:n1:123456", "another binding", 2_000));
        assert!(matches!(out, Outcome::Rejected(Rejection::NotAuthorized(_))), "{out:?}");
        let out = run(&store, consume("EMAIL_OTP:n1:123456", &bind(), 2_000));
        assert!(matches!(out, Outcome::User(_)), "{out:?}");
        let out = run(&store, consume("EMAIL_OTP:n1:123456", &bind(), 2_000));
        assert_eq!(out, Outcome::Rejected(Rejection::NoCode), "spent");
        // Expiry, and the attempt limit.
        issue(&store, CodePurpose::SignIn, "EMAIL_OTP:n3:111111", 10_000);
        let out = run(&store, consume("EMAIL_OTP:n3:111111", &bind(), 10_000 + 180_000));
        assert_eq!(out, Outcome::Rejected(Rejection::Code(CodeError::Expired)));
        issue(&store, CodePurpose::SignIn, "EMAIL_OTP:n4:222222", 20_000);
        for _ in 0..4 {
            let out = run(&store, consume("EMAIL_OTP:n4:000000", &bind(), 20_001));
            assert_eq!(out, Outcome::Rejected(Rejection::Code(CodeError::Mismatch)));
        }
        let out = run(&store, consume("EMAIL_OTP:n4:000000", &bind(), 20_001));
        assert_eq!(out, Outcome::Rejected(Rejection::Code(CodeError::TooManyAttempts)));
        let out = run(&store, consume("EMAIL_OTP:n4:222222", &bind(), 20_001));
        assert_eq!(out, Outcome::Rejected(Rejection::Code(CodeError::TooManyAttempts)));
    }

    fn link(id: &str, action: LinkAction, now: i64) -> MagicLinkStep {
        MagicLinkStep {
            pool_id: POOL.into(),
            sub: "s1".into(),
            link_id: id.into(),
            action,
            session_binding: bind(),
            now,
        }
    }

    #[test]
    fn a_magic_link_is_approved_once_and_completed_once() {
        let (_d, store) = setup();
        let id = "0123456789abcdef0123456789abcdef";
        let other = "fedcba9876543210fedcba9876543210";
        issue(&store, CodePurpose::MagicLink, id, 1_000);
        // Not approved yet: nothing to complete.
        let out = run(&store, link(id, LinkAction::Complete, 2_000));
        assert_eq!(out, Outcome::Rejected(Rejection::NoCode));
        // Another session's link does not approve this one.
        let out = run(&store, link(other, LinkAction::Approve, 2_000));
        assert_eq!(out, Outcome::Rejected(Rejection::NoCode));
        assert!(matches!(
            run(&store, link(id, LinkAction::Approve, 2_000)),
            Outcome::User(_)
        ));
        let out = run(&store, link(id, LinkAction::Approve, 2_000));
        assert_eq!(out, Outcome::Rejected(Rejection::NoCode), "approved once");
        assert!(matches!(
            run(&store, link(id, LinkAction::Complete, 3_000)),
            Outcome::User(_)
        ));
        let out = run(&store, link(id, LinkAction::Complete, 3_000));
        assert_eq!(out, Outcome::Rejected(Rejection::NoCode), "completed once");
        let spent = store.code(POOL, "s1", CodePurpose::MagicLinkApproved).unwrap().unwrap();
        assert_eq!(spent.attempts_left, 0, "a spent marker stays");
        // A pasted token approves and completes at once, once; an expired
        // link does neither.
        issue(&store, CodePurpose::MagicLink, other, 5_000);
        assert!(matches!(
            run(&store, link(other, LinkAction::ApproveAndComplete, 6_000)),
            Outcome::User(_)
        ));
        let out = run(&store, link(other, LinkAction::ApproveAndComplete, 6_000));
        assert_eq!(out, Outcome::Rejected(Rejection::NoCode));
        issue(&store, CodePurpose::MagicLink, id, 10_000);
        let out = run(&store, link(id, LinkAction::Approve, 10_000 + 180_000));
        assert_eq!(out, Outcome::Rejected(Rejection::Code(CodeError::Expired)));
        let mut bad = link(id, LinkAction::Approve, 1);
        bad.link_id = "x".into();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn the_policy_is_validated_and_stored() {
        let (_d, store) = setup();
        let policy = SignInPolicy::from_names(["PASSWORD", "EMAIL_OTP"], 0).unwrap();
        let cmd = SetPoolSignInPolicy {
            pool_id: POOL.into(),
            policy: policy.clone(),
        };
        assert_eq!(run(&store, cmd), Outcome::Done);
        assert_eq!(store.pool_sign_in(POOL).unwrap(), policy);
        assert!(store.pool_sign_in(POOL).unwrap().allows(FirstFactor::EmailOtp));
        let bad = SetPoolSignInPolicy {
            pool_id: POOL.into(),
            policy: SignInPolicy {
                allowed_first_auth_factors: vec![FirstFactor::EmailOtp],
                ..SignInPolicy::default()
            },
        };
        assert!(bad.validate().is_err());
    }
}
