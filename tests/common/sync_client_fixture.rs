//! Devices (`tessera::sync::client`) of the guest identities of
//! [`sync_fixture`](super::sync_fixture), for the device client's
//! end-to-end tests (tests/sync.rs, tests/cli_sync.rs).
//!
//! [`Devices::create`] makes the identity pool of guests
//! (`sync_fixture::SyncWorld`), waits until every node has published its
//! signing key into the pool's JWKS (so any node verifies credentials
//! minted by any other), and reads each node's `/sync-info`.
//! [`Devices::device`] starts a `SyncClient` for a guest on chosen nodes,
//! pinning every node's certificate.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use serde_json::Value;
use tessera::sync::client::{Credential, Event, LocalStore, SyncClient, SyncConfig, Timing, Trust};
use tokio::sync::broadcast;

pub use super::sync_fixture::Guest;
use super::sync_fixture::{sync_info, SyncWorld};
use super::{http_get, poll_until, TestCluster, TestNode};

/// One node's sync endpoint, from its `/sync-info`.
#[derive(Debug, Clone)]
pub struct SyncNode {
    pub sync_addr: String,
    pub fingerprint: String,
}

/// An identity pool of guests on a cluster, and each node's sync endpoint.
pub struct Devices {
    pub world: SyncWorld,
    pub pool_id: String,
    pub nodes: BTreeMap<u64, SyncNode>,
}

/// Timings for tests: quick retries; an idle timeout long enough that a
/// loaded machine's stall does not end a session.
pub fn test_timing() -> Timing {
    Timing {
        connect_timeout: Duration::from_secs(3),
        keepalive: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(10),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_secs(1),
        flush_interval: Duration::from_millis(20),
    }
}

/// [`test_timing`] with a dead (killed) node noticed within 3 s.
pub fn failover_timing() -> Timing {
    Timing {
        idle_timeout: Duration::from_secs(3),
        ..test_timing()
    }
}

/// `/sync-info` of `node`, once it answers.
pub async fn sync_node(node: &TestNode) -> Result<SyncNode> {
    poll_until(
        &format!("/sync-info of node {}", node.id),
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let v = sync_info(node).await?;
            let sync_addr = v["sync_addr"].as_str().unwrap_or_default().to_string();
            let fingerprint = v["fingerprint_sha256"].as_str().unwrap_or_default().to_string();
            ensure!(!sync_addr.is_empty() && fingerprint.len() == 64, "/sync-info: {v}");
            ensure!(v["alpn"] == "tessera-sync/1", "/sync-info names ALPN {}", v["alpn"]);
            Ok(Some(SyncNode { sync_addr, fingerprint }))
        },
    )
    .await
}

impl Devices {
    /// An identity pool `name` allowing guests, known to every node of
    /// `c`, whose JWKS on every node holds every node's key.
    pub async fn create(c: &TestCluster, name: &str) -> Result<Devices> {
        let world = SyncWorld::create(c, name).await?;
        let ids: Vec<u64> = c.nodes.keys().copied().collect();
        let mut nodes = BTreeMap::new();
        for id in &ids {
            wait_keys(&c.node(*id).api_addr, &world.pool_id, &ids).await?;
            nodes.insert(*id, sync_node(c.node(*id)).await?);
        }
        Ok(Devices {
            pool_id: world.pool_id.clone(),
            world,
            nodes,
        })
    }

    /// A new guest identity and its credentials, through node `via`.
    pub async fn guest(&self, c: &TestCluster, via: u64) -> Result<Guest> {
        self.world.guest(c, via).await
    }

    /// Sync addresses of `nodes`, in that order.
    pub fn addrs(&self, nodes: &[u64]) -> Vec<String> {
        nodes.iter().map(|n| self.nodes[n].sync_addr.clone()).collect()
    }

    /// Every node's certificate pin.
    pub fn trust(&self) -> Trust {
        let pins: Vec<&str> = self.nodes.values().map(|n| n.fingerprint.as_str()).collect();
        Trust::fingerprints(&pins).expect("/sync-info fingerprints are SHA-256 hex")
    }

    /// A client configuration for device `device` of `g`, trying `nodes`
    /// in order.
    pub fn config(&self, g: &Guest, device: &str, nodes: &[u64]) -> SyncConfig {
        SyncConfig::new(
            self.addrs(nodes),
            self.trust(),
            &self.pool_id,
            Credential::Credentials(g.token.clone()),
            device,
        )
        .with_timing(test_timing())
    }

    /// Starts device `device` of `g` on `nodes` with `store`, and waits
    /// until it is caught up. Returns it with an event receiver subscribed
    /// before it started.
    pub async fn device(
        &self,
        g: &Guest,
        device: &str,
        nodes: &[u64],
        store: LocalStore,
    ) -> Result<(SyncClient, broadcast::Receiver<Event>)> {
        self.start(self.config(g, device, nodes).with_store(store)).await
    }

    /// Starts a client from `cfg` and waits until it is caught up.
    pub async fn start(&self, cfg: SyncConfig) -> Result<(SyncClient, broadcast::Receiver<Event>)> {
        let device = cfg.device_id.clone();
        let (client, events) = SyncClient::start_with_events(cfg).await?;
        client
            .wait_caught_up(Duration::from_secs(20))
            .await
            .with_context(|| format!("device {device} catching up (stats {:?})", client.stats()))?;
        Ok((client, events))
    }
}

/// Waits until node `api`'s JWKS of `pool_id` holds a key of every node
/// in `ids`, so it verifies credentials any of them minted.
async fn wait_keys(api: &str, pool_id: &str, ids: &[u64]) -> Result<()> {
    let path = format!("/{pool_id}/.well-known/jwks.json");
    poll_until(
        &format!("every node's key in {api}{path}"),
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            let (api, path) = (api.to_string(), path.clone());
            async move {
                let r = http_get(&api, &path).await?;
                ensure!(r.status == 200, "{path}: {} {}", r.status, r.body);
                let v: Value = serde_json::from_str(&r.body)?;
                let kids: Vec<&str> = v["keys"]
                    .as_array()
                    .map(|k| k.iter().filter_map(|k| k["kid"].as_str()).collect())
                    .unwrap_or_default();
                Ok(ids
                    .iter()
                    .all(|n| kids.iter().any(|k| k.starts_with(&format!("n{n}-"))))
                    .then_some(()))
            }
        },
    )
    .await
}

/// The next change event matching `pred`, within `timeout`.
pub async fn next_change(
    events: &mut broadcast::Receiver<Event>,
    timeout: Duration,
    mut pred: impl FnMut(&tessera::sync::client::ChangeEvent) -> bool,
) -> Result<std::sync::Arc<tessera::sync::client::ChangeEvent>> {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(Event::Change(c)) if pred(&c) => return Ok(c),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => return Err(anyhow!("{n} events lagged")),
                Err(broadcast::error::RecvError::Closed) => return Err(anyhow!("the client stopped")),
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| anyhow!("no matching change within {timeout:?}"))?
}

/// Drains the events received so far.
pub fn drain(events: &mut broadcast::Receiver<Event>) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(e) = events.try_recv() {
        out.push(e);
    }
    out
}
