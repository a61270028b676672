//! Retention: the logs and output folders of finished jobs are kept within the limits the user
//! sets (`[retention]`: an age, a total size), oldest first. Never a job that is queued, held or
//! running, never one that ended moments ago (a pipeline collects a step's outputs right after
//! it ends), and never the record: a pruned job keeps its row with a note of what went.
//!
//! A finished job's files are measured once (the size is kept in its row), so a pass over a home
//! with a million finished jobs reads the database, not the disk.

use std::path::Path;
use std::sync::Mutex;

use petri_domain::{ByteSize, Millis, Pruned, PrunedJob, RetentionLimits, RetentionReport};
use petri_store::{ReadPool, Store, Unpruned};
use serde::{Deserialize, Serialize};

use crate::error::QueueError;
use crate::home::Home;

/// `[retention]` in `petri.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// The files of a job that finished longer ago than this are removed (`0s`: never by age).
    pub max_age: Millis,
    /// The files of finished jobs are kept within this many bytes, the oldest removed first.
    /// Unset: a tenth of the disk the home is on, at most 50 GiB.
    pub max_size: Option<ByteSize>,
    /// A job that finished less than this ago is never touched.
    pub min_age: Millis,
    /// How often the daemon applies the limits.
    pub every: Millis,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            max_age: Millis(90 * 24 * 3600 * 1000),
            max_size: None,
            min_age: Millis(3600 * 1000),
            every: Millis(10 * 60 * 1000),
        }
    }
}

/// The size limit when the settings leave it out: a tenth of the disk, at most this.
const DEFAULT_MAX_SIZE_CAP: u64 = 50 << 30;

/// At most this many removed jobs are listed in a report (the counts cover all).
const LISTED: usize = 1000;

/// Rows written per transaction, so the queue's own writes never wait long.
const BATCH: usize = 500;

/// Applies the limits. Holds a writer of its own: its few writes never go through the engine.
pub struct Retention {
    home: Home,
    settings: RetentionSettings,
    writer: Mutex<Store>,
    reads: ReadPool,
    /// One pass at a time (the timer's and a user's `petri gc`).
    running: Mutex<()>,
}

impl Retention {
    pub fn new(home: Home, settings: RetentionSettings, writer: Store, reads: ReadPool) -> Self {
        Retention {
            home,
            settings,
            writer: Mutex::new(writer),
            reads,
            running: Mutex::new(()),
        }
    }

    pub fn settings(&self) -> &RetentionSettings {
        &self.settings
    }

    /// What finished jobs' files hold, as last measured.
    pub fn totals(&self) -> Result<petri_store::FileTotals, QueueError> {
        self.reads.read(|s| Ok(s.file_totals()?))
    }

    pub fn limits(&self) -> RetentionLimits {
        RetentionLimits {
            max_age_ms: Some(self.settings.max_age.0).filter(|ms| *ms > 0),
            max_size: self
                .settings
                .max_size
                .map_or_else(|| default_max_size(self.home.root()), |b| b.0),
            min_age_ms: self.settings.min_age.0,
        }
    }

    /// One pass: measures what is not measured yet, then removes the files the limits let go.
    /// Blocking (files, SQLite): call it from a blocking thread.
    pub fn run(&self, dry_run: bool, now_ms: i64) -> Result<RetentionReport, QueueError> {
        let _one = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let limits = self.limits();
        let mut jobs = self.reads.read(|s| Ok::<_, QueueError>(s.unpruned()?))?;

        // Measure once; the sizes stay in the rows.
        let unmeasured: Vec<usize> = (0..jobs.len())
            .filter(|&i| jobs[i].file_bytes.is_none())
            .collect();
        for chunk in unmeasured.chunks(BATCH) {
            let sizes: Vec<(usize, u64)> = chunk
                .iter()
                .map(|&i| (i, self.measure(jobs[i].id)))
                .collect();
            if !dry_run {
                self.write(|tx| {
                    for &(i, bytes) in &sizes {
                        tx.set_file_bytes(jobs[i].id, bytes)?;
                    }
                    Ok(())
                })?;
            }
            for (i, bytes) in sizes {
                jobs[i].file_bytes = Some(bytes);
            }
        }

        let chosen = choose(&jobs, &limits, now_ms);
        let mut report = RetentionReport {
            dry_run,
            limits,
            ..RetentionReport::default()
        };
        let mut removed = vec![false; jobs.len()];
        let mut notes: Vec<(petri_domain::JobId, Pruned)> = Vec::new();
        for (i, why) in chosen {
            let job = &jobs[i];
            let bytes = job.file_bytes.unwrap_or(0);
            if !dry_run {
                if let Err(e) = self.remove_files(job.id) {
                    tracing::warn!(job.id = %job.id, "retention could not remove a job's files: {e}");
                    continue;
                }
                notes.push((
                    job.id,
                    Pruned {
                        at_ms: now_ms,
                        bytes,
                        why: why.to_string(),
                    },
                ));
                if notes.len() >= BATCH {
                    self.note(&mut notes)?;
                }
            }
            removed[i] = true;
            report.removed_jobs += 1;
            report.freed_bytes += bytes;
            if report.removed.len() < LISTED {
                report.removed.push(PrunedJob {
                    id: job.id,
                    number: job.number,
                    finished_at_ms: job.finished_at_ms,
                    bytes,
                    why: why.to_string(),
                });
            }
        }
        self.note(&mut notes)?;
        for (job, gone) in jobs.iter().zip(removed) {
            if !gone {
                report.kept_jobs += 1;
                report.kept_bytes += job.file_bytes.unwrap_or(0);
            }
        }
        if report.removed_jobs > 0 && !dry_run {
            tracing::info!(
                jobs = report.removed_jobs,
                freed = %ByteSize(report.freed_bytes),
                "retention removed the logs and outputs of old finished jobs"
            );
        }
        Ok(report)
    }

    fn note(&self, notes: &mut Vec<(petri_domain::JobId, Pruned)>) -> Result<(), QueueError> {
        if notes.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            for (id, note) in notes.iter() {
                tx.set_pruned(*id, note)?;
            }
            Ok(())
        })?;
        notes.clear();
        Ok(())
    }

    fn write(
        &self,
        f: impl FnOnce(&petri_store::Tx<'_>) -> petri_store::Result<()>,
    ) -> Result<(), QueueError> {
        let mut store = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        Ok(store.write(f)?)
    }

    /// The bytes a job's log and output folder hold.
    fn measure(&self, id: petri_domain::JobId) -> u64 {
        let log = std::fs::symlink_metadata(self.home.log(id)).map_or(0, |m| m.len());
        log + tree_size(&self.home.output_dir(id))
    }

    fn remove_files(&self, id: petri_domain::JobId) -> std::io::Result<()> {
        for result in [
            std::fs::remove_file(self.home.log(id)),
            std::fs::remove_dir_all(self.home.output_dir(id)),
        ] {
            match result {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Which jobs' files go, oldest first, and which limit takes them: every job past the age
/// limit, then the oldest while the rest hold more than the size limit. A job that ended less
/// than `min_age` ago is never chosen (nor counted against the others).
fn choose(jobs: &[Unpruned], limits: &RetentionLimits, now_ms: i64) -> Vec<(usize, &'static str)> {
    let min_age = limits.min_age_ms.min(i64::MAX as u64) as i64;
    let mut total: u64 = jobs.iter().map(|j| j.file_bytes.unwrap_or(0)).sum();
    let mut out = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let age = now_ms.saturating_sub(job.finished_at_ms);
        if age < min_age {
            // Sorted by end: every job after this one is younger still.
            break;
        }
        let bytes = job.file_bytes.unwrap_or(0);
        let why = if limits.max_age_ms.is_some_and(|max| age as u64 > max) {
            "age"
        } else if total > limits.max_size {
            "size"
        } else {
            continue;
        };
        total = total.saturating_sub(bytes);
        out.push((i, why));
    }
    out
}

/// The bytes of a folder's files, links not followed (0 when it does not exist).
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_dir() {
            total += tree_size(&entry.path());
        } else {
            total += meta.len();
        }
    }
    total
}

/// A tenth of the disk the home is on, at most 50 GiB (10 GiB when the disk cannot be read).
#[allow(clippy::unnecessary_cast)] // statvfs's field types differ between platforms
pub fn default_max_size(root: &Path) -> u64 {
    match nix::sys::statvfs::statvfs(root) {
        Ok(st) => {
            let total = (st.blocks() as u64).saturating_mul(st.fragment_size() as u64);
            (total / 10).min(DEFAULT_MAX_SIZE_CAP)
        }
        Err(_) => 10 << 30,
    }
}

/// Free and total bytes of the disk the home is on.
#[allow(clippy::unnecessary_cast)] // statvfs's field types differ between platforms
pub fn disk_space(root: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(root).ok()?;
    let unit = st.fragment_size() as u64;
    Some((
        (st.blocks_available() as u64).saturating_mul(unit),
        (st.blocks() as u64).saturating_mul(unit),
    ))
}

#[cfg(test)]
mod tests {
    use petri_domain::JobId;

    use super::*;

    fn job(finished_at_ms: i64, bytes: u64) -> Unpruned {
        Unpruned {
            id: JobId::new(),
            number: finished_at_ms as u64,
            finished_at_ms,
            file_bytes: Some(bytes),
        }
    }

    const HOUR: i64 = 3600 * 1000;

    #[test]
    fn the_oldest_go_first_and_the_youngest_never() {
        let limits = RetentionLimits {
            max_age_ms: Some(100 * HOUR as u64),
            max_size: 250,
            min_age_ms: HOUR as u64,
        };
        let now = 1000 * HOUR;
        let jobs = [
            job(now - 200 * HOUR, 10), // past the age limit
            job(now - 50 * HOUR, 100), // over the size limit: 10 + 100 + 100 + 100 + 100 = 410
            job(now - 40 * HOUR, 100), // still over: 300
            job(now - 30 * HOUR, 100), // within now: 200
            job(now - HOUR / 2, 100),  // too young to touch, though it counts
        ];
        let chosen = choose(&jobs, &limits, now);
        assert_eq!(chosen, vec![(0, "age"), (1, "size"), (2, "size")]);
        // Without limits that bite, nothing goes.
        let loose = RetentionLimits {
            max_age_ms: None,
            max_size: u64::MAX,
            min_age_ms: 0,
        };
        assert!(choose(&jobs, &loose, now).is_empty());
    }
}
