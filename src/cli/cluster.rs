//! `tessera cluster`: forming the cluster (`init`, `form`), changing its
//! membership (`add-node`, `remove-node`), join tokens, key rotation and
//! `status`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use tessera::client::Client;
use tessera::proto::{DescribeClusterResponse, Member};

use super::{connect, print, status_err};
use crate::cli::node::write_secret;
use crate::{Global, Output};

#[derive(Subcommand)]
pub enum ClusterCmd {
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
pub enum JoinTokenCmd {
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

/// Runs one `tessera cluster` command.
pub async fn run(g: &Global, c: ClusterCmd) -> Result<()> {
    // `form` and `join-token generate` run before connecting: the endpoint
    // may not be up yet, or not be needed at all.
    let c = match c {
        ClusterCmd::Form {
            token_file,
            public_url,
            members,
            timeout,
            bootstrap_token,
            join_token,
        } => return form(g, token_file, public_url, members, timeout, bootstrap_token, join_token).await,
        ClusterCmd::JoinToken(JoinTokenCmd::Generate) => {
            println!("{}", tessera::raft::join::JoinToken::generate().reveal());
            return Ok(());
        }
        c => c,
    };
    let client = connect(g).await?;
    match c {
        ClusterCmd::Init {
            public_url,
            bootstrap_token,
        } => init(g, &client, public_url, bootstrap_token).await,
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
            Ok(())
        }
        ClusterCmd::JoinToken(cmd) => join_token(g, &client, cmd).await,
        ClusterCmd::RotateKeys { no_wait } => rotate_keys(g, &client, no_wait).await,
        ClusterCmd::RemoveNode { node_id } => {
            let r = client.remove_node(node_id).await.map_err(status_err)?;
            print_members(g.output, &r.members);
            Ok(())
        }
        ClusterCmd::Status => {
            let r = client.describe_cluster().await.map_err(status_err)?;
            print_status(g.output, &r);
            Ok(())
        }
        // Handled above, before connecting.
        ClusterCmd::Form { .. } => Ok(()),
    }
}

async fn init(g: &Global, client: &Client, public_url: Option<String>, bootstrap_token: Option<String>) -> Result<()> {
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
    Ok(())
}

async fn join_token(g: &Global, client: &Client, cmd: JoinTokenCmd) -> Result<()> {
    match cmd {
        JoinTokenCmd::Create {
            ttl,
            max_uses,
            node_id,
            description,
            join_token,
        } => {
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
            print(g, &r, || {
                println!("join token: {}", r.join_token);
                if let Some(i) = &r.info {
                    println!(
                        "id {} expires at {} (unix ms), uses {}",
                        i.token_id, i.expires_at, i.max_uses
                    );
                }
                println!("Start the new node with --join-token <token> (or TESSERA_JOIN_TOKEN), then run 'cluster add-node'.");
            })
        }
        JoinTokenCmd::List => {
            let r = client
                .cluster()
                .list_join_tokens(client.req(tessera::proto::ListJoinTokensRequest {}))
                .await
                .map_err(status_err)?
                .into_inner();
            print(g, &r, || {
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
            })
        }
        JoinTokenCmd::Revoke { token_id } => {
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
            Ok(())
        }
        // Handled by `run` before connecting.
        JoinTokenCmd::Generate => Ok(()),
    }
}

async fn rotate_keys(g: &Global, client: &Client, no_wait: bool) -> Result<()> {
    let r = client
        .cluster()
        .rotate_signing_keys(client.req(tessera::proto::RotateSigningKeysRequest { wait: !no_wait }))
        .await
        .map_err(status_err)?
        .into_inner();
    print(g, &r, || {
        println!("{:<24} {:<6} {:<15} RETIRED_AT", "KID", "NODE", "CREATED_AT");
        for k in &r.keys {
            println!("{:<24} {:<6} {:<15} {}", k.kid, k.node_id, k.created_at, k.retired_at);
        }
    })
}

fn print_status(output: Output, r: &DescribeClusterResponse) {
    match output {
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

/// `cluster form`: init (once), register the join token, add each member
/// not yet a voter; every step retried until `timeout` seconds pass.
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
        let voter = |r: &DescribeClusterResponse| r.members.iter().any(|m| m.node_id == id && m.role == "voter");
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

fn member_json(m: &Member) -> serde_json::Value {
    json!({"node_id": m.node_id, "role": m.role, "api_addr": m.api_addr, "peer_addr": m.peer_addr})
}

fn print_members(output: Output, members: &[Member]) {
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
