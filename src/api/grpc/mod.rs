//! gRPC services of the api port, and the mapping of service errors to
//! `tonic::Status`.

pub mod admin;
pub mod admin_layer;
pub mod auth;
pub mod branding;
pub mod cluster;
pub mod convert;
pub mod devices;
pub mod federation;
pub mod identity;
pub mod sync;
pub mod transfer;
pub mod triggers;

use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use crate::service::{ErrorKind, ServiceError};

/// Metadata key carrying the Cognito-style exception name of an error, so
/// clients can branch on it without parsing the message.
pub const EXCEPTION_HEADER: &str = "x-tessera-exception";

/// Maps a service error to a status whose message starts with the exception
/// name (`NotAuthorizedException: invalid admin token`).
pub fn to_status(e: ServiceError) -> Status {
    let code = match e.kind {
        ErrorKind::InvalidParameter => Code::InvalidArgument,
        ErrorKind::NotAuthorized => Code::Unauthenticated,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Aborted => Code::Aborted,
        ErrorKind::LimitExceeded => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::OutcomeUnknown => Code::Unknown,
        ErrorKind::Internal => Code::Internal,
    };
    let mut status = Status::new(code, e.to_string());
    if let Ok(v) = e.exception.parse() {
        status.metadata_mut().insert(EXCEPTION_HEADER, v);
    }
    status
}

/// The bearer token of a call, if any. Never logged.
pub fn bearer(md: &MetadataMap) -> Option<&str> {
    bearer_value(md.get("authorization")?.to_str().ok()?)
}

/// The token of an `authorization: Bearer <token>` header value.
pub fn bearer_value(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        to_status(e)
    }
}

/// Where a call came from: the peer address tonic saw (empty when it
/// is unknown, as for in-process transports).
pub fn origin<T>(req: &tonic::Request<T>) -> crate::service::Origin {
    crate::service::Origin {
        ip: req.remote_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
        ..Default::default()
    }
}
