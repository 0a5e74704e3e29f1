//! The courier: delivery of confirmation codes, temporary passwords and
//! notices.
//!
//! Messages are first written to the replicated outbox by the command that
//! needs them (a sign-up and its code commit together, so a crash can never
//! lose one without the other). What happens next depends on the node's
//! configured backend:
//!
//! * `outbox`: nothing; admins and tests read the outbox.
//! * `webhook` ([`webhook`]) and `smtp` ([`smtp`]): the leader delivers each
//!   pending message, retrying with backoff, and then marks it delivered,
//!   which also erases its body from the replicated state.

pub mod http;
pub mod smtp;
pub mod transport;
pub mod webhook;

use crate::command::{ExpireOutboxMessages, RecordDelivery};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::auth::sealing::{open_message, SealingCell};
use crate::metrics::Metrics;
use crate::model::outbox::{DeliveryMedium, MessageContent, MessageStatus, OutboxMessage};
use crate::raft::RaftNode;
use transport::{DeliveryError, Medium, OutgoingMessage};

/// Attempts before a retryable failure is given up.
pub const MAX_ATTEMPTS: u32 = 12;
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often the leader looks for pending messages.
const POLL: Duration = Duration::from_millis(500);

/// Which backend delivers messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Keep messages in the replicated outbox only (the default; what
    /// `tessera dev` and the tests use).
    #[default]
    Outbox,
    /// POST each message, signed, to an endpoint the operator runs, which sends the email or SMS (`[courier.webhook]`).
    Webhook,
    /// Send email through an SMTP server (`[courier.smtp]`); SMS messages are refused.
    Smtp,
}

/// `[courier]` in the node config. Every node should use the same backend:
/// whichever node leads delivers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourierConfig {
    /// `outbox`, `webhook` or `smtp`.
    #[serde(default)]
    pub backend: Backend,
    /// Required when `backend = "webhook"`.
    pub webhook: Option<webhook::WebhookConfig>,
    /// Required when `backend = "smtp"`.
    pub smtp: Option<smtp::SmtpConfig>,
}

impl CourierConfig {
    /// Whether messages are delivered by a backend (else only stored).
    pub fn delivers(&self) -> bool {
        self.backend != Backend::Outbox
    }
}

/// A configured delivery backend.
pub enum Sender {
    /// Delivers by webhook.
    Webhook(webhook::WebhookSender),
    /// Delivers by SMTP.
    Smtp(smtp::SmtpSender),
}

impl Sender {
    /// The sender for `cfg`, or `None` for the outbox backend.
    pub fn from_config(cfg: &CourierConfig) -> Result<Option<Self>, DeliveryError> {
        match cfg.backend {
            Backend::Outbox => Ok(None),
            Backend::Webhook => {
                let c = cfg.webhook.clone().ok_or_else(|| {
                    DeliveryError::permanent("courier.backend = \"webhook\" needs a [courier.webhook] section")
                })?;
                Ok(Some(Sender::Webhook(webhook::WebhookSender::new(c)?)))
            }
            Backend::Smtp => {
                let c = cfg.smtp.clone().ok_or_else(|| {
                    DeliveryError::permanent("courier.backend = \"smtp\" needs a [courier.smtp] section")
                })?;
                Ok(Some(Sender::Smtp(smtp::SmtpSender::new(c)?)))
            }
        }
    }

    async fn send(&self, m: &OutgoingMessage) -> Result<(), DeliveryError> {
        match self {
            Sender::Webhook(w) => w.send(m).await,
            Sender::Smtp(s) => s.send(m).await,
        }
    }
}

fn outgoing(m: &OutboxMessage, content: MessageContent) -> OutgoingMessage {
    OutgoingMessage {
        id: m.id,
        pool_id: m.draft.pool_id.clone(),
        username: m.draft.username.clone(),
        medium: match m.draft.medium {
            DeliveryMedium::Email => Medium::Email,
            DeliveryMedium::Sms => Medium::Sms,
        },
        destination: m.draft.destination.clone(),
        kind: m.draft.kind.as_str().to_string(),
        subject: m.draft.subject.clone(),
        body: content.body,
        code: content.code,
    }
}

/// Backoff after `attempts` failures: 1 s, 2 s, 4 s ... capped at 5 min.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(16)).min(MAX_BACKOFF)
}

/// Delivers pending outbox messages while this node leads, until `stop`.
/// Delivery is at least once: a leader change between sending and
/// recording may send a message twice (receivers deduplicate by id).
pub async fn run(
    node: Arc<RaftNode>,
    sender: Sender,
    sealing: Arc<SealingCell>,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut next_try: BTreeMap<u64, Instant> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => return,
        }
        let status = node.status();
        if status.leader_id != Some(status.node_id) {
            next_try.clear();
            continue;
        }
        let pending = match node.store().outbox_pending(64) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "courier: reading the outbox");
                continue;
            }
        };
        next_try.retain(|id, _| pending.contains(id));
        for id in pending {
            if next_try.get(&id).is_some_and(|t| crate::clock::instant() < *t) {
                continue;
            }
            let Ok(Some(m)) = node.store().outbox_message(id) else {
                continue;
            };
            let attempts = m.attempts + 1;
            // Opened only here, just before sending; the clear text never
            // reaches the log, a snapshot or a trace.
            let opened = match sealing.get() {
                Some(key) => open_message(&key, &m.draft).map_err(|e| e.to_string()),
                None => Err("this node has no sealing key".to_string()),
            };
            let content = match opened {
                Ok(Some(c)) => c,
                Ok(None) => {
                    // Erased: only a finished message loses its content, so
                    // this one's record is late; nothing to send.
                    continue;
                }
                Err(e) => {
                    // Not retryable: every node holds the same key, so this
                    // one would never open anywhere.
                    metrics.courier_failed.inc();
                    tracing::warn!(message_id = id, error = %e, "courier: cannot open a message");
                    let cmd = RecordDelivery {
                        id,
                        status: MessageStatus::Failed,
                        attempts,
                    };
                    if let Err(e) = node.propose(cmd).await {
                        tracing::warn!(message_id = id, error = %e, "courier: recording a delivery");
                    }
                    continue;
                }
            };
            let (status, log) = match sender.send(&outgoing(&m, content)).await {
                Ok(()) => {
                    metrics.courier_delivered.inc();
                    (MessageStatus::Delivered, None)
                }
                Err(e) if e.retryable && attempts < MAX_ATTEMPTS => {
                    metrics.courier_retries.inc();
                    next_try.insert(id, crate::clock::instant() + backoff(attempts));
                    (MessageStatus::Pending, Some(e))
                }
                Err(e) => {
                    metrics.courier_failed.inc();
                    (MessageStatus::Failed, Some(e))
                }
            };
            if let Some(e) = log {
                tracing::warn!(message_id = id, attempts, kind = m.draft.kind.as_str(), error = %e.message,
                    final_failure = status == MessageStatus::Failed, "courier: delivery failed");
            }
            if let Err(e) = node.propose(RecordDelivery { id, status, attempts }).await {
                tracing::warn!(message_id = id, error = %e, "courier: recording a delivery");
            }
        }
    }
}

/// How often the leader looks for expired undelivered messages.
const EXPIRY_SWEEP: Duration = Duration::from_secs(60);

/// While this node leads, erases the codes and temporary passwords of
/// outbox messages that expired before anyone delivered or read them
/// (`ExpireOutboxMessages`), until `stop`. Runs with every backend: with
/// `outbox`, nothing else would ever erase a stored message's secret.
/// Proposes only when this node's state shows something expired, so an
/// idle cluster writes no log entries for it.
pub async fn sweep_expired(node: Arc<RaftNode>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EXPIRY_SWEEP) => {}
            _ = stop.changed() => return,
        }
        let status = node.status();
        if status.leader_id != Some(status.node_id) {
            continue;
        }
        let now = crate::clock::now_millis();
        // A backlog takes several entries of EXPIRE_BATCH; bounded, so that
        // a fault here cannot turn into a proposal loop.
        for _ in 0..16 {
            match crate::command::expired_messages(node.store(), now) {
                Ok(found) if !found.is_empty() => {}
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox sweep: reading the outbox");
                    break;
                }
            }
            match node.propose(ExpireOutboxMessages { now }).await {
                Ok(_) => tracing::info!("outbox sweep: erased expired messages"),
                Err(e) => {
                    tracing::warn!(error = %e, "outbox sweep: proposing");
                    break;
                }
            }
        }
    }
}
