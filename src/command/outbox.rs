//! Apply logic of the courier outbox: enqueueing, delivery results, and the
//! per-pool queue bound.
//!
//! An undelivered message is never evicted. Each pool may hold at most
//! [`OUTBOX_QUEUE_PER_POOL`] *open* messages: pending delivery, or stored
//! for admins (the `outbox` backend) while their code or temporary password
//! is still valid. A command that would enqueue beyond that is refused with
//! `LimitExceededException` *before it writes anything* (see [`has_room`]),
//! so the user's state and the message stay atomic: both or neither. A
//! stored message whose secret has expired carries nothing worth keeping and
//! is released when its pool needs the room. Finished messages (delivered or
//! failed, secrets erased) are history, of which the newest
//! [`OUTBOX_HISTORY`] are kept cluster-wide.

use super::{Apply, ApplyError};
use super::{Outcome, Rejection};
use crate::auth::codes::CODE_VALIDITY_MS;
use crate::model::outbox::{
    MessageDraft, MessageKind, MessageStatus, OutboxMessage, OUTBOX_HISTORY, OUTBOX_QUEUE_PER_POOL,
};
use crate::store::auth_state::OUTBOX_META_KEY;
use crate::store::keys::{id_key, pool_key, Table};
use crate::store::{codec, SmBatch, Store, StoreError};
use serde::{Deserialize, Serialize};

/// The rejection of a command whose pool's outbox queue is full.
pub(super) fn queue_full(pool_id: &str) -> Outcome {
    Outcome::Rejected(Rejection::LimitExceeded(format!(
        "The outbox of user pool {pool_id} holds {OUTBOX_QUEUE_PER_POOL} undelivered messages; retry after some are delivered."
    )))
}

/// Messages of `pool_id` counted against its bound.
fn open_count(store: &Store, pool_id: &str) -> Result<u64, StoreError> {
    Ok(match store.sm_get(Table::OutboxCounts, pool_id.as_bytes())? {
        Some(v) => codec::decode(&v)?,
        None => 0,
    })
}

/// Unix ms after which a stored message's secret is no longer valid.
fn secret_expires_at(store: &Store, m: &OutboxMessage) -> Result<i64, StoreError> {
    Ok(match m.draft.kind {
        MessageKind::TemporaryPassword => {
            let days = store.pool(&m.draft.pool_id)?.map_or(7, |p| {
                i64::from(p.settings.password_policy.temporary_password_validity_days)
            });
            m.draft.created_at.saturating_add(days.saturating_mul(24 * 3600 * 1000))
        }
        // Short-lived: released for new messages once their session is
        // over, so sign-ins in a busy pool do not fill its outbox.
        MessageKind::SignInCode => m
            .draft
            .created_at
            .saturating_add(i64::from(crate::model::mfa::MAX_SESSION_SECS) * 1000),
        MessageKind::MagicLink => m
            .draft
            .created_at
            .saturating_add(i64::from(crate::model::passwordless::MAX_MAGIC_LINK_SECS) * 1000),
        _ => m.draft.created_at.saturating_add(CODE_VALIDITY_MS),
    })
}

/// The oldest open message of `pool_id` that may be released at `now`: a
/// stored one whose secret expired. Pending ones are never released. Looks
/// at most at the pool's bound of entries.
fn releasable(store: &Store, pool_id: &str, now: i64) -> Result<Option<OutboxMessage>, StoreError> {
    let prefix = pool_key(pool_id, &[]);
    let mut after: Option<Vec<u8>> = None;
    let mut seen = 0u64;
    while seen < OUTBOX_QUEUE_PER_POOL {
        let page = store.sm_scan_prefix(Table::OutboxOpen, &prefix, after.as_deref(), 256)?;
        if page.is_empty() {
            return Ok(None);
        }
        for (k, _) in &page {
            seen += 1;
            let Some(id) = k.get(prefix.len()..).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
                continue;
            };
            let Some(m) = store.outbox_message(u64::from_be_bytes(id))? else {
                continue;
            };
            if m.status == MessageStatus::Stored && secret_expires_at(store, &m)? <= now {
                return Ok(Some(m));
            }
            if m.draft.created_at.saturating_add(CODE_VALIDITY_MS) > now {
                // Younger messages follow in log order; none of them expired.
                return Ok(None);
            }
        }
        after = page.last().map(|(k, _)| k[prefix.len()..].to_vec());
    }
    Ok(None)
}

/// Whether `draft`'s pool can take one more message. Every command that
/// enqueues calls this before its first write and is rejected if not.
pub(super) fn has_room(store: &Store, draft: &MessageDraft) -> Result<bool, StoreError> {
    if open_count(store, &draft.pool_id)? < OUTBOX_QUEUE_PER_POOL {
        return Ok(true);
    }
    Ok(releasable(store, &draft.pool_id, draft.created_at)?.is_some())
}

fn meta(store: &Store) -> Result<crate::store::auth_state::OutboxMeta, StoreError> {
    store.outbox_meta()
}

fn put_count(batch: &mut SmBatch<'_>, pool_id: &str, n: u64) -> Result<(), StoreError> {
    if n == 0 {
        batch.delete(Table::OutboxCounts, pool_id.as_bytes())
    } else {
        batch.put(Table::OutboxCounts, pool_id.as_bytes(), &codec::encode(&n)?)
    }
}

/// Appends a message to the outbox. The caller checked [`has_room`] before
/// writing anything; if the pool is at its bound, the oldest expired stored
/// message makes way. At most one message per command: counters are read
/// from the store, which does not see this command's own writes.
pub(super) fn enqueue(store: &Store, batch: &mut SmBatch<'_>, draft: &MessageDraft) -> Result<u64, StoreError> {
    let mut meta = meta(store)?;
    let mut count = open_count(store, &draft.pool_id)?;
    if count >= OUTBOX_QUEUE_PER_POOL {
        if let Some(old) = releasable(store, &draft.pool_id, draft.created_at)? {
            batch.delete(Table::Outbox, &id_key(old.id))?;
            batch.delete(Table::OutboxOpen, &pool_key(&old.draft.pool_id, &id_key(old.id)))?;
            count = count.saturating_sub(1);
            meta.open = meta.open.saturating_sub(1);
        }
    }
    let id = meta.next;
    let message = OutboxMessage {
        id,
        draft: draft.clone(),
        status: if draft.deliver {
            MessageStatus::Pending
        } else {
            MessageStatus::Stored
        },
        attempts: 0,
    };
    batch.put(Table::Outbox, &id_key(id), &codec::encode(&message)?)?;
    batch.put(Table::OutboxOpen, &pool_key(&draft.pool_id, &id_key(id)), &[])?;
    if draft.deliver {
        batch.put(Table::OutboxPending, &id_key(id), &[])?;
        meta.pending += 1;
    }
    meta.next += 1;
    meta.open += 1;
    put_count(batch, &draft.pool_id, count + 1)?;
    batch.put(Table::Cluster, OUTBOX_META_KEY, &codec::encode(&meta)?)?;
    Ok(id)
}

/// Records the courier's result. A final status erases the secret, frees
/// the message's place in its pool's queue and moves it to the history,
/// whose oldest entry goes beyond [`OUTBOX_HISTORY`].
pub(super) fn record_delivery(
    store: &Store,
    batch: &mut SmBatch<'_>,
    id: u64,
    status: MessageStatus,
    attempts: u32,
) -> Result<Outcome, StoreError> {
    let Some(mut m) = store.outbox_message(id)? else {
        // Deleted with its pool meanwhile: nothing to record.
        return Ok(Outcome::Done);
    };
    let was_open = matches!(m.status, MessageStatus::Pending | MessageStatus::Stored);
    let was_pending = m.status == MessageStatus::Pending;
    let finished = matches!(status, MessageStatus::Delivered | MessageStatus::Failed);
    m.status = status;
    m.attempts = attempts;
    if finished && was_open {
        let mut meta = meta(store)?;
        m.draft.sealed = None;
        batch.delete(Table::OutboxPending, &id_key(id))?;
        batch.delete(Table::OutboxOpen, &pool_key(&m.draft.pool_id, &id_key(id)))?;
        let count = open_count(store, &m.draft.pool_id)?;
        put_count(batch, &m.draft.pool_id, count.saturating_sub(1))?;
        meta.open = meta.open.saturating_sub(1);
        if was_pending {
            meta.pending = meta.pending.saturating_sub(1);
        }
        batch.put(Table::OutboxDone, &id_key(id), &[])?;
        meta.done += 1;
        if meta.done > OUTBOX_HISTORY {
            if let Some((k, _)) = store.sm_scan(Table::OutboxDone, None, 1)?.into_iter().next() {
                batch.delete(Table::OutboxDone, &k)?;
                batch.delete(Table::Outbox, &k)?;
                meta.done -= 1;
            }
        }
        batch.put(Table::Cluster, OUTBOX_META_KEY, &codec::encode(&meta)?)?;
    } else if finished {
        // Already final: keep it so, without its secrets.
        m.draft.sealed = None;
    } else if !was_open {
        // A late retry report for a finished message changes nothing.
        return Ok(Outcome::Done);
    }
    batch.put(Table::Outbox, &id_key(id), &codec::encode(&m)?)?;
    Ok(Outcome::Done)
}

/// Most messages one `ExpireOutboxMessages` finishes, and most open
/// entries it looks at, so that one log entry's apply stays short; the
/// next sweep goes on where this one stopped.
pub const EXPIRE_BATCH: usize = 256;
const EXPIRE_VISIT: usize = 4096;

/// The open messages whose code or temporary password has expired at
/// `now`, oldest first per pool, at most [`EXPIRE_BATCH`]. Read-only:
/// the sweeper asks it whether a sweep is worth a log entry, and `apply`
/// asks it again, with the command's `now`, for the same answer on every
/// node.
pub fn expired_messages(store: &Store, now: i64) -> Result<Vec<OutboxMessage>, StoreError> {
    let mut found = Vec::new();
    let mut visited = 0usize;
    let mut after_pool: Option<Vec<u8>> = None;
    'pools: loop {
        let pools = store.sm_scan(Table::OutboxCounts, after_pool.as_deref(), 64)?;
        if pools.is_empty() {
            break;
        }
        after_pool = pools.last().map(|(k, _)| k.clone());
        for (pool, _) in pools {
            let pool_id = String::from_utf8_lossy(&pool).into_owned();
            let prefix = pool_key(&pool_id, &[]);
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = store.sm_scan_prefix(Table::OutboxOpen, &prefix, after.as_deref(), 256)?;
                if page.is_empty() {
                    break;
                }
                after = page.last().map(|(k, _)| k[prefix.len()..].to_vec());
                for (k, _) in &page {
                    visited += 1;
                    if visited > EXPIRE_VISIT {
                        break 'pools;
                    }
                    let Some(id) = k.get(prefix.len()..).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
                        continue;
                    };
                    let Some(m) = store.outbox_message(u64::from_be_bytes(id))? else {
                        continue;
                    };
                    if m.draft.created_at.saturating_add(CODE_VALIDITY_MS) > now {
                        // Younger messages follow in log order; none expired.
                        break;
                    }
                    if secret_expires_at(store, &m)? <= now {
                        found.push(m);
                        if found.len() >= EXPIRE_BATCH {
                            break 'pools;
                        }
                    }
                }
            }
        }
    }
    Ok(found)
}

/// Erases the secrets of messages that expired before anyone delivered or
/// read them, and moves them to the history as `Expired`.
pub(super) fn expire_messages(store: &Store, batch: &mut SmBatch<'_>, now: i64) -> Result<Outcome, StoreError> {
    let expired = expired_messages(store, now)?;
    if expired.is_empty() {
        return Ok(Outcome::Done);
    }
    let mut meta = meta(store)?;
    // Counters are read from the store, which does not see this batch, so
    // each pool's decrement is summed first and written once.
    let mut per_pool: std::collections::BTreeMap<String, u64> = Default::default();
    for mut m in expired {
        let id = m.id;
        if m.status == MessageStatus::Pending {
            batch.delete(Table::OutboxPending, &id_key(id))?;
            meta.pending = meta.pending.saturating_sub(1);
        }
        batch.delete(Table::OutboxOpen, &pool_key(&m.draft.pool_id, &id_key(id)))?;
        *per_pool.entry(m.draft.pool_id.clone()).or_default() += 1;
        meta.open = meta.open.saturating_sub(1);
        m.status = MessageStatus::Expired;
        m.draft.sealed = None;
        batch.put(Table::Outbox, &id_key(id), &codec::encode(&m)?)?;
        batch.put(Table::OutboxDone, &id_key(id), &[])?;
        meta.done += 1;
    }
    for (pool_id, n) in per_pool {
        let count = open_count(store, &pool_id)?;
        put_count(batch, &pool_id, count.saturating_sub(n))?;
    }
    if meta.done > OUTBOX_HISTORY {
        let excess = usize::try_from(meta.done - OUTBOX_HISTORY).unwrap_or(usize::MAX);
        for (k, _) in store.sm_scan(Table::OutboxDone, None, excess)? {
            batch.delete(Table::OutboxDone, &k)?;
            batch.delete(Table::Outbox, &k)?;
            meta.done -= 1;
        }
    }
    batch.put(Table::Cluster, OUTBOX_META_KEY, &codec::encode(&meta)?)?;
    Ok(Outcome::Done)
}

/// Deletes every message of a pool being deleted (they carry codes), and
/// their places in the counters.
pub(super) fn delete_pool_messages(store: &Store, batch: &mut SmBatch<'_>, pool_id: &str) -> Result<(), StoreError> {
    let mut meta = meta(store)?;
    for m in store.outbox_page(Some(pool_id), None, usize::MAX)? {
        batch.delete(Table::Outbox, &id_key(m.id))?;
        match m.status {
            MessageStatus::Pending => {
                batch.delete(Table::OutboxPending, &id_key(m.id))?;
                meta.pending = meta.pending.saturating_sub(1);
                meta.open = meta.open.saturating_sub(1);
            }
            MessageStatus::Stored => meta.open = meta.open.saturating_sub(1),
            MessageStatus::Delivered | MessageStatus::Failed | MessageStatus::Expired => {
                batch.delete(Table::OutboxDone, &id_key(m.id))?;
                meta.done = meta.done.saturating_sub(1);
            }
        }
    }
    batch.delete_prefix(Table::OutboxOpen, &pool_key(pool_id, &[]))?;
    batch.delete(Table::OutboxCounts, pool_id.as_bytes())?;
    batch.put(Table::Cluster, OUTBOX_META_KEY, &codec::encode(&meta)?)?;
    Ok(())
}

/// Records the courier's result for an outbox message; a final status
/// erases its body and code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordDelivery {
    /// The message, by outbox id.
    pub id: u64,
    /// Its new status; `Delivered` or `Failed` erase the body and code.
    pub status: MessageStatus,
    /// Delivery attempts made so far, as the courier counted them.
    pub attempts: u32,
}

impl Apply for RecordDelivery {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(record_delivery(store, batch, self.id, self.status, self.attempts)?)
    }
}
/// Erases the codes and temporary passwords of outbox messages that
/// expired undelivered and unread (at most [`EXPIRE_BATCH`] per entry).
/// The leader's sweeper proposes it; applying it twice changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpireOutboxMessages {
    /// The sweeper's clock (Unix ms); messages whose secret expired by then are erased.
    pub now: i64,
}

impl Apply for ExpireOutboxMessages {
    type Output = ();

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(expire_messages(store, batch, self.now)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testkit::{run, store_with_pool, POOL};
    use crate::model::app_client::SealedSecret;
    use crate::model::outbox::DeliveryMedium;

    fn setup() -> (tempfile::TempDir, Store) {
        store_with_pool(&[])
    }

    fn draft(n: u64) -> MessageDraft {
        MessageDraft {
            pool_id: POOL.into(),
            username: format!("u{n}"),
            medium: DeliveryMedium::Email,
            destination: "a@b.io".into(),
            kind: MessageKind::ConfirmSignUp,
            subject: "s".into(),
            sealed: Some(SealedSecret {
                nonce: [0; 12],
                ciphertext: vec![1, 2, 3],
            }),
            created_at: 0,
            deliver: true,
        }
    }

    /// Messages nobody delivered or read lose their secret once it
    /// expires, leave the queue, and the sweep is idempotent.
    #[test]
    fn expired_messages_are_erased_and_leave_the_queue() {
        let (_d, store) = setup();
        let validity = crate::auth::codes::CODE_VALIDITY_MS;
        let msg = |n: u64, at: i64, deliver: bool, kind: MessageKind| MessageDraft {
            deliver,
            created_at: at,
            kind,
            ..draft(n)
        };
        let drafts = [
            msg(0, 0, false, MessageKind::ConfirmSignUp),
            msg(1, 0, true, MessageKind::ForgotPassword),
            // Temporary passwords live for the pool's validity (7 days).
            msg(2, 0, false, MessageKind::TemporaryPassword),
            msg(3, validity, false, MessageKind::ConfirmSignUp),
        ];
        for d in &drafts {
            let mut b = store.sm_batch();
            enqueue(&store, &mut b, d).unwrap();
            b.commit().unwrap();
        }
        let sweep = ExpireOutboxMessages { now: validity + 1 };
        assert_eq!(
            expired_messages(&store, validity + 1).unwrap().len(),
            2,
            "the sweeper's read finds what apply will expire"
        );
        assert!(matches!(run(&store, &sweep), Outcome::Done));
        let status = |id: u64| {
            let m = store.outbox_message(id).unwrap().unwrap();
            (m.status, m.draft.sealed.is_some())
        };
        assert_eq!(status(0), (MessageStatus::Expired, false));
        assert_eq!(status(1), (MessageStatus::Expired, false));
        assert_eq!(status(2), (MessageStatus::Stored, true));
        assert_eq!(status(3), (MessageStatus::Stored, true));
        assert!(!store.outbox_pending(usize::MAX).unwrap().contains(&1));
        let meta = store.outbox_meta().unwrap();
        assert_eq!((meta.open, meta.pending, meta.done), (2, 0, 2));
        // Applying it again changes nothing.
        run(&store, &sweep);
        assert_eq!(store.outbox_meta().unwrap(), meta);
        assert!(expired_messages(&store, validity + 1).unwrap().is_empty());
        // A week later the temporary password expires too.
        let week = 7 * 24 * 3600 * 1000 + 1;
        run(&store, &ExpireOutboxMessages { now: week });
        assert_eq!(status(2), (MessageStatus::Expired, false));
    }
}
