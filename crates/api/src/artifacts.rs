//! `/api/v1/artifacts` (usage, one artifact's content) and `/api/v1/gc` (garbage collection,
//! admin scope). The store's calls block (files, SQLite), so they run on blocking threads.

use std::io::Read;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use axum::response::{IntoResponse, Response};
use petri_daemon::artifacts::{
    ArtifactError, ArtifactUsage, Content, GcReport, GcRequest, Manifest, parse_digest,
};
use petri_domain::{ErrorBody, ErrorCode, HomeUsage};

use crate::AppState;
use crate::error::{ApiError, parse_body};
use crate::jobs::body_error;

impl From<ArtifactError> for ApiError {
    fn from(e: ArtifactError) -> Self {
        if e.code().http_status() >= 500 {
            tracing::error!(error = %e, "artifact request failed");
        }
        ApiError(e.into())
    }
}

/// Runs a blocking call of the artifact store on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ArtifactError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(Into::into)
}

#[utoipa::path(post, path = "/api/v1/gc", tag = "artifacts", request_body = GcRequest,
    responses((status = 200, description = "what was removed (with `dry_run`: what would be), and what is kept: the artifact store's garbage, and in `jobs` the logs and outputs of finished jobs beyond the retention limits", body = GcReport),
              (status = 400, description = "MALFORMED_SPEC: the body does not parse", body = petri_domain::ErrorBody),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 403, description = "FORBIDDEN: the caller lacks the admin scope", body = petri_domain::ErrorBody)))]
pub(crate) async fn gc(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<GcReport>, ApiError> {
    let body = body.map_err(body_error)?;
    let req: GcRequest = if body.iter().all(u8::is_ascii_whitespace) {
        GcRequest::default()
    } else {
        parse_body(&body, "the garbage collection request")?
    };
    let a = s.daemon.artifacts().clone();
    let mut report = blocking(move || a.gc(&a.policy().clone(), req.dry_run)).await?;
    // The logs and outputs of finished jobs, within the retention limits, go too.
    let retention = s.daemon.retention().clone();
    let dry_run = req.dry_run;
    let jobs = tokio::task::spawn_blocking(move || retention.run(dry_run, petri_daemon::now_ms()))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))??;
    report.jobs = Some(jobs);
    Ok(Json(report))
}

#[utoipa::path(get, path = "/api/v1/usage", tag = "system", operation_id = "home_usage",
    responses((status = 200, description = "what the home holds by kind, the disk it is on, the retention limits", body = HomeUsage),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody)))]
pub(crate) async fn home_usage(State(s): State<AppState>) -> Result<Json<HomeUsage>, ApiError> {
    let daemon = s.daemon.clone();
    let usage = tokio::task::spawn_blocking(move || daemon.usage())
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))??;
    Ok(Json(usage))
}

#[utoipa::path(get, path = "/api/v1/artifacts/usage", tag = "artifacts", operation_id = "artifact_usage",
    responses((status = 200, description = "blobs and bytes in the artifact store, held and not", body = ArtifactUsage),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody)))]
pub(crate) async fn usage(State(s): State<AppState>) -> Result<Json<ArtifactUsage>, ApiError> {
    let a = s.daemon.artifacts().clone();
    Ok(Json(blocking(move || a.usage()).await?))
}

#[utoipa::path(get, path = "/api/v1/artifacts/{digest}", tag = "artifacts", operation_id = "artifact_get",
    params(("digest" = String, Path, description = "`sha256:` and 64 lower-case hex digits")),
    responses((status = 200, description = "a file's bytes, checked against the digest before they are sent; a folder's manifest as JSON",
                content((Manifest = "application/json"), ("application/octet-stream"))),
              (status = 400, description = "INVALID_DIGEST", body = petri_domain::ErrorBody),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 404, description = "ARTIFACT_NOT_FOUND", body = petri_domain::ErrorBody),
              (status = 500, description = "ARTIFACT_CORRUPT: the stored copy no longer matches its digest; nothing was sent", body = petri_domain::ErrorBody)))]
pub(crate) async fn get(
    State(s): State<AppState>,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    let d = parse_digest(&digest)?;
    let a = s.daemon.artifacts().clone();
    let content = blocking(move || a.read(&d)).await?;
    let reader = match content {
        Content::Dir(m) => return Ok(Json(m).into_response()),
        Content::File(r) => r,
    };
    Ok(stream(reader))
}

/// A checked blob as a streamed answer, read on a blocking thread as it is sent. A blob that
/// fails its check while it is read (changed on disk since it was stored) cuts the answer off:
/// it is never completed with wrong bytes.
pub(crate) fn stream(mut reader: petri_daemon::artifacts::BlobReader) -> Response {
    let len = reader.len();
    let etag = format!("\"{}\"", reader.digest());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let chunk = match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => Ok(Bytes::copy_from_slice(&buf[..n])),
                Err(e) => {
                    let e = ArtifactError::from_read(e, std::path::Path::new("the blob"));
                    tracing::error!(error = %e, "an artifact failed its check while it was sent");
                    Err(std::io::Error::other(ErrorBody::from(e).message))
                }
            };
            let last = chunk.is_err();
            if tx.blocking_send(chunk).is_err() || last {
                return;
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    (
        [
            (CONTENT_TYPE, "application/octet-stream".to_string()),
            (CONTENT_LENGTH, len.to_string()),
            (ETAG, etag),
        ],
        body,
    )
        .into_response()
}
