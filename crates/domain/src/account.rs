//! Team mode as the API shows it: users and their roles, quotas, and the audit log.

use serde::{Deserialize, Serialize};

use crate::units::ByteSize;

/// What a user may do on a shared machine.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including other users' jobs, users, quotas and the audit log.
    Admin,
    /// Submit work; see the whole queue (names, owners, resources); read and change only their
    /// own jobs, logs, outputs, notebooks, secrets and private runs.
    Member,
    /// Read the queue and the dashboards.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Member, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one user (or the members of one Unix group, together) may hold at once. An absent limit
/// is no limit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Whole GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// GPU memory, slices and whole GPUs together (a whole GPU counts its memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub gpu_memory: Option<ByteSize>,
    /// Cpus (fractions allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Jobs running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<u32>,
}

impl Quota {
    pub fn is_empty(&self) -> bool {
        *self == Quota::default()
    }

    /// Why these values make no sense, if they do not.
    pub fn problem(&self) -> Option<String> {
        if let Some(c) = self.cpus
            && !(c.is_finite() && c > 0.0 && c <= 1_000_000.0)
        {
            return Some(format!(
                "cpus must be a number above 0 (got {c}); leave it out for no limit"
            ));
        }
        if self.running == Some(0) {
            return Some(
                "running must be at least 1 (a user who may run nothing should be a viewer)".into(),
            );
        }
        if self.gpu_memory == Some(ByteSize(0)) {
            return Some(
                "gpu_memory must be more than 0; set gpus to 0 to allow no GPU at all".into(),
            );
        }
        None
    }

    /// The limits in words, e.g. "2 GPUs, 16 cpus".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(g) = self.gpus {
            parts.push(format!("{g} GPU{}", if g == 1 { "" } else { "s" }));
        }
        if let Some(m) = self.gpu_memory {
            parts.push(format!("{m} of GPU memory"));
        }
        if let Some(c) = self.cpus {
            parts.push(format!("{c} cpus"));
        }
        if let Some(r) = self.running {
            parts.push(format!("{r} running job{}", if r == 1 { "" } else { "s" }));
        }
        if parts.is_empty() {
            "no limit".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A group's quota: what its members hold together.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupQuota {
    pub group: String,
    pub quota: Quota,
    /// The Petri users in the Unix group (as members or by their primary group).
    pub members: std::collections::BTreeSet<String>,
}

/// Every quota, as the scheduler applies them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuotaBook {
    pub users: std::collections::BTreeMap<String, Quota>,
    pub groups: Vec<GroupQuota>,
}

impl QuotaBook {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }
}

/// What one user runs and waits for, and their recent usage (fair share's measure).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserShare {
    pub user: String,
    pub running: u32,
    pub waiting: u32,
    /// The part of the machine their running jobs hold now (0 to 1: a job's GPUs' part of all
    /// GPUs, or its cpus' part of all cpus).
    pub share_now: f64,
    /// Recent usage in machine-hours, decayed by the fair-share half-life: among waiting jobs
    /// of the same priority, the user with the least goes first.
    pub usage_hours: f64,
    /// Their own quota, if they have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

/// A user of this Petri.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserInfo {
    /// The Unix user name (on a shared machine the Unix user *is* the Petri user).
    pub name: String,
    pub role: Role,
    /// The Unix uid, when the name is a user of this machine.
    pub uid: Option<u32>,
    pub created_at_ms: i64,
    /// Its own limits (group limits apply beside them).
    pub quota: Quota,
}

/// What `PUT /api/v1/users/{name}` sets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    pub role: Role,
}

/// Who the caller is, as the daemon sees them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Me {
    pub name: String,
    pub role: Role,
    /// How they proved it: `socket` (the kernel said), `owner` (the home's token file), `token`
    /// (an API token, named in `token`), `job` (a job's own token).
    pub credential: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Whether more than one user uses this daemon (team mode).
    pub team: bool,
}

/// One change, as the audit log keeps it. Appended only; nothing in the API edits it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    /// Who did it.
    pub user: String,
    /// From where: `socket uid=1001`, an IP address, `job 42`, `daemon`.
    pub origin: String,
    /// What kind of change, e.g. `job.submit`, `job.cancel`, `token.create`, `user.role`,
    /// `notebook.open`, `secret.read`.
    pub action: String,
    /// What it was done to (a job, a notebook, a token, a user).
    pub target: String,
    /// The answer's HTTP status, for changes made through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// More about it, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// `GET /api/v1/audit`'s filters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only what this user did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Only from this time on (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    /// Only this action (e.g. `job.cancel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// At most this many, newest first (default 200, at most 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_that_make_no_sense_are_named() {
        assert!(Quota::default().problem().is_none());
        let q = Quota {
            cpus: Some(-1.0),
            ..Quota::default()
        };
        assert!(q.problem().unwrap().contains("cpus"));
        let q = Quota {
            running: Some(0),
            ..Quota::default()
        };
        assert!(q.problem().unwrap().contains("running"));
        let q = Quota {
            gpus: Some(2),
            cpus: Some(8.0),
            ..Quota::default()
        };
        assert_eq!(q.describe(), "2 GPUs, 8 cpus");
        assert!(serde_json::from_str::<Quota>(r#"{"gpu": 1}"#).is_err());
        let q: Quota = serde_json::from_str(r#"{"gpu_memory": "8GiB"}"#).unwrap();
        assert_eq!(q.gpu_memory, Some(ByteSize(8 << 30)));
    }
}
