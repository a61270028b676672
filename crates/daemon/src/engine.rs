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
    ErrorBody, ErrorCode, Executor, ExitReport, Job, JobId, JobState, Launch, Pending, RunOutcome,
    RunProbe, StopSignal,
};
use petri_sched::{DepState, Limits, Request, Running as SchedRunning, Waiting};
use petri_store::{StopIntent, Store, StoreError, Tx};
use tokio::sync::{broadcast, oneshot};

use crate::home::Home;
use crate::metrics::Metrics;
use crate::submit::Prepared;
use petri_domain::{Event, JobChange};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, ErrorBody>>;

pub(crate) enum Command {
    Submit {
        jobs: Vec<Prepared>,
        reply: Reply<Vec<Job>>,
    },
    Cancel {
        id: JobId,
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
    Explain {
        reply: oneshot::Sender<HashMap<JobId, Pending>>,
    },
    Exited(ExitReport),
    SpawnFailed {
        job: JobId,
        attempt: u32,
        message: String,
    },
    Shutdown,
}

/// A job that is not finished.
struct Active {
    job: Job,
    /// The scheduler's view of the job, kept current so planning allocates nothing.
    waiting: Waiting,
    not_before_ms: i64,
    /// The moment the job could first start (for the latency metric).
    eligible_ms: i64,
    run: Option<RunState>,
}

struct RunState {
    attempt: u32,
    pid: Option<u32>,
    deadline_ms: Option<i64>,
    stop: Option<Stop>,
    /// Re-adopted after a restart: not our child, so it is polled.
    adopted: bool,
}

struct Stop {
    intent: StopIntent,
    kill_at_ms: i64,
    killed: bool,
}

pub(crate) struct Engine {
    store: Store,
    state: State,
    rx: Receiver<Command>,
}

struct State {
    home: Home,
    exec: Arc<dyn Executor>,
    self_tx: Sender<Command>,
    events: broadcast::Sender<Event>,
    metrics: Arc<Metrics>,
    limits: Limits<'static>,
    kill_grace_ms: i64,
    jobs: HashMap<JobId, Active>,
    /// Waiting jobs in scheduling order.
    order: BTreeSet<(Reverse<i32>, u64, JobId)>,
    /// Final states of jobs that others may depend on.
    finished: HashMap<JobId, (u64, JobState)>,
    dependants: HashMap<JobId, Vec<JobId>>,
    next_number: u64,
    /// Reservations of running jobs.
    running: HashMap<JobId, SchedRunning>,
    /// The earliest end of a retry backoff seen by the last plan.
    backoff_wake: Option<i64>,
    /// The last job that reached a final state (for answers about jobs doomed on arrival).
    last_finished: Option<Job>,
    /// Pids of attempts started after the last commit; written with the next transaction
    /// (recovery reads the claim file when one is missing, so they need no wake-up of their own).
    unrecorded_pids: Vec<(JobId, u32, u32)>,
}

/// What a transaction decided, carried out after it commits.
#[derive(Default)]
struct Effects {
    replies: Vec<Box<dyn FnOnce(bool) + Send>>,
    events: Vec<Event>,
    launches: Vec<Launch>,
    signals: Vec<(u32, StopSignal)>,
    pids: Vec<(JobId, u32, u32)>,
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

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: Store,
        home: Home,
        exec: Arc<dyn Executor>,
        rx: Receiver<Command>,
        self_tx: Sender<Command>,
        events: broadcast::Sender<Event>,
        metrics: Arc<Metrics>,
        settings: &crate::Settings,
    ) -> Result<Engine, StoreError> {
        let queue_limits: &'static HashMap<String, u32> =
            Box::leak(Box::new(settings.queue_limits()));
        let next_number = store.max_number()? + 1;
        Ok(Engine {
            store,
            rx,
            state: State {
                home,
                exec,
                self_tx,
                events,
                metrics,
                limits: Limits {
                    capacity: settings.capacity(),
                    queue_limits,
                },
                kill_grace_ms: settings.kill_grace.0 as i64,
                jobs: HashMap::new(),
                order: BTreeSet::new(),
                finished: HashMap::new(),
                dependants: HashMap::new(),
                next_number,
                running: HashMap::new(),
                backoff_wake: None,
                last_finished: None,
                unrecorded_pids: Vec::new(),
            },
        })
    }

    /// Loads unfinished jobs and settles every attempt the database says is running.
    pub(crate) fn recover(&mut self) -> Result<(), StoreError> {
        let stored = self.store.active_jobs()?;
        let mut runs = Vec::new();
        for s in &stored {
            if s.job.state == JobState::Running {
                runs.push((s.job.id, self.store.active_run(s.job.id)?));
            }
        }
        let mut dep_ids: Vec<JobId> = stored
            .iter()
            .flat_map(|s| s.job.depends_on.iter().copied())
            .collect();
        dep_ids.sort();
        dep_ids.dedup();
        for (id, number, state) in self.store.states_of(&dep_ids)? {
            if state.is_terminal() {
                self.state.finished.insert(id, (number, state));
            }
        }
        let now = now_ms();
        let mut fx = Effects::default();
        let state = &mut self.state;
        self.store.write(|tx| {
            for s in stored {
                state.load(s.job, s.not_before_ms);
            }
            for (id, run) in runs {
                state.recover_run(tx, id, run, now, &mut fx)?;
            }
            // Dependants of jobs that ended badly while we were away.
            let ids: Vec<JobId> = state.jobs.keys().copied().collect();
            for id in ids {
                state.check_doomed(tx, id, now, &mut fx)?;
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
        self.state.carry_out(fx, true);
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
        tracing::info!("engine stopped; running jobs go on and are re-adopted at the next start");
    }

    /// One iteration; false when the engine must stop.
    fn step(&mut self, batch: Vec<Command>) -> bool {
        let now = now_ms();
        self.state.metrics.loop_iterations.inc();
        let mut fx = Effects::default();
        let pids = std::mem::take(&mut self.state.unrecorded_pids);
        let state = &mut self.state;
        let result = self.store.write(|tx| {
            for (id, attempt, pid) in &pids {
                tx.set_run_pid(*id, *attempt, *pid)?;
            }
            for cmd in batch {
                state.apply(tx, cmd, now, &mut fx)?;
            }
            state.timers(tx, now, &mut fx)?;
            state.schedule(tx, now, &mut fx)?;
            Ok(())
        });
        match result {
            Ok(()) => {
                self.state.carry_out(fx, true);
                self.state.update_gauges();
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "a queue transaction failed; reloading the queue from the database");
                // Pids of processes already running must still reach the database.
                let pids: Vec<_> = pids
                    .into_iter()
                    .chain(std::mem::take(&mut fx.pids))
                    .collect();
                self.state.carry_out(fx, false);
                let _ = self.store.write(|tx| {
                    for (id, attempt, pid) in &pids {
                        tx.set_run_pid(*id, *attempt, *pid)?;
                    }
                    Ok(())
                });
                self.state.jobs.clear();
                self.state.order.clear();
                self.state.dependants.clear();
                self.state.running.clear();
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
            request: request_of(&job),
            held: job.state == JobState::Held,
            after: job.depends_on.clone(),
            not_before_ms,
        };
        self.jobs.insert(
            id,
            Active {
                job,
                waiting,
                not_before_ms,
                eligible_ms,
                run: None,
            },
        );
    }

    fn recover_run(
        &mut self,
        tx: &Tx<'_>,
        id: JobId,
        run: Option<petri_store::ActiveRun>,
        now: i64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let Some(run) = run else {
            // Running without an attempt row cannot happen; requeue rather than lose the job.
            tracing::warn!(job.id = %id, "running job without an attempt; requeued");
            return self.requeue_unstarted(tx, id, None, fx);
        };
        let probe = self.exec.probe(&self.home.run_file(id, run.attempt));
        let Some(active) = self.jobs.get_mut(&id) else {
            return Ok(());
        };
        let timeout = active.job.spec.timeout.map(|t| t.0 as i64);
        active.run = Some(RunState {
            attempt: run.attempt,
            pid: run.pid,
            deadline_ms: timeout.map(|t| run.started_at_ms + t),
            stop: run.stop_intent.map(|intent| Stop {
                intent,
                kill_at_ms: now + self.kill_grace_ms,
                killed: false,
            }),
            adopted: true,
        });
        self.running.insert(
            id,
            SchedRunning {
                queue: active.job.queue.clone(),
                request: active.waiting.request,
            },
        );
        match probe {
            RunProbe::Exited(code) => {
                tracing::info!(job.id = %id, code, "job finished while the daemon was away");
                self.finish(tx, id, run.attempt, Some(code), now, fx)
            }
            RunProbe::Alive { pid } => {
                tracing::info!(job.id = %id, pid, "re-adopted a running job");
                if let Some(r) = active.run.as_mut() {
                    r.pid = Some(pid);
                    if r.stop.is_some() {
                        fx.signals.push((pid, StopSignal::Terminate));
                    }
                }
                if run.pid.is_none() {
                    fx.pids.push((id, run.attempt, pid));
                }
                Ok(())
            }
            RunProbe::NeverStarted => {
                tracing::info!(job.id = %id, "an attempt never began; requeued");
                self.running.remove(&id);
                self.requeue_unstarted(tx, id, Some(run.attempt), fx)
            }
            RunProbe::Lost => {
                tracing::warn!(job.id = %id, "a job vanished without an exit status");
                self.finish(tx, id, run.attempt, None, now, fx)
            }
        }
    }

    /// Puts back a job whose attempt provably never began (its run row is dropped).
    fn requeue_unstarted(
        &mut self,
        tx: &Tx<'_>,
        id: JobId,
        attempt: Option<u32>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        if let Some(a) = attempt {
            tx.drop_run(id, a)?;
        }
        let Some(active) = self.jobs.get_mut(&id) else {
            return Ok(());
        };
        active.run = None;
        let job = &mut active.job;
        job.state = JobState::Queued;
        // The attempt's number stays used: its status file now says "recovered" for good, so the
        // next attempt gets a fresh number (and a fresh file).
        job.started_at_ms = None;
        tx.update_job(job, active.not_before_ms)?;
        self.order.insert((Reverse(job.priority), job.number, id));
        fx.events.push(Event::JobChanged(change(job)));
        Ok(())
    }

    fn apply(
        &mut self,
        tx: &Tx<'_>,
        cmd: Command,
        now: i64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        match cmd {
            Command::Submit { jobs, reply } => {
                let out = self.submit(tx, jobs, now, fx)?;
                fx.reply(reply, Ok(out));
            }
            Command::Cancel { id, reply } => {
                let out = self.cancel(tx, id, now, fx)?;
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
            Command::Explain { reply } => {
                let plan = self.plan(now, true);
                let _ = reply.send(plan.pending);
            }
            Command::Exited(report) => {
                self.finish(tx, report.job, report.attempt, report.exit_code, now, fx)?;
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
            Command::Shutdown => {}
        }
        Ok(())
    }

    fn submit(
        &mut self,
        tx: &Tx<'_>,
        prepared: Vec<Prepared>,
        now: i64,
        fx: &mut Effects,
    ) -> Result<Vec<Job>, StoreError> {
        let mut out = Vec::with_capacity(prepared.len());
        for p in prepared {
            let number = self.next_number;
            self.next_number += 1;
            let state = if p.spec.hold {
                JobState::Held
            } else {
                JobState::Queued
            };
            let job = Job {
                id: p.id,
                number,
                name: p.spec.display_name(),
                state,
                queue: p.spec.queue_name().to_string(),
                priority: p.spec.priority,
                spec: p.spec,
                array_values: p.array_values,
                depends_on: p.depends_on,
                submitted_at_ms: now,
                started_at_ms: None,
                finished_at_ms: None,
                exit_code: None,
                reason: None,
                attempts: 0,
                pending: None,
                runs: Vec::new(),
            };
            tx.insert_job(&job, 0)?;
            self.metrics.submitted.inc();
            fx.events.push(Event::JobSubmitted(change(&job)));
            let id = job.id;
            self.load(job, 0);
            // A dependency that already ended badly dooms the job at once.
            self.check_doomed(tx, id, now, fx)?;
            if let Some(a) = self.jobs.get(&id) {
                out.push(a.job.clone());
            } else if let Some(job) = self.last_finished.take() {
                out.push(job);
            }
        }
        Ok(out)
    }

    fn cancel(
        &mut self,
        tx: &Tx<'_>,
        id: JobId,
        now: i64,
        fx: &mut Effects,
    ) -> Result<Result<Job, ErrorBody>, StoreError> {
        let Some(active) = self.jobs.get_mut(&id) else {
            return Ok(Err(self.not_active(id)));
        };
        if let Some(run) = active.run.as_mut() {
            if run.stop.is_none() {
                run.stop = Some(Stop {
                    intent: StopIntent::Cancel,
                    kill_at_ms: now + self.kill_grace_ms,
                    killed: false,
                });
                tx.set_stop_intent(id, run.attempt, StopIntent::Cancel)?;
                if let Some(pid) = run.pid {
                    fx.signals.push((pid, StopSignal::Terminate));
                }
                fx.events.push(Event::JobStopping(change(&active.job)));
            }
            return Ok(Ok(active.job.clone()));
        }
        let job = self.end_waiting(
            tx,
            id,
            JobState::Cancelled,
            "cancelled by a user".into(),
            now,
            fx,
        )?;
        Ok(job.ok_or_else(|| self.not_active(id)))
    }

    fn hold(
        &mut self,
        tx: &Tx<'_>,
        id: JobId,
        hold: bool,
        fx: &mut Effects,
    ) -> Result<Result<Job, ErrorBody>, StoreError> {
        let Some(active) = self.jobs.get_mut(&id) else {
            return Ok(Err(self.not_active(id)));
        };
        let job = &mut active.job;
        let (allowed, verb) = if hold {
            (job.state.can_hold(), "held")
        } else {
            (job.state.can_release(), "released")
        };
        if !allowed {
            return Ok(Err(ErrorBody::new(
                ErrorCode::InvalidState,
                format!(
                    "job #{} is {} and cannot be {verb}; only {} jobs can",
                    job.number,
                    job.state,
                    if hold { "queued" } else { "held" }
                ),
            )));
        }
        job.state = if hold {
            JobState::Held
        } else {
            JobState::Queued
        };
        active.waiting.held = hold;
        tx.update_job(job, active.not_before_ms)?;
        fx.events.push(Event::JobChanged(change(job)));
        Ok(Ok(job.clone()))
    }

    fn not_active(&self, id: JobId) -> ErrorBody {
        match self.finished.get(&id) {
            Some((number, state)) => ErrorBody::new(
                ErrorCode::InvalidState,
                format!("job #{number} already {state}"),
            ),
            None => ErrorBody::new(
                ErrorCode::InvalidState,
                format!("job {id} has already finished"),
            ),
        }
    }

    /// Ends a job that is not running (cancelled, or doomed by a dependency).
    fn end_waiting(
        &mut self,
        tx: &Tx<'_>,
        id: JobId,
        state: JobState,
        reason: String,
        now: i64,
        fx: &mut Effects,
    ) -> Result<Option<Job>, StoreError> {
        let Some(mut active) = self.jobs.remove(&id) else {
            return Ok(None);
        };
        let job = &mut active.job;
        self.order.remove(&(Reverse(job.priority), job.number, id));
        job.state = state;
        job.finished_at_ms = Some(now);
        job.reason = Some(reason);
        tx.update_job(job, active.not_before_ms)?;
        let job = active.job;
        self.terminal(tx, &job, now, fx)?;
        Ok(Some(job))
    }

    /// Bookkeeping for a job that reached a final state: metrics, event, and its dependants.
    fn terminal(
        &mut self,
        tx: &Tx<'_>,
        job: &Job,
        now: i64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        self.metrics.finished(job.state);
        self.finished.insert(job.id, (job.number, job.state));
        fx.events.push(Event::JobChanged(change(job)));
        self.last_finished = Some(job.clone());
        if job.state != JobState::Succeeded {
            if let Some(users) = self.dependants.remove(&job.id) {
                for user in users {
                    if self.jobs.get(&user).is_some_and(|a| a.run.is_none()) {
                        self.end_waiting(
                            tx,
                            user,
                            JobState::Failed,
                            format!("dependency #{} {}", job.number, job.state),
                            now,
                            fx,
                        )?;
                    }
                }
            }
        } else {
            self.dependants.remove(&job.id);
        }
        Ok(())
    }

    fn check_doomed(
        &mut self,
        tx: &Tx<'_>,
        id: JobId,
        now: i64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let Some(active) = self.jobs.get(&id) else {
            return Ok(());
        };
        if active.run.is_some() {
            return Ok(());
        }
        let bad = active.job.depends_on.iter().find_map(|d| {
            self.finished
                .get(d)
                .filter(|(_, s)| *s != JobState::Succeeded)
                .copied()
        });
        if let Some((number, state)) = bad {
            self.end_waiting(
                tx,
                id,
                JobState::Failed,
                format!("dependency #{number} {state}"),
                now,
                fx,
            )?;
        }
        Ok(())
    }

    /// An attempt ended: record it, then retry, or finish the job.
    fn finish(
        &mut self,
        tx: &Tx<'_>,
        id: JobId,
        attempt: u32,
        exit_code: Option<i32>,
        now: i64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let Some(active) = self.jobs.get_mut(&id) else {
            return Ok(());
        };
        let Some(run) = active.run.as_ref() else {
            return Ok(());
        };
        if run.attempt != attempt {
            return Ok(());
        }
        let intent = run.stop.as_ref().map(|s| s.intent);
        let (outcome, reason) = match (intent, exit_code) {
            (Some(StopIntent::Cancel), _) => {
                (RunOutcome::Cancelled, "cancelled by a user".to_string())
            }
            (Some(StopIntent::Timeout), _) => (
                RunOutcome::TimedOut,
                format!(
                    "ran past its timeout of {}",
                    active.job.spec.timeout.unwrap_or_default()
                ),
            ),
            (None, Some(0)) => (RunOutcome::Succeeded, String::new()),
            (None, Some(code)) if code > 128 && code < 128 + 65 => (
                RunOutcome::Failed,
                format!("killed by signal {}", signal_name(code - 128)),
            ),
            (None, Some(code)) => (
                RunOutcome::Failed,
                active
                    .job
                    .reason
                    .take()
                    .unwrap_or_else(|| format!("exited with code {code}")),
            ),
            (None, None) => (
                RunOutcome::Lost,
                "its process vanished without an exit status (was the machine restarted, or the \
                 process group killed from outside?)"
                    .to_string(),
            ),
        };
        tx.finish_run(id, attempt, now, exit_code, outcome)?;
        active.run = None;
        self.running.remove(&id);
        let job = &mut active.job;
        job.exit_code = exit_code;
        let retryable = matches!(
            outcome,
            RunOutcome::Failed | RunOutcome::TimedOut | RunOutcome::Lost
        );
        if retryable && job.attempts <= job.spec.retries.max {
            let delay = job.spec.retries.delay_before(job.attempts + 1).0 as i64;
            active.not_before_ms = now + delay;
            active.waiting.not_before_ms = now + delay;
            active.eligible_ms = now + delay;
            job.state = JobState::Queued;
            job.reason = Some(format!(
                "attempt {} {reason}; retrying ({} of {})",
                job.attempts, job.attempts, job.spec.retries.max
            ));
            tx.update_job(job, active.not_before_ms)?;
            self.order.insert((Reverse(job.priority), job.number, id));
            fx.events.push(Event::JobChanged(change(job)));
            return Ok(());
        }
        job.state = match outcome {
            RunOutcome::Succeeded => JobState::Succeeded,
            RunOutcome::Cancelled => JobState::Cancelled,
            RunOutcome::TimedOut => JobState::TimedOut,
            RunOutcome::Failed | RunOutcome::Lost | RunOutcome::Running => JobState::Failed,
        };
        job.finished_at_ms = Some(now);
        job.reason = (!reason.is_empty()).then_some(reason);
        tx.update_job(job, active.not_before_ms)?;
        let Some(active) = self.jobs.remove(&id) else {
            return Ok(());
        };
        self.terminal(tx, &active.job, now, fx)
    }

    /// Timeouts, kill escalations, and polls of re-adopted jobs.
    fn timers(&mut self, tx: &Tx<'_>, now: i64, fx: &mut Effects) -> Result<(), StoreError> {
        let mut exited = Vec::new();
        for id in self.running.keys() {
            let Some(active) = self.jobs.get_mut(id) else {
                continue;
            };
            let Some(run) = active.run.as_mut() else {
                continue;
            };
            if run.stop.is_none() && run.deadline_ms.is_some_and(|d| d <= now) {
                run.stop = Some(Stop {
                    intent: StopIntent::Timeout,
                    kill_at_ms: now + self.kill_grace_ms,
                    killed: false,
                });
                tx.set_stop_intent(*id, run.attempt, StopIntent::Timeout)?;
                if let Some(pid) = run.pid {
                    fx.signals.push((pid, StopSignal::Terminate));
                }
                fx.events.push(Event::JobStopping(change(&active.job)));
            }
            if let Some(stop) = run.stop.as_mut()
                && !stop.killed
                && stop.kill_at_ms <= now
            {
                stop.killed = true;
                if let Some(pid) = run.pid {
                    fx.signals.push((pid, StopSignal::Kill));
                }
            }
            if run.adopted {
                match self.exec.probe(&self.home.run_file(*id, run.attempt)) {
                    RunProbe::Alive { .. } => {}
                    RunProbe::Exited(code) => exited.push((*id, run.attempt, Some(code))),
                    RunProbe::Lost | RunProbe::NeverStarted => {
                        exited.push((*id, run.attempt, None))
                    }
                }
            }
        }
        for (id, attempt, code) in exited {
            self.finish(tx, id, attempt, code, now, fx)?;
        }
        Ok(())
    }

    fn next_wake(&self, now: i64) -> Option<i64> {
        let mut wake: Option<i64> = None;
        let mut at = |t: i64| wake = Some(wake.map_or(t, |w| w.min(t)));
        if let Some(t) = self.backoff_wake {
            at(t);
        }
        if !self.unrecorded_pids.is_empty() {
            // Under load the next transaction comes soon anyway; when idle, write them shortly.
            at(now + 50);
        }
        for run in self
            .running
            .keys()
            .filter_map(|id| self.jobs.get(id))
            .filter_map(|a| a.run.as_ref())
        {
            if run.adopted {
                at(now + 200);
            }
            if let Some(stop) = &run.stop {
                if !stop.killed {
                    at(stop.kill_at_ms);
                }
            } else if let Some(d) = run.deadline_ms {
                at(d);
            }
        }
        wake
    }

    fn plan(&self, now: i64, explain: bool) -> petri_sched::Plan {
        let waiting = self
            .order
            .iter()
            .filter_map(|(_, _, id)| self.jobs.get(id))
            .map(|a| &a.waiting);
        petri_sched::plan(
            &self.limits,
            self.running.values(),
            waiting,
            |dep| self.dep_state(dep),
            now,
            explain,
        )
    }

    fn dep_state(&self, dep: JobId) -> DepState {
        if let Some(a) = self.jobs.get(&dep) {
            return DepState::Waiting {
                number: a.job.number,
            };
        }
        match self.finished.get(&dep) {
            Some((_, JobState::Succeeded)) => DepState::Succeeded,
            Some(_) => DepState::Failed,
            // Not active and not known to have failed: it succeeded before this daemon started.
            None => DepState::Succeeded,
        }
    }

    /// Starts what the scheduler picks. The attempt is written before the process exists.
    fn schedule(&mut self, tx: &Tx<'_>, now: i64, fx: &mut Effects) -> Result<(), StoreError> {
        if self.order.is_empty() {
            self.backoff_wake = None;
            return Ok(());
        }
        let plan = self.plan(now, false);
        self.backoff_wake = plan.next_wake_ms;
        for id in plan.start {
            let Some(active) = self.jobs.get_mut(&id) else {
                continue;
            };
            let job = &mut active.job;
            self.order.remove(&(Reverse(job.priority), job.number, id));
            job.attempts += 1;
            job.state = JobState::Running;
            job.started_at_ms = Some(now);
            job.finished_at_ms = None;
            let attempt = job.attempts;
            tx.begin_run(id, attempt, now)?;
            tx.update_job(job, active.not_before_ms)?;
            self.metrics
                .scheduling_latency
                .observe((now - active.eligible_ms).max(0) as f64 / 1000.0);
            active.run = Some(RunState {
                attempt,
                pid: None,
                deadline_ms: job.spec.timeout.map(|t| now + t.0 as i64),
                stop: None,
                adopted: false,
            });
            self.running.insert(
                id,
                SchedRunning {
                    queue: job.queue.clone(),
                    request: active.waiting.request,
                },
            );
            fx.events.push(Event::JobChanged(change(job)));
            fx.launches.push(self.launch(&self.jobs[&id].job, attempt));
        }
        Ok(())
    }

    fn launch(&self, job: &Job, attempt: u32) -> Launch {
        let output = self.home.output_dir(job.id);
        let mut env: Vec<(String, String)> = job
            .spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.push(("PETRI_JOB_ID".into(), job.id.to_string()));
        env.push(("PETRI_JOB_NUMBER".into(), job.number.to_string()));
        env.push(("PETRI_ATTEMPT".into(), attempt.to_string()));
        env.push(("PETRI_OUTPUT_DIR".into(), output.display().to_string()));
        Launch {
            job: job.id,
            attempt,
            argv: job.spec.argv(),
            workdir: job.spec.workdir.clone().unwrap_or_else(|| output.clone()),
            env,
            log_path: self.home.log(job.id),
            status_file: self.home.run_file(job.id, attempt),
        }
    }

    /// After the transaction: answer, announce, signal, spawn.
    fn carry_out(&mut self, fx: Effects, committed: bool) {
        for reply in fx.replies {
            reply(committed);
        }
        if !committed {
            return;
        }
        for event in fx.events {
            let _ = self.events.send(event);
        }
        for (pid, sig) in fx.signals {
            if let Err(e) = self.exec.stop(pid, sig) {
                tracing::warn!(pid, error = %e, "stopping a job failed");
            }
        }
        let mut pids = fx.pids;
        for launch in fx.launches {
            let (job, attempt) = (launch.job, launch.attempt);
            let output = self.home.output_dir(job);
            // One mkdir on the hot path; the parents exist since `Home::prepare`.
            let made = match std::fs::create_dir(&output) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(&output)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                other => other,
            };
            if let Err(e) = made {
                let _ = self.self_tx.send(Command::SpawnFailed {
                    job,
                    attempt,
                    message: format!("cannot create the output folder {}: {e}", output.display()),
                });
                continue;
            }
            let tx = self.self_tx.clone();
            let started = self.exec.start(
                launch,
                Box::new(move |report| {
                    let _ = tx.send(Command::Exited(report));
                }),
            );
            match started {
                Ok(run) => {
                    tracing::debug!(job.id = %job, pid = run.pid, "job started");
                    if let Some(r) = self.jobs.get_mut(&job).and_then(|a| a.run.as_mut()) {
                        r.pid = Some(run.pid);
                        // A stop that came before the pid was known.
                        if r.stop.is_some() {
                            let _ = self.exec.stop(run.pid, StopSignal::Terminate);
                        }
                    }
                    pids.push((job, attempt, run.pid));
                }
                Err(e) => {
                    tracing::warn!(job.id = %job, error = %e, "job did not start");
                    let _ = self.self_tx.send(Command::SpawnFailed {
                        job,
                        attempt,
                        message: e.to_string(),
                    });
                }
            }
        }
        self.unrecorded_pids.extend(pids);
    }

    fn update_gauges(&self) {
        self.metrics.running.set(self.running.len() as i64);
        self.metrics.queued.set(self.order.len() as i64);
    }
}

fn request_of(job: &Job) -> Request {
    Request {
        cpu_millis: job.spec.resources.cpu_millis().max(1),
        memory: job.spec.resources.memory_bytes(),
    }
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
