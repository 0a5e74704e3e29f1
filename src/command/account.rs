//! Apply logic of account lifecycle commands: deleting users and
//! attributes, enabling and disabling, password resets with a code,
//! attribute verification, and bulk import.

use super::{Apply, ApplyError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use super::users::{claim_aliases, code_is_current, count_users, enqueue, reindex_aliases, save, void_stale_codes};
use super::{groups, not_found, Outcome, Rejection};
use crate::auth::codes::{CodeError, CodeRecord};
use crate::model::outbox::MessageDraft;
use crate::model::pool_settings::SignInAlias;
use crate::model::user::{User, UserStatus};
use crate::store::auth_state::{code_key, CodePurpose};
use crate::store::directory::index_keys;
use crate::store::keys::{pool_key, Table};
use crate::store::state::alias_key;
use crate::store::{codec, SmBatch, Store, StoreError};

pub(super) fn delete_user(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    sub: &str,
) -> Result<Outcome, StoreError> {
    let Some(pool) = store.pool(pool_id)? else {
        return Ok(not_found("user pool", pool_id));
    };
    let Some(user) = store.user(pool_id, sub)? else {
        return Ok(not_found("user", sub));
    };
    batch.delete(Table::Users, &pool_key(pool_id, sub.as_bytes()))?;
    batch.delete(
        Table::UserNames,
        &pool_key(pool_id, pool.settings.normalize_username(&user.username).as_bytes()),
    )?;
    for (alias, value) in user.alias_keys(&pool.settings) {
        // Only the entry this user owns; never another user's.
        if store.sub_by_alias(pool_id, alias, &value)?.as_deref() == Some(sub) {
            batch.delete(Table::UserAliases, &alias_key(pool_id, alias, &value))?;
        }
    }
    for k in index_keys(&pool.settings, &user) {
        batch.delete(Table::UserIndex, &k)?;
    }
    groups::drop_memberships(store, batch, pool_id, sub)?;
    let mut own = sub.as_bytes().to_vec();
    own.push(0);
    batch.delete_prefix(Table::Codes, &pool_key(pool_id, &own))?;
    batch.delete_prefix(Table::CodeSends, &pool_key(pool_id, &own))?;
    batch.delete(Table::SignInFailures, &pool_key(pool_id, sub.as_bytes()))?;
    // Its software tokens and recovery codes: a new user of the same name
    // starts without MFA.
    batch.delete(Table::UserMfa, &crate::store::mfa::user_mfa_key(pool_id, sub))?;
    batch.delete(Table::UserSrp, &crate::store::srp::user_srp_key(pool_id, sub))?;
    super::devices::drop_devices(batch, pool_id, sub)?;
    // Its passkeys: a deleted user's authenticator signs in as nobody.
    super::webauthn::drop_credentials(batch, pool_id, sub)?;
    // A user's own role goes with the user: a new user of the same name
    // must not inherit it.
    if let Some(role) = store.user_role(pool_id, sub)? {
        batch.delete(
            Table::RoleRefs,
            &crate::store::identity::role_ref_key(&role, pool_id, crate::store::identity::REF_USER, sub),
        )?;
    }
    batch.delete(Table::UserRoles, &crate::store::identity::user_role_key(pool_id, sub))?;
    // Its external identities are free again: they would sign in as nobody.
    for link in store.user_links(pool_id, sub)? {
        batch.delete(
            Table::ProviderLinks,
            &crate::store::identity::provider_link_key(pool_id, &link.provider_name, &link.subject),
        )?;
    }
    batch.delete_prefix(
        Table::UserProviderLinks,
        &crate::store::identity::user_link_key(pool_id, sub, ""),
    )?;
    count_users(store, batch, pool_id, -1)?;
    Ok(Outcome::User(user))
}

pub(super) fn delete_attributes(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    sub: &str,
    names: &[String],
    now: i64,
) -> Result<Outcome, StoreError> {
    let Some(pool) = store.pool(pool_id)? else {
        return Ok(not_found("user pool", pool_id));
    };
    let Some(old) = store.user(pool_id, sub)? else {
        return Ok(not_found("user", sub));
    };
    let mut user = old.clone();
    for name in names {
        user.attributes.remove(name);
        user.pending_attributes.remove(name);
        match name.as_str() {
            "email" => user.email_verified = false,
            "phone_number" => user.phone_number_verified = false,
            _ => {}
        }
    }
    user.modified_at = now;
    if let Some(rejected) = reindex_aliases(store, batch, &pool.settings, &old, &user)? {
        return Ok(rejected);
    }
    void_stale_codes(store, batch, &user, None)?;
    save(batch, &pool.settings, Some(&old), &user)?;
    Ok(Outcome::User(user))
}

/// Enables or disables a user. Disabling also ends every refresh token,
/// so a disabled account's sessions cannot be renewed after re-enabling.
pub(super) fn set_enabled(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    sub: &str,
    enabled: bool,
    now: i64,
) -> Result<Outcome, StoreError> {
    let Some(pool) = store.pool(pool_id)? else {
        return Ok(not_found("user pool", pool_id));
    };
    let Some(old) = store.user(pool_id, sub)? else {
        return Ok(not_found("user", sub));
    };
    let mut user = old.clone();
    user.enabled = enabled;
    if !enabled {
        user.refresh_revoked_before_ms = now;
    }
    user.modified_at = now;
    save(batch, &pool.settings, Some(&old), &user)?;
    Ok(Outcome::User(user))
}

/// `AdminResetUserPassword`: the password stops working, sessions end, and
/// a code for `ConfirmForgotPassword` is stored (and sent).
pub(super) fn reset_password(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    sub: &str,
    code: Option<&CodeRecord>,
    message: Option<&MessageDraft>,
    now: i64,
) -> Result<Outcome, StoreError> {
    let Some(pool) = store.pool(pool_id)? else {
        return Ok(not_found("user pool", pool_id));
    };
    let Some(old) = store.user(pool_id, sub)? else {
        return Ok(not_found("user", sub));
    };
    if let Some(m) = message {
        if !super::outbox::has_room(store, m)? {
            return Ok(super::outbox::queue_full(pool_id));
        }
    }
    let mut user = old.clone();
    user.status = UserStatus::ResetRequired;
    user.refresh_revoked_before_ms = now;
    user.modified_at = now;
    if let Some(code) = code {
        batch.put(
            Table::Codes,
            &code_key(pool_id, sub, CodePurpose::ForgotPassword),
            &codec::encode(code)?,
        )?;
    }
    if let Some(m) = message {
        enqueue(store, batch, m)?;
    }
    save(batch, &pool.settings, Some(&old), &user)?;
    Ok(Outcome::User(user))
}

/// `ConfirmForgotPassword`: checks the code, sets the password, confirms
/// the user and ends every refresh token.
pub(super) fn confirm_forgot_password(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    sub: &str,
    guess_hash: &[u8; 32],
    password_phc: &str,
    now: i64,
) -> Result<Outcome, StoreError> {
    let Some(pool) = store.pool(pool_id)? else {
        return Ok(not_found("user pool", pool_id));
    };
    let Some(old) = store.user(pool_id, sub)? else {
        return Ok(not_found("user", sub));
    };
    let key = code_key(pool_id, sub, CodePurpose::ForgotPassword);
    let Some(mut record) = store.code(pool_id, sub, CodePurpose::ForgotPassword)? else {
        return Ok(Outcome::Rejected(Rejection::NoCode));
    };
    if !code_is_current(&record, &old, CodePurpose::ForgotPassword) {
        batch.delete(Table::Codes, &key)?;
        return Ok(Outcome::Rejected(Rejection::Code(CodeError::Expired)));
    }
    if let Err(e) = record.check(guess_hash, now) {
        batch.put(Table::Codes, &key, &codec::encode(&record)?)?;
        return Ok(Outcome::Rejected(Rejection::Code(e)));
    }
    if password_phc.is_empty() {
        // The proposer sends no hash only for a guess it saw fail; never
        // leave a user without a password if the code changed meanwhile.
        return Ok(Outcome::Rejected(Rejection::Code(CodeError::Mismatch)));
    }
    batch.delete(Table::Codes, &key)?;
    let mut user = old.clone();
    // The code reached the address it was sent to (unchanged, checked
    // above): that proves it, unless another user has verified the same
    // value meanwhile, which keeps the alias.
    if let Some(alias) = record.verifies {
        let mut verified = user.clone();
        verified.set_verified(alias, true);
        if claim_aliases(store, batch, &pool.settings, Some(&old), &verified, false)?.is_none() {
            user = verified;
        }
    }
    user.password_phc = Some(password_phc.to_string());
    user.status = UserStatus::Confirmed;
    user.temporary_password_expires_at = None;
    user.refresh_revoked_before_ms = now;
    user.modified_at = now;
    batch.delete(Table::SignInFailures, &pool_key(pool_id, sub.as_bytes()))?;
    save(batch, &pool.settings, Some(&old), &user)?;
    Ok(Outcome::User(user))
}

/// `VerifyUserAttribute`: a pending value moves in (and takes over the
/// alias), or the current value becomes verified.
pub(super) fn verify_attribute(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    sub: &str,
    alias: SignInAlias,
    guess_hash: &[u8; 32],
    now: i64,
) -> Result<Outcome, StoreError> {
    let Some(pool) = store.pool(pool_id)? else {
        return Ok(not_found("user pool", pool_id));
    };
    let Some(old) = store.user(pool_id, sub)? else {
        return Ok(not_found("user", sub));
    };
    let purpose = CodePurpose::verify(alias);
    let key = code_key(pool_id, sub, purpose);
    let Some(mut record) = store.code(pool_id, sub, purpose)? else {
        return Ok(Outcome::Rejected(Rejection::NoCode));
    };
    if let Err(e) = record.check(guess_hash, now) {
        batch.put(Table::Codes, &key, &codec::encode(&record)?)?;
        return Ok(Outcome::Rejected(Rejection::Code(e)));
    }
    if !code_is_current(&record, &old, purpose) {
        // Sent to another value than the one there now: void.
        batch.delete(Table::Codes, &key)?;
        return Ok(Outcome::Rejected(Rejection::Code(CodeError::Expired)));
    }
    let name = alias.attribute();
    let mut user = old.clone();
    if let Some(v) = user.pending_attributes.remove(name) {
        user.attributes.insert(name.to_string(), v);
    }
    user.set_verified(alias, true);
    user.modified_at = now;
    if let Some(rejected) = reindex_aliases(store, batch, &pool.settings, &old, &user)? {
        return Ok(rejected);
    }
    batch.delete(Table::Codes, &key)?;
    save(batch, &pool.settings, Some(&old), &user)?;
    Ok(Outcome::User(user))
}

/// Creates many users at once; each that collides with an existing (or an
/// earlier one in the batch) is reported and skipped, the rest go in.
pub(super) fn import(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    users: &[User],
) -> Result<Outcome, StoreError> {
    import_with(
        store,
        batch,
        pool_id,
        users.iter().map(|u| (u, &[][..])),
        &mut |_, _, _| Ok(None),
    )
}

/// Decides a user's group memberships while importing: `Ok(Some(reason))`
/// refuses the user (nothing of it is written), `Ok(None)` lets it in
/// (the callback has staged its memberships).
pub(super) type GroupStep<'s> =
    dyn FnMut(&mut SmBatch<'_>, &User, &[String]) -> Result<Option<String>, StoreError> + 's;

/// [`import`], with each user's `groups` handed to `join` once its name
/// and aliases are known to be free.
pub(super) fn import_with<'u>(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    users: impl Iterator<Item = (&'u User, &'u [String])>,
    join: &mut GroupStep<'_>,
) -> Result<Outcome, StoreError> {
    let Some(pool) = store.pool(pool_id)? else {
        return Ok(not_found("user pool", pool_id));
    };
    let mut names = BTreeSet::new();
    let mut aliases = BTreeSet::new();
    let mut imported = 0u32;
    let mut failures = Vec::new();
    for (user, groups) in users {
        let name = pool.settings.normalize_username(&user.username);
        let keys = user.alias_keys(&pool.settings);
        let taken_name = names.contains(&name) || store.sub_by_username(pool_id, &name)?.is_some();
        let mut taken_alias = None;
        for (alias, value) in &keys {
            if aliases.contains(&(*alias, value.clone())) || store.sub_by_alias(pool_id, *alias, value)?.is_some() {
                taken_alias = Some(alias.attribute());
                break;
            }
        }
        if user.pool_id != pool_id {
            failures.push((user.username.clone(), "belongs to another pool".to_string()));
            continue;
        }
        if taken_name {
            failures.push((user.username.clone(), Rejection::UsernameExists.to_string()));
            continue;
        }
        if let Some(a) = taken_alias {
            failures.push((user.username.clone(), Rejection::AliasExists(a.into()).to_string()));
            continue;
        }
        if let Some(reason) = join(batch, user, groups)? {
            failures.push((user.username.clone(), reason));
            continue;
        }
        let sub = codec::encode(&user.sub)?;
        save(batch, &pool.settings, None, user)?;
        batch.put(Table::UserNames, &pool_key(pool_id, name.as_bytes()), &sub)?;
        for (alias, value) in keys {
            batch.put(Table::UserAliases, &alias_key(pool_id, alias, &value), &sub)?;
            aliases.insert((alias, value));
        }
        names.insert(name);
        imported += 1;
    }
    count_users(store, batch, pool_id, i64::from(imported))?;
    Ok(Outcome::Imported(super::ImportReport { imported, failures }))
}

/// Deletes a user with its names, aliases, index entries, memberships,
/// codes and counters; the username is free at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteUser {
    /// The pool of the user.
    pub pool_id: String,
    /// The user to delete, by `sub`.
    pub sub: String,
}

impl Apply for DeleteUser {
    type Output = User;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(delete_user(store, batch, &self.pool_id, &self.sub)?)
    }
}
/// Removes attributes of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteUserAttributes {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// Attribute names to remove; removing `email` or `phone_number` also clears its verified flag.
    pub names: Vec<String>,
    /// Proposer's clock (Unix ms), stamped as `modified_at`.
    pub now: i64,
}

impl Apply for DeleteUserAttributes {
    type Output = User;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(delete_attributes(
            store,
            batch,
            &self.pool_id,
            &self.sub,
            &self.names,
            self.now,
        )?)
    }
}
/// Enables or disables a user; disabling ends its refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetUserEnabled {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// The new state.
    pub enabled: bool,
    /// Proposer's clock (Unix ms); refresh tokens issued before it end when disabling.
    pub now: i64,
}

impl Apply for SetUserEnabled {
    type Output = User;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(set_enabled(
            store,
            batch,
            &self.pool_id,
            &self.sub,
            self.enabled,
            self.now,
        )?)
    }
}
/// `AdminResetUserPassword`: `RESET_REQUIRED`, sessions ended, and a
/// code for `ConfirmForgotPassword`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetUserPassword {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// The reset code to store; `None` when the user has no verified address to send it to.
    pub code: Option<CodeRecord>,
    /// The message carrying the code, queued in the outbox with it.
    pub message: Option<MessageDraft>,
    /// Proposer's clock (Unix ms); refresh tokens issued before it end.
    pub now: i64,
}

impl Apply for ResetUserPassword {
    type Output = User;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(reset_password(
            store,
            batch,
            &self.pool_id,
            &self.sub,
            self.code.as_ref(),
            self.message.as_ref(),
            self.now,
        )?)
    }
}
/// Checks a forgot-password code (hashed by the proposer) and sets the
/// new password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmForgotPassword {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// The guess hashed with the stored code's salt by the proposer; the guess itself never enters the log.
    pub guess_hash: [u8; 32],
    /// argon2id PHC string of the new password; empty when the proposer already saw the guess fail.
    pub password_phc: String,
    /// Proposer's clock (Unix ms): checks the code's expiry and ends older refresh tokens.
    pub now: i64,
}

impl Apply for ConfirmForgotPassword {
    type Output = User;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(confirm_forgot_password(
            store,
            batch,
            &self.pool_id,
            &self.sub,
            &self.guess_hash,
            &self.password_phc,
            self.now,
        )?)
    }
}
/// Checks an attribute verification code and verifies the attribute,
/// moving a pending value in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyAttribute {
    /// The pool of the user.
    pub pool_id: String,
    /// The user, by `sub`.
    pub sub: String,
    /// Which attribute the code verifies.
    pub alias: SignInAlias,
    /// The guess hashed with the stored code's salt by the proposer.
    pub guess_hash: [u8; 32],
    /// Proposer's clock (Unix ms), for the code's expiry and `modified_at`.
    pub now: i64,
}

impl Apply for VerifyAttribute {
    type Output = User;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(verify_attribute(
            store,
            batch,
            &self.pool_id,
            &self.sub,
            self.alias,
            &self.guess_hash,
            self.now,
        )?)
    }
}
/// Creates many users; collisions are reported, not fatal. Proposed by
/// releases before `ImportUserRecords` (which adds groups) and kept so
/// that their log entries still apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportUsers {
    /// The pool the users go into.
    pub pool_id: String,
    /// Complete users as prepared (ids and hashes chosen); at most `MAX_IMPORT_PER_COMMAND`.
    pub users: Vec<User>,
}

impl Apply for ImportUsers {
    type Output = super::ImportReport;

    fn validate(&self) -> Result<(), Rejection> {
        if self.users.len() > MAX_IMPORT_PER_COMMAND {
            return Err(Rejection::Invalid(format!(
                "{} users in one import; at most {MAX_IMPORT_PER_COMMAND}",
                self.users.len()
            )));
        }
        Ok(())
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(import(store, batch, &self.pool_id, &self.users)?)
    }
}
/// Most users one `ImportUsers` entry creates (`AdminImportUsers` sends
/// at most 1,000 a call), so one entry's apply stays short.
pub const MAX_IMPORT_PER_COMMAND: usize = 1000;

#[cfg(test)]
mod tests {
    use crate::command::testkit::{run, store_with_pool, user_in};
    use crate::command::*;

    fn setup() -> (tempfile::TempDir, Store) {
        store_with_pool(&[SignInAlias::Email])
    }

    fn user(sub: &str, name: &str, email: &str) -> User {
        user_in(UserStatus::Confirmed, sub, name, email)
    }
    use std::collections::BTreeMap;

    use super::super::{Command, Outcome, Rejection};
    use crate::auth::codes::{hash_code, CodeRecord};
    use crate::model::auth_event::{AuthEvent, AuthEventType};

    use crate::model::group::Group;

    use crate::model::pool_settings::SignInAlias;
    use crate::model::user::{User, UserStatus};
    use crate::store::auth_state::CodePurpose;
    use crate::store::Store;

    fn create(store: &Store, u: User) {
        let out = run(
            store,
            &CreateUser {
                user: u,
                code: None,
                message: None,
                force_alias_creation: false,
            },
        );
        assert!(matches!(out, Outcome::User(_)), "{out:?}");
    }

    fn group(name: &str, precedence: Option<i32>) -> Group {
        Group {
            pool_id: "local_p".into(),
            name: name.into(),
            description: String::new(),
            role_arn: String::new(),
            precedence,
            permissions: vec![format!("{name}:read")],
            created_at: 1,
            modified_at: 1,
        }
    }

    fn index_subs(store: &Store, attr: &str, value: &str) -> Vec<String> {
        let mut stem = crate::store::directory::index_stem(attr, value);
        stem.push(0);
        store
            .index_page("local_p", &stem, None, 100)
            .unwrap()
            .iter()
            .filter_map(|k| crate::store::directory::sub_of_index_key(k))
            .collect()
    }

    #[test]
    fn deleting_a_user_frees_everything_it_held() {
        let (_d, store) = setup();
        create(&store, user("s1", "Ann", "ann@x.io"));
        run(
            &store,
            &PutGroup {
                group: group("teachers", Some(1)),
                create: true,
            },
        );
        let add = AddUserToGroup {
            pool_id: "local_p".into(),
            group: "teachers".into(),
            sub: "s1".into(),
        };
        assert!(matches!(run(&store, &add), Outcome::User(_)));
        assert_eq!(store.groups_of("local_p", "s1").unwrap().len(), 1);
        assert_eq!(
            index_subs(&store, "email", "ANN@x.io"),
            vec!["s1"],
            "the index ignores case"
        );
        let del = DeleteUser {
            pool_id: "local_p".into(),
            sub: "s1".into(),
        };
        assert!(matches!(run(&store, &del), Outcome::User(_)));
        assert!(store.user("local_p", "s1").unwrap().is_none());
        assert!(store.sub_by_username("local_p", "ann").unwrap().is_none());
        assert!(store
            .sub_by_alias("local_p", SignInAlias::Email, "ann@x.io")
            .unwrap()
            .is_none());
        assert!(index_subs(&store, "email", "ann@x.io").is_empty());
        assert!(store.member_subs("local_p", "teachers", None, 10).unwrap().is_empty());
        // The name is free again, under a new sub.
        create(&store, user("s2", "ann", "ann@x.io"));
        assert_eq!(
            run(&store, &del),
            Outcome::Rejected(Rejection::NotFound {
                kind: "user".into(),
                id: "s1".into()
            })
        );
    }

    #[test]
    fn groups_order_by_precedence_and_deleting_a_group_drops_memberships() {
        let (_d, store) = setup();
        create(&store, user("s1", "ann", "ann@x.io"));
        for (name, p) in [("z", None), ("b", Some(5)), ("a", Some(5)), ("c", Some(1))] {
            run(
                &store,
                &PutGroup {
                    group: group(name, p),
                    create: true,
                },
            );
            run(
                &store,
                &AddUserToGroup {
                    pool_id: "local_p".into(),
                    group: name.into(),
                    sub: "s1".into(),
                },
            );
        }
        let names: Vec<String> = store
            .groups_of("local_p", "s1")
            .unwrap()
            .into_iter()
            .map(|g| g.name)
            .collect();
        assert_eq!(names, ["c", "a", "b", "z"]);
        assert!(matches!(
            run(
                &store,
                &PutGroup {
                    group: group("a", None),
                    create: true
                }
            ),
            Outcome::Rejected(Rejection::AlreadyExists { .. })
        ));
        run(
            &store,
            &DeleteGroup {
                pool_id: "local_p".into(),
                name: "a".into(),
            },
        );
        let names: Vec<String> = store
            .groups_of("local_p", "s1")
            .unwrap()
            .into_iter()
            .map(|g| g.name)
            .collect();
        assert_eq!(names, ["c", "b", "z"]);
        assert!(matches!(
            run(
                &store,
                &AddUserToGroup {
                    pool_id: "local_p".into(),
                    group: "a".into(),
                    sub: "s1".into()
                }
            ),
            Outcome::Rejected(Rejection::NotFound { .. })
        ));
    }

    #[test]
    fn failed_sign_ins_lock_and_are_audited() {
        let (_d, store) = setup();
        create(&store, user("s1", "ann", "ann@x.io"));
        let fail = |at| RecordSignInFailure {
            pool_id: "local_p".into(),
            sub: "s1".into(),
            event: AuthEvent::draft("local_p", AuthEventType::SignIn, at).user("ann", "s1"),
        };
        for i in 0..4 {
            let Outcome::Lockout(s) = run(&store, fail(1000 + i)) else {
                panic!("no lockout state")
            };
            assert_eq!(s.locked_for(1000 + i), None);
        }
        let Outcome::Lockout(s) = run(&store, fail(2000)) else {
            panic!("no lockout state")
        };
        assert_eq!(s.locked_for(2000), Some(1000));
        let events = store.auth_events_page("local_p", Some("s1"), None, 100).unwrap();
        assert_eq!(events.len(), 6, "five failures and one lockout");
        assert_eq!(events[0].event_type, AuthEventType::Lockout, "newest first");
        assert!(events.iter().all(|e| !e.pass));
        run(
            &store,
            &ClearSignInFailures {
                pool_id: "local_p".into(),
                sub: "s1".into(),
            },
        );
        assert!(store.lockout("local_p", "s1").unwrap().is_none());
    }

    #[test]
    fn audited_commands_record_their_outcome() {
        let (_d, store) = setup();
        create(&store, user("s1", "ann", "ann@x.io"));
        let disable = Audited {
            inner: Box::new(Command::from(SetUserEnabled {
                pool_id: "local_p".into(),
                sub: "s1".into(),
                enabled: false,
                now: 50,
            })),
            event: AuthEvent::draft("local_p", AuthEventType::AdminAction, 50).detail("AdminDisableUser"),
        };
        let Outcome::User(u) = run(&store, &disable) else {
            panic!("disable failed")
        };
        assert!(!u.enabled);
        assert_eq!(u.refresh_revoked_before_ms, 50);
        assert_eq!(index_subs(&store, "status", "disabled"), vec!["s1"]);
        assert!(index_subs(&store, "status", "enabled").is_empty());
        let missing = Audited {
            inner: Box::new(Command::from(DeleteUser {
                pool_id: "local_p".into(),
                sub: "nobody".into(),
            })),
            event: AuthEvent::draft("local_p", AuthEventType::DeleteUser, 60),
        };
        assert!(matches!(run(&store, &missing), Outcome::Rejected(_)));
        let events = store.auth_events_page("local_p", None, None, 10).unwrap();
        assert_eq!(events.len(), 2);
        assert!(!events[0].pass && events[1].pass);
        assert_eq!(events[1].sub, "s1", "filled from the outcome");
        // Paging: strictly older than the last seen id.
        let older = store.auth_events_page("local_p", None, Some(events[0].id), 10).unwrap();
        assert_eq!(older.len(), 1);
        assert_eq!(older[0].id, events[1].id);
    }

    #[test]
    fn pending_email_waits_for_its_code() {
        let (_d, store) = setup();
        create(&store, user("s1", "ann", "ann@x.io"));
        let record = CodeRecord::issue("123456", [7; 16], 0).bound_to(SignInAlias::Email, "new@x.io");
        let update = UpdateUserAttributes {
            pool_id: "local_p".into(),
            sub: "s1".into(),
            attributes: BTreeMap::new(),
            email_verified: None,
            phone_number_verified: None,
            pending: [("email".to_string(), "new@x.io".to_string())].into(),
            code: Some((CodePurpose::VerifyEmail, record)),
            message: None,
            now: 10,
        };
        let Outcome::User(u) = run(&store, &update) else {
            panic!("update failed")
        };
        assert_eq!(u.attributes["email"], "ann@x.io", "the old value stays in force");
        assert!(u.email_verified);
        assert_eq!(
            store
                .sub_by_alias("local_p", SignInAlias::Email, "ann@x.io")
                .unwrap()
                .as_deref(),
            Some("s1")
        );
        let verify = |guess: &str| VerifyAttribute {
            pool_id: "local_p".into(),
            sub: "s1".into(),
            alias: SignInAlias::Email,
            guess_hash: hash_code(&[7; 16], guess),
            now: 20,
        };
        assert!(matches!(
            run(&store, verify("000000")),
            Outcome::Rejected(Rejection::Code(_))
        ));
        let Outcome::User(u) = run(&store, verify("123456")) else {
            panic!("verify failed")
        };
        assert_eq!(u.attributes["email"], "new@x.io");
        assert!(u.email_verified && u.pending_attributes.is_empty());
        assert!(store
            .sub_by_alias("local_p", SignInAlias::Email, "ann@x.io")
            .unwrap()
            .is_none());
        assert_eq!(index_subs(&store, "email", "new@x.io"), vec!["s1"]);
    }

    #[test]
    fn import_skips_collisions_inside_and_outside_the_batch() {
        let (_d, store) = setup();
        create(&store, user("s0", "taken", "taken@x.io"));
        let users = vec![
            user("s1", "a", "a@x.io"),
            user("s2", "A", "b@x.io"),
            user("s3", "c", "a@x.io"),
            user("s4", "taken", "d@x.io"),
            user("s5", "e", "e@x.io"),
        ];
        let Outcome::Imported(ImportReport { imported, failures }) = run(
            &store,
            &ImportUsers {
                pool_id: "local_p".into(),
                users,
            },
        ) else {
            panic!("import failed")
        };
        assert_eq!(imported, 2);
        let failed: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(failed, ["A", "c", "taken"]);
        assert_eq!(store.user_count("local_p").unwrap(), 3);
        assert_eq!(
            store.estimated_users("local_p").unwrap(),
            3,
            "the counter agrees with a scan"
        );
        assert_eq!(index_subs(&store, "username", "e"), vec!["s5"]);
    }
}
