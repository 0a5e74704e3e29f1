//! The sync part of a chaos run: a few identities, each with devices
//! connected to different nodes through the product's own device client
//! (`sync::client`), writing and following their identity's data while
//! the nemesis kills, pauses and partitions nodes.
//!
//! Every device writes keys of its own (`<device>-<n>`), so that every
//! acknowledged write must be in the final state with exactly its value:
//! nothing may overwrite it. Each write is recorded in the history as a
//! `sync_put` (`invoke`, then `ok`, `fail` or `info`). Each device also
//! records the cursor of every change it receives, and the reloads and
//! resyncs the server announces, for the ordering checker
//! ([`super::sync_checks`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::history::EventType;
use super::workload::{Recorder, OP_TIMEOUT};
use super::{process, Backend};
use crate::client::Client;
use crate::proto::*;
use crate::sync::client::{Credential, Event, SyncClient, SyncConfig, Timing, Trust};

/// The dataset every device writes.
pub const DATASET: &str = "chaos";
/// The role the sync identities get credentials for.
const ROLE: &str = "chaos-sync";
/// Process ids of sync devices start here, apart from the other clients.
const PROCESS_BASE: u64 = 1_000_000;

/// An identity the devices share, with its credentials.
#[derive(Debug, Clone)]
pub struct SyncIdentity {
    /// The identity.
    pub identity_id: String,
    /// Its credentials token (the Hello credential).
    pub credentials: String,
}

/// What the sync workload runs on.
#[derive(Debug, Clone)]
pub struct SyncFixture {
    /// The identity pool.
    pub identity_pool_id: String,
    /// Its identities.
    pub identities: Vec<SyncIdentity>,
}

/// What one device saw, in order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Seen {
    /// A session started on this node.
    Session(u64),
    /// A change with this sequence number.
    Change(u64),
    /// The server announced a reload; the copy restarts at this number.
    Reload(u64),
    /// The server announced a resync (it resends from the store).
    Resync,
    /// The device's event stream lagged: events were lost to the log
    /// (not to the copy); order cannot be judged past this point.
    Lagged(u64),
}

/// One device of the run.
pub struct Device {
    /// `identity index / device index`, for reports.
    pub name: String,
    /// Which identity of the fixture.
    pub identity: usize,
    /// The device's client.
    pub client: SyncClient,
    /// What it saw.
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

/// An identity pool with guests, a role for them, and `n` identities with
/// credentials good for the whole run.
pub async fn fixture(c: &Client, n: usize) -> Result<SyncFixture> {
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["sync:*"], "Resource": ["*"]}],
    })
    .to_string();
    process::retry(Duration::from_secs(30), || {
        let mut a = c.identity();
        let req = c.req(CreateRoleRequest {
            role_name: ROLE.into(),
            description: "devices of the chaos sync workload".into(),
            policy_document: policy.clone(),
        });
        async move {
            match a.create_role(req).await {
                Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(tonic::Response::new(RoleResponse::default())),
                other => other,
            }
        }
    })
    .await?;
    let pool = process::retry(Duration::from_secs(30), || {
        let mut a = c.identity();
        let req = c.req(CreateIdentityPoolRequest {
            identity_pool_name: "chaos sync".into(),
            allow_unauthenticated_identities: true,
            ..Default::default()
        });
        async move { a.create_identity_pool(req).await }
    })
    .await?
    .into_inner();
    let pool_id = pool.identity_pool_id;
    process::retry(Duration::from_secs(30), || {
        let mut a = c.identity();
        let req = c.req(SetIdentityPoolRolesRequest {
            identity_pool_id: pool_id.clone(),
            roles: [("unauthenticated".to_string(), format!("arn:tessera:iam:::role/{ROLE}"))]
                .into_iter()
                .collect(),
            role_mappings: Default::default(),
        });
        async move { a.set_identity_pool_roles(req).await }
    })
    .await?;
    let mut identities = Vec::new();
    for _ in 0..n {
        let identity_id = process::retry(Duration::from_secs(30), || {
            let mut a = c.identity();
            let req = GetIdRequest {
                account_id: String::new(),
                identity_pool_id: pool_id.clone(),
                logins: Default::default(),
            };
            async move { a.get_id(req).await }
        })
        .await?
        .into_inner()
        .identity_id;
        let creds = process::retry(Duration::from_secs(30), || {
            let mut a = c.identity();
            let req = GetCredentialsForIdentityRequest {
                identity_id: identity_id.clone(),
                logins: Default::default(),
                custom_role_arn: String::new(),
                // The longest allowed: no expiry inside a run.
                duration_seconds: 43_200,
            };
            async move { a.get_credentials_for_identity(req).await }
        })
        .await?
        .into_inner()
        .credentials
        .context("GetCredentialsForIdentity gave no credentials")?;
        identities.push(SyncIdentity {
            identity_id,
            credentials: creds.session_token,
        });
    }
    Ok(SyncFixture {
        identity_pool_id: pool_id,
        identities,
    })
}

/// Every node's sync address as this harness reaches it, and the pins of
/// their certificates, from each node's `/sync-info`.
pub async fn endpoints(backend: &dyn Backend) -> Result<(Vec<(u64, String)>, Vec<String>)> {
    let mut addrs = Vec::new();
    let mut pins = Vec::new();
    for id in backend.node_ids() {
        let addr = backend
            .sync_addr(id)
            .ok_or_else(|| anyhow!("node {id} has no reachable sync address"))?;
        let info = crate::client::http::get_json(&backend.url(id), "/sync-info")
            .await
            .map_err(|e| anyhow!("GET /sync-info of node {id}: {e}"))?;
        let pin = info
            .get("fingerprint_sha256")
            .and_then(|v| v.as_str())
            .ok_or_else(|| anyhow!("node {id}'s /sync-info has no fingerprint"))?;
        addrs.push((id, addr));
        pins.push(pin.to_string());
    }
    Ok((addrs, pins))
}

/// Starts `per_identity` devices for each identity of `fx`. Device `d` of
/// identity `i` tries the nodes starting at a different one, so the
/// devices of one identity sit on different nodes.
pub async fn start_devices(
    fx: &SyncFixture,
    addrs: &[(u64, String)],
    pins: &[String],
    per_identity: usize,
) -> Result<Vec<Device>> {
    let trust = Trust::fingerprints(pins).map_err(|e| anyhow!("{e}"))?;
    let timing = Timing {
        // Reconnect quickly: a fault lasts seconds.
        backoff_max: Duration::from_secs(2),
        ..Timing::default()
    };
    let mut devices = Vec::new();
    for (i, identity) in fx.identities.iter().enumerate() {
        for d in 0..per_identity {
            let start = (i + d) % addrs.len().max(1);
            let order: Vec<String> = addrs
                .iter()
                .cycle()
                .skip(start)
                .take(addrs.len())
                .map(|(_, a)| a.clone())
                .collect();
            let name = format!("i{i}d{d}");
            let cfg = SyncConfig::new(
                order,
                trust.clone(),
                fx.identity_pool_id.clone(),
                Credential::Credentials(identity.credentials.clone()),
                name.clone(),
            )
            .with_timing(timing);
            let (client, events) = SyncClient::start_with_events(cfg)
                .await
                .map_err(|e| anyhow!("starting device {name}: {e}"))?;
            let seen = Arc::new(Mutex::new(Vec::new()));
            tokio::spawn(follow(events, seen.clone()));
            devices.push(Device {
                name,
                identity: i,
                client,
                seen,
            });
        }
    }
    Ok(devices)
}

/// Records what a device's event stream reports, until the client stops.
async fn follow(mut events: tokio::sync::broadcast::Receiver<Event>, seen: Arc<Mutex<Vec<Seen>>>) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let item = match events.recv().await {
            Ok(Event::Connected { node_id, .. }) => Seen::Session(node_id),
            Ok(Event::Change(c)) if !c.reloading => Seen::Change(c.cursor.seq),
            Ok(Event::Reloaded { cursor, .. }) => Seen::Reload(cursor.seq),
            Ok(Event::Resynced { .. }) => Seen::Resync,
            Ok(_) => continue,
            Err(RecvError::Lagged(n)) => Seen::Lagged(n),
            Err(RecvError::Closed) => return,
        };
        if let Ok(mut v) = seen.lock() {
            v.push(item);
        }
    }
}

/// One device's writes until `stop`: a fresh key each time, recorded as
/// `sync_put` operations.
pub async fn write_loop(
    index: usize,
    device: Arc<Device>,
    fx: Arc<SyncFixture>,
    seed: u64,
    rec: Recorder,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (index as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let identity = &fx.identities[device.identity].identity_id;
    let mut process = PROCESS_BASE + index as u64;
    let mut n = 0u64;
    while !*stop.borrow() {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
        n += 1;
        let key = format!("{}-{n}", device.name);
        let value = format!("v{n}");
        let hkey = format!("{identity}/{key}");
        let node = device.client.status().node_id.unwrap_or(0);
        rec.record(process, EventType::Invoke, "sync_put", &hkey, json!(value), node, None);
        match tokio::time::timeout(OP_TIMEOUT, device.client.put(DATASET, &key, &value)).await {
            Ok(Ok(out)) if out.ack().is_some() => {
                let node = device.client.status().node_id.unwrap_or(node);
                rec.record(process, EventType::Ok, "sync_put", &hkey, json!(value), node, None);
            }
            Ok(Ok(_)) => {
                // A resolver dropped it: impossible with keys of its own,
                // so record it for the checker to see.
                rec.record(
                    process,
                    EventType::Fail,
                    "sync_put",
                    &hkey,
                    json!(value),
                    node,
                    Some("discarded by the resolver".into()),
                );
            }
            Ok(Err(e)) => {
                rec.record(
                    process,
                    EventType::Info,
                    "sync_put",
                    &hkey,
                    json!(value),
                    node,
                    Some(e.to_string()),
                );
                process += 1_000;
            }
            Err(_) => {
                // Still queued in the client: it may be written later.
                rec.record(
                    process,
                    EventType::Info,
                    "sync_put",
                    &hkey,
                    json!(value),
                    node,
                    Some("timed out; the write stays queued".into()),
                );
                process += 1_000;
            }
        }
    }
}

/// The replicated records of every identity's dataset, as each node
/// answers an admin `ListRecords`: identity -> node -> key -> value.
pub type FinalSync = BTreeMap<String, BTreeMap<u64, Result<BTreeMap<String, String>, String>>>;

/// Reads every identity's dataset on every node (admin reads are
/// consistent: each passes a read barrier).
pub async fn final_state(backend: &dyn Backend, token: &str, fx: &SyncFixture) -> Result<FinalSync> {
    let mut out = FinalSync::new();
    for id in backend.node_ids() {
        let c = Client::connect_lazy(&backend.url(id), Some(token.to_string()))?;
        for identity in &fx.identities {
            let read = read_records(&c, &fx.identity_pool_id, &identity.identity_id).await;
            out.entry(identity.identity_id.clone()).or_default().insert(id, read);
        }
    }
    Ok(out)
}

async fn read_records(c: &Client, pool: &str, identity: &str) -> Result<BTreeMap<String, String>, String> {
    let mut values = BTreeMap::new();
    let mut next = String::new();
    loop {
        let req = c.req(ListRecordsRequest {
            identity_pool_id: pool.into(),
            identity_id: identity.into(),
            dataset_name: DATASET.into(),
            last_sync_count: 0,
            next_token: next.clone(),
            max_results: 0,
            sync_session_token: String::new(),
        });
        let page = tokio::time::timeout(Duration::from_secs(10), c.sync().list_records(req))
            .await
            .map_err(|_| "ListRecords timed out".to_string())?
            .map_err(|s| format!("{}: {}", s.code(), s.message()))?
            .into_inner();
        for r in page.records {
            if let Some(v) = r.value {
                values.insert(r.key, v);
            }
        }
        if page.next_token.is_empty() {
            return Ok(values);
        }
        next = page.next_token;
    }
}

/// Waits (up to `within`) until every device has sent its queued writes
/// and holds exactly the values that `expected` gives for its identity.
/// Returns each device's final copy.
pub async fn settle(
    devices: &[Arc<Device>],
    fx: &SyncFixture,
    expected: &BTreeMap<String, BTreeMap<String, String>>,
    within: Duration,
) -> Vec<BTreeMap<String, String>> {
    let deadline = crate::clock::instant() + within;
    loop {
        let copies: Vec<BTreeMap<String, String>> = devices.iter().map(|d| d.client.values(DATASET)).collect();
        let done = devices.iter().zip(&copies).all(|(d, copy)| {
            d.client.pending() == 0 && expected.get(&fx.identities[d.identity].identity_id) == Some(copy)
        });
        if done || crate::clock::instant() >= deadline {
            return copies;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
