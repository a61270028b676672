use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use petri_daemon::DaemonError;
use petri_daemon::accounts::AccountsError;
use petri_domain::{ErrorBody, ErrorCode};
use petri_queue::QueueError;

/// Every error response: `{code, message, details}` with the status from `ErrorCode::http_status`.
#[derive(Debug)]
pub struct ApiError(pub ErrorBody);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError(ErrorBody::new(code, message))
    }
}

impl From<DaemonError> for ApiError {
    fn from(e: DaemonError) -> Self {
        if !matches!(e, DaemonError::Queue(QueueError::Refused(_))) {
            tracing::error!(error = %e, "request failed inside the daemon");
        }
        ApiError(e.into())
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        if matches!(e, QueueError::Store(_) | QueueError::Io(_)) {
            tracing::error!(error = %e, "request failed inside the daemon");
        }
        ApiError(e.into())
    }
}

impl From<AccountsError> for ApiError {
    fn from(e: AccountsError) -> Self {
        if !matches!(e, AccountsError::Refused(_)) {
            tracing::error!(error = %e, "request failed inside the daemon");
        }
        ApiError(e.into())
    }
}

/// Parses a JSON body into an input type; a mistyped field gets a suggestion.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedSpec,
            format!(
                "{what} does not parse: {}",
                petri_domain::did_you_mean(&e.to_string())
            ),
        )
    })
}

impl From<ErrorBody> for ApiError {
    fn from(b: ErrorBody) -> Self {
        ApiError(b)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // A refused change says why in the audit log too.
        let note = crate::auth::AuditNote(self.0.message.clone());
        let mut answer = (status, Json(self.0)).into_response();
        answer.extensions_mut().insert(note);
        answer
    }
}

/// A handler that panicked answers 500 with the usual error body; the daemon carries on.
pub(crate) fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked; answered 500");
    ApiError::new(
        ErrorCode::Internal,
        "Petri hit a bug while answering; nothing was changed. Please report it with the daemon log.",
    )
    .into_response()
}
