//! A job's way through the queue: submitted, held, released, cancelled, finished, retried, and
//! failed with its dependency.

use super::*;

impl State {
    pub(super) fn submit(
        &mut self,
        tx: &Tx<'_>,
        prepared: Vec<Prepared>,
        by: crate::launch::Submitter,
        now: i64,
        fx: &mut Effects,
    ) -> Result<Vec<Job>, StoreError> {
        let mut out = Vec::with_capacity(prepared.len());
        // The final states of the dependencies read so far (a sweep's jobs share theirs).
        let mut known = Ended::new();
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
                origin: p.origin.unwrap_or_else(|| by.origin.clone()),
                user: by.user.clone(),
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
                pruned: None,
                remote: None,
            };
            tx.insert_job(&job, 0)?;
            self.metrics.submitted.inc();
            fx.events.push(Event::JobSubmitted(change(&job)));
            let id = job.id;
            // The answer has the whole spec; the engine keeps a lean copy (`lean`).
            let (spec, values) = (job.spec.clone(), job.array_values.clone());
            self.load(job, 0);
            // A dependency that already ended badly dooms the job at once.
            self.check_doomed(tx, id, now, fx, &mut known)?;
            let answer = match self.jobs.get(&id) {
                Some(a) => Some(a.job.clone()),
                None => self.last_finished.take(),
            };
            if let Some(mut job) = answer {
                job.spec = spec;
                job.array_values = values;
                out.push(job);
            }
        }
        // A job of this submission may depend on one numbered after it.
        for job in &out {
            self.refresh_ready(job.id);
        }
        Ok(out)
    }

    pub(super) fn cancel(
        &mut self,
        tx: &Tx<'_>,
        id: JobId,
        reason: Option<String>,
        now: i64,
        fx: &mut Effects,
    ) -> Result<Result<Job, ErrorBody>, StoreError> {
        let Some(active) = self.jobs.get_mut(&id) else {
            return Ok(Err(not_active(tx, id)));
        };
        if active.run.is_some() {
            if reason.is_some() && active.run.as_ref().is_some_and(|r| r.stop.is_none()) {
                active.job.reason = reason;
            }
            begin_stop(active, StopIntent::Cancel, now, self.kill_grace_ms, tx, fx)?;
            return Ok(Ok(active.job.clone()));
        }
        let job = self.end_waiting(
            tx,
            id,
            JobState::Cancelled,
            reason.unwrap_or_else(|| "cancelled by a user".into()),
            now,
            fx,
        )?;
        match job {
            Some(job) => Ok(Ok(whole(tx, &job)?)),
            None => Ok(Err(not_active(tx, id))),
        }
    }

    pub(super) fn hold(
        &mut self,
        tx: &Tx<'_>,
        id: JobId,
        hold: bool,
        fx: &mut Effects,
    ) -> Result<Result<Job, ErrorBody>, StoreError> {
        let Some(active) = self.jobs.get_mut(&id) else {
            return Ok(Err(not_active(tx, id)));
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
        tx.update_job(job, active.waiting.not_before_ms)?;
        fx.events.push(Event::JobChanged(change(job)));
        let job = if active.lean {
            whole(tx, job)?
        } else {
            job.clone()
        };
        self.refresh_ready(id);
        Ok(Ok(job))
    }

    /// Ends a job that is not running (cancelled, or doomed by a dependency).
    pub(super) fn end_waiting(
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
        self.forget_user(&active.job.user);
        let job = &mut active.job;
        let key = (Reverse(job.priority), job.number, id);
        self.order.remove(&key);
        self.ready.remove(&key);
        job.state = state;
        job.finished_at_ms = Some(now);
        job.reason = Some(reason);
        tx.update_job(job, active.waiting.not_before_ms)?;
        let job = active.job;
        self.terminal(tx, &job, now, fx)?;
        Ok(Some(job))
    }

    /// Bookkeeping for a job that reached a final state: metrics, event, and its dependants.
    pub(super) fn terminal(
        &mut self,
        tx: &Tx<'_>,
        job: &Job,
        now: i64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        self.metrics.finished(job.state);
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
        } else if let Some(users) = self.dependants.remove(&job.id) {
            for user in users {
                self.refresh_ready(user);
            }
        }
        Ok(())
    }

    /// Fails a waiting job whose dependency ended badly. What is not active has ended; its
    /// state is read from the database once per `known` (nothing keeps the states of finished
    /// jobs in memory: a dependency that failed dooms its dependants at once, so no active job
    /// depends on one for long).
    pub(super) fn check_doomed(
        &mut self,
        tx: &Tx<'_>,
        id: JobId,
        now: i64,
        fx: &mut Effects,
        known: &mut Ended,
    ) -> Result<(), StoreError> {
        let Some(active) = self.jobs.get(&id) else {
            return Ok(());
        };
        if active.run.is_some() {
            return Ok(());
        }
        let mut bad = None;
        for dep in &active.job.depends_on {
            if self.jobs.contains_key(dep) {
                continue;
            }
            let ended = match known.get(dep) {
                Some(ended) => *ended,
                None => {
                    let ended = tx.states_of(&[*dep])?.pop().map(|(_, n, s)| (n, s));
                    known.insert(*dep, ended);
                    ended
                }
            };
            if let Some((number, state)) = ended.filter(|(_, s)| *s != JobState::Succeeded) {
                bad = Some((number, state));
                break;
            }
        }
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
    pub(super) fn finish(
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
        fx.removals.push(run.key(&active.job));
        let intent = run.stop.as_ref().map(|s| s.intent);
        let (outcome, reason) = match (intent, exit_code) {
            (Some(StopIntent::Cancel), _) => (
                RunOutcome::Cancelled,
                active
                    .job
                    .reason
                    .take()
                    .unwrap_or_else(|| "cancelled by a user".into()),
            ),
            (Some(StopIntent::Timeout), _) => (
                RunOutcome::TimedOut,
                format!(
                    "ran past its timeout of {}",
                    active.job.spec.timeout.unwrap_or_default()
                ),
            ),
            (Some(StopIntent::GpuLimit), _) => (
                RunOutcome::Failed,
                active.job.reason.take().unwrap_or_else(|| {
                    "used more GPU memory than its slice; stopped (gpu.enforce = \"kill\")".into()
                }),
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
        ) && (outcome != RunOutcome::Failed
            || job.spec.retries.retries_exit(exit_code));
        if retryable && job.attempts <= job.spec.retries.max {
            let delay = job.spec.retries.delay_before(job.attempts + 1).0 as i64;
            active.waiting.not_before_ms = now + delay;
            active.waiting.since_ms = now + delay;
            job.state = JobState::Queued;
            job.reason = Some(format!(
                "attempt {} {reason}; retrying ({} of {})",
                job.attempts, job.attempts, job.spec.retries.max
            ));
            tx.update_job(job, active.waiting.not_before_ms)?;
            self.order.insert((Reverse(job.priority), job.number, id));
            fx.events.push(Event::JobChanged(change(job)));
            self.refresh_ready(id);
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
        tx.update_job(job, active.waiting.not_before_ms)?;
        let Some(active) = self.jobs.remove(&id) else {
            return Ok(());
        };
        self.forget_user(&active.job.user);
        self.terminal(tx, &active.job, now, fx)
    }
}

/// Final states of jobs that are no longer active, by id, as read (`None`: no such job).
pub(super) type Ended = HashMap<JobId, Option<(u64, JobState)>>;

/// Why a job that is not active cannot be changed: its final state, from the database.
fn not_active(tx: &Tx<'_>, id: JobId) -> ErrorBody {
    match tx.states_of(&[id]).ok().and_then(|mut s| s.pop()) {
        Some((_, number, state)) => ErrorBody::new(
            ErrorCode::InvalidState,
            format!("job #{number} already {state}"),
        ),
        None => ErrorBody::new(
            ErrorCode::InvalidState,
            format!("job {id} has already finished"),
        ),
    }
}
