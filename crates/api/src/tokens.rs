//! `/api/v1/tokens`: create, list and revoke API tokens (the admin scope; a member manages their
//! own, an admin everyone's).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use petri_daemon::accounts::{NewToken, TokenInfo, TokenRequest};
use petri_domain::ErrorCode;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, parse_body};
use crate::jobs::body_error;

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = TokenRequest,
    responses((status = 201, description = "the token; its secret is shown this once", body = NewToken),
              (status = 400, description = "MALFORMED_SPEC: the body does not parse", body = petri_domain::ErrorBody),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 403, description = "FORBIDDEN: the caller lacks the admin scope", body = petri_domain::ErrorBody),
              (status = 409, description = "TOKEN_NAME_TAKEN", body = petri_domain::ErrorBody),
              (status = 422, description = "INVALID_SPEC: a bad name or expiry", body = petri_domain::ErrorBody)))]
pub(crate) async fn create(
    State(s): State<AppState>,
    Caller(caller): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<NewToken>), ApiError> {
    let req: TokenRequest = parse_body(&body.map_err(body_error)?, "the token request")?;
    let accounts = s.daemon.accounts().clone();
    let made = tokio::task::spawn_blocking(move || accounts.create_token(&caller, req))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))??;
    Ok((StatusCode::CREATED, Json(made)))
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", operation_id = "list_tokens",
    responses((status = 200, description = "every token, never a secret", body = Vec<TokenInfo>),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 403, description = "FORBIDDEN: the caller lacks the admin scope", body = petri_domain::ErrorBody)))]
pub(crate) async fn list(
    State(s): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    let accounts = s.daemon.accounts().clone();
    let all = tokio::task::spawn_blocking(move || accounts.tokens(&caller))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))??;
    Ok(Json(all))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{token}", tag = "tokens",
    params(("token" = String, Path, description = "the token's id or name")),
    responses((status = 200, description = "the token, revoked", body = TokenInfo),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 403, description = "FORBIDDEN: the caller lacks the admin scope", body = petri_domain::ErrorBody),
              (status = 404, description = "TOKEN_NOT_FOUND", body = petri_domain::ErrorBody)))]
pub(crate) async fn revoke(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(token): Path<String>,
) -> Result<Json<TokenInfo>, ApiError> {
    let accounts = s.daemon.accounts().clone();
    let revoked = tokio::task::spawn_blocking(move || accounts.revoke_token(&caller, &token))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))??;
    Ok(Json(revoked))
}
