//! The user directory on a real three-node cluster (issue 5): groups with
//! permissions in tokens and `CheckPermission`, `ListUsers` filters served
//! from indexes (100k users), account recovery and attribute verification,
//! cluster-wide lockout, disable/delete, malformed input, enumeration
//! timing, code-send rate limits and the audit log.
//!
//! Run with:
//! `cargo test --features failpoints --test directory -- --test-threads=1 --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Result};
use common::auth::*;
use common::directory::*;
use common::{poll_until, TestCluster};
use futures::StreamExt;
use serde_json::Value;
use tessera::auth::verifier::TokenVerifier;
use tessera::proto::*;
use tonic::Code;

async fn three_nodes() -> TestCluster {
    let started = Instant::now();
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    println!("cluster formed in {:?}", started.elapsed());
    c
}

/// A test that runs `$body` on a fresh three-node cluster and reports its
/// time; on failure the nodes' logs are printed.
macro_rules! scenario {
    ($name:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let start = Instant::now();
            let c = three_nodes().await;
            let r = $body(&c).await;
            println!(
                "{}: {} after {:?}",
                stringify!($name),
                if r.is_ok() { "passed" } else { "FAILED" },
                start.elapsed()
            );
            c.finish(r);
        }
    };
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// 1. Teachers and students
// ---------------------------------------------------------------------------

const TEACHER_PERMS: [&str; 4] = ["course:create", "course:edit", "course:upload", "course:read"];
const STUDENT_PERMS: [&str; 1] = ["course:read"];

/// Checks a group as returned by the API.
fn check_group(g: &GroupType, pool_id: &str, name: &str, precedence: Option<i32>, permissions: &[&str]) -> Result<()> {
    ensure!(g.group_name == name, "group_name {:?} != {name:?}", g.group_name);
    ensure!(g.user_pool_id == pool_id, "{name}: user_pool_id {:?}", g.user_pool_id);
    ensure!(
        g.precedence == precedence,
        "{name}: precedence {:?} != {precedence:?}",
        g.precedence
    );
    let got: BTreeSet<&str> = g.permissions.iter().map(String::as_str).collect();
    let want: BTreeSet<&str> = permissions.iter().copied().collect();
    ensure!(got == want, "{name}: permissions {:?} != {want:?}", g.permissions);
    ensure!(
        g.permissions.len() == want.len(),
        "{name}: duplicate permissions {:?}",
        g.permissions
    );
    ensure!(g.creation_date > 0, "{name}: creation_date {}", g.creation_date);
    ensure!(
        g.last_modified_date >= g.creation_date,
        "{name}: last_modified_date {} < creation_date {}",
        g.last_modified_date,
        g.creation_date
    );
    Ok(())
}

/// Verifies both tokens of `t` on node `via`'s JWKS and checks their
/// `cognito:groups` and the access token's `scope`; returns the access
/// claims.
async fn check_token_groups(
    d: &Dir,
    via: u64,
    who: &str,
    t: &Tokens,
    groups: &[&str],
    perms: &[&str],
) -> Result<Value> {
    let (id, access) = d.claims(via, t).await?;
    let want = strings(groups);
    let id_groups = groups_claim(&id)?;
    ensure!(
        id_groups == want,
        "{who}: id token cognito:groups {id_groups:?}, expected {want:?}"
    );
    let access_groups = groups_claim(&access)?;
    ensure!(
        access_groups == want,
        "{who}: access token cognito:groups {access_groups:?}, expected {want:?}"
    );
    let scope = access["scope"].as_str().unwrap_or_default();
    let want_scope = expected_scope(perms);
    ensure!(
        scope == want_scope,
        "{who}: access token scope {scope:?}, expected {want_scope:?}"
    );
    println!("  ok: {who}'s tokens: cognito:groups {want:?}, scope {scope:?}");
    Ok(access)
}

/// CheckPermission through `via` must answer `allowed` with `granted_by`
/// (in that order).
async fn check_perm(
    d: &Dir,
    via: u64,
    who: &str,
    access_token: &str,
    permission: &str,
    consistent: bool,
    granted_by: &[&str],
) -> Result<()> {
    let what = format!("CheckPermission({who}, {permission}, consistent={consistent}) on node {via}");
    let r = d
        .check_permission(via, access_token, permission, consistent)
        .await
        .map_err(status_err(&what))?;
    let allowed = !granted_by.is_empty();
    ensure!(
        r.allowed == allowed,
        "{what}: allowed {} (granted_by {:?}), expected {allowed}",
        r.allowed,
        r.granted_by
    );
    ensure!(
        r.granted_by == strings(granted_by),
        "{what}: granted_by {:?}, expected {granted_by:?}",
        r.granted_by
    );
    Ok(())
}

scenario!(teachers_and_students, teachers_body);

async fn teachers_body(c: &TestCluster) -> Result<()> {
    let d = Dir::create(
        c,
        DirSpec {
            name: "school",
            ..Default::default()
        },
    )
    .await?;

    // The two groups, through two nodes, read back through the third.
    let g = d
        .create_group(1, "teachers", Some(1), &TEACHER_PERMS)
        .await
        .map_err(status_err("CreateGroup teachers"))?;
    check_group(&g, &d.pool_id, "teachers", Some(1), &TEACHER_PERMS)?;
    let g = d
        .create_group(2, "students", Some(10), &STUDENT_PERMS)
        .await
        .map_err(status_err("CreateGroup students"))?;
    check_group(&g, &d.pool_id, "students", Some(10), &STUDENT_PERMS)?;
    let g = d
        .get_group(3, "teachers")
        .await
        .map_err(status_err("GetGroup teachers"))?;
    check_group(&g, &d.pool_id, "teachers", Some(1), &TEACHER_PERMS)?;
    ensure!(g.description == "the teachers group", "description {:?}", g.description);

    let tina = "tina.teacher";
    let sam = "sam.student";
    d.confirmed_user(1, tina, GOOD_PASSWORD, "tina@school.test").await?;
    d.confirmed_user(2, sam, GOOD_PASSWORD, "sam@school.test").await?;
    d.add_to_group(1, tina, "teachers")
        .await
        .map_err(status_err("AdminAddUserToGroup tina teachers"))?;
    d.add_to_group(2, sam, "students")
        .await
        .map_err(status_err("AdminAddUserToGroup sam students"))?;
    d.barrier_all().await?;

    // Tokens carry the groups and the permissions.
    let tina_t = d.sign_in(3, tina, GOOD_PASSWORD).await?;
    let tina_claims = check_token_groups(&d, 1, "tina", &tina_t, &["teachers"], &TEACHER_PERMS).await?;
    let sam_t = d.sign_in(3, sam, GOOD_PASSWORD).await?;
    let sam_claims = check_token_groups(&d, 2, "sam", &sam_t, &["students"], &STUDENT_PERMS).await?;

    // CheckPermission on every node, and the same answer offline: from
    // the verified scope, and from Tessera's resource-server library.
    let verifier = d.library_verifier(2).await?;
    let lib = |token: &str| {
        verifier
            .verify_access(token, tessera::clock::now_millis() / 1000)
            .map_err(|e| anyhow!("TokenVerifier::verify_access: {e}"))
    };
    let tina_lib = lib(&tina_t.access_token)?;
    let sam_lib = lib(&sam_t.access_token)?;
    let matrix: [(&str, &Tokens, &Value, &str, &[&str]); 7] = [
        ("tina", &tina_t, &tina_claims, "course:create", &["teachers"]),
        ("tina", &tina_t, &tina_claims, "course:upload", &["teachers"]),
        ("tina", &tina_t, &tina_claims, "course:read", &["teachers"]),
        ("tina", &tina_t, &tina_claims, "course:delete", &[]),
        ("sam", &sam_t, &sam_claims, "course:read", &["students"]),
        ("sam", &sam_t, &sam_claims, "course:create", &[]),
        ("sam", &sam_t, &sam_claims, "course:edit", &[]),
    ];
    for (i, (who, t, claims, perm, by)) in matrix.iter().enumerate() {
        let via = (i % 3) as u64 + 1;
        let granted = !by.is_empty();
        check_perm(&d, via, who, &t.access_token, perm, i % 2 == 0, by).await?;
        ensure!(
            scope_grants(claims, perm) == granted,
            "offline check of {who}'s token for {perm}: scope {}",
            claims["scope"]
        );
        let lib_claims = if *who == "tina" { &tina_lib } else { &sam_lib };
        ensure!(
            TokenVerifier::has_permission(lib_claims, perm) == granted,
            "TokenVerifier::has_permission({who}, {perm}) disagrees with CheckPermission"
        );
    }
    for not_a_permission in ["course", "course:", "course:rea", "course:read ", "COURSE:READ"] {
        ensure!(
            !TokenVerifier::has_permission(&tina_lib, not_a_permission),
            "TokenVerifier::has_permission grants {not_a_permission:?}"
        );
    }
    println!("  ok: CheckPermission and the offline scope agree for tina and sam");
    expect_exception(
        "CheckPermission with an id token",
        d.check_permission(1, &tina_t.id_token, "course:read", false).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    expect_exception(
        "CheckPermission with a garbage token",
        d.check_permission(2, "not.a.token", "course:read", false).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;

    // Sam becomes a teacher through node 1; node 2 sees it at once with a
    // consistent read, even with sam's old token, whose claims stay as
    // they were.
    d.add_to_group(1, sam, "teachers")
        .await
        .map_err(status_err("AdminAddUserToGroup sam teachers"))?;
    check_perm(
        &d,
        2,
        "sam (old token)",
        &sam_t.access_token,
        "course:create",
        true,
        &["teachers"],
    )
    .await?;
    check_perm(
        &d,
        2,
        "sam (old token)",
        &sam_t.access_token,
        "course:read",
        true,
        &["teachers", "students"],
    )
    .await?;
    ensure!(
        !scope_grants(&sam_claims, "course:create") && !TokenVerifier::has_permission(&sam_lib, "course:create"),
        "sam's old token must keep its claims"
    );
    // A token minted on node 3 (once node 3 has the change) carries both.
    let both: Vec<&str> = TEACHER_PERMS.iter().chain(STUDENT_PERMS.iter()).copied().collect();
    d.barrier(3).await?;
    let sam_teacher = d.sign_in(3, sam, GOOD_PASSWORD).await?;
    let sam_teacher_claims =
        check_token_groups(&d, 3, "sam as teacher", &sam_teacher, &["teachers", "students"], &both).await?;
    // A refresh mints from the current membership too.
    d.barrier(1).await?;
    let refreshed = d.refresh(1, &sam_t.refresh_token).await?;
    check_token_groups(&d, 1, "sam refreshed", &refreshed, &["teachers", "students"], &both).await?;

    // Listings.
    let groups = d.groups_for_user_all(2, sam, 1).await?;
    ensure!(
        groups == strings(&["teachers", "students"]),
        "AdminListGroupsForUser sam: {groups:?}"
    );
    let members = d.users_in_group_all(3, "teachers", 1).await?;
    ensure!(
        members == strings(&[sam, tina]),
        "ListUsersInGroup teachers: {members:?}"
    );
    let members = d.users_in_group_all(1, "students", 0).await?;
    ensure!(members == strings(&[sam]), "ListUsersInGroup students: {members:?}");

    // Removed again through node 2: node 3 denies at once, even for the
    // token that still says teacher.
    d.remove_from_group(2, sam, "teachers")
        .await
        .map_err(status_err("AdminRemoveUserFromGroup sam teachers"))?;
    check_perm(
        &d,
        3,
        "sam (teacher token)",
        &sam_teacher.access_token,
        "course:create",
        true,
        &[],
    )
    .await?;
    check_perm(
        &d,
        3,
        "sam (teacher token)",
        &sam_teacher.access_token,
        "course:read",
        true,
        &["students"],
    )
    .await?;
    ensure!(
        scope_grants(&sam_teacher_claims, "course:create")
            && TokenVerifier::has_permission(&lib(&sam_teacher.access_token)?, "course:create"),
        "the teacher token's own claims do not change"
    );
    d.barrier(1).await?;
    let sam_again = d.sign_in(1, sam, GOOD_PASSWORD).await?;
    check_token_groups(&d, 2, "sam removed", &sam_again, &["students"], &STUDENT_PERMS).await?;
    let members = d.users_in_group_all(2, "teachers", 0).await?;
    ensure!(
        members == strings(&[tina]),
        "ListUsersInGroup teachers after removal: {members:?}"
    );

    // Precedence order in tokens: lower first, ties by name, unset last.
    d.create_group(3, "zeta", None, &["forum:post"])
        .await
        .map_err(status_err("CreateGroup zeta"))?;
    d.create_group(1, "beta-tie", Some(5), &["lab:use"])
        .await
        .map_err(status_err("CreateGroup beta-tie"))?;
    d.create_group(2, "alpha-tie", Some(5), &["lab:use", "lab:book"])
        .await
        .map_err(status_err("CreateGroup alpha-tie"))?;
    for (via, g) in [(1, "zeta"), (2, "beta-tie"), (3, "alpha-tie")] {
        d.add_to_group(via, sam, g)
            .await
            .map_err(status_err(&format!("AdminAddUserToGroup sam {g}")))?;
    }
    d.barrier(2).await?;
    let t = d.sign_in(2, sam, GOOD_PASSWORD).await?;
    let order = ["alpha-tie", "beta-tie", "students", "zeta"];
    let perms = ["course:read", "forum:post", "lab:book", "lab:use"];
    check_token_groups(&d, 3, "sam in four groups", &t, &order, &perms).await?;
    let listed = d.groups_for_user_all(3, sam, 3).await?;
    ensure!(listed == strings(&order), "AdminListGroupsForUser order: {listed:?}");
    check_perm(
        &d,
        1,
        "sam",
        &t.access_token,
        "lab:use",
        true,
        &["alpha-tie", "beta-tie"],
    )
    .await?;

    // UpdateGroup: present fields replace, absent ones stay.
    let g = d
        .update_group(
            3,
            UpdateGroupRequest {
                group_name: "zeta".into(),
                user_pool_id: d.pool_id.clone(),
                precedence: Some(0),
                permissions: Some(PermissionList {
                    values: strings(&["forum:post", "forum:moderate"]),
                }),
                ..Default::default()
            },
        )
        .await
        .map_err(status_err("UpdateGroup zeta"))?;
    check_group(&g, &d.pool_id, "zeta", Some(0), &["forum:post", "forum:moderate"])?;
    ensure!(
        g.description == "the zeta group",
        "UpdateGroup without a description changed it to {:?}",
        g.description
    );
    let g = d
        .update_group(
            1,
            UpdateGroupRequest {
                group_name: "zeta".into(),
                user_pool_id: d.pool_id.clone(),
                description: Some("moderators".into()),
                ..Default::default()
            },
        )
        .await
        .map_err(status_err("UpdateGroup zeta description"))?;
    check_group(&g, &d.pool_id, "zeta", Some(0), &["forum:post", "forum:moderate"])?;
    let g = d.get_group(2, "zeta").await.map_err(status_err("GetGroup zeta"))?;
    check_group(&g, &d.pool_id, "zeta", Some(0), &["forum:post", "forum:moderate"])?;
    ensure!(g.description == "moderators", "description {:?}", g.description);
    d.barrier(3).await?;
    let t = d.sign_in(3, sam, GOOD_PASSWORD).await?;
    let order = ["zeta", "alpha-tie", "beta-tie", "students"];
    let perms = ["course:read", "forum:moderate", "forum:post", "lab:book", "lab:use"];
    check_token_groups(&d, 1, "sam after UpdateGroup", &t, &order, &perms).await?;
    check_perm(&d, 2, "sam", &t.access_token, "forum:moderate", true, &["zeta"]).await?;

    // ListGroups pagination over more groups than a page.
    let mut all: BTreeSet<String> = ["teachers", "students", "zeta", "beta-tie", "alpha-tie"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for i in 0..6 {
        let name = format!("extra-{i:02}");
        d.create_group((i % 3) as u64 + 1, &name, Some(100 + i), &[])
            .await
            .map_err(status_err(&format!("CreateGroup {name}")))?;
        all.insert(name);
    }
    let (listed, pages) = d.list_groups_all(2, 4).await?;
    let names: BTreeSet<String> = listed.iter().map(|g| g.group_name.clone()).collect();
    ensure!(names == all, "ListGroups by 4: {names:?}, expected {all:?}");
    ensure!(pages == 3, "11 groups by 4 should take 3 pages, took {pages}");
    let (listed, pages) = d.list_groups_all(3, 0).await?;
    ensure!(
        listed.len() == 11 && pages == 1,
        "ListGroups with limit 0 (60): {} groups in {pages} pages",
        listed.len()
    );
    println!("  ok: ListGroups pages through 11 groups by 4 without gaps or duplicates");

    // DeleteGroup: gone everywhere, and from the members' next tokens.
    d.delete_group(1, "zeta")
        .await
        .map_err(status_err("DeleteGroup zeta"))?;
    expect_exception(
        "GetGroup of a deleted group",
        d.get_group(3, "zeta").await,
        Code::NotFound,
        "ResourceNotFoundException",
    )?;
    expect_exception(
        "DeleteGroup twice",
        d.delete_group(2, "zeta").await,
        Code::NotFound,
        "ResourceNotFoundException",
    )?;
    check_perm(&d, 2, "sam (token with zeta)", &t.access_token, "forum:post", true, &[]).await?;
    let listed = d.groups_for_user_all(1, sam, 0).await?;
    ensure!(
        listed == strings(&["alpha-tie", "beta-tie", "students"]),
        "AdminListGroupsForUser after DeleteGroup: {listed:?}"
    );
    d.barrier(2).await?;
    let t = d.sign_in(2, sam, GOOD_PASSWORD).await?;
    check_token_groups(
        &d,
        3,
        "sam after DeleteGroup",
        &t,
        &["alpha-tie", "beta-tie", "students"],
        &["course:read", "lab:book", "lab:use"],
    )
    .await?;
    let (listed, _) = d.list_groups_all(1, 0).await?;
    ensure!(
        listed.len() == 10,
        "ListGroups after DeleteGroup: {} groups",
        listed.len()
    );

    // A user in no group: no groups claim, the bare sign-in scope.
    d.confirmed_user(3, "nora.nogroup", GOOD_PASSWORD, "nora@school.test")
        .await?;
    let nora = d.sign_in(1, "nora.nogroup", GOOD_PASSWORD).await?;
    check_token_groups(&d, 2, "nora", &nora, &[], &[]).await?;
    check_perm(&d, 3, "nora", &nora.access_token, "course:read", false, &[]).await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. ListUsers
// ---------------------------------------------------------------------------

/// One user of the local model the listings are checked against.
#[derive(Debug, Clone)]
struct ModelUser {
    username: String,
    attrs: BTreeMap<String, String>,
    status: &'static str,
    enabled: bool,
    sub: String,
}

impl ModelUser {
    /// The value a filter on `attr` compares with.
    fn value(&self, attr: &str) -> Option<String> {
        match attr {
            "username" => Some(self.username.clone()),
            "sub" => Some(self.sub.clone()),
            "cognito:user_status" => Some(self.status.to_string()),
            "status" => Some(if self.enabled { "Enabled" } else { "Disabled" }.to_string()),
            "enabled" => Some(self.enabled.to_string()),
            "tier" => self.attrs.get("custom:tier").cloned(),
            other => self.attrs.get(other).cloned(),
        }
    }
}

/// Parses `attr = "v"` / `attr ^= "v"` of the test's own filters.
fn split_filter(filter: &str) -> (String, bool, String) {
    let (attr, prefix, rest) = if let Some((a, r)) = filter.split_once("^=") {
        (a, true, r)
    } else {
        let (a, r) = filter.split_once('=').expect("a test filter has an operator");
        (a, false, r)
    };
    let value = rest.trim().trim_matches('"').to_string();
    (attr.trim().to_string(), prefix, value)
}

/// The usernames `filter` must list, in listing order.
fn expected_for(model: &[ModelUser], filter: &str) -> Vec<String> {
    let mut hits: Vec<(String, String, String)> = if filter.is_empty() {
        model
            .iter()
            .map(|u| (String::new(), u.sub.clone(), u.username.clone()))
            .collect()
    } else {
        let (attr, prefix, value) = split_filter(filter);
        let want = value.to_lowercase();
        model
            .iter()
            .filter_map(|u| {
                let v = u.value(&attr)?;
                let lv = v.to_lowercase();
                let hit = if prefix { lv.starts_with(&want) } else { lv == want };
                hit.then(|| (v, u.sub.clone(), u.username.clone()))
            })
            .collect()
    };
    hits.sort();
    hits.into_iter().map(|(_, _, n)| n).collect()
}

scenario!(list_users_filters_and_pagination, list_users_body);

const GIVEN: [&str; 8] = ["ann", "anna", "annette", "bob", "bobby", "carl", "dana", "eve"];
const FAMILY: [&str; 3] = ["archer", "baker", "cole"];
const TIERS: [&str; 3] = ["gold", "silver", "bronze"];

async fn list_users_body(c: &TestCluster) -> Result<()> {
    let started = Instant::now();
    let d = Dir::create(
        c,
        DirSpec {
            name: "listing",
            custom: &[
                CustomAttr {
                    name: "tier",
                    indexed: true,
                },
                CustomAttr {
                    name: "note",
                    indexed: false,
                },
            ],
            ..Default::default()
        },
    )
    .await?;

    // 24 generated users and one with mixed-case names, imported in one
    // call; two that signed up (unconfirmed); one admin-created.
    let mut model: Vec<ModelUser> = Vec::new();
    let mut import = Vec::new();
    for i in 0..24usize {
        let given = GIVEN[i % 8];
        let family = FAMILY[i / 8];
        let username = format!("{given}.{family}");
        let mut attrs: BTreeMap<String, String> = BTreeMap::new();
        attrs.insert(
            "email".into(),
            format!("{given}.{family}@{}.test", if i % 2 == 0 { "alpha" } else { "beta" }),
        );
        attrs.insert("phone_number".into(), format!("+1555{i:07}"));
        attrs.insert("name".into(), format!("{given} {family}"));
        attrs.insert("given_name".into(), given.into());
        attrs.insert("family_name".into(), family.into());
        attrs.insert("preferred_username".into(), format!("p-{given}"));
        if i % 5 != 4 {
            attrs.insert("custom:tier".into(), TIERS[i % 3].into());
        }
        model.push(ModelUser {
            username,
            attrs,
            status: "CONFIRMED",
            enabled: true,
            sub: String::new(),
        });
    }
    let mut zoe: BTreeMap<String, String> = BTreeMap::new();
    zoe.insert("email".into(), "zoe.mcallister@gamma.test".into());
    zoe.insert("given_name".into(), "Zoe".into());
    zoe.insert("family_name".into(), "McAllister".into());
    zoe.insert("custom:tier".into(), "Platinum".into());
    model.push(ModelUser {
        username: "zoe.mcallister".into(),
        attrs: zoe,
        status: "CONFIRMED",
        enabled: true,
        sub: String::new(),
    });
    for u in &model {
        import.push(ImportUserType {
            username: u.username.clone(),
            attributes: u
                .attrs
                .iter()
                .map(|(n, v)| AttributeValue {
                    name: n.clone(),
                    value: v.clone(),
                })
                .collect(),
            ..Default::default()
        });
    }
    let r = d
        .import_users(1, import, GOOD_PASSWORD, true)
        .await
        .map_err(status_err("AdminImportUsers of 25"))?;
    ensure!(
        r.imported == 25 && r.failures.is_empty(),
        "AdminImportUsers: imported {}, failures {:?}",
        r.imported,
        r.failures
    );
    // Duplicates, against the pool and within the batch, fail one by one.
    let r = d
        .import_users(
            2,
            vec![
                ImportUserType {
                    username: "ann.archer".into(),
                    attributes: aattrs(&[("email", "other@alpha.test")]),
                    ..Default::default()
                },
                ImportUserType {
                    username: "ivy.imported".into(),
                    attributes: aattrs(&[("email", "ivy@delta.test")]),
                    ..Default::default()
                },
                ImportUserType {
                    username: "ivy.imported".into(),
                    attributes: aattrs(&[("email", "ivy2@delta.test")]),
                    ..Default::default()
                },
            ],
            GOOD_PASSWORD,
            true,
        )
        .await
        .map_err(status_err("AdminImportUsers with duplicates"))?;
    let failed: BTreeSet<&str> = r.failures.iter().map(|f| f.username.as_str()).collect();
    ensure!(
        r.imported == 1 && r.failures.len() == 2 && failed == BTreeSet::from(["ann.archer", "ivy.imported"]),
        "AdminImportUsers with two duplicates: imported {}, failures {:?}",
        r.imported,
        r.failures
    );
    ensure!(
        r.failures.iter().all(|f| !f.reason.is_empty()),
        "import failures need a reason: {:?}",
        r.failures
    );
    let mut ivy = BTreeMap::new();
    ivy.insert("email".to_string(), "ivy@delta.test".to_string());
    model.push(ModelUser {
        username: "ivy.imported".into(),
        attrs: ivy,
        status: "CONFIRMED",
        enabled: true,
        sub: String::new(),
    });
    for (via, name) in [(2, "uma.unconfirmed"), (3, "ulf.unconfirmed")] {
        let email = format!("{name}@delta.test");
        d.sign_up(via, d.sign_up_request(name, GOOD_PASSWORD, &email))
            .await
            .map_err(status_err(&format!("SignUp {name}")))?;
        let mut a = BTreeMap::new();
        a.insert("email".to_string(), email);
        model.push(ModelUser {
            username: name.into(),
            attrs: a,
            status: "UNCONFIRMED",
            enabled: true,
            sub: String::new(),
        });
    }
    d.admin_create_user(3, "fay.forced", &[("email", "fay.forced@delta.test")], OTHER_PASSWORD)
        .await
        .map_err(status_err("AdminCreateUser fay.forced"))?;
    let mut a = BTreeMap::new();
    a.insert("email".to_string(), "fay.forced@delta.test".to_string());
    model.push(ModelUser {
        username: "fay.forced".into(),
        attrs: a,
        status: "FORCE_CHANGE_PASSWORD",
        enabled: true,
        sub: String::new(),
    });
    admin_call(&d, 1, "AdminDisableUser", "bob.baker").await?;
    model
        .iter_mut()
        .find(|u| u.username == "bob.baker")
        .ok_or_else(|| anyhow!("no bob.baker"))?
        .enabled = false;

    // Imported users are CONFIRMED with the batch's password.
    let u = d
        .admin_get_user(2, "ann.archer")
        .await
        .map_err(status_err("AdminGetUser ann.archer"))?;
    ensure!(u.user_status == "CONFIRMED", "imported status {}", u.user_status);
    ensure!(
        admin_attr(&u.user_attributes, "email_verified") == Some("true"),
        "mark_verified: {:?}",
        u.user_attributes
    );
    d.sign_in(3, "ann.archer", GOOD_PASSWORD).await?;

    // The whole pool without a filter, 3 per page: learn the subs, check
    // every attribute, status and the order by sub.
    let (listed, pages) = d.list_users_all(2, "", 3, &[]).await?;
    ensure!(
        listed.len() == model.len(),
        "ListUsers without a filter listed {} users, the pool has {}: {:?}",
        listed.len(),
        model.len(),
        listed.iter().map(|u| &u.username).collect::<Vec<_>>()
    );
    ensure!(
        pages == model.len().div_ceil(3),
        "{} users by 3 took {pages} pages",
        model.len()
    );
    for lu in &listed {
        let m = model
            .iter_mut()
            .find(|m| m.username == lu.username)
            .ok_or_else(|| anyhow!("ListUsers listed an unknown user {:?}", lu.username))?;
        m.sub = sub_of(lu)?;
        let got = attr_map(lu);
        for (k, v) in &m.attrs {
            ensure!(
                got.get(k) == Some(v),
                "{}: attribute {k} is {:?}, expected {v:?}",
                m.username,
                got.get(k)
            );
        }
        ensure!(
            lu.user_status == m.status && lu.enabled == m.enabled,
            "{}: status {} enabled {}, expected {} {}",
            m.username,
            lu.user_status,
            lu.enabled,
            m.status,
            m.enabled
        );
        ensure!(lu.user_create_date > 0, "{}: no user_create_date", m.username);
    }
    let want = expected_for(&model, "");
    let got: Vec<String> = listed.iter().map(|u| u.username.clone()).collect();
    ensure!(got == want, "ListUsers order by sub:\n got {got:?}\nwant {want:?}");
    println!("  ok: {} users in {pages} pages of 3, ordered by sub", got.len());

    let ann_baker_sub = model
        .iter()
        .find(|u| u.username == "ann.baker")
        .map(|u| u.sub.clone())
        .unwrap_or_default();
    let sub_filter = format!("sub = \"{ann_baker_sub}\"");
    let filters: Vec<(&str, i32)> = vec![
        ("username = \"ann.baker\"", 2),
        ("username ^= \"ann\"", 2),
        ("email = \"bob.cole@alpha.test\"", 0),
        ("email ^= \"ANN\"", 4),
        ("email ^= \"ann.archer@alpha\"", 3),
        ("phone_number = \"+15550000007\"", 1),
        ("phone_number ^= \"+1555000001\"", 3),
        ("name ^= \"anna \"", 2),
        ("given_name = \"bob\"", 2),
        ("given_name = \"ZOE\"", 2),
        ("family_name ^= \"ar\"", 3),
        ("family_name = \"mcallister\"", 2),
        ("family_name ^= \"MCA\"", 2),
        ("preferred_username = \"p-eve\"", 2),
        (sub_filter.as_str(), 2),
        ("cognito:user_status = \"UNCONFIRMED\"", 1),
        ("cognito:user_status = \"FORCE_CHANGE_PASSWORD\"", 2),
        ("cognito:user_status = \"confirmed\"", 4),
        ("status = \"Disabled\"", 2),
        ("status = \"enabled\"", 5),
        ("enabled = \"false\"", 2),
        ("enabled = \"true\"", 6),
        ("custom:tier = \"gold\"", 2),
        ("tier ^= \"SIL\"", 2),
        ("custom:tier = \"platinum\"", 2),
        ("email = \"nobody@nowhere.test\"", 5),
    ];
    for (i, (filter, limit)) in filters.iter().enumerate() {
        let via = (i % 3) as u64 + 1;
        let want = expected_for(&model, filter);
        let (listed, pages) = d.list_users_all(via, filter, *limit, &[]).await?;
        let got: Vec<String> = listed.iter().map(|u| u.username.clone()).collect();
        ensure!(
            got == want,
            "ListUsers {filter:?} (limit {limit}, node {via}):\n got {got:?}\nwant {want:?}"
        );
        println!("  ok: {filter} -> {} users in {pages} page(s) of {limit}", got.len());
    }
    // Non-vacuous: the filters above did select different subsets.
    ensure!(expected_for(&model, "username ^= \"ann\"").len() == 9, "model");
    ensure!(
        expected_for(&model, "cognito:user_status = \"CONFIRMED\"").len() == 26,
        "model"
    );

    // attributes_to_get limits what is returned.
    let (listed, _) = d
        .list_users_all(3, "username ^= \"ann\"", 0, &["email", "custom:tier"])
        .await?;
    ensure!(listed.len() == 9, "attributes_to_get listing: {} users", listed.len());
    for lu in &listed {
        let m = model
            .iter()
            .find(|m| m.username == lu.username)
            .ok_or_else(|| anyhow!("unknown {}", lu.username))?;
        let got = attr_map(lu);
        let mut want = BTreeMap::new();
        for k in ["email", "custom:tier"] {
            if let Some(v) = m.attrs.get(k) {
                want.insert(k.to_string(), v.clone());
            }
        }
        ensure!(
            got == want,
            "{} with attributes_to_get [email, custom:tier]: {got:?}, expected {want:?}",
            lu.username
        );
    }
    println!("  ok: attributes_to_get returns only email and custom:tier");

    // The CLI, as the issue spells it.
    let v = c
        .cli_admin_json(
            1,
            &["user", "list", "--pool-id", &d.pool_id, "--filter", "email ^= \"ann\""],
        )
        .await?;
    let names: Vec<String> = v["users"]
        .as_array()
        .ok_or_else(|| anyhow!("tessera user list printed no users array: {v}"))?
        .iter()
        .map(|u| u["username"].as_str().unwrap_or_default().to_string())
        .collect();
    let want = expected_for(&model, "email ^= \"ann\"");
    ensure!(
        names == want,
        "tessera user list --filter: {names:?}, expected {want:?}"
    );
    println!(
        "  ok: tessera user list --filter 'email ^= \"ann\"' --output json lists {} users",
        names.len()
    );
    cursors_are_bound(c, &d).await?;
    println!("  small pool checked after {:?}", started.elapsed());

    big_pool(c).await
}

/// A `ListUsers` cursor resumes on any node, and only for the pool and the
/// filter it was issued for: the attack is a token carried to another pool
/// or filter, or a store key written by hand (what tokens were before they
/// were sealed), and each is refused with `InvalidParameterException`.
async fn cursors_are_bound(c: &TestCluster, d: &Dir) -> Result<()> {
    let filter = "email ^= \"a\"";
    let first = d
        .list_users(1, filter, 2, "", &[])
        .await
        .map_err(status_err("ListUsers page 1"))?;
    ensure!(
        !first.pagination_token.is_empty(),
        "ListUsers {filter:?} limit 2 gave one page only"
    );
    let second = d
        .list_users(3, filter, 2, &first.pagination_token, &[])
        .await
        .map_err(status_err("ListUsers page 2 on another node"))?;
    ensure!(
        second
            .users
            .iter()
            .all(|u| !first.users.iter().any(|f| f.username == u.username)),
        "page 2 repeats page 1"
    );
    let other = Dir::create(
        c,
        DirSpec {
            name: "listing-other",
            ..Default::default()
        },
    )
    .await?;
    let refused = |what: &str, r: Result<ListUsersResponse, tonic::Status>| -> Result<()> {
        match r {
            Ok(page) => bail!("{what}: accepted, listed {} users", page.users.len()),
            Err(s) if s.code() == Code::InvalidArgument && s.message().contains("InvalidParameterException") => {
                ensure!(s.message().contains("pagination_token"), "{what}: {}", s.message());
                println!("  ok: {what} refused: {}", s.message());
                Ok(())
            }
            Err(s) => bail!("{what}: {:?} {}", s.code(), s.message()),
        }
    };
    refused(
        "a cursor of another pool",
        other.list_users(2, filter, 2, &first.pagination_token, &[]).await,
    )?;
    refused(
        "a cursor of another filter",
        d.list_users(2, "email ^= \"b\"", 2, &first.pagination_token, &[]).await,
    )?;
    refused(
        "a cursor of the filtered listing without the filter",
        d.list_users(2, "", 2, &first.pagination_token, &[]).await,
    )?;
    use base64::Engine as _;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"email\0a");
    refused("a hand-made index key", d.list_users(2, filter, 2, &forged, &[]).await)?;
    // The audit log's cursor is bound to its pool the same way.
    let events = d
        .auth_events_page(1, "", 1, "")
        .await
        .map_err(status_err("AdminListUserAuthEvents page 1"))?;
    ensure!(!events.next_token.is_empty(), "the pool's audit log fits one event");
    match other.auth_events_page(2, "", 1, &events.next_token).await {
        Err(s) if s.code() == Code::InvalidArgument && s.message().contains("next_token") => {
            println!("  ok: an audit cursor of another pool refused: {}", s.message())
        }
        other => bail!("an audit cursor of another pool: {other:?}"),
    }
    Ok(())
}

/// `AdminDisableUser`, `AdminEnableUser`, `AdminDeleteUser`,
/// `AdminUserGlobalSignOut` or `AdminResetUserPassword` of `username`
/// through node `via`.
async fn admin_call_raw(d: &Dir, via: u64, call: &str, username: &str) -> Result<(), tonic::Status> {
    let c = d.node(via);
    let pool = d.pool_id.clone();
    let user = username.to_string();
    match call {
        "AdminDisableUser" => {
            c.admin()
                .admin_disable_user(c.req(AdminDisableUserRequest {
                    user_pool_id: pool,
                    username: user,
                }))
                .await?;
        }
        "AdminEnableUser" => {
            c.admin()
                .admin_enable_user(c.req(AdminEnableUserRequest {
                    user_pool_id: pool,
                    username: user,
                }))
                .await?;
        }
        "AdminDeleteUser" => {
            c.admin()
                .admin_delete_user(c.req(AdminDeleteUserRequest {
                    user_pool_id: pool,
                    username: user,
                }))
                .await?;
        }
        "AdminUserGlobalSignOut" => {
            c.admin()
                .admin_user_global_sign_out(c.req(AdminUserGlobalSignOutRequest {
                    user_pool_id: pool,
                    username: user,
                }))
                .await?;
        }
        "AdminResetUserPassword" => {
            c.admin()
                .admin_reset_user_password(c.req(AdminResetUserPasswordRequest {
                    user_pool_id: pool,
                    username: user,
                    client_metadata: Default::default(),
                }))
                .await?;
        }
        other => return Err(tonic::Status::internal(format!("test harness: no admin call {other}"))),
    }
    Ok(())
}

async fn admin_call(d: &Dir, via: u64, call: &str, username: &str) -> Result<()> {
    admin_call_raw(d, via, call, username)
        .await
        .map_err(status_err(&format!("{call} {username} through node {via}")))
}

/// The email of big-pool user `i`: a permutation of the numbers, so that
/// email order, username order and insertion order all differ.
fn big_email(i: usize) -> String {
    format!("m{:06}@big.test", (i * 7919) % 100_000)
}

const BIG_USERS: usize = 100_000;

/// Which big-pool users (by email and username) a filter selects.
type EmailUserPredicate = Box<dyn Fn(&str, &str) -> bool>;

/// Builds a 100k-user pool with AdminImportUsers and checks that a
/// filtered page is served from an index (rows scanned <= limit + 1).
async fn big_pool(c: &TestCluster) -> Result<()> {
    let d = Dir::create(
        c,
        DirSpec {
            name: "big",
            ..Default::default()
        },
    )
    .await?;
    let start = Instant::now();
    let batches: Vec<Vec<ImportUserType>> = (0..BIG_USERS / 1000)
        .map(|b| {
            (b * 1000..(b + 1) * 1000)
                .map(|i| ImportUserType {
                    username: format!("u{i:06}"),
                    attributes: aattrs(&[("email", &big_email(i))]),
                    ..Default::default()
                })
                .collect()
        })
        .collect();
    let d_ref = &d;
    let results: Vec<Result<i32>> = futures::stream::iter(batches.into_iter().enumerate())
        .map(|(b, users)| async move {
            let via = (b % 3) as u64 + 1;
            let r = d_ref
                .import_users(via, users, GOOD_PASSWORD, true)
                .await
                .map_err(status_err(&format!("AdminImportUsers batch {b} via node {via}")))?;
            ensure!(
                r.failures.is_empty(),
                "batch {b}: {} failures, first {:?}",
                r.failures.len(),
                r.failures.first()
            );
            Ok(r.imported)
        })
        .buffer_unordered(3)
        .collect()
        .await;
    let mut imported = 0;
    for r in results {
        imported += r?;
    }
    ensure!(imported as usize == BIG_USERS, "imported {imported} users");
    println!("  imported {BIG_USERS} users in {:?}", start.elapsed());
    let pool = d
        .node(1)
        .describe_user_pool(&d.pool_id, true)
        .await
        .map_err(status_err("DescribeUserPool big"))?;
    println!("  estimated_number_of_users: {}", pool.estimated_number_of_users);

    // email -> username, to know which users a prefix selects.
    let mut by_email: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..BIG_USERS {
        by_email.insert(big_email(i), format!("u{i:06}"));
    }
    let via = 2;
    d.barrier(via).await?;
    let node = c.node(via);
    let scanned = || async {
        node.metric(ROWS_SCANNED)
            .await?
            .ok_or_else(|| anyhow!("node {via}'s /metrics has no {ROWS_SCANNED}"))
    };

    let cases: [(&str, EmailUserPredicate); 3] = [
        (
            "email ^= \"m0421\"",
            Box::new(|email: &str, _u: &str| email.starts_with("m0421")),
        ),
        (
            "username ^= \"u0999\"",
            Box::new(|_e: &str, u: &str| u.starts_with("u0999")),
        ),
        (
            "email = \"m077777@big.test\"",
            Box::new(|email: &str, _u: &str| email == "m077777@big.test"),
        ),
    ];
    for (filter, pred) in cases.iter() {
        let by_username = filter.starts_with("username");
        let mut want: Vec<(String, String)> = by_email
            .iter()
            .filter(|(e, u)| pred(e, u))
            .map(|(e, u)| {
                if by_username {
                    (u.clone(), u.clone())
                } else {
                    (e.clone(), u.clone())
                }
            })
            .collect();
        want.sort();
        let want: Vec<String> = want.into_iter().map(|(_, u)| u).collect();
        let mut token = String::new();
        let mut got = Vec::new();
        for page_no in 1.. {
            let before = scanned().await?;
            let t = Instant::now();
            let page = d
                .list_users(via, filter, 60, &token, &[])
                .await
                .map_err(status_err(&format!("ListUsers {filter} page {page_no} over 100k")))?;
            let took = t.elapsed();
            let after = scanned().await?;
            let delta = after - before;
            println!(
                "  {filter} page {page_no}: {} users in {took:?}, {delta} index rows scanned",
                page.users.len()
            );
            ensure!(
                delta <= 61.0,
                "{filter} page {page_no} over 100k users scanned {delta} rows (limit 60 allows 61)"
            );
            ensure!(
                delta >= 1.0 || page.users.is_empty(),
                "{filter}: {ROWS_SCANNED} did not move ({before} -> {after}) for a page of {} users",
                page.users.len()
            );
            got.extend(page.users.into_iter().map(|u| u.username));
            if page.pagination_token.is_empty() {
                break;
            }
            ensure!(page_no < 10, "{filter}: more than 10 pages");
            token = page.pagination_token;
        }
        ensure!(
            got == want,
            "{filter} over 100k users:\n got {} {:?}...\nwant {} {:?}...",
            got.len(),
            got.iter().take(5).collect::<Vec<_>>(),
            want.len(),
            want.iter().take(5).collect::<Vec<_>>()
        );
    }
    // Without a filter, one page (informational).
    let before = scanned().await?;
    let page = d
        .list_users(via, "", 60, "", &[])
        .await
        .map_err(status_err("ListUsers without a filter over 100k"))?;
    let delta = scanned().await? - before;
    ensure!(page.users.len() == 60, "unfiltered page of {}", page.users.len());
    println!("  unfiltered page of 60 over 100k: {delta} rows scanned (informational)");
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. Account recovery and attribute verification
// ---------------------------------------------------------------------------

scenario!(account_recovery_and_verification, recovery_body);

/// A code delivery for email: medium, attribute, masked destination.
fn check_delivery(what: &str, d: Option<&CodeDeliveryDetailsType>, unmasked: &str) -> Result<()> {
    let d = d.ok_or_else(|| anyhow!("{what}: no code_delivery_details"))?;
    ensure!(
        d.delivery_medium == "EMAIL" && d.attribute_name == "email",
        "{what}: delivery {d:?}"
    );
    ensure!(
        !d.destination.is_empty() && !d.destination.contains(unmasked),
        "{what}: destination {:?} must be masked",
        d.destination
    );
    Ok(())
}

async fn recovery_body(c: &TestCluster) -> Result<()> {
    let d = Dir::create(
        c,
        DirSpec {
            name: "recovery",
            alias_attributes: &["email"],
            ..Default::default()
        },
    )
    .await?;
    let user = "rita.recovery";
    let old_email = "rita@old.test";
    let new_email = "rita@new.test";
    d.confirmed_user(1, user, GOOD_PASSWORD, old_email).await?;
    let first = d.sign_in(1, user, GOOD_PASSWORD).await?;

    // ForgotPassword on node 2: a code by email to the verified address.
    let r = d.forgot_password(2, user).await.map_err(status_err("ForgotPassword"))?;
    check_delivery("ForgotPassword", r.code_delivery_details.as_ref(), old_email)?;
    let m = d.outbox_after(2, user, "FORGOT_PASSWORD", 0).await?;
    check_code_message(&m)?;
    ensure!(
        m.destination == old_email,
        "FORGOT_PASSWORD sent to {:?}",
        m.destination
    );
    ensure!(m.delivery_medium == "EMAIL", "medium {}", m.delivery_medium);
    let code = m.code.clone();
    expect_exception(
        "ConfirmForgotPassword with a wrong code",
        d.confirm_forgot_password(3, user, &wrong_code(&code), OTHER_PASSWORD)
            .await,
        Code::InvalidArgument,
        "CodeMismatchException",
    )?;
    expect_exception(
        "ConfirmForgotPassword with a weak password",
        d.confirm_forgot_password(3, user, &code, "weak").await,
        Code::InvalidArgument,
        "InvalidPasswordException",
    )?;
    d.confirm_forgot_password(3, user, &code, OTHER_PASSWORD)
        .await
        .map_err(status_err("ConfirmForgotPassword"))?;
    // The code is spent.
    expect_one_of(
        "ConfirmForgotPassword with the spent code",
        d.confirm_forgot_password(1, user, &code, THIRD_PASSWORD).await,
        &[
            (Code::InvalidArgument, "CodeMismatchException"),
            (Code::InvalidArgument, "ExpiredCodeException"),
        ],
    )?;
    // The old password is gone, the new one works, every refresh token
    // issued before is revoked on every node. (Revocations cover the
    // second they happen in, so the next sign-in waits for the next one.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    d.barrier(2).await?;
    expect_message(
        "the old password after the reset",
        d.password_auth(2, user, GOOD_PASSWORD).await,
        Code::Unauthenticated,
        INCORRECT,
    )?;
    let second = d.sign_in(1, user, OTHER_PASSWORD).await?;
    for via in 1..=3 {
        refused_within(
            &format!("refresh of a pre-reset token on node {via}"),
            Code::Unauthenticated,
            "NotAuthorizedException",
            || d.refresh_raw(via, &first.refresh_token),
        )
        .await?;
    }
    for via in 1..=3 {
        accepted_within(&format!("refresh of the post-reset token on node {via}"), || {
            d.refresh_raw(via, &second.refresh_token)
        })
        .await?;
    }

    // ChangePassword needs the previous password.
    expect_exception(
        "ChangePassword with a wrong previous password",
        d.change_password(2, &second.access_token, WRONG_PASSWORD, THIRD_PASSWORD)
            .await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    expect_exception(
        "ChangePassword to a weak password",
        d.change_password(2, &second.access_token, OTHER_PASSWORD, "weak").await,
        Code::InvalidArgument,
        "InvalidPasswordException",
    )?;
    expect_exception(
        "ChangePassword with an id token",
        d.change_password(2, &second.id_token, OTHER_PASSWORD, THIRD_PASSWORD)
            .await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    d.change_password(3, &second.access_token, OTHER_PASSWORD, THIRD_PASSWORD)
        .await
        .map_err(status_err("ChangePassword"))?;
    // The access token used stays valid; its refresh token does not.
    for via in 1..=3 {
        accepted_within(&format!("GetUser with the changing token on node {via}"), || {
            d.get_user(via, &second.access_token)
        })
        .await?;
        refused_within(
            &format!("refresh of a pre-change token on node {via}"),
            Code::Unauthenticated,
            "NotAuthorizedException",
            || d.refresh_raw(via, &second.refresh_token),
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    d.barrier(1).await?;
    expect_message(
        "the previous password after ChangePassword",
        d.password_auth(1, user, OTHER_PASSWORD).await,
        Code::Unauthenticated,
        INCORRECT,
    )?;
    let third = d.sign_in(2, user, THIRD_PASSWORD).await?;

    // A new email waits for verification; the old one stays in force.
    let r = d
        .update_user_attributes(1, &third.access_token, &[("email", new_email)])
        .await
        .map_err(status_err("UpdateUserAttributes email"))?;
    ensure!(
        r.code_delivery_details_list.len() == 1,
        "UpdateUserAttributes: code deliveries {:?}",
        r.code_delivery_details_list
    );
    check_delivery("UpdateUserAttributes", r.code_delivery_details_list.first(), new_email)?;
    let v1 = d.outbox_after(1, user, "VERIFY_ATTRIBUTE", 0).await?;
    check_code_message(&v1)?;
    ensure!(
        v1.destination == new_email,
        "VERIFY_ATTRIBUTE sent to {:?}, expected the new address",
        v1.destination
    );
    for via in 1..=3 {
        let u = d.admin_get_user(via, user).await.map_err(status_err("AdminGetUser"))?;
        ensure!(
            admin_attr(&u.user_attributes, "email") == Some(old_email)
                && admin_attr(&u.user_attributes, "email_verified") == Some("true"),
            "node {via}: while the change is pending AdminGetUser shows {:?}",
            u.user_attributes
        );
        let g = d
            .get_user(via, &third.access_token)
            .await
            .map_err(status_err("GetUser"))?;
        ensure!(
            user_attr(&g.user_attributes, "email") == Some(old_email)
                && user_attr(&g.user_attributes, "email_verified") == Some("true"),
            "node {via}: while the change is pending GetUser shows {:?}",
            g.user_attributes
        );
    }
    d.barrier_all().await?;
    let by_old = d.sign_in(3, old_email, THIRD_PASSWORD).await?;
    let (id, _) = d.claims(3, &by_old).await?;
    ensure!(
        id["email"] == old_email && id["email_verified"] == true,
        "id token while pending: email {} verified {}",
        id["email"],
        id["email_verified"]
    );
    expect_message(
        "sign-in with the unverified new email",
        d.password_auth(1, new_email, THIRD_PASSWORD).await,
        Code::Unauthenticated,
        INCORRECT,
    )?;
    let seen = d.outbox_messages(2, user, "FORGOT_PASSWORD").await?.len();
    d.forgot_password(2, user)
        .await
        .map_err(status_err("ForgotPassword while pending"))?;
    let m = d.outbox_after(2, user, "FORGOT_PASSWORD", seen).await?;
    ensure!(
        m.destination == old_email,
        "ForgotPassword while the new email is pending went to {:?}",
        m.destination
    );

    // A resend, a wrong code, then the newest code swaps the email in.
    let r = d
        .get_verification_code(3, &third.access_token, "email")
        .await
        .map_err(status_err("GetUserAttributeVerificationCode"))?;
    check_delivery(
        "GetUserAttributeVerificationCode",
        r.code_delivery_details.as_ref(),
        new_email,
    )?;
    let v2 = d.outbox_after(3, user, "VERIFY_ATTRIBUTE", 1).await?;
    check_code_message(&v2)?;
    ensure!(v2.destination == new_email, "resent to {:?}", v2.destination);
    expect_exception(
        "VerifyUserAttribute with a wrong code",
        d.verify_user_attribute(1, &third.access_token, "email", &wrong_code(&v2.code))
            .await,
        Code::InvalidArgument,
        "CodeMismatchException",
    )?;
    d.verify_user_attribute(2, &third.access_token, "email", &v2.code)
        .await
        .map_err(status_err("VerifyUserAttribute email"))?;
    for via in 1..=3 {
        let u = d.admin_get_user(via, user).await.map_err(status_err("AdminGetUser"))?;
        ensure!(
            admin_attr(&u.user_attributes, "email") == Some(new_email)
                && admin_attr(&u.user_attributes, "email_verified") == Some("true"),
            "node {via}: after verification AdminGetUser shows {:?}",
            u.user_attributes
        );
    }
    d.barrier_all().await?;
    expect_message(
        "sign-in with the old email after the swap",
        d.password_auth(1, old_email, THIRD_PASSWORD).await,
        Code::Unauthenticated,
        INCORRECT,
    )?;
    let by_new = d.sign_in(2, new_email, THIRD_PASSWORD).await?;
    let (id, _) = d.claims(1, &by_new).await?;
    ensure!(
        id["email"] == new_email && id["email_verified"] == true,
        "id token after the swap: email {} verified {}",
        id["email"],
        id["email_verified"]
    );
    let g = d
        .get_user(3, &by_new.access_token)
        .await
        .map_err(status_err("GetUser"))?;
    ensure!(
        user_attr(&g.user_attributes, "email") == Some(new_email),
        "GetUser after the swap: {:?}",
        g.user_attributes
    );
    // Recovery now goes to the new address.
    let seen = d.outbox_messages(1, user, "FORGOT_PASSWORD").await?.len();
    d.forgot_password(1, user)
        .await
        .map_err(status_err("ForgotPassword after the swap"))?;
    let m = d.outbox_after(1, user, "FORGOT_PASSWORD", seen).await?;
    ensure!(
        m.destination == new_email,
        "ForgotPassword after the swap went to {:?}",
        m.destination
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// 4. Lockout across nodes
// ---------------------------------------------------------------------------

scenario!(lockout_across_nodes, lockout_body);

/// On every node at once: a barrier, then a sign-in with `password`; each
/// must be refused by the lockout. Fails as inconclusive if an answer came
/// after `deadline`.
async fn locked_everywhere(d: &Dir, user: &str, password: &str, deadline: Instant, what: &str) -> Result<()> {
    let answers = futures::future::join_all(d.node_ids().into_iter().map(|via| async move {
        let b = d.barrier(via).await;
        let r = d.password_auth(via, user, password).await;
        (via, b, r, Instant::now())
    }))
    .await;
    for (via, b, r, at) in answers {
        b?;
        let late = at > deadline;
        let label = format!("{what} on node {via}");
        match expect_message(&label, r, Code::Unauthenticated, LOCKED) {
            Ok(()) => {}
            Err(e) if late => bail!(
                "{label}: the answer came {:?} after the lock could have expired, so the check is \
                 inconclusive (the test machine is too slow): {e:#}",
                at - deadline
            ),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn lockout_body(c: &TestCluster) -> Result<()> {
    let d = Dir::create(
        c,
        DirSpec {
            name: "lockout",
            ..Default::default()
        },
    )
    .await?;
    let user = "lou.lockout";
    d.confirmed_user(1, user, GOOD_PASSWORD, "lou@lock.test").await?;
    d.confirmed_user(2, "lena.bystander", GOOD_PASSWORD, "lena@lock.test")
        .await?;
    d.barrier_all().await?;

    // Failures 1-5, spread over the nodes, are plain wrong passwords.
    let mut sent5 = Instant::now();
    let mut recv5 = Instant::now();
    for (n, via) in [1u64, 2, 3, 1, 2].into_iter().enumerate() {
        let sent = Instant::now();
        let r = d.password_auth(via, user, WRONG_PASSWORD).await;
        expect_message(
            &format!("failure {} on node {via}", n + 1),
            r,
            Code::Unauthenticated,
            INCORRECT,
        )?;
        sent5 = sent;
        recv5 = Instant::now();
    }
    // Locked for 1 s on every node, even with the right password (and a
    // wrong one during the lock does not count).
    locked_everywhere(
        &d,
        user,
        GOOD_PASSWORD,
        sent5 + Duration::from_secs(1),
        "right password right after failure 5",
    )
    .await?;
    let r = d.password_auth(3, user, WRONG_PASSWORD).await;
    if Instant::now() < sent5 + Duration::from_secs(1) {
        expect_message("wrong password during the lock", r, Code::Unauthenticated, LOCKED)?;
    }
    // Another user is not affected.
    d.sign_in(1, "lena.bystander", GOOD_PASSWORD).await?;

    // After 1 s a wrong password is failure 6: "incorrect", then locked 2 s.
    tokio::time::sleep_until((recv5 + Duration::from_millis(1200)).into()).await;
    let sent6 = Instant::now();
    expect_message(
        "failure 6 after the first lock expired",
        d.password_auth(3, user, WRONG_PASSWORD).await,
        Code::Unauthenticated,
        INCORRECT,
    )?;
    let recv6 = Instant::now();
    locked_everywhere(
        &d,
        user,
        GOOD_PASSWORD,
        sent6 + Duration::from_secs(2),
        "right password right after failure 6",
    )
    .await?;
    // Still locked once a 1 s lock would have ended: the backoff grew.
    tokio::time::sleep_until((recv6 + Duration::from_millis(1300)).into()).await;
    let r = d.password_auth(1, user, GOOD_PASSWORD).await;
    let at = Instant::now();
    ensure!(
        at < sent6 + Duration::from_secs(2),
        "inconclusive: the check after 1.3 s answered {:?} after failure 6 was sent",
        at - sent6
    );
    expect_message(
        "right password 1.3 s after failure 6 (lock is 2 s)",
        r,
        Code::Unauthenticated,
        LOCKED,
    )?;

    // After the 2 s lock the right password works and resets the count.
    tokio::time::sleep_until((recv6 + Duration::from_millis(2200)).into()).await;
    d.sign_in(2, user, GOOD_PASSWORD).await?;
    println!("  ok: the right password works once the 2 s lock expired");
    // Reset: four failures are four plain failures, and the right password
    // still works after them (no lock).
    for (n, via) in [3u64, 1, 2, 3].into_iter().enumerate() {
        expect_message(
            &format!("failure {} after the reset, node {via}", n + 1),
            d.password_auth(via, user, WRONG_PASSWORD).await,
            Code::Unauthenticated,
            INCORRECT,
        )?;
    }
    d.barrier(1).await?;
    d.sign_in(1, user, GOOD_PASSWORD).await?;
    println!("  ok: a success reset the counter (4 later failures do not lock)");
    // And one failure after that success is not a lock either.
    expect_message(
        "one failure after the second reset",
        d.password_auth(2, user, WRONG_PASSWORD).await,
        Code::Unauthenticated,
        INCORRECT,
    )?;
    d.barrier(3).await?;
    d.sign_in(3, user, GOOD_PASSWORD).await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// 5. Disable and delete
// ---------------------------------------------------------------------------

scenario!(disable_and_delete, disable_body);

async fn admin_initiate(
    d: &Dir,
    via: u64,
    client_id: &str,
    username: &str,
    password: &str,
    with_token: bool,
) -> Result<AdminInitiateAuthResponse, tonic::Status> {
    let c = d.node(via);
    let body = AdminInitiateAuthRequest {
        user_pool_id: d.pool_id.clone(),
        client_id: client_id.to_string(),
        auth_flow: "ADMIN_USER_PASSWORD_AUTH".into(),
        auth_parameters: params(&[("USERNAME", username), ("PASSWORD", password)]),
        client_metadata: Default::default(),
        context_data: None,
    };
    let req = if with_token {
        c.req(body)
    } else {
        tonic::Request::new(body)
    };
    Ok(c.admin().admin_initiate_auth(req).await?.into_inner())
}

async fn disable_body(c: &TestCluster) -> Result<()> {
    let d = Dir::create(
        c,
        DirSpec {
            name: "disable",
            ..Default::default()
        },
    )
    .await?;
    let user = "dora.disabled";
    let first_sub = d.confirmed_user(1, user, GOOD_PASSWORD, "dora@disable.test").await?;
    let t1 = d.sign_in(1, user, GOOD_PASSWORD).await?;
    let t2 = d.sign_in(2, user, GOOD_PASSWORD).await?;

    // Disabled: no sign-in, no refresh, on any node.
    admin_call(&d, 2, "AdminDisableUser", user).await?;
    for via in 1..=3 {
        d.barrier(via).await?;
        expect_message(
            &format!("sign-in of a disabled user on node {via}"),
            d.password_auth(via, user, GOOD_PASSWORD).await,
            Code::Unauthenticated,
            DISABLED,
        )?;
        for (n, t) in [("1", &t1), ("2", &t2)] {
            expect_exception(
                &format!("refresh {n} of a disabled user on node {via}"),
                d.refresh_raw(via, &t.refresh_token).await,
                Code::Unauthenticated,
                "NotAuthorizedException",
            )?;
        }
    }
    let u = d.admin_get_user(3, user).await.map_err(status_err("AdminGetUser"))?;
    ensure!(!u.enabled, "AdminGetUser after AdminDisableUser: enabled");
    // Revocations cover the second they happen in.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Enabled again: sign-in works; the old refresh tokens stay revoked.
    admin_call(&d, 3, "AdminEnableUser", user).await?;
    let u = d.admin_get_user(1, user).await.map_err(status_err("AdminGetUser"))?;
    ensure!(u.enabled, "AdminGetUser after AdminEnableUser: disabled");
    let mut t3 = None;
    for via in 1..=3 {
        d.barrier(via).await?;
        t3 = Some(d.sign_in(via, user, GOOD_PASSWORD).await?);
        expect_exception(
            &format!("refresh of a pre-disable token on node {via}"),
            d.refresh_raw(via, &t1.refresh_token).await,
            Code::Unauthenticated,
            "NotAuthorizedException",
        )?;
    }
    let t3 = t3.ok_or_else(|| anyhow!("no sign-in"))?;
    d.refresh(1, &t3.refresh_token).await?;

    // AdminUserGlobalSignOut: refresh fails everywhere.
    admin_call(&d, 1, "AdminUserGlobalSignOut", user).await?;
    for via in 1..=3 {
        refused_within(
            &format!("refresh after AdminUserGlobalSignOut on node {via}"),
            Code::Unauthenticated,
            "NotAuthorizedException",
            || d.refresh_raw(via, &t3.refresh_token),
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // AdminSetUserPassword, permanent: CONFIRMED with it; refresh revoked.
    let t4 = d.sign_in(2, user, GOOD_PASSWORD).await?;
    let set_password = |via: u64, password: &str, permanent: bool| {
        let c = d.node(via).clone();
        let req = AdminSetUserPasswordRequest {
            user_pool_id: d.pool_id.clone(),
            username: user.to_string(),
            password: password.to_string(),
            permanent,
        };
        async move {
            c.admin()
                .admin_set_user_password(c.req(req))
                .await
                .map(|r| r.into_inner())
        }
    };
    expect_exception(
        "AdminSetUserPassword with a weak password",
        set_password(1, "weak", true).await,
        Code::InvalidArgument,
        "InvalidPasswordException",
    )?;
    set_password(3, OTHER_PASSWORD, true)
        .await
        .map_err(status_err("AdminSetUserPassword permanent"))?;
    let u = d.admin_get_user(2, user).await.map_err(status_err("AdminGetUser"))?;
    ensure!(
        u.user_status == "CONFIRMED",
        "status after a permanent password: {}",
        u.user_status
    );
    d.barrier(1).await?;
    expect_message(
        "the old password after AdminSetUserPassword",
        d.password_auth(1, user, GOOD_PASSWORD).await,
        Code::Unauthenticated,
        INCORRECT,
    )?;
    d.sign_in(1, user, OTHER_PASSWORD).await?;
    refused_within(
        "refresh of a token from before AdminSetUserPassword",
        Code::Unauthenticated,
        "NotAuthorizedException",
        || d.refresh_raw(3, &t4.refresh_token),
    )
    .await?;

    // Temporary: FORCE_CHANGE_PASSWORD and the NEW_PASSWORD_REQUIRED
    // challenge.
    set_password(2, THIRD_PASSWORD, false)
        .await
        .map_err(status_err("AdminSetUserPassword temporary"))?;
    let u = d.admin_get_user(3, user).await.map_err(status_err("AdminGetUser"))?;
    ensure!(
        u.user_status == "FORCE_CHANGE_PASSWORD",
        "status after a temporary password: {}",
        u.user_status
    );
    d.barrier(3).await?;
    let r = d
        .password_auth(3, user, THIRD_PASSWORD)
        .await
        .map_err(status_err("sign-in with the temporary password"))?;
    ensure!(
        r.challenge_name == "NEW_PASSWORD_REQUIRED" && r.authentication_result.is_none(),
        "temporary password: challenge {:?}",
        r.challenge_name
    );
    let done = d
        .new_password(1, &r.session, user, FOURTH_PASSWORD)
        .await
        .map_err(status_err("RespondToAuthChallenge NEW_PASSWORD_REQUIRED"))?;
    Tokens::from_result("NEW_PASSWORD_REQUIRED answer", done.authentication_result)?;
    d.barrier(2).await?;
    d.sign_in(2, user, FOURTH_PASSWORD).await?;

    // AdminResetUserPassword: RESET_REQUIRED, a code, ConfirmForgotPassword.
    let before_reset = d.sign_in(1, user, FOURTH_PASSWORD).await?;
    admin_call(&d, 1, "AdminResetUserPassword", user).await?;
    let u = d.admin_get_user(2, user).await.map_err(status_err("AdminGetUser"))?;
    ensure!(
        u.user_status == "RESET_REQUIRED",
        "status after a reset: {}",
        u.user_status
    );
    for via in 1..=3 {
        d.barrier(via).await?;
        expect_exception(
            &format!("sign-in while RESET_REQUIRED on node {via}"),
            d.password_auth(via, user, FOURTH_PASSWORD).await,
            Code::FailedPrecondition,
            "PasswordResetRequiredException",
        )?;
        expect_exception(
            &format!("refresh of a pre-reset token on node {via}"),
            d.refresh_raw(via, &before_reset.refresh_token).await,
            Code::Unauthenticated,
            "NotAuthorizedException",
        )?;
    }
    let code = d.code(3, user, "FORGOT_PASSWORD").await?;
    d.confirm_forgot_password(2, user, &code, GOOD_PASSWORD)
        .await
        .map_err(status_err("ConfirmForgotPassword after AdminResetUserPassword"))?;
    let u = d.admin_get_user(3, user).await.map_err(status_err("AdminGetUser"))?;
    ensure!(
        u.user_status == "CONFIRMED",
        "status after the reset completed: {}",
        u.user_status
    );
    d.barrier(3).await?;
    let t5 = d.sign_in(3, user, GOOD_PASSWORD).await?;

    // AdminInitiateAuth needs the admin token and a client allowing it.
    expect_exception(
        "AdminInitiateAuth through a client without ALLOW_ADMIN_USER_PASSWORD_AUTH",
        admin_initiate(&d, 1, &d.client_id, user, GOOD_PASSWORD, true).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    let admin_client = d
        .create_app_client(
            3,
            "backend",
            &["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        )
        .await?;
    d.barrier_all().await?;
    expect_exception(
        "AdminInitiateAuth without the admin token",
        admin_initiate(&d, 2, &admin_client, user, GOOD_PASSWORD, false).await,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    expect_message(
        "AdminInitiateAuth with a wrong password",
        admin_initiate(&d, 2, &admin_client, user, WRONG_PASSWORD, true).await,
        Code::Unauthenticated,
        INCORRECT,
    )?;
    let r = admin_initiate(&d, 2, &admin_client, user, GOOD_PASSWORD, true)
        .await
        .map_err(status_err("AdminInitiateAuth"))?;
    let at = Tokens::from_admin_result("AdminInitiateAuth", r.authentication_result)?;
    let claims = d.verified_claims(1, &at.access_token, "access").await?;
    ensure!(
        claims["client_id"] == admin_client.as_str() && claims["username"] == user,
        "AdminInitiateAuth access token claims {claims}"
    );
    expect_exception(
        "USER_PASSWORD_AUTH through the admin-only client",
        d.initiate_as(
            1,
            &admin_client,
            "USER_PASSWORD_AUTH",
            params(&[("USERNAME", user), ("PASSWORD", GOOD_PASSWORD)]),
        )
        .await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;

    // AdminDeleteUserAttributes.
    d.admin_update_attributes(1, user, aattrs(&[("name", "Dora D"), ("locale", "en")]))
        .await
        .map_err(status_err("AdminUpdateUserAttributes"))?;
    {
        let cl = d.node(2);
        cl.admin()
            .admin_delete_user_attributes(cl.req(AdminDeleteUserAttributesRequest {
                user_pool_id: d.pool_id.clone(),
                username: user.to_string(),
                user_attribute_names: strings(&["name"]),
            }))
            .await
            .map_err(status_err("AdminDeleteUserAttributes"))?;
    }
    let u = d.admin_get_user(3, user).await.map_err(status_err("AdminGetUser"))?;
    ensure!(
        admin_attr(&u.user_attributes, "name").is_none() && admin_attr(&u.user_attributes, "locale") == Some("en"),
        "after AdminDeleteUserAttributes [name]: {:?}",
        u.user_attributes
    );

    // AdminDeleteUser: gone everywhere; the username is free again.
    admin_call(&d, 1, "AdminDeleteUser", user).await?;
    expect_exception(
        "AdminGetUser of a deleted user",
        d.admin_get_user(2, user).await,
        Code::NotFound,
        "UserNotFoundException",
    )?;
    for via in 1..=3 {
        d.barrier(via).await?;
        expect_message(
            &format!("sign-in of a deleted user on node {via}"),
            d.password_auth(via, user, GOOD_PASSWORD).await,
            Code::Unauthenticated,
            INCORRECT,
        )?;
        expect_one_of(
            &format!("GetUser with a deleted user's token on node {via}"),
            d.get_user(via, &t5.access_token).await,
            &[
                (Code::Unauthenticated, "NotAuthorizedException"),
                (Code::NotFound, "UserNotFoundException"),
            ],
        )?;
        expect_exception(
            &format!("refresh of a deleted user's token on node {via}"),
            d.refresh_raw(via, &t5.refresh_token).await,
            Code::Unauthenticated,
            "NotAuthorizedException",
        )?;
    }
    let second_sub = d
        .confirmed_user(2, user, OTHER_PASSWORD, "dora.again@disable.test")
        .await?;
    ensure!(
        second_sub != first_sub && !second_sub.is_empty(),
        "a re-signed-up user must get a new sub ({first_sub} twice)"
    );
    let again = d.sign_in(3, user, OTHER_PASSWORD).await?;
    let g = d
        .get_user(1, &again.access_token)
        .await
        .map_err(status_err("GetUser"))?;
    ensure!(
        user_attr(&g.user_attributes, "sub") == Some(second_sub.as_str()),
        "GetUser of the new user: {:?}",
        g.user_attributes
    );
    // The old user's token does not reach the new user.
    for via in 1..=3 {
        expect_one_of(
            &format!("GetUser with the first user's token after re-sign-up, node {via}"),
            d.get_user(via, &t5.access_token).await,
            &[
                (Code::Unauthenticated, "NotAuthorizedException"),
                (Code::NotFound, "UserNotFoundException"),
            ],
        )?;
    }

    // DeleteUser (self-service).
    let sid = "sid.selfdelete";
    let sid_sub = d.confirmed_user(3, sid, GOOD_PASSWORD, "sid@disable.test").await?;
    let st = d.sign_in(1, sid, GOOD_PASSWORD).await?;
    d.node(2)
        .auth()
        .delete_user(DeleteUserRequest {
            access_token: st.access_token.clone(),
        })
        .await
        .map_err(status_err("DeleteUser"))?;
    for via in 1..=3 {
        d.barrier(via).await?;
        expect_one_of(
            &format!("GetUser after DeleteUser on node {via}"),
            d.get_user(via, &st.access_token).await,
            &[
                (Code::Unauthenticated, "NotAuthorizedException"),
                (Code::NotFound, "UserNotFoundException"),
            ],
        )?;
        expect_message(
            &format!("sign-in after DeleteUser on node {via}"),
            d.password_auth(via, sid, GOOD_PASSWORD).await,
            Code::Unauthenticated,
            INCORRECT,
        )?;
    }
    expect_exception(
        "AdminGetUser after DeleteUser",
        d.admin_get_user(1, sid).await,
        Code::NotFound,
        "UserNotFoundException",
    )?;
    let sid_again = d.confirmed_user(1, sid, GOOD_PASSWORD, "sid@disable.test").await?;
    ensure!(sid_again != sid_sub, "DeleteUser then SignUp reused the sub");
    d.sign_in(2, sid, GOOD_PASSWORD).await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// 6. Malformed input
// ---------------------------------------------------------------------------

scenario!(malformed_input, malformed_body);

/// The N of "position N" in a message.
fn position_in(message: &str) -> Option<usize> {
    let rest = &message[message.find("position ")? + "position ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

async fn malformed_body(c: &TestCluster) -> Result<()> {
    let d = Dir::create(
        c,
        DirSpec {
            name: "malformed",
            custom: &[
                CustomAttr {
                    name: "tier",
                    indexed: true,
                },
                CustomAttr {
                    name: "note",
                    indexed: false,
                },
            ],
            ..Default::default()
        },
    )
    .await?;
    let user = "mal.formed";
    d.confirmed_user(1, user, GOOD_PASSWORD, "mal@formed.test").await?;
    let t = d.sign_in(2, user, GOOD_PASSWORD).await?;
    let still_serving = |via: u64| {
        let d = &d;
        async move {
            let (users, _) = d.list_users_all(via, "username = \"mal.formed\"", 0, &[]).await?;
            ensure!(
                users.len() == 1,
                "a valid ListUsers after a bad one found {}",
                users.len()
            );
            anyhow::Ok(())
        }
    };

    // Filters: syntax errors carry the 1-based position.
    let syntax: [(&str, &[usize]); 5] = [
        // Unterminated quote: the opening quote, or the end of the input.
        ("email = \"unterminated", &[9, 21, 22]),
        ("email ~ \"x\"", &[7]),
        ("email = x", &[9]),
        ("email = \"a\" and", &[13]),
        ("= \"a\"", &[1]),
    ];
    for (i, (filter, positions)) in syntax.iter().enumerate() {
        let via = (i % 3) as u64 + 1;
        let s = expect_exception(
            &format!("ListUsers filter {filter:?}"),
            d.list_users(via, filter, 0, "", &[]).await,
            Code::InvalidArgument,
            "InvalidParameterException",
        )?;
        let p = position_in(s.message());
        ensure!(
            p.is_some_and(|p| positions.contains(&p)),
            "filter {filter:?}: the message should name position {positions:?}: {:?}",
            s.message()
        );
        still_serving(via).await?;
    }
    for filter in [
        "shoe_size = \"9\"",
        "custom:note = \"x\"",
        "custom:undeclared = \"x\"",
        "email_verified = \"true\"",
    ] {
        expect_exception(
            &format!("ListUsers filter on {filter:?}"),
            d.list_users(2, filter, 0, "", &[]).await,
            Code::InvalidArgument,
            "InvalidParameterException",
        )?;
        still_serving(2).await?;
    }
    for limit in [61, -1] {
        expect_exception(
            &format!("ListUsers limit {limit}"),
            d.list_users(3, "", limit, "", &[]).await,
            Code::InvalidArgument,
            "InvalidParameterException",
        )?;
    }
    d.list_users(3, "", 60, "", &[])
        .await
        .map_err(status_err("ListUsers limit 60"))?;
    expect_exception(
        "ListUsers with a forged pagination token",
        d.list_users(1, "", 10, "not-a-token", &[]).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    still_serving(1).await?;

    // Attribute values longer than the schema allows, unknown attributes.
    let long = "x".repeat(2049);
    let max = "y".repeat(2048);
    expect_exception(
        "AdminUpdateUserAttributes name of 2049 characters",
        d.admin_update_attributes(1, user, aattrs(&[("name", &long)])).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    d.admin_update_attributes(2, user, aattrs(&[("name", &max)]))
        .await
        .map_err(status_err("AdminUpdateUserAttributes name of 2048 characters"))?;
    expect_exception(
        "UpdateUserAttributes name of 2049 characters",
        d.update_user_attributes(3, &t.access_token, &[("name", &long)]).await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    for bad in ["shoe_size", "custom:undeclared"] {
        expect_exception(
            &format!("AdminUpdateUserAttributes {bad}"),
            d.admin_update_attributes(1, user, aattrs(&[(bad, "1")])).await,
            Code::InvalidArgument,
            "InvalidParameterException",
        )?;
        expect_exception(
            &format!("UpdateUserAttributes {bad}"),
            d.update_user_attributes(2, &t.access_token, &[(bad, "1")]).await,
            Code::InvalidArgument,
            "InvalidParameterException",
        )?;
    }
    d.update_user_attributes(3, &t.access_token, &[("custom:note", "fine")])
        .await
        .map_err(status_err("UpdateUserAttributes custom:note"))?;
    let u = d.admin_get_user(1, user).await.map_err(status_err("AdminGetUser"))?;
    ensure!(
        admin_attr(&u.user_attributes, "name") == Some(max.as_str())
            && admin_attr(&u.user_attributes, "custom:note") == Some("fine")
            && admin_attr(&u.user_attributes, "shoe_size").is_none(),
        "attributes after the bad updates: {:?}",
        u.user_attributes
            .iter()
            .map(|a| (a.name.as_str(), a.value.len()))
            .collect::<Vec<_>>()
    );

    // Group names and permissions.
    let name_129 = "g".repeat(129);
    let name_128 = "h".repeat(128);
    for (why, name) in [
        ("empty", ""),
        ("with a space", "two words"),
        ("with a tab", "tab\there"),
        ("with a newline", "new\nline"),
        ("129 characters", name_129.as_str()),
    ] {
        expect_exception(
            &format!("CreateGroup with a name {why}"),
            d.create_group(2, name, None, &[]).await,
            Code::InvalidArgument,
            "InvalidParameterException",
        )?;
    }
    let g = d
        .create_group(3, &name_128, None, &[])
        .await
        .map_err(status_err("CreateGroup with a 128-character name"))?;
    ensure!(
        g.group_name == name_128,
        "128-character group name came back as {:?}",
        g.group_name
    );
    let perm_129 = format!("p:{}", "q".repeat(127));
    let perm_128 = format!("p:{}", "q".repeat(126));
    for (why, perms) in [
        ("of 129 characters", vec![perm_129.clone()]),
        ("that is empty", vec![String::new()]),
        ("with a space", vec!["course read".to_string()]),
        ("with a '#'", vec!["course#read".to_string()]),
        ("101 of them", (0..101).map(|i| format!("p:{i}")).collect()),
    ] {
        let refs: Vec<&str> = perms.iter().map(String::as_str).collect();
        expect_exception(
            &format!("CreateGroup with a permission {why}"),
            d.create_group(1, "perms-bad", None, &refs).await,
            Code::InvalidArgument,
            "InvalidParameterException",
        )?;
    }
    let hundred: Vec<String> = (0..99).map(|i| format!("p:{i}")).chain([perm_128.clone()]).collect();
    let refs: Vec<&str> = hundred.iter().map(String::as_str).collect();
    let g = d
        .create_group(2, "perms-ok", Some(1), &refs)
        .await
        .map_err(status_err("CreateGroup with 100 permissions, one of 128 characters"))?;
    ensure!(g.permissions.len() == 100, "{} permissions kept", g.permissions.len());
    let ok_chars = ["a-Z_0.9/x:*", "course:*"];
    d.create_group(3, "perms-chars", None, &ok_chars)
        .await
        .map_err(status_err("CreateGroup with every allowed permission character"))?;
    expect_exception(
        "UpdateGroup with a permission of 129 characters",
        d.update_group(
            1,
            UpdateGroupRequest {
                group_name: "perms-ok".into(),
                user_pool_id: d.pool_id.clone(),
                permissions: Some(PermissionList {
                    values: vec![perm_129.clone()],
                }),
                ..Default::default()
            },
        )
        .await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    let g = d
        .get_group(2, "perms-ok")
        .await
        .map_err(status_err("GetGroup perms-ok"))?;
    ensure!(
        g.permissions.len() == 100,
        "a refused UpdateGroup changed the permissions"
    );
    expect_exception(
        "CreateGroup of an existing group",
        d.create_group(3, "perms-ok", None, &[]).await,
        Code::AlreadyExists,
        "GroupExistsException",
    )?;
    expect_exception(
        "UpdateGroup of a missing group",
        d.update_group(
            1,
            UpdateGroupRequest {
                group_name: "nope".into(),
                user_pool_id: d.pool_id.clone(),
                description: Some("x".into()),
                ..Default::default()
            },
        )
        .await,
        Code::NotFound,
        "ResourceNotFoundException",
    )?;
    expect_exception(
        "AdminAddUserToGroup with a missing group",
        d.add_to_group(2, user, "nope").await,
        Code::NotFound,
        "ResourceNotFoundException",
    )?;
    expect_exception(
        "AdminAddUserToGroup with a missing user",
        d.add_to_group(3, "nobody.here", "perms-ok").await,
        Code::NotFound,
        "UserNotFoundException",
    )?;
    let (groups, _) = d.list_groups_all(1, 0).await?;
    let names: BTreeSet<String> = groups.into_iter().map(|g| g.group_name).collect();
    let want: BTreeSet<String> = [name_128.as_str(), "perms-ok", "perms-chars"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    ensure!(names == want, "groups after the bad calls: {names:?}");
    d.add_to_group(1, user, "perms-ok")
        .await
        .map_err(status_err("AdminAddUserToGroup after the bad calls"))?;
    for via in 1..=3 {
        c.node(via).metrics().await?;
        still_serving(via).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 7. Enumeration timing
// ---------------------------------------------------------------------------

scenario!(enumeration_timing, enumeration_body);

const TIMING_ROUNDS: usize = 15;
const TIMING_WARMUP: usize = 2;

async fn enumeration_body(c: &TestCluster) -> Result<()> {
    // The pool's default argon2 cost, not the tests' cheap one.
    let d = Dir::create(
        c,
        DirSpec {
            name: "enumeration",
            fast: false,
            ..Default::default()
        },
    )
    .await?;
    // One real user per wrong-password attempt, so that no account gets
    // near the lockout threshold.
    let n = TIMING_ROUNDS + TIMING_WARMUP;
    let users: Vec<ImportUserType> = (0..n)
        .map(|i| ImportUserType {
            username: format!("real-{i:02}"),
            attributes: aattrs(&[("email", &format!("real-{i:02}@enum.test"))]),
            ..Default::default()
        })
        .collect();
    let r = d
        .import_users(1, users, GOOD_PASSWORD, true)
        .await
        .map_err(status_err("AdminImportUsers"))?;
    ensure!(r.imported as usize == n, "imported {}", r.imported);
    d.barrier_all().await?;
    // The real users do sign in (so the wrong password is the only reason
    // for the failures below).
    d.sign_in(1, "real-00", GOOD_PASSWORD).await?;

    let via = 1;
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    let mut texts = BTreeSet::new();
    for i in 0..n {
        let ghost = format!("ghost-{i:02}");
        let real = format!("real-{i:02}");
        let attempt = |who: String| {
            let d = &d;
            async move {
                let t = Instant::now();
                let r = d.password_auth(via, &who, WRONG_PASSWORD).await;
                (t.elapsed(), r)
            }
        };
        // Alternate which goes first, so drift hits both alike.
        let (u, w) = if i % 2 == 0 {
            let u = attempt(ghost).await;
            let w = attempt(real).await;
            (u, w)
        } else {
            let w = attempt(real).await;
            let u = attempt(ghost).await;
            (u, w)
        };
        for (kind, (took, r)) in [("unknown user", u), ("wrong password", w)] {
            let s = match r {
                Ok(v) => bail!("{kind} #{i}: signed in: {v:?}"),
                Err(s) => s,
            };
            texts.insert(format!("{:?} | {} | {:?}", s.code(), s.message(), exception_of(&s)));
            if i >= TIMING_WARMUP {
                if kind == "unknown user" {
                    unknown.push(took);
                } else {
                    wrong.push(took);
                }
            }
        }
    }
    ensure!(
        texts.len() == 1,
        "unknown user and wrong password must answer alike; got {texts:?}"
    );
    let text = texts.into_iter().next().unwrap_or_default();
    ensure!(
        text == format!("Unauthenticated | {INCORRECT} | Some(\"NotAuthorizedException\")"),
        "the common answer is {text:?}"
    );
    let mu = median(&unknown);
    let mw = median(&wrong);
    let diff = mu.abs_diff(mw);
    println!(
        "  medians over {TIMING_ROUNDS} each: unknown user {mu:?}, wrong password {mw:?}, difference {diff:?} ({:.1}% of the wrong-password median)",
        100.0 * diff.as_secs_f64() / mw.as_secs_f64().max(1e-9)
    );
    println!("  unknown: {unknown:?}\n  wrong:   {wrong:?}");
    ensure!(
        diff.as_secs_f64() < 0.25 * mw.as_secs_f64(),
        "timing leaks existence: median unknown {mu:?} vs wrong password {mw:?} (difference {diff:?} >= 25%)"
    );

    // ForgotPassword answers alike for a real and an unknown user.
    let real = d
        .forgot_password(2, "real-03")
        .await
        .map_err(status_err("ForgotPassword of a real user"))?;
    let ghost = d
        .forgot_password(2, "ghost-99")
        .await
        .map_err(status_err("ForgotPassword of an unknown user"))?;
    let (rd, gd) = match (&real.code_delivery_details, &ghost.code_delivery_details) {
        (Some(r), Some(g)) => (r, g),
        other => bail!("ForgotPassword delivery details differ in presence: {other:?}"),
    };
    ensure!(
        rd.delivery_medium == gd.delivery_medium && rd.attribute_name == gd.attribute_name,
        "ForgotPassword shapes differ: real {rd:?} vs unknown {gd:?}"
    );
    for (who, dd) in [("real", rd), ("unknown", gd)] {
        ensure!(
            dd.delivery_medium == "EMAIL"
                && dd.attribute_name == "email"
                && dd.destination.contains('@')
                && dd.destination.contains('*'),
            "ForgotPassword of the {who} user: {dd:?} does not look like a masked email"
        );
    }
    let m = d.outbox_after(2, "real-03", "FORGOT_PASSWORD", 0).await?;
    ensure!(m.destination == "real-03@enum.test", "sent to {}", m.destination);
    ensure!(
        d.outbox_messages(3, "ghost-99", "FORGOT_PASSWORD").await?.is_empty(),
        "a message went out for an unknown user"
    );
    println!("  ok: ForgotPassword: real {rd:?}, unknown {gd:?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// 8. Code-send rate limits
// ---------------------------------------------------------------------------

scenario!(code_send_rate_limits, rate_limits_body);

/// Calls `send` up to 6 times (through nodes 1, 2, 3, ...): the first 4
/// must succeed, and by the 6th the limit must have answered
/// LimitExceededException and kept answering it. (Whether the code sent by
/// the call that started the flow counts is left open; returns the call
/// that was limited first.)
async fn limit_within_six<F, Fut, T>(what: &str, mut send: F) -> Result<usize>
where
    T: std::fmt::Debug,
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut limited_at = None;
    for n in 1..=6usize {
        let via = ((n - 1) % 3) as u64 + 1;
        let r = send(via).await;
        match (&limited_at, r) {
            (None, Ok(_)) if n < 6 => {}
            (None, Ok(v)) => bail!("{what}: the 6th send on node {via} was accepted: {v:?}"),
            (None, Err(s)) => {
                check_exception(
                    &format!("{what} #{n}"),
                    &s,
                    Code::ResourceExhausted,
                    "LimitExceededException",
                )?;
                ensure!(n >= 5, "{what}: limited at send #{n}: {}", s.message());
                println!("  ok: {what} limited at call #{n}: {}", s.message());
                limited_at = Some(n);
            }
            (Some(_), r) => {
                expect_exception(
                    &format!("{what} #{n} after the limit"),
                    r,
                    Code::ResourceExhausted,
                    "LimitExceededException",
                )?;
            }
        }
    }
    limited_at.ok_or_else(|| anyhow!("{what}: never limited"))
}

async fn rate_limits_body(c: &TestCluster) -> Result<()> {
    let d = Dir::create(
        c,
        DirSpec {
            name: "limits",
            ..Default::default()
        },
    )
    .await?;
    let rick = "rick.ratelimit";
    d.confirmed_user(1, rick, GOOD_PASSWORD, "rick@limit.test").await?;
    d.confirmed_user(2, "rhea.other", GOOD_PASSWORD, "rhea@limit.test")
        .await?;

    // ForgotPassword: 5 sends per user per hour, counted cluster-wide.
    for (n, via) in [1u64, 2, 3, 1, 2].into_iter().enumerate() {
        d.forgot_password(via, rick)
            .await
            .map_err(status_err(&format!("ForgotPassword #{} on node {via}", n + 1)))?;
    }
    let sent = d.outbox_messages(1, rick, "FORGOT_PASSWORD").await?.len();
    ensure!(sent == 5, "5 ForgotPassword calls sent {sent} messages");
    for via in [3u64, 1, 2] {
        expect_exception(
            &format!("ForgotPassword #6 on node {via}"),
            d.forgot_password(via, rick).await,
            Code::ResourceExhausted,
            "LimitExceededException",
        )?;
    }
    let sent = d.outbox_messages(2, rick, "FORGOT_PASSWORD").await?.len();
    ensure!(sent == 5, "refused ForgotPassword calls still sent: {sent} messages");
    // The newest code still works; the limit is per user.
    let code = d.code(3, rick, "FORGOT_PASSWORD").await?;
    d.confirm_forgot_password(3, rick, &code, OTHER_PASSWORD)
        .await
        .map_err(status_err("ConfirmForgotPassword with the 5th code"))?;
    d.forgot_password(3, "rhea.other")
        .await
        .map_err(status_err("ForgotPassword of another user"))?;
    // Revocations cover the second they happen in.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Attribute verification codes: a separate purpose with its own limit.
    let t = d.sign_in(1, rick, OTHER_PASSWORD).await?;
    d.update_user_attributes(2, &t.access_token, &[("email", "rick@new-limit.test")])
        .await
        .map_err(status_err(
            "UpdateUserAttributes email (after the ForgotPassword limit)",
        ))?;
    let at = limit_within_six("GetUserAttributeVerificationCode", |via| {
        let d = &d;
        let token = t.access_token.clone();
        async move { d.get_verification_code(via, &token, "email").await }
    })
    .await?;
    println!("  GetUserAttributeVerificationCode limited at call {at} (one code went out at UpdateUserAttributes)");
    let sent = d.outbox_messages(3, rick, "VERIFY_ATTRIBUTE").await?.len();
    ensure!(
        sent <= 6 && sent == at,
        "VERIFY_ATTRIBUTE messages: {sent} (limited at call {at}, plus the first)"
    );

    // ResendConfirmationCode: the same limit for an unconfirmed user.
    let ursula = "ursula.unconfirmed";
    d.sign_up(3, d.sign_up_request(ursula, GOOD_PASSWORD, "ursula@limit.test"))
        .await
        .map_err(status_err("SignUp ursula"))?;
    let at = limit_within_six("ResendConfirmationCode", |via| {
        let d = &d;
        async move { d.resend_confirmation_code(via, ursula).await }
    })
    .await?;
    println!("  ResendConfirmationCode limited at call {at} (one code went out at SignUp)");
    let sent = d.outbox_messages(1, ursula, "CONFIRM_SIGN_UP").await?.len();
    ensure!(sent == at, "CONFIRM_SIGN_UP messages: {sent}, limited at call {at}");
    // The newest code still confirms.
    let code = d.code(1, ursula, "CONFIRM_SIGN_UP").await?;
    d.confirm(2, ursula, &code)
        .await
        .map_err(status_err("ConfirmSignUp with the newest code"))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// 9. Audit log
// ---------------------------------------------------------------------------

scenario!(audit_log, audit_body);

/// Every string of an event, for the secret scan.
fn event_strings(e: &AuthEventType) -> Vec<String> {
    vec![
        e.event_id.clone(),
        e.event_type.clone(),
        e.event_response.clone(),
        e.event_context_data
            .as_ref()
            .map(|c| c.ip_address.clone())
            .unwrap_or_default(),
        e.username.clone(),
        e.sub.clone(),
        e.client_id.clone(),
        e.detail.clone(),
    ]
}

fn show(events: &[AuthEventType]) -> String {
    events
        .iter()
        .map(|e| format!("{}/{}/{}({})", e.event_type, e.event_response, e.username, e.detail))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn audit_body(c: &TestCluster) -> Result<()> {
    let started_ms = tessera::clock::now_millis();
    let d = Dir::create(
        c,
        DirSpec {
            name: "audit",
            ..Default::default()
        },
    )
    .await?;
    let user = "audrey.audit";
    let sub = d
        .sign_up(1, d.sign_up_request(user, GOOD_PASSWORD, "audrey@audit.test"))
        .await
        .map_err(status_err("SignUp"))?
        .user_sub;
    let confirm_code = d.code(1, user, "CONFIRM_SIGN_UP").await?;
    d.confirm(2, user, &confirm_code)
        .await
        .map_err(status_err("ConfirmSignUp"))?;
    d.barrier(3).await?;
    d.sign_in(3, user, GOOD_PASSWORD).await?;
    expect_message(
        "a wrong password",
        d.password_auth(1, user, WRONG_PASSWORD).await,
        Code::Unauthenticated,
        INCORRECT,
    )?;
    // Four more failures lock the account; one more attempt is refused.
    for via in [2u64, 3, 1, 2] {
        expect_message(
            "a failure towards the lockout",
            d.password_auth(via, user, WRONG_PASSWORD).await,
            Code::Unauthenticated,
            INCORRECT,
        )?;
    }
    d.barrier(3).await?;
    expect_message(
        "an attempt during the lockout",
        d.password_auth(3, user, GOOD_PASSWORD).await,
        Code::Unauthenticated,
        LOCKED,
    )?;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let t2 = d.sign_in(1, user, GOOD_PASSWORD).await?;
    d.change_password(2, &t2.access_token, GOOD_PASSWORD, OTHER_PASSWORD)
        .await
        .map_err(status_err("ChangePassword"))?;
    d.forgot_password(3, user).await.map_err(status_err("ForgotPassword"))?;
    let forgot_code = d.code(3, user, "FORGOT_PASSWORD").await?;
    d.confirm_forgot_password(1, user, &forgot_code, THIRD_PASSWORD)
        .await
        .map_err(status_err("ConfirmForgotPassword"))?;
    d.create_group(2, "auditors", Some(3), &["audit:read"])
        .await
        .map_err(status_err("CreateGroup"))?;
    d.add_to_group(3, user, "auditors")
        .await
        .map_err(status_err("AdminAddUserToGroup"))?;
    admin_call(&d, 1, "AdminDisableUser", user).await?;
    // Another user's events, for the per-user and pool-wide listings.
    let bert = "bert.bystander";
    d.confirmed_user(2, bert, GOOD_PASSWORD, "bert@audit.test").await?;
    d.barrier(1).await?;
    d.sign_in(1, bert, GOOD_PASSWORD).await?;
    // AdminInitiateAuth records the end user's address it is given.
    let backend = d
        .create_app_client(1, "audit-backend", &["ALLOW_ADMIN_USER_PASSWORD_AUTH"])
        .await?;
    d.barrier(2).await?;
    {
        let cl = d.node(2);
        cl.admin()
            .admin_initiate_auth(cl.req(AdminInitiateAuthRequest {
                user_pool_id: d.pool_id.clone(),
                client_id: backend.clone(),
                auth_flow: "ADMIN_USER_PASSWORD_AUTH".into(),
                auth_parameters: params(&[("USERNAME", bert), ("PASSWORD", GOOD_PASSWORD)]),
                client_metadata: Default::default(),
                context_data: Some(ContextDataType {
                    ip_address: "203.0.113.7".into(),
                }),
            }))
            .await
            .map_err(status_err("AdminInitiateAuth with context data"))?;
    }

    // Successful sign-ins are recorded asynchronously: poll for them.
    let wanted_pass_signins = 2; // audrey's first sign-in, and after the lock
    let events = poll_until(
        "audrey's successful sign-ins in the audit log",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async {
            let (events, _) = d.auth_events_all(3, user, 0).await?;
            let n = events
                .iter()
                .filter(|e| e.event_type == "SignIn" && e.event_response == "Pass")
                .count();
            Ok((n >= wanted_pass_signins).then_some(events))
        },
    )
    .await?;
    println!("  audrey's events (newest first): {}", show(&events));
    let now_ms = tessera::clock::now_millis();
    for e in &events {
        ensure!(e.username == user, "per-user listing returned {}'s event", e.username);
        ensure!(
            e.sub == sub,
            "event {} has sub {:?}, expected {sub}",
            e.event_type,
            e.sub
        );
        ensure!(!e.event_id.is_empty(), "an event without an id");
        ensure!(
            e.creation_date >= started_ms - 5_000 && e.creation_date <= now_ms + 5_000,
            "event {} at {} is outside the test ({started_ms}..{now_ms})",
            e.event_type,
            e.creation_date
        );
        ensure!(
            e.event_response == "Pass" || e.event_response == "Fail",
            "event_response {:?}",
            e.event_response
        );
        let ip = e.event_context_data.as_ref().map(|c| c.ip_address.as_str());
        ensure!(
            ip == Some("127.0.0.1"),
            "event {} ({}) records ip {ip:?}, expected 127.0.0.1",
            e.event_type,
            e.detail
        );
        for s in event_strings(e) {
            for secret in [GOOD_PASSWORD, OTHER_PASSWORD, THIRD_PASSWORD, WRONG_PASSWORD] {
                ensure!(!s.contains(secret), "event {} carries a password: {s:?}", e.event_type);
            }
        }
        for code in [&confirm_code, &forgot_code] {
            ensure!(
                !e.detail.contains(code.as_str()) && !e.username.contains(code.as_str()),
                "event {} carries a code: {:?}",
                e.event_type,
                e.detail
            );
        }
    }
    let count = |ty: &str, resp: &str| {
        events
            .iter()
            .filter(|e| e.event_type == ty && e.event_response == resp)
            .count()
    };
    for (ty, resp, min) in [
        ("SignUp", "Pass", 1),
        ("ConfirmSignUp", "Pass", 1),
        ("SignIn", "Pass", 2),
        ("SignIn", "Fail", 5),
        ("PasswordChange", "Pass", 1),
        ("ForgotPassword", "Pass", 1),
        ("GroupChange", "Pass", 1),
        ("AdminAction", "Pass", 1),
    ] {
        ensure!(
            count(ty, resp) >= min,
            "expected at least {min} {ty}/{resp} events for {user}; got: {}",
            show(&events)
        );
    }
    ensure!(
        events.iter().any(|e| e.event_type == "Lockout"),
        "no Lockout event after 5 failures and a refused attempt: {}",
        show(&events)
    );
    for e in &events {
        if ["SignUp", "ConfirmSignUp", "SignIn"].contains(&e.event_type.as_str()) {
            ensure!(
                e.client_id == d.client_id,
                "{} event client_id {:?}, expected {}",
                e.event_type,
                e.client_id,
                d.client_id
            );
        }
        if ["GroupChange", "AdminAction"].contains(&e.event_type.as_str()) {
            ensure!(!e.detail.is_empty(), "{} event without a detail", e.event_type);
        }
    }
    ensure!(
        events
            .iter()
            .any(|e| e.event_type == "GroupChange" && e.detail.contains("auditors")),
        "the GroupChange event does not name the group: {}",
        show(&events)
    );
    // Order: the synchronous events appear newest first in the order they
    // happened.
    let pos = |ty: &str| events.iter().position(|e| e.event_type == ty);
    let chain = [
        "AdminAction",
        "GroupChange",
        "PasswordChange",
        "ConfirmSignUp",
        "SignUp",
    ];
    let positions: Vec<Option<usize>> = chain.iter().map(|t| pos(t)).collect();
    ensure!(
        positions
            .windows(2)
            .all(|w| matches!((w[0], w[1]), (Some(a), Some(b)) if a < b)),
        "events out of order (newest first expected {chain:?}): {}",
        show(&events)
    );
    ensure!(
        events.last().map(|e| e.event_type.as_str()) == Some("SignUp"),
        "the oldest event should be the SignUp: {}",
        show(&events)
    );

    // Pagination: pages of 3 give the same events as one page of 60.
    let (paged, pages) = d.auth_events_all(1, user, 3).await?;
    let ids = |v: &[AuthEventType]| v.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>();
    let (all_again, _) = d.auth_events_all(2, user, 60).await?;
    ensure!(
        ids(&paged) == ids(&all_again),
        "pages of 3 and a page of 60 differ:\n{}\n{}",
        show(&paged),
        show(&all_again)
    );
    ensure!(
        pages == all_again.len().div_ceil(3),
        "{} events by 3 took {pages} pages",
        all_again.len()
    );
    ensure!(all_again.len() >= 13, "only {} events for audrey", all_again.len());

    // Per user and pool-wide.
    let (bert_events, _) = d.auth_events_all(2, bert, 0).await?;
    ensure!(
        !bert_events.is_empty() && bert_events.iter().all(|e| e.username == bert),
        "bert's listing: {}",
        show(&bert_events)
    );
    let bert_signin = poll_until(
        "bert's AdminInitiateAuth sign-in in the audit log",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async {
            let (ev, _) = d.auth_events_all(1, bert, 0).await?;
            Ok(ev
                .into_iter()
                .find(|e| e.event_type == "SignIn" && e.event_response == "Pass" && e.client_id == backend))
        },
    )
    .await?;
    let ip = bert_signin.event_context_data.as_ref().map(|c| c.ip_address.as_str());
    ensure!(
        ip == Some("203.0.113.7"),
        "AdminInitiateAuth with context_data recorded ip {ip:?}"
    );
    let (pool_events, pool_pages) = d.auth_events_all(3, "", 7).await?;
    let users: BTreeSet<&str> = pool_events.iter().map(|e| e.username.as_str()).collect();
    ensure!(
        users.contains(user) && users.contains(bert),
        "the pool-wide listing names {users:?}"
    );
    let pool_ids: BTreeSet<String> = pool_events.iter().map(|e| e.event_id.clone()).collect();
    for e in all_again.iter().chain(bert_events.iter()) {
        ensure!(
            pool_ids.contains(&e.event_id),
            "pool-wide listing misses {} {}",
            e.username,
            e.event_type
        );
    }
    println!(
        "  ok: {} pool-wide events in {pool_pages} pages of 7",
        pool_events.len()
    );
    expect_exception(
        "AdminListUserAuthEvents max_results 61",
        d.auth_events_page(1, user, 61, "").await,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;

    // Newest first, by the time each event happened. (Checked last so that
    // a failure here does not hide the checks above.)
    newest_first("audrey's events", &all_again)?;
    newest_first("audrey's events by 3", &paged)?;
    newest_first("bert's events", &bert_events)?;
    newest_first("the pool's events by 7", &pool_events)?;
    Ok(())
}
