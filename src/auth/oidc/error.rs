//! Why an external id token was refused, said so that the app developer
//! who sent it can act. No variant ever holds the token; values echoed from
//! it (kid, alg, iss, aud) are cut short and escaped by [`echo`].

use crate::model::ValidationError;

/// Why [`super::OidcVerifier::verify`] refused a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The provider's stored configuration does not validate.
    #[error("the OpenID provider configuration is invalid: {0}")]
    Config(#[from] ValidationError),
    /// The token is longer than anything a provider issues.
    #[error("the token is {len} bytes; at most {max} are accepted")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The token is not a signed JWT (compact JWS) with JSON header and
    /// payload; says which part is wrong.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// The header says `alg: none`: an unsigned token.
    #[error("alg none is refused: an id token must be signed by its provider")]
    AlgNone,
    /// The header's `alg` is not the algorithm of the key its `kid` names
    /// (`HS256` against an RSA key is the key-confusion attack).
    #[error("alg {alg} is not allowed: the key {kid} is {key_alg}")]
    AlgMismatch {
        /// The header's alg, echoed.
        alg: String,
        /// The key's kid.
        kid: String,
        /// The algorithm the key allows.
        key_alg: &'static str,
    },
    /// The header's `alg` is not one Tessera verifies, and no cached key
    /// named by the token says more.
    #[error("alg {alg} is not allowed: id tokens from OpenID providers must be signed with RS256, ES256 or EdDSA")]
    UnsupportedAlg {
        /// The header's alg, echoed.
        alg: String,
    },
    /// The header lists `crit` extensions, which must be understood to be
    /// honoured (RFC 7515 §4.1.11); Tessera understands none.
    #[error("the token header has crit parameters, which are not supported")]
    Crit,
    /// No key of the provider has the token's `kid`.
    #[error("unknown key id {kid} in the JWKS of {issuer} ({refetch})")]
    UnknownKid {
        /// The token's kid, echoed.
        kid: String,
        /// The provider's issuer URL.
        issuer: String,
        /// Whether the JWKS was fetched again to look for it.
        refetch: Refetch,
    },
    /// The token has no `kid` and the JWKS does not have exactly one key.
    #[error("the token has no kid, and the JWKS of {issuer} has {keys} usable keys: a kid is required unless it has exactly one")]
    NoKid {
        /// The provider's issuer URL.
        issuer: String,
        /// How many usable keys the JWKS has.
        keys: usize,
    },
    /// The provider's keys could not be had and none are cached.
    #[error("could not fetch the JWKS of {issuer}: {reason}")]
    Jwks {
        /// The provider's issuer URL.
        issuer: String,
        /// What failed (URL and error), never a token.
        reason: String,
    },
    /// The signature is not valid for the key the token names: forged,
    /// tampered, or signed by another key.
    #[error("the signature does not verify with key {kid} of {issuer}")]
    BadSignature {
        /// The key's kid.
        kid: String,
        /// The provider's issuer URL.
        issuer: String,
    },
    /// `iss` is not this provider.
    #[error("issuer {got} is not the configured issuer {expected}")]
    Issuer {
        /// The token's iss, echoed.
        got: String,
        /// The provider's issuer URL.
        expected: String,
    },
    /// `aud` names none of the pool's client ids for this provider.
    #[error("audience {got} is not one of the configured client ids")]
    Audience {
        /// The token's aud, echoed (a list joined by commas).
        got: String,
    },
    /// `exp` is past (beyond the leeway).
    #[error("token expired at {} (now {}, leeway {leeway} s)", when(.exp), when(.now))]
    Expired {
        /// `exp`, Unix seconds.
        exp: i64,
        /// The time it was checked at.
        now: i64,
        /// Seconds of clock skew tolerated.
        leeway: i64,
    },
    /// `nbf` is still ahead (beyond the leeway).
    #[error("token is not valid before {} (now {}, leeway {leeway} s)", when(.nbf), when(.now))]
    NotYetValid {
        /// `nbf`, Unix seconds.
        nbf: i64,
        /// The time it was checked at.
        now: i64,
        /// Seconds of clock skew tolerated.
        leeway: i64,
    },
    /// `iat` is ahead (beyond the leeway): the provider's clock or ours is
    /// wrong, or the token is forged.
    #[error("token was issued in the future, at {} (now {}, leeway {leeway} s)", when(.iat), when(.now))]
    IssuedInFuture {
        /// `iat`, Unix seconds.
        iat: i64,
        /// The time it was checked at.
        now: i64,
        /// Seconds of clock skew tolerated.
        leeway: i64,
    },
    /// A required claim (`iss`, `aud`, `exp`, `iat`, `sub`) is absent.
    #[error("claim {0} is missing")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or an out-of-range value.
    #[error("claim {claim} {reason}")]
    InvalidClaim {
        /// The claim.
        claim: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Whether an unknown kid made the verifier fetch the JWKS again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refetch {
    /// It was fetched again (by this call or a concurrent one) and the kid
    /// is still not there.
    Refetched,
    /// Not fetched again: the last fetch was this many seconds ago, within
    /// the refetch interval.
    RateLimited {
        /// Seconds since the last fetch attempt.
        ago: i64,
    },
    /// Fetched again, but the fetch failed (why); the cached keys lack it.
    Failed(String),
    /// Not fetched again, because the token's alg is one Tessera never
    /// accepts anyway.
    NotAttempted,
}

impl std::fmt::Display for Refetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refetch::Refetched => f.write_str("refetched"),
            Refetch::RateLimited { ago } => write!(f, "not refetched: the JWKS was fetched {ago} s ago"),
            Refetch::Failed(why) => write!(f, "refetch failed: {why}"),
            Refetch::NotAttempted => f.write_str("not refetched"),
        }
    }
}

impl OidcError {
    /// The Cognito exception a front end should answer with:
    /// `InvalidParameterException` for a bad provider configuration,
    /// `ExternalServiceException` when the provider's keys cannot be had,
    /// and `NotAuthorizedException` for everything wrong with the token.
    pub fn cognito_exception(&self) -> &'static str {
        match self {
            OidcError::Config(_) => "InvalidParameterException",
            OidcError::Jwks { .. } => "ExternalServiceException",
            _ => "NotAuthorizedException",
        }
    }
}

/// A value taken from a token, made safe to show in a message or a log
/// line: at most 100 characters, with control characters, quotes and
/// backslashes escaped.
pub fn echo(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(100) {
        out.extend(c.escape_debug());
    }
    if s.chars().nth(100).is_some() {
        out.push('…');
    }
    out
}

/// [`rfc3339`] of a field, as the error messages print times.
fn when(secs: &i64) -> String {
    rfc3339(*secs)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC), for messages a person
/// reads; out-of-range values print as plain seconds.
pub fn rfc3339(secs: i64) -> String {
    // Years 0..=9999 only; anything else is a broken claim worth seeing raw.
    if !(-62_167_219_200..=253_402_300_799).contains(&secs) {
        return format!("{secs} (Unix seconds)");
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::MAX), format!("{} (Unix seconds)", i64::MAX));
    }

    #[test]
    fn echoed_values_are_short_and_escaped() {
        assert_eq!(echo("k1"), "k1");
        assert_eq!(echo("a\nb\"c"), "a\\nb\\\"c");
        let long = echo(&"x".repeat(500));
        assert_eq!(long.chars().count(), 101);
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let e = OidcError::AlgMismatch {
            alg: "HS256".into(),
            kid: "k1".into(),
            key_alg: "RS256",
        };
        assert_eq!(e.to_string(), "alg HS256 is not allowed: the key k1 is RS256");
        let e = OidcError::Expired {
            exp: 1_700_000_000,
            now: 1_700_000_100,
            leeway: 60,
        };
        assert_eq!(
            e.to_string(),
            "token expired at 2023-11-14T22:13:20Z (now 2023-11-14T22:15:00Z, leeway 60 s)"
        );
        let e = OidcError::UnknownKid {
            kid: "k9".into(),
            issuer: "https://id.example.com".into(),
            refetch: Refetch::Refetched,
        };
        assert_eq!(
            e.to_string(),
            "unknown key id k9 in the JWKS of https://id.example.com (refetched)"
        );
        assert_eq!(e.cognito_exception(), "NotAuthorizedException");
    }
}
