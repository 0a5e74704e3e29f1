//! Cognito's own wire protocol on the api port, so that apps and AWS SDKs
//! written for Amazon Cognito work by changing only their endpoint.
//!
//! `POST /` with `Content-Type: application/x-amz-json-1.1` and
//! `X-Amz-Target: <prefix>.<Action>`, as AWS serves it:
//!
//! 1. [`actions`] says which actions exist and who may call them;
//! 2. a signed action's SigV4 signature is checked against the admin
//!    access keys ([`crate::service::admin_keys`]);
//! 3. [`json`] reads the body into the gRPC request message;
//! 4. [`call`] hands it to this node's gRPC service of the same name;
//! 5. the answer goes back as JSON, or as `{"__type", "message"}` with the
//!    exception the service named.
//!
//! Every answer carries `x-amzn-RequestId`. Faults of ours are 5xx, the
//! caller's are 400, as AWS's JSON protocol has them, so SDKs retry only
//! what is worth retrying.

pub mod actions;
pub mod call;
pub mod json;
pub mod sync_rest;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use prost::Message as _;
use prost_reflect::DynamicMessage;

use self::actions::{Access, ActionTable};
use self::call::{CallError, InnerAuth, SignedAdmin};
use crate::auth::sigv4::{SigV4Error, SignedRequest};
use crate::service::admin_keys::AdminKeyService;

/// Largest body read, as for gRPC requests.
pub const MAX_BODY_BYTES: usize = crate::api::MAX_API_REQUEST_BYTES;

/// The content type of AWS's JSON 1.1 protocol.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// What the `POST /` handler holds.
#[derive(Clone)]
pub struct CognitoFront {
    inner: Arc<Inner>,
}

struct Inner {
    /// The gRPC services of this node, called in process.
    grpc: Router,
    /// For the read barrier of admin reads.
    node: Arc<crate::raft::RaftNode>,
    actions: ActionTable,
    keys: AdminKeyService,
    /// The region a signature must be scoped to.
    region: String,
}

impl CognitoFront {
    /// A front over `grpc` (this node's gRPC routes) that checks
    /// signatures against `keys` for `region`.
    pub fn new(
        grpc: Router,
        node: Arc<crate::raft::RaftNode>,
        keys: AdminKeyService,
        region: &str,
    ) -> Result<Self, String> {
        let pool = prost_reflect::DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .map_err(|e| format!("decoding the compiled protobuf descriptors: {e}"))?;
        let actions = actions::resolve(&pool)?;
        Ok(CognitoFront {
            inner: Arc::new(Inner {
                grpc,
                node,
                actions,
                keys,
                region: region.to_string(),
            }),
        })
    }
}

/// Adds `POST /` to `router`.
pub fn routes(router: Router, front: CognitoFront) -> Router {
    router.route("/", post(handle).with_state(front))
}

/// A refusal or fault, as AWS's JSON protocol writes it.
#[derive(Debug)]
struct AwsError {
    status: StatusCode,
    exception: String,
    message: String,
}

impl AwsError {
    fn client(exception: &str, message: impl Into<String>) -> Self {
        AwsError {
            status: StatusCode::BAD_REQUEST,
            exception: exception.to_string(),
            message: message.into(),
        }
    }

    fn into_response(self, request_id: &str) -> Response {
        let body = serde_json::json!({"__type": self.exception, "message": self.message});
        let mut resp = (self.status, body.to_string()).into_response();
        let headers = resp.headers_mut();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Ok(v) = HeaderValue::from_str(&self.exception) {
            headers.insert("x-amzn-errortype", v);
        }
        set_request_id(&mut resp, request_id);
        resp
    }
}

impl From<SigV4Error> for AwsError {
    fn from(e: SigV4Error) -> Self {
        AwsError {
            status: StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
            exception: e.exception().to_string(),
            message: e.to_string(),
        }
    }
}

impl From<CallError> for AwsError {
    fn from(e: CallError) -> Self {
        use tonic::Code;
        let status = match e.code {
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Internal | Code::Unknown | Code::DataLoss | Code::Unimplemented | Code::DeadlineExceeded => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        };
        let fallback = match e.code {
            Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => "InvalidParameterException",
            Code::Unauthenticated | Code::PermissionDenied => "NotAuthorizedException",
            Code::NotFound => "ResourceNotFoundException",
            Code::AlreadyExists => "ResourceConflictException",
            Code::ResourceExhausted => "LimitExceededException",
            Code::Aborted => "ConcurrentModificationException",
            _ => "InternalErrorException",
        };
        // A fault of ours keeps Cognito's fault name whatever the service
        // called it, so an SDK's retry logic sees a 5xx it knows.
        let exception = match (status.is_server_error(), e.exception) {
            (false, Some(name)) => name,
            _ => fallback.to_string(),
        };
        AwsError {
            status,
            exception,
            message: e.message,
        }
    }
}

fn set_request_id(resp: &mut Response, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
}

async fn handle(State(front): State<CognitoFront>, req: Request) -> Response {
    let request_id = crate::clock::new_uuid().to_string();
    match front.serve(req).await {
        Ok(body) => {
            let mut resp = (StatusCode::OK, body).into_response();
            resp.headers_mut()
                .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            set_request_id(&mut resp, &request_id);
            resp
        }
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(%request_id, exception = %e.exception, message = %e.message, "Cognito JSON call failed");
            }
            e.into_response(&request_id)
        }
    }
}

impl CognitoFront {
    async fn serve(&self, req: Request) -> Result<String, AwsError> {
        let (parts, body) = req.into_parts();
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !content_type.starts_with("application/x-amz-json-1.") {
            return Err(AwsError::client(
                "SerializationException",
                format!("Content-Type must be {CONTENT_TYPE}, not '{content_type}'"),
            ));
        }
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| AwsError::client("UnknownOperationException", "The request has no X-Amz-Target header."))?;
        let action = self.inner.actions.get(target).ok_or_else(|| unknown_action(target))?;
        // An admin call that cannot be signed (no or a malformed
        // Authorization, a stale date, another region, an unknown key) is
        // refused before its body is read.
        let key = match action.access {
            Access::Public => None,
            Access::Signed => {
                if !parts.headers.contains_key(http::header::AUTHORIZATION) {
                    return Err(SigV4Error::MissingAuthenticationToken.into());
                }
                Some(self.check_head(&parts, action.signing_name)?)
            }
        };
        let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| AwsError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            exception: "SerializationException".into(),
            message: format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
        })?;
        let auth = match key {
            None => InnerAuth::None,
            Some(key) => InnerAuth::Signed(self.verify(&parts, &body, action.signing_name, key)?),
        };
        let json: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| AwsError::client("SerializationException", format!("The body is not valid JSON: {e}")))?
        };
        let mut request = json::from_json(&action.input, &json)
            .map_err(|e| AwsError::client("SerializationException", e.to_string()))?;
        // An SDK writes through one node and reads through another (a load
        // balancer picks), and expects to read what it was told was
        // written: admin reads through this protocol are linearizable (a
        // ReadIndex round), whatever the gRPC default. Where the request
        // has no such flag, the front waits for the round itself.
        if let Some(field) = action.input.get_field_by_name("consistent_read") {
            request.set_field(&field, prost_reflect::Value::Bool(true));
        } else if action.read && action.access == Access::Signed {
            self.inner.node.read_barrier().await.map_err(|e| AwsError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                exception: "InternalErrorException".into(),
                message: format!("this node could not confirm it is up to date: {e}"),
            })?;
        }
        let reply = call::call(
            &self.inner.grpc,
            &action.path,
            request.encode_to_vec(),
            &parts.extensions,
            auth,
        )
        .await?;
        let message = DynamicMessage::decode(action.output.clone(), reply).map_err(|e| AwsError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            exception: "InternalErrorException".into(),
            message: format!("decoding the service's answer: {e}"),
        })?;
        Ok(json::to_json(&message).to_string())
    }

    /// What can be checked of a signed action before its body is read:
    /// the signature's header, date and scope, and that its key exists.
    /// Returns the key (its id and secret), for [`Self::verify`].
    fn check_head(&self, parts: &http::request::Parts, service: &str) -> Result<(String, String), AwsError> {
        let headers = header_pairs(parts);
        let (auth, _) = crate::auth::sigv4::check_head(&headers, &[service], crate::clock::now_millis())?;
        check_region(&auth.region, &self.inner.region)?;
        match self.inner.keys.secret_for(&auth.access_key_id) {
            Ok(Some(secret)) => Ok((auth.access_key_id, secret)),
            Ok(None) => Err(SigV4Error::UnrecognizedClient.into()),
            Err(e) => Err(SigV4Error::Internal(e.to_string()).into()),
        }
    }

    /// Checks the SigV4 signature of a signed action, with the key that
    /// [`Self::check_head`] found for its header.
    fn verify(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        service: &str,
        (key_id, secret): (String, String),
    ) -> Result<SignedAdmin, AwsError> {
        let verified = check_signature(parts, body, service, &self.inner.region, |id| {
            Ok((id == key_id).then_some(secret))
        })?;
        Ok(SignedAdmin {
            access_key_id: verified.access_key_id,
        })
    }
}

/// Checks the SigV4 signature of a request for `service`, scoped to
/// `region`; `lookup` gives the secret of an access key id (`None` for an
/// unknown one). Shared by the JSON front (admin keys) and the Cognito
/// Sync routes (identity credentials).
fn check_signature(
    parts: &http::request::Parts,
    body: &[u8],
    service: &str,
    region: &str,
    lookup: impl FnOnce(&str) -> Result<Option<String>, String>,
) -> Result<crate::auth::sigv4::Verified, AwsError> {
    let headers = header_pairs(parts);
    let signed = SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or_default(),
        headers: &headers,
        body,
    };
    let verified = crate::auth::sigv4::verify(&signed, &[service], crate::clock::now_millis(), lookup)?;
    check_region(&verified.region, region)?;
    Ok(verified)
}

/// The request's headers as SigV4 reads them (values that are not
/// visible ASCII are left out: they cannot have been signed as sent).
fn header_pairs(parts: &http::request::Parts) -> Vec<(String, String)> {
    parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// A signature scoped to another region than this endpoint's is refused.
fn check_region(scoped: &str, region: &str) -> Result<(), AwsError> {
    if scoped != region {
        return Err(AwsError::client(
            "InvalidSignatureException",
            format!("Credential should be scoped to a valid region: this endpoint serves '{region}', not '{scoped}'."),
        ));
    }
    Ok(())
}

/// An action the front does not serve: either not a Cognito action at all
/// or one Tessera does not implement, named either way.
fn unknown_action(target: &str) -> AwsError {
    let known_prefix = actions::APIS.iter().find(|api| {
        target
            .strip_prefix(api.target_prefix)
            .is_some_and(|r| r.starts_with('.'))
    });
    match known_prefix {
        Some(api) => AwsError::client(
            "UnknownOperationException",
            format!(
                "Tessera does not implement {} of {} (see the README for the actions served).",
                &target[api.target_prefix.len() + 1..],
                api.signing_name
            ),
        ),
        None => AwsError::client(
            "UnknownOperationException",
            format!("'{target}' is not an operation of an API this endpoint serves."),
        ),
    }
}
