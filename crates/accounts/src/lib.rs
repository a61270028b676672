//! Who is calling, and what they may do.
//!
//! - The **owner**: the Unix user the daemon runs as, whose token is the file `token` in the home
//!   (mode 0600, created at first start). An admin.
//! - **Socket callers**: over the daemon's Unix socket the kernel says who calls (the peer's
//!   uid); the Unix user *is* the Petri user, with the role the users table gives it (a user
//!   the daemon has not met joins as a member, or is refused with how to be added, by the
//!   setting `team.join`). Root and the daemon's own user are admins.
//! - **API tokens**: created with a name, scopes and an optional expiry (`petri token create`),
//!   for the user who made them; only a SHA-256 of each secret is stored, and the secret is shown
//!   once. A revoked, expired or unknown token is refused (401); a token without the scope an
//!   action needs is refused (403, naming the scope).
//! - **Job tokens**: what a job needs to call back (the tracking API) is derived by HMAC from a
//!   key in the home and the job's id, so it is never stored, neither in the database nor in the
//!   job's spec. It acts for the job's user.
//!
//! Every route is decided by one function, [`authorize`], from the [`Caller`] (a value the API's
//! extractor yields, never a side effect), the action and whose the resource is: the token's
//! scopes, then the caller's [`Role`], then ownership (a member changes and reads the private
//! parts of only their own things; an admin, everyone's).

mod audit;
mod tokens;
mod users;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use petri_domain::{ErrorBody, ErrorCode, JobId};
use petri_store::{ReadPool, Store, StoreError};

pub use audit::AuditRecord;
pub use petri_domain::token::{NewToken, Scope, TokenInfo, TokenRequest};
pub use petri_domain::{AuditEntry, AuditQuery, Me, Quota, Role, UserInfo};
pub use users::{Join, QuotaSubject};

/// How the caller proved who they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// The owner's token file.
    Owner,
    /// The daemon's Unix socket: the kernel gave the peer's uid.
    Socket { uid: u32 },
    /// An API token (its id and name).
    Token { id: String, name: String },
    /// A token derived for one job.
    Job(JobId),
}

/// Who is calling: the user they act for, their role, how they proved it, and what the
/// credential allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub role: Role,
    pub credential: Credential,
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// The owner, with every scope (the desktop window, the CLI on the owner's account).
    pub fn owner(user: &str) -> Caller {
        Caller {
            user: user.to_string(),
            role: Role::Admin,
            credential: Credential::Owner,
            scopes: vec![Scope::Admin],
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin && self.scopes.contains(&Scope::Admin)
    }

    /// Where the call came from, for the audit log.
    pub fn origin(&self) -> String {
        match &self.credential {
            Credential::Owner => "owner token".into(),
            Credential::Socket { uid } => format!("socket uid={uid}"),
            Credential::Token { name, .. } => format!("token {name}"),
            Credential::Job(job) => format!("job {job}"),
        }
    }

    /// The caller as `GET /api/v1/me` shows them.
    pub fn me(&self, team: bool) -> Me {
        let (credential, token) = match &self.credential {
            Credential::Owner => ("owner", None),
            Credential::Socket { .. } => ("socket", None),
            Credential::Token { name, .. } => ("token", Some(name.clone())),
            Credential::Job(_) => ("job", None),
        };
        Me {
            name: self.user.clone(),
            role: self.role,
            credential: credential.into(),
            token,
            team,
        }
    }
}

/// What a route does, for [`authorize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Look at what everyone may see: the queue (names, owners, resources), a job's record,
    /// GPUs, settings, metrics, dashboards.
    Read,
    /// Read the private part of a thing: a job's log and outputs, a notebook's server, a
    /// secret's use. Its owner and admins only.
    ReadPrivate,
    /// Queue work, or change work that is queued or running (cancel, hold, release, notebooks).
    Submit,
    /// Manage one's own API tokens (every role may; a token never has more than its maker).
    Tokens,
    /// Manage the daemon itself (users, roles, quotas, the audit log, gc).
    Admin,
    /// Change through the tracking API (log, create, delete).
    Track,
    /// Read through the tracking API (get, search, download): what a job's tracking token and
    /// anyone who may read (a viewer's dashboards) may do.
    TrackRead,
}

impl Action {
    /// The token scope the action needs.
    fn scope(self) -> Scope {
        match self {
            Action::Read | Action::ReadPrivate => Scope::Read,
            Action::Submit => Scope::Submit,
            Action::Tokens | Action::Admin => Scope::Admin,
            Action::Track => Scope::Tracking,
            // Either `read` or `tracking` (see `granted`).
            Action::TrackRead => Scope::Read,
        }
    }

    /// Whether `scopes` hold what the action needs.
    fn granted(self, scopes: &[Scope]) -> bool {
        let has = |needed: Scope| scopes.iter().any(|s| s.grants(needed));
        match self {
            Action::TrackRead => has(Scope::Read) || has(Scope::Tracking),
            other => has(other.scope()),
        }
    }

    fn roles(self) -> &'static [Role] {
        match self {
            Action::Read | Action::ReadPrivate | Action::Tokens | Action::TrackRead => {
                &[Role::Admin, Role::Member, Role::Viewer]
            }
            Action::Submit | Action::Track => &[Role::Admin, Role::Member],
            Action::Admin => &[Role::Admin],
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::ReadPrivate => "read the contents of",
            Action::Submit => "change",
            Action::Tokens => "manage tokens of",
            Action::Admin => "administer",
            Action::Track => "track",
            Action::TrackRead => "read",
        }
    }
}

/// What an action is about: the daemon as a whole, or one user's thing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource<'a> {
    /// The daemon as a whole (status, GPUs, settings, the queue's listing, the event stream).
    System,
    /// Something that belongs to a user: `what` names it in a refusal (`job 42`, `notebook lab`).
    Owned { user: &'a str, what: &'a str },
}

/// The one decision every route goes through: the credential's scopes, the caller's role, and
/// whose the resource is.
pub fn authorize(caller: &Caller, action: Action, resource: Resource<'_>) -> Result<(), ErrorBody> {
    let needed = action.scope();
    if !action.granted(&caller.scopes) {
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
    if !action.roles().contains(&caller.role) {
        return Err(ErrorBody::new(
            ErrorCode::Forbidden,
            format!(
                "{} is a {}, and a {} may not {} this; an admin can change the role with \
                 `petri user set-role {} ROLE`",
                caller.user,
                caller.role,
                caller.role,
                action.verb(),
                caller.user
            ),
        )
        .with_details(serde_json::json!({ "role": caller.role })));
    }
    if let Resource::Owned { user, what } = resource
        && !matches!(action, Action::Read | Action::TrackRead)
        && user != caller.user
        && caller.role != Role::Admin
    {
        return Err(ErrorBody::new(
            ErrorCode::Forbidden,
            format!(
                "{what} belongs to {user}: only {user} or an admin may {} it",
                action.verb()
            ),
        )
        .with_details(serde_json::json!({ "owner": user })));
    }
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
    /// The daemon's own uid (its callers over the socket are the owner).
    owner_uid: u32,
    /// What happens to a Unix user the daemon has not met.
    join: Join,
    /// Socket callers and token users recently looked up, by uid or name, with when.
    roles: Mutex<std::collections::HashMap<String, (Role, i64)>>,
    /// Told the quotas whenever they change (the daemon hands them to the queue).
    on_quotas: Mutex<Option<users::QuotaListener>>,
}

/// The secret in a file of the home: read it, or create it (mode 0600) at first start.
fn secret_file(path: &Path, make: impl FnOnce() -> String) -> std::io::Result<String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let secret = text.trim().to_string();
        if secret.len() >= 32 {
            return Ok(secret);
        }
    }
    let secret = make();
    // Whole or not at all: a CLI started beside the daemon may read it this very moment.
    petri_domain::files::write_private(path, format!("{secret}\n").as_bytes())?;
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
    pub fn open(
        home: &Path,
        store: Store,
        reads: ReadPool,
        join: Join,
    ) -> Result<Accounts, AccountsError> {
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
                owner_uid: nix::unistd::getuid().as_raw(),
                join,
                roles: Mutex::default(),
                on_quotas: Mutex::default(),
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
