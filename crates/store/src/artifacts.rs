//! The artifact store's records (`artifacts`, `artifact_refs`): which blobs exist, how big they
//! are, when they were last used, and who holds them. The blobs themselves are files of
//! `petri-artifacts`; a blob nobody holds is what its garbage collector may remove.

use petri_domain::artifact::{BlobCount, Digest, Kind};
use rusqlite::{OptionalExtension, Row, params};

use crate::{Result, Store, StoreError, Tx};

/// A blob as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredArtifact {
    pub digest: Digest,
    /// Its bytes on disk (a folder's: its manifest's).
    pub size: u64,
    pub kind: Kind,
    pub created_at_ms: i64,
    pub last_used_at_ms: i64,
}

/// One holder's reference to a blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactRef {
    pub digest: Digest,
    pub holder: String,
    pub created_at_ms: i64,
}

/// Counts and bytes of the recorded blobs, held and not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArtifactTotals {
    pub referenced: BlobCount,
    pub unreferenced: BlobCount,
}

fn digest_of(s: String) -> Result<Digest> {
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("artifact digest: {e}")))
}

fn artifact_row(r: &Row<'_>) -> rusqlite::Result<Result<StoredArtifact>> {
    let digest: String = r.get("digest")?;
    let kind: String = r.get("kind")?;
    let size: i64 = r.get("size")?;
    let created_at_ms = r.get("created_at")?;
    let last_used_at_ms = r.get("last_used_at")?;
    Ok((|| {
        Ok(StoredArtifact {
            digest: digest_of(digest)?,
            size: size.max(0) as u64,
            kind: Kind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("artifact kind `{kind}`")))?,
            created_at_ms,
            last_used_at_ms,
        })
    })())
}

impl Store {
    /// One blob's record.
    pub fn artifact(&self, digest: &Digest) -> Result<Option<StoredArtifact>> {
        self.conn
            .prepare_cached("SELECT * FROM artifacts WHERE digest = ?1")?
            .query_row([digest.as_str()], artifact_row)
            .optional()?
            .transpose()
    }

    /// Every recorded blob.
    pub fn artifacts(&self) -> Result<Vec<StoredArtifact>> {
        let mut stmt = self.conn.prepare("SELECT * FROM artifacts")?;
        let rows = stmt.query_map([], artifact_row)?;
        rows.map(|r| r.map_err(Into::into).and_then(|a| a))
            .collect()
    }

    /// Every reference of every holder.
    pub fn artifact_refs(&self) -> Result<Vec<ArtifactRef>> {
        let mut stmt = self
            .conn
            .prepare("SELECT digest, holder, created_at FROM artifact_refs")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (digest, holder, created_at_ms) = row?;
            out.push(ArtifactRef {
                digest: digest_of(digest)?,
                holder,
                created_at_ms,
            });
        }
        Ok(out)
    }

    /// The holders of one blob, oldest first.
    pub fn artifact_holders(&self, digest: &Digest) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT holder FROM artifact_refs WHERE digest = ?1 ORDER BY created_at, holder",
        )?;
        let rows = stmt.query_map([digest.as_str()], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The digests one holder refers to.
    pub fn artifacts_of_holder(&self, holder: &str) -> Result<Vec<Digest>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT digest FROM artifact_refs WHERE holder = ?1 ORDER BY digest")?;
        let rows = stmt.query_map([holder], |r| r.get::<_, String>(0))?;
        rows.map(|r| r.map_err(Into::into).and_then(digest_of))
            .collect()
    }

    /// Recorded blobs that no holder refers to, least recently used first.
    pub fn unreferenced_artifacts(&self) -> Result<Vec<StoredArtifact>> {
        let mut stmt = self.conn.prepare(
            "SELECT * FROM artifacts a
             WHERE NOT EXISTS (SELECT 1 FROM artifact_refs r WHERE r.digest = a.digest)
             ORDER BY last_used_at, digest",
        )?;
        let rows = stmt.query_map([], artifact_row)?;
        rows.map(|r| r.map_err(Into::into).and_then(|a| a))
            .collect()
    }

    /// Counts and bytes of the recorded blobs, referenced and not.
    pub fn artifact_totals(&self) -> Result<ArtifactTotals> {
        let mut stmt = self.conn.prepare(
            "SELECT EXISTS (SELECT 1 FROM artifact_refs r WHERE r.digest = a.digest) AS held,
                    COUNT(*), COALESCE(SUM(size), 0)
             FROM artifacts a GROUP BY held",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, bool>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut totals = ArtifactTotals::default();
        for row in rows {
            let (held, count, bytes) = row?;
            let c = BlobCount {
                count: count.max(0) as u64,
                bytes: bytes.max(0) as u64,
            };
            if held {
                totals.referenced = c;
            } else {
                totals.unreferenced = c;
            }
        }
        Ok(totals)
    }
}

impl Tx<'_> {
    /// Records a blob; a blob already recorded keeps its record and counts as used `now`.
    pub fn record_artifact(
        &self,
        digest: &Digest,
        size: u64,
        kind: Kind,
        now_ms: i64,
    ) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO artifacts (digest, size, kind, created_at, last_used_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT(digest) DO UPDATE SET
                     last_used_at = MAX(last_used_at, excluded.last_used_at)",
            )?
            .execute(params![
                digest.as_str(),
                size.min(i64::MAX as u64) as i64,
                kind.as_str(),
                now_ms
            ])?;
        Ok(())
    }

    /// Adds `holder`'s reference to a recorded blob; `Ok(false)` when it held it already.
    pub fn add_artifact_ref(&self, digest: &Digest, holder: &str, now_ms: i64) -> Result<bool> {
        let n = self
            .tx
            .prepare_cached(
                "INSERT INTO artifact_refs (digest, holder, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(digest, holder) DO NOTHING",
            )?
            .execute(params![digest.as_str(), holder, now_ms])?;
        Ok(n == 1)
    }

    /// Drops every reference of one holder; returns how many there were.
    pub fn drop_artifact_refs(&self, holder: &str) -> Result<u64> {
        let n = self
            .tx
            .prepare_cached("DELETE FROM artifact_refs WHERE holder = ?1")?
            .execute([holder])?;
        Ok(n as u64)
    }

    /// Drops every reference of every holder whose name starts with `prefix`, except those
    /// whose name starts with `keep` (the store's own references); returns how many there were.
    pub fn drop_artifact_refs_prefix(&self, prefix: &str, keep: &str) -> Result<u64> {
        let n = self
            .tx
            .prepare_cached(
                "DELETE FROM artifact_refs
                 WHERE substr(holder, 1, length(?1)) = ?1
                   AND substr(holder, 1, length(?2)) <> ?2",
            )?
            .execute([prefix, keep])?;
        Ok(n as u64)
    }

    /// Notes that a blob was used (read, materialized, referenced again).
    pub fn touch_artifact(&self, digest: &Digest, now_ms: i64) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE artifacts SET last_used_at = ?2 WHERE digest = ?1 AND last_used_at < ?2",
            )?
            .execute(params![digest.as_str(), now_ms])?;
        Ok(())
    }

    /// Forgets a blob: its record, the references to it, and the references it held as
    /// `own_holder` (a folder's hold on its files).
    pub fn delete_artifact(&self, digest: &Digest, own_holder: &str) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM artifact_refs WHERE digest = ?1 OR holder = ?2")?
            .execute([digest.as_str(), own_holder])?;
        self.tx
            .prepare_cached("DELETE FROM artifacts WHERE digest = ?1")?
            .execute([digest.as_str()])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::from_sha256([n; 32])
    }

    #[test]
    fn references_hold_blobs_and_holders_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("petri.db")).unwrap();
        store
            .write(|tx| {
                tx.record_artifact(&d(1), 10, Kind::File, 100)?;
                tx.record_artifact(&d(2), 20, Kind::File, 100)?;
                tx.record_artifact(&d(3), 5, Kind::Dir, 100)?;
                assert!(tx.add_artifact_ref(&d(1), "pipeline:r1/a/out", 100)?);
                assert!(!tx.add_artifact_ref(&d(1), "pipeline:r1/a/out", 101)?);
                tx.add_artifact_ref(&d(2), "pipeline:r2/a/out", 100)?;
                tx.add_artifact_ref(&d(2), "cache:k", 100)?;
                tx.add_artifact_ref(&d(1), "artifact:x", 100)?;
                // Recording again keeps the first record, and counts as a use.
                tx.record_artifact(&d(1), 10, Kind::File, 500)?;
                Ok(())
            })
            .unwrap();
        let one = store.artifact(&d(1)).unwrap().unwrap();
        assert_eq!((one.created_at_ms, one.last_used_at_ms), (100, 500));
        let t = store.artifact_totals().unwrap();
        assert_eq!(
            t.referenced,
            BlobCount {
                count: 2,
                bytes: 30
            }
        );
        assert_eq!(t.unreferenced, BlobCount { count: 1, bytes: 5 });
        assert_eq!(store.artifacts_of_holder("cache:k").unwrap(), vec![d(2)]);

        // A prefix drops every run's references but never the store's own.
        let n = store
            .write(|tx| tx.drop_artifact_refs_prefix("pipeline:", "artifact:"))
            .unwrap();
        assert_eq!(n, 2);
        let n = store
            .write(|tx| tx.drop_artifact_refs_prefix("", "artifact:"))
            .unwrap();
        assert_eq!(n, 1, "only cache:k was left to drop");
        assert_eq!(
            store.artifact_holders(&d(1)).unwrap(),
            vec!["artifact:x".to_string()]
        );
        let free: Vec<Digest> = store
            .unreferenced_artifacts()
            .unwrap()
            .into_iter()
            .map(|a| a.digest)
            .collect();
        assert_eq!(free, vec![d(2), d(3)]);
        store
            .write(|tx| {
                tx.touch_artifact(&d(2), 900)?;
                tx.delete_artifact(&d(3), "artifact:x")?;
                tx.drop_artifact_refs("nobody")
            })
            .unwrap();
        assert!(store.artifact(&d(3)).unwrap().is_none());
        assert!(store.artifact_holders(&d(1)).unwrap().is_empty());
        assert_eq!(store.artifact(&d(2)).unwrap().unwrap().last_used_at_ms, 900);
        assert_eq!(store.artifacts().unwrap().len(), 2);
        assert!(store.artifact_refs().unwrap().is_empty());
    }
}
