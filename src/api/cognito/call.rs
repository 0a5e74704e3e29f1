//! Calls a gRPC method of this node in process.
//!
//! The JSON front hands each action to the very gRPC service that serves
//! it on the network, through the same tower stack (admin-token layer,
//! request bound, handlers), so the two protocols cannot drift apart: a
//! validation, a limit or a fix lands once. The cost is a protobuf encode
//! and decode per call, far below a single Raft write or token signature.

use std::borrow::Cow;

use axum::body::Body;
use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use crate::api::grpc::EXCEPTION_HEADER;

/// Marks an in-process call whose caller proved itself with a SigV4
/// signature by an admin access key. The admin-token layer lets it through
/// ([`crate::api::grpc::admin_layer`]). Only code in this process can put
/// it on a request: extensions never come from the wire.
#[derive(Debug, Clone)]
pub struct SignedAdmin {
    /// The access key id that signed, for the logs.
    pub access_key_id: String,
}

/// Who the in-process call is made for.
#[derive(Debug, Clone)]
pub enum InnerAuth {
    /// Nobody: a public method authenticates by what the body carries.
    None,
    /// An admin access key signed the outer request.
    Signed(SignedAdmin),
    /// `authorization: Bearer <token>` for the services that read their
    /// caller from it (Sync): the token the outer request presented.
    Bearer(String),
}

/// How a gRPC call ended, when it did not return a message.
#[derive(Debug, Clone)]
pub struct CallError {
    /// The gRPC status code.
    pub code: tonic::Code,
    /// Cognito's exception name, when the service named one.
    pub exception: Option<String>,
    /// The status message.
    pub message: String,
}

/// Largest response message accepted back from the gRPC service; the
/// services bound their pages, so this only guards against a fault.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// Calls `path` on `grpc` with the encoded `request`, passing the
/// caller's connection info (for audit and rate limits) and `auth`.
pub async fn call(
    grpc: &axum::Router,
    path: &str,
    request: Vec<u8>,
    connect: &http::Extensions,
    auth: InnerAuth,
) -> Result<Bytes, CallError> {
    let mut framed = BytesMut::with_capacity(request.len() + 5);
    framed.put_u8(0);
    framed.put_u32(u32::try_from(request.len()).map_err(|_| internal("request too large to frame"))?);
    framed.put_slice(&request);
    let mut req = http::Request::builder()
        .method(http::Method::POST)
        .uri(path)
        .version(http::Version::HTTP_2)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(Body::from(framed.freeze()))
        .map_err(|e| internal(&e.to_string()))?;
    copy_connect_info(connect, req.extensions_mut());
    match auth {
        InnerAuth::None => {}
        InnerAuth::Signed(signed) => {
            req.extensions_mut().insert(signed);
        }
        InnerAuth::Bearer(token) => {
            let value = http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| CallError {
                code: tonic::Code::Unauthenticated,
                exception: Some("NotAuthorizedException".into()),
                message: "The security token is not a valid header value.".into(),
            })?;
            req.headers_mut().insert(http::header::AUTHORIZATION, value);
        }
    }
    let resp = grpc
        .clone()
        .oneshot(req)
        .await
        .map_err(|e: std::convert::Infallible| match e {})?;
    let (parts, body) = resp.into_parts();
    // A trailers-only response (every error) carries the status in the
    // headers.
    if let Some(err) = status_of(&parts.headers) {
        return Err(err);
    }
    let collected = body
        .collect()
        .await
        .map_err(|e| internal(&format!("reading the gRPC response: {e}")))?;
    let trailers = collected.trailers().cloned();
    let mut data = collected.to_bytes();
    if let Some(err) = trailers.as_ref().and_then(status_of) {
        return Err(err);
    }
    if data.len() < 5 {
        return Err(internal("the gRPC response had no message"));
    }
    let compressed = data.get_u8();
    let len = data.get_u32() as usize;
    if compressed != 0 || len > data.len() || len > MAX_RESPONSE_BYTES {
        return Err(internal("the gRPC response frame is malformed"));
    }
    Ok(data.split_to(len))
}

/// tonic reads the caller's address from these extensions
/// (`Request::remote_addr`); the inner call inherits the outer one's.
fn copy_connect_info(from: &http::Extensions, to: &mut http::Extensions) {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    if let Some(info) = from.get::<TcpConnectInfo>() {
        to.insert(info.clone());
    }
    if let Some(info) = from.get::<TlsConnectInfo<TcpConnectInfo>>() {
        to.insert(info.clone());
    }
}

/// The error in `headers`, if they carry a non-OK `grpc-status`.
fn status_of(headers: &http::HeaderMap) -> Option<CallError> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    if code == 0 {
        return None;
    }
    let message = headers
        .get("grpc-message")
        .map(|v| percent_decode(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let exception = headers
        .get(EXCEPTION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // gRPC messages lead with the exception's name (it is their only
    // place on the wire); Cognito's `message` is the text alone, which
    // apps show to people.
    let message = match &exception {
        Some(name) => message
            .strip_prefix(name.as_str())
            .and_then(|rest| rest.strip_prefix(": "))
            .map(str::to_string)
            .unwrap_or(message),
        None => message,
    };
    Some(CallError {
        code: tonic::Code::from_i32(code),
        exception,
        message,
    })
}

/// Decodes gRPC's percent-encoded `grpc-message`.
fn percent_decode(raw: &[u8]) -> Cow<'_, str> {
    if !raw.contains(&b'%') {
        return String::from_utf8_lossy(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            let hex = std::str::from_utf8(&raw[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn internal(message: &str) -> CallError {
    CallError {
        code: tonic::Code::Internal,
        exception: None,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(percent_decode(b"plain"), "plain");
        assert_eq!(percent_decode(b"a%20b%3A%25"), "a b:%");
        assert_eq!(percent_decode(b"bad%zzend%4"), "bad%zzend%4");
    }
}
