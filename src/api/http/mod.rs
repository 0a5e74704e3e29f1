//! Plain HTTP on the api port: health, readiness and Prometheus metrics.
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
    router
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
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
