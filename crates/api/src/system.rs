use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse};
use petri_daemon::Status;
use petri_domain::{ErrorCode, SettingsView};

use crate::AppState;
use crate::error::ApiError;

/// The web UI, one self-contained page (see `build.rs`).
pub(crate) const UI_PAGE: &str = include_str!(concat!(env!("OUT_DIR"), "/ui.html"));

/// Liveness; the only route without a token.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// Prometheus text format: queue depth, running, finished by state, scheduling latency.
pub(crate) async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        {
            // The queue's and the deployments' metrics, one `# EOF` at the end.
            let queue = s.daemon.queue().metrics_text();
            let queue = queue.trim_end().trim_end_matches("# EOF").to_string();
            format!("{queue}{}# EOF\n", s.daemon.serving().stats().render())
        },
    )
}

#[utoipa::path(get, path = "/api/v1/status", tag = "system",
    responses((status = 200, body = Status),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody)))]
pub(crate) async fn status(State(s): State<AppState>) -> Result<Json<Status>, ApiError> {
    Ok(Json(s.daemon.queue().status().await?))
}

#[utoipa::path(get, path = "/api/v1/gpus", tag = "system",
    responses((status = 200, body = petri_domain::GpuReport),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody)))]
pub(crate) async fn gpus(
    State(s): State<AppState>,
) -> Result<Json<petri_domain::GpuReport>, ApiError> {
    Ok(Json(s.daemon.queue().gpus().await?))
}

#[utoipa::path(get, path = "/api/v1/gpus/history", tag = "system",
    responses((status = 200, body = petri_domain::GpuHistory),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody)))]
pub(crate) async fn gpu_history(
    State(s): State<AppState>,
) -> Result<Json<petri_domain::GpuHistory>, ApiError> {
    Ok(Json(s.daemon.queue().gpu_history().await?))
}

#[utoipa::path(get, path = "/api/v1/settings", tag = "system",
    responses((status = 200, description = "the daemon's settings in effect (sizes in bytes, durations in milliseconds)", body = SettingsView),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody)))]
pub(crate) async fn settings(State(s): State<AppState>) -> Json<SettingsView> {
    Json(s.daemon.settings_view().await)
}

pub(crate) async fn ui() -> Html<&'static str> {
    Html(UI_PAGE)
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no such route; the API is described at /api/v1/openapi.json",
    )
}
