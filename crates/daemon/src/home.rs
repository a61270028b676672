//! The layout of `PETRI_HOME` and the files the daemon keeps there.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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
    pub fn token(&self) -> PathBuf {
        self.root.join("token")
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
    /// Notebook workspaces (`notebooks/<name>`) unless a notebook was given its own folder.
    pub fn notebooks(&self) -> PathBuf {
        self.root.join("notebooks")
    }
    /// The secret that notebook tokens are derived from (mode 0600).
    pub fn notebook_key(&self) -> PathBuf {
        self.root.join("notebook.key")
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

    /// Reads the owner's API token, creating it (mode 0600) at first start.
    pub fn ensure_token(&self) -> std::io::Result<String> {
        let path = self.token();
        if let Ok(text) = fs::read_to_string(&path) {
            let token = text.trim().to_string();
            if token.len() >= 32 {
                return Ok(token);
            }
        }
        let token = new_token();
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        f.write_all(token.as_bytes())?;
        f.write_all(b"\n")?;
        Ok(token)
    }
}

fn new_token() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    let mut s = String::from("petri_");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}
