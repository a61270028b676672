//! [`Tracking`]: the handle the daemon opens and the API calls. Each call runs its SQLite work
//! on a blocking thread: changes through the one writer connection, in one `BEGIN IMMEDIATE`
//! transaction per call (a `log-batch` of 1,000 points is one commit), reads on a pool of
//! read-only connections that WAL lets run beside the writer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use crate::db::{self, Readers, db_error};
use crate::error::{Result, TrackingError};
use crate::store::{self, RUN_NAME_TAG, parse_experiment_id};
use crate::wire::*;
use crate::{select, validate};

/// How many read connections the tracking database keeps.
const READERS: u32 = 4;

/// Experiment tracking with MLflow's semantics. Cheap to clone.
#[derive(Clone)]
pub struct Tracking {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: r2d2::Pool<Readers>,
    /// The experiment each job last named (`mlflow.set_experiment` looks it up or makes it),
    /// until the job's run is made there.
    job_experiments: Mutex<std::collections::HashMap<petri_domain::JobId, String>>,
    /// The jobs whose run this process made or saw (a job's tracking call, or a run found
    /// running at start): only their end may have a run to close.
    job_runs: Mutex<std::collections::HashSet<petri_domain::JobId>>,
}

impl Tracking {
    /// The map of experiments jobs named (see `note_job_experiment`).
    pub(crate) fn job_experiments<T>(
        &self,
        f: impl FnOnce(&mut std::collections::HashMap<petri_domain::JobId, String>) -> T,
    ) -> Option<T> {
        self.inner
            .job_experiments
            .lock()
            .ok()
            .map(|mut m| f(&mut m))
    }

    /// The set of jobs that may have a run to close at their end (see `note_job_run`).
    pub(crate) fn job_runs<T>(
        &self,
        f: impl FnOnce(&mut std::collections::HashSet<petri_domain::JobId>) -> T,
    ) -> T {
        let mut set = self
            .inner
            .job_runs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&mut set)
    }
}

impl std::fmt::Debug for Tracking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracking")
            .field("path", &self.inner.path)
            .finish()
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Tracking {
    /// Opens (creating and migrating) the tracking database at `path`, normally
    /// `PETRI_HOME/tracking.db`.
    pub fn open(path: &Path) -> Result<Tracking> {
        let writer = db::open_writer(path)?;
        let readers = r2d2::Pool::builder()
            .max_size(READERS)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            .build(Readers {
                path: path.to_path_buf(),
            })
            .map_err(|e| TrackingError::Task(format!("opening read connections: {e}")))?;
        tracing::debug!(path = %path.display(), "tracking database open");
        Ok(Tracking {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(writer),
                readers,
                job_experiments: Mutex::new(std::collections::HashMap::new()),
                job_runs: Mutex::new(std::collections::HashSet::new()),
            }),
        })
    }

    /// Runs `f` in one write transaction on a blocking thread; commits when it succeeds.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner
                .writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let db = |e| db_error(&inner.path, e);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let out = f(&tx)?;
            tx.commit().map_err(db)?;
            Ok(out)
        })
        .await
        .map_err(|e| TrackingError::Task(e.to_string()))?
    }

    /// Runs `f` on a read connection on a blocking thread.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner
                .readers
                .get()
                .map_err(|e| TrackingError::Task(format!("no read connection: {e}")))?;
            f(&conn)
        })
        .await
        .map_err(|e| TrackingError::Task(e.to_string()))?
    }

    pub(crate) fn sql(&self) -> impl Fn(rusqlite::Error) -> TrackingError + Send + Clone + 'static {
        let path = self.inner.path.clone();
        move |e| db_error(&path, e)
    }

    // ---- experiments ----

    pub async fn create_experiment(&self, req: CreateExperiment) -> Result<ExperimentId> {
        validate::experiment_name(&req.name)?;
        for t in &req.tags {
            validate::experiment_tag(t)?;
        }
        let sql = self.sql();
        self.write(move |c| {
            if store::experiment_by_name(c, &req.name)
                .map_err(&sql)?
                .is_some()
            {
                return Err(TrackingError::AlreadyExists(format!(
                    "Experiment(name={}) already exists. Choose another name, or restore the \
                     deleted one of this name.",
                    req.name
                )));
            }
            let id =
                store::insert_experiment(c, &req.name, req.artifact_location.as_deref(), now_ms())
                    .map_err(&sql)?;
            for t in &req.tags {
                store::set_experiment_tag(c, id, &t.key, &t.value).map_err(&sql)?;
            }
            Ok(ExperimentId {
                experiment_id: id.to_string(),
            })
        })
        .await
    }

    pub async fn get_experiment(&self, id: &str) -> Result<OneExperiment> {
        let n = parse_experiment_id(id)?;
        let sql = self.sql();
        let id = id.to_string();
        self.read(move |c| {
            let experiment = store::experiment(c, n)
                .map_err(&sql)?
                .ok_or_else(|| no_experiment(&id))?;
            Ok(OneExperiment { experiment })
        })
        .await
    }

    pub async fn get_experiment_by_name(&self, name: &str) -> Result<OneExperiment> {
        let sql = self.sql();
        let name = name.to_string();
        self.read(move |c| {
            let experiment = store::experiment_by_name(c, &name)
                .map_err(&sql)?
                .ok_or_else(|| {
                    TrackingError::not_found(format!(
                        "Could not find experiment with name '{name}'"
                    ))
                })?;
            Ok(OneExperiment { experiment })
        })
        .await
    }

    pub async fn search_experiments(&self, req: SearchExperiments) -> Result<Experiments> {
        let max = crate::search::check_max_results(req.max_results)?;
        let view = req.view_type.unwrap_or_default();
        let sql = self.sql();
        let all = self
            .read(move |c| store::experiments(c).map_err(&sql))
            .await?;
        let shown = all
            .into_iter()
            .filter(|e| view.shows(&e.lifecycle_stage))
            .collect();
        let (experiments, next_page_token) = select::experiments(
            shown,
            req.filter.as_deref().unwrap_or(""),
            &req.order_by,
            max,
            req.page_token.as_deref(),
        )?;
        Ok(Experiments {
            experiments,
            next_page_token,
        })
    }

    pub async fn update_experiment(&self, req: UpdateExperiment) -> Result<Empty> {
        let n = parse_experiment_id(&req.experiment_id)?;
        let new_name = req.new_name.unwrap_or_default();
        validate::experiment_name(&new_name)?;
        let sql = self.sql();
        self.write(move |c| {
            let e = store::experiment(c, n)
                .map_err(&sql)?
                .ok_or_else(|| no_experiment(&req.experiment_id))?;
            if e.lifecycle_stage != ACTIVE {
                return Err(TrackingError::State(
                    "Cannot rename a non-active experiment.".into(),
                ));
            }
            if let Some(other) = store::experiment_by_name(c, &new_name).map_err(&sql)?
                && other.experiment_id != e.experiment_id
            {
                return Err(TrackingError::AlreadyExists(format!(
                    "Experiment(name={new_name}) already exists."
                )));
            }
            c.execute(
                "UPDATE experiments SET name = ?2, last_update_time = ?3 WHERE id = ?1",
                rusqlite::params![n, new_name, now_ms()],
            )
            .map_err(&sql)?;
            Ok(Empty {})
        })
        .await
    }

    /// Deletes (`deleted = true`) or restores an experiment, and its runs with it.
    pub async fn set_experiment_deleted(&self, id: &str, deleted: bool) -> Result<Empty> {
        let n = parse_experiment_id(id)?;
        let sql = self.sql();
        let id = id.to_string();
        self.write(move |c| {
            let e = store::experiment(c, n)
                .map_err(&sql)?
                .ok_or_else(|| no_experiment(&id))?;
            let (from, to) = if deleted {
                (ACTIVE, DELETED)
            } else {
                (DELETED, ACTIVE)
            };
            if e.lifecycle_stage != from {
                return Err(no_experiment(&id));
            }
            let now = now_ms();
            c.execute(
                "UPDATE experiments SET lifecycle_stage = ?2, last_update_time = ?3 WHERE id = ?1",
                rusqlite::params![n, to, now],
            )
            .map_err(&sql)?;
            c.execute(
                "UPDATE runs SET lifecycle_stage = ?2, deleted_time = ?3 WHERE experiment_id = ?1",
                rusqlite::params![n, to, deleted.then_some(now)],
            )
            .map_err(&sql)?;
            Ok(Empty {})
        })
        .await
    }

    pub async fn set_experiment_tag(&self, req: SetExperimentTag) -> Result<Empty> {
        let n = parse_experiment_id(&req.experiment_id)?;
        let tag = KeyValue {
            key: req.key,
            value: req.value,
        };
        validate::experiment_tag(&tag)?;
        let sql = self.sql();
        self.write(move |c| {
            let e = store::experiment(c, n)
                .map_err(&sql)?
                .ok_or_else(|| no_experiment(&req.experiment_id))?;
            experiment_active(&e)?;
            store::set_experiment_tag(c, n, &tag.key, &tag.value).map_err(&sql)?;
            Ok(Empty {})
        })
        .await
    }

    pub async fn delete_experiment_tag(&self, req: DeleteExperimentTag) -> Result<Empty> {
        let n = parse_experiment_id(&req.experiment_id)?;
        let sql = self.sql();
        self.write(move |c| {
            let e = store::experiment(c, n)
                .map_err(&sql)?
                .ok_or_else(|| no_experiment(&req.experiment_id))?;
            experiment_active(&e)?;
            let gone = c
                .execute(
                    "DELETE FROM experiment_tags WHERE experiment_id = ?1 AND key = ?2",
                    rusqlite::params![n, req.key],
                )
                .map_err(&sql)?;
            if gone == 0 {
                return Err(TrackingError::not_found(format!(
                    "No tag with name: {} in experiment with id {}",
                    req.key, req.experiment_id
                )));
            }
            Ok(Empty {})
        })
        .await
    }

    // ---- runs ----

    /// Starts a run (`RUNNING`) in an active experiment ("0" when none is named). `user` is who
    /// asks, used when the request names no user.
    pub async fn create_run(&self, req: CreateRun, user: &str) -> Result<OneRun> {
        self.new_run(req, user, None).await
    }

    /// Creates a run, with the id `fixed` when given: then a run of that id already there is
    /// answered as it is (two first calls of one job may race).
    pub(crate) async fn new_run(
        &self,
        req: CreateRun,
        user: &str,
        fixed: Option<String>,
    ) -> Result<OneRun> {
        let experiment_id = req
            .experiment_id
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "0".into());
        let n = parse_experiment_id(&experiment_id)?;
        let mut tags = req
            .tags
            .iter()
            .enumerate()
            .map(|(i, t)| validate::tag(t, &format!("tags[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        let tag_name = tags
            .iter()
            .find(|t| t.key == RUN_NAME_TAG)
            .map(|t| t.value.clone());
        let asked = req.run_name.filter(|n| !n.is_empty());
        if let (Some(a), Some(t)) = (&asked, &tag_name)
            && a != t
        {
            return Err(TrackingError::invalid(format!(
                "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with \
                 different values (run_name='{a}', mlflow.runName='{t}')."
            )));
        }
        let run_name = asked
            .or(tag_name.clone())
            .unwrap_or_else(crate::names::random_name);
        if tag_name.is_none() {
            tags.push(KeyValue {
                key: RUN_NAME_TAG.into(),
                value: run_name.clone(),
            });
        }
        let user_id = req
            .user_id
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| user.to_string());
        let start_time = req.start_time.unwrap_or_else(now_ms);
        let sql = self.sql();
        self.write(move |c| {
            let e = store::experiment(c, n)
                .map_err(&sql)?
                .ok_or_else(|| no_experiment(&experiment_id))?;
            experiment_active(&e)?;
            if let Some(id) = &fixed
                && let Some(run) = store::run(c, id).map_err(&sql)?
            {
                return Ok(OneRun { run });
            }
            let id = fixed.unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
            let info = RunInfo {
                run_uuid: id.clone(),
                artifact_uri: format!(
                    "{}/{id}/artifacts",
                    e.artifact_location.trim_end_matches('/')
                ),
                run_id: id.clone(),
                run_name,
                experiment_id: e.experiment_id.clone(),
                user_id,
                status: "RUNNING".into(),
                start_time,
                end_time: None,
                lifecycle_stage: ACTIVE.into(),
            };
            let seq = store::insert_run(c, &info, n).map_err(&sql)?;
            for t in &tags {
                store::set_tag(c, seq, &t.key, &t.value).map_err(&sql)?;
            }
            let run = store::run(c, &id)
                .map_err(&sql)?
                .ok_or_else(|| no_run(&id))?;
            Ok(OneRun { run })
        })
        .await
    }

    pub async fn get_run(&self, id: &str) -> Result<OneRun> {
        let sql = self.sql();
        let id = id.to_string();
        self.read(move |c| {
            let run = store::run(c, &id)
                .map_err(&sql)?
                .ok_or_else(|| no_run(&id))?;
            Ok(OneRun { run })
        })
        .await
    }

    pub async fn update_run(&self, req: UpdateRun) -> Result<UpdatedRun> {
        let id = req.id().to_string();
        let status = match req.status.as_deref() {
            None | Some("") => None,
            Some(s @ ("RUNNING" | "SCHEDULED" | "FINISHED" | "FAILED" | "KILLED")) => {
                Some(s.to_string())
            }
            Some(other) => {
                return Err(TrackingError::invalid(format!(
                    "Invalid value \"{other}\" for parameter 'status' supplied: use RUNNING, \
                     SCHEDULED, FINISHED, FAILED or KILLED"
                )));
            }
        };
        let sql = self.sql();
        self.write(move |c| {
            let seq = active_run(c, &id, &sql)?;
            if let Some(status) = &status {
                c.execute(
                    "UPDATE runs SET status = ?2 WHERE seq = ?1",
                    rusqlite::params![seq, status],
                )
                .map_err(&sql)?;
            }
            if let Some(end) = req.end_time {
                c.execute(
                    "UPDATE runs SET end_time = ?2 WHERE seq = ?1",
                    rusqlite::params![seq, end],
                )
                .map_err(&sql)?;
            }
            if let Some(name) = req.run_name.as_deref().filter(|n| !n.is_empty()) {
                c.execute(
                    "UPDATE runs SET name = ?2 WHERE seq = ?1",
                    rusqlite::params![seq, name],
                )
                .map_err(&sql)?;
                store::set_tag(c, seq, RUN_NAME_TAG, name).map_err(&sql)?;
            }
            let (_, run_info) = store::run_info(c, &id)
                .map_err(&sql)?
                .ok_or_else(|| no_run(&id))?;
            Ok(UpdatedRun { run_info })
        })
        .await
    }

    /// Deletes (`deleted = true`) or restores a run.
    pub async fn set_run_deleted(&self, id: &str, deleted: bool) -> Result<Empty> {
        let sql = self.sql();
        let id = id.to_string();
        self.write(move |c| {
            let (seq, _) = store::run_row(c, &id)
                .map_err(&sql)?
                .ok_or_else(|| no_run(&id))?;
            let (stage, at) = if deleted {
                (DELETED, Some(now_ms()))
            } else {
                (ACTIVE, None)
            };
            c.execute(
                "UPDATE runs SET lifecycle_stage = ?2, deleted_time = ?3 WHERE seq = ?1",
                rusqlite::params![seq, stage, at],
            )
            .map_err(&sql)?;
            Ok(Empty {})
        })
        .await
    }

    pub async fn log_metric(&self, req: LogMetric) -> Result<Empty> {
        let Some(value) = req.value else {
            return Err(TrackingError::invalid(
                "Missing value for required parameter 'value'.",
            ));
        };
        let metric = Metric {
            key: req.key.clone(),
            value,
            timestamp: req.timestamp.unwrap_or_else(now_ms),
            step: req.step.unwrap_or(0),
        };
        self.log_batch(LogBatch {
            run_id: req.id().to_string(),
            metrics: vec![metric],
            ..LogBatch::default()
        })
        .await
    }

    pub async fn log_param(&self, req: LogKeyValue) -> Result<Empty> {
        let value = req.value.clone().unwrap_or_default();
        self.log_batch(LogBatch {
            run_id: req.id().to_string(),
            params: vec![KeyValue {
                key: req.key,
                value,
            }],
            ..LogBatch::default()
        })
        .await
    }

    pub async fn set_tag(&self, req: LogKeyValue) -> Result<Empty> {
        let id = req.id().to_string();
        let tag = validate::tag(
            &KeyValue {
                key: req.key,
                value: req.value.unwrap_or_default(),
            },
            "",
        )?;
        let sql = self.sql();
        self.write(move |c| {
            let seq = active_run(c, &id, &sql)?;
            store::set_tag(c, seq, &tag.key, &tag.value).map_err(&sql)?;
            if tag.key == RUN_NAME_TAG {
                c.execute(
                    "UPDATE runs SET name = ?2 WHERE seq = ?1",
                    rusqlite::params![seq, tag.value],
                )
                .map_err(&sql)?;
            }
            Ok(Empty {})
        })
        .await
    }

    pub async fn delete_tag(&self, req: DeleteTag) -> Result<Empty> {
        let sql = self.sql();
        self.write(move |c| {
            let seq = active_run(c, &req.run_id, &sql)?;
            let gone = c
                .execute(
                    "DELETE FROM tags WHERE run = ?1 AND key = ?2",
                    rusqlite::params![seq, req.key],
                )
                .map_err(&sql)?;
            if gone == 0 {
                return Err(TrackingError::not_found(format!(
                    "No tag with name: {} in run with id {}",
                    req.key, req.run_id
                )));
            }
            Ok(Empty {})
        })
        .await
    }

    /// Metrics, params and tags of one run in one transaction: all of it or, on any refusal,
    /// none of it.
    pub async fn log_batch(&self, req: LogBatch) -> Result<Empty> {
        validate::batch(req.metrics.len(), req.params.len(), req.tags.len())?;
        for (i, m) in req.metrics.iter().enumerate() {
            validate::metric(m, &format!("metrics[{i}]"))?;
        }
        let params = req
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| validate::param(p, &format!("params[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        validate::unique_params(&params)?;
        let tags = req
            .tags
            .iter()
            .enumerate()
            .map(|(i, t)| validate::tag(t, &format!("tags[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        let sql = self.sql();
        let LogBatch {
            run_id, metrics, ..
        } = req;
        self.write(move |c| {
            let seq = active_run(c, &run_id, &sql)?;
            for p in &params {
                match store::param(c, seq, &p.key).map_err(&sql)? {
                    Some(old) if old != p.value => {
                        return Err(TrackingError::invalid(format!(
                            "Changing param values is not allowed. Param with key='{}' was \
                             already logged with value='{old}' for run ID='{run_id}'. Attempted \
                             logging new value '{}'.",
                            p.key, p.value
                        )));
                    }
                    Some(_) => {}
                    None => store::insert_param(c, seq, &p.key, &p.value).map_err(&sql)?,
                }
            }
            if !metrics.is_empty() {
                store::insert_metrics(c, seq, &metrics).map_err(&sql)?;
            }
            for t in &tags {
                store::set_tag(c, seq, &t.key, &t.value).map_err(&sql)?;
                if t.key == RUN_NAME_TAG {
                    c.execute(
                        "UPDATE runs SET name = ?2 WHERE seq = ?1",
                        rusqlite::params![seq, t.value],
                    )
                    .map_err(&sql)?;
                }
            }
            Ok(Empty {})
        })
        .await
    }

    pub async fn log_inputs(&self, req: LogInputs) -> Result<Empty> {
        if req.datasets.len() > validate::MAX_DATASETS_PER_BATCH {
            return Err(TrackingError::invalid(format!(
                "A batch logging request can contain at most {} datasets.",
                validate::MAX_DATASETS_PER_BATCH
            )));
        }
        for d in &req.datasets {
            let ds = &d.dataset;
            if ds.name.is_empty() || ds.digest.is_empty() {
                return Err(TrackingError::invalid(
                    "A dataset input needs its dataset's name and digest.",
                ));
            }
            for (what, value, max) in [
                ("Dataset name", &ds.name, validate::MAX_DATASET_NAME_SIZE),
                (
                    "Dataset digest",
                    &ds.digest,
                    validate::MAX_DATASET_DIGEST_SIZE,
                ),
                (
                    "Dataset source",
                    &ds.source,
                    validate::MAX_DATASET_SOURCE_SIZE,
                ),
            ] {
                if value.chars().count() > max {
                    return Err(TrackingError::invalid(format!(
                        "'{what}' exceeds the maximum length of {max} characters"
                    )));
                }
            }
        }
        let sql = self.sql();
        self.write(move |c| {
            let (seq, info) = store::run_info(c, &req.run_id)
                .map_err(&sql)?
                .ok_or_else(|| no_run(&req.run_id))?;
            run_active(&info)?;
            let experiment = parse_experiment_id(&info.experiment_id)?;
            for d in &req.datasets {
                store::add_input(c, seq, experiment, d).map_err(&sql)?;
            }
            Ok(Empty {})
        })
        .await
    }

    pub async fn search_runs(&self, req: SearchRuns) -> Result<Runs> {
        let max = crate::search::check_max_results(req.max_results)?;
        let experiments = req
            .experiment_ids
            .iter()
            .map(|e| parse_experiment_id(e))
            .collect::<Result<Vec<_>>>()?;
        let view = req.run_view_type.unwrap_or_default();
        let sql = self.sql();
        let all = self
            .read(move |c| store::runs_of(c, &experiments).map_err(&sql))
            .await?;
        let shown = all
            .into_iter()
            .filter(|r| view.shows(&r.info.lifecycle_stage))
            .collect();
        let (runs, next_page_token) = select::runs(
            shown,
            req.filter.as_deref().unwrap_or(""),
            &req.order_by,
            max,
            req.page_token.as_deref(),
        )?;
        Ok(Runs {
            runs,
            next_page_token,
        })
    }

    /// A page of a metric's history (all of it when the client names no page size), in MLflow's
    /// order: by timestamp, then step, then value.
    pub async fn metric_history(&self, req: GetMetricHistory) -> Result<MetricHistory> {
        let id = req.id().to_string();
        let offset = select::offset_of(req.page_token.as_deref())?;
        let limit = match req.max_results {
            None => None,
            Some(n) if n > 0 => Some(n as usize),
            Some(n) => {
                return Err(TrackingError::invalid(format!(
                    "Invalid value {n} for parameter 'max_results' supplied: it must be positive"
                )));
            }
        };
        let sql = self.sql();
        self.read(move |c| {
            let (seq, _) = store::run_row(c, &id)
                .map_err(&sql)?
                .ok_or_else(|| no_run(&id))?;
            // One more than asked tells whether another page follows.
            let want = limit.map_or(usize::MAX, |l| l.saturating_add(1));
            let mut metrics =
                store::history(c, seq, &req.metric_key, offset, want).map_err(&sql)?;
            let next_page_token = match limit {
                Some(l) if metrics.len() > l => {
                    metrics.truncate(l);
                    Some(select::token_for(offset + l))
                }
                _ => None,
            };
            Ok(MetricHistory {
                metrics,
                next_page_token,
            })
        })
        .await
    }
}

fn no_experiment(id: &str) -> TrackingError {
    TrackingError::not_found(format!("No Experiment with id={id} exists"))
}

fn no_run(id: &str) -> TrackingError {
    TrackingError::not_found(format!("Run with id={id} not found"))
}

fn experiment_active(e: &Experiment) -> Result<()> {
    if e.lifecycle_stage != ACTIVE {
        return Err(TrackingError::invalid(format!(
            "The experiment {} must be in the 'active' state. Current state is {}.",
            e.experiment_id, e.lifecycle_stage
        )));
    }
    Ok(())
}

fn run_active(info: &RunInfo) -> Result<()> {
    if info.lifecycle_stage != ACTIVE {
        return Err(TrackingError::invalid(format!(
            "The run {} must be in the 'active' state. Current state is {}.",
            info.run_id, info.lifecycle_stage
        )));
    }
    Ok(())
}

/// The row number of an active run, or MLflow's refusal.
fn active_run(
    c: &Connection,
    id: &str,
    sql: &impl Fn(rusqlite::Error) -> TrackingError,
) -> Result<i64> {
    let (seq, stage) = store::run_row(c, id)
        .map_err(sql)?
        .ok_or_else(|| no_run(id))?;
    if stage != ACTIVE {
        return Err(TrackingError::invalid(format!(
            "The run {id} must be in the 'active' state. Current state is {stage}."
        )));
    }
    Ok(seq)
}
