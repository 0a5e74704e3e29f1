//! Cognito Sync's REST-JSON routes, for the Cognito Sync clients that
//! predate live sync: `/identitypools/{IdentityPoolId}/identities/
//! {IdentityId}/datasets/...` over the same datasets as the gRPC `Sync`
//! service and the QUIC devices.
//!
//! As in AWS, a device signs each request (SigV4, service `cognito-sync`)
//! with the temporary credentials of its identity, from
//! `GetCredentialsForIdentity`: the access key id, the secret key, and the
//! session token in `X-Amz-Security-Token`. The secret of credentials is
//! derived from their access key id under the cluster's sealing key, so
//! any node checks the signature without a lookup; the session token
//! itself (signature, expiry, revocation, which identity) is checked by
//! the `Sync` service, which also decides that an identity reaches only
//! its own data.
//!
//! Errors follow AWS's REST-JSON protocol: the modelled HTTP status of
//! each exception (403 `NotAuthorizedException`, 404
//! `ResourceNotFoundException`, 409 `ResourceConflictException`, ...),
//! with `x-amzn-ErrorType`.

use std::collections::BTreeMap;

use axum::extract::{Path, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use serde_json::{Map, Value};

use super::call::{self, InnerAuth};
use super::{check_signature, json, AwsError, MAX_BODY_BYTES};
use crate::auth::sealing::SealingCell;
use crate::auth::sigv4::SigV4Error;

/// The SigV4 service name of Cognito Sync.
pub const SIGNING_NAME: &str = "cognito-sync";

/// The six operations, each the `Sync` gRPC method of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    DescribeIdentityUsage,
    ListDatasets,
    DescribeDataset,
    UpdateRecords,
    DeleteDataset,
    ListRecords,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::DescribeIdentityUsage => "DescribeIdentityUsage",
            Op::ListDatasets => "ListDatasets",
            Op::DescribeDataset => "DescribeDataset",
            Op::UpdateRecords => "UpdateRecords",
            Op::DeleteDataset => "DeleteDataset",
            Op::ListRecords => "ListRecords",
        }
    }
}

/// What the routes hold.
#[derive(Clone)]
pub struct SyncRest {
    grpc: Router,
    methods: std::sync::Arc<BTreeMap<&'static str, (MessageDescriptor, MessageDescriptor)>>,
    sealing: std::sync::Arc<SealingCell>,
    region: String,
}

impl SyncRest {
    /// The routes' state over `grpc` (this node's gRPC routes).
    pub fn new(grpc: Router, sealing: std::sync::Arc<SealingCell>, region: &str) -> Result<Self, String> {
        let pool = DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .map_err(|e| format!("decoding the compiled protobuf descriptors: {e}"))?;
        let service = pool
            .get_service_by_name("tessera.v1.Sync")
            .ok_or("no gRPC service tessera.v1.Sync")?;
        let mut methods = BTreeMap::new();
        for op in [
            Op::DescribeIdentityUsage,
            Op::ListDatasets,
            Op::DescribeDataset,
            Op::UpdateRecords,
            Op::DeleteDataset,
            Op::ListRecords,
        ] {
            let m = service
                .methods()
                .find(|m| m.name() == op.name())
                .ok_or_else(|| format!("tessera.v1.Sync has no method {}", op.name()))?;
            methods.insert(op.name(), (m.input(), m.output()));
        }
        Ok(SyncRest {
            grpc,
            methods: std::sync::Arc::new(methods),
            sealing,
            region: region.to_string(),
        })
    }
}

/// Adds the Cognito Sync routes to `router`.
pub fn routes(router: Router, state: SyncRest) -> Router {
    let base = "/identitypools/{IdentityPoolId}/identities/{IdentityId}";
    let s = state;
    router
        .route(
            base,
            get({
                let s = s.clone();
                move |p: Path<BTreeMap<String, String>>, r: Request| handle(s, Op::DescribeIdentityUsage, p, r)
            }),
        )
        .route(
            &format!("{base}/datasets"),
            get({
                let s = s.clone();
                move |p: Path<BTreeMap<String, String>>, r: Request| handle(s, Op::ListDatasets, p, r)
            }),
        )
        .route(
            &format!("{base}/datasets/{{DatasetName}}"),
            get({
                let s = s.clone();
                move |p: Path<BTreeMap<String, String>>, r: Request| handle(s, Op::DescribeDataset, p, r)
            })
            .post({
                let s = s.clone();
                move |p: Path<BTreeMap<String, String>>, r: Request| handle(s, Op::UpdateRecords, p, r)
            })
            .delete({
                let s = s.clone();
                move |p: Path<BTreeMap<String, String>>, r: Request| handle(s, Op::DeleteDataset, p, r)
            }),
        )
        .route(
            &format!("{base}/datasets/{{DatasetName}}/records"),
            get(move |p: Path<BTreeMap<String, String>>, r: Request| handle(s, Op::ListRecords, p, r)),
        )
}

/// The modelled HTTP status of a Cognito Sync exception.
fn rest_status(exception: &str, fallback: StatusCode) -> StatusCode {
    match exception {
        "NotAuthorizedException" => StatusCode::FORBIDDEN,
        "ResourceNotFoundException" => StatusCode::NOT_FOUND,
        "ResourceConflictException" => StatusCode::CONFLICT,
        "TooManyRequestsException" | "LambdaThrottledException" => StatusCode::TOO_MANY_REQUESTS,
        "InternalErrorException" => StatusCode::INTERNAL_SERVER_ERROR,
        _ if fallback.is_server_error() => fallback,
        _ => StatusCode::BAD_REQUEST,
    }
}

async fn handle(state: SyncRest, op: Op, Path(params): Path<BTreeMap<String, String>>, req: Request) -> Response {
    let request_id = crate::clock::new_uuid().to_string();
    let result = serve(&state, op, params, req).await;
    let mut resp = match result {
        Ok(body) => {
            let mut r = (StatusCode::OK, body).into_response();
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(mut e) => {
            e.status = rest_status(&e.exception, e.status);
            let mut r = e.into_response(&request_id);
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
    };
    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

async fn serve(state: &SyncRest, op: Op, params: BTreeMap<String, String>, req: Request) -> Result<String, AwsError> {
    let (parts, body) = req.into_parts();
    if !parts.headers.contains_key(http::header::AUTHORIZATION) {
        return Err(SigV4Error::MissingAuthenticationToken.into());
    }
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| AwsError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        exception: "InvalidParameterException".into(),
        message: format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
    })?;
    let session_token = verify(state, &parts, &body)?;

    // The input: path, query and body members under their model names.
    let mut input = Map::new();
    for (k, v) in &params {
        input.insert(k.clone(), Value::String(v.clone()));
    }
    let query: BTreeMap<String, String> = axum::extract::Query::try_from_uri(&parts.uri)
        .map(|q: axum::extract::Query<BTreeMap<String, String>>| q.0)
        .map_err(|e| {
            AwsError::client(
                "InvalidParameterException",
                format!("The query string is malformed: {e}"),
            )
        })?;
    for (name, member, numeric) in [
        ("lastSyncCount", "LastSyncCount", true),
        ("maxResults", "MaxResults", true),
        ("nextToken", "NextToken", false),
        ("syncSessionToken", "SyncSessionToken", false),
    ] {
        if let Some(v) = query.get(name) {
            let value = if numeric {
                Value::from(v.parse::<i64>().map_err(|_| {
                    AwsError::client(
                        "InvalidParameterException",
                        format!("{name} must be an integer, not '{v}'"),
                    )
                })?)
            } else {
                Value::String(v.clone())
            };
            input.insert(member.into(), value);
        }
    }
    if op == Op::UpdateRecords {
        if !body.iter().all(u8::is_ascii_whitespace) {
            let Value::Object(members) = serde_json::from_slice::<Value>(&body).map_err(|e| {
                AwsError::client("InvalidParameterException", format!("The body is not valid JSON: {e}"))
            })?
            else {
                return Err(AwsError::client(
                    "InvalidParameterException",
                    "The body must be a JSON object.",
                ));
            };
            for (k, v) in members {
                input.entry(k).or_insert(v);
            }
        }
        if let Some(ctx) = parts.headers.get("x-amz-client-context").and_then(|v| v.to_str().ok()) {
            input.insert("ClientContext".into(), Value::String(ctx.to_string()));
        }
    }
    let (in_desc, out_desc) = state
        .methods
        .get(op.name())
        .cloned()
        .ok_or_else(|| AwsError::client("UnknownOperationException", op.name()))?;
    let request = json::from_json(&in_desc, &Value::Object(input))
        .map_err(|e| AwsError::client("InvalidParameterException", e.to_string()))?;
    let reply = call::call(
        &state.grpc,
        &format!("/tessera.v1.Sync/{}", op.name()),
        request.encode_to_vec(),
        &parts.extensions,
        InnerAuth::Bearer(session_token),
    )
    .await
    .map_err(AwsError::from)?;
    let message = DynamicMessage::decode(out_desc, reply).map_err(|e| AwsError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        exception: "InternalErrorException".into(),
        message: format!("decoding the service's answer: {e}"),
    })?;
    let out = json::to_json(&message);
    let out = match op {
        // Cognito Sync wraps the usage in `IdentityUsage`.
        Op::DescribeIdentityUsage => serde_json::json!({ "IdentityUsage": out }),
        _ => out,
    };
    Ok(out.to_string())
}

/// Checks the SigV4 signature made with an identity's credentials and
/// returns their session token.
fn verify(state: &SyncRest, parts: &http::request::Parts, body: &[u8]) -> Result<String, AwsError> {
    let token = parts
        .headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            AwsError::client(
                "NotAuthorizedException",
                "Sign with the identity's credentials from GetCredentialsForIdentity, including X-Amz-Security-Token.",
            )
        })?
        .to_string();
    // The access key id of credentials is their token's `jti`. It is read
    // here without checking the token: the Sync service checks it fully,
    // and its secret is derived from this id under the sealing key, so a
    // forged token does not help sign.
    let access_key_id = token_jti(&token).ok_or_else(|| {
        AwsError::client(
            "NotAuthorizedException",
            "The security token is not a credentials token.",
        )
    })?;
    let sealing = state.sealing.get();
    check_signature(parts, body, SIGNING_NAME, &state.region, |id| {
        let key = sealing.as_ref().ok_or("this node has no sealing key yet")?;
        Ok((id == access_key_id).then(|| crate::auth::credentials::secret_key(key.raw(), id)))
    })?;
    Ok(token)
}

/// The `jti` of a JWT, unverified.
fn token_jti(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["jti"].as_str().filter(|s| !s.is_empty()).map(str::to_string)
}
