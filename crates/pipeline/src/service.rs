//! The reconciler: it carries out what [`crate::advance()`] decides, on the queue. Each step's job
//! is submitted under an id recorded first (`Queue::submit_once`), so a daemon killed at any
//! point picks up where it was and no step runs twice. It wakes on the queue's events for
//! pipeline jobs, on requests, and once a second for runs waiting on a backoff.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use indexmap::IndexMap;
use petri_artifacts::Artifacts;
use petri_domain::{ErrorBody, ErrorCode, Event, Job, JobId, JobState, Origin, PipelineRunChange};
use petri_queue::{Queue, QueueError};
use petri_store::{Store, StoredItem, StoredPipeline, StoredRun};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use crate::advance::{
    Decision, FileRef, Item, ItemState, RunEnd, RunView, Settled, StepRecord, StepState,
    step_outputs, step_state,
};
use crate::component::{ComponentInfo, Components, Source};
use crate::spec::{OutputKind, ValueType};
use crate::validate::{Catalog, Diagnostic, PipelineSig, Plan, StepKind, validate};

/// Where the pipelines keep their files under the home, and the user's components.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// `<home>/pipelines`: stages of runs' inputs, the built-in components.
    pub root: PathBuf,
    /// The user's components folder.
    pub components: PathBuf,
}

/// The built-in components, inside the binary.
static BUILTIN: include_dir::Dir<'_> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/../../components");

/// The pipelines capability; cheap to clone.
#[derive(Clone)]
pub struct Pipelines {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    queue: Queue,
    store: Mutex<Store>,
    artifacts: Artifacts,
    config: PipelineConfig,
    builtin: PathBuf,
    wake: Notify,
    /// Runs being reconciled now (one pass at a time).
    pass: tokio::sync::Mutex<()>,
    /// The last catalog, with what it was made from (see `catalog_stamp`).
    catalog: RwLock<Option<(CatalogStamp, Arc<Catalog>)>>,
    /// Counts saves and deletes of pipelines (the catalog holds their signatures).
    saved_gen: std::sync::atomic::AtomicU64,
    /// Watch triggers this process has looked at (the first look compares with the snapshot
    /// kept from before a restart).
    seen: crate::watch::Seen,
}

/// The answer of `validate`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Validation {
    pub valid: bool,
    pub errors: Vec<Diagnostic>,
    pub steps: Vec<StepOutline>,
}

/// A step as the canvas draws it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepOutline {
    pub name: String,
    pub needs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    /// command, component or pipeline.
    pub kind: String,
}

/// A saved pipeline in a list.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PipelineSummary {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub steps: usize,
    pub triggers: Vec<String>,
    pub owner: String,
    pub updated_at: i64,
    /// Its newest run: number and state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunBrief>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunBrief {
    pub id: String,
    pub number: u64,
    pub state: String,
}

/// A saved pipeline, as written.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PipelineDoc {
    pub name: String,
    pub yaml: String,
    /// The canvas's node positions.
    #[schema(value_type = Option<Object>)]
    pub layout: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_dir: Option<String>,
    pub owner: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Save a pipeline.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveRequest {
    pub yaml: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub layout: Option<Value>,
    /// The folder relative paths in the pipeline are resolved against (the CLI sends the file's).
    #[serde(default)]
    pub base_dir: Option<String>,
}

/// Start a run: of a saved pipeline, or of YAML given here.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    #[serde(default)]
    pub pipeline: Option<String>,
    #[serde(default)]
    pub yaml: Option<String>,
    #[serde(default)]
    pub base_dir: Option<String>,
    /// Values for params (text is read as the param's type).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: IndexMap<String, Value>,
    /// `false`: run every step, reuse nothing.
    #[serde(default)]
    pub cache: Option<bool>,
}

/// Retry a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// Rerun this step and what depends on it; without it, the failed and canceled steps.
    #[serde(default)]
    pub from: Option<String>,
}

/// Start one run per cron fire between two instants.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    /// Milliseconds since the epoch.
    pub from: i64,
    pub to: i64,
}

/// A run, with its steps.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunInfo {
    pub id: String,
    pub number: u64,
    pub pipeline: String,
    pub state: String,
    #[schema(value_type = Object)]
    pub params: Value,
    #[schema(value_type = Object)]
    pub trigger: Value,
    pub user: String,
    pub attempt: u32,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub reason: Option<String>,
    #[schema(value_type = Object)]
    pub outputs: Value,
    pub steps: Vec<StepInfo>,
    /// The YAML the run was made from.
    pub yaml: String,
}

/// A step of a run.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepInfo {
    pub name: String,
    pub state: StepState,
    pub needs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    /// The step's job (the first item's, for a `for_each` step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobRef>,
    /// One per job of a `for_each` step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemInfo>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    #[schema(value_type = Object)]
    pub outputs: Value,
    pub reason: Option<String>,
    /// Where cached outputs came from: `run/step`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<String>,
    /// A nested run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child_run: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobRef {
    pub id: String,
    pub number: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemInfo {
    pub item: usize,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobRef>,
    pub reason: Option<String>,
}

/// A saved pipeline's name, YAML, base folder and owner.
pub(crate) type SavedTriggers = (String, String, Option<String>, String);

fn now_ms() -> i64 {
    petri_queue::now_ms()
}

fn refused(code: ErrorCode, msg: impl Into<String>) -> QueueError {
    QueueError::refused(code, msg)
}

fn invalid(errors: Vec<Diagnostic>) -> QueueError {
    let first = errors
        .first()
        .map(|d| d.to_string())
        .unwrap_or_else(|| "the pipeline is not valid".into());
    let more = if errors.len() > 1 {
        format!(" (and {} more)", errors.len() - 1)
    } else {
        String::new()
    };
    QueueError::Refused(
        ErrorBody::new(ErrorCode::InvalidPipeline, format!("{first}{more}"))
            .with_details(serde_json::json!({ "errors": errors })),
    )
}

fn store_err(e: petri_store::StoreError) -> QueueError {
    QueueError::Io(e.to_string())
}

fn art_err(e: petri_artifacts::ArtifactError) -> QueueError {
    QueueError::Refused(ErrorBody::new(e.code(), e.to_string()))
}

impl Pipelines {
    /// Writes the built-in components out, and starts the reconciler and the triggers.
    pub fn start(
        queue: Queue,
        store: Store,
        artifacts: Artifacts,
        config: PipelineConfig,
    ) -> Result<Pipelines, QueueError> {
        let builtin = config.root.join("components");
        let files: Vec<(String, &[u8])> = builtin_files(&BUILTIN);
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), *b)).collect();
        crate::component::install_builtin(&builtin, &refs)
            .map_err(|e| QueueError::Io(format!("writing the built-in components: {e}")))?;
        let p = Pipelines {
            inner: Arc::new(Inner {
                queue,
                store: Mutex::new(store),
                artifacts,
                config,
                builtin,
                wake: Notify::new(),
                pass: tokio::sync::Mutex::new(()),
                catalog: RwLock::new(None),
                saved_gen: std::sync::atomic::AtomicU64::new(0),
                seen: Default::default(),
            }),
        };
        p.spawn_reconciler();
        crate::watch::spawn(p.clone());
        Ok(p)
    }

    pub(crate) fn inner_arc(&self) -> Arc<Inner> {
        self.inner.clone()
    }
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Pipelines {
        Pipelines { inner }
    }

    /// Saved pipelines with triggers: name, YAML, base folder, owner.
    pub(crate) fn saved_for_triggers(&self) -> Result<Vec<SavedTriggers>, QueueError> {
        Ok(self
            .with_store(|s| s.pipelines())?
            .into_iter()
            .filter(|p| p.yaml.contains("triggers"))
            .map(|p| (p.name, p.yaml, p.base_dir, p.owner))
            .collect())
    }
    pub(crate) fn trigger_state(&self, pipeline: &str, key: &str) -> Option<(i64, String)> {
        self.with_store(|s| s.trigger_state(pipeline, key))
            .ok()
            .flatten()
    }
    pub(crate) fn put_trigger_state(&self, pipeline: &str, key: &str, last: i64, data: &str) {
        if let Err(e) = self.with_store(|s| s.put_trigger_state(pipeline, key, last, data)) {
            tracing::warn!(pipeline, error = %e, "saving a trigger's state");
        }
    }
    pub(crate) fn has_run_for_fire(&self, pipeline: &str, fire: i64) -> bool {
        self.with_store(|s| s.has_run_for_fire(pipeline, fire))
            .unwrap_or(false)
    }
    /// True the first time this process asks about a trigger.
    pub(crate) fn first_round(&self, key: &str) -> bool {
        self.inner
            .seen
            .lock()
            .map(|mut s| s.insert(key.to_string()))
            .unwrap_or(false)
    }
    pub(crate) fn create_run_blocking(
        &self,
        req: RunRequest,
        user: &str,
        trigger: Value,
    ) -> Result<RunInfo, QueueError> {
        self.create_run(req, user, trigger, None)
    }

    fn spawn_reconciler(&self) {
        let weak = Arc::downgrade(&self.inner);
        // The queue's events, listened to only while a run is active: a job's change may then be
        // a step's. With none active, no job's start or end wakes this task; a new run (which
        // wakes the reconciler itself) or the timer makes the next pass.
        let mut events: Option<tokio::sync::broadcast::Receiver<Event>> = None;
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let me = Pipelines { inner };
                // Listening starts before the pass reads the runs: no change after it is missed.
                if events.is_none() {
                    events = Some(me.inner.queue.subscribe());
                }
                if !me.reconcile_all().await {
                    events = None;
                }
                let wake = async {
                    let Some(rx) = events.as_mut() else {
                        return std::future::pending::<()>().await;
                    };
                    loop {
                        match rx.recv().await {
                            Ok(Event::JobChanged(_)) => return,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                std::future::pending::<()>().await
                            }
                            Err(_) => return,
                            _ => {}
                        }
                    }
                };
                tokio::select! {
                    _ = wake => {}
                    _ = me.inner.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                drop(me);
            }
        });
    }

    /// Asks the reconciler for a pass now.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Pipelines) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| QueueError::Io(e.to_string()))?
    }

    fn with_store<T>(
        &self,
        f: impl FnOnce(&mut Store) -> petri_store::Result<T>,
    ) -> Result<T, QueueError> {
        let mut s = self
            .inner
            .store
            .lock()
            .map_err(|_| QueueError::Io("the pipeline store lock was poisoned".into()))?;
        f(&mut s).map_err(store_err)
    }

    // ---- catalog ----

    /// Components (built-in and the user's) and saved pipelines, read fresh.
    pub fn catalog(&self) -> Result<Arc<Catalog>, QueueError> {
        // Made again only when a component folder or a saved pipeline changed: the reconciler
        // asks on every pass, and reading the components hashes their files.
        let stamp = CatalogStamp {
            builtin: folder_stamp(&self.inner.builtin),
            user: folder_stamp(&self.inner.config.components),
            saved: self
                .inner
                .saved_gen
                .load(std::sync::atomic::Ordering::SeqCst),
        };
        if let Ok(c) = self.inner.catalog.read()
            && let Some((s, cat)) = c.as_ref()
            && *s == stamp
        {
            return Ok(cat.clone());
        }
        let mut components = Components::default();
        components.read_dir(&self.inner.builtin, Source::Builtin);
        components.read_dir(&self.inner.config.components, Source::User);
        let saved = self.with_store(|s| s.pipelines())?;
        let mut pipelines = BTreeMap::new();
        for p in saved {
            if let Ok(spec) = serde_yaml_ng::from_str::<crate::PipelineSpec>(&p.yaml) {
                pipelines.insert(
                    p.name.clone(),
                    PipelineSig {
                        params: spec
                            .params
                            .iter()
                            .map(|(k, v)| (k.clone(), (v.kind(), v.default_value().is_none())))
                            .collect(),
                        outputs: spec.outputs.keys().cloned().collect(),
                    },
                );
            }
        }
        let cat = Arc::new(Catalog {
            components,
            pipelines,
        });
        if let Ok(mut c) = self.inner.catalog.write() {
            *c = Some((stamp, cat.clone()));
        }
        Ok(cat)
    }

    fn saved_changed(&self) {
        self.inner
            .saved_gen
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub async fn components(&self) -> Result<Vec<ComponentInfo>, QueueError> {
        self.blocking(|p| Ok(p.catalog()?.components.infos())).await
    }

    /// The JSON Schema of a pipeline file.
    pub fn schema(&self) -> Value {
        crate::schema::pipeline_schema()
    }

    // ---- saved pipelines ----

    pub async fn validate(&self, yaml: String) -> Result<Validation, QueueError> {
        self.blocking(move |p| {
            let cat = p.catalog()?;
            Ok(match validate(&yaml, &cat) {
                Ok(plan) => Validation {
                    valid: true,
                    errors: Vec::new(),
                    steps: outline(&plan),
                },
                Err(errors) => Validation {
                    valid: false,
                    steps: outline_loose(&yaml),
                    errors,
                },
            })
        })
        .await
    }

    pub async fn save(
        &self,
        name: Option<String>,
        req: SaveRequest,
        user: &str,
    ) -> Result<PipelineDoc, QueueError> {
        let user = user.to_string();
        self.blocking(move |p| {
            let cat = p.catalog()?;
            let plan = validate(&req.yaml, &cat).map_err(invalid)?;
            let name = match (name, plan.name()) {
                (Some(n), Some(m)) if n != m => {
                    return Err(refused(
                        ErrorCode::InvalidPipeline,
                        format!("the file calls the pipeline `{m}`, not `{n}`"),
                    ));
                }
                (Some(n), _) => n,
                (None, Some(m)) => m.to_string(),
                (None, None) => {
                    return Err(refused(
                        ErrorCode::InvalidPipeline,
                        "give the pipeline a `name:` to save it under",
                    ));
                }
            };
            if !crate::validate::is_name(&name) {
                return Err(refused(
                    ErrorCode::InvalidPipeline,
                    format!("`{name}` is not a pipeline name"),
                ));
            }
            let now = now_ms();
            let stored = StoredPipeline {
                name: name.clone(),
                yaml: req.yaml,
                layout: req.layout.map(|l| l.to_string()),
                base_dir: req.base_dir,
                owner: user,
                created_at_ms: now,
                updated_at_ms: now,
            };
            p.with_store(|s| s.put_pipeline(&stored))?;
            p.saved_changed();
            p.get_blocking(&name)
        })
        .await
    }

    fn get_blocking(&self, name: &str) -> Result<PipelineDoc, QueueError> {
        let p = self.with_store(|s| s.pipeline(name))?.ok_or_else(|| {
            refused(
                ErrorCode::PipelineNotFound,
                format!("no saved pipeline `{name}`; see `petri pipeline ls`"),
            )
        })?;
        Ok(PipelineDoc {
            name: p.name,
            yaml: p.yaml,
            layout: p.layout.and_then(|l| serde_json::from_str(&l).ok()),
            base_dir: p.base_dir,
            owner: p.owner,
            created_at: p.created_at_ms,
            updated_at: p.updated_at_ms,
        })
    }

    pub async fn get(&self, name: &str) -> Result<PipelineDoc, QueueError> {
        let name = name.to_string();
        self.blocking(move |p| p.get_blocking(&name)).await
    }

    pub async fn delete(&self, name: &str) -> Result<PipelineDoc, QueueError> {
        let name = name.to_string();
        self.blocking(move |p| {
            let doc = p.get_blocking(&name)?;
            p.with_store(|s| s.delete_pipeline(&name))?;
            p.saved_changed();
            Ok(doc)
        })
        .await
    }

    pub async fn list(&self) -> Result<Vec<PipelineSummary>, QueueError> {
        self.blocking(|p| {
            let saved = p.with_store(|s| s.pipelines())?;
            let mut out = Vec::new();
            for s in saved {
                let spec = serde_yaml_ng::from_str::<crate::PipelineSpec>(&s.yaml).ok();
                let last = p
                    .with_store(|st| st.pipeline_runs(Some(&s.name), 1))?
                    .into_iter()
                    .next();
                out.push(PipelineSummary {
                    description: spec.as_ref().and_then(|x| x.description.clone()),
                    steps: spec.as_ref().map(|x| x.steps.len()).unwrap_or(0),
                    triggers: spec
                        .as_ref()
                        .map(|x| {
                            x.triggers
                                .iter()
                                .map(|t| match t {
                                    crate::spec::Trigger::Cron(c) => format!("cron {}", c.cron),
                                    crate::spec::Trigger::Watch(w) => format!("watch {}", w.watch),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    owner: s.owner,
                    updated_at: s.updated_at_ms,
                    last_run: last.map(|r| RunBrief {
                        id: r.id,
                        number: r.number,
                        state: r.state,
                    }),
                    name: s.name,
                });
            }
            Ok(out)
        })
        .await
    }

    // ---- runs ----

    /// Starts a run (validated first: a bad pipeline queues nothing).
    pub async fn run(
        &self,
        req: RunRequest,
        user: &str,
        trigger: Value,
    ) -> Result<RunInfo, QueueError> {
        let user = user.to_string();
        let info = self
            .blocking(move |p| p.create_run(req, &user, trigger, None))
            .await?;
        self.wake();
        Ok(info)
    }

    pub(crate) fn create_run(
        &self,
        req: RunRequest,
        user: &str,
        trigger: Value,
        parent: Option<Value>,
    ) -> Result<RunInfo, QueueError> {
        let (yaml, base, name) = match (&req.pipeline, &req.yaml) {
            (Some(_), Some(_)) => {
                return Err(refused(
                    ErrorCode::BadRequest,
                    "give `pipeline` or `yaml`, not both",
                ));
            }
            (Some(n), None) => {
                let doc = self.get_blocking(n)?;
                (doc.yaml, req.base_dir.clone().or(doc.base_dir), n.clone())
            }
            (None, Some(y)) => (y.clone(), req.base_dir.clone(), String::new()),
            (None, None) => {
                return Err(refused(
                    ErrorCode::BadRequest,
                    "give `pipeline` (a saved one) or `yaml`",
                ));
            }
        };
        let cat = self.catalog()?;
        let plan = validate(&yaml, &cat).map_err(invalid)?;
        let name = if name.is_empty() {
            plan.name().unwrap_or("unnamed").to_string()
        } else {
            name
        };
        let id = JobId::new().to_string();
        let params = self.resolve_params(&plan, &req.params, base.as_deref(), &id)?;
        let now = now_ms();
        let run = StoredRun {
            id: id.clone(),
            number: 0,
            pipeline: name,
            yaml,
            base_dir: base,
            params: serde_json::to_string(&params).unwrap_or_default(),
            state: "queued".into(),
            trigger: trigger.to_string(),
            priority: plan.spec.priority,
            user: user.to_string(),
            no_cache: req.cache == Some(false),
            attempt: 1,
            parent: parent.map(|p| p.to_string()),
            created_at_ms: now,
            ..Default::default()
        };
        let number = self.with_store(|s| s.insert_run(&run))?;
        self.publish(&id, number, &run.pipeline, "queued");
        // The reconciler, idle while no run is active, starts this one.
        self.wake();
        self.info_blocking(&id)
    }

    /// Params: defaults, then the given values read as their declared types; files and folders
    /// are taken into the artifact store (so a run sees the content it started with, and caching
    /// compares content).
    fn resolve_params(
        &self,
        plan: &Plan,
        given: &IndexMap<String, Value>,
        base: Option<&str>,
        run_id: &str,
    ) -> Result<IndexMap<String, Value>, QueueError> {
        let bad = |m: String| refused(ErrorCode::InvalidPipeline, m);
        for k in given.keys() {
            if !plan.spec.params.contains_key(k) {
                let hint = petri_domain::suggest(k, plan.spec.params.keys().map(String::as_str))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(bad(format!("the pipeline has no param `{k}`{hint}")));
            }
        }
        let mut out = IndexMap::new();
        for (k, spec) in &plan.spec.params {
            let v = match given.get(k).or(spec.default_value()) {
                Some(v) => v.clone(),
                None => {
                    return Err(bad(format!(
                        "the param `{k}` has no default: give --param {k}=VALUE"
                    )));
                }
            };
            let kind = spec.kind();
            crate::validate::check_type(kind, &v).map_err(|m| bad(format!("param `{k}`: {m}")))?;
            let v = match (kind, &v) {
                (ValueType::Number, Value::String(s)) => {
                    serde_json::from_str(s.trim()).unwrap_or(v)
                }
                (ValueType::Boolean, Value::String(s)) => Value::Bool(s == "true"),
                (ValueType::List, Value::String(s)) => serde_json::from_str(s).unwrap_or(v),
                (ValueType::File | ValueType::Dir, _) => {
                    let text = crate::expr::to_text(&v);
                    let path = match base {
                        Some(b) if !Path::new(&text).is_absolute() => Path::new(b).join(&text),
                        _ => PathBuf::from(&text),
                    };
                    if !path.exists() {
                        return Err(bad(format!(
                            "param `{k}`: {} does not exist",
                            path.display()
                        )));
                    }
                    let stored = self
                        .inner
                        .artifacts
                        .put_path(&path, &format!("pipeline:{run_id}/params/{k}"))
                        .map_err(art_err)?;
                    FileRef {
                        digest: stored.digest.to_string(),
                        name: path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_else(|| k.clone()),
                        dir: path.is_dir(),
                    }
                    .to_value()
                }
                _ => v,
            };
            out.insert(k.clone(), v);
        }
        Ok(out)
    }

    /// One run per fire of the pipeline's cron trigger between two instants, oldest first.
    pub async fn backfill(
        &self,
        name: &str,
        req: BackfillRequest,
        user: &str,
    ) -> Result<Vec<RunInfo>, QueueError> {
        let (name, user) = (name.to_string(), user.to_string());
        let runs = self
            .blocking(move |p| {
                let doc = p.get_blocking(&name)?;
                let spec: crate::PipelineSpec = serde_yaml_ng::from_str(&doc.yaml)
                    .map_err(|e| refused(ErrorCode::InvalidPipeline, e.to_string()))?;
                let Some(cron) = spec.triggers.iter().find_map(|t| match t {
                    crate::spec::Trigger::Cron(c) => Some(c.clone()),
                    _ => None,
                }) else {
                    return Err(refused(ErrorCode::InvalidPipeline, format!("pipeline `{name}` has no cron trigger to backfill")));
                };
                if req.to < req.from {
                    return Err(refused(ErrorCode::BadRequest, "`to` is before `from`"));
                }
                let fires = crate::triggers::fires_between(&cron.cron, req.from - 1, req.to, 1000)
                    .map_err(|m| refused(ErrorCode::InvalidPipeline, m))?;
                let mut out = Vec::new();
                for fire in fires {
                    let run = RunRequest {
                        pipeline: Some(name.clone()),
                        params: cron.params.clone(),
                        ..Default::default()
                    };
                    let trig = serde_json::json!({ "kind": "backfill", "cron": cron.cron, "scheduled_at": fire });
                    out.push(p.create_run(run, &user, trig, None)?);
                }
                Ok(out)
            })
            .await?;
        self.wake();
        Ok(runs)
    }

    pub async fn runs(
        &self,
        pipeline: Option<String>,
        limit: u32,
    ) -> Result<Vec<RunInfo>, QueueError> {
        self.blocking(move |p| {
            let runs =
                p.with_store(|s| s.pipeline_runs(pipeline.as_deref(), limit.clamp(1, 1000)))?;
            runs.iter().map(|r| p.info_of(r, false)).collect()
        })
        .await
    }

    pub async fn get_run(&self, key: &str) -> Result<RunInfo, QueueError> {
        let key = key.to_string();
        self.blocking(move |p| p.info_blocking(&key)).await
    }

    fn stored_run(&self, key: &str) -> Result<StoredRun, QueueError> {
        self.with_store(|s| s.run(key))?.ok_or_else(|| {
            refused(
                ErrorCode::PipelineRunNotFound,
                format!("no pipeline run `{key}`; see `petri pipeline ls`"),
            )
        })
    }

    fn info_blocking(&self, key: &str) -> Result<RunInfo, QueueError> {
        let run = self.stored_run(key)?;
        self.info_of(&run, true)
    }

    fn info_of(&self, run: &StoredRun, with_steps: bool) -> Result<RunInfo, QueueError> {
        let mut steps = Vec::new();
        if with_steps {
            let cat = self.catalog()?;
            if let Ok(plan) = validate(&run.yaml, &cat) {
                let items = self.with_store(|s| s.run_items(&run.id))?;
                let records = self.records_from_rows(&items);
                for (name, sp) in &plan.steps {
                    let rec = records.get(name);
                    let rows: Vec<&StoredItem> = items.iter().filter(|i| &i.step == name).collect();
                    let job_rows: Vec<&&StoredItem> = rows.iter().filter(|i| i.item >= 0).collect();
                    let state = step_state(sp, rec, None);
                    let job_of = |r: &StoredItem| {
                        r.job_id.as_ref().map(|id| JobRef {
                            id: id.clone(),
                            number: id.parse::<JobId>().ok().and_then(|j| self.job_number(j)),
                        })
                    };
                    steps.push(StepInfo {
                        name: name.clone(),
                        state,
                        needs: sp.needs.clone(),
                        uses: match &sp.kind {
                            StepKind::Component { name, .. } => Some(name.clone()),
                            StepKind::Pipeline { name } => Some(format!("pipeline:{name}")),
                            StepKind::Command => None,
                        },
                        job: job_rows.first().and_then(|r| job_of(r)),
                        items: if sp.for_each.is_some() {
                            job_rows
                                .iter()
                                .map(|r| ItemInfo {
                                    item: r.item as usize,
                                    state: r.state.clone(),
                                    job: job_of(r),
                                    reason: r.reason.clone(),
                                })
                                .collect()
                        } else {
                            Vec::new()
                        },
                        started_at: rows.iter().filter_map(|r| r.started_at_ms).min(),
                        finished_at: if state.is_terminal() {
                            rows.iter().filter_map(|r| r.finished_at_ms).max()
                        } else {
                            None
                        },
                        outputs: rec
                            .map(|r| {
                                serde_json::to_value(step_outputs(sp, r)).unwrap_or(Value::Null)
                            })
                            .unwrap_or(Value::Object(Default::default())),
                        reason: rows.iter().find_map(|r| r.reason.clone()),
                        cached_from: rows.iter().find_map(|r| r.cached_from.clone()),
                        child_run: rows.iter().find_map(|r| r.child_run.clone()),
                    });
                }
            }
        }
        Ok(RunInfo {
            id: run.id.clone(),
            number: run.number,
            pipeline: run.pipeline.clone(),
            state: run.state.clone(),
            params: serde_json::from_str(&run.params).unwrap_or(Value::Null),
            trigger: serde_json::from_str(&run.trigger).unwrap_or(Value::Null),
            user: run.user.clone(),
            attempt: run.attempt,
            created_at: run.created_at_ms,
            started_at: run.started_at_ms,
            finished_at: run.finished_at_ms,
            reason: run.reason.clone(),
            outputs: run
                .outputs
                .as_deref()
                .and_then(|o| serde_json::from_str(o).ok())
                .unwrap_or(Value::Object(Default::default())),
            steps,
            yaml: run.yaml.clone(),
        })
    }

    fn job_number(&self, id: JobId) -> Option<u64> {
        let q = self.inner.queue.clone();
        tokio::runtime::Handle::try_current()
            .ok()
            .and_then(|h| h.block_on(q.stored_job(id)).ok())
            .map(|j| j.number)
    }

    pub async fn cancel(&self, key: &str) -> Result<RunInfo, QueueError> {
        let key = key.to_string();
        let info = self
            .blocking(move |p| {
                let mut run = p.stored_run(&key)?;
                if !matches!(run.state.as_str(), "queued" | "running") {
                    return Err(refused(
                        ErrorCode::InvalidState,
                        format!("run {} is {} already", run.number, run.state),
                    ));
                }
                run.cancel_requested = true;
                p.with_store(|s| s.update_run(&run))?;
                p.info_of(&run, true)
            })
            .await?;
        self.wake();
        Ok(info)
    }

    /// Reruns a finished run in place: from a step (it and what depends on it), or its failed
    /// and canceled steps; the rest keeps its outputs.
    pub async fn retry(&self, key: &str, req: RetryRequest) -> Result<RunInfo, QueueError> {
        let key = key.to_string();
        let info = self
            .blocking(move |p| {
                let mut run = p.stored_run(&key)?;
                if matches!(run.state.as_str(), "queued" | "running") {
                    return Err(refused(
                        ErrorCode::InvalidState,
                        format!(
                            "run {} is still {}; cancel it first or wait",
                            run.number, run.state
                        ),
                    ));
                }
                let cat = p.catalog()?;
                let plan = validate(&run.yaml, &cat).map_err(invalid)?;
                let items = p.with_store(|s| s.run_items(&run.id))?;
                let records = p.records_from_rows(&items);
                let reset = match &req.from {
                    Some(from) => {
                        if !plan.steps.contains_key(from) {
                            return Err(refused(
                                ErrorCode::InvalidPipeline,
                                format!("run {} has no step `{from}`", run.number),
                            ));
                        }
                        downstream(&plan, from)
                    }
                    None => {
                        let bad: Vec<String> = plan
                            .steps
                            .iter()
                            .filter(|(n, sp)| {
                                !step_state(sp, records.get(*n), None).is_success()
                                    && step_state(sp, records.get(*n), None) != StepState::Skipped
                                    || records
                                        .get(*n)
                                        .and_then(|r| r.settled.as_ref())
                                        .is_some_and(|(_, why)| why.starts_with("not run"))
                            })
                            .map(|(n, _)| n.clone())
                            .collect();
                        let mut all = Vec::new();
                        for b in bad {
                            for d in downstream(&plan, &b) {
                                if !all.contains(&d) {
                                    all.push(d);
                                }
                            }
                        }
                        all
                    }
                };
                run.state = "running".into();
                run.attempt += 1;
                run.not_before_ms = 0;
                p.with_store(|s| s.reset_steps(&run, &reset))?;
                p.publish(&run.id, run.number, &run.pipeline, "running");
                p.info_blocking(&run.id)
            })
            .await?;
        self.wake();
        Ok(info)
    }

    fn publish(&self, id: &str, number: u64, pipeline: &str, state: &str) {
        self.inner
            .queue
            .publish(Event::PipelineRunChanged(PipelineRunChange {
                id: id.to_string(),
                number,
                pipeline: pipeline.to_string(),
                state: state.to_string(),
            }));
    }

    // ---- the reconciler ----

    /// One pass over the active runs; whether there were any (or the pass could not tell).
    async fn reconcile_all(&self) -> bool {
        let _pass = self.inner.pass.lock().await;
        let me = self.clone();
        let runs =
            match tokio::task::spawn_blocking(move || me.with_store(|s| s.active_runs())).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading pipeline runs");
                    return true;
                }
                Err(_) => return true,
            };
        if runs.is_empty() {
            return false;
        }
        let cat = match self.blocking(|p| p.catalog()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "reading the component catalog");
                return true;
            }
        };
        // The run queue: queued runs start by priority, within each pipeline's concurrency.
        let admitted = admit(&runs, &cat);
        for mut run in runs {
            if run.state == "queued" {
                if !admitted.contains(&run.id) {
                    if run.cancel_requested {
                        run.state = "canceled".into();
                        run.finished_at_ms = Some(now_ms());
                        run.reason = Some("canceled before it started".into());
                        let _ = self.with_store(|s| s.update_run(&run));
                        self.publish(&run.id, run.number, &run.pipeline, &run.state);
                    }
                    continue;
                }
                run.state = "running".into();
                run.started_at_ms = Some(now_ms());
                if self.with_store(|s| s.update_run(&run)).is_err() {
                    continue;
                }
                self.publish(&run.id, run.number, &run.pipeline, "running");
            }
            for _ in 0..64 {
                match self.reconcile_run(&run, &cat).await {
                    Ok(true) => match self.with_store(|s| s.run(&run.id)) {
                        Ok(Some(r)) if r.state == "running" => run = r,
                        _ => break,
                    },
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(run = %run.id, error = %e, "reconciling a pipeline run");
                        break;
                    }
                }
            }
        }
        true
    }

    /// One pass over a run: brings items up to date with their jobs, asks `advance`, and carries
    /// the decisions out. `Ok(true)` when something changed (another pass may do more).
    async fn reconcile_run(&self, run: &StoredRun, cat: &Arc<Catalog>) -> Result<bool, QueueError> {
        let plan = match validate(&run.yaml, cat) {
            Ok(p) => p,
            Err(errors) => {
                let mut r = run.clone();
                r.state = "failed".into();
                r.finished_at_ms = Some(now_ms());
                r.reason = Some(format!(
                    "the pipeline no longer validates: {}",
                    errors.first().map(|d| d.to_string()).unwrap_or_default()
                ));
                self.with_store(|s| s.update_run(&r))?;
                self.publish(&r.id, r.number, &r.pipeline, &r.state);
                return Ok(false);
            }
        };
        let mut items = self.with_store(|s| s.run_items(&run.id))?;
        let mut changed = false;
        // Items in flight: compare with their jobs (read together) and nested runs.
        let in_flight: Vec<JobId> = items
            .iter()
            .filter(|it| {
                it.child_run.is_none() && matches!(it.state.as_str(), "submitted" | "running")
            })
            .filter_map(|it| it.job_id.as_ref().and_then(|j| j.parse().ok()))
            .collect();
        let jobs: HashMap<JobId, Job> = if in_flight.is_empty() {
            HashMap::new()
        } else {
            self.inner
                .queue
                .read(move |s| {
                    let mut out = HashMap::with_capacity(in_flight.len());
                    for id in in_flight {
                        if let Some(stored) = s.get(id)? {
                            out.insert(id, stored.job);
                        }
                    }
                    Ok(out)
                })
                .await?
        };
        for it in items.iter_mut() {
            changed |= self.refresh_item(run, &plan, it, &jobs).await?;
        }
        let records = self.records_from_rows(&items);
        let params: IndexMap<String, Value> = serde_json::from_str(&run.params).unwrap_or_default();
        let stage = self.inner.config.root.join("runs").join(&run.id);
        let base = run.base_dir.as_deref().map(Path::new);
        let view = RunView {
            id: &run.id,
            number: run.number,
            plan: &plan,
            params: &params,
            steps: &records,
            canceling: run.cancel_requested,
            no_cache: run.no_cache,
            stage: &stage,
            base,
            now_ms: now_ms(),
            attempt: run.attempt,
            not_before_ms: run.not_before_ms,
        };
        let decisions = crate::advance::advance(&view);
        if decisions.is_empty() {
            if changed {
                self.publish(&run.id, run.number, &run.pipeline, &run.state);
            }
            return Ok(changed);
        }
        self.apply(run, &plan, decisions).await?;
        self.publish(&run.id, run.number, &run.pipeline, &run.state);
        Ok(true)
    }

    /// Rows to records: rows being submitted count as submitted (their job is, or will be).
    fn records_from_rows(&self, rows: &[StoredItem]) -> BTreeMap<String, StepRecord> {
        let mut out: BTreeMap<String, StepRecord> = BTreeMap::new();
        for r in rows {
            let rec = out.entry(r.step.clone()).or_default();
            if r.item < 0 {
                let how = match r.state.as_str() {
                    "skipped" => Settled::Skipped,
                    "canceled" => Settled::Canceled,
                    _ => Settled::Failed,
                };
                rec.settled = Some((how, r.reason.clone().unwrap_or_default()));
                continue;
            }
            let state = match r.state.as_str() {
                "succeeded" => ItemState::Succeeded,
                "cached" => ItemState::Cached,
                "failed" => ItemState::Failed,
                "canceled" => ItemState::Canceled,
                "running" => ItemState::Submitted { running: true },
                _ => ItemState::Submitted { running: false },
            };
            rec.items.insert(
                r.item as usize,
                Item {
                    state,
                    outputs: serde_json::from_str(&r.outputs).unwrap_or_default(),
                    reason: r.reason.clone(),
                },
            );
        }
        out
    }

    /// Brings one in-flight item up to date: a row left `submitting` by a crash is submitted
    /// (once: its id was chosen first), a finished job's outputs are collected.
    async fn refresh_item(
        &self,
        run: &StoredRun,
        plan: &Plan,
        it: &mut StoredItem,
        jobs: &HashMap<JobId, Job>,
    ) -> Result<bool, QueueError> {
        if let Some(child) = it.child_run.clone() {
            if !matches!(it.state.as_str(), "submitted" | "running") {
                return Ok(false);
            }
            let Some(c) = self.with_store(|s| s.run(&child))? else {
                return Ok(false);
            };
            let (state, reason, outputs) = match c.state.as_str() {
                "succeeded" => (
                    "succeeded",
                    None,
                    c.outputs.clone().unwrap_or_else(|| "{}".into()),
                ),
                "failed" => (
                    "failed",
                    Some(format!(
                        "nested run {} failed: {}",
                        c.number,
                        c.reason.clone().unwrap_or_default()
                    )),
                    "{}".into(),
                ),
                "canceled" => (
                    "canceled",
                    Some(format!("nested run {} was canceled", c.number)),
                    "{}".into(),
                ),
                "running" if it.state != "running" => ("running", None, "{}".into()),
                _ => return Ok(false),
            };
            it.state = state.into();
            it.reason = reason;
            it.outputs = outputs;
            if state != "running" {
                it.finished_at_ms = c.finished_at_ms;
            }
            self.with_store(|s| s.put_items(std::slice::from_ref(it)))?;
            return Ok(true);
        }
        let Some(job_id) = it.job_id.as_ref().and_then(|j| j.parse::<JobId>().ok()) else {
            return Ok(false);
        };
        if it.state == "submitting" {
            // The daemon stopped between recording the id and submitting: finish that.
            let step = plan.steps.get(&it.step);
            let start = step.and_then(|sp| self.restart_decision(run, plan, sp, it.item as usize));
            match start {
                Some(start) => {
                    let answer = self.submit_items(run, &[(start, job_id)]).await.pop();
                    answer.unwrap_or(Ok(()))?;
                    it.state = "submitted".into();
                }
                None => {
                    it.state = "failed".into();
                    it.reason = Some("its job could not be made again after a restart".into());
                }
            }
            self.with_store(|s| s.put_items(std::slice::from_ref(it)))?;
            return Ok(true);
        }
        if !matches!(it.state.as_str(), "submitted" | "running") {
            return Ok(false);
        }
        let Some(job) = jobs.get(&job_id).cloned() else {
            return Ok(false);
        };
        let step = plan.steps.get(&it.step);
        match job.state {
            JobState::Running if it.state != "running" => {
                it.state = "running".into();
                it.started_at_ms = job.started_at_ms;
            }
            JobState::Succeeded => {
                let outputs = step.map(|s| s.outputs.clone()).unwrap_or_default();
                match self.collect(run, it, &job, &outputs).await {
                    Ok(values) => {
                        it.state = "succeeded".into();
                        it.outputs = serde_json::to_string(&values).unwrap_or_default();
                        if let Some(key) = &it.cache_key {
                            let me = self.clone();
                            let (key, run_id, step_name, outs) = (
                                key.clone(),
                                run.id.clone(),
                                it.step.clone(),
                                it.outputs.clone(),
                            );
                            let _ = self
                                .blocking(move |p| {
                                    for f in
                                        file_refs(&serde_json::from_str(&outs).unwrap_or_default())
                                    {
                                        if let Ok(d) = petri_artifacts::parse_digest(&f.digest) {
                                            let _ = p
                                                .inner
                                                .artifacts
                                                .reference(&d, &format!("cache:{key}"));
                                        }
                                    }
                                    me.with_store(|s| {
                                        s.put_cached_step(
                                            &key,
                                            &run_id,
                                            &step_name,
                                            &outs,
                                            now_ms(),
                                        )
                                    })
                                })
                                .await;
                        }
                    }
                    Err(why) => {
                        it.state = "failed".into();
                        it.reason = Some(why);
                    }
                }
                it.started_at_ms = job.started_at_ms;
                it.finished_at_ms = job.finished_at_ms;
            }
            JobState::Failed | JobState::Cancelled | JobState::TimedOut => {
                it.state = if job.state == JobState::Cancelled {
                    "canceled"
                } else {
                    "failed"
                }
                .into();
                let tail = log_tail(&self.inner.queue.home().log(job_id), 10);
                let why = job
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("{:?}", job.state).to_lowercase());
                it.reason = Some(if tail.is_empty() {
                    format!("job {}: {why}", job.number)
                } else {
                    format!("job {}: {why}; the end of its log:\n{tail}", job.number)
                });
                it.started_at_ms = job.started_at_ms;
                it.finished_at_ms = job.finished_at_ms;
            }
            _ => return Ok(false),
        }
        self.with_store(|s| s.put_items(std::slice::from_ref(it)))?;
        Ok(true)
    }

    /// The start decision of one item again (after a restart), from the same inputs.
    fn restart_decision(
        &self,
        run: &StoredRun,
        plan: &Plan,
        step: &crate::validate::StepPlan,
        item: usize,
    ) -> Option<crate::advance::Start> {
        let items = self.with_store(|s| s.run_items(&run.id)).ok()?;
        let mut records = self.records_from_rows(&items);
        records.remove(&step.name);
        let params: IndexMap<String, Value> = serde_json::from_str(&run.params).unwrap_or_default();
        let stage = self.inner.config.root.join("runs").join(&run.id);
        let view = RunView {
            id: &run.id,
            number: run.number,
            plan,
            params: &params,
            steps: &records,
            canceling: false,
            no_cache: true,
            stage: &stage,
            base: run.base_dir.as_deref().map(Path::new),
            now_ms: now_ms(),
            attempt: run.attempt,
            not_before_ms: 0,
        };
        crate::advance::advance(&view)
            .into_iter()
            .find_map(|d| match d {
                Decision::Start(s) if s.step == step.name && s.item == item => Some(*s),
                _ => None,
            })
    }

    /// Collects a finished job's declared outputs: values from `$PETRI_OUTPUTS/KEY` or a
    /// `::set-output KEY=VALUE` line, files into the artifact store.
    async fn collect(
        &self,
        run: &StoredRun,
        it: &StoredItem,
        job: &Job,
        outputs: &IndexMap<String, crate::spec::OutputSpec>,
    ) -> Result<IndexMap<String, Value>, String> {
        let out_dir = self.inner.queue.home().output_dir(job.id);
        let log = self.inner.queue.home().log(job.id);
        let holder = format!("pipeline:{}/{}/{}", run.id, it.step, it.item);
        let outputs = outputs.clone();
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut values = IndexMap::new();
            let mut from_log: HashMap<String, String> = HashMap::new();
            if outputs.values().any(|o| o.kind == OutputKind::Value)
                && let Ok(text) = std::fs::read_to_string(&log)
            {
                {
                    for line in text.lines() {
                        if let Some(rest) = line.trim_start().strip_prefix("::set-output ")
                            && let Some((k, v)) = rest.split_once('=')
                        {
                            from_log.insert(k.trim().to_string(), v.to_string());
                        }
                    }
                }
            }
            for (k, o) in &outputs {
                match o.kind {
                    OutputKind::Value => {
                        let file = out_dir.join(".outputs").join(k);
                        let v = match std::fs::read_to_string(&file) {
                            Ok(t) => t.trim_end_matches(['\n', '\r']).to_string(),
                            Err(_) => match from_log.get(k) {
                                Some(v) => v.clone(),
                                None => {
                                    return Err(format!(
                                        "the step declares the output `{k}` but did not write it \
                                         (write it to $PETRI_OUTPUTS/{k}, or print `::set-output {k}=VALUE`)"
                                    ));
                                }
                            },
                        };
                        values.insert(k.clone(), Value::String(v));
                    }
                    OutputKind::File | OutputKind::Dir => {
                        let rel = o.path.clone().unwrap_or_default();
                        let path = out_dir.join(rel.trim_end_matches('/'));
                        let ok = if o.kind == OutputKind::Dir { path.is_dir() } else { path.is_file() };
                        if !ok {
                            return Err(format!(
                                "the step declares the {} `{k}` at {rel} but it is not there \
                                 (paths are relative to $PETRI_OUTPUT_DIR)",
                                if o.kind == OutputKind::Dir { "folder" } else { "file" }
                            ));
                        }
                        let stored = me
                            .inner
                            .artifacts
                            .put_path(&path, &format!("{holder}/{k}"))
                            .map_err(|e| format!("storing the output `{k}`: {e}"))?;
                        values.insert(
                            k.clone(),
                            FileRef {
                                digest: stored.digest.to_string(),
                                name: path
                                    .file_name()
                                    .map(|n| n.to_string_lossy().into_owned())
                                    .unwrap_or_else(|| k.clone()),
                                dir: o.kind == OutputKind::Dir,
                            }
                            .to_value(),
                        );
                    }
                }
            }
            Ok(values)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    async fn apply(
        &self,
        run: &StoredRun,
        _plan: &Plan,
        decisions: Vec<Decision>,
    ) -> Result<(), QueueError> {
        let now = now_ms();
        let mut rows = Vec::new();
        let mut submit = Vec::new();
        for d in decisions {
            match d {
                Decision::Start(start) => {
                    let start = *start;
                    let cached = match &start.cache_key {
                        Some(key) => self.cache_hit(run, &start, key).await?,
                        None => None,
                    };
                    match cached {
                        Some(row) => rows.push(row),
                        None => {
                            let id = JobId::new();
                            rows.push(StoredItem {
                                run_id: run.id.clone(),
                                step: start.step.clone(),
                                item: start.item as i64,
                                state: "submitting".into(),
                                job_id: Some(id.to_string()),
                                outputs: "{}".into(),
                                cache_key: start.cache_key.clone(),
                                ..Default::default()
                            });
                            submit.push((start, id));
                        }
                    }
                }
                Decision::StartChild {
                    step,
                    pipeline,
                    params,
                } => {
                    let req = RunRequest {
                        pipeline: Some(pipeline.clone()),
                        params,
                        cache: Some(!run.no_cache),
                        ..Default::default()
                    };
                    let parent = serde_json::json!({ "run": run.id, "step": step });
                    let user = run.user.clone();
                    let trig =
                        serde_json::json!({ "kind": "parent", "run": run.number, "step": step });
                    match self
                        .blocking(move |p| p.create_run(req, &user, trig, Some(parent)))
                        .await
                    {
                        Ok(child) => rows.push(StoredItem {
                            run_id: run.id.clone(),
                            step,
                            item: 0,
                            state: "submitted".into(),
                            child_run: Some(child.id),
                            outputs: "{}".into(),
                            started_at_ms: Some(now),
                            ..Default::default()
                        }),
                        Err(e) => rows.push(StoredItem {
                            run_id: run.id.clone(),
                            step,
                            item: -1,
                            state: "failed".into(),
                            outputs: "{}".into(),
                            finished_at_ms: Some(now),
                            reason: Some(format!("starting `pipeline:{pipeline}`: {e}")),
                            ..Default::default()
                        }),
                    }
                }
                Decision::Settle { step, how, reason } => rows.push(StoredItem {
                    run_id: run.id.clone(),
                    step,
                    item: -1,
                    state: match how {
                        Settled::Skipped => "skipped",
                        Settled::Failed => "failed",
                        Settled::Canceled => "canceled",
                    }
                    .into(),
                    outputs: "{}".into(),
                    finished_at_ms: Some(now),
                    reason: Some(reason),
                    ..Default::default()
                }),
                Decision::CancelJobs { step, items } => {
                    let all = self.with_store(|s| s.run_items(&run.id))?;
                    for it in all
                        .iter()
                        .filter(|i| i.step == step && items.contains(&(i.item.max(0) as usize)))
                    {
                        if let Some(j) = it.job_id.as_ref().and_then(|j| j.parse::<JobId>().ok()) {
                            let _ = self
                                .inner
                                .queue
                                .stop_job(
                                    j,
                                    Some(format!("pipeline run {} was canceled", run.number)),
                                )
                                .await;
                        }
                        if let Some(c) = &it.child_run {
                            let _ = Box::pin(self.cancel(c)).await;
                        }
                    }
                }
                Decision::RetryRun {
                    steps,
                    not_before_ms,
                    reason,
                } => {
                    // Pipeline retries: the failed steps run again after the backoff.
                    tracing::info!(run = %run.id, attempt = run.attempt + 1, %reason, "retrying a pipeline run");
                    self.with_store(|s| s.put_items(&rows))?;
                    rows.clear();
                    let mut r = run.clone();
                    r.attempt += 1;
                    r.not_before_ms = not_before_ms;
                    self.with_store(|s| s.reset_steps(&r, &steps))?;
                }
                Decision::Finish {
                    state,
                    reason,
                    outputs,
                } => {
                    let mut r = run.clone();
                    r.state = match state {
                        RunEnd::Succeeded => "succeeded",
                        RunEnd::Failed => "failed",
                        RunEnd::Canceled => "canceled",
                    }
                    .into();
                    r.finished_at_ms = Some(now);
                    r.reason = reason;
                    r.outputs = Some(serde_json::to_string(&outputs).unwrap_or_default());
                    self.with_store(|s| s.put_items(&rows))?;
                    rows.clear();
                    self.with_store(|s| s.update_run(&r))?;
                    self.publish(&r.id, r.number, &r.pipeline, &r.state);
                    if r.parent.is_some() {
                        self.wake();
                    }
                }
            }
        }
        // Every id is recorded before any job is submitted.
        self.with_store(|s| s.put_items(&rows))?;
        if submit.is_empty() {
            return Ok(());
        }
        // The pass's jobs go to the queue together; their rows are written in one transaction.
        let answers = self.submit_items(run, &submit).await;
        let finished = now_ms();
        let mut done = Vec::with_capacity(submit.len());
        for ((start, _), answer) in submit.iter().zip(answers) {
            let mut row = rows
                .iter()
                .find(|r| r.step == start.step && r.item == start.item as i64)
                .cloned()
                .unwrap_or_default();
            match answer {
                Ok(()) => row.state = "submitted".into(),
                Err(e) => {
                    row.state = "failed".into();
                    row.reason = Some(format!("the queue refused the step's job: {e}"));
                    row.finished_at_ms = Some(finished);
                }
            }
            done.push(row);
        }
        self.with_store(|s| s.put_items(&done))?;
        Ok(())
    }

    /// A step whose cache key matches an earlier success, with its files still in the store.
    async fn cache_hit(
        &self,
        run: &StoredRun,
        start: &crate::advance::Start,
        key: &str,
    ) -> Result<Option<StoredItem>, QueueError> {
        let key = key.to_string();
        let (run_id, step, item) = (run.id.clone(), start.step.clone(), start.item);
        self.blocking(move |p| {
            let Some((outs, from_run, from_step)) = p.with_store(|s| s.cached_step(&key))? else {
                return Ok(None);
            };
            let values: IndexMap<String, Value> = serde_json::from_str(&outs).unwrap_or_default();
            let holder = format!("pipeline:{run_id}/{step}/{item}");
            for f in file_refs(&values) {
                let ok = petri_artifacts::parse_digest(&f.digest)
                    .ok()
                    .is_some_and(|d| p.inner.artifacts.reference(&d, &holder).is_ok());
                if !ok {
                    // A file was collected: forget the entry and run the step.
                    let _ = p.with_store(|s| s.forget_cached_step(&key));
                    return Ok(None);
                }
            }
            let from_number = p.with_store(|s| s.run(&from_run))?.map(|r| r.number);
            let now = now_ms();
            Ok(Some(StoredItem {
                run_id,
                step,
                item: item as i64,
                state: "cached".into(),
                outputs: outs,
                cache_key: Some(key),
                cached_from: Some(format!(
                    "run {}/{from_step}",
                    from_number.map(|n| n.to_string()).unwrap_or(from_run)
                )),
                started_at_ms: Some(now),
                finished_at_ms: Some(now),
                ..Default::default()
            }))
        })
        .await
    }

    /// `submit_item` for a pass's jobs: inputs put in place, then one submission for all.
    async fn submit_items(
        &self,
        run: &StoredRun,
        submit: &[(crate::advance::Start, JobId)],
    ) -> Vec<Result<(), QueueError>> {
        let inputs: Vec<Vec<(PathBuf, FileRef)>> =
            submit.iter().map(|(s, _)| s.inputs.clone()).collect();
        let placed = self
            .blocking(move |p| {
                Ok(inputs
                    .iter()
                    .map(|files| p.place_inputs(files))
                    .collect::<Vec<_>>())
            })
            .await;
        let placed = match placed {
            Ok(p) => p,
            Err(e) => {
                let msg = e.to_string();
                return submit
                    .iter()
                    .map(|_| Err(QueueError::Io(msg.clone())))
                    .collect();
            }
        };
        let mut out: Vec<Option<Result<(), QueueError>>> = Vec::with_capacity(submit.len());
        let mut jobs = Vec::new();
        let mut slots = Vec::new();
        for (i, ((start, id), placed)) in submit.iter().zip(placed).enumerate() {
            match placed {
                Ok(()) => {
                    slots.push(i);
                    jobs.push((*id, start.job.clone(), step_origin(run, start)));
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(e))),
            }
        }
        let answers = self
            .inner
            .queue
            .submit_once_each(jobs, run.user.clone())
            .await;
        for (slot, a) in slots.into_iter().zip(answers) {
            out[slot] = Some(a.map(|_| ()));
        }
        out.into_iter().map(|o| o.unwrap_or(Ok(()))).collect()
    }

    /// Materialises a job's input files (those not there yet).
    fn place_inputs(&self, inputs: &[(PathBuf, FileRef)]) -> Result<(), QueueError> {
        for (dest, f) in inputs {
            if dest.exists() {
                continue;
            }
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| QueueError::Io(format!("{}: {e}", parent.display())))?;
            }
            let d = petri_artifacts::parse_digest(&f.digest).map_err(art_err)?;
            self.inner
                .artifacts
                .materialize(&d, dest)
                .map_err(art_err)?;
        }
        Ok(())
    }
}

/// What a catalog was made from: its component folders' files (count, sizes, newest change) and
/// the saved pipelines' generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CatalogStamp {
    builtin: (u64, u64, i128),
    user: (u64, u64, i128),
    saved: u64,
}

/// Files, total bytes and the newest modification (ns) under a folder (and the folders' own
/// times, so that a removed file counts too).
fn folder_stamp(dir: &Path) -> (u64, u64, i128) {
    fn walk(dir: &Path, acc: &mut (u64, u64, i128), depth: usize) {
        let Ok(meta) = std::fs::metadata(dir) else {
            return;
        };
        let ns = |m: &std::fs::Metadata| {
            m.modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128)
        };
        acc.2 = acc.2.max(ns(&meta));
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                if depth < 8 {
                    walk(&e.path(), acc, depth + 1);
                }
            } else {
                acc.0 += 1;
                acc.1 += m.len();
                acc.2 = acc.2.max(ns(&m));
            }
        }
    }
    let mut acc = (0, 0, 0);
    walk(dir, &mut acc, 0);
    acc
}

/// The origin of a step's job: the run, and the step (with its item for a fan-out).
fn step_origin(run: &StoredRun, start: &crate::advance::Start) -> Origin {
    Origin::PipelineStep {
        run: run.id.clone(),
        step: if start.of > 1 || start.item > 0 {
            format!("{}[{}]", start.step, start.item)
        } else {
            start.step.clone()
        },
    }
}

/// Queued runs that may start now: by priority then age, within each pipeline's concurrency.
fn admit(runs: &[StoredRun], _cat: &Catalog) -> Vec<String> {
    let mut running: HashMap<&str, u32> = HashMap::new();
    for r in runs.iter().filter(|r| r.state == "running") {
        *running.entry(r.pipeline.as_str()).or_default() += 1;
    }
    let mut queued: Vec<&StoredRun> = runs
        .iter()
        .filter(|r| r.state == "queued" && !r.cancel_requested)
        .collect();
    queued.sort_by_key(|r| (-r.priority, r.number));
    let mut out = Vec::new();
    for r in queued {
        let limit = serde_yaml_ng::from_str::<crate::PipelineSpec>(&r.yaml)
            .ok()
            .and_then(|s| s.concurrency)
            .unwrap_or(u32::MAX);
        let n = running.entry(r.pipeline.as_str()).or_default();
        // A nested run never waits behind its parent's pipeline limit.
        if *n < limit || r.parent.is_some() {
            *n += 1;
            out.push(r.id.clone());
        }
    }
    out
}

/// A step and every step that needs it, directly or not.
fn downstream(plan: &Plan, from: &str) -> Vec<String> {
    let mut out = vec![from.to_string()];
    let mut changed = true;
    while changed {
        changed = false;
        for (n, s) in &plan.steps {
            if !out.contains(n) && s.needs.iter().any(|d| out.contains(d)) {
                out.push(n.clone());
                changed = true;
            }
        }
    }
    out
}

fn file_refs(values: &IndexMap<String, Value>) -> Vec<FileRef> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<FileRef>) {
        if let Some(f) = FileRef::from_value(v) {
            out.push(f);
        } else if let Value::Array(a) = v {
            a.iter().for_each(|x| walk(x, out));
        }
    }
    values.values().for_each(|v| walk(v, &mut out));
    out
}

/// The last `n` lines of a log.
fn log_tail(path: &Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(8192);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn outline(plan: &Plan) -> Vec<StepOutline> {
    plan.steps
        .values()
        .map(|s| StepOutline {
            name: s.name.clone(),
            needs: s.needs.clone(),
            uses: match &s.kind {
                StepKind::Component { name, .. } => Some(name.clone()),
                StepKind::Pipeline { name } => Some(format!("pipeline:{name}")),
                StepKind::Command => None,
            },
            kind: match &s.kind {
                StepKind::Component { .. } => "component",
                StepKind::Pipeline { .. } => "pipeline",
                StepKind::Command => "command",
            }
            .into(),
        })
        .collect()
}

/// The steps of a pipeline that does not validate, as far as its YAML reads.
fn outline_loose(yaml: &str) -> Vec<StepOutline> {
    let Ok(spec) = serde_yaml_ng::from_str::<crate::PipelineSpec>(yaml) else {
        return Vec::new();
    };
    spec.steps
        .iter()
        .map(|(n, s)| StepOutline {
            name: n.clone(),
            needs: s.needs.clone(),
            uses: s.uses.clone(),
            kind: match s.uses.as_deref() {
                Some(u) if u.starts_with("pipeline:") => "pipeline",
                Some(_) => "component",
                None => "command",
            }
            .into(),
        })
        .collect()
}

fn builtin_files(dir: &'static include_dir::Dir<'static>) -> Vec<(String, &'static [u8])> {
    let mut out = Vec::new();
    for f in dir.files() {
        out.push((f.path().display().to_string(), f.contents()));
    }
    for d in dir.dirs() {
        let name = d.path().display().to_string();
        if name == "tests" || name.ends_with("__pycache__") {
            continue;
        }
        out.extend(builtin_files(d));
    }
    out
}

/// What a pipeline step's job gets at launch: `PETRI_OUTPUTS`, the folder its values go to.
pub fn launch_hook(home: petri_queue::Home) -> petri_queue::LaunchHook {
    Arc::new(move |job: &Job| {
        let dir = home.output_dir(job.id).join(".outputs");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::create_dir_all(&dir);
        vec![("PETRI_OUTPUTS".to_string(), dir.display().to_string())]
    })
}
