//! Slices on an MPS GPU: Petri starts the MPS control daemon for it and gives each slice the
//! settings that make the driver enforce it. There is no GPU (and no MPS) on the machines these
//! tests run on, so the control program is a stand-in that records how it was started; what this
//! checks is Petri's side of the contract. The real thing is for a machine with a GPU.

mod helpers;

use helpers::Fixture;
use petri_domain::JobState;
use std::os::unix::fs::PermissionsExt;

const GIB: u64 = 1 << 30;

#[tokio::test(flavor = "multi_thread")]
async fn slices_on_an_mps_gpu_get_driver_limits() {
    let Some(fake) = helpers::FakeGpus::new(serde_json::json!({"gpus": [
        {"uuid": "GPU-mps", "memory_total": 16 * GIB},
        {"uuid": "GPU-plain", "memory_total": 24 * GIB}
    ]})) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("mps-control");
    let calls = dir.path().join("calls");
    std::fs::write(
        &control,
        format!(
            "#!/bin/sh\necho \"$1 $CUDA_VISIBLE_DEVICES\" >> {}\ntouch \"$CUDA_MPS_PIPE_DIRECTORY/control\"\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = Fixture::start(&format!(
        "[capacity]\ncpus = 16\n[gpu]\nnvml_path = \"{}\"\nsample_every = \"100ms\"\nmps = [0]\nmps_control = \"{}\"\n",
        fake.lib.display(),
        control.display()
    ))
    .await;
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "-d GPU-mps\n");

    let mut spec = f.script(
        "env | grep -E '^(CUDA_MPS_|PETRI_GPU_ISOLATION)' | sort > \"$PETRI_OUTPUT_DIR/env\"",
    );
    spec.resources.gpu_memory = Some(petri_domain::ByteSize(6 * GIB));
    spec.resources.gpu_compute = Some("30%".into());
    let job = f.submit(spec).await;
    assert_eq!(f.wait_done(&job).await.state, JobState::Succeeded);
    let env = f.output(&job, "env");
    let pipe = f.home().join("mps/0/pipe");
    assert_eq!(
        env,
        format!(
            "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=30\nCUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=6144M\n\
             CUDA_MPS_PIPE_DIRECTORY={}\nPETRI_GPU_ISOLATION=mps-enforced\n",
            pipe.display()
        )
    );

    // A container slice on the MPS GPU reaches the server: the pipe folder is bound in at the same
    // path and the container shares the host's IPC namespace (MPS clients use its shared memory).
    if let Some(image) = helpers::docker_image() {
        let mut spec = f.script(
            "test -e \"$CUDA_MPS_PIPE_DIRECTORY/control\" && echo pipe; \
             readlink /proc/self/ns/ipc; echo \"$PETRI_GPU_ISOLATION\"",
        );
        spec.image = Some(image);
        spec.resources.gpu_memory = Some(petri_domain::ByteSize(4 * GIB));
        let job = f.submit(spec).await;
        let done = f.wait_done(&job).await;
        assert_eq!(done.state, JobState::Succeeded, "{:?}", done.reason);
        let (log, _, _) = f.client.log(&job.id.to_string(), 0).await.unwrap();
        let host_ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
        // (Without the NVIDIA runtime, as here, the log starts with Petri's note saying so.)
        let log = String::from_utf8(log).unwrap();
        let job_lines: Vec<&str> = log.lines().filter(|l| !l.starts_with("petri: ")).collect();
        assert_eq!(
            job_lines,
            ["pipe", host_ipc.to_str().unwrap(), "mps-enforced"],
            "{log}"
        );

        // A slice on the other GPU keeps its own IPC namespace and gets no pipe folder.
        let mut spec = f.script(
            "readlink /proc/self/ns/ipc; echo \"${CUDA_MPS_PIPE_DIRECTORY:-none} $PETRI_GPU_ISOLATION\"",
        );
        spec.image = Some(helpers::docker_image().unwrap());
        spec.resources.gpu_memory = Some(petri_domain::ByteSize(20 * GIB));
        let job = f.submit(spec).await;
        let done = f.wait_done(&job).await;
        assert_eq!(done.state, JobState::Succeeded, "{:?}", done.reason);
        let (log, _, _) = f.client.log(&job.id.to_string(), 0).await.unwrap();
        let log = String::from_utf8(log).unwrap();
        let job_lines: Vec<&str> = log.lines().filter(|l| !l.starts_with("petri: ")).collect();
        assert_eq!(job_lines.len(), 2, "{log}");
        assert_ne!(job_lines[0], host_ipc.to_str().unwrap());
        assert_eq!(job_lines[1], "none shared-unenforced");
        assert!(helpers::containers_of(f.home()).is_empty());
    }

    // A gpu_compute without a slice is refused.
    let mut bad = f.script("true");
    bad.resources.gpu_compute = Some("30%".into());
    assert!(f.client.submit(&[bad]).await.is_err());
}
