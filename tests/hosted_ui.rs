//! The pages a person opens in a browser, driven in headless Chromium over
//! WebDriver (`common::webdriver`) on real clusters: today the magic-link
//! confirmation page (issue 12) and the hosted sign-in page of the OAuth
//! authorization code flow (issue 14), with a TOTP step, ending on a real
//! callback server the test runs on loopback.
//!
//! Each test saves screenshots of the pages under
//! `$CARGO_TARGET_TMPDIR/screenshots/<test>/` and prints their paths.
//! What WebDriver cannot see (status codes, security headers) is checked
//! over raw HTTP beside it.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`make deps`).
//!
//! Run with: `cargo test --features failpoints --test hosted_ui -- --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use common::auth::*;
use common::directory::*;
use common::http::{enc, pkce_pair, query_param, CallbackServer};
use common::totp::Authenticator;
use common::webdriver::{fetch, split_url, unwrap_value, Browser, Fetched, WebDriverError};
use common::TestCluster;
use tessera::proto::*;
use tonic::Code;

/// Test bodies run one at a time: each starts a cluster and a browser.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const POOL_NAME: &str = "hosted-link";
const CONFIRM_BUTTON: &str = "form[method=post] button[type=submit]";
const REFUSED: &str = "This link cannot be used";
const APPROVED: &str = "You are signed in";
/// How long a page may take to show what a step expects.
const PAGE_WAIT: Duration = Duration::from_secs(10);

/// A cluster of `n` nodes and a browser, started side by side.
async fn cluster_and_browser(n: u64, test: &str) -> (TestCluster, Browser) {
    let started = Instant::now();
    let (c, b) = tokio::join!(TestCluster::start(n), Browser::start(test));
    let c = c.expect("the cluster forms");
    let b = b.expect("headless Chromium starts under chromedriver");
    println!("{n}-node cluster and browser ready in {:?}", started.elapsed());
    (c, b)
}

/// The `<h1>` of the current page, once it is there. A page replaced
/// between finding the heading and reading it (a stale element, while a
/// submitted form loads) is read again until the wait runs out.
async fn heading(b: &Browser) -> Result<String> {
    let start = Instant::now();
    loop {
        match b.wait_for("h1", PAGE_WAIT).await?.text().await {
            Ok(h) => return Ok(h),
            Err(e) if start.elapsed() >= PAGE_WAIT => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The `<h1>` of the page that replaces one headed `before` (a form just
/// submitted): polls until the heading differs, and returns `before` if it
/// never does, for the caller's check to fail on.
async fn heading_after(b: &Browser, before: &str) -> Result<String> {
    let start = Instant::now();
    loop {
        let h = heading(b).await?;
        if h != before || start.elapsed() >= PAGE_WAIT {
            return Ok(h);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks that a response of the magic-link pages forbids framing, both
/// ways a browser honours (clickjacking of the approve button).
fn forbids_framing(what: &str, r: &Fetched) -> Result<()> {
    let xfo = r.header("x-frame-options");
    ensure!(
        xfo.eq_ignore_ascii_case("DENY"),
        "{what}: X-Frame-Options is {xfo:?}, not DENY"
    );
    let csp = r.header("content-security-policy");
    ensure!(
        csp.split(';')
            .any(|d| d.split_whitespace().collect::<Vec<_>>() == ["frame-ancestors", "'none'"]),
        "{what}: the CSP {csp:?} has no frame-ancestors 'none'"
    );
    Ok(())
}

/// `link` with one character of its token changed (in the middle, where a
/// change cannot hide in the padding bits of the signature's last
/// character).
fn tampered(link: &str) -> Result<String> {
    let at = link.find("token=").ok_or_else(|| anyhow!("no token in {link}"))? + "token=".len();
    let mid = at + (link.len() - at) / 2;
    let (i, c) = link[mid..]
        .char_indices()
        .find(|(_, c)| c.is_ascii_alphanumeric())
        .map(|(i, c)| (mid + i, c))
        .ok_or_else(|| anyhow!("no letter to change in {link}"))?;
    let other = if c == 'A' { 'B' } else { 'A' };
    Ok(format!("{}{other}{}", &link[..i], &link[i + 1..]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn magic_link_approved_in_a_browser() {
    let _serial = SERIAL.lock().await;
    let (c, b) = cluster_and_browser(3, "magic_link_approved_in_a_browser").await;
    let r = magic_link_body(&c, &b).await;
    b.close_after(&r).await;
    c.finish(r);
}

/// A user who signs in with a magic link on a three-node cluster: the
/// device asks on node 2, the link (to node 2) is opened and approved in
/// the browser, the device collects its tokens on node 3, and the link
/// opened again on node 1 approves nothing.
async fn magic_link_body(c: &TestCluster, b: &Browser) -> Result<()> {
    let d = Dir::create(
        c,
        DirSpec {
            name: POOL_NAME,
            ..Default::default()
        },
    )
    .await?;
    let pool = d.set_sign_in_policy(1, &["PASSWORD", "MAGIC_LINK"], 0).await?;
    let factors = pool
        .policies
        .and_then(|p| p.sign_in_policy)
        .map(|p| p.allowed_first_auth_factors)
        .unwrap_or_default();
    ensure!(
        factors.iter().any(|f| f == "MAGIC_LINK"),
        "the sign-in policy does not allow MAGIC_LINK: {factors:?}"
    );
    let app = d
        .create_app_client(2, "browser-app", &["ALLOW_USER_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"])
        .await?;
    d.admin_create_user(
        1,
        "fay",
        &[("email", "fay@hosted.test"), ("email_verified", "true")],
        "Temp0rary-Pass!",
    )
    .await
    .map_err(status_err("AdminCreateUser fay"))?;
    let admin = d.node(1);
    admin
        .admin()
        .admin_set_user_password(admin.req(AdminSetUserPasswordRequest {
            user_pool_id: d.pool_id.clone(),
            username: "fay".into(),
            password: GOOD_PASSWORD.into(),
            permanent: true,
        }))
        .await
        .map_err(status_err("AdminSetUserPassword"))?;
    d.barrier_all().await?;
    let addr = |via: u64| d.api_addrs[(via - 1) as usize].clone();

    println!("the device asks for a magic link on node 2");
    let asked = d
        .user_auth_as(2, &app, "fay", Some("MAGIC_LINK"), &[])
        .await
        .map_err(status_err("USER_AUTH MAGIC_LINK"))?;
    ensure!(
        asked.challenge_name == "MAGIC_LINK" && !asked.session.is_empty(),
        "{asked:?}"
    );
    let link = d.outbox_after(1, "fay", "MAGIC_LINK", 0).await?.code;
    ensure!(
        link.starts_with(&format!("http://{}/{}/magic-link?token=", addr(2), d.pool_id)),
        "the link points at node 2's api port: {link}"
    );
    let poll = |via: u64| d.respond_as(via, &app, "MAGIC_LINK", &asked.session, &[("USERNAME", "fay")]);

    println!("a tampered link shows an error and no button");
    b.navigate(&tampered(&link)?).await?;
    let h = heading(b).await?;
    b.screenshot("tampered-link").await?;
    ensure!(h == REFUSED, "a tampered link shows {h:?}, not {REFUSED:?}");
    let buttons = b.find_all("button").await?;
    ensure!(buttons.is_empty(), "a tampered link offers {} button(s)", buttons.len());

    println!("the pages forbid framing (headers, over raw HTTP)");
    let form_page = fetch("GET", &link, None).await?;
    ensure!(
        form_page.status == 200 && form_page.body.contains("<form method=\"post\""),
        "GET of the link: {} {}",
        form_page.status,
        form_page.body
    );
    forbids_framing("the confirmation page", &form_page)?;
    let (authority, path) = split_url(&link)?;
    let post_path = path.split('?').next().unwrap_or_default();
    let refused = fetch(
        "POST",
        &format!("http://{authority}{post_path}"),
        Some("token=not-a-token"),
    )
    .await?;
    ensure!(
        refused.status == 400 && refused.body.contains(REFUSED),
        "POST of a bogus token: {} {}",
        refused.status,
        refused.body
    );
    forbids_framing("the error page", &refused)?;
    expect_exception(
        "MAGIC_LINK before the button is clicked",
        poll(3).await,
        Code::FailedPrecondition,
        "MagicLinkNotApprovedException",
    )?;

    println!("the link opened in the browser shows the confirmation");
    b.navigate(&link).await?;
    let h = heading(b).await?;
    b.screenshot("confirmation").await?;
    ensure!(
        h == format!("Sign in to {POOL_NAME}"),
        "the confirmation page's heading is {h:?}"
    );
    let title = b.title().await?;
    ensure!(title == h, "the title {title:?} differs from the heading {h:?}");
    let text = b.find("body").await?.text().await?;
    ensure!(
        text.contains("Sign in as fay"),
        "the page does not name the user: {text:?}"
    );
    let cookies = b.cookies().await?;
    ensure!(
        cookies.is_empty(),
        "the magic-link page set cookies: {:?}",
        cookies.iter().map(|c| &c.name).collect::<Vec<_>>()
    );
    let button = b.find(CONFIRM_BUTTON).await?;
    let label = button.text().await?;
    ensure!(label == "Yes, sign me in", "the button says {label:?}");

    println!("approving with the button");
    button.click().await?;
    let h = heading_after(b, &h).await?;
    b.screenshot("approved").await?;
    ensure!(h == APPROVED, "after the click the page shows {h:?}, not {APPROVED:?}");
    let url = b.current_url().await?;
    ensure!(
        url.starts_with(&format!("http://{}/{}/magic-link", addr(2), d.pool_id)),
        "the form posted to {url}, not back to the link's node"
    );

    println!("the device collects its tokens on node 3");
    let t = poll(3).await.map_err(status_err("MAGIC_LINK collected on node 3"))?;
    let tokens = Tokens::from_result("MAGIC_LINK", t.authentication_result)?;
    let claims = peek_claims(&tokens.access_token)?;
    ensure!(
        claims["username"] == "fay" && claims["client_id"] == app.as_str(),
        "{claims}"
    );

    println!("the link opened again, on node 1, approves nothing");
    let again = link.replacen(&addr(2), &addr(1), 1);
    b.navigate(&again).await?;
    let mut h = heading(b).await?;
    b.screenshot("reopened").await?;
    match b.find(CONFIRM_BUTTON).await {
        Ok(button) => {
            // The GET only checks the token's signature (it must not
            // change anything), so a used link may still offer the
            // button: the POST must refuse it.
            println!("the used link still offers the button; clicking it");
            button.click().await?;
            h = heading_after(b, &h).await?;
            b.screenshot("second-approval").await?;
        }
        Err(e)
            if e.downcast_ref::<WebDriverError>()
                .is_some_and(WebDriverError::is_no_such_element) => {}
        Err(e) => return Err(e),
    }
    let text = b.find("body").await?.text().await?;
    ensure!(
        h == REFUSED && text.contains("already used"),
        "a used link shows {h:?}: {text:?}"
    );
    expect_exception(
        "MAGIC_LINK collected a second time",
        poll(1).await,
        Code::InvalidArgument,
        "ExpiredCodeException",
    )?;
    Ok(())
}

// ----- the OAuth authorization code flow (issue 14) -------------------------

const CODE_POOL: &str = "hosted-code";
const CSRF_COOKIE: &str = "tessera_csrf";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn code_flow_with_totp_in_a_browser() {
    let _serial = SERIAL.lock().await;
    let (c, b) = cluster_and_browser(3, "code_flow_with_totp_in_a_browser").await;
    let r = code_flow_body(&c, &b).await;
    b.close_after(&r).await;
    c.finish(r);
}

/// A user with TOTP signs in on the hosted page of node 1 in headless
/// Chromium: password, a wrong TOTP code (the page again with the error,
/// no redirect), a fresh code, and the browser lands on the app's
/// callback with a code and the state. Node 3 exchanges the code with the
/// PKCE verifier; the id token carries the nonce and the user.
async fn code_flow_body(c: &TestCluster, b: &Browser) -> Result<()> {
    let d = Dir::create(
        c,
        DirSpec {
            name: CODE_POOL,
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
            software_token_mfa_configuration: Some(SoftwareTokenMfaConfigType { enabled: true }),
            mfa_configuration: "OPTIONAL".into(),
            ..Default::default()
        }))
        .await
        .map_err(status_err("SetUserPoolMfaConfig OPTIONAL"))?
        .into_inner();
    ensure!(set.mfa_configuration == "OPTIONAL", "{set:?}");
    d.confirmed_user(1, "gus", GOOD_PASSWORD, "gus@hosted.test").await?;
    d.barrier_all().await?;

    println!("gus sets up TOTP (associate on node 1, verify and prefer on node 2)");
    let t = d.sign_in(1, "gus", GOOD_PASSWORD).await?;
    let assoc = d
        .node(1)
        .auth()
        .associate_software_token(AssociateSoftwareTokenRequest {
            access_token: t.access_token.clone(),
            session: String::new(),
        })
        .await
        .map_err(status_err("AssociateSoftwareToken"))?
        .into_inner();
    let mut phone = Authenticator {
        secret: common::totp::base32_decode(&assoc.secret_code)?,
        used: 0,
    };
    let code = phone.fresh_code().await;
    let v = d
        .node(2)
        .auth()
        .verify_software_token(VerifySoftwareTokenRequest {
            access_token: t.access_token.clone(),
            session: String::new(),
            user_code: code,
            friendly_device_name: "gus's phone".into(),
        })
        .await
        .map_err(status_err("VerifySoftwareToken"))?
        .into_inner();
    ensure!(v.status == "SUCCESS", "VerifySoftwareToken: {v:?}");
    d.node(2)
        .auth()
        .set_user_mfa_preference(SetUserMfaPreferenceRequest {
            software_token_mfa_settings: Some(SoftwareTokenMfaSettingsType {
                enabled: true,
                preferred_mfa: true,
            }),
            access_token: t.access_token.clone(),
            ..Default::default()
        })
        .await
        .map_err(status_err("SetUserMFAPreference"))?;

    let cb = CallbackServer::start().await?;
    println!("the app's callback listens at {}", cb.url);
    let n2 = d.node(2);
    let app = n2
        .admin()
        .create_user_pool_client(n2.req(CreateUserPoolClientRequest {
            user_pool_id: pool.clone(),
            client_name: "browser-spa".into(),
            allowed_oauth_flows_user_pool_client: true,
            allowed_oauth_flows: vec!["code".into()],
            allowed_oauth_scopes: vec!["openid".into(), "email".into()],
            callback_urls: vec![cb.url.clone()],
            ..Default::default()
        }))
        .await
        .map_err(status_err("CreateUserPoolClient browser-spa"))?
        .into_inner()
        .user_pool_client
        .ok_or_else(|| anyhow!("no client"))?;
    let client_id = app.client_id.clone();
    d.barrier_all().await?;

    let (a1, a3) = (d.api_addrs[0].clone(), d.api_addrs[2].clone());
    let (verifier, challenge) = pkce_pair();
    let state = format!("st-{}", rand::random::<u32>());
    let nonce = format!("n-{}", rand::random::<u32>());
    let authorize_path = format!(
        "/{pool}/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri={}\
         &scope=openid+email&state={state}&nonce={nonce}&code_challenge={challenge}&code_challenge_method=S256",
        enc(&cb.url)
    );

    // The Secure cookie on plain http: does Chromium keep it for
    // 127.0.0.1? If not, `localhost` (a secure context to Chromium).
    let port = a1.rsplit(':').next().unwrap_or_default().to_string();
    let mut host = None;
    for candidate in [a1.clone(), format!("localhost:{port}")] {
        let url = format!("http://{candidate}{authorize_path}");
        println!("the browser opens the authorize URL on node 1: {url}");
        b.navigate(&url).await?;
        b.wait_for("#username", PAGE_WAIT).await?;
        let cookies = b.cookies().await?;
        let csrf = cookies.iter().find(|c| c.name == CSRF_COOKIE);
        println!(
            "  cookies the browser holds on {candidate}: {:?}",
            cookies
                .iter()
                .map(|c| format!(
                    "{} secure={} httpOnly={} sameSite={:?} path={}",
                    c.name, c.secure, c.http_only, c.same_site, c.path
                ))
                .collect::<Vec<_>>()
        );
        match csrf {
            Some(c) => {
                ensure!(
                    c.secure && c.http_only && c.same_site.as_deref() == Some("Lax") && c.path == format!("/{pool}/"),
                    "the CSRF cookie as the browser holds it: {c:?}"
                );
                host = Some(candidate);
                break;
            }
            None => println!("  NOTE: Chromium did not store the Secure {CSRF_COOKIE} cookie on http://{candidate}"),
        }
    }
    let host = host.ok_or_else(|| anyhow!("Chromium stored the CSRF cookie on neither 127.0.0.1 nor localhost"))?;
    b.screenshot("sign-in-page").await?;
    let h = heading(b).await?;
    ensure!(!h.is_empty(), "the sign-in page has no heading");

    println!("username and password");
    b.find("#username").await?.send_keys("gus").await?;
    b.find("#password").await?.send_keys(GOOD_PASSWORD).await?;
    b.find("#sign-in").await?.click().await?;
    b.wait_for("#answer", PAGE_WAIT)
        .await
        .context("no TOTP page after the password")?;
    b.screenshot("totp-page").await?;
    let url = b.current_url().await?;
    ensure!(
        url == format!("http://{host}/{pool}/login"),
        "the TOTP page came from {url}, not the login post"
    );
    let label = b.find("label[for=answer]").await?.text().await?;
    println!("  the challenge page asks: {label:?}");
    let src = b.page_source().await?;
    ensure!(
        src.contains("value=\"SOFTWARE_TOKEN_MFA\""),
        "the challenge page is not the TOTP step: {src:.600}"
    );

    println!("attack: a wrong TOTP code shows the page again with the error");
    b.find("#answer").await?.send_keys(&phone.wrong_code()).await?;
    b.find("#continue").await?.click().await?;
    let err = b.wait_for(".error", PAGE_WAIT).await?.text().await?;
    b.screenshot("wrong-code").await?;
    let url = b.current_url().await?;
    ensure!(
        url == format!("http://{host}/{pool}/challenge") && !err.is_empty(),
        "a wrong code: at {url} with error {err:?}"
    );
    ensure!(
        cb.requests().is_empty(),
        "the callback was reached after a wrong code: {:?}",
        cb.requests()
    );
    b.find("#answer")
        .await
        .context("after a wrong code the challenge form must be shown again, not an error page")?;
    println!("  ok: {err:?}, still at {url}, no redirect");

    println!("a fresh TOTP code");
    let code = phone.fresh_code().await;
    b.find("#answer").await?.send_keys(&code).await?;
    b.find("#continue").await?.click().await?;
    let landed = url_when(b, |u| u.starts_with(&cb.url)).await?;
    b.screenshot("callback").await?;
    ensure!(
        landed.starts_with(&format!("{}?", cb.url)),
        "the browser did not land on the callback: {landed}"
    );
    ensure!(
        query_param(&landed, "state").as_deref() == Some(state.as_str()),
        "the state did not come back: {landed}"
    );
    let code = query_param(&landed, "code").ok_or_else(|| anyhow!("no code in {landed}"))?;
    ensure!(
        query_param(&landed, "error").is_none(),
        "an error on the callback: {landed}"
    );
    let page = heading(b).await?;
    ensure!(page == "Back in the app", "the callback page shows {page:?}");
    let hits = cb.requests();
    ensure!(
        hits.iter()
            .any(|l| l.starts_with("GET /cb?") && l.contains(&format!("code={}", enc(&code)))),
        "the callback server never saw the code: {hits:?}"
    );
    println!("  ok: landed on {landed}");

    println!("node 3 exchanges the code with the PKCE verifier");
    let token_url = format!("http://{a3}/{pool}/oauth2/token");
    let form = |v: &str| {
        format!(
            "grant_type=authorization_code&client_id={client_id}&code={}&redirect_uri={}&code_verifier={}",
            enc(&code),
            enc(&cb.url),
            enc(v)
        )
    };
    let bad = fetch("POST", &token_url, Some(&form(&pkce_pair().0))).await?;
    ensure!(
        bad.status == 400 && bad.body.contains("invalid_grant"),
        "another verifier: {} {}",
        bad.status,
        bad.body
    );
    let r = fetch("POST", &token_url, Some(&form(&verifier))).await?;
    ensure!(r.status == 200, "the exchange on node 3: {} {}", r.status, r.body);
    let t: serde_json::Value = serde_json::from_str(&r.body).with_context(|| r.body.clone())?;
    let id_token = t["id_token"].as_str().ok_or_else(|| anyhow!("no id_token: {t}"))?;
    let (_, jwks) = fetch_jwks(&a1, &pool).await?;
    let claims = verify_with_jwks(id_token, &jwks, &d.issuer, Some(&client_id))?;
    ensure!(
        claims["nonce"] == nonce.as_str()
            && claims["cognito:username"] == "gus"
            && claims["email"] == "gus@hosted.test",
        "the id token's nonce and user: {claims}"
    );
    let again = fetch("POST", &token_url, Some(&form(&verifier))).await?;
    ensure!(
        again.status == 400 && again.body.contains("invalid_grant"),
        "the code a second time: {} {}",
        again.status,
        again.body
    );
    println!(
        "  ok: id token for {} with nonce {}; the code is good once",
        claims["cognito:username"], claims["nonce"]
    );
    Ok(())
}

// ----- the harness's own pure parts ----------------------------------------

#[test]
fn urls_split_into_authority_and_path() {
    let split = |u: &str| split_url(u).map_err(|e| e.to_string());
    assert_eq!(
        split("http://127.0.0.1:9/a/b?token=x"),
        Ok(("127.0.0.1:9".to_string(), "/a/b?token=x".to_string()))
    );
    assert_eq!(
        split("http://127.0.0.1:9"),
        Ok(("127.0.0.1:9".to_string(), "/".to_string()))
    );
    assert_eq!(split("http://h:1?q=1"), Ok(("h:1".to_string(), "/?q=1".to_string())));
    assert!(split("https://h/").is_err());
    assert!(split("http:///x").is_err());
}

#[test]
fn driver_errors_keep_their_code_and_first_line() {
    let body = br#"{"value":{"error":"no such element","message":"no such element: Unable to locate\n  (Session info: chrome=1)","stacktrace":"0x1"}}"#;
    let e = unwrap_value("POST /x", http::StatusCode::NOT_FOUND, body).unwrap_err();
    let wd = e.downcast_ref::<WebDriverError>().expect("a WebDriverError");
    assert!(wd.is_no_such_element());
    assert_eq!(wd.message, "Unable to locate");
    assert_eq!(
        unwrap_value("GET /title", http::StatusCode::OK, br#"{"value":"t"}"#).unwrap(),
        serde_json::json!("t")
    );
    assert!(unwrap_value(
        "GET /title",
        http::StatusCode::INTERNAL_SERVER_ERROR,
        br#"{"value":null}"#
    )
    .is_err());
    assert!(unwrap_value("GET /title", http::StatusCode::OK, b"<html>").is_err());
}

#[test]
fn a_tampered_link_differs_in_its_token_only() -> Result<()> {
    let link = "http://127.0.0.1:1/p/magic-link?token=abc.DEFG.hij";
    let t = tampered(link).context("tampering")?;
    ensure!(t.len() == link.len() && t != link, "{t}");
    ensure!(t.starts_with("http://127.0.0.1:1/p/magic-link?token="), "{t}");
    Ok(())
}
