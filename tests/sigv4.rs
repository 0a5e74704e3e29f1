//! Tessera's SigV4 verifier against requests signed by botocore, the
//! signer of the AWS CLI and boto3 (`tests/python/sigv4_sign.py`), so the
//! verifier is checked against AWS's own implementation and not only
//! against itself.
//!
//! `make test` sets `TESSERA_PYTHON` to the venv's interpreter; without it
//! the test uses `python3`, which must have botocore installed.
//!
//! Run with: `cargo test --test sigv4`

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use tessera::auth::sigv4::{parse_amz_date, verify, SigV4Error, SignedRequest, Verified, MAX_SKEW_MS};

const KEY_ID: &str = "AKIATESSERATEST00001";
const SECRET: &str = "tEsT/sEcReT+kEy0123456789abcdefghijklmnop";
const SERVICES: &[&str] = &["cognito-idp", "cognito-identity", "cognito-sync"];

fn python() -> String {
    std::env::var("TESSERA_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A request botocore signed: method, path, query, headers, body.
struct Signed {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Signed {
    fn request(&self) -> SignedRequest<'_> {
        SignedRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            body: &self.body,
        }
    }

    /// The unix ms of its `X-Amz-Date`: the time botocore signed at.
    fn signed_at(&self) -> Result<i64> {
        let date = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("x-amz-date"))
            .context("botocore set no X-Amz-Date")?;
        parse_amz_date(&date.1).context("botocore's X-Amz-Date does not parse")
    }

    fn verify(&self, secret: &str, services: &[&str], now_ms: i64) -> Result<Verified, SigV4Error> {
        verify(&self.request(), services, now_ms, |id| {
            Ok((id == KEY_ID).then(|| secret.to_string()))
        })
    }
}

fn botocore_sign(service: &str) -> Result<Signed> {
    botocore_sign_request(service, &[])
}

/// Signs with botocore; `method_url` is empty (the ListUserPools POST) or
/// a method and a URL.
fn botocore_sign_request(service: &str, method_url: &[&str]) -> Result<Signed> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sigv4_sign.py");
    let out = std::process::Command::new(python())
        .args([script, KEY_ID, SECRET, service, "us-east-1"])
        .args(method_url)
        .output()
        .with_context(|| format!("running {} (set TESSERA_PYTHON to a python with botocore)", python()))?;
    ensure!(
        out.status.success(),
        "sigv4_sign.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).context("sigv4_sign.py printed no JSON")?;
    let url = v["url"].as_str().context("url")?;
    let after_host = url.splitn(4, '/').nth(3).unwrap_or_default();
    let (path, query) = match after_host.split_once('?') {
        Some((p, q)) => (format!("/{p}"), q.to_string()),
        None => (format!("/{after_host}"), String::new()),
    };
    let headers = v["headers"]
        .as_array()
        .context("headers")?
        .iter()
        .map(|h| {
            Ok((
                h[0].as_str().context("header name")?.to_string(),
                h[1].as_str().context("header value")?.to_string(),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Signed {
        method: v["method"].as_str().context("method")?.to_string(),
        path,
        query,
        headers,
        body: v["body"].as_str().context("body")?.as_bytes().to_vec(),
    })
}

#[test]
fn botocore_signed_requests_verify_with_the_right_secret_only() -> Result<()> {
    let signed = botocore_sign("cognito-idp")?;
    let now = signed.signed_at()?;
    assert_eq!(signed.path, "/");

    let ok = signed
        .verify(SECRET, SERVICES, now)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(ok.access_key_id, KEY_ID);
    assert_eq!(ok.service, "cognito-idp");
    assert_eq!(ok.region, "us-east-1");
    // A few seconds later is still fine.
    assert!(signed.verify(SECRET, SERVICES, now + 30_000).is_ok());

    // The wrong secret.
    let err = signed
        .verify("another-secret-of-40-characters-xxxxxxxxx", SERVICES, now)
        .unwrap_err();
    assert_eq!(err.exception(), "InvalidSignatureException");

    // A service this endpoint does not answer for.
    let err = signed.verify(SECRET, &["cognito-sync"], now).unwrap_err();
    assert_eq!(err.exception(), "InvalidSignatureException");
    assert!(err.to_string().contains("correct service"), "{err}");

    // A changed body.
    let mut changed = botocore_sign("cognito-idp")?;
    changed.body = br#"{"MaxResults": 60}"#.to_vec();
    let err = changed.verify(SECRET, SERVICES, changed.signed_at()?).unwrap_err();
    assert_eq!(err.exception(), "InvalidSignatureException");

    // A stale `now`: the signature expired.
    let err = signed.verify(SECRET, SERVICES, now + MAX_SKEW_MS + 60_000).unwrap_err();
    assert_eq!(err.exception(), "InvalidSignatureException");
    assert!(err.to_string().starts_with("Signature expired"), "{err}");

    // An unknown key, and no signature at all.
    let mut unknown = botocore_sign("cognito-idp")?;
    let err = verify(&unknown.request(), SERVICES, now, |_| Ok(None)).unwrap_err();
    assert_eq!(err.exception(), "UnrecognizedClientException");
    unknown
        .headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
    let err = unknown.verify(SECRET, SERVICES, now).unwrap_err();
    assert_eq!(err.exception(), "MissingAuthenticationTokenException");
    Ok(())
}

#[test]
fn botocore_signs_for_the_identity_services_too() -> Result<()> {
    for service in ["cognito-identity", "cognito-sync"] {
        let signed = botocore_sign(service)?;
        let ok = signed
            .verify(SECRET, SERVICES, signed.signed_at()?)
            .map_err(|e| anyhow::anyhow!("{service}: {e}"))?;
        assert_eq!(ok.service, service);
    }
    Ok(())
}

/// Paths and queries that need canonicalizing (dot segments, double
/// slashes, escapes, unsorted and repeated parameters) verify as botocore
/// signed them.
#[test]
fn botocore_paths_and_queries_canonicalize_alike() -> Result<()> {
    for url in [
        "http://127.0.0.1:7700/a//b/../c%20d/?b=2&a=1&c=x%20y&a=0&e=%2A~",
        "http://127.0.0.1:7700/?Param2=value2&Param1=value1",
        "http://127.0.0.1:7700/-_.~/x?flag&k=v%2Fw",
    ] {
        let signed = botocore_sign_request("cognito-idp", &["GET", url])?;
        assert!(!signed.query.is_empty() || !url.contains('?'));
        signed
            .verify(SECRET, SERVICES, signed.signed_at()?)
            .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    }
    Ok(())
}
