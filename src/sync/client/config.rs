//! What a device client needs to know: where the nodes are, how to trust
//! them, who it is, where it keeps its copy, how it resolves conflicts, and
//! its timings. Every field has a default except the ones only the
//! application can know.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::resolve::{LastWriterWins, Resolver};
use super::SyncClientError;
use crate::sync::frame::DEFAULT_MAX_FRAME_BYTES;

/// How the client decides that a node's certificate is genuine.
#[derive(Clone, PartialEq, Eq)]
pub enum Trust {
    /// The SHA-256 of the server certificate's DER bytes must be one of
    /// these (a self-signed certificate, as `tessera dev` makes; each node
    /// of a cluster may have its own, so a list). The certificate's names
    /// and dates are not checked: the pin is the whole trust.
    Fingerprints(Vec<[u8; 32]>),
    /// The certificate must chain to one of these PEM CA certificates and
    /// name [`SyncConfig::server_name`].
    CaPem(Vec<u8>),
}

impl Trust {
    /// Pins from hex fingerprints (`fingerprint_sha256` of `/sync-info`):
    /// 64 hex digits each, in either case, colons allowed between bytes.
    pub fn fingerprints<S: AsRef<str>>(hex_fingerprints: &[S]) -> Result<Trust, SyncClientError> {
        if hex_fingerprints.is_empty() {
            return Err(SyncClientError::Config("no certificate fingerprint to pin".into()));
        }
        let mut pins = Vec::with_capacity(hex_fingerprints.len());
        for f in hex_fingerprints {
            let cleaned: String = f.as_ref().trim().chars().filter(|c| *c != ':').collect();
            let bytes = hex::decode(&cleaned)
                .map_err(|_| SyncClientError::Config(format!("fingerprint {:?} is not hex", f.as_ref())))?;
            let pin: [u8; 32] = bytes.try_into().map_err(|_| {
                SyncClientError::Config(format!("fingerprint {:?} is not a SHA-256 (64 hex digits)", f.as_ref()))
            })?;
            pins.push(pin);
        }
        Ok(Trust::Fingerprints(pins))
    }
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::Fingerprints(p) => f
                .debug_tuple("Fingerprints")
                .field(&p.iter().map(hex::encode).collect::<Vec<_>>())
                .finish(),
            Trust::CaPem(pem) => write!(f, "CaPem({} bytes)", pem.len()),
        }
    }
}

/// The credential a device proves its identity with in `DeviceHello`.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// The identity's credentials: `GetCredentialsForIdentity`'s
    /// `session_token`.
    Credentials(String),
    /// A user-pool access token of a user whose login maps to an identity
    /// of the pool.
    AccessToken(String),
}

/// Never prints the secret.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Credentials(_) => f.write_str("Credentials(<redacted>)"),
            Credential::AccessToken(_) => f.write_str("AccessToken(<redacted>)"),
        }
    }
}

/// Gets a new credential when the server refuses the current one
/// (`UNAUTHENTICATED`, `CREDENTIALS_EXPIRED`) or ends the identity
/// (`IDENTITY_GONE`, e.g. after a merge). Called on the client's
/// background task, at most once per refused session; while it runs the
/// client stays disconnected. An `Err` is reported as a `Disconnected`
/// event and the client retries later with its current credential.
pub trait CredentialRefresh: Send + Sync + 'static {
    /// A fresh credential; `reason` is the server's close reason.
    fn refresh(&self, reason: &str) -> BoxFuture<'static, Result<Credential, String>>;
}

/// Where the local copy lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalStore {
    /// In memory only: a new client starts empty and reloads everything.
    Memory,
    /// In this file, rewritten atomically (a temporary file, fsync,
    /// rename): a restarted client resumes from its cursor, and its queued
    /// writes survive.
    File(PathBuf),
}

/// Timings of connecting, keeping a session, and retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Longest a QUIC handshake plus Hello/Welcome may take.
    pub connect_timeout: Duration,
    /// QUIC keepalive interval: keeps NAT bindings and proves the node
    /// alive.
    pub keepalive: Duration,
    /// A session that hears nothing for this long is dead (the node was
    /// killed or the network is gone); the lower of this and the server's
    /// setting applies.
    pub idle_timeout: Duration,
    /// First retry delay after a failure.
    pub backoff_initial: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
    /// How long changes may sit in memory before a file store is
    /// rewritten (queued writes are written at once).
    pub flush_interval: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            connect_timeout: Duration::from_secs(5),
            keepalive: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(6),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            flush_interval: Duration::from_millis(50),
        }
    }
}

/// Everything a [`SyncClient`](super::SyncClient) is started with.
#[derive(Clone)]
pub struct SyncConfig {
    /// The nodes' sync addresses (`host:port`, UDP). The client tries them
    /// in order and moves to the next after each failure.
    pub addrs: Vec<String>,
    /// The TLS server name sent and, with a CA, checked (`localhost` by
    /// default; a pinned fingerprint ignores it).
    pub server_name: String,
    /// How the server's certificate is trusted.
    pub trust: Trust,
    /// The identity pool of the identity.
    pub identity_pool_id: String,
    /// The credential sent in Hello.
    pub credential: Credential,
    /// Gets a new credential when the server refuses the current one.
    pub refresh: Option<Arc<dyn CredentialRefresh>>,
    /// This device: 1 to 256 characters. Recorded as `last_modified_by` of
    /// its writes.
    pub device_id: String,
    /// Where the local copy lives.
    pub store: LocalStore,
    /// Decides conflicts ([`LastWriterWins`] by default).
    pub resolver: Arc<dyn Resolver>,
    /// Follow one dataset only; `None` (the default) follows all of them.
    pub dataset: Option<String>,
    /// Timings.
    pub timing: Timing,
    /// Most writes sent and not yet answered at once.
    pub write_window: usize,
    /// The largest frame this client reads (a server may announce a
    /// larger one in `SyncWelcome`, up to 64 MiB); what it sends is bounded
    /// by the server's announcement.
    pub max_frame_bytes: u32,
    /// A QUIC endpoint (UDP socket) to share with other clients, e.g. the
    /// thousands of devices of a load generator; `None` (the default): the
    /// client opens its own and closes it when it stops. A shared endpoint
    /// is not closed by the client.
    pub endpoint: Option<quinn::Endpoint>,
}

impl SyncConfig {
    /// A configuration with the defaults: memory store, last writer wins,
    /// every dataset, server name `localhost`.
    pub fn new(
        addrs: Vec<String>,
        trust: Trust,
        identity_pool_id: impl Into<String>,
        credential: Credential,
        device_id: impl Into<String>,
    ) -> Self {
        SyncConfig {
            addrs,
            server_name: "localhost".into(),
            trust,
            identity_pool_id: identity_pool_id.into(),
            credential,
            refresh: None,
            device_id: device_id.into(),
            store: LocalStore::Memory,
            resolver: Arc::new(LastWriterWins),
            dataset: None,
            timing: Timing::default(),
            write_window: 32,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            endpoint: None,
        }
    }

    /// Keeps the local copy in `store`.
    pub fn with_store(mut self, store: LocalStore) -> Self {
        self.store = store;
        self
    }

    /// Resolves conflicts with `resolver`.
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = resolver;
        self
    }

    /// Gets new credentials from `refresh` when the server refuses one.
    pub fn with_refresh(mut self, refresh: Arc<dyn CredentialRefresh>) -> Self {
        self.refresh = Some(refresh);
        self
    }

    /// Follows only `dataset`.
    pub fn with_dataset(mut self, dataset: impl Into<String>) -> Self {
        self.dataset = Some(dataset.into());
        self
    }

    /// Connects through `endpoint`, shared with other clients.
    pub fn with_endpoint(mut self, endpoint: quinn::Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Uses these timings.
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }
}

impl fmt::Debug for SyncConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncConfig")
            .field("addrs", &self.addrs)
            .field("server_name", &self.server_name)
            .field("trust", &self.trust)
            .field("identity_pool_id", &self.identity_pool_id)
            .field("credential", &self.credential)
            .field("refresh", &self.refresh.is_some())
            .field("device_id", &self.device_id)
            .field("store", &self.store)
            .field("dataset", &self.dataset)
            .field("timing", &self.timing)
            .field("write_window", &self.write_window)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("shared_endpoint", &self.endpoint.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_any_case_with_colons() {
        let hex = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
        let colons: String = hex
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        let a = Trust::fingerprints(&[hex]).unwrap();
        let b = Trust::fingerprints(&[colons.to_lowercase()]).unwrap();
        assert_eq!(a, b);
        assert!(Trust::fingerprints(&["abcd"]).is_err());
        assert!(Trust::fingerprints(&["zz"]).is_err());
        assert!(Trust::fingerprints::<&str>(&[]).is_err());
    }

    #[test]
    fn debug_output_has_no_secret() {
        let c = SyncConfig::new(
            vec!["127.0.0.1:7702".into()],
            Trust::Fingerprints(vec![[0; 32]]),
            "local:pool",
            Credential::Credentials("s3cr3t-token".into()),
            "phone",
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
