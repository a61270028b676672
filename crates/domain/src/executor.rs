//! The executor contract shared by local processes, containers and clusters. It lives here so that
//! `runtime`, `cluster` and `daemon` can meet without depending on each other.
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
    pub job: JobId,
    pub attempt: u32,
    pub argv: Vec<String>,
    pub workdir: PathBuf,
    pub env: Vec<(String, String)>,
    /// stdout and stderr are appended here.
    pub log_path: PathBuf,
    /// The attempt's status file: claim marker and exit status.
    pub status_file: PathBuf,
    /// Run in a container instead of as a local process.
    pub container: Option<ContainerLaunch>,
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

/// Names one attempt for `stop` and `probe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RunKey {
    pub job: JobId,
    pub attempt: u32,
    /// Whether the attempt runs in a container.
    pub container: bool,
}

impl fmt::Debug for Launch {
    // Environment values can hold secrets: only their names are printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Launch")
            .field("job", &self.job)
            .field("attempt", &self.attempt)
            .field("argv0", &self.argv.first())
            .field("workdir", &self.workdir)
            .field(
                "env",
                &self.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A started attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartedRun {
    pub pid: u32,
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunProbe {
    /// It finished with this code.
    Exited(i32),
    /// It is still running under this process id.
    Alive { pid: u32 },
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
    #[error("cannot signal process group {pid}: {message}")]
    Signal { pid: u32, message: String },
    /// The container engine is unreachable or refused the request.
    #[error("{0}")]
    Container(String),
}

/// Runs attempts somewhere. Starting is non-blocking; `on_exit` is called once when the attempt
/// ends (from any thread).
pub trait Executor: Send + Sync {
    fn start(
        &self,
        launch: Launch,
        on_exit: Box<dyn FnOnce(ExitReport) + Send>,
    ) -> Result<StartedRun, ExecError>;

    /// Signals the whole attempt (its process group, its container). `pid` is what `start` or
    /// `probe` returned.
    fn stop(&self, run: RunKey, pid: u32, signal: StopSignal) -> Result<(), ExecError>;

    /// Inspects an attempt from its status file, claiming it first if it never began.
    fn probe(&self, run: RunKey, status_file: &Path) -> RunProbe;
}
