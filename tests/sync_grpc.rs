//! Per-identity data sync over gRPC (`tessera.v1.Sync`, issue 11) on a real
//! three-node cluster: replication across nodes, Cognito Sync's conflicts,
//! the limits and what a refused write leaves behind, listings and their
//! figures, dataset deletion, who may touch whose data (the attack), and
//! what identity merges and deletions do to the data.
//!
//! Every call goes through the real gRPC API of real `tessera` processes.
//! Identities authenticate with their own tokens: a guest's credentials
//! (`GetCredentialsForIdentity`'s `session_token`), or a user-pool access
//! token of a user whose login maps to the identity; the admin token
//! reaches any identity.
//!
//! Run with:
//! `cargo test --features failpoints --test sync_grpc -- --test-threads=1 --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{anyhow, bail, ensure, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::auth::*;
use common::directory::*;
use common::TestCluster;
use prost::Message as _;
use serde_json::{json, Value};
use tessera::auth::signing_key::NodeSigningKey;
use tessera::client::Client;
use tessera::proto::*;
use tonic::Code;

/// A test that runs `$body` on a fresh three-node cluster and reports its
/// time; on failure the nodes' logs are printed.
macro_rules! scenario {
    ($name:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let start = Instant::now();
            let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
            println!("cluster formed in {:?}", start.elapsed());
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

scenario!(writes_reach_every_node_and_conflicts_have_one_winner, replication_body);
scenario!(limits_refuse_and_write_nothing, limits_body);
scenario!(listings_pages_figures_and_deletion, listings_body);
scenario!(an_identity_reaches_only_its_own_data, isolation_body);
scenario!(merges_move_data_and_deletion_erases_it, merges_body);

// ---------------------------------------------------------------------------
// Harness: a user pool, an identity pool with guests and the user pool as
// provider, identities and their tokens, and the Sync calls
// ---------------------------------------------------------------------------

/// One test's world: a user pool (the [`Dir`] fixture), an identity pool
/// that admits guests and the user pool's users, and a client per node
/// that carries no admin token.
struct World {
    d: Dir,
    /// The identity pool.
    pool: String,
    /// The user pool as the identity pool keys it in `logins`.
    provider: String,
    public: Vec<Client>,
}

/// An identity and the token it calls Sync with.
#[derive(Debug, Clone)]
struct Ident {
    id: String,
    token: String,
}

fn arn(role: &str) -> String {
    format!("arn:tessera:iam:::role/{role}")
}

impl World {
    async fn create(c: &TestCluster, name: &str) -> Result<World> {
        // Dir::create waits until every node's signing key is published in
        // every node's JWKS: tokens and credentials are signed on each.
        let d = Dir::create(
            c,
            DirSpec {
                name,
                ..Default::default()
            },
        )
        .await?;
        let cluster = d
            .node(1)
            .describe_cluster()
            .await
            .map_err(status_err("DescribeCluster"))?;
        let public_url = cluster.public_url.trim_end_matches('/').to_string();
        let host = public_url
            .strip_prefix("https://")
            .or_else(|| public_url.strip_prefix("http://"))
            .unwrap_or(&public_url);
        let provider = format!("{host}/{}", d.pool_id);
        let admin = d.node(1).clone();
        let policy = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["sync:*"], "Resource": ["*"]}
        ]})
        .to_string();
        for role in ["SyncGuests", "SyncMembers"] {
            admin
                .identity()
                .create_role(admin.req(CreateRoleRequest {
                    role_name: role.into(),
                    description: format!("the {role} role"),
                    policy_document: policy.clone(),
                }))
                .await
                .map_err(status_err(&format!("CreateRole {role}")))?;
        }
        let pool = admin
            .identity()
            .create_identity_pool(admin.req(CreateIdentityPoolRequest {
                identity_pool_name: format!("{} identities", name.replace('-', "_")),
                allow_unauthenticated_identities: true,
                cognito_identity_providers: vec![CognitoIdentityProvider {
                    provider_name: provider.clone(),
                    client_id: d.client_id.clone(),
                    server_side_token_check: false,
                }],
                ..Default::default()
            }))
            .await
            .map_err(status_err("CreateIdentityPool"))?
            .into_inner()
            .identity_pool_id;
        admin
            .identity()
            .set_identity_pool_roles(admin.req(SetIdentityPoolRolesRequest {
                identity_pool_id: pool.clone(),
                roles: BTreeMap::from([
                    ("authenticated".to_string(), arn("SyncMembers")),
                    ("unauthenticated".to_string(), arn("SyncGuests")),
                ]),
                role_mappings: BTreeMap::new(),
            }))
            .await
            .map_err(status_err("SetIdentityPoolRoles"))?;
        let mut public = Vec::new();
        for id in 1..=c.nodes.len() as u64 {
            public.push(Client::connect(&c.node(id).url(), None).await?);
        }
        let w = World {
            d,
            pool,
            provider,
            public,
        };
        // The public calls read the local state: every node must have the
        // pool and its roles before the first GetId.
        for via in 1..=3 {
            let a = w.admin(via);
            a.identity()
                .describe_identity_pool(a.req(DescribeIdentityPoolRequest {
                    identity_pool_id: w.pool.clone(),
                }))
                .await
                .map_err(status_err(&format!("DescribeIdentityPool (a barrier) on node {via}")))?;
        }
        Ok(w)
    }

    /// The admin client of node `via`.
    fn admin(&self, via: u64) -> &Client {
        self.d.node(via)
    }

    /// The token-less client of node `via`.
    fn public(&self, via: u64) -> &Client {
        &self.public[(via - 1) as usize]
    }

    /// The admin token.
    fn admin_token(&self, c: &TestCluster) -> String {
        c.token.clone()
    }

    /// A new guest (GetId through `via` with no login) and its credentials
    /// (through the next node).
    async fn guest(&self, via: u64) -> Result<Ident> {
        let id = self
            .public(via)
            .identity()
            .get_id(GetIdRequest {
                account_id: String::new(),
                identity_pool_id: self.pool.clone(),
                logins: BTreeMap::new(),
            })
            .await
            .map_err(status_err("GetId for a guest"))?
            .into_inner()
            .identity_id;
        let token = self.credentials(via % 3 + 1, &id, &BTreeMap::new()).await?;
        Ok(Ident { id, token })
    }

    /// `GetCredentialsForIdentity` through `via`: the session token.
    async fn credentials(&self, via: u64, identity_id: &str, logins: &BTreeMap<String, String>) -> Result<String> {
        Ok(self.credentials_raw(via, identity_id, logins).await?.1)
    }

    /// `GetCredentialsForIdentity` through `via`: the identity id it
    /// answered and the session token.
    async fn credentials_raw(
        &self,
        via: u64,
        identity_id: &str,
        logins: &BTreeMap<String, String>,
    ) -> Result<(String, String)> {
        let r = self
            .public(via)
            .identity()
            .get_credentials_for_identity(GetCredentialsForIdentityRequest {
                identity_id: identity_id.to_string(),
                logins: logins.clone(),
                custom_role_arn: String::new(),
                duration_seconds: 0,
            })
            .await
            .map_err(status_err(&format!("GetCredentialsForIdentity for {identity_id}")))?
            .into_inner();
        let token = r
            .credentials
            .map(|c| c.session_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| anyhow!("GetCredentialsForIdentity for {identity_id}: no session token"))?;
        Ok((r.identity_id, token))
    }

    /// A confirmed user of the user pool, signed in through `via`.
    async fn user(&self, via: u64, username: &str) -> Result<Tokens> {
        let email = format!("{username}@sync.test");
        self.d
            .admin_create_user(via, username, &[("email", email.as_str())], "Temp-Passw0rd!")
            .await
            .map_err(status_err(&format!("AdminCreateUser {username}")))?;
        let a = self.admin(via);
        a.admin()
            .admin_set_user_password(a.req(AdminSetUserPasswordRequest {
                user_pool_id: self.d.pool_id.clone(),
                username: username.to_string(),
                password: GOOD_PASSWORD.to_string(),
                permanent: true,
            }))
            .await
            .map_err(status_err(&format!("AdminSetUserPassword {username}")))?;
        self.d.barrier(via).await?;
        self.d.sign_in(via, username, GOOD_PASSWORD).await
    }

    /// `logins` with the user's id token.
    fn login(&self, t: &Tokens) -> BTreeMap<String, String> {
        BTreeMap::from([(self.provider.clone(), t.id_token.clone())])
    }

    /// The identity of a signed-in user (GetId with its id token through
    /// `via`), with its access token as the Sync bearer.
    async fn user_identity(&self, via: u64, t: &Tokens) -> Result<Ident> {
        let id = self
            .public(via)
            .identity()
            .get_id(GetIdRequest {
                account_id: String::new(),
                identity_pool_id: self.pool.clone(),
                logins: self.login(t),
            })
            .await
            .map_err(status_err("GetId with a user's login"))?
            .into_inner()
            .identity_id;
        Ok(Ident {
            id,
            token: t.access_token.clone(),
        })
    }

    /// The Sync calls of `who` through node `via`, in `pool`.
    fn sync<'a>(&'a self, via: u64, token: &'a str) -> Syncer<'a> {
        Syncer {
            c: self.public(via),
            token,
            pool: &self.pool,
        }
    }
}

/// The Sync calls of one caller (its bearer token) through one node.
struct Syncer<'a> {
    c: &'a Client,
    token: &'a str,
    pool: &'a str,
}

/// A request with `authorization: Bearer <token>` (none if empty).
fn bearer<T>(body: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(body);
    if !token.is_empty() {
        if let Ok(v) = format!("Bearer {token}").parse() {
            req.metadata_mut().insert("authorization", v);
        }
    }
    req
}

fn put(key: &str, value: &str, sync_count: i64) -> RecordPatch {
    RecordPatch {
        op: "replace".into(),
        key: key.into(),
        value: Some(value.into()),
        sync_count,
        device_last_modified_date: 0,
    }
}

fn remove(key: &str, sync_count: i64) -> RecordPatch {
    RecordPatch {
        op: "remove".into(),
        key: key.into(),
        value: None,
        sync_count,
        device_last_modified_date: 0,
    }
}

impl Syncer<'_> {
    async fn update(
        &self,
        id: &str,
        dataset: &str,
        device: &str,
        patches: Vec<RecordPatch>,
    ) -> Result<UpdateRecordsResponse, tonic::Status> {
        self.update_in(self.pool, id, dataset, device, patches).await
    }

    async fn update_in(
        &self,
        pool: &str,
        id: &str,
        dataset: &str,
        device: &str,
        patches: Vec<RecordPatch>,
    ) -> Result<UpdateRecordsResponse, tonic::Status> {
        Ok(self
            .c
            .sync()
            .update_records(bearer(
                UpdateRecordsRequest {
                    identity_pool_id: pool.into(),
                    identity_id: id.into(),
                    dataset_name: dataset.into(),
                    device_id: device.into(),
                    record_patches: patches,
                    ..Default::default()
                },
                self.token,
            ))
            .await?
            .into_inner())
    }

    async fn records(
        &self,
        id: &str,
        dataset: &str,
        last_sync_count: i64,
        next_token: &str,
        max_results: i32,
    ) -> Result<ListRecordsResponse, tonic::Status> {
        Ok(self
            .c
            .sync()
            .list_records(bearer(
                ListRecordsRequest {
                    identity_pool_id: self.pool.into(),
                    identity_id: id.into(),
                    dataset_name: dataset.into(),
                    last_sync_count,
                    next_token: next_token.into(),
                    max_results,
                    sync_session_token: String::new(),
                },
                self.token,
            ))
            .await?
            .into_inner())
    }

    /// Every record changed after `last_sync_count`, page by page.
    async fn all_records(&self, id: &str, dataset: &str, last_sync_count: i64) -> Result<Vec<SyncRecord>> {
        let mut out = Vec::new();
        let mut token = String::new();
        for _ in 0..100 {
            let page = self
                .records(id, dataset, last_sync_count, &token, 0)
                .await
                .map_err(status_err(&format!("ListRecords {dataset} after {last_sync_count}")))?;
            out.extend(page.records);
            if page.next_token.is_empty() {
                return Ok(out);
            }
            token = page.next_token;
        }
        bail!("ListRecords {dataset} did not end after 100 pages")
    }

    async fn datasets(
        &self,
        id: &str,
        next_token: &str,
        max_results: i32,
    ) -> Result<ListDatasetsResponse, tonic::Status> {
        Ok(self
            .c
            .sync()
            .list_datasets(bearer(
                ListDatasetsRequest {
                    identity_pool_id: self.pool.into(),
                    identity_id: id.into(),
                    next_token: next_token.into(),
                    max_results,
                },
                self.token,
            ))
            .await?
            .into_inner())
    }

    async fn describe(&self, id: &str, dataset: &str) -> Result<SyncDataset, tonic::Status> {
        self.c
            .sync()
            .describe_dataset(bearer(
                DescribeDatasetRequest {
                    identity_pool_id: self.pool.into(),
                    identity_id: id.into(),
                    dataset_name: dataset.into(),
                },
                self.token,
            ))
            .await?
            .into_inner()
            .dataset
            .ok_or_else(|| tonic::Status::internal("test harness: DescribeDataset returned no dataset"))
    }

    async fn delete(&self, id: &str, dataset: &str) -> Result<SyncDataset, tonic::Status> {
        self.c
            .sync()
            .delete_dataset(bearer(
                DeleteDatasetRequest {
                    identity_pool_id: self.pool.into(),
                    identity_id: id.into(),
                    dataset_name: dataset.into(),
                },
                self.token,
            ))
            .await?
            .into_inner()
            .dataset
            .ok_or_else(|| tonic::Status::internal("test harness: DeleteDataset returned no dataset"))
    }

    async fn usage(&self, id: &str) -> Result<DescribeIdentityUsageResponse, tonic::Status> {
        self.usage_in(self.pool, id).await
    }

    async fn usage_in(&self, pool: &str, id: &str) -> Result<DescribeIdentityUsageResponse, tonic::Status> {
        Ok(self
            .c
            .sync()
            .describe_identity_usage(bearer(
                DescribeIdentityUsageRequest {
                    identity_pool_id: pool.into(),
                    identity_id: id.into(),
                },
                self.token,
            ))
            .await?
            .into_inner())
    }

    /// Every Sync method against identity `id` (in `pool`), each with a
    /// plausible request: a read or write of dataset `dataset`.
    async fn every_rpc(&self, pool: &str, id: &str, dataset: &str) -> Vec<(&'static str, Result<(), tonic::Status>)> {
        let s = Syncer {
            c: self.c,
            token: self.token,
            pool,
        };
        vec![
            ("ListDatasets", s.datasets(id, "", 0).await.map(|_| ())),
            ("DescribeDataset", s.describe(id, dataset).await.map(|_| ())),
            ("ListRecords", s.records(id, dataset, 0, "", 0).await.map(|_| ())),
            (
                "UpdateRecords",
                s.update(id, dataset, "intruder", vec![put("stolen", "yes", 99)])
                    .await
                    .map(|_| ()),
            ),
            ("DeleteDataset", s.delete(id, dataset).await.map(|_| ())),
            ("DescribeIdentityUsage", s.usage(id).await.map(|_| ())),
        ]
    }
}

/// Requires every call in `results` to have been refused with `code` and
/// `exception`.
fn all_refused(what: &str, results: Vec<(&str, Result<(), tonic::Status>)>, code: Code, exception: &str) -> Result<()> {
    ensure!(results.len() == 6, "{what}: {} calls", results.len());
    for (rpc, r) in results {
        expect_exception(&format!("{what}: {rpc}"), r, code, exception)?;
    }
    Ok(())
}

/// The records as `key -> value` (`None` for a tombstone).
fn values(records: &[SyncRecord]) -> BTreeMap<String, Option<String>> {
    records.iter().map(|r| (r.key.clone(), r.value.clone())).collect()
}

fn keys(records: &[SyncRecord]) -> Vec<String> {
    records.iter().map(|r| r.key.clone()).collect()
}

/// The `SyncConflict` in a conflict's status details.
fn conflict_of(s: &tonic::Status) -> Result<SyncConflict> {
    SyncConflict::decode(s.details()).context("the conflict's status details are not a SyncConflict")
}

// ---------------------------------------------------------------------------
// Writes on one node, reads on the others; conflicts
// ---------------------------------------------------------------------------

async fn replication_body(c: &TestCluster) -> Result<()> {
    let w = World::create(c, "sync-repl").await?;
    let g = w.guest(2).await?;
    let admin = w.admin_token(c);

    // A write acknowledged through node 1 is on a quorum, and reads are
    // consistent: nodes 2 and 3 answer with it at once, no polling.
    let r = w
        .sync(1, &g.token)
        .update(&g.id, "prefs", "phone", vec![put("a", "1", 0), put("b", "2", 0)])
        .await
        .map_err(status_err("UpdateRecords through node 1"))?;
    ensure!(
        r.dataset_sync_count == 1,
        "first update: dataset sync count {}",
        r.dataset_sync_count
    );
    ensure!(
        r.records.len() == 2
            && r.records
                .iter()
                .all(|x| x.sync_count == 1 && x.last_modified_by == "phone"),
        "first update: {:?}",
        r.records
    );
    let cursor = r.cursor.ok_or_else(|| anyhow!("UpdateRecords returned no cursor"))?;
    ensure!(
        cursor.seq == 1 && cursor.epoch != 0,
        "cursor after the first change: {cursor:?}"
    );
    for via in [2, 3] {
        for (who, token) in [("the identity", g.token.as_str()), ("the admin", admin.as_str())] {
            let got = w
                .sync(via, token)
                .records(&g.id, "prefs", 0, "", 0)
                .await
                .map_err(status_err(&format!("ListRecords by {who} through node {via}")))?;
            ensure!(
                values(&got.records)
                    == BTreeMap::from([("a".into(), Some("1".into())), ("b".into(), Some("2".into()))]),
                "{who} through node {via} read {:?} right after the write",
                got.records
            );
            ensure!(
                got.dataset_sync_count == 1 && got.dataset_exists,
                "{who} on node {via}: {got:?}"
            );
        }
    }
    // Many writes, each through one node and read at once through another:
    // a stale read would show the previous value.
    let mut sync_count = 1;
    for i in 0..30u64 {
        let (wn, rn) = (i % 3 + 1, (i + 1) % 3 + 1);
        let value = format!("v{i}");
        let r = w
            .sync(wn, &g.token)
            .update(&g.id, "prefs", "phone", vec![put("a", &value, sync_count)])
            .await
            .map_err(status_err(&format!("write {i} through node {wn}")))?;
        sync_count = r.dataset_sync_count;
        let got = w
            .sync(rn, &g.token)
            .records(&g.id, "prefs", sync_count - 1, "", 0)
            .await
            .map_err(status_err(&format!("read {i} through node {rn}")))?;
        ensure!(
            got.records.len() == 1 && got.records[0].value.as_deref() == Some(value.as_str()),
            "write {i} through node {wn}, read through node {rn}: {:?}",
            got.records
        );
    }
    println!("30 writes, each read at once through another node: all seen");

    // Two devices saw "a" at the same sync count and write it at once,
    // each with a second key: exactly one wins.
    let seen = sync_count;
    let phone = w.sync(1, &g.token);
    let tablet = w.sync(2, &g.token);
    let (p, t) = tokio::join!(
        phone.update(
            &g.id,
            "prefs",
            "phone",
            vec![put("a", "from-phone", seen), put("phone-only", "p", 0)]
        ),
        tablet.update(
            &g.id,
            "prefs",
            "tablet",
            vec![put("a", "from-tablet", seen), put("tablet-only", "t", 0)]
        ),
    );
    let (winner, loser_key, won, lost) = match (p, t) {
        (Ok(r), Err(s)) => ("from-phone", "tablet-only", r, s),
        (Err(s), Ok(r)) => ("from-tablet", "phone-only", r, s),
        (p, t) => bail!("two writers at sync count {seen}: expected exactly one to win, got {p:?} and {t:?}"),
    };
    let s = expect_exception(
        "the losing writer",
        Err::<(), _>(lost),
        Code::Aborted,
        "ResourceConflictException",
    )?;
    ensure!(
        s.message().contains("\"a\""),
        "the conflict does not name key \"a\": {}",
        s.message()
    );
    let conflict = conflict_of(&s)?;
    ensure!(
        conflict.records.len() == 1
            && conflict.records[0].key == "a"
            && conflict.records[0].value.as_deref() == Some(winner)
            && conflict.records[0].sync_count == won.dataset_sync_count,
        "the conflict detail should hold the winner's \"a\" ({winner}, sync count {}): {conflict:?}",
        won.dataset_sync_count
    );
    ensure!(
        conflict.dataset_sync_count == won.dataset_sync_count && conflict.omitted_records == 0,
        "conflict detail: {conflict:?}"
    );
    // Nothing of the losing update was written, on any node.
    for via in 1..=3 {
        let all = w.sync(via, &admin).all_records(&g.id, "prefs", 0).await?;
        let v = values(&all);
        ensure!(
            !v.contains_key(loser_key),
            "node {via} holds the loser's {loser_key}: {v:?}"
        );
        ensure!(
            v.get("a") == Some(&Some(winner.to_string())),
            "node {via}: a = {:?}, not the winner's {winner}",
            v.get("a")
        );
    }
    println!("two writers: {winner} won, the other got the conflict and wrote nothing");
    // The loser resolves with the sync count the conflict gave it.
    let resolved = w
        .sync(3, &g.token)
        .update(
            &g.id,
            "prefs",
            "resolver",
            vec![
                put("a", "merged", conflict.records[0].sync_count),
                put(loser_key, "late", 0),
            ],
        )
        .await
        .map_err(status_err("the resolved retry"))?;
    ensure!(
        resolved.dataset_sync_count == won.dataset_sync_count + 1,
        "{resolved:?}"
    );

    // A conflict on a record with a large value: the status must still
    // reach the client whole (HTTP/2 trailers are bounded), naming both
    // keys, with the small record in the detail and the large one counted
    // as omitted.
    let big = "x".repeat(300 * 1024);
    let r = w
        .sync(1, &g.token)
        .update(&g.id, "prefs", "phone", vec![put("big", &big, 0)])
        .await
        .map_err(status_err("writing a 300 KiB value"))?;
    let stale = w
        .sync(2, &g.token)
        .update(
            &g.id,
            "prefs",
            "tablet",
            vec![put("big", "mine", 0), put("a", "mine", 1), put("fresh", "f", 0)],
        )
        .await;
    let s = expect_exception(
        "a conflict on a 300 KiB record",
        stale,
        Code::Aborted,
        "ResourceConflictException",
    )?;
    ensure!(
        s.message().contains("\"big\"") && s.message().contains("\"a\""),
        "{}",
        s.message()
    );
    let conflict = conflict_of(&s)?;
    ensure!(
        conflict.omitted_records == 1
            && keys(&conflict.records) == vec!["a".to_string()]
            && conflict.records[0].value.as_deref() == Some("merged")
            && conflict.dataset_sync_count == r.dataset_sync_count,
        "the large conflict's detail: {} records {:?}, {} omitted, dataset at {}",
        conflict.records.len(),
        keys(&conflict.records),
        conflict.omitted_records,
        conflict.dataset_sync_count
    );
    ensure!(
        s.details().len() <= tessera::api::grpc::sync::CONFLICT_DETAIL_BYTES,
        "detail of {} bytes",
        s.details().len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

/// Requires `r` to be refused with `exception`, and the usage of identity
/// `id` (and so its data), read by `admin`, to be exactly `before`
/// afterwards, on every node.
async fn refused_unchanged<T: std::fmt::Debug>(
    (w, admin, id): (&World, &str, &str),
    before: &DescribeIdentityUsageResponse,
    what: &str,
    r: Result<T, tonic::Status>,
    code: Code,
    exception: &str,
) -> Result<tonic::Status> {
    let s = expect_exception(what, r, code, exception)?;
    for via in 1..=3 {
        let now = w
            .sync(via, admin)
            .usage(id)
            .await
            .map_err(status_err("DescribeIdentityUsage"))?;
        ensure!(
            now == *before,
            "{what}: refused, but the usage on node {via} moved from {before:?} to {now:?}"
        );
    }
    Ok(s)
}

async fn limits_body(c: &TestCluster) -> Result<()> {
    let w = World::create(c, "sync-limits").await?;
    let admin = w.admin_token(c);
    let g = w.guest(1).await?;
    let dev = w.sync(1, &g.token);
    dev.update(&g.id, "ds00", "phone", vec![put("k", "v", 0)])
        .await
        .map_err(status_err("the first write"))?;
    let u = dev.usage(&g.id).await.map_err(status_err("DescribeIdentityUsage"))?;
    ensure!(u.dataset_count == 1 && u.data_storage == 2, "{u:?}");

    // Malformed input: InvalidParameterException, nothing written.
    let (name129, device257) = ("n".repeat(129), "d".repeat(257));
    let bad: Vec<(&str, &str, &str, Vec<RecordPatch>)> = vec![
        (
            "a dataset name with a space",
            "has space",
            "phone",
            vec![put("k", "v", 0)],
        ),
        (
            "a dataset name of 129 characters",
            &name129,
            "phone",
            vec![put("k", "v", 0)],
        ),
        ("an empty dataset name", "", "phone", vec![put("k", "v", 0)]),
        ("a dataset name with a slash", "a/b", "phone", vec![put("k", "v", 0)]),
        ("an empty key", "ds00", "phone", vec![put("", "v", 0)]),
        (
            "a key of 1,025 characters",
            "ds00",
            "phone",
            vec![put(&"k".repeat(1025), "v", 0)],
        ),
        (
            "a device id of 257 characters",
            "ds00",
            &device257,
            vec![put("k2", "v", 0)],
        ),
        (
            "op \"upsert\"",
            "ds00",
            "phone",
            vec![RecordPatch {
                op: "upsert".into(),
                ..put("k2", "v", 0)
            }],
        ),
        (
            "a replace without a value",
            "ds00",
            "phone",
            vec![RecordPatch {
                value: None,
                ..put("k2", "v", 0)
            }],
        ),
        ("a negative sync count", "ds00", "phone", vec![put("k2", "v", -1)]),
        ("no patch", "ds00", "phone", vec![]),
        (
            "a key patched twice",
            "ds00",
            "phone",
            vec![put("k2", "v", 0), put("k2", "w", 0)],
        ),
    ];
    for (what, ds, device, patches) in bad {
        // A good patch rides along: it must not be written either.
        let mut patches = patches;
        if !patches.is_empty() && what != "a key patched twice" {
            patches.push(put("rider", "r", 0));
        }
        let r = w.sync(2, &g.token).update(&g.id, ds, device, patches).await;
        refused_unchanged(
            (&w, &admin, &g.id),
            &u,
            what,
            r,
            Code::InvalidArgument,
            "InvalidParameterException",
        )
        .await?;
    }
    // No device id is fine (Cognito's DeviceId is optional): the change is
    // the identity's own.
    let r = w
        .sync(3, &g.token)
        .update(&g.id, "ds00", "", vec![put("k", "w", 1)])
        .await
        .map_err(status_err("an update with no device id"))?;
    ensure!(
        r.records.iter().all(|x| x.last_modified_by == g.id),
        "an identity's change without a device id is recorded as {:?}",
        r.records
    );
    // Names of 128 characters and keys of 1,024 are fine.
    let long_name = "n".repeat(128);
    dev.update(&g.id, &long_name, "phone", vec![put(&"k".repeat(1024), "v", 0)])
        .await
        .map_err(status_err("a 128-character name and a 1,024-character key"))?;
    dev.delete(&g.id, &long_name)
        .await
        .map_err(status_err("DeleteDataset of the long name"))?;

    // Twenty datasets, then a 21st is refused.
    for i in 1..20 {
        w.sync(i % 3 + 1, &g.token)
            .update(&g.id, &format!("ds{i:02}"), "phone", vec![put("k", "v", 0)])
            .await
            .map_err(status_err(&format!("dataset {i}")))?;
    }
    let u = dev.usage(&g.id).await.map_err(status_err("DescribeIdentityUsage"))?;
    ensure!(u.dataset_count == 20 && u.data_storage == 40, "twenty datasets: {u:?}");
    let r = w
        .sync(3, &g.token)
        .update(&g.id, "ds20", "phone", vec![put("k", "v", 0)])
        .await;
    refused_unchanged(
        (&w, &admin, &g.id),
        &u,
        "a 21st dataset",
        r,
        Code::ResourceExhausted,
        "LimitExceededException",
    )
    .await?;
    // The admin is held to the same limit.
    let r = w
        .sync(1, &admin)
        .update(&g.id, "ds21", "", vec![put("k", "v", 0)])
        .await;
    refused_unchanged(
        (&w, &admin, &g.id),
        &u,
        "a 21st dataset by the admin",
        r,
        Code::ResourceExhausted,
        "LimitExceededException",
    )
    .await?;
    // Writing into an existing dataset is still fine at 20. (A dataset's
    // counts start from its identity's change number, not from 1.)
    let at = dev
        .describe(&g.id, "ds01")
        .await
        .map_err(status_err("DescribeDataset"))?
        .sync_count;
    dev.update(&g.id, "ds01", "phone", vec![put("k", "w", at)])
        .await
        .map_err(status_err("updating one of the 20 datasets"))?;

    // 1,024 records, then a 1,025th is refused, tombstones included.
    let patches: Vec<RecordPatch> = (1..1024).map(|i| put(&format!("r{i:04}"), "1", 0)).collect();
    dev.update(&g.id, "ds02", "phone", patches)
        .await
        .map_err(status_err("1,023 more records in one update"))?;
    let d = dev
        .describe(&g.id, "ds02")
        .await
        .map_err(status_err("DescribeDataset"))?;
    ensure!(d.num_records == 1024, "ds02 holds {} records", d.num_records);
    let count = d.sync_count;
    dev.update(&g.id, "ds02", "phone", vec![remove("r0001", count)])
        .await
        .map_err(status_err("removing a record"))?;
    let u = dev.usage(&g.id).await.map_err(status_err("DescribeIdentityUsage"))?;
    let r = w
        .sync(2, &g.token)
        .update(
            &g.id,
            "ds02",
            "phone",
            vec![put("k", "changed", count + 1), put("r1024", "1", 0)],
        )
        .await;
    let s = refused_unchanged(
        (&w, &admin, &g.id),
        &u,
        "a 1,025th record",
        r,
        Code::ResourceExhausted,
        "LimitExceededException",
    )
    .await?;
    ensure!(s.message().contains("1025"), "{}", s.message());
    let d2 = dev
        .describe(&g.id, "ds02")
        .await
        .map_err(status_err("DescribeDataset"))?;
    ensure!(
        d2.num_records == 1024,
        "after the refusal ds02 holds {} records",
        d2.num_records
    );

    // 1 MiB per dataset. A whole 1 MiB dataset in one update passes the
    // transport (whose own bound is 2 MiB) and is stored: ds03 holds "k"
    // and "v", the new record the rest...
    let mib = 1usize << 20;
    let value = "m".repeat(mib - 2 - "fill".len());
    let r = w
        .sync(3, &g.token)
        .update(&g.id, "ds03", "phone", vec![put("fill", &value, 0)])
        .await
        .map_err(status_err("a record that fills 1 MiB exactly"))?;
    let d = dev
        .describe(&g.id, "ds03")
        .await
        .map_err(status_err("DescribeDataset"))?;
    ensure!(d.data_storage == mib as i64, "ds03 holds {} bytes", d.data_storage);
    // ...and one more byte is refused.
    let u = dev.usage(&g.id).await.map_err(status_err("DescribeIdentityUsage"))?;
    let r2 = w
        .sync(1, &g.token)
        .update(&g.id, "ds03", "phone", vec![put("x", "", 0)])
        .await;
    refused_unchanged(
        (&w, &admin, &g.id),
        &u,
        "one byte beyond 1 MiB",
        r2,
        Code::ResourceExhausted,
        "LimitExceededException",
    )
    .await?;
    // Patches that alone exceed 1 MiB are refused before Raft.
    let r3 = w
        .sync(2, &g.token)
        .update(
            &g.id,
            "ds05",
            "phone",
            vec![put("a", &"a".repeat(mib / 2), 0), put("b", &"b".repeat(mib / 2), 0)],
        )
        .await;
    let s = refused_unchanged(
        (&w, &admin, &g.id),
        &u,
        "1 MiB and 2 bytes in one update",
        r3,
        Code::ResourceExhausted,
        "LimitExceededException",
    )
    .await?;
    ensure!(s.message().contains("patches hold"), "{}", s.message());
    // Shrinking the big record makes room again.
    dev.update(&g.id, "ds03", "phone", vec![put("fill", "small", r.dataset_sync_count)])
        .await
        .map_err(status_err("shrinking ds03"))?;
    let d = dev
        .describe(&g.id, "ds03")
        .await
        .map_err(status_err("DescribeDataset"))?;
    ensure!(
        d.data_storage == 11,
        "ds03 holds {} bytes after shrinking",
        d.data_storage
    );
    // A request beyond the transport's bound is refused before decoding.
    let u = dev.usage(&g.id).await.map_err(status_err("DescribeIdentityUsage"))?;
    let huge = w
        .sync(1, &g.token)
        .update(&g.id, "ds04", "phone", vec![put("h", &"h".repeat(3 * mib), 0)])
        .await;
    expect_too_large("a 3 MiB UpdateRecords", huge)?;
    let after = dev.usage(&g.id).await.map_err(status_err("DescribeIdentityUsage"))?;
    ensure!(
        after == u,
        "a refused 3 MiB request changed the usage: {u:?} -> {after:?}"
    );

    // Page sizes.
    for bad in [-1, 1025] {
        let r = dev.records(&g.id, "ds02", 0, "", bad).await;
        expect_exception(
            &format!("ListRecords max_results {bad}"),
            r,
            Code::InvalidArgument,
            "InvalidParameterException",
        )?;
    }
    let page = dev
        .records(&g.id, "ds02", 0, "", 1024)
        .await
        .map_err(status_err("ListRecords max_results 1024"))?;
    ensure!(
        page.records.len() == 1024 && page.next_token.is_empty(),
        "{} records",
        page.records.len()
    );
    for bad in [-1, 61] {
        let r = dev.datasets(&g.id, "", bad).await;
        expect_exception(
            &format!("ListDatasets max_results {bad}"),
            r,
            Code::InvalidArgument,
            "InvalidParameterException",
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Listings, figures, deletion
// ---------------------------------------------------------------------------

async fn listings_body(c: &TestCluster) -> Result<()> {
    let w = World::create(c, "sync-lists").await?;
    let admin = w.admin_token(c);
    let g = w.guest(3).await?;
    let dev = w.sync(1, &g.token);
    let n1 = w.sync(2, &g.token);

    // Change 1: ten keys. 2: two of them again. 3: one removed.
    let initial: Vec<RecordPatch> = (0..10).map(|i| put(&format!("k{i:02}"), &format!("v{i}"), 0)).collect();
    let c1 = dev
        .update(&g.id, "notes", "phone", initial)
        .await
        .map_err(status_err("change 1"))?
        .dataset_sync_count;
    let c2 = n1
        .update(
            &g.id,
            "notes",
            "tablet",
            vec![put("k03", "three", c1), put("k05", "five", c1)],
        )
        .await
        .map_err(status_err("change 2"))?
        .dataset_sync_count;
    let c3 = dev
        .update(&g.id, "notes", "phone", vec![remove("k07", c1)])
        .await
        .map_err(status_err("change 3"))?
        .dataset_sync_count;
    ensure!((c1, c2, c3) == (1, 2, 3), "sync counts {c1}, {c2}, {c3}");

    let all = n1
        .records(&g.id, "notes", 0, "", 0)
        .await
        .map_err(status_err("ListRecords from 0"))?;
    ensure!(
        all.count == 10 && all.records.len() == 10,
        "from 0: {} records",
        all.records.len()
    );
    ensure!(
        keys(&all.records) == (0..10).map(|i| format!("k{i:02}")).collect::<Vec<_>>(),
        "not by key: {:?}",
        keys(&all.records)
    );
    let v = values(&all.records);
    ensure!(
        v["k07"].is_none() && v["k03"].as_deref() == Some("three") && v["k00"].as_deref() == Some("v0"),
        "{v:?}"
    );
    ensure!(
        all.dataset_sync_count == 3
            && all.dataset_exists
            && !all.dataset_deleted_after_requested_sync_count
            && all.last_modified_by == "phone"
            && all.merged_dataset_names.is_empty()
            && !all.sync_session_token.is_empty(),
        "{all:?}"
    );
    for (last, want) in [(c1, vec!["k03", "k05", "k07"]), (c2, vec!["k07"]), (c3, vec![])] {
        let page = dev
            .records(&g.id, "notes", last, "", 0)
            .await
            .map_err(status_err(&format!("ListRecords after {last}")))?;
        ensure!(
            keys(&page.records) == want && page.count as usize == want.len(),
            "after {last}: {:?}, expected {want:?}",
            keys(&page.records)
        );
        ensure!(
            !page.dataset_deleted_after_requested_sync_count,
            "after {last}: {page:?}"
        );
    }
    // A count the dataset never reached: the device must start over.
    let ahead = dev
        .records(&g.id, "notes", 9, "", 0)
        .await
        .map_err(status_err("ListRecords after 9"))?;
    ensure!(
        ahead.dataset_deleted_after_requested_sync_count,
        "a device ahead of the dataset: {ahead:?}"
    );

    // Pages: 25 more keys, read seven at a time through alternating nodes.
    let more: Vec<RecordPatch> = (10..35).map(|i| put(&format!("k{i:02}"), "x", 0)).collect();
    let c4 = n1
        .update(&g.id, "notes", "tablet", more)
        .await
        .map_err(status_err("change 4"))?
        .dataset_sync_count;
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = w
            .sync(pages % 3 + 1, &g.token)
            .records(&g.id, "notes", 0, &token, 7)
            .await
            .map_err(status_err(&format!("page {pages}")))?;
        ensure!(page.records.len() <= 7, "a page of {} records", page.records.len());
        seen.extend(keys(&page.records));
        pages += 1;
        if page.next_token.is_empty() {
            break;
        }
        ensure!(pages < 20, "paging does not end");
        token = page.next_token;
    }
    ensure!(pages == 5, "35 records in pages of 7: {pages} pages");
    ensure!(
        seen == (0..35).map(|i| format!("k{i:02}")).collect::<Vec<_>>(),
        "paged keys: {seen:?}"
    );
    // With a filter too.
    let first = dev
        .records(&g.id, "notes", c3, "", 10)
        .await
        .map_err(status_err("filtered page 1"))?;
    ensure!(
        first.records.len() == 10 && !first.next_token.is_empty(),
        "{:?}",
        keys(&first.records)
    );
    let second = dev
        .records(&g.id, "notes", c3, &first.next_token, 10)
        .await
        .map_err(status_err("filtered page 2"))?;
    let rest = dev
        .records(&g.id, "notes", c3, &second.next_token, 10)
        .await
        .map_err(status_err("filtered page 3"))?;
    let mut filtered = keys(&first.records);
    filtered.extend(keys(&second.records));
    filtered.extend(keys(&rest.records));
    ensure!(
        filtered == (10..35).map(|i| format!("k{i:02}")).collect::<Vec<_>>() && rest.next_token.is_empty(),
        "filtered pages: {filtered:?}"
    );
    // A next token is refused when tampered with, or used for another
    // filter, dataset or identity.
    let mut raw = URL_SAFE_NO_PAD
        .decode(&first.next_token)
        .context("next_token is not base64url")?;
    let mid = raw.len() / 2;
    raw[mid] ^= 0x01;
    let tampered = URL_SAFE_NO_PAD.encode(&raw);
    let other = w.guest(2).await?;
    let misuse = vec![
        (
            "a tampered next_token",
            dev.records(&g.id, "notes", c3, &tampered, 10).await,
        ),
        (
            "a next_token of another last_sync_count",
            dev.records(&g.id, "notes", 0, &first.next_token, 10).await,
        ),
        (
            "a next_token of another dataset",
            dev.records(&g.id, "other", c3, &first.next_token, 10).await,
        ),
        (
            "a next_token of another identity",
            w.sync(1, &other.token)
                .records(&other.id, "notes", c3, &first.next_token, 10)
                .await,
        ),
        ("a made-up next_token", dev.records(&g.id, "notes", c3, "k05", 10).await),
    ];
    for (what, r) in misuse {
        expect_exception(what, r, Code::InvalidArgument, "InvalidParameterException")?;
    }
    let r = dev.datasets(&g.id, &first.next_token, 0).await;
    expect_exception(
        "a ListRecords token in ListDatasets",
        r,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;

    // Figures: DescribeDataset, ListDatasets, DescribeIdentityUsage.
    let expected_bytes: i64 = {
        let all = dev.all_records(&g.id, "notes", 0).await?;
        all.iter()
            .map(|r| (r.key.len() + r.value.as_ref().map_or(0, String::len)) as i64)
            .sum()
    };
    let d = w
        .sync(3, &admin)
        .describe(&g.id, "notes")
        .await
        .map_err(status_err("DescribeDataset by the admin"))?;
    ensure!(
        d.identity_id == g.id
            && d.dataset_name == "notes"
            && d.num_records == 35
            && d.data_storage == expected_bytes
            && d.sync_count == c4
            && d.last_modified_by == "tablet"
            && d.creation_date > 0
            && d.creation_date <= d.last_modified_date
            && d.merged_from.is_empty(),
        "DescribeDataset: {d:?} (expected {expected_bytes} bytes, 35 records, sync count {c4})"
    );
    dev.update(&g.id, "alpha", "phone", vec![put("a", "12345", 0)])
        .await
        .map_err(status_err("dataset alpha"))?;
    dev.update(&g.id, "zulu", "phone", vec![put("z", "1", 0)])
        .await
        .map_err(status_err("dataset zulu"))?;
    let list = n1.datasets(&g.id, "", 0).await.map_err(status_err("ListDatasets"))?;
    let names: Vec<&str> = list.datasets.iter().map(|d| d.dataset_name.as_str()).collect();
    ensure!(
        names == ["alpha", "notes", "zulu"] && list.count == 3 && list.next_token.is_empty(),
        "ListDatasets: {names:?}"
    );
    ensure!(
        list.datasets[0].data_storage == 6 && list.datasets[0].num_records == 1 && list.datasets[1] == d,
        "ListDatasets figures: {:?}",
        list.datasets
    );
    // One at a time.
    let mut paged = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = w
            .sync(3, &g.token)
            .datasets(&g.id, &token, 1)
            .await
            .map_err(status_err("ListDatasets by one"))?;
        ensure!(page.datasets.len() <= 1, "{page:?}");
        paged.extend(page.datasets.into_iter().map(|d| d.dataset_name));
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    ensure!(paged == ["alpha", "notes", "zulu"], "ListDatasets by one: {paged:?}");
    let u = w
        .sync(2, &g.token)
        .usage(&g.id)
        .await
        .map_err(status_err("DescribeIdentityUsage"))?;
    ensure!(
        u.identity_id == g.id
            && u.identity_pool_id == w.pool
            && u.dataset_count == 3
            && u.data_storage == expected_bytes + 6 + 2
            && u.last_modified_date >= d.last_modified_date,
        "DescribeIdentityUsage: {u:?} (expected {} bytes)",
        expected_bytes + 8
    );
    // A guest that never wrote has no usage, and no datasets.
    let none = w
        .sync(1, &other.token)
        .usage(&other.id)
        .await
        .map_err(status_err("empty usage"))?;
    ensure!(
        none.dataset_count == 0 && none.data_storage == 0 && none.last_modified_date == 0,
        "{none:?}"
    );
    let r = w.sync(1, &other.token).describe(&other.id, "notes").await;
    expect_exception(
        "DescribeDataset of a missing dataset",
        r,
        Code::NotFound,
        "ResourceNotFoundException",
    )?;
    let r = w
        .sync(1, &other.token)
        .records(&other.id, "notes", 0, "", 0)
        .await
        .map_err(status_err("ListRecords of nothing"))?;
    ensure!(
        !r.dataset_exists && r.records.is_empty() && !r.dataset_deleted_after_requested_sync_count,
        "{r:?}"
    );

    // Deletion: the dataset is gone on every node, with its records.
    let gone = w
        .sync(2, &g.token)
        .delete(&g.id, "notes")
        .await
        .map_err(status_err("DeleteDataset"))?;
    ensure!(
        gone == d,
        "DeleteDataset answered {gone:?}, not the dataset as it was {d:?}"
    );
    for via in 1..=3 {
        let s = w.sync(via, &g.token);
        let r = s.describe(&g.id, "notes").await;
        expect_exception(
            &format!("DescribeDataset after the deletion on node {via}"),
            r,
            Code::NotFound,
            "ResourceNotFoundException",
        )?;
        let r = s
            .records(&g.id, "notes", c4, "", 0)
            .await
            .map_err(status_err("ListRecords after the deletion"))?;
        ensure!(
            !r.dataset_exists && r.records.is_empty() && r.dataset_deleted_after_requested_sync_count,
            "node {via} after the deletion: {r:?}"
        );
    }
    let u2 = dev
        .usage(&g.id)
        .await
        .map_err(status_err("DescribeIdentityUsage after the deletion"))?;
    ensure!(
        u2.dataset_count == 2 && u2.data_storage == 8,
        "usage after the deletion: {u2:?}"
    );
    let r = dev.delete(&g.id, "notes").await;
    expect_exception("deleting it again", r, Code::NotFound, "ResourceNotFoundException")?;

    // Recreated, with more changes than the old one had: a device still at
    // the old sync count is told the dataset was deleted after it, and the
    // new dataset holds only its own records.
    for i in 0..(c4 + 2) {
        let s = w.sync(i as u64 % 3 + 1, &g.token);
        let at = s
            .records(&g.id, "notes", 0, "", 0)
            .await
            .map_err(status_err("ListRecords of the new dataset"))?
            .dataset_sync_count;
        s.update(&g.id, "notes", "phone", vec![put("again", &format!("{i}"), at)])
            .await
            .map_err(status_err(&format!("rewrite {i} of the recreated dataset")))?;
    }
    let old = dev
        .records(&g.id, "notes", c4, "", 0)
        .await
        .map_err(status_err("ListRecords at the old sync count"))?;
    ensure!(
        old.dataset_exists && old.dataset_deleted_after_requested_sync_count,
        "a device at the old dataset's sync count {c4} is not told it was deleted: {old:?}"
    );
    let fresh = dev.all_records(&g.id, "notes", 0).await?;
    ensure!(
        keys(&fresh) == ["again"],
        "the recreated dataset holds {:?}",
        keys(&fresh)
    );
    let now = dev
        .records(&g.id, "notes", old.dataset_sync_count, "", 0)
        .await
        .map_err(status_err("ListRecords at the new sync count"))?;
    ensure!(
        !now.dataset_deleted_after_requested_sync_count && now.records.is_empty(),
        "a device in step with the new dataset: {now:?}"
    );
    ensure!(
        old.dataset_sync_count > c4,
        "the new dataset counts from {} again, below the old {c4}",
        old.dataset_sync_count
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Isolation: the attack
// ---------------------------------------------------------------------------

/// The claims of a compact JWS (unverified).
fn claims_of(token: &str) -> Result<serde_json::Map<String, Value>> {
    let payload = token.split('.').nth(1).ok_or_else(|| anyhow!("not a compact JWS"))?;
    Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?)
}

/// `header.claims` signed by `key`, with `kid` in the header (which need
/// not be the key's own).
fn sign_as(kid: &str, claims: &serde_json::Map<String, Value>, key: &NodeSigningKey) -> String {
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string())
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

async fn isolation_body(c: &TestCluster) -> Result<()> {
    let w = World::create(c, "sync-isolation").await?;
    let admin = w.admin_token(c);
    let a = w.guest(1).await?;
    let b = w.guest(2).await?;
    let carol_tokens = w.user(3, "carol").await?;
    let carol = w.user_identity(1, &carol_tokens).await?;
    let dave = w.user(2, "dave").await?;
    for (who, i) in [("a", &a), ("b", &b), ("carol", &carol)] {
        w.sync(1, &i.token)
            .update(&i.id, "secret", who, vec![put("owner", who, 0)])
            .await
            .map_err(status_err(&format!("{who} writes its own data")))?;
    }
    let snapshot = |i: &Ident| {
        let (w, admin, id) = (&w, admin.clone(), i.id.clone());
        async move {
            let s = w.sync(3, &admin);
            let d = s
                .datasets(&id, "", 0)
                .await
                .map_err(status_err("ListDatasets by the admin"))?;
            let r = s.all_records(&id, "secret", 0).await?;
            Ok::<_, anyhow::Error>((d, r))
        }
    };
    let b_before = snapshot(&b).await?;
    let carol_before = snapshot(&carol).await?;

    // A's credentials, on every node, against B: every method refused.
    for via in 1..=3 {
        let calls = w.sync(via, &a.token).every_rpc(&w.pool, &b.id, "secret").await;
        all_refused(
            &format!("A's credentials on B's data through node {via}"),
            calls,
            Code::Unauthenticated,
            "NotAuthorizedException",
        )?;
    }
    // Naming its own id in another identity pool does not help either.
    let calls = w
        .sync(1, &a.token)
        .every_rpc("local:00000000-0000-4000-8000-000000000000", &a.id, "secret")
        .await;
    all_refused(
        "A's credentials naming another identity pool",
        calls,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;

    // Forged credentials, each aimed at B.
    let mut claims = claims_of(&a.token)?;
    claims.insert("sub".into(), json!(b.id));
    let kid = kid_of(&a.token)?;
    let stranger = NodeSigningKey::from_seed(1, [0x5a; 32]);
    let mut forged = vec![
        (
            "A's credentials with sub edited to B",
            tamper(&a.token, "sub", json!(b.id))?,
        ),
        (
            "credentials for B signed by a key not in the JWKS, under A's kid",
            sign_as(&kid, &claims, &stranger),
        ),
        (
            "credentials for B signed by a key not in the JWKS, under its own kid",
            sign_as(stranger.kid(), &claims, &stranger),
        ),
        (
            "B's credentials with no signature",
            b.token
                .rsplit_once('.')
                .map(|(head, _)| format!("{head}."))
                .unwrap_or_default(),
        ),
        ("garbage", "not-a-token".to_string()),
        ("a JWS of garbage", "eyJhbGciOiJFZERTQSJ9.e30.AAAA".to_string()),
        ("carol's id token", carol_tokens.id_token.clone()),
        ("carol's refresh token", carol_tokens.refresh_token.clone()),
    ];
    // Expired credentials: B's own claims, signed with the real key of the
    // node that signed them (read from its data dir, as only a thief
    // could), but with an expiry in the past.
    let b_kid = kid_of(&b.token)?;
    let node: u64 = b_kid
        .strip_prefix('n')
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("kid {b_kid} names no node"))?;
    let real = NodeSigningKey::load_or_create(&c.node(node).data_dir.join("keys"), node)
        .map_err(|e| anyhow!("loading node {node}'s signing key: {e}"))?;
    ensure!(
        real.kid() == b_kid,
        "node {node}'s key is {}, B's credentials name {b_kid}",
        real.kid()
    );
    let mut b_claims = claims_of(&b.token)?;
    // The control: B's claims as they are, signed this way, are accepted,
    // so the expiry alone is what the node refuses below.
    let control = sign_as(&b_kid, &b_claims, &real);
    w.sync(2, &control)
        .records(&b.id, "secret", 0, "", 0)
        .await
        .map_err(status_err("B's own claims, re-signed with the real key"))?;
    let now = now_secs();
    b_claims.insert("iat".into(), json!(now - 7200));
    b_claims.insert("exp".into(), json!(now - 3600));
    forged.push((
        "B's credentials, expired an hour ago",
        sign_as(&b_kid, &b_claims, &real),
    ));
    for (what, token) in &forged {
        for via in [1, 3] {
            let calls = w.sync(via, token).every_rpc(&w.pool, &b.id, "secret").await;
            all_refused(
                &format!("{what} through node {via}"),
                calls,
                Code::Unauthenticated,
                "NotAuthorizedException",
            )?;
        }
    }
    // No token at all.
    let calls = w.sync(2, "").every_rpc(&w.pool, &b.id, "secret").await;
    all_refused("no token", calls, Code::Unauthenticated, "NotAuthorizedException")?;

    // Carol's access token reaches her identity, and only hers.
    let mine = w
        .sync(2, &carol.token)
        .all_records(&carol.id, "secret", 0)
        .await
        .context("carol reads her own data with her access token")?;
    ensure!(
        values(&mine) == BTreeMap::from([("owner".into(), Some("carol".into()))]),
        "{mine:?}"
    );
    w.sync(3, &carol.token)
        .update(&carol.id, "secret", "laptop", vec![put("note", "hi", 0)])
        .await
        .map_err(status_err("carol writes with her access token"))?;
    for victim in [&a, &b] {
        let calls = w.sync(1, &carol.token).every_rpc(&w.pool, &victim.id, "secret").await;
        all_refused(
            &format!("carol's access token on {}", victim.id),
            calls,
            Code::Unauthenticated,
            "NotAuthorizedException",
        )?;
    }
    // Her access token needs the identity pool to find her identity.
    let r = w
        .sync(1, &carol.token)
        .update_in("", &carol.id, "secret", "laptop", vec![put("x", "y", 0)])
        .await;
    expect_exception(
        "an access token without identity_pool_id",
        r,
        Code::InvalidArgument,
        "InvalidParameterException",
    )?;
    // An access token whose signature was tampered with is refused.
    let bad_access = tamper(&carol.token, "sub", json!("someone-else"))?;
    let calls = w.sync(2, &bad_access).every_rpc(&w.pool, &carol.id, "secret").await;
    all_refused(
        "carol's access token, edited",
        calls,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    // Dave is a valid user with no identity in the pool: a clear answer.
    let r = w.sync(3, &dave.access_token).usage(&carol.id).await;
    let s = expect_exception(
        "dave's access token (no identity)",
        r,
        Code::NotFound,
        "ResourceNotFoundException",
    )?;
    ensure!(
        s.message().contains("GetId"),
        "the message should say to call GetId: {}",
        s.message()
    );

    // Nothing of the attacks reached B or carol.
    ensure!(snapshot(&b).await? == b_before, "B's data changed under the attacks");
    let carol_after = snapshot(&carol).await?;
    ensure!(
        carol_after.1.iter().all(|r| r.key != "stolen")
            && carol_after.0.datasets.len() == carol_before.0.datasets.len(),
        "carol's data changed under the attacks: {carol_after:?}"
    );

    // The admin reaches every identity, through every node.
    for (via, i) in [(1, &a), (2, &b), (3, &carol)] {
        let s = w.sync(via, &admin);
        let r = s
            .update(&i.id, "admin-notes", "", vec![put("by", "admin", 0)])
            .await
            .map_err(status_err("the admin writes an identity's data"))?;
        ensure!(r.records[0].last_modified_by == "admin", "{r:?}");
        let got = s.all_records(&i.id, "secret", 0).await?;
        ensure!(!got.is_empty(), "the admin reads nothing of {}", i.id);
        s.usage(&i.id)
            .await
            .map_err(status_err("the admin's DescribeIdentityUsage"))?;
        s.delete(&i.id, "admin-notes")
            .await
            .map_err(status_err("the admin deletes a dataset"))?;
    }
    // A wrong admin token is just a wrong token.
    let calls = w
        .sync(1, &format!("{admin}x"))
        .every_rpc(&w.pool, &b.id, "secret")
        .await;
    all_refused(
        "a wrong admin token",
        calls,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;

    // Carol signs out everywhere: her access token stops working on every
    // node. Access tokens are checked against local state, as everywhere
    // in Tessera (bounded staleness), so a node may take a moment to apply
    // the sign-out; once refused, the token stays refused.
    w.d.node(1)
        .auth()
        .global_sign_out(GlobalSignOutRequest {
            access_token: carol.token.clone(),
        })
        .await
        .map_err(status_err("GlobalSignOut"))?;
    for via in 1..=3 {
        let what = format!("a signed-out access token on node {via}");
        let s = refused_within(&what, Code::Unauthenticated, "NotAuthorizedException", || async {
            w.sync(via, &carol.token).usage(&carol.id).await
        })
        .await?;
        ensure!(s.message().contains("revoked"), "{what}: {}", s.message());
        let calls = w.sync(via, &carol.token).every_rpc(&w.pool, &carol.id, "secret").await;
        all_refused(&what, calls, Code::Unauthenticated, "NotAuthorizedException")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Merges and deletions
// ---------------------------------------------------------------------------

async fn merges_body(c: &TestCluster) -> Result<()> {
    let w = World::create(c, "sync-merges").await?;
    let admin = w.admin_token(c);

    // A guest with data signs in as a new user: the same identity, now
    // reached with the user's access token, data and all.
    let g1 = w.guest(1).await?;
    w.sync(2, &g1.token)
        .update(&g1.id, "progress", "phone", vec![put("level", "3", 0)])
        .await
        .map_err(status_err("the guest's first write"))?;
    let erin = w.user(1, "erin").await?;
    let (id, _) = w.credentials_raw(3, &g1.id, &w.login(&erin)).await?;
    ensure!(id == g1.id, "the upgraded guest got identity {id}, not {}", g1.id);
    let e = Ident {
        id: g1.id.clone(),
        token: erin.access_token.clone(),
    };
    let mine = w.sync(2, &e.token).all_records(&e.id, "progress", 0).await?;
    ensure!(
        values(&mine) == BTreeMap::from([("level".into(), Some("3".into()))]),
        "after the upgrade: {mine:?}"
    );

    // A second guest with data signs in as erin: it merges into her
    // identity, and its datasets follow as `<name>.<its id>`.
    let g2 = w.guest(2).await?;
    w.sync(3, &g2.token)
        .update(
            &g2.id,
            "game",
            "tablet",
            vec![put("coins", "100", 0), put("hat", "red", 0)],
        )
        .await
        .map_err(status_err("the second guest's write"))?;
    w.sync(3, &g2.token)
        .update(&g2.id, "game", "tablet", vec![remove("hat", 1)])
        .await
        .map_err(status_err("the second guest's remove"))?;
    w.sync(1, &g2.token)
        .update(&g2.id, "progress", "tablet", vec![put("level", "9", 0)])
        .await
        .map_err(status_err("the second guest's progress"))?;
    let (id, _) = w.credentials_raw(1, &g2.id, &w.login(&erin)).await?;
    ensure!(id == e.id, "the merge answered {id}, not erin's {}", e.id);
    let merged_game = format!("game.{}", g2.id);
    let merged_progress = format!("progress.{}", g2.id);
    for via in 1..=3 {
        let s = w.sync(via, &e.token);
        let r = s
            .records(&e.id, "progress", 0, "", 0)
            .await
            .map_err(status_err(&format!("erin's ListRecords on node {via}")))?;
        let listed: BTreeSet<&str> = r.merged_dataset_names.iter().map(String::as_str).collect();
        ensure!(
            listed == BTreeSet::from([merged_game.as_str(), merged_progress.as_str()]),
            "node {via}: merged_dataset_names {:?}",
            r.merged_dataset_names
        );
        ensure!(
            values(&r.records) == BTreeMap::from([("level".into(), Some("3".into()))]),
            "erin's own progress was overwritten by the merge: {:?}",
            r.records
        );
        let game = s.all_records(&e.id, &merged_game, 0).await?;
        ensure!(
            values(&game) == BTreeMap::from([("coins".into(), Some("100".into())), ("hat".into(), None)]),
            "node {via}: the merged game: {game:?}"
        );
        let d = s
            .describe(&e.id, &merged_game)
            .await
            .map_err(status_err("DescribeDataset of the merged one"))?;
        ensure!(d.merged_from == g2.id && d.num_records == 2, "{d:?}");
    }
    let list = w
        .sync(2, &admin)
        .datasets(&e.id, "", 0)
        .await
        .map_err(status_err("ListDatasets"))?;
    let names: Vec<&str> = list.datasets.iter().map(|d| d.dataset_name.as_str()).collect();
    ensure!(
        names == [merged_game.as_str(), "progress", merged_progress.as_str()],
        "erin's datasets: {names:?}"
    );
    let u = w
        .sync(3, &e.token)
        .usage(&e.id)
        .await
        .map_err(status_err("erin's usage"))?;
    ensure!(u.dataset_count == 3, "erin's usage after the merge: {u:?}");
    // The merged identity's credentials are refused, and nothing is left
    // under its id.
    for via in 1..=3 {
        let calls = w.sync(via, &g2.token).every_rpc(&w.pool, &g2.id, "game").await;
        all_refused(
            &format!("the merged guest's credentials on node {via}"),
            calls,
            Code::Unauthenticated,
            "NotAuthorizedException",
        )?;
        let r = w.sync(via, &g2.token).usage(&g2.id).await;
        let s = expect_exception(
            "the merged guest's usage",
            r,
            Code::Unauthenticated,
            "NotAuthorizedException",
        )?;
        ensure!(s.message().contains("merged into"), "{}", s.message());
        let left = w
            .sync(via, &admin)
            .datasets(&g2.id, "", 0)
            .await
            .map_err(status_err("ListDatasets of the merged"))?;
        ensure!(
            left.datasets.is_empty(),
            "node {via}: the merged identity still has {:?}",
            left.datasets
        );
    }
    // Her devices fold the merged data in, then delete it: no longer listed.
    w.sync(1, &e.token)
        .update(&e.id, "game", "laptop", vec![put("coins", "100", 0)])
        .await
        .map_err(status_err("folding the merged game in"))?;
    w.sync(1, &e.token)
        .delete(&e.id, &merged_game)
        .await
        .map_err(status_err("deleting the merged dataset"))?;
    let r = w
        .sync(2, &e.token)
        .records(&e.id, "game", 0, "", 0)
        .await
        .map_err(status_err("ListRecords"))?;
    ensure!(
        r.merged_dataset_names == vec![merged_progress.clone()],
        "after deleting one merged dataset: {:?}",
        r.merged_dataset_names
    );

    // Deleting the identity deletes its data, on every node.
    let fresh_creds = w.credentials(2, &e.id, &w.login(&erin)).await?;
    let a = w.admin(1);
    let r = a
        .identity()
        .delete_identities(a.req(DeleteIdentitiesRequest {
            identity_ids_to_delete: vec![e.id.clone()],
        }))
        .await
        .map_err(status_err("DeleteIdentities"))?
        .into_inner();
    ensure!(r.unprocessed_identity_ids.is_empty(), "{r:?}");
    for via in 1..=3 {
        let s = w.sync(via, &admin);
        let d = s
            .datasets(&e.id, "", 0)
            .await
            .map_err(status_err("ListDatasets of the deleted"))?;
        ensure!(
            d.datasets.is_empty(),
            "node {via}: the deleted identity still has {:?}",
            d.datasets
        );
        let r = s
            .records(&e.id, "progress", 0, "", 0)
            .await
            .map_err(status_err("ListRecords of the deleted"))?;
        ensure!(
            !r.dataset_exists && r.records.is_empty() && r.merged_dataset_names.is_empty(),
            "node {via}: {r:?}"
        );
        let r = s.describe(&e.id, "progress").await;
        expect_exception(
            "DescribeDataset of the deleted identity",
            r,
            Code::NotFound,
            "ResourceNotFoundException",
        )?;
        let r = s.usage(&e.id).await;
        expect_exception(
            "DescribeIdentityUsage of the deleted identity",
            r,
            Code::NotFound,
            "ResourceNotFoundException",
        )?;
        let r = s.update(&e.id, "progress", "", vec![put("level", "1", 0)]).await;
        expect_exception(
            "the admin writing to a deleted identity",
            r,
            Code::NotFound,
            "ResourceNotFoundException",
        )?;
    }
    // Its credentials no longer work; erin's access token finds no
    // identity any more.
    let r = w.sync(1, &fresh_creds).usage(&e.id).await;
    expect_exception(
        "the deleted identity's credentials",
        r,
        Code::Unauthenticated,
        "NotAuthorizedException",
    )?;
    let r = w.sync(2, &e.token).usage(&e.id).await;
    expect_exception(
        "erin's access token after the deletion",
        r,
        Code::NotFound,
        "ResourceNotFoundException",
    )?;
    Ok(())
}
