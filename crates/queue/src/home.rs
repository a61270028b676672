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
    pub fn prepare(&self) -> std::io::Result<()> {
        fs::create_dir_all(&self.root)?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))?;
        for sub in ["logs", "runs", "outputs"] {
            fs::create_dir_all(self.root.join(sub))?;
        }
        Ok(())
    }
}
