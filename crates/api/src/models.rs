//! `/api/v1/models` and `/api/v1/model-uploads`: Petri's own view of the model registry (what
//! `petri model …` and the web UI call), beside MLflow's registry API under `/api/2.0/mlflow`.
//! A version is registered from a run's artifact (`runs:/<run>/<path>`, `models:/m-…`) or from
//! files uploaded first, one `PUT` per file (streamed, no body limit), then named in the
//! register call. Every handler parses, calls the registry, and serialises.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::TryStreamExt;
use petri_daemon::registry::wire::{
    CreateModel, KeyValue, ModelDetail, RegisteredModel, Search, VersionDetail, VersionFile,
};
use petri_daemon::registry::{RegistryError, parse_version};
use petri_domain::ErrorCode;
use serde::Deserialize;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, parse_body};
use crate::jobs::body_error;

type E = petri_domain::ErrorBody;

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        if matches!(e, RegistryError::Db { .. } | RegistryError::Task(_)) {
            tracing::error!(error = %e, "a registry call failed inside the daemon");
        }
        ApiError(e.into())
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ModelsQuery {
    /// A filter in MLflow's grammar: `name LIKE 'iris%'`, `tags.team = 'vision'`.
    filter: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/models", tag = "models", operation_id = "models_list",
    params(ModelsQuery),
    responses((status = 200, description = "registered models by name, each with its latest version and aliases", body = Vec<RegisteredModel>),
              (status = 400, description = "INVALID_PARAMETER_VALUE: the filter does not parse; BAD_REQUEST: a malformed query", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E)))]
pub(crate) async fn list(
    State(s): State<AppState>,
    q: Result<Query<ModelsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<RegisteredModel>>, ApiError> {
    let Query(q) = q.map_err(crate::jobs::query_error)?;
    let registry = s.daemon.registry();
    let mut out = Vec::new();
    let mut page_token = None;
    loop {
        let (page, next) = registry
            .search_models(Search {
                filter: q.filter.clone().unwrap_or_default(),
                max_results: Some(1000),
                order_by: vec!["name ASC".into()],
                page_token,
            })
            .await?;
        out.extend(page);
        match next {
            Some(n) => page_token = Some(n),
            None => break,
        }
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/v1/models/{name}", tag = "models", operation_id = "model_show",
    params(("name" = String, Path, description = "the registered model's name")),
    responses((status = 200, description = "the model, every version (newest first) with its files and lineage, and the history of every alias", body = ModelDetail),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 404, description = "RESOURCE_DOES_NOT_EXIST", body = E)))]
pub(crate) async fn show(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ModelDetail>, ApiError> {
    Ok(Json(s.daemon.registry().model_detail(&name).await?))
}

#[utoipa::path(delete, path = "/api/v1/models/{name}", tag = "models", operation_id = "model_delete",
    params(("name" = String, Path, description = "the registered model's name")),
    responses((status = 204, description = "the model, its versions and aliases are gone; their files are released to the garbage collector"),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 404, description = "RESOURCE_DOES_NOT_EXIST", body = E)))]
pub(crate) async fn delete(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.daemon.registry().delete_model(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new version: from `source` (a run's artifact) or from the files of `upload`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterRequest {
    /// `runs:/<run>/<path>`, `mlflow-artifacts:/<experiment>/<run>/artifacts/<path>` or
    /// `models:/m-<id>` (a logged model).
    #[serde(default)]
    source: Option<String>,
    /// The id the files were uploaded under (`PUT /api/v1/model-uploads/{upload}/{path}`).
    #[serde(default)]
    upload: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[utoipa::path(post, path = "/api/v1/models/{name}/versions", tag = "models", operation_id = "model_register",
    request_body = RegisterRequest,
    params(("name" = String, Path, description = "the registered model's name (made when it is new)")),
    responses((status = 201, description = "the new version, its files checked and stored by content", body = VersionDetail),
              (status = 400, description = "INVALID_PARAMETER_VALUE: neither or both of source and upload, a bad name or source; INVALID_MODEL: the files are broken or do not match their declared format, nothing was registered; MALFORMED_SPEC: the body does not parse", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 404, description = "RESOURCE_DOES_NOT_EXIST: no such run or artifact", body = E)))]
pub(crate) async fn register(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<VersionDetail>), ApiError> {
    let req: RegisterRequest = parse_body(&body.map_err(body_error)?, "the registration")?;
    let tags: Vec<KeyValue> = req
        .tags
        .into_iter()
        .map(|(key, value)| KeyValue { key, value })
        .collect();
    let registry = s.daemon.registry();
    let source = req.source.filter(|x| !x.is_empty());
    let upload = req.upload.filter(|x| !x.is_empty());
    if source.is_some() == upload.is_some() {
        return Err(ApiError::new(
            ErrorCode::InvalidParameterValue,
            "name exactly one of `source` (a run's artifact: runs:/<run>/<path>) and `upload` \
             (files sent with PUT /api/v1/model-uploads/<upload>/<path>)",
        ));
    }
    // A new name makes the model; a taken one adds a version.
    match registry
        .create_model(CreateModel {
            name: name.clone(),
            ..CreateModel::default()
        })
        .await
    {
        Ok(_) | Err(RegistryError::AlreadyExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let made = match (source, upload) {
        (Some(source), _) => {
            let v = registry
                .create_version(
                    petri_daemon::registry::wire::CreateVersion {
                        name: name.clone(),
                        source,
                        tags,
                        description: req.description,
                        ..Default::default()
                    },
                    &caller.user,
                )
                .await?;
            registry
                .version_detail(&name, parse_version(&v.version)?)
                .await?
        }
        (None, Some(upload)) => {
            registry
                .create_version_from_upload(&name, &upload, req.description, tags, &caller.user)
                .await?
        }
        (None, None) => unreachable!("checked above"),
    };
    Ok((StatusCode::CREATED, Json(made)))
}

/// A version by number or by alias (`3`, `champion`, `@champion`).
async fn resolve(s: &AppState, name: &str, version: &str) -> Result<i64, ApiError> {
    let v = version.trim_start_matches('@');
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(parse_version(v)?);
    }
    let found = s.daemon.registry().version_by_alias(name, v).await?;
    Ok(parse_version(&found.version)?)
}

#[utoipa::path(get, path = "/api/v1/models/{name}/versions/{version}", tag = "models", operation_id = "model_version_show",
    params(("name" = String, Path, description = "the registered model's name"),
           ("version" = String, Path, description = "a version number, or an alias (`champion`)")),
    responses((status = 200, description = "the version: format, runtime, files by digest, lineage", body = VersionDetail),
              (status = 400, description = "INVALID_PARAMETER_VALUE: not a version number (1, 2, …) or an alias", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 404, description = "RESOURCE_DOES_NOT_EXIST", body = E)))]
pub(crate) async fn version(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<VersionDetail>, ApiError> {
    let v = resolve(&s, &name, &version).await?;
    Ok(Json(s.daemon.registry().version_detail(&name, v).await?))
}

#[utoipa::path(delete, path = "/api/v1/models/{name}/versions/{version}", tag = "models", operation_id = "model_version_delete",
    params(("name" = String, Path, description = "the registered model's name"),
           ("version" = String, Path, description = "a version number")),
    responses((status = 204, description = "the version is gone, and aliases that pointed at it (each recorded as a move)"),
              (status = 400, description = "INVALID_PARAMETER_VALUE: not a version number", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 404, description = "RESOURCE_DOES_NOT_EXIST", body = E)))]
pub(crate) async fn delete_version(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path((name, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let v = parse_version(&version)?;
    s.daemon
        .registry()
        .delete_version(&name, v, &caller.user)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/models/{name}/versions/{version}/files/{path}", tag = "models", operation_id = "model_file",
    params(("name" = String, Path, description = "the registered model's name"),
           ("version" = String, Path, description = "a version number, or an alias"),
           ("path" = String, Path, description = "the file's path inside the version")),
    responses((status = 200, description = "the file's bytes, checked against their digest as they are sent", content_type = "application/octet-stream"),
              (status = 400, description = "INVALID_PARAMETER_VALUE: not a version number (1, 2, …) or an alias", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 404, description = "RESOURCE_DOES_NOT_EXIST", body = E)))]
pub(crate) async fn file(
    State(s): State<AppState>,
    Path((name, version, path)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let v = resolve(&s, &name, &version).await?;
    let reader = s.daemon.registry().open_file(&name, v, &path).await?;
    Ok(crate::artifacts::stream(reader))
}

/// Where an alias points.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AliasRequest {
    /// The version number the alias points at from now on.
    version: i64,
}

#[utoipa::path(put, path = "/api/v1/models/{name}/aliases/{alias}", tag = "models", operation_id = "model_alias_set",
    request_body = AliasRequest,
    params(("name" = String, Path, description = "the registered model's name"),
           ("alias" = String, Path, description = "the alias: letters, digits, `_`, `-`; not `latest` or `v<n>`")),
    responses((status = 200, description = "the model after the move, with the alias's history", body = ModelDetail),
              (status = 400, description = "INVALID_PARAMETER_VALUE: a bad alias; MALFORMED_SPEC: the body does not parse", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 404, description = "RESOURCE_DOES_NOT_EXIST: no such model or version", body = E)))]
pub(crate) async fn set_alias(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path((name, alias)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ModelDetail>, ApiError> {
    let req: AliasRequest = parse_body(&body.map_err(body_error)?, "the alias")?;
    let registry = s.daemon.registry();
    registry
        .set_alias(&name, &alias, req.version, &caller.user)
        .await?;
    Ok(Json(registry.model_detail(&name).await?))
}

#[utoipa::path(delete, path = "/api/v1/models/{name}/aliases/{alias}", tag = "models", operation_id = "model_alias_delete",
    params(("name" = String, Path, description = "the registered model's name"),
           ("alias" = String, Path, description = "the alias")),
    responses((status = 204, description = "the alias is gone (its history keeps the move)"),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 404, description = "RESOURCE_DOES_NOT_EXIST", body = E)))]
pub(crate) async fn delete_alias(
    State(s): State<AppState>,
    Caller(caller): Caller,
    Path((name, alias)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.daemon
        .registry()
        .delete_alias(&name, &alias, &caller.user)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/api/v1/model-uploads/{upload}/{path}", tag = "models", operation_id = "model_upload",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file's bytes, streamed (no size limit)"),
    params(("upload" = String, Path, description = "the client's id for this set of files: 1 to 64 letters, digits, `-`, `_`"),
           ("path" = String, Path, description = "the file's path inside the version: relative, no `..`")),
    responses((status = 201, description = "kept, by content, until a version names the upload (or for a day)", body = VersionFile),
              (status = 400, description = "INVALID_PARAMETER_VALUE: a bad upload id or a path that leaves the version", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E)))]
pub(crate) async fn upload(
    State(s): State<AppState>,
    Path((upload, path)): Path<(String, String)>,
    body: Body,
) -> Result<(StatusCode, Json<VersionFile>), ApiError> {
    // Hashed into the store's temporary file as it arrives; a cut connection fails the read and
    // the temporary file goes with it.
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    let file = s
        .daemon
        .registry()
        .stage_file(&upload, &path, reader)
        .await?;
    Ok((StatusCode::CREATED, Json(file)))
}
