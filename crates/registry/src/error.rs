//! Why a registry call failed. The refusals carry MLflow's own error codes, so the stock client
//! raises its usual `MlflowException`; a broken model is `INVALID_MODEL`.

use petri_domain::{ErrorBody, ErrorCode};

/// A registry call's failure.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No registered model, version, alias or tag has this name (`RESOURCE_DOES_NOT_EXIST`).
    #[error("{0}")]
    NotFound(String),
    /// The name is taken (`RESOURCE_ALREADY_EXISTS`).
    #[error("{0}")]
    AlreadyExists(String),
    /// A parameter of the request is not acceptable (`INVALID_PARAMETER_VALUE`).
    #[error("{0}")]
    Invalid(String),
    /// The model's files are broken or do not match their declared format (`INVALID_MODEL`).
    #[error("the model at {source_uri} was refused: {why}")]
    InvalidModel { source_uri: String, why: String },
    /// The registry database failed.
    #[error("the registry database {path}: {source}")]
    Db {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    /// Reading a run's or a logged model's files failed.
    #[error(transparent)]
    Tracking(#[from] petri_tracking::TrackingError),
    /// The artifact store failed or refused (a blob not there or damaged).
    #[error(transparent)]
    Artifact(#[from] petri_artifacts::ArtifactError),
    /// A blocking task of the registry panicked or was cancelled.
    #[error("a registry task failed: {0}")]
    Task(String),
}

impl RegistryError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        RegistryError::Invalid(msg.into())
    }
    pub(crate) fn not_found(msg: impl Into<String>) -> Self {
        RegistryError::NotFound(msg.into())
    }
}

impl From<RegistryError> for ErrorBody {
    fn from(e: RegistryError) -> Self {
        let code = match &e {
            RegistryError::NotFound(_) => ErrorCode::ResourceDoesNotExist,
            RegistryError::AlreadyExists(_) => ErrorCode::ResourceAlreadyExists,
            RegistryError::Invalid(_) => ErrorCode::InvalidParameterValue,
            RegistryError::InvalidModel { .. } => ErrorCode::InvalidModel,
            RegistryError::Tracking(t) => return ErrorBody::from(clone_tracking(t)),
            RegistryError::Artifact(petri_artifacts::ArtifactError::NotFound(_)) => {
                ErrorCode::ResourceDoesNotExist
            }
            RegistryError::Artifact(a) => a.code(),
            RegistryError::Db { .. } | RegistryError::Task(_) => ErrorCode::Internal,
        };
        ErrorBody::new(code, e.to_string())
    }
}

/// The tracking error's body without consuming the registry error (its message is kept).
fn clone_tracking(t: &petri_tracking::TrackingError) -> petri_tracking::TrackingError {
    use petri_tracking::TrackingError as T;
    match t {
        T::NotFound(m) => T::NotFound(m.clone()),
        T::AlreadyExists(m) => T::AlreadyExists(m.clone()),
        T::Invalid(m) => T::Invalid(m.clone()),
        T::State(m) => T::State(m.clone()),
        other => T::Task(other.to_string()),
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
