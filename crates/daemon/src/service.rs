//! The daemon's services: what the HTTP handlers (and tests) call. Reads go to SQLite on the
//! blocking pool; changes go to the engine thread and are answered once committed.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use nix::fcntl::{Flock, FlockArg};
use petri_domain::{ErrorCode, Job, JobId, JobSpec, JobState, Pending};
use petri_sched::Capacity;
use petri_store::{JobFilter, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};

use crate::engine::{Command, Engine};
use crate::error::DaemonError;
use crate::home::Home;
use crate::metrics::Metrics;
use crate::settings::Settings;
use petri_domain::{Event, ListQuery, Status};

/// A handle on the running daemon; cheap to clone.
#[derive(Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    home: Home,
    token: String,
    capacity: Capacity,
    /// The last GPU sample, for checking submissions.
    gpu_sample: Arc<Mutex<Vec<petri_gpu::GpuInfo>>>,
    tx: std::sync::mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    metrics: Arc<Metrics>,
    reader: Arc<Mutex<Store>>,
    /// Writes of the notebooks table (jobs are written by the engine alone).
    notebook_store: Arc<Mutex<Store>>,
    docker: Arc<petri_runtime::DockerExecutor>,
    notebooks: crate::notebooks::Notebooks,
    engine: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Dropping it ends the checkpoint thread.
    _stop_checkpoints: std::sync::mpsc::Sender<()>,
    /// Dropping it ends the GPU sampler.
    _stop_sampling: std::sync::mpsc::Sender<()>,
    _lock: Flock<File>,
}

/// A piece of a job's log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogChunk {
    pub data: Vec<u8>,
    /// Where the next read starts.
    pub next_offset: u64,
    /// The job has finished and everything was read.
    pub done: bool,
}

impl Daemon {
    /// Opens the home (creating it), takes its lock, recovers the queue and starts the engine.
    /// Must be called inside a tokio runtime: it reaps the job processes.
    pub fn start(settings: Settings) -> Result<Daemon, DaemonError> {
        let home = Home::new(&settings.home);
        home.prepare()
            .map_err(|e| DaemonError::Io(format!("preparing {}: {e}", home.root().display())))?;
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(home.lock())
            .map_err(|e| DaemonError::Io(format!("opening {}: {e}", home.lock().display())))?;
        // A daemon that is just stopping (a restart) gets a moment to let go of the home.
        let mut lock_file = lock_file;
        let mut tries = 0;
        let lock = loop {
            match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => break lock,
                Err((file, _)) if tries < 30 => {
                    lock_file = file;
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(_) => {
                    return Err(DaemonError::Io(format!(
                        "another Petri daemon already uses {}; stop it, or choose another home \
                         with --home",
                        home.root().display()
                    )));
                }
            }
        };
        let token = home
            .ensure_token()
            .map_err(|e| DaemonError::Io(format!("writing the token: {e}")))?;
        let store = Store::open(&home.db())?;
        store.set_autocheckpoint(0)?;
        let reader = Store::open(&home.db())?;
        let checkpointer = Store::open(&home.db())?;
        let (stop_checkpoints, checkpoint_rx) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("petri-checkpoint".into())
            .spawn(move || {
                // Until the daemon is dropped (the sender goes away).
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    checkpoint_rx.recv_timeout(std::time::Duration::from_millis(500))
                {
                    if let Err(e) = checkpointer.checkpoint() {
                        tracing::warn!(error = %e, "checkpointing the database failed");
                    }
                }
                let _ = checkpointer.checkpoint();
            })
            .map_err(|e| DaemonError::Io(format!("starting the checkpoint thread: {e}")))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let (events, _) = broadcast::channel(4096);
        let metrics = Arc::new(Metrics::new());
        let gpu_devices = match settings.docker.gpu_devices {
            crate::settings::GpuDevices::Auto => petri_runtime::GpuDevices::Auto,
            crate::settings::GpuDevices::Nvidia => petri_runtime::GpuDevices::Nvidia,
            crate::settings::GpuDevices::Env => petri_runtime::GpuDevices::EnvOnly,
        };
        let docker = Arc::new(
            petri_runtime::DockerExecutor::new(home.root(), gpu_devices)
                .map_err(|e| DaemonError::Io(format!("starting the Docker client: {e}")))?,
        );
        let exec = Arc::new(petri_runtime::Machine {
            local: petri_runtime::LocalExecutor::new(tokio::runtime::Handle::current()),
            docker: docker.clone(),
        });
        let keys = Arc::new(
            crate::keys::NotebookKeys::load(&home.notebook_key())
                .map_err(|e| DaemonError::Io(format!("the notebook key: {e}")))?,
        );
        let notebook_store = Store::open(&home.db())?;
        let mut engine = Engine::new(
            store,
            home.clone(),
            exec,
            keys.clone(),
            rx,
            tx.clone(),
            events.clone(),
            metrics.clone(),
            &settings,
        )?;
        engine.recover()?;
        // Containers of this home that no running attempt owns (an engine that died mid-job, a
        // crash between an exit and its removal) go now.
        let keep = engine.running_containers();
        match docker.sweep_now(&keep) {
            Ok(0) | Err(_) => {}
            Ok(n) => tracing::info!("removed {n} leftover containers"),
        }
        // GPUs: sampled now (so the first decisions see them) and then every few seconds.
        let gpu_sample = Arc::new(Mutex::new(Vec::new()));
        let mut inventory = petri_gpu::Inventory::open(settings.gpu.nvml_path.as_deref());
        if let Some(reason) = &inventory.status().reason {
            tracing::info!("{reason}");
        }
        let sample_gpus = {
            let gpu_sample = gpu_sample.clone();
            let tx = tx.clone();
            move |inventory: &mut petri_gpu::Inventory| {
                let gpus = inventory.sample();
                if let Ok(mut s) = gpu_sample.lock() {
                    *s = gpus.clone();
                }
                tx.send(Command::Gpus {
                    status: inventory.status().clone(),
                    gpus,
                })
                .is_ok()
            }
        };
        sample_gpus(&mut inventory);
        // MPS control daemons for the GPUs that should enforce their slices.
        let mut mps = HashMap::new();
        if let Ok(sample) = gpu_sample.lock() {
            for index in &settings.gpu.mps {
                let Some(g) = sample.iter().find(|g| g.index == *index) else {
                    tracing::warn!(gpu = index, "gpu.mps names a GPU that NVML does not report");
                    continue;
                };
                let dir = home.root().join("mps").join(index.to_string());
                match petri_gpu::mps::start(&settings.gpu.mps_control, &g.uuid, &dir) {
                    Ok(m) => {
                        tracing::info!(gpu = index, "MPS enforces the slices of this GPU");
                        mps.insert(*index, m);
                    }
                    Err(e) => tracing::warn!(
                        gpu = index,
                        "MPS did not start: {e}; slices here are not enforced"
                    ),
                }
            }
        }
        let _ = tx.send(Command::Mps(mps));
        let every = settings.gpu.sample_every.as_duration();
        let (stop_sampling, sampling_rx) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("petri-gpu".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    sampling_rx.recv_timeout(every)
                {
                    // Without NVML there is nothing to sample (and nothing to wake the engine for).
                    if !inventory.status().available {
                        if sampling_rx.recv().is_err() {
                            break;
                        }
                        continue;
                    }
                    if !sample_gpus(&mut inventory) {
                        break;
                    }
                }
            })
            .map_err(|e| DaemonError::Io(format!("starting the GPU sampler: {e}")))?;
        let handle = std::thread::Builder::new()
            .name("petri-engine".into())
            .spawn(move || {
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.run()));
                if ran.is_err() {
                    // The queue's state in memory cannot be trusted any more, but the database and
                    // the jobs can: exit, and the next start recovers everything.
                    tracing::error!(
                        "the engine hit a bug; exiting so that a restart recovers the queue"
                    );
                    std::process::exit(70);
                }
            })
            .map_err(|e| DaemonError::Io(format!("starting the engine thread: {e}")))?;
        let daemon = Daemon {
            inner: Arc::new(Inner {
                capacity: settings.capacity(),
                settings,
                home,
                token,
                tx,
                events,
                metrics,
                reader: Arc::new(Mutex::new(reader)),
                notebook_store: Arc::new(Mutex::new(notebook_store)),
                docker,
                notebooks: crate::notebooks::Notebooks::new(keys),
                engine: Mutex::new(Some(handle)),
                _stop_checkpoints: stop_checkpoints,
                _stop_sampling: stop_sampling,
                gpu_sample,
                _lock: lock,
            }),
        };
        daemon.cull_in_background();
        Ok(daemon)
    }

    /// Checks notebooks for idleness every `notebooks.cull_every`, for as long as the daemon lives.
    fn cull_in_background(&self) {
        let every = self.inner.settings.notebooks.cull_every.as_duration();
        if every.is_zero() || self.inner.settings.notebooks.idle_timeout.0 == 0 {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { break };
                Daemon { inner }.cull_idle_notebooks().await;
            }
        });
    }

    pub(crate) fn docker(&self) -> &petri_runtime::DockerExecutor {
        &self.inner.docker
    }
    pub(crate) fn notebooks(&self) -> &crate::notebooks::Notebooks {
        &self.inner.notebooks
    }
    pub(crate) fn publish(&self, event: Event) {
        let _ = self.inner.events.send(event);
    }

    /// The images the Docker engine has.
    pub async fn images(&self) -> Result<Vec<petri_domain::Image>, DaemonError> {
        self.docker()
            .images()
            .await
            .map_err(|e| DaemonError::refused(ErrorCode::ContainersUnavailable, e.to_string()))
    }

    pub(crate) async fn write_notebooks<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, DaemonError> + Send + 'static,
    ) -> Result<T, DaemonError> {
        on_store(self.inner.notebook_store.clone(), "the notebook writer", f).await
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }
    pub fn home(&self) -> &Home {
        &self.inner.home
    }
    /// The owner's token (also in `PETRI_HOME/token`).
    pub fn token(&self) -> &str {
        &self.inner.token
    }
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render()
    }

    /// Stops the engine (running jobs keep running and are re-adopted by the next daemon).
    pub async fn shutdown(&self) {
        let _ = self.inner.tx.send(Command::Shutdown);
        let handle = self.inner.engine.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }

    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, DaemonError> + Send + 'static,
    ) -> Result<T, DaemonError> {
        on_store(self.inner.reader.clone(), "the database reader", f).await
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, petri_domain::ErrorBody>>) -> Command,
    ) -> Result<T, DaemonError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(make(tx))
            .map_err(|_| DaemonError::ShuttingDown)?;
        rx.await
            .map_err(|_| DaemonError::ShuttingDown)?
            .map_err(DaemonError::Refused)
    }

    /// Resolves an id, number or unique id prefix.
    pub async fn resolve(&self, key: &str) -> Result<JobId, DaemonError> {
        let k = key.to_string();
        self.read(move |s| Ok(s.find(&k)?)).await?.ok_or_else(|| {
            DaemonError::refused(
                ErrorCode::JobNotFound,
                format!("no job `{key}`: give a job number (see `petri ls --all`) or id"),
            )
        })
    }

    /// Checks, expands and queues a submission; all jobs or none.
    pub async fn submit(&self, specs: Vec<JobSpec>) -> Result<Vec<Job>, DaemonError> {
        if specs.iter().any(|s| s.notebook.is_some()) {
            return Err(DaemonError::Refused(
                petri_domain::ErrorBody::new(
                    ErrorCode::InvalidSpec,
                    "notebook: this field is set by Petri for notebook servers; start a notebook \
                     with `petri notebook start`",
                )
                .with_details(serde_json::json!({ "field": "notebook" })),
            ));
        }
        self.submit_trusted(specs).await
    }

    /// Like `submit`, for specs Petri made itself (notebook servers).
    pub(crate) async fn submit_trusted(
        &self,
        specs: Vec<JobSpec>,
    ) -> Result<Vec<Job>, DaemonError> {
        self.check_containers(&specs).await?;
        let machine = crate::submit::Machine {
            capacity: self.inner.capacity,
            gpus: self
                .inner
                .gpu_sample
                .lock()
                .map(|s| {
                    s.iter()
                        .map(|g| petri_sched::Gpu {
                            index: g.index,
                            memory_total: g.memory_total,
                            foreign_used: 0,
                            healthy: g.healthy,
                            // Profile numbers do not matter here: a MIG GPU only has to be one.
                            mig: g.mig.iter().map(|_| 0).collect(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            gpu_reserve: self.inner.settings.gpu.reserve.0,
            mig_profiles: self
                .inner
                .gpu_sample
                .lock()
                .map(|s| {
                    let mut p: Vec<String> = s
                        .iter()
                        .flat_map(|g| g.mig.iter().map(|m| m.profile.clone()))
                        .collect();
                    p.sort();
                    p.dedup();
                    p
                })
                .unwrap_or_default(),
        };
        let reader = self.inner.reader.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            let store = reader
                .lock()
                .map_err(|_| DaemonError::Io("the database reader is poisoned".into()))?;
            crate::submit::prepare(specs, &machine, |key| Ok(store.find(key)?))
        })
        .await
        .map_err(|e| DaemonError::Io(e.to_string()))??;
        self.ask(|reply| Command::Submit {
            jobs: prepared,
            reply,
        })
        .await
    }

    pub async fn cancel(&self, key: &str) -> Result<Job, DaemonError> {
        let id = self.resolve(key).await?;
        self.stop_job(id, None).await
    }

    /// Cancels a job, saying why (shown as the job's reason).
    pub(crate) async fn stop_job(
        &self,
        id: JobId,
        reason: Option<String>,
    ) -> Result<Job, DaemonError> {
        self.ask(|reply| Command::Cancel { id, reason, reply })
            .await
    }
    pub async fn hold(&self, key: &str) -> Result<Job, DaemonError> {
        let id = self.resolve(key).await?;
        self.ask(|reply| Command::Hold { id, reply }).await
    }
    pub async fn release(&self, key: &str) -> Result<Job, DaemonError> {
        let id = self.resolve(key).await?;
        self.ask(|reply| Command::Release { id, reply }).await
    }

    /// Asks the engine something that cannot be refused.
    async fn query<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, DaemonError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(make(tx))
            .map_err(|_| DaemonError::ShuttingDown)?;
        rx.await.map_err(|_| DaemonError::ShuttingDown)
    }

    async fn pending(&self) -> Result<HashMap<JobId, Pending>, DaemonError> {
        self.query(|reply| Command::Explain { reply }).await
    }

    /// One job with its attempts and, when it waits, why and where in line.
    pub async fn get(&self, key: &str) -> Result<Job, DaemonError> {
        let id = self.resolve(key).await?;
        let mut job = self
            .read(move |s| {
                let mut job = s
                    .get(id)?
                    .ok_or_else(|| DaemonError::refused(ErrorCode::JobNotFound, "no such job"))?
                    .job;
                job.runs = s.runs(id)?;
                Ok(job)
            })
            .await?;
        if matches!(job.state, JobState::Queued | JobState::Held) {
            job.pending = self.pending().await?.remove(&job.id);
        }
        Ok(job)
    }

    /// A job as stored, without its attempts or why it waits: for Petri's own checks, which must
    /// not cost a scheduling walk.
    pub(crate) async fn stored_job(&self, id: JobId) -> Result<Job, DaemonError> {
        self.read(move |s| {
            s.get(id)?
                .map(|j| j.job)
                .ok_or_else(|| DaemonError::refused(ErrorCode::JobNotFound, "no such job"))
        })
        .await
    }

    pub async fn list(&self, q: ListQuery) -> Result<Vec<Job>, DaemonError> {
        let mut states = Vec::new();
        if let Some(s) = &q.state {
            for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                states.push(JobState::parse(part).ok_or_else(|| {
                    DaemonError::refused(
                        ErrorCode::BadRequest,
                        format!(
                            "unknown state `{part}`; states are queued, held, running, succeeded, \
                             failed, cancelled, timed_out"
                        ),
                    )
                })?);
            }
        } else if !q.all {
            states = vec![JobState::Queued, JobState::Held, JobState::Running];
        }
        let filter = JobFilter {
            states,
            queue: q.queue.clone(),
            newest_first: q.all && q.limit.is_some(),
            limit: q.limit,
        };
        let mut jobs: Vec<Job> = self
            .read(move |s| Ok(s.list(&filter)?.into_iter().map(|j| j.job).collect()))
            .await?;
        if filter_needs_pending(&jobs) {
            let mut pending = self.pending().await?;
            for job in &mut jobs {
                job.pending = pending.remove(&job.id);
            }
        }
        if q.all && q.limit.is_some() {
            jobs.reverse();
        }
        Ok(jobs)
    }

    /// Reads a job's log from `offset` (at most 256 KiB at a time).
    pub async fn read_log(&self, key: &str, offset: u64) -> Result<LogChunk, DaemonError> {
        let id = self.resolve(key).await?;
        let path = self.inner.home.log(id);
        let state = self
            .read(move |s| Ok(s.get(id)?.map(|j| j.job.state)))
            .await?;
        let finished = state.is_some_and(JobState::is_terminal);
        tokio::task::spawn_blocking(move || {
            let mut data = Vec::new();
            match File::open(&path) {
                Ok(mut f) => {
                    f.seek(SeekFrom::Start(offset))
                        .and_then(|_| f.take(256 * 1024).read_to_end(&mut data))
                        .map_err(|e| DaemonError::Io(format!("reading {}: {e}", path.display())))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(DaemonError::Io(format!("reading {}: {e}", path.display()))),
            }
            let next_offset = offset + data.len() as u64;
            Ok(LogChunk {
                done: finished && data.is_empty(),
                data,
                next_offset,
            })
        })
        .await
        .map_err(|e| DaemonError::Io(e.to_string()))?
    }

    /// GPUs: NVML's figures, Petri's reservations, holders.
    pub async fn gpus(&self) -> Result<petri_domain::GpuReport, DaemonError> {
        self.query(|reply| Command::GpuReport { reply }).await
    }

    /// GPU figures over the last hour or so.
    pub async fn gpu_history(&self) -> Result<petri_domain::GpuHistory, DaemonError> {
        self.query(|reply| Command::GpuHistory { reply }).await
    }

    pub async fn status(&self) -> Result<Status, DaemonError> {
        let (counts, running) = self
            .read(|s| {
                let counts = s.counts()?;
                let running = s.list(&JobFilter {
                    states: vec![JobState::Running],
                    ..Default::default()
                })?;
                Ok((counts, running))
            })
            .await?;
        let (mut cpu, mut mem) = (0u64, 0u64);
        for j in &running {
            cpu += j.job.spec.resources.cpu_millis().max(1);
            mem += j.job.spec.resources.memory_bytes();
        }
        Ok(Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            counts: counts
                .into_iter()
                .map(|(s, n)| (s.as_str().to_string(), n))
                .collect(),
            capacity_cpus: self.inner.capacity.cpu_millis as f64 / 1000.0,
            capacity_memory: self.inner.capacity.memory,
            reserved_cpus: cpu as f64 / 1000.0,
            reserved_memory: mem,
            queue_limits: self.inner.settings.queue_limits(),
        })
    }
}

fn filter_needs_pending(jobs: &[Job]) -> bool {
    jobs.iter()
        .any(|j| matches!(j.state, JobState::Queued | JobState::Held))
}

/// Runs `f` on one of the daemon's own connections (`what` names it in errors), off the async
/// threads.
async fn on_store<T: Send + 'static>(
    store: Arc<Mutex<Store>>,
    what: &'static str,
    f: impl FnOnce(&Store) -> Result<T, DaemonError> + Send + 'static,
) -> Result<T, DaemonError> {
    tokio::task::spawn_blocking(move || {
        let store = store
            .lock()
            .map_err(|_| DaemonError::Io(format!("{what} is poisoned")))?;
        f(&store)
    })
    .await
    .map_err(|e| DaemonError::Io(format!("{what} failed: {e}")))?
}
