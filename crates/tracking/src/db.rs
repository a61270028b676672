//! The tracking database: `PETRI_HOME/tracking.db`, a SQLite file of its own (WAL) with its own
//! writer, so that a run logging a million points never waits on the queue's database, nor the
//! queue on it. Migrations are append-only, as in `petri-store`: each entry of [`MIGRATIONS`] runs
//! once, in order, and its index is kept in `PRAGMA user_version`.
//!
//! Runs have a row number (`seq`) beside their MLflow id, and each metric of a run is a `series`
//! row holding its latest value; the points of its history hang off the series number, so a
//! history query of 100,000 points reads one contiguous range of one index.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Result, TrackingError};

const MIGRATIONS: &[&str] = &[
    // 1: experiments (with MLflow's "Default", id 0), runs, params, tags, metrics (the latest
    // per key and the history), inputs.
    r#"
    CREATE TABLE experiments (
        id                INTEGER PRIMARY KEY,
        name              TEXT NOT NULL UNIQUE,
        artifact_location TEXT NOT NULL,
        lifecycle_stage   TEXT NOT NULL,
        creation_time     INTEGER NOT NULL,
        last_update_time  INTEGER NOT NULL
    );
    CREATE TABLE experiment_tags (
        experiment_id  INTEGER NOT NULL REFERENCES experiments(id),
        key            TEXT NOT NULL,
        value          TEXT NOT NULL,
        PRIMARY KEY (experiment_id, key)
    ) WITHOUT ROWID;
    CREATE TABLE runs (
        seq              INTEGER PRIMARY KEY,
        id               TEXT NOT NULL UNIQUE,
        experiment_id    INTEGER NOT NULL REFERENCES experiments(id),
        name             TEXT NOT NULL,
        user_id          TEXT NOT NULL,
        status           TEXT NOT NULL,
        start_time       INTEGER NOT NULL,
        end_time         INTEGER,
        artifact_uri     TEXT NOT NULL,
        lifecycle_stage  TEXT NOT NULL,
        deleted_time     INTEGER
    );
    CREATE INDEX runs_by_experiment ON runs(experiment_id, start_time);
    CREATE TABLE params (
        run    INTEGER NOT NULL REFERENCES runs(seq),
        key    TEXT NOT NULL,
        value  TEXT NOT NULL,
        PRIMARY KEY (run, key)
    ) WITHOUT ROWID;
    CREATE TABLE tags (
        run    INTEGER NOT NULL REFERENCES runs(seq),
        key    TEXT NOT NULL,
        value  TEXT NOT NULL,
        PRIMARY KEY (run, key)
    ) WITHOUT ROWID;
    CREATE TABLE metric_series (
        id         INTEGER PRIMARY KEY,
        run        INTEGER NOT NULL REFERENCES runs(seq),
        key        TEXT NOT NULL,
        value      REAL NOT NULL,
        is_nan     INTEGER NOT NULL,
        timestamp  INTEGER NOT NULL,
        step       INTEGER NOT NULL,
        UNIQUE (run, key)
    );
    -- The points of each series, in MLflow's order of a history: timestamp, step, value.
    -- Logging the very same point twice keeps one, as in MLflow.
    CREATE TABLE metrics (
        series     INTEGER NOT NULL REFERENCES metric_series(id),
        step       INTEGER NOT NULL,
        timestamp  INTEGER NOT NULL,
        value      REAL NOT NULL,
        is_nan     INTEGER NOT NULL,
        PRIMARY KEY (series, timestamp, step, value, is_nan)
    ) WITHOUT ROWID;
    CREATE TABLE datasets (
        id             INTEGER PRIMARY KEY,
        experiment_id  INTEGER NOT NULL REFERENCES experiments(id),
        name           TEXT NOT NULL,
        digest         TEXT NOT NULL,
        source_type    TEXT NOT NULL,
        source         TEXT NOT NULL,
        schema         TEXT,
        profile        TEXT,
        UNIQUE (experiment_id, name, digest)
    );
    CREATE TABLE run_inputs (
        run      INTEGER NOT NULL REFERENCES runs(seq),
        dataset  INTEGER NOT NULL REFERENCES datasets(id),
        tags     TEXT NOT NULL,
        PRIMARY KEY (run, dataset)
    ) WITHOUT ROWID;
    INSERT INTO experiments VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active',
        CAST(unixepoch('subsec') * 1000 AS INTEGER), CAST(unixepoch('subsec') * 1000 AS INTEGER));
    "#,
    // 2: each run's artifact files, by path, with the digest of their content in the artifact
    // store.
    r#"
    CREATE TABLE run_artifacts (
        run     INTEGER NOT NULL REFERENCES runs(seq),
        path    TEXT NOT NULL,
        digest  TEXT NOT NULL,
        size    INTEGER NOT NULL,
        PRIMARY KEY (run, path)
    ) WITHOUT ROWID;
    "#,
    // 3: MLflow 3's logged models (tags and params as JSON objects), their artifact files, and
    // the models each run logged.
    r#"
    CREATE TABLE logged_models (
        id                TEXT PRIMARY KEY,
        experiment_id     INTEGER NOT NULL REFERENCES experiments(id),
        name              TEXT NOT NULL,
        artifact_uri      TEXT NOT NULL,
        status            TEXT NOT NULL,
        creator_id        TEXT,
        model_type        TEXT,
        source_run_id     TEXT,
        status_message    TEXT,
        creation_time     INTEGER NOT NULL,
        last_update_time  INTEGER NOT NULL,
        tags              TEXT NOT NULL,
        params            TEXT NOT NULL,
        lifecycle_stage   TEXT NOT NULL
    );
    CREATE TABLE model_artifacts (
        model   TEXT NOT NULL REFERENCES logged_models(id),
        path    TEXT NOT NULL,
        digest  TEXT NOT NULL,
        size    INTEGER NOT NULL,
        PRIMARY KEY (model, path)
    ) WITHOUT ROWID;
    CREATE TABLE run_outputs (
        run       INTEGER NOT NULL REFERENCES runs(seq),
        model_id  TEXT NOT NULL REFERENCES logged_models(id),
        step      INTEGER NOT NULL,
        PRIMARY KEY (run, model_id)
    ) WITHOUT ROWID;
    "#,
];

/// Opens (creating and migrating) the writer's connection to `path`.
pub(crate) fn open_writer(path: &Path) -> Result<Connection> {
    let db = |source| db_error(path, source);
    let mut conn = Connection::open(path).map_err(db)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(db)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(db)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
    migrate(&mut conn).map_err(db)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > MIGRATIONS.len() {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the tracking database is at schema {version}, newer than this Petri knows \
             ({}); run a newer Petri",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

pub(crate) fn db_error(path: &Path, source: rusqlite::Error) -> TrackingError {
    TrackingError::Db {
        path: path.display().to_string(),
        source,
    }
}

/// Opens read-only connections for the pool.
pub(crate) struct Readers {
    pub path: PathBuf,
}

impl r2d2::ManageConnection for Readers {
    type Connection = Connection;
    type Error = rusqlite::Error;

    fn connect(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(30))?;
        Ok(conn)
    }
    fn is_valid(&self, conn: &mut Connection) -> rusqlite::Result<()> {
        conn.query_row("SELECT 1", [], |_| Ok(()))
    }
    fn has_broken(&self, _: &mut Connection) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_migrates_once_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tracking.db");
        drop(open_writer(&path).unwrap());
        drop(open_writer(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", MIGRATIONS.len() + 1)
            .unwrap();
        drop(conn);
        let err = open_writer(&path).unwrap_err().to_string();
        assert!(err.contains("newer than this Petri"), "{err}");
    }
}
