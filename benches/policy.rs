#![allow(clippy::disallowed_methods, reason = "a benchmark measures time")]
//! Offline policy evaluation (issue #10): how many `Authorize` decisions one
//! core makes against a realistic 20-statement role policy with wildcards
//! and variables. The issue's floor is 500,000 decisions/s.
//!
//! The bench parses and compiles the policy once, checks every query's
//! decision against the expected one (a wrong answer is an error and exits
//! non-zero), then evaluates the queries round-robin on one thread for
//! `BENCH_SECS` seconds (default 3) and prints decisions/s, ns/decision
//! and the ratio to the floor. Being slower than the floor is reported,
//! not an error: the number depends on the machine.
//!
//! ```text
//! CARGO_TARGET_DIR=/var/tmp/tessera-target cargo bench --bench policy
//! BENCH_SECS=10 cargo bench --bench policy
//! ```
//!
//! Under `cargo test --benches` (no `--bench` flag) it runs a short smoke
//! pass, which still checks every decision.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tessera::model::policy::{PolicyContext, PolicyDocument};

/// The issue's floor, decisions per second on one core.
const FLOOR: f64 = 500_000.0;

/// A mobile app's role: own data under the identity id, profile rows under
/// the user pool sub, public and catalog reads, and Denies that carve
/// exceptions out of the Allows (last statements, so a denied query is
/// found late in document order).
const POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "OwnObjects", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
     "Resource": "user-data/${identity.id}/*"},
    {"Sid": "ListOwn", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "user-data/${identity.id}"},
    {"Sid": "ReadProfile", "Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Query"],
     "Resource": "table/Profiles/${user.sub}"},
    {"Sid": "WriteProfile", "Effect": "Allow", "Action": ["dynamodb:PutItem", "dynamodb:UpdateItem"],
     "Resource": "table/Profiles/${user.sub}"},
    {"Sid": "PublicRead", "Effect": "Allow", "Action": "app:Read*", "Resource": "public/*"},
    {"Sid": "Catalog", "Effect": "Allow", "Action": "app:Get????", "Resource": "catalog/item-????"},
    {"Sid": "Sync", "Effect": "Allow", "Action": "sync:*", "Resource": "datasets/${identity.id}/*"},
    {"Sid": "ChatSend", "Effect": "Allow", "Action": "chat:SendMessage",
     "Resource": "rooms/*/members/${user.username}"},
    {"Sid": "ChatRead", "Effect": "Allow", "Action": "chat:ReadMessages", "Resource": "rooms/*/log/*"},
    {"Sid": "Upload", "Effect": "Allow", "Action": "media:Upload",
     "Resource": ["uploads/${identity.id}/*.jpg", "uploads/${identity.id}/*.png"]},
    {"Sid": "Thumbs", "Effect": "Allow", "Action": "media:Get*", "Resource": "cdn/*/thumb-?.jpg"},
    {"Sid": "Analytics", "Effect": "Allow", "Action": "analytics:PutEvents", "Resource": "*"},
    {"Sid": "SharedWithMe", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "shared/${user.sub}/*"},
    {"Sid": "Vote", "Effect": "Allow", "Action": "app:Vote", "Resource": "polls/*/options/?"},
    {"Sid": "Maps", "Effect": "Allow", "Action": "geo:Search*", "Resource": ["maps/eu-*", "maps/us-*"]},
    {"Sid": "KeepBackups", "Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "user-data/*/backups/*"},
    {"Sid": "NoAdmin", "Effect": "Deny", "Action": "*", "Resource": "admin/*"},
    {"Sid": "NoInternal", "Effect": "Deny", "Action": "app:*", "Resource": "public/internal/*"},
    {"Sid": "LockedSets", "Effect": "Deny", "Action": "sync:Delete*", "Resource": "datasets/*/locked-*"},
    {"Sid": "Quarantine", "Effect": "Deny", "Action": "s3:*", "Resource": "user-data/${identity.id}/quarantine/*"}
  ]
}"#;

const ID: &str = "eu-west-1:3f2b9c1e-7a4d-4e8f-9b6a-1c2d3e4f5a6b";
const SUB: &str = "8d5c2a10-4b7e-4f6a-9c3d-2e1f0a9b8c7d";

/// What a query must decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Allowed by the statement at this index.
    Allow(usize),
    /// Denied by the Deny statement at this index.
    Deny(usize),
    /// No statement matched.
    Implicit,
}

/// One request: action, resource, and the expected decision.
struct Query {
    action: &'static str,
    resource: String,
    expect: Expect,
}

fn q(action: &'static str, resource: impl Into<String>, expect: Expect) -> Query {
    Query {
        action,
        resource: resource.into(),
        expect,
    }
}

fn queries() -> Vec<Query> {
    use Expect::{Allow, Deny, Implicit};
    vec![
        // Early hits.
        q(
            "s3:GetObject",
            format!("user-data/{ID}/photos/2024/beach.jpg"),
            Allow(0),
        ),
        q("S3:PUTOBJECT", format!("user-data/{ID}/notes.txt"), Allow(0)),
        q("dynamodb:Query", format!("table/Profiles/{SUB}"), Allow(2)),
        q("app:ReadArticle", "public/news/2024/launch.html", Allow(4)),
        // Late hits.
        q("chat:SendMessage", "rooms/general/members/alice", Allow(7)),
        q("media:Upload", format!("uploads/{ID}/avatar.png"), Allow(9)),
        q("media:GetThumb", "cdn/eu/2024/thumb-3.jpg", Allow(10)),
        q("analytics:PutEvents", "stream/app-events", Allow(11)),
        q("geo:SearchPlaceIndex", "maps/us-east", Allow(14)),
        q("app:Vote", "polls/42/options/b", Allow(13)),
        // Explicit denies (found after the Allows they override).
        q(
            "s3:DeleteObject",
            format!("user-data/{ID}/backups/2024-01.tar"),
            Deny(15),
        ),
        q("app:ReadConfig", "admin/settings", Deny(16)),
        q("app:ReadSecrets", "public/internal/keys", Deny(17)),
        q("s3:GetObject", format!("user-data/{ID}/quarantine/virus.exe"), Deny(19)),
        // No statement: implicit deny.
        q(
            "s3:GetObject",
            "user-data/eu-west-1:someone-else/photos/x.jpg",
            Implicit,
        ),
        q("dynamodb:DeleteItem", format!("table/Profiles/{SUB}"), Implicit),
        q("app:GetItems", "catalog/item-12345", Implicit),
        q("chat:SendMessage", "rooms/general/members/bob", Implicit),
        q("media:Upload", format!("uploads/{ID}/script.js"), Implicit),
        q("iot:Publish", "topics/devices/42", Implicit),
    ]
}

fn main() -> Result<()> {
    let measured = std::env::args().any(|a| a == "--bench");
    let secs: f64 = match std::env::var("BENCH_SECS") {
        Ok(v) => v.parse().with_context(|| format!("BENCH_SECS={v:?} is not a number"))?,
        Err(_) if measured => 3.0,
        Err(_) => 0.2,
    };

    let started = Instant::now();
    let document = PolicyDocument::from_json(POLICY).context("the bench policy does not parse")?;
    let policy = document.compile();
    let compile_time = started.elapsed();
    if document.statements().len() != 20 {
        bail!(
            "the bench policy has {} statements, not 20",
            document.statements().len()
        );
    }

    let ctx = PolicyContext {
        identity_id: ID,
        user_sub: Some(SUB),
        username: Some("alice"),
    };
    let queries = queries();
    for query in &queries {
        let d = policy.evaluate(query.action, &query.resource, &ctx);
        let got = match (d.allowed, d.statement) {
            (true, Some(s)) => Expect::Allow(s.index),
            (false, Some(s)) => Expect::Deny(s.index),
            (false, None) => Expect::Implicit,
            (true, None) => bail!("{} on {}: allowed without a statement", query.action, query.resource),
        };
        if got != query.expect {
            bail!(
                "{} on {}: expected {:?}, got {got:?}",
                query.action,
                query.resource,
                query.expect
            );
        }
    }

    let budget = Duration::from_secs_f64(secs);
    let mut decisions: u64 = 0;
    let mut allowed: u64 = 0;
    let started = Instant::now();
    let elapsed = loop {
        for _ in 0..64 {
            for query in &queries {
                let d = policy.evaluate(black_box(query.action), black_box(&query.resource), black_box(&ctx));
                allowed += u64::from(black_box(d).allowed);
            }
        }
        decisions += 64 * queries.len() as u64;
        let elapsed = started.elapsed();
        if elapsed >= budget {
            break elapsed;
        }
    };

    let per_sec = decisions as f64 / elapsed.as_secs_f64();
    let ns = elapsed.as_nanos() as f64 / decisions as f64;
    println!(
        "policy: parse+compile of {} statements ({} bytes canonical) in {:?}",
        document.statements().len(),
        document.to_json().len(),
        compile_time
    );
    println!(
        "policy: {decisions} decisions ({allowed} allowed) over {} queries in {:.2} s on one thread",
        queries.len(),
        elapsed.as_secs_f64()
    );
    println!(
        "policy: {per_sec:.0} decisions/s, {ns:.1} ns/decision; {:.1}x the floor of {FLOOR:.0}/s ({})",
        per_sec / FLOOR,
        if per_sec >= FLOOR { "PASS" } else { "MISS" }
    );
    if !measured {
        println!("policy: smoke pass; run `cargo bench --bench policy` to measure");
    }
    Ok(())
}
