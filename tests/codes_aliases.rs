//! Issue 16, sections 3 and 4, on a real three-node cluster: codes bound to
//! the value they were sent to, reset codes voided by a password change,
//! `NEW_PASSWORD_REQUIRED` that cannot keep a changed email verified,
//! Cognito's `AttributesRequireVerificationBeforeUpdate`, and aliases held
//! only by verified values, with `AliasExistsException` and
//! `ForceAliasCreation`.
//!
//! Each scenario is an attack first: it was run against the code before the
//! fix and succeeded (see the report of issue 16); now it must fail.
//!
//! Run with:
//! `cargo test --features failpoints --test codes_aliases -- --test-threads=1 --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use common::auth::*;
use common::{poll_until, TestCluster};
use tessera::proto::*;
use tonic::Code;

async fn three_nodes() -> TestCluster {
    let started = Instant::now();
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    println!("cluster formed in {:?}", started.elapsed());
    c
}

fn admin_attr<'a>(list: &'a [AttributeValue], name: &str) -> Option<&'a str> {
    list.iter().find(|a| a.name == name).map(|a| a.value.as_str())
}

/// A consistent read on every node: each has applied every write
/// acknowledged so far, so a next call may go to any node.
async fn barrier_all(fx: &Fixture) -> Result<()> {
    for via in fx.node_ids() {
        fx.node(via)
            .describe_user_pool(&fx.pool_id, true)
            .await
            .map_err(status_err(&format!("consistent DescribeUserPool on node {via}")))?;
    }
    Ok(())
}

/// The result of a write, after [`barrier_all`] when it succeeded.
async fn settle<T>(fx: &Fixture, r: Result<T, tonic::Status>) -> Result<T, tonic::Status> {
    if r.is_ok() {
        barrier_all(fx)
            .await
            .map_err(|e| tonic::Status::internal(format!("barrier: {e:#}")))?;
    }
    r
}

/// What a test pool looks like.
struct Pool<'a> {
    name: &'a str,
    alias_attributes: &'a [&'a str],
    auto_verified: &'a [&'a str],
    /// `None`: the default (every auto-verified attribute waits).
    require_before_update: Option<&'a [&'a str]>,
}

/// A pool with optional, mutable email and phone number, and an app
/// client, reachable through every node.
async fn pool(c: &TestCluster, p: Pool<'_>) -> Result<Fixture> {
    let mut clients = Vec::new();
    let mut api_addrs = Vec::new();
    for id in 1..=c.nodes.len() as u64 {
        clients.push(c.client(id).await?);
        api_addrs.push(c.node(id).api_addr.clone());
    }
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let created = clients[0]
        .create_user_pool_with(CreateUserPoolRequest {
            pool_name: p.name.to_string(),
            alias_attributes: strings(p.alias_attributes),
            auto_verified_attributes: strings(p.auto_verified),
            password_hashing: fast_hashing(),
            user_attribute_update_settings: p.require_before_update.map(|r| UserAttributeUpdateSettingsType {
                attributes_require_verification_before_update: strings(r),
            }),
            ..Default::default()
        })
        .await
        .map_err(status_err("CreateUserPool"))?;
    let admin = &clients[1];
    let client = admin
        .admin()
        .create_user_pool_client(admin.req(CreateUserPoolClientRequest {
            user_pool_id: created.id.clone(),
            client_name: format!("{}-app", p.name),
            ..Default::default()
        }))
        .await
        .map_err(status_err("CreateUserPoolClient"))?
        .into_inner()
        .user_pool_client
        .ok_or_else(|| anyhow!("CreateUserPoolClient returned no client"))?;
    let issuer = discovery_issuer_eventually(&api_addrs[0], &created.id).await?;
    let fx = Fixture {
        clients,
        api_addrs,
        pool_id: created.id,
        client_id: client.client_id,
        client_secret: None,
        issuer,
    };
    // Sign-ins wait for every node's signing key to be published.
    fx.wait_keys_published().await?;
    Ok(fx)
}

/// `AdminCreateUser` (nothing sent) with `attributes`, raw.
async fn admin_create_raw(
    fx: &Fixture,
    via: u64,
    username: &str,
    attributes: &[(&str, &str)],
    force_alias_creation: bool,
) -> Result<UserType, tonic::Status> {
    let c = fx.node(via);
    let r = c
        .admin()
        .admin_create_user(
            c.req(AdminCreateUserRequest {
                user_pool_id: fx.pool_id.clone(),
                username: username.into(),
                user_attributes: attributes
                    .iter()
                    .map(|(n, v)| AttributeValue {
                        name: n.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
                temporary_password: "Temp0rary-Pass!".into(),
                message_action: "SUPPRESS".into(),
                force_alias_creation,
                ..Default::default()
            }),
        )
        .await;
    let r = settle(fx, r).await?.into_inner();
    r.user
        .ok_or_else(|| tonic::Status::internal("AdminCreateUser returned no user"))
}

/// A `CONFIRMED` user with `attributes` and the password `GOOD_PASSWORD`,
/// signed in: its access token.
async fn ready_user(fx: &Fixture, username: &str, attributes: &[(&str, &str)]) -> Result<String> {
    admin_create_raw(fx, 1, username, attributes, false)
        .await
        .map_err(status_err(&format!("AdminCreateUser {username}")))?;
    let c = fx.node(2);
    c.admin()
        .admin_set_user_password(c.req(AdminSetUserPasswordRequest {
            user_pool_id: fx.pool_id.clone(),
            username: username.into(),
            password: GOOD_PASSWORD.into(),
            permanent: true,
        }))
        .await
        .map_err(status_err("AdminSetUserPassword"))?;
    barrier_all(fx).await?;
    Ok(fx.sign_in(3, username, GOOD_PASSWORD).await?.access_token)
}

/// The pool's outbox messages as node `via` has them (`consistent`: after
/// a read barrier; else what it has applied).
async fn outbox(fx: &Fixture, via: u64, consistent: bool) -> Result<Vec<OutboxMessageType>> {
    let c = fx.node(via);
    Ok(c.admin()
        .list_outbox_messages(c.req(ListOutboxMessagesRequest {
            user_pool_id: fx.pool_id.clone(),
            max_results: 1000,
            next_token: String::new(),
            consistent_read: consistent,
        }))
        .await
        .map_err(status_err("ListOutboxMessages"))?
        .into_inner()
        .messages)
}

/// The newest outbox message of `kind` for `username` sent to
/// `destination`: its code.
async fn code_sent_to(fx: &Fixture, username: &str, kind: &str, destination: &str) -> Result<String> {
    poll_until(
        &format!("a {kind} message for {username} to {destination}"),
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            Ok(outbox(fx, 1, true)
                .await?
                .into_iter()
                .rev()
                .find(|m| m.username == username && m.kind == kind && m.destination == destination)
                .map(|m| m.code))
        },
    )
    .await
}

/// How many outbox messages of `kind` `username` has.
async fn messages_of(fx: &Fixture, username: &str, kind: &str) -> Result<usize> {
    Ok(outbox(fx, 1, true)
        .await?
        .iter()
        .filter(|m| m.username == username && m.kind == kind)
        .count())
}

async fn get_code(fx: &Fixture, via: u64, token: &str, attribute: &str) -> Result<(), tonic::Status> {
    let r = fx
        .node(via)
        .auth()
        .get_user_attribute_verification_code(GetUserAttributeVerificationCodeRequest {
            access_token: token.into(),
            attribute_name: attribute.into(),
            ..Default::default()
        })
        .await
        .map(|_| ());
    settle(fx, r).await
}

async fn update(
    fx: &Fixture,
    via: u64,
    token: &str,
    attributes: &[(&str, &str)],
) -> Result<UpdateUserAttributesResponse, tonic::Status> {
    let r = fx
        .node(via)
        .auth()
        .update_user_attributes(UpdateUserAttributesRequest {
            user_attributes: attrs(attributes),
            access_token: token.into(),
            ..Default::default()
        })
        .await;
    Ok(settle(fx, r).await?.into_inner())
}

async fn verify(fx: &Fixture, via: u64, token: &str, attribute: &str, code: &str) -> Result<(), tonic::Status> {
    let r = fx
        .node(via)
        .auth()
        .verify_user_attribute(VerifyUserAttributeRequest {
            access_token: token.into(),
            attribute_name: attribute.into(),
            code: code.into(),
        })
        .await
        .map(|_| ());
    settle(fx, r).await
}

async fn forgot(fx: &Fixture, via: u64, username: &str) -> Result<(), tonic::Status> {
    let r = forgot_unsettled(fx, via, username).await;
    settle(fx, r).await
}

/// `ForgotPassword` through `via`, without waiting for the other nodes.
async fn forgot_unsettled(fx: &Fixture, via: u64, username: &str) -> Result<(), tonic::Status> {
    fx.node(via)
        .auth()
        .forgot_password(ForgotPasswordRequest {
            client_id: fx.client_id.clone(),
            username: username.into(),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

async fn confirm_forgot(
    fx: &Fixture,
    via: u64,
    username: &str,
    code: &str,
    password: &str,
) -> Result<(), tonic::Status> {
    let r = fx
        .node(via)
        .auth()
        .confirm_forgot_password(ConfirmForgotPasswordRequest {
            client_id: fx.client_id.clone(),
            username: username.into(),
            confirmation_code: code.into(),
            password: password.into(),
            ..Default::default()
        })
        .await
        .map(|_| ());
    settle(fx, r).await
}

async fn confirm_sign_up(fx: &Fixture, via: u64, username: &str, code: &str, force: bool) -> Result<(), tonic::Status> {
    let r = fx
        .node(via)
        .auth()
        .confirm_sign_up(ConfirmSignUpRequest {
            client_id: fx.client_id.clone(),
            secret_hash: String::new(),
            username: username.into(),
            confirmation_code: code.into(),
            force_alias_creation: force,
        })
        .await
        .map(|_| ());
    settle(fx, r).await
}

/// `(email, email_verified)` of `username`, read consistently.
async fn email_of(fx: &Fixture, via: u64, username: &str) -> Result<(String, String)> {
    let u = fx
        .admin_get_user(via, username)
        .await
        .map_err(status_err(&format!("AdminGetUser {username}")))?;
    Ok((
        admin_attr(&u.user_attributes, "email").unwrap_or("").to_string(),
        admin_attr(&u.user_attributes, "email_verified")
            .unwrap_or("")
            .to_string(),
    ))
}

/// The username `login` (a username or an alias) signs in as.
async fn signs_in_as(fx: &Fixture, via: u64, login: &str, password: &str) -> Result<String> {
    let t = fx.sign_in(via, login, password).await?;
    Ok(fx
        .get_user(via, &t.access_token)
        .await
        .map_err(status_err("GetUser"))?
        .username)
}

// ---------------------------------------------------------------------------
// Section 3: codes bound to their value
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_for_one_value_cannot_verify_another() {
    let c = three_nodes().await;
    let r = binding_body(&c).await;
    c.finish(r);
}

async fn binding_body(c: &TestCluster) -> Result<()> {
    // 1. Nothing auto-verified: a changed email or phone replaces the old
    // one at once, unverified, and no code is sent for it.
    let fx = pool(
        c,
        Pool {
            name: "unverified-changes",
            alias_attributes: &[],
            auto_verified: &[],
            require_before_update: None,
        },
    )
    .await?;
    // An empty list at creation means Cognito's default (email); turning
    // verification off takes an update.
    let a = fx.node(1);
    a.admin()
        .update_user_pool(a.req(UpdateUserPoolRequest {
            user_pool_id: fx.pool_id.clone(),
            update_auto_verified_attributes: true,
            auto_verified_attributes: vec![],
            ..Default::default()
        }))
        .await
        .map_err(status_err("UpdateUserPool: no auto-verified attributes"))?;
    barrier_all(&fx).await?;
    let token = ready_user(
        &fx,
        "dana",
        &[("email", "a@example.com"), ("phone_number", "+15550000001")],
    )
    .await?;
    for (attr, a, b) in [
        ("email", "a@example.com", "b@example.com"),
        ("phone_number", "+15550000001", "+15550000002"),
    ] {
        get_code(&fx, 1, &token, attr)
            .await
            .map_err(status_err("GetUserAttributeVerificationCode"))?;
        let code_a = code_sent_to(&fx, "dana", "VERIFY_ATTRIBUTE", a).await?;
        update(&fx, 2, &token, &[(attr, b)])
            .await
            .map_err(status_err("UpdateUserAttributes"))?;
        // The attack: A's code verifies B. Before the fix this succeeded
        // and B was verified.
        expect_exception(
            &format!("VerifyUserAttribute {attr} {b} with the code sent to {a}"),
            verify(&fx, 3, &token, attr, &code_a).await,
            Code::InvalidArgument,
            "ExpiredCodeException",
        )?;
        let u = fx.admin_get_user(1, "dana").await.map_err(status_err("AdminGetUser"))?;
        ensure!(
            admin_attr(&u.user_attributes, attr) == Some(b)
                && admin_attr(&u.user_attributes, &format!("{attr}_verified")) != Some("true"),
            "{attr}: {:?}",
            u.user_attributes
        );
        // A code for B verifies B.
        get_code(&fx, 1, &token, attr)
            .await
            .map_err(status_err("GetUserAttributeVerificationCode"))?;
        let code_b = code_sent_to(&fx, "dana", "VERIFY_ATTRIBUTE", b).await?;
        verify(&fx, 2, &token, attr, &code_b)
            .await
            .map_err(status_err(&format!("VerifyUserAttribute {attr} {b}")))?;
        let u = fx.admin_get_user(3, "dana").await.map_err(status_err("AdminGetUser"))?;
        ensure!(
            admin_attr(&u.user_attributes, &format!("{attr}_verified")) == Some("true"),
            "{attr} after its own code: {:?}",
            u.user_attributes
        );
        println!("  ok: a code for {a} cannot verify {b}");
    }

    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_and_phone_changed_together_get_two_codes() {
    let c = three_nodes().await;
    let r = two_codes_body(&c).await;
    c.finish(r);
}

async fn two_codes_body(c: &TestCluster) -> Result<()> {
    // 2. Both auto-verified, waiting for verification (the default): one
    // call changing both sends two codes, each to its new value; the old
    // values serve until then.
    let fx = pool(
        c,
        Pool {
            name: "two-codes",
            alias_attributes: &["email"],
            auto_verified: &["email", "phone_number"],
            require_before_update: None,
        },
    )
    .await?;
    let token = ready_user(
        &fx,
        "erin",
        &[
            ("email", "erin@example.com"),
            ("email_verified", "true"),
            ("phone_number", "+15550000011"),
            ("phone_number_verified", "true"),
        ],
    )
    .await?;
    let r = update(
        &fx,
        1,
        &token,
        &[("email", "erin2@example.com"), ("phone_number", "+15550000012")],
    )
    .await
    .map_err(status_err("UpdateUserAttributes email and phone"))?;
    ensure!(
        r.code_delivery_details_list.len() == 2,
        "two attributes changed, {} codes reported: {:?}",
        r.code_delivery_details_list.len(),
        r.code_delivery_details_list
    );
    let email_code = code_sent_to(&fx, "erin", "VERIFY_ATTRIBUTE", "erin2@example.com").await?;
    let phone_code = code_sent_to(&fx, "erin", "VERIFY_ATTRIBUTE", "+15550000012").await?;
    ensure!(
        email_of(&fx, 2, "erin").await? == ("erin@example.com".into(), "true".into()),
        "the old email must serve until the new one is verified"
    );
    ensure!(signs_in_as(&fx, 3, "erin@example.com", GOOD_PASSWORD).await? == "erin");
    // The email's code cannot verify the phone.
    expect_exception(
        "VerifyUserAttribute phone_number with the email's code",
        verify(&fx, 2, &token, "phone_number", &email_code).await,
        Code::InvalidArgument,
        "CodeMismatchException",
    )?;
    verify(&fx, 3, &token, "email", &email_code)
        .await
        .map_err(status_err("VerifyUserAttribute email"))?;
    verify(&fx, 1, &token, "phone_number", &phone_code)
        .await
        .map_err(status_err("VerifyUserAttribute phone_number"))?;
    let u = fx.admin_get_user(2, "erin").await.map_err(status_err("AdminGetUser"))?;
    ensure!(
        admin_attr(&u.user_attributes, "email") == Some("erin2@example.com")
            && admin_attr(&u.user_attributes, "phone_number") == Some("+15550000012")
            && admin_attr(&u.user_attributes, "email_verified") == Some("true")
            && admin_attr(&u.user_attributes, "phone_number_verified") == Some("true"),
        "after both codes: {:?}",
        u.user_attributes
    );
    ensure!(signs_in_as(&fx, 1, "erin2@example.com", GOOD_PASSWORD).await? == "erin");
    println!("  ok: email and phone changed together got one code each");

    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_settings_without_waiting_replace_at_once() {
    let c = three_nodes().await;
    let r = no_waiting_body(&c).await;
    c.finish(r);
}

async fn no_waiting_body(c: &TestCluster) -> Result<()> {
    // 3. AttributesRequireVerificationBeforeUpdate empty: the new email
    // replaces the old at once, unverified, and the old alias is gone.
    let fx = pool(
        c,
        Pool {
            name: "no-waiting",
            alias_attributes: &["email"],
            auto_verified: &["email"],
            require_before_update: Some(&[]),
        },
    )
    .await?;
    let token = ready_user(
        &fx,
        "fred",
        &[("email", "fred@example.com"), ("email_verified", "true")],
    )
    .await?;
    let r = update(&fx, 2, &token, &[("email", "fred2@example.com")])
        .await
        .map_err(status_err("UpdateUserAttributes"))?;
    ensure!(
        r.code_delivery_details_list.len() == 1,
        "{:?}",
        r.code_delivery_details_list
    );
    ensure!(
        email_of(&fx, 3, "fred").await? == ("fred2@example.com".into(), "false".into()),
        "not in the list: the new value replaces the old at once, unverified"
    );
    ensure!(
        fx.sign_in(1, "fred@example.com", GOOD_PASSWORD).await.is_err()
            && fx.sign_in(1, "fred2@example.com", GOOD_PASSWORD).await.is_err(),
        "neither the old nor the unverified new email is an alias"
    );
    let d = c
        .client(1)
        .await?
        .describe_user_pool(&fx.pool_id, true)
        .await
        .map_err(status_err("DescribeUserPool"))?;
    ensure!(
        d.user_attribute_update_settings
            .as_ref()
            .is_some_and(|u| u.attributes_require_verification_before_update.is_empty()),
        "DescribeUserPool: {:?}",
        d.user_attribute_update_settings
    );
    println!("  ok: AttributesRequireVerificationBeforeUpdate [] replaces at once, unverified");

    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_codes_die_with_a_password_change_or_a_newer_code() {
    let c = three_nodes().await;
    let r = reset_body(&c).await;
    c.finish(r);
}

async fn reset_body(c: &TestCluster) -> Result<()> {
    // 4. Reset codes are voided by any password change and by a newer code.
    let fx = pool(
        c,
        Pool {
            name: "reset-codes",
            alias_attributes: &[],
            auto_verified: &["email"],
            require_before_update: None,
        },
    )
    .await?;
    let token = ready_user(
        &fx,
        "gina",
        &[("email", "gina@example.com"), ("email_verified", "true")],
    )
    .await?;
    forgot(&fx, 1, "gina").await.map_err(status_err("ForgotPassword"))?;
    let stale = code_sent_to(&fx, "gina", "FORGOT_PASSWORD", "gina@example.com").await?;
    fx.node(2)
        .auth()
        .change_password(ChangePasswordRequest {
            previous_password: GOOD_PASSWORD.into(),
            proposed_password: OTHER_PASSWORD.into(),
            access_token: token,
        })
        .await
        .map_err(status_err("ChangePassword"))?;
    barrier_all(&fx).await?;
    // The attack: a reset code asked for before the change undoes it.
    // Before the fix this succeeded.
    expect_exception(
        "ConfirmForgotPassword with a code from before ChangePassword",
        confirm_forgot(&fx, 3, "gina", &stale, "Att4cker-Chosen!").await,
        Code::InvalidArgument,
        "ExpiredCodeException",
    )?;
    fx.sign_in(1, "gina", OTHER_PASSWORD).await?;
    // AdminSetUserPassword voids one too.
    forgot(&fx, 2, "gina").await.map_err(status_err("ForgotPassword"))?;
    let stale = code_sent_to(&fx, "gina", "FORGOT_PASSWORD", "gina@example.com").await?;
    let a = fx.node(1);
    a.admin()
        .admin_set_user_password(a.req(AdminSetUserPasswordRequest {
            user_pool_id: fx.pool_id.clone(),
            username: "gina".into(),
            password: GOOD_PASSWORD.into(),
            permanent: true,
        }))
        .await
        .map_err(status_err("AdminSetUserPassword"))?;
    barrier_all(&fx).await?;
    expect_exception(
        "ConfirmForgotPassword with a code from before AdminSetUserPassword",
        confirm_forgot(&fx, 2, "gina", &stale, "Att4cker-Chosen!").await,
        Code::InvalidArgument,
        "ExpiredCodeException",
    )?;
    // A newer code voids the older one; the newer works once.
    forgot(&fx, 3, "gina").await.map_err(status_err("ForgotPassword"))?;
    let older = code_sent_to(&fx, "gina", "FORGOT_PASSWORD", "gina@example.com").await?;
    let n = messages_of(&fx, "gina", "FORGOT_PASSWORD").await?;
    forgot(&fx, 1, "gina").await.map_err(status_err("ForgotPassword"))?;
    poll_until(
        "the newer reset code in the outbox",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async { Ok((messages_of(&fx, "gina", "FORGOT_PASSWORD").await? > n).then_some(())) },
    )
    .await?;
    let newer = code_sent_to(&fx, "gina", "FORGOT_PASSWORD", "gina@example.com").await?;
    if older != newer {
        expect_exception(
            "ConfirmForgotPassword with the older of two codes",
            confirm_forgot(&fx, 2, "gina", &older, "Att4cker-Chosen!").await,
            Code::InvalidArgument,
            "CodeMismatchException",
        )?;
    }
    confirm_forgot(&fx, 3, "gina", &newer, "N3wer-Passw0rd!")
        .await
        .map_err(status_err("ConfirmForgotPassword with the newest code"))?;
    expect_exception(
        "ConfirmForgotPassword with a code already used",
        confirm_forgot(&fx, 1, "gina", &newer, "Att4cker-Chosen!").await,
        Code::InvalidArgument,
        "ExpiredCodeException",
    )?;
    fx.sign_in(2, "gina", "N3wer-Passw0rd!").await?;
    println!("  ok: reset codes die with a password change or a newer code");

    Ok(())
}

/// Only a build with failpoints can make a node apply late.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_is_found_on_a_node_that_has_not_applied_it_yet() {
    let mut c = three_nodes().await;
    let r = lagging_node_body(&mut c).await;
    c.finish(r);
}

/// Whether node `via` has applied the `FORGOT_PASSWORD` message for
/// `username` with `code` (a local read, no barrier).
#[cfg(feature = "failpoints")]
async fn applied_on(fx: &Fixture, via: u64, username: &str, code: &str) -> Result<bool> {
    Ok(outbox(fx, via, false)
        .await?
        .iter()
        .any(|m| m.username == username && m.kind == "FORGOT_PASSWORD" && m.code == code))
}

#[cfg(feature = "failpoints")]
async fn lagging_node_body(c: &mut TestCluster) -> Result<()> {
    // 5. A user asks for a reset code through one node and types it into
    // another that has not applied it yet (here: node 3 applies every
    // batch 1.5 s late). Before the fix, node 3 read no code and answered
    // ExpiredCodeException; or it read the previous code and hashed the
    // right guess with that code's salt, and the guess was refused as
    // wrong and counted against the code.
    c.node_mut(3).stop(Duration::from_secs(10)).await?;
    c.node_mut(3)
        .env
        .push(("FAILPOINTS".into(), "apply-delay-ms=return(1500)".into()));
    c.start_node(3).await?;
    let mut fx = pool(
        c,
        Pool {
            name: "lagging-node",
            alias_attributes: &[],
            auto_verified: &["email"],
            require_before_update: None,
        },
    )
    .await?;
    // A client that does not hide user existence: one that does pays for
    // a read barrier on every confirmation anyway, and so never read stale.
    fx.client_id = fx
        .create_app_client_from(
            1,
            CreateUserPoolClientRequest {
                client_name: "legacy".into(),
                prevent_user_existence_errors: "LEGACY".into(),
                ..Default::default()
            },
        )
        .await?
        .client_id;
    barrier_all(&fx).await?;
    ready_user(
        &fx,
        "hana",
        &[("email", "hana@example.com"), ("email_verified", "true")],
    )
    .await?;

    // No code on node 3 yet.
    forgot_unsettled(&fx, 1, "hana")
        .await
        .map_err(status_err("ForgotPassword"))?;
    let first = code_sent_to(&fx, "hana", "FORGOT_PASSWORD", "hana@example.com").await?;
    ensure!(
        !applied_on(&fx, 3, "hana", &first).await?,
        "node 3 was meant to be behind, but it has applied the code already"
    );
    let r = fx
        .node(3)
        .auth()
        .confirm_forgot_password(ConfirmForgotPasswordRequest {
            client_id: fx.client_id.clone(),
            username: "hana".into(),
            confirmation_code: first.clone(),
            password: OTHER_PASSWORD.into(),
            ..Default::default()
        })
        .await;
    r.map_err(status_err(
        "ConfirmForgotPassword on a node that has not applied the code",
    ))?;
    barrier_all(&fx).await?;
    fx.sign_in(1, "hana", OTHER_PASSWORD).await?;
    println!("  ok: a code node 3 had not applied yet reset the password there");

    // An older code on node 3, the newer one not yet.
    forgot(&fx, 2, "hana").await.map_err(status_err("ForgotPassword"))?;
    let older = code_sent_to(&fx, "hana", "FORGOT_PASSWORD", "hana@example.com").await?;
    poll_until(
        "node 3 applies the older code",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || async { Ok(applied_on(&fx, 3, "hana", &older).await?.then_some(())) },
    )
    .await?;
    let n = messages_of(&fx, "hana", "FORGOT_PASSWORD").await?;
    forgot_unsettled(&fx, 1, "hana")
        .await
        .map_err(status_err("ForgotPassword"))?;
    poll_until(
        "the newer reset code in the outbox",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async { Ok((messages_of(&fx, "hana", "FORGOT_PASSWORD").await? > n).then_some(())) },
    )
    .await?;
    let newer = code_sent_to(&fx, "hana", "FORGOT_PASSWORD", "hana@example.com").await?;
    ensure!(
        !applied_on(&fx, 3, "hana", &newer).await?,
        "node 3 was meant to hold the older code only"
    );
    confirm_forgot(&fx, 3, "hana", &newer, "N3wer-Passw0rd!")
        .await
        .map_err(status_err("ConfirmForgotPassword with a code newer than node 3's"))?;
    fx.sign_in(2, "hana", "N3wer-Passw0rd!").await?;
    println!("  ok: a code newer than node 3's reset the password there");

    // A wrong code is still wrong, after the barrier.
    forgot(&fx, 1, "hana").await.map_err(status_err("ForgotPassword"))?;
    let latest = code_sent_to(&fx, "hana", "FORGOT_PASSWORD", "hana@example.com").await?;
    let wrong = if latest == "000000" { "111111" } else { "000000" };
    expect_exception(
        "ConfirmForgotPassword with a wrong code on the lagging node",
        confirm_forgot(&fx, 3, "hana", wrong, "Att4cker-Chosen!").await,
        Code::InvalidArgument,
        "CodeMismatchException",
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_password_required_cannot_keep_a_changed_email_verified() {
    let c = three_nodes().await;
    let r = new_password_body(&c).await;
    c.finish(r);
}

async fn new_password_body(c: &TestCluster) -> Result<()> {
    // 5. NEW_PASSWORD_REQUIRED cannot keep a changed email verified.
    let fx = pool(
        c,
        Pool {
            name: "new-password",
            alias_attributes: &["email"],
            auto_verified: &["email"],
            require_before_update: None,
        },
    )
    .await?;
    admin_create_raw(
        &fx,
        1,
        "mallory",
        &[("email", "mallory@example.com"), ("email_verified", "true")],
        false,
    )
    .await
    .map_err(status_err("AdminCreateUser mallory"))?;
    let r = fx
        .password_auth(2, "mallory", "Temp0rary-Pass!")
        .await
        .map_err(status_err("InitiateAuth mallory"))?;
    ensure!(r.challenge_name == "NEW_PASSWORD_REQUIRED", "{:?}", r.challenge_name);
    let victim = "victim@example.com";
    fx.node(3)
        .auth()
        .respond_to_auth_challenge(RespondToAuthChallengeRequest {
            client_id: fx.client_id.clone(),
            challenge_name: "NEW_PASSWORD_REQUIRED".into(),
            session: r.session,
            challenge_responses: params(&[
                ("USERNAME", "mallory"),
                ("NEW_PASSWORD", GOOD_PASSWORD),
                ("userAttributes.email", victim),
            ]),
        })
        .await
        .map_err(status_err("RespondToAuthChallenge"))?;
    barrier_all(&fx).await?;
    // The attack, before the fix: the new address stayed verified, signed
    // in as an alias and received the ForgotPassword code.
    ensure!(
        email_of(&fx, 1, "mallory").await? == (victim.into(), "false".into()),
        "a changed email must not stay verified"
    );
    ensure!(
        fx.sign_in(2, victim, GOOD_PASSWORD).await.is_err(),
        "the unverified address signed in as an alias"
    );
    let sent_before = messages_of(&fx, "mallory", "FORGOT_PASSWORD").await?;
    ensure!(
        forgot(&fx, 3, "mallory").await.is_err(),
        "ForgotPassword must not send a code to an unverified address"
    );
    ensure!(messages_of(&fx, "mallory", "FORGOT_PASSWORD").await? == sent_before);
    // As Cognito does for an auto-verified attribute, a code went to the
    // new address, and only that code verifies it.
    let code = code_sent_to(&fx, "mallory", "VERIFY_ATTRIBUTE", victim).await?;
    ensure!(code.len() == 6, "verification code {code:?}");
    println!("  ok: NEW_PASSWORD_REQUIRED with a new email leaves it unverified");
    Ok(())
}

// ---------------------------------------------------------------------------
// Section 4: aliases and usernames
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_form_usernames_are_refused() {
    let c = three_nodes().await;
    let r = usernames_body(&c).await;
    c.finish(r);
}

async fn usernames_body(c: &TestCluster) -> Result<()> {
    let fx = pool(
        c,
        Pool {
            name: "aliases",
            alias_attributes: &["email", "phone_number"],
            auto_verified: &["email"],
            require_before_update: None,
        },
    )
    .await?;
    // A victim signs in with her verified email.
    fx.confirmed_user(1, "alice", GOOD_PASSWORD, "alice@example.com")
        .await?;
    barrier_all(&fx).await?;
    ensure!(signs_in_as(&fx, 2, "alice@example.com", GOOD_PASSWORD).await? == "alice");

    // 1. The attack, before the fix: a username that is alice's email
    // signed up and then shadowed her alias (usernames are looked up
    // first). Now refused, as Cognito refuses it.
    let r = fx
        .sign_up(
            2,
            fx.sign_up_request("alice@example.com", OTHER_PASSWORD, "mallory@example.com"),
        )
        .await;
    expect_exception(
        "SignUp with an email-form username",
        r,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    expect_exception(
        "AdminCreateUser with a phone-form username",
        admin_create_raw(&fx, 3, "+15550000099", &[("email", "p@example.com")], false).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    ensure!(signs_in_as(&fx, 3, "alice@example.com", GOOD_PASSWORD).await? == "alice");
    println!("  ok: alias-form usernames are refused");

    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_emails_reserve_nothing_and_force_alias_creation_moves_aliases() {
    let c = three_nodes().await;
    let r = force_body(&c).await;
    c.finish(r);
}

async fn force_body(c: &TestCluster) -> Result<()> {
    let fx = pool(
        c,
        Pool {
            name: "aliases",
            alias_attributes: &["email", "phone_number"],
            auto_verified: &["email"],
            require_before_update: None,
        },
    )
    .await?;
    // A victim signs in with her verified email.
    fx.confirmed_user(1, "alice", GOOD_PASSWORD, "alice@example.com")
        .await?;
    barrier_all(&fx).await?;
    ensure!(signs_in_as(&fx, 2, "alice@example.com", GOOD_PASSWORD).await? == "alice");

    // 2. An unverified email blocks no one. Before the fix the second
    // sign-up failed with UsernameExistsException.
    let shared = "shared@example.com";
    fx.sign_up(1, fx.sign_up_request("xavier", GOOD_PASSWORD, shared))
        .await
        .map_err(status_err("SignUp xavier"))?;
    fx.sign_up(2, fx.sign_up_request("yvonne", OTHER_PASSWORD, shared))
        .await
        .map_err(status_err("SignUp yvonne with the same, unverified email"))?;
    barrier_all(&fx).await?;
    let yvonne_code = fx.confirmation_code(3, "yvonne").await?;
    confirm_sign_up(&fx, 3, "yvonne", &yvonne_code, false)
        .await
        .map_err(status_err("ConfirmSignUp yvonne"))?;
    ensure!(signs_in_as(&fx, 1, shared, OTHER_PASSWORD).await? == "yvonne");
    println!("  ok: an unverified email reserved nothing");

    // 3. The second user to verify it: AliasExistsException, and nothing
    // changes; the code still works with ForceAliasCreation, which moves
    // the alias and unverifies the old owner's email.
    let xavier_code = fx.confirmation_code(1, "xavier").await?;
    expect_exception(
        "ConfirmSignUp of a second user with a verified alias taken",
        confirm_sign_up(&fx, 2, "xavier", &xavier_code, false).await,
        Code::AlreadyExists,
        "AliasExistsException",
    )?;
    let x = fx
        .admin_get_user(3, "xavier")
        .await
        .map_err(status_err("AdminGetUser"))?;
    ensure!(x.user_status == "UNCONFIRMED", "xavier is {}", x.user_status);
    ensure!(signs_in_as(&fx, 1, shared, OTHER_PASSWORD).await? == "yvonne");
    confirm_sign_up(&fx, 2, "xavier", &xavier_code, true)
        .await
        .map_err(status_err("ConfirmSignUp with ForceAliasCreation"))?;
    ensure!(
        email_of(&fx, 3, "yvonne").await? == (shared.into(), "false".into()),
        "the previous owner's email must be unverified"
    );
    ensure!(signs_in_as(&fx, 1, shared, GOOD_PASSWORD).await? == "xavier");
    ensure!(
        fx.sign_in(2, shared, OTHER_PASSWORD).await.is_err(),
        "the previous owner still signs in with the moved alias"
    );
    ensure!(signs_in_as(&fx, 2, "yvonne", OTHER_PASSWORD).await? == "yvonne");
    println!("  ok: ConfirmSignUp: AliasExistsException, then ForceAliasCreation moves the alias");

    // 4. AdminCreateUser with a verified email someone holds.
    let verified = [("email", shared), ("email_verified", "true")];
    expect_exception(
        "AdminCreateUser with a verified email another user holds",
        admin_create_raw(&fx, 1, "zoe", &verified, false).await,
        Code::AlreadyExists,
        "AliasExistsException",
    )?;
    admin_create_raw(&fx, 2, "zoe", &verified, true)
        .await
        .map_err(status_err("AdminCreateUser with ForceAliasCreation"))?;
    ensure!(
        email_of(&fx, 3, "xavier").await? == (shared.into(), "false".into()),
        "ForceAliasCreation must unverify the previous owner"
    );
    ensure!(email_of(&fx, 1, "zoe").await? == (shared.into(), "true".into()));
    ensure!(
        fx.sign_in(1, shared, GOOD_PASSWORD).await.is_err(),
        "xavier still signs in with the alias zoe took"
    );
    // An unverified email given to AdminCreateUser takes nothing.
    admin_create_raw(&fx, 3, "walt", &[("email", "alice@example.com")], false)
        .await
        .map_err(status_err("AdminCreateUser with alice's email, unverified"))?;
    ensure!(signs_in_as(&fx, 1, "alice@example.com", GOOD_PASSWORD).await? == "alice");
    println!("  ok: AdminCreateUser: AliasExistsException, then ForceAliasCreation");
    Ok(())
}
