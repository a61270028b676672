//! `/api/v1/me`, `/api/v1/users`, `/api/v1/quotas`, `/api/v1/shares`, `/api/v1/audit`: who the
//! caller is, the users of a shared machine with their roles and quotas, what each runs and has
//! used lately (fair share's measure), and the audit log (admins only; nothing edits it).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use petri_daemon::accounts::QuotaSubject;
use petri_domain::{
    AuditEntry, AuditQuery, ErrorCode, Me, Quota, UserInfo, UserRequest, UserShare,
};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, parse_body};
use crate::jobs::{body_error, query_error};

type E = petri_domain::ErrorBody;

/// Runs an accounts call off the async threads (it reads the store and the user database).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, petri_daemon::accounts::AccountsError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| ApiError(e.into()))
}

#[utoipa::path(get, path = "/api/v1/me", tag = "users",
    responses((status = 200, description = "who the caller is: name, role, how they proved it", body = Me),
              (status = 401, description = "UNAUTHORIZED", body = E)))]
pub(crate) async fn me(State(s): State<AppState>, Caller(caller): Caller) -> Json<Me> {
    let accounts = s.daemon.accounts().clone();
    let team = tokio::task::spawn_blocking(move || accounts.team())
        .await
        .unwrap_or(false);
    Json(caller.me(team))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", operation_id = "list_users",
    responses((status = 200, description = "every user, with their role and own quota", body = Vec<UserInfo>),
              (status = 401, description = "UNAUTHORIZED", body = E)))]
pub(crate) async fn list(State(s): State<AppState>) -> Result<Json<Vec<UserInfo>>, ApiError> {
    let accounts = s.daemon.accounts().clone();
    Ok(Json(blocking(move || accounts.users()).await?))
}

#[utoipa::path(put, path = "/api/v1/users/{name}", tag = "users", operation_id = "put_user", request_body = UserRequest,
    params(("name" = String, Path, description = "the Unix user's name")),
    responses((status = 200, description = "the user, added or with the new role", body = UserInfo),
              (status = 400, description = "BAD_REQUEST or MALFORMED_SPEC: a bad name or body", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 403, description = "FORBIDDEN: admins only; the daemon's own user stays an admin", body = E)))]
pub(crate) async fn put(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<UserInfo>, ApiError> {
    let req: UserRequest = parse_body(&body.map_err(body_error)?, "the user")?;
    let accounts = s.daemon.accounts().clone();
    Ok(Json(
        blocking(move || accounts.put_user(&name, req.role)).await?,
    ))
}

#[utoipa::path(put, path = "/api/v1/quotas/{subject}", tag = "users", request_body = Quota,
    params(("subject" = String, Path, description = "a user's name, `user:NAME`, or `group:NAME` (a Unix group: its members together)")),
    responses((status = 200, description = "the quota as set; an empty one removes it", body = Quota),
              (status = 400, description = "MALFORMED_SPEC: the body does not parse", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 403, description = "FORBIDDEN: admins only", body = E),
              (status = 404, description = "USER_NOT_FOUND", body = E),
              (status = 422, description = "INVALID_QUOTA: a value that makes no sense, or no such group", body = E)))]
pub(crate) async fn set_quota(
    State(s): State<AppState>,
    Path(subject): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Quota>, ApiError> {
    let quota: Quota = parse_body(&body.map_err(body_error)?, "the quota")?;
    let subject = QuotaSubject::parse(&subject).map_err(ApiError)?;
    let accounts = s.daemon.accounts().clone();
    Ok(Json(
        blocking(move || accounts.set_quota(&subject, &quota)).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/shares", tag = "users",
    responses((status = 200, description = "each user's running and waiting jobs, part of the machine now, and decayed recent usage", body = Vec<UserShare>),
              (status = 401, description = "UNAUTHORIZED", body = E)))]
pub(crate) async fn shares(State(s): State<AppState>) -> Result<Json<Vec<UserShare>>, ApiError> {
    Ok(Json(s.daemon.queue().shares().await?))
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "users", params(AuditQuery),
    responses((status = 200, description = "the audit log, newest first", body = Vec<AuditEntry>),
              (status = 400, description = "BAD_REQUEST: a bad query", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 403, description = "FORBIDDEN: admins only", body = E)))]
pub(crate) async fn audit(
    State(s): State<AppState>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let accounts = s.daemon.accounts().clone();
    Ok(Json(blocking(move || accounts.audit(&q)).await?))
}
