//! Prometheus metrics, in the text format on `/metrics`.

use std::sync::atomic::AtomicU64;

use petri_domain::JobState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuLabel {
    pub gpu: String,
    pub uuid: String,
}

pub struct Metrics {
    registry: Registry,
    pub queued: Gauge,
    pub running: Gauge,
    pub finished: Family<StateLabel, Counter>,
    pub submitted: Counter,
    /// Seconds from when a job could first start (submission or end of backoff) to its start.
    pub scheduling_latency: Histogram,
    pub loop_iterations: Counter<u64, AtomicU64>,
    pub gpu_memory_total: Family<GpuLabel, Gauge>,
    pub gpu_memory_used: Family<GpuLabel, Gauge>,
    pub gpu_memory_reserved: Family<GpuLabel, Gauge>,
    pub gpu_utilization: Family<GpuLabel, Gauge>,
    pub gpu_healthy: Family<GpuLabel, Gauge>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("petri");
        let queued = Gauge::default();
        let running = Gauge::default();
        let finished = Family::<StateLabel, Counter>::default();
        let submitted = Counter::default();
        let scheduling_latency = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
        ]);
        let loop_iterations = Counter::default();
        registry.register(
            "jobs_queued",
            "Jobs waiting to start (queue depth)",
            queued.clone(),
        );
        registry.register("jobs_running", "Jobs running now", running.clone());
        registry.register(
            "jobs_finished",
            "Jobs that reached a final state",
            finished.clone(),
        );
        registry.register("jobs_submitted", "Jobs accepted", submitted.clone());
        registry.register(
            "scheduling_latency_seconds",
            "Time from a job becoming eligible to its start",
            scheduling_latency.clone(),
        );
        registry.register(
            "engine_iterations",
            "Scheduler loop iterations",
            loop_iterations.clone(),
        );
        let gpu_memory_total = Family::<GpuLabel, Gauge>::default();
        let gpu_memory_used = Family::<GpuLabel, Gauge>::default();
        let gpu_memory_reserved = Family::<GpuLabel, Gauge>::default();
        let gpu_utilization = Family::<GpuLabel, Gauge>::default();
        let gpu_healthy = Family::<GpuLabel, Gauge>::default();
        registry.register(
            "gpu_memory_total_bytes",
            "GPU memory",
            gpu_memory_total.clone(),
        );
        registry.register(
            "gpu_memory_used_bytes",
            "GPU memory in use (NVML)",
            gpu_memory_used.clone(),
        );
        registry.register(
            "gpu_memory_reserved_bytes",
            "GPU memory reserved by Petri's jobs",
            gpu_memory_reserved.clone(),
        );
        registry.register(
            "gpu_utilization_percent",
            "GPU utilisation",
            gpu_utilization.clone(),
        );
        registry.register(
            "gpu_healthy",
            "1 when NVML answers for the GPU",
            gpu_healthy.clone(),
        );
        Metrics {
            registry,
            gpu_memory_total,
            gpu_memory_used,
            gpu_memory_reserved,
            gpu_utilization,
            gpu_healthy,
            queued,
            running,
            finished,
            submitted,
            scheduling_latency,
            loop_iterations,
        }
    }

    pub fn finished(&self, state: JobState) {
        self.finished
            .get_or_create(&StateLabel {
                state: state.as_str().to_string(),
            })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
