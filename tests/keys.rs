//! Signing-key lifecycle and token holders (issue 16, section 5) on a real
//! three-node cluster:
//!
//! * a removed node's key moves to retiring at once (verify only), leaves
//!   the JWKS when its retiring period ends, and from then on the tokens it
//!   signed are refused by `GetUser` and `REFRESH_TOKEN_AUTH`; a token the
//!   removed node signs after it stopped being trusted is refused at once;
//! * tokens of a deleted app client, and of a disabled or deleted user, are
//!   refused by `GetUser` and the other user calls;
//! * `GetUser` returns only the app client's `read_attributes`.
//!
//! The retiring period is the longest token lifetime of any pool (at least
//! an hour of refresh tokens), so the first test bounds it with the
//! test-only knob `[tokens] max_key_retiring_secs` on every node.
//!
//! Run with:
//! `cargo test --test keys -- --test-threads=1 --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use common::auth::*;
use common::{poll_until, TestCluster};
use tessera::proto::*;
use tonic::Code;

/// The bound on the retiring period the first test configures.
const RETIRING_SECS: u64 = 6;
/// The clock skew it configures (all nodes share one clock here).
const SKEW_MS: u64 = 300;
const PASSWORD: &str = "Correct-Horse-9";

/// Restarts every node with `extra` appended to its config file, one at a
/// time, so the cluster keeps a quorum.
async fn reconfigure(c: &mut TestCluster, extra: &str) -> Result<()> {
    for id in c.live_ids() {
        let node = c.node_mut(id);
        node.stop(Duration::from_secs(10)).await?;
        let mut config = std::fs::read_to_string(&node.config_path)?;
        config.push_str(extra);
        std::fs::write(&node.config_path, config)?;
        c.start_node(id).await?;
        c.wait_for_leader(None, Duration::from_secs(15)).await?;
    }
    Ok(())
}

fn refused(what: &str, r: Result<impl std::fmt::Debug, tonic::Status>) -> Result<()> {
    match r {
        Ok(v) => Err(anyhow!("ATTACK SUCCEEDED: {what} was accepted: {v:?}")),
        Err(s) => check_exception(what, &s, Code::Unauthenticated, "NotAuthorizedException"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removed_nodes_key_leaves_the_jwks_on_schedule_and_its_tokens_are_refused() {
    let mut c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = async {
        reconfigure(
            &mut c,
            &format!("\n[tokens]\nmax_key_retiring_secs = {RETIRING_SECS}\nclock_skew_ms = {SKEW_MS}\n"),
        )
        .await?;
        removed_node_body(&c).await
    }
    .await;
    c.finish(r);
}

async fn removed_node_body(c: &TestCluster) -> Result<()> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "keys",
            ..Default::default()
        },
    )
    .await?;
    fx.wait_keys_published().await?;
    let user = "ria.keys";
    fx.confirmed_user(1, user, PASSWORD, "ria@example.com").await?;

    // Tokens signed by node 3, and by node 2 for comparison.
    let t3 = fx.sign_in(3, user, PASSWORD).await?;
    let kid3 = kid_of(&t3.access_token)?;
    ensure!(kid3.starts_with("n3-"), "node 3 signed with {kid3}");
    let t2 = fx.sign_in(2, user, PASSWORD).await?;
    fx.get_user(1, &t3.access_token)
        .await
        .map_err(status_err("GetUser with node 3's token before removal"))?;

    let removed_at = Instant::now();
    c.lazy_client(1)
        .remove_node(3)
        .await
        .map_err(status_err("RemoveNode 3"))?;
    println!("  node 3 removed");

    // Retiring: still published, its earlier tokens still verify.
    for id in [1, 2] {
        fx.jwks_with(id, &kid3).await?;
    }
    fx.get_user(1, &t3.access_token).await.map_err(status_err(
        "GetUser with node 3's earlier token while its key is retiring",
    ))?;

    // Node 3 is still running and still signs with its key (it never
    // applied its own removal); what it signs now is refused elsewhere.
    let mut failures = Vec::new();
    tokio::time::sleep(Duration::from_millis(SKEW_MS + 1_200)).await;
    match fx.sign_in(3, user, PASSWORD).await {
        Ok(late) => {
            println!("  removed node 3 still signs: kid {}", kid_of(&late.access_token)?);
            for id in [1, 2] {
                if let Err(e) = refused(
                    &format!("GetUser on node {id} with a token node 3 signed after its removal"),
                    fx.get_user(id, &late.access_token).await,
                ) {
                    failures.push(e.to_string());
                }
            }
        }
        Err(e) => println!("  removed node 3 no longer signs: {e:#}"),
    }

    // The key leaves every JWKS when the retiring period is over, not
    // before.
    for id in [1, 2] {
        let addr = fx.api_addrs[(id - 1) as usize].clone();
        let pool_id = fx.pool_id.clone();
        let kid = kid3.clone();
        let gone = poll_until(
            &format!("{kid3} to leave node {id}'s JWKS"),
            Duration::from_secs(RETIRING_SECS + 10),
            Duration::from_millis(100),
            || {
                let (addr, pool_id, kid) = (addr.clone(), pool_id.clone(), kid.clone());
                async move {
                    let (_, set) = fetch_jwks(&addr, &pool_id).await?;
                    Ok(set.find(&kid).is_none().then_some(()))
                }
            },
        )
        .await;
        match gone {
            Ok(()) => {
                let after = removed_at.elapsed();
                println!("  {kid3} left node {id}'s JWKS {after:?} after the removal began");
                if after < Duration::from_secs(RETIRING_SECS) {
                    failures.push(format!(
                        "{kid3} left node {id}'s JWKS after {after:?}, before its {RETIRING_SECS} s retiring period"
                    ));
                }
            }
            Err(e) => failures.push(format!("ATTACK SUCCEEDED: {e:#}")),
        }
    }

    // Retired: its tokens are refused, access and refresh alike.
    for id in [1, 2] {
        for (what, r) in [
            ("GetUser", fx.get_user(id, &t3.access_token).await.map(|_| ())),
            (
                "REFRESH_TOKEN_AUTH",
                fx.refresh_raw(id, &t3.refresh_token, user).await.map(|_| ()),
            ),
        ] {
            if let Err(e) = refused(
                &format!("{what} on node {id} with node 3's token after its key retired"),
                r,
            ) {
                failures.push(e.to_string());
            }
        }
    }
    ensure!(failures.is_empty(), "failures:\n{}", failures.join("\n"));

    // Node 2's key is untouched.
    for id in [1, 2] {
        fx.get_user(id, &t2.access_token)
            .await
            .map_err(status_err(&format!("GetUser on node {id} with node 2's token")))?;
        fx.refresh(id, &t2.refresh_token, user).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_of_deleted_clients_and_disabled_users_are_refused() {
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = holders_body(&c).await;
    c.finish(r);
}

async fn holders_body(c: &TestCluster) -> Result<()> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "holders",
            ..Default::default()
        },
    )
    .await?;
    fx.wait_keys_published().await?;
    let admin = fx.node(1);

    // A second app client that may read only `email`.
    let narrow = admin
        .admin()
        .create_user_pool_client(admin.req(CreateUserPoolClientRequest {
            user_pool_id: fx.pool_id.clone(),
            client_name: "narrow".into(),
            read_attributes: vec!["email".into()],
            ..Default::default()
        }))
        .await
        .map_err(status_err("CreateUserPoolClient narrow"))?
        .into_inner()
        .user_pool_client
        .ok_or_else(|| anyhow!("no client"))?;
    let nfx = Fixture {
        clients: fx.clients.clone(),
        api_addrs: fx.api_addrs.clone(),
        pool_id: fx.pool_id.clone(),
        client_id: narrow.client_id.clone(),
        client_secret: None,
        issuer: fx.issuer.clone(),
    };

    let user = "noor.holders";
    let mut req = fx.sign_up_request(user, PASSWORD, "noor@example.com");
    req.user_attributes.push(AttributeType {
        name: "name".into(),
        value: "Noor".into(),
    });
    fx.sign_up(1, req).await.map_err(status_err("SignUp"))?;
    let code = fx.confirmation_code(1, user).await?;
    fx.confirm(1, user, &code).await.map_err(status_err("ConfirmSignUp"))?;

    let mut failures = Vec::new();

    // GetUser through the narrow client shows only what it may read.
    let t = nfx.sign_in(2, user, PASSWORD).await?;
    let got = nfx
        .get_user(3, &t.access_token)
        .await
        .map_err(status_err("GetUser via narrow"))?;
    let names: Vec<&str> = got.user_attributes.iter().map(|a| a.name.as_str()).collect();
    println!("  GetUser through a client reading [email]: {names:?}");
    if names.iter().any(|n| !["sub", "email"].contains(n)) {
        failures.push(format!("GetUser returned attributes beyond read_attributes: {names:?}"));
    }
    let wide = fx.sign_in(1, user, PASSWORD).await?;
    let all = fx
        .get_user(2, &wide.access_token)
        .await
        .map_err(status_err("GetUser"))?;
    ensure!(
        all.user_attributes.iter().any(|a| a.name == "name"),
        "a client reading every attribute sees name: {:?}",
        all.user_attributes
    );

    // Delete the narrow client: its tokens stop working for every user call.
    admin
        .admin()
        .delete_user_pool_client(admin.req(DeleteUserPoolClientRequest {
            user_pool_id: fx.pool_id.clone(),
            client_id: narrow.client_id.clone(),
        }))
        .await
        .map_err(status_err("DeleteUserPoolClient"))?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in 1..=3u64 {
        let auth = fx.node(id).auth();
        let r = fx.get_user(id, &t.access_token).await;
        if let Ok(g) = &r {
            println!(
                "  GetUser on node {id} with a deleted client's token returned {:?}",
                g.user_attributes.iter().map(|a| &a.name).collect::<Vec<_>>()
            );
        }
        let checks = [
            (
                format!("GetUser on node {id} with a deleted client's token"),
                r.map(|_| ()),
            ),
            (
                format!("CheckPermission on node {id} with a deleted client's token"),
                auth.clone()
                    .check_permission(CheckPermissionRequest {
                        access_token: t.access_token.clone(),
                        permission: "course:create".into(),
                        consistent_read: false,
                    })
                    .await
                    .map(|_| ()),
            ),
            (
                format!("UpdateUserAttributes on node {id} with a deleted client's token"),
                auth.clone()
                    .update_user_attributes(UpdateUserAttributesRequest {
                        access_token: t.access_token.clone(),
                        user_attributes: vec![AttributeType {
                            name: "name".into(),
                            value: format!("Mallory {id}"),
                        }],
                        client_metadata: Default::default(),
                    })
                    .await
                    .map(|_| ()),
            ),
        ];
        for (what, r) in checks {
            if let Err(e) = refused(&what, r) {
                failures.push(e.to_string());
            }
        }
    }
    // Last, as it would end the wide client's session too when accepted.
    let r = fx
        .node(2)
        .auth()
        .global_sign_out(GlobalSignOutRequest {
            access_token: t.access_token.clone(),
        })
        .await
        .map(|_| ());
    if let Err(e) = refused("GlobalSignOut with a deleted client's token", r) {
        failures.push(e.to_string());
    }
    ensure!(failures.is_empty(), "failures:\n{}", failures.join("\n"));

    // A disabled user's access token is refused on every node.
    let t = fx.sign_in(1, user, PASSWORD).await?;
    fx.get_user(3, &t.access_token)
        .await
        .map_err(status_err("GetUser before disabling"))?;
    admin
        .admin()
        .admin_disable_user(admin.req(AdminDisableUserRequest {
            user_pool_id: fx.pool_id.clone(),
            username: user.into(),
        }))
        .await
        .map_err(status_err("AdminDisableUser"))?;
    for id in 1..=3u64 {
        let what = format!("GetUser on node {id} with a disabled user's token");
        let (fxr, tok) = (&fx, &t.access_token);
        let r = poll_until(
            &what,
            Duration::from_secs(5),
            Duration::from_millis(50),
            move || async move { Ok(fxr.get_user(id, tok).await.err()) },
        )
        .await?;
        check_exception(&what, &r, Code::Unauthenticated, "NotAuthorizedException")?;
        refused(
            &format!("REFRESH_TOKEN_AUTH on node {id} for a disabled user"),
            fx.refresh_raw(id, &t.refresh_token, user).await,
        )?;
    }

    // A deleted user's token is refused.
    let other = "omar.holders";
    fx.confirmed_user(2, other, PASSWORD, "omar@example.com").await?;
    let t = fx.sign_in(2, other, PASSWORD).await?;
    fx.get_user(1, &t.access_token)
        .await
        .map_err(status_err("GetUser before deletion"))?;
    admin
        .admin()
        .admin_delete_user(admin.req(AdminDeleteUserRequest {
            user_pool_id: fx.pool_id.clone(),
            username: other.into(),
        }))
        .await
        .map_err(status_err("AdminDeleteUser"))?;
    for id in 1..=3u64 {
        let what = format!("GetUser on node {id} with a deleted user's token");
        let (fxr, tok) = (&fx, &t.access_token);
        let r = poll_until(
            &what,
            Duration::from_secs(5),
            Duration::from_millis(50),
            move || async move { Ok(fxr.get_user(id, tok).await.err()) },
        )
        .await
        .context("a deleted user's token kept working")?;
        check_exception(&what, &r, Code::Unauthenticated, "NotAuthorizedException")?;
    }
    Ok(())
}
