//! Per-link TCP proxies for the process backend. Every ordered pair of
//! nodes (a -> b) gets its own listener that forwards to b's peer port, and
//! node a is told (through `raft.peer_address_overrides`) to reach b there.
//! Each direction of each link can then be cut on its own, which is how
//! partitions and a leader's isolation are made without touching the
//! nodes.
//!
//! Modes, per direction:
//! * `Pass`: bytes flow.
//! * `Blackhole`: bytes are read and thrown away, connections stay open,
//!   so the sender sees silence and times out, like a dropped packet.
//! * `Drop`: live connections are closed and new ones refused at once.
//! * `Delay(ms)`: bytes flow after a fixed delay.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a link direction does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Forward traffic unchanged.
    Pass,
    /// Accept and discard traffic: connections stay open but carry nothing, like a silent network.
    Blackhole,
    /// Close the link's connections, and close new ones as soon as they are accepted.
    Drop,
    /// Forward each chunk read after this many milliseconds.
    Delay(u64),
}

/// One direction of one link: traffic from node `from` to node `to`.
struct Link {
    mode: watch::Sender<LinkMode>,
    listen: SocketAddr,
}

/// Where each node's peer listener is, by node id; links look their
/// destination up per connection, so links can exist before the node they
/// lead to (ids added later by membership changes).
type Targets = Arc<Mutex<BTreeMap<u64, SocketAddr>>>;

/// The proxies between every pair of nodes.
#[derive(Clone, Default)]
pub struct ProxyMesh {
    links: Arc<Mutex<BTreeMap<(u64, u64), Link>>>,
    targets: Targets,
}

impl ProxyMesh {
    /// Starts the proxy for traffic from `from` to `to` and returns the
    /// address `from` must use to reach `to`.
    pub async fn add_link(&self, from: u64, to: u64) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let listen = listener.local_addr()?;
        let (tx, rx) = watch::channel(LinkMode::Pass);
        tokio::spawn(accept_loop(listener, to, self.targets.clone(), rx));
        self.lock().insert((from, to), Link { mode: tx, listen });
        Ok(listen)
    }

    /// Records where node `id`'s peer listener is.
    pub fn set_target(&self, id: u64, addr: SocketAddr) {
        if let Ok(mut t) = self.targets.lock() {
            t.insert(id, addr);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(u64, u64), Link>> {
        match self.links.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The listen address of a link, if it exists.
    pub fn address(&self, from: u64, to: u64) -> Option<SocketAddr> {
        self.lock().get(&(from, to)).map(|l| l.listen)
    }

    /// Sets the mode of one direction.
    pub fn set(&self, from: u64, to: u64, mode: LinkMode) {
        if let Some(l) = self.lock().get(&(from, to)) {
            let _ = l.mode.send(mode);
        }
    }

    /// Cuts both directions between every node of `a` and every node of `b`.
    pub fn partition(&self, a: &[u64], b: &[u64], mode: LinkMode) {
        for x in a {
            for y in b {
                self.set(*x, *y, mode);
                self.set(*y, *x, mode);
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        for l in self.lock().values() {
            let _ = l.mode.send(LinkMode::Pass);
        }
    }
}

async fn accept_loop(listener: TcpListener, to: u64, targets: Targets, mode: watch::Receiver<LinkMode>) {
    while let Ok((inbound, _)) = listener.accept().await {
        let target = targets.lock().ok().and_then(|t| t.get(&to).copied());
        let Some(target) = target.filter(|_| *mode.borrow() != LinkMode::Drop) else {
            drop(inbound);
            continue;
        };
        let mode = mode.clone();
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            // Both directions of one TCP connection follow the link's mode:
            // a cut link carries neither requests nor their replies.
            tokio::select! {
                _ = pump(ri, wo, mode.clone()) => {}
                _ = pump(ro, wi, mode) => {}
            }
        });
    }
}

/// Copies `from` to `to` according to the mode; returns when either side
/// closes or the link drops.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<LinkMode>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let current = *mode.borrow();
        if current == LinkMode::Drop {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        let now = *mode.borrow();
        match now {
            LinkMode::Pass => {}
            LinkMode::Blackhole => continue,
            LinkMode::Drop => return,
            LinkMode::Delay(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, within: Duration) -> bool {
        if s.write_all(b"ping").await.is_err() {
            return false;
        }
        let mut b = [0u8; 4];
        matches!(tokio::time::timeout(within, s.read_exact(&mut b)).await, Ok(Ok(_)))
    }

    #[tokio::test]
    async fn links_pass_blackhole_drop_and_heal() {
        let target = echo_server().await;
        let mesh = ProxyMesh::default();
        let addr = mesh.add_link(1, 2).await.unwrap();
        mesh.set_target(2, target);
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert!(round_trip(&mut s, Duration::from_secs(2)).await, "pass");
        mesh.set(1, 2, LinkMode::Blackhole);
        assert!(!round_trip(&mut s, Duration::from_millis(200)).await, "blackholed");
        mesh.heal();
        // The bytes swallowed while blackholed are gone; new ones flow.
        let mut fresh = TcpStream::connect(addr).await.unwrap();
        assert!(round_trip(&mut fresh, Duration::from_secs(2)).await, "healed");
        mesh.partition(&[1], &[2], LinkMode::Drop);
        let mut b = [0u8; 4];
        let closed = tokio::time::timeout(Duration::from_secs(2), fresh.read(&mut b)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "dropped links close: {closed:?}"
        );
        mesh.heal();
        mesh.set(1, 2, LinkMode::Delay(150));
        let mut delayed = TcpStream::connect(addr).await.unwrap();
        let start = crate::clock::instant();
        assert!(round_trip(&mut delayed, Duration::from_secs(2)).await);
        assert!(start.elapsed() >= Duration::from_millis(150), "delayed");
    }
}
