//! MLflow's REST messages as JSON, the way the stock client writes and reads them (the JSON
//! mapping of `mlflow/protos/service.proto`): field names as in the proto, enums by name, int64
//! fields as numbers (the client sends numbers; strings are accepted too, as protobuf's own JSON
//! mapping writes them), doubles as numbers or `"NaN"`, `"Infinity"`, `"-Infinity"`.
//!
//! Requests ignore fields they do not know (a newer client may send more); responses leave out
//! what is not set, as the proto's JSON mapping does.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A key and a value: a run's param or tag, an experiment's tag, a dataset input's tag.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = TrackingKeyValue)]
pub struct KeyValue {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// One point of a metric.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = TrackingMetric)]
pub struct Metric {
    #[serde(default)]
    pub key: String,
    /// A number, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
    #[serde(default, with = "double")]
    #[schema(value_type = f64)]
    pub value: f64,
    #[serde(default, with = "int64")]
    pub timestamp: i64,
    #[serde(default, with = "int64")]
    pub step: i64,
}

/// An experiment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = TrackingExperiment)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: String,
    pub last_update_time: i64,
    pub creation_time: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
}

/// What a run is, apart from its data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = TrackingRunInfo)]
pub struct RunInfo {
    pub run_id: String,
    /// The run's id again: older clients read this name.
    pub run_uuid: String,
    pub run_name: String,
    pub experiment_id: String,
    pub user_id: String,
    /// `RUNNING`, `SCHEDULED`, `FINISHED`, `FAILED` or `KILLED`.
    pub status: String,
    pub start_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    pub artifact_uri: String,
    /// `active` or `deleted`.
    pub lifecycle_stage: String,
}

/// A run's params, tags and the latest value of each metric.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = TrackingRunData)]
pub struct RunData {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<KeyValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
}

/// A dataset as MLflow describes it (`mlflow.data`): a name and digest that identify it, where
/// it comes from, its schema and profile (JSON texts the client writes).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = TrackingDataset)]
pub struct Dataset {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub source_type: String,
    #[serde(default)]
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// A dataset a run used, with tags such as `mlflow.data.context` (`train`, `eval`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = TrackingDatasetInput)]
pub struct DatasetInput {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
    #[serde(default)]
    pub dataset: Dataset,
}

/// A run's inputs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = TrackingRunInputs)]
pub struct RunInputs {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dataset_inputs: Vec<DatasetInput>,
}

/// A run: what it is, what it logged, what it read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = TrackingRun)]
pub struct Run {
    pub info: RunInfo,
    pub data: RunData,
    pub inputs: RunInputs,
}

impl Run {
    /// The latest value of a metric, by key.
    pub fn metric(&self, key: &str) -> Option<&Metric> {
        self.data.metrics.iter().find(|m| m.key == key)
    }
    /// A param's value, by key.
    pub fn param(&self, key: &str) -> Option<&str> {
        find(&self.data.params, key)
    }
    /// A tag's value, by key.
    pub fn tag(&self, key: &str) -> Option<&str> {
        find(&self.data.tags, key)
    }
}

fn find<'a>(list: &'a [KeyValue], key: &str) -> Option<&'a str> {
    list.iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.as_str())
}

/// Which experiments or runs a search looks at: `ACTIVE_ONLY` (the default), `DELETED_ONLY` or
/// `ALL` (by name or by the proto's number, 1, 2, 3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ViewType {
    #[default]
    ActiveOnly,
    DeletedOnly,
    All,
}

impl ViewType {
    /// Whether a thing in this lifecycle stage is in view.
    pub fn shows(self, lifecycle_stage: &str) -> bool {
        match self {
            ViewType::ActiveOnly => lifecycle_stage == ACTIVE,
            ViewType::DeletedOnly => lifecycle_stage == DELETED,
            ViewType::All => true,
        }
    }
}

impl<'de> Deserialize<'de> for ViewType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match StrOrNum::deserialize(d)? {
            StrOrNum::Str(s) if s == "ACTIVE_ONLY" || s == "1" => Ok(ViewType::ActiveOnly),
            StrOrNum::Str(s) if s == "DELETED_ONLY" || s == "2" => Ok(ViewType::DeletedOnly),
            StrOrNum::Str(s) if s == "ALL" || s == "3" => Ok(ViewType::All),
            StrOrNum::Num(1) => Ok(ViewType::ActiveOnly),
            StrOrNum::Num(2) => Ok(ViewType::DeletedOnly),
            StrOrNum::Num(3) => Ok(ViewType::All),
            other => Err(serde::de::Error::custom(format!(
                "unknown view type {other:?}: use ACTIVE_ONLY, DELETED_ONLY or ALL"
            ))),
        }
    }
}

/// The lifecycle stage of a thing in use.
pub const ACTIVE: &str = "active";
/// The lifecycle stage of a deleted (restorable) thing.
pub const DELETED: &str = "deleted";

// ---- requests ----

#[derive(Clone, Debug, Default, Deserialize)]
pub struct CreateExperiment {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub artifact_location: Option<String>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ExperimentRef {
    #[serde(default)]
    pub experiment_id: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ExperimentByName {
    #[serde(default)]
    pub experiment_name: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct UpdateExperiment {
    #[serde(default)]
    pub experiment_id: String,
    #[serde(default)]
    pub new_name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct SetExperimentTag {
    #[serde(default)]
    pub experiment_id: String,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct DeleteExperimentTag {
    #[serde(default)]
    pub experiment_id: String,
    #[serde(default)]
    pub key: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct SearchExperiments {
    #[serde(default, with = "opt_int64")]
    pub max_results: Option<i64>,
    #[serde(default)]
    pub page_token: Option<String>,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub order_by: Vec<String>,
    #[serde(default)]
    pub view_type: Option<ViewType>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct CreateRun {
    #[serde(default)]
    pub experiment_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub run_name: Option<String>,
    #[serde(default, with = "opt_int64")]
    pub start_time: Option<i64>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

/// A run named by `run_id` (or `run_uuid`, which older clients send).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RunRef {
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub run_uuid: Option<String>,
}

impl RunRef {
    pub fn id(&self) -> &str {
        run_id(&self.run_id, &self.run_uuid)
    }
}

fn run_id<'a>(id: &'a Option<String>, uuid: &'a Option<String>) -> &'a str {
    id.as_deref()
        .filter(|s| !s.is_empty())
        .or(uuid.as_deref())
        .unwrap_or("")
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct UpdateRun {
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub run_uuid: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, with = "opt_int64")]
    pub end_time: Option<i64>,
    #[serde(default)]
    pub run_name: Option<String>,
}

impl UpdateRun {
    pub fn id(&self) -> &str {
        run_id(&self.run_id, &self.run_uuid)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct LogMetric {
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub run_uuid: Option<String>,
    #[serde(default)]
    pub key: String,
    #[serde(default, with = "opt_double")]
    pub value: Option<f64>,
    #[serde(default, with = "opt_int64")]
    pub timestamp: Option<i64>,
    #[serde(default, with = "opt_int64")]
    pub step: Option<i64>,
}

impl LogMetric {
    pub fn id(&self) -> &str {
        run_id(&self.run_id, &self.run_uuid)
    }
}

/// `runs/log-parameter`, `runs/set-tag`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LogKeyValue {
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub run_uuid: Option<String>,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
}

impl LogKeyValue {
    pub fn id(&self) -> &str {
        run_id(&self.run_id, &self.run_uuid)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct DeleteTag {
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub key: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct LogBatch {
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub params: Vec<KeyValue>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct LogInputs {
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub datasets: Vec<DatasetInput>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct SearchRuns {
    #[serde(default, deserialize_with = "one_or_many")]
    pub experiment_ids: Vec<String>,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub run_view_type: Option<ViewType>,
    #[serde(default, with = "opt_int64")]
    pub max_results: Option<i64>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub order_by: Vec<String>,
    #[serde(default)]
    pub page_token: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct GetMetricHistory {
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub run_uuid: Option<String>,
    #[serde(default)]
    pub metric_key: String,
    #[serde(default)]
    pub page_token: Option<String>,
    #[serde(default, with = "opt_int64")]
    pub max_results: Option<i64>,
}

impl GetMetricHistory {
    pub fn id(&self) -> &str {
        run_id(&self.run_id, &self.run_uuid)
    }
}

// ---- responses ----

#[derive(Clone, Debug, Serialize)]
pub struct ExperimentId {
    pub experiment_id: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct OneExperiment {
    pub experiment: Experiment,
}

#[derive(Clone, Debug, Serialize)]
pub struct Experiments {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub experiments: Vec<Experiment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OneRun {
    pub run: Run,
}

#[derive(Clone, Debug, Serialize)]
pub struct UpdatedRun {
    pub run_info: RunInfo,
}

/// A page of runs and, when more follow, the token of the next.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = TrackingRuns)]
pub struct Runs {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<Run>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MetricHistory {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// The empty answer of a change that returns nothing.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Empty {}

// ---- the JSON mapping's number forms ----

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StrOrNum {
    Num(i64),
    Float(f64),
    Str(String),
}

fn to_i64<E: serde::de::Error>(v: StrOrNum) -> Result<i64, E> {
    match v {
        StrOrNum::Num(n) => Ok(n),
        StrOrNum::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(f as i64),
        StrOrNum::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| E::custom(format!("`{s}` is not an integer"))),
        StrOrNum::Float(f) => Err(E::custom(format!("{f} is not an integer"))),
    }
}

fn to_f64<E: serde::de::Error>(v: StrOrNum) -> Result<f64, E> {
    match v {
        StrOrNum::Num(n) => Ok(n as f64),
        StrOrNum::Float(f) => Ok(f),
        StrOrNum::Str(s) => match s.trim() {
            "NaN" | "nan" => Ok(f64::NAN),
            "Infinity" | "inf" => Ok(f64::INFINITY),
            "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
            other => other
                .parse()
                .map_err(|_| E::custom(format!("`{s}` is not a number"))),
        },
    }
}

/// Writes a double as the JSON mapping does (non-finite values as strings).
fn write_f64<S: Serializer>(v: f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_nan() {
        s.serialize_str("NaN")
    } else if v == f64::INFINITY {
        s.serialize_str("Infinity")
    } else if v == f64::NEG_INFINITY {
        s.serialize_str("-Infinity")
    } else {
        s.serialize_f64(v)
    }
}

mod int64 {
    use super::*;
    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(*v)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        to_i64(StrOrNum::deserialize(d)?)
    }
}

pub(crate) mod opt_int64 {
    use super::*;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<StrOrNum>::deserialize(d)?.map(to_i64).transpose()
    }
}

mod double {
    use super::*;
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        write_f64(*v, s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        to_f64(StrOrNum::deserialize(d)?)
    }
}

mod opt_double {
    use super::*;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Option::<StrOrNum>::deserialize(d)?.map(to_f64).transpose()
    }
}

/// A repeated field given once as a plain value (a query string's single parameter) or as a list.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int64_fields_take_numbers_and_strings_and_doubles_take_nan() {
        let m: LogMetric = serde_json::from_str(
            r#"{"run_id":"a","key":"k","value":"NaN","timestamp":"17","step":3}"#,
        )
        .unwrap();
        assert!(m.value.unwrap().is_nan());
        assert_eq!((m.timestamp, m.step), (Some(17), Some(3)));
        let m: Metric =
            serde_json::from_str(r#"{"key":"k","value":"-Infinity","timestamp":1}"#).unwrap();
        assert_eq!(m.value, f64::NEG_INFINITY);
        assert_eq!(m.step, 0);
        let out = serde_json::to_value(Metric {
            value: f64::INFINITY,
            ..m
        })
        .unwrap();
        assert_eq!(out["value"], "Infinity");
    }

    #[test]
    fn view_types_by_name_or_number() {
        let s: SearchRuns = serde_json::from_str(r#"{"run_view_type":"ALL"}"#).unwrap();
        assert_eq!(s.run_view_type, Some(ViewType::All));
        let s: SearchRuns = serde_json::from_str(r#"{"run_view_type":2}"#).unwrap();
        assert_eq!(s.run_view_type, Some(ViewType::DeletedOnly));
        assert!(serde_json::from_str::<SearchRuns>(r#"{"run_view_type":"SOME"}"#).is_err());
    }
}
