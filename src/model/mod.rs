//! Plain domain types and their validation. No I/O, and no knowledge of
//! RocksDB, openraft, tonic or quinn: conversions live at the edges.

pub mod admin_key;
pub mod app_client;
pub mod auth_event;
pub mod branding;
pub mod cluster;
pub mod code;
pub mod device;
pub mod group;
pub mod identity;
pub mod identity_pool;
pub mod identity_provider;
pub mod lockout;
pub mod mfa;
pub mod oauth_client;
pub mod outbox;
pub mod page_strings;
pub mod passwordless;
pub mod policy;
pub mod pool;
pub mod pool_settings;
pub mod resource_server;
pub mod role;
pub mod srp;
pub mod sync;
pub mod triggers;
pub mod user;
pub mod user_filter;
pub mod webauthn;

/// A field failed validation at the edge. The message names the field and
/// says what would be accepted, so a person can fix the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    /// The request field that was refused, as the caller named it.
    pub field: &'static str,
    /// What is wrong and what would be accepted.
    pub reason: String,
}

impl ValidationError {
    /// A refusal of `field`, with a reason a person can act on.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}
