//! Plain HTTP/1.1 for the tests of the api port's pages and endpoints:
//! one request per connection with any method and headers, the answer's
//! status, raw headers and body, and what the tests read out of pages and
//! URLs (hidden form fields, query parameters).

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
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
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
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await??;
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
    Ok(html[start..start + end].replace("&amp;", "&"))
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
