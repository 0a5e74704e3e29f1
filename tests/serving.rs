//! Serving under load (issue 17 §7), on real nodes over loopback:
//!
//! * the api listener holds at most `limits.max_api_connections` sockets;
//!   beyond it a caller waits (and times out) until one closes, and the
//!   node keeps serving the callers it holds;
//! * a graceful stop waits for the background tasks: a sign-in's audit
//!   event, still in the node's 200 ms batch when SIGTERM arrives, is
//!   committed before Raft stops, and is there after a restart.
//!
//! Run with: `cargo test --features failpoints --test serving -- --test-threads=1 --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use common::auth::*;
use common::{RaftTuning, TestCluster};
use tessera::proto::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_listener_holds_at_most_its_connection_bound() {
    let tuning = RaftTuning {
        extra_config: "[limits]\nmax_api_connections = 4\n".into(),
        ..Default::default()
    };
    let c = TestCluster::start_with(1, tuning)
        .await
        .expect("a one-node cluster forms");
    let r = connection_bound(&c).await;
    c.finish(r);
}

async fn connection_bound(c: &TestCluster) -> Result<()> {
    let addr = c.node(1).api_addr.clone();
    // Let the harness's own connections close, then fill the bound with
    // idle sockets.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tokio::net::TcpStream::connect(&addr).await?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Free one place for a metrics scrape: it sees the three idle sockets
    // and itself, the whole bound.
    held.remove(0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let open = c.node(1).metric("tessera_api_connections").await?.unwrap_or(-1.0);
    println!("tessera_api_connections with the bound full: {open}");
    ensure!(
        open == 4.0,
        "tessera_api_connections is {open} with the bound of 4 full"
    );
    // Fill the bound again once the scrape closed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    held.push(tokio::net::TcpStream::connect(&addr).await?);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Full again (the scrape closed): a new caller is not served.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = tokio::time::timeout(Duration::from_secs(2), async {
        let client = tessera::client::Client::connect(&c.node(1).url(), Some(c.token.clone())).await?;
        client.describe_cluster().await.map_err(|s| anyhow!("{s}"))
    })
    .await;
    ensure!(
        !matches!(refused, Ok(Ok(_))),
        "a fifth caller was served while four sockets held the bound"
    );
    println!(
        "a caller beyond the bound waits: {}",
        match refused {
            Err(_) => "timed out".to_string(),
            Ok(Err(e)) => format!("{e:#}"),
            Ok(Ok(_)) => unreachable!(),
        }
    );
    // Closing the idle sockets frees the places: the node serves again.
    held.clear();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = tessera::client::Client::connect(&c.node(1).url(), Some(c.token.clone())).await?;
    let status = tokio::time::timeout(Duration::from_secs(5), client.describe_cluster()).await??;
    ensure!(
        status.leader_id == Some(1),
        "node 1 does not lead after the sockets closed"
    );
    println!("served again once the idle sockets closed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_commits_the_audit_batch_in_hand() {
    let mut c = TestCluster::start(1).await.expect("a one-node cluster forms");
    let r = audit_batch(&mut c).await;
    c.finish(r);
}

async fn audit_batch(c: &mut TestCluster) -> Result<()> {
    let f = Fixture::create(c, PoolSpec::default()).await?;
    f.wait_keys_published().await?;
    f.confirmed_user(1, "batched", GOOD_PASSWORD, "batched@serving.test")
        .await?;
    // A successful sign-in's event waits in the node's batch (200 ms)...
    f.sign_in(1, "batched", GOOD_PASSWORD).await?;
    // ...when SIGTERM arrives.
    c.node_mut(1).stop(Duration::from_secs(20)).await?;
    c.start_node(1).await?;
    c.wait_for_leader(None, Duration::from_secs(20)).await?;
    let client = c.client(1).await?;
    let events = client
        .admin()
        .admin_list_user_auth_events(client.req(AdminListUserAuthEventsRequest {
            user_pool_id: f.pool_id.clone(),
            username: "batched".into(),
            consistent_read: true,
            ..Default::default()
        }))
        .await
        .map_err(status_err("AdminListUserAuthEvents"))?
        .into_inner();
    let kinds: Vec<(String, String)> = events
        .auth_events
        .iter()
        .map(|e| (e.event_type.clone(), e.event_response.clone()))
        .collect();
    println!("events after the restart: {kinds:?}");
    ensure!(
        kinds.iter().any(|(t, r)| t == "SignIn" && r == "Pass"),
        "the sign-in's audit event, batched when the node stopped, was lost: {kinds:?}"
    );
    Ok(())
}

/// The admin check is one layer in front of `Admin` and `Cluster`, so it
/// must hold for every method, including one a handler forgot. The attack:
/// call each method the .proto files declare, with an empty request, and
/// no token or a wrong one. Each must be refused with `Unauthenticated`
/// before the handler runs; with the real token each must get past the
/// check (whatever the handler then says about the empty request).
/// `InitCluster` is exempt (it creates the token), and so are the public
/// Identity calls (`GetId`, credentials, `Authorize`), which the logins and
/// credentials they carry authenticate.
///
/// Sync is not behind the admin layer at all (identities call it with
/// their own credentials or access tokens), so each of its handlers must
/// authenticate: without a token, or with one that is neither the admin
/// token nor a valid identity token, every Sync method is `Unauthenticated`
/// too, before it looks at the (empty, so invalid) request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_and_cluster_method_needs_the_admin_token() {
    let c = TestCluster::start(1).await.expect("a one-node cluster forms");
    let r = admin_methods_guarded(&c).await;
    c.finish(r);
}

/// The full paths of every rpc of `service` in `proto/tessera/v1/<file>`.
fn rpc_paths(file: &str, service: &str) -> Result<Vec<String>> {
    let path = format!("{}/proto/tessera/v1/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).map_err(|e| anyhow!("{path}: {e}"))?;
    let paths: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rpc "))
        .filter_map(|l| l.split('(').next())
        .map(|name| format!("/tessera.v1.{service}/{}", name.trim()))
        .collect();
    ensure!(paths.len() >= 5, "{path}: found only {paths:?}");
    Ok(paths)
}

async fn raw_call(addr: &str, path: &str, token: Option<&str>) -> Result<Result<(), tonic::Status>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let mut req = tonic::Request::new(());
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse()?);
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = path.parse::<http::uri::PathAndQuery>()?;
    Ok(grpc.unary(req, path, codec).await.map(|_| ()))
}

async fn admin_methods_guarded(c: &TestCluster) -> Result<()> {
    let addr = c.node(1).api_addr.clone();
    let mut paths = rpc_paths("admin.proto", "Admin")?;
    paths.extend(rpc_paths("cluster.proto", "Cluster")?);
    // Identity mixes admin calls and public ones, which the logins and
    // credentials they carry authenticate; only those few are exempt.
    paths.extend(rpc_paths("identity.proto", "Identity")?);
    // Sync authenticates in each handler; none of its methods is exempt.
    let sync = rpc_paths("sync.proto", "Sync")?;
    ensure!(
        sync.len() == tessera::api::grpc::sync::METHODS.len()
            && sync
                .iter()
                .all(|p| tessera::api::grpc::sync::METHODS.contains(&p.as_str())),
        "sync.proto declares {sync:?}, the server lists {:?}",
        tessera::api::grpc::sync::METHODS
    );
    paths.extend(sync);
    let mut checked = 0;
    for path in &paths {
        let exempt = path == "/tessera.v1.Cluster/InitCluster"
            || tessera::api::grpc::identity::PUBLIC_METHODS.contains(&path.as_str());
        for (what, token) in [("no token", None), ("a wrong token", Some("not-the-admin-token"))] {
            let r = raw_call(&addr, path, token).await?;
            match (exempt, r) {
                (false, Err(s)) if s.code() == tonic::Code::Unauthenticated => {
                    ensure!(
                        s.message().contains("NotAuthorizedException"),
                        "{path} with {what}: {}",
                        s.message()
                    );
                }
                (false, other) => return Err(anyhow!("{path} with {what} got past the admin check: {other:?}")),
                (true, Err(s)) => ensure!(
                    !s.message().contains("admin token"),
                    "{path} is exempt but asked for the admin token: {}",
                    s.message()
                ),
                (true, Ok(())) => return Err(anyhow!("{path} answered an empty request on an initialised node")),
            }
        }
        match raw_call(&addr, path, Some(&c.token)).await? {
            Err(s) if s.code() == tonic::Code::Unauthenticated && s.message().contains("admin token") => {
                return Err(anyhow!("{path} refused the real admin token: {}", s.message()))
            }
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                return Err(anyhow!("{path} is not served: {}", s.message()))
            }
            _ => {}
        }
        checked += 1;
    }
    println!("{checked} Admin, Cluster, Identity and Sync methods checked: all but the exempt refuse callers without the admin token");
    // The peer port serves none of them, with or without a token: the
    // admin API cannot be reached around the layer.
    let peer = c.node(1).peer_addr.clone();
    for path in &paths {
        for token in [None, Some(c.token.as_str())] {
            if let Ok(()) = raw_call(&peer, path, token).await? {
                return Err(anyhow!("{path} answered on the peer port"));
            }
        }
    }
    println!("the peer port answers none of them");
    Ok(())
}
