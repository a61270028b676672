//! One `Settings` type loaded in layers: defaults, then `PETRI_HOME/petri.toml`, then `PETRI_*`
//! environment variables (`PETRI_CAPACITY__CPUS=4` sets `capacity.cpus`), then command-line flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use petri_domain::{ByteSize, Millis};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where Petri keeps its state. Default: the platform data folder (`~/.local/share/petri`).
    pub home: PathBuf,
    /// The address the API listens on. Loopback unless you mean to share the machine.
    pub listen: SocketAddr,
    /// The largest request body accepted.
    pub max_body: ByteSize,
    /// How long a stopped job has between SIGTERM and SIGKILL.
    pub kill_grace: Millis,
    /// What jobs may reserve on this machine.
    pub capacity: CapacitySettings,
    /// Named queues and their limits; a job may name any queue, unlisted ones are unlimited.
    pub queues: BTreeMap<String, QueueSettings>,
    /// The log filter (`info`, `debug`, `petri_daemon=trace`...).
    pub log: String,
    /// GPUs.
    pub gpu: GpuSettings,
    /// Containers.
    pub docker: DockerSettings,
    /// Jupyter notebooks.
    pub notebooks: NotebookSettings,
    /// The desktop app.
    pub desktop: DesktopSettings,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DesktopSettings {
    /// Closing the window keeps Petri (and its daemon) in the tray; quit from the tray's menu.
    pub keep_in_tray: bool,
}

impl Default for DesktopSettings {
    fn default() -> Self {
        DesktopSettings { keep_in_tray: true }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerSettings {
    /// Host folders that jobs and notebooks may mount (and everything below them). Default: the
    /// user's home folder and Petri's home. A job's own workdir is always mounted.
    pub mount_roots: Vec<PathBuf>,
    /// How reserved GPUs reach a container: `auto` (device requests when the engine has the
    /// NVIDIA runtime), `nvidia` (always), `env` (only `CUDA_VISIBLE_DEVICES`).
    pub gpu_devices: GpuDevices,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuDevices {
    #[default]
    Auto,
    Nvidia,
    Env,
}

impl Default for DockerSettings {
    fn default() -> Self {
        DockerSettings {
            mount_roots: dirs::home_dir().into_iter().collect(),
            gpu_devices: GpuDevices::Auto,
        }
    }
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuSettings {
    /// The NVML library to load (default: the driver's `libnvidia-ml.so.1`). `PETRI_NVML_PATH`
    /// sets it too.
    pub nvml_path: Option<PathBuf>,
    /// Memory kept free on every GPU, never given to slices.
    pub reserve: ByteSize,
    /// How often GPUs are sampled.
    pub sample_every: Millis,
    /// Aging: once the first GPU job in line has waited this long, jobs behind it may no longer
    /// take the GPUs it waits for, unless their time limit ends them before the limits of the
    /// jobs there free those GPUs (backfill).
    pub claim_after: Millis,
    /// What happens to a job whose processes use more GPU memory than its slice: `warn` (logged
    /// and shown by `petri gpus`) or `kill` (stopped, and failed with that reason).
    pub enforce: Enforce,
    /// GPUs (by index) on which Petri runs NVIDIA's MPS control daemon, so that the driver
    /// enforces each slice's memory (`CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`) and compute share
    /// (`CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`).
    pub mps: Vec<u32>,
    /// The MPS control program.
    pub mps_control: PathBuf,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforce {
    #[default]
    Warn,
    Kill,
}

impl Default for GpuSettings {
    fn default() -> Self {
        GpuSettings {
            nvml_path: None,
            reserve: ByteSize(256 << 20),
            sample_every: Millis(2000),
            claim_after: Millis(15 * 60 * 1000),
            enforce: Enforce::Warn,
            mps: Vec::new(),
            mps_control: PathBuf::from("nvidia-cuda-mps-control"),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapacitySettings {
    /// CPU cores jobs may reserve in total. Default: all cores.
    pub cpus: Option<f64>,
    /// Memory jobs may reserve in total. Default: the machine's memory.
    pub memory: Option<ByteSize>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// At most this many jobs of the queue run at once.
    pub concurrency: Option<u32>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            home: default_home(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            max_body: ByteSize(4 << 20),
            kill_grace: Millis(10_000),
            capacity: CapacitySettings::default(),
            queues: BTreeMap::new(),
            log: "info".into(),
            gpu: GpuSettings::default(),
            docker: DockerSettings::default(),
            notebooks: NotebookSettings::default(),
            desktop: DesktopSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings: {0}")]
    Invalid(String),
}

const DAEMON_KEYS: &[&str] = &[
    "listen",
    "max_body",
    "kill_grace",
    "capacity",
    "queues",
    "log",
    "gpu",
    "docker",
    "notebooks",
    "desktop",
];

/// The platform data folder, e.g. `~/.local/share/petri`.
pub fn default_home() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("petri")
}

impl Settings {
    /// Loads the layers. `home` (from `--home`) wins over `PETRI_HOME`; the chosen home's
    /// `petri.toml` is read.
    pub fn load(home: Option<&Path>) -> Result<Settings, SettingsError> {
        let home = home
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("PETRI_HOME").map(PathBuf::from))
            .unwrap_or_else(default_home);
        Self::load_from(home, Env::prefixed("PETRI_"))
    }

    fn load_from(home: PathBuf, env: Env) -> Result<Settings, SettingsError> {
        let toml = home.join("petri.toml");
        let env = env
            .split("__")
            // Only daemon settings: client-side variables (PETRI_SERVER, PETRI_TOKEN...) share the
            // prefix, and PETRI_HOME was read above.
            .filter(|k| {
                let top = k
                    .as_str()
                    .split('.')
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                DAEMON_KEYS.contains(&top.as_str())
            });
        let mut settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(&toml))
            .merge(env)
            .extract()
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        settings.home = home;
        if let Some(path) = std::env::var_os("PETRI_NVML_PATH").filter(|p| !p.is_empty()) {
            settings.gpu.nvml_path = Some(PathBuf::from(path));
        }
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(c) = self.capacity.cpus
            && (!c.is_finite() || c <= 0.0)
        {
            return Err(SettingsError::Invalid(
                "capacity.cpus must be more than 0".into(),
            ));
        }
        for (name, q) in &self.queues {
            if q.concurrency == Some(0) {
                return Err(SettingsError::Invalid(format!(
                    "queues.{name}.concurrency must be at least 1"
                )));
            }
        }
        Ok(())
    }

    /// The cpus (in thousandths) and memory jobs may reserve.
    pub fn capacity(&self) -> petri_sched::Capacity {
        let cpus = self.capacity.cpus.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as f64)
                .unwrap_or(1.0)
        });
        let memory = self
            .capacity
            .memory
            .map(|m| m.0)
            .unwrap_or_else(machine_memory);
        petri_sched::Capacity {
            cpu_millis: (cpus * 1000.0).round() as u64,
            memory,
        }
    }

    pub fn queue_limits(&self) -> std::collections::HashMap<String, u32> {
        self.queues
            .iter()
            .filter_map(|(k, v)| v.concurrency.map(|c| (k.clone(), c)))
            .collect()
    }
}

/// Total memory from /proc/meminfo (a generous default where that is missing).
fn machine_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(u64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's own error type
    fn layers_apply_in_order_and_unknown_keys_fail() {
        figment::Jail::expect_with(|jail| {
            let home = jail.directory().to_path_buf();
            jail.create_file(
                "petri.toml",
                "kill_grace = \"3s\"\n[queues.gpu]\nconcurrency = 2\n",
            )?;
            jail.set_env("PETRI_CAPACITY__CPUS", "6");
            jail.set_env("PETRI_SERVER", "http://elsewhere");
            let s = Settings::load_from(home.clone(), Env::prefixed("PETRI_")).unwrap();
            assert_eq!(s.kill_grace.0, 3000);
            assert_eq!(s.queues["gpu"].concurrency, Some(2));
            assert_eq!(s.capacity().cpu_millis, 6000);
            jail.create_file("petri.toml", "kill_grase = \"3s\"\n")?;
            let err = Settings::load_from(home, Env::prefixed("PETRI_")).unwrap_err();
            assert!(err.to_string().contains("kill_grase"), "{err}");
            Ok(())
        });
    }
}
