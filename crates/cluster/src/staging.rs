//! What a cluster with a shared path (a folder this machine and the cluster's nodes both see at
//! the same path: Slurm's and Ray's always, a Kubernetes cluster's when it has one) holds of an
//! attempt: its folder `<shared>/petri/<job>.<attempt>` with a copy of the working directory (or
//! the directory itself when it is under the shared path already) and its output folder, and the
//! outputs brought back when it ends.

use std::path::{Path, PathBuf};

use petri_domain::{Launch, RunKey};

/// The most a working directory may hold to be copied to the cluster; beyond it, the job's
/// working directory must be under the shared path already.
pub(crate) const MAX_STAGED_BYTES: u64 = 1 << 30;

/// The folder of one attempt on the shared path.
pub(crate) fn attempt_dir(shared: &Path, run: &RunKey) -> PathBuf {
    shared
        .join("petri")
        .join(format!("{}.{}", run.job, run.attempt))
}

/// An attempt's folder on the shared path, ready.
pub(crate) struct Staged {
    /// Where the job runs: the copy of its working directory (or the directory itself).
    pub workdir: PathBuf,
    /// The job's output folder here, which `output/` of the attempt's folder comes back to.
    pub output_dir: Option<PathBuf>,
    /// The launch's environment with every path in the output folder moved to the copy.
    pub env: Vec<(String, String)>,
}

/// Makes the attempt's folder `dir` under `shared` afresh: `output/` (with what the launch
/// prepared in the output folder, a pipeline step's `.outputs`), and `work/`, a copy of the
/// working directory unless it is under the shared path already (at most
/// [`MAX_STAGED_BYTES`]).
pub(crate) fn stage(shared: &Path, dir: &Path, launch: &Launch) -> Result<Staged, String> {
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    if dir.exists() {
        // An earlier try of this very attempt got as far as the folder: start afresh.
        std::fs::remove_dir_all(dir).map_err(|e| io(&dir.display().to_string(), e))?;
    }
    // The parent is passable for the cluster's account, never listable.
    let parent = shared.join("petri");
    std::fs::create_dir_all(&parent)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o711))
        })
        .map_err(|e| io(&format!("cannot create {}", parent.display()), e))?;
    std::fs::create_dir_all(dir.join("output"))
        .map_err(|e| io(&format!("cannot create {}", dir.display()), e))?;
    // The job runs in its working directory when the nodes see it, else in a copy.
    let workdir = if launch.workdir.starts_with(shared) {
        launch.workdir.clone()
    } else {
        let copy = dir.join("work");
        let size = tree_size(&launch.workdir)
            .map_err(|e| io(&format!("reading {}", launch.workdir.display()), e))?;
        if size > MAX_STAGED_BYTES {
            return Err(format!(
                "the working directory {} holds {} MiB, more than the {} MiB Petri copies to a \
                 cluster; put it under the cluster's shared path {}",
                launch.workdir.display(),
                size >> 20,
                MAX_STAGED_BYTES >> 20,
                shared.display()
            ));
        }
        copy_tree(&launch.workdir, &copy)
            .map_err(|e| io(&format!("copying {}", launch.workdir.display()), e))?;
        copy
    };
    let output_dir = launch
        .env
        .iter()
        .find(|(k, _)| k == "PETRI_OUTPUT_DIR")
        .map(|(_, v)| PathBuf::from(v));
    // What the launch prepared in the output folder is there on the cluster too, and every
    // variable naming a path in it names the copy.
    let remote_out = dir.join("output");
    if let Some(out) = &output_dir
        && out.is_dir()
    {
        copy_tree(out, &remote_out).map_err(|e| io("copying the output folder", e))?;
    }
    let env = launch
        .env
        .iter()
        .map(|(k, v)| {
            let moved = output_dir
                .as_ref()
                .and_then(|out| Path::new(v).strip_prefix(out).ok())
                .map(|rest| {
                    if rest.as_os_str().is_empty() {
                        remote_out.display().to_string()
                    } else {
                        remote_out.join(rest).display().to_string()
                    }
                });
            (k.clone(), moved.unwrap_or_else(|| v.clone()))
        })
        .collect();
    Ok(Staged {
        workdir,
        output_dir,
        env,
    })
}

/// Copies the attempt's `output/` back into the job's output folder `out`, handed to the job's
/// owner as the job's own files are on this machine.
pub(crate) fn bring_back(dir: &Path, out: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    copy_tree(&dir.join("output"), out)?;
    if let Some((uid, gid)) = owner {
        chown_tree(
            out,
            nix::unistd::Uid::from_raw(uid),
            nix::unistd::Gid::from_raw(gid),
        );
    }
    Ok(())
}

fn tree_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += tree_size(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Copies a folder's files, folders and links into `to` (made when missing).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            let link = std::fs::read_link(entry.path())?;
            let _ = std::fs::remove_file(&target);
            std::os::unix::fs::symlink(link, &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Gives the attempt's folder to the cluster account when that account exists here and this
/// daemon may (it runs as root); otherwise the daemon's own user is the account.
pub(crate) fn hand_over(dir: &Path, account: &str) {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let Ok(Some(user)) = nix::unistd::User::from_name(account) else {
        return;
    };
    if user.uid.is_root() {
        return;
    }
    chown_tree(dir, user.uid, user.gid);
}

/// Gives the attempt's folder to the job's owner (`uid`, `gid`) when this daemon may (it runs
/// as root): a pod that runs as the owner writes its outputs there.
pub(crate) fn hand_over_to(dir: &Path, (uid, gid): (u32, u32)) {
    chown_tree(
        dir,
        nix::unistd::Uid::from_raw(uid),
        nix::unistd::Gid::from_raw(gid),
    );
}

/// Gives a folder and all it holds to `uid:gid` (links themselves, not what they point to).
fn chown_tree(p: &Path, uid: nix::unistd::Uid, gid: nix::unistd::Gid) {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let _ = nix::unistd::chown(p, Some(uid), Some(gid));
    if let Ok(entries) = std::fs::read_dir(p) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                chown_tree(&e.path(), uid, gid);
            } else {
                let _ = nix::unistd::fchownat(
                    nix::fcntl::AT_FDCWD,
                    &e.path(),
                    Some(uid),
                    Some(gid),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_brought_back_are_handed_to_the_jobs_owner() {
        if !nix::unistd::geteuid().is_root() {
            return; // only a root daemon runs jobs as their owners
        }
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("out/sub")).unwrap();
        std::fs::write(dir.path().join("out/sub/x"), "x").unwrap();
        let (uid, gid) = (
            nix::unistd::Uid::from_raw(65534),
            nix::unistd::Gid::from_raw(65534),
        );
        chown_tree(&dir.path().join("out"), uid, gid);
        for p in ["out", "out/sub", "out/sub/x"] {
            let m = std::fs::metadata(dir.path().join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (65534, 65534), "{p}");
        }
    }

    #[test]
    fn a_tree_is_copied_with_its_folders_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a");
        std::fs::create_dir_all(from.join("sub")).unwrap();
        std::fs::write(from.join("sub/x.txt"), "x").unwrap();
        std::os::unix::fs::symlink("sub/x.txt", from.join("link")).unwrap();
        copy_tree(&from, &dir.path().join("b")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("b/sub/x.txt")).unwrap(),
            "x"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("b/link")).unwrap(),
            "x"
        );
        assert_eq!(tree_size(&from).unwrap(), 1);
    }
}
