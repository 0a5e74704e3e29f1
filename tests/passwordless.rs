//! Passwordless sign-in and codes as MFA factors (issue 12) on real
//! three-node clusters, over real gRPC and HTTP: `USER_AUTH` with
//! `EMAIL_OTP` (codes read from the replicated outbox, answered on another
//! node), `SELECT_CHALLENGE`, `SMS_MFA` after a password, codes replayed or
//! used with another session, unknown users that look like known ones,
//! wrong answers counted toward the lockout, and magic links approved by
//! an HTTP POST on one node and collected on another, once.
//!
//! Test bodies run one at a time (`SERIAL`): each starts three nodes.
//!
//! Run with: `cargo test --features failpoints --test passwordless -- --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use common::auth::*;
use common::directory::*;
use common::TestCluster;
use tessera::auth::lockout::THRESHOLD;
use tessera::proto::*;
use tonic::Code;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn three_nodes() -> TestCluster {
    let started = Instant::now();
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    println!("cluster formed in {:?}", started.elapsed());
    c
}

const FLOWS: &[&str] = &[
    "ALLOW_USER_AUTH",
    "ALLOW_USER_PASSWORD_AUTH",
    "ALLOW_REFRESH_TOKEN_AUTH",
];

/// A pool allowing every first factor, a client with `USER_AUTH` that
/// hides user existence (the default) and one that does not (`LEGACY`).
async fn passwordless_pool(c: &TestCluster, name: &str) -> Result<(Dir, String, String)> {
    let d = Dir::create(
        c,
        DirSpec {
            name,
            ..Default::default()
        },
    )
    .await?;
    let pool = d
        .set_sign_in_policy(1, &["EMAIL_OTP", "PASSWORD", "SMS_OTP", "MAGIC_LINK"], 0)
        .await?;
    let policy = pool
        .policies
        .and_then(|p| p.sign_in_policy)
        .ok_or_else(|| anyhow!("UpdateUserPool shows no sign_in_policy"))?;
    ensure!(
        policy.allowed_first_auth_factors == ["PASSWORD", "EMAIL_OTP", "SMS_OTP", "MAGIC_LINK"]
            && policy.magic_link_validity_seconds == 600,
        "sign_in_policy: {policy:?}"
    );
    let hidden = d.create_app_client(2, "hidden", FLOWS).await?;
    let legacy = d
        .create_app_client_from(
            3,
            CreateUserPoolClientRequest {
                client_name: "legacy".into(),
                explicit_auth_flows: FLOWS.iter().map(|s| s.to_string()).collect(),
                prevent_user_existence_errors: "LEGACY".into(),
                ..Default::default()
            },
        )
        .await?
        .client_id;
    d.barrier_all().await?;
    Ok((d, hidden, legacy))
}

/// A confirmed user with a permanent password and the given verified
/// attributes, made by the admin API.
async fn user(d: &Dir, username: &str, attributes: &[(&str, &str)]) -> Result<()> {
    d.admin_create_user(1, username, attributes, "Temp0rary-Pass!")
        .await
        .map_err(status_err(&format!("AdminCreateUser {username}")))?;
    let c = d.node(2);
    c.admin()
        .admin_set_user_password(c.req(AdminSetUserPasswordRequest {
            user_pool_id: d.pool_id.clone(),
            username: username.into(),
            password: GOOD_PASSWORD.into(),
            permanent: true,
        }))
        .await
        .map_err(status_err("AdminSetUserPassword"))?;
    d.barrier_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn email_otp_select_challenge_replays_and_lockout() {
    let _serial = SERIAL.lock().await;
    let c = three_nodes().await;
    let r = email_otp_body(&c).await;
    c.finish(r);
}

async fn email_otp_body(c: &TestCluster) -> Result<()> {
    let (d, hidden, legacy) = passwordless_pool(c, "pwless-email").await?;
    user(&d, "ann", &[("email", "ann@pwless.test"), ("email_verified", "true")]).await?;
    user(&d, "bob", &[("email", "bob@pwless.test"), ("email_verified", "true")]).await?;

    // The pool's own client has no ALLOW_USER_AUTH.
    expect_exception(
        "USER_AUTH on a client without ALLOW_USER_AUTH",
        d.user_auth_as(1, &d.client_id, "ann", Some("EMAIL_OTP"), &[]).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;

    println!("EMAIL_OTP through the outbox, answered on another node");
    let r = d
        .user_auth_as(1, &hidden, "ann", Some("EMAIL_OTP"), &[])
        .await
        .map_err(status_err("USER_AUTH EMAIL_OTP"))?;
    ensure!(r.challenge_name == "EMAIL_OTP" && !r.session.is_empty(), "{r:?}");
    ensure!(
        r.challenge_parameters
            .get("CODE_DELIVERY_DELIVERY_MEDIUM")
            .map(String::as_str)
            == Some("EMAIL")
            && r.challenge_parameters
                .get("CODE_DELIVERY_DESTINATION")
                .map(String::as_str)
                == Some("a***@p***"),
        "delivery parameters: {:?}",
        r.challenge_parameters
    );
    let code = d.sign_in_code_after(2, "ann", 0, 8).await?;
    let t = d
        .respond_as(
            3,
            &hidden,
            "EMAIL_OTP",
            &r.session,
            &[("USERNAME", "ann"), ("EMAIL_OTP_CODE", &code)],
        )
        .await
        .map_err(status_err("EMAIL_OTP answered on node 3"))?;
    let tokens = Tokens::from_result("EMAIL_OTP", t.authentication_result)?;
    let claims = peek_claims(&tokens.access_token)?;
    ensure!(
        claims["username"] == "ann" && claims["client_id"] == hidden.as_str(),
        "{claims}"
    );

    println!("the same code again, on every node");
    for via in [1, 2, 3] {
        expect_exception(
            &format!("EMAIL_OTP code replayed on node {via}"),
            d.respond_as(
                via,
                &hidden,
                "EMAIL_OTP",
                &r.session,
                &[("USERNAME", "ann"), ("EMAIL_OTP_CODE", &code)],
            )
            .await,
            Code::InvalidArgument,
            "ExpiredCodeException",
        )?;
    }

    println!("a valid code used with another session");
    let old = d
        .user_auth_as(2, &hidden, "ann", Some("EMAIL_OTP"), &[])
        .await
        .map_err(status_err("USER_AUTH EMAIL_OTP (old session)"))?;
    d.sign_in_code_after(1, "ann", 1, 8).await?;
    let new = d
        .user_auth_as(3, &hidden, "ann", Some("EMAIL_OTP"), &[])
        .await
        .map_err(status_err("USER_AUTH EMAIL_OTP (new session)"))?;
    let new_code = d.sign_in_code_after(1, "ann", 2, 8).await?;
    expect_exception(
        "the new code with the old session",
        d.respond_as(
            1,
            &hidden,
            "EMAIL_OTP",
            &old.session,
            &[("USERNAME", "ann"), ("EMAIL_OTP_CODE", &new_code)],
        )
        .await,
        Code::InvalidArgument,
        "CodeMismatchException",
    )?;
    // Bob's session with ann's code (and bob's name): another user's record.
    let bobs = d
        .user_auth_as(1, &hidden, "bob", Some("EMAIL_OTP"), &[])
        .await
        .map_err(status_err("USER_AUTH EMAIL_OTP bob"))?;
    d.sign_in_code_after(1, "bob", 0, 8).await?;
    expect_exception(
        "ann's code with bob's session",
        d.respond_as(
            2,
            &hidden,
            "EMAIL_OTP",
            &bobs.session,
            &[("USERNAME", "bob"), ("EMAIL_OTP_CODE", &new_code)],
        )
        .await,
        Code::InvalidArgument,
        "CodeMismatchException",
    )?;
    expect_exception(
        "bob's session naming ann",
        d.respond_as(
            2,
            &hidden,
            "EMAIL_OTP",
            &bobs.session,
            &[("USERNAME", "ann"), ("EMAIL_OTP_CODE", &new_code)],
        )
        .await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    // The new session still works with its code (the wrong answers above
    // were spent on other records or refused before evaluation).
    let t = d
        .respond_as(
            2,
            &hidden,
            "EMAIL_OTP",
            &new.session,
            &[("USERNAME", "ann"), ("EMAIL_OTP_CODE", &new_code)],
        )
        .await
        .map_err(status_err("EMAIL_OTP new session"))?;
    Tokens::from_result("EMAIL_OTP new session", t.authentication_result)?;

    println!("SELECT_CHALLENGE");
    let s = d
        .user_auth_as(1, &legacy, "bob", None, &[])
        .await
        .map_err(status_err("USER_AUTH without PREFERRED_CHALLENGE"))?;
    ensure!(s.challenge_name == "SELECT_CHALLENGE" && !s.session.is_empty(), "{s:?}");
    ensure!(
        s.available_challenges == ["PASSWORD", "EMAIL_OTP", "MAGIC_LINK"],
        "bob has no phone: {:?}",
        s.available_challenges
    );
    let hidden_list = d
        .user_auth_as(2, &hidden, "bob", None, &[])
        .await
        .map_err(status_err("USER_AUTH SELECT_CHALLENGE hidden"))?;
    ensure!(
        hidden_list.available_challenges == ["PASSWORD", "EMAIL_OTP", "SMS_OTP", "MAGIC_LINK"],
        "a client hiding users lists the pool's factors: {:?}",
        hidden_list.available_challenges
    );
    let p = d
        .respond_as(
            3,
            &legacy,
            "SELECT_CHALLENGE",
            &s.session,
            &[("USERNAME", "bob"), ("ANSWER", "PASSWORD"), ("PASSWORD", GOOD_PASSWORD)],
        )
        .await
        .map_err(status_err("SELECT_CHALLENGE PASSWORD"))?;
    Tokens::from_result("SELECT_CHALLENGE PASSWORD", p.authentication_result)?;
    let e = d
        .respond_as(
            2,
            &legacy,
            "SELECT_CHALLENGE",
            &s.session,
            &[("USERNAME", "bob"), ("ANSWER", "EMAIL_OTP")],
        )
        .await
        .map_err(status_err("SELECT_CHALLENGE EMAIL_OTP"))?;
    ensure!(e.challenge_name == "EMAIL_OTP", "{e:?}");
    let bob_code = d.sign_in_code_after(1, "bob", 1, 8).await?;
    let t = d
        .respond_as(
            1,
            &legacy,
            "EMAIL_OTP",
            &e.session,
            &[("USERNAME", "bob"), ("EMAIL_OTP_CODE", &bob_code)],
        )
        .await
        .map_err(status_err("EMAIL_OTP after SELECT_CHALLENGE"))?;
    Tokens::from_result("EMAIL_OTP after SELECT_CHALLENGE", t.authentication_result)?;
    expect_exception(
        "a SELECT_CHALLENGE session continuing for another user",
        d.respond_as(
            2,
            &legacy,
            "SELECT_CHALLENGE",
            &s.session,
            &[("USERNAME", "ann"), ("ANSWER", "EMAIL_OTP")],
        )
        .await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    expect_exception(
        "SMS_OTP for a user without a phone (LEGACY)",
        d.user_auth_as(1, &legacy, "bob", Some("SMS_OTP"), &[]).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;

    println!("unknown users");
    let nobody = d
        .user_auth_as(3, &hidden, "nobody", Some("EMAIL_OTP"), &[])
        .await
        .map_err(status_err("USER_AUTH EMAIL_OTP for an unknown user"))?;
    ensure!(
        nobody.challenge_name == "EMAIL_OTP"
            && !nobody.session.is_empty()
            && nobody
                .challenge_parameters
                .get("CODE_DELIVERY_DELIVERY_MEDIUM")
                .map(String::as_str)
                == Some("EMAIL")
            && nobody
                .challenge_parameters
                .get("CODE_DELIVERY_DESTINATION")
                .is_some_and(|m| m.contains("***@")),
        "an unknown user's answer has a known one's shape: {nobody:?}"
    );
    ensure!(
        d.outbox_count(1, "nobody", "SIGN_IN_CODE").await? == 0,
        "a code was sent for an unknown user"
    );
    expect_exception(
        "answering an unknown user's session",
        d.respond_as(
            1,
            &hidden,
            "EMAIL_OTP",
            &nobody.session,
            &[("USERNAME", "nobody"), ("EMAIL_OTP_CODE", "12345678")],
        )
        .await,
        Code::InvalidArgument,
        "CodeMismatchException",
    )?;
    expect_exception(
        "an unknown user with a LEGACY client",
        d.user_auth_as(1, &legacy, "nobody", Some("EMAIL_OTP"), &[]).await,
        Code::NotFound,
        "UserNotFoundException",
    )?;
    let hidden_select = d
        .user_auth_as(1, &hidden, "nobody", None, &[])
        .await
        .map_err(status_err("SELECT_CHALLENGE for an unknown user"))?;
    ensure!(
        hidden_select.available_challenges == hidden_list.available_challenges,
        "unknown and known users list the same: {:?}",
        hidden_select.available_challenges
    );

    println!("wrong codes count toward the lockout");
    user(&d, "carl", &[("email", "carl@pwless.test"), ("email_verified", "true")]).await?;
    let r = d
        .user_auth_as(1, &hidden, "carl", Some("EMAIL_OTP"), &[])
        .await
        .map_err(status_err("USER_AUTH EMAIL_OTP carl"))?;
    let carl_code = d.sign_in_code_after(1, "carl", 0, 8).await?;
    let wrong = if carl_code == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    for i in 0..THRESHOLD {
        let via = u64::from(i % 3) + 1;
        let e = d
            .respond_as(
                via,
                &hidden,
                "EMAIL_OTP",
                &r.session,
                &[("USERNAME", "carl"), ("EMAIL_OTP_CODE", wrong)],
            )
            .await;
        ensure!(e.is_err(), "wrong code #{i} accepted");
    }
    d.barrier_all().await?;
    expect_exception(
        "the right password after wrong codes",
        d.password_auth(2, "carl", GOOD_PASSWORD).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )
    .and_then(|s| {
        ensure!(s.message().contains("attempts exceeded"), "{}", s.message());
        Ok(())
    })?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sms_mfa_after_password() {
    let _serial = SERIAL.lock().await;
    let c = three_nodes().await;
    let r = sms_mfa_body(&c).await;
    c.finish(r);
}

async fn sms_mfa_body(c: &TestCluster) -> Result<()> {
    let (d, hidden, _) = passwordless_pool(c, "pwless-sms").await?;
    user(
        &d,
        "dora",
        &[
            ("email", "dora@pwless.test"),
            ("email_verified", "true"),
            ("phone_number", "+15550001234"),
            ("phone_number_verified", "true"),
        ],
    )
    .await?;
    user(&d, "eve", &[("email", "eve@pwless.test"), ("email_verified", "true")]).await?;
    let admin = d.node(1);
    let set = admin
        .admin()
        .set_user_pool_mfa_config(admin.req(SetUserPoolMfaConfigRequest {
            user_pool_id: d.pool_id.clone(),
            sms_mfa_configuration: Some(SmsMfaConfigType {
                sms_authentication_message: "Your pwless code: {####}".into(),
            }),
            email_mfa_configuration: Some(EmailMfaConfigType {
                message: "Code {####}".into(),
                subject: "Your code".into(),
            }),
            mfa_configuration: "OPTIONAL".into(),
            ..Default::default()
        }))
        .await
        .map_err(status_err("SetUserPoolMfaConfig SMS + email"))?
        .into_inner();
    ensure!(
        set.sms_mfa_configuration
            .as_ref()
            .is_some_and(|s| s.sms_authentication_message == "Your pwless code: {####}")
            && set
                .email_mfa_configuration
                .as_ref()
                .is_some_and(|e| e.subject == "Your code"),
        "{set:?}"
    );
    let got = d
        .node(3)
        .admin()
        .get_user_pool_mfa_config(d.node(3).req(GetUserPoolMfaConfigRequest {
            user_pool_id: d.pool_id.clone(),
            consistent_read: true,
        }))
        .await
        .map_err(status_err("GetUserPoolMfaConfig"))?
        .into_inner();
    ensure!(got.sms_mfa_configuration == set.sms_mfa_configuration, "{got:?}");

    // Enabling needs a verified phone.
    let eve = d.sign_in(2, "eve", GOOD_PASSWORD).await?;
    let prefs = |token: &str, sms: bool| SetUserMfaPreferenceRequest {
        sms_mfa_settings: Some(SmsMfaSettingsType {
            enabled: sms,
            preferred_mfa: sms,
        }),
        access_token: token.into(),
        ..Default::default()
    };
    expect_exception(
        "SMS_MFA for a user without a verified phone",
        d.node(2)
            .auth()
            .set_user_mfa_preference(prefs(&eve.access_token, true))
            .await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    let dora = d.sign_in(1, "dora", GOOD_PASSWORD).await?;
    d.node(3)
        .auth()
        .set_user_mfa_preference(prefs(&dora.access_token, true))
        .await
        .map_err(status_err("SetUserMFAPreference SMS"))?;
    d.barrier_all().await?;

    println!("SMS_MFA after the password");
    let r = d
        .password_auth(1, "dora", GOOD_PASSWORD)
        .await
        .map_err(status_err("USER_PASSWORD_AUTH dora"))?;
    ensure!(
        r.challenge_name == "SMS_MFA" && r.authentication_result.is_none(),
        "{r:?}"
    );
    ensure!(
        r.challenge_parameters
            .get("CODE_DELIVERY_DELIVERY_MEDIUM")
            .map(String::as_str)
            == Some("SMS")
            && r.challenge_parameters
                .get("CODE_DELIVERY_DESTINATION")
                .map(String::as_str)
                == Some("+*******1234"),
        "{:?}",
        r.challenge_parameters
    );
    let m = d.outbox_after(2, "dora", "SIGN_IN_CODE", 0).await?;
    ensure!(
        m.body == format!("Your pwless code: {}", m.code) && m.code.len() == 6,
        "the SMS follows the template: {:?}",
        m.body
    );
    expect_exception(
        "an SMS_MFA session answered as EMAIL_OTP",
        d.respond_as(
            2,
            &d.client_id,
            "EMAIL_OTP",
            &r.session,
            &[("USERNAME", "dora"), ("EMAIL_OTP_CODE", &m.code)],
        )
        .await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    let t = d
        .respond_as(
            3,
            &d.client_id,
            "SMS_MFA",
            &r.session,
            &[("USERNAME", "dora"), ("SMS_MFA_CODE", &m.code)],
        )
        .await
        .map_err(status_err("SMS_MFA answered on node 3"))?;
    let dora_tokens = Tokens::from_result("SMS_MFA", t.authentication_result)?;
    expect_exception(
        "the SMS_MFA code again",
        d.respond_as(
            1,
            &d.client_id,
            "SMS_MFA",
            &r.session,
            &[("USERNAME", "dora"), ("SMS_MFA_CODE", &m.code)],
        )
        .await,
        Code::InvalidArgument,
        "ExpiredCodeException",
    )?;

    println!("SELECT_MFA_TYPE offers SMS and email");
    let cfg = SetUserMfaPreferenceRequest {
        sms_mfa_settings: Some(SmsMfaSettingsType {
            enabled: true,
            preferred_mfa: false,
        }),
        email_mfa_settings: Some(EmailMfaSettingsType {
            enabled: true,
            preferred_mfa: false,
        }),
        access_token: dora_tokens.access_token.clone(),
        ..Default::default()
    };
    d.node(1)
        .auth()
        .set_user_mfa_preference(cfg)
        .await
        .map_err(status_err("SetUserMFAPreference SMS + email"))?;
    d.barrier_all().await?;
    let r = d
        .password_auth(2, "dora", GOOD_PASSWORD)
        .await
        .map_err(status_err("USER_PASSWORD_AUTH dora, two factors"))?;
    ensure!(
        r.challenge_name == "SELECT_MFA_TYPE"
            && r.challenge_parameters.get("MFAS_CAN_CHOOSE").map(String::as_str) == Some(r#"["SMS_MFA","EMAIL_OTP"]"#),
        "{r:?}"
    );
    let e = d
        .respond_as(
            3,
            &d.client_id,
            "SELECT_MFA_TYPE",
            &r.session,
            &[("USERNAME", "dora"), ("ANSWER", "EMAIL_OTP")],
        )
        .await
        .map_err(status_err("SELECT_MFA_TYPE EMAIL_OTP"))?;
    ensure!(e.challenge_name == "EMAIL_OTP", "{e:?}");
    let m = d.outbox_after(1, "dora", "SIGN_IN_CODE", 1).await?;
    ensure!(
        m.body == format!("Code {}", m.code) && m.code.len() == 8 && m.subject == "Your code",
        "the email follows the template: {m:?}"
    );
    let t = d
        .respond_as(
            1,
            &d.client_id,
            "EMAIL_OTP",
            &e.session,
            &[("USERNAME", "dora"), ("EMAIL_OTP_CODE", &m.code)],
        )
        .await
        .map_err(status_err("EMAIL_OTP as MFA"))?;
    Tokens::from_result("EMAIL_OTP as MFA", t.authentication_result)?;

    // USER_AUTH with EMAIL_OTP as the first factor: no MFA after it.
    let r = d
        .user_auth_as(1, &hidden, "dora", Some("EMAIL_OTP"), &[])
        .await
        .map_err(status_err("USER_AUTH EMAIL_OTP dora"))?;
    let code = d.sign_in_code_after(2, "dora", 2, 8).await?;
    let t = d
        .respond_as(
            2,
            &hidden,
            "EMAIL_OTP",
            &r.session,
            &[("USERNAME", "dora"), ("EMAIL_OTP_CODE", &code)],
        )
        .await
        .map_err(status_err("EMAIL_OTP first factor with MFA on"))?;
    Tokens::from_result("no MFA after a passwordless first factor", t.authentication_result)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn magic_links_work_once_on_any_node() {
    let _serial = SERIAL.lock().await;
    let c = three_nodes().await;
    let r = magic_link_body(&c).await;
    c.finish(r);
}

/// The path and query of a link (`http://host:port/...`), and its token.
fn split_link(link: &str) -> Result<(String, String)> {
    let rest = link
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("the link {link:?} is not http://"))?;
    let path = &rest[rest.find('/').ok_or_else(|| anyhow!("no path in {link:?}"))?..];
    let token = path
        .split_once("token=")
        .map(|(_, t)| t.to_string())
        .ok_or_else(|| anyhow!("no token in {link:?}"))?;
    Ok((path.to_string(), token))
}

async fn magic_link_body(c: &TestCluster) -> Result<()> {
    let (d, hidden, _) = passwordless_pool(c, "pwless-link").await?;
    user(&d, "fay", &[("email", "fay@pwless.test"), ("email_verified", "true")]).await?;
    let addr = |via: u64| d.api_addrs[(via - 1) as usize].clone();

    let r = d
        .user_auth_as(1, &hidden, "fay", Some("MAGIC_LINK"), &[])
        .await
        .map_err(status_err("USER_AUTH MAGIC_LINK"))?;
    ensure!(r.challenge_name == "MAGIC_LINK" && !r.session.is_empty(), "{r:?}");
    let m = d.outbox_after(2, "fay", "MAGIC_LINK", 0).await?;
    ensure!(
        m.code
            .starts_with(&format!("http://{}/{}/magic-link?token=", addr(1), d.pool_id)),
        "the link points at node 1's api port: {}",
        m.code
    );
    ensure!(m.body.contains(&m.code), "the body carries the link");
    let (path, token) = split_link(&m.code)?;

    println!("polling before approval");
    expect_exception(
        "MAGIC_LINK before approval",
        d.respond_as(3, &hidden, "MAGIC_LINK", &r.session, &[("USERNAME", "fay")])
            .await,
        Code::FailedPrecondition,
        "MagicLinkNotApprovedException",
    )?;
    println!("a GET (a mail scanner) shows the form and approves nothing");
    let (status, page) = http_request(&addr(2), "GET", &path, None).await?;
    ensure!(
        status == 200 && page.contains("<form method=\"post\"") && page.contains("fay"),
        "GET: {status} {page}"
    );
    expect_exception(
        "MAGIC_LINK after a GET",
        d.respond_as(1, &hidden, "MAGIC_LINK", &r.session, &[("USERNAME", "fay")])
            .await,
        Code::FailedPrecondition,
        "MagicLinkNotApprovedException",
    )?;
    let link_path = path.split('?').next().unwrap_or_default().to_string();
    let form = format!("token={token}");
    let (status, page) = http_request(&addr(2), "POST", &link_path, Some(&form)).await?;
    ensure!(
        status == 200 && page.contains("signed in"),
        "POST on node 2: {status} {page}"
    );
    let (status, _) = http_request(&addr(3), "POST", &link_path, Some(&form)).await?;
    ensure!(status == 400, "a second POST (node 3) must fail: {status}");

    println!("the device that asked collects its tokens on another node, once");
    let t = d
        .respond_as(3, &hidden, "MAGIC_LINK", &r.session, &[("USERNAME", "fay")])
        .await
        .map_err(status_err("MAGIC_LINK collected on node 3"))?;
    let tokens = Tokens::from_result("MAGIC_LINK", t.authentication_result)?;
    let claims = peek_claims(&tokens.access_token)?;
    ensure!(
        claims["username"] == "fay" && claims["client_id"] == hidden.as_str(),
        "{claims}"
    );
    for via in [1, 2] {
        expect_exception(
            &format!("MAGIC_LINK collected again on node {via}"),
            d.respond_as(via, &hidden, "MAGIC_LINK", &r.session, &[("USERNAME", "fay")])
                .await,
            Code::InvalidArgument,
            "ExpiredCodeException",
        )?;
    }

    println!("a link of another session");
    let s1 = d
        .user_auth_as(2, &hidden, "fay", Some("MAGIC_LINK"), &[])
        .await
        .map_err(status_err("USER_AUTH MAGIC_LINK s1"))?;
    d.outbox_after(1, "fay", "MAGIC_LINK", 1).await?;
    let s2 = d
        .user_auth_as(3, &hidden, "fay", Some("MAGIC_LINK"), &[])
        .await
        .map_err(status_err("USER_AUTH MAGIC_LINK s2"))?;
    let m2 = d.outbox_after(1, "fay", "MAGIC_LINK", 2).await?;
    let (_, token2) = split_link(&m2.code)?;
    expect_exception(
        "the second session's token pasted into the first",
        d.respond_as(
            1,
            &hidden,
            "MAGIC_LINK",
            &s1.session,
            &[("USERNAME", "fay"), ("MAGIC_LINK_TOKEN", &token2)],
        )
        .await,
        Code::InvalidArgument,
        "CodeMismatchException",
    )?;
    expect_exception(
        "a session used as a link token",
        d.respond_as(
            1,
            &hidden,
            "MAGIC_LINK",
            &s2.session,
            &[("USERNAME", "fay"), ("MAGIC_LINK_TOKEN", &s2.session)],
        )
        .await,
        Code::InvalidArgument,
        "CodeMismatchException",
    )?;
    let (status, _) = http_request(&addr(1), "POST", &link_path, Some(&format!("token={}", s2.session))).await?;
    ensure!(status == 400, "a session is not a link token: {status}");
    let t = d
        .respond_as(
            2,
            &hidden,
            "MAGIC_LINK",
            &s2.session,
            &[("USERNAME", "fay"), ("MAGIC_LINK_TOKEN", &token2)],
        )
        .await
        .map_err(status_err("MAGIC_LINK_TOKEN pasted"))?;
    Tokens::from_result("MAGIC_LINK_TOKEN", t.authentication_result)?;
    let (status, _) = http_request(&addr(3), "POST", &link_path, Some(&format!("token={token2}"))).await?;
    ensure!(status == 400, "a pasted (used) link cannot be approved after: {status}");
    expect_exception(
        "a pasted token used twice",
        d.respond_as(
            3,
            &hidden,
            "MAGIC_LINK",
            &s2.session,
            &[("USERNAME", "fay"), ("MAGIC_LINK_TOKEN", &token2)],
        )
        .await,
        Code::InvalidArgument,
        "ExpiredCodeException",
    )?;

    println!("an unknown user's magic link is never approved");
    let nobody = d
        .user_auth_as(1, &hidden, "nobody", Some("MAGIC_LINK"), &[])
        .await
        .map_err(status_err("USER_AUTH MAGIC_LINK nobody"))?;
    ensure!(nobody.challenge_name == "MAGIC_LINK" && !nobody.session.is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    ensure!(
        d.outbox_count(1, "nobody", "MAGIC_LINK").await? == 0,
        "a link was sent for nobody"
    );
    expect_exception(
        "polling an unknown user's session",
        d.respond_as(2, &hidden, "MAGIC_LINK", &nobody.session, &[("USERNAME", "nobody")])
            .await,
        Code::FailedPrecondition,
        "MagicLinkNotApprovedException",
    )?;
    Ok(())
}
