//! Clusters as targets (`petri-cluster`): a job whose spec says `target: NAME` is handed to the
//! cluster of that name and tracked like a local one (its state, its log as it grows, its exit
//! code, its outputs brought back, a cancel that reaches the cluster, a daemon restart that
//! re-attaches).
//!
//! [`Clusters`] keeps the configured clusters (`clusters.json` in the home) and each user's
//! credential for each, encrypted under the home's secrets key, and registers one executor per
//! cluster in the daemon's table of executors, so the queue finds it by name. With team mode,
//! every member's jobs go with that member's own credential; a member without one is refused at
//! submit. Slurm (slurmrestd, JWT, [`slurm`]) and Ray (its Jobs API with a token, [`ray`]) are
//! spoken through one executor that works on a shared path ([`executor`]); Kubernetes through
//! kube-rs, with `batch/v1` Jobs and a watcher ([`kube`]).

mod attempt;
pub mod engine;
pub mod executor;
pub mod kube;
pub mod ray;
pub mod registry;
pub mod slurm;
mod staging;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use petri_domain::{
    ClusterCheck, ClusterInfo, ClusterKind, ClusterRequest, ErrorBody, ErrorCode, Executors,
};
use petri_secrets::Secrets;
use serde::{Deserialize, Serialize};

use engine::{Credential, Engine, PingError};
pub use executor::ClusterExecutor;
pub use kube::KubeExecutor;

/// The OpenAPI version of slurmrestd spoken when none is given (Slurm 22.05, Debian 12).
pub const DEFAULT_SLURM_API: &str = "v0.0.38";

/// What a Ray cluster's `api_version` says: its Jobs REST API, which is not versioned by path.
pub const RAY_API: &str = "jobs";

/// What a Kubernetes cluster's `api_version` says: the Jobs API group spoken.
pub const KUBE_API: &str = "batch/v1";

/// The clusters of one home; cheap to clone.
#[derive(Clone)]
pub struct Clusters {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    secrets: Secrets,
    executors: Executors,
    poll: Duration,
    clusters: RwLock<BTreeMap<String, Stored>>,
    live: Mutex<BTreeMap<String, Live>>,
    /// One writer of the file at a time.
    writing: Mutex<()>,
}

/// A cluster as kept: its settings and each user's credential, sealed.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stored {
    name: String,
    kind: ClusterKind,
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    partition: Option<String>,
    shared: PathBuf,
    api_version: String,
    owner: String,
    created_at_ms: i64,
    /// By Petri user: the account the cluster knows them by, and their sealed token.
    credentials: BTreeMap<String, Sealed>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sealed {
    account: String,
    token: String,
}

#[derive(Default, Serialize, Deserialize)]
struct File {
    clusters: Vec<Stored>,
}

impl Stored {
    fn info(&self) -> ClusterInfo {
        ClusterInfo {
            name: self.name.clone(),
            kind: self.kind,
            url: self.url.clone(),
            partition: self.partition.clone(),
            shared: self.shared.clone(),
            api_version: self.api_version.clone(),
            owner: self.owner.clone(),
            users: self.credentials.keys().cloned().collect(),
            created_at_ms: self.created_at_ms,
        }
    }
}

/// A cluster's executor, as the table of live ones keeps it.
enum Live {
    Shared(Arc<ClusterExecutor>),
    Kube(Arc<KubeExecutor>),
}

impl Live {
    fn running(&self) -> usize {
        match self {
            Live::Shared(e) => e.running(),
            Live::Kube(e) => e.running(),
        }
    }
}

fn label(cluster: &str, user: &str) -> String {
    format!("cluster {cluster} for {user}")
}

impl Clusters {
    /// Opens the clusters of the home at `home` and registers each one's executor in
    /// `executors` (before the queue starts, so that it re-attaches to their running jobs).
    /// `poll`: how often each cluster is asked about its jobs.
    pub fn open(
        home: &Path,
        secrets: Secrets,
        executors: Executors,
        poll: Duration,
    ) -> Result<Clusters, String> {
        let path = home.join("clusters.json");
        let file: File = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} does not parse: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let clusters = Clusters {
            inner: Arc::new(Inner {
                path,
                secrets,
                executors,
                poll,
                clusters: RwLock::new(
                    file.clusters
                        .into_iter()
                        .map(|c| (c.name.clone(), c))
                        .collect(),
                ),
                live: Mutex::default(),
                writing: Mutex::default(),
            }),
        };
        let all: Vec<Stored> = clusters.read().values().cloned().collect();
        for c in all {
            if let Err(e) = clusters.start_executor(&c) {
                tracing::warn!(cluster = %c.name, error = %e, "a cluster cannot be used");
            }
        }
        Ok(clusters)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Stored>> {
        self.inner
            .clusters
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn start_executor(&self, c: &Stored) -> Result<(), String> {
        let weak = Arc::downgrade(&self.inner);
        let name = c.name.clone();
        let keys: executor::Keyring =
            Arc::new(move |user: Option<&str>| credential(&weak, &name, user));
        let live = if c.kind == ClusterKind::Kubernetes {
            let shared = (!c.shared.as_os_str().is_empty()).then(|| c.shared.clone());
            let exec = KubeExecutor::new(&c.name, &c.url, c.partition.clone(), shared, keys)?;
            self.inner.executors.register(c.name.clone(), exec.clone());
            Live::Kube(exec)
        } else {
            let exec = ClusterExecutor::new(
                &c.name,
                Engine::new(c.kind, &c.url, &c.api_version)?,
                c.partition.clone(),
                c.shared.clone(),
                keys,
                self.inner.poll,
            )?;
            self.inner.executors.register(c.name.clone(), exec.clone());
            Live::Shared(exec)
        };
        self.inner.live.lock().unwrap().insert(c.name.clone(), live);
        Ok(())
    }

    fn save(&self) -> Result<(), ErrorBody> {
        let file = File {
            clusters: self.read().values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
        petri_domain::files::write_private(&self.inner.path, &bytes).map_err(|e| {
            ErrorBody::new(
                ErrorCode::Internal,
                format!("writing {}: {e}", self.inner.path.display()),
            )
        })
    }

    /// Every cluster, without credentials.
    pub fn list(&self) -> Vec<ClusterInfo> {
        self.read().values().map(Stored::info).collect()
    }

    pub fn get(&self, name: &str) -> Option<ClusterInfo> {
        self.read().get(name).map(Stored::info)
    }

    /// Adds a cluster, or (with the name of one that exists, the same kind and address) the
    /// caller's own credential for it. The credential is tried first: one the cluster refuses
    /// is not kept.
    pub async fn add(&self, req: ClusterRequest, user: &str) -> Result<ClusterInfo, ErrorBody> {
        let invalid = |m: String| ErrorBody::new(ErrorCode::InvalidCluster, m);
        petri_domain::check_cluster_name(&req.name).map_err(invalid)?;
        let (api_what, version) = match req.kind {
            ClusterKind::Slurm => (
                "slurmrestd",
                req.api_version
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SLURM_API.to_string()),
            ),
            ClusterKind::Ray => {
                if let Some(v) = &req.api_version {
                    return Err(invalid(format!(
                        "a Ray cluster is spoken to through its Jobs API, which has no versions \
                         to choose from: drop the API version `{v}`"
                    )));
                }
                if let Some(p) = &req.partition {
                    return Err(invalid(format!(
                        "Ray has no partitions: drop the partition `{p}`"
                    )));
                }
                ("Ray's dashboard (its Jobs API)", RAY_API.to_string())
            }
            ClusterKind::Kubernetes => {
                if let Some(v) = &req.api_version {
                    return Err(invalid(format!(
                        "Petri speaks batch/v1 to every Kubernetes: drop the API version `{v}`"
                    )));
                }
                ("the Kubernetes API server", KUBE_API.to_string())
            }
        };
        if !(req.url.starts_with("http://") || req.url.starts_with("https://")) {
            return Err(invalid(format!(
                "`{}` is not an address Petri can call: give http://HOST:PORT of {api_what}",
                req.url
            )));
        }
        // Kubernetes needs none (the image holds the code); given one, it is used as on Slurm.
        let needs_shared =
            req.kind != ClusterKind::Kubernetes || !req.shared.as_os_str().is_empty();
        if needs_shared && (!req.shared.is_absolute() || !req.shared.is_dir()) {
            return Err(invalid(format!(
                "the shared path {} is not a folder on this machine: give a folder the cluster's \
                 nodes see under the same path",
                req.shared.display()
            )));
        }
        let token = req
            .token
            .trim()
            .trim_start_matches("SLURM_JWT=")
            .trim_start_matches("RAY_AUTH_TOKEN=")
            .to_string();
        if token.is_empty() {
            return Err(invalid("the token is empty".into()));
        }
        let account = req.user.clone().unwrap_or_else(|| user.to_string());
        let existing = self.read().get(&req.name).cloned();
        if let Some(c) = &existing
            && (c.kind != req.kind || c.url != req.url.trim_end_matches('/'))
        {
            return Err(ErrorBody::new(
                ErrorCode::ClusterExists,
                format!(
                    "a cluster called `{}` exists at {}; remove it first (`petri cluster rm {}`) \
                     or pick another name",
                    req.name, c.url, req.name
                ),
            ));
        }
        // Try the credential before keeping anything.
        let cred = Credential {
            user: account.clone(),
            token: token.clone(),
        };
        let c = Reach {
            kind: req.kind,
            url: req.url.trim_end_matches('/'),
            version: &version,
            partition: req.partition.as_deref(),
        };
        c.ping(&cred).await.map_err(|e| {
            let code = match e {
                PingError::Refused(_) => ErrorCode::CredentialRefused,
                _ => ErrorCode::ClusterUnavailable,
            };
            ErrorBody::new(code, format!("cluster `{}`: {e}", req.name))
        })?;
        let sealed = Sealed {
            account,
            token: self
                .inner
                .secrets
                .seal(&label(&req.name, user), token.as_bytes())
                .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?,
        };
        let _writing = self.inner.writing.lock().unwrap();
        let stored = {
            let mut all = self
                .inner
                .clusters
                .write()
                .unwrap_or_else(|p| p.into_inner());
            let entry = all.entry(req.name.clone()).or_insert_with(|| Stored {
                name: req.name.clone(),
                kind: req.kind,
                url: req.url.trim_end_matches('/').to_string(),
                partition: req.partition.clone(),
                shared: req.shared.clone(),
                api_version: version.clone(),
                owner: user.to_string(),
                created_at_ms: petri_queue::now_ms(),
                credentials: BTreeMap::new(),
            });
            entry.credentials.insert(user.to_string(), sealed);
            entry.clone()
        };
        self.save()?;
        if existing.is_none()
            && let Err(e) = self.start_executor(&stored)
        {
            return Err(ErrorBody::new(ErrorCode::Internal, e));
        }
        Ok(stored.info())
    }

    /// Removes a cluster (its owner or an admin), once no job of this daemon runs there.
    pub fn remove(&self, name: &str, user: &str, admin: bool) -> Result<ClusterInfo, ErrorBody> {
        let _writing = self.inner.writing.lock().unwrap();
        let Some(c) = self.read().get(name).cloned() else {
            return Err(not_found(name));
        };
        if c.owner != user && !admin {
            return Err(ErrorBody::new(
                ErrorCode::Forbidden,
                format!(
                    "cluster `{name}` is {}'s; only they or an admin may remove it",
                    c.owner
                ),
            ));
        }
        if let Some(exec) = self.inner.live.lock().unwrap().get(name)
            && exec.running() > 0
        {
            return Err(ErrorBody::new(
                ErrorCode::InvalidState,
                format!(
                    "{} jobs of this daemon run on `{name}`; cancel them or let them end first",
                    exec.running()
                ),
            ));
        }
        self.inner
            .clusters
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.save()?;
        self.inner.executors.unregister(name);
        self.inner.live.lock().unwrap().remove(name);
        Ok(c.info())
    }

    /// Whether the cluster answers, takes the caller's credential, and what it offers.
    pub async fn check(&self, name: &str, user: &str) -> Result<ClusterCheck, ErrorBody> {
        let Some(c) = self.read().get(name).cloned() else {
            return Err(not_found(name));
        };
        let mut out = ClusterCheck {
            name: name.to_string(),
            reachable: false,
            credentials_valid: false,
            version: None,
            capacity: None,
            partitions: Vec::new(),
            problem: None,
        };
        let Some(cred) = credential(&Arc::downgrade(&self.inner), name, Some(user)) else {
            out.problem = Some(format!(
                "{user} has no credential for `{name}`: `petri cluster add {name} --kind {} \
                 --url {} --shared {} --token-file FILE`",
                c.kind,
                c.url,
                c.shared.display()
            ));
            return Ok(out);
        };
        let api = Reach {
            kind: c.kind,
            url: &c.url,
            version: &c.api_version,
            partition: c.partition.as_deref(),
        };
        match api.ping(&cred).await {
            Ok(release) => {
                out.reachable = true;
                out.credentials_valid = true;
                out.version = Some(release);
            }
            Err(e) => {
                out.reachable = !matches!(e, PingError::Unreachable(_));
                out.problem = Some(e.to_string());
                return Ok(out);
            }
        }
        let (capacity, partitions) = api.size(&cred).await;
        match capacity {
            Ok(cap) => out.capacity = Some(cap),
            Err(e) => out.problem = Some(e),
        }
        match partitions {
            Ok(p) => {
                if let Some(want) = &c.partition
                    && !p.contains(want)
                {
                    out.problem = Some(format!(
                        "the partition `{want}` jobs go to does not exist there"
                    ));
                }
                out.partitions = p;
            }
            Err(e) => out.problem = Some(e),
        }
        Ok(out)
    }

    /// The queue's check at submit: a job for one of these clusters needs its submitter's own
    /// credential there.
    pub fn admission_hook(&self) -> petri_queue::AdmissionHook {
        let weak = Arc::downgrade(&self.inner);
        Arc::new(move |spec, by| {
            let Some(target) = spec
                .target
                .as_deref()
                .filter(|t| petri_domain::is_remote_target(t))
            else {
                return Ok(());
            };
            let Some(inner) = weak.upgrade() else {
                return Ok(());
            };
            let all = inner.clusters.read().unwrap_or_else(|p| p.into_inner());
            match all.get(target) {
                Some(c) if !c.credentials.contains_key(&by.user) => Err(ErrorBody::new(
                    ErrorCode::TargetRefused,
                    format!(
                        "{} has no credential for cluster `{target}`; each user's jobs go with \
                         their own: `petri cluster add {target} --kind {} --url {} --shared \
                         {} --token-file FILE`",
                        by.user,
                        c.kind,
                        c.url,
                        c.shared.display()
                    ),
                )),
                _ => Ok(()),
            }
        })
    }
}

/// How to reach a cluster for a check: its engine, address and (Kubernetes) namespace.
struct Reach<'a> {
    kind: ClusterKind,
    url: &'a str,
    version: &'a str,
    partition: Option<&'a str>,
}

impl Reach<'_> {
    /// Whether it answers and takes the credential: its release.
    async fn ping(&self, cred: &Credential) -> Result<String, PingError> {
        match self.kind {
            ClusterKind::Kubernetes => {
                kube::ping(self.url, self.partition.unwrap_or("default"), cred).await
            }
            kind => {
                Engine::new(kind, self.url, self.version)
                    .map_err(PingError::Other)?
                    .ping(cred)
                    .await
            }
        }
    }

    /// Its size, and the partitions a job may name (a Kubernetes cluster's jobs go to the
    /// one namespace configured).
    async fn size(
        &self,
        cred: &Credential,
    ) -> (
        Result<petri_domain::ClusterCapacity, String>,
        Result<Vec<String>, String>,
    ) {
        match self.kind {
            ClusterKind::Kubernetes => {
                let ns = self.partition.unwrap_or("default");
                match kube::client(self.url, ns, cred).await {
                    Ok(client) => (kube::capacity(&client).await, Ok(vec![ns.to_string()])),
                    Err(e) => (Err(e.clone()), Err(e)),
                }
            }
            kind => match Engine::new(kind, self.url, self.version) {
                Ok(engine) => (engine.capacity(cred).await, engine.partitions(cred).await),
                Err(e) => (Err(e.clone()), Err(e)),
            },
        }
    }
}

fn not_found(name: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::ClusterNotFound,
        format!("no cluster is called `{name}` (`petri cluster ls` lists them)"),
    )
}

/// A user's credential for a cluster, opened; `None` for the user asks for the owner's (or
/// anyone's), for what is not one user's (the cluster's size).
fn credential(inner: &Weak<Inner>, cluster: &str, user: Option<&str>) -> Option<Credential> {
    let inner = inner.upgrade()?;
    let (who, sealed) = {
        let all = inner.clusters.read().unwrap_or_else(|p| p.into_inner());
        let c = all.get(cluster)?;
        match user {
            Some(u) => (u.to_string(), c.credentials.get(u)?.clone()),
            None => {
                let (who, s) = c
                    .credentials
                    .get_key_value(&c.owner)
                    .or_else(|| c.credentials.iter().next())?;
                (who.clone(), s.clone())
            }
        }
    };
    let token = inner
        .secrets
        .unseal(&label(cluster, &who), &sealed.token)
        .map_err(|e| tracing::warn!(%cluster, user = %who, error = %e, "a cluster credential does not open"))
        .ok()?;
    Some(Credential {
        user: sealed.account,
        token: String::from_utf8(token).ok()?,
    })
}
