//! The registry's messages: MLflow's `model_registry.proto` as its REST API writes them in JSON
//! (versions are strings, times are milliseconds), plus Petri's own detail of a version.

use serde::{Deserialize, Serialize};

pub use petri_tracking::wire::KeyValue;

/// An alias and the version it points at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alias {
    pub alias: String,
    pub version: String,
}

/// A registered model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegisteredModel {
    pub name: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The newest version in each stage, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latest_versions: Vec<ModelVersion>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<Alias>,
}

/// A version of a registered model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    pub user_id: String,
    /// MLflow's stage (`None`, `Staging`, `Production`, `Archived`): its older mechanism, kept
    /// for client code that still moves versions through stages; aliases are the way forward.
    pub current_stage: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    /// Always `READY`: a version exists only once its files are stored and checked.
    pub status: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
}

/// One move of an alias: set (`from_version` none), moved, or deleted (`to_version` none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AliasEvent {
    pub alias: String,
    pub from_version: Option<i64>,
    pub to_version: Option<i64>,
    /// Who moved it.
    pub user: String,
    /// When, in milliseconds since the epoch.
    pub time: i64,
}

/// Where a version comes from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lineage {
    /// The tracking run that made it.
    pub run: Option<String>,
    /// The run's job (its `petri.job_id` tag).
    pub job: Option<String>,
    /// The pipeline run whose step the job was.
    pub pipeline_run: Option<String>,
    /// The datasets the run read (`name`, `digest`), when it logged them.
    #[serde(default)]
    pub inputs: Vec<InputData>,
}

/// A dataset a run read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InputData {
    pub name: String,
    pub digest: String,
}

/// One file of a version, stored once by content in the artifact store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionFile {
    pub path: String,
    pub digest: String,
    pub size: u64,
}

/// Petri's whole view of a version: MLflow's message plus its format, runtime, files and
/// lineage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionDetail {
    #[serde(flatten)]
    pub version: ModelVersion,
    /// `petri-mlp`, `onnx`, `mlflow` or `files`.
    pub format: String,
    /// An MLflow model's flavours.
    pub flavours: Vec<String>,
    /// `native`, `container` or `none`: how the serving issue runs it.
    pub runtime: String,
    /// Where the files were read from (`mlflow-artifacts:/…`).
    pub storage_location: String,
    pub files: Vec<VersionFile>,
    pub lineage: Lineage,
}

/// A registered model with every version, its aliases' history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelDetail {
    pub model: RegisteredModel,
    pub versions: Vec<VersionDetail>,
    pub alias_history: Vec<AliasEvent>,
}

/// `registered-models/create`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CreateModel {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `model-versions/create`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CreateVersion {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub model_id: Option<String>,
    /// The job that registers it (set by the daemon from the caller's token, never read from
    /// the request), for the lineage.
    #[serde(skip)]
    pub job: Option<String>,
}

/// A search's page.
#[derive(Clone, Debug, Default)]
pub struct Search {
    pub filter: String,
    pub max_results: Option<usize>,
    pub order_by: Vec<String>,
    pub page_token: Option<String>,
}
