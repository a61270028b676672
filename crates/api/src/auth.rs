//! Who is calling, and whether they may: every route but `/healthz` goes through
//! [`require_token`], loopback included. It authenticates the caller (over the Unix socket, the
//! peer's uid from the kernel; elsewhere a bearer token: the owner's, an API token, a job's),
//! decides the route with `petri_accounts::authorize` from the action its method and path stand
//! for ([`action_of`]), hands the [`Caller`] on to the handler as a value, and appends every
//! change to the audit log. A handler whose resource has an owner asks [`allow`] again with it.

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use petri_daemon::accounts::{self, Action, Resource};
use petri_domain::{ErrorBody, ErrorCode};

use crate::AppState;
use crate::error::ApiError;

/// The caller of a request, as the auth layer found it. Handlers take it as an argument.
#[derive(Clone, Debug)]
pub struct Caller(pub accounts::Caller);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "this route needs a token"))
    }
}

/// Whether `caller` may do `action` to a thing of `user`'s (`what` names it in a refusal).
pub(crate) fn allow(
    caller: &accounts::Caller,
    action: Action,
    user: &str,
    what: &str,
) -> Result<(), ApiError> {
    accounts::authorize(caller, action, Resource::Owned { user, what }).map_err(ApiError)
}

/// Who is at the other end of the Unix socket, as the kernel says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SocketPeer {
    pub uid: Option<u32>,
}

impl Connected<axum::serve::IncomingStream<'_, tokio::net::UnixListener>> for SocketPeer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        SocketPeer {
            uid: stream.io().peer_cred().ok().map(|c| c.uid()),
        }
    }
}

/// Where a TCP (or TLS) caller called from, for the audit log.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TcpPeer(pub std::net::SocketAddr);

impl Connected<axum::serve::IncomingStream<'_, crate::NoDelay>> for TcpPeer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::NoDelay>) -> Self {
        TcpPeer(*stream.remote_addr())
    }
}

impl Connected<axum::serve::IncomingStream<'_, crate::tls::TlsListener>> for TcpPeer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        TcpPeer(*stream.remote_addr())
    }
}

/// What a request does, by its method and path: reading is `read`, managing one's API tokens
/// is `tokens`, users, quotas, the audit log, image builds and garbage collection are `admin`,
/// the tracking API's changes are `track` and its reads `track-read`, every other change is
/// `submit`.
pub(crate) fn action_of(method: &Method, path: &str) -> Action {
    let reads = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if path.starts_with("/api/v1/tokens") {
        Action::Tokens
    } else if path == "/api/v1/gc"
        || path == "/api/v1/images/build"
        || path.starts_with("/api/v1/audit")
        || path.starts_with("/api/v1/quotas")
        || (path.starts_with("/api/v1/users") && !reads)
    {
        Action::Admin
    } else if path.starts_with("/api/2.0/mlflow") || path.starts_with("/api/3.0/mlflow") {
        // Reading (gets, searches, downloads) is for anyone who may read or track; changing is
        // tracking, a member's or a job's.
        if reads || path.ends_with("/search") {
            Action::TrackRead
        } else {
            Action::Track
        }
    } else if inference(path) {
        // Inference changes nothing: any valid token may ask a served model.
        Action::Read
    } else if path.starts_with("/api/v1/secrets") {
        // A listing holds names, never a value; setting or removing a secret is as much as
        // running a job with it.
        if reads { Action::Read } else { Action::Submit }
    } else if reads {
        Action::Read
    } else {
        Action::Submit
    }
}

/// The inference protocols' routes (`/v2`, `/v2/…`).
fn inference(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// A refused request's answer. The MLflow routes add MLflow's `error_code` (`UNAUTHENTICATED`,
/// `PERMISSION_DENIED`) beside Petri's `code`, so the stock client names the refusal.
fn refusal(path: &str, body: ErrorBody) -> Response {
    if inference(path) {
        // The inference protocols' error shape, with Petri's code beside it.
        let status =
            StatusCode::from_u16(body.code.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
        let answer = serde_json::json!({ "error": body.message, "code": body.code });
        return (status, axum::Json(answer)).into_response();
    }
    if !path.starts_with("/api/2.0/mlflow") {
        return ApiError(body).into_response();
    }
    let status = StatusCode::from_u16(body.code.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let error_code = match body.code {
        ErrorCode::Unauthorized => "UNAUTHENTICATED",
        ErrorCode::Forbidden => "PERMISSION_DENIED",
        other => other.as_str(),
    };
    let answer = serde_json::json!({
        "error_code": error_code,
        "code": body.code,
        "message": body.message,
    });
    (status, axum::Json(answer)).into_response()
}

/// A note a handler leaves on its answer for the audit log (what it did, in words).
#[derive(Clone, Debug)]
pub(crate) struct AuditNote(pub String);

/// What a change is called in the audit log, and what it was done to; `None` for what is not
/// audited (reads, and the tracking API's stream of metrics and parameters from jobs).
pub(crate) fn audited(method: &Method, path: &str) -> Option<(String, String)> {
    // Inference changes nothing, and is most of the traffic: it returns before any parsing.
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || inference(path) {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let parts: Vec<&str> = decoded.trim_matches('/').split('/').collect();
    let verb = |m: &Method| match *m {
        Method::PUT => "set",
        Method::DELETE => "remove",
        Method::PATCH => "update",
        _ => "create",
    };
    let named = |what: &str, rest: &[&str]| format!("{what} {}", rest.join("/"));
    let (action, target) = match parts.as_slice() {
        ["api", "v1", "pipelines", "validate"] => return None,
        ["api", "v1", "model-uploads", ..] => return None,
        ["api", "v1", "jobs"] => ("job.submit".into(), "jobs".into()),
        ["api", "v1", "jobs", id, act] => (format!("job.{act}"), format!("job {id}")),
        ["api", "v1", "notebooks"] => ("notebook.start".into(), "notebooks".into()),
        ["api", "v1", "notebooks", name] => ("notebook.remove".into(), format!("notebook {name}")),
        ["api", "v1", "notebooks", name, act] => {
            (format!("notebook.{act}"), format!("notebook {name}"))
        }
        ["api", "v1", "images", "build"] => ("image.build".into(), "images".into()),
        ["api", "v1", "tokens"] => ("token.create".into(), "tokens".into()),
        ["api", "v1", "tokens", t] => ("token.revoke".into(), format!("token {t}")),
        ["api", "v1", "secrets", n] => (format!("secret.{}", verb(method)), format!("secret {n}")),
        ["api", "v1", "clusters"] => ("cluster.add".into(), "clusters".into()),
        ["api", "v1", "clusters", n] => ("cluster.remove".into(), format!("cluster {n}")),
        ["api", "v1", "users", n] => ("user.role".into(), format!("user {n}")),
        ["api", "v1", "quotas", n] => ("quota.set".into(), format!("quota {n}")),
        ["api", "v1", "gc"] => ("gc".into(), "home".into()),
        ["api", "v1", "pipelines", n] => (
            format!("pipeline.{}", verb(method)),
            format!("pipeline {n}"),
        ),
        ["api", "v1", "pipelines", n, act] => (format!("pipeline.{act}"), format!("pipeline {n}")),
        ["api", "v1", "pipeline-runs"] => ("pipeline.run".into(), "pipeline runs".into()),
        ["api", "v1", "pipeline-runs", id, act] => {
            (format!("pipeline-run.{act}"), format!("pipeline run {id}"))
        }
        ["api", "v1", "models", name, "versions"] => {
            ("model.register".into(), format!("model {name}"))
        }
        ["api", "v1", "models", rest @ ..] => {
            (format!("model.{}", verb(method)), named("model", rest))
        }
        ["api", "v1", "deployments"] => ("deployment.create".into(), "deployments".into()),
        ["api", "v1", "deployments", n] => ("deployment.remove".into(), format!("deployment {n}")),
        // The tracking API: what a person does to experiments and the registry, not each
        // metric a job logs.
        [
            "api",
            "2.0" | "3.0",
            "mlflow",
            "runs" | "metrics" | "logged-models" | "traces",
            ..,
        ] => {
            return None;
        }
        ["api", "2.0" | "3.0", "mlflow", rest @ ..] => {
            (format!("mlflow.{}", rest.join(".")), "mlflow".into())
        }
        _ => (
            format!("{} {path}", method.as_str().to_lowercase()),
            path.to_string(),
        ),
    };
    Some((action, target))
}

/// Appends one change to the audit log, off the async threads.
fn record(
    state: &AppState,
    who: (String, String),
    what: (String, String),
    status: u16,
    detail: String,
) {
    let accounts = state.daemon.accounts().clone();
    let record = accounts::AuditRecord {
        user: who.0,
        origin: who.1,
        action: what.0,
        target: what.1,
        status: Some(status),
        detail,
    };
    tokio::task::spawn_blocking(move || accounts.record(record));
}

/// Authenticates and authorizes every request of the API's router.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let accounts = state.daemon.accounts();
    let token = bearer(&req);
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketPeer>>()
        .map(|ConnectInfo(p)| *p);
    // The owner (the CLI, the desktop window) and a recently seen API token need no database
    // read.
    let owner = token.and_then(|t| accounts.known(t));
    let caller = match (owner, token, peer) {
        (Some(owner), _, _) => Ok(owner),
        (None, Some(token), _) => {
            let (accounts, token) = (accounts.clone(), token.to_string());
            tokio::task::spawn_blocking(move || accounts.authenticate(&token))
                .await
                .unwrap_or_else(|e| Err(ErrorBody::new(ErrorCode::Internal, e.to_string())))
        }
        // Over the socket, no token: the kernel says who calls.
        (None, None, Some(SocketPeer { uid: Some(uid) })) => {
            let accounts = accounts.clone();
            tokio::task::spawn_blocking(move || accounts.peer(uid))
                .await
                .unwrap_or_else(|e| Err(ErrorBody::new(ErrorCode::Internal, e.to_string())))
        }
        (None, None, _) => Err(ErrorBody::new(
            ErrorCode::Unauthorized,
            "missing token: send `Authorization: Bearer <token>`; the owner's token is in the \
             file `token` in the Petri home, others come from `petri token create` (on this \
             machine, the CLI needs none: it speaks over the daemon's socket)",
        )),
    };
    let caller = match caller {
        Ok(caller) => caller,
        Err(_) if req.uri().path() == "/" => {
            // The web UI is its own sign-in page: it asks for the token and sends it on every call.
            return (StatusCode::UNAUTHORIZED, Html(crate::system::UI_PAGE)).into_response();
        }
        Err(body) => return refusal(req.uri().path(), body),
    };
    // A job's token lives as long as its job, and acts for the job's user.
    let mut caller = caller;
    if let accounts::Credential::Job(job) = &caller.credential {
        let found = state.daemon.queue().stored_job(*job).await;
        let ended = match &found {
            Ok(j) => j
                .state
                .is_terminal()
                .then(|| format!("job {} has ended", j.number)),
            Err(_) => Some(format!("job {job} is not in the queue")),
        };
        if let Some(why) = ended {
            let body = ErrorBody::new(
                ErrorCode::Unauthorized,
                format!("{why}: its token is no longer valid"),
            );
            return refusal(req.uri().path(), body);
        }
        if let Ok(j) = found
            && !j.user.is_empty()
        {
            caller.user = j.user;
        }
    }
    let path = req.uri().path();
    // Who did it and what, for the audit log: only a change is recorded, and only then is
    // anything written out for it (reads are most requests).
    let change = audited(req.method(), path).map(|what| {
        let from = req
            .extensions()
            .get::<ConnectInfo<TcpPeer>>()
            .map(|ConnectInfo(TcpPeer(a))| format!(" from {}", a.ip()))
            .unwrap_or_default();
        let who = (caller.user.clone(), format!("{}{from}", caller.origin()));
        (who, what)
    });
    let action = action_of(req.method(), path);
    if let Err(body) = accounts::authorize(&caller, action, Resource::System) {
        if let Some((who, what)) = change {
            let status = body.code.http_status();
            record(&state, who, what, status, body.message.clone());
        }
        return refusal(path, body);
    }
    req.extensions_mut().insert(Caller(caller));
    let response = next.run(req).await;
    if let Some((who, what)) = change {
        let detail = response
            .extensions()
            .get::<AuditNote>()
            .map(|n| n.0.clone())
            .unwrap_or_default();
        record(&state, who, what, response.status().as_u16(), detail);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_actions() {
        assert_eq!(action_of(&Method::GET, "/api/v1/jobs"), Action::Read);
        assert_eq!(action_of(&Method::POST, "/api/v1/jobs"), Action::Submit);
        assert_eq!(
            action_of(&Method::POST, "/api/v1/jobs/1/cancel"),
            Action::Submit
        );
        assert_eq!(action_of(&Method::GET, "/api/v1/tokens"), Action::Tokens);
        assert_eq!(
            action_of(&Method::DELETE, "/api/v1/tokens/x"),
            Action::Tokens
        );
        assert_eq!(action_of(&Method::GET, "/api/v1/users"), Action::Read);
        assert_eq!(action_of(&Method::PUT, "/api/v1/users/ann"), Action::Admin);
        assert_eq!(
            action_of(&Method::PUT, "/api/v1/quotas/group:ml"),
            Action::Admin
        );
        assert_eq!(action_of(&Method::GET, "/api/v1/audit"), Action::Admin);
        assert_eq!(
            action_of(&Method::POST, "/api/v1/images/build"),
            Action::Admin
        );
        assert_eq!(action_of(&Method::GET, "/metrics"), Action::Read);
        // Secrets: listed with `read` (names only), set and removed with `submit` (a job may
        // run with them).
        assert_eq!(action_of(&Method::GET, "/api/v1/secrets"), Action::Read);
        assert_eq!(
            action_of(&Method::PUT, "/api/v1/secrets/HF_TOKEN"),
            Action::Submit
        );
        assert_eq!(
            action_of(&Method::DELETE, "/api/v1/secrets/HF_TOKEN"),
            Action::Submit
        );
        assert_eq!(action_of(&Method::POST, "/api/v1/gc"), Action::Admin);
        // The MLflow API: changes are tracking (a job's tracking-only token, a member); reads are
        // for a tracking token or anyone who may read (a viewer's dashboards).
        for (method, path) in [
            (Method::POST, "/api/2.0/mlflow/runs/log-batch"),
            (Method::POST, "/api/2.0/mlflow/experiments/create"),
            (
                Method::PUT,
                "/api/2.0/mlflow-artifacts/artifacts/1/a/model.json",
            ),
        ] {
            assert_eq!(action_of(&method, path), Action::Track, "{method} {path}");
        }
        for (method, path) in [
            (Method::GET, "/api/2.0/mlflow/runs/get"),
            (Method::GET, "/api/2.0/mlflow/metrics/get-history"),
            (Method::POST, "/api/2.0/mlflow/runs/search"),
            (Method::GET, "/api/2.0/mlflow-artifacts/artifacts"),
        ] {
            assert_eq!(
                action_of(&method, path),
                Action::TrackRead,
                "{method} {path}"
            );
        }
        assert_eq!(
            action_of(&Method::GET, "/api/v1/artifacts/usage"),
            Action::Read
        );
        assert_eq!(
            action_of(&Method::GET, "/api/v1/artifacts/sha256:00"),
            Action::Read
        );
    }

    #[test]
    fn changes_are_named_for_the_audit_log() {
        let a = |m: Method, p: &str| audited(&m, p).map(|(a, t)| format!("{a} | {t}"));
        assert_eq!(a(Method::GET, "/api/v1/jobs"), None);
        assert_eq!(
            a(Method::POST, "/api/v1/jobs").unwrap(),
            "job.submit | jobs"
        );
        assert_eq!(
            a(Method::POST, "/api/v1/jobs/7/cancel").unwrap(),
            "job.cancel | job 7"
        );
        assert_eq!(
            a(Method::POST, "/api/v1/notebooks/lab/open").unwrap(),
            "notebook.open | notebook lab"
        );
        assert_eq!(
            a(Method::DELETE, "/api/v1/tokens/ci").unwrap(),
            "token.revoke | token ci"
        );
        assert_eq!(
            a(Method::PUT, "/api/v1/users/ann").unwrap(),
            "user.role | user ann"
        );
        assert_eq!(
            a(Method::PUT, "/api/v1/secrets/HF").unwrap(),
            "secret.set | secret HF"
        );
        assert_eq!(a(Method::POST, "/api/2.0/mlflow/runs/log-metric"), None);
        assert_eq!(
            a(Method::POST, "/api/2.0/mlflow/registered-models/create").unwrap(),
            "mlflow.registered-models.create | mlflow"
        );
    }
}
