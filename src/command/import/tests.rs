use super::*;
use crate::command::testkit::{run, store_with_pool, user_in, POOL};
use crate::command::{Command, ImportReport};
use crate::model::pool_settings::SignInAlias;
use crate::model::user::UserStatus;

fn imported(sub: &str, name: &str, groups: &[&str]) -> ImportedUser {
    let mut user = user_in(UserStatus::Confirmed, sub, name, &format!("{name}@x.io"));
    user.password_phc = Some(format!("$2b$04$hash-of-{name}"));
    ImportedUser {
        user,
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

#[test]
fn groups_are_created_once_and_joined_and_collisions_skip_the_user() {
    let (_d, store) = store_with_pool(&[SignInAlias::Email]);
    let cmd = ImportUserRecords {
        pool_id: POOL.into(),
        users: vec![
            imported("s1", "ann", &["teachers", "staff"]),
            imported("s2", "bob", &["teachers"]),
            imported("s3", "ANN", &["ghosts"]),
        ],
        now: 42,
    };
    let Outcome::Imported(ImportReport { imported, failures }) = run(&store, &cmd) else {
        panic!("import failed")
    };
    assert_eq!(imported, 2);
    assert_eq!(failures.len(), 1, "{failures:?}");
    let names: Vec<String> = store
        .groups_of(POOL, "s1")
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(names, ["staff", "teachers"]);
    assert_eq!(store.member_subs(POOL, "teachers", None, 10).unwrap(), ["s1", "s2"]);
    let g = store.group(POOL, "teachers").unwrap().unwrap();
    assert_eq!((g.created_at, g.precedence), (42, None));
    assert!(
        store.group(POOL, "ghosts").unwrap().is_none(),
        "a refused user creates no group"
    );
    assert_eq!(
        store.user(POOL, "s1").unwrap().unwrap().password_phc.as_deref(),
        Some("$2b$04$hash-of-ann"),
        "the imported hash is stored as given"
    );
    assert_eq!(store.user_count(POOL).unwrap(), 2);
}

#[test]
fn rehash_replaces_only_the_verified_hash_and_nothing_else() {
    let (_d, store) = store_with_pool(&[]);
    let cmd = ImportUserRecords {
        pool_id: POOL.into(),
        users: vec![imported("s1", "ann", &[])],
        now: 1,
    };
    run(&store, &cmd);
    let before = store.user(POOL, "s1").unwrap().unwrap();
    let old = before.password_phc.clone().unwrap();
    let stale = RehashPassword {
        pool_id: POOL.into(),
        sub: "s1".into(),
        verified_sha256: hash_fingerprint("$2b$04$another"),
        password_phc: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
    };
    assert!(matches!(
        run(&store, &stale),
        Outcome::Rejected(Rejection::ResourceConflict(_))
    ));
    let fresh = RehashPassword {
        verified_sha256: hash_fingerprint(&old),
        ..stale.clone()
    };
    assert_eq!(run(&store, &fresh), Outcome::Done);
    let after = store.user(POOL, "s1").unwrap().unwrap();
    assert_eq!(after.password_phc.as_deref(), Some(fresh.password_phc.as_str()));
    let mut same = after.clone();
    same.password_phc = before.password_phc.clone();
    assert_eq!(same, before, "nothing but the hash changed");
    // A second rehash of the old hash loses: the stored one changed.
    assert!(matches!(run(&store, &fresh), Outcome::Rejected(_)));
    // Not an argon2id string: refused before apply.
    let bad = RehashPassword {
        password_phc: "$2b$04$x".into(),
        ..fresh
    };
    assert!(matches!(
        run(&store, Command::from(bad)),
        Outcome::Rejected(Rejection::Invalid(_))
    ));
}
