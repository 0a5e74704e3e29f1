//! The webhook backend: the leader POSTs each message, signed, to an HTTP
//! endpoint that the operator runs (and that sends the email or SMS itself).
//!
//! This module owns the request format, its signature and the mapping of
//! HTTP outcomes to [`DeliveryError`]. It must never put a message's body or
//! code into an error, a log line or a span field: only the receiver sees
//! them.
//!
//! # The request
//!
//! One `POST` to the configured URL per delivery attempt, on a fresh
//! connection, with these headers:
//!
//! * `content-type: application/json`
//! * `x-tessera-message-id: <id>`: the outbox id, the same on every retry of
//!   a message, so a receiver can drop duplicates (delivery is at least
//!   once: a lost `200` means the message comes again).
//! * `x-tessera-timestamp: <unix seconds>`: when this attempt was signed.
//! * `x-tessera-signature: sha256=<hex>`: lowercase hex of
//!   `HMAC-SHA256(secret, "<timestamp>.<raw body bytes>")`, the timestamp
//!   being the decimal string sent in `x-tessera-timestamp`.
//!
//! and this JSON body:
//!
//! ```json
//! {"id": 42, "user_pool_id": "eu-west-1_abc", "username": "alice",
//!  "delivery_medium": "EMAIL", "destination": "alice@example.com",
//!  "kind": "CONFIRM_SIGN_UP", "subject": "Your code",
//!  "body": "Your code is 123456", "code": "123456"}
//! ```
//!
//! `delivery_medium` is `EMAIL` or `SMS`; `destination` an email address or
//! an E.164 phone number.
//!
//! # Verifying a request
//!
//! A receiver recomputes the HMAC over the timestamp header, a `.` and the
//! body exactly as received (before any JSON parsing), compares it with the
//! signature header in constant time, and rejects requests whose timestamp
//! is more than a few minutes from its own clock: the signature covers the
//! timestamp, so a captured request cannot be replayed later with a fresh
//! one.
//!
//! # Outcomes
//!
//! Any `2xx` is a delivery. `5xx`, `429`, `408`, timeouts and connection or
//! TLS failures are retried by the courier with backoff; any other status
//! (other `4xx`, and `3xx`: redirects are not followed) gives the message
//! up. `https://` URLs are verified against the operating system's CA
//! bundle (`SSL_CERT_FILE`, else the usual system paths); there is no
//! option to skip verification.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::{self, RootCertStore};

use super::http::{BodyUse, Target};
pub use super::http::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use super::transport::{DeliveryError, OutgoingMessage};

/// How much of a response body is read (and thrown away) before the
/// connection is closed.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Header carrying the outbox id.
pub const MESSAGE_ID_HEADER: &str = "x-tessera-message-id";

fn default_timeout_ms() -> u64 {
    5000
}

/// The `[courier.webhook]` table of the node configuration.
///
/// ```toml
/// [courier.webhook]
/// url = "https://hooks.example.com/tessera"
/// secret = "a long random string shared with the receiver"
/// timeout_ms = 5000
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where messages are POSTed: an `http://` or `https://` URL with a
    /// host, optionally a port, path and query. No user info (`user@`).
    /// `https` trusts the operating system's CA bundle.
    pub url: String,
    /// Key of the HMAC-SHA256 request signature, shared with the receiver.
    /// Must not be empty; 32 random bytes or more is a good choice. Never
    /// printed, not even by `Debug`.
    pub secret: String,
    /// Limit on one delivery attempt, in milliseconds: connecting, TLS,
    /// sending the request and receiving the response must all fit in it.
    /// An attempt that runs out of time is retried. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl std::fmt::Debug for WebhookConfig {
    /// Hides the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// Delivers [`OutgoingMessage`]s to a webhook. Cheap to share behind an
/// `Arc`; every [`send`](Self::send) opens its own connection.
pub struct WebhookSender {
    target: Target,
    secret: Vec<u8>,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookSender {
    /// Hides the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSender")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The JSON body; field names are part of the receiver contract.
#[derive(Serialize)]
struct Payload<'a> {
    id: u64,
    user_pool_id: &'a str,
    username: &'a str,
    delivery_medium: &'static str,
    destination: &'a str,
    kind: &'a str,
    subject: &'a str,
    body: &'a str,
    code: &'a str,
}

impl WebhookSender {
    /// A sender for `cfg`. Fails (permanently) on a URL that is not
    /// `http://` or `https://` with a host, an empty secret, a zero timeout,
    /// or, for `https`, when the operating system has no CA bundle.
    pub fn new(cfg: WebhookConfig) -> Result<Self, DeliveryError> {
        Self::build(cfg, None)
    }

    /// Like [`new`](Self::new), but an `https` URL is verified against
    /// `roots` only (a private CA, or a test's) instead of the operating
    /// system's bundle.
    pub fn with_roots(cfg: WebhookConfig, roots: RootCertStore) -> Result<Self, DeliveryError> {
        Self::build(cfg, Some(roots))
    }

    fn build(cfg: WebhookConfig, roots: Option<RootCertStore>) -> Result<Self, DeliveryError> {
        if cfg.secret.is_empty() {
            return Err(DeliveryError::permanent("webhook secret must not be empty"));
        }
        if cfg.timeout_ms == 0 {
            return Err(DeliveryError::permanent("webhook timeout_ms must be positive"));
        }
        let target = Target::parse(&cfg.url, roots).map_err(|e| DeliveryError {
            message: format!("webhook {}", e.message),
            ..e
        })?;
        Ok(WebhookSender {
            target,
            secret: cfg.secret.into_bytes(),
            timeout: Duration::from_millis(cfg.timeout_ms),
        })
    }

    /// POSTs `msg` once. `Ok` means the receiver answered `2xx`; see the
    /// module docs for how failures are classified. The error never
    /// contains the message's body or code.
    #[tracing::instrument(skip_all, fields(message_id = msg.id, pool_id = %msg.pool_id, kind = %msg.kind))]
    pub async fn send(&self, msg: &OutgoingMessage) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(&Payload {
            id: msg.id,
            user_pool_id: &msg.pool_id,
            username: &msg.username,
            delivery_medium: msg.medium.as_cognito(),
            destination: &msg.destination,
            kind: &msg.kind,
            subject: &msg.subject,
            body: &msg.body,
            code: &msg.code,
        })
        .map_err(|e| DeliveryError::permanent(format!("encoding webhook payload: {e}")))?;
        let extra = [(MESSAGE_ID_HEADER, msg.id.to_string())];
        let reply = self
            .target
            .post_signed(
                &self.secret,
                &extra,
                body,
                self.timeout,
                BodyUse::Discard(MAX_RESPONSE_BYTES),
            )
            .await
            .map_err(|e| DeliveryError {
                message: format!("webhook {}", e.message),
                ..e
            })?;
        classify(reply.status)
    }
}

/// Success, retry or give up, from the response status alone.
fn classify(status: StatusCode) -> Result<(), DeliveryError> {
    if status.is_success() {
        Ok(())
    } else if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Err(DeliveryError::retry(format!("webhook answered {status}")))
    } else if status.is_redirection() {
        Err(DeliveryError::permanent(format!(
            "webhook answered {status}; redirects are not followed, configure the final url"
        )))
    } else {
        Err(DeliveryError::permanent(format!("webhook answered {status}")))
    }
}

/// Where operating systems keep their PEM bundle of trusted CAs (Debian,
/// Ubuntu and Alpine; Fedora and RHEL; openSUSE; BSDs and macOS).
const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The operating system's trusted CAs, for the courier's outgoing TLS
/// (https webhooks and SMTP STARTTLS) and the CLI's `https://` fetches:
/// the PEM file named by `SSL_CERT_FILE` if set, else the first of the
/// usual bundle paths that holds a certificate. Fails permanently when
/// there is none (install the `ca-certificates` package, or set
/// `SSL_CERT_FILE`).
pub(crate) fn platform_roots() -> Result<RootCertStore, DeliveryError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(platform_root_certs()?);
    Ok(roots)
}

/// The certificates behind [`platform_roots`], for TLS stacks that build
/// their own rustls configuration (lettre's).
pub(crate) fn platform_root_certs() -> Result<Vec<CertificateDer<'static>>, DeliveryError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(file) = std::env::var_os("SSL_CERT_FILE") {
        candidates.push(PathBuf::from(file));
    }
    candidates.extend(CA_BUNDLES.iter().map(PathBuf::from));
    for path in &candidates {
        let Ok(certs) = CertificateDer::pem_file_iter(path) else {
            continue;
        };
        let certs: Vec<CertificateDer<'static>> = certs.filter_map(Result::ok).collect();
        let mut probe = RootCertStore::empty();
        let (added, _ignored) = probe.add_parsable_certificates(certs.iter().cloned());
        if added > 0 {
            tracing::debug!(path = %path.display(), added, "loaded CA bundle for outgoing tls");
            return Ok(certs);
        }
    }
    Err(DeliveryError::permanent(format!(
        "courier tls needs the operating system's CA certificates: none found in SSL_CERT_FILE or {}; \
         install ca-certificates or set SSL_CERT_FILE",
        CA_BUNDLES.join(", ")
    )))
}

/// A rustls client configuration (ring, safe default protocol versions)
/// trusting `roots`, without client certificates.
pub(crate) fn tls_client_config(roots: RootCertStore) -> Result<rustls::ClientConfig, DeliveryError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DeliveryError::permanent(format!("courier tls setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::courier::transport::Medium;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// What the test receiver saw.
    #[derive(Debug)]
    struct Captured {
        request_line: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Captured {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
        }
    }

    /// How the test receiver answers.
    #[derive(Clone, Copy)]
    enum Answer {
        Status(u16),
        /// Read the request, then say nothing until the client gives up.
        Never,
    }

    /// Reads one HTTP/1.1 request from `io`, answers it and returns it.
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, answer: Answer) -> Captured {
        let mut buf = Vec::new();
        let header_end = loop {
            let mut chunk = [0u8; 4096];
            let n = io.read(&mut chunk).await.unwrap();
            assert!(n > 0, "client closed before the end of the headers");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos;
            }
            assert!(buf.len() < 64 * 1024, "headers too long");
        };
        let head = String::from_utf8(buf[..header_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap().to_owned();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap();
        let mut body = buf[header_end + 4..].to_vec();
        while body.len() < len {
            let mut chunk = [0u8; 4096];
            let n = io.read(&mut chunk).await.unwrap();
            assert!(n > 0, "client closed before the end of the body");
            body.extend_from_slice(&chunk[..n]);
        }
        match answer {
            Answer::Status(code) => {
                let reply = format!(
                    "HTTP/1.1 {code} Whatever\r\ncontent-length: 26\r\nconnection: close\r\n\r\nreceiver says: hello there"
                );
                io.write_all(reply.as_bytes()).await.unwrap();
                io.shutdown().await.unwrap();
            }
            Answer::Never => {
                // Hold the connection open until the client hangs up.
                let mut rest = [0u8; 64];
                while io.read(&mut rest).await.map(|n| n > 0).unwrap_or(false) {}
            }
        }
        Captured {
            request_line,
            headers,
            body,
        }
    }

    /// A plain-http receiver on 127.0.0.1:0 answering one request.
    async fn receiver(answer: Answer) -> (String, tokio::task::JoinHandle<Captured>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            serve(stream, answer).await
        });
        (format!("http://{addr}/hooks/cognito?tenant=7"), task)
    }

    fn config(url: &str) -> WebhookConfig {
        WebhookConfig {
            url: url.to_owned(),
            secret: "s3cret-key".to_owned(),
            timeout_ms: 2000,
        }
    }

    fn message() -> OutgoingMessage {
        OutgoingMessage {
            id: 42,
            pool_id: "eu-west-1_pool".to_owned(),
            username: "alice".to_owned(),
            medium: Medium::Email,
            destination: "alice@example.com".to_owned(),
            kind: "CONFIRM_SIGN_UP".to_owned(),
            subject: "Your code".to_owned(),
            body: "Your code is 918273".to_owned(),
            code: "918273".to_owned(),
        }
    }

    /// The signature a receiver computes, written out independently of `sign`.
    fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
        let mut signed = timestamp.as_bytes().to_vec();
        signed.push(b'.');
        signed.extend_from_slice(body);
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&signed);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn check_signed_request(got: &Captured) {
        assert_eq!(got.request_line, "POST /hooks/cognito?tenant=7 HTTP/1.1");
        assert_eq!(got.header("content-type"), Some("application/json"));
        assert_eq!(got.header(MESSAGE_ID_HEADER), Some("42"));
        let timestamp = got.header(TIMESTAMP_HEADER).unwrap();
        let ts: i64 = timestamp.parse().unwrap();
        let now = crate::clock::now_millis() / 1000;
        assert!((now - ts).abs() <= 60, "timestamp {ts} is not now ({now})");
        assert_eq!(
            got.header(SIGNATURE_HEADER),
            Some(expected_signature("s3cret-key", timestamp, &got.body).as_str())
        );
        // A wrong key does not verify.
        assert_ne!(
            got.header(SIGNATURE_HEADER),
            Some(expected_signature("other-key", timestamp, &got.body).as_str())
        );
        let json: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": 42,
                "user_pool_id": "eu-west-1_pool",
                "username": "alice",
                "delivery_medium": "EMAIL",
                "destination": "alice@example.com",
                "kind": "CONFIRM_SIGN_UP",
                "subject": "Your code",
                "body": "Your code is 918273",
                "code": "918273",
            })
        );
    }

    #[tokio::test]
    async fn posts_a_signed_json_message() {
        let (url, receiver) = receiver(Answer::Status(204)).await;
        let sender = WebhookSender::new(config(&url)).unwrap();
        sender.send(&message()).await.unwrap();
        let got = receiver.await.unwrap();
        check_signed_request(&got);
        assert!(got.header("host").unwrap().starts_with("127.0.0.1:"));
    }

    #[tokio::test]
    async fn server_errors_and_throttling_are_retried() {
        for code in [500, 503, 429, 408] {
            let (url, receiver) = receiver(Answer::Status(code)).await;
            let err = WebhookSender::new(config(&url))
                .unwrap()
                .send(&message())
                .await
                .unwrap_err();
            assert!(err.retryable, "{code}: {err}");
            assert!(err.message.contains(&code.to_string()), "{err}");
            receiver.await.unwrap();
        }
    }

    #[tokio::test]
    async fn client_errors_and_redirects_give_up() {
        for code in [400, 401, 404, 410, 301] {
            let (url, receiver) = receiver(Answer::Status(code)).await;
            let err = WebhookSender::new(config(&url))
                .unwrap()
                .send(&message())
                .await
                .unwrap_err();
            assert!(!err.retryable, "{code}: {err}");
            assert!(!err.message.contains("918273"), "error leaks the code: {err}");
            assert!(
                !err.message.contains("receiver says"),
                "error quotes the response: {err}"
            );
            receiver.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_silent_receiver_times_out_as_retryable() {
        let (url, receiver) = receiver(Answer::Never).await;
        let mut cfg = config(&url);
        cfg.timeout_ms = 300;
        let sender = WebhookSender::new(cfg).unwrap();
        let started = crate::clock::instant();
        let err = sender.send(&message()).await.unwrap_err();
        let took = started.elapsed();
        assert!(err.retryable, "{err}");
        assert!(err.message.contains("timed out"), "{err}");
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(3),
            "{took:?}"
        );
        // The receiver got the whole request before going quiet.
        check_signed_request(&receiver.await.unwrap());
    }

    #[tokio::test]
    async fn connection_refused_is_retryable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let sender = WebhookSender::new(config(&format!("http://{addr}/"))).unwrap();
        let err = sender.send(&message()).await.unwrap_err();
        assert!(err.retryable, "{err}");
        assert!(err.message.contains("connecting"), "{err}");
    }

    #[test]
    fn bad_configs_are_refused() {
        for url in [
            "ftp://example.com/x",
            "example.com/hook",
            "http://",
            "https://user:pw@example.com/x",
            "not a url",
            "",
        ] {
            let err = WebhookSender::new(config(url)).unwrap_err();
            assert!(!err.retryable, "{url}: {err}");
        }
        let mut cfg = config("http://127.0.0.1:9/x");
        cfg.secret.clear();
        assert!(WebhookSender::new(cfg).is_err());
        let mut cfg = config("http://127.0.0.1:9/x");
        cfg.timeout_ms = 0;
        assert!(WebhookSender::new(cfg).is_err());
        // A URL without a path posts to "/".
        let sender = WebhookSender::new(config("http://[::1]:8080")).unwrap();
        assert_eq!(sender.target.path, "/");
        assert_eq!(sender.target.host, "::1");
        assert_eq!(sender.target.port, 8080);
    }

    #[test]
    fn config_parses_from_toml_and_hides_the_secret() {
        let cfg: WebhookConfig =
            toml::from_str("url = \"https://hooks.example.com/t\"\nsecret = \"hunter2\"\n").unwrap();
        assert_eq!(cfg.timeout_ms, 5000);
        assert!(!format!("{cfg:?}").contains("hunter2"));
        let sender = WebhookSender::with_roots(cfg, RootCertStore::empty()).unwrap();
        assert_eq!(sender.target.port, 443);
        assert!(!format!("{sender:?}").contains("hunter2"));
        assert!(toml::from_str::<WebhookConfig>("url = \"http://x/\"\nsecret = \"s\"\nsecrett = \"typo\"\n").is_err());
    }

    /// A self-signed certificate for 127.0.0.1: the acceptor that serves it
    /// and a root store that trusts it.
    pub(crate) fn test_tls() -> (tokio_rustls::TlsAcceptor, RootCertStore) {
        let (acceptor, der) = test_tls_cert();
        let mut roots = RootCertStore::empty();
        roots.add(der).unwrap();
        (acceptor, roots)
    }

    /// Like [`test_tls`], with the certificate itself to trust.
    pub(crate) fn test_tls_cert() -> (tokio_rustls::TlsAcceptor, CertificateDer<'static>) {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let der = cert.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        (tokio_rustls::TlsAcceptor::from(Arc::new(server)), der)
    }

    #[tokio::test]
    async fn https_posts_over_verified_tls() {
        let (acceptor, roots) = test_tls();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(stream).await.unwrap();
            serve(tls, Answer::Status(200)).await
        });
        let url = format!("https://{addr}/hooks/cognito?tenant=7");
        let sender = WebhookSender::with_roots(config(&url), roots).unwrap();
        sender.send(&message()).await.unwrap();
        check_signed_request(&receiver.await.unwrap());
    }

    #[tokio::test]
    async fn https_refuses_an_untrusted_certificate() {
        let (acceptor, _roots) = test_tls();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            // The client aborts the handshake.
            acceptor.accept(stream).await.is_err()
        });
        let sender = WebhookSender::with_roots(config(&format!("https://{addr}/")), RootCertStore::empty()).unwrap();
        let err = sender.send(&message()).await.unwrap_err();
        assert!(err.retryable, "{err}");
        assert!(err.message.contains("tls"), "{err}");
        assert!(receiver.await.unwrap(), "the handshake should have failed");
    }
}
