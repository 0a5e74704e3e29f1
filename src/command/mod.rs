//! The replicated `Command` and its deterministic `apply`.
//!
//! A command carries everything non-deterministic that its effect needs:
//! ids, timestamps and hashes are chosen by the node that *prepared* it
//! (`service/`). `apply` runs on every node, in log order, and must reach the
//! same result everywhere: it reads only the store, never the clock, an RNG
//! or node-local config, and iterates only ordered collections
//! (ARCHITECTURE.md §2.1; `clippy.toml` enforces the bans).
//!
//! A command that cannot take effect (a duplicate, a missing pool) is not an
//! error of the log: it applies as a no-op and returns a [`Rejection`], which
//! the proposer turns into the client's error.

mod account;
mod audit;
mod groups;
mod membership;
mod outbox;
mod pools;
mod tokens;
mod users;

pub use outbox::{expired_messages, EXPIRE_BATCH};

pub use users::{MAX_SENDS_PER_WINDOW, SEND_WINDOW_MS};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::auth::codes::{CodeError, CodeRecord};
use crate::auth::lockout::LockoutState;
use crate::model::app_client::AppClient;
use crate::model::auth_event::AuthEvent;
use crate::model::cluster::{ClusterInfo, JoinTokenRecord, SigningKeyRecord};
use crate::model::group::Group;
use crate::model::outbox::{MessageDraft, MessageStatus};
use crate::model::pool::UserPool;
use crate::model::pool_settings::{Argon2Params, PasswordPolicy, SignInAlias, TokenValidity};
use crate::model::user::{User, UserStatus};
use crate::store::auth_state::CodePurpose;
use crate::store::keys::Table;
use crate::store::state::CLUSTER_KEY;
use crate::store::{codec, SmBatch, Store, StoreError};

/// A replicated state change. Serialized into the Raft log; variants may be
/// added but never reordered or changed, since old logs must still decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Sets the cluster-wide settings, once.
    InitCluster(ClusterInfo),
    /// Records that a node id left the membership and may never return.
    RetireNode {
        node_id: u64,
    },
    /// Creates a pool whose id the proposer drew at random.
    CreateUserPool(UserPool),
    /// Deletes a pool (and everything in it) unless deletion protection is on.
    DeleteUserPool {
        pool_id: String,
    },
    /// Creates a user (sign-up or admin-created), with the code to confirm
    /// it and the message that carries the code or temporary password.
    /// Uniqueness of the username and of every alias in use is decided here,
    /// so two nodes taking conflicting sign-ups at once cannot both succeed.
    /// Only verified values claim an alias; `force_alias_creation`
    /// (AdminCreateUser's `ForceAliasCreation`) moves a taken one here.
    CreateUser {
        user: User,
        code: Option<CodeRecord>,
        message: Option<MessageDraft>,
        force_alias_creation: bool,
    },
    /// Publishes a node's public signing key into the JWKS. Idempotent.
    RegisterSigningKey(SigningKeyRecord),
    /// Changes the mutable settings of a pool.
    UpdateUserPool {
        pool_id: String,
        update: PoolUpdate,
    },
    /// Creates (`create`) or replaces an app client. A replacement keeps the
    /// stored secret and creation date.
    PutAppClient {
        client: AppClient,
        create: bool,
    },
    DeleteAppClient {
        pool_id: String,
        client_id: String,
    },
    /// Confirms an `UNCONFIRMED` user: with a code guess (hashed by the
    /// proposer) from `ConfirmSignUp`, or without one from
    /// `AdminConfirmSignUp`. The attribute the code went to becomes verified
    /// (if it still holds the value the code was sent to) and claims its
    /// alias: refused with `AliasExistsException` if another user holds
    /// it, or moved from that user with `force_alias_creation`.
    ConfirmUser {
        pool_id: String,
        sub: String,
        guess_hash: Option<[u8; 32]>,
        force_alias_creation: bool,
        now: i64,
    },
    /// Replaces a user's outstanding code for `purpose` (resend).
    IssueCode {
        pool_id: String,
        sub: String,
        purpose: CodePurpose,
        record: CodeRecord,
        message: Option<MessageDraft>,
        now: i64,
    },
    /// Sets a password (argon2id PHC computed by the proposer) and status,
    /// and merges `attributes`; refused unless the user is in
    /// `require_status` when given (so a challenge session is single-use).
    SetPassword {
        pool_id: String,
        sub: String,
        password_phc: String,
        status: UserStatus,
        require_status: Option<UserStatus>,
        attributes: BTreeMap<String, String>,
        temporary_password_expires_at: Option<i64>,
        /// Ends every refresh token issued before `now` (password change
        /// or reset).
        revoke_refresh: bool,
        now: i64,
    },
    /// Refuses every token of the user issued before `at` (Unix ms).
    GlobalSignOut {
        pool_id: String,
        sub: String,
        at: i64,
    },
    /// Revokes a refresh-token family and the tokens minted from it.
    RevokeToken {
        pool_id: String,
        origin_jti: String,
        expires_at: i64,
    },
    /// A node stopped signing with its old key at `at` (rotation): the key
    /// becomes retiring (verify only) for the longest token lifetime of any
    /// pool, bounded by `max_retiring_ms` (the proposer's test knob
    /// `tokens.max_key_retiring_secs`).
    RetireSigningKey {
        kid: String,
        at: i64,
        max_retiring_ms: Option<i64>,
    },
    /// Asks every node to replace signing keys created before `at`.
    RequestKeyRotation {
        at: i64,
    },
    /// Records the courier's result for an outbox message; a final status
    /// erases its body and code.
    RecordDelivery {
        id: u64,
        status: MessageStatus,
        attempts: u32,
    },
    /// Sets attributes of a user. Verification flags are fields: `None`
    /// keeps them, except that a changed email or phone number becomes
    /// unverified. `pending` values wait for verification instead (the old
    /// verified value stays in force); `code` and `message` carry the code
    /// that verifies one of them.
    UpdateUserAttributes {
        pool_id: String,
        sub: String,
        attributes: BTreeMap<String, String>,
        email_verified: Option<bool>,
        phone_number_verified: Option<bool>,
        pending: BTreeMap<String, String>,
        code: Option<(CodePurpose, CodeRecord)>,
        message: Option<MessageDraft>,
        now: i64,
    },
    /// Creates (`create`) or replaces a group; a replacement keeps the
    /// creation date.
    PutGroup {
        group: Group,
        create: bool,
    },
    /// Deletes a group and every membership in it.
    DeleteGroup {
        pool_id: String,
        name: String,
    },
    AddUserToGroup {
        pool_id: String,
        group: String,
        sub: String,
    },
    RemoveUserFromGroup {
        pool_id: String,
        group: String,
        sub: String,
    },
    /// Deletes a user with its names, aliases, index entries, memberships,
    /// codes and counters; the username is free at once.
    DeleteUser {
        pool_id: String,
        sub: String,
    },
    DeleteUserAttributes {
        pool_id: String,
        sub: String,
        names: Vec<String>,
        now: i64,
    },
    /// Enables or disables a user; disabling ends its refresh tokens.
    SetUserEnabled {
        pool_id: String,
        sub: String,
        enabled: bool,
        now: i64,
    },
    /// `AdminResetUserPassword`: `RESET_REQUIRED`, sessions ended, and a
    /// code for `ConfirmForgotPassword`.
    ResetUserPassword {
        pool_id: String,
        sub: String,
        code: Option<CodeRecord>,
        message: Option<MessageDraft>,
        now: i64,
    },
    /// Checks a forgot-password code (hashed by the proposer) and sets the
    /// new password.
    ConfirmForgotPassword {
        pool_id: String,
        sub: String,
        guess_hash: [u8; 32],
        password_phc: String,
        now: i64,
    },
    /// Checks an attribute verification code and verifies the attribute,
    /// moving a pending value in.
    VerifyAttribute {
        pool_id: String,
        sub: String,
        alias: SignInAlias,
        guess_hash: [u8; 32],
        now: i64,
    },
    /// Counts a failed sign-in (lockout) and records it in the audit log.
    RecordSignInFailure {
        pool_id: String,
        sub: String,
        event: AuthEvent,
    },
    /// Forgets a user's failed sign-ins (after a success).
    ClearSignInFailures {
        pool_id: String,
        sub: String,
    },
    /// Appends events to the audit log (successful sign-ins, batched by
    /// the node that served them; failures that name no user).
    RecordAuthEvents(Vec<AuthEvent>),
    /// Applies `inner` and records `event` with its outcome, atomically.
    Audited {
        #[serde(deserialize_with = "crate::store::codec::bounded_box")]
        inner: Box<Command>,
        event: AuthEvent,
    },
    /// Creates many users; collisions are reported, not fatal.
    ImportUsers {
        pool_id: String,
        users: Vec<User>,
    },
    /// Admits a node to the peer port: records its peer public key,
    /// spending one use of the join token it proved it holds. Without a
    /// token, only the node that forms the cluster is admitted.
    AdmitNode {
        node_id: u64,
        public_key: [u8; 32],
        token_id: Option<String>,
        now: i64,
    },
    /// Stores a new join token (its verifier, never the secret).
    CreateJoinToken(JoinTokenRecord),
    /// Deletes a join token: nodes not yet admitted with it cannot join.
    RevokeJoinToken {
        id: String,
    },
    /// The timed key transitions at `now`: starts the retiring period of
    /// removed nodes' keys and retires keys whose period is over (out of
    /// the JWKS, tokens refused). Any node's key maintenance may propose
    /// it; applying it twice changes nothing.
    ExpireSigningKeys {
        now: i64,
        max_retiring_ms: Option<i64>,
    },
    /// Erases the codes and temporary passwords of outbox messages that
    /// expired undelivered and unread (at most
    /// [`EXPIRE_BATCH`] per entry). The leader's sweeper proposes
    /// it; applying it twice changes nothing.
    ExpireOutboxMessages {
        now: i64,
    },
}

/// The mutable settings of a pool; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolUpdate {
    pub password_policy: Option<PasswordPolicy>,
    pub auto_verified_attributes: Option<Vec<SignInAlias>>,
    pub token_validity: Option<TokenValidity>,
    pub argon2: Option<Argon2Params>,
    pub deletion_protection: Option<bool>,
    /// `UserAttributeUpdateSettings.AttributesRequireVerificationBeforeUpdate`.
    pub attributes_require_verification_before_update: Option<Vec<SignInAlias>>,
    pub modified_at: i64,
}

/// What applying a command produced; sent back to the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Applied with nothing to return (also the reply to blank and
    /// membership entries).
    Done,
    /// The pool as created.
    PoolCreated(UserPool),
    /// The pool as updated.
    Pool(UserPool),
    /// The app client as stored.
    AppClient(AppClient),
    /// The user as it is after the command (before, for a deletion).
    User(User),
    /// The group as stored (before, for a deletion).
    Group(Group),
    /// A user's lockout state after a failed sign-in.
    Lockout(LockoutState),
    /// What an import created, and why the rest failed.
    Imported {
        imported: u32,
        failures: Vec<(String, String)>,
    },
    /// The command was valid but could not take effect.
    Rejected(Rejection),
}

/// Why a well-formed command had no effect. Decided in `apply`, so every
/// node agrees, even when two proposals race.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("the cluster is already initialised")]
    AlreadyInitialized,
    #[error("the cluster is not initialised yet")]
    NotInitialized,
    #[error("{kind} {id} already exists")]
    AlreadyExists { kind: String, id: String },
    #[error("{kind} {id} does not exist")]
    NotFound { kind: String, id: String },
    #[error("user pool {0} has deletion protection; turn it off first")]
    DeletionProtected(String),
    #[error("an account with the given username already exists")]
    UsernameExists,
    #[error("an account with the given {0} already exists")]
    AliasExists(String),
    #[error("{0}")]
    Code(CodeError),
    #[error("no code is outstanding for this user; request a new one")]
    NoCode,
    #[error("the user's status is {}", .0.as_cognito())]
    WrongStatus(UserStatus),
    #[error("{0}")]
    LimitExceeded(String),
    /// A node's admission to the peer port was refused.
    #[error("{0}")]
    JoinRefused(String),
}

impl std::fmt::Display for Command {
    /// Only the command's name: field values may be secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Done => f.write_str("done"),
            Outcome::PoolCreated(p) => write!(f, "pool {} created", p.id),
            Outcome::Pool(p) => write!(f, "pool {}", p.id),
            Outcome::AppClient(c) => write!(f, "app client {}", c.client_id),
            Outcome::User(u) => write!(f, "user {}", u.sub),
            Outcome::Group(g) => write!(f, "group {}", g.name),
            Outcome::Lockout(l) => write!(f, "{} failures", l.failures),
            Outcome::Imported { imported, failures } => {
                write!(f, "{imported} imported, {} failed", failures.len())
            }
            Outcome::Rejected(r) => write!(f, "rejected: {r}"),
        }
    }
}

impl Command {
    /// A short name for logs and metrics; never includes field values.
    pub fn name(&self) -> &'static str {
        match self {
            Command::InitCluster(_) => "InitCluster",
            Command::RetireNode { .. } => "RetireNode",
            Command::CreateUserPool(_) => "CreateUserPool",
            Command::DeleteUserPool { .. } => "DeleteUserPool",
            Command::CreateUser { .. } => "CreateUser",
            Command::RegisterSigningKey(_) => "RegisterSigningKey",
            Command::UpdateUserPool { .. } => "UpdateUserPool",
            Command::PutAppClient { .. } => "PutAppClient",
            Command::DeleteAppClient { .. } => "DeleteAppClient",
            Command::ConfirmUser { .. } => "ConfirmUser",
            Command::IssueCode { .. } => "IssueCode",
            Command::SetPassword { .. } => "SetPassword",
            Command::GlobalSignOut { .. } => "GlobalSignOut",
            Command::RevokeToken { .. } => "RevokeToken",
            Command::RetireSigningKey { .. } => "RetireSigningKey",
            Command::ExpireSigningKeys { .. } => "ExpireSigningKeys",
            Command::ExpireOutboxMessages { .. } => "ExpireOutboxMessages",
            Command::RequestKeyRotation { .. } => "RequestKeyRotation",
            Command::RecordDelivery { .. } => "RecordDelivery",
            Command::UpdateUserAttributes { .. } => "UpdateUserAttributes",
            Command::PutGroup { .. } => "PutGroup",
            Command::DeleteGroup { .. } => "DeleteGroup",
            Command::AddUserToGroup { .. } => "AddUserToGroup",
            Command::RemoveUserFromGroup { .. } => "RemoveUserFromGroup",
            Command::DeleteUser { .. } => "DeleteUser",
            Command::DeleteUserAttributes { .. } => "DeleteUserAttributes",
            Command::SetUserEnabled { .. } => "SetUserEnabled",
            Command::ResetUserPassword { .. } => "ResetUserPassword",
            Command::ConfirmForgotPassword { .. } => "ConfirmForgotPassword",
            Command::VerifyAttribute { .. } => "VerifyAttribute",
            Command::RecordSignInFailure { .. } => "RecordSignInFailure",
            Command::ClearSignInFailures { .. } => "ClearSignInFailures",
            Command::RecordAuthEvents(_) => "RecordAuthEvents",
            Command::Audited { inner, .. } => inner.name(),
            Command::ImportUsers { .. } => "ImportUsers",
            Command::AdmitNode { .. } => "AdmitNode",
            Command::CreateJoinToken(_) => "CreateJoinToken",
            Command::RevokeJoinToken { .. } => "RevokeJoinToken",
        }
    }

    /// Applies this command: reads `store` (which reflects every earlier
    /// entry) and stages its effects in `batch`, which the caller commits
    /// together with the new applied log id.
    pub fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, StoreError> {
        match self {
            Command::InitCluster(info) => {
                if store.cluster_info()?.is_some() {
                    return Ok(Outcome::Rejected(Rejection::AlreadyInitialized));
                }
                batch.put(Table::Cluster, CLUSTER_KEY, &codec::encode(info)?)?;
                Ok(Outcome::Done)
            }
            Command::RetireNode { node_id } => {
                let out = membership::retire(batch, *node_id)?;
                // Its keys stop being trusted to sign at once.
                tokens::retire_node_keys(store, batch, *node_id)?;
                Ok(out)
            }
            Command::AdmitNode {
                node_id,
                public_key,
                token_id,
                now,
            } => membership::admit(store, batch, *node_id, public_key, token_id.as_deref(), *now),
            Command::CreateJoinToken(token) => membership::create_token(store, batch, token),
            Command::RevokeJoinToken { id } => membership::revoke_token(store, batch, id),
            Command::CreateUserPool(pool) => pools::create(store, batch, pool),
            Command::DeleteUserPool { pool_id } => pools::delete(store, batch, pool_id),
            Command::UpdateUserPool { pool_id, update } => pools::update(store, batch, pool_id, update),
            Command::PutAppClient { client, create } => pools::put_client(store, batch, client, *create),
            Command::DeleteAppClient { pool_id, client_id } => pools::delete_client(store, batch, pool_id, client_id),
            Command::CreateUser {
                user,
                code,
                message,
                force_alias_creation,
            } => users::create(
                store,
                batch,
                user,
                code.as_ref(),
                message.as_ref(),
                *force_alias_creation,
            ),
            Command::ConfirmUser {
                pool_id,
                sub,
                guess_hash,
                force_alias_creation,
                now,
            } => users::confirm(
                store,
                batch,
                pool_id,
                sub,
                guess_hash.as_ref(),
                *force_alias_creation,
                *now,
            ),
            Command::IssueCode {
                pool_id,
                sub,
                purpose,
                record,
                message,
                now,
            } => users::issue_code(
                store,
                batch,
                users::CodeIssue {
                    pool_id,
                    sub,
                    purpose: *purpose,
                    record,
                    message: message.as_ref(),
                    now: *now,
                },
            ),
            Command::SetPassword {
                pool_id,
                sub,
                password_phc,
                status,
                require_status,
                attributes,
                temporary_password_expires_at,
                revoke_refresh,
                now,
            } => users::set_password(
                store,
                batch,
                users::PasswordChange {
                    pool_id,
                    sub,
                    password_phc,
                    status: *status,
                    require_status: *require_status,
                    attributes,
                    temporary_password_expires_at: *temporary_password_expires_at,
                    revoke_refresh: *revoke_refresh,
                    now: *now,
                },
            ),
            Command::GlobalSignOut { pool_id, sub, at } => tokens::global_sign_out(store, batch, pool_id, sub, *at),
            Command::RevokeToken {
                pool_id,
                origin_jti,
                expires_at,
            } => tokens::revoke(store, batch, pool_id, origin_jti, *expires_at),
            Command::RegisterSigningKey(rec) => tokens::register_key(store, batch, rec),
            Command::RetireSigningKey {
                kid,
                at,
                max_retiring_ms,
            } => tokens::retire_key(store, batch, kid, *at, *max_retiring_ms),
            Command::ExpireSigningKeys { now, max_retiring_ms } => {
                tokens::expire_keys(store, batch, *now, *max_retiring_ms)
            }
            Command::RequestKeyRotation { at } => tokens::request_rotation(store, batch, *at),
            Command::ExpireOutboxMessages { now } => outbox::expire_messages(store, batch, *now),
            Command::RecordDelivery { id, status, attempts } => {
                outbox::record_delivery(store, batch, *id, *status, *attempts)
            }
            Command::UpdateUserAttributes {
                pool_id,
                sub,
                attributes,
                email_verified,
                phone_number_verified,
                pending,
                code,
                message,
                now,
            } => users::update_attributes(
                store,
                batch,
                users::AttributeChange {
                    pool_id,
                    sub,
                    attributes,
                    verified: (*email_verified, *phone_number_verified),
                    pending,
                    code: code.as_ref(),
                    message: message.as_ref(),
                    now: *now,
                },
            ),
            Command::PutGroup { group, create } => groups::put(store, batch, group, *create),
            Command::DeleteGroup { pool_id, name } => groups::delete(store, batch, pool_id, name),
            Command::AddUserToGroup { pool_id, group, sub } => groups::add_member(store, batch, pool_id, group, sub),
            Command::RemoveUserFromGroup { pool_id, group, sub } => {
                groups::remove_member(store, batch, pool_id, group, sub)
            }
            Command::DeleteUser { pool_id, sub } => account::delete_user(store, batch, pool_id, sub),
            Command::DeleteUserAttributes {
                pool_id,
                sub,
                names,
                now,
            } => account::delete_attributes(store, batch, pool_id, sub, names, *now),
            Command::SetUserEnabled {
                pool_id,
                sub,
                enabled,
                now,
            } => account::set_enabled(store, batch, pool_id, sub, *enabled, *now),
            Command::ResetUserPassword {
                pool_id,
                sub,
                code,
                message,
                now,
            } => account::reset_password(store, batch, pool_id, sub, code.as_ref(), message.as_ref(), *now),
            Command::ConfirmForgotPassword {
                pool_id,
                sub,
                guess_hash,
                password_phc,
                now,
            } => account::confirm_forgot_password(store, batch, pool_id, sub, guess_hash, password_phc, *now),
            Command::VerifyAttribute {
                pool_id,
                sub,
                alias,
                guess_hash,
                now,
            } => account::verify_attribute(store, batch, pool_id, sub, *alias, guess_hash, *now),
            Command::RecordSignInFailure { pool_id, sub, event } => {
                audit::sign_in_failure(store, batch, pool_id, sub, event)
            }
            Command::ClearSignInFailures { pool_id, sub } => {
                batch.delete(
                    Table::SignInFailures,
                    &crate::store::keys::pool_key(pool_id, sub.as_bytes()),
                )?;
                Ok(Outcome::Done)
            }
            Command::RecordAuthEvents(events) => {
                audit::record(store, batch, events)?;
                Ok(Outcome::Done)
            }
            Command::Audited { inner, event } => audit::audited(store, batch, inner, event),
            Command::ImportUsers { pool_id, users } => account::import(store, batch, pool_id, users),
        }
    }
}

/// The standard "does not exist" rejection.
fn not_found(kind: &str, id: &str) -> Outcome {
    Outcome::Rejected(Rejection::NotFound {
        kind: kind.into(),
        id: id.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn pool(id: &str, protected: bool) -> UserPool {
        UserPool {
            id: id.into(),
            name: "n".into(),
            creation_date: 1,
            last_modified_date: 1,
            deletion_protection: protected,
            settings: Default::default(),
        }
    }

    fn init() -> Command {
        Command::InitCluster(ClusterInfo {
            cluster_id: "c".into(),
            public_url: "http://x".into(),
            root_token_sha256: [0; 32],
            created_at: 0,
        })
    }

    fn run(store: &Store, cmd: &Command) -> Outcome {
        let mut b = store.sm_batch();
        let out = cmd.apply(store, &mut b).unwrap();
        b.commit().unwrap();
        out
    }

    #[test]
    fn pools_need_init_and_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            run(&store, &Command::CreateUserPool(pool("local_a", false))),
            Outcome::Rejected(Rejection::NotInitialized)
        );
        assert_eq!(run(&store, &init()), Outcome::Done);
        assert_eq!(run(&store, &init()), Outcome::Rejected(Rejection::AlreadyInitialized));
        assert!(matches!(
            run(&store, &Command::CreateUserPool(pool("local_a", true))),
            Outcome::PoolCreated(_)
        ));
        assert!(matches!(
            run(&store, &Command::CreateUserPool(pool("local_a", false))),
            Outcome::Rejected(Rejection::AlreadyExists { .. })
        ));
        assert!(matches!(
            run(
                &store,
                &Command::DeleteUserPool {
                    pool_id: "local_a".into()
                }
            ),
            Outcome::Rejected(Rejection::DeletionProtected(_))
        ));
        assert!(matches!(
            run(
                &store,
                &Command::DeleteUserPool {
                    pool_id: "local_b".into()
                }
            ),
            Outcome::Rejected(Rejection::NotFound { .. })
        ));
    }

    fn user(sub: &str, username: &str, email: &str) -> User {
        User {
            pool_id: "local_a".into(),
            sub: sub.into(),
            username: username.into(),
            attributes: [("email".to_string(), email.to_string())].into_iter().collect(),
            status: crate::model::user::UserStatus::Unconfirmed,
            enabled: true,
            password_phc: Some("$argon2id$...".into()),
            // Only a verified value holds an alias.
            email_verified: true,
            phone_number_verified: false,
            created_at: 1,
            modified_at: 1,
            tokens_revoked_before_ms: 0,
            temporary_password_expires_at: None,
            refresh_revoked_before_ms: 0,
            pending_attributes: Default::default(),
        }
    }

    fn create(u: User) -> Command {
        Command::CreateUser {
            user: u,
            code: None,
            message: None,
            force_alias_creation: false,
        }
    }

    #[test]
    fn usernames_and_aliases_are_unique_per_pool_and_go_with_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        run(&store, &init());
        let mut p = pool("local_a", false);
        p.settings.alias_attributes = vec![crate::model::pool_settings::SignInAlias::Email];
        run(&store, &Command::CreateUserPool(p));
        assert!(matches!(
            run(&store, &create(user("s1", "Alice", "a@x.io"))),
            Outcome::User(_)
        ));
        // Case-insensitive usernames by default.
        assert_eq!(
            run(&store, &create(user("s2", "alice", "b@x.io"))),
            Outcome::Rejected(Rejection::UsernameExists)
        );
        // The same email, differently cased, is the same alias.
        assert_eq!(
            run(&store, &create(user("s3", "bob", "A@X.io"))),
            Outcome::Rejected(Rejection::AliasExists("email".into()))
        );
        assert!(matches!(
            run(&store, &create(user("s4", "carol", "c@x.io"))),
            Outcome::User(_)
        ));
        assert_eq!(store.user_count("local_a").unwrap(), 2);
        assert_eq!(store.estimated_users("local_a").unwrap(), 2);
        assert_eq!(
            store.sub_by_username("local_a", "alice").unwrap().as_deref(),
            Some("s1")
        );
        // A missing pool is reported, not created.
        let mut orphan = user("s5", "dave", "d@x.io");
        orphan.pool_id = "local_b".into();
        assert!(matches!(
            run(&store, &create(orphan)),
            Outcome::Rejected(Rejection::NotFound { .. })
        ));
        // Deleting the pool deletes its users and frees their names.
        run(
            &store,
            &Command::DeleteUserPool {
                pool_id: "local_a".into(),
            },
        );
        assert_eq!(store.user_count("local_a").unwrap(), 0);
        assert_eq!(store.estimated_users("local_a").unwrap(), 0);
        assert_eq!(store.sub_by_username("local_a", "alice").unwrap(), None);
        assert_eq!(store.user("local_a", "s1").unwrap(), None);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Create(u8, bool),
        Delete(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6, any::<bool>()).prop_map(|(i, p)| Op::Create(i, p)),
            (0u8..6).prop_map(Op::Delete),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The RocksDB-backed apply agrees with a plain in-memory model on
        /// every sequence of pool commands, and two stores fed the same
        /// sequence end with the same digest.
        #[test]
        fn apply_matches_in_memory_model(ops in proptest::collection::vec(op(), 1..40)) {
            let d1 = tempfile::tempdir().unwrap();
            let d2 = tempfile::tempdir().unwrap();
            let s1 = Store::open(d1.path()).unwrap();
            let s2 = Store::open(d2.path()).unwrap();
            run(&s1, &init());
            run(&s2, &init());
            let mut model: BTreeMap<String, bool> = BTreeMap::new();
            for op in ops {
                let (cmd, expect_ok) = match op {
                    Op::Create(i, p) => {
                        let id = format!("local_p{i}");
                        let ok = !model.contains_key(&id);
                        if ok { model.insert(id.clone(), p); }
                        (Command::CreateUserPool(pool(&id, p)), ok)
                    }
                    Op::Delete(i) => {
                        let id = format!("local_p{i}");
                        let ok = model.get(&id) == Some(&false);
                        if ok { model.remove(&id); }
                        (Command::DeleteUserPool { pool_id: id }, ok)
                    }
                };
                let o1 = run(&s1, &cmd);
                let o2 = run(&s2, &cmd);
                prop_assert_eq!(&o1, &o2);
                prop_assert_eq!(!matches!(o1, Outcome::Rejected(_)), expect_ok);
            }
            let ids: Vec<String> = s1.pools_page(None, 100).unwrap().into_iter().map(|p| p.id).collect();
            prop_assert_eq!(ids, model.keys().cloned().collect::<Vec<_>>());
            prop_assert_eq!(s1.state_digest().unwrap(), s2.state_digest().unwrap());
        }
    }
}
