//! GPUs through NVML (nvml-wrapper): inventory and live metrics. The only crate that knows NVML.
//!
//! Nothing here fails the daemon: without the NVML library (no NVIDIA driver) Petri runs CPU-only
//! and says why; an NVML error while sampling re-initialises NVML at the next sample and reports
//! the GPU unhealthy meanwhile.

pub mod mps;

use std::path::{Path, PathBuf};

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;
use serde::{Deserialize, Serialize};

/// One GPU at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub memory_total: u64,
    pub memory_used: u64,
    /// Percent of time a kernel ran, over the last sample period.
    pub utilization: u32,
    pub temperature_c: Option<u32>,
    pub power_mw: Option<u32>,
    pub mig_enabled: bool,
    /// The MIG instances, by slot, when MIG is enabled.
    pub mig: Vec<MigInstance>,
    /// False when NVML reports the GPU lost or in error: nothing may start on it.
    pub healthy: bool,
    pub processes: Vec<GpuProcess>,
}

/// A MIG instance: a slice of a GPU that the driver isolates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigInstance {
    pub uuid: String,
    /// The profile, e.g. `1g.10gb` (from the instance's name).
    pub profile: String,
    pub memory_total: u64,
}

/// A process with a compute context on a GPU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuProcess {
    pub pid: u32,
    pub used_memory: u64,
}

/// Whether Petri can see GPUs, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvmlStatus {
    pub available: bool,
    /// Why there are no GPUs (no driver library, init failed...).
    pub reason: Option<String>,
}

/// The NVML session, re-opened after errors.
pub struct Inventory {
    lib: Option<PathBuf>,
    nvml: Option<Nvml>,
    status: NvmlStatus,
    /// The last good answer per GPU, kept (marked unhealthy) when a GPU stops answering.
    last: Vec<GpuInfo>,
}

impl Inventory {
    /// Opens NVML from `lib` (a path to `libnvidia-ml.so.1` or a stand-in), or from the system's
    /// default library. Never fails: without NVML, the inventory is empty and says why.
    pub fn open(lib: Option<&Path>) -> Inventory {
        let mut inv = Inventory {
            lib: lib.map(Path::to_path_buf),
            nvml: None,
            status: NvmlStatus {
                available: false,
                reason: None,
            },
            last: Vec::new(),
        };
        inv.connect();
        inv
    }

    fn connect(&mut self) {
        let result = match &self.lib {
            Some(path) => Nvml::builder().lib_path(path.as_os_str()).init(),
            None => Nvml::init(),
        };
        match result {
            Ok(nvml) => {
                self.nvml = Some(nvml);
                self.status = NvmlStatus {
                    available: true,
                    reason: None,
                };
            }
            Err(e) => {
                self.nvml = None;
                let reason = match e {
                    nvml_wrapper::error::NvmlError::LibloadingError(_)
                    | nvml_wrapper::error::NvmlError::DriverNotLoaded => format!(
                        "no NVIDIA driver library ({}): running CPU-only",
                        self.lib
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_else(|| "libnvidia-ml.so.1".into())
                    ),
                    other => format!("NVML did not start: {other}; running CPU-only"),
                };
                self.status = NvmlStatus {
                    available: false,
                    reason: Some(reason),
                };
            }
        }
    }

    pub fn status(&self) -> &NvmlStatus {
        &self.status
    }

    /// Reads every GPU now. A GPU that errors is reported unhealthy (with its last known figures);
    /// NVML is re-opened at the next call.
    pub fn sample(&mut self) -> Vec<GpuInfo> {
        if self.nvml.is_none() && self.status.available {
            self.connect();
        }
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        let count = match nvml.device_count() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "NVML failed; it is re-opened at the next sample");
                self.nvml = None;
                return self.last.iter().cloned().map(unhealthy).collect();
            }
        };
        let mut out = Vec::with_capacity(count as usize);
        let mut failed = false;
        for index in 0..count {
            match read(nvml, index) {
                Ok(info) => out.push(info),
                Err(e) => {
                    tracing::warn!(gpu = index, error = %e, "a GPU does not answer; marked unhealthy");
                    failed = true;
                    let known = self.last.iter().find(|g| g.index == index).cloned();
                    out.push(unhealthy(known.unwrap_or_else(|| GpuInfo {
                        index,
                        name: "unknown".into(),
                        uuid: String::new(),
                        memory_total: 0,
                        memory_used: 0,
                        utilization: 0,
                        temperature_c: None,
                        power_mw: None,
                        mig_enabled: false,
                        mig: Vec::new(),
                        healthy: false,
                        processes: Vec::new(),
                    })));
                }
            }
        }
        if failed {
            self.nvml = None;
        }
        self.last = out.clone();
        out
    }
}

fn unhealthy(mut g: GpuInfo) -> GpuInfo {
    g.healthy = false;
    g
}

fn read(nvml: &Nvml, index: u32) -> Result<GpuInfo, nvml_wrapper::error::NvmlError> {
    let d = nvml.device_by_index(index)?;
    let memory = d.memory_info()?;
    let processes = d
        .running_compute_processes()?
        .into_iter()
        .map(|p| GpuProcess {
            pid: p.pid,
            used_memory: match p.used_gpu_memory {
                UsedGpuMemory::Used(bytes) => bytes,
                UsedGpuMemory::Unavailable => 0,
            },
        })
        .collect();
    let mig_enabled = d.mig_mode().map(|m| m.current == 1).unwrap_or(false);
    let mut mig = Vec::new();
    if mig_enabled {
        for slot in 0..d.mig_device_count().unwrap_or(0) {
            // Empty slots answer NOT_FOUND.
            let Ok(m) = d.mig_device_by_index(slot) else {
                continue;
            };
            let name = m.name().unwrap_or_default();
            mig.push(MigInstance {
                uuid: m.uuid()?,
                profile: name
                    .rsplit_once("MIG ")
                    .map(|(_, p)| p.trim().to_string())
                    .unwrap_or(name),
                memory_total: m.memory_info().map(|i| i.total).unwrap_or(0),
            });
        }
    }
    Ok(GpuInfo {
        index,
        name: d.name()?,
        uuid: d.uuid()?,
        memory_total: memory.total,
        memory_used: memory.used,
        utilization: d.utilization_rates().map(|u| u.gpu).unwrap_or(0),
        temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
        power_mw: d.power_usage().ok(),
        mig_enabled,
        mig,
        healthy: true,
        processes,
    })
}
