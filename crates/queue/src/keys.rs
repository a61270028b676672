//! A secret kept in the home (mode 0600) that service jobs' tokens are derived from, so that no
//! such token is ever stored: a notebook's Jupyter token, a model replica's key.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Derives each service's token from a secret key kept in the home (mode 0600).
pub struct ServiceKeys {
    key: [u8; 32],
}

impl ServiceKeys {
    pub fn load(path: &Path) -> std::io::Result<ServiceKeys> {
        let mut key = [0u8; 32];
        match std::fs::read(path) {
            Ok(bytes) if bytes.len() == 32 => key.copy_from_slice(&bytes),
            _ => {
                rand::fill(&mut key);
                petri_domain::files::write_private(path, &key)?;
            }
        }
        Ok(ServiceKeys { key })
    }

    /// The token of service `id` for `purpose` (`petri-notebook`, `petri-model`): HMAC-SHA256
    /// of `purpose:id`, hex.
    pub fn token(&self, purpose: &str, id: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        mac.update(purpose.as_bytes());
        mac.update(b":");
        mac.update(id.as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ_per_service_and_purpose_and_are_stable() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ServiceKeys::load(&dir.path().join("key")).unwrap();
        let again = ServiceKeys::load(&dir.path().join("key")).unwrap();
        assert_eq!(keys.token("p", "a"), again.token("p", "a"));
        assert_ne!(keys.token("p", "a"), keys.token("p", "b"));
        assert_ne!(keys.token("p", "a"), keys.token("q", "a"));
        assert_eq!(keys.token("p", "a").len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
