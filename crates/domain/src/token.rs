//! API tokens as the API shows them: scopes, what `petri token create` asks for, what it answers.

use serde::{Deserialize, Serialize};

use crate::units::Millis;

/// What a token may do. A token holds one or more; the owner's holds them all.
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
pub enum Scope {
    /// Read the queue, jobs, logs, GPUs, notebooks and settings.
    Read,
    /// Also submit, cancel, hold and release jobs; start, stop and open notebooks.
    Submit,
    /// Everything, including API tokens and other users' work.
    Admin,
    /// Only the tracking API (experiments, runs, metrics; what the MLflow client calls).
    Tracking,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Submit, Scope::Admin, Scope::Tracking];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Submit => "submit",
            Scope::Admin => "admin",
            Scope::Tracking => "tracking",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether holding `self` grants `needed`: admin grants all, submit grants read.
    pub fn grants(self, needed: Scope) -> bool {
        self == needed || self == Scope::Admin || (self == Scope::Submit && needed == Scope::Read)
    }
}

/// What `petri token create` asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// A name to tell it by: 1 to 64 letters, digits, `.`, `_` and `-`; unique.
    pub name: String,
    /// What it may do (default: `submit`, which includes `read`).
    #[serde(default)]
    pub scopes: Vec<Scope>,
    /// How long it is valid from now, e.g. `30d` (default: until revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<Millis>,
    /// Whose it is (admins only; default: the caller's): how a team member who signs in from a
    /// browser or another machine gets a token of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// A token as shown (never its secret).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// The user it acts for.
    pub user: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub last_used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    /// `active`, `expired` or `revoked`.
    pub state: String,
}

/// A token just created: its secret is shown this once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewToken {
    /// The secret to send as `Authorization: Bearer <token>`. Petri keeps only its hash.
    pub token: String,
    pub info: TokenInfo,
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Scope, String> {
        Scope::parse(s).ok_or_else(|| {
            format!("`{s}` is not a scope; scopes are read, submit, admin and tracking")
        })
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
