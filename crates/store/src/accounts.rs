//! Team mode: users and roles, quotas (JSON, by `user:NAME` or `group:NAME`), the audit log.

use rusqlite::{OptionalExtension, Row, params};

use crate::{Result, Store, Tx};

/// A user as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredUser {
    pub name: String,
    pub uid: Option<u32>,
    /// `admin`, `member` or `viewer`.
    pub role: String,
    pub created_at_ms: i64,
}

/// One entry of the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAudit {
    pub id: i64,
    pub at_ms: i64,
    pub user: String,
    pub origin: String,
    pub action: String,
    pub target: String,
    pub status: Option<u16>,
    pub detail: String,
}

fn user_row(r: &Row<'_>) -> rusqlite::Result<StoredUser> {
    Ok(StoredUser {
        name: r.get("name")?,
        uid: r.get("uid")?,
        role: r.get("role")?,
        created_at_ms: r.get("created_at")?,
    })
}

fn audit_row(r: &Row<'_>) -> rusqlite::Result<StoredAudit> {
    Ok(StoredAudit {
        id: r.get("id")?,
        at_ms: r.get("at")?,
        user: r.get("user")?,
        origin: r.get("origin")?,
        action: r.get("action")?,
        target: r.get("target")?,
        status: r.get("status")?,
        detail: r.get("detail")?,
    })
}

impl Store {
    /// Adds a user unless one has the name; true when added.
    pub fn insert_user(&self, u: &StoredUser) -> Result<bool> {
        let n = self.conn.execute(
            "INSERT INTO users (name, uid, role, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO NOTHING",
            params![u.name, u.uid, u.role, u.created_at_ms],
        )?;
        Ok(n == 1)
    }

    /// Sets a user's role; false when there is no such user.
    pub fn set_user_role(&self, name: &str, role: &str) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE users SET role = ?2 WHERE name = ?1",
            params![name, role],
        )?;
        Ok(n == 1)
    }

    pub fn user(&self, name: &str) -> Result<Option<StoredUser>> {
        Ok(self
            .conn
            .prepare_cached("SELECT * FROM users WHERE name = ?1")?
            .query_row([name], user_row)
            .optional()?)
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<StoredUser>> {
        let mut stmt = self.conn.prepare("SELECT * FROM users ORDER BY name")?;
        let rows = stmt.query_map([], user_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Sets (or, with `None`, removes) the quota of `subject` (`user:NAME` or `group:NAME`).
    pub fn set_quota(&self, subject: &str, quota: Option<&str>, now_ms: i64) -> Result<()> {
        match quota {
            Some(q) => self.conn.execute(
                "INSERT INTO quotas (subject, quota, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(subject) DO UPDATE SET quota = ?2, updated_at = ?3",
                params![subject, q, now_ms],
            )?,
            None => self
                .conn
                .execute("DELETE FROM quotas WHERE subject = ?1", [subject])?,
        };
        Ok(())
    }

    /// Every quota: (subject, JSON).
    pub fn quotas(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT subject, quota FROM quotas ORDER BY subject")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Appends to the audit log; the entry's id.
    pub fn append_audit(&self, a: &StoredAudit) -> Result<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO audit (at, user, origin, action, target, status, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                a.at_ms, a.user, a.origin, a.action, a.target, a.status, a.detail
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The audit log, newest first, filtered by user, time and action.
    pub fn audit(
        &self,
        user: Option<&str>,
        since_ms: Option<i64>,
        action: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredAudit>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT * FROM audit
             WHERE (?1 IS NULL OR user = ?1) AND (?2 IS NULL OR at >= ?2)
               AND (?3 IS NULL OR action = ?3)
             ORDER BY id DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![user, since_ms, action, limit], audit_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

impl Tx<'_> {
    /// Keeps each user's decayed usage (fair share's measure) as of `at_ms`, in place of what
    /// was kept.
    pub fn save_usage(
        &self,
        by_user: &std::collections::HashMap<String, f64>,
        at_ms: i64,
    ) -> Result<()> {
        self.tx.execute("DELETE FROM usage", [])?;
        let mut insert = self
            .tx
            .prepare_cached("INSERT INTO usage (user, machine_seconds, at) VALUES (?1, ?2, ?3)")?;
        for (user, used) in by_user {
            insert.execute(params![user, used, at_ms])?;
        }
        Ok(())
    }
}

impl Store {
    /// The usage kept by [`Tx::save_usage`], and as of when (`None` when none was kept).
    pub fn usage(&self) -> Result<(std::collections::HashMap<String, f64>, Option<i64>)> {
        let mut stmt = self
            .conn
            .prepare("SELECT user, machine_seconds, at FROM usage")?;
        let mut at = None;
        let mut by_user = std::collections::HashMap::new();
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, f64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (user, used, when) = row?;
            by_user.insert(user, used);
            at = Some(when);
        }
        Ok((by_user, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_kept_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("petri.db")).unwrap();
        assert_eq!(store.usage().unwrap(), (Default::default(), None));
        let first =
            std::collections::HashMap::from([("alice".to_string(), 10.0), ("bob".into(), 2.5)]);
        store.write(|tx| tx.save_usage(&first, 1_000)).unwrap();
        assert_eq!(store.usage().unwrap(), (first, Some(1_000)));
        let second = std::collections::HashMap::from([("bob".to_string(), 1.0)]);
        store.write(|tx| tx.save_usage(&second, 2_000)).unwrap();
        assert_eq!(store.usage().unwrap(), (second, Some(2_000)));
    }

    #[test]
    fn users_quotas_and_an_audit_log_that_cannot_be_edited() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("petri.db")).unwrap();
        let alice = StoredUser {
            name: "alice".into(),
            uid: Some(1001),
            role: "member".into(),
            created_at_ms: 1,
        };
        assert!(store.insert_user(&alice).unwrap());
        assert!(!store.insert_user(&alice).unwrap());
        assert!(store.set_user_role("alice", "admin").unwrap());
        assert!(!store.set_user_role("bob", "admin").unwrap());
        assert_eq!(store.user("alice").unwrap().unwrap().role, "admin");
        store
            .set_quota("user:alice", Some(r#"{"gpus":1}"#), 5)
            .unwrap();
        assert_eq!(store.quotas().unwrap().len(), 1);
        store.set_quota("user:alice", None, 6).unwrap();
        assert!(store.quotas().unwrap().is_empty());
        for i in 0..3 {
            store
                .append_audit(&StoredAudit {
                    id: 0,
                    at_ms: 10 + i,
                    user: if i == 1 { "bob" } else { "alice" }.into(),
                    origin: "socket".into(),
                    action: "job.submit".into(),
                    target: format!("job {i}"),
                    status: Some(200),
                    detail: String::new(),
                })
                .unwrap();
        }
        let all = store.audit(None, None, None, 10).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].target, "job 2");
        assert_eq!(store.audit(Some("bob"), None, None, 10).unwrap().len(), 1);
        assert_eq!(store.audit(None, Some(12), None, 10).unwrap().len(), 1);
        // Not even SQL through Petri's own connection changes it.
        assert!(store.conn.execute("DELETE FROM audit", []).is_err());
        assert!(
            store
                .conn
                .execute("UPDATE audit SET user = 'mallory'", [])
                .is_err()
        );
        assert_eq!(store.audit(None, None, None, 10).unwrap().len(), 3);
    }
}
