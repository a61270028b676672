//! What a job is launched with beyond its spec, set by Petri: who it is for (its origin and
//! user), what the capability that made it adds to its environment, and what capabilities add
//! to every job (its secrets), with the checks they make at submit.

use std::collections::HashMap;
use std::sync::Arc;

use petri_domain::{
    BindMount, ErrorBody, Job, JobSpec, Launch, Origin, OriginKind, RunKey, SecretVar,
};

/// What the capability that made a job adds to its environment when an attempt launches.
pub type LaunchHook = Arc<dyn Fn(&Job) -> Vec<(String, String)> + Send + Sync>;

/// A check a capability makes on every spec of a submission, for whom it is submitted (a
/// secret must exist and be the submitter's). A refusal refuses the whole submission; nothing is
/// queued. It runs on the engine thread as the jobs are inserted, so it must answer from memory.
pub type AdmissionHook = Arc<dyn Fn(&JobSpec, &Submitter) -> Result<(), ErrorBody> + Send + Sync>;

/// What an [`AttemptHook`] adds to one attempt.
#[derive(Default)]
pub struct LaunchExtras {
    /// More environment variables.
    pub env: Vec<(String, String)>,
    /// More host folders for a container job (ignored for a local one).
    pub mounts: Vec<BindMount>,
    /// Byte strings to replace with `***` in the attempt's output before it reaches the log.
    pub mask: Vec<Vec<u8>>,
    /// Which of `env` carry secrets (an executor that runs the job elsewhere carries them
    /// apart).
    pub secrets: Vec<SecretVar>,
}

impl std::fmt::Debug for LaunchExtras {
    // Values and masked strings are secrets: only names, paths and counts are printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchExtras")
            .field(
                "env",
                &self.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            )
            .field("mounts", &self.mounts)
            .field("masked", &self.mask.len())
            .field("secrets", &self.secrets)
            .finish()
    }
}

/// A hook for every attempt, whatever its origin: what the attempt gets at launch, and the
/// cleaning up after it. Called on the engine thread; every call must be quick.
pub trait AttemptHook: Send + Sync {
    /// What `job`'s attempt `attempt` gets beyond its spec, just before it starts. An error
    /// fails the attempt with that message (it does not start).
    fn launch(&self, job: &Job, attempt: u32) -> Result<LaunchExtras, String>;

    /// What to mask in the output of an attempt re-adopted after a restart (the executor lost
    /// what it was given at launch with the daemon that launched it).
    fn mask(&self, _job: &Job) -> Vec<Vec<u8>> {
        Vec::new()
    }

    /// An attempt's end is recorded: remove what `launch` left for it.
    fn ended(&self, _run: &RunKey) {}

    /// After a restart: only the attempts in `live` run on; remove what `launch` left for any
    /// other.
    fn sweep(&self, _live: &[RunKey]) {}
}

/// What the capabilities add to the queue, registered before it starts: launch environments by
/// origin kind, hooks for every attempt, and checks at submit.
#[derive(Clone, Default)]
pub struct LaunchHooks {
    by_kind: HashMap<OriginKind, LaunchHook>,
    every: Vec<Arc<dyn AttemptHook>>,
    admission: Vec<AdmissionHook>,
}

impl LaunchHooks {
    pub fn register(&mut self, kind: OriginKind, hook: LaunchHook) {
        self.by_kind.insert(kind, hook);
    }
    /// A hook for every attempt of every origin.
    pub fn register_every(&mut self, hook: Arc<dyn AttemptHook>) {
        self.every.push(hook);
    }
    /// A check of every spec at submit.
    pub fn register_admission(&mut self, hook: AdmissionHook) {
        self.admission.push(hook);
    }
    pub(crate) fn get(&self, kind: OriginKind) -> Option<&LaunchHook> {
        self.by_kind.get(&kind)
    }

    /// Every admission check on one spec; the first refusal.
    pub(crate) fn admit(&self, spec: &JobSpec, by: &Submitter) -> Result<(), ErrorBody> {
        self.admission.iter().try_for_each(|hook| hook(spec, by))
    }

    /// Adds what every attempt hook gives `job`'s attempt to its launch.
    pub(crate) fn extend(&self, job: &Job, launch: &mut Launch) -> Result<(), String> {
        for hook in &self.every {
            let extras = hook.launch(job, launch.key.attempt)?;
            launch.env.extend(extras.env);
            if let Some(container) = launch.container.as_mut() {
                container.mounts.extend(extras.mounts);
            }
            launch.mask.extend(extras.mask);
            launch.secrets.extend(extras.secrets);
        }
        Ok(())
    }

    pub(crate) fn mask(&self, job: &Job) -> Vec<Vec<u8>> {
        self.every.iter().flat_map(|hook| hook.mask(job)).collect()
    }

    pub(crate) fn ended(&self, run: &RunKey) {
        for hook in &self.every {
            hook.ended(run);
        }
    }

    pub(crate) fn sweep(&self, live: &[RunKey]) {
        for hook in &self.every {
            hook.sweep(live);
        }
    }
}

/// Who a submission is for: the capability that makes the jobs and the user they run for. Set
/// by Petri (the API from the caller, a notebook from its owner), never read from a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitter {
    pub origin: Origin,
    pub user: String,
}
