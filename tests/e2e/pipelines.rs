//! Pipelines from the CLI with the real binary, as the issue's user tries them: a flaky step
//! under `retries: 2`, the daemon killed with SIGKILL in the middle of a run, cron fires missed
//! while the daemon was down, a file dropped into a watched folder, and the Iris sample in
//! Petri's image (a second run served from the cache).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Server, petri, wait_until};

fn json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn run_json(home: &Path, run: &str) -> Value {
    json(&petri(home, &["pipeline", "show", "--json", run]))
}

fn runs(home: &Path) -> Vec<Value> {
    let v = json(&petri(
        home,
        &["pipeline", "ls", "--json", "--limit", "1000"],
    ));
    v["runs"].as_array().cloned().unwrap_or_default()
}

fn wait_run_state(home: &Path, run: &str, state: &str, limit: Duration) -> Value {
    let mut last = Value::Null;
    wait_until(&format!("run {run} to be {state}"), limit, || {
        last = run_json(home, run);
        last["state"] == state
            || (state != "failed" && last["state"] == "failed")
            || (state != "canceled" && last["state"] == "canceled")
    });
    assert_eq!(last["state"], state, "{last:#}");
    last
}

fn step<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {run:#}"))
}

#[test]
fn a_step_that_fails_twice_succeeds_under_retries_2() {
    let server = Server::start("");
    let home = server.home();
    let work = server.work();
    let file = write(
        &work,
        "flaky.yaml",
        r#"
name: flaky
steps:
  flaky:
    retries: 2
    run: |
      n=$(cat count 2>/dev/null || echo 0); n=$((n + 1)); echo $n > count
      echo "attempt $n"
      [ "$n" -ge 3 ]
    workdir: .
  after:
    needs: [flaky]
    run: echo done
"#,
    );
    let out = petri(home, &["pipeline", "run", "--wait", "--json", &file]);
    let run = json(&out);
    assert_eq!(run["state"], "succeeded", "{run:#}");
    assert_eq!(
        std::fs::read_to_string(work.join("count")).unwrap().trim(),
        "3"
    );
    let job_id = step(&run, "flaky")["job"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = json(&petri(home, &["show", "--json", &job_id]));
    assert_eq!(job["attempts"], 3, "{job:#}");
    assert_eq!(step(&run, "after")["state"], "succeeded");
}

#[test]
fn a_step_that_keeps_failing_fails_the_run_with_its_log_tail() {
    let server = Server::start("");
    let home = server.home();
    let work = server.work();
    let file = write(
        &work,
        "bad.yaml",
        "name: bad\nsteps:\n  broken:\n    retries: 1\n    run: echo 'the data file is empty' >&2; exit 4\n  next:\n    needs: [broken]\n    run: 'true'\n",
    );
    let out = petri(home, &["pipeline", "run", "--wait", "--json", &file]);
    assert!(!out.status.success());
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["state"], "failed");
    let reason = run["reason"].as_str().unwrap();
    assert!(reason.contains("step `broken` failed"), "{reason}");
    assert!(reason.contains("the data file is empty"), "{reason}");
    assert_eq!(step(&run, "next")["state"], "skipped");
}

#[test]
fn sigkill_of_the_daemon_in_the_middle_of_a_run_runs_no_step_twice() {
    let mut server = Server::start("[capacity]\ncpus = 4\n");
    let home = server.home().to_path_buf();
    let work = server.work();
    // Each step notes that it ran; `hold` waits for a gate the test opens after the restart.
    let file = write(
        &work,
        "chain.yaml",
        r#"
name: chain
steps:
  first:
    run: echo first >> ran.log
    workdir: .
  hold:
    needs: [first]
    run: |
      echo hold >> ran.log
      while [ ! -f gate ]; do sleep 0.05; done
      echo 7 > "$PETRI_OUTPUTS/n"
    workdir: .
    outputs: {n: {type: value}}
  fan:
    for_each: [a, b, c]
    run: echo "fan-${{ item }}-${{ steps.hold.outputs.n }}" >> ran.log
    workdir: .
  last:
    needs: [fan]
    run: echo last >> ran.log
    workdir: .
"#,
    );
    let run = json(&petri(&home, &["pipeline", "run", "--json", &file]));
    let id = run["id"].as_str().unwrap().to_string();
    let log = work.join("ran.log");
    wait_until("the step `hold` to start", Duration::from_secs(60), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("hold"))
    });
    server.kill9();
    std::fs::write(work.join("gate"), "").unwrap();
    // The held step ends while no daemon runs; the next daemon picks up from there.
    std::thread::sleep(Duration::from_millis(300));
    server.restart();
    let done = wait_run_state(&home, &id, "succeeded", Duration::from_secs(60));
    let mut lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        ["fan-a-7", "fan-b-7", "fan-c-7", "first", "hold", "last"],
        "every step ran exactly once: {done:#}"
    );

    // A second kill while the fan-out's jobs are being submitted: the run still ends with each
    // item once.
    std::fs::remove_file(&log).unwrap();
    let run = json(&petri(
        &home,
        &["pipeline", "run", "--no-cache", "--json", &file],
    ));
    let id = run["id"].as_str().unwrap().to_string();
    wait_until("the fan-out to start", Duration::from_secs(60), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("fan-"))
    });
    server.kill9();
    server.restart();
    wait_run_state(&home, &id, "succeeded", Duration::from_secs(60));
    let mut lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        ["fan-a-7", "fan-b-7", "fan-c-7", "first", "hold", "last"]
    );
}

#[test]
fn cron_fires_missed_while_the_daemon_was_down_run_on_restart() {
    let mut server = Server::start("");
    let home = server.home().to_path_buf();
    let work = server.work();
    // Every second, with catch-up bounded to three runs.
    let file = write(
        &work,
        "tick.yaml",
        "name: tick\ntriggers:\n  - {cron: '* * * * * *', catchup: true, max_catchup: 3}\nsteps:\n  tick: {run: 'true'}\n",
    );
    json(&petri(&home, &["pipeline", "save", "--json", &file]));
    wait_until("a cron run", Duration::from_secs(30), || {
        runs(&home).iter().any(|r| r["trigger"]["kind"] == "cron")
    });
    server.kill9();
    let down = now_ms();
    std::thread::sleep(Duration::from_millis(5_500));
    server.restart();
    // Fires until the new daemon started are missed ones.
    let up = now_ms();
    let missed = |home: &Path| -> Vec<Value> {
        runs(home)
            .into_iter()
            .filter(|r| r["trigger"]["catchup"] == true)
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while missed(&home).len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "no three catch-up runs: {:#?}\n{}",
            runs(&home),
            std::fs::read_to_string(home.join("daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A little later there are still exactly three: the bound holds, and a live fire is not a
    // catch-up.
    std::thread::sleep(Duration::from_millis(1_500));
    let missed = missed(&home);
    assert_eq!(missed.len(), 3, "{missed:#?}");
    for r in &missed {
        let at = r["trigger"]["scheduled_at"].as_i64().unwrap();
        assert!(
            at > down - 1_000 && at < up,
            "{at} not in the downtime {down}..{up}"
        );
    }
    // Each scheduled time ran once.
    let mut times: Vec<i64> = runs(&home)
        .iter()
        .filter_map(|r| r["trigger"]["scheduled_at"].as_i64())
        .collect();
    let n = times.len();
    times.sort();
    times.dedup();
    assert_eq!(times.len(), n, "a fire ran twice");
    for r in &missed {
        wait_run_state(
            &home,
            r["id"].as_str().unwrap(),
            "succeeded",
            Duration::from_secs(30),
        );
    }
}

#[test]
fn a_file_dropped_into_a_watched_folder_starts_a_run_with_its_path() {
    let mut server = Server::start("");
    let home = server.home().to_path_buf();
    let work = server.work();
    let inbox = work.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let file = write(
        &work,
        "ingest.yaml",
        r#"
name: ingest
params:
  changed: {default: "[]", type: list}
triggers:
  - {watch: inbox, debounce: 300ms}
steps:
  count:
    for_each: ${{ params.changed }}
    run: wc -l < "${{ item }}" > "$PETRI_OUTPUTS/lines"
    outputs: {lines: {type: value}}
"#,
    );
    json(&petri(&home, &["pipeline", "save", "--json", &file]));
    // Let the watch take its first look, then drop a file.
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(runs(&home).is_empty());
    std::fs::write(inbox.join("samples.csv"), "a\nb\nc\n").unwrap();
    wait_until(
        "a run started by the watch",
        Duration::from_secs(30),
        || !runs(&home).is_empty(),
    );
    let all = runs(&home);
    assert_eq!(all.len(), 1, "one drop, one run: {all:#?}");
    let id = all[0]["id"].as_str().unwrap().to_string();
    let run = wait_run_state(&home, &id, "succeeded", Duration::from_secs(30));
    assert_eq!(run["trigger"]["kind"], "watch");
    assert_eq!(
        run["trigger"]["changed"],
        serde_json::json!(["samples.csv"])
    );
    assert_eq!(
        step(&run, "count")["outputs"]["lines"],
        serde_json::json!(["3"])
    );

    // A file that arrives while the daemon is down starts one run when it is back.
    server.kill9();
    std::fs::write(inbox.join("late.csv"), "x\n").unwrap();
    server.restart();
    wait_until(
        "a run for the file that came while down",
        Duration::from_secs(30),
        || runs(&home).len() == 2,
    );
    let late = runs(&home)
        .into_iter()
        .find(|r| r["id"] != id.as_str())
        .unwrap();
    assert_eq!(late["trigger"]["changed"], serde_json::json!(["late.csv"]));
}

#[test]
fn the_iris_sample_runs_from_the_cli_and_a_second_run_comes_from_the_cache() {
    if crate::containers::image().is_none() {
        return;
    }
    let server = Server::start("");
    let home = server.home();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/pipelines/iris.yaml");
    let sample = sample.to_str().unwrap();
    let out = petri(home, &["pipeline", "validate", sample]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let first = json(&petri(
        home,
        &["pipeline", "run", "--wait", "--json", sample],
    ));
    assert_eq!(first["state"], "succeeded", "{first:#}");
    for s in first["steps"].as_array().unwrap() {
        assert_eq!(s["state"], "succeeded", "{s:#}");
    }
    let eval = step(&first, "evaluate");
    let accuracy: f64 = eval["outputs"]["accuracy"]
        .as_str()
        .map(|a| a.parse().unwrap())
        .or_else(|| eval["outputs"]["accuracy"].as_f64())
        .unwrap();
    assert!(accuracy >= 0.9, "{eval:#}");
    // The deploy step, in a container, registered the model, its lineage back to this run.
    let deploy = step(&first, "deploy");
    assert_eq!(deploy["outputs"]["registered"], "true", "{deploy:#}");
    let version = json(&petri(home, &["model", "show", "iris-mlp/1", "--json"]));
    assert_eq!(version["format"], "petri-mlp", "{version:#}");
    assert_eq!(version["runtime"], "native", "{version:#}");
    assert_eq!(
        version["lineage"]["pipeline_run"], first["id"],
        "{version:#}"
    );
    assert!(version["lineage"]["job"].is_string(), "{version:#}");
    assert_eq!(
        version["aliases"],
        serde_json::json!(["champion"]),
        "{version:#}"
    );
    // evaluate's predictions.csv, in its job's output folder.
    let predictions = home
        .join("outputs")
        .join(eval["job"]["id"].as_str().unwrap())
        .join(eval["outputs"]["predictions"]["name"].as_str().unwrap());
    crate::serving::serve_the_iris_model(&server, &predictions);

    let second = json(&petri(
        home,
        &["pipeline", "run", "--wait", "--json", sample],
    ));
    assert_eq!(second["state"], "succeeded", "{second:#}");
    for s in second["steps"].as_array().unwrap() {
        assert_eq!(s["state"], "cached", "{s:#}");
    }
    // The human view says where each cached step came from.
    let shown = petri(home, &["pipeline", "show", second["id"].as_str().unwrap()]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("cached"), "{text}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
