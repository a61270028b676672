//! `petri model-server`: the process a deployment's replica runs (a service job). It loads one
//! version with `petri-ml`, batches requests (`petri-serving`), and answers the Open Inference
//! Protocol v2 and MLflow's `/invocations` on a loopback port. Every route but the health checks
//! needs the replica's key (`PETRI_MODEL_KEY`, derived by the daemon and given at launch), which
//! the daemon adds when it forwards a request: nothing reaches a replica around Petri's tokens.
//! SIGTERM stops it after the requests it holds are answered.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use petri_daemon::serving::batch::{self, BatchLimits};
use petri_daemon::serving::deploy::{BATCH_PATH, ROWS_HEADER};
use petri_daemon::serving::server::{ModelServer, Refusal};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::serving::protocol_error;

/// The rows of the batch a request ran in, for the daemon's metrics.
pub(crate) const BATCH_HEADER: HeaderName = HeaderName::from_static("petri-batch-rows");

/// What `petri model-server` is told.
#[derive(Clone, Debug)]
pub struct ModelServerOptions {
    pub model: PathBuf,
    pub name: String,
    pub version: String,
    pub listen: SocketAddr,
    pub max_batch: usize,
    pub max_delay: Duration,
}

#[derive(Clone)]
struct Served {
    server: Arc<ModelServer>,
    key: Arc<String>,
}

/// Serves the model until SIGTERM or SIGINT.
pub async fn run(o: ModelServerOptions) -> Result<(), String> {
    let key = std::env::var(petri_daemon::serving::deploy::KEY_ENV).map_err(|_| {
        format!(
            "{} is not set: a model server is started by the daemon (`petri model serve`)",
            petri_daemon::serving::deploy::KEY_ENV
        )
    })?;
    let limits = BatchLimits {
        max_batch: o.max_batch.max(1),
        max_delay: o.max_delay,
    };
    let (device, not_the_gpu) = batch::reserved_device();
    let server = ModelServer::load(&o.name, &o.version, &o.model, &device, limits)
        .map_err(|e| format!("loading {}: {e}", o.model.display()))?;
    let state = Served {
        server: Arc::new(server),
        key: Arc::new(key),
    };
    let keyed = Router::new()
        .route("/v2/models/{name}", get(metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/invocations", post(invocations))
        .route(
            BATCH_PATH,
            post(batch).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/metrics", get(metrics))
        .route("/v2/health/ready", get(health))
        .layer(axum::middleware::from_fn_with_state(state.clone(), keyed));
    let app = Router::new()
        .route("/v2/health/live", get(health))
        .route("/ping", get(health))
        .merge(keyed)
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(o.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", o.listen))?;
    let on = if device.is_cuda() {
        "the GPU"
    } else {
        "the CPU"
    };
    let wait = if limits.max_delay.is_zero() {
        "no wait".to_string()
    } else {
        format!("a {:?} wait", limits.max_delay)
    };
    eprintln!(
        "petri model-server: {} version {} on {}, computing on {on} (batches of up to {} rows, \
         {wait})",
        o.name, o.version, o.listen, limits.max_batch
    );
    if let Some(why) = not_the_gpu {
        eprintln!("petri model-server: computing on the CPU: {why}");
    }
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped())
        .await
        .map_err(|e| e.to_string())
}

async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn keyed(State(s): State<Served>, req: Request, next: Next) -> Response {
    let sent = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if sent.len() != s.key.len() || !bool::from(sent.as_bytes().ct_eq(s.key.as_bytes())) {
        return protocol_error(
            StatusCode::UNAUTHORIZED,
            "call this model through the Petri daemon (/v2/models/{name}/…), with a Petri token",
        );
    }
    next.run(req).await
}

async fn health() -> Response {
    axum::Json(json!({ "live": true, "ready": true })).into_response()
}

/// A 404 when `name` is not the model this server serves.
fn other_model(s: &Served, name: &str) -> Option<Response> {
    (name != s.server.name).then(|| {
        protocol_error(
            StatusCode::NOT_FOUND,
            format!("this server serves `{}`, not `{name}`", s.server.name),
        )
    })
}

async fn metadata(State(s): State<Served>, Path(name): Path<String>) -> Response {
    if let Some(r) = other_model(&s, &name) {
        return r;
    }
    axum::Json(s.server.metadata()).into_response()
}

async fn model_ready(State(s): State<Served>, Path(name): Path<String>) -> Response {
    if let Some(r) = other_model(&s, &name) {
        return r;
    }
    axum::Json(json!({ "name": name, "ready": true })).into_response()
}

fn refused(e: Refusal) -> Response {
    match e {
        Refusal::Bad(m) => protocol_error(StatusCode::BAD_REQUEST, m),
        Refusal::Failed(m) => protocol_error(StatusCode::INTERNAL_SERVER_ERROR, m),
        Refusal::Unavailable(m) => protocol_error(StatusCode::SERVICE_UNAVAILABLE, m),
    }
}

/// A body the server would not take whole (over its limit), in the protocol's shape.
pub(crate) fn rejected(e: BytesRejection) -> Response {
    protocol_error(e.status(), e.body_text())
}

/// The binary data extension's header: the length of the JSON before the tensors' bytes.
const HEADER_LENGTH: HeaderName = HeaderName::from_static("inference-header-content-length");

/// The binary data extension's JSON length a request declares (none without the header), or
/// the protocol's 400 when it is not a number.
pub(crate) fn header_length(headers: &HeaderMap) -> Result<Option<usize>, Box<Response>> {
    match headers
        .get(HEADER_LENGTH)
        .map(|v| v.to_str().map(str::parse))
    {
        None => Ok(None),
        Some(Ok(Ok(n))) => Ok(Some(n)),
        Some(_) => Err(Box::new(protocol_error(
            StatusCode::BAD_REQUEST,
            format!("{HEADER_LENGTH} must be a number of bytes"),
        ))),
    }
}

async fn infer(
    State(s): State<Served>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Some(r) = other_model(&s, &name) {
        return r;
    }
    let header_len = match header_length(&headers) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    match body {
        Ok(body) => answer_infer(&s.server, header_len, body).await.0,
        Err(e) => rejected(e),
    }
}

/// Answers an OIP infer request with `server` (here, or in the daemon's front); and the rows of
/// the batch it ran in.
pub(crate) async fn answer_infer(
    server: &ModelServer,
    header_len: Option<usize>,
    body: Bytes,
) -> (Response, Option<usize>) {
    match server.infer(&body, header_len).await {
        Ok((answer, binary_header, batch)) => {
            let kind = if binary_header.is_some() {
                "application/octet-stream"
            } else {
                "application/json"
            };
            let mut resp = answer.into_response();
            let headers = resp.headers_mut();
            headers.insert(BATCH_HEADER, HeaderValue::from(batch));
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
            if let Some(n) = binary_header {
                headers.insert(HEADER_LENGTH, HeaderValue::from(n));
            }
            (resp, Some(batch))
        }
        Err(e) => (refused(e), None),
    }
}

/// Answers MLflow's scoring request with `server`; and the rows of the batch it ran in.
pub(crate) async fn answer_scoring(server: &ModelServer, body: Bytes) -> (Response, Option<usize>) {
    match server.score(&body).await {
        Ok((answer, batch)) => (
            ([(BATCH_HEADER, batch.to_string())], axum::Json(answer)).into_response(),
            Some(batch),
        ),
        Err(e) => (refused(e), None),
    }
}

/// `POST /v2/batch`: feature vectors the daemon's front featurized and batched; their
/// probabilities, as f32 values row after row.
async fn batch(
    State(s): State<Served>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return rejected(e),
    };
    let rows: Option<usize> = headers
        .get(ROWS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let (Some(rows), Some(features)) = (rows, batch::from_bytes(&body)) else {
        return protocol_error(
            StatusCode::BAD_REQUEST,
            format!("a batch is {ROWS_HEADER}: N and N rows of f32 features"),
        );
    };
    match s.server.run_batch(features, rows).await {
        Ok(p) => (
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            batch::to_bytes(&p),
        )
            .into_response(),
        Err(e) => refused(e),
    }
}

async fn invocations(State(s): State<Served>, body: Result<Bytes, BytesRejection>) -> Response {
    match body {
        Ok(body) => answer_scoring(&s.server, body).await.0,
        Err(e) => rejected(e),
    }
}

/// The replica's counters, in Prometheus' text format.
async fn metrics(State(s): State<Served>) -> Response {
    let c = &s.server.counters;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let body = format!(
        "petri_model_requests_total {}\npetri_model_refused_total {}\npetri_model_rows_total {}\n\
         petri_model_batches_total {}\npetri_model_batch_rows_total {}\n\
         petri_model_latency_seconds_sum {}\n",
        get(&c.requests),
        get(&c.refused),
        get(&c.rows),
        get(&c.batches),
        get(&c.batch_rows),
        get(&c.latency_us) as f64 / 1e6,
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
        .into_response()
}
