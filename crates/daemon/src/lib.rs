//! The daemon: wiring only. It loads the settings, takes the home's lock, opens the database,
//! builds the table of executors by target (`local`, `docker`), starts the queue with the launch
//! hooks of the capabilities, and hands out one handle per capability. It knows no HTTP
//! (`petri-api` puts its routes in front) and holds no capability logic: that lives in the
//! capability crates (`queue`, `notebooks`, `accounts`, `artifacts`), which never depend on this
//! one.

mod settings;

use std::fs::File;
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};
use petri_accounts::Accounts;
use petri_artifacts::{ArtifactStore, Artifacts};
use petri_domain::{ErrorBody, ErrorCode, Executors, HomeUsage, JobFiles, OriginKind};
use petri_notebooks::Notebooks;
use petri_queue::{LaunchHooks, Queue, QueueError};
use petri_secrets::Secrets;
use petri_store::{ReadPool, Store};

pub use petri_accounts as accounts;
pub use petri_artifacts as artifacts;
pub use petri_domain::{Event, JobChange, ListQuery, Status};
pub use petri_notebooks::{JUPYTER_PORT, Upstream};
pub use petri_pipeline as pipeline;
pub use petri_queue::{Home, LogChunk, Submitter, now_ms};
pub use petri_registry as registry;
pub use petri_secrets as secrets;
pub use petri_serving as serving;
pub use petri_tracking as tracking;
pub use settings::{
    ArtifactSettings, GpuSettings, QueueSettings, Settings, SettingsError, TlsSettings,
};

/// Why the daemon did not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] petri_store::StoreError),
    #[error(transparent)]
    Accounts(#[from] petri_accounts::AccountsError),
    #[error(transparent)]
    Artifacts(#[from] petri_artifacts::ArtifactError),
    #[error(transparent)]
    Tracking(#[from] petri_tracking::TrackingError),
    #[error(transparent)]
    Registry(#[from] petri_registry::RegistryError),
    #[error(transparent)]
    Serving(#[from] petri_serving::ServingError),
    #[error("{0}")]
    Io(String),
}

impl From<DaemonError> for ErrorBody {
    fn from(e: DaemonError) -> Self {
        match e {
            DaemonError::Queue(q) => q.into(),
            DaemonError::Accounts(a) => a.into(),
            DaemonError::Artifacts(a) => a.into(),
            DaemonError::Tracking(t) => t.into(),
            DaemonError::Registry(r) => r.into(),
            DaemonError::Serving(r) => r.into(),
            other => ErrorBody::new(ErrorCode::Internal, other.to_string()),
        }
    }
}

/// The started daemon: one handle per capability; cheap to clone. Dropping the last clone stops
/// the queue's engine (running jobs go on and are re-adopted at the next start).
#[derive(Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    queue: Queue,
    clusters: petri_cluster::Clusters,
    notebooks: Notebooks,
    accounts: Accounts,
    secrets: Secrets,
    artifacts: Artifacts,
    pipelines: petri_pipeline::Pipelines,
    tracking: petri_tracking::Tracking,
    registry: petri_registry::Registry,
    serving: petri_serving::Serving,
    /// Where jobs reach the tracking API (set by whoever serves it).
    tracking_uri: petri_tracking::jobs::TrackingUri,
    docker: Arc<petri_runtime::DockerExecutor>,
    retention: Arc<petri_queue::retention::Retention>,
    _lock: Flock<File>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Service watchers may still hold queue handles: stop the engine with the daemon.
        self.queue.stop();
    }
}

/// How many read connections the capabilities share.
const READERS: u32 = 8;

impl Daemon {
    /// Opens the home (creating it), takes its lock, recovers the queue and starts everything.
    /// Must be called inside a tokio runtime: local jobs are reaped there.
    pub fn start(settings: Settings) -> Result<Daemon, DaemonError> {
        let config = settings.queue_config();
        let home = config.home.clone();
        home.prepare()
            .map_err(|e| DaemonError::Io(format!("preparing {}: {e}", home.root().display())))?;
        let lock = lock_home(&home)?;
        let store = Store::open(&home.db())?;
        let reads = ReadPool::open(&home.db(), READERS)?;
        let accounts = Accounts::open(
            home.root(),
            Store::open(&home.db())?,
            reads.clone(),
            settings.team.join,
        )?;
        let artifacts = Artifacts::new(
            ArtifactStore::open(&home.root().join("artifacts"))?,
            Store::open(&home.db())?,
            reads.clone(),
            settings.artifacts.policy(),
        );

        let docker = Arc::new(
            petri_runtime::DockerExecutor::new(
                home.root(),
                match settings.docker.gpu_devices {
                    petri_queue::GpuDevices::Auto => petri_runtime::GpuDevices::Auto,
                    petri_queue::GpuDevices::Nvidia => petri_runtime::GpuDevices::Nvidia,
                    petri_queue::GpuDevices::Env => petri_runtime::GpuDevices::EnvOnly,
                },
            )
            .map_err(|e| DaemonError::Io(format!("starting the Docker client: {e}")))?,
        );
        let executors = Executors::default();
        executors.register(
            petri_domain::TARGET_LOCAL,
            Arc::new(petri_runtime::LocalExecutor::new(
                tokio::runtime::Handle::current(),
            )),
        );
        executors.register(petri_domain::TARGET_DOCKER, docker.clone());

        let keys = Arc::new(
            petri_notebooks::NotebookKeys::load(&petri_notebooks::key_path(home.root()))
                .map_err(|e| DaemonError::Io(format!("the notebook key: {e}")))?,
        );
        let mut hooks = LaunchHooks::default();
        hooks.register(
            OriginKind::Notebook,
            petri_notebooks::launch_hook(keys.clone()),
        );
        // A model replica's key, from the same home secret.
        hooks.register(
            OriginKind::Deployment,
            petri_serving::deploy::launch_hook(keys.clone()),
        );
        // Every job's secrets, whatever made it: checked at submit, given at launch, masked.
        let secrets = Secrets::open(home.root())
            .map_err(|e| DaemonError::Io(format!("opening the secrets: {e}")))?;
        hooks.register_admission(secrets.admission_hook());
        hooks.register_every(secrets.attempt_hook());
        // ... and each attempt given a secret is a read of it, in the audit log.
        hooks.register_every(Arc::new(SecretReads {
            accounts: accounts.clone(),
            runtime: tokio::runtime::Handle::current(),
        }));

        // Every job's tracking environment (MLFLOW_TRACKING_URI, its token, MLFLOW_RUN_ID);
        // the address is filled in once the API listens.
        let tracking_uri = petri_tracking::jobs::TrackingUri::default();
        let job_tokens = accounts.clone();
        hooks.register_every(Arc::new(petri_tracking::jobs::TrackingEnv::new(
            tracking_uri.clone(),
            move |job| job_tokens.job_token(job),
        )));

        hooks.register(
            OriginKind::PipelineStep,
            petri_pipeline::launch_hook(home.clone()),
        );

        // Clusters register their executors before the queue starts, so that it re-attaches
        // to the jobs running there.
        let clusters = petri_cluster::Clusters::open(
            home.root(),
            secrets.clone(),
            executors.clone(),
            std::time::Duration::from_secs(1),
        )
        .map_err(|e| DaemonError::Io(format!("the clusters: {e}")))?;
        hooks.register_admission(clusters.admission_hook());

        let queue = Queue::start(config, store, reads.clone(), executors, hooks)?;
        // Quotas live with the accounts; the engine applies them.
        let quotas_to = queue.clone();
        accounts.on_quotas(Box::new(move |book| quotas_to.set_quotas(book)));
        let pipelines = petri_pipeline::Pipelines::start(
            queue.clone(),
            Store::open(&home.db())?,
            artifacts.clone(),
            petri_pipeline::PipelineConfig {
                root: home.root().join("pipelines"),
                components: settings
                    .pipeline
                    .components
                    .clone()
                    .unwrap_or_else(|| home.root().join("components")),
            },
        )?;
        let notebooks = Notebooks::new(
            queue.clone(),
            Store::open(&home.db())?,
            keys.clone(),
            settings.notebooks.clone(),
        );
        // Its own database file and writer: metric writes never wait on the queue's.
        let tracking = petri_tracking::Tracking::open(&home.root().join("tracking.db"))?;
        // The registry reads versions from tracking's runs and holds their files in the store;
        // a version's lineage names the pipeline run its job was a step of.
        let jobs = queue.clone();
        let pipeline_of: petri_registry::PipelineOf = Arc::new(move |job: String| {
            let jobs = jobs.clone();
            Box::pin(async move {
                match jobs.get(&job).await.ok()?.origin {
                    petri_domain::Origin::PipelineStep { run, .. } => Some(run),
                    _ => None,
                }
            })
        });
        let registry = petri_registry::Registry::open(
            &home.root().join("registry.db"),
            tracking.clone(),
            artifacts.clone(),
            Some(pipeline_of),
        )?;
        close_runs_with_their_jobs(&queue, &tracking);
        // Replicas run this very program (`petri model-server`).
        let exe = std::env::current_exe()
            .map_err(|e| DaemonError::Io(format!("finding Petri's own program: {e}")))?;
        let serving = petri_serving::Serving::open(
            home.root(),
            queue.clone(),
            registry.clone(),
            artifacts.clone(),
            keys.clone(),
            exe,
            settings.notebooks.image.clone(),
        )?;
        serving.start();
        let gc_every = settings.artifacts.gc_every.as_duration();
        let retention = Arc::new(petri_queue::retention::Retention::new(
            home.clone(),
            settings.retention.clone(),
            Store::open(&home.db())?,
            reads.clone(),
        ));
        let retention_every = settings.retention.every.as_duration();
        let inner = Arc::new(Inner {
            settings,
            queue,
            clusters,
            notebooks,
            accounts,
            secrets,
            artifacts,
            pipelines,
            tracking,
            registry,
            serving,
            tracking_uri,
            docker,
            retention,
            _lock: lock,
        });
        petri_queue::service::Services::every(retention_every, Arc::downgrade(&inner), |inner| {
            let retention = inner.retention.clone();
            drop(inner);
            async move {
                let pass = tokio::task::spawn_blocking(move || {
                    retention.run(false, petri_queue::now_ms())
                });
                match pass.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "the retention pass failed"),
                    Err(e) => tracing::warn!(error = %e, "the retention pass panicked"),
                }
            }
        });
        petri_queue::service::Services::every(gc_every, Arc::downgrade(&inner), |inner| {
            let artifacts = inner.artifacts.clone();
            let registry = inner.registry.clone();
            let tracking = inner.tracking.clone();
            let kept = inner.settings.artifacts.purge_deleted_runs_after.0;
            // The round must not keep the daemon alive.
            drop(inner);
            collect_garbage(
                artifacts,
                registry,
                tracking,
                kept.min(i64::MAX as u64) as i64,
            )
        });
        Ok(Daemon { inner })
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }
    pub fn home(&self) -> &Home {
        self.inner.queue.home()
    }
    pub fn queue(&self) -> &Queue {
        &self.inner.queue
    }
    /// Retention of finished jobs' logs and outputs.
    pub fn retention(&self) -> &Arc<petri_queue::retention::Retention> {
        &self.inner.retention
    }

    /// The settings in effect, typed for the Settings view.
    pub async fn settings_view(&self) -> petri_domain::SettingsView {
        let s = &self.inner.settings;
        let status = self.inner.queue.status().await.ok();
        petri_domain::SettingsView {
            home: s.home.display().to_string(),
            listen: s.listen.to_string(),
            max_body: s.max_body.0,
            kill_grace_ms: s.kill_grace.0,
            capacity_cpus: status.as_ref().map_or(0.0, |st| st.capacity_cpus),
            capacity_memory: status.as_ref().map_or(0, |st| st.capacity_memory),
            queues: s
                .queues
                .iter()
                .map(|(k, v)| (k.clone(), v.concurrency))
                .collect(),
            gpu: petri_domain::GpuPolicy {
                reserve: s.gpu.reserve.0,
                claim_after_ms: s.gpu.claim_after.0,
                enforce: word(&s.gpu.enforce),
                mps: s.gpu.mps.clone(),
            },
            mount_roots: s
                .docker
                .mount_roots
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            gpu_devices: word(&s.docker.gpu_devices),
            notebook_image: s.notebooks.image.clone(),
            notebook_idle_timeout_ms: s.notebooks.idle_timeout.0,
            artifacts_max_size: s.artifacts.max_size.0,
            artifacts_gc_every_ms: s.artifacts.gc_every.0,
            retention: self.inner.retention.limits(),
            retention_every_ms: s.retention.every.0,
        }
    }

    /// What the home holds, by kind, beside the disk it is on and the retention limits.
    /// Blocking (files, SQLite).
    pub fn usage(&self) -> Result<HomeUsage, DaemonError> {
        let root = self.home().root().to_path_buf();
        let totals = self.inner.retention.totals()?;
        let artifacts = self.inner.artifacts.usage()?;
        let file = |name: &str| {
            ["", "-wal", "-shm"]
                .iter()
                .filter_map(|suffix| std::fs::metadata(root.join(format!("{name}{suffix}"))).ok())
                .map(|m| m.len())
                .sum::<u64>()
        };
        let (disk_free, disk_total) = petri_queue::retention::disk_space(&root).unwrap_or((0, 0));
        Ok(HomeUsage {
            home: root.display().to_string(),
            job_files: JobFiles {
                jobs: totals.jobs,
                bytes: totals.bytes,
                unmeasured: totals.unmeasured,
                pruned_jobs: totals.pruned,
            },
            artifacts_bytes: artifacts.referenced.bytes + artifacts.unreferenced.bytes,
            database_bytes: file("petri.db"),
            tracking_bytes: file("tracking.db") + file("registry.db"),
            disk_free,
            disk_total,
            retention: self.inner.retention.limits(),
        })
    }
    pub fn notebooks(&self) -> &Notebooks {
        &self.inner.notebooks
    }
    pub fn accounts(&self) -> &Accounts {
        &self.inner.accounts
    }
    pub fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }
    /// Clusters: the targets beyond this machine and each user's credentials for them.
    pub fn clusters(&self) -> &petri_cluster::Clusters {
        &self.inner.clusters
    }
    /// Pipelines: saved pipelines, runs, components, triggers.
    pub fn pipelines(&self) -> &petri_pipeline::Pipelines {
        &self.inner.pipelines
    }
    /// Experiment tracking: experiments, runs, params, metrics, tags (MLflow's semantics).
    pub fn tracking(&self) -> &petri_tracking::Tracking {
        &self.inner.tracking
    }
    /// Model deployments: serve, unserve, route.
    pub fn serving(&self) -> &petri_serving::Serving {
        &self.inner.serving
    }
    /// The model registry: registered models, versions, aliases, lineage.
    pub fn registry(&self) -> &petri_registry::Registry {
        &self.inner.registry
    }
    /// Tells the jobs launched from now on where the tracking API answers
    /// (`http://127.0.0.1:PORT`); the first call wins.
    pub fn set_tracking_uri(&self, uri: String) {
        let _ = self.inner.tracking_uri.host.set(uri);
    }
    /// Where containers reach the tracking API (`http://host.docker.internal:PORT`), once the
    /// daemon listens on the Docker bridge.
    pub fn set_container_tracking_uri(&self, uri: String) {
        let _ = self.inner.tracking_uri.containers.set(uri);
    }
    /// The Docker bridge's gateway address on this machine (where containers reach the host),
    /// when the engine answers.
    pub async fn docker_bridge(&self) -> Option<std::net::IpAddr> {
        self.inner.docker.bridge_gateway().await
    }
    /// The artifact store: blobs by content, who holds them, garbage collection.
    pub fn artifacts(&self) -> &Artifacts {
        &self.inner.artifacts
    }

    /// The images the Docker engine has.
    pub async fn images(&self) -> Result<Vec<petri_domain::Image>, QueueError> {
        self.inner
            .docker
            .images()
            .await
            .map_err(|e| QueueError::refused(ErrorCode::ContainersUnavailable, e.to_string()))
    }

    /// Stops the engine (running jobs keep running and are re-adopted by the next daemon).
    pub async fn shutdown(&self) {
        self.inner.queue.shutdown().await;
    }
}

/// A job's run ends with the job when the job's code left it running (see
/// [`petri_tracking::Tracking::close_job_run`]); runs of jobs that ended while no daemon ran
/// are closed at the next start.
fn close_runs_with_their_jobs(queue: &Queue, tracking: &petri_tracking::Tracking) {
    let mut events = queue.subscribe();
    let (queue, tracking) = (queue.clone(), tracking.clone());
    tokio::spawn(async move {
        sweep_job_runs(&queue, &tracking).await;
        loop {
            let change = match events.recv().await {
                Ok(petri_domain::Event::JobChanged(c)) if c.state.is_terminal() => c,
                Ok(_) => continue,
                // Missed events: look at every running run again.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    sweep_job_runs(&queue, &tracking).await;
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let now = petri_queue::now_ms();
            if let Err(e) = tracking.close_job_run(change.id, change.state, now).await {
                tracing::warn!(job = %change.id, error = %e, "ending a job's run failed");
            }
        }
    });
}

/// Ends the `RUNNING` runs whose jobs have ended.
async fn sweep_job_runs(queue: &Queue, tracking: &petri_tracking::Tracking) {
    use petri_tracking::wire::{SearchExperiments, SearchRuns};
    let Ok(experiments) = tracking
        .search_experiments(SearchExperiments {
            max_results: Some(50_000),
            ..SearchExperiments::default()
        })
        .await
    else {
        return;
    };
    let mut page_token = None;
    loop {
        let Ok(found) = tracking
            .search_runs(SearchRuns {
                experiment_ids: experiments
                    .experiments
                    .iter()
                    .map(|e| e.experiment_id.clone())
                    .collect(),
                filter: Some("attributes.status = 'RUNNING'".into()),
                max_results: Some(50_000),
                page_token,
                ..SearchRuns::default()
            })
            .await
        else {
            return;
        };
        for run in &found.runs {
            let Some(job) = petri_tracking::jobs::job_of_run_id(&run.info.run_id) else {
                continue;
            };
            let Ok(j) = queue.get(&job.to_string()).await else {
                continue;
            };
            if j.state.is_terminal() {
                let at = j.finished_at_ms.unwrap_or_else(petri_queue::now_ms);
                let _ = tracking.end_job_run(job, j.state, at).await;
            } else {
                // Still running (re-adopted after a restart): its end closes the run.
                tracking.note_job_run(job);
            }
        }
        match found.next_page_token {
            Some(t) if !t.is_empty() => page_token = Some(t),
            _ => return,
        }
    }
}

/// One periodic garbage collection of the artifact store, by the settings' policy, off the async
/// threads.
async fn collect_garbage(
    artifacts: Artifacts,
    registry: petri_registry::Registry,
    tracking: petri_tracking::Tracking,
    purge_after_ms: i64,
) {
    // Model files uploaded a day ago and never registered are let go first, and the runs
    // deleted long ago.
    if let Err(e) = registry.drop_stale_uploads(24 * 3600 * 1000).await {
        tracing::warn!(error = %e, "dropping stale model uploads failed");
    }
    if let Err(e) = tracking
        .purge_deleted_runs(
            &artifacts,
            petri_queue::now_ms().saturating_sub(purge_after_ms),
        )
        .await
    {
        tracing::warn!(error = %e, "purging deleted runs failed");
    }
    let policy = artifacts.policy().clone();
    match tokio::task::spawn_blocking(move || artifacts.gc(&policy, false)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "the periodic artifact garbage collection failed"),
        Err(e) => tracing::warn!(error = %e, "the periodic artifact garbage collection panicked"),
    }
}

/// A settings word as `petri.toml` spells it (`warn`, `auto`).
fn word<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// One daemon per home: an exclusive `flock` on `daemon.lock`. A daemon that is just stopping
/// (a restart) gets a moment to let go.
fn lock_home(home: &Home) -> Result<Flock<File>, DaemonError> {
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(home.lock())
        .map_err(|e| DaemonError::Io(format!("opening {}: {e}", home.lock().display())))?;
    for _ in 0..30 {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((f, _)) => {
                file = f;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
    Err(DaemonError::Io(format!(
        "another Petri daemon already uses {}; stop it, or choose another home with --home",
        home.root().display()
    )))
}

/// Writes to the audit log that a job was given secrets: a read of them by the job's user.
struct SecretReads {
    accounts: Accounts,
    runtime: tokio::runtime::Handle,
}

impl petri_queue::AttemptHook for SecretReads {
    fn launch(
        &self,
        job: &petri_domain::Job,
        attempt: u32,
    ) -> Result<petri_queue::LaunchExtras, String> {
        if !job.spec.secrets.is_empty() {
            let names: Vec<&str> = job.spec.secrets.iter().map(|s| s.name.as_str()).collect();
            let record = petri_accounts::AuditRecord {
                user: job.user.clone(),
                origin: format!("job {}", job.number),
                action: "secret.read".into(),
                target: format!("secret {}", names.join(", ")),
                status: None,
                detail: format!("given to job {} (attempt {attempt})", job.number),
            };
            let accounts = self.accounts.clone();
            // The engine's thread does not wait for the write.
            self.runtime.spawn_blocking(move || accounts.record(record));
        }
        Ok(petri_queue::LaunchExtras::default())
    }
}
