use petri_domain::{ErrorBody, ErrorCode};

/// Failures of the queue and the capabilities on it. Every variant maps to a stable [`ErrorCode`].
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
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

impl QueueError {
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        QueueError::Refused(ErrorBody::new(code, message))
    }
}

impl From<QueueError> for ErrorBody {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Refused(body) => body,
            QueueError::ShuttingDown => ErrorBody::new(ErrorCode::Unavailable, e.to_string()),
            QueueError::Store(_) | QueueError::Io(_) => {
                ErrorBody::new(ErrorCode::Internal, e.to_string())
            }
        }
    }
}
