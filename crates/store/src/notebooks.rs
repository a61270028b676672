//! Notebooks: a name, what it asked for (the notebooks crate's JSON), the job that serves it.

use petri_domain::JobId;

use crate::{Result, Store, StoreError};

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

impl Store {
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
}
