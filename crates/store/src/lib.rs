//! Petri's state in one SQLite file (WAL). The only crate that speaks SQL.
//!
//! Migrations are append-only: each entry of `MIGRATIONS` runs once, in order, and its index is
//! kept in `PRAGMA user_version`. Never edit or reorder an entry; add a new one.
//!
//! What is stored is a record of its own (`records`), read tolerantly, never the API's wire
//! types: a field renamed in the API does not stop an old database from opening. One module per
//! table family: `jobs` (jobs and their attempts), `notebooks`, `tokens`, `artifacts` (blobs and
//! who holds them); `pool` holds the read connections.

mod accounts;
mod artifacts;
mod jobs;
mod notebooks;
mod pipelines;
mod pool;
pub mod records;
mod tokens;

use std::path::Path;

use rusqlite::Connection;

pub use accounts::{StoredAudit, StoredUser};
pub use artifacts::{ArtifactRef, ArtifactTotals, StoredArtifact};
pub use jobs::NewRun;
pub use jobs::{ActiveRun, FileTotals, JobFilter, LogFacts, StopIntent, StoredJob, Unpruned};
pub use notebooks::StoredNotebook;
pub use pipelines::{StoredItem, StoredPipeline, StoredRun};
pub use pool::ReadPool;
pub use tokens::StoredToken;

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
    // 6: a job's origin (which capability made it) and user (on whose behalf it runs) are set by
    // Petri beside the spec; the spec is a versioned record (`spec_version`). A notebook's id
    // moves from the spec into the origin. An attempt records its target and the executor's
    // opaque handle (the pid of old rows becomes their handle).
    r#"
    ALTER TABLE jobs ADD COLUMN origin TEXT NOT NULL DEFAULT '{"kind":"submission"}';
    ALTER TABLE jobs ADD COLUMN user TEXT NOT NULL DEFAULT '';
    ALTER TABLE jobs ADD COLUMN spec_version INTEGER NOT NULL DEFAULT 1;
    UPDATE jobs SET origin = json_object('kind', 'notebook', 'id', json_extract(spec, '$.notebook')),
                    spec = json_remove(spec, '$.notebook')
        WHERE json_extract(spec, '$.notebook') IS NOT NULL;
    ALTER TABLE runs ADD COLUMN target TEXT;
    ALTER TABLE runs ADD COLUMN handle TEXT;
    UPDATE runs SET target = CASE
            WHEN (SELECT json_extract(spec, '$.image') FROM jobs WHERE jobs.id = runs.job_id)
                 IS NOT NULL THEN 'docker' ELSE 'local' END,
        handle = CAST(pid AS TEXT);
    "#,
    // 7: API tokens: a name, the SHA-256 of the secret (never the secret), scopes, an expiry.
    r#"
    CREATE TABLE tokens (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        hash        TEXT NOT NULL UNIQUE,
        scopes      TEXT NOT NULL,
        user        TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER,
        last_used_at INTEGER,
        revoked_at  INTEGER
    );
    "#,
    // 8: the artifact store's blobs (by content digest; the files live under `artifacts/`) and
    // who holds them (`pipeline:…`, `cache:…`, `model:…`; a folder holds its files as
    // `artifact:<digest>`). A blob nobody holds may be collected.
    r#"
    CREATE TABLE artifacts (
        digest        TEXT PRIMARY KEY,
        size          INTEGER NOT NULL,
        kind          TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        last_used_at  INTEGER NOT NULL
    );
    CREATE TABLE artifact_refs (
        digest      TEXT NOT NULL REFERENCES artifacts(digest),
        holder      TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (digest, holder)
    );
    CREATE INDEX artifact_refs_holder ON artifact_refs(holder);
    "#,
    // 9: pipelines: saved pipelines (YAML as written, the canvas's layout), runs, the jobs of
    // each step (item -1: the step settled without one), the step cache, triggers' state.
    r#"
    CREATE TABLE pipelines (
        name        TEXT PRIMARY KEY,
        yaml        TEXT NOT NULL,
        layout      TEXT,
        base_dir    TEXT,
        owner       TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    CREATE TABLE pipeline_runs (
        id                TEXT PRIMARY KEY,
        number            INTEGER NOT NULL UNIQUE,
        pipeline          TEXT NOT NULL,
        yaml              TEXT NOT NULL,
        base_dir          TEXT,
        params            TEXT NOT NULL,
        state             TEXT NOT NULL,
        trigger           TEXT NOT NULL,
        priority          INTEGER NOT NULL DEFAULT 0,
        user              TEXT NOT NULL,
        no_cache          INTEGER NOT NULL DEFAULT 0,
        attempt           INTEGER NOT NULL DEFAULT 1,
        not_before        INTEGER NOT NULL DEFAULT 0,
        cancel_requested  INTEGER NOT NULL DEFAULT 0,
        parent            TEXT,
        created_at        INTEGER NOT NULL,
        started_at        INTEGER,
        finished_at       INTEGER,
        reason            TEXT,
        outputs           TEXT
    );
    CREATE INDEX pipeline_runs_active ON pipeline_runs(state) WHERE state IN ('queued', 'running');
    CREATE INDEX pipeline_runs_by_pipeline ON pipeline_runs(pipeline, number);
    CREATE TABLE pipeline_items (
        run_id       TEXT NOT NULL REFERENCES pipeline_runs(id),
        step         TEXT NOT NULL,
        item         INTEGER NOT NULL,
        state        TEXT NOT NULL,
        job_id       TEXT,
        child_run    TEXT,
        outputs      TEXT NOT NULL DEFAULT '{}',
        cache_key    TEXT,
        cached_from  TEXT,
        started_at   INTEGER,
        finished_at  INTEGER,
        reason       TEXT,
        PRIMARY KEY (run_id, step, item)
    );
    CREATE TABLE pipeline_cache (
        key         TEXT PRIMARY KEY,
        run_id      TEXT NOT NULL,
        step        TEXT NOT NULL,
        outputs     TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE pipeline_triggers (
        pipeline   TEXT NOT NULL,
        trigger    TEXT NOT NULL,
        last_fire  INTEGER NOT NULL,
        data       TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (pipeline, trigger)
    );
    "#,
    // 10: pages of jobs by a filter, in submission order, read from an index (keyset paging).
    // Finished jobs by state (a job enters this index once, when it ends), and by queue.
    r#"
    CREATE INDEX jobs_done ON jobs(state, number)
        WHERE state IN ('succeeded','failed','cancelled','timed_out');
    CREATE INDEX jobs_queue_number ON jobs(queue, number);
    "#,
    // 11: retention: the bytes a finished job's log and outputs hold (measured once, after it
    // ended) and, once they are removed, a note of what went (JSON); finished jobs whose files
    // are still there, oldest first.
    r#"
    ALTER TABLE jobs ADD COLUMN file_bytes INTEGER;
    ALTER TABLE jobs ADD COLUMN pruned TEXT;
    CREATE INDEX jobs_unpruned ON jobs(finished_at) WHERE pruned IS NULL AND finished_at IS NOT NULL;
    "#,
    // 12: team mode: users and their roles; quotas by user or by Unix group (`user:NAME`,
    // `group:NAME`); the audit log, appended only (no statement of Petri updates or deletes it).
    r#"
    CREATE TABLE users (
        name        TEXT PRIMARY KEY,
        uid         INTEGER,
        role        TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE quotas (
        subject     TEXT PRIMARY KEY,
        quota       TEXT NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    CREATE TABLE audit (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        at          INTEGER NOT NULL,
        user        TEXT NOT NULL,
        origin      TEXT NOT NULL,
        action      TEXT NOT NULL,
        target      TEXT NOT NULL,
        status      INTEGER,
        detail      TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_user ON audit(user, id);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE INDEX jobs_user_number ON jobs(user, number);
    CREATE TABLE usage (
        user            TEXT PRIMARY KEY,
        machine_seconds REAL NOT NULL,
        at              INTEGER NOT NULL
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
        "the database was written by a newer Petri (schema {found}, this one knows {known}); it was not changed: upgrade Petri, or choose another home with --home"
    )]
    TooNew { found: i64, known: i64 },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("a stored row is damaged: {0}")]
    Corrupt(String),
    #[error("no database connection is free: {0}")]
    Pool(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One connection to the database. The daemon holds one for writing (on its engine thread) and a
/// few for reading; WAL lets readers run beside the writer.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to date. A database
    /// written by a newer Petri is refused before anything in it is touched.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew {
                found: version,
                known: MIGRATIONS.len() as i64,
            });
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = Store { conn };
        store.migrate()?;
        Ok(store)
    }

    /// Opens a connection for reading only (the schema is brought up to date by the writer).
    pub fn open_reader(path: &Path) -> Result<Store> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
                | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(Store { conn })
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
}

/// Writes inside one transaction.
pub struct Tx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}
