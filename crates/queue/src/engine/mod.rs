//! The engine: one thread that owns the queue. Commands arrive on a channel; each wake-up takes
//! every command waiting, applies them and the scheduler's decision in ONE SQLite transaction,
//! commits, and only then answers callers, publishes events and starts processes. So an answer
//! never promises what is not on disk, and a start is on disk before its process exists.
//!
//! Crash safety: an attempt is recorded (`runs` row, job `running`) before its process is spawned.
//! After a SIGKILL of the daemon, [`Engine::recover`] asks the executor about every attempt the
//! database says is running: finished ones get their exit code, live ones are adopted, ones that
//! never began are claimed (so they never will) and requeued. Nothing is lost, nothing runs twice.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use petri_domain::{
    BindMount, ContainerLaunch, ErrorBody, ErrorCode, Executors, ExitReport, Job, JobId, JobState,
    Launch, Pending, RunHandle, RunKey, RunOutcome, RunProbe, StopSignal,
};
use petri_sched::{DepState, Request, Running as SchedRunning, Waiting};
use petri_store::{StopIntent, Store, StoreError, Tx};
use tokio::sync::oneshot;

use crate::home::Home;
use crate::launch::LaunchHooks;
use crate::metrics::Metrics;
use crate::submit::Prepared;

mod gpus;
mod lifecycle;
mod recovery;
mod running;
use petri_domain::{Event, JobChange};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, ErrorBody>>;

/// The GPUs as the scheduler sees them, converted once per sample by the engine and shared with
/// admission (which checks a request could ever fit; foreign use is left out, it may go away).
#[derive(Clone, Debug, Default)]
pub(crate) struct GpuView {
    pub gpus: Vec<petri_sched::Gpu>,
    /// The MIG profiles the GPUs offer.
    pub mig_profiles: Vec<String>,
}

pub(crate) enum Command {
    Submit {
        jobs: Vec<Prepared>,
        by: crate::launch::Submitter,
        reply: Reply<Vec<Job>>,
    },
    Cancel {
        id: JobId,
        /// Why, when not a user's plain cancel (a service stopped or culled by its capability).
        reason: Option<String>,
        reply: Reply<Job>,
    },
    Hold {
        id: JobId,
        reply: Reply<Job>,
    },
    Release {
        id: JobId,
        reply: Reply<Job>,
    },
    /// Why these jobs wait, and where in line.
    Explain {
        only: Vec<JobId>,
        reply: oneshot::Sender<HashMap<JobId, Pending>>,
    },
    /// A fresh GPU sample.
    Gpus {
        status: petri_gpu::NvmlStatus,
        gpus: Vec<petri_gpu::GpuInfo>,
    },
    GpuReport {
        reply: oneshot::Sender<petri_domain::GpuReport>,
    },
    GpuHistory {
        reply: oneshot::Sender<petri_domain::GpuHistory>,
    },
    /// The GPUs (by index) whose MPS control daemon runs.
    Mps(HashMap<u32, petri_gpu::mps::Mps>),
    Exited(ExitReport),
    /// An attempt started off the engine thread (an executor whose start is not quick).
    Started {
        job: JobId,
        attempt: u32,
        handle: RunHandle,
    },
    SpawnFailed {
        job: JobId,
        attempt: u32,
        message: String,
    },
    /// The quotas changed.
    Quotas(petri_domain::QuotaBook),
    /// Each user's recent usage (fair share) and what they run and wait for.
    Shares {
        reply: oneshot::Sender<Vec<petri_domain::UserShare>>,
    },
    Shutdown,
}

/// Every waiting job's reason, with the version and the time it was made at.
type Explained = (u64, i64, std::sync::Arc<HashMap<JobId, Pending>>);

/// A job that is not finished.
struct Active {
    /// Lean while it waits (see [`lean`]): its whole spec is read back when it starts.
    job: Job,
    /// Whether `job` is lean.
    lean: bool,
    /// The scheduler's view of the job (with its backoff and since when it could start), kept
    /// current so planning allocates nothing.
    waiting: Waiting,
    run: Option<RunState>,
}

struct RunState {
    attempt: u32,
    /// Where it runs (the executor's target name).
    target: String,
    /// The MIG instance it holds (slot on its GPU).
    mig_slot: Option<u32>,
    /// Its processes were seen using more GPU memory than its slice.
    over_gpu_limit: bool,
    /// Indices of the GPUs the attempt holds.
    gpus: Vec<u32>,
    /// The executor's handle, once it is known.
    handle: Option<RunHandle>,
    deadline_ms: Option<i64>,
    stop: Option<Stop>,
    /// Re-adopted after a restart: not our child, so it is polled.
    adopted: bool,
}

struct Stop {
    intent: StopIntent,
    /// SIGTERM is sent once more here: a SIGTERM that reached the process group in the instant
    /// before the supervisor forked the job met only the supervisor (which traps it).
    again_at_ms: i64,
    again_sent: bool,
    kill_at_ms: i64,
    killed: bool,
}

/// Starts stopping a running attempt: the intent goes to the database (so a restarted daemon knows
/// what the kill meant), SIGTERM to its process group, an event. Does nothing if it is not running
/// or already stopping.
fn begin_stop(
    active: &mut Active,
    intent: StopIntent,
    now: i64,
    grace_ms: i64,
    tx: &Tx<'_>,
    fx: &mut Effects,
) -> Result<(), StoreError> {
    let Some(run) = active.run.as_mut() else {
        return Ok(());
    };
    if run.stop.is_some() {
        return Ok(());
    }
    run.stop = Some(Stop::new(intent, now, grace_ms));
    tx.set_stop_intent(active.job.id, run.attempt, intent)?;
    if let Some(handle) = run.handle.clone() {
        fx.signals
            .push((run.key(&active.job), handle, StopSignal::Terminate));
    }
    fx.events.push(Event::JobStopping(change(&active.job)));
    Ok(())
}

impl RunState {
    /// Names the attempt for its executor.
    fn key(&self, job: &Job) -> RunKey {
        RunKey {
            job: job.id,
            attempt: self.attempt,
            target: self.target.clone(),
        }
    }
}

/// The executor a job's attempts go to: a cluster when the spec names one, containers to
/// `docker`, the rest to `local`.
pub(crate) fn target_of(job: &Job) -> &str {
    target_of_spec(&job.spec)
}

pub(crate) fn target_of_spec(spec: &petri_domain::JobSpec) -> &str {
    match spec.target.as_deref() {
        Some(t) if petri_domain::is_remote_target(t) => t,
        _ if spec.image.is_some() => petri_domain::TARGET_DOCKER,
        _ => petri_domain::TARGET_LOCAL,
    }
}

impl Stop {
    fn new(intent: StopIntent, now: i64, grace_ms: i64) -> Stop {
        Stop {
            intent,
            again_at_ms: now + (grace_ms / 2).min(1000),
            again_sent: false,
            kill_at_ms: now + grace_ms,
            killed: false,
        }
    }
}

pub(crate) struct Engine {
    store: Store,
    state: State,
    rx: Receiver<Command>,
}

struct State {
    home: Home,
    /// The executors by target name.
    executors: Executors,
    /// What the capability that made a job adds to its environment at launch (a notebook's
    /// Jupyter token, say: derived, never stored).
    hooks: LaunchHooks,
    self_tx: Sender<Command>,
    events: crate::logwatch::Bus,
    metrics: Arc<Metrics>,
    capacity: petri_sched::Capacity,
    queue_limits: HashMap<String, u32>,
    /// GPUs as the scheduler sees them, from the last sample.
    gpus: Vec<petri_sched::Gpu>,
    /// The same, for admission.
    gpu_view: Arc<std::sync::Mutex<GpuView>>,
    gpu_reserve: u64,
    gpu_claim_after_ms: i64,
    /// `target: auto`: the cluster a job bursts to, and how long it waits here first.
    burst_to: Option<String>,
    burst_after_ms: i64,
    gpu_enforce: crate::settings::Enforce,
    gpu_status: petri_gpu::NvmlStatus,
    gpu_info: Vec<petri_gpu::GpuInfo>,
    /// MIG profile names, numbered for the scheduler.
    mig_profiles: Vec<String>,
    /// GPUs whose slices the driver enforces through MPS.
    mps: HashMap<u32, petri_gpu::mps::Mps>,
    /// Bounded history of GPU samples.
    gpu_history: std::collections::VecDeque<petri_domain::GpuPoint>,
    /// Each user's part of the GPUs, sample by sample.
    gpu_user_history: std::collections::VecDeque<petri_domain::UserGpuPoint>,
    kill_grace_ms: i64,
    /// Boxed: an `Active` is large, and a map's empty slots would each hold one.
    jobs: HashMap<JobId, Box<Active>>,
    /// Waiting jobs in scheduling order.
    order: BTreeSet<(Reverse<i32>, u64, JobId)>,
    /// Counts the steps that changed anything, so an explanation can be reused until then.
    version: u64,
    /// The last explanation of every waiting job: the version and time it was made at.
    explained: Option<Explained>,
    /// The part of `order` that could start if resources allow: not held, and no dependency
    /// still active. The scheduler's step walks only these, so a hundred thousand held jobs, or
    /// jobs behind a dependency, cost a job's start nothing.
    ready: BTreeSet<(Reverse<i32>, u64, JobId)>,
    dependants: HashMap<JobId, Vec<JobId>>,
    next_number: u64,
    /// Reservations of running jobs.
    running: HashMap<JobId, SchedRunning>,
    /// The earliest end of a retry backoff seen by the last plan.
    backoff_wake: Option<i64>,
    /// The last job that reached a final state (for answers about jobs doomed on arrival).
    last_finished: Option<Job>,
    /// Handles of attempts started after the last commit; written with the next transaction
    /// (recovery asks the executor when one is missing, so they need no wake-up of their own).
    unrecorded_handles: Vec<(JobId, u32, RunHandle)>,
    /// Per-user and per-group limits.
    quotas: petri_domain::QuotaBook,
    /// Each user's recent usage, for fair share.
    usage: petri_sched::fair::Usage,
    usage_half_life_ms: i64,
    /// When the usage was last written to the database (every minute, so a restart keeps it).
    usage_saved_ms: i64,
    /// Whether waiting jobs go by their users' usage (with more than one user).
    fair_share: bool,
    /// Unfinished jobs by user: fair share orders the line only when there are two or more.
    users: HashMap<String, u32>,
    /// Jobs run as their owners' Unix accounts (the daemon runs as root).
    switch_users: bool,
}

/// What a transaction decided, carried out after it commits.
#[derive(Default)]
struct Effects {
    replies: Vec<Box<dyn FnOnce(bool) + Send>>,
    events: Vec<Event>,
    launches: Vec<Launch>,
    signals: Vec<(RunKey, RunHandle, StopSignal)>,
    handles: Vec<(JobId, u32, RunHandle)>,
    /// Attempts whose end was recorded: what the executor left of them goes.
    removals: Vec<RunKey>,
}

impl Effects {
    fn reply<T: Send + 'static>(&mut self, reply: Reply<T>, value: Result<T, ErrorBody>) {
        self.replies.push(Box::new(move |committed| {
            let value = if committed {
                value
            } else {
                Err(ErrorBody::new(
                    ErrorCode::Internal,
                    "the database refused the change; nothing was changed (see the daemon log)",
                ))
            };
            let _ = reply.send(value);
        }));
    }
}

pub(crate) use crate::now_ms;

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: Store,
        settings: &crate::QueueConfig,
        executors: Executors,
        hooks: LaunchHooks,
        rx: Receiver<Command>,
        self_tx: Sender<Command>,
        events: crate::logwatch::Bus,
        metrics: Arc<Metrics>,
        gpu_view: Arc<std::sync::Mutex<GpuView>>,
    ) -> Result<Engine, StoreError> {
        let next_number = store.max_number()? + 1;
        Ok(Engine {
            store,
            rx,
            state: State {
                home: settings.home.clone(),
                executors,
                hooks,
                self_tx,
                events,
                metrics,
                capacity: settings.capacity(),
                queue_limits: settings.queue_limits(),
                gpus: Vec::new(),
                gpu_view,
                gpu_reserve: settings.gpu.reserve.0,
                gpu_claim_after_ms: settings.gpu.claim_after.0 as i64,
                burst_to: settings.burst.to.clone(),
                burst_after_ms: settings.burst.after.0 as i64,
                gpu_enforce: settings.gpu.enforce,
                gpu_status: petri_gpu::NvmlStatus {
                    available: false,
                    reason: Some("GPUs not sampled yet".into()),
                },
                gpu_info: Vec::new(),
                mig_profiles: Vec::new(),
                mps: HashMap::new(),
                gpu_history: std::collections::VecDeque::new(),
                gpu_user_history: std::collections::VecDeque::new(),
                kill_grace_ms: settings.kill_grace.0 as i64,
                jobs: HashMap::new(),
                order: BTreeSet::new(),
                version: 0,
                explained: None,
                ready: BTreeSet::new(),
                dependants: HashMap::new(),
                next_number,
                running: HashMap::new(),
                backoff_wake: None,
                last_finished: None,
                unrecorded_handles: Vec::new(),
                quotas: petri_domain::QuotaBook::default(),
                usage: petri_sched::fair::Usage::new(
                    settings.fair_share.half_life.0 as i64,
                    now_ms(),
                ),
                usage_half_life_ms: settings.fair_share.half_life.0 as i64,
                usage_saved_ms: now_ms(),
                fair_share: settings.fair_share.enabled,
                users: HashMap::new(),
                switch_users: crate::owners::switches_users(),
            },
        })
    }

    /// The attempts that run now (after `recover`), for the executors' sweep of leftovers.
    pub(crate) fn live_runs(&self) -> Vec<RunKey> {
        self.state
            .running
            .keys()
            .filter_map(|id| self.state.jobs.get(id))
            .filter_map(|a| Some(a.run.as_ref()?.key(&a.job)))
            .collect()
    }

    /// Loads unfinished jobs and settles every attempt the database says is running.
    pub(crate) fn recover(&mut self) -> Result<(), StoreError> {
        // Fair share's measure, as last kept: it decays over the time the daemon was down.
        if let (by_user, Some(at)) = self.store.usage()? {
            let half_life = self.state.usage_half_life_ms;
            self.state.usage =
                petri_sched::fair::Usage::restored(half_life, by_user, at.min(now_ms()));
            self.state.usage_saved_ms = now_ms();
        }
        // Loaded row by row: a waiting job is kept lean from the start.
        let mut running = Vec::new();
        let state = &mut self.state;
        self.store.each_active_job(|s| {
            if s.job.state == JobState::Running {
                running.push(s.job.id);
            }
            state.load(s.job, s.not_before_ms);
        })?;
        let mut runs = Vec::with_capacity(running.len());
        for id in running {
            runs.push((id, self.store.active_run(id)?));
        }
        let now = now_ms();
        let mut fx = Effects::default();
        let state = &mut self.state;
        self.store.write(|tx| {
            // A dependency loaded after its dependant made it look ready.
            let ids: Vec<JobId> = state.jobs.keys().copied().collect();
            for id in ids {
                state.refresh_ready(id);
            }
            for (id, run) in runs {
                state.recover_run(tx, id, run, now, &mut fx)?;
            }
            // Dependants of jobs that ended badly while we were away.
            let ids: Vec<JobId> = state.jobs.keys().copied().collect();
            let mut known = lifecycle::Ended::new();
            for id in ids {
                state.check_doomed(tx, id, now, &mut fx, &mut known)?;
            }
            Ok(())
        })?;
        let adopted = self
            .state
            .jobs
            .values()
            .filter(|a| a.run.as_ref().is_some_and(|r| r.adopted))
            .count();
        tracing::info!(jobs = self.state.jobs.len(), adopted, "queue recovered");
        // The log readers' view, as loaded (`carry_out` below brings the jobs recovery changed
        // up to date again: the same facts).
        self.state
            .events
            .live()
            .reset(self.state.jobs.values().map(|a| &a.job));
        self.state.carry_out(fx, true);
        // What hooks left for attempts that no longer run (files of secrets, say) goes now.
        self.state.hooks.sweep(&self.live_runs());
        self.state.update_gauges();
        Ok(())
    }

    /// Runs until a `Shutdown` command or until every sender is gone.
    pub(crate) fn run(mut self) {
        let mut batch = Vec::new();
        loop {
            let now = now_ms();
            let wait = self
                .state
                .next_wake(now)
                .map(|t| Duration::from_millis((t - now).clamp(0, 60_000) as u64))
                .unwrap_or(Duration::from_secs(60));
            match self.rx.recv_timeout(wait) {
                Ok(cmd) => batch.push(cmd),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < 4096 {
                match self.rx.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            let shutdown = batch.iter().any(|c| matches!(c, Command::Shutdown));
            if !self.step(std::mem::take(&mut batch)) || shutdown {
                break;
            }
        }
        // Fair share's measure, as of now, for the next start.
        let usage = &self.state.usage;
        if let Err(e) = self
            .store
            .write(|tx| tx.save_usage(usage.by_user(), usage.at_ms()))
        {
            tracing::warn!(error = %e, "could not keep the users' usage; fair share starts even");
        }
        tracing::info!("engine stopped; running jobs go on and are re-adopted at the next start");
    }

    /// One iteration; false when the engine must stop. Called by `run`, and once before it for
    /// the first GPU sample, so that the first submissions are checked against the GPUs.
    pub(crate) fn step(&mut self, batch: Vec<Command>) -> bool {
        let now = now_ms();
        self.state.metrics.loop_iterations.inc();
        let changes = batch.iter().any(|c| {
            !matches!(
                c,
                Command::Explain { .. }
                    | Command::GpuReport { .. }
                    | Command::GpuHistory { .. }
                    | Command::Shares { .. }
            )
        });
        // Usage is brought up to now before anything starts or ends.
        self.state.accrue(now);
        let mut fx = Effects::default();
        let handles = std::mem::take(&mut self.state.unrecorded_handles);
        let state = &mut self.state;
        let result = self.store.write(|tx| {
            for (id, attempt, handle) in &handles {
                tx.set_run_handle(*id, *attempt, handle.as_str())?;
            }
            for cmd in batch {
                state.apply(tx, cmd, now, &mut fx)?;
            }
            state.timers(tx, now, &mut fx)?;
            state.schedule(tx, now, &mut fx)?;
            if now - state.usage_saved_ms >= USAGE_SAVE_MS {
                tx.save_usage(state.usage.by_user(), state.usage.at_ms())?;
                state.usage_saved_ms = now;
            }
            Ok(())
        });
        if changes || !fx.events.is_empty() || !fx.launches.is_empty() {
            self.state.version += 1;
            // A stale explanation is never served again: its memory goes now.
            self.state.explained = None;
        }
        match result {
            Ok(()) => {
                self.state.carry_out(fx, true);
                self.state.update_gauges();
                self.state.shrink();
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "a queue transaction failed; reloading the queue from the database");
                // Handles of runs already started must still reach the database.
                let handles: Vec<_> = handles
                    .into_iter()
                    .chain(std::mem::take(&mut fx.handles))
                    .collect();
                self.state.carry_out(fx, false);
                let _ = self.store.write(|tx| {
                    for (id, attempt, handle) in &handles {
                        tx.set_run_handle(*id, *attempt, handle.as_str())?;
                    }
                    Ok(())
                });
                self.state.jobs.clear();
                self.state.users.clear();
                self.state.order.clear();
                self.state.ready.clear();
                self.state.dependants.clear();
                self.state.running.clear();
                self.state.events.live().reset([]);
                match self.recover() {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(error = %e, "the database cannot be read; the engine stops");
                        false
                    }
                }
            }
        }
    }
}

impl State {
    /// The scheduler's number for a MIG profile name.
    fn mig_profile_id(&mut self, profile: &str) -> u32 {
        match self.mig_profiles.iter().position(|p| p == profile) {
            Some(i) => i as u32,
            None => {
                self.mig_profiles.push(profile.to_string());
                (self.mig_profiles.len() - 1) as u32
            }
        }
    }

    fn load(&mut self, job: Job, not_before_ms: i64) {
        let id = job.id;
        for dep in &job.depends_on {
            self.dependants.entry(*dep).or_default().push(id);
        }
        if matches!(job.state, JobState::Queued | JobState::Held) {
            self.order.insert((Reverse(job.priority), job.number, id));
        }
        let eligible_ms = job.submitted_at_ms.max(not_before_ms);
        let waiting = Waiting {
            id,
            number: job.number,
            priority: job.priority,
            queue: job.queue.clone(),
            request: {
                let mut request = request_of(&job);
                if let Some(profile) = &job.spec.resources.mig {
                    request.gpu = petri_sched::GpuAsk::Mig(self.mig_profile_id(profile));
                }
                request
            },
            held: job.state == JobState::Held,
            after: job.depends_on.clone(),
            not_before_ms,
            since_ms: eligible_ms,
            time_limit_ms: job.spec.timeout.map(|t| t.0 as i64),
            user: job.user.clone(),
        };
        *self.users.entry(job.user.clone()).or_default() += 1;
        // A job that may burst is kept whole: the cluster's executor judges its whole spec.
        let waits = matches!(job.state, JobState::Queued | JobState::Held)
            && job.spec.target.as_deref() != Some(petri_domain::TARGET_AUTO);
        let mut job = job;
        if waits {
            lean(&mut job);
        }
        self.jobs.insert(
            id,
            Box::new(Active {
                job,
                lean: waits,
                waiting,
                run: None,
            }),
        );
        self.refresh_ready(id);
    }

    /// Why every waiting job waits: the scheduler's explaining walk, reused while nothing
    /// changed for at most a second (reasons such as a backoff's end move with the clock).
    fn explained(&mut self, now: i64) -> std::sync::Arc<HashMap<JobId, Pending>> {
        if let Some((version, at, all)) = &self.explained
            && *version == self.version
            && now.saturating_sub(*at) < 1000
        {
            return all.clone();
        }
        let all = std::sync::Arc::new(self.plan(now, true).pending);
        self.explained = Some((self.version, now, all.clone()));
        all
    }

    /// Gives back what the maps of active jobs grew to hold (`give_back_room`).
    fn shrink(&mut self) {
        crate::give_back_room(&mut self.jobs);
        crate::give_back_room(&mut self.dependants);
        crate::give_back_room(&mut self.running);
    }

    /// Puts a waiting job in `ready`, or takes it out, by whether it could start now.
    fn refresh_ready(&mut self, id: JobId) {
        let Some(a) = self.jobs.get(&id) else {
            return;
        };
        let key = (Reverse(a.job.priority), a.job.number, id);
        let ready = self.order.contains(&key)
            && !a.waiting.held
            && a.job.depends_on.iter().all(|d| !self.jobs.contains_key(d));
        if ready {
            self.ready.insert(key);
        } else {
            self.ready.remove(&key);
        }
    }

    fn apply(
        &mut self,
        tx: &Tx<'_>,
        cmd: Command,
        now: i64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        match cmd {
            Command::Submit { jobs, by, reply } => {
                // The capabilities' checks (a secret must exist and be the submitter's), all
                // before anything is inserted: a refused submission changes nothing.
                let admitted = jobs.iter().try_for_each(|p| {
                    self.hooks.admit(&p.spec, &by)?;
                    self.admit_quota(&p.spec, &by.user)?;
                    self.admit_owner(&by)
                });
                if let Err(body) = admitted {
                    fx.reply(reply, Err(body));
                    return Ok(());
                }
                let out = self.submit(tx, jobs, by, now, fx)?;
                fx.reply(reply, Ok(out));
            }
            Command::Cancel { id, reason, reply } => {
                let out = self.cancel(tx, id, reason, now, fx)?;
                fx.reply(reply, out);
            }
            Command::Hold { id, reply } => {
                let out = self.hold(tx, id, true, fx)?;
                fx.reply(reply, out);
            }
            Command::Release { id, reply } => {
                let out = self.hold(tx, id, false, fx)?;
                fx.reply(reply, out);
            }
            Command::Explain { only, reply } => {
                let all = self.explained(now);
                let _ = reply.send(
                    only.into_iter()
                        .filter_map(|id| all.get(&id).map(|p| (id, p.clone())))
                        .collect(),
                );
            }
            Command::Gpus { status, gpus } => self.take_gpu_sample(tx, status, gpus, now, fx)?,
            Command::GpuReport { reply } => {
                let _ = reply.send(self.gpu_report());
            }
            Command::Mps(mps) => self.mps = mps,
            Command::GpuHistory { reply } => {
                let _ = reply.send(petri_domain::GpuHistory {
                    points: self.gpu_history.iter().cloned().collect(),
                    users: self.gpu_user_history.iter().cloned().collect(),
                });
            }
            Command::Exited(report) => {
                self.finish(tx, report.job, report.attempt, report.exit_code, now, fx)?;
            }

            Command::Started {
                job,
                attempt,
                handle,
            } => {
                if let Some(stop) = self.record_handle(job, attempt, &handle) {
                    tx.set_run_handle(job, attempt, handle.as_str())?;
                    if let Some(key) = stop {
                        fx.signals.push((key, handle, StopSignal::Terminate));
                    }
                }
            }

            Command::SpawnFailed {
                job,
                attempt,
                message,
            } => {
                if let Some(a) = self.jobs.get_mut(&job) {
                    a.job.reason = Some(message);
                }
                self.finish(tx, job, attempt, Some(127), now, fx)?;
            }
            Command::Quotas(book) => self.quotas = book,
            Command::Shares { reply } => {
                let _ = reply.send(self.shares());
            }
            Command::Shutdown => {}
        }
        Ok(())
    }
}

/// How often fair share's usage is written to the database.
const USAGE_SAVE_MS: i64 = 60_000;

/// The sum of a user's running and waiting jobs, and their usage.
impl State {
    fn accrue(&mut self, now: i64) {
        let (capacity, gpus) = (self.capacity, &self.gpus);
        self.usage.accrue(
            self.running.values().map(|r| {
                (
                    r.user.as_str(),
                    petri_sched::fair::share(&r.request, capacity, gpus),
                )
            }),
            now,
        );
    }

    /// Refuses a job that could never start under its user's (or a group's) quota.
    fn admit_quota(&self, spec: &petri_domain::JobSpec, user: &str) -> Result<(), ErrorBody> {
        if self.quotas.is_empty() {
            return Ok(());
        }
        let request = request_of_spec(spec);
        for (who, quota) in petri_sched::fair::quotas_of(&self.quotas, user) {
            if let Some(limit) = petri_sched::fair::fits_quota(&request, &self.gpus, quota) {
                return Err(ErrorBody::new(
                    ErrorCode::QuotaExceeded,
                    format!(
                        "this job asks for more than the quota of {who} allows ({limit}), so it \
                         could never start; ask for less, or ask an admin to raise it with \
                         `petri user quota`"
                    ),
                )
                .with_details(serde_json::json!({ "quota_of": who, "limit": limit })));
            }
        }
        Ok(())
    }

    /// On a daemon that runs jobs as their owners, a job's user must have an account here.
    fn admit_owner(&self, by: &crate::launch::Submitter) -> Result<(), ErrorBody> {
        if self.switch_users && runs_as_owner(by.origin.kind()) {
            crate::owners::account(&by.user)?;
        }
        Ok(())
    }

    /// The account an attempt of `job` runs as (none: the daemon's own).
    pub(super) fn run_as(&self, job: &Job) -> Option<petri_domain::RunAs> {
        if !self.switch_users || !runs_as_owner(job.origin.kind()) {
            return None;
        }
        crate::owners::account(&job.user).ok().flatten()
    }

    /// What each user runs, waits for, and their recent usage.
    fn shares(&self) -> Vec<petri_domain::UserShare> {
        let mut by: std::collections::BTreeMap<String, petri_domain::UserShare> =
            std::collections::BTreeMap::new();
        for a in self.jobs.values() {
            let share = by
                .entry(a.job.user.clone())
                .or_insert_with(|| petri_domain::UserShare {
                    user: a.job.user.clone(),
                    ..Default::default()
                });
            if a.run.is_some() {
                share.running += 1;
            } else {
                share.waiting += 1;
            }
        }
        for (user, used) in self.usage.by_user() {
            by.entry(user.clone())
                .or_insert_with(|| petri_domain::UserShare {
                    user: user.clone(),
                    ..Default::default()
                })
                .usage_hours = used / 3600.0;
        }
        let (capacity, gpus) = (self.capacity, &self.gpus);
        for r in self.running.values() {
            if let Some(share) = by.get_mut(&r.user) {
                share.share_now += petri_sched::fair::share(&r.request, capacity, gpus);
            }
        }
        for share in by.values_mut() {
            share.quota = self.quotas.users.get(&share.user).cloned();
        }
        by.into_values().collect()
    }

    /// A user's job left the engine's map.
    fn forget_user(&mut self, user: &str) {
        if let Some(n) = self.users.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                self.users.remove(user);
            }
        }
    }
}

fn request_of(job: &Job) -> Request {
    request_of_spec(&job.spec)
}

/// Whether jobs of this origin run as their user: everything that runs the user's code. A
/// model deployment runs Petri's own model server, which reads the registry's files in the home,
/// so it runs as the daemon.
fn runs_as_owner(kind: petri_domain::OriginKind) -> bool {
    kind != petri_domain::OriginKind::Deployment
}

fn request_of_spec(spec: &petri_domain::JobSpec) -> Request {
    // A cluster's job takes nothing of this machine: the cluster's scheduler places it.
    if petri_domain::is_remote_target(target_of_spec(spec)) {
        return Request::NOTHING;
    }
    let r = &spec.resources;
    let gpu = match (r.gpus, r.gpu_memory) {
        (Some(n), _) if n > 0 => petri_sched::GpuAsk::Whole(n),
        (_, Some(bytes)) => petri_sched::GpuAsk::Memory(bytes.0),
        _ => petri_sched::GpuAsk::None,
    };
    Request {
        gpu,
        cpu_millis: spec.resources.cpu_millis().max(1),
        memory: spec.resources.memory_bytes(),
    }
}

/// Drops what a waiting job's spec holds only for its launch (its command, environment, sweep
/// values, mounts, secrets): the engine keeps what it schedules by, so a hundred thousand
/// waiting jobs cost their scheduling fields and not their specs. [`Active::fill`] reads the
/// rest back from the database when the job starts; answers to callers read it back too.
fn lean(job: &mut Job) {
    let spec = std::mem::take(&mut job.spec);
    job.spec = petri_domain::JobSpec {
        image: spec.image,
        resources: spec.resources,
        priority: spec.priority,
        queue: spec.queue,
        retries: spec.retries,
        timeout: spec.timeout,
        target: spec.target,
        hold: spec.hold,
        ..Default::default()
    };
    job.array_values = Default::default();
}

impl Active {
    /// Gives a lean job its whole spec back, as stored.
    fn fill(&mut self, tx: &Tx<'_>) -> Result<(), StoreError> {
        if self.lean {
            self.job = whole(tx, &self.job)?;
            self.lean = false;
        }
        Ok(())
    }
}

/// A job as the engine holds it, with its whole spec (read back from the transaction, which
/// has every change the engine made to it): what callers are answered with.
fn whole(tx: &Tx<'_>, job: &Job) -> Result<Job, StoreError> {
    let mut out = job.clone();
    match tx.get(job.id)? {
        Some(stored) => {
            out.spec = stored.job.spec;
            out.array_values = stored.job.array_values;
        }
        None => {
            return Err(StoreError::Corrupt(format!(
                "job {} is active but not in the database",
                job.id
            )));
        }
    }
    Ok(out)
}

fn change(job: &Job) -> JobChange {
    JobChange {
        id: job.id,
        number: job.number,
        name: job.name.clone(),
        state: job.state,
        attempt: job.attempts,
        exit_code: job.exit_code,
        reason: job.reason.clone(),
    }
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| sig.to_string())
}
