//! The ops HTTP port: `/healthz` (liveness), `/readyz` (serving, for load balancers)
//! and `/metrics` (Prometheus).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use portcullis_raft::node::ClusterNode;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Ops {
    node: ClusterNode,
    prometheus: PrometheusHandle,
    /// Set once shutdown began: a draining node is alive but not ready.
    draining: CancellationToken,
}

pub fn install_prometheus() -> Result<PrometheusHandle, crate::error::NodeError> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
        .map_err(|e| crate::error::NodeError::Metrics(e.to_string()))?
        .install_recorder()
        .map_err(|e| crate::error::NodeError::Metrics(e.to_string()))
}

/// Fold histogram samples into their buckets every few seconds. The exporter keeps
/// each recorded sample until then (or until a scrape): without this, a node nobody
/// scrapes grows by every commit's latency sample.
pub async fn upkeep(prometheus: PrometheusHandle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => prometheus.run_upkeep(),
        }
    }
}

pub async fn serve(
    listener: TcpListener,
    node: ClusterNode,
    prometheus: PrometheusHandle,
    draining: CancellationToken,
    shutdown: CancellationToken,
) {
    let state = Ops { node, prometheus, draining };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
        tracing::error!(error = %e, "ops server stopped");
    }
}

async fn readyz(State(ops): State<Ops>) -> (StatusCode, String) {
    if ops.draining.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: shutting down\n".into());
    }
    if ops.node.is_serving() {
        (StatusCode::OK, "ready: holding the quorum lease\n".into())
    } else {
        let s = ops.node.local_status();
        let why = match (s.initialized, s.leader) {
            (false, _) => "cluster not initialized".to_string(),
            (true, None) => format!("no leader known (role {})", s.role),
            (true, Some(l)) => format!("quorum lease not held (role {}, leader {l})", s.role),
        };
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n"))
    }
}

async fn metrics(State(ops): State<Ops>) -> String {
    let serving = if ops.node.is_serving() { 1.0 } else { 0.0 };
    metrics::gauge!("portcullis_lease_held").set(serving);
    ops.prometheus.render()
}
