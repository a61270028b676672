//! `/api/2.0/mlflow-artifacts/artifacts`: MLflow's artifact proxy routes, which the stock client
//! uses for a run whose `artifact_uri` is `mlflow-artifacts:/<experiment>/<run>/artifacts`:
//! upload (PUT), download (GET) and delete (DELETE) of `artifacts/<path>`, and the listing
//! `artifacts?path=<folder>`. Bodies are streamed both ways, never held whole: these routes are
//! exempt from the API's body limit (a 2 GiB checkpoint uploads). The bytes live in the
//! content-addressed artifact store; tracking.db keeps each run's path → digest.
//!
//! MLflow's API, not Petri's: not in Petri's OpenAPI document. Errors are MLflow's shape.

use std::io::Read;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::Uri;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::TryStreamExt;
use petri_daemon::tracking::wire::Empty;
use petri_domain::ErrorBody;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::mlflow::MlflowError;

/// MLflow's artifact routes, to be nested under `/api/2.0/mlflow-artifacts`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/artifacts", get(list))
        .route(
            "/artifacts/{*path}",
            get(download).put(upload).delete(delete),
        )
        .layer(DefaultBodyLimit::disable())
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    path: String,
}

#[derive(Serialize)]
struct FileInfo {
    path: String,
    is_dir: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_size: Option<u64>,
}

#[derive(Serialize)]
struct Listing {
    files: Vec<FileInfo>,
}

async fn list(State(s): State<AppState>, uri: Uri) -> Result<Json<Listing>, MlflowError> {
    let q: ListQuery = crate::mlflow::query(&uri)?;
    let entries = s.daemon.tracking().list_artifacts(&q.path).await?;
    Ok(Json(Listing {
        files: entries
            .into_iter()
            .map(|e| FileInfo {
                path: e.name,
                is_dir: e.is_dir,
                file_size: e.size,
            })
            .collect(),
    }))
}

async fn upload(
    State(s): State<AppState>,
    Path(path): Path<String>,
    body: Body,
) -> Result<Json<Empty>, MlflowError> {
    // The body as a blocking reader: the artifact store hashes it into its temporary file as it
    // arrives; a connection cut halfway fails the read, and the temporary file goes with it.
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    s.daemon
        .tracking()
        .upload_artifact(s.daemon.artifacts(), &path, reader)
        .await?;
    Ok(Json(Empty {}))
}

async fn download(
    State(s): State<AppState>,
    Path(path): Path<String>,
) -> Result<Response, MlflowError> {
    let mut reader = s
        .daemon
        .tracking()
        .open_artifact(s.daemon.artifacts(), &path)
        .await?;
    let len = reader.len();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let chunk = match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => Ok(Bytes::copy_from_slice(&buf[..n])),
                Err(e) => {
                    // Changed on disk since it was checked: the answer is cut off, never
                    // completed with wrong bytes.
                    let e = petri_daemon::artifacts::ArtifactError::from_read(
                        e,
                        std::path::Path::new("the blob"),
                    );
                    tracing::error!(error = %e, "a run's artifact failed its check while it was sent");
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
    Ok((
        [
            (CONTENT_TYPE, "application/octet-stream".to_string()),
            (CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response())
}

async fn delete(
    State(s): State<AppState>,
    Path(path): Path<String>,
) -> Result<Json<Empty>, MlflowError> {
    // Deleting what is not there is no error, as in MLflow.
    s.daemon
        .tracking()
        .delete_artifacts(s.daemon.artifacts(), &path)
        .await?;
    Ok(Json(Empty {}))
}
