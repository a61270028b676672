//! Backfill by time limits in one daemon, with the fake NVML describing one 16 GiB GPU: a
//! whole-GPU job keeps the GPU it waits for, and only jobs whose time limit ends them before the
//! running jobs' limits free it may use it meanwhile.

mod helpers;

use helpers::Fixture;
use petri_domain::{JobSpec, JobState, Millis};

const GIB: u64 = 1 << 30;
const MINUTE: u64 = 60_000;

fn slice(f: &Fixture, gate: &str, gib: u64, limit_minutes: Option<u64>) -> JobSpec {
    let mut spec = f.script(&format!("while [ ! -f {gate} ]; do sleep 0.02; done"));
    spec.resources.gpu_memory = Some(petri_domain::ByteSize(gib * GIB));
    spec.timeout = limit_minutes.map(|m| Millis(m * MINUTE));
    spec
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_with_time_limits_use_a_gpu_kept_for_a_whole_gpu_job() {
    let Some(fake) = helpers::FakeGpus::new(
        serde_json::json!({"gpus": [{"uuid": "GPU-one", "memory_total": 16 * GIB}]}),
    ) else {
        return;
    };
    let f = Fixture::start(&format!(
        "[capacity]\ncpus = 16\n[gpu]\nnvml_path = \"{}\"\nreserve = \"0\"\nclaim_after = \"0s\"\n",
        fake.lib.display()
    ))
    .await;

    // An 8 GiB slice limited to an hour holds the GPU.
    let first = f.submit(slice(&f, "go", 8, Some(60))).await;
    f.wait_state(&first, |s| s == JobState::Running).await;
    // A whole-GPU job waits for it; behind it, a slice limited to ten minutes, one without a
    // limit, and one limited to two hours.
    let mut whole = f.script("true");
    whole.resources.gpus = Some(1);
    let jobs = f
        .client
        .submit(&[
            whole,
            slice(&f, "go", 4, Some(10)),
            slice(&f, "go", 2, None),
            slice(&f, "go", 2, Some(120)),
        ])
        .await
        .unwrap();
    let (whole, short, unlimited, long) = (&jobs[0], &jobs[1], &jobs[2], &jobs[3]);
    f.wait_state(short, |s| s == JobState::Running).await;
    // The waiting slices are told which time limit would let them in (under 60m, less the time
    // since the first one started and the kill grace).
    let shown = f.client.job(&unlimited.id.to_string()).await.unwrap();
    let message = shown.pending.unwrap().message;
    assert!(
        message.starts_with(
            "waiting for a GPU kept for a job ahead in line; a timeout of at most 59m"
        ),
        "{message}"
    );
    for waits in [whole, unlimited, long] {
        let job = f.client.job(&waits.id.to_string()).await.unwrap();
        assert_eq!(job.state, JobState::Queued, "{}", job.number);
        let pending = job.pending.expect("a pending reason");
        assert!(
            pending.message.starts_with("waiting for") && pending.message.contains("GPU"),
            "{}",
            pending.message
        );
    }
    // The GPU report says whom the GPU drains for, and until when the time limits keep it busy.
    let report = f.client.gpus().await.unwrap();
    let kept = report.gpus[0].kept_for.as_ref().expect("GPU 0 is kept");
    assert_eq!(kept.number, whole.number);
    let first_started = f.client.job(&first.id.to_string()).await.unwrap();
    let grace = 10_000; // the default kill grace
    assert_eq!(
        kept.until_ms,
        Some(first_started.started_at_ms.unwrap() + 60 * MINUTE as i64 + grace)
    );
    // When the GPU empties, the whole-GPU job starts first, then the others.
    std::fs::write(f.work().join("go"), "").unwrap();
    for j in std::iter::once(&first).chain(&jobs) {
        assert_eq!(f.wait_done(j).await.state, JobState::Succeeded);
    }
    let started = |j: &petri_domain::Job| {
        let (f, id) = (&f, j.id.to_string());
        async move { f.client.job(&id).await.unwrap().started_at_ms.unwrap() }
    };
    let whole_started = started(whole).await;
    assert!(whole_started <= started(unlimited).await);
    assert!(whole_started <= started(long).await);
}
