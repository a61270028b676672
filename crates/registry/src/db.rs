//! The registry database: `PETRI_HOME/registry.db`, a SQLite file of its own (WAL). Migrations
//! are append-only: each entry of [`MIGRATIONS`] runs once, in order, and its index is kept in
//! `PRAGMA user_version`. Names cascade on rename, so renaming a model is one statement.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::error::{RegistryError, Result};

const MIGRATIONS: &[&str] = &[
    // 1: registered models, their versions (with the files each holds, by digest), tags,
    // aliases and every move of an alias.
    r#"
    CREATE TABLE models (
        name               TEXT PRIMARY KEY,
        description        TEXT NOT NULL DEFAULT '',
        creation_time      INTEGER NOT NULL,
        last_updated_time  INTEGER NOT NULL,
        -- The number the next version gets: numbers are never reused, even after a delete.
        next_version       INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE model_tags (
        model  TEXT NOT NULL REFERENCES models(name) ON UPDATE CASCADE ON DELETE CASCADE,
        key    TEXT NOT NULL,
        value  TEXT NOT NULL,
        PRIMARY KEY (model, key)
    ) WITHOUT ROWID;
    CREATE TABLE versions (
        model              TEXT NOT NULL REFERENCES models(name) ON UPDATE CASCADE ON DELETE CASCADE,
        version            INTEGER NOT NULL,
        creation_time      INTEGER NOT NULL,
        last_updated_time  INTEGER NOT NULL,
        user_id            TEXT NOT NULL,
        description        TEXT NOT NULL DEFAULT '',
        source             TEXT NOT NULL,
        -- Where the files were read from (mlflow-artifacts:/...): what get-download-uri answers.
        storage_location   TEXT NOT NULL,
        run_id             TEXT NOT NULL DEFAULT '',
        model_id           TEXT,
        status             TEXT NOT NULL,
        -- petri-mlp, mlflow (with flavours) or files.
        format             TEXT NOT NULL,
        flavours           TEXT NOT NULL,
        runtime            TEXT NOT NULL,
        -- {run, job, pipeline_run, inputs: [{name, digest}]}
        lineage            TEXT NOT NULL,
        PRIMARY KEY (model, version)
    ) WITHOUT ROWID;
    CREATE TABLE version_tags (
        model    TEXT NOT NULL,
        version  INTEGER NOT NULL,
        key      TEXT NOT NULL,
        value    TEXT NOT NULL,
        PRIMARY KEY (model, version, key),
        FOREIGN KEY (model, version) REFERENCES versions(model, version)
            ON UPDATE CASCADE ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE TABLE version_files (
        model    TEXT NOT NULL,
        version  INTEGER NOT NULL,
        path     TEXT NOT NULL,
        digest   TEXT NOT NULL,
        size     INTEGER NOT NULL,
        PRIMARY KEY (model, version, path),
        FOREIGN KEY (model, version) REFERENCES versions(model, version)
            ON UPDATE CASCADE ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE TABLE aliases (
        model    TEXT NOT NULL REFERENCES models(name) ON UPDATE CASCADE ON DELETE CASCADE,
        alias    TEXT NOT NULL,
        version  INTEGER NOT NULL,
        PRIMARY KEY (model, alias)
    ) WITHOUT ROWID;
    -- Every move of an alias: set (from none or another version), moved, deleted (to none).
    -- Kept when the model is renamed; removed with the model.
    CREATE TABLE alias_events (
        id            INTEGER PRIMARY KEY,
        model         TEXT NOT NULL REFERENCES models(name) ON UPDATE CASCADE ON DELETE CASCADE,
        alias         TEXT NOT NULL,
        from_version  INTEGER,
        to_version    INTEGER,
        user_id       TEXT NOT NULL,
        time          INTEGER NOT NULL
    );
    CREATE INDEX alias_events_by_model ON alias_events(model, alias, id);
    "#,
    // 2: files uploaded for a version not yet registered (`petri model register NAME PATH`):
    // held in the artifact store as `upload:<id>` until the version is made or the upload is
    // a day old.
    r#"
    CREATE TABLE uploads (
        id      TEXT NOT NULL,
        path    TEXT NOT NULL,
        digest  TEXT NOT NULL,
        size    INTEGER NOT NULL,
        time    INTEGER NOT NULL,
        PRIMARY KEY (id, path)
    ) WITHOUT ROWID;
    "#,
    // 3: MLflow's stages (None, Staging, Production, Archived), which older client code still
    // moves versions through; aliases are the way forward.
    r#"
    ALTER TABLE versions ADD COLUMN stage TEXT NOT NULL DEFAULT 'None';
    "#,
];

/// Opens (creating and migrating) the registry database at `path`.
pub(crate) fn open(path: &Path) -> Result<Connection> {
    let db = |source| db_error(path, source);
    let mut conn = Connection::open(path).map_err(db)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(db)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
    migrate(&mut conn).map_err(db)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > MIGRATIONS.len() {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the registry database is at schema {version}, newer than this Petri knows \
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

pub(crate) fn db_error(path: &Path, source: rusqlite::Error) -> RegistryError {
    RegistryError::Db {
        path: path.display().to_string(),
        source,
    }
}
