//! The Cognito JSON front (`POST /`, `X-Amz-Target`) at the protocol level,
//! over raw HTTP/1.1 on a real node: what the SDKs never send on purpose
//! (malformed bodies, unknown actions, oversized requests, forged and
//! missing signatures) and the protocol's envelope (request ids, error
//! shapes, timestamps). The SDK-level suite is `tests/cognito_boto3.rs`.
//!
//! Signed requests here are signed with Tessera's own SigV4 functions;
//! botocore's signer is checked against the verifier in `tests/sigv4.rs`
//! and end to end by the boto3 suite.
//!
//! Run with: `cargo test --test cognito_json`

// Tests read the wall clock (to sign) freely; the ban is for the state machine.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tessera::auth::sigv4::{canonical_request, format_amz_date, signing_key, string_to_sign, SignedRequest};
use tessera::proto::CreateAdminAccessKeyRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::TestCluster;

const IDP: &str = "AWSCognitoIdentityProviderService";
const KEY_ID: &str = "AKIAJSONFRONTTEST001";
const SECRET: &str = "json/Front+Secret-0123456789abcdefghijkl";

/// An answer of the front.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `__type` of an error answer.
    fn error_type(&self) -> &str {
        self.body["__type"].as_str().unwrap_or_default()
    }

    fn expect_ok(self, what: &str) -> Result<Value> {
        ensure!(
            self.status == 200,
            "{what}: expected 200, got {} {}",
            self.status,
            self.body
        );
        Ok(self.body)
    }

    fn expect_error(&self, what: &str, status: u16, exception: &str) -> Result<()> {
        ensure!(
            self.status == status && self.error_type() == exception,
            "{what}: expected {status} {exception}, got {} {}",
            self.status,
            self.body
        );
        ensure!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: the error has no message: {}",
            self.body
        );
        Ok(())
    }
}

/// `POST /` with `headers` and `body` on `addr`, HTTP/1.1 with
/// `Connection: close`, 10 s overall.
async fn post(addr: &str, headers: &[(String, String)], body: &[u8]) -> Result<Answer> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let mut head = format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        // A server that refuses early may close before the whole body is
        // written; its answer is still there to read.
        let _ = stream.write_all(body).await;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| anyhow!("POST http://{addr}/ timed out"))??;
    parse(&raw)
}

fn parse(raw: &[u8]) -> Result<Answer> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {} bytes", raw.len()))?;
    let head = std::str::from_utf8(&raw[..split])?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body)?;
    }
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).with_context(|| format!("body {:?}", String::from_utf8_lossy(&body)))?
    };
    Ok(Answer { status, headers, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n").context("chunk size")?;
        let size = usize::from_str_radix(std::str::from_utf8(&data[..eol])?.trim(), 16)?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn json_headers(target: &str) -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), "application/x-amz-json-1.1".into()),
        ("X-Amz-Target".into(), target.into()),
    ]
}

/// An unsigned call of `action` of the user-pool API.
async fn public(addr: &str, action: &str, body: Value) -> Result<Answer> {
    post(
        addr,
        &json_headers(&format!("{IDP}.{action}")),
        body.to_string().as_bytes(),
    )
    .await
}

/// How to sign a request.
struct Signer<'a> {
    key_id: &'a str,
    secret: &'a str,
    region: &'a str,
    service: &'a str,
    /// Unix ms the signature claims.
    at_ms: i64,
}

impl Signer<'_> {
    fn good() -> Signer<'static> {
        Signer {
            key_id: KEY_ID,
            secret: SECRET,
            region: "local",
            service: "cognito-idp",
            at_ms: now_ms(),
        }
    }

    /// The headers of `target` with `body`, signed.
    fn sign(&self, addr: &str, target: &str, body: &[u8]) -> Vec<(String, String)> {
        let amz_date = format_amz_date(self.at_ms);
        let mut headers = json_headers(target);
        headers.push(("Host".into(), addr.into()));
        headers.push(("X-Amz-Date".into(), amz_date.clone()));
        let names: Vec<String> = {
            let mut n: Vec<String> = headers.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
            n.sort();
            n
        };
        let lower: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        let req = SignedRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: &lower,
            body,
        };
        let canonical = canonical_request(&req, &names, &hex::encode(Sha256::digest(body))).expect("canonical request");
        let scope = format!("{}/{}/{}/aws4_request", &amz_date[..8], self.region, self.service);
        let to_sign = string_to_sign(&amz_date, &scope, &canonical);
        let key = signing_key(self.secret, &amz_date[..8], self.region, self.service);
        let signature = hmac_hex(&key, to_sign.as_bytes());
        // The front adds Host itself from the connection; drop ours so it
        // is sent once.
        headers.retain(|(k, _)| k != "Host");
        headers.push((
            "Authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
                self.key_id,
                names.join(";")
            ),
        ));
        headers
    }
}

fn hmac_hex(key: &[u8], data: &[u8]) -> String {
    // HMAC-SHA256 by hand (RFC 2104), so the test needs no hmac crate.
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&ipad).chain_update(data).finalize();
    hex::encode(Sha256::new().chain_update(&opad).chain_update(inner).finalize())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A signed call of `action` of the user-pool API.
async fn signed(addr: &str, signer: &Signer<'_>, action: &str, body: Value) -> Result<Answer> {
    signed_target(addr, signer, &format!("{IDP}.{action}"), body).await
}

/// A signed call of `target` (`<prefix>.<Action>`).
async fn signed_target(addr: &str, signer: &Signer<'_>, target: &str, body: Value) -> Result<Answer> {
    let body = body.to_string();
    let headers = signer.sign(addr, target, body.as_bytes());
    post(addr, &headers, body.as_bytes()).await
}

async fn cluster_with_key(n: u64) -> Result<TestCluster> {
    let c = TestCluster::start(n).await?;
    let client = c.client(1).await?;
    client
        .admin()
        .create_admin_access_key(client.req(CreateAdminAccessKeyRequest {
            access_key_id: KEY_ID.into(),
            secret_access_key: SECRET.into(),
            description: "JSON front test".into(),
        }))
        .await
        .map_err(|s| anyhow!("CreateAdminAccessKey: {s}"))?;
    Ok(c)
}

/// Waits until node `id` has applied the key (signed calls read it
/// locally).
async fn signed_ok(c: &TestCluster, id: u64, action: &str, body: Value) -> Result<Value> {
    let addr = c.node(id).api_addr.clone();
    common::poll_until(
        &format!("signed {action} on node {id}"),
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let (addr, body) = (addr.clone(), body.clone());
            async move {
                let a = signed(&addr, &Signer::good(), action, body).await?;
                Ok((a.status == 200).then_some(a.body))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_need_a_signature_by_an_admin_key() -> Result<()> {
    let c = cluster_with_key(1).await?;
    let addr = c.node(1).api_addr.clone();
    let body = json!({"PoolName": "json-front"});

    // Unsigned: refused before anything is read or written.
    let a = public(&addr, "CreateUserPool", body.clone()).await?;
    a.expect_error("unsigned CreateUserPool", 400, "MissingAuthenticationTokenException")?;
    // The gRPC admin token is not a credential of the JSON front.
    let mut headers = json_headers(&format!("{IDP}.CreateUserPool"));
    headers.push(("Authorization".into(), format!("Bearer {}", c.token)));
    let a = post(&addr, &headers, body.to_string().as_bytes()).await?;
    a.expect_error("admin bearer token on the JSON front", 400, "InvalidSignatureException")?;

    let now = now_ms();
    let cases = [
        (
            "unknown key",
            Signer {
                key_id: "AKIANOSUCHKEY0000001",
                ..Signer::good()
            },
            "UnrecognizedClientException",
        ),
        (
            "wrong secret",
            Signer {
                secret: "not-the-secret-0123456789",
                ..Signer::good()
            },
            "InvalidSignatureException",
        ),
        (
            "wrong service",
            Signer {
                service: "cognito-identity",
                ..Signer::good()
            },
            "InvalidSignatureException",
        ),
        (
            "wrong region",
            Signer {
                region: "us-east-1",
                ..Signer::good()
            },
            "InvalidSignatureException",
        ),
        (
            "stale date",
            Signer {
                at_ms: now - 6 * 60_000,
                ..Signer::good()
            },
            "InvalidSignatureException",
        ),
        (
            "future date",
            Signer {
                at_ms: now + 6 * 60_000,
                ..Signer::good()
            },
            "InvalidSignatureException",
        ),
    ];
    for (what, signer, exception) in &cases {
        let a = signed(&addr, signer, "CreateUserPool", body.clone()).await?;
        a.expect_error(what, 400, exception)?;
    }
    // A body changed after signing.
    let good = Signer::good();
    let headers = good.sign(&addr, &format!("{IDP}.CreateUserPool"), body.to_string().as_bytes());
    let a = post(&addr, &headers, json!({"PoolName": "tampered"}).to_string().as_bytes()).await?;
    a.expect_error("tampered body", 400, "InvalidSignatureException")?;

    // None of the refused calls created a pool.
    let pools = signed_ok(&c, 1, "ListUserPools", json!({"MaxResults": 60})).await?;
    ensure!(
        pools["UserPools"].as_array().is_some_and(|p| p.is_empty()),
        "a refused call created a pool: {pools}"
    );

    // Signed right: the pool exists, with Cognito's shape.
    let created = signed_ok(&c, 1, "CreateUserPool", body.clone()).await?;
    let id = created["UserPool"]["Id"]
        .as_str()
        .context("CreateUserPool returned no UserPool.Id")?;
    ensure!(id.starts_with("local_"), "pool id {id} is not region_XXXX");
    ensure!(
        created["UserPool"]["Arn"] == json!(format!("arn:aws:cognito-idp:local:000000000000:userpool/{id}")),
        "UserPool.Arn: {}",
        created["UserPool"]["Arn"]
    );
    let described = signed_ok(&c, 1, "DescribeUserPool", json!({"UserPoolId": id})).await?;
    let created_at = described["UserPool"]["CreationDate"]
        .as_f64()
        .context("CreationDate is not epoch seconds")?;
    ensure!(
        (created_at - now as f64 / 1000.0).abs() < 600.0,
        "CreationDate {created_at} is not epoch seconds near now"
    );

    // Tessera-only admin methods are not Cognito actions, signed or not.
    let a = signed(&addr, &Signer::good(), "ListOutboxMessages", json!({"UserPoolId": id})).await?;
    a.expect_error("Tessera-only method", 400, "UnknownOperationException")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_flows_answer_with_modelled_errors_and_request_ids() -> Result<()> {
    let c = cluster_with_key(1).await?;
    let addr = c.node(1).api_addr.clone();
    let pool = signed_ok(&c, 1, "CreateUserPool", json!({"PoolName": "json-public"})).await?;
    let pool_id = pool["UserPool"]["Id"].as_str().context("pool id")?.to_string();
    let client = signed_ok(
        &c,
        1,
        "CreateUserPoolClient",
        json!({"UserPoolId": pool_id, "ClientName": "app", "ExplicitAuthFlows": ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]}),
    )
    .await?;
    let client_id = client["UserPoolClient"]["ClientId"]
        .as_str()
        .context("client id")?
        .to_string();

    let sign_up = json!({
        "ClientId": client_id,
        "Username": "ann",
        "Password": "Correct-Horse-9",
        "UserAttributes": [{"Name": "email", "Value": "ann@example.com"}],
    });
    let a = public(&addr, "SignUp", sign_up.clone()).await?;
    let first_id = a.header("x-amzn-RequestId").map(str::to_string);
    let body = a.expect_ok("SignUp")?;
    ensure!(
        body["UserSub"].as_str().is_some_and(|s| !s.is_empty()),
        "SignUp: {body}"
    );
    ensure!(body["UserConfirmed"] == json!(false), "SignUp: {body}");

    let a = public(&addr, "SignUp", sign_up).await?;
    a.expect_error("second SignUp", 400, "UsernameExistsException")?;
    ensure!(
        !a.body["message"].as_str().unwrap_or_default().contains("Exception"),
        "the message is Cognito's text alone, without the exception name: {}",
        a.body
    );
    ensure!(
        first_id.is_some() && a.header("x-amzn-RequestId").map(str::to_string) != first_id,
        "every answer needs its own x-amzn-RequestId: {first_id:?} then {:?}",
        a.header("x-amzn-RequestId")
    );
    ensure!(
        a.header("x-amzn-ErrorType") == Some("UsernameExistsException"),
        "x-amzn-ErrorType: {:?}",
        a.header("x-amzn-ErrorType")
    );

    let auth = json!({
        "AuthFlow": "USER_PASSWORD_AUTH",
        "ClientId": client_id,
        "AuthParameters": {"USERNAME": "ann", "PASSWORD": "Correct-Horse-9"},
    });
    public(&addr, "InitiateAuth", auth.clone()).await?.expect_error(
        "unconfirmed sign-in",
        400,
        "UserNotConfirmedException",
    )?;
    signed_ok(
        &c,
        1,
        "AdminConfirmSignUp",
        json!({"UserPoolId": pool_id, "Username": "ann"}),
    )
    .await?;
    let tokens = public(&addr, "InitiateAuth", auth).await?.expect_ok("InitiateAuth")?;
    let access = tokens["AuthenticationResult"]["AccessToken"]
        .as_str()
        .context("no AccessToken")?;
    ensure!(
        tokens["AuthenticationResult"]["ExpiresIn"]
            .as_i64()
            .is_some_and(|s| s > 0)
            && tokens["AuthenticationResult"]["TokenType"] == "Bearer"
            && tokens.get("Session").is_none(),
        "InitiateAuth: {tokens}"
    );
    let user = public(&addr, "GetUser", json!({"AccessToken": access}))
        .await?
        .expect_ok("GetUser")?;
    ensure!(user["Username"] == "ann", "GetUser: {user}");
    ensure!(
        user["UserAttributes"].as_array().is_some_and(|a| a
            .iter()
            .any(|x| x["Name"] == "email" && x["Value"] == "ann@example.com")),
        "GetUser attributes: {user}"
    );
    public(
        &addr,
        "InitiateAuth",
        json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": client_id,
               "AuthParameters": {"USERNAME": "ann", "PASSWORD": "wrong-Password-1"}}),
    )
    .await?
    .expect_error("wrong password", 400, "NotAuthorizedException")?;
    public(&addr, "GetUser", json!({"AccessToken": "not.a.token"}))
        .await?
        .expect_error("forged token", 400, "NotAuthorizedException")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_named_errors_and_the_node_keeps_serving() -> Result<()> {
    let c = TestCluster::start(1).await?;
    let addr = c.node(1).api_addr.clone();

    let a = post(
        &addr,
        &[("Content-Type".into(), "application/x-amz-json-1.1".into())],
        b"{}",
    )
    .await?;
    a.expect_error("no X-Amz-Target", 400, "UnknownOperationException")?;
    let a = public(&addr, "CreateUserImportJob", json!({})).await?;
    a.expect_error("unimplemented action", 400, "UnknownOperationException")?;
    ensure!(
        a.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("CreateUserImportJob")),
        "the error must name the action: {}",
        a.body
    );
    let a = post(&addr, &json_headers("DynamoDB_20120810.ListTables"), b"{}").await?;
    a.expect_error("another service", 400, "UnknownOperationException")?;

    let mut wrong_type = json_headers(&format!("{IDP}.SignUp"));
    wrong_type[0].1 = "text/plain".into();
    post(&addr, &wrong_type, b"{}")
        .await?
        .expect_error("wrong Content-Type", 400, "SerializationException")?;
    post(&addr, &json_headers(&format!("{IDP}.SignUp")), b"{\"ClientId\": ")
        .await?
        .expect_error("truncated JSON", 400, "SerializationException")?;
    let a = public(&addr, "SignUp", json!({"ClientId": 7, "Username": "x"})).await?;
    a.expect_error("number for a string", 400, "SerializationException")?;
    ensure!(
        a.body["message"].as_str().is_some_and(|m| m.contains("ClientId")),
        "the error must name the member: {}",
        a.body
    );
    let a = public(
        &addr,
        "SignUp",
        json!({"ClientId": "c", "UserAttributes": [{"Name": ["email"]}]}),
    )
    .await?;
    ensure!(
        a.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("UserAttributes[0].Name")),
        "the error must name the nested member: {}",
        a.body
    );
    // Valid JSON, invalid values: the service's own validation answers.
    public(
        &addr,
        "SignUp",
        json!({"ClientId": "", "Username": "x", "Password": "y"}),
    )
    .await?
    .expect_error("empty ClientId", 400, "InvalidParameterException")?;

    // More than the bound: refused without being buffered whole.
    let big = vec![b' '; tessera::api::cognito::MAX_BODY_BYTES + 1024];
    let a = post(&addr, &json_headers(&format!("{IDP}.SignUp")), &big).await?;
    ensure!(a.status == 413, "oversized body: {} {}", a.status, a.body);

    // The node still answers, on both protocols.
    let a = public(
        &addr,
        "SignUp",
        json!({"ClientId": "nope", "Username": "x", "Password": "Passw0rd!x"}),
    )
    .await?;
    ensure!(
        a.status == 400 && !a.error_type().is_empty(),
        "after the bad requests: {} {}",
        a.status,
        a.body
    );
    c.client(1)
        .await?
        .describe_cluster()
        .await
        .map_err(|s| anyhow!("gRPC after the bad requests: {s}"))?;
    Ok(())
}

/// Sends only the head of a `POST /` that announces a body of
/// `claimed` bytes, never sends the body, and returns what the node
/// answers within `within` (an error if it answers nothing: it is still
/// waiting for the body).
async fn head_only(addr: &str, headers: &[(String, String)], claimed: usize, within: Duration) -> Result<Answer> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut head = format!("POST / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {claimed}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    // Read until the answer's head and its announced body are in; the
    // connection stays open on our side (the body never comes).
    let read = async {
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return anyhow::Ok(raw);
            }
            raw.extend_from_slice(&buf[..n]);
            if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if len.is_some_and(|len| raw.len() >= split + 4 + len) {
                    return anyhow::Ok(raw);
                }
            }
        }
    };
    let raw = tokio::time::timeout(within, read)
        .await
        .map_err(|_| anyhow!("no answer within {within:?}: the node waits for the body"))??;
    parse(&raw)
}

/// The attack: an unsigned admin call (or one signed in form only: an
/// unknown key, a malformed header) that announces a large body and
/// trickles none of it, to hold a connection and a body buffer on the
/// node. The front must refuse it from the headers alone, before it reads
/// (or waits for) a byte of the body. A public action, which does read
/// its body, is the control: it must still be waiting when asked the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_admin_call_is_refused_before_its_body_is_read() -> Result<()> {
    let c = TestCluster::start(1).await?;
    let addr = c.node(1).api_addr.clone();
    let claimed = tessera::api::cognito::MAX_BODY_BYTES / 2;

    let a = head_only(
        &addr,
        &json_headers(&format!("{IDP}.CreateUserPool")),
        claimed,
        Duration::from_secs(5),
    )
    .await?;
    a.expect_error(
        "unsigned CreateUserPool with a body never sent",
        400,
        "MissingAuthenticationTokenException",
    )?;

    // Signed in form only: a well-formed Authorization naming a key the
    // cluster does not have is refused from the headers as well.
    let amz_date = format_amz_date(now_ms());
    let mut forged = json_headers(&format!("{IDP}.CreateUserPool"));
    forged.push(("X-Amz-Date".into(), amz_date.clone()));
    forged.push((
        "Authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIANOSUCHKEY0000001/{}/local/cognito-idp/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}",
            &amz_date[..8],
            "0".repeat(64)
        ),
    ));
    let a = head_only(&addr, &forged, claimed, Duration::from_secs(5)).await?;
    a.expect_error(
        "an unknown key with a body never sent",
        400,
        "UnrecognizedClientException",
    )?;
    // And a malformed one.
    let mut garbage = json_headers(&format!("{IDP}.CreateUserPool"));
    garbage.push(("Authorization".into(), "let me in".into()));
    let a = head_only(&addr, &garbage, claimed, Duration::from_secs(5)).await?;
    a.expect_error(
        "a malformed Authorization with a body never sent",
        400,
        "InvalidSignatureException",
    )?;

    // The control: a public action reads its body first, so the same trick
    // gets no answer in the time the refusal above took at most.
    let waited = head_only(
        &addr,
        &json_headers(&format!("{IDP}.SignUp")),
        claimed,
        Duration::from_secs(2),
    )
    .await;
    ensure!(
        waited.is_err(),
        "SignUp answered before its body arrived, so this test cannot tell a refusal from the headers: {waited:?}"
    );

    // The node still serves.
    let a = public(&addr, "CreateUserPool", json!({"PoolName": "x"})).await?;
    a.expect_error(
        "unsigned CreateUserPool after the trick",
        400,
        "MissingAuthenticationTokenException",
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_region_names_ids_arns_and_signature_scopes() -> Result<()> {
    let mut c = cluster_with_key(1).await?;
    // Top-level keys go before the file's sections.
    let node = c.node_mut(1);
    node.stop(Duration::from_secs(10)).await?;
    let config = std::fs::read_to_string(&node.config_path)?;
    std::fs::write(
        &node.config_path,
        format!("region = \"eu-west-1\"\naccount_id = \"123456789012\"\n{config}"),
    )?;
    c.start_node(1).await?;
    c.wait_for_leader(None, Duration::from_secs(15)).await?;
    let addr = c.node(1).api_addr.clone();
    let eu = || Signer {
        region: "eu-west-1",
        ..Signer::good()
    };

    // The default region no longer fits the node's.
    let a = signed(&addr, &Signer::good(), "CreateUserPool", json!({"PoolName": "eu"})).await?;
    a.expect_error("signature scoped to local", 400, "InvalidSignatureException")?;

    let pool = common::poll_until(
        "signed CreateUserPool in eu-west-1",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let addr = addr.clone();
            async move {
                let a = signed(&addr, &eu(), "CreateUserPool", json!({"PoolName": "eu"})).await?;
                Ok((a.status == 200).then_some(a.body))
            }
        },
    )
    .await?;
    let id = pool["UserPool"]["Id"].as_str().context("pool id")?;
    ensure!(id.starts_with("eu-west-1_"), "pool id {id}");
    ensure!(
        pool["UserPool"]["Arn"] == json!(format!("arn:aws:cognito-idp:eu-west-1:123456789012:userpool/{id}")),
        "Arn {}",
        pool["UserPool"]["Arn"]
    );

    let identity = Signer {
        service: "cognito-identity",
        ..eu()
    };
    let ipool = signed_target(
        &addr,
        &identity,
        "AWSCognitoIdentityService.CreateIdentityPool",
        json!({"IdentityPoolName": "eu_guests", "AllowUnauthenticatedIdentities": true}),
    )
    .await?
    .expect_ok("CreateIdentityPool")?;
    let ipool_id = ipool["IdentityPoolId"].as_str().context("identity pool id")?;
    ensure!(ipool_id.starts_with("eu-west-1:"), "identity pool id {ipool_id}");
    let got = post(
        &addr,
        &json_headers("AWSCognitoIdentityService.GetId"),
        json!({ "IdentityPoolId": ipool_id }).to_string().as_bytes(),
    )
    .await?
    .expect_ok("GetId")?;
    let identity_id = got["IdentityId"].as_str().context("identity id")?;
    ensure!(identity_id.starts_with("eu-west-1:"), "identity id {identity_id}");
    Ok(())
}
