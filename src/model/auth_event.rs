//! Audit events of a user pool: who did what, from where, and whether it
//! worked. Replicated with the change they describe, bounded per pool, and
//! never holding a secret (no passwords, codes or tokens).

use serde::{Deserialize, Serialize};

/// Most events kept per pool; the oldest are dropped beyond it.
pub const AUTH_EVENTS_PER_POOL: u64 = 50_000;
/// Longest free-text detail.
pub const MAX_DETAIL_CHARS: usize = 256;
/// Failures that name no user (unknown usernames: a guessing flood) are
/// aggregated per pool, kind, source address (IPv6 by /64) and window of
/// this length into one event carrying their count, so such a flood adds
/// at most a few events per window instead of flushing the log.
pub const AGGREGATE_WINDOW_MS: i64 = 60_000;
/// Distinct sources aggregated separately per pool, kind and window; the
/// rest share one event whose source is `*`. With it, failures naming no
/// user add at most `(MAX_AGGREGATED_SOURCES + 1)` events per kind per
/// window to a pool's log, whatever their number and origin.
pub const MAX_AGGREGATED_SOURCES: usize = 32;

/// What kind of event (Cognito's `EventType`, extended).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthEventType {
    /// A user signed up.
    SignUp,
    /// A sign-up confirmation, with a code or by an admin.
    ConfirmSignUp,
    /// A sign-in attempt; `pass` says whether it worked.
    SignIn,
    /// A user was locked out after repeated failures.
    Lockout,
    /// A password reset code was requested (`ForgotPassword`).
    ForgotPassword,
    /// A user changed their password (`ChangePassword`, or the forced change at sign-in).
    PasswordChange,
    /// A password reset with a code (`ConfirmForgotPassword`).
    PasswordReset,
    /// A confirmation or verification code was sent again.
    ResendCode,
    /// A user was added to or removed from a group.
    GroupChange,
    /// A user's attributes changed or were verified.
    AttributeChange,
    /// Any other admin action on a user; `detail` names it.
    AdminAction,
    /// A user was deleted.
    DeleteUser,
    /// A user was signed out of every session (`AdminUserGlobalSignOut`).
    SignOut,
    /// MFA set-up and settings: a software token associated or verified,
    /// a preference changed, recovery codes generated; `detail` says which.
    MfaSetup,
    /// A `SOFTWARE_TOKEN_MFA` challenge answered with a TOTP code; `pass`
    /// says whether it worked.
    SoftwareTokenMfa,
    /// A `SOFTWARE_TOKEN_MFA` challenge answered with a recovery code;
    /// `pass` says whether it worked.
    RecoveryCode,
    /// A passwordless or MFA code by SMS or email, or a magic link: sent,
    /// answered, approved; `detail` says which and `pass` whether it
    /// worked.
    SignInCode,
    /// A passkey registered, deleted, or used to sign in (first factor or
    /// MFA); `detail` says which and `pass` whether it worked. A refused
    /// signature counter (a cloned authenticator) is one of these.
    Passkey,
}

impl AuthEventType {
    /// A stable byte for keys.
    pub fn as_byte(self) -> u8 {
        self as u8
    }

    /// The string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthEventType::SignUp => "SignUp",
            AuthEventType::ConfirmSignUp => "ConfirmSignUp",
            AuthEventType::SignIn => "SignIn",
            AuthEventType::Lockout => "Lockout",
            AuthEventType::ForgotPassword => "ForgotPassword",
            AuthEventType::PasswordChange => "PasswordChange",
            AuthEventType::PasswordReset => "PasswordReset",
            AuthEventType::ResendCode => "ResendCode",
            AuthEventType::GroupChange => "GroupChange",
            AuthEventType::AttributeChange => "AttributeChange",
            AuthEventType::AdminAction => "AdminAction",
            AuthEventType::DeleteUser => "DeleteUser",
            AuthEventType::SignOut => "SignOut",
            AuthEventType::MfaSetup => "MfaSetup",
            AuthEventType::SoftwareTokenMfa => "SoftwareTokenMfa",
            AuthEventType::RecoveryCode => "RecoveryCode",
            AuthEventType::SignInCode => "SignInCode",
            AuthEventType::Passkey => "Passkey",
        }
    }
}

/// One event. `id` is assigned when it is applied (per-pool sequence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthEvent {
    /// Per-pool sequence number; orders the log and is its key.
    pub id: u64,
    /// The pool the event belongs to.
    pub pool_id: String,
    /// What happened.
    pub event_type: AuthEventType,
    /// Unix ms, chosen by the proposer.
    pub at: i64,
    /// As the caller typed it (may name no user).
    pub username: String,
    /// Empty when no user matched.
    pub sub: String,
    /// The app client the caller used; `admin` for admin calls.
    pub client_id: String,
    /// Source address of the caller; for aggregates, the address key (IPv6 by /64) or `*`.
    pub ip: String,
    /// Whether the action succeeded; decided in apply for audited commands.
    pub pass: bool,
    /// Short free text (at most [`MAX_DETAIL_CHARS`]), never a secret.
    pub detail: String,
    /// How many occurrences this event stands for (more than 1 only for an
    /// aggregate of failures that named no user).
    pub count: u32,
}

impl AuthEvent {
    /// A draft for `event_type` in `pool_id`; the caller fills the rest.
    pub fn draft(pool_id: &str, event_type: AuthEventType, at: i64) -> Self {
        AuthEvent {
            id: 0,
            pool_id: pool_id.to_string(),
            event_type,
            at,
            username: String::new(),
            sub: String::new(),
            client_id: String::new(),
            ip: String::new(),
            pass: true,
            detail: String::new(),
            count: 1,
        }
    }

    /// Sets the user fields.
    pub fn user(mut self, username: &str, sub: &str) -> Self {
        self.username = username.chars().take(128).collect();
        self.sub = sub.to_string();
        self
    }

    /// Sets where the call came from.
    pub fn origin(mut self, client_id: &str, ip: &str) -> Self {
        self.client_id = client_id.chars().take(128).collect();
        self.ip = ip.chars().take(64).collect();
        self
    }

    /// Sets the detail, truncated to its bound.
    pub fn detail(mut self, detail: impl AsRef<str>) -> Self {
        self.detail = detail.as_ref().chars().take(MAX_DETAIL_CHARS).collect();
        self
    }

    /// Marks the event failed.
    pub fn failed(mut self) -> Self {
        self.pass = false;
        self
    }
}
