//! Apply logic of user commands and of the courier outbox they write to.

use super::{Apply, ApplyError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub(super) use super::outbox::enqueue;
use super::outbox::{has_room, queue_full};
use super::{not_found, Outcome, Rejection};
use crate::auth::codes::{CodeError, CodeRecord};
use crate::model::outbox::MessageDraft;
use crate::model::pool_settings::{PoolSettings, SignInAlias};
use crate::model::user::{User, UserStatus};
use crate::store::auth_state::{code_key, CodePurpose};
use crate::store::directory::{index_keys, SendWindow};
use crate::store::keys::{pool_key, Table};
use crate::store::state::alias_key;
use crate::store::{codec, SmBatch, Store, StoreError};

/// Codes one user may be sent per purpose within [`SEND_WINDOW_MS`].
pub const MAX_SENDS_PER_WINDOW: u32 = 5;
/// The code-send window.
pub const SEND_WINDOW_MS: i64 = 3600 * 1000;

pub(super) fn create(
    store: &Store,
    batch: &mut SmBatch<'_>,
    user: &User,
    code: Option<&CodeRecord>,
    message: Option<&MessageDraft>,
    force_alias_creation: bool,
) -> Result<Outcome, StoreError> {
    let Some(pool) = store.pool(&user.pool_id)? else {
        return Ok(not_found("user pool", &user.pool_id));
    };
    let name = pool.settings.normalize_username(&user.username);
    let aliases = user.alias_keys(&pool.settings);
    // A deliberately broken build for the chaos harness's own tests: with
    // this failpoint on, uniqueness is not enforced, and the uniqueness
    // checker must notice.
    #[cfg(feature = "failpoints")]
    let enforce_unique = fail::eval("apply-skip-unique-check", |_| ()).is_none();
    #[cfg(not(feature = "failpoints"))]
    let enforce_unique = true;
    if enforce_unique && store.sub_by_username(&user.pool_id, &name)?.is_some() {
        return Ok(Outcome::Rejected(Rejection::UsernameExists));
    }
    if store.user(&user.pool_id, &user.sub)?.is_some() {
        return Ok(Outcome::Rejected(Rejection::AlreadyExists {
            kind: "user".into(),
            id: user.sub.clone(),
        }));
    }
    // Decided before the first write: a full outbox refuses the whole call.
    if let Some(m) = message {
        if !has_room(store, m)? {
            return Ok(queue_full(&user.pool_id));
        }
    }
    let sub = codec::encode(&user.sub)?;
    if enforce_unique {
        // Only verified values claim an alias (an admin-created user with
        // `email_verified`); `force_alias_creation` moves a taken one.
        if let Some(rejected) = claim_aliases(store, batch, &pool.settings, None, user, force_alias_creation)? {
            return Ok(rejected);
        }
    } else {
        for (alias, value) in &aliases {
            batch.put(Table::UserAliases, &alias_key(&user.pool_id, *alias, value), &sub)?;
        }
    }
    save(batch, &pool.settings, None, user)?;
    count_users(store, batch, &user.pool_id, 1)?;
    batch.put(Table::UserNames, &pool_key(&user.pool_id, name.as_bytes()), &sub)?;
    if let Some(code) = code {
        batch.put(
            Table::Codes,
            &code_key(&user.pool_id, &user.sub, CodePurpose::SignUp),
            &codec::encode(code)?,
        )?;
    }
    if let Some(m) = message {
        enqueue(store, batch, m)?;
    }
    Ok(Outcome::User(user.clone()))
}

/// Adds `delta` to a pool's user counter.
pub(super) fn count_users(store: &Store, batch: &mut SmBatch<'_>, pool_id: &str, delta: i64) -> Result<(), StoreError> {
    let n = store.estimated_users(pool_id)?.saturating_add_signed(delta);
    batch.put(Table::UserCounts, pool_id.as_bytes(), &codec::encode(&n)?)
}

/// Writes `new` and moves its `ListUsers` index entries from what `old`
/// had; every change to a user goes through here so the index never
/// drifts from the records.
pub(super) fn save(
    batch: &mut SmBatch<'_>,
    settings: &PoolSettings,
    old: Option<&User>,
    new: &User,
) -> Result<(), StoreError> {
    let before = old.map(|o| index_keys(settings, o)).unwrap_or_default();
    let after = index_keys(settings, new);
    for k in before.difference(&after) {
        batch.delete(Table::UserIndex, k)?;
    }
    for k in after.difference(&before) {
        batch.put(Table::UserIndex, k, &[])?;
    }
    batch.put(
        Table::Users,
        &pool_key(&new.pool_id, new.sub.as_bytes()),
        &codec::encode(new)?,
    )
}

pub(super) fn confirm(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    sub: &str,
    guess_hash: Option<&[u8; 32]>,
    force_alias_creation: bool,
    now: i64,
) -> Result<Outcome, StoreError> {
    let Some(pool) = store.pool(pool_id)? else {
        return Ok(not_found("user pool", pool_id));
    };
    let Some(old) = store.user(pool_id, sub)? else {
        return Ok(not_found("user", sub));
    };
    let mut user = old.clone();
    if user.status != UserStatus::Unconfirmed {
        return Ok(Outcome::Rejected(Rejection::WrongStatus(user.status)));
    }
    let key = code_key(pool_id, sub, CodePurpose::SignUp);
    if let Some(guess) = guess_hash {
        let Some(mut record) = store.code(pool_id, sub, CodePurpose::SignUp)? else {
            return Ok(Outcome::Rejected(Rejection::NoCode));
        };
        if !code_is_current(&record, &user, CodePurpose::SignUp) {
            // Sent to an address the user no longer has: it proves nothing.
            batch.delete(Table::Codes, &key)?;
            return Ok(Outcome::Rejected(Rejection::Code(CodeError::Expired)));
        }
        if let Err(e) = record.check(guess, now) {
            // The spent attempt is part of the replicated state.
            batch.put(Table::Codes, &key, &codec::encode(&record)?)?;
            return Ok(Outcome::Rejected(Rejection::Code(e)));
        }
        if let Some(alias) = record.verifies {
            user.set_verified(alias, true);
        }
    }
    user.status = UserStatus::Confirmed;
    user.modified_at = now;
    // The verified value now claims its alias: `AliasExistsException`
    // (the code stays usable, for a retry with `ForceAliasCreation`) or,
    // when forced, the alias moves here from its previous owner.
    if let Some(rejected) = claim_aliases(store, batch, &pool.settings, Some(&old), &user, force_alias_creation)? {
        return Ok(rejected);
    }
    batch.delete(Table::Codes, &key)?;
    save(batch, &pool.settings, Some(&old), &user)?;
    Ok(Outcome::User(user))
}

/// The fields of an `IssueCode` command.
pub(super) struct CodeIssue<'a> {
    pub pool_id: &'a str,
    pub sub: &'a str,
    pub purpose: CodePurpose,
    pub record: &'a CodeRecord,
    pub message: Option<&'a MessageDraft>,
    pub now: i64,
}

pub(super) fn issue_code(store: &Store, batch: &mut SmBatch<'_>, c: CodeIssue<'_>) -> Result<Outcome, StoreError> {
    let CodeIssue {
        pool_id,
        sub,
        purpose,
        record,
        message,
        now,
    } = c;
    let Some(user) = store.user(pool_id, sub)? else {
        return Ok(not_found("user", sub));
    };
    if purpose == CodePurpose::SignUp && user.status != UserStatus::Unconfirmed {
        return Ok(Outcome::Rejected(Rejection::WrongStatus(user.status)));
    }
    if !code_is_current(record, &user, purpose) {
        // The attribute changed between preparing and applying: the code
        // would go to an address the user no longer has.
        return Ok(Outcome::Rejected(Rejection::Code(CodeError::Expired)));
    }
    // Cluster-wide, because it is decided here: spreading requests over
    // nodes buys an attacker nothing.
    let key = code_key(pool_id, sub, purpose);
    let mut window = store.send_window(&key)?.unwrap_or_default();
    if now - window.window_start >= SEND_WINDOW_MS {
        window = SendWindow {
            window_start: now,
            count: 0,
        };
    }
    if window.count >= MAX_SENDS_PER_WINDOW {
        return Ok(Outcome::Rejected(Rejection::LimitExceeded(
            "Attempt limit exceeded, please try after some time.".into(),
        )));
    }
    if let Some(m) = message {
        if !has_room(store, m)? {
            return Ok(queue_full(pool_id));
        }
    }
    window.count += 1;
    batch.put(Table::CodeSends, &key, &codec::encode(&window)?)?;
    batch.put(Table::Codes, &key, &codec::encode(record)?)?;
    if let Some(m) = message {
        enqueue(store, batch, m)?;
    }
    Ok(Outcome::User(user))
}

/// The fields of a `SetPassword` command.
pub(super) struct PasswordChange<'a> {
    pub pool_id: &'a str,
    pub sub: &'a str,
    pub password_phc: &'a str,
    pub status: UserStatus,
    pub require_status: Option<UserStatus>,
    pub attributes: &'a BTreeMap<String, String>,
    pub temporary_password_expires_at: Option<i64>,
    pub revoke_refresh: bool,
    pub now: i64,
}

pub(super) fn set_password(
    store: &Store,
    batch: &mut SmBatch<'_>,
    c: PasswordChange<'_>,
) -> Result<Outcome, StoreError> {
    let Some(pool) = store.pool(c.pool_id)? else {
        return Ok(not_found("user pool", c.pool_id));
    };
    let Some(old) = store.user(c.pool_id, c.sub)? else {
        return Ok(not_found("user", c.sub));
    };
    if c.require_status.is_some_and(|s| s != old.status) {
        return Ok(Outcome::Rejected(Rejection::WrongStatus(old.status)));
    }
    let mut user = old.clone();
    for (k, v) in c.attributes {
        user.attributes.insert(k.clone(), v.clone());
        user.pending_attributes.remove(k);
    }
    // A changed email or phone number is unverified, whoever changed it
    // (`NEW_PASSWORD_REQUIRED` takes `userAttributes.*`): otherwise a user
    // could claim someone else's address as a verified alias and receive
    // that account's recovery codes.
    for alias in [SignInAlias::Email, SignInAlias::PhoneNumber] {
        if old.attributes.get(alias.attribute()) != user.attributes.get(alias.attribute()) {
            user.set_verified(alias, false);
        }
    }
    user.password_phc = Some(c.password_phc.to_string());
    user.status = c.status;
    user.temporary_password_expires_at = c.temporary_password_expires_at;
    user.modified_at = c.now;
    if c.revoke_refresh {
        user.refresh_revoked_before_ms = c.now;
    }
    if let Some(rejected) = reindex_aliases(store, batch, &pool.settings, &old, &user)? {
        return Ok(rejected);
    }
    // Any new password voids an outstanding reset code: it was asked for
    // under the old password, and must not undo the change later.
    batch.delete(Table::Codes, &code_key(c.pool_id, c.sub, CodePurpose::ForgotPassword))?;
    void_stale_codes(store, batch, &user, None)?;
    save(batch, &pool.settings, Some(&old), &user)?;
    Ok(Outcome::User(user))
}

/// The fields of an `UpdateUserAttributes` command.
pub(super) struct AttributeChange<'a> {
    pub pool_id: &'a str,
    pub sub: &'a str,
    pub attributes: &'a BTreeMap<String, String>,
    pub verified: (Option<bool>, Option<bool>),
    pub pending: &'a BTreeMap<String, String>,
    pub code: Option<&'a (CodePurpose, CodeRecord)>,
    pub message: Option<&'a MessageDraft>,
    pub now: i64,
}

pub(super) fn update_attributes(
    store: &Store,
    batch: &mut SmBatch<'_>,
    c: AttributeChange<'_>,
) -> Result<Outcome, StoreError> {
    let AttributeChange {
        pool_id,
        sub,
        attributes,
        verified,
        pending,
        code,
        message,
        now,
    } = c;
    let Some(pool) = store.pool(pool_id)? else {
        return Ok(not_found("user pool", pool_id));
    };
    let Some(old) = store.user(pool_id, sub)? else {
        return Ok(not_found("user", sub));
    };
    if let Some(m) = message {
        if !has_room(store, m)? {
            return Ok(queue_full(pool_id));
        }
    }
    let mut user = old.clone();
    for (k, v) in attributes {
        user.attributes.insert(k.clone(), v.clone());
        // A value set directly supersedes one waiting for verification.
        user.pending_attributes.remove(k);
    }
    for (k, v) in pending {
        if user.attributes.get(k) == Some(v) {
            user.pending_attributes.remove(k);
        } else {
            user.pending_attributes.insert(k.clone(), v.clone());
        }
    }
    let changed = |name: &str| old.attributes.get(name) != user.attributes.get(name);
    user.email_verified = verified.0.unwrap_or(old.email_verified && !changed("email"));
    user.phone_number_verified = verified
        .1
        .unwrap_or(old.phone_number_verified && !changed("phone_number"));
    user.modified_at = now;
    if let Some(rejected) = reindex_aliases(store, batch, &pool.settings, &old, &user)? {
        return Ok(rejected);
    }
    // Codes sent to a value the user no longer has are void; the code this
    // command carries is bound to the new value. Staged only now, so that
    // a refused change sends nothing.
    void_stale_codes(store, batch, &user, code.map(|(p, _)| *p))?;
    if let Some((purpose, record)) = code {
        batch.put(Table::Codes, &code_key(pool_id, sub, *purpose), &codec::encode(record)?)?;
    }
    if let Some(m) = message {
        enqueue(store, batch, m)?;
    }
    save(batch, &pool.settings, Some(&old), &user)?;
    Ok(Outcome::User(user))
}

/// The value a code for `purpose` that verifies `alias` must have been
/// sent to, for `user` as it is now: for an attribute verification the
/// value waiting for verification (else the current one), for sign-up and
/// recovery codes the current value.
fn code_target(user: &User, purpose: CodePurpose, alias: SignInAlias) -> Option<&str> {
    let name = alias.attribute();
    let pending = match purpose {
        CodePurpose::VerifyEmail | CodePurpose::VerifyPhone => user.pending_attributes.get(name),
        CodePurpose::SignUp
        | CodePurpose::ForgotPassword
        | CodePurpose::SignIn
        | CodePurpose::MagicLink
        | CodePurpose::MagicLinkApproved => None,
    };
    pending.or_else(|| user.attributes.get(name)).map(String::as_str)
}

/// Whether `record` (for `purpose`) was sent to a value `user` still has.
pub(crate) fn code_is_current(record: &CodeRecord, user: &User, purpose: CodePurpose) -> bool {
    match record.verifies {
        None => true,
        Some(alias) => record.still_bound(code_target(user, purpose, alias)),
    }
}

/// Deletes every outstanding code of `user` (but `keep`) that was sent to
/// a value the user no longer has: changing an attribute voids its codes.
pub(super) fn void_stale_codes(
    store: &Store,
    batch: &mut SmBatch<'_>,
    user: &User,
    keep: Option<CodePurpose>,
) -> Result<(), StoreError> {
    for purpose in CodePurpose::ALL {
        if keep == Some(purpose) {
            continue;
        }
        if let Some(record) = store.code(&user.pool_id, &user.sub, purpose)? {
            if !code_is_current(&record, user, purpose) {
                batch.delete(Table::Codes, &code_key(&user.pool_id, &user.sub, purpose))?;
            }
        }
    }
    Ok(())
}

/// Moves the unique alias entries of a user whose attributes changed.
/// Returns a rejection, with nothing staged, if a new alias is taken.
pub(super) fn reindex_aliases(
    store: &Store,
    batch: &mut SmBatch<'_>,
    settings: &PoolSettings,
    old: &User,
    new: &User,
) -> Result<Option<Outcome>, StoreError> {
    claim_aliases(store, batch, settings, Some(old), new, false)
}

/// Moves the alias entries of `new` from what `old` held (nothing, for a
/// new user). A value another user holds is refused with
/// `AliasExistsException`, with nothing staged; with `force` (Cognito's
/// `ForceAliasCreation`) it moves to `new`, and the previous owner's
/// attribute becomes unverified, so that user can no longer sign in or
/// recover through it. Decided here, so every node moves the same alias.
pub(super) fn claim_aliases(
    store: &Store,
    batch: &mut SmBatch<'_>,
    settings: &PoolSettings,
    old: Option<&User>,
    new: &User,
    force: bool,
) -> Result<Option<Outcome>, StoreError> {
    let before = old.map(|o| o.alias_keys(settings)).unwrap_or_default();
    let after = new.alias_keys(settings);
    let mut displaced: BTreeMap<String, Vec<SignInAlias>> = BTreeMap::new();
    for (alias, value) in &after {
        if before.contains(&(*alias, value.clone())) {
            continue;
        }
        if let Some(owner) = store
            .sub_by_alias(&new.pool_id, *alias, value)?
            .filter(|owner| *owner != new.sub)
        {
            if !force {
                return Ok(Some(Outcome::Rejected(Rejection::AliasExists(
                    alias.attribute().into(),
                ))));
            }
            displaced.entry(owner).or_default().push(*alias);
        }
    }
    for (owner, aliases) in &displaced {
        if let Some(prev) = store.user(&new.pool_id, owner)? {
            let mut moved = prev.clone();
            for alias in aliases {
                moved.set_verified(*alias, false);
            }
            moved.modified_at = new.modified_at;
            // Its alias entries are overwritten below.
            save(batch, settings, Some(&prev), &moved)?;
        }
    }
    for (alias, value) in &before {
        if !after.contains(&(*alias, value.clone())) {
            batch.delete(Table::UserAliases, &alias_key(&new.pool_id, *alias, value))?;
        }
    }
    let sub = codec::encode(&new.sub)?;
    for (alias, value) in &after {
        batch.put(Table::UserAliases, &alias_key(&new.pool_id, *alias, value), &sub)?;
    }
    Ok(None)
}

/// Creates a user (sign-up or admin-created), with the code to confirm
/// it and the message that carries the code or temporary password.
/// Uniqueness of the username and of every alias in use is decided here,
/// so two nodes taking conflicting sign-ups at once cannot both succeed.
/// Only verified values claim an alias; `force_alias_creation`
/// (AdminCreateUser's `ForceAliasCreation`) moves a taken one here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateUser {
    /// The complete user as prepared (sub, password hash and timestamps chosen by the proposer).
    pub user: User,
    /// The sign-up confirmation code to store, when one is sent.
    pub code: Option<CodeRecord>,
    /// The message carrying the code or temporary password; a full outbox refuses the whole command.
    pub message: Option<MessageDraft>,
    /// Move a verified alias held by another user to this one instead of refusing.
    pub force_alias_creation: bool,
}

impl Apply for CreateUser {
    type Output = User;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(create(
            store,
            batch,
            &self.user,
            self.code.as_ref(),
            self.message.as_ref(),
            self.force_alias_creation,
        )?)
    }
}
/// Confirms an `UNCONFIRMED` user: with a code guess (hashed by the
/// proposer) from `ConfirmSignUp`, or without one from
/// `AdminConfirmSignUp`. The attribute the code went to becomes verified
/// (if it still holds the value the code was sent to) and claims its
/// alias: refused with `AliasExistsException` if another user holds it,
/// or moved from that user with `force_alias_creation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmUser {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// The code guess hashed with the stored code's salt; `None` for `AdminConfirmSignUp`.
    pub guess_hash: Option<[u8; 32]>,
    /// Move the alias from another user that holds it instead of refusing.
    pub force_alias_creation: bool,
    /// Proposer's clock (Unix ms), for the code's expiry and `modified_at`.
    pub now: i64,
}

impl Apply for ConfirmUser {
    type Output = User;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(confirm(
            store,
            batch,
            &self.pool_id,
            &self.sub,
            self.guess_hash.as_ref(),
            self.force_alias_creation,
            self.now,
        )?)
    }
}
/// Replaces a user's outstanding code for `purpose` (resend).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueCode {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// Which code is replaced.
    pub purpose: CodePurpose,
    /// The new code, salted and hashed by the proposer.
    pub record: CodeRecord,
    /// The message carrying the new code.
    pub message: Option<MessageDraft>,
    /// Proposer's clock (Unix ms); counts the send against the user's send window.
    pub now: i64,
}

impl Apply for IssueCode {
    type Output = User;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let c = CodeIssue {
            pool_id: &self.pool_id,
            sub: &self.sub,
            purpose: self.purpose,
            record: &self.record,
            message: self.message.as_ref(),
            now: self.now,
        };
        Ok(issue_code(store, batch, c)?)
    }
}
/// Sets a password (argon2id PHC computed by the proposer) and status,
/// and merges `attributes`; refused unless the user is in
/// `require_status` when given (so a challenge session is single-use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetPassword {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// argon2id PHC string of the new password, hashed by the proposer.
    pub password_phc: String,
    /// The status the user has afterwards.
    pub status: UserStatus,
    /// Refuse unless the user is in this status now.
    pub require_status: Option<UserStatus>,
    /// Attributes set with the password (the `NEW_PASSWORD_REQUIRED` challenge's `userAttributes.*`).
    pub attributes: BTreeMap<String, String>,
    /// When the new password stops working if it is temporary (Unix ms); `None` for a permanent one.
    pub temporary_password_expires_at: Option<i64>,
    /// Ends every refresh token issued before `now` (password change or reset).
    pub revoke_refresh: bool,
    /// Proposer's clock (Unix ms), stamped as `modified_at`.
    pub now: i64,
}

impl Apply for SetPassword {
    type Output = User;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let change = PasswordChange {
            pool_id: &self.pool_id,
            sub: &self.sub,
            password_phc: &self.password_phc,
            status: self.status,
            require_status: self.require_status,
            attributes: &self.attributes,
            temporary_password_expires_at: self.temporary_password_expires_at,
            revoke_refresh: self.revoke_refresh,
            now: self.now,
        };
        Ok(set_password(store, batch, change)?)
    }
}
/// Sets attributes of a user. Verification flags are fields: `None` keeps
/// them, except that a changed email or phone number becomes unverified.
/// `pending` values wait for verification instead (the old verified value
/// stays in force); `code` and `message` carry the code that verifies one
/// of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateUserAttributes {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// Values that take effect at once.
    pub attributes: BTreeMap<String, String>,
    /// New `email_verified`; `None` keeps it (unless the email changes).
    pub email_verified: Option<bool>,
    /// New `phone_number_verified`; `None` keeps it (unless the phone number changes).
    pub phone_number_verified: Option<bool>,
    /// New email or phone values that wait for verification while the old one stays in force.
    pub pending: BTreeMap<String, String>,
    /// The code that verifies a pending or changed value, with its purpose.
    pub code: Option<(CodePurpose, CodeRecord)>,
    /// The message carrying that code.
    pub message: Option<MessageDraft>,
    /// Proposer's clock (Unix ms), stamped as `modified_at`.
    pub now: i64,
}

impl Apply for UpdateUserAttributes {
    type Output = User;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let change = AttributeChange {
            pool_id: &self.pool_id,
            sub: &self.sub,
            attributes: &self.attributes,
            verified: (self.email_verified, self.phone_number_verified),
            pending: &self.pending,
            code: self.code.as_ref(),
            message: self.message.as_ref(),
            now: self.now,
        };
        Ok(update_attributes(store, batch, change)?)
    }
}

#[cfg(test)]
mod tests {
    use crate::command::testkit::{run, store_with_pool, user_in};
    use crate::command::*;

    fn setup() -> (tempfile::TempDir, Store) {
        store_with_pool(&[SignInAlias::Email])
    }

    fn user(sub: &str, name: &str, email: &str) -> User {
        user_in(UserStatus::Unconfirmed, sub, name, email)
    }
    use std::collections::BTreeMap;

    use super::super::{Outcome, Rejection};
    use crate::auth::codes::{hash_code, CodeError, CodeRecord};

    use crate::model::outbox::{DeliveryMedium, MessageDraft, MessageKind, MessageStatus, OUTBOX_QUEUE_PER_POOL};

    use crate::model::pool_settings::SignInAlias;
    use crate::model::user::{User, UserStatus};
    use crate::store::auth_state::CodePurpose;
    use crate::store::Store;

    fn draft(n: u64) -> MessageDraft {
        MessageDraft {
            pool_id: "local_p".into(),
            username: format!("u{n}"),
            medium: DeliveryMedium::Email,
            destination: "a@b.io".into(),
            kind: MessageKind::ConfirmSignUp,
            subject: "s".into(),
            sealed: Some(crate::model::app_client::SealedSecret {
                nonce: [0; 12],
                ciphertext: vec![1, 2, 3],
            }),
            created_at: 0,
            deliver: true,
        }
    }

    #[test]
    fn confirmation_counts_attempts_and_verifies_the_destination() {
        let (_d, store) = setup();
        let record = CodeRecord::issue("123456", [3; 16], 1_000).bound_to(SignInAlias::Email, "ann@x.io");
        let out = run(
            &store,
            &CreateUser {
                user: user("s1", "ann", "ann@x.io"),
                code: Some(record),
                message: Some(draft(1)),
                force_alias_creation: false,
            },
        );
        assert!(matches!(out, Outcome::User(_)));
        let confirm = |guess: &str, now| ConfirmUser {
            pool_id: "local_p".into(),
            sub: "s1".into(),
            guess_hash: Some(hash_code(&[3; 16], guess)),
            force_alias_creation: false,
            now,
        };
        assert_eq!(
            run(&store, confirm("000000", 2_000)),
            Outcome::Rejected(Rejection::Code(CodeError::Mismatch))
        );
        // The spent attempt was stored, identically on every node.
        assert_eq!(
            store
                .code("local_p", "s1", crate::store::auth_state::CodePurpose::SignUp)
                .unwrap()
                .unwrap()
                .attempts_left,
            4
        );
        let Outcome::User(u) = run(&store, confirm("123456", 2_000)) else {
            panic!("confirm failed")
        };
        assert_eq!(u.status, UserStatus::Confirmed);
        assert!(u.email_verified);
        assert_eq!(
            run(&store, confirm("123456", 2_000)),
            Outcome::Rejected(Rejection::WrongStatus(UserStatus::Confirmed))
        );
    }

    /// Fills one pool's outbox through `IssueCode` on distinct users. Before
    /// this change the 10,001st message silently evicted message 0; now the
    /// pool's bound refuses the call, the user's code and send window stay
    /// as they were, nothing earlier is lost, and a delivery frees a place.
    #[test]
    fn full_outbox_refuses_and_never_evicts_undelivered() {
        let (_d, store) = setup();
        let record = CodeRecord::issue("1", [0; 16], 0);
        let issue = |sub: &str, n: u64, record: &CodeRecord| IssueCode {
            pool_id: "local_p".into(),
            sub: sub.into(),
            purpose: crate::store::auth_state::CodePurpose::SignUp,
            record: record.clone(),
            message: Some(draft(n)),
            now: 0,
        };
        for n in 0..OUTBOX_QUEUE_PER_POOL {
            let sub = format!("s{}", n / 5);
            if n % 5 == 0 {
                run(
                    &store,
                    &CreateUser {
                        user: user(&sub, &format!("u{sub}"), &format!("{sub}@x.io")),
                        code: None,
                        message: None,
                        force_alias_creation: false,
                    },
                );
            }
            assert!(
                matches!(run(&store, issue(&sub, n, &record)), Outcome::User(_)),
                "message {n}"
            );
        }
        run(
            &store,
            &CreateUser {
                user: user("last", "last", "last@x.io"),
                code: None,
                message: None,
                force_alias_creation: false,
            },
        );
        let other = CodeRecord::issue("2", [1; 16], 0);
        let out = run(&store, issue("last", 99_999, &other));
        assert!(matches!(out, Outcome::Rejected(Rejection::LimitExceeded(_))), "{out:?}");
        let purpose = crate::store::auth_state::CodePurpose::SignUp;
        assert!(
            store.code("local_p", "last", purpose).unwrap().is_none(),
            "no code stored"
        );
        let key = crate::store::auth_state::code_key("local_p", "last", purpose);
        assert!(store.send_window(&key).unwrap().is_none(), "send not counted");
        let meta = store.outbox_meta().unwrap();
        assert_eq!(meta.next, OUTBOX_QUEUE_PER_POOL);
        assert_eq!(meta.pending, OUTBOX_QUEUE_PER_POOL);
        assert!(store.outbox_message(0).unwrap().is_some(), "message 0 kept");
        assert_eq!(
            store.outbox_pending(usize::MAX).unwrap().len() as u64,
            OUTBOX_QUEUE_PER_POOL
        );
        // A delivery erases the secret and frees one place.
        run(
            &store,
            &RecordDelivery {
                id: 0,
                status: MessageStatus::Delivered,
                attempts: 1,
            },
        );
        let m = store.outbox_message(0).unwrap().unwrap();
        assert_eq!(m.status, MessageStatus::Delivered);
        assert!(m.draft.sealed.is_none());
        assert!(!store.outbox_pending(usize::MAX).unwrap().contains(&0));
        assert!(matches!(run(&store, issue("last", 99_999, &other)), Outcome::User(_)));
        assert!(matches!(
            run(&store, issue("last", 99_998, &other)),
            Outcome::Rejected(Rejection::LimitExceeded(_))
        ));
    }

    /// Stored (not delivered) messages hold their place while the code is
    /// valid, and are released only once it has expired.
    #[test]
    fn expired_stored_messages_make_room() {
        let (_d, store) = setup();
        run(
            &store,
            &CreateUser {
                user: user("s1", "ann", "ann@x.io"),
                code: None,
                message: None,
                force_alias_creation: false,
            },
        );
        let stored = |n: u64, at: i64| MessageDraft {
            deliver: false,
            created_at: at,
            ..draft(n)
        };
        let mut b = store.sm_batch();
        for n in 0..OUTBOX_QUEUE_PER_POOL {
            super::enqueue(&store, &mut b, &stored(n, 0)).unwrap();
            b.commit().unwrap();
            b = store.sm_batch();
        }
        drop(b);
        let reset = |at: i64| ResetUserPassword {
            pool_id: "local_p".into(),
            sub: "s1".into(),
            code: None,
            message: Some(stored(1_000_000, at)),
            now: at,
        };
        assert!(matches!(
            run(&store, reset(1_000)),
            Outcome::Rejected(Rejection::LimitExceeded(_))
        ));
        assert_eq!(
            store.user("local_p", "s1").unwrap().unwrap().status,
            UserStatus::Unconfirmed
        );
        let later = crate::auth::codes::CODE_VALIDITY_MS + 1;
        assert!(matches!(run(&store, reset(later)), Outcome::User(_)));
        assert!(
            store.outbox_message(0).unwrap().is_none(),
            "expired stored message released"
        );
        assert!(store.outbox_message(1).unwrap().is_some());
    }

    #[test]
    fn new_password_unverifies_a_changed_email_and_is_single_use() {
        let (_d, store) = setup();
        let mut admin_made = user("s1", "ann", "ann@x.io");
        admin_made.status = UserStatus::ForceChangePassword;
        admin_made.email_verified = true;
        let mut bob = user("s2", "bob", "bob@x.io");
        bob.email_verified = true;
        for u in [admin_made, bob] {
            run(
                &store,
                &CreateUser {
                    user: u,
                    code: None,
                    message: None,
                    force_alias_creation: false,
                },
            );
        }
        let alias_owner = |email: &str| store.sub_by_alias("local_p", SignInAlias::Email, email).unwrap();
        assert_eq!(alias_owner("ann@x.io").as_deref(), Some("s1"));
        let set = |email: &str| SetPassword {
            pool_id: "local_p".into(),
            sub: "s1".into(),
            password_phc: "new".into(),
            status: UserStatus::Confirmed,
            require_status: Some(UserStatus::ForceChangePassword),
            attributes: [("email".to_string(), email.to_string())].into(),
            temporary_password_expires_at: None,
            revoke_refresh: false,
            now: 5,
        };
        // The attack of issue 16: bob's address through the challenge. It
        // is taken, unverified, and claims nothing.
        let Outcome::User(u) = run(&store, set("BOB@x.io")) else {
            panic!("set password failed")
        };
        assert_eq!(u.status, UserStatus::Confirmed);
        assert!(!u.email_verified, "a changed email must not stay verified");
        assert_eq!(alias_owner("bob@x.io").as_deref(), Some("s2"), "bob keeps his alias");
        assert_eq!(alias_owner("ann@x.io"), None, "the old alias went with the old value");
        assert_eq!(
            run(&store, set("ann3@x.io")),
            Outcome::Rejected(Rejection::WrongStatus(UserStatus::Confirmed)),
            "a challenge completes once"
        );
    }

    #[test]
    fn a_password_change_voids_the_reset_code() {
        let (_d, store) = setup();
        let mut ann = user("s1", "ann", "ann@x.io");
        ann.status = UserStatus::Confirmed;
        ann.email_verified = true;
        run(
            &store,
            &CreateUser {
                user: ann,
                code: None,
                message: None,
                force_alias_creation: false,
            },
        );
        let reset = CodeRecord::issue("123456", [5; 16], 0).bound_to(SignInAlias::Email, "ann@x.io");
        let issued = run(
            &store,
            &IssueCode {
                pool_id: "local_p".into(),
                sub: "s1".into(),
                purpose: CodePurpose::ForgotPassword,
                record: reset,
                message: None,
                now: 1,
            },
        );
        assert!(matches!(issued, Outcome::User(_)), "{issued:?}");
        let change = SetPassword {
            pool_id: "local_p".into(),
            sub: "s1".into(),
            password_phc: "changed".into(),
            status: UserStatus::Confirmed,
            require_status: Some(UserStatus::Confirmed),
            attributes: BTreeMap::new(),
            temporary_password_expires_at: None,
            revoke_refresh: true,
            now: 2,
        };
        assert!(matches!(run(&store, &change), Outcome::User(_)));
        assert!(store
            .code("local_p", "s1", CodePurpose::ForgotPassword)
            .unwrap()
            .is_none());
        let confirm = ConfirmForgotPassword {
            pool_id: "local_p".into(),
            sub: "s1".into(),
            guess_hash: hash_code(&[5; 16], "123456"),
            password_phc: "attacker".into(),
            now: 3,
        };
        assert_eq!(run(&store, &confirm), Outcome::Rejected(Rejection::NoCode));
        assert_eq!(
            store.user("local_p", "s1").unwrap().unwrap().password_phc.as_deref(),
            Some("changed")
        );
        // A code bound to an address the user no longer has is refused
        // when issued.
        let elsewhere = CodeRecord::issue("654321", [6; 16], 0).bound_to(SignInAlias::Email, "old@x.io");
        assert_eq!(
            run(
                &store,
                &IssueCode {
                    pool_id: "local_p".into(),
                    sub: "s1".into(),
                    purpose: CodePurpose::ForgotPassword,
                    record: elsewhere,
                    message: None,
                    now: 4,
                },
            ),
            Outcome::Rejected(Rejection::Code(CodeError::Expired))
        );
    }

    #[test]
    fn a_code_verifies_only_the_value_it_was_sent_to() {
        let (_d, store) = setup();
        let mut ann = user("s1", "ann", "ann@x.io");
        ann.status = UserStatus::Confirmed;
        ann.attributes.insert("phone_number".into(), "+15550001".into());
        run(
            &store,
            &CreateUser {
                user: ann,
                code: None,
                message: None,
                force_alias_creation: false,
            },
        );
        for (alias, name, a, b, salt) in [
            (SignInAlias::PhoneNumber, "phone_number", "+15550001", "+15550002", 1u8),
            (SignInAlias::Email, "email", "ann@x.io", "ann@y.io", 2u8),
        ] {
            let purpose = CodePurpose::verify(alias);
            let record = CodeRecord::issue("111111", [salt; 16], 0).bound_to(alias, a);
            let issued = run(
                &store,
                &IssueCode {
                    pool_id: "local_p".into(),
                    sub: "s1".into(),
                    purpose,
                    record,
                    message: None,
                    now: 1,
                },
            );
            assert!(matches!(issued, Outcome::User(_)), "{issued:?}");
            // Not auto-verified here: the new value goes in directly.
            let update = UpdateUserAttributes {
                pool_id: "local_p".into(),
                sub: "s1".into(),
                attributes: [(name.to_string(), b.to_string())].into(),
                email_verified: None,
                phone_number_verified: None,
                pending: BTreeMap::new(),
                code: None,
                message: None,
                now: 2,
            };
            assert!(matches!(run(&store, &update), Outcome::User(_)));
            assert!(
                store.code("local_p", "s1", purpose).unwrap().is_none(),
                "changing {name} voids its code"
            );
            let verify = VerifyAttribute {
                pool_id: "local_p".into(),
                sub: "s1".into(),
                alias,
                guess_hash: hash_code(&[salt; 16], "111111"),
                now: 3,
            };
            assert!(matches!(run(&store, &verify), Outcome::Rejected(_)));
            let u = store.user("local_p", "s1").unwrap().unwrap();
            assert!(!u.is_verified(alias), "{name} {b} verified by a code sent to {a}");
        }
    }

    #[test]
    fn only_verified_values_hold_aliases_and_force_alias_creation_moves_them() {
        let (_d, store) = setup();
        let shared = "same@x.io";
        for (i, sub) in ["s1", "s2"].iter().enumerate() {
            let record = CodeRecord::issue("222222", [i as u8; 16], 0).bound_to(SignInAlias::Email, shared);
            let out = run(
                &store,
                &CreateUser {
                    user: user(sub, &format!("user{i}"), shared),
                    code: Some(record),
                    message: None,
                    force_alias_creation: false,
                },
            );
            assert!(
                matches!(out, Outcome::User(_)),
                "an unverified email blocks no one: {out:?}"
            );
        }
        let owner = || store.sub_by_alias("local_p", SignInAlias::Email, shared).unwrap();
        assert_eq!(owner(), None);
        let confirm = |sub: &str, salt: u8, force: bool| ConfirmUser {
            pool_id: "local_p".into(),
            sub: sub.into(),
            guess_hash: Some(hash_code(&[salt; 16], "222222")),
            force_alias_creation: force,
            now: 5,
        };
        assert!(matches!(run(&store, confirm("s2", 1, false)), Outcome::User(_)));
        assert_eq!(owner().as_deref(), Some("s2"));
        assert_eq!(
            run(&store, confirm("s1", 0, false)),
            Outcome::Rejected(Rejection::AliasExists("email".into()))
        );
        let s1 = store.user("local_p", "s1").unwrap().unwrap();
        assert_eq!(s1.status, UserStatus::Unconfirmed, "nothing changed");
        assert!(store.code("local_p", "s1", CodePurpose::SignUp).unwrap().is_some());
        let Outcome::User(s1) = run(&store, confirm("s1", 0, true)) else {
            panic!("forced confirmation failed")
        };
        assert!(s1.email_verified && s1.status == UserStatus::Confirmed);
        assert_eq!(owner().as_deref(), Some("s1"));
        let s2 = store.user("local_p", "s2").unwrap().unwrap();
        assert!(!s2.email_verified, "the previous owner's email is unverified");
        // AdminCreateUser with the value verified: refused, then forced.
        let mut admin_made = user("s3", "user3", "SAME@x.io");
        admin_made.email_verified = true;
        let create = |force| CreateUser {
            user: admin_made.clone(),
            code: None,
            message: None,
            force_alias_creation: force,
        };
        assert_eq!(
            run(&store, create(false)),
            Outcome::Rejected(Rejection::AliasExists("email".into()))
        );
        assert!(store.user("local_p", "s3").unwrap().is_none());
        assert!(matches!(run(&store, create(true)), Outcome::User(_)));
        assert_eq!(owner().as_deref(), Some("s3"));
        assert!(!store.user("local_p", "s1").unwrap().unwrap().email_verified);
    }

    #[test]
    fn attribute_updates_unverify_changed_destinations_and_keep_aliases_unique() {
        let (_d, store) = setup();
        let mut ann = user("s1", "ann", "ann@x.io");
        ann.email_verified = true;
        run(
            &store,
            &CreateUser {
                user: ann,
                code: None,
                message: None,
                force_alias_creation: false,
            },
        );
        run(
            &store,
            &CreateUser {
                user: User {
                    email_verified: true,
                    ..user("s2", "bob", "bob@x.io")
                },
                code: None,
                message: None,
                force_alias_creation: false,
            },
        );
        let update = |attrs: &[(&str, &str)], verified: Option<bool>| UpdateUserAttributes {
            pool_id: "local_p".into(),
            sub: "s1".into(),
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            email_verified: verified,
            phone_number_verified: None,
            pending: BTreeMap::new(),
            code: None,
            message: None,
            now: 9,
        };
        let Outcome::User(u) = run(&store, update(&[("name", "Ann")], None)) else {
            panic!("update failed")
        };
        assert!(u.email_verified, "an unrelated change keeps the email verified");
        let Outcome::User(u) = run(&store, update(&[("email", "ann@y.io")], None)) else {
            panic!("update failed")
        };
        assert!(!u.email_verified, "a new email is unverified");
        assert_eq!(
            run(&store, update(&[("email", "bob@x.io")], Some(true))),
            Outcome::Rejected(Rejection::AliasExists("email".into()))
        );
        assert_eq!(
            store.user("local_p", "s1").unwrap().unwrap().attributes["email"],
            "ann@y.io"
        );
    }
}
