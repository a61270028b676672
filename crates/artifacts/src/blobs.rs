//! The blobs on disk: `<root>/sha256/ab/abcdef…`, written through `<root>/tmp/`.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use petri_domain::artifact::{Digest, Kind, Manifest};
use sha2::{Digest as _, Sha256};

use crate::manifest;
use crate::{ArtifactError, now_ms};

type Result<T, E = ArtifactError> = std::result::Result<T, E>;

/// What a put stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub digest: Digest,
    /// The content's bytes: a file's size, or the sum of a folder's files.
    pub size: u64,
    pub kind: Kind,
    /// 1 for a file; a folder's number of files.
    pub files: u64,
}

/// Blobs by content digest in one folder (`<home>/artifacts`). Cheap to share between threads:
/// every operation is a few file system calls, and a blob once in place never changes.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    root: PathBuf,
}

/// How much is read or written at a time.
const CHUNK: usize = 256 * 1024;
/// A blob's mode on disk: read-only for everyone.
const READ_ONLY: u32 = 0o444;

impl ArtifactStore {
    /// Opens (creating) the store in `root`, and removes the temporary files that processes
    /// which no longer run left behind (a crash in the middle of a put).
    pub fn open(root: &Path) -> Result<ArtifactStore> {
        let store = ArtifactStore {
            root: root.to_path_buf(),
        };
        for dir in [store.blob_root(), store.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(ArtifactError::io("creating", &dir))?;
        }
        let removed = store.remove_temp(|name, _| !written_by_live_process(name))?;
        if !removed.is_empty() {
            tracing::info!(
                files = removed.len(),
                "removed the temporary files of interrupted artifact writes"
            );
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_root(&self) -> PathBuf {
        self.root.join("sha256")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where a blob lives. A digest is 64 hex digits by construction, so this never leaves the
    /// store.
    fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.blob_root().join(&hex[..2]).join(hex)
    }

    /// Stores a file, or a folder (its files, then its manifest). A symbolic link, or a folder
    /// holding one, is refused, as are sockets, pipes, devices and names that are not UTF-8.
    pub fn put_path(&self, path: &Path) -> Result<Stored> {
        let meta = fs::symlink_metadata(path).map_err(ArtifactError::io("reading", path))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            Err(manifest::symlink_refused(path))
        } else if ft.is_dir() {
            manifest::put_dir(self, path)
        } else if ft.is_file() {
            let file = File::open(path).map_err(ArtifactError::io("opening", path))?;
            let (digest, size) = self.write_blob(file, path)?;
            Ok(Stored {
                digest,
                size,
                kind: Kind::File,
                files: 1,
            })
        } else {
            Err(manifest::special_refused(path))
        }
    }

    /// Stores whatever `r` gives, streamed (any size; never held in memory).
    pub fn put_reader(&self, r: impl Read) -> Result<Stored> {
        let (digest, size) = self.write_blob(r, Path::new("the input stream"))?;
        Ok(Stored {
            digest,
            size,
            kind: Kind::File,
            files: 1,
        })
    }

    /// Writes one blob: a temporary file, synced, made read-only, renamed over its digest's
    /// name. Putting content that is there already replaces it with the fresh copy (the same
    /// bytes), which also repairs a damaged one.
    pub(crate) fn write_blob(&self, mut r: impl Read, source: &Path) -> Result<(Digest, u64)> {
        let tmp_dir = self.tmp_dir();
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!("{}.", std::process::id()))
            .tempfile_in(&tmp_dir)
            .map_err(ArtifactError::io("creating a temporary file in", &tmp_dir))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ArtifactError::io("reading", source)(e)),
            };
            hasher.update(&buf[..n]);
            size += n as u64;
            tmp.write_all(&buf[..n])
                .map_err(ArtifactError::io("writing", tmp.path()))?;
        }
        tmp.as_file()
            .sync_all()
            .map_err(ArtifactError::io("syncing", tmp.path()))?;
        let digest = Digest::from_sha256(hasher.finalize().into());
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(READ_ONLY))
            .map_err(ArtifactError::io("making read-only", tmp.path()))?;
        let dest = self.blob_path(&digest);
        let parent = dest.parent().unwrap_or(&self.root).to_path_buf();
        if !parent.is_dir() {
            fs::create_dir_all(&parent).map_err(ArtifactError::io("creating", &parent))?;
            sync_dir(&self.blob_root())?;
        }
        tmp.persist(&dest)
            .map_err(|e| ArtifactError::io("storing", &dest)(e.error))?;
        sync_dir(&parent)?;
        tracing::debug!(%digest, size, "blob stored");
        Ok((digest, size))
    }

    /// Whether a blob with this digest is on disk (its content is not checked).
    pub fn contains(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// The blob's bytes on disk.
    pub fn size_of(&self, d: &Digest) -> Result<u64> {
        let path = self.blob_path(d);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ArtifactError::NotFound(d.clone()))
            }
            Err(e) => Err(ArtifactError::io("reading", &path)(e)),
        }
    }

    /// Opens a blob for reading. The reader hashes what it reads and, at the end, fails with
    /// `ARTIFACT_CORRUPT` (an `InvalidData` error; see [`ArtifactError::from_read`]) when the
    /// content does not match the digest.
    pub fn open_blob(&self, d: &Digest) -> Result<BlobReader> {
        let path = self.blob_path(d);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ArtifactError::NotFound(d.clone()));
            }
            Err(e) => return Err(ArtifactError::io("opening", &path)(e)),
        };
        let len = file
            .metadata()
            .map_err(ArtifactError::io("reading", &path))?
            .len();
        Ok(BlobReader {
            file,
            path,
            digest: d.clone(),
            hasher: Sha256::new(),
            len,
            state: ReadState::Reading,
        })
    }

    /// Reads a blob through and checks it against its digest.
    pub fn verify(&self, d: &Digest) -> Result<()> {
        let mut r = self.open_blob(d)?;
        let path = r.path.clone();
        io::copy(&mut r, &mut io::sink()).map_err(|e| ArtifactError::from_read(e, &path))?;
        Ok(())
    }

    /// What a digest names: a folder when its blob is a manifest, else a file.
    pub fn kind_of(&self, d: &Digest) -> Result<Kind> {
        let mut r = self.open_blob(d)?;
        let mut head = [0u8; manifest::MAGIC.len()];
        let mut got = 0;
        while got < head.len() {
            match r.file.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ArtifactError::io("reading", &r.path)(e)),
            }
        }
        if &head[..got] != manifest::MAGIC {
            return Ok(Kind::File);
        }
        Ok(match self.manifest(d) {
            Ok(_) => Kind::Dir,
            Err(ArtifactError::Corrupt { .. }) => {
                // Only a manifest that reads back whole makes a folder; the blob itself is
                // checked again when it is read.
                Kind::File
            }
            Err(e) => return Err(e),
        })
    }

    /// A folder's manifest, checked against its digest and for safe paths.
    pub fn manifest(&self, d: &Digest) -> Result<Manifest> {
        let mut r = self.open_blob(d)?;
        let mut bytes = Vec::with_capacity(r.len() as usize);
        let path = r.path.clone();
        r.read_to_end(&mut bytes)
            .map_err(|e| ArtifactError::from_read(e, &path))?;
        manifest::parse(d, &bytes)
    }

    /// Puts a copy of the artifact at `dest` (which must not exist; its parent is created): a
    /// file is hard-linked to the blob when both are on one file system (so it is read-only,
    /// like the blob) and copied otherwise; a folder's tree is recreated with its files linked
    /// or copied the same way (executable files are always copied, mode 0555). Every blob is
    /// checked against its digest first; nothing is created when one fails.
    pub fn materialize(&self, d: &Digest, dest: &Path) -> Result<()> {
        let kind = self.kind_of(d)?;
        self.materialize_as(d, kind, dest)
    }

    /// [`ArtifactStore::materialize`] for a digest whose kind is known (from its record).
    pub fn materialize_as(&self, d: &Digest, kind: Kind, dest: &Path) -> Result<()> {
        if fs::symlink_metadata(dest).is_ok() {
            return Err(ArtifactError::DestinationExists(dest.to_path_buf()));
        }
        match kind {
            Kind::File => {
                self.verify(d)?;
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent).map_err(ArtifactError::io("creating", parent))?;
                }
                self.link_or_copy(d, dest, false)
            }
            Kind::Dir => {
                let m = self.manifest(d)?;
                let mut checked = std::collections::HashSet::new();
                for f in &m.files {
                    if checked.insert(&f.digest) {
                        self.verify(&f.digest)?;
                    }
                }
                manifest::recreate(self, &m, dest)
            }
        }
    }

    /// A hard link to the blob (read-only, sharing its inode), or a copy where a link is not
    /// possible (another file system, too many links) or the file must be executable.
    pub(crate) fn link_or_copy(&self, d: &Digest, dest: &Path, executable: bool) -> Result<()> {
        let src = self.blob_path(d);
        if !executable && fs::hard_link(&src, dest).is_ok() {
            return Ok(());
        }
        fs::copy(&src, dest).map_err(ArtifactError::io("copying to", dest))?;
        let mode = if executable { 0o555 } else { READ_ONLY };
        fs::set_permissions(dest, fs::Permissions::from_mode(mode))
            .map_err(ArtifactError::io("setting the mode of", dest))
    }

    /// Removes a blob; returns its bytes (0 when it was not there).
    pub fn remove(&self, d: &Digest) -> Result<u64> {
        let path = self.blob_path(d);
        let size = match fs::symlink_metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(ArtifactError::io("reading", &path)(e)),
        };
        match fs::remove_file(&path) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(ArtifactError::io("removing", &path)(e)),
        }
    }

    /// Every blob on disk: digest, bytes, modification time (ms). Files that are not named
    /// like a blob are skipped.
    pub fn blobs(&self) -> Result<Vec<(Digest, u64, i64)>> {
        let root = self.blob_root();
        let mut out = Vec::new();
        for prefix in fs::read_dir(&root).map_err(ArtifactError::io("listing", &root))? {
            let prefix = prefix.map_err(ArtifactError::io("listing", &root))?;
            let prefix_name = prefix.file_name();
            let Some(prefix_name) = prefix_name.to_str() else {
                continue;
            };
            if !prefix.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let dir = prefix.path();
            for entry in fs::read_dir(&dir).map_err(ArtifactError::io("listing", &dir))? {
                let entry = entry.map_err(ArtifactError::io("listing", &dir))?;
                let name = entry.file_name();
                let Some(digest) = name
                    .to_str()
                    .filter(|n| n.starts_with(prefix_name))
                    .and_then(|n| format!("sha256:{n}").parse::<Digest>().ok())
                else {
                    tracing::debug!(path = %entry.path().display(), "not a blob; left alone");
                    continue;
                };
                let meta = match entry.metadata() {
                    Ok(m) if m.is_file() => m,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(ArtifactError::io("reading", &entry.path())(e)),
                };
                out.push((digest, meta.len(), mtime_ms(&meta)));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes temporary files last written before `cutoff_ms` (a put that died without its
    /// process dying); returns their paths and sizes.
    pub fn remove_temp_older_than(&self, cutoff_ms: i64) -> Result<Vec<(PathBuf, u64)>> {
        self.remove_temp(|_, meta| mtime_ms(meta) < cutoff_ms)
    }

    fn remove_temp(
        &self,
        doomed: impl Fn(&str, &fs::Metadata) -> bool,
    ) -> Result<Vec<(PathBuf, u64)>> {
        let dir = self.tmp_dir();
        let mut removed = Vec::new();
        for entry in fs::read_dir(&dir).map_err(ArtifactError::io("listing", &dir))? {
            let entry = entry.map_err(ArtifactError::io("listing", &dir))?;
            let Ok(meta) = entry.metadata() else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if meta.is_file() && doomed(&name, &meta) {
                match fs::remove_file(entry.path()) {
                    Ok(()) => removed.push((entry.path(), meta.len())),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(ArtifactError::io("removing", &entry.path())(e)),
                }
            }
        }
        Ok(removed)
    }
}

/// Temporary files are named `<pid>.<random>`: a file whose process no longer runs is left
/// over from a crash. Our own process's files may be writes in progress.
fn written_by_live_process(name: &str) -> bool {
    let Some(pid) = name.split('.').next().and_then(|p| p.parse::<i32>().ok()) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    if pid as u32 == std::process::id() {
        return true;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

fn mtime_ms(meta: &fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or_else(now_ms)
}

/// Makes a rename or a new entry in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(ArtifactError::io("syncing", dir))
}

#[derive(Debug)]
enum ReadState {
    Reading,
    Checked,
    Failed(String),
}

/// A blob being read: the bytes pass through unchanged while they are hashed, and the read that
/// reaches the end fails (`InvalidData`) when they do not match the digest.
#[derive(Debug)]
pub struct BlobReader {
    file: File,
    path: PathBuf,
    digest: Digest,
    hasher: Sha256,
    len: u64,
    state: ReadState,
}

impl BlobReader {
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The blob's size on disk when it was opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The error inside the `io::Error` a [`BlobReader`] fails with.
#[derive(Debug, thiserror::Error)]
#[error("{why}")]
pub(crate) struct CorruptBlob {
    pub digest: Digest,
    pub why: String,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.state {
            ReadState::Checked => return Ok(0),
            ReadState::Failed(why) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    CorruptBlob {
                        digest: self.digest.clone(),
                        why: why.clone(),
                    },
                ));
            }
            ReadState::Reading => {}
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.file.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
            return Ok(n);
        }
        let got = Digest::from_sha256(std::mem::take(&mut self.hasher).finalize().into());
        if got == self.digest {
            self.state = ReadState::Checked;
            return Ok(0);
        }
        let why = format!("its content hashes to {got}");
        tracing::error!(digest = %self.digest, path = %self.path.display(), %got, "a blob failed its content check");
        self.state = ReadState::Failed(why);
        self.read(buf)
    }
}

impl ArtifactError {
    /// The error of a failed read from a [`BlobReader`]: `Corrupt` for a content mismatch,
    /// else an IO error on `path`.
    pub fn from_read(e: io::Error, path: &Path) -> ArtifactError {
        if e.kind() == io::ErrorKind::InvalidData
            && let Some(c) = e.get_ref().and_then(|i| i.downcast_ref::<CorruptBlob>())
        {
            return ArtifactError::Corrupt {
                digest: c.digest.clone(),
                why: c.why.clone(),
            };
        }
        ArtifactError::io("reading", path)(e)
    }
}
