//! Messages of the courier's replicated outbox: confirmation codes,
//! temporary passwords and notices, written by the same command that needs
//! them sent.

use serde::{Deserialize, Serialize};

use super::app_client::SealedSecret;

/// Most open messages (pending delivery, or stored for admins while their
/// secret is valid) one pool may hold. Beyond it the call that would send
/// one more fails with `LimitExceededException`; nothing undelivered is
/// ever dropped to make room.
pub const OUTBOX_QUEUE_PER_POOL: u64 = 5_000;
/// Finished messages (delivered or failed, secrets erased) kept cluster-wide
/// as history for admins; the oldest goes beyond it.
pub const OUTBOX_HISTORY: u64 = 10_000;

/// How a message reaches its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryMedium {
    /// Sent by email to the `email` attribute.
    Email,
    /// Sent by SMS to the `phone_number` attribute.
    Sms,
}

impl DeliveryMedium {
    /// Cognito's `DeliveryMedium` spelling (`EMAIL`, `SMS`).
    pub fn as_cognito(self) -> &'static str {
        match self {
            DeliveryMedium::Email => "EMAIL",
            DeliveryMedium::Sms => "SMS",
        }
    }

    /// The attribute that holds this medium's destination.
    pub fn attribute(self) -> &'static str {
        match self {
            DeliveryMedium::Email => "email",
            DeliveryMedium::Sms => "phone_number",
        }
    }
}

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageKind {
    /// The code that confirms a sign-up.
    ConfirmSignUp,
    /// The temporary password of a user an admin created.
    TemporaryPassword,
    /// The code that authorizes a password reset.
    ForgotPassword,
    /// The code that verifies an email or phone number.
    VerifyAttribute,
    /// A sign-in code: `SMS_MFA`, `EMAIL_OTP` or `SMS_OTP`. Valid as long
    /// as its challenge session (at most 15 minutes).
    SignInCode,
    /// A magic link that signs the device that asked in, once approved.
    MagicLink,
}

impl MessageKind {
    /// Stable name for the admin API, couriers and the seal context.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::ConfirmSignUp => "CONFIRM_SIGN_UP",
            MessageKind::TemporaryPassword => "TEMPORARY_PASSWORD",
            MessageKind::ForgotPassword => "FORGOT_PASSWORD",
            MessageKind::VerifyAttribute => "VERIFY_ATTRIBUTE",
            MessageKind::SignInCode => "SIGN_IN_CODE",
            MessageKind::MagicLink => "MAGIC_LINK",
        }
    }
}

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageStatus {
    /// Kept in the outbox for admins to read (the `outbox` backend).
    Stored,
    /// Waiting for the leader's courier to deliver it.
    Pending,
    /// Delivered; the body and code were erased.
    Delivered,
    /// Given up after a permanent error; the body and code were erased.
    Failed,
    /// Its code or temporary password expired before anyone read or
    /// delivered it; the body and code were erased.
    Expired,
}

impl MessageStatus {
    /// Stable name for the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Stored => "STORED",
            MessageStatus::Pending => "PENDING",
            MessageStatus::Delivered => "DELIVERED",
            MessageStatus::Failed => "FAILED",
            MessageStatus::Expired => "EXPIRED",
        }
    }
}

/// A message as the proposer composed it; `apply` gives it an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDraft {
    /// The pool of the recipient.
    pub pool_id: String,
    /// The recipient's username.
    pub username: String,
    /// Email or SMS.
    pub medium: DeliveryMedium,
    /// Email address or phone number the message goes to.
    pub destination: String,
    /// What the message is for; picks the template.
    pub kind: MessageKind,
    /// Email subject (unused for SMS); never holds the code.
    pub subject: String,
    /// The body and the code, sealed under the cluster sealing key and
    /// bound to this message (see [`MessageDraft::seal_context`]), so the
    /// Raft log and snapshots never hold a code in clear. `None` once the
    /// message is delivered, failed or expired.
    pub sealed: Option<SealedSecret>,
    /// Unix milliseconds, chosen by the proposer; part of the seal context.
    pub created_at: i64,
    /// Whether a courier backend will deliver it (else it is only stored).
    pub deliver: bool,
}

impl MessageDraft {
    /// The additional data of the sealed content: everything that says
    /// whom it is for, so content moved onto another message (another
    /// user or destination) does not open.
    pub fn seal_context(&self) -> Vec<u8> {
        format!(
            "tessera outbox message\0{}\0{}\0{}\0{}\0{}\0{}",
            self.pool_id,
            self.username,
            self.medium.as_cognito(),
            self.destination,
            self.kind.as_str(),
            self.created_at
        )
        .into_bytes()
    }
}

/// What a message says, before it is sealed and after it is opened.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageContent {
    /// The full text to send, code included.
    pub body: String,
    /// The code or temporary password alone.
    pub code: String,
}

impl std::fmt::Debug for MessageContent {
    /// Never prints the code.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageContent(..)")
    }
}

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Assigned in log order; also the outbox key.
    pub id: u64,
    /// What was composed, and its sealed content.
    pub draft: MessageDraft,
    /// Where the message is in its life.
    pub status: MessageStatus,
    /// Delivery attempts made so far.
    pub attempts: u32,
}

/// Masks a destination the way Cognito shows it: `a***@e***`, `+*******1212`.
pub fn mask_destination(medium: DeliveryMedium, destination: &str) -> String {
    match medium {
        DeliveryMedium::Email => match destination.split_once('@') {
            Some((local, domain)) => format!(
                "{}***@{}***",
                local.chars().next().unwrap_or('*'),
                domain.chars().next().unwrap_or('*')
            ),
            None => "***".into(),
        },
        DeliveryMedium::Sms => {
            let n = destination.chars().count();
            let tail: String = destination.chars().skip(n.saturating_sub(4)).collect();
            format!("+{}{}", "*".repeat(n.saturating_sub(5)), tail)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_masked() {
        assert_eq!(
            mask_destination(DeliveryMedium::Email, "alice@example.com"),
            "a***@e***"
        );
        assert_eq!(mask_destination(DeliveryMedium::Sms, "+14325551212"), "+*******1212");
    }
}
