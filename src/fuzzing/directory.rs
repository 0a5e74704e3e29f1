//! The user directory's parsers: `ListUsers` filters and the pagination
//! tokens that must never leave their pool.

use crate::command::{CreateUser, CreateUserPool, InitCluster};
use std::collections::BTreeMap;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::model::pool_settings::{AttributeSchema, AttributeType, PoolSettings};
use crate::model::user::{User, UserStatus};
use crate::model::user_filter::{index_value, indexed_attribute, parse_filter, FilterOp, MAX_FILTER_CHARS};
use crate::store::directory::{index_keys, index_stem, sub_of_index_key};
use crate::store::keys::pool_key;

use super::{remove_stale_stores, scratch_path, Seeds};

pub(super) fn fuzz_settings() -> &'static PoolSettings {
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

pub(super) fn fuzz_user(pool_id: &str, sub: &str, username: &str, attributes: BTreeMap<String, String>) -> User {
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

pub(super) const PAGE_POOL: &str = "local_fuzzA";
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

/// `ListUsers` pagination tokens (`service::cursor`), followed by the page
/// read the node then does, on a real RocksDB store:
/// - an arbitrary token never opens as a cursor (only a sealed one does),
///   and a position sealed for one pool and filter opens for no other;
/// - whatever position a cursor carries (here: the token's own bytes, as if
///   a cursor key had leaked), a page holds only users of the listed pool
///   and, with a filter, only keys of that filter, in order after it.
///
/// Input: `filter \n token \n limit-byte`. Also checks the other list
/// calls' tokens that are plain ids (`ListUserPools`, `ListUserPoolClients`).
pub fn pagination_token(data: &[u8]) {
    use crate::auth::sealing::SealingKey;
    use crate::service::cursor::{open, seal};
    use crate::service::directory::{checked_position, list_users_scope};
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
    let key = SealingKey::from_bytes([7; 32]);
    let scope_parts = [PAGE_POOL, filter];
    let scope = list_users_scope(&scope_parts);
    assert!(
        token.is_empty() || open(&key, &scope, token).is_err(),
        "a token nobody sealed opened as a cursor"
    );
    let position = URL_SAFE_NO_PAD
        .decode(token)
        .unwrap_or_else(|_| token.as_bytes().to_vec());
    let sealed = seal(&key, &scope, &position);
    assert_eq!(open(&key, &scope, &sealed).ok().as_deref(), Some(position.as_slice()));
    let other_parts = ["local_Other", filter];
    assert!(
        open(&key, &list_users_scope(&other_parts), &sealed).is_err(),
        "a cursor opened for another pool"
    );
    let store = page_store();
    let settings = fuzz_settings();
    let Ok(parsed) = parse_filter(filter) else {
        return;
    };
    match parsed {
        None => {
            let Ok(after) = checked_position(position, None) else {
                return;
            };
            let after = String::from_utf8(after).expect("checked_position checked UTF-8");
            let page = store.users_page(PAGE_POOL, Some(&after), limit).expect("users_page");
            assert!(page.len() <= limit);
            for u in &page {
                assert_eq!(u.pool_id, PAGE_POOL, "a token moved the scan into another pool");
                assert!(u.sub.as_str() > after.as_str(), "page starts at or before its token");
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
            let Ok(after) = checked_position(position, Some(&stem)) else {
                return;
            };
            let keys = store
                .index_page(PAGE_POOL, &stem, Some(&after), limit)
                .expect("index_page");
            assert!(keys.len() <= limit);
            for k in &keys {
                assert!(k.starts_with(&stem), "a token moved the scan out of its filter");
                assert!(k.as_slice() > after.as_slice(), "page starts at or before its token");
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

pub(super) fn filter_seeds(out: &mut Seeds) {
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

pub(super) fn page_seeds(out: &mut Seeds) {
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
