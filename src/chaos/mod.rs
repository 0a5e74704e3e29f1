//! The chaos harness behind `tessera chaos`: it runs a cluster, injects
//! faults from a seeded schedule while many clients run workloads against
//! every node, records a Jepsen-shaped history, and checks it.
//!
//! * [`process`]: the process backend (local processes, per-link proxies
//!   from [`proxy`]); [`docker`]: the Docker Compose cluster of `cluster/`.
//! * [`nemesis`]: the seeded fault schedule and how faults are applied and
//!   healed.
//! * [`workload`]: the clients and the history they record ([`history`]).
//! * [`checkers`] and [`linearizable`]: no lost acknowledged writes,
//!   uniqueness, linearizable registers (Wing–Gong/Lowe), convergence,
//!   token validity, availability; [`staleness`]: a revoked refresh token
//!   is refused on the minority side of a partition once `max_staleness`
//!   has passed.
//! * [`sync_load`] and [`sync_checks`]: devices of a few identities on
//!   different nodes, writing and following their data through the device
//!   client; every device's copy equals the replicated data after healing,
//!   every acknowledged write is in it, and every device saw its changes
//!   in order with no gap or duplicate outside announced reloads.
//! * [`report`]: `summary.json` and `report.html`.

pub mod checkers;
pub mod docker;
pub mod history;
pub mod linearizable;
pub mod nemesis;
pub mod process;
pub mod proxy;
pub mod report;
pub mod staleness;
pub mod sync_checks;
pub mod sync_load;
pub mod workload;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::client::Client;
use crate::proto::*;
use checkers::{CheckResult, FinalUsers, NodeState};
use nemesis::{AppliedFault, FaultKind};
use workload::{Fixture, Minted, Names, Nodes, Recorder};

/// A cluster the harness can break and mend.
#[tonic::async_trait]
pub trait Backend: Send {
    /// The admin token of the cluster.
    fn token(&self) -> String;
    /// Current member node ids.
    fn node_ids(&self) -> Vec<u64>;
    /// `http://host:port` of a node's api.
    fn url(&self, id: u64) -> String;
    /// `host:port` of a node's sync listener (UDP), as this harness
    /// reaches it.
    fn sync_addr(&self, id: u64) -> Option<String>;
    /// Whether the node runs and is not paused.
    fn is_up(&self, id: u64) -> bool;
    /// Kills node `id` abruptly (no graceful shutdown); its data dir stays.
    async fn kill(&mut self, id: u64) -> Result<()>;
    /// Starts node `id` again on its data dir.
    async fn start(&mut self, id: u64) -> Result<()>;
    /// Freezes node `id` (SIGSTOP, or `docker pause`); its connections stay open.
    async fn pause(&mut self, id: u64) -> Result<()>;
    /// Lets a paused node run again.
    async fn resume(&mut self, id: u64) -> Result<()>;
    /// Cuts every link between a node of `a` and a node of `b`.
    async fn partition(&mut self, a: &[u64], b: &[u64]) -> Result<()>;
    /// Lets every link pass traffic again (ends partitions and isolations).
    async fn heal_network(&mut self) -> Result<()>;
    /// Removes node `id` from the membership and adds a fresh node (a new
    /// id: ids are never reused); returns the new id.
    async fn remove_and_replace(&mut self, id: u64) -> Result<u64>;
    /// Stops every node and releases what the backend holds.
    async fn shutdown(&mut self);
}

/// Where the cluster under test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// Local processes with per-link proxies (the default).
    Process,
    /// The Docker Compose cluster in `cluster/`.
    Docker,
}

/// `tessera chaos` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// Where the cluster runs: local processes or the Docker Compose cluster.
    #[arg(long, value_enum, default_value = "process")]
    pub backend: BackendKind,
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Comma-separated faults: kill, pause, partition, leader-isolate,
    /// restart-all, membership.
    #[arg(long, default_value = "kill,pause,partition,leader-isolate,restart-all,membership")]
    pub faults: String,
    /// Seed of the fault schedule and the workload's choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Length of the faulty phase, in seconds.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Faults per minute.
    #[arg(long, default_value_t = 6.0)]
    pub rate: f64,
    /// Concurrent logical clients.
    #[arg(long, default_value_t = 12)]
    pub concurrency: u64,
    /// Registers (users whose attribute is written and read).
    #[arg(long, default_value_t = 4)]
    pub registers: usize,
    /// Identities of the sync workload (0: no sync workload).
    #[arg(long, default_value_t = 3)]
    pub sync_identities: usize,
    /// Devices per sync identity, connected to different nodes.
    #[arg(long, default_value_t = 3)]
    pub sync_devices: usize,
    /// Run directory (history, summary, report). Default
    /// `chaos-runs/<seed>-<time>`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The `tessera` binary the nodes run (default: this one).
    #[arg(long)]
    pub node_binary: Option<PathBuf>,
    /// Where `build-image.sh`, `up.sh` and the compose files are (docker
    /// backend).
    #[arg(long, default_value = "cluster")]
    pub compose_dir: PathBuf,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct ChaosOutcome {
    /// The run directory holding the history, summary and report.
    pub dir: PathBuf,
    /// Every checker's verdict.
    pub checks: Vec<CheckResult>,
}

impl ChaosOutcome {
    /// Whether every checker passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

async fn admin(url: &str, token: &str) -> Result<Client> {
    Ok(Client::connect_lazy(url, Some(token.to_string()))?)
}

/// Creates the pool, app client and users the workload needs.
async fn fixture(c: &Client, registers: usize) -> Result<Fixture> {
    let pool = process::retry(Duration::from_secs(30), || {
        c.create_user_pool_with(CreateUserPoolRequest {
            pool_name: "chaos".into(),
            auto_verified_attributes: vec![],
            password_hashing: Some(PasswordHashingType {
                memory_kib: 8192,
                iterations: 1,
                parallelism: 1,
            }),
            ..Default::default()
        })
    })
    .await?;
    let client = process::retry(Duration::from_secs(30), || {
        let mut a = c.admin();
        let req = c.req(CreateUserPoolClientRequest {
            user_pool_id: pool.id.clone(),
            client_name: "chaos".into(),
            ..Default::default()
        });
        async move { a.create_user_pool_client(req).await }
    })
    .await?
    .into_inner()
    .user_pool_client
    .context("no client")?;
    let mut fx = Fixture {
        pool_id: pool.id.clone(),
        client_id: client.client_id.clone(),
        registers: Vec::new(),
        sign_in_users: Vec::new(),
        identity_pool_id: String::new(),
        identity_provider: String::new(),
        identity_logins: Vec::new(),
    };
    for i in 0..registers {
        let name = format!("r-{i}");
        process::retry(Duration::from_secs(30), || {
            let mut a = c.admin();
            let req = c.req(AdminCreateUserRequest {
                user_pool_id: pool.id.clone(),
                username: name.clone(),
                user_attributes: vec![AttributeValue {
                    name: workload::REGISTER_ATTRIBUTE.into(),
                    value: workload::INITIAL_VALUE.into(),
                }],
                temporary_password: workload::PASSWORD.into(),
                message_action: "SUPPRESS".into(),
                desired_delivery_mediums: vec![],
                force_alias_creation: false,
                ..Default::default()
            });
            async move { a.admin_create_user(req).await }
        })
        .await?;
        fx.registers.push(name);
    }
    for i in 0..4 {
        let name = format!("s-{i}");
        process::retry(Duration::from_secs(30), || {
            let mut a = c.auth();
            let req = SignUpRequest {
                client_id: fx.client_id.clone(),
                username: name.clone(),
                password: workload::PASSWORD.into(),
                ..Default::default()
            };
            async move { a.sign_up(req).await }
        })
        .await?;
        process::retry(Duration::from_secs(30), || {
            let mut a = c.admin();
            let req = c.req(AdminConfirmSignUpRequest {
                user_pool_id: pool.id.clone(),
                username: name.clone(),
            });
            async move { a.admin_confirm_sign_up(req).await }
        })
        .await?;
        fx.sign_in_users.push(name);
    }
    identity_fixture(c, &mut fx).await?;
    Ok(fx)
}

/// Users whose first `GetId` the workload races on two nodes.
const IDENTITY_USERS: usize = 40;

async fn confirmed_user(c: &Client, fx: &Fixture, name: &str) -> Result<()> {
    process::retry(Duration::from_secs(30), || {
        let mut a = c.auth();
        let req = SignUpRequest {
            client_id: fx.client_id.clone(),
            username: name.to_string(),
            password: workload::PASSWORD.into(),
            ..Default::default()
        };
        async move { a.sign_up(req).await }
    })
    .await?;
    process::retry(Duration::from_secs(30), || {
        let mut a = c.admin();
        let req = c.req(AdminConfirmSignUpRequest {
            user_pool_id: fx.pool_id.clone(),
            username: name.to_string(),
        });
        async move { a.admin_confirm_sign_up(req).await }
    })
    .await?;
    Ok(())
}

/// An identity pool over the chaos user pool, and signed-in users whose id
/// tokens are the `get_id` logins.
async fn identity_fixture(c: &Client, fx: &mut Fixture) -> Result<()> {
    for i in 0..IDENTITY_USERS {
        let name = format!("i-{i}");
        confirmed_user(c, fx, &name).await?;
        let resp = process::retry(Duration::from_secs(30), || {
            let mut a = c.auth();
            let req = InitiateAuthRequest {
                auth_flow: "USER_PASSWORD_AUTH".into(),
                auth_parameters: [
                    ("USERNAME".to_string(), name.clone()),
                    ("PASSWORD".to_string(), workload::PASSWORD.to_string()),
                ]
                .into_iter()
                .collect(),
                client_id: fx.client_id.clone(),
                client_metadata: Default::default(),
            };
            async move { a.initiate_auth(req).await }
        })
        .await?
        .into_inner();
        let id_token = resp.authentication_result.context("sign-in gave no tokens")?.id_token;
        if fx.identity_provider.is_empty() {
            let (_, iss) = crate::auth::verifier::peek_kid_and_issuer(&id_token).context("id token without iss")?;
            fx.identity_provider = crate::model::identity_pool::strip_scheme(&iss).to_string();
        }
        fx.identity_logins.push((name, id_token));
    }
    let pool = process::retry(Duration::from_secs(30), || {
        let mut a = c.identity();
        let req = c.req(CreateIdentityPoolRequest {
            identity_pool_name: "chaos".into(),
            allow_unauthenticated_identities: false,
            cognito_identity_providers: vec![CognitoIdentityProvider {
                provider_name: fx.identity_provider.clone(),
                client_id: fx.client_id.clone(),
                server_side_token_check: false,
            }],
            ..Default::default()
        });
        async move { a.create_identity_pool(req).await }
    })
    .await?
    .into_inner();
    fx.identity_pool_id = pool.identity_pool_id;
    Ok(())
}

async fn leader_of(backend: &dyn Backend) -> Option<u64> {
    for id in backend.node_ids() {
        if !backend.is_up(id) {
            continue;
        }
        let Ok(c) = admin(&backend.url(id), &backend.token()).await else {
            continue;
        };
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), c.describe_cluster()).await {
            if let Some(l) = r.leader_id {
                return Some(l);
            }
        }
    }
    None
}

/// Each node's state once all of them applied the same index (or the
/// latest reading when `within` runs out).
async fn converged_states(backend: &dyn Backend, within: Duration) -> Vec<NodeState> {
    let deadline = crate::clock::instant() + within;
    let mut last = Vec::new();
    loop {
        let mut states = Vec::new();
        for id in backend.node_ids() {
            let Ok(c) = admin(&backend.url(id), &backend.token()).await else {
                continue;
            };
            let mut cl = c.cluster();
            if let Ok(Ok(r)) =
                tokio::time::timeout(Duration::from_secs(3), cl.get_node_state(c.req(GetNodeStateRequest {}))).await
            {
                let r = r.into_inner();
                states.push(NodeState {
                    node_id: r.node_id,
                    applied_index: r.applied_index,
                    digest: r.state_digest,
                    pools: r.pools.into_iter().map(|p| (p.user_pool_id, p.users)).collect(),
                });
            }
        }
        let same = states.len() == backend.node_ids().len()
            && states
                .windows(2)
                .all(|w| w[0].applied_index == w[1].applied_index && w[0].digest == w[1].digest);
        if same || crate::clock::instant() >= deadline {
            return if states.is_empty() { last } else { states };
        }
        last = states;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Runs a chaos test and writes its run directory.
pub async fn run(args: ChaosArgs) -> Result<ChaosOutcome> {
    if !(1..=9).contains(&args.nodes) {
        bail!("--nodes {}: run 1 to 9 nodes", args.nodes);
    }
    if args.nodes < 3 && args.faults.contains("membership") {
        bail!("membership faults need at least 3 nodes");
    }
    if args.concurrency == 0 || args.concurrency > 1000 {
        bail!("--concurrency {}: use 1 to 1000 clients", args.concurrency);
    }
    if args.registers == 0 || args.registers > 100 {
        bail!("--registers {}: use 1 to 100", args.registers);
    }
    if args.sync_identities > 10 || args.sync_devices > 10 || (args.sync_identities > 0 && args.sync_devices == 0) {
        bail!(
            "--sync-identities {} --sync-devices {}: use 0 to 10 identities of 1 to 10 devices",
            args.sync_identities,
            args.sync_devices
        );
    }
    if args.duration < 10 {
        bail!("--duration {}: a run needs at least 10 seconds", args.duration);
    }
    if !args.rate.is_finite() || args.rate < 0.0 || args.rate > 60.0 {
        bail!("--rate {}: use 0 to 60 faults per minute", args.rate);
    }
    let mut kinds = FaultKind::parse_list(&args.faults)?;
    if args.backend == BackendKind::Docker && kinds.contains(&FaultKind::Membership) {
        eprintln!("the docker backend cannot change membership; leaving out membership faults");
        kinds.retain(|k| *k != FaultKind::Membership);
    }
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("chaos-runs").join(format!("{}-{}", args.seed, crate::clock::now_millis())));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let bin = match &args.node_binary {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("locating the tessera binary")?,
    };
    let mut backend: Box<dyn Backend> = match args.backend {
        BackendKind::Process => Box::new(process::ProcessCluster::start(&bin, &dir.join("cluster"), args.nodes).await?),
        BackendKind::Docker => {
            Box::new(docker::DockerCluster::start(&bin, &args.compose_dir, &dir.join("cluster"), args.nodes).await?)
        }
    };
    let result = run_on(&args, &kinds, &dir, backend.as_mut()).await;
    backend.shutdown().await;
    result
}

/// After healing: lets every sync device send what it queued, reads the
/// replicated data on every node, waits for the devices to hold it, and
/// runs the sync checkers.
async fn sync_outcome(
    backend: &mut dyn Backend,
    token: &str,
    sfx: &sync_load::SyncFixture,
    devices: &[Arc<sync_load::Device>],
    ops: &[history::Operation],
) -> Result<Vec<CheckResult>> {
    let deadline = crate::clock::instant() + Duration::from_secs(60);
    while devices.iter().any(|d| d.client.pending() > 0) && crate::clock::instant() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let finals = sync_load::final_state(backend, token, sfx).await?;
    let expected = sync_checks::agreed(&finals).unwrap_or_default();
    let copies = sync_load::settle(devices, sfx, &expected, Duration::from_secs(60)).await;
    let reports: Vec<sync_checks::DeviceReport> = devices
        .iter()
        .zip(copies)
        .map(|(d, copy)| sync_checks::DeviceReport {
            name: d.name.clone(),
            identity_id: sfx.identities[d.identity].identity_id.clone(),
            copy,
            seen: d.seen.lock().map(|v| v.clone()).unwrap_or_default(),
            stats: d.client.stats(),
        })
        .collect();
    Ok(vec![
        sync_checks::convergence(&finals, &reports),
        sync_checks::acknowledged_writes(ops, &finals),
        sync_checks::order(&reports),
    ])
}

/// Prints the run's progress once a second until `stop`.
fn spawn_progress(
    rec: Recorder,
    current: Arc<std::sync::Mutex<String>>,
    total: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
    start: std::time::Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = 0usize;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => break,
            }
            let events = rec.events();
            let done = events.iter().filter(|e| e.kind != history::EventType::Invoke).count();
            let errors = events
                .iter()
                .filter(|e| matches!(e.kind, history::EventType::Fail | history::EventType::Info))
                .count();
            let fault = current.lock().map(|f| f.clone()).unwrap_or_default();
            eprint!(
                "\r[{:>4}s/{total}s] {:>5} ops/s  errors so far {:>6}  fault: {:<40}",
                start.elapsed().as_secs(),
                done - last,
                errors,
                fault
            );
            last = done;
        }
        eprintln!();
    })
}

/// The final reads: every signed-up username on every node, as the sub it
/// resolves to there (or none).
async fn final_users(
    backend: &mut dyn Backend,
    token: &str,
    pool_id: &str,
    usernames: &std::collections::BTreeSet<String>,
) -> Result<FinalUsers> {
    let mut finals = FinalUsers::new();
    for id in backend.node_ids() {
        let c = admin(&backend.url(id), token).await?;
        for name in usernames {
            let mut a = c.admin();
            let r = a
                .admin_get_user(c.req(AdminGetUserRequest {
                    user_pool_id: pool_id.to_string(),
                    username: name.clone(),
                    consistent_read: false,
                }))
                .await;
            let found = match r {
                Ok(r) => r
                    .into_inner()
                    .user_attributes
                    .into_iter()
                    .find(|a| a.name == "sub")
                    .map(|a| a.value),
                Err(_) => None,
            };
            finals.entry(name.clone()).or_default().insert(id, found);
        }
    }
    Ok(finals)
}

/// The final reads of the identity checks: `GetId` of every raced login on
/// every node (a local read on a node that holds it), as the identity id it
/// answers there (or none, with the error, when it fails).
async fn final_identities(
    backend: &mut dyn Backend,
    token: &str,
    fx: &Fixture,
    logins: &std::collections::BTreeSet<String>,
) -> Result<FinalUsers> {
    let mut finals = FinalUsers::new();
    for id in backend.node_ids() {
        let c = admin(&backend.url(id), token).await?;
        for name in logins {
            let found = workload::get_id(&c, fx, name).await.ok();
            finals.entry(name.clone()).or_default().insert(id, found);
        }
    }
    Ok(finals)
}

/// Checks that a sample of the access tokens minted during the run still
/// verifies on every node: the number of checks and the failures.
async fn check_minted_tokens(backend: &mut dyn Backend, token: &str, minted: &Minted) -> Result<(usize, Vec<String>)> {
    let tokens: Vec<(u64, String)> = minted
        .access_tokens
        .lock()
        .map(|t| t.iter().step_by((t.len() / 40).max(1)).cloned().collect())
        .unwrap_or_default();
    let mut failures = Vec::new();
    let mut checks = 0;
    for id in backend.node_ids() {
        let c = admin(&backend.url(id), token).await?;
        for (minted_on, t) in &tokens {
            checks += 1;
            let mut a = c.auth();
            if let Err(e) = a
                .get_user(GetUserRequest {
                    access_token: t.clone(),
                })
                .await
            {
                failures.push(format!("token from node {minted_on} on node {id}: {}", e.message()));
            }
        }
    }
    Ok((checks, failures))
}

/// Writes the run directory: the history (one event per line), the
/// summary and the checkers' results as JSON, and the HTML report.
#[allow(clippy::too_many_arguments)]
fn write_run_dir(
    dir: &Path,
    args: &ChaosArgs,
    kinds: &[FaultKind],
    schedule: &[nemesis::ScheduledFault],
    applied: &[(AppliedFault, u64, u64)],
    events: &[history::Event],
    ops: &[history::Operation],
    checks: &[CheckResult],
    avail: &checkers::Availability,
    states: &[NodeState],
) -> Result<()> {
    let mut history = std::io::BufWriter::new(std::fs::File::create(dir.join("history.jsonl"))?);
    for e in events {
        serde_json::to_writer(&mut history, e)?;
        history.write_all(b"\n")?;
    }
    history.flush()?;
    let windows: Vec<report::Window> = applied
        .iter()
        .map(|(a, s, e)| report::Window {
            label: a.description.clone(),
            start_s: *s as f64 / 1000.0,
            end_s: *e as f64 / 1000.0,
        })
        .collect();
    let summary = json!({
        "seed": args.seed,
        "nodes": args.nodes,
        "duration_s": args.duration,
        "faults_requested": kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "schedule": schedule,
        "faults_applied": applied.iter().map(|(a, s, e)| json!({"fault": a, "start_ms": s, "healed_ms": e})).collect::<Vec<_>>(),
        "operations": ops.len(),
        "ok": ops.iter().filter(|o| o.outcome == history::EventType::Ok).count(),
        "fail": ops.iter().filter(|o| o.outcome == history::EventType::Fail).count(),
        "info": ops.iter().filter(|o| o.outcome == history::EventType::Info).count(),
        "checks": checks,
        "availability": avail,
        "final_node_states": states,
        "passed": checks.iter().all(|c| c.passed),
    });
    std::fs::write(dir.join("summary.json"), serde_json::to_string_pretty(&summary)?)?;
    std::fs::write(dir.join("checkers.json"), serde_json::to_string_pretty(&checks)?)?;
    report::write_html(
        dir,
        &format!(
            "tessera chaos: seed {}, {} nodes, {} s",
            args.seed, args.nodes, args.duration
        ),
        checks,
        avail,
        ops,
        &windows,
    )?;
    Ok(())
}

async fn run_on(args: &ChaosArgs, kinds: &[FaultKind], dir: &Path, backend: &mut dyn Backend) -> Result<ChaosOutcome> {
    let token = backend.token();
    let first = admin(&backend.url(backend.node_ids()[0]), &token).await?;
    let fx = Arc::new(fixture(&first, args.registers).await?);
    let nodes = Nodes::default();
    for id in backend.node_ids() {
        nodes.set(id, admin(&backend.url(id), &token).await?);
    }
    // The sync workload's identities and devices connect before the
    // faults start, so that every device begins caught up.
    let sync_fx = if args.sync_identities > 0 {
        Some(Arc::new(sync_load::fixture(&first, args.sync_identities).await?))
    } else {
        None
    };
    let devices: Vec<Arc<sync_load::Device>> = match &sync_fx {
        Some(sfx) => {
            let (addrs, pins) = sync_load::endpoints(backend).await?;
            sync_load::start_devices(sfx, &addrs, &pins, args.sync_devices)
                .await?
                .into_iter()
                .map(Arc::new)
                .collect()
        }
        None => Vec::new(),
    };
    for d in &devices {
        d.client
            .wait_caught_up(Duration::from_secs(30))
            .await
            .map_err(|e| anyhow::anyhow!("sync device {} did not catch up before the run: {e}", d.name))?;
    }
    let schedule = nemesis::schedule(args.seed, kinds, Duration::from_secs(args.duration), args.rate);
    let start = crate::clock::instant();
    let rec = Recorder::new(start);
    let names = Arc::new(Names::default());
    let minted = Minted::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        workers.push(tokio::spawn(workload::client_loop(
            w,
            args.concurrency,
            args.seed,
            nodes.clone(),
            fx.clone(),
            rec.clone(),
            names.clone(),
            minted.clone(),
            stop_rx.clone(),
        )));
    }
    if let Some(sfx) = &sync_fx {
        for (i, d) in devices.iter().enumerate() {
            workers.push(tokio::spawn(sync_load::write_loop(
                i,
                d.clone(),
                sfx.clone(),
                args.seed,
                rec.clone(),
                stop_rx.clone(),
            )));
        }
    }
    let current_fault = Arc::new(std::sync::Mutex::new(String::from("none")));
    let progress = spawn_progress(
        rec.clone(),
        current_fault.clone(),
        args.duration,
        stop_rx.clone(),
        start,
    );

    // The nemesis, in the foreground.
    let mut applied: Vec<(AppliedFault, u64, u64)> = Vec::new();
    for f in &schedule {
        let at = start + Duration::from_millis(f.start_ms);
        tokio::time::sleep_until(at.into()).await;
        let leader = leader_of(backend).await;
        let began = start.elapsed().as_millis() as u64;
        match nemesis::apply(backend, f, leader).await {
            Ok(a) => {
                if let Ok(mut c) = current_fault.lock() {
                    *c = a.description.clone();
                }
                if let Some(new) = a.added {
                    for old in &a.nodes {
                        nodes.remove(*old);
                    }
                    nodes.set(new, admin(&backend.url(new), &token).await?);
                }
                tokio::time::sleep(Duration::from_millis(f.duration_ms)).await;
                nemesis::heal(backend, &a).await?;
                if let Ok(mut c) = current_fault.lock() {
                    *c = "none".into();
                }
                applied.push((a, began, start.elapsed().as_millis() as u64));
            }
            Err(e) => {
                tracing::warn!(error = %e, fault = f.kind.name(), "could not apply a fault");
            }
        }
    }
    tokio::time::sleep_until((start + Duration::from_secs(args.duration)).into()).await;
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    let _ = progress.await;

    // Heal everything and let the cluster settle.
    backend.heal_network().await?;
    for id in backend.node_ids() {
        backend.resume(id).await?;
        if !backend.is_up(id) {
            backend.start(id).await?;
        }
    }
    // Bounded staleness, on a partition the harness makes itself so that it
    // knows when the cut happened (runs that ask for partitions only).
    let staleness = if backend.node_ids().len() >= 3 && kinds.contains(&FaultKind::Partition) {
        Some(match staleness::probe(backend, &fx).await {
            Ok(p) => staleness::check(&p),
            Err(e) => CheckResult::new("bounded-staleness", false, format!("the probe could not run: {e:#}")),
        })
    } else {
        None
    };
    let states = converged_states(backend, Duration::from_secs(90)).await;
    let events = rec.events();
    let ops = checkers::ops(&events);

    // Final reads: every signed-up username on every node.
    let usernames: std::collections::BTreeSet<String> =
        ops.iter().filter(|o| o.f == "sign_up").map(|o| o.key.clone()).collect();
    let finals = final_users(backend, &token, &fx.pool_id, &usernames).await?;

    // Final reads: the identity of every raced login, on every node.
    let logins: std::collections::BTreeSet<String> =
        ops.iter().filter(|o| o.f == "get_id").map(|o| o.key.clone()).collect();
    let final_ids = final_identities(backend, &token, &fx, &logins).await?;

    // Tokens minted during the run still verify on every node.
    let (token_checks, token_failures) = check_minted_tokens(backend, &token, &minted).await?;

    let mut checks = vec![
        checkers::no_lost_writes(&ops, &finals),
        checkers::uniqueness(&ops, &finals),
        checkers::linearizable_registers(&ops, &json!(workload::INITIAL_VALUE)),
        checkers::convergence(&states),
        checkers::token_validity(token_checks, &token_failures),
        checkers::one_identity_per_login(&ops, &final_ids),
    ];
    checks.extend(staleness);
    if let Some(sfx) = &sync_fx {
        checks.extend(sync_outcome(backend, &token, sfx, &devices, &ops).await?);
    }
    let avail = checkers::availability(&events, &applied);

    write_run_dir(
        dir, args, kinds, &schedule, &applied, &events, &ops, &checks, &avail, &states,
    )?;
    Ok(ChaosOutcome {
        dir: dir.to_path_buf(),
        checks,
    })
}
