//! What a model's files are, checked at registration: a folder in Petri's format (`model.json`
//! naming a known architecture + `model.safetensors` holding exactly the tensors it says, with
//! consistent shapes; see `docs/model-format.md`) is checked and refused if broken; an MLflow
//! model (an `MLmodel` file) is kept as it is and marked with its flavours, for the serving
//! issue's container runtime; anything else is kept as plain files.

use serde::Serialize;

/// The format Petri's own models declare in `model.json`.
pub const PETRI_FORMAT: &str = petri_ml::spec::FORMAT;

/// What registration found in a model's files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inspected {
    /// `petri-mlp`, `onnx`, `mlflow` or `files`.
    pub format: String,
    /// An MLflow model's flavours (`sklearn`, `pytorch`, `python_function`…), sorted.
    pub flavours: Vec<String>,
    /// How the serving issue runs it: `native` (Petri's own format), `container` (an MLflow
    /// flavour) or `none` (nothing Petri knows how to serve).
    pub runtime: String,
}

/// Inspects a model's files. `paths` are the files' paths relative to the model's folder;
/// `read` gives one file's bytes. Errors say what is wrong, for the user.
pub fn inspect(
    paths: &[String],
    mut read: impl FnMut(&str) -> Result<Vec<u8>, String>,
) -> Result<Inspected, String> {
    let has = |p: &str| paths.iter().any(|x| x == p);
    if has("model.json") {
        let json = read("model.json")?;
        let declared: serde_json::Value = serde_json::from_slice(&json)
            .map_err(|e| format!("model.json does not parse as JSON: {e}"))?;
        if declared.get("format").and_then(|f| f.as_str()) == Some(PETRI_FORMAT) {
            if !has("model.safetensors") {
                return Err("model.json declares Petri's format but the folder has no \
                            model.safetensors"
                    .into());
            }
            let weights = read("model.safetensors")?;
            check_petri(&declared, &weights)?;
            return Ok(Inspected {
                format: PETRI_FORMAT.into(),
                flavours: vec![],
                runtime: "native".into(),
            });
        }
    }
    if has(petri_ml::onnx::ONNX_FILE) && !has("MLmodel") {
        // An ONNX graph of a plain network: loaded and run once on a row of zeros, so a graph
        // candle cannot evaluate is refused now.
        let bytes = read(petri_ml::onnx::ONNX_FILE)?;
        petri_ml::OnnxModel::from_bytes(&bytes, &petri_ml::Device::Cpu)
            .map_err(|e| e.to_string())?;
        return Ok(Inspected {
            format: "onnx".into(),
            flavours: vec![],
            runtime: "native".into(),
        });
    }
    if has("MLmodel") {
        let text = read("MLmodel")?;
        let flavours = mlflow_flavours(&text)?;
        return Ok(Inspected {
            format: "mlflow".into(),
            flavours,
            runtime: "container".into(),
        });
    }
    if has("model.safetensors") && !has("model.json") {
        return Err(
            "the folder has model.safetensors but no model.json naming its \
                    architecture (see docs/model-format.md)"
                .into(),
        );
    }
    Ok(Inspected {
        format: "files".into(),
        flavours: vec![],
        runtime: "none".into(),
    })
}

/// The flavours an `MLmodel` file declares (the keys of its `flavors` mapping).
pub fn mlflow_flavours(text: &[u8]) -> Result<Vec<String>, String> {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_slice(text)
        .map_err(|e| format!("the MLmodel file does not parse as YAML: {e}"))?;
    let Some(flavors) = doc.get("flavors").and_then(|f| f.as_mapping()) else {
        return Err("the MLmodel file has no `flavors` mapping".into());
    };
    let mut names: Vec<String> = flavors
        .keys()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

/// Checks `model.json` (already parsed) against the bytes of `model.safetensors`: the checks
/// loading it for serving makes (`petri_ml::spec::check`), so a model that would not load is
/// refused here.
pub fn check_petri(model: &serde_json::Value, weights: &[u8]) -> Result<(), String> {
    petri_ml::spec::check(model, weights)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn model_json(layers: &[usize], classes: usize) -> serde_json::Value {
        serde_json::json!({
            "format": "petri-mlp", "version": 1, "task": "classification",
            "architecture": {"layers": layers, "activation": "relu", "output": "softmax"},
            "features": {
                "numeric": (0..layers[0]).map(|i| serde_json::json!({"name": format!("f{i}"), "mean": 0.0, "scale": 1.0})).collect::<Vec<_>>(),
                "categorical": [],
                "order": (0..layers[0]).map(|i| format!("f{i}")).collect::<Vec<_>>()},
            "classes": (0..classes).map(|i| format!("c{i}")).collect::<Vec<_>>(),
        })
    }

    fn weights(shapes: &[(&str, Vec<usize>)]) -> Vec<u8> {
        let data: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
            .iter()
            .map(|(n, s)| {
                (
                    n.to_string(),
                    s.clone(),
                    vec![0u8; 4 * s.iter().product::<usize>()],
                )
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = data
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

    fn folder(files: HashMap<&str, Vec<u8>>) -> Result<Inspected, String> {
        let paths: Vec<String> = files.keys().map(|k| k.to_string()).collect();
        inspect(&paths, |p| Ok(files[p].clone()))
    }

    fn good_weights() -> Vec<u8> {
        weights(&[
            ("layers.0.weight", vec![4, 3]),
            ("layers.0.bias", vec![4]),
            ("layers.1.weight", vec![2, 4]),
            ("layers.1.bias", vec![2]),
        ])
    }

    #[test]
    fn a_petri_model_that_matches_its_model_json_is_native() {
        let json = serde_json::to_vec(&model_json(&[3, 4, 2], 2)).unwrap();
        let mut j = model_json(&[3, 4, 2], 2);
        j["architecture"]["output"] = "softmax".into();
        let got = folder(HashMap::from([
            ("model.json", json),
            ("model.safetensors", good_weights()),
        ]))
        .unwrap();
        assert_eq!(got.format, "petri-mlp");
        assert_eq!(got.runtime, "native");
    }

    #[test]
    fn broken_petri_models_are_refused_with_the_reason() {
        let json = |l: &[usize], c| serde_json::to_vec(&model_json(l, c)).unwrap();
        // A shape that disagrees with model.json.
        let err = folder(HashMap::from([
            ("model.json", json(&[3, 5, 2], 2)),
            ("model.safetensors", good_weights()),
        ]))
        .unwrap_err();
        assert!(err.contains("layers.0.weight has shape [4, 3]"), "{err}");
        // A tensor missing.
        let err = folder(HashMap::from([
            ("model.json", json(&[3, 4, 2], 2)),
            (
                "model.safetensors",
                weights(&[("layers.0.weight", vec![4, 3]), ("layers.0.bias", vec![4])]),
            ),
        ]))
        .unwrap_err();
        assert!(err.contains("holds 2 tensors"), "{err}");
        // Weights that are not safetensors at all.
        let err = folder(HashMap::from([
            ("model.json", json(&[3, 4, 2], 2)),
            ("model.safetensors", b"not a tensor file".to_vec()),
        ]))
        .unwrap_err();
        assert!(err.contains("does not parse"), "{err}");
        // model.json that does not parse, or names an unknown architecture.
        let err = folder(HashMap::from([
            ("model.json", b"{nope".to_vec()),
            ("model.safetensors", good_weights()),
        ]))
        .unwrap_err();
        assert!(err.contains("model.json does not parse"), "{err}");
        let mut j = model_json(&[3, 4, 2], 2);
        j["architecture"]["activation"] = "tanh".into();
        let err = folder(HashMap::from([
            ("model.json", serde_json::to_vec(&j).unwrap()),
            ("model.safetensors", good_weights()),
        ]))
        .unwrap_err();
        assert!(err.contains("activation"), "{err}");
        // Output units that do not fit the classes.
        let err = folder(HashMap::from([
            ("model.json", json(&[3, 4, 2], 3)),
            ("model.safetensors", good_weights()),
        ]))
        .unwrap_err();
        assert!(err.contains("does not fit 3 classes"), "{err}");
        // Weights without model.json.
        let err = folder(HashMap::from([("model.safetensors", good_weights())])).unwrap_err();
        assert!(err.contains("no model.json"), "{err}");
    }

    #[test]
    fn mlflow_models_are_kept_and_marked_for_the_container_runtime() {
        let mlmodel = b"artifact_path: model\nflavors:\n  python_function:\n    loader_module: mlflow.sklearn\n  sklearn:\n    sklearn_version: 1.5.0\n".to_vec();
        let got = folder(HashMap::from([
            ("MLmodel", mlmodel),
            ("model.pkl", b"...".to_vec()),
        ]))
        .unwrap();
        assert_eq!(got.format, "mlflow");
        assert_eq!(got.flavours, ["python_function", "sklearn"]);
        assert_eq!(got.runtime, "container");
        let plain = folder(HashMap::from([("weights.bin", b"..".to_vec())])).unwrap();
        assert_eq!(plain.runtime, "none");
    }
}
