//! The process backend: N `tessera serve` processes on 127.0.0.1, each
//! with its own data dir, peer traffic routed through a [`ProxyMesh`] so
//! links can be cut one direction at a time. Faults are signals (SIGKILL,
//! SIGSTOP/SIGCONT, SIGTERM) and proxy modes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::proxy::{LinkMode, ProxyMesh};
use super::Backend;
use crate::client::Client;

/// One node process.
struct ProcNode {
    api: SocketAddr,
    peer: SocketAddr,
    /// The device sync listener (UDP).
    sync: SocketAddr,
    dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    paused: bool,
}

/// A cluster of local processes.
pub struct ProcessCluster {
    bin: PathBuf,
    root: PathBuf,
    nodes: BTreeMap<u64, ProcNode>,
    mesh: ProxyMesh,
    token: String,
    /// Every node is started with it; registered with the cluster after
    /// init, with no use limit.
    join_token: crate::raft::join::JoinToken,
    next_id: u64,
    /// Node ids the proxy mesh was laid out for: the initial nodes plus
    /// room for replacements made by membership faults.
    capacity: u64,
}

/// Replacement nodes a run may add beyond the initial ones.
const SPARE_IDS: u64 = 16;

async fn free_addr() -> Result<SocketAddr> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(l.local_addr()?)
}

async fn free_udp_addr() -> Result<SocketAddr> {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    Ok(s.local_addr()?)
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -{sig} {pid} failed");
    }
    Ok(())
}

impl ProcessCluster {
    /// Lays out and starts `n` nodes under `root`, forms the cluster
    /// through the API (init on node 1, add-node for the others).
    pub async fn start(bin: &Path, root: &Path, n: u64) -> Result<Self> {
        let mut c = ProcessCluster {
            bin: bin.to_path_buf(),
            root: root.to_path_buf(),
            nodes: BTreeMap::new(),
            mesh: ProxyMesh::default(),
            token: String::new(),
            join_token: crate::raft::join::JoinToken::generate(),
            next_id: 1,
            capacity: n + SPARE_IDS,
        };
        std::fs::create_dir_all(root)?;
        for from in 1..=c.capacity {
            for to in 1..=c.capacity {
                if from != to {
                    c.mesh.add_link(from, to).await?;
                }
            }
        }
        for _ in 0..n {
            c.lay_out_node().await?;
        }
        let ids: Vec<u64> = c.nodes.keys().copied().collect();
        for id in &ids {
            c.spawn(*id)?;
        }
        let first = Client::connect_lazy(&c.url(1), None)?;
        let init = retry(Duration::from_secs(30), || async { first.init_cluster("").await }).await?;
        c.token = init.admin_token;
        // Every node was started with the join token; register it now.
        let admin = Client::connect_lazy(&c.url(1), Some(c.token.clone()))?;
        retry(Duration::from_secs(30), || async {
            admin
                .create_join_token(crate::proto::CreateJoinTokenRequest {
                    ttl_seconds: 24 * 3600,
                    max_uses: Some(0),
                    description: "chaos harness".into(),
                    token: c.join_token.reveal(),
                    ..Default::default()
                })
                .await
        })
        .await?;
        for id in ids.iter().skip(1) {
            c.join(*id).await?;
        }
        Ok(c)
    }

    /// Creates the files and proxies of a new node id; does not start it.
    async fn lay_out_node(&mut self) -> Result<u64> {
        let id = self.next_id;
        if id > self.capacity {
            bail!("no spare node ids left for another membership change");
        }
        self.next_id += 1;
        let dir = self.root.join(format!("node-{id}"));
        std::fs::create_dir_all(&dir)?;
        let api = free_addr().await?;
        let peer = free_addr().await?;
        let sync = free_udp_addr().await?;
        self.mesh.set_target(id, peer);
        let mut overrides = String::new();
        for other in (1..=self.capacity).filter(|o| *o != id) {
            if let Some(addr) = self.mesh.address(id, other) {
                overrides.push_str(&format!("\"{other}\" = \"{addr}\"\n"));
            }
        }
        let toml = format!(
            "password_hash_concurrency = 2\n[raft]\nheartbeat_ms = 100\n\
             election_timeout_min_ms = 500\nelection_timeout_max_ms = 1000\nsnapshot_every = 2000\n\
             keep_logs_after_snapshot = 500\npropose_timeout_ms = 5000\nmax_staleness_ms = {}\n\
             [raft.peer_address_overrides]\n{overrides}",
            super::staleness::MAX_STALENESS_MS,
        );
        std::fs::write(dir.join("node.toml"), toml)?;
        self.nodes.insert(
            id,
            ProcNode {
                api,
                peer,
                sync,
                config: dir.join("node.toml"),
                dir,
                child: None,
                paused: false,
            },
        );
        Ok(id)
    }

    fn spawn(&mut self, id: u64) -> Result<()> {
        let node = self.nodes.get_mut(&id).ok_or_else(|| anyhow!("no node {id}"))?;
        if node.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("node.log"))?;
        let child = std::process::Command::new(&self.bin)
            .arg("serve")
            .arg("--config")
            .arg(&node.config)
            .arg("--node-id")
            .arg(id.to_string())
            .arg("--data-dir")
            .arg(node.dir.join("data"))
            .arg("--api-addr")
            .arg(node.api.to_string())
            .arg("--peer-addr")
            .arg(node.peer.to_string())
            .arg("--sync-addr")
            .arg(node.sync.to_string())
            .env(
                "RUST_LOG",
                std::env::var("TESSERA_CHAOS_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("TESSERA_CONFIG")
            .env("TESSERA_JOIN_TOKEN", self.join_token.reveal())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting node {id}"))?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    async fn join(&self, id: u64) -> Result<()> {
        let node = &self.nodes[&id];
        let (peer, api) = (node.peer.to_string(), node.api.to_string());
        let ids: Vec<u64> = self.nodes.keys().copied().filter(|i| *i != id).collect();
        retry(Duration::from_secs(60), || {
            let (peer, api) = (peer.clone(), api.clone());
            let via = ids[0];
            async move {
                let c = Client::connect_lazy(&self.url(via), Some(self.token.clone()))?;
                c.add_node(id, &peer, &api).await.map_err(anyhow::Error::from)
            }
        })
        .await?;
        Ok(())
    }

    fn kill_child(&mut self, id: u64) {
        if let Some(n) = self.nodes.get_mut(&id) {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            n.paused = false;
        }
    }
}

/// Retries `f` until it succeeds or `within` passes.
pub async fn retry<T, E, F, Fut>(within: Duration, mut f: F) -> Result<T>
where
    E: Into<anyhow::Error>,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    let deadline = crate::clock::instant() + within;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if crate::clock::instant() >= deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tonic::async_trait]
impl Backend for ProcessCluster {
    fn token(&self) -> String {
        self.token.clone()
    }

    fn node_ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    fn url(&self, id: u64) -> String {
        self.nodes
            .get(&id)
            .map(|n| format!("http://{}", n.api))
            .unwrap_or_default()
    }

    fn sync_addr(&self, id: u64) -> Option<String> {
        self.nodes.get(&id).map(|n| n.sync.to_string())
    }

    fn is_up(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.child.is_some() && !n.paused)
    }

    async fn kill(&mut self, id: u64) -> Result<()> {
        self.kill_child(id);
        Ok(())
    }

    async fn start(&mut self, id: u64) -> Result<()> {
        self.spawn(id)
    }

    async fn pause(&mut self, id: u64) -> Result<()> {
        if let Some(n) = self.nodes.get_mut(&id) {
            if let Some(c) = &n.child {
                signal(c.id(), "STOP")?;
                n.paused = true;
            }
        }
        Ok(())
    }

    async fn resume(&mut self, id: u64) -> Result<()> {
        if let Some(n) = self.nodes.get_mut(&id) {
            if let Some(c) = &n.child {
                signal(c.id(), "CONT")?;
            }
            n.paused = false;
        }
        Ok(())
    }

    async fn partition(&mut self, a: &[u64], b: &[u64]) -> Result<()> {
        self.mesh.partition(a, b, LinkMode::Blackhole);
        Ok(())
    }

    async fn heal_network(&mut self) -> Result<()> {
        self.mesh.heal();
        Ok(())
    }

    async fn remove_and_replace(&mut self, id: u64) -> Result<u64> {
        let via = self
            .node_ids()
            .into_iter()
            .find(|i| *i != id && self.is_up(*i))
            .ok_or_else(|| anyhow!("no live node to remove {id} through"))?;
        let admin = Client::connect_lazy(&self.url(via), Some(self.token.clone()))?;
        retry(Duration::from_secs(30), || admin.remove_node(id)).await?;
        self.kill_child(id);
        self.nodes.remove(&id);
        // Every node's config already routes the spare ids through the mesh.
        let new = self.lay_out_node().await?;
        self.spawn(new)?;
        self.join(new).await?;
        Ok(new)
    }

    async fn shutdown(&mut self) {
        for id in self.node_ids() {
            self.kill_child(id);
        }
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for id in self.node_ids() {
            self.kill_child(id);
        }
    }
}
