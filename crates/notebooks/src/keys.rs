//! The secret that notebook tokens are derived from, kept in the home (mode 0600), so that a
//! notebook's Jupyter token is never stored.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Derives each notebook's Jupyter token from a secret key kept in the home (mode 0600).
pub struct NotebookKeys {
    key: [u8; 32],
}

impl NotebookKeys {
    pub fn load(path: &Path) -> std::io::Result<NotebookKeys> {
        let mut key = [0u8; 32];
        match std::fs::read(path) {
            Ok(bytes) if bytes.len() == 32 => key.copy_from_slice(&bytes),
            _ => {
                rand::fill(&mut key);
                write_private(path, &key)?;
            }
        }
        Ok(NotebookKeys { key })
    }

    /// The Jupyter token of notebook `id`.
    pub fn token(&self, id: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"petri-notebook:");
        mac.update(id.as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ_per_notebook_and_are_stable() {
        let dir = tempfile::tempdir().unwrap();
        let keys = NotebookKeys::load(&dir.path().join("key")).unwrap();
        let again = NotebookKeys::load(&dir.path().join("key")).unwrap();
        assert_eq!(keys.token("a"), again.token("a"));
        assert_ne!(keys.token("a"), keys.token("b"));
        assert_eq!(keys.token("a").len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
