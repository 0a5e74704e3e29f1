//! The node's config file, as an operator writes it.

use super::{scratch_path, Seeds};

/// The node's TOML config file (`config::NodeConfig::load`), read from a
/// file as `tessera serve --config` reads it, with no flags.
pub fn config(data: &[u8]) {
    use crate::config::{NodeConfig, Overrides};
    let path = scratch_path("config.toml");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let loaded = NodeConfig::load(Some(path.as_path()), Overrides::default());
    let _ = std::fs::remove_file(&path);
    if let Ok(cfg) = loaded {
        // What loads is what the node starts with: these must not panic.
        cfg.validate().expect("a loaded config validates");
        let _ = cfg.advertised();
        let _ = cfg.raft_settings();
    }
}

pub(super) fn config_seeds(out: &mut Seeds) {
    let full = r#"node_id = 1
data_dir = "/var/lib/tessera"
api_addr = "0.0.0.0:7700"
peer_addr = "0.0.0.0:7701"
advertise_api_addr = "node1.internal:7700"
advertise_peer_addr = "node1.internal:7701"
log_format = "json"
sealing_key_file = "/etc/tessera/sealing.key"
signing_key_rotation_days = 30
password_hash_concurrency = 2

[tls]
api_cert = "/etc/tessera/api.crt"
api_key = "/etc/tessera/api.key"
peer_cert = "/etc/tessera/node1.crt"
peer_key = "/etc/tessera/node1.key"
peer_ca = "/etc/tessera/ca.crt"

[courier]
backend = "webhook"
[courier.webhook]
url = "https://hooks.internal/tessera"
secret = "s3cret"

[limits]
code_sends_burst = 10
code_sends_per_minute = 5

[raft]
heartbeat_ms = 100
election_timeout_min_ms = 400
election_timeout_max_ms = 800
snapshot_every = 10000
keep_logs_after_snapshot = 1000
max_snapshot_bytes = 1073741824
peer_address_overrides = { "2" = "10.0.0.7:7701" }
"#;
    out.push(("config", full.as_bytes().to_vec()));
    out.push(("config", b"node_id = 1\ndata_dir = \"/tmp/x\"\n".to_vec()));
    out.push((
        "config",
        b"node_id = 0\ndata_dir = \"\"\napi_addr = \"nope\"\n[raft]\nheartbeat_ms = 0\n".to_vec(),
    ));
    out.push(("config", b"[courier]\nbackend = \"smtp\"\n[courier.smtp]\n".to_vec()));
}
