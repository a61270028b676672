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
            Some(active) => run_key(&active.job, run.attempt),
            None => return Ok(()),
        };
        let probe = self.exec.probe(key, &self.home.run_file(id, run.attempt));
        let Some(active) = self.jobs.get_mut(&id) else {
            return Ok(());
        };
        let timeout = active.job.spec.timeout.map(|t| t.0 as i64);
        active.run = Some(RunState {
            attempt: run.attempt,
            mig_slot: run.mig_slot,
            over_gpu_limit: false,
            gpus: run.gpus.clone(),
            pid: run.pid,
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
                request: active.waiting.request,
                gpu: petri_sched::GpuPlacement {
                    gpus: run.gpus.clone(),
                    mig_slot: run.mig_slot,
                },
                deadline_ms: timeout.map(|t| run.started_at_ms + t),
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
                        fx.signals.push((key, pid, StopSignal::Terminate));
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
        Ok(())
    }
}
