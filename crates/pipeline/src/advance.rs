//! The engine as a pure function: given a run (its plan, params and what is known of each step)
//! and the time, decide what to do next. No IO, no clock of its own: the reconciler carries the
//! decisions out and calls it again when something changes, and tests drive it with a simulated
//! clock, the way `petri-sched` is tested.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use petri_domain::JobSpec;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::expr::{self, ExprError, Scope, Template};
use crate::validate::{ForEach, Plan, StepKind, StepPlan};

/// Where one job of a step stands (a plain step has one; a `for_each` step one per item).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ItemState {
    /// Its job is in the queue (waiting, held or running: `running` tells).
    Submitted {
        running: bool,
    },
    /// Done; outputs are collected.
    Succeeded,
    /// Its outputs came from an earlier run's step with the same inputs.
    Cached,
    Failed,
    Canceled,
}

impl ItemState {
    pub fn is_terminal(&self) -> bool {
        !matches!(self, ItemState::Submitted { .. })
    }
    pub fn is_success(&self) -> bool {
        matches!(self, ItemState::Succeeded | ItemState::Cached)
    }
}

/// A file output: its content hash and the name it is materialised under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileRef {
    /// `sha256:<hex>` in the artifact store.
    pub digest: String,
    /// The last part of the path it was written at (`model`, `train.parquet`).
    pub name: String,
    pub dir: bool,
}

impl FileRef {
    /// How a file travels inside values: an object the scope recognises.
    pub fn to_value(&self) -> Value {
        serde_json::json!({ "$artifact": self.digest, "name": self.name, "dir": self.dir })
    }
    pub fn from_value(v: &Value) -> Option<FileRef> {
        let o = v.as_object()?;
        Some(FileRef {
            digest: o.get("$artifact")?.as_str()?.to_string(),
            name: o.get("name")?.as_str()?.to_string(),
            dir: o.get("dir").and_then(Value::as_bool).unwrap_or(false),
        })
    }
}

/// One job of a step, as the reconciler knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub state: ItemState,
    /// Values as text (or JSON), files as [`FileRef::to_value`].
    pub outputs: IndexMap<String, Value>,
    pub reason: Option<String>,
}

/// What is recorded of a step as a whole.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepRecord {
    /// Set when the step was skipped (`when` false, a need skipped) or failed before a job (an
    /// expression that failed at run time, a nested run that failed).
    pub settled: Option<(Settled, String)>,
    /// The jobs, by item (0 for a plain step).
    pub items: BTreeMap<usize, Item>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Settled {
    Skipped,
    Failed,
    Canceled,
}

/// The state of a step as a whole, for the run view and `needs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Queued,
    Running,
    Succeeded,
    Cached,
    Failed,
    Skipped,
    Canceled,
}

impl StepState {
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            StepState::Pending | StepState::Queued | StepState::Running
        )
    }
    pub fn is_success(self) -> bool {
        matches!(self, StepState::Succeeded | StepState::Cached)
    }
}

/// Everything `advance` looks at.
#[derive(Clone, Debug)]
pub struct RunView<'a> {
    pub id: &'a str,
    pub number: u64,
    pub plan: &'a Plan,
    pub params: &'a IndexMap<String, Value>,
    pub steps: &'a BTreeMap<String, StepRecord>,
    /// A cancel was asked for.
    pub canceling: bool,
    /// `--no-cache` for this run.
    pub no_cache: bool,
    /// Where inputs of this run's steps are materialised: `<stage>/<step>[-<item>]/inputs`.
    pub stage: &'a Path,
    /// The folder relative workdirs and paths are resolved against (the pipeline file's).
    pub base: Option<&'a Path>,
    /// The time now (ms since the epoch): the reconciler's clock, or a test's.
    pub now_ms: i64,
    /// Which attempt of the run this is (1 for the first; pipeline `retries` add more).
    pub attempt: u32,
    /// A pipeline retry waits for its backoff: nothing starts before this time.
    pub not_before_ms: i64,
}

/// What the reconciler should do.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Submit the job of a step (or of one item of it), unless the cache has it.
    Start(Box<Start>),
    /// Run a saved pipeline as the step.
    StartChild {
        step: String,
        pipeline: String,
        params: IndexMap<String, Value>,
    },
    /// Record the step as settled (skipped, or failed before a job: why).
    Settle {
        step: String,
        how: Settled,
        reason: String,
    },
    /// Cancel the jobs that are still in the queue (a cancel, or a failed step).
    CancelJobs { step: String, items: Vec<usize> },
    /// A step failed and the pipeline's `retries` allow another attempt: forget these steps
    /// (the failed and the canceled ones) and run them again from `not_before_ms`.
    RetryRun {
        steps: Vec<String>,
        not_before_ms: i64,
        reason: String,
    },
    /// The run is over.
    Finish {
        state: RunEnd,
        reason: Option<String>,
        outputs: IndexMap<String, Value>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    Succeeded,
    Failed,
    Canceled,
}

/// One job to start.
#[derive(Clone, Debug, PartialEq)]
pub struct Start {
    pub step: String,
    pub item: usize,
    /// Of how many (1 for a plain step).
    pub of: usize,
    pub job: JobSpec,
    /// Files to put in place before the job starts: destination, artifact.
    pub inputs: Vec<(PathBuf, FileRef)>,
    /// Set when the step may reuse an earlier step's outputs with this key.
    pub cache_key: Option<String>,
    /// The declared outputs, for collecting them afterwards.
    pub outputs: IndexMap<String, crate::spec::OutputSpec>,
}

/// The state of a step from its record.
pub fn step_state(plan: &StepPlan, rec: Option<&StepRecord>, items: Option<usize>) -> StepState {
    let Some(rec) = rec else {
        return StepState::Pending;
    };
    if let Some((how, _)) = &rec.settled {
        return match how {
            Settled::Skipped => StepState::Skipped,
            Settled::Failed => StepState::Failed,
            Settled::Canceled => StepState::Canceled,
        };
    }
    if rec.items.is_empty() {
        return StepState::Pending;
    }
    let expected = if plan.for_each.is_some() {
        items.unwrap_or(rec.items.len())
    } else {
        1
    };
    let all = rec.items.values();
    if rec.items.values().any(|i| i.state == ItemState::Failed) {
        return if rec.items.values().all(|i| i.state.is_terminal()) {
            StepState::Failed
        } else {
            StepState::Running
        };
    }
    if rec.items.values().any(|i| i.state == ItemState::Canceled)
        && rec.items.values().all(|i| i.state.is_terminal())
    {
        return StepState::Canceled;
    }
    if rec.items.len() >= expected && rec.items.values().all(|i| i.state.is_success()) {
        return if rec.items.values().all(|i| i.state == ItemState::Cached) {
            StepState::Cached
        } else {
            StepState::Succeeded
        };
    }
    if all
        .clone()
        .any(|i| matches!(i.state, ItemState::Submitted { running: true }))
    {
        StepState::Running
    } else {
        StepState::Queued
    }
}

/// The outputs of a step as later steps see them: a plain step's own; a `for_each` step's
/// gathered into lists in item order.
pub fn step_outputs(plan: &StepPlan, rec: &StepRecord) -> IndexMap<String, Value> {
    if plan.for_each.is_none() {
        return rec
            .items
            .get(&0)
            .map(|i| i.outputs.clone())
            .unwrap_or_default();
    }
    let mut out = IndexMap::new();
    for k in plan.outputs.keys() {
        let list: Vec<Value> = rec
            .items
            .values()
            .map(|i| i.outputs.get(k).cloned().unwrap_or(Value::Null))
            .collect();
        out.insert(k.clone(), Value::Array(list));
    }
    out
}

/// The scope expressions of one step see.
struct StepScope<'a> {
    view: &'a RunView<'a>,
    item: Option<(usize, &'a Value)>,
    inputs: Option<&'a IndexMap<String, Value>>,
    component_dir: Option<&'a Path>,
    /// Where referenced files are materialised for this job, and what was referenced.
    inputs_dir: PathBuf,
    files: RefCell<Vec<(PathBuf, FileRef)>>,
}

impl StepScope<'_> {
    fn file_path(&self, owner: &str, key: &str, f: &FileRef) -> Value {
        let dest = self.inputs_dir.join(owner).join(key).join(&f.name);
        let mut files = self.files.borrow_mut();
        if !files.iter().any(|(d, _)| d == &dest) {
            files.push((dest.clone(), f.clone()));
        }
        Value::String(dest.display().to_string())
    }
    /// Files inside a value (a gathered list of files) become paths too.
    fn resolve(&self, owner: &str, key: &str, v: Value) -> Value {
        if let Some(f) = FileRef::from_value(&v) {
            return self.file_path(owner, key, &f);
        }
        match v {
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, it)| self.resolve(owner, &format!("{key}-{i}"), it))
                    .collect(),
            ),
            other => other,
        }
    }
}

impl Scope for StepScope<'_> {
    fn lookup(&self, path: &[String]) -> Result<Value, ExprError> {
        let missing = || ExprError(format!("`{}` has no value", path.join(".")));
        let seg = |i: usize| path.get(i).map(String::as_str);
        let v = match seg(0) {
            Some("params") => {
                let k = seg(1).ok_or_else(missing)?;
                let v = self.view.params.get(k).cloned().ok_or_else(missing)?;
                self.resolve("params", k, v)
            }
            Some("steps") => {
                let s = seg(1).ok_or_else(missing)?;
                let plan = self.view.plan.steps.get(s).ok_or_else(missing)?;
                let rec = self.view.steps.get(s);
                if seg(2) == Some("state") {
                    let st = step_state(plan, rec, None);
                    return Ok(serde_json::to_value(st).unwrap_or(Value::Null));
                }
                let k = seg(3).ok_or_else(missing)?;
                let outs = rec.map(|r| step_outputs(plan, r)).unwrap_or_default();
                let v = outs.get(k).cloned().ok_or_else(|| {
                    ExprError(format!("step `{s}` did not give the output `{k}`"))
                })?;
                self.resolve(s, k, v)
            }
            Some("item") => self.item.map(|(_, v)| v.clone()).ok_or_else(missing)?,
            Some("item_index") => Value::from(self.item.map(|(i, _)| i).ok_or_else(missing)?),
            Some("run") => match seg(1) {
                Some("id") => Value::from(self.view.id),
                Some("number") => Value::from(self.view.number),
                _ => return Err(missing()),
            },
            Some("inputs") => {
                let k = seg(1).ok_or_else(missing)?;
                self.inputs
                    .and_then(|i| i.get(k))
                    .cloned()
                    .ok_or_else(missing)?
            }
            Some("component") if seg(1) == Some("dir") => Value::String(
                self.component_dir
                    .ok_or_else(missing)?
                    .display()
                    .to_string(),
            ),
            _ => return Err(missing()),
        };
        // Indexing into a list or an object: `x[0]`, `x['k']`, `x.k`.
        let depth = match seg(0) {
            Some("steps") => 4,
            Some("params") | Some("inputs") | Some("run") | Some("component") => 2,
            _ => 1,
        };
        let mut v = v;
        for s in path.iter().skip(depth) {
            let parsed = match &v {
                Value::String(t) => serde_json::from_str(t).unwrap_or(v.clone()),
                _ => v.clone(),
            };
            v = match (&parsed, s.parse::<usize>()) {
                (Value::Array(a), Ok(i)) => a.get(i).cloned().ok_or_else(missing)?,
                (Value::Object(o), _) => o.get(s).cloned().ok_or_else(missing)?,
                _ => return Err(missing()),
            };
        }
        Ok(v)
    }
}

/// The run's next decisions.
pub fn advance(view: &RunView) -> Vec<Decision> {
    let plan = view.plan;
    let mut out = Vec::new();
    let state_of = |name: &str| {
        plan.steps
            .get(name)
            .map(|p| step_state(p, view.steps.get(name), None))
            .unwrap_or(StepState::Pending)
    };
    let live: Vec<(String, Vec<usize>)> = plan
        .steps
        .keys()
        .filter_map(|n| {
            let rec = view.steps.get(n)?;
            let items: Vec<usize> = rec
                .items
                .iter()
                .filter(|(_, i)| !i.state.is_terminal())
                .map(|(k, _)| *k)
                .collect();
            (!items.is_empty()).then(|| (n.clone(), items))
        })
        .collect();
    let failed: Option<(String, String)> = plan.steps.keys().find_map(|n| {
        (state_of(n) == StepState::Failed).then(|| {
            let rec = view.steps.get(n);
            let reason = rec
                .and_then(|r| {
                    r.settled.as_ref().map(|(_, why)| why.clone()).or_else(|| {
                        r.items
                            .values()
                            .find(|i| i.state == ItemState::Failed)
                            .and_then(|i| i.reason.clone())
                    })
                })
                .unwrap_or_else(|| "failed".into());
            (n.clone(), reason)
        })
    });

    if view.canceling {
        if live.is_empty() {
            for n in plan.steps.keys() {
                if !state_of(n).is_terminal() {
                    out.push(Decision::Settle {
                        step: n.clone(),
                        how: Settled::Canceled,
                        reason: "the run was canceled".into(),
                    });
                }
            }
            out.push(Decision::Finish {
                state: RunEnd::Canceled,
                reason: Some("canceled".into()),
                outputs: IndexMap::new(),
            });
        } else {
            for (step, items) in live {
                out.push(Decision::CancelJobs { step, items });
            }
        }
        return out;
    }

    if view.now_ms < view.not_before_ms {
        // A pipeline retry waits out its backoff.
        return out;
    }

    if let Some((step, reason)) = failed {
        // Start nothing new; let what runs end, then retry the failed steps (the pipeline's
        // `retries`) or fail the run with the step's reason.
        let retries = plan.spec.retries.as_ref();
        if live.is_empty() && retries.is_some_and(|r| view.attempt <= r.max) {
            let backoff = retries.and_then(|r| r.backoff).map_or(0, |b| b.0 as i64);
            let steps = plan
                .steps
                .keys()
                .filter(|n| matches!(state_of(n), StepState::Failed | StepState::Canceled))
                .cloned()
                .collect();
            out.push(Decision::RetryRun {
                steps,
                not_before_ms: view.now_ms + backoff,
                reason: format!("step `{step}` failed: {reason}"),
            });
        } else if live.is_empty() {
            for n in plan.steps.keys() {
                if !state_of(n).is_terminal() {
                    out.push(Decision::Settle {
                        step: n.clone(),
                        how: Settled::Skipped,
                        reason: format!("not run: step `{step}` failed"),
                    });
                }
            }
            out.push(Decision::Finish {
                state: RunEnd::Failed,
                reason: Some(format!("step `{step}` failed: {reason}")),
                outputs: IndexMap::new(),
            });
        }
        return out;
    }

    let mut all_done = true;
    for (name, step) in &plan.steps {
        let st = state_of(name);
        if st.is_terminal() {
            continue;
        }
        all_done = false;
        if st != StepState::Pending {
            continue;
        }
        let needs: Vec<(String, StepState)> = step
            .needs
            .iter()
            .map(|n| (n.clone(), state_of(n)))
            .collect();
        if needs.iter().any(|(_, s)| !s.is_terminal()) {
            continue;
        }
        if let Some((n, _)) = needs.iter().find(|(_, s)| *s == StepState::Skipped) {
            out.push(Decision::Settle {
                step: name.clone(),
                how: Settled::Skipped,
                reason: format!("step `{n}` was skipped"),
            });
            continue;
        }
        out.extend(start_step(view, step));
    }
    if all_done {
        // Every step ended well (skipped counts): the run succeeded; its outputs for a parent.
        let scope = scope_for(view, None, None, None, view.stage.to_path_buf());
        let mut outputs = IndexMap::new();
        let mut problem = None;
        for (k, t) in &plan.outputs {
            match raw_value(t, &scope) {
                Ok(v) => {
                    outputs.insert(k.clone(), v);
                }
                Err(e) => problem = Some(format!("the pipeline's output `{k}`: {e}")),
            }
        }
        out.push(match problem {
            None => Decision::Finish {
                state: RunEnd::Succeeded,
                reason: None,
                outputs,
            },
            Some(p) => Decision::Finish {
                state: RunEnd::Failed,
                reason: Some(p),
                outputs: IndexMap::new(),
            },
        });
    }
    out
}

fn scope_for<'a>(
    view: &'a RunView<'a>,
    item: Option<(usize, &'a Value)>,
    inputs: Option<&'a IndexMap<String, Value>>,
    component_dir: Option<&'a Path>,
    inputs_dir: PathBuf,
) -> StepScope<'a> {
    StepScope {
        view,
        item,
        inputs,
        component_dir,
        inputs_dir,
        files: RefCell::new(Vec::new()),
    }
}

/// A value with file references left as references (for outputs handed to a parent run).
fn raw_value(t: &Template, scope: &StepScope) -> Result<Value, ExprError> {
    match t.single() {
        Some(expr::Expr::Ref(path)) if path.first().map(String::as_str) == Some("steps") => {
            let s = &path[1];
            let plan = scope
                .view
                .plan
                .steps
                .get(s)
                .ok_or_else(|| ExprError(s.clone()))?;
            let rec = scope.view.steps.get(s).cloned().unwrap_or_default();
            let outs = step_outputs(plan, &rec);
            outs.get(path.get(3).map(String::as_str).unwrap_or(""))
                .cloned()
                .ok_or_else(|| ExprError(format!("step `{s}` gave no such output")))
        }
        _ => t.value(scope),
    }
}

fn start_step(view: &RunView, step: &StepPlan) -> Vec<Decision> {
    let settle_failed = |reason: String| {
        vec![Decision::Settle {
            step: step.name.clone(),
            how: Settled::Failed,
            reason,
        }]
    };
    let plain = scope_for(view, None, None, None, PathBuf::new());
    if let Some(w) = &step.when {
        match w.value(&plain).and_then(|v| expr::truth(&v)) {
            Ok(true) => {}
            Ok(false) => {
                return vec![Decision::Settle {
                    step: step.name.clone(),
                    how: Settled::Skipped,
                    reason: "its `when` condition is false".into(),
                }];
            }
            Err(e) => return settle_failed(format!("`when`: {e}")),
        }
    }
    let items: Vec<Value> = match &step.for_each {
        None => vec![Value::Null],
        Some(ForEach::List(items)) => items.clone(),
        Some(ForEach::Expr(t)) => match t.value(&plain) {
            Ok(Value::Array(items)) => items,
            Ok(Value::String(s)) => match serde_json::from_str::<Vec<Value>>(&s) {
                Ok(items) => items,
                Err(_) => {
                    return settle_failed(format!("`for_each` gave `{s}`, which is not a list"));
                }
            },
            Ok(other) => return settle_failed(format!("`for_each` gave {other}, not a list")),
            Err(e) => return settle_failed(format!("`for_each`: {e}")),
        },
    };
    if let StepKind::Pipeline { name } = &step.kind {
        let mut params = IndexMap::new();
        for (k, t) in &step.with {
            match raw_value(t, &plain) {
                Ok(v) => {
                    params.insert(k.clone(), v);
                }
                Err(e) => return settle_failed(format!("`with.{k}`: {e}")),
            }
        }
        return vec![Decision::StartChild {
            step: step.name.clone(),
            pipeline: name.clone(),
            params,
        }];
    }
    if step.for_each.is_some() && items.is_empty() {
        return vec![Decision::Settle {
            step: step.name.clone(),
            how: Settled::Skipped,
            reason: "`for_each` gave an empty list".into(),
        }];
    }
    let n = items.len();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let slot = if step.for_each.is_some() {
            format!("{}-{i}", step.name)
        } else {
            step.name.clone()
        };
        let stage = view.stage.join(&slot);
        let inputs_dir = stage.join("inputs");
        let item_ref = step.for_each.as_ref().map(|_| (i, item));
        match render(view, step, item_ref, &inputs_dir) {
            Ok((job, inputs)) => {
                let cache_key =
                    (step.cache && !view.no_cache).then(|| cache_key(step, &job, &inputs, &stage));
                out.push(Decision::Start(Box::new(Start {
                    step: step.name.clone(),
                    item: i,
                    of: n,
                    job,
                    inputs,
                    cache_key,
                    outputs: step.outputs.clone(),
                })));
            }
            Err(e) => return settle_failed(e),
        }
    }
    out
}

/// Renders a step's job: its inputs (component), then the job fields.
fn render(
    view: &RunView,
    step: &StepPlan,
    item: Option<(usize, &Value)>,
    inputs_dir: &Path,
) -> Result<(JobSpec, Vec<(PathBuf, FileRef)>), String> {
    let scope = scope_for(view, item, None, None, inputs_dir.to_path_buf());
    let mut inputs = IndexMap::new();
    let mut component_dir = None;
    if let StepKind::Component {
        dir, inputs: decl, ..
    } = &step.kind
    {
        component_dir = Some(dir.as_path());
        for (k, spec) in decl {
            let v = match step.with.get(k) {
                Some(t) => t.value(&scope).map_err(|e| format!("`with.{k}`: {e}"))?,
                None => spec.default.clone().unwrap_or(Value::Null),
            };
            inputs.insert(k.clone(), v);
        }
    } else {
        for (k, t) in &step.with {
            let v = t.value(&scope).map_err(|e| format!("`with.{k}`: {e}"))?;
            inputs.insert(k.clone(), v);
        }
    }
    let files = scope.files.into_inner();
    let scope = StepScope {
        view,
        item,
        inputs: Some(&inputs),
        component_dir,
        inputs_dir: inputs_dir.to_path_buf(),
        files: RefCell::new(files),
    };
    let mut job = serde_yaml_ng::Value::Mapping(step.job.clone());
    render_yaml(&mut job, &scope, "")?;
    let serde_yaml_ng::Value::Mapping(mut map) = job else {
        unreachable!("a mapping stays a mapping")
    };
    if !map.contains_key("name") {
        let name = match item {
            Some((i, _)) => format!("{}[{i}]", step.name),
            None => step.name.clone(),
        };
        map.insert("name".into(), name.into());
    }
    if matches!(step.kind, StepKind::Command) && !inputs.is_empty() {
        // `with` on a command step: INPUT_<KEY> variables.
        let env_key = serde_yaml_ng::Value::from("env");
        let mut env = match map.get(&env_key) {
            Some(serde_yaml_ng::Value::Mapping(m)) => m.clone(),
            _ => serde_yaml_ng::Mapping::new(),
        };
        for (k, v) in &inputs {
            let var = format!("INPUT_{}", k.to_uppercase().replace('-', "_"));
            env.entry(var.into())
                .or_insert_with(|| expr::to_text(v).into());
        }
        map.insert(env_key, serde_yaml_ng::Value::Mapping(env));
    }
    // Relative workdirs are the pipeline file's folder's.
    if let Some(base) = view.base {
        match map.get("workdir").and_then(|w| w.as_str()) {
            Some(w) if !Path::new(w).is_absolute() => {
                let abs = base.join(w).display().to_string();
                map.insert("workdir".into(), abs.into());
            }
            _ => {}
        }
    }
    // A component's folder and the inputs are read-only mounts of a container step.
    let files = scope.files.into_inner();
    if map.contains_key("image") {
        let mut mounts = match map.get("mounts") {
            Some(serde_yaml_ng::Value::Sequence(s)) => s.clone(),
            _ => Vec::new(),
        };
        let mut add = |p: &Path| {
            let mut m = serde_yaml_ng::Mapping::new();
            m.insert("source".into(), p.display().to_string().into());
            m.insert("read_only".into(), true.into());
            mounts.push(serde_yaml_ng::Value::Mapping(m));
        };
        if let Some(d) = component_dir {
            add(d);
        }
        if !files.is_empty() {
            add(inputs_dir);
        }
        if !mounts.is_empty() {
            map.insert("mounts".into(), serde_yaml_ng::Value::Sequence(mounts));
        }
    }
    let job: JobSpec = serde_yaml_ng::from_value(serde_yaml_ng::Value::Mapping(map))
        .map_err(|e| format!("the step's job spec: {e}"))?;
    job.validate().map_err(|e| e.to_string())?;
    Ok((job, files))
}

fn render_yaml(v: &mut serde_yaml_ng::Value, scope: &StepScope, key: &str) -> Result<(), String> {
    use serde_yaml_ng::Value as Y;
    let templated = ["command", "run", "env", "image", "workdir", "name"];
    match v {
        Y::String(s) if templated.contains(&key) && s.contains("${{") => {
            let t = Template::parse(s).map_err(|e| format!("`{key}`: {e}"))?;
            *s = t.render(scope).map_err(|e| format!("`{key}`: {e}"))?;
        }
        Y::Sequence(items) if templated.contains(&key) => {
            for it in items {
                render_yaml(it, scope, key)?;
            }
        }
        Y::Mapping(m) => {
            for (k, it) in m.iter_mut() {
                let k = if key.is_empty() {
                    k.as_str().unwrap_or("")
                } else {
                    key
                };
                render_yaml(it, scope, k)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// What makes two runs of a step the same: the rendered job (with the run's own folders taken
/// out), the component's files, and the inputs by content hash.
fn cache_key(
    step: &StepPlan,
    job: &JobSpec,
    inputs: &[(PathBuf, FileRef)],
    stage: &Path,
) -> String {
    let mut job = job.clone();
    job.name = None;
    job.priority = 0;
    let text = serde_json::to_string(&job)
        .unwrap_or_default()
        .replace(&stage.display().to_string(), "$STAGE");
    let mut h = Sha256::new();
    h.update(b"petri-step-cache/1\0");
    h.update(text.as_bytes());
    if let StepKind::Component { digest, .. } = &step.kind {
        h.update(digest.as_bytes());
    }
    let mut ins: Vec<String> = inputs
        .iter()
        .map(|(p, f)| {
            let rel = p.strip_prefix(stage).unwrap_or(p).display().to_string();
            format!("{rel}={}", f.digest)
        })
        .collect();
    ins.sort();
    for i in ins {
        h.update(i.as_bytes());
        h.update([0]);
    }
    h.update(
        serde_json::to_string(&step.outputs)
            .unwrap_or_default()
            .as_bytes(),
    );
    format!("{:x}", h.finalize())
}
