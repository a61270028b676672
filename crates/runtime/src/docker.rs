//! Jobs in Docker containers, through bollard (the only place in Petri that knows Docker).
//!
//! The crash-safety contract is the local executor's: an attempt's status file is claimed
//! (`O_EXCL`) before its container is created, and its exit code is written there *before* the
//! container is removed. So after a SIGKILL of the daemon, `probe` can tell an attempt that never
//! began (no claim, or a container that was created but never started) from one that runs (the
//! container named after the attempt is running: re-adopted) or ended (its exit code is in the
//! status file or still on the stopped container).
//!
//! Logs are copied from the engine into the job's log with their timestamps; after every batch the
//! position (last timestamp, log length) goes to a small side file, so a restarted daemon resumes
//! the copy exactly where it stopped: no line lost, none twice. An attempt's secrets are masked
//! as the log is copied; the position then counts only frames whose output is wholly written (a
//! frame that may end in the beginning of a secret is fetched again after a restart).

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, DeviceRequest, HostConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListImagesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::{FutureExt, StreamExt};
use petri_domain::{
    ExecError, Executor, ExitReport, Image, JobId, Launch, RunHandle, RunKey, RunProbe, StopSignal,
};

use crate::mask::{MaskStream, Masker};

/// Every container Petri starts carries these labels.
pub const LABEL_JOB: &str = "petri.job";
pub const LABEL_ATTEMPT: &str = "petri.attempt";
/// Which Petri home started it (so two daemons on one engine leave each other alone).
pub const LABEL_HOME: &str = "petri.home";

/// How long a request to the engine may take to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The first line of a claimed container attempt's status file.
const CLAIM: &str = "container";
/// What a recovering daemon writes into a status file it claims.
const RECOVERED: &str = "recovered";

/// How GPUs reach a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuDevices {
    /// Device requests when the engine has the NVIDIA runtime, the environment alone otherwise.
    Auto,
    /// Always device requests (driver `nvidia`).
    Nvidia,
    /// Never: the job only gets `CUDA_VISIBLE_DEVICES`.
    EnvOnly,
}

/// Called once when an attempt ends.
type OnExit = Box<dyn FnOnce(ExitReport) + Send>;

/// Runs attempts as Docker containers.
pub struct DockerExecutor {
    /// Its own small runtime: the engine thread blocks on Docker calls from any context, and the
    /// watchers of containers live here.
    runtime: crate::SideRuntime,
    client: tokio::sync::Mutex<Option<Docker>>,
    home_label: String,
    user: String,
    gpu_devices: GpuDevices,
    /// Containers whose end a watcher of this process waits for (name → container id).
    watching: Arc<Mutex<HashMap<String, RunHandle>>>,
    /// What to mask in the output of containers started by an earlier daemon (name → secrets),
    /// until their watcher takes it.
    adopted_masks: Mutex<HashMap<String, Arc<Masker>>>,
}

/// The container of one attempt.
pub fn container_name(job: JobId, attempt: u32) -> String {
    format!("petri-{job}-{attempt}")
}

/// Where the engine listens, for error messages.
fn engine_address() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

fn unreachable(e: &DockerError) -> ExecError {
    ExecError::Container(format!(
        "the Docker engine at {} does not answer ({e}); start it with `sudo systemctl start \
         docker` (or `sudo dockerd &`), or point DOCKER_HOST at a running engine",
        engine_address()
    ))
}

fn is_status(e: &DockerError, code: u16) -> bool {
    matches!(e, DockerError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

fn refused(what: &str, e: DockerError) -> ExecError {
    match e {
        DockerError::DockerResponseServerError { message, .. } => {
            ExecError::Container(format!("{what}: {message}"))
        }
        other => unreachable(&other),
    }
}

impl DockerExecutor {
    /// `home` labels the containers of this Petri home.
    pub fn new(home: &Path, gpu_devices: GpuDevices) -> std::io::Result<Self> {
        let user = format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid());
        Ok(DockerExecutor {
            runtime: crate::SideRuntime::new("petri-docker")?,
            client: tokio::sync::Mutex::new(None),
            home_label: home.display().to_string(),
            user,
            gpu_devices,
            watching: Arc::default(),
            adopted_masks: Mutex::default(),
        })
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.runtime.rt()
    }

    fn block_on<F: std::future::Future + Send>(&self, fut: F) -> F::Output
    where
        F::Output: Send,
    {
        self.runtime.block_on(fut)
    }

    /// A client with the API version negotiated (Docker 20.10 / API 1.41 and newer), connected
    /// on first use and again after the engine was away.
    pub async fn client(&self) -> Result<Docker, ExecError> {
        let mut slot = self.client.lock().await;
        if let Some(docker) = slot.as_ref() {
            return Ok(docker.clone());
        }
        // A hung engine must not hold the engine thread for long: every request gets its answer's
        // headers within this time (long-lived streams — logs, wait — send theirs at once).
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| unreachable(&e))?
            .with_timeout(REQUEST_TIMEOUT)
            .negotiate_version()
            .await
            .map_err(|e| unreachable(&e))?;
        *slot = Some(docker.clone());
        Ok(docker)
    }

    /// Drops the cached client after a connection error, and says what went wrong.
    fn forget(&self, e: DockerError) -> ExecError {
        if !matches!(e, DockerError::DockerResponseServerError { .. })
            && let Ok(mut slot) = self.client.try_lock()
        {
            *slot = None;
        }
        refused("the Docker engine refused", e)
    }

    /// The gateway of the engine's default `bridge` network: the host's address as containers
    /// see it (`host.docker.internal` with `host-gateway`). None while the engine is away.
    pub async fn bridge_gateway(&self) -> Option<std::net::IpAddr> {
        let docker = self.client().await.ok()?;
        let net = docker
            .inspect_network(
                "bridge",
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .map_err(|e| self.forget(e))
            .ok()?;
        let config = net.ipam?.config?;
        // Newer engines leave the default bridge's gateway out of its IPAM config; it is then
        // the subnet's first address, as Docker assigns it.
        config
            .iter()
            .find_map(|c| c.gateway.as_deref()?.parse().ok())
            .or_else(|| config.iter().find_map(|c| first_host(c.subnet.as_deref()?)))
    }

    /// Whether the engine has `image` (no registry is asked).
    pub async fn image_exists(&self, image: &str) -> Result<bool, ExecError> {
        let docker = self.client().await?;
        match docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_status(&e, 404) => Ok(false),
            Err(e) => Err(self.forget(e)),
        }
    }

    /// The images the engine has, newest first.
    pub async fn images(&self) -> Result<Vec<Image>, ExecError> {
        let docker = self.client().await?;
        let list = docker
            .list_images(Some(ListImagesOptionsBuilder::new().build()))
            .await
            .map_err(|e| self.forget(e))?;
        let mut images: Vec<Image> = list
            .into_iter()
            .map(|i| Image {
                tags: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect(),
                recipe: i.labels.get("petri.recipe").cloned(),
                id: i.id,
                size: i.size.max(0) as u64,
                created: i.created,
            })
            .collect();
        images.sort_by_key(|i| std::cmp::Reverse(i.created));
        Ok(images)
    }

    /// The host address of a published container port of a running attempt.
    async fn published(&self, job: JobId, attempt: u32, port: u16) -> Option<SocketAddr> {
        let docker = self.client().await.ok()?;
        let info = docker
            .inspect_container(&container_name(job, attempt), None)
            .await
            .ok()?;
        let bindings = info.network_settings?.ports?;
        let host = bindings.get(&format!("{port}/tcp"))?.as_ref()?;
        host.iter().find_map(|b| {
            let port: u16 = b.host_port.as_deref()?.parse().ok()?;
            Some(SocketAddr::from(([127, 0, 0, 1], port)))
        })
    }

    /// Removes this home's containers that belong to no attempt in `keep` (leftovers of an engine
    /// that died mid-job, or of a crash between an exit and its removal). Returns how many.
    async fn sweep_leftovers(&self, keep: &HashSet<String>) -> Result<usize, ExecError> {
        let docker = self.client().await?;
        let filters = HashMap::from([("label", vec![format!("{LABEL_HOME}={}", self.home_label)])]);
        let list = docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| self.forget(e))?;
        let mut removed = 0;
        for c in list {
            let Some(name) = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
            else {
                continue;
            };
            if keep.contains(&name) || self.is_watched(&name) {
                continue;
            }
            if remove(&docker, &name).await.is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn is_watched(&self, name: &str) -> bool {
        self.watching.lock().unwrap().contains_key(name)
    }

    async fn nvidia_runtime(&self, docker: &Docker) -> bool {
        match self.gpu_devices {
            GpuDevices::Nvidia => true,
            GpuDevices::EnvOnly => false,
            GpuDevices::Auto => docker
                .info()
                .await
                .ok()
                .and_then(|i| i.runtimes)
                .is_some_and(|r| r.contains_key("nvidia")),
        }
    }

    /// Creates (or finds, after a crash: create is idempotent) and starts the attempt's
    /// container; returns its id.
    async fn create_and_start(&self, launch: &Launch, name: &str) -> Result<RunHandle, ExecError> {
        let spec = launch
            .container
            .as_ref()
            .ok_or_else(|| ExecError::Container("not a container launch".into()))?;
        let docker = self.client().await?;
        let mut env: Vec<String> = launch.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !launch.env.iter().any(|(k, _)| k == "HOME") {
            // The job runs as the daemon's user, who may have no home in the image.
            env.push("HOME=/tmp".into());
        }
        // One bind per folder inside: Docker refuses a second. A later mount of the same folder
        // (the job's own, say read-only, of its workdir) wins over Petri's.
        let mut inside = std::collections::HashSet::new();
        let mut binds: Vec<String> = spec
            .mounts
            .iter()
            .rev()
            .filter(|m| inside.insert(&m.target))
            .map(|m| {
                let mode = if m.read_only { "ro" } else { "rw" };
                format!("{}:{}:{mode}", m.source.display(), m.target.display())
            })
            .collect();
        binds.reverse();
        let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = spec
            .ports
            .iter()
            .map(|p| {
                (
                    format!("{p}/tcp"),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(String::new()),
                    }]),
                )
            })
            .collect();
        let device_requests = if !spec.gpus.is_empty() && self.nvidia_runtime(&docker).await {
            Some(vec![DeviceRequest {
                driver: Some("nvidia".into()),
                device_ids: Some(spec.gpus.clone()),
                capabilities: Some(vec![vec!["gpu".into()]]),
                ..Default::default()
            }])
        } else {
            if !spec.gpus.is_empty() {
                log_line(
                    &launch.log_path,
                    "petri: this Docker engine has no NVIDIA runtime; the container gets \
                     CUDA_VISIBLE_DEVICES but no GPU device",
                );
            }
            None
        };
        let labels = HashMap::from([
            (LABEL_JOB.to_string(), launch.key.job.to_string()),
            (LABEL_ATTEMPT.to_string(), launch.key.attempt.to_string()),
            (LABEL_HOME.to_string(), self.home_label.clone()),
            (LABEL_LOG.to_string(), launch.log_path.display().to_string()),
        ]);
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: (!launch.argv.is_empty()).then(|| launch.argv.clone()),
            env: Some(env),
            working_dir: Some(launch.workdir.display().to_string()),
            // A job of another user runs as that user, with its groups.
            user: Some(match &launch.run_as {
                Some(to) => format!("{}:{}", to.uid, to.gid),
                None => self.user.clone(),
            }),
            labels: Some(labels),
            exposed_ports: (!spec.ports.is_empty())
                .then(|| spec.ports.iter().map(|p| format!("{p}/tcp")).collect()),
            host_config: Some(HostConfig {
                binds: Some(binds),
                port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
                nano_cpus: spec.cpus.map(|c| (c * 1e9) as i64),
                memory: spec.memory.map(|m| m as i64),
                device_requests,
                ipc_mode: spec.host_ipc.then(|| "host".to_string()),
                // The daemon (tracking, the registry) at the bridge's gateway, by name.
                extra_hosts: Some(vec!["host.docker.internal:host-gateway".into()]),
                group_add: launch.run_as.as_ref().map(|to| {
                    to.groups
                        .iter()
                        .filter(|g| **g != to.gid)
                        .map(u32::to_string)
                        .collect()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        match docker.create_container(Some(options), body).await {
            Ok(_) => {}
            // Created before a crash: create is idempotent.
            Err(e) if is_status(&e, 409) => {}
            Err(e) if is_status(&e, 404) => {
                return Err(ExecError::Container(format!(
                    "the image `{}` is not in the Docker engine; build Petri's default image \
                     with `petri image build`, or load yours with `docker load`",
                    spec.image
                )));
            }
            Err(e) => return Err(self.forget(e)),
        }
        if let Err(e) = docker.start_container(name, None).await
            && !is_status(&e, 304)
        {
            let _ = remove(&docker, name).await;
            return Err(refused(&format!("the container of `{}`", spec.image), e));
        }
        let info = match docker.inspect_container(name, None).await {
            Ok(info) => info,
            Err(e) => {
                // The attempt will be recorded as not started: its container must not run on.
                let _ = remove(&docker, name).await;
                return Err(self.forget(e));
            }
        };
        Ok(RunHandle(info.id.unwrap_or_else(|| name.to_string())))
    }

    /// Copies the logs, waits for the end, records the exit code, reports it, removes the
    /// container. Runs once per container in this process.
    fn watch(
        &self,
        name: String,
        id: RunHandle,
        report: Option<(RunKey, OnExit)>,
        status_file: PathBuf,
        log_path: PathBuf,
        mask: Option<Arc<Masker>>,
    ) {
        {
            let mut watching = self.watching.lock().unwrap();
            if watching.contains_key(&name) {
                return;
            }
            watching.insert(name.clone(), id);
        }
        let watching = self.watching.clone();
        let client = self.block_on(self.client());
        self.rt().spawn(async move {
            let code = match client {
                Ok(docker) => follow_to_end(&docker, &name, &status_file, &log_path, mask).await,
                Err(e) => {
                    log_line(&log_path, &format!("petri: {e}"));
                    None
                }
            };
            watching.lock().unwrap().remove(&name);
            if let Some((run, on_exit)) = report {
                on_exit(ExitReport {
                    job: run.job,
                    attempt: run.attempt,
                    exit_code: code,
                });
            }
        });
    }
}

/// Follows a container to its end; returns its exit code (None when the engine went away).
async fn follow_to_end(
    docker: &Docker,
    name: &str,
    status_file: &Path,
    log_path: &Path,
    mask: Option<Arc<Masker>>,
) -> Option<i32> {
    let logs = copy_logs(
        docker.clone(),
        name.to_string(),
        log_path.to_path_buf(),
        mask,
    );
    let wait = async {
        // The stream ends (with an error for a non-zero code) when the container stops.
        let mut stream = docker.wait_container(name, None);
        while stream.next().await.is_some() {}
    };
    let ((), copied) = tokio::join!(wait, logs);
    if let Err(e) = copied {
        log_line(
            log_path,
            &format!("petri: the container's log was cut short: {e}"),
        );
    }
    let code = match docker.inspect_container(name, None).await {
        Ok(info) => info
            .state
            .and_then(|s| s.exit_code)
            .and_then(|c| i32::try_from(c).ok()),
        Err(e) => {
            log_line(
                log_path,
                &format!("petri: the container ended without an exit code: {e}"),
            );
            None
        }
    };
    if let Some(code) = code {
        // On disk before the container goes: a restarted daemon reads it here.
        if append(status_file, &format!("{code}\n")).is_ok() {
            let _ = remove(docker, name).await;
            let _ = fs::remove_file(log_position_file(log_path, name));
        }
    }
    code
}

async fn remove(docker: &Docker, name: &str) -> Result<(), DockerError> {
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(name, Some(options)).await {
        Err(e) if !is_status(&e, 404) => Err(e),
        _ => Ok(()),
    }
}

/// Where the copy of a container's log stands: `<timestamp> <log length>`.
fn log_position_file(log_path: &Path, name: &str) -> PathBuf {
    let dir = log_path.parent().unwrap_or(Path::new("."));
    dir.join(format!(".{name}.logpos"))
}

/// Copies the container's output into the job log until the container ends, resuming exactly
/// after the last line an earlier daemon copied.
///
/// Output is copied in batches (whatever the engine has ready). Before a batch is appended, the
/// position file records where the log stood and where it will stand after the batch (last
/// timestamp, log length). A restarted daemon that finds the log at least as long as the second
/// position resumes there; otherwise the batch was cut short, and it goes back to the first.
async fn copy_logs(
    docker: Docker,
    name: String,
    log_path: PathBuf,
    mask: Option<Arc<Masker>>,
) -> std::io::Result<()> {
    let position_file = log_position_file(&log_path, &name);
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let at = match fs::read_to_string(&position_file) {
        Ok(text) => {
            let at = resume_point(&text, log.metadata()?.len());
            // Bytes past the resume point are fetched again.
            log.set_len(at.len)?;
            at
        }
        // A first start: the log may hold earlier attempts' output.
        Err(_) => Position {
            ts: String::new(),
            len: log.metadata()?.len(),
        },
    };
    let mut at = at;
    let mut copier = Copier::new(mask, &at);
    let options = LogsOptionsBuilder::new()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .since(since_seconds(&at.ts))
        .build();
    let mut stream = docker.logs(&name, Some(options));
    while let Some(first) = stream.next().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match stream.next().now_or_never() {
                Some(Some(item)) => batch.push(item),
                _ => break,
            }
        }
        let mut data = Vec::new();
        // Where a restart would resume: after the last frame whose output is wholly in `data`.
        let mut settled = None;
        for item in batch {
            let chunk = item
                .map_err(|e| std::io::Error::other(e.to_string()))?
                .into_bytes();
            if let Some(p) = copier.take(&chunk, &mut data) {
                settled = Some(p);
            }
        }
        if data.is_empty() {
            continue;
        }
        let next = settled.unwrap_or_else(|| at.clone());
        save_positions(&position_file, &at, &next)?;
        log.write_all(&data)?;
        at = next;
    }
    // The end of the output: what the masking held back goes too.
    let mut data = Vec::new();
    copier.finish(&mut data);
    log.write_all(&data)?;
    Ok(())
}

/// Takes a container's log frames into its job log: repeats skipped, secrets masked, and where a
/// restart would resume counted only for frames whose output is wholly taken.
struct Copier {
    masking: Option<MaskStream>,
    /// The last timestamp taken: frames at or before it are repeats.
    seen: String,
    /// The log's length once all taken is written.
    len: u64,
}

impl Copier {
    fn new(mask: Option<Arc<Masker>>, at: &Position) -> Copier {
        Copier {
            masking: mask.map(MaskStream::new),
            seen: at.ts.clone(),
            len: at.len,
        }
    }

    /// Takes one frame (`<timestamp> <text>`) into `data`. When nothing taken so far is held back
    /// (by the masking: the frame may end in the beginning of a secret), returns the position
    /// after this frame.
    fn take(&mut self, chunk: &[u8], data: &mut Vec<u8>) -> Option<Position> {
        let (t, text) = split_timestamp(chunk);
        // Timestamps have a fixed width, so they compare as text.
        if !self.seen.is_empty() && t.as_str() <= self.seen.as_str() {
            return None;
        }
        let before = data.len();
        match self.masking.as_mut() {
            Some(m) => m.push(text, data),
            None => data.extend_from_slice(text),
        }
        self.len += (data.len() - before) as u64;
        self.seen = t;
        self.masking
            .as_ref()
            .is_none_or(MaskStream::is_settled)
            .then(|| Position {
                ts: self.seen.clone(),
                len: self.len,
            })
    }

    /// The end of the output: what the masking held back goes too.
    fn finish(&mut self, data: &mut Vec<u8>) {
        if let Some(m) = self.masking.as_mut() {
            let before = data.len();
            m.finish(data);
            self.len += (data.len() - before) as u64;
        }
    }
}

/// Where the copy of a log stands: the last timestamp copied and the log's length after it.
#[derive(Clone, Debug, Default, PartialEq)]
struct Position {
    ts: String,
    len: u64,
}

fn save_positions(path: &Path, before: &Position, after: &Position) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(
        &tmp,
        format!(
            "{} {}\n{} {}\n",
            or_dash(&before.ts),
            before.len,
            after.ts,
            after.len
        ),
    )?;
    fs::rename(&tmp, path)
}

fn or_dash(ts: &str) -> &str {
    if ts.is_empty() { "-" } else { ts }
}

/// Where to resume, from the position file's two lines and the log's length now.
fn resume_point(text: &str, log_len: u64) -> Position {
    let parse = |line: &str| {
        let (ts, len) = line.trim().split_once(' ')?;
        let ts = if ts == "-" {
            String::new()
        } else {
            ts.to_string()
        };
        Some(Position {
            ts,
            len: len.parse().ok()?,
        })
    };
    let mut lines = text.lines();
    let before = lines.next().and_then(parse).unwrap_or_default();
    match lines.next().and_then(parse) {
        Some(after) if log_len >= after.len => after,
        _ => before,
    }
}

/// Seconds since the epoch of an RFC 3339 timestamp's whole second (0 when unknown).
fn since_seconds(ts: &str) -> i32 {
    if ts.is_empty() {
        return 0;
    }
    humantime::parse_rfc3339_weak(ts.get(..19).unwrap_or(ts))
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i32::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// `2026-11-28T18:48:38.121937123Z text` → (timestamp, text).
fn split_timestamp(chunk: &[u8]) -> (String, &[u8]) {
    match chunk.iter().position(|b| *b == b' ') {
        Some(i) if i >= 20 && chunk[..i].iter().all(u8::is_ascii_graphic) => (
            String::from_utf8_lossy(&chunk[..i]).into_owned(),
            &chunk[i + 1..],
        ),
        _ => (String::new(), chunk),
    }
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new().append(true).open(path)?;
    f.write_all(text.as_bytes())
}

fn log_line(log_path: &Path, line: &str) {
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(log_path) {
        let _ = writeln!(f, "{line}");
    }
}

/// What a container attempt's status file says.
enum Status {
    Unclaimed,
    Recovered,
    Claimed,
    Exited(i32),
}

fn read_status(path: &Path) -> Status {
    let Ok(text) = fs::read_to_string(path) else {
        return Status::Unclaimed;
    };
    let mut lines = text.lines();
    match lines.next().map(str::trim) {
        Some(RECOVERED) => Status::Recovered,
        Some(CLAIM) => match lines.next().map(|l| l.trim().parse::<i32>()) {
            Some(Ok(code)) if text.ends_with('\n') => Status::Exited(code),
            _ => Status::Claimed,
        },
        _ => Status::Unclaimed,
    }
}

fn claim(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    writeln!(f, "{line}")
}

impl Executor for DockerExecutor {
    fn start(
        &self,
        launch: Launch,
        on_exit: Box<dyn FnOnce(ExitReport) + Send>,
    ) -> Result<RunHandle, ExecError> {
        let name = container_name(launch.key.job, launch.key.attempt);
        claim(&launch.status_file, CLAIM).map_err(|source| ExecError::Prepare {
            path: launch.status_file.clone(),
            source,
        })?;
        let id = match self.block_on(self.create_and_start(&launch, &name)) {
            Ok(id) => id,
            Err(e) => {
                // The attempt ends here; its claim keeps a restarted daemon from running it.
                let _ = append(&launch.status_file, "125\n");
                return Err(e);
            }
        };
        self.watch(
            name,
            id.clone(),
            Some((launch.key, on_exit)),
            launch.status_file,
            launch.log_path,
            Masker::new(&launch.mask).map(Arc::new),
        );
        Ok(id)
    }

    fn stop(&self, run: &RunKey, _: &RunHandle, signal: StopSignal) -> Result<(), ExecError> {
        let name = container_name(run.job, run.attempt);
        let signal = match signal {
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Kill => "SIGKILL",
        };
        let docker = self.block_on(self.client())?;
        // Not waited for: the engine thread must not block on a slow engine.
        self.rt().spawn(async move {
            let options = KillContainerOptionsBuilder::new().signal(signal).build();
            match docker.kill_container(&name, Some(options)).await {
                Ok(()) => {}
                // Not running (any more) or already gone.
                Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                Err(e) => {
                    tracing::warn!(container = %name, error = %e, "stopping a container failed")
                }
            }
        });
        Ok(())
    }

    fn probe(&self, run: &RunKey, status_file: &Path) -> RunProbe {
        // A claim being written right now reads as unclaimed for an instant: look again briefly.
        let mut tries = 0;
        loop {
            match read_status(status_file) {
                Status::Exited(code) => return RunProbe::Exited(code),
                Status::Recovered => return RunProbe::NeverStarted,
                Status::Claimed => break,
                Status::Unclaimed => {
                    // Claim it: the container was never created, and now never will be.
                    if claim(status_file, RECOVERED).is_ok() {
                        return RunProbe::NeverStarted;
                    }
                    tries += 1;
                    if tries > 50 {
                        tracing::warn!(file = %status_file.display(), "cannot claim a status file");
                        return RunProbe::Lost;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
        let name = container_name(run.job, run.attempt);
        if let Some(id) = self.watching.lock().unwrap().get(&name) {
            return RunProbe::Alive { handle: id.clone() };
        }
        let docker = match self.block_on(self.client()) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(container = %name, error = %e, "cannot ask about a container");
                return RunProbe::Lost;
            }
        };
        let info = self.block_on(docker.inspect_container(&name, None));
        let (id, state, log_path) = match info {
            // The job log is kept in a label, so that a restarted daemon resumes copying into it.
            Ok(info) => (
                RunHandle(info.id.clone().unwrap_or_else(|| name.clone())),
                info.state.unwrap_or_default(),
                info.config
                    .and_then(|c| c.labels)
                    .and_then(|l| l.get(LABEL_LOG).map(PathBuf::from)),
            ),
            Err(e) => {
                // Its exit may have been recorded (and the container removed) meanwhile.
                if let Status::Exited(code) = read_status(status_file) {
                    return RunProbe::Exited(code);
                }
                if !is_status(&e, 404) {
                    tracing::warn!(container = %name, error = %e, "cannot ask about a container");
                }
                return RunProbe::Lost;
            }
        };
        match state.status {
            Some(ContainerStateStatusEnum::CREATED) | None => {
                // Created, never started: it never will be.
                let _ = self.block_on(remove(&docker, &name));
                RunProbe::NeverStarted
            }
            Some(
                ContainerStateStatusEnum::RUNNING
                | ContainerStateStatusEnum::PAUSED
                | ContainerStateStatusEnum::RESTARTING,
            ) => {
                if let Some(log_path) = log_path {
                    let mask = self.adopted_masks.lock().unwrap().remove(&name);
                    self.watch(
                        name,
                        id.clone(),
                        None,
                        status_file.to_path_buf(),
                        log_path,
                        mask,
                    );
                }
                RunProbe::Alive { handle: id }
            }
            Some(_) => {
                // It ended while no daemon watched: copy the rest of its log, record, remove.
                let mask = self.adopted_masks.lock().unwrap().remove(&name);
                let code = match log_path {
                    Some(log_path) => {
                        self.block_on(follow_to_end(&docker, &name, status_file, &log_path, mask))
                    }
                    None => None,
                };
                code.map_or(RunProbe::Lost, RunProbe::Exited)
            }
        }
    }

    /// The watcher removes a container once its exit code is on disk; this covers the ones whose
    /// end was recorded otherwise (after a restart, say). Not waited for.
    fn remove(&self, run: &RunKey) {
        let name = container_name(run.job, run.attempt);
        if self.is_watched(&name) {
            return;
        }
        // The cached client only: connecting could wait, and the engine thread calls this.
        let Some(docker) = self.client.try_lock().ok().and_then(|c| c.clone()) else {
            return;
        };
        self.rt().spawn(async move {
            let _ = remove(&docker, &name).await;
        });
    }

    fn sweep(&self, keep: &[RunKey]) -> Result<usize, ExecError> {
        let keep: HashSet<String> = keep
            .iter()
            .map(|k| container_name(k.job, k.attempt))
            .collect();
        self.block_on(self.sweep_leftovers(&keep))
    }

    fn owner_of_process(&self, pid: u32) -> Option<RunHandle> {
        crate::container_of(pid).map(RunHandle)
    }

    /// Kept until `probe` starts the adopted container's watcher, which masks with it.
    fn mask_adopted(&self, run: &RunKey, mask: Vec<Vec<u8>>) {
        if let Some(masker) = Masker::new(&mask) {
            self.adopted_masks
                .lock()
                .unwrap()
                .insert(container_name(run.job, run.attempt), Arc::new(masker));
        }
    }

    fn endpoint(&self, run: &RunKey, port: u16) -> Option<SocketAddr> {
        self.block_on(self.published(run.job, run.attempt, port))
    }

    fn admit(&self, spec: &petri_domain::JobSpec) -> Result<(), petri_domain::ErrorBody> {
        let Some(image) = spec.image.as_deref() else {
            return Ok(());
        };
        let exists = self.block_on(self.image_exists(image)).map_err(|e| {
            petri_domain::ErrorBody::new(
                petri_domain::ErrorCode::ContainersUnavailable,
                e.to_string(),
            )
        })?;
        if exists {
            return Ok(());
        }
        Err(petri_domain::ErrorBody::new(
            petri_domain::ErrorCode::ImageNotFound,
            format!(
                "the image `{image}` is not in the Docker engine (no registry is asked); build \
                 Petri's default image with `petri image build`, or load yours with `docker load`"
            ),
        )
        .with_details(serde_json::json!({ "field": "image", "image": image })))
    }
}

/// The job log on the host, so that a restarted daemon can resume copying into it.
pub const LABEL_LOG: &str = "petri.log";

/// The first address of an IPv4 subnet (`172.17.0.0/16` → `172.17.0.1`).
fn first_host(subnet: &str) -> Option<std::net::IpAddr> {
    let (net, bits) = subnet.split_once('/')?;
    let net: std::net::Ipv4Addr = net.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    if !(1..=30).contains(&bits) {
        return None;
    }
    let mask = u32::MAX << (32 - bits);
    Some(std::net::Ipv4Addr::from((u32::from(net) & mask) + 1).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_split_from_the_text() {
        let (ts, text) = split_timestamp(b"2026-11-28T18:48:38.121937123Z hello world\n");
        assert_eq!(ts, "2026-11-28T18:48:38.121937123Z");
        assert_eq!(text, b"hello world\n");
        let (ts, text) = split_timestamp(b"no timestamp here");
        assert_eq!(ts, "");
        assert_eq!(text, b"no timestamp here");
        assert_eq!(since_seconds("1970-01-01T00:01:40.5Z"), 100);
        assert_eq!(since_seconds(""), 0);
    }

    #[test]
    fn a_cut_batch_resumes_from_the_position_before_it() {
        let text = "2026-01-01T00:00:01.000000000Z 10\n2026-01-01T00:00:02.000000000Z 25\n";
        let after = resume_point(text, 25);
        assert_eq!(
            (after.ts.as_str(), after.len),
            ("2026-01-01T00:00:02.000000000Z", 25)
        );
        assert_eq!(resume_point(text, 40).len, 25);
        let before = resume_point(text, 17);
        assert_eq!(
            (before.ts.as_str(), before.len),
            ("2026-01-01T00:00:01.000000000Z", 10)
        );
        let first = resume_point("- 0\n2026-01-01T00:00:02.000000000Z 5\n", 0);
        assert_eq!(first, Position::default());
    }

    #[test]
    fn a_frame_that_may_end_in_a_secret_is_not_counted_as_copied() {
        let masker = Arc::new(Masker::new(&[b"hf_secret42".to_vec()]).unwrap());
        let mut copier = Copier::new(Some(masker), &Position::default());
        let ts = |s: u32| format!("2026-01-01T00:00:0{s}.000000000Z");
        let frame = |s: u32, text: &str| format!("{} {text}", ts(s)).into_bytes();
        let at = |s: u32, len: u64| Some(Position { ts: ts(s), len });
        let mut data = Vec::new();
        assert_eq!(copier.take(&frame(1, "one\n"), &mut data), at(1, 4));
        // Its end may be a secret's beginning: held back, and after a restart fetched again.
        assert_eq!(copier.take(&frame(2, "token hf_sec"), &mut data), None);
        assert_eq!(data, b"one\ntoken ");
        assert_eq!(copier.take(&frame(3, "ret42\n"), &mut data), at(3, 14));
        assert_eq!(data, b"one\ntoken ***\n");
        // A repeat (a resumed copy fetches from the whole second) is skipped.
        assert_eq!(copier.take(&frame(3, "ret42\n"), &mut data), None);
        assert_eq!(data.len(), 14);
        // Without secrets every frame counts at once.
        let mut plain = Copier::new(None, &Position::default());
        let mut data = Vec::new();
        assert_eq!(plain.take(&frame(1, "token hf_sec"), &mut data), at(1, 12));
    }

    #[test]
    fn status_files_say_what_happened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs/x.1");
        assert!(matches!(read_status(&path), Status::Unclaimed));
        claim(&path, CLAIM).unwrap();
        assert!(matches!(read_status(&path), Status::Claimed));
        assert!(claim(&path, RECOVERED).is_err());
        append(&path, "3\n").unwrap();
        assert!(matches!(read_status(&path), Status::Exited(3)));
    }

    #[test]
    fn a_subnet_without_a_gateway_has_its_first_address() {
        assert_eq!(
            super::first_host("172.17.0.0/16"),
            Some("172.17.0.1".parse().unwrap())
        );
        assert_eq!(
            super::first_host("10.1.2.128/25"),
            Some("10.1.2.129".parse().unwrap())
        );
        assert_eq!(super::first_host("fd00::/64"), None);
        assert_eq!(super::first_host("nonsense"), None);
    }
}
