//! Issue 14, the hosted page's remaining screens over HTTP on a real
//! three-node cluster: sign-up with confirmation by code (which signs the
//! new user in and lands on the app's callback with a code), forgot
//! password, `MFA_SETUP` (an authenticator enrolled from the secret shown
//! as text), `SELECT_MFA_TYPE`, and sign-in without a password
//! (`USER_AUTH`, `SELECT_CHALLENGE`, an emailed code). Each step of a "browser" goes to
//! another node than the step before, with only its cookies and the forms'
//! hidden fields carried, as a browser would. Codes are read from the
//! courier's outbox; the callback's code is exchanged at the token
//! endpoint and the id token verified against the pool's JWKS. Every new
//! route refuses a post without the CSRF cookie. `sign_up_in_a_browser`
//! signs up and confirms in headless Chromium, landing on a real loopback
//! callback, with screenshots under
//! `$CARGO_TARGET_DIR/tmp/screenshots/sign_up_in_a_browser/`.
//!
//! Run with: `cargo test --features failpoints --test hosted_pages -- --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use common::auth::{fetch_jwks, status_err, verify_with_jwks, Fixture, PoolSpec};
use common::http::{enc, hidden, query_param, request, unescape, Answer, CallbackServer, FORM};
use common::totp::Authenticator;
use common::{poll_until, TestCluster};
use serde_json::Value;
use tessera::proto::*;

const CALLBACK: &str = "https://app.example.com/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const PASSWORD: &str = "Correct-Horse-9";

/// What these tests read off an answer beyond `common::http`'s.
trait PageAnswer {
    /// The `Location` of a 303 to the callback.
    fn callback(&self) -> Option<String>;
}

impl PageAnswer for Answer {
    fn callback(&self) -> Option<String> {
        let loc = self.header("location")?;
        (self.status == 303 && loc.starts_with(&format!("{CALLBACK}?"))).then_some(loc)
    }
}

/// The text of the element with `id` (up to its first `<`).
fn text_of(html: &str, id: &str) -> Option<String> {
    let marker = format!("id=\"{id}\">");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('<')?;
    Some(unescape(&html[start..start + end]))
}

/// A browser: its cookies, the page it shows, and the nodes it is sent
/// to in turn (each post goes to the next node).
struct Browser {
    addrs: Vec<String>,
    turn: usize,
    cookies: BTreeMap<String, String>,
    page: String,
}

impl Browser {
    fn new(addrs: &[String]) -> Self {
        Browser {
            addrs: addrs.to_vec(),
            turn: 0,
            cookies: BTreeMap::new(),
            page: String::new(),
        }
    }

    fn next_addr(&mut self) -> String {
        self.turn += 1;
        self.addrs[self.turn % self.addrs.len()].clone()
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, a: &Answer) {
        for (k, v) in a.cookies() {
            if v.is_empty() {
                self.cookies.remove(&k);
            } else {
                self.cookies.insert(k, v);
            }
        }
        if a.status != 303 {
            self.page = a.body.clone();
        }
    }

    async fn get(&mut self, path: &str) -> Result<Answer> {
        let addr = self.next_addr();
        let cookie = self.cookie_header();
        let a = request(&addr, "GET", path, &[("Cookie", &cookie)], "").await?;
        self.keep(&a);
        Ok(a)
    }

    /// Posts the form of the current page whose action is `action`, with
    /// its hidden fields (the first form with that action that has
    /// `must_have`, if given) and `fields`, to the next node.
    async fn submit(&mut self, action: &str, must_have: Option<&str>, fields: &[(&str, &str)]) -> Result<Answer> {
        let form = form_with(&self.page, action, must_have)?;
        let mut body: Vec<(String, String)> = hidden_fields(&form);
        for (k, v) in fields {
            body.retain(|(n, _)| n != k);
            body.push((k.to_string(), v.to_string()));
        }
        let text = body
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let addr = self.next_addr();
        let cookie = self.cookie_header();
        let a = request(&addr, "POST", action, &[FORM, ("Cookie", &cookie)], &text).await?;
        self.keep(&a);
        Ok(a)
    }
}

/// The HTML of the first form posting to `action` (containing `must_have`).
fn form_with(page: &str, action: &str, must_have: Option<&str>) -> Result<String> {
    let marker = format!("action=\"{action}\"");
    let mut rest = page;
    while let Some(i) = rest.find(&marker) {
        let after = &rest[i..];
        let end = after.find("</form>").unwrap_or(after.len());
        let form = &after[..end];
        if must_have.is_none_or(|m| form.contains(m)) {
            return Ok(form.to_string());
        }
        rest = &after[end..];
    }
    Err(anyhow!("no form to {action} ({must_have:?}) on the page: {page:.800}"))
}

/// The hidden inputs of a form, in order.
fn hidden_fields(form: &str) -> Vec<(String, String)> {
    form.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|s| {
            let name = s.strip_prefix("name=\"")?.split('"').next()?.to_string();
            let value = hidden(&format!("<input {s}"), &name).ok()?;
            Some((name, value))
        })
        .collect()
}

/// The app the pages sign in to.
struct App {
    fx: Fixture,
    client_id: String,
}

impl App {
    fn authorize_path(&self) -> String {
        format!(
            "/{}/oauth2/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid+email&state=st-1&nonce=n-1&code_challenge={CHALLENGE}&code_challenge_method=S256",
            self.fx.pool_id,
            self.client_id,
            enc(CALLBACK)
        )
    }

    /// A browser showing the sign-in form.
    async fn browser(&self) -> Result<Browser> {
        let mut b = Browser::new(&self.fx.api_addrs);
        let a = b.get(&self.authorize_path()).await?;
        ensure!(a.status == 200, "the sign-in page: {} {:.300}", a.status, a.body);
        Ok(b)
    }

    /// Exchanges the callback's code on node 3 and verifies the id token;
    /// returns its claims.
    async fn exchange(&self, location: &str) -> Result<Value> {
        ensure!(
            query_param(location, "state").as_deref() == Some("st-1"),
            "the state comes back: {location}"
        );
        let code = query_param(location, "code").ok_or_else(|| anyhow!("no code in {location}"))?;
        let body = format!(
            "grant_type=authorization_code&client_id={}&code={}&redirect_uri={}&code_verifier={VERIFIER}",
            self.client_id,
            enc(&code),
            enc(CALLBACK)
        );
        let a3 = &self.fx.api_addrs[2];
        let a = request(
            a3,
            "POST",
            &format!("/{}/oauth2/token", self.fx.pool_id),
            &[FORM],
            &body,
        )
        .await?;
        ensure!(a.status == 200, "the exchange: {} {}", a.status, a.body);
        let t: Value = serde_json::from_str(&a.body)?;
        let (_, jwks) = fetch_jwks(&self.fx.api_addrs[0], &self.fx.pool_id).await?;
        verify_with_jwks(
            t["id_token"].as_str().unwrap_or_default(),
            &jwks,
            &self.fx.issuer,
            Some(&self.client_id),
        )
    }

    /// Signs in on the page with a password; the answer to the post.
    async fn sign_in(&self, b: &mut Browser, username: &str, password: &str) -> Result<Answer> {
        let login = format!("/{}/login", self.fx.pool_id);
        b.submit(
            &login,
            Some("name=\"password\""),
            &[("username", username), ("password", password)],
        )
        .await
    }
}

/// A code-flow client of `fx`'s pool with `flows` as its explicit auth flows.
async fn oauth_client(fx: &Fixture, name: &str, flows: &[&str]) -> Result<String> {
    let n2 = fx.node(2);
    Ok(n2
        .admin()
        .create_user_pool_client(n2.req(CreateUserPoolClientRequest {
            user_pool_id: fx.pool_id.clone(),
            client_name: name.into(),
            allowed_oauth_flows_user_pool_client: true,
            allowed_oauth_flows: vec!["code".into()],
            allowed_oauth_scopes: vec!["openid".into(), "email".into()],
            callback_urls: vec![CALLBACK.into()],
            explicit_auth_flows: flows.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        }))
        .await
        .map_err(status_err("CreateUserPoolClient"))?
        .into_inner()
        .user_pool_client
        .ok_or_else(|| anyhow!("no client"))?
        .client_id)
}

async fn make_app(c: &TestCluster) -> Result<App> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "pages",
            ..Default::default()
        },
    )
    .await?;
    let n2 = fx.node(2);
    let app = n2
        .admin()
        .create_user_pool_client(n2.req(CreateUserPoolClientRequest {
            user_pool_id: fx.pool_id.clone(),
            client_name: "spa".into(),
            allowed_oauth_flows_user_pool_client: true,
            allowed_oauth_flows: vec!["code".into()],
            allowed_oauth_scopes: vec!["openid".into(), "email".into()],
            callback_urls: vec![CALLBACK.into()],
            prevent_user_existence_errors: "ENABLED".into(),
            ..Default::default()
        }))
        .await
        .map_err(status_err("CreateUserPoolClient spa"))?
        .into_inner()
        .user_pool_client
        .ok_or_else(|| anyhow!("no client"))?;
    let app = App {
        fx,
        client_id: app.client_id,
    };
    let path = app.authorize_path();
    for addr in app.fx.api_addrs.clone() {
        poll_until(
            "every node knows the client",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async { Ok((request(&addr, "GET", &path, &[], "").await?.status == 200).then_some(())) },
        )
        .await?;
    }
    Ok(app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_forgot_password_and_mfa_on_the_hosted_page() {
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = body(&c).await;
    c.finish(r);
}

async fn body(c: &TestCluster) -> Result<()> {
    let app = make_app(c).await?;
    csrf_is_checked_on_every_new_route(&app).await?;
    sign_up_and_confirm(&app).await?;
    forgot_password(&app).await?;
    mfa_setup_and_select(&app).await?;
    passwordless(app).await
}

/// Each new route answers a post without the CSRF cookie with 403 and
/// nothing else; with the cookie, the same post goes through.
async fn csrf_is_checked_on_every_new_route(app: &App) -> Result<()> {
    let pool = &app.fx.pool_id;
    for route in ["signup", "confirm", "forgot", "reset", "challenge"] {
        let mut b = app.browser().await?;
        let form = form_with(&b.page, &format!("/{pool}/login"), None)?;
        let mut fields = hidden_fields(&form);
        fields.push(("username".into(), "nobody".into()));
        let text = fields
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let addr = b.next_addr();
        let a = request(&addr, "POST", &format!("/{pool}/{route}"), &[FORM], &text).await?;
        ensure!(
            a.status == 403 && a.header("location").is_none() && !a.body.contains("<form"),
            "POST /{route} without the CSRF cookie: {} {:.300}",
            a.status,
            a.body
        );
        let cookie = b.cookie_header();
        let a = request(
            &addr,
            "POST",
            &format!("/{pool}/{route}"),
            &[FORM, ("Cookie", &cookie)],
            &text,
        )
        .await?;
        ensure!(
            a.status != 403,
            "POST /{route} with the cookie is not refused as a forgery: {} {:.300}",
            a.status,
            a.body
        );
        println!(
            "  ok: POST /{route} without the CSRF cookie -> 403; with it -> {}",
            a.status
        );
    }
    Ok(())
}

async fn sign_up_and_confirm(app: &App) -> Result<()> {
    let pool = app.fx.pool_id.clone();
    let signup = format!("/{pool}/signup");
    let confirm = format!("/{pool}/confirm");
    let mut b = app.browser().await?;
    let a = b.submit(&signup, None, &[]).await?;
    ensure!(
        a.status == 200 && a.body.contains("name=\"attr.email\"") && a.body.contains("id=\"sign-up\""),
        "the sign-up link shows the form with the pool's email field: {} {:.600}",
        a.status,
        a.body
    );
    // A password the policy refuses: the error, and what was typed kept.
    let a = b
        .submit(
            &signup,
            Some("name=\"password\""),
            &[
                ("username", "zoe"),
                ("password", "short"),
                ("attr.email", "zoe@example.com"),
            ],
        )
        .await?;
    ensure!(
        a.status == 200
            && a.body.contains("errorMessage-customizable")
            && a.body.contains("value=\"zoe@example.com\"")
            && a.body.contains("value=\"zoe\""),
        "a weak password is refused on the form, which keeps the input: {:.800}",
        a.body
    );
    ensure!(
        app.fx.outbox_messages(1, "zoe", "CONFIRM_SIGN_UP").await?.is_empty(),
        "a refused sign-up sent no code"
    );
    println!("  ok: a weak password is refused on the sign-up form, input kept");
    let a = b
        .submit(
            &signup,
            Some("name=\"password\""),
            &[
                ("username", "zoe"),
                ("password", PASSWORD),
                ("attr.email", "zoe@example.com"),
            ],
        )
        .await?;
    ensure!(
        a.status == 200 && a.body.contains("id=\"confirm\"") && !a.body.contains(PASSWORD),
        "sign-up shows the confirmation form, and the password is not on it in the clear: {:.800}",
        a.body
    );
    let note = text_of(&a.body, "note").unwrap_or_default();
    ensure!(note.contains("z***@e"), "the page says where the code went: {note}");
    let code = app.fx.confirmation_code(1, "zoe").await?;
    println!("  ok: zoe signed up on the page; the code went to {note}");

    // A wrong code: the error, and zoe is not confirmed.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let a = b.submit(&confirm, Some("name=\"code\""), &[("code", wrong)]).await?;
    ensure!(
        a.status == 200 && a.body.contains("errorMessage-customizable") && a.body.contains("id=\"confirm\""),
        "a wrong code shows the form again with the error: {} {:.600}",
        a.status,
        a.body
    );
    let u = app
        .fx
        .node(2)
        .admin()
        .admin_get_user(app.fx.node(2).req(AdminGetUserRequest {
            user_pool_id: pool.clone(),
            username: "zoe".into(),
            ..Default::default()
        }))
        .await
        .map_err(status_err("AdminGetUser zoe"))?
        .into_inner();
    ensure!(
        u.user_status == "UNCONFIRMED",
        "a wrong code confirms nothing: {}",
        u.user_status
    );
    println!("  ok: a wrong confirmation code is refused on the page; zoe stays UNCONFIRMED");

    // A new code, then the right one: signed in, back to the app.
    let a = b.submit(&confirm, Some("name=\"resend\""), &[]).await?;
    ensure!(
        a.status == 200 && a.body.contains("id=\"note\""),
        "resend: {:.400}",
        a.body
    );
    let newer = app.fx.outbox_after(1, "zoe", "CONFIRM_SIGN_UP", 1).await?.code;
    let a = b.submit(&confirm, Some("name=\"code\""), &[("code", &newer)]).await?;
    let loc = a
        .callback()
        .ok_or_else(|| anyhow!("the confirmation lands on the callback: {} {:.600}", a.status, a.body))?;
    ensure!(
        b.cookies.contains_key("tessera_session"),
        "the confirmation signs in (session cookie)"
    );
    let claims = app.exchange(&loc).await?;
    ensure!(
        claims["cognito:username"] == "zoe" && claims["email"] == "zoe@example.com" && claims["nonce"] == "n-1",
        "the id token names the new user: {claims}"
    );
    println!("  ok: confirmed with the resent code, signed in, code exchanged for zoe's id token");

    // The same username again.
    let mut b = app.browser().await?;
    b.submit(&signup, None, &[]).await?;
    let a = b
        .submit(
            &signup,
            Some("name=\"password\""),
            &[
                ("username", "zoe"),
                ("password", PASSWORD),
                ("attr.email", "z2@example.com"),
            ],
        )
        .await?;
    ensure!(
        a.status == 200 && a.body.contains("errorMessage-customizable") && a.body.contains("id=\"sign-up\""),
        "an existing username errors on the sign-up form: {:.600}",
        a.body
    );
    println!("  ok: signing up an existing username shows the error on the form");

    // An unconfirmed user signing in is taken to the confirmation form.
    let mut b = app.browser().await?;
    b.submit(&signup, None, &[]).await?;
    b.submit(
        &signup,
        Some("name=\"password\""),
        &[
            ("username", "yan"),
            ("password", PASSWORD),
            ("attr.email", "yan@example.com"),
        ],
    )
    .await?;
    let mut b = app.browser().await?;
    let a = app.sign_in(&mut b, "yan", PASSWORD).await?;
    ensure!(
        a.status == 200 && a.body.contains("id=\"confirm\""),
        "an unconfirmed user's sign-in goes to the confirmation form: {:.600}",
        a.body
    );
    let code = app.fx.outbox_after(1, "yan", "CONFIRM_SIGN_UP", 1).await?.code;
    let a = b.submit(&confirm, Some("name=\"code\""), &[("code", &code)]).await?;
    let loc = a
        .callback()
        .ok_or_else(|| anyhow!("yan lands on the callback: {} {:.600}", a.status, a.body))?;
    let claims = app.exchange(&loc).await?;
    ensure!(claims["cognito:username"] == "yan", "{claims}");
    println!("  ok: an unconfirmed user signing in confirms on the page and lands on the callback");
    Ok(())
}

async fn forgot_password(app: &App) -> Result<()> {
    let pool = app.fx.pool_id.clone();
    let forgot = format!("/{pool}/forgot");
    let reset = format!("/{pool}/reset");
    app.fx.confirmed_user(1, "fay", PASSWORD, "fay@example.com").await?;
    let mut b = app.browser().await?;
    let a = b.submit(&forgot, None, &[]).await?;
    ensure!(
        a.status == 200 && a.body.contains("id=\"send-code\""),
        "{:.400}",
        a.body
    );
    let a = b
        .submit(&forgot, Some("name=\"username\""), &[("username", "fay")])
        .await?;
    ensure!(a.status == 200 && a.body.contains("id=\"reset\""), "{:.400}", a.body);
    let known_note = text_of(&a.body, "note").unwrap_or_default();
    let code = app.fx.code(1, "fay", "FORGOT_PASSWORD").await?;
    // A wrong code: the error, nothing changed.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let a = b
        .submit(
            &reset,
            Some("name=\"code\""),
            &[("code", wrong), ("password", "New-Horse-77")],
        )
        .await?;
    ensure!(
        a.status == 200 && a.body.contains("errorMessage-customizable") && a.body.contains("id=\"reset\""),
        "a wrong reset code: {:.400}",
        a.body
    );
    let a = b
        .submit(
            &reset,
            Some("name=\"code\""),
            &[("code", &code), ("password", "New-Horse-77")],
        )
        .await?;
    ensure!(
        a.status == 200 && a.body.contains("id=\"sign-in\"") && a.body.contains("id=\"note\""),
        "after the reset, the sign-in form with a note: {:.600}",
        a.body
    );
    let a = app.sign_in(&mut b, "fay", PASSWORD).await?;
    ensure!(
        a.status == 200 && a.callback().is_none() && a.body.contains("errorMessage-customizable"),
        "the old password fails: {} {:.300}",
        a.status,
        a.body
    );
    let a = app.sign_in(&mut b, "fay", "New-Horse-77").await?;
    let loc = a
        .callback()
        .ok_or_else(|| anyhow!("the new password signs in: {} {:.400}", a.status, a.body))?;
    ensure!(app.exchange(&loc).await?["cognito:username"] == "fay");
    println!("  ok: forgot password on the page: code, reset, old password refused, new one signs in");

    // An unknown user (PreventUserExistenceErrors): the same answer.
    let mut b = app.browser().await?;
    b.submit(&forgot, None, &[]).await?;
    let a = b
        .submit(&forgot, Some("name=\"username\""), &[("username", "nobody-here")])
        .await?;
    let unknown_note = text_of(&a.body, "note").unwrap_or_default();
    ensure!(
        a.status == 200 && a.body.contains("id=\"reset\"") && !unknown_note.is_empty(),
        "an unknown user gets the reset form too: {:.400}",
        a.body
    );
    println!("  ok: an unknown username gets the same form ({known_note:?} / {unknown_note:?})");
    Ok(())
}

async fn set_mfa(app: &App, mfa: &str, email: bool) -> Result<()> {
    let n = app.fx.node(1);
    n.admin()
        .set_user_pool_mfa_config(n.req(SetUserPoolMfaConfigRequest {
            user_pool_id: app.fx.pool_id.clone(),
            software_token_mfa_configuration: Some(SoftwareTokenMfaConfigType { enabled: true }),
            email_mfa_configuration: email.then(|| EmailMfaConfigType {
                message: "Code {####}".into(),
                subject: "Your code".into(),
            }),
            mfa_configuration: mfa.into(),
            ..Default::default()
        }))
        .await
        .map_err(status_err("SetUserPoolMfaConfig"))?;
    Ok(())
}

async fn mfa_setup_and_select(app: &App) -> Result<()> {
    let pool = app.fx.pool_id.clone();
    let challenge = format!("/{pool}/challenge");
    app.fx.confirmed_user(1, "max", PASSWORD, "max@example.com").await?;
    set_mfa(app, "ON", false).await?;
    // Every node must see the pool's MFA setting before the sign-in.
    let (mut b, a) = poll_until(
        "the MFA_SETUP step",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let mut b = app.browser().await?;
            let a = app.sign_in(&mut b, "max", PASSWORD).await?;
            Ok(a.body.contains("id=\"setup\"").then_some((b, a)))
        },
    )
    .await?;
    ensure!(
        a.status == 200 && a.body.contains("id=\"setup\""),
        "MFA_SETUP intro: {:.600}",
        a.body
    );
    let a = b
        .submit(&challenge, Some("name=\"step\" value=\"associate\""), &[])
        .await?;
    let secret = text_of(&a.body, "secret").ok_or_else(|| anyhow!("no secret on the page: {:.800}", a.body))?;
    let uri = text_of(&a.body, "uri").unwrap_or_default();
    ensure!(
        uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={secret}")) && !a.body.contains("<script"),
        "the secret and its otpauth URI are shown as text, without script: {uri}"
    );
    let mut phone = Authenticator::from_secret_code(&secret)?;
    // A wrong code: the same secret shown again with the error.
    let a = b
        .submit(&challenge, Some("value=\"verify\""), &[("answer", &phone.wrong_code())])
        .await?;
    ensure!(
        a.status == 200
            && a.body.contains("errorMessage-customizable")
            && text_of(&a.body, "secret").as_deref() == Some(secret.as_str()),
        "a wrong first code: the form again with the same secret: {:.600}",
        a.body
    );
    let code = phone.fresh_code().await;
    let a = b
        .submit(&challenge, Some("value=\"verify\""), &[("answer", &code)])
        .await?;
    let loc = a
        .callback()
        .ok_or_else(|| anyhow!("MFA_SETUP completes the sign-in: {} {:.600}", a.status, a.body))?;
    ensure!(app.exchange(&loc).await?["cognito:username"] == "max");
    println!("  ok: MFA_SETUP on the page: secret shown as text, first code verified, signed in");

    // Next sign-in: the authenticator's code.
    let mut b = app.browser().await?;
    let a = app.sign_in(&mut b, "max", PASSWORD).await?;
    ensure!(
        a.body.contains("value=\"SOFTWARE_TOKEN_MFA\""),
        "the enrolled user is asked for a TOTP code: {:.600}",
        a.body
    );
    let code = phone.fresh_code().await;
    let a = b
        .submit(&challenge, Some("name=\"answer\""), &[("answer", &code)])
        .await?;
    ensure!(a.callback().is_some(), "TOTP answered: {} {:.400}", a.status, a.body);

    // SELECT_MFA_TYPE: the authenticator and email both enabled, neither
    // preferred.
    set_mfa(app, "OPTIONAL", true).await?;
    let t = sign_in_api_with_totp(app, "max", &mut phone).await?;
    app.fx
        .node(1)
        .auth()
        .set_user_mfa_preference(SetUserMfaPreferenceRequest {
            software_token_mfa_settings: Some(SoftwareTokenMfaSettingsType {
                enabled: true,
                preferred_mfa: false,
            }),
            email_mfa_settings: Some(EmailMfaSettingsType {
                enabled: true,
                preferred_mfa: false,
            }),
            access_token: t,
            ..Default::default()
        })
        .await
        .map_err(status_err("SetUserMFAPreference"))?;
    let (mut b, a) = poll_until(
        "the SELECT_MFA_TYPE step",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let mut b = app.browser().await?;
            let a = app.sign_in(&mut b, "max", PASSWORD).await?;
            Ok(a.body.contains("value=\"SELECT_MFA_TYPE\"").then_some((b, a)))
        },
    )
    .await?;
    ensure!(
        a.body.contains("id=\"factor-SOFTWARE_TOKEN_MFA\"") && a.body.contains("id=\"factor-EMAIL_OTP\""),
        "both factors are offered: {:.800}",
        a.body
    );
    let a = b
        .submit(&challenge, Some("name=\"choices\""), &[("answer", "EMAIL_OTP")])
        .await?;
    ensure!(
        a.body.contains("value=\"EMAIL_OTP\"") && a.body.contains("name=\"answer\""),
        "choosing email asks for the emailed code: {:.600}",
        a.body
    );
    let m = app.fx.outbox_message(2, "max", "SIGN_IN_CODE").await?;
    let a = b
        .submit(&challenge, Some("name=\"answer\""), &[("answer", &m.code)])
        .await?;
    let loc = a
        .callback()
        .ok_or_else(|| anyhow!("the emailed code signs in: {} {:.400}", a.status, a.body))?;
    ensure!(app.exchange(&loc).await?["cognito:username"] == "max");
    println!("  ok: SELECT_MFA_TYPE on the page: both factors offered, email chosen, its code signs in");
    Ok(())
}

/// Sign-in without a password (`USER_AUTH`): offered only to a client
/// that allows it; the choice of first factor, then the emailed code.
async fn passwordless(app: App) -> Result<()> {
    let pool = app.fx.pool_id.clone();
    app.fx.set_sign_in_policy(1, &["PASSWORD", "EMAIL_OTP"], 0).await?;
    app.fx.confirmed_user(1, "pia", PASSWORD, "pia@example.com").await?;
    let without = oauth_client(&app.fx, "no-user-auth", &["ALLOW_USER_PASSWORD_AUTH"]).await?;
    let with = oauth_client(&app.fx, "user-auth", &["ALLOW_USER_AUTH", "ALLOW_USER_PASSWORD_AUTH"]).await?;
    let app = App {
        client_id: without,
        ..app
    };
    let path = app.authorize_path();
    for addr in app.fx.api_addrs.clone() {
        poll_until(
            "every node knows the client",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async { Ok((request(&addr, "GET", &path, &[], "").await?.status == 200).then_some(())) },
        )
        .await?;
    }
    let b = app.browser().await?;
    ensure!(
        !b.page.contains("id=\"passwordless\""),
        "a client without ALLOW_USER_AUTH is offered no passwordless sign-in"
    );
    let app = App { client_id: with, ..app };
    let path = app.authorize_path();
    for addr in app.fx.api_addrs.clone() {
        poll_until(
            "every node knows the client",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async { Ok((request(&addr, "GET", &path, &[], "").await?.status == 200).then_some(())) },
        )
        .await?;
    }
    let login = format!("/{pool}/login");
    let challenge = format!("/{pool}/challenge");
    let (mut b, a) = poll_until(
        "the SELECT_CHALLENGE step",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let mut b = app.browser().await?;
            let a = b
                .submit(
                    &login,
                    Some("id=\"passwordless\""),
                    &[("username", "pia"), ("step", "passwordless")],
                )
                .await?;
            Ok(a.body.contains("value=\"SELECT_CHALLENGE\"").then_some((b, a)))
        },
    )
    .await?;
    ensure!(
        a.body.contains("id=\"factor-EMAIL_OTP\"") && !a.body.contains("id=\"factor-SMS_OTP\""),
        "the pool's code factor is offered, and only it: {:.800}",
        a.body
    );
    let a = b
        .submit(&challenge, Some("name=\"choices\""), &[("answer", "EMAIL_OTP")])
        .await?;
    ensure!(
        a.body.contains("value=\"EMAIL_OTP\"") && a.body.contains("name=\"answer\""),
        "choosing email asks for the emailed code: {:.600}",
        a.body
    );
    let m = app.fx.outbox_message(2, "pia", "SIGN_IN_CODE").await?;
    let wrong = if m.code.starts_with('0') {
        "11111111"
    } else {
        "00000000"
    };
    let a = b
        .submit(&challenge, Some("name=\"answer\""), &[("answer", wrong)])
        .await?;
    ensure!(
        a.callback().is_none() && a.body.contains("errorMessage-customizable"),
        "a wrong code: {} {:.400}",
        a.status,
        a.body
    );
    let a = b
        .submit(&challenge, Some("name=\"answer\""), &[("answer", &m.code)])
        .await?;
    let loc = a
        .callback()
        .ok_or_else(|| anyhow!("the emailed code signs in: {} {:.400}", a.status, a.body))?;
    ensure!(app.exchange(&loc).await?["cognito:username"] == "pia");
    println!("  ok: passwordless on the page: offered only with ALLOW_USER_AUTH, EMAIL_OTP chosen, code signs in");
    Ok(())
}

/// An access token for `username` through the API (password, then TOTP).
async fn sign_in_api_with_totp(app: &App, username: &str, phone: &mut Authenticator) -> Result<String> {
    let r = app
        .fx
        .password_auth(1, username, PASSWORD)
        .await
        .map_err(status_err("USER_PASSWORD_AUTH"))?;
    ensure!(r.challenge_name == "SOFTWARE_TOKEN_MFA", "{r:?}");
    let code = phone.fresh_code().await;
    let t = app
        .fx
        .node(2)
        .auth()
        .respond_to_auth_challenge(RespondToAuthChallengeRequest {
            client_id: app.fx.client_id.clone(),
            challenge_name: "SOFTWARE_TOKEN_MFA".into(),
            session: r.session,
            challenge_responses: [
                ("USERNAME".to_string(), username.to_string()),
                ("SOFTWARE_TOKEN_MFA_CODE".to_string(), code),
            ]
            .into_iter()
            .collect(),
        })
        .await
        .map_err(status_err("SOFTWARE_TOKEN_MFA"))?
        .into_inner();
    let access = t
        .authentication_result
        .map(|r| r.access_token)
        .context("no tokens after the TOTP answer")?;
    Ok(access)
}

// ----- the same sign-up in headless Chromium --------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_up_in_a_browser() {
    let (c, b) = tokio::join!(
        TestCluster::start(3),
        common::webdriver::Browser::start("sign_up_in_a_browser")
    );
    let c = c.expect("the cluster forms");
    let b = b.expect("headless Chromium starts under chromedriver");
    let r = browser_body(&c, &b).await;
    b.close_after(&r).await;
    c.finish(r);
}

/// Headless Chromium opens the authorize URL, follows the sign-up link,
/// signs up, types the code from the outbox, and lands on a real loopback
/// callback with a code that node 3 exchanges for the new user's tokens.
async fn browser_body(c: &TestCluster, b: &common::webdriver::Browser) -> Result<()> {
    const WAIT: Duration = Duration::from_secs(10);
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "pages-browser",
            ..Default::default()
        },
    )
    .await?;
    let cb = CallbackServer::start().await?;
    let n2 = fx.node(2);
    let client_id = n2
        .admin()
        .create_user_pool_client(n2.req(CreateUserPoolClientRequest {
            user_pool_id: fx.pool_id.clone(),
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
        .ok_or_else(|| anyhow!("no client"))?
        .client_id;
    let pool = fx.pool_id.clone();
    let path = format!(
        "/{pool}/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri={}\
         &scope=openid+email&state=st-b&nonce=n-b&code_challenge={CHALLENGE}&code_challenge_method=S256",
        enc(&cb.url)
    );
    let a1 = fx.api_addrs[0].clone();
    poll_until("node 1 knows the client", WAIT, Duration::from_millis(50), || async {
        Ok((request(&a1, "GET", &path, &[], "").await?.status == 200).then_some(()))
    })
    .await?;
    // Chromium keeps a Secure cookie on plain http only for a secure
    // context: 127.0.0.1 or else localhost.
    let port = a1.rsplit(':').next().unwrap_or_default().to_string();
    let mut opened = false;
    for host in [a1.clone(), format!("localhost:{port}")] {
        b.navigate(&format!("http://{host}{path}")).await?;
        b.wait_for("#signup-link", WAIT).await?;
        if b.cookies().await?.iter().any(|c| c.name == "tessera_csrf") {
            opened = true;
            break;
        }
    }
    ensure!(
        opened,
        "Chromium kept the CSRF cookie on neither 127.0.0.1 nor localhost"
    );
    b.screenshot("sign-in").await?;
    b.find("#signup-link").await?.click().await?;
    b.wait_for("#sign-up", WAIT).await?;
    b.screenshot("sign-up").await?;
    b.find("#username").await?.send_keys("bea").await?;
    b.find("#password").await?.send_keys(PASSWORD).await?;
    b.find("[name='attr.email']")
        .await?
        .send_keys("bea@example.com")
        .await?;
    b.find("#sign-up").await?.click().await?;
    b.wait_for("#confirm", WAIT).await?;
    b.screenshot("confirm").await?;
    let code = fx.confirmation_code(1, "bea").await?;
    b.find("#code").await?.send_keys(&code).await?;
    b.find("#confirm").await?.click().await?;
    let start = std::time::Instant::now();
    let landed = loop {
        let u = b.current_url().await?;
        if u.starts_with(&cb.url) || start.elapsed() >= WAIT {
            break u;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    b.screenshot("callback").await?;
    ensure!(
        landed.starts_with(&format!("{}?", cb.url)),
        "the browser did not land on the callback: {landed}"
    );
    let code = query_param(&landed, "code").ok_or_else(|| anyhow!("no code in {landed}"))?;
    let seen = cb.requests();
    ensure!(
        seen.iter().any(|l| l.contains(&format!("code={}", enc(&code)))),
        "the callback server never saw the code: {seen:?}"
    );
    let body = format!(
        "grant_type=authorization_code&client_id={client_id}&code={}&redirect_uri={}&code_verifier={VERIFIER}",
        enc(&code),
        enc(&cb.url)
    );
    let a = request(
        &fx.api_addrs[2],
        "POST",
        &format!("/{pool}/oauth2/token"),
        &[FORM],
        &body,
    )
    .await?;
    ensure!(a.status == 200, "the exchange on node 3: {} {}", a.status, a.body);
    let t: Value = serde_json::from_str(&a.body)?;
    let (_, jwks) = fetch_jwks(&a1, &pool).await?;
    let claims = verify_with_jwks(
        t["id_token"].as_str().unwrap_or_default(),
        &jwks,
        &fx.issuer,
        Some(&client_id),
    )?;
    ensure!(
        claims["cognito:username"] == "bea" && claims["email"] == "bea@example.com",
        "the id token names bea: {claims}"
    );
    println!(
        "  ok: signed up and confirmed in Chromium, landed on {landed}; screenshots in {}",
        b.artifacts().display()
    );
    Ok(())
}
