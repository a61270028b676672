//! The `Queue` handle: what other capabilities, the API and tests hold. Reads go to SQLite
//! through the read pool; changes go to the engine thread and are answered once committed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use petri_domain::{
    ByteSize, DEFAULT_PAGE, ErrorCode, Event, Executors, Job, JobId, JobPage, JobSpec, JobState,
    ListOrder, ListQuery, MAX_PAGE, Origin, Pending, RunKey, Status,
};
use petri_sched::Capacity;
use petri_store::{JobFilter, ReadPool, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};

use crate::engine::{Command, Engine};
use crate::error::QueueError;
use crate::launch::{LaunchHooks, Submitter};
use crate::metrics::Metrics;
use crate::settings::QueueConfig;

/// A handle on the running queue; cheap to clone. Dropping the last one stops the engine
/// thread (running jobs go on, and the next start re-adopts them).
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    config: QueueConfig,
    capacity: Capacity,
    /// The engine's view of the GPUs, for checking submissions.
    gpu_view: Arc<Mutex<crate::engine::GpuView>>,
    tx: std::sync::mpsc::Sender<Command>,
    events: crate::logwatch::Bus,
    metrics: Arc<Metrics>,
    reads: ReadPool,
    executors: Executors,
    engine: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Dropping it ends the checkpoint thread.
    _stop_checkpoints: std::sync::mpsc::Sender<()>,
    /// Dropping it ends the GPU sampler.
    _stop_sampling: std::sync::mpsc::Sender<()>,
    /// The watch on `logs/`, started by the first follower of a log.
    log_watch: std::sync::OnceLock<crate::logwatch::LogWatch>,
}

impl Drop for Inner {
    /// The engine stops with the last handle, so that tests and embedders never leak its thread.
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Shutdown);
        if let Some(h) = self.engine.get_mut().ok().and_then(Option::take) {
            let _ = h.join();
        }
    }
}

/// A piece of a job's log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogChunk {
    pub data: Vec<u8>,
    /// Where the next read starts.
    pub next_offset: u64,
    /// The job has finished and everything was read.
    pub done: bool,
    /// The job had finished when this was read.
    pub finished: bool,
    /// This read reached the end of the file as it was (it returned less than the most one read
    /// returns).
    pub to_end: bool,
}

impl LogChunk {
    /// What a read of at most `LOG_PIECE` bytes from `offset` returned.
    fn read(offset: u64, data: Vec<u8>, finished: bool) -> LogChunk {
        LogChunk {
            next_offset: offset + data.len() as u64,
            done: finished && data.is_empty(),
            finished,
            to_end: (data.len() as u64) < LOG_PIECE,
            data,
        }
    }
}

/// The most of a job's log one read returns.
const LOG_PIECE: u64 = 256 * 1024;

impl Queue {
    /// Recovers the queue from `store` (the one write connection; the caller holds the home's
    /// lock) and starts the engine thread, the checkpointer and the GPU sampler. `executors` are
    /// the targets jobs may run on; `hooks` what each origin adds at launch. Must be called
    /// inside a tokio runtime: local jobs are reaped there.
    pub fn start(
        config: QueueConfig,
        store: Store,
        reads: ReadPool,
        executors: Executors,
        hooks: LaunchHooks,
    ) -> Result<Queue, QueueError> {
        let home = config.home.clone();
        store.set_autocheckpoint(0)?;
        let checkpointer = Store::open(&home.db())?;
        let (stop_checkpoints, checkpoint_rx) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("petri-checkpoint".into())
            .spawn(move || {
                // Until the queue is dropped (the sender goes away).
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    checkpoint_rx.recv_timeout(std::time::Duration::from_millis(500))
                {
                    if let Err(e) = checkpointer.checkpoint() {
                        tracing::warn!(error = %e, "checkpointing the database failed");
                    }
                }
                let _ = checkpointer.checkpoint();
            })
            .map_err(|e| QueueError::Io(format!("starting the checkpoint thread: {e}")))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let events = crate::logwatch::Bus::new(4096);
        let metrics = Arc::new(Metrics::new());
        let gpu_view = Arc::default();
        let mut engine = Engine::new(
            store,
            &config,
            executors.clone(),
            hooks,
            rx,
            tx.clone(),
            events.clone(),
            metrics.clone(),
            Arc::clone(&gpu_view),
        )?;
        engine.recover()?;
        // What the executors left of attempts that no longer run (a container whose engine died
        // mid-job, a crash between an exit and its removal) goes now.
        let live = engine.live_runs();
        for (target, exec) in executors.all() {
            let keep: Vec<RunKey> = live
                .iter()
                .filter(|k| k.target == target)
                .cloned()
                .collect();
            match exec.sweep(&keep) {
                Ok(0) | Err(_) => {}
                Ok(n) => tracing::info!(target, "removed {n} leftovers of ended attempts"),
            }
        }
        // GPUs: sampled now (so that the first submissions and decisions see them) and then
        // every few seconds; the engine converts each sample once.
        let mut inventory = petri_gpu::Inventory::open(config.gpu.nvml_path.as_deref());
        if let Some(reason) = &inventory.status().reason {
            tracing::info!("{reason}");
        }
        let first = inventory.sample();
        // MPS control daemons for the GPUs that should enforce their slices.
        let mut mps = HashMap::new();
        for index in &config.gpu.mps {
            let Some(g) = first.iter().find(|g| g.index == *index) else {
                tracing::warn!(gpu = index, "gpu.mps names a GPU that NVML does not report");
                continue;
            };
            let dir = home.root().join("mps").join(index.to_string());
            match petri_gpu::mps::start(&config.gpu.mps_control, &g.uuid, &dir) {
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
        engine.step(vec![
            Command::Gpus {
                status: inventory.status().clone(),
                gpus: first,
            },
            Command::Mps(mps),
        ]);
        let sample_gpus = {
            let tx = tx.clone();
            move |inventory: &mut petri_gpu::Inventory| {
                let gpus = inventory.sample();
                tx.send(Command::Gpus {
                    status: inventory.status().clone(),
                    gpus,
                })
                .is_ok()
            }
        };
        let every = config.gpu.sample_every.as_duration();
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
            .map_err(|e| QueueError::Io(format!("starting the GPU sampler: {e}")))?;
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
            .map_err(|e| QueueError::Io(format!("starting the engine thread: {e}")))?;
        Ok(Queue {
            inner: Arc::new(Inner {
                capacity: config.capacity(),
                config,
                tx,
                events,
                metrics,
                reads,
                executors,
                engine: Mutex::new(Some(handle)),
                _stop_checkpoints: stop_checkpoints,
                _stop_sampling: stop_sampling,
                log_watch: std::sync::OnceLock::new(),
                gpu_view,
            }),
        })
    }

    /// Announces an event on the bus (capabilities announce their own changes here).
    pub fn publish(&self, event: Event) {
        self.inner.events.send(event);
    }

    pub fn config(&self) -> &QueueConfig {
        &self.inner.config
    }
    pub fn home(&self) -> &crate::Home {
        &self.inner.config.home
    }
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// What a follower of a job's log waits on: bytes arriving in the log file (inotify) or a
    /// change of the job's state, whichever comes first. Take it before the first read.
    pub fn log_follower(&self, job: JobId) -> crate::logwatch::LogFollower {
        let watch = self.inner.log_watch.get_or_init(|| {
            crate::logwatch::LogWatch::start(
                &self.home().root().join("logs"),
                self.inner.events.followers().clone(),
            )
        });
        watch.follow(job)
    }
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render()
    }

    /// Stops the engine now and waits for it, from synchronous code (a `Drop`).
    pub fn stop(&self) {
        let _ = self.inner.tx.send(Command::Shutdown);
        if let Some(h) = self.inner.engine.lock().ok().and_then(|mut h| h.take()) {
            let _ = h.join();
        }
    }

    /// Stops the engine (running jobs keep running and are re-adopted by the next start).
    pub async fn shutdown(&self) {
        let _ = self.inner.tx.send(Command::Shutdown);
        let handle = self.inner.engine.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }

    /// Runs `f` on a connection of the read pool, off the async threads.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        let reads = self.inner.reads.clone();
        tokio::task::spawn_blocking(move || reads.read(f))
            .await
            .map_err(|e| QueueError::Io(format!("the database reader failed: {e}")))?
    }

    /// Runs `f`, a few lookups by key, on the calling thread when a pool connection is free,
    /// else as [`Queue::read`] does. Handing a read of some tens of microseconds to a blocking
    /// thread costs more than the read: a thread woken and put back to sleep, and two switches
    /// (in P1b's log followers that hand-off was the largest single cost of opening a stream).
    /// Only for reads that cannot take long: a free connection never waits for the writer (WAL).
    pub async fn read_small<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        match self.inner.reads.read_if_free(f) {
            Ok(done) => done,
            Err(f) => self.read(f).await,
        }
    }

    /// Asks the engine for a change it may refuse.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, petri_domain::ErrorBody>>) -> Command,
    ) -> Result<T, QueueError> {
        self.query(make).await?.map_err(QueueError::Refused)
    }

    /// Where a port of a job's running attempt is reachable (service jobs).
    pub async fn endpoint(
        &self,
        job: JobId,
        attempt: u32,
        port: u16,
    ) -> Option<std::net::SocketAddr> {
        let run = self
            .read(move |s| Ok(s.active_run(job)?))
            .await
            .ok()
            .flatten()
            .filter(|r| r.attempt == attempt)?;
        let exec = self.inner.executors.get(&run.target)?.clone();
        let key = RunKey {
            job,
            attempt,
            target: run.target,
        };
        tokio::task::spawn_blocking(move || exec.endpoint(&key, port))
            .await
            .ok()
            .flatten()
    }

    /// Resolves an id, number or unique id prefix.
    pub async fn resolve(&self, key: &str) -> Result<JobId, QueueError> {
        let k = key.to_string();
        self.read(move |s| Ok(s.find(&k)?))
            .await?
            .ok_or_else(|| no_job(key))
    }

    /// Checks, expands and queues a submission for `by`; all jobs or none. One admission pass:
    /// each spec is validated once, and checked against this machine (capacity, GPUs, workdir,
    /// mounts) and its target's executor (a container's image is looked up in the engine).
    pub async fn submit(&self, specs: Vec<JobSpec>, by: Submitter) -> Result<Vec<Job>, QueueError> {
        let machine = self.machine();
        let reads = self.inner.reads.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            reads.read(|store| crate::submit::prepare(specs, &machine, |key| Ok(store.find(key)?)))
        })
        .await
        .map_err(|e| QueueError::Io(e.to_string()))??;
        self.ask(|reply| Command::Submit {
            jobs: prepared,
            by,
            reply,
        })
        .await
    }

    /// Submits one job (no sweep) under an id the caller chose, once: when a job with this id
    /// exists already it is returned as it is. A capability that records the id before it
    /// submits (a pipeline step) can so repeat the call after a crash without running the job
    /// twice.
    pub async fn submit_once(
        &self,
        id: JobId,
        spec: JobSpec,
        by: Submitter,
    ) -> Result<Job, QueueError> {
        if let Ok(job) = self.stored_job(id).await {
            return Ok(job);
        }
        if !spec.array.is_empty() {
            return Err(QueueError::refused(
                ErrorCode::InvalidSpec,
                "a job submitted under a chosen id cannot be a sweep",
            ));
        }
        let machine = self.machine();
        let reads = self.inner.reads.clone();
        let mut prepared = tokio::task::spawn_blocking(move || {
            reads.read(|store| {
                crate::submit::prepare(vec![spec], &machine, |key| Ok(store.find(key)?))
            })
        })
        .await
        .map_err(|e| QueueError::Io(e.to_string()))??;
        if let Some(p) = prepared.first_mut() {
            p.id = id;
        }
        let mut jobs = self
            .ask(|reply| Command::Submit {
                jobs: prepared,
                by,
                reply,
            })
            .await?;
        jobs.pop()
            .ok_or_else(|| QueueError::Io("the queue accepted no job".into()))
    }

    /// `submit_once` for many jobs at once, each with its own origin and one user: one read,
    /// one round trip to the engine and one transaction for all (a pipeline pass that starts
    /// 200 steps). Each job gets its own answer: a spec that does not validate is refused alone;
    /// when the capabilities' checks refuse the batch, each job is tried on its own.
    pub async fn submit_once_each(
        &self,
        jobs: Vec<(JobId, JobSpec, Origin)>,
        user: String,
    ) -> Vec<Result<Job, QueueError>> {
        let n = jobs.len();
        if n <= 1 {
            let mut out = Vec::with_capacity(n);
            for (id, spec, origin) in jobs {
                out.push(
                    self.submit_once(
                        id,
                        spec,
                        Submitter {
                            origin,
                            user: user.clone(),
                        },
                    )
                    .await,
                );
            }
            return out;
        }
        let machine = self.machine();
        let ids: Vec<JobId> = jobs.iter().map(|j| j.0).collect();
        let specs: Vec<(JobSpec, Origin)> =
            jobs.iter().map(|j| (j.1.clone(), j.2.clone())).collect();
        // Already submitted (a repeat after a crash), or prepared now, or refused alone.
        let checked = self
            .read(move |store| {
                let mut out = Vec::with_capacity(ids.len());
                for (id, (spec, origin)) in ids.into_iter().zip(specs) {
                    if let Some(stored) = store.get(id)? {
                        out.push(Ok(Err(stored.job)));
                        continue;
                    }
                    if !spec.array.is_empty() {
                        out.push(Err(QueueError::refused(
                            ErrorCode::InvalidSpec,
                            "a job submitted under a chosen id cannot be a sweep",
                        )));
                        continue;
                    }
                    match crate::submit::prepare(vec![spec], &machine, |key| Ok(store.find(key)?)) {
                        Ok(mut p) => {
                            let mut p = p.remove(0);
                            p.id = id;
                            p.origin = Some(origin);
                            out.push(Ok(Ok(p)));
                        }
                        Err(e) => out.push(Err(e)),
                    }
                }
                Ok(out)
            })
            .await;
        let checked = match checked {
            Ok(c) => c,
            Err(e) => {
                let msg = e.to_string();
                return (0..n).map(|_| Err(QueueError::Io(msg.clone()))).collect();
            }
        };
        let mut out: Vec<Option<Result<Job, QueueError>>> = Vec::with_capacity(n);
        let mut batch = Vec::new();
        let mut slots = Vec::new();
        for (i, c) in checked.into_iter().enumerate() {
            match c {
                Ok(Ok(p)) => {
                    slots.push(i);
                    batch.push(p);
                    out.push(None);
                }
                Ok(Err(existing)) => out.push(Some(Ok(existing))),
                Err(e) => out.push(Some(Err(e))),
            }
        }
        if !batch.is_empty() {
            let first = batch[0].origin.clone().unwrap_or_default();
            let answer = self
                .ask(|reply| Command::Submit {
                    jobs: batch,
                    by: Submitter {
                        origin: first,
                        user: user.clone(),
                    },
                    reply,
                })
                .await;
            match answer {
                Ok(accepted) if accepted.len() == slots.len() => {
                    for (slot, job) in slots.iter().zip(accepted) {
                        out[*slot] = Some(Ok(job));
                    }
                }
                _ => {
                    // Refused as a whole (one job's secret, say): each on its own, for its own
                    // answer. Nothing of the batch was inserted.
                    for slot in slots {
                        let (id, spec, origin) = jobs[slot].clone();
                        let by = Submitter {
                            origin,
                            user: user.clone(),
                        };
                        out[slot] = Some(self.submit_once(id, spec, by).await);
                    }
                }
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Err(QueueError::Io("no answer".into()))))
            .collect()
    }

    /// What a submission is checked against, now.
    fn machine(&self) -> crate::submit::Machine {
        let view = self
            .inner
            .gpu_view
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        crate::submit::Machine {
            capacity: self.inner.capacity,
            gpus: view.gpus,
            gpu_reserve: self.inner.config.gpu.reserve.0,
            mig_profiles: view.mig_profiles,
            mount_roots: self.mount_roots(),
            executors: self.inner.executors.clone(),
        }
    }

    /// The folders under which container mounts are allowed: the configured roots and the home.
    pub fn mount_roots(&self) -> Vec<std::path::PathBuf> {
        let mut roots = self.inner.config.docker.mount_roots.clone();
        roots.push(self.home().root().to_path_buf());
        roots
    }

    pub async fn cancel(&self, key: &str) -> Result<Job, QueueError> {
        let id = self.resolve(key).await?;
        self.stop_job(id, None).await
    }

    /// Cancels a job, saying why (shown as the job's reason).
    pub async fn stop_job(&self, id: JobId, reason: Option<String>) -> Result<Job, QueueError> {
        self.ask(|reply| Command::Cancel { id, reason, reply })
            .await
    }
    pub async fn hold(&self, key: &str) -> Result<Job, QueueError> {
        let id = self.resolve(key).await?;
        self.ask(|reply| Command::Hold { id, reply }).await
    }
    pub async fn release(&self, key: &str) -> Result<Job, QueueError> {
        let id = self.resolve(key).await?;
        self.ask(|reply| Command::Release { id, reply }).await
    }

    /// Asks the engine something that cannot be refused.
    async fn query<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(make(tx))
            .map_err(|_| QueueError::ShuttingDown)?;
        rx.await.map_err(|_| QueueError::ShuttingDown)
    }

    async fn pending(&self, only: Vec<JobId>) -> Result<HashMap<JobId, Pending>, QueueError> {
        self.query(|reply| Command::Explain { only, reply }).await
    }

    /// One job with its attempts and, when it waits, why and where in line.
    pub async fn get(&self, key: &str) -> Result<Job, QueueError> {
        let id = self.resolve(key).await?;
        let mut job = self
            .read(move |s| {
                let mut job = s
                    .get(id)?
                    .ok_or_else(|| QueueError::refused(ErrorCode::JobNotFound, "no such job"))?
                    .job;
                job.runs = s.runs(id)?;
                Ok(job)
            })
            .await?;
        if matches!(job.state, JobState::Queued | JobState::Held) {
            job.pending = self.pending(vec![job.id]).await?.remove(&job.id);
        }
        if job.state == JobState::Running {
            job.remote = self.inner.executors.remote_status(job.id);
        }
        Ok(job)
    }

    /// A job by number or id, as stored, without its attempts or why it waits: for checks
    /// before an action (whose job it is), which must not cost a walk of the whole line. (Asked
    /// about a waiting job, `get` explains why it waits, which walks every waiting job: a hundred
    /// clients following the logs of queued jobs in a home with 100,000 held ones cost the
    /// engine a walk each.)
    pub async fn stored(&self, key: &str) -> Result<Job, QueueError> {
        let k = key.to_string();
        self.read(move |s| find_stored(s, &k))
            .await?
            .ok_or_else(|| no_job(key))
    }

    /// A job as stored, without its attempts or why it waits: for Petri's own checks, which must
    /// not cost a scheduling walk.
    pub async fn stored_job(&self, id: JobId) -> Result<Job, QueueError> {
        self.read(move |s| {
            s.get(id)?
                .map(|j| j.job)
                .ok_or_else(|| QueueError::refused(ErrorCode::JobNotFound, "no such job"))
        })
        .await
    }

    /// A page of jobs: through indexes, `limit` of them from the cursor `after` on.
    pub async fn list(&self, q: ListQuery) -> Result<JobPage, QueueError> {
        let bad = |message: String| QueueError::refused(ErrorCode::BadRequest, message);
        let mut states = Vec::new();
        if let Some(s) = &q.state {
            for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                states.push(JobState::parse(part).ok_or_else(|| {
                    bad(format!(
                        "unknown state `{part}`; states are queued, held, running, succeeded, \
                         failed, cancelled, timed_out"
                    ))
                })?);
            }
        } else if !q.all {
            states = vec![JobState::Queued, JobState::Held, JobState::Running];
        }
        states.sort_by_key(|s| s.as_str());
        states.dedup();
        let order = q.order.unwrap_or(if q.all || q.state.is_some() {
            ListOrder::Newest
        } else {
            ListOrder::Oldest
        });
        let (limit, note) = match q.limit {
            None => (DEFAULT_PAGE, None),
            Some(0) => return Err(bad("`limit` is a page size: 1 or more".into())),
            Some(n) if n > MAX_PAGE => (
                MAX_PAGE,
                Some(format!(
                    "a page holds at most {MAX_PAGE} jobs; `limit` {n} was clamped to {MAX_PAGE}"
                )),
            ),
            Some(n) => (n, None),
        };
        let list = Cursor::list_of(&states, q.queue.as_deref(), q.user.as_deref(), order);
        let after_number = match &q.after {
            Some(text) => Some(Cursor::parse(text, &list).map_err(bad)?),
            None => None,
        };
        let filter = JobFilter {
            states,
            queue: q.queue.clone(),
            user: q.user.clone(),
            newest_first: order == ListOrder::Newest,
            after_number,
            limit: Some(limit + 1),
        };
        let cursor = q.after.clone();
        let mut jobs: Vec<Job> = self
            .read(move |s| {
                if let Some(n) = after_number
                    && !s.number_exists(n)?
                {
                    return Err(QueueError::refused(
                        ErrorCode::BadRequest,
                        format!(
                            "the cursor `{}` names no job; start again without `after`",
                            cursor.unwrap_or_default()
                        ),
                    ));
                }
                Ok(s.list(&filter)?.into_iter().map(|j| j.job).collect())
            })
            .await?;
        let next = if jobs.len() > limit as usize {
            jobs.truncate(limit as usize);
            jobs.last().map(|j| Cursor::make(&list, j.number))
        } else {
            None
        };
        let waiting: Vec<JobId> = jobs
            .iter()
            .filter(|j| matches!(j.state, JobState::Queued | JobState::Held))
            .map(|j| j.id)
            .collect();
        if !waiting.is_empty() {
            let mut pending = self.pending(waiting).await?;
            for job in &mut jobs {
                job.pending = pending.remove(&job.id);
            }
        }
        for job in jobs.iter_mut().filter(|j| j.state == JobState::Running) {
            job.remote = self.inner.executors.remote_status(job.id);
        }
        Ok(JobPage {
            jobs,
            next,
            limit,
            note,
        })
    }

    /// Reads a job's log from `offset` (at most 256 KiB at a time). Every executor keeps the
    /// log in the home's `logs/` as the job runs (a local job writes it, a container's watcher
    /// and a cluster's poller copy into it).
    pub async fn read_log(&self, key: &str, offset: u64) -> Result<LogChunk, QueueError> {
        let id = self.resolve(key).await?;
        self.read_log_of(id, offset).await
    }

    /// `read_log` for a job known by its id: its state (has it ended?) and the bytes, in one
    /// trip to a blocking thread.
    pub async fn read_log_of(&self, id: JobId, offset: u64) -> Result<LogChunk, QueueError> {
        let queue = self.clone();
        self.read_small(move |s| {
            let job = s.log_facts(id)?;
            queue.log_chunk(id, job.as_ref(), offset)
        })
        .await
    }

    /// Starts following a job's log: what the log's reader needs of the job (whose it is; for an
    /// active job named by its whole id from the engine's view, else in one trip to the
    /// database), what wakes its follower (taken before the state is read, so no end is
    /// missed), and the log's first bytes (or why there are none: a log removed by retention).
    /// The caller checks the job is the caller's to read before it shows any of it.
    pub async fn open_log(
        &self,
        key: &str,
    ) -> Result<
        (
            petri_store::LogFacts,
            crate::logwatch::LogFollower,
            Result<LogChunk, QueueError>,
        ),
        QueueError,
    > {
        // A whole id needs no lookup before the follower is taken (the read of the job after it
        // says whether there is one).
        let whole = Store::whole_id(key).map(|id| (id, self.log_follower(id)));
        // An active job is known without the database (its follower is taken first: a change
        // after this read wakes it).
        let live = whole.as_ref().and_then(|(id, _)| self.live_facts(*id));
        let whole = match (whole, live) {
            (Some((id, follower)), Some(job)) => {
                let first = self.log_chunk(id, Some(&job), 0);
                return Ok((job, follower, first));
            }
            (whole, _) => whole,
        };
        let k = key.to_string();
        let queue = self.clone();
        let open = move |s: &Store| {
            let (id, follower) = match whole {
                Some(taken) => taken,
                None => {
                    let Some(id) = s.find(&k)? else {
                        return Ok(None);
                    };
                    (id, queue.log_follower(id))
                }
            };
            let Some(job) = s.log_facts(id)? else {
                return Ok(None);
            };
            let first = queue.log_chunk(id, Some(&job), 0);
            Ok(Some((job, follower, first)))
        };
        // An id prefix is found by scanning every id: that read goes to a blocking thread.
        let found = if Store::finds_by_index(key) {
            self.read_small(open).await?
        } else {
            self.read(open).await?
        };
        found.ok_or_else(|| no_job(key))
    }

    /// What a log's reader needs of `id` while it is active (queued, held or running), as the
    /// engine last committed it; `None` for a job that is not (ended, or unknown).
    fn live_facts(&self, id: JobId) -> Option<petri_store::LogFacts> {
        let live = self.inner.events.live().get(id)?;
        Some(petri_store::LogFacts {
            id,
            number: live.number,
            user: live.user.to_string(),
            state: live.state,
            attempts: live.attempts,
            pruned: None,
        })
    }

    /// The log's bytes from `offset`, for a job as read (`None`: not in the database).
    fn log_chunk(
        &self,
        id: JobId,
        job: Option<&petri_store::LogFacts>,
        offset: u64,
    ) -> Result<LogChunk, QueueError> {
        if let Some(p) = job.and_then(|j| j.pruned.as_ref()) {
            return Err(log_removed(p));
        }
        let finished = job.is_some_and(|j| j.state.is_terminal());
        // A job that never started has no log: no file to look for. (Looking for a name that is
        // not there searches the logs folder's index, and a follower opens most streams on jobs
        // still waiting.) Only a launch creates a job's log, after its attempt is counted.
        if job.is_some_and(|j| j.attempts == 0) {
            return Ok(LogChunk::read(offset, Vec::new(), finished));
        }
        self.log_piece(id, offset, finished)
    }

    /// The bytes of a job's log file from `offset` on, read on the caller's thread without
    /// asking the database: for a follower that learns from the bus whether the job has ended
    /// (`finished`, known before the read). A log not yet created reads as empty.
    pub fn log_piece(
        &self,
        id: JobId,
        offset: u64,
        finished: bool,
    ) -> Result<LogChunk, QueueError> {
        let data = petri_domain::files::read_at(&self.home().log(id), offset, LOG_PIECE)
            .map_err(|e| QueueError::Io(format!("reading job {id}'s log: {e}")))?;
        Ok(LogChunk::read(offset, data, finished))
    }

    /// GPUs: NVML's figures, Petri's reservations, holders.
    pub async fn gpus(&self) -> Result<petri_domain::GpuReport, QueueError> {
        self.query(|reply| Command::GpuReport { reply }).await
    }

    /// Each user's running and waiting jobs and recent usage (fair share).
    pub async fn shares(&self) -> Result<Vec<petri_domain::UserShare>, QueueError> {
        self.query(|reply| Command::Shares { reply }).await
    }

    /// Hands the engine new quotas; they apply from its next step.
    pub fn set_quotas(&self, book: petri_domain::QuotaBook) {
        let _ = self.inner.tx.send(Command::Quotas(book));
    }

    /// GPU figures over the last hour or so.
    pub async fn gpu_history(&self) -> Result<petri_domain::GpuHistory, QueueError> {
        self.query(|reply| Command::GpuHistory { reply }).await
    }

    pub async fn status(&self) -> Result<Status, QueueError> {
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
            queue_limits: self.inner.config.queue_limits(),
        })
    }
}

/// A page's cursor: the number of the last job it showed and a tag of the list it belongs to
/// (its filters and order), so that a cursor is never taken for another list's.
struct Cursor;

impl Cursor {
    fn list_of(
        states: &[JobState],
        queue: Option<&str>,
        user: Option<&str>,
        order: ListOrder,
    ) -> String {
        use sha2::Digest;
        let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        let key = format!(
            "{}\n{}\n{order:?}\n{}",
            states.join(","),
            queue.unwrap_or("\0"),
            user.unwrap_or("\0")
        );
        let digest = sha2::Sha256::digest(key.as_bytes());
        digest[..4].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn make(list: &str, number: u64) -> String {
        format!("{number}-{list}")
    }

    fn parse(text: &str, list: &str) -> Result<u64, String> {
        let parsed = text
            .split_once('-')
            .and_then(|(number, tag)| Some((number.parse::<u64>().ok()?, tag)));
        let Some((number, tag)) = parsed else {
            return Err(format!(
                "`{text}` is not a cursor; pass the `next` of the page before"
            ));
        };
        if tag != list {
            return Err(format!(
                "the cursor `{text}` belongs to another list (other filters or order); \
                 start again without `after`"
            ));
        }
        Ok(number)
    }
}

/// Why a job's log cannot be read: retention removed it.
fn log_removed(p: &petri_domain::Pruned) -> QueueError {
    QueueError::refused(
        ErrorCode::LogRemoved,
        format!(
            "retention removed this job's log and outputs ({}, {}) on {}; the limits are \
             `[retention]` in petri.toml",
            ByteSize(p.bytes),
            match p.why.as_str() {
                "age" => "older than `max_age`",
                "size" => "the oldest beyond `max_size`",
                _ => "by `petri gc`",
            },
            petri_domain::job::format_ms(p.at_ms)
        ),
    )
}

/// What a key that names no job gets.
fn no_job(key: &str) -> QueueError {
    QueueError::refused(
        ErrorCode::JobNotFound,
        format!("no job `{key}`: give a job number (see `petri ls --all`) or id"),
    )
}

/// A job by number or id, as stored.
fn find_stored(s: &petri_store::Store, key: &str) -> Result<Option<Job>, QueueError> {
    match s.find(key)? {
        Some(id) => Ok(s.get(id)?.map(|j| j.job)),
        None => Ok(None),
    }
}
