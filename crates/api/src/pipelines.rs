//! `/api/v1/pipelines`, `/api/v1/pipeline-runs`, `/api/v1/components`: saved pipelines, runs,
//! the component palette, the spec's JSON Schema. Every handler calls the pipelines capability.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use petri_daemon::pipeline::component::ComponentInfo;
use petri_daemon::pipeline::service::{
    BackfillRequest, PipelineDoc, PipelineSummary, RetryRequest, RunInfo, RunRequest, SaveRequest,
    Validation,
};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{Caller, allow};

/// Whether `caller` may change the pipeline run `id` (its user's, or an admin's).
async fn run_of(
    s: &AppState,
    caller: &petri_daemon::accounts::Caller,
    id: &str,
) -> Result<(), ApiError> {
    let run = s.daemon.pipelines().get_run(id).await?;
    allow(
        caller,
        petri_daemon::accounts::Action::Submit,
        &run.user,
        &format!("pipeline run {}", run.number),
    )
}
use crate::error::{ApiError, parse_body};
use crate::jobs::body_error;

type E = petri_domain::ErrorBody;

#[utoipa::path(get, path = "/api/v1/pipelines", tag = "pipelines", operation_id = "list_pipelines",
    responses((status = 400, description = "BAD_REQUEST or MALFORMED_SPEC: a malformed request", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 200, description = "saved pipelines, each with its newest run", body = Vec<PipelineSummary>)))]
pub(crate) async fn list(
    State(s): State<AppState>,
) -> Result<Json<Vec<PipelineSummary>>, ApiError> {
    Ok(Json(s.daemon.pipelines().list().await?))
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}", tag = "pipelines", operation_id = "show_pipeline",
    params(("name" = String, Path, description = "the pipeline's name")),
    responses((status = 400, description = "BAD_REQUEST or MALFORMED_SPEC: a malformed request", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 200, description = "the pipeline's YAML as written and the canvas's layout", body = PipelineDoc),
              (status = 404, description = "PIPELINE_NOT_FOUND", body = E)))]
pub(crate) async fn show(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PipelineDoc>, ApiError> {
    Ok(Json(s.daemon.pipelines().get(&name).await?))
}

#[utoipa::path(put, path = "/api/v1/pipelines/{name}", tag = "pipelines", request_body = SaveRequest,
    params(("name" = String, Path, description = "the pipeline's name")),
    responses((status = 400, description = "BAD_REQUEST or MALFORMED_SPEC: a malformed request", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 200, description = "saved", body = PipelineDoc),
                            (status = 422, description = "INVALID_PIPELINE: details.errors lists each problem with its line and column", body = E)))]
pub(crate) async fn save(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PipelineDoc>, ApiError> {
    let req: SaveRequest = parse_body(&body.map_err(body_error)?, "the pipeline")?;
    Ok(Json(
        s.daemon
            .pipelines()
            .save(Some(name), req, &caller.user)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/pipelines/{name}", tag = "pipelines", operation_id = "remove_pipeline",
    params(("name" = String, Path, description = "the pipeline's name")),
    responses((status = 400, description = "BAD_REQUEST or MALFORMED_SPEC: a malformed request", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 200, description = "deleted (its runs stay)", body = PipelineDoc),
              (status = 404, description = "PIPELINE_NOT_FOUND", body = E)))]
pub(crate) async fn remove(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PipelineDoc>, ApiError> {
    Ok(Json(s.daemon.pipelines().delete(&name).await?))
}

/// A pipeline text to check.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValidateRequest {
    yaml: String,
}

#[utoipa::path(post, path = "/api/v1/pipelines/validate", tag = "pipelines", request_body = ValidateRequest,
    responses((status = 400, description = "BAD_REQUEST or MALFORMED_SPEC: a malformed request", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 200, description = "whether it is valid, each problem with its line and column, and the steps as far as they read", body = Validation)))]
pub(crate) async fn validate(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Validation>, ApiError> {
    let req: ValidateRequest = parse_body(&body.map_err(body_error)?, "the pipeline")?;
    Ok(Json(s.daemon.pipelines().validate(req.yaml).await?))
}

#[utoipa::path(get, path = "/api/v1/pipelines/schema", tag = "pipelines",
    responses((status = 400, description = "BAD_REQUEST or MALFORMED_SPEC: a malformed request", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 200, description = "the JSON Schema of a pipeline file", body = Object)))]
pub(crate) async fn schema(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(s.daemon.pipelines().schema())
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/backfill", tag = "pipelines", request_body = BackfillRequest,
    params(("name" = String, Path, description = "the pipeline's name")),
    responses((status = 400, description = "BAD_REQUEST or MALFORMED_SPEC: a malformed request", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 201, description = "one run per fire of its cron trigger in the window", body = Vec<RunInfo>),
              (status = 404, description = "PIPELINE_NOT_FOUND", body = E),
              (status = 422, description = "INVALID_PIPELINE: it has no cron trigger", body = E)))]
pub(crate) async fn backfill(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Vec<RunInfo>>), ApiError> {
    let req: BackfillRequest = parse_body(&body.map_err(body_error)?, "the backfill")?;
    Ok((
        StatusCode::CREATED,
        Json(
            s.daemon
                .pipelines()
                .backfill(&name, req, &caller.user)
                .await?,
        ),
    ))
}

#[utoipa::path(get, path = "/api/v1/components", tag = "pipelines",
    responses((status = 400, description = "BAD_REQUEST or MALFORMED_SPEC: a malformed request", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 200, description = "built-in and your own components (a broken one with its error)", body = Vec<ComponentInfo>)))]
pub(crate) async fn components(
    State(s): State<AppState>,
) -> Result<Json<Vec<ComponentInfo>>, ApiError> {
    Ok(Json(s.daemon.pipelines().components().await?))
}

#[utoipa::path(post, path = "/api/v1/pipeline-runs", tag = "pipelines", request_body = RunRequest,
    responses((status = 400, description = "BAD_REQUEST or MALFORMED_SPEC: a malformed request", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 201, description = "the run, queued", body = RunInfo),
              (status = 404, description = "PIPELINE_NOT_FOUND", body = E),
              (status = 422, description = "INVALID_PIPELINE: nothing was queued", body = E)))]
pub(crate) async fn run(
    State(s): State<AppState>,
    Caller(caller): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RunInfo>), ApiError> {
    let req: RunRequest = parse_body(&body.map_err(body_error)?, "the run request")?;
    let trigger = serde_json::json!({ "kind": "api", "user": caller.user });
    Ok((
        StatusCode::CREATED,
        Json(s.daemon.pipelines().run(req, &caller.user, trigger).await?),
    ))
}

/// Which runs to list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunsQuery {
    /// Runs of this pipeline only.
    pipeline: Option<String>,
    /// At most this many (newest first; default 50).
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/pipeline-runs", tag = "pipelines", params(RunsQuery),
    responses((status = 400, description = "BAD_REQUEST or MALFORMED_SPEC: a malformed request", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 200, description = "runs, newest first (without their steps)", body = Vec<RunInfo>)))]
pub(crate) async fn runs(
    State(s): State<AppState>,
    q: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<RunInfo>>, ApiError> {
    let Query(q) = q.map_err(crate::jobs::query_error)?;
    Ok(Json(
        s.daemon
            .pipelines()
            .runs(q.pipeline, q.limit.unwrap_or(50))
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/pipeline-runs/{id}", tag = "pipelines",
    params(("id" = String, Path, description = "the run's id or number")),
    responses((status = 400, description = "BAD_REQUEST or MALFORMED_SPEC: a malformed request", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 200, description = "the run with its steps", body = RunInfo),
              (status = 404, description = "PIPELINE_RUN_NOT_FOUND", body = E)))]
pub(crate) async fn show_run(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunInfo>, ApiError> {
    Ok(Json(s.daemon.pipelines().get_run(&id).await?))
}

#[utoipa::path(post, path = "/api/v1/pipeline-runs/{id}/cancel", tag = "pipelines", operation_id = "cancel_pipeline_run",
    params(("id" = String, Path, description = "the run's id or number")),
    responses((status = 400, description = "BAD_REQUEST or MALFORMED_SPEC: a malformed request", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 403, description = "FORBIDDEN: the run is another user's", body = E),
              (status = 200, description = "the run, canceling", body = RunInfo),
              (status = 404, description = "PIPELINE_RUN_NOT_FOUND", body = E),
              (status = 409, description = "INVALID_STATE: it is over", body = E)))]
pub(crate) async fn cancel(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<RunInfo>, ApiError> {
    run_of(&s, &caller, &id).await?;
    Ok(Json(s.daemon.pipelines().cancel(&id).await?))
}

#[utoipa::path(post, path = "/api/v1/pipeline-runs/{id}/retry", tag = "pipelines", request_body = RetryRequest,
    params(("id" = String, Path, description = "the run's id or number")),
    responses((status = 400, description = "BAD_REQUEST or MALFORMED_SPEC: a malformed request", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 403, description = "FORBIDDEN: the run is another user's", body = E),
              (status = 200, description = "the run, running again", body = RunInfo),
              (status = 404, description = "PIPELINE_RUN_NOT_FOUND", body = E),
              (status = 409, description = "INVALID_STATE: it is still running", body = E)))]
pub(crate) async fn retry(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RunInfo>, ApiError> {
    run_of(&s, &caller, &id).await?;
    let bytes = body.map_err(body_error)?;
    let req: RetryRequest = if bytes.is_empty() {
        RetryRequest::default()
    } else {
        parse_body(&bytes, "the retry")?
    };
    Ok(Json(s.daemon.pipelines().retry(&id, req).await?))
}
