//! `/api/v1/experiments` and `/api/v1/runs`: Petri's own read-only view of tracking (what the
//! CLI and the web UI read, with a `read` token), beside MLflow's API under `/api/2.0/mlflow`.
//! The shapes are MLflow's (`Experiment`, `Run`, `Metric`), so one set of types serves both.

use axum::Json;
use axum::extract::{Path, Query, State};
use petri_daemon::tracking::wire::{Experiment, Metric, Run, SearchExperiments, SearchRuns};
use petri_daemon::tracking::wire::{GetMetricHistory, Runs};
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;

fn refused(e: petri_daemon::tracking::TrackingError) -> ApiError {
    if matches!(
        e,
        petri_daemon::tracking::TrackingError::Db { .. }
            | petri_daemon::tracking::TrackingError::Task(_)
    ) {
        tracing::error!(error = %e, "a tracking read failed inside the daemon");
    }
    ApiError(e.into())
}

#[utoipa::path(get, path = "/api/v1/experiments", tag = "tracking", operation_id = "experiments_list",
    responses((status = 200, description = "the active experiments", body = Vec<Experiment>),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody)))]
pub(crate) async fn experiments(
    State(s): State<AppState>,
) -> Result<Json<Vec<Experiment>>, ApiError> {
    let found = s
        .daemon
        .tracking()
        .search_experiments(SearchExperiments {
            max_results: Some(50_000),
            ..SearchExperiments::default()
        })
        .await
        .map_err(refused)?;
    Ok(Json(found.experiments))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunsQuery {
    /// Runs of this experiment (its id; default: every active experiment).
    experiment_id: Option<String>,
    /// A filter in MLflow's grammar: `metrics.acc > 0.9 and params.opt = 'adam'`.
    filter: Option<String>,
    /// An ordering in MLflow's grammar: `metrics.acc DESC` (default: newest first).
    order_by: Option<String>,
    /// At most this many runs (default 100).
    max_results: Option<i64>,
    /// The `next_page_token` of the page before.
    page_token: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/runs", tag = "tracking", operation_id = "runs_list",
    params(RunsQuery),
    responses((status = 200, description = "a page of runs and, when more follow, the token of the next", body = Runs),
              (status = 400, description = "INVALID_PARAMETER_VALUE: the filter or ordering does not parse; BAD_REQUEST: a malformed query", body = petri_domain::ErrorBody),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 404, description = "RESOURCE_DOES_NOT_EXIST: no such experiment", body = petri_domain::ErrorBody)))]
pub(crate) async fn runs(
    State(s): State<AppState>,
    q: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Runs>, ApiError> {
    let Query(q) = q.map_err(crate::jobs::query_error)?;
    let tracking = s.daemon.tracking();
    let experiment_ids = match q.experiment_id {
        Some(id) => {
            tracking.get_experiment(&id).await.map_err(refused)?;
            vec![id]
        }
        None => tracking
            .search_experiments(SearchExperiments {
                max_results: Some(50_000),
                ..SearchExperiments::default()
            })
            .await
            .map_err(refused)?
            .experiments
            .into_iter()
            .map(|e| e.experiment_id)
            .collect(),
    };
    let runs = tracking
        .search_runs(SearchRuns {
            experiment_ids,
            filter: q.filter,
            max_results: Some(q.max_results.unwrap_or(100)),
            order_by: vec![
                q.order_by
                    .unwrap_or_else(|| "attributes.start_time DESC".into()),
            ],
            page_token: q.page_token,
            ..SearchRuns::default()
        })
        .await
        .map_err(refused)?;
    Ok(Json(runs))
}

#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "tracking", operation_id = "run_show",
    params(("id" = String, Path, description = "the run's id (32 hex digits; a job's run has the job's UUID without dashes)")),
    responses((status = 200, description = "the run: info, params, latest metrics, tags (`petri.job_id` names its job), inputs", body = Run),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 404, description = "RESOURCE_DOES_NOT_EXIST", body = petri_domain::ErrorBody)))]
pub(crate) async fn run(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Run>, ApiError> {
    let found = s.daemon.tracking().get_run(&id).await.map_err(refused)?;
    Ok(Json(found.run))
}

#[utoipa::path(get, path = "/api/v1/runs/{id}/metrics/{key}", tag = "tracking", operation_id = "run_metric_history",
    params(("id" = String, Path, description = "the run's id"),
           ("key" = String, Path, description = "the metric's key")),
    responses((status = 200, description = "every point of the metric, by timestamp, then step, then value", body = Vec<Metric>),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 404, description = "RESOURCE_DOES_NOT_EXIST: no such run", body = petri_domain::ErrorBody)))]
pub(crate) async fn metric_history(
    State(s): State<AppState>,
    Path((id, key)): Path<(String, String)>,
) -> Result<Json<Vec<Metric>>, ApiError> {
    let found = s
        .daemon
        .tracking()
        .metric_history(GetMetricHistory {
            run_id: Some(id),
            metric_key: key,
            ..GetMetricHistory::default()
        })
        .await
        .map_err(refused)?;
    Ok(Json(found.metrics))
}
