//! Fuzz entry points: one plain function per parser that reads bytes from
//! outside the node (clients, peers, operators).
//!
//! Each `fn(data: &[u8])` feeds `data` to the real parser, exactly as the
//! node would, and asserts the properties that must hold for *every* input:
//! no panic, bounded work, and the security invariants of that parser (a
//! token verifies only with the expected issuer and lifetime, a page token
//! never leaves its pool, an index key always names its user). A panic is a
//! finding.
//!
//! The same functions run in two harnesses:
//! - `fuzz/` (cargo-fuzz, nightly, libFuzzer with coverage and sanitizers):
//!   `make fuzz`;
//! - `tests/fuzz_corpus.rs` (stable `cargo test`): replays every committed
//!   corpus and regression input, so CI needs no sanitizer toolchain.
//!
//! One module per family of targets, each with the seeds of its targets:
//! `tokens` (`jwt`), `directory` (`user_filter`, `pagination_token`),
//! `peer` (`peer_message`, `snapshot_file`, `peer_auth`), `grpc`
//! (`grpc_request`), `config` (`config`) and `triggers` (`trigger_answer`). Every target is re-exported
//! here, so it is `tessera::fuzzing::<name>`.
//!
//! Adding a target: write `pub fn name(data: &[u8])` in its family's module,
//! re-export it here, add it to [`TARGETS`] and its seeds to [`seeds`], and
//! copy one file of `fuzz/fuzz_targets/` plus its `[[bin]]` entry in
//! `fuzz/Cargo.toml`.
//!
//! Nothing here runs in a node; the module is `#[doc(hidden)]` in the crate.

mod config;
mod directory;
mod grpc;
mod peer;
mod tokens;
mod triggers;

pub use config::config;
pub use directory::{pagination_token, user_filter};
pub use grpc::grpc_request;
pub use peer::{peer_auth, peer_message, snapshot_file};
pub use tokens::{fuzz_signing_key, jwt, FUZZ_ISSUER, FUZZ_NOW};
pub use triggers::trigger_answer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fuzz entry point.
pub type Target = fn(&[u8]);

/// Every target by the name of its `fuzz/fuzz_targets/<name>.rs` file and
/// of its corpus directory `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("jwt", jwt),
    ("user_filter", user_filter),
    ("pagination_token", pagination_token),
    ("peer_message", peer_message),
    ("snapshot_file", snapshot_file),
    ("grpc_request", grpc_request),
    ("config", config),
    ("peer_auth", peer_auth),
    ("trigger_answer", trigger_answer),
];

/// Seed inputs by target name, as [`seeds`] collects them.
pub(crate) type Seeds = Vec<(&'static str, Vec<u8>)>;

/// Well-formed inputs for every target, by target name: the seed corpora
/// of `fuzz/corpus/` are written from these (`TESSERA_WRITE_FUZZ_SEEDS=1
/// cargo test --test fuzz_corpus`), and the stable test replays them too.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out: Seeds = Vec::new();
    tokens::jwt_seeds(&mut out);
    directory::filter_seeds(&mut out);
    directory::page_seeds(&mut out);
    peer::peer_seeds(&mut out);
    peer::snapshot_seeds(&mut out);
    grpc::grpc_seeds(&mut out);
    config::config_seeds(&mut out);
    peer::peer_auth_seeds(&mut out);
    triggers::trigger_seeds(&mut out);
    out
}

/// Deletes the page stores of earlier fuzz processes that have exited
/// (RocksDB preallocates tens of MiB per store).
fn remove_stale_stores() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("tessera-fuzz-") else {
            continue;
        };
        let Some((pid, what)) = rest.split_once('-') else {
            continue;
        };
        let alive = std::path::Path::new("/proc").join(pid).exists();
        if what.starts_with("store-") && !alive && pid.parse::<u32>().is_ok() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

static SCRATCH: AtomicU64 = AtomicU64::new(0);

/// A fresh path in the temporary directory, unique per process and call.
fn scratch_path(what: &str) -> PathBuf {
    let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("tessera-fuzz-{}-{what}-{n}", std::process::id()))
}
