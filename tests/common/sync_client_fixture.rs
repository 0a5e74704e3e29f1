//! Devices of guest identities on a real cluster, for the device client's
//! end-to-end tests (tests/sync.rs, tests/cli_sync.rs).
//!
//! [`SyncWorld::create`] makes an identity pool that allows guests, with a
//! role as its unauthenticated role, waits until every node has it and has
//! published its signing key into the pool's JWKS (so any node verifies
//! credentials minted by any other), and reads each node's `/sync-info`.
//! [`SyncWorld::guest`] gets a new guest identity and its credentials;
//! [`SyncWorld::device`] starts a `SyncClient` for it on chosen nodes.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use serde_json::Value;
use tessera::client::Client;
use tessera::proto::*;
use tessera::sync::client::{Credential, Event, LocalStore, SyncClient, SyncConfig, Timing, Trust};
use tokio::sync::broadcast;

use super::{http_get, poll_until, TestCluster};

/// One node's sync endpoint, from its `/sync-info`.
#[derive(Debug, Clone)]
pub struct SyncNode {
    pub api_addr: String,
    pub sync_addr: String,
    pub fingerprint: String,
}

/// An identity pool of guests on a cluster, and each node's sync endpoint.
pub struct SyncWorld {
    pub pool_id: String,
    pub nodes: BTreeMap<u64, SyncNode>,
    /// A client per node without the admin token, for the public calls.
    pub public: BTreeMap<u64, Client>,
}

/// A guest identity and its credentials.
#[derive(Debug, Clone)]
pub struct Guest {
    pub identity_id: String,
    pub session_token: String,
}

/// Timings for tests: quick retries, and a dead node noticed within 3 s.
pub fn test_timing() -> Timing {
    Timing {
        connect_timeout: Duration::from_secs(3),
        keepalive: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(3),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_secs(1),
        flush_interval: Duration::from_millis(20),
    }
}

/// `/sync-info` of the node at `api_addr`, once it answers.
pub async fn sync_node(api_addr: &str) -> Result<SyncNode> {
    let addr = api_addr.to_string();
    poll_until(
        &format!("/sync-info of {api_addr}"),
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let addr = addr.clone();
            async move {
                let r = http_get(&addr, "/sync-info").await?;
                ensure!(r.status == 200, "/sync-info: {} {}", r.status, r.body);
                let v: Value = serde_json::from_str(&r.body).context("/sync-info is not JSON")?;
                let sync_addr = v["sync_addr"].as_str().unwrap_or_default().to_string();
                let fingerprint = v["fingerprint_sha256"].as_str().unwrap_or_default().to_string();
                ensure!(!sync_addr.is_empty() && fingerprint.len() == 64, "/sync-info: {v}");
                ensure!(v["alpn"] == "tessera-sync/1", "/sync-info names ALPN {}", v["alpn"]);
                Ok(Some(SyncNode {
                    api_addr: addr.clone(),
                    sync_addr,
                    fingerprint,
                }))
            }
        },
    )
    .await
}

impl SyncWorld {
    /// An identity pool `name` allowing guests, with a guest role, on every
    /// node of `c`.
    pub async fn create(c: &TestCluster, name: &str) -> Result<SyncWorld> {
        let admin = c.client(1).await?;
        let role = format!("{name}-guests");
        admin
            .identity()
            .create_role(admin.req(CreateRoleRequest {
                role_name: role.clone(),
                description: "guests of the sync tests".into(),
                policy_document: serde_json::json!({
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": ["sync:*"], "Resource": ["*"]}]
                })
                .to_string(),
            }))
            .await
            .map_err(|s| anyhow!("CreateRole: {s}"))?;
        let pool = admin
            .identity()
            .create_identity_pool(admin.req(CreateIdentityPoolRequest {
                identity_pool_name: name.into(),
                allow_unauthenticated_identities: true,
                ..Default::default()
            }))
            .await
            .map_err(|s| anyhow!("CreateIdentityPool: {s}"))?
            .into_inner();
        let pool_id = pool.identity_pool_id;
        admin
            .identity()
            .set_identity_pool_roles(admin.req(SetIdentityPoolRolesRequest {
                identity_pool_id: pool_id.clone(),
                roles: [("unauthenticated".to_string(), format!("arn:tessera:iam:::role/{role}"))].into(),
                role_mappings: Default::default(),
            }))
            .await
            .map_err(|s| anyhow!("SetIdentityPoolRoles: {s}"))?;
        let mut nodes = BTreeMap::new();
        let mut public = BTreeMap::new();
        let ids: Vec<u64> = c.nodes.keys().copied().collect();
        for id in &ids {
            let a = c.client(*id).await?;
            // A barrier: the node has applied the pool and its roles.
            a.identity()
                .describe_identity_pool(a.req(DescribeIdentityPoolRequest {
                    identity_pool_id: pool_id.clone(),
                }))
                .await
                .map_err(|s| anyhow!("DescribeIdentityPool on node {id}: {s}"))?;
            let api = c.node(*id).api_addr.clone();
            wait_keys(&api, &pool_id, &ids).await?;
            nodes.insert(*id, sync_node(&api).await?);
            public.insert(*id, Client::connect(&c.node(*id).url(), None).await?);
        }
        Ok(SyncWorld { pool_id, nodes, public })
    }

    /// Re-reads every node's `/sync-info` (after a restart).
    pub async fn refresh_nodes(&mut self) -> Result<()> {
        for n in self.nodes.values_mut() {
            *n = sync_node(&n.api_addr).await?;
        }
        Ok(())
    }

    /// A new guest identity, through node `via`.
    pub async fn guest(&self, via: u64) -> Result<Guest> {
        let c = &self.public[&via];
        let identity_id = c
            .identity()
            .get_id(GetIdRequest {
                account_id: String::new(),
                identity_pool_id: self.pool_id.clone(),
                logins: Default::default(),
            })
            .await
            .map_err(|s| anyhow!("GetId: {s}"))?
            .into_inner()
            .identity_id;
        let creds = c
            .identity()
            .get_credentials_for_identity(GetCredentialsForIdentityRequest {
                identity_id: identity_id.clone(),
                logins: Default::default(),
                custom_role_arn: String::new(),
                duration_seconds: 0,
            })
            .await
            .map_err(|s| anyhow!("GetCredentialsForIdentity: {s}"))?
            .into_inner()
            .credentials
            .ok_or_else(|| anyhow!("no credentials"))?;
        Ok(Guest {
            identity_id,
            session_token: creds.session_token,
        })
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
            Credential::Credentials(g.session_token.clone()),
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
