//! ONNX graphs of plain neural networks (an MLP exported from PyTorch: Gemm, MatMul, Relu,
//! Softmax…), evaluated by candle-onnx. One float input `[rows, k]`; every graph output is
//! answered. A graph candle cannot evaluate (an operator it lacks, such as scikit-learn's
//! `ai.onnx.ml` ones) is refused at load with candle's reason: a dry run on one row of zeros.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use candle_core::{DType, Tensor};
use candle_onnx::onnx::{ModelProto, tensor_shape_proto, type_proto};
use prost::Message;

use crate::{Device, MlError, Result};

/// The file a model folder holds an ONNX graph in.
pub const ONNX_FILE: &str = "model.onnx";

/// One output of a run: its name, shape and values.
pub type Output = (String, Vec<usize>, Vec<f32>);

/// A loaded ONNX graph, ready to run. Share it with an `Arc`.
#[derive(Debug)]
pub struct OnnxModel {
    proto: ModelProto,
    input: String,
    width: usize,
    outputs: Vec<String>,
    device: Device,
}

impl OnnxModel {
    /// Loads `model.onnx` from `dir`.
    pub fn load(dir: &Path, device: &Device) -> Result<OnnxModel> {
        let path = dir.join(ONNX_FILE);
        let bytes = std::fs::read(&path)
            .map_err(|e| MlError::InvalidModel(format!("reading {}: {e}", path.display())))?;
        OnnxModel::from_bytes(&bytes, device)
    }

    /// Loads a graph from its bytes, checking it has one float input `[rows, k]` and runs.
    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<OnnxModel> {
        let bad = |m: String| MlError::InvalidModel(m);
        let proto = ModelProto::decode(bytes)
            .map_err(|e| bad(format!("model.onnx is not an ONNX model: {e}")))?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| bad("model.onnx holds no graph".into()))?;
        let weights: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<_> = graph
            .input
            .iter()
            .filter(|i| !weights.contains(i.name.as_str()))
            .collect();
        let [input] = inputs.as_slice() else {
            return Err(bad(format!(
                "model.onnx takes {} inputs; Petri serves graphs of one input [rows, features]",
                inputs.len()
            )));
        };
        let dims: Vec<Option<i64>> = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(type_proto::Value::TensorType(t)) => t
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match d.value {
                            Some(tensor_shape_proto::dimension::Value::DimValue(n)) => Some(n),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            _ => return Err(bad(format!("input `{}` is not a tensor", input.name))),
        };
        let width = match dims.as_slice() {
            [_, Some(k)] if *k > 0 => *k as usize,
            other => {
                return Err(bad(format!(
                    "input `{}` has shape {other:?}; Petri serves [rows, features] with a known \
                     number of features",
                    input.name
                )));
            }
        };
        let model = OnnxModel {
            outputs: graph.output.iter().map(|o| o.name.clone()).collect(),
            input: input.name.clone(),
            width,
            proto,
            device: device.clone(),
        };
        model
            .run(vec![0.0; width], 1)
            .map_err(|e| bad(format!("model.onnx cannot be run: {e}")))?;
        Ok(model)
    }

    /// The graph's input name.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// How many features a row holds.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The graph's output names.
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// Runs `rows` rows (`matrix` row after row, `width` values each).
    pub fn run(&self, matrix: Vec<f32>, rows: usize) -> Result<Vec<Output>> {
        if matrix.len() != rows * self.width {
            return Err(MlError::BadInput(format!(
                "{} values do not make {rows} rows of {} features",
                matrix.len(),
                self.width
            )));
        }
        let x = Tensor::from_vec(matrix, (rows, self.width), &self.device)?;
        let mut out =
            candle_onnx::simple_eval(&self.proto, HashMap::from([(self.input.clone(), x)]))
                .map_err(|e| MlError::Compute(e.to_string()))?;
        self.outputs
            .iter()
            .map(|name| {
                let t = out
                    .remove(name)
                    .ok_or_else(|| MlError::Compute(format!("the graph gave no `{name}`")))?;
                let shape = t.dims().to_vec();
                let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                Ok((name.clone(), shape, values))
            })
            .collect()
    }
}
