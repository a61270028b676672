//! Jobs on a real Kubernetes API server (1.20, built from Debian's source by `scripts/test.sh`,
//! with etcd, on loopback). There is no kubelet and no controller manager, so nothing runs a
//! Job: these tests check what the API server holds (the Job as Petri lowered it, accepted and
//! validated), play the Job controller's part by patching the Job's status, and see Petri
//! follow through its watcher, record the end once across a daemon restart, and delete the Job
//! with propagation on a cancel. A pod's log is checked against a recorded answer in the
//! crate's own tests, since no pod ever runs here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use petri_domain::{Job, JobState};

use crate::helpers::{Server, petri, wait_until};
use crate::{jobs, parse};

struct Kube {
    url: String,
    kubeconfig: PathBuf,
    token_file: PathBuf,
    /// The cluster's image registry, with `petri/tiny:1` in it.
    registry: String,
}

fn kube() -> Option<Kube> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        var("PETRI_TEST_KUBE_URL"),
        var("PETRI_TEST_KUBE_KUBECONFIG"),
        var("PETRI_TEST_KUBE_TOKEN_FILE"),
        var("PETRI_TEST_KUBE_REGISTRY"),
    ) {
        (Some(url), Some(kc), Some(token), Some(registry)) => Some(Kube {
            url,
            kubeconfig: kc.into(),
            token_file: token.into(),
            registry,
        }),
        _ => {
            let why = "no Kubernetes API server to test against (scripts/test.sh builds and starts \
                       one and sets PETRI_TEST_KUBE_*)";
            assert!(std::env::var("CI").is_err(), "{why}");
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

/// A request to the API server as its admin, through curl (the kubeconfig's authority).
fn kubectl(k: &Kube, method: &str, path: &str, body: Option<&str>) -> serde_json::Value {
    let dir = k.kubeconfig.parent().unwrap();
    let token = std::fs::read_to_string(&k.token_file).unwrap();
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "-X", method, "--cacert"])
        .arg(dir.join("pki/ca.crt"))
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", token.trim()));
    if let Some(b) = body {
        cmd.args([
            "-H",
            "Content-Type: application/merge-patch+json",
            "--data",
            b,
        ]);
    }
    let out = cmd.arg(format!("{}{path}", k.url)).output().expect("curl");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn server_with_cluster(k: &Kube) -> Server {
    server_with_cluster_and(k, &[])
}

/// A daemon with the test server added as `k8s`, with `extra` arguments to `cluster add`.
fn server_with_cluster_and(k: &Kube, extra: &[&str]) -> Server {
    let server = Server::start("");
    let mut args = vec![
        "cluster",
        "add",
        "k8s",
        "--kind",
        "kubernetes",
        "--url",
        &k.url,
        "--kubeconfig",
        k.kubeconfig.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = petri(server.home(), &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server
}

fn show(home: &Path, job: &Job) -> Job {
    let out = petri(home, &["show", "--json", &job.id.to_string()]);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wait_state(home: &Path, job: &Job, want: JobState) -> Job {
    let mut last = None;
    wait_until(
        &format!("job #{} to be {want:?}", job.number),
        Duration::from_secs(60),
        || {
            let j = show(home, job);
            let done = j.state == want;
            last = Some(j);
            done
        },
    );
    last.unwrap()
}

/// Waits until the job runs and its Job is made (the start, off the engine thread, records the
/// Job's name a moment after the job is marked running); that name.
fn wait_job_made(home: &Path, job: &Job) -> String {
    let mut last = None;
    wait_until(
        &format!("job #{}'s Kubernetes Job", job.number),
        Duration::from_secs(60),
        || {
            let j = show(home, job);
            let made =
                j.state == JobState::Running && j.runs.last().is_some_and(|r| r.handle.is_some());
            last = Some(j);
            made
        },
    );
    let j = last.unwrap();
    j.runs.last().unwrap().handle.clone().unwrap()
}

fn job_path(name: &str) -> String {
    format!("/apis/batch/v1/namespaces/default/jobs/{name}")
}

/// What the Job controller would write when the pod ends.
fn patch_end(k: &Kube, name: &str, succeeded: bool) {
    let (kind, count) = if succeeded {
        ("Complete", "succeeded")
    } else {
        ("Failed", "failed")
    };
    let body = format!(
        r#"{{"status":{{"{count}":1,"conditions":[{{"type":"{kind}","status":"True","reason":"{reason}","lastProbeTime":"2026-01-01T00:00:00Z","lastTransitionTime":"2026-01-01T00:00:00Z"}}]}}}}"#,
        reason = if succeeded {
            "Completed"
        } else {
            "BackoffLimitExceeded"
        },
    );
    let patched = kubectl(
        k,
        "PATCH",
        &format!("{}/status", job_path(name)),
        Some(&body),
    );
    assert_eq!(patched["status"][count], 1, "{patched:#}");
}

#[test]
fn a_job_becomes_a_kubernetes_job_and_follows_its_status() {
    let Some(k) = kube() else {
        return;
    };
    let mut server = server_with_cluster(&k);
    let home = server.home().to_path_buf();
    let check: serde_json::Value = parse(&petri(&home, &["cluster", "check", "k8s", "--json"]));
    assert_eq!(check["reachable"], true, "{check:#}");
    assert_eq!(check["credentials_valid"], true, "{check:#}");
    assert_eq!(check["version"], "v1.20.2", "{check:#}");

    let work = server.work();
    std::fs::write(work.join("train.py"), "print('hi')\n").unwrap();
    let submitted = jobs(&petri(
        &home,
        &[
            "submit",
            "--json",
            "--workdir",
            work.to_str().unwrap(),
            "--target",
            "k8s",
            "--image",
            "python:3.11-slim",
            "--cpus",
            "0.5",
            "--mem",
            "256MiB",
            "--gpus",
            "1",
            "--env",
            "LR=0.1",
            "--",
            "python",
            "-c",
            "print('hi')",
        ],
    ))
    .remove(0);
    let name = wait_job_made(&home, &submitted);
    assert_eq!(name, format!("petri-{}-1", submitted.id));
    // No controller makes a pod here: the Job waits, and Petri says so.
    wait_until(
        "the Job to show as waiting",
        Duration::from_secs(30),
        || {
            show(&home, &submitted).remote.is_some_and(|r| {
                r.waiting && r.state == "Pending" && r.reason.as_deref() == Some("no pod yet")
            })
        },
    );

    // The Job as the API server validated and keeps it.
    let job = kubectl(&k, "GET", &job_path(&name), None);
    assert_eq!(
        job["metadata"]["labels"]["petri.dev/job"],
        submitted.id.to_string()
    );
    assert_eq!(
        job["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "petri"
    );
    assert_eq!(job["spec"]["backoffLimit"], 0, "{job:#}");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "python:3.11-slim");
    assert_eq!(
        c["command"],
        serde_json::json!(["python", "-c", "print('hi')"])
    );
    assert_eq!(c["resources"]["requests"]["cpu"], "500m", "{c:#}");
    assert_eq!(c["resources"]["limits"]["memory"], "268435456", "{c:#}");
    assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1", "{c:#}");
    let env = c["env"].as_array().unwrap();
    assert!(
        env.iter().any(|e| e["name"] == "LR" && e["value"] == "0.1"),
        "{env:?}"
    );
    assert!(
        env.iter()
            .any(|e| e["name"] == "PETRI_OUTPUT_DIR" && e["value"] == "/petri/output"),
        "{env:?}"
    );

    // No shared path: the working directory travels in a ConfigMap of the attempt, copied into
    // the pod's own folder by an init container of the job's image.
    let map_path = format!("/api/v1/namespaces/default/configmaps/{name}");
    let map = kubectl(&k, "GET", &map_path, None);
    assert_eq!(map["binaryData"]["f0"], "cHJpbnQoJ2hpJykK", "{map:#}");
    assert_eq!(map["metadata"]["ownerReferences"][0]["kind"], "Job");
    assert_eq!(c["workingDir"], "/petri/work");
    assert_eq!(pod["initContainers"][0]["image"], "python:3.11-slim");
    let work_in = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "work-in")
        .cloned()
        .unwrap();
    assert_eq!(
        work_in["configMap"]["items"],
        serde_json::json!([{"key": "f0", "path": "train.py"}])
    );

    // The controller's part: the pod succeeded.
    patch_end(&k, &name, true);
    let done = wait_state(&home, &submitted, JobState::Succeeded);
    assert_eq!(done.exit_code, Some(0));
    wait_until(
        "the ConfigMap to be deleted",
        Duration::from_secs(30),
        || kubectl(&k, "GET", &map_path, None)["code"] == 404,
    );

    // A second job fails while the daemon is down; the next daemon records it, once.
    let failing = jobs(&petri(
        &home,
        &[
            "submit", "--json", "--target", "k8s", "--image", "busybox", "--", "false",
        ],
    ))
    .remove(0);
    let name = wait_job_made(&home, &failing);
    server.kill9();
    patch_end(&k, &name, false);
    server.restart();
    let failed = wait_state(server.home(), &failing, JobState::Failed);
    assert_eq!(failed.exit_code, Some(1), "no pod said otherwise");
    assert_eq!(failed.runs.len(), 1, "ran once: {:?}", failed.runs);
    let log = petri(server.home(), &["logs", &failing.id.to_string()]);
    assert!(
        String::from_utf8_lossy(&log.stdout).contains("BackoffLimitExceeded"),
        "{}",
        String::from_utf8_lossy(&log.stdout)
    );
}

#[test]
fn a_cancel_deletes_the_job_and_what_kubernetes_cannot_do_is_refused() {
    let Some(k) = kube() else {
        return;
    };
    let server = server_with_cluster(&k);
    let home = server.home();
    let submitted = jobs(&petri(
        home,
        &[
            "submit", "--json", "--target", "k8s", "--image", "busybox", "--", "sleep", "300",
        ],
    ))
    .remove(0);
    let name = wait_job_made(home, &submitted);
    assert_eq!(kubectl(&k, "GET", &job_path(&name), None)["kind"], "Job");
    assert!(
        petri(home, &["cancel", &submitted.id.to_string()])
            .status
            .success()
    );
    wait_state(home, &submitted, JobState::Cancelled);
    wait_until("the Job to be deleted", Duration::from_secs(30), || {
        kubectl(&k, "GET", &job_path(&name), None)["code"] == 404
    });

    let refused = |args: &[&str], words: &str| {
        let mut all = vec!["submit", "--target", "k8s"];
        all.extend_from_slice(args);
        let out = petri(home, &all);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("TARGET_REFUSED") && err.contains(words),
            "{err}"
        );
    };
    refused(&["--", "true"], "runs images");
    refused(
        &["--image", "busybox", "--gpu-mem", "4GiB", "--", "true"],
        "nvidia.com/gpu",
    );

    // An image the cluster's registry does not have is refused at submit; one it has is not.
    let missing = format!("{}/petri/nope:1", k.registry);
    let out = petri(
        home,
        &[
            "submit", "--target", "k8s", "--image", &missing, "--", "true",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("IMAGE_NOT_FOUND")
            && err.contains("has no petri/nope:1"),
        "{err}"
    );
    let tiny = format!("{}/petri/tiny:1", k.registry);
    let accepted = jobs(&petri(
        home,
        &[
            "submit", "--json", "--target", "k8s", "--image", &tiny, "--", "true",
        ],
    ))
    .remove(0);
    assert!(
        petri(home, &["cancel", &accepted.id.to_string()])
            .status
            .success()
    );
    wait_state(home, &accepted, JobState::Cancelled);

    // A token the API server refuses is not kept.
    let bad = home.join("bad.token");
    std::fs::write(&bad, "not-a-token").unwrap();
    let out = petri(
        home,
        &[
            "cluster",
            "add",
            "k8s2",
            "--kind",
            "kubernetes",
            "--url",
            &k.url,
            "--token-file",
            bad.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // A bare token brings no certificate authority: the server's self-made one is not
    // trusted, which is said as well as a refusal would be.
    assert!(
        err.contains("CREDENTIAL_REFUSED") || err.contains("CLUSTER_UNAVAILABLE"),
        "{err}"
    );
    let listed: Vec<serde_json::Value> = parse(&petri(home, &["cluster", "ls", "--json"]));
    assert_eq!(listed.len(), 1);
    let kc = std::fs::read_to_string(&k.kubeconfig).unwrap();
    let token = std::fs::read_to_string(&k.token_file).unwrap();
    let stored = std::fs::read_to_string(home.join("clusters.json")).unwrap();
    assert!(!stored.contains(token.trim()) && !stored.contains("certificate-authority-data"));
    assert!(kc.contains(token.trim()));
}

#[test]
fn secrets_go_in_a_secret_of_the_attempt_that_leaves_with_it() {
    let Some(k) = kube() else {
        return;
    };
    let server = server_with_cluster(&k);
    let home = server.home();
    let private = home.join("private");
    std::fs::create_dir_all(&private).unwrap();
    crate::secrets::set_both(home, &private);
    let submitted = jobs(&petri(
        home,
        &[
            "submit",
            "--json",
            "--target",
            "k8s",
            "--image",
            "busybox",
            "--secret",
            "HF_TOKEN",
            "--secret",
            "kaggle.json",
            "--run",
            "echo \"$HF_TOKEN\"; cat \"$KAGGLE_JSON\"",
        ],
    ))
    .remove(0);
    let name = wait_job_made(home, &submitted);
    let job = kubectl(&k, "GET", &job_path(&name), None);
    assert!(
        !job.to_string().contains(crate::secrets::VALUE),
        "no secret in the Job: {job:#}"
    );
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    let env = c["env"].as_array().unwrap();
    let var = |n: &str| env.iter().find(|e| e["name"] == n).cloned().unwrap();
    assert_eq!(
        var("HF_TOKEN")["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": name, "key": "HF_TOKEN", "optional": false})
    );
    assert_eq!(var("KAGGLE_JSON")["value"], "/petri/secrets/KAGGLE_JSON");
    assert_eq!(c["volumeMounts"][1]["mountPath"], "/petri/secrets");

    let secret_path = format!("/api/v1/namespaces/default/secrets/{name}");
    let secret = kubectl(&k, "GET", &secret_path, None);
    assert_eq!(secret["type"], "Opaque", "{secret:#}");
    let decoded = |key: &str| {
        let b64 = secret["data"][key].as_str().unwrap().to_string();
        let out = std::process::Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(b64.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(decoded("HF_TOKEN"), crate::secrets::VALUE);
    assert!(decoded("KAGGLE_JSON").contains("\"username\""));
    // Owned by the Job: deleting the Job (a cancel, its owner) deletes the Secret too.
    let owner = &secret["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Job", "{secret:#}");
    assert_eq!(owner["uid"], job["metadata"]["uid"]);

    // The attempt ends: its Secret leaves the cluster.
    patch_end(&k, &name, true);
    wait_state(home, &submitted, JobState::Succeeded);
    wait_until("the Secret to be deleted", Duration::from_secs(30), || {
        kubectl(&k, "GET", &secret_path, None)["code"] == 404
    });
}

#[test]
fn with_a_shared_path_the_pod_works_in_a_copy_and_its_outputs_come_back() {
    let Some(k) = kube() else {
        return;
    };
    let shared = tempfile::tempdir().unwrap();
    let server = server_with_cluster_and(&k, &["--shared", shared.path().to_str().unwrap()]);
    let home = server.home();
    let work = server.work();
    std::fs::write(work.join("train.py"), "print('hi')\n").unwrap();
    let submitted = jobs(&petri(
        home,
        &[
            "submit",
            "--json",
            "--workdir",
            work.to_str().unwrap(),
            "--target",
            "k8s",
            "--image",
            "python:3.11-slim",
            "--",
            "python",
            "train.py",
        ],
    ))
    .remove(0);
    let name = wait_job_made(home, &submitted);
    let attempt = shared
        .path()
        .join("petri")
        .join(format!("{}.1", submitted.id));
    assert_eq!(
        std::fs::read_to_string(attempt.join("work/train.py")).unwrap(),
        "print('hi')\n",
        "the working directory is copied to the shared path"
    );
    let job = kubectl(&k, "GET", &job_path(&name), None);
    let pod = &job["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        c["workingDir"],
        attempt.join("work").to_str().unwrap(),
        "{c:#}"
    );
    assert_eq!(
        pod["volumes"][0]["hostPath"]["path"],
        shared.path().to_str().unwrap()
    );
    assert_eq!(pod["volumes"][0]["hostPath"]["type"], "Directory");
    assert_eq!(
        c["volumeMounts"][0]["mountPath"],
        shared.path().to_str().unwrap()
    );
    let env = c["env"].as_array().unwrap();
    assert!(
        env.iter().any(|e| e["name"] == "PETRI_OUTPUT_DIR"
            && e["value"] == attempt.join("output").to_str().unwrap()),
        "{env:?}"
    );
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(home).unwrap().uid();
    assert_eq!(
        pod["securityContext"]["runAsUser"], uid,
        "the pod runs as the job's owner"
    );

    // The pod's part (no kubelet here): it writes its outputs, and the controller says done.
    std::fs::write(attempt.join("output/metrics.txt"), "accuracy=0.9\n").unwrap();
    patch_end(&k, &name, true);
    let done = wait_state(home, &submitted, JobState::Succeeded);
    let back = home
        .join("outputs")
        .join(done.id.to_string())
        .join("metrics.txt");
    assert_eq!(std::fs::read_to_string(back).unwrap(), "accuracy=0.9\n");
    let log = petri(home, &["logs", &done.id.to_string()]);
    assert!(
        !String::from_utf8_lossy(&log.stdout).contains("not copied"),
        "{}",
        String::from_utf8_lossy(&log.stdout)
    );
    wait_until(
        "the attempt's folder to go",
        Duration::from_secs(30),
        || !attempt.exists(),
    );
}
