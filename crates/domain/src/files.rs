//! Files written so that no reader ever sees half of one (a token, a key, an address).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `bytes` to `path` with mode 0600, atomically: into a fresh file beside it, synced,
/// then renamed over `path`. A client that reads `path` while the daemon starts (the token
/// file, a key) sees the old content or the whole new one, never an empty file.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic(path, bytes, 0o600)
}

/// Writes `bytes` to `path` with `mode`, atomically (see [`write_private`]): the daemon's
/// address file, read by every CLI started beside it.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} names no file", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        uuid::Uuid::now_v7().simple()
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// At most `max` bytes of the file at `path` from `offset`; nothing for a file not there yet.
/// Sized by the file's length first and read with `pread`: one read for a log's new bytes, where
/// a seek and reads into a growing buffer took four system calls. A file with nothing past
/// `offset` (a follower's log that did not grow, a job that wrote nothing) is not opened at all.
pub fn read_at(path: &Path, offset: u64, max: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let want = len.saturating_sub(offset).min(max);
    if want == 0 {
        return Ok(Vec::new());
    }
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        // Removed since (retention): as if it was not there.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut data = vec![0; usize::try_from(want).unwrap_or(usize::MAX)];
    let mut got = 0;
    // A file cut shorter meanwhile ends the read early.
    while got < data.len() {
        match f.read_at(&mut data[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    data.truncate(got);
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn read_at_reads_at_most_max_from_the_offset_and_nothing_of_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.log");
        assert!(read_at(&path, 0, 10).unwrap().is_empty(), "not there yet");
        std::fs::write(&path, b"hello world\n").unwrap();
        assert_eq!(read_at(&path, 0, 5).unwrap(), b"hello");
        assert_eq!(read_at(&path, 6, 100).unwrap(), b"world\n");
        assert!(read_at(&path, 12, 100).unwrap().is_empty(), "at the end");
        assert!(read_at(&path, 50, 100).unwrap().is_empty(), "past the end");
    }

    #[test]
    fn a_private_file_is_whole_owner_only_and_leaves_nothing_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        write_private(&path, b"first\n").unwrap();
        write_private(&path, b"second\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("token");
        assert!(write_private(&path, b"x").is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
