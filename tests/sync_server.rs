//! The QUIC device-sync server (issue 11) on real three-node clusters,
//! driven by a raw device (`common::sync_raw`: quinn and the frame codec,
//! frame by frame) so that every test sends exactly what it means to,
//! hostile bytes included.
//!
//! * `sync_info_pins_the_certificate_and_pushes_across_nodes`: `/sync-info`,
//!   the fingerprint against the certificate the handshake presented,
//!   push from one node to another, catch-up and reload, ping.
//! * `a_device_sees_only_its_own_identity` (issue test 5): isolation,
//!   forged, edited, expired and admin tokens, a deleted identity.
//! * `hostile_input_closes_only_that_connection` (issue test 6).
//! * `a_slow_device_is_resynced_and_costs_the_node_nothing` (issue test 7).
//! * `connection_limits_answer_with_a_reason`.
//! * `a_credential_that_expires_ends_the_session`.
//! * `a_resumed_device_sends_0rtt_and_a_stopping_node_says_goodbye`.
//! * `a_merged_identity_is_closed_naming_its_survivor`.
//! * `a_device_that_writes_and_never_reads_is_held_back`: a device that
//!   sends 1,000 writes and reads no answer gets a bounded number applied
//!   (its window, the session's queue and write slots), then QUIC flow
//!   control stops it; the node serves others meanwhile.
//!
//! Run with:
//! `cargo test --features failpoints --test sync_server -- --test-threads=1 --nocapture`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::sync_fixture::*;
use common::sync_raw::{self, connect, Options, RawConn, RawStream};
use common::{http_get, RaftTuning, TestCluster};
use sha2::Digest;
use tessera::proto::server_frame::Msg as Down;
use tessera::proto::sync_write_result::Result as Wr;
use tessera::proto::*;

/// Close codes (docs/sync-protocol.md).
const DONE: u64 = 0;
const UNAUTHENTICATED: u64 = 1;
const PROTOCOL: u64 = 2;
const FRAME_TOO_LARGE: u64 = 3;
const CREDENTIALS_EXPIRED: u64 = 4;
const TOO_MANY_CONNECTIONS: u64 = 5;
const IDENTITY_GONE: u64 = 6;
const HELLO_TIMEOUT: u64 = 7;
const SHUTTING_DOWN: u64 = 8;
const UNSUPPORTED_VERSION: u64 = 9;

const CLOSE_WITHIN: Duration = Duration::from_secs(15);

async fn three_nodes(tuning: RaftTuning) -> TestCluster {
    let started = Instant::now();
    let c = TestCluster::start_with(3, tuning)
        .await
        .expect("a 3-node cluster forms");
    println!("cluster formed in {:?}", started.elapsed());
    c
}

fn with_sync(extra: &str) -> RaftTuning {
    RaftTuning {
        extra_config: format!("[sync]\n{extra}"),
        ..RaftTuning::default()
    }
}

/// A test that runs `$body` on a fresh three-node cluster and, on failure,
/// prints the nodes' logs.
macro_rules! scenario {
    ($(#[$attr:meta])* $name:ident, $body:ident, $tuning:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $(#[$attr])*
        async fn $name() {
            let start = Instant::now();
            let c = three_nodes($tuning).await;
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

/// A device of `guest` on node `via`: connected, welcomed.
async fn device(c: &TestCluster, via: u64, w: &SyncWorld, guest: &Guest, name: &str) -> Result<(RawConn, RawStream)> {
    device_with(c, via, w, guest, name, &Options::default()).await
}

async fn device_with(
    c: &TestCluster,
    via: u64,
    w: &SyncWorld,
    guest: &Guest,
    name: &str,
    opts: &Options,
) -> Result<(RawConn, RawStream)> {
    let conn = connect(&c.node(via).sync_addr, opts).await?;
    let mut s = conn.open().await?;
    let welcome = s
        .hello(&w.pool_id, &guest.token, name)
        .await
        .with_context(|| format!("Hello of {name} on node {via}"))?;
    ensure!(
        welcome.identity_id == guest.identity_id,
        "{name}: welcomed as {} instead of {}",
        welcome.identity_id,
        guest.identity_id
    );
    ensure!(welcome.node_id == via, "{name}: served by node {}", welcome.node_id);
    Ok((conn, s))
}

/// Subscribes to everything with no cursor: a Reload, then CaughtUp.
async fn subscribe_all(s: &mut RawStream) -> Result<(Vec<SyncChange>, SyncCursor)> {
    s.send(&sync_raw::subscribe("", None)).await?;
    let (changes, others, at) = s.until_caught_up().await?;
    ensure!(
        matches!(others.first(), Some(Down::Reload(_))),
        "a subscription without a cursor starts with a Reload: {others:?}"
    );
    Ok((changes, at))
}

/// The next change pushed to `s`, skipping pongs and results.
async fn next_change(s: &mut RawStream, within: Duration) -> Result<SyncChange> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match s.recv_within(left).await?.and_then(|f| f.msg) {
            Some(Down::Change(c)) => return Ok(c),
            Some(Down::Goodbye(g)) => bail!("Goodbye instead of a change: {g:?}"),
            Some(_) => continue,
            None => bail!("the stream ended"),
        }
    }
}

/// Expects that nothing but pongs arrives on `s` until a ping round trip
/// completes (the server sends frames of a session in order).
async fn expect_quiet(s: &mut RawStream, nonce: u64) -> Result<()> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.send(&sync_raw::ping(nonce)).await?;
    loop {
        match s.next().await? {
            Down::Pong(p) if p.nonce == nonce => return Ok(()),
            Down::Pong(_) => continue,
            other => bail!("expected nothing, got {other:?}"),
        }
    }
}

/// Sends `frames` as raw bytes on a new connection to node `via` and
/// expects the server to close it with `code`: the Goodbye (when there is
/// a stream to carry it) and the QUIC close agree.
async fn expect_closed_after(c: &TestCluster, via: u64, bytes: &[u8], code: u64) -> Result<String> {
    let conn = connect(&c.node(via).sync_addr, &Options::default()).await?;
    let mut s = conn.open().await?;
    s.send_raw(bytes).await?;
    expect_goodbye(&conn, &mut s, code).await
}

async fn expect_goodbye(conn: &RawConn, s: &mut RawStream, code: u64) -> Result<String> {
    let g = s.goodbye().await.context("waiting for the Goodbye")?;
    let (closed_code, reason) = conn.closed(CLOSE_WITHIN).await?;
    ensure!(
        u64::from(g.code) == code && closed_code == code,
        "expected code {code}, got Goodbye {} ({:?}) and close {closed_code} ({reason:?})",
        g.code,
        g.reason
    );
    ensure!(
        g.reason == reason,
        "Goodbye and close disagree: {:?} / {reason:?}",
        g.reason
    );
    ensure!(!reason.is_empty(), "a close names its reason");
    Ok(reason)
}

/// Opens a device with `hello` as its first frame and expects it refused
/// with `code`.
async fn expect_hello_refused(c: &TestCluster, via: u64, hello: &DeviceFrame, code: u64) -> Result<String> {
    let conn = connect(&c.node(via).sync_addr, &Options::default()).await?;
    let mut s = conn.open().await?;
    s.send(hello).await?;
    expect_goodbye(&conn, &mut s, code).await
}

fn seq(c: &SyncChange) -> u64 {
    c.cursor.as_ref().map_or(0, |c| c.seq)
}

fn ok(r: Wr) -> Result<UpdateRecordsResponse> {
    match r {
        Wr::Ok(ok) => Ok(ok),
        other => bail!("write refused: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// /sync-info, pinning, push, catch-up
// ---------------------------------------------------------------------------

async fn sync_info_body(c: &TestCluster) -> Result<()> {
    let w = SyncWorld::create(c, "sync-info").await?;
    let mut fingerprints = Vec::new();
    for via in 1..=3 {
        let node = c.node(via);
        let info = sync_info(node).await?;
        ensure!(info["node_id"] == via, "node_id: {info}");
        ensure!(info["sync_addr"] == node.sync_addr.as_str(), "sync_addr: {info}");
        ensure!(info["alpn"] == "tessera-sync/1", "alpn: {info}");
        ensure!(info["max_frame_bytes"] == 2 * 1024 * 1024, "max_frame_bytes: {info}");
        let nodes = info["nodes"].as_array().ok_or_else(|| anyhow!("nodes: {info}"))?;
        let mut api: Vec<(u64, String)> = nodes
            .iter()
            .map(|n| {
                (
                    n["node_id"].as_u64().unwrap_or(0),
                    n["api_addr"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        api.sort();
        let want: Vec<(u64, String)> = (1..=3).map(|i| (i, c.node(i).api_addr.clone())).collect();
        ensure!(api == want, "nodes {api:?}, expected {want:?}");
        let fp = info["fingerprint_sha256"].as_str().unwrap_or_default().to_string();
        ensure!(
            fp.len() == 64 && fp.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "fingerprint {fp:?}"
        );
        let conn = connect(&node.sync_addr, &Options::default()).await?;
        let presented = hex::encode(sha2::Sha256::digest(&conn.presented_cert));
        ensure!(
            presented == fp,
            "node {via} presented {presented}, /sync-info says {fp}"
        );
        fingerprints.push(fp);
        conn.conn.close(0u32.into(), b"done");
    }
    fingerprints.dedup();
    ensure!(fingerprints.len() == 3, "each node has its own certificate");
    // The self-signed key is the node's only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = c.node(1).data_dir.join("keys").join("sync-key.pem");
        let mode = std::fs::metadata(&key)?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "{} has mode {mode:o}", key.display());
    }

    // Two devices of one identity on different nodes: a write on one is
    // pushed to the other.
    let g = w.guest(c, 1).await?;
    let (_c1, mut d1) = device(c, 1, &w, &g, "phone").await?;
    let (_c2, mut d2) = device(c, 2, &w, &g, "laptop").await?;
    let (none, at) = subscribe_all(&mut d2).await?;
    ensure!(
        none.is_empty() && at.seq == 0,
        "a new identity has no data: {none:?} at {at:?}"
    );
    let mut seen = vec![];
    let t0 = Instant::now();
    let r = ok(d1
        .write_and_wait(1, "settings", vec![sync_raw::replace("theme", "dark", 0)], &mut seen)
        .await?)?;
    let acked = t0.elapsed();
    let pushed = next_change(&mut d2, Duration::from_secs(10)).await?;
    println!(
        "push across nodes: write acknowledged after {acked:?}, pushed after {:?}",
        t0.elapsed()
    );
    ensure!(
        pushed.dataset_name == "settings" && pushed.kind == "UPDATE",
        "{pushed:?}"
    );
    ensure!(pushed.cursor == r.cursor, "the push carries the write's cursor");
    ensure!(
        pushed.records.len() == 1 && pushed.records[0].value.as_deref() == Some("dark"),
        "{pushed:?}"
    );
    ensure!(pushed.device_id == "phone", "{pushed:?}");
    let epoch = r.cursor.as_ref().map_or(0, |c| c.epoch);
    ensure!(epoch != 0 && seq(&pushed) == 1, "the first change: {:?}", r.cursor);

    // A conflict: the record moved on since sync count 0.
    let conflict = d2
        .write_and_wait(7, "settings", vec![sync_raw::replace("theme", "light", 0)], &mut seen)
        .await?;
    match conflict {
        Wr::Conflict(c) => ensure!(
            c.records.len() == 1 && c.records[0].value.as_deref() == Some("dark"),
            "the conflict names the current value: {c:?}"
        ),
        other => bail!("expected a conflict, got {other:?}"),
    }
    // A refused write: a bad dataset name.
    match d2
        .write_and_wait(8, "no/slash", vec![sync_raw::replace("k", "v", 0)], &mut seen)
        .await?
    {
        Wr::Error(e) => ensure!(e.exception == "InvalidParameterException", "{e:?}"),
        other => bail!("expected an error, got {other:?}"),
    }

    // More writes, then a device on node 3 resumes from cursor 1 and gets
    // exactly what follows; one with no cursor reloads everything.
    for i in 0..20u64 {
        ok(d1
            .write_and_wait(
                100 + i,
                "notes",
                vec![sync_raw::replace(&format!("n{i}"), "x", 0)],
                &mut seen,
            )
            .await?)?;
    }
    let (_c3, mut d3) = device(c, 3, &w, &g, "tablet").await?;
    d3.send(&sync_raw::subscribe("", Some(SyncCursor { epoch, seq: 1 })))
        .await?;
    let (changes, others, at) = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            // Node 3 may be a moment behind: wait until it has all 21.
            let (ch, o, at) = d3.until_caught_up().await?;
            if at.seq >= 21 {
                return Ok::<_, anyhow::Error>((ch, o, at));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            d3.send(&sync_raw::subscribe("", Some(SyncCursor { epoch, seq: 1 })))
                .await?;
        }
    })
    .await
    .map_err(|_| anyhow!("node 3 never caught up"))??;
    ensure!(others.is_empty(), "a resumable cursor needs no reload: {others:?}");
    let seqs: Vec<u64> = changes.iter().map(seq).collect();
    ensure!(seqs == (2..=21).collect::<Vec<_>>(), "resumed changes {seqs:?}");
    ensure!(at == SyncCursor { epoch, seq: 21 }, "caught up at {at:?}");
    let (_c4, mut d4) = device(c, 3, &w, &g, "new-phone").await?;
    let (whole, at) = subscribe_all(&mut d4).await?;
    let mut names: Vec<&str> = whole.iter().map(|c| c.dataset_name.as_str()).collect();
    names.sort();
    ensure!(names == ["notes", "settings"], "a reload sends each dataset: {names:?}");
    ensure!(whole.iter().all(|c| c.kind == "DATASET"), "{whole:?}");
    ensure!(
        whole
            .iter()
            .find(|c| c.dataset_name == "notes")
            .map(|c| c.records.len())
            == Some(20),
        "the whole dataset"
    );
    ensure!(at.seq == 21, "reloaded at {at:?}");
    // Ping.
    d4.send(&sync_raw::ping(42)).await?;
    match d4.next().await? {
        Down::Pong(p) => ensure!(p.nonce == 42, "{p:?}"),
        other => bail!("expected a pong, got {other:?}"),
    }
    // A device that ends its stream is closed with DONE.
    d4.finish().await?;
    let reason = expect_goodbye(&_c4, &mut d4, DONE).await?;
    println!("a device that ends its stream: {reason}");
    Ok(())
}

scenario!(
    sync_info_pins_the_certificate_and_pushes_across_nodes,
    sync_info_body,
    RaftTuning::default()
);

// ---------------------------------------------------------------------------
// Issue test 5: isolation
// ---------------------------------------------------------------------------

async fn isolation_body(c: &TestCluster) -> Result<()> {
    let w = SyncWorld::create(c, "isolation").await?;
    let other_pool = SyncWorld::create(c, "isolation-other").await?;
    let a = w.guest(c, 1).await?;
    let b = w.guest(c, 2).await?;

    // A's and B's devices on the same node: each sees only its own data.
    let (_ca, mut da) = device(c, 1, &w, &a, "a-phone").await?;
    let (_cb, mut db) = device(c, 1, &w, &b, "b-phone").await?;
    subscribe_all(&mut da).await?;
    subscribe_all(&mut db).await?;
    let mut seen = vec![];
    let rb = ok(db
        .write_and_wait(1, "secrets", vec![sync_raw::replace("pin", "1234", 0)], &mut seen)
        .await?)?;
    if !seen.iter().any(|ch| ch.cursor == rb.cursor) {
        let own = next_change(&mut db, Duration::from_secs(10)).await?;
        ensure!(own.cursor == rb.cursor, "B's session got {own:?}");
    }
    expect_quiet(&mut da, 1).await.context("A must not see B's write")?;
    let ra = ok(da
        .write_and_wait(1, "secrets", vec![sync_raw::replace("pin", "9999", 0)], &mut seen)
        .await?)?;
    ensure!(
        ra.cursor.as_ref().map(|c| c.seq) == Some(1),
        "A's write is the first change of A's own history: {:?}",
        ra.cursor
    );
    ensure!(
        ra.cursor.as_ref().map(|c| c.epoch) != rb.cursor.as_ref().map(|c| c.epoch),
        "A and B have separate histories"
    );
    ensure!(
        ra.records.len() == 1 && ra.records[0].sync_count == 1,
        "A's write did not see B's record: {ra:?}"
    );
    // A's own change reaches A's session too (before or after the result).
    if !seen.iter().any(|ch| ch.cursor == ra.cursor) {
        let own = next_change(&mut da, Duration::from_secs(10)).await?;
        ensure!(own.cursor == ra.cursor, "A's session got {own:?}");
    }
    expect_quiet(&mut da, 7).await?;
    expect_quiet(&mut db, 2).await.context("B must not see A's write")?;
    // A reload of A's data holds A's value only.
    let (_ca2, mut da2) = device(c, 2, &w, &a, "a-laptop").await?;
    let (whole, _) = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let (whole, at) = subscribe_all(&mut da2).await?;
            if at.seq >= 1 {
                return Ok::<_, anyhow::Error>((whole, at));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .map_err(|_| anyhow!("node 2 never had A's write"))??;
    let values: Vec<Option<&str>> = whole
        .iter()
        .flat_map(|c| c.records.iter().map(|r| r.value.as_deref()))
        .collect();
    ensure!(values == [Some("9999")], "A's data: {values:?}");

    // A's credentials name A's pool; naming another pool is refused.
    let reason = expect_hello_refused(
        c,
        1,
        &sync_raw::hello(&other_pool.pool_id, &a.token, "a-phone"),
        UNAUTHENTICATED,
    )
    .await?;
    println!("another pool: {reason}");

    // Forged credentials.
    let (header, claims) = decode_jwt(&a.token)?;
    let mut to_b = claims.clone();
    to_b.insert("sub".into(), b.identity_id.clone().into());
    let edited = with_edited_claims(&a.token, &to_b);
    let key = node_signing_key(c.node(1))?;
    let stranger = tessera::auth::signing_key::NodeSigningKey::from_seed(1, [7u8; 32]);
    let other_key = tessera::auth::jwt::mint(&to_b, &stranger);
    // A stranger's signature under the real key's id.
    let kid = header["kid"].as_str().unwrap_or_default();
    let spoofed_kid = {
        use base64::Engine;
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let h = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
        let input = format!(
            "{}.{}",
            enc.encode(h.to_string()),
            enc.encode(serde_json::Value::Object(to_b.clone()).to_string())
        );
        let sig = stranger.sign(input.as_bytes());
        format!("{input}.{}", enc.encode(sig))
    };
    let unsigned = {
        use base64::Engine;
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let h = serde_json::json!({"alg": "none", "typ": "JWT", "kid": kid});
        format!(
            "{}.{}.",
            enc.encode(h.to_string()),
            enc.encode(serde_json::Value::Object(to_b.clone()).to_string())
        )
    };
    let now = now_secs();
    let expired = resign_credentials(&a.token, &key, now - 7200, now - 3600)?;
    let expired_stranger = resign_credentials(&a.token, &stranger, now - 7200, now - 3600)?;
    // Controls: the same re-signing with the node's own key and a live
    // expiry is accepted, so what the refusals below catch is the forgery.
    let control = resign_credentials(&a.token, &key, now - 10, now + 600)?;
    let control_conn = connect(&c.node(2).sync_addr, &Options::default()).await?;
    let mut control_stream = control_conn.open().await?;
    let welcome = control_stream.hello(&w.pool_id, &control, "a-control").await?;
    ensure!(welcome.identity_id == a.identity_id, "{welcome:?}");
    ensure!(welcome.expires_at == now + 600, "expires_at {}", welcome.expires_at);
    let forged = [
        ("the payload edited to name B", edited),
        ("signed by a key not in the JWKS", other_key),
        ("signed by another key under the real kid", spoofed_kid),
        ("alg none", unsigned),
        ("expired, signed by the node's key", expired),
        ("expired, signed by a key not in the JWKS", expired_stranger),
        ("not a token", "not-a-token".to_string()),
        ("the admin token", c.token.clone()),
    ];
    for (what, token) in &forged {
        for via in [1, 3] {
            let reason = expect_hello_refused(c, via, &sync_raw::hello(&w.pool_id, token, "mallory"), UNAUTHENTICATED)
                .await
                .with_context(|| format!("{what} on node {via}"))?;
            println!("refused ({what}): {reason}");
        }
    }
    // No credential at all.
    let none = sync_raw::up(tessera::proto::device_frame::Msg::Hello(DeviceHello {
        version: 1,
        identity_pool_id: w.pool_id.clone(),
        credential: None,
        device_id: "mallory".into(),
    }));
    expect_hello_refused(c, 1, &none, UNAUTHENTICATED).await?;

    // B still sees only its own write, A's sessions only A's: after all
    // that, the live sessions are quiet.
    expect_quiet(&mut da, 3).await?;
    expect_quiet(&mut db, 4).await?;

    // Deleting B closes B's session with IDENTITY_GONE; A's goes on.
    let admin = c.client(1).await?;
    admin
        .identity()
        .delete_identities(admin.req(DeleteIdentitiesRequest {
            identity_ids_to_delete: vec![b.identity_id.clone()],
        }))
        .await
        .context("DeleteIdentities")?;
    let reason = expect_goodbye(&_cb, &mut db, IDENTITY_GONE).await?;
    ensure!(reason.contains(&b.identity_id), "{reason}");
    expect_quiet(&mut da, 5).await?;
    expect_quiet(&mut control_stream, 6).await?;
    Ok(())
}

scenario!(
    a_device_sees_only_its_own_identity,
    isolation_body,
    RaftTuning::default()
);

// ---------------------------------------------------------------------------
// Issue test 6: hostile input
// ---------------------------------------------------------------------------

async fn hostile_body(c: &TestCluster) -> Result<()> {
    let w = SyncWorld::create(c, "hostile").await?;
    let g = w.guest(c, 1).await?;
    // The well-behaved device, on the node under attack.
    let (_good_conn, mut good) = device(c, 1, &w, &g, "good").await?;
    subscribe_all(&mut good).await?;
    let (_wc, mut writer) = device(c, 2, &w, &g, "writer").await?;
    let mut seen = vec![];

    let hello_body = sync_raw::body(&sync_raw::hello(&w.pool_id, &g.token, "mallory"));
    let hello_frame = {
        let mut f = sync_raw::length_prefix(hello_body.len() as u32);
        f.extend_from_slice(&hello_body);
        f
    };

    // An oversize length prefix, alone: refused before any body is sent.
    let r = expect_closed_after(c, 1, &sync_raw::length_prefix(64 << 20), FRAME_TOO_LARGE).await?;
    println!("oversize before Hello: {r}");
    let mut after_hello = hello_frame.clone();
    after_hello.extend_from_slice(&sync_raw::length_prefix(3 << 20));
    let r = expect_closed_after(c, 1, &after_hello, FRAME_TOO_LARGE).await?;
    println!("oversize after Hello: {r}");
    // A first frame larger than a Hello can be, though under max_frame_bytes.
    let r = expect_closed_after(c, 1, &sync_raw::length_prefix(100 * 1024), FRAME_TOO_LARGE).await?;
    println!("a large first frame: {r}");
    // Connections that announce large first frames and send their bodies
    // slowly hold no share of the node's frame budget (1.5 MB here, the
    // whole of it claimed 30 times over): a new device's Hello is read
    // at once, not after the attackers time out.
    let mut stallers = vec![];
    for _ in 0..30 {
        let conn = connect(&c.node(1).sync_addr, &Options::default()).await?;
        let mut s = conn.open().await?;
        let mut partial = sync_raw::length_prefix(60 * 1024);
        partial.extend_from_slice(&[0x0a; 16]);
        s.send_raw(&partial).await?;
        stallers.push((conn, s));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let (_pc, _ps) = device(c, 1, &w, &g, "patient").await?;
    let welcomed = t.elapsed();
    println!("a Hello next to 30 stalled first frames: welcomed after {welcomed:?}");
    ensure!(
        welcomed < Duration::from_secs(1),
        "a Hello waited {welcomed:?} behind stalled frames"
    );
    for (conn, mut s) in stallers {
        expect_goodbye(&conn, &mut s, HELLO_TIMEOUT).await?;
    }
    // Garbage bytes.
    let r = expect_closed_after(c, 1, &[0, 0, 0, 3, 0xff, 0xff, 0xff], PROTOCOL).await?;
    println!("garbage: {r}");
    let mut garbage_after = hello_frame.clone();
    garbage_after.extend_from_slice(&[0, 0, 0, 5, 0x0a, 0xff, 0xff, 0xff, 0xff]);
    expect_closed_after(c, 1, &garbage_after, PROTOCOL).await?;
    // An unknown message type (an empty oneof), before and after Hello.
    let r = expect_closed_after(c, 1, &sync_raw::unknown_message(), PROTOCOL).await?;
    println!("unknown message: {r}");
    let mut unknown_after = hello_frame.clone();
    unknown_after.extend_from_slice(&sync_raw::unknown_message());
    expect_closed_after(c, 1, &unknown_after, PROTOCOL).await?;
    expect_closed_after(c, 1, &[0, 0, 0, 0], PROTOCOL).await?;
    // A frame before Hello, and a second Hello.
    let sub = sync_raw::body(&sync_raw::subscribe("", None));
    let mut before = sync_raw::length_prefix(sub.len() as u32);
    before.extend_from_slice(&sub);
    let r = expect_closed_after(c, 1, &before, PROTOCOL).await?;
    println!("a frame before Hello: {r}");
    let mut twice = hello_frame.clone();
    twice.extend_from_slice(&hello_frame);
    expect_closed_after(c, 1, &twice, PROTOCOL).await?;
    // A protocol version this server does not speak.
    let mut v2 = sync_raw::hello(&w.pool_id, &g.token, "mallory");
    if let Some(tessera::proto::device_frame::Msg::Hello(h)) = v2.msg.as_mut() {
        h.version = 2;
    }
    expect_hello_refused(c, 1, &v2, UNSUPPORTED_VERSION).await?;
    // A flood of streams after a good Hello.
    {
        let conn = connect(&c.node(1).sync_addr, &Options::default()).await?;
        let mut s = conn.open().await?;
        s.hello(&w.pool_id, &g.token, "flooder").await?;
        let flood = {
            let conn = conn.conn.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    if sync_raw::open_extra_stream(&conn).await.is_err() {
                        break;
                    }
                }
            })
        };
        let r = expect_goodbye(&conn, &mut s, PROTOCOL).await?;
        println!("a flood of streams: {r}");
        flood.abort();
    }
    // A stream with half a frame, then nothing: HELLO_TIMEOUT (3 s here).
    let t = Instant::now();
    let r = expect_closed_after(c, 1, &[0, 0], HELLO_TIMEOUT).await?;
    println!("half a length prefix: {r} after {:?}", t.elapsed());
    // No stream at all: closed with HELLO_TIMEOUT, without a Goodbye (there
    // is no stream to carry one).
    let conn = connect(&c.node(1).sync_addr, &Options::default()).await?;
    let (code, reason) = conn.closed(CLOSE_WITHIN).await?;
    ensure!(code == HELLO_TIMEOUT, "no stream: closed {code} ({reason})");
    // The wrong ALPN never gets a session.
    let wrong = Options {
        alpn: b"h3".to_vec(),
        ..Options::default()
    };
    ensure!(
        connect(&c.node(1).sync_addr, &wrong).await.is_err(),
        "a handshake with another ALPN fails"
    );

    // The node and the good device are unaffected.
    common::poll_until(
        "node 1 healthy",
        Duration::from_secs(5),
        Duration::from_millis(100),
        || async {
            Ok(http_get(&c.node(1).api_addr, "/healthz")
                .await
                .ok()
                .filter(|r| r.status == 200))
        },
    )
    .await?;
    for i in 0..3u64 {
        let r = ok(writer
            .write_and_wait(i + 1, "d", vec![sync_raw::replace(&format!("k{i}"), "v", 0)], &mut seen)
            .await?)?;
        let got = next_change(&mut good, Duration::from_secs(10)).await?;
        ensure!(got.cursor == r.cursor, "the good device got {got:?}");
    }
    let refused = c
        .node(1)
        .metric("tessera_sync_frames_refused_total")
        .await?
        .unwrap_or(0.0);
    ensure!(refused >= 10.0, "frames refused: {refused}");
    Ok(())
}

scenario!(
    hostile_input_closes_only_that_connection,
    hostile_body,
    with_sync("hello_timeout_ms = 3000\nmax_frame_bytes = 1500000\nframe_budget_bytes = 1500000\n")
);

// ---------------------------------------------------------------------------
// Issue test 7: a slow device
// ---------------------------------------------------------------------------

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn slow_device_body(c: &TestCluster) -> Result<()> {
    const WRITES: u64 = 400;
    let w = SyncWorld::create(c, "slow").await?;
    let a = w.guest(c, 1).await?;
    let b = w.guest(c, 1).await?;
    let pid = c.node(1).pid().ok_or_else(|| anyhow!("node 1 has no pid"))?;

    // The slow device: a small receive window, subscribed, then it stops
    // reading.
    let small = Options {
        stream_window: 4096,
        ..Options::default()
    };
    let (_sc, mut slow) = device_with(c, 1, &w, &a, "slow", &small).await?;
    subscribe_all(&mut slow).await?;
    // Another identity's devices on the same node.
    let (_br, mut b_reader) = device(c, 1, &w, &b, "b-reader").await?;
    subscribe_all(&mut b_reader).await?;
    let (_bw, mut b_writer) = device(c, 2, &w, &b, "b-writer").await?;
    let (_aw, mut a_writer) = device(c, 2, &w, &a, "a-writer").await?;

    let rss_before = rss_kib(pid)?;
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss_before));
    let sampler = {
        let peak = sampling.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(r) = rss_kib(pid) {
                    peak.fetch_max(r, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // B: a write every 20 ms while A's writes go on, timed from its
    // acknowledgement to its push.
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let b_flooding = flooding.clone();
    let b_task = tokio::spawn(async move {
        let mut latencies = vec![];
        let mut seen = vec![];
        for i in 0u64.. {
            if !b_flooding.load(std::sync::atomic::Ordering::Relaxed) && i >= 10 {
                break;
            }
            let r = ok(b_writer
                .write_and_wait(i + 1, "b", vec![sync_raw::replace(&format!("k{i}"), "v", 0)], &mut seen)
                .await?)?;
            let acked = Instant::now();
            let want = r.cursor;
            loop {
                let ch = next_change(&mut b_reader, Duration::from_secs(10)).await?;
                if ch.cursor == want {
                    break;
                }
            }
            latencies.push(acked.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok::<_, anyhow::Error>(latencies)
    });

    // A: hundreds of writes from the other device, 8 in flight.
    let t = Instant::now();
    let mut in_flight = 0u64;
    let mut done = 0u64;
    let mut next = 1u64;
    let mut last_cursor = None;
    let value = "x".repeat(200);
    while done < WRITES {
        while in_flight < 8 && next <= WRITES {
            a_writer
                .send(&sync_raw::write(
                    next,
                    "bulk",
                    vec![sync_raw::replace(&format!("key{next}"), &value, 0)],
                ))
                .await?;
            next += 1;
            in_flight += 1;
        }
        match a_writer.next().await? {
            Down::WriteResult(r) => {
                let okr = ok(r.result.ok_or_else(|| anyhow!("empty result"))?)?;
                in_flight -= 1;
                done += 1;
                let s = okr.cursor.as_ref().map_or(0, |c| c.seq);
                if last_cursor.as_ref().is_none_or(|c: &SyncCursor| c.seq < s) {
                    last_cursor = okr.cursor;
                }
            }
            Down::Goodbye(g) => bail!("the writer was closed: {g:?}"),
            _ => {}
        }
    }
    println!("{WRITES} writes in {:?}", t.elapsed());
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let latencies = b_task.await??;
    sampler.abort();
    let peak = sampling.load(std::sync::atomic::Ordering::Relaxed);
    let mut sorted = latencies.clone();
    sorted.sort();
    let (p50, p99) = (percentile(&sorted, 0.5), percentile(&sorted, 0.99));
    println!(
        "another identity's pushes during the flood: {} writes, p50 {p50:?}, p99 {p99:?}, max {:?}",
        sorted.len(),
        sorted.last()
    );
    println!(
        "node 1 RSS: {} MiB before, peak {} MiB (+{} KiB)",
        rss_before / 1024,
        peak / 1024,
        peak.saturating_sub(rss_before)
    );
    ensure!(
        peak.saturating_sub(rss_before) < 64 * 1024,
        "the node grew by {} KiB while a device did not read",
        peak - rss_before
    );
    ensure!(
        p99 < Duration::from_secs(1),
        "another identity's pushes were slowed: p99 {p99:?}"
    );
    let last = last_cursor.ok_or_else(|| anyhow!("no write answered"))?;

    // The slow device reads again: a Resync, then every change in order.
    let mut seqs = vec![];
    let mut resyncs = vec![];
    loop {
        match slow.next().await? {
            Down::Change(ch) => seqs.push(seq(&ch)),
            Down::Resync(r) => resyncs.push((seqs.last().copied().unwrap_or(0), r)),
            Down::CaughtUp(cu) if cu.cursor.as_ref().map_or(0, |c| c.seq) >= last.seq => break,
            Down::Goodbye(g) => bail!("Goodbye: {g:?}"),
            _ => {}
        }
    }
    ensure!(!resyncs.is_empty(), "the slow device got no Resync");
    for (before, r) in &resyncs {
        ensure!(
            r.from.as_ref().map(|c| c.seq) == Some(*before),
            "Resync from {:?} but the device had {before}",
            r.from
        );
    }
    ensure!(
        seqs == (1..=last.seq).collect::<Vec<_>>(),
        "the slow device got {} changes, not 1..={} in order (first gaps: {:?})",
        seqs.len(),
        last.seq,
        seqs.windows(2).filter(|p| p[1] != p[0] + 1).take(5).collect::<Vec<_>>()
    );
    println!(
        "the slow device: {} resync(s), first from {}, then all {} changes in order",
        resyncs.len(),
        resyncs[0].0,
        seqs.len()
    );
    let resynced = c.node(1).metric("tessera_sync_resyncs_total").await?.unwrap_or(0.0);
    ensure!(resynced >= 1.0, "resyncs counted: {resynced}");
    Ok(())
}

scenario!(
    a_slow_device_is_resynced_and_costs_the_node_nothing,
    slow_device_body,
    RaftTuning {
        snapshot_every: 5000,
        extra_config: "[sync]\nqueue_events = 64\n".into(),
        ..RaftTuning::default()
    }
);

// ---------------------------------------------------------------------------
// Connection limits
// ---------------------------------------------------------------------------

async fn limits_body(c: &TestCluster) -> Result<()> {
    let w = SyncWorld::create(c, "limits").await?;
    let a = w.guest(c, 1).await?;
    let b = w.guest(c, 1).await?;
    let mut open = vec![];
    open.push(device(c, 1, &w, &a, "a1").await?);
    open.push(device(c, 1, &w, &a, "a2").await?);
    // A third session of A: over the per-identity limit.
    let reason = expect_hello_refused(c, 1, &sync_raw::hello(&w.pool_id, &a.token, "a3"), TOO_MANY_CONNECTIONS).await?;
    println!("per identity: {reason}");
    ensure!(reason.contains("max_connections_per_identity"), "{reason}");
    // Another node counts its own.
    open.push(device(c, 2, &w, &a, "a3-elsewhere").await?);
    // Closing one frees its slot.
    let (conn, _) = open.remove(0);
    conn.conn.close(0u32.into(), b"bye");
    common::poll_until(
        "a slot of A freed",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async { Ok(device(c, 1, &w, &a, "a1-again").await.ok()) },
    )
    .await
    .map(|d| open.push(d))?;
    // Node 1 holds 4 at most: A twice, B twice, then anyone is refused.
    open.push(device(c, 1, &w, &b, "b1").await?);
    open.push(device(c, 1, &w, &b, "b2").await?);
    let conn = connect(&c.node(1).sync_addr, &Options::default()).await?;
    let mut s = conn.open().await?;
    s.send(&sync_raw::hello(&w.pool_id, &b.token, "b3")).await?;
    let reason = expect_goodbye(&conn, &mut s, TOO_MANY_CONNECTIONS).await?;
    println!("per node: {reason}");
    ensure!(reason.contains("sync.max_connections"), "{reason}");
    let refused = c
        .node(1)
        .metric("tessera_sync_connections_refused_total")
        .await?
        .unwrap_or(0.0);
    ensure!(refused >= 2.0, "refusals counted: {refused}");
    let gauge = c.node(1).metric("tessera_sync_connections").await?.unwrap_or(-1.0);
    ensure!(gauge == 4.0, "open connections on node 1: {gauge}");
    Ok(())
}

scenario!(
    connection_limits_answer_with_a_reason,
    limits_body,
    with_sync("max_connections = 4\nmax_connections_per_identity = 2\n")
);

// ---------------------------------------------------------------------------
// A credential that expires mid-session
// ---------------------------------------------------------------------------

async fn expiry_body(c: &TestCluster) -> Result<()> {
    let w = SyncWorld::create(c, "expiry").await?;
    let a = w.guest(c, 1).await?;
    // Credentials the cluster accepts (signed with node 1's own key, whose
    // public half is in the JWKS) that expire in 4 seconds.
    let key = node_signing_key(c.node(1))?;
    let now = now_secs();
    let short = resign_credentials(&a.token, &key, now - 1, now + 4)?;
    let conn = connect(&c.node(2).sync_addr, &Options::default()).await?;
    let mut s = conn.open().await?;
    let t = Instant::now();
    let welcome = s.hello(&w.pool_id, &short, "short-lived").await?;
    ensure!(welcome.expires_at == now + 4, "expires_at {}", welcome.expires_at);
    subscribe_all(&mut s).await?;
    let reason = expect_goodbye(&conn, &mut s, CREDENTIALS_EXPIRED).await?;
    let after = t.elapsed();
    println!("closed after {after:?}: {reason}");
    ensure!(
        after >= Duration::from_secs(2) && after < Duration::from_secs(12),
        "closed after {after:?}, the credential lived 4 s"
    );
    // A session with the regular credentials is unaffected.
    let (_c, mut d) = device(c, 2, &w, &a, "long-lived").await?;
    expect_quiet(&mut d, 9).await?;
    Ok(())
}

scenario!(
    a_credential_that_expires_ends_the_session,
    expiry_body,
    RaftTuning::default()
);

// ---------------------------------------------------------------------------
// 0-RTT on a resumed session; a node that stops
// ---------------------------------------------------------------------------

async fn resume_and_stop_body(c: &mut TestCluster) -> Result<()> {
    let w = SyncWorld::create(c, "resume").await?;
    let g = w.guest(c, 1).await?;
    // A first connection leaves the device a TLS session to resume.
    let connector = sync_raw::Connector::new(&Options::default())?;
    let first = connector.connect(&c.node(1).sync_addr).await?;
    let mut s = first.open().await?;
    s.hello(&w.pool_id, &g.token, "phone").await?;
    s.finish().await?;
    expect_goodbye(&first, &mut s, DONE).await?;
    // The reconnect sends its Hello, a Subscribe and a write as 0-RTT data:
    // the session opens at once, and the write is taken once the handshake
    // has completed (it is never proposed from replayable data).
    let (second, accepted) = connector.connect_0rtt(&c.node(1).sync_addr)?;
    let mut s = second.open().await?;
    s.send(&sync_raw::hello(&w.pool_id, &g.token, "phone")).await?;
    s.send(&sync_raw::subscribe("", None)).await?;
    s.send(&sync_raw::write(1, "d", vec![sync_raw::replace("k", "v", 0)]))
        .await?;
    ensure!(accepted.await, "the server accepted the 0-RTT data");
    let mut result = None;
    let mut pushed = None;
    while result.is_none() || pushed.is_none() {
        match s.next().await? {
            Down::WriteResult(r) => result = Some(ok(r.result.ok_or_else(|| anyhow!("no result"))?)?),
            Down::Change(ch) if ch.kind == "UPDATE" => pushed = Some(ch),
            Down::Goodbye(g) => bail!("Goodbye: {g:?}"),
            _ => {}
        }
    }
    ensure!(
        result.as_ref().map(|r| r.cursor) == pushed.as_ref().map(|p| p.cursor),
        "the 0-RTT session's write and its push: {result:?} / {pushed:?}"
    );

    // A node that stops tells its devices so, and they close.
    let (conn, mut d) = device(c, 2, &w, &g, "laptop").await?;
    subscribe_all(&mut d).await?;
    let watch = tokio::spawn(async move { expect_goodbye(&conn, &mut d, SHUTTING_DOWN).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = c.node_mut(2).stop(common::STOP_TIMEOUT).await?;
    ensure!(stopped.graceful, "node 2 stopped gracefully: {stopped:?}");
    let reason = watch.await??;
    println!("a stopping node: {reason}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resumed_device_sends_0rtt_and_a_stopping_node_says_goodbye() {
    let mut c = three_nodes(RaftTuning::default()).await;
    let r = resume_and_stop_body(&mut c).await;
    c.finish(r);
}

// ---------------------------------------------------------------------------
// An identity merged into another
// ---------------------------------------------------------------------------

const DEV_PROVIDER: &str = "login.synctests";
const OPENID_PROVIDER: &str = "cognito-identity.amazonaws.com";

/// A developer identity of `user` and its credentials.
async fn developer_guest(c: &TestCluster, pool_id: &str, user: &str) -> Result<Guest> {
    let admin = c.client(1).await?;
    let r = admin
        .identity()
        .get_open_id_token_for_developer_identity(admin.req(GetOpenIdTokenForDeveloperIdentityRequest {
            identity_pool_id: pool_id.into(),
            logins: [(DEV_PROVIDER.to_string(), user.to_string())].into(),
            ..Default::default()
        }))
        .await
        .context("GetOpenIdTokenForDeveloperIdentity")?
        .into_inner();
    let public = tessera::client::Client::connect(&c.node(1).url(), None).await?;
    let creds = public
        .identity()
        .get_credentials_for_identity(GetCredentialsForIdentityRequest {
            identity_id: r.identity_id.clone(),
            logins: [(OPENID_PROVIDER.to_string(), r.token)].into(),
            ..Default::default()
        })
        .await
        .context("GetCredentialsForIdentity of a developer identity")?
        .into_inner()
        .credentials
        .ok_or_else(|| anyhow!("no credentials"))?;
    Ok(Guest {
        identity_id: r.identity_id,
        token: creds.session_token,
        expiration: creds.expiration,
    })
}

async fn merge_body(c: &TestCluster) -> Result<()> {
    // Guests prove every node can issue credentials; the developer pool is
    // the one merged in.
    SyncWorld::create(c, "merge-probe").await?;
    let admin = c.client(1).await?;
    admin
        .identity()
        .create_role(admin.req(CreateRoleRequest {
            role_name: "merge-members".into(),
            description: String::new(),
            policy_document: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["public/*"]}]}"#.into(),
        }))
        .await?;
    let pool_id = admin
        .identity()
        .create_identity_pool(admin.req(CreateIdentityPoolRequest {
            identity_pool_name: "merge".into(),
            developer_provider_name: DEV_PROVIDER.into(),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .identity_pool_id;
    admin
        .identity()
        .set_identity_pool_roles(
            admin.req(SetIdentityPoolRolesRequest {
                identity_pool_id: pool_id.clone(),
                roles: [(
                    "authenticated".to_string(),
                    "arn:tessera:iam:::role/merge-members".to_string(),
                )]
                .into(),
                role_mappings: Default::default(),
            }),
        )
        .await?;
    let w = SyncWorld {
        pool_id: pool_id.clone(),
    };
    let survivor = developer_guest(c, &pool_id, "user-1").await?;
    let merged = developer_guest(c, &pool_id, "user-2").await?;
    let (_mc, mut m) = device(c, 1, &w, &merged, "merged-phone").await?;
    subscribe_all(&mut m).await?;
    let mut seen = vec![];
    ok(
        m.write_and_wait(1, "notes", vec![sync_raw::replace("k", "v", 0)], &mut seen)
            .await?,
    )?;
    let (_sc, mut s) = device(c, 2, &w, &survivor, "survivor-phone").await?;
    subscribe_all(&mut s).await?;
    admin
        .identity()
        .merge_developer_identities(admin.req(MergeDeveloperIdentitiesRequest {
            source_user_identifier: "user-2".into(),
            destination_user_identifier: "user-1".into(),
            developer_provider_name: DEV_PROVIDER.into(),
            identity_pool_id: pool_id.clone(),
        }))
        .await
        .context("MergeDeveloperIdentities")?;
    let reason = expect_goodbye(&_mc, &mut m, IDENTITY_GONE).await?;
    println!("the merged identity's device: {reason}");
    ensure!(
        reason.contains(&merged.identity_id) && reason.contains(&survivor.identity_id),
        "the reason names both identities: {reason}"
    );
    let got = next_change(&mut s, Duration::from_secs(10)).await?;
    ensure!(
        got.kind == "DATASET" && got.dataset_name == format!("notes.{}", merged.identity_id),
        "the survivor's device gets the merged dataset: {got:?}"
    );
    ensure!(
        got.records.len() == 1 && got.records[0].value.as_deref() == Some("v"),
        "{got:?}"
    );
    Ok(())
}

scenario!(
    a_merged_identity_is_closed_naming_its_survivor,
    merge_body,
    RaftTuning::default()
);

// ---------------------------------------------------------------------------
// A device that writes and never reads
// ---------------------------------------------------------------------------

/// The dataset as the node of `admin` has it (a consistent read, as
/// admin), or `None` before it exists.
async fn dataset_now(
    admin: &tessera::client::Client,
    pool: &str,
    identity_id: &str,
    dataset: &str,
) -> Result<Option<SyncDataset>> {
    match admin
        .sync()
        .describe_dataset(admin.req(DescribeDatasetRequest {
            identity_pool_id: pool.into(),
            identity_id: identity_id.into(),
            dataset_name: dataset.into(),
        }))
        .await
    {
        Ok(r) => Ok(Some(
            r.into_inner()
                .dataset
                .ok_or_else(|| anyhow!("DescribeDataset returned no dataset"))?,
        )),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => bail!("DescribeDataset {dataset}: {s}"),
    }
}

/// Writes of a device the node has applied to `dataset`: its sync count,
/// which every write (one change each) raises by one.
async fn applied(admin: &tessera::client::Client, pool: &str, identity_id: &str, dataset: &str) -> Result<u64> {
    Ok(dataset_now(admin, pool, identity_id, dataset)
        .await?
        .map_or(0, |d| d.sync_count as u64))
}

/// The dataset the muted device writes to.
const DATASET: &str = "flood";

/// The device frame of write `id` of the muted device: a distinct key
/// of fixed width, the same value for all.
fn unread_write(id: u64, value: &str) -> DeviceFrame {
    sync_raw::write(id, DATASET, vec![sync_raw::replace(&format!("key{id:05}"), value, 0)])
}

async fn unread_writes_body(c: &TestCluster) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use tessera::sync::frame::{encode_frame, read_frame, DEFAULT_MAX_FRAME_BYTES};
    use tessera::sync::server::session::{WRITER_QUEUE, WRITES_IN_FLIGHT};
    use tessera::sync::server::STREAM_RECEIVE_WINDOW;

    /// Writes the device sends.
    const N: u64 = 1000;
    /// The device's receive window on its stream (the connection's is
    /// twice that): the most answer bytes the node can have on their way
    /// to a device that reads nothing.
    const WINDOW: u32 = 4096;
    let w = SyncWorld::create(c, "unread").await?;
    let a = w.guest(c, 1).await?;
    let b = w.guest(c, 1).await?;
    let admin = c.client(1).await?;
    let value = "v".repeat(200);

    // The bound. While a device reads nothing, a write it sent has been
    // applied only if its answer is in one of three places:
    // * on the QUIC stream: sent or in the node's send buffer, which the
    //   device's stream window bounds: at most WINDOW bytes of answers
    //   (the Welcome, which came before, was read), so at most
    //   floor(WINDOW / answer size) whole answers;
    // * in the session's queue (WRITER_QUEUE frames, the oldest perhaps
    //   half written);
    // * held with its write slot until the queue has room
    //   (WRITES_IN_FLIGHT).
    // The next write the session reads waits for a slot, unapplied, and
    // the session reads nothing after it. An answer echoes the record it
    // wrote, so it is larger than its key and value: that gives the bound
    // before anything is read (it is checked again below with the size of
    // the answers as they came). The margin of 2 is slack for what this
    // accounting may miss (how QUIC grants window credit); measured, the
    // count is the sum exactly (4096 / 260 + 4 + 8 = 27).
    let key_and_value = format!("key{:05}", 1).len() + value.len();
    let bound = WINDOW as usize / key_and_value + WRITER_QUEUE + WRITES_IN_FLIGHT + 2;
    // The constants are the node's, so a node that raises them to where
    // a device is no longer held back fails here.
    ensure!(
        (bound as u64) < N / 10,
        "a node with WRITER_QUEUE {WRITER_QUEUE} and WRITES_IN_FLIGHT {WRITES_IN_FLIGHT} may apply {bound} \
         writes of a device that reads nothing: not far below the {N} it sends"
    );

    // The muted device: a small receive window; it reads its Welcome,
    // then only sends.
    let small = Options {
        stream_window: WINDOW,
        ..Options::default()
    };
    let (_mc, muted) = device_with(c, 1, &w, &a, "muted", &small).await?;
    let RawStream { mut send, mut recv } = muted;
    let sent = std::sync::Arc::new(AtomicU64::new(0));
    // Its own task: QUIC flow control is to stop it, and the test goes on.
    let sender = {
        let sent = sent.clone();
        let value = value.clone();
        tokio::spawn(async move {
            for id in 1..=N {
                let bytes = encode_frame(&unread_write(id, &value), DEFAULT_MAX_FRAME_BYTES)?;
                send.write_all(&bytes).await?;
                sent.store(id, Relaxed);
            }
            // The stream stays open: ending it would close the session.
            Ok::<_, anyhow::Error>(send)
        })
    };

    // Settle: until neither what the node applied nor what the device got
    // to send has moved for 2 s (3 s at least).
    let t = Instant::now();
    let mut last = (u64::MAX, u64::MAX);
    let mut still_since = Instant::now();
    let (applied_muted, sent_muted) = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = (
            applied(&admin, &w.pool_id, &a.identity_id, DATASET).await?,
            sent.load(Relaxed),
        );
        if now != last {
            last = now;
            still_since = Instant::now();
        } else if still_since.elapsed() >= Duration::from_secs(2) && t.elapsed() >= Duration::from_secs(3) {
            break now;
        }
        ensure!(
            t.elapsed() < Duration::from_secs(30),
            "still moving after 30 s: {} applied, {} sent",
            now.0,
            now.1
        );
    };
    println!(
        "a device that reads nothing: {applied_muted} of {N} writes applied (bound {bound}), \
         {sent_muted} sent before flow control stopped it; settled after {:?}",
        t.elapsed()
    );
    ensure!(
        applied_muted as usize <= bound,
        "the node applied {applied_muted} of {N} writes of a device that read none of its answers: \
         more than the {bound} its window ({WINDOW} bytes of answers of over {key_and_value} bytes), \
         the session's queue ({WRITER_QUEUE}) and its write slots ({WRITES_IN_FLIGHT}) can hold; \
         the node buffers for a device that does not read"
    );
    ensure!(
        applied_muted as usize >= WRITER_QUEUE + WRITES_IN_FLIGHT,
        "the node applied only {applied_muted} writes: it should serve a device up to what its queue \
         ({WRITER_QUEUE}) and write slots ({WRITES_IN_FLIGHT}) hold"
    );
    // What stopped the device is QUIC flow control: it sent what the
    // session read (the applied writes and the one waiting for a slot)
    // and what the node's stream receive window holds, then no more.
    let smallest_write = (1..=N)
        .map(|id| encode_frame(&unread_write(id, &value), DEFAULT_MAX_FRAME_BYTES).map(|b| b.len()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .min()
        .unwrap_or(1);
    let most_sent = applied_muted + 1 + u64::from(STREAM_RECEIVE_WINDOW) / smallest_write as u64;
    ensure!(
        sent_muted < N && sent_muted <= most_sent,
        "the device sent {sent_muted} of {N} writes; flow control should have stopped it by {most_sent} \
         ({applied_muted} applied, 1 waiting, the node's {STREAM_RECEIVE_WINDOW}-byte window of \
         {smallest_write}-byte writes)"
    );
    ensure!(
        sent_muted > applied_muted + 1,
        "the device sent {sent_muted}, no more than the session read: nothing waits in the node's window"
    );

    // Meanwhile the node serves: another identity's device on it connects
    // and its writes are answered at once.
    let (_bc, mut other) = device(c, 1, &w, &b, "other").await?;
    let mut seen = vec![];
    for i in 1..=3u64 {
        let t = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            other.write_and_wait(i, "d", vec![sync_raw::replace(&format!("k{i}"), "v", 0)], &mut seen),
        )
        .await
        .map_err(|_| anyhow!("another identity's write {i} was not answered within 2 s"))??;
        ok(r)?;
        println!("another identity's write {i} answered after {:?}", t.elapsed());
    }
    let still = applied(&admin, &w.pool_id, &a.identity_id, DATASET).await?;
    ensure!(
        still == applied_muted,
        "the muted device's writes went on being applied: {applied_muted}, then {still}"
    );

    // The device reads: every answer comes, each write once, all applied.
    let t = Instant::now();
    let mut ids = Vec::with_capacity(N as usize);
    let mut counts = Vec::with_capacity(N as usize);
    let mut smallest_answer = usize::MAX;
    while (ids.len() as u64) < N {
        let frame = tokio::time::timeout(
            sync_raw::FRAME_TIMEOUT,
            read_frame::<ServerFrame, _>(&mut recv, DEFAULT_MAX_FRAME_BYTES, None),
        )
        .await
        .map_err(|_| {
            anyhow!(
                "no answer within {:?} after {} answers",
                sync_raw::FRAME_TIMEOUT,
                ids.len()
            )
        })?
        .map_err(|e| anyhow!("reading answer {}: {e}", ids.len() + 1))?
        .ok_or_else(|| anyhow!("the stream ended after {} answers", ids.len()))?;
        smallest_answer = smallest_answer.min(encode_frame(&frame, DEFAULT_MAX_FRAME_BYTES)?.len());
        match frame.msg {
            Some(Down::WriteResult(r)) => {
                let res = r.result.ok_or_else(|| anyhow!("write {}: no result", r.request_id))?;
                let done = ok(res).with_context(|| format!("write {}", r.request_id))?;
                ids.push(r.request_id);
                counts.push(done.dataset_sync_count as u64);
            }
            Some(Down::Goodbye(g)) => bail!("Goodbye after {} answers: {g:?}", ids.len()),
            other => bail!("expected only write results, got {other:?}"),
        }
    }
    let send = tokio::time::timeout(Duration::from_secs(10), sender)
        .await
        .map_err(|_| anyhow!("the device could not send all its writes once it read"))???;
    println!(
        "the device read: {N} answers in {:?}, each {smallest_answer} bytes or more",
        t.elapsed()
    );
    // Answers come as writes finish, not in request_id order (the
    // protocol promises none: a session works on several at once). But
    // write `id` is read only once a slot is free, so all but
    // WRITES_IN_FLIGHT - 1 of the writes before it have their answers
    // queued ahead of its own: no answer comes more than
    // WRITES_IN_FLIGHT - 1 places before its turn.
    let ahead = ids
        .iter()
        .enumerate()
        .map(|(at, &id)| id.saturating_sub(at as u64 + 1))
        .max()
        .unwrap_or(0);
    let out_of_order = ids.windows(2).filter(|p| p[1] < p[0]).count();
    println!("answers out of request_id order {out_of_order} times, at most {ahead} places early");
    ensure!(
        ahead < WRITES_IN_FLIGHT as u64,
        "an answer came {ahead} places before its turn: the session worked on more than \
         {WRITES_IN_FLIGHT} writes at once (first ids {:?})",
        &ids[..ids.len().min(40)]
    );
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    ensure!(
        sorted == (1..=N).collect::<Vec<_>>(),
        "the answers are not one for each of writes 1..={N} ({} answers, first ids {:?})",
        ids.len(),
        &ids[..ids.len().min(20)]
    );
    counts.sort_unstable();
    ensure!(
        counts == (1..=N).collect::<Vec<_>>(),
        "the writes are not {N} changes of the dataset, one each"
    );
    // The bound again, with the answers' size as it was.
    let tight = WINDOW as usize / smallest_answer + WRITER_QUEUE + WRITES_IN_FLIGHT + 2;
    ensure!(
        applied_muted as usize <= tight,
        "{applied_muted} writes applied while the device read nothing: more than {tight} \
         ({WINDOW}-byte window / {smallest_answer}-byte answers + {WRITER_QUEUE} + {WRITES_IN_FLIGHT} + 2)"
    );
    let d = dataset_now(&admin, &w.pool_id, &a.identity_id, DATASET)
        .await?
        .ok_or_else(|| anyhow!("the dataset {DATASET} is missing"))?;
    ensure!(
        d.sync_count as u64 == N && d.num_records as u64 == N,
        "after the device read: sync count {}, {} records; expected {N} of each",
        d.sync_count,
        d.num_records
    );
    drop(send);
    Ok(())
}

scenario!(
    a_device_that_writes_and_never_reads_is_held_back,
    unread_writes_body,
    RaftTuning::default()
);
