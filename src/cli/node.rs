//! Running a node: `tessera serve` (one cluster member, configured by file,
//! env and flags) and `tessera dev` (a one-node cluster initialised on first
//! start). Also the logging setup every long-running command shares.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use tessera::config::{LogFormat, NodeConfig, Overrides};
use tessera::node::RunningNode;

// The flags of `tessera serve` (a plain comment: a doc comment would
// become the subcommand's help text).
#[derive(Args)]
pub struct ServeArgs {
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
    /// UDP address of the device-sync (QUIC) listener; default: the api
    /// port + 2.
    #[arg(long, env = "TESSERA_SYNC_ADDR")]
    sync_addr: Option<String>,
    /// Api address other nodes and clients use, if not `--api-addr`.
    #[arg(long, env = "TESSERA_ADVERTISE_API_ADDR")]
    advertise_api_addr: Option<String>,
    /// Peer address other nodes use, if not `--peer-addr`.
    #[arg(long, env = "TESSERA_ADVERTISE_PEER_ADDR")]
    advertise_peer_addr: Option<String>,
    /// Sync address devices are told, if not `--sync-addr`.
    #[arg(long, env = "TESSERA_ADVERTISE_SYNC_ADDR")]
    advertise_sync_addr: Option<String>,
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

/// Logs to stderr, filtered by `RUST_LOG` (default: info, openraft at warn).
pub fn init_logging(format: LogFormat) {
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

/// `tessera dev`: a one-node cluster on `data_dir`, initialised on first
/// start (the admin token is kept in `<data_dir>/admin-token`). It prints
/// the sync listener's address and certificate fingerprint, which a
/// device pins (the certificate is self-signed and kept in the data dir).
pub async fn dev(
    data_dir: PathBuf,
    api_addr: String,
    peer_addr: String,
    sync_addr: Option<String>,
    log_format: LogFormat,
) -> Result<()> {
    init_logging(log_format);
    let cfg = NodeConfig::load(
        None,
        Overrides {
            node_id: Some(1),
            data_dir: Some(data_dir.clone()),
            api_addr: Some(api_addr.clone()),
            peer_addr: Some(peer_addr.clone()),
            sync_addr,
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
    println!(
        "  sync (QUIC):       {} (ALPN {})",
        node.sync_addr,
        String::from_utf8_lossy(tessera::sync::frame::ALPN)
    );
    println!("  sync certificate:  SHA-256 {}", node.sync_fingerprint);
    println!("  sync info:         http://{api_addr}/sync-info");
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
pub fn write_secret(path: &Path, secret: &str) -> Result<()> {
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

/// `tessera serve`: one cluster member until SIGINT or SIGTERM.
pub async fn serve(args: ServeArgs) -> Result<()> {
    let cfg = NodeConfig::load(
        args.config.as_deref(),
        Overrides {
            node_id: args.node_id,
            data_dir: args.data_dir,
            api_addr: args.api_addr,
            peer_addr: args.peer_addr,
            advertise_api_addr: args.advertise_api_addr,
            advertise_peer_addr: args.advertise_peer_addr,
            sync_addr: args.sync_addr,
            advertise_sync_addr: args.advertise_sync_addr,
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
