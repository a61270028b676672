//! Stored records: what goes into the database, versioned apart from the API's wire types.
//!
//! The API's `JobSpec` refuses unknown fields (a typo in a job file must never be dropped
//! silently); a stored record is the opposite: it reads tolerantly (unknown fields ignored,
//! missing ones defaulted, old names taken as aliases), so that a database written by an older
//! or newer Petri of the same schema opens. Sizes and durations are plain integers here, not the
//! human units of the wire format. `SPEC_VERSION` is stored beside each row; a reader of a later
//! version converts older records when it loads them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use petri_domain::{ByteSize, JobSpec, Millis, Mount, Origin, Resources, Retries, SecretUse};
use serde::{Deserialize, Serialize};

/// The version of [`SpecRecord`] this code writes.
pub const SPEC_VERSION: i64 = 1;

/// A job spec as stored (version 1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpecRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workdir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountRecord>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    pub resources: ResourcesRecord,
    pub priority: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    pub retries: RetriesRecord,
    /// Milliseconds.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "millis")]
    pub timeout: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub array: BTreeMap<String, petri_domain::sweep::SweepValues>,
    pub hold: bool,
    /// The names of the secrets the job receives (never a value).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretUseRecord>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretUseRecord {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MountRecord {
    pub source: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<PathBuf>,
    pub read_only: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Bytes.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "bytes")]
    pub memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// Bytes.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "bytes")]
    pub gpu_memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mig: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_compute: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetriesRecord {
    pub max: u32,
    /// Milliseconds.
    #[serde(deserialize_with = "millis_or_zero")]
    pub backoff: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exit_codes: Vec<i32>,
}

/// A plain number (what version 1 writes: bytes, milliseconds) or text in the wire format's
/// human units ("4GiB", "30s"), which is what rows written before records were versioned hold.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    N(u64),
    S(String),
}

fn number_or<'de, D: serde::Deserializer<'de>, T: std::str::FromStr<Err = String>>(
    d: D,
    value: impl Fn(T) -> u64,
) -> Result<Option<u64>, D::Error> {
    match Option::<NumberOrText>::deserialize(d)? {
        None => Ok(None),
        Some(NumberOrText::N(n)) => Ok(Some(n)),
        Some(NumberOrText::S(s)) => s
            .parse()
            .map(|t| Some(value(t)))
            .map_err(serde::de::Error::custom),
    }
}
fn bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    number_or(d, |b: ByteSize| b.0)
}
fn millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    number_or(d, |m: Millis| m.0)
}
fn millis_or_zero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(millis(d)?.unwrap_or(0))
}

impl From<&JobSpec> for SpecRecord {
    fn from(s: &JobSpec) -> Self {
        SpecRecord {
            name: s.name.clone(),
            command: s.command.clone(),
            run: s.run.clone(),
            workdir: s.workdir.clone(),
            image: s.image.clone(),
            mounts: s
                .mounts
                .iter()
                .map(|m| MountRecord {
                    source: m.source.clone(),
                    target: m.target.clone(),
                    read_only: m.read_only,
                })
                .collect(),
            ports: s.ports.clone(),
            env: s.env.clone(),
            resources: ResourcesRecord {
                cpus: s.resources.cpus,
                memory: s.resources.memory.map(|b| b.0),
                gpus: s.resources.gpus,
                gpu_memory: s.resources.gpu_memory.map(|b| b.0),
                mig: s.resources.mig.clone(),
                gpu_compute: s.resources.gpu_compute.clone(),
            },
            priority: s.priority,
            queue: s.queue.clone(),
            retries: RetriesRecord {
                max: s.retries.max,
                backoff: s.retries.backoff.0,
                exit_codes: s.retries.exit_codes.clone(),
            },
            timeout: s.timeout.map(|t| t.0),
            after: s.after.clone(),
            outputs: s.outputs.clone(),
            target: s.target.clone(),
            array: s.array.clone(),
            hold: s.hold,
            secrets: s
                .secrets
                .iter()
                .map(|u| SecretUseRecord {
                    name: u.name.clone(),
                    env: u.env.clone(),
                })
                .collect(),
        }
    }
}

impl From<SpecRecord> for JobSpec {
    fn from(r: SpecRecord) -> Self {
        JobSpec {
            name: r.name,
            command: r.command,
            run: r.run,
            workdir: r.workdir,
            image: r.image,
            mounts: r
                .mounts
                .into_iter()
                .map(|m| Mount {
                    source: m.source,
                    target: m.target,
                    read_only: m.read_only,
                })
                .collect(),
            ports: r.ports,
            env: r.env,
            resources: Resources {
                cpus: r.resources.cpus,
                memory: r.resources.memory.map(ByteSize),
                gpus: r.resources.gpus,
                gpu_memory: r.resources.gpu_memory.map(ByteSize),
                mig: r.resources.mig,
                gpu_compute: r.resources.gpu_compute,
            },
            priority: r.priority,
            queue: r.queue,
            retries: Retries {
                max: r.retries.max,
                backoff: Millis(r.retries.backoff),
                exit_codes: r.retries.exit_codes,
            },
            timeout: r.timeout.map(Millis),
            after: r.after,
            outputs: r.outputs,
            target: r.target,
            array: r.array,
            hold: r.hold,
            secrets: r
                .secrets
                .into_iter()
                .map(|u| SecretUse {
                    name: u.name,
                    env: u.env,
                })
                .collect(),
        }
    }
}

/// A job's origin as stored: tolerant of kinds this code does not know (a newer Petri's), which
/// read as a submission rather than failing the whole queue.
pub fn origin_from_json(text: &str) -> Origin {
    serde_json::from_str(text).unwrap_or_default()
}

pub fn origin_to_json(origin: &Origin) -> String {
    serde_json::to_string(origin).unwrap_or_else(|_| r#"{"kind":"submission"}"#.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_rows_in_wire_units_and_unknown_fields_read() {
        let old = r#"{"command":["true"],"resources":{"memory":"1GiB","gpu_memory":"2GiB"},
            "retries":{"max":2,"backoff":"30s"},"timeout":"1h","notebook":"nb1","renamed_later":1}"#;
        let r: SpecRecord = serde_json::from_str(old).unwrap();
        let spec = JobSpec::from(r);
        assert_eq!(spec.resources.memory, Some(ByteSize(1 << 30)));
        assert_eq!(spec.resources.gpu_memory, Some(ByteSize(2 << 30)));
        assert_eq!(spec.retries.backoff, Millis(30_000));
        assert_eq!(spec.timeout, Some(Millis(3_600_000)));
    }

    #[test]
    fn a_spec_round_trips_through_its_record() {
        let spec = JobSpec::from_yaml(
            "command: [python, t.py]\nimage: x\nmounts: [{source: /data, read_only: true}]\n\
             resources: {cpus: 2, memory: 4GiB}\nretries: {max: 1, backoff: 5s}\ntimeout: 2m\n\
             secrets: [A, {name: b.json, env: B}]\n",
        )
        .unwrap();
        let text = serde_json::to_string(&SpecRecord::from(&spec)).unwrap();
        let back = JobSpec::from(serde_json::from_str::<SpecRecord>(&text).unwrap());
        assert_eq!(back, spec);
    }

    #[test]
    fn an_unknown_origin_reads_as_a_submission() {
        assert_eq!(
            origin_from_json(r#"{"kind":"from_the_future"}"#),
            Origin::Submission
        );
        let nb = Origin::Notebook { id: "n".into() };
        assert_eq!(origin_from_json(&origin_to_json(&nb)), nb);
    }
}
