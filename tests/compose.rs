//! The Docker Compose deployment, end to end: builds the image from the
//! binary under test with `cluster/build-image.sh`, brings up
//! `cluster/docker-compose.yml` with `cluster/up.sh` (which forms the cluster
//! through the CLI inside the containers), then drives the three nodes from
//! the host through their published api ports with the Rust client.
//!
//! Every run uses its own compose project (`tessera-test-<pid>`), image tag,
//! state dir and free host ports, so runs do not clash with each other or
//! with an operator's cluster; `docker compose down -v` and `docker rmi` run
//! whatever happens. Without a reachable Docker engine the test prints why
//! and passes.
//!
//! Run with:
//! `cargo test --features failpoints --test compose -- --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::{free_ports, http_get, pin_binary, poll_until};
use tessera::client::Client;
use tessera::proto::{CreateUserPoolClientRequest, DescribeUserPoolClientRequest};

/// `docker info` must answer within this for Docker to count as reachable.
const DOCKER_INFO_TIMEOUT: Duration = Duration::from_secs(20);
/// `cluster/build-image.sh` (strip, then a `FROM scratch` build).
const BUILD_TIMEOUT: Duration = Duration::from_secs(120);
/// `cluster/up.sh`: start the containers and form the cluster.
const UP_TIMEOUT: Duration = Duration::from_secs(120);
/// Seconds `up.sh` waits for each of its steps.
const UP_STEP_TIMEOUT_SECS: &str = "60";
/// `docker compose down -v` and `docker rmi`.
const DOWN_TIMEOUT: Duration = Duration::from_secs(90);
/// Polls of the cluster from the host.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

const NODES: usize = 3;

/// Runs `cmd` with its output captured, in its own process group; kills the
/// whole group (a script and the docker commands it started) after `timeout`.
fn run(mut cmd: Command, timeout: Duration) -> Result<Output> {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = cmd.spawn().with_context(|| format!("spawning {shown}"))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.with_context(|| format!("waiting for {shown}")),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(format!("-{pid}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            bail!("{shown} ran longer than {timeout:?}; killed")
        }
    }
}

/// Like [`run`], and requires a zero exit status.
fn run_ok(cmd: Command, timeout: Duration) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let out = run(cmd, timeout)?;
    ensure!(
        out.status.success(),
        "{shown} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// Why Docker cannot be used here, if it cannot.
fn docker_unreachable() -> Option<String> {
    let mut cmd = Command::new("docker");
    cmd.args(["info", "--format", "{{.ServerVersion}}"]);
    match run(cmd, DOCKER_INFO_TIMEOUT) {
        Err(e) => Some(format!("`docker info` did not run: {e:#}")),
        Ok(out) if !out.status.success() => Some(format!(
            "`docker info` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(out) => {
            println!(
                "Docker engine {} is reachable",
                String::from_utf8_lossy(&out.stdout).trim()
            );
            None
        }
    }
}

/// `docker compose` (the v2 plugin) if present, else `docker-compose`.
fn compose_program() -> Result<Vec<String>> {
    let works = |program: &str, args: &[&str]| {
        let mut cmd = Command::new(program);
        cmd.args(args);
        matches!(run(cmd, Duration::from_secs(30)), Ok(o) if o.status.success())
    };
    if works("docker", &["compose", "version"]) {
        Ok(vec!["docker".into(), "compose".into()])
    } else if works("docker-compose", &["version"]) {
        Ok(vec!["docker-compose".into()])
    } else {
        bail!("Docker is reachable but neither `docker compose` nor `docker-compose` is installed")
    }
}

/// One compose deployment of the cluster. Dropping it runs `down -v` (and
/// prints the nodes' logs first if the test is failing) and removes the
/// image.
struct Deployment {
    repo: PathBuf,
    project: String,
    image: String,
    compose: Vec<String>,
    ports: Vec<u16>,
    /// `TESSERA_CLUSTER_STATE`: the sealing key and the admin token.
    state: tempfile::TempDir,
    image_built: bool,
}

impl Deployment {
    fn new() -> Result<Self> {
        let unique = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        Ok(Deployment {
            repo: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            project: format!("tessera-test-{unique}"),
            image: format!("tessera-test:{unique}"),
            compose: compose_program()?,
            ports: free_ports(NODES)?,
            state: tempfile::Builder::new().prefix("tessera-compose-").tempdir()?,
            image_built: false,
        })
    }

    fn script(&self, name: &str) -> PathBuf {
        self.repo.join("cluster").join(name)
    }

    /// The environment `up.sh` and compose read; nothing inherited from an
    /// operator's shell can point them elsewhere.
    fn env(&self, cmd: &mut Command) {
        for var in [
            "TESSERA_ADMIN_TOKEN",
            "TESSERA_ENDPOINT",
            "TESSERA_PUBLIC_URL",
            "TESSERA_BIND",
            "TESSERA_RUST_LOG",
            "COMPOSE_FILE",
            "COMPOSE_PROFILES",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("COMPOSE_PROJECT_NAME", &self.project)
            .env("TESSERA_IMAGE", &self.image)
            .env("TESSERA_CLUSTER_STATE", self.state.path())
            .env("TESSERA_SEALING_KEY", self.state.path().join("secrets/sealing.key"))
            .env("TESSERA_RESTART_POLICY", "no")
            .env("TESSERA_UP_TIMEOUT", UP_STEP_TIMEOUT_SECS);
        for (i, port) in self.ports.iter().enumerate() {
            cmd.env(format!("TESSERA_NODE{}_PORT", i + 1), port.to_string());
        }
    }

    fn compose_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(self.repo.join("cluster/docker-compose.yml"))
            .args(args);
        self.env(&mut cmd);
        cmd
    }

    fn build_image(&mut self, bin: &Path) -> Result<Duration> {
        let start = Instant::now();
        let mut cmd = Command::new(self.script("build-image.sh"));
        cmd.arg(bin).arg(&self.image);
        self.image_built = true;
        let out = run_ok(cmd, BUILD_TIMEOUT)?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        Ok(start.elapsed())
    }

    fn up(&self) -> Result<(Duration, String)> {
        let start = Instant::now();
        let mut cmd = Command::new(self.script("up.sh"));
        self.env(&mut cmd);
        let out = run_ok(cmd, UP_TIMEOUT)?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok((start.elapsed(), stdout))
    }

    fn url(&self, node: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[node - 1])
    }

    fn addr(&self, node: usize) -> String {
        format!("127.0.0.1:{}", self.ports[node - 1])
    }

    fn token(&self) -> Result<String> {
        let path = self.state.path().join(".admin-token");
        let mode = std::fs::metadata(&path)
            .with_context(|| format!("up.sh wrote no {}", path.display()))?
            .permissions()
            .mode();
        ensure!(
            mode & 0o777 == 0o600,
            "{} has mode {:o}, not 0600",
            path.display(),
            mode & 0o777
        );
        let token = std::fs::read_to_string(&path)?.trim().to_string();
        ensure!(!token.is_empty(), "{} is empty", path.display());
        Ok(token)
    }

    fn dump_logs(&self) {
        match run(self.compose_cmd(&["logs", "--no-color", "--tail=60"]), DOWN_TIMEOUT) {
            Ok(out) => eprintln!(
                "----- compose logs -----\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("compose logs: {e:#}"),
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        let start = Instant::now();
        if let Err(e) = run_ok(
            self.compose_cmd(&["down", "-v", "--remove-orphans", "--timeout", "10"]),
            DOWN_TIMEOUT,
        ) {
            eprintln!("cleanup: compose down -v: {e:#}");
        }
        if self.image_built {
            let mut rmi = Command::new("docker");
            rmi.args(["rmi", "-f", &self.image]);
            if let Err(e) = run_ok(rmi, DOWN_TIMEOUT) {
                eprintln!("cleanup: docker rmi {}: {e:#}", self.image);
            }
        }
        println!("cleanup (down -v, rmi) took {:?}", start.elapsed());
    }
}

fn status_err(what: &str) -> impl FnOnce(tonic::Status) -> anyhow::Error + '_ {
    move |s| anyhow!("{what}: {:?}: {}", s.code(), s.message())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_cluster_forms_and_replicates() {
    let started = Instant::now();
    if let Some(why) = docker_unreachable() {
        println!("SKIPPED compose_cluster_forms_and_replicates: no Docker engine: {why}");
        return;
    }
    let pin_dir = tempfile::tempdir().expect("a temp dir");
    let bin = pin_binary(pin_dir.path()).expect("pinning the tessera binary");
    let mut d = Deployment::new().expect("a compose deployment");
    println!("project {}, image {}, api ports {:?}", d.project, d.image, d.ports);
    if let Err(e) = body(&mut d, &bin).await {
        panic!("{e:?}");
    }
    drop(d);
    println!("compose_cluster_forms_and_replicates took {:?}", started.elapsed());
}

async fn body(d: &mut Deployment, bin: &Path) -> Result<()> {
    let took = d.build_image(bin)?;
    println!("image built in {took:?}");

    let (took, stdout) = d.up()?;
    println!("up.sh formed the cluster in {took:?}:\n{stdout}");
    let token = d.token()?;
    let key = std::fs::read_to_string(d.state.path().join("secrets/sealing.key"))?;
    ensure!(
        key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "the sealing key is not 64 hex chars: {} chars",
        key.len()
    );

    // Three voters and a leader, as every node sees it from the host.
    let mut clients = Vec::new();
    for node in 1..=NODES {
        clients.push(Client::connect(&d.url(node), Some(token.clone())).await?);
    }
    for (i, client) in clients.iter().enumerate() {
        let node = i + 1;
        let view = poll_until(
            &format!("node{node} to report 3 voters and a leader"),
            WAIT_TIMEOUT,
            Duration::from_millis(200),
            || {
                let client = client.clone();
                async move {
                    let r = client
                        .describe_cluster()
                        .await
                        .map_err(status_err("describe_cluster"))?;
                    let voters = r.members.iter().filter(|m| m.role == "voter").count();
                    if voters == NODES && r.leader_id.is_some() {
                        Ok(Some(r))
                    } else {
                        Err(anyhow!("{voters} voters, leader {:?}", r.leader_id))
                    }
                }
            },
        )
        .await?;
        let mut ids: Vec<u64> = view.members.iter().map(|m| m.node_id).collect();
        ids.sort_unstable();
        ensure!(ids == [1, 2, 3], "node{node} reports members {ids:?}");
        for m in &view.members {
            ensure!(
                m.api_addr == format!("node{}:7700", m.node_id) && m.peer_addr == format!("node{}:7701", m.node_id),
                "member {} advertises {} / {}, not its compose service name",
                m.node_id,
                m.api_addr,
                m.peer_addr
            );
        }
        ensure!(
            view.public_url == format!("http://localhost:{}", d.ports[0]),
            "public url is {:?}",
            view.public_url
        );
    }
    let cluster_id = clients[0]
        .describe_cluster()
        .await
        .map_err(status_err("describe_cluster"))?
        .cluster_id;
    println!("cluster {cluster_id}: 3 voters and a leader");

    // The published HTTP endpoints.
    for node in 1..=NODES {
        let addr = d.addr(node);
        poll_until(
            &format!("node{node} /readyz"),
            WAIT_TIMEOUT,
            Duration::from_millis(200),
            || {
                let addr = addr.clone();
                async move {
                    let r = http_get(&addr, "/readyz").await?;
                    if r.status == 200 {
                        Ok(Some(()))
                    } else {
                        Err(anyhow!("{} {}", r.status, r.body.trim()))
                    }
                }
            },
        )
        .await?;
        let healthz = http_get(&addr, "/healthz").await?;
        ensure!(healthz.status == 200, "node{node} /healthz: {}", healthz.status);
        let metrics = http_get(&addr, "/metrics").await?;
        ensure!(
            metrics.status == 200 && metrics.body.contains("tessera_"),
            "node{node} /metrics: {} ({} bytes)",
            metrics.status,
            metrics.body.len()
        );
    }

    // A write through node 1, read (consistently) through node 3.
    let pool = clients[0]
        .create_user_pool("compose-smoke")
        .await
        .map_err(status_err("create_user_pool through node1"))?;
    let read = clients[2]
        .describe_user_pool(&pool.id, true)
        .await
        .map_err(status_err("consistent describe_user_pool through node3"))?;
    ensure!(read == pool, "node3 returned {read:?}, node1 created {pool:?}");
    println!("pool {} created through node1, read through node3", pool.id);

    // A client secret sealed on node 2 and unsealed on node 3: every node
    // reads the same sealing key from its read-only mount.
    let created = clients[1]
        .admin()
        .create_user_pool_client(clients[1].req(CreateUserPoolClientRequest {
            user_pool_id: pool.id.clone(),
            client_name: "web".into(),
            generate_secret: true,
            ..Default::default()
        }))
        .await
        .map_err(status_err("create_user_pool_client with a secret through node2"))?
        .into_inner()
        .user_pool_client
        .ok_or_else(|| anyhow!("CreateUserPoolClient returned no client"))?;
    let secret = created.client_secret.clone();
    ensure!(!secret.is_empty(), "no client secret was generated");
    let described = clients[2]
        .admin()
        .describe_user_pool_client(clients[2].req(DescribeUserPoolClientRequest {
            user_pool_id: pool.id.clone(),
            client_id: created.client_id.clone(),
            consistent_read: true,
        }))
        .await
        .map_err(status_err("describe_user_pool_client through node3"))?
        .into_inner()
        .user_pool_client
        .ok_or_else(|| anyhow!("DescribeUserPoolClient returned no client"))?;
    ensure!(
        described.client_secret == secret,
        "node3 unsealed a different client secret"
    );
    println!("client secret sealed on node2, unsealed on node3");

    // A second up.sh on the same volumes changes nothing and succeeds.
    let (took, _) = d.up()?;
    ensure!(d.token()? == token, "the re-run replaced the admin token");
    let view = clients[2]
        .describe_cluster()
        .await
        .map_err(status_err("describe_cluster after the re-run"))?;
    ensure!(
        view.cluster_id == cluster_id && view.members.len() == NODES,
        "after the re-run: cluster {} with {} members",
        view.cluster_id,
        view.members.len()
    );
    let again = clients[0]
        .describe_user_pool(&pool.id, true)
        .await
        .map_err(status_err("describe_user_pool after the re-run"))?;
    ensure!(again == pool, "the pool changed across the re-run: {again:?}");
    println!("up.sh re-run in {took:?}: same cluster, same token, pool still there");
    Ok(())
}
