//! The queue's sections of the daemon's settings, and what the queue is started with.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use petri_domain::{ByteSize, Millis};
use serde::{Deserialize, Serialize};

use crate::home::Home;

/// What the queue is started with: the home and the settings sections it reads.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    pub home: Home,
    pub kill_grace: Millis,
    pub capacity: CapacitySettings,
    pub queues: BTreeMap<String, QueueSettings>,
    pub gpu: GpuSettings,
    pub docker: DockerSettings,
    pub fair_share: FairShareSettings,
    pub burst: BurstSettings,
}

/// `target: auto`: a job runs here when it can start within `after`; once it has waited that
/// long, it goes to the cluster `to` instead (when that cluster takes what it asks for).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BurstSettings {
    /// The cluster `auto` jobs burst to; none: they always run here.
    pub to: Option<String>,
    /// How long an `auto` job waits here before it bursts.
    pub after: Millis,
}

impl Default for BurstSettings {
    fn default() -> Self {
        BurstSettings {
            to: None,
            after: Millis(10 * 60 * 1000),
        }
    }
}

/// Fair share among users (team mode): among waiting jobs of the same priority, the user with
/// the least recent usage goes first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FairShareSettings {
    /// Off: jobs of the same priority start in submission order, whoever's they are.
    pub enabled: bool,
    /// How fast past usage is forgotten: usage this long ago counts half.
    pub half_life: Millis,
}

impl Default for FairShareSettings {
    fn default() -> Self {
        FairShareSettings {
            enabled: true,
            half_life: Millis(24 * 3600 * 1000),
        }
    }
}

impl QueueConfig {
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

    pub fn queue_limits(&self) -> HashMap<String, u32> {
        self.queues
            .iter()
            .filter_map(|(k, v)| v.concurrency.map(|c| (k.clone(), c)))
            .collect()
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
