//! Issue 16, section 3: codes and temporary passwords at rest. They wait in
//! the replicated outbox until delivered; before this change they sat there
//! in clear, so the Raft log, every snapshot and every copy of a data dir
//! held them. Now they are sealed under the cluster sealing key.
//!
//! The attack is reading the disk: the test writes confirmation codes, a
//! reset code and a temporary password, makes every node snapshot past
//! them, stops the nodes and searches every file of every data dir (and
//! every node's log) for the secrets and for the fixed text around them.
//! To show the search can find what is there, it must find the messages'
//! subjects, which stay in clear.
//!
//! Run with:
//! `cargo test --features failpoints --test sealed_outbox -- --test-threads=1 --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use common::auth::*;
use common::TestCluster;
use tessera::proto::*;

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// The files under `dirs` that contain `needle`.
fn holders(dirs: &[&Path], needle: &str) -> Result<Vec<String>> {
    let mut all = Vec::new();
    for d in dirs {
        files(d, &mut all)?;
    }
    let mut found = Vec::new();
    for f in all {
        let bytes = std::fs::read(&f)?;
        if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            found.push(f.display().to_string());
        }
    }
    Ok(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_and_temporary_passwords_never_reach_the_disk_in_clear() {
    let mut c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = body(&mut c).await;
    c.finish(r);
}

async fn body(c: &mut TestCluster) -> Result<()> {
    let f = Fixture::create(c, PoolSpec::default()).await?;
    // Confirmation codes, a reset code and an admin-set temporary password.
    let mut secrets = Vec::new();
    for i in 0..3 {
        let name = format!("pending{i}");
        f.sign_up(
            1,
            f.sign_up_request(&name, GOOD_PASSWORD, &format!("{name}@sealed.test")),
        )
        .await
        .map_err(status_err("SignUp"))?;
        secrets.push(f.outbox_message(2, &name, "CONFIRM_SIGN_UP").await?);
    }
    f.confirmed_user(1, "resetter", GOOD_PASSWORD, "resetter@sealed.test")
        .await?;
    f.node(2)
        .auth()
        .forgot_password(ForgotPasswordRequest {
            client_id: f.client_id.clone(),
            username: "resetter".into(),
            ..Default::default()
        })
        .await
        .map_err(status_err("ForgotPassword"))?;
    secrets.push(f.outbox_message(3, "resetter", "FORGOT_PASSWORD").await?);
    let admin = f.node(3);
    admin
        .admin()
        .admin_create_user(admin.req(AdminCreateUserRequest {
            user_pool_id: f.pool_id.clone(),
            username: "invited".into(),
            user_attributes: vec![AttributeValue {
                name: "email".into(),
                value: "invited@sealed.test".into(),
            }],
            desired_delivery_mediums: vec!["EMAIL".into()],
            ..Default::default()
        }))
        .await
        .map_err(status_err("AdminCreateUser"))?;
    secrets.push(f.outbox_message(1, "invited", "TEMPORARY_PASSWORD").await?);
    // Every node opens them: the key reached the joined nodes too.
    for m in &secrets {
        ensure!(
            !m.code.is_empty(),
            "{} for {}: no code in ListOutboxMessages",
            m.kind,
            m.username
        );
        ensure!(m.body.contains(&m.code), "{}: the body does not carry the code", m.kind);
        println!(
            "{} for {}: code of {} characters, readable by admins",
            m.kind,
            m.username,
            m.code.len()
        );
    }
    let temporary = secrets.last().map(|m| m.code.clone()).unwrap_or_default();
    ensure!(
        temporary.len() >= 12,
        "temporary password {:?} too short to search for",
        temporary.len()
    );

    // Snapshot past every one of them, on every node.
    let status = c.client(1).await?.describe_cluster().await?;
    let applied = status.nodes.iter().map(|n| n.applied_index).max().unwrap_or(0);
    c.create_pools(c.tuning.snapshot_every as usize + 10, "filler").await?;
    for id in 1..=3 {
        let snap = c.wait_snapshot_index(1, id, applied, Duration::from_secs(30)).await?;
        println!("node {id} snapshot at {snap} (messages written before {applied})");
    }
    for id in 1..=3 {
        c.node_mut(id).stop(Duration::from_secs(15)).await?;
    }

    let dirs: Vec<(std::path::PathBuf, std::path::PathBuf)> = (1..=3)
        .map(|id| (c.node(id).data_dir.clone(), c.node(id).log_path.clone()))
        .collect();
    let roots: Vec<&Path> = dirs.iter().map(|(d, _)| d.as_path()).collect();
    // The search sees replicated message data: the subjects are there.
    let subject = &secrets[0].subject;
    let seen = holders(&roots, subject)?;
    println!("subject {subject:?} found in {} files", seen.len());
    ensure!(
        !seen.is_empty(),
        "the clear subject {subject:?} is in no file: the search cannot see the outbox"
    );
    let mut needles: Vec<String> = secrets.iter().map(|m| m.body.clone()).collect();
    needles.push(temporary.clone());
    for fixed in [
        "verification code is",
        "password reset code is",
        "temporary password is",
    ] {
        needles.push(fixed.to_string());
    }
    for n in &needles {
        let found = holders(&roots, n)?;
        ensure!(
            found.is_empty(),
            "{:?} is in clear in {:?}",
            n.get(..24).unwrap_or(n),
            found
        );
    }
    // Nor do the node logs hold a code or a temporary password.
    for (_, log) in &dirs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for m in &secrets {
            ensure!(!text.contains(&m.body), "{} holds a message body", log.display());
        }
        ensure!(
            !text.contains(&temporary),
            "{} holds the temporary password",
            log.display()
        );
    }
    println!("no code, body or temporary password in clear in any data dir or log");

    // After a restart every node still opens them (the key is on disk).
    for id in 1..=3 {
        c.start_node(id).await?;
    }
    c.wait_for_leader(None, Duration::from_secs(20)).await?;
    let again = reconnect(c, &f).await?;
    for via in 1..=3 {
        let m = again.outbox_message(via, "invited", "TEMPORARY_PASSWORD").await?;
        ensure!(
            m.code == temporary,
            "node {via} after restart reads another temporary password"
        );
    }
    Ok(())
}

/// The fixture with fresh connections (the nodes restarted on their ports).
async fn reconnect(c: &TestCluster, f: &Fixture) -> Result<Fixture> {
    let mut clients = Vec::new();
    for id in 1..=3 {
        clients.push(
            c.client(id)
                .await
                .map_err(|e| anyhow!("reconnecting to node {id}: {e:#}"))?,
        );
    }
    Ok(Fixture {
        clients,
        api_addrs: f.api_addrs.clone(),
        pool_id: f.pool_id.clone(),
        client_id: f.client_id.clone(),
        client_secret: f.client_secret.clone(),
        issuer: f.issuer.clone(),
    })
}
