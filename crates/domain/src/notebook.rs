//! Notebooks: a Jupyter server in a container, started and reached through Petri.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ids::JobId;
use crate::spec::Mount;
use crate::units::{ByteSize, Millis};

/// What `petri notebook start` asks for. Starting a stopped notebook again takes its earlier
/// settings unless new ones are given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotebookRequest {
    /// Letters, digits, `-` and `_`; it is part of the notebook's URL.
    pub name: String,
    /// The image (default: the daemon's `notebooks.image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// A slice of one GPU's memory, reserved like a job's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory: Option<ByteSize>,
    /// Whole GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// The folder the notebook works in (default: `PETRI_HOME/notebooks/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub workspace: Option<PathBuf>,
    /// More host folders to mount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Stop after this long without activity (default: the daemon's `notebooks.idle_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Millis>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotebookState {
    /// Waiting in the queue (for GPU memory, say).
    Queued,
    /// The container runs; Jupyter does not answer yet.
    Starting,
    /// Jupyter answers through the proxy.
    Running,
    /// Being stopped.
    Stopping,
    /// Not running; its workspace is kept and `start` resumes it.
    Stopped,
}

/// A notebook as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notebook {
    pub id: String,
    pub name: String,
    /// Whose it is: only they (and admins) open, stop or remove it.
    #[serde(default)]
    pub user: String,
    pub state: NotebookState,
    /// Its path on the notebooks' own address (`POST .../open` gives a full sign-in link).
    pub url: String,
    pub image: String,
    #[schema(value_type = String)]
    pub workspace: PathBuf,
    /// The job that serves it now, or did last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub job: Option<JobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// The GPUs it holds while it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_indices: Vec<u32>,
    pub idle_timeout: Millis,
    /// Since when Jupyter saw no activity (milliseconds since the epoch), while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_ms: Option<i64>,
    /// Why it stopped (stopped by a user, idle for too long, failed...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at_ms: i64,
}

/// A link that signs a browser in to one notebook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotebookLink {
    /// On the notebooks' own address (not the API's); valid once, for a minute.
    pub url: String,
}
