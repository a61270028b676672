//! Users (the Unix users of a shared machine), their roles and quotas.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use petri_domain::{ErrorBody, ErrorCode, GroupQuota, Quota, QuotaBook, Role, UserInfo};
use petri_store::StoredUser;
use serde::{Deserialize, Serialize};

use crate::{Accounts, AccountsError, Caller, Credential, Scope};

/// What happens when a Unix user the daemon has not met calls over the socket (`team.join`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Join {
    /// Added as a member on first contact (a shared machine works with no setup).
    #[default]
    Member,
    /// Added as a viewer on first contact; an admin promotes them.
    Viewer,
    /// Refused, with how an admin adds them.
    None,
}

/// Whose quota: a user's own, or what a Unix group's members hold together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuotaSubject {
    User(String),
    Group(String),
}

impl QuotaSubject {
    /// `alice` or `user:alice` is a user; `group:ml` a Unix group.
    pub fn parse(s: &str) -> Result<QuotaSubject, ErrorBody> {
        let (subject, name) = match s.split_once(':') {
            Some(("group", name)) => (QuotaSubject::Group(name.to_string()), name),
            Some(("user", name)) => (QuotaSubject::User(name.to_string()), name),
            Some(_) => {
                return Err(ErrorBody::new(
                    ErrorCode::InvalidQuota,
                    format!("`{s}` is not a quota's subject: write a user's name or group:NAME"),
                ));
            }
            None => (QuotaSubject::User(s.to_string()), s),
        };
        if !is_name(name) {
            return Err(ErrorBody::new(
                ErrorCode::InvalidQuota,
                format!("`{name}` is not a user or group name"),
            ));
        }
        Ok(subject)
    }

    fn key(&self) -> String {
        match self {
            QuotaSubject::User(n) => format!("user:{n}"),
            QuotaSubject::Group(n) => format!("group:{n}"),
        }
    }
}

/// Called with the quotas whenever they change.
pub type QuotaListener = Box<dyn Fn(QuotaBook) + Send + Sync>;

/// A Unix-style name: letters, digits, `.`, `_`, `-`, at most 64, not starting with `-`.
pub fn is_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// How long a looked-up role is taken on trust (a change through this daemon clears it).
const ROLE_CACHE_MS: i64 = 5_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn role_of(stored: &str) -> Role {
    // An unknown role (a newer Petri's) reads as the least.
    Role::parse(stored).unwrap_or(Role::Viewer)
}

fn unix_uid(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

impl Accounts {
    /// Whether this daemon serves a team: it runs as root (the system service), or it knows
    /// more users than its owner.
    pub fn team(&self) -> bool {
        self.inner.owner_uid == 0
            || self
                .inner
                .reads
                .read(|s| s.users())
                .map(|u| u.iter().any(|u| u.name != self.inner.owner))
                .unwrap_or(false)
    }

    /// The caller behind a socket peer's uid (blocking: it may read the user database and the
    /// store). Root and the daemon's own user are admins; a user not met before joins by the
    /// setting `team.join`, or is refused with how to be added.
    pub fn peer(&self, uid: u32) -> Result<Caller, ErrorBody> {
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name);
        let credential = Credential::Socket { uid };
        if uid == self.inner.owner_uid || uid == 0 {
            let user = name.unwrap_or_else(|| self.inner.owner.clone());
            // Root on a daemon of another user acts as that daemon's owner.
            let user = if uid == self.inner.owner_uid {
                user
            } else {
                self.inner.owner.clone()
            };
            return Ok(Caller {
                user,
                role: Role::Admin,
                credential,
                scopes: vec![Scope::Admin],
            });
        }
        let Some(name) = name else {
            return Err(ErrorBody::new(
                ErrorCode::Forbidden,
                format!("uid {uid} has no user name on this machine, so it cannot be a Petri user"),
            ));
        };
        let role = match self.cached_role(&name) {
            Some(role) => role,
            None => {
                let stored = self
                    .inner
                    .reads
                    .read(|s| s.user(&name))
                    .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
                let role = match stored {
                    Some(u) => role_of(&u.role),
                    None => self.join(&name, uid)?,
                };
                self.remember_role(&name, role);
                role
            }
        };
        Ok(Caller {
            user: name,
            role,
            credential,
            scopes: vec![Scope::Admin],
        })
    }

    fn join(&self, name: &str, uid: u32) -> Result<Role, ErrorBody> {
        let role = match self.inner.join {
            Join::Member => Role::Member,
            Join::Viewer => Role::Viewer,
            Join::None => {
                return Err(ErrorBody::new(
                    ErrorCode::Forbidden,
                    format!(
                        "{name} (uid {uid}) is not a Petri user of this machine; an admin adds \
                         them with `petri user add {name}` (or sets `team.join = \"member\"` so \
                         that users join on first contact)"
                    ),
                )
                .with_details(serde_json::json!({ "user": name, "uid": uid })));
            }
        };
        let stored = StoredUser {
            name: name.to_string(),
            uid: Some(uid),
            role: role.as_str().into(),
            created_at_ms: now_ms(),
        };
        self.write(|s| s.insert_user(&stored))
            .map_err(ErrorBody::from)?;
        tracing::info!(user = %name, uid, role = %role, "a new user joined on first contact");
        self.record(crate::AuditRecord {
            user: name.to_string(),
            origin: format!("socket uid={uid}"),
            action: "user.join".into(),
            target: format!("user {name}"),
            status: None,
            detail: format!("joined as {role} on first contact"),
        });
        self.notify_quotas();
        Ok(role)
    }

    fn cached_role(&self, name: &str) -> Option<Role> {
        let roles = self.inner.roles.lock().ok()?;
        let (role, at) = roles.get(name)?;
        (now_ms() - at < ROLE_CACHE_MS).then_some(*role)
    }

    fn remember_role(&self, name: &str, role: Role) {
        if let Ok(mut roles) = self.inner.roles.lock() {
            if roles.len() > 10_000 {
                roles.clear();
            }
            roles.insert(name.to_string(), (role, now_ms()));
        }
    }

    /// The role of a token's user (blocking): the owner is an admin; a user the table does not
    /// hold (a token made before team mode, or by a user since removed) is a member.
    pub fn role_for(&self, user: &str) -> Role {
        if user == self.inner.owner {
            return Role::Admin;
        }
        if let Some(role) = self.cached_role(user) {
            return role;
        }
        let role = self
            .inner
            .reads
            .read(|s| s.user(user))
            .ok()
            .flatten()
            .map_or(Role::Member, |u| role_of(&u.role));
        self.remember_role(user, role);
        role
    }

    /// Every user, with their own quota. The owner is listed as an admin even before the
    /// table holds them.
    pub fn users(&self) -> Result<Vec<UserInfo>, AccountsError> {
        let stored = self.inner.reads.read(|s| s.users())?;
        let quotas = self.quota_rows()?;
        let mut out: Vec<UserInfo> = stored
            .into_iter()
            .map(|u| UserInfo {
                quota: quotas
                    .get(&format!("user:{}", u.name))
                    .cloned()
                    .unwrap_or_default(),
                role: if u.name == self.inner.owner {
                    Role::Admin
                } else {
                    role_of(&u.role)
                },
                uid: u.uid.or_else(|| unix_uid(&u.name)),
                name: u.name,
                created_at_ms: u.created_at_ms,
            })
            .collect();
        if !out.iter().any(|u| u.name == self.inner.owner) {
            out.push(UserInfo {
                name: self.inner.owner.clone(),
                role: Role::Admin,
                uid: Some(self.inner.owner_uid),
                created_at_ms: 0,
                quota: quotas
                    .get(&format!("user:{}", self.inner.owner))
                    .cloned()
                    .unwrap_or_default(),
            });
            out.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(out)
    }

    /// Adds a user, or sets the role of one (admins only; the route says so). The daemon's own
    /// user stays an admin.
    pub fn put_user(&self, name: &str, role: Role) -> Result<UserInfo, AccountsError> {
        if !is_name(name) {
            return Err(AccountsError::Refused(ErrorBody::new(
                ErrorCode::BadRequest,
                format!("`{name}` is not a user name: letters, digits, `.`, `_` and `-`"),
            )));
        }
        if name == self.inner.owner && role != Role::Admin {
            return Err(AccountsError::Refused(ErrorBody::new(
                ErrorCode::Forbidden,
                format!("{name} runs the daemon and is always an admin"),
            )));
        }
        let stored = StoredUser {
            name: name.to_string(),
            uid: unix_uid(name),
            role: role.as_str().into(),
            created_at_ms: now_ms(),
        };
        self.write(|s| {
            if !s.insert_user(&stored)? {
                s.set_user_role(name, role.as_str())?;
            }
            Ok(())
        })?;
        if let Ok(mut roles) = self.inner.roles.lock() {
            roles.clear();
        }
        if let Ok(mut known) = self.inner.known.lock() {
            known.clear();
        }
        self.notify_quotas();
        self.users()?
            .into_iter()
            .find(|u| u.name == name)
            .ok_or_else(|| AccountsError::Io(format!("user {name} vanished")))
    }

    /// A user by name.
    pub fn user(&self, name: &str) -> Result<UserInfo, AccountsError> {
        self.users()?
            .into_iter()
            .find(|u| u.name == name)
            .ok_or_else(|| {
                AccountsError::Refused(ErrorBody::new(
                    ErrorCode::UserNotFound,
                    format!("no Petri user `{name}`; see `petri user ls`"),
                ))
            })
    }

    /// Sets the quota of a user or a Unix group; an empty one removes it. Values that make no
    /// sense are refused and nothing changes.
    pub fn set_quota(&self, subject: &QuotaSubject, quota: &Quota) -> Result<Quota, AccountsError> {
        if let Some(problem) = quota.problem() {
            return Err(AccountsError::Refused(ErrorBody::new(
                ErrorCode::InvalidQuota,
                problem,
            )));
        }
        match subject {
            QuotaSubject::User(name) => {
                self.user(name)?;
            }
            QuotaSubject::Group(name) => {
                if nix::unistd::Group::from_name(name).ok().flatten().is_none() {
                    return Err(AccountsError::Refused(ErrorBody::new(
                        ErrorCode::InvalidQuota,
                        format!("there is no Unix group `{name}` on this machine"),
                    )));
                }
            }
        }
        let json = (!quota.is_empty())
            .then(|| serde_json::to_string(quota))
            .transpose()
            .map_err(|e| AccountsError::Io(e.to_string()))?;
        let now = now_ms();
        self.write(|s| s.set_quota(&subject.key(), json.as_deref(), now))?;
        self.notify_quotas();
        Ok(quota.clone())
    }

    fn quota_rows(&self) -> Result<HashMap<String, Quota>, AccountsError> {
        let rows = self.inner.reads.read(|s| s.quotas())?;
        Ok(rows
            .into_iter()
            .filter_map(|(subject, json)| {
                serde_json::from_str::<Quota>(&json)
                    .ok()
                    .map(|q| (subject, q))
            })
            .collect())
    }

    /// Every quota, with each group's Petri users (members of the Unix group, or whose primary
    /// group it is).
    pub fn quota_book(&self) -> Result<QuotaBook, AccountsError> {
        let rows = self.quota_rows()?;
        let users = self.inner.reads.read(|s| s.users())?;
        let mut book = QuotaBook::default();
        let mut by_user = BTreeMap::new();
        for (subject, quota) in rows {
            if let Some(name) = subject.strip_prefix("user:") {
                by_user.insert(name.to_string(), quota);
            } else if let Some(group) = subject.strip_prefix("group:") {
                let Some(g) = nix::unistd::Group::from_name(group).ok().flatten() else {
                    continue;
                };
                let mut members: BTreeSet<String> = g.mem.iter().cloned().collect();
                for u in users.iter().map(|u| u.name.as_str()).chain([self.owner()]) {
                    if nix::unistd::User::from_name(u)
                        .ok()
                        .flatten()
                        .is_some_and(|x| x.gid == g.gid)
                    {
                        members.insert(u.to_string());
                    }
                }
                book.groups.push(GroupQuota {
                    group: group.to_string(),
                    quota,
                    members,
                });
            }
        }
        book.users = by_user;
        Ok(book)
    }

    /// Hands the quotas to `listener` now and whenever they change.
    pub fn on_quotas(&self, listener: QuotaListener) {
        if let Ok(book) = self.quota_book() {
            listener(book);
        }
        if let Ok(mut slot) = self.inner.on_quotas.lock() {
            *slot = Some(listener);
        }
    }

    fn notify_quotas(&self) {
        let Ok(book) = self.quota_book() else { return };
        if let Ok(slot) = self.inner.on_quotas.lock()
            && let Some(listener) = slot.as_ref()
        {
            listener(book);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Resource, authorize};

    fn accounts(dir: &std::path::Path, join: Join) -> Accounts {
        let db = dir.join("petri.db");
        let store = petri_store::Store::open(&db).unwrap();
        let reads = petri_store::ReadPool::open(&db, 2).unwrap();
        Accounts::open(dir, store, reads, join).unwrap()
    }

    fn member(name: &str) -> Caller {
        Caller {
            user: name.into(),
            role: Role::Member,
            credential: Credential::Socket { uid: 4242 },
            scopes: vec![Scope::Admin],
        }
    }

    #[test]
    fn roles_and_owners_decide() {
        let alice = member("alice");
        let job_of_bob = Resource::Owned {
            user: "bob",
            what: "job 7",
        };
        // Anyone sees the queue and bob's job's record.
        assert!(authorize(&alice, Action::Read, job_of_bob).is_ok());
        // Only bob or an admin changes it or reads its log.
        let err = authorize(&alice, Action::Submit, job_of_bob).unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert!(
            err.message.contains("job 7 belongs to bob"),
            "{}",
            err.message
        );
        assert_eq!(err.details["owner"], "bob");
        assert!(authorize(&alice, Action::ReadPrivate, job_of_bob).is_err());
        let own = Resource::Owned {
            user: "alice",
            what: "job 8",
        };
        assert!(authorize(&alice, Action::Submit, own).is_ok());
        assert!(authorize(&alice, Action::Admin, Resource::System).is_err());
        assert!(authorize(&alice, Action::Tokens, Resource::System).is_ok());
        let admin = Caller::owner("root");
        assert!(authorize(&admin, Action::Submit, job_of_bob).is_ok());
        assert!(authorize(&admin, Action::Admin, Resource::System).is_ok());
        let viewer = Caller {
            role: Role::Viewer,
            ..member("carol")
        };
        assert!(authorize(&viewer, Action::Read, Resource::System).is_ok());
        let err = authorize(&viewer, Action::Submit, Resource::System).unwrap_err();
        assert!(err.message.contains("viewer"), "{}", err.message);
        // A token's scopes still bound an admin.
        let reader = Caller {
            scopes: vec![Scope::Read],
            ..Caller::owner("root")
        };
        assert!(authorize(&reader, Action::Submit, Resource::System).is_err());
    }

    #[test]
    fn users_roles_and_quotas_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let acc = accounts(dir.path(), Join::Member);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        acc.on_quotas(Box::new(move |b| s2.lock().unwrap().push(b)));
        let u = acc.put_user("alice", Role::Viewer).unwrap();
        assert_eq!(u.role, Role::Viewer);
        assert_eq!(acc.role_for("alice"), Role::Viewer);
        acc.put_user("alice", Role::Member).unwrap();
        assert_eq!(acc.role_for("alice"), Role::Member);
        assert_eq!(acc.role_for(acc.owner()), Role::Admin);
        let owner = acc.owner().to_string();
        assert!(acc.put_user(&owner, Role::Viewer).is_err());
        assert!(acc.put_user("-x", Role::Member).is_err());
        let q = Quota {
            gpus: Some(1),
            ..Quota::default()
        };
        acc.set_quota(&QuotaSubject::parse("alice").unwrap(), &q)
            .unwrap();
        let bad = Quota {
            cpus: Some(0.0),
            ..Quota::default()
        };
        let err = acc
            .set_quota(&QuotaSubject::parse("alice").unwrap(), &bad)
            .unwrap_err();
        assert_eq!(ErrorBody::from(err).code, ErrorCode::InvalidQuota);
        let err = acc
            .set_quota(&QuotaSubject::parse("nobody-here").unwrap(), &q)
            .unwrap_err();
        assert_eq!(ErrorBody::from(err).code, ErrorCode::UserNotFound);
        assert!(QuotaSubject::parse("team:x").is_err());
        assert_eq!(acc.user("alice").unwrap().quota, q);
        let book = acc.quota_book().unwrap();
        assert_eq!(book.users["alice"], q);
        // The listener heard the change (and the start).
        assert!(
            seen.lock()
                .unwrap()
                .last()
                .unwrap()
                .users
                .contains_key("alice")
        );
        // An empty quota removes it.
        acc.set_quota(&QuotaSubject::parse("alice").unwrap(), &Quota::default())
            .unwrap();
        assert!(acc.quota_book().unwrap().users.is_empty());
    }

    #[test]
    fn the_daemons_own_uid_is_its_owner_and_strangers_join_by_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let acc = accounts(dir.path(), Join::None);
        let me = acc.peer(nix::unistd::getuid().as_raw()).unwrap();
        assert_eq!(me.role, Role::Admin);
        assert_eq!(me.user, acc.owner());
        // "nobody" exists on every Debian machine; with join = none it is refused, named.
        if let Some(nobody) = nix::unistd::User::from_name("nobody").ok().flatten()
            && nobody.uid != nix::unistd::getuid()
        {
            let err = acc.peer(nobody.uid.as_raw()).unwrap_err();
            assert_eq!(err.code, ErrorCode::Forbidden);
            assert!(
                err.message.contains("petri user add nobody"),
                "{}",
                err.message
            );
            let acc = accounts(dir.path(), Join::Viewer);
            let c = acc.peer(nobody.uid.as_raw()).unwrap();
            assert_eq!((c.user.as_str(), c.role), ("nobody", Role::Viewer));
            assert!(acc.users().unwrap().iter().any(|u| u.name == "nobody"));
        }
    }
}
