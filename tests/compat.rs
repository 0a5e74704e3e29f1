//! Old data still means the same: today's binary starts on a data dir that
//! an earlier build wrote (`tests/fixtures/compat/<version>.tar.gz`, made by
//! `tests/fixtures/compat/generate.sh`), replays its snapshot and the log
//! after it, and serves what was written: pools, app clients, users in each
//! status, groups, sealed outbox messages, join tokens, and sign-in with the
//! replicated signing key.
//!
//! `v1` was written before commands became one struct each (issue 17): the
//! encoding of every command in its log must not change.
//!
//! Run with: `cargo test --test compat -- --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use common::{free_ports, pin_binary, RaftTuning, TestNode};
use tessera::client::Client;
use tessera::proto::*;

const PASSWORD: &str = "Compat-Pass-1!";

/// The node, its admin client and the fixture's recorded ids.
struct Restored {
    node: TestNode,
    client: Client,
    ids: BTreeMap<String, String>,
    _dir: tempfile::TempDir,
}

async fn restore(version: &str) -> Result<Restored> {
    let dir = tempfile::tempdir()?;
    let bin = pin_binary(dir.path())?;
    let ports = free_ports(2)?;
    let node = TestNode::create_with_ports(1, dir.path(), &bin, ports[0], ports[1], &RaftTuning::default())?;
    let archive =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/compat/{version}.tar.gz"));
    let home = node
        .data_dir
        .parent()
        .ok_or_else(|| anyhow!("data dir has no parent"))?;
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(home)
        .status()
        .context("running tar")?;
    ensure!(status.success(), "tar -xzf {} failed", archive.display());
    let env = std::fs::read_to_string(node.data_dir.join("compat-fixture.env"))?;
    let ids: BTreeMap<String, String> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut node = node;
    node.start()?;
    node.wait_healthy(Duration::from_secs(30)).await?;
    let token = ids
        .get("admin_token")
        .cloned()
        .ok_or_else(|| anyhow!("no admin_token in the fixture"))?;
    let client = Client::connect(&node.url(), Some(token)).await?;
    Ok(Restored {
        node,
        client,
        ids,
        _dir: dir,
    })
}

impl Restored {
    fn id(&self, key: &str) -> String {
        self.ids.get(key).cloned().unwrap_or_default()
    }

    async fn user(&self, username: &str) -> Result<Option<AdminGetUserResponse>> {
        let r = self
            .client
            .admin()
            .admin_get_user(self.client.req(AdminGetUserRequest {
                user_pool_id: self.id("pool_id"),
                username: username.into(),
                ..Default::default()
            }))
            .await;
        match r {
            Ok(r) => Ok(Some(r.into_inner())),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(anyhow!("AdminGetUser {username}: {s}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_written_before_the_command_redesign_still_serves() {
    let mut r = restore("v1").await.expect("the v1 data dir restores");
    let result = check_v1(&r).await;
    if result.is_err() {
        println!("{}", r.node.log_tail(60));
    }
    let _ = r.node.stop(Duration::from_secs(10)).await;
    result.expect("v1 data means the same");
    // Every entry of the log (after the snapshot) still decodes, and
    // encodes back to the same bytes: the command encoding did not move.
    let store = tessera::store::Store::open(&r.node.data_dir).expect("the data dir opens");
    let rows = store.log_range(0, u64::MAX).expect("the log reads");
    assert!(
        rows.len() >= 10,
        "the fixture keeps 10 entries after its snapshot, read {}",
        rows.len()
    );
    let mut names = std::collections::BTreeSet::new();
    for (index, bytes) in &rows {
        let entry: tessera::raft::types::Entry =
            tessera::store::codec::decode(bytes).unwrap_or_else(|e| panic!("log entry {index} no longer decodes: {e}"));
        if let openraft::EntryPayload::Normal(cmd) = &entry.payload {
            names.insert(cmd.name());
        }
        let again = tessera::store::codec::encode(&entry).expect("encodes");
        assert_eq!(&again, bytes, "log entry {index} encodes differently today");
    }
    println!(
        "{} log entries decode and re-encode identically; commands {names:?}",
        rows.len()
    );
}

async fn check_v1(r: &Restored) -> Result<()> {
    let pool_id = r.id("pool_id");
    // Pools: the deleted one stays deleted; the fillers (written before the
    // snapshot) and the pool are there.
    let pools = r.client.list_all_user_pools(true).await?;
    let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
    ensure!(names.contains(&"compat"), "pool compat missing: {names:?}");
    ensure!(!names.contains(&"doomed"), "the deleted pool came back");
    ensure!(
        names.iter().filter(|n| n.starts_with("filler-")).count() == 40,
        "fillers: {names:?}"
    );
    println!("{} pools", pools.len());

    // App clients.
    let clients = r
        .client
        .admin()
        .list_user_pool_clients(r.client.req(ListUserPoolClientsRequest {
            user_pool_id: pool_id.clone(),
            consistent_read: true,
            ..Default::default()
        }))
        .await?
        .into_inner();
    let mut client_names: Vec<String> = clients
        .user_pool_clients
        .iter()
        .map(|c| c.client_name.clone())
        .collect();
    client_names.sort();
    ensure!(client_names == ["spare", "web"], "app clients {client_names:?}");

    // Users in each status; the deleted one stays deleted.
    let status = |u: &Option<AdminGetUserResponse>| u.as_ref().map(|u| (u.user_status.clone(), u.enabled));
    let attr = |u: &Option<AdminGetUserResponse>, name: &str| {
        u.as_ref().and_then(|u| {
            u.user_attributes
                .iter()
                .find(|a| a.name == name)
                .map(|a| a.value.clone())
        })
    };
    let ann = r.user("ann").await?;
    ensure!(
        status(&ann) == Some(("CONFIRMED".into(), true)),
        "ann: {:?}",
        status(&ann)
    );
    let bob = r.user("bob").await?;
    ensure!(
        attr(&bob, "name").as_deref() == Some("Bob"),
        "bob's name: {:?}",
        attr(&bob, "name")
    );
    ensure!(
        status(&bob) == Some(("CONFIRMED".into(), true)),
        "bob: {:?}",
        status(&bob)
    );
    let cid = r.user("cid").await?;
    ensure!(
        status(&cid) == Some(("CONFIRMED".into(), false)),
        "cid: {:?}",
        status(&cid)
    );
    ensure!(r.user("dee").await?.is_none(), "the deleted user dee came back");
    let eve = r.user("eve").await?;
    ensure!(
        status(&eve) == Some(("FORCE_CHANGE_PASSWORD".into(), true)),
        "eve: {:?}",
        status(&eve)
    );
    ensure!(
        r.user("fay").await?.is_some(),
        "fay (written after the snapshot) is missing"
    );
    ensure!(
        attr(&ann, "email").as_deref() == Some("ann@compat.test")
            && attr(&ann, "email_verified").as_deref() == Some("true"),
        "ann's email: {:?}",
        ann
    );

    // Groups and memberships.
    let groups = r
        .client
        .admin()
        .admin_list_groups_for_user(r.client.req(AdminListGroupsForUserRequest {
            user_pool_id: pool_id.clone(),
            username: "ann".into(),
            consistent_read: true,
            ..Default::default()
        }))
        .await?
        .into_inner();
    let group_names: Vec<&str> = groups.groups.iter().map(|g| g.group_name.as_str()).collect();
    ensure!(group_names == ["admins"], "ann's groups {group_names:?}");

    // The sealed temporary password opens with the restored sealing key.
    let outbox = r
        .client
        .admin()
        .list_outbox_messages(r.client.req(ListOutboxMessagesRequest {
            user_pool_id: pool_id.clone(),
            consistent_read: true,
            max_results: 1000,
            ..Default::default()
        }))
        .await?
        .into_inner();
    let eve_msg = outbox
        .messages
        .iter()
        .find(|m| m.username == "eve" && m.kind == "TEMPORARY_PASSWORD")
        .ok_or_else(|| anyhow!("no temporary-password message for eve"))?;
    ensure!(
        eve_msg.code == "Eve-Temp-Pass-1!",
        "eve's temporary password does not open as written"
    );

    // Join tokens.
    let tokens = r
        .client
        .cluster()
        .list_join_tokens(r.client.req(ListJoinTokensRequest {}))
        .await?
        .into_inner();
    ensure!(tokens.tokens.len() == 1, "join tokens {:?}", tokens.tokens.len());

    // Sign-in with the replicated key and argon2 hash; a disabled user is
    // still refused.
    let sign_in = |username: &'static str| {
        let auth = r.client.auth();
        let client_id = r.id("client_id");
        async move {
            let mut auth = auth;
            auth.initiate_auth(InitiateAuthRequest {
                auth_flow: "USER_PASSWORD_AUTH".into(),
                client_id,
                auth_parameters: [
                    ("USERNAME".to_string(), username.to_string()),
                    ("PASSWORD".to_string(), PASSWORD.to_string()),
                ]
                .into_iter()
                .collect(),
                ..Default::default()
            })
            .await
        }
    };
    let ok = sign_in("ann")
        .await
        .map_err(|s| anyhow!("ann signs in: {s}"))?
        .into_inner();
    ensure!(
        ok.authentication_result.is_some_and(|a| !a.access_token.is_empty()),
        "ann got no tokens"
    );
    let refused = sign_in("cid").await;
    ensure!(refused.is_err(), "the disabled user cid signed in");
    println!("v1: pools, clients, users, groups, outbox, join tokens and sign-in as written");
    Ok(())
}
