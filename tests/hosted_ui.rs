//! The pages a person opens in a browser, driven in headless Chromium over
//! WebDriver (`common::webdriver`) on real clusters: today the magic-link
//! confirmation page (issue 12), next the hosted sign-in page of issue 14.
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

/// The `<h1>` of the current page, once it is there.
async fn heading(b: &Browser) -> Result<String> {
    b.wait_for("h1", PAGE_WAIT).await?.text().await
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
