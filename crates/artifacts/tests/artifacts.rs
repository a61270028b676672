//! The artifact store on a real file system and a real SQLite file: what a pipeline step, the
//! step cache and `petri gc` rely on.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use petri_artifacts::{
    ArtifactError, ArtifactStore, Artifacts, Digest, GcPolicy, Kind, parse_digest,
};
use petri_domain::{ErrorBody, ErrorCode};
use petri_store::{ReadPool, Store};

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("artifacts")
    }

    fn blobs(&self) -> ArtifactStore {
        ArtifactStore::open(&self.root()).unwrap()
    }

    fn artifacts(&self) -> Artifacts {
        let db = self.dir.path().join("petri.db");
        let store = Store::open(&db).unwrap();
        let reads = ReadPool::open(&db, 2).unwrap();
        Artifacts::new(self.blobs(), store, reads, GcPolicy::default())
    }

    /// A fresh folder under the home to put things in or materialize into.
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, rel: &str, content: &[u8]) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        p
    }

    fn tmp_files(&self) -> Vec<PathBuf> {
        fs::read_dir(self.root().join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

/// A sample folder: nested files, an executable script, an empty folder.
fn sample_folder(h: &Home, name: &str) -> PathBuf {
    h.write(&format!("{name}/data/train.csv"), b"x,y\n1,2\n");
    h.write(&format!("{name}/data/test.csv"), b"x,y\n3,4\n");
    let script = h.write(&format!("{name}/run.sh"), b"#!/bin/sh\necho hi\n");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all(h.path(&format!("{name}/logs"))).unwrap();
    h.path(name)
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Flips one byte of a blob on disk, as a stray program (or a job writing to a hard link it was
/// given) would.
fn damage(blobs: &ArtifactStore, d: &Digest) {
    let p = blobs
        .root()
        .join("sha256")
        .join(&d.hex()[..2])
        .join(d.hex());
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(&p).unwrap();
    bytes[0] ^= 0x01;
    fs::write(&p, bytes).unwrap();
}

fn read_all(blobs: &ArtifactStore, d: &Digest) -> Result<Vec<u8>, ArtifactError> {
    let mut r = blobs.open_blob(d)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)
        .map_err(|e| ArtifactError::from_read(e, Path::new("blob")))?;
    Ok(out)
}

#[test]
fn files_and_folders_come_back_as_they_were_stored() {
    let h = Home::new();
    let blobs = h.blobs();

    let file = h.write("model.bin", b"weights");
    let stored = blobs.put_path(&file).unwrap();
    assert_eq!((stored.kind, stored.size, stored.files), (Kind::File, 7, 1));
    assert_eq!(
        stored.digest.to_string(),
        // sha256("weights")
        format!("sha256:{}", sha256_hex(b"weights"))
    );
    assert_eq!(read_all(&blobs, &stored.digest).unwrap(), b"weights");
    let out = h.path("inputs/model.bin");
    blobs.materialize(&stored.digest, &out).unwrap();
    assert_eq!(fs::read(&out).unwrap(), b"weights");
    assert_eq!(mode(&out), 0o444, "materialized files are read-only");

    let folder = sample_folder(&h, "out");
    let stored = blobs.put_path(&folder).unwrap();
    assert_eq!((stored.kind, stored.files), (Kind::Dir, 3));
    assert_eq!(stored.size, 8 + 8 + 18);
    assert_eq!(blobs.kind_of(&stored.digest).unwrap(), Kind::Dir);
    let m = blobs.manifest(&stored.digest).unwrap();
    let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["data/test.csv", "data/train.csv", "run.sh"]);
    assert_eq!(m.empty_dirs, ["logs"]);
    assert!(m.files[2].executable && !m.files[0].executable);

    let back = h.path("inputs/out");
    blobs.materialize(&stored.digest, &back).unwrap();
    assert_eq!(
        fs::read(back.join("data/train.csv")).unwrap(),
        b"x,y\n1,2\n"
    );
    assert_eq!(fs::read(back.join("data/test.csv")).unwrap(), b"x,y\n3,4\n");
    assert_eq!(
        fs::read(back.join("run.sh")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(
        mode(&back.join("run.sh")),
        0o555,
        "the executable bit survives"
    );
    assert_eq!(mode(&back.join("data/train.csv")), 0o444);
    assert!(back.join("logs").is_dir(), "empty folders come back");
    let ran = std::process::Command::new(back.join("run.sh"))
        .output()
        .unwrap();
    assert_eq!(ran.stdout, b"hi\n");

    // Where something is already, nothing is overwritten.
    let err = blobs.materialize(&stored.digest, &back).unwrap_err();
    assert!(matches!(err, ArtifactError::DestinationExists(_)), "{err}");

    // Streamed content of any size.
    let big = blobs
        .put_reader(io::repeat(7).take(3 * 1024 * 1024 + 5))
        .unwrap();
    assert_eq!(big.size, 3 * 1024 * 1024 + 5);
    assert_eq!(
        read_all(&blobs, &big.digest).unwrap().len() as u64,
        big.size
    );
    blobs.verify(&big.digest).unwrap();
}

#[test]
fn the_same_content_has_the_same_digest_whatever_its_times_and_is_stored_once() {
    let h = Home::new();
    let blobs = h.blobs();
    let a = sample_folder(&h, "a");
    let b = sample_folder(&h, "b");
    let old = SystemTime::now() - Duration::from_secs(86_400 * 30);
    fs::File::options()
        .write(true)
        .open(b.join("data/train.csv"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let da = blobs.put_path(&a).unwrap().digest;
    let db = blobs.put_path(&b).unwrap().digest;
    assert_eq!(da, db);
    let on_disk = blobs.blobs().unwrap().len();
    assert_eq!(on_disk, 4, "three files and a manifest, once");

    // Renaming a file, or changing its executable bit, makes another folder.
    fs::rename(b.join("data/test.csv"), b.join("data/valid.csv")).unwrap();
    assert_ne!(blobs.put_path(&b).unwrap().digest, da);
    fs::set_permissions(a.join("run.sh"), fs::Permissions::from_mode(0o644)).unwrap();
    assert_ne!(blobs.put_path(&a).unwrap().digest, da);

    let f1 = blobs.put_reader(&b"same"[..]).unwrap();
    let f2 = blobs.put_path(&h.write("same.txt", b"same")).unwrap();
    assert_eq!(f1, f2);
}

#[test]
fn a_damaged_blob_is_refused_when_read_and_when_materialized() {
    let h = Home::new();
    let blobs = h.blobs();
    let file = blobs.put_reader(&b"precious results"[..]).unwrap();
    damage(&blobs, &file.digest);

    let err = read_all(&blobs, &file.digest).unwrap_err();
    assert!(matches!(err, ArtifactError::Corrupt { .. }), "{err}");
    let body = ErrorBody::from(err);
    assert_eq!(body.code, ErrorCode::ArtifactCorrupt);
    assert_eq!(body.code.http_status(), 500);
    assert!(
        body.message.contains(&file.digest.to_string()),
        "{}",
        body.message
    );
    assert!(body.message.contains("not served"), "{}", body.message);
    assert!(matches!(
        blobs.verify(&file.digest),
        Err(ArtifactError::Corrupt { .. })
    ));
    let dest = h.path("inputs/results");
    assert!(matches!(
        blobs.materialize(&file.digest, &dest),
        Err(ArtifactError::Corrupt { .. })
    ));
    assert!(
        !dest.exists(),
        "nothing is materialized from a damaged blob"
    );

    // One damaged file refuses its whole folder.
    let folder = blobs.put_path(&sample_folder(&h, "out")).unwrap();
    let train = blobs
        .manifest(&folder.digest)
        .unwrap()
        .files
        .into_iter()
        .find(|f| f.path == "data/train.csv")
        .unwrap();
    damage(&blobs, &train.digest);
    let dest = h.path("inputs/out");
    assert!(matches!(
        blobs.materialize(&folder.digest, &dest),
        Err(ArtifactError::Corrupt { .. })
    ));
    assert!(!dest.exists());

    // Storing the content again repairs it.
    blobs.put_reader(&b"precious results"[..]).unwrap();
    blobs.verify(&file.digest).unwrap();
}

/// A reader that fails after some bytes, like a network stream that breaks.
struct Breaks(usize);

impl Read for Breaks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::other("connection reset"));
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(1);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn a_write_that_fails_leaves_no_blob_and_leftovers_of_a_crash_go_at_open() {
    let h = Home::new();
    let blobs = h.blobs();
    let err = blobs.put_reader(Breaks(1024 * 1024)).unwrap_err();
    assert!(err.to_string().contains("connection reset"), "{err}");
    assert!(
        blobs.blobs().unwrap().is_empty(),
        "no half blob under any name"
    );
    assert!(
        h.tmp_files().is_empty(),
        "the temporary file went with the error"
    );

    // A crashed writer (a process that no longer runs) left a temporary file; a live one
    // (this process) is writing one now.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let tmp = h.root().join("tmp");
    fs::write(tmp.join(format!("{dead}.half")), b"half a blob").unwrap();
    fs::write(tmp.join("garbage"), b"?").unwrap();
    let live = tmp.join(format!("{}.writing", std::process::id()));
    fs::write(&live, b"in progress").unwrap();
    let _reopened = h.blobs();
    assert_eq!(h.tmp_files(), vec![live.clone()]);

    // The collector removes temporary files untouched for the grace period.
    let removed = blobs.remove_temp_older_than(i64::MAX).unwrap();
    assert_eq!(removed.len(), 1);
    assert!(h.tmp_files().is_empty());
}

#[test]
fn digests_and_manifests_that_try_to_escape_are_refused() {
    let h = Home::new();
    let blobs = h.blobs();
    for bad in [
        "sha256:../../etc",
        "sha256:../../etc/passwd",
        "../../etc/passwd",
        "sha256:",
        "sha256:/etc/passwd",
    ] {
        let err = parse_digest(bad).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidDigest, "{bad}");
        assert_eq!(err.code().http_status(), 400);
    }
    let missing = Digest::from_sha256([7; 32]);
    let err = blobs.open_blob(&missing).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ArtifactNotFound);
    assert!(!blobs.contains(&missing));

    // A manifest that names a path outside its folder is refused before anything is written.
    let payload = blobs.put_reader(&b"owned"[..]).unwrap();
    let evil = format!(
        r#"{{"petri_manifest":1,"files":[{{"path":"../escaped","digest":"{}","size":5,"executable":false}}]}}"#,
        payload.digest
    );
    let evil = blobs.put_reader(evil.as_bytes()).unwrap();
    let dest = h.path("inputs/evil");
    let err = blobs
        .materialize_as(&evil.digest, Kind::Dir, &dest)
        .unwrap_err();
    assert!(matches!(err, ArtifactError::Corrupt { .. }), "{err}");
    assert!(!h.path("inputs/escaped").exists() && !dest.exists());
    // Sniffed from its content alone, it is no folder: it comes back as the file it was put as.
    assert_eq!(blobs.kind_of(&evil.digest).unwrap(), Kind::File);

    // Links are refused: they could point anywhere once materialized.
    let folder = sample_folder(&h, "linked");
    std::os::unix::fs::symlink("/etc/passwd", folder.join("passwd")).unwrap();
    let err = blobs.put_path(&folder).unwrap_err();
    assert!(matches!(err, ArtifactError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("symbolic link"), "{err}");
}

fn policy(grace_ms: i64, max_size: u64) -> GcPolicy {
    GcPolicy {
        grace_ms,
        max_size,
        max_age_ms: 90 * 86_400_000,
    }
}

fn on_disk(a: &Artifacts) -> Vec<Digest> {
    a.blobs()
        .blobs()
        .unwrap()
        .into_iter()
        .map(|(d, _, _)| d)
        .collect()
}

/// Lets the clock move on, so the next write has a later time than the last.
fn tick() {
    std::thread::sleep(Duration::from_millis(3));
}

#[test]
fn gc_keeps_what_is_held_and_removes_what_nothing_holds_after_the_grace() {
    let h = Home::new();
    let a = h.artifacts();
    let kept = a
        .put_path(&h.write("keep.txt", b"keep"), "pipeline:r1/train/model")
        .unwrap();
    let dropped = a
        .put_path(&h.write("drop.txt", b"drop"), "pipeline:r2/train/model")
        .unwrap();
    let folder = a
        .put_path(&sample_folder(&h, "out"), "pipeline:r2/split/data")
        .unwrap();
    // A blob written just before a crash: on disk, never recorded.
    let orphan = a.blobs().put_reader(&b"orphan"[..]).unwrap();
    assert_eq!(on_disk(&a).len(), 7);
    let usage = a.usage().unwrap();
    assert_eq!(
        usage.referenced.count, 6,
        "three files held by their folder"
    );
    assert_eq!(usage.unreferenced.count, 0);

    assert_eq!(a.release_prefix("pipeline:r2/").unwrap(), 2);
    assert_eq!(a.usage().unwrap().unreferenced.count, 2);

    // Within the grace period nothing goes: it may be a write not yet referenced.
    let report = a.gc(&policy(3_600_000, u64::MAX), false).unwrap();
    assert!(report.removed.is_empty(), "{report:?}");
    assert_eq!(on_disk(&a).len(), 7);

    // A dry run says what would go and changes nothing.
    let dry = a.gc(&policy(0, u64::MAX), true).unwrap();
    assert!(dry.dry_run);
    let mut would: Vec<Digest> = dry.removed.iter().map(|r| r.digest.clone()).collect();
    assert_eq!(would.len(), 6, "{dry:?}");
    assert!(would.contains(&dropped.digest) && would.contains(&folder.digest));
    assert!(would.contains(&orphan.digest));
    assert!(!would.contains(&kept.digest));
    assert_eq!(on_disk(&a).len(), 7);
    assert_eq!(a.usage().unwrap().unreferenced.count, 2);

    let done = a.gc(&policy(0, u64::MAX), false).unwrap();
    let mut removed: Vec<Digest> = done.removed.iter().map(|r| r.digest.clone()).collect();
    removed.sort();
    would.sort();
    assert_eq!(removed, would, "the collection does what the dry run said");
    assert_eq!(done.freed_bytes, dry.freed_bytes);
    assert_eq!(on_disk(&a), vec![kept.digest.clone()]);
    let usage = a.usage().unwrap();
    assert_eq!((usage.referenced.count, usage.unreferenced.count), (1, 0));
    let out = h.path("inputs/keep.txt");
    a.materialize(&kept.digest, &out).unwrap();
    assert_eq!(fs::read(out).unwrap(), b"keep");
    assert_eq!(
        a.materialize(&dropped.digest, &h.path("inputs/drop"))
            .unwrap_err()
            .code(),
        ErrorCode::ArtifactNotFound
    );
}

#[test]
fn a_file_shared_with_a_kept_folder_stays_when_another_folder_goes() {
    let h = Home::new();
    let a = h.artifacts();
    let one = sample_folder(&h, "one");
    let two = sample_folder(&h, "two");
    fs::write(two.join("extra.txt"), b"only in two").unwrap();
    let one = a.put_path(&one, "model:iris/1").unwrap();
    let two = a.put_path(&two, "pipeline:r/s/o").unwrap();
    a.release("pipeline:r/s/o").unwrap();
    let report = a.gc(&policy(0, u64::MAX), false).unwrap();
    let removed: Vec<&Digest> = report.removed.iter().map(|r| &r.digest).collect();
    assert_eq!(
        removed.len(),
        2,
        "the second folder and its own file: {report:?}"
    );
    assert!(removed.contains(&&two.digest));
    let back = h.path("inputs/one");
    a.materialize(&one.digest, &back).unwrap();
    assert_eq!(
        fs::read(back.join("data/train.csv")).unwrap(),
        b"x,y\n1,2\n"
    );
}

#[test]
fn gc_drops_cache_entries_oldest_used_first_when_the_store_is_over_its_size() {
    let h = Home::new();
    let a = h.artifacts();
    let kb = |n: u8| vec![n; 1000];
    let oldest = a.put_reader(&kb(1)[..], "cache:oldest").unwrap();
    tick();
    let middle = a.put_reader(&kb(2)[..], "cache:middle").unwrap();
    tick();
    let newest = a.put_reader(&kb(3)[..], "cache:newest").unwrap();
    tick();
    let run = a.put_reader(&kb(4)[..], "pipeline:r/s/o").unwrap();
    tick();
    // Using the oldest entry makes it the most recently used.
    a.open(&oldest.digest).unwrap();

    // 4000 bytes, at most 2500: two cache entries go, the least recently used first, and the
    // run's output is never dropped to make room.
    let dry = a.gc(&policy(0, 2500), true).unwrap();
    assert_eq!(dry.dropped_holders, vec!["cache:middle", "cache:newest"]);
    assert_eq!(a.holders(&middle.digest).unwrap(), vec!["cache:middle"]);
    let report = a.gc(&policy(0, 2500), false).unwrap();
    assert_eq!(report.dropped_holders, dry.dropped_holders);
    assert_eq!(report.freed_bytes, 2000);
    assert_eq!(report.kept.bytes, 2000);
    let mut left = on_disk(&a);
    left.sort();
    let mut want = vec![oldest.digest, run.digest];
    want.sort();
    assert_eq!(left, want);
    assert!(a.holders(&newest.digest).unwrap().is_empty());

    // Even with no room at all, only cache entries are dropped.
    let report = a.gc(&policy(0, 0), false).unwrap();
    assert_eq!(report.dropped_holders, vec!["cache:oldest"]);
    assert_eq!(on_disk(&a).len(), 1);
}

#[test]
fn references_need_the_blob_and_holders_are_checked() {
    let h = Home::new();
    let a = h.artifacts();
    let missing = Digest::from_sha256([9; 32]);
    assert_eq!(
        a.reference(&missing, "cache:k").unwrap_err().code(),
        ErrorCode::ArtifactNotFound
    );
    // A blob stored without a record (by the store alone) is recorded when referenced.
    let folder = a.blobs().put_path(&sample_folder(&h, "out")).unwrap();
    a.reference(&folder.digest, "cache:k").unwrap();
    a.reference(&folder.digest, "pipeline:r/s/o").unwrap();
    assert_eq!(a.usage().unwrap().referenced.count, 4);
    let mut holders = a.holders(&folder.digest).unwrap();
    holders.sort();
    assert_eq!(holders, ["cache:k", "pipeline:r/s/o"]);
    for bad in ["", "artifact:sha256:00", "cache:\nk"] {
        assert!(matches!(
            a.reference(&folder.digest, bad),
            Err(ArtifactError::InvalidHolder { .. })
        ));
    }
    assert!(
        a.release_prefix("").is_err(),
        "an empty prefix would release everything"
    );
    // A prefix never releases a folder's hold on its files.
    assert_eq!(a.release_prefix("a").unwrap(), 0);
    assert_eq!(a.release("cache:k").unwrap(), 1);
    assert_eq!(a.release("cache:k").unwrap(), 0);
    let report = a.gc(&policy(0, u64::MAX), false).unwrap();
    assert!(
        report.removed.is_empty(),
        "the run still holds it: {report:?}"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(bytes);
    h.iter().map(|b| format!("{b:02x}")).collect()
}
