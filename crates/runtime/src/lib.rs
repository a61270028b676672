//! Executors for this machine: supervised local processes and Docker containers. This crate is the
//! only one that knows bollard. Both mask the secrets of an attempt (`Launch::mask`) in its output
//! before it reaches the log: a local job through a filter process of its own (`filter.rs`), a
//! container's log as the daemon copies it.

mod docker;
mod filter;
mod local;
mod mask;
mod side;

pub use docker::{
    DockerExecutor, GpuDevices, LABEL_ATTEMPT, LABEL_HOME, LABEL_JOB, container_name,
};
pub use local::LocalExecutor;
pub use mask::{MaskStream, Masker};
pub use side::SideRuntime;

/// The process group of `pid` (Linux: from `/proc/<pid>/stat`), to tell whose a GPU process is.
pub fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state, ppid, pgrp.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// The container a process runs in, from its cgroup (Docker's cgroupfs and systemd layouts), as
/// the 64-hex-digit container id.
pub fn container_of(pid: u32) -> Option<String> {
    container_in_cgroup(&std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?)
}

/// The container id in the text of `/proc/<pid>/cgroup`.
fn container_in_cgroup(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|line| {
        let path = line.rsplit(':').next()?;
        path.split('/').find_map(|part| {
            let id = part
                .strip_prefix("docker-")
                .and_then(|p| p.strip_suffix(".scope"))
                .unwrap_or(part);
            (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_are_found_in_both_cgroup_layouts() {
        let id = "fa7e4c65eeebcfb4157e51ece867a0c2b62c2be67fbbc7cae437643fa229ffa1";
        let v1 = format!("4:memory:/docker/{id}\n0::/docker/{id}\n");
        assert_eq!(container_in_cgroup(&v1).as_deref(), Some(id));
        let systemd = format!("0::/system.slice/docker-{id}.scope\n");
        assert_eq!(container_in_cgroup(&systemd).as_deref(), Some(id));
        assert_eq!(
            container_in_cgroup("0::/user.slice/user-1000.slice/session-2.scope\n"),
            None
        );
    }
}
