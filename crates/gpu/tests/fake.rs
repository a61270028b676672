//! The real nvml-wrapper code against the project's fake libnvidia-ml (crates/fake-nvml).

use std::path::PathBuf;

use petri_gpu::Inventory;

/// The fake library next to this test binary's folder (`cargo build -p petri-fake-nvml`).
fn fake_lib() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let lib = exe.parent()?.parent()?.join("libnvidia_ml.so");
    lib.exists().then_some(lib)
}

#[test]
fn inventory_reads_gpus_processes_and_loss_from_the_fake() {
    let Some(lib) = fake_lib() else {
        assert!(
            std::env::var("CI").is_err(),
            "the fake NVML library was not built; run `cargo build -p petri-fake-nvml`"
        );
        eprintln!(
            "SKIPPED: the fake NVML library was not built (run `cargo build -p petri-fake-nvml`)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gpus.json");
    let write = |lost: bool| {
        let json = serde_json::json!({"gpus": [
            {"uuid": "GPU-aaaa", "memory_total": 16u64 << 30, "utilization": 30,
             "processes": [{"pid": 4242, "used_memory": 10u64 << 30}]},
            {"uuid": "GPU-bbbb", "memory_total": 16u64 << 30, "lost": lost}
        ]});
        std::fs::write(&config, json.to_string()).unwrap();
    };
    write(false);
    // SAFETY: the test sets the variable before any thread reads it.
    unsafe { std::env::set_var("PETRI_FAKE_NVML", &config) };
    let mut inv = Inventory::open(Some(&lib));
    assert!(inv.status().available, "{:?}", inv.status());
    let gpus = inv.sample();
    assert_eq!(gpus.len(), 2);
    assert_eq!(gpus[0].uuid, "GPU-aaaa");
    assert_eq!(gpus[0].memory_total, 16 << 30);
    assert_eq!(gpus[0].memory_used, 10 << 30);
    assert_eq!(gpus[0].utilization, 30);
    assert_eq!(gpus[0].processes[0].pid, 4242);
    assert!(gpus.iter().all(|g| g.healthy));
    // GPU 1 is lost: reported unhealthy, with what was known; NVML is re-opened and it comes back.
    write(true);
    let gpus = inv.sample();
    assert!(gpus[0].healthy && !gpus[1].healthy);
    write(false);
    let gpus = inv.sample();
    assert!(gpus.iter().all(|g| g.healthy), "{gpus:?}");
}

#[test]
fn no_library_means_cpu_only_with_a_reason() {
    let inv = Inventory::open(Some(std::path::Path::new("/nonexistent/libnvidia-ml.so.1")));
    assert!(!inv.status().available);
    assert!(inv.status().reason.as_ref().unwrap().contains("CPU-only"));
}
