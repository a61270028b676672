//! Serving on the daemon's address: `/api/v1/deployments` (serve, list, show, unserve) and the
//! inference routes, behind Petri's tokens. The Open Inference Protocol v2 (`/v2/health/*`,
//! `/v2/models/{name}[/versions/{v}][/ready|/infer]`) and MLflow's scoring protocol
//! (`/v2/models/{name}/invocations`) are forwarded to a ready replica of the deployment, in
//! turn, with the replica's own key; errors on these routes are the protocol's `{"error": …}`.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use petri_daemon::serving::{Deployment, DeploymentStats, ServeRequest, ServingError};
use serde_json::json;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, parse_body};
use crate::jobs::body_error;

type E = petri_domain::ErrorBody;

impl From<ServingError> for ApiError {
    fn from(e: ServingError) -> Self {
        if matches!(e, ServingError::Db { .. } | ServingError::Io(_)) {
            tracing::error!(error = %e, "a serving call failed inside the daemon");
        }
        ApiError(e.into())
    }
}

#[utoipa::path(get, path = "/api/v1/deployments", tag = "serving", operation_id = "deployments_list",
    responses((status = 200, description = "every deployment: model, version, replicas and their states", body = Vec<Deployment>),
              (status = 401, description = "UNAUTHORIZED", body = E)))]
pub(crate) async fn list(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<Deployment>>, ApiError> {
    let mut all = s.daemon.serving().list().await?;
    all.iter_mut().for_each(|d| located(&s, &headers, d));
    Ok(Json(all))
}

/// Fills in where `d` answers, on the address the caller reached the daemon by.
fn located(s: &AppState, headers: &HeaderMap, d: &mut Deployment) {
    d.infer_url = Some(format!(
        "{}{}",
        crate::proxy::api_origin(s, headers),
        d.infer_path
    ));
}

#[utoipa::path(post, path = "/api/v1/deployments", tag = "serving", operation_id = "deployment_serve",
    request_body = ServeRequest,
    responses((status = 201, description = "the deployment, its replicas starting", body = Deployment),
              (status = 400, description = "MALFORMED_SPEC: the body does not parse; INVALID_MODEL: the version cannot be loaded (what is wrong)", body = E),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 404, description = "RESOURCE_DOES_NOT_EXIST: no such model, version or alias", body = E),
              (status = 409, description = "DEPLOYMENT_NAME_TAKEN", body = E),
              (status = 422, description = "INVALID_SPEC: a bad name or limit; UNSUPPORTED_MODEL: a model Petri cannot run (an MLflow flavour, plain files); RESOURCES_UNAVAILABLE", body = E)))]
pub(crate) async fn serve(
    State(s): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Deployment>), ApiError> {
    let req: ServeRequest = parse_body(&body.map_err(body_error)?, "the deployment")?;
    let mut d = s.daemon.serving().serve(req, &caller.user).await?;
    located(&s, &headers, &mut d);
    Ok((StatusCode::CREATED, Json(d)))
}

#[utoipa::path(get, path = "/api/v1/deployments/{name}", tag = "serving", operation_id = "deployment_show",
    params(("name" = String, Path, description = "the deployment's name")),
    responses((status = 200, description = "the deployment", body = Deployment),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 404, description = "DEPLOYMENT_NOT_FOUND", body = E)))]
pub(crate) async fn show(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Deployment>, ApiError> {
    let mut d = s.daemon.serving().get(&name).await?;
    located(&s, &headers, &mut d);
    Ok(Json(d))
}

#[utoipa::path(delete, path = "/api/v1/deployments/{name}", tag = "serving", operation_id = "deployment_unserve",
    params(("name" = String, Path, description = "the deployment's name")),
    responses((status = 200, description = "unserved: its replicas stop after the requests they hold", body = Deployment),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 404, description = "DEPLOYMENT_NOT_FOUND", body = E)))]
pub(crate) async fn unserve(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Deployment>, ApiError> {
    Ok(Json(s.daemon.serving().unserve(&name).await?))
}

#[utoipa::path(get, path = "/api/v1/deployments/{name}/stats", tag = "serving", operation_id = "deployment_stats",
    params(("name" = String, Path, description = "the deployment's name")),
    responses((status = 200, description = "its live traffic: requests per second, latency percentiles, batch sizes, the last minute second by second", body = DeploymentStats),
              (status = 401, description = "UNAUTHORIZED", body = E),
              (status = 404, description = "DEPLOYMENT_NOT_FOUND", body = E)))]
pub(crate) async fn stats(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DeploymentStats>, ApiError> {
    let serving = s.daemon.serving();
    serving.get(&name).await?;
    Ok(Json(serving.stats().summary(&name)))
}

/// An error as the inference protocols write it.
pub(crate) fn protocol_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// `GET /v2/health/live`, `/v2/health/ready`: the daemon answers.
pub(crate) async fn live() -> Json<serde_json::Value> {
    Json(json!({ "live": true }))
}

pub(crate) async fn ready() -> Json<serde_json::Value> {
    Json(json!({ "ready": true }))
}

/// `GET /v2`: the server's metadata.
pub(crate) async fn server_metadata() -> Json<serde_json::Value> {
    Json(json!({
        "name": "petri",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    }))
}

/// Why no replica of deployment `name` takes a request, as the protocol's 404 or 503.
fn not_routed(name: &str, e: ServingError) -> Response {
    match e {
        ServingError::NotFound(_) => protocol_error(
            StatusCode::NOT_FOUND,
            format!("no model `{name}` is served here; see `petri model endpoints`"),
        ),
        e => protocol_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Everything under `/v2/models/{name}`: forwarded to a ready replica. A version in the path
/// must be the one the deployment serves.
pub(crate) async fn forward(State(s): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/v2/models/") else {
        return protocol_error(StatusCode::NOT_FOUND, "no such route");
    };
    let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let serving = s.daemon.serving();
    // A model in Petri's format is read, featurized and batched here; its batches go to the
    // replicas (no request reaches one that is not ready).
    let front = serving.front(name);
    let route = match &front {
        Some(_) => None,
        None => match serving.route(name) {
            Ok(r) => Some(r),
            Err(e) => return not_routed(name, e),
        },
    };
    let serving_version = match (&front, &route) {
        (Some(f), _) => f.version.clone(),
        (None, Some(r)) => r.version.to_string(),
        (None, None) => String::new(),
    };
    // `versions/{v}/…` names the version: it must be the one serving.
    let tail = match tail.strip_prefix("versions/") {
        Some(v) => {
            let (version, after) = v.split_once('/').unwrap_or((v, ""));
            if version != serving_version {
                return protocol_error(
                    StatusCode::NOT_FOUND,
                    format!(
                        "model `{name}` serves version {serving_version}, not version {version}"
                    ),
                );
            }
            after
        }
        None => tail,
    };
    if !matches!(tail, "" | "ready" | "infer" | "invocations") {
        return protocol_error(StatusCode::NOT_FOUND, format!("no such route: {path}"));
    }
    // Only inference is traffic; metadata and readiness asks are not counted.
    let inference = matches!(tail, "infer" | "invocations");
    // The front of a version that was just swapped out answers what it holds; a request it
    // could no longer place is asked again of the new one.
    if inference && let Some(front) = front {
        let header_len = match crate::model_server::header_length(req.headers()) {
            Ok(n) => n,
            Err(r) => {
                let status = r.status().as_u16();
                serving
                    .stats()
                    .record(name, status, Default::default(), None);
                return *r;
            }
        };
        // Within the daemon's body limit (413 beyond it), as every route.
        let body = match <Bytes as axum::extract::FromRequest<()>>::from_request(req, &()).await {
            Ok(b) => b,
            Err(e) => return crate::model_server::rejected(e),
        };
        let began = std::time::Instant::now();
        let mut front = front;
        let (resp, batch) = loop {
            let (resp, batch) = if tail == "infer" {
                crate::model_server::answer_infer(&front, header_len, body.clone()).await
            } else {
                crate::model_server::answer_scoring(&front, body.clone()).await
            };
            if resp.status() == StatusCode::SERVICE_UNAVAILABLE
                && let Some(now) = serving.front(name)
                && !std::sync::Arc::ptr_eq(&now, &front)
            {
                front = now;
                continue;
            }
            break (resp, batch);
        };
        serving.stats().record(
            name,
            resp.status().as_u16(),
            began.elapsed(),
            batch.map(|b| b as u64),
        );
        return resp;
    }
    let route = match route {
        Some(r) => r,
        None => match serving.route(name) {
            Ok(r) => r,
            Err(e) => return not_routed(name, e),
        },
    };
    let target = match tail {
        "invocations" => "/invocations".to_string(),
        "" => format!("/v2/models/{name}"),
        _ => format!("/v2/models/{name}/{tail}"),
    };
    let (mut parts, body) = req.into_parts();
    let uri = format!("http://{}{target}", route.addr);
    parts.uri = match uri.parse() {
        Ok(u) => u,
        Err(e) => return protocol_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    // The caller's Petri token stays here; the replica gets its own key.
    parts.headers.remove(AUTHORIZATION);
    if let Ok(v) = HeaderValue::from_str(&route.authorization) {
        parts.headers.insert(AUTHORIZATION, v);
    }
    parts.headers.remove(axum::http::header::HOST);
    let forwarded = axum::http::Request::from_parts(parts, body);
    let began = std::time::Instant::now();
    match s.proxy.request(forwarded).await {
        Ok(resp) => {
            let batch = resp
                .headers()
                .get(crate::model_server::BATCH_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            if inference {
                serving
                    .stats()
                    .record(name, resp.status().as_u16(), began.elapsed(), batch);
            }
            resp.map(Body::new)
        }
        Err(e) => {
            serving.stats().record(name, 503, began.elapsed(), None);
            // Gone (a crash, a restart): out of the rotation until it answers again.
            serving.unreachable(route.job);
            protocol_error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the replica of `{name}` did not answer ({e}); it is being restarted"),
            )
        }
    }
}
