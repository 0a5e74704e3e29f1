//! Domain services: they validate, *prepare* commands (choosing ids,
//! timestamps and hashes), propose them through [`crate::raft::RaftNode`],
//! and serve reads from the local state. Transport-free: the gRPC layer maps
//! [`ServiceError`] to a status.

pub mod admin_auth;
pub mod admin_keys;
pub mod audit;
pub mod branding;
pub mod clients;
pub mod cluster;
pub mod cursor;
pub mod directory;
pub mod export;
pub mod federation;
pub mod flows;
pub mod groups;
pub mod identity;
pub mod import;
pub mod keys;
pub mod mfa;
pub mod oauth;
pub mod outbox;
pub mod pools;
pub mod resource_servers;
pub mod sync;
pub mod tokens;
pub mod triggers;
pub mod users;

use crate::command::Audited;
use crate::command::Rejection;
use crate::model::ValidationError;
use crate::raft::ConsensusError;
use crate::store::StoreError;

/// Largest page of users, groups or events (Cognito: 60).
pub const MAX_PAGE: usize = 60;

/// A page size from a request: 1..=60, with 0 meaning 60.
pub fn page_limit(field: &str, n: i32) -> Result<usize, ServiceError> {
    match n {
        0 => Ok(MAX_PAGE),
        1..=60 => Ok(n as usize),
        n => Err(ServiceError::invalid(format!(
            "{field}: {n} is out of range; use 1 to {MAX_PAGE}"
        ))),
    }
}

/// Where a call came from, for the audit log and per-address limits.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The peer's IP address as the API port saw it.
    pub ip: String,
    /// Cognito's `ClientMetadata` of the call: what the app passes to the
    /// pool's triggers, and nothing else reads. Bounded at the edge.
    pub client_metadata: std::collections::BTreeMap<String, String>,
    /// The `DEVICE_KEY` the call presented (auth parameters or challenge
    /// responses), or the device a refresh token was issued to: which
    /// device the tokens minted for this call belong to. Empty: none.
    pub device_key: String,
}

impl Origin {
    /// This origin carrying the call's `ClientMetadata`, once it is
    /// checked against the parameter bounds.
    pub fn with_client_metadata(
        mut self,
        metadata: &std::collections::BTreeMap<String, String>,
    ) -> Result<Self, ServiceError> {
        flows::check_parameters("client_metadata", metadata)?;
        self.client_metadata = metadata.clone();
        Ok(self)
    }

    /// This origin naming the device `key` (empty: none).
    pub fn with_device_key(&self, key: &str) -> Self {
        let mut o = self.clone();
        o.device_key = key.to_string();
        o
    }
}

/// What kind of failure a [`ServiceError`] is; decides the gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or breaks a rule; the message says which field.
    InvalidParameter,
    /// The caller is not who it must be (bad credentials or token).
    NotAuthorized,
    /// The pool, user, group or client named does not exist.
    NotFound,
    /// What the call would create exists already.
    AlreadyExists,
    /// A concurrent change won (a sync conflict): read, resolve, retry.
    Aborted,
    /// The call is valid but the state does not allow it now (wrong user status, cluster not initialised, ...).
    FailedPrecondition,
    /// A rate, attempt or capacity limit; retry later.
    LimitExceeded,
    /// No leader or quorum, or the node is too stale to answer; retry.
    Unavailable,
    /// The write may or may not have happened.
    OutcomeUnknown,
    /// A bug or a local failure (storage); not the caller's fault.
    Internal,
}

/// A service failure: a kind, the Cognito-style exception name clients
/// branch on, and a message a person can act on. Never carries secrets.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{exception}: {message}")]
pub struct ServiceError {
    /// What kind of failure; decides the gRPC code.
    pub kind: ErrorKind,
    /// Cognito's exception name (`UsernameExistsException`, ...), which clients branch on.
    pub exception: &'static str,
    /// What went wrong, for a person to act on.
    pub message: String,
}

impl ServiceError {
    /// An error of `kind` named `exception`.
    pub fn new(kind: ErrorKind, exception: &'static str, message: impl Into<String>) -> Self {
        ServiceError {
            kind,
            exception,
            message: message.into(),
        }
    }

    /// `InvalidParameterException`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameter, "InvalidParameterException", message)
    }

    /// `NotAuthorizedException`.
    pub fn not_authorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotAuthorized, "NotAuthorizedException", message)
    }

    /// `ResourceNotFoundException`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, "ResourceNotFoundException", message)
    }

    /// `InternalErrorException`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "InternalErrorException", message)
    }

    /// `InvalidPasswordException`: the password breaks the pool's policy.
    pub fn invalid_password(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameter, "InvalidPasswordException", message)
    }

    /// `UserNotFoundException`.
    pub fn user_not_found() -> Self {
        Self::new(ErrorKind::NotFound, "UserNotFoundException", "User does not exist.")
    }

    /// `CodeMismatchException`, with Cognito's message.
    pub fn code_mismatch() -> Self {
        Self::new(
            ErrorKind::InvalidParameter,
            "CodeMismatchException",
            "Invalid verification code provided, please try again.",
        )
    }

    /// `TooManyRequestsException`: too many calls right now (an address rate, or guesses in flight); retry later.
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::LimitExceeded, "TooManyRequestsException", message)
    }

    /// `LimitExceededException`: a count limit refused the call (sends to a destination, join tokens, ...).
    pub fn limit_exceeded(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::LimitExceeded, "LimitExceededException", message)
    }
}

impl From<crate::auth::AuthError> for ServiceError {
    fn from(e: crate::auth::AuthError) -> Self {
        match e {
            crate::auth::AuthError::Overloaded => {
                ServiceError::too_many_requests("the node is busy hashing passwords; retry with backoff")
            }
            other => {
                tracing::error!(error = %other, "auth error");
                ServiceError::internal(other.to_string())
            }
        }
    }
}

impl From<ValidationError> for ServiceError {
    fn from(e: ValidationError) -> Self {
        ServiceError::invalid(e.to_string())
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage error");
        ServiceError::internal(format!("storage error: {e}"))
    }
}

impl From<ConsensusError> for ServiceError {
    fn from(e: ConsensusError) -> Self {
        match e {
            ConsensusError::Unavailable(m) => {
                ServiceError::new(ErrorKind::Unavailable, "ServiceUnavailableException", m)
            }
            ConsensusError::Unknown(m) => ServiceError::new(
                ErrorKind::OutcomeUnknown,
                "OutcomeUnknownException",
                format!("{m}; the change may or may not have been applied, read before retrying"),
            ),
            ConsensusError::Membership(m) => {
                ServiceError::new(ErrorKind::FailedPrecondition, "InvalidMembershipChangeException", m)
            }
            ConsensusError::Fatal(m) => ServiceError::new(ErrorKind::Unavailable, "ServiceUnavailableException", m),
            ConsensusError::NotLeader { .. } => ServiceError::new(
                ErrorKind::Unavailable,
                "ServiceUnavailableException",
                "no leader could be reached; retry shortly",
            ),
            ConsensusError::Storage(m) => {
                tracing::error!(error = %m, "storage error under consensus");
                ServiceError::internal(format!("storage error: {m}"))
            }
        }
    }
}

impl From<Rejection> for ServiceError {
    fn from(r: Rejection) -> Self {
        let msg = r.to_string();
        match r {
            Rejection::AlreadyInitialized => {
                ServiceError::new(ErrorKind::FailedPrecondition, "ClusterAlreadyInitializedException", msg)
            }
            Rejection::NotInitialized => {
                ServiceError::new(ErrorKind::FailedPrecondition, "ClusterNotInitializedException", msg)
            }
            Rejection::AlreadyExists { kind, .. } if kind == "group" => {
                ServiceError::new(ErrorKind::AlreadyExists, "GroupExistsException", msg)
            }
            Rejection::AlreadyExists { kind, .. } if kind.starts_with("managed login branding") => {
                ServiceError::new(ErrorKind::AlreadyExists, "ManagedLoginBrandingExistsException", msg)
            }
            Rejection::AlreadyExists { .. } => {
                ServiceError::new(ErrorKind::AlreadyExists, "ResourceExistsException", msg)
            }
            Rejection::NotFound { kind, id } if kind == "scope" => ServiceError::new(
                ErrorKind::InvalidParameter,
                "ScopeDoesNotExistException",
                format!("allowed_oauth_scopes: {id} is not a scope of any resource server of this pool; create it with CreateResourceServer first"),
            ),
            Rejection::NotFound { .. } => ServiceError::not_found(msg),
            Rejection::UsernameExists => ServiceError::new(ErrorKind::AlreadyExists, "UsernameExistsException", msg),
            // Cognito's name for a verified email or phone number that
            // another user holds as an alias.
            Rejection::AliasExists(_) => ServiceError::new(ErrorKind::AlreadyExists, "AliasExistsException", msg),
            Rejection::DeletionProtected(_) => {
                ServiceError::new(ErrorKind::FailedPrecondition, "InvalidParameterException", msg)
            }
            Rejection::Code(crate::auth::codes::CodeError::Mismatch) => ServiceError::code_mismatch(),
            Rejection::Code(crate::auth::codes::CodeError::Expired) | Rejection::NoCode => ServiceError::new(
                ErrorKind::InvalidParameter,
                "ExpiredCodeException",
                "Invalid code provided, please request a code again.",
            ),
            Rejection::Code(crate::auth::codes::CodeError::TooManyAttempts) => ServiceError::new(
                ErrorKind::LimitExceeded,
                "TooManyFailedAttemptsException",
                "Too many failed attempts for this code; request a new one.",
            ),
            Rejection::LimitExceeded(m) => ServiceError::limit_exceeded(m),
            Rejection::Invalid(m) => ServiceError::invalid(m),
            Rejection::JoinRefused(m) => ServiceError::new(
                ErrorKind::FailedPrecondition,
                "JoinRefusedException",
                format!(
                    "{m}; issue a token with 'tessera cluster join-token create' and start the node with --join-token"
                ),
            ),
            Rejection::NotAuthorized(m) => ServiceError::not_authorized(m),
            Rejection::ResourceConflict(m) => {
                ServiceError::new(ErrorKind::FailedPrecondition, "ResourceConflictException", m)
            }
            // The sync service answers conflicts with their records before
            // this; elsewhere only the message survives.
            Rejection::SyncConflict { .. } => ServiceError::new(ErrorKind::Aborted, "ResourceConflictException", msg),
            Rejection::CounterRegressed { .. } => ServiceError::not_authorized(format!(
                "{msg}; the sign-in is refused. If this passkey was not copied, delete it and register it again."
            )),
            Rejection::WrongStatus(s) => ServiceError::not_authorized(format!(
                "User cannot be confirmed. Current status is {}",
                s.as_cognito()
            )),
        }
    }
}

/// Proposes `cmd` and returns its typed output once it is committed on a
/// quorum and applied; a rejection becomes the client's error.
pub(crate) async fn submit<C>(node: &crate::raft::RaftNode, cmd: C) -> Result<C::Output, ServiceError>
where
    C: crate::command::Apply + Into<crate::command::Command>,
{
    Ok(try_submit(node, cmd).await??)
}

/// Like [`submit`], with the rejection kept apart for callers that act on
/// one (a random id that was taken: draw another).
pub(crate) async fn try_submit<C>(
    node: &crate::raft::RaftNode,
    cmd: C,
) -> Result<Result<C::Output, crate::command::Rejection>, ServiceError>
where
    C: crate::command::Apply + Into<crate::command::Command>,
{
    typed::<C>(node.propose(cmd).await?)
}

/// Like [`submit`], with `event` recorded in the same entry, so the change
/// and its audit record commit together (the event notes a rejection).
pub(crate) async fn submit_audited<C>(
    node: &crate::raft::RaftNode,
    cmd: C,
    event: crate::model::auth_event::AuthEvent,
) -> Result<C::Output, ServiceError>
where
    C: crate::command::Apply + Into<crate::command::Command>,
{
    Ok(try_submit_audited(node, cmd, event).await??)
}

/// [`submit_audited`] with the rejection kept apart.
pub(crate) async fn try_submit_audited<C>(
    node: &crate::raft::RaftNode,
    cmd: C,
    event: crate::model::auth_event::AuthEvent,
) -> Result<Result<C::Output, crate::command::Rejection>, ServiceError>
where
    C: crate::command::Apply + Into<crate::command::Command>,
{
    typed::<C>(propose_audited(node, cmd, event).await?)
}

/// Proposes `cmd` with `event` and returns the raw outcome, for callers
/// that expect a rejection (an unknown user's decoy) and need no output.
pub(crate) async fn propose_audited(
    node: &crate::raft::RaftNode,
    cmd: impl Into<crate::command::Command>,
    event: crate::model::auth_event::AuthEvent,
) -> Result<crate::command::Outcome, ServiceError> {
    let audited = Audited {
        inner: Box::new(cmd.into()),
        event,
    };
    Ok(node.propose(audited).await?)
}

/// The one place where an outcome becomes a command's typed output; an
/// outcome of the wrong kind is a bug, reported as an internal error.
fn typed<C: crate::command::Apply>(
    out: crate::command::Outcome,
) -> Result<Result<C::Output, crate::command::Rejection>, ServiceError> {
    use crate::command::FromOutcome;
    match out {
        crate::command::Outcome::Rejected(r) => Ok(Err(r)),
        other => C::Output::from_outcome(other)
            .map(Ok)
            .map_err(|o| ServiceError::internal(format!("{} answered with {o}", std::any::type_name::<C>()))),
    }
}

/// The cluster sealing key, or the error of a node that has none yet (it
/// has not been initialised or joined).
pub(crate) fn sealing_key(
    cell: &crate::auth::sealing::SealingCell,
) -> Result<std::sync::Arc<crate::auth::sealing::SealingKey>, ServiceError> {
    cell.get().ok_or_else(|| {
        ServiceError::new(
            ErrorKind::Unavailable,
            "InternalErrorException",
            "this node has no cluster sealing key yet: it is created at 'cluster init' and handed over when a node joins",
        )
    })
}

/// An audit event for an admin action on `pool_id` from `origin`.
pub(crate) fn admin_event(
    pool_id: &str,
    event_type: crate::model::auth_event::AuthEventType,
    origin: &Origin,
    detail: &str,
) -> crate::model::auth_event::AuthEvent {
    crate::model::auth_event::AuthEvent::draft(pool_id, event_type, crate::clock::now_millis())
        .origin("admin", &origin.ip)
        .detail(detail)
}
