//! The executor contract shared by local processes, containers and clusters. It lives here so that
//! `runtime`, `cluster` and `queue` can meet without depending on each other: the daemon builds a
//! table of executors by target name ([`Executors`]) and hands it to the queue.
//!
//! The contract is crash-safe by construction: an attempt has a status file that the executor
//! claims atomically when the attempt really begins and where it leaves the exit status. After a crash,
//! `probe` tells a run that never began (and now never will) from one still running or finished,
//! so the daemon neither loses a job nor runs it twice.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::ids::JobId;

/// Everything needed to start one attempt of a job.
pub struct Launch {
    /// Which attempt, and where it runs.
    pub key: RunKey,
    pub argv: Vec<String>,
    pub workdir: PathBuf,
    pub env: Vec<(String, String)>,
    /// stdout and stderr are appended here.
    pub log_path: PathBuf,
    /// The attempt's status file: claim marker and exit status.
    pub status_file: PathBuf,
    /// Run in a container instead of as a local process.
    pub container: Option<ContainerLaunch>,
    /// Byte strings (secrets) the executor replaces with `***` in the attempt's output before
    /// it reaches the log. Empty for most jobs, which then pay nothing for masking.
    pub mask: Vec<Vec<u8>>,
    /// Which variables of `env` carry secrets. A local or container job just gets them; an
    /// executor that sends the job elsewhere (a cluster) carries them apart from the rest of
    /// the environment, never in the engine's own description of the job.
    pub secrets: Vec<SecretVar>,
    /// Run as this Unix user (a daemon running as root runs each job as its owner); `None`:
    /// as the daemon's own user.
    pub run_as: Option<RunAs>,
    /// The Petri user whose job this is (a cluster sends it with that user's credentials).
    pub user: String,
    /// What the spec asks for (a cluster's scheduler reserves it there).
    pub resources: crate::Resources,
    /// The spec's time limit.
    pub timeout_ms: Option<u64>,
}

/// A variable of an attempt's environment that carries a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretVar {
    pub name: String,
    /// The variable names a private file holding the secret (on this machine), not the secret
    /// itself: an executor that runs the job elsewhere copies the file there and names the copy.
    pub file: bool,
}

/// A Unix account a job runs as: its uid, primary gid, supplementary groups and home folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: PathBuf,
}

/// What a container attempt needs beyond a process: the image, what to mount, what to publish.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerLaunch {
    pub image: String,
    /// Host folders bound into the container (the workdir and the output folder among them).
    pub mounts: Vec<BindMount>,
    /// Container ports published on the host's loopback interface (the host port is chosen by the
    /// engine; ask the executor for it).
    pub ports: Vec<u16>,
    /// The GPUs the scheduler reserved (UUIDs); only these are passed in.
    pub gpus: Vec<String>,
    /// CPU limit in cores.
    pub cpus: Option<f64>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// Share the host's IPC namespace (an MPS client needs the MPS server's shared memory).
    pub host_ipc: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Names one attempt of a job on one target (`local`, `docker`, a cluster's name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RunKey {
    pub job: JobId,
    pub attempt: u32,
    pub target: String,
}

/// The target of local processes.
pub const TARGET_LOCAL: &str = "local";
/// The target of Docker containers on this machine.
pub const TARGET_DOCKER: &str = "docker";

/// What an executor calls its run: a process id, a container id, a Slurm job id, a Kubernetes
/// name. Opaque to everyone but the executor that made it; stored with the attempt.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunHandle(pub String);

impl RunHandle {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Launch {
    // Environment values can hold secrets: only their names are printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Launch")
            .field("key", &self.key)
            .field("argv0", &self.argv.first())
            .field("workdir", &self.workdir)
            .field(
                "env",
                &self.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            )
            .field("masked", &self.mask.len())
            .field("secrets", &self.secrets)
            .finish()
    }
}

/// How a stop is asked for: politely first, then for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    Terminate,
    Kill,
}

/// How an attempt ended, as the executor saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitReport {
    pub job: JobId,
    pub attempt: u32,
    /// The exit code; 128+N when the job died of signal N.
    pub exit_code: Option<i32>,
}

/// What is known about an attempt from its status file (used after a restart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunProbe {
    /// It finished with this code.
    Exited(i32),
    /// It is still running; the executor's handle on it.
    Alive { handle: RunHandle },
    /// It never began, and `probe` made sure it never will.
    NeverStarted,
    /// It began, but its process is gone without leaving an exit status.
    Lost,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot prepare {path}: {source}")]
    Prepare {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot signal {handle}: {message}")]
    Signal { handle: RunHandle, message: String },
    /// The container engine is unreachable or refused the request.
    #[error("{0}")]
    Container(String),
    /// A cluster is unreachable or refused the request (its own words).
    #[error("{0}")]
    Remote(String),
}

/// Runs attempts somewhere. Every call returns promptly or says it does not
/// ([`Executor::starts_inline`]); the queue's engine thread never waits on a remote system.
///
/// Crash safety: `start` is idempotent for one [`RunKey`] (a second call after a crash finds
/// the attempt's claim and runs nothing twice); `probe` tells, after a restart, a run that never
/// began (and now never will) from one that runs or ended.
pub trait Executor: Send + Sync {
    /// Creates and starts an attempt; `on_exit` is called once when it ends (from any thread).
    /// Returns the executor's handle on the run.
    fn start(
        &self,
        launch: Launch,
        on_exit: Box<dyn FnOnce(ExitReport) + Send>,
    ) -> Result<RunHandle, ExecError>;

    /// Whether `start` is quick enough for the engine thread (a fork). When false, the engine
    /// starts attempts on a thread of its own and hears back with a command.
    fn starts_inline(&self) -> bool {
        false
    }

    /// Checks a spec for this target before it is queued (off the engine thread): a container's
    /// image must be in the engine, a cluster must accept what the spec asks for. The refusal
    /// says what to do.
    fn admit(&self, _spec: &crate::JobSpec) -> Result<(), crate::ErrorBody> {
        Ok(())
    }

    /// What `admit` can tell without asking anyone (no I/O): whether this target can express
    /// the spec at all. The engine thread asks it before it bursts an `auto` job here.
    fn accepts(&self, _spec: &crate::JobSpec) -> Result<(), crate::ErrorBody> {
        Ok(())
    }

    /// Signals the whole attempt (its process group, its container, its remote job).
    fn stop(&self, run: &RunKey, handle: &RunHandle, signal: StopSignal) -> Result<(), ExecError>;

    /// The attempt's status, from its status file and the executor's own view, claiming the
    /// attempt first if it never began.
    fn probe(&self, run: &RunKey, status_file: &Path) -> RunProbe;

    /// What to mask in the output of an attempt started by an earlier daemon (its [`Launch::mask`]
    /// is gone with that daemon): called after a restart, before the first `probe`, for every
    /// attempt that has something to mask. An executor whose masking outlives the daemon (the
    /// local one: its filter is a process of its own) ignores it.
    fn mask_adopted(&self, _run: &RunKey, _mask: Vec<Vec<u8>>) {}

    /// Removes what is left of an attempt whose end is recorded (a container, a remote job's
    /// record). Idempotent, and it does not wait: it must not hold the engine thread.
    fn remove(&self, _run: &RunKey) {}

    /// Removes what this executor left of attempts of this home that are not in `keep` (after a
    /// restart: containers of ended attempts, say). Returns how many were removed.
    fn sweep(&self, _keep: &[RunKey]) -> Result<usize, ExecError> {
        Ok(0)
    }

    /// The run that a process of this machine belongs to (to tell whose a GPU process is), as
    /// this executor's handle; None when it is not one of this executor's kind.
    fn owner_of_process(&self, _pid: u32) -> Option<RunHandle> {
        None
    }

    /// What a remote engine says of the attempt of `job` it runs now (it may still wait in the
    /// engine's own queue); `None` for a job not on this executor. From memory: it is asked for
    /// every running job a list shows.
    fn remote_status(&self, _job: crate::JobId) -> Option<crate::RemoteStatus> {
        None
    }

    /// Where a port of a running attempt is reachable from the daemon (service jobs).
    fn endpoint(&self, _run: &RunKey, _port: u16) -> Option<std::net::SocketAddr> {
        None
    }
}

/// The executors of one daemon by target name. The daemon fills it; the queue looks a job's
/// target up here, so `runtime` never depends on a cluster crate and the queue on neither.
/// Clones share one table: a cluster added while the daemon runs is a target at once.
#[derive(Clone, Default)]
pub struct Executors {
    by_target: std::sync::Arc<
        std::sync::RwLock<std::collections::BTreeMap<String, std::sync::Arc<dyn Executor>>>,
    >,
}

impl Executors {
    pub fn register(&self, target: impl Into<String>, exec: std::sync::Arc<dyn Executor>) {
        self.write().insert(target.into(), exec);
    }
    /// Takes a target out (a cluster removed); attempts already on it keep their executor.
    pub fn unregister(&self, target: &str) -> Option<std::sync::Arc<dyn Executor>> {
        self.write().remove(target)
    }
    pub fn get(&self, target: &str) -> Option<std::sync::Arc<dyn Executor>> {
        self.read().get(target).cloned()
    }
    /// Every executor by target (a snapshot).
    pub fn all(&self) -> Vec<(String, std::sync::Arc<dyn Executor>)> {
        self.read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
    /// What the cluster running `job` says of it (see [`Executor::remote_status`]).
    pub fn remote_status(&self, job: crate::JobId) -> Option<crate::RemoteStatus> {
        self.read()
            .iter()
            .filter(|(target, _)| is_remote_target(target))
            .find_map(|(_, exec)| exec.remote_status(job))
    }
    pub fn targets(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }
    fn read(
        &self,
    ) -> std::sync::RwLockReadGuard<
        '_,
        std::collections::BTreeMap<String, std::sync::Arc<dyn Executor>>,
    > {
        self.by_target.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(
        &self,
    ) -> std::sync::RwLockWriteGuard<
        '_,
        std::collections::BTreeMap<String, std::sync::Arc<dyn Executor>>,
    > {
        self.by_target.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether `target` names a cluster rather than this machine (`local`, `docker`, `auto`).
pub fn is_remote_target(target: &str) -> bool {
    !matches!(target, TARGET_LOCAL | TARGET_DOCKER | TARGET_AUTO)
}

/// The target that runs a job where it can start soonest (this machine first).
pub const TARGET_AUTO: &str = "auto";

/// A cluster's name: what `target:` says to send a job there. Lower-case letters, digits, `-`
/// and `_`, starting with a letter, at most 63 characters, and not one of this machine's own
/// targets.
pub fn check_cluster_name(name: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        return Err(format!(
            "`{name}` is not a cluster name: lower-case letters, digits, `-` and `_`, starting \
             with a letter, at most 63 characters"
        ));
    }
    if !is_remote_target(name) {
        return Err(format!("`{name}` is one of this machine's own targets"));
    }
    Ok(())
}
