//! `/api/v1/notebooks` and `/api/v1/images`: start, list, show, stop, remove, open a notebook;
//! the images the engine has.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use petri_daemon::accounts::{Action, Caller as Who};
use petri_domain::{ErrorCode, Image, Notebook, NotebookLink, NotebookRequest};

use crate::AppState;
use crate::auth::{Caller, allow};
use crate::error::{ApiError, parse_body};
use crate::jobs::body_error;

/// Whether `caller` may change or sign in to the notebook `name` (its user's, or an admin's).
async fn theirs(s: &AppState, caller: &Who, name: &str) -> Result<(), ApiError> {
    let owner = s.daemon.notebooks().owner(name).await?;
    allow(caller, Action::Submit, &owner, &format!("notebook {name}"))
}

#[utoipa::path(post, path = "/api/v1/notebooks", tag = "notebooks", request_body = NotebookRequest,
    responses((status = 201, body = Notebook),
              (status = 400, description = "MALFORMED_SPEC: the body does not parse", body = petri_domain::ErrorBody),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 409, description = "NOTEBOOK_NAME_TAKEN: a notebook of that name runs", body = petri_domain::ErrorBody),
              (status = 413, description = "PAYLOAD_TOO_LARGE", body = petri_domain::ErrorBody),
              (status = 422, description = "refused (image, mounts, resources); `code` says why", body = petri_domain::ErrorBody)))]
pub(crate) async fn start(
    State(s): State<AppState>,
    Caller(caller): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Notebook>), ApiError> {
    let req: NotebookRequest = parse_body(&body.map_err(body_error)?, "the notebook request")?;
    // Starting a stopped notebook again is changing it: its user's, or an admin's, to do.
    if let Ok(owner) = s.daemon.notebooks().owner(&req.name).await {
        allow(
            &caller,
            Action::Submit,
            &owner,
            &format!("notebook {}", req.name),
        )?;
    }
    let nb = s.daemon.notebooks().start(req, &caller.user).await?;
    Ok((StatusCode::CREATED, Json(nb)))
}

#[utoipa::path(get, path = "/api/v1/notebooks", tag = "notebooks", operation_id = "list_notebooks",
    responses((status = 200, body = Vec<Notebook>),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody)))]
pub(crate) async fn list(State(s): State<AppState>) -> Result<Json<Vec<Notebook>>, ApiError> {
    Ok(Json(s.daemon.notebooks().list().await?))
}

#[utoipa::path(get, path = "/api/v1/notebooks/{name}", tag = "notebooks", operation_id = "show_notebook",
    params(("name" = String, Path, description = "the notebook's name")),
    responses((status = 200, body = Notebook),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 404, description = "NOTEBOOK_NOT_FOUND", body = petri_domain::ErrorBody)))]
pub(crate) async fn show(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Notebook>, ApiError> {
    Ok(Json(s.daemon.notebooks().get(&name).await?))
}

#[utoipa::path(post, path = "/api/v1/notebooks/{name}/stop", tag = "notebooks",
    params(("name" = String, Path, description = "the notebook's name")),
    responses((status = 200, body = Notebook),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 403, description = "FORBIDDEN: the notebook is another user's", body = petri_domain::ErrorBody),
              (status = 404, description = "NOTEBOOK_NOT_FOUND", body = petri_domain::ErrorBody)))]
pub(crate) async fn stop(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<Json<Notebook>, ApiError> {
    theirs(&s, &caller, &name).await?;
    Ok(Json(s.daemon.notebooks().stop(&name).await?))
}

#[utoipa::path(delete, path = "/api/v1/notebooks/{name}", tag = "notebooks", operation_id = "remove_notebook",
    params(("name" = String, Path, description = "the notebook's name")),
    responses((status = 200, description = "the notebook as it was; its workspace is kept", body = Notebook),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 403, description = "FORBIDDEN: the notebook is another user's", body = petri_domain::ErrorBody),
              (status = 404, description = "NOTEBOOK_NOT_FOUND", body = petri_domain::ErrorBody),
              (status = 409, description = "INVALID_STATE: it still runs", body = petri_domain::ErrorBody)))]
pub(crate) async fn remove(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<Json<Notebook>, ApiError> {
    theirs(&s, &caller, &name).await?;
    Ok(Json(s.daemon.notebooks().remove(&name).await?))
}

#[utoipa::path(post, path = "/api/v1/notebooks/{name}/open", tag = "notebooks",
    params(("name" = String, Path, description = "the notebook's name")),
    responses((status = 200, description = "a one-time link that signs a browser in", body = NotebookLink),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 403, description = "FORBIDDEN: the notebook is another user's", body = petri_domain::ErrorBody),
              (status = 404, description = "NOTEBOOK_NOT_FOUND", body = petri_domain::ErrorBody),
              (status = 409, description = "NOTEBOOK_NOT_READY: it does not run", body = petri_domain::ErrorBody)))]
pub(crate) async fn open(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Json<NotebookLink>, ApiError> {
    theirs(&s, &caller, &name).await?;
    let link = s.daemon.notebooks().link(&name).await?;
    // On the notebooks' own address, as this caller reaches it.
    Ok(Json(NotebookLink {
        url: format!(
            "{}{}",
            crate::proxy::notebooks_origin(&s, &headers),
            link.url
        ),
    }))
}

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct BuildQuery {
    /// Rebuild even when an image from the same recipe exists.
    force: bool,
}

#[utoipa::path(post, path = "/api/v1/images/build", tag = "images", params(BuildQuery),
    responses((status = 201, description = "the build, queued as a job (its log shows the progress)", body = petri_domain::Job),
              (status = 400, description = "BAD_REQUEST: a bad query", body = petri_domain::ErrorBody),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody)))]
pub(crate) async fn build_image(
    State(s): State<AppState>,
    Caller(caller): Caller,
    q: Result<axum::extract::Query<BuildQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<(StatusCode, Json<petri_domain::Job>), ApiError> {
    let axum::extract::Query(q) =
        q.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    Ok((
        StatusCode::CREATED,
        Json(
            s.daemon
                .notebooks()
                .image_build(q.force, &caller.user)
                .await?,
        ),
    ))
}

#[utoipa::path(get, path = "/api/v1/images", tag = "images",
    responses((status = 200, body = Vec<Image>),
              (status = 401, description = "UNAUTHORIZED", body = petri_domain::ErrorBody),
              (status = 422, description = "CONTAINERS_UNAVAILABLE: no Docker engine answers", body = petri_domain::ErrorBody)))]
pub(crate) async fn images(State(s): State<AppState>) -> Result<Json<Vec<Image>>, ApiError> {
    Ok(Json(s.daemon.images().await?))
}
