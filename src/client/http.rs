//! A minimal HTTP/1.1 GET for the api port's JSON documents (JWKS and
//! OpenID discovery), so the CLI and resource servers can fetch keys
//! without an HTTP client dependency. Plain `http://` only; put a TLS
//! terminating proxy's plain side or a real HTTP client in front for
//! `https://`.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest response body accepted.
const MAX_BODY: usize = 1 << 20;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}: only http://host:port URLs are supported")]
    Url(String),
    #[error("GET {0}: {1}")]
    Io(String, std::io::Error),
    #[error("GET {0}: timed out")]
    Timeout(String),
    #[error("GET {0}: HTTP {1}: {2}")]
    Status(String, u16, String),
    #[error("GET {0}: malformed response")]
    Malformed(String),
}

/// GETs `base` + `path` and parses the body as JSON.
pub async fn get_json(base: &str, path: &str) -> Result<serde_json::Value, HttpError> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let hostport = base
        .strip_prefix("http://")
        .or_else(|| (!base.contains("://")).then_some(base))
        .map(|h| h.trim_end_matches('/'))
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .ok_or_else(|| HttpError::Url(base.to_string()))?;
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(hostport)
            .await
            .map_err(|e| HttpError::Io(url.clone(), e))?;
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| HttpError::Io(url.clone(), e))?;
        let mut buf = Vec::new();
        (&mut s)
            .take((MAX_BODY + 16 * 1024) as u64)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| HttpError::Io(url.clone(), e))?;
        Ok::<_, HttpError>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .map_err(|_| HttpError::Timeout(url.clone()))??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| HttpError::Malformed(url.clone()))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HttpError::Malformed(url.clone()))?;
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(body) } else { body.to_string() };
    if status != 200 {
        return Err(HttpError::Status(url, status, body.chars().take(200).collect()));
    }
    serde_json::from_str(&body).map_err(|_| HttpError::Malformed(url))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n"), "{\"a\":1}");
    }

    #[tokio::test]
    async fn fetches_json_from_a_real_listener() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"keys\":[]}")
                .await
                .unwrap();
        });
        let v = get_json(&format!("http://{addr}"), "/p/.well-known/jwks.json")
            .await
            .unwrap();
        assert_eq!(v["keys"], serde_json::json!([]));
        assert!(get_json("https://x", "/").await.is_err());
    }
}
