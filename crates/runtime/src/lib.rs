//! Executors for this machine. Today: supervised local processes. (Docker containers come next, in
//! this crate, which is the only one allowed to know bollard.)

mod local;

pub use local::LocalExecutor;

/// The process group of `pid` (Linux: from `/proc/<pid>/stat`), to tell whose a GPU process is.
pub fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state, ppid, pgrp.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(2)?.parse().ok()
}
