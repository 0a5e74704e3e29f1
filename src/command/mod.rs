//! The replicated `Command` and its deterministic `apply`.
//!
//! Every replicated command is its own type, defined next to the commands
//! of its group (`pools`, `users`, `account`, `groups`, `tokens`,
//! `outbox`, `audit`, `membership`, `mfa`, `import`, `admin_keys`), with its fields, its validation and
//! its [`Apply`] implementation. [`Command`] is the enum that only
//! dispatches: one newtype variant per command, in log order.
//!
//! A command carries everything non-deterministic that its effect needs:
//! ids, timestamps and hashes are chosen by the node that *prepared* it
//! (`service/`). `apply` runs on every node, in log order, and must reach the
//! same result everywhere: it reads only the store, never the clock, an RNG
//! or node-local config, and iterates only ordered collections
//! (ARCHITECTURE.md §2.1; `clippy.toml` enforces the bans, `make lint-guard`
//! proves that they bite).
//!
//! # The contract of `apply`
//!
//! [`Apply::apply`] reads the store, which reflects every entry before this
//! one, and stages its effects in the batch, which the state machine
//! commits together with the entry's log id. Its result is one of:
//!
//! * `Ok(outcome)`, a *result of the log*: the same on every node, sent back
//!   to the proposer. A command that cannot take effect (a username taken,
//!   a missing pool, a wrong code, a full outbox) is such a result:
//!   `Ok(Outcome::Rejected(rejection))`. It stages no effects (except what
//!   the rejection itself records, such as a spent code attempt, which is
//!   deterministic too), and the proposer turns it into the client's
//!   error, e.g. `UsernameExistsException`. [`Apply::validate`] refuses a
//!   malformed command the same way before `apply` runs.
//! * `Err(ApplyError)`: the node could not read or write its own storage.
//!   This is never a property of the command: another node applies the same
//!   entry successfully. The state machine stops applying and the node
//!   stops (openraft reports a storage error), because continuing would let
//!   this node's state diverge from the log. Nothing of the batch is
//!   committed.
//!
//! Decoding is part of the contract: variants are appended, never
//! reordered or changed, and each struct keeps its fields in order, so that
//! every log and snapshot written by an earlier release still decodes
//! (`tests/compat.rs` replays one).

mod account;
mod admin_keys;
mod audit;
mod branding;
mod devices;
mod federation;
mod groups;
mod identity;
mod import;
mod membership;
mod mfa;
mod oauth;
mod outbox;
mod passwordless;
mod pools;
mod spent;
mod srp;
mod sync;
#[cfg(test)]
mod testkit;
mod tokens;
mod triggers;
mod users;
mod webauthn;

pub use account::{
    ConfirmForgotPassword, DeleteUser, DeleteUserAttributes, ImportUsers, ResetUserPassword, SetUserEnabled,
    VerifyAttribute, MAX_IMPORT_PER_COMMAND,
};
pub use admin_keys::{CreateAdminAccessKey, DeleteAdminAccessKey};
pub use audit::{Audited, ClearSignInFailures, RecordAuthEvents, RecordSignInFailure};
pub use branding::{DeleteBranding, PutBranding, PutMode};
pub use devices::{ChangeDevice, ConfirmDevice, SetPoolDeviceConfig};
pub use federation::{
    DeleteIdentityProvider, DisableProviderForUser, FederatedSignIn, LinkProviderForUser, PutIdentityProvider,
};
pub use groups::{AddUserToGroup, DeleteGroup, PutGroup, RemoveUserFromGroup};
pub use identity::{
    CreateIdentityPool, DeleteIdentities, DeleteIdentityPool, DeleteRole, MergeDeveloperIdentities, PutRole,
    ResolveIdentity, SetIdentityPoolRoles, SetUserRole, UnlinkLogins, UpdateIdentityPool, MAX_DELETE_IDENTITIES,
};
pub use import::{hash_fingerprint, ImportUserRecords, ImportedUser, RehashPassword};
pub use membership::{AdmitNode, CreateJoinToken, InitCluster, RetireNode, RevokeJoinToken};
pub use mfa::{
    AssociateSoftwareToken, ConsumeRecoveryCode, ConsumeSoftwareTokenCode, MfaPreferenceChange, SetRecoveryCodes,
    SetUserMfaPreference, SetUserPoolMfaConfig, SetUserPoolMfaConfigV1, VerifySoftwareToken,
};
pub use oauth::{spent_code_key, DeleteResourceServer, PutAppClient, PutResourceServer, SpendAuthorizationCode};
pub use outbox::{expired_messages, ExpireOutboxMessages, RecordDelivery, EXPIRE_BATCH};
pub use passwordless::{ConsumeSignInCode, LinkAction, MagicLinkStep, SetPoolSignInPolicy};
pub use pools::{CreateUserPool, DeleteAppClient, DeleteUserPool, PoolUpdate, PutAppClientV1, UpdateUserPool};
pub use srp::{SetPoolSrp, SetSrpVerifier};
pub use sync::{DeleteDataset, UpdateRecords, LOG_MAX_BYTES, LOG_MAX_CHANGES};
pub use tokens::{
    ExpireSigningKeys, GlobalSignOut, RegisterSigningKey, RequestKeyRotation, RetireSigningKey, RevokeToken,
};
pub use triggers::SetUserPoolTriggers;
pub use users::{
    ConfirmUser, CreateUser, IssueCode, SetPassword, UpdateUserAttributes, MAX_SENDS_PER_WINDOW, SEND_WINDOW_MS,
};
pub use webauthn::{
    AddWebAuthnCredential, DeleteWebAuthnCredential, SetPoolWebAuthn, StartWebAuthnRegistration, UseWebAuthnCredential,
};

use serde::{Deserialize, Serialize};

use crate::auth::codes::CodeError;
use crate::auth::lockout::LockoutState;
use crate::model::app_client::AppClient;
use crate::model::group::Group;
use crate::model::pool::UserPool;
use crate::model::user::{User, UserStatus};
use crate::store::{codec::CodecError, SmBatch, Store, StoreError};

/// One replicated command: its validation, its deterministic effect and
/// the type of what it returns to the proposer (see the module docs for
/// the contract).
pub trait Apply {
    /// What the proposer gets back when the command takes effect.
    type Output: FromOutcome;

    /// Refuses a command that no well-behaved proposer sends (a peer's
    /// entry is decoded, not trusted). Deterministic, like `apply`.
    fn validate(&self) -> Result<(), Rejection> {
        Ok(())
    }

    /// Reads `store` and stages the command's effects in `batch`.
    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError>;

    /// The name in logs and metrics, when it is not the variant's (an
    /// audited command is named after the command it wraps).
    fn label(&self) -> Option<&'static str> {
        None
    }
}

/// The node could not use its own storage while applying; it must stop.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// RocksDB failed under the batch or a read.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// A value could not be encoded for the batch, or a stored one did not decode.
    #[error("encoding: {0}")]
    Codec(#[from] CodecError),
}

/// Turns an [`Outcome`] back into a command's typed output; a description
/// of the outcome when it is of another kind (a bug the proposer reports
/// once).
pub trait FromOutcome: Sized {
    /// The typed output, or a description of the unexpected outcome.
    fn from_outcome(outcome: Outcome) -> Result<Self, String>;
}

macro_rules! outputs {
    ($($ty:ty => $pat:pat => $val:expr,)*) => {
        $(impl FromOutcome for $ty {
            fn from_outcome(outcome: Outcome) -> Result<Self, String> {
                match outcome {
                    $pat => Ok($val),
                    other => Err(other.to_string()),
                }
            }
        })*
    };
}

outputs! {
    () => Outcome::Done => (),
    UserPool => Outcome::Pool(p) | Outcome::PoolCreated(p) => p,
    AppClient => Outcome::AppClient(c) => c,
    User => Outcome::User(u) => u,
    Group => Outcome::Group(g) => g,
    LockoutState => Outcome::Lockout(l) => l,
    ImportReport => Outcome::Imported(r) => r,
    crate::model::identity_pool::IdentityPool => Outcome::IdentityPool(p) => p,
    crate::model::identity::Identity => Outcome::Identity(i) => i,
    crate::model::role::Role => Outcome::Role(r) => r,
    crate::model::identity_provider::IdentityProvider => Outcome::IdentityProvider(p) => p,
    crate::model::sync::Change => Outcome::SyncChange(c) => *c,
    crate::model::mfa::PoolMfaConfig => Outcome::MfaConfig(c) => c,
    crate::model::mfa::MfaSummary => Outcome::Mfa(m) => m,
    crate::model::triggers::LambdaConfig => Outcome::Triggers(c) => *c,
    crate::model::resource_server::ResourceServer => Outcome::ResourceServer(r) => r,
    (AppClient, crate::model::oauth_client::ClientOAuth) => Outcome::OAuthAppClient(c) => *c,
    crate::model::branding::Branding => Outcome::Branding(b) => *b,
}

/// Declares [`Command`]: one newtype variant per command type, in log
/// order, with its dispatch, its name and `From` conversions.
macro_rules! commands {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// A replicated state change. Serialized into the Raft log (postcard:
        /// the variant index, then the command's fields in order); variants
        /// are appended, never reordered or changed, since old logs must
        /// still decode.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub enum Command {
            $($(#[$doc])* $name($name),)*
        }

        impl Command {
            /// A short name for logs and metrics; never includes field values.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Command::$name(c) => c.label().unwrap_or(stringify!($name)),)*
                }
            }

            /// Validates and applies this command (see the module docs).
            /// A user in the outcome never carries its password hash: the
            /// outcome may cross the peer link to a forwarding node.
            pub fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
                let out = match self {
                    $(Command::$name(c) => match c.validate() {
                        Ok(()) => c.apply(store, batch)?,
                        Err(r) => Outcome::Rejected(r),
                    },)*
                };
                Ok(match out {
                    Outcome::User(u) => Outcome::User(u.without_secrets()),
                    other => other,
                })
            }
        }

        $(impl From<$name> for Command {
            fn from(c: $name) -> Self {
                Command::$name(c)
            }
        }

        impl From<&$name> for Command {
            fn from(c: &$name) -> Self {
                Command::$name(c.clone())
            }
        })*
    };
}

commands! {
    /// Sets the cluster-wide settings, once.
    InitCluster,
    /// Records that a node id left the membership and may never return.
    RetireNode,
    /// Creates a pool whose id the proposer drew at random.
    CreateUserPool,
    /// Deletes a pool (and everything in it) unless deletion protection is on.
    DeleteUserPool,
    /// Creates a user (sign-up or admin-created).
    CreateUser,
    /// Publishes a node's public signing key into the JWKS.
    RegisterSigningKey,
    /// Changes the mutable settings of a pool.
    UpdateUserPool,
    /// Creates or replaces an app client, as the first releases wrote it.
    PutAppClientV1,
    /// Deletes an app client.
    DeleteAppClient,
    /// Confirms an `UNCONFIRMED` user.
    ConfirmUser,
    /// Replaces a user's outstanding code (resend, forgot password).
    IssueCode,
    /// Sets a password and status, and merges attributes.
    SetPassword,
    /// Refuses every token of the user issued before a time.
    GlobalSignOut,
    /// Revokes a refresh-token family.
    RevokeToken,
    /// Starts a rotated-out signing key's retiring period.
    RetireSigningKey,
    /// Asks every node to replace its signing key.
    RequestKeyRotation,
    /// Records the courier's result for an outbox message.
    RecordDelivery,
    /// Sets attributes of a user.
    UpdateUserAttributes,
    /// Creates or replaces a group.
    PutGroup,
    /// Deletes a group and every membership in it.
    DeleteGroup,
    /// Adds a user to a group.
    AddUserToGroup,
    /// Removes a user from a group.
    RemoveUserFromGroup,
    /// Deletes a user with everything that names it.
    DeleteUser,
    /// Removes attributes of a user.
    DeleteUserAttributes,
    /// Enables or disables a user.
    SetUserEnabled,
    /// `AdminResetUserPassword`.
    ResetUserPassword,
    /// Checks a forgot-password code and sets the new password.
    ConfirmForgotPassword,
    /// Checks an attribute verification code.
    VerifyAttribute,
    /// Counts a failed sign-in and records it.
    RecordSignInFailure,
    /// Forgets a user's failed sign-ins.
    ClearSignInFailures,
    /// Appends events to the audit log.
    RecordAuthEvents,
    /// Applies a command and records an event with its outcome, atomically.
    Audited,
    /// Creates many users.
    ImportUsers,
    /// Admits a node to the peer port.
    AdmitNode,
    /// Stores a new join token.
    CreateJoinToken,
    /// Deletes a join token.
    RevokeJoinToken,
    /// The timed signing-key transitions.
    ExpireSigningKeys,
    /// Erases expired undelivered outbox messages.
    ExpireOutboxMessages,
    /// Creates an identity pool.
    CreateIdentityPool,
    /// Replaces an identity pool's settings.
    UpdateIdentityPool,
    /// Deletes an identity pool with its identities.
    DeleteIdentityPool,
    /// Sets an identity pool's roles and role mappings.
    SetIdentityPoolRoles,
    /// Finds, creates or merges the identity of a set of logins.
    ResolveIdentity,
    /// Removes logins from an identity.
    UnlinkLogins,
    /// Deletes identities.
    DeleteIdentities,
    /// Merges two developer-authenticated identities.
    MergeDeveloperIdentities,
    /// Creates or replaces a role.
    PutRole,
    /// Deletes a role no identity pool uses.
    DeleteRole,
    /// Assigns a role to a user-pool user, or removes it.
    SetUserRole,
    /// Creates or replaces a user pool's identity provider.
    PutIdentityProvider,
    /// Deletes a user pool's identity provider.
    DeleteIdentityProvider,
    /// Signs in (creating on first use) the user of an external identity.
    FederatedSignIn,
    /// Links an external identity to an existing user.
    LinkProviderForUser,
    /// Unlinks an external identity (disabling its federated user).
    DisableProviderForUser,
    /// Applies record patches to a dataset, all or nothing.
    UpdateRecords,
    /// Deletes a dataset and its records.
    DeleteDataset,
    /// Replaces a pool's MFA setting, as the first MFA release wrote it
    /// (kept so its log entries still decode).
    SetUserPoolMfaConfigV1,
    /// Stores a user's new software-token secret, waiting for its first code.
    AssociateSoftwareToken,
    /// Makes the waiting software token the user's verified one.
    VerifySoftwareToken,
    /// Sets which MFA factors a user enabled and prefers.
    SetUserMfaPreference,
    /// Spends the time step of a TOTP code answered at sign-in.
    ConsumeSoftwareTokenCode,
    /// Replaces a user's recovery codes.
    SetRecoveryCodes,
    /// Spends one recovery code.
    ConsumeRecoveryCode,
    /// Replaces a pool's triggers.
    SetUserPoolTriggers,
    /// Replaces a pool's MFA setting (with SMS and email templates).
    SetUserPoolMfaConfig,
    /// Sets a pool's `SignInPolicy` (choice-based sign-in first factors).
    SetPoolSignInPolicy,
    /// Spends a sign-in code (`SMS_MFA`, `EMAIL_OTP`, `SMS_OTP`).
    ConsumeSignInCode,
    /// Approves or completes a magic link.
    MagicLinkStep,
    /// Turns SRP sign-in on or off for a pool (off deletes its verifiers).
    SetPoolSrp,
    /// Stores a user's SRP verifier for the current password.
    SetSrpVerifier,
    /// Sets or clears a pool's `DeviceConfiguration`.
    SetPoolDeviceConfig,
    /// Stores a device confirmed with its SRP verifier.
    ConfirmDevice,
    /// Remembers, un-remembers or forgets a device.
    ChangeDevice,
    /// Creates many users with their groups (and imported password hashes).
    ImportUserRecords,
    /// Replaces a verified password hash with the pool's argon2id.
    RehashPassword,
    /// Stores a new admin access key (SigV4), its secret sealed.
    CreateAdminAccessKey,
    /// Deletes an admin access key.
    DeleteAdminAccessKey,
    /// Creates or replaces a resource server of a user pool.
    PutResourceServer,
    /// Deletes a resource server.
    DeleteResourceServer,
    /// Creates or replaces an app client with its OAuth settings.
    PutAppClient,
    /// Spends an OAuth authorization code (a replay revokes its tokens).
    SpendAuthorizationCode,
    /// Creates or replaces the hosted page's branding of a client or pool.
    PutBranding,
    /// Deletes a branding.
    DeleteBranding,
    /// Sets a pool's passkey (WebAuthn) setting.
    SetPoolWebAuthn,
    /// Keeps a user's started passkey registration.
    StartWebAuthnRegistration,
    /// Stores a verified passkey and spends its registration.
    AddWebAuthnCredential,
    /// Spends a passkey sign-in challenge and advances the counter.
    UseWebAuthnCredential,
    /// Deletes a passkey.
    DeleteWebAuthnCredential,
}

/// What an import created, and why the rest failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Users created.
    pub imported: u32,
    /// `(username, reason)` of each user not created.
    pub failures: Vec<(String, String)>,
}

/// What applying a command produced; sent back to the proposer (from the
/// leader, over the peer link when the proposer forwarded).
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
    /// The user as it is after the command (before, for a deletion),
    /// without its password hash.
    User(User),
    /// The group as stored (before, for a deletion).
    Group(Group),
    /// A user's lockout state after a failed sign-in.
    Lockout(LockoutState),
    /// What an import created, and why the rest failed.
    Imported(ImportReport),
    /// The command was valid but could not take effect.
    Rejected(Rejection),
    /// The identity pool as stored (before, for a deletion).
    IdentityPool(crate::model::identity_pool::IdentityPool),
    /// The identity as it is after the command (the survivor of a merge).
    Identity(crate::model::identity::Identity),
    /// The role as stored (before, for a deletion).
    Role(crate::model::role::Role),
    /// A user pool's identity provider as stored (before, for a deletion).
    IdentityProvider(crate::model::identity_provider::IdentityProvider),
    /// A change of an identity's sync data, as logged.
    SyncChange(Box<crate::model::sync::Change>),
    /// A pool's MFA setting as stored.
    MfaConfig(crate::model::mfa::PoolMfaConfig),
    /// A user's MFA state after the command, without its secrets.
    Mfa(crate::model::mfa::MfaSummary),
    /// A pool's triggers as stored.
    Triggers(Box<crate::model::triggers::LambdaConfig>),
    /// A resource server as stored (before, for a deletion).
    ResourceServer(crate::model::resource_server::ResourceServer),
    /// An app client with its OAuth settings, as stored.
    OAuthAppClient(Box<(AppClient, crate::model::oauth_client::ClientOAuth)>),
    /// A branding as stored (before, for a deletion).
    Branding(Box<crate::model::branding::Branding>),
}

/// Why a well-formed command had no effect. Decided in `apply`, so every
/// node agrees, even when two proposals race.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    /// `InitCluster` on a cluster that already has its settings.
    #[error("the cluster is already initialised")]
    AlreadyInitialized,
    /// A command that needs the cluster settings came before `InitCluster`.
    #[error("the cluster is not initialised yet")]
    NotInitialized,
    /// The entity the command would create is already there.
    #[error("{kind} {id} already exists")]
    AlreadyExists {
        /// What it is ("user pool", "group", ...), for the message.
        kind: String,
        /// Its id or name.
        id: String,
    },
    /// The entity the command names is not there.
    #[error("{kind} {id} does not exist")]
    NotFound {
        /// What it is ("user pool", "user", ...), for the message.
        kind: String,
        /// The id or name that was asked for.
        id: String,
    },
    /// `DeleteUserPool` on a pool with deletion protection; carries the pool id.
    #[error("user pool {0} has deletion protection; turn it off first")]
    DeletionProtected(String),
    /// Another user of the pool has this username (after case folding, when the pool folds case).
    #[error("an account with the given username already exists")]
    UsernameExists,
    /// Another user of the pool holds this alias; carries the attribute name.
    #[error("an account with the given {0} already exists")]
    AliasExists(String),
    /// The code guess was refused.
    #[error("{0}")]
    Code(CodeError),
    /// The user has no outstanding code of this purpose.
    #[error("no code is outstanding for this user; request a new one")]
    NoCode,
    /// The user is not in the status the command requires; carries the status found.
    #[error("the user's status is {}", .0.as_cognito())]
    WrongStatus(UserStatus),
    /// A bound was reached (groups, code sends, outbox room, ...); the message says which.
    #[error("{0}")]
    LimitExceeded(String),
    /// A node's admission to the peer port was refused.
    #[error("{0}")]
    JoinRefused(String),
    /// The command itself is malformed ([`Apply::validate`]).
    #[error("invalid command: {0}")]
    Invalid(String),
    /// The caller may not have what it asked for (a guest identity in a
    /// pool without guests); the message says why.
    #[error("{0}")]
    NotAuthorized(String),
    /// The change conflicts with the current state (Cognito's
    /// `ResourceConflictException`); the message says with what.
    #[error("{0}")]
    ResourceConflict(String),
    /// Records changed since the device last saw them (Cognito Sync's
    /// `ResourceConflictException`): their current values, so the device
    /// can resolve.
    #[error("{} record(s) changed since the device last synced: {}", .records.len(), .records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>().join(", "))]
    SyncConflict {
        /// The conflicting records as they are now.
        records: Vec<crate::model::sync::Record>,
        /// The dataset's sync count now.
        dataset_sync_count: u64,
    },
    /// A passkey's signature counter did not rise: two authenticators
    /// hold its key (a clone), so the sign-in is refused.
    #[error(
        "the passkey's signature counter went from {stored} to {presented}: the authenticator may have been cloned"
    )]
    CounterRegressed {
        /// The counter of the last accepted sign-in.
        stored: u32,
        /// The counter this assertion carried.
        presented: u32,
    },
}

impl From<&Command> for Command {
    fn from(c: &Command) -> Self {
        c.clone()
    }
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
            Outcome::Imported(r) => write!(f, "{} imported, {} failed", r.imported, r.failures.len()),
            Outcome::Rejected(r) => write!(f, "rejected: {r}"),
            Outcome::IdentityPool(p) => write!(f, "identity pool {}", p.id),
            Outcome::Identity(i) => write!(f, "identity {}", i.id),
            Outcome::Role(r) => write!(f, "role {}", r.name),
            Outcome::IdentityProvider(p) => write!(f, "identity provider {}", p.provider_name),
            Outcome::SyncChange(c) => write!(f, "change {} of {}", c.seq, c.identity_id),
            Outcome::MfaConfig(c) => write!(f, "MFA {}", c.mfa_configuration.as_cognito()),
            Outcome::Mfa(m) => write!(f, "MFA factors {:?}", m.setting_list),
            Outcome::Triggers(c) => write!(f, "{} triggers", c.urls.len()),
            Outcome::ResourceServer(r) => write!(f, "resource server {}", r.identifier),
            Outcome::OAuthAppClient(c) => write!(f, "app client {}", c.0.client_id),
            Outcome::Branding(b) => write!(f, "branding {}", b.branding_id),
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
    use crate::model::cluster::ClusterInfo;
    use crate::model::user::User;
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
        InitCluster(ClusterInfo {
            cluster_id: "c".into(),
            public_url: "http://x".into(),
            root_token_sha256: [0; 32],
            created_at: 0,
        })
        .into()
    }

    fn run(store: &Store, cmd: impl Into<Command>) -> Outcome {
        let cmd: Command = cmd.into();
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
            run(&store, CreateUserPool(pool("local_a", false))),
            Outcome::Rejected(Rejection::NotInitialized)
        );
        assert_eq!(run(&store, init()), Outcome::Done);
        assert_eq!(run(&store, init()), Outcome::Rejected(Rejection::AlreadyInitialized));
        assert!(matches!(
            run(&store, CreateUserPool(pool("local_a", true))),
            Outcome::PoolCreated(_)
        ));
        assert!(matches!(
            run(&store, CreateUserPool(pool("local_a", false))),
            Outcome::Rejected(Rejection::AlreadyExists { .. })
        ));
        assert!(matches!(
            run(
                &store,
                &DeleteUserPool {
                    pool_id: "local_a".into()
                }
            ),
            Outcome::Rejected(Rejection::DeletionProtected(_))
        ));
        assert!(matches!(
            run(
                &store,
                &DeleteUserPool {
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
        CreateUser {
            user: u,
            code: None,
            message: None,
            force_alias_creation: false,
        }
        .into()
    }

    /// A decoded entry no well-behaved proposer sends is refused by
    /// `validate` before `apply` writes anything: an audited command inside
    /// another, an import beyond its bound.
    #[test]
    fn malformed_commands_are_rejected_before_apply() {
        use crate::model::auth_event::{AuthEvent, AuthEventType};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        run(&store, init());
        let event = || AuthEvent::draft("local_a", AuthEventType::AdminAction, 0);
        let inner = Audited {
            inner: Box::new(Command::from(DeleteUserPool {
                pool_id: "local_a".into(),
            })),
            event: event(),
        };
        let nested = Audited {
            inner: Box::new(Command::from(inner)),
            event: event(),
        };
        assert!(matches!(run(&store, nested), Outcome::Rejected(Rejection::Invalid(_))));
        run(&store, CreateUserPool(pool("local_a", false)));
        let users = (0..=account::MAX_IMPORT_PER_COMMAND)
            .map(|i| user(&format!("s{i}"), &format!("u{i}"), &format!("u{i}@x.io")))
            .collect();
        let import = ImportUsers {
            pool_id: "local_a".into(),
            users,
        };
        assert!(matches!(run(&store, import), Outcome::Rejected(Rejection::Invalid(_))));
        assert_eq!(
            store.user_count("local_a").unwrap(),
            0,
            "nothing of the import was written"
        );
    }

    #[test]
    fn usernames_and_aliases_are_unique_per_pool_and_go_with_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        run(&store, init());
        let mut p = pool("local_a", false);
        p.settings.alias_attributes = vec![crate::model::pool_settings::SignInAlias::Email];
        run(&store, CreateUserPool(p));
        assert!(matches!(
            run(&store, create(user("s1", "Alice", "a@x.io"))),
            Outcome::User(_)
        ));
        // Case-insensitive usernames by default.
        assert_eq!(
            run(&store, create(user("s2", "alice", "b@x.io"))),
            Outcome::Rejected(Rejection::UsernameExists)
        );
        // The same email, differently cased, is the same alias.
        assert_eq!(
            run(&store, create(user("s3", "bob", "A@X.io"))),
            Outcome::Rejected(Rejection::AliasExists("email".into()))
        );
        assert!(matches!(
            run(&store, create(user("s4", "carol", "c@x.io"))),
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
            run(&store, create(orphan)),
            Outcome::Rejected(Rejection::NotFound { .. })
        ));
        // Deleting the pool deletes its users and frees their names.
        run(
            &store,
            &DeleteUserPool {
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
            run(&s1, init());
            run(&s2, init());
            let mut model: BTreeMap<String, bool> = BTreeMap::new();
            for op in ops {
                let (cmd, expect_ok) = match op {
                    Op::Create(i, p) => {
                        let id = format!("local_p{i}");
                        let ok = !model.contains_key(&id);
                        if ok { model.insert(id.clone(), p); }
                        (Command::from(CreateUserPool(pool(&id, p))), ok)
                    }
                    Op::Delete(i) => {
                        let id = format!("local_p{i}");
                        let ok = model.get(&id) == Some(&false);
                        if ok { model.remove(&id); }
                        (Command::from(DeleteUserPool { pool_id: id }), ok)
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
