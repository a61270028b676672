//! Petri's model format, `petri-mlp` version 1 (`docs/model-format.md`): `model.json` as types,
//! and [`check`], what a folder must pass to be a model (run at registration and at load, so a
//! broken model is refused before anything serves it). No candle here: the checks read the
//! safetensors header only.

use serde::Deserialize;
use serde_json::Value;

/// The format Petri's own models declare in `model.json`.
pub const FORMAT: &str = "petri-mlp";

/// `model.json`.
#[derive(Clone, Debug, Deserialize)]
pub struct ModelSpec {
    pub format: String,
    pub version: Option<u64>,
    pub architecture: Architecture,
    pub features: Features,
    #[serde(default)]
    pub inputs: Vec<Input>,
    #[serde(default)]
    pub target: String,
    pub classes: Vec<Value>,
}

/// The network: `layers` widths, relu between layers, softmax or logistic at the end.
#[derive(Clone, Debug, Deserialize)]
pub struct Architecture {
    pub layers: Vec<usize>,
    pub activation: String,
    pub output: Output,
}

/// The last layer's function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    Softmax,
    Logistic,
}

/// How raw columns become the feature vector.
#[derive(Clone, Debug, Deserialize)]
pub struct Features {
    #[serde(default)]
    pub numeric: Vec<Numeric>,
    #[serde(default)]
    pub categorical: Vec<Categorical>,
    #[serde(default)]
    pub order: Vec<String>,
}

/// A numeric column, standardised as `(x - mean) / scale`.
#[derive(Clone, Debug, Deserialize)]
pub struct Numeric {
    pub name: String,
    pub mean: f64,
    pub scale: f64,
}

/// A categorical column, one-hot encoded in the order of `categories`.
#[derive(Clone, Debug, Deserialize)]
pub struct Categorical {
    pub name: String,
    pub categories: Vec<Value>,
}

/// A raw column a request carries, and the JSON type of its values.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Input {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl ModelSpec {
    /// Parses and checks `model.json` against the bytes of `model.safetensors`.
    pub fn parse(model_json: &[u8], weights: &[u8]) -> Result<ModelSpec, String> {
        let raw: Value = serde_json::from_slice(model_json)
            .map_err(|e| format!("model.json does not parse as JSON: {e}"))?;
        check(&raw, weights)?;
        serde_json::from_value(raw).map_err(|e| format!("model.json: {e}"))
    }

    /// The width of the feature vector.
    pub fn width(&self) -> usize {
        self.architecture.layers[0]
    }

    /// The inputs a request must carry: `inputs` when the file lists them, else the columns
    /// `features` names (numeric ones as numbers, categorical ones by their first category's
    /// JSON type).
    pub fn columns(&self) -> Vec<Input> {
        if !self.inputs.is_empty() {
            return self.inputs.clone();
        }
        let numeric = self.features.numeric.iter().map(|n| Input {
            name: n.name.clone(),
            kind: "number".into(),
        });
        let categorical = self.features.categorical.iter().map(|c| Input {
            name: c.name.clone(),
            kind: match c.categories.first() {
                Some(Value::String(_)) | None => "string",
                Some(Value::Bool(_)) => "boolean",
                Some(Value::Number(n)) if n.is_i64() || n.is_u64() => "integer",
                Some(_) => "number",
            }
            .into(),
        });
        numeric.chain(categorical).collect()
    }
}

/// Checks `model.json` (parsed) against the bytes of `model.safetensors`: the version, the
/// architecture, the classes, the feature layout, and that the weights hold exactly the tensors
/// and shapes the architecture says, as float32. Errors say what is wrong, for the user.
pub fn check(model: &Value, weights: &[u8]) -> Result<(), String> {
    if model.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(format!("model.json does not declare format {FORMAT}"));
    }
    let version = model.get("version").and_then(Value::as_u64);
    if version != Some(1) {
        return Err(format!(
            "model.json declares {FORMAT} version {}, and this Petri knows version 1",
            model
                .get("version")
                .map(|v| v.to_string())
                .unwrap_or("(none)".into())
        ));
    }
    let arch = model
        .get("architecture")
        .ok_or("model.json has no `architecture`")?;
    let layers: Vec<usize> = arch
        .get("layers")
        .and_then(Value::as_array)
        .ok_or("model.json's architecture.layers is not a list")?
        .iter()
        .map(|n| n.as_u64().filter(|&n| n > 0).map(|n| n as usize))
        .collect::<Option<_>>()
        .ok_or("architecture.layers must be positive whole numbers")?;
    if layers.len() < 2 {
        return Err("architecture.layers needs at least the input and output widths".into());
    }
    match arch.get("activation").and_then(Value::as_str) {
        Some("relu") => {}
        other => {
            return Err(format!(
                "architecture.activation is {other:?}; the known architecture uses \"relu\""
            ));
        }
    }
    let output = arch.get("output").and_then(Value::as_str);
    let out = layers[layers.len() - 1];
    let classes = model.get("classes").and_then(Value::as_array).map(Vec::len);
    match (output, classes) {
        (Some("softmax"), Some(n)) if n == out => {}
        (Some("logistic"), Some(2)) if out == 1 => {}
        (Some(o @ ("softmax" | "logistic")), c) => {
            return Err(format!(
                "architecture.output is {o} with {out} output units, which does not fit {} classes",
                c.map(|c| c.to_string()).unwrap_or("no".into())
            ));
        }
        (o, _) => {
            return Err(format!(
                "architecture.output is {o:?}; known outputs are softmax and logistic"
            ));
        }
    }
    check_features(model, layers[0])?;
    let tensors = safetensors::SafeTensors::deserialize(weights)
        .map_err(|e| format!("model.safetensors does not parse: {e}"))?;
    let n = layers.len() - 1;
    if tensors.len() != 2 * n {
        return Err(format!(
            "model.safetensors holds {} tensors; architecture.layers {:?} needs {} \
             (a weight and a bias per layer)",
            tensors.len(),
            layers,
            2 * n
        ));
    }
    for i in 0..n {
        for (name, shape) in [
            (format!("layers.{i}.weight"), vec![layers[i + 1], layers[i]]),
            (format!("layers.{i}.bias"), vec![layers[i + 1]]),
        ] {
            let t = tensors
                .tensor(&name)
                .map_err(|_| format!("model.safetensors has no tensor {name}"))?;
            if t.dtype() != safetensors::Dtype::F32 {
                return Err(format!(
                    "{name} is {:?}; Petri's format holds F32",
                    t.dtype()
                ));
            }
            if t.shape() != shape.as_slice() {
                return Err(format!(
                    "{name} has shape {:?}; architecture.layers {:?} says {:?}",
                    t.shape(),
                    layers,
                    shape
                ));
            }
        }
    }
    Ok(())
}

/// The featurization fills exactly `width` slots with finite numbers.
fn check_features(model: &Value, width: usize) -> Result<(), String> {
    let Some(features) = model.get("features") else {
        return Err("model.json has no `features`".into());
    };
    if let Some(order) = features.get("order").and_then(Value::as_array)
        && order.len() != width
    {
        return Err(format!(
            "features.order has {} slots but architecture.layers starts with {width}",
            order.len()
        ));
    }
    let list = |key: &str| {
        features
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut slots = 0;
    for n in list("numeric") {
        let name = n.get("name").and_then(Value::as_str).unwrap_or("?");
        let mean = n.get("mean").and_then(Value::as_f64);
        let scale = n.get("scale").and_then(Value::as_f64);
        match (mean, scale) {
            (Some(m), Some(s)) if m.is_finite() && s.is_finite() && s != 0.0 => slots += 1,
            _ => {
                return Err(format!(
                    "features.numeric `{name}` needs a finite mean and a finite, non-zero scale"
                ));
            }
        }
    }
    for c in list("categorical") {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
        let categories = c
            .get("categories")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("features.categorical `{name}` has no categories list"))?;
        slots += categories.len();
    }
    if slots != width {
        return Err(format!(
            "features make {slots} slots (numeric columns, then one per category) but \
             architecture.layers starts with {width}"
        ));
    }
    Ok(())
}
