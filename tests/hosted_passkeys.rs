//! Passkeys on the hosted sign-in page (issue 18), in headless Chromium
//! with DevTools' virtual authenticator (`common::webdriver`) on a real
//! two-node cluster, ending on a real callback server:
//!
//! 1. a password sign-in on node 1's page offers "Add a passkey"; the
//!    click creates a discoverable credential in the virtual
//!    authenticator, `ListWebAuthnCredentials` lists it, and the browser
//!    goes on to the app with a code that exchanges for tokens;
//! 2. after `/logout`, node 2's page signs the user in with the passkey
//!    alone (no username, no password typed); an assertion with a bogus
//!    signature is refused first, with the page's error and the password
//!    form still there;
//! 3. with no passkey at hand (the authenticator emptied), the button
//!    shows the page's error and stays on the page, and the password
//!    still signs in (with no second offer: she has a passkey).
//!
//! Beside it, over raw HTTP on one node: the first post of a passkey
//! sign-in for an app client with a secret (the page's `SECRET_HASH` over
//! the empty username), a forged CSRF token, and a bogus assertion.
//!
//! The page is opened on `http://localhost:PORT`: browsers refuse an IP
//! address as a WebAuthn relying party, and Chromium counts
//! `http://localhost` as a secure context. Screenshots of every step go
//! under `$CARGO_TARGET_TMPDIR/screenshots/<test>/`, their paths printed.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`make deps`).
//!
//! Run with: `cargo test --features failpoints --test hosted_passkeys -- --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use common::auth::*;
use common::directory::*;
use common::http::{enc, pkce_pair, query_param, CallbackServer};
use common::webdriver::{fetch, Browser};
use common::TestCluster;
use serde_json::Value;
use tessera::proto::*;

const POOL_NAME: &str = "hosted-passkeys";
const SESSION_COOKIE: &str = "tessera_session";
/// How long a page may take to show what a step expects.
const PAGE_WAIT: Duration = Duration::from_secs(15);

/// The `<h1>` of the current page, once it is there.
async fn heading(b: &Browser) -> Result<String> {
    b.wait_for("h1", PAGE_WAIT).await?.text().await
}

/// Waits until the browser's URL satisfies `ok`, and returns it (or the
/// last one seen, for the caller's check to fail on).
async fn url_when(b: &Browser, ok: impl Fn(&str) -> bool) -> Result<String> {
    let start = Instant::now();
    loop {
        let u = b.current_url().await?;
        if ok(&u) || start.elapsed() >= PAGE_WAIT {
            return Ok(u);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the first visible `.error` paragraph, once there is one.
async fn visible_error(b: &Browser) -> Result<String> {
    let start = Instant::now();
    loop {
        // The page may be replaced between finding an element and reading
        // it (a stale element): look again rather than fail.
        for e in b.find_all(".error").await.unwrap_or_default() {
            if let Ok(text) = e.text().await {
                if !text.is_empty() {
                    return Ok(text);
                }
            }
        }
        if start.elapsed() >= PAGE_WAIT {
            return Err(anyhow!("no error shown within {PAGE_WAIT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One authorization request of the app: its URL path and query, and the
/// PKCE verifier and state to check the answer with.
struct Authorize {
    path: String,
    verifier: String,
    state: String,
}

impl Authorize {
    fn new(pool: &str, client_id: &str, redirect_uri: &str) -> Self {
        let (verifier, challenge) = pkce_pair();
        let state = format!("st-{}", rand::random::<u32>());
        let path = format!(
            "/{pool}/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri={}\
             &scope=openid+email&state={state}&code_challenge={challenge}&code_challenge_method=S256",
            enc(redirect_uri)
        );
        Authorize { path, verifier, state }
    }

    /// The code of the app's callback URL `landed`, checked for the state.
    fn code_of(&self, landed: &str, callback: &str) -> Result<String> {
        ensure!(
            landed.starts_with(&format!("{callback}?")),
            "the browser did not land on the callback: {landed}"
        );
        ensure!(
            query_param(landed, "error").is_none(),
            "an error on the callback: {landed}"
        );
        ensure!(
            query_param(landed, "state").as_deref() == Some(self.state.as_str()),
            "the state did not come back: {landed}"
        );
        query_param(landed, "code").ok_or_else(|| anyhow!("no code in {landed}"))
    }
}

/// Exchanges `code` at `addr`'s token endpoint; the tokens' JSON.
async fn exchange(
    addr: &str,
    pool: &str,
    client_id: &str,
    redirect_uri: &str,
    code: &str,
    verifier: &str,
) -> Result<Value> {
    let form = format!(
        "grant_type=authorization_code&client_id={client_id}&code={}&redirect_uri={}&code_verifier={}",
        enc(code),
        enc(redirect_uri),
        enc(verifier)
    );
    let r = fetch("POST", &format!("http://{addr}/{pool}/oauth2/token"), Some(&form)).await?;
    ensure!(r.status == 200, "the code exchange on {addr}: {} {}", r.status, r.body);
    serde_json::from_str(&r.body).with_context(|| r.body.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passkey_added_after_a_password_then_signs_in_alone() {
    let test = "passkey_added_after_a_password_then_signs_in_alone";
    let started = Instant::now();
    let (c, b) = tokio::join!(TestCluster::start(2), Browser::start(test));
    let c = c.expect("the cluster forms");
    let b = b.expect("headless Chromium starts under chromedriver");
    println!("2-node cluster and browser ready in {:?}", started.elapsed());
    let r = body(&c, &b).await;
    b.close_after(&r).await;
    c.finish(r);
}

async fn body(c: &TestCluster, b: &Browser) -> Result<()> {
    let d = Dir::create(
        c,
        DirSpec {
            name: POOL_NAME,
            ..Default::default()
        },
    )
    .await?;
    let pool = d.pool_id.clone();
    let admin = d.node(1);
    let set = admin
        .admin()
        .set_user_pool_mfa_config(admin.req(SetUserPoolMfaConfigRequest {
            user_pool_id: pool.clone(),
            mfa_configuration: "OFF".into(),
            web_authn_configuration: Some(WebAuthnConfigurationType {
                relying_party_id: "localhost".into(),
                user_verification: "preferred".into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .map_err(status_err("SetUserPoolMfaConfig web_authn_configuration"))?
        .into_inner();
    ensure!(
        set.web_authn_configuration
            .as_ref()
            .is_some_and(|w| w.relying_party_id == "localhost"),
        "the relying party was not set: {set:?}"
    );
    d.set_sign_in_policy(1, &["PASSWORD", "WEB_AUTHN"], 0).await?;
    let sub = d.confirmed_user(1, "pia", GOOD_PASSWORD, "pia@hosted.test").await?;

    let cb = CallbackServer::start().await?;
    let logout_uri = cb.url.replace("/cb", "/signed-out");
    println!("the app's callback listens at {}", cb.url);
    let app = admin
        .admin()
        .create_user_pool_client(admin.req(CreateUserPoolClientRequest {
            user_pool_id: pool.clone(),
            client_name: "passkey-spa".into(),
            explicit_auth_flows: vec!["ALLOW_USER_AUTH".into(), "ALLOW_REFRESH_TOKEN_AUTH".into()],
            allowed_oauth_flows_user_pool_client: true,
            allowed_oauth_flows: vec!["code".into()],
            allowed_oauth_scopes: vec!["openid".into(), "email".into()],
            callback_urls: vec![cb.url.clone()],
            logout_urls: vec![logout_uri.clone()],
            ..Default::default()
        }))
        .await
        .map_err(status_err("CreateUserPoolClient passkey-spa"))?
        .into_inner()
        .user_pool_client
        .ok_or_else(|| anyhow!("no client"))?;
    let client_id = app.client_id.clone();
    d.barrier_all().await?;

    let port = |via: usize| d.api_addrs[via - 1].rsplit(':').next().unwrap_or_default().to_string();
    let (host1, host2) = (format!("localhost:{}", port(1)), format!("localhost:{}", port(2)));

    // ----- 1. a password sign-in, then "Add a passkey" ------------------
    let first = Authorize::new(&pool, &client_id, &cb.url);
    let url = format!("http://{host1}{}", first.path);
    println!("the browser opens the authorize URL on node 1: {url}");
    b.navigate(&url).await?;
    let authenticator = b.add_virtual_authenticator().await?;
    println!("  virtual authenticator {authenticator} added");
    b.wait_for("#username", PAGE_WAIT).await?;
    b.wait_for("#passkey-sign-in", PAGE_WAIT)
        .await
        .context("the sign-in page of a pool that allows WEB_AUTHN offers a passkey")?;
    b.screenshot("sign-in-page").await?;
    let page = fetch("GET", &url, None).await?;
    let csp = page.header("content-security-policy");
    ensure!(
        csp.contains("script-src 'self'") && !csp.contains("'unsafe-inline'; script") && !csp.contains("unsafe-eval"),
        "the sign-in page's CSP: {csp}"
    );

    let script = fetch("GET", &format!("http://{host1}/{pool}/passkey.js"), None).await?;
    ensure!(
        script.status == 200
            && script.header("content-type").starts_with("text/javascript")
            && script.header("x-content-type-options") == "nosniff"
            && script.body.contains("navigator.credentials"),
        "the page's script: {} {:?}",
        script.status,
        script.headers
    );

    println!("pia signs in with her password");
    b.find("#username").await?.send_keys("pia").await?;
    b.find("#password").await?.send_keys(GOOD_PASSWORD).await?;
    b.find("#sign-in").await?.click().await?;
    let add = b
        .wait_for("#passkey-add", PAGE_WAIT)
        .await
        .context("no 'Add a passkey' page after the password")?;
    let h = heading(b).await?;
    b.screenshot("add-passkey-offer").await?;
    ensure!(h == "Add a passkey", "the offer's heading is {h:?}");
    ensure!(
        cb.requests().is_empty(),
        "the app was reached before the offer was answered"
    );
    b.find("#passkey-skip")
        .await
        .context("the offer has a 'Not now' button")?;

    println!("'Add a passkey' runs navigator.credentials.create in the virtual authenticator");
    add.click().await?;
    let landed = url_when(b, |u| u.starts_with(&cb.url)).await?;
    b.screenshot("callback-after-adding").await?;
    let code = first.code_of(&landed, &cb.url)?;
    let held = b.virtual_credentials(&authenticator).await?;
    ensure!(
        held.len() == 1,
        "the virtual authenticator holds {} credentials: {held:?}",
        held.len()
    );
    ensure!(
        held[0]["isResidentCredential"] == true && held[0]["rpId"] == "localhost",
        "the credential is not a discoverable one for localhost: {}",
        held[0]
    );
    let t = d.sign_in(2, "pia", GOOD_PASSWORD).await?;
    let listed = d
        .node(2)
        .auth()
        .list_web_authn_credentials(ListWebAuthnCredentialsRequest {
            access_token: t.access_token.clone(),
            next_token: String::new(),
            max_results: 0,
        })
        .await
        .map_err(status_err("ListWebAuthnCredentials on node 2"))?
        .into_inner();
    ensure!(
        listed.credentials.len() == 1,
        "ListWebAuthnCredentials lists {:?}",
        listed.credentials
    );
    let stored = &listed.credentials[0];
    let virtual_id = held[0]["credentialId"]
        .as_str()
        .unwrap_or_default()
        .replace('+', "-")
        .replace('/', "_");
    ensure!(
        stored.credential_id.trim_end_matches('=') == virtual_id.trim_end_matches('=')
            && stored.relying_party_id == "localhost",
        "the stored credential {stored:?} is not the authenticator's {virtual_id}"
    );
    println!(
        "  ok: credential {} ({:?})",
        stored.credential_id, stored.friendly_credential_name
    );
    let tokens = exchange(&d.api_addrs[0], &pool, &client_id, &cb.url, &code, &first.verifier).await?;
    let claims = peek_claims(tokens["id_token"].as_str().unwrap_or_default())?;
    ensure!(
        claims["sub"] == sub.as_str(),
        "the first code's tokens are not pia's: {claims}"
    );

    // ----- 2. sign out, then the passkey alone on node 2 ----------------
    println!("pia signs out");
    b.navigate(&format!(
        "http://{host1}/{pool}/logout?client_id={client_id}&logout_uri={}",
        enc(&logout_uri)
    ))
    .await?;
    let out = url_when(b, |u| u.starts_with(&logout_uri)).await?;
    b.screenshot("signed-out").await?;
    ensure!(out.starts_with(&logout_uri), "logout went to {out}");

    let second = Authorize::new(&pool, &client_id, &cb.url);
    let url = format!("http://{host2}{}", second.path);
    println!("the browser opens the authorize URL on node 2: {url}");
    b.navigate(&url).await?;
    b.wait_for("#passkey-sign-in", PAGE_WAIT)
        .await
        .context("after logout, the page asks again")?;
    let cookies = b.cookies().await?;
    ensure!(
        !cookies.iter().any(|c| c.name == SESSION_COOKIE),
        "the session cookie survived the logout"
    );
    b.screenshot("sign-in-page-node-2").await?;
    let hits_before = cb.requests().len();

    println!("attack: an assertion with a bogus signature is refused");
    b.bogus_signatures(&authenticator, true).await?;
    b.find("#passkey-sign-in").await?.click().await?;
    let err = visible_error(b).await?;
    b.screenshot("bogus-signature-refused").await?;
    ensure!(err.contains("not accepted"), "a bogus signature shows {err:?}");
    ensure!(
        cb.requests().len() == hits_before,
        "the app was reached after a refused passkey"
    );
    b.find("#password")
        .await
        .context("the password form is still offered")?;
    b.bogus_signatures(&authenticator, false).await?;

    println!("'Sign in with a passkey', no username, no password");
    b.wait_for("#passkey-sign-in", PAGE_WAIT).await?.click().await?;
    let landed = url_when(b, |u| u.starts_with(&cb.url)).await?;
    b.screenshot("callback-after-passkey").await?;
    let code = second.code_of(&landed, &cb.url)?;
    let tokens = exchange(&d.api_addrs[1], &pool, &client_id, &cb.url, &code, &second.verifier).await?;
    let claims = peek_claims(tokens["id_token"].as_str().unwrap_or_default())?;
    ensure!(
        claims["sub"] == sub.as_str() && claims["cognito:username"] == "pia",
        "the passkey's tokens are not pia's: {claims}"
    );
    let access = peek_claims(tokens["access_token"].as_str().unwrap_or_default())?;
    ensure!(access["sub"] == sub.as_str(), "the access token's sub: {access}");
    let held = b.virtual_credentials(&authenticator).await?;
    ensure!(
        held.len() == 1 && held[0]["signCount"].as_u64().unwrap_or(0) >= 1,
        "the authenticator signed no assertion: {held:?}"
    );
    println!(
        "  ok: signed in as {} with the passkey on node 2",
        claims["cognito:username"]
    );

    // ----- 3. no passkey at hand: the page says so, the password works --
    println!("pia signs out again, and the authenticator forgets her passkey");
    b.navigate(&format!(
        "http://{host2}/{pool}/logout?client_id={client_id}&logout_uri={}",
        enc(&logout_uri)
    ))
    .await?;
    url_when(b, |u| u.starts_with(&logout_uri)).await?;
    b.cdp(
        "WebAuthn.clearCredentials",
        serde_json::json!({ "authenticatorId": authenticator }),
    )
    .await?;
    let third = Authorize::new(&pool, &client_id, &cb.url);
    let url = format!("http://{host1}{}", third.path);
    b.navigate(&url).await?;
    let hits_before = cb.requests().len();
    b.wait_for("#passkey-sign-in", PAGE_WAIT).await?.click().await?;
    let err = visible_error(b).await?;
    b.screenshot("no-passkey-at-hand").await?;
    ensure!(
        err.starts_with("No passkey was used"),
        "a ceremony with no passkey shows {err:?}"
    );
    let here = b.current_url().await?;
    ensure!(
        here == url && cb.requests().len() == hits_before,
        "a failed ceremony left the page: at {here}"
    );
    println!("  ok: {err:?}; now the password");
    b.find("#username").await?.send_keys("pia").await?;
    b.find("#password").await?.send_keys(GOOD_PASSWORD).await?;
    b.find("#sign-in").await?.click().await?;
    let landed = url_when(b, |u| u.starts_with(&cb.url)).await?;
    b.screenshot("callback-after-password").await?;
    let code = third
        .code_of(&landed, &cb.url)
        .context("a user who has a passkey is not offered another one")?;
    let tokens = exchange(&d.api_addrs[0], &pool, &client_id, &cb.url, &code, &third.verifier).await?;
    let claims = peek_claims(tokens["id_token"].as_str().unwrap_or_default())?;
    ensure!(
        claims["sub"] == sub.as_str(),
        "the password's tokens are not pia's: {claims}"
    );
    Ok(())
}

/// The passkey sign-in's first post, over raw HTTP, for an app client
/// with a secret: the page computes the `SECRET_HASH` over the empty
/// username itself, the options name the pool's relying party and no
/// credential (any passkey of the pool may answer), a forged CSRF token is
/// refused, and a bogus assertion shows the page's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passkey_options_for_a_client_with_a_secret() {
    let c = TestCluster::start(1).await.expect("the cluster forms");
    let r = options_body(&c).await;
    c.finish(r);
}

async fn options_body(c: &TestCluster) -> Result<()> {
    use common::http::{hidden, request, FORM};
    let d = Dir::create(
        c,
        DirSpec {
            name: "hosted-passkey-secret",
            ..Default::default()
        },
    )
    .await?;
    let pool = d.pool_id.clone();
    let admin = d.node(1);
    admin
        .admin()
        .set_user_pool_mfa_config(admin.req(SetUserPoolMfaConfigRequest {
            user_pool_id: pool.clone(),
            mfa_configuration: "OFF".into(),
            web_authn_configuration: Some(WebAuthnConfigurationType {
                relying_party_id: "localhost".into(),
                user_verification: "required".into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .map_err(status_err("SetUserPoolMfaConfig web_authn_configuration"))?;
    d.set_sign_in_policy(1, &["PASSWORD", "WEB_AUTHN"], 0).await?;
    let callback = "http://127.0.0.1:9/cb";
    let app = admin
        .admin()
        .create_user_pool_client(admin.req(CreateUserPoolClientRequest {
            user_pool_id: pool.clone(),
            client_name: "passkey-web".into(),
            generate_secret: true,
            explicit_auth_flows: vec!["ALLOW_USER_AUTH".into()],
            allowed_oauth_flows_user_pool_client: true,
            allowed_oauth_flows: vec!["code".into()],
            allowed_oauth_scopes: vec!["openid".into()],
            callback_urls: vec![callback.into()],
            ..Default::default()
        }))
        .await
        .map_err(status_err("CreateUserPoolClient passkey-web"))?
        .into_inner()
        .user_pool_client
        .ok_or_else(|| anyhow!("no client"))?;
    d.barrier_all().await?;
    let addr = d.api_addrs[0].clone();
    let path = format!(
        "/{pool}/oauth2/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid&state=s1",
        app.client_id,
        enc(callback)
    );
    let page = request(&addr, "GET", &path, &[], "").await?;
    ensure!(page.status == 200, "the sign-in page: {} {}", page.status, page.body);
    ensure!(
        page.body.contains("id=\"passkey-sign-in\""),
        "no passkey button for a client with a secret"
    );
    let csrf = hidden(&page.body, "csrf")?;
    let sealed = hidden(&page.body, "request")?;
    let cookie = format!("tessera_csrf={csrf}");
    let post = |csrf: String, step: &'static str, extra: String| {
        let (addr, pool, sealed, cookie) = (addr.clone(), pool.clone(), sealed.clone(), cookie.clone());
        async move {
            let body = format!("request={}&csrf={}&step={step}{extra}", enc(&sealed), enc(&csrf));
            request(
                &addr,
                "POST",
                &format!("/{pool}/passkey"),
                &[FORM, ("Cookie", cookie.as_str())],
                &body,
            )
            .await
        }
    };

    println!("step=options answers the WEB_AUTHN challenge's options");
    let r = post(csrf.clone(), "options", String::new()).await?;
    ensure!(r.status == 200, "options: {} {}", r.status, r.body);
    ensure!(
        r.header("cache-control").as_deref() == Some("no-store"),
        "options may be cached: {}",
        r.headers
    );
    let v = r.json()?;
    let o = &v["options"];
    let o = if o["publicKey"].is_object() { &o["publicKey"] } else { o };
    ensure!(
        o["rpId"] == "localhost"
            && o["challenge"].as_str().is_some_and(|c| c.len() >= 16)
            && o["allowCredentials"].as_array().is_none_or(Vec::is_empty)
            && o["userVerification"] == "required",
        "the request options: {o}"
    );
    let session = v["session"].as_str().unwrap_or_default().to_string();
    ensure!(!session.is_empty(), "no session: {v}");

    println!("attack: a forged CSRF token is refused");
    let forged = post("f".repeat(64), "options", String::new()).await?;
    ensure!(
        forged.status == 403,
        "a forged CSRF token: {} {}",
        forged.status,
        forged.body
    );

    println!("a bogus assertion shows the page's error");
    let bogus = r#"{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"AAAA","signature":"AAAA","userHandle":"AAAA"},"clientExtensionResults":{}}"#;
    let r = post(
        csrf.clone(),
        "verify",
        format!("&session={}&credential={}", enc(&session), enc(bogus)),
    )
    .await?;
    ensure!(
        r.status == 200 && r.body.contains("That passkey was not accepted") && r.body.contains("id=\"password\""),
        "a bogus assertion: {} {}",
        r.status,
        r.body
    );
    Ok(())
}

/// Chromium's virtual authenticator (CTAP2) attests with the `packed`
/// format and its own batch certificate when the relying party asks for
/// direct attestation.
const CHROMIUM_AAGUID: &str = "01020304-0506-0708-0102-030405060708";
/// A model the pool may allow instead (a YubiKey 5).
const YUBIKEY_5_AAGUID: &str = "cb69481e-8ff7-4039-93ec-0a2729a154a8";

/// A pool that requires attestation, with Chromium's virtual
/// authenticator as the attesting authenticator nobody here wrote:
///
/// 1. with only another model allowed, Chromium's `packed` attestation is
///    refused by its AAGUID, and nothing is stored;
/// 2. attack: the same kind of attestation with the authenticator data's
///    AAGUID rewritten to the allowed model is refused (the attestation
///    signature covers it), and nothing is stored;
/// 3. with Chromium's model allowed, the `packed` attestation registers
///    a passkey listed with its format and model, which signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_packed_attestation_is_checked_against_the_allowed_models() {
    let test = "a_packed_attestation_is_checked_against_the_allowed_models";
    let (c, b) = tokio::join!(TestCluster::start(1), Browser::start(test));
    let c = c.expect("the cluster forms");
    let b = b.expect("headless Chromium starts under chromedriver");
    let r = packed_body(&c, &b).await;
    b.close_after(&r).await;
    c.finish(r);
}

/// Sets the pool's passkey settings to require attestation from one of
/// `allowed` models.
async fn require_models(d: &Dir, allowed: &[&str]) -> Result<()> {
    let admin = d.node(1);
    admin
        .admin()
        .set_user_pool_mfa_config(admin.req(SetUserPoolMfaConfigRequest {
            user_pool_id: d.pool_id.clone(),
            mfa_configuration: "OFF".into(),
            web_authn_configuration: Some(WebAuthnConfigurationType {
                relying_party_id: "localhost".into(),
                user_verification: "preferred".into(),
                require_attestation: true,
                allowed_aaguids: allowed.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .map_err(status_err("SetUserPoolMfaConfig require_attestation"))?;
    Ok(())
}

/// `StartWebAuthnRegistration`, then `navigator.credentials.create()` in
/// the page with those options: the browser's `RegistrationResponseJSON`.
async fn browser_registration(d: &Dir, b: &Browser, access: &str) -> Result<Value> {
    let options = d
        .node(1)
        .auth()
        .start_web_authn_registration(StartWebAuthnRegistrationRequest {
            access_token: access.into(),
        })
        .await
        .map_err(status_err("StartWebAuthnRegistration"))?
        .into_inner()
        .credential_creation_options_document;
    let parsed: Value = serde_json::from_str(&options)?;
    ensure!(
        parsed["attestation"] == "direct",
        "a pool that requires attestation asks for {}",
        parsed["attestation"]
    );
    let script = format!(
        "(async () => {{ \
           const o = PublicKeyCredential.parseCreationOptionsFromJSON({options}); \
           const c = await navigator.credentials.create({{ publicKey: o }}); \
           return JSON.stringify(c.toJSON()); \
         }})()"
    );
    let v = b
        .cdp(
            "Runtime.evaluate",
            serde_json::json!({ "expression": script, "awaitPromise": true, "returnByValue": true, "userGesture": true }),
        )
        .await?;
    let json = v["result"]["value"]
        .as_str()
        .ok_or_else(|| anyhow!("navigator.credentials.create() failed in the page: {v}"))?;
    Ok(serde_json::from_str(json)?)
}

/// `CompleteWebAuthnRegistration` with `credential`.
async fn complete(d: &Dir, access: &str, credential: &Value) -> Result<(), tonic::Status> {
    d.node(1)
        .auth()
        .complete_web_authn_registration(CompleteWebAuthnRegistrationRequest {
            access_token: access.into(),
            credential_document: credential.to_string(),
            friendly_credential_name: "Chromium".into(),
        })
        .await
        .map(|_| ())
}

/// `ListWebAuthnCredentials` (one page).
async fn listed(d: &Dir, access: &str) -> Result<Vec<WebAuthnCredentialDescription>> {
    Ok(d.node(1)
        .auth()
        .list_web_authn_credentials(ListWebAuthnCredentialsRequest {
            access_token: access.into(),
            ..Default::default()
        })
        .await
        .map_err(status_err("ListWebAuthnCredentials"))?
        .into_inner()
        .credentials)
}

/// The attestation object of `credential` with the authenticator data's
/// AAGUID (bytes 37..53) replaced by `aaguid`, in the object's `authData`
/// and in the response's own `authenticatorData` copy.
fn with_aaguid(credential: &Value, aaguid: &str) -> Result<Value> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use serde_cbor_2::Value as Cbor;
    let raw = uuid::Uuid::parse_str(aaguid)?.into_bytes();
    let att = URL_SAFE_NO_PAD.decode(
        credential["response"]["attestationObject"]
            .as_str()
            .ok_or_else(|| anyhow!("no attestationObject: {credential}"))?,
    )?;
    let Cbor::Map(mut m) = serde_cbor_2::from_slice::<Cbor>(&att)? else {
        return Err(anyhow!("the attestation object is not a CBOR map"));
    };
    let mut rewritten = None;
    for (k, v) in m.iter_mut() {
        if let (Cbor::Text(k), Cbor::Bytes(data)) = (k, v) {
            if k == "authData" {
                ensure!(data.len() >= 53, "authData too short for attested credential data");
                data[37..53].copy_from_slice(&raw);
                rewritten = Some(data.clone());
            }
        }
    }
    let data = rewritten.ok_or_else(|| anyhow!("no authData in the attestation object"))?;
    let mut forged = credential.clone();
    forged["response"]["attestationObject"] =
        Value::String(URL_SAFE_NO_PAD.encode(serde_cbor_2::to_vec(&Cbor::Map(m))?));
    if forged["response"]["authenticatorData"].is_string() {
        forged["response"]["authenticatorData"] = Value::String(URL_SAFE_NO_PAD.encode(data));
    }
    Ok(forged)
}

async fn packed_body(c: &TestCluster, b: &Browser) -> Result<()> {
    let d = Dir::create(
        c,
        DirSpec {
            name: "hosted-passkey-packed",
            ..Default::default()
        },
    )
    .await?;
    require_models(&d, &[YUBIKEY_5_AAGUID]).await?;
    d.set_sign_in_policy(1, &["PASSWORD", "WEB_AUTHN"], 0).await?;
    d.confirmed_user(1, "quin", GOOD_PASSWORD, "quin@hosted.test").await?;
    let access = d.sign_in(1, "quin", GOOD_PASSWORD).await?.access_token;
    let port = d.api_addrs[0].rsplit(':').next().unwrap_or_default().to_string();
    // Any page of the node gives the script the origin http://localhost:PORT.
    b.navigate(&format!("http://localhost:{port}/sync-info")).await?;
    let authenticator = b.add_virtual_authenticator().await?;
    println!("virtual authenticator {authenticator} added");

    println!("1. only a YubiKey 5 is allowed: Chromium's packed attestation is refused by its model");
    let credential = browser_registration(&d, b, &access).await?;
    let r = complete(&d, &access, &credential).await;
    let s = r
        .err()
        .ok_or_else(|| anyhow!("Chromium's model registered where only a YubiKey 5 may"))?;
    check_exception(
        "a packed attestation of a model not allowed",
        &s,
        tonic::Code::InvalidArgument,
        "WebAuthnCredentialNotSupportedException",
    )?;
    ensure!(
        s.message().contains(CHROMIUM_AAGUID) && s.message().contains("allowed_aaguids"),
        "the refusal does not name Chromium's model: {}",
        s.message()
    );
    ensure!(
        listed(&d, &access).await?.is_empty(),
        "a refused registration is listed"
    );
    println!("  refused: {}", s.message());
    b.screenshot("packed-refused-by-model").await?;

    println!("2. attack: the same attestation with the AAGUID rewritten to the allowed model");
    let credential = browser_registration(&d, b, &access).await?;
    let forged = with_aaguid(&credential, YUBIKEY_5_AAGUID)?;
    let r = complete(&d, &access, &forged).await;
    let s = r
        .err()
        .ok_or_else(|| anyhow!("an attestation whose AAGUID was rewritten registered"))?;
    ensure!(
        s.code() == tonic::Code::InvalidArgument
            && exception_of(&s).is_some_and(|e| e == "InvalidParameterException" || e.starts_with("WebAuthn")),
        "a rewritten AAGUID is refused with {:?}: {}",
        exception_of(&s),
        s.message()
    );
    // Refused for its signature: the model it claims is an allowed one.
    ensure!(
        !s.message().contains("allowed_aaguids"),
        "the rewritten AAGUID was refused by the allow-list, not by the attestation's signature: {}",
        s.message()
    );
    println!("  refused: {}", s.message());
    ensure!(listed(&d, &access).await?.is_empty(), "a forged registration is listed");

    println!("3. Chromium's model allowed: the packed attestation registers");
    require_models(&d, &[YUBIKEY_5_AAGUID, CHROMIUM_AAGUID]).await?;
    let credential = browser_registration(&d, b, &access).await?;
    complete(&d, &access, &credential)
        .await
        .map_err(status_err("CompleteWebAuthnRegistration of an allowed model"))?;
    let list = listed(&d, &access).await?;
    ensure!(
        list.len() == 1 && list[0].attestation_format == "packed" && list[0].aaguid == CHROMIUM_AAGUID,
        "the registered passkey is listed as {list:?}"
    );
    b.screenshot("packed-registered").await?;
    Ok(())
}
