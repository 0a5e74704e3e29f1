//! Issue 12, bulk import with existing password hashes, end to end on a
//! real three-node cluster over real gRPC:
//!
//! * 10,000 users with mixed hash formats (bcrypt, scrypt, PBKDF2-SHA256
//!   and -SHA512, argon2i, argon2id, Firebase scrypt) go in through the
//!   `tessera` binary from a JSONL file with two bad lines, which are
//!   reported with their line numbers while the rest import. Users of every
//!   format, including one fixed vector per format made by an independent
//!   implementation, sign in on another node than the import went to; the
//!   stored hash is then the pool's argon2id (seen through an export) and
//!   signing in again works; a wrong password is NotAuthorizedException.
//! * An export through the binary, imported into a new pool, round-trips:
//!   the same records, and the same users sign in with the same passwords.
//! * The export is refused without the admin token, and audited.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::BTreeMap;

use aes::cipher::{KeyIvInit, StreamCipher};
use anyhow::{ensure, Context, Result};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use common::auth::*;
use common::TestCluster;
use tessera::client::jsonl::UserRecord;
use tessera::proto::*;
use tonic::Code;

/// Users in the big import.
const USERS: usize = 10_000;
/// Distinct (password, hash) pairs per format; users share them in turn,
/// so that making the fixture stays cheap.
const PAIRS: usize = 8;

/// Fixed vectors from independent implementations: (format, hash,
/// password, where it came from). The same as the unit tests'
/// (src/auth/foreign_hash/tests.rs), here signed in end to end.
const VECTORS: &[(&str, &str, &str)] = &[
    // Python bcrypt 5.0.0: bcrypt.hashpw(b"Tessera-KAT-1", b"$2b$04$abcdefghijklmnopqrstuu").
    ("bcrypt", "$2b$04$abcdefghijklmnopqrstuuZpfs7pMDs2BfSG3VHoWyUDzibcLelSO", "Tessera-KAT-1"),
    // CPython 3.11 hashlib.scrypt(pw, salt=b"kat-salt-0123456", n=1024, r=8, p=1, dklen=32).
    ("scrypt", "$scrypt$ln=10,r=8,p=1$a2F0LXNhbHQtMDEyMzQ1Ng$QACGu6QGdLclekot5xj9NfC5gPaQl6gYP90H236DZPQ", "Tessera-KAT-1"),
    // CPython 3.11 hashlib.pbkdf2_hmac("sha256", pw, b"kat-salt-0123456", 1000), passlib's base64.
    ("pbkdf2-sha256", "$pbkdf2-sha256$i=1000$a2F0LXNhbHQtMDEyMzQ1Ng$TQwvNOYnMElKpopPLJAexxL72hohIX.xuLPkKHZuDTc", "Tessera-KAT-1"),
    // CPython 3.11 hashlib.pbkdf2_hmac("sha512", pw, b"kat-salt-0123456", 1000).
    ("pbkdf2-sha512", "$pbkdf2-sha512$i=1000$a2F0LXNhbHQtMDEyMzQ1Ng$T3BzSFan9/OyeLNkVxpGAgLg4N42yTU2cmHUNamZpzNKuXbk1vJUG8cnXA3nGS6JOm1DPaq/eWRVUgdJ8QmEoQ", "Tessera-KAT-1"),
    // argon2-cffi 25.1.0, Type.I, t=2, m=256, p=1, salt b"saltsaltsalt1234".
    ("argon2i", "$argon2i$v=19$m=256,t=2,p=1$c2FsdHNhbHRzYWx0MTIzNA$K6xVFmC5p/XEFQHf6Iqk9QvS9N1kmjuW6YBVezQbWWc", "Tessera-KAT-1"),
    // argon2-cffi 25.1.0, Type.ID, t=1, m=512, p=2 (not the pool's parameters).
    ("argon2id", "$argon2id$v=19$m=512,t=1,p=2$c2FsdHNhbHRzYWx0MTIzNA$unb6Cvhrl138pwrGBSLDp7NqYtrWd5wQgsLARaoiADg", "Tessera-KAT-1"),
    // Firebase's own scrypt tool, the example of its README.
    ("firebase-scrypt", "$firebase-scrypt$ln=14,r=8$jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA==$Bw==$42xEC+ixf3L2lw==$lSrfV15cpx95/sZS2W9c9Kp6i/LVgQNDNC/qzrCnh1SAyZvqmZqAjTdn3aoItz+VHjoZilo78198JAdRuid5lQ==", "user1password"),
];

const FORMATS: [&str; 7] = [
    "bcrypt",
    "scrypt",
    "pbkdf2-sha256",
    "pbkdf2-sha512",
    "argon2i",
    "argon2id",
    "firebase-scrypt",
];

fn b64(b: &[u8]) -> String {
    STANDARD_NO_PAD.encode(b)
}

/// A cheap hash of `password` in `format`, made with the crates (the
/// vectors above check them against other implementations).
fn make_hash(format: &str, password: &str, k: usize) -> Result<String> {
    let pw = password.as_bytes();
    let salt = format!("fixture-salt-{k:03}").into_bytes();
    Ok(match format {
        "bcrypt" => bcrypt::hash(password, 4)?,
        "scrypt" => {
            let mut out = [0u8; 32];
            scrypt::scrypt(pw, &salt, &scrypt::Params::new(4, 8, 1, 32)?, &mut out)?;
            format!("$scrypt$ln=4,r=8,p=1${}${}", b64(&salt), b64(&out))
        }
        "pbkdf2-sha256" | "pbkdf2-sha512" => {
            let mut out = [0u8; 32];
            if format.ends_with("256") {
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(pw, &salt, 100, &mut out);
            } else {
                pbkdf2::pbkdf2_hmac::<sha2::Sha512>(pw, &salt, 100, &mut out);
            }
            format!("${format}$i=100${}${}", b64(&salt), b64(&out))
        }
        "argon2i" | "argon2id" => {
            let alg = if format == "argon2i" {
                argon2::Algorithm::Argon2i
            } else {
                argon2::Algorithm::Argon2id
            };
            let params = argon2::Params::new(64, 1, 1, Some(32)).map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut out = [0u8; 32];
            argon2::Argon2::new(alg, argon2::Version::V0x13, params)
                .hash_password_into(pw, &salt, &mut out)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            format!("${format}$v=19$m=64,t=1,p=1${}${}", b64(&salt), b64(&out))
        }
        "firebase-scrypt" => {
            let key = [k as u8; 32];
            let sep = [7u8];
            let mut salted = salt.clone();
            salted.extend_from_slice(&sep);
            let mut derived = [0u8; 64];
            scrypt::scrypt(pw, &salted, &scrypt::Params::new(4, 8, 1, 64)?, &mut derived)?;
            let mut out = key;
            ctr::Ctr128BE::<aes::Aes256>::new(derived[..32].into(), &[0u8; 16].into()).apply_keystream(&mut out);
            format!(
                "$firebase-scrypt$ln=4,r=8${}${}${}${}",
                STANDARD.encode(key),
                STANDARD.encode(sep),
                STANDARD.encode(&salt),
                STANDARD.encode(out)
            )
        }
        other => anyhow::bail!("no format {other}"),
    })
}

/// The fixture: every user's record and password.
struct Users {
    records: Vec<UserRecord>,
    passwords: BTreeMap<String, String>,
}

fn fixture() -> Result<Users> {
    let mut pairs = BTreeMap::new();
    for f in FORMATS {
        for k in 0..PAIRS {
            let pw = format!("Pw-{f}-{k}!");
            pairs.insert(
                (f, k),
                (pw.clone(), make_hash(f, &pw, k).with_context(|| f.to_string())?),
            );
        }
    }
    let mut records = Vec::new();
    let mut passwords = BTreeMap::new();
    for (f, hash, pw) in VECTORS {
        let name = format!("kat-{f}");
        records.push(record(&name, hash, &["vectors", f]));
        passwords.insert(name, pw.to_string());
    }
    for i in 0..USERS - VECTORS.len() {
        let f = FORMATS[i % FORMATS.len()];
        let (pw, hash) = &pairs[&(f, (i / FORMATS.len()) % PAIRS)];
        let name = format!("user{i:05}");
        records.push(record(&name, hash, &[f]));
        passwords.insert(name, pw.clone());
    }
    Ok(Users { records, passwords })
}

fn record(name: &str, hash: &str, groups: &[&str]) -> UserRecord {
    UserRecord {
        username: name.to_string(),
        attributes: [("email".to_string(), format!("{name}@example.com"))].into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        password_hash: Some(hash.to_string()),
        email_verified: Some(true),
        ..Default::default()
    }
}

/// The users of a pool, by username, through the binary's export.
async fn export(
    c: &TestCluster,
    via: u64,
    pool_id: &str,
    dir: &std::path::Path,
) -> Result<BTreeMap<String, UserRecord>> {
    let path = dir.join(format!("export-{pool_id}.jsonl"));
    let mut args = c.admin_args(via);
    args.extend(["user", "export", "--pool-id", pool_id, "--out"].map(String::from));
    args.push(path.display().to_string());
    let out = common::run_cli(&c.bin, args).await?;
    ensure!(out.status.success(), "export: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&path)?;
    let mut users = BTreeMap::new();
    for line in text.lines() {
        let r = UserRecord::parse(line).map_err(|e| anyhow::anyhow!("export line {line}: {e}"))?;
        users.insert(r.username.clone(), r);
    }
    Ok(users)
}

/// Runs `tessera user import` on `file`; its JSON report and exit status.
async fn import_file(
    c: &TestCluster,
    via: u64,
    pool_id: &str,
    file: &std::path::Path,
) -> Result<(serde_json::Value, bool)> {
    let mut args = c.admin_args(via);
    args.extend(["user", "import", "--pool-id", pool_id].map(String::from));
    args.push(file.display().to_string());
    let out = common::run_cli_timeout(&c.bin, args, std::time::Duration::from_secs(300)).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).with_context(|| {
        format!(
            "import stdout {stdout:?}, stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((report, out.status.success()))
}

fn is_pool_argon2id(hash: &str) -> bool {
    // The fixture pool's cheap parameters (common::auth::fast_hashing).
    hash.starts_with("$argon2id$v=19$m=8192,t=1,p=1$")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_hash_formats_import_sign_in_rehash_and_round_trip() -> Result<()> {
    let c = TestCluster::start(3).await?;
    let dir = tempfile::tempdir()?;
    let setup = |name| PoolSetup {
        name,
        alias_attributes: &[],
        custom: &[],
        fast: true,
        generate_secret: false,
    };
    let fx = Fixture::create_pool(&c, setup("import")).await?;
    let users = fixture()?;

    // The file: every user, plus two bad lines in the middle.
    let mut text = String::new();
    let mut bad_lines = Vec::new();
    for (i, r) in users.records.iter().enumerate() {
        if i == 4000 {
            text.push_str("{\"username\":\"broken\",\"password_hash\":\"$2b$99$abcdefghijklmnopqrstuuZpfs7pMDs2BfSG3VHoWyUDzibcLelSO\"}\n");
            bad_lines.push(i + 1);
            text.push_str("not json at all\n");
            bad_lines.push(i + 2);
        }
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    let file = dir.path().join("users.jsonl");
    std::fs::write(&file, &text)?;
    let started = std::time::Instant::now();
    let (report, ok) = import_file(&c, 1, &fx.pool_id, &file).await?;
    ensure!(!ok, "the import exits non-zero when a line was refused");
    ensure!(report["imported"] == USERS, "imported: {report}");
    let rejected = report["rejected"].as_array().context("rejected")?;
    let lines: Vec<u64> = rejected.iter().filter_map(|r| r["line"].as_u64()).collect();
    ensure!(
        lines == bad_lines.iter().map(|l| *l as u64).collect::<Vec<_>>(),
        "rejected lines {rejected:?}, expected {bad_lines:?}"
    );
    ensure!(
        rejected[0]["reason"].as_str().unwrap_or("").contains("bcrypt cost 99"),
        "{rejected:?}"
    );
    eprintln!("imported {USERS} users in {:?}", started.elapsed());

    // One fixed vector and one generated user per format, on node 2.
    let mut probes: Vec<String> = VECTORS.iter().map(|(f, _, _)| format!("kat-{f}")).collect();
    probes.extend((0..FORMATS.len()).map(|i| format!("user{i:05}")));
    let before = export(&c, 3, &fx.pool_id, dir.path()).await?;
    ensure!(before.len() == USERS, "export has {} users", before.len());
    expect_exception(
        "a wrong password for an imported user",
        fx.password_auth(2, "kat-bcrypt", "Tessera-KAT-2").await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    for name in &probes {
        let hash = before[name].password_hash.clone().unwrap_or_default();
        ensure!(!is_pool_argon2id(&hash), "{name} is already rehashed: {hash}");
        fx.sign_in(2, name, &users.passwords[name])
            .await
            .with_context(|| format!("first sign-in of {name}"))?;
    }
    let after = export(&c, 1, &fx.pool_id, dir.path()).await?;
    for name in &probes {
        let hash = after[name].password_hash.clone().unwrap_or_default();
        ensure!(is_pool_argon2id(&hash), "{name} was not rehashed: {hash}");
        let mut same = after[name].clone();
        same.password_hash = before[name].password_hash.clone();
        ensure!(same == before[name], "{name}: the rehash changed more than the hash");
        fx.sign_in(3, name, &users.passwords[name])
            .await
            .with_context(|| format!("sign-in of {name} after the rehash"))?;
    }
    // Node 2 served every first sign-in: it counted one rehash per format
    // at least (each probe once, the vector and the generated user).
    let (status, metrics) = http_request(&fx.api_addrs[1], "GET", "/metrics", None).await?;
    ensure!(status == 200, "/metrics: {status}");
    for f in FORMATS {
        let line = format!("tessera_password_rehashes_total{{scheme=\"{f}\",outcome=\"ok\"}} 2");
        ensure!(metrics.contains(&line), "no {line:?} in /metrics");
    }
    // A user who did not sign in keeps the imported hash.
    let idle = "user09990";
    ensure!(
        after[idle].password_hash == before[idle].password_hash,
        "{idle} changed"
    );
    ensure!(
        after["kat-scrypt"].groups == ["scrypt", "vectors"],
        "{:?}",
        after["kat-scrypt"].groups
    );

    // The export is audited.
    let events = fx
        .node(1)
        .admin()
        .admin_list_user_auth_events(fx.node(1).req(AdminListUserAuthEventsRequest {
            user_pool_id: fx.pool_id.clone(),
            consistent_read: true,
            ..Default::default()
        }))
        .await
        .map_err(status_err("AdminListUserAuthEvents"))?
        .into_inner();
    ensure!(
        events.auth_events.iter().any(|e| e.detail.contains("AdminExportUsers")),
        "no export event in {:?}",
        events.auth_events.iter().map(|e| &e.detail).collect::<Vec<_>>()
    );

    // Round trip: the export into a new pool, through the binary.
    let fx2 = Fixture::create_pool(&c, setup("import-copy")).await?;
    let exported = dir.path().join(format!("export-{}.jsonl", fx.pool_id));
    let (report, ok) = import_file(&c, 2, &fx2.pool_id, &exported).await?;
    ensure!(ok && report["imported"] == USERS, "re-import: {report}");
    let copy = export(&c, 2, &fx2.pool_id, dir.path()).await?;
    ensure!(copy == after, "the new pool's export differs from the old one's");
    for name in probes.iter().chain([&idle.to_string()]) {
        fx2.sign_in(1, name, &users.passwords[name])
            .await
            .with_context(|| format!("sign-in of {name} in the new pool"))?;
    }
    let groups = fx2
        .node(3)
        .admin()
        .admin_list_groups_for_user(fx2.node(3).req(AdminListGroupsForUserRequest {
            user_pool_id: fx2.pool_id.clone(),
            username: "kat-firebase-scrypt".into(),
            ..Default::default()
        }))
        .await
        .map_err(status_err("AdminListGroupsForUser"))?
        .into_inner();
    let names: Vec<String> = groups.groups.into_iter().map(|g| g.group_name).collect();
    ensure!(names == ["firebase-scrypt", "vectors"], "groups {names:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_needs_the_admin_token() -> Result<()> {
    let c = TestCluster::start(1).await?;
    let fx = Fixture::create(&c, PoolSpec::default()).await?;
    let url = c.node(1).url();
    for token in [None, Some("not-the-token".to_string())] {
        let client = tessera::client::Client::connect(&url, token.clone()).await?;
        let r = client
            .admin()
            .admin_export_users(client.req(AdminExportUsersRequest {
                user_pool_id: fx.pool_id.clone(),
                ..Default::default()
            }))
            .await;
        match r {
            Err(s) => ensure!(
                s.code() == Code::Unauthenticated || s.code() == Code::PermissionDenied,
                "token {token:?}: {s:?}"
            ),
            Ok(_) => anyhow::bail!("an export without the admin token succeeded (token {token:?})"),
        }
    }
    // A bad page size is refused at the edge.
    let r = fx
        .node(1)
        .admin()
        .admin_export_users(fx.node(1).req(AdminExportUsersRequest {
            user_pool_id: fx.pool_id.clone(),
            limit: 1001,
            ..Default::default()
        }))
        .await;
    ensure!(matches!(&r, Err(s) if s.code() == Code::InvalidArgument), "{r:?}");
    Ok(())
}
