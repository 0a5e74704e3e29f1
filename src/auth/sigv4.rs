//! AWS Signature Version 4 verification, for admin calls that AWS SDKs and
//! the AWS CLI sign with an admin access key (issue #13).
//!
//! This module is pure: it receives the request as the HTTP front saw it
//! (method, encoded path, raw query, headers, body), the services it
//! answers for, the current time and a lookup from access key id to secret,
//! and either names the key that signed the request or says why not with
//! AWS's exception names. It reads no clock, no store and no network, so
//! every refusal is tested with a fixed `now`.
//!
//! It follows AWS's published algorithm:
//!
//! 1. The canonical request: method, the normalized and URI-encoded path,
//!    the sorted and encoded query, the signed headers (lowercase names,
//!    trimmed values with inner runs of spaces collapsed), the signed
//!    header list, and the hex SHA-256 of the body.
//! 2. The string to sign: `AWS4-HMAC-SHA256`, `x-amz-date`, the credential
//!    scope `yyyymmdd/region/service/aws4_request` and the hex SHA-256 of
//!    the canonical request.
//! 3. The signing key `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region),
//!    service), "aws4_request")`, and the signature, compared in constant
//!    time with the one presented.
//!
//! The signature also binds the time: `x-amz-date` must be signed, within
//! five minutes of `now`, and on the scope's date, so a captured request
//! replays only within that window.
//!
//! Nothing here logs, and no error message carries the secret or the
//! expected signature.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The only signing algorithm of SigV4 with HMAC.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Largest `Authorization` header accepted, in bytes; a real one is a few
/// hundred.
pub const MAX_AUTHORIZATION_BYTES: usize = 2048;
/// Most signed headers accepted; each costs a scan of the request headers.
pub const MAX_SIGNED_HEADERS: usize = 64;
/// How far `x-amz-date` may be from `now`, either way (AWS: 5 minutes).
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

/// AWS's wording for a signature that does not match.
const MISMATCH: &str = "The request signature we calculated does not match the signature you provided. \
Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// A request as the HTTP front received it.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path as sent on the wire (still percent-encoded), without the query.
    pub path: &'a str,
    /// The raw query string after `?`, empty when there is none.
    pub query: &'a str,
    /// Every header as `(name, value)`, in any case, repeated names allowed.
    pub headers: &'a [(String, String)],
    /// The body bytes.
    pub body: &'a [u8],
}

/// Who signed a request that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id of the signing key.
    pub access_key_id: String,
    /// The region of the credential scope (the caller decides whether it
    /// must be its own).
    pub region: String,
    /// The service of the credential scope, one of those expected.
    pub service: String,
}

/// Why a request is refused; [`exception`](Self::exception) names AWS's
/// exception for it. Messages never carry secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// No `Authorization` header: the request is not signed at all.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,
    /// The access key id names no key.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient,
    /// The signature, its scope, its date or the header itself is wrong;
    /// the message says which (AWS's wording where AWS has one).
    #[error("{0}")]
    InvalidSignature(String),
    /// The key lookup itself failed (storage, no sealing key): not the
    /// caller's fault, and not a refusal of its credentials.
    #[error("{0}")]
    Internal(String),
}

impl SigV4Error {
    /// AWS's exception name, for the `__type` of a JSON error.
    pub fn exception(&self) -> &'static str {
        match self {
            SigV4Error::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            SigV4Error::UnrecognizedClient => "UnrecognizedClientException",
            SigV4Error::InvalidSignature(_) => "InvalidSignatureException",
            SigV4Error::Internal(_) => "InternalFailure",
        }
    }

    /// The HTTP status AWS's JSON services answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            SigV4Error::Internal(_) => 500,
            _ => 400,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        SigV4Error::InvalidSignature(message.into())
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The access key id of `Credential`.
    pub access_key_id: String,
    /// `yyyymmdd` of the credential scope.
    pub date: String,
    /// The region of the credential scope.
    pub region: String,
    /// The service of the credential scope.
    pub service: String,
    /// Lowercase names of the signed headers, in the order given.
    pub signed_headers: Vec<String>,
    /// The 64 lowercase hex characters of the signature.
    pub signature: String,
}

impl Authorization {
    /// Parses a header value; every malformation is an
    /// `InvalidSignatureException`, as the caller cannot have signed it.
    pub fn parse(value: &str) -> Result<Self, SigV4Error> {
        if value.len() > MAX_AUTHORIZATION_BYTES {
            return Err(SigV4Error::invalid(format!(
                "Authorization header is longer than {MAX_AUTHORIZATION_BYTES} bytes."
            )));
        }
        let value = value.trim();
        let rest = value
            .strip_prefix(ALGORITHM)
            .filter(|r| r.starts_with(' '))
            .ok_or_else(|| SigV4Error::invalid(format!("Authorization header must use {ALGORITHM}.")))?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (name, v) = part.trim().split_once('=').ok_or_else(|| {
                SigV4Error::invalid(format!(
                    "Authorization header component is malformed: '{}'.",
                    part.trim()
                ))
            })?;
            let slot = match name {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                other => {
                    return Err(SigV4Error::invalid(format!(
                        "Authorization header has an unknown component '{other}'."
                    )))
                }
            };
            if slot.replace(v).is_some() {
                return Err(SigV4Error::invalid(format!("Authorization header repeats '{name}'.")));
            }
        }
        let missing = |what: &str| SigV4Error::invalid(format!("Authorization header requires '{what}' parameter."));
        let credential = credential.ok_or_else(|| missing("Credential"))?;
        let signed = signed.ok_or_else(|| missing("SignedHeaders"))?;
        let signature = signature.ok_or_else(|| missing("Signature"))?;

        let parts: Vec<&str> = credential.split('/').collect();
        let [key, date, region, service, terminator] = parts[..] else {
            return Err(SigV4Error::invalid(
                "Credential must have the form ACCESS_KEY_ID/yyyymmdd/region/service/aws4_request.",
            ));
        };
        if terminator != "aws4_request" {
            return Err(SigV4Error::invalid(
                "Credential should be scoped with a valid terminator: 'aws4_request'.",
            ));
        }
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(SigV4Error::invalid("Credential has a malformed access key id."));
        }
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SigV4Error::invalid(
                "Credential should be scoped to a valid date (yyyymmdd).",
            ));
        }
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !token(region) {
            return Err(SigV4Error::invalid("Credential should be scoped to a valid region."));
        }
        if !token(service) {
            return Err(SigV4Error::invalid("Credential should be scoped to a valid service."));
        }

        let signed_headers: Vec<String> = signed.split(';').map(str::to_string).collect();
        if signed_headers.len() > MAX_SIGNED_HEADERS {
            return Err(SigV4Error::invalid(format!(
                "SignedHeaders lists more than {MAX_SIGNED_HEADERS} headers."
            )));
        }
        if signed_headers
            .iter()
            .any(|h| h.is_empty() || h.bytes().any(|b| !is_header_name_byte(b) || b.is_ascii_uppercase()))
        {
            return Err(SigV4Error::invalid(
                "SignedHeaders must be lowercase header names separated by ';'.",
            ));
        }
        if !signed_headers.windows(2).all(|w| w[0] < w[1]) {
            return Err(SigV4Error::invalid("SignedHeaders must be sorted and without repeats."));
        }
        for required in ["host", "x-amz-date"] {
            if !signed_headers.iter().any(|h| h == required) {
                return Err(SigV4Error::invalid(format!(
                    "'{required}' must be a 'SignedHeader' in the AWS Authorization."
                )));
            }
        }
        if signature.len() != 64
            || !signature
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(SigV4Error::invalid(
                "Signature must be 64 lowercase hexadecimal characters.",
            ));
        }
        Ok(Authorization {
            access_key_id: key.to_string(),
            date: date.to_string(),
            region: region.to_string(),
            service: service.to_string(),
            signed_headers,
            signature: signature.to_string(),
        })
    }

    /// `yyyymmdd/region/service/aws4_request`.
    pub fn scope(&self) -> String {
        format!("{}/{}/{}/aws4_request", self.date, self.region, self.service)
    }
}

fn is_header_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks the signature of `req` for one of `services`, at `now_ms` (unix
/// ms). `lookup` gives the secret of an access key id, `None` for an
/// unknown one, or `Err` when it cannot tell (reported as `Internal`).
///
/// The cheap checks (shape, scope, date) run before `lookup`, so an
/// unsigned or stale request costs no store read.
pub fn verify(
    req: &SignedRequest<'_>,
    services: &[&str],
    now_ms: i64,
    lookup: impl FnOnce(&str) -> Result<Option<String>, String>,
) -> Result<Verified, SigV4Error> {
    let (auth, amz_date) = check_head(req.headers, services, now_ms)?;
    let payload_hash = payload_hash(req)?;
    let canonical = canonical_request(req, &auth.signed_headers, &payload_hash)?;
    let to_sign = string_to_sign(amz_date, &auth.scope(), &canonical);

    let secret = lookup(&auth.access_key_id)
        .map_err(SigV4Error::Internal)?
        .ok_or(SigV4Error::UnrecognizedClient)?;
    let key = signing_key(&secret, &auth.date, &auth.region, &auth.service);
    let expected = hex::encode(hmac(&key, to_sign.as_bytes()));
    if !bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
        return Err(SigV4Error::invalid(MISMATCH));
    }
    Ok(Verified {
        access_key_id: auth.access_key_id,
        region: auth.region,
        service: auth.service,
    })
}

/// The checks of [`verify`] that need only the headers: one well-formed
/// `Authorization` for one of `services`, and an `X-Amz-Date` that matches
/// its scope and is within the allowed skew of `now_ms`. A front runs them
/// before it reads a body, so that a request which cannot be signed is
/// refused without the node buffering (or waiting for) what it announced.
/// Returns the parsed header and the `X-Amz-Date` value.
pub fn check_head<'a>(
    headers: &'a [(String, String)],
    services: &[&str],
    now_ms: i64,
) -> Result<(Authorization, &'a str), SigV4Error> {
    let mut auths = headers_named(headers, "authorization");
    let auth = auths.next().ok_or(SigV4Error::MissingAuthenticationToken)?;
    if auths.next().is_some() {
        return Err(SigV4Error::invalid("Only one Authorization header is allowed."));
    }
    let auth = Authorization::parse(auth)?;
    if !services.contains(&auth.service.as_str()) {
        let expected = services.first().copied().unwrap_or_default();
        return Err(SigV4Error::invalid(format!(
            "Credential should be scoped to correct service: '{expected}'."
        )));
    }
    let amz_date = single_header(headers, "x-amz-date")?
        .ok_or_else(|| SigV4Error::invalid("The request must contain the 'X-Amz-Date' header."))?;
    let signed_at = parse_amz_date(amz_date)
        .ok_or_else(|| SigV4Error::invalid(format!("X-Amz-Date '{amz_date}' is not in the form yyyymmddThhmmssZ.")))?;
    if amz_date.get(..8) != Some(auth.date.as_str()) {
        return Err(SigV4Error::invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{amz_date}'.",
            auth.date,
            amz_date.get(..8).unwrap_or_default(),
        )));
    }
    check_skew(amz_date, signed_at, now_ms)?;
    Ok((auth, amz_date))
}

/// Refuses a date more than [`MAX_SKEW_MS`] from `now_ms`, in AWS's words.
fn check_skew(amz_date: &str, signed_at_ms: i64, now_ms: i64) -> Result<(), SigV4Error> {
    if signed_at_ms < now_ms.saturating_sub(MAX_SKEW_MS) {
        return Err(SigV4Error::invalid(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
            format_amz_date(now_ms.saturating_sub(MAX_SKEW_MS)),
            format_amz_date(now_ms),
        )));
    }
    if signed_at_ms > now_ms.saturating_add(MAX_SKEW_MS) {
        return Err(SigV4Error::invalid(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
            format_amz_date(now_ms.saturating_add(MAX_SKEW_MS)),
            format_amz_date(now_ms),
        )));
    }
    Ok(())
}

/// Values of every header called `name` (ASCII case-insensitive).
fn headers_named<'a>(headers: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The one value of `name`, `None` when absent; a repeated header is refused.
fn single_header<'a>(headers: &'a [(String, String)], name: &'a str) -> Result<Option<&'a str>, SigV4Error> {
    let mut values = headers_named(headers, name);
    let first = values.next();
    if values.next().is_some() {
        return Err(SigV4Error::invalid(format!("Only one '{name}' header is allowed.")));
    }
    Ok(first.map(str::trim))
}

/// The hex SHA-256 of the body. A client may state it in
/// `x-amz-content-sha256`; it must then be the body's, since the signature
/// covers that header and not the body itself. `UNSIGNED-PAYLOAD` (an S3
/// feature) is refused: an admin call's body must be signed.
fn payload_hash(req: &SignedRequest<'_>) -> Result<String, SigV4Error> {
    let actual = hex::encode(Sha256::digest(req.body));
    match single_header(req.headers, "x-amz-content-sha256")? {
        None => Ok(actual),
        Some("UNSIGNED-PAYLOAD") => Err(SigV4Error::invalid("UNSIGNED-PAYLOAD is not accepted: sign the body.")),
        Some(stated) if stated.eq_ignore_ascii_case(&actual) => Ok(actual),
        Some(_) => Err(SigV4Error::invalid(
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )),
    }
}

/// AWS's canonical request of `req` for `signed_headers`.
pub fn canonical_request(
    req: &SignedRequest<'_>,
    signed_headers: &[String],
    payload_hash: &str,
) -> Result<String, SigV4Error> {
    let mut out = String::with_capacity(256 + req.query.len());
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_path(req.path));
    out.push('\n');
    out.push_str(&canonical_query(req.query));
    out.push('\n');
    for name in signed_headers {
        let values: Vec<String> = headers_named(req.headers, name).map(canonical_value).collect();
        if values.is_empty() {
            return Err(SigV4Error::invalid(format!(
                "The request lacks the signed header '{name}'."
            )));
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    Ok(out)
}

/// A header value trimmed, with runs of spaces collapsed to one.
fn canonical_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The path with `.`, `..` and empty segments removed (a trailing slash
/// kept), then URI-encoded as a whole. The path arrives encoded already, so
/// escapes are encoded a second time, as AWS does for every service but S3.
fn canonical_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut normalized = format!("/{}", segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalized.push('/');
    }
    uri_encode(normalized.as_bytes(), false)
}

/// The query's parameters decoded, re-encoded AWS's way and sorted by name,
/// then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), true),
                uri_encode(&percent_decode(v), true),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// AWS's URI encoding: every byte but `A-Z a-z 0-9 - _ . ~` becomes
/// `%XX` (uppercase hex); `/` too when `encode_slash`.
fn uri_encode(bytes: &[u8], encode_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (b == b'/' && !encode_slash) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; a malformed escape stays as it is.
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// `AWS4-HMAC-SHA256 \n date \n scope \n hex(SHA-256(canonical request))`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The signing key of `secret` for one day, region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}

/// Unix ms of `yyyymmddThhmmssZ`, or `None` if it is not one.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    Some(((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60_000 + se * 1000)
}

/// `yyyymmddThhmmssZ` of unix ms `ms` (rounded down to the second).
pub fn format_amz_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (eras of 400 years,
/// years starting in March so the leap day is last).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const VANILLA_SIG: &str = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

    fn now() -> i64 {
        parse_amz_date("20150830T123600Z").unwrap()
    }

    fn vanilla_headers(auth: Option<String>) -> Vec<(String, String)> {
        let mut h = vec![
            ("Host".to_string(), "example.amazonaws.com".to_string()),
            ("X-Amz-Date".to_string(), "20150830T123600Z".to_string()),
        ];
        if let Some(a) = auth {
            h.push(("Authorization".to_string(), a));
        }
        h
    }

    fn vanilla_auth(service: &str, sig: &str) -> String {
        format!("AWS4-HMAC-SHA256 Credential={AKID}/20150830/us-east-1/{service}/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}")
    }

    fn lookup(id: &str) -> Result<Option<String>, String> {
        Ok((id == AKID).then(|| SECRET.to_string()))
    }

    fn run(headers: &[(String, String)], now_ms: i64) -> Result<Verified, SigV4Error> {
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            headers,
            body: b"",
        };
        verify(&req, &["service"], now_ms, lookup)
    }

    /// AWS's SigV4 test suite, `get-vanilla`: the canonical request, the
    /// string to sign and the signature all match the published ones.
    #[test]
    fn get_vanilla_matches_the_aws_test_suite() {
        let headers = vanilla_headers(None);
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: &headers,
            body: b"",
        };
        let signed = vec!["host".to_string(), "x-amz-date".to_string()];
        let empty = hex::encode(Sha256::digest(b""));
        let canonical = canonical_request(&req, &signed, &empty).unwrap();
        assert_eq!(
            canonical,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let sts = string_to_sign(
            "20150830T123600Z",
            "20150830/us-east-1/service/aws4_request",
            &canonical,
        );
        assert_eq!(
            sts,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        let key = signing_key(SECRET, "20150830", "us-east-1", "service");
        assert_eq!(hex::encode(hmac(&key, sts.as_bytes())), VANILLA_SIG);

        let verified = run(&vanilla_headers(Some(vanilla_auth("service", VANILLA_SIG))), now()).unwrap();
        assert_eq!(
            verified,
            Verified {
                access_key_id: AKID.into(),
                region: "us-east-1".into(),
                service: "service".into(),
            }
        );
    }

    #[test]
    fn the_date_may_be_off_by_five_minutes_either_way() {
        let h = vanilla_headers(Some(vanilla_auth("service", VANILLA_SIG)));
        assert!(run(&h, now() + MAX_SKEW_MS).is_ok());
        assert!(run(&h, now() - MAX_SKEW_MS).is_ok());
        let err = run(&h, now() + MAX_SKEW_MS + 1000).unwrap_err();
        assert_eq!(err.exception(), "InvalidSignatureException");
        assert_eq!(
            err.to_string(),
            "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z (20150830T124101Z - 5 min.)"
        );
        let err = run(&h, now() - MAX_SKEW_MS - 1000).unwrap_err();
        assert!(err.to_string().starts_with("Signature not yet current"), "{err}");
    }

    #[test]
    fn each_refusal_has_its_aws_exception() {
        let exception = |h: Vec<(String, String)>| run(&h, now()).unwrap_err().exception();
        assert_eq!(exception(vanilla_headers(None)), "MissingAuthenticationTokenException");
        let other_key = vanilla_auth("service", VANILLA_SIG).replace(AKID, "AKIDOTHER");
        assert_eq!(
            exception(vanilla_headers(Some(other_key))),
            "UnrecognizedClientException"
        );
        let bad_sig = VANILLA_SIG.replace('5', "6");
        assert_eq!(
            exception(vanilla_headers(Some(vanilla_auth("service", &bad_sig)))),
            "InvalidSignatureException"
        );
        let wrong_service = run(&vanilla_headers(Some(vanilla_auth("s3", VANILLA_SIG))), now()).unwrap_err();
        assert_eq!(
            wrong_service.to_string(),
            "Credential should be scoped to correct service: 'service'."
        );

        // A changed signed header breaks the signature.
        let mut h = vanilla_headers(Some(vanilla_auth("service", VANILLA_SIG)));
        h[0].1 = "evil.example.com".into();
        assert_eq!(
            run(&h, now()).unwrap_err(),
            SigV4Error::InvalidSignature(MISMATCH.into())
        );

        // The scope's date must be x-amz-date's.
        let h = vanilla_headers(Some(
            vanilla_auth("service", VANILLA_SIG).replace("/20150830/", "/20150831/"),
        ));
        assert!(run(&h, now())
            .unwrap_err()
            .to_string()
            .starts_with("Date in Credential scope"));

        // Malformed headers.
        for bad in [
            "AWS4-HMAC-SHA1 Credential=a/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=00".to_string(),
            vanilla_auth("service", VANILLA_SIG).replace("SignedHeaders=host;x-amz-date", "SignedHeaders=x-amz-date"),
            vanilla_auth("service", VANILLA_SIG).replace("SignedHeaders=host;x-amz-date", "SignedHeaders=host"),
            vanilla_auth("service", VANILLA_SIG).replace("SignedHeaders=host;x-amz-date", "SignedHeaders=x-amz-date;host"),
            vanilla_auth("service", VANILLA_SIG).replace("aws4_request", "aws5_request"),
            vanilla_auth("service", &VANILLA_SIG[..63]),
            vanilla_auth("service", VANILLA_SIG).replace(", Signature", ", Signature=x, Signature"),
            format!("{} {}", vanilla_auth("service", VANILLA_SIG), "x".repeat(MAX_AUTHORIZATION_BYTES)),
        ] {
            assert_eq!(exception(vanilla_headers(Some(bad.clone()))), "InvalidSignatureException", "{bad}");
        }
        let many: Vec<String> = (0..=MAX_SIGNED_HEADERS).map(|i| format!("h{i:03}")).collect();
        let too_many = vanilla_auth("service", VANILLA_SIG).replace("host;x-amz-date", &many.join(";"));
        assert!(Authorization::parse(&too_many).is_err());

        // A signed header the request lacks, and a lookup that fails.
        let with_extra = vanilla_auth("service", VANILLA_SIG).replace("host;x-amz-date", "host;x-amz-date;x-extra");
        assert!(run(&vanilla_headers(Some(with_extra)), now())
            .unwrap_err()
            .to_string()
            .contains("x-extra"));
        let h = vanilla_headers(Some(vanilla_auth("service", VANILLA_SIG)));
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: &h,
            body: b"",
        };
        let failed = verify(&req, &["service"], now(), |_| Err("store down".into())).unwrap_err();
        assert_eq!(failed.exception(), "InternalFailure");
    }

    #[test]
    fn a_stated_payload_hash_must_be_the_bodys() {
        let mut h = vanilla_headers(Some(vanilla_auth("service", VANILLA_SIG)));
        h.push(("x-amz-content-sha256".into(), "UNSIGNED-PAYLOAD".into()));
        assert_eq!(run(&h, now()).unwrap_err().exception(), "InvalidSignatureException");
        h.pop();
        h.push(("x-amz-content-sha256".into(), hex::encode(Sha256::digest(b"other"))));
        assert!(run(&h, now()).unwrap_err().to_string().contains("x-amz-content-sha256"));
        h.pop();
        // The body's own hash is accepted (it is unsigned here, so the
        // signature still matches).
        h.push(("x-amz-content-sha256".into(), hex::encode(Sha256::digest(b""))));
        assert!(run(&h, now()).is_ok());
    }

    #[test]
    fn paths_queries_and_values_are_canonicalized_as_aws_does() {
        assert_eq!(canonical_path("/"), "/");
        assert_eq!(canonical_path(""), "/");
        assert_eq!(canonical_path("//example//"), "/example/");
        assert_eq!(canonical_path("/example/.."), "/");
        assert_eq!(canonical_path("/./a/../b/c"), "/b/c");
        assert_eq!(canonical_path("/a%20b"), "/a%2520b");
        assert_eq!(canonical_path("/-_.~"), "/-_.~");
        assert_eq!(
            canonical_query("Param2=value2&Param1=value1"),
            "Param1=value1&Param2=value2"
        );
        assert_eq!(
            canonical_query("Param1=value2&Param1=Value1"),
            "Param1=Value1&Param1=value2"
        );
        assert_eq!(canonical_query("a=%2b&b=*&c"), "a=%2B&b=%2A&c=");
        assert_eq!(canonical_query("p=a/b c"), "p=a%2Fb%20c");
        assert_eq!(canonical_value("  a   b \t c  "), "a b c");
    }

    #[test]
    fn amz_dates_round_trip() {
        for s in [
            "19700101T000000Z",
            "20000229T235959Z",
            "20150830T123600Z",
            "21000301T010203Z",
        ] {
            assert_eq!(format_amz_date(parse_amz_date(s).unwrap()), s);
        }
        assert_eq!(parse_amz_date("19700101T000001Z"), Some(1000));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160_000));
        for bad in [
            "20150230T000000Z",
            "20151330T000000Z",
            "20150830T246000Z",
            "2015-08-30T12:36:00Z",
            "20150830T123600",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }
}
