//! Folders: walked into a manifest when stored, checked and recreated when materialized.

use std::collections::HashSet;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use petri_domain::artifact::{Digest, Kind, MANIFEST_VERSION, Manifest, ManifestFile};

use crate::ArtifactError;
use crate::blobs::{ArtifactStore, Stored};

type Result<T, E = ArtifactError> = std::result::Result<T, E>;

/// How every manifest's JSON starts (serde writes the fields in declaration order).
pub(crate) const MAGIC: &[u8] = b"{\"petri_manifest\":";

pub(crate) fn symlink_refused(path: &Path) -> ArtifactError {
    ArtifactError::Unsupported {
        path: path.to_path_buf(),
        why: "is a symbolic link; the artifact store keeps no links (they could point outside \
              the folder): copy what it points to into the folder instead"
            .into(),
    }
}

pub(crate) fn special_refused(path: &Path) -> ArtifactError {
    ArtifactError::Unsupported {
        path: path.to_path_buf(),
        why: "is not a regular file or folder (a socket, a pipe or a device); the artifact \
              store keeps only files and folders"
            .into(),
    }
}

/// Stores a folder: each file as a blob, then the manifest. Nothing is recorded about a folder
/// that is refused half-way; its blobs already written are collected later like any blob that
/// nothing holds.
pub(crate) fn put_dir(store: &ArtifactStore, root: &Path) -> Result<Stored> {
    let mut files = Vec::new();
    let mut empty_dirs = Vec::new();
    let mut total = 0u64;
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut entries = 0usize;
        for entry in fs::read_dir(&dir).map_err(ArtifactError::io("listing", &dir))? {
            entries += 1;
            let entry = entry.map_err(ArtifactError::io("listing", &dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return Err(ArtifactError::Unsupported {
                    path,
                    why: "has a name that is not UTF-8, which a manifest cannot hold; rename it"
                        .into(),
                });
            };
            let child = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let ft = entry
                .file_type()
                .map_err(ArtifactError::io("reading", &path))?;
            if ft.is_symlink() {
                return Err(symlink_refused(&path));
            } else if ft.is_dir() {
                stack.push((path, child));
            } else if ft.is_file() {
                let file = File::open(&path).map_err(ArtifactError::io("opening", &path))?;
                let mode = file
                    .metadata()
                    .map_err(ArtifactError::io("reading", &path))?
                    .permissions()
                    .mode();
                let (digest, size) = store.write_blob(file, &path)?;
                total += size;
                files.push(ManifestFile {
                    path: child,
                    digest,
                    size,
                    executable: mode & 0o111 != 0,
                });
            } else {
                return Err(special_refused(&path));
            }
        }
        if entries == 0 && !rel.is_empty() {
            empty_dirs.push(rel);
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    empty_dirs.sort();
    let count = files.len() as u64;
    let manifest = Manifest {
        petri_manifest: MANIFEST_VERSION,
        files,
        empty_dirs,
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| ArtifactError::Unsupported {
        path: root.to_path_buf(),
        why: format!("its manifest could not be written: {e}"),
    })?;
    debug_assert!(bytes.starts_with(MAGIC));
    let (digest, _) = store.write_blob(&bytes[..], root)?;
    Ok(Stored {
        digest,
        size: total,
        kind: Kind::Dir,
        files: count,
    })
}

/// Parses a manifest blob and checks that every path stays inside the folder.
pub(crate) fn parse(d: &Digest, bytes: &[u8]) -> Result<Manifest> {
    let bad = |why: String| ArtifactError::Corrupt {
        digest: d.clone(),
        why,
    };
    let m: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("it is not a folder manifest: {e}")))?;
    if m.petri_manifest != MANIFEST_VERSION {
        return Err(bad(format!(
            "its manifest has version {}, which this Petri does not know",
            m.petri_manifest
        )));
    }
    let mut seen = HashSet::new();
    for p in m.files.iter().map(|f| &f.path).chain(m.empty_dirs.iter()) {
        if !safe_relative(p) {
            return Err(bad(format!("its manifest names the unsafe path `{p}`")));
        }
        if !seen.insert(p.as_str()) {
            return Err(bad(format!("its manifest names `{p}` twice")));
        }
    }
    Ok(m)
}

/// A relative path of plain names: no leading `/`, no empty, `.` or `..` parts, no NUL.
fn safe_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.contains('\0')
        && p.split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// Recreates a checked manifest's tree at `dest` (which must not exist). On failure what was
/// created is removed again.
pub(crate) fn recreate(store: &ArtifactStore, m: &Manifest, dest: &Path) -> Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(ArtifactError::io("creating", parent))?;
    }
    match fs::create_dir(dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ArtifactError::DestinationExists(dest.to_path_buf()));
        }
        Err(e) => return Err(ArtifactError::io("creating", dest)(e)),
    }
    let made = (|| {
        for dir in &m.empty_dirs {
            let p = dest.join(dir);
            fs::create_dir_all(&p).map_err(ArtifactError::io("creating", &p))?;
        }
        for f in &m.files {
            let p = dest.join(&f.path);
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).map_err(ArtifactError::io("creating", parent))?;
            }
            store.link_or_copy(&f.digest, &p, f.executable)?;
        }
        Ok(())
    })();
    if made.is_err() {
        let _ = fs::remove_dir_all(dest);
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_that_leave_their_folder_are_refused() {
        for p in ["a/b", "a", "a.b/c..d"] {
            assert!(safe_relative(p), "{p}");
        }
        for p in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "a\0b",
        ] {
            assert!(!safe_relative(p), "{p:?}");
        }
        let d = Digest::from_sha256([1; 32]);
        let json = format!(
            r#"{{"petri_manifest":1,"files":[{{"path":"../../etc/x","digest":"{d}","size":1,"executable":false}}]}}"#
        );
        let err = parse(&d, json.as_bytes()).unwrap_err();
        assert!(matches!(err, ArtifactError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("unsafe path"), "{err}");
    }
}
