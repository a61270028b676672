//! ONNX graphs written by PyTorch's own exporters (`tests/fixtures/make_torch_mlp.py`: an MLP
//! with a batch norm, dropout, GELU and tanh), run by candle, against what PyTorch answered.

use std::path::Path;

use petri_ml::{Device, OnnxModel};
use serde_json::Value;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn matrix(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn check(file: &str) {
    let want: Value =
        serde_json::from_slice(&std::fs::read(fixture("torch_mlp.json")).unwrap()).unwrap();
    let (rows, probabilities) = (matrix(&want["rows"]), matrix(&want["probabilities"]));
    let bytes = std::fs::read(fixture(file)).unwrap();
    let g = OnnxModel::from_bytes(&bytes, &Device::Cpu).unwrap();
    assert_eq!((g.input(), g.width()), ("features", 4), "{file}");
    assert_eq!(g.outputs(), ["probabilities"], "{file}");
    // Each row is computed on its own: the rows of many requests may run at once.
    assert_eq!(g.row_shapes(), Some(&[vec![3]][..]), "{file}");
    // All six rows at once, then each alone: PyTorch's answers either way.
    let all = g.run(rows.concat(), rows.len()).unwrap();
    assert_eq!(all[0].1, vec![6, 3], "{file}");
    for (i, (row, want)) in rows.iter().zip(&probabilities).enumerate() {
        let alone = g.run(row.clone(), 1).unwrap();
        for got in [&all[0].2[3 * i..3 * i + 3], &alone[0].2[..]] {
            assert!(
                got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5),
                "{file}, row {i}: {got:?} against PyTorch's {want:?}"
            );
        }
    }
}

#[test]
fn the_default_exporters_mlp_answers_as_pytorch_does() {
    check("torch_mlp.onnx");
}

#[test]
fn the_torchscript_exporters_mlp_answers_as_pytorch_does() {
    check("torch_mlp_legacy.onnx");
}
