//! Connection limits of the sync listener, per node and per identity.
//!
//! Both count connections in flight: a node slot is taken when the QUIC
//! handshake is about to start (before any crypto), an identity slot as
//! soon as the Hello has proven the identity (before the session reads
//! the store or subscribes). Each is released by a drop guard, whatever
//! way the session ends, so a limit can neither leak nor be slipped past
//! by parallel connections.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The map holds plain counts; a panic elsewhere cannot leave it torn.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The node's connection slots and each identity's.
pub struct ConnectionLimits {
    node: Arc<Semaphore>,
    max_node: usize,
    max_per_identity: usize,
    per_identity: Mutex<BTreeMap<String, usize>>,
    open: Gauge,
}

/// A node connection slot; released on drop.
pub struct NodeSlot {
    _permit: OwnedSemaphorePermit,
    open: Gauge,
}

impl Drop for NodeSlot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// An identity connection slot; released on drop.
pub struct IdentitySlot {
    limits: Arc<ConnectionLimits>,
    identity_id: String,
}

impl Drop for IdentitySlot {
    fn drop(&mut self) {
        let mut map = lock(&self.limits.per_identity);
        if let Some(n) = map.get_mut(&self.identity_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.identity_id);
            }
        }
    }
}

impl ConnectionLimits {
    /// At most `max_node` connections on the node and `max_per_identity`
    /// sessions of one identity; `open` follows the node's count.
    pub fn new(max_node: usize, max_per_identity: usize, open: Gauge) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            node: Arc::new(Semaphore::new(max_node)),
            max_node,
            max_per_identity,
            per_identity: Mutex::new(BTreeMap::new()),
            open,
        })
    }

    /// A node slot, if one is free.
    pub fn try_node(&self) -> Option<NodeSlot> {
        let permit = self.node.clone().try_acquire_owned().ok()?;
        self.open.inc();
        Some(NodeSlot {
            _permit: permit,
            open: self.open.clone(),
        })
    }

    /// The node's bound.
    pub fn max_node(&self) -> usize {
        self.max_node
    }

    /// The per-identity bound.
    pub fn max_per_identity(&self) -> usize {
        self.max_per_identity
    }

    /// An identity slot for `identity_id`, if it has fewer sessions than
    /// its bound.
    pub fn try_identity(self: &Arc<Self>, identity_id: &str) -> Option<IdentitySlot> {
        let mut map = lock(&self.per_identity);
        let n = map.entry(identity_id.to_string()).or_insert(0);
        if *n >= self.max_per_identity {
            return None;
        }
        *n += 1;
        Some(IdentitySlot {
            limits: self.clone(),
            identity_id: identity_id.to_string(),
        })
    }

    /// Sessions of `identity_id` now.
    pub fn identity_sessions(&self, identity_id: &str) -> usize {
        lock(&self.per_identity).get(identity_id).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_in_flight_and_released_on_drop() {
        let l = ConnectionLimits::new(2, 1, Gauge::default());
        let a = l.try_node().unwrap();
        let b = l.try_node().unwrap();
        assert!(l.try_node().is_none(), "the node is full");
        assert_eq!(l.open.get(), 2);
        drop(a);
        assert_eq!(l.open.get(), 1);
        let _c = l.try_node().unwrap();
        drop(b);

        let x = l.try_identity("i1").unwrap();
        assert!(l.try_identity("i1").is_none(), "one session per identity");
        let _y = l.try_identity("i2").unwrap();
        assert_eq!(l.identity_sessions("i1"), 1);
        drop(x);
        assert_eq!(l.identity_sessions("i1"), 0);
        assert!(l.try_identity("i1").is_some());
    }
}
