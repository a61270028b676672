//! ONNX graphs of plain neural networks (an MLP exported from PyTorch: Gemm, MatMul, Relu,
//! Softmax…), evaluated by candle-onnx. One float input `[rows, k]`; every graph output is
//! answered. A graph candle cannot evaluate (an operator it lacks, such as scikit-learn's
//! `ai.onnx.ml` ones) is refused at load with candle's reason: a dry run on one row of zeros.
//! A graph that computes each row on its own (an MLP does; one that mixes rows, or whose batch
//! dimension is fixed, does not) says so ([`OnnxModel::row_shapes`]), and its callers may run
//! the rows of many requests at once.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use candle_core::{DType, Tensor};
use candle_onnx::onnx::{ModelProto, tensor_shape_proto, type_proto};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::{Device, MlError, Result};

/// The file a model folder holds an ONNX graph in.
pub const ONNX_FILE: &str = "model.onnx";

/// The file beside [`ONNX_FILE`] that keeps what a check of the graph found ([`GraphIo`]): the
/// daemon writes it when it checks a version at `serve`, and its front and the replicas read it,
/// so that all of them agree on what a batch of the graph is.
pub const IO_FILE: &str = ".petri-graph-io.json";

/// One output of a run: its name, shape and values.
pub type Output = (String, Vec<usize>, Vec<f32>);

/// What a graph takes and answers, learnt at load: enough to read its requests and write its
/// answers where the graph itself is not (the daemon's front of a deployment).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphIo {
    /// The input's name.
    pub input: String,
    /// The numbers in a row.
    pub width: usize,
    /// The outputs' names.
    pub outputs: Vec<String>,
    /// Each output's shape past the rows, when the graph computes each row on its own.
    pub row_shapes: Option<Vec<Vec<usize>>>,
}

impl GraphIo {
    /// What a check of the graph in `dir` found, when one left [`IO_FILE`] there; an error when
    /// the file is there but cannot be read.
    pub fn read(dir: &Path) -> Result<Option<GraphIo>> {
        let path = dir.join(IO_FILE);
        let bad = |e: String| MlError::InvalidModel(format!("{}: {e}", path.display()));
        let io: GraphIo = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(bad(e.to_string())),
        };
        match &io.row_shapes {
            Some(shapes) if shapes.len() != io.outputs.len() => Err(bad(format!(
                "{} outputs but the shapes of {}",
                io.outputs.len(),
                shapes.len()
            ))),
            _ => Ok(Some(io)),
        }
    }

    /// Keeps this finding in `dir` ([`IO_FILE`]), whole or not at all: a reader meanwhile sees
    /// the old file or the new one. Nothing is written when the file already says the same.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).map_err(|e| MlError::Compute(e.to_string()))?;
        let path = dir.join(IO_FILE);
        if std::fs::read(&path).is_ok_and(|was| was == bytes) {
            return Ok(());
        }
        petri_domain::files::write_atomic(&path, &bytes, 0o644)
            .map_err(|e| MlError::Compute(format!("writing {}: {e}", path.display())))
    }

    /// Whether `other` describes the same inputs and outputs (its finding on rows aside).
    fn same_graph(&self, other: &GraphIo) -> bool {
        self.input == other.input && self.width == other.width && self.outputs == other.outputs
    }

    /// The numbers of one row in each output, when the graph computes its rows apart.
    fn row_sizes(&self) -> Option<Vec<usize>> {
        let shapes = self.row_shapes.as_ref()?;
        Some(shapes.iter().map(|s| s.iter().product()).collect())
    }

    /// The layout of a batch's answer, one way: each row's answer is its slice of every output,
    /// one output after another. `outputs` are a run of `rows` rows.
    pub fn split_rows(&self, outputs: Vec<Output>, rows: usize) -> Result<Vec<Vec<f32>>> {
        let sizes = self.rows_apart_or_refuse()?;
        let each: usize = sizes.iter().sum();
        let mut answers: Vec<Vec<f32>> = (0..rows).map(|_| Vec::with_capacity(each)).collect();
        for ((name, _, values), n) in outputs.iter().zip(&sizes) {
            if Some(values.len()) != rows.checked_mul(*n) {
                return Err(MlError::Compute(format!(
                    "output `{name}` gave {} values for {rows} rows of {n}",
                    values.len()
                )));
            }
            for (answer, chunk) in answers.iter_mut().zip(values.chunks_exact((*n).max(1))) {
                answer.extend_from_slice(chunk);
            }
        }
        Ok(answers)
    }

    /// The same layout, the other way: the outputs of `rows` rows from each row's answer.
    pub fn join_rows(&self, answers: &[Vec<f32>]) -> Result<Vec<Output>> {
        let sizes = self.rows_apart_or_refuse()?;
        let each: usize = sizes.iter().sum();
        if let Some(a) = answers.iter().find(|a| a.len() != each) {
            return Err(MlError::Compute(format!(
                "a row's answer holds {} values; the graph's outputs hold {each}",
                a.len()
            )));
        }
        let shapes = self.row_shapes.iter().flatten();
        let mut at = 0;
        Ok(self
            .outputs
            .iter()
            .zip(shapes)
            .zip(sizes)
            .map(|((name, shape), n)| {
                let values = answers
                    .iter()
                    .flat_map(|a| a[at..at + n].iter().copied())
                    .collect();
                at += n;
                let shape = std::iter::once(answers.len())
                    .chain(shape.iter().copied())
                    .collect();
                (name.clone(), shape, values)
            })
            .collect())
    }

    fn rows_apart_or_refuse(&self) -> Result<Vec<usize>> {
        self.row_sizes().ok_or_else(|| {
            MlError::Compute("the graph mixes its rows: it has no layout of rows".into())
        })
    }
}

/// A loaded ONNX graph, ready to run. Share it with an `Arc`.
#[derive(Debug)]
pub struct OnnxModel {
    proto: ModelProto,
    io: GraphIo,
    /// Float weights in the graph: about the multiply-adds of one row.
    weights: usize,
    device: Device,
}

impl OnnxModel {
    /// Loads `model.onnx` from `dir` and probes its rows: the check of a version.
    pub fn load(dir: &Path, device: &Device) -> Result<OnnxModel> {
        OnnxModel::from_bytes(&Self::read(dir)?, device)
    }

    /// Loads `model.onnx` from `dir` as its check found it: the rows are taken as apart (or not)
    /// as [`IO_FILE`] says when it is there and describes this graph, since whoever batches for
    /// this graph (the daemon's front) went by it; the graph is probed only when it is not.
    pub fn load_checked(dir: &Path, device: &Device) -> Result<OnnxModel> {
        let (mut model, fixed_rows) = Self::parse(&Self::read(dir)?, device)?;
        match GraphIo::read(dir).ok().flatten() {
            // A graph that fixes its batch size runs each request alone, whatever is kept.
            _ if fixed_rows => {}
            Some(found) if found.same_graph(&model.io) => model.io.row_shapes = found.row_shapes,
            _ => model.io.row_shapes = model.rows_apart(),
        }
        Ok(model)
    }

    fn read(dir: &Path) -> Result<Vec<u8>> {
        let path = dir.join(ONNX_FILE);
        std::fs::read(&path)
            .map_err(|e| MlError::InvalidModel(format!("reading {}: {e}", path.display())))
    }

    /// Loads a graph from its bytes, checking it has one float input `[rows, k]` and runs, and
    /// probes its rows.
    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<OnnxModel> {
        let (mut model, fixed_rows) = Self::parse(bytes, device)?;
        if !fixed_rows {
            model.io.row_shapes = model.rows_apart();
        }
        Ok(model)
    }

    /// The graph in `bytes`, checked and run once on a row of zeros, its rows not probed; and
    /// whether its batch dimension is fixed.
    fn parse(bytes: &[u8], device: &Device) -> Result<(OnnxModel, bool)> {
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
        let (width, fixed_rows) = match dims.as_slice() {
            [rows, Some(k)] if *k > 0 => (*k as usize, rows.is_some()),
            other => {
                return Err(bad(format!(
                    "input `{}` has shape {other:?}; Petri serves [rows, features] with a known \
                     number of features",
                    input.name
                )));
            }
        };
        let size =
            |t: &candle_onnx::onnx::TensorProto| t.dims.iter().product::<i64>().max(0) as usize;
        // Weights are initializers, or tensors of Constant nodes.
        let weights = graph.initializer.iter().map(size).sum::<usize>()
            + graph
                .node
                .iter()
                .filter(|n| n.op_type == "Constant")
                .flat_map(|n| n.attribute.iter().filter_map(|a| a.t.as_ref()))
                .map(size)
                .sum::<usize>();
        let model = OnnxModel {
            io: GraphIo {
                input: input.name.clone(),
                width,
                outputs: graph.output.iter().map(|o| o.name.clone()).collect(),
                row_shapes: None,
            },
            proto,
            weights,
            device: device.clone(),
        };
        model
            .run(vec![0.0; width], 1)
            .map_err(|e| bad(format!("model.onnx cannot be run: {e}")))?;
        Ok((model, fixed_rows))
    }

    /// Each output's shape past the rows, when the graph computes each row on its own (two
    /// different rows run together answered what each answers alone at load); `None` when it
    /// does not, or its batch dimension is fixed: then each request must run alone.
    pub fn row_shapes(&self) -> Option<&[Vec<usize>]> {
        self.io.row_shapes.as_deref()
    }

    /// What the graph takes and answers.
    pub fn io(&self) -> &GraphIo {
        &self.io
    }

    /// About the multiply-adds of running `rows` rows (a dense network's weights, once a row).
    pub fn cost(&self, rows: usize) -> usize {
        rows * self.weights
    }

    /// The probe behind [`Self::row_shapes`]: two different rows of non-zero numbers, each
    /// alone, then together in both orders (a graph that carries anything from one row to the
    /// next answers differently in one of them). Outputs that hold nothing per row are not
    /// batched either.
    fn rows_apart(&self) -> Option<Vec<Vec<usize>>> {
        let width = self.io.width;
        let a: Vec<f32> = (0..width)
            .map(|i| if i % 2 == 0 { 0.75 } else { -1.25 } + i as f32 * 0.1)
            .collect();
        let b: Vec<f32> = (0..width).map(|i| 1.5 - i as f32 * 0.2).collect();
        let alone_a = self.run(a.clone(), 1).ok()?;
        let alone_b = self.run(b.clone(), 1).ok()?;
        let ab = self.run([&a[..], &b[..]].concat(), 2).ok()?;
        let ba = self.run([&b[..], &a[..]].concat(), 2).ok()?;
        let close = |x: &[f32], y: &[f32]| {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + x.abs().max(y.abs())))
        };
        let mut shapes = Vec::new();
        for (((oa, ob), ab), ba) in alone_a.iter().zip(&alone_b).zip(&ab).zip(&ba) {
            let rest = oa.1.get(1..)?;
            let n: usize = rest.iter().product();
            let rows_of =
                |o: &Output, rows| o.1.first() == Some(&rows) && o.1.get(1..) == Some(rest);
            let apart = n > 0
                && rows_of(oa, 1)
                && rows_of(ob, 1)
                && rows_of(ab, 2)
                && rows_of(ba, 2)
                && close(&ab.2[..n], &oa.2)
                && close(&ab.2[n..], &ob.2)
                && close(&ba.2[..n], &ob.2)
                && close(&ba.2[n..], &oa.2);
            if !apart {
                return None;
            }
            shapes.push(rest.to_vec());
        }
        Some(shapes)
    }

    /// The graph's input name.
    pub fn input(&self) -> &str {
        &self.io.input
    }

    /// How many features a row holds.
    pub fn width(&self) -> usize {
        self.io.width
    }

    /// The graph's output names.
    pub fn outputs(&self) -> &[String] {
        &self.io.outputs
    }

    /// Runs `rows` rows (`matrix` row after row, `width` values each).
    pub fn run(&self, matrix: Vec<f32>, rows: usize) -> Result<Vec<Output>> {
        let width = self.io.width;
        if Some(matrix.len()) != rows.checked_mul(width) {
            return Err(MlError::BadInput(format!(
                "{} values do not make {rows} rows of {width} features",
                matrix.len(),
            )));
        }
        let x = Tensor::from_vec(matrix, (rows, width), &self.device)?;
        let mut out =
            candle_onnx::simple_eval(&self.proto, HashMap::from([(self.io.input.clone(), x)]))
                .map_err(|e| MlError::Compute(e.to_string()))?;
        self.io
            .outputs
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

#[cfg(test)]
mod tests {
    use candle_onnx::onnx::tensor_proto::DataType;
    use candle_onnx::onnx::tensor_shape_proto::{Dimension, dimension};
    use candle_onnx::onnx::{
        AttributeProto, GraphProto, NodeProto, TensorProto, TensorShapeProto, TypeProto,
        ValueInfoProto, attribute_proto::AttributeType,
    };

    use super::*;

    fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute: attrs,
            ..Default::default()
        }
    }

    fn int(name: &str, i: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            i,
            r#type: AttributeType::Int as i32,
            ..Default::default()
        }
    }

    fn weights(name: &str, dims: &[i64], values: Vec<f32>) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: DataType::Float as i32,
            float_data: values,
            ..Default::default()
        }
    }

    fn value(name: &str, rows: Option<i64>, k: i64) -> ValueInfoProto {
        let dim = |v| Dimension {
            value: Some(v),
            ..Default::default()
        };
        let rows = match rows {
            Some(n) => dimension::Value::DimValue(n),
            None => dimension::Value::DimParam("batch".into()),
        };
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: DataType::Float as i32,
                    shape: Some(TensorShapeProto {
                        dim: vec![dim(rows), dim(dimension::Value::DimValue(k))],
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// An MLP of 2 inputs, 3 hidden relu units and 2 classes, as PyTorch's exporter writes
    /// `Linear` (Gemm with transB); its softmax over `axis` (1: each row's classes; 0: mixes
    /// the rows).
    fn mlp(rows: Option<i64>, axis: i64) -> Vec<u8> {
        let graph = GraphProto {
            node: vec![
                node("Gemm", &["x", "w1", "b1"], "h", vec![int("transB", 1)]),
                node("Relu", &["h"], "r", vec![]),
                node("Gemm", &["r", "w2", "b2"], "z", vec![int("transB", 1)]),
                node("Softmax", &["z"], "p", vec![int("axis", axis)]),
            ],
            initializer: vec![
                weights("w1", &[3, 2], vec![1.0, -1.0, 0.5, 2.0, -1.0, 0.25]),
                weights("b1", &[3], vec![0.1, 0.2, 0.3]),
                weights("w2", &[2, 3], vec![1.0, 0.0, -1.0, 0.5, 1.0, 1.0]),
                weights("b2", &[2], vec![0.0, 0.5]),
            ],
            input: vec![value("x", rows, 2)],
            output: vec![value("p", rows, 2)],
            ..Default::default()
        };
        ModelProto {
            graph: Some(graph),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn a_graph_that_computes_rows_apart_can_batch_them() {
        let g = OnnxModel::from_bytes(&mlp(None, 1), &Device::Cpu).unwrap();
        assert_eq!((g.input(), g.width()), ("x", 2));
        assert_eq!(g.row_shapes(), Some(&[vec![2]][..]));
        assert_eq!(g.cost(10), 10 * (6 + 3 + 6 + 2));
        // Three rows at once answer what each answers alone.
        let rows = [[0.5, -2.0], [3.0, 1.0], [-1.0, 0.25]];
        let together = g.run(rows.concat(), 3).unwrap();
        assert_eq!(together[0].1, vec![3, 2]);
        for (i, row) in rows.iter().enumerate() {
            let alone = g.run(row.to_vec(), 1).unwrap();
            let got = &together[0].2[2 * i..2 * i + 2];
            assert!(
                got.iter()
                    .zip(&alone[0].2)
                    .all(|(a, b)| (a - b).abs() < 1e-6),
                "{got:?}"
            );
        }
    }

    #[test]
    fn a_replica_goes_by_the_check_kept_beside_the_graph() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ONNX_FILE), mlp(None, 1)).unwrap();
        // No check kept: the replica probes the graph itself.
        assert_eq!(GraphIo::read(dir.path()).unwrap(), None);
        let probed = OnnxModel::load_checked(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(probed.row_shapes(), Some(&[vec![2]][..]));
        // The check's finding has the last word, even against the replica's own probe.
        let kept = GraphIo {
            row_shapes: None,
            ..probed.io().clone()
        };
        kept.write(dir.path()).unwrap();
        assert_eq!(GraphIo::read(dir.path()).unwrap().as_ref(), Some(&kept));
        let g = OnnxModel::load_checked(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(g.row_shapes(), None);
        // A check of another graph is not this graph's: probed again.
        GraphIo {
            width: 3,
            ..kept.clone()
        }
        .write(dir.path())
        .unwrap();
        let g = OnnxModel::load_checked(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(g.row_shapes(), Some(&[vec![2]][..]));
        // A file that cannot be read, or does not hold together, says which; the replica
        // probes the graph then.
        std::fs::write(dir.path().join(IO_FILE), b"{").unwrap();
        let e = GraphIo::read(dir.path()).unwrap_err();
        assert!(e.to_string().contains(IO_FILE), "{e}");
        GraphIo {
            row_shapes: Some(vec![vec![2], vec![1]]),
            ..kept.clone()
        }
        .write(dir.path())
        .unwrap();
        let e = GraphIo::read(dir.path()).unwrap_err();
        assert!(
            e.to_string().contains("1 outputs but the shapes of 2"),
            "{e}"
        );
        let g = OnnxModel::load_checked(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(g.row_shapes(), Some(&[vec![2]][..]));
        // Only the finding is left in the folder: no temporary file.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn rows_split_from_a_run_join_back_into_its_outputs() {
        let io = GraphIo {
            input: "x".into(),
            width: 2,
            outputs: vec!["p".into(), "q".into()],
            row_shapes: Some(vec![vec![2], vec![1, 3]]),
        };
        let outputs = vec![
            ("p".to_string(), vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]),
            (
                "q".to_string(),
                vec![2, 1, 3],
                vec![5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
            ),
        ];
        let rows = io.split_rows(outputs.clone(), 2).unwrap();
        assert_eq!(
            rows,
            vec![
                vec![1.0, 2.0, 5.0, 6.0, 7.0],
                vec![3.0, 4.0, 8.0, 9.0, 10.0]
            ]
        );
        assert_eq!(io.join_rows(&rows).unwrap(), outputs);
        // No rows: outputs of no rows.
        let none = io.join_rows(&[]).unwrap();
        assert_eq!((none[1].1.clone(), none[1].2.len()), (vec![0, 1, 3], 0));
        // A run or an answer of the wrong size is an error, not a panic.
        let short = vec![("p".to_string(), vec![1, 2], vec![1.0, 2.0])];
        assert!(io.split_rows(short, 2).is_err());
        assert!(io.join_rows(&[vec![1.0]]).is_err());
        // A graph that mixes its rows has no layout of rows.
        let mixes = GraphIo {
            row_shapes: None,
            ..io
        };
        assert!(mixes.join_rows(&rows).is_err());
    }

    #[test]
    fn a_graph_that_mixes_rows_or_fixes_their_number_runs_each_request_alone() {
        // A softmax over the rows: served, but never batched.
        let mixes = OnnxModel::from_bytes(&mlp(None, 0), &Device::Cpu).unwrap();
        assert_eq!(mixes.row_shapes(), None);
        // A batch dimension of one, fixed in the graph.
        let fixed = OnnxModel::from_bytes(&mlp(Some(1), 1), &Device::Cpu).unwrap();
        assert_eq!(fixed.row_shapes(), None);
        // Whatever a file beside it says.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ONNX_FILE), mlp(Some(1), 1)).unwrap();
        GraphIo {
            row_shapes: Some(vec![vec![2]]),
            ..fixed.io().clone()
        }
        .write(dir.path())
        .unwrap();
        let g = OnnxModel::load_checked(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(g.row_shapes(), None);
    }

    #[test]
    fn a_graph_that_carries_one_row_into_the_next_is_not_batched() {
        // A running sum down the rows: a row of zeros then one of ones answers the ones alone,
        // so only both orders of two non-zero rows tell it apart.
        let graph = GraphProto {
            node: vec![node("CumSum", &["x", "axis"], "p", vec![])],
            initializer: vec![TensorProto {
                name: "axis".into(),
                data_type: DataType::Int64 as i32,
                int64_data: vec![0],
                ..Default::default()
            }],
            input: vec![value("x", None, 2)],
            output: vec![value("p", None, 2)],
            ..Default::default()
        };
        let bytes = ModelProto {
            graph: Some(graph),
            ..Default::default()
        }
        .encode_to_vec();
        let g = OnnxModel::from_bytes(&bytes, &Device::Cpu).unwrap();
        assert_eq!(g.row_shapes(), None);
    }

    #[test]
    fn a_graph_candle_cannot_run_is_refused_with_the_reason() {
        let mut bytes = mlp(None, 1);
        bytes.truncate(bytes.len() / 2);
        let e = OnnxModel::from_bytes(&bytes, &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("not an ONNX model"), "{e}");
        let odd = ModelProto {
            graph: Some(GraphProto {
                node: vec![node("NoSuchOp", &["x"], "p", vec![])],
                input: vec![value("x", None, 2)],
                output: vec![value("p", None, 2)],
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = OnnxModel::from_bytes(&odd.encode_to_vec(), &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("cannot be run"), "{e}");
    }
}
