//! The `tessera` command line: parses flags, then dispatches to `cli`,
//! where every command lives.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::disallowed_methods,
    reason = "the CLI waits and retries; it never applies commands"
)]

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tessera::config::LogFormat;

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
        /// UDP address of the device-sync listener; default: the api port + 2.
        #[arg(long)]
        sync_addr: Option<String>,
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Run one cluster node.
    Serve(cli::node::ServeArgs),
    /// Form and change the cluster.
    #[command(subcommand)]
    Cluster(cli::cluster::ClusterCmd),
    /// Manage user pools.
    #[command(subcommand)]
    Pool(cli::pool::PoolCmd),
    /// Manage a pool's app clients.
    #[command(subcommand, name = "app-client")]
    AppClient(cli::app_client::AppClientCmd),
    /// Manage a pool's users.
    #[command(subcommand)]
    User(cli::user::UserCmd),
    /// Manage a pool's groups, their permissions and their members.
    #[command(subcommand)]
    Group(cli::group::GroupCmd),
    /// Manage a user pool's external identity providers (Google, Apple,
    /// Facebook, any OpenID Connect issuer) and link external identities to
    /// its users.
    #[command(subcommand, name = "identity-provider")]
    IdentityProvider(cli::identity_provider::IdentityProviderCmd),
    /// Manage a user pool's resource servers: the APIs whose scopes app
    /// clients may be allowed and service tokens carry.
    #[command(subcommand, name = "resource-server")]
    ResourceServer(cli::resource_server::ResourceServerCmd),
    /// The hosted sign-in page's look: colours, languages, logo, CSS.
    #[command(subcommand)]
    Branding(cli::branding::BrandingCmd),
    /// Manage identity pools: login providers, roles and role mappings.
    #[command(subcommand, name = "identity-pool")]
    IdentityPool(cli::identity_pool::IdentityPoolCmd),
    /// Read and delete the identities of an identity pool.
    #[command(subcommand)]
    Identity(cli::identity::IdentityCmd),
    /// Manage the roles identity pools hand out, and users' own roles.
    #[command(subcommand)]
    Role(cli::role::RoleCmd),
    /// Read a pool's audit log: sign-ins, failures, lockouts, admin actions.
    #[command(subcommand)]
    Audit(cli::audit::AuditCmd),
    /// Read the courier's outbox (codes and temporary passwords).
    #[command(subcommand)]
    Outbox(cli::outbox::OutboxCmd),
    /// Manage admin access keys, which sign admin calls with AWS Signature
    /// Version 4 (AWS SDKs and the AWS CLI).
    #[command(subcommand)]
    AdminKey(cli::admin_key::AdminKeyCmd),
    /// Sign in with a username and password; prints the tokens.
    Login(cli::login::LoginArgs),
    /// Check tokens.
    #[command(subcommand)]
    Token(cli::login::TokenCmd),
    /// An identity's synced datasets, as one of its devices: watch changes
    /// live, put, remove and get records, list datasets (over QUIC).
    #[command(subcommand)]
    Sync(cli::sync::SyncCmd),
    /// Load generators: drive a cluster and check the performance targets.
    #[command(subcommand)]
    Bench(cli::bench::BenchCmd),
    /// Run a cluster under a seeded schedule of faults with concurrent
    /// workloads, record the history and check it; exits non-zero when a
    /// checker fails.
    Chaos(tessera::chaos::ChaosArgs),
}

#[tokio::main]
async fn main() -> Result<()> {
    // Test builds read fault-injection points from FAILPOINTS.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let cli = Cli::parse();
    let g = &cli.global;
    match cli.cmd {
        Cmd::Dev {
            data_dir,
            api_addr,
            peer_addr,
            sync_addr,
            log_format,
        } => cli::node::dev(data_dir, api_addr, peer_addr, sync_addr, log_format.unwrap_or_default()).await,
        Cmd::Serve(args) => cli::node::serve(args).await,
        Cmd::Cluster(c) => cli::cluster::run(g, c).await,
        Cmd::Pool(p) => cli::pool::run(g, p).await,
        Cmd::AppClient(c) => cli::app_client::run(g, c).await,
        Cmd::User(c) => cli::user::run(g, c).await,
        Cmd::Group(c) => cli::group::run(g, c).await,
        Cmd::IdentityProvider(c) => cli::identity_provider::run(g, c).await,
        Cmd::ResourceServer(c) => cli::resource_server::run(g, c).await,
        Cmd::Branding(c) => cli::branding::run(g, c).await,
        Cmd::IdentityPool(c) => cli::identity_pool::run(g, c).await,
        Cmd::Identity(c) => cli::identity::run(g, c).await,
        Cmd::Role(c) => cli::role::run(g, c).await,
        Cmd::Audit(c) => cli::audit::run(g, c).await,
        Cmd::Outbox(c) => cli::outbox::run(g, c).await,
        Cmd::AdminKey(c) => cli::admin_key::run(g, c).await,
        Cmd::Login(a) => cli::login::login(g, a).await,
        Cmd::Token(c) => cli::login::token(g, c).await,
        Cmd::Sync(c) => cli::sync::run(g, c).await,
        Cmd::Chaos(args) => cli::bench::chaos(args).await,
        Cmd::Bench(c) => cli::bench::bench(g, c).await,
    }
}
