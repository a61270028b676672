//! Containers from the CLI with the real engine: a SIGKILL of the daemon while container jobs run
//! (one ends while no daemon watches), notebooks from the CLI, and an engine that does not answer.

use std::time::Duration;

use petri_domain::{Job, JobState};

use crate::helpers::{Server, petri, petri_cmd, wait_until};
use crate::{jobs, jobs_one, parse};

/// The image the tests run, or `None` after a loud message (a failure under `CI=true`).
pub(crate) fn image() -> Option<String> {
    let image = std::env::var("PETRI_TEST_IMAGE").unwrap_or_else(|_| "petri/python:3.11".into());
    let ok = std::process::Command::new("docker")
        .args(["image", "inspect", &image])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(image);
    }
    assert!(
        std::env::var("CI").is_err(),
        "no Docker engine with {image}"
    );
    eprintln!("SKIPPED: no Docker engine with {image} (scripts/test.sh provides both)");
    None
}

fn containers_of(home: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!("label=petri.home={}", home.display()))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn sigkill_of_the_daemon_while_containers_run_loses_no_exit_code_and_no_line() {
    let Some(image) = image() else { return };
    let mut server = Server::start("");
    let home = server.home().to_path_buf();
    let work = server.work();
    let submit = |script: &str| -> Job {
        jobs(&petri(
            &home,
            &[
                "submit",
                "--json",
                "--image",
                &image,
                "--workdir",
                work.to_str().unwrap(),
                "--run",
                script,
            ],
        ))
        .remove(0)
    };
    // One outlives the restart; one ends while no daemon is there.
    let long = submit(
        "for i in $(seq 1 8); do echo line $i; sleep 0.5; done; echo $PETRI_JOB_ID >> ran; exit 5",
    );
    let short = submit("echo early; while [ ! -f go ]; do sleep 0.05; done; echo late; exit 4");
    server.wait_state(&long, JobState::Running);
    server.wait_state(&short, JobState::Running);
    wait_until("the first lines", Duration::from_secs(60), || {
        let out = petri(&home, &["logs", &long.number.to_string()]);
        String::from_utf8_lossy(&out.stdout).contains("line 2")
    });
    server.kill9();
    std::fs::write(work.join("go"), "").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    server.restart();
    server.wait_state(&short, JobState::Failed);
    server.wait_state(&long, JobState::Failed);
    let long_done = jobs_one(&petri(&home, &["show", "--json", &long.number.to_string()]));
    assert_eq!(long_done.exit_code, Some(5));
    assert_eq!(long_done.runs.len(), 1, "it ran once");
    let short_done = jobs_one(&petri(
        &home,
        &["show", "--json", &short.number.to_string()],
    ));
    assert_eq!(short_done.exit_code, Some(4));
    let log = petri(&home, &["logs", &long.number.to_string()]);
    let expected: String = (1..=8).map(|i| format!("line {i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&log.stdout), expected);
    let log = petri(&home, &["logs", &short.number.to_string()]);
    assert_eq!(String::from_utf8_lossy(&log.stdout), "early\nlate\n");
    assert_eq!(
        std::fs::read_to_string(work.join("ran"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    wait_until("no container left", Duration::from_secs(30), || {
        containers_of(&home).is_empty()
    });
}

#[test]
fn a_container_job_tracks_into_its_own_run_with_the_stock_client() {
    let Some(image) = image() else { return };
    let server = Server::start("");
    let home = server.home().to_path_buf();
    // The first thing a researcher writes: `import mlflow` in Petri's own image, nothing set.
    let script = "import mlflow, os\n\
                  mlflow.log_param('lr', 0.1)\n\
                  for step in range(3):\n    mlflow.log_metric('loss', 1.0 / (step + 1), step=step)\n\
                  print('tracked at', os.environ['MLFLOW_TRACKING_URI'])\n";
    let job = jobs(&petri(
        &home,
        &[
            "submit", "--json", "--name", "ctrack", "--image", &image, "--", "python", "-c", script,
        ],
    ))
    .remove(0);
    server.wait_state(&job, JobState::Succeeded);
    let log =
        String::from_utf8_lossy(&petri(&home, &["logs", &job.id.to_string()]).stdout).to_string();
    assert!(
        log.contains("tracked at http://host.docker.internal:"),
        "{log}"
    );
    let run = parse::<serde_json::Value>(&petri(
        &home,
        &["run", "show", "--json", &job.number.to_string()],
    ));
    assert_eq!(run["info"]["run_name"], "ctrack", "{run:#}");
    assert_eq!(run["info"]["status"], "FINISHED", "{run:#}");
    let loss = run["data"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "loss")
        .cloned()
        .unwrap_or_default();
    assert_eq!(loss["step"], 2, "{run:#}");
    assert!(run["data"]["params"].to_string().contains("lr"), "{run:#}");
}

#[test]
fn notebooks_from_the_cli() {
    let Some(image) = image() else { return };
    let server = Server::start(&format!("[notebooks]\nimage = \"{image}\"\n"));
    let home = server.home();
    let started = petri(home, &["notebook", "start", "nb", "--json"]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let nb: serde_json::Value = parse(&started);
    assert_eq!(nb["state"], "running");
    let table = String::from_utf8_lossy(&petri(home, &["notebook", "ls"]).stdout).to_string();
    assert!(table.contains("nb") && table.contains("running"), "{table}");
    // The link signs a browser in: it redirects with a session cookie.
    let open = petri(home, &["notebook", "open", "nb"]);
    let url = String::from_utf8_lossy(&open.stdout).trim().to_string();
    assert!(url.contains("/notebooks/nb/lab?petri_link="), "{url}");
    let taken = petri(home, &["notebook", "start", "nb"]);
    assert!(!taken.status.success());
    assert!(String::from_utf8_lossy(&taken.stderr).contains("NOTEBOOK_NAME_TAKEN"));
    let stopped = petri(home, &["notebook", "stop", "nb"]);
    assert!(stopped.status.success());
    wait_until("the notebook to stop", Duration::from_secs(60), || {
        let v: serde_json::Value = parse(&petri(home, &["notebook", "ls", "--json"]));
        v[0]["state"] == "stopped"
    });
    assert!(petri(home, &["notebook", "rm", "nb"]).status.success());
    wait_until("no container left", Duration::from_secs(30), || {
        containers_of(home).is_empty()
    });
    // The default image's build runs as a job; with the recipe unchanged it keeps the image.
    let built = petri(home, &["image", "build"]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let build_job = server
        .client_jobs(&["--all"])
        .into_iter()
        .find(|j| j.name.starts_with("image-build:"))
        .expect("the build is a job");
    let log =
        String::from_utf8_lossy(&petri(home, &["logs", &build_job.number.to_string()]).stdout)
            .to_string();
    assert!(log.contains("is up to date"), "{log}");
    // The images the engine has.
    let images: serde_json::Value = parse(&petri(home, &["image", "ls", "--json"]));
    assert!(
        images.as_array().unwrap().iter().any(|i| i["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == image.as_str())),
        "{images}"
    );
}

#[test]
fn an_engine_that_does_not_answer_is_a_clear_error() {
    let server = Server::start_with(
        "",
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock".into())],
    );
    let home = server.home();
    let out = petri_cmd(home)
        .args(["submit", "--image", "petri/python:3.11", "--", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CONTAINERS_UNAVAILABLE"), "{err}");
    assert!(err.contains("unix:///nonexistent/docker.sock"), "{err}");
    assert!(err.contains("dockerd"), "{err}");
    // The daemon carries on, and local jobs still run.
    let job = jobs(&petri(home, &["submit", "--json", "--", "true"])).remove(0);
    server.wait_state(&job, JobState::Succeeded);
}
