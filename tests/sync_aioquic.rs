//! The device sync protocol proven by a QUIC and TLS stack nobody here
//! wrote: `tests/python/sync_aioquic.py` is a device client written from
//! docs/sync-protocol.md and sync.proto alone, on aioquic (with its own
//! TLS 1.3 and a hand-written protobuf codec). If the page or the server
//! drifts from what an outsider can build, this test fails where
//! `tests/sync_server.rs` (quinn and rustls, the server's own stack and
//! generated codec) would not.
//!
//! One three-node cluster, one guest identity; the script runs once per
//! scenario, gets what it needs as JSON on stdin (pool, credential, each
//! node's sync address and pinned fingerprint from `GET /sync-info`) and
//! prints what it saw as JSON. This file judges it:
//!
//! * live push: device A on node 1 writes two records, then one again;
//!   device B on node 2 gets both changes live, `cursor.seq` rising by
//!   one each; B's finished stream is closed with `DONE`;
//! * resume: two changes written over gRPC while B is away; B resumes on
//!   node 3 from its last cursor and gets exactly those, then CaughtUp;
//! * a stale write is a conflict naming the record's current value, and
//!   nothing is written (read back over gRPC);
//! * attacks: garbage and forged credentials (`UNAUTHENTICATED`), a first
//!   frame that is not a Hello (`PROTOCOL`), a first length prefix above
//!   64 KiB (`FRAME_TOO_LARGE`), a wrong pinned fingerprint (the client
//!   refuses the server);
//! * cipher suites: aioquic's default offer gets ChaCha20-Poly1305 (the
//!   server's preference), and a client offering only AES-128-GCM is
//!   still served.
//!
//! The script runs in its own venv (aioquic needs pyOpenSSL, which no
//! release allows with the cryptography of `requirements.txt`):
//! `make test` sets `TESSERA_AIOQUIC_PYTHON` to it; without it the test
//! uses `python3`, which must have aioquic installed
//! (`tests/python/requirements-aioquic.txt`).
//!
//! Run with:
//! `cargo test --features failpoints --test sync_aioquic -- --test-threads=1 --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use common::sync_fixture::*;
use common::TestCluster;
use serde_json::{json, Value};
use tessera::client::Client;
use tessera::proto::*;
use tokio::io::AsyncWriteExt;

/// Close codes (docs/sync-protocol.md).
const DONE: u64 = 0;
const UNAUTHENTICATED: u64 = 1;
const PROTOCOL: u64 = 2;
const FRAME_TOO_LARGE: u64 = 3;

const DATASET: &str = "settings";

fn python() -> String {
    std::env::var("TESSERA_AIOQUIC_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// What every run of the script gets: the pool, the guest's credential
/// and each node's sync address and fingerprint.
struct Setup {
    pool_id: String,
    guest: Guest,
    nodes: BTreeMap<u64, (String, String)>,
}

impl Setup {
    fn fingerprint(&self, via: u64) -> &str {
        &self.nodes[&via].1
    }
}

/// Runs the script in `mode` with `extra` input; its JSON report. Fails
/// if the script exits unsuccessfully or prints no JSON.
async fn run(s: &Setup, mode: &str, extra: Value) -> Result<Value> {
    let nodes: serde_json::Map<String, Value> = s
        .nodes
        .iter()
        .map(|(id, (addr, fp))| (id.to_string(), json!({"addr": addr, "fingerprint": fp})))
        .collect();
    let mut input = json!({
        "mode": mode,
        "pool_id": s.pool_id,
        "token": s.guest.token,
        "nodes": nodes,
    });
    if let (Some(to), Value::Object(more)) = (input.as_object_mut(), extra) {
        to.extend(more);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sync_aioquic.py");
    let started = Instant::now();
    let mut child = tokio::process::Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (set TESSERA_AIOQUIC_PYTHON to a Python with aioquic)",
                python()
            )
        })?;
    let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
    stdin.write_all(input.to_string().as_bytes()).await?;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(150), child.wait_with_output())
        .await
        .with_context(|| format!("the script's {mode} did not finish in 150 s"))??;
    let log = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "the script's {mode} failed ({}):\n{log}",
        out.status
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("the script's {mode} printed no report; its log:\n{log}"))?;
    println!("{mode}: {:?}", started.elapsed());
    Ok(report)
}

fn seq(frame: &Value) -> u64 {
    frame["cursor"]["seq"].as_u64().unwrap_or(0)
}

fn epoch(frame: &Value) -> u64 {
    frame["cursor"]["epoch"].as_u64().unwrap_or(0)
}

/// `key -> value` of a list of records (null for deleted ones).
fn values(records: &Value) -> BTreeMap<String, Value> {
    records
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (r["key"].as_str().unwrap_or_default().to_string(), r["value"].clone()))
        .collect()
}

fn types(frames: &Value) -> Vec<String> {
    frames
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| f["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// The Welcome names the guest's identity, the pool, the serving node.
fn check_welcome(s: &Setup, who: &str, report: &Value, via: u64) -> Result<()> {
    let w = &report["welcome"];
    ensure!(
        w["identity_id"] == s.guest.identity_id.as_str(),
        "{who}: welcomed as {} instead of GetId's {}",
        w["identity_id"],
        s.guest.identity_id
    );
    ensure!(w["identity_pool_id"] == s.pool_id.as_str(), "{who}: pool in {w}");
    ensure!(
        w["node_id"] == via,
        "{who}: served by node {} instead of {via}",
        w["node_id"]
    );
    ensure!(w["max_frame_bytes"] == 2 * 1024 * 1024, "{who}: max_frame_bytes in {w}");
    ensure!(
        w["expires_at"] == s.guest.expiration,
        "{who}: expires_at {} but the credentials expire at {}",
        w["expires_at"],
        s.guest.expiration
    );
    ensure!(
        report["fingerprint"] == s.fingerprint(via),
        "{who}: node {via} presented {}, pinned {}",
        report["fingerprint"],
        s.fingerprint(via)
    );
    ensure!(report["alpn"] == "tessera-sync/1", "{who}: ALPN {}", report["alpn"]);
    Ok(())
}

/// The server ended a connection with `code`: a Goodbye carrying the
/// code and a reason, then an application close with the same.
fn check_closed(what: &str, end: &Value, code: u64) -> Result<()> {
    let g = &end["goodbye"];
    ensure!(
        g["code"] == code && end["close_code"] == code,
        "{what}: expected code {code}, got Goodbye {g} and close {} ({})",
        end["close_code"],
        end["close_reason"]
    );
    ensure!(
        end["application_close"] == true,
        "{what}: not an application close: {end}"
    );
    ensure!(
        g["reason"] == end["close_reason"],
        "{what}: Goodbye and close disagree: {end}"
    );
    ensure!(
        end["close_reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{what}: a close names its reason: {end}"
    );
    ensure!(
        types(&end["frames"]).is_empty(),
        "{what}: frames before the Goodbye: {}",
        end["frames"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aioquic_device_syncs_with_a_three_node_cluster() {
    let start = Instant::now();
    let c = TestCluster::start(3).await.expect("a 3-node cluster forms");
    let r = body(&c).await;
    println!(
        "the aioquic device: {} after {:?}",
        if r.is_ok() { "passed" } else { "FAILED" },
        start.elapsed()
    );
    c.finish(r);
}

async fn body(c: &TestCluster) -> Result<()> {
    let w = SyncWorld::create(c, "aioquic").await?;
    let guest = w.guest(c, 1).await?;
    let mut nodes = BTreeMap::new();
    for via in 1..=3 {
        let info = sync_info(c.node(via)).await?;
        ensure!(info["alpn"] == "tessera-sync/1", "node {via}: {info}");
        let addr = info["sync_addr"].as_str().ok_or_else(|| anyhow!("sync_addr: {info}"))?;
        let fp = info["fingerprint_sha256"]
            .as_str()
            .ok_or_else(|| anyhow!("fingerprint_sha256: {info}"))?;
        nodes.insert(via, (addr.to_string(), fp.to_string()));
    }
    let s = Setup {
        pool_id: w.pool_id.clone(),
        guest,
        nodes,
    };

    let b_cursor = live(&s).await.context("live push")?;
    let expected = resume(c, &s, &b_cursor).await.context("resume")?;
    conflict(c, &s, &expected).await.context("conflict")?;
    attacks(c, &s, &w).await.context("attacks")?;
    aes_only(&s).await.context("AES-only client")?;
    Ok(())
}

/// Scenario a. Returns B's last cursor.
async fn live(s: &Setup) -> Result<Value> {
    let r = run(s, "live", json!({"dataset": DATASET})).await?;
    let (a, b) = (&r["a"], &r["b"]);
    check_welcome(s, "A", a, 1)?;
    check_welcome(s, "B", b, 2)?;
    for (who, d) in [("A", a), ("B", b)] {
        ensure!(
            d["cipher_suite"] == "CHACHA20_POLY1305_SHA256",
            "{who}: aioquic's default offer (AES-256, AES-128, ChaCha20) negotiated {}, \
             but the server prefers ChaCha20-Poly1305",
            d["cipher_suite"]
        );
        // A fresh identity: no cursor is a Reload of nothing, at {epoch, 0}.
        let sub = &d["subscribe"];
        ensure!(
            types(sub) == ["reload", "caught_up"],
            "{who}: a subscription without a cursor of an identity with no data: {sub}"
        );
        ensure!(
            sub[0]["cursor"] == sub[1]["cursor"] && seq(&sub[1]) == 0,
            "{who}: Reload and CaughtUp at {} and {}",
            sub[0]["cursor"],
            sub[1]["cursor"]
        );
    }
    // A's two writes: the sync counts and the cursor of each change.
    let results = r["a"]["results"].as_array().cloned().unwrap_or_default();
    ensure!(results.len() == 2, "A's results: {results:?}");
    let (first, second) = (&results[0]["ok"], &results[1]["ok"]);
    ensure!(
        results[0]["request_id"] == 1 && results[1]["request_id"] == 2,
        "request ids not echoed: {results:?}"
    );
    ensure!(
        !first.is_null() && !second.is_null(),
        "A's writes were not ok: {results:?}"
    );
    ensure!(
        values(&first["records"]) == BTreeMap::from([("color".into(), json!("blue")), ("size".into(), json!("large"))]),
        "first write: {first}"
    );
    ensure!(
        first["dataset_sync_count"] == 1
            && first["records"]
                .as_array()
                .is_some_and(|rs| rs.iter().all(|r| r["sync_count"] == 1)),
        "a new dataset's first write has sync count 1: {first}"
    );
    ensure!(
        second["dataset_sync_count"] == 2 && second["records"][0]["sync_count"] == 2,
        "the second write moves the count to 2: {second}"
    );
    ensure!(
        seq(first) == 1 && seq(second) == 2,
        "cursors of the writes: {results:?}"
    );
    let ep = epoch(first);
    ensure!(ep != 0 && epoch(second) == ep, "epochs of the writes: {results:?}");
    // Before its first change an identity's cursor is {0, 0}; the first
    // change opens its epoch.
    ensure!(
        b["subscribe"][1]["cursor"] == json!({"epoch": 0, "seq": 0}),
        "B caught up at {} before the identity's first change",
        b["subscribe"][1]["cursor"]
    );

    // B, on another node, got both changes live, seq rising by one.
    let live = b["live"].as_array().cloned().unwrap_or_default();
    ensure!(live.len() == 2, "B's live changes: {live:?}");
    for (i, (change, result)) in live.iter().zip([first, second]).enumerate() {
        ensure!(
            change["cursor"] == result["cursor"] && seq(change) == i as u64 + 1,
            "B's change {i} at {} but the write was at {}",
            change["cursor"],
            result["cursor"]
        );
        ensure!(
            change["kind"] == "UPDATE"
                && change["dataset_name"] == DATASET
                && change["device_id"] == "device-a"
                && change["dataset_sync_count"] == result["dataset_sync_count"]
                && values(&change["records"]) == values(&result["records"]),
            "B's change {i}: {change}, the write: {result}"
        );
    }
    ensure!(
        types(&b["quiet"]).is_empty(),
        "B got more than the two changes: {}",
        b["quiet"]
    );
    // A's own session also got its two changes, once each.
    let mut own: Vec<u64> = a["pushed"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(a["quiet"].as_array().into_iter().flatten())
        .map(|f| if f["type"] == "change" { seq(f) } else { u64::MAX })
        .collect();
    own.sort();
    ensure!(own == [1, 2], "A's own session saw {} and {}", a["pushed"], a["quiet"]);
    // B finished its stream: the server closes with DONE.
    check_closed("B finishing its stream", &b["end"], DONE)?;
    Ok(live[1]["cursor"].clone())
}

/// What the gRPC writes made of the dataset while B was away.
struct Missed {
    /// The write of `size` in `DATASET`: its sync count is the dataset's.
    settings: UpdateRecordsResponse,
}

/// Scenario b: two changes over gRPC (one of another dataset, as the
/// subscription is to all), then B resumes on node 3.
async fn resume(c: &TestCluster, s: &Setup, b_cursor: &Value) -> Result<Missed> {
    let node3 = Client::connect(&c.node(3).url(), Some(s.guest.token.clone())).await?;
    let update = |dataset: &str, key: &str, value: &str, sync_count: i64| UpdateRecordsRequest {
        identity_pool_id: s.pool_id.clone(),
        identity_id: s.guest.identity_id.clone(),
        dataset_name: dataset.into(),
        device_id: "grpc-tool".into(),
        record_patches: vec![RecordPatch {
            op: "replace".into(),
            key: key.into(),
            value: Some(value.into()),
            sync_count,
            device_last_modified_date: 0,
        }],
        ..Default::default()
    };
    let mut written = vec![];
    for req in [update(DATASET, "size", "small", 1), update("profile", "name", "ada", 0)] {
        let r = node3
            .sync()
            .update_records(node3.req(req))
            .await
            .context("UpdateRecords")?
            .into_inner();
        written.push(r);
    }
    let cursors: Vec<u64> = written.iter().map(|r| r.cursor.as_ref().map_or(0, |c| c.seq)).collect();
    ensure!(cursors == [3, 4], "the gRPC writes are changes 3 and 4: {cursors:?}");
    // A read through node 3 is consistent (ReadIndex): node 3 has applied
    // both before B asks it for them.
    node3
        .sync()
        .list_records(node3.req(ListRecordsRequest {
            identity_pool_id: s.pool_id.clone(),
            identity_id: s.guest.identity_id.clone(),
            dataset_name: "profile".into(),
            ..Default::default()
        }))
        .await
        .context("ListRecords on node 3")?;

    let r = run(s, "resume", json!({"cursor": b_cursor})).await?;
    check_welcome(s, "B on node 3", &r, 3)?;
    let frames = &r["subscribe"];
    ensure!(
        types(frames) == ["change", "change", "caught_up"],
        "B resuming from {b_cursor} got {frames}, not exactly the two missed changes and CaughtUp"
    );
    for (i, w) in written.iter().enumerate() {
        let change = &frames[i];
        let cursor = w.cursor.as_ref().ok_or_else(|| anyhow!("a write without a cursor"))?;
        ensure!(
            seq(change) == cursor.seq && epoch(change) == cursor.epoch,
            "missed change {i} at {}, written at {cursor:?}",
            change["cursor"]
        );
        let want: BTreeMap<String, Value> = w.records.iter().map(|r| (r.key.clone(), json!(r.value))).collect();
        ensure!(
            values(&change["records"]) == want
                && change["kind"] == "UPDATE"
                && change["device_id"] == "grpc-tool"
                && change["dataset_sync_count"] == w.dataset_sync_count,
            "missed change {i}: {change}, written: {w:?}"
        );
    }
    ensure!(frames[0]["dataset_name"] == DATASET && frames[1]["dataset_name"] == "profile");
    ensure!(
        seq(&frames[2]) == 4 && epoch(&frames[2]) == cursors_epoch(&written),
        "CaughtUp at {}",
        frames[2]["cursor"]
    );
    ensure!(
        types(&r["quiet"]).is_empty(),
        "after CaughtUp, more came: {}",
        r["quiet"]
    );
    Ok(Missed {
        settings: written.swap_remove(0),
    })
}

fn cursors_epoch(written: &[UpdateRecordsResponse]) -> u64 {
    written.first().and_then(|w| w.cursor.as_ref()).map_or(0, |c| c.epoch)
}

/// Scenario c: a write of `color` at sync count 1 (it is at 2 since A's
/// second write) is a conflict, and nothing is written.
async fn conflict(c: &TestCluster, s: &Setup, missed: &Missed) -> Result<()> {
    let r = run(
        s,
        "conflict",
        json!({"dataset": DATASET, "key": "color", "stale_sync_count": 1}),
    )
    .await?;
    check_welcome(s, "the conflicting device", &r, 1)?;
    let result = &r["result"];
    ensure!(
        result["ok"].is_null() && result["error"].is_null() && result["request_id"] == 7,
        "a stale write: {result}"
    );
    let conflict = &result["conflict"];
    ensure!(
        values(&conflict["records"]) == BTreeMap::from([("color".into(), json!("green"))])
            && conflict["records"][0]["sync_count"] == 2,
        "the conflict names color as it is (green, at 2): {conflict}"
    );
    // The size write over gRPC made the dataset's count 3.
    ensure!(
        conflict["dataset_sync_count"] == missed.settings.dataset_sync_count && conflict["omitted_records"] == 0,
        "conflict: {conflict}, dataset last at {}",
        missed.settings.dataset_sync_count
    );
    ensure!(
        types(&r["pushed"]).is_empty() && types(&r["quiet"]).is_empty(),
        "an unsubscribed session got {} {}",
        r["pushed"],
        r["quiet"]
    );
    // Nothing was written: read through another node.
    let node2 = Client::connect(&c.node(2).url(), Some(s.guest.token.clone())).await?;
    let listed = node2
        .sync()
        .list_records(node2.req(ListRecordsRequest {
            identity_pool_id: s.pool_id.clone(),
            identity_id: s.guest.identity_id.clone(),
            dataset_name: DATASET.into(),
            ..Default::default()
        }))
        .await
        .context("ListRecords on node 2")?
        .into_inner();
    let now: BTreeMap<&str, Option<&str>> = listed
        .records
        .iter()
        .map(|r| (r.key.as_str(), r.value.as_deref()))
        .collect();
    ensure!(
        now == BTreeMap::from([("color", Some("green")), ("size", Some("small"))])
            && listed.dataset_sync_count == missed.settings.dataset_sync_count,
        "after the conflict the dataset is {now:?} at {}",
        listed.dataset_sync_count
    );
    Ok(())
}

/// Scenario d.
async fn attacks(c: &TestCluster, s: &Setup, w: &SyncWorld) -> Result<()> {
    // The guest's credential claiming another identity, signature kept.
    let other = w.guest(c, 2).await?;
    let (_, mut claims) = decode_jwt(&s.guest.token)?;
    claims.insert("sub".into(), other.identity_id.clone().into());
    let forged = with_edited_claims(&s.guest.token, &claims);
    let r = run(s, "attacks", json!({"forged_token": forged})).await?;
    for (attack, code) in [
        ("garbage_credential", UNAUTHENTICATED),
        ("forged_credential", UNAUTHENTICATED),
        ("ping_first", PROTOCOL),
        ("subscribe_first", PROTOCOL),
        ("oversize_first", FRAME_TOO_LARGE),
    ] {
        check_closed(attack, &r[attack], code)?;
        println!("{attack}: {} {}", r[attack]["close_code"], r[attack]["close_reason"]);
    }
    let wrong = &r["wrong_fingerprint"];
    ensure!(
        wrong["refused"] == true,
        "the client accepted node 1 pinned to node 2's certificate"
    );
    ensure!(
        wrong["seen"] == s.fingerprint(1),
        "refused for the wrong reason: saw {}, node 1 is {}",
        wrong["seen"],
        s.fingerprint(1)
    );
    Ok(())
}

/// Scenario e, the second half: a client offering only AES-128-GCM.
async fn aes_only(s: &Setup) -> Result<()> {
    let r = run(s, "aes_only", json!({})).await?;
    check_welcome(s, "the AES-only device", &r, 1)?;
    ensure!(
        r["cipher_suite"] == "AES_128_GCM_SHA256",
        "an AES-128-only offer negotiated {}",
        r["cipher_suite"]
    );
    ensure!(types(&r["quiet"]).is_empty(), "AES-only session: {}", r["quiet"]);
    Ok(())
}
