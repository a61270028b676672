//! `/api/2.0/mlflow-artifacts/artifacts`: MLflow's artifact proxy routes, which the stock client
//! uses for a run whose `artifact_uri` is `mlflow-artifacts:/<experiment>/<run>/artifacts`:
//! upload (PUT), download (GET) and delete (DELETE) of `artifacts/<path>`, and the listing
//! `artifacts?path=<folder>`. Bodies are streamed both ways, never held whole: these routes are
//! exempt from the API's body limit (a 2 GiB checkpoint uploads). The bytes live in the
//! content-addressed artifact store; tracking.db keeps each run's path → digest.
//!
//! MLflow's API, not Petri's: not in Petri's OpenAPI document. Errors are MLflow's shape.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::Uri;
use axum::response::Response;
use axum::routing::get;
use futures_util::TryStreamExt;
use petri_daemon::tracking::wire::Empty;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Caller;
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
    let entries = match registry_path(&q.path)? {
        Some((name, version, sub)) => s
            .daemon
            .registry()
            .list_files(&name, version, &sub)
            .await
            .map_err(registry_error)?,
        None => s.daemon.tracking().list_artifacts(&q.path).await?,
    };
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

/// A job's token changes only its own runs' artifacts (see [`crate::mlflow::job_writes`]).
async fn job_writes(s: &AppState, caller: &Caller, path: &str) -> Result<(), MlflowError> {
    if let Ok(at) = petri_daemon::tracking::artifacts::parse_path(path)
        && !at.model
    {
        crate::mlflow::job_writes(s, &caller.0, &at.run_id).await?;
    }
    Ok(())
}

async fn upload(
    State(s): State<AppState>,
    caller: Caller,
    Path(path): Path<String>,
    body: Body,
) -> Result<Json<Empty>, MlflowError> {
    job_writes(&s, &caller, &path).await?;
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
    let reader = match registry_path(&path)? {
        Some((name, version, file)) => s
            .daemon
            .registry()
            .open_file(&name, version, &file)
            .await
            .map_err(registry_error)?,
        None => {
            s.daemon
                .tracking()
                .open_artifact(s.daemon.artifacts(), &path)
                .await?
        }
    };
    Ok(crate::artifacts::stream(reader))
}

/// `registry/<name>/<version>[/<path>]`: an uploaded model version's files, which the MLflow
/// client downloads from its `storage_location`.
fn registry_path(path: &str) -> Result<Option<(String, i64, String)>, MlflowError> {
    let Some(rest) = path
        .trim_start_matches('/')
        .strip_prefix(petri_daemon::registry::REGISTRY_ARTIFACTS)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return Ok(None);
    };
    let mut parts = rest.splitn(3, '/');
    let name = parts.next().unwrap_or_default().to_string();
    let version = petri_daemon::registry::parse_version(parts.next().unwrap_or_default())
        .map_err(registry_error)?;
    let file = parts
        .next()
        .unwrap_or_default()
        .trim_matches('/')
        .to_string();
    Ok(Some((name, version, file)))
}

fn registry_error(e: petri_daemon::registry::RegistryError) -> MlflowError {
    MlflowError(e.into())
}

async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    Path(path): Path<String>,
) -> Result<Json<Empty>, MlflowError> {
    job_writes(&s, &caller, &path).await?;
    // Deleting what is not there is no error, as in MLflow.
    s.daemon
        .tracking()
        .delete_artifacts(s.daemon.artifacts(), &path)
        .await?;
    Ok(Json(Empty {}))
}
