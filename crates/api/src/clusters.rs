//! `/api/v1/clusters`: the targets beyond this machine. A credential goes in with `POST` and
//! never comes out.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use petri_domain::{ClusterCheck, ClusterInfo, ClusterRequest};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, parse_body};
use crate::jobs::body_error;

#[utoipa::path(get, path = "/api/v1/clusters", tag = "clusters", operation_id = "list_clusters",
    responses((status = 200, description = "every cluster, without credentials", body = Vec<ClusterInfo>),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody)))]
pub(crate) async fn list(State(s): State<AppState>) -> Json<Vec<ClusterInfo>> {
    Json(s.daemon.clusters().list())
}

#[utoipa::path(post, path = "/api/v1/clusters", tag = "clusters", operation_id = "add_cluster",
    request_body = ClusterRequest,
    responses((status = 201, description = "added (or the caller's credential for it kept); the credential was tried first", body = ClusterInfo),
              (status = 400, description = "MALFORMED_SPEC: the body does not parse", body = petri_domain::ErrorBody),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 409, description = "CLUSTER_EXISTS: another cluster has the name", body = petri_domain::ErrorBody),
              (status = 422, description = "INVALID_CLUSTER: a bad name, address, shared folder, kind or version; CREDENTIAL_REFUSED: the cluster refused the token", body = petri_domain::ErrorBody),
              (status = 502, description = "CLUSTER_UNAVAILABLE: it does not answer, or answers with an error", body = petri_domain::ErrorBody)))]
pub(crate) async fn add(
    State(s): State<AppState>,
    Caller(caller): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ClusterInfo>), ApiError> {
    let req: ClusterRequest = parse_body(&body.map_err(body_error)?, "the cluster")?;
    let info = s.daemon.clusters().add(req, &caller.user).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

#[utoipa::path(delete, path = "/api/v1/clusters/{name}", tag = "clusters", operation_id = "remove_cluster",
    params(("name" = String, Path, description = "the cluster's name")),
    responses((status = 200, description = "removed, with every credential for it", body = ClusterInfo),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 403, description = "FORBIDDEN: another user's cluster", body = petri_domain::ErrorBody),
              (status = 404, description = "CLUSTER_NOT_FOUND", body = petri_domain::ErrorBody),
              (status = 409, description = "INVALID_STATE: jobs of this daemon run there", body = petri_domain::ErrorBody)))]
pub(crate) async fn remove(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<Json<ClusterInfo>, ApiError> {
    Ok(Json(s.daemon.clusters().remove(
        &name,
        &caller.user,
        caller.is_admin(),
    )?))
}

#[utoipa::path(get, path = "/api/v1/clusters/{name}/check", tag = "clusters", operation_id = "check_cluster",
    params(("name" = String, Path, description = "the cluster's name")),
    responses((status = 200, description = "whether it answers and takes the caller's credential, its version, size and partitions", body = ClusterCheck),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 404, description = "CLUSTER_NOT_FOUND", body = petri_domain::ErrorBody)))]
pub(crate) async fn check(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<Json<ClusterCheck>, ApiError> {
    Ok(Json(s.daemon.clusters().check(&name, &caller.user).await?))
}
