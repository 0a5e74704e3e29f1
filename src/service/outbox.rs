//! Composing courier messages, and reading the replicated outbox.

use std::sync::Arc;

use super::ServiceError;
use crate::model::outbox::{DeliveryMedium, MessageDraft, MessageKind, OutboxMessage};
use crate::model::pool::{validate_pool_id, UserPool};
use crate::model::pool_settings::SignInAlias;
use crate::model::user::User;
use crate::raft::RaftNode;

/// Largest page of `ListOutboxMessages`.
pub const MAX_OUTBOX_PAGE: usize = 1000;

/// Where a user's code should go: the first auto-verified attribute the
/// user has, as Cognito picks it.
pub fn code_destination(pool: &UserPool, user: &User) -> Option<(SignInAlias, DeliveryMedium, String)> {
    pool.settings.auto_verified_attributes.iter().find_map(|alias| {
        let value = user.attributes.get(alias.attribute())?;
        let medium = match alias {
            SignInAlias::Email => DeliveryMedium::Email,
            SignInAlias::PhoneNumber => DeliveryMedium::Sms,
        };
        Some((*alias, medium, value.clone()))
    })
}

/// Where a password-reset code goes: the verified email, else the
/// verified phone number (Cognito's default recovery order). A value
/// waiting for verification never receives it.
pub fn recovery_destination(user: &User) -> Option<(SignInAlias, DeliveryMedium, String)> {
    if user.email_verified {
        if let Some(v) = user.attributes.get("email") {
            return Some((SignInAlias::Email, DeliveryMedium::Email, v.clone()));
        }
    }
    if user.phone_number_verified {
        if let Some(v) = user.attributes.get("phone_number") {
            return Some((SignInAlias::PhoneNumber, DeliveryMedium::Sms, v.clone()));
        }
    }
    None
}

/// The message carrying a password-reset or attribute-verification code.
pub fn code_message(
    pool: &UserPool,
    user: &User,
    kind: MessageKind,
    medium: DeliveryMedium,
    destination: &str,
    code: &str,
    deliver: bool,
) -> MessageDraft {
    let (subject, body) = match kind {
        MessageKind::ForgotPassword => (
            format!("Your {} password reset code", pool.name),
            format!("Your password reset code is {code}. It is valid for 24 hours. If you did not ask for it, ignore this message."),
        ),
        _ => (
            format!("Your {} verification code", pool.name),
            format!("Your verification code is {code}. It is valid for 24 hours."),
        ),
    };
    MessageDraft {
        pool_id: pool.id.clone(),
        username: user.username.clone(),
        medium,
        destination: destination.to_string(),
        kind,
        subject,
        body,
        code: code.to_string(),
        created_at: crate::clock::now_millis(),
        deliver,
    }
}

/// The message carrying a sign-up confirmation code.
pub fn confirmation_message(
    pool: &UserPool,
    user: &User,
    medium: DeliveryMedium,
    destination: &str,
    code: &str,
    deliver: bool,
) -> MessageDraft {
    MessageDraft {
        pool_id: pool.id.clone(),
        username: user.username.clone(),
        medium,
        destination: destination.to_string(),
        kind: MessageKind::ConfirmSignUp,
        subject: format!("Your {} verification code", pool.name),
        body: format!("Your verification code is {code}. It is valid for 24 hours."),
        code: code.to_string(),
        created_at: crate::clock::now_millis(),
        deliver,
    }
}

/// The message carrying an admin-set temporary password.
pub fn temporary_password_message(
    pool: &UserPool,
    user: &User,
    medium: DeliveryMedium,
    destination: &str,
    password: &str,
    deliver: bool,
) -> MessageDraft {
    MessageDraft {
        pool_id: pool.id.clone(),
        username: user.username.clone(),
        medium,
        destination: destination.to_string(),
        kind: MessageKind::TemporaryPassword,
        subject: format!("Your {} temporary password", pool.name),
        body: format!(
            "Your username is {} and your temporary password is {password}. Sign in within {} days to choose your own.",
            user.username, pool.settings.password_policy.temporary_password_validity_days
        ),
        code: password.to_string(),
        created_at: crate::clock::now_millis(),
        deliver,
    }
}

/// Admin reads of the outbox.
#[derive(Clone)]
pub struct OutboxService {
    node: Arc<RaftNode>,
}

impl OutboxService {
    pub fn new(node: Arc<RaftNode>) -> Self {
        OutboxService { node }
    }

    /// A page of messages, oldest first, optionally of one pool.
    pub async fn list(
        &self,
        pool_id: &str,
        max_results: i32,
        next_token: &str,
        consistent: bool,
    ) -> Result<(Vec<OutboxMessage>, Option<String>), ServiceError> {
        let pool = if pool_id.is_empty() {
            None
        } else {
            validate_pool_id(pool_id)?;
            Some(pool_id)
        };
        let limit = match max_results {
            0 => 100,
            n if (1..=MAX_OUTBOX_PAGE as i32).contains(&n) => n as usize,
            n => {
                return Err(ServiceError::invalid(format!(
                    "max_results: {n} is out of range; use 1 to {MAX_OUTBOX_PAGE}"
                )))
            }
        };
        let after = if next_token.is_empty() {
            None
        } else {
            Some(
                next_token
                    .parse::<u64>()
                    .map_err(|_| ServiceError::invalid("next_token: not a token from a previous ListOutboxMessages"))?,
            )
        };
        if consistent {
            self.node.read_barrier().await?;
        }
        let mut page = self.node.store().outbox_page(pool, after, limit + 1)?;
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|m| m.id.to_string())
        } else {
            None
        };
        Ok((page, next))
    }
}

/// Copies the outbox's backlog into the Prometheus gauges: how many
/// messages wait for delivery and how old the oldest is. O(1): the counts
/// are kept by `apply`, and the oldest pending id is the first key.
pub fn refresh_metrics(node: &RaftNode) {
    let store = node.store();
    let metrics = node.metrics();
    let Ok(meta) = store.outbox_meta() else {
        return;
    };
    let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    metrics.outbox_backlog.set(g(meta.pending));
    metrics.outbox_open.set(g(meta.open));
    let oldest = store
        .outbox_pending(1)
        .ok()
        .and_then(|ids| ids.first().copied())
        .and_then(|id| store.outbox_message(id).ok().flatten());
    let age_s = oldest.map_or(0, |m| (crate::clock::now_millis() - m.draft.created_at).max(0) / 1000);
    metrics.outbox_oldest_age_seconds.set(age_s);
}
