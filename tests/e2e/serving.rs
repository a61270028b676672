//! Serving, from the CLI with the real binary: the iris model the sample pipeline registered is
//! served (`petri model serve iris-mlp@champion`), answers the Open Inference Protocol v2 and
//! MLflow's scoring format with the same probabilities as the format's reference implementation
//! (`components/_lib/petri_model.py`, in Petri's image), refuses bad tensors with what was
//! expected, moves to a new version under load with no failed request, and is unserved.

use std::path::Path;
use std::time::Duration;

use petri_client::{Client, Method};
use serde_json::{Value, json};

use crate::helpers::{Server, petri, wait_until};
use crate::parse;

/// Unserves what a test served, also when it fails (replicas outlive the daemon by design).
struct Unserve<'a>(&'a Path, &'a str);

impl Drop for Unserve<'_> {
    fn drop(&mut self) {
        let _ = petri(self.0, &["model", "unserve", self.1]);
    }
}

/// The sample's raw rows: iris.csv inner-joined with iris_profiles.csv on sample_id.
fn raw_rows() -> Vec<(f64, f64, f64, f64, i64, String)> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/data");
    let read = |f: &str| std::fs::read_to_string(data.join(f)).unwrap();
    let profiles: std::collections::HashMap<String, (String, i64)> = read("iris_profiles.csv")
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[0].to_string(), (c[1].to_string(), c[2].parse().unwrap()))
        })
        .collect();
    read("iris.csv")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            let (site, year) = profiles.get(c[0])?.clone();
            let n = |i: usize| c[i].parse::<f64>().unwrap();
            Some((n(1), n(2), n(3), n(4), year, site))
        })
        .collect()
}

fn oip_request(rows: &[(f64, f64, f64, f64, i64, String)]) -> Value {
    let col = |name: &str, datatype: &str, data: Vec<Value>| json!({"name": name, "shape": [data.len()], "datatype": datatype, "data": data});
    json!({"id": "e2e", "inputs": [
        col("sepal_length", "FP64", rows.iter().map(|r| json!(r.0)).collect()),
        col("sepal_width", "FP64", rows.iter().map(|r| json!(r.1)).collect()),
        col("petal_length", "FP64", rows.iter().map(|r| json!(r.2)).collect()),
        col("petal_width", "FP64", rows.iter().map(|r| json!(r.3)).collect()),
        col("collected_year", "INT64", rows.iter().map(|r| json!(r.4)).collect()),
        col("site", "BYTES", rows.iter().map(|r| json!(r.5)).collect()),
    ]})
}

/// The format's reference implementation on the same rows, in Petri's image.
fn reference_probabilities(model_dir: &Path, image: &str) -> Vec<Vec<f64>> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let repo = repo.canonicalize().unwrap();
    let script = "import json, sys, pandas as pd\n\
                  sys.path.insert(0, 'components/_lib')\n\
                  import petri_model\n\
                  d = pd.read_csv('samples/data/iris.csv').merge(pd.read_csv('samples/data/iris_profiles.csv'), on='sample_id', how='inner')\n\
                  print(json.dumps(petri_model.predict_proba(sys.argv[1], d).tolist()))\n";
    let out = std::process::Command::new("docker")
        .args(["run", "--rm", "--network", "none", "-v"])
        .arg(format!("{}:{}:ro", repo.display(), repo.display()))
        .arg("-v")
        .arg(format!("{}:/model:ro", model_dir.display()))
        .args([
            "-w",
            repo.to_str().unwrap(),
            image,
            "python",
            "-c",
            script,
            "/model",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Called by the iris test once its pipeline registered iris-mlp and pointed @champion at it.
pub(crate) fn serve_the_iris_model(server: &Server, image: &str) {
    let home = server.home();
    let out = petri(
        home,
        &[
            "model",
            "serve",
            "iris-mlp@champion",
            "--name",
            "iris",
            "--wait",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _unserve = Unserve(home, "iris");
    let d: Value = parse(&out);
    assert_eq!(d["state"], "ready", "{d:#}");
    let version = d["version"].as_i64().unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Client::discover(None, Some(home));
    let call = |method: Method, path: &str, body: Option<Value>| {
        rt.block_on(client.call(method, path, body.as_ref()))
    };

    // Every sample row, in one request: the same classes and probabilities as the reference.
    let rows = raw_rows();
    let answer = call(
        Method::POST,
        "/v2/models/iris/infer",
        Some(oip_request(&rows)),
    )
    .unwrap();
    assert_eq!(answer["id"], "e2e");
    assert_eq!(answer["model_version"], version.to_string());
    let probs = answer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "probabilities")
        .unwrap();
    assert_eq!(probs["shape"], json!([rows.len(), 3]));
    let model_dir = home.join(format!("deployments/iris-mlp/{version}"));
    let want = reference_probabilities(&model_dir, image);
    assert_eq!(want.len(), rows.len());
    let got: Vec<f64> = probs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (i, row) in want.iter().enumerate() {
        for (j, p) in row.iter().enumerate() {
            let g = got[i * 3 + j];
            assert!(
                (g - p).abs() < 1e-5,
                "row {i} class {j}: served {g}, reference {p}"
            );
        }
    }
    // The most probable class is the label; the model is good on its own training data.
    let labels = answer["outputs"][0]["data"].as_array().unwrap().clone();
    let species: Vec<String> = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/data/iris.csv"),
    )
    .unwrap()
    .lines()
    .skip(1)
    .map(|l| l.rsplit(',').next().unwrap().to_string())
    .collect();
    assert_eq!(labels.len(), rows.len());
    assert!(
        labels
            .iter()
            .all(|l| species.contains(&l.as_str().unwrap().to_string()))
    );

    // MLflow's scoring format gives the same labels.
    let scored = call(
        Method::POST,
        "/v2/models/iris/invocations",
        Some(json!({"dataframe_split": {
            "columns": ["sepal_length", "sepal_width", "petal_length", "petal_width", "collected_year", "site"],
            "data": rows.iter().take(3).map(|r| json!([r.0, r.1, r.2, r.3, r.4, r.5])).collect::<Vec<_>>(),
        }})),
    )
    .unwrap();
    assert_eq!(scored["predictions"], json!(labels[..3]));

    // Bad tensors are refused with what was expected; an unknown model is 404.
    let mut bad = oip_request(&rows[..1]);
    bad["inputs"][0]["datatype"] = json!("BYTES");
    bad["inputs"][0]["data"] = json!(["5.1"]);
    let err = call(Method::POST, "/v2/models/iris/infer", Some(bad))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("400") && err.contains("expected FP64"),
        "{err}"
    );
    let err = call(Method::POST, "/v2/models/nope/infer", Some(json!({})))
        .unwrap_err()
        .to_string();
    assert!(err.contains("404"), "{err}");

    // A new version, and the alias moved while requests flow: none fails, the new one answers.
    let files = home.join("deployments/iris-mlp").join(version.to_string());
    let out = petri(
        home,
        &[
            "model",
            "register",
            "iris-mlp",
            files.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let next: Value = parse(&out);
    let next = next["version"].as_str().unwrap().to_string();
    let body = oip_request(&rows[..4]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let home = home.to_path_buf();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let client = Client::discover(None, Some(&home));
            let (mut ok, mut failed, mut versions) =
                (0, Vec::new(), std::collections::BTreeSet::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match rt.block_on(client.call(Method::POST, "/v2/models/iris/infer", Some(&body))) {
                    Ok(a) => {
                        ok += 1;
                        versions.insert(a["model_version"].as_str().unwrap_or("").to_string());
                    }
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed, versions)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let out = petri(home, &["model", "alias", "iris-mlp", "champion", &next]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the deployment to move", Duration::from_secs(90), || {
        let d: Value = parse(&petri(home, &["model", "endpoints", "--json"]));
        d[0]["version"].as_i64().map(|v| v.to_string()).as_deref() == Some(next.as_str())
            && d[0]["state"] == "ready"
    });
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed, versions) = load.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} failed of {}: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(versions.contains(&next), "{versions:?}");

    // Unserved: gone, its replicas stopped.
    let out = petri(home, &["model", "unserve", "iris"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = call(
        Method::POST,
        "/v2/models/iris/infer",
        Some(oip_request(&rows[..1])),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("404"), "{err}");
}
