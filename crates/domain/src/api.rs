//! Shapes the API speaks beyond jobs: the event stream, listings, the status summary.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{JobId, JobState};

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

/// Which jobs to list.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ListQuery {
    /// Include finished jobs.
    pub all: bool,
    /// Only jobs in this state (comma-separated states allowed).
    pub state: Option<String>,
    pub queue: Option<String>,
    /// At most this many jobs (the newest when `all`).
    pub limit: Option<u32>,
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
    pub reserved: u64,
    /// Memory its processes use now.
    pub used: u64,
    /// A slice whose processes use more than it reserved.
    pub over_limit: bool,
    pub pids: Vec<u32>,
}
