//! Jobs on a real Slurm 22.05 (one node on loopback, slurmrestd with JWT, started by
//! `scripts/test.sh`): the samples run there as they run here, a failure keeps its exit code, a
//! cancel reaches Slurm, a daemon killed while a Slurm job runs re-attaches and records its end,
//! a pipeline step on Slurm passes values across, and what the cluster cannot do is refused at
//! submit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use petri_domain::{Job, JobState};

use crate::helpers::{Server, log_of, petri, wait_until};
use crate::{jobs, jobs_one, parse};

struct Slurm {
    url: String,
    user: String,
    token_file: PathBuf,
    shared: PathBuf,
}

/// The one node of the test cluster: each test shares it, but the one that fills it on purpose
/// has it alone (the others' jobs would queue behind its blocker).
static NODE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn share_node() -> std::sync::RwLockReadGuard<'static, ()> {
    NODE.read().unwrap_or_else(|p| p.into_inner())
}

/// The cluster `scripts/test.sh` started; under `CI=true` a missing one fails the test.
fn slurm() -> Option<Slurm> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        var("PETRI_TEST_SLURM_URL"),
        var("PETRI_TEST_SLURM_USER"),
        var("PETRI_TEST_SLURM_TOKEN_FILE"),
        var("PETRI_TEST_SLURM_SHARED"),
    ) {
        (Some(url), Some(user), Some(token), Some(shared)) => Some(Slurm {
            url,
            user,
            token_file: token.into(),
            shared: shared.into(),
        }),
        _ => {
            let why = "no Slurm to test against (scripts/test.sh starts a one-node cluster and \
                       sets PETRI_TEST_SLURM_*)";
            assert!(std::env::var("CI").is_err(), "{why}");
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

/// `petri cluster add NAME` for the test cluster, with the token in `token_file`.
fn cluster_add(home: &Path, s: &Slurm, name: &str, token_file: &Path) -> std::process::Output {
    petri(
        home,
        &[
            "cluster",
            "add",
            name,
            "--kind",
            "slurm",
            "--url",
            &s.url,
            "--user",
            &s.user,
            "--token-file",
            token_file.to_str().unwrap(),
            "--shared",
            s.shared.to_str().unwrap(),
        ],
    )
}

/// A daemon with the cluster added as `hpc`.
fn server_with_cluster(s: &Slurm) -> Server {
    let server = Server::start("");
    let out = cluster_add(server.home(), s, "hpc", &s.token_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server
}

fn output_of(home: &Path, job: &Job, file: &str) -> String {
    std::fs::read_to_string(home.join("outputs").join(job.id.to_string()).join(file))
        .unwrap_or_else(|e| panic!("job #{}'s {file}: {e}", job.number))
}

/// What Slurm itself says of one of its jobs (`scontrol show job`, while it remembers it).
fn slurm_state(id: &str) -> String {
    let out = std::process::Command::new("scontrol")
        .args(["show", "job", id])
        .output()
        .expect("scontrol");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("JobState="))
        .unwrap_or("")
        .to_string()
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples")
}

#[test]
fn the_samples_run_on_slurm_as_they_run_here() {
    let Some(s) = slurm() else {
        return;
    };
    let _node = share_node();
    let server = server_with_cluster(&s);
    let home = server.home();
    let check = petri(home, &["cluster", "check", "hpc", "--json"]);
    let check: serde_json::Value = parse(&check);
    assert_eq!(check["reachable"], true, "{check:#}");
    assert_eq!(check["credentials_valid"], true, "{check:#}");
    assert!(
        check["version"].as_str().unwrap().starts_with("22.05"),
        "{check:#}"
    );
    assert!(
        check["capacity"]["cpus"].as_u64().unwrap() >= 1,
        "{check:#}"
    );

    let work = server.work();
    let w = work.to_str().unwrap();
    let train = samples().join("train.yaml");
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
            "hpc",
            "-f",
            train,
        ],
    ));
    assert_eq!(here.len(), 3);
    assert_eq!(there.len(), 3);
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
        assert_eq!(b.runs.last().unwrap().target, "hpc");
        // The same output file, and the same log but for the job's own id.
        assert_eq!(
            output_of(home, &a, "metrics.txt"),
            output_of(home, &b, "metrics.txt")
        );
        assert_eq!(
            log_of(home, &a).replace(&a.id.to_string(), "ID"),
            log_of(home, &b).replace(&b.id.to_string(), "ID")
        );
    }

    // A chain: each step after the one before, on the cluster.
    let chain = samples().join("chain.yaml");
    let chain = jobs(&petri(
        home,
        &[
            "submit",
            "--json",
            "--workdir",
            w,
            "--target",
            "hpc",
            "-f",
            chain.to_str().unwrap(),
        ],
    ));
    let ended: Vec<Job> = chain.iter().map(|j| server.wait_final(j)).collect();
    for j in &ended {
        assert_eq!(j.state, JobState::Succeeded, "{j:?}");
    }
    assert!(ended[0].finished_at_ms.unwrap() <= ended[1].started_at_ms.unwrap());
    assert!(ended[1].finished_at_ms.unwrap() <= ended[2].started_at_ms.unwrap());
    assert_eq!(log_of(home, &ended[2]), "done\n");
}

#[test]
fn a_failure_a_cancel_and_a_daemon_restart_on_slurm() {
    let Some(s) = slurm() else {
        return;
    };
    let _node = share_node();
    let mut server = server_with_cluster(&s);
    let work = server.work();
    let w = work.to_str().unwrap().to_string();
    let submit = |home: &Path, run: &str| {
        jobs(&petri(
            home,
            &[
                "submit",
                "--json",
                "--workdir",
                &w,
                "--target",
                "hpc",
                "--run",
                run,
            ],
        ))
        .remove(0)
    };
    let home = server.home().to_path_buf();

    // A failure keeps its exit code and its output.
    let failing = submit(&home, "echo about to fail; exit 3");
    let failed = server.wait_final(&failing);
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.exit_code, Some(3));
    assert_eq!(log_of(&home, &failed), "about to fail\n");

    // A cancel from Petri cancels the Slurm job.
    let long = submit(&home, "echo started; sleep 300");
    wait_until(
        "the Slurm job's first line",
        Duration::from_secs(60),
        || log_of(&home, &long).contains("started"),
    );
    let running: Job = jobs_one(&petri(&home, &["show", "--json", &long.id.to_string()]));
    let slurm_id = running.runs.last().unwrap().handle.clone().unwrap();
    assert_eq!(slurm_state(&slurm_id), "RUNNING");
    assert!(
        petri(&home, &["cancel", &long.id.to_string()])
            .status
            .success()
    );
    let cancelled = server.wait_final(&long);
    assert_eq!(cancelled.state, JobState::Cancelled);
    wait_until("Slurm to say CANCELLED", Duration::from_secs(30), || {
        slurm_state(&slurm_id) == "CANCELLED"
    });

    // The daemon dies (SIGKILL) while a Slurm job runs; the job goes on, and the next daemon
    // re-attaches and records how it ended, once.
    let gated = submit(
        &home,
        "echo waiting; while [ ! -f go ]; do sleep 0.1; done; echo went; exit 7",
    );
    wait_until("the gated job to start", Duration::from_secs(60), || {
        log_of(&home, &gated).contains("waiting")
    });
    server.kill9();
    // The job runs in a copy of the working directory on the shared path: open its gate there.
    let copy = s
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
fn what_slurm_cannot_do_is_refused_at_submit() {
    let Some(s) = slurm() else {
        return;
    };
    let _node = share_node();
    let server = server_with_cluster(&s);
    let home = server.home();
    let refused = |args: &[&str], code: &str, words: &str| {
        let mut all = vec!["submit", "--target", "hpc"];
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
    let out = petri(home, &["submit", "--target", "mars", "--", "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("UNKNOWN_TARGET"));
    // Nothing was queued by any of them.
    assert!(server.client_jobs(&["--all"]).is_empty());

    // A token the cluster refuses is not kept, and says what to do.
    let bad = server.home().join("bad.jwt");
    std::fs::write(&bad, "not-a-token").unwrap();
    let out = cluster_add(home, &s, "hpc2", &bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the credential"), "{err}");
    let listed: Vec<serde_json::Value> = parse(&petri(home, &["cluster", "ls", "--json"]));
    assert_eq!(listed.len(), 1);
    // The token is nowhere in the home in clear.
    let token = std::fs::read_to_string(&s.token_file).unwrap();
    let stored = std::fs::read_to_string(home.join("clusters.json")).unwrap();
    assert!(!stored.contains(token.trim()));
}

#[test]
fn a_pipeline_step_on_slurm_passes_values_across() {
    let Some(s) = slurm() else {
        return;
    };
    let _node = share_node();
    let server = server_with_cluster(&s);
    let home = server.home();
    let file = server.work().join("mixed.yaml");
    std::fs::write(
        &file,
        r#"
name: mixed
steps:
  count:
    run: echo 21 > "$PETRI_OUTPUTS/n"
    outputs: {n: {type: value}}
  double:
    target: hpc
    with: {n: "${{ steps.count.outputs.n }}"}
    run: echo $((INPUT_N * 2)) > "$PETRI_OUTPUTS/twice"; echo "::set-output where=$(hostname)"
    outputs: {twice: {type: value}, where: {type: value}}
  report:
    with: {twice: "${{ steps.double.outputs.twice }}"}
    run: echo "got $INPUT_TWICE"
"#,
    )
    .unwrap();
    let run: serde_json::Value = parse(&petri(
        home,
        &[
            "pipeline",
            "run",
            "--json",
            "--wait",
            file.to_str().unwrap(),
        ],
    ));
    assert_eq!(run["state"], "succeeded", "{run:#}");
    let steps = run["steps"].as_array().unwrap();
    let double = steps.iter().find(|s| s["name"] == "double").unwrap();
    assert_eq!(
        double["outputs"]["twice"],
        serde_json::json!("42"),
        "{run:#}"
    );
}

#[test]
fn an_auto_job_runs_here_when_it_can_and_bursts_to_slurm_once_it_has_waited() {
    let Some(s) = slurm() else {
        return;
    };
    let _node = share_node();
    let server = Server::start("[capacity]\ncpus = 1\n[burst]\nto = \"hpc\"\nafter = \"2s\"\n");
    let out = cluster_add(server.home(), &s, "hpc", &s.token_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let home = server.home();
    let work = server.work();
    let w = work.to_str().unwrap();
    let submit = |extra: &[&str], run: &str| {
        let mut args = vec!["submit", "--json", "--workdir", w, "--cpus", "1"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--run", run]);
        jobs(&petri(home, &args)).remove(0)
    };
    // The machine is free: an auto job runs here.
    let here = server.wait_final(&submit(&["--target", "auto"], "echo here"));
    assert_eq!(here.state, JobState::Succeeded);
    assert_eq!(here.runs.last().unwrap().target, "local");

    // The machine is busy: the next auto job waits here, then bursts to Slurm.
    let blocker = submit(&[], "sleep 60");
    wait_until("the blocker to run", Duration::from_secs(30), || {
        let j: Job = jobs_one(&petri(home, &["show", "--json", &blocker.id.to_string()]));
        j.state == JobState::Running
    });
    let burst = server.wait_final(&submit(&["--target", "auto"], "echo there"));
    assert_eq!(burst.state, JobState::Succeeded, "{}", log_of(home, &burst));
    assert_eq!(burst.runs.last().unwrap().target, "hpc");
    assert_eq!(log_of(home, &burst), "there\n");
    // What Slurm cannot run (an image) does not burst: it waits here for the machine.
    let image = std::env::var("PETRI_TEST_IMAGE").unwrap_or_else(|_| "petri/python:3.11".into());
    let boxed = submit(&["--target", "auto", "--image", &image], "true");
    std::thread::sleep(Duration::from_secs(4));
    let still: Job = jobs_one(&petri(home, &["show", "--json", &boxed.id.to_string()]));
    assert_eq!(still.state, JobState::Queued, "{still:?}");
    // The queued one first: cancelling the blocker first would free the machine for it.
    for j in [&boxed, &blocker] {
        assert!(petri(home, &["cancel", &j.id.to_string()]).status.success());
        assert_eq!(server.wait_final(j).state, JobState::Cancelled);
    }
}

#[test]
fn secrets_reach_a_slurm_job_masked_and_never_slurms_record_of_it() {
    let Some(s) = slurm() else {
        return;
    };
    let _node = share_node();
    let mut server = server_with_cluster(&s);
    let home = server.home().to_path_buf();
    let work = server.work();
    let private = home.join("private");
    std::fs::create_dir_all(&private).unwrap();
    crate::secrets::set_both(&home, &private);
    let job = jobs(&petri(
        &home,
        &[
            "submit",
            "--json",
            "--workdir",
            work.to_str().unwrap(),
            "--target",
            "hpc",
            "--secret",
            "HF_TOKEN",
            "--secret",
            "kaggle.json",
            "--run",
            "echo \"$HF_TOKEN\"; cat \"$KAGGLE_JSON\"; while [ ! -f go ]; do sleep 0.1; done; \
             echo \"again $HF_TOKEN\"",
        ],
    ))
    .remove(0);
    wait_until("the secrets in the log", Duration::from_secs(60), || {
        log_of(&home, &job) == crate::secrets::EXPECTED
    });
    let running: Job = jobs_one(&petri(&home, &["show", "--json", &job.id.to_string()]));
    let slurm_id = running.runs.last().unwrap().handle.clone().unwrap();
    // Slurm's own record of the job (its description, its script) holds no secret.
    for args in [
        vec!["show", "job", "-dd", slurm_id.as_str()],
        vec!["write", "batch_script", slurm_id.as_str(), "-"],
    ] {
        let out = std::process::Command::new("scontrol")
            .args(&args)
            .output()
            .expect("scontrol");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.is_empty(), "scontrol {args:?} said nothing");
        assert!(!text.contains(crate::secrets::VALUE), "{text}");
    }
    let attempt = s.shared.join("petri").join(format!("{}.1", job.id));
    assert!(
        !attempt.join("secrets/env").exists(),
        "the wrapper removed the file it read"
    );

    // Masked also by the daemon that adopts the job after a SIGKILL.
    server.kill9();
    server.restart();
    std::fs::write(attempt.join("work/go"), "").unwrap();
    let ended = server.wait_final(&job);
    assert_eq!(
        ended.state,
        JobState::Succeeded,
        "{}",
        log_of(&home, &ended)
    );
    assert_eq!(
        log_of(&home, &ended),
        format!("{}again ***\n", crate::secrets::EXPECTED)
    );
    assert!(
        !attempt.join("secrets").exists(),
        "the job's secret files left the shared path with it"
    );
}

#[test]
fn a_job_waiting_in_slurms_queue_shows_so() {
    let Some(s) = slurm() else {
        return;
    };
    let _node = NODE.write().unwrap_or_else(|p| p.into_inner());
    let server = server_with_cluster(&s);
    let home = server.home();
    let check: serde_json::Value = parse(&petri(home, &["cluster", "check", "hpc", "--json"]));
    let cpus = check["capacity"]["max_node_cpus"]
        .as_u64()
        .unwrap()
        .to_string();
    let submit = |cpus: &str| {
        jobs(&petri(
            home,
            &[
                "submit", "--json", "--target", "hpc", "--cpus", cpus, "--", "sleep", "300",
            ],
        ))
        .remove(0)
    };
    let show =
        |job: &Job| -> Job { jobs_one(&petri(home, &["show", "--json", &job.id.to_string()])) };
    // The whole node for one job; the next waits in Slurm's queue for it. Both are cancelled
    // whatever happens, so that the other tests' jobs get the node back at once.
    struct Cancel<'a>(&'a Path, Vec<String>);
    impl Drop for Cancel<'_> {
        fn drop(&mut self) {
            for id in &self.1 {
                petri(self.0, &["cancel", id]);
            }
        }
    }
    let blocker = submit(&cpus);
    let mut cancel = Cancel(home, vec![blocker.id.to_string()]);
    wait_until(
        "the blocker to run in Slurm",
        Duration::from_secs(120),
        || {
            show(&blocker)
                .remote
                .is_some_and(|r| r.state == "RUNNING" && !r.waiting)
        },
    );
    let waiter = submit("1");
    cancel.1.insert(0, waiter.id.to_string());
    let mut seen = None;
    // Slurm gives its reason once its scheduler has looked at the job.
    wait_until(
        "Slurm to hold the second job",
        Duration::from_secs(60),
        || {
            seen = show(&waiter).remote;
            seen.as_ref()
                .is_some_and(|r| r.state == "PENDING" && r.reason.is_some())
        },
    );
    let remote = seen.unwrap();
    assert_eq!(show(&waiter).state, JobState::Running, "Slurm took it");
    assert!(remote.waiting, "{remote:?}");
    assert_eq!(remote.cluster, "hpc");
    assert!(
        remote
            .id
            .as_ref()
            .is_some_and(|id| slurm_state(id) == "PENDING")
    );
    // `petri ls` says where it waits.
    let table = String::from_utf8_lossy(&petri(home, &["ls"]).stdout).into_owned();
    assert!(table.contains("waits on hpc: PENDING"), "{table}");
    drop(cancel);
    for job in [&waiter, &blocker] {
        assert_eq!(server.wait_final(job).state, JobState::Cancelled);
    }
}
