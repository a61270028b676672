//! `/api/2.0/mlflow/...`: MLflow's tracking REST API, so the stock `mlflow` client works
//! unchanged with `MLFLOW_TRACKING_URI` set to the daemon and `MLFLOW_TRACKING_TOKEN` to a Petri
//! token (the auth layer authorizes these routes as `track`). Reading routes take query
//! parameters, changes a JSON body, as MLflow's server does. Errors are MLflow's shape,
//! `{"error_code", "message"}`, so the client raises its usual `MlflowException`.
//!
//! These routes are MLflow's API, not Petri's: they are not in Petri's OpenAPI document.
//! Every handler parses, calls the tracking capability, and serialises.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use petri_daemon::accounts;
use petri_daemon::tracking::TrackingError;
use petri_daemon::tracking::jobs::run_id_of_job;
use petri_daemon::tracking::logged_models::{KeyValues, LogOutputs, LoggedModels, OneModel};
use petri_daemon::tracking::wire::*;
use petri_domain::{ErrorBody, ErrorCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::auth::Caller;

/// An error as MLflow's server writes it.
#[derive(Debug)]
pub(crate) struct MlflowError(pub(crate) ErrorBody);

impl From<TrackingError> for MlflowError {
    fn from(e: TrackingError) -> Self {
        if matches!(e, TrackingError::Db { .. } | TrackingError::Task(_)) {
            tracing::error!(error = %e, "a tracking call failed inside the daemon");
        }
        MlflowError(e.into())
    }
}

fn bad_request(message: String) -> MlflowError {
    MlflowError(ErrorBody::new(ErrorCode::InvalidParameterValue, message))
}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        let code = self.0.code;
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let error_code = match code {
            ErrorCode::Internal => "INTERNAL_ERROR",
            ErrorCode::Unauthorized => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "PERMISSION_DENIED",
            other => other.as_str(),
        };
        let body = serde_json::json!({ "error_code": error_code, "message": self.0.message });
        (status, Json(body)).into_response()
    }
}

type Answer<T> = Result<Json<T>, MlflowError>;

/// A JSON body (an empty one is an empty message).
fn body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, MlflowError> {
    let bytes = body.map_err(|e| {
        let status = e.status();
        MlflowError(ErrorBody::new(
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ErrorCode::PayloadTooLarge
            } else {
                ErrorCode::InvalidParameterValue
            },
            e.body_text(),
        ))
    })?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|e| bad_request(format!("the request body is not a valid message: {e}")))
}

/// Query parameters.
pub(crate) fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, MlflowError> {
    Query::<T>::try_from_uri(uri)
        .map(|Query(q)| q)
        .map_err(|e| {
            bad_request(format!(
                "the query parameters do not parse: {}",
                e.body_text()
            ))
        })
}

fn ok<T: Serialize>(v: T) -> Answer<T> {
    Ok(Json(v))
}

/// MLflow's tracking routes, to be nested under `/api/2.0/mlflow`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/experiments/create", post(create_experiment))
        .route("/experiments/get", get(get_experiment))
        .route("/experiments/get-by-name", get(get_experiment_by_name))
        .route(
            "/experiments/search",
            get(search_experiments_get).post(search_experiments),
        )
        .route("/experiments/update", post(update_experiment))
        .route("/experiments/delete", post(delete_experiment))
        .route("/experiments/restore", post(restore_experiment))
        .route("/experiments/set-experiment-tag", post(set_experiment_tag))
        .route(
            "/experiments/delete-experiment-tag",
            post(delete_experiment_tag),
        )
        .route("/runs/create", post(create_run))
        .route("/runs/update", post(update_run))
        .route("/runs/get", get(get_run))
        .route("/runs/search", post(search_runs))
        .route("/runs/delete", post(delete_run))
        .route("/runs/restore", post(restore_run))
        .route("/runs/log-metric", post(log_metric))
        .route("/runs/log-parameter", post(log_param))
        .route("/runs/log-batch", post(log_batch))
        .route("/runs/log-inputs", post(log_inputs))
        .route("/runs/set-tag", post(set_tag))
        .route("/runs/delete-tag", post(delete_tag))
        .route("/metrics/get-history", get(metric_history))
        .route("/runs/outputs", post(log_outputs))
        .route("/runs/log-model", post(log_model))
        .route("/logged-models", post(create_logged_model))
        .route("/logged-models/search", post(search_logged_models))
        .route(
            "/logged-models/{model_id}",
            get(get_logged_model)
                .patch(finalize_logged_model)
                .delete(delete_logged_model),
        )
        .route(
            "/logged-models/{model_id}/tags",
            axum::routing::patch(set_logged_model_tags),
        )
        .route(
            "/logged-models/{model_id}/tags/{key}",
            axum::routing::delete(delete_logged_model_tag),
        )
        .route(
            "/logged-models/{model_id}/params",
            post(log_logged_model_params),
        )
}

type Body = Result<Bytes, BytesRejection>;

/// What a job's token may do with a run. A job reads every run; it writes its own run
/// (`MLFLOW_RUN_ID`, made here at its first call, named after the job and tagged with its id)
/// and the runs it made itself (tagged with its id), and no other: a job cannot rewrite another
/// job's results. Any other caller: nothing to check here.
pub(crate) async fn job_run(
    s: &AppState,
    caller: &accounts::Caller,
    run_id: &str,
) -> Result<(), MlflowError> {
    job_access(s, caller, run_id, false).await
}

/// [`job_run`] for a change to the run.
pub(crate) async fn job_writes(
    s: &AppState,
    caller: &accounts::Caller,
    run_id: &str,
) -> Result<(), MlflowError> {
    job_access(s, caller, run_id, true).await
}

async fn job_access(
    s: &AppState,
    caller: &accounts::Caller,
    run_id: &str,
    write: bool,
) -> Result<(), MlflowError> {
    let accounts::Credential::Job(job) = &caller.credential else {
        return Ok(());
    };
    let tracking = s.daemon.tracking();
    if run_id != run_id_of_job(*job) {
        if !write {
            return Ok(());
        }
        // Not there: the call itself answers RESOURCE_DOES_NOT_EXIST.
        let Ok(found) = tracking.get_run(run_id).await else {
            return Ok(());
        };
        let mine =
            found.run.data.tags.iter().any(|t| {
                t.key == petri_daemon::tracking::jobs::JOB_TAG && t.value == job.to_string()
            });
        if mine {
            return Ok(());
        }
        return Err(MlflowError(ErrorBody::new(
            ErrorCode::Forbidden,
            format!(
                "a job's token writes only its own run ({}) and the runs it made; run {run_id} \
                 is not one of them",
                run_id_of_job(*job)
            ),
        )));
    }
    // The job's own run: made now or before (by this process or an earlier one), it ends
    // with the job.
    tracking.note_job_run(*job);
    if tracking.run_exists(run_id).await? {
        return Ok(());
    }
    let j = s
        .daemon
        .queue()
        .get(&job.to_string())
        .await
        .map_err(|e| MlflowError(e.into()))?;
    // The experiment the job's environment names, as the client reads it.
    let experiment = match (
        j.spec.env.get("MLFLOW_EXPERIMENT_ID"),
        j.spec.env.get("MLFLOW_EXPERIMENT_NAME"),
    ) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(name)) => tracking
            .get_experiment_by_name(name)
            .await
            .ok()
            .map(|e| e.experiment.experiment_id),
        (None, None) => None,
    };
    tracking
        .ensure_job_run(*job, &j.name, &j.user, experiment)
        .await?;
    Ok(())
}

/// A job that names an experiment (`mlflow.set_experiment`) gets its run made there.
fn note_experiment(s: &AppState, caller: &accounts::Caller, experiment_id: &str) {
    if let accounts::Credential::Job(job) = &caller.credential {
        s.daemon.tracking().note_job_experiment(*job, experiment_id);
    }
}

async fn create_experiment(
    State(s): State<AppState>,
    Caller(c): Caller,
    b: Body,
) -> Answer<ExperimentId> {
    let made = s.daemon.tracking().create_experiment(body(b)?).await?;
    note_experiment(&s, &c, &made.experiment_id);
    ok(made)
}

async fn get_experiment(State(s): State<AppState>, uri: Uri) -> Answer<OneExperiment> {
    let q: ExperimentRef = query(&uri)?;
    ok(s.daemon.tracking().get_experiment(&q.experiment_id).await?)
}

async fn get_experiment_by_name(
    State(s): State<AppState>,
    Caller(c): Caller,
    uri: Uri,
) -> Answer<OneExperiment> {
    let q: ExperimentByName = query(&uri)?;
    let found = s
        .daemon
        .tracking()
        .get_experiment_by_name(&q.experiment_name)
        .await?;
    note_experiment(&s, &c, &found.experiment.experiment_id);
    ok(found)
}

async fn search_experiments(State(s): State<AppState>, b: Body) -> Answer<Experiments> {
    ok(s.daemon.tracking().search_experiments(body(b)?).await?)
}

async fn search_experiments_get(State(s): State<AppState>, uri: Uri) -> Answer<Experiments> {
    ok(s.daemon.tracking().search_experiments(query(&uri)?).await?)
}

async fn update_experiment(State(s): State<AppState>, b: Body) -> Answer<Empty> {
    ok(s.daemon.tracking().update_experiment(body(b)?).await?)
}

async fn delete_experiment(State(s): State<AppState>, b: Body) -> Answer<Empty> {
    let r: ExperimentRef = body(b)?;
    ok(s.daemon
        .tracking()
        .set_experiment_deleted(&r.experiment_id, true)
        .await?)
}

async fn restore_experiment(State(s): State<AppState>, b: Body) -> Answer<Empty> {
    let r: ExperimentRef = body(b)?;
    ok(s.daemon
        .tracking()
        .set_experiment_deleted(&r.experiment_id, false)
        .await?)
}

async fn set_experiment_tag(State(s): State<AppState>, b: Body) -> Answer<Empty> {
    ok(s.daemon.tracking().set_experiment_tag(body(b)?).await?)
}

async fn delete_experiment_tag(State(s): State<AppState>, b: Body) -> Answer<Empty> {
    ok(s.daemon.tracking().delete_experiment_tag(body(b)?).await?)
}

async fn create_run(State(s): State<AppState>, Caller(caller): Caller, b: Body) -> Answer<OneRun> {
    let mut req: CreateRun = body(b)?;
    // A run a job makes is the job's: tagged with its id, so the job may write it.
    if let accounts::Credential::Job(job) = &caller.credential {
        let tag = petri_daemon::tracking::jobs::JOB_TAG;
        req.tags.retain(|t| t.key != tag);
        req.tags.push(KeyValue {
            key: tag.into(),
            value: job.to_string(),
        });
    }
    ok(s.daemon.tracking().create_run(req, &caller.user).await?)
}

async fn update_run(State(s): State<AppState>, Caller(c): Caller, b: Body) -> Answer<UpdatedRun> {
    let req: UpdateRun = body(b)?;
    job_writes(&s, &c, req.id()).await?;
    ok(s.daemon.tracking().update_run(req).await?)
}

async fn get_run(State(s): State<AppState>, Caller(c): Caller, uri: Uri) -> Answer<OneRun> {
    let q: RunRef = query(&uri)?;
    job_run(&s, &c, q.id()).await?;
    ok(s.daemon.tracking().get_run(q.id()).await?)
}

async fn search_runs(State(s): State<AppState>, b: Body) -> Answer<Runs> {
    ok(s.daemon.tracking().search_runs(body(b)?).await?)
}

async fn delete_run(State(s): State<AppState>, Caller(c): Caller, b: Body) -> Answer<Empty> {
    let r: RunRef = body(b)?;
    job_writes(&s, &c, r.id()).await?;
    ok(s.daemon.tracking().set_run_deleted(r.id(), true).await?)
}

async fn restore_run(State(s): State<AppState>, Caller(c): Caller, b: Body) -> Answer<Empty> {
    let r: RunRef = body(b)?;
    job_writes(&s, &c, r.id()).await?;
    ok(s.daemon.tracking().set_run_deleted(r.id(), false).await?)
}

async fn log_metric(State(s): State<AppState>, Caller(c): Caller, b: Body) -> Answer<Empty> {
    let req: LogMetric = body(b)?;
    job_writes(&s, &c, req.id()).await?;
    ok(s.daemon.tracking().log_metric(req).await?)
}

async fn log_param(State(s): State<AppState>, Caller(c): Caller, b: Body) -> Answer<Empty> {
    let req: LogKeyValue = body(b)?;
    job_writes(&s, &c, req.id()).await?;
    ok(s.daemon.tracking().log_param(req).await?)
}

async fn log_batch(State(s): State<AppState>, Caller(c): Caller, b: Body) -> Answer<Empty> {
    let req: LogBatch = body(b)?;
    job_writes(&s, &c, &req.run_id).await?;
    ok(s.daemon.tracking().log_batch(req).await?)
}

async fn log_inputs(State(s): State<AppState>, Caller(c): Caller, b: Body) -> Answer<Empty> {
    let req: LogInputs = body(b)?;
    job_writes(&s, &c, &req.run_id).await?;
    ok(s.daemon.tracking().log_inputs(req).await?)
}

async fn set_tag(State(s): State<AppState>, Caller(c): Caller, b: Body) -> Answer<Empty> {
    let req: LogKeyValue = body(b)?;
    job_writes(&s, &c, req.id()).await?;
    ok(s.daemon.tracking().set_tag(req).await?)
}

async fn delete_tag(State(s): State<AppState>, Caller(c): Caller, b: Body) -> Answer<Empty> {
    let req: DeleteTag = body(b)?;
    job_writes(&s, &c, &req.run_id).await?;
    ok(s.daemon.tracking().delete_tag(req).await?)
}

async fn metric_history(
    State(s): State<AppState>,
    Caller(c): Caller,
    uri: Uri,
) -> Answer<MetricHistory> {
    let req: GetMetricHistory = query(&uri)?;
    job_run(&s, &c, req.id()).await?;
    ok(s.daemon.tracking().metric_history(req).await?)
}

// ---- MLflow 3's logged models ----

async fn create_logged_model(State(s): State<AppState>, b: Body) -> Answer<OneModel> {
    ok(s.daemon.tracking().create_logged_model(body(b)?).await?)
}

async fn get_logged_model(State(s): State<AppState>, Path(id): Path<String>) -> Answer<OneModel> {
    ok(s.daemon.tracking().get_logged_model(&id).await?)
}

async fn finalize_logged_model(
    State(s): State<AppState>,
    Path(id): Path<String>,
    b: Body,
) -> Answer<OneModel> {
    ok(s.daemon
        .tracking()
        .finalize_logged_model(&id, body(b)?)
        .await?)
}

async fn delete_logged_model(State(s): State<AppState>, Path(id): Path<String>) -> Answer<Empty> {
    ok(s.daemon.tracking().delete_logged_model(&id).await?)
}

async fn set_logged_model_tags(
    State(s): State<AppState>,
    Path(id): Path<String>,
    b: Body,
) -> Answer<Empty> {
    let req: KeyValues = body(b)?;
    ok(s.daemon
        .tracking()
        .set_logged_model_values(&id, req.tags, false)
        .await?)
}

async fn log_logged_model_params(
    State(s): State<AppState>,
    Path(id): Path<String>,
    b: Body,
) -> Answer<Empty> {
    let req: KeyValues = body(b)?;
    ok(s.daemon
        .tracking()
        .set_logged_model_values(&id, req.tags, true)
        .await?)
}

async fn delete_logged_model_tag(
    State(s): State<AppState>,
    Path((id, key)): Path<(String, String)>,
) -> Answer<Empty> {
    ok(s.daemon
        .tracking()
        .delete_logged_model_tag(&id, &key)
        .await?)
}

async fn search_logged_models(State(s): State<AppState>, b: Body) -> Answer<LoggedModels> {
    ok(s.daemon.tracking().search_logged_models(body(b)?).await?)
}

async fn log_outputs(State(s): State<AppState>, Caller(c): Caller, b: Body) -> Answer<Empty> {
    let req: LogOutputs = body(b)?;
    job_writes(&s, &c, &req.run_id).await?;
    ok(s.daemon.tracking().log_outputs(req).await?)
}

/// MLflow 2's record of a model in a run's tags: MLflow 3 keeps models as logged models, so the
/// record is taken and not kept.
async fn log_model(b: Body) -> Answer<Empty> {
    let _: serde_json::Value = body(b)?;
    ok(Empty {})
}
