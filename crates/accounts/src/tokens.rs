//! API tokens (hashed, named, scoped, expiring) and job tokens (derived, never stored).

use hmac::{Hmac, Mac};
use petri_domain::token::{NewToken, TokenInfo, TokenRequest};
use petri_domain::{ErrorBody, ErrorCode, JobId, Millis};
use petri_store::StoredToken;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Accounts, AccountsError, Caller, Credential, Scope};

/// The prefix of every token Petri makes, so that a leaked one is easy to recognise.
const PREFIX: &str = "petri_";
/// The prefix of job tokens: `petri_job.<job id>.<hmac>`.
const JOB_PREFIX: &str = "petri_job.";

/// A new random secret: `petri_` and 64 hex digits.
pub(crate) fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{PREFIX}{}", hex(&bytes))
}

/// A new random key for deriving job tokens.
pub(crate) fn new_key() -> String {
    let bytes: [u8; 32] = rand::random();
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn info(t: StoredToken, now: i64) -> TokenInfo {
    let state = if t.revoked_at_ms.is_some() {
        "revoked"
    } else if t.expires_at_ms.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    };
    TokenInfo {
        scopes: t.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
        id: t.id,
        name: t.name,
        user: t.user,
        created_at_ms: t.created_at_ms,
        expires_at_ms: t.expires_at_ms,
        last_used_at_ms: t.last_used_at_ms,
        revoked_at_ms: t.revoked_at_ms,
        state: state.to_string(),
    }
}

fn refused(code: ErrorCode, message: impl Into<String>) -> AccountsError {
    AccountsError::Refused(ErrorBody::new(code, message))
}

fn unauthorized(message: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::Unauthorized, message)
}

fn is_token_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Accounts {
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&petri_store::Store) -> Result<T, petri_store::StoreError>,
    ) -> Result<T, AccountsError> {
        let store = self
            .inner
            .store
            .lock()
            .map_err(|_| AccountsError::Io("the accounts writer is poisoned".into()))?;
        f(&store).map_err(AccountsError::from)
    }

    /// Creates a token for `caller`'s user; the answer holds its secret, shown once.
    pub fn create_token(
        &self,
        caller: &Caller,
        req: TokenRequest,
    ) -> Result<NewToken, AccountsError> {
        if !is_token_name(&req.name) {
            return Err(refused(
                ErrorCode::InvalidSpec,
                format!(
                    "`{}` is not a token name: 1 to 64 letters, digits, `.`, `_` and `-`",
                    req.name
                ),
            ));
        }
        let mut scopes = if req.scopes.is_empty() {
            vec![Scope::Submit]
        } else {
            req.scopes
        };
        scopes.sort();
        scopes.dedup();
        // A token never gets more than its maker has.
        if let Some(s) = scopes
            .iter()
            .find(|s| !caller.scopes.iter().any(|c| c.grants(**s)))
        {
            return Err(refused(
                ErrorCode::Forbidden,
                format!(
                    "a token cannot grant the scope `{}`, which its maker lacks",
                    s.as_str()
                ),
            ));
        }
        // A token for someone else: an admin's to make, for a user this Petri knows.
        let user = match req.user.as_deref() {
            Some(u) if u != caller.user => {
                crate::authorize(caller, crate::Action::Admin, crate::Resource::System)
                    .map_err(AccountsError::Refused)?;
                self.user(u)?.name
            }
            _ => caller.user.clone(),
        };
        let now = now_ms();
        let expires_at_ms = match req.expires_in {
            Some(Millis(0)) => {
                return Err(refused(
                    ErrorCode::InvalidSpec,
                    "expires_in must be more than 0 (leave it out for a token that lasts until revoked)",
                ));
            }
            Some(d) => Some(now.saturating_add(d.0.min(i64::MAX as u64) as i64)),
            None => None,
        };
        let secret = new_secret();
        let stored = StoredToken {
            id: uuid::Uuid::now_v7().simple().to_string(),
            name: req.name.clone(),
            hash: hash(&secret),
            scopes: scopes.iter().map(|s| s.as_str().to_string()).collect(),
            user,
            created_at_ms: now,
            expires_at_ms,
            last_used_at_ms: None,
            revoked_at_ms: None,
        };
        let inserted = self.write(|s| s.insert_token(&stored))?;
        if !inserted {
            return Err(refused(
                ErrorCode::TokenNameTaken,
                format!(
                    "a token named `{}` exists; pick another name, or revoke it first with \
                     `petri token revoke {}`",
                    req.name, req.name
                ),
            ));
        }
        tracing::info!(token = %stored.name, scopes = ?stored.scopes, "API token created");
        Ok(NewToken {
            token: secret,
            info: info(stored, now),
        })
    }

    /// The tokens `caller` may see (never a secret), oldest first: an admin's, every token;
    /// anyone else's, their own.
    pub fn tokens(&self, caller: &Caller) -> Result<Vec<TokenInfo>, AccountsError> {
        let now = now_ms();
        let all = self.inner.reads.read(|s| s.tokens())?;
        Ok(all
            .into_iter()
            .filter(|t| caller.is_admin() || t.user == caller.user)
            .map(|t| info(t, now))
            .collect())
    }

    /// Revokes a token by id or name; it is refused from the next request on. Only its user
    /// or an admin may.
    pub fn revoke_token(&self, caller: &Caller, key: &str) -> Result<TokenInfo, AccountsError> {
        let now = now_ms();
        let theirs = self
            .inner
            .reads
            .read(|s| s.tokens())?
            .into_iter()
            .find(|t| t.id == key || t.name == key);
        if let Some(t) = &theirs {
            crate::authorize(
                caller,
                crate::Action::Tokens,
                crate::Resource::Owned {
                    user: &t.user,
                    what: &format!("the token `{}`", t.name),
                },
            )
            .map_err(AccountsError::Refused)?;
        }
        let revoked = self.write(|s| s.revoke_token(key, now))?;
        if let Ok(mut known) = self.inner.known.lock() {
            known.clear();
        }
        let found = self
            .inner
            .reads
            .read(|s| s.tokens())?
            .into_iter()
            .find(|t| t.id == key || t.name == key);
        match found {
            Some(t) if revoked || t.revoked_at_ms.is_some() => {
                if revoked {
                    tracing::info!(token = %t.name, "API token revoked");
                }
                Ok(info(t, now))
            }
            _ => Err(refused(
                ErrorCode::TokenNotFound,
                format!("no token `{key}`; see `petri token ls`"),
            )),
        }
    }

    /// The token a job uses to call back (the tracking API): derived from the home's key and
    /// the job's id, so it is never stored; valid for tracking only.
    pub fn job_token(&self, job: JobId) -> String {
        format!("{JOB_PREFIX}{job}.{}", self.job_mac(job))
    }

    fn job_mac(&self, job: JobId) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.inner.job_key)
            .expect("HMAC takes keys of any length");
        mac.update(b"petri job token\0");
        mac.update(job.to_string().as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// The owner, when `bearer` is the owner's token: no IO, so callers on an async thread try
    /// this first and keep `authenticate` (which may read the database) for the rest.
    pub fn owner_of(&self, bearer: &str) -> Option<Caller> {
        let bearer = bearer.trim();
        let owner = self.inner.owner_token.as_bytes();
        (bearer.len() == owner.len() && bool::from(bearer.as_bytes().ct_eq(owner)))
            .then(|| Caller::owner(&self.inner.owner))
    }

    /// Who sends `bearer`, when that is known without the database: the owner, or an API token
    /// read within the last `CACHE_FOR_MS` (5 s) and not expired since. Never blocks.
    pub fn known(&self, bearer: &str) -> Option<Caller> {
        if let Some(owner) = self.owner_of(bearer) {
            return Some(owner);
        }
        let bearer = bearer.trim();
        if bearer.starts_with(JOB_PREFIX) {
            return None;
        }
        let now = now_ms();
        let known = self.inner.known.lock().ok()?;
        let k = known.get(&hash(bearer))?;
        (now - k.read_at_ms < CACHE_FOR_MS && k.expires_at_ms.is_none_or(|e| e > now))
            .then(|| k.caller.clone())
    }

    /// Who sends `bearer`: the owner, an API token that is neither revoked nor expired, or a
    /// job's token. Anything else is 401. Blocking (it may read the database).
    pub fn authenticate(&self, bearer: &str) -> Result<Caller, ErrorBody> {
        if let Some(caller) = self.known(bearer) {
            return Ok(caller);
        }
        if let Some(owner) = self.owner_of(bearer) {
            return Ok(owner);
        }
        let bearer = bearer.trim();
        if let Some(rest) = bearer.strip_prefix(JOB_PREFIX) {
            let (job, mac) = rest
                .split_once('.')
                .ok_or_else(|| unauthorized("a malformed job token"))?;
            let job: JobId = job
                .parse()
                .map_err(|_| unauthorized("a malformed job token"))?;
            let expected = self.job_mac(job);
            if mac.len() == expected.len() && bool::from(mac.as_bytes().ct_eq(expected.as_bytes()))
            {
                // The API's auth layer names the job's user once it has read the job.
                return Ok(Caller {
                    user: self.inner.owner.clone(),
                    role: petri_domain::Role::Member,
                    credential: Credential::Job(job),
                    scopes: vec![Scope::Tracking],
                });
            }
            return Err(unauthorized(
                "this job token is not valid for this Petri home",
            ));
        }
        let found = self
            .inner
            .reads
            .read(|s| s.token_by_hash(&hash(bearer)))
            .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
        let Some(t) = found else {
            return Err(unauthorized(
                "missing or unknown token: send `Authorization: Bearer <token>`; the owner's \
                 token is in the file `token` in the Petri home, others come from `petri token \
                 create`",
            ));
        };
        let now = now_ms();
        if t.revoked_at_ms.is_some() {
            return Err(unauthorized(&format!(
                "the token `{}` was revoked; create a new one with `petri token create`",
                t.name
            )));
        }
        if t.expires_at_ms.is_some_and(|e| e <= now) {
            return Err(unauthorized(&format!(
                "the token `{}` has expired; create a new one with `petri token create`",
                t.name
            )));
        }
        // Its last use, at most once a minute (not a write per request).
        let stale = self.inner.touched.lock().is_ok_and(|mut seen| {
            let last = seen.entry(t.id.clone()).or_insert(0);
            let stale = now - *last >= 60_000;
            if stale {
                *last = now;
            }
            stale
        });
        if stale && let Ok(store) = self.inner.store.lock() {
            let _ = store.touch_token(&t.id, now);
        }
        let caller = Caller {
            scopes: t.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
            role: self.role_for(&t.user),
            user: t.user,
            credential: Credential::Token {
                id: t.id,
                name: t.name,
            },
        };
        if let Ok(mut known) = self.inner.known.lock() {
            if known.len() >= 10_000 {
                known.clear();
            }
            known.insert(
                hash(bearer),
                Known {
                    caller: caller.clone(),
                    expires_at_ms: t.expires_at_ms,
                    read_at_ms: now,
                },
            );
        }
        Ok(caller)
    }
}

/// How long an API token found in the database is taken on trust before it is read again
/// (a revocation through this daemon takes effect at once).
pub const CACHE_FOR_MS: i64 = 5_000;

/// An API token recently found.
pub(crate) struct Known {
    caller: Caller,
    expires_at_ms: Option<i64>,
    read_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Resource, authorize};

    fn accounts(dir: &std::path::Path) -> Accounts {
        let db = dir.join("petri.db");
        let store = petri_store::Store::open(&db).unwrap();
        let reads = petri_store::ReadPool::open(&db, 2).unwrap();
        Accounts::open(dir, store, reads, crate::Join::Member).unwrap()
    }

    #[test]
    fn tokens_are_hashed_scoped_expired_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let acc = accounts(dir.path());
        let owner = acc.authenticate(acc.owner_token()).unwrap();
        assert_eq!(owner.credential, Credential::Owner);
        let reader = acc
            .create_token(
                &owner,
                TokenRequest {
                    name: "ci".into(),
                    scopes: vec![Scope::Read],
                    expires_in: None,
                    user: None,
                },
            )
            .unwrap();
        // Only the hash is stored.
        let raw = std::fs::read(dir.path().join("petri.db")).unwrap();
        assert!(
            !raw.windows(reader.token.len())
                .any(|w| w == reader.token.as_bytes())
        );
        let caller = acc.authenticate(&reader.token).unwrap();
        assert!(authorize(&caller, Action::Read, Resource::System).is_ok());
        let denied = authorize(&caller, Action::Submit, Resource::System).unwrap_err();
        assert_eq!(denied.code, ErrorCode::Forbidden);
        assert!(denied.message.contains("`submit`"), "{}", denied.message);
        // A reader cannot mint itself a submitter.
        let err = acc
            .create_token(
                &caller,
                TokenRequest {
                    name: "more".into(),
                    scopes: vec![Scope::Submit],
                    expires_in: None,
                    user: None,
                },
            )
            .unwrap_err();
        assert_eq!(ErrorBody::from(err).code, ErrorCode::Forbidden);
        // Names are unique.
        let dup = acc
            .create_token(
                &owner,
                TokenRequest {
                    name: "ci".into(),
                    scopes: vec![],
                    expires_in: None,
                    user: None,
                },
            )
            .unwrap_err();
        assert_eq!(ErrorBody::from(dup).code, ErrorCode::TokenNameTaken);
        // Revoked: 401 from then on.
        let revoked = acc.revoke_token(&owner, "ci").unwrap();
        assert_eq!(revoked.state, "revoked");
        let err = acc.authenticate(&reader.token).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unauthorized);
        assert!(err.message.contains("revoked"), "{}", err.message);
        assert_eq!(
            ErrorBody::from(acc.revoke_token(&owner, "nope").unwrap_err()).code,
            ErrorCode::TokenNotFound
        );
        assert_eq!(
            acc.authenticate("petri_0000").unwrap_err().code,
            ErrorCode::Unauthorized
        );
    }

    #[test]
    fn an_expired_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let acc = accounts(dir.path());
        let owner = Caller::owner("me");
        let t = acc
            .create_token(
                &owner,
                TokenRequest {
                    name: "short".into(),
                    scopes: vec![],
                    expires_in: Some(Millis(1)),
                    user: None,
                },
            )
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let err = acc.authenticate(&t.token).unwrap_err();
        assert!(err.message.contains("expired"), "{}", err.message);
        assert_eq!(acc.tokens(&owner).unwrap()[0].state, "expired");
    }

    #[test]
    fn job_tokens_are_derived_for_tracking_only() {
        let dir = tempfile::tempdir().unwrap();
        let acc = accounts(dir.path());
        let job = JobId::new();
        let token = acc.job_token(job);
        assert_eq!(token, acc.job_token(job));
        let caller = acc.authenticate(&token).unwrap();
        assert_eq!(caller.credential, Credential::Job(job));
        assert!(authorize(&caller, Action::Track, Resource::System).is_ok());
        assert!(authorize(&caller, Action::Read, Resource::System).is_err());
        // Another job's id with this MAC is refused.
        let forged = token.replace(&job.to_string(), &JobId::new().to_string());
        assert!(acc.authenticate(&forged).is_err());
        // The key survives a restart of the accounts (same home).
        let again = accounts(dir.path());
        assert!(again.authenticate(&token).is_ok());
    }
}
