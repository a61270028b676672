//! API tokens: only a hash of each secret is kept, with a name, scopes and an expiry.

use rusqlite::{OptionalExtension, Row, params};

use crate::{Result, Store, corrupt};

/// A token as stored (never its secret).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredToken {
    pub id: String,
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub hash: String,
    pub scopes: Vec<String>,
    /// The Petri user it acts for.
    pub user: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub last_used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

fn token_row(r: &Row<'_>) -> rusqlite::Result<Result<StoredToken>> {
    let scopes: String = r.get("scopes")?;
    Ok(Ok(StoredToken {
        id: r.get("id")?,
        name: r.get("name")?,
        hash: r.get("hash")?,
        scopes: match serde_json::from_str(&scopes) {
            Ok(s) => s,
            Err(e) => return Ok(Err(corrupt(format!("scopes of a token: {e}")))),
        },
        user: r.get("user")?,
        created_at_ms: r.get("created_at")?,
        expires_at_ms: r.get("expires_at")?,
        last_used_at_ms: r.get("last_used_at")?,
        revoked_at_ms: r.get("revoked_at")?,
    }))
}

impl Store {
    /// Adds a token; `Ok(false)` when its name is taken.
    pub fn insert_token(&self, t: &StoredToken) -> Result<bool> {
        let scopes = serde_json::to_string(&t.scopes).map_err(corrupt)?;
        let n = self.conn.execute(
            "INSERT INTO tokens (id, name, hash, scopes, user, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(name) DO NOTHING",
            params![
                t.id,
                t.name,
                t.hash,
                scopes,
                t.user,
                t.created_at_ms,
                t.expires_at_ms
            ],
        )?;
        Ok(n == 1)
    }

    /// Every token, oldest first.
    pub fn tokens(&self) -> Result<Vec<StoredToken>> {
        let mut stmt = self
            .conn
            .prepare("SELECT * FROM tokens ORDER BY created_at, name")?;
        let rows = stmt.query_map([], token_row)?;
        rows.map(|r| r.map_err(Into::into).and_then(|t| t))
            .collect()
    }

    pub fn token_by_hash(&self, hash: &str) -> Result<Option<StoredToken>> {
        self.conn
            .prepare_cached("SELECT * FROM tokens WHERE hash = ?1")?
            .query_row([hash], token_row)
            .optional()?
            .transpose()
    }

    /// Revokes the token with this id or name; false when there is none (or it was revoked).
    pub fn revoke_token(&self, key: &str, now_ms: i64) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE (id = ?1 OR name = ?1) AND revoked_at IS NULL",
            params![key, now_ms],
        )?;
        Ok(n > 0)
    }

    /// Notes a token's use (at most once a minute per token, to spare the disk).
    pub fn touch_token(&self, id: &str, now_ms: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE tokens SET last_used_at = ?2
             WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2 - 60000)",
            params![id, now_ms],
        )?;
        Ok(())
    }
}
