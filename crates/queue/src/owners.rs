//! Jobs run as their owner: a daemon running as root (the system service of a shared machine)
//! starts each job as its user's Unix account, with its groups and home, and hands that user
//! the job's output folder and log. A daemon of one user runs everything as that user.

use std::ffi::CString;
use std::path::Path;

use petri_domain::{ErrorBody, ErrorCode, RunAs};

/// Whether this daemon runs jobs as their owners (it runs as root).
pub(crate) fn switches_users() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The Unix account of `user`, when jobs switch to it (`None` for root itself, whose jobs run
/// as they are). An error when there is no such account here.
pub(crate) fn account(user: &str) -> Result<Option<RunAs>, ErrorBody> {
    let found = nix::unistd::User::from_name(user).ok().flatten();
    let Some(u) = found else {
        return Err(ErrorBody::new(
            ErrorCode::Forbidden,
            format!(
                "{user} has no Unix account on this machine, and jobs here run as their owner; \
                 submit from an account of this machine"
            ),
        ));
    };
    if u.uid.is_root() {
        return Ok(None);
    }
    let groups = CString::new(user)
        .ok()
        .and_then(|name| nix::unistd::getgrouplist(&name, u.gid).ok())
        .unwrap_or_else(|| vec![u.gid]);
    Ok(Some(RunAs {
        user: u.name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        groups: groups.into_iter().map(|g| g.as_raw()).collect(),
        home: u.dir,
    }))
}

/// Hands `path` to the job's user (its output folder, its log).
pub(crate) fn hand_over(path: &Path, to: &RunAs) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(to.uid), Some(to.gid))
}
