//! Tessera: a distributed, Raft-replicated identity store — an open-source,
//! self-hosted Amazon Cognito.
//!
//! A node is built from these layers (dependencies point downward only):
//!
//! * [`api`]: thin transport adapters. gRPC services (`Cluster`, `Admin`)
//!   and plain HTTP (`/healthz`, `/readyz`, `/metrics`) on the api port.
//!   They decode, validate at the edge, call a service and map errors to
//!   `tonic::Status`.
//! * [`service`]: domain services. They *prepare* commands (ids, timestamps,
//!   hashes chosen here), propose them, and run read paths. Transport-free.
//! * [`raft`]: consensus. The only module that names openraft types: log
//!   store with group commit, state machine, snapshots, peer transport,
//!   forwarding to the leader.
//! * [`command`]: the replicated `Command` enum and its deterministic apply.
//! * [`store`]: RocksDB column families, key encoding, versioned values.
//! * [`model`]: plain domain types and validation; no I/O.
//! * [`auth`]: password hashing, node signing keys, JWT mint/verify, JWKS,
//!   `SECRET_HASH`; transport- and storage-free.
//! * [`node`]: assembles a running node and shuts it down gracefully.
//! * [`config`]: node configuration from TOML, env and flags.
//! * [`client`]: the Rust client used by the CLI, tests and benchmarks.
//! * [`bench`]: load generators behind `tessera bench` (drive a cluster
//!   over gRPC, report against the performance targets).
//! * [`courier`]: delivery of codes and temporary passwords from the
//!   replicated outbox (webhook, SMTP).
//! * [`clock`]: the one sanctioned place for wall-clock time and randomness.
//! * [`metrics`]: Prometheus metrics.

#![deny(clippy::unwrap_used, clippy::expect_used)]

#[allow(
    clippy::disallowed_methods,
    reason = "serves requests: deadlines while waiting on the cluster"
)]
pub mod api;
#[allow(
    clippy::disallowed_methods,
    reason = "mints tokens, salts and keys at the edge, before a command exists"
)]
pub mod auth;
#[allow(clippy::disallowed_methods, reason = "load generators measure latency")]
pub mod bench;
#[allow(
    clippy::disallowed_methods,
    reason = "the chaos harness times faults and measures latency"
)]
pub mod chaos;
pub mod client;
pub mod clock;
pub mod command;
pub mod config;
#[allow(
    clippy::disallowed_methods,
    reason = "delivery retries and backoff run beside the state machine, not in it"
)]
pub mod courier;
#[doc(hidden)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "fuzz harness: a panic is how a target reports a broken invariant"
)]
pub mod fuzzing; // Fuzz entry points for fuzz/ and tests/fuzz_corpus.rs; not an API.
pub mod metrics;
pub mod model;
#[allow(
    clippy::disallowed_methods,
    reason = "assembles a node: start-up and shutdown deadlines"
)]
pub mod node;
pub mod raft;
#[allow(
    clippy::disallowed_methods,
    reason = "services prepare commands: ids, timestamps and salts are chosen here"
)]
pub mod service;
pub mod store;

/// Generated protobuf and gRPC code for `tessera.v1`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("tessera.v1");

    /// Encoded descriptors of every service, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tessera_descriptor.bin"));
}
