//! Jobs on a real Ray (one head on loopback with token authentication, its Jobs API, started by
//! `scripts/test.sh`): a sample runs there as it runs here, the Ray job is the Petri job (its
//! `submission_id`), a failure keeps its exit code, logs come through Ray's API while the job
//! runs, a cancel stops the Ray job, a daemon killed meanwhile re-attaches, and what Ray cannot
//! do is refused at submit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use petri_domain::{Job, JobState};

use crate::helpers::{Server, log_of, petri, wait_until};
use crate::{jobs, jobs_one, parse};

struct Ray {
    url: String,
    user: String,
    token_file: PathBuf,
    shared: PathBuf,
}

/// The cluster `scripts/test.sh` started; under `CI=true` a missing one fails the test.
fn ray() -> Option<Ray> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        var("PETRI_TEST_RAY_URL"),
        var("PETRI_TEST_RAY_USER"),
        var("PETRI_TEST_RAY_TOKEN_FILE"),
        var("PETRI_TEST_RAY_SHARED"),
    ) {
        (Some(url), Some(user), Some(token), Some(shared)) => Some(Ray {
            url,
            user,
            token_file: token.into(),
            shared: shared.into(),
        }),
        _ => {
            let why = "no Ray to test against (scripts/test.sh starts a head on loopback and \
                       sets PETRI_TEST_RAY_*)";
            assert!(std::env::var("CI").is_err(), "{why}");
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

fn cluster_add(home: &Path, r: &Ray, name: &str, token_file: &Path) -> std::process::Output {
    petri(
        home,
        &[
            "cluster",
            "add",
            name,
            "--kind",
            "ray",
            "--url",
            &r.url,
            "--user",
            &r.user,
            "--token-file",
            token_file.to_str().unwrap(),
            "--shared",
            r.shared.to_str().unwrap(),
        ],
    )
}

fn server_with_cluster(r: &Ray) -> Server {
    let server = Server::start("");
    let out = cluster_add(server.home(), r, "rc", &r.token_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server
}

/// What Ray itself says of one of its jobs, through its Jobs API.
fn ray_job(r: &Ray, id: &str) -> serde_json::Value {
    let token = std::fs::read_to_string(&r.token_file).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-fsS", "-H"])
        .arg(format!("Authorization: Bearer {}", token.trim()))
        .arg(format!("{}/api/jobs/{id}", r.url))
        .output()
        .expect("curl");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn submit(home: &Path, workdir: &str, run: &str) -> Job {
    jobs(&petri(
        home,
        &[
            "submit",
            "--json",
            "--workdir",
            workdir,
            "--target",
            "rc",
            "--run",
            run,
        ],
    ))
    .remove(0)
}

#[test]
fn a_sample_runs_on_ray_as_it_runs_here_and_is_the_same_job_there() {
    let Some(r) = ray() else {
        return;
    };
    let server = server_with_cluster(&r);
    let home = server.home();
    let check: serde_json::Value = parse(&petri(home, &["cluster", "check", "rc", "--json"]));
    assert_eq!(check["reachable"], true, "{check:#}");
    assert_eq!(check["credentials_valid"], true, "{check:#}");
    assert!(
        check["version"].as_str().unwrap().starts_with("2."),
        "{check:#}"
    );
    assert!(
        check["capacity"]["cpus"].as_u64().unwrap() >= 1,
        "{check:#}"
    );

    let work = server.work();
    let w = work.to_str().unwrap();
    let train = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/train.yaml");
    let train = train.to_str().unwrap();
    let here = jobs(&petri(
        home,
        &["submit", "--json", "--workdir", w, "-f", train],
    ));
    let there = jobs(&petri(
        home,
        &[
            "submit",
            "--json",
            "--workdir",
            w,
            "--target",
            "rc",
            "-f",
            train,
        ],
    ));
    for (a, b) in here.iter().zip(&there) {
        let (a, b) = (server.wait_final(a), server.wait_final(b));
        assert_eq!(a.state, JobState::Succeeded, "{a:?}");
        assert_eq!(
            b.state,
            JobState::Succeeded,
            "{:?}\n{}",
            b,
            log_of(home, &b)
        );
        assert_eq!(b.runs.last().unwrap().target, "rc");
        let out = |j: &Job| {
            std::fs::read_to_string(
                home.join("outputs")
                    .join(j.id.to_string())
                    .join("metrics.txt"),
            )
            .unwrap()
        };
        assert_eq!(out(&a), out(&b));
        assert_eq!(
            log_of(home, &a).replace(&a.id.to_string(), "ID"),
            log_of(home, &b).replace(&b.id.to_string(), "ID")
        );
        // Ray knows the job by Petri's id, and saw it succeed.
        let seen = ray_job(&r, &b.id.to_string());
        assert_eq!(seen["status"], "SUCCEEDED", "{seen:#}");
        assert_eq!(seen["metadata"]["petri.job"], b.id.to_string(), "{seen:#}");
    }
}

#[test]
fn a_failure_a_followed_log_a_stop_and_a_daemon_restart_on_ray() {
    let Some(r) = ray() else {
        return;
    };
    let mut server = server_with_cluster(&r);
    let work = server.work();
    let w = work.to_str().unwrap().to_string();
    let home = server.home().to_path_buf();

    // A failure keeps its exit code and its output.
    let failed = server.wait_final(&submit(&home, &w, "echo about to fail; exit 3"));
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.exit_code, Some(3));
    assert_eq!(log_of(&home, &failed), "about to fail\n");
    assert_eq!(ray_job(&r, &failed.id.to_string())["driver_exit_code"], 3);

    // The log grows in Petri while the Ray job runs; a cancel stops it in Ray.
    let long = submit(&home, &w, "echo started; sleep 300");
    wait_until("the Ray job's first line", Duration::from_secs(60), || {
        log_of(&home, &long).contains("started")
    });
    let running: Job = jobs_one(&petri(&home, &["show", "--json", &long.id.to_string()]));
    assert_eq!(running.state, JobState::Running);
    assert_eq!(ray_job(&r, &long.id.to_string())["status"], "RUNNING");
    assert!(
        petri(&home, &["cancel", &long.id.to_string()])
            .status
            .success()
    );
    let cancelled = server.wait_final(&long);
    assert_eq!(cancelled.state, JobState::Cancelled);
    wait_until("Ray to say STOPPED", Duration::from_secs(30), || {
        ray_job(&r, &long.id.to_string())["status"] == "STOPPED"
    });

    // The daemon dies while a Ray job runs; the next one re-attaches and records its end once.
    let gated = submit(
        &home,
        &w,
        "echo waiting; while [ ! -f go ]; do sleep 0.1; done; echo went; exit 7",
    );
    wait_until("the gated job to start", Duration::from_secs(60), || {
        log_of(&home, &gated).contains("waiting")
    });
    server.kill9();
    let copy = r
        .shared
        .join("petri")
        .join(format!("{}.1", gated.id))
        .join("work");
    std::fs::write(copy.join("go"), "").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    server.restart();
    let ended = server.wait_final(&gated);
    assert_eq!(ended.state, JobState::Failed);
    assert_eq!(ended.exit_code, Some(7));
    assert_eq!(ended.runs.len(), 1, "ran once: {:?}", ended.runs);
    assert_eq!(log_of(&home, &ended), "waiting\nwent\n");
}

#[test]
fn what_ray_cannot_do_is_refused_at_submit() {
    let Some(r) = ray() else {
        return;
    };
    let server = server_with_cluster(&r);
    let home = server.home();
    let refused = |args: &[&str], code: &str, words: &str| {
        let mut all = vec!["submit", "--target", "rc"];
        all.extend_from_slice(args);
        let out = petri(home, &all);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(code) && err.contains(words), "{err}");
    };
    refused(
        &["--image", "debian", "--", "true"],
        "TARGET_REFUSED",
        "image",
    );
    refused(
        &["--cpus", "4096", "--", "true"],
        "TARGET_REFUSED",
        "4096 cpus",
    );
    assert!(server.client_jobs(&["--all"]).is_empty());

    // A token Ray refuses is not kept, and says what to do.
    let bad = home.join("bad.token");
    std::fs::write(&bad, "not-the-token").unwrap();
    let out = cluster_add(home, &r, "rc2", &bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CREDENTIAL_REFUSED") && err.contains("refused the token"),
        "{err}"
    );
    // Ray has no partitions.
    let out = petri(
        home,
        &[
            "cluster",
            "add",
            "rc3",
            "--kind",
            "ray",
            "--url",
            &r.url,
            "--token-file",
            r.token_file.to_str().unwrap(),
            "--shared",
            r.shared.to_str().unwrap(),
            "--partition",
            "gpu",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("INVALID_CLUSTER") && err.contains("partitions"),
        "{err}"
    );
    let listed: Vec<serde_json::Value> = parse(&petri(home, &["cluster", "ls", "--json"]));
    assert_eq!(listed.len(), 1);
    let token = std::fs::read_to_string(&r.token_file).unwrap();
    let stored = std::fs::read_to_string(home.join("clusters.json")).unwrap();
    assert!(!stored.contains(token.trim()));
}

#[test]
fn secrets_reach_a_ray_job_masked_and_never_rays_record_of_it() {
    let Some(r) = ray() else {
        return;
    };
    let server = server_with_cluster(&r);
    let home = server.home();
    let work = server.work();
    let private = home.join("private");
    std::fs::create_dir_all(&private).unwrap();
    crate::secrets::set_both(home, &private);
    let job = jobs(&petri(
        home,
        &[
            "submit",
            "--json",
            "--workdir",
            work.to_str().unwrap(),
            "--target",
            "rc",
            "--secret",
            "HF_TOKEN",
            "--secret",
            "kaggle.json",
            "--run",
            "echo \"$HF_TOKEN\"; cat \"$KAGGLE_JSON\"",
        ],
    ))
    .remove(0);
    let ended = server.wait_final(&job);
    assert_eq!(ended.state, JobState::Succeeded, "{}", log_of(home, &ended));
    // The log Ray keeps has the values; the one Petri copies masks them.
    assert_eq!(log_of(home, &ended), crate::secrets::EXPECTED);
    // Ray's record of the job (its runtime_env, its metadata) holds no secret.
    let recorded = ray_job(&r, &job.id.to_string());
    assert_eq!(recorded["status"], "SUCCEEDED", "{recorded:#}");
    assert!(
        !recorded.to_string().contains(crate::secrets::VALUE),
        "{recorded:#}"
    );
}
