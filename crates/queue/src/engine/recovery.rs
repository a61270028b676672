//! Settling what a killed daemon left: attempts the database calls running.

use super::*;

impl State {
    pub(super) fn recover_run(
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
        let key = match self.jobs.get(&id) {
            Some(active) => RunKey {
                job: active.job.id,
                attempt: run.attempt,
                target: run.target.clone(),
            },
            None => return Ok(()),
        };
        let probe = match self.executors.get(&key.target) {
            Some(exec) => {
                // The executor that watches the attempt's output from now on masks it as the
                // one that launched it did.
                let mask = self
                    .jobs
                    .get(&id)
                    .map(|a| self.hooks.mask(&a.job))
                    .unwrap_or_default();
                if !mask.is_empty() {
                    exec.mask_adopted(&key, mask);
                }
                exec.probe(&key, &self.home.run_file(id, run.attempt))
            }
            None => {
                tracing::warn!(job.id = %id, target = %key.target, "no executor for the target of a running attempt");
                RunProbe::Lost
            }
        };
        let Some(active) = self.jobs.get_mut(&id) else {
            return Ok(());
        };
        let timeout = active.job.spec.timeout.map(|t| t.0 as i64);
        active.run = Some(RunState {
            attempt: run.attempt,
            target: run.target.clone(),
            mig_slot: run.mig_slot,
            over_gpu_limit: false,
            gpus: run.gpus.clone(),
            handle: run.handle.clone().map(RunHandle),
            deadline_ms: timeout.map(|t| run.started_at_ms + t),
            stop: run
                .stop_intent
                .map(|intent| Stop::new(intent, now, self.kill_grace_ms)),
            adopted: true,
        });
        self.running.insert(
            id,
            SchedRunning {
                queue: active.job.queue.clone(),
                // A burst attempt (an `auto` job on a cluster) takes nothing here.
                request: if petri_domain::is_remote_target(&run.target) {
                    Request::NOTHING
                } else {
                    active.waiting.request
                },
                gpu: petri_sched::GpuPlacement {
                    gpus: run.gpus.clone(),
                    mig_slot: run.mig_slot,
                },
                deadline_ms: timeout.map(|t| run.started_at_ms + t),
                user: active.job.user.clone(),
            },
        );
        match probe {
            RunProbe::Exited(code) => {
                tracing::info!(job.id = %id, code, "job finished while the daemon was away");
                self.finish(tx, id, run.attempt, Some(code), now, fx)
            }
            RunProbe::Alive { handle } => {
                tracing::info!(job.id = %id, %handle, "re-adopted a running job");
                if let Some(r) = active.run.as_mut() {
                    r.handle = Some(handle.clone());
                    if r.stop.is_some() {
                        fx.signals
                            .push((key, handle.clone(), StopSignal::Terminate));
                    }
                }
                if run.handle.as_deref() != Some(handle.as_str()) {
                    fx.handles.push((id, run.attempt, handle));
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
    pub(super) fn requeue_unstarted(
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
        tx.update_job(job, active.waiting.not_before_ms)?;
        self.order.insert((Reverse(job.priority), job.number, id));
        fx.events.push(Event::JobChanged(change(job)));
        self.refresh_ready(id);
        Ok(())
    }
}
