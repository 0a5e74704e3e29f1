//! A trigger receiver for tests: a small HTTP/1.1 server on loopback that
//! checks each request's HMAC signature with its own code (the `hmac`
//! crate, not Tessera's), records the request, and answers what the test's
//! handler says, including never.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request the receiver saw.
#[derive(Debug, Clone)]
pub struct Call {
    /// Lowercased header names with their values.
    pub headers: Vec<(String, String)>,
    /// The body, parsed (Null if it was not JSON).
    pub body: Value,
    /// Whether `x-tessera-signature` is the HMAC of
    /// `"<x-tessera-timestamp>.<body>"` under the receiver's secret.
    pub signature_ok: bool,
}

impl Call {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The event's `triggerSource`.
    pub fn source(&self) -> &str {
        self.body["triggerSource"].as_str().unwrap_or("")
    }
}

/// How the receiver answers one request.
pub enum Reply {
    /// This status with this JSON body.
    Json(u16, Value),
    /// This status with this raw body.
    Raw(u16, &'static str),
    /// Nothing, ever (the connection stays open).
    Hang,
}

/// Decides the reply to an event; gets the event and how many requests
/// (this one included) the receiver has seen.
pub type Handler = Arc<dyn Fn(&Value, usize) -> Reply + Send + Sync>;

/// A running receiver.
pub struct Hook {
    /// `http://127.0.0.1:<port>/trigger`.
    pub url: String,
    pub calls: Arc<Mutex<Vec<Call>>>,
}

impl Hook {
    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The calls whose `triggerSource` is `source`.
    pub fn calls_of(&self, source: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.source() == source).collect()
    }
}

/// `HMAC-SHA256(secret, "<ts>.<body>")` in lowercase hex.
pub fn signature(secret: &str, ts: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Starts a receiver checking signatures under `secret` and answering
/// with `handler`; it runs until the test's runtime ends.
pub async fn start(secret: &str, handler: Handler) -> Result<Hook> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/trigger", listener.local_addr()?);
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let log = calls.clone();
    let secret = secret.to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let log = log.clone();
            let handler = handler.clone();
            let secret = secret.clone();
            tokio::spawn(async move {
                let Some((headers, body)) = read_request(&mut s).await else {
                    return;
                };
                let ts = headers
                    .iter()
                    .find(|(n, _)| n == "x-tessera-timestamp")
                    .map(|(_, v)| v.clone());
                let sig = headers
                    .iter()
                    .find(|(n, _)| n == "x-tessera-signature")
                    .map(|(_, v)| v.clone());
                let signature_ok = match (ts, sig) {
                    (Some(ts), Some(sig)) => sig == format!("sha256={}", signature(&secret, &ts, &body)),
                    _ => false,
                };
                let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let n = {
                    let mut l = log.lock().unwrap();
                    l.push(Call {
                        headers,
                        body: event.clone(),
                        signature_ok,
                    });
                    l.len()
                };
                let (status, body) = match handler(&event, n) {
                    Reply::Json(status, v) => (status, v.to_string()),
                    Reply::Raw(status, b) => (status, b.to_string()),
                    Reply::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    Ok(Hook { url, calls })
}

/// Reads one request: lowercased headers and the body by content-length.
async fn read_request(s: &mut tokio::net::TcpStream) -> Option<(Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
            })
            .collect();
        let len = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            return Some((headers, buf[end + 4..end + 4 + len].to_vec()));
        }
    }
}
