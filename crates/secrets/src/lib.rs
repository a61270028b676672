//! Secrets: API keys and config files that jobs need, which must never be stored in a job, an
//! event, an API answer or a log.
//!
//! - **At rest**: one file per secret, `<home>/secrets/<name>.secret` (mode 0600, in a folder of
//!   mode 0700): its name, kind, owner and times in clear, its value encrypted with
//!   XChaCha20-Poly1305 under the key `<home>/secrets/key` (32 random bytes, mode 0600, made at
//!   first use) with a fresh random nonce for every write (`crypto.rs`).
//! - **At submit**: the queue's admission hook refuses a job that names a secret that does not
//!   exist (`SECRET_NOT_FOUND`) or is not the submitter's (`FORBIDDEN`); nothing is queued. The
//!   job stores only the names.
//! - **At launch** (`hooks.rs`): a value becomes an environment variable; a file is written to
//!   `<home>/run/secrets/<job id>/<name>` (mode 0600), its path in a variable, and the folder is
//!   mounted read-only at the same path into a container. The folder goes when the attempt ends,
//!   and at the next start for attempts that ended while no daemon ran. The value, and each line
//!   of more than 3 characters, is handed to the executor to mask in the output.
//!
//! Today every caller acts for the single user; who may replace or remove a secret (its owner or
//! an admin) and whose jobs may use it (its owner's) is checked against the user all the same.

mod crypto;
mod hooks;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use petri_domain::secret::{MAX_SECRET_BYTES, SECRET_NAME_RULE, is_secret_name};
use petri_domain::{ErrorBody, ErrorCode, SecretInfo, SecretKind, SecretRequest};
use serde::{Deserialize, Serialize};

use crate::crypto::Key;

/// Why a secret could not be set, found, used or removed.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// Refused input or access; the body says why and what to do.
    #[error("{0}")]
    Refused(ErrorBody),
    /// A stored secret cannot be decrypted: the key is not the one it was written with, or the
    /// file was changed.
    #[error(
        "the secret `{name}` cannot be decrypted with the key {}: the key was replaced, or \
         the secret's file was changed; restore the key, or set the secret again",
        key.display()
    )]
    Undecryptable { name: String, key: PathBuf },
    #[error("{0}")]
    Io(String),
}

impl From<SecretsError> for ErrorBody {
    fn from(e: SecretsError) -> Self {
        match e {
            SecretsError::Refused(body) => body,
            other => ErrorBody::new(ErrorCode::Internal, other.to_string()),
        }
    }
}

fn refused(code: ErrorCode, message: impl Into<String>) -> SecretsError {
    SecretsError::Refused(ErrorBody::new(code, message))
}

fn not_found(name: &str) -> SecretsError {
    SecretsError::Refused(
        ErrorBody::new(
            ErrorCode::SecretNotFound,
            format!("no secret `{name}`: set it with `petri secret set {name}`"),
        )
        .with_details(serde_json::json!({ "secret": name })),
    )
}

/// A secret's value. Its `Debug` says how long it is, never what it is.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> SecretValue {
        SecretValue(bytes)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue(<{} bytes, hidden>)", self.0.len())
    }
}

/// One secret as stored: the metadata in clear, the value sealed.
#[derive(Serialize, Deserialize)]
struct StoredSecret {
    version: u32,
    name: String,
    kind: SecretKind,
    owner: String,
    created_at_ms: i64,
    updated_at_ms: i64,
    /// Base64.
    nonce: String,
    /// Base64 of the ciphertext and its tag.
    sealed: String,
}

/// The version of [`StoredSecret`] this code writes.
const VERSION: u32 = 1;

impl StoredSecret {
    fn info(&self) -> SecretInfo {
        SecretInfo {
            name: self.name.clone(),
            kind: self.kind,
            owner: self.owner.clone(),
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        }
    }
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSecret")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// What is bound to a value's ciphertext: a change to any of it makes the value unreadable.
fn associated_data(name: &str, kind: SecretKind, owner: &str) -> Vec<u8> {
    format!(
        "petri-secret\0{VERSION}\0{name}\0{}\0{owner}",
        kind.as_str()
    )
    .into_bytes()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The secrets of one home; cheap to clone. Names and metadata are kept in memory (the
/// admission check answers from there); values are read and decrypted only to launch a job.
#[derive(Clone)]
pub struct Secrets {
    inner: Arc<Inner>,
}

struct Inner {
    /// `<home>/secrets`.
    dir: PathBuf,
    /// `<home>/run/secrets`: the files of running jobs.
    run_dir: PathBuf,
    key: Mutex<Option<Arc<Key>>>,
    index: RwLock<BTreeMap<String, SecretInfo>>,
    /// One writer at a time.
    writing: Mutex<()>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl Secrets {
    /// Opens the secrets of the home at `home` (reading their names; nothing is made until the
    /// first secret is set).
    pub fn open(home: &Path) -> Result<Secrets, SecretsError> {
        let dir = home.join("secrets");
        let mut index = BTreeMap::new();
        match fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().and_then(|e| e.to_str()) != Some("secret") {
                        continue;
                    }
                    match read_stored(&path) {
                        Ok(s) => {
                            index.insert(s.name.clone(), s.info());
                        }
                        Err(e) => tracing::warn!(file = %path.display(), "skipping a secret: {e}"),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SecretsError::Io(format!("reading {}: {e}", dir.display()))),
        }
        Ok(Secrets {
            inner: Arc::new(Inner {
                run_dir: home.join("run").join("secrets"),
                dir,
                key: Mutex::new(None),
                index: RwLock::new(index),
                writing: Mutex::new(()),
            }),
        })
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.inner.dir.join(format!("{name}.secret"))
    }

    /// The key, read (or, with `create`, made) at first use.
    fn key(&self, create: bool) -> Result<Option<Arc<Key>>, SecretsError> {
        let mut slot = self
            .inner
            .key
            .lock()
            .map_err(|_| SecretsError::Io("the secrets' key lock is poisoned".into()))?;
        if slot.is_none() {
            *slot = Key::load(&self.inner.dir.join("key"), create)?.map(Arc::new);
        }
        Ok(slot.clone())
    }

    /// Encrypts a credential another capability keeps (a cluster's token) under the home's
    /// secrets key; `label` (what it is, whose it is) is bound to it, so a sealed value moved to
    /// another label no longer opens. The answer is text, safe to store anywhere.
    pub fn seal(&self, label: &str, plain: &[u8]) -> Result<String, SecretsError> {
        let key = self
            .key(true)?
            .ok_or_else(|| SecretsError::Io("the secrets key could not be made".into()))?;
        let (nonce, sealed) = key.seal(plain, label.as_bytes())?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(BASE64.encode(bytes))
    }

    /// Opens what [`Secrets::seal`] made for `label`; an error when it was made for another
    /// label, under another key, or damaged.
    pub fn unseal(&self, label: &str, text: &str) -> Result<Vec<u8>, SecretsError> {
        let damaged = || SecretsError::Io(format!("the sealed value of {label} does not open"));
        let bytes = BASE64.decode(text.trim()).map_err(|_| damaged())?;
        let key = self.key(false)?.ok_or_else(damaged)?;
        if bytes.len() < crypto::NONCE_LEN {
            return Err(damaged());
        }
        let (nonce, sealed) = bytes.split_at(crypto::NONCE_LEN);
        key.open(nonce, sealed, label.as_bytes())
            .ok_or_else(damaged)
    }

    /// A secret's metadata.
    pub fn info(&self, name: &str) -> Option<SecretInfo> {
        self.inner.index.read().ok()?.get(name).cloned()
    }

    /// The secrets `user` may see (an admin sees every one), by name.
    pub fn list(&self, user: &str, admin: bool) -> Vec<SecretInfo> {
        self.inner
            .index
            .read()
            .map(|index| {
                index
                    .values()
                    .filter(|s| admin || s.owner == user)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sets a secret from the API's request (a file's bytes in base64). Returns it and whether
    /// it is new.
    pub fn put(
        &self,
        name: &str,
        req: SecretRequest,
        user: &str,
        admin: bool,
    ) -> Result<(SecretInfo, bool), SecretsError> {
        let bytes = match req.kind {
            SecretKind::Value => req.value.into_bytes(),
            SecretKind::File => BASE64.decode(req.value.trim()).map_err(|e| {
                refused(
                    ErrorCode::InvalidSecret,
                    format!("a file secret's value is its bytes in base64, and this is not: {e}"),
                )
            })?,
        };
        self.set(name, req.kind, SecretValue::new(bytes), user, admin)
    }

    /// Sets (or replaces) a secret for `user`. Replacing is for its owner or an admin; it keeps
    /// its owner. Returns it and whether it is new.
    pub fn set(
        &self,
        name: &str,
        kind: SecretKind,
        value: SecretValue,
        user: &str,
        admin: bool,
    ) -> Result<(SecretInfo, bool), SecretsError> {
        check_name(name)?;
        check_value(name, kind, value.as_bytes())?;
        let _writing = self
            .inner
            .writing
            .lock()
            .map_err(|_| SecretsError::Io("the secrets' writer is poisoned".into()))?;
        let before = self.info(name);
        if let Some(old) = &before {
            may_change(old, user, admin)?;
        }
        let key = self
            .key(true)?
            .ok_or_else(|| SecretsError::Io("the key was not made".into()))?;
        let now = now_ms();
        let owner = before
            .as_ref()
            .map_or(user, |b| b.owner.as_str())
            .to_string();
        let (nonce, sealed) = key.seal(value.as_bytes(), &associated_data(name, kind, &owner))?;
        let stored = StoredSecret {
            version: VERSION,
            name: name.to_string(),
            kind,
            owner,
            created_at_ms: before.as_ref().map_or(now, |b| b.created_at_ms),
            updated_at_ms: now,
            nonce: BASE64.encode(nonce),
            sealed: BASE64.encode(sealed),
        };
        write_stored(&self.inner.dir, &self.path_of(name), &stored)?;
        let info = stored.info();
        if let Ok(mut index) = self.inner.index.write() {
            index.insert(name.to_string(), info.clone());
        }
        tracing::info!(secret = name, kind = %kind, user, "secret set");
        Ok((info, before.is_none()))
    }

    /// Removes a secret (its owner or an admin). Jobs that name it are refused from now on, and
    /// those already queued fail at launch.
    pub fn remove(&self, name: &str, user: &str, admin: bool) -> Result<SecretInfo, SecretsError> {
        let _writing = self
            .inner
            .writing
            .lock()
            .map_err(|_| SecretsError::Io("the secrets' writer is poisoned".into()))?;
        let info = self.info(name).ok_or_else(|| not_found(name))?;
        may_change(&info, user, admin)?;
        let path = self.path_of(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(SecretsError::Io(format!(
                    "removing {}: {e}",
                    path.display()
                )));
            }
        }
        if let Ok(mut index) = self.inner.index.write() {
            index.remove(name);
        }
        tracing::info!(secret = name, user, "secret removed");
        Ok(info)
    }

    /// A secret with its value, decrypted: for launching a job, and nothing else.
    pub(crate) fn reveal(&self, name: &str) -> Result<(SecretInfo, SecretValue), SecretsError> {
        if self.info(name).is_none() {
            return Err(not_found(name));
        }
        let stored = read_stored(&self.path_of(name)).map_err(|e| match e {
            ReadError::Missing => not_found(name),
            ReadError::Other(message) => SecretsError::Io(message),
        })?;
        let key = self.key(false)?.ok_or_else(|| {
            SecretsError::Io(format!(
                "the key {} is missing, so no secret can be decrypted; restore it from a backup",
                self.inner.dir.join("key").display()
            ))
        })?;
        let undecryptable = || SecretsError::Undecryptable {
            name: name.to_string(),
            key: key.path().to_path_buf(),
        };
        let nonce = BASE64.decode(&stored.nonce).map_err(|_| undecryptable())?;
        let sealed = BASE64.decode(&stored.sealed).map_err(|_| undecryptable())?;
        let aad = associated_data(&stored.name, stored.kind, &stored.owner);
        let plain = key.open(&nonce, &sealed, &aad).ok_or_else(undecryptable)?;
        Ok((stored.info(), SecretValue::new(plain)))
    }

    /// Where the files of a running job's secrets are written.
    pub fn run_dir(&self, job: petri_domain::JobId) -> PathBuf {
        self.inner.run_dir.join(job.to_string())
    }
}

fn check_name(name: &str) -> Result<(), SecretsError> {
    if is_secret_name(name) {
        return Ok(());
    }
    Err(SecretsError::Refused(
        ErrorBody::new(
            ErrorCode::InvalidSecret,
            format!("`{name}` is not a secret name: {SECRET_NAME_RULE}"),
        )
        .with_details(serde_json::json!({ "field": "name" })),
    ))
}

fn check_value(name: &str, kind: SecretKind, value: &[u8]) -> Result<(), SecretsError> {
    let invalid = |message: String| {
        Err(SecretsError::Refused(
            ErrorBody::new(ErrorCode::InvalidSecret, message)
                .with_details(serde_json::json!({ "field": "value" })),
        ))
    };
    if value.is_empty() {
        return invalid(format!("the secret `{name}` is empty; give it a value"));
    }
    if value.len() > MAX_SECRET_BYTES {
        return invalid(format!(
            "the secret `{name}` is {} bytes; at most {MAX_SECRET_BYTES} (1 MiB)",
            value.len()
        ));
    }
    if kind == SecretKind::Value && (std::str::from_utf8(value).is_err() || value.contains(&0)) {
        return invalid(format!(
            "the value of `{name}` goes into an environment variable, so it must be text \
             without NUL bytes; set binary data as a file (`petri secret set {name} --file F`)"
        ));
    }
    Ok(())
}

/// Replacing or removing a secret is for its owner or an admin.
fn may_change(info: &SecretInfo, user: &str, admin: bool) -> Result<(), SecretsError> {
    if admin || info.owner == user {
        return Ok(());
    }
    Err(refused(
        ErrorCode::Forbidden,
        format!(
            "the secret `{}` belongs to {}; only they or an admin may change it",
            info.name, info.owner
        ),
    ))
}

enum ReadError {
    Missing,
    Other(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Missing => f.write_str("the file is gone"),
            ReadError::Other(m) => f.write_str(m),
        }
    }
}

fn read_stored(path: &Path) -> Result<StoredSecret, ReadError> {
    let text = fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ReadError::Missing
        } else {
            ReadError::Other(format!("reading {}: {e}", path.display()))
        }
    })?;
    let stored: StoredSecret = serde_json::from_str(&text)
        .map_err(|e| ReadError::Other(format!("{} does not parse: {e}", path.display())))?;
    if stored.version > VERSION {
        return Err(ReadError::Other(format!(
            "{} was written by a newer Petri (version {})",
            path.display(),
            stored.version
        )));
    }
    Ok(stored)
}

/// Writes a secret's file whole or not at all: a private temporary file, synced, renamed.
fn write_stored(dir: &Path, path: &Path, stored: &StoredSecret) -> Result<(), SecretsError> {
    let io = |e: std::io::Error| SecretsError::Io(format!("writing {}: {e}", path.display()));
    fs::create_dir_all(dir).map_err(io)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
    let text = serde_json::to_string(stored).map_err(|e| SecretsError::Io(e.to_string()))?;
    petri_domain::files::write_private(path, text.as_bytes()).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests;
