//! Plain HTTP/1.1 for the tests of the api port's pages and endpoints:
//! one request per connection with any method and headers, the answer's
//! status, raw headers and body, and what the tests read out of pages and
//! URLs (hidden form fields, query parameters).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use serde_json::Value;

/// `Content-Type` of a form post.
pub const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// One HTTP/1.1 answer: status, raw header block, body.
pub struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {}", self.body))
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers_named(name).into_iter().next()
    }

    /// Every value of header `name`, in order.
    pub fn headers_named(&self, name: &str) -> Vec<String> {
        self.headers
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .collect()
    }

    /// The `Set-Cookie` of cookie `name`, with its attributes.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers_named("set-cookie")
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// Every `Set-Cookie` as `(name, value)`.
    pub fn cookies(&self) -> Vec<(String, String)> {
        self.headers_named("set-cookie")
            .iter()
            .filter_map(|c| {
                let (n, v) = c.split(';').next()?.split_once('=')?;
                Some((n.to_string(), v.to_string()))
            })
            .collect()
    }

    /// Requires an RFC 6749 error answer with `status` and `error`.
    pub fn expect_error(&self, what: &str, status: u16, error: &str) -> Result<()> {
        ensure!(
            self.status == status,
            "{what}: expected {status} {error}, got {} {}",
            self.status,
            self.body
        );
        let v = self.json()?;
        ensure!(v["error"] == error, "{what}: expected error {error}, got {v}");
        ensure!(
            v["error_description"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: no error_description: {v}"
        );
        ensure!(
            self.header("cache-control").as_deref() == Some("no-store"),
            "{what}: an error of the token endpoint must carry Cache-Control: no-store"
        );
        println!("  ok: {what} -> {status} {error}: {}", v["error_description"]);
        Ok(())
    }
}

/// POSTs `body` to `path` on `addr` with `headers`, on a fresh connection.
pub async fn post(addr: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Result<Answer> {
    request(addr, "POST", path, headers, body).await
}

/// One request on a fresh connection.
pub async fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Result<Answer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw)).await??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("not an HTTP answer: {text:.200}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("no status: {head:.200}"))?;
    // The endpoint answers with Content-Length; nothing chunked to undo.
    Ok(Answer {
        status,
        headers: head.to_string(),
        body: body.to_string(),
    })
}

/// The `value` of the hidden input `name` in a page.
pub fn hidden(html: &str, name: &str) -> Result<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .ok_or_else(|| anyhow!("no hidden {name} in the page: {html:.400}"))?
        + marker.len();
    let end = html[start..].find('"').ok_or_else(|| anyhow!("unterminated {name}"))?;
    Ok(unescape(&html[start..start + end]))
}

/// Undoes the page's HTML escaping of an attribute value.
pub fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Percent-encodes a query or form value.
pub fn enc(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// A query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    form_urlencoded::parse(q.as_bytes()).find_map(|(k, v)| (k == name).then(|| v.into_owned()))
}

/// A PKCE verifier (43 characters of base64url) and its S256 challenge.
pub fn pkce_pair() -> (String, String) {
    use base64::Engine as _;
    use sha2::Digest as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let verifier = b64.encode(rand::random::<[u8; 32]>());
    let challenge = b64.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// What the app's callback answers: a small page a browser can land on.
pub const CALLBACK_PAGE: &str = "<!doctype html><html><head><title>Back in the app</title></head>\
     <body><h1>Back in the app</h1></body></html>";

/// The app's callback for browser tests: a tiny HTTP server on loopback
/// that answers every request with 200 and [`CALLBACK_PAGE`], and keeps
/// each request line. Stops when dropped.
pub struct CallbackServer {
    /// `http://127.0.0.1:PORT/cb`.
    pub url: String,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CallbackServer {
    /// Listens on a free loopback port.
    pub async fn start() -> Result<Self> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/cb", listener.local_addr()?);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 2048];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    if let Some(line) = String::from_utf8_lossy(&buf).lines().next() {
                        log.lock().expect("the log lock").push(line.to_string());
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{CALLBACK_PAGE}",
                        CALLBACK_PAGE.len()
                    );
                    let _ = s.write_all(answer.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Ok(CallbackServer { url, seen, task })
    }

    /// The request lines received so far.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().expect("the log lock").clone()
    }
}

impl Drop for CallbackServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
