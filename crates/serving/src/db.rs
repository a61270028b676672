//! `PETRI_HOME/serving.db`: each deployment as a JSON document by name (what was asked, its
//! replicas' jobs and ports, the version serving). Small and rarely written: one table.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::deploy::{ServingError, Stored};

pub(crate) fn open(path: &Path) -> Result<Connection, ServingError> {
    let db = |source| db_error(path, source);
    let conn = Connection::open(path).map_err(db)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(db)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS deployments (name TEXT PRIMARY KEY, doc TEXT NOT NULL)",
    )
    .map_err(db)?;
    Ok(conn)
}

pub(crate) fn db_error(path: &Path, source: rusqlite::Error) -> ServingError {
    ServingError::Db {
        path: path.display().to_string(),
        source,
    }
}

pub(crate) fn all(c: &Connection) -> rusqlite::Result<Vec<Stored>> {
    let docs: Vec<String> = c
        .prepare("SELECT doc FROM deployments ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(docs
        .iter()
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect())
}

pub(crate) fn get(c: &Connection, name: &str) -> rusqlite::Result<Option<Stored>> {
    let doc: Option<String> = c
        .query_row("SELECT doc FROM deployments WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(doc.and_then(|d| serde_json::from_str(&d).ok()))
}

pub(crate) fn put(c: &Connection, d: &Stored) -> rusqlite::Result<()> {
    let doc = serde_json::to_string(d).unwrap_or_default();
    c.execute(
        "INSERT OR REPLACE INTO deployments (name, doc) VALUES (?1, ?2)",
        params![d.name, doc],
    )?;
    Ok(())
}

pub(crate) fn delete(c: &Connection, name: &str) -> rusqlite::Result<bool> {
    Ok(c.execute("DELETE FROM deployments WHERE name = ?1", [name])? > 0)
}
