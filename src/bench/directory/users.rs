//! The bench population: users `user0000000`, `user0000001`, ... with
//! emails and names derived from the index alone, so that the load knows
//! which filters match how many users without asking; their import in
//! batches; and the check that a reused pool holds them.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::bail;
use futures::StreamExt as _;
use tonic::Code;

use super::report::ImportReport;
use super::{EMAIL_BLOCK, IMPORT_ATTEMPTS, IMPORT_BATCH, PAGE, PROGRESS_EVERY};
use crate::bench::auth::PASSWORD;
use crate::bench::driver::status_error;
use crate::bench::{format_rate, group_thousands};
use crate::client::Client;
use crate::clock::instant;
use crate::proto::{AdminImportUsersRequest, AttributeValue, ImportUserType, ListUsersRequest};

/// Given names, ASCII (prefixes are cut by characters) and with varied
/// initials, so that short prefixes match one name or several.
// Kept as a block: one name a line would be a hundred lines of names.
#[rustfmt::skip]
pub const GIVEN_NAMES: [&str; 50] = [
    "Aaliyah", "Adam", "Alice", "Amelia", "Benjamin", "Bianca", "Carlos", "Charlotte", "Chloe", "Daniel", "David",
    "Elena", "Emma", "Ethan", "Fatima", "Felix", "Gabriel", "Grace", "Hannah", "Henry", "Isabel", "Ivan", "Jack",
    "James", "Julia", "Kai", "Karen", "Leo", "Liam", "Lucia", "Maria", "Mateo", "Mia", "Noah", "Nora", "Olivia",
    "Omar", "Paul", "Priya", "Quinn", "Rosa", "Ryan", "Sara", "Sofia", "Thomas", "Uma", "Victor", "William", "Yuki",
    "Zoe",
];

/// Family names, drawn independently of the given name.
// Kept as a block: one name a line would be a hundred lines of names.
#[rustfmt::skip]
pub const FAMILY_NAMES: [&str; 50] = [
    "Adams", "Ahmed", "Anderson", "Baker", "Brown", "Chen", "Clark", "Cohen", "Costa", "Davis", "Diaz", "Evans",
    "Fischer", "Garcia", "Gonzalez", "Green", "Hall", "Hernandez", "Ivanov", "Jackson", "Johnson", "Kim", "King",
    "Kowalski", "Lee", "Lopez", "Martin", "Meyer", "Miller", "Moore", "Nakamura", "Nguyen", "Okafor", "Patel",
    "Perez", "Rossi", "Santos", "Schmidt", "Silva", "Singh", "Smith", "Suzuki", "Taylor", "Thompson", "Walker",
    "Wang", "White", "Williams", "Wilson", "Young",
];

/// The `i`-th bench user's name.
pub fn username(i: usize) -> String {
    format!("user{i:07}")
}

/// SplitMix64's finaliser: spreads consecutive indexes over the name lists
/// evenly, and independently of the email blocks, without a random draw,
/// so that a later run knows every user's names without reading them.
fn mix(i: usize) -> u64 {
    let mut x = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The index of user `i`'s given name in [`GIVEN_NAMES`].
fn given_name_index(i: usize) -> usize {
    // Less than 50, so it fits.
    (mix(i) % GIVEN_NAMES.len() as u64) as usize
}

/// The `i`-th bench user's given name.
pub fn given_name(i: usize) -> &'static str {
    GIVEN_NAMES[given_name_index(i)]
}

/// The `i`-th bench user's family name, from the high half of the same mix
/// so that it varies independently of the given name.
pub fn family_name(i: usize) -> &'static str {
    FAMILY_NAMES[((mix(i) >> 32) % FAMILY_NAMES.len() as u64) as usize]
}

/// The `i`-th bench user as imported.
pub fn import_user(i: usize) -> ImportUserType {
    let name = username(i);
    let attr = |n: &str, v: String| AttributeValue {
        name: n.to_string(),
        value: v,
    };
    ImportUserType {
        attributes: vec![
            attr("email", format!("{name}@example.com")),
            attr("given_name", given_name(i).to_string()),
            attr("family_name", family_name(i).to_string()),
        ],
        username: name,
        ..Default::default()
    }
}

/// The email prefixes `listusers` draws from: `user` and the first four of
/// the seven digits, one per *full* block of [`EMAIL_BLOCK`] users, so
/// every prefix matches exactly 1,000 users: two full pages and more.
pub fn email_prefixes(users: usize) -> Vec<String> {
    (0..users / EMAIL_BLOCK).map(|b| format!("user{b:04}")).collect()
}

/// The `given_name` prefixes `listusers` draws from: the first two to four
/// letters of each name, kept when the users they match (counted over the
/// deterministic names, and matched ignoring case as the server does) fill
/// at least two pages.
pub fn given_name_prefixes(users: usize) -> Vec<String> {
    let mut per_name = [0usize; GIVEN_NAMES.len()];
    for i in 0..users {
        per_name[given_name_index(i)] += 1;
    }
    let candidates: BTreeSet<String> = GIVEN_NAMES
        .iter()
        .flat_map(|n| (2..=4).map(move |len| n.chars().take(len).collect::<String>()))
        .collect();
    candidates
        .into_iter()
        .filter(|p| {
            let p = p.to_lowercase();
            let matched: usize = GIVEN_NAMES
                .iter()
                .zip(per_name)
                .filter(|(n, _)| n.to_lowercase().starts_with(&p))
                .map(|(_, c)| c)
                .sum();
            matched >= 2 * PAGE
        })
        .collect()
}

/// Whether `status` is worth retrying an import batch for: the cluster was
/// between leaders or busy, and the batch may or may not have landed.
fn transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted
    )
}

/// The user indexes of batch `b` out of `users`.
fn batch_range(b: usize, users: usize) -> std::ops::Range<usize> {
    let start = b * IMPORT_BATCH;
    start..(start + IMPORT_BATCH).min(users)
}

/// Imports users `0..users` with `concurrency` calls in flight, printing
/// the rate every [`PROGRESS_EVERY`] to stderr (stdout is for the report).
pub(super) async fn import_users(
    admin: &Client,
    pool_id: &str,
    users: usize,
    concurrency: usize,
) -> anyhow::Result<ImportReport> {
    eprintln!(
        "importing {} users into {pool_id} ({} callers, batches of {})",
        group_thousands(users as u64),
        concurrency,
        group_thousands(IMPORT_BATCH as u64)
    );
    let batches = users.div_ceil(IMPORT_BATCH);
    let mut calls = futures::stream::iter(0..batches)
        .map(|b| import_batch(admin, pool_id, batch_range(b, users)))
        .buffer_unordered(concurrency);
    let start = instant();
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    // The first tick is immediate; progress starts one period in.
    ticker.tick().await;
    let (mut imported, mut failures) = (0u64, 0u64);
    let (mut last_at, mut last_imported) = (start, 0u64);
    loop {
        tokio::select! {
            next = calls.next() => match next {
                Some(r) => {
                    let (n, f) = r?;
                    imported += n;
                    failures += f;
                }
                None => break,
            },
            _ = ticker.tick() => {
                let now = instant();
                let recent = (imported - last_imported) as f64 / (now - last_at).as_secs_f64();
                eprintln!(
                    "  {} / {} users, {} users/s (average {} users/s)",
                    group_thousands(imported),
                    group_thousands(users as u64),
                    format_rate(recent),
                    format_rate(imported as f64 / (now - start).as_secs_f64())
                );
                (last_at, last_imported) = (now, imported);
            }
        }
    }
    let seconds = (instant() - start).as_secs_f64();
    let users_per_sec = if seconds > 0.0 { imported as f64 / seconds } else { 0.0 };
    eprintln!(
        "imported {} users in {seconds:.1} s ({} users/s)",
        group_thousands(imported),
        format_rate(users_per_sec)
    );
    Ok(ImportReport {
        imported,
        failures_after_retry: failures,
        concurrency,
        seconds,
        users_per_sec,
    })
}

/// One `AdminImportUsers` call for `range`, retried on transient errors.
/// Returns the users imported and the failures tolerated. A failure in a
/// first attempt is fatal (the pool is fresh, so it is a bug or a bad
/// request); after a retry, failures are expected, since the attempt that
/// timed out may have created the users, and are only counted.
async fn import_batch(admin: &Client, pool_id: &str, range: std::ops::Range<usize>) -> anyhow::Result<(u64, u64)> {
    let body = AdminImportUsersRequest {
        user_pool_id: pool_id.to_string(),
        users: range.clone().map(import_user).collect(),
        password: PASSWORD.to_string(),
        mark_verified: true,
    };
    let what = || {
        format!(
            "AdminImportUsers {}..{}",
            username(range.start),
            username(range.end - 1)
        )
    };
    let mut attempt = 1;
    loop {
        match admin.admin().admin_import_users(admin.req(body.clone())).await {
            Ok(resp) => {
                let r = resp.into_inner();
                if attempt == 1 {
                    if let Some(f) = r.failures.first() {
                        bail!(
                            "{}: {} users failed, e.g. {}: {}",
                            what(),
                            r.failures.len(),
                            f.username,
                            f.reason
                        );
                    }
                }
                return Ok((u64::try_from(r.imported).unwrap_or(0), r.failures.len() as u64));
            }
            Err(s) if attempt < IMPORT_ATTEMPTS && transient(s.code()) => {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                attempt += 1;
            }
            Err(s) => return Err(status_error(&what(), s)),
        }
    }
}

/// Checks that the last user the load may pick exists, so that a reused
/// pool populated with fewer users (or a broken import) fails here, with a
/// clear message, rather than as a run of short pages or NotFound errors.
pub(super) async fn check_population(admin: &Client, pool_id: &str, users: usize) -> anyhow::Result<()> {
    let last = username(users - 1);
    let body = ListUsersRequest {
        user_pool_id: pool_id.to_string(),
        limit: 1,
        filter: format!("username = \"{last}\""),
        consistent_read: true,
        ..Default::default()
    };
    let found = admin
        .admin()
        .list_users(admin.req(body))
        .await
        .map_err(|s| status_error(&format!("ListUsers username = {last:?}"), s))?
        .into_inner()
        .users;
    if found.is_empty() {
        bail!(
            "pool {pool_id} has no user {last}: it holds fewer than --users {users} bench users \
             (populate one by leaving out --pool-id, or pass the --users it was populated with)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_named_and_described_deterministically() {
        let u = import_user(123_456);
        assert_eq!(u.username, "user0123456");
        let get = |n: &str| u.attributes.iter().find(|a| a.name == n).unwrap().value.clone();
        assert_eq!(get("email"), "user0123456@example.com");
        assert_eq!(get("given_name"), given_name(123_456));
        assert_eq!(get("family_name"), family_name(123_456));
        assert!(GIVEN_NAMES.contains(&given_name(7)));
        // Every name is used, roughly evenly.
        let mut per = [0usize; GIVEN_NAMES.len()];
        for i in 0..50_000 {
            per[given_name_index(i)] += 1;
        }
        assert!(per.iter().all(|&n| (800..1_200).contains(&n)), "{per:?}");
        let distinct: BTreeSet<&str> = GIVEN_NAMES.iter().copied().collect();
        assert_eq!(distinct.len(), GIVEN_NAMES.len());
    }

    #[test]
    fn import_batches_cover_every_user_once() {
        assert_eq!(batch_range(0, 2_500), 0..1_000);
        assert_eq!(batch_range(2, 2_500), 2_000..2_500);
        assert_eq!(2_500usize.div_ceil(IMPORT_BATCH), 3);
    }

    #[test]
    fn email_prefixes_cover_full_blocks_only() {
        assert_eq!(email_prefixes(999), Vec::<String>::new());
        assert_eq!(email_prefixes(1_500), vec!["user0000"]);
        let p = email_prefixes(1_000_000);
        assert_eq!(p.len(), 1_000);
        assert_eq!(p[123], "user0123");
        assert_eq!(p[999], "user0999");
        // Each prefix matches exactly the 1,000 users of its block.
        let n = 20_000;
        for prefix in email_prefixes(n) {
            let matched = (0..n).filter(|&i| username(i).starts_with(&prefix)).count();
            assert_eq!(matched, EMAIL_BLOCK, "{prefix}");
        }
    }

    #[test]
    fn every_name_prefix_fills_two_pages() {
        for n in [1_000, 20_000] {
            let prefixes = given_name_prefixes(n);
            for p in &prefixes {
                let p = p.to_lowercase();
                let matched = (0..n).filter(|&i| given_name(i).to_lowercase().starts_with(&p)).count();
                assert!(matched >= 2 * PAGE, "{p}: {matched} of {n}");
            }
        }
        // Too few users for any name to fill two pages: email prefixes only.
        assert!(given_name_prefixes(1_000).is_empty());
        assert!(given_name_prefixes(20_000).len() > 50);
        // With a million users every 2-to-4 letter prefix qualifies.
        assert!(given_name_prefixes(1_000_000).len() > 100);
    }
}
