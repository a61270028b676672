//! Shapes the API speaks beyond jobs: the event stream, listings, the status summary.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{Job, JobId, JobState};

/// A job changed state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobChange {
    pub id: JobId,
    pub number: u64,
    pub name: String,
    pub state: JobState,
    pub attempt: u32,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
}

/// Everything the daemon announces. Adding a variant must be handled by every consumer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A job was accepted into the queue.
    JobSubmitted(JobChange),
    /// A job moved to another state (started, finished, held, released, requeued for a retry).
    JobChanged(JobChange),
    /// A stop (cancel or timeout) was sent to a running job.
    JobStopping(JobChange),
    /// A notebook started, became ready, or stopped (and why: a user, idleness...).
    NotebookChanged(NotebookChange),
    /// The GPUs were sampled (every `gpu.sample_every`, while NVML works): GPU views refresh.
    GpusSampled(GpusSampled),
    /// A pipeline run was created, or it or one of its steps changed state.
    PipelineRunChanged(PipelineRunChange),
}

/// A pipeline run changed (its state or a step's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PipelineRunChange {
    pub id: String,
    pub number: u64,
    pub pipeline: String,
    pub state: String,
}

/// When the GPUs were last sampled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GpusSampled {
    pub at_ms: i64,
}

/// A container image the Docker engine has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Image {
    /// `name:tag` references (empty for an untagged image).
    pub tags: Vec<String>,
    pub id: String,
    /// Bytes on disk.
    pub size: u64,
    /// Seconds since the epoch.
    pub created: i64,
    /// The hash of Petri's recipe it was built from (Petri's own images only).
    pub recipe: Option<String>,
}

/// A notebook changed state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotebookChange {
    pub name: String,
    pub state: crate::NotebookState,
    pub reason: Option<String>,
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::JobSubmitted(_) => "job_submitted",
            Event::JobChanged(_) => "job_changed",
            Event::JobStopping(_) => "job_stopping",
            Event::NotebookChanged(_) => "notebook_changed",
            Event::GpusSampled(_) => "gpus_sampled",
            Event::PipelineRunChanged(_) => "pipeline_run_changed",
        }
    }
}

/// Which jobs to list: a page of them, found through indexes (never a scan of every job).
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
#[serde(default, deny_unknown_fields)]
pub struct ListQuery {
    /// Include finished jobs.
    pub all: bool,
    /// Only jobs in this state (comma-separated states allowed).
    pub state: Option<String>,
    pub queue: Option<String>,
    /// Only this user's jobs (on a shared machine: "mine").
    pub user: Option<String>,
    /// Jobs per page: 100 unless given, at most 1,000 (a larger size is clamped, and the page
    /// says so in `note`).
    pub limit: Option<u32>,
    /// Where the page starts: the `next` of the page before it, for the same filters and order.
    pub after: Option<String>,
    /// `newest` first (the default with `all` or `state`) or `oldest` first (the default for the
    /// jobs that are queued, held or running: the queue's own order of submission).
    pub order: Option<ListOrder>,
}

/// The order of a job list, by submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ListOrder {
    Newest,
    Oldest,
}

/// The most jobs one page holds.
pub const MAX_PAGE: u32 = 1_000;
/// The jobs a page holds when the query does not say.
pub const DEFAULT_PAGE: u32 = 100;

/// One page of a job list.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    /// The cursor of the next page (pass it as `after`); absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The page size used.
    pub limit: u32,
    /// What was changed in the query, such as a page size over the maximum clamped to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The machine at a glance, for `petri top` and dashboards.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Status {
    pub version: String,
    pub counts: HashMap<String, u64>,
    pub capacity_cpus: f64,
    pub capacity_memory: u64,
    pub reserved_cpus: f64,
    pub reserved_memory: u64,
    pub queue_limits: HashMap<String, u32>,
}

/// The GPUs as `petri gpus` shows them: what NVML says, what Petri reserved, and who holds what.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GpuReport {
    /// False when Petri sees no NVIDIA driver: CPU-only mode.
    pub available: bool,
    /// Why there are no GPUs.
    pub reason: Option<String>,
    pub gpus: Vec<GpuView>,
    /// Which GPUs a job can open, in words: a container gets the device files of the GPUs it
    /// reserved and no others; a local job is pointed at its GPUs by `CUDA_VISIBLE_DEVICES`, which
    /// it could ignore (advisory).
    #[serde(default)]
    pub device_isolation: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GpuView {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    /// False when NVML reports the GPU lost: nothing starts on it.
    pub healthy: bool,
    pub memory_total: u64,
    /// Used now, by anyone (NVML).
    pub memory_used: u64,
    /// Reserved by Petri's jobs (slices; a whole GPU counts all its memory).
    pub reserved: u64,
    /// What a new slice could still get here.
    pub free_to_admit: u64,
    pub utilization: u32,
    pub temperature_c: Option<u32>,
    pub power_mw: Option<u32>,
    pub holders: Vec<GpuHolder>,
    /// Kept for a waiting job ahead in line: nothing new starts here but jobs whose time limit
    /// ends them first.
    pub kept_for: Option<GpuKeptFor>,
}

/// The waiting job a GPU drains for.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GpuKeptFor {
    pub job: JobId,
    pub number: u64,
    /// When the time limits of the jobs on the GPUs that job waits for free them (Unix ms); jobs
    /// that end before then may still start here. None: not known (a job there has no limit).
    pub until_ms: Option<i64>,
}

/// GPU figures over time (oldest first), sampled every `gpu.sample_every`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GpuHistory {
    pub points: Vec<GpuPoint>,
    /// What each user's jobs held, sample by sample (users with nothing on a GPU are left out).
    #[serde(default)]
    pub users: Vec<UserGpuPoint>,
}

/// One user's part of the GPUs at one sample.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserGpuPoint {
    pub at_ms: i64,
    pub user: String,
    /// GPUs held, a slice counting its part of its GPU's memory (a whole GPU counts 1).
    pub gpus: f64,
    /// GPU memory their jobs' processes use.
    pub memory_used: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GpuPoint {
    pub at_ms: i64,
    pub index: u32,
    pub memory_used: u64,
    pub reserved: u64,
    pub utilization: u32,
}

/// A job or a foreign process on a GPU.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GpuHolder {
    /// `job` or `foreign`.
    pub kind: String,
    pub job: Option<JobId>,
    pub number: Option<u64>,
    pub name: Option<String>,
    /// `exclusive` (a whole GPU), `shared-unenforced` (a memory slice), or `none` (foreign).
    pub isolation: String,
    /// Whether it can open only its own GPUs: `enforced` (a container, given only their device
    /// files), `advisory` (a local job: `CUDA_VISIBLE_DEVICES` only), or `none` (foreign).
    #[serde(default)]
    pub devices: String,
    pub reserved: u64,
    /// Memory its processes use now.
    pub used: u64,
    /// A slice whose processes use more than it reserved.
    pub over_limit: bool,
    pub pids: Vec<u32>,
}

/// What a pass removed (or, dry, would remove) and what it keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetentionReport {
    pub dry_run: bool,
    /// The jobs whose files went, oldest first (at most 1000 listed; see `removed_jobs`).
    pub removed: Vec<PrunedJob>,
    pub removed_jobs: u64,
    pub freed_bytes: u64,
    /// Finished jobs whose files stay, and what those hold.
    pub kept_jobs: u64,
    pub kept_bytes: u64,
    pub limits: RetentionLimits,
}

/// One job whose files a pass removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PrunedJob {
    pub id: JobId,
    pub number: u64,
    pub finished_at_ms: i64,
    pub bytes: u64,
    /// `age` or `size`: the limit that removed them.
    pub why: String,
}

/// The limits in force, as numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetentionLimits {
    /// Milliseconds; absent when age removes nothing.
    pub max_age_ms: Option<u64>,
    pub max_size: u64,
    pub min_age_ms: u64,
}

/// What a Petri home holds on disk, by kind (the Settings view, `petri gc --dry-run`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HomeUsage {
    /// The home folder.
    pub home: String,
    /// Logs and output folders of finished jobs.
    pub job_files: JobFiles,
    /// The artifact store (pipeline outputs, the step cache, registered models' files).
    pub artifacts_bytes: u64,
    /// The queue's database (with its write-ahead log).
    pub database_bytes: u64,
    /// The tracking and registry databases.
    pub tracking_bytes: u64,
    /// The disk the home is on.
    pub disk_free: u64,
    pub disk_total: u64,
    /// The limits retention keeps finished jobs' files within.
    pub retention: RetentionLimits,
}

/// The files of finished jobs, as retention last measured them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobFiles {
    /// Finished jobs whose log or outputs are still there.
    pub jobs: u64,
    pub bytes: u64,
    /// Of those, jobs that ended since the last retention pass (not measured yet).
    pub unmeasured: u64,
    /// Finished jobs whose files retention removed (their records stay).
    pub pruned_jobs: u64,
}

/// The daemon's settings in effect, as the Settings view shows them (sizes in bytes, durations
/// in milliseconds). They change in `petri.toml` and take effect at the next start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SettingsView {
    pub home: String,
    pub listen: String,
    pub max_body: u64,
    pub kill_grace_ms: u64,
    /// What jobs may reserve.
    pub capacity_cpus: f64,
    pub capacity_memory: u64,
    /// Named queues and their concurrency limits (absent: unlimited).
    pub queues: std::collections::BTreeMap<String, Option<u32>>,
    pub gpu: GpuPolicy,
    /// Host folders jobs and notebooks may mount (and the Petri home).
    pub mount_roots: Vec<String>,
    /// `auto`, `nvidia` or `env`: how reserved GPUs reach a container.
    pub gpu_devices: String,
    pub notebook_image: String,
    /// A notebook idle this long is stopped (0: never).
    pub notebook_idle_timeout_ms: u64,
    pub artifacts_max_size: u64,
    pub artifacts_gc_every_ms: u64,
    pub retention: RetentionLimits,
    pub retention_every_ms: u64,
}

/// How GPUs are shared.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GpuPolicy {
    /// Memory kept free on every GPU.
    pub reserve: u64,
    /// After this wait the first GPU job in line keeps the GPUs it waits for.
    pub claim_after_ms: u64,
    /// `warn` or `kill`: what happens to a job using more GPU memory than its slice.
    pub enforce: String,
    /// GPUs where MPS enforces each slice.
    pub mps: Vec<u32>,
}
