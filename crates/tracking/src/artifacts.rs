//! A run's artifacts, as MLflow's `mlflow-artifacts` routes address them: a path
//! `<experiment>/<run>/artifacts/<file>` (the run's `artifact_uri` is
//! `mlflow-artifacts:/<experiment>/<run>/artifacts`). The bytes go to Petri's one
//! content-addressed store ([`Artifacts`]), streamed through its temporary file, so an upload
//! cut off halfway leaves nothing behind; tracking.db keeps each run's path → digest. Each file
//! is held in the store as `tracking:<run>/<path>`, so the garbage collector keeps it for as
//! long as the run lists it.

use std::io::Read;

use petri_artifacts::{Artifacts, BlobReader, Digest};
use rusqlite::{OptionalExtension, params};

use crate::error::{Result, TrackingError};
use crate::service::Tracking;
use crate::store;

/// The holder prefix of a run's artifact files in the artifact store.
pub const HOLDER_PREFIX: &str = "tracking:";

/// The longest path (in bytes) a run's artifact may have, so that its holder name stays within
/// the artifact store's limit.
const MAX_PATH_BYTES: usize = 900;

/// Where an artifact path points: a run or a logged model, and a path inside its artifacts
/// (empty for the root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactPath {
    pub experiment_id: String,
    /// A run's id, or a logged model's (`m-…`) when `model`.
    pub run_id: String,
    /// The path is `<experiment>/models/<model>/artifacts/…`: a logged model's files.
    pub model: bool,
    /// `a/b.txt`; empty for the run's artifact root. Never `..`, never absolute.
    pub path: String,
}

/// One entry of a listing: a file with its size, or a folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactEntry {
    /// The name inside the listed folder.
    pub name: String,
    pub is_dir: bool,
    /// A file's size in bytes (none for a folder).
    pub size: Option<u64>,
}

fn refused(why: impl std::fmt::Display) -> TrackingError {
    TrackingError::invalid(format!("Invalid artifact path: {why}"))
}

/// Checks a path inside a run's artifacts and gives it back without empty segments: `..`, `.`,
/// absolute paths, backslashes, NUL and other control characters are refused
/// (`INVALID_PARAMETER_VALUE`).
pub fn clean_relative(path: &str) -> Result<String> {
    if path.starts_with('/') {
        return Err(refused(format!("'{path}' is absolute")));
    }
    if path.contains('\\') {
        return Err(refused(format!("'{path}' holds a backslash")));
    }
    if path.chars().any(char::is_control) {
        return Err(refused("it holds a control character"));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" => {}
            "." | ".." => {
                return Err(refused(format!("'{path}' leaves its folder ('{part}')")));
            }
            p => parts.push(p),
        }
    }
    let clean = parts.join("/");
    if clean.len() > MAX_PATH_BYTES {
        return Err(refused(format!("it is longer than {MAX_PATH_BYTES} bytes")));
    }
    Ok(clean)
}

/// Parses `<experiment>/<run>/artifacts[/<path>]` (a run's files) or
/// `<experiment>/models/<model>/artifacts[/<path>]` (a logged model's), the paths the
/// `mlflow-artifacts` routes take.
pub fn parse_path(full: &str) -> Result<ArtifactPath> {
    if full.starts_with('/') {
        return Err(refused(format!("'{full}' is absolute")));
    }
    let clean = clean_relative(full)?;
    let outside = || {
        TrackingError::not_found(format!(
            "'{full}' is not inside a run's artifacts (<experiment>/<run>/artifacts/...) nor a \
             logged model's (<experiment>/models/<model>/artifacts/...)"
        ))
    };
    let mut parts = clean.splitn(3, '/');
    let (Some(experiment_id), Some(second), Some(rest)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(outside());
    };
    let (model, owner, rest) = match (second, rest.split_once('/')) {
        ("models", Some((id, rest))) if id.starts_with("m-") => (true, id, rest),
        _ => (false, second, rest),
    };
    let path = match rest.split_once('/') {
        Some(("artifacts", path)) => path,
        None if rest == "artifacts" => "",
        _ => return Err(outside()),
    };
    Ok(ArtifactPath {
        experiment_id: experiment_id.to_string(),
        run_id: owner.to_string(),
        model,
        path: path.to_string(),
    })
}

/// Whose files: a run (its row number) or a logged model (its id).
#[derive(Clone, Debug)]
enum Owner {
    Run(i64),
    Model(String),
}

impl Owner {
    /// The table of its files and the column naming it.
    fn table(&self) -> (&'static str, &'static str) {
        match self {
            Owner::Run(_) => ("run_artifacts", "run"),
            Owner::Model(_) => ("model_artifacts", "model"),
        }
    }
    fn key(&self) -> rusqlite::types::Value {
        match self {
            Owner::Run(seq) => (*seq).into(),
            Owner::Model(id) => id.clone().into(),
        }
    }
}

fn holder(run_id: &str, path: &str) -> String {
    format!("{HOLDER_PREFIX}{run_id}/{path}")
}

fn no_artifact(at: &ArtifactPath) -> TrackingError {
    TrackingError::not_found(format!("No artifact '{}' in run {}", at.path, at.run_id))
}

/// The direct children of `dir` among `files` (sorted paths with sizes).
pub fn children(files: &[(String, u64)], dir: &str) -> Vec<ArtifactEntry> {
    let mut out: Vec<ArtifactEntry> = Vec::new();
    for (path, size) in files {
        let rest = if dir.is_empty() {
            path.as_str()
        } else {
            match path.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) {
                Some(r) => r,
                None => continue,
            }
        };
        let entry = match rest.split_once('/') {
            Some((folder, _)) => ArtifactEntry {
                name: folder.to_string(),
                is_dir: true,
                size: None,
            },
            None => ArtifactEntry {
                name: rest.to_string(),
                is_dir: false,
                size: Some(*size),
            },
        };
        if out.last().is_none_or(|l| l.name != entry.name) {
            out.push(entry);
        }
    }
    out
}

impl Tracking {
    /// Purges the runs deleted before `cutoff_ms` (deleted one by one, or with their
    /// experiment): their params, metrics, tags and inputs go, and the artifact store lets go of
    /// their artifacts, which its garbage collector then removes unless something else holds
    /// the same bytes. MLflow keeps a deleted run until `mlflow gc`; Petri does this in its
    /// collector's rounds. Answers how many runs were purged.
    pub async fn purge_deleted_runs(&self, artifacts: &Artifacts, cutoff_ms: i64) -> Result<usize> {
        let sql = self.sql();
        let ids: Vec<String> = self
            .read(move |c| {
                c.prepare(
                    "SELECT id FROM runs WHERE lifecycle_stage = 'deleted' AND deleted_time < ?1",
                )
                .and_then(|mut s| s.query_map([cutoff_ms], |r| r.get(0))?.collect())
                .map_err(&sql)
            })
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        // The holds go first: a crash after them leaves a deleted run whose artifacts may be
        // collected (it is purged at the next round), never artifacts held for nothing.
        let store = artifacts.clone();
        let prefixes: Vec<String> = ids
            .iter()
            .map(|id| format!("{HOLDER_PREFIX}{id}/"))
            .collect();
        tokio::task::spawn_blocking(move || {
            prefixes
                .iter()
                .try_for_each(|p| store.release_prefix(p).map(|_| ()))
        })
        .await
        .map_err(|e| TrackingError::Task(e.to_string()))??;
        let sql = self.sql();
        let n = ids.len();
        self.write(move |c| {
            for id in &ids {
                let Some((seq, _)) = store::run_row(c, id).map_err(&sql)? else {
                    continue;
                };
                for stmt in [
                    "DELETE FROM metrics WHERE series IN (SELECT id FROM metric_series WHERE run = ?1)",
                    "DELETE FROM metric_series WHERE run = ?1",
                    "DELETE FROM params WHERE run = ?1",
                    "DELETE FROM tags WHERE run = ?1",
                    "DELETE FROM run_inputs WHERE run = ?1",
                    "DELETE FROM run_artifacts WHERE run = ?1",
                    "DELETE FROM run_outputs WHERE run = ?1",
                    "DELETE FROM runs WHERE seq = ?1",
                ] {
                    c.execute(stmt, [seq]).map_err(&sql)?;
                }
            }
            Ok(())
        })
        .await?;
        tracing::info!(runs = n, "purged runs deleted long ago");
        Ok(n)
    }

    /// The run or model an artifact path names, checked: it exists and belongs to that
    /// experiment.
    async fn artifact_run(&self, at: &ArtifactPath) -> Result<Owner> {
        let sql = self.sql();
        let at = at.clone();
        self.read(move |c| {
            if at.model {
                let m = crate::logged_models::model(c, &at.run_id)
                    .map_err(&sql)?
                    .ok_or_else(|| {
                        TrackingError::not_found(format!(
                            "Logged model with ID '{}' not found.",
                            at.run_id
                        ))
                    })?;
                if m.info.experiment_id != at.experiment_id {
                    return Err(TrackingError::not_found(format!(
                        "Logged model {} is not in experiment {}",
                        at.run_id, at.experiment_id
                    )));
                }
                return Ok(Owner::Model(at.run_id.clone()));
            }
            let (seq, info) = store::run_info(c, &at.run_id)
                .map_err(&sql)?
                .ok_or_else(|| {
                    TrackingError::not_found(format!("Run with id={} not found", at.run_id))
                })?;
            if info.experiment_id != at.experiment_id {
                return Err(TrackingError::not_found(format!(
                    "Run {} is not in experiment {}",
                    at.run_id, at.experiment_id
                )));
            }
            Ok(Owner::Run(seq))
        })
        .await
    }

    /// Stores `body` (streamed; any size) as the artifact at `full`
    /// (`<experiment>/<run>/artifacts/<path>`), replacing what was there. `body` is read on a
    /// blocking thread; when it fails halfway nothing is stored or recorded.
    pub async fn upload_artifact(
        &self,
        artifacts: &Artifacts,
        full: &str,
        body: impl Read + Send + 'static,
    ) -> Result<u64> {
        let at = parse_path(full)?;
        if at.path.is_empty() {
            return Err(refused(
                "an upload needs a file name inside the run's artifacts",
            ));
        }
        let seq = self.artifact_run(&at).await?;
        let holder = holder(&at.run_id, &at.path);
        let a = artifacts.clone();
        let h = holder.clone();
        let stored = tokio::task::spawn_blocking(move || a.put_reader(body, &h))
            .await
            .map_err(|e| TrackingError::Task(e.to_string()))??;
        let sql = self.sql();
        let digest = stored.digest.to_string();
        let size = stored.size;
        let path = at.path.clone();
        let (table, column) = seq.table();
        let key = seq.key();
        let old: Option<String> = self
            .write(move |c| {
                let old = c
                    .prepare_cached(&format!(
                        "SELECT digest FROM {table} WHERE {column} = ?1 AND path = ?2"
                    ))
                    .and_then(|mut s| {
                        s.query_row(params![key, path], |r| r.get::<_, String>(0))
                            .optional()
                    })
                    .map_err(&sql)?;
                c.prepare_cached(&format!(
                    "INSERT INTO {table} ({column}, path, digest, size) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT ({column}, path) DO UPDATE SET digest = excluded.digest, \
                     size = excluded.size"
                ))
                .and_then(|mut s| s.execute(params![key, path, digest, size as i64]))
                .map_err(&sql)?;
                Ok(old)
            })
            .await?;
        if let Some(old) = old
            && old != stored.digest.to_string()
        {
            // The holder held the old content too: it now holds only the new one.
            let a = artifacts.clone();
            let d = stored.digest.clone();
            tokio::task::spawn_blocking(move || {
                a.release(&holder)?;
                a.reference(&d, &holder)
            })
            .await
            .map_err(|e| TrackingError::Task(e.to_string()))??;
        }
        tracing::debug!(run = %at.run_id, path = %at.path, size, "run artifact stored");
        Ok(size)
    }

    /// Opens the artifact file at `full` for reading (checked against its digest as it is read).
    pub async fn open_artifact(&self, artifacts: &Artifacts, full: &str) -> Result<BlobReader> {
        let at = parse_path(full)?;
        let seq = self.artifact_run(&at).await?;
        let sql = self.sql();
        let path = at.path.clone();
        let (table, column) = seq.table();
        let key = seq.key();
        let digest: Option<String> = self
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT digest FROM {table} WHERE {column} = ?1 AND path = ?2"
                ))
                .and_then(|mut s| s.query_row(params![key, path], |r| r.get(0)).optional())
                .map_err(&sql)
            })
            .await?;
        let digest: Digest = digest
            .ok_or_else(|| no_artifact(&at))?
            .parse()
            .map_err(TrackingError::Task)?;
        let a = artifacts.clone();
        let reader = tokio::task::spawn_blocking(move || {
            a.verify(&digest)?;
            a.open(&digest)
        })
        .await
        .map_err(|e| TrackingError::Task(e.to_string()))??;
        Ok(reader)
    }

    /// The files and folders directly inside the folder `full`; empty when it is a file or
    /// holds nothing.
    pub async fn list_artifacts(&self, full: &str) -> Result<Vec<ArtifactEntry>> {
        let at = parse_path(full)?;
        let seq = self.artifact_run(&at).await?;
        let files = self.artifact_files(seq).await?;
        Ok(children(&files, &at.path))
    }

    /// Every artifact file of a run, by path, with its size.
    async fn artifact_files(&self, seq: Owner) -> Result<Vec<(String, u64)>> {
        let sql = self.sql();
        let (table, column) = seq.table();
        let key = seq.key();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT path, size FROM {table} WHERE {column} = ?1 ORDER BY path"
                ))
                .map_err(&sql)?;
            let rows = stmt
                .query_map([key], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(&sql)?;
            Ok(rows)
        })
        .await
    }

    /// Removes the file or the folder (with everything in it) at `full` from the run; the store
    /// keeps the bytes until the garbage collector finds nothing else holds them.
    pub async fn delete_artifacts(&self, artifacts: &Artifacts, full: &str) -> Result<u64> {
        let at = parse_path(full)?;
        let seq = self.artifact_run(&at).await?;
        let sql = self.sql();
        let dir = at.path.clone();
        let (table, column) = seq.table();
        let key = seq.key();
        let gone: Vec<String> = self
            .write(move |c| {
                let mut stmt = c
                    .prepare_cached(&format!("SELECT path FROM {table} WHERE {column} = ?1"))
                    .map_err(&sql)?;
                let all: Vec<String> = stmt
                    .query_map([&key], |r| r.get(0))
                    .and_then(|rows| rows.collect::<rusqlite::Result<_>>())
                    .map_err(&sql)?;
                let gone: Vec<String> = all
                    .into_iter()
                    .filter(|p| {
                        dir.is_empty()
                            || *p == dir
                            || p.strip_prefix(dir.as_str())
                                .is_some_and(|r| r.starts_with('/'))
                    })
                    .collect();
                let mut del = c
                    .prepare_cached(&format!(
                        "DELETE FROM {table} WHERE {column} = ?1 AND path = ?2"
                    ))
                    .map_err(&sql)?;
                for p in &gone {
                    del.execute(params![key, p]).map_err(&sql)?;
                }
                Ok(gone)
            })
            .await?;
        let n = gone.len() as u64;
        let a = artifacts.clone();
        let run = at.run_id.clone();
        tokio::task::spawn_blocking(move || {
            for p in &gone {
                a.release(&holder(&run, p))?;
            }
            Ok::<_, petri_artifacts::ArtifactError>(())
        })
        .await
        .map_err(|e| TrackingError::Task(e.to_string()))??;
        tracing::debug!(run = %at.run_id, path = %at.path, files = n, "run artifacts deleted");
        Ok(n)
    }
}

#[cfg(test)]
mod tests {

    #[tokio::test(flavor = "multi_thread")]
    async fn a_run_deleted_long_ago_is_purged_and_lets_go_of_its_artifacts() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("petri.db");
        let artifacts = Artifacts::new(
            petri_artifacts::ArtifactStore::open(&dir.path().join("artifacts")).unwrap(),
            petri_store::Store::open(&db).unwrap(),
            petri_store::ReadPool::open(&db, 1).unwrap(),
            petri_artifacts::GcPolicy::default(),
        );
        let t = Tracking::open(&dir.path().join("tracking.db")).unwrap();
        let mut ids = Vec::new();
        for _ in 0..2 {
            let run = t
                .create_run(crate::wire::CreateRun::default(), "ada")
                .await
                .unwrap()
                .run;
            let full = format!("0/{}/artifacts/model/weights.bin", run.info.run_id);
            t.upload_artifact(&artifacts, &full, &b"same bytes"[..])
                .await
                .unwrap();
            ids.push((run.info.run_id, full));
        }
        let digest = t
            .open_artifact(&artifacts, &ids[0].1)
            .await
            .unwrap()
            .digest()
            .clone();
        assert_eq!(artifacts.holders(&digest).unwrap().len(), 2);
        t.set_run_deleted(&ids[0].0, true).await.unwrap();
        // Deleted, but not long enough ago: kept.
        assert_eq!(t.purge_deleted_runs(&artifacts, 0).await.unwrap(), 0);
        let later = crate::service::now_ms() + 1000;
        assert_eq!(t.purge_deleted_runs(&artifacts, later).await.unwrap(), 1);
        assert!(matches!(
            t.get_run(&ids[0].0).await,
            Err(TrackingError::NotFound(_))
        ));
        // The live run still holds the same bytes.
        assert_eq!(artifacts.holders(&digest).unwrap().len(), 1);
        assert!(t.open_artifact(&artifacts, &ids[1].1).await.is_ok());
        assert_eq!(t.purge_deleted_runs(&artifacts, later).await.unwrap(), 0);
    }

    use super::*;

    #[test]
    fn paths_that_leave_the_run_are_refused() {
        for bad in [
            "0/r/artifacts/../x",
            "/etc/passwd",
            "0/r/artifacts/a\\b",
            "0/r/artifacts/a\0b",
            "0/r/artifacts/./x",
            "0/../0/r/artifacts/x",
        ] {
            let err = parse_path(bad).unwrap_err();
            assert!(matches!(err, TrackingError::Invalid(_)), "{bad}: {err}");
        }
        let model = parse_path("3/models/m-12ab/artifacts/MLmodel").unwrap();
        assert!(model.model && model.run_id == "m-12ab" && model.path == "MLmodel");
        assert!(!parse_path("3/models/artifacts/x").unwrap().model);
        let ok = parse_path("0/abc/artifacts//dir/f.txt").unwrap();
        assert_eq!(ok.experiment_id, "0");
        assert_eq!(ok.run_id, "abc");
        assert_eq!(ok.path, "dir/f.txt");
        assert_eq!(parse_path("0/abc/artifacts").unwrap().path, "");
        assert!(matches!(
            parse_path("0/abc/other/f").unwrap_err(),
            TrackingError::NotFound(_)
        ));
    }

    #[test]
    fn a_listing_shows_direct_children_once() {
        let files = vec![
            ("a.txt".to_string(), 3),
            ("d/b.txt".to_string(), 4),
            ("d/e/c.txt".to_string(), 5),
            ("dz.txt".to_string(), 6),
        ];
        let names = |dir: &str| {
            children(&files, dir)
                .into_iter()
                .map(|e| (e.name, e.is_dir, e.size))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(""),
            vec![
                ("a.txt".into(), false, Some(3)),
                ("d".into(), true, None),
                ("dz.txt".into(), false, Some(6)),
            ]
        );
        assert_eq!(
            names("d"),
            vec![("b.txt".into(), false, Some(4)), ("e".into(), true, None)]
        );
        assert!(names("a.txt").is_empty());
    }
}
