//! The daemon: wiring only. It loads the settings, takes the home's lock, opens the database,
//! builds the table of executors by target (`local`, `docker`), starts the queue with the launch
//! hooks of the capabilities, and hands out one handle per capability. It knows no HTTP
//! (`petri-api` puts its routes in front) and holds no capability logic: that lives in the
//! capability crates (`queue`, `notebooks`, `accounts`), which never depend on this one.

mod settings;

use std::fs::File;
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};
use petri_accounts::Accounts;
use petri_domain::{ErrorBody, ErrorCode, Executors, OriginKind};
use petri_notebooks::Notebooks;
use petri_queue::{LaunchHooks, Queue, QueueError};
use petri_store::{ReadPool, Store};

pub use petri_accounts as accounts;
pub use petri_domain::{Event, JobChange, ListQuery, Status};
pub use petri_notebooks::{JUPYTER_PORT, Upstream};
pub use petri_queue::{Home, LogChunk, Submitter};
pub use settings::{GpuSettings, QueueSettings, Settings, SettingsError};

/// Why the daemon did not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] petri_store::StoreError),
    #[error(transparent)]
    Accounts(#[from] petri_accounts::AccountsError),
    #[error("{0}")]
    Io(String),
}

impl From<DaemonError> for ErrorBody {
    fn from(e: DaemonError) -> Self {
        match e {
            DaemonError::Queue(q) => q.into(),
            DaemonError::Accounts(a) => a.into(),
            other => ErrorBody::new(ErrorCode::Internal, other.to_string()),
        }
    }
}

/// The started daemon: one handle per capability; cheap to clone. Dropping the last clone stops
/// the queue's engine (running jobs go on and are re-adopted at the next start).
#[derive(Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    queue: Queue,
    notebooks: Notebooks,
    accounts: Accounts,
    docker: Arc<petri_runtime::DockerExecutor>,
    _lock: Flock<File>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Service watchers may still hold queue handles: stop the engine with the daemon.
        self.queue.stop();
    }
}

/// How many read connections the capabilities share.
const READERS: u32 = 8;

impl Daemon {
    /// Opens the home (creating it), takes its lock, recovers the queue and starts everything.
    /// Must be called inside a tokio runtime: local jobs are reaped there.
    pub fn start(settings: Settings) -> Result<Daemon, DaemonError> {
        let config = settings.queue_config();
        let home = config.home.clone();
        home.prepare()
            .map_err(|e| DaemonError::Io(format!("preparing {}: {e}", home.root().display())))?;
        let lock = lock_home(&home)?;
        let store = Store::open(&home.db())?;
        let reads = ReadPool::open(&home.db(), READERS)?;
        let accounts = Accounts::open(home.root(), Store::open(&home.db())?, reads.clone())?;

        let docker = Arc::new(
            petri_runtime::DockerExecutor::new(
                home.root(),
                match settings.docker.gpu_devices {
                    petri_queue::GpuDevices::Auto => petri_runtime::GpuDevices::Auto,
                    petri_queue::GpuDevices::Nvidia => petri_runtime::GpuDevices::Nvidia,
                    petri_queue::GpuDevices::Env => petri_runtime::GpuDevices::EnvOnly,
                },
            )
            .map_err(|e| DaemonError::Io(format!("starting the Docker client: {e}")))?,
        );
        let mut executors = Executors::default();
        executors.register(
            petri_domain::TARGET_LOCAL,
            Arc::new(petri_runtime::LocalExecutor::new(
                tokio::runtime::Handle::current(),
            )),
        );
        executors.register(petri_domain::TARGET_DOCKER, docker.clone());

        let keys = Arc::new(
            petri_notebooks::NotebookKeys::load(&petri_notebooks::key_path(home.root()))
                .map_err(|e| DaemonError::Io(format!("the notebook key: {e}")))?,
        );
        let mut hooks = LaunchHooks::default();
        hooks.register(
            OriginKind::Notebook,
            petri_notebooks::launch_hook(keys.clone()),
        );

        let queue = Queue::start(config, store, reads, executors, hooks)?;
        let notebooks = Notebooks::new(
            queue.clone(),
            Store::open(&home.db())?,
            keys,
            settings.notebooks.clone(),
        );
        Ok(Daemon {
            inner: Arc::new(Inner {
                settings,
                queue,
                notebooks,
                accounts,
                docker,
                _lock: lock,
            }),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }
    pub fn home(&self) -> &Home {
        self.inner.queue.home()
    }
    pub fn queue(&self) -> &Queue {
        &self.inner.queue
    }
    pub fn notebooks(&self) -> &Notebooks {
        &self.inner.notebooks
    }
    pub fn accounts(&self) -> &Accounts {
        &self.inner.accounts
    }

    /// The images the Docker engine has.
    pub async fn images(&self) -> Result<Vec<petri_domain::Image>, QueueError> {
        self.inner
            .docker
            .images()
            .await
            .map_err(|e| QueueError::refused(ErrorCode::ContainersUnavailable, e.to_string()))
    }

    /// Stops the engine (running jobs keep running and are re-adopted by the next daemon).
    pub async fn shutdown(&self) {
        self.inner.queue.shutdown().await;
    }
}

/// One daemon per home: an exclusive `flock` on `daemon.lock`. A daemon that is just stopping
/// (a restart) gets a moment to let go.
fn lock_home(home: &Home) -> Result<Flock<File>, DaemonError> {
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(home.lock())
        .map_err(|e| DaemonError::Io(format!("opening {}: {e}", home.lock().display())))?;
    for _ in 0..30 {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((f, _)) => {
                file = f;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
    Err(DaemonError::Io(format!(
        "another Petri daemon already uses {}; stop it, or choose another home with --home",
        home.root().display()
    )))
}
