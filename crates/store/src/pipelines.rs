//! Pipelines: saved pipelines (their YAML as written, the canvas's layout beside it), runs, each
//! step's jobs ("items"), the step cache, and the state of triggers.

use rusqlite::{OptionalExtension, Row, params};

use crate::{Result, Store};

/// A saved pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredPipeline {
    pub name: String,
    /// The YAML exactly as given (comments and key order kept).
    pub yaml: String,
    /// The canvas's node positions (JSON), kept beside the YAML.
    pub layout: Option<String>,
    /// The folder relative paths of the pipeline are resolved against.
    pub base_dir: Option<String>,
    pub owner: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A pipeline run.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct StoredRun {
    pub id: String,
    pub number: u64,
    pub pipeline: String,
    /// The YAML the run was made from (a run keeps its own copy).
    pub yaml: String,
    pub base_dir: Option<String>,
    /// JSON object.
    pub params: String,
    /// queued, running, succeeded, failed, canceled.
    pub state: String,
    /// JSON: what started it.
    pub trigger: String,
    pub priority: i32,
    pub user: String,
    pub no_cache: bool,
    pub attempt: u32,
    pub not_before_ms: i64,
    pub cancel_requested: bool,
    /// JSON `{run, step}` when the run is a step of another.
    pub parent: Option<String>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub reason: Option<String>,
    /// JSON object (a finished run's outputs).
    pub outputs: Option<String>,
}

/// One job of a step (item -1: the step as a whole, when it settled without a job).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct StoredItem {
    pub run_id: String,
    pub step: String,
    pub item: i64,
    /// submitting, submitted, succeeded, cached, failed, canceled; for item -1: skipped,
    /// failed, canceled, child.
    pub state: String,
    pub job_id: Option<String>,
    pub child_run: Option<String>,
    /// JSON object.
    pub outputs: String,
    pub cache_key: Option<String>,
    pub cached_from: Option<String>,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub reason: Option<String>,
}

fn pipeline_row(r: &Row<'_>) -> rusqlite::Result<StoredPipeline> {
    Ok(StoredPipeline {
        name: r.get("name")?,
        yaml: r.get("yaml")?,
        layout: r.get("layout")?,
        base_dir: r.get("base_dir")?,
        owner: r.get("owner")?,
        created_at_ms: r.get("created_at")?,
        updated_at_ms: r.get("updated_at")?,
    })
}

fn run_row(r: &Row<'_>) -> rusqlite::Result<StoredRun> {
    Ok(StoredRun {
        id: r.get("id")?,
        number: r.get::<_, i64>("number")? as u64,
        pipeline: r.get("pipeline")?,
        yaml: r.get("yaml")?,
        base_dir: r.get("base_dir")?,
        params: r.get("params")?,
        state: r.get("state")?,
        trigger: r.get("trigger")?,
        priority: r.get("priority")?,
        user: r.get("user")?,
        no_cache: r.get("no_cache")?,
        attempt: r.get("attempt")?,
        not_before_ms: r.get("not_before")?,
        cancel_requested: r.get("cancel_requested")?,
        parent: r.get("parent")?,
        created_at_ms: r.get("created_at")?,
        started_at_ms: r.get("started_at")?,
        finished_at_ms: r.get("finished_at")?,
        reason: r.get("reason")?,
        outputs: r.get("outputs")?,
    })
}

fn item_row(r: &Row<'_>) -> rusqlite::Result<StoredItem> {
    Ok(StoredItem {
        run_id: r.get("run_id")?,
        step: r.get("step")?,
        item: r.get("item")?,
        state: r.get("state")?,
        job_id: r.get("job_id")?,
        child_run: r.get("child_run")?,
        outputs: r.get("outputs")?,
        cache_key: r.get("cache_key")?,
        cached_from: r.get("cached_from")?,
        started_at_ms: r.get("started_at")?,
        finished_at_ms: r.get("finished_at")?,
        reason: r.get("reason")?,
    })
}

impl Store {
    /// Saves (or replaces) a pipeline; its creation time and owner stay.
    pub fn put_pipeline(&self, p: &StoredPipeline) -> Result<()> {
        self.conn.execute(
            "INSERT INTO pipelines (name, yaml, layout, base_dir, owner, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(name) DO UPDATE SET yaml = excluded.yaml, layout = excluded.layout,
                 base_dir = excluded.base_dir, updated_at = excluded.updated_at",
            params![
                p.name,
                p.yaml,
                p.layout,
                p.base_dir,
                p.owner,
                p.created_at_ms,
                p.updated_at_ms
            ],
        )?;
        Ok(())
    }

    pub fn pipeline(&self, name: &str) -> Result<Option<StoredPipeline>> {
        Ok(self
            .conn
            .prepare_cached("SELECT * FROM pipelines WHERE name = ?1")?
            .query_row([name], pipeline_row)
            .optional()?)
    }

    pub fn pipelines(&self) -> Result<Vec<StoredPipeline>> {
        let mut stmt = self.conn.prepare("SELECT * FROM pipelines ORDER BY name")?;
        let rows = stmt.query_map([], pipeline_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn delete_pipeline(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM pipelines WHERE name = ?1", [name])?
            > 0)
    }

    /// Adds a run, numbering it; returns the number.
    pub fn insert_run(&mut self, r: &StoredRun) -> Result<u64> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let number: i64 = tx.query_row(
            "SELECT COALESCE(MAX(number), 0) + 1 FROM pipeline_runs",
            [],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO pipeline_runs (id, number, pipeline, yaml, base_dir, params, state,
                 trigger, priority, user, no_cache, attempt, not_before, cancel_requested, parent,
                 created_at, started_at, finished_at, reason, outputs)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18, ?19, ?20)",
            params![
                r.id,
                number,
                r.pipeline,
                r.yaml,
                r.base_dir,
                r.params,
                r.state,
                r.trigger,
                r.priority,
                r.user,
                r.no_cache,
                r.attempt,
                r.not_before_ms,
                r.cancel_requested,
                r.parent,
                r.created_at_ms,
                r.started_at_ms,
                r.finished_at_ms,
                r.reason,
                r.outputs
            ],
        )?;
        tx.commit()?;
        Ok(number as u64)
    }

    /// Writes a run's changing fields back.
    pub fn update_run(&self, r: &StoredRun) -> Result<()> {
        self.conn.execute(
            "UPDATE pipeline_runs SET state = ?2, attempt = ?3, not_before = ?4,
                 cancel_requested = ?5, started_at = ?6, finished_at = ?7, reason = ?8,
                 outputs = ?9
             WHERE id = ?1",
            params![
                r.id,
                r.state,
                r.attempt,
                r.not_before_ms,
                r.cancel_requested,
                r.started_at_ms,
                r.finished_at_ms,
                r.reason,
                r.outputs
            ],
        )?;
        Ok(())
    }

    /// A run by id, number, or unique id prefix.
    pub fn run(&self, key: &str) -> Result<Option<StoredRun>> {
        let by_number = key.parse::<i64>().ok();
        let mut stmt = self.conn.prepare_cached(
            "SELECT * FROM pipeline_runs WHERE id = ?1 OR number = ?2 OR id LIKE ?3 || '%'
             ORDER BY (id = ?1) DESC, (number = ?2) DESC LIMIT 2",
        )?;
        let rows: Vec<StoredRun> = stmt
            .query_map(params![key, by_number, key], run_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(match rows.as_slice() {
            [one] => Some(one.clone()),
            [first, ..] if first.id == key || Some(first.number as i64) == by_number => {
                Some(first.clone())
            }
            _ => None,
        })
    }

    /// Runs, newest first; of one pipeline when given.
    pub fn pipeline_runs(&self, pipeline: Option<&str>, limit: u32) -> Result<Vec<StoredRun>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT * FROM pipeline_runs WHERE (?1 IS NULL OR pipeline = ?1)
             ORDER BY number DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![pipeline, limit], run_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Runs not yet over, oldest first.
    pub fn active_runs(&self) -> Result<Vec<StoredRun>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT * FROM pipeline_runs WHERE state IN ('queued', 'running') ORDER BY number",
        )?;
        let rows = stmt.query_map([], run_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn run_items(&self, run_id: &str) -> Result<Vec<StoredItem>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT * FROM pipeline_items WHERE run_id = ?1 ORDER BY step, item")?;
        let rows = stmt.query_map([run_id], item_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Writes items (insert or replace), all in one transaction.
    pub fn put_items(&mut self, items: &[StoredItem]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for i in items {
            tx.execute(
                "INSERT OR REPLACE INTO pipeline_items (run_id, step, item, state, job_id,
                     child_run, outputs, cache_key, cached_from, started_at, finished_at, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    i.run_id,
                    i.step,
                    i.item,
                    i.state,
                    i.job_id,
                    i.child_run,
                    i.outputs,
                    i.cache_key,
                    i.cached_from,
                    i.started_at_ms,
                    i.finished_at_ms,
                    i.reason
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets the items of these steps (a retry runs them again; their jobs stay in the queue's
    /// history) and puts the run back to `running` with its next attempt, in one transaction.
    pub fn reset_steps(&mut self, run: &StoredRun, steps: &[String]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for s in steps {
            tx.execute(
                "DELETE FROM pipeline_items WHERE run_id = ?1 AND step = ?2",
                params![run.id, s],
            )?;
        }
        tx.execute(
            "UPDATE pipeline_runs SET state = ?2, attempt = ?3, not_before = ?4,
                 cancel_requested = 0, finished_at = NULL, reason = NULL, outputs = NULL
             WHERE id = ?1",
            params![run.id, run.state, run.attempt, run.not_before_ms],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The outputs a step with this cache key gave when it last succeeded (JSON), and where.
    pub fn cached_step(&self, key: &str) -> Result<Option<(String, String, String)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT outputs, run_id, step FROM pipeline_cache WHERE key = ?1")?
            .query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?)
    }

    pub fn put_cached_step(
        &self,
        key: &str,
        run_id: &str,
        step: &str,
        outputs: &str,
        now_ms: i64,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO pipeline_cache (key, run_id, step, outputs, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key, run_id, step, outputs, now_ms],
        )?;
        Ok(())
    }

    pub fn forget_cached_step(&self, key: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM pipeline_cache WHERE key = ?1", [key])?;
        Ok(())
    }

    /// A trigger's state: the last fire (ms) and what else it keeps (JSON: a folder snapshot).
    pub fn trigger_state(&self, pipeline: &str, trigger: &str) -> Result<Option<(i64, String)>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT last_fire, data FROM pipeline_triggers WHERE pipeline = ?1 AND trigger = ?2",
            )?
            .query_row([pipeline, trigger], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Whether a cron fire already made a run (a daemon killed between making the run and
    /// recording the fire must not make it twice).
    pub fn has_run_for_fire(&self, pipeline: &str, scheduled_at_ms: i64) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT 1 FROM pipeline_runs WHERE pipeline = ?1
                 AND json_extract(trigger, '$.kind') = 'cron'
                 AND json_extract(trigger, '$.scheduled_at') = ?2 LIMIT 1",
            )?
            .query_row(params![pipeline, scheduled_at_ms], |_| Ok(()))
            .optional()?
            .is_some())
    }

    pub fn put_trigger_state(
        &self,
        pipeline: &str,
        trigger: &str,
        last_fire_ms: i64,
        data: &str,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO pipeline_triggers (pipeline, trigger, last_fire, data)
             VALUES (?1, ?2, ?3, ?4)",
            params![pipeline, trigger, last_fire_ms, data],
        )?;
        Ok(())
    }
}
