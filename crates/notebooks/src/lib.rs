//! Notebooks: a Jupyter server in a container, run as a job of the queue (so its GPU memory comes
//! from the same budget as jobs', and a restart re-adopts it like any container job), reached
//! through the daemon's proxy, stopped when idle.
//!
//! The Jupyter token never leaves the daemon: it is derived from a key in the home and the
//! notebook's id (so it is never stored), given to the container at launch, and added by the proxy
//! to every request. Browsers sign in to a notebook with a one-time link (`petri notebook open`)
//! that sets a session cookie scoped to `/notebooks/`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use petri_domain::{
    ErrorCode, Event, Job, JobId, JobSpec, JobState, Millis, Mount, Notebook, NotebookChange,
    NotebookLink, NotebookRequest, NotebookState, Origin, Resources,
};
use petri_queue::service::{RESTART, Services, Watch};
use petri_queue::{LaunchHook, Queue, QueueError, Submitter};
use petri_store::{Store, StoredNotebook};
use serde::{Deserialize, Serialize};

pub use petri_queue::ServiceKeys as NotebookKeys;

/// The purpose notebooks' Jupyter tokens are derived for.
const NOTEBOOK: &str = "petri-notebook";

/// The recipe of Petri's default image.
const IMAGE_RECIPE: &str = include_str!("../../../packaging/images/python/build.sh");

/// The port Jupyter listens on inside its container.
pub const JUPYTER_PORT: u16 = 8888;
/// A sign-in link works once, for this long.
const LINK_LIFETIME: Duration = Duration::from_secs(60);
/// A browser session for notebooks lasts this long.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

fn random_hex() -> String {
    let mut b = [0u8; 24];
    rand::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotebookSettings {
    /// The image notebooks start from unless told otherwise.
    pub image: String,
    /// A notebook with no kernel activity (and no GPU use) for this long is stopped. 0 turns
    /// culling off.
    pub idle_timeout: Millis,
    /// How often notebooks are checked for idleness.
    pub cull_every: Millis,
    /// Where notebooks are served: an address of their own, so that a notebook's pages never
    /// share an origin with the web UI (and cannot read its token). Default: the daemon's own
    /// address with a port the system picks.
    pub listen: Option<std::net::SocketAddr>,
}

impl Default for NotebookSettings {
    fn default() -> Self {
        NotebookSettings {
            image: "petri/python:3.11".into(),
            idle_timeout: Millis(60 * 60 * 1000),
            cull_every: Millis(60 * 1000),
            listen: None,
        }
    }
}

/// The secret that notebook tokens are derived from (mode 0600), in the home.
pub fn key_path(home: &Path) -> PathBuf {
    home.join("notebook.key")
}

/// What the queue adds to a notebook server's environment at launch: its Jupyter token,
/// derived from the key and the notebook's id, so that it is never stored.
pub fn launch_hook(keys: Arc<NotebookKeys>) -> LaunchHook {
    Arc::new(move |job: &Job| match &job.origin {
        Origin::Notebook { id } => vec![("JUPYTER_TOKEN".to_string(), keys.token(NOTEBOOK, id))],
        _ => Vec::new(),
    })
}

/// What a notebook asked for, as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Asked {
    image: String,
    #[serde(default)]
    gpu_memory: Option<petri_domain::ByteSize>,
    #[serde(default)]
    gpus: Option<u32>,
    #[serde(default)]
    cpus: Option<f64>,
    #[serde(default)]
    memory: Option<petri_domain::ByteSize>,
    workspace: PathBuf,
    #[serde(default)]
    mounts: Vec<Mount>,
    idle_timeout: Millis,
    /// Whose it is (empty in a notebook from before team mode: its first job's user).
    #[serde(default)]
    user: String,
}

/// Notebooks on the queue: Jupyter servers as service jobs, sign-in links, browser sessions,
/// idle culling. Cheap to clone.
#[derive(Clone)]
pub struct Notebooks {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Queue,
    settings: NotebookSettings,
    keys: Arc<NotebookKeys>,
    /// Writes of the notebooks table (jobs are written by the queue's engine alone).
    store: Mutex<Store>,
    services: Services,
    /// Sign-in codes: the notebook each is for, and when it was made.
    links: Mutex<HashMap<String, (String, Instant)>>,
    /// Browser sessions: the one notebook each signs in to, and since when.
    sessions: Mutex<HashMap<String, (String, Instant)>>,
    /// Starts go one at a time: two starts of one stopped notebook would both find it stopped
    /// and both queue a server.
    starting: tokio::sync::Mutex<()>,
}

impl Notebooks {
    /// Notebooks over `queue`, writing their table through `store`; culls idle ones every
    /// `settings.cull_every` for as long as a handle lives. `keys` must be the ones whose
    /// [`launch_hook`] the queue was started with.
    pub fn new(
        queue: Queue,
        store: Store,
        keys: Arc<NotebookKeys>,
        settings: NotebookSettings,
    ) -> Notebooks {
        let cull_every = if settings.idle_timeout.0 == 0 {
            Duration::ZERO
        } else {
            settings.cull_every.as_duration()
        };
        let inner = Arc::new(Inner {
            queue,
            settings,
            keys,
            store: Mutex::new(store),
            services: Services::default(),
            links: Mutex::default(),
            sessions: Mutex::default(),
            starting: tokio::sync::Mutex::new(()),
        });
        Services::every(cull_every, Arc::downgrade(&inner), |inner| async move {
            Notebooks { inner }.cull_idle().await
        });
        Notebooks { inner }
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let store = inner
                .store
                .lock()
                .map_err(|_| QueueError::Io("the notebook writer is poisoned".into()))?;
            f(&store)
        })
        .await
        .map_err(|e| QueueError::Io(format!("the notebook writer failed: {e}")))?
    }

    fn queue(&self) -> &Queue {
        &self.inner.queue
    }
}

/// Where the proxy sends a notebook's requests, and the token it adds.
pub struct Upstream {
    pub addr: SocketAddr,
    pub token: String,
}

fn is_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

fn not_found(name: &str) -> QueueError {
    QueueError::refused(
        ErrorCode::NotebookNotFound,
        format!("no notebook `{name}`; see `petri notebook ls`"),
    )
}

fn parse_settings(nb: &StoredNotebook) -> Result<Asked, QueueError> {
    serde_json::from_str(&nb.spec)
        .map_err(|e| QueueError::Io(format!("notebook {} is damaged: {e}", nb.name)))
}

impl Notebooks {
    async fn stored_notebook(&self, name: &str) -> Result<StoredNotebook, QueueError> {
        let n = name.to_string();
        self.queue()
            .read(move |s| Ok(s.notebooks()?.into_iter().find(|nb| nb.name == n)))
            .await?
            .ok_or_else(|| not_found(name))
    }

    /// Starts a notebook, or resumes a stopped one of the same name.
    pub async fn start(&self, req: NotebookRequest, user: &str) -> Result<Notebook, QueueError> {
        if !is_name(&req.name) {
            return Err(QueueError::refused(
                ErrorCode::InvalidSpec,
                format!(
                    "`{}` is not a notebook name: 1 to 63 letters, digits, - and _, starting with \
                     a letter or digit",
                    req.name
                ),
            ));
        }
        let _one_at_a_time = self.inner.starting.lock().await;
        let existing = self.stored_notebook(&req.name).await.ok();
        if let Some(job) = existing.as_ref().and_then(|nb| nb.job)
            && let Ok(j) = self.queue().stored_job(job).await
            && !j.state.is_terminal()
        {
            return Err(QueueError::refused(
                ErrorCode::NotebookNameTaken,
                format!(
                    "notebook `{}` is already {}; open it with `petri notebook open {}`, or pick \
                     another name",
                    req.name,
                    j.state.as_str(),
                    req.name
                ),
            ));
        }
        let defaults = &self.inner.settings;
        let earlier = existing.as_ref().map(parse_settings).transpose()?;
        let workspace = match (&req.workspace, &earlier) {
            (Some(w), _) => w.clone(),
            (None, Some(e)) => e.workspace.clone(),
            (None, None) => self.queue().home().root().join("notebooks").join(&req.name),
        };
        if let Some(w) = req.workspace.as_ref().filter(|w| !w.is_absolute()) {
            return Err(QueueError::refused(
                ErrorCode::InvalidSpec,
                format!("workspace `{}` must be an absolute path", w.display()),
            ));
        }
        if let Some(w) = &req.workspace {
            // A given folder is mounted into the container: the same rule as any mount.
            petri_queue::check_mount(w, &self.queue().mount_roots())
                .map_err(QueueError::Refused)?;
        }
        if req.workspace.is_none() && earlier.is_none() {
            std::fs::create_dir_all(&workspace).map_err(|e| {
                QueueError::Io(format!(
                    "creating the workspace {}: {e}",
                    workspace.display()
                ))
            })?;
            // On a shared machine the notebook runs as its user, who owns its workspace.
            if nix::unistd::geteuid().is_root()
                && let Some(u) = nix::unistd::User::from_name(user).ok().flatten()
                && !u.uid.is_root()
            {
                std::os::unix::fs::chown(&workspace, Some(u.uid.as_raw()), Some(u.gid.as_raw()))
                    .map_err(|e| {
                        QueueError::Io(format!(
                            "handing the workspace {} to {user}: {e}",
                            workspace.display()
                        ))
                    })?;
            }
        }
        let settings = Asked {
            image: req
                .image
                .clone()
                .or_else(|| earlier.as_ref().map(|e| e.image.clone()))
                .unwrap_or_else(|| defaults.image.clone()),
            gpu_memory: req
                .gpu_memory
                .or(earlier.as_ref().and_then(|e| e.gpu_memory)),
            gpus: req.gpus.or(earlier.as_ref().and_then(|e| e.gpus)),
            cpus: req.cpus.or(earlier.as_ref().and_then(|e| e.cpus)),
            memory: req.memory.or(earlier.as_ref().and_then(|e| e.memory)),
            workspace: workspace.clone(),
            mounts: if req.mounts.is_empty() {
                earlier
                    .as_ref()
                    .map(|e| e.mounts.clone())
                    .unwrap_or_default()
            } else {
                req.mounts.clone()
            },
            idle_timeout: req
                .idle_timeout
                .or(earlier.as_ref().map(|e| e.idle_timeout))
                .unwrap_or(defaults.idle_timeout),
            user: earlier
                .as_ref()
                .map(|e| e.user.clone())
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| user.to_string()),
        };
        let mut command = vec![
            "jupyter".to_string(),
            "lab".into(),
            "--ip=0.0.0.0".into(),
            format!("--port={JUPYTER_PORT}"),
            "--no-browser".into(),
            format!("--ServerApp.base_url=/notebooks/{}/", req.name),
            format!("--ServerApp.root_dir={}", workspace.display()),
            "--ServerApp.allow_remote_access=True".into(),
        ];
        if nix::unistd::getuid().is_root() {
            // The server runs as the daemon's user, so that the workspace stays the user's.
            command.push("--allow-root".into());
        }
        let id = existing
            .as_ref()
            .map(|nb| nb.id.clone())
            .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
        let spec = JobSpec {
            name: Some(format!("notebook:{}", req.name)),
            command: Some(command),
            workdir: Some(workspace),
            image: Some(settings.image.clone()),
            mounts: settings.mounts.clone(),
            ports: vec![JUPYTER_PORT],
            // A crashed server is started again, with backoff; a stop or a cull is final.
            retries: RESTART,
            resources: Resources {
                cpus: settings.cpus,
                memory: settings.memory,
                gpus: settings.gpus,
                gpu_memory: settings.gpu_memory,
                ..Default::default()
            },
            ..Default::default()
        };
        let text = serde_json::to_string(&settings)
            .map_err(|e| QueueError::Io(format!("notebook settings: {e}")))?;
        let created_at_ms = existing
            .as_ref()
            .map_or_else(petri_queue::now_ms, |nb| nb.created_at_ms);
        if existing.is_none() {
            let nb = StoredNotebook {
                id: id.clone(),
                name: req.name.clone(),
                spec: text.clone(),
                job: None,
                created_at_ms,
            };
            let inserted = self.write(move |s| Ok(s.insert_notebook(&nb)?)).await?;
            if !inserted {
                return Err(QueueError::refused(
                    ErrorCode::NotebookNameTaken,
                    format!("a notebook named `{}` was just created", req.name),
                ));
            }
        }
        let by = Submitter {
            origin: Origin::Notebook { id: id.clone() },
            user: user.to_string(),
        };
        let jobs = match self.queue().submit(vec![spec], by).await {
            Ok(jobs) => jobs,
            Err(e) => {
                if existing.is_none() {
                    let id = id.clone();
                    let _ = self.write(move |s| Ok(s.delete_notebook(&id)?)).await;
                }
                return Err(e);
            }
        };
        let job = jobs.first().map(|j| j.id);
        {
            let id = id.clone();
            self.write(move |s| Ok(s.update_notebook(&id, &text, job)?))
                .await?;
        }
        self.inner.services.forget(&req.name);
        self.announce_notebook(&req.name, NotebookState::Queued, None);
        if let Some(job) = job {
            self.watch_readiness(req.name.clone(), job);
        }
        self.get(&req.name).await
    }

    /// Asks a starting notebook's Jupyter whether it answers until it does (or its job ends), so
    /// that "running" is announced without anyone looking.
    fn watch_readiness(&self, name: String, job: JobId) {
        let this = self.clone();
        Services::watch_ready(self.queue().clone(), job, move |j| {
            let (this, name) = (this.clone(), name.clone());
            async move {
                let Ok(nb) = this.stored_notebook(&name).await else {
                    return Watch::Done;
                };
                if nb.job != Some(j.id) || this.probe_notebook(&nb, j.id, j.attempts).await {
                    return Watch::Done;
                }
                Watch::Again
            }
        });
    }

    fn announce_notebook(&self, name: &str, state: NotebookState, reason: Option<String>) {
        self.queue().publish(Event::NotebookChanged(NotebookChange {
            name: name.to_string(),
            state,
            reason,
        }));
    }

    /// Every notebook.
    pub async fn list(&self) -> Result<Vec<Notebook>, QueueError> {
        let stored = self.queue().read(|s| Ok(s.notebooks()?)).await?;
        let mut out = Vec::with_capacity(stored.len());
        for nb in stored {
            out.push(self.view(nb).await?);
        }
        Ok(out)
    }

    /// One notebook; a starting one is asked whether it answers yet.
    /// Whose the notebook `name` is: from its stored settings (no probe of Jupyter, unlike
    /// [`Notebooks::get`]); a notebook from before team mode is its job's user's.
    pub async fn owner(&self, name: &str) -> Result<String, QueueError> {
        let nb = self.stored_notebook(name).await?;
        let settings = parse_settings(&nb)?;
        if !settings.user.is_empty() {
            return Ok(settings.user);
        }
        Ok(match nb.job {
            Some(id) => self
                .queue()
                .stored_job(id)
                .await
                .map(|j| j.user)
                .unwrap_or_default(),
            None => String::new(),
        })
    }

    pub async fn get(&self, name: &str) -> Result<Notebook, QueueError> {
        let nb = self.stored_notebook(name).await?;
        self.view(nb).await
    }

    async fn view(&self, nb: StoredNotebook) -> Result<Notebook, QueueError> {
        let settings = parse_settings(&nb)?;
        let job = match nb.job {
            Some(id) => self.queue().stored_job(id).await.ok(),
            None => None,
        };
        let mut state = match job.as_ref().map(|j| j.state) {
            None => NotebookState::Stopped,
            Some(JobState::Queued | JobState::Held) => NotebookState::Queued,
            Some(JobState::Running) => NotebookState::Starting,
            Some(_) => NotebookState::Stopped,
        };
        let mut last_activity_ms = None;
        let mut gpu_indices = Vec::new();
        if state == NotebookState::Starting
            && let Some(j) = job.as_ref()
        {
            let id = j.id;
            let run = self
                .queue()
                .read(move |s| Ok(s.active_run(id)?))
                .await
                .ok()
                .flatten();
            if run.as_ref().is_some_and(|r| r.stop_intent.is_some()) {
                // A stop was asked for.
                state = NotebookState::Stopping;
            } else if self.is_ready(&nb.name, j.id, j.attempts)
                || self.probe_notebook(&nb, j.id, j.attempts).await
            {
                state = NotebookState::Running;
            }
            last_activity_ms = self.inner.services.last_activity(&nb.name);
            gpu_indices = run.map(|r| r.gpus).unwrap_or_default();
        }
        let reason = match (&state, &job) {
            (NotebookState::Stopped, Some(j)) => j.reason.clone().or_else(|| {
                j.exit_code
                    .map(|c| format!("the Jupyter server exited with code {c}"))
            }),
            _ => None,
        };
        let user = if settings.user.is_empty() {
            job.as_ref().map(|j| j.user.clone()).unwrap_or_default()
        } else {
            settings.user.clone()
        };
        Ok(Notebook {
            url: format!("/notebooks/{}/lab", nb.name),
            user,
            id: nb.id,
            name: nb.name,
            state,
            image: settings.image,
            workspace: settings.workspace,
            job: nb.job,
            gpu_memory: settings.gpu_memory,
            gpus: settings.gpus,
            gpu_indices,
            idle_timeout: settings.idle_timeout,
            last_activity_ms,
            reason,
            created_at_ms: nb.created_at_ms,
        })
    }

    /// Finds where the notebook's server listens and asks whether Jupyter answers.
    async fn probe_notebook(&self, nb: &StoredNotebook, job: JobId, attempt: u32) -> bool {
        let Some(addr) = self.endpoint_of(&nb.name, job, attempt).await else {
            return false;
        };
        let ok = self
            .jupyter_get(addr, nb, &format!("/notebooks/{}/api/status", nb.name))
            .await
            .is_ok();
        if ok && self.inner.services.mark_ready(&nb.name) {
            self.announce_notebook(&nb.name, NotebookState::Running, None);
        }
        ok
    }

    /// Whether this server (job, attempt) has answered already: then nobody needs to ask again.
    fn is_ready(&self, name: &str, job: JobId, attempt: u32) -> bool {
        self.inner.services.is_ready(name, job, attempt)
    }

    async fn endpoint_of(&self, name: &str, job: JobId, attempt: u32) -> Option<SocketAddr> {
        self.inner
            .services
            .endpoint(self.queue(), name, job, attempt, JUPYTER_PORT)
            .await
    }

    /// GET from a notebook's Jupyter (with its token), returning the JSON body.
    async fn jupyter_get(
        &self,
        addr: SocketAddr,
        nb: &StoredNotebook,
        path_and_query: &str,
    ) -> Result<serde_json::Value, String> {
        let auth = format!("token {}", self.inner.keys.token(NOTEBOOK, &nb.id));
        self.inner
            .services
            .get_json(addr, path_and_query, ("Authorization", &auth))
            .await
    }

    /// Queues a build of Petri's default image (the recipe in `packaging/images/python`, built
    /// into this binary) as a job of the queue: its log shows the progress, `cancel` stops it.
    /// Unless `force`, an image built from the same recipe is kept.
    pub async fn image_build(&self, force: bool, user: &str) -> Result<Job, QueueError> {
        let dir = self.queue().home().root().join("images");
        let script = dir.join("build-python.sh");
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&script, IMAGE_RECIPE))
            .map_err(|e| QueueError::Io(format!("writing {}: {e}", script.display())))?;
        let mut command = vec!["/bin/sh".to_string(), script.display().to_string()];
        if !force {
            command.push("--if-changed".into());
        }
        command.push(self.inner.settings.image.clone());
        let spec = JobSpec {
            name: Some(format!("image-build:{}", self.inner.settings.image)),
            command: Some(command),
            workdir: Some(dir),
            ..Default::default()
        };
        let by = Submitter {
            origin: Origin::Submission,
            user: user.to_string(),
        };
        let mut jobs = self.queue().submit(vec![spec], by).await?;
        jobs.pop()
            .ok_or_else(|| QueueError::Io("the build was not queued".into()))
    }

    /// Stops a notebook; its workspace stays, and `start` resumes it.
    pub async fn stop(&self, name: &str) -> Result<Notebook, QueueError> {
        self.stop_notebook(name, "stopped by a user".into()).await
    }

    async fn stop_notebook(&self, name: &str, reason: String) -> Result<Notebook, QueueError> {
        let nb = self.stored_notebook(name).await?;
        if let Some(job) = nb.job
            && let Ok(j) = self.queue().stored_job(job).await
            && !j.state.is_terminal()
        {
            self.queue().stop_job(job, Some(reason.clone())).await?;
            self.inner.services.forget(name);
            self.announce_notebook(name, NotebookState::Stopping, Some(reason));
        }
        self.view(nb).await
    }

    /// Forgets a stopped notebook. Its workspace folder is kept.
    pub async fn remove(&self, name: &str) -> Result<Notebook, QueueError> {
        let nb = self.stored_notebook(name).await?;
        let view = self.view(nb.clone()).await?;
        if view.state != NotebookState::Stopped {
            return Err(QueueError::refused(
                ErrorCode::InvalidState,
                format!(
                    "notebook `{name}` is running; stop it first with `petri notebook stop {name}`"
                ),
            ));
        }
        let id = nb.id.clone();
        self.write(move |s| Ok(s.delete_notebook(&id)?)).await?;
        Ok(view)
    }

    /// A one-time link that signs a browser in to the notebook.
    pub async fn link(&self, name: &str) -> Result<NotebookLink, QueueError> {
        let view = self.get(name).await?;
        if matches!(view.state, NotebookState::Stopped | NotebookState::Stopping) {
            return Err(QueueError::refused(
                ErrorCode::NotebookNotReady,
                format!(
                    "notebook `{name}` is not running; start it with `petri notebook start {name}`"
                ),
            ));
        }
        let code = random_hex();
        if let Ok(mut links) = self.inner.links.lock() {
            links.retain(|_, (_, t)| t.elapsed() < LINK_LIFETIME);
            links.insert(code.clone(), (name.to_string(), Instant::now()));
        }
        Ok(NotebookLink {
            url: format!("{}?petri_link={code}", view.url),
        })
    }

    /// Trades a sign-in link's code for a browser session (a cookie value) to the notebook
    /// `name` the link was made for; a link for another notebook is no use here.
    pub fn redeem_link(&self, code: &str, name: &str) -> Option<String> {
        let mut links = self.inner.links.lock().ok()?;
        if links.get(code).is_none_or(|(for_name, _)| for_name != name) {
            return None;
        }
        let (for_name, made) = links.remove(code)?;
        if made.elapsed() > LINK_LIFETIME {
            return None;
        }
        let session = random_hex();
        let mut sessions = self.inner.sessions.lock().ok()?;
        sessions.retain(|_, (_, t)| t.elapsed() < SESSION_LIFETIME);
        sessions.insert(session.clone(), (for_name, Instant::now()));
        Some(session)
    }

    /// Whether a browser session cookie is valid for the notebook `name` (a session signs in
    /// to the one notebook its link was for).
    pub fn session_valid(&self, session: &str, name: &str) -> bool {
        self.inner
            .sessions
            .lock()
            .ok()
            .and_then(|s| {
                s.get(session)
                    .map(|(n, t)| n == name && t.elapsed() < SESSION_LIFETIME)
            })
            .unwrap_or(false)
    }

    /// Where the proxy sends requests for notebook `name`.
    pub async fn upstream(&self, name: &str) -> Result<Upstream, QueueError> {
        let nb = self.stored_notebook(name).await?;
        let not_ready = || {
            QueueError::refused(
                ErrorCode::NotebookNotReady,
                format!(
                    "notebook `{name}` is not running; start it with `petri notebook start {name}`"
                ),
            )
        };
        let job = match nb.job {
            Some(id) => self.queue().stored_job(id).await?,
            None => return Err(not_ready()),
        };
        if job.state != JobState::Running {
            return Err(not_ready());
        }
        let addr = self
            .endpoint_of(name, job.id, job.attempts)
            .await
            .ok_or_else(not_ready)?;
        Ok(Upstream {
            addr,
            token: self.inner.keys.token(NOTEBOOK, &nb.id),
        })
    }

    /// One round of idle culling: a running notebook whose Jupyter saw no activity (no kernel
    /// busy, no request) for longer than its limit, and whose GPU shows no use, is stopped.
    pub async fn cull_idle(&self) {
        let Ok(stored) = self.queue().read(|s| Ok(s.notebooks()?)).await else {
            return;
        };
        let gpus = self.queue().gpus().await.ok();
        for nb in stored {
            let Some(job_id) = nb.job else { continue };
            let Ok(job) = self.queue().stored_job(job_id).await else {
                continue;
            };
            if job.state != JobState::Running || job.reason.is_some() {
                continue;
            }
            let Ok(settings) = parse_settings(&nb) else {
                continue;
            };
            if !self.is_ready(&nb.name, job.id, job.attempts)
                && !self.probe_notebook(&nb, job.id, job.attempts).await
            {
                continue;
            }
            let Some(addr) = self.endpoint_of(&nb.name, job.id, job.attempts).await else {
                continue;
            };
            let base = format!("/notebooks/{}/api", nb.name);
            let Ok(status) = self.jupyter_get(addr, &nb, &format!("{base}/status")).await else {
                continue;
            };
            let Ok(kernels) = self
                .jupyter_get(addr, &nb, &format!("{base}/kernels?no_track_activity=1"))
                .await
            else {
                continue;
            };
            let now = petri_queue::now_ms();
            let busy = kernels.as_array().is_some_and(|ks| {
                ks.iter()
                    .any(|k| k["execution_state"].as_str() == Some("busy"))
            });
            let gpu_busy = gpus.as_ref().is_some_and(|r| {
                r.gpus.iter().any(|g| {
                    g.utilization > 0
                        && g.holders
                            .iter()
                            .any(|h| h.job == Some(job.id) && h.used > 0)
                })
            });
            let last = status["last_activity"]
                .as_str()
                .and_then(parse_time_ms)
                .unwrap_or(now);
            let last = if busy || gpu_busy { now } else { last };
            self.inner.services.set_last_activity(&nb.name, last);
            let limit = settings.idle_timeout.0 as i64;
            if limit > 0 && now - last >= limit {
                let reason = format!(
                    "stopped after {} without activity (no kernel activity, no GPU use)",
                    Millis((now - last) as u64)
                );
                tracing::info!(notebook = %nb.name, "{reason}");
                let _ = self.stop_notebook(&nb.name, reason).await;
            }
        }
    }
}

/// Milliseconds since the epoch of an RFC 3339 time such as Jupyter's `last_activity`.
fn parse_time_ms(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s.trim_end_matches('Z').get(..19)?).ok()?;
    let base = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64;
    // Fractions of a second, if any.
    let frac = s
        .get(19..)
        .and_then(|f| f.strip_prefix('.'))
        .map(|f| f.trim_end_matches('Z'))
        .map(|f| f.chars().take(3).collect::<String>())
        .and_then(|f| format!("{f:0<3}").parse::<i64>().ok())
        .unwrap_or(0);
    Some(base + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_times() {
        assert!(is_name("mnist-2"));
        assert!(!is_name("-x"));
        assert!(!is_name("a/b"));
        assert!(!is_name(""));
        assert_eq!(parse_time_ms("1970-01-01T00:01:40.250000Z"), Some(100_250));
        assert_eq!(parse_time_ms("1970-01-01T00:01:40Z"), Some(100_000));
    }
}
