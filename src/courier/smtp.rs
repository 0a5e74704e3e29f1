//! The SMTP backend: the leader hands each email to a mail relay (a
//! submission server such as Postfix, SES or a provider's smarthost) with a
//! small client written here, one connection per message.
//!
//! This module owns the SMTP dialogue and the message's wire format. It
//! must never put a message's body or code into an error, a log line or a
//! span field, and never let a recipient or subject inject protocol lines
//! or headers: CR and LF in them are refused before connecting.
//!
//! The dialogue: greeting, `EHLO` (`HELO` for servers that reject `EHLO`),
//! `STARTTLS` and a second `EHLO` when `starttls` is set (the server's
//! certificate is verified against the operating system's CA bundle; there
//! is no implicit-TLS "port 465" mode), `AUTH PLAIN` when credentials are
//! set, `MAIL FROM`, one `RCPT TO`, `DATA`, and `QUIT`. The message is
//! `text/plain; charset=utf-8`, sent as 7bit when the body is plain ASCII
//! and quoted-printable otherwise, so it needs no `8BITMIME`; a non-ASCII
//! subject is RFC 2047-encoded. A non-ASCII recipient needs a server that
//! offers `SMTPUTF8`.
//!
//! Outcomes: `4xx` replies, timeouts and connection or TLS failures are
//! retried by the courier; `5xx` replies give the message up. Once the
//! server has accepted the message (the reply after the data), the attempt
//! counts as delivered whatever happens during `QUIT`, so a slow goodbye
//! never causes a duplicate.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::RootCertStore;
use tokio_rustls::TlsConnector;

use super::transport::{DeliveryError, Medium, OutgoingMessage};
use super::webhook::{platform_roots, tls_client_config};

/// Longest reply line accepted from a server, CRLF included.
const MAX_REPLY_LINE: usize = 4096;
/// Most lines accepted in one multi-line reply.
const MAX_REPLY_LINES: usize = 64;
/// How much of a server's reply text is quoted in an error.
const MAX_QUOTED_REPLY: usize = 200;
/// Longest body line sent as 7bit (RFC 5321 allows 998 plus CRLF).
const MAX_7BIT_LINE: usize = 998;

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
    envelope_from: String,
    /// The configured `from`, as the `From:` header.
    from_header: String,
    helo_name: String,
    /// Base64 `\0user\0password`, the `AUTH PLAIN` initial response. Secret.
    auth_plain: Option<String>,
    /// `Some` when `starttls` is set: the connector and the name the
    /// certificate must carry.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    timeout: Duration,
}

impl std::fmt::Debug for SmtpSender {
    /// Hides the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSender")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from_header)
            .field("auth", &self.auth_plain.is_some())
            .field("starttls", &self.tls.is_some())
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
    pub fn with_roots(cfg: SmtpConfig, roots: RootCertStore) -> Result<Self, DeliveryError> {
        Self::build(cfg, Some(roots))
    }

    fn build(cfg: SmtpConfig, roots: Option<RootCertStore>) -> Result<Self, DeliveryError> {
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
        let (envelope_from, from_header) = parse_from(&cfg.from).map_err(|why| bad(format!("from {why}")))?;
        let auth_plain = match (&cfg.username, &cfg.password) {
            (None, None) => None,
            (Some(user), Some(password)) => {
                if [user, password].iter().any(|s| s.contains(['\0', '\r', '\n'])) {
                    return Err(bad("username and password must not contain NUL, CR or LF".to_owned()));
                }
                let token = format!("\0{user}\0{password}");
                Some(base64::engine::general_purpose::STANDARD.encode(token))
            }
            _ => return Err(bad("username and password must be set together".to_owned())),
        };
        if auth_plain.is_some() && !cfg.starttls {
            tracing::warn!(host = %cfg.host, "smtp credentials will cross the network unencrypted; set starttls = true");
        }
        let tls = if cfg.starttls {
            let name = ServerName::try_from(cfg.host.clone())
                .map_err(|_| bad(format!("host {:?} is not a valid TLS server name", cfg.host)))?;
            let roots = match roots {
                Some(roots) => roots,
                None => platform_roots()?,
            };
            Some((TlsConnector::from(Arc::new(tls_client_config(roots)?)), name))
        } else {
            None
        };
        Ok(SmtpSender {
            host: cfg.host,
            port: cfg.port,
            envelope_from,
            from_header,
            helo_name: cfg.helo_name,
            auth_plain,
            tls,
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
        check_address(&msg.destination).map_err(|why| DeliveryError::permanent(format!("email destination {why}")))?;
        if msg.subject.contains(['\r', '\n']) {
            return Err(DeliveryError::permanent("email subject contains CR or LF; refused"));
        }
        let data = compose(msg, &self.from_header, &self.helo_name, crate::clock::now_millis());
        let deadline = Instant::now() + self.timeout;
        let mut accepted = false;
        match timeout_at(deadline, self.deliver(msg, &data, &mut accepted)).await {
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

    /// The whole dialogue; sets `accepted` once the relay has the message.
    async fn deliver(&self, msg: &OutgoingMessage, data: &[u8], accepted: &mut bool) -> Result<(), DeliveryError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| DeliveryError::retry(format!("connecting to smtp {}:{}: {e}", self.host, self.port)))?;
        // Short commands, each awaited: do not wait for Nagle. Harmless if it fails.
        let _ = tcp.set_nodelay(true);
        let mut conn = Conn::new(tcp);
        conn.reply().await?.expect("greeting", 220)?;
        let caps = conn.hello(&self.helo_name).await?;
        match &self.tls {
            None => self.transaction(&mut conn, &caps, msg, data, accepted).await,
            Some((connector, name)) => {
                if !caps.starttls {
                    return Err(DeliveryError::permanent("smtp server does not offer STARTTLS"));
                }
                conn.command("STARTTLS").await?.expect("STARTTLS", 220)?;
                let tcp = conn.into_inner()?;
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| DeliveryError::retry(format!("smtp tls with {}: {e}", self.host)))?;
                let mut conn = Conn::new(tls);
                // Capabilities learnt before TLS are void (RFC 3207).
                let caps = conn.hello(&self.helo_name).await?;
                self.transaction(&mut conn, &caps, msg, data, accepted).await
            }
        }
    }

    /// AUTH, MAIL, RCPT, DATA and QUIT on an established session.
    async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Conn<S>,
        caps: &Capabilities,
        msg: &OutgoingMessage,
        data: &[u8],
        accepted: &mut bool,
    ) -> Result<(), DeliveryError> {
        if let Some(token) = &self.auth_plain {
            if !caps.auth_plain {
                return Err(DeliveryError::permanent(if self.tls.is_none() {
                    "smtp server does not offer AUTH PLAIN (many offer it only after STARTTLS: set starttls = true)"
                } else {
                    "smtp server does not offer AUTH PLAIN"
                }));
            }
            conn.command(&format!("AUTH PLAIN {token}"))
                .await?
                .expect("AUTH", 235)?;
        }
        let utf8 = !msg.destination.is_ascii();
        if utf8 && !caps.smtputf8 {
            return Err(DeliveryError::permanent(
                "email destination is not ASCII and the smtp server does not offer SMTPUTF8",
            ));
        }
        let mail = format!(
            "MAIL FROM:<{}>{}",
            self.envelope_from,
            if utf8 { " SMTPUTF8" } else { "" }
        );
        conn.command(&mail).await?.expect("MAIL FROM", 250)?;
        conn.command(&format!("RCPT TO:<{}>", msg.destination))
            .await?
            .expect("RCPT TO", 250)?;
        conn.command("DATA").await?.expect("DATA", 354)?;
        conn.write(data).await?;
        conn.reply().await?.expect_quietly("message", 250)?;
        *accepted = true;
        // A courtesy: the relay already has the message, so a failed
        // goodbye changes nothing.
        if let Err(e) = conn.command("QUIT").await {
            tracing::debug!(error = %e, "smtp QUIT failed after the message was accepted");
        }
        Ok(())
    }
}

/// The envelope address and the `From:` header value of a configured `from`.
fn parse_from(from: &str) -> Result<(String, String), String> {
    if from.contains(['\r', '\n']) {
        return Err("must not contain CR or LF".to_owned());
    }
    let from = from.trim();
    if !from.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(format!("{from:?} must be printable ASCII"));
    }
    let address = match from.rfind('<') {
        Some(open) => from[open + 1..]
            .strip_suffix('>')
            .ok_or_else(|| format!("{from:?} must end with '>' after '<'"))?,
        None => from,
    };
    check_address(address).map_err(|why| format!("{from:?}: address {why}"))?;
    Ok((address.to_owned(), from.to_owned()))
}

/// Whether `address` is a plain `local@domain` that can go inside `<...>`
/// on a command line and into a header.
fn check_address(address: &str) -> Result<(), &'static str> {
    if address.contains(['\r', '\n']) {
        return Err("contains CR or LF");
    }
    if address.is_empty()
        || address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '(' | ')' | ',' | ';' | '"' | '\\'))
    {
        return Err("is not a plain address");
    }
    match address.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => Ok(()),
        _ => Err("is not of the form local@domain"),
    }
}

/// The DATA payload: headers, blank line, body with CRLF line ends and
/// dot-stuffing, and the final `.` line.
fn compose(msg: &OutgoingMessage, from_header: &str, helo_name: &str, now_millis: i64) -> Vec<u8> {
    let (encoding, lines) = encode_body(&msg.body);
    let mut out = String::with_capacity(msg.body.len() + 512);
    for (name, value) in [
        ("From", from_header.to_owned()),
        ("To", msg.destination.clone()),
        ("Subject", encode_subject(&msg.subject)),
        ("Date", rfc5322_date(now_millis)),
        ("Message-ID", format!("<tessera-{}@{helo_name}>", msg.id)),
        ("Auto-Submitted", "auto-generated".to_owned()),
        ("MIME-Version", "1.0".to_owned()),
        ("Content-Type", "text/plain; charset=utf-8".to_owned()),
        ("Content-Transfer-Encoding", encoding.to_owned()),
    ] {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(&value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    for line in lines {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out.into_bytes()
}

/// The body's lines (without line ends) and its transfer encoding: `7bit`
/// when every line is printable ASCII of at most 998 bytes, else
/// `quoted-printable`. `\r\n`, `\r` and `\n` all end a line.
fn encode_body(body: &str) -> (&'static str, Vec<String>) {
    let normalized = body.replace("\r\n", "\n").replace('\r', "\n");
    let mut lines: Vec<&str> = normalized.split('\n').collect();
    if lines.len() > 1 && lines.last() == Some(&"") {
        lines.pop();
    }
    let plain = lines
        .iter()
        .all(|l| l.len() <= MAX_7BIT_LINE && l.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)));
    if plain {
        ("7bit", lines.into_iter().map(str::to_owned).collect())
    } else {
        let mut out = Vec::with_capacity(lines.len());
        for line in lines {
            quoted_printable_line(line, &mut out);
        }
        ("quoted-printable", out)
    }
}

/// One body line, quoted-printable (RFC 2045 §6.7), split into encoded
/// lines of at most 76 characters with soft breaks.
fn quoted_printable_line(line: &str, out: &mut Vec<String>) {
    let bytes = line.as_bytes();
    let mut current = String::new();
    for (i, &b) in bytes.iter().enumerate() {
        let last = i + 1 == bytes.len();
        let literal = ((b == b' ' || b == b'\t') && !last) || ((0x21..0x7f).contains(&b) && b != b'=');
        let token = if literal {
            char::from(b).to_string()
        } else {
            format!("={b:02X}")
        };
        if current.len() + token.len() > 75 {
            current.push('=');
            out.push(std::mem::take(&mut current));
        }
        current.push_str(&token);
    }
    out.push(current);
}

/// `subject` as a header value: as is when it is short printable ASCII,
/// else as folded RFC 2047 base64 encoded words.
fn encode_subject(subject: &str) -> String {
    if subject.len() <= 900 && subject.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return subject.to_owned();
    }
    // 45 bytes encode to 60 characters: each word stays within 75.
    let mut words = Vec::new();
    let mut start = 0;
    for (i, c) in subject.char_indices() {
        if i + c.len_utf8() - start > 45 {
            words.push(&subject[start..i]);
            start = i;
        }
    }
    words.push(&subject[start..]);
    words
        .iter()
        .map(|w| format!("=?UTF-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(w)))
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// An RFC 5322 date in UTC, such as `Tue, 29 Feb 2000 13:05:09 +0000`.
fn rfc5322_date(unix_millis: i64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = unix_millis.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    // Days to civil date (Howard Hinnant's algorithm), day 0 = 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = WEEKDAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)];
    let month_name = MONTHS[usize::try_from(month - 1).unwrap_or(0)];
    format!(
        "{weekday}, {day:02} {month_name} {year:04} {:02}:{:02}:{:02} +0000",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// A server reply: its code and the text of each line.
#[derive(Debug)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    /// `Ok` when the code is in the class of `want` (2xx for 250, 3xx for
    /// 354); else a retryable error for 4xx and unexpected codes and a
    /// permanent one for 5xx, quoting the server.
    fn expect(self, step: &str, want: u16) -> Result<Reply, DeliveryError> {
        if self.code / 100 == want / 100 {
            return Ok(self);
        }
        let text = self.quoted_text();
        Err(self.failure(format!("{step}: server answered {} {text}", self.code)))
    }

    /// Like [`expect`](Self::expect), for the reply to the message content:
    /// quotes only the code and enhanced status, since a content filter's
    /// text could repeat the message.
    fn expect_quietly(self, step: &str, want: u16) -> Result<Reply, DeliveryError> {
        if self.code / 100 == want / 100 {
            return Ok(self);
        }
        let enhanced = self
            .lines
            .first()
            .and_then(|l| l.split_whitespace().next())
            .filter(|w| w.chars().all(|c| c.is_ascii_digit() || c == '.') && w.contains('.'))
            .unwrap_or("");
        Err(self.failure(format!("{step}: server answered {} {enhanced}", self.code)))
    }

    fn failure(&self, what: String) -> DeliveryError {
        let message = format!("smtp {}", what.trim_end());
        match self.code / 100 {
            5 => DeliveryError::permanent(message),
            4 => DeliveryError::retry(message),
            _ => DeliveryError::retry(format!("{message} (unexpected)")),
        }
    }

    /// The reply's text, printable characters only, shortened.
    fn quoted_text(&self) -> String {
        let joined = self.lines.join(" ");
        let mut text: String = joined
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_QUOTED_REPLY)
            .collect();
        if joined.chars().count() > MAX_QUOTED_REPLY {
            text.push_str("...");
        }
        text
    }
}

/// What a server offered in its `EHLO` reply, as far as this client cares.
#[derive(Debug, Default)]
struct Capabilities {
    starttls: bool,
    auth_plain: bool,
    smtputf8: bool,
}

impl Capabilities {
    fn parse(reply: &Reply) -> Self {
        let mut caps = Capabilities::default();
        // The first line is the server's greeting, not an extension.
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else { continue };
            let keyword = keyword.to_ascii_uppercase();
            if keyword == "STARTTLS" {
                caps.starttls = true;
            } else if keyword == "SMTPUTF8" {
                caps.smtputf8 = true;
            } else if keyword == "AUTH" {
                caps.auth_plain |= words.any(|m| m.eq_ignore_ascii_case("PLAIN"));
            } else if let Some(mechanisms) = keyword.strip_prefix("AUTH=") {
                // The pre-standard form some servers still send.
                caps.auth_plain |= mechanisms == "PLAIN" || words.any(|m| m.eq_ignore_ascii_case("PLAIN"));
            }
        }
        caps
    }
}

/// One SMTP connection, plain or TLS.
struct Conn<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(stream: S) -> Self {
        Conn {
            io: BufReader::new(stream),
        }
    }

    /// The stream, for the TLS upgrade. A server that has already sent
    /// more than its `STARTTLS` reply is refused: those bytes would be read
    /// as if they had come over TLS (the STARTTLS injection attack).
    fn into_inner(self) -> Result<S, DeliveryError> {
        if !self.io.buffer().is_empty() {
            return Err(DeliveryError::retry(
                "smtp server sent data before the TLS handshake; refused",
            ));
        }
        Ok(self.io.into_inner())
    }

    /// `EHLO`, or `HELO` when a server rejects `EHLO`; what it offers.
    async fn hello(&mut self, name: &str) -> Result<Capabilities, DeliveryError> {
        let reply = self.command(&format!("EHLO {name}")).await?;
        if reply.code / 100 == 5 {
            self.command(&format!("HELO {name}")).await?.expect("HELO", 250)?;
            return Ok(Capabilities::default());
        }
        Ok(Capabilities::parse(&reply.expect("EHLO", 250)?))
    }

    /// Sends one command line and reads the reply.
    async fn command(&mut self, line: &str) -> Result<Reply, DeliveryError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write(&bytes).await?;
        self.reply().await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), DeliveryError> {
        let stream = self.io.get_mut();
        stream.write_all(bytes).await.map_err(io_error)?;
        stream.flush().await.map_err(io_error)
    }

    /// One reply: lines `250-...` continued until `250 ...` (or a bare
    /// `250`), all with the same code.
    async fn reply(&mut self) -> Result<Reply, DeliveryError> {
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            let line = self.line().await?;
            let malformed = || DeliveryError::retry("smtp server sent a malformed reply line");
            let digits = line
                .get(..3)
                .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(malformed)?;
            let this: u16 = digits.parse().map_err(|_| malformed())?;
            if code.is_some_and(|c| c != this) {
                return Err(DeliveryError::retry("smtp server mixed codes within one reply"));
            }
            code = Some(this);
            let (more, text) = match line.as_bytes().get(3) {
                None => (false, ""),
                Some(b' ') => (false, &line[4..]),
                Some(b'-') => (true, &line[4..]),
                Some(_) => return Err(malformed()),
            };
            lines.push(text.to_owned());
            if !more {
                return Ok(Reply { code: this, lines });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(DeliveryError::retry("smtp server sent a reply of too many lines"));
            }
        }
    }

    /// One reply line without its line end, at most [`MAX_REPLY_LINE`] bytes.
    async fn line(&mut self) -> Result<String, DeliveryError> {
        let mut buf = Vec::new();
        let limit = u64::try_from(MAX_REPLY_LINE).unwrap_or(u64::MAX);
        (&mut self.io)
            .take(limit)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(io_error)?;
        if buf.last() != Some(&b'\n') {
            return Err(DeliveryError::retry(if buf.len() >= MAX_REPLY_LINE {
                "smtp server sent a reply line longer than 4096 bytes"
            } else {
                "smtp server closed the connection"
            }));
        }
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

fn io_error(e: std::io::Error) -> DeliveryError {
    DeliveryError::retry(format!("smtp connection: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::courier::webhook::tests::test_tls;
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    /// How the test server behaves.
    #[derive(Clone)]
    struct Script {
        /// Offer STARTTLS with this certificate (and AUTH only after it).
        starttls: Option<TlsAcceptor>,
        rcpt: &'static str,
        after_data: &'static str,
        /// Greet, then never answer.
        mute: bool,
    }

    impl Default for Script {
        fn default() -> Self {
            Script {
                starttls: None,
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

    fn config(port: u16) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".to_owned(),
            port,
            from: "Tessera <noreply@example.com>".to_owned(),
            username: Some("mailer".to_owned()),
            password: Some("pa55word".to_owned()),
            starttls: false,
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
        let headers = head
            .split("\r\n")
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_owned(), v.to_owned())
            })
            .collect();
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
        assert_eq!(
            seen.commands
                .iter()
                .map(|c| c.split(' ').next().unwrap())
                .collect::<Vec<_>>(),
            ["EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"]
        );
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
        assert_eq!(
            body,
            "Your code is 918273\r\n..hidden line\r\n...two dots\r\nlast line\r\n"
        );
        // Undoing the stuffing gives the body back.
        let unstuffed: Vec<&str> = body.lines().map(|l| l.strip_prefix('.').unwrap_or(l)).collect();
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
        let (acceptor, roots) = test_tls();
        let (port, server) = server(Script {
            starttls: Some(acceptor),
            ..Script::default()
        })
        .await;
        let mut cfg = config(port);
        cfg.starttls = true;
        SmtpSender::with_roots(cfg, roots)
            .unwrap()
            .send(&message())
            .await
            .unwrap();
        let seen = server.await.unwrap();
        assert!(seen.tls);
        assert_eq!(
            seen.commands
                .iter()
                .map(|c| c.split(' ').next().unwrap())
                .collect::<Vec<_>>(),
            ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"]
        );
        assert!(seen.auth.is_some());
        assert!(split_data(&seen.data).1.starts_with("Your code is 918273\r\n"));
    }

    #[tokio::test]
    async fn starttls_refuses_an_untrusted_certificate() {
        let (acceptor, _roots) = test_tls();
        let (port, server) = server(Script {
            starttls: Some(acceptor),
            ..Script::default()
        })
        .await;
        let mut cfg = config(port);
        cfg.starttls = true;
        let err = SmtpSender::with_roots(cfg, RootCertStore::empty())
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
        let (_acceptor, roots) = test_tls();
        let err = SmtpSender::with_roots(cfg, roots)
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
        assert_eq!(sender.envelope_from, "noreply@example.com");
        let mut cfg = config(2525);
        cfg.from = " plain@example.com ".to_owned();
        assert_eq!(SmtpSender::new(cfg).unwrap().envelope_from, "plain@example.com");
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
        assert!(!format!("{sender:?}").contains(sender.auth_plain.as_deref().unwrap()));
    }

    #[tokio::test]
    async fn replies_are_parsed_and_bounded() {
        async fn parse(input: &[u8]) -> Result<Reply, DeliveryError> {
            let (client, mut server) = tokio::io::duplex(64 * 1024);
            server.write_all(input).await.unwrap();
            drop(server);
            Conn::new(client).reply().await
        }
        let reply = parse(b"250-first\r\n250-STARTTLS\r\n250 last\r\n").await.unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.lines, ["first", "STARTTLS", "last"]);
        assert!(Capabilities::parse(&reply).starttls);
        assert_eq!(parse(b"354\r\n").await.unwrap().code, 354);
        assert_eq!(parse(b"220 lf only\n").await.unwrap().lines, ["lf only"]);
        assert!(parse(b"250-a\r\n251 b\r\n").await.is_err());
        assert!(parse(b"25 short\r\n").await.is_err());
        assert!(parse(b"250_x\r\n").await.is_err());
        assert!(parse(b"250-unfinished\r\n").await.is_err());
        let long = [b"250 ".as_slice(), &[b'x'; 5000], b"\r\n"].concat();
        let err = parse(&long).await.unwrap_err();
        assert!(err.message.contains("longer"), "{err}");
        let many = "250-x\r\n".repeat(100);
        assert!(parse(many.as_bytes()).await.is_err());
    }

    #[test]
    fn capabilities_are_read_from_ehlo() {
        let reply = Reply {
            code: 250,
            lines: vec![
                "AUTH PLAIN is the greeting, not an extension".to_owned(),
                "auth login plain".to_owned(),
                "SMTPUTF8".to_owned(),
            ],
        };
        let caps = Capabilities::parse(&reply);
        assert!(caps.auth_plain && caps.smtputf8 && !caps.starttls);
        let reply = Reply {
            code: 250,
            lines: vec!["hi".to_owned(), "AUTH=LOGIN".to_owned()],
        };
        assert!(!Capabilities::parse(&reply).auth_plain);
        let reply = Reply {
            code: 250,
            lines: vec!["hi".to_owned(), "AUTH=PLAIN LOGIN".to_owned()],
        };
        assert!(Capabilities::parse(&reply).auth_plain);
    }

    #[test]
    fn non_ascii_subject_and_body_are_encoded() {
        let mut msg = message();
        msg.subject = "Código".to_owned();
        msg.body = "Olá = 1 \n.x".to_owned();
        let (headers, body) = split_data(&compose(&msg, "a@example.com", "h", 0));
        assert_eq!(header(&headers, "Subject"), "=?UTF-8?B?Q8OzZGlnbw==?=");
        assert_eq!(header(&headers, "Content-Transfer-Encoding"), "quoted-printable");
        assert_eq!(body, "Ol=C3=A1 =3D 1=20\r\n..x\r\n");

        // Long subjects fold into encoded words of at most 75 characters.
        msg.subject = "é".repeat(100);
        let data = compose(&msg, "a@example.com", "h", 0);
        let text = String::from_utf8(data).unwrap();
        let subject = text
            .split("Subject: ")
            .nth(1)
            .unwrap()
            .split("\r\nDate")
            .next()
            .unwrap();
        let words: Vec<&str> = subject.split("\r\n ").collect();
        assert!(words.len() > 1);
        assert!(
            words.iter().all(|w| w.len() <= 75 && w.starts_with("=?UTF-8?B?")),
            "{words:?}"
        );

        // Long lines are soft-broken.
        let mut lines = Vec::new();
        quoted_printable_line(&"a".repeat(200), &mut lines);
        assert!(lines.iter().all(|l| l.len() <= 76));
        assert_eq!(lines.concat().replace('=', ""), "a".repeat(200));
    }

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        // 2000-02-29T13:05:09Z, a leap day.
        assert_eq!(rfc5322_date(951_829_509_000), "Tue, 29 Feb 2000 13:05:09 +0000");
        // 2024-12-31T23:59:59.999Z
        assert_eq!(rfc5322_date(1_735_689_599_999), "Tue, 31 Dec 2024 23:59:59 +0000");
    }
}
