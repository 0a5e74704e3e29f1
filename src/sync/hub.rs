//! The node's change hub: the state machine publishes each applied sync
//! change here, after its batch is written, and every device session
//! subscribed to that identity receives it.
//!
//! Publishing never blocks and never fails: each subscriber has a bounded
//! queue (events and bytes). A subscriber whose queue is full is marked
//! *overflowed* and its queue dropped; the session then tells its device
//! (`SyncResync`) and catches up from the store, which holds every change
//! that was published (publishing happens after the write). So one slow
//! device costs at most its own queue bound, never apply's time or the
//! other devices' latency.
//!
//! The hub knows nothing of QUIC or protobuf; the state machine owns one
//! (`raft::RaftNode::hub`), and `sync::server` sessions subscribe to it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::Notify;

use crate::model::sync::SyncEvent;

/// Bounds of one subscriber's queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueBounds {
    /// Most events queued.
    pub max_events: usize,
    /// Most bytes of changes queued (changes are shared, so this bounds
    /// what one slow subscriber keeps alive).
    pub max_bytes: u64,
}

impl Default for QueueBounds {
    fn default() -> Self {
        QueueBounds {
            max_events: 256,
            max_bytes: 4 << 20,
        }
    }
}

/// What a subscriber takes from its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The next event, in apply order.
    Event(SyncEvent),
    /// Events were dropped (the queue overflowed, or the node installed a
    /// snapshot): catch up from the store, then go on taking events and
    /// skip those already read.
    Overflowed,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<SyncEvent>,
    bytes: u64,
    overflowed: bool,
    closed: bool,
}

struct Slot {
    id: u64,
    queue: Mutex<Queue>,
    notify: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a hub lock leaves plain data behind; carry on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn event_bytes(e: &SyncEvent) -> u64 {
    match e {
        SyncEvent::Change(c) => c.bytes(),
        SyncEvent::IdentityGone { .. } => 64,
    }
}

/// Subscribers by identity.
pub struct ChangeHub {
    subscribers: Mutex<BTreeMap<String, Vec<Arc<Slot>>>>,
    next_id: AtomicU64,
    /// The queue bounds; atomics so that the node can apply its
    /// configuration after the state machine (which owns the hub) started.
    max_events: AtomicU64,
    max_bytes: AtomicU64,
    overflows: AtomicU64,
}

impl Default for ChangeHub {
    fn default() -> Self {
        Self::new(QueueBounds::default())
    }
}

impl ChangeHub {
    /// A hub whose subscribers queue at most `bounds`.
    pub fn new(bounds: QueueBounds) -> Self {
        ChangeHub {
            subscribers: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            max_events: AtomicU64::new(bounds.max_events as u64),
            max_bytes: AtomicU64::new(bounds.max_bytes),
            overflows: AtomicU64::new(0),
        }
    }

    /// Applies new queue bounds to every queue from now on (the node's
    /// `[sync]` configuration).
    pub fn set_bounds(&self, bounds: QueueBounds) {
        self.max_events.store(bounds.max_events as u64, Ordering::Relaxed);
        self.max_bytes.store(bounds.max_bytes, Ordering::Relaxed);
    }

    /// The queue bounds in force.
    pub fn bounds(&self) -> QueueBounds {
        QueueBounds {
            max_events: usize::try_from(self.max_events.load(Ordering::Relaxed)).unwrap_or(usize::MAX),
            max_bytes: self.max_bytes.load(Ordering::Relaxed),
        }
    }

    /// Subscribes to the events of `identity_id`. Events published from now
    /// on are queued; dropping the subscription unsubscribes.
    pub fn subscribe(self: &Arc<Self>, identity_id: &str) -> Subscription {
        let slot = Arc::new(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
        });
        lock(&self.subscribers)
            .entry(identity_id.to_string())
            .or_default()
            .push(slot.clone());
        Subscription {
            hub: Arc::downgrade(self),
            identity_id: identity_id.to_string(),
            slot,
        }
    }

    /// Hands `event` to every subscriber of its identity; never waits.
    pub fn publish(&self, event: SyncEvent) {
        let identity = match &event {
            SyncEvent::Change(c) => c.identity_id.as_str(),
            SyncEvent::IdentityGone { identity_id, .. } => identity_id.as_str(),
        };
        let slots: Vec<Arc<Slot>> = match lock(&self.subscribers).get(identity) {
            Some(v) => v.clone(),
            None => return,
        };
        let size = event_bytes(&event);
        let bounds = self.bounds();
        for slot in slots {
            {
                let mut q = lock(&slot.queue);
                if q.closed || q.overflowed {
                    continue;
                }
                if q.events.len() >= bounds.max_events || q.bytes + size > bounds.max_bytes {
                    q.events.clear();
                    q.bytes = 0;
                    q.overflowed = true;
                    self.overflows.fetch_add(1, Ordering::Relaxed);
                } else {
                    q.events.push_back(event.clone());
                    q.bytes += size;
                }
            }
            slot.notify.notify_one();
        }
    }

    /// Tells every subscriber to catch up from the store: the node's state
    /// was replaced wholesale (a snapshot was installed), so the events
    /// in between were never published one by one.
    pub fn overflow_all(&self) {
        let all: Vec<Arc<Slot>> = lock(&self.subscribers).values().flatten().cloned().collect();
        for slot in all {
            {
                let mut q = lock(&slot.queue);
                q.events.clear();
                q.bytes = 0;
                q.overflowed = true;
            }
            slot.notify.notify_one();
        }
    }

    /// Subscriptions of `identity_id` now.
    pub fn subscribers_of(&self, identity_id: &str) -> usize {
        lock(&self.subscribers).get(identity_id).map_or(0, Vec::len)
    }

    /// Subscriptions in total.
    pub fn subscriber_count(&self) -> usize {
        lock(&self.subscribers).values().map(Vec::len).sum()
    }

    /// How many times a queue overflowed since start.
    pub fn overflow_count(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }

    fn remove(&self, identity_id: &str, id: u64) {
        let mut map = lock(&self.subscribers);
        if let Some(v) = map.get_mut(identity_id) {
            v.retain(|s| s.id != id);
            if v.is_empty() {
                map.remove(identity_id);
            }
        }
    }
}

/// One session's subscription to an identity's events.
pub struct Subscription {
    hub: Weak<ChangeHub>,
    identity_id: String,
    slot: Arc<Slot>,
}

impl Subscription {
    /// The next delivery; waits until there is one.
    pub async fn recv(&self) -> Delivery {
        loop {
            if let Some(d) = self.try_recv() {
                return d;
            }
            self.slot.notify.notified().await;
        }
    }

    /// The next delivery, if one is ready. An overflow is reported once,
    /// and clears the mark: events after it queue again.
    pub fn try_recv(&self) -> Option<Delivery> {
        let mut q = lock(&self.slot.queue);
        if q.overflowed {
            q.overflowed = false;
            return Some(Delivery::Overflowed);
        }
        let e = q.events.pop_front()?;
        q.bytes = q.bytes.saturating_sub(event_bytes(&e));
        Some(Delivery::Event(e))
    }

    /// Whether events were dropped since the last delivery; clears the
    /// mark and leaves queued events where they are. For a session that
    /// was reading from the store meanwhile and only needs to know whether
    /// it must read again.
    pub fn take_overflow(&self) -> bool {
        std::mem::take(&mut lock(&self.slot.queue).overflowed)
    }

    /// The identity subscribed to.
    pub fn identity_id(&self) -> &str {
        &self.identity_id
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        lock(&self.slot.queue).closed = true;
        if let Some(hub) = self.hub.upgrade() {
            hub.remove(&self.identity_id, self.slot.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sync::{Change, ChangeKind};

    fn change(identity: &str, seq: u64) -> SyncEvent {
        SyncEvent::Change(Arc::new(Change {
            identity_pool_id: "local:p".into(),
            identity_id: identity.into(),
            epoch: 1,
            seq,
            dataset: "d".into(),
            kind: ChangeKind::Update,
            dataset_sync_count: seq,
            records: vec![],
            device_id: "dev".into(),
            at: 0,
        }))
    }

    fn seq(d: Delivery) -> u64 {
        match d {
            Delivery::Event(SyncEvent::Change(c)) => c.seq,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn events_reach_only_their_identity_in_order() {
        let hub = Arc::new(ChangeHub::default());
        let a = hub.subscribe("a");
        let b = hub.subscribe("b");
        hub.publish(change("a", 1));
        hub.publish(change("a", 2));
        assert_eq!(seq(a.recv().await), 1);
        assert_eq!(seq(a.recv().await), 2);
        assert!(b.try_recv().is_none());
        drop(a);
        assert_eq!(hub.subscribers_of("a"), 0);
        assert_eq!(hub.subscriber_count(), 1);
    }

    #[test]
    fn a_full_queue_overflows_instead_of_growing_or_blocking() {
        let hub = Arc::new(ChangeHub::new(QueueBounds {
            max_events: 4,
            max_bytes: 1 << 20,
        }));
        let slow = hub.subscribe("a");
        let fast = hub.subscribe("a");
        for s in 1..=10 {
            hub.publish(change("a", s));
            if let Some(d) = fast.try_recv() {
                assert_eq!(seq(d), s);
            }
        }
        assert_eq!(slow.try_recv(), Some(Delivery::Overflowed));
        // Only what came after the overflow was queued: nothing here.
        assert!(slow.try_recv().is_none());
        hub.publish(change("a", 11));
        assert_eq!(seq(slow.try_recv().unwrap()), 11);
        assert_eq!(hub.overflow_count(), 1);
    }
}
