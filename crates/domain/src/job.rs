//! A job as Petri tracks it, its states and the rules for moving between them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::JobId;
use crate::spec::JobSpec;

/// The life of a job. `Queued` and `Held` wait, `Running` runs, the rest are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Held,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Queued,
        JobState::Held,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::TimedOut,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled | JobState::TimedOut
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Held => "held",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::TimedOut => "timed_out",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// May a job in this state be held? Only waiting jobs can.
    pub fn can_hold(self) -> bool {
        self == JobState::Queued
    }
    pub fn can_release(self) -> bool {
        self == JobState::Held
    }
    pub fn can_cancel(self) -> bool {
        !self.is_terminal()
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a waiting job is not running yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PendingReason {
    /// Not enough free cpus or memory; `needs` and `free` say how much.
    Resources { needs: String, free: String },
    /// A job it depends on has not succeeded yet.
    Dependency { job: JobId, number: u64 },
    /// Held by a user.
    Held,
    /// Its queue already runs as many jobs as it may.
    QueueLimit { queue: String, limit: u32 },
    /// Waiting out the retry backoff.
    Backoff { until_ms: i64 },
    /// A job ahead of it holds the free resources for itself.
    Priority { behind: JobId },
    /// No GPU has enough unreserved memory for its slice.
    GpuMemory { needs: String, free: String },
    /// Not enough GPUs are free to be given whole.
    Gpus { needs: u32, free: u32 },
    /// Every MIG instance of its profile is taken.
    MigInstance { free: u32 },
    /// It fits only on GPUs kept for a GPU job ahead in line (`behind`); a time limit of at most
    /// `max_timeout`, when known, would let it use them until that job can start (backfill).
    GpuKept {
        behind: JobId,
        max_timeout: Option<crate::Millis>,
    },
    /// Its user (or the user's Unix group) already holds what their quota allows.
    Quota { user: String, limit: String },
}

impl std::fmt::Display for PendingReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PendingReason::Resources { needs, free } => {
                write!(f, "waiting for resources: needs {needs}, {free} free")
            }
            PendingReason::Dependency { number, .. } => {
                write!(f, "waiting for dependency #{number} to succeed")
            }
            PendingReason::Held => f.write_str("held: `petri release` lets it run"),
            PendingReason::QueueLimit { queue, limit } => {
                write!(f, "queue `{queue}` already runs its limit of {limit}")
            }
            PendingReason::Backoff { until_ms } => {
                write!(
                    f,
                    "retrying after backoff, at {}",
                    crate::job::format_ms(*until_ms)
                )
            }
            PendingReason::Priority { .. } => {
                f.write_str("waiting behind a larger job that holds the free resources")
            }
            PendingReason::GpuMemory { needs, free } => write!(
                f,
                "waiting for GPU memory: needs {needs} on one GPU, at most {free} free"
            ),
            PendingReason::Gpus { needs, free } => {
                write!(f, "waiting for a whole GPU: needs {needs}, {free} free")
            }
            PendingReason::MigInstance { .. } => {
                f.write_str("waiting for a free MIG instance of its profile")
            }
            PendingReason::GpuKept {
                max_timeout: Some(t),
                ..
            } => write!(
                f,
                "waiting for a GPU kept for a job ahead in line; a timeout of at most {t} \
                 would let it start now"
            ),
            PendingReason::GpuKept { .. } => {
                f.write_str("waiting for a GPU kept for a job ahead in line")
            }
            PendingReason::Quota { user, limit } => {
                write!(
                    f,
                    "quota: {user} already holds what their quota allows ({limit})"
                )
            }
        }
    }
}

/// The pending reason and the place in line of a waiting job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Pending {
    pub reason: PendingReason,
    /// Human-readable form of `reason`.
    pub message: String,
    /// 1 = the next job to start when resources allow; none for held jobs, which are not in line.
    pub position: Option<u64>,
}

/// How one attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
    /// The process vanished without an exit status (machine restart, killed from outside).
    Lost,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::Cancelled => "cancelled",
            RunOutcome::TimedOut => "timed_out",
            RunOutcome::Lost => "lost",
        }
    }
    pub fn parse(s: &str) -> Option<RunOutcome> {
        [
            RunOutcome::Running,
            RunOutcome::Succeeded,
            RunOutcome::Failed,
            RunOutcome::Cancelled,
            RunOutcome::TimedOut,
            RunOutcome::Lost,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// One attempt at running a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    pub attempt: u32,
    /// Where it ran: `local`, `docker`, a cluster's name.
    pub target: String,
    /// The executor's handle on it (a process id, a container id, a remote job id).
    pub handle: Option<String>,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub outcome: RunOutcome,
}

/// Which capability made a job, set by Petri beside the spec (never read from it): a user's
/// submission, a notebook's server, a pipeline's step, a model deployment. The capability that
/// made a job adds its launch environment through the hook it registers with the queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Submitted by a user (CLI, API, web UI).
    #[default]
    Submission,
    /// The server of a notebook (its id).
    Notebook { id: String },
    /// A step of a pipeline run.
    PipelineStep { run: String, step: String },
    /// A replica of a model deployment.
    Deployment { id: String },
}

impl Origin {
    /// What holds a GPU, as `petri gpus` and the GPU view name it: `job`, `notebook`,
    /// `deployment`.
    pub fn holder_kind(&self) -> &'static str {
        match self {
            Origin::Submission | Origin::PipelineStep { .. } => "job",
            Origin::Notebook { .. } => "notebook",
            Origin::Deployment { .. } => "deployment",
        }
    }

    /// The kind alone, the key launch hooks are registered under.
    pub fn kind(&self) -> OriginKind {
        match self {
            Origin::Submission => OriginKind::Submission,
            Origin::Notebook { .. } => OriginKind::Notebook,
            Origin::PipelineStep { .. } => OriginKind::PipelineStep,
            Origin::Deployment { .. } => OriginKind::Deployment,
        }
    }
}

/// The kinds of [`Origin`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OriginKind {
    Submission,
    Notebook,
    PipelineStep,
    Deployment,
}

/// On whose behalf a job runs: the Petri user (a Unix user on a shared machine). Set by Petri from
/// who called, never from the spec.
pub type UserName = String;

/// A job as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    pub id: JobId,
    /// A short number for people, unique within one Petri home.
    pub number: u64,
    pub name: String,
    pub state: JobState,
    pub queue: String,
    pub priority: i32,
    /// Which capability made it (set by Petri).
    #[serde(default)]
    pub origin: Origin,
    /// On whose behalf it runs (set by Petri).
    #[serde(default)]
    pub user: UserName,
    pub spec: JobSpec,
    /// This job's values when it is part of a sweep.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub array_values: BTreeMap<String, String>,
    /// Jobs that must succeed first, resolved to ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<JobId>,
    pub submitted_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub exit_code: Option<i32>,
    /// Why the job ended as it did (failed, cancelled, timed out), in words.
    pub reason: Option<String>,
    /// Attempts so far.
    pub attempts: u32,
    /// Filled for waiting jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// Every attempt, oldest first (only in single-job answers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<Run>,
    /// Set once retention removed the job's log and outputs; the record itself stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned: Option<Pruned>,
    /// For a job running on a cluster: what the engine says of it (it may still wait in the
    /// engine's own queue). Never stored; filled as the job is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteStatus>,
}

/// What a cluster's engine says of a job's current attempt there. Petri calls a job running
/// once the engine took it; the engine may still hold it in its own queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RemoteStatus {
    /// The cluster: the attempt's target.
    pub cluster: String,
    /// The engine's name for the job: Slurm's job id, Ray's submission id, the Kubernetes Job.
    pub id: Option<String>,
    /// The engine's own word: `PENDING`, `RUNNING`, a pod's phase.
    pub state: String,
    /// Still waiting in the engine's queue: not running yet.
    pub waiting: bool,
    /// Why, in the engine's words (Slurm's `Resources`, a pod's `ErrImagePull`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl std::fmt::Display for RemoteStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.waiting { "waits on" } else { "runs on" };
        write!(f, "{what} {}", self.cluster)?;
        match &self.reason {
            Some(r) => write!(f, ": {} ({r})", self.state),
            None => write!(f, ": {}", self.state),
        }
    }
}

/// What retention removed of a finished job, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Pruned {
    pub at_ms: i64,
    /// The bytes its log and output folder held.
    pub bytes: u64,
    /// Which limit removed them: `age` (`retention.max_age`), `size` (`retention.max_size`) or
    /// `gc` (the user's `petri gc`, within the same limits).
    pub why: String,
}

/// Formats unix milliseconds as RFC 3339 UTC with seconds.
pub fn format_ms(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
