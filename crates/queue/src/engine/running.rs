//! Starting and watching attempts: the scheduler step, launches, timers, and what is done after
//! each commit.

use super::*;

impl State {
    /// Timeouts, kill escalations, and polls of re-adopted jobs.
    pub(super) fn timers(
        &mut self,
        tx: &Tx<'_>,
        now: i64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let mut exited = Vec::new();
        for id in self.running.keys() {
            let Some(active) = self.jobs.get_mut(id) else {
                continue;
            };
            let timed_out = active
                .run
                .as_ref()
                .is_some_and(|r| r.stop.is_none() && r.deadline_ms.is_some_and(|d| d <= now));
            if timed_out {
                begin_stop(active, StopIntent::Timeout, now, self.kill_grace_ms, tx, fx)?;
            }
            let job = &active.job;
            let Some(run) = active.run.as_mut() else {
                continue;
            };
            let key = run.key(job);
            if let Some(stop) = run.stop.as_mut()
                && !stop.killed
                && !stop.again_sent
                && stop.again_at_ms <= now
            {
                stop.again_sent = true;
                if let Some(handle) = &run.handle {
                    fx.signals
                        .push((key.clone(), handle.clone(), StopSignal::Terminate));
                }
            }
            if let Some(stop) = run.stop.as_mut()
                && !stop.killed
                && stop.kill_at_ms <= now
            {
                stop.killed = true;
                if let Some(handle) = &run.handle {
                    fx.signals
                        .push((key.clone(), handle.clone(), StopSignal::Kill));
                }
            }
            if run.adopted {
                let probe = match self.executors.get(&key.target) {
                    Some(exec) => exec.probe(&key, &self.home.run_file(*id, run.attempt)),
                    None => RunProbe::Lost,
                };
                match probe {
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

    pub(super) fn next_wake(&self, now: i64) -> Option<i64> {
        let mut wake: Option<i64> = None;
        let mut at = |t: i64| wake = Some(wake.map_or(t, |w| w.min(t)));
        if let Some(t) = self.backoff_wake {
            at(t);
        }
        if !self.unrecorded_handles.is_empty() {
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
                if !stop.again_sent {
                    at(stop.again_at_ms);
                }
            } else if let Some(d) = run.deadline_ms {
                at(d);
            }
        }
        wake
    }

    pub(super) fn plan(&self, now: i64, explain: bool) -> petri_sched::Plan {
        // Explaining gives every waiting job its reason and place; starting needs only those
        // that could start.
        let line = if explain { &self.order } else { &self.ready };
        // A cluster's jobs are the cluster's to schedule: one that could start goes at once.
        let remote = |a: &Active| petri_domain::is_remote_target(target_of(&a.job));
        let waiting = line
            .iter()
            .filter_map(|(_, _, id)| self.jobs.get(id))
            .filter(|a| explain || !remote(a))
            .map(|a| &a.waiting);
        let limits = petri_sched::Limits {
            capacity: self.capacity,
            queue_limits: &self.queue_limits,
            gpus: &self.gpus,
            gpu_reserve: self.gpu_reserve,
            gpu_claim_after_ms: self.gpu_claim_after_ms,
            kill_grace_ms: self.kill_grace_ms,
            quotas: &self.quotas,
            usage: (self.fair_share && self.users.len() > 1).then(|| self.usage.by_user()),
        };
        let mut plan = petri_sched::plan(
            &limits,
            self.running.values(),
            waiting,
            |dep| self.dep_state(dep),
            now,
            explain,
        );
        if !explain {
            for a in self
                .ready
                .iter()
                .filter_map(|(_, _, id)| self.jobs.get(id))
                .filter(|a| remote(a))
            {
                if a.waiting.not_before_ms <= now {
                    plan.start.push(a.job.id);
                } else {
                    let at = a.waiting.not_before_ms;
                    plan.next_wake_ms = Some(plan.next_wake_ms.map_or(at, |w| w.min(at)));
                }
            }
        }
        plan
    }

    /// `target: auto` jobs that waited here for `burst.after` and were not picked to start here:
    /// they start on the burst cluster now, when it can express what they ask for (a check
    /// without I/O: the engine thread never waits on a cluster). One still waiting makes the
    /// engine wake when its wait is up.
    fn bursts(&self, now: i64, plan: &mut petri_sched::Plan) -> std::collections::HashSet<JobId> {
        let mut out = std::collections::HashSet::new();
        let Some(exec) = self.burst_to.as_ref().and_then(|to| self.executors.get(to)) else {
            return out;
        };
        for a in self.ready.iter().filter_map(|(_, _, id)| self.jobs.get(id)) {
            if a.job.spec.target.as_deref() != Some(petri_domain::TARGET_AUTO)
                || a.waiting.not_before_ms > now
                || plan.start.contains(&a.job.id)
            {
                continue;
            }
            let at = a.waiting.since_ms + self.burst_after_ms;
            if at > now {
                plan.next_wake_ms = Some(plan.next_wake_ms.map_or(at, |w| w.min(at)));
                continue;
            }
            if exec.accepts(&a.job.spec).is_ok() {
                out.insert(a.job.id);
                plan.start.push(a.job.id);
            }
        }
        out
    }

    pub(super) fn dep_state(&self, dep: JobId) -> DepState {
        if let Some(a) = self.jobs.get(&dep) {
            return DepState::Waiting {
                number: a.job.number,
            };
        }
        // Not active: it ended, and well, since a dependency that ends badly fails its
        // dependants at once (`check_doomed`), so none waits on one.
        DepState::Succeeded
    }

    /// Starts what the scheduler picks. The attempt is written before the process exists.
    pub(super) fn schedule(
        &mut self,
        tx: &Tx<'_>,
        now: i64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        if self.ready.is_empty() {
            self.backoff_wake = None;
            return Ok(());
        }
        let mut plan = self.plan(now, false);
        let bursts = self.bursts(now, &mut plan);
        self.backoff_wake = plan.next_wake_ms;
        for id in std::mem::take(&mut plan.start) {
            let Some(active) = self.jobs.get_mut(&id) else {
                continue;
            };
            active.fill(tx)?;
            let job = &mut active.job;
            let key = (Reverse(job.priority), job.number, id);
            self.order.remove(&key);
            self.ready.remove(&key);
            job.attempts += 1;
            job.state = JobState::Running;
            job.started_at_ms = Some(now);
            job.finished_at_ms = None;
            // A retry runs afresh: why the last attempt ended is in its run, not the job's now.
            job.exit_code = None;
            job.reason = None;
            let attempt = job.attempts;
            let placement = plan.placements.remove(&id).unwrap_or_default();
            let burst = bursts.contains(&id);
            let target = match (&self.burst_to, burst) {
                (Some(to), true) => to.as_str(),
                _ => target_of(job),
            };
            if burst {
                tracing::info!(job.id = %id, cluster = %target, "an auto job waited long enough here: it bursts");
            }
            tx.begin_run(&petri_store::NewRun {
                job: id,
                attempt,
                now_ms: now,
                target,
                gpus: &placement.gpus,
                mig_slot: placement.mig_slot,
            })?;
            tx.update_job(job, active.waiting.not_before_ms)?;
            self.metrics
                .scheduling_latency
                .observe((now - active.waiting.since_ms).max(0) as f64 / 1000.0);
            active.run = Some(RunState {
                attempt,
                mig_slot: placement.mig_slot,
                over_gpu_limit: false,
                gpus: placement.gpus.clone(),
                target: target.to_string(),
                handle: None,
                deadline_ms: job.spec.timeout.map(|t| now + t.0 as i64),
                stop: None,
                adopted: false,
            });
            self.running.insert(
                id,
                SchedRunning {
                    queue: job.queue.clone(),
                    // A burst job takes nothing of this machine.
                    request: if burst {
                        Request::NOTHING
                    } else {
                        active.waiting.request
                    },
                    gpu: placement,
                    deadline_ms: active.waiting.time_limit_ms.map(|d| now + d),
                    user: job.user.clone(),
                },
            );
            fx.events.push(Event::JobChanged(change(job)));
            fx.launches.push(self.launch(&self.jobs[&id].job, attempt));
        }
        Ok(())
    }

    pub(super) fn launch(&self, job: &Job, attempt: u32) -> Launch {
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
        let active = &self.jobs[&job.id];
        env.extend(self.gpu_env(active));
        if let Some(hook) = self.hooks.get(job.origin.kind()) {
            env.extend(hook(job));
        }
        let workdir = job.spec.workdir.clone().unwrap_or_else(|| output.clone());
        let container = job.spec.image.as_ref().map(|image| {
            let same = |p: &std::path::Path| BindMount {
                source: p.to_path_buf(),
                target: p.to_path_buf(),
                read_only: false,
            };
            let mut mounts = vec![same(&workdir), same(&output)];
            mounts.extend(job.spec.mounts.iter().map(|m| BindMount {
                source: m.source.clone(),
                target: m.target.clone().unwrap_or_else(|| m.source.clone()),
                read_only: m.read_only,
            }));
            // An MPS client reaches its server through the pipe folder and the host's shared memory.
            let mps = self.mps_of(active);
            if let Some(mps) = mps {
                mounts.push(same(&mps.pipe_dir));
            }
            ContainerLaunch {
                image: image.clone(),
                host_ipc: mps.is_some(),
                mounts,
                ports: job.spec.ports.clone(),
                gpus: self.gpu_uuids(active),
                cpus: job.spec.resources.cpus,
                memory: job.spec.resources.memory.map(|m| m.0),
            }
        });
        Launch {
            key: RunKey {
                job: job.id,
                attempt,
                // A burst attempt goes where its run says.
                target: active
                    .run
                    .as_ref()
                    .map_or_else(|| target_of(job).to_string(), |r| r.target.clone()),
            },
            argv: job.spec.argv(),
            workdir,
            env,
            log_path: self.home.log(job.id),
            status_file: self.home.run_file(job.id, attempt),
            container,
            mask: Vec::new(),
            secrets: Vec::new(),
            run_as: self.run_as(job),
            user: job.user.clone(),
            resources: job.spec.resources.clone(),
            timeout_ms: job.spec.timeout.map(|t| t.0),
        }
    }

    /// After the transaction: the log readers' view, answers, signals, launches, and the
    /// step's events last. Nothing may return between the launches and the events: the events
    /// of a committed step are always told.
    pub(super) fn carry_out(&mut self, fx: Effects, committed: bool) {
        if committed {
            // The log readers' view of the jobs this step changed, as committed, before a caller
            // hears of the change (what it then reads agrees) and before any job is launched (a
            // job launched has a log to look for) or told of.
            let jobs = &self.jobs;
            self.events.live().update(
                fx.events
                    .iter()
                    .filter_map(|e| match e {
                        Event::JobSubmitted(c) | Event::JobChanged(c) | Event::JobStopping(c) => {
                            Some(c.id)
                        }
                        _ => None,
                    })
                    .map(|id| (id, jobs.get(&id).map(|a| &a.job))),
            );
        }
        for reply in fx.replies {
            reply(committed);
        }
        if !committed {
            return;
        }
        // What an ended attempt leaves behind (its secret files) is gone before its end is told.
        for key in fx.removals {
            if let Some(exec) = self.executors.get(&key.target) {
                exec.remove(&key);
            }
            self.hooks.ended(&key);
        }
        for (key, handle, sig) in fx.signals {
            let Some(exec) = self.executors.get(&key.target) else {
                continue;
            };
            if let Err(e) = exec.stop(&key, &handle, sig) {
                tracing::warn!(%handle, error = %e, "stopping a job failed");
            }
        }
        let mut handles = fx.handles;
        for mut launch in fx.launches {
            let (job, attempt) = (launch.key.job, launch.key.attempt);
            // What every job gets whatever its origin (its secrets), just before it starts.
            let extended = match self.jobs.get(&job) {
                Some(active) => self.hooks.extend(&active.job, &mut launch),
                None => Ok(()),
            };
            if let Err(message) = extended {
                let _ = self.self_tx.send(Command::SpawnFailed {
                    job,
                    attempt,
                    message,
                });
                continue;
            }
            let output = self.home.output_dir(job);
            // One mkdir on the hot path; the parents exist since `Home::prepare`.
            let made = match std::fs::create_dir(&output) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(&output)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                other => other,
            };
            // The job's user owns its output folder and its log.
            let made = match (made, &launch.run_as) {
                (Ok(()), Some(to)) => crate::owners::hand_over(&output, to).and_then(|()| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&launch.log_path)?;
                    crate::owners::hand_over(&launch.log_path, to)
                }),
                (made, _) => made,
            };
            let exec = self.executors.get(&launch.key.target);
            let failed = match (&made, &exec) {
                (Err(e), _) => Some(format!(
                    "cannot create the output folder {}: {e}",
                    output.display()
                )),
                (_, None) => Some(format!(
                    "no executor for the target `{}` on this daemon",
                    launch.key.target
                )),
                _ => None,
            };
            let (Some(exec), None) = (exec, failed.clone()) else {
                let _ = self.self_tx.send(Command::SpawnFailed {
                    job,
                    attempt,
                    message: failed.unwrap_or_default(),
                });
                continue;
            };
            let tx = self.self_tx.clone();
            let on_exit: Box<dyn FnOnce(ExitReport) + Send> = Box::new(move |report| {
                let _ = tx.send(Command::Exited(report));
            });
            if !exec.starts_inline() {
                // Creating and starting a container (or a remote job) takes some 0.1-0.5 s or
                // more: do it off the engine thread, and hear back with the handle.
                let tx = self.self_tx.clone();
                let spawned = std::thread::Builder::new()
                    .name("petri-start".into())
                    .spawn(move || {
                        let reply = match exec.start(launch, on_exit) {
                            Ok(handle) => Command::Started {
                                job,
                                attempt,
                                handle,
                            },
                            Err(e) => Command::SpawnFailed {
                                job,
                                attempt,
                                message: e.to_string(),
                            },
                        };
                        let _ = tx.send(reply);
                    });
                if let Err(e) = spawned {
                    let _ = self.self_tx.send(Command::SpawnFailed {
                        job,
                        attempt,
                        message: format!("cannot start a thread to start the attempt: {e}"),
                    });
                }
                continue;
            }
            match exec.start(launch, on_exit) {
                Ok(handle) => {
                    tracing::debug!(job.id = %job, %handle, "job started");
                    if let Some(Some(key)) = self.record_handle(job, attempt, &handle) {
                        let _ = exec.stop(&key, &handle, StopSignal::Terminate);
                    }
                    handles.push((job, attempt, handle));
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
        self.unrecorded_handles.extend(handles);
        // The world hears of the changes once the next jobs are on their way: telling it wakes
        // the log followers and the event streams, and on a busy machine those wake-ups would
        // otherwise stand between a job's end and its successor's start.
        for event in fx.events {
            self.events.send(event);
        }
    }

    /// An attempt's handle is known: note it, unless the attempt has ended meanwhile (a container
    /// may exit before its start is reported). None when it has; else the key to stop it with
    /// when a stop came before the handle.
    pub(super) fn record_handle(
        &mut self,
        job: JobId,
        attempt: u32,
        handle: &RunHandle,
    ) -> Option<Option<RunKey>> {
        let active = self.jobs.get_mut(&job)?;
        let run = active.run.as_mut().filter(|r| r.attempt == attempt)?;
        if run.handle.is_some() {
            return None;
        }
        run.handle = Some(handle.clone());
        Some(run.stop.is_some().then(|| run.key(&active.job)))
    }

    pub(super) fn update_gauges(&self) {
        self.metrics.running.set(self.running.len() as i64);
        self.metrics.queued.set(self.order.len() as i64);
    }
}
