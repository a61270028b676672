//! NVIDIA's MPS control daemon, one per GPU that should enforce its slices in the driver.
//!
//! Each MPS GPU gets its own pipe and log folders; jobs on it are MPS clients through
//! `CUDA_MPS_PIPE_DIRECTORY`, and the driver holds each to `CUDA_MPS_PINNED_DEVICE_MEM_LIMIT` and
//! `CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`. The control daemon outlives Petri's daemon, as the jobs
//! that use it do.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where one GPU's MPS control daemon listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mps {
    pub pipe_dir: PathBuf,
    pub log_dir: PathBuf,
}

/// Starts (or finds running) the MPS control daemon for the GPU `uuid`, under `dir`.
pub fn start(control: &Path, uuid: &str, dir: &Path) -> Result<Mps, String> {
    let mps = Mps {
        pipe_dir: dir.join("pipe"),
        log_dir: dir.join("log"),
    };
    for d in [&mps.pipe_dir, &mps.log_dir] {
        std::fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    if mps.pipe_dir.join("control").exists() {
        return Ok(mps); // already running (it outlives Petri)
    }
    let status = Command::new(control)
        .arg("-d")
        .env("CUDA_VISIBLE_DEVICES", uuid)
        .env("CUDA_MPS_PIPE_DIRECTORY", &mps.pipe_dir)
        .env("CUDA_MPS_LOG_DIRECTORY", &mps.log_dir)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", control.display()))?;
    if !status.success() {
        return Err(format!(
            "{} -d failed ({status}); see {}",
            control.display(),
            mps.log_dir.display()
        ));
    }
    Ok(mps)
}
