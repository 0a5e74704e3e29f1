//! SRP sign-in (`USER_SRP_AUTH` / `PASSWORD_VERIFIER`, issue 12) on a
//! real three-node cluster, proved by a client nobody here wrote:
//! pycognito's `AWSSRP` (PyPI, pinned in tests/python/requirements.txt),
//! run by `tests/python/srp_client.py`, which hands its two Cognito calls
//! to this file; this file sends them to the nodes over gRPC, the
//! `InitiateAuth` to one node and the answer to the next, so the
//! challenge is always answered on another node than the one that made
//! it. No SRP arithmetic lives in this file.
//!
//! `make test` sets `TESSERA_PYTHON` to the venv's interpreter; without
//! it the tests use `python3`, which must have pycognito installed.
//!
//! Run with: `cargo test --test srp -- --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;

use anyhow::{anyhow, bail, ensure, Context, Result};
use base64::Engine as _;
use common::auth::*;
use common::TestCluster;
use serde_json::{json, Value};
use tessera::auth::lockout::THRESHOLD;
use tessera::proto::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tonic::Code;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const FLOWS: &[&str] = &[
    "ALLOW_USER_SRP_AUTH",
    "ALLOW_USER_PASSWORD_AUTH",
    "ALLOW_REFRESH_TOKEN_AUTH",
];

fn python() -> String {
    std::env::var("TESSERA_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// How pycognito's run ended.
#[derive(Debug)]
enum Outcome {
    Tokens(Value),
    Error { code: String, message: String },
    Exception { kind: String },
    Confirmed { device_password: String },
}

/// Runs pycognito's `AWSSRP.authenticate_user()` for `username` and
/// `password`, bridging its calls to the cluster: call `i` goes to node
/// `first + i` (round robin). Returns how it ended and the challenge
/// parameters the server sent.
async fn pycognito(
    fx: &Fixture,
    first: u64,
    client_id: &str,
    client_secret: Option<&str>,
    username: &str,
    password: &str,
) -> Result<(Outcome, Vec<BTreeMap<String, String>>)> {
    let args = json!({
        "username": username,
        "password": password,
        "pool_id": fx.pool_id,
        "client_id": client_id,
        "client_secret": client_secret,
    });
    run_pycognito(fx, first, args).await
}

/// Runs `tests/python/srp_client.py` with `args` (see its docs) and
/// bridges its calls to the cluster. Like Amplify (and unlike pycognito),
/// the bridge passes the last session it received on when pycognito
/// answers a challenge without one.
async fn run_pycognito(fx: &Fixture, first: u64, args: Value) -> Result<(Outcome, Vec<BTreeMap<String, String>>)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/srp_client.py");
    let mut child = tokio::process::Command::new(python())
        .arg(script)
        .arg(args.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} (set TESSERA_PYTHON to a Python with pycognito)", python()))?;
    let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
    let mut lines = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?).lines();
    let nodes = fx.node_ids().len() as u64;
    let mut seen = Vec::new();
    let mut call = 0u64;
    let mut last_session = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .context("pycognito did not finish in 60 s")??
            .ok_or_else(|| {
                anyhow!(
                    "pycognito exited without an answer (is pycognito installed in {}?)",
                    python()
                )
            })?;
        let msg: Value = serde_json::from_str(&line).with_context(|| format!("pycognito said {line:?}"))?;
        if let Some(done) = msg.get("done") {
            let outcome = match done["outcome"].as_str() {
                Some("tokens") => Outcome::Tokens(done["tokens"].clone()),
                Some("confirmed") => Outcome::Confirmed {
                    device_password: done["device_password"].as_str().unwrap_or("").to_string(),
                },
                Some("error") => Outcome::Error {
                    code: done["code"].as_str().unwrap_or("").to_string(),
                    message: done["message"].as_str().unwrap_or("").to_string(),
                },
                _ => Outcome::Exception {
                    kind: done["type"].as_str().unwrap_or("").to_string(),
                },
            };
            let _ = child.wait().await;
            return Ok((outcome, seen));
        }
        let via = (first - 1 + call) % nodes + 1;
        call += 1;
        let a = &msg["args"];
        let text = |v: &Value| v.as_str().unwrap_or("").to_string();
        let map = |v: &Value| -> BTreeMap<String, String> {
            v.as_object()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                .unwrap_or_default()
        };
        let node = fx.node(via);
        let admin = args["via_admin"] == true;
        let reply = match msg["op"].as_str() {
            // The admin forms (AdminInitiateAuth, AdminRespondToAuthChallenge)
            // take the same flows and answer the same challenges.
            Some("initiate_auth") if admin => node
                .admin()
                .admin_initiate_auth(node.req(AdminInitiateAuthRequest {
                    user_pool_id: fx.pool_id.clone(),
                    client_id: text(&a["ClientId"]),
                    auth_flow: text(&a["AuthFlow"]),
                    auth_parameters: map(&a["AuthParameters"]).into_iter().collect(),
                    ..Default::default()
                }))
                .await
                .map(|r| {
                    let r = r.into_inner();
                    let result = r.authentication_result.map(admin_result);
                    answer_json(&mut seen, r.challenge_name, r.session, r.challenge_parameters, result)
                }),
            Some("respond_to_auth_challenge") if admin => node
                .admin()
                .admin_respond_to_auth_challenge(node.req(AdminRespondToAuthChallengeRequest {
                    user_pool_id: fx.pool_id.clone(),
                    client_id: text(&a["ClientId"]),
                    challenge_name: text(&a["ChallengeName"]),
                    challenge_responses: map(&a["ChallengeResponses"]).into_iter().collect(),
                    session: text(&a["Session"]),
                    ..Default::default()
                }))
                .await
                .map(|r| {
                    let r = r.into_inner();
                    let result = r.authentication_result.map(admin_result);
                    answer_json(&mut seen, r.challenge_name, r.session, r.challenge_parameters, result)
                }),
            Some("initiate_auth") => node
                .auth()
                .initiate_auth(InitiateAuthRequest {
                    auth_flow: text(&a["AuthFlow"]),
                    auth_parameters: map(&a["AuthParameters"]).into_iter().collect(),
                    client_id: text(&a["ClientId"]),
                    client_metadata: Default::default(),
                })
                .await
                .map(|r| {
                    let r = r.into_inner();
                    answer_json(
                        &mut seen,
                        r.challenge_name,
                        r.session,
                        r.challenge_parameters,
                        r.authentication_result,
                    )
                }),
            Some("respond_to_auth_challenge") => {
                let session = match text(&a["Session"]) {
                    s if s.is_empty() => last_session.clone(),
                    s => s,
                };
                node.auth()
                    .respond_to_auth_challenge(RespondToAuthChallengeRequest {
                        client_id: text(&a["ClientId"]),
                        challenge_name: text(&a["ChallengeName"]),
                        session,
                        challenge_responses: map(&a["ChallengeResponses"]).into_iter().collect(),
                    })
                    .await
                    .map(|r| {
                        let r = r.into_inner();
                        answer_json(
                            &mut seen,
                            r.challenge_name,
                            r.session,
                            r.challenge_parameters,
                            r.authentication_result,
                        )
                    })
            }
            Some("confirm_device") => {
                let config = &a["DeviceSecretVerifierConfig"];
                node.auth()
                    .confirm_device(ConfirmDeviceRequest {
                        access_token: text(&a["AccessToken"]),
                        device_key: text(&a["DeviceKey"]),
                        device_secret_verifier_config: Some(DeviceSecretVerifierConfigType {
                            password_verifier: text(&config["PasswordVerifier"]),
                            salt: text(&config["Salt"]),
                        }),
                        device_name: text(&a["DeviceName"]),
                    })
                    .await
                    .map(|r| json!({ "UserConfirmationNecessary": r.into_inner().user_confirmation_necessary }))
            }
            other => bail!("pycognito asked for {other:?}"),
        };
        let answer = match reply {
            Ok(result) => {
                if let Some(s) = result["Session"].as_str() {
                    last_session = s.to_string();
                }
                json!({ "result": result })
            }
            Err(s) => {
                // botocore's message is Cognito's, without our prefix.
                let code = exception_of(&s).unwrap_or_default();
                let message = s.message().strip_prefix(&format!("{code}: ")).unwrap_or(s.message());
                json!({ "error": { "code": code, "message": message } })
            }
        };
        stdin.write_all(format!("{answer}\n").as_bytes()).await?;
        stdin.flush().await?;
    }
}

/// The admin flows' result, under the user flows' message name.
fn admin_result(t: AdminAuthenticationResultType) -> AuthenticationResultType {
    AuthenticationResultType {
        access_token: t.access_token,
        expires_in: t.expires_in,
        token_type: t.token_type,
        refresh_token: t.refresh_token,
        id_token: t.id_token,
        new_device_metadata: t.new_device_metadata,
    }
}

/// A boto3-shaped answer to an auth call; records its parameters.
fn answer_json(
    seen: &mut Vec<BTreeMap<String, String>>,
    name: String,
    session: String,
    params: BTreeMap<String, String>,
    result: Option<AuthenticationResultType>,
) -> Value {
    seen.push(params.clone());
    let mut boto = json!({ "ChallengeParameters": params });
    if !name.is_empty() {
        boto["ChallengeName"] = json!(name);
    }
    if !session.is_empty() {
        boto["Session"] = json!(session);
    }
    if let Some(t) = result {
        let mut r = json!({
            "AccessToken": t.access_token,
            "IdToken": t.id_token,
            "RefreshToken": t.refresh_token,
            "ExpiresIn": t.expires_in,
            "TokenType": t.token_type,
        });
        if let Some(d) = t.new_device_metadata {
            r["NewDeviceMetadata"] = json!({ "DeviceKey": d.device_key, "DeviceGroupKey": d.device_group_key });
        }
        boto["AuthenticationResult"] = r;
    }
    boto
}

async fn pool_with_srp(c: &TestCluster, name: &str) -> Result<Fixture> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name,
            alias_attributes: &["email"],
            generate_secret: false,
        },
    )
    .await?;
    set_srp(&fx, Some(true)).await?;
    Ok(fx)
}

/// `UpdateUserPool(srp_enabled)`, then waits until every node has applied it.
async fn set_srp(fx: &Fixture, enabled: Option<bool>) -> Result<()> {
    let admin = fx.node(1);
    let p = admin
        .admin()
        .update_user_pool(admin.req(UpdateUserPoolRequest {
            user_pool_id: fx.pool_id.clone(),
            srp_enabled: enabled,
            ..Default::default()
        }))
        .await
        .map_err(status_err("UpdateUserPool srp_enabled"))?
        .into_inner()
        .user_pool
        .ok_or_else(|| anyhow!("no pool"))?;
    ensure!(Some(p.srp_enabled) == enabled, "srp_enabled reads {}", p.srp_enabled);
    for id in fx.node_ids() {
        let p = fx
            .node(id)
            .describe_user_pool(&fx.pool_id, true)
            .await
            .map_err(status_err("DescribeUserPool"))?;
        ensure!(
            Some(p.srp_enabled) == enabled,
            "node {id} reads srp_enabled {}",
            p.srp_enabled
        );
    }
    Ok(())
}

async fn srp_client(fx: &Fixture, secret: bool) -> Result<UserPoolClientType> {
    fx.create_app_client_with(2, if secret { "srp-secret" } else { "srp" }, FLOWS, secret)
        .await
}

fn tokens_of(what: &str, o: &Outcome) -> Result<String> {
    match o {
        Outcome::Tokens(t) => t["AuthenticationResult"]["AccessToken"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| anyhow!("{what}: no access token in {t}")),
        other => bail!("{what}: expected tokens, got {other:?}"),
    }
}

fn refused(what: &str, o: &Outcome) -> Result<()> {
    match o {
        Outcome::Error { code, message }
            if code == "NotAuthorizedException" && message == "Incorrect username or password." =>
        {
            Ok(())
        }
        other => bail!("{what}: expected NotAuthorizedException: Incorrect username or password., got {other:?}"),
    }
}

#[tokio::test]
async fn pycognito_signs_in_with_srp_and_a_wrong_password_fails() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await?;
    let fx = pool_with_srp(&c, "srp-basic").await?;
    let client = srp_client(&fx, false).await?;
    fx.confirmed_user(1, "ana", "Srp-Passw0rd!", "ana@example.com").await?;

    // Signs in: InitiateAuth on node 1, PASSWORD_VERIFIER answered on node 2.
    let (o, seen) = pycognito(&fx, 1, &client.client_id, None, "ana", "Srp-Passw0rd!").await?;
    let access = tokens_of("pycognito, right password", &o)?;
    let first = seen.first().ok_or_else(|| anyhow!("no challenge"))?;
    ensure!(
        first.get("USER_ID_FOR_SRP").map(String::as_str) == Some("ana"),
        "{first:?}"
    );
    let me = fx.get_user(3, &access).await.map_err(status_err("GetUser"))?;
    ensure!(me.username == "ana", "GetUser names {:?}", me.username);
    let (_, claims) = fx.verify_everywhere(&access, None).await?;
    ensure!(claims["username"] == "ana", "{claims}");

    // An alias works too: the challenge names the user's own username.
    let (o, seen) = pycognito(&fx, 2, &client.client_id, None, "ana@example.com", "Srp-Passw0rd!").await?;
    tokens_of("pycognito, email alias", &o)?;
    ensure!(seen[0]["USER_ID_FOR_SRP"] == "ana", "{:?}", seen[0]);

    // The attack first: a wrong password is refused, as a wrong password
    // is, and counted in the audit log.
    let (o, _) = pycognito(&fx, 3, &client.client_id, None, "ana", "Srp-Passw0rd?").await?;
    refused("pycognito, wrong password", &o)?;
    let admin = fx.node(1);
    let events = admin
        .admin()
        .admin_list_user_auth_events(admin.req(AdminListUserAuthEventsRequest {
            user_pool_id: fx.pool_id.clone(),
            username: "ana".into(),
            ..Default::default()
        }))
        .await
        .map_err(status_err("AdminListUserAuthEvents"))?
        .into_inner();
    ensure!(
        format!("{:?}", events.auth_events).contains("incorrect password (SRP)"),
        "the SRP failure is not in the audit log: {:?}",
        events.auth_events
    );

    // With a client secret, pycognito's SECRET_HASH is checked.
    let secret_client = srp_client(&fx, true).await?;
    let (o, _) = pycognito(
        &fx,
        1,
        &secret_client.client_id,
        Some(&secret_client.client_secret),
        "ana",
        "Srp-Passw0rd!",
    )
    .await?;
    tokens_of("pycognito with a client secret", &o)?;
    // AdminInitiateAuth takes USER_SRP_AUTH too (with the admin token).
    let args = json!({
        "username": "ana",
        "password": "Srp-Passw0rd!",
        "pool_id": fx.pool_id,
        "client_id": client.client_id,
        "via_admin": true,
    });
    let (o, _) = run_pycognito(&fx, 3, args).await?;
    tokens_of("pycognito through AdminInitiateAuth", &o)?;
    let (o, _) = pycognito(&fx, 1, &secret_client.client_id, None, "ana", "Srp-Passw0rd!").await?;
    ensure!(
        matches!(&o, Outcome::Error { code, .. } if code == "NotAuthorizedException"),
        "no SECRET_HASH for a client with a secret: {o:?}"
    );
    drop(c);
    Ok(())
}

#[tokio::test]
async fn unknown_users_get_a_stable_decoy_and_forged_claims_are_refused() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await?;
    let fx = pool_with_srp(&c, "srp-attacks").await?;
    let client = srp_client(&fx, false).await?;
    fx.confirmed_user(1, "ben", "Srp-Passw0rd!", "ben@example.com").await?;

    // An unknown user (PreventUserExistenceErrors is on by default) gets a
    // challenge like a real one, with the same salt on every node and try.
    let (o, seen_1) = pycognito(&fx, 1, &client.client_id, None, "nobody", "Srp-Passw0rd!").await?;
    refused("unknown user", &o)?;
    let (_, seen_2) = pycognito(&fx, 3, &client.client_id, None, "nobody", "x").await?;
    ensure!(
        seen_1[0]["SALT"] == seen_2[0]["SALT"],
        "the decoy salt changes between tries"
    );
    ensure!(seen_1[0]["SALT"].len() == 32, "decoy salt {:?}", seen_1[0]["SALT"]);
    ensure!(seen_1[0]["SRP_B"] != seen_2[0]["SRP_B"], "B must be fresh every time");

    // Forgeries, built on a real challenge.
    let a_hex = "2";
    let init = fx
        .initiate_as(
            1,
            &client.client_id,
            "USER_SRP_AUTH",
            params(&[("USERNAME", "ben"), ("SRP_A", a_hex)]),
        )
        .await
        .map_err(status_err("USER_SRP_AUTH"))?;
    ensure!(init.challenge_name == "PASSWORD_VERIFIER", "{init:?}");
    let block = init.challenge_parameters["SECRET_BLOCK"].clone();
    let respond = |via: u64, client_id: String, block: String, sig: String, ts: &str| {
        let responses: BTreeMap<String, String> = [
            ("USERNAME", "ben"),
            ("PASSWORD_CLAIM_SECRET_BLOCK", block.as_str()),
            ("PASSWORD_CLAIM_SIGNATURE", sig.as_str()),
            ("TIMESTAMP", ts),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let node = fx.node(via).clone();
        async move {
            node.auth()
                .respond_to_auth_challenge(RespondToAuthChallengeRequest {
                    client_id,
                    challenge_name: "PASSWORD_VERIFIER".into(),
                    session: String::new(),
                    challenge_responses: responses.into_iter().collect(),
                })
                .await
        }
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let ts = "Sun Dec 6 17:02:03 UTC 2026";
    // A signature made without the password.
    let r = respond(2, client.client_id.clone(), block.clone(), b64.encode([7u8; 32]), ts).await;
    expect_exception("a forged signature", r, Code::Unauthenticated, "NotAuthorizedException")?;
    // A secret block changed by one bit.
    let mut raw = b64.decode(&block)?;
    let last = raw.len() - 1;
    raw[last] ^= 1;
    let r = respond(2, client.client_id.clone(), b64.encode(&raw), b64.encode([7u8; 32]), ts).await;
    let s = expect_exception(
        "a tampered secret block",
        r,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    ensure!(s.message().contains("session"), "{}", s.message());
    // The block of one app client, answered as another.
    let other = fx.create_app_client(3, "srp-other", FLOWS).await?;
    let r = respond(3, other, block.clone(), b64.encode([7u8; 32]), ts).await;
    expect_exception(
        "another client's block",
        r,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    // A timestamp not in Cognito's format.
    let r = respond(
        2,
        client.client_id.clone(),
        block.clone(),
        b64.encode([7u8; 32]),
        "2026-12-06T17:02:03Z",
    )
    .await;
    expect_exception(
        "a malformed timestamp",
        r,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    // A degenerate A (0 mod N) would make the key predictable.
    for bad in ["0", "zz", &"f".repeat(800)] {
        let r = fx
            .initiate_as(
                1,
                &client.client_id,
                "USER_SRP_AUTH",
                params(&[("USERNAME", "ben"), ("SRP_A", bad)]),
            )
            .await;
        expect_exception(
            "a degenerate SRP_A",
            r,
            Code::InvalidArgument,
            "InvalidParameterException",
        )?;
    }
    // The real user still signs in, on every node.
    for first in 1..=3 {
        let (o, _) = pycognito(&fx, first, &client.client_id, None, "ben", "Srp-Passw0rd!").await?;
        tokens_of("ben after the forgeries", &o)?;
    }
    drop(c);
    Ok(())
}

#[tokio::test]
async fn verifiers_follow_the_password_and_the_pool_setting() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await?;
    let fx = Fixture::create(
        &c,
        PoolSpec {
            name: "srp-setting",
            alias_attributes: &["email"],
            generate_secret: false,
        },
    )
    .await?;
    let client = srp_client(&fx, false).await?;
    // Off by default: refused with a message that says how to turn it on.
    let r = fx
        .initiate_as(
            1,
            &client.client_id,
            "USER_SRP_AUTH",
            params(&[("USERNAME", "cy"), ("SRP_A", "2")]),
        )
        .await;
    let s = expect_exception(
        "SRP on a pool without it",
        r,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    ensure!(s.message().contains("srp_enabled"), "{}", s.message());

    // A user who signed up before SRP was on has no verifier: SRP fails
    // like a wrong password until one password sign-in makes it.
    fx.confirmed_user(1, "cy", "Srp-Passw0rd!", "cy@example.com").await?;
    set_srp(&fx, Some(true)).await?;
    let (o, _) = pycognito(&fx, 1, &client.client_id, None, "cy", "Srp-Passw0rd!").await?;
    refused("SRP before any verifier", &o)?;
    fx.sign_in(2, "cy", "Srp-Passw0rd!").await?;
    let (o, _) = pycognito(&fx, 3, &client.client_id, None, "cy", "Srp-Passw0rd!").await?;
    tokens_of("SRP after a password sign-in", &o)?;

    // A password change retires the old verifier at once and makes a new one.
    let access = fx.sign_in(1, "cy", "Srp-Passw0rd!").await?.access_token;
    fx.node(2)
        .auth()
        .change_password(ChangePasswordRequest {
            access_token: access,
            previous_password: "Srp-Passw0rd!".into(),
            proposed_password: "Srp-Changed-1!".into(),
        })
        .await
        .map_err(status_err("ChangePassword"))?;
    let (o, _) = pycognito(&fx, 1, &client.client_id, None, "cy", "Srp-Passw0rd!").await?;
    refused("SRP with the old password", &o)?;
    let (o, _) = pycognito(&fx, 2, &client.client_id, None, "cy", "Srp-Changed-1!").await?;
    tokens_of("SRP with the new password", &o)?;

    // Turning SRP off refuses it and deletes the verifiers: on again, the
    // user needs a password sign-in first.
    set_srp(&fx, Some(false)).await?;
    let r = fx
        .initiate_as(
            2,
            &client.client_id,
            "USER_SRP_AUTH",
            params(&[("USERNAME", "cy"), ("SRP_A", "2")]),
        )
        .await;
    expect_exception("SRP turned off", r, Code::InvalidArgument, "InvalidParameterException")?;
    set_srp(&fx, Some(true)).await?;
    let (o, _) = pycognito(&fx, 3, &client.client_id, None, "cy", "Srp-Changed-1!").await?;
    refused("SRP after off and on again", &o)?;

    // An imported user (a bcrypt hash from elsewhere) gets a verifier at
    // the first password sign-in, which also rehashes to argon2id; the
    // verifier goes with the new hash, so SRP works from then on.
    let admin = fx.node(1);
    let imported = admin
        .admin()
        .admin_import_users(admin.req(AdminImportUsersRequest {
            user_pool_id: fx.pool_id.clone(),
            users: vec![ImportUserType {
                username: "imp".into(),
                attributes: common::directory::aattrs(&[("email", "imp@example.com")]),
                // Python bcrypt 5.0.0: hashpw(b"Tessera-KAT-1", b"$2b$04$abcdefghijklmnopqrstuu").
                password_hash: "$2b$04$abcdefghijklmnopqrstuuZpfs7pMDs2BfSG3VHoWyUDzibcLelSO".into(),
                email_verified: Some(true),
                ..Default::default()
            }],
            ..Default::default()
        }))
        .await
        .map_err(status_err("AdminImportUsers"))?
        .into_inner();
    ensure!(imported.imported == 1, "{imported:?}");
    let (o, _) = pycognito(&fx, 2, &client.client_id, None, "imp", "Tessera-KAT-1").await?;
    refused("SRP for an imported user before a password sign-in", &o)?;
    fx.sign_in(3, "imp", "Tessera-KAT-1").await?;
    let (o, _) = pycognito(&fx, 1, &client.client_id, None, "imp", "Tessera-KAT-1").await?;
    tokens_of("SRP for an imported user after a password sign-in", &o)?;

    // An admin-created user answers NEW_PASSWORD_REQUIRED after SRP, as
    // Amplify expects (pycognito raises ForceChangePasswordException).
    let admin = fx.node(1);
    admin
        .admin()
        .admin_create_user(admin.req(AdminCreateUserRequest {
            user_pool_id: fx.pool_id.clone(),
            username: "dee".into(),
            temporary_password: "Temp-Passw0rd!".into(),
            user_attributes: common::directory::aattrs(&[("email", "dee@example.com")]),
            message_action: "SUPPRESS".into(),
            ..Default::default()
        }))
        .await
        .map_err(status_err("AdminCreateUser"))?;
    let (o, _) = pycognito(&fx, 2, &client.client_id, None, "dee", "Temp-Passw0rd!").await?;
    ensure!(
        matches!(&o, Outcome::Exception { kind } if kind == "ForceChangePasswordException"),
        "a temporary password through SRP: {o:?}"
    );
    drop(c);
    Ok(())
}

/// Requires the sign-in to have stopped at MFA (the pool requires it and
/// the user has no factor yet, so `MFA_SETUP`; pycognito hands that back).
fn asks_mfa(what: &str, o: &Outcome) -> Result<()> {
    ensure!(
        matches!(o, Outcome::Tokens(t) if t["ChallengeName"] == "MFA_SETUP"),
        "{what}: MFA was skipped: {o:?}"
    );
    Ok(())
}

/// The device pycognito confirmed: its key, group key and random password.
struct RememberedDevice {
    key: String,
    group_key: String,
    password: String,
}

/// pycognito with a remembered device: `AWSSRP` proves the device with
/// `DEVICE_SRP_AUTH` and `DEVICE_PASSWORD_VERIFIER` when asked.
async fn pycognito_with_device(
    fx: &Fixture,
    first: u64,
    client_id: &str,
    username: &str,
    password: &str,
    device: &RememberedDevice,
    device_password: &str,
) -> Result<(Outcome, Vec<BTreeMap<String, String>>)> {
    let args = json!({
        "username": username,
        "password": password,
        "pool_id": fx.pool_id,
        "client_id": client_id,
        "device_key": device.key,
        "device_group_key": device.group_key,
        "device_password": device_password,
    });
    run_pycognito(fx, first, args).await
}

#[tokio::test]
async fn remembered_devices_skip_mfa_forgotten_ones_do_not_and_forged_proofs_fail() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await?;
    let fx = pool_with_srp(&c, "srp-devices").await?;
    let admin = fx.node(1);
    admin
        .admin()
        .update_user_pool(admin.req(UpdateUserPoolRequest {
            user_pool_id: fx.pool_id.clone(),
            device_configuration: Some(DeviceConfigurationType {
                challenge_required_on_new_device: true,
                device_only_remembered_on_user_prompt: false,
            }),
            ..Default::default()
        }))
        .await
        .map_err(status_err("UpdateUserPool device_configuration"))?;
    for id in fx.node_ids() {
        let p = fx
            .node(id)
            .describe_user_pool(&fx.pool_id, true)
            .await
            .map_err(status_err("DescribeUserPool"))?;
        ensure!(p.device_configuration.is_some(), "node {id} does not track devices yet");
    }
    let client = srp_client(&fx, false).await?;
    fx.confirmed_user(1, "eve", "Srp-Passw0rd!", "eve@example.com").await?;

    // A first sign-in on a new device gets NewDeviceMetadata, and its access
    // token names the device.
    let (o, _) = pycognito(&fx, 1, &client.client_id, None, "eve", "Srp-Passw0rd!").await?;
    let Outcome::Tokens(t) = &o else {
        bail!("first sign-in: {o:?}")
    };
    let meta = &t["AuthenticationResult"]["NewDeviceMetadata"];
    let key = meta["DeviceKey"].as_str().unwrap_or("").to_string();
    let group_key = meta["DeviceGroupKey"].as_str().unwrap_or("").to_string();
    ensure!(!key.is_empty() && !group_key.is_empty(), "no NewDeviceMetadata: {t}");
    let access = t["AuthenticationResult"]["AccessToken"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let (_, claims) = fx.verify_everywhere(&access, None).await?;
    ensure!(
        claims["device_key"] == key.as_str(),
        "access token device_key: {claims}"
    );

    // The attack first: a device key the token was not issued for cannot be
    // confirmed with it.
    let forged = fx
        .node(2)
        .auth()
        .confirm_device(ConfirmDeviceRequest {
            access_token: access.clone(),
            device_key: format!("{}x", key),
            device_secret_verifier_config: Some(DeviceSecretVerifierConfigType {
                password_verifier: "AAEC".into(),
                salt: "AAEC".into(),
            }),
            device_name: "intruder".into(),
        })
        .await;
    // A malformed verifier is refused with the field named, and stores nothing.
    let malformed = fx
        .node(2)
        .auth()
        .confirm_device(ConfirmDeviceRequest {
            access_token: access.clone(),
            device_key: key.clone(),
            device_secret_verifier_config: Some(DeviceSecretVerifierConfigType {
                password_verifier: "not base64!".into(),
                salt: "AAEC".into(),
            }),
            device_name: "phone".into(),
        })
        .await;
    let s = expect_exception(
        "a malformed verifier",
        malformed,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    ensure!(s.message().contains("password_verifier"), "{}", s.message());
    expect_exception(
        "ConfirmDevice with another key",
        forged,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;

    // pycognito makes the verifier (generate_hash_device) and confirms it.
    let args = json!({
        "mode": "confirm_device",
        "access_token": access,
        "device_key": key,
        "device_group_key": group_key,
    });
    let (o, _) = run_pycognito(&fx, 2, args).await?;
    let Outcome::Confirmed { device_password } = o else {
        bail!("ConfirmDevice: {o:?}")
    };
    let device = RememberedDevice {
        key: key.clone(),
        group_key,
        password: device_password,
    };
    // eve's sign-in with her password and the device's, starting on a node.
    let eve_on_device = |first: u64| {
        pycognito_with_device(
            &fx,
            first,
            &client.client_id,
            "eve",
            "Srp-Passw0rd!",
            &device,
            &device.password,
        )
    };

    // MFA becomes required for everyone.
    admin
        .admin()
        .set_user_pool_mfa_config(admin.req(SetUserPoolMfaConfigRequest {
            user_pool_id: fx.pool_id.clone(),
            software_token_mfa_configuration: Some(SoftwareTokenMfaConfigType { enabled: true }),
            mfa_configuration: "ON".into(),
            ..Default::default()
        }))
        .await
        .map_err(status_err("SetUserPoolMfaConfig"))?;
    for id in fx.node_ids() {
        fx.node(id)
            .admin()
            .get_user_pool_mfa_config(fx.node(id).req(GetUserPoolMfaConfigRequest {
                user_pool_id: fx.pool_id.clone(),
                consistent_read: true,
            }))
            .await
            .map_err(status_err("GetUserPoolMfaConfig"))?;
    }
    // Without the device, MFA is asked.
    let (o, _) = pycognito(&fx, 3, &client.client_id, None, "eve", "Srp-Passw0rd!").await?;
    asks_mfa("without the device", &o)?;

    // The remembered device proves itself and skips MFA, on any node.
    for first in 1..=3 {
        let (o, seen) = pycognito_with_device(
            &fx,
            first,
            &client.client_id,
            "eve",
            "Srp-Passw0rd!",
            &device,
            &device.password,
        )
        .await?;
        let access = tokens_of("remembered device", &o)?;
        ensure!(
            seen.iter()
                .any(|p| p.contains_key("DEVICE_KEY") && p.contains_key("SRP_B")),
            "no DEVICE_PASSWORD_VERIFIER challenge: {seen:?}"
        );
        let Outcome::Tokens(t) = &o else { unreachable!() };
        ensure!(
            t["AuthenticationResult"]["NewDeviceMetadata"].is_null(),
            "a known device got new metadata: {t}"
        );
        let (_, claims) = fx.verify_everywhere(&access, None).await?;
        ensure!(claims["device_key"] == key.as_str(), "{claims}");
    }

    // A forged device proof (the right device key, a wrong device
    // password) is refused as a wrong password is.
    let (o, _) = pycognito_with_device(
        &fx,
        2,
        &client.client_id,
        "eve",
        "Srp-Passw0rd!",
        &device,
        "bm90IHRoZSBwYXNzd29yZA==",
    )
    .await?;
    refused("a forged device proof", &o)?;
    // The device does not replace the password.
    let (o, _) = pycognito_with_device(
        &fx,
        1,
        &client.client_id,
        "eve",
        "wrong-Passw0rd!",
        &device,
        &device.password,
    )
    .await?;
    refused("a remembered device with a wrong password", &o)?;

    // Listing, and GlobalSignOut keeps the device remembered.
    let (o, _) = eve_on_device(1).await?;
    let Outcome::Tokens(t) = &o else { bail!("{o:?}") };
    let access = t["AuthenticationResult"]["AccessToken"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let refresh = t["AuthenticationResult"]["RefreshToken"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let listed = fx
        .node(3)
        .auth()
        .list_devices(ListDevicesRequest {
            access_token: access.clone(),
            ..Default::default()
        })
        .await
        .map_err(status_err("ListDevices"))?
        .into_inner();
    ensure!(
        listed.devices.len() == 1 && listed.devices[0].device_key == key,
        "{listed:?}"
    );
    ensure!(
        listed.devices[0]
            .device_attributes
            .iter()
            .any(|a| a.name == "dev:device_remembered_status" && a.value == "remembered"),
        "{listed:?}"
    );
    let admin_list = admin
        .admin()
        .admin_list_devices(admin.req(AdminListDevicesRequest {
            user_pool_id: fx.pool_id.clone(),
            username: "eve".into(),
            ..Default::default()
        }))
        .await
        .map_err(status_err("AdminListDevices"))?
        .into_inner();
    ensure!(admin_list.devices.len() == 1, "{admin_list:?}");
    // The CLI lists it too (AdminListDevices with the admin token).
    let out = common::run_cli(
        &c.bin,
        [
            "user",
            "devices",
            "list",
            "--pool-id",
            &fx.pool_id,
            "--username",
            "eve",
            "--output",
            "json",
            "--endpoint",
            &c.node(2).url(),
            "--token",
            &c.token,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && stdout.contains(&key),
        "tessera user devices list: {} {stdout} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    fx.node(2)
        .auth()
        .global_sign_out(GlobalSignOutRequest { access_token: access })
        .await
        .map_err(status_err("GlobalSignOut"))?;
    let (o, _) = eve_on_device(3).await?;
    let Outcome::Tokens(t) = &o else { bail!("{o:?}") };
    let access = tokens_of("the device after GlobalSignOut", &o)?;
    let refresh_after = t["AuthenticationResult"]["RefreshToken"]
        .as_str()
        .unwrap_or("")
        .to_string();
    ensure!(!refresh.is_empty() && !refresh_after.is_empty(), "no refresh tokens");
    fx.initiate_as(
        1,
        &client.client_id,
        "REFRESH_TOKEN_AUTH",
        params(&[("REFRESH_TOKEN", &refresh_after)]),
    )
    .await
    .map_err(status_err("refresh after GlobalSignOut"))?;

    // Not remembered: the device still proves itself, but MFA is asked.
    fx.node(1)
        .auth()
        .update_device_status(UpdateDeviceStatusRequest {
            access_token: access.clone(),
            device_key: key.clone(),
            device_remembered_status: "not_remembered".into(),
        })
        .await
        .map_err(status_err("UpdateDeviceStatus"))?;
    let (o, _) = eve_on_device(2).await?;
    asks_mfa("a device that is not remembered", &o)?;

    // Forgotten: no device challenge, MFA is asked, and the refresh
    // token issued to the device is refused on every node.
    fx.node(3)
        .auth()
        .forget_device(ForgetDeviceRequest {
            access_token: access,
            device_key: key.clone(),
        })
        .await
        .map_err(status_err("ForgetDevice"))?;
    let (o, seen) = eve_on_device(1).await?;
    asks_mfa("a forgotten device", &o)?;
    ensure!(
        !seen
            .iter()
            .any(|p| p.contains_key("SRP_B") && p.contains_key("DEVICE_KEY")),
        "a forgotten device was asked to prove itself: {seen:?}"
    );
    for via in fx.node_ids() {
        let r = fx
            .initiate_as(
                via,
                &client.client_id,
                "REFRESH_TOKEN_AUTH",
                params(&[("REFRESH_TOKEN", &refresh_after)]),
            )
            .await;
        let s = expect_exception(
            "a forgotten device's refresh token",
            r,
            Code::Unauthenticated,
            "NotAuthorizedException",
        )?;
        ensure!(s.message().contains("revoked"), "{}", s.message());
    }
    let r = admin
        .admin()
        .admin_get_device(admin.req(AdminGetDeviceRequest {
            user_pool_id: fx.pool_id.clone(),
            username: "eve".into(),
            device_key: key.clone(),
        }))
        .await;
    expect_exception("a forgotten device", r, Code::NotFound, "ResourceNotFoundException")?;
    drop(c);
    Ok(())
}

#[tokio::test]
async fn parallel_forged_claims_cannot_outrun_the_lockout() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await?;
    let fx = pool_with_srp(&c, "srp-parallel").await?;
    let client = srp_client(&fx, false).await?;
    fx.confirmed_user(1, "gus", "Srp-Passw0rd!", "gus@example.com").await?;
    // One real challenge per guess, then every forged claim at once, spread
    // over the three nodes: each is a password guess, and the lockout must
    // bound how many are evaluated however many race.
    const GUESSES: usize = 24;
    let mut blocks = Vec::new();
    for i in 0..GUESSES {
        let r = fx
            .initiate_as(
                (i % 3) as u64 + 1,
                &client.client_id,
                "USER_SRP_AUTH",
                params(&[("USERNAME", "gus"), ("SRP_A", "2")]),
            )
            .await
            .map_err(status_err("USER_SRP_AUTH"))?;
        blocks.push(r.challenge_parameters["SECRET_BLOCK"].clone());
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let guesses = blocks.into_iter().enumerate().map(|(i, block)| {
        let node = fx.node((i % 3) as u64 + 1).clone();
        let client_id = client.client_id.clone();
        let responses: BTreeMap<String, String> = [
            ("USERNAME", "gus".to_string()),
            ("PASSWORD_CLAIM_SECRET_BLOCK", block),
            ("PASSWORD_CLAIM_SIGNATURE", b64.encode([i as u8; 32])),
            ("TIMESTAMP", "Sun Dec 6 17:02:03 UTC 2026".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        async move {
            node.auth()
                .respond_to_auth_challenge(RespondToAuthChallengeRequest {
                    client_id,
                    challenge_name: "PASSWORD_VERIFIER".into(),
                    session: String::new(),
                    challenge_responses: responses.into_iter().collect(),
                })
                .await
        }
    });
    let results = futures::future::join_all(guesses).await;
    let mut evaluated = 0;
    for r in results {
        match r {
            Ok(_) => bail!("a forged claim signed in"),
            Err(s) if s.message().contains("Incorrect username or password") => evaluated += 1,
            Err(s) if s.message().contains("Password attempts exceeded") || s.code() == Code::ResourceExhausted => {}
            Err(s) => bail!("unexpected answer to a forged claim: {:?} {}", s.code(), s.message()),
        }
    }
    println!("{evaluated} of {GUESSES} forged claims were evaluated");
    ensure!(evaluated >= 1, "no forged claim was evaluated at all");
    ensure!(
        evaluated <= THRESHOLD as usize * 3,
        "{evaluated} forged claims were evaluated; the lockout allows {} over three nodes",
        THRESHOLD * 3
    );
    // gus is locked now: even the right password (through pycognito) is refused.
    let (o, _) = pycognito(&fx, 2, &client.client_id, None, "gus", "Srp-Passw0rd!").await?;
    ensure!(
        matches!(&o, Outcome::Error { message, .. } if message.contains("Password attempts exceeded")),
        "the right password after the burst: {o:?}"
    );
    drop(c);
    Ok(())
}
