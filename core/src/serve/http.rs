//! The service's HTTP face: `/healthz` (the process answers), `/readyz` (it can reach its
//! database and its scheduler is turning) and `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::Service;

/// The metrics the service exports; every name is documented in the README.
pub mod names {
    /// Runs by pipeline and outcome (`committed`, `quarantined`, `held`, `failed`, `retrying`,
    /// `busy`, `already_ran`, `config_error`).
    pub const RUNS: &str = "rosterflow_runs_total";
    /// Run durations by pipeline, in seconds.
    pub const RUN_SECONDS: &str = "rosterflow_run_duration_seconds";
    /// Roster rows and memberships changed by committed runs, by pipeline.
    pub const CHANGES: &str = "rosterflow_records_changed_total";
    /// Records quarantined by each pipeline's last run.
    pub const QUARANTINED: &str = "rosterflow_records_quarantined";
    /// Runs waiting for an admin, by pipeline.
    pub const HELD: &str = "rosterflow_runs_held";
    /// When each pipeline runs next (Unix seconds).
    pub const NEXT_RUN: &str = "rosterflow_next_run_timestamp_seconds";
    /// Pipeline files the service cannot serve.
    pub const BAD_FILES: &str = "rosterflow_pipeline_files_invalid";
    /// Welcome emails by outcome (`sent`, `failed`, `retrying`).
    pub const EMAILS: &str = "rosterflow_welcome_emails_total";
    /// Requests to Clever sent again after a failure, and waits for its rate limit.
    pub const HTTP_RETRIES: &str = "rosterflow_http_retries_total";
    pub const RATE_LIMIT_WAITS: &str = "rosterflow_rate_limit_waits_total";
    /// Time spent in plugins, by plugin, in seconds.
    pub const PLUGIN_SECONDS: &str = "rosterflow_plugin_seconds_total";
}

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
        .with_state(service);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}

/// Binds `address` (127.0.0.1 by default: the metrics name districts and pipelines).
pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
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
