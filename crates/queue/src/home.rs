//! The layout of `PETRI_HOME` and the files the daemon keeps there.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use petri_domain::JobId;

/// Paths inside one Petri home.
#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn db(&self) -> PathBuf {
        self.root.join("petri.db")
    }
    /// Where a running daemon writes its address, so clients of this home find it.
    pub fn address_file(&self) -> PathBuf {
        self.root.join("daemon.addr")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }
    pub fn settings(&self) -> PathBuf {
        self.root.join("petri.toml")
    }
    pub fn log(&self, id: JobId) -> PathBuf {
        self.root.join("logs").join(format!("{id}.log"))
    }
    /// The status file of one attempt (claim, pid, exit code).
    pub fn run_file(&self, id: JobId, attempt: u32) -> PathBuf {
        self.root.join("runs").join(format!("{id}.{attempt}"))
    }
    pub fn output_dir(&self, id: JobId) -> PathBuf {
        self.root.join("outputs").join(id.to_string())
    }
    /// Creates the folders (the home itself private to its owner).
    ///
    /// A home of the system service (the daemon runs as root) is shared: its users' jobs reach
    /// their own output folders and notebook workspaces below it, and the socket is in it. So
    /// the home, `outputs/` and `notebooks/` may be passed through (mode 0711: no listing),
    /// everything else stays the daemon's, and what the daemon creates from then on is private
    /// to it unless handed over (umask 077).
    pub fn prepare(&self) -> std::io::Result<()> {
        fs::create_dir_all(&self.root)?;
        let shared = nix::unistd::geteuid().is_root();
        if shared {
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
        }
        let through = if shared { 0o711 } else { 0o700 };
        fs::set_permissions(&self.root, fs::Permissions::from_mode(through))?;
        for sub in ["logs", "runs", "outputs", "notebooks"] {
            fs::create_dir_all(self.root.join(sub))?;
        }
        if shared {
            for sub in ["outputs", "notebooks"] {
                fs::set_permissions(self.root.join(sub), fs::Permissions::from_mode(0o711))?;
            }
            // Databases written before the umask was set keep their old modes: close them.
            for db in [
                "petri.db",
                "petri.db-wal",
                "petri.db-shm",
                "tracking.db",
                "registry.db",
            ] {
                let path = self.root.join(db);
                if path.exists() {
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
                }
            }
        }
        Ok(())
    }
}
