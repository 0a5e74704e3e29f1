//! Issue 14: the hosted page's branding and languages, on a real
//! three-node cluster.
//!
//! A pool-wide branding (colours, a logo, German and a hostile "French")
//! is made through node 1 with Cognito's `CreateManagedLoginBranding`; the
//! page on node 3 wears it, in the language the app's `lang` or the
//! browser's `Accept-Language` asks for, English otherwise, with every
//! loaded string escaped. A wrong password posted in German comes back in
//! German. A client's own branding overrides the pool's; the classic
//! `SetUICustomization` adds CSS. Then every bad input is refused with
//! `InvalidParameterException` and nothing stored: unknown string keys,
//! colours that are not hex, CSS that loads, breaks out or styles other
//! elements, oversized or unknown images. Deleting the client deletes its
//! branding on every node; deleting the pool's brings the built-in look
//! back.
//!
//! Run with: `cargo test --test branding -- --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use common::auth::{expect_exception, status_err, Fixture, PoolSpec};
use common::http::{enc, hidden, post, request, FORM};
use common::webdriver::Browser;
use common::{poll_until, TestCluster};
use tessera::proto::*;
use tonic::Code;

const CALLBACK: &str = "https://app.example.com/cb";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// The smallest valid PNG: a 1x1 transparent pixel.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0a, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

fn logo() -> AssetType {
    AssetType {
        category: "FORM_LOGO".into(),
        color_mode: "LIGHT".into(),
        extension: "PNG".into(),
        bytes: PNG.to_vec(),
        resource_id: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn branding_and_languages_on_three_nodes() {
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = body(&c).await;
    c.finish(r);
}

async fn body(c: &TestCluster) -> Result<()> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "branded",
            ..Default::default()
        },
    )
    .await?;
    let pool = fx.pool_id.clone();
    fx.confirmed_user(1, "ann", "Correct-Horse-9", "ann@example.com")
        .await?;
    let (n1, n2, n3) = (fx.node(1), fx.node(2), fx.node(3));
    let app = n2
        .admin()
        .create_user_pool_client(n2.req(CreateUserPoolClientRequest {
            user_pool_id: pool.clone(),
            client_name: "spa".into(),
            allowed_oauth_flows_user_pool_client: true,
            allowed_oauth_flows: vec!["code".into()],
            allowed_oauth_scopes: vec!["openid".into()],
            callback_urls: vec![CALLBACK.into()],
            ..Default::default()
        }))
        .await
        .map_err(status_err("CreateUserPoolClient spa"))?
        .into_inner()
        .user_pool_client
        .ok_or_else(|| anyhow!("no client"))?;
    let client_id = app.client_id.clone();
    let a3 = fx.api_addrs[2].clone();
    let authorize = |extra: &str| {
        format!(
            "/{pool}/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope=openid\
             &code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
            enc(CALLBACK)
        )
    };

    // The built-in look first.
    let plain = poll_until(
        "node 3 knows the client",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let a = request(&a3, "GET", &authorize(""), &[], "").await?;
            Ok((a.status == 200).then_some(a))
        },
    )
    .await?;
    ensure!(
        plain.body.contains("<title>Sign in</title>") && plain.body.contains("#0a66c2"),
        "the built-in page: {:.600}",
        plain.body
    );

    // A pool-wide branding through node 1.
    let settings = serde_json::json!({
        "colors": {"primary": "#123456", "background": "#fafafa"},
        "languages": {
            "de": {
                "signin.title": "Anmelden",
                "signin.submit": "Weiter",
                "signin.password": "Passwort",
                "error.NotAuthorizedException": "Benutzername oder Passwort ist falsch."
            },
            "fr": {"signin.title": "<script>alert(1)</script>"}
        }
    });
    let pool_branding = n1
        .admin()
        .create_managed_login_branding(n1.req(CreateManagedLoginBrandingRequest {
            user_pool_id: pool.clone(),
            client_id: "ALL".into(),
            settings_document: settings.to_string(),
            assets: vec![logo()],
            ..Default::default()
        }))
        .await
        .map_err(status_err("CreateManagedLoginBranding for the pool"))?
        .into_inner()
        .managed_login_branding
        .ok_or_else(|| anyhow!("no branding"))?;
    ensure!(
        !pool_branding.managed_login_branding_id.is_empty() && pool_branding.assets.len() == 1,
        "the branding as created: {pool_branding:?}"
    );

    // Node 3 wears it: German when the app asks.
    let de = poll_until(
        "node 3 shows the German page",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let a = request(&a3, "GET", &authorize("&lang=de"), &[], "").await?;
            Ok(a.body.contains("<title>Anmelden</title>").then_some(a))
        },
    )
    .await?;
    ensure!(
        de.body.contains("<html lang=\"de\">")
            && de.body.contains(">Weiter</button>")
            && de.body.contains("#123456")
            && de.body.contains("#fafafa")
            && de.body.contains("src=\"data:image/png;base64,"),
        "the German page must carry the strings, colours and logo: {:.1500}",
        de.body
    );
    // Untranslated keys fall back to English.
    ensure!(
        de.body.contains(">Username</label>"),
        "a missing key falls back to English"
    );
    println!("  ok: lang=de on node 3 -> German strings, colours, inlined logo");

    // The browser's language when the app names none.
    let by_header = request(
        &a3,
        "GET",
        &authorize(""),
        &[("Accept-Language", "ja, de-CH;q=0.8")],
        "",
    )
    .await?;
    ensure!(
        by_header.body.contains("<title>Anmelden</title>"),
        "Accept-Language de-CH must find de: {:.400}",
        by_header.body
    );
    let unknown = request(&a3, "GET", &authorize(""), &[("Accept-Language", "ja")], "").await?;
    ensure!(
        unknown.body.contains("<title>Sign in</title>") && unknown.body.contains("<html lang=\"en\">"),
        "a language the pool lacks falls back to English"
    );
    println!("  ok: Accept-Language chooses among loaded languages, else English");

    // Loaded text is escaped.
    let fr = request(&a3, "GET", &authorize("&lang=fr"), &[], "").await?;
    ensure!(
        fr.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !fr.body.contains("<script>"),
        "a loaded string must be escaped: {:.600}",
        fr.body
    );
    println!("  ok: a hostile string is shown escaped");

    // A wrong password in German comes back in German, on another node.
    let cookie = de
        .header("set-cookie")
        .and_then(|c| c.split(';').next().map(str::to_string))
        .ok_or_else(|| anyhow!("no CSRF cookie"))?;
    let form = format!(
        "request={}&csrf={}&lang={}&username=ann&password=wrong-Password-1",
        enc(&hidden(&de.body, "request")?),
        enc(&hidden(&de.body, "csrf")?),
        enc(&hidden(&de.body, "lang")?),
    );
    let wrong = post(
        &fx.api_addrs[1],
        &format!("/{pool}/login"),
        &[FORM, ("Cookie", &cookie)],
        &form,
    )
    .await?;
    ensure!(
        wrong.status == 200
            && wrong.body.contains("Benutzername oder Passwort ist falsch.")
            && wrong.body.contains("<title>Anmelden</title>"),
        "a wrong password posted in German: {} {:.800}",
        wrong.status,
        wrong.body
    );
    println!("  ok: the error of a wrong password is shown in German on node 2");

    // The client's own branding wins over the pool's.
    let own = n2
        .admin()
        .create_managed_login_branding(n2.req(CreateManagedLoginBrandingRequest {
            user_pool_id: pool.clone(),
            client_id: client_id.clone(),
            settings_document: serde_json::json!({"languages": {"en": {"signin.title": "Welcome to Spa"}}}).to_string(),
            ..Default::default()
        }))
        .await
        .map_err(status_err("CreateManagedLoginBranding for the client"))?
        .into_inner()
        .managed_login_branding
        .ok_or_else(|| anyhow!("no branding"))?;
    poll_until(
        "node 3 shows the client's branding",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let a = request(&a3, "GET", &authorize(""), &[], "").await?;
            Ok(a.body.contains("<title>Welcome to Spa</title>").then_some(()))
        },
    )
    .await?;
    println!("  ok: the client's branding overrides the pool's");
    let again = n3
        .admin()
        .create_managed_login_branding(n3.req(CreateManagedLoginBrandingRequest {
            user_pool_id: pool.clone(),
            client_id: client_id.clone(),
            ..Default::default()
        }))
        .await;
    expect_exception(
        "a second branding for the client",
        again,
        Code::AlreadyExists,
        "ManagedLoginBrandingExistsException",
    )?;
    let by_client = n3
        .admin()
        .describe_managed_login_branding_by_client(n3.req(DescribeManagedLoginBrandingByClientRequest {
            user_pool_id: pool.clone(),
            client_id: client_id.clone(),
            return_merged_resources: true,
        }))
        .await
        .map_err(status_err("DescribeManagedLoginBrandingByClient"))?
        .into_inner()
        .managed_login_branding
        .ok_or_else(|| anyhow!("no branding"))?;
    let merged: serde_json::Value = serde_json::from_str(&by_client.settings_document)?;
    ensure!(
        by_client.managed_login_branding_id == own.managed_login_branding_id
            && merged["colors"]["primary"] == "#0a66c2"
            && merged["languages"]["en"]["signin.title"] == "Welcome to Spa",
        "merged resources fill in the built-in colours: {merged}"
    );

    // Bad input: refused, nothing stored.
    let bad_settings = [
        (
            "an unknown string key",
            serde_json::json!({"languages": {"de": {"signin.titel": "x"}}}).to_string(),
        ),
        (
            "a colour that is not hex",
            serde_json::json!({"colors": {"primary": "red;background:url(https://evil.example/)"}}).to_string(),
        ),
        (
            "a language tag with markup",
            serde_json::json!({"languages": {"<b>": {}}}).to_string(),
        ),
        ("settings that are not JSON", "{colors".to_string()),
        (
            "an unknown setting",
            serde_json::json!({"javascript": "alert(1)"}).to_string(),
        ),
    ];
    for (what, settings_document) in bad_settings {
        let r = n1
            .admin()
            .update_managed_login_branding(n1.req(UpdateManagedLoginBrandingRequest {
                user_pool_id: pool.clone(),
                managed_login_branding_id: pool_branding.managed_login_branding_id.clone(),
                settings_document,
                ..Default::default()
            }))
            .await;
        expect_exception(what, r, Code::InvalidArgument, "InvalidParameterException")?;
    }
    let big = AssetType {
        bytes: vec![0u8; 200 * 1024],
        ..logo()
    };
    let unknown_category = AssetType {
        category: "SCRIPT".into(),
        ..logo()
    };
    for (what, asset) in [("a 200 KiB image", big), ("an unknown category", unknown_category)] {
        let r = n1
            .admin()
            .update_managed_login_branding(n1.req(UpdateManagedLoginBrandingRequest {
                user_pool_id: pool.clone(),
                managed_login_branding_id: pool_branding.managed_login_branding_id.clone(),
                assets: vec![asset],
                ..Default::default()
            }))
            .await;
        expect_exception(what, r, Code::InvalidArgument, "InvalidParameterException")?;
    }
    let still = n3
        .admin()
        .describe_managed_login_branding(n3.req(DescribeManagedLoginBrandingRequest {
            user_pool_id: pool.clone(),
            managed_login_branding_id: pool_branding.managed_login_branding_id.clone(),
            return_merged_resources: false,
        }))
        .await
        .map_err(status_err("DescribeManagedLoginBranding"))?
        .into_inner()
        .managed_login_branding
        .ok_or_else(|| anyhow!("no branding"))?;
    ensure!(
        still.settings_document.contains("Anmelden") && still.assets.len() == 1 && still.assets[0].bytes == PNG,
        "refused updates must leave the stored branding alone: {still:?}"
    );

    // The classic customization: CSS checked, then on the page.
    for (what, css) in [
        (
            "CSS that loads a resource",
            ".logo-customizable { background: url(https://evil.example/x) }",
        ),
        ("CSS that leaves its style element", "</style><script>alert(1)</script>"),
        ("CSS on other elements", "body { display: none }"),
        ("an at-rule", "@import 'https://evil.example/x.css';"),
        ("an escape", ".label-customizable { color: \\72 ed }"),
    ] {
        let r = n2
            .admin()
            .set_ui_customization(n2.req(SetUiCustomizationRequest {
                user_pool_id: pool.clone(),
                client_id: client_id.clone(),
                css: css.into(),
                ..Default::default()
            }))
            .await;
        expect_exception(what, r, Code::InvalidArgument, "InvalidParameterException")?;
    }
    let r = n2
        .admin()
        .set_ui_customization(n2.req(SetUiCustomizationRequest {
            user_pool_id: pool.clone(),
            client_id: client_id.clone(),
            css: String::new(),
            image_file: b"GIF89a....".to_vec(),
        }))
        .await;
    expect_exception("a GIF logo", r, Code::InvalidArgument, "InvalidParameterException")?;
    n2.admin()
        .set_ui_customization(n2.req(SetUiCustomizationRequest {
            user_pool_id: pool.clone(),
            client_id: client_id.clone(),
            css: ".submitButton-customizable { background-color: #ff0000; font-size: 18px }".into(),
            image_file: PNG.to_vec(),
        }))
        .await
        .map_err(status_err("SetUICustomization"))?;
    let ui = n3
        .admin()
        .get_ui_customization(n3.req(GetUiCustomizationRequest {
            user_pool_id: pool.clone(),
            client_id: client_id.clone(),
        }))
        .await
        .map_err(status_err("GetUICustomization"))?
        .into_inner()
        .ui_customization
        .ok_or_else(|| anyhow!("no customization"))?;
    ensure!(
        ui.css == ".submitButton-customizable{background-color:#ff0000;font-size:18px;}" && ui.client_id == client_id,
        "GetUICustomization on node 3: {ui:?}"
    );
    let styled = request(&a3, "GET", &authorize(""), &[], "").await?;
    ensure!(
        styled
            .body
            .contains(".submitButton-customizable{background-color:#ff0000;font-size:18px;}")
            && styled.body.contains("class=\"submitButton-customizable\"")
            && styled.body.contains("<title>Welcome to Spa</title>"),
        "the page carries the CSS and keeps the client's strings: {:.1200}",
        styled.body
    );
    println!("  ok: SetUICustomization's CSS is on the page, beside the managed-login settings");

    // Deleting the client deletes its branding, on every node.
    n1.admin()
        .delete_user_pool_client(n1.req(DeleteUserPoolClientRequest {
            user_pool_id: pool.clone(),
            client_id: client_id.clone(),
        }))
        .await
        .map_err(status_err("DeleteUserPoolClient"))?;
    for id in fx.node_ids() {
        let n = fx.node(id);
        let r = n
            .admin()
            .describe_managed_login_branding(n.req(DescribeManagedLoginBrandingRequest {
                user_pool_id: pool.clone(),
                managed_login_branding_id: own.managed_login_branding_id.clone(),
                return_merged_resources: false,
            }))
            .await;
        expect_exception(
            &format!("the deleted client's branding on node {id}"),
            r,
            Code::NotFound,
            "ResourceNotFoundException",
        )?;
    }

    // Deleting the pool's branding brings the built-in look back.
    n3.admin()
        .delete_managed_login_branding(n3.req(DeleteManagedLoginBrandingRequest {
            user_pool_id: pool.clone(),
            managed_login_branding_id: pool_branding.managed_login_branding_id.clone(),
        }))
        .await
        .map_err(status_err("DeleteManagedLoginBranding"))?;
    let back = n1
        .admin()
        .get_ui_customization(n1.req(GetUiCustomizationRequest {
            user_pool_id: pool.clone(),
            client_id: "ALL".into(),
        }))
        .await
        .map_err(status_err("GetUICustomization after the delete"))?
        .into_inner()
        .ui_customization
        .ok_or_else(|| anyhow!("no customization"))?;
    ensure!(
        back.css.is_empty() && back.client_id == "ALL",
        "an empty customization after the delete: {back:?}"
    );
    println!("  ok: deletes reach every node");
    Ok(())
}

/// The branded page in headless Chromium: the German strings, the brand
/// colour on the button as the browser computed it, and the inlined logo
/// actually decoded under the page's CSP (`naturalWidth` 1), with a
/// screenshot for people to look at.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn branded_page_in_a_browser() {
    let (c, b) = tokio::join!(TestCluster::start(1), Browser::start("branded_page_in_a_browser"));
    let c = c.expect("the cluster forms");
    let b = b.expect("headless Chromium starts under chromedriver");
    let r = browser_body(&c, &b).await;
    b.close_after(&r).await;
    c.finish(r);
}

async fn browser_body(c: &TestCluster, b: &Browser) -> Result<()> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "branded-browser",
            ..Default::default()
        },
    )
    .await?;
    let pool = fx.pool_id.clone();
    let n1 = fx.node(1);
    let app = n1
        .admin()
        .create_user_pool_client(n1.req(CreateUserPoolClientRequest {
            user_pool_id: pool.clone(),
            client_name: "spa".into(),
            allowed_oauth_flows_user_pool_client: true,
            allowed_oauth_flows: vec!["code".into()],
            allowed_oauth_scopes: vec!["openid".into()],
            callback_urls: vec![CALLBACK.into()],
            ..Default::default()
        }))
        .await
        .map_err(status_err("CreateUserPoolClient"))?
        .into_inner()
        .user_pool_client
        .ok_or_else(|| anyhow!("no client"))?;
    n1.admin()
        .create_managed_login_branding(
            n1.req(CreateManagedLoginBrandingRequest {
                user_pool_id: pool.clone(),
                client_id: app.client_id.clone(),
                settings_document: serde_json::json!({
                    "colors": {"primary": "#123456", "button_text": "#ffffff"},
                    "languages": {"de": {"signin.title": "Anmelden", "signin.submit": "Weiter"}}
                })
                .to_string(),
                assets: vec![logo()],
                ..Default::default()
            }),
        )
        .await
        .map_err(status_err("CreateManagedLoginBranding"))?;
    let url = format!(
        "http://{}/{pool}/oauth2/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid\
         &code_challenge={CHALLENGE}&code_challenge_method=S256&lang=de",
        fx.api_addrs[0],
        app.client_id,
        enc(CALLBACK)
    );
    b.navigate(&url).await?;
    let h1 = b.wait_for("h1", Duration::from_secs(10)).await?.text().await?;
    ensure!(h1 == "Anmelden", "the heading in Chromium: {h1:?}");
    let button = b.find("button.submitButton-customizable").await?;
    let (label, bg) = (button.text().await?, button.css("background-color").await?);
    ensure!(
        label == "Weiter" && ["rgb(18,52,86)", "rgba(18,52,86,1)"].contains(&bg.replace(' ', "").as_str()),
        "the button as rendered: {label:?} on {bg:?}"
    );
    let width = b.find("img.logo-customizable").await?.property("naturalWidth").await?;
    ensure!(
        width.as_u64() == Some(1),
        "the inlined logo must load under the page's CSP (naturalWidth {width})"
    );
    let shot = b.screenshot("branded-sign-in").await?;
    println!(
        "  ok: German, brand colour and logo as Chromium renders them; {}",
        shot.display()
    );
    Ok(())
}

/// Races decided in `apply`, run in parallel through all three nodes: of
/// three simultaneous `CreateManagedLoginBranding` for one client exactly
/// one wins and the others get `ManagedLoginBrandingExistsException`; a
/// branding created while its client is deleted never outlives the
/// client on any node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn branding_races_are_decided_once() {
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = races(&c).await;
    c.finish(r);
}

async fn races(c: &TestCluster) -> Result<()> {
    let fx = Fixture::create(
        c,
        PoolSpec {
            name: "branding-races",
            ..Default::default()
        },
    )
    .await?;
    let pool = fx.pool_id.clone();
    for round in 0..3 {
        let n1 = fx.node(1);
        let client_id = n1
            .admin()
            .create_user_pool_client(n1.req(CreateUserPoolClientRequest {
                user_pool_id: pool.clone(),
                client_name: format!("race-{round}"),
                ..Default::default()
            }))
            .await
            .map_err(status_err("CreateUserPoolClient"))?
            .into_inner()
            .user_pool_client
            .ok_or_else(|| anyhow!("no client"))?
            .client_id;
        // Three creates at once, one per node.
        let mut tasks = Vec::new();
        for id in fx.node_ids() {
            let n = fx.node(id).clone();
            let req = n.req(CreateManagedLoginBrandingRequest {
                user_pool_id: pool.clone(),
                client_id: client_id.clone(),
                settings_document: serde_json::json!({"colors": {"primary": format!("#00000{id}")}}).to_string(),
                ..Default::default()
            });
            tasks.push(tokio::spawn(async move {
                n.admin().create_managed_login_branding(req).await
            }));
        }
        let mut won = 0;
        for t in tasks {
            match t.await? {
                Ok(_) => won += 1,
                Err(s) => ensure!(
                    s.code() == Code::AlreadyExists,
                    "a losing create must be ManagedLoginBrandingExistsException: {s:?}"
                ),
            }
        }
        ensure!(won == 1, "round {round}: {won} of 3 simultaneous creates won");

        // A second client: its branding races its deletion.
        let doomed = n1
            .admin()
            .create_user_pool_client(n1.req(CreateUserPoolClientRequest {
                user_pool_id: pool.clone(),
                client_name: format!("doomed-{round}"),
                ..Default::default()
            }))
            .await
            .map_err(status_err("CreateUserPoolClient"))?
            .into_inner()
            .user_pool_client
            .ok_or_else(|| anyhow!("no client"))?
            .client_id;
        let (n2, n3) = (fx.node(2).clone(), fx.node(3).clone());
        let create = n2.req(CreateManagedLoginBrandingRequest {
            user_pool_id: pool.clone(),
            client_id: doomed.clone(),
            ..Default::default()
        });
        let delete = n3.req(DeleteUserPoolClientRequest {
            user_pool_id: pool.clone(),
            client_id: doomed.clone(),
        });
        let (created, deleted) = tokio::join!(
            async { n2.admin().create_managed_login_branding(create).await },
            async { n3.admin().delete_user_pool_client(delete).await },
        );
        deleted.map_err(status_err("DeleteUserPoolClient"))?;
        let branding_id = match created {
            Ok(r) => r
                .into_inner()
                .managed_login_branding
                .map(|b| b.managed_login_branding_id),
            Err(s) => {
                ensure!(s.code() == Code::NotFound, "a create after the delete: {s:?}");
                None
            }
        };
        for id in fx.node_ids() {
            let n = fx.node(id);
            let r = n
                .admin()
                .describe_managed_login_branding_by_client(n.req(DescribeManagedLoginBrandingByClientRequest {
                    user_pool_id: pool.clone(),
                    client_id: doomed.clone(),
                    return_merged_resources: false,
                }))
                .await;
            ensure!(
                r.as_ref().is_err_and(|s| s.code() == Code::NotFound),
                "round {round}: the deleted client's branding (created: {branding_id:?}) on node {id}: {r:?}"
            );
        }
    }
    // An update racing the branding's deletion never brings it back.
    let n1 = fx.node(1);
    let target = n1
        .admin()
        .create_managed_login_branding(n1.req(CreateManagedLoginBrandingRequest {
            user_pool_id: pool.clone(),
            client_id: "ALL".into(),
            ..Default::default()
        }))
        .await
        .map_err(status_err("CreateManagedLoginBranding ALL"))?
        .into_inner()
        .managed_login_branding
        .ok_or_else(|| anyhow!("no branding"))?
        .managed_login_branding_id;
    let (n2, n3) = (fx.node(2).clone(), fx.node(3).clone());
    let update = n2.req(UpdateManagedLoginBrandingRequest {
        user_pool_id: pool.clone(),
        managed_login_branding_id: target.clone(),
        settings_document: serde_json::json!({"colors": {"primary": "#abcdef"}}).to_string(),
        ..Default::default()
    });
    let delete = n3.req(DeleteManagedLoginBrandingRequest {
        user_pool_id: pool.clone(),
        managed_login_branding_id: target.clone(),
    });
    let (_, deleted) = tokio::join!(
        async { n2.admin().update_managed_login_branding(update).await },
        async { n3.admin().delete_managed_login_branding(delete).await },
    );
    deleted.map_err(status_err("DeleteManagedLoginBranding"))?;
    for id in fx.node_ids() {
        let n = fx.node(id);
        let r = n
            .admin()
            .describe_managed_login_branding_by_client(n.req(DescribeManagedLoginBrandingByClientRequest {
                user_pool_id: pool.clone(),
                client_id: "ALL".into(),
                return_merged_resources: false,
            }))
            .await;
        ensure!(
            r.as_ref().is_err_and(|s| s.code() == Code::NotFound),
            "a deleted branding came back after a racing update, on node {id}: {r:?}"
        );
    }
    println!("  ok: 3 rounds: one create of three wins; no branding outlives its client or its deletion");
    Ok(())
}
