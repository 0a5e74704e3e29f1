//! `tessera cluster form`, the unattended formation a Compose init service
//! runs: it must wait for the first node, initialise it once (keeping the
//! token), add the other nodes, and be harmless to re-run.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::Duration;

use common::*;
use tessera::client::Client;

#[tokio::test]
async fn form_initialises_once_adds_members_and_is_idempotent() {
    let root = tempfile::Builder::new().prefix("tessera-form-").tempdir().unwrap();
    let bin = pin_binary(root.path()).unwrap();
    let mut nodes: Vec<TestNode> = (1..=3)
        .map(|id| TestNode::create(id, root.path(), &bin, &RaftTuning::default()).unwrap())
        .collect();
    let token_file = root.path().join("admin-token");
    // Nodes are started with a join token made before the cluster exists;
    // `form` registers it after init.
    let join = tessera::raft::join::JoinToken::generate().reveal();
    for n in nodes.iter_mut() {
        n.env.push(("TESSERA_JOIN_TOKEN".into(), join.clone()));
    }
    let args = |nodes: &[TestNode]| {
        let mut a = vec![
            "--endpoint".to_string(),
            nodes[0].url(),
            "cluster".into(),
            "form".into(),
            "--token-file".into(),
            token_file.display().to_string(),
            "--timeout".into(),
            "60".into(),
            "--join-token".into(),
            join.clone(),
        ];
        for n in &nodes[1..] {
            a.push("--member".into());
            a.push(format!("{}={},{}", n.id, n.peer_addr, n.api_addr));
        }
        a
    };
    // Start the form command before node 1 is up: it must wait for it.
    let form = {
        let (bin, a) = (bin.clone(), args(&nodes));
        tokio::spawn(async move { run_cli_timeout(&bin, a, Duration::from_secs(90)).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in nodes.iter_mut() {
        n.start().unwrap();
    }
    let out = form.await.unwrap().unwrap();
    assert!(
        out.status.success(),
        "form failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let token = std::fs::read_to_string(&token_file).unwrap().trim().to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // Node 3 learns the final membership as it applies it; wait for that.
    let admin = Client::connect(&nodes[2].url(), Some(token.clone())).await.unwrap();
    poll_until(
        "3 voters as node 3 sees it",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            let status = admin.describe_cluster().await?;
            let voters = status.members.iter().filter(|m| m.role == "voter").count();
            anyhow::ensure!(voters <= 3, "{status:?}");
            Ok((voters == 3).then_some(()))
        },
    )
    .await
    .unwrap();

    // Again: nothing changes, the token stays.
    let out = run_cli_timeout(&bin, args(&nodes), Duration::from_secs(90))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("already a voter"));
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), token);
    for n in nodes.iter_mut() {
        n.kill9();
    }
}
