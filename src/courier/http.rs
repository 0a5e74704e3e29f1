//! Signed outbound HTTP POSTs: the one client behind the courier's webhook
//! backend ([`super::webhook`]) and the user-pool triggers
//! (`crate::service::triggers`).
//!
//! Both send a JSON body to a URL the operator configured, signed with
//! `HMAC-SHA256(secret, "<timestamp>.<body>")`, on a fresh connection, and
//! must never let a slow or hostile receiver hold a node: connecting, TLS,
//! the request and the response all fit in one deadline, and a response
//! body is read only up to a bound. Errors name the receiver's authority
//! and what failed, never the body (which may carry a code or a password).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::RootCertStore;
use tokio_rustls::TlsConnector;

use super::transport::DeliveryError;
use super::webhook::{platform_roots, tls_client_config};

/// Header carrying the Unix seconds at which a request was signed.
pub const TIMESTAMP_HEADER: &str = "x-tessera-timestamp";
/// Header carrying `sha256=<hex HMAC>`.
pub const SIGNATURE_HEADER: &str = "x-tessera-signature";

/// Where requests go, parsed and checked once from a configured URL.
pub struct Target {
    /// Host to connect to (IPv6 without brackets).
    pub(super) host: String,
    pub(super) port: u16,
    /// Value of the `host` header: the URL's authority.
    authority: String,
    /// Origin-form request target: path and query.
    pub(super) path: String,
    /// `Some` for `https`: the connector and the name the certificate must
    /// carry.
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("https", &self.tls.is_some())
            .finish()
    }
}

/// What a receiver answered.
#[derive(Debug)]
pub struct Reply {
    /// The response status.
    pub status: StatusCode,
    /// The body, when the caller asked for it and it fit the bound.
    pub body: Option<Bytes>,
}

/// How much of a response body to read.
#[derive(Debug, Clone, Copy)]
pub enum BodyUse {
    /// Drain up to this many bytes and throw them away; a slow, oversized
    /// or broken body does not fail the exchange (the status decides).
    Discard(usize),
    /// The caller needs the body: more than this many bytes, or a body
    /// that does not arrive in time, fails the exchange.
    Read(usize),
}

impl Target {
    /// Parses and checks `url` (`http://` or `https://`, a host, no user
    /// info); builds the TLS connector for `https`, trusting `roots` or,
    /// when `None`, the operating system's bundle.
    pub fn parse(url: &str, roots: Option<RootCertStore>) -> Result<Self, DeliveryError> {
        let invalid = |why: &str| DeliveryError::permanent(format!("url {url:?}: {why}"));
        let uri: Uri = url.parse().map_err(|e| invalid(&format!("{e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(_) => return Err(invalid("only http:// and https:// are supported")),
            None => return Err(invalid("must start with http:// or https://")),
        };
        let authority = uri.authority().ok_or_else(|| invalid("has no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid(
                "user info (user@host) is not supported; authenticate with the signature",
            ));
        }
        let bracketed = authority.host();
        if bracketed.is_empty() {
            return Err(invalid("has no host"));
        }
        let host = bracketed.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |pq| pq.as_str()).to_owned();
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        let tls = if https {
            let name =
                ServerName::try_from(host.clone()).map_err(|_| invalid("host is not a valid TLS server name"))?;
            let roots = match roots {
                Some(roots) => roots,
                None => platform_roots()?,
            };
            let mut config = tls_client_config(roots)?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Target {
            host,
            port,
            authority: authority.as_str().to_owned(),
            path,
            tls,
        })
    }

    /// The URL's authority (`host:port`), for messages.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The request path and query.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the receiver is reached over TLS.
    pub fn is_https(&self) -> bool {
        self.tls.is_some()
    }

    /// POSTs `body` as JSON, signed with `secret` and the current time,
    /// with `extra` headers, on a fresh connection; everything, the
    /// response body included when [`BodyUse::Read`], within `timeout`.
    /// Connection, TLS and timeout failures are retryable; the caller
    /// classifies the status.
    pub async fn post_signed(
        &self,
        secret: &[u8],
        extra: &[(&'static str, String)],
        body: Vec<u8>,
        timeout: Duration,
        body_use: BodyUse,
    ) -> Result<Reply, DeliveryError> {
        let timestamp = crate::clock::now_millis().div_euclid(1000);
        let signature = sign(secret, timestamp, &body)?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.path.as_str())
            .header(header::HOST, self.authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, concat!("tessera/", env!("CARGO_PKG_VERSION")))
            .header(header::CONNECTION, "close")
            .header(TIMESTAMP_HEADER, timestamp)
            .header(SIGNATURE_HEADER, format!("sha256={signature}"));
        for (name, value) in extra {
            request = request.header(*name, value.as_str());
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| DeliveryError::permanent(format!("building the request: {e}")))?;
        self.exchange(request, timeout, body_use).await
    }

    /// Connects and sends `request`, all within `timeout`.
    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
        body_use: BodyUse,
    ) -> Result<Reply, DeliveryError> {
        let deadline = Instant::now() + timeout;
        let tcp = within(deadline, timeout, TcpStream::connect((self.host.as_str(), self.port)))
            .await?
            .map_err(|e| DeliveryError::retry(format!("connecting to {}: {e}", self.authority)))?;
        // Small requests: do not wait for Nagle. Failing to set it is harmless.
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => round_trip(tcp, request, deadline, timeout, body_use).await,
            Some((connector, name)) => {
                let tls = within(deadline, timeout, connector.connect(name.clone(), tcp))
                    .await?
                    .map_err(|e| DeliveryError::retry(format!("tls with {}: {e}", self.authority)))?;
                round_trip(tls, request, deadline, timeout, body_use).await
            }
        }
    }
}

/// Lowercase hex `HMAC-SHA256(secret, "<timestamp>.<body>")`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> Result<String, DeliveryError> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .map_err(|_| DeliveryError::permanent("the signing secret is not a usable HMAC key"))?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// `fut` bounded by `deadline`; running out of time is retryable.
async fn within<F: std::future::Future>(
    deadline: Instant,
    limit: Duration,
    fut: F,
) -> Result<F::Output, DeliveryError> {
    timeout_at(deadline, fut)
        .await
        .map_err(|_| DeliveryError::retry(format!("timed out after {} ms", limit.as_millis())))
}

/// One HTTP/1.1 request on `io`, which is closed afterwards.
async fn round_trip<S>(
    io: S,
    request: Request<Full<Bytes>>,
    deadline: Instant,
    limit: Duration,
    body_use: BodyUse,
) -> Result<Reply, DeliveryError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sender, conn) = within(deadline, limit, hyper::client::conn::http1::handshake(TokioIo::new(io)))
        .await?
        .map_err(|e| DeliveryError::retry(format!("http handshake: {e}")))?;
    // The connection must be polled while the request runs. Once it ends the
    // request side fails too, so this branch never has to finish the select.
    let conn = async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "outbound http connection ended with an error");
        }
        std::future::pending::<Infallible>().await
    };
    let exchange = async {
        let response = within(deadline, limit, sender.send_request(request))
            .await?
            .map_err(|e| DeliveryError::retry(format!("request failed: {e}")))?;
        let status = response.status();
        let body = match body_use {
            BodyUse::Discard(max) => {
                // Drained, bounded, only so the exchange ends cleanly; never
                // put into an error (a receiver might echo what it got).
                let _ = timeout_at(deadline, Limited::new(response.into_body(), max).collect()).await;
                None
            }
            BodyUse::Read(max) => {
                let collected = within(deadline, limit, Limited::new(response.into_body(), max).collect())
                    .await?
                    .map_err(|e| {
                        if e.is::<http_body_util::LengthLimitError>() {
                            DeliveryError::permanent(format!("response body larger than {max} bytes"))
                        } else {
                            DeliveryError::retry(format!("reading the response: {e}"))
                        }
                    })?;
                Some(collected.to_bytes())
            }
        };
        Ok(Reply { status, body })
    };
    tokio::select! {
        result = exchange => result,
        never = conn => match never {},
    }
}
