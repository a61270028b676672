//! A fake `libnvidia-ml` for tests and demos, so Petri's real NVML code (nvml-wrapper) runs on a
//! machine without a GPU. It exports the NVML functions Petri calls and answers them from the JSON
//! file named by `PETRI_FAKE_NVML`, read again on every call (a test can change the GPUs while the
//! daemon runs):
//!
//! ```json
//! {"gpus": [{"name": "Fake GPU", "uuid": "GPU-fake-0", "memory_total": 17179869184,
//!            "utilization": 0, "temperature": 40, "power_mw": 70000, "lost": false,
//!            "processes": [{"pid": 4242, "used_memory": 10737418240}]}]}
//! ```
//!
//! Memory used is the sum of the processes' memory. A `lost` GPU answers `NVML_ERROR_GPU_IS_LOST`.
#![allow(non_snake_case, clippy::missing_safety_doc)]

use std::ffi::{c_char, c_uint};

use serde::Deserialize;

type Ret = c_uint;
const SUCCESS: Ret = 0;
const INVALID_ARGUMENT: Ret = 2;
const INSUFFICIENT_SIZE: Ret = 7;
const GPU_IS_LOST: Ret = 15;
const UNKNOWN: Ret = 999;

#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    gpus: Vec<FakeGpu>,
}

#[derive(Deserialize, Clone)]
struct FakeGpu {
    #[serde(default = "default_name")]
    name: String,
    uuid: String,
    memory_total: u64,
    #[serde(default)]
    utilization: u32,
    #[serde(default = "default_temperature")]
    temperature: u32,
    #[serde(default)]
    power_mw: u32,
    #[serde(default)]
    lost: bool,
    #[serde(default)]
    processes: Vec<FakeProcess>,
    /// MIG instances; a GPU with any has MIG enabled.
    #[serde(default)]
    mig: Vec<FakeMig>,
}

#[derive(Deserialize, Clone)]
struct FakeMig {
    uuid: String,
    profile: String,
    memory_total: u64,
}

#[derive(Deserialize, Clone)]
struct FakeProcess {
    pid: u32,
    used_memory: u64,
}

fn default_name() -> String {
    "Petri Fake GPU".into()
}
fn default_temperature() -> u32 {
    40
}

fn config() -> Option<Config> {
    let path = std::env::var_os("PETRI_FAKE_NVML")?;
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// The GPU behind a handle: GPU handles are index + 1; a MIG instance's handle carries its slot
/// + 1 in the bits above 16, and answers as a small GPU of its own.
fn gpu(device: *mut std::ffi::c_void) -> Result<FakeGpu, Ret> {
    let raw = device as usize;
    let index = (raw & 0xffff).checked_sub(1).ok_or(INVALID_ARGUMENT)?;
    let gpu = config()
        .ok_or(UNKNOWN)?
        .gpus
        .get(index)
        .cloned()
        .ok_or(INVALID_ARGUMENT)?;
    if gpu.lost {
        return Err(GPU_IS_LOST);
    }
    match (raw >> 16).checked_sub(1) {
        None => Ok(gpu),
        Some(slot) => {
            let m = gpu.mig.get(slot).cloned().ok_or(INVALID_ARGUMENT)?;
            Ok(FakeGpu {
                name: format!("{} MIG {}", gpu.name, m.profile),
                uuid: m.uuid,
                memory_total: m.memory_total,
                processes: Vec::new(),
                mig: Vec::new(),
                ..gpu
            })
        }
    }
}

unsafe fn write_str(text: &str, out: *mut c_char, len: c_uint) -> Ret {
    if out.is_null() || (len as usize) < text.len() + 1 {
        return INSUFFICIENT_SIZE;
    }
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), out as *mut u8, text.len());
        *out.add(text.len()) = 0;
    }
    SUCCESS
}

macro_rules! answer {
    ($e:expr) => {
        match $e {
            Ok(()) => SUCCESS,
            Err(code) => code,
        }
    };
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit_v2() -> Ret {
    if config().is_some() { SUCCESS } else { UNKNOWN }
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> Ret {
    nvmlInit_v2()
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlShutdown() -> Ret {
    SUCCESS
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlErrorString(result: Ret) -> *const c_char {
    let text: &'static [u8] = match result {
        SUCCESS => b"Success\0",
        INVALID_ARGUMENT => b"Invalid argument\0",
        INSUFFICIENT_SIZE => b"Insufficient size\0",
        GPU_IS_LOST => b"GPU is lost\0",
        _ => b"Unknown error\0",
    };
    text.as_ptr() as *const c_char
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> Ret {
    let Some(c) = config() else { return UNKNOWN };
    if count.is_null() {
        return INVALID_ARGUMENT;
    }
    unsafe { *count = c.gpus.len() as c_uint };
    SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut *mut std::ffi::c_void,
) -> Ret {
    let Some(c) = config() else { return UNKNOWN };
    if device.is_null() || index as usize >= c.gpus.len() {
        return INVALID_ARGUMENT;
    }
    unsafe { *device = (index as usize + 1) as *mut std::ffi::c_void };
    SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetName(
    device: *mut std::ffi::c_void,
    name: *mut c_char,
    len: c_uint,
) -> Ret {
    match gpu(device) {
        Ok(g) => unsafe { write_str(&g.name, name, len) },
        Err(code) => code,
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: *mut std::ffi::c_void,
    uuid: *mut c_char,
    len: c_uint,
) -> Ret {
    match gpu(device) {
        Ok(g) => unsafe { write_str(&g.uuid, uuid, len) },
        Err(code) => code,
    }
}

#[repr(C)]
pub struct MemoryV2 {
    version: c_uint,
    total: u64,
    reserved: u64,
    free: u64,
    used: u64,
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: *mut std::ffi::c_void,
    memory: *mut MemoryV2,
) -> Ret {
    answer!(gpu(device).and_then(|g| {
        if memory.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        let used: u64 = g.processes.iter().map(|p| p.used_memory).sum();
        unsafe {
            (*memory).total = g.memory_total;
            (*memory).reserved = 0;
            (*memory).used = used.min(g.memory_total);
            (*memory).free = g.memory_total.saturating_sub(used);
        }
        Ok(())
    }))
}

#[repr(C)]
pub struct Utilization {
    gpu: c_uint,
    memory: c_uint,
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(
    device: *mut std::ffi::c_void,
    out: *mut Utilization,
) -> Ret {
    answer!(gpu(device).and_then(|g| {
        if out.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        unsafe {
            (*out).gpu = g.utilization;
            (*out).memory = g.utilization;
        }
        Ok(())
    }))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTemperature(
    device: *mut std::ffi::c_void,
    _sensor: c_uint,
    out: *mut c_uint,
) -> Ret {
    answer!(gpu(device).and_then(|g| {
        if out.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        unsafe { *out = g.temperature };
        Ok(())
    }))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPowerUsage(
    device: *mut std::ffi::c_void,
    out: *mut c_uint,
) -> Ret {
    answer!(gpu(device).and_then(|g| {
        if out.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        unsafe { *out = g.power_mw };
        Ok(())
    }))
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ProcessInfo {
    pid: c_uint,
    used_gpu_memory: u64,
    gpu_instance_id: c_uint,
    compute_instance_id: c_uint,
}

/// Called first with a NULL buffer: answers INSUFFICIENT_SIZE with the count, as NVML does.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v3(
    device: *mut std::ffi::c_void,
    count: *mut c_uint,
    infos: *mut ProcessInfo,
) -> Ret {
    let g = match gpu(device) {
        Ok(g) => g,
        Err(code) => return code,
    };
    if count.is_null() {
        return INVALID_ARGUMENT;
    }
    let n = g.processes.len();
    let room = unsafe { *count } as usize;
    unsafe { *count = n as c_uint };
    if n == 0 {
        return SUCCESS;
    }
    if infos.is_null() || room < n {
        return INSUFFICIENT_SIZE;
    }
    for (i, p) in g.processes.iter().enumerate() {
        unsafe {
            *infos.add(i) = ProcessInfo {
                pid: p.pid,
                used_gpu_memory: p.used_memory,
                gpu_instance_id: u32::MAX,
                compute_instance_id: u32::MAX,
            };
        }
    }
    SUCCESS
}

/// MIG is on for fake GPUs that list MIG instances (current, pending).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: *mut std::ffi::c_void,
    current: *mut c_uint,
    pending: *mut c_uint,
) -> Ret {
    answer!(gpu(device).and_then(|g| {
        if current.is_null() || pending.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        let on = !g.mig.is_empty() as c_uint;
        unsafe {
            *current = on;
            *pending = on;
        }
        Ok(())
    }))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMaxMigDeviceCount(
    device: *mut std::ffi::c_void,
    count: *mut c_uint,
) -> Ret {
    answer!(gpu(device).and_then(|g| {
        if count.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        unsafe { *count = g.mig.len() as c_uint };
        Ok(())
    }))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    device: *mut std::ffi::c_void,
    index: c_uint,
    mig: *mut *mut std::ffi::c_void,
) -> Ret {
    answer!(gpu(device).and_then(|g| {
        if mig.is_null() || index as usize >= g.mig.len() {
            return Err(INVALID_ARGUMENT);
        }
        let handle = (device as usize & 0xffff) | ((index as usize + 1) << 16);
        unsafe { *mig = handle as *mut std::ffi::c_void };
        Ok(())
    }))
}
