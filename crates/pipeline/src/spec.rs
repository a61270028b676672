//! The pipeline spec as written in YAML (see `docs/pipelines.md`). A step is a job spec plus what
//! ties it to the others; the job fields are kept as YAML here and read into a [`petri_domain::JobSpec`] once
//! expressions are rendered, so every job-spec field works on a step and an unknown field is an
//! error either way.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// A whole pipeline file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// The name `petri pipeline save` stores the pipeline under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Parameters, given with `--param k=v`; a bare value is the default.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schema(value_type = Object)]
    pub params: IndexMap<String, ParamSpec>,
    /// Secrets given to every step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub secrets: Vec<serde_yaml_ng::Value>,
    /// How many runs of this pipeline may run at once (default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// The runs' priority among waiting pipeline runs (higher first).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    /// Reruns a failed run from its failed steps, up to `max` times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RunRetries>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
    /// What the pipeline returns when it runs as a step of another (`uses: pipeline:NAME`):
    /// output name → an expression such as `${{ steps.train.outputs.model }}`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schema(value_type = Object)]
    pub outputs: IndexMap<String, String>,
    #[schema(value_type = Object)]
    pub steps: IndexMap<String, StepSpec>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// A parameter: `name: default` or the long form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamSpec {
    Full(ParamFull),
    Bare(serde_json::Value),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamFull {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<ValueType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl ParamSpec {
    pub fn default_value(&self) -> Option<&serde_json::Value> {
        match self {
            ParamSpec::Full(f) => f.default.as_ref(),
            ParamSpec::Bare(v) => Some(v),
        }
    }
    /// The declared type, else the default's.
    pub fn kind(&self) -> ValueType {
        match self {
            ParamSpec::Full(ParamFull { kind: Some(k), .. }) => *k,
            other => other
                .default_value()
                .map(ValueType::of)
                .unwrap_or(ValueType::String),
        }
    }
}

/// The types of params, inputs and values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    String,
    Number,
    Boolean,
    List,
    File,
    Dir,
}

impl ValueType {
    pub fn of(v: &serde_json::Value) -> ValueType {
        match v {
            serde_json::Value::Number(_) => ValueType::Number,
            serde_json::Value::Bool(_) => ValueType::Boolean,
            serde_json::Value::Array(_) => ValueType::List,
            _ => ValueType::String,
        }
    }
}

/// Pipeline retries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRetries {
    #[serde(default)]
    pub max: u32,
    /// Wait before a rerun, e.g. 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub backoff: Option<petri_domain::Millis>,
}

/// What starts a run besides a user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Trigger {
    Cron(CronTrigger),
    Watch(WatchTrigger),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CronTrigger {
    /// Five fields (minute hour day-of-month month day-of-week), local time.
    pub cron: String,
    /// Run the fires missed while the daemon was down (or the machine slept).
    #[serde(default)]
    pub catchup: bool,
    /// At most this many catch-up runs per restart (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_catchup: Option<u32>,
    /// Params for the runs it starts.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schema(value_type = Object)]
    pub params: IndexMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchTrigger {
    /// A folder (relative paths: to the pipeline file's folder).
    pub watch: String,
    /// Quiet time before a run starts, e.g. 2s (default 2s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub debounce: Option<petri_domain::Millis>,
    /// The param that receives the changed paths (a JSON list); default `changed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
}

/// One step: a job spec plus its place in the graph.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepSpec {
    /// Steps that must succeed first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// A condition; when false the step is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Scalar>,
    /// One job per item of a list (or of an expression giving a JSON list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<serde_json::Value>,
    /// A component's name, or `pipeline:NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    /// A component's inputs (or a nested pipeline's params).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub with: IndexMap<String, Scalar>,
    /// Declared outputs: values and files.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub outputs: IndexMap<String, OutputSpec>,
    /// `false`: always run, never reuse earlier outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
    /// Every other field: the job spec's (`command`, `run`, `image`, `env`, `resources`, ...).
    #[serde(flatten)]
    pub job: serde_yaml_ng::Mapping,
}

/// A scalar written in YAML: kept as text for expressions, with its YAML type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Number(serde_json::Number),
    Text(String),
}

impl Scalar {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Scalar::Bool(b) => serde_json::Value::Bool(*b),
            Scalar::Number(n) => serde_json::Value::Number(n.clone()),
            Scalar::Text(s) => serde_json::Value::String(s.clone()),
        }
    }
    pub fn as_text(&self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Text(s) => s.clone(),
        }
    }
}

/// A declared output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    #[serde(rename = "type", default = "value_type")]
    pub kind: OutputKind,
    /// For files and folders: the path under the step's output folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn value_type() -> OutputKind {
    OutputKind::Value
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    Value,
    File,
    Dir,
}

impl OutputKind {
    pub fn is_file(self) -> bool {
        matches!(self, OutputKind::File | OutputKind::Dir)
    }
}

/// The pipeline-only keys of a step, in the order a step's fields are listed.
pub const STEP_KEYS: &[&str] = &[
    "needs", "when", "for_each", "uses", "with", "outputs", "cache",
];
