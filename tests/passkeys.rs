//! Passkeys (WebAuthn, issue 18) on real three-node clusters, proved by
//! an authenticator nobody here wrote: soft-webauthn's
//! `SoftWebauthnDevice` (PyPI, pinned in
//! tests/python/requirements-webauthn.txt), run by
//! `tests/python/webauthn_authenticator.py`, which only converts WebAuthn's
//! JSON to and from the bytes soft-webauthn takes. The key pairs,
//! authenticator data, CBOR attestation objects and signatures are all
//! soft-webauthn's; no WebAuthn code lives in this file.
//!
//! What is proved, over real gRPC (and the Cognito JSON front):
//! registration on one node and sign-in across the others, with and
//! without a username; and the attacks a relying party must refuse: a
//! replayed assertion (same session, another session, two nodes at once),
//! a foreign origin, a foreign relying party, a signature counter that
//! goes backwards (a cloned authenticator, in the audit log), a deleted
//! credential on every node, an authenticator that does not verify the
//! user when the pool requires it, an unattested authenticator when
//! the pool requires attestation, and a 21st passkey (two completions
//! racing for the 20th place: one wins). The CLI sets and shows the
//! pool's passkey setting and passes the server's refusals on.
//!
//! `make test` sets `TESSERA_WEBAUTHN_PYTHON` to the interpreter of its
//! soft-webauthn venv; without it the tests use `python3`, which must have
//! soft-webauthn installed. Test bodies run one at a time (`SERIAL`): most
//! start three nodes.
//!
//! Run with: `cargo test --features failpoints --test passkeys -- --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use base64::Engine as _;
use common::auth::*;
use common::{http, poll_until, TestCluster};
use serde_json::{json, Value};
use tessera::proto::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tonic::Code;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const FLOWS: &[&str] = &[
    "ALLOW_USER_AUTH",
    "ALLOW_USER_PASSWORD_AUTH",
    "ALLOW_REFRESH_TOKEN_AUTH",
];

/// The pool's relying party; the pages are served from `ORIGIN`.
const RP_ID: &str = "localhost";
const ORIGIN: &str = "https://localhost";
/// A page of another site.
const EVIL_ORIGIN: &str = "https://evil.example";
/// What the refusal of an answer given twice says: the session was spent,
/// or (when the node had already applied the first use) the counter it
/// carries is no longer above the stored one.
const REPLAYED: &[&str] = &["already answered", "counter did not rise"];
/// What a refusal of a deleted credential says: "not registered" when the
/// node had applied the deletion, "deleted" when `apply` refused the use.
const DELETED: &[&str] = &["not registered", "deleted"];
/// soft-webauthn's model: it names none.
const ZERO_AAGUID: &str = "00000000-0000-0000-0000-000000000000";

fn python() -> String {
    std::env::var("TESSERA_WEBAUTHN_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn b64url(text: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .with_context(|| format!("{text:?} is not base64url"))
}

// ---------------------------------------------------------------------------
// The authenticator
// ---------------------------------------------------------------------------

/// `tests/python/webauthn_authenticator.py`: soft-webauthn devices, by
/// name, one credential each.
struct Authenticator {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Authenticator {
    async fn start() -> Result<Self> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/webauthn_authenticator.py");
        let mut child = tokio::process::Command::new(python())
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (set TESSERA_WEBAUTHN_PYTHON to a Python with soft-webauthn)",
                    python()
                )
            })?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let lines = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?).lines();
        Ok(Authenticator { child, stdin, lines })
    }

    /// One request, its answer; the bridge's `{"error"}` is an error here.
    async fn call(&mut self, msg: Value) -> Result<Value> {
        self.stdin.write_all(format!("{msg}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .context("the authenticator did not answer in 30 s")??;
        let Some(line) = line else {
            let status = self.child.try_wait()?;
            bail!(
                "the authenticator exited ({status:?}); is soft-webauthn installed in {}?",
                python()
            );
        };
        let answer: Value = serde_json::from_str(&line).with_context(|| format!("the authenticator said {line:?}"))?;
        if let Some(e) = answer.get("error") {
            bail!("the authenticator refused {}: {e}", msg["op"]);
        }
        Ok(answer)
    }

    /// `navigator.credentials.create()` on `device` with the server's
    /// options, from a page of `origin`: the RegistrationResponseJSON, and
    /// the attestation the options asked for.
    async fn create(&mut self, device: &str, options: &Value, origin: &str) -> Result<(Value, Value)> {
        let a = self
            .call(json!({"op": "create", "device": device, "options": options, "origin": origin}))
            .await?;
        Ok((a["result"].clone(), a["attestation_requested"].clone()))
    }

    /// `navigator.credentials.get()`: the AuthenticationResponseJSON.
    async fn get(&mut self, device: &str, options: &Value, origin: &str) -> Result<Value> {
        let a = self
            .call(json!({"op": "get", "device": device, "options": options, "origin": origin}))
            .await?;
        Ok(a["result"].clone())
    }

    /// The next assertion of `device` carries `n + 1`.
    async fn set_sign_count(&mut self, device: &str, n: u32) -> Result<()> {
        self.call(json!({"op": "set_sign_count", "device": device, "value": n}))
            .await?;
        Ok(())
    }

    /// `device`'s next assertions hash `rp_id` into their authenticator data.
    async fn set_rp_id(&mut self, device: &str, rp_id: &str) -> Result<()> {
        self.call(json!({"op": "set_rp_id", "device": device, "value": rp_id}))
            .await?;
        Ok(())
    }

    /// `sign_count`, `rp_id`, `credential_id`, `user_handle` of `device`.
    async fn state(&mut self, device: &str) -> Result<Value> {
        Ok(self.call(json!({"op": "state", "device": device})).await?["result"].clone())
    }
}

// ---------------------------------------------------------------------------
// Pools, registration, sign-in
// ---------------------------------------------------------------------------

fn web_authn(user_verification: &str) -> WebAuthnConfigurationType {
    WebAuthnConfigurationType {
        relying_party_id: RP_ID.into(),
        user_verification: user_verification.into(),
        ..Default::default()
    }
}

/// `SetUserPoolMfaConfig` with `cfg` through node `via`, raw.
async fn set_web_authn(
    fx: &Fixture,
    via: u64,
    cfg: WebAuthnConfigurationType,
) -> Result<SetUserPoolMfaConfigResponse, tonic::Status> {
    let n = fx.node(via);
    Ok(n.admin()
        .set_user_pool_mfa_config(n.req(SetUserPoolMfaConfigRequest {
            user_pool_id: fx.pool_id.clone(),
            mfa_configuration: "OFF".into(),
            web_authn_configuration: Some(cfg),
            ..Default::default()
        }))
        .await?
        .into_inner())
}

/// A pool with passkeys set to `cfg` and `PASSWORD` and `WEB_AUTHN` as
/// first factors; the fixture's client is one with `USER_AUTH`.
async fn passkey_pool(c: &TestCluster, name: &str, cfg: WebAuthnConfigurationType) -> Result<Fixture> {
    let mut fx = Fixture::create(
        c,
        PoolSpec {
            name,
            alias_attributes: &[],
            generate_secret: false,
        },
    )
    .await?;
    let set = set_web_authn(&fx, 1, cfg.clone())
        .await
        .map_err(status_err("SetUserPoolMfaConfig web_authn_configuration"))?;
    let echoed = set
        .web_authn_configuration
        .ok_or_else(|| anyhow!("SetUserPoolMfaConfig echoes no web_authn_configuration"))?;
    ensure!(
        echoed.relying_party_id == cfg.relying_party_id && echoed.user_verification == cfg.user_verification,
        "SetUserPoolMfaConfig echoes {echoed:?} for {cfg:?}"
    );
    let pool = fx.set_sign_in_policy(1, &["PASSWORD", "WEB_AUTHN"], 0).await?;
    let factors = pool
        .policies
        .and_then(|p| p.sign_in_policy)
        .map(|p| p.allowed_first_auth_factors)
        .unwrap_or_default();
    ensure!(
        factors.iter().any(|f| f == "WEB_AUTHN"),
        "the sign-in policy reads {factors:?}"
    );
    fx.client_id = fx.create_app_client(2, &format!("{name}-passkeys"), FLOWS).await?;
    Ok(fx)
}

/// A confirmed user with a password, signed in on node `via`: its sub and
/// access token.
async fn user(fx: &Fixture, via: u64, username: &str) -> Result<(String, String)> {
    let sub = fx
        .confirmed_user(via, username, GOOD_PASSWORD, &format!("{username}@example.com"))
        .await?;
    let t = fx.sign_in(via, username, GOOD_PASSWORD).await?;
    Ok((sub, t.access_token))
}

/// `StartWebAuthnRegistration` on `via`: the creation options, checked to
/// be WebAuthn's JSON form for this pool's relying party (bare, as
/// Cognito returns them and Amplify reads them).
async fn start_registration(fx: &Fixture, via: u64, access: &str) -> Result<Value> {
    let doc = fx
        .node(via)
        .auth()
        .start_web_authn_registration(StartWebAuthnRegistrationRequest {
            access_token: access.into(),
        })
        .await
        .map_err(status_err(&format!("StartWebAuthnRegistration on node {via}")))?
        .into_inner()
        .credential_creation_options_document;
    let options: Value =
        serde_json::from_str(&doc).with_context(|| format!("the creation options are not JSON: {doc}"))?;
    check_creation_options(&options)?;
    Ok(options)
}

fn check_creation_options(o: &Value) -> Result<()> {
    let challenge = o["challenge"]
        .as_str()
        .ok_or_else(|| anyhow!("no challenge string at the top of the creation options: {o}"))?;
    ensure!(b64url(challenge)?.len() >= 16, "a short challenge: {o}");
    ensure!(o["rp"]["id"] == RP_ID, "rp.id is not {RP_ID}: {o}");
    let user_id = o["user"]["id"].as_str().ok_or_else(|| anyhow!("no user.id: {o}"))?;
    ensure!(!b64url(user_id)?.is_empty(), "an empty user.id: {o}");
    ensure!(
        o["pubKeyCredParams"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["alg"] == -7 && p["type"] == "public-key")),
        "ES256 is not offered: {o}"
    );
    Ok(())
}

/// `CompleteWebAuthnRegistration` on `via`, raw.
async fn complete_registration(
    fx: &Fixture,
    via: u64,
    access: &str,
    credential: &Value,
    name: &str,
) -> Result<CompleteWebAuthnRegistrationResponse, tonic::Status> {
    Ok(fx
        .node(via)
        .auth()
        .complete_web_authn_registration(CompleteWebAuthnRegistrationRequest {
            access_token: access.into(),
            credential_document: credential.to_string(),
            friendly_credential_name: name.into(),
        })
        .await?
        .into_inner())
}

/// Registers a passkey of `device` on node `via`; returns its
/// RegistrationResponseJSON.
async fn register(
    fx: &Fixture,
    via: u64,
    auth: &mut Authenticator,
    device: &str,
    access: &str,
    name: &str,
) -> Result<Value> {
    let options = start_registration(fx, via, access).await?;
    let (credential, _) = auth.create(device, &options, ORIGIN).await?;
    complete_registration(fx, via, access, &credential, name)
        .await
        .map_err(status_err(&format!(
            "CompleteWebAuthnRegistration of {name} on node {via}"
        )))?;
    Ok(credential)
}

/// `ListWebAuthnCredentials` on `via` (every page).
async fn list(fx: &Fixture, via: u64, access: &str) -> Result<Vec<WebAuthnCredentialDescription>> {
    let mut all = Vec::new();
    let mut next_token = String::new();
    for _ in 0..10 {
        let page = fx
            .node(via)
            .auth()
            .list_web_authn_credentials(ListWebAuthnCredentialsRequest {
                access_token: access.into(),
                next_token: next_token.clone(),
                max_results: 0,
            })
            .await
            .map_err(status_err(&format!("ListWebAuthnCredentials on node {via}")))?
            .into_inner();
        all.extend(page.credentials);
        if page.next_token.is_empty() {
            return Ok(all);
        }
        next_token = page.next_token;
    }
    bail!("ListWebAuthnCredentials did not end after 10 pages")
}

/// Waits until every node lists credential `id` and `pred` holds for it
/// (registrations and sign-ins reach a node when it applies them); returns
/// each node's description.
async fn wait_listed<F>(
    fx: &Fixture,
    access: &str,
    id: &str,
    what: &str,
    pred: F,
) -> Result<Vec<WebAuthnCredentialDescription>>
where
    F: Fn(&WebAuthnCredentialDescription) -> bool + Copy,
{
    let mut found = Vec::new();
    for via in fx.node_ids() {
        let d = poll_until(
            &format!("credential {id} {what} on node {via}"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async move {
                let all = list(fx, via, access).await?;
                Ok(all.into_iter().find(|c| c.credential_id == id && pred(c)))
            },
        )
        .await?;
        found.push(d);
    }
    Ok(found)
}

/// `InitiateAuth(USER_AUTH, PREFERRED_CHALLENGE=WEB_AUTHN)` on `via`, with
/// `USERNAME` unless username-less, raw.
async fn initiate(fx: &Fixture, via: u64, username: Option<&str>) -> Result<InitiateAuthResponse, tonic::Status> {
    let mut p: Vec<(String, String)> = params(&[("PREFERRED_CHALLENGE", "WEB_AUTHN")]);
    if let Some(u) = username {
        p.push(("USERNAME".into(), u.into()));
    }
    fx.initiate(via, "USER_AUTH", p).await
}

/// [`initiate`], which must give a `WEB_AUTHN` challenge for this pool's
/// relying party: its session and request options.
async fn start_sign_in(fx: &Fixture, via: u64, username: Option<&str>) -> Result<(String, Value)> {
    let what = format!("USER_AUTH WEB_AUTHN for {username:?} on node {via}");
    let r = initiate(fx, via, username).await.map_err(status_err(&what))?;
    ensure!(
        r.challenge_name == "WEB_AUTHN",
        "{what}: challenge {:?} ({:?})",
        r.challenge_name,
        r.challenge_parameters
    );
    ensure!(!r.session.is_empty(), "{what}: no session");
    ensure!(r.authentication_result.is_none(), "{what}: tokens before any proof");
    let doc = r
        .challenge_parameters
        .get("CREDENTIAL_REQUEST_OPTIONS")
        .ok_or_else(|| anyhow!("{what}: no CREDENTIAL_REQUEST_OPTIONS in {:?}", r.challenge_parameters))?;
    let options: Value = serde_json::from_str(doc).with_context(|| format!("{what}: options {doc:?}"))?;
    let challenge = options["challenge"]
        .as_str()
        .ok_or_else(|| anyhow!("{what}: no challenge string at the top of the request options: {options}"))?;
    ensure!(b64url(challenge)?.len() >= 16, "{what}: a short challenge: {options}");
    ensure!(options["rpId"] == RP_ID, "{what}: rpId is not {RP_ID}: {options}");
    Ok((r.session, options))
}

/// The credential ids an options document allows.
fn allowed_ids(options: &Value) -> Vec<String> {
    options["allowCredentials"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["id"].as_str().map(|s| s.trim_end_matches('=').to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// `RespondToAuthChallenge(WEB_AUTHN)` on `via` with `assertion`, raw.
async fn answer(
    fx: &Fixture,
    via: u64,
    session: &str,
    username: Option<&str>,
    assertion: &Value,
) -> Result<RespondToAuthChallengeResponse, tonic::Status> {
    let credential = assertion.to_string();
    let mut responses = vec![("CREDENTIAL", credential.as_str())];
    if let Some(u) = username {
        responses.push(("USERNAME", u));
    }
    fx.respond_as(via, &fx.client_id, "WEB_AUTHN", session, &responses)
        .await
}

/// A whole passkey sign-in of `device`: challenge on `init`, answered on
/// `via`, which must give tokens.
async fn sign_in_with_passkey(
    fx: &Fixture,
    auth: &mut Authenticator,
    device: &str,
    init: u64,
    via: u64,
    username: Option<&str>,
) -> Result<Tokens> {
    let (session, options) = start_sign_in(fx, init, username).await?;
    let assertion = auth.get(device, &options, ORIGIN).await?;
    let what = format!("WEB_AUTHN answered on node {via} (challenge from node {init})");
    let r = answer(fx, via, &session, username, &assertion)
        .await
        .map_err(status_err(&what))?;
    ensure!(
        r.challenge_name.is_empty(),
        "{what}: another challenge {:?}",
        r.challenge_name
    );
    Tokens::from_result(&what, r.authentication_result)
}

/// A passkey sign-in of `device` that must be refused, at the challenge
/// or at the answer: the refusal.
async fn sign_in_refused(
    fx: &Fixture,
    auth: &mut Authenticator,
    device: &str,
    init: u64,
    via: u64,
    username: Option<&str>,
    origin: &str,
) -> Result<Result<RespondToAuthChallengeResponse, tonic::Status>> {
    let (session, options) = start_sign_in(fx, init, username).await?;
    let assertion = auth.get(device, &options, origin).await?;
    Ok(answer(fx, via, &session, username, &assertion).await)
}

/// A refusal the server owes: its gRPC code and Cognito exception.
type Expected = (Code, &'static str);
/// A sign-in refused as a wrong password is.
const NOT_AUTHORIZED: Expected = (Code::Unauthenticated, "NotAuthorizedException");
/// Cognito's exceptions for a page of another site, at registration and
/// at sign-in.
const ORIGIN_AT_REGISTRATION: Expected = (Code::InvalidArgument, "WebAuthnOriginNotAllowedException");
const ORIGIN_AT_SIGN_IN: Expected = (Code::Unauthenticated, "WebAuthnOriginNotAllowedException");
/// ... and for an authenticator that answered for another relying party.
const RP_AT_REGISTRATION: Expected = (Code::InvalidArgument, "WebAuthnRelyingPartyMismatchException");
const RP_AT_SIGN_IN: Expected = (Code::Unauthenticated, "WebAuthnRelyingPartyMismatchException");
/// ... and for an authenticator the pool's policy does not take.
const NOT_SUPPORTED: Expected = (Code::InvalidArgument, "WebAuthnCredentialNotSupportedException");
/// A credential id the caller has none of (another user's, or deleted).
const NO_SUCH_CREDENTIAL: Expected = (Code::NotFound, "ResourceNotFoundException");

/// Requires `r` to be the Tessera refusal `expected` (see
/// `check_exception`) whose message, after the exception's name, names
/// the reason with one of `keywords`.
fn refused<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, tonic::Status>,
    expected: Expected,
    keywords: &[&str],
) -> Result<tonic::Status> {
    let s = match r {
        Ok(v) => bail!("{what}: expected {}, got success: {v:?}", expected.1),
        Err(s) => s,
    };
    check_exception(what, &s, expected.0, expected.1)?;
    let reason = s.message()[expected.1.len()..].to_lowercase();
    ensure!(
        keywords.iter().any(|k| reason.contains(k)),
        "{what}: the message names none of {keywords:?}: {}",
        s.message()
    );
    println!("  ok: {what} -> {:?} {}", s.code(), s.message());
    Ok(s)
}

/// Requires `claims` (a verified id token's) to be `username`'s.
fn check_user(what: &str, claims: &Value, sub: &str, username: &str) -> Result<()> {
    ensure!(claims["sub"] == sub, "{what}: sub {} is not {sub}", claims["sub"]);
    ensure!(
        claims["cognito:username"] == username,
        "{what}: cognito:username {} is not {username}",
        claims["cognito:username"]
    );
    Ok(())
}

/// An unsigned call of the Cognito JSON front on `addr`: status and body.
async fn cognito(addr: &str, action: &str, body: &Value) -> Result<(u16, Value)> {
    let target = format!("AWSCognitoIdentityProviderService.{action}");
    let a = http::post(
        addr,
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", &target),
        ],
        &body.to_string(),
    )
    .await?;
    let v = if a.body.trim().is_empty() {
        Value::Null
    } else {
        a.json().with_context(|| action.to_string())?
    };
    Ok((a.status, v))
}

async fn cognito_ok(addr: &str, action: &str, body: &Value) -> Result<Value> {
    let (status, v) = cognito(addr, action, body).await?;
    ensure!(status == 200, "{action} on {addr}: {status} {v}");
    Ok(v)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_passkey_registered_on_one_node_signs_in_across_the_others() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await?;
    let fx = passkey_pool(&c, "pk-basic", web_authn("preferred")).await?;
    let (sub, access) = user(&fx, 1, "ana").await?;
    let mut auth = Authenticator::start().await?;

    let before = now_secs() * 1000;
    let credential = register(&fx, 1, &mut auth, "laptop", &access, "Laptop").await?;
    let id = credential["id"].as_str().ok_or_else(|| anyhow!("no id"))?.to_string();
    let listed = list(&fx, 1, &access).await?;
    ensure!(listed.len() == 1, "node 1 lists {listed:?}");
    let d = &listed[0];
    ensure!(d.credential_id == id, "listed id {} is not {id}", d.credential_id);
    ensure!(d.friendly_credential_name == "Laptop", "{d:?}");
    ensure!(d.relying_party_id == RP_ID, "{d:?}");
    ensure!(d.attestation_format == "none", "{d:?}");
    ensure!(d.aaguid == ZERO_AAGUID, "soft-webauthn names no model: {d:?}");
    ensure!(d.sign_count == 0 && d.last_used_at == 0, "never used yet: {d:?}");
    ensure!(
        d.created_at >= before - 5_000 && d.created_at <= now_secs() * 1000 + 5_000,
        "created_at {} is not about now",
        d.created_at
    );
    // What the browser reported, whatever the attestation.
    ensure!(
        d.authenticator_transports == vec!["internal".to_string()],
        "transports {:?}, the browser said [\"internal\"]",
        d.authenticator_transports
    );
    wait_listed(&fx, &access, &id, "registered", |_| true).await?;

    // The challenge from node 2 names the credential; answered on node 3.
    let (session, options) = start_sign_in(&fx, 2, Some("ana")).await?;
    ensure!(
        allowed_ids(&options).contains(&id),
        "allowCredentials does not name {id}: {options}"
    );
    let assertion = auth.get("laptop", &options, ORIGIN).await?;
    let r = answer(&fx, 3, &session, Some("ana"), &assertion)
        .await
        .map_err(status_err("WEB_AUTHN on node 3"))?;
    ensure!(r.challenge_name.is_empty(), "another challenge: {r:?}");
    let t = Tokens::from_result("passkey sign-in", r.authentication_result)?;
    ensure!(!t.refresh_token.is_empty(), "a passkey sign-in gives a refresh token");
    let (_, claims) = fx.verify_id_token_everywhere(&t.id_token).await?;
    check_user("passkey id token", &claims, &sub, "ana")?;
    let me = fx.get_user(1, &t.access_token).await.map_err(status_err("GetUser"))?;
    ensure!(me.username == "ana", "GetUser names {:?}", me.username);

    // Every node counts the use.
    let count = auth.state("laptop").await?["sign_count"].as_u64().unwrap_or(0);
    ensure!(count == 1, "soft-webauthn signed with counter {count}");
    for d in wait_listed(&fx, &access, &id, "used once", |d| d.sign_count >= 1).await? {
        ensure!(d.sign_count == 1, "{d:?}");
        ensure!(d.last_used_at >= d.created_at, "last_used_at is not set: {d:?}");
    }

    // And again, the other way round, with the new access token.
    let t = sign_in_with_passkey(&fx, &mut auth, "laptop", 3, 1, Some("ana")).await?;
    let (_, claims) = fx.verify_id_token_everywhere(&t.id_token).await?;
    check_user("second passkey id token", &claims, &sub, "ana")?;
    wait_listed(&fx, &t.access_token, &id, "used twice", |d| d.sign_count == 2).await?;
    drop(c);
    Ok(())
}

#[tokio::test]
async fn the_json_front_registers_and_a_discoverable_passkey_signs_in_without_a_username() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await?;
    let fx = passkey_pool(&c, "pk-json", web_authn("preferred")).await?;
    let (sub, access) = user(&fx, 2, "bo").await?;
    let mut auth = Authenticator::start().await?;
    let addr = fx.api_addrs[0].clone();

    // Cognito's shapes: the options are an object, not a string of JSON,
    // and the credential goes back as one.
    let started = cognito_ok(&addr, "StartWebAuthnRegistration", &json!({"AccessToken": access})).await?;
    let options = &started["CredentialCreationOptions"];
    ensure!(
        options.is_object(),
        "CredentialCreationOptions is not a JSON object: {started}"
    );
    check_creation_options(options)?;
    let (credential, _) = auth.create("phone", options, ORIGIN).await?;
    let id = credential["id"].as_str().ok_or_else(|| anyhow!("no id"))?.to_string();
    let done = cognito_ok(
        &addr,
        "CompleteWebAuthnRegistration",
        &json!({"AccessToken": access, "Credential": credential}),
    )
    .await?;
    ensure!(done.as_object().is_some_and(|o| o.is_empty()), "{done}");
    // The challenge is spent: the same completion again is refused, as an
    // error of the protocol.
    let (status, err) = cognito(
        &addr,
        "CompleteWebAuthnRegistration",
        &json!({"AccessToken": access, "Credential": credential}),
    )
    .await?;
    ensure!(
        status == 400 && err["__type"] == "WebAuthnChallengeNotFoundException",
        "a second completion with a spent challenge: {status} {err}"
    );
    println!("  ok: a second completion -> {status} {err}");
    let listed = cognito_ok(&addr, "ListWebAuthnCredentials", &json!({"AccessToken": access})).await?;
    let creds = listed["Credentials"]
        .as_array()
        .ok_or_else(|| anyhow!("no Credentials: {listed}"))?;
    ensure!(creds.len() == 1, "{listed}");
    ensure!(creds[0]["CredentialId"] == id.as_str(), "{listed}");
    ensure!(creds[0]["RelyingPartyId"] == RP_ID, "{listed}");
    wait_listed(&fx, &access, &id, "registered", |_| true).await?;

    // Username-less: the challenge (node 2) names no credential and no
    // user; the answer (node 3) carries only the credential, whose user
    // handle says who it is.
    let (session, options) = start_sign_in(&fx, 2, None).await?;
    ensure!(
        allowed_ids(&options).is_empty(),
        "a username-less challenge names credentials: {options}"
    );
    let assertion = auth.get("phone", &options, ORIGIN).await?;
    ensure!(
        assertion["response"]["userHandle"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "soft-webauthn gave no user handle: {assertion}"
    );
    let r = answer(&fx, 3, &session, None, &assertion)
        .await
        .map_err(status_err("username-less WEB_AUTHN on node 3"))?;
    let t = Tokens::from_result("username-less passkey sign-in", r.authentication_result)?;
    let (_, claims) = fx.verify_id_token_everywhere(&t.id_token).await?;
    check_user("username-less id token", &claims, &sub, "bo")?;

    // The whole sign-in through the JSON front too, on nodes 3 and 1.
    let init = cognito_ok(
        &fx.api_addrs[2],
        "InitiateAuth",
        &json!({
            "AuthFlow": "USER_AUTH",
            "ClientId": fx.client_id,
            "AuthParameters": {"USERNAME": "bo", "PREFERRED_CHALLENGE": "WEB_AUTHN"},
        }),
    )
    .await?;
    ensure!(init["ChallengeName"] == "WEB_AUTHN", "{init}");
    let doc = init["ChallengeParameters"]["CREDENTIAL_REQUEST_OPTIONS"]
        .as_str()
        .ok_or_else(|| anyhow!("CREDENTIAL_REQUEST_OPTIONS is not a string, as Cognito sends it: {init}"))?;
    let options: Value = serde_json::from_str(doc)?;
    let assertion = auth.get("phone", &options, ORIGIN).await?;
    let r = cognito_ok(
        &fx.api_addrs[0],
        "RespondToAuthChallenge",
        &json!({
            "ClientId": fx.client_id,
            "ChallengeName": "WEB_AUTHN",
            "Session": init["Session"],
            "ChallengeResponses": {"USERNAME": "bo", "CREDENTIAL": assertion.to_string()},
        }),
    )
    .await?;
    let id_token = r["AuthenticationResult"]["IdToken"]
        .as_str()
        .ok_or_else(|| anyhow!("no IdToken: {r}"))?;
    let (_, claims) = fx.verify_id_token_everywhere(id_token).await?;
    check_user("JSON-front id token", &claims, &sub, "bo")?;
    drop(c);
    Ok(())
}

#[tokio::test]
async fn an_assertion_signs_in_once() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await?;
    let fx = passkey_pool(&c, "pk-replay", web_authn("preferred")).await?;
    let (_, access) = user(&fx, 1, "cy").await?;
    let mut auth = Authenticator::start().await?;
    let credential = register(&fx, 1, &mut auth, "key", &access, "Key").await?;
    let id = credential["id"].as_str().unwrap_or_default().to_string();
    wait_listed(&fx, &access, &id, "registered", |_| true).await?;

    // The same session and assertion twice, on two nodes.
    let (s1, o1) = start_sign_in(&fx, 1, Some("cy")).await?;
    let a1 = auth.get("key", &o1, ORIGIN).await?;
    let r = answer(&fx, 2, &s1, Some("cy"), &a1)
        .await
        .map_err(status_err("the first answer"))?;
    Tokens::from_result("the first answer", r.authentication_result)?;
    let r = answer(&fx, 3, &s1, Some("cy"), &a1).await;
    refused("the same answer again", r, NOT_AUTHORIZED, REPLAYED)?;

    // The old assertion against a new challenge: it signed another one.
    let (s2, _) = start_sign_in(&fx, 2, Some("cy")).await?;
    let r = answer(&fx, 3, &s2, Some("cy"), &a1).await;
    refused(
        "an old assertion for a new challenge",
        r,
        NOT_AUTHORIZED,
        &["another challenge"],
    )?;
    // Username-less, the same.
    let (s3, _) = start_sign_in(&fx, 3, None).await?;
    let r = answer(&fx, 1, &s3, None, &a1).await;
    refused(
        "an old assertion for a new username-less challenge",
        r,
        NOT_AUTHORIZED,
        &["another challenge"],
    )?;

    // A credential id longer than any WebAuthn id is refused as malformed,
    // before it is looked up or counted as a failed sign-in.
    let (s5, _) = start_sign_in(&fx, 2, Some("cy")).await?;
    let mut long = a1.clone();
    let long_id = "A".repeat(1400);
    long["id"] = json!(long_id);
    long["rawId"] = json!(long_id);
    let r = answer(&fx, 2, &s5, Some("cy"), &long).await;
    refused(
        "an assertion with a 1,050-byte credential id",
        r,
        (Code::InvalidArgument, "InvalidParameterException"),
        &["at most 1023 bytes"],
    )?;

    // One answer sent to two nodes at once: one sign-in, at most.
    let (s4, o4) = start_sign_in(&fx, 1, Some("cy")).await?;
    let a4 = auth.get("key", &o4, ORIGIN).await?;
    let (r2, r3) = tokio::join!(
        answer(&fx, 2, &s4, Some("cy"), &a4),
        answer(&fx, 3, &s4, Some("cy"), &a4)
    );
    let wins = [&r2, &r3].iter().filter(|r| r.is_ok()).count();
    ensure!(
        wins == 1,
        "one answer sent to two nodes at once signed in {wins} times: {r2:?} / {r3:?}"
    );
    let loser = if r2.is_ok() { r3 } else { r2 };
    refused(
        "the same answer, racing on another node",
        loser,
        NOT_AUTHORIZED,
        REPLAYED,
    )?;

    // The credential itself still works.
    sign_in_with_passkey(&fx, &mut auth, "key", 2, 1, Some("cy")).await?;
    drop(c);
    Ok(())
}

#[tokio::test]
async fn foreign_origins_and_relying_parties_are_refused() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await?;
    let fx = passkey_pool(&c, "pk-origin", web_authn("preferred")).await?;
    let (_, access) = user(&fx, 1, "di").await?;
    let mut auth = Authenticator::start().await?;

    // Registration from another site's page.
    let options = start_registration(&fx, 1, &access).await?;
    let (credential, _) = auth.create("key", &options, EVIL_ORIGIN).await?;
    let r = complete_registration(&fx, 2, &access, &credential, "Evil").await;
    refused(
        "registration from a foreign origin",
        r,
        ORIGIN_AT_REGISTRATION,
        &["origin"],
    )?;
    // A credential made for another relying party.
    let mut options = start_registration(&fx, 1, &access).await?;
    options["rp"]["id"] = json!("evil.example");
    let (credential, _) = auth.create("key", &options, ORIGIN).await?;
    let r = complete_registration(&fx, 1, &access, &credential, "Evil RP").await;
    refused(
        "registration for another relying party",
        r,
        RP_AT_REGISTRATION,
        &["relying party"],
    )?;
    ensure!(
        list(&fx, 1, &access).await?.is_empty(),
        "a refused registration is listed"
    );

    let credential = register(&fx, 3, &mut auth, "key", &access, "Key").await?;
    let id = credential["id"].as_str().unwrap_or_default().to_string();
    wait_listed(&fx, &access, &id, "registered", |_| true).await?;

    // Sign-in from foreign pages.
    for origin in [EVIL_ORIGIN, "https://localhost.evil.example", "http://evil.example"] {
        let r = sign_in_refused(&fx, &mut auth, "key", 1, 2, Some("di"), origin).await?;
        refused(&format!("a sign-in from {origin}"), r, ORIGIN_AT_SIGN_IN, &["origin"])?;
    }
    // The pages the relying party covers.
    for origin in [
        "http://localhost:3000",
        "https://localhost:8443",
        "https://app.localhost",
    ] {
        let (session, options) = start_sign_in(&fx, 2, Some("di")).await?;
        let assertion = auth.get("key", &options, origin).await?;
        answer(&fx, 3, &session, Some("di"), &assertion)
            .await
            .map_err(status_err(&format!("a sign-in from {origin}")))?;
    }

    // An assertion whose authenticator data hashes another RP id.
    auth.set_rp_id("key", "evil.example").await?;
    let r = sign_in_refused(&fx, &mut auth, "key", 3, 1, Some("di"), ORIGIN).await?;
    refused(
        "an assertion for another relying party",
        r,
        RP_AT_SIGN_IN,
        &["relying party"],
    )?;
    let r = sign_in_refused(&fx, &mut auth, "key", 3, 1, None, ORIGIN).await?;
    refused(
        "a username-less assertion for another relying party",
        r,
        RP_AT_SIGN_IN,
        &["relying party"],
    )?;
    // Back to the right one, it works again: the refusals were for the RP.
    auth.set_rp_id("key", RP_ID).await?;
    sign_in_with_passkey(&fx, &mut auth, "key", 1, 2, Some("di")).await?;
    drop(c);
    Ok(())
}

#[tokio::test]
async fn a_counter_that_goes_backwards_is_refused_and_audited() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await?;
    let fx = passkey_pool(&c, "pk-counter", web_authn("preferred")).await?;
    let (_, access) = user(&fx, 1, "ed").await?;
    let mut auth = Authenticator::start().await?;
    let credential = register(&fx, 1, &mut auth, "key", &access, "Key").await?;
    let id = credential["id"].as_str().unwrap_or_default().to_string();
    wait_listed(&fx, &access, &id, "registered", |_| true).await?;

    sign_in_with_passkey(&fx, &mut auth, "key", 1, 2, Some("ed")).await?;
    sign_in_with_passkey(&fx, &mut auth, "key", 2, 3, Some("ed")).await?;
    wait_listed(&fx, &access, &id, "at counter 2", |d| d.sign_count == 2).await?;

    // A copy of the key that signed once since registration: counter 1 < 2.
    auth.set_sign_count("key", 0).await?;
    let r = sign_in_refused(&fx, &mut auth, "key", 3, 1, Some("ed"), ORIGIN).await?;
    refused(
        "an assertion whose counter went backwards",
        r,
        NOT_AUTHORIZED,
        &["counter did not rise"],
    )?;
    // The counter did not move back anywhere.
    for d in wait_listed(&fx, &access, &id, "still at counter 2", |_| true).await? {
        ensure!(d.sign_count == 2, "after a regression: {d:?}");
    }

    // The regression is in the audit log, as a failed sign-in of ed's.
    let admin = fx.node(2);
    let events = admin
        .admin()
        .admin_list_user_auth_events(admin.req(AdminListUserAuthEventsRequest {
            user_pool_id: fx.pool_id.clone(),
            username: "ed".into(),
            consistent_read: true,
            ..Default::default()
        }))
        .await
        .map_err(status_err("AdminListUserAuthEvents"))?
        .into_inner()
        .auth_events;
    for e in &events {
        println!("  audit: {} {} {:?}", e.event_type, e.event_response, e.detail);
    }
    ensure!(
        events.iter().any(|e| e.event_response == "Fail"
            && (e.detail.to_lowercase().contains("counter") || e.detail.to_lowercase().contains("clone"))),
        "the counter regression is not in the audit log: {events:?}"
    );

    // What a higher counter gets afterwards (not asserted: a server may
    // keep a credential that was once cloned, or disable it).
    auth.set_sign_count("key", 10).await?;
    let (session, options) = start_sign_in(&fx, 1, Some("ed")).await?;
    let assertion = auth.get("key", &options, ORIGIN).await?;
    match answer(&fx, 2, &session, Some("ed"), &assertion).await {
        Ok(_) => println!("  note: after the regression, counter 11 signs in"),
        Err(s) => println!("  note: after the regression, counter 11 is refused: {}", s.message()),
    }
    drop(c);
    Ok(())
}

#[tokio::test]
async fn a_deleted_passkey_is_refused_on_every_node() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await?;
    let fx = passkey_pool(&c, "pk-delete", web_authn("preferred")).await?;
    let (_, access) = user(&fx, 1, "flo").await?;
    let (_, eve) = user(&fx, 2, "eve").await?;
    let mut auth = Authenticator::start().await?;
    let lost = register(&fx, 1, &mut auth, "lost", &access, "Lost").await?;
    let kept = register(&fx, 2, &mut auth, "kept", &access, "Kept").await?;
    let lost_id = lost["id"].as_str().unwrap_or_default().to_string();
    let kept_id = kept["id"].as_str().unwrap_or_default().to_string();
    wait_listed(&fx, &access, &lost_id, "registered", |_| true).await?;
    wait_listed(&fx, &access, &kept_id, "registered", |_| true).await?;
    sign_in_with_passkey(&fx, &mut auth, "lost", 1, 2, Some("flo")).await?;

    // Another user cannot delete it.
    let r = fx
        .node(3)
        .auth()
        .delete_web_authn_credential(DeleteWebAuthnCredentialRequest {
            access_token: eve.clone(),
            credential_id: lost_id.clone(),
        })
        .await;
    refused("another user deleting it", r, NO_SUCH_CREDENTIAL, &["does not exist"])?;
    ensure!(
        list(&fx, 1, &access).await?.iter().any(|d| d.credential_id == lost_id),
        "another user's DeleteWebAuthnCredential removed it"
    );

    fx.node(1)
        .auth()
        .delete_web_authn_credential(DeleteWebAuthnCredentialRequest {
            access_token: access.clone(),
            credential_id: lost_id.clone(),
        })
        .await
        .map_err(status_err("DeleteWebAuthnCredential on node 1"))?;

    // Refused on every node at once: the call promises it once it returns.
    // One try per node (each counts toward flo's lockout): username-less
    // on nodes 1 and 3, with flo's name on node 2.
    for via in fx.node_ids() {
        let username = (via == 2).then_some("flo");
        let r = sign_in_refused(&fx, &mut auth, "lost", via, via, username, ORIGIN).await?;
        refused(
            &format!("the deleted passkey on node {via} (username {username:?})"),
            r,
            NOT_AUTHORIZED,
            DELETED,
        )?;
    }
    // Once a node has applied the deletion, it lists and offers only the
    // other passkey.
    for via in fx.node_ids() {
        poll_until(
            &format!("node {via} to list only {kept_id}"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async {
                let ids: Vec<String> = list(&fx, via, &access)
                    .await?
                    .into_iter()
                    .map(|d| d.credential_id)
                    .collect();
                Ok((ids == vec![kept_id.clone()]).then_some(()))
            },
        )
        .await?;
        let (_, options) = start_sign_in(&fx, via, Some("flo")).await?;
        ensure!(
            allowed_ids(&options) == vec![kept_id.clone()],
            "node {via} offers {:?}, not only {kept_id}",
            allowed_ids(&options)
        );
    }
    // The other passkey still signs in, and deleting twice is an error.
    sign_in_with_passkey(&fx, &mut auth, "kept", 3, 1, Some("flo")).await?;
    let r = fx
        .node(2)
        .auth()
        .delete_web_authn_credential(DeleteWebAuthnCredentialRequest {
            access_token: access.clone(),
            credential_id: lost_id.clone(),
        })
        .await;
    refused("deleting it again", r, NO_SUCH_CREDENTIAL, &["does not exist"])?;
    drop(c);
    Ok(())
}

#[tokio::test]
async fn required_user_verification_refuses_an_authenticator_that_does_not_verify() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await?;
    let fx = passkey_pool(&c, "pk-uv", web_authn("required")).await?;
    let (_, access) = user(&fx, 1, "gus").await?;
    let mut auth = Authenticator::start().await?;

    let options = start_registration(&fx, 2, &access).await?;
    ensure!(
        options["authenticatorSelection"]["userVerification"] == "required",
        "the options do not ask for user verification: {options}"
    );
    // soft-webauthn sets user presence, never user verification.
    let (credential, _) = auth.create("key", &options, ORIGIN).await?;
    let r = complete_registration(&fx, 2, &access, &credential, "No UV").await;
    refused(
        "a registration without user verification",
        r,
        NOT_SUPPORTED,
        &["did not verify the user"],
    )?;
    ensure!(
        list(&fx, 2, &access).await?.is_empty(),
        "a refused registration is listed"
    );
    drop(c);
    Ok(())
}

#[tokio::test]
async fn required_attestation_refuses_an_unattested_authenticator() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await?;
    // An allow-list needs require_attestation, which the edge says.
    let fx = passkey_pool(&c, "pk-attest", web_authn("preferred")).await?;
    let yubikey_5 = "cb69481e-8ff7-4039-93ec-0a2729a154a8";
    let r = set_web_authn(
        &fx,
        1,
        WebAuthnConfigurationType {
            allowed_aaguids: vec![yubikey_5.into()],
            ..web_authn("preferred")
        },
    )
    .await;
    refused(
        "allowed_aaguids without require_attestation",
        r,
        (Code::InvalidArgument, "InvalidParameterException"),
        &["require_attestation"],
    )?;
    set_web_authn(
        &fx,
        1,
        WebAuthnConfigurationType {
            require_attestation: true,
            allowed_aaguids: vec![yubikey_5.into()],
            ..web_authn("preferred")
        },
    )
    .await
    .map_err(status_err("SetUserPoolMfaConfig require_attestation"))?;
    let (_, access) = user(&fx, 1, "hal").await?;
    let mut auth = Authenticator::start().await?;

    let options = start_registration(&fx, 1, &access).await?;
    let (credential, asked) = auth.create("key", &options, ORIGIN).await?;
    ensure!(
        asked.as_str().is_some_and(|a| a != "none"),
        "a pool that requires attestation asks for {asked} (a browser then sends none)"
    );
    let r = complete_registration(&fx, 3, &access, &credential, "Unattested").await;
    refused(
        "a \"none\" attestation where one is required",
        r,
        NOT_SUPPORTED,
        &["requires an attested authenticator"],
    )?;
    ensure!(
        list(&fx, 1, &access).await?.is_empty(),
        "a refused registration is listed"
    );
    drop(c);
    Ok(())
}

#[tokio::test]
async fn a_passkey_answers_the_mfa_step_after_a_password() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await?;
    let cfg = WebAuthnConfigurationType {
        passkey_mfa: true,
        ..web_authn("preferred")
    };
    let fx = passkey_pool(&c, "pk-mfa", cfg.clone()).await?;
    // MFA OPTIONAL: a user is asked for a second factor once it has one.
    let n = fx.node(1);
    n.admin()
        .set_user_pool_mfa_config(n.req(SetUserPoolMfaConfigRequest {
            user_pool_id: fx.pool_id.clone(),
            mfa_configuration: "OPTIONAL".into(),
            software_token_mfa_configuration: Some(SoftwareTokenMfaConfigType { enabled: true }),
            web_authn_configuration: Some(cfg),
            ..Default::default()
        }))
        .await
        .map_err(status_err("SetUserPoolMfaConfig OPTIONAL with passkey_mfa"))?;
    // No factor yet: the password alone signs in (user() requires tokens).
    let (sub, access) = user(&fx, 1, "mia").await?;
    let mut auth = Authenticator::start().await?;
    let credential = register(&fx, 1, &mut auth, "key", &access, "Key").await?;
    let id = credential["id"]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches('=')
        .to_string();
    wait_listed(&fx, &access, &id, "registered", |_| true).await?;

    // Now the password is followed by the passkey, on any node.
    let password: Vec<(String, String)> = params(&[("USERNAME", "mia"), ("PASSWORD", GOOD_PASSWORD)]);
    let r = fx
        .initiate(2, "USER_PASSWORD_AUTH", password.clone())
        .await
        .map_err(status_err("USER_PASSWORD_AUTH on node 2"))?;
    ensure!(
        r.challenge_name == "WEB_AUTHN" && r.authentication_result.is_none(),
        "the password was not followed by WEB_AUTHN: {:?} {:?}",
        r.challenge_name,
        r.challenge_parameters
    );
    let options: Value = serde_json::from_str(
        r.challenge_parameters
            .get("CREDENTIAL_REQUEST_OPTIONS")
            .ok_or_else(|| anyhow!("no CREDENTIAL_REQUEST_OPTIONS: {:?}", r.challenge_parameters))?,
    )?;
    ensure!(
        allowed_ids(&options).contains(&id),
        "the MFA options do not name {id}: {options}"
    );

    // An assertion for a foreign origin does not pass the step.
    let forged = auth.get("key", &options, "https://evil.example").await?;
    refused(
        "an MFA assertion made for another origin",
        answer(&fx, 3, &r.session, Some("mia"), &forged).await,
        ORIGIN_AT_SIGN_IN,
        &["origin"],
    )?;

    let assertion = auth.get("key", &options, ORIGIN).await?;
    let done = answer(&fx, 3, &r.session, Some("mia"), &assertion)
        .await
        .map_err(status_err("WEB_AUTHN (MFA) on node 3"))?;
    let t = Tokens::from_result("password then passkey", done.authentication_result)?;
    let (_, claims) = fx.verify_id_token_everywhere(&t.id_token).await?;
    check_user("password then passkey", &claims, &sub, "mia")?;

    // The step is answered once.
    refused(
        "the MFA step answered a second time",
        answer(&fx, 1, &r.session, Some("mia"), &assertion).await,
        NOT_AUTHORIZED,
        &["already answered", "counter"],
    )?;
    Ok(())
}

#[tokio::test]
async fn a_user_holds_at_most_twenty_passkeys() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(1).await?;
    let fx = passkey_pool(&c, "pk-limit", web_authn("preferred")).await?;
    let (_, access) = user(&fx, 1, "gus").await?;
    let mut auth = Authenticator::start().await?;
    for i in 0..19 {
        register(&fx, 1, &mut auth, &format!("key{i}"), &access, &format!("Key {i}")).await?;
    }
    // The race for the last place: two registrations started at once and
    // completed at once. A user has one pending registration, so exactly
    // one completes, and the user holds 20, not 21.
    let (a, b) = tokio::join!(start_registration(&fx, 1, &access), start_registration(&fx, 1, &access));
    let (cred_a, _) = auth.create("key19a", &a?, ORIGIN).await?;
    let (cred_b, _) = auth.create("key19b", &b?, ORIGIN).await?;
    let (ra, rb) = tokio::join!(
        complete_registration(&fx, 1, &access, &cred_a, "Key 19a"),
        complete_registration(&fx, 1, &access, &cred_b, "Key 19b")
    );
    let done = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
    ensure!(done == 1, "two parallel completions for the last place: {ra:?} {rb:?}");
    for r in [ra, rb].into_iter().filter(Result::is_err) {
        refused(
            "the losing completion",
            r,
            (Code::FailedPrecondition, "WebAuthnChallengeNotFoundException"),
            &["registration"],
        )?;
    }
    ensure!(
        list(&fx, 1, &access).await?.len() == 20,
        "not 20 passkeys after the race"
    );
    // The twenty-first is refused at its start, before any authenticator
    // makes a key (the same check in `apply` backs it: a user has one
    // pending registration at a time, so completions cannot race past it).
    let r = fx
        .node(1)
        .auth()
        .start_web_authn_registration(StartWebAuthnRegistrationRequest {
            access_token: access.clone(),
        })
        .await;
    refused(
        "a twenty-first passkey",
        r,
        (Code::ResourceExhausted, "LimitExceededException"),
        &["at most 20 passkeys"],
    )?;
    let all = list(&fx, 1, &access).await?;
    ensure!(all.len() == 20, "{} passkeys listed after the refusal", all.len());
    // After a deletion there is room for it again.
    fx.node(1)
        .auth()
        .delete_web_authn_credential(DeleteWebAuthnCredentialRequest {
            access_token: access.clone(),
            credential_id: all[0].credential_id.clone(),
        })
        .await
        .map_err(status_err("DeleteWebAuthnCredential"))?;
    register(&fx, 1, &mut auth, "key21", &access, "Key 21").await?;
    ensure!(
        list(&fx, 1, &access).await?.len() == 20,
        "not 20 passkeys after the swap"
    );
    drop(c);
    Ok(())
}

#[tokio::test]
async fn the_cli_sets_and_shows_the_passkey_setting() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(1).await?;
    let fx = passkey_pool(&c, "pk-cli", web_authn("preferred")).await?;
    let pool = fx.pool_id.as_str();
    let set = c
        .cli_admin_json(
            1,
            &[
                "pool",
                "mfa-config",
                "set",
                "--pool-id",
                pool,
                "--mfa-configuration",
                "OFF",
                "--passkey-rp-id",
                "app.example.com",
                "--passkey-user-verification",
                "required",
                "--passkey-challenge-validity-seconds",
                "120",
                "--passkey-mfa",
            ],
        )
        .await?;
    let w = &set["web_authn_configuration"];
    ensure!(
        w["relying_party_id"] == "app.example.com"
            && w["user_verification"] == "required"
            && w["challenge_validity_seconds"] == 120
            && w["passkey_mfa"] == true,
        "pool mfa-config set --passkey-*: {set}"
    );
    let got = c
        .cli_admin_json(1, &["pool", "mfa-config", "get", "--pool-id", pool, "--consistent"])
        .await?;
    ensure!(
        got["web_authn_configuration"] == *w,
        "pool mfa-config get shows {got}, not what was set"
    );
    // The server's bounds reach the operator: a validity out of range and
    // an allow-list without required attestation are refused, and the
    // setting stays as it was.
    for (what, flags) in [
        ("a 5 s challenge", vec!["--passkey-challenge-validity-seconds", "5"]),
        (
            "AAGUIDs without --passkey-require-attestation",
            vec!["--passkey-aaguids", "cb69481e-8ff7-4039-93ec-0a2729a154a8"],
        ),
    ] {
        let mut args = c.admin_args(1);
        args.extend(
            [
                "pool",
                "mfa-config",
                "set",
                "--pool-id",
                pool,
                "--mfa-configuration",
                "OFF",
            ]
            .into_iter()
            .chain(flags)
            .map(String::from),
        );
        let out = c.cli(&args.iter().map(String::as_str).collect::<Vec<_>>()).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && stderr.contains("InvalidParameterException"),
            "{what}: {} {stderr}",
            out.status
        );
    }
    let after = c
        .cli_admin_json(1, &["pool", "mfa-config", "get", "--pool-id", pool, "--consistent"])
        .await?;
    ensure!(
        after["web_authn_configuration"] == *w,
        "a refused setting changed it: {after}"
    );
    drop(c);
    Ok(())
}
