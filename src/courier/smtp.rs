//! The SMTP backend: the leader hands each email to a mail relay (a
//! submission server such as Postfix, SES or a provider's smarthost)
//! through `lettre`, one connection per message.
//!
//! This module owns the mapping of the node's config and of lettre's
//! outcomes onto the courier. It must never put a message's body or code
//! into an error, a log line or a span field, and never let a recipient or
//! subject inject protocol lines or headers: CR and LF in them are refused
//! before connecting (lettre's address parser and header encoder would
//! refuse or encode them too; the explicit check keeps the promise
//! independent of that).
//!
//! The dialogue: TLS first when `tls` is set (implicit TLS, RFC 8314's
//! port 465), greeting, `EHLO`, `STARTTLS` and a second `EHLO` when
//! `starttls` is set (either way the server's certificate is verified
//! against the operating system's CA bundle), `AUTH PLAIN` when
//! credentials are set, `MAIL FROM`, one `RCPT
//! TO`, `DATA`, and `QUIT`. The message is `text/plain; charset=utf-8`;
//! lettre picks 7bit, quoted-printable or base64 so that it needs no
//! `8BITMIME`, and RFC 2047-encodes a non-ASCII subject. A non-ASCII
//! recipient needs a server that offers `SMTPUTF8`.
//!
//! Outcomes: `4xx` replies, timeouts and connection or TLS failures are
//! retried by the courier; `5xx` replies, and what the server lacks
//! (STARTTLS, AUTH PLAIN, SMTPUTF8), give the message up. Once the server
//! has accepted the message (the reply after the data), the attempt counts
//! as delivered whatever happens during `QUIT`, so a slow goodbye never
//! causes a duplicate.
//!
//! Two things the hand-written client did that lettre does not: fall back
//! to `HELO` when a server refuses `EHLO` (no submission server does), and
//! refuse bytes a server sends after its `STARTTLS` reply but before the
//! handshake; lettre would read those as the first replies inside TLS, so
//! a man in the middle could fake replies (not read the message or the
//! credentials, which only travel inside TLS). Implicit TLS (`tls`) has no
//! plaintext phase at all, so it is the setting to use on a network you do
//! not trust, and what RFC 8314 recommends for submission.

use std::time::Duration;

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue, MIME_VERSION_1_0};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::Address;
use serde::Deserialize;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::rustls::pki_types::CertificateDer;

use super::transport::{DeliveryError, Medium, OutgoingMessage};
use super::webhook::platform_root_certs;

/// How much of a server's reply text is quoted in an error.
const MAX_QUOTED_REPLY: usize = 200;

fn default_port() -> u16 {
    25
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_helo_name() -> String {
    "tessera".to_owned()
}

/// The `[courier.smtp]` table of the node configuration.
///
/// ```toml
/// [courier.smtp]
/// host = "smtp.example.com"
/// port = 587
/// from = "Example <no-reply@example.com>"
/// username = "tessera"
/// password = "..."
/// starttls = true
/// timeout_ms = 10000
/// helo_name = "node1.example.com"
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Mail relay to hand messages to: a host name or IP address. With
    /// `starttls` it is also the name the server's certificate must carry.
    pub host: String,
    /// Its port. Default 25; submission servers usually listen on 587.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Sender of every message: `no-reply@example.com` or
    /// `Example <no-reply@example.com>`, printable ASCII. The address is
    /// also the envelope sender (`MAIL FROM`), where bounces go.
    pub from: String,
    /// User for `AUTH PLAIN`. Set with `password`, or leave both unset to
    /// send without authenticating.
    pub username: Option<String>,
    /// Password for `AUTH PLAIN`. Never printed, not even by `Debug`.
    /// Without `starttls` it crosses the network in the clear, and the node
    /// logs a warning.
    pub password: Option<String>,
    /// Upgrade the connection with `STARTTLS` before authenticating and
    /// sending, verifying the server against the operating system's CA
    /// bundle. A server that does not offer it fails every delivery.
    /// Default false.
    #[serde(default)]
    pub starttls: bool,
    /// Speak TLS from the first byte (implicit TLS, usually port 465),
    /// verifying the server as with `starttls`. Excludes `starttls`.
    /// Default false.
    #[serde(default)]
    pub tls: bool,
    /// Limit on one delivery attempt, in milliseconds, from connecting to
    /// the server's acceptance of the message. Default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The name this node gives in `EHLO`, and the right-hand side of
    /// `Message-ID`s: ideally its fully qualified host name. Letters,
    /// digits, `.` and `-`. Default `tessera`.
    #[serde(default = "default_helo_name")]
    pub helo_name: String,
}

impl std::fmt::Debug for SmtpConfig {
    /// Hides the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("starttls", &self.starttls)
            .field("tls", &self.tls)
            .field("timeout_ms", &self.timeout_ms)
            .field("helo_name", &self.helo_name)
            .finish()
    }
}

/// Delivers email [`OutgoingMessage`]s through an SMTP relay. Cheap to
/// share behind an `Arc`; every [`send`](Self::send) opens its own
/// connection.
pub struct SmtpSender {
    host: String,
    port: u16,
    /// Bare address for `MAIL FROM`.
    envelope_from: Address,
    /// The configured `from`, as the `From:` header.
    from_header: Mailbox,
    hello: ClientId,
    /// Helo name, the right-hand side of `Message-ID`s.
    helo_name: String,
    /// For `AUTH PLAIN`. Secret.
    credentials: Option<Credentials>,
    /// `Some` when `starttls` or `tls` is set: the verified-TLS parameters.
    tls: Option<TlsParameters>,
    /// TLS from the first byte (`tls`) rather than after `STARTTLS`.
    implicit_tls: bool,
    timeout: Duration,
}

impl std::fmt::Debug for SmtpSender {
    /// Hides the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSender")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from_header.to_string())
            .field("auth", &self.credentials.is_some())
            .field("tls", &self.tls.is_some())
            .field("implicit_tls", &self.implicit_tls)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SmtpSender {
    /// A sender for `cfg`. Fails (permanently) on an unusable host, port,
    /// `from` or `helo_name`, a zero timeout, a username without a password
    /// (or the reverse), or, with `starttls`, when the operating system has
    /// no CA bundle.
    pub fn new(cfg: SmtpConfig) -> Result<Self, DeliveryError> {
        Self::build(cfg, None)
    }

    /// Like [`new`](Self::new), but with `starttls` the server is verified
    /// against `roots` only (a private CA, or a test's) instead of the
    /// operating system's bundle.
    pub fn with_roots(cfg: SmtpConfig, roots: Vec<CertificateDer<'static>>) -> Result<Self, DeliveryError> {
        Self::build(cfg, Some(roots))
    }

    fn build(cfg: SmtpConfig, roots: Option<Vec<CertificateDer<'static>>>) -> Result<Self, DeliveryError> {
        let bad = |why: String| DeliveryError::permanent(format!("smtp config: {why}"));
        if cfg.host.is_empty() || cfg.host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(format!("host {:?} is not a host name or address", cfg.host)));
        }
        if cfg.port == 0 {
            return Err(bad("port must not be 0".to_owned()));
        }
        if cfg.timeout_ms == 0 {
            return Err(bad("timeout_ms must be positive".to_owned()));
        }
        if cfg.helo_name.is_empty()
            || !cfg
                .helo_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(bad(format!(
                "helo_name {:?} must be a host name (letters, digits, '.', '-')",
                cfg.helo_name
            )));
        }
        let from = cfg.from.trim();
        if !from.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(bad(format!("from {from:?} must be printable ASCII")));
        }
        let from_header: Mailbox = from
            .parse()
            .map_err(|e| bad(format!("from {from:?} is not an address or \"Name <address>\": {e}")))?;
        let credentials = match (cfg.username, cfg.password) {
            (None, None) => None,
            (Some(user), Some(password)) => {
                if [&user, &password].iter().any(|s| s.contains(['\0', '\r', '\n'])) {
                    return Err(bad("username and password must not contain NUL, CR or LF".to_owned()));
                }
                Some(Credentials::new(user, password))
            }
            _ => return Err(bad("username and password must be set together".to_owned())),
        };
        if cfg.starttls && cfg.tls {
            return Err(bad(
                "set starttls (upgrade a plain connection) or tls (TLS from the first byte), not both".to_owned(),
            ));
        }
        if credentials.is_some() && !cfg.starttls && !cfg.tls {
            tracing::warn!(host = %cfg.host, "smtp credentials will cross the network unencrypted; set tls or starttls = true");
        }
        let tls = if cfg.starttls || cfg.tls {
            let roots = match roots {
                Some(roots) => roots,
                None => platform_root_certs()?,
            };
            Some(tls_parameters(&cfg.host, roots).map_err(|why| bad(format!("tls for {:?}: {why}", cfg.host)))?)
        } else {
            None
        };
        Ok(SmtpSender {
            host: cfg.host,
            port: cfg.port,
            envelope_from: from_header.email.clone(),
            from_header,
            hello: ClientId::Domain(cfg.helo_name.clone()),
            helo_name: cfg.helo_name,
            credentials,
            tls,
            implicit_tls: cfg.tls,
            timeout: Duration::from_millis(cfg.timeout_ms),
        })
    }

    /// Hands `msg` to the relay once. `Ok` means the relay accepted it. Only
    /// [`Medium::Email`] is delivered; a recipient or subject holding CR or
    /// LF is refused before connecting. The error never contains the
    /// message's body or code.
    #[tracing::instrument(skip_all, fields(message_id = msg.id, pool_id = %msg.pool_id, kind = %msg.kind))]
    pub async fn send(&self, msg: &OutgoingMessage) -> Result<(), DeliveryError> {
        if msg.medium != Medium::Email {
            return Err(DeliveryError::permanent("the smtp backend delivers email only"));
        }
        if msg.destination.contains(['\r', '\n']) {
            return Err(DeliveryError::permanent("email destination contains CR or LF; refused"));
        }
        if msg.subject.contains(['\r', '\n']) {
            return Err(DeliveryError::permanent("email subject contains CR or LF; refused"));
        }
        let to: Address = msg
            .destination
            .parse()
            .map_err(|e| DeliveryError::permanent(format!("email destination is not a plain address: {e}")))?;
        let data = self.compose(msg, &to, crate::clock::now_millis())?;
        let deadline = Instant::now() + self.timeout;
        let mut accepted = false;
        match timeout_at(deadline, self.deliver(&to, &data, &mut accepted)).await {
            Ok(result) => result,
            // Only the goodbye ran out of time: the relay has the message.
            Err(_) if accepted => Ok(()),
            Err(_) => Err(DeliveryError::retry(format!(
                "smtp exchange with {}:{} timed out after {} ms",
                self.host,
                self.port,
                self.timeout.as_millis()
            ))),
        }
    }

    /// The message as sent after `DATA` (lettre dot-stuffs it on the way).
    fn compose(&self, msg: &OutgoingMessage, to: &Address, now_millis: i64) -> Result<Vec<u8>, DeliveryError> {
        let date = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(now_millis).unwrap_or(0));
        let message = Message::builder()
            .from(self.from_header.clone())
            .to(Mailbox::new(None, to.clone()))
            .subject(msg.subject.as_str())
            .date(date)
            .message_id(Some(format!("<tessera-{}@{}>", msg.id, self.helo_name)))
            .header(AutoSubmitted)
            .header(MIME_VERSION_1_0)
            .header(ContentType::TEXT_PLAIN)
            .body(msg.body.clone())
            // The error names a header, never the body.
            .map_err(|e| DeliveryError::permanent(format!("composing the email: {e}")))?;
        Ok(message.formatted())
    }

    /// The whole dialogue; sets `accepted` once the relay has the message.
    async fn deliver(&self, to: &Address, data: &[u8], accepted: &mut bool) -> Result<(), DeliveryError> {
        let implicit = self.tls.clone().filter(|_| self.implicit_tls);
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            Some(self.timeout),
            &self.hello,
            implicit,
            None,
        )
        .await
        .map_err(|e| failure(&format!("connecting to smtp {}:{}", self.host, self.port), &e, true))?;
        if let Some(tls) = self.tls.as_ref().filter(|_| !self.implicit_tls) {
            if !conn.server_info().supports_feature(Extension::StartTls) {
                return Err(DeliveryError::permanent("smtp server does not offer STARTTLS"));
            }
            conn.starttls(tls.clone(), &self.hello)
                .await
                .map_err(|e| failure(&format!("smtp tls with {}", self.host), &e, true))?;
        }
        if let Some(credentials) = &self.credentials {
            if !conn.server_info().supports_auth_mechanism(Mechanism::Plain) {
                return Err(DeliveryError::permanent(if self.tls.is_none() {
                    "smtp server does not offer AUTH PLAIN (many offer it only after STARTTLS: set starttls = true)"
                } else {
                    "smtp server does not offer AUTH PLAIN"
                }));
            }
            // The error quotes the server, never the credentials.
            conn.auth(&[Mechanism::Plain], credentials)
                .await
                .map_err(|e| failure("smtp AUTH", &e, true))?;
        }
        let mut params = Vec::new();
        if !AsRef::<str>::as_ref(to).is_ascii() {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(DeliveryError::permanent(
                    "email destination is not ASCII and the smtp server does not offer SMTPUTF8",
                ));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        if !data.is_ascii() {
            // lettre encodes the body and subject, so this is only a guard.
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                return Err(DeliveryError::permanent(
                    "email is not ASCII and the server lacks 8BITMIME",
                ));
            }
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        conn.command(Mail::new(Some(self.envelope_from.clone()), params))
            .await
            .map_err(|e| failure("smtp MAIL FROM", &e, true))?;
        conn.command(Rcpt::new(to.clone(), Vec::new()))
            .await
            .map_err(|e| failure("smtp RCPT TO", &e, true))?;
        conn.command(Data).await.map_err(|e| failure("smtp DATA", &e, true))?;
        // A content filter's reply could quote the message: code only.
        conn.message(data)
            .await
            .map_err(|e| failure("smtp message", &e, false))?;
        *accepted = true;
        // A courtesy (QUIT, errors ignored): the relay already has the message.
        conn.abort().await;
        Ok(())
    }
}

/// `Auto-Submitted: auto-generated` (RFC 3834), so that vacation responders
/// do not answer codes.
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

/// STARTTLS parameters trusting exactly `roots`; certificates that rustls
/// cannot parse (a bundle may hold a few) are skipped.
fn tls_parameters(host: &str, roots: Vec<CertificateDer<'static>>) -> Result<TlsParameters, String> {
    let mut builder = TlsParameters::builder(host.to_owned()).certificate_store(CertificateStore::None);
    let mut usable = 0usize;
    for der in roots {
        let mut probe = tokio_rustls::rustls::RootCertStore::empty();
        if probe.add(der.clone()).is_err() {
            continue;
        }
        if let Ok(cert) = Certificate::from_der(der.to_vec()) {
            builder = builder.add_root_certificate(cert);
            usable += 1;
        }
    }
    if usable == 0 {
        tracing::warn!("smtp starttls has no usable CA certificate; every handshake will fail");
    }
    builder.build_rustls().map_err(|e| e.to_string())
}

/// A lettre error as a [`DeliveryError`]: `5xx` replies and what this
/// client refuses are permanent, the rest (`4xx`, network, TLS, timeouts,
/// malformed replies) retryable. With `quote`, the server's reply text is
/// kept, shortened and without control characters; without it, only its
/// code.
fn failure(step: &str, e: &lettre::transport::smtp::Error, quote: bool) -> DeliveryError {
    let detail = std::error::Error::source(e).map(|d| d.to_string()).unwrap_or_default();
    let text = match e.status() {
        Some(code) if quote => format!("{step}: server answered {code} {}", shorten(&detail)),
        Some(code) => {
            // Only the enhanced status code (`5.7.1`), never free text.
            let enhanced = detail
                .split_whitespace()
                .next()
                .filter(|w| w.contains('.') && w.chars().all(|c| c.is_ascii_digit() || c == '.'))
                .unwrap_or("");
            format!("{step}: server answered {code} {enhanced}")
        }
        None => format!("{step}: {}", shorten(&e.to_string())),
    };
    let text = text.trim_end().to_owned();
    if e.is_permanent() || e.is_client() {
        DeliveryError::permanent(text)
    } else if e.is_timeout() {
        DeliveryError::retry(format!("{text} (timed out)"))
    } else {
        DeliveryError::retry(text)
    }
}

/// `text` without control characters, cut to [`MAX_QUOTED_REPLY`].
fn shorten(text: &str) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_QUOTED_REPLY)
        .collect();
    if text.chars().count() > MAX_QUOTED_REPLY {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::courier::webhook::tests::test_tls_cert;
    use base64::Engine as _;
    use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    /// How the test server behaves.
    #[derive(Clone)]
    struct Script {
        /// Offer STARTTLS with this certificate (and AUTH only after it).
        starttls: Option<TlsAcceptor>,
        /// Speak TLS from the first byte with this certificate.
        implicit: Option<TlsAcceptor>,
        rcpt: &'static str,
        after_data: &'static str,
        /// Greet, then never answer.
        mute: bool,
    }

    impl Default for Script {
        fn default() -> Self {
            Script {
                starttls: None,
                implicit: None,
                rcpt: "250 2.1.5 ok",
                after_data: "250 2.0.0 queued as 1234",
                mute: false,
            }
        }
    }

    /// What the test server saw.
    #[derive(Debug, Default)]
    struct Seen {
        commands: Vec<String>,
        auth: Option<String>,
        data: Vec<u8>,
        tls: bool,
    }

    enum Next {
        Done,
        StartTls,
    }

    /// A real SMTP server on 127.0.0.1:0 for one session.
    async fn server(script: Script) -> (u16, tokio::task::JoinHandle<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut seen = Seen::default();
            if let Some(acceptor) = script.implicit.clone() {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return seen;
                };
                seen.tls = true;
                tls.write_all(b"220 sink.test ESMTP ready\r\n").await.unwrap();
                converse(&mut BufReader::new(tls), &script, &mut seen, true).await;
                return seen;
            }
            stream.write_all(b"220 sink.test ESMTP ready\r\n").await.unwrap();
            if script.mute {
                let mut rest = [0u8; 256];
                while stream.read(&mut rest).await.map(|n| n > 0).unwrap_or(false) {}
                return seen;
            }
            let mut io = BufReader::new(stream);
            if let Next::StartTls = converse(&mut io, &script, &mut seen, false).await {
                assert!(io.buffer().is_empty());
                let acceptor = script.starttls.clone().unwrap();
                // A client that distrusts the certificate aborts the handshake.
                let Ok(tls) = acceptor.accept(io.into_inner()).await else {
                    return seen;
                };
                seen.tls = true;
                converse(&mut BufReader::new(tls), &script, &mut seen, true).await;
            }
            seen
        });
        (port, task)
    }

    async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
        io: &mut BufReader<S>,
        script: &Script,
        seen: &mut Seen,
        in_tls: bool,
    ) -> Next {
        loop {
            let mut raw = Vec::new();
            if io.read_until(b'\n', &mut raw).await.unwrap() == 0 {
                return Next::Done;
            }
            let line = String::from_utf8(raw).unwrap();
            let line = line.strip_suffix("\r\n").expect("command lines end in CRLF").to_owned();
            seen.commands.push(line.clone());
            let upper = line.to_ascii_uppercase();
            let reply = if upper.starts_with("EHLO ") {
                let mut r = String::from("250-sink.test greets you\r\n250-8BITMIME\r\n");
                if script.starttls.is_some() && !in_tls {
                    r.push_str("250-STARTTLS\r\n");
                } else {
                    r.push_str("250-AUTH LOGIN PLAIN\r\n");
                }
                r.push_str("250 SIZE 10000000\r\n");
                r
            } else if upper == "STARTTLS" {
                io.get_mut().write_all(b"220 2.0.0 go ahead\r\n").await.unwrap();
                return Next::StartTls;
            } else if let Some(token) = line.strip_prefix("AUTH PLAIN ") {
                seen.auth = Some(token.to_owned());
                "235 2.7.0 authenticated\r\n".to_owned()
            } else if upper.starts_with("MAIL FROM:") {
                "250 2.1.0 ok\r\n".to_owned()
            } else if upper.starts_with("RCPT TO:") {
                format!("{}\r\n", script.rcpt)
            } else if upper == "DATA" {
                io.get_mut().write_all(b"354 go on\r\n").await.unwrap();
                loop {
                    let mut raw = Vec::new();
                    assert!(io.read_until(b'\n', &mut raw).await.unwrap() > 0, "eof in DATA");
                    seen.data.extend_from_slice(&raw);
                    if raw == b".\r\n" {
                        break;
                    }
                }
                format!("{}\r\n", script.after_data)
            } else if upper == "QUIT" {
                io.get_mut().write_all(b"221 2.0.0 bye\r\n").await.unwrap();
                return Next::Done;
            } else {
                "502 5.5.2 unknown command\r\n".to_owned()
            };
            io.get_mut().write_all(reply.as_bytes()).await.unwrap();
        }
    }

    /// The command verbs the server saw, in order.
    fn verbs(seen: &Seen) -> Vec<&str> {
        seen.commands.iter().map(|c| c.split(' ').next().unwrap()).collect()
    }

    fn config(port: u16) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".to_owned(),
            port,
            from: "Tessera <noreply@example.com>".to_owned(),
            username: Some("mailer".to_owned()),
            password: Some("pa55word".to_owned()),
            starttls: false,
            tls: false,
            timeout_ms: 2000,
            helo_name: "tessera.test".to_owned(),
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
            subject: "Your verification code".to_owned(),
            body: "Your code is 918273\n.hidden line\n..two dots\r\nlast line\n".to_owned(),
            code: "918273".to_owned(),
        }
    }

    /// Headers (name, value) and body of a captured DATA payload, checking
    /// its framing on the way.
    fn split_data(data: &[u8]) -> (Vec<(String, String)>, String) {
        let text = String::from_utf8(data.to_vec()).unwrap();
        assert!(text.ends_with("\r\n.\r\n"), "unterminated: {text:?}");
        assert!(
            text.match_indices('\n').all(|(i, _)| i > 0 && &text[i - 1..i] == "\r"),
            "bare LF in {text:?}"
        );
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut headers: Vec<(String, String)> = Vec::new();
        for l in head.split("\r\n") {
            if l.starts_with([' ', '\t']) {
                // A folded header continues the previous one.
                headers.last_mut().unwrap().1.push_str(l);
                continue;
            }
            let (n, v) = l.split_once(": ").unwrap();
            headers.push((n.to_owned(), v.to_owned()));
        }
        (headers, body.strip_suffix(".\r\n").unwrap().to_owned())
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[tokio::test]
    async fn delivers_with_headers_dot_stuffing_and_auth() {
        let (port, server) = server(Script::default()).await;
        SmtpSender::new(config(port)).unwrap().send(&message()).await.unwrap();
        let seen = server.await.unwrap();
        assert_eq!(verbs(&seen), ["EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"]);
        assert_eq!(seen.commands[0], "EHLO tessera.test");
        assert_eq!(seen.commands[2], "MAIL FROM:<noreply@example.com>");
        assert_eq!(seen.commands[3], "RCPT TO:<alice@example.com>");
        let auth = base64::engine::general_purpose::STANDARD
            .decode(seen.auth.unwrap())
            .unwrap();
        assert_eq!(auth, b"\0mailer\0pa55word");

        let (headers, body) = split_data(&seen.data);
        assert_eq!(header(&headers, "From"), "Tessera <noreply@example.com>");
        assert_eq!(header(&headers, "To"), "alice@example.com");
        assert_eq!(header(&headers, "Subject"), "Your verification code");
        assert_eq!(header(&headers, "Message-ID"), "<tessera-42@tessera.test>");
        assert_eq!(header(&headers, "MIME-Version"), "1.0");
        assert_eq!(header(&headers, "Content-Type"), "text/plain; charset=utf-8");
        assert_eq!(header(&headers, "Content-Transfer-Encoding"), "7bit");
        assert!(header(&headers, "Date").ends_with(" +0000"));
        // lettre ends the body with one CRLF of its own before the final dot.
        assert_eq!(
            body.trim_end_matches("\r\n"),
            "Your code is 918273\r\n..hidden line\r\n...two dots\r\nlast line"
        );
        // Undoing the stuffing gives the body back.
        let unstuffed: Vec<&str> = body
            .trim_end_matches("\r\n")
            .lines()
            .map(|l| l.strip_prefix('.').unwrap_or(l))
            .collect();
        assert_eq!(
            unstuffed,
            ["Your code is 918273", ".hidden line", "..two dots", "last line"]
        );
    }

    #[tokio::test]
    async fn without_credentials_there_is_no_auth() {
        let (port, server) = server(Script::default()).await;
        let mut cfg = config(port);
        cfg.username = None;
        cfg.password = None;
        SmtpSender::new(cfg).unwrap().send(&message()).await.unwrap();
        let seen = server.await.unwrap();
        assert!(seen.auth.is_none());
        assert!(!seen.commands.iter().any(|c| c.starts_with("AUTH")));
    }

    #[tokio::test]
    async fn starttls_upgrades_before_auth() {
        let (acceptor, root) = test_tls_cert();
        let (port, server) = server(Script {
            starttls: Some(acceptor),
            ..Script::default()
        })
        .await;
        let mut cfg = config(port);
        cfg.starttls = true;
        SmtpSender::with_roots(cfg, vec![root])
            .unwrap()
            .send(&message())
            .await
            .unwrap();
        let seen = server.await.unwrap();
        assert!(seen.tls);
        assert_eq!(
            verbs(&seen),
            ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"]
        );
        assert!(seen.auth.is_some());
        assert!(split_data(&seen.data).1.starts_with("Your code is 918273\r\n"));
    }

    /// Implicit TLS: the handshake comes first, so no command and no reply
    /// ever crosses the network in the clear.
    #[tokio::test]
    async fn implicit_tls_speaks_tls_from_the_first_byte() {
        let (acceptor, root) = test_tls_cert();
        let (port, tls_server) = server(Script {
            implicit: Some(acceptor),
            ..Script::default()
        })
        .await;
        let mut cfg = config(port);
        cfg.tls = true;
        SmtpSender::with_roots(cfg, vec![root])
            .unwrap()
            .send(&message())
            .await
            .unwrap();
        let seen = tls_server.await.unwrap();
        assert!(seen.tls);
        assert_eq!(verbs(&seen), ["EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"]);
        // Against a plaintext server the same setting fails (retryably)
        // in the handshake instead of falling back to plain SMTP.
        let (port, plain) = server(Script::default()).await;
        let mut cfg = config(port);
        cfg.tls = true;
        let (_, root) = test_tls_cert();
        let e = SmtpSender::with_roots(cfg, vec![root])
            .unwrap()
            .send(&message())
            .await
            .unwrap_err();
        assert!(e.retryable, "{e}");
        // What it read was a TLS hello, not a command; it may choke on it.
        plain.abort();
        let mut both = config(1);
        both.tls = true;
        both.starttls = true;
        assert!(SmtpSender::new(both).is_err(), "tls and starttls together");
    }

    #[tokio::test]
    async fn starttls_refuses_an_untrusted_certificate() {
        let (acceptor, _root) = test_tls_cert();
        let (port, server) = server(Script {
            starttls: Some(acceptor),
            ..Script::default()
        })
        .await;
        let mut cfg = config(port);
        cfg.starttls = true;
        let err = SmtpSender::with_roots(cfg, Vec::new())
            .unwrap()
            .send(&message())
            .await
            .unwrap_err();
        assert!(err.retryable, "{err}");
        assert!(err.message.contains("tls"), "{err}");
        assert!(!server.await.unwrap().tls);
    }

    #[tokio::test]
    async fn starttls_required_but_not_offered_gives_up() {
        let (port, server) = server(Script::default()).await;
        let mut cfg = config(port);
        cfg.starttls = true;
        let (_acceptor, root) = test_tls_cert();
        let err = SmtpSender::with_roots(cfg, vec![root])
            .unwrap()
            .send(&message())
            .await
            .unwrap_err();
        assert!(!err.retryable, "{err}");
        assert!(err.message.contains("STARTTLS"), "{err}");
        server.await.unwrap();
    }

    async fn outcome(script: Script) -> DeliveryError {
        let (port, server) = server(script).await;
        let err = SmtpSender::new(config(port))
            .unwrap()
            .send(&message())
            .await
            .unwrap_err();
        server.await.unwrap();
        assert!(!err.message.contains("918273"), "error leaks the code: {err}");
        err
    }

    #[tokio::test]
    async fn rejections_are_permanent_and_deferrals_retried() {
        let err = outcome(Script {
            rcpt: "550 5.1.1 no such user here",
            ..Script::default()
        })
        .await;
        assert!(!err.retryable, "{err}");
        assert!(err.message.contains("550 5.1.1 no such user here"), "{err}");

        let err = outcome(Script {
            rcpt: "451 4.3.0 try again later",
            ..Script::default()
        })
        .await;
        assert!(err.retryable, "{err}");
        assert!(err.message.contains("451"), "{err}");

        let err = outcome(Script {
            after_data: "451 4.7.1 greylisted",
            ..Script::default()
        })
        .await;
        assert!(err.retryable, "{err}");

        // A content filter quoting the message is not quoted back.
        let err = outcome(Script {
            after_data: "554 5.7.1 rejected: Your code is 918273",
            ..Script::default()
        })
        .await;
        assert!(!err.retryable, "{err}");
        assert!(err.message.contains("554 5.7.1"), "{err}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out_as_retryable() {
        let (port, server) = server(Script {
            mute: true,
            ..Script::default()
        })
        .await;
        let mut cfg = config(port);
        cfg.timeout_ms = 300;
        let started = crate::clock::instant();
        let err = SmtpSender::new(cfg).unwrap().send(&message()).await.unwrap_err();
        let took = started.elapsed();
        assert!(err.retryable, "{err}");
        assert!(err.message.contains("timed out"), "{err}");
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(3),
            "{took:?}"
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn header_injection_and_sms_are_refused_before_connecting() {
        // Nothing listens here: reaching the network would be a retryable
        // connection error, not the permanent refusal expected.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let sender = SmtpSender::new(config(port)).unwrap();

        let mut msg = message();
        msg.subject = "Hello\r\nBcc: everyone@example.com".to_owned();
        let err = sender.send(&msg).await.unwrap_err();
        assert!(!err.retryable && err.message.contains("subject"), "{err}");

        let mut msg = message();
        msg.subject = "Hello\nBcc: everyone@example.com".to_owned();
        assert!(!sender.send(&msg).await.unwrap_err().retryable);

        let mut msg = message();
        msg.destination = "alice@example.com>\r\nRCPT TO:<mallory@example.com".to_owned();
        let err = sender.send(&msg).await.unwrap_err();
        assert!(!err.retryable && err.message.contains("destination"), "{err}");

        let mut msg = message();
        msg.destination = "alice@example.com> NOTIFY=NEVER".to_owned();
        assert!(!sender.send(&msg).await.unwrap_err().retryable);

        let mut msg = message();
        msg.medium = Medium::Sms;
        msg.destination = "+15555550100".to_owned();
        let err = sender.send(&msg).await.unwrap_err();
        assert!(!err.retryable);
        assert_eq!(err.message, "the smtp backend delivers email only");

        // The check is what refused them: a clean message does reach the network.
        let err = sender.send(&message()).await.unwrap_err();
        assert!(err.retryable && err.message.contains("connecting"), "{err}");
    }

    #[test]
    fn bad_configs_are_refused() {
        let cases: [fn(&mut SmtpConfig); 8] = [
            |c| c.from = "noreply@example.com\r\nBcc: x@example.com".to_owned(),
            |c| c.from = "Tessera <noreply@example.com".to_owned(),
            |c| c.from = "not an address".to_owned(),
            |c| c.password = None,
            |c| c.helo_name = "bad name".to_owned(),
            |c| c.host = String::new(),
            |c| c.port = 0,
            |c| c.timeout_ms = 0,
        ];
        for (i, change) in cases.iter().enumerate() {
            let mut cfg = config(2525);
            change(&mut cfg);
            let err = SmtpSender::new(cfg).unwrap_err();
            assert!(!err.retryable, "case {i}: {err}");
        }
        let sender = SmtpSender::new(config(2525)).unwrap();
        assert_eq!(sender.envelope_from.to_string(), "noreply@example.com");
        let mut cfg = config(2525);
        cfg.from = " plain@example.com ".to_owned();
        assert_eq!(
            SmtpSender::new(cfg).unwrap().envelope_from.to_string(),
            "plain@example.com"
        );
    }

    #[test]
    fn config_parses_from_toml_and_hides_the_password() {
        let cfg: SmtpConfig =
            toml::from_str("host = \"smtp.example.com\"\nfrom = \"a@example.com\"\npassword = \"hunter2\"\n").unwrap();
        assert_eq!(cfg.port, 25);
        assert!(!cfg.starttls);
        assert_eq!(cfg.timeout_ms, 10_000);
        assert_eq!(cfg.helo_name, "tessera");
        assert!(cfg.username.is_none());
        assert!(!format!("{cfg:?}").contains("hunter2"));
        let mut cfg = config(25);
        cfg.password = Some("hunter2".to_owned());
        let sender = SmtpSender::new(cfg).unwrap();
        assert!(!format!("{sender:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn non_ascii_subject_and_body_are_encoded() {
        let (port, server) = server(Script::default()).await;
        let mut msg = message();
        msg.subject = "Código ".repeat(20);
        msg.body = "Olá = 1 \n.x".to_owned();
        SmtpSender::new(config(port)).unwrap().send(&msg).await.unwrap();
        let seen = server.await.unwrap();
        // Sent as ASCII, so the server needs no 8BITMIME.
        assert!(seen.data.is_ascii());
        assert!(!seen.commands.iter().any(|c| c.contains("BODY=8BITMIME")));
        let (headers, _body) = split_data(&seen.data);
        assert!(header(&headers, "Subject").to_ascii_lowercase().starts_with("=?utf-8?"));
        assert!(
            ["quoted-printable", "base64"].contains(&header(&headers, "Content-Transfer-Encoding")),
            "{headers:?}"
        );
    }
}
