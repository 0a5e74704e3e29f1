//! `tessera user import` end to end: files are read by
//! `client::import::parse_import_csv` and sent by `import_users`, the two
//! functions the CLI calls, into a real node; the users are then read back
//! with `AdminGetUser`. Covers quoted fields, a file in Cognito's user
//! import format taken unchanged, per-row verification flags, and
//! line-numbered refusals.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use common::auth::*;
use common::TestCluster;
use tessera::client::import::{import_users, parse_import_csv};

/// The header Cognito's `GetCSVHeader` returns, plus a custom attribute.
const COGNITO_HEADER: &str = "name,given_name,family_name,middle_name,nickname,preferred_username,profile,\
picture,website,email,email_verified,gender,birthdate,zoneinfo,locale,phone_number,phone_number_verified,\
address,updated_at,cognito:mfa_enabled,cognito:username,custom:tier";

async fn attributes(fx: &Fixture, username: &str) -> Result<(String, BTreeMap<String, String>)> {
    let u = fx
        .admin_get_user(1, username)
        .await
        .map_err(status_err("AdminGetUser"))?;
    let attrs = u.user_attributes.into_iter().map(|a| (a.name, a.value)).collect();
    Ok((u.user_status, attrs))
}

fn check(attrs: &BTreeMap<String, String>, name: &str, want: Option<&str>, who: &str) -> Result<()> {
    ensure!(
        attrs.get(name).map(String::as_str) == want,
        "{who}: {name} is {:?}, expected {want:?} (all: {attrs:?})",
        attrs.get(name)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_files_import_into_a_real_node() -> Result<()> {
    let c = TestCluster::start(1).await?;
    let fx = Fixture::create_pool(
        &c,
        PoolSetup {
            name: "import",
            alias_attributes: &[],
            custom: &[CustomAttr {
                name: "tier",
                indexed: false,
            }],
            fast: true,
            generate_secret: false,
        },
    )
    .await?;
    let client = fx.node(1);

    // Cognito's format, CRLF as it writes it: a quoted name holding a comma
    // and an embedded quote; ann marks only her email verified, bob his
    // only contact, cat nothing.
    let cognito = format!(
        "{COGNITO_HEADER}\r\n\
         \"Smith, Ann \"\"Annie\"\"\",Ann,Smith,,,,,,,ann@example.com,TRUE,,,,,+15555550100,FALSE,,,FALSE,ann,gold\r\n\
         ,,,,,,,,,bob@example.com,true,,,,,,,,,,bob,\r\n\
         Cat,,,,,,,,,cat@example.com,False,,,,,,,,,false,cat,silver\r\n"
    );
    let rows = parse_import_csv(&cognito)?;
    let report = import_users(client, &fx.pool_id, &rows, "", false, 1000).await?;
    ensure!(
        report.imported == 3 && report.failures.is_empty(),
        "Cognito file: {report:?}"
    );
    let (status, ann) = attributes(&fx, "ann").await?;
    ensure!(status == "RESET_REQUIRED", "ann is {status}");
    check(&ann, "name", Some("Smith, Ann \"Annie\""), "ann")?;
    check(&ann, "given_name", Some("Ann"), "ann")?;
    check(&ann, "custom:tier", Some("gold"), "ann")?;
    check(&ann, "phone_number", Some("+15555550100"), "ann")?;
    check(&ann, "email_verified", Some("true"), "ann")?;
    check(&ann, "phone_number_verified", Some("false"), "ann")?;
    check(&ann, "nickname", None, "ann")?;
    let (_, bob) = attributes(&fx, "bob").await?;
    check(&bob, "email_verified", Some("true"), "bob")?;
    check(&bob, "name", None, "bob")?;
    let (_, cat) = attributes(&fx, "cat").await?;
    check(&cat, "email_verified", Some("false"), "cat")?;
    check(&cat, "custom:tier", Some("silver"), "cat")?;

    // Tessera's own header still works, quoting included, in batches.
    let own = "username,email,name\n\"dan\",dan@example.com,\"Doe, Dan \"\"D\"\"\"\neve,eve@example.com,Eve\n";
    let rows = parse_import_csv(own)?;
    let report = import_users(client, &fx.pool_id, &rows, "", true, 1).await?;
    ensure!(
        report.imported == 2 && report.failures.is_empty(),
        "own format: {report:?}"
    );
    let (_, dan) = attributes(&fx, "dan").await?;
    check(&dan, "name", Some("Doe, Dan \"D\""), "dan")?;
    check(&dan, "email_verified", Some("true"), "dan")?;

    // A bad row is refused with its line, before anything is sent.
    let bad = format!(
        "{COGNITO_HEADER}\n,,,,,,,,,fay@example.com,TRUE,,,,,,,,,FALSE,fay,\n,,,,,,,,,gus@example.com,TRUE,,,,,,,,,TRUE,gus,\n"
    );
    let err = parse_import_csv(&bad).expect_err("mfa TRUE is refused").to_string();
    ensure!(err.contains("line 3") && err.contains("cognito:mfa_enabled"), "{err}");
    let err = parse_import_csv("username,shoe_size\nhal,44\n")
        .expect_err("unknown column")
        .to_string();
    ensure!(err.contains("\"shoe_size\""), "{err}");
    ensure!(
        fx.admin_get_user(1, "fay").await.is_err(),
        "a refused file imported fay"
    );
    // Per-user refusals come back in the report, by username.
    let rows = parse_import_csv("username,email,custom:nope\nivy,ivy@example.com,x\n").context("custom:nope parses")?;
    let report = import_users(client, &fx.pool_id, &rows, "", false, 1000).await?;
    ensure!(
        report.imported == 0 && report.failures.len() == 1 && report.failures[0].username == "ivy",
        "undeclared custom attribute: {report:?}"
    );
    Ok(())
}
