//! A small HTTP/1.1 GET, over hyper, for the api port's JSON documents
//! (JWKS and OpenID discovery), so the CLI and resource servers can fetch
//! keys, and one form POST ([`post_form`]) for the token endpoint of an
//! external identity provider (social sign-in). `http://` and `https://` (verified against the operating system's
//! CA bundle, like the courier's TLS); a base without a scheme is
//! `http://`. One connection per call, a bounded body, and one time limit
//! over the whole exchange.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::RootCertStore;
use tokio_rustls::TlsConnector;

use crate::courier::webhook::{platform_roots, tls_client_config};

/// Largest response body accepted.
const MAX_BODY: usize = 1 << 20;
/// Limit on one fetch, from connecting to the end of the body.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The base URL is not `http://` or `https://` with a host.
    #[error("{0}: only http:// and https:// URLs with a host are supported")]
    Url(String),
    /// Connecting, sending or reading failed (the URL, the error).
    #[error("GET {0}: {1}")]
    Io(String, std::io::Error),
    /// The TLS handshake failed, e.g. an untrusted certificate.
    #[error("GET {0}: tls: {1}")]
    Tls(String, String),
    /// The whole fetch took longer than its limit.
    #[error("GET {0}: timed out")]
    Timeout(String),
    /// The server answered with a status other than 200 (the URL, the
    /// status, the start of the body).
    #[error("GET {0}: HTTP {1}: {2}")]
    Status(String, u16, String),
    /// The answer was not HTTP, too large, or not JSON.
    #[error("GET {0}: malformed response: {1}")]
    Malformed(String, String),
}

/// GETs `base` + `path` and parses the body as JSON.
pub async fn get_json(base: &str, path: &str) -> Result<serde_json::Value, HttpError> {
    get_json_with(base, path, None).await
}

/// A JSON document and how long its server lets it be cached.
#[derive(Debug, Clone)]
pub struct JsonDocument {
    /// The parsed body.
    pub value: serde_json::Value,
    /// `Cache-Control: max-age` (zero for `no-store` or `no-cache`), if the
    /// server sent one; callers that cache keys (JWKS) refresh after it.
    pub max_age: Option<Duration>,
}

/// [`get_json`], also returning the response's cache lifetime, for key sets
/// whose servers say when they rotate.
pub async fn get_json_document(base: &str, path: &str) -> Result<JsonDocument, HttpError> {
    fetch_json(base, path, None).await
}

/// [`get_json`], trusting `roots` (instead of the system's CAs) for https.
async fn get_json_with(base: &str, path: &str, roots: Option<RootCertStore>) -> Result<serde_json::Value, HttpError> {
    fetch_json(base, path, roots).await.map(|d| d.value)
}

/// `max-age` of a `Cache-Control` value: zero for `no-store`/`no-cache`,
/// `None` when it says neither or is unreadable.
fn cache_max_age(value: &str) -> Option<Duration> {
    let mut max_age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(secs) = lower.strip_prefix("max-age=") {
            max_age = secs.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    max_age
}

/// GETs `base` + `path` as text, for plain documents such as `/metrics`
/// (what `tessera bench sync` reads a node's resident memory from).
pub async fn get_text(base: &str, path: &str) -> Result<String, HttpError> {
    let (url, _, body) = fetch(base, path, None, "text/plain").await?;
    String::from_utf8(body.to_vec()).map_err(|e| HttpError::Malformed(url, e.to_string()))
}

/// The fetch behind [`get_json`] and [`get_json_document`].
async fn fetch_json(base: &str, path: &str, roots: Option<RootCertStore>) -> Result<JsonDocument, HttpError> {
    let (full, max_age, body) = fetch(base, path, roots, "application/json").await?;
    let value = serde_json::from_slice(&body).map_err(|e| HttpError::Malformed(full, e.to_string()))?;
    Ok(JsonDocument { value, max_age })
}

/// One GET accepting `accept`: the full URL, the `Cache-Control` max-age,
/// and the body of a 200 answer (any other status is an error).
async fn fetch(
    base: &str,
    path: &str,
    roots: Option<RootCertStore>,
    accept: &str,
) -> Result<(String, Option<Duration>, Bytes), HttpError> {
    let base = base.trim_end_matches('/');
    let full = if base.contains("://") {
        format!("{base}{path}")
    } else {
        format!("http://{base}{path}")
    };
    let target = Target::parse(&full).ok_or_else(|| HttpError::Url(base.to_string()))?;
    let request = Request::get(target.path_and_query.as_str())
        .header(header::HOST, target.authority.as_str())
        .header(header::ACCEPT, accept)
        .header(header::USER_AGENT, concat!("tessera/", env!("CARGO_PKG_VERSION")))
        .body(Empty::<Bytes>::new())
        .map_err(|_| HttpError::Url(base.to_string()))?;
    let (status, max_age, body) = send(&target, &full, request, roots, MAX_BODY).await?;
    if status != StatusCode::OK {
        let text = String::from_utf8_lossy(&body);
        return Err(HttpError::Status(
            full,
            status.as_u16(),
            text.chars().take(200).collect(),
        ));
    }
    Ok((full, max_age, body))
}

/// Where a request goes, taken apart.
struct Target {
    https: bool,
    authority: String,
    host: String,
    port: u16,
    path_and_query: String,
}

impl Target {
    /// `None` unless `url` is `http://` or `https://` with a host.
    fn parse(url: &str) -> Option<Target> {
        let uri: Uri = url.parse().ok()?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return None,
        };
        let authority = uri.authority().filter(|a| !a.host().is_empty())?.clone();
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Some(Target {
            https,
            authority: authority.as_str().to_owned(),
            host,
            port,
            path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        })
    }
}

/// Sends `request` to `target` (TLS for https, trusting `roots` or the
/// system's CAs) under one time limit: the status, the `Cache-Control`
/// max-age and at most `max_body` bytes of body, whatever the status.
async fn send<B>(
    target: &Target,
    full: &str,
    request: Request<B>,
    roots: Option<RootCertStore>,
    max_body: usize,
) -> Result<(StatusCode, Option<Duration>, Bytes), HttpError>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let full = full.to_owned();
    let fetch = async {
        let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| HttpError::Io(full.clone(), e))?;
        if !target.https {
            return exchange(tcp, request, &full, max_body).await;
        }
        let tls_err = |e: String| HttpError::Tls(full.clone(), e);
        let roots = match roots {
            Some(r) => r,
            None => platform_roots().map_err(|e| tls_err(e.message))?,
        };
        let mut config = tls_client_config(roots).map_err(|e| tls_err(e.message))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(target.host.clone()).map_err(|e| tls_err(e.to_string()))?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| tls_err(e.to_string()))?;
        exchange(tls, request, &full, max_body).await
    };
    tokio::time::timeout(TIMEOUT, fetch)
        .await
        .map_err(|_| HttpError::Timeout(full.clone()))?
}

/// The answer of [`post_form`]: whatever the status, since a token
/// endpoint says what is wrong in a JSON body of a 400 or 401.
#[derive(Debug, Clone)]
pub struct FormAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The body (at most the `max_body` asked for).
    pub body: Bytes,
}

/// POSTs `form` (already `application/x-www-form-urlencoded`) to `url`,
/// with HTTP Basic `basic` (user, password; both form-encoded first, as
/// RFC 6749 §2.3.1 asks) if given: the status and at most `max_body`
/// bytes of the answer. One connection, [`TIMEOUT`] over the whole
/// exchange. The form is never put in an error (it holds secrets).
pub async fn post_form(
    url: &str,
    basic: Option<(&str, &str)>,
    form: String,
    max_body: usize,
) -> Result<FormAnswer, HttpError> {
    use base64::Engine as _;
    let target = Target::parse(url).ok_or_else(|| HttpError::Url(url.chars().take(200).collect()))?;
    let mut builder = Request::post(target.path_and_query.as_str())
        .header(header::HOST, target.authority.as_str())
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::USER_AGENT, concat!("tessera/", env!("CARGO_PKG_VERSION")));
    if let Some((user, password)) = basic {
        let enc = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        let pair = format!("{}:{}", enc(user), enc(password));
        let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
        builder = builder.header(header::AUTHORIZATION, value);
    }
    let request = builder
        .body(Full::new(Bytes::from(form)))
        .map_err(|_| HttpError::Url(url.chars().take(200).collect()))?;
    let (status, _, body) = send(&target, url, request, None, max_body).await?;
    Ok(FormAnswer {
        status: status.as_u16(),
        body,
    })
}

/// One request on `io`: the status, the `Cache-Control` max-age and the
/// body (at most `max_body`).
async fn exchange<S, B>(
    io: S,
    request: Request<B>,
    url: &str,
    max_body: usize,
) -> Result<(StatusCode, Option<Duration>, Bytes), HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let malformed = |e: String| HttpError::Malformed(url.to_owned(), e);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| malformed(e.to_string()))?;
    // The connection is driven while the request runs; when it ends, the
    // request side fails too, so this branch never finishes the select.
    let conn = async move {
        let _ = conn.await;
        std::future::pending::<Infallible>().await
    };
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| malformed(e.to_string()))?;
        let status = response.status();
        let max_age = response
            .headers()
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(cache_max_age);
        let body = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| malformed(format!("body: {e}")))?
            .to_bytes();
        Ok((status, max_age, body))
    };
    tokio::select! {
        result = exchange => result,
        never = conn => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A listener answering one connection with `reply`, after reading the
    /// request head; returns the request it read.
    async fn serve_once(reply: Vec<u8>) -> (String, tokio::task::JoinHandle<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut b = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut b).await.unwrap();
                assert!(n > 0);
                buf.extend_from_slice(&b[..n]);
            }
            s.write_all(&reply).await.unwrap();
            s.shutdown().await.unwrap();
            String::from_utf8(buf).unwrap()
        });
        (addr.to_string(), task)
    }

    #[tokio::test]
    async fn fetches_json_from_a_real_listener() {
        let (addr, server) = serve_once(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"keys\":[]}".to_vec(),
        )
        .await;
        let v = get_json(&format!("http://{addr}/"), "/p/.well-known/jwks.json")
            .await
            .unwrap();
        assert_eq!(v["keys"], serde_json::json!([]));
        let req = server.await.unwrap();
        assert!(req.starts_with("GET /p/.well-known/jwks.json HTTP/1.1\r\n"), "{req}");
        assert!(req.to_ascii_lowercase().contains(&format!("host: {addr}")), "{req}");
        assert!(get_json("ftp://x", "/").await.is_err());
    }

    #[tokio::test]
    async fn posts_a_form_with_basic_and_returns_any_status() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut b = [0u8; 1024];
            // Head, then the 13-byte body.
            loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    if buf.len() >= end + 4 + 13 {
                        break;
                    }
                }
                let n = s.read(&mut b).await.unwrap();
                assert!(n > 0);
                buf.extend_from_slice(&b[..n]);
            }
            s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 25\r\n\r\n{\"error\":\"invalid_grant\"}")
                .await
                .unwrap();
            s.shutdown().await.unwrap();
            String::from_utf8(buf).unwrap()
        });
        let a = post_form(
            &format!("http://{addr}/token"),
            Some(("id:1", "s e")),
            "code=abc&x=1".to_string() + "2",
            1024,
        )
        .await
        .unwrap();
        assert_eq!(a.status, 400);
        assert_eq!(&a.body[..], b"{\"error\":\"invalid_grant\"}");
        let req = server.await.unwrap();
        assert!(req.starts_with("POST /token HTTP/1.1\r\n"), "{req}");
        let lower = req.to_ascii_lowercase();
        assert!(
            lower.contains("content-type: application/x-www-form-urlencoded"),
            "{req}"
        );
        // RFC 6749 2.3.1: id and secret form-encoded before Basic.
        let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "id%3A1:s+e");
        assert!(req.contains(&format!("Basic {basic}")), "{req}");
        assert!(req.ends_with("\r\n\r\ncode=abc&x=12"), "{req}");
        assert!(post_form("ftp://x/y", None, String::new(), 10).await.is_err());
    }

    #[tokio::test]
    async fn fetches_text_such_as_metrics() {
        let body = "# TYPE tessera_x gauge\ntessera_x 7\n# EOF\n";
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/openmetrics-text\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (addr, server) = serve_once(reply.into_bytes()).await;
        assert_eq!(get_text(&addr, "/metrics").await.unwrap(), body);
        let req = server.await.unwrap();
        assert!(req.starts_with("GET /metrics HTTP/1.1\r\n"), "{req}");
        assert!(req.to_ascii_lowercase().contains("accept: text/plain"), "{req}");
    }

    #[tokio::test]
    async fn cache_control_max_age_is_returned() {
        let (addr, server) = serve_once(
            b"HTTP/1.1 200 OK\r\ncache-control: public, max-age=120, must-revalidate\r\ncontent-length: 2\r\n\r\n{}"
                .to_vec(),
        )
        .await;
        let doc = get_json_document(&addr, "/k").await.unwrap();
        assert_eq!(doc.max_age, Some(Duration::from_secs(120)));
        server.await.unwrap();
        assert_eq!(cache_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(cache_max_age("private"), None);
        assert_eq!(cache_max_age("max-age=x"), None);
    }

    #[tokio::test]
    async fn chunked_bodies_and_bare_host_ports_work() {
        let (addr, server) = serve_once(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n".to_vec(),
        )
        .await;
        let v = get_json(&addr, "/x").await.unwrap();
        assert_eq!(v, serde_json::json!({"a": 1}));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn errors_and_oversized_bodies_are_refused() {
        let (addr, server) = serve_once(b"HTTP/1.1 404 Not Found\r\ncontent-length: 7\r\n\r\nno pool".to_vec()).await;
        let err = get_json(&addr, "/x").await.unwrap_err();
        assert!(
            matches!(err, HttpError::Status(_, 404, ref t) if t == "no pool"),
            "{err}"
        );
        server.await.unwrap();

        let mut big = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", MAX_BODY + 1).into_bytes();
        big.extend(std::iter::repeat_n(b' ', MAX_BODY + 1));
        let (addr, server) = serve_once(big).await;
        let err = get_json(&addr, "/x").await.unwrap_err();
        assert!(matches!(err, HttpError::Malformed(..)), "{err}");
        let _ = server.await;
    }

    #[tokio::test]
    async fn https_is_verified() {
        let (acceptor, roots) = crate::courier::webhook::tests::test_tls();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (s, _) = l.accept().await.unwrap();
                let Ok(mut tls) = acceptor.accept(s).await else {
                    continue;
                };
                let mut b = [0u8; 1024];
                let _ = tls.read(&mut b).await.unwrap();
                tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n{\"ok\":1}")
                    .await
                    .unwrap();
                tls.shutdown().await.unwrap();
            }
        });
        let base = format!("https://{addr}");
        let err = get_json_with(&base, "/j", Some(RootCertStore::empty()))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Tls(..)), "{err}");
        let v = get_json_with(&base, "/j", Some(roots)).await.unwrap();
        assert_eq!(v["ok"], 1);
        server.await.unwrap();
    }
}
