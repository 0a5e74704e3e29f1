//! The pure parts of checking an id token: splitting the compact JWS,
//! reading its header, and checking its claims at a given time. No I/O and
//! no clock; [`super::OidcVerifier`] adds the keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use super::error::{echo, OidcError};
use super::provider::OidcProvider;
use super::VerifiedIdToken;

/// Largest token accepted, checked before anything is decoded. Real id
/// tokens are 1 to 2 KiB; Apple's and Google's stay far below this.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest `sub` accepted (OpenID Connect Core caps it at 255 ASCII
/// characters).
pub const MAX_SUBJECT_LEN: usize = 255;

/// A compact JWS split into its parts, the header read.
#[derive(Debug)]
pub(crate) struct Jws<'a> {
    /// The header's `alg`, as written.
    pub alg: String,
    /// The header's `kid`, if any.
    pub kid: Option<String>,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    /// The payload, base64url.
    pub payload: &'a str,
    /// The signature, base64url.
    pub signature: &'a str,
}

/// Splits `token` and reads its header. Refuses oversized tokens before
/// decoding anything, encrypted (five-part) tokens, non-JSON headers and
/// headers with `crit`.
pub(crate) fn parse(token: &str) -> Result<Jws<'_>, OidcError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(OidcError::TooLarge {
            len: token.len(),
            max: MAX_TOKEN_BYTES,
        });
    }
    let malformed = |why: &str| OidcError::Malformed(why.to_string());
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = *parts.as_slice() else {
        return Err(if parts.len() == 5 {
            malformed("an encrypted token (JWE) is not supported; send the signed id token")
        } else {
            malformed("expected three base64url parts separated by dots (header.payload.signature)")
        });
    };
    let header_bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| malformed("the header is not base64url"))?;
    let Ok(Value::Object(header_json)) = serde_json::from_slice::<Value>(&header_bytes) else {
        return Err(malformed("the header is not a JSON object"));
    };
    let alg = match header_json.get("alg") {
        Some(Value::String(a)) => a.clone(),
        Some(_) => return Err(malformed("the header's alg is not a string")),
        None => return Err(malformed("the header has no alg")),
    };
    let kid = match header_json.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(malformed("the header's kid is not a string")),
    };
    if header_json.contains_key("crit") {
        return Err(OidcError::Crit);
    }
    let signing_input = token
        .get(..header.len() + 1 + payload.len())
        .ok_or_else(|| malformed("the token is not split as expected"))?;
    Ok(Jws {
        alg,
        kid,
        signing_input,
        payload,
        signature,
    })
}

/// Checks the claims of a token whose signature already verified, at `now`
/// (Unix seconds) with `leeway` seconds of clock skew, against `provider`.
///
/// `iss` must be the provider; `aud` (a string or an array) must contain
/// one of its client ids; `exp` and `iat` are required, `nbf` optional;
/// `sub` is required, 1 to [`MAX_SUBJECT_LEN`] bytes.
pub(crate) fn check_claims(
    provider: &OidcProvider,
    payload: &str,
    now: i64,
    leeway: i64,
) -> Result<VerifiedIdToken, OidcError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| OidcError::Malformed("the payload is not base64url".into()))?;
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(OidcError::Malformed("the payload is not a JSON object".into()));
    };

    let issuer = provider.issuer_url();
    let iss = string_claim(&claims, "iss")?;
    if !provider.accepts_issuer(iss) {
        return Err(OidcError::Issuer {
            got: echo(iss),
            expected: issuer,
        });
    }

    let audiences: Vec<&str> = match claims.get("aud") {
        None | Some(Value::Null) => return Err(OidcError::MissingClaim("aud")),
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) if !list.is_empty() => list
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("aud", "must be a string or an array of strings"))?,
        Some(_) => return Err(invalid("aud", "must be a string or a non-empty array of strings")),
    };
    let Some(audience) = audiences
        .iter()
        .find(|a| provider.audiences.iter().any(|c| c == *a))
        .map(|a| a.to_string())
    else {
        let mut shown: Vec<String> = audiences.iter().take(5).map(|a| echo(a)).collect();
        if audiences.len() > 5 {
            shown.push(format!("and {} more", audiences.len() - 5));
        }
        return Err(OidcError::Audience { got: shown.join(", ") });
    };

    let exp = numeric_date(&claims, "exp")?.ok_or(OidcError::MissingClaim("exp"))?;
    if now >= exp.saturating_add(leeway) {
        return Err(OidcError::Expired { exp, now, leeway });
    }
    if let Some(nbf) = numeric_date(&claims, "nbf")? {
        if nbf > now.saturating_add(leeway) {
            return Err(OidcError::NotYetValid { nbf, now, leeway });
        }
    }
    let iat = numeric_date(&claims, "iat")?.ok_or(OidcError::MissingClaim("iat"))?;
    if iat > now.saturating_add(leeway) {
        return Err(OidcError::IssuedInFuture { iat, now, leeway });
    }

    let sub = string_claim(&claims, "sub")?;
    if sub.is_empty() || sub.len() > MAX_SUBJECT_LEN {
        return Err(invalid("sub", format!("must be 1 to {MAX_SUBJECT_LEN} bytes")));
    }
    let subject = sub.to_string();

    Ok(VerifiedIdToken {
        issuer,
        subject,
        audience,
        expires_at: exp,
        claims,
    })
}

fn invalid(claim: &'static str, reason: impl Into<String>) -> OidcError {
    OidcError::InvalidClaim {
        claim,
        reason: reason.into(),
    }
}

/// A required string claim.
fn string_claim<'a>(claims: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, OidcError> {
    match claims.get(name) {
        None | Some(Value::Null) => Err(OidcError::MissingClaim(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(name, "must be a string")),
    }
}

/// An optional NumericDate claim (Unix seconds; a fraction is dropped, as
/// RFC 7519 allows non-integer values).
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, OidcError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            match n.as_f64() {
                // Within ±2^53 the float is exact enough for seconds.
                Some(f) if f.is_finite() && f.abs() < 9_007_199_254_740_992.0 => Ok(Some(f.floor() as i64)),
                _ => Err(invalid(name, "is out of range")),
            }
        }
        Some(_) => Err(invalid(name, "must be a number of seconds since the Unix epoch")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn provider() -> OidcProvider {
        OidcProvider::new("https://id.example.com", ["app-1", "app-2"])
    }

    fn good() -> Value {
        json!({"iss": "https://id.example.com", "aud": "app-2", "sub": "user-1",
               "exp": NOW + 600, "iat": NOW - 5, "email": "a@example.com"})
    }

    fn check(claims: &Value) -> Result<VerifiedIdToken, OidcError> {
        check_claims(&provider(), &b64(claims), NOW, 60)
    }

    fn with(key: &str, value: Value) -> Value {
        let mut c = good();
        c[key] = value;
        c
    }

    fn without(key: &str) -> Value {
        let mut c = good();
        c.as_object_mut().unwrap().remove(key);
        c
    }

    #[test]
    fn a_good_token_yields_subject_audience_and_claims() {
        let v = check(&good()).unwrap();
        assert_eq!(v.subject, "user-1");
        assert_eq!(v.audience, "app-2");
        assert_eq!(v.issuer, "https://id.example.com");
        assert_eq!(v.expires_at, NOW + 600);
        assert_eq!(v.claims["email"], "a@example.com");
        let v = check(&with("aud", json!(["other", "app-1"]))).unwrap();
        assert_eq!(v.audience, "app-1");
    }

    #[test]
    fn issuer_must_match_exactly() {
        for iss in [
            "https://id.example.com/",
            "http://id.example.com",
            "id.example.com",
            "https://evil.example.com",
        ] {
            let e = check(&with("iss", json!(iss))).unwrap_err();
            assert!(matches!(e, OidcError::Issuer { .. }), "{iss}: {e}");
        }
        assert_eq!(check(&without("iss")).unwrap_err(), OidcError::MissingClaim("iss"));
        assert!(matches!(
            check(&with("iss", json!(1))).unwrap_err(),
            OidcError::InvalidClaim { claim: "iss", .. }
        ));
    }

    #[test]
    fn google_tokens_may_carry_the_bare_issuer() {
        let google = OidcProvider::new("accounts.google.com", ["app-1"]);
        for iss in ["accounts.google.com", "https://accounts.google.com"] {
            let mut c = good();
            c["iss"] = json!(iss);
            c["aud"] = json!("app-1");
            let v = check_claims(&google, &b64(&c), NOW, 60).unwrap();
            assert_eq!(v.issuer, "https://accounts.google.com");
        }
    }

    #[test]
    fn audience_must_be_configured() {
        let e = check(&with("aud", json!("app-3"))).unwrap_err();
        assert_eq!(e.to_string(), "audience app-3 is not one of the configured client ids");
        let e = check(&with("aud", json!(["x", "y"]))).unwrap_err();
        assert_eq!(e.to_string(), "audience x, y is not one of the configured client ids");
        assert!(matches!(
            check(&with("aud", json!([]))).unwrap_err(),
            OidcError::InvalidClaim { claim: "aud", .. }
        ));
        assert!(matches!(
            check(&with("aud", json!(["app-1", 3]))).unwrap_err(),
            OidcError::InvalidClaim { .. }
        ));
        assert_eq!(check(&without("aud")).unwrap_err(), OidcError::MissingClaim("aud"));
    }

    #[test]
    fn times_are_checked_with_leeway() {
        assert!(check(&with("exp", json!(NOW - 59))).is_ok());
        assert!(matches!(
            check(&with("exp", json!(NOW - 60))).unwrap_err(),
            OidcError::Expired { .. }
        ));
        assert_eq!(check(&without("exp")).unwrap_err(), OidcError::MissingClaim("exp"));
        assert!(check(&with("exp", json!((NOW + 10) as f64 + 0.5))).is_ok());
        assert!(matches!(
            check(&with("exp", json!("soon"))).unwrap_err(),
            OidcError::InvalidClaim { claim: "exp", .. }
        ));
        assert!(matches!(
            check(&with("exp", json!(1e300))).unwrap_err(),
            OidcError::InvalidClaim { claim: "exp", .. }
        ));
        assert!(matches!(
            check(&with("exp", json!(u64::MAX))).unwrap_err(),
            OidcError::InvalidClaim { claim: "exp", .. }
        ));

        assert!(check(&with("nbf", json!(NOW + 60))).is_ok());
        assert!(matches!(
            check(&with("nbf", json!(NOW + 61))).unwrap_err(),
            OidcError::NotYetValid { .. }
        ));

        assert!(check(&with("iat", json!(NOW + 60))).is_ok());
        assert!(matches!(
            check(&with("iat", json!(NOW + 61))).unwrap_err(),
            OidcError::IssuedInFuture { .. }
        ));
        assert_eq!(check(&without("iat")).unwrap_err(), OidcError::MissingClaim("iat"));
    }

    #[test]
    fn subject_is_required_and_bounded() {
        assert_eq!(check(&without("sub")).unwrap_err(), OidcError::MissingClaim("sub"));
        assert!(matches!(
            check(&with("sub", json!(""))).unwrap_err(),
            OidcError::InvalidClaim { claim: "sub", .. }
        ));
        assert!(check(&with("sub", json!("s".repeat(255)))).is_ok());
        assert!(matches!(
            check(&with("sub", json!("s".repeat(256)))).unwrap_err(),
            OidcError::InvalidClaim { claim: "sub", .. }
        ));
    }

    #[test]
    fn payloads_that_are_not_json_objects_are_malformed() {
        let p = provider();
        assert!(matches!(check_claims(&p, "!!", NOW, 60), Err(OidcError::Malformed(_))));
        assert!(matches!(
            check_claims(&p, &b64(&json!([1])), NOW, 60),
            Err(OidcError::Malformed(_))
        ));
    }

    #[test]
    fn headers_are_read_and_bounded() {
        let h = b64(&json!({"alg": "RS256", "kid": "k1", "typ": "JWT"}));
        let token = format!("{h}.cGF5.c2ln");
        let jws = parse(&token).unwrap();
        assert_eq!(jws.alg, "RS256");
        assert_eq!(jws.kid.as_deref(), Some("k1"));
        assert_eq!(jws.signing_input, format!("{h}.cGF5"));
        assert_eq!(jws.payload, "cGF5");
        assert_eq!(jws.signature, "c2ln");

        let big = format!("{h}.{}.c2ln", "A".repeat(MAX_TOKEN_BYTES));
        assert!(matches!(parse(&big), Err(OidcError::TooLarge { .. })));
        assert!(matches!(parse("a.b"), Err(OidcError::Malformed(_))));
        assert!(matches!(parse("a.b.c.d.e"), Err(OidcError::Malformed(m)) if m.contains("JWE")));
        assert!(matches!(parse("!.b.c"), Err(OidcError::Malformed(_))));
        let no_alg = b64(&json!({"kid": "k"}));
        assert!(matches!(parse(&format!("{no_alg}.e30.c2ln")), Err(OidcError::Malformed(m)) if m.contains("no alg")));
        let bad_kid = b64(&json!({"alg": "RS256", "kid": 7}));
        assert!(matches!(
            parse(&format!("{bad_kid}.e30.c2ln")),
            Err(OidcError::Malformed(_))
        ));
        let crit = b64(&json!({"alg": "RS256", "crit": ["b64"], "b64": false}));
        assert_eq!(parse(&format!("{crit}.e30.c2ln")).unwrap_err(), OidcError::Crit);
    }
}
