//! What the executor asks of a cluster's engine, whichever it is: submit a job, list the jobs
//! it knows, cancel one, fetch a log, say its version, size and partitions. [`Engine`] holds
//! one client per kind (slurmrestd, Ray's Jobs API) and speaks to it in these terms.

use petri_domain::{ClusterCapacity, ClusterKind};

use crate::{ray, slurm};

/// Who calls: the account the cluster knows and its token.
#[derive(Clone)]
pub struct Credential {
    pub user: String,
    pub token: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A job as Petri hands it to an engine.
#[derive(Clone, Debug, Default)]
pub struct BatchJob {
    /// The engine's name for it (Slurm's job name; Ray's `submission_id`).
    pub name: String,
    /// The script that runs the job and leaves its exit code on the shared path.
    pub script: String,
    /// Where the same script lies on the shared path (an engine that runs a command, not a
    /// script, runs `/bin/sh` on it).
    pub script_file: String,
    pub partition: Option<String>,
    pub workdir: String,
    /// Where the engine writes the job's output, for one that writes it to a file of ours.
    pub output: String,
    pub environment: Vec<(String, String)>,
    pub cpus: Option<f64>,
    /// Bytes.
    pub memory: Option<u64>,
    /// Minutes.
    pub time_limit_min: Option<u64>,
    pub gpus: Option<u32>,
    /// Petri's job id and attempt, for the engine's own records.
    pub labels: Vec<(String, String)>,
}

/// A job as the engine reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobState {
    pub id: String,
    pub name: String,
    /// The engine's word: `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `CANCELLED`, `STOPPED`…
    pub state: String,
    /// Whether the engine is done with it.
    pub ended: bool,
    /// The exit code as a shell reports it (128+N for signal N), once ended.
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
}

impl JobState {
    /// Still in the engine's own queue: taken, not running yet.
    pub fn waiting(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED"
        )
    }

    /// What the engine says of the job, as Petri shows it.
    pub fn view(&self) -> EngineView {
        EngineView {
            state: self.state.clone(),
            waiting: self.waiting(),
            reason: self.reason.clone().filter(|r| !r.is_empty() && r != "None"),
        }
    }
}

/// What an engine said of a job at the last look (its queue, a pod's phase).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineView {
    /// The engine's own word (`PENDING`, `RUNNING`, a pod's `Pending`).
    pub state: String,
    pub waiting: bool,
    pub reason: Option<String>,
}

impl EngineView {
    /// Taken by the engine, and nothing heard of it yet.
    pub fn waiting(state: &str) -> EngineView {
        EngineView {
            state: state.to_string(),
            waiting: true,
            reason: None,
        }
    }

    pub fn status(self, cluster: &str, id: Option<String>) -> petri_domain::RemoteStatus {
        petri_domain::RemoteStatus {
            cluster: cluster.to_string(),
            id,
            state: self.state,
            waiting: self.waiting,
            reason: self.reason,
        }
    }
}

/// Why a ping failed.
#[derive(Debug)]
pub enum PingError {
    /// Nothing answered at the address.
    Unreachable(String),
    /// It answered, and refused the credential.
    Refused(String),
    /// It answered with another error.
    Other(String),
}

impl std::fmt::Display for PingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PingError::Unreachable(m) | PingError::Refused(m) | PingError::Other(m) => {
                f.write_str(m)
            }
        }
    }
}

/// The client of one cluster's engine.
pub enum Engine {
    Slurm(slurm::Api),
    Ray(ray::Api),
}

impl Engine {
    /// A client for `kind` at `url`; `api_version` picks slurmrestd's dialect.
    pub fn new(kind: ClusterKind, url: &str, api_version: &str) -> Result<Engine, String> {
        match kind {
            ClusterKind::Slurm => slurm::Api::new(url, api_version).map(Engine::Slurm),
            ClusterKind::Ray => ray::Api::new(url).map(Engine::Ray),
            ClusterKind::Kubernetes => {
                Err("Kubernetes is not reached through a shared path".into())
            }
        }
    }

    pub fn kind(&self) -> ClusterKind {
        match self {
            Engine::Slurm(_) => ClusterKind::Slurm,
            Engine::Ray(_) => ClusterKind::Ray,
        }
    }

    /// What the engine calls the job in its words (`Slurm job 12`, `Ray job 0x…`).
    pub fn job_words(&self, id: &str) -> String {
        match self {
            Engine::Slurm(_) => format!("Slurm job {id}"),
            Engine::Ray(_) => format!("Ray job {id}"),
        }
    }

    /// Submits; the engine's id of the job.
    pub async fn submit(&self, cred: &Credential, job: &BatchJob) -> Result<String, String> {
        match self {
            Engine::Slurm(api) => api.submit(cred, job).await.map(|id| id.to_string()),
            Engine::Ray(api) => api.submit(cred, job).await,
        }
    }

    /// Every job the engine still knows.
    pub async fn jobs(&self, cred: &Credential) -> Result<Vec<JobState>, String> {
        match self {
            Engine::Slurm(api) => api.jobs(cred).await,
            Engine::Ray(api) => api.jobs(cred).await,
        }
    }

    pub async fn cancel(&self, cred: &Credential, id: &str) -> Result<(), String> {
        match self {
            Engine::Slurm(api) => {
                let id = id
                    .parse()
                    .map_err(|_| format!("`{id}` is not a Slurm job id"))?;
                api.cancel(cred, id).await
            }
            Engine::Ray(api) => api.stop(cred, id).await,
        }
    }

    /// The job's log so far as the engine keeps it (up to its last whole line until it has
    /// `ended`), for an engine that keeps it itself (Ray); `None` for one that writes it to the
    /// shared path (Slurm).
    pub async fn log(
        &self,
        cred: &Credential,
        id: &str,
        ended: bool,
    ) -> Option<Result<String, String>> {
        match self {
            Engine::Slurm(_) => None,
            Engine::Ray(api) => Some(api.logs(cred, id, ended).await),
        }
    }

    /// The engine's release; an error tells a refused credential from the rest.
    pub async fn ping(&self, cred: &Credential) -> Result<String, PingError> {
        match self {
            Engine::Slurm(api) => api.ping(cred).await,
            Engine::Ray(api) => api.ping(cred).await,
        }
    }

    pub async fn capacity(&self, cred: &Credential) -> Result<ClusterCapacity, String> {
        match self {
            Engine::Slurm(api) => api.capacity(cred).await,
            Engine::Ray(api) => api.capacity(cred).await,
        }
    }

    /// The partitions a job may name (none for an engine without them).
    pub async fn partitions(&self, cred: &Credential) -> Result<Vec<String>, String> {
        match self {
            Engine::Slurm(api) => api.partitions(cred).await,
            Engine::Ray(_) => Ok(Vec::new()),
        }
    }
}
