//! The courier's webhook backend, end to end: a real node delivers a
//! sign-up's confirmation code to a real HTTP receiver that fails twice
//! first. The message must arrive signed, be retried with backoff, be
//! recorded as delivered in the replicated outbox with its body erased, and
//! show up in the metrics.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tessera::client::Client;
use tessera::proto::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request the receiver saw.
#[derive(Debug, Clone)]
struct Seen {
    headers: String,
    body: String,
}

/// An HTTP receiver answering 500 to the first `failures` requests and 204
/// afterwards, recording every request.
async fn receiver(failures: usize) -> Result<(String, Arc<Mutex<Vec<Seen>>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read headers, then the body by content-length.
            let (headers, body) = loop {
                let Ok(n) = s.read(&mut chunk).await else {
                    break (String::new(), String::new());
                };
                if n == 0 {
                    break (String::new(), String::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((h, b)) = text.split_once("\r\n\r\n") {
                    let len = h
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if b.len() >= len {
                        break (h.to_string(), b.to_string());
                    }
                }
            };
            let n = {
                let mut l = log.lock().unwrap();
                l.push(Seen { headers, body });
                l.len()
            };
            let reply: &[u8] = if n <= failures {
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            } else {
                b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"
            };
            let _ = s.write_all(reply).await;
            let _ = s.shutdown().await;
        }
    });
    Ok((format!("http://{addr}/hook"), seen))
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn webhook_delivers_the_code_after_retries_and_erases_it() {
    let root = tempfile::Builder::new().prefix("tessera-courier-").tempdir().unwrap();
    let bin = pin_binary(root.path()).unwrap();
    let mut node = TestNode::create(1, root.path(), &bin, &RaftTuning::default()).unwrap();
    let result = run(&mut node, &bin).await;
    if result.is_err() {
        eprintln!("{}", node.log_tail(80));
    }
    node.kill9();
    result.unwrap();
}

async fn run(node: &mut TestNode, bin: &std::path::Path) -> Result<()> {
    const SECRET: &str = "receiver-shared-secret";
    let (url, seen) = receiver(2).await?;
    let mut config = std::fs::read_to_string(&node.config_path)?;
    config.push_str(&format!(
        "\n[courier]\nbackend = \"webhook\"\n[courier.webhook]\nurl = \"{url}\"\nsecret = \"{SECRET}\"\ntimeout_ms = 2000\n"
    ));
    std::fs::write(&node.config_path, config)?;
    node.start()?;
    node.wait_healthy(HEALTH_TIMEOUT).await?;
    let out = run_cli(
        bin,
        vec![
            "--endpoint".into(),
            node.url(),
            "--output".into(),
            "json".into(),
            "cluster".into(),
            "init".into(),
        ],
    )
    .await?;
    let init = json_stdout(&out)?;
    let token = init["admin_token"].as_str().context("admin token")?.to_string();
    let client = Client::connect(&node.url(), Some(token)).await?;
    let pool = client
        .create_user_pool_with(CreateUserPoolRequest {
            pool_name: "courier".into(),
            password_hashing: Some(PasswordHashingType {
                memory_kib: 8192,
                iterations: 1,
                parallelism: 1,
            }),
            ..Default::default()
        })
        .await?;
    let app = client
        .admin()
        .create_user_pool_client(client.req(CreateUserPoolClientRequest {
            user_pool_id: pool.id.clone(),
            client_name: "web".into(),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .user_pool_client
        .context("client")?;
    client
        .auth()
        .sign_up(SignUpRequest {
            client_id: app.client_id.clone(),
            username: "ann".into(),
            password: "Correct-Horse-1".into(),
            user_attributes: vec![AttributeType {
                name: "email".into(),
                value: "ann@example.com".into(),
            }],
            ..Default::default()
        })
        .await?;

    // Two failures, then a delivery: backoff is 1 s then 2 s.
    let delivered = poll_until(
        "the receiver to accept a delivery",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let seen = seen.clone();
            async move {
                let s = seen.lock().unwrap().clone();
                Ok((s.len() >= 3).then_some(s))
            }
        },
    )
    .await?;
    let ids: Vec<&str> = delivered
        .iter()
        .filter_map(|s| header(&s.headers, "x-tessera-message-id"))
        .collect();
    ensure!(
        ids.len() == 3 && ids.iter().all(|i| *i == ids[0]),
        "one message id on every attempt: {ids:?}"
    );
    let last = &delivered[2];
    let body: serde_json::Value = serde_json::from_str(&last.body).context("webhook body is JSON")?;
    ensure!(
        body["kind"] == "CONFIRM_SIGN_UP" && body["destination"] == "ann@example.com",
        "{body}"
    );
    let code = body["code"].as_str().unwrap_or_default();
    ensure!(
        code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()),
        "a 6-digit code: {code:?}"
    );
    let ts = header(&last.headers, "x-tessera-timestamp").context("timestamp header")?;
    let sig = header(&last.headers, "x-tessera-signature").context("signature header")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes())?;
    mac.update(format!("{ts}.{}", last.body).as_bytes());
    ensure!(
        sig == format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
        "signature checks out"
    );

    // The outbox records the delivery and no longer holds the code.
    let m = poll_until(
        "the outbox to record the delivery",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let client = client.clone();
            let pool_id = pool.id.clone();
            async move {
                let r = client
                    .admin()
                    .list_outbox_messages(client.req(ListOutboxMessagesRequest {
                        user_pool_id: pool_id,
                        consistent_read: true,
                        ..Default::default()
                    }))
                    .await?
                    .into_inner();
                Ok(r.messages.into_iter().find(|m| m.status == "DELIVERED"))
            }
        },
    )
    .await?;
    ensure!(
        m.body.is_empty() && m.code.is_empty(),
        "delivered messages are erased: {m:?}"
    );
    ensure!(m.attempts == 3, "three attempts recorded, got {}", m.attempts);

    // The code still confirms the user: delivery and confirmation are independent.
    client
        .auth()
        .confirm_sign_up(ConfirmSignUpRequest {
            client_id: app.client_id.clone(),
            username: "ann".into(),
            confirmation_code: code.to_string(),
            ..Default::default()
        })
        .await?;
    let metrics = node.metrics().await?;
    ensure!(
        metric_value(&metrics, "tessera_courier_retries_total").unwrap_or(0.0) >= 2.0,
        "retries counted"
    );
    ensure!(
        metric_value(&metrics, "tessera_courier_delivered_total") == Some(1.0),
        "delivery counted"
    );
    Ok(())
}
