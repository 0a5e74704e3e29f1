//! Per-identity data sync, pushed live to devices over QUIC.
//!
//! * [`hub`]: the in-memory change hub. The state machine publishes every
//!   applied sync change on it after the change is written; sessions
//!   subscribed to that identity receive it, each through a bounded queue.
//! * [`close`]: the close codes that end a session, shared by both sides.
//! * [`frame`]: the device protocol's framing (a length prefix and a
//!   protobuf message), with the size bound enforced on both sides.
//! * [`server`]: the QUIC listener and device sessions
//!   (docs/sync-protocol.md): TLS, limits, catch-up merged with live
//!   pushes, writes, resync of slow devices, shutdown.
//! * [`client`]: the device client library: a local copy of an identity's
//!   datasets kept in step over QUIC, with queued writes, reconnects and
//!   conflict resolution.
//!
//! The data model and its replicated commands live in `model::sync` and
//! `command::sync`; reads and writes for every surface go through
//! `service::sync`, so gRPC and QUIC behave the same.

pub mod client;
pub mod close;
pub mod frame;
pub mod hub;
pub mod server;
