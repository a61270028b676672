//! End to end: the real `petri` binary, as a user runs it: `petri serve` in a temporary home, the
//! CLI against it, and the daemon killed with SIGKILL while jobs run.

mod containers;
mod helpers;
mod kubernetes;
mod pipelines;
mod ray;
mod secrets;
mod serving;
mod slurm;
mod team;
mod tls;

use std::collections::HashMap;
use std::time::Duration;

use helpers::{Server, WaitOutput, petri, wait_until};
use petri_domain::{Job, JobState, RunOutcome};

#[test]
fn without_a_daemon_the_cli_says_how_to_start_one() {
    let home = tempfile::tempdir().unwrap();
    let out = petri(home.path(), &["ls"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("petri serve"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn completions_are_printed() {
    let home = tempfile::tempdir().unwrap();
    let out = petri(home.path(), &["completions", "bash"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("petri"));
}

/// The JSON a successful `petri ... --json` printed.
fn parse<T: serde::de::DeserializeOwned>(out: &std::process::Output) -> T {
    assert!(
        out.status.success(),
        "petri failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn jobs(out: &std::process::Output) -> Vec<Job> {
    parse(out)
}

/// The jobs of the page a `petri ls --json` printed.
fn listed(out: &std::process::Output) -> Vec<Job> {
    parse::<petri_domain::JobPage>(out).jobs
}

fn jobs_one(out: &std::process::Output) -> Job {
    parse(out)
}

#[test]
fn two_hundred_jobs_from_the_cli_reach_the_expected_states_in_order() {
    let server = Server::start("[capacity]\ncpus = 2\n[queues.serial]\nconcurrency = 1\n");
    let home = server.home();
    let work = server.work();
    let w = work.to_str().unwrap();
    let submit = |args: &[&str]| {
        let mut all = vec!["submit", "--json", "--workdir", w];
        all.extend_from_slice(args);
        jobs(&petri(home, &all))
    };

    // A blocker holds both cpus until `go` exists, so the rest queue up behind it.
    let gate = "while [ ! -f go ]; do sleep 0.02; done";
    let blockers = submit(&["--cpus", "2", "--name", "gate", "--run", gate]);
    server.wait_state(&blockers[0], JobState::Running);

    // 150 sweep jobs at low priority in the serial queue: one at a time, in submission order.
    let values: Vec<String> = (1..=150).map(|i| format!("{i:03}")).collect();
    let array = format!("i={}", values.join(","));
    let sweep = submit(&[
        "--queue",
        "serial",
        "--priority=-5",
        "--array",
        &array,
        "--",
        "sh",
        "-c",
        "echo $i >> serial",
    ]);
    assert_eq!(sweep.len(), 150);
    // 40 high-priority jobs: they all start before any sweep job.
    let mut urgent = Vec::new();
    for i in 0..40 {
        urgent.extend(submit(&[
            "--priority",
            "10",
            "--name",
            &format!("urgent{i}"),
            "--",
            "sh",
            "-c",
            "echo u >> urgent; [ ! -s serial ]",
        ]));
    }
    // A chain, a flaky job with retries, and a failure that dooms its dependants.
    let a = submit(&["--name", "a", "--run", "echo a >> chain"]).remove(0);
    let b = submit(&[
        "--name",
        "b",
        "--after",
        &a.number.to_string(),
        "--run",
        "echo b >> chain",
    ])
    .remove(0);
    let c = submit(&[
        "--name",
        "c",
        "--after",
        &b.id.to_string(),
        "--run",
        "echo c >> chain",
    ])
    .remove(0);
    let flaky = submit(&[
        "--retries",
        "2",
        "--backoff",
        "0s",
        "--run",
        "n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; [ $n -ge 1 ]",
    ])
    .remove(0);
    let broken = submit(&["--run", "exit 3"]).remove(0);
    let doomed = submit(&[
        "--after",
        &broken.number.to_string(),
        "--",
        "touch",
        "doomed",
    ])
    .remove(0);
    let held = submit(&["--hold", "--", "true"]).remove(0);
    let cancelled = submit(&["--", "true"]).remove(0);
    assert!(
        petri(home, &["cancel", &cancelled.number.to_string()])
            .status
            .success()
    );

    // `top` shows the same picture, once as text, once as JSON.
    let top = petri(home, &["top", "--once"]);
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(
        top.status.success() && text.contains("running 1") && text.contains("gate"),
        "{text}"
    );
    let snapshot: serde_json::Value = parse(&petri(home, &["top", "--json"]));
    assert_eq!(snapshot["status"]["counts"]["running"], 1);

    // While gated: everything waits, with reasons and positions.
    let waiting = listed(&petri(home, &["ls", "--json", "--limit", "1000"]));
    assert_eq!(waiting.len(), 1 + 150 + 40 + 3 + 4);
    let first_urgent = waiting.iter().find(|j| j.id == urgent[0].id).unwrap();
    assert_eq!(first_urgent.pending.as_ref().unwrap().position, Some(1));
    let shown = petri(home, &["show", &sweep[1].number.to_string()]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("waiting") && text.contains("position"),
        "{text}"
    );

    std::fs::write(work.join("go"), "").unwrap();
    assert!(
        petri(home, &["release", &held.number.to_string()])
            .status
            .success()
    );
    let expect: Vec<(&Job, JobState)> = [
        (&a, JobState::Succeeded),
        (&b, JobState::Succeeded),
        (&c, JobState::Succeeded),
        (&flaky, JobState::Succeeded),
        (&broken, JobState::Failed),
        (&doomed, JobState::Failed),
        (&held, JobState::Succeeded),
        (&cancelled, JobState::Cancelled),
    ]
    .into_iter()
    .chain(urgent.iter().map(|j| (j, JobState::Succeeded)))
    .chain(sweep.iter().map(|j| (j, JobState::Succeeded)))
    .collect();
    let total = expect.len() + 1;
    assert_eq!(total, 199);
    wait_until("every job to finish", Duration::from_secs(300), || {
        listed(&petri(home, &["ls", "--json"])).is_empty()
    });
    let all: HashMap<_, _> = listed(&petri(home, &["ls", "--all", "--json", "--limit", "1000"]))
        .into_iter()
        .map(|j| (j.id, j))
        .collect();
    assert_eq!(all.len(), total);
    for (job, state) in expect {
        let got = &all[&job.id];
        assert_eq!(
            got.state, state,
            "job #{} {}: {:?}",
            got.number, got.name, got.reason
        );
    }
    assert_eq!(all[&flaky.id].attempts, 2);
    assert_eq!(
        all[&doomed.id].reason.as_deref(),
        Some(format!("dependency #{} failed", broken.number).as_str())
    );
    assert_eq!(
        std::fs::read_to_string(work.join("chain")).unwrap(),
        "a\nb\nc\n"
    );
    let serial = std::fs::read_to_string(work.join("serial")).unwrap();
    assert_eq!(
        serial.lines().collect::<Vec<_>>(),
        values,
        "the serial queue ran in order"
    );
    assert!(!work.join("doomed").exists());
    let show = jobs_one(&petri(
        home,
        &["show", "--json", &broken.number.to_string()],
    ));
    assert_eq!(show.runs.len(), 1);
    assert_eq!(show.runs[0].exit_code, Some(3));
}

#[test]
fn bad_specs_get_one_line_and_change_nothing() {
    let server = Server::start("");
    let home = server.home();
    let work = server.work();
    let cases = [
        ("malformed.yaml", "command: [unclosed\n"),
        ("unknown.yaml", "command: [\"true\"]\nretires: 3\n"),
        (
            "absurd.yaml",
            "command: [\"true\"]\nresources: {cpus: 10000}\n",
        ),
        (
            "cycle.yaml",
            "name: a\ncommand: [\"true\"]\nafter: [b]\n---\nname: b\ncommand: [\"true\"]\nafter: [a]\n",
        ),
        (
            "missing-dep.yaml",
            "command: [\"true\"]\nafter: [\"31337\"]\n",
        ),
        ("no-command.yaml", "command: [definitely-not-a-program]\n"),
    ];
    for (name, text) in cases {
        let path = work.join(name);
        std::fs::write(&path, text).unwrap();
        let out = petri(home, &["submit", "-f", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{name} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
    }
    assert!(listed(&petri(home, &["ls", "--all", "--json"])).is_empty());
}

/// A big sweep is one short argument; `petri ls` prints one page and the command for the next,
/// which prints the rest; `petri gc --dry-run` says what the home would free and changes nothing.
#[test]
fn a_range_sweep_and_the_pages_of_petri_ls() {
    let server = Server::start("");
    let home = server.home();
    let w = server.work();
    let text = |out: &std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let queued = text(&petri(
        home,
        &[
            "submit",
            "--hold",
            "--workdir",
            w.to_str().unwrap(),
            "--array",
            "i=1..150:1",
            "--",
            "true",
        ],
    ));
    assert!(queued.contains("150"), "{queued}");

    let first = text(&petri(home, &["ls", "--limit", "100"]));
    assert!(first.contains("held"), "{first}");
    let more = first
        .lines()
        .find_map(|l| l.strip_prefix("More: "))
        .unwrap_or_else(|| panic!("no command for the next page: {first}"));
    assert!(more.starts_with("petri ls --limit 100 --after "), "{more}");
    let args: Vec<&str> = more.split_whitespace().skip(1).collect();
    let second = text(&petri(home, &args));
    assert!(!second.contains("More:"), "the last page: {second}");
    // The job number is the first number on each row of the table (rows say `held`).
    let numbers = |t: &str| -> Vec<u64> {
        t.lines()
            .filter(|l| l.contains("held"))
            .filter_map(|l| {
                l.split(|c: char| !c.is_ascii_digit())
                    .find(|w| !w.is_empty())?
                    .parse()
                    .ok()
            })
            .collect()
    };
    let mut all = numbers(&first);
    all.extend(numbers(&second));
    assert_eq!(
        all,
        (1..=150).collect::<Vec<u64>>(),
        "each job once, in order"
    );

    // A billion jobs is refused, naming the limit; nothing is queued.
    let out = petri(
        home,
        &[
            "submit",
            "--workdir",
            w.to_str().unwrap(),
            "--array",
            "i=1..1000000000",
            "--",
            "true",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at most 100000"), "{err}");
    assert_eq!(
        listed(&petri(home, &["ls", "--json", "--limit", "1000"])).len(),
        150
    );

    let dry = text(&petri(home, &["gc", "--dry-run"]));
    assert!(dry.contains("Job logs and outputs"), "{dry}");
    assert!(dry.contains("nothing was changed"), "{dry}");
}

#[test]
fn logs_follow_a_running_job() {
    let server = Server::start("");
    let home = server.home();
    let w = server.work();
    let job = jobs(&petri(
        home,
        &[
            "submit",
            "--json",
            "--workdir",
            w.to_str().unwrap(),
            "--run",
            "echo first; while [ ! -f go ]; do sleep 0.02; done; echo second",
        ],
    ))
    .remove(0);
    let follower = helpers::petri_cmd(home)
        .args(["logs", "-f", &job.number.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    server.wait_state(&job, JobState::Running);
    std::fs::write(w.join("go"), "").unwrap();
    let out = follower.wait_with_output_timeout(Duration::from_secs(60));
    assert_eq!(String::from_utf8_lossy(&out), "first\nsecond\n");
}

/// The daemon is killed with SIGKILL five times while jobs run. Afterwards every job finished
/// exactly once: one attempt in the database, one line in the file each job appends to.
#[test]
fn sigkill_of_the_daemon_loses_nothing_and_runs_nothing_twice() {
    let mut server = Server::start("[capacity]\ncpus = 3\n");
    let home = server.home().to_path_buf();
    let work = server.work();
    // Sixty jobs of different lengths in one submission (so that the kills, not the speed of
    // sixty CLI calls, decide how many are still to run), so kills land while some start, run
    // and end.
    let values: Vec<String> = (0..60).map(|i| i.to_string()).collect();
    let submitted = jobs(&petri(
        &home,
        &[
            "submit",
            "--json",
            "--workdir",
            work.to_str().unwrap(),
            "--array",
            &format!("i={}", values.join(",")),
            "--run",
            "echo $PETRI_JOB_ID >> ran; \
             case $((i % 4)) in 0) s=0.05;; 1) s=0.3;; 2) s=0.6;; *) s=1.2;; esac; sleep $s",
        ],
    ));
    assert_eq!(submitted.len(), 60);
    for kill in 0..5 {
        // Let some jobs run, then kill without warning while at least one runs.
        wait_until("a running job", Duration::from_secs(60), || {
            !server.client_jobs(&["--state", "running"]).is_empty()
        });
        std::thread::sleep(Duration::from_millis(150 + 70 * kill));
        server.kill9();
        server.restart();
    }
    wait_until("every job to finish", Duration::from_secs(120), || {
        server.client_jobs(&[]).is_empty()
    });
    let ran = std::fs::read_to_string(work.join("ran")).unwrap();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for line in ran.lines() {
        *counts.entry(line).or_default() += 1;
    }
    for job in &submitted {
        let shown = jobs_one(&petri(&home, &["show", "--json", &job.id.to_string()]));
        assert_eq!(
            shown.state,
            JobState::Succeeded,
            "job #{}: {:?}",
            shown.number,
            shown.reason
        );
        assert_eq!(
            shown.runs.len(),
            1,
            "job #{} has {} attempts",
            shown.number,
            shown.runs.len()
        );
        assert_eq!(shown.runs[0].outcome, RunOutcome::Succeeded);
        assert_eq!(
            counts.get(job.id.to_string().as_str()),
            Some(&1),
            "job #{} ran {:?} times",
            shown.number,
            counts.get(job.id.to_string().as_str())
        );
    }
    assert_eq!(counts.len(), submitted.len());
}

/// A program on the submitting shell's PATH is found, as in the terminal; `--no-export` leaves the
/// job with the daemon's PATH.
#[test]
fn jobs_find_programs_on_the_submitters_path() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start("");
    let home = server.home();
    let bin = server.work().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let tool = bin.join("petri-test-tool");
    std::fs::write(&tool, "#!/bin/sh\necho tool ran\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = helpers::petri_cmd(home)
        .env("PATH", &path)
        .args(["submit", "--json", "--", "petri-test-tool"])
        .output()
        .unwrap();
    let job = jobs(&out).remove(0);
    server.wait_state(&job, JobState::Succeeded);
    let log = petri(home, &["logs", &job.number.to_string()]);
    assert_eq!(String::from_utf8_lossy(&log.stdout), "tool ran\n");

    let refused = helpers::petri_cmd(home)
        .env("PATH", &path)
        .args(["submit", "--no-export", "--", "petri-test-tool"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("COMMAND_NOT_FOUND"));
}

/// GPUs from the CLI, with the daemon loading the project's fake NVML through `PETRI_NVML_PATH`.
#[test]
fn gpu_slices_from_the_cli_and_petri_gpus() {
    let gib: u64 = 1 << 30;
    let Some((server, _gpus)) = helpers::Server::with_fake_gpu("GPU-e2e-0", 16 * gib) else {
        return;
    };
    let home = server.home();
    let w = server.work();
    let job = jobs(&petri(
        home,
        &[
            "submit", "--json", "--gpu-mem", "6GiB", "--workdir", w.to_str().unwrap(), "--run",
            "echo $CUDA_VISIBLE_DEVICES $PETRI_GPU_MEMORY_LIMIT; while [ ! -f go ]; do sleep 0.02; done",
        ],
    ))
    .remove(0);
    server.wait_state(&job, JobState::Running);
    let report: serde_json::Value = parse(&petri(home, &["gpus", "--json"]));
    let gpu = &report["gpus"][0];
    assert_eq!(gpu["uuid"], "GPU-e2e-0");
    assert_eq!(gpu["reserved"], 6 * gib);
    assert_eq!(gpu["holders"][0]["number"], job.number);
    let table = String::from_utf8_lossy(&petri(home, &["gpus"]).stdout).to_string();
    assert!(
        table.contains("GPU-e2e-0") || table.contains("Petri Fake GPU"),
        "{table}"
    );
    // Too big for any GPU here: refused, naming what fits.
    let refused = petri(home, &["submit", "--gpu-mem", "20GiB", "--", "true"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("on one GPU"));
    std::fs::write(w.join("go"), "").unwrap();
    server.wait_state(&job, JobState::Succeeded);
    let log = petri(home, &["logs", &job.number.to_string()]);
    assert_eq!(
        String::from_utf8_lossy(&log.stdout),
        format!("GPU-e2e-0 {}\n", 6 * gib)
    );
}

#[test]
fn tokens_are_created_scoped_expired_and_revoked_from_the_cli() {
    let server = Server::start("");
    let home = server.home();
    let work = server.work();
    let out = petri(
        home,
        &[
            "token",
            "create",
            "ci",
            "--scope",
            "read",
            "--expires",
            "30d",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(secret.starts_with("petri_"), "{secret}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown this once"));

    // With the read token: listing works, submitting is refused naming the missing scope.
    let as_ci = |args: &[&str]| {
        helpers::petri_cmd(home)
            .env("PETRI_TOKEN", &secret)
            .current_dir(&work)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(as_ci(&["ls"]).status.success());
    let refused = as_ci(&["submit", "--", "true"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("submit"), "{err}");
    assert!(listed(&petri(home, &["ls", "--all", "--json"])).is_empty());

    let listed: Vec<serde_json::Value> = parse(&petri(home, &["token", "ls", "--json"]));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "ci");
    assert_eq!(listed[0]["state"], "active");
    assert!(listed[0]["expires_at_ms"].is_i64());
    assert!(!serde_json::to_string(&listed).unwrap().contains(&secret));

    let out = petri(home, &["token", "revoke", "ci"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = as_ci(&["ls"]);
    assert!(!after.status.success());
    assert!(String::from_utf8_lossy(&after.stderr).contains("revoked"));
    let listed: Vec<serde_json::Value> = parse(&petri(home, &["token", "ls", "--json"]));
    assert_eq!(listed[0]["state"], "revoked");

    // An expired token is refused too; a bad scope is a clear error before any request.
    let out = petri(home, &["token", "create", "brief", "--expires", "1ms"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let brief = String::from_utf8_lossy(&out.stdout).trim().to_string();
    wait_until("the brief token to expire", Duration::from_secs(10), || {
        let out = helpers::petri_cmd(home)
            .env("PETRI_TOKEN", &brief)
            .args(["ls"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).contains("expired")
    });
    let bad = petri(home, &["token", "create", "x", "--scope", "root"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("read, submit, admin and tracking"));
}
