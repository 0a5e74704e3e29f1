//! Prometheus metrics served at `GET /metrics`.
//!
//! Counters and histograms are updated on the hot paths (proposals, applies,
//! fsyncs); Raft progress gauges are refreshed from openraft's metrics each
//! time the endpoint is scraped.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Every metric a node exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// `tessera_raft_term`: the current Raft term.
    pub term: Gauge,
    /// `tessera_raft_leader_id`: the known leader, 0 if none.
    pub leader_id: Gauge,
    /// `tessera_raft_is_leader`: 1 on the leader.
    pub is_leader: Gauge,
    /// `tessera_raft_last_log_index`: index of the last log entry.
    pub last_log_index: Gauge,
    /// `tessera_raft_committed_index`: highest committed index.
    pub committed_index: Gauge,
    /// `tessera_raft_applied_index`: highest applied index.
    pub applied_index: Gauge,
    /// `tessera_raft_snapshot_index`: last index the current snapshot covers.
    pub snapshot_index: Gauge,
    /// `tessera_proposal_latency_seconds`: time from proposal to applied result.
    pub proposal_latency: Histogram,
    /// `tessera_apply_batch_size`: entries per state-machine apply call.
    pub apply_batch_size: Histogram,
    /// `tessera_wal_fsync_batch_size`: log appends made durable by one fsync (group commit).
    pub fsync_batch_size: Histogram,
    /// `tessera_wal_fsyncs_total`: WAL fsyncs issued by the log flusher.
    pub fsyncs: Counter,
    /// `tessera_snapshots_built_total`: snapshots this node built.
    pub snapshots_built: Counter,
    /// `tessera_snapshots_installed_total`: snapshots installed from the leader.
    pub snapshots_installed: Counter,
    /// `tessera_snapshots_sent_total`: snapshots streamed to followers.
    pub snapshots_sent: Counter,
    /// `tessera_forwarded_proposals_total`: proposals forwarded to the leader.
    pub forwarded_proposals: Counter,
    /// `tessera_courier_delivered_total`: outbox messages delivered by the webhook or smtp backend.
    pub courier_delivered: Counter,
    /// `tessera_courier_retries_total`: failed delivery attempts that will be retried.
    pub courier_retries: Counter,
    /// `tessera_courier_failed_total`: messages given up after a permanent error or too many attempts.
    pub courier_failed: Counter,
    /// `tessera_list_users_rows_scanned_total`: index or user rows read to answer `ListUsers` (at most limit + 1 per page when an index is used).
    pub list_users_rows_scanned: Counter,
    /// `tessera_audit_events_dropped_total`: sign-in audit events dropped because the audit queue was full.
    pub audit_events_dropped: Counter,
    /// `tessera_sign_in_failures_total`: failed password sign-ins counted toward lockout.
    pub sign_in_failures: Counter,
    /// `tessera_peer_auth_failures_total`: peer calls refused for a missing or invalid membership credential.
    pub peer_auth_failures: Counter,
    /// ReadIndex rounds sent to the leader, and barriers asked for: their
    /// ratio shows how well concurrent barriers are coalesced.
    pub read_index_rounds: Counter,
    /// `tessera_read_index_callers_total`: read barriers requested on this node.
    pub read_index_callers: Counter,
    /// Outbox messages a courier backend still has to deliver, and the age
    /// of the oldest of them (refreshed at each scrape).
    pub outbox_backlog: Gauge,
    /// `tessera_outbox_oldest_age_seconds`: age of the oldest message waiting for delivery, 0 if none.
    pub outbox_oldest_age_seconds: Gauge,
    /// Open connections on the api and peer listeners (each bounded by
    /// `limits.max_api_connections` / `max_peer_connections`).
    pub api_connections: Gauge,
    /// `tessera_peer_connections`: open connections on the peer listener.
    pub peer_connections: Gauge,
    /// Messages held against the pools' queue bounds (pending, or stored
    /// for admins while their code is valid).
    pub outbox_open: Gauge,
    /// Enqueues refused because the pool's queue was full.
    pub outbox_refused: Counter,
    /// Calls refused by the per-address or per-destination limits.
    pub rate_limited: Counter,
    /// `tessera_sync_connections`: open device connections on the sync
    /// listener (bounded by `sync.max_connections`).
    pub sync_connections: Gauge,
    /// `tessera_sync_connections_refused_total`: device connections
    /// refused by the node or per-identity connection limit.
    pub sync_connections_refused: Counter,
    /// `tessera_sync_resyncs_total`: device sessions whose queue
    /// overflowed (slow device, or a snapshot installed), resynced from the
    /// store.
    pub sync_resyncs: Counter,
    /// `tessera_sync_frames_refused_total`: device connections closed for
    /// what they sent (oversize, malformed or out-of-order frames, extra
    /// streams, no Hello in time).
    pub sync_frames_refused: Counter,
    /// `tessera_process_resident_memory_bytes`: the node's resident set
    /// size, read from `/proc/self/status` at each scrape (0 where there is
    /// no procfs). `tessera bench sync --scenario idle` divides its growth
    /// by the connections it opened.
    pub resident_memory: Gauge,
    /// `tessera_sync_datagrams_dropped_total`: outgoing sync datagrams
    /// dropped because the socket's queue was full (QUIC recovers them as
    /// losses).
    pub sync_datagrams_dropped: Counter,
    /// `tessera_sync_handshakes_refused_total`: sync connection attempts
    /// refused because too many were waiting for the accept loop.
    pub sync_handshakes_refused: Counter,
    /// `tessera_trigger_calls_total{trigger, outcome}`: pool trigger calls
    /// by trigger and how they ended (`ok`, `refused`, `failed`, `timeout`).
    pub trigger_calls: Family<[(&'static str, &'static str); 2], Counter>,
    /// `tessera_trigger_latency_seconds{trigger}`: time a trigger call
    /// took, retries included.
    pub trigger_latency: LatencyFamily,
    /// `tessera_password_rehashes_total{scheme, outcome}`: stored password
    /// hashes replaced by the pool's argon2id after a sign-in, by the
    /// format they were in (`bcrypt`, `scrypt`, ...) and how it ended
    /// (`ok`, `superseded` when the password changed meanwhile, `failed`).
    pub password_rehashes: Family<[(&'static str, &'static str); 2], Counter>,
}

/// Histograms by one label, each made with the family's bucket layout.
pub type LatencyFamily = Family<[(&'static str, &'static str); 1], Histogram, fn() -> Histogram>;

fn trigger_latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("tessera");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            term: Gauge::default(),
            leader_id: Gauge::default(),
            is_leader: Gauge::default(),
            last_log_index: Gauge::default(),
            committed_index: Gauge::default(),
            applied_index: Gauge::default(),
            snapshot_index: Gauge::default(),
            proposal_latency: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            apply_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            fsync_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            fsyncs: Counter::default(),
            snapshots_built: Counter::default(),
            snapshots_installed: Counter::default(),
            snapshots_sent: Counter::default(),
            forwarded_proposals: Counter::default(),
            courier_delivered: Counter::default(),
            courier_retries: Counter::default(),
            courier_failed: Counter::default(),
            list_users_rows_scanned: Counter::default(),
            audit_events_dropped: Counter::default(),
            sign_in_failures: Counter::default(),
            peer_auth_failures: Counter::default(),
            read_index_rounds: Counter::default(),
            read_index_callers: Counter::default(),
            outbox_backlog: Gauge::default(),
            api_connections: Gauge::default(),
            peer_connections: Gauge::default(),
            outbox_oldest_age_seconds: Gauge::default(),
            outbox_open: Gauge::default(),
            outbox_refused: Counter::default(),
            rate_limited: Counter::default(),
            sync_connections: Gauge::default(),
            sync_connections_refused: Counter::default(),
            sync_resyncs: Counter::default(),
            sync_frames_refused: Counter::default(),
            resident_memory: Gauge::default(),
            sync_datagrams_dropped: Counter::default(),
            sync_handshakes_refused: Counter::default(),
            trigger_calls: Family::default(),
            trigger_latency: Family::new_with_constructor(trigger_latency_histogram),
            password_rehashes: Family::default(),
        };
        m.register_consensus(&mut r);
        m.register_service(&mut r);
        if let Ok(mut reg) = m.registry.lock() {
            *reg = r;
        }
        m
    }

    /// Registers the consensus and peer metrics (Raft progress, fsyncs,
    /// snapshots, peer authentication).
    fn register_consensus(&self, r: &mut Registry) {
        r.register(
            "peer_auth_failures",
            "Peer calls refused for a missing or invalid membership credential",
            self.peer_auth_failures.clone(),
        );
        r.register("raft_term", "Current Raft term", self.term.clone());
        r.register(
            "raft_leader_id",
            "Node id of the known leader, 0 if none",
            self.leader_id.clone(),
        );
        r.register("raft_is_leader", "1 if this node is the leader", self.is_leader.clone());
        r.register(
            "raft_last_log_index",
            "Index of the last log entry",
            self.last_log_index.clone(),
        );
        r.register(
            "raft_committed_index",
            "Highest committed log index",
            self.committed_index.clone(),
        );
        r.register(
            "raft_applied_index",
            "Highest applied log index",
            self.applied_index.clone(),
        );
        r.register(
            "raft_snapshot_index",
            "Last log index covered by the current snapshot",
            self.snapshot_index.clone(),
        );
        r.register(
            "proposal_latency_seconds",
            "Time from proposal to applied result",
            self.proposal_latency.clone(),
        );
        r.register(
            "apply_batch_size",
            "Entries per state-machine apply call",
            self.apply_batch_size.clone(),
        );
        r.register(
            "wal_fsync_batch_size",
            "Log appends made durable by one fsync",
            self.fsync_batch_size.clone(),
        );
        r.register(
            "wal_fsyncs",
            "WAL fsyncs issued by the log flusher",
            self.fsyncs.clone(),
        );
        r.register("snapshots_built", "Snapshots built", self.snapshots_built.clone());
        r.register(
            "snapshots_installed",
            "Snapshots installed from the leader",
            self.snapshots_installed.clone(),
        );
        r.register(
            "snapshots_sent",
            "Snapshots streamed to followers",
            self.snapshots_sent.clone(),
        );
    }

    /// Registers the service metrics (courier, outbox, directory, sign-in,
    /// limits, connections).
    fn register_service(&self, r: &mut Registry) {
        r.register(
            "sync_datagrams_dropped",
            "Outgoing sync datagrams dropped because the socket's queue was full (QUIC recovers them as losses)",
            self.sync_datagrams_dropped.clone(),
        );
        r.register(
            "sync_handshakes_refused",
            "Sync connection attempts refused because too many were waiting for the accept loop",
            self.sync_handshakes_refused.clone(),
        );
        r.register(
            "trigger_calls",
            "Pool trigger calls by trigger and outcome (ok, refused, failed, timeout)",
            self.trigger_calls.clone(),
        );
        r.register(
            "password_rehashes",
            "Stored password hashes replaced by the pool's argon2id after a sign-in, by scheme and outcome",
            self.password_rehashes.clone(),
        );
        r.register(
            "trigger_latency_seconds",
            "Time a pool trigger call took, retries included",
            self.trigger_latency.clone(),
        );
        r.register(
            "forwarded_proposals",
            "Proposals forwarded to the leader",
            self.forwarded_proposals.clone(),
        );
        r.register(
            "courier_delivered",
            "Outbox messages delivered by the webhook or smtp backend",
            self.courier_delivered.clone(),
        );
        r.register(
            "courier_retries",
            "Failed delivery attempts that will be retried",
            self.courier_retries.clone(),
        );
        r.register(
            "courier_failed",
            "Outbox messages given up after a permanent error or too many attempts",
            self.courier_failed.clone(),
        );
        r.register(
            "list_users_rows_scanned",
            "Index or user rows read to answer ListUsers (at most limit + 1 per page when indexes are used)",
            self.list_users_rows_scanned.clone(),
        );
        r.register(
            "audit_events_dropped",
            "Successful sign-in audit events dropped because the node's audit queue was full",
            self.audit_events_dropped.clone(),
        );
        r.register(
            "sign_in_failures",
            "Failed password sign-ins counted toward lockout",
            self.sign_in_failures.clone(),
        );
        r.register(
            "read_index_rounds",
            "ReadIndex quorum rounds this node asked the leader for",
            self.read_index_rounds.clone(),
        );
        r.register(
            "read_index_callers",
            "Read barriers requested on this node (many share one round)",
            self.read_index_callers.clone(),
        );
        r.register(
            "api_connections",
            "Open connections on the api listener (bounded by limits.max_api_connections)",
            self.api_connections.clone(),
        );
        r.register(
            "peer_connections",
            "Open connections on the peer listener (bounded by limits.max_peer_connections)",
            self.peer_connections.clone(),
        );
        r.register(
            "outbox_backlog",
            "Outbox messages waiting for a courier backend to deliver them",
            self.outbox_backlog.clone(),
        );
        r.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest outbox message still waiting for delivery, 0 if none",
            self.outbox_oldest_age_seconds.clone(),
        );
        r.register(
            "outbox_open",
            "Outbox messages counted against their pools' queue bounds",
            self.outbox_open.clone(),
        );
        r.register(
            "outbox_refused",
            "Calls refused with LimitExceededException because their pool's outbox queue was full",
            self.outbox_refused.clone(),
        );
        r.register(
            "rate_limited",
            "Calls refused by the per-address or per-destination limits",
            self.rate_limited.clone(),
        );
        r.register(
            "sync_connections",
            "Open device connections on the sync listener (bounded by sync.max_connections)",
            self.sync_connections.clone(),
        );
        r.register(
            "sync_connections_refused",
            "Device connections refused by the node or per-identity connection limit",
            self.sync_connections_refused.clone(),
        );
        r.register(
            "sync_resyncs",
            "Device sessions whose change queue overflowed and were resynced from the store",
            self.sync_resyncs.clone(),
        );
        r.register(
            "sync_frames_refused",
            "Device connections closed for what they sent (oversize, malformed or out-of-order frames, extra streams, no Hello)",
            self.sync_frames_refused.clone(),
        );
        r.register(
            "process_resident_memory_bytes",
            "Resident memory of the node process, read at scrape time",
            self.resident_memory.clone(),
        );
    }

    /// One fsync made `n` appends durable.
    pub fn record_fsync_batch(&self, n: usize) {
        self.fsyncs.inc();
        self.fsync_batch_size.observe(n as f64);
    }

    /// A proposal finished after `elapsed`.
    pub fn record_proposal(&self, elapsed: Duration) {
        self.proposal_latency.observe(elapsed.as_secs_f64());
    }

    /// Renders the Prometheus text exposition format, reading the
    /// process's resident memory first so that the gauge is current.
    pub fn render(&self) -> String {
        if let Some(bytes) = resident_memory_bytes() {
            self.resident_memory.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        if let Ok(reg) = self.registry.lock() {
            if encode(&mut out, &reg).is_err() {
                out.clear();
            }
        }
        out
    }
}

/// The resident set size of this process, from the `VmRSS` line of
/// `/proc/self/status`. That line is in KiB, so no page size is assumed
/// (`/proc/self/statm` counts pages, whose size differs between
/// architectures and would need `sysconf`). `None` without procfs.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

/// The `VmRSS:` value of a `/proc/<pid>/status` text, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\ttessera\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss(status), Some(12_345 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
    }

    #[test]
    fn the_scrape_carries_resident_memory() {
        let text = Metrics::new().render();
        let line = text
            .lines()
            .find(|l| l.starts_with("tessera_process_resident_memory_bytes "))
            .unwrap_or_else(|| panic!("no resident memory line in\n{text}"));
        if cfg!(target_os = "linux") {
            let v: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            assert!(v > 0, "{line}");
        }
    }
}
