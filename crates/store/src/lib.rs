//! Petri's state in one SQLite file (WAL). The only crate that speaks SQL.
//!
//! Migrations are append-only: each entry of `MIGRATIONS` runs once, in order, and its index is
//! kept in `PRAGMA user_version`. Never edit or reorder an entry; add a new one.

use std::path::Path;

use petri_domain::{Job, JobId, JobSpec, JobState, Run, RunOutcome};
use rusqlite::{Connection, OptionalExtension, Row, params};

const MIGRATIONS: &[&str] = &[
    // 1: jobs and their attempts
    r#"
    CREATE TABLE jobs (
        id            TEXT PRIMARY KEY,
        number        INTEGER NOT NULL UNIQUE,
        name          TEXT NOT NULL,
        state         TEXT NOT NULL,
        queue         TEXT NOT NULL,
        priority      INTEGER NOT NULL,
        spec          TEXT NOT NULL,
        array_values  TEXT NOT NULL DEFAULT '{}',
        depends_on    TEXT NOT NULL DEFAULT '[]',
        submitted_at  INTEGER NOT NULL,
        started_at    INTEGER,
        finished_at   INTEGER,
        exit_code     INTEGER,
        reason        TEXT,
        attempts      INTEGER NOT NULL DEFAULT 0,
        not_before    INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_state ON jobs(state);
    CREATE TABLE runs (
        job_id       TEXT NOT NULL REFERENCES jobs(id),
        attempt      INTEGER NOT NULL,
        pid          INTEGER,
        started_at   INTEGER NOT NULL,
        finished_at  INTEGER,
        exit_code    INTEGER,
        outcome      TEXT NOT NULL,
        stop_intent  TEXT,
        PRIMARY KEY (job_id, attempt)
    );
    "#,
    // 2: index only unfinished jobs, by number. A job's state changes three times in its life; a
    // partial index on the active set changes only when a job enters or leaves it.
    r#"
    DROP INDEX jobs_state;
    CREATE INDEX jobs_active ON jobs(number) WHERE state IN ('queued','held','running');
    "#,
    // 3: the GPUs an attempt holds (JSON array of GPU indices), so a restart keeps its reservation.
    r#"
    ALTER TABLE runs ADD COLUMN gpus TEXT NOT NULL DEFAULT '[]';
    "#,
    // 4: the MIG instance (slot on its GPU) an attempt holds.
    r#"
    ALTER TABLE runs ADD COLUMN mig_slot INTEGER;
    "#,
    // 5: notebooks: a name, what it asked for (JSON), the job that serves it now or last.
    r#"
    CREATE TABLE notebooks (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        spec        TEXT NOT NULL,
        job_id      TEXT,
        created_at  INTEGER NOT NULL
    );
    "#,
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "the database was written by a newer Petri (schema {found}, this one knows {known}); upgrade Petri"
    )]
    TooNew { found: i64, known: i64 },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("a stored row is damaged: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The unfinished states, in the order the `jobs_active` index is declared with.
const ACTIVE: [&str; 3] = ["queued", "held", "running"];

/// Why a running attempt is being stopped; kept so a restarted daemon knows what a kill meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopIntent {
    Cancel,
    Timeout,
    /// It used more GPU memory than its slice, and `gpu.enforce = "kill"`.
    GpuLimit,
}

impl StopIntent {
    fn as_str(self) -> &'static str {
        match self {
            StopIntent::Cancel => "cancel",
            StopIntent::Timeout => "timeout",
            StopIntent::GpuLimit => "gpu_limit",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "cancel" => Some(StopIntent::Cancel),
            "timeout" => Some(StopIntent::Timeout),
            "gpu_limit" => Some(StopIntent::GpuLimit),
            _ => None,
        }
    }
}

/// A job as stored, with the scheduling fields the API does not show.
#[derive(Clone, Debug)]
pub struct StoredJob {
    pub job: Job,
    pub not_before_ms: i64,
}

/// The current attempt of a running job, as stored.
#[derive(Clone, Debug)]
pub struct ActiveRun {
    pub attempt: u32,
    pub pid: Option<u32>,
    pub started_at_ms: i64,
    pub stop_intent: Option<StopIntent>,
    /// Indices of the GPUs it holds.
    pub gpus: Vec<u32>,
    /// The MIG instance it holds, by slot on its GPU.
    pub mig_slot: Option<u32>,
}

/// Filters for listing jobs.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    /// Only these states (all when empty).
    pub states: Vec<JobState>,
    pub queue: Option<String>,
    /// Newest first when true; oldest first otherwise.
    pub newest_first: bool,
    pub limit: Option<u32>,
}

/// A notebook as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredNotebook {
    pub id: String,
    pub name: String,
    /// What it asked for, as JSON (the daemon's type).
    pub spec: String,
    pub job: Option<JobId>,
    pub created_at_ms: i64,
}

/// One connection to the database. The daemon holds one for writing (on its engine thread) and a
/// few for reading; WAL lets readers run beside the writer.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = Store { conn };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                found: version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
            tracing::info!(version = i + 1, "database migrated");
        }
        Ok(())
    }

    /// Stops (0) or sets SQLite's checkpoint-on-commit. The daemon turns it off on the engine's
    /// connection and checkpoints from a thread of its own, so the engine never waits for the
    /// fsync a checkpoint does.
    pub fn set_autocheckpoint(&self, pages: u32) -> Result<()> {
        self.conn
            .query_row(&format!("PRAGMA wal_autocheckpoint = {pages}"), [], |_| {
                Ok(())
            })?;
        Ok(())
    }

    /// Copies what it can from the WAL into the database without blocking writers.
    pub fn checkpoint(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Runs `f` in one write transaction (BEGIN IMMEDIATE), committing when it returns Ok.
    pub fn write<T>(&mut self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&Tx { tx: &tx })?;
        tx.commit()?;
        Ok(out)
    }

    pub fn max_number(&self) -> Result<u64> {
        let n: Option<i64> = self
            .conn
            .query_row("SELECT MAX(number) FROM jobs", [], |r| r.get(0))?;
        Ok(n.unwrap_or(0) as u64)
    }

    /// Adds a notebook; `Ok(false)` when its name is taken.
    pub fn insert_notebook(&self, nb: &StoredNotebook) -> Result<bool> {
        let n = self.conn.execute(
            "INSERT INTO notebooks (id, name, spec, job_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(name) DO NOTHING",
            rusqlite::params![
                nb.id,
                nb.name,
                nb.spec,
                nb.job.map(|j| j.to_string()),
                nb.created_at_ms
            ],
        )?;
        Ok(n == 1)
    }

    /// Points a notebook at the job that serves it now, and keeps what it asked for this time.
    pub fn update_notebook(&self, id: &str, spec: &str, job: Option<JobId>) -> Result<()> {
        self.conn.execute(
            "UPDATE notebooks SET spec = ?2, job_id = ?3 WHERE id = ?1",
            rusqlite::params![id, spec, job.map(|j| j.to_string())],
        )?;
        Ok(())
    }

    pub fn delete_notebook(&self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM notebooks WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Every notebook, oldest first.
    pub fn notebooks(&self) -> Result<Vec<StoredNotebook>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, name, spec, job_id, created_at FROM notebooks ORDER BY created_at, name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name, spec, job, created_at_ms) = row?;
            let job = match job {
                Some(j) => Some(
                    j.parse::<JobId>()
                        .map_err(|_| StoreError::Corrupt(format!("notebook {name}: job id {j}")))?,
                ),
                None => None,
            };
            out.push(StoredNotebook {
                id,
                name,
                spec,
                job,
                created_at_ms,
            });
        }
        Ok(out)
    }

    /// Jobs that are not finished, in submission order.
    pub fn active_jobs(&self) -> Result<Vec<StoredJob>> {
        let mut stmt = self.conn.prepare(
            "SELECT * FROM jobs WHERE state IN ('queued','held','running') ORDER BY number",
        )?;
        let rows = stmt.query_map([], stored_job)?;
        rows.map(|r| r.map_err(StoreError::from).and_then(|j| j))
            .collect()
    }

    /// The attempt a running job is on.
    pub fn active_run(&self, id: JobId) -> Result<Option<ActiveRun>> {
        Ok(self
            .conn
            .query_row(
                "SELECT attempt, pid, started_at, stop_intent, gpus, mig_slot FROM runs
                 WHERE job_id = ?1 AND outcome = 'running' ORDER BY attempt DESC LIMIT 1",
                params![id.to_string()],
                |r| {
                    Ok(ActiveRun {
                        attempt: r.get::<_, i64>(0)? as u32,
                        pid: r.get::<_, Option<i64>>(1)?.map(|p| p as u32),
                        started_at_ms: r.get(2)?,
                        stop_intent: r
                            .get::<_, Option<String>>(3)?
                            .as_deref()
                            .and_then(StopIntent::parse),
                        gpus: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
                        mig_slot: r.get::<_, Option<i64>>(5)?.map(|s| s as u32),
                    })
                },
            )
            .optional()?)
    }

    /// The states of the given jobs (missing ids are left out).
    pub fn states_of(&self, ids: &[JobId]) -> Result<Vec<(JobId, u64, JobState)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT number, state FROM jobs WHERE id = ?1")?;
        let mut out = Vec::new();
        for id in ids {
            if let Some((n, s)) = stmt
                .query_row(params![id.to_string()], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .optional()?
            {
                let state = JobState::parse(&s)
                    .ok_or_else(|| StoreError::Corrupt(format!("job state `{s}`")))?;
                out.push((*id, n as u64, state));
            }
        }
        Ok(out)
    }

    /// Finds a job by full id, by number, or by a unique id prefix of at least 8 characters.
    pub fn find(&self, key: &str) -> Result<Option<JobId>> {
        let key = key.trim().trim_start_matches('#');
        if let Ok(n) = key.parse::<u64>() {
            let id: Option<String> = self
                .conn
                .query_row(
                    "SELECT id FROM jobs WHERE number = ?1",
                    params![n as i64],
                    |r| r.get(0),
                )
                .optional()?;
            return Ok(id.and_then(|s| s.parse().ok()));
        }
        if let Ok(id) = key.parse::<JobId>() {
            let found: Option<String> = self
                .conn
                .query_row(
                    "SELECT id FROM jobs WHERE id = ?1",
                    params![id.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            return Ok(found.and(Some(id)));
        }
        if key.len() >= 8 && key.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let mut stmt = self
                .conn
                .prepare("SELECT id FROM jobs WHERE id LIKE ?1 || '%' LIMIT 2")?;
            let ids: Vec<String> = stmt
                .query_map(params![key.to_ascii_lowercase()], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            if ids.len() == 1 {
                return Ok(ids[0].parse().ok());
            }
        }
        Ok(None)
    }

    pub fn get(&self, id: JobId) -> Result<Option<StoredJob>> {
        self.conn
            .query_row(
                "SELECT * FROM jobs WHERE id = ?1",
                params![id.to_string()],
                stored_job,
            )
            .optional()?
            .transpose()
    }

    pub fn runs(&self, id: JobId) -> Result<Vec<Run>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT attempt, pid, started_at, finished_at, exit_code, outcome FROM runs
             WHERE job_id = ?1 ORDER BY attempt",
        )?;
        let rows = stmt.query_map(params![id.to_string()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        rows.map(|row| {
            let (attempt, pid, started, finished, code, outcome) = row?;
            Ok(Run {
                attempt: attempt as u32,
                pid: pid.map(|p| p as u32),
                started_at_ms: started,
                finished_at_ms: finished,
                exit_code: code.map(|c| c as i32),
                outcome: RunOutcome::parse(&outcome)
                    .ok_or_else(|| StoreError::Corrupt(format!("run outcome `{outcome}`")))?,
            })
        })
        .collect()
    }

    pub fn list(&self, filter: &JobFilter) -> Result<Vec<StoredJob>> {
        let mut sql = String::from("SELECT * FROM jobs");
        let mut clauses = Vec::new();
        let mut args: Vec<String> = Vec::new();
        if !filter.states.is_empty() {
            // States come from a closed enum, so they are written inline: that lets SQLite use the
            // partial index `jobs_active` when the filter is the active set.
            let mut states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
            states.sort_by_key(|s| ACTIVE.iter().position(|a| a == s).unwrap_or(usize::MAX));
            states.dedup();
            let quoted: Vec<String> = states.iter().map(|s| format!("'{s}'")).collect();
            clauses.push(format!("state IN ({})", quoted.join(",")));
        }
        if let Some(q) = &filter.queue {
            args.push(q.clone());
            clauses.push(format!("queue = ?{}", args.len()));
        }
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(if filter.newest_first {
            " ORDER BY number DESC"
        } else {
            " ORDER BY number"
        });
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), stored_job)?;
        rows.map(|r| r.map_err(StoreError::from).and_then(|j| j))
            .collect()
    }

    /// Counts of jobs per state.
    pub fn counts(&self) -> Result<Vec<(JobState, u64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (s, n) = row?;
            if let Some(state) = JobState::parse(&s) {
                out.push((state, n as u64));
            }
        }
        Ok(out)
    }
}

/// Writes inside one transaction.
pub struct Tx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

impl Tx<'_> {
    pub fn insert_job(&self, job: &Job, not_before_ms: i64) -> Result<()> {
        let spec =
            serde_json::to_string(&job.spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let values = serde_json::to_string(&job.array_values)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let deps = serde_json::to_string(&job.depends_on)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.tx
            .prepare_cached(
                "INSERT INTO jobs (id, number, name, state, queue, priority, spec, array_values,
                 depends_on, submitted_at, started_at, finished_at, exit_code, reason, attempts,
                 not_before) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)",
            )?
            .execute(params![
                job.id.to_string(),
                job.number as i64,
                job.name,
                job.state.as_str(),
                job.queue,
                job.priority,
                spec,
                values,
                deps,
                job.submitted_at_ms,
                job.started_at_ms,
                job.finished_at_ms,
                job.exit_code,
                job.reason,
                job.attempts,
                not_before_ms,
            ])?;
        Ok(())
    }

    /// Saves the fields of a job that change over its life.
    pub fn update_job(&self, job: &Job, not_before_ms: i64) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE jobs SET state = ?2, started_at = ?3, finished_at = ?4, exit_code = ?5,
                 reason = ?6, attempts = ?7, not_before = ?8 WHERE id = ?1",
            )?
            .execute(params![
                job.id.to_string(),
                job.state.as_str(),
                job.started_at_ms,
                job.finished_at_ms,
                job.exit_code,
                job.reason,
                job.attempts,
                not_before_ms,
            ])?;
        Ok(())
    }

    /// Records that an attempt is about to start (before its process exists), with its GPUs.
    pub fn begin_run(
        &self,
        id: JobId,
        attempt: u32,
        now_ms: i64,
        gpus: &[u32],
        mig_slot: Option<u32>,
    ) -> Result<()> {
        let gpus = serde_json::to_string(gpus).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.tx
            .prepare_cached(
                "INSERT INTO runs (job_id, attempt, started_at, outcome, gpus, mig_slot)
                 VALUES (?1, ?2, ?3, 'running', ?4, ?5)",
            )?
            .execute(params![id.to_string(), attempt, now_ms, gpus, mig_slot])?;
        Ok(())
    }

    pub fn set_run_pid(&self, id: JobId, attempt: u32, pid: u32) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE runs SET pid = ?3 WHERE job_id = ?1 AND attempt = ?2")?
            .execute(params![id.to_string(), attempt, pid])?;
        Ok(())
    }

    pub fn set_stop_intent(&self, id: JobId, attempt: u32, intent: StopIntent) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE runs SET stop_intent = ?3 WHERE job_id = ?1 AND attempt = ?2")?
            .execute(params![id.to_string(), attempt, intent.as_str()])?;
        Ok(())
    }

    pub fn finish_run(
        &self,
        id: JobId,
        attempt: u32,
        now_ms: i64,
        exit_code: Option<i32>,
        outcome: RunOutcome,
    ) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE runs SET finished_at = ?3, exit_code = ?4, outcome = ?5
                 WHERE job_id = ?1 AND attempt = ?2",
            )?
            .execute(params![
                id.to_string(),
                attempt,
                now_ms,
                exit_code,
                outcome.as_str()
            ])?;
        Ok(())
    }

    /// Forgets an attempt that provably never began (claimed by recovery).
    pub fn drop_run(&self, id: JobId, attempt: u32) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM runs WHERE job_id = ?1 AND attempt = ?2")?
            .execute(params![id.to_string(), attempt])?;
        Ok(())
    }
}

fn stored_job(r: &Row<'_>) -> rusqlite::Result<Result<StoredJob>> {
    let id: String = r.get("id")?;
    let state: String = r.get("state")?;
    let spec: String = r.get("spec")?;
    let values: String = r.get("array_values")?;
    let deps: String = r.get("depends_on")?;
    let job = (|| -> Result<StoredJob> {
        let corrupt =
            |what: &str, e: String| StoreError::Corrupt(format!("{what} of job {id}: {e}"));
        let spec: JobSpec =
            serde_json::from_str(&spec).map_err(|e| corrupt("spec", e.to_string()))?;
        Ok(StoredJob {
            job: Job {
                id: id
                    .parse()
                    .map_err(|e: uuid::Error| corrupt("id", e.to_string()))?,
                number: r.get::<_, i64>("number")? as u64,
                name: r.get("name")?,
                state: JobState::parse(&state).ok_or_else(|| corrupt("state", state.clone()))?,
                queue: r.get("queue")?,
                priority: r.get("priority")?,
                spec,
                array_values: serde_json::from_str(&values)
                    .map_err(|e| corrupt("array values", e.to_string()))?,
                depends_on: serde_json::from_str(&deps)
                    .map_err(|e| corrupt("dependencies", e.to_string()))?,
                submitted_at_ms: r.get("submitted_at")?,
                started_at_ms: r.get("started_at")?,
                finished_at_ms: r.get("finished_at")?,
                exit_code: r.get("exit_code")?,
                reason: r.get("reason")?,
                attempts: r.get::<_, i64>("attempts")? as u32,
                pending: None,
                runs: Vec::new(),
            },
            not_before_ms: r.get("not_before")?,
        })
    })();
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(number: u64) -> Job {
        Job {
            id: JobId::new(),
            number,
            name: "t".into(),
            state: JobState::Queued,
            queue: "default".into(),
            priority: 0,
            spec: JobSpec::from_yaml("command: [\"true\"]").unwrap(),
            array_values: Default::default(),
            depends_on: vec![],
            submitted_at_ms: 1,
            started_at_ms: None,
            finished_at_ms: None,
            exit_code: None,
            reason: None,
            attempts: 0,
            pending: None,
            runs: vec![],
        }
    }

    #[test]
    fn jobs_and_runs_round_trip_through_a_reopened_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("petri.db");
        let mut a = job(1);
        {
            let mut store = Store::open(&path).unwrap();
            store
                .write(|tx| {
                    tx.insert_job(&a, 0)?;
                    tx.begin_run(a.id, 1, 10, &[], None)?;
                    tx.set_run_pid(a.id, 1, 4242)
                })
                .unwrap();
            a.state = JobState::Running;
            a.attempts = 1;
            store.write(|tx| tx.update_job(&a, 0)).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let active = store.active_jobs().unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].job, a);
        let run = store.active_run(a.id).unwrap().unwrap();
        assert_eq!((run.attempt, run.pid), (1, Some(4242)));
        assert_eq!(store.find("1").unwrap(), Some(a.id));
        assert_eq!(store.find(&a.id.to_string()[..13]).unwrap(), Some(a.id));
        assert_eq!(store.find("999").unwrap(), None);
    }

    /// A database written by the first release (schema 1) opens, migrates, and keeps its jobs.
    #[test]
    fn an_old_database_migrates_and_keeps_its_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("petri.db");
        let a = job(1);
        {
            let mut conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            let t = conn.transaction().unwrap();
            Tx { tx: &t }.insert_job(&a, 0).unwrap();
            t.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let active = store.active_jobs().unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].job, a);
        let plan: String = store
            .conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT * FROM jobs WHERE state IN ('queued','held','running') ORDER BY number",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("jobs_active"), "{plan}");
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("petri.db")).unwrap();
        let a = job(1);
        let err = store.write(|tx| {
            tx.insert_job(&a, 0)?;
            tx.insert_job(&a, 0) // duplicate id: the whole transaction rolls back
        });
        assert!(err.is_err());
        assert!(store.active_jobs().unwrap().is_empty());
    }
}
