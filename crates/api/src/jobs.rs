//! `/api/v1/jobs`: submit, list, show, cancel, hold, release, read the log.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use petri_daemon::ListQuery;
use petri_daemon::accounts::{Action, Caller as Who};
use petri_domain::{ErrorCode, Job, JobPage, JobSpec};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::{AuditNote, Caller, allow};
use crate::error::{ApiError, parse_body};

/// A submission: one or more job specs, accepted all together or not at all.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    pub jobs: Vec<JobSpec>,
}

/// The jobs a submission created (one per sweep value).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubmitResponse {
    pub jobs: Vec<Job>,
}

/// Whether `caller` may do `action` to `job` (its user's, or an admin's to do).
pub(crate) fn owns(caller: &Who, action: Action, job: &Job) -> Result<(), ApiError> {
    owns_job(caller, action, &job.user, job.number)
}

/// `owns` for a job known by its user and number.
pub(crate) fn owns_job(
    caller: &Who,
    action: Action,
    user: &str,
    number: u64,
) -> Result<(), ApiError> {
    allow(caller, action, user, &format!("job {number}"))
}

pub(crate) fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            "the request body is larger than the daemon accepts (setting `max_body`)",
        )
    } else {
        ApiError::new(ErrorCode::BadRequest, e.body_text())
    }
}

pub(crate) fn query_error(e: QueryRejection) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, e.body_text())
}

#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body = SubmitRequest,
    responses((status = 201, body = SubmitResponse),
              (status = 400, description = "MALFORMED_SPEC: the body does not parse", body = petri_domain::ErrorBody),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 413, description = "PAYLOAD_TOO_LARGE", body = petri_domain::ErrorBody),
              (status = 422, description = "the spec was refused; `code` says why", body = petri_domain::ErrorBody)))]
pub(crate) async fn submit(
    State(s): State<AppState>,
    Caller(caller): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    let req: SubmitRequest = parse_body(&body.map_err(body_error)?, "the submission")?;
    let by = petri_daemon::Submitter {
        origin: petri_domain::Origin::Submission,
        user: caller.user,
    };
    let jobs = s.daemon.queue().submit(req.jobs, by).await?;
    let note = match jobs.as_slice() {
        [one] => format!("job {}", one.number),
        [first, .., last] => format!("{} jobs, {} to {}", jobs.len(), first.number, last.number),
        [] => String::new(),
    };
    let mut answer = (StatusCode::CREATED, Json(SubmitResponse { jobs })).into_response();
    answer.extensions_mut().insert(AuditNote(note));
    Ok(answer)
}

#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", operation_id = "list_jobs", params(ListQuery),
    responses((status = 200, body = JobPage, description = "a page of jobs and the cursor of the next"),
              (status = 400, description = "BAD_REQUEST: a bad query, a cursor of another list or of no job", body = petri_domain::ErrorBody),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody)))]
pub(crate) async fn list(
    State(s): State<AppState>,
    Caller(caller): Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<JobPage>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let mut page = s.daemon.queue().list(q).await?;
    for job in &mut page.jobs {
        hide_private(&caller, job);
    }
    Ok(Json(page))
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", operation_id = "show_job",
    params(("id" = String, Path, description = "job number, id, or unique id prefix")),
    responses((status = 200, body = Job),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 404, description = "JOB_NOT_FOUND", body = petri_domain::ErrorBody)))]
pub(crate) async fn show(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let mut job = s.daemon.queue().get(&id).await?;
    hide_private(&caller, &mut job);
    Ok(Json(job))
}

/// Everyone sees the whole queue (names, owners, resources, commands), but the values of a job's
/// environment are its user's and admins' alone: people put keys there.
fn hide_private(caller: &Who, job: &mut Job) {
    if caller.is_admin() || caller.user == job.user {
        return;
    }
    for value in job.spec.env.values_mut() {
        *value = format!("(hidden: {}'s)", job.user);
    }
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs", operation_id = "cancel_job",
    params(("id" = String, Path, description = "job number or id")),
    responses((status = 200, body = Job),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 403, description = "FORBIDDEN: the job is another user's", body = petri_domain::ErrorBody),
              (status = 404, description = "JOB_NOT_FOUND", body = petri_domain::ErrorBody),
              (status = 409, description = "INVALID_STATE: not possible in the job's state", body = petri_domain::ErrorBody)))]
pub(crate) async fn cancel(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job = s.daemon.queue().stored(&id).await?;
    owns(&caller, Action::Submit, &job)?;
    Ok(Json(s.daemon.queue().cancel(&job.id.to_string()).await?))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/hold", tag = "jobs",
    params(("id" = String, Path, description = "job number or id")),
    responses((status = 200, body = Job),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 403, description = "FORBIDDEN: the job is another user's", body = petri_domain::ErrorBody),
              (status = 404, description = "JOB_NOT_FOUND", body = petri_domain::ErrorBody),
              (status = 409, description = "INVALID_STATE: not possible in the job's state", body = petri_domain::ErrorBody)))]
pub(crate) async fn hold(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job = s.daemon.queue().stored(&id).await?;
    owns(&caller, Action::Submit, &job)?;
    Ok(Json(s.daemon.queue().hold(&job.id.to_string()).await?))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/release", tag = "jobs",
    params(("id" = String, Path, description = "job number or id")),
    responses((status = 200, body = Job),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 403, description = "FORBIDDEN: the job is another user's", body = petri_domain::ErrorBody),
              (status = 404, description = "JOB_NOT_FOUND", body = petri_domain::ErrorBody),
              (status = 409, description = "INVALID_STATE: not possible in the job's state", body = petri_domain::ErrorBody)))]
pub(crate) async fn release(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job = s.daemon.queue().stored(&id).await?;
    owns(&caller, Action::Submit, &job)?;
    Ok(Json(s.daemon.queue().release(&job.id.to_string()).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct LogQuery {
    /// Byte offset to read from.
    offset: u64,
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}/log", tag = "jobs",
    params(("id" = String, Path, description = "job number or id"), LogQuery),
    responses((status = 200, description = "log bytes from `offset`; headers `x-petri-next-offset` and `x-petri-done`", content_type = "text/plain"),
              (status = 400, description = "BAD_REQUEST: a bad query", body = petri_domain::ErrorBody),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 403, description = "FORBIDDEN: the job is another user's", body = petri_domain::ErrorBody),
              (status = 404, description = "JOB_NOT_FOUND", body = petri_domain::ErrorBody)))]
pub(crate) async fn log(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let job = s.daemon.queue().stored(&id).await?;
    owns(&caller, Action::ReadPrivate, &job)?;
    let chunk = s
        .daemon
        .queue()
        .read_log(&job.id.to_string(), q.offset)
        .await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert("x-petri-next-offset", HeaderValue::from(chunk.next_offset));
    headers.insert(
        "x-petri-done",
        HeaderValue::from_static(if chunk.done { "true" } else { "false" }),
    );
    Ok((headers, chunk.data))
}
