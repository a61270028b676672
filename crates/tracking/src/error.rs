//! Why a tracking call failed. The three refusals carry MLflow's own error codes, so the stock
//! client raises its usual `MlflowException`.

use petri_domain::{ErrorBody, ErrorCode};

/// A tracking call's failure.
#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    /// No experiment, run or tag has this id, name or key (`RESOURCE_DOES_NOT_EXIST`, 404).
    #[error("{0}")]
    NotFound(String),
    /// The name is taken (`RESOURCE_ALREADY_EXISTS`, 400).
    #[error("{0}")]
    AlreadyExists(String),
    /// A parameter of the request is not acceptable (`INVALID_PARAMETER_VALUE`, 400).
    #[error("{0}")]
    Invalid(String),
    /// The thing is not in a state that allows this (MLflow's `INVALID_STATE`).
    #[error("{0}")]
    State(String),
    /// The tracking database failed.
    #[error("the tracking database {path}: {source}")]
    Db {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The artifact store failed or refused (a blob not there or damaged).
    #[error(transparent)]
    Artifact(#[from] petri_artifacts::ArtifactError),
    /// A blocking task of the tracking store panicked or was cancelled.
    #[error("a tracking task failed: {0}")]
    Task(String),
}

impl TrackingError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        TrackingError::Invalid(msg.into())
    }
    pub(crate) fn not_found(msg: impl Into<String>) -> Self {
        TrackingError::NotFound(msg.into())
    }
}

impl From<TrackingError> for ErrorBody {
    fn from(e: TrackingError) -> Self {
        let code = match &e {
            TrackingError::NotFound(_) => ErrorCode::ResourceDoesNotExist,
            TrackingError::AlreadyExists(_) => ErrorCode::ResourceAlreadyExists,
            TrackingError::Invalid(_) => ErrorCode::InvalidParameterValue,
            TrackingError::State(_) => ErrorCode::InvalidState,
            TrackingError::Artifact(petri_artifacts::ArtifactError::NotFound(_)) => {
                ErrorCode::ResourceDoesNotExist
            }
            TrackingError::Artifact(a) => a.code(),
            TrackingError::Db { .. } | TrackingError::Task(_) => ErrorCode::Internal,
        };
        ErrorBody::new(code, e.to_string())
    }
}

pub type Result<T, E = TrackingError> = std::result::Result<T, E>;
