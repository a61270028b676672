//! Jobs and runs, linked. Every attempt of every job is launched with `MLFLOW_TRACKING_URI`
//! (the daemon), `MLFLOW_TRACKING_TOKEN` (the job's derived, tracking-only token) and
//! `MLFLOW_RUN_ID` (the job's run: its id is the job's UUID as 32 hex digits), so
//! `mlflow.log_metric` inside a job logs to that job's run. The run is made at the job's first
//! tracking call ([`Tracking::ensure_job_run`]), not at launch: a job that never tracks costs
//! nothing. It carries the tag [`JOB_TAG`] (the job's id) and the job's name as its run name.

use std::sync::{Arc, OnceLock};

use petri_domain::{Job, JobId, JobState};
use petri_queue::{AttemptHook, LaunchExtras};

use crate::error::Result;
use crate::service::Tracking;
use crate::store;
use crate::wire::{CreateRun, KeyValue};

/// The run tag that names the job a run belongs to.
pub const JOB_TAG: &str = "petri.job_id";

/// The id of a job's run: the job's UUID as 32 lower-case hex digits.
pub fn run_id_of_job(job: JobId) -> String {
    job.0.simple().to_string()
}

/// The job whose run `run_id` is, when it has that form.
pub fn job_of_run_id(run_id: &str) -> Option<JobId> {
    if run_id.len() != 32 {
        return None;
    }
    uuid::Uuid::try_parse(run_id).ok().map(JobId)
}

impl Tracking {
    /// Makes `job`'s run (in the Default experiment, named after the job, tagged with its id)
    /// unless it is there already. Cheap when it is: one read.
    /// Remembers the experiment a job named (looked up or made), so that the job's run is made
    /// there: `mlflow.set_experiment("x")` then `start_run()` in a job resumes `MLFLOW_RUN_ID`,
    /// and the client refuses a run of another experiment.
    pub fn note_job_experiment(&self, job: JobId, experiment_id: &str) {
        self.job_experiments(|m| {
            if m.len() >= 10_000 {
                m.clear();
            }
            m.insert(job, experiment_id.to_string());
        });
    }

    /// Makes the job's run (once): in `experiment_id` when given (the job's
    /// `MLFLOW_EXPERIMENT_ID`/`_NAME`), else in the experiment the job last named, else in
    /// Default.
    pub async fn ensure_job_run(
        &self,
        job: JobId,
        name: &str,
        user: &str,
        experiment_id: Option<String>,
    ) -> Result<()> {
        self.note_job_run(job);
        let id = run_id_of_job(job);
        let sql = self.sql();
        let probe = id.clone();
        let there = self
            .read(move |c| Ok(store::run_row(c, &probe).map_err(&sql)?.is_some()))
            .await?;
        if there {
            return Ok(());
        }
        let noted = self.job_experiments(|m| m.remove(&job)).flatten();
        let req = CreateRun {
            experiment_id: Some(experiment_id.or(noted).unwrap_or_else(|| "0".into())),
            user_id: Some(user.to_string()),
            run_name: (!name.is_empty()).then(|| name.to_string()),
            start_time: None,
            tags: vec![KeyValue {
                key: JOB_TAG.into(),
                value: job.to_string(),
            }],
        };
        self.new_run(req, user, Some(id.clone())).await?;
        tracing::info!(job = %job, run = %id, "a job's first tracking call made its run");
        Ok(())
    }

    /// Notes that `job` has a run, or may make one: its end then closes the run if it is still
    /// running ([`Tracking::close_job_run`]). Every tracking call of a job's own token notes it,
    /// and so does the sweep at start for runs found running.
    pub fn note_job_run(&self, job: JobId) {
        self.job_runs(|set| set.insert(job));
    }

    /// A job ended: its run, when it has one still `RUNNING` (a client that never called
    /// `end_run`, or was killed), ends with the job: `FINISHED` for a success, `KILLED` for a
    /// cancel, `FAILED` otherwise. A run the client ended itself is left as it is. A job this
    /// process never saw track (most jobs) costs nothing: no write to the database.
    pub async fn close_job_run(&self, job: JobId, state: JobState, at_ms: i64) -> Result<bool> {
        if state.is_terminal() && !self.job_runs(|set| set.contains(&job)) {
            return Ok(false);
        }
        self.end_job_run(job, state, at_ms).await
    }

    /// As [`Tracking::close_job_run`], whether or not this process saw the job track (the
    /// sweep of runs left running while no daemon ran).
    pub async fn end_job_run(&self, job: JobId, state: JobState, at_ms: i64) -> Result<bool> {
        if state.is_terminal() {
            self.job_runs(|set| set.remove(&job));
        }
        let status = match state {
            JobState::Succeeded => "FINISHED",
            JobState::Cancelled => "KILLED",
            JobState::Failed | JobState::TimedOut => "FAILED",
            JobState::Queued | JobState::Held | JobState::Running => return Ok(false),
        };
        let id = run_id_of_job(job);
        let sql = self.sql();
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE runs SET status = ?2, end_time = coalesce(end_time, ?3) \
                     WHERE id = ?1 AND status = 'RUNNING'",
                    rusqlite::params![id, status, at_ms],
                )
                .map_err(&sql)?;
            Ok(n > 0)
        })
        .await
    }

    /// Whether the run `run_id` exists.
    pub async fn run_exists(&self, run_id: &str) -> Result<bool> {
        let sql = self.sql();
        let id = run_id.to_string();
        self.read(move |c| Ok(store::run_row(c, &id).map_err(&sql)?.is_some()))
            .await
    }
}

/// Where the daemon answers jobs, set once it listens: `host` for jobs on this machine
/// (`http://127.0.0.1:PORT`), `containers` for jobs in containers
/// (`http://host.docker.internal:PORT`, the daemon's listener on the Docker bridge), set once
/// the Docker engine is there.
#[derive(Debug, Default)]
pub struct Addresses {
    pub host: OnceLock<String>,
    pub containers: OnceLock<String>,
}

/// The daemon's addresses for jobs, shared with the API that fills them in.
pub type TrackingUri = Arc<Addresses>;

/// The attempt hook that gives every job its tracking environment.
pub struct TrackingEnv {
    uri: TrackingUri,
    token: Box<dyn Fn(JobId) -> String + Send + Sync>,
}

impl TrackingEnv {
    /// `uri` is filled in when the API listens; `token` derives a job's token.
    pub fn new(uri: TrackingUri, token: impl Fn(JobId) -> String + Send + Sync + 'static) -> Self {
        TrackingEnv {
            uri,
            token: Box::new(token),
        }
    }
}

impl std::fmt::Debug for TrackingEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackingEnv")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl AttemptHook for TrackingEnv {
    fn launch(&self, job: &Job, _attempt: u32) -> std::result::Result<LaunchExtras, String> {
        // A container reaches the daemon through the Docker bridge, not its own loopback.
        let address = if job.spec.image.is_some() {
            &self.uri.containers
        } else {
            &self.uri.host
        };
        let Some(uri) = address.get() else {
            // Not listening yet (a job launched while the daemon starts, or a container before
            // the daemon found the Docker bridge): no tracking for it.
            tracing::debug!(job = %job.id, "no tracking address yet; the job gets none");
            return Ok(LaunchExtras::default());
        };
        // The token is not masked in the job's log: a mask puts a filter between every job
        // and its log file, and this token only reaches the tracking API, on behalf of the job
        // whose log it is.
        Ok(LaunchExtras {
            env: vec![
                ("MLFLOW_TRACKING_URI".into(), uri.clone()),
                ("MLFLOW_TRACKING_TOKEN".into(), (self.token)(job.id)),
                ("MLFLOW_RUN_ID".into(), run_id_of_job(job.id)),
            ],
            ..LaunchExtras::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_run_id_is_its_uuid_and_back() {
        let job = JobId::new();
        let run = run_id_of_job(job);
        assert_eq!(run.len(), 32);
        assert!(run.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(job_of_run_id(&run), Some(job));
        assert_eq!(job_of_run_id("not-a-run"), None);
    }

    #[tokio::test]
    async fn a_jobs_end_closes_the_run_of_a_job_seen_tracking_and_writes_nothing_for_others() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracking::open(&dir.path().join("tracking.db")).unwrap();
        let status = |job| {
            let t = t.clone();
            async move {
                t.get_run(&run_id_of_job(job))
                    .await
                    .unwrap()
                    .run
                    .info
                    .status
            }
        };
        let seen = JobId::new();
        t.ensure_job_run(seen, "train", "ada", None).await.unwrap();
        assert!(t.close_job_run(seen, JobState::Failed, 1).await.unwrap());
        assert_eq!(status(seen).await, "FAILED");

        // A run this process did not see made (an earlier daemon's): the job's end alone
        // leaves it; the sweep at start ends it, or notes it when its job still runs.
        let earlier = JobId::new();
        t.ensure_job_run(earlier, "train", "ada", None)
            .await
            .unwrap();
        t.job_runs(|set| set.clear());
        assert!(
            !t.close_job_run(earlier, JobState::Succeeded, 1)
                .await
                .unwrap()
        );
        assert_eq!(status(earlier).await, "RUNNING");
        t.note_job_run(earlier);
        assert!(
            t.close_job_run(earlier, JobState::Succeeded, 1)
                .await
                .unwrap()
        );
        assert_eq!(status(earlier).await, "FINISHED");

        let swept = JobId::new();
        t.ensure_job_run(swept, "train", "ada", None).await.unwrap();
        assert!(t.end_job_run(swept, JobState::Cancelled, 1).await.unwrap());
        assert_eq!(status(swept).await, "KILLED");
        assert!(
            t.job_runs(|set| set.is_empty()),
            "nothing is kept for an ended job"
        );
    }

    #[tokio::test]
    async fn a_jobs_run_is_made_once_with_its_tag_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracking::open(&dir.path().join("tracking.db")).unwrap();
        let job = JobId::new();
        let id = run_id_of_job(job);
        assert!(!t.run_exists(&id).await.unwrap());
        t.ensure_job_run(job, "train", "ada", None).await.unwrap();
        t.ensure_job_run(job, "train", "ada", None).await.unwrap();
        let run = t.get_run(&id).await.unwrap().run;
        assert_eq!(run.info.run_name, "train");
        assert_eq!(run.info.user_id, "ada");
        assert_eq!(run.info.experiment_id, "0");
        let tag = run.data.tags.iter().find(|t| t.key == JOB_TAG).unwrap();
        assert_eq!(tag.value, job.to_string());
    }
}
