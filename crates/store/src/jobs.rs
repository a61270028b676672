//! Jobs and their attempts (`jobs`, `runs`).

use petri_domain::{Job, JobId, JobState, Run, RunOutcome};
use rusqlite::{OptionalExtension, Row, params};

use crate::records::{SPEC_VERSION, SpecRecord, origin_from_json, origin_to_json};
use crate::{Result, Store, StoreError, Tx, corrupt};

/// The columns [`stored_job`] reads, in the order it reads them by position (a lookup by name
/// asks SQLite for every column's name until it finds the one: most of the cost of decoding a
/// row).
macro_rules! job_columns {
    () => {
        "id, number, name, state, queue, priority, origin, user, spec, array_values, \
         depends_on, submitted_at, started_at, finished_at, exit_code, reason, attempts, \
         pruned, not_before"
    };
}

/// The unfinished states, in the order the `jobs_active` index is declared with.
const ACTIVE: [&str; 3] = ["queued", "held", "running"];
/// The condition of the partial index `jobs_done`, word for word (so SQLite uses it).
const DONE: &str = "state IN ('succeeded','failed','cancelled','timed_out')";

/// What reading a job's log needs to know of the job (`Store::log_facts`).
#[derive(Clone, Debug)]
pub struct LogFacts {
    pub id: JobId,
    pub number: u64,
    /// Whose job it is: who may read its log.
    pub user: petri_domain::UserName,
    pub state: JobState,
    /// Attempts started: none, and the job has no log.
    pub attempts: u32,
    /// What retention removed (the log among it).
    pub pruned: Option<petri_domain::Pruned>,
}

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
    /// Where it runs (`local`, `docker`, a cluster).
    pub target: String,
    /// The executor's handle on it, once known.
    pub handle: Option<String>,
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
    /// Only this user's jobs.
    pub user: Option<String>,
    /// Newest first when true; oldest first otherwise.
    pub newest_first: bool,
    /// Only jobs after this number in the order (older when newest first): a page's start.
    pub after_number: Option<u64>,
    pub limit: Option<u32>,
}

impl Store {
    pub fn max_number(&self) -> Result<u64> {
        let n: Option<i64> = self
            .conn
            .query_row("SELECT MAX(number) FROM jobs", [], |r| r.get(0))?;
        Ok(n.unwrap_or(0) as u64)
    }

    /// Jobs that are not finished, in submission order, one at a time: a hundred thousand
    /// waiting jobs are never all held as rows.
    pub fn each_active_job(&self, mut f: impl FnMut(StoredJob)) -> Result<()> {
        let mut stmt = self.conn.prepare(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE state IN ('queued','held','running') ORDER BY number"
        ))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            f(stored_job(row)??);
        }
        Ok(())
    }

    /// The attempt a running job is on.
    pub fn active_run(&self, id: JobId) -> Result<Option<ActiveRun>> {
        Ok(self
            .conn
            .query_row(
                "SELECT attempt, handle, started_at, stop_intent, gpus, mig_slot, target FROM runs
                 WHERE job_id = ?1 AND outcome = 'running' ORDER BY attempt DESC LIMIT 1",
                params![id.to_string()],
                |r| {
                    Ok(ActiveRun {
                        attempt: r.get::<_, i64>(0)? as u32,
                        handle: r.get(1)?,
                        target: r
                            .get::<_, Option<String>>(6)?
                            .unwrap_or_else(|| petri_domain::TARGET_LOCAL.into()),
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

    /// Whether [`Store::find`] looks `key` up through an index (a number or a whole id), not by
    /// scanning every id for a prefix.
    pub fn finds_by_index(key: &str) -> bool {
        matches!(JobKey::of(key), JobKey::Number(_) | JobKey::Id(_))
    }

    /// The id `key` names when it is a whole id (no lookup: the job may not exist).
    pub fn whole_id(key: &str) -> Option<JobId> {
        match JobKey::of(key) {
            JobKey::Id(id) => Some(id),
            _ => None,
        }
    }

    /// Finds a job by full id, by number, or by a unique id prefix of at least 8 characters.
    pub fn find(&self, key: &str) -> Result<Option<JobId>> {
        match JobKey::of(key) {
            JobKey::Number(n) => {
                let id: Option<String> = self
                    .conn
                    .prepare_cached("SELECT id FROM jobs WHERE number = ?1")?
                    .query_row(params![n as i64], |r| r.get(0))
                    .optional()?;
                Ok(id.and_then(|s| s.parse().ok()))
            }
            JobKey::Id(id) => {
                let found: Option<String> = self
                    .conn
                    .prepare_cached("SELECT id FROM jobs WHERE id = ?1")?
                    .query_row(params![id.to_string()], |r| r.get(0))
                    .optional()?;
                Ok(found.and(Some(id)))
            }
            JobKey::Prefix(prefix) => {
                let mut stmt = self
                    .conn
                    .prepare("SELECT id FROM jobs WHERE id LIKE ?1 || '%' LIMIT 2")?;
                let ids: Vec<String> = stmt
                    .query_map(params![prefix.to_ascii_lowercase()], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                Ok(match ids.as_slice() {
                    [one] => one.parse().ok(),
                    _ => None,
                })
            }
            JobKey::Nothing => Ok(None),
        }
    }

    pub fn get(&self, id: JobId) -> Result<Option<StoredJob>> {
        get(&self.conn, id)
    }

    /// What reading a job's log needs of the job, without its spec: a log's follower reads this
    /// for every stream it opens.
    pub fn log_facts(&self, id: JobId) -> Result<Option<LogFacts>> {
        self.conn
            .prepare_cached("SELECT number, user, state, attempts, pruned FROM jobs WHERE id = ?1")?
            .query_row(params![id.to_string()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            })
            .optional()?
            .map(|(number, user, state, attempts, pruned)| {
                Ok(LogFacts {
                    id,
                    number: number as u64,
                    user,
                    state: state_column(&id, &state)?,
                    attempts: attempts as u32,
                    pruned: retention_note(&id, pruned)?,
                })
            })
            .transpose()
    }

    pub fn runs(&self, id: JobId) -> Result<Vec<Run>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT attempt, handle, started_at, finished_at, exit_code, outcome, target FROM runs
             WHERE job_id = ?1 ORDER BY attempt",
        )?;
        let rows = stmt.query_map(params![id.to_string()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })?;
        rows.map(|row| {
            let (attempt, handle, started, finished, code, outcome, target) = row?;
            Ok(Run {
                attempt: attempt as u32,
                target: target.unwrap_or_else(|| petri_domain::TARGET_LOCAL.into()),
                handle,
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
        let (sql, args) = list_sql(filter);
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), stored_job)?;
        rows.map(|r| r.map_err(StoreError::from).and_then(|j| j))
            .collect()
    }

    /// Whether a job has this number (a page's cursor names one).
    pub fn number_exists(&self, number: u64) -> Result<bool> {
        let found = self
            .conn
            .prepare_cached("SELECT 1 FROM jobs WHERE number = ?1")?
            .exists([number as i64])?;
        Ok(found)
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

/// A finished job whose log and outputs are still on disk.
#[derive(Clone, Debug)]
pub struct Unpruned {
    pub id: JobId,
    pub number: u64,
    pub finished_at_ms: i64,
    /// What its files hold, once measured.
    pub file_bytes: Option<u64>,
}

/// What finished jobs hold on disk, as last measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileTotals {
    /// Finished jobs whose files are still there.
    pub jobs: u64,
    /// Of those, the ones not yet measured.
    pub unmeasured: u64,
    pub bytes: u64,
    /// Finished jobs whose files retention removed.
    pub pruned: u64,
}

impl Store {
    /// Finished jobs whose files are still there, oldest first: retention's candidates.
    pub fn unpruned(&self) -> Result<Vec<Unpruned>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, number, finished_at, file_bytes FROM jobs
             WHERE pruned IS NULL AND finished_at IS NOT NULL
               AND state IN ('succeeded','failed','cancelled','timed_out')
             ORDER BY finished_at, number",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })?;
        rows.map(|row| {
            let (id, number, finished, bytes) = row?;
            Ok(Unpruned {
                id: id
                    .parse()
                    .map_err(|e: uuid::Error| StoreError::Corrupt(format!("job id {id}: {e}")))?,
                number: number as u64,
                finished_at_ms: finished,
                file_bytes: bytes.map(|b| b.max(0) as u64),
            })
        })
        .collect()
    }

    pub fn file_totals(&self) -> Result<FileTotals> {
        let (jobs, unmeasured, bytes): (i64, i64, i64) = self.conn.query_row(
            "SELECT COUNT(*), COUNT(*) - COUNT(file_bytes), COALESCE(SUM(file_bytes), 0) FROM jobs
             WHERE pruned IS NULL AND finished_at IS NOT NULL
               AND state IN ('succeeded','failed','cancelled','timed_out')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let pruned: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM jobs WHERE pruned IS NOT NULL",
            [],
            |r| r.get(0),
        )?;
        Ok(FileTotals {
            jobs: jobs as u64,
            unmeasured: unmeasured as u64,
            bytes: bytes.max(0) as u64,
            pruned: pruned as u64,
        })
    }
}

fn get(conn: &rusqlite::Connection, id: JobId) -> Result<Option<StoredJob>> {
    conn.prepare_cached(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE id = ?1"
    ))?
    .query_row(params![id.to_string()], stored_job)
    .optional()?
    .transpose()
}

fn states_of(conn: &rusqlite::Connection, ids: &[JobId]) -> Result<Vec<(JobId, u64, JobState)>> {
    let mut stmt = conn.prepare_cached("SELECT number, state FROM jobs WHERE id = ?1")?;
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

impl Tx<'_> {
    /// One job as this transaction sees it (its own writes included).
    pub fn get(&self, id: JobId) -> Result<Option<StoredJob>> {
        get(self.tx, id)
    }

    /// The states of the given jobs, as this transaction sees them (missing ids are left out).
    pub fn states_of(&self, ids: &[JobId]) -> Result<Vec<(JobId, u64, JobState)>> {
        states_of(self.tx, ids)
    }

    /// Records what a finished job's files hold.
    pub fn set_file_bytes(&self, id: JobId, bytes: u64) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE jobs SET file_bytes = ?2 WHERE id = ?1")?
            .execute(params![id.to_string(), bytes.min(i64::MAX as u64) as i64])?;
        Ok(())
    }

    /// Notes that a finished job's files were removed (only a finished job's).
    pub fn set_pruned(&self, id: JobId, note: &petri_domain::Pruned) -> Result<bool> {
        let text = serde_json::to_string(note).map_err(corrupt)?;
        let n = self
            .tx
            .prepare_cached(
                "UPDATE jobs SET pruned = ?2 WHERE id = ?1 AND pruned IS NULL
                   AND state IN ('succeeded','failed','cancelled','timed_out')",
            )?
            .execute(params![id.to_string(), text])?;
        Ok(n == 1)
    }

    pub fn insert_job(&self, job: &Job, not_before_ms: i64) -> Result<()> {
        let spec = serde_json::to_string(&SpecRecord::from(&job.spec)).map_err(corrupt)?;
        let values = serde_json::to_string(&job.array_values)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let deps = serde_json::to_string(&job.depends_on)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.tx
            .prepare_cached(
                "INSERT INTO jobs (id, number, name, state, queue, priority, spec, array_values,
                 depends_on, submitted_at, started_at, finished_at, exit_code, reason, attempts,
                 not_before, origin, user, spec_version)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19)",
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
                origin_to_json(&job.origin),
                job.user,
                SPEC_VERSION,
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
    pub fn begin_run(&self, run: &NewRun<'_>) -> Result<()> {
        let gpus = serde_json::to_string(run.gpus).map_err(corrupt)?;
        self.tx
            .prepare_cached(
                "INSERT INTO runs (job_id, attempt, started_at, outcome, gpus, mig_slot, target)
                 VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6)",
            )?
            .execute(params![
                run.job.to_string(),
                run.attempt,
                run.now_ms,
                gpus,
                run.mig_slot,
                run.target
            ])?;
        Ok(())
    }

    /// Records the executor's handle on a started attempt.
    pub fn set_run_handle(&self, id: JobId, attempt: u32, handle: &str) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE runs SET handle = ?3 WHERE job_id = ?1 AND attempt = ?2")?
            .execute(params![id.to_string(), attempt, handle])?;
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

/// An attempt about to start, as recorded before its process exists.
pub struct NewRun<'a> {
    pub job: JobId,
    pub attempt: u32,
    pub now_ms: i64,
    pub target: &'a str,
    /// Indices of the GPUs it holds.
    pub gpus: &'a [u32],
    pub mig_slot: Option<u32>,
}

/// What a key given for a job names: a number, a whole id, or a prefix of an id.
enum JobKey<'a> {
    Number(u64),
    Id(JobId),
    Prefix(&'a str),
    Nothing,
}

impl JobKey<'_> {
    fn of(key: &str) -> JobKey<'_> {
        let key = key.trim().trim_start_matches('#');
        if let Ok(n) = key.parse::<u64>() {
            JobKey::Number(n)
        } else if let Ok(id) = key.parse::<JobId>() {
            JobKey::Id(id)
        } else if key.len() >= 8 && key.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            JobKey::Prefix(key)
        } else {
            JobKey::Nothing
        }
    }
}

/// The query of a page of jobs and its arguments: every filter is answered by an index
/// (`jobs_active`, `jobs_state_number`, `jobs_queue_number`, `jobs_user_number`, or the
/// number's own).
fn list_sql(filter: &JobFilter) -> (String, Vec<String>) {
    let mut sql = String::from(concat!("SELECT ", job_columns!(), " FROM jobs"));
    let mut clauses = Vec::new();
    let mut args: Vec<String> = Vec::new();
    if !filter.states.is_empty() {
        // States come from a closed enum, so they are written inline, in the form that lets
        // SQLite read the right partial index: states of the active set from `jobs_active`;
        // one finished state from `jobs_done`; several, some finished, by walking the numbers
        // (`+state` keeps SQLite from sorting every row of those states instead).
        let mut states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        states.sort_by_key(|s| ACTIVE.iter().position(|a| a == s).unwrap_or(usize::MAX));
        states.dedup();
        let quoted = states
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(",");
        if states.iter().all(|s| ACTIVE.contains(s)) {
            clauses.push("state IN ('queued','held','running')".to_string());
            if states.len() < ACTIVE.len() {
                clauses.push(format!("+state IN ({quoted})"));
            }
        } else if let [one] = states[..] {
            clauses.push(format!("{DONE} AND state = '{one}'"));
        } else {
            clauses.push(format!("+state IN ({quoted})"));
        }
    }
    if let Some(q) = &filter.queue {
        args.push(q.clone());
        clauses.push(format!("queue = ?{}", args.len()));
    }
    if let Some(u) = &filter.user {
        args.push(u.clone());
        clauses.push(format!("user = ?{}", args.len()));
    }
    if let Some(n) = filter.after_number {
        clauses.push(format!(
            "number {} {n}",
            if filter.newest_first { "<" } else { ">" }
        ));
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
    (sql, args)
}

/// A job's field that does not read back as what it should be.
fn corrupt_field(id: &dyn std::fmt::Display, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what} of job {id}: {e}"))
}

/// A job's `state` column.
fn state_column(id: &dyn std::fmt::Display, state: &str) -> Result<JobState> {
    JobState::parse(state).ok_or_else(|| corrupt_field(id, "state", state))
}

/// A job's `pruned` column: what retention removed, if anything.
fn retention_note(
    id: &dyn std::fmt::Display,
    text: Option<String>,
) -> Result<Option<petri_domain::Pruned>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt_field(id, "retention note", e)))
        .transpose()
}

/// A row of `SELECT job_columns!() FROM jobs ...`.
fn stored_job(r: &Row<'_>) -> rusqlite::Result<Result<StoredJob>> {
    let id: String = r.get(0)?;
    let state: String = r.get(3)?;
    let spec: String = r.get(8)?;
    let values: String = r.get(9)?;
    let deps: String = r.get(10)?;
    let job = (|| -> Result<StoredJob> {
        let corrupt = |what: &str, e: String| corrupt_field(&id, what, e);
        let spec: SpecRecord =
            serde_json::from_str(&spec).map_err(|e| corrupt("spec", e.to_string()))?;
        let origin: String = r.get(6)?;
        Ok(StoredJob {
            job: Job {
                id: id
                    .parse()
                    .map_err(|e: uuid::Error| corrupt("id", e.to_string()))?,
                number: r.get::<_, i64>(1)? as u64,
                name: r.get(2)?,
                state: state_column(&id, &state)?,
                queue: r.get(4)?,
                priority: r.get(5)?,
                origin: origin_from_json(&origin),
                user: r.get(7)?,
                spec: spec.into(),
                array_values: serde_json::from_str(&values)
                    .map_err(|e| corrupt("array values", e.to_string()))?,
                depends_on: serde_json::from_str(&deps)
                    .map_err(|e| corrupt("dependencies", e.to_string()))?,
                submitted_at_ms: r.get(11)?,
                started_at_ms: r.get(12)?,
                finished_at_ms: r.get(13)?,
                exit_code: r.get(14)?,
                reason: r.get(15)?,
                attempts: r.get::<_, i64>(16)? as u32,
                pending: None,
                runs: Vec::new(),
                pruned: retention_note(&id, r.get(17)?)?,
                remote: None,
            },
            not_before_ms: r.get(18)?,
        })
    })();
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active_jobs(store: &Store) -> Vec<StoredJob> {
        let mut out = Vec::new();
        store.each_active_job(|j| out.push(j)).unwrap();
        out
    }
    use petri_domain::JobSpec;
    use rusqlite::Connection;

    #[test]
    fn a_number_or_a_whole_id_is_found_by_an_index_and_a_prefix_is_not() {
        let id = JobId::new().to_string();
        assert!(Store::finds_by_index("42"));
        assert!(Store::finds_by_index(" #42"));
        assert!(Store::finds_by_index(&id));
        assert!(!Store::finds_by_index(&id[..8]));
        assert!(!Store::finds_by_index("train"));
    }

    fn job(number: u64) -> Job {
        Job {
            id: JobId::new(),
            number,
            name: "t".into(),
            state: JobState::Queued,
            queue: "default".into(),
            priority: 0,
            origin: Default::default(),
            user: "owner".into(),
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
            pruned: None,
            remote: None,
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
                    tx.begin_run(&NewRun {
                        job: a.id,
                        attempt: 1,
                        now_ms: 10,
                        target: "local",
                        gpus: &[],
                        mig_slot: None,
                    })?;
                    tx.set_run_handle(a.id, 1, "4242")
                })
                .unwrap();
            a.state = JobState::Running;
            a.attempts = 1;
            store.write(|tx| tx.update_job(&a, 0)).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.schema_version().unwrap(),
            crate::MIGRATIONS.len() as i64
        );
        let active = active_jobs(&store);
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].job, a);
        let run = store.active_run(a.id).unwrap().unwrap();
        assert_eq!((run.attempt, run.handle.as_deref()), (1, Some("4242")));
        assert_eq!(store.find("1").unwrap(), Some(a.id));
        assert_eq!(store.find(&a.id.to_string()[..13]).unwrap(), Some(a.id));
        assert_eq!(store.find("999").unwrap(), None);
        // What a log's reader reads of it: the same job, without its spec.
        let facts = store.log_facts(a.id).unwrap().unwrap();
        assert_eq!(
            (facts.id, facts.number, facts.user.as_str(), facts.state),
            (a.id, 1, "owner", JobState::Running)
        );
        assert_eq!((facts.attempts, facts.pruned), (1, None));
        assert!(store.log_facts(JobId::new()).unwrap().is_none());
    }

    /// A database written by the first release (schema 1, the spec in the wire format) opens,
    /// migrates, and keeps its jobs; the active set is read through its partial index.
    #[test]
    fn a_schema_1_database_migrates_and_keeps_its_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("petri.db");
        let id = JobId::new();
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(crate::MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO jobs (id, number, name, state, queue, priority, spec, submitted_at)
                 VALUES (?1, 1, 't', 'queued', 'default', 0, ?2, 1)",
                params![
                    id.to_string(),
                    r#"{"command":["true"],"resources":{"memory":"1GiB"},"notebook":"nb"}"#
                ],
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.schema_version().unwrap(),
            crate::MIGRATIONS.len() as i64
        );
        let active = active_jobs(&store);
        assert_eq!(active.len(), 1);
        let job = &active[0].job;
        assert_eq!(job.id, id);
        assert_eq!(
            job.spec.resources.memory,
            Some(petri_domain::ByteSize(1 << 30))
        );
        assert_eq!(
            job.origin,
            petri_domain::Origin::Notebook { id: "nb".into() }
        );
        let plan: String = store
            .conn
            .query_row(
                concat!(
                    "EXPLAIN QUERY PLAN SELECT ",
                    job_columns!(),
                    " FROM jobs WHERE state IN ('queued','held','running') ORDER BY number"
                ),
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("jobs_active"), "{plan}");
    }

    /// A database from a newer Petri is refused, and not a byte of it changes.
    #[test]
    fn a_newer_database_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("petri.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE future (x INTEGER);")
                .unwrap();
            conn.pragma_update(None, "user_version", 999).unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = Store::open(&path).err().expect("a newer schema is refused");
        assert!(
            matches!(err, StoreError::TooNew { found: 999, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("upgrade Petri"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(!dir.path().join("petri.db-wal").exists());
    }

    /// Every page a list asks for is read from an index, never by sorting a table's worth of rows.
    #[test]
    fn pages_are_read_from_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("petri.db")).unwrap();
        let plan = |filter: JobFilter| {
            let (sql, args) = list_sql(&filter);
            let mut stmt = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                    r.get::<_, String>(3)
                })
                .unwrap();
            rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
        };
        let states = |s: &[JobState]| JobFilter {
            states: s.to_vec(),
            newest_first: true,
            after_number: Some(500),
            limit: Some(100),
            ..JobFilter::default()
        };
        // The index SQLite makes for `number INTEGER UNIQUE`.
        const BY_NUMBER: &str = "USING INDEX sqlite_autoindex_jobs_2";
        let cases = [
            (
                JobFilter {
                    newest_first: true,
                    limit: Some(100),
                    ..JobFilter::default()
                },
                BY_NUMBER,
            ),
            (states(&[JobState::Failed]), "jobs_done"),
            (states(&[JobState::Running]), "jobs_active"),
            (
                states(&[JobState::Queued, JobState::Held, JobState::Running]),
                "jobs_active",
            ),
            (states(&[JobState::Held, JobState::Running]), "jobs_active"),
            (states(&[JobState::Failed, JobState::Cancelled]), BY_NUMBER),
            (
                JobFilter {
                    queue: Some("gpu".into()),
                    limit: Some(100),
                    ..JobFilter::default()
                },
                "jobs_queue_number",
            ),
            (
                JobFilter {
                    user: Some("alice".into()),
                    newest_first: true,
                    after_number: Some(500),
                    limit: Some(100),
                    ..JobFilter::default()
                },
                "jobs_user_number",
            ),
        ];
        for (filter, index) in cases {
            let shown = format!("{filter:?}");
            let plan = plan(filter);
            assert!(plan.contains(index), "{shown}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{shown}: {plan}");
        }
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
        assert!(active_jobs(&store).is_empty());
    }
}
