//! Fuzz entry points: one plain function per parser that reads bytes from
//! outside the node (clients, peers, operators).
//!
//! Each `fn(data: &[u8])` feeds `data` to the real parser, exactly as the
//! node would, and asserts the properties that must hold for *every* input:
//! no panic, bounded work, and the security invariants of that parser (a
//! token verifies only with the expected issuer and lifetime, a page token
//! never leaves its pool, an index key always names its user). A panic is a
//! finding.
//!
//! The same functions run in two harnesses:
//! - `fuzz/` (cargo-fuzz, nightly, libFuzzer with coverage and sanitizers):
//!   `make fuzz`;
//! - `tests/fuzz_corpus.rs` (stable `cargo test`): replays every committed
//!   corpus and regression input, so CI needs no sanitizer toolchain.
//!
//! Adding a target: write `pub fn name(data: &[u8])` here, add it to
//! [`TARGETS`], and copy one file of `fuzz/fuzz_targets/` plus its `[[bin]]`
//! entry in `fuzz/Cargo.toml`.
//!
//! Nothing here runs in a node; the module is `#[doc(hidden)]` in the crate.

use crate::command::{CreateUser, CreateUserPool, InitCluster};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use prost::Message;

use crate::auth::jwks::{Jwk, Jwks};
use crate::auth::jwt::{self, Expect};
use crate::auth::signing_key::NodeSigningKey;
use crate::auth::verifier::{peek_kid_and_issuer, TokenVerifier};
use crate::model::pool_settings::{AttributeSchema, AttributeType, PoolSettings};
use crate::model::user::{User, UserStatus};
use crate::model::user_filter::{index_value, indexed_attribute, parse_filter, FilterOp, MAX_FILTER_CHARS};
use crate::store::directory::{index_keys, index_stem, sub_of_index_key};
use crate::store::keys::pool_key;

/// A fuzz entry point.
pub type Target = fn(&[u8]);

/// Every target by the name of its `fuzz/fuzz_targets/<name>.rs` file and
/// of its corpus directory `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("jwt", jwt),
    ("user_filter", user_filter),
    ("pagination_token", pagination_token),
    ("peer_message", peer_message),
    ("snapshot_file", snapshot_file),
    ("grpc_request", grpc_request),
    ("config", config),
    ("peer_auth", peer_auth),
];

// ---- tokens ---------------------------------------------------------------

/// The issuer the fuzzed tokens are checked against.
pub const FUZZ_ISSUER: &str = "http://127.0.0.1:7700/local_fuzz";
/// "Now" for the fuzzed tokens, Unix seconds.
pub const FUZZ_NOW: i64 = 1_700_000_000;

/// The fuzz harness's signing key (a fixed seed, known to the corpus).
pub fn fuzz_signing_key() -> &'static NodeSigningKey {
    static KEY: OnceLock<NodeSigningKey> = OnceLock::new();
    KEY.get_or_init(|| NodeSigningKey::from_seed(1, [7; 32]))
}

fn fuzz_jwks() -> &'static Jwks {
    static JWKS: OnceLock<Jwks> = OnceLock::new();
    JWKS.get_or_init(|| {
        let key = fuzz_signing_key();
        let other = NodeSigningKey::from_seed(2, [8; 32]);
        Jwks {
            keys: vec![
                Jwk::ed25519(key.kid(), &key.public()),
                Jwk::ed25519(other.kid(), &other.public()),
            ],
        }
    })
}

/// Signs `header.payload` (raw JSON bytes, base64url-encoded here) with
/// the harness key: how the `jwt` target reaches the claim checks that
/// follow the signature check.
pub fn sign_raw(header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let sig = fuzz_signing_key().sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Token parsing and verification (`auth::jwt::verify`, the
/// `TokenVerifier` of resource servers, `peek_kid_and_issuer`).
///
/// The first byte picks the mode: even, the rest is a compact token as a
/// client presents it; odd, the rest is `header JSON \n payload JSON`,
/// which the harness signs with a key of the JWKS, so that the checks
/// after the signature (alg, kid, exp, iat, iss, token_use, aud) get fuzzed
/// too. A token that verifies must satisfy every expectation.
pub fn jwt(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode & 1 == 1 {
        let (h, p) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        };
        sign_raw(h, p)
    } else {
        match std::str::from_utf8(rest) {
            Ok(s) => s.to_string(),
            Err(_) => return,
        }
    };
    let jwks = fuzz_jwks();
    let leeway = i64::from(mode >> 4);
    for token_use in [Some("access"), Some("id"), None] {
        let expect = Expect {
            issuer: FUZZ_ISSUER,
            token_use,
            now: FUZZ_NOW,
            leeway,
        };
        if let Ok(claims) = jwt::verify(&token, jwks, &expect) {
            assert!(token.len() <= jwt::MAX_TOKEN_BYTES);
            assert_eq!(claims.get("iss").and_then(|v| v.as_str()), Some(FUZZ_ISSUER));
            let exp = claims
                .get("exp")
                .and_then(|v| v.as_i64())
                .expect("verified without exp");
            assert!(exp > FUZZ_NOW - leeway, "verified an expired token: exp {exp}");
            if let Some(iat) = claims.get("iat").and_then(|v| v.as_i64()) {
                assert!(iat <= FUZZ_NOW + leeway, "verified a token from the future: iat {iat}");
            }
            if let Some(want) = token_use {
                assert_eq!(claims.get("token_use").and_then(|v| v.as_str()), Some(want));
            }
            let header: serde_json::Value = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(token.split('.').next().unwrap_or(""))
                    .expect("verified a token whose header is not base64url"),
            )
            .expect("verified a token whose header is not JSON");
            assert_eq!(header["alg"], "EdDSA");
        }
    }
    let v = TokenVerifier::new(FUZZ_ISSUER, jwks);
    let _ = v.verify_access(&token, FUZZ_NOW);
    if let Ok(claims) = v.verify_id(&token, "fuzzclient", FUZZ_NOW) {
        assert_eq!(claims.get("aud").and_then(|v| v.as_str()), Some("fuzzclient"));
    }
    if let Some((kid, _iss)) = peek_kid_and_issuer(&token) {
        let _ = v.knows(&kid);
    }
}

// ---- ListUsers filter -----------------------------------------------------

fn fuzz_settings() -> &'static PoolSettings {
    static SETTINGS: OnceLock<PoolSettings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let mut s = PoolSettings::default();
        let custom = |indexed| AttributeSchema {
            attribute_type: AttributeType::String,
            mutable: true,
            required: false,
            max_length: 2048,
            indexed,
        };
        s.schema.insert("custom:tier".into(), custom(true));
        s.schema.insert("custom:plain".into(), custom(false));
        s
    })
}

fn fuzz_user(pool_id: &str, sub: &str, username: &str, attributes: BTreeMap<String, String>) -> User {
    User {
        pool_id: pool_id.into(),
        sub: sub.into(),
        username: username.into(),
        attributes,
        status: UserStatus::Confirmed,
        enabled: true,
        password_phc: None,
        email_verified: false,
        phone_number_verified: false,
        created_at: 1,
        modified_at: 1,
        tokens_revoked_before_ms: 0,
        temporary_password_expires_at: None,
        refresh_revoked_before_ms: 0,
        pending_attributes: BTreeMap::new(),
    }
}

/// Escapes `value` for a filter's double-quoted string.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Cognito's `ListUsers` filter (`model::user_filter`): parse, resolve the
/// index, and check against the index the store keeps that an exact filter
/// finds a user holding exactly that value, and a prefix filter a user
/// whose value extends the prefix.
pub fn user_filter(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_filter(input);
    let f = match parsed {
        Ok(Some(f)) => f,
        Ok(None) => {
            assert!(input.chars().all(char::is_whitespace));
            return;
        }
        Err(e) => {
            assert!(e.position >= 1 && e.position <= input.chars().count().max(MAX_FILTER_CHARS) + 1);
            return;
        }
    };
    assert!(input.chars().count() <= MAX_FILTER_CHARS);
    assert!(!f.attribute.is_empty());
    assert!(f.op == FilterOp::Equals || !f.value.is_empty());
    // The canonical rendering parses to the same filter.
    let op = if f.op == FilterOp::Equals { "=" } else { "^=" };
    let rendered = format!("{} {op} {}", f.attribute, quote(&f.value));
    if rendered.chars().count() <= MAX_FILTER_CHARS {
        let again = parse_filter(&rendered).expect("canonical filter").expect("non-empty");
        assert_eq!(
            (&again.attribute, again.op, &again.value),
            (&f.attribute, f.op, &f.value)
        );
    }
    let settings = fuzz_settings();
    let Ok(attribute) = indexed_attribute(settings, &f) else {
        return;
    };
    let value = index_value(&f);
    let mut stem = index_stem(&attribute, &value);
    if f.op == FilterOp::Equals {
        stem.push(0);
    }
    // A user whose attribute holds the filter's value (extended by one
    // character for a prefix) must be found: its index key starts with the
    // stem the filter scans. `status`/`cognito:user_status`/`sub`/`username`
    // are not free attributes, so only the others are checked.
    if attribute.starts_with("custom:")
        || [
            "email",
            "phone_number",
            "name",
            "given_name",
            "family_name",
            "preferred_username",
        ]
        .contains(&attribute.as_str())
    {
        let stored = if f.op == FilterOp::Equals {
            f.value.clone()
        } else {
            format!("{}x", f.value)
        };
        let attrs: BTreeMap<String, String> = [(attribute.clone(), stored.clone())].into();
        let user = fuzz_user("local_fuzz", "sub-1", "user-1", attrs);
        let scan = pool_key("local_fuzz", &stem);
        let keys = index_keys(settings, &user);
        assert!(
            keys.iter().any(|k| k.starts_with(&scan)),
            "filter {input:?} does not find a user with {attribute} = {stored:?}"
        );
        for k in &keys {
            assert_eq!(sub_of_index_key(k).as_deref(), Some("sub-1"));
        }
    }
}

// ---- pagination tokens ------------------------------------------------------

const PAGE_POOL: &str = "local_fuzzA";
const OTHER_POOL: &str = "local_fuzzB";

/// A store with two pools of users, opened once per process in a fresh
/// temporary directory.
fn page_store() -> &'static crate::store::Store {
    use crate::command::Command;
    use crate::model::cluster::ClusterInfo;
    use crate::model::pool::UserPool;
    static STORE: OnceLock<crate::store::Store> = OnceLock::new();
    STORE.get_or_init(|| {
        remove_stale_stores();
        let dir = scratch_path("store");
        let store = crate::store::Store::open(&dir).expect("opening the fuzz store");
        let run = |cmd: Command| {
            let mut b = store.sm_batch();
            cmd.apply(&store, &mut b).expect("apply");
            b.commit().expect("commit");
        };
        run(InitCluster(ClusterInfo {
            cluster_id: "fuzz".into(),
            public_url: "http://127.0.0.1:7700".into(),
            root_token_sha256: [0; 32],
            created_at: 0,
        })
        .into());
        for pool in [PAGE_POOL, OTHER_POOL] {
            run(CreateUserPool(UserPool {
                id: pool.into(),
                name: pool.into(),
                creation_date: 1,
                last_modified_date: 1,
                deletion_protection: false,
                settings: fuzz_settings().clone(),
            })
            .into());
            for i in 0..12 {
                let attrs: BTreeMap<String, String> = [
                    ("email".to_string(), format!("user{i}@{pool}.example")),
                    ("name".to_string(), format!("Name {}", i % 3)),
                    ("custom:tier".to_string(), ["gold", "silver", "Gold"][i % 3].to_string()),
                ]
                .into();
                run(CreateUser {
                    user: fuzz_user(pool, &format!("sub-{pool}-{i:02}"), &format!("u{i}"), attrs),
                    code: None,
                    message: None,
                    force_alias_creation: false,
                }
                .into());
            }
        }
        store
    })
}

/// `ListUsers` pagination tokens (`service::directory::resume_after`),
/// followed by the page read the node then does, on a real RocksDB store:
/// whatever token is presented, a page holds only users of the listed pool
/// and, with a filter, only keys of that filter, in order after the token.
///
/// Input: `filter \n token \n limit-byte`. Also checks the other list
/// calls' tokens that are plain ids (`ListUserPools`, `ListUserPoolClients`).
pub fn pagination_token(data: &[u8]) {
    use crate::service::directory::resume_after;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let filter = parts.next().unwrap_or("");
    let token = parts.next().unwrap_or("");
    let limit = parts
        .next()
        .and_then(|s| s.bytes().next())
        .map_or(5, |b| usize::from(b % 16) + 1);
    let _ = crate::model::pool::validate_pool_id(token);
    let _ = crate::model::app_client::validate_client_id(token);
    let store = page_store();
    let settings = fuzz_settings();
    let Ok(parsed) = parse_filter(filter) else {
        return;
    };
    match parsed {
        None => {
            let Ok(after) = resume_after(token, None) else {
                return;
            };
            let after = after.map(|a| String::from_utf8(a).expect("resume_after checked UTF-8"));
            let page = store
                .users_page(PAGE_POOL, after.as_deref(), limit)
                .expect("users_page");
            assert!(page.len() <= limit);
            for u in &page {
                assert_eq!(u.pool_id, PAGE_POOL, "a token moved the scan into another pool");
                if let Some(a) = &after {
                    assert!(u.sub.as_str() > a.as_str(), "page starts at or before its token");
                }
            }
            assert!(page.windows(2).all(|w| w[0].sub < w[1].sub));
        }
        Some(f) => {
            let Ok(attribute) = indexed_attribute(settings, &f) else {
                return;
            };
            let mut stem = index_stem(&attribute, &index_value(&f));
            if f.op == FilterOp::Equals {
                stem.push(0);
            }
            let Ok(after) = resume_after(token, Some(&stem)) else {
                return;
            };
            let keys = store
                .index_page(PAGE_POOL, &stem, after.as_deref(), limit)
                .expect("index_page");
            assert!(keys.len() <= limit);
            for k in &keys {
                assert!(k.starts_with(&stem), "a token moved the scan out of its filter");
                if let Some(a) = &after {
                    assert!(k.as_slice() > a.as_slice(), "page starts at or before its token");
                }
            }
            assert!(keys.windows(2).all(|w| w[0] < w[1]));
            let subs: Vec<String> = keys.iter().filter_map(|k| sub_of_index_key(k)).collect();
            assert_eq!(subs.len(), keys.len());
            for u in store.users_by_sub(PAGE_POOL, &subs).expect("users_by_sub") {
                assert_eq!(u.pool_id, PAGE_POOL);
            }
        }
    }
}

// ---- peer frames and snapshots ----------------------------------------------

/// Every payload a peer sends (`raft::peer_server` and `raft::network`):
/// the first byte picks the RPC; the rest is the protobuf frame, whose
/// payload is decoded with the versioned codec into the type that RPC
/// carries, as the server (requests) or the client (replies) does.
pub fn peer_message(data: &[u8]) {
    use crate::proto::{NodeStatusResponse, RaftMessage, SnapshotChunk};
    use crate::raft::types::{SnapshotMeta, TypeConfig, Vote};
    use crate::raft::wire::{ForwardError, ForwardReply, ForwardRequest};
    use crate::store::codec::decode;
    use openraft::raft::{
        AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, VoteRequest, VoteResponse,
    };
    let Some((&which, frame)) = data.split_first() else {
        return;
    };
    // The same bytes both as a protobuf frame and as a bare payload, so the
    // corpus need not wrap every payload in protobuf.
    let payloads: Vec<Vec<u8>> = match RaftMessage::decode(frame) {
        Ok(m) => vec![m.payload, frame.to_vec()],
        Err(_) => vec![frame.to_vec()],
    };
    for p in &payloads {
        match which % 12 {
            0 => drop_result(decode::<AppendEntriesRequest<TypeConfig>>(p)),
            1 => drop_result(decode::<VoteRequest<TypeConfig>>(p)),
            2 => drop_result(decode::<TransferLeaderRequest<TypeConfig>>(p)),
            3 => {
                if let Ok(req) = decode::<ForwardRequest>(p) {
                    // What the leader would act on must survive a round trip.
                    let again = crate::store::codec::encode(&req).expect("re-encode");
                    decode::<ForwardRequest>(&again).expect("round trip");
                }
            }
            4 => drop_result(decode::<(Vote, SnapshotMeta)>(p)),
            5 => drop_result(decode::<Result<AppendEntriesResponse<TypeConfig>, String>>(p)),
            6 => drop_result(decode::<Result<VoteResponse<TypeConfig>, String>>(p)),
            7 => drop_result(decode::<Result<SnapshotResponse<TypeConfig>, String>>(p)),
            8 => drop_result(decode::<Result<ForwardReply, ForwardError>>(p)),
            9 => drop_result(decode::<Result<(), String>>(p)),
            10 => drop_result(decode::<crate::command::Command>(p)),
            _ => {
                if let Ok(chunk) = SnapshotChunk::decode(p.as_slice()) {
                    let _ = decode::<(Vote, SnapshotMeta)>(&chunk.header);
                }
                let _ = NodeStatusResponse::decode(p.as_slice());
            }
        }
    }
}

/// Deletes the page stores of earlier fuzz processes that have exited
/// (RocksDB preallocates tens of MiB per store).
fn remove_stale_stores() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("tessera-fuzz-") else {
            continue;
        };
        let Some((pid, what)) = rest.split_once('-') else {
            continue;
        };
        let alive = std::path::Path::new("/proc").join(pid).exists();
        if what.starts_with("store-") && !alive && pid.parse::<u32>().is_ok() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Decoding a hostile payload may fail; it must only not panic.
fn drop_result<T, E>(_: Result<T, E>) {}

static SCRATCH: AtomicU64 = AtomicU64::new(0);

/// A fresh path in the temporary directory, unique per process and call.
fn scratch_path(what: &str) -> PathBuf {
    let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("tessera-fuzz-{}-{what}-{n}", std::process::id()))
}

/// Snapshot files as a leader streams them (`raft::snapshot_file`): the
/// trailer's metadata and every record, as `install_file` reads them. The
/// first byte: odd means the harness appends the correct SHA-256, so that
/// inputs get past the checksum.
pub fn snapshot_file(data: &[u8]) {
    use crate::raft::snapshot_file::{read_meta, read_records, MAX_RECORD_BYTES};
    use crate::raft::types::SnapshotMeta;
    use sha2::{Digest, Sha256};
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let mut bytes = body.to_vec();
    if mode & 1 == 1 {
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        bytes.extend_from_slice(&digest);
    }
    let path = scratch_path("snap");
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&bytes)?;
        drop(f);
        let mut file = std::fs::File::open(&path)?;
        let _ = read_meta::<SnapshotMeta>(&mut file);
        let mut records = 0usize;
        let mut seen = 0usize;
        let r = read_records(&mut file, |k, v| {
            assert!(k.len() <= MAX_RECORD_BYTES as usize && v.len() <= MAX_RECORD_BYTES as usize);
            records += 1;
            seen += 9 + k.len() + v.len();
            Ok(())
        });
        // Records are only ever read from bytes that are in the file.
        assert!(
            seen <= bytes.len(),
            "read {seen} record bytes from a {}-byte file",
            bytes.len()
        );
        if r.is_ok() {
            assert!(bytes.starts_with(b"TSNAP001"));
            assert!(records * 9 + 8 + 1 + 36 <= bytes.len());
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&path);
    result.expect("scratch file I/O");
}

// ---- gRPC requests ----------------------------------------------------------

/// The edge of the api port (`api::grpc`): the first byte picks a request
/// message of `Admin`, `Auth` or `Cluster`; the rest is its protobuf
/// encoding. Every message is decoded as tonic would decode it, then run
/// through the conversions (`api::grpc::convert`) and the validation of
/// `model` that the handler and its service apply before any I/O. What
/// passes validation must be storable: its index keys name its user.
pub fn grpc_request(data: &[u8]) {
    use crate::api::grpc::convert;
    use crate::proto::*;
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };

    // Messages whose handlers pass fields straight to a service: decoding
    // them is the whole edge.
    macro_rules! decode_only {
        ($($t:ty),* $(,)?) => {{
            $(let _ = <$t>::decode(bytes);)*
        }};
    }
    let plain = || {
        decode_only!(
            ListUserPoolsRequest,
            DescribeUserPoolRequest,
            DeleteUserPoolRequest,
            DescribeUserPoolClientRequest,
            DeleteUserPoolClientRequest,
            ListUserPoolClientsRequest,
            AdminGetUserRequest,
            AdminConfirmSignUpRequest,
            ListOutboxMessagesRequest,
            AdminDeleteUserAttributesRequest,
            AdminDeleteUserRequest,
            AdminDisableUserRequest,
            AdminEnableUserRequest,
            AdminSetUserPasswordRequest,
            AdminResetUserPasswordRequest,
            AdminUserGlobalSignOutRequest,
            GetGroupRequest,
            DeleteGroupRequest,
            ListGroupsRequest,
            AdminAddUserToGroupRequest,
            AdminRemoveUserFromGroupRequest,
            AdminListGroupsForUserRequest,
            ListUsersInGroupRequest,
            AdminListUserAuthEventsRequest,
            ConfirmSignUpRequest,
            ResendConfirmationCodeRequest,
            GetUserRequest,
            GlobalSignOutRequest,
            RevokeTokenRequest,
            ForgotPasswordRequest,
            ConfirmForgotPasswordRequest,
            ChangePasswordRequest,
            VerifyUserAttributeRequest,
            GetUserAttributeVerificationCodeRequest,
            DeleteUserRequest,
            DeleteUserAttributesRequest,
            CheckPermissionRequest,
            RemoveNodeRequest,
            DescribeClusterRequest,
            RotateSigningKeysRequest,
            GetNodeStateRequest,
        )
    };
    let settings = fuzz_settings();
    let storable = |username: &str, attributes: &BTreeMap<String, String>| {
        if crate::model::user::validate_username(username).is_err()
            || crate::model::user::validate_new_attributes(settings, attributes).is_err()
        {
            return;
        }
        let user = fuzz_user("local_fuzz", "sub-1", username, attributes.clone());
        for k in index_keys(settings, &user) {
            assert!(k.starts_with(&pool_key("local_fuzz", &[])));
            assert_eq!(
                sub_of_index_key(&k).as_deref(),
                Some("sub-1"),
                "a valid user's index key does not name it: {username:?} {attributes:?}"
            );
        }
    };
    let auth_attributes = |v: &[AttributeType]| -> Option<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for a in v {
            if out.insert(a.name.clone(), a.value.clone()).is_some() {
                return None;
            }
        }
        Some(out)
    };
    const CONVERTED: u8 = 14;
    match which % (CONVERTED + 1) {
        0 => {
            let Ok(r) = CreateUserPoolRequest::decode(bytes) else {
                return;
            };
            let _ = crate::model::pool::validate_pool_name(&r.pool_name);
            let _ = convert::deletion_protection(&r.deletion_protection);
            if let Ok(s) = convert::pool_settings(&r) {
                s.validate()
                    .expect("pool_settings returned settings that do not validate");
                let _ = convert::pool_type(
                    crate::model::pool::UserPool {
                        id: "local_fuzz".into(),
                        name: r.pool_name.clone(),
                        creation_date: 0,
                        last_modified_date: 0,
                        deletion_protection: false,
                        settings: s,
                    },
                    0,
                );
            }
        }
        1 => {
            let Ok(r) = UpdateUserPoolRequest::decode(bytes) else {
                return;
            };
            let _ = crate::model::pool::validate_pool_id(&r.user_pool_id);
            let _ = convert::pool_update(&r);
        }
        2 | 3 => {
            let spec = if which % (CONVERTED + 1) == 2 {
                let Ok(r) = CreateUserPoolClientRequest::decode(bytes) else {
                    return;
                };
                convert::client_spec(
                    &r.client_name,
                    r.access_token_validity,
                    r.id_token_validity,
                    r.refresh_token_validity,
                    r.token_validity_units.as_ref(),
                    &r.read_attributes,
                    &r.write_attributes,
                    &r.explicit_auth_flows,
                    &r.prevent_user_existence_errors,
                    r.enable_token_revocation,
                )
            } else {
                let Ok(r) = UpdateUserPoolClientRequest::decode(bytes) else {
                    return;
                };
                let _ = crate::model::app_client::validate_client_id(&r.client_id);
                convert::client_spec(
                    &r.client_name,
                    r.access_token_validity,
                    r.id_token_validity,
                    r.refresh_token_validity,
                    r.token_validity_units.as_ref(),
                    &r.read_attributes,
                    &r.write_attributes,
                    &r.explicit_auth_flows,
                    &r.prevent_user_existence_errors,
                    r.enable_token_revocation,
                )
            };
            let Ok(spec) = spec else { return };
            use crate::model::app_client::{validate_attribute_names, validate_client_name, AuthFlow, TimeUnit};
            let _ = validate_client_name(&spec.client_name);
            for unit in [&spec.access_unit, &spec.id_unit, &spec.refresh_unit] {
                let _ = TimeUnit::parse(unit, TimeUnit::Hours);
            }
            for f in &spec.explicit_auth_flows {
                let _ = AuthFlow::parse(f);
            }
            for names in [&spec.read_attributes, &spec.write_attributes] {
                let _ = validate_attribute_names("read_attributes", &names.iter().cloned().collect());
            }
        }
        4 => {
            let Ok(r) = AdminCreateUserRequest::decode(bytes) else {
                return;
            };
            if let Ok(attrs) = convert::attributes("user_attributes", &r.user_attributes) {
                storable(&r.username, &attrs);
            }
            let _ = settings.password_policy.check(&r.temporary_password);
        }
        5 => {
            let Ok(r) = AdminUpdateUserAttributesRequest::decode(bytes) else {
                return;
            };
            if let Ok(attrs) = convert::attributes("user_attributes", &r.user_attributes) {
                storable(&r.username, &attrs);
            }
        }
        6 => {
            let Ok(r) = AdminImportUsersRequest::decode(bytes) else {
                return;
            };
            for u in r.users.iter().take(crate::service::directory::MAX_IMPORT) {
                if let Ok(attrs) = convert::attributes("users.attributes", &u.attributes) {
                    storable(&u.username, &attrs);
                }
            }
            let _ = settings.password_policy.check(&r.password);
        }
        7 => {
            let Ok(r) = ListUsersRequest::decode(bytes) else { return };
            let _ = crate::service::page_limit("limit", r.limit);
            if let Ok(Some(f)) = parse_filter(&r.filter) {
                if let Ok(attribute) = indexed_attribute(settings, &f) {
                    let stem = index_stem(&attribute, &index_value(&f));
                    let _ = crate::service::directory::resume_after(&r.pagination_token, Some(&stem));
                }
            } else {
                let _ = crate::service::directory::resume_after(&r.pagination_token, None);
            }
        }
        8 | 9 => {
            use crate::model::group::{normalize_permissions, validate_details, validate_group_name};
            let (name, description, role, permissions) = if which % (CONVERTED + 1) == 8 {
                let Ok(r) = CreateGroupRequest::decode(bytes) else {
                    return;
                };
                (r.group_name, r.description, r.role_arn, r.permissions)
            } else {
                let Ok(r) = UpdateGroupRequest::decode(bytes) else {
                    return;
                };
                (
                    r.group_name,
                    r.description.unwrap_or_default(),
                    r.role_arn.unwrap_or_default(),
                    r.permissions.map(|p| p.values).unwrap_or_default(),
                )
            };
            let _ = validate_group_name(&name);
            let _ = validate_details(&description, &role);
            if let Ok(p) = normalize_permissions(&permissions) {
                assert!(
                    normalize_permissions(&p).ok().as_ref() == Some(&p),
                    "normalize is not idempotent"
                );
            }
        }
        10 => {
            let Ok(r) = SignUpRequest::decode(bytes) else { return };
            let _ = crate::service::flows::check_parameters("client_metadata", &r.client_metadata);
            if r.user_attributes.len() <= crate::model::user::MAX_ATTRIBUTES {
                if let Some(attrs) = auth_attributes(&r.user_attributes) {
                    storable(&r.username, &attrs);
                }
            }
            let _ = settings.password_policy.check(&r.password);
        }
        11 => {
            let Ok(r) = UpdateUserAttributesRequest::decode(bytes) else {
                return;
            };
            if let Some(attrs) = auth_attributes(&r.user_attributes) {
                storable("user-1", &attrs);
            }
            let _ = jwt::verify(
                &r.access_token,
                fuzz_jwks(),
                &Expect {
                    issuer: FUZZ_ISSUER,
                    token_use: Some("access"),
                    now: FUZZ_NOW,
                    leeway: 5,
                },
            );
        }
        12 => {
            use crate::service::flows::check_parameters;
            if let Ok(r) = InitiateAuthRequest::decode(bytes) {
                let _ = check_parameters("auth_parameters", &r.auth_parameters);
                let _ = check_parameters("client_metadata", &r.client_metadata);
            }
            if let Ok(r) = RespondToAuthChallengeRequest::decode(bytes) {
                let _ = check_parameters("challenge_responses", &r.challenge_responses);
            }
            if let Ok(r) = AdminInitiateAuthRequest::decode(bytes) {
                let _ = check_parameters("auth_parameters", &r.auth_parameters);
                if let Some(c) = r.context_data {
                    let _ = c.ip_address.parse::<std::net::IpAddr>();
                }
            }
        }
        13 => {
            use crate::model::cluster::{validate_host_port, validate_node_id, validate_public_url};
            if let Ok(r) = InitClusterRequest::decode(bytes) {
                let _ = validate_public_url(&r.public_url);
            }
            if let Ok(r) = AddNodeRequest::decode(bytes) {
                let _ = validate_node_id(r.node_id);
                let _ = validate_host_port("peer_addr", &r.peer_addr);
                let _ = validate_host_port("api_addr", &r.api_addr);
            }
        }
        _ => {
            plain();
        }
    }
}

// ---- config file --------------------------------------------------------------

/// The node's TOML config file (`config::NodeConfig::load`), read from a
/// file as `tessera serve --config` reads it, with no flags.
pub fn config(data: &[u8]) {
    use crate::config::{NodeConfig, Overrides};
    let path = scratch_path("config.toml");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let loaded = NodeConfig::load(Some(path.as_path()), Overrides::default());
    let _ = std::fs::remove_file(&path);
    if let Ok(cfg) = loaded {
        // What loads is what the node starts with: these must not panic.
        cfg.validate().expect("a loaded config validates");
        let _ = cfg.advertised();
        let _ = cfg.raft_settings();
    }
}

// ---- peer credentials and join tokens -------------------------------------

/// The peer credential header (`raft::peer_auth`) and join tokens
/// (`raft::join`): parsing must never panic, and a credential that parses
/// must be refused by the verifier unless it was really signed by the key.
pub fn peer_auth(data: &[u8]) {
    use crate::raft::join::JoinToken;
    use crate::raft::peer_auth::{parse, PeerIdentity, VerifiedCache};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = JoinToken::parse(text) {
        assert_eq!(
            JoinToken::parse(&t.reveal()).ok(),
            Some(t.clone()),
            "a parsed token re-parses"
        );
    }
    let key = PeerIdentity::from_seed([3; 32]);
    if let Ok(cred) = parse(text) {
        let cache = VerifiedCache::default();
        let verdict = cache.check(Some(text), "fuzz-cluster", 1, 1_000, |_| Some(key.public()));
        if verdict.is_ok() {
            // Ed25519 signing is deterministic and verification strict: only
            // the exact signature of this key over the claimed sender and
            // time verifies.
            let genuine = key.credential("fuzz-cluster", cred.from, 1, cred.issued_at);
            assert_eq!(
                parse(&genuine).map(|c| c.signature).ok(),
                Some(cred.signature),
                "a forged credential verified: {text:?}"
            );
        }
    }
}

fn peer_auth_seeds(out: &mut Vec<(&'static str, Vec<u8>)>) {
    let key = crate::raft::peer_auth::PeerIdentity::from_seed([3; 32]);
    out.push(("peer_auth", key.credential("fuzz-cluster", 2, 1, 1_000).into_bytes()));
    out.push(("peer_auth", key.credential("fuzz-cluster", 3, 1, 999).into_bytes()));
    out.push((
        "peer_auth",
        b"tsrj_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_vec(),
    ));
    out.push(("peer_auth", b"v1.1.1.AAAA".to_vec()));
}

// ---- seed corpora -------------------------------------------------------------

/// Well-formed inputs for every target, by target name: the seed corpora
/// of `fuzz/corpus/` are written from these (`TESSERA_WRITE_FUZZ_SEEDS=1
/// cargo test --test fuzz_corpus`), and the stable test replays them too.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();
    jwt_seeds(&mut out);
    filter_seeds(&mut out);
    page_seeds(&mut out);
    peer_seeds(&mut out);
    snapshot_seeds(&mut out);
    grpc_seeds(&mut out);
    config_seeds(&mut out);
    peer_auth_seeds(&mut out);
    out
}

fn jwt_seeds(out: &mut Vec<(&'static str, Vec<u8>)>) {
    let key = fuzz_signing_key();
    let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": key.kid()}).to_string();
    let claims = [
        serde_json::json!({"sub": "s1", "iss": FUZZ_ISSUER, "token_use": "access", "iat": FUZZ_NOW - 10,
                           "exp": FUZZ_NOW + 3600, "username": "alice", "scope": "aws.cognito.signin.user.admin",
                           "client_id": "fuzzclient", "jti": "j1"}),
        serde_json::json!({"sub": "s1", "iss": FUZZ_ISSUER, "token_use": "id", "aud": "fuzzclient",
                           "iat": FUZZ_NOW, "exp": FUZZ_NOW + 1, "email": "a@x.io", "cognito:groups": ["g"]}),
        serde_json::json!({"iss": FUZZ_ISSUER, "token_use": "refresh", "exp": 1.5e10}),
        serde_json::json!({"iss": "http://evil/local_fuzz", "exp": FUZZ_NOW + 5}),
    ];
    for c in &claims {
        let payload = c.to_string();
        // Mode 0: the token as a client presents it.
        let mut raw = vec![0u8];
        raw.extend_from_slice(sign_raw(header.as_bytes(), payload.as_bytes()).as_bytes());
        out.push(("jwt", raw.clone()));
        // Truncated signature, and an `alg: none` forgery.
        raw.truncate(raw.len() - 3);
        out.push(("jwt", raw));
        // Mode 1: header and payload JSON, signed by the harness.
        out.push((
            "jwt",
            [&[0x51u8][..], header.as_bytes(), b"\n", payload.as_bytes()].concat(),
        ));
    }
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"x"}"#),
        URL_SAFE_NO_PAD.encode(claims[0].to_string())
    );
    out.push(("jwt", [&[0u8][..], none.as_bytes()].concat()));
    out.push(("jwt", b"\0a.b.c.d".to_vec()));
    // Extreme times: exp + leeway and iat - leeway must not overflow.
    let extreme = format!(r#"{{"iss":"{FUZZ_ISSUER}","exp":{},"iat":{}}}"#, i64::MAX, i64::MIN);
    out.push((
        "jwt",
        [&[0x51u8][..], header.as_bytes(), b"\n", extreme.as_bytes()].concat(),
    ));
}

fn filter_seeds(out: &mut Vec<(&'static str, Vec<u8>)>) {
    for f in [
        r#"email ^= "ann""#,
        r#"  cognito:user_status="CONFIRMED"  "#,
        r#"name = "say \"hi\" \\""#,
        r#"enabled = "true""#,
        r#"status = "Disabled""#,
        r#"custom:tier = "Gold""#,
        r#"tier ^= "g""#,
        r#"plain = "x""#,
        r#"phone_number ^= "+1""#,
        r#"sub = "0b1e""#,
        r#"username ^= "ΑΣ""#,
        r#"name ^= "ΟΔΥΣ""#,
        r#"given_name = "İstanbul""#,
        r#"email ~= "a""#,
        r#"email = "a" and"#,
        "   ",
        "",
    ] {
        out.push(("user_filter", f.as_bytes().to_vec()));
    }
}

fn page_seeds(out: &mut Vec<(&'static str, Vec<u8>)>) {
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let mut key = index_stem("email", "user1");
    key.extend_from_slice(b"@local_fuzzA.example\0sub-local_fuzzA-01");
    let tier = {
        let mut k = index_stem("custom:tier", "gold");
        k.push(0);
        k.extend_from_slice(b"sub-local_fuzzA-03");
        k
    };
    for input in [
        "\n\n\x05".to_string(),
        format!("\n{}\n\x03", b64(b"sub-local_fuzzA-03")),
        format!("\n{}\n\x0f", b64(b"sub-local_fuzzA-11\xff")),
        format!("email ^= \"user1\"\n{}\n\x02", b64(&key)),
        format!("custom:tier = \"GOLD\"\n{}\n\x01", b64(&tier)),
        format!("name = \"Name 1\"\n{}\n\x04", b64(b"name\0name 1\0")),
        format!("email ^= \"user\"\n{}\n\x07", b64(&[0xff; 8])),
        "\nnot base64!\n".to_string(),
        "\nlocal_AbC123\n".to_string(),
    ] {
        out.push(("pagination_token", input.into_bytes()));
    }
}

fn peer_seeds(out: &mut Vec<(&'static str, Vec<u8>)>) {
    use crate::command::Command;
    use crate::model::cluster::NodeAddr;
    use crate::proto::{RaftMessage, SnapshotChunk};
    use crate::raft::types::{Entry, LogId, SnapshotMeta, StoredMembership, TypeConfig, Vote};
    use crate::raft::wire::{ForwardError, ForwardReply, ForwardRequest};
    use crate::store::codec::encode;
    use openraft::raft::{
        AppendEntriesRequest, AppendEntriesResponse, TransferLeaderRequest, VoteRequest, VoteResponse,
    };
    let frame = |which: u8, payload: Vec<u8>| {
        let mut v = vec![which];
        v.extend_from_slice(&RaftMessage { payload }.encode_to_vec());
        v
    };
    use openraft::entry::RaftEntry;
    use openraft::vote::RaftLeaderId;
    let vote = Vote::new(3, 1);
    let log_id = |i: u64| LogId::new(openraft::impls::leader_id_adv::LeaderId::new(3, 1), i);
    let addr = |n: u64| NodeAddr {
        api_addr: format!("127.0.0.1:{}", 7700 + 10 * n),
        peer_addr: format!("127.0.0.1:{}", 7701 + 10 * n),
    };
    let membership = openraft::Membership::new(
        vec![[1u64, 2, 3].into_iter().collect()],
        [(1u64, addr(1)), (2, addr(2)), (3, addr(3))]
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
    )
    .expect("membership");
    let user = fuzz_user(
        PAGE_POOL,
        "sub-x",
        "mallory",
        [("email".to_string(), "m@x.io".to_string())].into(),
    );
    let cmd = Command::from(CreateUser {
        user,
        code: None,
        message: None,
        force_alias_creation: false,
    });
    let entries: Vec<Entry> = vec![
        Entry::new(log_id(5), openraft::EntryPayload::Blank),
        Entry::new(log_id(6), openraft::EntryPayload::Normal(cmd.clone())),
        Entry::new(log_id(7), openraft::EntryPayload::Membership(membership.clone())),
    ];
    let append: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
        vote,
        prev_log_id: Some(log_id(4)),
        entries,
        leader_commit: Some(log_id(4)),
    };
    out.push(("peer_message", frame(0, encode(&append).expect("encode"))));
    let vote_req: VoteRequest<TypeConfig> = VoteRequest::new(vote, Some(log_id(9)));
    out.push(("peer_message", frame(1, encode(&vote_req).expect("encode"))));
    let transfer: TransferLeaderRequest<TypeConfig> = TransferLeaderRequest::new(vote, 2, Some(log_id(9)));
    out.push(("peer_message", frame(2, encode(&transfer).expect("encode"))));
    for fwd in [
        ForwardRequest::Propose(Box::new(cmd.clone())),
        ForwardRequest::ReadIndex,
        ForwardRequest::AddLearner {
            node_id: 99,
            addr: addr(9),
        },
        ForwardRequest::PromoteVoter { node_id: 99 },
        ForwardRequest::RemoveNode { node_id: 2 },
    ] {
        out.push(("peer_message", frame(3, encode(&fwd).expect("encode"))));
    }
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(7)),
        last_membership: StoredMembership::new(Some(log_id(7)), membership),
    };
    out.push(("peer_message", frame(4, encode(&(vote, meta.clone())).expect("encode"))));
    let append_resp: Result<AppendEntriesResponse<TypeConfig>, String> = Ok(AppendEntriesResponse::Success);
    out.push(("peer_message", frame(5, encode(&append_resp).expect("encode"))));
    let vote_resp: Result<VoteResponse<TypeConfig>, String> = Ok(VoteResponse::new(vote, Some(log_id(9)), true));
    out.push(("peer_message", frame(6, encode(&vote_resp).expect("encode"))));
    let fwd_reply: Result<ForwardReply, ForwardError> = Ok(ForwardReply::ReadIndex(9));
    out.push(("peer_message", frame(8, encode(&fwd_reply).expect("encode"))));
    let fwd_err: Result<ForwardReply, ForwardError> = Err(ForwardError::NotLeader {
        leader: Some((2, addr(2))),
    });
    out.push(("peer_message", frame(8, encode(&fwd_err).expect("encode"))));
    out.push(("peer_message", frame(10, encode(&cmd).expect("encode"))));
    let chunk = SnapshotChunk {
        header: encode(&(vote, meta)).expect("encode"),
        data: b"TSNAP001".to_vec(),
        done: true,
    };
    out.push(("peer_message", [&[11u8][..], &chunk.encode_to_vec()].concat()));
}

fn snapshot_seeds(out: &mut Vec<(&'static str, Vec<u8>)>) {
    use crate::raft::snapshot_file::SnapshotWriter;
    use crate::raft::types::{LogId, SnapshotMeta};
    use openraft::vote::RaftLeaderId;
    let path = scratch_path("seed.snap");
    let mut w = SnapshotWriter::create(&path).expect("seed snapshot");
    for i in 0u32..4 {
        w.record(
            &[&[0x20u8][..], &i.to_be_bytes()].concat(),
            format!("value-{i}").as_bytes(),
        )
        .expect("record");
    }
    let meta = SnapshotMeta {
        last_log_id: Some(LogId::new(openraft::impls::leader_id_adv::LeaderId::new(2, 1), 40)),
        ..Default::default()
    };
    let path = w.finish(&meta).expect("finish");
    let bytes = std::fs::read(&path).expect("read seed snapshot");
    let _ = std::fs::remove_file(&path);
    // Mode 0: as written (digest included); mode 1: without its digest,
    // which the harness appends.
    out.push(("snapshot_file", [&[0u8][..], &bytes].concat()));
    out.push(("snapshot_file", [&[1u8][..], &bytes[..bytes.len() - 32]].concat()));
    out.push((
        "snapshot_file",
        [&[1u8][..], b"TSNAP001\x01\x00\x00\x00\x01k\xff\xff\xff\xff"].concat(),
    ));
}

fn grpc_seeds(out: &mut Vec<(&'static str, Vec<u8>)>) {
    use crate::proto::*;
    let av = |n: &str, v: &str| AttributeValue {
        name: n.into(),
        value: v.into(),
    };
    let at = |n: &str, v: &str| AttributeType {
        name: n.into(),
        value: v.into(),
    };
    let mut push = |which: u8, bytes: Vec<u8>| out.push(("grpc_request", [&[which][..], &bytes].concat()));
    push(
        0,
        CreateUserPoolRequest {
            pool_name: "fuzz".into(),
            alias_attributes: vec!["email".into()],
            auto_verified_attributes: vec!["email".into()],
            schema: vec![SchemaAttributeType {
                name: "tier".into(),
                attribute_data_type: "String".into(),
                mutable: true,
                required: false,
                string_attribute_constraints: Some(StringAttributeConstraintsType {
                    min_length: "0".into(),
                    max_length: "64".into(),
                }),
                indexed: true,
            }],
            default_token_validity: Some(TokenValidityType {
                access_token_validity: 2,
                id_token_validity: 60,
                refresh_token_validity: 30,
                token_validity_units: Some(TokenValidityUnitsType {
                    access_token: "hours".into(),
                    id_token: "minutes".into(),
                    refresh_token: "days".into(),
                }),
            }),
            deletion_protection: "ACTIVE".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    push(
        1,
        UpdateUserPoolRequest {
            user_pool_id: "local_AbC123".into(),
            update_auto_verified_attributes: true,
            auto_verified_attributes: vec!["phone_number".into()],
            deletion_protection: "INACTIVE".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    push(
        2,
        CreateUserPoolClientRequest {
            user_pool_id: "local_AbC123".into(),
            client_name: "web".into(),
            explicit_auth_flows: vec!["ALLOW_USER_PASSWORD_AUTH".into(), "ALLOW_REFRESH_TOKEN_AUTH".into()],
            read_attributes: vec!["email".into()],
            access_token_validity: 60,
            token_validity_units: Some(TokenValidityUnitsType {
                access_token: "minutes".into(),
                ..Default::default()
            }),
            prevent_user_existence_errors: "ENABLED".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    push(
        4,
        AdminCreateUserRequest {
            user_pool_id: "local_AbC123".into(),
            username: "alice".into(),
            user_attributes: vec![av("email", "a@x.io"), av("custom:tier", "GOLD"), av("name", "Ann Ω")],
            temporary_password: "Passw0rd!".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    push(
        6,
        AdminImportUsersRequest {
            user_pool_id: "local_AbC123".into(),
            users: vec![ImportUserType {
                username: "bob".into(),
                attributes: vec![av("phone_number", "+14325551212")],
            }],
            password: "Passw0rd!".into(),
            mark_verified: true,
        }
        .encode_to_vec(),
    );
    push(
        7,
        ListUsersRequest {
            user_pool_id: "local_AbC123".into(),
            filter: r#"email ^= "a""#.into(),
            limit: 10,
            pagination_token: URL_SAFE_NO_PAD.encode(b"email\0a@x.io\0sub"),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    push(
        8,
        CreateGroupRequest {
            group_name: "admins".into(),
            user_pool_id: "local_AbC123".into(),
            description: "d".into(),
            precedence: Some(1),
            permissions: vec!["course:*".into(), "course:read".into()],
            ..Default::default()
        }
        .encode_to_vec(),
    );
    push(
        10,
        SignUpRequest {
            client_id: "c".into(),
            username: "carol".into(),
            password: "Passw0rd!".into(),
            user_attributes: vec![at("email", "c@x.io"), at("birthdate", "2000-01-01")],
            client_metadata: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    push(
        12,
        InitiateAuthRequest {
            auth_flow: "USER_PASSWORD_AUTH".into(),
            auth_parameters: [("USERNAME".to_string(), "a".to_string())].into(),
            client_id: "c".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    push(
        13,
        AddNodeRequest {
            node_id: 4,
            peer_addr: "10.0.0.4:7701".into(),
            api_addr: "[::1]:7700".into(),
        }
        .encode_to_vec(),
    );
    push(
        14,
        ConfirmForgotPasswordRequest {
            client_id: "c".into(),
            username: "a".into(),
            confirmation_code: "123456".into(),
            password: "Passw0rd!".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
}

fn config_seeds(out: &mut Vec<(&'static str, Vec<u8>)>) {
    let full = r#"node_id = 1
data_dir = "/var/lib/tessera"
api_addr = "0.0.0.0:7700"
peer_addr = "0.0.0.0:7701"
advertise_api_addr = "node1.internal:7700"
advertise_peer_addr = "node1.internal:7701"
log_format = "json"
sealing_key_file = "/etc/tessera/sealing.key"
signing_key_rotation_days = 30
password_hash_concurrency = 2

[tls]
api_cert = "/etc/tessera/api.crt"
api_key = "/etc/tessera/api.key"
peer_cert = "/etc/tessera/node1.crt"
peer_key = "/etc/tessera/node1.key"
peer_ca = "/etc/tessera/ca.crt"

[courier]
backend = "webhook"
[courier.webhook]
url = "https://hooks.internal/tessera"
secret = "s3cret"

[limits]
code_sends_burst = 10
code_sends_per_minute = 5

[raft]
heartbeat_ms = 100
election_timeout_min_ms = 400
election_timeout_max_ms = 800
snapshot_every = 10000
keep_logs_after_snapshot = 1000
max_snapshot_bytes = 1073741824
peer_address_overrides = { "2" = "10.0.0.7:7701" }
"#;
    out.push(("config", full.as_bytes().to_vec()));
    out.push(("config", b"node_id = 1\ndata_dir = \"/tmp/x\"\n".to_vec()));
    out.push((
        "config",
        b"node_id = 0\ndata_dir = \"\"\napi_addr = \"nope\"\n[raft]\nheartbeat_ms = 0\n".to_vec(),
    ));
    out.push(("config", b"[courier]\nbackend = \"smtp\"\n[courier.smtp]\n".to_vec()));
}
