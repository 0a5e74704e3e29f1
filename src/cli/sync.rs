//! `tessera sync watch|put|remove|get|list`: a device of an identity, from
//! the command line, through the device client library
//! (`tessera::sync::client`) over QUIC.
//!
//! Every command connects as one device with the identity's credentials
//! (`--credentials`, GetCredentialsForIdentity's session token) or a
//! user-pool access token (`--access-token`). Without `--sync-addr` or a
//! trust flag, the nodes' sync addresses and certificate fingerprints come
//! from `GET {endpoint}/sync-info` of the node at `--endpoint` and of every
//! node it lists.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use tessera::sync::client::{
    ChangeEvent, ChangeKind, CloseCode, Credential, Cursor, Event, LocalStore, SyncClient, SyncConfig, Trust,
};
use tokio::sync::broadcast;

use super::print;
use crate::{Global, Output};

/// How the command connects, shared by every `sync` command.
#[derive(Args, Clone)]
pub struct ConnArgs {
    /// The identity pool of the identity.
    #[arg(long, env = "TESSERA_IDENTITY_POOL_ID")]
    identity_pool_id: String,
    /// The identity's credentials: the session token of
    /// GetCredentialsForIdentity.
    #[arg(
        long,
        env = "TESSERA_SYNC_CREDENTIALS",
        hide_env_values = true,
        conflicts_with = "access_token",
        required_unless_present = "access_token"
    )]
    credentials: Option<String>,
    /// A user-pool access token of a user whose login maps to an identity of
    /// the pool.
    #[arg(long, env = "TESSERA_ACCESS_TOKEN", hide_env_values = true)]
    access_token: Option<String>,
    /// This device (1 to 256 characters), recorded as the writer of its
    /// changes.
    #[arg(long, default_value = "tessera-cli")]
    device_id: String,
    /// A node's sync address (UDP host:port); repeat for several, tried in
    /// turn. Default: from /sync-info.
    #[arg(long = "sync-addr", value_name = "ADDR")]
    sync_addrs: Vec<String>,
    /// Pin this SHA-256 of a node's certificate (hex); repeat for several.
    /// Default: from /sync-info.
    #[arg(long = "fingerprint", value_name = "HEX", conflicts_with = "ca")]
    fingerprints: Vec<String>,
    /// Trust certificates chaining to this PEM CA instead of pinning.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The TLS server name (checked with --ca).
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Keep the local copy (cursor and queued writes) in this file, so the
    /// next run resumes instead of reloading.
    #[arg(long, value_name = "FILE")]
    store: Option<PathBuf>,
    /// Seconds to wait for the node (put, remove, get, list).
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

#[derive(Subcommand)]
pub enum SyncCmd {
    /// Print changes as they arrive, one line each (or a JSON object per
    /// line with --output json), until interrupted.
    Watch {
        #[command(flatten)]
        conn: ConnArgs,
        /// Follow one dataset only.
        #[arg(long)]
        dataset: Option<String>,
        /// Exit after this many changes.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Set a record's value; returns once the cluster acknowledged it.
    Put {
        #[command(flatten)]
        conn: ConnArgs,
        dataset: String,
        key: String,
        value: String,
    },
    /// Remove a record; returns once the cluster acknowledged it.
    Remove {
        #[command(flatten)]
        conn: ConnArgs,
        dataset: String,
        key: String,
    },
    /// Print a dataset's records, or one record's value.
    Get {
        #[command(flatten)]
        conn: ConnArgs,
        dataset: String,
        key: Option<String>,
    },
    /// List the identity's datasets.
    List {
        #[command(flatten)]
        conn: ConnArgs,
    },
}

/// Runs one `tessera sync` command.
pub async fn run(g: &Global, cmd: SyncCmd) -> Result<()> {
    match cmd {
        SyncCmd::Watch { conn, dataset, count } => watch(g, conn, dataset, count).await,
        SyncCmd::Put {
            conn,
            dataset,
            key,
            value,
        } => write(g, conn, dataset, key, Some(value)).await,
        SyncCmd::Remove { conn, dataset, key } => write(g, conn, dataset, key, None).await,
        SyncCmd::Get { conn, dataset, key } => get(g, conn, dataset, key).await,
        SyncCmd::List { conn } => list(g, conn).await,
    }
}

/// A cursor for JSON output. The epoch is a random 64-bit number, beyond
/// what a JSON number holds exactly in most tools (jq, JavaScript), so it
/// is a decimal string, as protobuf's JSON mapping writes 64-bit integers.
fn cursor_json(c: Option<Cursor>) -> serde_json::Value {
    match c {
        Some(c) => json!({ "epoch": c.epoch.to_string(), "seq": c.seq }),
        None => serde_json::Value::Null,
    }
}

/// What `/sync-info` says of one node.
struct NodeInfo {
    sync_addr: String,
    fingerprint: Option<String>,
}

/// `sync_addr` and `fingerprint_sha256` of one node's `/sync-info`, and the
/// api addresses of the nodes it lists. An unspecified host (`0.0.0.0`)
/// is replaced by the host the document came from.
async fn sync_info(base: &str) -> Result<(NodeInfo, Vec<String>)> {
    let v = tessera::client::http::get_json(base, "/sync-info")
        .await
        .with_context(|| format!("fetching {base}/sync-info"))?;
    let addr = v["sync_addr"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| anyhow!("{base}/sync-info has no sync_addr: {v}"))?;
    let sync_addr = match addr.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            let host = base
                .split("://")
                .last()
                .unwrap_or(base)
                .rsplit_once(':')
                .map_or(base, |(h, _)| h);
            format!("{host}:{}", a.port())
        }
        _ => addr.to_string(),
    };
    let fingerprint = v["fingerprint_sha256"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(String::from);
    let others = v["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| n["api_addr"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Ok((NodeInfo { sync_addr, fingerprint }, others))
}

/// The client configuration from the flags, asking `/sync-info` for what
/// they leave out.
async fn config(g: &Global, c: &ConnArgs) -> Result<SyncConfig> {
    let mut addrs = c.sync_addrs.clone();
    let mut fingerprints = c.fingerprints.clone();
    let need_info = addrs.is_empty() || (fingerprints.is_empty() && c.ca.is_none());
    if need_info {
        let (first, others) = sync_info(&g.endpoint).await?;
        let mut found = vec![first];
        let here = g
            .endpoint
            .split("://")
            .last()
            .unwrap_or(&g.endpoint)
            .trim_end_matches('/');
        for api in others.iter().filter(|a| a.as_str() != here) {
            // Best effort: a node that is down is simply not in the list.
            match tokio::time::timeout(Duration::from_secs(3), sync_info(&format!("http://{api}"))).await {
                Ok(Ok((info, _))) => found.push(info),
                Ok(Err(e)) => eprintln!("note: {e:#}"),
                Err(_) => eprintln!("note: {api}/sync-info did not answer"),
            }
        }
        if addrs.is_empty() {
            let mut seen = BTreeSet::new();
            addrs = found
                .iter()
                .map(|n| n.sync_addr.clone())
                .filter(|a| seen.insert(a.clone()))
                .collect();
        }
        if fingerprints.is_empty() && c.ca.is_none() {
            fingerprints = found.iter().filter_map(|n| n.fingerprint.clone()).collect();
            if fingerprints.is_empty() {
                bail!("/sync-info gives no certificate fingerprint: pass --fingerprint or --ca");
            }
        }
    }
    let trust = match &c.ca {
        Some(path) => Trust::CaPem(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?),
        None => Trust::fingerprints(&fingerprints)?,
    };
    let credential = match (&c.credentials, &c.access_token) {
        (Some(t), _) => Credential::Credentials(t.clone()),
        (None, Some(t)) => Credential::AccessToken(t.clone()),
        (None, None) => bail!("pass --credentials or --access-token"),
    };
    let mut cfg = SyncConfig::new(addrs, trust, &c.identity_pool_id, credential, &c.device_id);
    cfg.server_name = c.server_name.clone();
    if let Some(path) = &c.store {
        cfg.store = LocalStore::File(path.clone());
    }
    Ok(cfg)
}

/// An event that ends a command: the credential refused, or the client
/// stopped for good.
fn fatal(e: &Event) -> Option<String> {
    match e {
        Event::Disconnected {
            code: Some(code @ (CloseCode::Unauthenticated | CloseCode::CredentialsExpired)),
            reason,
        } => Some(format!("the node refused the credential ({}): {reason}", code.name())),
        Event::Stopped { reason } => Some(format!("the sync client stopped: {reason}")),
        _ => None,
    }
}

/// Runs `fut` until it ends, a fatal event arrives, or `timeout` passes.
async fn or_fail<T>(
    events: &mut broadcast::Receiver<Event>,
    timeout: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, tessera::sync::client::SyncClientError>>,
) -> Result<T> {
    tokio::pin!(fut);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            r = &mut fut => return r.map_err(|e| anyhow!("{what}: {e}")),
            e = events.recv() => match e {
                Ok(e) => {
                    if let Some(reason) = fatal(&e) {
                        bail!("{what}: {reason}");
                    }
                    if let Event::Disconnected { reason, .. } = &e {
                        eprintln!("note: {reason}; retrying");
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => bail!("{what}: the sync client stopped"),
            },
            _ = &mut deadline => bail!("{what}: no answer within {timeout:?} (is a node's sync port reachable?)"),
        }
    }
}

/// Starts a client and waits until it is caught up.
async fn caught_up(c: &ConnArgs, cfg: SyncConfig) -> Result<(SyncClient, broadcast::Receiver<Event>)> {
    let client = SyncClient::start(cfg).await?;
    let mut events = client.events();
    let timeout = Duration::from_secs(c.timeout);
    or_fail(&mut events, timeout, "connecting", client.wait_caught_up(timeout)).await?;
    Ok((client, events))
}

async fn write(g: &Global, c: ConnArgs, dataset: String, key: String, value: Option<String>) -> Result<()> {
    let cfg = config(g, &c).await?.with_dataset(&dataset);
    let (client, mut events) = caught_up(&c, cfg).await?;
    let timeout = Duration::from_secs(c.timeout);
    let outcome = match &value {
        Some(v) => or_fail(&mut events, timeout, "put", client.put(&dataset, &key, v)).await?,
        None => or_fail(&mut events, timeout, "remove", client.remove(&dataset, &key)).await?,
    };
    client.shutdown().await?;
    let Some(ack) = outcome.ack() else {
        bail!("the write conflicted and was dropped");
    };
    let record = ack.records.iter().find(|r| r.key == key);
    let out = json!({
        "identity_pool_id": c.identity_pool_id,
        "dataset": dataset,
        "record": record,
        "dataset_sync_count": ack.dataset_sync_count,
        "cursor": cursor_json(Some(ack.cursor)),
    });
    print(g, &out, || {
        let sync_count = record.map_or(0, |r| r.sync_count);
        match &value {
            Some(v) => println!("{dataset}/{key} = {v} (sync count {sync_count})"),
            None => println!("{dataset}/{key} removed (sync count {sync_count})"),
        }
    })
}

async fn get(g: &Global, c: ConnArgs, dataset: String, key: Option<String>) -> Result<()> {
    let cfg = config(g, &c).await?.with_dataset(&dataset);
    let (client, _) = caught_up(&c, cfg).await?;
    let records = client.records(&dataset);
    client.shutdown().await?;
    match key {
        Some(key) => {
            let Some(r) = records.iter().find(|r| r.key == key && r.value.is_some()) else {
                bail!("{dataset} has no record {key:?}");
            };
            print(g, r, || println!("{}", r.value.as_deref().unwrap_or_default()))
        }
        None => {
            let live: Vec<_> = records.iter().filter(|r| r.value.is_some()).collect();
            let out = json!({ "dataset": dataset, "records": live });
            print(g, &out, || {
                println!("{:<32} {:<10} {:<20} VALUE", "KEY", "SYNC", "MODIFIED_BY");
                for r in &live {
                    println!(
                        "{:<32} {:<10} {:<20} {}",
                        r.key,
                        r.sync_count,
                        r.last_modified_by,
                        r.value.as_deref().unwrap_or_default()
                    );
                }
            })
        }
    }
}

async fn list(g: &Global, c: ConnArgs) -> Result<()> {
    let cfg = config(g, &c).await?;
    let (client, _) = caught_up(&c, cfg).await?;
    let datasets = client.datasets();
    let identity_id = client.identity_id();
    let cursor = client.cursor();
    client.shutdown().await?;
    let out = json!({ "identity_id": identity_id, "cursor": cursor_json(cursor), "datasets": datasets });
    print(g, &out, || {
        println!("{:<40} {:<10} {:<8} DELETED", "DATASET", "SYNC", "RECORDS");
        for d in &datasets {
            println!("{:<40} {:<10} {:<8} {}", d.name, d.sync_count, d.records, d.deleted);
        }
    })
}

/// One line for a change.
fn change_line(c: &ChangeEvent) -> String {
    let at = format!("{}:{}", c.cursor.epoch, c.cursor.seq);
    let by = if c.device_id.is_empty() {
        "server"
    } else {
        c.device_id.as_str()
    };
    match c.kind {
        ChangeKind::Update => {
            let records: Vec<String> = c
                .records
                .iter()
                .map(|r| match &r.value {
                    Some(v) => format!("{}={v}", r.key),
                    None => format!("{} removed", r.key),
                })
                .collect();
            format!("{at} {} UPDATE {} (by {by})", c.dataset, records.join(", "))
        }
        ChangeKind::DatasetDeleted => format!("{at} {} DATASET_DELETED (by {by})", c.dataset),
        ChangeKind::Dataset => format!(
            "{at} {} DATASET {} records, sync count {}",
            c.dataset,
            c.records.len(),
            c.dataset_sync_count
        ),
    }
}

fn change_json(c: &ChangeEvent) -> serde_json::Value {
    json!({
        "cursor": cursor_json(Some(c.cursor)),
        "dataset": c.dataset,
        "kind": c.kind,
        "dataset_sync_count": c.dataset_sync_count,
        "records": c.records,
        "device_id": c.device_id,
        "at": c.at,
    })
}

async fn watch(g: &Global, c: ConnArgs, dataset: Option<String>, count: Option<u64>) -> Result<()> {
    let mut cfg = config(g, &c).await?;
    cfg.dataset = dataset;
    let client = SyncClient::start(cfg).await?;
    let mut events = client.events();
    let mut seen = 0u64;
    let result = loop {
        if count.is_some_and(|n| seen >= n) {
            break Ok(());
        }
        let e = tokio::select! {
            e = events.recv() => e,
            _ = tokio::signal::ctrl_c() => break Ok(()),
        };
        let e = match e {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                eprintln!("note: {n} events were not printed (output too slow)");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break Err(anyhow!("the sync client stopped")),
        };
        if let Some(reason) = fatal(&e) {
            break Err(anyhow!(reason));
        }
        match e {
            Event::Change(ch) => {
                seen += 1;
                match g.output {
                    Output::Json => println!("{}", change_json(&ch)),
                    Output::Table => println!("{}", change_line(&ch)),
                }
            }
            Event::Connected {
                node_id,
                addr,
                identity_id,
            } => {
                eprintln!("connected to node {node_id} ({addr}) as identity {identity_id}")
            }
            Event::Disconnected { code, reason } => eprintln!(
                "disconnected{}: {reason}; reconnecting",
                code.map(|c| format!(" ({})", c.name())).unwrap_or_default()
            ),
            Event::CaughtUp { cursor } => eprintln!("caught up at {}:{}", cursor.epoch, cursor.seq),
            Event::Reloaded { cursor, reason } => {
                eprintln!("reloaded at {}:{} ({reason})", cursor.epoch, cursor.seq)
            }
            Event::Resynced { reason, .. } => eprintln!("resynced: {reason}"),
            _ => {}
        }
    };
    client.shutdown().await?;
    result
}
