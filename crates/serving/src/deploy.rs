//! Deployments: a registered version served by replicas, each a service job of the queue that
//! runs `petri model-server` on a loopback port of its own. The job holds the replica's
//! reservation (CPU, GPU memory) in the same budget as every other job, restarts with backoff
//! when it dies, and outlives a daemon restart (re-adopted like any job). The daemon routes
//! requests to ready replicas, in turn, adding the replica's key (derived, never stored).
//!
//! A deployment that follows an alias (`iris@champion`) is moved when the alias moves: the new
//! version's replicas start beside the old ones, and only once every one of them answers ready
//! does routing switch and the old ones stop, so no request fails or is dropped. A version that
//! fails to load leaves the old one serving, and the deployment says why.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use petri_artifacts::{Artifacts, Digest};
use petri_domain::{ByteSize, ErrorBody, ErrorCode, JobId, JobSpec, JobState, Millis, Origin};
use petri_queue::service::RESTART;
use petri_queue::{LaunchHook, Queue, ServiceKeys, Submitter};
use petri_registry::Registry;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::batch::{self, BatchLimits, Engine, Ran, RunError};
use crate::db;
use crate::server::ModelServer;

/// What `petri model serve` asks for.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServeRequest {
    /// `NAME@ALIAS` (followed when the alias moves), `NAME/VERSION`, or `NAME` (its newest
    /// version).
    pub model: String,
    /// The deployment's name, in `/v2/models/{name}` (default: the model's name).
    #[serde(default)]
    pub name: Option<String>,
    /// How many processes serve it (default 1).
    #[serde(default)]
    pub replicas: Option<u32>,
    /// GPU memory each replica reserves (none: CPU).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub gpu_memory: Option<ByteSize>,
    /// The most rows one run of the network takes (default 64; 1: no batching).
    #[serde(default)]
    pub max_batch: Option<usize>,
    /// How long a request waits for others to batch with (default 0: a batch is what queued
    /// while the replicas were busy, and a lone request waits for nothing).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub max_delay: Option<Millis>,
}

/// One replica: its job and where it listens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Replica {
    pub job: JobId,
    pub port: u16,
    pub version: i64,
    /// `starting`, `ready`, `restarting`, `failed`, `stopped`.
    pub state: String,
}

/// A deployment as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Deployment {
    pub name: String,
    pub model: String,
    /// What it follows: `@alias`, or a version number.
    pub selector: String,
    /// The version serving now.
    pub version: i64,
    pub replicas: Vec<Replica>,
    #[schema(value_type = Option<String>)]
    pub gpu_memory: Option<ByteSize>,
    pub max_batch: usize,
    #[schema(value_type = String)]
    pub max_delay: Millis,
    /// `starting` (no replica ready yet), `ready`, `degraded` (some ready), `failed`; `stopped`
    /// in the answer to an unserve.
    pub state: String,
    /// Why it is not (all) ready, or why a newer version was not taken.
    pub reason: Option<String>,
    pub user: String,
    pub created_ms: i64,
    /// Where to call it (paths on the daemon's address).
    pub infer_path: String,
    pub invocations_path: String,
    /// `infer_path` as a whole URL on the daemon's TCP address, as the caller reached the
    /// daemon (a caller on its socket gets its loopback address and port).
    #[serde(default)]
    pub infer_url: Option<String>,
}

/// Why a serving call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error("no deployment `{0}`; see `petri model endpoints`")]
    NotFound(String),
    #[error(
        "a deployment named `{0}` exists already; `petri model unserve {0}` first, or pick another --name"
    )]
    NameTaken(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    InvalidModel(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    NotReady(String),
    #[error(transparent)]
    Registry(#[from] petri_registry::RegistryError),
    #[error(transparent)]
    Queue(#[from] petri_queue::QueueError),
    #[error(transparent)]
    Artifact(#[from] petri_artifacts::ArtifactError),
    #[error("the serving state {path}: {source}")]
    Db {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{0}")]
    Io(String),
}

impl From<ServingError> for ErrorBody {
    fn from(e: ServingError) -> Self {
        let code = match &e {
            ServingError::NotFound(_) => ErrorCode::DeploymentNotFound,
            ServingError::NameTaken(_) => ErrorCode::DeploymentNameTaken,
            ServingError::Invalid(_) => ErrorCode::InvalidSpec,
            ServingError::InvalidModel(_) => ErrorCode::InvalidModel,
            ServingError::Unsupported(_) => ErrorCode::UnsupportedModel,
            ServingError::NotReady(_) => ErrorCode::DeploymentNotReady,
            ServingError::Artifact(a) => a.code(),
            ServingError::Db { .. } | ServingError::Io(_) => ErrorCode::Internal,
            ServingError::Registry(_) | ServingError::Queue(_) => ErrorCode::Internal,
        };
        match e {
            ServingError::Registry(r) => r.into(),
            ServingError::Queue(q) => q.into(),
            other => ErrorBody::new(code, other.to_string()),
        }
    }
}

type Result<T, E = ServingError> = std::result::Result<T, E>;

/// What replicas' keys are derived for (with the replica's job id).
const PURPOSE: &str = "petri-model";
/// The environment variable a replica finds its key in.
pub const KEY_ENV: &str = "PETRI_MODEL_KEY";
/// How long a new replica has to answer ready.
const START_LIMIT: Duration = Duration::from_secs(120);

/// What a deployment follows.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Selector {
    Alias(String),
    Version(i64),
    Latest,
}

impl Selector {
    fn text(&self) -> String {
        match self {
            Selector::Alias(a) => format!("@{a}"),
            Selector::Version(v) => v.to_string(),
            Selector::Latest => "latest".into(),
        }
    }
    fn parse(s: &str) -> Selector {
        if let Some(a) = s.strip_prefix('@') {
            Selector::Alias(a.to_string())
        } else if let Ok(v) = s.parse() {
            Selector::Version(v)
        } else {
            Selector::Latest
        }
    }
}

/// `NAME@ALIAS`, `NAME/VERSION`, `NAME`.
fn parse_ref(r: &str) -> Result<(String, Selector)> {
    let r = r.trim();
    let (model, sel) = if let Some((m, a)) = r.split_once('@') {
        (m, Selector::Alias(a.to_string()))
    } else if let Some((m, v)) = r.rsplit_once('/') {
        let v: i64 = v.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
            ServingError::Invalid(format!("`{r}`: a version is a number (NAME/3)"))
        })?;
        (m, Selector::Version(v))
    } else {
        (r, Selector::Latest)
    };
    if model.is_empty() || matches!(&sel, Selector::Alias(a) if a.is_empty()) {
        return Err(ServingError::Invalid(format!(
            "`{r}` names no model: use NAME@ALIAS, NAME/VERSION or NAME"
        )));
    }
    Ok((model.to_string(), sel))
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if !ok {
        return Err(ServingError::Invalid(format!(
            "`{name}` cannot name a deployment: letters, digits, '-', '_' and '.', as it is a \
             path segment of /v2/models/{{name}} (pick one with --name)"
        )));
    }
    Ok(())
}

/// A replica as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StoredReplica {
    job: JobId,
    port: u16,
    version: i64,
    /// In a container (an MLflow model), its `port` inside.
    #[serde(default)]
    container: bool,
}

/// A deployment as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) name: String,
    model: String,
    selector: String,
    version: i64,
    replicas: Vec<StoredReplica>,
    #[serde(default)]
    gpu_memory: Option<ByteSize>,
    max_batch: usize,
    max_delay_us: u64,
    #[serde(default)]
    reason: Option<String>,
    /// A version that was not taken (it failed to load or start): not tried again until the
    /// alias moves once more.
    #[serde(default)]
    refused_version: Option<i64>,
    user: String,
    created_ms: i64,
}

/// How a version runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Runtime {
    /// `petri model-server`: Petri's own format, with candle.
    Native,
    /// MLflow's scoring server in Petri's image (an MLflow model of another flavour).
    Container,
}

/// Where one request goes.
#[derive(Clone, Debug)]
pub struct Route {
    pub job: JobId,
    pub addr: SocketAddr,
    /// `Bearer <key>` for the replica.
    pub authorization: String,
    pub version: i64,
    /// A container replica: its address is where Docker published its port, known once it
    /// runs.
    container: bool,
}

/// The replicas requests may go to, by deployment.
#[derive(Default)]
struct Table {
    by_name: HashMap<String, Vec<Route>>,
    /// For a model in Petri's format: the deployment's front, which reads, featurizes and
    /// batches requests here and sends each batch to a replica of its version.
    fronts: HashMap<String, Arc<ModelServer>>,
    ready: HashMap<JobId, bool>,
    /// Where each container replica's port is published (per attempt: set when it answers).
    published: HashMap<JobId, SocketAddr>,
}

/// The port MLflow's scoring server listens on inside a container replica.
const CONTAINER_PORT: u16 = 8080;
/// The runtime of models candle cannot run: MLflow's scoring server in Petri's image.
const MLFLOW_SERVER: &str = include_str!("mlflow_server.py");

/// Deployments on the queue. Cheap to clone.
#[derive(Clone)]
pub struct Serving {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Queue,
    registry: Registry,
    artifacts: Artifacts,
    keys: Arc<ServiceKeys>,
    /// The program a replica runs (`petri`, with `model-server`).
    exe: PathBuf,
    /// The image MLflow models are served in (Petri's).
    image: String,
    /// Where versions' files are put for replicas to load: `<home>/deployments/<model>/<v>`.
    root: PathBuf,
    path: PathBuf,
    conn: Mutex<Connection>,
    table: Mutex<Table>,
    turn: AtomicUsize,
    http: petri_queue::service::Services,
    moving: Mutex<std::collections::HashSet<String>>,
    stats: crate::stats::Stats,
    /// The client that sends batches to replicas (kept-alive connections).
    batches: Client<HttpConnector, Full<Bytes>>,
}

/// The path of a replica's batch route: feature vectors in, probabilities out (f32, little
/// endian, row after row; the row count in [`ROWS_HEADER`]).
pub const BATCH_PATH: &str = "/v2/batch";
/// The header that carries a batch's row count.
pub const ROWS_HEADER: &str = "petri-rows";
/// How long a replica may take over one batch before it counts as gone.
const BATCH_LIMIT: Duration = Duration::from_secs(30);

/// The network of one version, run by its replicas over HTTP: each batch goes to a ready replica
/// of that version, in turn; one that does not answer is taken out of the rotation (probed until
/// it answers again) and the batch tried on the next.
struct Remote {
    inner: std::sync::Weak<Inner>,
    name: Arc<str>,
    routes: Arc<[Route]>,
    /// Batches in flight, by route: a batch goes to an idle replica when there is one.
    busy: Arc<[AtomicUsize]>,
    turn: AtomicUsize,
}

impl Engine for Remote {
    fn parallel(&self) -> usize {
        // One batch at a time per replica, as a Triton model instance runs: the next batch
        // forms while it runs, so batches grow with the load. (Two in flight gave smaller
        // batches, more CPU per request and a longer tail: a replica serves on one thread and
        // took the second only after the first; bench/RESULTS.md, P3.)
        self.routes.len().max(1)
    }

    fn run(&self, features: Vec<f32>, rows: usize) -> Ran {
        let inner = self.inner.clone();
        let name = self.name.clone();
        let routes = self.routes.clone();
        let busy = self.busy.clone();
        let first = first_idle(self.turn.fetch_add(1, Ordering::Relaxed), &busy);
        Box::pin(async move {
            let Some(inner) = inner.upgrade() else {
                return Err(RunError::Unavailable("the daemon is stopping".into()));
            };
            let s = Serving { inner };
            let body = Bytes::from(batch::to_bytes(&features));
            let mut last = None;
            for k in 0..routes.len() {
                let i = (first + k) % routes.len();
                let r = &routes[i];
                if !s.is_ready(r.job) {
                    continue;
                }
                let _in_flight = batch::Counted::enter(&busy[i]);
                match s.send_batch(r, body.clone(), rows).await {
                    Ok(p) => return Ok(p),
                    Err(RunError::Unavailable(why)) => {
                        s.unreachable(r.job);
                        last = Some(why);
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(RunError::Unavailable(match last {
                Some(why) => {
                    format!("the replica of `{name}` did not answer ({why}); it is being restarted")
                }
                None => format!(
                    "deployment `{name}` has no replica ready (starting, or restarting after \
                     a crash); `petri model endpoints` says why"
                ),
            }))
        })
    }
}

/// The route a batch tries first: the next in turn with no batch in flight, or the next in turn
/// when every one has a batch.
fn first_idle(turn: usize, busy: &[AtomicUsize]) -> usize {
    let n = busy.len().max(1);
    (0..n)
        .map(|k| (turn + k) % n)
        .find(|&i| busy.get(i).is_some_and(|b| b.load(Ordering::Relaxed) == 0))
        .unwrap_or(turn % n)
}

/// The key a replica's job gets at launch (never stored): derived from the home's service key
/// and the job's id.
pub fn launch_hook(keys: Arc<ServiceKeys>) -> LaunchHook {
    Arc::new(move |job: &petri_domain::Job| match &job.origin {
        Origin::Deployment { .. } => {
            vec![(
                KEY_ENV.to_string(),
                keys.token(PURPOSE, &job.id.to_string()),
            )]
        }
        _ => Vec::new(),
    })
}

fn free_port() -> Result<u16> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ServingError::Io(format!("finding a free port: {e}")))
}

impl Serving {
    /// Opens `<home>/serving.db` and starts watching the replicas it names (they outlive a
    /// daemon restart) and the aliases deployments follow.
    pub fn open(
        home: &Path,
        queue: Queue,
        registry: Registry,
        artifacts: Artifacts,
        keys: Arc<ServiceKeys>,
        exe: PathBuf,
        image: String,
    ) -> Result<Serving> {
        let path = home.join("serving.db");
        let conn = db::open(&path)?;
        // MLflow models' server, for container replicas (mounted read-only).
        let runtime = home.join("deployments").join("runtime");
        std::fs::create_dir_all(&runtime)
            .and_then(|()| std::fs::write(runtime.join("mlflow_server.py"), MLFLOW_SERVER))
            .map_err(|e| ServingError::Io(format!("{}: {e}", runtime.display())))?;
        let s = Serving {
            inner: Arc::new(Inner {
                queue,
                registry,
                artifacts,
                keys,
                exe,
                image,
                root: home.join("deployments"),
                path,
                conn: Mutex::new(conn),
                table: Mutex::default(),
                turn: AtomicUsize::new(0),
                http: petri_queue::service::Services::default(),
                moving: Mutex::default(),
                stats: crate::stats::Stats::default(),
                batches: Client::builder(TokioExecutor::new()).build({
                    // A batch goes out when written.
                    let mut c = HttpConnector::new();
                    c.set_nodelay(true);
                    c
                }),
            }),
        };
        Ok(s)
    }

    /// Starts the background work: replicas probed until ready (again after each restart),
    /// aliases followed every 2 s.
    pub fn start(&self) {
        let stored = self.stored_all().unwrap_or_default();
        for d in &stored {
            self.set_routes(d);
            for r in &d.replicas {
                self.probe(r.job, r.port, r.container);
            }
        }
        // A replica that stops running is out of the rotation until it answers again.
        let mut events = self.inner.queue.subscribe();
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            while let Ok(ev) = events.recv().await {
                let petri_domain::Event::JobChanged(c) = ev else {
                    continue;
                };
                let Some(inner) = weak.upgrade() else { return };
                let s = Serving { inner };
                let Some((port, container)) = s.replica_of(c.id) else {
                    continue;
                };
                s.set_ready(c.id, false);
                if c.state == JobState::Running {
                    s.probe(c.id, port, container);
                }
            }
        });
        petri_queue::service::Services::every(
            Duration::from_secs(2),
            Arc::downgrade(&self.inner),
            |inner| {
                let s = Serving { inner };
                async move { s.follow_aliases().await }
            },
        );
    }

    fn db<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let c = self
            .inner
            .conn
            .lock()
            .map_err(|_| ServingError::Io("the serving database lock was poisoned".into()))?;
        f(&c).map_err(|e| db::db_error(&self.inner.path, e))
    }

    fn stored_all(&self) -> Result<Vec<Stored>> {
        self.db(db::all)
    }

    fn stored(&self, name: &str) -> Result<Stored> {
        self.db(|c| db::get(c, name))?
            .ok_or_else(|| ServingError::NotFound(name.to_string()))
    }

    /// A replica's port (inside its container, for a container) and whether it is one.
    fn replica_of(&self, job: JobId) -> Option<(u16, bool)> {
        let t = self.inner.table.lock().ok()?;
        t.by_name
            .values()
            .flatten()
            .find(|r| r.job == job)
            .map(|r| (r.addr.port(), r.container))
    }

    fn set_ready(&self, job: JobId, ready: bool) {
        if let Ok(mut t) = self.inner.table.lock() {
            t.ready.insert(job, ready);
        }
    }

    fn is_ready(&self, job: JobId) -> bool {
        self.inner
            .table
            .lock()
            .is_ok_and(|t| t.ready.get(&job).copied().unwrap_or(false))
    }

    fn set_routes(&self, d: &Stored) {
        let routes = d
            .replicas
            .iter()
            .map(|r| Route {
                job: r.job,
                addr: SocketAddr::from(([127, 0, 0, 1], r.port)),
                authorization: format!(
                    "Bearer {}",
                    self.inner.keys.token(PURPOSE, &r.job.to_string())
                ),
                version: r.version,
                container: r.container,
            })
            .collect::<Vec<_>>();
        let front = self.front_for(d, &routes);
        if let Ok(mut t) = self.inner.table.lock() {
            t.by_name.insert(d.name.clone(), routes);
            match front {
                Some(f) => t.fronts.insert(d.name.clone(), f),
                None => t.fronts.remove(&d.name),
            };
        }
    }

    /// The front of a deployment of Petri's format, or of an ONNX graph that computes its rows
    /// apart (a graph that mixes them, or an MLflow model, has none: its requests are forwarded
    /// whole to a replica).
    fn front_for(&self, d: &Stored, routes: &[Route]) -> Option<Arc<ModelServer>> {
        if routes.is_empty() || routes.iter().any(|r| r.container) {
            return None;
        }
        let dir = self.inner.root.join(&d.model).join(d.version.to_string());
        let graph = if dir.join("model.json").exists() {
            None
        } else {
            match petri_ml::GraphIo::read(&dir) {
                Ok(Some(io)) if io.row_shapes.is_some() => Some(io),
                Ok(Some(_)) => return None,
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(deployment = %d.name, error = %e, "the graph's check could not be read; requests go to the replicas whole");
                    return None;
                }
            }
        };
        let spec = match &graph {
            Some(_) => None,
            None if dir.join("model.json").exists() => {
                match petri_ml::spec::ModelSpec::load(&dir) {
                    Ok(spec) => Some(spec),
                    Err(e) => {
                        tracing::warn!(deployment = %d.name, error = %e, "model.json could not be read; requests go to the replicas whole");
                        return None;
                    }
                }
            }
            None => return None,
        };
        let engine = Remote {
            inner: Arc::downgrade(&self.inner),
            name: d.name.as_str().into(),
            routes: routes.into(),
            busy: routes.iter().map(|_| AtomicUsize::new(0)).collect(),
            turn: AtomicUsize::new(0),
        };
        let limits = BatchLimits {
            max_batch: d.max_batch,
            max_delay: Duration::from_micros(d.max_delay_us),
        };
        let version = d.version.to_string();
        Some(Arc::new(match (graph, spec) {
            (Some(io), _) => {
                ModelServer::graph_front(&d.name, &version, io, Arc::new(engine), limits)
            }
            (None, Some(spec)) => {
                ModelServer::front(&d.name, &version, Arc::new(spec), Arc::new(engine), limits)
            }
            (None, None) => return None,
        }))
    }

    /// The front of deployment `name`, when it has one (Petri's format, or a graph that
    /// computes its rows apart).
    pub fn front(&self, name: &str) -> Option<Arc<ModelServer>> {
        self.inner.table.lock().ok()?.fronts.get(name).cloned()
    }

    /// Sends one batch to a replica: its probabilities, row after row.
    async fn send_batch(
        &self,
        r: &Route,
        body: Bytes,
        rows: usize,
    ) -> std::result::Result<Vec<Vec<f32>>, RunError> {
        let req = hyper::Request::post(format!("http://{}{BATCH_PATH}", r.addr))
            .header("authorization", &r.authorization)
            .header(ROWS_HEADER, rows.to_string())
            .header("content-type", "application/octet-stream")
            .body(Full::new(body))
            .map_err(|e| RunError::Failed(e.to_string()))?;
        let exchange = async {
            let resp = self
                .inner
                .batches
                .request(req)
                .await
                .map_err(|e| RunError::Unavailable(e.to_string()))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| RunError::Unavailable(e.to_string()))?
                .to_bytes();
            Ok::<_, RunError>((status, body))
        };
        let (status, body) =
            tokio::time::timeout(BATCH_LIMIT, exchange)
                .await
                .map_err(|_| {
                    RunError::Unavailable(format!("no answer within {} s", BATCH_LIMIT.as_secs()))
                })??;
        if status.is_server_error() && status.as_u16() != 500 {
            return Err(RunError::Unavailable(format!("it answered {status}")));
        }
        if !status.is_success() {
            let why = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(RunError::Failed(format!(
                "the replica answered {status}: {why}"
            )));
        }
        let values = batch::from_bytes(&body)
            .ok_or_else(|| RunError::Failed("the replica's answer is not f32 values".into()))?;
        batch::rows_of_flat(values, rows)
    }

    /// Asks a replica `/v2/health/ready` every 100 ms until it answers (or its job ends, or
    /// [`START_LIMIT`] passes); then it takes requests.
    fn probe(&self, job: JobId, port: u16, container: bool) {
        let s = self.clone();
        tokio::spawn(async move {
            let _ = s.wait_ready(job, port, container).await;
        });
    }

    async fn wait_ready(
        &self,
        job: JobId,
        port: u16,
        container: bool,
    ) -> std::result::Result<(), String> {
        let mut addr = SocketAddr::from(([127, 0, 0, 1], port));
        let auth = format!(
            "Bearer {}",
            self.inner.keys.token(PURPOSE, &job.to_string())
        );
        let began = std::time::Instant::now();
        while began.elapsed() < START_LIMIT {
            match self.inner.queue.stored_job(job).await {
                Ok(j) if j.state.is_terminal() => {
                    return Err(j.reason.unwrap_or_else(|| format!("it ended {}", j.state)));
                }
                Ok(j) if j.state == JobState::Running => {
                    if container {
                        // Where Docker published the port, for this attempt.
                        let attempt = j.runs.last().map(|r| r.attempt).unwrap_or(1);
                        match self.inner.queue.endpoint(job, attempt, port).await {
                            Some(a) => addr = a,
                            None => {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                        }
                    }
                    let asked = self
                        .inner
                        .http
                        .get_json(addr, "/v2/health/ready", ("Authorization", &auth))
                        .await;
                    if asked.is_ok() {
                        if let Ok(mut t) = self.inner.table.lock() {
                            t.published.insert(job, addr);
                        }
                        self.set_ready(job, true);
                        tracing::info!(%job, %addr, "a model replica is ready");
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "it did not answer ready within {} s",
            START_LIMIT.as_secs()
        ))
    }

    /// The version `selector` names now.
    async fn resolve(&self, model: &str, selector: &Selector) -> Result<i64> {
        let r = &self.inner.registry;
        let v = match selector {
            Selector::Alias(a) => r.version_by_alias(model, a).await?.version,
            Selector::Version(v) => r.get_version(model, *v).await?.version,
            Selector::Latest => r
                .get_model(model)
                .await?
                .latest_versions
                .first()
                .map(|v| v.version.clone())
                .ok_or_else(|| ServingError::Invalid(format!("model `{model}` has no versions")))?,
        };
        v.parse()
            .map_err(|_| ServingError::Io(format!("the registry answered version `{v}`")))
    }

    /// Puts a version's files where replicas load them and, for Petri's format, loads it once
    /// here, so a model that cannot be served is refused now with what is wrong. MLflow models
    /// of other flavours run in Petri's image (MLflow's scoring server), checked there.
    async fn prepare(&self, model: &str, version: i64) -> Result<(PathBuf, Runtime)> {
        let detail = self.inner.registry.version_detail(model, version).await?;
        let runtime = match detail.runtime.as_str() {
            "native" => Runtime::Native,
            "container" => Runtime::Container,
            _ => {
                return Err(ServingError::Unsupported(format!(
                    "{model} version {version} is plain files (format `{}`), not a model Petri \
                     can run: Petri serves its own format (model.json + model.safetensors) and \
                     MLflow models (an MLmodel file)",
                    detail.format
                )));
            }
        };
        let dir = self.inner.root.join(model).join(version.to_string());
        let files = detail.files.clone();
        let artifacts = self.inner.artifacts.clone();
        let target = dir.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            if target.exists() {
                return Ok(());
            }
            let tmp = target.with_extension("partial");
            let _ = std::fs::remove_dir_all(&tmp);
            for f in &files {
                let d: Digest = f.digest.parse().map_err(|e: String| ServingError::Io(e))?;
                let dest = tmp.join(&f.path);
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| ServingError::Io(format!("{}: {e}", parent.display())))?;
                }
                artifacts.materialize(&d, &dest)?;
            }
            std::fs::rename(&tmp, &target)
                .map_err(|e| ServingError::Io(format!("{}: {e}", target.display())))?;
            Ok(())
        })
        .await
        .map_err(|e| ServingError::Io(e.to_string()))??;
        if runtime == Runtime::Native {
            let check = dir.clone();
            tokio::task::spawn_blocking(move || {
                let onnx = check.join(petri_ml::onnx::ONNX_FILE).exists()
                    && !check.join("model.json").exists();
                if onnx {
                    // What the graph takes and answers, kept beside it for the daemon's front.
                    let graph = petri_ml::OnnxModel::load(&check, &petri_ml::Device::Cpu)?;
                    graph.io().write(&check)
                } else {
                    petri_ml::Mlp::load(&check, &petri_ml::Device::Cpu).map(|_| ())
                }
            })
            .await
            .map_err(|e| ServingError::Io(e.to_string()))?
            .map_err(|e| {
                ServingError::InvalidModel(format!(
                    "{model} version {version} cannot be loaded: {e}"
                ))
            })?;
        }
        Ok((dir, runtime))
    }

    /// Submits `n` replicas of `version` (files in `dir`).
    async fn start_replicas(
        &self,
        d: &Stored,
        dir: &Path,
        runtime: Runtime,
        version: i64,
        n: usize,
    ) -> Result<Vec<StoredReplica>> {
        let mut out = Vec::new();
        for i in 0..n {
            let resources = petri_domain::Resources {
                cpus: Some(0.5),
                gpu_memory: d.gpu_memory,
                ..Default::default()
            };
            let (spec, port) = match runtime {
                Runtime::Native => {
                    let port = free_port()?;
                    let spec = JobSpec {
                        command: Some(vec![
                            self.inner.exe.display().to_string(),
                            "model-server".into(),
                            "--model".into(),
                            dir.display().to_string(),
                            "--name".into(),
                            d.name.clone(),
                            "--version".into(),
                            version.to_string(),
                            "--listen".into(),
                            format!("127.0.0.1:{port}"),
                            "--max-batch".into(),
                            d.max_batch.to_string(),
                            "--max-delay-us".into(),
                            d.max_delay_us.to_string(),
                        ]),
                        workdir: Some(dir.to_path_buf()),
                        // A small network answers fastest on one thread.
                        env: [("RAYON_NUM_THREADS".to_string(), "1".to_string())].into(),
                        ..JobSpec::default()
                    };
                    (spec, port)
                }
                Runtime::Container => {
                    let runtime_dir = self.inner.root.join("runtime");
                    let spec = JobSpec {
                        image: Some(self.inner.image.clone()),
                        command: Some(vec![
                            "python".into(),
                            runtime_dir.join("mlflow_server.py").display().to_string(),
                            dir.display().to_string(),
                            d.name.clone(),
                            version.to_string(),
                            CONTAINER_PORT.to_string(),
                        ]),
                        workdir: Some(runtime_dir),
                        mounts: vec![petri_domain::spec::Mount {
                            source: dir.to_path_buf(),
                            target: None,
                            read_only: true,
                        }],
                        ports: vec![CONTAINER_PORT],
                        ..JobSpec::default()
                    };
                    (spec, CONTAINER_PORT)
                }
            };
            let spec = JobSpec {
                name: Some(format!("serve {} v{version} #{i}", d.name)),
                resources,
                retries: RESTART,
                ..spec
            };
            let by = Submitter {
                origin: Origin::Deployment { id: d.name.clone() },
                user: d.user.clone(),
            };
            let job = self
                .inner
                .queue
                .submit(vec![spec], by)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| ServingError::Io("the queue made no job".into()))?;
            out.push(StoredReplica {
                job: job.id,
                port,
                version,
                container: runtime == Runtime::Container,
            });
        }
        Ok(out)
    }

    /// `petri model serve`: a new deployment.
    pub async fn serve(&self, req: ServeRequest, user: &str) -> Result<Deployment> {
        let (model, selector) = parse_ref(&req.model)?;
        let name = req.name.clone().unwrap_or_else(|| model.clone());
        check_name(&name)?;
        let replicas = req.replicas.unwrap_or(1);
        if !(1..=16).contains(&replicas) {
            return Err(ServingError::Invalid(format!(
                "replicas must be between 1 and 16, not {replicas}"
            )));
        }
        let max_batch = req.max_batch.unwrap_or(64);
        if !(1..=65_536).contains(&max_batch) {
            return Err(ServingError::Invalid(format!(
                "max_batch must be between 1 and 65536, not {max_batch}"
            )));
        }
        let max_delay_us = req.max_delay.map(|m| m.0.saturating_mul(1000)).unwrap_or(0);
        if max_delay_us > 1_000_000 {
            return Err(ServingError::Invalid(
                "max_delay must be at most 1s (a request waits that long for others)".into(),
            ));
        }
        if self.db(|c| db::get(c, &name))?.is_some() {
            return Err(ServingError::NameTaken(name));
        }
        let version = self.resolve(&model, &selector).await?;
        let (dir, runtime) = self.prepare(&model, version).await?;
        let mut d = Stored {
            name: name.clone(),
            model,
            selector: selector.text(),
            version,
            replicas: vec![],
            gpu_memory: req.gpu_memory,
            max_batch,
            max_delay_us,
            reason: None,
            refused_version: None,
            user: user.to_string(),
            created_ms: petri_queue::now_ms(),
        };
        d.replicas = self
            .start_replicas(&d, &dir, runtime, version, replicas as usize)
            .await?;
        self.db(|c| db::put(c, &d))?;
        self.set_routes(&d);
        for r in &d.replicas {
            self.probe(r.job, r.port, r.container);
        }
        tracing::info!(deployment = %d.name, model = %d.model, version, "deployment made");
        self.describe(d).await
    }

    /// The traffic the daemon forwarded, by deployment.
    pub fn stats(&self) -> &crate::stats::Stats {
        &self.inner.stats
    }

    /// `petri model unserve`: its replicas stop (in-flight requests finish) and it is gone.
    pub async fn unserve(&self, name: &str) -> Result<Deployment> {
        let d = self.stored(name)?;
        for r in &d.replicas {
            let _ = self
                .inner
                .queue
                .stop_job(r.job, Some(format!("deployment {name} was unserved")))
                .await;
        }
        self.db(|c| db::delete(c, name))?;
        self.inner.stats.forget(name);
        if let Ok(mut t) = self.inner.table.lock() {
            t.by_name.remove(name);
            t.fronts.remove(name);
            for r in &d.replicas {
                t.ready.remove(&r.job);
            }
        }
        let mut shown = self.describe(d).await?;
        shown.state = "stopped".into();
        for r in &mut shown.replicas {
            r.state = "stopped".into();
        }
        Ok(shown)
    }

    /// Every deployment.
    pub async fn list(&self) -> Result<Vec<Deployment>> {
        let mut out = Vec::new();
        for d in self.stored_all()? {
            out.push(self.describe(d).await?);
        }
        Ok(out)
    }

    /// One deployment.
    pub async fn get(&self, name: &str) -> Result<Deployment> {
        let d = self.stored(name)?;
        self.describe(d).await
    }

    async fn describe(&self, d: Stored) -> Result<Deployment> {
        let mut replicas = Vec::new();
        let mut reasons = Vec::new();
        for r in &d.replicas {
            let state = match self.inner.queue.stored_job(r.job).await {
                Ok(j) => match j.state {
                    JobState::Running if self.is_ready(r.job) => "ready",
                    JobState::Running if !j.runs.is_empty() && j.runs.len() > 1 => "restarting",
                    JobState::Running | JobState::Queued | JobState::Held => "starting",
                    JobState::Cancelled => "stopped",
                    _ => {
                        if let Some(why) = &j.reason {
                            reasons.push(why.clone());
                        }
                        "failed"
                    }
                },
                Err(_) => "failed",
            };
            replicas.push(Replica {
                job: r.job,
                port: r.port,
                version: r.version,
                state: state.into(),
            });
        }
        let ready = replicas.iter().filter(|r| r.state == "ready").count();
        let state = if ready == replicas.len() && ready > 0 {
            "ready"
        } else if ready > 0 {
            "degraded"
        } else if replicas.iter().all(|r| r.state == "failed") {
            "failed"
        } else {
            "starting"
        };
        let reason = d.reason.clone().or_else(|| reasons.first().cloned());
        Ok(Deployment {
            infer_path: format!("/v2/models/{}/infer", d.name),
            invocations_path: format!("/v2/models/{}/invocations", d.name),
            infer_url: None,
            name: d.name,
            model: d.model,
            selector: d.selector,
            version: d.version,
            replicas,
            gpu_memory: d.gpu_memory,
            max_batch: d.max_batch,
            max_delay: Millis(d.max_delay_us / 1000),
            state: state.into(),
            reason,
            user: d.user,
            created_ms: d.created_ms,
        })
    }

    /// A ready replica of `name`, in turn: `NotFound` when there is no such deployment,
    /// `NotReady` (with why) while none answers.
    pub fn route(&self, name: &str) -> Result<Route> {
        let t = self
            .inner
            .table
            .lock()
            .map_err(|_| ServingError::Io("the routing table lock was poisoned".into()))?;
        let Some(all) = t.by_name.get(name) else {
            return Err(ServingError::NotFound(name.to_string()));
        };
        let ready: Vec<&Route> = all
            .iter()
            .filter(|r| t.ready.get(&r.job).copied().unwrap_or(false))
            .filter(|r| !r.container || t.published.contains_key(&r.job))
            .collect();
        if ready.is_empty() {
            return Err(ServingError::NotReady(format!(
                "deployment `{name}` has no replica ready yet (starting, or restarting after a \
                 crash); `petri model endpoints` says why"
            )));
        }
        let i = self.inner.turn.fetch_add(1, Ordering::Relaxed) % ready.len();
        let mut route = ready[i].clone();
        if let Some(addr) = t.published.get(&route.job) {
            route.addr = *addr;
        }
        Ok(route)
    }

    /// The proxy could not reach a replica: out of the rotation until it answers again.
    pub fn unreachable(&self, job: JobId) {
        self.set_ready(job, false);
        if let Some((port, container)) = self.replica_of(job) {
            self.probe(job, port, container);
        }
    }

    /// Moves deployments whose alias moved.
    async fn follow_aliases(&self) {
        let Ok(all) = self.stored_all() else { return };
        for d in all {
            let Selector::Alias(alias) = Selector::parse(&d.selector) else {
                continue;
            };
            let Ok(v) = self.resolve(&d.model, &Selector::Alias(alias)).await else {
                continue;
            };
            if v == d.version || d.refused_version == Some(v) {
                continue;
            }
            {
                let Ok(mut moving) = self.inner.moving.lock() else {
                    return;
                };
                if !moving.insert(d.name.clone()) {
                    continue;
                }
            }
            let s = self.clone();
            tokio::spawn(async move {
                let name = d.name.clone();
                s.swap(d, v).await;
                if let Ok(mut moving) = s.inner.moving.lock() {
                    moving.remove(&name);
                }
            });
        }
    }

    /// Hot swap: the new version's replicas start beside the old ones; once every one answers
    /// ready, routing switches and the old ones stop (finishing what they hold). A version that
    /// fails leaves the old one serving, and says why.
    async fn swap(&self, d: Stored, version: i64) {
        let name = d.name.clone();
        let refuse = |why: String| {
            let mut d = d.clone();
            async move {
                tracing::warn!(deployment = %d.name, version, %why, "a new version was not taken");
                d.reason = Some(why);
                d.refused_version = Some(version);
                let _ = self.db(|c| db::put(c, &d));
            }
        };
        let (dir, runtime) = match self.prepare(&d.model, version).await {
            Ok(prepared) => prepared,
            Err(e) => {
                refuse(format!("version {version} was not taken: {e}")).await;
                return;
            }
        };
        let new = match self
            .start_replicas(&d, &dir, runtime, version, d.replicas.len())
            .await
        {
            Ok(new) => new,
            Err(e) => {
                refuse(format!("version {version} was not started: {e}")).await;
                return;
            }
        };
        for r in &new {
            if let Err(why) = self.wait_ready(r.job, r.port, r.container).await {
                for n in &new {
                    let _ = self
                        .inner
                        .queue
                        .stop_job(n.job, Some(format!("version {version} did not start")))
                        .await;
                }
                refuse(format!("version {version} did not start: {why}")).await;
                return;
            }
        }
        // Every new replica answers: switch, then let the old ones go.
        let mut moved = d.clone();
        moved.replicas = new;
        moved.version = version;
        moved.reason = None;
        moved.refused_version = None;
        if self.db(|c| db::put(c, &moved)).is_err() {
            return;
        }
        let old = self.front(&name);
        self.set_routes(&moved);
        tracing::info!(deployment = %name, from = d.version, to = version, "deployment moved to a new version");
        // What the old front holds is answered by the old replicas before they stop.
        if let Some(old) = old {
            let began = std::time::Instant::now();
            while old.pending() > 0 && began.elapsed() < BATCH_LIMIT {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for r in &d.replicas {
            let _ = self
                .inner
                .queue
                .stop_job(r.job, Some(format!("{name} moved to version {version}")))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_goes_to_an_idle_replica_first_and_in_turn() {
        let busy = |b: &[usize]| b.iter().map(|&n| AtomicUsize::new(n)).collect::<Vec<_>>();
        // In turn while all are idle.
        assert_eq!(first_idle(0, &busy(&[0, 0, 0])), 0);
        assert_eq!(first_idle(4, &busy(&[0, 0, 0])), 1);
        // The next idle one, past a busy one, around the end.
        assert_eq!(first_idle(0, &busy(&[1, 0, 0])), 1);
        assert_eq!(first_idle(2, &busy(&[0, 1, 1])), 0);
        // All busy: in turn (the replica queues it).
        assert_eq!(first_idle(5, &busy(&[1, 2, 1])), 2);
        assert_eq!(first_idle(3, &busy(&[1])), 0);
    }

    #[test]
    fn references_name_a_model_and_what_to_follow() {
        assert_eq!(
            parse_ref("iris@champion").unwrap(),
            ("iris".into(), Selector::Alias("champion".into()))
        );
        assert_eq!(
            parse_ref("iris/3").unwrap(),
            ("iris".into(), Selector::Version(3))
        );
        assert_eq!(
            parse_ref("iris").unwrap(),
            ("iris".into(), Selector::Latest)
        );
        assert!(parse_ref("iris/x").is_err());
        assert!(parse_ref("@a").is_err());
        assert!(parse_ref("iris@").is_err());
        for s in ["@champion", "3", "latest"] {
            assert_eq!(Selector::parse(s).text(), s);
        }
        assert!(check_name("iris-v2.1").is_ok());
        assert!(check_name("a/b").is_err());
        assert!(check_name("").is_err());
    }
}
