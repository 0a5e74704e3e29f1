//! Plain HTTP on the api port: health (the process and its Raft engine are
//! alive), readiness and Prometheus metrics.
//! Per pool: `/{pool_id}/.well-known/jwks.json` and
//! `/{pool_id}/.well-known/openid-configuration`.
//! For devices: `/sync-info`, where to reach the sync listener and how to
//! trust it (docs/sync-protocol.md).
//! For people: `/{pool_id}/magic-link`, the confirmation page of a magic
//! link ([`magic_link`]).
//! For OAuth clients: `/{pool_id}/oauth2/...` ([`oauth`]).

pub mod html;
pub mod magic_link;
pub mod oauth;

use std::sync::Arc;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::metrics::Metrics;
use crate::raft::RaftNode;
use crate::service::keys::KeyService;
use crate::service::{ErrorKind, ServiceError};

fn error_response(e: ServiceError) -> Response {
    let code = match e.kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidParameter => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (
        code,
        Json(serde_json::json!({"__type": e.exception, "message": e.message})),
    )
        .into_response()
}

/// Adds the HTTP routes to `router`.
pub fn routes(router: Router, node: Arc<RaftNode>, metrics: Arc<Metrics>, keys: KeyService) -> Router {
    let ready_node = node.clone();
    let ready_keys = keys.clone();
    let jwks_keys = keys.clone();
    let health_node = node.clone();
    router
        .route(
            "/{pool_id}/.well-known/jwks.json",
            get(move |Path(pool_id): Path<String>| {
                let keys = jwks_keys.clone();
                async move {
                    match keys.jwks(&pool_id) {
                        Ok(jwks) => Json(jwks).into_response(),
                        Err(e) => error_response(e),
                    }
                }
            }),
        )
        .route(
            "/{pool_id}/.well-known/openid-configuration",
            get(move |Path(pool_id): Path<String>| {
                let keys = keys.clone();
                async move {
                    match keys.openid_configuration(&pool_id) {
                        Ok(doc) => Json(doc).into_response(),
                        Err(e) => error_response(e),
                    }
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let node = health_node.clone();
                async move {
                    if node.is_alive() {
                        (StatusCode::OK, "ok\n")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "raft stopped on a fatal error; restart the node\n",
                        )
                    }
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let node = ready_node.clone();
                let keys = ready_keys.clone();
                async move {
                    // An initialised node is ready to sign in users only
                    // once its signing key is published.
                    let initialised = node.store().cluster_info().ok().flatten().is_some();
                    let key_ready = !initialised || keys.published_signing_key().is_ok();
                    if node.is_ready() && !key_ready {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: publishing this node's token-signing key\n".to_string(),
                        )
                    } else if node.is_ready() {
                        (StatusCode::OK, "ready\n".to_string())
                    } else {
                        let s = node.status();
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!(
                                "not ready: member={} leader={:?} applied={} committed={}\n",
                                s.members.iter().any(|(id, _, _)| *id == s.node_id),
                                s.leader_id,
                                s.applied_index,
                                s.committed_index
                            ),
                        )
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let node = node.clone();
                let metrics = metrics.clone();
                async move {
                    node.refresh_metrics();
                    crate::service::outbox::refresh_metrics(&node);
                    (
                        StatusCode::OK,
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
}

/// Adds `GET /sync-info` to `router`: this node's sync address (as
/// advertised), the ALPN, the SHA-256 fingerprint of its certificate, the
/// largest frame, and the api address of every member, so that a device
/// that knows one node can find the others (each answers for its own
/// listener). Public: it tells nothing a device does not need to connect.
pub fn with_sync_info(router: Router, node: Arc<RaftNode>, info: crate::sync::server::SyncEndpointInfo) -> Router {
    router.route(
        "/sync-info",
        get(move || {
            let node = node.clone();
            let info = info.clone();
            async move {
                let status = node.status();
                let nodes: Vec<serde_json::Value> = status
                    .members
                    .iter()
                    .map(|(id, addr, _)| serde_json::json!({"node_id": id, "api_addr": addr.api_addr}))
                    .collect();
                Json(serde_json::json!({
                    "node_id": node.node_id(),
                    "sync_addr": info.sync_addr,
                    "alpn": String::from_utf8_lossy(crate::sync::frame::ALPN),
                    "fingerprint_sha256": info.fingerprint_sha256,
                    "max_frame_bytes": info.max_frame_bytes,
                    "nodes": nodes,
                }))
            }
        }),
    )
}
