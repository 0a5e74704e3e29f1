//! Issue 16, section 6 ("no silent loss, no unbounded abuse"), against real
//! `tessera serve` nodes over loopback:
//!
//! * filling a pool's outbox is refused with `LimitExceededException`, no
//!   earlier message is lost (counted through `ListOutboxMessages`), and the
//!   refused call leaves no user behind;
//! * one email address cannot be sent an unbounded number of codes through
//!   many accounts;
//! * with `PreventUserExistenceErrors` on, every recovery and confirmation
//!   path answers an unknown user like a known one, in the same median time;
//! * concurrent consistent reads share ReadIndex rounds.

#![allow(clippy::disallowed_methods)] // wall-clock timing is what the latency test measures

mod common;

use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use common::auth::*;
use common::{RaftTuning, TestCluster};
use futures::StreamExt;
use tessera::proto::*;
use tonic::Code;

/// Messages of `pool_id` in the outbox, counted page by page.
async fn count_outbox(client: &tessera::client::Client, pool_id: &str) -> Result<usize> {
    let mut n = 0;
    let mut next_token = String::new();
    loop {
        let page = client
            .admin()
            .list_outbox_messages(client.req(ListOutboxMessagesRequest {
                user_pool_id: pool_id.to_string(),
                max_results: 1000,
                next_token: next_token.clone(),
                consistent_read: true,
            }))
            .await
            .map_err(status_err("ListOutboxMessages"))?
            .into_inner();
        n += page.messages.len();
        if page.next_token.is_empty() {
            return Ok(n);
        }
        next_token = page.next_token;
    }
}

fn exception(s: &tonic::Status) -> String {
    s.metadata()
        .get(EXCEPTION_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Test 6. Before the fix, 10,050 `AdminCreateUser` calls (each storing a
/// temporary-password message) all succeeded and the outbox silently kept
/// only the last 10,000: 50 users never got their password. Now the pool's
/// queue bound refuses the call that would overflow it, every accepted
/// message is still there, and no refused user exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_outbox_refuses_and_loses_nothing() -> Result<()> {
    let c = TestCluster::start(3).await?;
    let f = Fixture::create(&c, PoolSpec::default()).await?;
    const ATTEMPTS: usize = 10_050;
    let results: Vec<(String, Result<(), tonic::Status>)> = futures::stream::iter(0..ATTEMPTS)
        .map(|i| {
            let client = f.node(1 + (i % 3) as u64).clone();
            let pool_id = f.pool_id.clone();
            async move {
                let username = format!("fill{i}");
                let r = client
                    .admin()
                    .admin_create_user(client.req(AdminCreateUserRequest {
                        user_pool_id: pool_id,
                        username: username.clone(),
                        user_attributes: vec![AttributeValue {
                            name: "email".into(),
                            value: format!("{username}@fill.test"),
                        }],
                        ..Default::default()
                    }))
                    .await
                    .map(|_| ());
                (username, r)
            }
        })
        .buffer_unordered(48)
        .collect()
        .await;
    let mut accepted = 0usize;
    let mut refused = Vec::new();
    for (username, r) in results {
        match r {
            Ok(()) => accepted += 1,
            Err(s) => {
                ensure!(
                    exception(&s) == "LimitExceededException" && s.code() == Code::ResourceExhausted,
                    "AdminCreateUser {username}: expected LimitExceededException, got {:?} {}",
                    s.code(),
                    s.message()
                );
                refused.push(username);
            }
        }
    }
    let stored = count_outbox(f.node(2), &f.pool_id).await?;
    println!(
        "accepted {accepted}, refused {}, messages in the outbox {stored}",
        refused.len()
    );
    ensure!(
        stored == accepted,
        "{accepted} calls were acknowledged with a message each, but the outbox holds {stored}: messages were lost"
    );
    ensure!(
        !refused.is_empty(),
        "all {ATTEMPTS} enqueues were accepted: the queue is unbounded"
    );
    // The refused calls changed nothing: their users do not exist.
    for username in refused.iter().take(20) {
        expect_exception(
            &format!("AdminGetUser {username} (refused)"),
            f.admin_get_user(3, username).await,
            Code::NotFound,
            "UserNotFoundException",
        )?;
    }
    // And the bound holds on: one more is refused too.
    let r = f
        .node(1)
        .admin()
        .admin_create_user(f.node(1).req(AdminCreateUserRequest {
            user_pool_id: f.pool_id.clone(),
            username: "one-more".into(),
            user_attributes: vec![AttributeValue {
                name: "email".into(),
                value: "one-more@fill.test".into(),
            }],
            ..Default::default()
        }))
        .await;
    expect_exception(
        "AdminCreateUser one-more",
        r,
        Code::ResourceExhausted,
        "LimitExceededException",
    )?;
    // The backlog gauges.
    let open = c.node(1).metric("tessera_outbox_open").await?;
    ensure!(
        open == Some(accepted as f64),
        "tessera_outbox_open = {open:?}, want {accepted}"
    );
    let backlog = c.node(1).metric("tessera_outbox_backlog").await?;
    ensure!(
        backlog == Some(0.0),
        "stored (not delivered) messages are no backlog: {backlog:?}"
    );
    ensure!(
        c.node(1).metric("tessera_outbox_oldest_age_seconds").await?.is_some(),
        "no age gauge"
    );
    Ok(())
}

/// Many accounts naming one victim's email address: before the fix, every
/// one of 40 sign-ups sent the victim a code. Now the destination's bucket
/// (burst 20 by default) refuses the rest with `LimitExceededException`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_destination_cannot_be_flooded() -> Result<()> {
    let c = TestCluster::start(1).await?;
    let f = Fixture::create(&c, PoolSpec::default()).await?;
    let mut sent = 0;
    let mut refused = 0;
    for i in 0..40 {
        let req = f.sign_up_request(&format!("flood{i}"), GOOD_PASSWORD, "Victim@Example.test");
        match f.sign_up(1, req).await {
            Ok(_) => sent += 1,
            Err(s) => {
                check_exception(
                    "SignUp to a flooded destination",
                    &s,
                    Code::ResourceExhausted,
                    "LimitExceededException",
                )?;
                refused += 1;
            }
        }
    }
    println!("codes sent to one destination: {sent}, refused {refused}");
    ensure!(sent <= 20, "{sent} codes went to one address");
    ensure!(refused == 40 - sent);
    // Another address is not affected.
    f.sign_up(
        1,
        f.sign_up_request("bystander", GOOD_PASSWORD, "bystander@example.test"),
    )
    .await
    .map_err(status_err("SignUp bystander"))?;
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Known and unknown users through each recovery and confirmation path,
/// interleaved, through one node: the answers look alike, and the median
/// latencies are within 10%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_answer_like_known_ones_in_the_same_time() -> Result<()> {
    // The medians of two noisy latency samples (each call is a read
    // barrier and a replicated write, a few ms with fsync jitter) need about
    // a hundred calls each to be within a few percent of the true ones; the
    // first WARM_UP pairs of each path are dropped (connections, caches).
    // The nodes allow that many code sends and checks from one address.
    const SAMPLES: usize = 100;
    const WARM_UP: usize = 5;
    let tuning = RaftTuning {
        extra_config: "[limits]\ncode_sends_burst = 1000\ncode_checks_burst = 1000\n".into(),
        ..Default::default()
    };
    let c = TestCluster::start_with(3, tuning).await?;
    let f = Fixture::create(&c, PoolSpec::default()).await?;
    let via = 1;
    let mut confirmed = Vec::new();
    let mut unconfirmed = Vec::new();
    for i in 0..SAMPLES {
        let name = format!("known{i}");
        f.confirmed_user(via, &name, GOOD_PASSWORD, &format!("{name}@timing.test"))
            .await?;
        confirmed.push(name);
        let name = format!("pending{i}");
        f.sign_up(
            via,
            f.sign_up_request(&name, GOOD_PASSWORD, &format!("{name}@timing.test")),
        )
        .await
        .map_err(status_err("SignUp"))?;
        unconfirmed.push(name);
    }
    let auth = f.node(via).auth();
    let mut report = Vec::new();
    // One closure per path: (known?, user) -> the call's result as text.
    for path in [
        "ForgotPassword",
        "ConfirmForgotPassword",
        "ResendConfirmationCode",
        "ConfirmSignUp",
    ] {
        let mut known_t = Vec::new();
        let mut unknown_t = Vec::new();
        for i in 0..SAMPLES {
            for known in [i % 2 == 0, i % 2 != 0] {
                let user = match (known, path) {
                    (true, "ForgotPassword" | "ConfirmForgotPassword") => confirmed[i].clone(),
                    (true, _) => unconfirmed[i].clone(),
                    (false, _) => format!("ghost-{path}-{i}"),
                };
                let start = Instant::now();
                let answer: std::result::Result<String, tonic::Status> = match path {
                    "ForgotPassword" => auth
                        .clone()
                        .forgot_password(ForgotPasswordRequest {
                            client_id: f.client_id.clone(),
                            username: user.clone(),
                            ..Default::default()
                        })
                        .await
                        .map(|r| format!("{:?}", r.into_inner().code_delivery_details.map(|d| d.delivery_medium))),
                    "ConfirmForgotPassword" => auth
                        .clone()
                        .confirm_forgot_password(ConfirmForgotPasswordRequest {
                            client_id: f.client_id.clone(),
                            username: user.clone(),
                            confirmation_code: "000000".into(),
                            password: OTHER_PASSWORD.into(),
                            ..Default::default()
                        })
                        .await
                        .map(|_| "ok".to_string()),
                    "ResendConfirmationCode" => auth
                        .clone()
                        .resend_confirmation_code(ResendConfirmationCodeRequest {
                            client_id: f.client_id.clone(),
                            username: user.clone(),
                            ..Default::default()
                        })
                        .await
                        .map(|r| format!("{:?}", r.into_inner().code_delivery_details.map(|d| d.delivery_medium))),
                    _ => auth
                        .clone()
                        .confirm_sign_up(ConfirmSignUpRequest {
                            client_id: f.client_id.clone(),
                            username: user.clone(),
                            confirmation_code: "000000".into(),
                            ..Default::default()
                        })
                        .await
                        .map(|_| "ok".to_string()),
                };
                let took = start.elapsed();
                if i < WARM_UP {
                    continue;
                }
                let shape = match &answer {
                    Ok(s) => format!("ok {s}"),
                    Err(s) => format!("{:?} {}", s.code(), exception(s)),
                };
                if known {
                    known_t.push(took);
                } else {
                    unknown_t.push(took);
                }
                report.push((path, known, shape));
            }
        }
        let (k, u) = (median(known_t), median(unknown_t));
        let ratio = u.as_secs_f64() / k.as_secs_f64();
        println!("{path}: median known {k:?}, unknown {u:?}, ratio {ratio:.3}");
        ensure!(
            (0.9..=1.1).contains(&ratio),
            "{path}: unknown users answer in {u:?}, known ones in {k:?} (ratio {ratio:.3}, want within 10%)"
        );
    }
    // Same answer shapes for known and unknown users, per path.
    for path in [
        "ForgotPassword",
        "ConfirmForgotPassword",
        "ResendConfirmationCode",
        "ConfirmSignUp",
    ] {
        let shapes = |known: bool| {
            report
                .iter()
                .filter(|(p, k, _)| *p == path && *k == known)
                .map(|(_, _, s)| s.clone())
                .collect::<std::collections::BTreeSet<_>>()
        };
        ensure!(
            shapes(true) == shapes(false),
            "{path}: known users got {:?}, unknown {:?}",
            shapes(true),
            shapes(false)
        );
    }
    Ok(())
}

/// 300 concurrent consistent reads through a follower share ReadIndex
/// rounds: far fewer rounds than callers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_read_barriers_share_rounds() -> Result<()> {
    let c = TestCluster::start(3).await?;
    let f = Fixture::create(&c, PoolSpec::default()).await?;
    let leader = c.leader_id().await?.ok_or_else(|| anyhow!("no leader"))?;
    let via = f
        .node_ids()
        .into_iter()
        .find(|&id| id != leader)
        .ok_or_else(|| anyhow!("no follower"))?;
    let rounds = |v: Option<f64>| v.unwrap_or(0.0);
    let node = c.node(via);
    let r0 = rounds(node.metric("tessera_read_index_rounds_total").await?);
    let c0 = rounds(node.metric("tessera_read_index_callers_total").await?);
    let oks: Vec<Result<usize>> = futures::stream::iter(0..300)
        .map(|_| {
            let client = f.node(via).clone();
            let pool = f.pool_id.clone();
            async move { count_outbox(&client, &pool).await }
        })
        .buffer_unordered(300)
        .collect()
        .await;
    for r in oks {
        r?;
    }
    let r1 = rounds(node.metric("tessera_read_index_rounds_total").await?);
    let c1 = rounds(node.metric("tessera_read_index_callers_total").await?);
    let (dr, dc) = (r1 - r0, c1 - c0);
    println!("300 consistent reads: {dc} barriers, {dr} ReadIndex rounds");
    ensure!(dc >= 300.0, "only {dc} barriers counted");
    ensure!(dr * 5.0 <= dc, "{dr} rounds for {dc} barriers: not coalesced");
    Ok(())
}
