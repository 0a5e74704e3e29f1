//! Issue 14, social sign-in by redirect: the hosted page's "Sign in with
//! <provider>" runs the authorization code flow against an OpenID provider
//! (`common::oidc_provider`, a real one on loopback) with state, nonce and
//! PKCE, and finishes our own code flow back to the app.
//!
//! `social_sign_in_on_three_nodes` speaks raw HTTP: the flow starts on
//! node 1, the provider's callback lands on node 2 and the app exchanges
//! our code on node 3 (with PKCE); the id token verifies with the pool's
//! JWKS alone and names the federated user `{provider}_{sub}` with the
//! mapped attributes; a second sign-in of the same subject (through
//! `identity_provider=` on `/authorize`) is the same user. Then every
//! attack is made and watched to fail: a forged or tampered state, a state
//! without its browser cookie or with another browser's, a replayed
//! provider code, an id token whose nonce differs, one signed by a key the
//! provider does not publish, a provider the app does not offer, and a
//! provider configured with the wrong client secret. The provider's
//! secret is never answered by Describe.
//!
//! `social_sign_in_in_a_browser` does it in headless Chromium
//! (`common::webdriver`): the browser opens the authorize URL, clicks
//! "Sign in with Corp", passes through the provider and lands on a real
//! loopback callback with a code that the test exchanges. Screenshots go to
//! `$CARGO_TARGET_TMPDIR/screenshots/social_sign_in_in_a_browser/`.
//!
//! Run with: `cargo test --test social_signin -- --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use common::auth::{fetch_jwks, status_err, verify_with_jwks, Fixture, PoolSpec};
use common::http::{enc, pkce_pair, query_param, request, Answer, CallbackServer};
use common::oidc_provider::{KeyKind, OidcTestProvider};
use common::webdriver::{fetch, Browser};
use common::{poll_until, TestCluster};
use serde_json::{json, Value};
use tessera::proto::*;

/// The provider's client id for the pool, and its secret there.
const WEB_CLIENT: &str = "tessera-web";
const WEB_SECRET: &str = "idp-s3cret-for-tessera";
const CALLBACK: &str = "https://app.example.com/cb";
const BINDING: &str = "tessera_idp";

/// Test bodies run one at a time: each starts a cluster.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What these tests require of an answer beyond `common::http`'s.
trait PageAnswer {
    /// Requires our own error page: `status`, no redirect, no cookie of a
    /// signed-in browser, and `needle` in the text.
    fn refused(&self, what: &str, status: u16, needle: &str) -> Result<()>;
}

impl PageAnswer for Answer {
    /// Requires our own error page: `status`, no redirect, no cookie of a
    /// signed-in browser, and `needle` in the text.
    fn refused(&self, what: &str, status: u16, needle: &str) -> Result<()> {
        ensure!(
            self.status == status && self.header("location").is_none(),
            "{what}: expected our {status} page and no redirect, got {} {:?} {:.300}",
            self.status,
            self.header("location"),
            self.body
        );
        ensure!(
            self.set_cookie("tessera_session").is_none(),
            "{what}: a session cookie was set"
        );
        ensure!(
            self.body.contains(needle),
            "{what}: the page should say {needle:?}: {:.400}",
            self.body
        );
        ensure!(
            self.header("x-frame-options").as_deref() == Some("DENY"),
            "{what}: the page must forbid framing"
        );
        println!("  ok: {what} -> {status}: {needle}");
        Ok(())
    }
}

async fn get(addr: &str, path: &str, cookie: Option<&str>) -> Result<Answer> {
    match cookie {
        Some(c) => request(addr, "GET", path, &[("Cookie", c)], "").await,
        None => request(addr, "GET", path, &[], "").await,
    }
}

/// `url` with its query parameter `name` set to `value`.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let (base, q) = url.split_once('?').unwrap_or((url, ""));
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        out.append_pair(&k, if k == name { value } else { &v });
    }
    format!("{base}?{}", out.finish())
}

/// `(host:port, path?query)` of an http URL.
fn split(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("not an http URL: {url}"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((host.to_string(), format!("/{path}")))
}

/// The href of the "Sign in with `name`" link of a page.
fn idp_link(html: &str, name: &str) -> Option<String> {
    let marker = format!("data-provider=\"{name}\" href=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].replace("&amp;", "&"))
}

/// A sign-in in progress at the provider, as the browser holds it.
struct AtProvider {
    /// The provider's authorization URL we sent the browser to.
    location: String,
    /// `tessera_idp=...`, the browser-binding cookie.
    cookie: String,
}

/// Asks `addr` to start (a `federate` link or an authorize URL with
/// `identity_provider=`) and checks the redirect to the provider.
async fn start(addr: &str, path: &str, idp: &OidcTestProvider, fx: &Fixture, pool: &str) -> Result<AtProvider> {
    let a = get(addr, path, None).await?;
    let location = a.header("location").unwrap_or_default();
    ensure!(
        a.status == 303 && location.starts_with(&format!("{}?", idp.authorize_url())),
        "starting at {addr}: expected a 303 to the provider, got {} {location} {:.300}",
        a.status,
        a.body
    );
    let set = a
        .set_cookie(BINDING)
        .ok_or_else(|| anyhow!("no {BINDING} cookie: {}", a.headers))?;
    ensure!(
        set.contains("; Secure")
            && set.contains("; HttpOnly")
            && set.contains("SameSite=Lax")
            && set.contains(&format!("Path=/{pool}/")),
        "the binding cookie must be Secure, HttpOnly, SameSite=Lax on /{pool}/: {set}"
    );
    let p = |k: &str| query_param(&location, k).unwrap_or_default();
    ensure!(
        p("response_type") == "code"
            && p("client_id") == WEB_CLIENT
            && p("redirect_uri") == format!("{}/oauth2/idpresponse", fx.issuer)
            && p("scope").split(' ').any(|s| s == "openid")
            && p("code_challenge_method") == "S256"
            && p("code_challenge").len() == 43
            && p("nonce").len() >= 32
            && !p("state").is_empty(),
        "the request to the provider: {location}"
    );
    ensure!(
        !location.contains(WEB_SECRET),
        "the secret must not travel in the browser"
    );
    Ok(AtProvider {
        location,
        cookie: set.split(';').next().unwrap_or_default().to_string(),
    })
}

/// The browser at the provider: it approves and redirects back; returns
/// the path and query of our callback.
async fn through_provider(at: &AtProvider, fx: &Fixture) -> Result<String> {
    let (host, path) = split(&at.location)?;
    let a = get(&host, &path, None).await?;
    let back = a.header("location").unwrap_or_default();
    let ours = format!("{}/oauth2/idpresponse?", fx.issuer);
    ensure!(
        a.status == 302 && back.starts_with(&ours),
        "the provider should send the browser to {ours}: {} {back} {:.200}",
        a.status,
        a.body
    );
    Ok(split(&back)?.1)
}

/// Our code for the app from a callback answer, with the session cookie.
fn code_of(a: &Answer, state: &str) -> Result<String> {
    let loc = a.header("location").unwrap_or_default();
    ensure!(
        a.status == 303 && loc.starts_with(&format!("{CALLBACK}?")),
        "the callback should send the browser to the app: {} {loc} {:.400}",
        a.status,
        a.body
    );
    ensure!(
        query_param(&loc, "state").as_deref() == Some(state),
        "the app's state comes back: {loc}"
    );
    let session = a
        .set_cookie("tessera_session")
        .ok_or_else(|| anyhow!("no session cookie after a social sign-in: {}", a.headers))?;
    ensure!(
        session.contains("Secure") && session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "the session cookie: {session}"
    );
    query_param(&loc, "code").ok_or_else(|| anyhow!("no code in {loc}"))
}

/// Exchanges our code at `addr` with the PKCE verifier: the token JSON.
async fn exchange(addr: &str, pool: &str, client_id: &str, code: &str, verifier: &str) -> Result<Value> {
    let form = format!(
        "grant_type=authorization_code&client_id={client_id}&code={}&redirect_uri={}&code_verifier={}",
        enc(code),
        enc(CALLBACK),
        enc(verifier)
    );
    let a = request(
        addr,
        "POST",
        &format!("/{pool}/oauth2/token"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form,
    )
    .await?;
    ensure!(a.status == 200, "the exchange at {addr}: {} {}", a.status, a.body);
    serde_json::from_str(&a.body).with_context(|| a.body.clone())
}

/// Creates an OIDC provider `name` at `idp` with `secret`, mapping email,
/// email_verified and name.
async fn create_provider(fx: &Fixture, via: u64, name: &str, idp: &OidcTestProvider, secret: &str) -> Result<()> {
    let n = fx.node(via);
    n.admin()
        .create_identity_provider(
            n.req(CreateIdentityProviderRequest {
                user_pool_id: fx.pool_id.clone(),
                provider_name: name.into(),
                provider_type: "OIDC".into(),
                provider_details: [
                    ("client_id".to_string(), WEB_CLIENT.to_string()),
                    ("client_secret".to_string(), secret.to_string()),
                    ("oidc_issuer".to_string(), idp.issuer().to_string()),
                    ("authorize_scopes".to_string(), "openid email profile".to_string()),
                ]
                .into(),
                attribute_mapping: [
                    ("email".to_string(), "email".to_string()),
                    ("email_verified".to_string(), "email_verified".to_string()),
                    ("name".to_string(), "name".to_string()),
                ]
                .into(),
                ..Default::default()
            }),
        )
        .await
        .map_err(status_err("CreateIdentityProvider"))?;
    Ok(())
}

/// A pool with providers `Corp` (right secret), `Wrong` (wrong secret) and
/// `Other` (not offered by the app), and a public SPA client offering
/// COGNITO, Corp and Wrong with `callback`.
async fn setup(c: &TestCluster, idp: &OidcTestProvider, callback: &str) -> Result<(Fixture, String)> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "social",
            ..Default::default()
        },
    )
    .await?;
    fx.wait_keys_published().await?;
    idp.register_client(WEB_CLIENT, Some(WEB_SECRET));
    create_provider(&fx, 1, "Corp", idp, WEB_SECRET).await?;
    create_provider(&fx, 2, "Wrong", idp, "not-the-secret").await?;
    create_provider(&fx, 3, "Other", idp, WEB_SECRET).await?;
    let n2 = fx.node(2);
    let app = n2
        .admin()
        .create_user_pool_client(n2.req(CreateUserPoolClientRequest {
            user_pool_id: fx.pool_id.clone(),
            client_name: "spa".into(),
            allowed_oauth_flows_user_pool_client: true,
            allowed_oauth_flows: vec!["code".into()],
            allowed_oauth_scopes: vec!["openid".into(), "email".into(), "profile".into()],
            callback_urls: vec![callback.into()],
            supported_identity_providers: vec!["COGNITO".into(), "Corp".into(), "Wrong".into()],
            ..Default::default()
        }))
        .await
        .map_err(status_err("CreateUserPoolClient spa"))?
        .into_inner()
        .user_pool_client
        .ok_or_else(|| anyhow!("no client"))?;
    Ok((fx, app.client_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn social_sign_in_on_three_nodes() {
    let _serial = SERIAL.lock().await;
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = three_nodes(&c).await;
    c.finish(r);
}

async fn three_nodes(c: &TestCluster) -> Result<()> {
    let idp = OidcTestProvider::start().await?;
    idp.set_user("ext-7", json!({"name": "Ada Social"}));
    let (fx, client_id) = setup(c, &idp, CALLBACK).await?;
    let pool = fx.pool_id.clone();
    let (a1, a2, a3) = (
        fx.api_addrs[0].clone(),
        fx.api_addrs[1].clone(),
        fx.api_addrs[2].clone(),
    );

    // The secret is sealed and write-only: Describe leaves it out.
    for via in 1..=3 {
        let n = fx.node(via);
        let d = n
            .admin()
            .describe_identity_provider(n.req(DescribeIdentityProviderRequest {
                user_pool_id: pool.clone(),
                provider_name: "Corp".into(),
            }))
            .await
            .map_err(status_err("DescribeIdentityProvider"))?
            .into_inner();
        let text = format!("{d:?}");
        ensure!(
            !text.contains(WEB_SECRET) && !text.contains("client_secret") && text.contains(WEB_CLIENT),
            "Describe on node {via} must not answer the secret: {text}"
        );
    }
    println!("  ok: Describe answers no client_secret on any node");

    let (verifier, challenge) = pkce_pair();
    let authorize = format!(
        "/{pool}/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri={}\
         &scope=openid+email+profile&state=st-9&nonce=app-n-9&code_challenge={challenge}&code_challenge_method=S256",
        enc(CALLBACK)
    );
    let page = poll_until(
        "node 1 shows the page with the providers",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let a = get(&a1, &authorize, None).await?;
            Ok((a.status == 200 && a.body.contains("Sign in with Wrong")).then_some(a))
        },
    )
    .await?;
    ensure!(
        page.body.contains("Sign in with Corp") && !page.body.contains("Sign in with Other"),
        "the page offers the app's providers only: {:.800}",
        page.body
    );
    let link = idp_link(&page.body, "Corp").ok_or_else(|| anyhow!("no Corp link: {:.800}", page.body))?;
    println!("  ok: the page offers Corp and Wrong, not Other");

    // Start on node 1, callback on node 2, exchange on node 3.
    let at = start(&a1, &link, &idp, &fx, &pool).await?;
    let back = through_provider(&at, &fx).await?;
    let done = get(&a2, &back, Some(&at.cookie)).await?;
    let code = code_of(&done, "st-9")?;
    let cleared = done.set_cookie(BINDING).unwrap_or_default();
    ensure!(
        cleared.contains("Max-Age=0"),
        "the binding cookie is cleared: {cleared}"
    );
    let seen = idp.token_requests();
    let last = seen
        .last()
        .ok_or_else(|| anyhow!("the provider saw no token request"))?;
    ensure!(
        last.outcome == "200"
            && last.auth_method == "client_secret_basic"
            && last.client_id == WEB_CLIENT
            && last.form.get("redirect_uri") == Some(&format!("{}/oauth2/idpresponse", fx.issuer))
            && last.form.get("code_verifier").is_some_and(|v| v.len() >= 43),
        "the exchange the provider saw: {last:?}"
    );
    println!("  ok: node 2 exchanged the provider's code (Basic, PKCE, exact redirect_uri)");
    let t = exchange(&a3, &pool, &client_id, &code, &verifier).await?;
    let id_token = t["id_token"].as_str().ok_or_else(|| anyhow!("no id_token: {t}"))?;
    let (_, jwks) = fetch_jwks(&a1, &pool).await?;
    let claims = verify_with_jwks(id_token, &jwks, &fx.issuer, Some(&client_id))?;
    ensure!(
        claims["cognito:username"] == "Corp_ext-7"
            && claims["email"] == "ext-7@social.example"
            && claims["name"] == "Ada Social"
            && claims["nonce"] == "app-n-9",
        "the id token names the federated user with mapped attributes: {claims}"
    );
    ensure!(
        claims["identities"].to_string().contains("ext-7"),
        "the identities claim names the provider's subject: {claims}"
    );
    let sub = claims["sub"].as_str().unwrap_or_default().to_string();
    println!(
        "  ok: node 3 exchanged our code: {} ({sub})",
        claims["cognito:username"]
    );

    // Attack: the provider's code replayed (same state, same cookie).
    let replay = get(&a3, &back, Some(&at.cookie)).await?;
    replay.refused("a replayed provider code", 502, "did not accept")?;
    ensure!(
        idp.token_requests().last().map(|r| r.outcome.as_str()) == Some("invalid_grant"),
        "the provider refused the replayed code: {:?}",
        idp.token_requests().last()
    );

    // Second sign-in of the same subject, straight through
    // identity_provider= on node 3, callback on node 1: the same user.
    let (verifier2, challenge2) = pkce_pair();
    let direct = format!(
        "/{pool}/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri={}\
         &scope=openid+email&state=st-10&identity_provider=Corp&code_challenge={challenge2}&code_challenge_method=S256",
        enc(CALLBACK)
    );
    let at2 = start(&a3, &direct, &idp, &fx, &pool).await?;
    let back2 = through_provider(&at2, &fx).await?;
    let code2 = code_of(&get(&a1, &back2, Some(&at2.cookie)).await?, "st-10")?;
    let t2 = exchange(&a2, &pool, &client_id, &code2, &verifier2).await?;
    let claims2 = verify_with_jwks(
        t2["id_token"].as_str().unwrap_or_default(),
        &jwks,
        &fx.issuer,
        Some(&client_id),
    )?;
    ensure!(
        claims2["sub"] == sub.as_str() && claims2["cognito:username"] == "Corp_ext-7",
        "the second sign-in is the same user: {claims2}"
    );
    println!("  ok: a second sign-in of ext-7 (identity_provider=Corp) is the same user");

    // Attacks on the state and the browser binding.
    let at3 = start(&a1, &direct, &idp, &fx, &pool).await?;
    let back3 = through_provider(&at3, &fx).await?;
    let forged = with_param(&back3, "state", "forged-state");
    get(&a2, &forged, Some(&at3.cookie))
        .await?
        .refused("a forged state", 400, "not one this user pool issued")?;
    let state = query_param(&back3, "state").unwrap_or_default();
    let mut flipped = state.clone();
    let mid = flipped.len() / 2;
    flipped.replace_range(mid..mid + 1, if &state[mid..mid + 1] == "A" { "B" } else { "A" });
    get(&a2, &with_param(&back3, "state", &flipped), Some(&at3.cookie))
        .await?
        .refused("a tampered state", 400, "not one this user pool issued")?;
    get(&a2, &back3, None)
        .await?
        .refused("a valid state without its cookie", 403, "another browser")?;
    let other_browser = start(&a1, &direct, &idp, &fx, &pool).await?;
    get(&a2, &back3, Some(&other_browser.cookie)).await?.refused(
        "a valid state with another browser's cookie",
        403,
        "another browser",
    )?;
    // The rightful browser still finishes: the attacks spent nothing.
    code_of(&get(&a2, &back3, Some(&at3.cookie)).await?, "st-10")?;
    println!("  ok: the rightful browser still signs in after the attacks");

    // An id token whose nonce is not ours.
    idp.set_nonce_override(Some("someone-elses-nonce"));
    let at4 = start(&a1, &direct, &idp, &fx, &pool).await?;
    let back4 = through_provider(&at4, &fx).await?;
    get(&a2, &back4, Some(&at4.cookie))
        .await?
        .refused("an id token with another nonce", 401, "nonce differs")?;
    idp.set_nonce_override(None);

    // An id token signed by a key the provider does not publish.
    let rogue = idp.foreign_key(KeyKind::Ec, "rogue-1")?;
    idp.set_signer(Some(&rogue));
    let at5 = start(&a1, &direct, &idp, &fx, &pool).await?;
    let back5 = through_provider(&at5, &fx).await?;
    get(&a2, &back5, Some(&at5.cookie)).await?.refused(
        "an id token signed by an unpublished key",
        401,
        "Invalid id token",
    )?;
    idp.set_signer(None);

    // A provider the app does not offer.
    let other = with_param(&direct, "identity_provider", "Other");
    get(&a1, &other, None)
        .await?
        .refused("a provider the app does not offer (authorize)", 400, "does not offer")?;
    let other_link = with_param(&link, "identity_provider", "Other");
    get(&a2, &other_link, None)
        .await?
        .refused("a provider the app does not offer (button)", 400, "does not offer")?;

    // The provider configured with the wrong secret: refused cleanly.
    let wrong = with_param(&direct, "identity_provider", "Wrong");
    let at6 = start(&a1, &wrong, &idp, &fx, &pool).await?;
    let back6 = through_provider(&at6, &fx).await?;
    get(&a3, &back6, Some(&at6.cookie)).await?.refused(
        "a provider with the wrong client secret",
        502,
        "invalid_client",
    )?;
    ensure!(
        idp.token_requests().last().map(|r| r.outcome.as_str()) == Some("invalid_client"),
        "the provider refused the wrong secret: {:?}",
        idp.token_requests().last()
    );

    // The provider says no: back to the app with RFC 6749's error.
    idp.set_authorize_error(Some("access_denied"));
    let at7 = start(&a1, &direct, &idp, &fx, &pool).await?;
    let (host, path) = split(&at7.location)?;
    let denied = get(&host, &path, None).await?;
    let back7 = split(&denied.header("location").unwrap_or_default())?.1;
    let a = get(&a2, &back7, Some(&at7.cookie)).await?;
    let loc = a.header("location").unwrap_or_default();
    ensure!(
        a.status == 303
            && loc.starts_with(&format!("{CALLBACK}?"))
            && query_param(&loc, "error").as_deref() == Some("access_denied")
            && query_param(&loc, "state").as_deref() == Some("st-10")
            && query_param(&loc, "code").is_none(),
        "a refusal at the provider goes back to the app as access_denied: {} {loc}",
        a.status
    );
    idp.set_authorize_error(None);
    println!("  ok: the provider's access_denied goes back to the app with its state");

    // Nothing above leaked the secret to the browser or the app.
    for r in idp.authorize_requests() {
        ensure!(
            !format!("{r:?}").contains(WEB_SECRET),
            "the secret reached the browser: {r:?}"
        );
    }
    Ok(())
}

// ----- in a real browser -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn social_sign_in_in_a_browser() {
    let _serial = SERIAL.lock().await;
    let test = "social_sign_in_in_a_browser";
    let (c, b) = tokio::join!(TestCluster::start(3), Browser::start(test));
    let c = c.expect("a 3-node cluster forms");
    let b = b.expect("headless Chromium starts under chromedriver");
    let r = browser_body(&c, &b).await;
    b.close_after(&r).await;
    c.finish(r);
}

/// Waits until the browser's URL satisfies `ok`, and returns it (or the
/// last one seen, for the caller's check to fail on).
async fn url_when(b: &Browser, ok: impl Fn(&str) -> bool) -> Result<String> {
    let start = Instant::now();
    loop {
        let u = b.current_url().await?;
        if ok(&u) || start.elapsed() >= Duration::from_secs(15) {
            return Ok(u);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn browser_body(c: &TestCluster, b: &Browser) -> Result<()> {
    let idp = OidcTestProvider::start().await?;
    idp.set_user("browser-1", json!({"name": "Bea Browser"}));
    let cb = CallbackServer::start().await?;
    let (fx, client_id) = setup(c, &idp, &cb.url).await?;
    let pool = fx.pool_id.clone();
    let (verifier, challenge) = pkce_pair();
    // The provider sends the browser to {public_url}/{pool}/oauth2/idpresponse,
    // so the browser starts on that host too: the binding cookie must be
    // sent back there.
    let (public_host, _) = split(&fx.issuer)?;
    let authorize = format!(
        "http://{public_host}/{pool}/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri={}\
         &scope=openid+email+profile&state=st-b&nonce=n-b&code_challenge={challenge}&code_challenge_method=S256",
        enc(&cb.url)
    );
    println!("the browser opens {authorize}");
    poll_until(
        "the page lists Corp",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async {
            b.navigate(&authorize).await?;
            let src = b.page_source().await?;
            Ok(src.contains("Sign in with Corp").then_some(()))
        },
    )
    .await?;
    b.screenshot("sign-in-page-with-providers").await?;
    let button = b.find("a[data-provider=\"Corp\"]").await?;
    ensure!(button.text().await? == "Sign in with Corp", "the button's text");
    button.click().await?;
    let landed = url_when(b, |u| u.starts_with(&cb.url)).await?;
    b.screenshot("back-in-the-app").await?;
    ensure!(
        landed.starts_with(&format!("{}?", cb.url)),
        "the browser did not land on the app's callback: {landed} ({})",
        b.page_source()
            .await
            .unwrap_or_default()
            .chars()
            .take(600)
            .collect::<String>()
    );
    ensure!(
        query_param(&landed, "state").as_deref() == Some("st-b") && query_param(&landed, "error").is_none(),
        "the app's state comes back, no error: {landed}"
    );
    let code = query_param(&landed, "code").ok_or_else(|| anyhow!("no code in {landed}"))?;
    ensure!(
        cb.requests().iter().any(|l| l.contains(&enc(&code))),
        "the callback server never saw the code: {:?}",
        cb.requests()
    );
    ensure!(
        idp.authorize_requests().len() == 1 && idp.token_requests().len() == 1,
        "one trip through the provider: {} authorize, {} token",
        idp.authorize_requests().len(),
        idp.token_requests().len()
    );
    println!("  ok: landed on {landed}");

    let a3 = fx.api_addrs[2].clone();
    let form = format!(
        "grant_type=authorization_code&client_id={client_id}&code={}&redirect_uri={}&code_verifier={}",
        enc(&code),
        enc(&cb.url),
        enc(&verifier)
    );
    let r = fetch("POST", &format!("http://{a3}/{pool}/oauth2/token"), Some(&form)).await?;
    ensure!(r.status == 200, "the exchange on node 3: {} {}", r.status, r.body);
    let t: Value = serde_json::from_str(&r.body).with_context(|| r.body.clone())?;
    let (_, jwks) = fetch_jwks(&fx.api_addrs[0], &pool).await?;
    let claims = verify_with_jwks(
        t["id_token"].as_str().unwrap_or_default(),
        &jwks,
        &fx.issuer,
        Some(&client_id),
    )?;
    ensure!(
        claims["cognito:username"] == "Corp_browser-1" && claims["name"] == "Bea Browser" && claims["nonce"] == "n-b",
        "the id token: {claims}"
    );
    println!("  ok: the id token names {}", claims["cognito:username"]);
    Ok(())
}
