//! The daemon through its HTTP API, in-process, with real processes and a real SQLite file.

mod helpers;

use std::time::Duration;

use futures_util::StreamExt;
use helpers::{Fixture, wait_until};
use petri_domain::sweep::SweepValues;
use petri_domain::{ErrorCode, Event, JobSpec, JobState, ListQuery, PendingReason, RunOutcome};

const ONE_CPU: &str = "[capacity]\ncpus = 1\n";

fn all() -> ListQuery {
    ListQuery {
        all: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_but_healthz_needs_the_token() {
    let f = Fixture::start("").await;
    let http = reqwest::Client::new();
    let doc: serde_json::Value = f.get_json("/api/v1/openapi.json").await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 9, "{paths:?}");
    let mut checked = 0;
    for (path, methods) in paths {
        let path = path.replace("{id}", "1");
        for method in methods.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            for auth in [None, Some("Bearer wrong"), Some("Bearer ")] {
                let mut rb = http.request(m.clone(), format!("{}{path}", f.base));
                if let Some(a) = auth {
                    rb = rb.header("authorization", a);
                }
                let resp = rb.send().await.unwrap();
                assert_eq!(resp.status(), 401, "{method} {path} with {auth:?}");
                let body: serde_json::Value = resp.json().await.unwrap();
                assert_eq!(body["code"], "UNAUTHORIZED");
            }
            checked += 1;
        }
    }
    assert!(checked >= 10);
    for path in ["/metrics", "/", "/api/v1/openapi.json", "/no/such/route"] {
        let resp = http.get(format!("{}{path}", f.base)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
    }
    let resp = http
        .get(format!("{}/healthz", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_code_and_changes_nothing() {
    let f = Fixture::start("max_body = \"64KiB\"\n").await;
    let http = reqwest::Client::new();
    let post = |body: String| {
        http.post(format!("{}/api/v1/jobs", f.base))
            .bearer_auth(&f.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let work = f.work();
    let w = work.display().to_string();
    let cases: Vec<(String, u16, &str)> = vec![
        ("{not json".into(), 400, "MALFORMED_SPEC"),
        (r#"{"jobs": [{"command": ["true"], "comand": 1}]}"#.into(), 400, "MALFORMED_SPEC"),
        (r#"{"jobs": [{"command": ["true"]}], "extra": 1}"#.into(), 400, "MALFORMED_SPEC"),
        (r#"{"jobs": [{"command": ["true"], "resources": {"memory": "lots"}}]}"#.into(), 400, "MALFORMED_SPEC"),
        (r#"{"jobs": []}"#.into(), 422, "INVALID_SPEC"),
        (r#"{"jobs": [{"name": "x"}]}"#.into(), 422, "INVALID_SPEC"),
        (r#"{"jobs": [{"command": ["true"], "priority": 99999}]}"#.into(), 422, "INVALID_SPEC"),
        (r#"{"jobs": [{"command": ["true"], "resources": {"cpus": 4096}}]}"#.into(), 422, "RESOURCES_UNAVAILABLE"),
        (r#"{"jobs": [{"command": ["true"], "resources": {"memory": "100TiB"}}]}"#.into(), 422, "RESOURCES_UNAVAILABLE"),
        (r#"{"jobs": [{"command": ["true"], "resources": {"gpu_memory": "8GiB"}}]}"#.into(), 422, "NO_GPUS"),
        (r#"{"jobs": [{"command": ["true"], "resources": {"mig": "huge"}}]}"#.into(), 422, "INVALID_SPEC"),
        (r#"{"jobs": [{"command": ["true"], "after": ["4242"]}]}"#.into(), 422, "UNKNOWN_DEPENDENCY"),
        (r#"{"jobs": [{"name": "a", "command": ["true"], "after": ["b"]}, {"name": "b", "command": ["true"], "after": ["a"]}]}"#.into(), 422, "DEPENDENCY_CYCLE"),
        (r#"{"jobs": [{"command": ["no-such-program-anywhere"]}]}"#.into(), 422, "COMMAND_NOT_FOUND"),
        (format!(r#"{{"jobs": [{{"command": ["./missing.sh"], "workdir": "{w}"}}]}}"#), 422, "COMMAND_NOT_FOUND"),
        (r#"{"jobs": [{"command": ["true"], "workdir": "/no/such/folder"}]}"#.into(), 422, "WORKDIR_NOT_FOUND"),
        (r#"{"jobs": [{"command": ["true"], "workdir": "relative/dir"}]}"#.into(), 422, "INVALID_SPEC"),
        (r#"{"jobs": [{"command": ["true"], "image": "not an image"}]}"#.into(), 422, "INVALID_SPEC"),
        (r#"{"jobs": [{"command": ["true"], "ports": [8888]}]}"#.into(), 422, "INVALID_SPEC"),
        (r#"{"jobs": [{"command": ["true"], "target": "slurm-prod"}]}"#.into(), 422, "UNKNOWN_TARGET"),
        // A good job beside a bad one: neither is queued.
        (r#"{"jobs": [{"command": ["true"]}, {"command": ["nope-nope"]}]}"#.into(), 422, "COMMAND_NOT_FOUND"),
        (format!(r#"{{"jobs": [{{"command": ["true"], "name": "{}"}}]}}"#, "x".repeat(70_000)), 413, "PAYLOAD_TOO_LARGE"),
    ];
    for (body, status, code) in cases {
        let resp = post(body.clone()).await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{body:.200}");
        let err: petri_domain::ErrorBody = resp.json().await.unwrap();
        assert_eq!(
            err.code,
            serde_json::from_value::<ErrorCode>(code.into()).unwrap(),
            "{body:.200}"
        );
        assert!(!err.message.is_empty());
    }
    // A mistyped field gets a suggestion; Petri's own fields (a job's origin) are not the
    // user's to write, and no refusal lists them.
    let err: petri_domain::ErrorBody = post(r#"{"jobs": [{"comand": ["true"]}]}"#.into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        err.message.contains("did you mean `command`?"),
        "{}",
        err.message
    );
    for field in ["notebook", "origin", "user"] {
        let body = format!(r#"{{"jobs": [{{"command": ["true"], "{field}": "x"}}]}}"#);
        let resp = post(body).await.unwrap();
        assert_eq!(resp.status(), 400, "{field}");
        let err: petri_domain::ErrorBody = resp.json().await.unwrap();
        let known = err.message.split("expected one of").nth(1).unwrap_or("");
        assert!(!known.contains("`notebook`"), "{}", err.message);
    }
    // Bad paths and queries.
    let resp = http
        .get(format!("{}/api/v1/jobs?state=bogus", f.base))
        .bearer_auth(&f.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http
        .get(format!("{}/api/v1/jobs?limit=-3", f.base))
        .bearer_auth(&f.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err = f.client.job("999999").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::JobNotFound));
    let err = f.client.cancel("not-a-job").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::JobNotFound));

    assert!(
        f.client.list(&all()).await.unwrap().jobs.is_empty(),
        "the queue must be unchanged"
    );
    // The daemon is still healthy and accepts a good job.
    let ok = f.submit(f.script("exit 0")).await;
    assert_eq!(
        ok.number, 1,
        "refused submissions must not use up job numbers"
    );
    assert_eq!(f.wait_done(&ok).await.state, JobState::Succeeded);
}

#[tokio::test(flavor = "multi_thread")]
async fn priorities_then_submission_order_decide_who_starts() {
    let f = Fixture::start(ONE_CPU).await;
    let go = f.work().join("go");
    let blocker = f
        .submit(f.script("while [ ! -f go ]; do sleep 0.02; done; echo blocker >> order"))
        .await;
    f.wait_state(&blocker, |s| s == JobState::Running).await;
    let spec = |name: &str, priority: i32| {
        let mut s = f.script(&format!("echo {name} >> order"));
        s.name = Some(name.into());
        s.priority = priority;
        s
    };
    let a = f.submit(spec("a", 0)).await;
    let b = f.submit(spec("b", 5)).await;
    let c = f.submit(spec("c", 0)).await;
    let shown = f.client.job(&c.id.to_string()).await.unwrap();
    let pending = shown.pending.expect("a waiting job says why");
    assert_eq!(pending.position, Some(3));
    assert!(
        matches!(pending.reason, PendingReason::Resources { .. }),
        "{pending:?}"
    );
    assert_eq!(
        f.client
            .job(&b.id.to_string())
            .await
            .unwrap()
            .pending
            .unwrap()
            .position,
        Some(1)
    );
    std::fs::write(&go, "").unwrap();
    for j in [&a, &b, &c] {
        assert_eq!(f.wait_done(j).await.state, JobState::Succeeded);
    }
    let order = std::fs::read_to_string(f.work().join("order")).unwrap();
    assert_eq!(order, "blocker\nb\na\nc\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn dependencies_wait_for_success_and_fail_with_their_dependency() {
    let f = Fixture::start("").await;
    let first = f.submit(f.script("sleep 0.2; echo first >> order")).await;
    let mut then = f.script("echo then >> order");
    then.after = vec![first.number.to_string()];
    let then = f.submit(then).await;
    assert_eq!(f.wait_done(&then).await.state, JobState::Succeeded);
    assert_eq!(
        std::fs::read_to_string(f.work().join("order")).unwrap(),
        "first\nthen\n"
    );

    let bad = f.submit(f.script("exit 4")).await;
    let mut user = f.script("touch should-not-exist");
    user.after = vec![bad.id.to_string()];
    let user = f.submit(user).await;
    let mut user_of_user = f.script("touch should-not-exist-either");
    user_of_user.after = vec![user.number.to_string()];
    let user_of_user = f.submit(user_of_user).await;
    let bad = f.wait_done(&bad).await;
    assert_eq!((bad.state, bad.exit_code), (JobState::Failed, Some(4)));
    let user = f.wait_done(&user).await;
    assert_eq!(user.state, JobState::Failed);
    assert_eq!(
        user.reason.as_deref(),
        Some(format!("dependency #{} failed", bad.number).as_str())
    );
    assert!(user.runs.is_empty());
    let uu = f.wait_done(&user_of_user).await;
    assert_eq!(uu.state, JobState::Failed);
    assert!(!f.work().join("should-not-exist").exists());

    // Submitted after its dependency already failed: failed at once.
    let mut late = f.script("true");
    late.after = vec![bad.number.to_string()];
    let late = f.submit(late).await;
    assert_eq!(late.state, JobState::Failed);
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_back_off_and_every_attempt_is_recorded() {
    let f = Fixture::start("").await;
    let mut flaky = f.script("n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo attempt $PETRI_ATTEMPT; [ $n -ge 3 ]");
    flaky.retries.max = 3;
    flaky.retries.backoff = petri_domain::Millis(100);
    let flaky = f.wait_done(&f.submit(flaky).await).await;
    assert_eq!(flaky.state, JobState::Succeeded);
    assert_eq!(flaky.attempts, 3);
    let outcomes: Vec<RunOutcome> = flaky.runs.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            RunOutcome::Failed,
            RunOutcome::Failed,
            RunOutcome::Succeeded
        ]
    );
    // Backoff: the second retry waited at least twice the first.
    let gap = |i: usize| flaky.runs[i + 1].started_at_ms - flaky.runs[i].finished_at_ms.unwrap();
    assert!(gap(0) >= 100 && gap(1) >= 200, "gaps {} {}", gap(0), gap(1));
    let (log, _, _) = f.client.log(&flaky.id.to_string(), 0).await.unwrap();
    assert_eq!(
        String::from_utf8(log).unwrap(),
        "attempt 1\nattempt 2\nattempt 3\n"
    );

    let mut hopeless = f.script("exit 9");
    hopeless.retries.max = 1;
    let hopeless = f.wait_done(&f.submit(hopeless).await).await;
    assert_eq!(hopeless.state, JobState::Failed);
    assert_eq!(hopeless.runs.len(), 2);
    assert_eq!(hopeless.exit_code, Some(9));
}

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_stop_the_whole_process_group() {
    let f = Fixture::start("kill_grace = \"1s\"\n").await;
    let mut spec = f.script("sleep 60 & echo $! > child.pid; wait");
    spec.timeout = Some(petri_domain::Millis(500));
    let job = f.wait_done(&f.submit(spec).await).await;
    assert_eq!(job.state, JobState::TimedOut);
    assert!(job.reason.unwrap().contains("timeout"));
    let child: u32 = std::fs::read_to_string(f.work().join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until("the job's child to be gone", || async move {
        !std::path::Path::new(&format!("/proc/{child}")).exists()
            || std::fs::read_to_string(format!("/proc/{child}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
    })
    .await;

    // A job that ignores SIGTERM is killed after the grace period.
    let mut stubborn = f.script("trap '' TERM; while true; do sleep 0.05; done");
    stubborn.timeout = Some(petri_domain::Millis(300));
    let stubborn = f.wait_done(&f.submit(stubborn).await).await;
    assert_eq!(stubborn.state, JobState::TimedOut);
    assert_eq!(stubborn.runs[0].outcome, RunOutcome::TimedOut);
}

#[tokio::test(flavor = "multi_thread")]
async fn hold_release_and_cancel() {
    let f = Fixture::start(ONE_CPU).await;
    let mut held = f.script("touch held-ran");
    held.hold = true;
    let held = f.submit(held).await;
    assert_eq!(held.state, JobState::Held);
    let shown = f.client.job(&held.number.to_string()).await.unwrap();
    assert_eq!(shown.pending.unwrap().reason, PendingReason::Held);
    let err = f.client.hold(&held.number.to_string()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidState));
    f.client.release(&held.number.to_string()).await.unwrap();
    assert_eq!(f.wait_done(&held).await.state, JobState::Succeeded);
    assert!(f.work().join("held-ran").exists());

    let running = f.submit(f.script("echo started; sleep 60")).await;
    f.wait_state(&running, |s| s == JobState::Running).await;
    let queued = f.submit(f.script("touch queued-ran")).await;
    let q = f.client.hold(&queued.id.to_string()).await.unwrap();
    assert_eq!(q.state, JobState::Held);
    let q = f.client.cancel(&queued.id.to_string()).await.unwrap();
    assert_eq!(q.state, JobState::Cancelled);
    f.client.cancel(&running.number.to_string()).await.unwrap();
    let r = f.wait_done(&running).await;
    assert_eq!(r.state, JobState::Cancelled);
    assert_eq!(r.runs.len(), 1);
    assert_eq!(r.runs[0].outcome, RunOutcome::Cancelled);
    let err = f
        .client
        .cancel(&running.number.to_string())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidState));
    assert!(!f.work().join("queued-ran").exists());
}

/// The engine keeps a waiting job lean (its spec is read back from the database when it
/// starts): every answer still carries the whole spec, and the job runs with its command,
/// environment and sweep value, also after waiting through a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_job_keeps_its_whole_spec_through_hold_release_cancel_and_restart() {
    let f = Fixture::start(ONE_CPU).await;
    let mut spec = f.script("echo \"$GREETING $i\" > \"$PETRI_OUTPUT_DIR/out.txt\"");
    spec.hold = true;
    spec.env.insert("GREETING".into(), "hello".into());
    spec.array
        .insert("i".into(), SweepValues::Range("1..2".into()));
    let jobs = f.client.submit(std::slice::from_ref(&spec)).await.unwrap();
    assert_eq!(jobs.len(), 2);
    let whole = |j: &petri_domain::Job| {
        assert_eq!(
            j.spec.env.get("GREETING").map(String::as_str),
            Some("hello"),
            "{j:?}"
        );
        assert_eq!(j.spec.run, spec.run, "{j:?}");
        assert_eq!(j.spec.workdir, spec.workdir, "{j:?}");
        assert!(j.array_values.contains_key("i"), "{j:?}");
    };
    jobs.iter().for_each(whole);
    // Released, it runs with its environment and its value.
    let first = f.client.release(&jobs[0].number.to_string()).await.unwrap();
    whole(&first);
    assert_eq!(f.wait_done(&first).await.state, JobState::Succeeded);
    assert_eq!(
        f.output(&first, "out.txt").trim(),
        format!("hello {}", first.array_values["i"])
    );
    // One behind the held one: held, released and cancelled, each answer whole.
    let mut behind = spec.clone();
    behind.hold = false;
    behind.array.clear();
    behind.after = vec![jobs[1].number.to_string()];
    let behind = f.submit(behind).await;
    assert_eq!(behind.state, JobState::Queued);
    let held = f.client.hold(&behind.number.to_string()).await.unwrap();
    assert_eq!(held.state, JobState::Held);
    assert_eq!(
        held.spec.env.get("GREETING").map(String::as_str),
        Some("hello")
    );
    let released = f.client.release(&behind.number.to_string()).await.unwrap();
    assert_eq!(released.spec.run, spec.run);
    let cancelled = f.client.cancel(&behind.number.to_string()).await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(
        cancelled.spec.env.get("GREETING").map(String::as_str),
        Some("hello")
    );
    // The other waits through a restart, and runs whole after it.
    let dir = f.stop().await;
    let f = Fixture::start_in(dir).await;
    let second = f.client.release(&jobs[1].number.to_string()).await.unwrap();
    whole(&second);
    assert_eq!(f.wait_done(&second).await.state, JobState::Succeeded);
    assert_eq!(
        f.output(&second, "out.txt").trim(),
        format!("hello {}", second.array_values["i"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sweeps_give_each_job_its_values_and_environment() {
    let f = Fixture::start("").await;
    let mut spec = f.script("echo \"$lr $bs $PETRI_JOB_ID\" > \"$PETRI_OUTPUT_DIR/out.txt\"");
    spec.array
        .insert("lr".into(), vec!["0.1".into(), "0.01".into()].into());
    spec.array
        .insert("bs".into(), SweepValues::Range("32..64:32".into()));
    let jobs = f.client.submit(&[spec]).await.unwrap();
    assert_eq!(jobs.len(), 4);
    let mut seen = Vec::new();
    for j in &jobs {
        let done = f.wait_done(j).await;
        assert_eq!(done.state, JobState::Succeeded);
        let out = f.output(j, "out.txt");
        assert_eq!(
            out.trim(),
            format!("{} {} {}", j.array_values["lr"], j.array_values["bs"], j.id)
        );
        seen.push(out);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_limits_hold_back_their_queue() {
    let f = Fixture::start("[capacity]\ncpus = 4\n[queues.solo]\nconcurrency = 1\n").await;
    let mut spec = f.script("while [ ! -f go ]; do sleep 0.02; done");
    spec.queue = Some("solo".into());
    let first = f.submit(spec.clone()).await;
    let second = f.submit(spec).await;
    let other = f.submit(f.script("true")).await;
    assert_eq!(f.wait_done(&other).await.state, JobState::Succeeded);
    f.wait_state(&first, |s| s == JobState::Running).await;
    let s = f.client.job(&second.number.to_string()).await.unwrap();
    assert_eq!(s.state, JobState::Queued);
    assert_eq!(
        s.pending.unwrap().reason,
        PendingReason::QueueLimit {
            queue: "solo".into(),
            limit: 1
        }
    );
    std::fs::write(f.work().join("go"), "").unwrap();
    assert_eq!(f.wait_done(&second).await.state, JobState::Succeeded);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_and_followed_logs_arrive_live() {
    let f = Fixture::start("").await;
    let mut events = std::pin::pin!(f.client.events().await.unwrap());
    let job = f
        .submit(
            f.script("echo one; while [ ! -f go ]; do sleep 0.02; done; echo two; echo three >&2"),
        )
        .await;
    let key = job.id.to_string();
    let client = f.client.clone();
    let follower = tokio::spawn(async move {
        let mut text = String::new();
        let mut s = std::pin::pin!(client.follow_log(&key).await.unwrap());
        while let Some(piece) = s.next().await {
            text.push_str(&piece.unwrap().text);
        }
        text
    });
    let log_path = f.home().join("logs").join(format!("{}.log", job.id));
    wait_until("the first line", || {
        let p = log_path.clone();
        async move { std::fs::read_to_string(&p).is_ok_and(|t| t.contains("one")) }
    })
    .await;
    std::fs::write(f.work().join("go"), "").unwrap();
    let text = tokio::time::timeout(Duration::from_secs(60), follower)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text, "one\ntwo\nthree\n");
    let mut states = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(10), events.next()).await {
        match e.unwrap() {
            Event::JobSubmitted(c) | Event::JobChanged(c) | Event::JobStopping(c) => {
                assert_eq!(c.id, job.id);
                states.push(c.state);
                if c.state.is_terminal() {
                    break;
                }
            }
            Event::NotebookChanged(n) => panic!("no notebook was started: {n:?}"),
            Event::GpusSampled(_) => panic!("this daemon has no GPUs to sample"),
            Event::PipelineRunChanged(r) => panic!("no pipeline was run: {r:?}"),
        }
    }
    assert_eq!(
        states,
        [JobState::Queued, JobState::Running, JobState::Succeeded]
    );
}

/// A stream opened on a job that has not started answers its head without waiting for the
/// job (the head waits a moment for a first event to go out with, no longer), and a job that
/// never ran has nothing in its log.
#[tokio::test(flavor = "multi_thread")]
async fn a_log_stream_on_a_waiting_job_opens_at_once_and_follows_it_to_its_end() {
    let f = Fixture::start("").await;
    let mut spec = f.script("echo ran");
    spec.hold = true;
    let held = f.submit(spec).await;
    let url = format!("{}/api/v1/jobs/{}/log/stream", f.base, held.id);
    let open = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&f.token)
        .send();
    let response = tokio::time::timeout(Duration::from_secs(20), open)
        .await
        .expect("the head of a waiting job's stream")
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    f.client.release(&held.number.to_string()).await.unwrap();
    let body = tokio::time::timeout(Duration::from_secs(60), response.text())
        .await
        .unwrap()
        .unwrap();
    assert!(
        body.contains("event: log") && body.contains("ran"),
        "{body}"
    );
    assert!(body.trim_end().ends_with("event: end\ndata: {}"), "{body}");

    let mut never = f.script("echo never");
    never.hold = true;
    let never = f.submit(never).await;
    f.client.cancel(&never.number.to_string()).await.unwrap();
    let body = f
        .get_text(&format!("/api/v1/jobs/{}/log/stream", never.id))
        .await;
    assert_eq!(body.trim_end(), "event: end\ndata: {}");
}

/// Reads `response` (a log stream) until its text holds `needle`: what it read by then.
async fn read_until(response: &mut reqwest::Response, needle: &str) -> String {
    let mut text = String::new();
    while !text.contains(needle) {
        match response.chunk().await.unwrap() {
            Some(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
            None => panic!("the stream ended without {needle:?}: {text}"),
        }
    }
    text
}

/// A stream opened on a running job starts with what the job wrote before it opened (an
/// active job is known without the database: its attempt, hence its log), on this daemon and
/// on the next one, which re-adopts the job; it ends with the job.
#[tokio::test(flavor = "multi_thread")]
async fn a_log_stream_on_a_running_job_starts_with_what_it_wrote_also_after_a_restart() {
    let f = Fixture::start("").await;
    let job = f.submit(f.script("echo first; exec sleep 600")).await;
    let key = job.id.to_string();
    wait_until("the job's first line", || async {
        let (bytes, _, _) = f.client.log(&key, 0).await.unwrap();
        String::from_utf8_lossy(&bytes).contains("first")
    })
    .await;
    // The job writes nothing more: only a stream's first read can show the line.
    let first_line = |f: &Fixture| {
        let request = reqwest::Client::new()
            .get(format!("{}/api/v1/jobs/{key}/log/stream", f.base))
            .bearer_auth(&f.token);
        async move {
            let mut stream = request.send().await.unwrap();
            assert_eq!(stream.status(), reqwest::StatusCode::OK);
            let seen =
                tokio::time::timeout(Duration::from_secs(20), read_until(&mut stream, "first"))
                    .await
                    .expect("the line the job wrote before the stream opened");
            assert!(seen.contains("event: log"), "{seen}");
            stream
        }
    };
    drop(first_line(&f).await);
    let f = Fixture::start_in(f.stop().await).await;
    let stream = first_line(&f).await;
    f.client.cancel(&key).await.unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(60), stream.text())
        .await
        .unwrap()
        .unwrap();
    assert!(rest.trim_end().ends_with("event: end\ndata: {}"), "{rest}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_the_queue() {
    let f = Fixture::start("").await;
    let ok = f.submit(f.script("true")).await;
    let bad = f.submit(f.script("false")).await;
    f.wait_done(&ok).await;
    f.wait_done(&bad).await;
    let text = f.get_text("/metrics").await;
    for needle in [
        "petri_jobs_queued 0",
        "petri_jobs_running 0",
        "petri_jobs_finished_total{state=\"succeeded\"} 1",
        "petri_jobs_finished_total{state=\"failed\"} 1",
        "petri_scheduling_latency_seconds_count 2",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_daemon_keeps_the_queue_and_readopts_running_jobs() {
    let f = Fixture::start(ONE_CPU).await;
    let running = f
        .submit(f.script("while [ ! -f go ]; do sleep 0.02; done; echo ran >> marks"))
        .await;
    f.wait_state(&running, |s| s == JobState::Running).await;
    let waiting = f.submit(f.script("echo waited >> marks")).await;
    let work = f.work();
    let dir = f.stop().await;
    // The daemon is gone; the job is not.
    std::fs::write(work.join("go"), "").unwrap();
    let f = Fixture::start_in(dir).await;
    let running = f.wait_done(&running).await;
    assert_eq!(running.state, JobState::Succeeded);
    assert_eq!(running.runs.len(), 1);
    assert_eq!(f.wait_done(&waiting).await.state, JobState::Succeeded);
    assert_eq!(
        std::fs::read_to_string(work.join("marks")).unwrap(),
        "ran\nwaited\n"
    );
    let next = f
        .submit(JobSpec {
            command: Some(vec!["true".into()]),
            ..Default::default()
        })
        .await;
    assert_eq!(next.number, 3, "numbers continue after a restart");
}

/// The daemon keeps no memory of finished jobs: a dependency that failed before a restart is
/// read from the database, and a job submitted after it fails at once, as before the restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_dependency_that_failed_before_a_restart_still_fails_its_dependants() {
    let f = Fixture::start("").await;
    let bad = f.wait_done(&f.submit(f.script("exit 3")).await).await;
    let good = f.wait_done(&f.submit(f.script("true")).await).await;
    assert_eq!(bad.state, JobState::Failed);
    let dir = f.stop().await;
    let f = Fixture::start_in(dir).await;
    let mut late = f.script("touch should-not-exist");
    late.after = vec![bad.number.to_string()];
    let late = f.submit(late).await;
    assert_eq!(late.state, JobState::Failed, "{late:?}");
    assert_eq!(
        late.reason.as_deref(),
        Some(format!("dependency #{} failed", bad.number).as_str())
    );
    // A sweep behind it, and behind it and a job that succeeded: every job fails at once.
    let mut sweep = f.script("touch should-not-exist");
    sweep.after = vec![good.number.to_string(), bad.id.to_string()];
    sweep.array = [("i".to_string(), SweepValues::Range("1..50".into()))].into();
    let jobs = f.client.submit(&[sweep]).await.unwrap();
    assert_eq!(jobs.len(), 50);
    assert!(jobs.iter().all(|j| j.state == JobState::Failed), "{jobs:?}");
    // One behind the job that succeeded runs.
    let mut fine = f.script("true");
    fine.after = vec![good.number.to_string()];
    let fine = f.wait_done(&f.submit(fine).await).await;
    assert_eq!(fine.state, JobState::Succeeded);
    // Cancelling a job that ended names its state, read from the database.
    let err = f.client.cancel(&bad.number.to_string()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("job #{} already failed", bad.number)),
        "{err}"
    );
    assert!(!f.work().join("should-not-exist").exists());
}

/// The windows a SIGKILL can hit, written straight into a home as the killed daemon left it: an
/// attempt recorded but never spawned, one that finished while no daemon ran, one whose process
/// vanished. The next daemon runs the first exactly once and records the others as they ended.
#[tokio::test(flavor = "multi_thread")]
async fn recovery_settles_every_attempt_the_database_calls_running() {
    let f = Fixture::start(ONE_CPU).await;
    let work = f.work();
    let dir = f.stop().await;
    let home = dir.path().to_path_buf();
    let script = |s: &str| JobSpec {
        run: Some(s.into()),
        workdir: Some(work.clone()),
        ..Default::default()
    };
    let job = |number: u64, spec: JobSpec| petri_domain::Job {
        id: petri_domain::JobId::new(),
        number,
        name: format!("j{number}"),
        state: JobState::Running,
        queue: "default".into(),
        priority: 0,
        origin: Default::default(),
        user: "owner".into(),
        spec,
        array_values: Default::default(),
        depends_on: vec![],
        submitted_at_ms: 1,
        started_at_ms: Some(2),
        finished_at_ms: None,
        exit_code: None,
        reason: None,
        attempts: 1,
        pending: None,
        runs: vec![],
        pruned: None,
        remote: None,
    };
    let never = job(1, script("echo never >> marks"));
    let finished = job(2, script("echo finished >> marks"));
    let vanished = job(3, script("echo vanished >> marks"));
    {
        let mut store = petri_store::Store::open(&home.join("petri.db")).unwrap();
        store
            .write(|tx| {
                for j in [&never, &finished, &vanished] {
                    tx.insert_job(j, 0)?;
                    tx.begin_run(&petri_store::NewRun {
                        job: j.id,
                        attempt: 1,
                        now_ms: 2,
                        target: "local",
                        gpus: &[],
                        mig_slot: None,
                    })?;
                }
                Ok(())
            })
            .unwrap();
    }
    let runs = home.join("runs");
    std::fs::write(runs.join(format!("{}.1", finished.id)), "4000000\n0\n").unwrap();
    std::fs::write(runs.join(format!("{}.1", vanished.id)), "4000001\n").unwrap();

    let f = Fixture::start_in(dir).await;
    let never = f.wait_done(&never).await;
    assert_eq!(never.state, JobState::Succeeded);
    assert_eq!(never.runs.len(), 1, "{:?}", never.runs);
    let finished = f.wait_done(&finished).await;
    assert_eq!(
        (finished.state, finished.exit_code),
        (JobState::Succeeded, Some(0))
    );
    let vanished = f.wait_done(&vanished).await;
    assert_eq!(vanished.state, JobState::Failed);
    assert_eq!(vanished.runs[0].outcome, RunOutcome::Lost);
    assert!(vanished.reason.unwrap().contains("vanished"));
    // Only the attempt that never began ran, once.
    assert_eq!(
        std::fs::read_to_string(work.join("marks")).unwrap(),
        "never\n"
    );
}
