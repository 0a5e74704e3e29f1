//! Node configuration: a TOML file, overridden by environment variables and
//! flags (flags win). Every field is documented as the operator sees it.
//!
//! ```toml
//! node_id = 1
//! data_dir = "/var/lib/tessera"
//! api_addr = "0.0.0.0:7700"
//! peer_addr = "0.0.0.0:7701"
//! sync_addr = "0.0.0.0:7702"   # UDP; default: the api port + 2
//! advertise_api_addr = "node1.internal:7700"
//! advertise_peer_addr = "node1.internal:7701"
//! advertise_sync_addr = "node1.internal:7702"
//! public_url = "https://auth.example.com"   # base of magic links
//! log_format = "json"
//!
//! [tls]
//! api_cert = "/etc/tessera/api.crt"
//! api_key = "/etc/tessera/api.key"
//! peer_cert = "/etc/tessera/node1.crt"
//! peer_key = "/etc/tessera/node1.key"
//! peer_ca = "/etc/tessera/ca.crt"
//!
//! sealing_key_file = "/etc/tessera/sealing.key"
//! signing_key_rotation_days = 30
//!
//! [courier]
//! backend = "webhook"          # or "outbox" (default), "smtp"
//! [courier.webhook]
//! url = "https://hooks.internal/tessera"
//! secret = "..."
//!
//! [raft]
//! heartbeat_ms = 100
//! election_timeout_min_ms = 400
//! election_timeout_max_ms = 800
//! snapshot_every = 10000
//! keep_logs_after_snapshot = 1000
//! max_staleness_ms = 2400       # default: 3 × election_timeout_max_ms
//!
//! [sync]
//! cert = "/etc/tessera/sync.crt"   # default: a self-signed one in data_dir/keys
//! key = "/etc/tessera/sync.key"
//! max_connections = 20000
//! max_connections_per_identity = 16
//! idle_timeout_ms = 60000
//! keepalive_ms = 15000
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::model::cluster::{validate_host_port, validate_node_id, NodeAddr};
use crate::raft::RaftSettings;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file (first) could not be read.
    #[error("reading config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The file (first) is not valid TOML for a node config, or names an unknown key.
    #[error("parsing config file {0}: {1}")]
    Parse(PathBuf, toml::de::Error),
    /// A value is out of range or inconsistent with another; the message names the field.
    #[error("config: {0}")]
    Invalid(String),
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// TLS file paths. TLS is on for a listener when its files are all set;
/// without them the node serves plaintext and logs a warning.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate of the api listener.
    pub api_cert: Option<PathBuf>,
    /// PEM private key of the api listener.
    pub api_key: Option<PathBuf>,
    /// PEM certificate this node presents to peers, with SAN `node-<id>`.
    pub peer_cert: Option<PathBuf>,
    /// PEM private key for `peer_cert`.
    pub peer_key: Option<PathBuf>,
    /// PEM CA that signs every node's peer certificate (mutual TLS).
    pub peer_ca: Option<PathBuf>,
}

/// Raft tuning. The defaults suit a LAN cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// Leader heartbeat interval. openraft also uses it as the timeout of a
    /// replication call, so it must exceed a follower's fsync latency.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot, so a follower that lags briefly
    /// catches up from the log rather than by a full snapshot.
    pub keep_logs_after_snapshot: u64,
    /// Largest snapshot this node accepts from a leader, in bytes.
    pub max_snapshot_bytes: u64,
    /// How long a write may wait for a leader and a quorum.
    pub propose_timeout_ms: u64,
    /// Reach some peers at another address than the one in the membership,
    /// by node id: `peer_address_overrides = { "2" = "10.0.0.7:7701" }`.
    /// For NAT, and for the chaos harness's per-link proxies.
    pub peer_address_overrides: BTreeMap<String, String>,
    /// Bounded staleness, in milliseconds: a node that has not had its state
    /// confirmed by a quorum (a ReadIndex round through the leader) for
    /// longer than this refuses sign-in (`InitiateAuth`,
    /// `AdminInitiateAuth`, `RespondToAuthChallenge`), refresh, `GetUser`
    /// and every call made with an access token, with `Unavailable`
    /// (`ServiceUnavailableException`), so that a node cut off from the
    /// majority cannot honour a refresh token, password or user revoked
    /// there. Tokens it issued earlier still verify offline against the
    /// JWKS. Default: 3 × `election_timeout_max_ms` (2400 ms with the
    /// default timings); must exceed `election_timeout_max_ms`, so that one
    /// leader election does not make a healthy cluster stale. Smaller is
    /// safer; larger rides out longer network hiccups.
    pub max_staleness_ms: Option<u64>,
}

impl Default for RaftConfig {
    fn default() -> Self {
        let d = RaftSettings::default();
        RaftConfig {
            heartbeat_ms: d.heartbeat_ms,
            election_timeout_min_ms: d.election_timeout_min_ms,
            election_timeout_max_ms: d.election_timeout_max_ms,
            snapshot_every: d.snapshot_every,
            keep_logs_after_snapshot: d.keep_logs_after_snapshot,
            max_snapshot_bytes: d.max_snapshot_bytes,
            propose_timeout_ms: d.propose_timeout.as_millis() as u64,
            peer_address_overrides: BTreeMap::new(),
            max_staleness_ms: None,
        }
    }
}

/// Everything a node needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id: a positive integer, unique for the life of the
    /// cluster. A removed id is never reused.
    pub node_id: u64,
    /// Where the RocksDB database, snapshots and signing keys live.
    pub data_dir: PathBuf,
    /// `host:port` the client API (gRPC + HTTP) listens on.
    #[serde(default = "default_api_addr")]
    pub api_addr: String,
    /// `host:port` the peer (Raft) service listens on.
    #[serde(default = "default_peer_addr")]
    pub peer_addr: String,
    /// The api address other nodes and clients use; defaults to `api_addr`.
    #[serde(default)]
    pub advertise_api_addr: Option<String>,
    /// The peer address other nodes use; defaults to `peer_addr`.
    #[serde(default)]
    pub advertise_peer_addr: Option<String>,
    /// `host:port` (UDP) the device-sync QUIC listener binds; defaults to
    /// `api_addr`'s host and its port + 2 (7702 next to 7700).
    #[serde(default)]
    pub sync_addr: Option<String>,
    /// The sync address devices are told (`GET /sync-info`); defaults to
    /// `advertise_api_addr`'s host with the sync port when that is set,
    /// otherwise the bound sync address.
    #[serde(default)]
    pub advertise_sync_addr: Option<String>,
    /// The URL at which people's browsers reach this node's HTTP API (a
    /// load balancer's, usually), without a trailing slash. Magic links
    /// point at `{public_url}/{pool_id}/magic-link`. Default:
    /// `http(s)://` (`https` with `[tls]` api_cert) and the advertised api
    /// address (`advertise_api_addr`, else the bound `api_addr`). A node
    /// setting, unlike the cluster's public URL given at `cluster init`,
    /// which names the tokens' issuer: links may point at a node directly.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The 12-digit account id of the ARNs Tessera writes in Cognito's
    /// shapes (`arn:aws:cognito-idp:{region}:{account_id}:userpool/{id}`):
    /// SDKs and tools parse those ARNs, so they must have AWS's form. Set
    /// the same on every node. Default `000000000000`.
    #[serde(default)]
    pub account_id: Option<String>,
    /// The region this cluster plays, as Cognito's ids and signatures carry
    /// one: new pools are `{region}_XXXX`, identity pools
    /// `{region}:uuid`, and SigV4 signatures must be scoped to it. Set the
    /// same on every node, before the first pool. Default `local`.
    #[serde(default)]
    pub region: Option<String>,
    /// `text` or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// TLS for both listeners.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Raft tuning.
    #[serde(default)]
    pub raft: RaftConfig,
    /// File holding the cluster sealing key (64 hex characters), the same
    /// file on every node. Client secrets are encrypted with it, so it is
    /// needed for app clients with a secret. Create one with
    /// `openssl rand -hex 32`; `tessera dev` makes its own.
    #[serde(default)]
    pub sealing_key_file: Option<PathBuf>,
    /// Replace this node's token-signing key after this many days; 0 means
    /// only when `cluster rotate-keys` asks.
    #[serde(default = "default_rotation_days")]
    pub signing_key_rotation_days: u32,
    /// Password hashes computed at once (each takes ~19 MiB and a core for
    /// ~20 ms); default one per core.
    #[serde(default)]
    pub password_hash_concurrency: Option<usize>,
    /// How confirmation codes and temporary passwords are delivered.
    #[serde(default)]
    pub courier: crate::courier::CourierConfig,
    /// Per-address limits on the calls that send and check codes.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The join token this node was started with (`--join-token`,
    /// `TESSERA_JOIN_TOKEN`), issued by `tessera cluster join-token create`
    /// on the cluster it is to join. Needed once, by a fresh node, for
    /// `tessera cluster add-node` to admit it; ignored after it has joined.
    #[serde(default)]
    pub join_token: Option<String>,
    /// A secret that `cluster init` must present when it does not come from
    /// this node's own loopback interface (`--bootstrap-token`,
    /// `TESSERA_BOOTSTRAP_TOKEN`). Without it, only a local caller may
    /// initialise a fresh node, and so claim its admin token.
    #[serde(default)]
    pub bootstrap_token: Option<String>,
    /// Serve the peer port without TLS on an address that is not loopback.
    /// Peer calls are authenticated either way (per-node keys), but in
    /// plaintext anyone on the network can read them, user records and
    /// password hashes included. Set it only on a private network (such as
    /// the compose cluster's); otherwise configure `[tls]` peer_cert,
    /// peer_key and peer_ca.
    #[serde(default)]
    pub allow_plaintext_peers: bool,
    /// Clock skew allowed between nodes in token checks, and the bound on
    /// the signing-key retiring period (tests).
    #[serde(default)]
    pub tokens: TokensConfig,
    /// External OpenID Connect providers of identity pools: clock skew
    /// and how their keys are fetched (`[oidc]`).
    #[serde(default)]
    pub oidc: OidcSettings,
    /// Per-identity data sync and its QUIC device listener (`[sync]`).
    #[serde(default)]
    pub sync: SyncConfig,
}

/// Per-identity data sync (`[sync]`): the QUIC device listener's
/// certificate, limits and timers, and the bounds of each identity's
/// data. See docs/sync-protocol.md; the module doc of `sync::server`
/// gives what one connection can cost with these values.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// PEM certificate chain of the sync listener. With `key`; leave both
    /// unset and the node makes a self-signed certificate on first start
    /// (`data_dir/keys/sync-cert.pem`, key `sync-key.pem`, mode 0600) and
    /// keeps it, so devices can pin its SHA-256 fingerprint
    /// (`/sync-info`, `tessera dev`).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Device connections this node holds at once (default 20000). Beyond
    /// it a connection is closed with TOO_MANY_CONNECTIONS.
    pub max_connections: usize,
    /// Device sessions of one identity on this node at once (default 16).
    pub max_connections_per_identity: usize,
    /// The largest device-protocol frame either side may send, in bytes
    /// (default 2 MiB). It must hold a whole dataset (`max_dataset_bytes`
    /// and its records' metadata).
    pub max_frame_bytes: u32,
    /// How long a new connection may take to send its Hello (default
    /// 10000 ms); then it is closed with HELLO_TIMEOUT.
    pub hello_timeout_ms: u64,
    /// A connection that sends nothing (not even a QUIC acknowledgement)
    /// for this long is gone (default 60000 ms).
    pub idle_timeout_ms: u64,
    /// How often the node pings a quiet connection, which keeps it (and
    /// NAT bindings) alive (default 15000 ms; 0: never). Less than
    /// `idle_timeout_ms`.
    pub keepalive_ms: u64,
    /// Changes queued for one session that its device has not read yet
    /// (default 256). Beyond it the queue is dropped and the device is
    /// resynced from the store.
    pub queue_events: usize,
    /// Bytes of changes queued for one session (default 4 MiB).
    pub queue_bytes: u64,
    /// Bytes of device frames this node reads and holds at once, over all
    /// connections (default 64 MiB): many devices sending large frames
    /// together wait for each other rather than exhaust memory. At least
    /// `max_frame_bytes`.
    pub frame_budget_bytes: u64,
    /// Datasets per identity (default 20, Cognito's).
    pub max_datasets: u32,
    /// Records per dataset (default 1024).
    pub max_records: u32,
    /// Bytes of keys and values per dataset (default 1 MiB).
    pub max_dataset_bytes: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        let l = crate::model::sync::SyncLimits::default();
        let q = crate::sync::hub::QueueBounds::default();
        SyncConfig {
            cert: None,
            key: None,
            max_connections: 20_000,
            max_connections_per_identity: 16,
            max_frame_bytes: crate::sync::frame::DEFAULT_MAX_FRAME_BYTES,
            hello_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            keepalive_ms: 15_000,
            queue_events: q.max_events,
            queue_bytes: q.max_bytes,
            frame_budget_bytes: 64 << 20,
            max_datasets: l.max_datasets,
            max_records: l.max_records,
            max_dataset_bytes: l.max_dataset_bytes,
        }
    }
}

impl SyncConfig {
    /// The data bounds that writes are made under.
    pub fn limits(&self) -> crate::model::sync::SyncLimits {
        crate::model::sync::SyncLimits {
            max_datasets: self.max_datasets,
            max_records: self.max_records,
            max_dataset_bytes: self.max_dataset_bytes,
        }
    }

    /// The bounds of each session's queue on the change hub.
    pub fn queue_bounds(&self) -> crate::sync::hub::QueueBounds {
        crate::sync::hub::QueueBounds {
            max_events: self.queue_events,
            max_bytes: self.queue_bytes,
        }
    }

    /// The smallest `max_frame_bytes` that holds a whole dataset: its
    /// keys and values, and per record its sync count, dates and a device
    /// id of up to 256 characters (counted at 384 bytes), plus the frame's
    /// own fields.
    pub fn min_frame_bytes(&self) -> u64 {
        self.max_dataset_bytes + u64::from(self.max_records) * 384 + 16 * 1024
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(format!("sync.{m}")));
        if self.cert.is_some() != self.key.is_some() {
            return bad("cert and sync.key go together: set both, or neither for a self-signed certificate".into());
        }
        if self.max_connections == 0 || self.max_connections_per_identity == 0 {
            return bad("max_connections and max_connections_per_identity must be positive".into());
        }
        if self.max_connections_per_identity > self.max_connections {
            return bad(format!(
                "max_connections_per_identity ({}) cannot exceed max_connections ({})",
                self.max_connections_per_identity, self.max_connections
            ));
        }
        if u64::from(self.max_frame_bytes) < self.min_frame_bytes() {
            return bad(format!(
                "max_frame_bytes ({}) must hold a whole dataset: at least {} with max_dataset_bytes = {} and \
                 max_records = {}",
                self.max_frame_bytes,
                self.min_frame_bytes(),
                self.max_dataset_bytes,
                self.max_records
            ));
        }
        if self.frame_budget_bytes < u64::from(self.max_frame_bytes) {
            return bad(format!(
                "frame_budget_bytes ({}) must be at least max_frame_bytes ({}), or a largest frame could never be read",
                self.frame_budget_bytes, self.max_frame_bytes
            ));
        }
        if self.hello_timeout_ms == 0 || self.idle_timeout_ms == 0 {
            return bad("hello_timeout_ms and idle_timeout_ms must be positive".into());
        }
        // QUIC's idle timeout is a 62-bit count of milliseconds; a day is
        // already far past any use.
        if self.idle_timeout_ms > 86_400_000 {
            return bad("idle_timeout_ms must be at most 86400000 (a day)".into());
        }
        if self.keepalive_ms >= self.idle_timeout_ms {
            return bad(format!(
                "keepalive_ms ({}) must be less than idle_timeout_ms ({}), or idle connections would time out \
                 between keepalives",
                self.keepalive_ms, self.idle_timeout_ms
            ));
        }
        if self.queue_events == 0 || self.queue_bytes < 64 * 1024 {
            return bad("queue_events must be positive and queue_bytes at least 65536".into());
        }
        if self.max_datasets == 0 || self.max_records == 0 || self.max_dataset_bytes == 0 {
            return bad("max_datasets, max_records and max_dataset_bytes must be positive".into());
        }
        Ok(())
    }
}

/// How this node checks external providers' id tokens (`[oidc]`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcSettings {
    /// Clock skew tolerated on a token's `exp`, `nbf` and `iat`, in
    /// seconds (default 60, at most 300).
    pub leeway_secs: u32,
    /// Least time between two fetches of one provider's keys, in seconds
    /// (default 30): a token naming an unknown key id within it is refused
    /// without a fetch, so forged key ids cannot make the node hammer the
    /// provider.
    pub min_refetch_secs: u32,
    /// How long fetched keys are used before they are fetched again, in
    /// seconds (default 3600).
    pub max_age_secs: u32,
}

impl Default for OidcSettings {
    fn default() -> Self {
        OidcSettings {
            leeway_secs: 60,
            min_refetch_secs: 30,
            max_age_secs: 3600,
        }
    }
}

/// Token checks across nodes whose clocks differ (`[tokens]`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokensConfig {
    /// The most that two nodes' clocks may differ, in milliseconds (default
    /// 5000). Sign-out and revocation err on the safe side by this much: a
    /// token counts as revoked when its issue time (`iat_ms`, by the clock
    /// of the node that minted it) is at or before the revocation time (by
    /// the clock of the node that took the sign-out) plus this skew. A node
    /// that mints a token after it applied a revocation dates the token
    /// past that bound, so a fresh sign-in is not caught by it. Tokens of a
    /// retiring key are accepted only if issued at most this long after the
    /// key stopped signing. Set it to the bound your NTP setup guarantees.
    pub clock_skew_ms: u64,
    /// For tests only: bounds how long a signing key stays retiring (verify
    /// only) before it is retired (out of the JWKS, its tokens refused).
    /// Unset, the period is the longest token lifetime of any pool or app
    /// client (refresh tokens: 30 days by default, at least 1 hour), which
    /// is what makes retiring safe. A node with this set shortens the period
    /// of every key it stamps, cluster-wide; never set it in production.
    pub max_key_retiring_secs: Option<u64>,
}

impl Default for TokensConfig {
    fn default() -> Self {
        TokensConfig {
            clock_skew_ms: DEFAULT_CLOCK_SKEW_MS,
            max_key_retiring_secs: None,
        }
    }
}

/// Default of `tokens.clock_skew_ms`: what NTP keeps a LAN well within.
pub const DEFAULT_CLOCK_SKEW_MS: u64 = 5_000;

/// Largest `tokens.clock_skew_ms` accepted: beyond a minute, clocks are
/// broken, and the safe-side rule would refuse fresh tokens for as long.
pub const MAX_CLOCK_SKEW_MS: u64 = 60_000;

/// Per-client-address and per-destination rate limits, kept by each node
/// for the callers it serves (per-user limits are cluster-wide and fixed: 5
/// code sends per user and purpose per hour). IPv6 callers are keyed by
/// their /64. A caller over a limit gets `TooManyRequestsException`
/// (address) or `LimitExceededException` (destination). Each bound is per
/// node: the cluster-wide worst case is the bound times the nodes reachable.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Connections the api listener holds open at once; beyond it new
    /// sockets wait in the kernel's backlog until one closes.
    #[serde(default = "default_max_api_connections")]
    pub max_api_connections: usize,
    /// Connections the peer listener holds open at once.
    #[serde(default = "default_max_peer_connections")]
    pub max_peer_connections: usize,
    /// Code sends (ForgotPassword, ResendConfirmationCode,
    /// GetUserAttributeVerificationCode) one address may burst; 0 turns the
    /// limit off.
    #[serde(default = "default_send_burst")]
    pub code_sends_burst: u32,
    /// Code sends per minute an address earns back.
    #[serde(default = "default_send_rate")]
    pub code_sends_per_minute: u32,
    /// Code checks (ConfirmSignUp, ConfirmForgotPassword,
    /// VerifyUserAttribute) one address may burst; 0 turns the limit off.
    #[serde(default = "default_check_burst")]
    pub code_checks_burst: u32,
    /// Code checks per minute an address earns back.
    #[serde(default = "default_check_rate")]
    pub code_checks_per_minute: u32,
    /// `SignUp` calls one address may burst; 0 turns the limit off.
    #[serde(default = "default_sign_up_burst")]
    pub sign_ups_burst: u32,
    /// `SignUp` calls per minute an address earns back.
    #[serde(default = "default_sign_up_rate")]
    pub sign_ups_per_minute: u32,
    /// Messages (codes) one email address or phone number may be sent at
    /// once, whatever account names it (SignUp, ResendConfirmationCode,
    /// ForgotPassword); 0 turns the limit off.
    #[serde(default = "default_destination_burst")]
    pub destination_burst: u32,
    /// Messages per hour a destination earns back.
    #[serde(default = "default_destination_rate")]
    pub destination_per_hour: u32,
    /// Guest calls of identity pools (`GetId` and credentials without a
    /// login) one address may burst; 0 turns the limit off. A guest costs
    /// no password, so this is what keeps one client from minting
    /// identities without end.
    #[serde(default = "default_guest_burst")]
    pub guests_burst: u32,
    /// Guest calls per minute an address earns back.
    #[serde(default = "default_guest_rate")]
    pub guests_per_minute: u32,
}

impl LimitsConfig {
    /// The limiter's rates.
    pub fn rates(&self) -> crate::auth::rate_limit::Rates {
        use crate::auth::rate_limit::Rate;
        crate::auth::rate_limit::Rates {
            code_send: Rate::per_minute(self.code_sends_burst, self.code_sends_per_minute),
            code_check: Rate::per_minute(self.code_checks_burst, self.code_checks_per_minute),
            sign_up: Rate::per_minute(self.sign_ups_burst, self.sign_ups_per_minute),
            destination: Rate::per_hour(self.destination_burst, self.destination_per_hour),
            guest: Rate::per_minute(self.guests_burst, self.guests_per_minute),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_api_connections: default_max_api_connections(),
            max_peer_connections: default_max_peer_connections(),
            code_sends_burst: default_send_burst(),
            code_sends_per_minute: default_send_rate(),
            code_checks_burst: default_check_burst(),
            code_checks_per_minute: default_check_rate(),
            sign_ups_burst: default_sign_up_burst(),
            sign_ups_per_minute: default_sign_up_rate(),
            destination_burst: default_destination_burst(),
            destination_per_hour: default_destination_rate(),
            guests_burst: default_guest_burst(),
            guests_per_minute: default_guest_rate(),
        }
    }
}

/// The account id of ARNs when the config names none.
pub const DEFAULT_ACCOUNT_ID: &str = "000000000000";

fn default_max_api_connections() -> usize {
    4096
}

fn default_max_peer_connections() -> usize {
    256
}

fn default_send_burst() -> u32 {
    100
}

fn default_send_rate() -> u32 {
    60
}

fn default_check_burst() -> u32 {
    200
}

fn default_check_rate() -> u32 {
    120
}

fn default_sign_up_burst() -> u32 {
    5_000
}

fn default_sign_up_rate() -> u32 {
    1_000
}

fn default_destination_burst() -> u32 {
    20
}

fn default_destination_rate() -> u32 {
    20
}

fn default_guest_burst() -> u32 {
    100
}

fn default_guest_rate() -> u32 {
    600
}

fn default_rotation_days() -> u32 {
    30
}

fn default_api_addr() -> String {
    "127.0.0.1:7700".into()
}

fn default_peer_addr() -> String {
    "127.0.0.1:7701".into()
}

/// Flag and environment values that override the file (clap fills these).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces [`NodeConfig::node_id`] (`--node-id`, `TESSERA_NODE_ID`); `None` keeps the file's value.
    pub node_id: Option<u64>,
    /// Replaces [`NodeConfig::data_dir`] (`--data-dir`, `TESSERA_DATA_DIR`); `None` keeps the file's value.
    pub data_dir: Option<PathBuf>,
    /// Replaces [`NodeConfig::api_addr`] (`--api-addr`, `TESSERA_API_ADDR`); `None` keeps the file's value.
    pub api_addr: Option<String>,
    /// Replaces [`NodeConfig::peer_addr`] (`--peer-addr`, `TESSERA_PEER_ADDR`); `None` keeps the file's value.
    pub peer_addr: Option<String>,
    /// Replaces [`NodeConfig::advertise_api_addr`] (`--advertise-api-addr`, `TESSERA_ADVERTISE_API_ADDR`); `None` keeps the file's value.
    pub advertise_api_addr: Option<String>,
    /// Replaces [`NodeConfig::advertise_peer_addr`] (`--advertise-peer-addr`, `TESSERA_ADVERTISE_PEER_ADDR`); `None` keeps the file's value.
    pub advertise_peer_addr: Option<String>,
    /// Replaces [`NodeConfig::sync_addr`] (`--sync-addr`, `TESSERA_SYNC_ADDR`); `None` keeps the file's value.
    pub sync_addr: Option<String>,
    /// Replaces [`NodeConfig::advertise_sync_addr`] (`--advertise-sync-addr`, `TESSERA_ADVERTISE_SYNC_ADDR`); `None` keeps the file's value.
    pub advertise_sync_addr: Option<String>,
    /// Replaces [`NodeConfig::log_format`] (`--log-format`, `TESSERA_LOG_FORMAT`); `None` keeps the file's value.
    pub log_format: Option<LogFormat>,
    /// Replaces [`NodeConfig::join_token`] (`--join-token`, `TESSERA_JOIN_TOKEN`); `None` keeps the file's value.
    pub join_token: Option<String>,
    /// Replaces [`NodeConfig::bootstrap_token`] (`--bootstrap-token`, `TESSERA_BOOTSTRAP_TOKEN`); `None` keeps the file's value.
    pub bootstrap_token: Option<String>,
}

impl NodeConfig {
    /// The region of ids and signatures ([`NodeConfig::region`]).
    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or(crate::model::pool::POOL_ID_PREFIX)
    }

    /// The account id of ARNs ([`NodeConfig::account_id`]).
    pub fn arn_account(&self) -> &str {
        self.account_id.as_deref().unwrap_or(DEFAULT_ACCOUNT_ID)
    }

    /// The external-token verifier's settings.
    pub fn oidc_config(&self) -> crate::auth::oidc::OidcConfig {
        crate::auth::oidc::OidcConfig {
            leeway_secs: i64::from(self.oidc.leeway_secs.min(300)),
            min_refetch_interval: std::time::Duration::from_secs(u64::from(self.oidc.min_refetch_secs)),
            max_age: std::time::Duration::from_secs(u64::from(self.oidc.max_age_secs.max(self.oidc.min_refetch_secs))),
            ..Default::default()
        }
    }

    /// Reads `file` (if any) and applies `overrides` on top.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let mut table: toml::Table = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::Read(p.to_path_buf(), e))?;
                text.parse().map_err(|e| ConfigError::Parse(p.to_path_buf(), e))?
            }
            None => toml::Table::new(),
        };
        let mut set = |k: &str, v: Option<toml::Value>| {
            if let Some(v) = v {
                table.insert(k.to_string(), v);
            }
        };
        set("node_id", overrides.node_id.map(|n| toml::Value::Integer(n as i64)));
        set(
            "data_dir",
            overrides
                .data_dir
                .map(|d| toml::Value::String(d.to_string_lossy().into_owned())),
        );
        set("api_addr", overrides.api_addr.map(toml::Value::String));
        set("peer_addr", overrides.peer_addr.map(toml::Value::String));
        set(
            "advertise_api_addr",
            overrides.advertise_api_addr.map(toml::Value::String),
        );
        set(
            "advertise_peer_addr",
            overrides.advertise_peer_addr.map(toml::Value::String),
        );
        set("sync_addr", overrides.sync_addr.map(toml::Value::String));
        set(
            "advertise_sync_addr",
            overrides.advertise_sync_addr.map(toml::Value::String),
        );
        set(
            "log_format",
            overrides.log_format.map(|f| {
                toml::Value::String(match f {
                    LogFormat::Text => "text".into(),
                    LogFormat::Json => "json".into(),
                })
            }),
        );
        set("join_token", overrides.join_token.map(toml::Value::String));
        set("bootstrap_token", overrides.bootstrap_token.map(toml::Value::String));
        if !table.contains_key("node_id") {
            return Err(ConfigError::Invalid(
                "node_id is required (--node-id, TESSERA_NODE_ID or node_id in the config file)".into(),
            ));
        }
        if !table.contains_key("data_dir") {
            return Err(ConfigError::Invalid(
                "data_dir is required (--data-dir, TESSERA_DATA_DIR or data_dir in the config file)".into(),
            ));
        }
        let cfg: NodeConfig = table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that deserialization cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let inv = |e: crate::model::ValidationError| ConfigError::Invalid(e.to_string());
        validate_node_id(self.node_id).map_err(inv)?;
        validate_host_port("api_addr", &self.api_addr).map_err(inv)?;
        validate_host_port("peer_addr", &self.peer_addr).map_err(inv)?;
        if let Some(a) = &self.advertise_api_addr {
            validate_host_port("advertise_api_addr", a).map_err(inv)?;
        }
        if let Some(a) = &self.advertise_peer_addr {
            validate_host_port("advertise_peer_addr", a).map_err(inv)?;
        }
        if let Some(u) = &self.public_url {
            let scheme_ok = u.starts_with("http://") || u.starts_with("https://");
            if !scheme_ok || u.len() > 512 || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ConfigError::Invalid(
                    "public_url: an http:// or https:// URL of at most 512 characters, without spaces".into(),
                ));
            }
        }
        if let Some(r) = &self.region {
            let ok = !r.is_empty()
                && r.len() <= 32
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !r.starts_with('-')
                && !r.ends_with('-');
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "region: 1 to 32 of a-z, 0-9 and inner '-' (like eu-west-1), not {r:?}"
                )));
            }
        }
        if let Some(a) = &self.account_id {
            if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ConfigError::Invalid(format!(
                    "account_id: AWS account ids are 12 digits, not {a:?}"
                )));
            }
        }
        if let Some(a) = &self.sync_addr {
            validate_host_port("sync_addr", a).map_err(inv)?;
        }
        if let Some(a) = &self.advertise_sync_addr {
            validate_host_port("advertise_sync_addr", a).map_err(inv)?;
        }
        self.sync_bind_addr()?;
        self.sync.validate()?;
        let peer_tls = self.tls.peer_cert.is_some() && self.tls.peer_key.is_some() && self.tls.peer_ca.is_some();
        if !peer_tls && !self.allow_plaintext_peers && !is_loopback_addr(&self.peer_addr) {
            return Err(ConfigError::Invalid(format!(
                "peer_addr {} is not a loopback address and the peer port has no TLS: other nodes' traffic \
                 (user records, password hashes) would cross the network readable by anyone on it. Configure \
                 mutual TLS ([tls] peer_cert, peer_key, peer_ca), or, on a private network only, set \
                 allow_plaintext_peers = true (peer calls are authenticated with per-node keys either way)",
                self.peer_addr
            )));
        }
        if let Some(t) = &self.join_token {
            crate::raft::join::JoinToken::parse(t).map_err(|e| ConfigError::Invalid(format!("join_token: {e}")))?;
        }
        if self.bootstrap_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::Invalid(
                "bootstrap_token: at least 16 characters (e.g. openssl rand -hex 16)".into(),
            ));
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0
            || r.election_timeout_min_ms <= r.heartbeat_ms
            || r.election_timeout_max_ms <= r.election_timeout_min_ms
        {
            return Err(ConfigError::Invalid(
                "raft: need 0 < heartbeat_ms < election_timeout_min_ms < election_timeout_max_ms".into(),
            ));
        }
        if r.max_staleness_ms.is_some_and(|m| m <= r.election_timeout_max_ms) {
            return Err(ConfigError::Invalid(format!(
                "raft.max_staleness_ms must exceed raft.election_timeout_max_ms ({} ms), or a single leader \
                 election would make healthy nodes refuse sign-ins; leave it unset for 3 × election_timeout_max_ms",
                r.election_timeout_max_ms
            )));
        }
        if r.snapshot_every == 0 {
            return Err(ConfigError::Invalid("raft.snapshot_every must be positive".into()));
        }
        for (id, addr) in &r.peer_address_overrides {
            if id.parse::<u64>().map_or(true, |n| n == 0) {
                return Err(ConfigError::Invalid(format!(
                    "raft.peer_address_overrides: {id:?} is not a node id"
                )));
            }
            validate_host_port("raft.peer_address_overrides", addr).map_err(inv)?;
        }
        if self.tokens.clock_skew_ms > MAX_CLOCK_SKEW_MS {
            return Err(ConfigError::Invalid(format!(
                "tokens.clock_skew_ms must be at most {MAX_CLOCK_SKEW_MS} (keep node clocks in sync with NTP)"
            )));
        }
        if self.password_hash_concurrency == Some(0) {
            return Err(ConfigError::Invalid(
                "password_hash_concurrency must be positive".into(),
            ));
        }
        Ok(())
    }

    /// The addresses other members use to reach this node.
    pub fn advertised(&self) -> NodeAddr {
        NodeAddr {
            api_addr: self.advertise_api_addr.clone().unwrap_or_else(|| self.api_addr.clone()),
            peer_addr: self
                .advertise_peer_addr
                .clone()
                .unwrap_or_else(|| self.peer_addr.clone()),
        }
    }

    /// The UDP address the sync listener binds: `sync_addr`, or the api
    /// address's host with its port + 2 (port 0 stays 0: any free port).
    pub fn sync_bind_addr(&self) -> Result<String, ConfigError> {
        if let Some(a) = &self.sync_addr {
            return Ok(a.clone());
        }
        let (host, port) = split_host_port(&self.api_addr)
            .ok_or_else(|| ConfigError::Invalid(format!("api_addr {:?} is not host:port", self.api_addr)))?;
        let sync_port = match port {
            0 => 0,
            p => p.checked_add(2).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "sync_addr: the default (api port + 2) of api_addr {} is not a port; set sync_addr",
                    self.api_addr
                ))
            })?,
        };
        Ok(format!("{host}:{sync_port}"))
    }

    /// The sync address devices are told, if it is known before binding:
    /// `advertise_sync_addr`, or `advertise_api_addr`'s host with the sync
    /// port. `None`: the bound address.
    pub fn advertised_sync_addr(&self) -> Option<String> {
        if let Some(a) = &self.advertise_sync_addr {
            return Some(a.clone());
        }
        let (api_host, _) = split_host_port(self.advertise_api_addr.as_deref()?)?;
        let bind = self.sync_bind_addr().ok()?;
        let (_, port) = split_host_port(&bind)?;
        (port != 0).then(|| format!("{api_host}:{port}"))
    }

    /// The sync listener's settings.
    pub fn sync_settings(&self) -> Result<crate::sync::server::SyncServerSettings, ConfigError> {
        let s = &self.sync;
        Ok(crate::sync::server::SyncServerSettings {
            bind: self.sync_bind_addr()?,
            advertise: self.advertised_sync_addr(),
            cert: s.cert.clone(),
            key: s.key.clone(),
            keys_dir: self.data_dir.join("keys"),
            max_connections: s.max_connections,
            max_connections_per_identity: s.max_connections_per_identity,
            max_frame_bytes: s.max_frame_bytes,
            hello_timeout: Duration::from_millis(s.hello_timeout_ms),
            idle_timeout: Duration::from_millis(s.idle_timeout_ms),
            keepalive: (s.keepalive_ms > 0).then(|| Duration::from_millis(s.keepalive_ms)),
            frame_budget_bytes: s.frame_budget_bytes,
        })
    }

    /// Raft settings for [`crate::raft::RaftNode::start`].
    pub fn raft_settings(&self) -> RaftSettings {
        RaftSettings {
            heartbeat_ms: self.raft.heartbeat_ms,
            election_timeout_min_ms: self.raft.election_timeout_min_ms,
            election_timeout_max_ms: self.raft.election_timeout_max_ms,
            snapshot_every: self.raft.snapshot_every,
            keep_logs_after_snapshot: self.raft.keep_logs_after_snapshot,
            max_snapshot_bytes: self.raft.max_snapshot_bytes,
            propose_timeout: Duration::from_millis(self.raft.propose_timeout_ms),
            peer_address_overrides: self
                .raft
                .peer_address_overrides
                .iter()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.clone())))
                .collect(),
            max_staleness: Duration::from_millis(
                self.raft
                    .max_staleness_ms
                    .unwrap_or(3 * self.raft.election_timeout_max_ms),
            ),
        }
    }
}

/// `host` and port of a `host:port` (`[v6]:port` keeps its brackets).
fn split_host_port(host_port: &str) -> Option<(&str, u16)> {
    let (host, port) = host_port.rsplit_once(':')?;
    Some((host, port.parse().ok()?))
}

/// Whether a `host:port` listens only on loopback (`127.0.0.0/8`, `::1`,
/// `localhost`). `0.0.0.0`, `[::]` and host names are not.
pub fn is_loopback_addr(host_port: &str) -> bool {
    if let Ok(sa) = host_port.parse::<std::net::SocketAddr>() {
        return sa.ip().is_loopback();
    }
    host_port
        .rsplit_once(':')
        .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_peer_listeners_may_skip_tls() {
        for a in ["127.0.0.1:7701", "127.0.0.9:1", "[::1]:7701", "localhost:7701"] {
            assert!(is_loopback_addr(a), "{a}");
        }
        for a in ["0.0.0.0:7701", "[::]:7701", "10.0.0.1:7701", "node1:7701"] {
            assert!(!is_loopback_addr(a), "{a}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.toml");
        std::fs::write(&path, "node_id = 1\ndata_dir = \"/x\"\npeer_addr = \"0.0.0.0:7701\"\n").unwrap();
        let err = NodeConfig::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("allow_plaintext_peers") && err.contains("peer_ca"),
            "{err}"
        );
        std::fs::write(
            &path,
            "node_id = 1\ndata_dir = \"/x\"\npeer_addr = \"0.0.0.0:7701\"\nallow_plaintext_peers = true\n",
        )
        .unwrap();
        assert!(NodeConfig::load(Some(&path), Overrides::default()).is_ok());
        std::fs::write(&path, "node_id = 1\ndata_dir = \"/x\"\njoin_token = \"nope\"\n").unwrap();
        let err = NodeConfig::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("join_token"), "{err}");
    }

    #[test]
    fn flags_override_file_and_validation_explains() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.toml");
        std::fs::write(
            &path,
            "node_id = 1\ndata_dir = \"/tmp/x\"\napi_addr = \"127.0.0.1:9000\"\n[raft]\nsnapshot_every = 5\n",
        )
        .unwrap();
        let cfg = NodeConfig::load(
            Some(&path),
            Overrides {
                node_id: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(cfg.node_id, 2);
        assert_eq!(cfg.api_addr, "127.0.0.1:9000");
        assert_eq!(cfg.raft.snapshot_every, 5);
        assert_eq!(cfg.raft.heartbeat_ms, RaftConfig::default().heartbeat_ms);

        let err = NodeConfig::load(None, Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("node_id is required"), "{err}");
        std::fs::write(&path, "node_id = 1\ndata_dir = \"/x\"\nbogus = 1\n").unwrap();
        assert!(NodeConfig::load(Some(&path), Overrides::default()).is_err());
    }

    #[test]
    fn sync_listens_next_to_the_api_port_and_checks_its_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.toml");
        let load = |extra: &str| {
            std::fs::write(&path, format!("node_id = 1\ndata_dir = \"/tmp/x\"\n{extra}")).unwrap();
            NodeConfig::load(Some(&path), Overrides::default())
        };
        let d = load("").unwrap();
        assert_eq!(d.sync_bind_addr().unwrap(), "127.0.0.1:7702", "the api port + 2");
        assert_eq!(d.advertised_sync_addr(), None, "the bound address");
        let s = d.sync_settings().unwrap();
        assert_eq!(s.max_connections, 20_000);
        assert_eq!(s.max_connections_per_identity, 16);
        assert_eq!(s.max_frame_bytes, 2 << 20);
        assert_eq!(s.hello_timeout, Duration::from_secs(10));
        assert_eq!(s.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.keepalive, Some(Duration::from_secs(15)));
        assert_eq!(s.keys_dir, std::path::Path::new("/tmp/x/keys"));
        assert_eq!(d.sync.limits(), crate::model::sync::SyncLimits::default());
        assert_eq!(d.sync.queue_bounds().max_events, 256);

        let c = load("api_addr = \"0.0.0.0:9000\"\nadvertise_api_addr = \"node1.internal:9000\"\n").unwrap();
        assert_eq!(c.sync_bind_addr().unwrap(), "0.0.0.0:9002");
        assert_eq!(c.advertised_sync_addr().as_deref(), Some("node1.internal:9002"));
        let c = load("sync_addr = \"0.0.0.0:4433\"\nadvertise_sync_addr = \"sync.example.com:443\"\n").unwrap();
        assert_eq!(c.sync_bind_addr().unwrap(), "0.0.0.0:4433");
        assert_eq!(c.advertised_sync_addr().as_deref(), Some("sync.example.com:443"));
        let flags = NodeConfig::load(
            Some(&path),
            Overrides {
                sync_addr: Some("127.0.0.1:9999".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(flags.sync_bind_addr().unwrap(), "127.0.0.1:9999", "the flag wins");
        let tuned =
            load("[sync]\nhello_timeout_ms = 500\nmax_datasets = 5\nqueue_events = 32\nkeepalive_ms = 0\n").unwrap();
        assert_eq!(tuned.sync_settings().unwrap().hello_timeout, Duration::from_millis(500));
        assert_eq!(tuned.sync_settings().unwrap().keepalive, None);
        assert_eq!(tuned.sync.limits().max_datasets, 5);

        for (bad, says) in [
            ("api_addr = \"127.0.0.1:65534\"\n", "sync_addr"),
            ("sync_addr = \"nope\"\n", "sync_addr"),
            ("[sync]\ncert = \"/c.pem\"\n", "sync.cert"),
            ("[sync]\nmax_connections = 0\n", "sync.max_connections"),
            (
                "[sync]\nmax_connections = 4\nmax_connections_per_identity = 5\n",
                "cannot exceed",
            ),
            ("[sync]\nmax_frame_bytes = 65536\n", "must hold a whole dataset"),
            ("[sync]\nframe_budget_bytes = 1024\n", "frame_budget_bytes"),
            ("[sync]\nkeepalive_ms = 60000\n", "keepalive_ms"),
            ("[sync]\nqueue_events = 0\n", "queue_events"),
            ("[sync]\nmax_records = 0\n", "max_records"),
            ("[sync]\nbogus = 1\n", "bogus"),
        ] {
            let err = load(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn max_staleness_defaults_to_three_election_timeouts_and_must_exceed_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.toml");
        let load = |raft: &str| {
            std::fs::write(&path, format!("node_id = 1\ndata_dir = \"/tmp/x\"\n[raft]\n{raft}")).unwrap();
            NodeConfig::load(Some(&path), Overrides::default())
        };
        let d = load("").unwrap().raft_settings();
        assert_eq!(d.max_staleness, Duration::from_millis(2400));
        assert_eq!(d.max_staleness, RaftSettings::default().max_staleness);
        let tuned = load("election_timeout_min_ms = 300\nelection_timeout_max_ms = 600\n").unwrap();
        assert_eq!(tuned.raft_settings().max_staleness, Duration::from_millis(1800));
        let set = load("max_staleness_ms = 5000\n").unwrap();
        assert_eq!(set.raft_settings().max_staleness, Duration::from_millis(5000));
        let err = load("max_staleness_ms = 800\n").unwrap_err().to_string();
        assert!(err.contains("max_staleness_ms must exceed"), "{err}");
    }
}
