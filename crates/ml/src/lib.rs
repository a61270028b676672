//! Petri's models, natively: the only crate that knows candle. [`spec`] is Petri's model format
//! (`docs/model-format.md`) as types, with the checks a folder must pass to be a model
//! ([`spec::check`]); [`Mlp`] loads one onto a device and predicts a batch of raw rows: the
//! featurization in float64 as the format says, the network in float32 with candle, one matrix
//! product per layer for the whole batch.

mod mlp;
pub mod onnx;
pub mod spec;

pub use mlp::{Device, Mlp, Prediction, Rows};
pub use onnx::{GraphIo, OnnxModel};

/// Why a model could not be loaded or a request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// The files are not a model Petri can run (what is wrong, for the user).
    #[error("{0}")]
    InvalidModel(String),
    /// A request's rows do not fit the model's inputs (what was expected).
    #[error("{0}")]
    BadInput(String),
    /// candle failed while computing (a bug or a device fault, not the caller's input).
    #[error("inference failed: {0}")]
    Compute(String),
}

impl From<candle_core::Error> for MlError {
    fn from(e: candle_core::Error) -> Self {
        MlError::Compute(e.to_string())
    }
}

pub type Result<T, E = MlError> = std::result::Result<T, E>;

/// The device a replica computes on: the GPU its job reserved (`CUDA_VISIBLE_DEVICES`, set by the
/// queue) when Petri was built with the `cuda` feature, else the CPU; and, when a GPU was
/// reserved but the CPU computes, why.
pub fn reserved_device() -> (Device, Option<String>) {
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default();
    let visible = visible.trim();
    if visible.is_empty() || visible == "-1" {
        return (Device::Cpu, None);
    }
    match Device::new_cuda(0) {
        Ok(gpu) => (gpu, None),
        Err(_) if !cfg!(feature = "cuda") => (
            Device::Cpu,
            Some(format!(
                "a GPU is reserved ({visible}), but this build of Petri has no CUDA (build it \
                 with `--features cuda`)"
            )),
        ),
        Err(e) => (
            Device::Cpu,
            Some(format!(
                "CUDA did not start on the reserved GPU ({visible}): {e}"
            )),
        ),
    }
}
