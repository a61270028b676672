//! The errors that leave the process: one closed table of stable codes. The HTTP status of each
//! code is decided in one place, `ErrorCode::http_status`, so the API and the CLI agree.

use serde::{Deserialize, Serialize};

/// Stable, SCREAMING_SNAKE error codes. Never rename one: clients match on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The request body is not valid JSON/YAML or has unknown fields.
    MalformedSpec,
    /// A field has a value Petri cannot accept.
    InvalidSpec,
    /// The job asks for more than this machine has.
    ResourcesUnavailable,
    /// The job asks for GPUs but Petri has none it can use.
    NoGpus,
    /// `after` names a job that does not exist.
    UnknownDependency,
    /// The jobs of one submission depend on each other in a circle.
    DependencyCycle,
    /// The command is not found on PATH or is not executable.
    CommandNotFound,
    /// The working directory does not exist.
    WorkdirNotFound,
    /// Container jobs need the Docker executor.
    ContainersUnavailable,
    /// The target is not `local` or a known cluster.
    UnknownTarget,
    /// No job has this id or number.
    JobNotFound,
    /// The operation does not apply to the job in its current state.
    InvalidState,
    /// The request has no valid token.
    Unauthorized,
    /// The request body is larger than the daemon accepts.
    PayloadTooLarge,
    /// The request itself is malformed (bad query, bad path).
    BadRequest,
    /// No such route.
    NotFound,
    /// Something inside Petri failed; the message says what.
    Internal,
    /// The daemon is shutting down.
    Unavailable,
    /// The container image is not in the Docker engine (and no registry is asked).
    ImageNotFound,
    /// A mount names a folder outside the folders that may be mounted.
    MountNotAllowed,
    /// No notebook has this name.
    NotebookNotFound,
    /// A notebook with this name is running.
    NotebookNameTaken,
    /// The notebook is not running (yet), so its server cannot be reached.
    NotebookNotReady,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedSpec => "MALFORMED_SPEC",
            ErrorCode::InvalidSpec => "INVALID_SPEC",
            ErrorCode::ResourcesUnavailable => "RESOURCES_UNAVAILABLE",
            ErrorCode::NoGpus => "NO_GPUS",
            ErrorCode::UnknownDependency => "UNKNOWN_DEPENDENCY",
            ErrorCode::DependencyCycle => "DEPENDENCY_CYCLE",
            ErrorCode::CommandNotFound => "COMMAND_NOT_FOUND",
            ErrorCode::WorkdirNotFound => "WORKDIR_NOT_FOUND",
            ErrorCode::ContainersUnavailable => "CONTAINERS_UNAVAILABLE",
            ErrorCode::UnknownTarget => "UNKNOWN_TARGET",
            ErrorCode::JobNotFound => "JOB_NOT_FOUND",
            ErrorCode::InvalidState => "INVALID_STATE",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::ImageNotFound => "IMAGE_NOT_FOUND",
            ErrorCode::MountNotAllowed => "MOUNT_NOT_ALLOWED",
            ErrorCode::NotebookNotFound => "NOTEBOOK_NOT_FOUND",
            ErrorCode::NotebookNameTaken => "NOTEBOOK_NAME_TAKEN",
            ErrorCode::NotebookNotReady => "NOTEBOOK_NOT_READY",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::MalformedSpec | ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::JobNotFound | ErrorCode::NotFound | ErrorCode::NotebookNotFound => 404,
            ErrorCode::InvalidState | ErrorCode::NotebookNameTaken => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::InvalidSpec
            | ErrorCode::ResourcesUnavailable
            | ErrorCode::NoGpus
            | ErrorCode::UnknownDependency
            | ErrorCode::DependencyCycle
            | ErrorCode::CommandNotFound
            | ErrorCode::WorkdirNotFound
            | ErrorCode::ContainersUnavailable
            | ErrorCode::ImageNotFound
            | ErrorCode::MountNotAllowed
            | ErrorCode::UnknownTarget => 422,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable | ErrorCode::NotebookNotReady => 503,
        }
    }
}

/// The JSON body of every error response: `{code, message, details}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
            details: serde_json::Value::Null,
        }
    }
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code.as_str())
    }
}

impl std::error::Error for ErrorBody {}

/// Why a spec was refused before it reached the queue.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum SpecError {
    #[error("the job spec does not parse: {0}")]
    Syntax(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("unknown target `{0}`: only `local` exists until clusters are added")]
    UnknownTarget(String),
}

impl From<SpecError> for ErrorBody {
    fn from(e: SpecError) -> Self {
        match &e {
            SpecError::Syntax(_) => ErrorBody::new(ErrorCode::MalformedSpec, e.to_string()),
            SpecError::Invalid { field, .. } => {
                ErrorBody::new(ErrorCode::InvalidSpec, e.to_string())
                    .with_details(serde_json::json!({ "field": field }))
            }
            SpecError::UnknownTarget(_) => ErrorBody::new(ErrorCode::UnknownTarget, e.to_string()),
        }
    }
}
