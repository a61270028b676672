//! GPU sharing end to end in one daemon, with the project's fake NVML describing two 16 GiB GPUs:
//! the real nvml-wrapper code, the real scheduler, real processes.

mod helpers;

use helpers::{Fixture, wait_until};
use petri_domain::{ErrorCode, GpuReport, JobSpec, JobState, ListQuery};

const GIB: u64 = 1 << 30;

fn write_gpus(path: &std::path::Path, foreign_on_0: Option<u64>) {
    write_gpus_with(path, foreign_on_0.map(|bytes| (999_999, bytes)));
}

/// GPU 0 may carry one process (pid, bytes).
fn write_gpus_with(path: &std::path::Path, on_0: Option<(u32, u64)>) {
    std::fs::write(path, gpus_json(on_0).to_string()).unwrap();
}

fn gpus_json(on_0: Option<(u32, u64)>) -> serde_json::Value {
    let processes: Vec<serde_json::Value> = on_0
        .map(|(pid, bytes)| vec![serde_json::json!({"pid": pid, "used_memory": bytes})])
        .unwrap_or_default();
    serde_json::json!({"gpus": [
        {"name": "Fake 16G", "uuid": "GPU-00000000-aaaa", "memory_total": 16 * GIB, "processes": processes},
        {"name": "Fake 16G", "uuid": "GPU-11111111-bbbb", "memory_total": 16 * GIB},
    ]})
}

/// Waits until the GPU report satisfies `pred`.
async fn wait_for_report(f: &Fixture, what: &str, pred: impl Fn(&GpuReport) -> bool + Copy) {
    wait_until(what, || {
        let client = f.client.clone();
        async move { client.gpus().await.is_ok_and(|r| pred(&r)) }
    })
    .await;
}

fn gated(f: &Fixture, gate: &str, gpu: &str) -> JobSpec {
    let mut spec = f.script(&format!(
        "echo \"$CUDA_VISIBLE_DEVICES\" > \"$PETRI_OUTPUT_DIR/cvd\"; while [ ! -f {gate} ]; do sleep 0.02; done"
    ));
    match gpu.strip_suffix("GiB") {
        Some(n) => {
            spec.resources.gpu_memory =
                Some(petri_domain::ByteSize(n.parse::<u64>().unwrap() * GIB))
        }
        None => spec.resources.gpus = Some(gpu.parse().unwrap()),
    }
    spec
}

#[tokio::test(flavor = "multi_thread")]
async fn slices_pack_two_per_gpu_whole_gpus_wait_and_foreign_use_counts() {
    let Some(fake) = helpers::FakeGpus::new(gpus_json(None)) else {
        return;
    };
    let config = fake.config.clone();
    let f = Fixture::start(&format!(
        "[capacity]\ncpus = 16\n[gpu]\nnvml_path = \"{}\"\nsample_every = \"100ms\"\nenforce = \"kill\"\n",
        fake.lib.display()
    ))
    .await;

    // Eight 7 GiB slices: four run, two per GPU, the rest wait for GPU memory.
    let jobs = f
        .client
        .submit(&(0..8).map(|_| gated(&f, "go", "7GiB")).collect::<Vec<_>>())
        .await
        .unwrap();
    f.wait_running(4).await;
    let report = f.client.gpus().await.unwrap();
    assert!(report.available);
    for g in &report.gpus {
        assert_eq!(g.holders.len(), 2, "{report:?}");
        assert_eq!(g.reserved, 14 * GIB);
        assert_eq!(g.free_to_admit, 16 * GIB - 256 * (1 << 20) - 14 * GIB);
        for h in &g.holders {
            assert_eq!(h.isolation, "shared-unenforced");
            let path = f
                .home()
                .join("outputs")
                .join(h.job.unwrap().to_string())
                .join("cvd");
            // Running means started: the job writes the file a moment later.
            wait_until("the job to write what it sees", || {
                let path = path.clone();
                async move { std::fs::read_to_string(&path).is_ok_and(|t| t.ends_with('\n')) }
            })
            .await;
            let cvd = std::fs::read_to_string(&path).unwrap();
            assert_eq!(cvd.trim(), g.uuid, "each job sees exactly its GPU");
        }
    }
    // The same figures on /metrics (at the next sample), and a history for charts.
    let (base, token) = (f.base.clone(), f.token.clone());
    wait_until("the GPU gauges", || {
        let (base, token) = (base.clone(), token.clone());
        async move {
            let text = reqwest::Client::new()
                .get(format!("{base}/metrics"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.contains(&format!(
                "petri_gpu_memory_reserved_bytes{{gpu=\"0\",uuid=\"GPU-00000000-aaaa\"}} {}",
                14 * GIB
            ))
        }
    })
    .await;
    let history: petri_domain::GpuHistory = f.get_json("/api/v1/gpus/history").await;
    assert!(history.points.iter().any(|p| p.index == 1));
    // Per user over time: the owner's four 7 GiB slices of 16 GiB GPUs are 1.75 GPUs.
    let owner = jobs[0].user.clone();
    let last = history
        .users
        .iter()
        .rev()
        .find(|p| p.user == owner)
        .expect("the owner's part of the GPUs over time");
    assert!((last.gpus - 4.0 * 7.0 / 16.0).abs() < 1e-9, "{last:?}");
    let waiting = f
        .client
        .list(&ListQuery {
            state: Some("queued".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .jobs;
    assert_eq!(waiting.len(), 4);
    for j in &waiting {
        let p = j.pending.as_ref().unwrap();
        assert!(
            p.message.starts_with("waiting for GPU memory"),
            "{}",
            p.message
        );
    }
    std::fs::write(f.work().join("go"), "").unwrap();
    for j in &jobs {
        assert_eq!(f.wait_done(j).await.state, JobState::Succeeded);
    }

    // A slice on GPU 0, then a whole GPU: it gets the empty GPU 1, alone.
    let slice = f.submit(gated(&f, "go2", "7GiB")).await;
    f.wait_state(&slice, |s| s == JobState::Running).await;
    let whole = f.submit(gated(&f, "go3", "1")).await;
    f.wait_state(&whole, |s| s == JobState::Running).await;
    let report = f.client.gpus().await.unwrap();
    let g1 = &report.gpus[1];
    assert_eq!(g1.holders.len(), 1);
    assert_eq!(g1.holders[0].job, Some(whole.id));
    assert_eq!(g1.holders[0].isolation, "exclusive");
    assert_eq!(g1.free_to_admit, 0);

    // A process that is not Petri's takes 10 GiB of GPU 0: a second 7 GiB slice no longer fits
    // anywhere (GPU 1 is held whole) and waits.
    write_gpus(&config, Some(10 * GIB));
    wait_for_report(&f, "the foreign process to be seen", |r| {
        r.gpus[0].holders.iter().any(|h| h.kind == "foreign")
    })
    .await;
    let blocked = f.submit(gated(&f, "go2", "7GiB")).await;
    let shown = f
        .wait_pending(&blocked, |r| {
            matches!(r, petri_domain::PendingReason::GpuMemory { .. })
        })
        .await;
    assert_eq!(shown.state, JobState::Queued, "{shown:?}");
    assert!(
        shown
            .pending
            .unwrap()
            .message
            .starts_with("waiting for GPU memory")
    );
    // The foreign process ends: the slice starts beside the first one.
    write_gpus(&config, None);
    f.wait_state(&blocked, |s| s == JobState::Running).await;
    std::fs::write(f.work().join("go2"), "").unwrap();
    std::fs::write(f.work().join("go3"), "").unwrap();
    for j in [&slice, &whole, &blocked] {
        assert_eq!(f.wait_done(j).await.state, JobState::Succeeded);
    }

    // A job whose process uses 9 GiB on its 7 GiB slice is flagged and, with enforce = "kill",
    // stopped and failed with that reason.
    let mut greedy = f.script("echo $$ > greedy.pid; while true; do sleep 0.05; done");
    greedy.resources.gpu_memory = Some(petri_domain::ByteSize(7 * GIB));
    let greedy = f.submit(greedy).await;
    let pid_file = f.work().join("greedy.pid");
    wait_until("the greedy job's pid", || {
        let p = pid_file.clone();
        async move { std::fs::read_to_string(&p).is_ok_and(|t| t.ends_with('\n')) }
    })
    .await;
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    write_gpus_with(&config, Some((pid, 9 * GIB)));
    let done = f.wait_done(&greedy).await;
    assert_eq!(done.state, JobState::Failed);
    let reason = done.reason.unwrap();
    assert!(reason.contains("more than its slice of 7GiB"), "{reason}");
    write_gpus(&config, None);

    // NVML reports GPU 1 lost: nothing starts on it (a third slice waits), until it is back.
    let mut lost = gpus_json(None);
    lost["gpus"][1]["lost"] = true.into();
    std::fs::write(&config, lost.to_string()).unwrap();
    wait_for_report(&f, "GPU 1 to be reported lost", |r| {
        r.gpus.len() == 2 && !r.gpus[1].healthy
    })
    .await;
    let three_slices = f
        .client
        .submit(&(0..3).map(|_| gated(&f, "go4", "7GiB")).collect::<Vec<_>>())
        .await
        .unwrap();
    f.wait_state(&three_slices[1], |s| s == JobState::Running)
        .await;
    let third = f
        .wait_pending(&three_slices[2], |r| {
            matches!(r, petri_domain::PendingReason::GpuMemory { .. })
        })
        .await;
    assert_eq!(third.state, JobState::Queued, "{third:?}");
    let report = f.client.gpus().await.unwrap();
    assert_eq!(report.gpus[0].holders.len(), 2);
    assert!(report.gpus[1].holders.is_empty());
    write_gpus(&config, None);
    f.wait_state(&three_slices[2], |s| s == JobState::Running)
        .await;
    let report = f.client.gpus().await.unwrap();
    assert_eq!(
        report.gpus[1].holders[0].job,
        Some(three_slices[2].id),
        "{report:?}"
    );
    std::fs::write(f.work().join("go4"), "").unwrap();
    for j in &three_slices {
        assert_eq!(f.wait_done(j).await.state, JobState::Succeeded);
    }

    // Requests no GPU here can hold are refused at submit, naming what fits.
    let mut huge = f.script("true");
    huge.resources.gpu_memory = Some(petri_domain::ByteSize(20 * GIB));
    let err = f.client.submit(&[huge]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ResourcesUnavailable));
    assert!(err.to_string().contains("on one GPU"), "{err}");
    let mut three = f.script("true");
    three.resources.gpus = Some(3);
    let err = f.client.submit(&[three]).await.unwrap_err();
    assert!(err.to_string().contains("2 whole GPUs"), "{err}");
}
