//! Who is calling, and what they may do.
//!
//! - The **owner**: the Unix user the daemon runs as, whose token is the file `token` in the home
//!   (mode 0600, created at first start). It may do everything.
//! - **API tokens**: created with a name, scopes and an optional expiry (`petri token create`);
//!   only a SHA-256 of each secret is stored, and the secret is shown once. A revoked, expired or
//!   unknown token is refused (401); a token without the scope an action needs is refused (403,
//!   naming the scope).
//! - **Job tokens**: what a job needs to call back (the tracking API) is derived by HMAC from a
//!   key in the home and the job's id, so it is never stored, neither in the database nor in the
//!   job's spec.
//!
//! Every route is decided by one function, [`authorize`], from the [`Caller`] (a value the API's
//! extractor yields, never a side effect) and the action. Team mode fills in roles and users; today
//! every caller acts for the owner.

mod tokens;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use petri_domain::{ErrorBody, ErrorCode, JobId};
use petri_store::{ReadPool, Store, StoreError};

pub use petri_domain::token::{NewToken, Scope, TokenInfo, TokenRequest};

/// How the caller proved who they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// The owner's token file.
    Owner,
    /// An API token (its id and name).
    Token { id: String, name: String },
    /// A token derived for one job.
    Job(JobId),
}

/// Who is calling: the user they act for, how they proved it, and what they may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub credential: Credential,
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// The owner, with every scope (the desktop window, the CLI on the owner's account).
    pub fn owner(user: &str) -> Caller {
        Caller {
            user: user.to_string(),
            credential: Credential::Owner,
            scopes: vec![Scope::Admin],
        }
    }
}

/// What a route does, for [`authorize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Look at something (the queue, a job, a log, GPUs, notebooks, settings, metrics).
    Read,
    /// Queue work, or change work that is queued or running (cancel, hold, release, notebooks).
    Submit,
    /// Manage the daemon itself (API tokens).
    Admin,
    /// Use the tracking API.
    Track,
}

/// What an action is about: today the queue as a whole or one user's thing; team mode decides
/// by the resource's user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource<'a> {
    /// The daemon as a whole (status, GPUs, settings, tokens, the event stream).
    System,
    /// Something that belongs to a user (a job, a notebook).
    Owned { user: &'a str },
}

/// The one decision every route goes through. Today: a token's scopes decide, and every caller
/// acts for the owner; team mode adds roles and compares the caller's user with the resource's.
pub fn authorize(caller: &Caller, action: Action, resource: Resource<'_>) -> Result<(), ErrorBody> {
    let needed = match action {
        Action::Read => Scope::Read,
        Action::Submit => Scope::Submit,
        Action::Admin => Scope::Admin,
        Action::Track => Scope::Tracking,
    };
    if !caller.scopes.iter().any(|s| s.grants(needed)) {
        let have: Vec<&str> = caller.scopes.iter().map(|s| s.as_str()).collect();
        return Err(ErrorBody::new(
            ErrorCode::Forbidden,
            format!(
                "this token lacks the scope `{}` (it has: {}); create one that has it with \
                 `petri token create NAME --scope {}`",
                needed.as_str(),
                have.join(", "),
                needed.as_str()
            ),
        )
        .with_details(serde_json::json!({ "missing_scope": needed.as_str() })));
    }
    // One user today: whatever is owned is the owner's.
    let _ = resource;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("{0}")]
    Refused(ErrorBody),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(String),
}

impl From<AccountsError> for ErrorBody {
    fn from(e: AccountsError) -> Self {
        match e {
            AccountsError::Refused(body) => body,
            other => ErrorBody::new(ErrorCode::Internal, other.to_string()),
        }
    }
}

/// The accounts of one daemon: the owner, API tokens, job tokens. Cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    inner: Arc<Inner>,
}

struct Inner {
    owner: String,
    owner_token: String,
    /// The key job tokens are derived from.
    job_key: Vec<u8>,
    /// Writes of the tokens table.
    store: Mutex<Store>,
    reads: ReadPool,
    /// When each token's last use was written (token id → ms).
    touched: Mutex<std::collections::HashMap<String, i64>>,
    /// API tokens recently found, by hash: who sends them, until when, and when they were read
    /// (a request with one needs no database read for `tokens::CACHE_FOR_MS`). Emptied by a
    /// revocation.
    known: Mutex<std::collections::HashMap<String, tokens::Known>>,
}

/// The secret in a file of the home: read it, or create it (mode 0600) at first start.
fn secret_file(path: &Path, make: impl FnOnce() -> String) -> std::io::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Ok(text) = std::fs::read_to_string(path) {
        let secret = text.trim().to_string();
        if secret.len() >= 32 {
            return Ok(secret);
        }
    }
    let secret = make();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    Ok(secret)
}

/// The Unix user this process runs as (the owner of a single-user home).
pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| nix::unistd::getuid().to_string())
}

impl Accounts {
    /// Opens the accounts of a home: the owner's token file `token` and the job-token key
    /// `job.key` (both created, mode 0600, at first start); tokens in the database.
    pub fn open(home: &Path, store: Store, reads: ReadPool) -> Result<Accounts, AccountsError> {
        let token_file: PathBuf = home.join("token");
        let owner_token = secret_file(&token_file, tokens::new_secret).map_err(|e| {
            AccountsError::Io(format!("the token file {}: {e}", token_file.display()))
        })?;
        let key_file = home.join("job.key");
        let job_key = secret_file(&key_file, tokens::new_key)
            .map_err(|e| AccountsError::Io(format!("the key file {}: {e}", key_file.display())))?;
        Ok(Accounts {
            inner: Arc::new(Inner {
                owner: current_user(),
                owner_token,
                job_key: job_key.into_bytes(),
                store: Mutex::new(store),
                reads,
                touched: Mutex::default(),
                known: Mutex::default(),
            }),
        })
    }

    /// The owner's token (also in the file `token` in the home).
    pub fn owner_token(&self) -> &str {
        &self.inner.owner_token
    }

    /// The owner's user name.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }
}
