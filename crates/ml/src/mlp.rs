//! A model in Petri's format on a candle device: the featurization of raw rows (float64, as the
//! format says) and the network (float32), one matrix product per layer for a whole batch.

use std::path::Path;

use candle_core::{D, DType, Tensor};
use serde_json::Value;

use crate::spec::{ModelSpec, Output};
use crate::{MlError, Result};

pub use candle_core::Device;

/// A batch of raw rows, however a protocol carries them (columns of tensors, records, a split
/// data frame): the value of `column` in row `row`, if the request has one.
pub trait Rows {
    fn len(&self) -> usize;
    fn value(&self, row: usize, column: &str) -> Option<&Value>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One row's answer: its class and the probability of each class, in the model's class order.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub label: Value,
    pub probabilities: Vec<f32>,
}

/// A loaded model, ready to predict. Cheap to share between threads (`Arc` it).
#[derive(Debug)]
pub struct Mlp {
    spec: ModelSpec,
    /// Each layer's transposed weight `[in, out]` and bias `[out]`.
    layers: Vec<(Tensor, Tensor)>,
    device: Device,
}

impl Mlp {
    /// Loads the model in `dir` (`model.json`, `model.safetensors`) onto `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Mlp> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| {
                MlError::InvalidModel(format!("reading {}: {e}", dir.join(name).display()))
            })
        };
        Mlp::from_bytes(&read("model.json")?, &read("model.safetensors")?, device)
    }

    /// Loads a model from the bytes of its two files.
    pub fn from_bytes(model_json: &[u8], weights: &[u8], device: &Device) -> Result<Mlp> {
        let spec = ModelSpec::parse(model_json, weights).map_err(MlError::InvalidModel)?;
        let tensors = candle_core::safetensors::load_buffer(weights, device)
            .map_err(|e| MlError::InvalidModel(format!("model.safetensors: {e}")))?;
        let n = spec.architecture.layers.len() - 1;
        let mut layers = Vec::with_capacity(n);
        for i in 0..n {
            let get = |name: String| {
                tensors
                    .get(&name)
                    .cloned()
                    .ok_or_else(|| MlError::InvalidModel(format!("no tensor {name}")))
            };
            let w = get(format!("layers.{i}.weight"))?.t()?.contiguous()?;
            let b = get(format!("layers.{i}.bias"))?;
            layers.push((w, b));
        }
        Ok(Mlp {
            spec,
            layers,
            device: device.clone(),
        })
    }

    /// `model.json`.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The multiply-adds of running `rows` rows through the network (what a batch costs).
    pub fn cost(&self, rows: usize) -> usize {
        let l = &self.spec.architecture.layers;
        rows * l.windows(2).map(|w| w[0] * w[1]).sum::<usize>()
    }

    /// The feature vectors of `rows` ([`ModelSpec::featurize`]).
    pub fn featurize(&self, rows: &dyn Rows) -> Result<Vec<f32>> {
        self.spec.featurize(rows)
    }

    /// The class probabilities of `rows.len()` feature vectors (`featurize`'s output), one
    /// vector per row.
    pub fn probabilities(&self, features: Vec<f32>, rows: usize) -> Result<Vec<Vec<f32>>> {
        if rows == 0 {
            return Ok(Vec::new());
        }
        let mut h = Tensor::from_vec(features, (rows, self.spec.width()), &self.device)?;
        let last = self.layers.len() - 1;
        for (i, (w, b)) in self.layers.iter().enumerate() {
            h = h.matmul(w)?.broadcast_add(b)?;
            if i != last {
                h = h.relu()?;
            }
        }
        let p = match self.spec.architecture.output {
            Output::Softmax => {
                let max = h.max_keepdim(D::Minus1)?;
                let e = h.broadcast_sub(&max)?.exp()?;
                let sum = e.sum_keepdim(D::Minus1)?;
                e.broadcast_div(&sum)?
            }
            Output::Logistic => {
                // One unit: its sigmoid is the probability of classes[1].
                let p1 = (h.neg()?.exp()? + 1.0)?.recip()?;
                let p0 = (p1.neg()? + 1.0)?;
                Tensor::cat(&[&p0, &p1], 1)?
            }
        };
        Ok(p.to_dtype(DType::F32)?.to_vec2::<f32>()?)
    }

    /// Featurizes and runs `rows`: each row's class and probabilities.
    pub fn predict(&self, rows: &dyn Rows) -> Result<Vec<Prediction>> {
        let features = self.featurize(rows)?;
        let probabilities = self.probabilities(features, rows.len())?;
        Ok(self.label(probabilities))
    }

    /// Each row's class beside its probabilities ([`ModelSpec::label`]).
    pub fn label(&self, probabilities: Vec<Vec<f32>>) -> Vec<Prediction> {
        self.spec.label(probabilities)
    }
}

/// What needs `model.json` alone: a request's rows in, its classes out. The daemon does this
/// part of serving itself, and a replica runs the network on the batched feature vectors.
impl ModelSpec {
    /// Reads and checks `model.json` in `dir` against the header of `model.safetensors`.
    pub fn load(dir: &Path) -> Result<ModelSpec> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| {
                MlError::InvalidModel(format!("reading {}: {e}", dir.join(name).display()))
            })
        };
        ModelSpec::parse(&read("model.json")?, &read("model.safetensors")?)
            .map_err(MlError::InvalidModel)
    }

    /// The feature vectors of `rows`, row after row (`rows.len() × width`). A missing or
    /// non-numeric value of a numeric column is refused; a categorical value that is none of the
    /// categories (or missing) sets all of that column's slots to 0, as the format says.
    pub fn featurize(&self, rows: &dyn Rows) -> Result<Vec<f32>> {
        let f = &self.features;
        let width = self.width();
        let mut out = Vec::with_capacity(rows.len() * width);
        for r in 0..rows.len() {
            for n in &f.numeric {
                let x = match rows.value(r, &n.name) {
                    Some(Value::Number(x)) => x.as_f64(),
                    Some(Value::Bool(_)) | Some(Value::String(_)) | Some(_) | None => None,
                };
                let x = x.filter(|x| x.is_finite()).ok_or_else(|| {
                    MlError::BadInput(match rows.value(r, &n.name) {
                        None => format!("row {r} has no value for `{}` (a number)", n.name),
                        Some(v) => {
                            format!("row {r}: `{}` must be a finite number, not {v}", n.name)
                        }
                    })
                })?;
                out.push(((x - n.mean) / n.scale) as f32);
            }
            for c in &f.categorical {
                let v = rows.value(r, &c.name);
                out.extend(
                    c.categories
                        .iter()
                        .map(|cat| if Some(cat) == v { 1.0 } else { 0.0 }),
                );
            }
        }
        Ok(out)
    }

    /// Each row's class (the most probable, the first on a tie) beside its probabilities.
    pub fn label(&self, probabilities: Vec<Vec<f32>>) -> Vec<Prediction> {
        probabilities
            .into_iter()
            .map(|p| {
                // The first class on a tie.
                let best = p
                    .iter()
                    .enumerate()
                    .fold(0, |best, (j, &x)| if x > p[best] { j } else { best });
                Prediction {
                    label: self.classes[best].clone(),
                    probabilities: p,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    /// Rows as maps from column to value.
    struct Records(Vec<HashMap<String, Value>>);

    impl Rows for Records {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn value(&self, row: usize, column: &str) -> Option<&Value> {
            self.0[row].get(column)
        }
    }

    fn weights(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .iter()
            .map(|(n, s, d)| {
                (
                    n.to_string(),
                    s.clone(),
                    d.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
            .iter()
            .map(|(n, s, d)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                        .unwrap(),
                )
            })
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    /// A network over one numeric and one two-category column whose answer is easy to work out
    /// by hand: the identity on the three features, then the output function.
    fn model(output: &str, classes: Value, out: usize) -> (Vec<u8>, Vec<u8>) {
        let json = json!({
            "format": "petri-mlp", "version": 1, "task": "classification",
            "architecture": {"layers": [3, out], "activation": "relu", "output": output},
            "features": {
                "numeric": [{"name": "x", "mean": 10.0, "scale": 2.0}],
                "categorical": [{"name": "site", "categories": ["a", "b"]}],
                "order": ["x", "site_a", "site_b"]
            },
            "classes": classes,
        });
        let w: Vec<f32> = if out == 3 {
            vec![1., 0., 0., 0., 1., 0., 0., 0., 1.]
        } else {
            vec![1., 0., 0.]
        };
        (
            serde_json::to_vec(&json).unwrap(),
            weights(&[
                ("layers.0.weight", vec![out, 3], w),
                ("layers.0.bias", vec![out], vec![0.0; out]),
            ]),
        )
    }

    fn row(pairs: &[(&str, Value)]) -> HashMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn a_batch_is_featurized_as_the_format_says_and_predicted() {
        let (j, w) = model("softmax", json!(["p", "q", "r"]), 3);
        let m = Mlp::from_bytes(&j, &w, &Device::Cpu).unwrap();
        let rows = Records(vec![
            row(&[("x", json!(14)), ("site", json!("b"))]),
            row(&[("x", json!(10.0)), ("site", json!("zzz"))]),
        ]);
        assert_eq!(
            m.featurize(&rows).unwrap(),
            vec![2.0, 0.0, 1.0, 0.0, 0.0, 0.0]
        );
        let p = m.predict(&rows).unwrap();
        assert_eq!(p[0].label, json!("p"));
        // Features [2, 0, 1] through the identity: softmax of [2, 0, 1].
        let (e2, e1) = (2f32.exp(), 1f32.exp());
        let sum = e2 + 1.0 + e1;
        let want = [e2 / sum, 1.0 / sum, e1 / sum];
        for (a, b) in p[0].probabilities.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{:?}", p[0]);
        }
        // All zeros: every class equal, the first wins the tie.
        assert_eq!(p[1].label, json!("p"));
        assert!((p[1].probabilities[2] - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn logistic_gives_two_probabilities() {
        let (j, w) = model("logistic", json!([false, true]), 1);
        let m = Mlp::from_bytes(&j, &w, &Device::Cpu).unwrap();
        let p = m
            .predict(&Records(vec![row(&[
                ("x", json!(12)),
                ("site", json!("a")),
            ])]))
            .unwrap();
        let p1 = 1.0 / (1.0 + (-1f32).exp());
        assert!((p[0].probabilities[1] - p1).abs() < 1e-6);
        assert!((p[0].probabilities[0] - (1.0 - p1)).abs() < 1e-6);
        assert_eq!(p[0].label, json!(true));
    }

    #[test]
    fn a_missing_or_wrong_value_is_refused_with_what_was_expected() {
        let (j, w) = model("softmax", json!(["p", "q", "r"]), 3);
        let m = Mlp::from_bytes(&j, &w, &Device::Cpu).unwrap();
        let err = m
            .predict(&Records(vec![row(&[("site", json!("a"))])]))
            .unwrap_err();
        assert!(err.to_string().contains("no value for `x`"), "{err}");
        let err = m
            .predict(&Records(vec![row(&[
                ("x", json!("5")),
                ("site", json!("a")),
            ])]))
            .unwrap_err();
        assert!(matches!(err, MlError::BadInput(_)), "{err}");
    }

    #[test]
    fn a_broken_model_is_refused_with_what_is_wrong() {
        let (j, _) = model("softmax", json!(["p", "q", "r"]), 3);
        let w = weights(&[
            ("layers.0.weight", vec![3, 2], vec![0.0; 6]),
            ("layers.0.bias", vec![3], vec![0.0; 3]),
        ]);
        let err = Mlp::from_bytes(&j, &w, &Device::Cpu).unwrap_err();
        assert!(
            err.to_string().contains("layers.0.weight has shape"),
            "{err}"
        );
        let err = Mlp::from_bytes(b"{", &w, &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("does not parse"), "{err}");
    }
}
