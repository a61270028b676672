//! Components: a folder with a `component.yaml` (inputs, outputs, image, command) and its
//! scripts. The built-in ones ship inside the binary and are written out under the home at start;
//! the user's own are read from a folder. Both make the catalog that validation and the canvas's
//! palette use. A broken `component.yaml` is kept in the catalog with its error, never skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::spec::{OutputSpec, ValueType};

/// `component.yaml`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The image it runs in by default (a step may override it; none: a local process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub inputs: IndexMap<String, InputSpec>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub outputs: IndexMap<String, OutputSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schema(value_type = Object)]
    pub env: IndexMap<String, String>,
    /// Default resources, e.g. `{cpus: 1}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub resources: Option<serde_json::Value>,
}

/// A declared input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    #[serde(rename = "type", default = "string_type")]
    pub kind: ValueType,
    /// Without a default the input is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub default: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn string_type() -> ValueType {
    ValueType::String
}

/// Where a component comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Builtin,
    User,
}

/// A loaded component.
#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    pub spec: ComponentSpec,
    pub dir: PathBuf,
    pub source: Source,
    /// The hash of every file in its folder: a changed script invalidates cached steps.
    pub digest: String,
}

/// What the API lists: a component or why it could not be read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComponentInfo {
    pub name: String,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[schema(value_type = Object)]
    pub inputs: IndexMap<String, InputSpec>,
    #[schema(value_type = Object)]
    pub outputs: IndexMap<String, OutputSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Why the folder's `component.yaml` could not be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[schema(value_type = String)]
    pub dir: PathBuf,
}

/// The components a pipeline can use, by name: each loaded, or its error.
#[derive(Clone, Debug, Default)]
pub struct Components {
    pub by_name: BTreeMap<String, Result<Component, ComponentError>>,
}

/// A component folder that could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ComponentError {
    pub path: String,
    pub message: String,
    pub source_kind: Source,
}

impl Components {
    /// Reads every folder of `root` that holds a `component.yaml`; user components do not
    /// replace built-in ones of the same name (that is an error on the user's).
    pub fn read_dir(&mut self, root: &Path, source: Source) {
        let Ok(entries) = std::fs::read_dir(root) else {
            return;
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.join("component.yaml").is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let fallback = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let loaded = load(&dir, source);
            let name = match &loaded {
                Ok(c) => c.spec.name.clone(),
                Err(_) => fallback,
            };
            if let Some(Ok(existing)) = self.by_name.get(&name)
                && existing.source == Source::Builtin
                && source == Source::User
            {
                self.by_name.insert(
                    format!("{name} ({})", dir.display()),
                    Err(ComponentError {
                        path: dir.join("component.yaml").display().to_string(),
                        message: format!(
                            "a built-in component is called `{name}`; rename this one"
                        ),
                        source_kind: source,
                    }),
                );
                continue;
            }
            self.by_name.insert(name, loaded);
        }
    }

    pub fn get(&self, name: &str) -> Option<&Result<Component, ComponentError>> {
        self.by_name.get(name)
    }

    pub fn infos(&self) -> Vec<ComponentInfo> {
        self.by_name
            .iter()
            .map(|(name, c)| match c {
                Ok(c) => ComponentInfo {
                    name: name.clone(),
                    source: c.source,
                    description: c.spec.description.clone(),
                    inputs: c.spec.inputs.clone(),
                    outputs: c.spec.outputs.clone(),
                    image: c.spec.image.clone(),
                    error: None,
                    dir: c.dir.clone(),
                },
                Err(e) => ComponentInfo {
                    name: name.clone(),
                    source: e.source_kind,
                    description: None,
                    inputs: IndexMap::new(),
                    outputs: IndexMap::new(),
                    image: None,
                    error: Some(e.message.clone()),
                    dir: PathBuf::from(&e.path),
                },
            })
            .collect()
    }
}

/// Loads one component folder.
pub fn load(dir: &Path, source: Source) -> Result<Component, ComponentError> {
    let file = dir.join("component.yaml");
    let fail = |message: String| ComponentError {
        path: file.display().to_string(),
        message,
        source_kind: source,
    };
    let text = std::fs::read_to_string(&file).map_err(|e| fail(e.to_string()))?;
    // serde_yaml_ng's message ends with its own "at line L column C".
    let spec: ComponentSpec = serde_yaml_ng::from_str(&text).map_err(|e| fail(e.to_string()))?;
    if spec.command.is_some() == spec.run.is_some() {
        return Err(fail("give either `command` or `run`".into()));
    }
    for (k, o) in &spec.outputs {
        if o.kind.is_file() && o.path.is_none() {
            return Err(fail(format!(
                "output `{k}` is a {:?} without a `path`",
                o.kind
            )));
        }
    }
    for (k, i) in &spec.inputs {
        if !crate::validate::is_name(k) {
            return Err(fail(format!(
                "`{k}` is not an input name (letters, digits, _ and -)"
            )));
        }
        if let Some(d) = &i.default
            && let Err(m) = crate::validate::check_type(i.kind, d)
        {
            return Err(fail(format!("the default of `{k}`: {m}")));
        }
    }
    Ok(Component {
        digest: digest_dir(dir).map_err(|e| fail(e.to_string()))?,
        spec,
        dir: dir.to_path_buf(),
        source,
    })
}

/// sha256 over the folder's files (relative path and content), in path order.
fn digest_dir(dir: &Path) -> std::io::Result<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "__pycache__") {
                    stack.push(p);
                }
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        h.update(
            f.strip_prefix(dir)
                .unwrap_or(&f)
                .to_string_lossy()
                .as_bytes(),
        );
        h.update([0]);
        h.update(std::fs::read(&f)?);
        h.update([0]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Writes the built-in components (given as relative path → bytes) under `root`, replacing what
/// an older binary wrote, and returns the folder.
pub fn install_builtin(root: &Path, files: &[(&str, &[u8])]) -> std::io::Result<PathBuf> {
    let staging = root.with_extension("new");
    let _ = std::fs::remove_dir_all(&staging);
    for (rel, bytes) in files {
        let path = staging.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
    }
    std::fs::create_dir_all(&staging)?;
    let _ = std::fs::remove_dir_all(root);
    std::fs::rename(&staging, root)?;
    Ok(root.to_path_buf())
}
