//! Composing courier messages, and reading the replicated outbox.

use std::sync::Arc;

use super::cursor::{Cursors, Scope};
use super::sealing_key;
use super::ServiceError;
use crate::auth::sealing::{open_message, seal_message, SealingCell, SealingKey};
use crate::model::outbox::{DeliveryMedium, MessageContent, MessageDraft, MessageKind, OutboxMessage};
use crate::model::pool::{validate_pool_id, UserPool};
use crate::model::pool_settings::SignInAlias;
use crate::model::user::User;
use crate::raft::RaftNode;
use crate::service::triggers::custom_message::CustomText;

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

/// A draft of `kind` for `user` whose body and code are sealed under `key`.
#[allow(clippy::too_many_arguments)]
fn sealed_draft(
    key: &SealingKey,
    pool: &UserPool,
    username: &str,
    kind: MessageKind,
    medium: DeliveryMedium,
    destination: &str,
    subject: String,
    content: MessageContent,
    deliver: bool,
) -> MessageDraft {
    let mut draft = MessageDraft {
        pool_id: pool.id.clone(),
        username: username.to_string(),
        medium,
        destination: destination.to_string(),
        kind,
        subject,
        sealed: None,
        created_at: crate::clock::now_millis(),
        deliver,
    };
    seal_message(key, &mut draft, &content);
    draft
}

/// The message carrying a sign-up confirmation, password-reset or
/// attribute-verification code.
#[allow(clippy::too_many_arguments)]
pub fn code_message(
    key: &SealingKey,
    pool: &UserPool,
    username: &str,
    kind: MessageKind,
    medium: DeliveryMedium,
    destination: &str,
    code: &str,
    custom: Option<&CustomText>,
    deliver: bool,
) -> MessageDraft {
    let (mut subject, mut body) = match kind {
        MessageKind::ForgotPassword => (
            format!("Your {} password reset code", pool.name),
            format!("Your password reset code is {code}. It is valid for 24 hours. If you did not ask for it, ignore this message."),
        ),
        _ => (
            format!("Your {} verification code", pool.name),
            format!("Your verification code is {code}. It is valid for 24 hours."),
        ),
    };
    if let Some(c) = custom {
        body = c.fill(code, username);
        subject = c.subject.clone().unwrap_or(subject);
    }
    let content = MessageContent {
        body,
        code: code.to_string(),
    };
    sealed_draft(
        key,
        pool,
        username,
        kind,
        medium,
        destination,
        subject,
        content,
        deliver,
    )
}

/// The message carrying a sign-in code (`SMS_MFA`, `EMAIL_OTP`,
/// `SMS_OTP`): the pool's MFA template when it has one (its `{####}`
/// replaced by the code), else a default text that says how long the code
/// is valid.
#[allow(clippy::too_many_arguments)]
pub fn sign_in_code_message(
    key: &SealingKey,
    pool: &UserPool,
    username: &str,
    medium: DeliveryMedium,
    destination: &str,
    code: &str,
    template: (&str, &str),
    validity_secs: u32,
    custom: Option<&CustomText>,
    deliver: bool,
) -> MessageDraft {
    let (subject_template, body_template) = template;
    let minutes = validity_secs.div_ceil(60);
    let body = if body_template.is_empty() {
        format!(
            "Your {} sign-in code is {code}. It is valid for {minutes} minutes. If you did not try to sign in, ignore this message.",
            pool.name
        )
    } else {
        body_template.replace(crate::model::mfa::CODE_PLACEHOLDER, code)
    };
    let subject = if subject_template.is_empty() {
        format!("Your {} sign-in code", pool.name)
    } else {
        subject_template.to_string()
    };
    let (subject, body) = match custom {
        Some(c) => (c.subject.clone().unwrap_or(subject), c.fill(code, username)),
        None => (subject, body),
    };
    let content = MessageContent {
        body,
        code: code.to_string(),
    };
    sealed_draft(
        key,
        pool,
        username,
        MessageKind::SignInCode,
        medium,
        destination,
        subject,
        content,
        deliver,
    )
}

/// The message carrying a magic link. The link is also the message's
/// `code`, so the outbox shows it to admins (and tests) like a code.
pub fn magic_link_message(
    key: &SealingKey,
    pool: &UserPool,
    username: &str,
    destination: &str,
    link: &str,
    validity_secs: u32,
    deliver: bool,
) -> MessageDraft {
    let content = MessageContent {
        body: format!(
            "Open this link to sign in to {}:\n\n{link}\n\nIt works once, within {} minutes, and signs in the device where you asked for it. If you did not ask to sign in, ignore this message.",
            pool.name,
            validity_secs.div_ceil(60)
        ),
        code: link.to_string(),
    };
    sealed_draft(
        key,
        pool,
        username,
        MessageKind::MagicLink,
        DeliveryMedium::Email,
        destination,
        format!("Sign in to {}", pool.name),
        content,
        deliver,
    )
}

/// The message carrying an admin-set temporary password.
#[allow(clippy::too_many_arguments)]
pub fn temporary_password_message(
    key: &SealingKey,
    pool: &UserPool,
    user: &User,
    medium: DeliveryMedium,
    destination: &str,
    password: &str,
    custom: Option<&CustomText>,
    deliver: bool,
) -> MessageDraft {
    let mut subject = format!("Your {} temporary password", pool.name);
    let mut body = format!(
        "Your username is {} and your temporary password is {password}. Sign in within {} days to choose your own.",
        user.username, pool.settings.password_policy.temporary_password_validity_days
    );
    if let Some(c) = custom {
        body = c.fill(password, &user.username);
        subject = c.subject.clone().unwrap_or(subject);
    }
    let content = MessageContent {
        body,
        code: password.to_string(),
    };
    let kind = MessageKind::TemporaryPassword;
    sealed_draft(
        key,
        pool,
        &user.username,
        kind,
        medium,
        destination,
        subject,
        content,
        deliver,
    )
}

/// Admin reads of the outbox.
#[derive(Clone)]
pub struct OutboxService {
    node: Arc<RaftNode>,
    sealing: Arc<SealingCell>,
}

impl OutboxService {
    /// The outbox service of `node`; `sealing` opens message bodies for admins.
    pub fn new(node: Arc<RaftNode>, sealing: Arc<SealingCell>) -> Self {
        OutboxService { node, sealing }
    }

    /// A page of messages, oldest first, optionally of one pool, each with
    /// its opened body and code while it still has them.
    pub async fn list(
        &self,
        pool_id: &str,
        max_results: i32,
        next_token: &str,
        consistent: bool,
    ) -> Result<(Vec<(OutboxMessage, Option<MessageContent>)>, Option<String>), ServiceError> {
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
        let parts = [pool_id];
        let scope = Scope::next_token("ListOutboxMessages", &parts);
        let cursors = Cursors::new(self.sealing.clone());
        let after = cursors
            .resume_text(&scope, next_token)?
            .map(|t| t.parse::<u64>())
            .transpose()
            .map_err(|_| ServiceError::invalid("next_token: not a token from a previous ListOutboxMessages"))?;
        if consistent {
            self.node.read_barrier().await?;
        }
        let mut page = self.node.store().outbox_page(pool, after, limit + 1)?;
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last()
                .map(|m| cursors.issue(&scope, m.id.to_string().as_bytes()))
                .transpose()?
        } else {
            None
        };
        let key = sealing_key(&self.sealing)?;
        let opened = page
            .into_iter()
            .map(|m| {
                let content = open_message(&key, &m.draft).map_err(|e| ServiceError::internal(e.to_string()))?;
                Ok((m, content))
            })
            .collect::<Result<Vec<_>, ServiceError>>()?;
        Ok((opened, next))
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
