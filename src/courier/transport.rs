//! What a delivery backend is given, and how it fails.

/// How a message reaches its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// An email, through the SMTP or webhook backend.
    Email,
    /// A text message, through the webhook backend.
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
    /// The pool the message belongs to (webhook receivers route on it).
    pub pool_id: String,
    /// The user it is for, as they sign in.
    pub username: String,
    /// Email or SMS: which backend route it takes.
    pub medium: Medium,
    /// Email address or E.164 phone number.
    pub destination: String,
    /// `CONFIRM_SIGN_UP`, `TEMPORARY_PASSWORD`, ...
    pub kind: String,
    /// The email subject (empty for SMS).
    pub subject: String,
    /// The text to send, code included. Secret.
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
    /// Whether another attempt may succeed (a timeout, a 4xx SMTP reply, a
    /// 5xx HTTP status) or never will (a 5xx SMTP reply, a refused address).
    pub retryable: bool,
    /// What went wrong, for logs and the outbox; never the body or code.
    pub message: String,
}

impl DeliveryError {
    /// A failure the courier retries with backoff.
    pub fn retry(message: impl Into<String>) -> Self {
        DeliveryError {
            retryable: true,
            message: message.into(),
        }
    }

    /// A failure that gives the message up.
    pub fn permanent(message: impl Into<String>) -> Self {
        DeliveryError {
            retryable: false,
            message: message.into(),
        }
    }
}
