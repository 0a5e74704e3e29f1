//! User-pool triggers (issue 12) on a real three-node cluster, with the
//! receivers as small HTTP servers on loopback inside the test
//! (`common::hooks`), which check every signature with their own HMAC.
//!
//! * Each trigger fires with Cognito's event shape and `triggerSource`:
//!   PreSignUp, PostConfirmation, PreAuthentication, PostAuthentication
//!   and PreTokenGeneration (V2: id and access tokens, scopes, groups),
//!   on whichever node handles the request.
//! * PreSignUp auto-confirms and auto-verifies; a refusal names its reason
//!   and creates nothing. PreTokenGeneration changes the claims of tokens
//!   that every node's JWKS verifies, and can never touch a protected one.
//! * A trigger that hangs fails the flow with UserLambdaValidationException
//!   within the pool's timeout, shows in the metrics, and the node keeps
//!   serving; an idempotent trigger is retried after a 5xx and a notice is
//!   not; a pool cannot have triggers without a signing secret.
//! * CUSTOM_AUTH runs three rounds from a loopback webhook, each answered
//!   on another node, with its private parameters sealed in the session;
//!   wrong answers end a session after the pool's limit and count toward
//!   the lockout.
//!
//! Run with: `cargo test --test triggers -- --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::auth::*;
use common::hooks::{self, Hook, Reply};
use common::TestCluster;
use serde_json::{json, Value};
use tessera::auth::lockout::THRESHOLD;
use tessera::proto::*;
use tonic::Code;

const SECRET: &str = "trigger-secret-0123456789abcdef";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sets `config` as the pool's triggers through node `via`, then waits
/// until every node has applied it (a consistent read on each): pool
/// settings, triggers included, are read locally by the node serving a
/// request, like Cognito's eventually consistent configuration.
async fn set_triggers(fx: &Fixture, via: u64, config: LambdaConfigType) -> Result<UserPoolType, tonic::Status> {
    let c = fx.node(via);
    let r = c
        .admin()
        .update_user_pool(c.req(UpdateUserPoolRequest {
            user_pool_id: fx.pool_id.clone(),
            lambda_config: Some(config),
            ..Default::default()
        }))
        .await?
        .into_inner();
    for id in fx.node_ids() {
        let n = fx.node(id);
        n.admin()
            .describe_user_pool(n.req(DescribeUserPoolRequest {
                user_pool_id: fx.pool_id.clone(),
                consistent_read: true,
            }))
            .await?;
    }
    Ok(r.user_pool.unwrap_or_default())
}

/// Every flow trigger pointing at `hook`, PreTokenGeneration as V2.
fn all_flow_triggers(hook: &Hook) -> LambdaConfigType {
    LambdaConfigType {
        pre_sign_up: hook.url.clone(),
        post_confirmation: hook.url.clone(),
        pre_authentication: hook.url.clone(),
        post_authentication: hook.url.clone(),
        pre_token_generation_config: Some(PreTokenGenerationVersionConfigType {
            lambda_version: "V2_0".into(),
            lambda_arn: hook.url.clone(),
        }),
        signing_secret: SECRET.into(),
        ..Default::default()
    }
}

/// What the test's trigger does, by event: auto-confirm and verify
/// `alice`, refuse `bob`, add claims for everyone, and try to override
/// `sub` for `carol`; refuse the sign-in of `dave`.
fn flow_handler(event: &Value, _n: usize) -> Reply {
    let user = event["userName"].as_str().unwrap_or("");
    match event["triggerSource"].as_str().unwrap_or("") {
        "PreSignUp_SignUp" if user == "bob" => Reply::Json(400, json!({"errorMessage": "bob is not welcome here"})),
        "PreSignUp_SignUp" => {
            let mut e = event.clone();
            e["response"] = json!({"autoConfirmUser": true, "autoVerifyEmail": true});
            Reply::Json(200, e)
        }
        "PreSignUp_AdminCreateUser" if user == "mallory" => {
            Reply::Json(400, json!({"errorMessage": "no accounts for mallory"}))
        }
        "PreSignUp_AdminCreateUser" => {
            let mut e = event.clone();
            e["response"] = json!({"autoVerifyEmail": true});
            Reply::Json(200, e)
        }
        "PreAuthentication_Authentication" if user == "dave" => {
            Reply::Json(403, json!({"errorMessage": "dave signs in on weekdays only"}))
        }
        s if s.starts_with("TokenGeneration_") && user == "carol" => Reply::Json(
            200,
            json!({"claimsAndScopeOverrideDetails": {"idTokenGeneration": {"claimsToAddOrOverride": {"sub": "someone-else"}}}}),
        ),
        s if s.starts_with("TokenGeneration_") => {
            let mut e = event.clone();
            e["response"] = json!({"claimsAndScopeOverrideDetails": {
                "idTokenGeneration": {"claimsToAddOrOverride": {"tier": "gold"}, "claimsToSuppress": ["email"]},
                "accessTokenGeneration": {"claimsToAddOrOverride": {"tenant": "t1"}, "scopesToAdd": ["orders:read"]},
                "groupOverrideDetails": {"groupsToOverride": ["vip"]}
            }});
            Reply::Json(200, e)
        }
        _ => Reply::Json(200, event.clone()),
    }
}

#[tokio::test]
async fn triggers_fire_with_cognito_shapes_and_change_the_flows() {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let fx = Fixture::create(&c, PoolSpec::default()).await.unwrap();
    let hook = hooks::start(SECRET, Arc::new(flow_handler)).await.unwrap();
    let result = flows(&fx, &hook).await;
    if result.is_err() {
        for id in 1..=3 {
            eprintln!("--- node {id}\n{}", c.node(id).log_tail(40));
        }
    }
    result.unwrap();
}

async fn flows(fx: &Fixture, hook: &Hook) -> Result<()> {
    // The attack first: triggers nobody can authenticate. Without a
    // signing secret the pool would send unsigned requests.
    let mut unsigned = all_flow_triggers(hook);
    unsigned.signing_secret.clear();
    expect_exception(
        "triggers without a signing secret",
        set_triggers(fx, 1, unsigned).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    let mut arn = all_flow_triggers(hook);
    arn.pre_sign_up = "arn:aws:lambda:eu-west-1:123456789012:function:pre".into();
    expect_exception(
        "a Lambda ARN instead of a URL",
        set_triggers(fx, 1, arn).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    let pool = set_triggers(fx, 1, all_flow_triggers(hook))
        .await
        .map_err(status_err("UpdateUserPool with triggers"))?;
    let shown = pool.lambda_config.context("UpdateUserPool shows no lambda_config")?;
    ensure!(
        shown.pre_sign_up == hook.url,
        "pre_sign_up shown as {:?}",
        shown.pre_sign_up
    );
    ensure!(
        shown.signing_secret.is_empty(),
        "the signing secret must never be returned"
    );
    ensure!(shown.signing_secret_set, "signing_secret_set should be true");
    // Every node has it (a consistent read on node 3).
    let described = fx
        .node(3)
        .admin()
        .describe_user_pool(fx.node(3).req(DescribeUserPoolRequest {
            user_pool_id: fx.pool_id.clone(),
            consistent_read: true,
        }))
        .await
        .map_err(status_err("DescribeUserPool"))?
        .into_inner()
        .user_pool
        .unwrap_or_default()
        .lambda_config
        .unwrap_or_default();
    ensure!(
        described
            .pre_token_generation_config
            .as_ref()
            .map(|v| v.lambda_version.as_str())
            == Some("V2_0"),
        "node 3 describes {described:?}"
    );

    // PreSignUp auto-confirms and verifies alice: no code is sent.
    let mut req = fx.sign_up_request("alice", GOOD_PASSWORD, "alice@example.com");
    req.validation_data = attrs(&[("invite", "XYZ")]);
    req.client_metadata = [("campaign".to_string(), "spring".to_string())].into();
    let up = fx.sign_up(2, req).await.map_err(status_err("SignUp alice"))?;
    ensure!(up.user_confirmed, "PreSignUp said autoConfirmUser, SignUp says {up:?}");
    ensure!(
        up.code_delivery_details.is_none(),
        "an auto-confirmed user gets no code: {up:?}"
    );
    let pre = hook.calls_of("PreSignUp_SignUp");
    ensure!(pre.len() == 1, "PreSignUp calls: {}", pre.len());
    let e = &pre[0].body;
    ensure!(pre[0].signature_ok, "PreSignUp request signature does not verify");
    ensure!(pre[0].header("x-tessera-trigger") == Some("PreSignUp_SignUp"));
    ensure!(e["version"] == "1" && e["userPoolId"] == fx.pool_id.as_str() && e["userName"] == "alice");
    ensure!(
        e["callerContext"]["clientId"] == fx.client_id.as_str(),
        "callerContext {}",
        e["callerContext"]
    );
    ensure!(
        e["request"]["userAttributes"]["email"] == "alice@example.com",
        "request {}",
        e["request"]
    );
    ensure!(
        e["request"]["validationData"]["invite"] == "XYZ",
        "request {}",
        e["request"]
    );
    ensure!(
        e["request"]["clientMetadata"]["campaign"] == "spring",
        "request {}",
        e["request"]
    );
    ensure!(e["response"].is_object(), "Cognito sends an empty response object");
    let user = fx
        .admin_get_user(3, "alice")
        .await
        .map_err(status_err("AdminGetUser alice"))?;
    ensure!(user.user_status == "CONFIRMED", "alice is {}", user.user_status);
    ensure!(
        user.user_attributes
            .iter()
            .any(|a| a.name == "email_verified" && a.value == "true"),
        "autoVerifyEmail did not verify: {:?}",
        user.user_attributes
    );
    let confirmations = hook.calls_of("PostConfirmation_ConfirmSignUp");
    ensure!(
        confirmations.len() == 1,
        "PostConfirmation calls: {}",
        confirmations.len()
    );
    ensure!(
        confirmations[0].body["request"]["userAttributes"]["sub"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "PostConfirmation names the user's sub: {}",
        confirmations[0].body
    );
    ensure!(
        fx.outbox_messages(1, "alice", "CONFIRM_SIGN_UP").await?.is_empty(),
        "a confirmation code was written for an auto-confirmed user"
    );

    // A refusal names its reason, and nothing is created.
    let refused = fx
        .sign_up(3, fx.sign_up_request("bob", GOOD_PASSWORD, "bob@example.com"))
        .await;
    let s = expect_exception(
        "PreSignUp refuses bob",
        refused,
        Code::FailedPrecondition,
        "UserLambdaValidationException",
    )?;
    ensure!(
        s.message()
            .contains("PreSignUp failed with error bob is not welcome here"),
        "{}",
        s.message()
    );
    expect_exception(
        "bob was never created",
        fx.admin_get_user(1, "bob").await,
        Code::NotFound,
        "UserNotFoundException",
    )?;

    // AdminCreateUser asks PreSignUp too (PreSignUp_AdminCreateUser).
    let admin_create = |name: &'static str| async move {
        let c = fx.node(2);
        c.admin()
            .admin_create_user(c.req(AdminCreateUserRequest {
                user_pool_id: fx.pool_id.clone(),
                username: name.into(),
                user_attributes: vec![AttributeValue {
                    name: "email".into(),
                    value: format!("{name}@example.com"),
                }],
                message_action: "SUPPRESS".into(),
                validation_data: vec![AttributeValue {
                    name: "ticket".into(),
                    value: "T-1".into(),
                }],
                ..Default::default()
            }))
            .await
            .map(|r| r.into_inner())
    };
    let s = expect_exception(
        "PreSignUp refuses mallory's AdminCreateUser",
        admin_create("mallory").await,
        Code::FailedPrecondition,
        "UserLambdaValidationException",
    )?;
    ensure!(s.message().contains("no accounts for mallory"), "{}", s.message());
    let frank = admin_create("frank")
        .await
        .map_err(status_err("AdminCreateUser frank"))?
        .user
        .unwrap_or_default();
    ensure!(
        frank.user_status == "FORCE_CHANGE_PASSWORD",
        "frank is {}",
        frank.user_status
    );
    ensure!(
        frank
            .attributes
            .iter()
            .any(|a| a.name == "email_verified" && a.value == "true"),
        "autoVerifyEmail did not verify frank: {:?}",
        frank.attributes
    );
    let admin_calls = hook.calls_of("PreSignUp_AdminCreateUser");
    ensure!(
        admin_calls
            .iter()
            .any(|c| c.body["request"]["validationData"]["ticket"] == "T-1"),
        "PreSignUp_AdminCreateUser did not get the validation data"
    );

    // Sign-in through node 3: PreAuthentication, PostAuthentication and
    // PreTokenGeneration (V2) fire, and the tokens carry the changes.
    let tokens = fx.sign_in(3, "alice", GOOD_PASSWORD).await?;
    let pre_auth = hook.calls_of("PreAuthentication_Authentication");
    ensure!(pre_auth.len() == 1, "PreAuthentication calls: {}", pre_auth.len());
    ensure!(pre_auth[0].body["request"]["userNotFound"] == false);
    ensure!(hook.calls_of("PostAuthentication_Authentication").len() == 1);
    let gen = hook.calls_of("TokenGeneration_Authentication");
    ensure!(gen.len() == 1, "PreTokenGeneration calls: {}", gen.len());
    ensure!(
        gen[0].body["version"] == "2",
        "a V2_0 trigger gets version 2: {}",
        gen[0].body
    );
    ensure!(
        gen[0].body["request"]["groupConfiguration"]["groupsToOverride"].is_array(),
        "request {}",
        gen[0].body["request"]
    );
    ensure!(gen[0].body["request"]["scopes"].is_array(), "V2 lists the scopes");
    let (_, id) = fx.verify_id_token_everywhere(&tokens.id_token).await?;
    ensure!(id["tier"] == "gold", "id token lacks the added claim: {id}");
    ensure!(id.get("email").is_none(), "email was suppressed, yet: {id}");
    ensure!(id["cognito:groups"] == json!(["vip"]), "groups not overridden: {id}");
    let (_, access) = fx.verify_access_token_everywhere(&tokens.access_token).await?;
    ensure!(access["tenant"] == "t1", "access token lacks the added claim: {access}");
    let scope = access["scope"].as_str().unwrap_or("");
    ensure!(
        scope.split(' ').any(|s| s == "orders:read") && scope.contains("aws.cognito.signin.user.admin"),
        "scope {scope:?}"
    );
    // The user-pool API still takes the changed access token.
    fx.get_user(1, &tokens.access_token)
        .await
        .map_err(status_err("GetUser with the changed token"))?;

    // A refresh regenerates tokens but is no authentication.
    let refreshed = fx.refresh(2, &tokens.refresh_token, "alice").await?;
    ensure!(hook.calls_of("TokenGeneration_RefreshTokens").len() == 1);
    ensure!(hook.calls_of("PostAuthentication_Authentication").len() == 1);
    let (_, id) = fx.verify_id_token_everywhere(&refreshed.id_token).await?;
    ensure!(id["tier"] == "gold", "refreshed id token: {id}");

    // A trigger cannot rewrite who a token is for.
    let up = fx
        .sign_up(1, fx.sign_up_request("carol", GOOD_PASSWORD, "carol@example.com"))
        .await
        .map_err(status_err("SignUp carol"))?;
    ensure!(up.user_confirmed, "carol should be auto-confirmed");
    let s = expect_exception(
        "PreTokenGeneration overriding sub",
        fx.password_auth(2, "carol", GOOD_PASSWORD).await,
        Code::FailedPrecondition,
        "UserLambdaValidationException",
    )?;
    ensure!(
        s.message().contains("\"sub\""),
        "the message names the claim: {}",
        s.message()
    );

    // PreAuthentication refuses dave before his password is checked.
    let up = fx
        .sign_up(1, fx.sign_up_request("dave", GOOD_PASSWORD, "dave@example.com"))
        .await
        .map_err(status_err("SignUp dave"))?;
    ensure!(up.user_confirmed, "dave should be auto-confirmed");
    let s = expect_exception(
        "PreAuthentication refuses dave",
        fx.password_auth(1, "dave", GOOD_PASSWORD).await,
        Code::FailedPrecondition,
        "UserLambdaValidationException",
    )?;
    ensure!(
        s.message().contains("dave signs in on weekdays only"),
        "{}",
        s.message()
    );
    // An unknown user is asked about too, flagged as not found.
    let _ = fx.password_auth(2, "nobody-here", GOOD_PASSWORD).await;
    ensure!(
        hook.calls_of("PreAuthentication_Authentication")
            .iter()
            .any(|c| c.body["userName"] == "nobody-here" && c.body["request"]["userNotFound"] == true),
        "no PreAuthentication with userNotFound for an unknown user"
    );
    ensure!(
        hook.calls().iter().all(|c| c.signature_ok),
        "every trigger request must verify"
    );

    // Removing the triggers: sign-ups are plain again.
    set_triggers(fx, 2, LambdaConfigType::default())
        .await
        .map_err(status_err("UpdateUserPool removing triggers"))?;
    let before = hook.calls().len();
    let up = fx
        .sign_up(1, fx.sign_up_request("erin", GOOD_PASSWORD, "erin@example.com"))
        .await
        .map_err(status_err("SignUp erin"))?;
    ensure!(!up.user_confirmed, "without PreSignUp a sign-up is unconfirmed");
    ensure!(hook.calls().len() == before, "a removed trigger was still called");
    Ok(())
}

/// Answers by `triggerSource`: PreSignUp hangs for `slow`, fails with 500
/// on the first call for `flaky` (then accepts), and answers non-JSON for
/// `garbled`; PostConfirmation always fails with 500.
fn failing_handler(event: &Value, _n: usize) -> Reply {
    let user = event["userName"].as_str().unwrap_or("");
    match event["triggerSource"].as_str().unwrap_or("") {
        "PreSignUp_SignUp" if user == "slow" => Reply::Hang,
        "PreSignUp_SignUp" if user == "garbled" => Reply::Raw(200, "this is not json"),
        "PreSignUp_SignUp" if user.starts_with("flaky") => {
            if FLAKY.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                Reply::Raw(500, "")
            } else {
                Reply::Json(200, json!({"autoConfirmUser": true}))
            }
        }
        "PostConfirmation_ConfirmSignUp" => Reply::Raw(500, ""),
        _ => Reply::Json(200, json!({})),
    }
}

static FLAKY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[tokio::test]
async fn a_failing_trigger_fails_cleanly_and_the_node_keeps_serving() {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let fx = Fixture::create(&c, PoolSpec::default()).await.unwrap();
    let hook = hooks::start(SECRET, Arc::new(failing_handler)).await.unwrap();
    let result = failures(&c, &fx, &hook).await;
    if result.is_err() {
        for id in 1..=3 {
            eprintln!("--- node {id}\n{}", c.node(id).log_tail(40));
        }
    }
    result.unwrap();
}

async fn failures(c: &TestCluster, fx: &Fixture, hook: &Hook) -> Result<()> {
    // A user who signs in while the trigger hangs.
    fx.confirmed_user(2, "steady", GOOD_PASSWORD, "steady@example.com")
        .await?;
    let config = LambdaConfigType {
        pre_sign_up: hook.url.clone(),
        post_confirmation: hook.url.clone(),
        signing_secret: SECRET.into(),
        timeout_ms: 600,
        ..Default::default()
    };
    set_triggers(fx, 1, config)
        .await
        .map_err(status_err("UpdateUserPool with triggers"))?;

    // A hanging trigger: the sign-up fails within the timeout (and its
    // retries), and nothing is created.
    let started = Instant::now();
    let slow = fx.sign_up(2, fx.sign_up_request("slow", GOOD_PASSWORD, "slow@example.com"));
    let (slow, other) = tokio::join!(
        slow,
        fx.sign_up(3, fx.sign_up_request("garbled", GOOD_PASSWORD, "g@example.com"))
    );
    let took = started.elapsed();
    let s = expect_exception(
        "a hanging PreSignUp",
        slow,
        Code::Unavailable,
        "UserLambdaValidationException",
    )?;
    ensure!(s.message().contains("timed out"), "{}", s.message());
    ensure!(
        took < Duration::from_secs(10),
        "the node waited {took:?} on a 600 ms trigger"
    );
    let s = expect_exception(
        "a PreSignUp answering something that is not JSON",
        other,
        Code::FailedPrecondition,
        "UserLambdaValidationException",
    )?;
    ensure!(s.message().contains("not JSON"), "{}", s.message());
    expect_exception(
        "slow was never created",
        fx.admin_get_user(1, "slow").await,
        Code::NotFound,
        "UserNotFoundException",
    )?;
    let text = c.node(2).metrics().await?;
    let timeouts = common::metric_value(
        &text,
        "tessera_trigger_calls_total{trigger=\"PreSignUp\",outcome=\"timeout\"}",
    );
    ensure!(
        timeouts.unwrap_or(0.0) >= 1.0,
        "no timeout counted on node 2: {timeouts:?}"
    );
    ensure!(
        text.contains("tessera_trigger_latency_seconds_count{trigger=\"PreSignUp\"}"),
        "no trigger latency histogram on node 2"
    );

    // The node kept serving throughout.
    fx.sign_in(2, "steady", GOOD_PASSWORD).await?;

    // PreSignUp is idempotent: retried after a 5xx. PostConfirmation is a
    // notice: called once, and its failure reaches the caller although
    // the user stays confirmed (as in Cognito).
    let before = hook.calls_of("PreSignUp_SignUp").len();
    let flaky = fx
        .sign_up(1, fx.sign_up_request("flaky1", GOOD_PASSWORD, "flaky@example.com"))
        .await;
    let after = hook.calls_of("PreSignUp_SignUp").len();
    ensure!(
        after - before == 2,
        "PreSignUp should be tried twice, was {}",
        after - before
    );
    expect_exception(
        "a failing PostConfirmation",
        flaky,
        Code::FailedPrecondition,
        "UserLambdaValidationException",
    )?;
    ensure!(
        hook.calls_of("PostConfirmation_ConfirmSignUp").len() == 1,
        "a notice must not be retried"
    );
    let user = fx
        .admin_get_user(3, "flaky1")
        .await
        .map_err(status_err("AdminGetUser flaky1"))?;
    ensure!(user.user_status == "CONFIRMED", "flaky1 is {}", user.user_status);
    Ok(())
}

/// A three-question custom challenge: question `i` (public `q<i>`) is
/// answered by `a<i>` (private), and three right answers sign in; a
/// wrong answer poses the same question again.
fn quiz_handler(event: &Value, _n: usize) -> Reply {
    let history = event["request"]["session"].as_array().cloned().unwrap_or_default();
    let right = history.iter().filter(|r| r["challengeResult"] == true).count();
    let mut e = event.clone();
    match event["triggerSource"].as_str().unwrap_or("") {
        "DefineAuthChallenge_Authentication" => {
            e["response"] = if right >= 3 {
                json!({"issueTokens": true, "failAuthentication": false})
            } else {
                json!({"challengeName": "CUSTOM_CHALLENGE", "issueTokens": false, "failAuthentication": false})
            };
        }
        "CreateAuthChallenge_Authentication" => {
            e["response"] = json!({
                "publicChallengeParameters": {"question": format!("q{right}")},
                "privateChallengeParameters": {"answer": format!("secret-answer-{right}")},
                "challengeMetadata": format!("round-{right}"),
            });
        }
        "VerifyAuthChallengeResponse_Authentication" => {
            let expected = &event["request"]["privateChallengeParameters"]["answer"];
            e["response"] = json!({"answerCorrect": event["request"]["challengeAnswer"] == *expected});
        }
        _ => {}
    }
    Reply::Json(200, e)
}

/// `RespondToAuthChallenge(CUSTOM_CHALLENGE)` through node `via`.
async fn answer_custom(
    fx: &Fixture,
    via: u64,
    client_id: &str,
    session: &str,
    username: &str,
    answer: &str,
) -> Result<RespondToAuthChallengeResponse, tonic::Status> {
    Ok(fx
        .node(via)
        .auth()
        .respond_to_auth_challenge(RespondToAuthChallengeRequest {
            client_id: client_id.to_string(),
            challenge_name: "CUSTOM_CHALLENGE".into(),
            session: session.to_string(),
            challenge_responses: params(&[("USERNAME", username), ("ANSWER", answer)]),
        })
        .await?
        .into_inner())
}

#[tokio::test]
async fn custom_auth_runs_the_rounds_its_triggers_ask_for() {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let fx = Fixture::create(&c, PoolSpec::default()).await.unwrap();
    let hook = hooks::start(SECRET, Arc::new(quiz_handler)).await.unwrap();
    let result = custom_auth(&fx, &hook).await;
    if result.is_err() {
        for id in 1..=3 {
            eprintln!("--- node {id}\n{}", c.node(id).log_tail(40));
        }
    }
    result.unwrap();
}

async fn custom_auth(fx: &Fixture, hook: &Hook) -> Result<()> {
    let app = fx
        .create_app_client(1, "quiz-app", &["ALLOW_CUSTOM_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"])
        .await?;
    let other = fx.create_app_client(2, "other-app", &["ALLOW_CUSTOM_AUTH"]).await?;
    fx.confirmed_user(1, "quinn", GOOD_PASSWORD, "quinn@example.com")
        .await?;
    expect_exception(
        "CUSTOM_AUTH before the pool has its triggers",
        fx.initiate_as(1, &app, "CUSTOM_AUTH", params(&[("USERNAME", "quinn")]))
            .await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    expect_exception(
        "CUSTOM_AUTH through a client that does not allow it",
        fx.initiate(1, "CUSTOM_AUTH", params(&[("USERNAME", "quinn")])).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    set_triggers(
        fx,
        3,
        LambdaConfigType {
            define_auth_challenge: hook.url.clone(),
            create_auth_challenge: hook.url.clone(),
            verify_auth_challenge_response: hook.url.clone(),
            signing_secret: SECRET.into(),
            custom_auth_max_wrong_answers: 2,
            ..Default::default()
        },
    )
    .await
    .map_err(status_err("UpdateUserPool with custom-auth triggers"))?;

    // Three rounds, each answered on another node than the last.
    let first = fx
        .initiate_as(1, &app, "CUSTOM_AUTH", params(&[("USERNAME", "quinn")]))
        .await
        .map_err(status_err("InitiateAuth CUSTOM_AUTH"))?;
    ensure!(first.challenge_name == "CUSTOM_CHALLENGE", "got {first:?}");
    ensure!(first.challenge_parameters.get("question").map(String::as_str) == Some("q0"));
    ensure!(first.challenge_parameters.get("USERNAME").map(String::as_str) == Some("quinn"));
    // The expected answer travels in the session, and must not be readable there.
    let raw = first.session.trim_start_matches("tca1.");
    let decoded = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw).unwrap_or_default();
    ensure!(
        !first.session.contains("secret-answer") && !String::from_utf8_lossy(&decoded).contains("secret-answer"),
        "the private challenge parameters are readable in the session"
    );
    // A session used through another app client, or tampered with, is refused.
    expect_exception(
        "the session through another client",
        answer_custom(fx, 2, &other, &first.session, "quinn", "secret-answer-0").await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    let mut tampered = first.session.clone().into_bytes();
    let at = tampered.len() - 5;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    expect_exception(
        "a tampered session",
        answer_custom(fx, 2, &app, &String::from_utf8(tampered)?, "quinn", "secret-answer-0").await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    let mut session = first.session;
    let mut tokens = None;
    for (round, via) in [(0, 2u64), (1, 3), (2, 1)] {
        let r = answer_custom(fx, via, &app, &session, "quinn", &format!("secret-answer-{round}"))
            .await
            .map_err(status_err(&format!("answer {round} on node {via}")))?;
        if round < 2 {
            ensure!(r.challenge_name == "CUSTOM_CHALLENGE", "round {round}: {r:?}");
            let q = r.challenge_parameters.get("question").cloned().unwrap_or_default();
            ensure!(q == format!("q{}", round + 1), "round {round} led to {q}");
            session = r.session;
        } else {
            tokens = Some(Tokens::from_result("the third right answer", r.authentication_result)?);
        }
    }
    let tokens = tokens.context("no tokens after three rounds")?;
    let (_, id) = fx.verify_everywhere(&tokens.id_token, Some(&app)).await?;
    ensure!(
        id["cognito:username"] == "quinn" && id["aud"] == app.as_str(),
        "id token {id}"
    );
    // DefineAuthChallenge saw the whole history, metadata included.
    let last = hook
        .calls_of("DefineAuthChallenge_Authentication")
        .into_iter()
        .last()
        .context("no DefineAuthChallenge call")?;
    let history = last.body["request"]["session"].as_array().cloned().unwrap_or_default();
    ensure!(history.len() == 3, "history {history:?}");
    for (i, r) in history.iter().enumerate() {
        ensure!(
            r["challengeName"] == "CUSTOM_CHALLENGE" && r["challengeResult"] == true,
            "{r}"
        );
        ensure!(r["challengeMetadata"] == format!("round-{i}").as_str(), "{r}");
    }
    ensure!(
        hook.calls().iter().all(|c| c.signature_ok),
        "every trigger request must verify"
    );

    // Wrong answers: two per session end it, and every one counts toward
    // the user's lockout, so replaying sessions cannot guess forever.
    let mut wrong = 0u32;
    let mut locked = false;
    'sessions: for attempt in 0u32..10 {
        let r = fx
            .initiate_as(
                u64::from(attempt % 3 + 1),
                &app,
                "CUSTOM_AUTH",
                params(&[("USERNAME", "quinn")]),
            )
            .await;
        let mut session = match r {
            Ok(r) => r.session,
            Err(s) => {
                check_exception(
                    "a locked user's CUSTOM_AUTH",
                    &s,
                    Code::Unauthenticated,
                    "NotAuthorizedException",
                )?;
                ensure!(s.message().contains("attempts exceeded"), "{}", s.message());
                locked = true;
                break;
            }
        };
        for n in 0u32..2 {
            let r = answer_custom(fx, u64::from(n % 3 + 1), &app, &session, "quinn", "wrong").await;
            match r {
                Ok(r) => {
                    wrong += 1;
                    ensure!(n == 0, "a second wrong answer in one session must end it: {r:?}");
                    ensure!(r.challenge_name == "CUSTOM_CHALLENGE", "{r:?}");
                    session = r.session;
                }
                Err(s) => {
                    check_exception("a wrong answer", &s, Code::Unauthenticated, "NotAuthorizedException")?;
                    if s.message().contains("attempts exceeded") {
                        locked = true;
                        break 'sessions;
                    }
                    wrong += 1;
                    ensure!(
                        n == 1,
                        "the first wrong answer must not end the session: {}",
                        s.message()
                    );
                }
            }
        }
    }
    ensure!(locked, "the user was never locked out after {wrong} wrong answers");
    ensure!(
        wrong <= THRESHOLD,
        "{wrong} wrong answers were evaluated; the lockout allows {THRESHOLD}"
    );
    Ok(())
}

const LEGACY_PASSWORD: &str = "Legacy-Pass-1!";

/// The old system: knows `legacy` (confirmed) and `resetme` (must reset),
/// both with [`LEGACY_PASSWORD`]; refuses everything else.
fn legacy_handler(event: &Value, _n: usize) -> Reply {
    if event["triggerSource"] == "UserMigration_ForgotPassword" {
        if event["userName"] != "forgetful" || !event["request"]["password"].is_null() {
            return Reply::Json(404, json!({"errorMessage": "User not found"}));
        }
        let mut e = event.clone();
        e["response"] = json!({
            "userAttributes": {"email": "forgetful@old.example.com", "email_verified": "true"},
            "messageAction": "SUPPRESS",
        });
        return Reply::Json(200, e);
    }
    if event["triggerSource"] != "UserMigration_Authentication" {
        return Reply::Json(200, event.clone());
    }
    let user = event["userName"].as_str().unwrap_or("");
    let right = event["request"]["password"] == LEGACY_PASSWORD;
    let status = match user {
        "legacy" if right => "CONFIRMED",
        "resetme" if right => "RESET_REQUIRED",
        _ => return Reply::Json(404, json!({"errorMessage": "Bad password"})),
    };
    let mut e = event.clone();
    e["response"] = json!({
        "userAttributes": {"email": format!("{user}@old.example.com"), "email_verified": "true", "sub": "old-system-id-7"},
        "finalUserStatus": status,
        "messageAction": "SUPPRESS",
    });
    Reply::Json(200, e)
}

#[tokio::test]
async fn lazy_migration_creates_the_user_with_its_old_password() {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let fx = Fixture::create(&c, PoolSpec::default()).await.unwrap();
    let hook = hooks::start(SECRET, Arc::new(legacy_handler)).await.unwrap();
    let result = migration(&fx, &hook).await;
    if result.is_err() {
        for id in 1..=3 {
            eprintln!("--- node {id}\n{}", c.node(id).log_tail(40));
        }
    }
    result.unwrap();
}

async fn migration(fx: &Fixture, hook: &Hook) -> Result<()> {
    // How an unknown user is answered before any migration exists.
    let unknown = fx
        .password_auth(1, "ghost", LEGACY_PASSWORD)
        .await
        .expect_err("an unknown user cannot sign in");
    set_triggers(
        fx,
        2,
        LambdaConfigType {
            user_migration: hook.url.clone(),
            signing_secret: SECRET.into(),
            ..Default::default()
        },
    )
    .await
    .map_err(status_err("UpdateUserPool with UserMigration"))?;

    // The old system says no: the answer is the unknown user's, exactly.
    for (who, password) in [("ghost", LEGACY_PASSWORD), ("legacy", "Wrong-Pass-1!")] {
        let s = fx
            .password_auth(2, who, password)
            .await
            .expect_err("a refused migration cannot sign in");
        ensure!(
            s.code() == unknown.code()
                && s.message() == unknown.message()
                && exception_of(&s) == exception_of(&unknown),
            "{who}: refused migration answered {:?} {:?}, an unknown user {:?} {:?}",
            s.code(),
            s.message(),
            unknown.code(),
            unknown.message()
        );
    }
    ensure!(
        fx.admin_get_user(1, "legacy").await.is_err(),
        "a refused migration created the user"
    );

    // The right password: the user is created with it, confirmed, and
    // signed in at once on the node that asked.
    let tokens = fx.sign_in(3, "legacy", LEGACY_PASSWORD).await?;
    let (_, id) = fx.verify_id_token_everywhere(&tokens.id_token).await?;
    ensure!(
        id["email"] == "legacy@old.example.com" && id["email_verified"] == true,
        "{id}"
    );
    ensure!(
        id["sub"] != "old-system-id-7",
        "the old system's id became the sub: {id}"
    );
    let asked = hook.calls_of("UserMigration_Authentication");
    let last = asked.last().context("no UserMigration call")?;
    ensure!(last.signature_ok, "the UserMigration request does not verify");
    ensure!(last.body["request"]["password"] == LEGACY_PASSWORD, "{}", last.body);
    let user = fx
        .admin_get_user(1, "legacy")
        .await
        .map_err(status_err("AdminGetUser legacy"))?;
    ensure!(user.user_status == "CONFIRMED", "legacy is {}", user.user_status);

    // From now on the user is ours: the trigger is not asked again, the
    // password works on every node, and a wrong one is refused here.
    let calls = hook.calls().len();
    for via in [1, 2] {
        fx.sign_in(via, "legacy", LEGACY_PASSWORD).await?;
    }
    expect_exception(
        "a wrong password for the migrated user",
        fx.password_auth(3, "legacy", "Wrong-Pass-1!").await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    ensure!(
        hook.calls().len() == calls,
        "the trigger was asked about a user the pool has"
    );

    // finalUserStatus RESET_REQUIRED: created, and told to reset.
    expect_exception(
        "a user migrated as RESET_REQUIRED",
        fx.password_auth(2, "resetme", LEGACY_PASSWORD).await,
        Code::FailedPrecondition,
        "PasswordResetRequiredException",
    )?;
    let user = fx
        .admin_get_user(3, "resetme")
        .await
        .map_err(status_err("AdminGetUser resetme"))?;
    ensure!(user.user_status == "RESET_REQUIRED", "resetme is {}", user.user_status);

    // ForgotPassword for a name only the old system knows: it is asked
    // without a password, the user is created in RESET_REQUIRED, and the
    // reset code reaches the verified email it gave.
    let forgot = |via: u64, who: &'static str| {
        let node = fx.node(via).clone();
        let client_id = fx.client_id.clone();
        async move {
            node.auth()
                .forgot_password(ForgotPasswordRequest {
                    client_id,
                    username: who.into(),
                    ..Default::default()
                })
                .await
        }
    };
    let delivery = forgot(1, "forgetful")
        .await
        .map_err(status_err("ForgotPassword forgetful"))?
        .into_inner()
        .code_delivery_details
        .context("no delivery details")?;
    ensure!(delivery.attribute_name == "email", "{delivery:?}");
    let asked = hook.calls_of("UserMigration_ForgotPassword");
    let last = asked.last().context("no UserMigration_ForgotPassword call")?;
    ensure!(
        last.signature_ok && last.body["request"]["password"].is_null(),
        "{}",
        last.body
    );
    let user = fx
        .admin_get_user(2, "forgetful")
        .await
        .map_err(status_err("AdminGetUser forgetful"))?;
    ensure!(
        user.user_status == "RESET_REQUIRED",
        "forgetful is {}",
        user.user_status
    );
    let code = fx.code(2, "forgetful", "FORGOT_PASSWORD").await?;
    fx.node(3)
        .auth()
        .confirm_forgot_password(ConfirmForgotPasswordRequest {
            client_id: fx.client_id.clone(),
            username: "forgetful".into(),
            confirmation_code: code,
            password: "Brand-New-Pass-1!".into(),
            ..Default::default()
        })
        .await
        .map_err(status_err("ConfirmForgotPassword forgetful"))?;
    fx.sign_in(1, "forgetful", "Brand-New-Pass-1!").await?;
    // A name the old system does not know either gets the unknown-user
    // answer (a decoy delivery), and nothing is created.
    forgot(2, "nobody-anywhere")
        .await
        .map_err(status_err("ForgotPassword unknown"))?;
    ensure!(
        fx.admin_get_user(1, "nobody-anywhere").await.is_err(),
        "a refused migration created the user"
    );
    Ok(())
}

/// The pool's own wording: templates with Cognito's placeholders, a
/// refusal for `badmsg` (no code placeholder).
fn wording_handler(event: &Value, _n: usize) -> Reply {
    let mut e = event.clone();
    let user = event["userName"].as_str().unwrap_or("");
    e["response"] = match event["triggerSource"].as_str().unwrap_or("") {
        "CustomMessage_SignUp" if user == "badmsg" => json!({"emailMessage": "Welcome, no code here"}),
        "CustomMessage_SignUp" => {
            json!({"emailMessage": "Welcome to Acme! Your code: {####}", "emailSubject": "Acme sign-up"})
        }
        "CustomMessage_AdminCreateUser" => {
            json!({"emailMessage": "Hi {username}, your Acme password is {####}", "emailSubject": "Acme account"})
        }
        "CustomMessage_ForgotPassword" => json!({"emailMessage": "Reset code {####}", "emailSubject": null}),
        _ => json!({}),
    };
    Reply::Json(200, e)
}

#[tokio::test]
async fn custom_message_words_the_codes_and_never_sees_them() {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let fx = Fixture::create(&c, PoolSpec::default()).await.unwrap();
    let hook = hooks::start(SECRET, Arc::new(wording_handler)).await.unwrap();
    custom_message(&fx, &hook).await.unwrap();
}

async fn custom_message(fx: &Fixture, hook: &Hook) -> Result<()> {
    set_triggers(
        fx,
        1,
        LambdaConfigType {
            custom_message: hook.url.clone(),
            signing_secret: SECRET.into(),
            ..Default::default()
        },
    )
    .await
    .map_err(status_err("UpdateUserPool with CustomMessage"))?;

    // SignUp: the pool's text and subject, with the code put in here.
    fx.sign_up(2, fx.sign_up_request("ann", "Passw0rd!x", "ann@example.com"))
        .await
        .map_err(status_err("SignUp ann"))?;
    let m = fx.outbox_message(2, "ann", "CONFIRM_SIGN_UP").await?;
    ensure!(m.subject == "Acme sign-up", "{m:?}");
    ensure!(m.body == format!("Welcome to Acme! Your code: {}", m.code), "{m:?}");
    let call = hook
        .calls_of("CustomMessage_SignUp")
        .pop()
        .context("no CustomMessage_SignUp call")?;
    ensure!(call.signature_ok, "the CustomMessage request does not verify");
    ensure!(call.body["request"]["codeParameter"] == "{####}", "{}", call.body);
    ensure!(
        call.body["request"]["userAttributes"]["email"] == "ann@example.com",
        "{}",
        call.body
    );
    ensure!(
        !call.body.to_string().contains(&m.code),
        "the trigger saw the code: {}",
        call.body
    );
    fx.confirm(3, "ann", &m.code)
        .await
        .map_err(status_err("ConfirmSignUp ann"))?;

    // The attack first: an answer without the code placeholder would send
    // a message without a code; the sign-up fails and creates nothing.
    let r = fx
        .sign_up(1, fx.sign_up_request("badmsg", "Passw0rd!x", "bad@example.com"))
        .await;
    let s = expect_exception(
        "a CustomMessage without {####}",
        r,
        Code::FailedPrecondition,
        "UserLambdaValidationException",
    )?;
    ensure!(s.message().contains("{####}"), "{}", s.message());
    ensure!(
        fx.admin_get_user(1, "badmsg").await.is_err(),
        "a failed CustomMessage created the user"
    );

    // AdminCreateUser: the username and the temporary password go in.
    let admin = fx.node(3);
    admin
        .admin()
        .admin_create_user(admin.req(AdminCreateUserRequest {
            user_pool_id: fx.pool_id.clone(),
            username: "bea".into(),
            temporary_password: "Temp-Passw0rd!".into(),
            user_attributes: common::directory::aattrs(&[("email", "bea@example.com")]),
            ..Default::default()
        }))
        .await
        .map_err(status_err("AdminCreateUser bea"))?;
    let m = fx.outbox_message(3, "bea", "TEMPORARY_PASSWORD").await?;
    ensure!(m.body == "Hi bea, your Acme password is Temp-Passw0rd!", "{m:?}");
    let call = hook
        .calls_of("CustomMessage_AdminCreateUser")
        .pop()
        .context("no CustomMessage_AdminCreateUser call")?;
    ensure!(
        call.body["request"]["usernameParameter"] == "{username}",
        "{}",
        call.body
    );
    ensure!(
        !call.body.to_string().contains("Temp-Passw0rd!"),
        "the trigger saw the password"
    );

    // ForgotPassword: no subject in the answer keeps the default one.
    fx.node(1)
        .auth()
        .forgot_password(ForgotPasswordRequest {
            client_id: fx.client_id.clone(),
            username: "ann".into(),
            ..Default::default()
        })
        .await
        .map_err(status_err("ForgotPassword ann"))?;
    let m = fx.outbox_message(1, "ann", "FORGOT_PASSWORD").await?;
    ensure!(m.body == format!("Reset code {}", m.code), "{m:?}");
    ensure!(m.subject.contains("password reset"), "{m:?}");
    Ok(())
}
