//! Plain HTTP on the api port: health (the process and its Raft engine are
//! alive), readiness and Prometheus metrics.
//! (Per-pool JWKS and OpenID discovery documents join here with tokens.)

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::metrics::Metrics;
use crate::raft::RaftNode;

/// Adds the HTTP routes to `router`.
pub fn routes(router: Router, node: Arc<RaftNode>, metrics: Arc<Metrics>) -> Router {
    let ready_node = node.clone();
    let health_node = node.clone();
    router
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
                async move {
                    if node.is_ready() {
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
