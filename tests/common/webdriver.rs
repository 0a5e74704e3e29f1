//! A minimal W3C WebDriver client that drives Debian's headless Chromium
//! (`chromium` and `chromium-driver`, installed by `make deps`) for the
//! tests of the pages a person opens: the magic-link confirmation today,
//! the hosted sign-in page of issue 14 next.
//!
//! * [`Browser`] starts its own `chromedriver` on a free loopback port,
//!   opens one session of headless Chromium with a throw-away profile, and
//!   tears both down on [`Browser::close`] or on drop (the session is
//!   deleted, then chromedriver's whole process group is killed, so no
//!   Chromium outlives the test).
//! * [`Element`] is a found element: text, attributes, typing, clicking.
//! * [`Browser::screenshot`] saves PNGs under cargo's
//!   `CARGO_TARGET_TMPDIR/screenshots/<test>/` and prints their paths, so
//!   they show in the test output; chromedriver's log goes beside them.
//! * [`fetch`] is the same HTTP/1.1 transport for what WebDriver cannot
//!   see: status codes and response headers.
//! * [`Browser::cdp`] sends a Chrome DevTools command through
//!   chromedriver (`goog/cdp/execute`); [`Browser::add_virtual_authenticator`]
//!   and its siblings give the page a software passkey authenticator
//!   (DevTools' `WebAuthn` domain), so the passkey ceremonies run with no
//!   person and no hardware.
//!
//! Written here on hyper's HTTP/1.1 client, one connection per command
//! (chromedriver answers on loopback; no pool needed). Every command has a
//! timeout, and a WebDriver error carries the driver's own error code and
//! message ([`WebDriverError`]).
//!
//! The browser is kept on loopback: background networking, component
//! updates and the like are switched off, and every host but `localhost`
//! and `127.0.0.1` (where the test nodes listen) fails to resolve.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt as _, Full};
use serde::Deserialize;
use serde_json::{json, Value};

/// The Chromium binary the session runs (`TESSERA_CHROMIUM` overrides).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The driver started for each [`Browser`] (`TESSERA_CHROMEDRIVER`
/// overrides; else found on `PATH`).
pub const CHROMEDRIVER: &str = "chromedriver";
/// How long chromedriver may take to say it is ready.
pub const DRIVER_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long creating a session (starting Chromium) may take.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long any other command may take, a page load included.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The page-load timeout given to the browser: below [`COMMAND_TIMEOUT`],
/// so a slow page fails as a WebDriver `timeout` with its message.
pub const PAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(20);

/// The key of a web element reference in WebDriver's JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// An error answered by the driver: `error` is the W3C error code (`no
/// such element`, `timeout`, ...), `message` the driver's text.
#[derive(Debug, Clone, thiserror::Error)]
#[error("WebDriver {command}: {error}: {message}")]
pub struct WebDriverError {
    /// The command, as `METHOD /path`.
    pub command: String,
    pub error: String,
    pub message: String,
}

impl WebDriverError {
    /// The element searched for is not on the page.
    pub fn is_no_such_element(&self) -> bool {
        self.error == "no such element"
    }
}

/// An HTTP response read whole.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Fetched {
    /// The value of header `name` (the first, if repeated), or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}

/// A cookie as the browser holds it (WebDriver's cookie object).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cookie {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub secure: bool,
    #[serde(default)]
    pub http_only: bool,
    #[serde(default)]
    pub same_site: Option<String>,
    #[serde(default)]
    pub expiry: Option<u64>,
}

/// Splits `http://host:port/path?query` into `host:port` and the path and
/// query (`/` when empty). Only plain http: the test nodes and the driver
/// listen on loopback without TLS.
pub fn split_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs are supported here: {url:?}"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() {
        bail!("no host in {url:?}");
    }
    Ok((authority.to_string(), path))
}

/// One HTTP/1.1 exchange with `authority` (`host:port`) on a connection of
/// its own, bounded by `timeout` as a whole.
async fn exchange(
    authority: &str,
    method: Method,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
    timeout: Duration,
) -> Result<(StatusCode, HeaderMap, Bytes)> {
    let what = format!("{method} http://{authority}{path}");
    let run = async {
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(path)
            .header(http::header::HOST, authority)
            .header(http::header::CONNECTION, "close");
        let payload = match body {
            Some((content_type, bytes)) => {
                req = req.header(http::header::CONTENT_TYPE, content_type);
                Bytes::from(bytes)
            }
            None => Bytes::new(),
        };
        let resp = sender
            .send_request(req.body(Full::new(payload))?)
            .await
            .context("sending the request")?;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.context("reading the response body")?.to_bytes();
        conn.abort();
        anyhow::Ok((parts.status, parts.headers, bytes))
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| anyhow!("{what} took longer than {timeout:?}"))?
        .with_context(|| what.clone())
}

/// `method url` with an optional form body
/// (`application/x-www-form-urlencoded`): the status, headers and body,
/// within 10 s. For what a browser test must check but WebDriver cannot
/// see, such as a page's security headers.
pub async fn fetch(method: &str, url: &str, form: Option<&str>) -> Result<Fetched> {
    let (authority, path) = split_url(url)?;
    let method = Method::from_bytes(method.as_bytes())?;
    let body = form.map(|f| ("application/x-www-form-urlencoded", f.as_bytes().to_vec()));
    let (status, headers, bytes) = exchange(&authority, method, &path, body, Duration::from_secs(10)).await?;
    Ok(Fetched {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// The `value` of a WebDriver answer to `command` (`METHOD /path`), or
/// its error as a [`WebDriverError`].
pub fn unwrap_value(command: &str, status: StatusCode, bytes: &[u8]) -> Result<Value> {
    let answer: Value = serde_json::from_slice(bytes).with_context(|| {
        format!(
            "WebDriver {command}: HTTP {status} with a body that is not JSON: {}",
            String::from_utf8_lossy(bytes).chars().take(300).collect::<String>()
        )
    })?;
    let value = answer.get("value").cloned().unwrap_or(Value::Null);
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        // chromedriver appends session info and a native stack trace that
        // say nothing useful, and repeats the error code (sometimes twice)
        // before the message: the first line, without the repeats, is it.
        let mut message = value["message"]
            .as_str()
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default();
        while let Some(rest) = message.strip_prefix(error).and_then(|m| m.strip_prefix(": ")) {
            message = rest;
        }
        return Err(WebDriverError {
            command: command.to_string(),
            error: error.to_string(),
            message: message.to_string(),
        }
        .into());
    }
    if !status.is_success() {
        bail!("WebDriver {command}: HTTP {status} without an error object: {answer}");
    }
    Ok(value)
}

/// Where screenshots of test `test` go: `CARGO_TARGET_TMPDIR/screenshots/<test>`.
pub fn artifacts_dir(test: &str) -> PathBuf {
    let safe: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots").join(safe)
}

/// A running chromedriver and one headless Chromium session. See the
/// module docs.
pub struct Browser {
    /// chromedriver's `127.0.0.1:port`.
    driver_addr: String,
    /// `Some` until the session is deleted.
    session: Option<String>,
    /// The driver process, leader of its own process group (Chromium and
    /// its helpers run in that group).
    driver: tokio::process::Child,
    driver_pgid: Option<u32>,
    /// Screenshots and the driver's log.
    dir: PathBuf,
    shots: AtomicUsize,
    /// Dropped last: the profile goes once Chromium is gone.
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session for test `test`
    /// (the name of its screenshot folder, emptied first).
    pub async fn start(test: &str) -> Result<Browser> {
        let dir = artifacts_dir(test);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let chromium = std::env::var("TESSERA_CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_string());
        if !Path::new(&chromium).exists() {
            bail!("no Chromium at {chromium}: install chromium (make deps)");
        }
        let driver_bin = std::env::var("TESSERA_CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.to_string());
        let port = super::free_ports(1)?[0];
        let log_path = dir.join("chromedriver.log");
        let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let mut cmd = tokio::process::Command::new(&driver_bin);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true);
        let driver = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("{driver_bin} not found: install chromium-driver (make deps)")
            }
            Err(e) => return Err(e).with_context(|| format!("starting {driver_bin}")),
        };
        let profile = tempfile::Builder::new().prefix("tessera-chromium-").tempdir()?;
        let mut browser = Browser {
            driver_addr: format!("127.0.0.1:{port}"),
            session: None,
            driver_pgid: driver.id(),
            driver,
            dir,
            shots: AtomicUsize::new(0),
            _profile: profile,
        };
        browser
            .wait_driver_ready()
            .await
            .with_context(|| format!("starting {driver_bin} (its log: {})", log_path.display()))?;
        browser.new_session(&chromium).await.with_context(|| {
            format!(
                "opening a session of {chromium} (chromedriver's log: {})",
                log_path.display()
            )
        })?;
        Ok(browser)
    }

    /// Polls `GET /status` until the driver says it is ready.
    async fn wait_driver_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        let mut last = String::from("(no answer)");
        while start.elapsed() < DRIVER_READY_TIMEOUT {
            if let Some(status) = self.driver.try_wait()? {
                bail!("chromedriver exited at start ({status})");
            }
            match self.raw(Method::GET, "/status", None, Duration::from_secs(2)).await {
                Ok(v) if v["ready"] == Value::Bool(true) => return Ok(()),
                Ok(v) => last = v.to_string(),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("chromedriver was not ready after {DRIVER_READY_TIMEOUT:?}; last: {last}")
    }

    async fn new_session(&mut self, chromium: &str) -> Result<()> {
        let profile = self._profile.path().display().to_string();
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-gpu".into(),
            format!("--user-data-dir={profile}"),
            "--window-size=1024,768".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-default-apps".into(),
            "--disable-extensions".into(),
            "--disable-sync".into(),
            "--no-pings".into(),
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1".into(),
        ];
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "timeouts": {
                        "implicit": 0,
                        "pageLoad": PAGE_LOAD_TIMEOUT.as_millis() as u64,
                        "script": 10_000,
                    },
                    "goog:chromeOptions": { "binary": chromium, "args": args },
                }
            }
        });
        let v = self.raw(Method::POST, "/session", Some(caps), SESSION_TIMEOUT).await?;
        let id = v["sessionId"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| anyhow!("new session answered no sessionId: {v}"))?;
        self.session = Some(id.to_string());
        println!(
            "browser: Chromium {} with chromedriver on {}; screenshots in {}",
            v["capabilities"]["browserVersion"].as_str().unwrap_or("?"),
            self.driver_addr,
            self.dir.display()
        );
        Ok(())
    }

    /// A request to the driver at `path` (absolute); its `value`.
    async fn raw(&self, method: Method, path: &str, body: Option<Value>, timeout: Duration) -> Result<Value> {
        let command = format!("{method} {path}");
        let body = body.map(|b| ("application/json; charset=utf-8", b.to_string().into_bytes()));
        let (status, _, bytes) = exchange(&self.driver_addr, method, path, body, timeout)
            .await
            .with_context(|| format!("WebDriver {command}"))?;
        unwrap_value(&command, status, &bytes)
    }

    /// A command of the session: `path` is relative to `/session/{id}`.
    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let id = self
            .session
            .as_deref()
            .ok_or_else(|| anyhow!("the browser session is closed"))?;
        // W3C: a POST carries a JSON object even when it has no parameters.
        let body = match (&method, body) {
            (&Method::POST, None) => Some(json!({})),
            (_, b) => b,
        };
        self.raw(method, &format!("/session/{id}{path}"), body, COMMAND_TIMEOUT)
            .await
    }

    /// The folder of this test's screenshots and driver log.
    pub fn artifacts(&self) -> &Path {
        &self.dir
    }

    /// Opens `url` and waits for the page to load.
    pub async fn navigate(&self, url: &str) -> Result<()> {
        self.cmd(Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .map(|_| ())
    }

    /// The URL of the current page.
    pub async fn current_url(&self) -> Result<String> {
        string_of(self.cmd(Method::GET, "/url", None).await?, "current URL")
    }

    /// The current page's title.
    pub async fn title(&self) -> Result<String> {
        string_of(self.cmd(Method::GET, "/title", None).await?, "title")
    }

    /// The current page's DOM, serialized.
    pub async fn page_source(&self) -> Result<String> {
        string_of(self.cmd(Method::GET, "/source", None).await?, "page source")
    }

    /// The first element matching the CSS `selector`; a
    /// [`WebDriverError`] `no such element` if none does.
    pub async fn find(&self, selector: &str) -> Result<Element<'_>> {
        let v = self
            .cmd(
                Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": selector })),
            )
            .await?;
        Element::from_reference(self, selector, &v)
    }

    /// Every element matching the CSS `selector`, in document order.
    pub async fn find_all(&self, selector: &str) -> Result<Vec<Element<'_>>> {
        let v = self
            .cmd(
                Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": selector })),
            )
            .await?;
        v.as_array()
            .ok_or_else(|| anyhow!("find elements {selector:?} answered {v}"))?
            .iter()
            .map(|r| Element::from_reference(self, selector, r))
            .collect()
    }

    /// Waits up to `timeout` for an element matching `selector`.
    pub async fn wait_for(&self, selector: &str, timeout: Duration) -> Result<Element<'_>> {
        let start = Instant::now();
        loop {
            match self.find(selector).await {
                Ok(e) => return Ok(e),
                Err(e)
                    if e.downcast_ref::<WebDriverError>()
                        .is_some_and(WebDriverError::is_no_such_element)
                        && start.elapsed() < timeout =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    return Err(e.context(format!(
                        "waiting {timeout:?} for {selector:?} on {}",
                        self.where_now().await
                    )))
                }
            }
        }
    }

    /// The current URL, or why it is unknown (for error messages).
    async fn where_now(&self) -> String {
        self.current_url()
            .await
            .unwrap_or_else(|e| format!("(unknown URL: {e:#})"))
    }

    /// Runs the Chrome DevTools Protocol command `cmd` with `params` in
    /// the session's current tab; its result.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Result<Value> {
        self.cmd(
            Method::POST,
            "/goog/cdp/execute",
            Some(json!({ "cmd": cmd, "params": params })),
        )
        .await
        .with_context(|| format!("DevTools {cmd}"))
    }

    /// Enables DevTools' virtual WebAuthn environment and adds a CTAP2
    /// platform authenticator that keeps discoverable credentials (a
    /// passkey), verifies its user and consents on its own. Its id, for
    /// [`Browser::virtual_credentials`].
    pub async fn add_virtual_authenticator(&self) -> Result<String> {
        self.cdp("WebAuthn.enable", json!({})).await?;
        let v = self
            .cdp(
                "WebAuthn.addVirtualAuthenticator",
                json!({ "options": {
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserVerified": true,
                    "automaticPresenceSimulation": true,
                }}),
            )
            .await?;
        v["authenticatorId"]
            .as_str()
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .ok_or_else(|| anyhow!("addVirtualAuthenticator answered no authenticatorId: {v}"))
    }

    /// The credentials the virtual authenticator `id` holds (DevTools'
    /// `Credential` objects: `credentialId`, `isResidentCredential`,
    /// `rpId`, `userHandle`, `signCount`, ...).
    pub async fn virtual_credentials(&self, id: &str) -> Result<Vec<Value>> {
        let v = self
            .cdp("WebAuthn.getCredentials", json!({ "authenticatorId": id }))
            .await?;
        v["credentials"]
            .as_array()
            .cloned()
            .ok_or_else(|| anyhow!("getCredentials answered {v}"))
    }

    /// Makes the virtual authenticator `id` sign its assertions with a
    /// bogus signature (`true`), as a cloned or broken authenticator
    /// would, or correctly again (`false`).
    pub async fn bogus_signatures(&self, id: &str, bogus: bool) -> Result<()> {
        self.cdp(
            "WebAuthn.setResponseOverrideBits",
            json!({ "authenticatorId": id, "isBogusSignature": bogus }),
        )
        .await
        .map(|_| ())
    }

    /// Removes the virtual authenticator `id`.
    pub async fn remove_virtual_authenticator(&self, id: &str) -> Result<()> {
        self.cdp("WebAuthn.removeVirtualAuthenticator", json!({ "authenticatorId": id }))
            .await
            .map(|_| ())
    }

    /// Deletes cookie `name` of the current page's host.
    pub async fn delete_cookie(&self, name: &str) -> Result<()> {
        self.cmd(Method::DELETE, &format!("/cookie/{name}"), None)
            .await
            .map(|_| ())
    }

    /// Every cookie visible to the current page.
    pub async fn cookies(&self) -> Result<Vec<Cookie>> {
        let v = self.cmd(Method::GET, "/cookie", None).await?;
        serde_json::from_value(v.clone()).with_context(|| format!("cookies: {v}"))
    }

    /// Saves a PNG of the viewport as `NN-name.png` in this test's folder
    /// and prints its path. Returns the path.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let v = self.cmd(Method::GET, "/screenshot", None).await?;
        let b64 = v.as_str().ok_or_else(|| anyhow!("screenshot answered {v}"))?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .context("screenshot is not base64")?;
        if !png.starts_with(b"\x89PNG\r\n\x1a\n") {
            bail!("screenshot is not a PNG ({} bytes)", png.len());
        }
        let n = self.shots.fetch_add(1, Ordering::Relaxed) + 1;
        let path = self.dir.join(format!("{n:02}-{name}.png"));
        std::fs::write(&path, &png).with_context(|| format!("writing {}", path.display()))?;
        println!("screenshot: {}", path.display());
        Ok(path)
    }

    /// Ends a test that used this browser: when `result` is an error,
    /// saves a screenshot and the page's source next to the others first,
    /// for the post-mortem. Then closes the browser.
    pub async fn close_after<T>(self, result: &Result<T>) {
        if result.is_err() {
            let _ = self.screenshot("failure").await;
            if let Ok(source) = self.page_source().await {
                let path = self.dir.join("failure.html");
                if std::fs::write(&path, source).is_ok() {
                    println!("page source at the failure: {}", path.display());
                }
            }
            // Without the query: it may carry a link's token.
            let url = self.where_now().await;
            println!("browser was at {}", url.split('?').next().unwrap_or_default());
        }
        self.close().await;
    }

    /// Deletes the session (Chromium quits), then stops chromedriver and
    /// anything left in its process group.
    pub async fn close(mut self) {
        if let Some(id) = self.session.take() {
            if let Err(e) = self
                .raw(Method::DELETE, &format!("/session/{id}"), None, Duration::from_secs(10))
                .await
            {
                eprintln!("browser: deleting the session: {e:#}");
            }
        }
        self.kill_group();
        let _ = self.driver.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.driver.wait()).await;
    }

    /// SIGKILL to chromedriver's process group: the driver, and any
    /// Chromium process a lost session left behind.
    fn kill_group(&mut self) {
        if let Some(pgid) = self.driver_pgid.take() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Browser {
    /// A browser not closed (a test that panicked): delete the session
    /// with a blocking request (no runtime is needed), then kill the
    /// process group. The driver child itself is also `kill_on_drop`.
    fn drop(&mut self) {
        if let Some(id) = self.session.take() {
            delete_session_blocking(&self.driver_addr, &id);
        }
        self.kill_group();
    }
}

/// `DELETE /session/{id}` over a plain blocking socket, bounded to about
/// 10 s; errors are ignored (the process group is killed next anyway).
fn delete_session_blocking(addr: &str, id: &str) {
    use std::io::{Read, Write};
    let Ok(sock_addr) = addr.parse::<std::net::SocketAddr>() else {
        return;
    };
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&sock_addr, Duration::from_secs(2)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(8)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let req =
        format!("DELETE /session/{id} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    if s.write_all(req.as_bytes()).is_ok() {
        // chromedriver answers once Chromium has quit, and keeps the
        // connection open: the first bytes of the answer are enough.
        let mut first = [0u8; 512];
        let _ = s.read(&mut first);
    }
}

fn string_of(v: Value, what: &str) -> Result<String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{what}: expected a string, got {v}"))
}

/// An element found on the current page of a [`Browser`].
pub struct Element<'b> {
    browser: &'b Browser,
    id: String,
    /// How it was found, for error messages.
    selector: String,
}

impl std::fmt::Debug for Element<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Element({:?})", self.selector)
    }
}

impl<'b> Element<'b> {
    fn from_reference(browser: &'b Browser, selector: &str, v: &Value) -> Result<Self> {
        let id = v[ELEMENT_KEY]
            .as_str()
            .ok_or_else(|| anyhow!("find {selector:?} answered no element reference: {v}"))?;
        Ok(Element {
            browser,
            id: id.to_string(),
            selector: selector.to_string(),
        })
    }

    async fn cmd(&self, method: Method, what: &str, body: Option<Value>) -> Result<Value> {
        self.browser
            .cmd(method, &format!("/element/{}/{what}", self.id), body)
            .await
            .with_context(|| format!("element {:?}", self.selector))
    }

    /// The element's rendered text.
    pub async fn text(&self) -> Result<String> {
        string_of(self.cmd(Method::GET, "text", None).await?, "element text")
    }

    /// The attribute `name`, or `None` when the element has none.
    pub async fn attribute(&self, name: &str) -> Result<Option<String>> {
        let v = self.cmd(Method::GET, &format!("attribute/{name}"), None).await?;
        Ok(v.as_str().map(str::to_string))
    }

    /// The computed value of CSS property `name` (`rgb(...)` for colours),
    /// as the browser rendered it.
    pub async fn css(&self, name: &str) -> Result<String> {
        string_of(self.cmd(Method::GET, &format!("css/{name}"), None).await?, "css value")
    }

    /// The DOM property `name` (`naturalWidth` of an image, ...).
    pub async fn property(&self, name: &str) -> Result<Value> {
        self.cmd(Method::GET, &format!("property/{name}"), None).await
    }

    /// Types `text` into the element (focusing it first).
    pub async fn send_keys(&self, text: &str) -> Result<()> {
        self.cmd(Method::POST, "value", Some(json!({ "text": text })))
            .await
            .map(|_| ())
    }

    /// Clicks the element, as a person would (it must be visible and not
    /// covered). A click that submits a form waits for the next page.
    pub async fn click(&self) -> Result<()> {
        self.cmd(Method::POST, "click", None).await.map(|_| ())
    }
}
