//! A cluster reached through a shared path (Slurm, Ray) as an executor: each attempt is a job
//! of the engine whose script, working copy, log, outputs and exit status live in a folder of
//! its own under the cluster's shared path.
//!
//! - `start` claims the attempt's status file in the home (`submitting`), prepares the folder,
//!   submits, and writes the engine's job id over the claim; a daemon that died in between
//!   finds the job again by its name (Slurm's `petri-<job>-<attempt>`, Ray's `submission_id`),
//!   so nothing runs twice.
//! - The job's own wrapper writes its exit code into the folder (`exit`), so it survives the
//!   daemon's absence and Slurm forgetting the job (`MinJobAge`, after which slurmrestd answers
//!   500 for its id).
//! - One poller per cluster, on a runtime of its own, copies each running attempt's log into the
//!   job's log as it grows (from the shared path, or from the engine for one that keeps the
//!   log itself: Ray), asks the cluster for its jobs once a round (one request per user,
//!   never one per job), and when an attempt ends (its `exit` file, or the cluster's final state
//!   for one whose wrapper never wrote: cancelled while pending, killed), copies the last of the
//!   log and the outputs back and writes the end into the status file. The engine thread never
//!   waits on the cluster: `probe` answers from the status file, `stop` sends the cancel from
//!   the poller's runtime.
//! - Secrets never go into the engine's description of the job: they wait in the attempt's
//!   private `secrets/` folder, which the wrapper reads (and removes the variables' file) before
//!   the job starts; the log is masked as it is copied.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use petri_domain::{
    ErrorBody, ErrorCode, ExecError, Executor, ExitReport, JobSpec, Launch, RunHandle, RunKey,
    RunProbe, StopSignal,
};
use serde::{Deserialize, Serialize};

use petri_runtime::SideRuntime;

use crate::attempt::{
    Claim, LogCopy, Status, append_line, claim, claim_for_recovery, read_status, refuse_oversized,
    refuse_unexpressible,
};
use crate::engine::{BatchJob, Credential, Engine, EngineView};
use crate::staging::{Staged, bring_back, hand_over, stage};

/// Finds a user's credential for this cluster; `None` asks for anyone's (capacity checks).
pub type Keyring = Arc<dyn Fn(Option<&str>) -> Option<Credential> + Send + Sync>;

/// How long the cluster's own view counts after the wrapper should have written its exit code
/// (a shared file system may show it late).
const END_GRACE: u32 = 3;

/// What the attempt's folder says about it, for a daemon that adopts it after a restart.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Attempt {
    log_path: PathBuf,
    output_dir: Option<PathBuf>,
    user: String,
    name: String,
    /// The Unix uid and gid the job's outputs belong to here (a root daemon's jobs run as their
    /// owners); the copies brought back are handed to them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<(u32, u32)>,
}

impl Attempt {
    /// What the poller follows of this attempt, from its first round (or from where an earlier
    /// daemon left it); `mask`: the attempt's secrets.
    fn watch(
        self,
        dir: PathBuf,
        status_file: PathBuf,
        id: Option<String>,
        mask: &[Vec<u8>],
    ) -> Watch {
        Watch {
            id,
            name: self.name,
            user: self.user,
            dir,
            log: LogCopy::resume(self.log_path, &status_file, mask),
            output_dir: self.output_dir,
            owner: self.owner,
            status_file,
            on_exit: None,
            ended_rounds: 0,
            missing_rounds: 0,
            cluster_code: None,
            cancel: false,
            seen: None,
            cluster_words: None,
        }
    }
}

struct Watch {
    id: Option<String>,
    name: String,
    user: String,
    dir: PathBuf,
    log: LogCopy,
    output_dir: Option<PathBuf>,
    owner: Option<(u32, u32)>,
    status_file: PathBuf,
    on_exit: Option<Box<dyn FnOnce(ExitReport) + Send>>,
    /// Rounds since the cluster called it ended (or stopped knowing it).
    ended_rounds: u32,
    missing_rounds: u32,
    cluster_code: Option<i32>,
    /// A cancel was asked for while the job id was not known yet.
    cancel: bool,
    /// What the cluster said of it at the last look.
    seen: Option<EngineView>,
    /// How the cluster said it ended (`FAILED (JobLaunchFailure)`), for the log when the
    /// wrapper left no exit code.
    cluster_words: Option<String>,
}

/// The executor of one cluster reached through a shared path (Slurm, Ray).
pub struct ClusterExecutor {
    name: String,
    partition: Option<String>,
    shared: PathBuf,
    engine: Arc<Engine>,
    keys: Keyring,
    watches: Arc<Mutex<HashMap<RunKey, Watch>>>,
    capacity: Mutex<Option<(Instant, petri_domain::ClusterCapacity, Vec<String>)>>,
    /// The secrets to mask of attempts a restarted daemon adopts, until it does.
    adopted_masks: Mutex<HashMap<RunKey, Vec<Vec<u8>>>>,
    poller: SideRuntime,
}

impl ClusterExecutor {
    /// An executor for the cluster `name`, whose engine is `engine`; `poll`: how often it is
    /// asked about its jobs.
    pub fn new(
        name: &str,
        engine: Engine,
        partition: Option<String>,
        shared: PathBuf,
        keys: Keyring,
        poll: Duration,
    ) -> Result<Arc<ClusterExecutor>, String> {
        let poller =
            SideRuntime::new(&format!("petri-cluster-{name}")).map_err(|e| e.to_string())?;
        let engine = Arc::new(engine);
        let exec = Arc::new(ClusterExecutor {
            name: name.to_string(),
            partition,
            shared,
            engine,
            keys,
            watches: Arc::default(),
            capacity: Mutex::default(),
            adopted_masks: Mutex::default(),
            poller,
        });
        let weak = Arc::downgrade(&exec);
        exec.rt().spawn(async move {
            // The shared folder (logs, exit files) is read four times a round; the cluster is
            // asked once a round.
            let mut tick = tokio::time::interval(poll / 4);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                let Some(exec) = weak.upgrade() else {
                    return;
                };
                let (engine, keys, watches) =
                    (exec.engine.clone(), exec.keys.clone(), exec.watches.clone());
                drop(exec);
                poll_round(&engine, &keys, &watches, n.is_multiple_of(4)).await;
                n += 1;
            }
        });
        Ok(exec)
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.poller.rt()
    }

    fn block_on<F: std::future::Future + Send>(&self, fut: F) -> F::Output
    where
        F::Output: Send,
    {
        self.poller.block_on(fut)
    }

    /// The folder of one attempt on the shared path.
    pub fn attempt_dir(&self, run: &RunKey) -> PathBuf {
        crate::staging::attempt_dir(&self.shared, run)
    }

    /// How many attempts this executor follows now.
    pub fn running(&self) -> usize {
        self.watches.lock().unwrap().len()
    }

    /// The cluster's size and partitions, asked at most every 30 s.
    fn capacity(&self) -> Result<(petri_domain::ClusterCapacity, Vec<String>), String> {
        if let Some((at, c, p)) = self.capacity.lock().unwrap().as_ref()
            && at.elapsed() < Duration::from_secs(30)
        {
            return Ok((c.clone(), p.clone()));
        }
        let cred = (self.keys)(None)
            .ok_or_else(|| format!("nobody has a credential for cluster `{}`", self.name))?;
        let engine = self.engine.clone();
        let (c, p) = self.block_on(async move {
            let c = engine.capacity(&cred).await?;
            let p = engine.partitions(&cred).await?;
            Ok::<_, String>((c, p))
        })?;
        if c.nodes > 0 {
            *self.capacity.lock().unwrap() = Some((Instant::now(), c.clone(), p.clone()));
        }
        Ok((c, p))
    }

    fn prepare(
        &self,
        launch: &Launch,
        cred: &Credential,
    ) -> Result<(PathBuf, Attempt, BatchJob), String> {
        let dir = self.attempt_dir(&launch.key);
        let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
        let Staged {
            workdir,
            output_dir,
            env,
        } = stage(&self.shared, &dir, launch)?;
        let attempt = Attempt {
            log_path: launch.log_path.clone(),
            output_dir,
            user: launch.user.clone(),
            name: self.job_name(&launch.key),
            owner: launch.run_as.as_ref().map(|r| (r.uid, r.gid)),
        };
        petri_domain::files::write_atomic(
            &dir.join("petri.json"),
            &serde_json::to_vec(&attempt).map_err(|e| e.to_string())?,
            0o644,
        )
        .map_err(|e| io("writing the attempt's record", e))?;
        let mut env = env;
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push((
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ));
        }
        // Secrets never go into the engine's description of the job (which its users and its
        // logs can read): they wait in a private file the job's wrapper reads and removes.
        let (secret, env): (Vec<_>, Vec<_>) = env
            .into_iter()
            .partition(|(k, _)| launch.secrets.iter().any(|s| s.name == *k));
        let secrets = if secret.is_empty() {
            None
        } else {
            Some(
                stage_secrets(&dir.join(SECRETS), &secret, &launch.secrets)
                    .map_err(|e| io("writing the job's secrets", e))?,
            )
        };
        let script = wrapper(
            &launch.key,
            &dir,
            &workdir,
            secrets.as_deref(),
            &launch.argv,
        );
        let script_file = dir.join("job.sh");
        petri_domain::files::write_atomic(&script_file, script.as_bytes(), 0o755)
            .map_err(|e| io("writing the job's script", e))?;
        // The job runs as the cluster's account: on this machine (a cluster on loopback, a
        // shared home) that account must be able to write the folder.
        hand_over(&dir, &cred.user);
        let res = &launch.resources;
        Ok((
            dir.clone(),
            attempt,
            BatchJob {
                name: self.job_name(&launch.key),
                script,
                script_file: script_file.display().to_string(),
                partition: self.partition.clone(),
                workdir: workdir.display().to_string(),
                output: dir.join("log").display().to_string(),
                environment: env,
                cpus: res.cpus,
                memory: res.memory.map(|m| m.0),
                time_limit_min: launch.timeout_ms.map(|t| t.div_ceil(60_000).max(1)),
                gpus: res.gpus.filter(|g| *g > 0),
                labels: vec![
                    ("petri.job".into(), launch.key.job.to_string()),
                    ("petri.attempt".into(), launch.key.attempt.to_string()),
                    ("petri.user".into(), launch.user.clone()),
                ],
            },
        ))
    }

    /// The engine's name of an attempt: how a daemon that crashed mid-submit finds it again.
    /// Slurm: `petri-<job>-<attempt>`; Ray: the job id itself (`<job>-<attempt>` for a retry),
    /// as its `submission_id`.
    fn job_name(&self, run: &RunKey) -> String {
        match (self.engine.kind(), run.attempt) {
            (petri_domain::ClusterKind::Ray, 1) => run.job.to_string(),
            (petri_domain::ClusterKind::Ray, n) => format!("{}-{n}", run.job),
            _ => format!("petri-{}-{}", run.job, run.attempt),
        }
    }

    fn watch(&self, key: RunKey, watch: Watch) {
        self.watches.lock().unwrap().insert(key, watch);
    }

    fn adopt(
        &self,
        run: &RunKey,
        status_file: &Path,
        id: Option<String>,
        mask: &[Vec<u8>],
    ) -> Result<Watch, String> {
        let dir = self.attempt_dir(run);
        let text =
            std::fs::read(dir.join("petri.json")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let a: Attempt = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
        let adopted = self.adopted_masks.lock().unwrap().remove(run);
        let mask = adopted.as_deref().unwrap_or(mask);
        Ok(a.watch(dir, status_file.to_path_buf(), id, mask))
    }
}

impl Executor for ClusterExecutor {
    fn start(
        &self,
        launch: Launch,
        on_exit: Box<dyn FnOnce(ExitReport) + Send>,
    ) -> Result<RunHandle, ExecError> {
        let remote = ExecError::Remote;
        let cred = (self.keys)(Some(&launch.user)).ok_or_else(|| {
            remote(format!(
                "{} has no credential for cluster `{}` (`petri cluster add {}` with their own \
                 token)",
                launch.user, self.name, self.name
            ))
        })?;
        let status = launch.status_file.clone();
        match claim(&status)? {
            Claim::Mine => {}
            Claim::Earlier(Status::Submitted(id) | Status::Ended(id, _)) => {
                let mut w = self
                    .adopt(&launch.key, &status, id.clone(), &launch.mask)
                    .map_err(remote)?;
                w.on_exit = Some(on_exit);
                let h = handle(id, &w.name);
                self.watch(launch.key.clone(), w);
                return Ok(h);
            }
            Claim::Earlier(_) => {
                return Err(remote("this attempt was claimed by a recovery".into()));
            }
        }
        let (dir, attempt, job) = self.prepare(&launch, &cred).map_err(remote)?;
        let engine = self.engine.clone();
        let id = self
            .block_on(async move { engine.submit(&cred, &job).await })
            .map_err(|e| remote(format!("cluster `{}`: {e}", self.name)))?;
        petri_domain::files::write_atomic(&status, format!("{id}\n").as_bytes(), 0o644).map_err(
            |source| ExecError::Prepare {
                path: status.clone(),
                source,
            },
        )?;
        tracing::info!(job.id = %launch.key.job, cluster = %self.name, remote.job = %id, "submitted to a cluster");
        let mut watch = attempt.watch(dir, status, Some(id.clone()), &launch.mask);
        watch.on_exit = Some(on_exit);
        self.watch(launch.key.clone(), watch);
        Ok(RunHandle(id))
    }

    fn accepts(&self, spec: &JobSpec) -> Result<(), ErrorBody> {
        let refuse = |m: String| Err(ErrorBody::new(ErrorCode::TargetRefused, m));
        let name = &self.name;
        let kind = self.engine.kind().title();
        if spec.image.is_some() {
            return refuse(format!(
                "cluster `{name}` is {kind}, which runs commands, not images: drop `image` (the \
                 nodes' own software runs it)"
            ));
        }
        refuse_unexpressible(name, kind, spec)
    }

    fn admit(&self, spec: &JobSpec) -> Result<(), ErrorBody> {
        self.accepts(spec)?;
        let refuse = |m: String| Err(ErrorBody::new(ErrorCode::TargetRefused, m));
        let name = &self.name;
        let (cap, partitions) = self.capacity().map_err(|e| {
            ErrorBody::new(
                ErrorCode::ClusterUnavailable,
                format!("cluster `{name}`: {e}"),
            )
        })?;
        if let Some(p) = &self.partition
            && !partitions.contains(p)
        {
            return refuse(format!(
                "cluster `{name}` has no partition `{p}` (it has {})",
                partitions.join(", ")
            ));
        }
        refuse_oversized(name, spec, &cap, 1.0)
    }

    fn stop(&self, run: &RunKey, handle: &RunHandle, _signal: StopSignal) -> Result<(), ExecError> {
        let (id, user) = {
            let mut w = self.watches.lock().unwrap();
            match w.get_mut(run) {
                Some(watch) => {
                    if watch.id.is_none() {
                        watch.cancel = true;
                    }
                    (watch.id.clone(), watch.user.clone())
                }
                None => (Some(handle.as_str().to_string()), String::new()),
            }
        };
        let Some(id) = id else {
            return Ok(());
        };
        let Some(cred) = (self.keys)(Some(&user)).or_else(|| (self.keys)(None)) else {
            return Err(ExecError::Remote(format!(
                "nobody has a credential for cluster `{}` to cancel {}",
                self.name,
                self.engine.job_words(&id)
            )));
        };
        let engine = self.engine.clone();
        let cluster = self.name.clone();
        self.rt().spawn(async move {
            if let Err(e) = engine.cancel(&cred, &id).await {
                tracing::warn!(%cluster, remote.job = %id, error = %e, "cancelling a cluster job");
            }
        });
        Ok(())
    }

    fn probe(&self, run: &RunKey, status_file: &Path) -> RunProbe {
        let id = match read_status(status_file) {
            Status::Missing => {
                // Never submitted, and now never will be.
                return match claim_for_recovery(status_file) {
                    true => RunProbe::NeverStarted,
                    false => self.probe(run, status_file),
                };
            }
            Status::Recovered => return RunProbe::NeverStarted,
            Status::Ended(_, Some(code)) => return RunProbe::Exited(code),
            Status::Ended(_, None) => return RunProbe::Lost,
            Status::Submitted(id) => id,
        };
        if let Some(w) = self.watches.lock().unwrap().get(run) {
            return RunProbe::Alive {
                handle: handle(w.id.clone(), &w.name),
            };
        }
        match self.adopt(run, status_file, id.clone(), &[]) {
            Ok(w) => {
                let h = handle(id, &w.name);
                self.watch(run.clone(), w);
                RunProbe::Alive { handle: h }
            }
            Err(e) => {
                tracing::warn!(job.id = %run.job, cluster = %self.name, error = %e, "cannot adopt a cluster attempt");
                RunProbe::Lost
            }
        }
    }

    fn remote_status(&self, job: petri_domain::JobId) -> Option<petri_domain::RemoteStatus> {
        let all = self.watches.lock().unwrap();
        let w = all.iter().find(|(k, _)| k.job == job)?.1;
        let seen = w
            .seen
            .clone()
            .unwrap_or_else(|| EngineView::waiting("SUBMITTED"));
        Some(seen.status(&self.name, w.id.clone()))
    }

    /// Kept until `probe` adopts the attempt, whose log copy masks with it.
    fn mask_adopted(&self, run: &RunKey, mask: Vec<Vec<u8>>) {
        self.adopted_masks.lock().unwrap().insert(run.clone(), mask);
    }

    fn remove(&self, run: &RunKey) {
        if self.watches.lock().unwrap().contains_key(run) {
            return;
        }
        let dir = self.attempt_dir(run);
        self.rt().spawn_blocking(move || {
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), error = %e, "removing an attempt's folder");
            }
        });
    }
}

/// One round of the poller: logs, exit files, then (when `ask_cluster`) the cluster's view.
async fn poll_round(
    engine: &Engine,
    keys: &Keyring,
    watches: &Arc<Mutex<HashMap<RunKey, Watch>>>,
    ask_cluster: bool,
) {
    // Files first (no lock held across I/O of the cluster).
    let mut ended: Vec<(RunKey, Option<i32>)> = Vec::new();
    let mut ask: HashMap<String, Vec<RunKey>> = HashMap::new();
    {
        let mut all = watches.lock().unwrap();
        for (key, w) in all.iter_mut() {
            copy_log(w);
            if let Some(code) = read_exit(&w.dir) {
                ended.push((key.clone(), Some(code)));
            } else {
                ask.entry(w.user.clone()).or_default().push(key.clone());
            }
        }
    }
    for (key, code) in ended {
        fetch_log(engine, keys, watches, &key, true).await;
        finish_off(engine, watches, key, code, false).await;
    }
    if !ask_cluster {
        return;
    }
    for (user, keys_of_user) in ask {
        let Some(cred) = keys(Some(&user)) else {
            continue;
        };
        let jobs = match engine.jobs(&cred).await {
            Ok(j) => j,
            Err(e) => {
                tracing::debug!(error = %e, "asking a cluster for its jobs");
                continue;
            }
        };
        let mut cancels = Vec::new();
        let mut done = Vec::new();
        {
            let mut all = watches.lock().unwrap();
            for key in &keys_of_user {
                let Some(w) = all.get_mut(key) else {
                    continue;
                };
                let found = jobs.iter().find(|j| match &w.id {
                    Some(id) => j.id == *id,
                    None => j.name == w.name,
                });
                match found {
                    Some(j) => {
                        w.missing_rounds = 0;
                        w.seen = Some(j.view());
                        if w.id.is_none() {
                            // Found again by its name after a crash mid-submit.
                            w.id = Some(j.id.clone());
                            let _ = petri_domain::files::write_atomic(
                                &w.status_file,
                                format!("{}\n", j.id).as_bytes(),
                                0o644,
                            );
                            if w.cancel {
                                cancels.push(j.id.clone());
                            }
                        }
                        if j.ended {
                            w.ended_rounds += 1;
                            w.cluster_words = Some(match &j.reason {
                                Some(r) => format!("{} ({r})", j.state),
                                None => j.state.clone(),
                            });
                            w.cluster_code = match j.state.as_str() {
                                "CANCELLED" => Some(143),
                                "TIMEOUT" | "DEADLINE" => Some(124),
                                "OUT_OF_MEMORY" => Some(137),
                                _ => j.exit_code,
                            };
                            if w.ended_rounds > END_GRACE {
                                done.push((key.clone(), w.cluster_code, false));
                            }
                        }
                    }
                    None => {
                        w.missing_rounds += 1;
                        if w.missing_rounds > END_GRACE {
                            // Not submitted at all (crash before the cluster took it), or
                            // forgotten by the cluster with no exit file: never twice, so lost.
                            let never = w.id.is_none();
                            done.push((key.clone(), None, never));
                        }
                    }
                }
            }
        }
        for id in cancels {
            let _ = engine.cancel(&cred, &id).await;
        }
        // An engine that keeps the log itself is asked for it once a round.
        let ending: Vec<&RunKey> = done.iter().map(|(k, _, _)| k).collect();
        for key in &keys_of_user {
            fetch_log(engine, keys, watches, key, ending.contains(&key)).await;
        }
        for (key, code, never) in done {
            // The wrapper may have written its code since: it wins over the cluster's view.
            let dir = watches.lock().unwrap().get(&key).map(|w| w.dir.clone());
            let code = dir.and_then(|d| read_exit(&d)).or(code);
            finish_off(engine, watches, key, code, never).await;
        }
    }
}

/// Appends what an engine that keeps the job's log itself (Ray) holds beyond what was copied.
async fn fetch_log(
    engine: &Engine,
    keys: &Keyring,
    watches: &Arc<Mutex<HashMap<RunKey, Watch>>>,
    key: &RunKey,
    ended: bool,
) {
    let Some((id, user, copied)) = watches
        .lock()
        .unwrap()
        .get(key)
        .and_then(|w| Some((w.id.clone()?, w.user.clone(), w.log.copied)))
    else {
        return;
    };
    let Some(cred) = keys(Some(&user)) else {
        return;
    };
    let text = match engine.log(&cred, &id, ended).await {
        None => return,
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            tracing::debug!(remote.job = %id, error = %e, "fetching a cluster job's log");
            return;
        }
    };
    let mut all = watches.lock().unwrap();
    if let Some(w) = all.get_mut(key)
        && w.log.copied == copied
    {
        w.log.append_beyond(text.as_bytes());
    }
}

/// [`finish`] on a blocking thread: copying a large output folder back must not hold the
/// poller (and with it every other job's log) on its runtime's one thread.
async fn finish_off(
    engine: &Engine,
    watches: &Arc<Mutex<HashMap<RunKey, Watch>>>,
    key: RunKey,
    code: Option<i32>,
    never_started: bool,
) {
    let watches = watches.clone();
    let kind = engine.kind().title();
    let done =
        tokio::task::spawn_blocking(move || finish(kind, &watches, &key, code, never_started));
    if let Err(e) = done.await {
        tracing::warn!(error = %e, "ending a cluster attempt panicked");
    }
}

/// The end of an attempt: the rest of its log, its outputs back, its status written, told.
fn finish(
    kind: &str,
    watches: &Arc<Mutex<HashMap<RunKey, Watch>>>,
    key: &RunKey,
    code: Option<i32>,
    never_started: bool,
) {
    let Some(mut w) = watches.lock().unwrap().remove(key) else {
        return;
    };
    copy_log(&mut w);
    w.log.finish();
    // The job's secret files go as soon as it has ended.
    let _ = std::fs::remove_dir_all(w.dir.join(SECRETS));
    // The job's own wrapper left no exit code: say in its log what the cluster said.
    if read_exit(&w.dir).is_none() && !never_started {
        let words = match (&w.cluster_words, &w.id) {
            (Some(words), Some(id)) => format!("the cluster ended {kind} job {id} as {words}"),
            (None, Some(id)) => {
                format!("the cluster no longer knows {kind} job {id}, and it left no exit code")
            }
            _ => "the cluster never took the job".to_string(),
        };
        append_line(&w.log.path, &format!("petri: {words}"));
    }
    if let Some(out) = &w.output_dir
        && let Err(e) = bring_back(&w.dir, out, w.owner)
    {
        tracing::warn!(job.id = %key.job, error = %e, "bringing a cluster job's outputs back");
    }
    let line = match (never_started, code, w.id) {
        (true, _, _) => "recovered\n".to_string(),
        (false, Some(c), Some(id)) => format!("{id}\n{c}\n"),
        (false, Some(c), None) => format!("0\n{c}\n"),
        (false, None, id) => format!("{}\nlost\n", id.as_deref().unwrap_or("0")),
    };
    if let Err(e) = petri_domain::files::write_atomic(&w.status_file, line.as_bytes(), 0o644) {
        tracing::warn!(file = %w.status_file.display(), error = %e, "writing a cluster job's end");
    }
    if let Some(tell) = w.on_exit.take() {
        tell(ExitReport {
            job: key.job,
            attempt: key.attempt,
            exit_code: if never_started { None } else { code },
        });
    }
}

/// Appends what the cluster's log gained since the last round to the job's log.
fn copy_log(w: &mut Watch) {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut from) = std::fs::File::open(w.dir.join("log")) else {
        return;
    };
    let Ok(len) = from.metadata().map(|m| m.len()) else {
        return;
    };
    let copied = w.log.copied;
    if len <= copied || from.seek(SeekFrom::Start(copied)).is_err() {
        return;
    }
    let mut bytes = Vec::new();
    if from.take(len - copied).read_to_end(&mut bytes).is_ok() {
        w.log.append(&bytes);
    }
}

fn read_exit(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("exit"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The folder of an attempt's secrets on the shared path: `env` for the wrapper to read (and
/// remove), and a copy of each file secret. Private to the cluster's account, removed when the
/// attempt ends.
const SECRETS: &str = "secrets";

/// Writes an attempt's secrets into `folder`: each file secret copied there (its variable then
/// names the copy), and every variable into `env`, as `export NAME='value'` lines. Returns the
/// path of `env`.
fn stage_secrets(
    folder: &Path,
    vars: &[(String, String)],
    kinds: &[petri_domain::SecretVar],
) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(folder)?;
    std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))?;
    let mut lines = String::new();
    for (name, value) in vars {
        let file = kinds.iter().any(|k| k.name == *name && k.file);
        let value = if file {
            let copy = folder.join(name);
            petri_domain::files::write_private(&copy, &std::fs::read(value)?)?;
            copy.display().to_string()
        } else {
            value.clone()
        };
        lines.push_str(&format!("export {name}={}\n", quote(&value)));
    }
    let env = folder.join("env");
    petri_domain::files::write_private(&env, lines.as_bytes())?;
    Ok(env)
}

fn handle(id: Option<String>, name: &str) -> RunHandle {
    RunHandle(id.unwrap_or_else(|| name.to_string()))
}

/// Single quotes for a POSIX shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The batch script: read the job's secrets (and remove the file that held them), enter the
/// working directory, run the job, leave its exit code in the attempt's folder (written aside
/// and renamed, so it is read whole or not at all).
fn wrapper(
    run: &RunKey,
    dir: &Path,
    workdir: &Path,
    secrets: Option<&Path>,
    argv: &[String],
) -> String {
    let words: Vec<String> = argv.iter().map(|a| quote(a)).collect();
    let secrets = match secrets {
        None => String::new(),
        Some(env) => {
            let env = quote(&env.display().to_string());
            format!(
                "if [ -r {env} ]; then . {env}; rm -f {env}; else echo \"petri: the job's \
                 secrets are gone (read by an earlier start of this attempt)\" >&2; done_with \
                 126; fi\n"
            )
        }
    };
    format!(
        "#!/bin/sh\n\
         # Petri job {job}, attempt {attempt}\n\
         dir={dir}\n\
         done_with() {{ echo \"$1\" > \"$dir/exit.tmp\" && mv \"$dir/exit.tmp\" \"$dir/exit\"; exit \"$1\"; }}\n\
         {secrets}\
         cd {workdir} || {{ echo \"petri: cannot enter {workdir_plain}\" >&2; done_with 126; }}\n\
         {command}\n\
         done_with $?\n",
        job = run.job,
        attempt = run.attempt,
        dir = quote(&dir.display().to_string()),
        workdir = quote(&workdir.display().to_string()),
        workdir_plain = workdir
            .display()
            .to_string()
            .replace(['"', '$', '`', '\\'], "_"),
        command = words.join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RunKey {
        RunKey {
            job: petri_domain::JobId::new(),
            attempt: 2,
            target: "hpc".into(),
        }
    }

    #[test]
    fn the_wrapper_quotes_every_word_and_leaves_the_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let run = key();
        let script = wrapper(
            &run,
            dir.path(),
            dir.path(),
            None,
            &["/bin/sh".into(), "-c".into(), "echo 'it''s'; exit 4".into()],
        );
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(4));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "its\n");
        assert_eq!(read_exit(dir.path()), Some(4));
    }

    #[test]
    fn a_missing_workdir_ends_with_126_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let script = wrapper(
            &key(),
            dir.path(),
            &dir.path().join("gone"),
            None,
            &["true".into()],
        );
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(126));
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot enter"));
        assert_eq!(read_exit(dir.path()), Some(126));
    }

    #[test]
    fn secrets_reach_the_job_through_a_file_it_reads_once_and_never_its_description() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key.pem");
        std::fs::write(&key_file, "-----KEY-----\n").unwrap();
        let vars = vec![
            ("TOKEN".to_string(), "it's a\nsecret $HOME `x`".to_string()),
            ("KEY".to_string(), key_file.display().to_string()),
        ];
        let kinds = vec![
            petri_domain::SecretVar {
                name: "TOKEN".into(),
                file: false,
            },
            petri_domain::SecretVar {
                name: "KEY".into(),
                file: true,
            },
        ];
        let folder = dir.path().join(SECRETS);
        let env = stage_secrets(&folder, &vars, &kinds).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&folder), 0o700);
        assert_eq!(mode(&env), 0o600);
        assert_eq!(mode(&folder.join("KEY")), 0o600);
        let script = wrapper(
            &key(),
            dir.path(),
            dir.path(),
            Some(&env),
            &[
                "/bin/sh".into(),
                "-c".into(),
                "printf '%s|' \"$TOKEN\"; cat \"$KEY\"".into(),
            ],
        );
        let run = || {
            std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap()
        };
        let out = run();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "it's a\nsecret $HOME `x`|-----KEY-----\n"
        );
        assert!(!env.exists(), "the wrapper removes the file it read");
        assert!(!script.contains("secret $HOME"));
        // A second start of the same script finds no secrets and says so.
        let again = run();
        assert_eq!(again.status.code(), Some(126));
        assert!(String::from_utf8_lossy(&again.stderr).contains("secrets are gone"));
    }
}
