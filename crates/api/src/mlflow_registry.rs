//! `/api/2.0/mlflow/registered-models/...` and `/model-versions/...`: MLflow's model registry
//! REST API, so the stock client's `register_model`, aliases, searches and `models:/name@alias`
//! loads work unchanged. Reads take query parameters; changes a JSON body (deletes too, as
//! MLflow's client sends them). Errors are MLflow's shape, `{"error_code", "message"}`. Like the
//! tracking routes these are MLflow's API, not in Petri's OpenAPI document; every handler
//! parses, calls the registry, and serialises.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use petri_daemon::registry::wire::{CreateModel, CreateVersion, Search};
use petri_daemon::registry::{RegistryError, parse_version};
use petri_domain::{ErrorBody, ErrorCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Caller;

/// An error as MLflow's server writes it.
#[derive(Debug)]
pub(crate) struct RegistryFailure(ErrorBody);

impl From<RegistryError> for RegistryFailure {
    fn from(e: RegistryError) -> Self {
        if matches!(e, RegistryError::Db { .. } | RegistryError::Task(_)) {
            tracing::error!(error = %e, "a registry call failed inside the daemon");
        }
        RegistryFailure(e.into())
    }
}

impl IntoResponse for RegistryFailure {
    fn into_response(self) -> Response {
        let code = self.0.code;
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // MLflow's client knows only its own codes (any other reads as INTERNAL_ERROR): a
        // refused model is MLflow's INVALID_PARAMETER_VALUE, its message naming Petri's code.
        let (error_code, message) = match code {
            ErrorCode::Internal => ("INTERNAL_ERROR", self.0.message),
            ErrorCode::InvalidModel => (
                "INVALID_PARAMETER_VALUE",
                format!("INVALID_MODEL: {}", self.0.message),
            ),
            other => (other.as_str(), self.0.message),
        };
        (
            status,
            Json(json!({ "error_code": error_code, "message": message })),
        )
            .into_response()
    }
}

fn invalid(message: String) -> RegistryFailure {
    RegistryFailure(ErrorBody::new(ErrorCode::InvalidParameterValue, message))
}

type Answer = Result<Json<Value>, RegistryFailure>;
type Body = Result<Bytes, BytesRejection>;

fn body<T: DeserializeOwned>(b: Body) -> Result<T, RegistryFailure> {
    let bytes = b.map_err(|e| invalid(e.body_text()))?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("the request body is not a valid message: {e}")))
}

/// The query's parameters, repeated ones kept (`order_by`).
fn params(uri: &Uri) -> Result<Vec<(String, String)>, RegistryFailure> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(q)| q)
        .map_err(|e| {
            invalid(format!(
                "the query parameters do not parse: {}",
                e.body_text()
            ))
        })
}

fn param(ps: &[(String, String)], key: &str) -> Option<String> {
    ps.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

fn required(ps: &[(String, String)], key: &str) -> Result<String, RegistryFailure> {
    param(ps, key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid(format!("Missing value for required parameter '{key}'.")))
}

fn search_of(ps: &[(String, String)]) -> Result<Search, RegistryFailure> {
    let max_results = match param(ps, "max_results") {
        None => None,
        Some(m) => Some(
            m.parse()
                .map_err(|_| invalid(format!("Invalid value '{m}' for max_results.")))?,
        ),
    };
    Ok(Search {
        filter: param(ps, "filter").unwrap_or_default(),
        max_results,
        order_by: ps
            .iter()
            .filter(|(k, _)| k == "order_by")
            .map(|(_, v)| v.clone())
            .collect(),
        page_token: param(ps, "page_token"),
    })
}

fn need(v: &str, key: &str) -> Result<(), RegistryFailure> {
    if v.is_empty() {
        return Err(invalid(format!(
            "Missing value for required parameter '{key}'."
        )));
    }
    Ok(())
}

/// MLflow's registry routes, merged into those nested under `/api/2.0/mlflow`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/registered-models/create", post(create_model))
        .route("/registered-models/get", get(get_model))
        .route("/registered-models/rename", post(rename_model))
        .route(
            "/registered-models/update",
            axum::routing::patch(update_model),
        )
        .route(
            "/registered-models/delete",
            axum::routing::delete(delete_model),
        )
        .route("/registered-models/search", get(search_models))
        .route(
            "/registered-models/get-latest-versions",
            post(latest_versions).get(latest_versions_get),
        )
        .route("/registered-models/set-tag", post(set_model_tag))
        .route(
            "/registered-models/delete-tag",
            axum::routing::delete(delete_model_tag),
        )
        .route(
            "/registered-models/alias",
            post(set_alias).delete(delete_alias).get(get_by_alias),
        )
        .route("/model-versions/create", post(create_version))
        .route("/model-versions/get", get(get_version))
        .route(
            "/model-versions/update",
            axum::routing::patch(update_version),
        )
        .route(
            "/model-versions/delete",
            axum::routing::delete(delete_version),
        )
        .route("/model-versions/search", get(search_versions))
        .route("/model-versions/transition-stage", post(transition_stage))
        .route("/model-versions/get-download-uri", get(download_uri))
        .route("/model-versions/set-tag", post(set_version_tag))
        .route(
            "/model-versions/delete-tag",
            axum::routing::delete(delete_version_tag),
        )
}

#[derive(Deserialize)]
struct NameOnly {
    #[serde(default)]
    name: String,
    #[serde(default)]
    new_name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    stages: Vec<String>,
}

#[derive(Deserialize)]
struct Tagged {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: Option<Value>,
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    alias: String,
    #[serde(default)]
    description: Option<String>,
}

/// A version as MLflow sends it: a string, sometimes a number.
fn version_of(v: &Option<Value>) -> Result<i64, RegistryFailure> {
    let text = match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(invalid(
                "Missing value for required parameter 'version'.".into(),
            ));
        }
    };
    Ok(parse_version(&text)?)
}

async fn create_model(State(s): State<AppState>, b: Body) -> Answer {
    let req: CreateModel = body(b)?;
    let m = s.daemon.registry().create_model(req).await?;
    Ok(Json(json!({ "registered_model": m })))
}

async fn get_model(State(s): State<AppState>, uri: Uri) -> Answer {
    let ps = params(&uri)?;
    let m = s
        .daemon
        .registry()
        .get_model(&required(&ps, "name")?)
        .await?;
    Ok(Json(json!({ "registered_model": m })))
}

async fn rename_model(State(s): State<AppState>, b: Body) -> Answer {
    let req: NameOnly = body(b)?;
    need(&req.name, "name")?;
    need(&req.new_name, "new_name")?;
    let m = s
        .daemon
        .registry()
        .rename_model(&req.name, &req.new_name)
        .await?;
    Ok(Json(json!({ "registered_model": m })))
}

async fn update_model(State(s): State<AppState>, b: Body) -> Answer {
    let req: NameOnly = body(b)?;
    need(&req.name, "name")?;
    let m = s
        .daemon
        .registry()
        .update_model(&req.name, req.description.unwrap_or_default())
        .await?;
    Ok(Json(json!({ "registered_model": m })))
}

async fn delete_model(State(s): State<AppState>, b: Body) -> Answer {
    let req: NameOnly = body(b)?;
    need(&req.name, "name")?;
    s.daemon.registry().delete_model(&req.name).await?;
    Ok(Json(json!({})))
}

async fn search_models(State(s): State<AppState>, uri: Uri) -> Answer {
    let search = search_of(&params(&uri)?)?;
    let (models, next) = s.daemon.registry().search_models(search).await?;
    Ok(Json(
        json!({ "registered_models": models, "next_page_token": next }),
    ))
}

async fn latest(s: &AppState, name: &str, stages: &[String]) -> Answer {
    need(name, "name")?;
    let versions = s.daemon.registry().latest_versions(name, stages).await?;
    Ok(Json(json!({ "model_versions": versions })))
}

async fn latest_versions(State(s): State<AppState>, b: Body) -> Answer {
    let req: NameOnly = body(b)?;
    latest(&s, &req.name, &req.stages).await
}

async fn latest_versions_get(State(s): State<AppState>, uri: Uri) -> Answer {
    let ps = params(&uri)?;
    let stages: Vec<String> = ps
        .iter()
        .filter(|(k, _)| k == "stages")
        .map(|(_, v)| v.clone())
        .collect();
    latest(&s, &param(&ps, "name").unwrap_or_default(), &stages).await
}

async fn set_model_tag(State(s): State<AppState>, b: Body) -> Answer {
    let req: Tagged = body(b)?;
    need(&req.name, "name")?;
    s.daemon
        .registry()
        .set_model_tag(&req.name, &req.key, &req.value)
        .await?;
    Ok(Json(json!({})))
}

async fn delete_model_tag(State(s): State<AppState>, b: Body) -> Answer {
    let req: Tagged = body(b)?;
    need(&req.name, "name")?;
    s.daemon
        .registry()
        .delete_model_tag(&req.name, &req.key)
        .await?;
    Ok(Json(json!({})))
}

async fn set_alias(State(s): State<AppState>, Caller(c): Caller, b: Body) -> Answer {
    let req: Tagged = body(b)?;
    need(&req.name, "name")?;
    let v = version_of(&req.version)?;
    s.daemon
        .registry()
        .set_alias(&req.name, &req.alias, v, &c.user)
        .await?;
    Ok(Json(json!({})))
}

async fn delete_alias(State(s): State<AppState>, Caller(c): Caller, b: Body) -> Answer {
    let req: Tagged = body(b)?;
    need(&req.name, "name")?;
    need(&req.alias, "alias")?;
    s.daemon
        .registry()
        .delete_alias(&req.name, &req.alias, &c.user)
        .await?;
    Ok(Json(json!({})))
}

async fn get_by_alias(State(s): State<AppState>, uri: Uri) -> Answer {
    let ps = params(&uri)?;
    let v = s
        .daemon
        .registry()
        .version_by_alias(&required(&ps, "name")?, &required(&ps, "alias")?)
        .await?;
    Ok(Json(json!({ "model_version": v })))
}

async fn create_version(State(s): State<AppState>, Caller(c): Caller, b: Body) -> Answer {
    let mut req: CreateVersion = body(b)?;
    need(&req.name, "name")?;
    need(&req.source, "source")?;
    if let petri_daemon::accounts::Credential::Job(job) = &c.credential {
        req.job = Some(job.to_string());
    }
    let v = s.daemon.registry().create_version(req, &c.user).await?;
    Ok(Json(json!({ "model_version": v })))
}

fn name_version(ps: &[(String, String)]) -> Result<(String, i64), RegistryFailure> {
    let name = required(ps, "name")?;
    let v = parse_version(&required(ps, "version")?)?;
    Ok((name, v))
}

async fn get_version(State(s): State<AppState>, uri: Uri) -> Answer {
    let (name, v) = name_version(&params(&uri)?)?;
    let mv = s.daemon.registry().get_version(&name, v).await?;
    Ok(Json(json!({ "model_version": mv })))
}

async fn update_version(State(s): State<AppState>, b: Body) -> Answer {
    let req: Tagged = body(b)?;
    need(&req.name, "name")?;
    let v = version_of(&req.version)?;
    let mv = s
        .daemon
        .registry()
        .update_version(&req.name, v, req.description.unwrap_or_default())
        .await?;
    Ok(Json(json!({ "model_version": mv })))
}

/// `transition-stage`: `{name, version, stage, archive_existing_versions}`.
#[derive(Deserialize)]
struct Transition {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: Option<Value>,
    #[serde(default)]
    stage: String,
    #[serde(default)]
    archive_existing_versions: bool,
}

async fn transition_stage(State(s): State<AppState>, b: Body) -> Answer {
    let req: Transition = body(b)?;
    need(&req.name, "name")?;
    need(&req.stage, "stage")?;
    let v = version_of(&req.version)?;
    let mv = s
        .daemon
        .registry()
        .transition_stage(&req.name, v, &req.stage, req.archive_existing_versions)
        .await?;
    Ok(Json(json!({ "model_version": mv })))
}

async fn delete_version(State(s): State<AppState>, Caller(c): Caller, b: Body) -> Answer {
    let req: Tagged = body(b)?;
    need(&req.name, "name")?;
    let v = version_of(&req.version)?;
    s.daemon
        .registry()
        .delete_version(&req.name, v, &c.user)
        .await?;
    Ok(Json(json!({})))
}

async fn search_versions(State(s): State<AppState>, uri: Uri) -> Answer {
    let search = search_of(&params(&uri)?)?;
    let (versions, next) = s.daemon.registry().search_versions(search).await?;
    Ok(Json(
        json!({ "model_versions": versions, "next_page_token": next }),
    ))
}

async fn download_uri(State(s): State<AppState>, uri: Uri) -> Answer {
    let (name, v) = name_version(&params(&uri)?)?;
    let at = s.daemon.registry().download_uri(&name, v).await?;
    Ok(Json(json!({ "artifact_uri": at })))
}

async fn set_version_tag(State(s): State<AppState>, b: Body) -> Answer {
    let req: Tagged = body(b)?;
    need(&req.name, "name")?;
    let v = version_of(&req.version)?;
    s.daemon
        .registry()
        .set_version_tag(&req.name, v, &req.key, &req.value)
        .await?;
    Ok(Json(json!({})))
}

async fn delete_version_tag(State(s): State<AppState>, b: Body) -> Answer {
    let req: Tagged = body(b)?;
    need(&req.name, "name")?;
    let v = version_of(&req.version)?;
    s.daemon
        .registry()
        .delete_version_tag(&req.name, v, &req.key)
        .await?;
    Ok(Json(json!({})))
}
