//! `/api/v1/secrets`: list, set (or replace) and remove secrets. No answer ever holds a value.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use petri_domain::{ErrorCode, SecretInfo, SecretRequest};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, parse_body};
use crate::jobs::body_error;

/// Runs a secrets call off the async threads (it reads and writes files).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, petri_daemon::secrets::SecretsError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| ApiError(e.into()))
}

#[utoipa::path(get, path = "/api/v1/secrets", tag = "secrets", operation_id = "list_secrets",
    responses((status = 200, description = "the caller's secrets (every one for an admin), names and metadata only", body = Vec<SecretInfo>),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody)))]
pub(crate) async fn list(
    State(s): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Vec<SecretInfo>>, ApiError> {
    Ok(Json(
        s.daemon.secrets().list(&caller.user, caller.is_admin()),
    ))
}

#[utoipa::path(put, path = "/api/v1/secrets/{name}", tag = "secrets", request_body = SecretRequest,
    params(("name" = String, Path, description = "the secret's name: letters, digits, `_`, `-`, `.`")),
    responses((status = 200, description = "replaced; the answer never holds the value", body = SecretInfo),
              (status = 201, description = "created; the answer never holds the value", body = SecretInfo),
              (status = 400, description = "INVALID_SECRET: a bad name, an empty or too big value (1 MiB at most), bad base64; MALFORMED_SPEC: the body does not parse", body = petri_domain::ErrorBody),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 403, description = "FORBIDDEN: the secret is another user's, or the token lacks the submit scope", body = petri_domain::ErrorBody),
              (status = 413, description = "PAYLOAD_TOO_LARGE", body = petri_domain::ErrorBody)))]
pub(crate) async fn put(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SecretInfo>), ApiError> {
    let req: SecretRequest = parse_body(&body.map_err(body_error)?, "the secret")?;
    let secrets = s.daemon.secrets().clone();
    let (info, created) =
        blocking(move || secrets.put(&name, req, &caller.user, caller.is_admin())).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(info)))
}

#[utoipa::path(delete, path = "/api/v1/secrets/{name}", tag = "secrets", operation_id = "remove_secret",
    params(("name" = String, Path, description = "the secret's name")),
    responses((status = 200, description = "the secret, removed", body = SecretInfo),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 403, description = "FORBIDDEN: the secret is another user's", body = petri_domain::ErrorBody),
              (status = 404, description = "SECRET_NOT_FOUND", body = petri_domain::ErrorBody)))]
pub(crate) async fn remove(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<Json<SecretInfo>, ApiError> {
    let secrets = s.daemon.secrets().clone();
    let info = blocking(move || secrets.remove(&name, &caller.user, caller.is_admin())).await?;
    Ok(Json(info))
}
