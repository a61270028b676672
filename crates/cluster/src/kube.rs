//! A Kubernetes cluster as an executor, through kube-rs: each attempt is a `batch/v1` Job
//! (`petri-<job>-<attempt>` in the cluster's namespace) whose one container runs the job's
//! image and command with its environment, cpu and memory requests and limits and
//! `nvidia.com/gpu` limits, labelled with the Petri job, attempt and user.
//!
//! - `start` claims the attempt's status file (`submitting`), writes what a restarted daemon
//!   needs beside it, and creates the Job. The name is fixed by the attempt, so a second create
//!   (a daemon that died before it wrote down the answer) finds the first: `AlreadyExists`
//!   counts as created, and nothing runs twice.
//! - One watcher per user follows the Jobs Petri made there for them, with that user's own
//!   credential (labels `app.kubernetes.io/managed-by=petri`, `petri.dev/user`); a Job that ends (its `Complete` or `Failed`
//!   condition, or `succeeded`/`failed` counts) ends its attempt with the exit code of its
//!   pod's container (1 when no pod says; 124 past its deadline). Kubernetes keeps a Job until
//!   it is deleted, so its end outlives a daemon outage without a file of the job's own.
//! - The log comes from the Job's pod (`pods/log`) once a second while it runs, and once more
//!   at its end.
//! - A cancel deletes the Job with background propagation (its pods go with it).
//! - An attempt with secrets has a Secret of the Job's name (one key per variable, made the
//!   Job's own), deleted when the attempt ends; the Job only refers to it.
//! - The working directory: with a shared path, a copy there (as on Slurm), the outputs brought
//!   back; without, a small one travels in a ConfigMap (outputs stay in the pod's `emptyDir`).
//! - The objects themselves (the Job, its Secret and ConfigMap, what a pod says) are lowered and
//!   read in `objects.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, PropagationPolicy,
};
use petri_domain::{
    ClusterCapacity, ErrorBody, ErrorCode, ExecError, Executor, ExitReport, JobSpec, Launch,
    RunHandle, RunKey, RunProbe, StopSignal,
};
use serde::{Deserialize, Serialize};

use petri_runtime::SideRuntime;

use crate::attempt::{
    Claim, LogCopy, Status, append_line, claim, claim_for_recovery, read_status, refuse_oversized,
    refuse_unexpressible,
};
use crate::engine::{Credential, EngineView, PingError};
use crate::executor::Keyring;
use crate::registry::{Pullable, Registries};
use crate::staging::{attempt_dir, bring_back, hand_over_to, stage};

mod objects;
pub use objects::*;

/// The label every Job Petri makes carries.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by=petri";
/// Rounds (of 250 ms) a Job may be missing from the watcher's view before its attempt counts
/// as ended without a word from the cluster.
const MISSING_ROUNDS: u32 = 8;

/// Whether a credential is a whole kubeconfig (YAML with clusters and users) rather than a
/// bearer token.
pub fn is_kubeconfig(text: &str) -> bool {
    text.contains("apiVersion") && text.contains("clusters")
}

/// A client for the API server at `url` with one user's credential: a bearer token, or a
/// kubeconfig (its current context's certificate authority and user; the address is `url`).
pub async fn client(url: &str, namespace: &str, cred: &Credential) -> Result<kube::Client, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not an address: {e}"))?;
    let mut config = if is_kubeconfig(&cred.token) {
        let kc = kube::config::Kubeconfig::from_yaml(&cred.token)
            .map_err(|e| format!("the kubeconfig does not parse: {e}"))?;
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| format!("the kubeconfig cannot be used: {e}"))?
    } else {
        let mut c = kube::Config::new(uri.clone());
        c.auth_info.token = Some(cred.token.trim().to_string().into());
        c
    };
    config.cluster_url = uri;
    config.default_namespace = namespace.to_string();
    config.connect_timeout = Some(Duration::from_secs(3));
    config.read_timeout = Some(Duration::from_secs(15));
    config.write_timeout = Some(Duration::from_secs(15));
    kube::Client::try_from(config).map_err(|e| format!("a client for {url}: {e}"))
}

/// What a kube error means for the user.
fn words(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => format!(
            "the cluster refused the credential ({} {}: {}); give a valid token or kubeconfig \
             with `petri cluster add`",
            s.code, s.reason, s.message
        ),
        kube::Error::Api(s) => format!(
            "the API server answered {} {}: {}",
            s.code, s.reason, s.message
        ),
        other => format!("the API server does not answer: {other}"),
    }
}

fn is_refused(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 401 || s.code == 403)
}

/// The server's version (`v1.20.2`), telling a refused credential from the rest. The version
/// itself answers anyone, so the namespace is read too.
pub async fn ping(url: &str, namespace: &str, cred: &Credential) -> Result<String, PingError> {
    let client = client(url, namespace, cred)
        .await
        .map_err(PingError::Other)?;
    let info = client.apiserver_version().await.map_err(|e| match e {
        e if is_refused(&e) => PingError::Refused(words(&e)),
        kube::Error::Api(_) => PingError::Other(words(&e)),
        e => PingError::Unreachable(words(&e)),
    })?;
    let jobs: Api<Job> = Api::namespaced(client, namespace);
    jobs.list(&ListParams::default().limit(1))
        .await
        .map_err(|e| {
            if is_refused(&e) {
                PingError::Refused(words(&e))
            } else if matches!(&e, kube::Error::Api(s) if s.code == 404) {
                PingError::Other(format!("the namespace `{namespace}` does not exist there"))
            } else {
                PingError::Other(words(&e))
            }
        })?;
    Ok(info.git_version)
}

/// The nodes' allocatable cpus, memory and GPUs.
pub async fn capacity(client: &kube::Client) -> Result<ClusterCapacity, String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default())
        .await
        .map_err(|e| words(&e))?;
    let mut c = ClusterCapacity::default();
    for n in &list.items {
        let alloc = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
        let get = |k: &str| alloc.and_then(|a| a.get(k)).map(|q| q.0.as_str());
        let cpus = get("cpu").map_or(0, |q| parse_cpu(q) / 1000);
        let memory = get("memory").map_or(0, parse_bytes);
        let gpus = get("nvidia.com/gpu")
            .and_then(|q| q.parse().ok())
            .unwrap_or(0);
        c.add_node(cpus, memory, gpus);
    }
    Ok(c)
}

/// Millicores of a cpu quantity (`2`, `500m`).
fn parse_cpu(q: &str) -> u64 {
    match q.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or(0),
        None => q.parse::<f64>().map_or(0, |c| (c * 1000.0) as u64),
    }
}

/// Bytes of a memory quantity (`16Gi`, `512Mi`, `1000000k`, `123`).
fn parse_bytes(q: &str) -> u64 {
    let units: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, factor) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().map_or(0, |n| n * factor);
        }
    }
    q.parse().unwrap_or(0)
}

/// The attempt's record beside its status file in the home, for a daemon that adopts it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    name: String,
    user: String,
    log_path: PathBuf,
    /// The attempt has a Secret of the same name, deleted when it ends.
    #[serde(default)]
    secret: bool,
    /// The attempt has a ConfigMap of the same name (its working directory), deleted when it
    /// ends.
    #[serde(default)]
    workdir_map: bool,
    /// On a cluster with a shared path: the attempt's folder there, whose `output/` comes back
    /// to `output_dir` (handed to `owner`) when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dir: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_dir: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<(u32, u32)>,
}

fn record_path(status_file: &Path) -> PathBuf {
    let mut p = status_file.as_os_str().to_owned();
    p.push(".kube.json");
    PathBuf::from(p)
}

struct Watch {
    name: String,
    user: String,
    log: LogCopy,
    secret: bool,
    workdir_map: bool,
    /// Where the outputs come back from and to, on a cluster with a shared path.
    back: Option<Back>,
    status_file: PathBuf,
    on_exit: Option<Box<dyn FnOnce(ExitReport) + Send>>,
    missing_rounds: u32,
    cancelled: bool,
    last_log: Option<Instant>,
    /// What its pod said at the last look.
    seen: Option<EngineView>,
}

impl Record {
    fn watch(self, status_file: PathBuf, mask: &[Vec<u8>]) -> Watch {
        Watch {
            name: self.name,
            user: self.user,
            log: LogCopy::resume(self.log_path, &status_file, mask),
            secret: self.secret,
            workdir_map: self.workdir_map,
            back: match (self.dir, self.output_dir) {
                (Some(dir), Some(out)) => Some(Back {
                    dir,
                    out,
                    owner: self.owner,
                }),
                _ => None,
            },
            status_file,
            on_exit: None,
            missing_rounds: 0,
            cancelled: false,
            last_log: None,
            seen: None,
        }
    }
}

/// An attempt's folder on the shared path, whose `output/` comes back to the job's output
/// folder here, handed to its owner.
struct Back {
    dir: PathBuf,
    out: PathBuf,
    owner: Option<(u32, u32)>,
}

/// What one user's watcher has seen: every Job Petri made for them in the namespace, by name,
/// once it listed them.
#[derive(Default)]
struct Seen {
    ready: bool,
    jobs: HashMap<String, Job>,
    buffer: HashMap<String, Job>,
}

/// The executor of one Kubernetes cluster.
pub struct KubeExecutor {
    name: String,
    url: String,
    namespace: String,
    /// A folder this machine and the nodes see at the same path, when the cluster has one.
    shared: Option<PathBuf>,
    keys: Keyring,
    clients: Arc<Mutex<HashMap<String, kube::Client>>>,
    watches: Arc<Mutex<HashMap<RunKey, Watch>>>,
    /// What each user's watcher has seen (a member's Jobs are read with their own credential).
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    /// The users whose watcher runs.
    watching: Mutex<std::collections::HashSet<String>>,
    capacity: Mutex<Option<(Instant, ClusterCapacity)>>,
    /// The secrets to mask of attempts a restarted daemon adopts, until it does.
    adopted_masks: Mutex<HashMap<RunKey, Vec<Vec<u8>>>>,
    /// Asked at submit whether the nodes could pull a job's image.
    registries: Registries,
    poller: SideRuntime,
}

impl KubeExecutor {
    pub fn new(
        name: &str,
        url: &str,
        namespace: Option<String>,
        shared: Option<PathBuf>,
        keys: Keyring,
    ) -> Result<Arc<KubeExecutor>, String> {
        let poller =
            SideRuntime::new(&format!("petri-cluster-{name}")).map_err(|e| e.to_string())?;
        let exec = Arc::new(KubeExecutor {
            name: name.to_string(),
            url: url.to_string(),
            namespace: namespace.unwrap_or_else(|| "default".to_string()),
            shared,
            keys,
            clients: Arc::default(),
            watches: Arc::default(),
            seen: Arc::default(),
            watching: Mutex::default(),
            capacity: Mutex::default(),
            adopted_masks: Mutex::default(),
            registries: Registries::new(),
            poller,
        });
        let weak = Arc::downgrade(&exec);
        exec.rt().spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(exec) = weak.upgrade() else {
                    return;
                };
                exec.round().await;
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

    /// How many attempts this executor follows now.
    pub fn running(&self) -> usize {
        self.watches.lock().unwrap().len()
    }

    /// The Job name of an attempt.
    pub fn job_name(run: &RunKey) -> String {
        format!("petri-{}-{}", run.job, run.attempt).to_ascii_lowercase()
    }

    async fn client_for(&self, user: Option<&str>) -> Result<kube::Client, String> {
        let key = user.unwrap_or("").to_string();
        if let Some(c) = self.clients.lock().unwrap().get(&key) {
            return Ok(c.clone());
        }
        let cred = (self.keys)(user).ok_or_else(|| match user {
            Some(u) => format!(
                "{u} has no credential for cluster `{}` (`petri cluster add {}` with their own)",
                self.name, self.name
            ),
            None => format!("nobody has a credential for cluster `{}`", self.name),
        })?;
        let c = client(&self.url, &self.namespace, &cred).await?;
        self.clients.lock().unwrap().insert(key, c.clone());
        Ok(c)
    }

    /// Starts a user's watcher once, with their own credential: it reads the Jobs Petri made
    /// for them (in team mode a member's Jobs may be in a namespace only they can read).
    async fn ensure_watcher(self: &Arc<Self>, user: &str) {
        if self.watching.lock().unwrap().contains(user) {
            return;
        }
        let Ok(client) = self.client_for(Some(user)).await else {
            return;
        };
        if !self.watching.lock().unwrap().insert(user.to_string()) {
            return;
        }
        let jobs: Api<Job> = Api::namespaced(client, &self.namespace);
        let labels = if is_label_value(user) {
            format!("{MANAGED_BY},petri.dev/user={user}")
        } else {
            MANAGED_BY.to_string()
        };
        let seen = self.seen.clone();
        let cluster = self.name.clone();
        let user = user.to_string();
        tokio::spawn(async move {
            use kube::runtime::WatchStreamExt;
            use kube::runtime::watcher::{self, Event};
            let stream = watcher::watcher(jobs, watcher::Config::default().labels(&labels))
                .default_backoff();
            futures_util::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                let mut all = seen.lock().unwrap();
                let s = all.entry(user.clone()).or_default();
                match event {
                    Ok(Event::Init) => s.buffer.clear(),
                    Ok(Event::InitApply(j)) => {
                        if let Some(n) = j.metadata.name.clone() {
                            s.buffer.insert(n, j);
                        }
                    }
                    Ok(Event::InitDone) => {
                        s.jobs = std::mem::take(&mut s.buffer);
                        s.ready = true;
                    }
                    Ok(Event::Apply(j)) => {
                        if let Some(n) = j.metadata.name.clone() {
                            s.jobs.insert(n, j);
                        }
                    }
                    Ok(Event::Delete(j)) => {
                        if let Some(n) = &j.metadata.name {
                            s.jobs.remove(n);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%cluster, %user, error = %e, "watching a cluster's Jobs");
                    }
                }
            }
        });
    }

    /// One round: each attempt's Job as the watcher saw it; logs once a second; the ends.
    async fn round(self: &Arc<Self>) {
        let users: std::collections::BTreeSet<String> = self
            .watches
            .lock()
            .unwrap()
            .values()
            .map(|w| w.user.clone())
            .collect();
        if users.is_empty() {
            return;
        }
        for user in &users {
            self.ensure_watcher(user).await;
        }
        let mut ended: Vec<(RunKey, Option<i32>, Option<String>)> = Vec::new();
        let mut logs: Vec<RunKey> = Vec::new();
        {
            let seen = self.seen.lock().unwrap();
            let mut all = self.watches.lock().unwrap();
            for (key, w) in all.iter_mut() {
                // Nothing is known of a Job until its user's watcher has listed them all.
                let Some(seen) = seen.get(&w.user).filter(|s| s.ready) else {
                    continue;
                };
                match seen.jobs.get(&w.name) {
                    Some(job) => {
                        w.missing_rounds = 0;
                        match job_end(job) {
                            Some(Ok(())) => ended.push((key.clone(), Some(0), None)),
                            Some(Err(reason)) => ended.push((key.clone(), None, Some(reason))),
                            None => {
                                if w.last_log
                                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
                                {
                                    w.last_log = Some(Instant::now());
                                    logs.push(key.clone());
                                }
                            }
                        }
                    }
                    None => {
                        w.missing_rounds += 1;
                        if w.missing_rounds > MISSING_ROUNDS {
                            let words = if w.cancelled {
                                None
                            } else {
                                Some("the Job was deleted".to_string())
                            };
                            let code = w.cancelled.then_some(143);
                            ended.push((key.clone(), code, words));
                        }
                    }
                }
            }
        }
        for key in logs {
            self.fetch_log(&key).await;
        }
        for (key, code, reason) in ended {
            self.fetch_log(&key).await;
            let code = match (code, &reason) {
                (Some(c), _) => Some(c),
                (None, Some(r)) if r == "DeadlineExceeded" => Some(124),
                (None, Some(r)) if r == "the Job was deleted" => None,
                (None, _) => Some(self.exit_code_of(&key).await.unwrap_or(1)),
            };
            self.finish(&key, code, reason).await;
        }
    }

    async fn pods_of(&self, user: &str, name: &str) -> Result<(Api<Pod>, Vec<Pod>), String> {
        let client = self.client_for(Some(user)).await?;
        let pods: Api<Pod> = Api::namespaced(client, &self.namespace);
        let list = pods
            .list(&ListParams::default().labels(&format!("petri.dev/run={name}")))
            .await
            .map_err(|e| words(&e))?;
        Ok((pods, list.items))
    }

    async fn exit_code_of(&self, key: &RunKey) -> Option<i32> {
        let (user, name) = {
            let all = self.watches.lock().unwrap();
            let w = all.get(key)?;
            (w.user.clone(), w.name.clone())
        };
        let (_, pods) = self.pods_of(&user, &name).await.ok()?;
        pod_exit_code(&pods)
    }

    /// Appends what the pod's log holds beyond what was copied.
    async fn fetch_log(&self, key: &RunKey) {
        let Some((user, name, copied)) = self
            .watches
            .lock()
            .unwrap()
            .get(key)
            .map(|w| (w.user.clone(), w.name.clone(), w.log.copied))
        else {
            return;
        };
        let pods = self.pods_of(&user, &name).await;
        if let Ok((_, list)) = &pods {
            let seen = pod_state(list);
            let waiting = seen.waiting;
            if let Some(w) = self.watches.lock().unwrap().get_mut(key) {
                w.seen = Some(seen);
            }
            if waiting {
                // A pod not started has no log yet.
                return;
            }
        }
        let text = match fetch_pod_log(pods).await {
            Ok(Some(t)) => t,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(cluster = %self.name, job = %name, error = %e, "fetching a pod's log");
                return;
            }
        };
        let mut all = self.watches.lock().unwrap();
        if let Some(w) = all.get_mut(key)
            && w.log.copied == copied
        {
            w.log.append_beyond(text.as_bytes());
        }
    }

    async fn finish(&self, key: &RunKey, code: Option<i32>, reason: Option<String>) {
        let Some(mut w) = self.watches.lock().unwrap().remove(key) else {
            return;
        };
        w.log.finish();
        if let Some(Back { dir, out, owner }) = w.back.take() {
            let back = tokio::task::spawn_blocking(move || bring_back(&dir, &out, owner)).await;
            if let Ok(Err(e)) = back {
                tracing::warn!(job.id = %key.job, error = %e, "bringing a Kubernetes job's outputs back");
            }
        }
        // The attempt's secrets and working directory leave the cluster with it.
        self.delete_beside(&w.user, &w.name, w.secret, w.workdir_map)
            .await;
        if let Some(r) = &reason
            && code != Some(0)
        {
            append_line(
                &w.log.path,
                &format!("petri: Kubernetes ended Job {} as {r}", w.name),
            );
        }
        let line = match code {
            Some(c) => format!("{}\n{c}\n", w.name),
            None => format!("{}\nlost\n", w.name),
        };
        if let Err(e) = petri_domain::files::write_atomic(&w.status_file, line.as_bytes(), 0o644) {
            tracing::warn!(file = %w.status_file.display(), error = %e, "writing a cluster job's end");
        }
        if let Some(tell) = w.on_exit.take() {
            tell(ExitReport {
                job: key.job,
                attempt: key.attempt,
                exit_code: code,
            });
        }
    }

    /// Deletes what an attempt keeps beside its Job: its Secret, its working directory's
    /// ConfigMap.
    async fn delete_beside(&self, user: &str, name: &str, secret: bool, workdir_map: bool) {
        if !secret && !workdir_map {
            return;
        }
        let deleted = match self.client_for(Some(user)).await {
            Ok(client) => {
                let ns = &self.namespace;
                let a = match secret {
                    true => delete_object::<Secret>(&client, ns, name).await,
                    false => Ok(()),
                };
                let b = match workdir_map {
                    true => delete_object::<ConfigMap>(&client, ns, name).await,
                    false => Ok(()),
                };
                a.and(b)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = deleted {
            tracing::warn!(cluster = %self.name, object = %name, error = %e, "deleting what an attempt kept beside its Job");
        }
    }

    fn adopt(&self, run: &RunKey, status_file: &Path, mask: &[Vec<u8>]) -> Result<Watch, String> {
        let p = record_path(status_file);
        let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let r: Record = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let adopted = self.adopted_masks.lock().unwrap().remove(run);
        Ok(r.watch(
            status_file.to_path_buf(),
            adopted.as_deref().unwrap_or(mask),
        ))
    }
}

/// Creates an object an attempt keeps beside its Job; one made before a crash is the same.
async fn create_object<K>(client: &kube::Client, ns: &str, obj: &K) -> Result<(), String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
        Err(e) => Err(words(&e)),
    }
}

/// Makes an object the Job's (`ownerReferences`): deleting the Job deletes it.
async fn own_by_job<K>(client: &kube::Client, ns: &str, name: &str, uid: &str) -> Result<(), String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let owner = serde_json::json!({ "metadata": { "ownerReferences": [{
        "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
    }]}});
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.patch(name, &PatchParams::default(), &Patch::Merge(&owner))
        .await
        .map(|_| ())
        .map_err(|e| words(&e))
}

/// Deletes an object an attempt kept beside its Job; one already gone is fine.
async fn delete_object<K>(client: &kube::Client, ns: &str, name: &str) -> Result<(), String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(words(&e)),
    }
}

/// The log of the newest of a Job's pods; `None` while it has none (not scheduled yet, or no
/// node to run it).
pub async fn fetch_pod_log(
    pods: Result<(Api<Pod>, Vec<Pod>), String>,
) -> Result<Option<String>, String> {
    let (api, pods) = pods?;
    let Some(pod) = newest(&pods).and_then(|p| p.metadata.name.clone()) else {
        return Ok(None);
    };
    api.logs(
        &pod,
        &LogParams {
            container: Some("job".to_string()),
            ..LogParams::default()
        },
    )
    .await
    .map(Some)
    .map_err(|e| words(&e))
}

impl Executor for KubeExecutor {
    fn start(
        &self,
        launch: Launch,
        on_exit: Box<dyn FnOnce(ExitReport) + Send>,
    ) -> Result<RunHandle, ExecError> {
        let remote = ExecError::Remote;
        let name = Self::job_name(&launch.key);
        let image = launch
            .container
            .as_ref()
            .map(|c| c.image.clone())
            .ok_or_else(|| {
                remote(format!(
                    "cluster `{}` runs images: the job has none",
                    self.name
                ))
            })?;
        let status = launch.status_file.clone();
        let dir = self.shared.as_ref().map(|s| attempt_dir(s, &launch.key));
        let owner = match &launch.run_as {
            Some(r) => (r.uid, r.gid),
            None => (
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            ),
        };
        // Without a shared path, a small working directory travels in a ConfigMap.
        let map = match &self.shared {
            Some(_) => None,
            None => match workdir_map(&name, &launch) {
                Ok(WorkdirMap::Map(cm, items)) => Some((cm, items)),
                Ok(WorkdirMap::Empty) => None,
                Ok(WorkdirMap::TooBig(why)) => {
                    append_line(
                        &launch.log_path,
                        &format!(
                            "petri: on Kubernetes the job runs in its image's working directory: \
                             {} is not copied ({why}; give cluster `{}` a shared path)",
                            launch.workdir.display(),
                            self.name
                        ),
                    );
                    None
                }
                Err(e) => {
                    return Err(remote(format!(
                        "reading the working directory {}: {e}",
                        launch.workdir.display()
                    )));
                }
            },
        };
        let record = Record {
            name: name.clone(),
            user: launch.user.clone(),
            log_path: launch.log_path.clone(),
            secret: !launch.secrets.is_empty(),
            workdir_map: map.is_some(),
            dir: dir.clone(),
            output_dir: launch
                .env
                .iter()
                .find(|(k, _)| k == "PETRI_OUTPUT_DIR")
                .map(|(_, v)| PathBuf::from(v)),
            owner: launch.run_as.as_ref().map(|r| (r.uid, r.gid)),
        };
        match claim(&status)? {
            Claim::Mine => {}
            Claim::Earlier(Status::Submitted(_) | Status::Ended(..)) => {
                let mut w = self
                    .adopt(&launch.key, &status, &launch.mask)
                    .map_err(remote)?;
                w.on_exit = Some(on_exit);
                self.watches.lock().unwrap().insert(launch.key.clone(), w);
                return Ok(RunHandle(name));
            }
            Claim::Earlier(_) => {
                return Err(remote("this attempt was claimed by a recovery".into()));
            }
        }
        petri_domain::files::write_atomic(
            &record_path(&status),
            &serde_json::to_vec(&record).map_err(|e| remote(e.to_string()))?,
            0o644,
        )
        .map_err(|source| ExecError::Prepare {
            path: record_path(&status),
            source,
        })?;
        let staged = match (&self.shared, &dir) {
            (Some(shared), Some(dir)) => {
                let staged = stage(shared, dir, &launch).map_err(|e| {
                    let _ = std::fs::remove_file(record_path(&status));
                    remote(e)
                })?;
                // The pod runs as the job's owner: its files on the shared path are theirs.
                if launch.run_as.is_some() {
                    hand_over_to(dir, owner);
                }
                Some(staged)
            }
            _ => {
                if map.is_some() {
                    append_line(
                        &launch.log_path,
                        &format!(
                            "petri: on Kubernetes the job runs in a copy of {}; its outputs stay \
                             in the pod's {OUTPUT_MOUNT} (cluster `{}` has no shared path to \
                             bring them back)",
                            launch.workdir.display(),
                            self.name
                        ),
                    );
                }
                None
            }
        };
        let job = job_object(
            &name,
            &launch,
            &image,
            match (&self.shared, &staged) {
                (Some(shared), Some(staged)) => Some(OnShared {
                    shared,
                    workdir: &staged.workdir,
                    env: &staged.env,
                    uid: owner.0,
                    gid: owner.1,
                }),
                _ => None,
            },
            map.as_ref().map(|(_, items)| &items[..]),
        );
        let secret = secret_object(&name, &launch).map_err(|e| {
            let _ = std::fs::remove_file(record_path(&status));
            remote(format!("reading the job's secrets: {e}"))
        })?;
        let user = launch.user.clone();
        let created = self.block_on(async {
            let client = self.client_for(Some(&user)).await?;
            // The Secret and the ConfigMap first, so the pod never waits for them; then the
            // Job; then they are made the Job's, so deleting the Job (a cancel, its owner)
            // deletes them too.
            let ns = &self.namespace;
            let (has_secret, has_map) = (secret.is_some(), map.is_some());
            if let Some(secret) = &secret {
                create_object(&client, ns, secret)
                    .await
                    .map_err(|e| format!("creating the job's Secret: {e}"))?;
            }
            if let Some((cm, _)) = &map
                && let Err(e) = create_object(&client, ns, cm.as_ref()).await
            {
                self.delete_beside(&user, &name, has_secret, false).await;
                return Err(format!("creating the ConfigMap of the job's folder: {e}"));
            }
            let jobs: Api<Job> = Api::namespaced(client.clone(), &self.namespace);
            let made = match jobs.create(&PostParams::default(), &job).await {
                Ok(made) => made,
                // The same attempt, created before a crash: it is the one.
                Err(kube::Error::Api(s)) if s.is_already_exists() => {
                    jobs.get(&name).await.map_err(|e| words(&e))?
                }
                Err(e) => {
                    self.delete_beside(&user, &name, has_secret, has_map).await;
                    return Err(words(&e));
                }
            };
            if let Some(uid) = &made.metadata.uid {
                let owned = match (has_secret, has_map) {
                    (true, true) => own_by_job::<Secret>(&client, ns, &name, uid)
                        .await
                        .and(own_by_job::<ConfigMap>(&client, ns, &name, uid).await),
                    (true, false) => own_by_job::<Secret>(&client, ns, &name, uid).await,
                    (false, true) => own_by_job::<ConfigMap>(&client, ns, &name, uid).await,
                    (false, false) => Ok(()),
                };
                if let Err(e) = owned {
                    tracing::warn!(cluster = %self.name, object = %name, error = %e, "making what an attempt keeps beside its Job the Job's");
                }
            }
            Ok(())
        });
        if let Err(e) = created {
            // Nothing was created: the claim ends here, and the attempt failed to start.
            let _ = std::fs::remove_file(record_path(&status));
            return Err(remote(format!("cluster `{}`: {e}", self.name)));
        }
        petri_domain::files::write_atomic(&status, format!("{name}\n").as_bytes(), 0o644).map_err(
            |source| ExecError::Prepare {
                path: status.clone(),
                source,
            },
        )?;
        tracing::info!(job.id = %launch.key.job, cluster = %self.name, kube.job = %name, "created a Kubernetes Job");
        let mut w = record.watch(status, &launch.mask);
        w.on_exit = Some(on_exit);
        self.watches.lock().unwrap().insert(launch.key, w);
        Ok(RunHandle(name))
    }

    fn accepts(&self, spec: &JobSpec) -> Result<(), ErrorBody> {
        let refuse = |m: String| Err(ErrorBody::new(ErrorCode::TargetRefused, m));
        let name = &self.name;
        if spec.image.is_none() {
            return refuse(format!(
                "cluster `{name}` is Kubernetes, which runs images: give the job an `image` its \
                 nodes can pull"
            ));
        }
        refuse_unexpressible(name, "Kubernetes (`nvidia.com/gpu`)", spec)
    }

    fn admit(&self, spec: &JobSpec) -> Result<(), ErrorBody> {
        self.accepts(spec)?;
        let name = &self.name;
        let cap = self.capacity().map_err(|e| {
            ErrorBody::new(
                ErrorCode::ClusterUnavailable,
                format!("cluster `{name}`: {e}"),
            )
        })?;
        refuse_oversized(name, spec, &cap, 0.0)?;
        // An image its registry says it does not have would never start: refused now.
        if let Some(image) = &spec.image {
            match self.block_on(self.registries.check(image)) {
                Pullable::Yes => {}
                Pullable::No(why) => {
                    return Err(ErrorBody::new(
                        ErrorCode::ImageNotFound,
                        format!("cluster `{name}` cannot pull the image `{image}`: {why}"),
                    )
                    .with_details(serde_json::json!({ "field": "image", "image": image })));
                }
                Pullable::Unknown(why) => {
                    tracing::debug!(cluster = %name, %image, %why, "cannot tell whether the image can be pulled");
                }
            }
        }
        Ok(())
    }

    fn stop(&self, run: &RunKey, handle: &RunHandle, _signal: StopSignal) -> Result<(), ExecError> {
        let user = {
            let mut all = self.watches.lock().unwrap();
            all.get_mut(run).map(|w| {
                w.cancelled = true;
                w.user.clone()
            })
        };
        let name = handle.as_str().to_string();
        let cluster = self.name.clone();
        let namespace = self.namespace.clone();
        let clients = self.clients.clone();
        let keys = self.keys.clone();
        let url = self.url.clone();
        self.rt().spawn(async move {
            let key = user.clone().unwrap_or_default();
            let cached = clients.lock().unwrap().get(&key).cloned();
            let client = match cached {
                Some(c) => c,
                None => {
                    let Some(cred) = keys(user.as_deref()).or_else(|| keys(None)) else {
                        return;
                    };
                    match client(&url, &namespace, &cred).await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(%cluster, error = %e, "cancelling a Kubernetes Job");
                            return;
                        }
                    }
                }
            };
            let jobs: Api<Job> = Api::namespaced(client, &namespace);
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            match jobs.delete(&name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => {
                    tracing::warn!(%cluster, job = %name, error = %e, "cancelling a Kubernetes Job")
                }
            }
        });
        Ok(())
    }

    fn probe(&self, run: &RunKey, status_file: &Path) -> RunProbe {
        match read_status(status_file) {
            Status::Missing => match claim_for_recovery(status_file) {
                true => RunProbe::NeverStarted,
                false => self.probe(run, status_file),
            },
            Status::Recovered => RunProbe::NeverStarted,
            Status::Ended(_, Some(code)) => RunProbe::Exited(code),
            Status::Ended(_, None) => RunProbe::Lost,
            Status::Submitted(_) => {
                if let Some(w) = self.watches.lock().unwrap().get(run) {
                    return RunProbe::Alive {
                        handle: RunHandle(w.name.clone()),
                    };
                }
                // Claimed, then the daemon died: created or not, the watcher tells (a Job
                // that never came counts as ended without a code).
                match self.adopt(run, status_file, &[]) {
                    Ok(w) => {
                        let h = RunHandle(w.name.clone());
                        self.watches.lock().unwrap().insert(run.clone(), w);
                        RunProbe::Alive { handle: h }
                    }
                    // Claimed, and the daemon died before it wrote the record (so before it
                    // created the Job): the attempt never began.
                    Err(_) if !record_path(status_file).exists() => {
                        match petri_domain::files::write_atomic(status_file, b"recovered\n", 0o644)
                        {
                            Ok(()) => RunProbe::NeverStarted,
                            Err(_) => RunProbe::Lost,
                        }
                    }
                    Err(_) => RunProbe::Lost,
                }
            }
        }
    }

    /// The Job stays in the cluster (its owner's to inspect or delete); the attempt's record
    /// in the home goes with the job's, its folder on the shared path now.
    fn remove(&self, run: &RunKey) {
        let Some(shared) = &self.shared else {
            return;
        };
        if self.watches.lock().unwrap().contains_key(run) {
            return;
        }
        let dir = attempt_dir(shared, run);
        self.rt().spawn_blocking(move || {
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), error = %e, "removing an attempt's folder");
            }
        });
    }

    fn remote_status(&self, job: petri_domain::JobId) -> Option<petri_domain::RemoteStatus> {
        let all = self.watches.lock().unwrap();
        let w = all.iter().find(|(k, _)| k.job == job)?.1;
        let seen = w
            .seen
            .clone()
            .unwrap_or_else(|| EngineView::waiting("Created"));
        Some(seen.status(&self.name, Some(w.name.clone())))
    }

    /// Kept until `probe` adopts the attempt, whose log copy masks with it.
    fn mask_adopted(&self, run: &RunKey, mask: Vec<Vec<u8>>) {
        self.adopted_masks.lock().unwrap().insert(run.clone(), mask);
    }
}

impl KubeExecutor {
    fn capacity(&self) -> Result<ClusterCapacity, String> {
        if let Some((at, c)) = self.capacity.lock().unwrap().as_ref()
            && at.elapsed() < Duration::from_secs(30)
        {
            return Ok(c.clone());
        }
        let c = self.block_on(async {
            let client = self.client_for(None).await?;
            capacity(&client).await
        })?;
        if c.nodes > 0 {
            *self.capacity.lock().unwrap() = Some((Instant::now(), c.clone()));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod list and a pod's log as a 1.20 API server answers them (recorded: the test server
    /// has no kubelet, so no pod ever runs there).
    const PODS: &str = r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"812"},"items":[
      {"metadata":{"name":"petri-x-1-abcde","namespace":"default","creationTimestamp":"2026-12-03T10:00:00Z",
        "labels":{"petri.dev/run":"petri-x-1"}},
       "spec":{"containers":[{"name":"job","image":"busybox"}]},
       "status":{"phase":"Failed","containerStatuses":[{"name":"job","ready":false,"restartCount":0,
         "image":"busybox:latest","imageID":"","started":false,
         "state":{"terminated":{"exitCode":3,"reason":"Error","startedAt":"2026-12-03T10:00:01Z","finishedAt":"2026-12-03T10:00:02Z"}}}]}},
      {"metadata":{"name":"petri-x-1-older","namespace":"default","creationTimestamp":"2026-12-03T09:00:00Z",
        "labels":{"petri.dev/run":"petri-x-1"}},
       "spec":{"containers":[{"name":"job","image":"busybox"}]},
       "status":{"phase":"Succeeded"}}]}"#;
    const LOG: &str = "about to fail\nfailed\n";

    /// Answers the pod list and the newest pod's log, then reports the paths it was asked.
    async fn recorded_server() -> (String, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = tokio::spawn(async move {
            let mut paths = Vec::new();
            for _ in 0..2 {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 8192];
                let n = sock.read(&mut buf).await.unwrap();
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let (kind, body) = if path.contains("/log") {
                    ("text/plain", LOG)
                } else {
                    ("application/json", PODS)
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                sock.write_all(answer.as_bytes()).await.unwrap();
                paths.push(path);
            }
            paths
        });
        (url, served)
    }

    #[tokio::test]
    async fn a_pods_log_and_exit_code_are_read_from_the_api_servers_answers() {
        let (url, served) = recorded_server().await;
        let cred = Credential {
            user: "u".into(),
            token: "t".into(),
        };
        let client = client(&url, "default", &cred).await.unwrap();
        let pods: Api<Pod> = Api::namespaced(client, "default");
        let list = pods
            .list(&ListParams::default().labels("petri.dev/run=petri-x-1"))
            .await
            .unwrap();
        assert_eq!(pod_exit_code(&list.items), Some(3));
        let log = fetch_pod_log(Ok((pods, list.items))).await.unwrap();
        assert_eq!(log.as_deref(), Some(LOG));
        let paths = served.await.unwrap();
        assert!(
            paths[0].contains("labelSelector=petri.dev%2Frun%3Dpetri-x-1"),
            "{paths:?}"
        );
        // The newest pod's log, of the job's container.
        assert!(
            paths[1].starts_with("/api/v1/namespaces/default/pods/petri-x-1-abcde/log")
                && paths[1].contains("container=job"),
            "{paths:?}"
        );
    }

    #[test]
    fn an_attempt_claimed_before_its_job_was_made_never_began() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Keyring = Arc::new(|_: Option<&str>| None);
        let exec = KubeExecutor::new("k", "https://127.0.0.1:1", None, None, keys).unwrap();
        let run = RunKey {
            job: petri_domain::JobId::new(),
            attempt: 1,
            target: "k".into(),
        };
        let status = dir.path().join("run");
        std::fs::write(&status, "submitting\n").unwrap();
        assert!(matches!(exec.probe(&run, &status), RunProbe::NeverStarted));
        assert!(matches!(exec.probe(&run, &status), RunProbe::NeverStarted));
        // With its record written, it is followed (the watcher decides how it ended).
        let status = dir.path().join("run2");
        std::fs::write(&status, "petri-x-1\n").unwrap();
        let record = Record {
            name: "petri-x-1".into(),
            user: "u".into(),
            log_path: dir.path().join("log"),
            secret: false,
            workdir_map: false,
            dir: None,
            output_dir: None,
            owner: None,
        };
        std::fs::write(record_path(&status), serde_json::to_vec(&record).unwrap()).unwrap();
        assert!(matches!(exec.probe(&run, &status), RunProbe::Alive { .. }));
        assert_eq!(exec.running(), 1);
    }

    /// alice's `python train.py` in `workdir`, its log and status file in `dir`.
    fn launch_in(dir: &Path, workdir: &Path) -> Launch {
        Launch {
            key: RunKey {
                job: petri_domain::JobId::new(),
                attempt: 1,
                target: "k".into(),
            },
            argv: vec!["python".into(), "train.py".into()],
            workdir: workdir.to_path_buf(),
            env: Vec::new(),
            log_path: dir.join("log"),
            status_file: dir.join("run"),
            container: None,
            mask: Vec::new(),
            secrets: Vec::new(),
            run_as: None,
            user: "alice".into(),
            resources: petri_domain::Resources::default(),
            timeout_ms: None,
        }
    }

    #[test]
    fn secrets_go_in_the_attempts_secret_and_the_job_only_refers_to_them() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, "-----KEY-----\n").unwrap();
        let out = dir.path().join("out");
        let launch = Launch {
            env: vec![
                ("MODE".into(), "fast".into()),
                ("TOKEN".into(), "hunter2-value".into()),
                ("KEY".into(), key_file.display().to_string()),
                ("PETRI_OUTPUT_DIR".into(), out.display().to_string()),
            ],
            mask: vec![b"hunter2-value".to_vec()],
            secrets: vec![
                petri_domain::SecretVar {
                    name: "TOKEN".into(),
                    file: false,
                },
                petri_domain::SecretVar {
                    name: "KEY".into(),
                    file: true,
                },
            ],
            ..launch_in(dir.path(), dir.path())
        };
        let job = job_object("petri-x-1", &launch, "python:3.11", None, None);
        let text = serde_json::to_string(&job).unwrap();
        assert!(!text.contains("hunter2"), "no secret in the Job: {text}");
        let pod = job.spec.unwrap().template.spec.unwrap();
        let env = pod.containers[0].env.clone().unwrap();
        let var = |n: &str| env.iter().find(|e| e.name == n).unwrap().clone();
        assert_eq!(var("MODE").value.as_deref(), Some("fast"));
        let from = var("TOKEN").value_from.unwrap().secret_key_ref.unwrap();
        assert_eq!(
            (from.name.as_str(), from.key.as_str()),
            ("petri-x-1", "TOKEN")
        );
        assert_eq!(var("KEY").value.as_deref(), Some("/petri/secrets/KEY"));
        assert_eq!(
            var("PETRI_OUTPUT_DIR").value.as_deref(),
            Some("/petri/output")
        );
        let volume = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "secrets")
            .unwrap()
            .secret
            .unwrap();
        assert_eq!(volume.secret_name.as_deref(), Some("petri-x-1"));
        assert_eq!(
            volume.items.unwrap()[0].key,
            "KEY",
            "only the files are mounted"
        );
        let secret = secret_object("petri-x-1", &launch).unwrap().unwrap();
        let data = secret.data.unwrap();
        assert_eq!(data["TOKEN"].0, b"hunter2-value");
        assert_eq!(data["KEY"].0, b"-----KEY-----\n");
        assert_eq!(
            secret.metadata.labels.unwrap()["app.kubernetes.io/managed-by"],
            "petri"
        );
        let plain = Launch {
            secrets: Vec::new(),
            ..launch
        };
        assert!(secret_object("petri-x-1", &plain).unwrap().is_none());
    }

    #[test]
    fn a_small_working_directory_travels_in_a_configmap() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join("lib")).unwrap();
        std::fs::write(work.join("train.py"), "import lib.util\n").unwrap();
        std::fs::write(work.join("lib/util.py"), "X = 1\n").unwrap();
        std::os::unix::fs::symlink("train.py", work.join("link.py")).unwrap();
        let launch = launch_in(dir.path(), &work);
        let WorkdirMap::Map(cm, items) = workdir_map("petri-x-1", &launch).unwrap() else {
            panic!("a small folder travels");
        };
        let paths: Vec<&str> = items.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            ["lib/util.py", "train.py"],
            "files only, links left out"
        );
        assert_eq!(
            cm.binary_data.unwrap()[&items[1].key].0,
            b"import lib.util\n"
        );
        let job = job_object("petri-x-1", &launch, "python:3.11", None, Some(&items));
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.containers[0].working_dir.as_deref(), Some(WORK_MOUNT));
        let init = &pod.init_containers.unwrap()[0];
        assert_eq!(init.image.as_deref(), Some("python:3.11"));
        std::fs::write(
            work.join("big.bin"),
            vec![0u8; (MAX_WORKDIR_MAP + 1) as usize],
        )
        .unwrap();
        assert!(matches!(
            workdir_map("petri-x-1", &launch).unwrap(),
            WorkdirMap::TooBig(_)
        ));
        let empty = Launch {
            workdir: dir.path().join("none"),
            ..launch
        };
        std::fs::create_dir_all(&empty.workdir).unwrap();
        assert!(matches!(
            workdir_map("petri-x-1", &empty).unwrap(),
            WorkdirMap::Empty
        ));
    }

    #[test]
    fn a_pod_that_waits_says_why() {
        let pod = |status: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "creationTimestamp": "2026-12-03T10:00:00Z"},
                "status": status}))
            .unwrap()
        };
        assert_eq!(
            pod_state(&[]),
            EngineView {
                state: "Pending".into(),
                waiting: true,
                reason: Some("no pod yet".into())
            }
        );
        let pulling = pod(
            serde_json::json!({"phase": "Pending", "containerStatuses": [{
            "name": "job", "ready": false, "restartCount": 0, "image": "x", "imageID": "",
            "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}}]}),
        );
        let seen = pod_state(&[pulling]);
        assert!(seen.waiting);
        assert_eq!(seen.reason.as_deref(), Some("ErrImagePull: not found"));
        let unscheduled = pod(serde_json::json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}));
        assert_eq!(
            pod_state(&[unscheduled]).reason.as_deref(),
            Some("Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
        );
        let running = pod_state(&[pod(serde_json::json!({"phase": "Running"}))]);
        assert_eq!(
            (running.state.as_str(), running.waiting),
            ("Running", false)
        );
    }

    #[test]
    fn quantities_and_labels_read_as_kubernetes_writes_them() {
        assert_eq!(parse_cpu("2"), 2000);
        assert_eq!(parse_cpu("500m"), 500);
        assert_eq!(parse_bytes("16Gi"), 16 << 30);
        assert_eq!(parse_bytes("1000k"), 1_000_000);
        assert_eq!(parse_bytes("123"), 123);
        assert!(is_label_value("alice"));
        assert!(!is_label_value("alice@lab"));
        assert!(!is_label_value("-x"));
        assert!(is_kubeconfig("apiVersion: v1\nclusters: []\n"));
        assert!(!is_kubeconfig("eyJhbGciOi"));
    }

    #[test]
    fn a_jobs_end_reads_from_its_conditions_and_counts() {
        let job = |status: serde_json::Value| -> Job {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "j"}, "status": status}))
                .unwrap()
        };
        assert_eq!(job_end(&job(serde_json::json!({"active": 1}))), None);
        assert_eq!(
            job_end(&job(
                serde_json::json!({"conditions": [{"type": "Complete", "status": "True"}]})
            )),
            Some(Ok(()))
        );
        assert_eq!(
            job_end(&job(serde_json::json!({"conditions": [
                {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}))),
            Some(Err("DeadlineExceeded".into()))
        );
        assert_eq!(
            job_end(&job(serde_json::json!({"failed": 1}))),
            Some(Err("BackoffLimitExceeded".into()))
        );
    }
}
