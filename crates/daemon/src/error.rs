use petri_domain::{ErrorBody, ErrorCode};

/// Failures of the daemon's services. Every variant maps to a stable [`ErrorCode`].
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Refused input; the body says why and what to do.
    #[error("{0}")]
    Refused(ErrorBody),
    #[error(transparent)]
    Store(#[from] petri_store::StoreError),
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Io(String),
}

impl DaemonError {
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        DaemonError::Refused(ErrorBody::new(code, message))
    }
}

impl From<DaemonError> for ErrorBody {
    fn from(e: DaemonError) -> Self {
        match e {
            DaemonError::Refused(body) => body,
            DaemonError::ShuttingDown => ErrorBody::new(ErrorCode::Unavailable, e.to_string()),
            DaemonError::Store(_) | DaemonError::Io(_) => {
                ErrorBody::new(ErrorCode::Internal, e.to_string())
            }
        }
    }
}
