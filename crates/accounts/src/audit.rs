//! The audit log: every change, who made it, when, from where. Appended only: the API has no
//! route that edits it, and the database refuses updates and deletes of it.

use petri_domain::{AuditEntry, AuditQuery};
use petri_store::StoredAudit;

use crate::{Accounts, AccountsError};

/// One change to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub user: String,
    pub origin: String,
    pub action: String,
    pub target: String,
    pub status: Option<u16>,
    pub detail: String,
}

/// The most entries one read answers.
const MAX_READ: u32 = 5_000;

impl Accounts {
    /// Appends a change (blocking). A failure to write is logged loudly, never hidden.
    pub fn record(&self, r: AuditRecord) {
        let entry = StoredAudit {
            id: 0,
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            user: r.user,
            origin: r.origin,
            action: r.action,
            target: r.target,
            status: r.status,
            detail: r.detail,
        };
        if let Err(e) = self.write(|s| s.append_audit(&entry)) {
            tracing::error!(error = %e, action = %entry.action, user = %entry.user, "could not append to the audit log");
        }
    }

    /// The audit log, newest first.
    pub fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, AccountsError> {
        let limit = q.limit.unwrap_or(200).clamp(1, MAX_READ);
        let rows = self
            .inner
            .reads
            .read(|s| s.audit(q.user.as_deref(), q.since_ms, q.action.as_deref(), limit))?;
        Ok(rows
            .into_iter()
            .map(|a| AuditEntry {
                id: a.id,
                at_ms: a.at_ms,
                user: a.user,
                origin: a.origin,
                action: a.action,
                target: a.target,
                status: a.status,
                detail: a.detail,
            })
            .collect())
    }
}
