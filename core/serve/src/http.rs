//! The service's HTTP face: `/healthz` (the process answers), `/readyz` (it can reach its
//! database and its scheduler is turning) and `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::Service;

/// Installs the process's metrics recorder. Until this is called, recording a metric does nothing.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .install_recorder()
        .map_err(|error| format!("cannot install the metrics recorder: {error}"))
}

/// Serves HTTP on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .merge(super::console::routes())
        .merge(super::sign_in::routes())
        .layer(axum::middleware::map_response(harden))
        .with_state(service);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop)
    .await
}

/// Binds `address` (127.0.0.1 by default: the metrics name districts and pipelines).
pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}

/// Every answer: never framed (clickjacking), never sniffed as another type, no referrer sent on
/// (a sign-in's URL holds a code), no scripts or other origins, and not cached unless it says so.
async fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn ready(State(service): State<Arc<Service>>) -> (StatusCode, String) {
    let database = tokio::time::timeout(Duration::from_secs(2), service.ping_database()).await;
    let problems: Vec<String> = [
        match database {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(format!("database: {error}")),
            Err(_) => Some("database: no answer within 2 s".to_owned()),
        },
        (!service.scheduler_turning()).then(|| "scheduler: not turning".to_owned()),
        service
            .stopping()
            .then(|| "stopping: taking no new runs".to_owned()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", problems.join("\n")),
        )
    }
}

async fn metrics(State(service): State<Arc<Service>>) -> String {
    service.metrics.render()
}
