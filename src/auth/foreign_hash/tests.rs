//! Known-answer vectors made by independent implementations, so that the
//! verifiers are not only checked against themselves, plus the bounds.

use super::*;

/// The password of the vectors below made for Tessera.
const PW: &[u8] = b"Tessera-KAT-1";

/// Each vector: the hash, where it came from.
const VECTORS: &[(&str, &str)] = &[
    // Python `bcrypt` 5.0.0: bcrypt.hashpw(PW, b"$2b$04$abcdefghijklmnopqrstuu").
    (
        "$2b$04$abcdefghijklmnopqrstuuZpfs7pMDs2BfSG3VHoWyUDzibcLelSO",
        "python bcrypt 2b",
    ),
    // Python `bcrypt` 5.0.0: bcrypt.hashpw(PW, bcrypt.gensalt(4, prefix=b"2a")).
    (
        "$2a$04$Xf7Y7lN5L3Sw7N.gpDZFEuaa7N6Ddaa9RaIvZbtPMVG/5UssEpEcC",
        "python bcrypt 2a",
    ),
    // The first one as PHP writes it ($2y$); Python's bcrypt.checkpw accepts it.
    (
        "$2y$04$abcdefghijklmnopqrstuuZpfs7pMDs2BfSG3VHoWyUDzibcLelSO",
        "python bcrypt 2y",
    ),
    // argon2-cffi 25.1.0: low_level.hash_secret(PW, b"saltsaltsalt1234",
    // time_cost=2, memory_cost=256, parallelism=1, hash_len=32, type=Type.I).
    (
        "$argon2i$v=19$m=256,t=2,p=1$c2FsdHNhbHRzYWx0MTIzNA$K6xVFmC5p/XEFQHf6Iqk9QvS9N1kmjuW6YBVezQbWWc",
        "argon2-cffi argon2i",
    ),
    // argon2-cffi 25.1.0: the same salt, time_cost=1, memory_cost=512,
    // parallelism=2, type=Type.ID.
    (
        "$argon2id$v=19$m=512,t=1,p=2$c2FsdHNhbHRzYWx0MTIzNA$unb6Cvhrl138pwrGBSLDp7NqYtrWd5wQgsLARaoiADg",
        "argon2-cffi argon2id",
    ),
    // CPython 3.11 hashlib.scrypt(PW, salt=b"kat-salt-0123456", n=1024, r=8,
    // p=1, dklen=32), PHC-encoded.
    (
        "$scrypt$ln=10,r=8,p=1$a2F0LXNhbHQtMDEyMzQ1Ng$QACGu6QGdLclekot5xj9NfC5gPaQl6gYP90H236DZPQ",
        "hashlib scrypt",
    ),
    // CPython 3.11 hashlib.pbkdf2_hmac("sha256", PW, b"kat-salt-0123456",
    // 1000), in passlib's adapted base64 ('.' for '+').
    (
        "$pbkdf2-sha256$i=1000$a2F0LXNhbHQtMDEyMzQ1Ng$TQwvNOYnMElKpopPLJAexxL72hohIX.xuLPkKHZuDTc",
        "hashlib pbkdf2-sha256",
    ),
    // The same, passlib's form with the rounds alone.
    (
        "$pbkdf2-sha256$1000$a2F0LXNhbHQtMDEyMzQ1Ng$TQwvNOYnMElKpopPLJAexxL72hohIX.xuLPkKHZuDTc",
        "hashlib pbkdf2-sha256, passlib form",
    ),
    // CPython 3.11 hashlib.pbkdf2_hmac("sha512", PW, b"kat-salt-0123456", 1000).
    (
        "$pbkdf2-sha512$i=1000$a2F0LXNhbHQtMDEyMzQ1Ng$T3BzSFan9/OyeLNkVxpGAgLg4N42yTU2cmHUNamZpzNKuXbk1vJUG8cnXA3nGS6JOm1DPaq/eWRVUgdJ8QmEoQ",
        "hashlib pbkdf2-sha512",
    ),
];

/// The published example of Firebase's own scrypt tool (its README):
/// password "user1password", rounds 8, mem_cost 14.
pub(crate) const FIREBASE_VECTOR: &str = "$firebase-scrypt$ln=14,r=8\
$jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA==\
$Bw==$42xEC+ixf3L2lw==\
$lSrfV15cpx95/sZS2W9c9Kp6i/LVgQNDNC/qzrCnh1SAyZvqmZqAjTdn3aoItz+VHjoZilo78198JAdRuid5lQ==";

fn check(pw: &[u8], hash: &str) -> bool {
    let mut memory = Vec::new();
    verify(pw, hash, &mut memory).unwrap()
}

#[test]
fn independent_vectors_verify_and_wrong_passwords_do_not() {
    for (hash, from) in VECTORS {
        check_import(hash).unwrap_or_else(|e| panic!("{from}: {e}"));
        assert!(check(PW, hash), "{from}");
        assert!(!check(b"Tessera-KAT-2", hash), "{from}: a wrong password verified");
    }
    // OpenBSD's and Openwall's classic bcrypt vector.
    assert!(check(
        b"U*U",
        "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"
    ));
    assert_eq!(check_import(FIREBASE_VECTOR), Ok(Scheme::FirebaseScrypt));
    assert!(check(b"user1password", FIREBASE_VECTOR));
    assert!(!check(b"user2password", FIREBASE_VECTOR));
}

#[test]
fn schemes_are_recognised() {
    let schemes: Vec<Scheme> = VECTORS.iter().map(|(h, _)| scheme_of(h).unwrap()).collect();
    assert_eq!(
        schemes,
        [
            Scheme::Bcrypt,
            Scheme::Bcrypt,
            Scheme::Bcrypt,
            Scheme::Argon2i,
            Scheme::Argon2id,
            Scheme::Scrypt,
            Scheme::Pbkdf2Sha256,
            Scheme::Pbkdf2Sha256,
            Scheme::Pbkdf2Sha512
        ]
    );
}

#[test]
fn is_current_only_for_the_pools_own_argon2id() {
    let p = Argon2Params { m_kib: 512, t: 1, p: 2 };
    assert!(is_current(VECTORS[4].0, p));
    assert!(!is_current(VECTORS[4].0, Argon2Params { m_kib: 512, t: 2, p: 2 }));
    assert!(!is_current(VECTORS[3].0, Argon2Params { m_kib: 256, t: 2, p: 1 }));
    assert!(!is_current(VECTORS[0].0, p));
}

#[test]
fn malformed_and_costly_hashes_are_refused_with_a_reason() {
    for (hash, why) in [
        ("plain", "unknown hash format"),
        ("$md5$x", "unknown hash format"),
        ("$2b$04$short", "60 characters"),
        (
            "$2b$17$abcdefghijklmnopqrstuuZpfs7pMDs2BfSG3VHoWyUDzibcLelSO",
            "bcrypt cost 17",
        ),
        (
            "$2b$03$abcdefghijklmnopqrstuuZpfs7pMDs2BfSG3VHoWyUDzibcLelSO",
            "bcrypt cost 3",
        ),
        (
            "$scrypt$ln=21,r=8,p=1$c2FsdA$QACGu6QGdLclekot5xj9NfC5gPaQl6gYP90H236DZPQ",
            "ln=21",
        ),
        (
            "$scrypt$ln=20,r=8,p=1$c2FsdA$QACGu6QGdLclekot5xj9NfC5gPaQl6gYP90H236DZPQ",
            "memory",
        ),
        (
            "$scrypt$ln=16,r=8,p=16$c2FsdA$QACGu6QGdLclekot5xj9NfC5gPaQl6gYP90H236DZPQ",
            "work",
        ),
        (
            "$scrypt$ln=10,r=8$c2FsdA$QACGu6QGdLclekot5xj9NfC5gPaQl6gYP90H236DZPQ",
            "p missing",
        ),
        ("$scrypt$ln=10,r=8,p=1$c2FsdA$!!", "not base64"),
        ("$scrypt$ln=10,r=8,p=1$c2FsdA$QUJD", "3 bytes"),
        (
            "$pbkdf2-sha256$i=10000001$c2FsdA$TQwvNOYnMElKpopPLJAexxL72hohIX.xuLPkKHZuDTc",
            "i=10000001",
        ),
        (
            "$pbkdf2-sha512$i=0$c2FsdA$TQwvNOYnMElKpopPLJAexxL72hohIX.xuLPkKHZuDTc",
            "i=0",
        ),
        ("$pbkdf2-sha256$i=1000$c2FsdA", "must be"),
        (
            "$argon2id$v=19$m=300000,t=1,p=1$c2FsdHNhbHRzYWx0MTIzNA$unb6Cvhrl138pwrGBSLDp7NqYtrWd5wQgsLARaoiADg",
            "import bound",
        ),
        (
            "$argon2id$v=19$m=512,t=11,p=1$c2FsdHNhbHRzYWx0MTIzNA$unb6Cvhrl138pwrGBSLDp7NqYtrWd5wQgsLARaoiADg",
            "t=11",
        ),
        (
            "$argon2d$v=19$m=512,t=1,p=1$c2FsdHNhbHRzYWx0MTIzNA$unb6Cvhrl138pwrGBSLDp7NqYtrWd5wQgsLARaoiADg",
            "unknown hash format",
        ),
        (
            "$firebase-scrypt$ln=14,r=8$a2V5a2V5a2V5a2V5a2V5a2V5$Bw==$c2FsdA==",
            "must be",
        ),
        (
            "$firebase-scrypt$ln=14,r=8$a2V5a2V5a2V5a2V5a2V5a2V5$Bw==$c2FsdA==$QUJDREVGR0hJSktMTU5PUA==",
            "as long as",
        ),
    ] {
        let err = check_import(hash).expect_err(hash).to_string();
        assert!(err.contains(why), "{hash}: {err}");
    }
    let long = format!("$2b$04${}", "a".repeat(600));
    assert!(check_import(&long).is_err());
}
