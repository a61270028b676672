//! MIG instances with the fake NVML: one plain GPU and one in MIG mode.

mod helpers;

use helpers::{Fixture, wait_until};
use petri_domain::{ErrorCode, JobState};

const GIB: u64 = 1 << 30;

#[tokio::test(flavor = "multi_thread")]
async fn mig_instances_are_reserved_whole_and_addressed_by_their_uuid() {
    let json = serde_json::json!({"gpus": [
        {"uuid": "GPU-plain", "memory_total": 16 * GIB},
        {"name": "Fake A100", "uuid": "GPU-mig", "memory_total": 40 * GIB, "mig": [
            {"uuid": "MIG-aaaa", "profile": "1g.10gb", "memory_total": 10 * GIB},
            {"uuid": "MIG-bbbb", "profile": "1g.10gb", "memory_total": 10 * GIB},
            {"uuid": "MIG-cccc", "profile": "2g.20gb", "memory_total": 20 * GIB}
        ]}
    ]});
    let Some(fake) = helpers::FakeGpus::new(json) else {
        return;
    };
    let f = Fixture::start(&format!(
        "[capacity]\ncpus = 16\n[gpu]\nnvml_path = \"{}\"\nsample_every = \"100ms\"\n",
        fake.lib.display()
    ))
    .await;
    let mut spec = f.script(
        "echo \"$CUDA_VISIBLE_DEVICES $PETRI_GPU_ISOLATION\" > \"$PETRI_OUTPUT_DIR/cvd\"; \
         while [ ! -f go ]; do sleep 0.02; done",
    );
    spec.resources.mig = Some("1g.10gb".into());
    let jobs = f
        .client
        .submit(&[spec.clone(), spec.clone(), spec])
        .await
        .unwrap();
    f.wait_running(2).await;
    let mut seen = Vec::new();
    for j in &jobs[..2] {
        let path = f.home().join("outputs").join(j.id.to_string()).join("cvd");
        wait_until("the job to write what it sees", || {
            let path = path.clone();
            async move { std::fs::read_to_string(&path).is_ok_and(|t| t.ends_with('\n')) }
        })
        .await;
        seen.push(std::fs::read_to_string(&path).unwrap().trim().to_string());
    }
    seen.sort();
    assert_eq!(seen, ["MIG-aaaa mig", "MIG-bbbb mig"]);
    let third = f.client.job(&jobs[2].id.to_string()).await.unwrap();
    assert_eq!(third.state, JobState::Queued);
    assert_eq!(
        third.pending.unwrap().message,
        "waiting for a free MIG instance of its profile"
    );
    let report = f.client.gpus().await.unwrap();
    let mig_gpu = report.gpus.iter().find(|g| g.uuid == "GPU-mig").unwrap();
    assert_eq!(mig_gpu.holders.len(), 2);
    assert!(
        mig_gpu
            .holders
            .iter()
            .all(|h| h.isolation == "mig" && h.reserved == 10 * GIB)
    );
    assert_eq!(mig_gpu.free_to_admit, 0, "slices never go to a MIG GPU");

    // A profile no GPU offers is refused, naming those that exist.
    let mut wrong = f.script("true");
    wrong.resources.mig = Some("7g.80gb".into());
    let err = f.client.submit(&[wrong]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ResourcesUnavailable));
    assert!(err.to_string().contains("1g.10gb, 2g.20gb"), "{err}");

    std::fs::write(f.work().join("go"), "").unwrap();
    for j in &jobs {
        assert_eq!(f.wait_done(j).await.state, JobState::Succeeded);
    }
}
