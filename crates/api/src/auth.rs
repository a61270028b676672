//! Bearer tokens on every route but `/healthz`, loopback included.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use petri_domain::ErrorCode;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;

pub(crate) async fn require_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = given.is_some_and(|t| {
        let expected = state.daemon.token().as_bytes();
        t.len() == expected.len() && bool::from(t.as_bytes().ct_eq(expected))
    });
    if ok {
        return next.run(req).await;
    }
    if req.uri().path() == "/" {
        // The web UI is its own sign-in page: it asks for the token and sends it on every call.
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            Html(crate::system::UI_PAGE),
        )
            .into_response();
    }
    ApiError::new(
        ErrorCode::Unauthorized,
        "missing or wrong token: send `Authorization: Bearer <token>`; the owner's token is in \
         the file `token` in the Petri home",
    )
    .into_response()
}
