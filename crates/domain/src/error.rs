//! The errors that leave the process: one closed table of stable codes. The HTTP status of each
//! code is decided in one place, `ErrorCode::http_status`, so the API and the CLI agree.

use serde::{Deserialize, Serialize};

/// Declares [`ErrorCode`] from one table: each code is written once, with its wire name and its
/// HTTP status (meilisearch's `make_error_codes!` shape).
macro_rules! error_codes {
    ($( $(#[doc = $doc:literal])* $variant:ident = $name:literal, $status:literal; )*) => {
        /// Stable, SCREAMING_SNAKE error codes. Never rename one: clients match on them.
        ///
        /// The wire name is the variant's in SCREAMING_SNAKE_CASE; the table writes it out so that
        /// `as_str` needs no allocation, and a test holds the two equal.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in the table's order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name,)* }
            }

            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }
        }
    };
}

error_codes! {
    /// The request body is not valid JSON/YAML or has unknown fields.
    MalformedSpec = "MALFORMED_SPEC", 400;
    /// A field has a value Petri cannot accept.
    InvalidSpec = "INVALID_SPEC", 422;
    /// The job asks for more than this machine has.
    ResourcesUnavailable = "RESOURCES_UNAVAILABLE", 422;
    /// The job asks for GPUs but Petri has none it can use.
    NoGpus = "NO_GPUS", 422;
    /// `after` names a job that does not exist.
    UnknownDependency = "UNKNOWN_DEPENDENCY", 422;
    /// The jobs of one submission depend on each other in a circle.
    DependencyCycle = "DEPENDENCY_CYCLE", 422;
    /// The command is not found on PATH or is not executable.
    CommandNotFound = "COMMAND_NOT_FOUND", 422;
    /// The working directory does not exist.
    WorkdirNotFound = "WORKDIR_NOT_FOUND", 422;
    /// Container jobs need the Docker executor.
    ContainersUnavailable = "CONTAINERS_UNAVAILABLE", 422;
    /// The target is not `local` or a known cluster.
    UnknownTarget = "UNKNOWN_TARGET", 422;
    /// The cluster cannot run what the job asks for (an image on Slurm, more cpus than its
    /// largest node, a partition it lacks), or the caller has no credential for it.
    TargetRefused = "TARGET_REFUSED", 422;
    /// The cluster did not answer, or answered with an error (its own words are in the message).
    ClusterUnavailable = "CLUSTER_UNAVAILABLE", 502;
    /// The cluster answered and refused the credential (expired, wrong, another account's).
    CredentialRefused = "CREDENTIAL_REFUSED", 422;
    /// No cluster has this name.
    ClusterNotFound = "CLUSTER_NOT_FOUND", 404;
    /// A cluster with this name exists (and the request would change more than a credential).
    ClusterExists = "CLUSTER_EXISTS", 409;
    /// The cluster's settings are not usable (a bad name, URL, shared folder or version).
    InvalidCluster = "INVALID_CLUSTER", 422;
    /// No job has this id or number.
    JobNotFound = "JOB_NOT_FOUND", 404;
    /// The operation does not apply to the job in its current state.
    InvalidState = "INVALID_STATE", 409;
    /// Retention removed the finished job's log and outputs (its record stays; `petri show`
    /// says when and why).
    LogRemoved = "LOG_REMOVED", 410;
    /// The request has no valid token (none, unknown, revoked or expired).
    Unauthorized = "UNAUTHORIZED", 401;
    /// The token is valid but lacks the scope (or role) the action needs.
    Forbidden = "FORBIDDEN", 403;
    /// The request body is larger than the daemon accepts.
    PayloadTooLarge = "PAYLOAD_TOO_LARGE", 413;
    /// The request itself is malformed (bad query, bad path).
    BadRequest = "BAD_REQUEST", 400;
    /// No such route.
    NotFound = "NOT_FOUND", 404;
    /// Something inside Petri failed; the message says what.
    Internal = "INTERNAL", 500;
    /// The daemon is shutting down.
    Unavailable = "UNAVAILABLE", 503;
    /// The container image is not in the Docker engine (and no registry is asked).
    ImageNotFound = "IMAGE_NOT_FOUND", 422;
    /// A mount names a folder outside the folders that may be mounted.
    MountNotAllowed = "MOUNT_NOT_ALLOWED", 422;
    /// No notebook has this name.
    NotebookNotFound = "NOTEBOOK_NOT_FOUND", 404;
    /// A notebook with this name is running.
    NotebookNameTaken = "NOTEBOOK_NAME_TAKEN", 409;
    /// The notebook is not running (yet), so its server cannot be reached.
    NotebookNotReady = "NOTEBOOK_NOT_READY", 409;
    /// No API token has this id or name.
    TokenNotFound = "TOKEN_NOT_FOUND", 404;
    /// An API token with this name exists.
    TokenNameTaken = "TOKEN_NAME_TAKEN", 409;
    /// No secret has this name (`petri secret ls` lists them).
    SecretNotFound = "SECRET_NOT_FOUND", 404;
    /// A secret's name or value is not acceptable (a bad name, a value too big, bad base64).
    InvalidSecret = "INVALID_SECRET", 400;
    /// No artifact has this digest in the store.
    ArtifactNotFound = "ARTIFACT_NOT_FOUND", 404;
    /// A stored artifact no longer matches its digest (its file was changed on disk); it was
    /// not served.
    ArtifactCorrupt = "ARTIFACT_CORRUPT", 500;
    /// The text is not an artifact digest (`sha256:` and 64 lower-case hex digits).
    InvalidDigest = "INVALID_DIGEST", 400;
    /// A pipeline spec has errors; `details.errors` lists each with its line and column.
    InvalidPipeline = "INVALID_PIPELINE", 422;
    /// No saved pipeline has this name.
    PipelineNotFound = "PIPELINE_NOT_FOUND", 404;
    /// No pipeline run has this id or number.
    PipelineRunNotFound = "PIPELINE_RUN_NOT_FOUND", 404;
    /// Tracking (MLflow's own code): no experiment, run, tag or metric has this id or name.
    ResourceDoesNotExist = "RESOURCE_DOES_NOT_EXIST", 404;
    /// Tracking (MLflow's own code): an experiment with this name exists (deleted ones too).
    ResourceAlreadyExists = "RESOURCE_ALREADY_EXISTS", 400;
    /// Tracking (MLflow's own code): a parameter of the request is not acceptable (a bad key, a
    /// value too long, a param logged again with another value, a run that is not active).
    InvalidParameterValue = "INVALID_PARAMETER_VALUE", 400;
    /// Registry: a model offered for registration is broken or does not match its declared
    /// format (Petri's `model.json` + `model.safetensors`); nothing was registered.
    InvalidModel = "INVALID_MODEL", 400;
    /// No deployment has this name.
    DeploymentNotFound = "DEPLOYMENT_NOT_FOUND", 404;
    /// A deployment with this name exists.
    DeploymentNameTaken = "DEPLOYMENT_NAME_TAKEN", 409;
    /// The deployment has no replica ready to answer (starting, or restarting after a crash).
    DeploymentNotReady = "DEPLOYMENT_NOT_READY", 503;
    /// The model is registered but Petri cannot serve it (its runtime is not available).
    UnsupportedModel = "UNSUPPORTED_MODEL", 422;
    /// No Petri user has this name (`petri user ls` lists them).
    UserNotFound = "USER_NOT_FOUND", 404;
    /// Quota values that make no sense (a negative cpu count, zero running jobs).
    InvalidQuota = "INVALID_QUOTA", 422;
    /// The job asks for more than its user's (or group's) quota allows, so it could never start.
    QuotaExceeded = "QUOTA_EXCEEDED", 422;
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
    #[error(
        "unknown target `{0}`: a target is `local`, `auto` or a cluster's name (`petri cluster ls`)"
    )]
    UnknownTarget(String),
}

impl SpecError {
    /// The field the error is about, when it is about one.
    pub fn field(&self) -> &str {
        match self {
            SpecError::Invalid { field, .. } => field,
            SpecError::UnknownTarget(_) => "target",
            SpecError::Syntax(_) => "",
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_has_one_name_on_the_wire_and_a_status() {
        for code in ErrorCode::ALL {
            let wire = serde_json::to_value(code).unwrap();
            assert_eq!(wire, serde_json::Value::from(code.as_str()));
            let back: ErrorCode = serde_json::from_value(wire).unwrap();
            assert_eq!(back, *code);
            assert!((400..600).contains(&code.http_status()), "{code:?}");
        }
    }
}
