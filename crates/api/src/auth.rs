//! Who is calling, and whether they may: every route but `/healthz` goes through
//! [`require_token`], loopback included. It authenticates the bearer token (the owner's, an API
//! token, a job's), decides the route with `petri_accounts::authorize` from the action its method
//! and path stand for ([`action_of`]), and hands the [`Caller`] on to the handler as a value.

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

/// What a request does, by its method and path: reading is `read`, API tokens and garbage
/// collection are `admin`, the tracking API is `track`, every other change is `submit`.
pub(crate) fn action_of(method: &Method, path: &str) -> Action {
    if path.starts_with("/api/v1/tokens") || path == "/api/v1/gc" {
        Action::Admin
    } else if path.starts_with("/api/2.0/mlflow") || path.starts_with("/api/3.0/mlflow") {
        Action::Track
    } else if path == "/v2" || path.starts_with("/v2/") {
        // Inference changes nothing: any valid token may ask a served model.
        Action::Read
    } else if path.starts_with("/api/v1/secrets") {
        // A listing holds names, never a value; setting or removing a secret is as much as
        // running a job with it.
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            Action::Read
        } else {
            Action::Submit
        }
    } else if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        Action::Read
    } else {
        Action::Submit
    }
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
    if path == "/v2" || path.starts_with("/v2/") {
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

/// Authenticates and authorizes every request of the API's router.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let accounts = state.daemon.accounts();
    let token = bearer(&req).map(str::to_string);
    // The owner (the CLI, the desktop window) and a recently seen API token need no database
    // read.
    let owner = token.as_deref().and_then(|t| accounts.known(t));
    let caller = match (owner, token) {
        (Some(owner), _) => Ok(owner),
        (None, Some(token)) => {
            let accounts = accounts.clone();
            tokio::task::spawn_blocking(move || accounts.authenticate(&token))
                .await
                .unwrap_or_else(|e| Err(ErrorBody::new(ErrorCode::Internal, e.to_string())))
        }
        (None, None) => Err(ErrorBody::new(
            ErrorCode::Unauthorized,
            "missing token: send `Authorization: Bearer <token>`; the owner's token is in the \
             file `token` in the Petri home, others come from `petri token create`",
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
    // A job's token lives as long as its job: once the job has ended it is refused.
    if let accounts::Credential::Job(job) = &caller.credential {
        let ended = match state.daemon.queue().get(&job.to_string()).await {
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
    }
    let action = action_of(req.method(), req.uri().path());
    if let Err(body) = accounts::authorize(&caller, action, Resource::System) {
        return refusal(req.uri().path(), body);
    }
    req.extensions_mut().insert(Caller(caller));
    next.run(req).await
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
        assert_eq!(action_of(&Method::GET, "/api/v1/tokens"), Action::Admin);
        assert_eq!(
            action_of(&Method::DELETE, "/api/v1/tokens/x"),
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
        // The MLflow API, reads and changes alike, is tracking: a job's tracking-only token
        // may use it, and nothing else.
        for (method, path) in [
            (Method::GET, "/api/2.0/mlflow/runs/get"),
            (Method::POST, "/api/2.0/mlflow/runs/log-batch"),
            (Method::POST, "/api/2.0/mlflow/experiments/create"),
            (Method::GET, "/api/2.0/mlflow/metrics/get-history"),
        ] {
            assert_eq!(action_of(&method, path), Action::Track, "{method} {path}");
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
}
