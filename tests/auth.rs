//! User-pool flows on a real three-node cluster (issue 3): sign-up, codes
//! from the replicated outbox, sign-in, refresh, revocation, admin-created
//! users and key rotation, over gRPC and HTTP. Tokens are verified with the
//! independent `jsonwebtoken` crate against nothing but the JWKS each node
//! serves.
//!
//! Run with:
//! `cargo test --test auth -- --test-threads=1 --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use common::auth::*;
use common::{http_get, poll_until, TestCluster};
use serde_json::{json, Value};
use tessera::proto::*;
use tonic::Code;

/// How long a follower may lag behind a write it did not take (revocations,
/// new keys) before a test calls it a bug.
const REPLICATION: Duration = Duration::from_secs(5);

async fn three_nodes() -> TestCluster {
    let started = Instant::now();
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    println!("cluster formed in {:?}", started.elapsed());
    c
}

/// Waits for every node's first signing key to be in every JWKS before a
/// scenario starts (see `signs_only_with_published_keys` for the moment
/// before).
async fn ready(fx: &Fixture) -> Result<()> {
    let took = fx.wait_keys_published().await?;
    println!("every node's key published after a further {took:?}");
    Ok(())
}

fn attr<'a>(list: &'a [AttributeType], name: &str) -> Option<&'a str> {
    list.iter().find(|a| a.name == name).map(|a| a.value.as_str())
}

fn admin_attr<'a>(list: &'a [AttributeValue], name: &str) -> Option<&'a str> {
    list.iter().find(|a| a.name == name).map(|a| a.value.as_str())
}

/// Polls until `f` yields an error that is `exception`, on a node that may
/// not have applied the write yet; an unexpected error fails at once.
async fn refused_within<T, F, Fut>(what: &str, exception: &str, code: Code, mut f: F) -> Result<Duration>
where
    T: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Err(s) => {
                check_exception(what, &s, code, exception)?;
                println!("  ok: {what} -> {} after {:?}", s.message(), start.elapsed());
                return Ok(start.elapsed());
            }
            Ok(v) => {
                if start.elapsed() > REPLICATION {
                    anyhow::bail!("{what}: still accepted after {REPLICATION:?}: {v:?}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// 1. Full lifecycle across nodes
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_across_nodes() {
    let c = three_nodes().await;
    let r = lifecycle_body(&c).await;
    c.finish(r);
}

async fn lifecycle_body(c: &TestCluster) -> Result<()> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "lifecycle",
            alias_attributes: &["email"],
            ..Default::default()
        },
    )
    .await?;
    ready(&fx).await?;

    // The issuer is {public_url}/{pool_id}, public_url being node 1's api
    // URL given at `cluster init`, and every node says the same.
    let want_issuer = format!("http://{}/{}", c.node(1).api_addr, fx.pool_id);
    ensure!(fx.issuer == want_issuer, "issuer {} != {want_issuer}", fx.issuer);
    for id in 2..=3 {
        let iss = discovery_issuer_eventually(&c.node(id).api_addr, &fx.pool_id).await?;
        ensure!(iss == fx.issuer, "node {id}'s discovery issuer {iss} != {}", fx.issuer);
    }

    let username = "Alice.Lifecycle";
    let email = "alice.lifecycle@example.com";

    // Sign up on node 1.
    let up = fx
        .sign_up(1, fx.sign_up_request(username, GOOD_PASSWORD, email))
        .await
        .map_err(status_err("SignUp on node 1"))?;
    ensure!(!up.user_confirmed, "a fresh sign-up must not be confirmed");
    ensure!(up.user_sub.len() == 36, "user_sub {:?} is not a UUID", up.user_sub);
    let d = up
        .code_delivery_details
        .as_ref()
        .ok_or_else(|| anyhow!("SignUp returned no code_delivery_details"))?;
    ensure!(
        d.delivery_medium == "EMAIL" && d.attribute_name == "email",
        "code delivery {d:?}"
    );
    ensure!(
        !d.destination.contains(email),
        "the destination must be masked: {:?}",
        d.destination
    );
    let u = fx
        .admin_get_user(3, username)
        .await
        .map_err(status_err("AdminGetUser on node 3"))?;
    ensure!(u.user_status == "UNCONFIRMED", "status after SignUp: {}", u.user_status);
    ensure!(admin_attr(&u.user_attributes, "email_verified") == Some("false"));

    // An unverified email is no sign-in alias yet.
    expect_exception(
        "sign-in by the unverified email (node 2)",
        fx.password_auth(2, email, GOOD_PASSWORD).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    // Not confirmed yet: the right password is refused with a clear reason.
    expect_exception(
        "sign-in before confirmation (node 3)",
        fx.password_auth(3, username, GOOD_PASSWORD).await,
        Code::FailedPrecondition,
        "UserNotConfirmedException",
    )?;

    // The code from the outbox; a wrong one is refused; confirm on node 2.
    let code = fx.confirmation_code(2, username).await?;
    let wrong = if code == "123456" { "654321" } else { "123456" };
    expect_exception(
        "ConfirmSignUp with a wrong code (node 2)",
        fx.confirm(2, username, wrong).await,
        Code::InvalidArgument,
        "CodeMismatchException",
    )?;
    fx.confirm(2, username, &code)
        .await
        .map_err(status_err("ConfirmSignUp on node 2"))?;
    expect_exception(
        "ConfirmSignUp again (node 3)",
        fx.confirm(3, username, &code).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    let u = fx
        .admin_get_user(1, username)
        .await
        .map_err(status_err("AdminGetUser on node 1"))?;
    ensure!(
        u.user_status == "CONFIRMED",
        "status after ConfirmSignUp: {}",
        u.user_status
    );
    ensure!(
        admin_attr(&u.user_attributes, "email_verified") == Some("true"),
        "email_verified after confirmation: {:?}",
        u.user_attributes
    );

    // Sign in on node 3.
    let t = fx.sign_in(3, username, GOOD_PASSWORD).await?;
    ensure!(t.expires_in == 3600, "expires_in {}", t.expires_in);
    let expected = Expected {
        sub: &up.user_sub,
        username,
        email,
        email_verified: true,
        issuer: &fx.issuer,
        client_id: &fx.client_id,
        validity: 3600,
    };
    let (id_kid, id_claims) = fx.verify_id_token_everywhere(&t.id_token).await?;
    check_id_claims(&id_claims, &expected)?;
    let (access_kid, access_claims) = fx.verify_access_token_everywhere(&t.access_token).await?;
    check_access_claims(&access_claims, &expected)?;
    ensure!(
        id_kid == access_kid,
        "id and access tokens of one sign-in have different kids"
    );
    // Kids are "n<node id>-...": node 3 signed with its own key.
    ensure!(
        id_kid.starts_with("n3-"),
        "a sign-in on node 3 was signed with {id_kid}"
    );
    ensure!(
        id_claims["jti"] != access_claims["jti"],
        "id and access tokens share a jti"
    );
    ensure!(
        id_claims["origin_jti"] == access_claims["origin_jti"],
        "id and access tokens of one sign-in have different origin_jti"
    );
    println!("  ok: tokens from node 3 verify on every node's JWKS (kid {id_kid})");

    // The independent verifier is not vacuous: a forged claim, a foreign
    // audience and a foreign issuer are all refused.
    let (_, set1) = fx.jwks(1).await?;
    let forged = tamper(&t.id_token, "cognito:username", json!("mallory"))?;
    ensure!(
        verify_with_jwks(&forged, &set1, &fx.issuer, Some(&fx.client_id)).is_err(),
        "jsonwebtoken accepted a forged id token"
    );
    ensure!(
        verify_with_jwks(&t.id_token, &set1, &fx.issuer, Some("another-client")).is_err(),
        "jsonwebtoken accepted an id token for another audience"
    );
    ensure!(
        verify_with_jwks(&t.id_token, &set1, "http://elsewhere/pool", Some(&fx.client_id)).is_err(),
        "jsonwebtoken accepted an id token for another issuer"
    );

    // GetUser with the access token, on every node.
    for id in 1..=3 {
        let g = fx
            .get_user(id, &t.access_token)
            .await
            .map_err(status_err(&format!("GetUser on node {id}")))?;
        ensure!(g.username == username, "GetUser on node {id}: username {}", g.username);
        ensure!(attr(&g.user_attributes, "sub") == Some(up.user_sub.as_str()), "{g:?}");
        ensure!(attr(&g.user_attributes, "email") == Some(email), "{g:?}");
        ensure!(attr(&g.user_attributes, "email_verified") == Some("true"), "{g:?}");
    }
    // Tokens of the wrong kind, or forged, are not access tokens.
    expect_exception(
        "GetUser with an id token",
        fx.get_user(2, &t.id_token).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    expect_exception(
        "GetUser with a refresh token",
        fx.get_user(2, &t.refresh_token).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    expect_exception(
        "GetUser with a forged access token",
        fx.get_user(
            2,
            &tamper(&t.access_token, "sub", json!("00000000-0000-4000-8000-000000000000"))?,
        )
        .await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    expect_exception(
        "REFRESH_TOKEN_AUTH with an access token",
        fx.refresh_raw(1, &t.access_token, username).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;

    // A refresh token belongs to its app client.
    let other_client = {
        let admin = fx.node(3);
        admin
            .admin()
            .create_user_pool_client(admin.req(CreateUserPoolClientRequest {
                user_pool_id: fx.pool_id.clone(),
                client_name: "another-app".into(),
                ..Default::default()
            }))
            .await
            .map_err(status_err("CreateUserPoolClient another-app"))?
            .into_inner()
            .user_pool_client
            .ok_or_else(|| anyhow!("no client"))?
            .client_id
    };
    expect_exception(
        "REFRESH_TOKEN_AUTH through another app client",
        fx.node(1)
            .auth()
            .initiate_auth(InitiateAuthRequest {
                auth_flow: "REFRESH_TOKEN_AUTH".into(),
                auth_parameters: params(&[("REFRESH_TOKEN", &t.refresh_token)]),
                client_id: other_client,
                client_metadata: Default::default(),
            })
            .await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;

    // Refresh on node 1: new id and access tokens of the same family,
    // signed by node 1.
    let r = fx.refresh(1, &t.refresh_token, username).await?;
    let (rkid, rid) = fx.verify_id_token_everywhere(&r.id_token).await?;
    check_id_claims(&rid, &expected)?;
    let (_, racc) = fx.verify_access_token_everywhere(&r.access_token).await?;
    check_access_claims(&racc, &expected)?;
    ensure!(rkid.starts_with("n1-"), "a refresh on node 1 was signed with {rkid}");
    ensure!(
        rid["origin_jti"] == id_claims["origin_jti"] && racc["origin_jti"] == id_claims["origin_jti"],
        "refreshed tokens must keep the family's origin_jti"
    );
    ensure!(
        rid["auth_time"] == id_claims["auth_time"],
        "auth_time must survive a refresh ({} vs {})",
        rid["auth_time"],
        id_claims["auth_time"]
    );
    ensure!(rid["jti"] != id_claims["jti"], "a refreshed id token reuses the jti");
    fx.get_user(2, &r.access_token)
        .await
        .map_err(status_err("GetUser with a refreshed access token"))?;

    // The verified email is a sign-in alias; the tokens name the username.
    let a = fx.sign_in(2, email, GOOD_PASSWORD).await?;
    let (_, aid) = fx.verify_id_token_everywhere(&a.id_token).await?;
    check_id_claims(&aid, &expected)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. Concurrent duplicates
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicate_sign_ups() {
    let c = three_nodes().await;
    let r = concurrent_duplicates_body(&c).await;
    c.finish(r);
}

/// Exactly one of two results is Ok; the other is UsernameExistsException.
/// Returns the index of the winner.
fn one_winner(
    what: &str,
    a: &Result<SignUpResponse, tonic::Status>,
    b: &Result<SignUpResponse, tonic::Status>,
) -> Result<usize> {
    match (a, b) {
        (Ok(_), Err(s)) | (Err(s), Ok(_)) => {
            check_exception(
                &format!("{what}: the loser"),
                s,
                Code::AlreadyExists,
                "UsernameExistsException",
            )?;
            Ok(if a.is_ok() { 0 } else { 1 })
        }
        (Ok(x), Ok(y)) => anyhow::bail!("{what}: both sign-ups succeeded ({} and {})", x.user_sub, y.user_sub),
        (Err(x), Err(y)) => anyhow::bail!(
            "{what}: both sign-ups failed: {:?} {} / {:?} {}",
            x.code(),
            x.message(),
            y.code(),
            y.message()
        ),
    }
}

async fn outbox_count(fx: &Fixture, username: &str) -> Result<usize> {
    let c = fx.node(1);
    let page = c
        .admin()
        .list_outbox_messages(c.req(ListOutboxMessagesRequest {
            user_pool_id: fx.pool_id.clone(),
            max_results: 1000,
            next_token: String::new(),
            consistent_read: true,
        }))
        .await
        .map_err(status_err("ListOutboxMessages"))?
        .into_inner();
    ensure!(
        page.next_token.is_empty(),
        "the test pool's outbox needs more than one page"
    );
    Ok(page
        .messages
        .iter()
        .filter(|m| m.username.eq_ignore_ascii_case(username))
        .count())
}

async fn concurrent_duplicates_body(c: &TestCluster) -> Result<()> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "duplicates",
            alias_attributes: &["email"],
            ..Default::default()
        },
    )
    .await?;
    ready(&fx).await?;
    for round in 0..6u64 {
        let (n1, n2) = (1 + round % 3, 1 + (round + 1) % 3);

        // The same username through two nodes at once.
        let username = format!("dup-user-{round}");
        let emails = [
            format!("first-{round}@example.com"),
            format!("second-{round}@example.com"),
        ];
        // Usernames are case-insensitive by default: odd rounds race
        // "dup-user-N" against "DUP-USER-N".
        let username_b = if round % 2 == 1 {
            username.to_uppercase()
        } else {
            username.clone()
        };
        let ra = fx.sign_up_request(&username, GOOD_PASSWORD, &emails[0]);
        let rb = fx.sign_up_request(&username_b, OTHER_PASSWORD, &emails[1]);
        let (a, b) = tokio::join!(fx.sign_up(n1, ra), fx.sign_up(n2, rb));
        let what = format!("round {round}: usernames {username} and {username_b} on nodes {n1} and {n2}");
        let spelled = [&username, &username_b];
        let w = one_winner(&what, &a, &b)?;
        let winner_sub = if w == 0 { a.as_ref() } else { b.as_ref() }
            .map(|r| r.user_sub.clone())
            .map_err(|s| anyhow!("{}", s.message()))?;
        for id in 1..=3 {
            // Looked up by the loser's spelling: the same (winning) user.
            let u = fx
                .admin_get_user(id, spelled[1 - w])
                .await
                .map_err(status_err(&format!("{what}: AdminGetUser on node {id}")))?;
            ensure!(
                u.username == *spelled[w],
                "{what}: node {id} names the user {:?}, the winner spelled it {:?}",
                u.username,
                spelled[w]
            );
            ensure!(
                admin_attr(&u.user_attributes, "sub") == Some(winner_sub.as_str())
                    && admin_attr(&u.user_attributes, "email") == Some(emails[w].as_str()),
                "{what}: node {id} holds {:?}, but the winner was sub {winner_sub} with {}",
                u.user_attributes,
                emails[w]
            );
        }
        // The loser's email alias was not claimed: it is free for another user.
        let loser_email = &emails[1 - w];
        fx.sign_up(
            n1,
            fx.sign_up_request(&format!("reuse-{round}"), GOOD_PASSWORD, loser_email),
        )
        .await
        .map_err(status_err(&format!("{what}: signing up with the loser's email")))?;
        // Only the winner's confirmation code was stored.
        fx.outbox_message(1, spelled[w], "CONFIRM_SIGN_UP").await?;
        let n = outbox_count(&fx, &username).await?;
        ensure!(
            n == 1,
            "{what}: {n} outbox messages for {username}, expected the winner's only"
        );
        println!("  ok: {what}: request {w} won");

        // Two usernames with the same email (an alias); odd rounds spell
        // the email with other capitals. An unverified email reserves
        // nothing (Cognito; issue 16), so both sign up; the alias is
        // decided when both confirm at once: one wins, the other gets
        // AliasExistsException.
        let shared = format!("shared-{round}@example.com");
        let shared_b = if round % 2 == 1 {
            shared.to_uppercase()
        } else {
            shared.clone()
        };
        let names = [format!("mail-a-{round}"), format!("mail-b-{round}")];
        let ra = fx.sign_up_request(&names[0], GOOD_PASSWORD, &shared);
        let rb = fx.sign_up_request(&names[1], GOOD_PASSWORD, &shared_b);
        let (a, b) = tokio::join!(fx.sign_up(n2, ra), fx.sign_up(n1, rb));
        let what = format!("round {round}: email {shared_b} on nodes {n2} and {n1}");
        a.map_err(status_err(&format!("{what}: first sign-up")))?;
        b.map_err(status_err(&format!("{what}: second sign-up, same unverified email")))?;
        let codes = [
            fx.confirmation_code(1, &names[0]).await?,
            fx.confirmation_code(1, &names[1]).await?,
        ];
        let (a, b) = tokio::join!(
            fx.confirm(n1, &names[0], &codes[0]),
            fx.confirm(n2, &names[1], &codes[1])
        );
        let w = match (&a, &b) {
            (Ok(()), Err(s)) | (Err(s), Ok(())) => {
                check_exception(
                    &format!("{what}: the loser"),
                    s,
                    Code::AlreadyExists,
                    "AliasExistsException",
                )?;
                usize::from(a.is_err())
            }
            _ => anyhow::bail!("{what}: expected one confirmation to win, got {a:?} and {b:?}"),
        };
        let t = fx.sign_in(1 + round % 3, &shared, GOOD_PASSWORD).await?;
        let (_, claims) = fx.verify_id_token_everywhere(&t.id_token).await?;
        ensure!(
            claims["cognito:username"] == names[w].as_str(),
            "{what}: the email alias signed in as {}, expected {}",
            claims["cognito:username"],
            names[w]
        );
        println!("  ok: {what}: request {w} won");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. Secret hash
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_hash_is_enforced() {
    let c = three_nodes().await;
    let r = secret_hash_body(&c).await;
    c.finish(r);
}

async fn secret_hash_body(c: &TestCluster) -> Result<()> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "secret",
            generate_secret: true,
            ..Default::default()
        },
    )
    .await?;
    ready(&fx).await?;
    let secret = fx.client_secret.clone().ok_or_else(|| anyhow!("no secret"))?;
    let username = "sam.secret";
    let email = "sam@example.com";
    let right = fx.hash_for(username);
    let wrong_secret = secret_hash("not-the-secret", username, &fx.client_id);
    let other_user = fx.hash_for("someone.else");
    let bad: [(&str, String); 4] = [
        ("without SECRET_HASH", String::new()),
        ("with a hash from another secret", wrong_secret),
        ("with another username's hash", other_user),
        ("with a hash that is not base64", "%%% not base64 %%%".into()),
    ];

    // SignUp.
    for (i, (how, hash)) in bad.iter().enumerate() {
        let mut req = fx.sign_up_request(username, GOOD_PASSWORD, email);
        req.secret_hash = hash.clone();
        expect_exception(
            &format!("SignUp {how} (node {})", 1 + i % 3),
            fx.sign_up(1 + i as u64 % 3, req).await,
            Code::Unauthenticated,
            "NotAuthorizedException",
        )?;
    }
    let req = fx.sign_up_request(username, GOOD_PASSWORD, email);
    ensure!(req.secret_hash == right);
    fx.sign_up(2, req)
        .await
        .map_err(status_err("SignUp with the right SECRET_HASH"))?;

    // ConfirmSignUp.
    let code = fx.confirmation_code(1, username).await?;
    let confirm = |hash: String, via: u64| {
        let code = code.clone();
        let fx = &fx;
        async move {
            fx.node(via)
                .auth()
                .confirm_sign_up(ConfirmSignUpRequest {
                    client_id: fx.client_id.clone(),
                    secret_hash: hash,
                    username: username.into(),
                    confirmation_code: code,
                    force_alias_creation: false,
                })
                .await
        }
    };
    expect_exception(
        "ConfirmSignUp without SECRET_HASH",
        confirm(String::new(), 3).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    expect_exception(
        "ConfirmSignUp with a wrong SECRET_HASH",
        confirm(bad[1].1.clone(), 1).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    confirm(right.clone(), 3)
        .await
        .map_err(status_err("ConfirmSignUp with the right SECRET_HASH"))?;

    // InitiateAuth (USER_PASSWORD_AUTH), on every node (each unseals the
    // secret with the cluster's sealing key).
    for (i, (how, hash)) in bad.iter().enumerate() {
        let mut p: Vec<(String, String)> = params(&[("USERNAME", username), ("PASSWORD", GOOD_PASSWORD)]);
        if !hash.is_empty() {
            p.push(("SECRET_HASH".into(), hash.clone()));
        }
        let via = 1 + (i as u64 + 1) % 3;
        expect_exception(
            &format!("InitiateAuth {how} (node {via})"),
            fx.initiate(via, "USER_PASSWORD_AUTH", p).await,
            Code::Unauthenticated,
            "NotAuthorizedException",
        )?;
    }
    let mut tokens = None;
    for via in 1..=3 {
        tokens = Some(fx.sign_in(via, username, GOOD_PASSWORD).await?);
    }
    let t = tokens.ok_or_else(|| anyhow!("no sign-in"))?;
    fx.verify_id_token_everywhere(&t.id_token).await?;

    // REFRESH_TOKEN_AUTH needs the hash too.
    expect_exception(
        "REFRESH_TOKEN_AUTH without SECRET_HASH",
        fx.initiate(2, "REFRESH_TOKEN_AUTH", params(&[("REFRESH_TOKEN", &t.refresh_token)]))
            .await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    expect_exception(
        "REFRESH_TOKEN_AUTH with a wrong SECRET_HASH",
        fx.initiate(
            2,
            "REFRESH_TOKEN_AUTH",
            params(&[
                ("REFRESH_TOKEN", &t.refresh_token),
                ("USERNAME", username),
                ("SECRET_HASH", &bad[1].1),
            ]),
        )
        .await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    fx.refresh(2, &t.refresh_token, username).await?;

    // RevokeToken: a wrong client secret is refused and revokes nothing.
    expect_exception(
        "RevokeToken with a wrong client_secret",
        fx.node(3)
            .auth()
            .revoke_token(RevokeTokenRequest {
                token: t.refresh_token.clone(),
                client_id: fx.client_id.clone(),
                client_secret: format!("{secret}x"),
            })
            .await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    fx.refresh(3, &t.refresh_token, username).await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// 4. Bad passwords and attributes
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_passwords_and_attributes() {
    let c = three_nodes().await;
    let r = bad_inputs_body(&c).await;
    c.finish(r);
}

async fn bad_inputs_body(c: &TestCluster) -> Result<()> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "bad-inputs",
            alias_attributes: &["email"],
            ..Default::default()
        },
    )
    .await?;
    ready(&fx).await?;
    let via = 2;
    let username = "bob.bad";
    let email = "bob@example.com";
    fx.confirmed_user(1, username, GOOD_PASSWORD, email).await?;

    // Wrong password, and an unknown user (no existence leak by default).
    expect_exception(
        "wrong password",
        fx.password_auth(via, username, "Wr0ng-Password!").await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    expect_exception(
        "unknown user",
        fx.password_auth(via, "nobody.here", GOOD_PASSWORD).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;

    // Passwords below the default policy.
    for (why, pw) in [
        ("too short", "Ab1!xyz"),
        ("no uppercase", "lower-case-1!"),
        ("no lowercase", "UPPER-CASE-1!"),
        ("no digit", "No-Digits-Here!"),
        ("no symbol", "NoSymbols123"),
    ] {
        expect_exception(
            &format!("SignUp with a password {why}"),
            fx.sign_up(
                via,
                fx.sign_up_request(&format!("weak-{}", why.replace(' ', "-")), pw, email),
            )
            .await,
            Code::InvalidArgument,
            "InvalidPasswordException",
        )?;
    }

    // Attributes against the schema.
    let mut req = fx.sign_up_request("no.email", GOOD_PASSWORD, email);
    req.user_attributes.clear();
    expect_exception(
        "SignUp without the required email",
        fx.sign_up(via, req).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    for bad_email in [
        "not-an-email",
        "two@@example.com",
        "no-domain@",
        "spaces in@example.com",
    ] {
        expect_exception(
            &format!("SignUp with email {bad_email:?}"),
            fx.sign_up(via, fx.sign_up_request("bad.email", GOOD_PASSWORD, bad_email))
                .await,
            Code::InvalidArgument,
            "InvalidParameterException",
        )?;
    }
    let mut req = fx.sign_up_request("unknown.attr", GOOD_PASSWORD, "u@example.com");
    req.user_attributes.push(AttributeType {
        name: "favourite_colour".into(),
        value: "blue".into(),
    });
    expect_exception(
        "SignUp with an attribute outside the schema",
        fx.sign_up(via, req).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    let mut req = fx.sign_up_request("self.verified", GOOD_PASSWORD, "sv@example.com");
    req.user_attributes.push(AttributeType {
        name: "email_verified".into(),
        value: "true".into(),
    });
    expect_exception(
        "SignUp that sets email_verified itself",
        fx.sign_up(via, req).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;

    // Oversize inputs.
    let long_name = "u".repeat(129);
    expect_exception(
        "SignUp with a 129-character username",
        fx.sign_up(via, fx.sign_up_request(&long_name, GOOD_PASSWORD, "long@example.com"))
            .await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    expect_exception(
        "InitiateAuth with a 129-character USERNAME",
        fx.password_auth(via, &long_name, GOOD_PASSWORD).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    let long_password = format!("Aa1!{}", "x".repeat(296));
    ensure!(long_password.len() == 300);
    expect_exception(
        "SignUp with a 300-byte password",
        fx.sign_up(
            via,
            fx.sign_up_request("long.password", &long_password, "lp@example.com"),
        )
        .await,
        Code::InvalidArgument,
        "InvalidPasswordException",
    )?;
    expect_exception(
        "InitiateAuth with a 300-byte password",
        fx.password_auth(via, username, &long_password).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    let mut req = fx.sign_up_request("many.attrs", GOOD_PASSWORD, "ma@example.com");
    for i in 0..199 {
        req.user_attributes.push(AttributeType {
            name: format!("custom:a{i}"),
            value: "v".into(),
        });
    }
    ensure!(req.user_attributes.len() == 200);
    expect_exception(
        "SignUp with 200 attributes",
        fx.sign_up(via, req).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    let mut many: Vec<(String, String)> = params(&[("USERNAME", username), ("PASSWORD", GOOD_PASSWORD)]);
    for i in 0..60 {
        many.push((format!("EXTRA_{i}"), "x".into()));
    }
    expect_exception(
        "InitiateAuth with 62 auth_parameters",
        fx.initiate(via, "USER_PASSWORD_AUTH", many).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    expect_exception(
        "REFRESH_TOKEN_AUTH with a 64 KiB token",
        fx.refresh_raw(via, &"x".repeat(64 * 1024), username).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    let mut huge = fx.sign_up_request("huge.request", GOOD_PASSWORD, "huge@example.com");
    huge.user_attributes.push(AttributeType {
        name: "name".into(),
        value: "h".repeat(2 * 1024 * 1024),
    });
    expect_too_large("a 2 MiB SignUp request", fx.sign_up(via, huge).await)?;

    // After all of it the node still serves, on the same connection and a
    // new one.
    let r = http_get(&c.node(via).api_addr, "/healthz").await?;
    ensure!(r.status == 200, "/healthz on node {via} answered {}", r.status);
    let t = fx.sign_in(via, username, GOOD_PASSWORD).await?;
    fx.get_user(via, &t.access_token).await.map_err(status_err("GetUser"))?;
    let fresh = c.client(via).await?;
    let r = fresh
        .auth()
        .initiate_auth(InitiateAuthRequest {
            auth_flow: "USER_PASSWORD_AUTH".into(),
            auth_parameters: params(&[("USERNAME", username), ("PASSWORD", GOOD_PASSWORD)]),
            client_id: fx.client_id.clone(),
            client_metadata: Default::default(),
        })
        .await
        .map_err(status_err("sign-in on a new connection"))?;
    ensure!(
        r.into_inner().authentication_result.is_some(),
        "no tokens on a new connection"
    );
    // None of the refused sign-ups created a user.
    for name in [
        "no.email",
        "bad.email",
        "unknown.attr",
        "self.verified",
        "long.password",
        "many.attrs",
    ] {
        expect_exception(
            &format!("AdminGetUser {name}"),
            fx.admin_get_user(1, name).await,
            Code::NotFound,
            "UserNotFoundException",
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 5. Revocation
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_cluster_wide() {
    let c = three_nodes().await;
    let r = revocation_body(&c).await;
    c.finish(r);
}

async fn revocation_body(c: &TestCluster) -> Result<()> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "revocation",
            ..Default::default()
        },
    )
    .await?;
    ready(&fx).await?;
    let username = "rita.revoked";
    fx.confirmed_user(2, username, GOOD_PASSWORD, "rita@example.com")
        .await?;

    // Two sessions, on two nodes; both work everywhere.
    let a = fx.sign_in(1, username, GOOD_PASSWORD).await?;
    let b = fx.sign_in(3, username, GOOD_PASSWORD).await?;
    for id in 1..=3 {
        fx.get_user(id, &a.access_token)
            .await
            .map_err(status_err(&format!("GetUser before sign-out on node {id}")))?;
        fx.refresh(id, &a.refresh_token, username).await?;
        fx.refresh(id, &b.refresh_token, username).await?;
    }

    // GlobalSignOut on node 1 ends both sessions on every node.
    fx.node(1)
        .auth()
        .global_sign_out(GlobalSignOutRequest {
            access_token: a.access_token.clone(),
        })
        .await
        .map_err(status_err("GlobalSignOut on node 1"))?;
    for id in 1..=3 {
        for (name, t) in [("a", &a), ("b", &b)] {
            refused_within(
                &format!("refresh of session {name} after GlobalSignOut, node {id}"),
                "NotAuthorizedException",
                Code::Unauthenticated,
                || fx.refresh_raw(id, &t.refresh_token, username),
            )
            .await?;
        }
        refused_within(
            &format!("GetUser with the old access token, node {id}"),
            "NotAuthorizedException",
            Code::Unauthenticated,
            || fx.get_user(id, &a.access_token),
        )
        .await?;
        // And it stays refused.
        expect_exception(
            &format!("refresh of session a again, node {id}"),
            fx.refresh_raw(id, &a.refresh_token, username).await,
            Code::Unauthenticated,
            "NotAuthorizedException",
        )?;
    }
    expect_exception(
        "GlobalSignOut with a revoked access token",
        fx.node(2)
            .auth()
            .global_sign_out(GlobalSignOutRequest {
                access_token: a.access_token.clone(),
            })
            .await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;

    // Tokens issued in the sign-out's second count as revoked; a later
    // sign-in works everywhere.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = fx.sign_in(2, username, GOOD_PASSWORD).await?;
    for id in 1..=3 {
        fx.get_user(id, &fresh.access_token)
            .await
            .map_err(status_err(&format!("GetUser with a fresh token on node {id}")))?;
        let r = fx.refresh(id, &fresh.refresh_token, username).await?;
        fx.get_user(id, &r.access_token).await.map_err(status_err(&format!(
            "GetUser with a refreshed fresh token on node {id}"
        )))?;
    }

    // RevokeToken on node 2 ends one refresh-token family on every node,
    // with the access tokens minted from it, and nothing else.
    let other = fx.sign_in(3, username, GOOD_PASSWORD).await?;
    fx.node(2)
        .auth()
        .revoke_token(RevokeTokenRequest {
            token: fresh.refresh_token.clone(),
            client_id: fx.client_id.clone(),
            client_secret: String::new(),
        })
        .await
        .map_err(status_err("RevokeToken on node 2"))?;
    for id in [1, 3, 2] {
        refused_within(
            &format!("refresh of the revoked token, node {id}"),
            "NotAuthorizedException",
            Code::Unauthenticated,
            || fx.refresh_raw(id, &fresh.refresh_token, username),
        )
        .await?;
        refused_within(
            &format!("GetUser with an access token of the revoked family, node {id}"),
            "NotAuthorizedException",
            Code::Unauthenticated,
            || fx.get_user(id, &fresh.access_token),
        )
        .await?;
        fx.refresh(id, &other.refresh_token, username).await?;
        fx.get_user(id, &other.access_token).await.map_err(status_err(&format!(
            "GetUser with another session's token on node {id}"
        )))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 6. Admin-created users
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_created_user_must_set_a_password() {
    let c = three_nodes().await;
    let r = admin_created_body(&c).await;
    c.finish(r);
}

async fn admin_create(fx: &Fixture, via: u64, username: &str, email: &str, temporary: &str) -> Result<UserType> {
    let c = fx.node(via);
    c.admin()
        .admin_create_user(c.req(AdminCreateUserRequest {
            user_pool_id: fx.pool_id.clone(),
            username: username.into(),
            user_attributes: vec![
                AttributeValue {
                    name: "email".into(),
                    value: email.into(),
                },
                AttributeValue {
                    name: "email_verified".into(),
                    value: "true".into(),
                },
            ],
            temporary_password: temporary.into(),
            ..Default::default()
        }))
        .await
        .map_err(status_err(&format!("AdminCreateUser {username}")))?
        .into_inner()
        .user
        .ok_or_else(|| anyhow!("AdminCreateUser returned no user"))
}

async fn admin_created_body(c: &TestCluster) -> Result<()> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "admin-created",
            ..Default::default()
        },
    )
    .await?;
    ready(&fx).await?;
    let username = "carol.created";
    let email = "carol@example.com";
    let temporary = "Temp0rary-Pass!";
    let u = admin_create(&fx, 1, username, email, temporary).await?;
    ensure!(u.user_status == "FORCE_CHANGE_PASSWORD", "status {}", u.user_status);
    let m = fx.outbox_message(3, username, "TEMPORARY_PASSWORD").await?;
    ensure!(
        m.code == temporary,
        "the outbox carries {:?}, not the temporary password",
        m.code
    );

    // The temporary password yields the challenge, not tokens.
    let r = fx
        .password_auth(2, username, temporary)
        .await
        .map_err(status_err("InitiateAuth"))?;
    ensure!(
        r.challenge_name == "NEW_PASSWORD_REQUIRED",
        "challenge {:?} (result {:?})",
        r.challenge_name,
        r.authentication_result.is_some()
    );
    ensure!(
        r.authentication_result.is_none(),
        "a challenge must not come with tokens"
    );
    ensure!(!r.session.is_empty(), "NEW_PASSWORD_REQUIRED without a session");
    ensure!(
        r.challenge_parameters.get("USER_ID_FOR_SRP").map(String::as_str) == Some(username),
        "challenge parameters {:?}",
        r.challenge_parameters
    );
    let session = r.session;
    let respond = |via: u64, new_password: &str| {
        let fx = &fx;
        let session = session.clone();
        let new_password = new_password.to_string();
        async move {
            fx.node(via)
                .auth()
                .respond_to_auth_challenge(RespondToAuthChallengeRequest {
                    client_id: fx.client_id.clone(),
                    challenge_name: "NEW_PASSWORD_REQUIRED".into(),
                    session,
                    challenge_responses: params(&[("USERNAME", username), ("NEW_PASSWORD", &new_password)]),
                })
                .await
                .map(|r| r.into_inner())
        }
    };

    // A weak new password is refused, and the session survives it.
    expect_exception(
        "RespondToAuthChallenge with a weak password",
        respond(1, "weak").await,
        Code::InvalidArgument,
        "InvalidPasswordException",
    )?;
    // A good one completes the sign-in, on another node than the challenge.
    let done = respond(3, OTHER_PASSWORD)
        .await
        .map_err(status_err("RespondToAuthChallenge"))?;
    ensure!(
        done.challenge_name.is_empty(),
        "another challenge: {}",
        done.challenge_name
    );
    let res = done
        .authentication_result
        .ok_or_else(|| anyhow!("RespondToAuthChallenge returned no tokens"))?;
    ensure!(!res.refresh_token.is_empty() && res.token_type == "Bearer");
    let (_, claims) = fx.verify_id_token_everywhere(&res.id_token).await?;
    ensure!(
        claims["cognito:username"] == username && claims["email_verified"] == true,
        "{claims}"
    );
    fx.verify_access_token_everywhere(&res.access_token).await?;
    fx.get_user(2, &res.access_token).await.map_err(status_err("GetUser"))?;

    for id in 1..=3 {
        let g = fx
            .admin_get_user(id, username)
            .await
            .map_err(status_err("AdminGetUser"))?;
        ensure!(g.user_status == "CONFIRMED", "node {id}: status {}", g.user_status);
    }
    for id in 1..=3 {
        expect_exception(
            &format!("the temporary password after the change, node {id}"),
            fx.password_auth(id, username, temporary).await,
            Code::Unauthenticated,
            "NotAuthorizedException",
        )?;
        fx.sign_in(id, username, OTHER_PASSWORD).await?;
    }
    expect_exception(
        "reusing the challenge session",
        respond(2, "An0ther-Pass!").await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    fx.sign_in(1, username, OTHER_PASSWORD).await?;

    // A generated temporary password reaches the outbox and works the same.
    let gen = "dave.generated";
    admin_create(&fx, 2, gen, "dave@example.com", "").await?;
    let m = fx.outbox_message(1, gen, "TEMPORARY_PASSWORD").await?;
    ensure!(!m.code.is_empty(), "no generated temporary password in the outbox");
    let r = fx
        .password_auth(3, gen, &m.code)
        .await
        .map_err(status_err("InitiateAuth generated"))?;
    ensure!(
        r.challenge_name == "NEW_PASSWORD_REQUIRED",
        "challenge {:?}",
        r.challenge_name
    );

    // AdminConfirmSignUp confirms a self-signed-up user without a code.
    let eve = "eve.unconfirmed";
    fx.sign_up(1, fx.sign_up_request(eve, GOOD_PASSWORD, "eve@example.com"))
        .await
        .map_err(status_err("SignUp eve"))?;
    let c2 = fx.node(2);
    c2.admin()
        .admin_confirm_sign_up(c2.req(AdminConfirmSignUpRequest {
            user_pool_id: fx.pool_id.clone(),
            username: eve.into(),
        }))
        .await
        .map_err(status_err("AdminConfirmSignUp"))?;
    let g = fx
        .admin_get_user(3, eve)
        .await
        .map_err(status_err("AdminGetUser eve"))?;
    ensure!(g.user_status == "CONFIRMED", "eve: {}", g.user_status);
    fx.sign_in(3, eve, GOOD_PASSWORD).await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// 7. Key rotation
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_keeps_old_tokens_valid() {
    let c = three_nodes().await;
    let r = key_rotation_body(&c).await;
    c.finish(r);
}

async fn key_rotation_body(c: &TestCluster) -> Result<()> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "rotation",
            ..Default::default()
        },
    )
    .await?;
    ready(&fx).await?;
    let username = "kim.keys";
    fx.confirmed_user(1, username, GOOD_PASSWORD, "kim@example.com").await?;

    // One session per node, each signed with that node's key.
    let mut before = BTreeMap::new();
    for id in 1..=3u64 {
        let t = fx.sign_in(id, username, GOOD_PASSWORD).await?;
        let kid = kid_of(&t.id_token)?;
        ensure!(kid.starts_with(&format!("n{id}-")), "node {id} signed with {kid}");
        ensure!(kid_of(&t.access_token)? == kid);
        before.insert(id, (kid, t));
    }
    let old_kids: BTreeSet<String> = before.values().map(|(k, _)| k.clone()).collect();
    ensure!(old_kids.len() == 3, "three nodes, three keys: {old_kids:?}");

    let c1 = fx.node(1);
    let rotated = c1
        .cluster()
        .rotate_signing_keys(c1.req(RotateSigningKeysRequest { wait: true }))
        .await
        .map_err(status_err("RotateSigningKeys"))?
        .into_inner();
    println!("  RotateSigningKeys: {:?}", rotated.keys);
    let new_keys: BTreeMap<u64, String> = rotated
        .keys
        .iter()
        .filter(|k| k.retired_at == 0 && !old_kids.contains(&k.kid))
        .map(|k| (k.node_id, k.kid.clone()))
        .collect();
    ensure!(
        new_keys.len() == 3,
        "after a waited rotation every node has a new signing key: {:?}",
        rotated.keys
    );
    for k in rotated.keys.iter().filter(|k| new_keys.values().any(|n| *n == k.kid)) {
        ensure!(
            k.created_at >= rotated.requested_at,
            "new key {} was created at {}, before the request at {}",
            k.kid,
            k.created_at,
            rotated.requested_at
        );
    }
    for kid in &old_kids {
        let listed = rotated.keys.iter().find(|k| &k.kid == kid);
        ensure!(
            listed.is_some_and(|k| k.retired_at != 0),
            "old key {kid} should be listed as retired: {listed:?}"
        );
    }

    // Old and new keys are all in every node's JWKS.
    for id in 1..=3 {
        for kid in old_kids.iter().chain(new_keys.values()) {
            fx.jwks_with(id, kid).await?;
        }
        let (doc, _) = fx.jwks(id).await?;
        let n = doc["keys"].as_array().map(Vec::len).unwrap_or(0);
        ensure!(
            n >= 6,
            "node {id}'s JWKS has {n} keys after one rotation of three nodes"
        );
    }

    // Tokens from before the rotation still verify, offline and online.
    for (id, (kid, t)) in &before {
        let (k, _) = fx.verify_id_token_everywhere(&t.id_token).await?;
        ensure!(&k == kid);
        fx.verify_access_token_everywhere(&t.access_token).await?;
        for via in 1..=3 {
            fx.get_user(via, &t.access_token).await.map_err(status_err(&format!(
                "GetUser on node {via} with a token node {id} signed before rotation"
            )))?;
        }
    }

    // New tokens carry each node's new kid; pre-rotation refresh tokens
    // still refresh, into tokens with the new kid.
    for id in 1..=3u64 {
        let want = &new_keys[&id];
        let fxr = &fx;
        let kid = poll_until(
            &format!("node {id} to sign with its new key {want}"),
            Duration::from_secs(5),
            Duration::from_millis(50),
            || async move {
                let t = fxr.sign_in(id, username, GOOD_PASSWORD).await?;
                let kid = kid_of(&t.id_token)?;
                Ok((kid == *want).then_some(kid))
            },
        )
        .await?;
        ensure!(!old_kids.contains(&kid));
        let t = fx.sign_in(id, username, GOOD_PASSWORD).await?;
        let (k, _) = fx.verify_id_token_everywhere(&t.id_token).await?;
        ensure!(&k == want, "node {id} signed with {k}, expected {want}");
        fx.verify_access_token_everywhere(&t.access_token).await?;

        let (_, old) = &before[&id];
        let r = fx.refresh(id, &old.refresh_token, username).await?;
        let (k, _) = fx.verify_id_token_everywhere(&r.id_token).await?;
        ensure!(&k == want, "node {id} refreshed with {k}, expected {want}");
        fx.get_user(1 + id % 3, &r.access_token)
            .await
            .map_err(status_err("GetUser with a post-rotation refresh"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// JWKS shape (RFC 8037)
// ---------------------------------------------------------------------------

#[test]
fn jwks_shape_check_rejects_malformed_keys() {
    let good = json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": "n1-a",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    }]});
    check_jwks_shape(&good).expect("a well-formed OKP key passes");
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(good.clone()).expect("jsonwebtoken parses it");
    assert!(jsonwebtoken::DecodingKey::from_jwk(&set.keys[0]).is_ok());
    for (field, value) in [
        ("kty", json!("EC")),
        ("crv", json!("X25519")),
        ("alg", json!("ES256")),
        ("use", json!("enc")),
        ("x", json!("AAAA")),
        ("d", json!("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")),
    ] {
        let mut bad = good.clone();
        bad["keys"][0][field] = value;
        assert!(check_jwks_shape(&bad).is_err(), "{field} should be refused: {bad}");
    }
    assert!(check_jwks_shape(&json!({"keys": []})).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_keys_are_okp_ed25519() {
    let c = TestCluster::start(1).await.expect("a 1-node cluster forms");
    let r = async {
        let fx = Fixture::create(&c, PoolSpec::default()).await?;
        ready(&fx).await?;
        let (doc, set) = fx.jwks(1).await?;
        let keys = doc["keys"].as_array().cloned().unwrap_or_default();
        ensure!(keys.len() == 1, "one node, one key: {doc}");
        let k: &Value = &keys[0];
        ensure!(
            k["kty"] == "OKP" && k["crv"] == "Ed25519" && k["alg"] == "EdDSA" && k["use"] == "sig",
            "{k}"
        );
        let kid = k["kid"].as_str().unwrap_or_default();
        let jwk = set.find(kid).ok_or_else(|| anyhow!("jsonwebtoken cannot find {kid}"))?;
        ensure!(
            matches!(
                &jwk.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(p)
                    if p.curve == jsonwebtoken::jwk::EllipticCurve::Ed25519
            ),
            "jsonwebtoken reads {kid} as {:?}",
            jwk.algorithm
        );
        // A token of this node verifies with that key alone.
        fx.confirmed_user(1, "jo.jwks", GOOD_PASSWORD, "jo@example.com").await?;
        let t = fx.sign_in(1, "jo.jwks", GOOD_PASSWORD).await?;
        ensure!(kid_of(&t.id_token)? == kid);
        verify_with_jwks(&t.id_token, &set, &fx.issuer, Some(&fx.client_id))?;
        Ok(())
    }
    .await;
    c.finish(r);
}

// ---------------------------------------------------------------------------
// Publish before sign: no token carries a key its own node does not list
// ---------------------------------------------------------------------------

/// Right after the cluster forms, each node's first tokens must already be
/// verifiable: ARCHITECTURE.md §2.3 and issue 3 have a node publish its
/// public key before it signs with it. A node that signs first hands out
/// tokens that its own `GetUser`, its JWKS and every other node refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_only_with_published_keys() {
    let c = three_nodes().await;
    let r = published_keys_body(&c).await;
    c.finish(r);
}

/// A node that has not published its key yet may refuse to sign with a
/// retryable UNAVAILABLE (that keeps the invariant); any other refusal, or
/// waiting past 10 s, fails.
async fn first_answer(fx: &Fixture, via: u64, username: &str, password: &str) -> Result<InitiateAuthResponse> {
    let start = Instant::now();
    loop {
        match fx.password_auth(via, username, password).await {
            Ok(r) => return Ok(r),
            Err(s) if s.code() == Code::Unavailable && start.elapsed() < Duration::from_secs(10) => {
                println!("  node {via} is not ready to sign yet: {}", s.message());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => return Err(status_err(&format!("InitiateAuth on node {via}"))(s)),
        }
    }
}

async fn published_keys_body(c: &TestCluster) -> Result<()> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "first-tokens",
            ..Default::default()
        },
    )
    .await?;
    // A user that needs no code: one write, then straight to sign-in.
    let username = "fay.first";
    let temporary = "Temp0rary-Pass!";
    let admin = fx.node(1);
    admin
        .admin()
        .admin_create_user(admin.req(AdminCreateUserRequest {
            user_pool_id: fx.pool_id.clone(),
            username: username.into(),
            user_attributes: vec![AttributeValue {
                name: "email".into(),
                value: "fay@example.com".into(),
            }],
            temporary_password: temporary.into(),
            message_action: "SUPPRESS".into(),
            ..Default::default()
        }))
        .await
        .map_err(status_err("AdminCreateUser"))?;
    let mut failures = Vec::new();
    for id in 1..=3u64 {
        let r = first_answer(&fx, id, username, temporary).await?;
        ensure!(
            r.challenge_name == "NEW_PASSWORD_REQUIRED",
            "node {id}: {:?}",
            r.challenge_name
        );
        let kid = kid_of(&r.session).unwrap_or_default();
        // The signing node lists its key at once: no polling here.
        let (doc, _) = match fx.jwks(id).await {
            Ok(j) => j,
            Err(e) => {
                failures.push(format!(
                    "node {id} signed a session with {kid} but its JWKS is unusable: {e:#}"
                ));
                continue;
            }
        };
        let listed = doc["keys"]
            .as_array()
            .is_some_and(|keys| keys.iter().any(|k| k["kid"] == kid.as_str()));
        if !listed {
            failures.push(format!(
                "node {id} signed a session with {kid}, which its own JWKS does not list: {doc}"
            ));
        }
    }
    // And the first tokens work on their own node.
    let r = first_answer(&fx, 2, username, temporary).await?;
    let done = fx
        .node(2)
        .auth()
        .respond_to_auth_challenge(RespondToAuthChallengeRequest {
            client_id: fx.client_id.clone(),
            challenge_name: "NEW_PASSWORD_REQUIRED".into(),
            session: r.session.clone(),
            challenge_responses: params(&[("USERNAME", username), ("NEW_PASSWORD", GOOD_PASSWORD)]),
        })
        .await;
    match done {
        Err(s) => failures.push(format!(
            "node 2 refused its own session (kid {}): {:?} {}",
            kid_of(&r.session).unwrap_or_default(),
            s.code(),
            s.message()
        )),
        Ok(done) => {
            let t = done.into_inner().authentication_result.unwrap_or_default();
            if let Err(s) = fx.get_user(2, &t.access_token).await {
                failures.push(format!(
                    "node 2 refused its own access token (kid {}): {:?} {}",
                    kid_of(&t.access_token).unwrap_or_default(),
                    s.code(),
                    s.message()
                ));
            }
        }
    }
    ensure!(
        failures.is_empty(),
        "tokens signed with unpublished keys:\n{}",
        failures.join("\n")
    );
    Ok(())
}
