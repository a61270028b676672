//! Encryption at rest: XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`) with a random
//! 24-byte nonce for every write, under one 32-byte key in `<home>/secrets/key` (mode 0600,
//! made at first use). A secret's name, kind and owner are bound to its ciphertext as associated
//! data: a file whose clear metadata was edited (its owner changed, say) no longer decrypts.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::SecretsError;

pub(crate) const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

/// The key secrets are encrypted with.
pub(crate) struct Key {
    cipher: XChaCha20Poly1305,
    path: PathBuf,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("path", &self.path).finish()
    }
}

impl Key {
    /// Reads the key at `path`; with `create`, makes it (and its folder, mode 0700) when there is
    /// none yet. `Ok(None)`: there is none and none was to be made.
    pub fn load(path: &Path, create: bool) -> Result<Option<Key>, SecretsError> {
        let io = |e: std::io::Error| SecretsError::Io(format!("the key {}: {e}", path.display()));
        match fs::read(path) {
            Ok(bytes) => return Key::from_bytes(&bytes, path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        let bytes: [u8; KEY_LEN] = rand::random();
        let made = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match made {
            Ok(mut f) => {
                f.write_all(&bytes).map_err(io)?;
                f.sync_all().map_err(io)?;
                tracing::info!(key = %path.display(), "made the key secrets are encrypted with");
                Key::from_bytes(&bytes, path).map(Some)
            }
            // Made by someone else in the meantime: theirs it is.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Key::from_bytes(&fs::read(path).map_err(io)?, path).map(Some)
            }
            Err(e) => Err(io(e)),
        }
    }

    fn from_bytes(bytes: &[u8], path: &Path) -> Result<Key, SecretsError> {
        if bytes.len() != KEY_LEN {
            return Err(SecretsError::Io(format!(
                "the key {} is damaged: it holds {} bytes instead of {KEY_LEN}; restore it from a \
                 backup (the secrets cannot be read without it), or remove it and every secret \
                 and set them again",
                path.display(),
                bytes.len()
            )));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(bytes)
            .map_err(|e| SecretsError::Io(format!("the key {}: {e}", path.display())))?;
        Ok(Key {
            cipher,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Encrypts `plain` under a fresh random nonce; returns (nonce, ciphertext with its tag).
    pub fn seal(
        &self,
        plain: &[u8],
        aad: &[u8],
    ) -> Result<([u8; NONCE_LEN], Vec<u8>), SecretsError> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
            .map_err(|_| SecretsError::Io("encrypting a secret failed".into()))?;
        Ok((nonce, sealed))
    }

    /// Decrypts; `None` when the key, the nonce, the data or its associated data do not match.
    pub fn open(&self, nonce: &[u8], sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if nonce.len() != NONCE_LEN {
            return None;
        }
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad })
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_private_and_a_damaged_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets/key");
        assert!(Key::load(&path, false).unwrap().is_none());
        let key = Key::load(&path, true).unwrap().unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let (nonce, sealed) = key.seal(b"plain", b"aad").unwrap();
        // The same key read again opens it; other associated data does not.
        let again = Key::load(&path, true).unwrap().unwrap();
        assert_eq!(again.open(&nonce, &sealed, b"aad").unwrap(), b"plain");
        assert!(again.open(&nonce, &sealed, b"other").is_none());
        // Two writes of one value never share a nonce.
        assert_ne!(key.seal(b"plain", b"aad").unwrap().0, nonce);
        fs::write(&path, b"short").unwrap();
        let err = Key::load(&path, true).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
    }
}
