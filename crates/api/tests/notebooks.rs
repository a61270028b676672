//! A notebook end to end with the real Docker engine, Petri's default image and the fake NVML: it
//! starts, its kernel runs code through the daemon's proxy, files land in its workspace, it holds
//! its GPU slice, it is culled when idle (freeing the slice), and it resumes.

mod helpers;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use helpers::{Fixture, containers_of, wait_until};
use petri_domain::{ByteSize, ErrorCode, Event, JobState, NotebookRequest, NotebookState};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const GIB: u64 = 1 << 30;

async fn wait_notebook(f: &Fixture, name: &str, state: NotebookState) -> petri_domain::Notebook {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let nb = f.client.notebook(name).await.unwrap();
        if nb.state == state {
            return nb;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "notebook never became {state:?}: {nb:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `code` in the kernel through the proxied websocket; returns what it printed.
async fn execute(f: &Fixture, base: &str, name: &str, kernel: &str, code: &str) -> String {
    let url = format!(
        "{}/notebooks/{name}/api/kernels/{kernel}/channels",
        base.replacen("http://", "ws://", 1)
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", f.token).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let msg_id = format!("petri-test-{}", std::process::id());
    let request = serde_json::json!({
        "header": {"msg_id": msg_id, "username": "test", "session": "petri-test",
                   "msg_type": "execute_request", "version": "5.3", "date": "2026-01-01T00:00:00Z"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": false, "store_history": false,
                    "user_expressions": {}, "allow_stdin": false, "stop_on_error": true},
    });
    ws.send(Message::Text(request.to_string().into()))
        .await
        .unwrap();
    let mut printed = String::new();
    let mut replied = false;
    let mut idle = false;
    while !(replied && idle) {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("the kernel answers")
            .unwrap()
            .unwrap();
        let Message::Text(text) = msg else { continue };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if v["parent_header"]["msg_id"] != msg_id.as_str() {
            continue;
        }
        match v["header"]["msg_type"].as_str().unwrap_or("") {
            "stream" => printed.push_str(v["content"]["text"].as_str().unwrap_or("")),
            "execute_reply" => replied = true,
            "status" => idle |= v["content"]["execution_state"] == "idle",
            _ => {}
        }
    }
    printed
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notebook_runs_code_keeps_files_holds_its_slice_and_is_culled_when_idle() {
    let Some(image) = helpers::docker_image() else {
        return;
    };
    let gpus = serde_json::json!({"gpus": [
        {"name": "Fake 16G", "uuid": "GPU-00000000-aaaa", "memory_total": 16 * GIB},
        {"name": "Fake 16G", "uuid": "GPU-11111111-bbbb", "memory_total": 16 * GIB},
    ]});
    let Some(fake) = helpers::FakeGpus::new(gpus.clone()) else {
        return;
    };
    let f = Fixture::start(&format!(
        "[gpu]\nnvml_path = \"{}\"\nsample_every = \"200ms\"\n\
         [notebooks]\nimage = \"{image}\"\nidle_timeout = \"10s\"\ncull_every = \"500ms\"\n",
        fake.lib.display()
    ))
    .await;
    let http = reqwest::Client::new();

    // Start, with a GPU slice from the same budget as jobs.
    let req = NotebookRequest {
        name: "lab1".into(),
        gpu_memory: Some(ByteSize(4 * GIB)),
        ..Default::default()
    };
    f.client.notebook_start(&req).await.unwrap();
    let nb = wait_notebook(&f, "lab1", NotebookState::Running).await;
    assert_eq!(nb.gpu_indices.len(), 1);
    let report = f.client.gpus().await.unwrap();
    let holder = report
        .gpus
        .iter()
        .flat_map(|g| &g.holders)
        .find(|h| h.kind == "notebook")
        .expect("the notebook holds its slice");
    assert_eq!(holder.reserved, 4 * GIB);

    // GPU memory used by a process of the notebook's container is the notebook's, not foreign.
    let container = format!("petri-{}-1", nb.job.unwrap());
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.State.Pid}}", &container])
        .output()
        .unwrap();
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let index = nb.gpu_indices[0] as usize;
    let mut with_process = gpus.clone();
    with_process["gpus"][index]["processes"] =
        serde_json::json!([{"pid": pid, "used_memory": GIB}]);
    std::fs::write(&fake.config, with_process.to_string()).unwrap();
    wait_until(
        "the notebook's GPU process to be attributed to it",
        || async {
            f.client.gpus().await.is_ok_and(|r| {
                r.gpus[index]
                    .holders
                    .iter()
                    .any(|h| h.kind == "notebook" && h.used == GIB && h.pids == vec![pid])
            })
        },
    )
    .await;
    std::fs::write(&fake.config, gpus.to_string()).unwrap();

    // A second start of a running notebook is refused.
    let again = f.client.notebook_start(&req).await.unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::NotebookNameTaken));

    // Notebooks have an address of their own: the web UI's origin does not serve them, so a
    // notebook page can never read the UI's token.
    let nb_base = {
        let link = f.client.notebook_link("lab1").await.unwrap();
        link[..link.find("/notebooks/").unwrap()].to_string()
    };
    assert_ne!(nb_base, f.base);
    let on_api_origin = http
        .get(format!("{}/notebooks/lab1/api/status", f.base))
        .bearer_auth(&f.token)
        .send()
        .await
        .unwrap();
    assert_eq!(on_api_origin.status(), 404);
    // Without Petri's token the proxy answers 401; with it, Jupyter answers.
    let status_url = format!("{nb_base}/notebooks/lab1/api/status");
    let anon = http.get(&status_url).send().await.unwrap();
    assert_eq!(anon.status(), 401);

    // The kernel runs code through the proxied websocket.
    let kernel: serde_json::Value = http
        .post(format!("{nb_base}/notebooks/lab1/api/kernels"))
        .bearer_auth(&f.token)
        .json(&serde_json::json!({"name": "python3"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kernel = kernel["id"].as_str().expect("a kernel id").to_string();
    assert_eq!(
        execute(&f, &nb_base, "lab1", &kernel, "print(1+1)").await,
        "2\n"
    );

    // A notebook made through the proxied contents API lands in the workspace on the host.
    let made = http
        .put(format!("{nb_base}/notebooks/lab1/api/contents/hello.ipynb"))
        .bearer_auth(&f.token)
        .json(
            &serde_json::json!({"type": "notebook", "format": "json", "content": {
            "cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201, "{}", made.text().await.unwrap());
    let workspace = f.home().join("notebooks").join("lab1");
    assert_eq!(nb.workspace, workspace);
    assert!(workspace.join("hello.ipynb").is_file());

    // A browser signs in with a one-time link and then uses a cookie.
    let link = f.client.notebook_link("lab1").await.unwrap();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = no_redirects.get(&link).send().await.unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = http
        .get(format!("{nb_base}/notebooks/lab1/lab"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    // Its pages may be framed by the web UI (and by nothing else).
    assert_eq!(
        page.headers()["content-security-policy"],
        format!("frame-ancestors 'self' {}", f.base).as_str()
    );
    assert!(page.text().await.unwrap().contains("JupyterLab"));
    // The link works once.
    assert_eq!(no_redirects.get(&link).send().await.unwrap().status(), 401);

    // Idle culling: nothing happens in the notebook, so it is stopped and its slice is freed.
    let mut events = Box::pin(f.client.events().await.unwrap());
    let culled = wait_notebook(&f, "lab1", NotebookState::Stopped).await;
    let reason = culled.reason.unwrap_or_default();
    assert!(reason.contains("without activity"), "{reason}");
    let said = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = events.next().await {
            if let Ok(Event::NotebookChanged(c)) = e
                && c.name == "lab1"
                && c.reason
                    .as_deref()
                    .is_some_and(|r| r.contains("without activity"))
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(said, Ok(true), "an event says why the notebook stopped");
    wait_until("the slice to be freed", || async {
        f.client
            .gpus()
            .await
            .is_ok_and(|r| r.gpus.iter().all(|g| g.holders.is_empty()))
    })
    .await;
    wait_until("the container to be removed", || async {
        containers_of(f.home()).is_empty()
    })
    .await;
    assert_eq!(
        http.get(&status_url)
            .bearer_auth(&f.token)
            .send()
            .await
            .unwrap()
            .status(),
        409
    );

    // It resumes with its workspace, and stops on request. Two starts at once queue one server:
    // the other is told the notebook is taken.
    let resume = NotebookRequest {
        name: "lab1".into(),
        ..Default::default()
    };
    let (a, b) = tokio::join!(
        f.client.notebook_start(&resume),
        f.client.notebook_start(&resume)
    );
    let refused = match (a, b) {
        (Ok(_), Err(e)) | (Err(e), Ok(_)) => e,
        other => panic!("two starts of one notebook: {other:?}"),
    };
    assert_eq!(refused.code(), Some(ErrorCode::NotebookNameTaken));
    let resumed = wait_notebook(&f, "lab1", NotebookState::Running).await;

    // A server that crashes comes back by itself (a service job is restarted with backoff): the
    // same job on its next attempt, with its workspace.
    let job = resumed.job.unwrap();
    let first = f.client.job(&job.to_string()).await.unwrap();
    let killed = std::process::Command::new("docker")
        .args([
            "kill",
            "--signal",
            "KILL",
            &format!("petri-{job}-{}", first.attempts),
        ])
        .output()
        .unwrap();
    assert!(
        killed.status.success(),
        "{}",
        String::from_utf8_lossy(&killed.stderr)
    );
    wait_until("the crashed server to be started again", || async {
        f.client
            .job(&job.to_string())
            .await
            .is_ok_and(|j| j.attempts > first.attempts && j.state == JobState::Running)
    })
    .await;
    let back = wait_notebook(&f, "lab1", NotebookState::Running).await;
    assert_eq!(back.job, Some(job));
    let runs = f.client.job(&job.to_string()).await.unwrap().runs;
    assert_eq!(runs[runs.len() - 2].exit_code, Some(137), "{runs:?}");
    let listing: serde_json::Value = http
        .get(format!("{nb_base}/notebooks/lab1/api/contents"))
        .bearer_auth(&f.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listing["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(names.contains(&"hello.ipynb"), "{names:?}");
    let removed_early = f.client.notebook_remove("lab1").await.unwrap_err();
    assert_eq!(removed_early.code(), Some(ErrorCode::InvalidState));
    f.client.notebook_stop("lab1").await.unwrap();
    let stopped = wait_notebook(&f, "lab1", NotebookState::Stopped).await;
    assert_eq!(stopped.reason.as_deref(), Some("stopped by a user"));
    f.client.notebook_remove("lab1").await.unwrap();
    assert!(f.client.notebooks().await.unwrap().is_empty());
    assert!(
        workspace.join("hello.ipynb").is_file(),
        "the workspace is kept"
    );
    wait_until("no container left", || async {
        containers_of(f.home()).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_notebook_requests_are_refused() {
    let Some(_) = helpers::docker_image() else {
        return;
    };
    let f = Fixture::start("").await;
    let start = |req: NotebookRequest| {
        let client = f.client.clone();
        async move {
            client
                .notebook_start(&req)
                .await
                .unwrap_err()
                .code()
                .unwrap()
        }
    };
    let named = |name: &str| NotebookRequest {
        name: name.into(),
        ..Default::default()
    };
    assert_eq!(start(named("../x")).await, ErrorCode::InvalidSpec);
    assert_eq!(
        start(NotebookRequest {
            image: Some("petri/no-such-image:1".into()),
            ..named("ok")
        })
        .await,
        ErrorCode::ImageNotFound
    );
    assert_eq!(
        start(NotebookRequest {
            workspace: Some("/etc".into()),
            ..named("ok2")
        })
        .await,
        ErrorCode::MountNotAllowed
    );
    let missing = f.client.notebook("nope").await.unwrap_err();
    assert_eq!(missing.code(), Some(ErrorCode::NotebookNotFound));
    assert!(f.client.notebooks().await.unwrap().is_empty());
    assert!(containers_of(f.home()).is_empty());
}
