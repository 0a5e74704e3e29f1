//! The docker backend: the Docker Compose cluster of `cluster/`, built from
//! this binary and formed by `cluster/up.sh`. Faults are Docker's own:
//! `docker kill` and `docker start`, `docker pause`/`unpause`, and
//! `docker network disconnect`/`connect`.
//!
//! A partition disconnects every node of the smaller side from the cluster
//! network, so each of them is cut off from all others (Docker has no
//! per-link filter without extra images); a one-node side, the common case,
//! is exact. Membership changes are not supported here: compose services
//! are fixed, and node ids may never be reused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::Backend;

/// A compose project under test.
pub struct DockerCluster {
    project: String,
    image: String,
    compose_dir: PathBuf,
    state: PathBuf,
    ports: Vec<u16>,
    /// Host UDP ports published for each node's sync listener (7702).
    sync_ports: Vec<u16>,
    token: String,
    network: String,
    paused: std::collections::BTreeSet<u64>,
    stopped: std::collections::BTreeSet<u64>,
    disconnected: Vec<u64>,
    five: bool,
}

async fn run(cmd: &mut tokio::process::Command, what: &str, timeout: Duration) -> Result<String> {
    cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| anyhow!("{what}: timed out after {timeout:?}"))?
        .with_context(|| format!("{what}: could not run"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn docker(args: &[&str]) -> Result<String> {
    let what = format!("docker {}", args.join(" "));
    run(
        tokio::process::Command::new("docker").args(args),
        &what,
        Duration::from_secs(60),
    )
    .await
}

impl DockerCluster {
    /// Builds an image from `bin`, brings up `nodes` (3 or 5) nodes with
    /// `cluster/up.sh` and returns once the cluster is formed.
    pub async fn start(bin: &Path, compose_dir: &Path, state: &Path, nodes: u64) -> Result<Self> {
        if nodes != 3 && nodes != 5 {
            bail!("the docker backend runs 3 or 5 nodes (cluster/docker-compose.yml, docker-compose.5.yml)");
        }
        docker(&["info", "--format", "{{.ServerVersion}}"])
            .await
            .context("the docker backend needs a reachable Docker engine")?;
        let id = format!("{}-{}", std::process::id(), crate::clock::now_millis() % 1_000_000);
        let project = format!("tessera-chaos-{id}");
        let image = format!("tessera-chaos:{id}");
        std::fs::create_dir_all(state)?;
        let build = compose_dir.join("build-image.sh");
        run(
            tokio::process::Command::new("bash").arg(&build).arg(bin).arg(&image),
            "cluster/build-image.sh",
            Duration::from_secs(300),
        )
        .await?;
        let mut ports = Vec::new();
        let mut sync_ports = Vec::new();
        for _ in 0..nodes {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            ports.push(l.local_addr()?.port());
            let u = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
            sync_ports.push(u.local_addr()?.port());
        }
        let mut c = DockerCluster {
            project,
            image,
            compose_dir: compose_dir.to_path_buf(),
            state: state.to_path_buf(),
            ports,
            sync_ports,
            token: String::new(),
            network: String::new(),
            paused: Default::default(),
            stopped: Default::default(),
            disconnected: Vec::new(),
            five: nodes == 5,
        };
        let mut up = tokio::process::Command::new("bash");
        up.arg(compose_dir.join("up.sh"));
        if c.five {
            up.arg("--five");
        }
        c.env(&mut up);
        if let Err(e) = run(&mut up, "cluster/up.sh", Duration::from_secs(300)).await {
            c.down().await;
            return Err(e);
        }
        c.token = std::fs::read_to_string(state.join(".admin-token"))
            .context("reading the admin token written by up.sh")?
            .trim()
            .to_string();
        c.network = docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", c.project),
        ])
        .await?
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
        Ok(c)
    }

    fn env(&self, cmd: &mut tokio::process::Command) {
        cmd.env("COMPOSE_PROJECT_NAME", &self.project)
            .env("TESSERA_IMAGE", &self.image)
            .env("TESSERA_CLUSTER_STATE", &self.state)
            .env("TESSERA_RESTART_POLICY", "no")
            .env_remove("TESSERA_ADMIN_TOKEN");
        for (i, p) in self.ports.iter().enumerate() {
            cmd.env(format!("TESSERA_NODE{}_PORT", i + 1), p.to_string());
        }
        for (i, p) in self.sync_ports.iter().enumerate() {
            cmd.env(format!("TESSERA_NODE{}_SYNC_PORT", i + 1), p.to_string());
        }
    }

    async fn container(&self, id: u64) -> Result<String> {
        let out = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.service=node{id}"),
        ])
        .await?;
        out.lines()
            .next()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no container for node{id}"))
    }

    async fn down(&self) {
        let mut cmd = tokio::process::Command::new("docker-compose");
        if docker(&["compose", "version"]).await.is_ok() {
            cmd = tokio::process::Command::new("docker");
            cmd.arg("compose");
        }
        cmd.arg("-f").arg(self.compose_dir.join("docker-compose.yml"));
        if self.five {
            cmd.arg("-f").arg(self.compose_dir.join("docker-compose.5.yml"));
        }
        cmd.args(["down", "-v", "--remove-orphans"]);
        self.env(&mut cmd);
        if let Err(e) = run(&mut cmd, "compose down", Duration::from_secs(120)).await {
            tracing::warn!(error = %e, "tearing down the compose project");
        }
        let _ = docker(&["image", "rm", "-f", &self.image]).await;
    }
}

#[tonic::async_trait]
impl Backend for DockerCluster {
    fn token(&self) -> String {
        self.token.clone()
    }

    fn node_ids(&self) -> Vec<u64> {
        (1..=self.ports.len() as u64).collect()
    }

    fn url(&self, id: u64) -> String {
        self.ports
            .get((id as usize).wrapping_sub(1))
            .map(|p| format!("http://127.0.0.1:{p}"))
            .unwrap_or_default()
    }

    fn sync_addr(&self, id: u64) -> Option<String> {
        self.sync_ports
            .get((id as usize).wrapping_sub(1))
            .map(|p| format!("127.0.0.1:{p}"))
    }

    fn is_up(&self, id: u64) -> bool {
        !self.paused.contains(&id) && !self.stopped.contains(&id)
    }

    async fn kill(&mut self, id: u64) -> Result<()> {
        docker(&["kill", &self.container(id).await?]).await?;
        self.stopped.insert(id);
        Ok(())
    }

    async fn start(&mut self, id: u64) -> Result<()> {
        docker(&["start", &self.container(id).await?]).await?;
        self.stopped.remove(&id);
        Ok(())
    }

    async fn pause(&mut self, id: u64) -> Result<()> {
        docker(&["pause", &self.container(id).await?]).await?;
        self.paused.insert(id);
        Ok(())
    }

    async fn resume(&mut self, id: u64) -> Result<()> {
        if self.paused.remove(&id) {
            docker(&["unpause", &self.container(id).await?]).await?;
        }
        Ok(())
    }

    async fn partition(&mut self, a: &[u64], b: &[u64]) -> Result<()> {
        let side = if a.len() <= b.len() { a } else { b };
        for id in side {
            docker(&["network", "disconnect", &self.network, &self.container(*id).await?]).await?;
            self.disconnected.push(*id);
        }
        Ok(())
    }

    async fn heal_network(&mut self) -> Result<()> {
        for id in std::mem::take(&mut self.disconnected) {
            let alias = format!("node{id}");
            docker(&[
                "network",
                "connect",
                "--alias",
                &alias,
                &self.network,
                &self.container(id).await?,
            ])
            .await?;
        }
        Ok(())
    }

    async fn remove_and_replace(&mut self, _id: u64) -> Result<u64> {
        bail!("membership faults are not supported by the docker backend (compose services are fixed)")
    }

    async fn shutdown(&mut self) {
        self.down().await;
    }
}
