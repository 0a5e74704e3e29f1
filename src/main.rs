//! The `tessera` command line: parses flags, then calls into the library.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::disallowed_methods,
    reason = "the CLI waits and retries; it never applies commands"
)]

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use tessera::client::Client;
use tessera::config::{LogFormat, NodeConfig, Overrides};
use tessera::node::RunningNode;

mod cli;

#[derive(Parser)]
#[command(name = "tessera", version, about = "A distributed, Raft-replicated identity store")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Global {
    /// Any node's api address.
    #[arg(
        long,
        global = true,
        env = "TESSERA_ENDPOINT",
        default_value = "http://127.0.0.1:7700"
    )]
    endpoint: String,
    /// Admin token (printed by `cluster init` and `dev`).
    #[arg(long, global = true, env = "TESSERA_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "table")]
    output: Output,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Json,
    Table,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node for development: initialised on first start, restartable
    /// on the same data.
    Dev {
        #[arg(long, default_value = ".tessera-dev")]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7700")]
        api_addr: String,
        #[arg(long, default_value = "127.0.0.1:7701")]
        peer_addr: String,
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Run one cluster node.
    Serve(ServeArgs),
    /// Form and change the cluster.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Manage user pools.
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Manage a pool's app clients.
    #[command(subcommand, name = "app-client")]
    AppClient(cli::app_client::AppClientCmd),
    /// Manage a pool's users.
    #[command(subcommand)]
    User(cli::user::UserCmd),
    /// Manage a pool's groups, their permissions and their members.
    #[command(subcommand)]
    Group(cli::group::GroupCmd),
    /// Read a pool's audit log: sign-ins, failures, lockouts, admin actions.
    #[command(subcommand)]
    Audit(cli::audit::AuditCmd),
    /// Read the courier's outbox (codes and temporary passwords).
    #[command(subcommand)]
    Outbox(cli::outbox::OutboxCmd),
    /// Sign in with a username and password; prints the tokens.
    Login(cli::login::LoginArgs),
    /// Check tokens.
    #[command(subcommand)]
    Token(cli::login::TokenCmd),
    /// Load generators: drive a cluster and check the performance targets.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Run a cluster under a seeded schedule of faults with concurrent
    /// workloads, record the history and check it; exits non-zero when a
    /// checker fails.
    Chaos(tessera::chaos::ChaosArgs),
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Sign-in, refresh, token-check or sign-up load, judged against the
    /// argon2 limit measured in the same run. Exits non-zero when a target
    /// is missed.
    Auth(tessera::bench::AuthBenchArgs),
    /// ListUsers pages over a pool of imported users (p99 target), or
    /// AdminUpdateUserAttributes writes (rate target). Exits non-zero when a
    /// target is missed.
    Directory(tessera::bench::DirectoryBenchArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// TOML config file; flags and env vars override it.
    #[arg(long, env = "TESSERA_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "TESSERA_NODE_ID")]
    node_id: Option<u64>,
    #[arg(long, env = "TESSERA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[arg(long, env = "TESSERA_API_ADDR")]
    api_addr: Option<String>,
    #[arg(long, env = "TESSERA_PEER_ADDR")]
    peer_addr: Option<String>,
    /// Api address other nodes and clients use, if not `--api-addr`.
    #[arg(long, env = "TESSERA_ADVERTISE_API_ADDR")]
    advertise_api_addr: Option<String>,
    /// Peer address other nodes use, if not `--peer-addr`.
    #[arg(long, env = "TESSERA_ADVERTISE_PEER_ADDR")]
    advertise_peer_addr: Option<String>,
    #[arg(long, env = "TESSERA_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Join token from `tessera cluster join-token create`, for a fresh
    /// node that is to be added to an existing cluster.
    #[arg(long, env = "TESSERA_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// Secret that a `cluster init` from another host must present.
    #[arg(long, env = "TESSERA_BOOTSTRAP_TOKEN", hide_env_values = true)]
    bootstrap_token: Option<String>,
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Turn a fresh node into a one-member cluster; prints the admin token once.
    Init {
        /// Cluster-wide external URL (token issuer base). Default: the node's api URL.
        #[arg(long)]
        public_url: Option<String>,
        /// The node's bootstrap token; needed unless run on the node itself.
        #[arg(long, env = "TESSERA_BOOTSTRAP_TOKEN", hide_env_values = true)]
        bootstrap_token: Option<String>,
    },
    /// Issue, list and revoke the join tokens new nodes are started with.
    #[command(subcommand, name = "join-token")]
    JoinToken(JoinTokenCmd),
    /// Add a node: learner first, voter once caught up.
    AddNode {
        #[arg(long)]
        node_id: u64,
        #[arg(long)]
        peer_addr: String,
        #[arg(long)]
        api_addr: String,
    },
    /// Remove a node; its id is retired for good.
    RemoveNode {
        #[arg(long)]
        node_id: u64,
    },
    /// Members, leader, term, and per-node progress.
    Status,
    /// Form a cluster unattended (a compose init service): wait for the
    /// endpoint, `init` it unless already done (keeping the admin token in
    /// --token-file), then add every --member not yet a voter. Safe to
    /// re-run.
    Form {
        /// Where the admin token is kept (written once, mode 0600).
        #[arg(long)]
        token_file: PathBuf,
        #[arg(long)]
        public_url: Option<String>,
        /// A node to add, as ID=PEER_ADDR,API_ADDR; repeatable.
        #[arg(long = "member", value_name = "ID=PEER,API")]
        members: Vec<String>,
        /// Seconds to keep retrying each step.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
        /// The endpoint's bootstrap token (needed from another host).
        #[arg(long, env = "TESSERA_BOOTSTRAP_TOKEN", hide_env_values = true)]
        bootstrap_token: Option<String>,
        /// The join token the members were started with; registered with
        /// the cluster (any number of uses, 24 h) before they are added.
        #[arg(long, env = "TESSERA_JOIN_TOKEN", hide_env_values = true)]
        join_token: Option<String>,
    },
    /// Replace every node's token-signing key; old keys stay published
    /// until the tokens they signed expire.
    RotateKeys {
        /// Return at once instead of waiting for every voter.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Subcommand)]
enum JoinTokenCmd {
    /// Issue a token; prints it once. Start the new node with
    /// `--join-token <token>`, then run `cluster add-node`.
    Create {
        /// Lifetime in seconds (default 3600, at most 30 days).
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// Nodes it may admit; 0 means any number until it expires.
        #[arg(long, default_value_t = 1)]
        max_uses: u32,
        /// Only this node id may join with it.
        #[arg(long)]
        node_id: Option<u64>,
        #[arg(long, default_value = "")]
        description: String,
        /// Register this token (from `join-token generate`) instead of
        /// drawing one.
        #[arg(long, env = "TESSERA_JOIN_TOKEN", hide_env_values = true)]
        join_token: Option<String>,
    },
    /// Print a fresh token without contacting any node, to start nodes with
    /// before the cluster exists; register it later with `create --token`.
    Generate,
    /// Tokens, their expiry and uses (never the secrets).
    List,
    /// Revoke a token: nodes that have not joined with it yet cannot.
    Revoke {
        /// The token id (the 16 hex characters after `tsrj_`).
        token_id: String,
    },
}

#[derive(Subcommand)]
enum PoolCmd {
    /// Create a user pool; prints its id.
    Create {
        #[arg(long)]
        name: String,
        /// Refuse deletion until turned off.
        #[arg(long)]
        deletion_protection: bool,
        /// Comma-separated sign-in aliases: email, phone_number.
        #[arg(long)]
        alias_attributes: Option<String>,
        /// Comma-separated attributes verified by a code at sign-up
        /// (default email).
        #[arg(long)]
        auto_verified_attributes: Option<String>,
        /// Comma-separated verified attributes (email, phone_number) whose
        /// old value keeps serving until a new value is verified
        /// (Cognito's AttributesRequireVerificationBeforeUpdate). Default:
        /// the auto-verified attributes; an empty string makes changes
        /// take effect at once, unverified.
        #[arg(long)]
        attributes_require_verification_before_update: Option<String>,
        /// Treat `Alice` and `alice` as different usernames.
        #[arg(long)]
        case_sensitive_usernames: bool,
        /// Comma-separated standard attributes every user must have.
        #[arg(long)]
        required_attributes: Option<String>,
        /// Comma-separated custom attributes as name:Type (String, Number,
        /// Boolean, DateTime), e.g. `tier:String,level:Number`.
        #[arg(long)]
        custom_attributes: Option<String>,
        /// Minimum password length (default 8; all character classes are
        /// required unless --relaxed-password-classes).
        #[arg(long)]
        password_min_length: Option<i32>,
        /// Require no particular character classes in passwords.
        #[arg(long)]
        relaxed_password_classes: bool,
        /// argon2id memory in KiB (default 19456).
        #[arg(long)]
        hash_memory_kib: Option<u32>,
    },
    /// Change a pool's mutable settings.
    Update {
        #[arg(long)]
        pool_id: String,
        /// on or off.
        #[arg(long)]
        deletion_protection: Option<String>,
        #[arg(long)]
        password_min_length: Option<i32>,
        /// Comma-separated; an empty string turns verification off.
        #[arg(long)]
        auto_verified_attributes: Option<String>,
        /// Comma-separated verified attributes whose old value keeps
        /// serving until a new value is verified; an empty string turns
        /// this off.
        #[arg(long)]
        attributes_require_verification_before_update: Option<String>,
        #[arg(long)]
        hash_memory_kib: Option<u32>,
    },
    /// List user pools.
    List {
        /// Read through the leader so the list includes every acknowledged write.
        #[arg(long)]
        consistent: bool,
    },
    /// Show one user pool.
    Get {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        consistent: bool,
    },
    /// Delete a user pool.
    Delete {
        #[arg(long)]
        pool_id: String,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    // Test builds read fault-injection points from FAILPOINTS.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Dev {
            data_dir,
            api_addr,
            peer_addr,
            log_format,
        } => dev(data_dir, api_addr, peer_addr, log_format.unwrap_or_default()).await,
        Cmd::Serve(args) => serve(args).await,
        Cmd::Cluster(c) => cluster(&cli.global, c).await,
        Cmd::Pool(p) => pool(&cli.global, p).await,
        Cmd::AppClient(c) => cli::app_client::run(&cli.global, c).await,
        Cmd::User(c) => cli::user::run(&cli.global, c).await,
        Cmd::Group(c) => cli::group::run(&cli.global, c).await,
        Cmd::Audit(c) => cli::audit::run(&cli.global, c).await,
        Cmd::Outbox(c) => cli::outbox::run(&cli.global, c).await,
        Cmd::Login(a) => cli::login::login(&cli.global, a).await,
        Cmd::Token(c) => cli::login::token(&cli.global, c).await,
        Cmd::Chaos(args) => {
            init_logging(LogFormat::Text);
            let outcome = tessera::chaos::run(args).await?;
            for c in &outcome.checks {
                println!(
                    "{:<28} {}  {}",
                    c.name,
                    if c.passed { "PASS" } else { "FAIL" },
                    c.evidence
                );
            }
            println!("run directory: {}", outcome.dir.display());
            if !outcome.passed() {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Bench(BenchCmd::Auth(args)) => {
            let report = tessera::bench::auth::run(args).await?;
            report.print(match cli.global.output {
                Output::Json => tessera::bench::OutputFormat::Json,
                Output::Table => tessera::bench::OutputFormat::Table,
            });
            if !report.passed() {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Bench(BenchCmd::Directory(args)) => {
            let report = tessera::bench::directory::run(args).await?;
            report.print(match cli.global.output {
                Output::Json => tessera::bench::OutputFormat::Json,
                Output::Table => tessera::bench::OutputFormat::Table,
            });
            if !report.passed() {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

async fn dev(data_dir: PathBuf, api_addr: String, peer_addr: String, log_format: LogFormat) -> Result<()> {
    init_logging(log_format);
    let cfg = NodeConfig::load(
        None,
        Overrides {
            node_id: Some(1),
            data_dir: Some(data_dir.clone()),
            api_addr: Some(api_addr.clone()),
            peer_addr: Some(peer_addr.clone()),
            ..Default::default()
        },
    )?;
    let node = RunningNode::start(cfg).await?;
    let token_path = data_dir.join("admin-token");
    let token = if node.raft.store().cluster_info()?.is_none() {
        let res = node
            .cluster
            .init(Some(format!("http://{api_addr}")))
            .await
            .context("initialising the dev cluster")?;
        write_secret(&token_path, &res.admin_token)?;
        res.admin_token
    } else {
        std::fs::read_to_string(&token_path)
            .with_context(|| format!("reading {}", token_path.display()))?
            .trim()
            .to_string()
    };
    println!("Tessera dev node is running.");
    println!("  api (gRPC + HTTP): http://{api_addr}");
    println!("  peer (Raft):       {peer_addr}");
    println!("  health:            http://{api_addr}/healthz");
    println!("  metrics:           http://{api_addr}/metrics");
    println!("  data dir:          {}", data_dir.display());
    println!("  admin token:       {token}");
    println!("  (also in {})", token_path.display());
    println!();
    println!(
        "Try: TESSERA_ADMIN_TOKEN=$(cat {}) tessera pool create --name demo",
        token_path.display()
    );
    node.run_until_signal().await?;
    Ok(())
}

/// Writes a secret readable by the owner only.
fn write_secret(path: &std::path::Path, secret: &str) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).truncate(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{secret}")?;
    f.sync_all()?;
    Ok(())
}

async fn serve(args: ServeArgs) -> Result<()> {
    let cfg = NodeConfig::load(
        args.config.as_deref(),
        Overrides {
            node_id: args.node_id,
            data_dir: args.data_dir,
            api_addr: args.api_addr,
            peer_addr: args.peer_addr,
            advertise_api_addr: args.advertise_api_addr,
            advertise_peer_addr: args.advertise_peer_addr,
            log_format: args.log_format,
            // Compose passes unset settings as empty variables.
            join_token: args.join_token.filter(|t| !t.trim().is_empty()),
            bootstrap_token: args.bootstrap_token.filter(|t| !t.trim().is_empty()),
        },
    )?;
    init_logging(cfg.log_format);
    let node = RunningNode::start(cfg).await?;
    node.run_until_signal().await?;
    Ok(())
}

async fn connect(g: &Global) -> Result<Client> {
    Ok(Client::connect(&g.endpoint, g.token.clone()).await?)
}

fn status_err(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

/// Retries `f` every second until it succeeds or `secs` pass.
async fn keep_trying<T, F, Fut>(what: &str, secs: u64, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = tessera::clock::instant() + std::time::Duration::from_secs(secs);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if tessera::clock::instant() >= deadline => return Err(e.context(format!("{what}: gave up"))),
            Err(e) => {
                eprintln!("{what}: {e:#}; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

async fn form(
    g: &Global,
    token_file: PathBuf,
    public_url: Option<String>,
    members: Vec<String>,
    timeout: u64,
    bootstrap_token: Option<String>,
    join_token: Option<String>,
) -> Result<()> {
    let mut wanted = Vec::new();
    for m in &members {
        let parsed = m.split_once('=').and_then(|(id, addrs)| {
            let (peer, api) = addrs.split_once(',')?;
            Some((id.parse::<u64>().ok()?, peer.to_string(), api.to_string()))
        });
        wanted.push(parsed.ok_or_else(|| anyhow::anyhow!("--member {m:?}: use ID=PEER_ADDR,API_ADDR"))?);
    }
    let anon = Client::connect_lazy(&g.endpoint, None)?;
    let token = if token_file.exists() {
        std::fs::read_to_string(&token_file)?.trim().to_string()
    } else {
        let url = public_url.clone().unwrap_or_default();
        let bootstrap = bootstrap_token.clone().unwrap_or_default();
        let init = keep_trying("cluster init", timeout, || async {
            anon.init_cluster_with(&url, &bootstrap).await.map_err(status_err)
        })
        .await?;
        write_secret(&token_file, &init.admin_token)?;
        println!(
            "cluster {} initialised; admin token in {}",
            init.cluster_id,
            token_file.display()
        );
        init.admin_token
    };
    let admin = Client::connect_lazy(&g.endpoint, Some(token))?;
    if let Some(join) = join_token.filter(|_| !wanted.is_empty()) {
        let registered = keep_trying("register the join token", timeout, || async {
            let body = tessera::proto::CreateJoinTokenRequest {
                ttl_seconds: 24 * 3600,
                max_uses: Some(0),
                description: "cluster form".into(),
                token: join.clone(),
                ..Default::default()
            };
            match admin.create_join_token(body).await {
                Ok(_) => Ok(()),
                // A re-run finds it registered already.
                Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(()),
                Err(s) => Err(status_err(s)),
            }
        });
        registered.await?;
    }
    for (id, peer, api) in wanted {
        let voter = |r: &tessera::proto::DescribeClusterResponse| {
            r.members.iter().any(|m| m.node_id == id && m.role == "voter")
        };
        let current = keep_trying("cluster status", timeout, || async {
            admin.describe_cluster().await.map_err(status_err)
        })
        .await?;
        if voter(&current) {
            println!("node {id} is already a voter");
            continue;
        }
        keep_trying(&format!("add node {id}"), timeout, || async {
            admin.add_node(id, &peer, &api).await.map_err(status_err)
        })
        .await?;
        println!("node {id} added");
    }
    Ok(())
}

async fn cluster(g: &Global, c: ClusterCmd) -> Result<()> {
    if let ClusterCmd::Form {
        token_file,
        public_url,
        members,
        timeout,
        bootstrap_token,
        join_token,
    } = c
    {
        return form(g, token_file, public_url, members, timeout, bootstrap_token, join_token).await;
    }
    if let ClusterCmd::JoinToken(JoinTokenCmd::Generate) = c {
        println!("{}", tessera::raft::join::JoinToken::generate().reveal());
        return Ok(());
    }
    let client = connect(g).await?;
    match c {
        ClusterCmd::Init {
            public_url,
            bootstrap_token,
        } => {
            let r = client
                .init_cluster_with(
                    public_url.as_deref().unwrap_or(""),
                    bootstrap_token.as_deref().unwrap_or(""),
                )
                .await
                .map_err(status_err)?;
            match g.output {
                Output::Json => println!("{}", json!({"cluster_id": r.cluster_id, "admin_token": r.admin_token})),
                Output::Table => {
                    println!("cluster id:  {}", r.cluster_id);
                    println!("admin token: {}", r.admin_token);
                    println!("Store the token now: it is shown only once.");
                }
            }
        }
        ClusterCmd::AddNode {
            node_id,
            peer_addr,
            api_addr,
        } => {
            let r = client
                .add_node(node_id, &peer_addr, &api_addr)
                .await
                .map_err(status_err)?;
            print_members(g.output, &r.members);
        }
        // Handled before connecting: the endpoint may not be up yet.
        ClusterCmd::Form { .. } | ClusterCmd::JoinToken(JoinTokenCmd::Generate) => {}
        ClusterCmd::JoinToken(JoinTokenCmd::Create {
            ttl,
            max_uses,
            node_id,
            description,
            join_token,
        }) => {
            let r = client
                .create_join_token(tessera::proto::CreateJoinTokenRequest {
                    ttl_seconds: ttl,
                    max_uses: Some(max_uses),
                    node_id,
                    description,
                    token: join_token.unwrap_or_default(),
                })
                .await
                .map_err(status_err)?;
            cli::print(g, &r, || {
                println!("join token: {}", r.join_token);
                if let Some(i) = &r.info {
                    println!(
                        "id {} expires at {} (unix ms), uses {}",
                        i.token_id, i.expires_at, i.max_uses
                    );
                }
                println!("Start the new node with --join-token <token> (or TESSERA_JOIN_TOKEN), then run 'cluster add-node'.");
            })?;
        }
        ClusterCmd::JoinToken(JoinTokenCmd::List) => {
            let r = client
                .cluster()
                .list_join_tokens(client.req(tessera::proto::ListJoinTokensRequest {}))
                .await
                .map_err(status_err)?
                .into_inner();
            cli::print(g, &r, || {
                println!(
                    "{:<18} {:<15} {:<6} {:<6} {:<6} DESCRIPTION",
                    "ID", "EXPIRES_AT", "USES", "MAX", "NODE"
                );
                for t in &r.tokens {
                    let node = t.node_id.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
                    println!(
                        "{:<18} {:<15} {:<6} {:<6} {:<6} {}",
                        t.token_id, t.expires_at, t.uses, t.max_uses, node, t.description
                    );
                }
            })?;
        }
        ClusterCmd::JoinToken(JoinTokenCmd::Revoke { token_id }) => {
            client
                .cluster()
                .revoke_join_token(client.req(tessera::proto::RevokeJoinTokenRequest {
                    token_id: token_id.clone(),
                }))
                .await
                .map_err(status_err)?;
            match g.output {
                Output::Json => println!("{}", json!({ "revoked": token_id })),
                Output::Table => println!("join token {token_id} revoked"),
            }
        }
        ClusterCmd::RotateKeys { no_wait } => {
            let r = client
                .cluster()
                .rotate_signing_keys(client.req(tessera::proto::RotateSigningKeysRequest { wait: !no_wait }))
                .await
                .map_err(status_err)?
                .into_inner();
            cli::print(g, &r, || {
                println!("{:<24} {:<6} {:<15} RETIRED_AT", "KID", "NODE", "CREATED_AT");
                for k in &r.keys {
                    println!("{:<24} {:<6} {:<15} {}", k.kid, k.node_id, k.created_at, k.retired_at);
                }
            })?;
        }
        ClusterCmd::RemoveNode { node_id } => {
            let r = client.remove_node(node_id).await.map_err(status_err)?;
            print_members(g.output, &r.members);
        }
        ClusterCmd::Status => {
            let r = client.describe_cluster().await.map_err(status_err)?;
            match g.output {
                Output::Json => {
                    let nodes: Vec<_> = r
                        .nodes
                        .iter()
                        .map(|n| {
                            json!({"node_id": n.node_id, "state": n.state, "term": n.term,
                                   "last_log_index": n.last_log_index, "committed_index": n.committed_index,
                                   "applied_index": n.applied_index, "snapshot_index": n.snapshot_index,
                                   "error": n.error})
                        })
                        .collect();
                    let members: Vec<_> = r.members.iter().map(member_json).collect();
                    println!(
                        "{}",
                        json!({"cluster_id": r.cluster_id, "public_url": r.public_url, "leader_id": r.leader_id,
                               "term": r.term, "members": members, "nodes": nodes,
                               "retired_node_ids": r.retired_node_ids})
                    );
                }
                Output::Table => {
                    println!(
                        "cluster {}  leader {}  term {}",
                        r.cluster_id,
                        r.leader_id.map(|l| l.to_string()).unwrap_or_else(|| "none".into()),
                        r.term
                    );
                    println!(
                        "{:<6} {:<8} {:<22} {:<22} {:<10} {:>6} {:>10} {:>10} {:>10}",
                        "NODE", "ROLE", "API", "PEER", "STATE", "TERM", "LAST_LOG", "COMMITTED", "APPLIED"
                    );
                    for m in &r.members {
                        let p = r.nodes.iter().find(|n| n.node_id == m.node_id);
                        let (state, term, last, commit, applied) = p
                            .map(|p| {
                                (
                                    p.state.clone(),
                                    p.term,
                                    p.last_log_index,
                                    p.committed_index,
                                    p.applied_index,
                                )
                            })
                            .unwrap_or_default();
                        println!(
                            "{:<6} {:<8} {:<22} {:<22} {:<10} {:>6} {:>10} {:>10} {:>10}",
                            m.node_id, m.role, m.api_addr, m.peer_addr, state, term, last, commit, applied
                        );
                    }
                    if !r.retired_node_ids.is_empty() {
                        println!("retired node ids: {:?}", r.retired_node_ids);
                    }
                }
            }
        }
    }
    Ok(())
}

fn member_json(m: &tessera::proto::Member) -> serde_json::Value {
    json!({"node_id": m.node_id, "role": m.role, "api_addr": m.api_addr, "peer_addr": m.peer_addr})
}

fn print_members(output: Output, members: &[tessera::proto::Member]) {
    match output {
        Output::Json => println!(
            "{}",
            json!({"members": members.iter().map(member_json).collect::<Vec<_>>()})
        ),
        Output::Table => {
            println!("{:<6} {:<8} {:<22} {:<22}", "NODE", "ROLE", "API", "PEER");
            for m in members {
                println!("{:<6} {:<8} {:<22} {:<22}", m.node_id, m.role, m.api_addr, m.peer_addr);
            }
        }
    }
}

fn pool_json(p: &tessera::proto::UserPoolType) -> serde_json::Value {
    serde_json::to_value(p).unwrap_or_default()
}

async fn pool(g: &Global, p: PoolCmd) -> Result<()> {
    if g.token.is_none() {
        bail!("an admin token is required: pass --token or set TESSERA_ADMIN_TOKEN");
    }
    let client = connect(g).await?;
    match p {
        PoolCmd::Create {
            name,
            deletion_protection,
            alias_attributes,
            auto_verified_attributes,
            attributes_require_verification_before_update,
            case_sensitive_usernames,
            required_attributes,
            custom_attributes,
            password_min_length,
            relaxed_password_classes,
            hash_memory_kib,
        } => {
            use tessera::proto::*;
            let mut schema: Vec<SchemaAttributeType> = cli::list(&required_attributes)
                .into_iter()
                .map(|name| SchemaAttributeType {
                    name,
                    mutable: true,
                    required: true,
                    ..Default::default()
                })
                .collect();
            for c in cli::list(&custom_attributes) {
                let (name, t) = c.split_once(':').unwrap_or((c.as_str(), "String"));
                schema.push(SchemaAttributeType {
                    name: name.to_string(),
                    attribute_data_type: t.to_string(),
                    mutable: true,
                    ..Default::default()
                });
            }
            let strict = !relaxed_password_classes;
            let policies = (password_min_length.is_some() || relaxed_password_classes).then(|| UserPoolPolicyType {
                password_policy: Some(PasswordPolicyType {
                    minimum_length: password_min_length.unwrap_or(8),
                    require_uppercase: strict,
                    require_lowercase: strict,
                    require_numbers: strict,
                    require_symbols: strict,
                    temporary_password_validity_days: 0,
                }),
            });
            let pool = client
                .create_user_pool_with(CreateUserPoolRequest {
                    pool_name: name,
                    deletion_protection: if deletion_protection { "ACTIVE" } else { "INACTIVE" }.into(),
                    policies,
                    alias_attributes: cli::list(&alias_attributes),
                    auto_verified_attributes: cli::list(&auto_verified_attributes),
                    username_configuration: Some(UsernameConfigurationType {
                        case_sensitive: case_sensitive_usernames,
                    }),
                    schema,
                    default_token_validity: None,
                    password_hashing: hash_memory_kib.map(|m| PasswordHashingType {
                        memory_kib: m,
                        ..Default::default()
                    }),
                    user_attribute_update_settings: attributes_require_verification_before_update.as_ref().map(|_| {
                        UserAttributeUpdateSettingsType {
                            attributes_require_verification_before_update: cli::list(
                                &attributes_require_verification_before_update,
                            ),
                        }
                    }),
                })
                .await
                .map_err(status_err)?;
            match g.output {
                Output::Json => println!("{}", pool_json(&pool)),
                Output::Table => println!("{}", pool.id),
            }
        }
        PoolCmd::List { consistent } => {
            let pools = client.list_all_user_pools(consistent).await.map_err(status_err)?;
            match g.output {
                Output::Json => println!(
                    "{}",
                    json!({"user_pools": pools.iter().map(pool_json).collect::<Vec<_>>()})
                ),
                Output::Table => {
                    println!("{:<20} {:<40} {:<10}", "ID", "NAME", "PROTECTED");
                    for p in &pools {
                        println!("{:<20} {:<40} {:<10}", p.id, p.name, p.deletion_protection);
                    }
                }
            }
        }
        PoolCmd::Get { pool_id, consistent } => {
            let p = client
                .describe_user_pool(&pool_id, consistent)
                .await
                .map_err(status_err)?;
            match g.output {
                Output::Json => println!("{}", pool_json(&p)),
                Output::Table => {
                    println!("id:                  {}", p.id);
                    println!("name:                {}", p.name);
                    println!("creation_date:       {}", p.creation_date);
                    println!("deletion_protection: {}", p.deletion_protection);
                    println!("users:               {}", p.estimated_number_of_users);
                    println!("alias_attributes:    {}", p.alias_attributes.join(","));
                    println!("auto_verified:       {}", p.auto_verified_attributes.join(","));
                    if let Some(u) = &p.user_attribute_update_settings {
                        println!(
                            "verify_before_update: {}",
                            u.attributes_require_verification_before_update.join(",")
                        );
                    }
                    if let Some(pp) = p.policies.as_ref().and_then(|x| x.password_policy.as_ref()) {
                        println!(
                            "password_policy:     min {} upper {} lower {} numbers {} symbols {}",
                            pp.minimum_length,
                            pp.require_uppercase,
                            pp.require_lowercase,
                            pp.require_numbers,
                            pp.require_symbols
                        );
                    }
                    let required: Vec<&str> = p
                        .schema_attributes
                        .iter()
                        .filter(|a| a.required)
                        .map(|a| a.name.as_str())
                        .collect();
                    println!("required_attributes: {}", required.join(","));
                }
            }
        }
        PoolCmd::Update {
            pool_id,
            deletion_protection,
            password_min_length,
            auto_verified_attributes,
            attributes_require_verification_before_update,
            hash_memory_kib,
        } => {
            use tessera::proto::*;
            let current = client.describe_user_pool(&pool_id, true).await.map_err(status_err)?;
            let policies = match password_min_length {
                Some(n) => {
                    let mut p = current.policies.and_then(|p| p.password_policy).unwrap_or_default();
                    p.minimum_length = n;
                    Some(UserPoolPolicyType {
                        password_policy: Some(p),
                    })
                }
                None => None,
            };
            let deletion_protection = match deletion_protection.as_deref() {
                None => String::new(),
                Some("on") => "ACTIVE".into(),
                Some("off") => "INACTIVE".into(),
                Some(other) => bail!("--deletion-protection {other:?}: use on or off"),
            };
            let body = UpdateUserPoolRequest {
                user_pool_id: pool_id,
                policies,
                update_auto_verified_attributes: auto_verified_attributes.is_some(),
                auto_verified_attributes: cli::list(&auto_verified_attributes),
                default_token_validity: None,
                password_hashing: hash_memory_kib.map(|m| PasswordHashingType {
                    memory_kib: m,
                    ..current.password_hashing.unwrap_or_default()
                }),
                deletion_protection,
                user_attribute_update_settings: attributes_require_verification_before_update.as_ref().map(|_| {
                    UserAttributeUpdateSettingsType {
                        attributes_require_verification_before_update: cli::list(
                            &attributes_require_verification_before_update,
                        ),
                    }
                }),
            };
            let p = client
                .admin()
                .update_user_pool(client.req(body))
                .await
                .map_err(status_err)?
                .into_inner()
                .user_pool
                .unwrap_or_default();
            match g.output {
                Output::Json => println!("{}", pool_json(&p)),
                Output::Table => println!("updated {}", p.id),
            }
        }
        PoolCmd::Delete { pool_id } => {
            client.delete_user_pool(&pool_id).await.map_err(status_err)?;
            match g.output {
                Output::Json => println!("{}", json!({"deleted": pool_id})),
                Output::Table => println!("deleted {pool_id}"),
            }
        }
    }
    Ok(())
}
