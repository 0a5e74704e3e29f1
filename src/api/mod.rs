//! Transport adapters on the api port: gRPC services and plain HTTP share
//! one listener. Adapters decode, validate, call a service and map errors;
//! they hold no domain logic.

pub mod cognito;
pub mod conn_limit;
pub mod grpc;
pub mod http;

/// Largest gRPC request the api port decodes; bigger ones are refused (tonic
/// answers OUT_OF_RANGE) before they use memory.
pub const MAX_API_REQUEST_BYTES: usize = 1 << 20;
