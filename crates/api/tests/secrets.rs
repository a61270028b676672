//! Secrets through the daemon: set over the API, given to local and container jobs at launch,
//! masked in their logs, never in a job, an event or an answer. (After a SIGKILL of the daemon:
//! `tests/e2e/secrets.rs`, with the real binary.)

mod helpers;

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use helpers::{Fixture, wait_until};
use petri_domain::{ErrorCode, JobSpec, JobState, SecretKind, SecretUse};

const VALUE: &str = "hf_Z8kq2RmT5vXw9LpN3bYc";
const FILE: &str = "{\n  \"username\": \"ada\",\n  \"key\": \"k9f8e7d6c5b4a3\"\n}\n";

/// Everything the event stream sends while it runs, as raw text.
fn record_events(f: &Fixture) -> (Arc<Mutex<String>>, tokio::task::JoinHandle<()>) {
    let text = Arc::new(Mutex::new(String::new()));
    let (base, token, into) = (f.base.clone(), f.token.clone(), text.clone());
    let task = tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .get(format!("{base}/api/v1/events"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let mut body = resp.bytes_stream();
        while let Some(Ok(chunk)) = body.next().await {
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk));
        }
    });
    (text, task)
}

async fn set_both(f: &Fixture) {
    f.client.secret_set_value("HF_TOKEN", VALUE).await.unwrap();
    f.client
        .secret_set_file("kaggle.json", FILE.as_bytes())
        .await
        .unwrap();
}

/// What a job must never show: the value, and the file's lines.
fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(VALUE), "{what} holds the value:\n{text}");
    assert!(
        !text.contains("k9f8e7d6c5b4a3"),
        "{what} holds the file:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_job_gets_its_secrets_and_its_log_shows_stars() {
    let f = Fixture::start("").await;
    set_both(&f).await;
    let (events, recorder) = record_events(&f);
    let spec = JobSpec {
        secrets: vec![
            SecretUse::named("HF_TOKEN"),
            SecretUse {
                name: "kaggle.json".into(),
                env: Some("KAGGLE_CONFIG".into()),
            },
        ],
        ..f.script(
            // The value in two writes, and the file, printed; the file copied for the test.
            "printf 'token: %s' \"${HF_TOKEN%???????????}\"; sleep 0.2; \
             printf '%s\\n' \"${HF_TOKEN#????????????}\"; echo \"again $HF_TOKEN\" >&2; \
             cat \"$KAGGLE_CONFIG\"; cp \"$KAGGLE_CONFIG\" copy.json; \
             stat -c %a \"$KAGGLE_CONFIG\" > mode; echo \"$KAGGLE_CONFIG\" > where",
        )
    };
    let job = f.submit(spec).await;
    let done = f.wait_done(&job).await;
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.reason);

    let (log, _, _) = f.client.log(&job.id.to_string(), 0).await.unwrap();
    let log = String::from_utf8(log).unwrap();
    assert_eq!(log, "token: ***\nagain ***\n{\n  ***\n  ***\n}\n");
    let on_disk = std::fs::read_to_string(f.home().join("logs").join(format!("{}.log", job.id)));
    assert_clean("the log file", &on_disk.unwrap());

    // The job could read its file, private to it, and the file is gone now.
    assert_eq!(
        std::fs::read_to_string(f.work().join("copy.json")).unwrap(),
        FILE
    );
    assert_eq!(
        std::fs::read_to_string(f.work().join("mode")).unwrap(),
        "600\n"
    );
    let path = std::fs::read_to_string(f.work().join("where")).unwrap();
    let path = std::path::Path::new(path.trim());
    assert!(path.starts_with(f.home().join("run/secrets").join(job.id.to_string())));

    // Neither the job, the listing, the secrets nor the event stream hold a value.
    let shown = f.get_text(&format!("/api/v1/jobs/{}", job.id)).await;
    assert_clean("petri show", &shown);
    assert!(shown.contains("\"secrets\":[\"HF_TOKEN\""), "{shown}");
    assert_clean("the job list", &f.get_text("/api/v1/jobs?all=true").await);
    assert_clean("the secrets", &f.get_text("/api/v1/secrets").await);
    wait_until("the job's last event", || {
        let events = events.clone();
        async move { events.lock().unwrap().contains("succeeded") }
    })
    .await;
    recorder.abort();
    assert_clean("the event stream", &events.lock().unwrap());
    // The job's end is told only once its files are gone (its record may be read a moment sooner).
    assert!(!path.exists());
    assert!(!path.parent().unwrap().exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_secret_is_refused_at_submit_and_nothing_is_queued() {
    let f = Fixture::start("").await;
    f.client.secret_set_value("HF_TOKEN", VALUE).await.unwrap();
    let good = JobSpec {
        secrets: vec![SecretUse::named("HF_TOKEN")],
        ..f.script("true")
    };
    let bad = JobSpec {
        secrets: vec![SecretUse::named("NOT_SET")],
        ..f.script("true")
    };
    // One bad job refuses the whole submission.
    let err = f.client.submit(&[good, bad]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::SecretNotFound), "{err}");
    assert!(err.to_string().contains("NOT_SET"), "{err}");
    assert!(f.all_jobs().await.is_empty());
    // A value secret whose name is no variable name needs `env:`.
    f.client
        .secret_set_value("dotted.name", VALUE)
        .await
        .unwrap();
    let dotted = JobSpec {
        secrets: vec![SecretUse::named("dotted.name")],
        ..f.script("true")
    };
    let err = f.client.submit(&[dotted]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidSpec), "{err}");
    assert!(f.all_jobs().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_without_secrets_writes_straight_into_its_log() {
    let f = Fixture::start("").await;
    f.client.secret_set_value("HF_TOKEN", VALUE).await.unwrap();
    let script = "readlink /proc/$$/fd/1";
    let plain = f.submit(f.script(script)).await;
    let masked = f
        .submit(JobSpec {
            secrets: vec![SecretUse::named("HF_TOKEN")],
            ..f.script(script)
        })
        .await;
    f.wait_done(&plain).await;
    f.wait_done(&masked).await;
    // No filter, no pipe, no copy: the job's stdout is the log file itself.
    let (log, _, _) = f.client.log(&plain.id.to_string(), 0).await.unwrap();
    let log_path = f.home().join("logs").join(format!("{}.log", plain.id));
    assert_eq!(
        String::from_utf8(log).unwrap().trim(),
        log_path.display().to_string()
    );
    // A job with secrets writes into its filter's pipe.
    let (log, _, _) = f.client.log(&masked.id.to_string(), 0).await.unwrap();
    assert!(String::from_utf8(log).unwrap().starts_with("pipe:"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_job_stays_masked_after_a_daemon_restart() {
    let f = Fixture::start("").await;
    f.client.secret_set_value("HF_TOKEN", VALUE).await.unwrap();
    let job = f
        .submit(JobSpec {
            secrets: vec![SecretUse::named("HF_TOKEN")],
            ..f.script(
                "echo \"before $HF_TOKEN\"; while [ ! -f go ]; do sleep 0.05; done; \
                 echo \"after $HF_TOKEN\"",
            )
        })
        .await;
    f.wait_state(&job, |s| s == JobState::Running).await;
    let work = f.work();
    let dir = f.stop().await;
    let f = Fixture::start_in(dir).await;
    std::fs::write(work.join("go"), "").unwrap();
    let done = f.wait_done(&job).await;
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.reason);
    let (log, _, _) = f.client.log(&job.id.to_string(), 0).await.unwrap();
    assert_eq!(String::from_utf8(log).unwrap(), "before ***\nafter ***\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_sets_lists_and_removes_without_echoing_a_value() {
    let f = Fixture::start("").await;
    let http = reqwest::Client::new();
    let put = |name: &str, body: serde_json::Value| {
        http.put(format!("{}/api/v1/secrets/{name}", f.base))
            .bearer_auth(&f.token)
            .json(&body)
            .send()
    };
    let made = put("HF_TOKEN", serde_json::json!({ "value": VALUE }))
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let text = made.text().await.unwrap();
    assert_clean("the answer to PUT", &text);
    let again = put(
        "HF_TOKEN",
        serde_json::json!({ "value": "other", "kind": "value" }),
    )
    .await
    .unwrap();
    assert_eq!(again.status(), 200);
    let listed = f.client.secrets().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].kind, SecretKind::Value);
    assert_clean("the listing", &f.get_text("/api/v1/secrets").await);

    // Bad names, bad base64, too big: INVALID_SECRET, and nothing changes.
    for (name, body) in [
        ("bad%20name", serde_json::json!({ "value": "x" })),
        (".hidden", serde_json::json!({ "value": "x" })),
        (
            "f",
            serde_json::json!({ "value": "not base64!", "kind": "file" }),
        ),
        (
            "big",
            serde_json::json!({ "value": "x".repeat((1 << 20) + 1) }),
        ),
    ] {
        let resp = put(name, body).await.unwrap();
        assert_eq!(resp.status(), 400, "{name}");
        let body: petri_domain::ErrorBody = resp.json().await.unwrap();
        assert_eq!(
            body.code,
            ErrorCode::InvalidSecret,
            "{name}: {}",
            body.message
        );
    }
    let typo = put("x", serde_json::json!({ "valu": "x" })).await.unwrap();
    assert_eq!(typo.status(), 400);
    assert!(typo.text().await.unwrap().contains("did you mean `value`"));
    assert_eq!(f.client.secrets().await.unwrap().len(), 1);

    let removed = f.client.secret_remove("HF_TOKEN").await.unwrap();
    assert_eq!(removed.name, "HF_TOKEN");
    let err = f.client.secret_remove("HF_TOKEN").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::SecretNotFound));
    assert!(f.client.secrets().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_job_gets_its_secrets_and_its_log_shows_stars() {
    let Some(image) = helpers::docker_image() else {
        return;
    };
    let f = Fixture::start("").await;
    set_both(&f).await;
    let spec = JobSpec {
        image: Some(image),
        secrets: vec![
            SecretUse::named("HF_TOKEN"),
            SecretUse::named("kaggle.json"),
        ],
        ..f.script(
            "echo \"token $HF_TOKEN\"; python3 -c 'import os; print(os.environ[\"HF_TOKEN\"])'; \
             cat \"$KAGGLE_JSON\"; cp \"$KAGGLE_JSON\" copy.json; \
             touch \"$KAGGLE_JSON\" 2>/dev/null && echo writable || echo read-only",
        )
    };
    let job = f.submit(spec).await;
    let done = f.wait_done(&job).await;
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.reason);
    let (log, _, _) = f.client.log(&job.id.to_string(), 0).await.unwrap();
    let log = String::from_utf8(log).unwrap();
    assert_eq!(log, "token ***\n***\n{\n  ***\n  ***\n}\nread-only\n");
    assert_eq!(
        std::fs::read_to_string(f.work().join("copy.json")).unwrap(),
        FILE
    );
    assert!(
        !f.home()
            .join("run/secrets")
            .join(job.id.to_string())
            .exists()
    );
    assert_clean(
        "petri show",
        &f.get_text(&format!("/api/v1/jobs/{}", job.id)).await,
    );
}
