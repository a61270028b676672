//! [`Artifacts`]: the blobs with their records: who holds what, when it was last used, and the
//! garbage collector.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use petri_domain::artifact::{ArtifactUsage, Digest, GcReport, Kind, Manifest};
use petri_store::{ReadPool, Store};

use crate::blobs::{ArtifactStore, BlobReader, Stored};
use crate::gc::{self, BlobFacts, GcPolicy, HolderRef};
use crate::{ArtifactError, FOLDER_HOLDER_PREFIX, now_ms};

type Result<T, E = ArtifactError> = std::result::Result<T, E>;

/// What a digest holds, ready to serve: a file's blob (checked once already; the reader checks
/// it again as it goes), or a folder's manifest.
#[derive(Debug)]
pub enum Content {
    File(BlobReader),
    Dir(Manifest),
}

/// The artifact store with its records. Cheap to clone; every method blocks (file system and
/// SQLite), so call it from a blocking thread, never on an async runtime's own threads.
#[derive(Clone)]
pub struct Artifacts {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Artifacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifacts")
            .field("root", &self.inner.blobs.root())
            .field("policy", &self.inner.policy)
            .finish()
    }
}

struct Inner {
    blobs: ArtifactStore,
    /// Writes of the artifact tables (the queue's engine writes through a connection of its own).
    store: Mutex<Store>,
    reads: ReadPool,
    policy: GcPolicy,
    /// Puts, references and materializations share it; a collection takes it alone, so it
    /// never removes a blob that a put has just found already there and is about to record.
    gate: RwLock<()>,
}

impl Artifacts {
    /// The blobs in `blobs`, recorded through `store` (a connection of the artifact store's own),
    /// read through `reads`; `policy` is what [`Artifacts::policy`] answers (the settings').
    pub fn new(blobs: ArtifactStore, store: Store, reads: ReadPool, policy: GcPolicy) -> Artifacts {
        Artifacts {
            inner: Arc::new(Inner {
                blobs,
                store: Mutex::new(store),
                reads,
                policy,
                gate: RwLock::new(()),
            }),
        }
    }

    /// The blobs themselves, without records.
    pub fn blobs(&self) -> &ArtifactStore {
        &self.inner.blobs
    }

    /// The collector's policy from the settings.
    pub fn policy(&self) -> &GcPolicy {
        &self.inner.policy
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.inner.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn shared(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.inner.gate.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a file or a folder, records it, and adds `holder`'s reference, in one call.
    pub fn put_path(&self, path: &Path, holder: &str) -> Result<Stored> {
        check_holder(holder)?;
        let _gate = self.shared();
        let stored = self.inner.blobs.put_path(path)?;
        self.hold(&stored.digest, stored.kind, holder, true)?;
        Ok(stored)
    }

    /// Stores what `r` gives (streamed), records it, and adds `holder`'s reference.
    pub fn put_reader(&self, r: impl Read, holder: &str) -> Result<Stored> {
        check_holder(holder)?;
        let _gate = self.shared();
        let stored = self.inner.blobs.put_reader(r)?;
        self.hold(&stored.digest, stored.kind, holder, true)?;
        Ok(stored)
    }

    /// Adds `holder`'s reference to an artifact in the store (a cache hit reusing an earlier
    /// step's output, a model registered from a run). `ARTIFACT_NOT_FOUND` when its blob is
    /// not there.
    pub fn reference(&self, d: &Digest, holder: &str) -> Result<()> {
        check_holder(holder)?;
        let _gate = self.shared();
        let recorded = self.kind(d)?;
        self.hold(d, recorded.0, holder, !recorded.1)
    }

    /// Drops every reference `holder` has; returns how many there were. What nothing else holds
    /// is collected by the next garbage collection after the grace period.
    pub fn release(&self, holder: &str) -> Result<u64> {
        check_holder(holder)?;
        let n = self.store().write(|tx| tx.drop_artifact_refs(holder))?;
        tracing::debug!(holder, references = n, "artifact holder released");
        Ok(n)
    }

    /// Drops the references of every holder whose name starts with `prefix` (all of a run:
    /// `pipeline:<run>/`); returns how many there were.
    pub fn release_prefix(&self, prefix: &str) -> Result<u64> {
        if prefix.is_empty() {
            return Err(ArtifactError::InvalidHolder {
                holder: prefix.into(),
                why: "an empty prefix would release every holder".into(),
            });
        }
        check_holder(prefix)?;
        let n = self
            .store()
            .write(|tx| tx.drop_artifact_refs_prefix(prefix, FOLDER_HOLDER_PREFIX))?;
        tracing::debug!(prefix, references = n, "artifact holders released");
        Ok(n)
    }

    /// Puts a checked copy of the artifact at `dest` (see [`ArtifactStore::materialize`]).
    pub fn materialize(&self, d: &Digest, dest: &Path) -> Result<()> {
        let _gate = self.shared();
        let (kind, _) = self.kind(d)?;
        self.inner.blobs.materialize_as(d, kind, dest)?;
        self.touch(d);
        Ok(())
    }

    /// Opens a file artifact for reading; the reader fails at the end when the content does not
    /// match the digest (`ARTIFACT_CORRUPT`).
    pub fn open(&self, d: &Digest) -> Result<BlobReader> {
        let r = self.inner.blobs.open_blob(d)?;
        self.touch(d);
        Ok(r)
    }

    /// What a digest holds, checked before anything is handed out: a file's blob is read
    /// through once first, so a damaged one is refused (`ARTIFACT_CORRUPT`) before a byte is
    /// served.
    pub fn read(&self, d: &Digest) -> Result<Content> {
        let (kind, _) = self.kind(d)?;
        let content = match kind {
            Kind::File => {
                self.inner.blobs.verify(d)?;
                Content::File(self.inner.blobs.open_blob(d)?)
            }
            Kind::Dir => Content::Dir(self.inner.blobs.manifest(d)?),
        };
        self.touch(d);
        Ok(content)
    }

    /// Reads a blob through and checks it against its digest.
    pub fn verify(&self, d: &Digest) -> Result<()> {
        self.inner.blobs.verify(d)
    }

    /// Who holds an artifact (the store's own `artifact:` holds included).
    pub fn holders(&self, d: &Digest) -> Result<Vec<String>> {
        self.inner
            .reads
            .read(|s| s.artifact_holders(d))
            .map_err(Into::into)
    }

    /// Count and bytes of the recorded blobs, referenced and not.
    pub fn usage(&self) -> Result<ArtifactUsage> {
        let totals = self.inner.reads.read(|s| s.artifact_totals())?;
        Ok(ArtifactUsage {
            referenced: totals.referenced,
            unreferenced: totals.unreferenced,
            max_size: self.inner.policy.max_size,
        })
    }

    /// Collects garbage by `policy` ([`gc::plan`]): drops the cache holders it chooses, forgets
    /// and removes the blobs nothing holds (recorded or not: a blob written just before a crash
    /// has no record), and removes temporary files older than the grace period. A dry run
    /// changes nothing and answers what a collection would do now.
    pub fn gc(&self, policy: &GcPolicy, dry_run: bool) -> Result<GcReport> {
        let _gate = self.inner.gate.write().unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        let (rows, refs) = self
            .inner
            .reads
            .read(|s| Ok::<_, ArtifactError>((s.artifacts()?, s.artifact_refs()?)))?;
        let mut facts: BTreeMap<Digest, BlobFacts> = BTreeMap::new();
        for row in rows {
            facts.insert(
                row.digest.clone(),
                BlobFacts {
                    digest: row.digest,
                    size: 0,
                    last_active_ms: row.created_at_ms.max(row.last_used_at_ms),
                    holders: Vec::new(),
                },
            );
        }
        for (digest, size, mtime) in self.inner.blobs.blobs()? {
            let f = facts.entry(digest.clone()).or_insert_with(|| BlobFacts {
                digest,
                size: 0,
                last_active_ms: i64::MIN,
                holders: Vec::new(),
            });
            f.size = size;
            f.last_active_ms = f.last_active_ms.max(mtime);
        }
        for r in refs {
            if let Some(f) = facts.get_mut(&r.digest) {
                f.holders.push(HolderRef {
                    holder: r.holder,
                    since_ms: r.created_at_ms,
                });
            }
        }
        let facts: Vec<BlobFacts> = facts.into_values().collect();
        let plan = gc::plan(&facts, policy, now);
        let mut report = GcReport {
            dry_run,
            removed: plan.remove.clone(),
            freed_bytes: plan.freed_bytes,
            dropped_holders: plan.drop_holders.clone(),
            kept: plan.kept,
            jobs: None,
        };
        if dry_run {
            return Ok(report);
        }
        // Records first: a crash after this leaves blobs without records, which the next
        // collection removes; the other order would leave records without blobs.
        self.store().write(|tx| {
            for h in &plan.drop_holders {
                tx.drop_artifact_refs(h)?;
            }
            for r in &plan.remove {
                tx.delete_artifact(&r.digest, &folder_holder(&r.digest))?;
            }
            Ok(())
        })?;
        let mut freed = 0;
        for r in &plan.remove {
            match self.inner.blobs.remove(&r.digest) {
                Ok(n) => freed += n,
                Err(e) => tracing::warn!(digest = %r.digest, error = %e, "could not remove a blob"),
            }
        }
        report.freed_bytes = freed;
        let temp = self
            .inner
            .blobs
            .remove_temp_older_than(now.saturating_sub(policy.grace_ms))?;
        tracing::info!(
            blobs = report.removed.len(),
            bytes = report.freed_bytes,
            dropped_holders = report.dropped_holders.len(),
            temp_files = temp.len(),
            "artifact garbage collected"
        );
        Ok(report)
    }

    /// The kind of a stored artifact, and whether it has a record. `ARTIFACT_NOT_FOUND` when its
    /// blob is not on disk (whatever the records say).
    fn kind(&self, d: &Digest) -> Result<(Kind, bool)> {
        if !self.inner.blobs.contains(d) {
            return Err(ArtifactError::NotFound(d.clone()));
        }
        match self.inner.reads.read(|s| s.artifact(d))? {
            Some(row) => Ok((row.kind, true)),
            None => Ok((self.inner.blobs.kind_of(d)?, false)),
        }
    }

    /// Records an artifact (with a folder's files, which it holds) when `record`, and adds
    /// `holder`'s reference, in one transaction.
    fn hold(&self, d: &Digest, kind: Kind, holder: &str, record: bool) -> Result<()> {
        let mut rows: Vec<(Digest, u64, Kind)> = Vec::new();
        let mut files: BTreeSet<Digest> = BTreeSet::new();
        if record {
            rows.push((d.clone(), self.inner.blobs.size_of(d)?, kind));
            if kind == Kind::Dir {
                for f in self.inner.blobs.manifest(d)?.files {
                    if files.insert(f.digest.clone()) {
                        rows.push((
                            f.digest.clone(),
                            self.inner.blobs.size_of(&f.digest)?,
                            Kind::File,
                        ));
                    }
                }
            }
        }
        let now = now_ms();
        let folder = folder_holder(d);
        self.store().write(|tx| {
            for (digest, size, kind) in &rows {
                tx.record_artifact(digest, *size, *kind, now)?;
            }
            for f in &files {
                tx.add_artifact_ref(f, &folder, now)?;
            }
            tx.add_artifact_ref(d, holder, now)?;
            tx.touch_artifact(d, now)
        })?;
        tracing::debug!(digest = %d, holder, "artifact held");
        Ok(())
    }

    /// Notes a use; a failure to note it only loses recency, so it is logged, not returned.
    fn touch(&self, d: &Digest) {
        let now = now_ms();
        if let Err(e) = self.store().write(|tx| tx.touch_artifact(d, now)) {
            tracing::warn!(digest = %d, error = %e, "could not note an artifact's use");
        }
    }
}

fn folder_holder(d: &Digest) -> String {
    format!("{FOLDER_HOLDER_PREFIX}{d}")
}

/// A holder is a short printable name (`pipeline:<run>/<step>/<output>`, `cache:<key>`,
/// `model:<name>/<version>`); `artifact:` names are the store's own.
fn check_holder(holder: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(ArtifactError::InvalidHolder {
            holder: holder.chars().take(80).collect(),
            why: why.into(),
        })
    };
    if holder.is_empty() {
        return bad("it is empty");
    }
    if holder.len() > 1024 {
        return bad("it is longer than 1024 bytes");
    }
    if holder.chars().any(char::is_control) {
        return bad("it holds control characters");
    }
    if holder.starts_with(FOLDER_HOLDER_PREFIX) {
        return bad(
            "names starting with `artifact:` are the store's own (a folder's hold on its files)",
        );
    }
    Ok(())
}
