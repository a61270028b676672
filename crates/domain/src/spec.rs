//! The job spec: what a user writes in YAML, what `petri submit` flags fill in, what the API takes.
//! Unknown fields are errors, so a typo never silently drops a setting.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::SpecError;
use crate::secret::{SECRET_NAME_RULE, SecretUse, is_secret_name};
use crate::units::{ByteSize, Millis};

/// One job, as submitted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// A label for people; not unique. Defaults to the command's first word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The program and its arguments, run without a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// A shell script, run with `/bin/sh -c`. Exactly one of `command` and `run` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The working directory; relative paths are resolved by the client that submits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub workdir: Option<PathBuf>,
    /// A container image: the job runs in a Docker container with its workdir and output
    /// folder mounted at the same paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// More host folders for the container (within the folders the daemon allows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Container ports to publish on the host's loopback interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Extra environment variables for the job.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Resources::is_default")]
    pub resources: Resources,
    /// Higher runs first. Between -1000 and 1000.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    /// The named queue; queues may limit how many of their jobs run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Retries::is_none")]
    pub retries: Retries,
    /// Wall-clock limit per attempt: SIGTERM to the job's process group, a grace period, SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Millis>,
    /// Jobs (ids, numbers, or names of jobs in the same submission) that must succeed first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Paths (relative to the output dir) the job promises to write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// Where to run: `local` (the default), a cluster's name (`petri cluster ls`), or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A sweep: one job per combination of values; each job sees its values as env variables.
    /// A key's values are a list, or a range such as `"1..100000"` or `"0..1:0.1"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub array: BTreeMap<String, crate::sweep::SweepValues>,
    /// Submit the job held: it waits for `petri release`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub hold: bool,
    /// Secrets the job receives at launch (`petri secret set`), by name: `[HF_TOKEN]`, or
    /// `[{name: kaggle.json, env: KAGGLE_CONFIG}]`. A value becomes an environment variable, a
    /// file a private file whose path is in one. The job holds only the names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<crate::secret::SecretUseSchema>)]
    pub secrets: Vec<SecretUse>,
}

/// A host folder bound into a container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// The folder on the host (absolute).
    #[schema(value_type = String)]
    pub source: PathBuf,
    /// Where it appears in the container (absolute); the same path by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub target: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
}

/// What a job reserves while it runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU cores (fractions allowed). Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory reserved for the job, e.g. 4GiB. Defaults to none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// Whole GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// A slice of one GPU's memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory: Option<ByteSize>,
    /// A MIG profile such as 1g.10gb.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig: Option<String>,
    /// The share of the GPU's compute a slice may use, e.g. "30%" (enforced on MPS GPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_compute: Option<String>,
}

impl Resources {
    pub fn is_default(&self) -> bool {
        *self == Resources::default()
    }
    /// CPU reservation in thousandths of a core (default one core).
    pub fn cpu_millis(&self) -> u64 {
        (self.cpus.unwrap_or(1.0) * 1000.0).round().max(0.0) as u64
    }
    pub fn memory_bytes(&self) -> u64 {
        self.memory.map(|m| m.0).unwrap_or(0)
    }
    /// `gpu_compute` as a percentage from 1 to 100.
    pub fn compute_percent(&self) -> Option<u32> {
        let text = self.gpu_compute.as_deref()?.trim();
        let n: u32 = text.strip_suffix('%').unwrap_or(text).trim().parse().ok()?;
        (1..=100).contains(&n).then_some(n)
    }

    pub fn wants_gpu(&self) -> bool {
        self.gpus.unwrap_or(0) > 0 || self.gpu_memory.is_some() || self.mig.is_some()
    }
}

/// Retry policy: up to `max` more attempts after a failure, waiting `backoff`, doubling each time.
/// Written as a map, or as a plain number (`retries: 2` is `{max: 2}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    #[serde(default)]
    pub max: u32,
    #[serde(default)]
    pub backoff: Millis,
    /// Retry only when the job exits with one of these codes (empty: any failure). A timeout
    /// or a lost process is retried whatever this says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exit_codes: Vec<i32>,
}

/// The map form of [`Retries`], read with the derive (unknown keys refused, positions kept).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetriesMap {
    #[serde(default)]
    max: u32,
    #[serde(default)]
    backoff: Millis,
    #[serde(default)]
    exit_codes: Vec<i32>,
}

impl<'de> Deserialize<'de> for Retries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Retries, D::Error> {
        struct Shape;
        impl<'de> serde::de::Visitor<'de> for Shape {
            type Value = Retries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of retries, or a map with max, backoff, exit_codes")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Retries, E> {
                let max = u32::try_from(n)
                    .map_err(|_| E::custom(format!("at most {MAX_RETRIES} retries")))?;
                Ok(Retries {
                    max,
                    ..Retries::default()
                })
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Retries, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom("a number of retries cannot be negative")),
                }
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Retries, E> {
                Ok(Retries::default())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Retries, A::Error> {
                let m = RetriesMap::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Retries {
                    max: m.max,
                    backoff: m.backoff,
                    exit_codes: m.exit_codes,
                })
            }
        }
        d.deserialize_any(Shape)
    }
}

impl Retries {
    pub fn is_none(&self) -> bool {
        self.max == 0 && self.backoff.0 == 0 && self.exit_codes.is_empty()
    }
    /// Whether a failure with this exit code (`None`: no code, a timeout or a lost process) is
    /// retried.
    pub fn retries_exit(&self, code: Option<i32>) -> bool {
        match code {
            Some(c) if !self.exit_codes.is_empty() => self.exit_codes.contains(&c),
            _ => true,
        }
    }
    /// Delay before attempt `next_attempt` (2 = the first retry): backoff, doubled per retry, at
    /// most one day.
    pub fn delay_before(&self, next_attempt: u32) -> Millis {
        let doublings = next_attempt.saturating_sub(2).min(20);
        Millis(
            self.backoff
                .0
                .saturating_mul(1 << doublings)
                .min(86_400_000),
        )
    }
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}
fn is_false(b: &bool) -> bool {
    !*b
}

pub const MAX_ARRAY_JOBS: usize = 100_000;
pub const MAX_RETRIES: u32 = 100;

impl JobSpec {
    /// Parses one spec from YAML (or JSON, which is YAML).
    pub fn from_yaml(text: &str) -> Result<JobSpec, SpecError> {
        serde_yaml_ng::from_str(text).map_err(syntax)
    }

    /// Parses a file that holds one spec, or several separated by `---` (empty documents are
    /// skipped). Each document is read straight into a spec, so errors keep their line and
    /// column and a plain scalar such as `1` in `command: [sleep, 1]` is a string, as in
    /// `from_yaml`.
    pub fn many_from_yaml(text: &str) -> Result<Vec<JobSpec>, SpecError> {
        let mut specs = Vec::new();
        for doc in serde_yaml_ng::Deserializer::from_str(text) {
            if let Some(spec) = Option::<JobSpec>::deserialize(doc).map_err(syntax)? {
                specs.push(spec);
            }
        }
        if specs.is_empty() {
            return Err(SpecError::Invalid {
                field: "spec".into(),
                message: "the file holds no job".into(),
            });
        }
        Ok(specs)
    }

    pub fn queue_name(&self) -> &str {
        self.queue.as_deref().unwrap_or("default")
    }

    /// The name shown for the job: its `name`, else the first word of its command.
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        if let Some(first) = self.command.as_ref().and_then(|c| c.first()) {
            return first.rsplit('/').next().unwrap_or(first).to_string();
        }
        "script".into()
    }

    /// The argv the executor runs.
    pub fn argv(&self) -> Vec<String> {
        match (&self.command, &self.run) {
            (Some(c), _) => c.clone(),
            (None, Some(script)) => vec!["/bin/sh".into(), "-c".into(), script.clone()],
            (None, None) => Vec::new(),
        }
    }

    /// Checks everything that can be checked without the machine: shape, names, ranges.
    pub fn validate(&self) -> Result<(), SpecError> {
        let invalid = |field: &str, message: String| SpecError::Invalid {
            field: field.into(),
            message,
        };
        match (&self.command, &self.run) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "command",
                    "give either `command` or `run`, not both".into(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "command",
                    "the job has nothing to run: give `command` (a list) or `run` (a script)"
                        .into(),
                ));
            }
            (Some(c), None) if c.is_empty() || c[0].trim().is_empty() => {
                return Err(invalid("command", "the command is empty".into()));
            }
            (None, Some(s)) if s.trim().is_empty() => {
                return Err(invalid("run", "the script is empty".into()));
            }
            _ => {}
        }
        if self.argv().iter().any(|a| a.contains('\0')) {
            return Err(invalid(
                "command",
                "arguments may not contain NUL bytes".into(),
            ));
        }
        if let Some(name) = &self.name
            && (name.is_empty() || name.len() > 200 || name.chars().any(char::is_control))
        {
            return Err(invalid(
                "name",
                "a name is 1 to 200 printable characters".into(),
            ));
        }
        if let Some(q) = &self.queue
            && !is_identifier(q)
        {
            return Err(invalid(
                "queue",
                format!("`{q}` is not a queue name (letters, digits, - and _)"),
            ));
        }
        if !(-1000..=1000).contains(&self.priority) {
            return Err(invalid(
                "priority",
                "priority is between -1000 and 1000".into(),
            ));
        }
        for (k, v) in &self.env {
            if !is_env_name(k) {
                return Err(invalid(
                    "env",
                    format!("`{k}` is not an environment variable name"),
                ));
            }
            if v.contains('\0') {
                return Err(invalid(
                    "env",
                    format!("the value of `{k}` contains a NUL byte"),
                ));
            }
        }
        if let Some(cpus) = self.resources.cpus
            && (!cpus.is_finite() || cpus <= 0.0)
        {
            return Err(invalid("resources.cpus", "cpus must be more than 0".into()));
        }
        if let Some(c) = &self.resources.gpu_compute {
            if self.resources.gpu_memory.is_none() {
                return Err(invalid(
                    "resources.gpu_compute",
                    "gpu_compute limits a slice: give `gpu_memory` too".into(),
                ));
            }
            if self.resources.compute_percent().is_none() {
                return Err(invalid(
                    "resources.gpu_compute",
                    format!("`{c}` is not a share; write it like 30%"),
                ));
            }
        }
        if let Some(m) = &self.resources.mig
            && !is_mig_profile(m)
        {
            return Err(invalid(
                "resources.mig",
                format!("`{m}` is not a MIG profile; they look like 1g.10gb or 3g.40gb"),
            ));
        }
        if self.resources.gpus.is_some() && self.resources.gpu_memory.is_some() {
            return Err(invalid(
                "resources",
                "ask for whole GPUs (`gpus`) or a slice (`gpu_memory`), not both".into(),
            ));
        }
        if self.retries.max > MAX_RETRIES {
            return Err(invalid(
                "retries.max",
                format!("at most {MAX_RETRIES} retries"),
            ));
        }
        if let Some(t) = self.timeout
            && t.0 == 0
        {
            return Err(invalid(
                "timeout",
                "a timeout must be longer than 0s".into(),
            ));
        }
        if self.image.is_none() && (!self.mounts.is_empty() || !self.ports.is_empty()) {
            let field = if self.mounts.is_empty() {
                "ports"
            } else {
                "mounts"
            };
            return Err(invalid(
                field,
                format!("`{field}` are for container jobs: give `image` too"),
            ));
        }
        if let Some(image) = &self.image
            && (image.trim().is_empty()
                || image.len() > 255
                || image.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(invalid("image", format!("`{image}` is not an image name")));
        }
        for m in &self.mounts {
            let target = m.target.as_ref().unwrap_or(&m.source);
            if !m.source.is_absolute() || !target.is_absolute() {
                return Err(invalid(
                    "mounts",
                    format!("mount paths are absolute: `{}`", m.source.display()),
                ));
            }
            if [&m.source, target].iter().any(|p| {
                p.components().any(|c| c == std::path::Component::ParentDir)
                    || p.to_string_lossy().contains([':', '\0'])
            }) {
                return Err(invalid(
                    "mounts",
                    format!("`{}` may not contain `..` or `:`", m.source.display()),
                ));
            }
        }
        if self.ports.contains(&0) {
            return Err(invalid("ports", "port 0 is not a port".into()));
        }
        // A cluster's existence is the queue's to check: clusters come and go.
        if let Some(target) = &self.target
            && target != crate::TARGET_LOCAL
            && target != crate::executor::TARGET_AUTO
            && crate::executor::check_cluster_name(target).is_err()
        {
            return Err(SpecError::UnknownTarget(target.clone()));
        }
        for (k, values) in &self.array {
            if !is_env_name(k) {
                return Err(invalid(
                    "array",
                    format!("`{k}` is not usable as an environment variable name"),
                ));
            }
            if let Err(why) = values.check() {
                return Err(invalid("array", format!("`{k}` {why}")));
            }
        }
        let count = self.array_len();
        if count > MAX_ARRAY_JOBS {
            return Err(invalid(
                "array",
                format!(
                    "the sweep makes {} jobs; at most {MAX_ARRAY_JOBS} in one submission",
                    if count == usize::MAX {
                        "too many to count".to_string()
                    } else {
                        count.to_string()
                    }
                ),
            ));
        }
        self.validate_secrets()?;
        for o in &self.outputs {
            let p = std::path::Path::new(o);
            if p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
                return Err(invalid(
                    "outputs",
                    format!("`{o}` must be a relative path inside the output folder"),
                ));
            }
        }
        Ok(())
    }

    /// `secrets`: names that can exist, each once, and variables that are names and are not
    /// also set by `env` (which of the two would win is not for Petri to guess).
    fn validate_secrets(&self) -> Result<(), SpecError> {
        let invalid = |message: String| SpecError::Invalid {
            field: "secrets".into(),
            message,
        };
        let mut seen = std::collections::HashSet::new();
        for s in &self.secrets {
            if !is_secret_name(&s.name) {
                return Err(invalid(format!(
                    "`{}` is not a secret name ({SECRET_NAME_RULE})",
                    s.name
                )));
            }
            if !seen.insert(s.name.as_str()) {
                return Err(invalid(format!("`{}` is named twice", s.name)));
            }
            if let Some(env) = &s.env
                && !is_env_name(env)
            {
                return Err(invalid(format!(
                    "`{env}` (for `{}`) is not an environment variable name",
                    s.name
                )));
            }
            let variable = s.env.as_deref().unwrap_or(&s.name);
            if self.env.contains_key(variable) {
                return Err(invalid(format!(
                    "`{variable}` is set by both `env` and `secrets`; drop one"
                )));
            }
        }
        Ok(())
    }

    /// How many jobs the sweep makes (1 without `array`).
    pub fn array_len(&self) -> usize {
        self.array
            .values()
            .try_fold(1u128, |acc, v| acc.checked_mul(v.len()))
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(usize::MAX)
    }

    /// Expands `array` into one spec per combination, in a stable order, each with its values in
    /// `env` and the combination returned beside it.
    pub fn expand(&self) -> Vec<(JobSpec, BTreeMap<String, String>)> {
        if self.array.is_empty() {
            return vec![(self.clone(), BTreeMap::new())];
        }
        if self.array_len() > MAX_ARRAY_JOBS {
            // Unvalidated: expanding it could take all memory. Validation refuses it by name.
            return Vec::new();
        }
        let mut combos: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
        for (k, values) in &self.array {
            let values = values.values();
            let mut next = Vec::with_capacity(combos.len() * values.len());
            for combo in &combos {
                for v in &values {
                    let mut c = combo.clone();
                    c.insert(k.clone(), v.clone());
                    next.push(c);
                }
            }
            combos = next;
        }
        // Clone a template without the sweep: cloning the sweep into every job is quadratic.
        let mut template = self.clone();
        template.array.clear();
        combos
            .into_iter()
            .map(|combo| {
                let mut spec = template.clone();
                for (k, v) in &combo {
                    spec.env.insert(k.clone(), v.clone());
                }
                (spec, combo)
            })
            .collect()
    }
}

/// A YAML error as the user should read it: a mistyped field gets the name it was probably meant
/// to be.
fn syntax(e: serde_yaml_ng::Error) -> SpecError {
    SpecError::Syntax(did_you_mean(&e.to_string()))
}

/// Rewrites serde's message for a mistyped name, "unknown field `comand`, expected one of `name`,
/// `command`, …" (or the same for an unknown variant), into "unknown field `comand`; did you mean
/// `command`?" when one known name is close to it. What surrounds it stays: a path in front
/// (`resources: `), the position behind (` at line 2 column 1`, from serde_yaml_ng and
/// serde_json alike). With no close name, or for any other message, the message comes back as it
/// was: serde's list of the known names is then the best help.
pub fn did_you_mean(message: &str) -> String {
    for kind in ["unknown field `", "unknown variant `"] {
        let Some(start) = message.find(kind) else {
            continue;
        };
        let after = &message[start + kind.len()..];
        let Some(end) = after.find("`, expected ") else {
            continue;
        };
        let unknown = &after[..end];
        let list = &after[end + "`, expected ".len()..];
        let (known, tail) = backticked_list(list.strip_prefix("one of ").unwrap_or(list));
        return match closest(unknown, &known) {
            Some(best) => format!(
                "{}{kind}{unknown}`; did you mean `{best}`?{tail}",
                &message[..start]
            ),
            None => message.to_string(),
        };
    }
    message.to_string()
}

/// The names of serde's "`a`", "`a` or `b`", "`a`, `b`, `c`" and what follows the list.
fn backticked_list(mut text: &str) -> (Vec<&str>, &str) {
    let mut names = Vec::new();
    while let Some(rest) = text.strip_prefix('`') {
        let Some(end) = rest.find('`') else {
            break;
        };
        names.push(&rest[..end]);
        text = &rest[end + 1..];
        match [", `", " or `"].iter().find(|sep| text.starts_with(**sep)) {
            Some(sep) => text = &text[sep.len() - 1..],
            None => break,
        }
    }
    (names, text)
}

/// The known name the unknown one was probably meant to be: the nearest by edit distance when
/// that is at most a third of its length (one edit for short names), else one it begins
/// (`gpu_mem` for `gpu_memory`).
fn closest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    let typed = unknown.to_lowercase();
    let (best, distance) = known
        .iter()
        .map(|k| (*k, edit_distance(&typed, &k.to_lowercase())))
        .min_by_key(|(_, d)| *d)?;
    if distance <= typed.chars().count().max(3) / 3 {
        return Some(best);
    }
    known
        .iter()
        .copied()
        .find(|k| typed.chars().count() >= 3 && k.to_lowercase().starts_with(&typed))
}

/// The known name an unknown one was probably meant to be, by the same rule as
/// [`did_you_mean`] (for names outside serde's messages: steps, params, components).
pub fn suggest<'a>(unknown: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let known: Vec<&str> = known.into_iter().collect();
    closest(unknown, &known).map(str::to_string)
}

/// Levenshtein distance: insertions, deletions and substitutions of one character.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_mig_profile(s: &str) -> bool {
    // <n>g.<m>gb, optionally with a suffix like +me
    let base = s.split('+').next().unwrap_or("");
    let Some((g, mem)) = base.split_once('.') else {
        return false;
    };
    g.strip_suffix('g').is_some_and(|n| n.parse::<u8>().is_ok())
        && mem
            .strip_suffix("gb")
            .is_some_and(|n| n.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_design_example_parses() {
        let spec = JobSpec::from_yaml(
            r#"
name: train-mlp
command: [python, train.py, --lr, "0.01"]
workdir: experiments/mlp
env: {EPOCHS: "20"}
resources: {cpus: 2, memory: 4GiB, gpu_memory: 6GiB}
priority: 10
retries: {max: 2, backoff: 30s}
timeout: 2h
outputs: [checkpoints/]
target: local
"#,
        )
        .unwrap();
        spec.validate().unwrap();
        assert_eq!(spec.resources.cpu_millis(), 2000);
        assert_eq!(spec.retries.backoff.0, 30_000);
        assert_eq!(spec.timeout.unwrap().0, 7_200_000);
    }

    #[test]
    fn retries_as_a_plain_number_is_the_max() {
        let spec = JobSpec::from_yaml("run: 'true'\nretries: 2\n").unwrap();
        assert_eq!(spec.retries.max, 2);
        assert_eq!(spec.retries.backoff.0, 0);
        let err = JobSpec::from_yaml("run: 'true'\nretries: -1\n").unwrap_err();
        assert!(err.to_string().contains("cannot be negative"), "{err}");
        let err = JobSpec::from_yaml("run: 'true'\nretries: {max: 1, mux: 2}\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `mux`"), "{err}");
        let err = JobSpec::from_yaml("run: 'true'\nretries: often\n").unwrap_err();
        assert!(err.to_string().contains("a number of retries"), "{err}");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let err = JobSpec::from_yaml("command: [true]\ncomand: [x]\n").unwrap_err();
        assert!(err.to_string().contains("comand"), "{err}");
        let err = JobSpec::from_yaml("command: [true]\nresources: {gpu: 1}\n").unwrap_err();
        assert!(err.to_string().contains("gpu"), "{err}");
    }

    #[test]
    fn a_mistyped_field_gets_a_suggestion_and_its_position() {
        let text = "command: [sleep, 1]\ncomand: [x]\n";
        let expected = "the job spec does not parse: unknown field `comand`; did you mean \
                        `command`? at line 2 column 1";
        assert_eq!(JobSpec::from_yaml(text).unwrap_err().to_string(), expected);
        let many = format!("command: [a]\n---\n{text}");
        let err = JobSpec::many_from_yaml(&many).unwrap_err().to_string();
        assert_eq!(err, expected.replace("line 2", "line 4"));
        let err = JobSpec::from_yaml("command: [a]\nresources: {gpu_mem: 4GiB}\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("resources: unknown field `gpu_mem`; did you mean `gpu_memory`?"),
            "{err}"
        );
    }

    #[test]
    fn a_file_of_several_specs_reads_each_as_one_spec_is_read() {
        let text = "---\ncommand: [sleep, 1]\nenv: {EPOCHS: 20}\n---\n---\nrun: 'true'\n";
        let specs = JobSpec::many_from_yaml(text).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(
            specs[0],
            JobSpec::from_yaml("command: [sleep, 1]\nenv: {EPOCHS: 20}").unwrap()
        );
        assert!(JobSpec::many_from_yaml("---\n---\n").is_err());
        let err = JobSpec::many_from_yaml("run: a\n---\nrun: a\npriority: high\n").unwrap_err();
        assert!(err.to_string().ends_with("at line 4 column 11"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let bad = [
            "run: ''",
            "command: [a]\nrun: b",
            "command: [a]\npriority: 5000",
            "command: [a]\nresources: {mig: big}",
            "command: [a]\nresources: {cpus: 0}",
            "command: [a]\narray: {lr: []}",
            "command: [a]\nenv: {'1X': y}",
            "command: [a]\noutputs: [../x]",
            "command: [a]\ntarget: 'Mars!'",
            "command: [a]\nsecrets: [../key]",
            "command: [a]\nsecrets: [A, A]",
            "command: [a]\nsecrets: [{name: a, env: 'not a name'}]",
            "command: [a]\nenv: {A: x}\nsecrets: [A]",
        ];
        for text in bad {
            let spec = JobSpec::from_yaml(text).unwrap();
            assert!(spec.validate().is_err(), "{text} should be rejected");
        }
    }

    #[test]
    fn secrets_are_named_in_either_form() {
        let spec = JobSpec::from_yaml(
            "command: [a]\nsecrets: [HF_TOKEN, {name: kaggle.json, env: KAGGLE_CONFIG}]",
        )
        .unwrap();
        spec.validate().unwrap();
        assert_eq!(spec.secrets[0], SecretUse::named("HF_TOKEN"));
        assert_eq!(spec.secrets[1].env.as_deref(), Some("KAGGLE_CONFIG"));
        let err = JobSpec::from_yaml("command: [a]\nsecret: [X]").unwrap_err();
        assert!(err.to_string().contains("did you mean `secrets`"), "{err}");
    }

    #[test]
    fn arrays_expand_to_the_cartesian_product() {
        let spec =
            JobSpec::from_yaml("command: [t]\narray: {lr: [a, b], bs: ['1', '2', '3']}").unwrap();
        let jobs = spec.expand();
        assert_eq!(jobs.len(), 6);
        assert_eq!(jobs[0].0.env["lr"], "a");
        assert_eq!(jobs[0].0.env["bs"], "1");
        assert!(jobs.iter().all(|(s, _)| s.array.is_empty()));
    }

    #[test]
    fn backoff_doubles() {
        let r = Retries {
            max: 3,
            backoff: Millis(1000),
            exit_codes: Vec::new(),
        };
        assert_eq!(r.delay_before(2).0, 1000);
        assert_eq!(r.delay_before(3).0, 2000);
        assert_eq!(r.delay_before(4).0, 4000);
    }

    const SPEC_FIELDS: &str = "expected one of `name`, `command`, `run`, `workdir`, `image`";

    #[test]
    fn a_close_name_is_suggested_and_the_position_kept() {
        assert_eq!(
            did_you_mean(&format!(
                "unknown field `comand`, {SPEC_FIELDS} at line 2 column 1"
            )),
            "unknown field `comand`; did you mean `command`? at line 2 column 1"
        );
        assert_eq!(
            did_you_mean("retries: unknown field `mux`, expected `max` or `backoff` at line 3"),
            "retries: unknown field `mux`; did you mean `max`? at line 3"
        );
        assert_eq!(
            did_you_mean("unknown field `Image`, expected `image`"),
            "unknown field `Image`; did you mean `image`?"
        );
        let resources = "unknown field `gpu_mem`, expected one of `cpus`, `gpus`, `gpu_memory`";
        assert_eq!(
            did_you_mean(resources),
            "unknown field `gpu_mem`; did you mean `gpu_memory`?"
        );
        assert_eq!(
            did_you_mean("unknown variant `runing`, expected `queued` or `running`"),
            "unknown variant `runing`; did you mean `running`?"
        );
    }

    #[test]
    fn without_a_close_name_the_known_ones_stay_listed() {
        for message in [
            format!("unknown field `gpus`, {SPEC_FIELDS} at line 2 column 1"),
            "unknown field `x`, there are no fields".to_string(),
            "invalid type: integer `1`, expected a string at line 1 column 5".to_string(),
            "unknown field `a`b`, expected `ab".to_string(),
        ] {
            assert_eq!(did_you_mean(&message), message);
        }
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("comand", "command"), 1);
        assert_eq!(edit_distance("memroy", "memory"), 2);
        assert_eq!(edit_distance("", "run"), 3);
        assert_eq!(edit_distance("gpus", "gpus"), 0);
    }
}
