//! The pool audit log: writing events and reading them back.
//!
//! Events that describe a change are committed with the change
//! (`Command::Audited`), and failed sign-ins with their lockout counter.
//! Successful sign-ins are the exception: they must not wait for a Raft
//! round trip, so this node queues them and a background task commits them
//! in batches. A crash can lose the last fraction of a second of those
//! events; a full queue drops new ones and counts them
//! (`tessera_audit_events_dropped_total`) rather than slow sign-in down.

use crate::command::RecordAuthEvents;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::cursor::{Cursors, Scope};
use super::ServiceError;
use crate::model::auth_event::AuthEvent;
use crate::model::user::validate_username;
use crate::raft::RaftNode;

/// Events queued for batching before new ones are dropped.
pub const AUDIT_QUEUE: usize = 10_000;
/// Most events in one replicated batch.
pub const AUDIT_BATCH: usize = 500;
/// How long the first queued event waits for company.
const FLUSH_AFTER: Duration = Duration::from_millis(200);
/// How long a stopping node still tries to commit audit events.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Writes and reads audit events on one node.
#[derive(Clone)]
pub struct AuditService {
    node: Arc<RaftNode>,
    queue: mpsc::Sender<AuthEvent>,
    cursors: Cursors,
}

impl AuditService {
    /// Starts the batching task, which runs until `stop` fires (flushing
    /// what it holds first); the caller waits for the returned task at
    /// shutdown, before Raft stops.
    pub fn start(
        node: Arc<RaftNode>,
        cursors: Cursors,
        stop: watch::Receiver<bool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(AUDIT_QUEUE);
        let task = tokio::spawn(flush_loop(node.clone(), rx, stop));
        (
            AuditService {
                node,
                queue: tx,
                cursors,
            },
            task,
        )
    }

    /// Queues an event to be committed soon, without waiting.
    pub fn record_later(&self, event: AuthEvent) {
        if self.queue.try_send(event).is_err() {
            self.node.metrics().audit_events_dropped.inc();
        }
    }

    /// Commits an event before returning (a failure that names no user,
    /// where the write is also what keeps timing equal to a real user's).
    pub async fn record_now(&self, event: AuthEvent) -> Result<(), ServiceError> {
        self.node.propose(RecordAuthEvents(vec![event])).await?;
        Ok(())
    }

    /// `AdminListUserAuthEvents`: newest first, of one user (by sub) or of
    /// the whole pool.
    pub async fn list(
        &self,
        pool_id: &str,
        sub: Option<&str>,
        max_results: i32,
        next_token: &str,
        consistent: bool,
    ) -> Result<(Vec<AuthEvent>, Option<String>), ServiceError> {
        let limit = super::page_limit("max_results", max_results)?;
        let parts = [pool_id, sub.unwrap_or("")];
        let scope = Scope::next_token("AdminListUserAuthEvents", &parts);
        let before = match self.cursors.resume(&scope, next_token)? {
            None => None,
            Some(bytes) => Some(u64::from_be_bytes(
                <[u8; 8]>::try_from(bytes.as_slice())
                    .map_err(|_| ServiceError::invalid("next_token: not a token this call returned"))?,
            )),
        };
        if consistent {
            self.node.read_barrier().await?;
        }
        let mut events = self.node.store().auth_events_page(pool_id, sub, before, limit + 1)?;
        let next = if events.len() > limit {
            events.truncate(limit);
            events
                .last()
                .map(|e| self.cursors.issue(&scope, &e.id.to_be_bytes()))
                .transpose()?
        } else {
            None
        };
        Ok((events, next))
    }
}

/// Checks a username given to name whose events to list.
pub fn check_username(username: &str) -> Result<(), ServiceError> {
    Ok(validate_username(username)?)
}

async fn flush_loop(node: Arc<RaftNode>, mut rx: mpsc::Receiver<AuthEvent>, mut stop: watch::Receiver<bool>) {
    loop {
        // `wait_for` (not `changed`): it answers at once when the stop was
        // already seen by an inner wait below.
        let first = tokio::select! {
            e = rx.recv() => e,
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(first) = first else {
            // Stopping: commit whatever is still queued, best effort and
            // within STOP_GRACE, so that a node without a quorum still stops
            // promptly.
            let mut rest = Vec::new();
            while let Ok(e) = rx.try_recv() {
                rest.push(e);
            }
            let flush = async {
                for chunk in rest.chunks(AUDIT_BATCH) {
                    let _ = node.propose(RecordAuthEvents(chunk.to_vec())).await;
                }
            };
            if tokio::time::timeout(STOP_GRACE, flush).await.is_err() {
                tracing::warn!("stopping: audit events still queued were not committed");
            }
            return;
        };
        // Sleep out the window, then take everything queued, rather than
        // wake for each event as it arrives: a sign-in queues one or two,
        // and each wake was a task switch beside the sign-ins themselves.
        tokio::select! {
            _ = tokio::time::sleep(FLUSH_AFTER) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        for batch in take_queued(first, &mut rx).chunks(AUDIT_BATCH) {
            if !commit_batch(&node, batch, &mut stop).await {
                break;
            }
        }
    }
}

/// `first` and what is queued behind it, at most one queue's worth, so a
/// producer as fast as this loop cannot keep it draining forever.
fn take_queued(first: AuthEvent, rx: &mut mpsc::Receiver<AuthEvent>) -> Vec<AuthEvent> {
    let mut events = vec![first];
    while events.len() <= AUDIT_QUEUE {
        match rx.try_recv() {
            Ok(e) => events.push(e),
            Err(_) => break,
        }
    }
    events
}

/// Commits one batch of events, retrying a few times so that a leaderless
/// moment does not lose it, but not past a stop (plus STOP_GRACE for an
/// attempt under way), which would hold the node's shutdown for the
/// retries' length. False when the node is stopping.
async fn commit_batch(node: &RaftNode, batch: &[AuthEvent], stop: &mut watch::Receiver<bool>) -> bool {
    let n = batch.len();
    for attempt in 0..5u32 {
        let stopped = async {
            let _ = stop.clone().wait_for(|s| *s).await;
            tokio::time::sleep(STOP_GRACE).await;
        };
        let result = tokio::select! {
            r = node.propose(RecordAuthEvents(batch.to_vec())) => r,
            _ = stopped => {
                tracing::warn!(events = n, "stopping: an audit batch was not committed");
                return false;
            }
        };
        match result {
            Ok(_) => return true,
            Err(e) => {
                tracing::warn!(error = %e, events = n, attempt, "audit batch not committed; retrying");
                if *stop.borrow() {
                    return false;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200 << attempt)) => {}
                    _ = stop.wait_for(|s| *s) => return false,
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::auth_event::AuthEventType;

    fn event(i: i64) -> AuthEvent {
        AuthEvent::draft("pool", AuthEventType::SignIn, i)
    }

    #[test]
    fn a_window_takes_everything_queued_in_order_and_no_more_than_a_queue() {
        let (tx, mut rx) = mpsc::channel(AUDIT_QUEUE);
        for i in 1..=1_199 {
            tx.try_send(event(i)).expect("room in the queue");
        }
        let taken = take_queued(event(0), &mut rx);
        let at: Vec<i64> = taken.iter().map(|e| e.at).collect();
        assert_eq!(at, (0..1_200).collect::<Vec<_>>(), "every queued event, in order");
        let sizes: Vec<usize> = taken.chunks(AUDIT_BATCH).map(<[AuthEvent]>::len).collect();
        assert_eq!(sizes, [500, 500, 200]);
        assert!(rx.try_recv().is_err(), "the queue is empty after a window");

        // More than a queue's worth waiting (here a longer channel stands
        // in for producers refilling it during the drain): one queue's
        // worth is taken, the rest waits for the next window.
        let (tx, mut rx) = mpsc::channel(AUDIT_QUEUE + 100);
        for i in 0..(AUDIT_QUEUE + 100) as i64 {
            tx.try_send(event(i)).expect("room in the channel");
        }
        let taken = take_queued(event(-1), &mut rx);
        assert_eq!(taken.len(), AUDIT_QUEUE + 1);
        let mut left = 0;
        while rx.try_recv().is_ok() {
            left += 1;
        }
        assert_eq!(left, 100);
    }
}
