//! Serving, from the CLI with the real binary: the iris model the sample pipeline registered is
//! served (`petri model serve iris-mlp@champion`), answers the Open Inference Protocol v2 (the
//! four raw measurements) and MLflow's scoring format with the classes and probabilities the
//! pipeline's evaluate step computed on the test split, refuses bad tensors with what was
//! expected, moves to a new version under load with no failed request, and is unserved. And a
//! deployment with `--gpu-mem` holds its share of a (fake) GPU in the budget jobs wait on.

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

/// `petri model serve ARGS --name NAME --wait`: the deployment, ready, and what unserves it.
fn served<'a>(home: &'a Path, name: &'a str, args: &[&str]) -> (Value, Unserve<'a>) {
    let mut all = vec!["model", "serve", "--name", name, "--wait", "--json"];
    all.extend_from_slice(args);
    let out = petri(home, &all);
    let unserve = Unserve(home, name);
    // `parse` fails the test, with petri's stderr, when the command failed.
    let d: Value = parse(&out);
    assert_eq!(d["state"], "ready", "{d:#}");
    (d, unserve)
}

/// The sample's flowers by sample_id: the four measurements.
fn flowers() -> std::collections::HashMap<String, [f64; 4]> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/data/iris.csv");
    std::fs::read_to_string(data)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            let n = |i: usize| c[i].parse::<f64>().unwrap();
            (c[0].to_string(), [n(1), n(2), n(3), n(4)])
        })
        .collect()
}

const MEASUREMENTS: [&str; 4] = ["sepal_length", "sepal_width", "petal_length", "petal_width"];

/// An OIP request of one FP64 tensor per measurement.
fn oip_request(rows: &[[f64; 4]]) -> Value {
    let inputs: Vec<Value> = MEASUREMENTS
        .iter()
        .enumerate()
        .map(|(j, name)| {
            json!({"name": name, "shape": [rows.len()], "datatype": "FP64",
                   "data": rows.iter().map(|r| r[j]).collect::<Vec<_>>()})
        })
        .collect();
    json!({"id": "e2e", "inputs": inputs})
}

/// evaluate's predictions.csv: each test row's sample_id, predicted class and probabilities.
fn evaluated(predictions: &Path) -> Vec<(String, String, Vec<f64>)> {
    let text = std::fs::read_to_string(predictions).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        head,
        [
            "sample_id",
            "species",
            "predicted",
            "p_setosa",
            "p_versicolor",
            "p_virginica"
        ]
    );
    lines
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            let p = c[3..].iter().map(|x| x.parse().unwrap()).collect();
            (c[0].to_string(), c[2].to_string(), p)
        })
        .collect()
}

/// Called by the iris test once its pipeline registered iris-mlp and pointed @champion at it;
/// `predictions` is its evaluate step's predictions.csv.
pub(crate) fn serve_the_iris_model(server: &Server, predictions: &Path) {
    let home = server.home();
    let (d, _unserve) = served(home, "iris", &["iris-mlp@champion"]);
    let version = d["version"].as_i64().unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Client::discover(None, Some(home));
    let call = |method: Method, path: &str, body: Option<Value>| {
        rt.block_on(client.call(method, path, body.as_ref()))
    };

    // The test split, in one request of the four raw measurements: the classes and
    // probabilities the pipeline's evaluate step computed.
    let flowers = flowers();
    let want = evaluated(predictions);
    assert!(want.len() >= 20, "{} test rows", want.len());
    let rows: Vec<[f64; 4]> = want.iter().map(|(id, _, _)| flowers[id]).collect();
    let answer = call(
        Method::POST,
        "/v2/models/iris/infer",
        Some(oip_request(&rows)),
    )
    .unwrap();
    assert_eq!(answer["id"], "e2e");
    assert_eq!(answer["model_version"], version.to_string());
    let output = |name: &str| {
        answer["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .unwrap()
            .clone()
    };
    let probs = output("probabilities");
    assert_eq!(probs["shape"], json!([rows.len(), 3]));
    let labels = output("label")["data"].as_array().unwrap().clone();
    for (i, (id, predicted, p)) in want.iter().enumerate() {
        assert_eq!(labels[i], json!(predicted), "sample {id}");
        for (j, p) in p.iter().enumerate() {
            let g = probs["data"][i * 3 + j].as_f64().unwrap();
            assert!(
                (g - p).abs() < 1e-5,
                "sample {id} class {j}: served {g}, evaluate {p}"
            );
        }
    }

    // The endpoint the CLI gives is the daemon's TCP address (the CLI itself speaks over the
    // daemon's socket, which no inference client does), and it answers there as given.
    let url = d["infer_url"]
        .as_str()
        .expect("an endpoint URL")
        .to_string();
    let addr = std::fs::read_to_string(home.join("daemon.addr")).unwrap();
    let port = addr.trim().rsplit(':').next().unwrap().to_string();
    assert_eq!(url, format!("http://localhost:{port}/v2/models/iris/infer"));
    let table = String::from_utf8_lossy(&petri(home, &["model", "endpoints"]).stdout).to_string();
    assert!(table.contains(&url), "{table}");
    let token = std::fs::read_to_string(home.join("token")).unwrap();
    let (origin, path) = url.split_at(url.find("/v2/").unwrap());
    let over_tcp = Client::new(origin, Some(token.trim().to_string()));
    let answer = rt
        .block_on(over_tcp.call(Method::POST, path, Some(&oip_request(&rows[..1]))))
        .unwrap();
    assert_eq!(
        answer["outputs"][0]["data"],
        json!([want[0].1]),
        "{answer:#}"
    );

    // One flower as the Open Inference Protocol's own examples send it: a [1, 4] FP32 tensor.
    let one = call(
        Method::POST,
        "/v2/models/iris/infer",
        Some(
            json!({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32",
                                "data": [[5.1, 3.5, 1.4, 0.2]]}]}),
        ),
    )
    .unwrap();
    assert_eq!(one["outputs"][0]["data"], json!(["setosa"]), "{one:#}");

    // MLflow's scoring format gives the same labels.
    let scored = call(
        Method::POST,
        "/v2/models/iris/invocations",
        Some(json!({"dataframe_split": {
            "columns": MEASUREMENTS,
            "data": rows.iter().take(3).collect::<Vec<_>>(),
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

/// A deployment's replicas hold their GPU share in the same budget as jobs (`--gpu-mem`): the
/// GPU report names the replica, a job that no longer fits waits until the deployment is
/// unserved, and the replica says where it computes (the CPU in a build without CUDA, and why).
#[test]
fn a_deployment_holds_its_gpu_share_in_the_budget_jobs_wait_on() {
    use petri_domain::{Job, JobState};

    let gib: u64 = 1 << 30;
    let Some((server, _gpus)) = Server::with_fake_gpu("GPU-e2e-serve", 16 * gib) else {
        return;
    };
    let home = server.home();
    // An MLP exported by PyTorch (crates/ml/tests/fixtures), with PyTorch's own answers.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/ml/tests/fixtures");
    let model = server.work().join("torchmlp");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::copy(fixtures.join("torch_mlp.onnx"), model.join("model.onnx")).unwrap();
    let want: Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("torch_mlp.json")).unwrap()).unwrap();
    let registered = petri(
        home,
        &["model", "register", "torchmlp", model.to_str().unwrap()],
    );
    assert!(
        registered.status.success(),
        "{}",
        String::from_utf8_lossy(&registered.stderr)
    );

    let (d, _unserve) = served(home, "torchmlp", &["torchmlp", "--gpu-mem", "10GiB"]);
    assert_eq!(d["gpu_memory"], "10GiB", "{d:#}");
    let replica = d["replicas"][0]["job"].as_str().unwrap().to_string();

    // The GPU report: the replica's job holds 10 GiB of the GPU.
    let report: Value = parse(&petri(home, &["gpus", "--json"]));
    let gpu = &report["gpus"][0];
    assert_eq!(gpu["uuid"], "GPU-e2e-serve", "{report:#}");
    assert_eq!(gpu["reserved"], 10 * gib, "{report:#}");
    assert_eq!(gpu["holders"][0]["job"], replica.as_str(), "{report:#}");

    // It answers as PyTorch did; the replica computes on the CPU here and says why.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Client::discover(None, Some(home));
    let row = &want["rows"][0];
    let answer = rt
        .block_on(client.call(
            Method::POST,
            "/v2/models/torchmlp/infer",
            Some(&json!({"inputs": [
                {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": row}
            ]})),
        ))
        .unwrap();
    let got = answer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "probabilities")
        .unwrap_or_else(|| panic!("{answer:#}"))["data"]
        .clone();
    let expected = want["probabilities"][0].as_array().unwrap();
    for (g, e) in got.as_array().unwrap().iter().zip(expected) {
        assert!(
            (g.as_f64().unwrap() - e.as_f64().unwrap()).abs() < 1e-5,
            "{got} against {expected:?}"
        );
    }
    wait_until(
        "the replica's log to say where it computes",
        Duration::from_secs(30),
        || {
            let log = String::from_utf8_lossy(&petri(home, &["logs", &replica]).stdout).to_string();
            log.contains("computing on the CPU: a GPU is reserved (GPU-e2e-serve), but this build")
                || log.contains("computing on the GPU")
        },
    );

    // A job that needs 8 GiB more does not fit beside it: it waits, and runs once the
    // deployment is unserved.
    let w = server.work();
    let submitted = petri(
        home,
        &[
            "submit",
            "--json",
            "--gpu-mem",
            "8GiB",
            "--workdir",
            w.to_str().unwrap(),
            "--",
            "true",
        ],
    );
    let job = crate::jobs(&submitted).remove(0);
    let shown = |j: &Job| -> Job {
        serde_json::from_slice(&petri(home, &["show", "--json", &j.id.to_string()]).stdout).unwrap()
    };
    wait_until(
        "the job to wait for the GPU",
        Duration::from_secs(30),
        || {
            let j = shown(&job);
            j.state == JobState::Queued && j.pending.is_some()
        },
    );
    let unserved = petri(home, &["model", "unserve", "torchmlp"]);
    assert!(
        unserved.status.success(),
        "{}",
        String::from_utf8_lossy(&unserved.stderr)
    );
    server.wait_state(&job, JobState::Succeeded);
}
