//! What a delivery backend is given, and how it fails.

/// How a message reaches its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    Email,
    Sms,
}

impl Medium {
    /// Cognito's spelling.
    pub fn as_cognito(self) -> &'static str {
        match self {
            Medium::Email => "EMAIL",
            Medium::Sms => "SMS",
        }
    }
}

/// One message to deliver. `body` and `code` are secret: never log them.
#[derive(Clone)]
pub struct OutgoingMessage {
    /// Outbox id; stable across retries, so receivers can deduplicate.
    pub id: u64,
    pub pool_id: String,
    pub username: String,
    pub medium: Medium,
    /// Email address or E.164 phone number.
    pub destination: String,
    /// `CONFIRM_SIGN_UP`, `TEMPORARY_PASSWORD`, ...
    pub kind: String,
    pub subject: String,
    pub body: String,
    /// The code or temporary password alone.
    pub code: String,
}

impl std::fmt::Debug for OutgoingMessage {
    /// Leaves out the body and code, which carry secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMessage")
            .field("id", &self.id)
            .field("pool_id", &self.pool_id)
            .field("kind", &self.kind)
            .field("medium", &self.medium)
            .finish_non_exhaustive()
    }
}

/// Why a delivery failed. `retryable` decides whether the courier tries
/// again with backoff or gives the message up (and says so in logs and
/// metrics).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    pub retryable: bool,
    pub message: String,
}

impl DeliveryError {
    pub fn retry(message: impl Into<String>) -> Self {
        DeliveryError {
            retryable: true,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        DeliveryError {
            retryable: false,
            message: message.into(),
        }
    }
}
