//! [`Registry`]: the handle the daemon opens and the API calls. Every call runs its SQLite work
//! on a blocking thread, changes in one transaction. A version's files are read from the run's
//! (or logged model's) artifacts in the artifact store, checked ([`crate::validate`]), and held
//! there as `model:<name>/<version>`, so they stay however the run changes.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use petri_artifacts::{Artifacts, Digest};
use petri_tracking::Tracking;
use rusqlite::{Connection, OptionalExtension, params};

use crate::db;
use crate::error::{RegistryError, Result};
use crate::filter::{Filter, Subject};
use crate::validate;
use crate::wire::*;

/// The holder prefix of a version's files in the artifact store.
pub const HOLDER_PREFIX: &str = "model:";
/// The holder prefix of uploaded files not yet registered.
pub const UPLOAD_PREFIX: &str = "upload:";
/// Where the MLflow client downloads an uploaded version's files from:
/// `mlflow-artifacts:/registry/<name>/<version>` (experiment ids are numbers, so no run's
/// path starts so).
pub const REGISTRY_ARTIFACTS: &str = "registry";

/// The most registered models one search page holds (MLflow's limit).
const MAX_MODELS: usize = 1000;
/// The most versions one search page holds (MLflow's client asks for 10,000 by default).
const MAX_VERSIONS: usize = 200_000;

/// Finds the pipeline run a job was a step of (the daemon answers from the queue).
pub type PipelineOf = Arc<dyn Fn(String) -> futures_lite::BoxedOption + Send + Sync + 'static>;

/// Small boxed-future alias, so the crate needs no futures dependency.
pub mod futures_lite {
    /// A boxed future of an optional pipeline run id.
    pub type BoxedOption =
        std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + 'static>>;
}

/// The model registry. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
    tracking: Tracking,
    artifacts: Artifacts,
    pipeline_of: Option<PipelineOf>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn holder(name: &str, version: i64) -> String {
    format!("{HOLDER_PREFIX}{name}/{version}")
}

fn registry_location(name: &str, version: i64) -> String {
    format!("mlflow-artifacts:/{REGISTRY_ARTIFACTS}/{name}/{version}")
}

/// What [`Registry::insert_version`] stores.
struct NewVersion {
    name: String,
    /// Where the files were read from (`mlflow-artifacts:/…`); empty for an upload.
    storage: String,
    source: String,
    run_id: Option<String>,
    model_id: Option<String>,
    description: Option<String>,
    tags: Vec<KeyValue>,
    files: Vec<VersionFile>,
    /// The upload the files came from, used up when the version is made.
    upload: Option<String>,
    /// The job that registered it (with its token), for the lineage.
    job: Option<String>,
}

fn check_upload_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(RegistryError::invalid(format!(
            "Invalid upload id '{id}': 1 to 64 letters, digits, '-' or '_'."
        )));
    }
    Ok(())
}

/// A file's path inside a version: relative, `/`-separated, no `.` or `..` segment, no
/// control characters. Answers it normalised (no leading or doubled `/`).
fn check_file_path(path: &str) -> Result<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let bad = parts.is_empty()
        || path.starts_with('/')
        || path.len() > 1024
        || path.contains('\\')
        || path.chars().any(char::is_control)
        || parts.iter().any(|p| *p == "." || *p == "..");
    if bad {
        return Err(RegistryError::invalid(format!(
            "Invalid file path '{path}': it must be relative and stay inside the version (no              '..', no leading '/')."
        )));
    }
    Ok(parts.join("/"))
}

/// Checks a registered model's name: not empty, no `/` (it is a path segment of the holder and
/// of `models:/<name>/<version>` URIs), no control characters.
fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(RegistryError::invalid(
            "Registered model name cannot be empty.",
        ));
    }
    if name.contains('/') || name.contains(':') || name.chars().any(char::is_control) {
        return Err(RegistryError::invalid(format!(
            "Invalid model name '{name}': it may not hold '/', ':' or control characters."
        )));
    }
    if name.len() > 256 {
        return Err(RegistryError::invalid(
            "Registered model name is longer than 256 characters.",
        ));
    }
    Ok(())
}

/// Parses a version number as MLflow sends it (a string).
pub fn parse_version(v: &str) -> Result<i64> {
    v.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            RegistryError::invalid(format!(
                "Parameter 'version' must be a positive integer, got '{v}'."
            ))
        })
}

/// MLflow's rule for aliases: letters, digits, `_` and `-`; not `latest`, not `v<number>`.
fn check_alias(alias: &str) -> Result<()> {
    let bad = alias.is_empty()
        || alias.len() > 255
        || !alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bad {
        return Err(RegistryError::invalid(format!(
            "Invalid alias name: '{alias}'. Names may only contain alphanumerics, underscores \
             (_), and dashes (-)."
        )));
    }
    let lower = alias.to_ascii_lowercase();
    let reserved = lower == "latest"
        || (lower.starts_with('v')
            && lower.len() > 1
            && lower[1..].bytes().all(|b| b.is_ascii_digit()));
    if reserved {
        return Err(RegistryError::invalid(format!(
            "Invalid alias name: '{alias}'. 'latest' and version-like names (v1, V2) are \
             reserved."
        )));
    }
    Ok(())
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 250 || key.chars().any(char::is_control) {
        return Err(RegistryError::invalid(format!("Invalid tag key: '{key}'.")));
    }
    Ok(())
}

fn no_model(name: &str) -> RegistryError {
    RegistryError::not_found(format!("Registered Model with name={name} not found"))
}

fn no_version(name: &str, v: i64) -> RegistryError {
    RegistryError::not_found(format!(
        "Model Version (name={name}, version={v}) not found"
    ))
}

impl Registry {
    /// Opens (creating and migrating) the registry database at `path`, normally
    /// `PETRI_HOME/registry.db`. Versions are read from `tracking`'s runs and logged models and
    /// stored in `artifacts`.
    pub fn open(
        path: &Path,
        tracking: Tracking,
        artifacts: Artifacts,
        pipeline_of: Option<PipelineOf>,
    ) -> Result<Registry> {
        let conn = db::open(path)?;
        Ok(Registry {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                conn: Mutex::new(conn),
                tracking,
                artifacts,
                pipeline_of,
            }),
        })
    }

    /// Runs `f` in one transaction on a blocking thread; commits when it succeeds.
    async fn tx<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>, &Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.conn.lock().map_err(|_| {
                RegistryError::Task("the registry's connection was poisoned".into())
            })?;
            let sql = |e| db::db_error(&inner.path, e);
            let tx = conn.transaction().map_err(sql)?;
            let out = f(&tx, &inner)?;
            tx.commit().map_err(sql)?;
            Ok(out)
        })
        .await
        .map_err(|e| RegistryError::Task(e.to_string()))?
    }

    // ---- registered models -------------------------------------------------------------

    /// Creates a registered model (`RESOURCE_ALREADY_EXISTS` when the name is taken).
    pub async fn create_model(&self, req: CreateModel) -> Result<RegisteredModel> {
        check_name(&req.name)?;
        for t in &req.tags {
            check_key(&t.key)?;
        }
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            if model_exists(c, &req.name).map_err(sql)? {
                return Err(RegistryError::AlreadyExists(format!(
                    "Registered Model (name={}) already exists.",
                    req.name
                )));
            }
            let now = now_ms();
            c.execute(
                "INSERT INTO models (name, description, creation_time, last_updated_time) \
                 VALUES (?1, ?2, ?3, ?3)",
                params![req.name, req.description.unwrap_or_default(), now],
            )
            .map_err(sql)?;
            for t in req.tags {
                c.execute(
                    "INSERT OR REPLACE INTO model_tags VALUES (?1, ?2, ?3)",
                    params![req.name, t.key, t.value],
                )
                .map_err(sql)?;
            }
            tracing::info!(model = %req.name, "registered model created");
            load_model(c, &req.name)
                .map_err(sql)?
                .ok_or_else(|| no_model(&req.name))
        })
        .await
    }

    /// A registered model with its latest version, tags and aliases.
    pub async fn get_model(&self, name: &str) -> Result<RegisteredModel> {
        let name = name.to_string();
        self.tx(move |c, i| {
            load_model(c, &name)
                .map_err(|e| db::db_error(&i.path, e))?
                .ok_or_else(|| no_model(&name))
        })
        .await
    }

    /// Renames a registered model; its versions, tags, aliases and their history follow.
    pub async fn rename_model(&self, name: &str, new_name: &str) -> Result<RegisteredModel> {
        check_name(new_name)?;
        let (name, new_name) = (name.to_string(), new_name.to_string());
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            if !model_exists(c, &name).map_err(sql)? {
                return Err(no_model(&name));
            }
            if model_exists(c, &new_name).map_err(sql)? {
                return Err(RegistryError::AlreadyExists(format!(
                    "Registered Model (name={new_name}) already exists."
                )));
            }
            let files = all_files(c, &name).map_err(sql)?;
            c.execute(
                "UPDATE models SET name = ?2, last_updated_time = ?3 WHERE name = ?1",
                params![name, new_name, now_ms()],
            )
            .map_err(sql)?;
            // The holders carry the name: hold under the new one before letting the old go.
            for (v, d) in &files {
                i.artifacts.reference(d, &holder(&new_name, *v))?;
            }
            for v in files
                .iter()
                .map(|(v, _)| *v)
                .collect::<std::collections::BTreeSet<_>>()
            {
                i.artifacts.release(&holder(&name, v))?;
            }
            tracing::info!(model = %name, new_name = %new_name, "registered model renamed");
            load_model(c, &new_name)
                .map_err(sql)?
                .ok_or_else(|| no_model(&new_name))
        })
        .await
    }

    /// Changes a registered model's description.
    pub async fn update_model(&self, name: &str, description: String) -> Result<RegisteredModel> {
        let name = name.to_string();
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            let n = c
                .execute(
                    "UPDATE models SET description = ?2, last_updated_time = ?3 WHERE name = ?1",
                    params![name, description, now_ms()],
                )
                .map_err(sql)?;
            if n == 0 {
                return Err(no_model(&name));
            }
            load_model(c, &name)
                .map_err(sql)?
                .ok_or_else(|| no_model(&name))
        })
        .await
    }

    /// Deletes a registered model with every version; the store keeps their bytes until the
    /// garbage collector finds nothing else holds them.
    pub async fn delete_model(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            let versions: Vec<i64> = c
                .prepare("SELECT version FROM versions WHERE model = ?1")
                .and_then(|mut s| s.query_map([&name], |r| r.get(0))?.collect())
                .map_err(sql)?;
            let n = c
                .execute("DELETE FROM models WHERE name = ?1", [&name])
                .map_err(sql)?;
            if n == 0 {
                return Err(no_model(&name));
            }
            for v in versions {
                i.artifacts.release(&holder(&name, v))?;
            }
            tracing::info!(model = %name, "registered model deleted");
            Ok(())
        })
        .await
    }

    /// Registered models that pass `search.filter` (`name`, `tags.<k>`), by name unless ordered
    /// otherwise; the page token is the offset of the next page.
    pub async fn search_models(
        &self,
        search: Search,
    ) -> Result<(Vec<RegisteredModel>, Option<String>)> {
        let filter = Filter::parse(&search.filter, false).map_err(RegistryError::Invalid)?;
        let (offset, limit) = page(&search, MAX_MODELS)?;
        let order = search.order_by.clone();
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            let names: Vec<String> = c
                .prepare("SELECT name FROM models ORDER BY name")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .map_err(sql)?;
            let mut all = Vec::new();
            for n in names {
                let Some(m) = load_model(c, &n).map_err(sql)? else {
                    continue;
                };
                let tags: HashMap<String, String> = m
                    .tags
                    .iter()
                    .map(|t| (t.key.clone(), t.value.clone()))
                    .collect();
                let s = Subject {
                    name: &m.name,
                    tags: &tags,
                    run_id: None,
                    source: None,
                    version: None,
                };
                if filter.matches(&s) {
                    all.push(m);
                }
            }
            sort_by(&mut all, &order, |m, key| match key {
                "name" => Ok(Sortable::Text(m.name.clone())),
                "timestamp" | "last_updated_timestamp" => {
                    Ok(Sortable::Num(m.last_updated_timestamp))
                }
                "creation_timestamp" => Ok(Sortable::Num(m.creation_timestamp)),
                other => Err(other.to_string()),
            })?;
            Ok(cut(all, offset, limit))
        })
        .await
    }

    /// The latest version of a model (MLflow's latest per stage; Petri has only `None`).
    /// The newest version in each of `stages` (every stage when empty), as MLflow's
    /// `get-latest-versions` answers.
    pub async fn latest_versions(
        &self,
        name: &str,
        stages: &[String],
    ) -> Result<Vec<ModelVersion>> {
        let wanted: Vec<&'static str> = stages
            .iter()
            .map(|s| parse_stage(s))
            .collect::<Result<_>>()?;
        let latest = self.get_model(name).await?.latest_versions;
        Ok(latest
            .into_iter()
            .filter(|v| wanted.is_empty() || wanted.contains(&v.current_stage.as_str()))
            .collect())
    }

    /// Moves a version to MLflow's `stage`; with `archive_existing`, the versions in that stage
    /// (Staging or Production) go to Archived. Stages are MLflow's older mechanism, kept for the
    /// client code that still uses them; aliases keep a history, stages do not.
    pub async fn transition_stage(
        &self,
        name: &str,
        version: i64,
        stage: &str,
        archive_existing: bool,
    ) -> Result<ModelVersion> {
        let stage = parse_stage(stage)?;
        let name = name.to_string();
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            if !version_exists(c, &name, version).map_err(sql)? {
                return Err(no_version(&name, version));
            }
            let now = now_ms();
            if archive_existing && matches!(stage, "Staging" | "Production") {
                c.execute(
                    "UPDATE versions SET stage = 'Archived', last_updated_time = ?3 \
                     WHERE model = ?1 AND stage = ?2 AND version != ?4",
                    params![name, stage, now, version],
                )
                .map_err(sql)?;
            }
            c.execute(
                "UPDATE versions SET stage = ?3, last_updated_time = ?4 \
                 WHERE model = ?1 AND version = ?2",
                params![name, version, stage, now],
            )
            .map_err(sql)?;
            load_version(c, &name, version)
                .map_err(sql)?
                .ok_or_else(|| no_version(&name, version))
        })
        .await
    }

    /// Sets a tag of a registered model.
    pub async fn set_model_tag(&self, name: &str, key: &str, value: &str) -> Result<()> {
        check_key(key)?;
        let (name, key, value) = (name.to_string(), key.to_string(), value.to_string());
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            if !model_exists(c, &name).map_err(sql)? {
                return Err(no_model(&name));
            }
            c.execute(
                "INSERT OR REPLACE INTO model_tags VALUES (?1, ?2, ?3)",
                params![name, key, value],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    /// Deletes a tag of a registered model (`RESOURCE_DOES_NOT_EXIST` when it has none).
    pub async fn delete_model_tag(&self, name: &str, key: &str) -> Result<()> {
        let (name, key) = (name.to_string(), key.to_string());
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            if !model_exists(c, &name).map_err(sql)? {
                return Err(no_model(&name));
            }
            let n = c
                .execute(
                    "DELETE FROM model_tags WHERE model = ?1 AND key = ?2",
                    params![name, key],
                )
                .map_err(sql)?;
            if n == 0 {
                return Err(RegistryError::not_found(format!(
                    "No tag with name: {key} in registered model {name}."
                )));
            }
            Ok(())
        })
        .await
    }

    // ---- aliases -----------------------------------------------------------------------

    /// Points `alias` at `version` (moving it if it points elsewhere) and records the move.
    pub async fn set_alias(&self, name: &str, alias: &str, version: i64, user: &str) -> Result<()> {
        check_alias(alias)?;
        let (name, alias, user) = (name.to_string(), alias.to_string(), user.to_string());
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            if !model_exists(c, &name).map_err(sql)? {
                return Err(no_model(&name));
            }
            if !version_exists(c, &name, version).map_err(sql)? {
                return Err(no_version(&name, version));
            }
            let from = alias_version(c, &name, &alias).map_err(sql)?;
            if from == Some(version) {
                return Ok(());
            }
            c.execute(
                "INSERT OR REPLACE INTO aliases VALUES (?1, ?2, ?3)",
                params![name, alias, version],
            )
            .map_err(sql)?;
            record_move(c, &name, &alias, from, Some(version), &user).map_err(sql)?;
            tracing::info!(model = %name, alias = %alias, ?from, to = version, user = %user, "alias moved");
            Ok(())
        })
        .await
    }

    /// Removes an alias and records it (`RESOURCE_DOES_NOT_EXIST` for an unknown model; an
    /// alias that is not there is a no-op, as in MLflow).
    pub async fn delete_alias(&self, name: &str, alias: &str, user: &str) -> Result<()> {
        let (name, alias, user) = (name.to_string(), alias.to_string(), user.to_string());
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            if !model_exists(c, &name).map_err(sql)? {
                return Err(no_model(&name));
            }
            let Some(from) = alias_version(c, &name, &alias).map_err(sql)? else {
                return Ok(());
            };
            c.execute(
                "DELETE FROM aliases WHERE model = ?1 AND alias = ?2",
                params![name, alias],
            )
            .map_err(sql)?;
            record_move(c, &name, &alias, Some(from), None, &user).map_err(sql)?;
            Ok(())
        })
        .await
    }

    /// The version `alias` points at.
    pub async fn version_by_alias(&self, name: &str, alias: &str) -> Result<ModelVersion> {
        let (name, alias) = (name.to_string(), alias.to_string());
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            if !model_exists(c, &name).map_err(sql)? {
                return Err(no_model(&name));
            }
            let v = alias_version(c, &name, &alias)
                .map_err(sql)?
                .ok_or_else(|| {
                    RegistryError::not_found(format!("Registered model alias {alias} not found."))
                })?;
            load_version(c, &name, v)
                .map_err(sql)?
                .ok_or_else(|| no_version(&name, v))
        })
        .await
    }

    /// Every move of every alias of a model, oldest first.
    pub async fn alias_history(&self, name: &str) -> Result<Vec<AliasEvent>> {
        let name = name.to_string();
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            if !model_exists(c, &name).map_err(sql)? {
                return Err(no_model(&name));
            }
            c.prepare(
                "SELECT alias, from_version, to_version, user_id, time FROM alias_events \
                 WHERE model = ?1 ORDER BY id",
            )
            .and_then(|mut s| {
                s.query_map([&name], |r| {
                    Ok(AliasEvent {
                        alias: r.get(0)?,
                        from_version: r.get(1)?,
                        to_version: r.get(2)?,
                        user: r.get(3)?,
                        time: r.get(4)?,
                    })
                })?
                .collect()
            })
            .map_err(sql)
        })
        .await
    }

    // ---- versions ------------------------------------------------------------------------

    /// Registers a new version from `req.source`: a run's artifact (`runs:/<run>/<path>`,
    /// `mlflow-artifacts:/<experiment>/<run>/artifacts/<path>`) or a logged model
    /// (`models:/m-…`). The files are checked; a broken Petri-format model is refused with
    /// `INVALID_MODEL` and nothing is registered.
    pub async fn create_version(&self, req: CreateVersion, user: &str) -> Result<ModelVersion> {
        for t in &req.tags {
            check_key(&t.key)?;
        }
        // The model first, so a typo in its name is not an error about the source.
        self.get_model(&req.name).await?;
        let (location, source_run) = self.resolve_source(&req.source).await?;
        let files = self.collect_files(&location).await?;
        let run_id = req.run_id.clone().filter(|r| !r.is_empty()).or(source_run);
        let model_id = req
            .model_id
            .clone()
            .filter(|m| !m.is_empty())
            .or_else(|| req.source.strip_prefix("models:/").map(str::to_string));
        let made = self
            .insert_version(
                NewVersion {
                    name: req.name,
                    storage: format!("mlflow-artifacts:/{location}"),
                    source: req.source,
                    run_id,
                    model_id,
                    description: req.description,
                    tags: req.tags,
                    files,
                    upload: None,
                    job: req.job,
                },
                user,
            )
            .await?;
        Ok(made.version)
    }

    /// Keeps one file of an upload (`petri model register NAME PATH` sends each file of PATH
    /// this way), streamed into the artifact store as it arrives. `upload` is the client's id
    /// for the set of files (letters, digits, `-`, `_`); `path` is relative and stays inside it.
    /// Uploads that never become a version are dropped after a day.
    pub async fn stage_file(
        &self,
        upload: &str,
        path: &str,
        reader: impl Read + Send + 'static,
    ) -> Result<VersionFile> {
        check_upload_id(upload)?;
        let path = check_file_path(path)?;
        let upload = upload.to_string();
        // Streamed into the store first, without the registry's connection (a large file takes
        // a while); only the row is written in the transaction.
        let artifacts = self.inner.artifacts.clone();
        let hold = format!("{UPLOAD_PREFIX}{upload}");
        let stored = tokio::task::spawn_blocking(move || artifacts.put_reader(reader, &hold))
            .await
            .map_err(|e| RegistryError::Task(e.to_string()))??;
        let file = VersionFile {
            path,
            digest: stored.digest.to_string(),
            size: stored.size,
        };
        let row = file.clone();
        self.tx(move |c, i| {
            c.execute(
                "INSERT OR REPLACE INTO uploads VALUES (?1, ?2, ?3, ?4, ?5)",
                params![upload, row.path, row.digest, row.size as i64, now_ms()],
            )
            .map_err(|e| db::db_error(&i.path, e))?;
            Ok(())
        })
        .await?;
        Ok(file)
    }

    /// Registers a new version of `name` from the files uploaded as `upload` (see
    /// [`Registry::stage_file`]); the upload is used up.
    pub async fn create_version_from_upload(
        &self,
        name: &str,
        upload: &str,
        description: Option<String>,
        tags: Vec<KeyValue>,
        user: &str,
    ) -> Result<VersionDetail> {
        check_upload_id(upload)?;
        for t in &tags {
            check_key(&t.key)?;
        }
        self.get_model(name).await?;
        let id = upload.to_string();
        let files = self
            .tx(move |c, i| {
                c.prepare("SELECT path, digest, size FROM uploads WHERE id = ?1 ORDER BY path")
                    .and_then(|mut s| {
                        s.query_map([&id], |r| {
                            Ok(VersionFile {
                                path: r.get(0)?,
                                digest: r.get(1)?,
                                size: r.get::<_, i64>(2)? as u64,
                            })
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(|e| db::db_error(&i.path, e))
            })
            .await?;
        if files.is_empty() {
            return Err(RegistryError::invalid(format!(
                "no files were uploaded as `{upload}` (or the upload is more than a day old)"
            )));
        }
        self.insert_version(
            NewVersion {
                name: name.to_string(),
                storage: String::new(),
                source: format!("upload:{upload}"),
                run_id: None,
                model_id: None,
                description,
                tags,
                files,
                upload: Some(upload.to_string()),
                job: None,
            },
            user,
        )
        .await
    }

    /// Drops uploads older than `age_ms` that never became a version (their blobs are released
    /// for the garbage collector).
    pub async fn drop_stale_uploads(&self, age_ms: i64) -> Result<usize> {
        let cutoff = now_ms() - age_ms;
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            let ids: Vec<String> = c
                .prepare("SELECT DISTINCT id FROM uploads GROUP BY id HAVING max(time) < ?1")
                .and_then(|mut s| s.query_map([cutoff], |r| r.get(0))?.collect())
                .map_err(sql)?;
            for id in &ids {
                c.execute("DELETE FROM uploads WHERE id = ?1", [id])
                    .map_err(sql)?;
                i.artifacts.release(&format!("{UPLOAD_PREFIX}{id}"))?;
            }
            Ok(ids.len())
        })
        .await
    }

    /// Checks `new.files` and stores the version: a broken Petri-format model is refused with
    /// `INVALID_MODEL` and nothing is registered.
    async fn insert_version(&self, new: NewVersion, user: &str) -> Result<VersionDetail> {
        if new.files.is_empty() {
            return Err(RegistryError::InvalidModel {
                source_uri: new.source.clone(),
                why: "there are no files there".into(),
            });
        }
        let inspected =
            self.inspect(&new.files)
                .await
                .map_err(|why| RegistryError::InvalidModel {
                    source_uri: new.source.clone(),
                    why,
                })?;
        let lineage = self
            .lineage(new.run_id.as_deref(), new.job.as_deref())
            .await;
        let user = user.to_string();
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            let name = new.name;
            let v: i64 = c
                .query_row(
                    "SELECT next_version FROM models WHERE name = ?1",
                    [&name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?
                .ok_or_else(|| no_model(&name))?;
            let now = now_ms();
            c.execute(
                "UPDATE models SET next_version = ?2, last_updated_time = ?3 WHERE name = ?1",
                params![name, v + 1, now],
            )
            .map_err(sql)?;
            // An uploaded version's files are downloaded from the registry itself.
            let storage = if new.storage.is_empty() {
                registry_location(&name, v)
            } else {
                new.storage
            };
            c.execute(
                "INSERT INTO versions (model, version, creation_time, last_updated_time, user_id, \
                 description, source, storage_location, run_id, model_id, status, format, \
                 flavours, runtime, lineage) \
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'READY', ?10, ?11, ?12, ?13)",
                params![
                    name,
                    v,
                    now,
                    user,
                    new.description.unwrap_or_default(),
                    new.source,
                    storage,
                    new.run_id.unwrap_or_default(),
                    new.model_id,
                    inspected.format,
                    serde_json::to_string(&inspected.flavours).unwrap_or_default(),
                    inspected.runtime,
                    serde_json::to_string(&lineage).unwrap_or_default(),
                ],
            )
            .map_err(sql)?;
            for t in new.tags {
                c.execute(
                    "INSERT OR REPLACE INTO version_tags VALUES (?1, ?2, ?3, ?4)",
                    params![name, v, t.key, t.value],
                )
                .map_err(sql)?;
            }
            let h = holder(&name, v);
            for f in &new.files {
                c.execute(
                    "INSERT INTO version_files VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![name, v, f.path, f.digest, f.size as i64],
                )
                .map_err(sql)?;
                let d: Digest = f.digest.parse().map_err(RegistryError::Task)?;
                if let Err(e) = i.artifacts.reference(&d, &h) {
                    let _ = i.artifacts.release(&h);
                    return Err(e.into());
                }
            }
            if let Some(upload) = &new.upload {
                c.execute("DELETE FROM uploads WHERE id = ?1", [upload])
                    .map_err(sql)?;
                // The version holds the blobs now; the upload's hold goes.
                i.artifacts.release(&format!("{UPLOAD_PREFIX}{upload}"))?;
            }
            tracing::info!(model = %name, version = v, format = %inspected.format, runtime = %inspected.runtime, files = new.files.len(), "model version registered");
            load_detail(c, &name, v)
                .map_err(sql)?
                .ok_or_else(|| no_version(&name, v))
        })
        .await
    }

    /// One version.
    pub async fn get_version(&self, name: &str, version: i64) -> Result<ModelVersion> {
        Ok(self.version_detail(name, version).await?.version)
    }

    /// One version with its format, runtime, files and lineage.
    pub async fn version_detail(&self, name: &str, version: i64) -> Result<VersionDetail> {
        let name = name.to_string();
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            if !model_exists(c, &name).map_err(sql)? {
                return Err(no_model(&name));
            }
            load_detail(c, &name, version)
                .map_err(sql)?
                .ok_or_else(|| no_version(&name, version))
        })
        .await
    }

    /// A model with every version (newest first) and its aliases' history.
    pub async fn model_detail(&self, name: &str) -> Result<ModelDetail> {
        let model = self.get_model(name).await?;
        let alias_history = self.alias_history(name).await?;
        let n = name.to_string();
        let versions = self
            .tx(move |c, i| {
                let sql = |e| db::db_error(&i.path, e);
                let vs: Vec<i64> = c
                    .prepare("SELECT version FROM versions WHERE model = ?1 ORDER BY version DESC")
                    .and_then(|mut s| s.query_map([&n], |r| r.get(0))?.collect())
                    .map_err(sql)?;
                let mut out = Vec::new();
                for v in vs {
                    if let Some(d) = load_detail(c, &n, v).map_err(sql)? {
                        out.push(d);
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(ModelDetail {
            model,
            versions,
            alias_history,
        })
    }

    /// Changes a version's description.
    pub async fn update_version(
        &self,
        name: &str,
        version: i64,
        description: String,
    ) -> Result<ModelVersion> {
        let name = name.to_string();
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            let n = c
                .execute(
                    "UPDATE versions SET description = ?3, last_updated_time = ?4 \
                     WHERE model = ?1 AND version = ?2",
                    params![name, version, description, now_ms()],
                )
                .map_err(sql)?;
            if n == 0 {
                return Err(no_version(&name, version));
            }
            load_version(c, &name, version)
                .map_err(sql)?
                .ok_or_else(|| no_version(&name, version))
        })
        .await
    }

    /// Deletes a version; aliases pointing at it go too (each recorded as a move to none).
    pub async fn delete_version(&self, name: &str, version: i64, user: &str) -> Result<()> {
        let (name, user) = (name.to_string(), user.to_string());
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            let aliases: Vec<String> = c
                .prepare("SELECT alias FROM aliases WHERE model = ?1 AND version = ?2")
                .and_then(|mut s| s.query_map(params![name, version], |r| r.get(0))?.collect())
                .map_err(sql)?;
            for a in &aliases {
                c.execute(
                    "DELETE FROM aliases WHERE model = ?1 AND alias = ?2",
                    params![name, a],
                )
                .map_err(sql)?;
                record_move(c, &name, a, Some(version), None, &user).map_err(sql)?;
            }
            let n = c
                .execute(
                    "DELETE FROM versions WHERE model = ?1 AND version = ?2",
                    params![name, version],
                )
                .map_err(sql)?;
            if n == 0 {
                return Err(no_version(&name, version));
            }
            i.artifacts.release(&holder(&name, version))?;
            tracing::info!(model = %name, version, "model version deleted");
            Ok(())
        })
        .await
    }

    /// Versions that pass `search.filter` (`name`, `run_id`, `tags.<k>`, `source_path`,
    /// `version_number`), by name then newest version first unless ordered otherwise.
    pub async fn search_versions(
        &self,
        search: Search,
    ) -> Result<(Vec<ModelVersion>, Option<String>)> {
        let filter = Filter::parse(&search.filter, true).map_err(RegistryError::Invalid)?;
        let (offset, limit) = page(&search, MAX_VERSIONS)?;
        let order = search.order_by.clone();
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            let keys: Vec<(String, i64)> = c
                .prepare("SELECT model, version FROM versions ORDER BY model, version DESC")
                .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
                .map_err(sql)?;
            let mut all = Vec::new();
            for (n, v) in keys {
                let Some(mv) = load_version(c, &n, v).map_err(sql)? else {
                    continue;
                };
                let tags: HashMap<String, String> = mv
                    .tags
                    .iter()
                    .map(|t| (t.key.clone(), t.value.clone()))
                    .collect();
                let s = Subject {
                    name: &mv.name,
                    tags: &tags,
                    run_id: Some(&mv.run_id),
                    source: Some(&mv.source),
                    version: Some(v),
                };
                if filter.matches(&s) {
                    all.push(mv);
                }
            }
            sort_by(&mut all, &order, |m, key| match key {
                "name" => Ok(Sortable::Text(m.name.clone())),
                "version_number" => Ok(Sortable::Num(m.version.parse().unwrap_or(0))),
                "timestamp" | "last_updated_timestamp" => {
                    Ok(Sortable::Num(m.last_updated_timestamp))
                }
                "creation_timestamp" => Ok(Sortable::Num(m.creation_timestamp)),
                other => Err(other.to_string()),
            })?;
            Ok(cut(all, offset, limit))
        })
        .await
    }

    /// Where the client downloads a version's files from (its `mlflow-artifacts:/` location).
    pub async fn download_uri(&self, name: &str, version: i64) -> Result<String> {
        Ok(self.version_detail(name, version).await?.storage_location)
    }

    /// Sets a tag of a version.
    pub async fn set_version_tag(
        &self,
        name: &str,
        version: i64,
        key: &str,
        value: &str,
    ) -> Result<()> {
        check_key(key)?;
        let (name, key, value) = (name.to_string(), key.to_string(), value.to_string());
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            if !version_exists(c, &name, version).map_err(sql)? {
                return Err(no_version(&name, version));
            }
            c.execute(
                "INSERT OR REPLACE INTO version_tags VALUES (?1, ?2, ?3, ?4)",
                params![name, version, key, value],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    /// Deletes a tag of a version.
    pub async fn delete_version_tag(&self, name: &str, version: i64, key: &str) -> Result<()> {
        let (name, key) = (name.to_string(), key.to_string());
        self.tx(move |c, i| {
            let sql = |e| db::db_error(&i.path, e);
            if !version_exists(c, &name, version).map_err(sql)? {
                return Err(no_version(&name, version));
            }
            let n = c
                .execute(
                    "DELETE FROM version_tags WHERE model = ?1 AND version = ?2 AND key = ?3",
                    params![name, version, key],
                )
                .map_err(sql)?;
            if n == 0 {
                return Err(RegistryError::not_found(format!(
                    "No tag with name: {key} in model version {name}/{version}."
                )));
            }
            Ok(())
        })
        .await
    }

    /// The files and folders directly inside `sub` of a version (`""`: its top), as MLflow's
    /// artifact listing answers them; for `mlflow-artifacts:/registry/<name>/<version>`.
    pub async fn list_files(
        &self,
        name: &str,
        version: i64,
        sub: &str,
    ) -> Result<Vec<petri_tracking::artifacts::ArtifactEntry>> {
        let detail = self.version_detail(name, version).await?;
        let files: Vec<(String, u64)> =
            detail.files.into_iter().map(|f| (f.path, f.size)).collect();
        Ok(petri_tracking::artifacts::children(
            &files,
            sub.trim_matches('/'),
        ))
    }

    /// Reads a version's file, checked against its digest as it is read.
    pub async fn open_file(
        &self,
        name: &str,
        version: i64,
        path: &str,
    ) -> Result<petri_artifacts::BlobReader> {
        let detail = self.version_detail(name, version).await?;
        let f = detail
            .files
            .iter()
            .find(|f| f.path == path)
            .ok_or_else(|| {
                RegistryError::not_found(format!("{name}/{version} has no file {path}"))
            })?;
        let d: Digest = f.digest.parse().map_err(RegistryError::Task)?;
        let a = self.inner.artifacts.clone();
        tokio::task::spawn_blocking(move || a.open(&d))
            .await
            .map_err(|e| RegistryError::Task(e.to_string()))?
            .map_err(Into::into)
    }

    // ---- sources ---------------------------------------------------------------------------

    /// The artifact path (`<experiment>/<run>/artifacts/<path>` or the logged model's) a source
    /// names, and the run it is a run's artifact of.
    async fn resolve_source(&self, source: &str) -> Result<(String, Option<String>)> {
        let t = &self.inner.tracking;
        // A logged model's run, for the version's lineage.
        let mut logged_run = None;
        let full = if let Some(rest) = source.strip_prefix("runs:/") {
            let (run, path) = rest.split_once('/').unwrap_or((rest, ""));
            let run = t.get_run(run).await?.run;
            format!(
                "{}/{}/artifacts/{}",
                run.info.experiment_id,
                run.info.run_id,
                path.trim_matches('/')
            )
        } else if let Some(rest) = source.strip_prefix("mlflow-artifacts:") {
            strip_authority(rest)
        } else if let Some(id) = source
            .strip_prefix("models:/")
            .filter(|m| m.starts_with("m-"))
        {
            let m = t.get_logged_model(id.trim_end_matches('/')).await?;
            logged_run = m.model.info.source_run_id.clone().filter(|r| !r.is_empty());
            let uri = m.model.info.artifact_uri.clone();
            strip_authority(uri.strip_prefix("mlflow-artifacts:").unwrap_or(&uri))
        } else {
            return Err(RegistryError::invalid(format!(
                "Unsupported model version source '{source}': Petri registers runs:/<run>/<path>, \
                 mlflow-artifacts:/<experiment>/<run>/artifacts/<path> and models:/m-<id> \
                 sources (upload local files with `petri model register NAME PATH`)."
            )));
        };
        let at = petri_tracking::artifacts::parse_path(&full)?;
        let run = if at.model {
            logged_run
        } else {
            Some(at.run_id.clone())
        };
        let full = full.trim_end_matches('/').to_string();
        Ok((full, run))
    }

    /// Every file under the artifact path `full` (or the one file it is), with its digest.
    async fn collect_files(&self, full: &str) -> Result<Vec<VersionFile>> {
        let t = &self.inner.tracking;
        let a = &self.inner.artifacts;
        let mut out = Vec::new();
        let mut folders = vec![String::new()];
        while let Some(rel) = folders.pop() {
            let at = if rel.is_empty() {
                full.to_string()
            } else {
                format!("{full}/{rel}")
            };
            for e in t.list_artifacts(&at).await? {
                let child = if rel.is_empty() {
                    e.name.clone()
                } else {
                    format!("{rel}/{}", e.name)
                };
                if e.is_dir {
                    folders.push(child);
                } else {
                    let r = t.open_artifact(a, &format!("{full}/{child}")).await?;
                    out.push(VersionFile {
                        path: child,
                        digest: r.digest().to_string(),
                        size: r.len(),
                    });
                }
            }
        }
        if out.is_empty() {
            // Perhaps a single file.
            if let Ok(r) = t.open_artifact(a, full).await {
                let name = full.rsplit('/').next().unwrap_or(full).to_string();
                out.push(VersionFile {
                    path: name,
                    digest: r.digest().to_string(),
                    size: r.len(),
                });
            }
        }
        out.sort_by(|x, y| x.path.cmp(&y.path));
        Ok(out)
    }

    /// Checks the files (reading only those the checks need, from the artifact store, checked
    /// against their digests).
    async fn inspect(
        &self,
        files: &[VersionFile],
    ) -> std::result::Result<validate::Inspected, String> {
        let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        let mut bytes = HashMap::new();
        for want in [
            "model.json",
            "model.safetensors",
            "MLmodel",
            petri_ml::onnx::ONNX_FILE,
        ] {
            let Some(f) = files.iter().find(|f| f.path == want) else {
                continue;
            };
            let d: Digest = f.digest.parse().map_err(|e| format!("{want}: {e}"))?;
            let a = self.inner.artifacts.clone();
            let data = tokio::task::spawn_blocking(move || {
                let mut r = a.open(&d).map_err(|e| e.to_string())?;
                let mut v = Vec::new();
                r.read_to_end(&mut v).map(|_| v).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("reading {want}: {e}"))?;
            bytes.insert(want.to_string(), data);
        }
        validate::inspect(&paths, |p| {
            bytes
                .get(p)
                .cloned()
                .ok_or_else(|| format!("{p} was not read"))
        })
    }

    /// Where a run came from: its job, the job's pipeline run, the datasets it read.
    /// Where a version comes from: its run, the run's job (else the job that registered it),
    /// the job's pipeline run, the datasets the run read.
    async fn lineage(&self, run_id: Option<&str>, registered_by_job: Option<&str>) -> Lineage {
        let mut l = Lineage::default();
        if let Some(run_id) = run_id {
            l.run = Some(run_id.to_string());
            if let Ok(run) = self.inner.tracking.get_run(run_id).await {
                let run = run.run;
                l.job = run
                    .data
                    .tags
                    .iter()
                    .find(|t| t.key == petri_tracking::jobs::JOB_TAG)
                    .map(|t| t.value.clone());
                l.inputs = run
                    .inputs
                    .dataset_inputs
                    .iter()
                    .map(|d| InputData {
                        name: d.dataset.name.clone(),
                        digest: d.dataset.digest.clone(),
                    })
                    .collect();
            }
        }
        if l.job.is_none() {
            l.job = registered_by_job.map(str::to_string);
        }
        if let (Some(job), Some(of)) = (&l.job, &self.inner.pipeline_of) {
            l.pipeline_run = of(job.clone()).await;
        }
        l
    }
}

/// `//host:port/path` → `path`; `/path` → `path`.
fn strip_authority(rest: &str) -> String {
    let rest = match rest.strip_prefix("//") {
        Some(r) => r.split_once('/').map(|(_, p)| p).unwrap_or(""),
        None => rest,
    };
    rest.trim_start_matches('/').to_string()
}

fn page(search: &Search, max: usize) -> Result<(usize, usize)> {
    let limit = search.max_results.unwrap_or(100);
    if limit == 0 || limit > max {
        return Err(RegistryError::invalid(format!(
            "Invalid value for max_results: it must be between 1 and {max}, got {limit}."
        )));
    }
    let offset = match search.page_token.as_deref().filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .parse()
            .map_err(|_| RegistryError::invalid(format!("Invalid page token '{t}'.")))?,
    };
    Ok((offset, limit))
}

fn cut<T>(all: Vec<T>, offset: usize, limit: usize) -> (Vec<T>, Option<String>) {
    let total = all.len();
    let page: Vec<T> = all.into_iter().skip(offset).take(limit).collect();
    let next = (offset + limit < total).then(|| (offset + limit).to_string());
    (page, next)
}

#[derive(PartialEq, PartialOrd)]
enum Sortable {
    Text(String),
    Num(i64),
}

/// Sorts by MLflow `order_by` clauses (`name ASC`, `last_updated_timestamp DESC`), stable, so
/// the default order stays among equals.
fn sort_by<T>(
    all: &mut [T],
    order: &[String],
    key: impl Fn(&T, &str) -> std::result::Result<Sortable, String>,
) -> Result<()> {
    for clause in order.iter().rev() {
        let mut parts = clause.split_whitespace();
        let Some(k) = parts.next() else { continue };
        let k = k.trim_start_matches("attributes.");
        let desc = match parts.next().map(str::to_ascii_uppercase).as_deref() {
            None | Some("ASC") => false,
            Some("DESC") => true,
            Some(o) => {
                return Err(RegistryError::invalid(format!(
                    "Invalid order_by direction '{o}'."
                )));
            }
        };
        if let Some(first) = all.first() {
            key(first, k)
                .map_err(|k| RegistryError::invalid(format!("Invalid order_by key '{k}'.")))?;
        }
        all.sort_by(|a, b| {
            let (x, y) = (key(a, k).ok(), key(b, k).ok());
            let o = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
            if desc { o.reverse() } else { o }
        });
    }
    Ok(())
}

fn model_exists(c: &Connection, name: &str) -> rusqlite::Result<bool> {
    c.query_row("SELECT 1 FROM models WHERE name = ?1", [name], |_| Ok(()))
        .optional()
        .map(|r| r.is_some())
}

fn version_exists(c: &Connection, name: &str, v: i64) -> rusqlite::Result<bool> {
    c.query_row(
        "SELECT 1 FROM versions WHERE model = ?1 AND version = ?2",
        params![name, v],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
}

fn alias_version(c: &Connection, name: &str, alias: &str) -> rusqlite::Result<Option<i64>> {
    c.query_row(
        "SELECT version FROM aliases WHERE model = ?1 AND alias = ?2",
        params![name, alias],
        |r| r.get(0),
    )
    .optional()
}

fn record_move(
    c: &Connection,
    name: &str,
    alias: &str,
    from: Option<i64>,
    to: Option<i64>,
    user: &str,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO alias_events (model, alias, from_version, to_version, user_id, time) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![name, alias, from, to, user, now_ms()],
    )?;
    Ok(())
}

fn all_files(c: &Connection, name: &str) -> rusqlite::Result<Vec<(i64, Digest)>> {
    let rows: Vec<(i64, String)> = c
        .prepare("SELECT version, digest FROM version_files WHERE model = ?1")?
        .query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(v, d)| d.parse().ok().map(|d| (v, d)))
        .collect())
}

fn tags_of(c: &Connection, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<Vec<KeyValue>> {
    c.prepare_cached(sql)?
        .query_map(p, |r| {
            Ok(KeyValue {
                key: r.get(0)?,
                value: r.get(1)?,
            })
        })?
        .collect()
}

fn load_model(c: &Connection, name: &str) -> rusqlite::Result<Option<RegisteredModel>> {
    let Some((created, updated, description)) = c
        .query_row(
            "SELECT creation_time, last_updated_time, description FROM models WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
    else {
        return Ok(None);
    };
    let tags = tags_of(
        c,
        "SELECT key, value FROM model_tags WHERE model = ?1 ORDER BY key",
        [name],
    )?;
    let aliases = c
        .prepare_cached("SELECT alias, version FROM aliases WHERE model = ?1 ORDER BY alias")?
        .query_map([name], |r| {
            Ok(Alias {
                alias: r.get(0)?,
                version: r.get::<_, i64>(1)?.to_string(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut latest_versions = Vec::new();
    for v in latest_per_stage(c, name)? {
        latest_versions.extend(load_version(c, name, v)?);
    }
    Ok(Some(RegisteredModel {
        name: name.to_string(),
        creation_timestamp: created,
        last_updated_timestamp: updated,
        description,
        latest_versions,
        tags,
        aliases,
    }))
}

/// The newest version in each stage, newest first (so the first is the model's newest).
fn latest_per_stage(c: &Connection, name: &str) -> rusqlite::Result<Vec<i64>> {
    c.prepare_cached(
        "SELECT max(version) AS v FROM versions WHERE model = ?1 GROUP BY stage ORDER BY v DESC",
    )?
    .query_map([name], |r| r.get(0))?
    .collect()
}

/// MLflow's stage names, any case, as MLflow writes them.
pub fn parse_stage(stage: &str) -> Result<&'static str> {
    STAGES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(stage.trim()))
        .copied()
        .ok_or_else(|| {
            RegistryError::invalid(format!(
                "Invalid Model Version stage: {stage}. Value must be one of None, Staging, \
                 Production, Archived."
            ))
        })
}

/// MLflow's stages.
const STAGES: [&str; 4] = ["None", "Staging", "Production", "Archived"];

fn load_version(c: &Connection, name: &str, v: i64) -> rusqlite::Result<Option<ModelVersion>> {
    Ok(load_detail(c, name, v)?.map(|d| d.version))
}

fn load_detail(c: &Connection, name: &str, v: i64) -> rusqlite::Result<Option<VersionDetail>> {
    let row = c
        .query_row(
            "SELECT creation_time, last_updated_time, user_id, description, source, \
             storage_location, run_id, model_id, status, format, flavours, runtime, lineage, \
             stage FROM versions WHERE model = ?1 AND version = ?2",
            params![name, v],
            |r| {
                Ok((
                    (
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                    ),
                    (
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    ),
                    (
                        r.get::<_, String>(6)?,
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, String>(8)?,
                    ),
                    (
                        r.get::<_, String>(9)?,
                        r.get::<_, String>(10)?,
                        r.get::<_, String>(11)?,
                    ),
                    (r.get::<_, String>(12)?, r.get::<_, String>(13)?),
                ))
            },
        )
        .optional()?;
    let Some((
        (created, updated, user_id),
        (description, source, storage_location),
        (run_id, model_id, status),
        (format, flavours, runtime),
        (lineage, stage),
    )) = row
    else {
        return Ok(None);
    };
    let tags = tags_of(
        c,
        "SELECT key, value FROM version_tags WHERE model = ?1 AND version = ?2 ORDER BY key",
        params![name, v],
    )?;
    let aliases = c
        .prepare_cached(
            "SELECT alias FROM aliases WHERE model = ?1 AND version = ?2 ORDER BY alias",
        )?
        .query_map(params![name, v], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    let files = c
        .prepare_cached(
            "SELECT path, digest, size FROM version_files WHERE model = ?1 AND version = ?2 \
             ORDER BY path",
        )?
        .query_map(params![name, v], |r| {
            Ok(VersionFile {
                path: r.get(0)?,
                digest: r.get(1)?,
                size: r.get::<_, i64>(2)? as u64,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(VersionDetail {
        version: ModelVersion {
            name: name.to_string(),
            version: v.to_string(),
            creation_timestamp: created,
            last_updated_timestamp: updated,
            user_id,
            current_stage: stage,
            description,
            source,
            run_id,
            status,
            tags,
            aliases,
            model_id,
        },
        format,
        flavours: serde_json::from_str(&flavours).unwrap_or_default(),
        runtime,
        storage_location,
        files,
        lineage: serde_json::from_str(&lineage).unwrap_or_default(),
    }))
}
