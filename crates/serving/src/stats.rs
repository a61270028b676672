//! What the daemon sees of each deployment's traffic, recorded as it forwards requests: counts
//! by outcome, a latency histogram and the sizes of the batches requests ran in (the replica
//! says, in a response header), in Prometheus' format for `/metrics`; and a short live window
//! (per-second counts, recent latencies) for the web UI's charts.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    deployment: String,
    /// `2xx`, `4xx`, `5xx`.
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Named {
    deployment: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    ])
}

fn batch_histogram() -> Histogram {
    Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0])
}

/// One deployment's metrics (clones of the families' entries, so a request needs no label
/// lookup) and its last minute, second by second, and the last requests' latencies.
struct Window {
    /// 2xx, 4xx, 5xx.
    outcomes: [Counter; 3],
    latency: Histogram,
    batches: Histogram,
    /// (second since the epoch, requests, refused (4xx), failed (5xx))
    seconds: VecDeque<(i64, u64, u64, u64)>,
    /// (second, latency) of the last requests.
    latencies_us: VecDeque<(i64, u64)>,
    batch_rows: VecDeque<(i64, u64)>,
}

const SECONDS_KEPT: usize = 60;
const LATENCIES_KEPT: usize = 2000;

/// One deployment's live numbers (`GET /api/v1/deployments/{name}/stats`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeploymentStats {
    /// Requests in the last 10 seconds, per second.
    pub rate: f64,
    /// Of the last minute's requests (up to 2,000 of them): median and 99th percentile, in
    /// milliseconds; none when there were none.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The mean rows of the batches the last minute's requests ran in.
    pub mean_batch_rows: Option<f64>,
    /// The last minute, one entry per second that saw requests.
    pub seconds: Vec<SecondStats>,
}

/// One second of inference requests (`infer`, `invocations`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SecondStats {
    /// Seconds since the epoch.
    pub t: i64,
    /// Every inference request.
    pub requests: u64,
    /// Of them, refused as the caller's mistake (4xx: a bad tensor, a wrong token).
    pub refused: u64,
    /// Of them, failed on Petri's side (5xx: no replica ready, a replica that did not answer).
    pub errors: u64,
}

/// The traffic of every deployment.
pub struct Stats {
    registry: Registry,
    requests: Family<Outcome, Counter>,
    latency: Family<Named, Histogram, fn() -> Histogram>,
    batches: Family<Named, Histogram, fn() -> Histogram>,
    windows: Mutex<HashMap<String, Window>>,
}

impl Default for Stats {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("petri_serving");
        let requests = Family::<Outcome, Counter>::default();
        let latency =
            Family::<Named, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let batches =
            Family::<Named, Histogram, fn() -> Histogram>::new_with_constructor(batch_histogram);
        registry.register(
            "requests",
            "Inference requests forwarded to a deployment, by outcome",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Inference requests' time in the daemon, forwarding included",
            latency.clone(),
        );
        registry.register(
            "batch_rows",
            "Rows of the batch each request ran in (dynamic batching)",
            batches.clone(),
        );
        Stats {
            registry,
            requests,
            latency,
            batches,
            windows: Mutex::default(),
        }
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    Some(sorted[i] as f64 / 1000.0)
}

impl Stats {
    /// One forwarded request: its HTTP status, its time, and its batch's rows (when the
    /// replica said).
    pub fn record(&self, deployment: &str, status: u16, took: Duration, batch_rows: Option<u64>) {
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        if !windows.contains_key(deployment) {
            windows.insert(deployment.to_string(), self.window(deployment));
        }
        let Some(w) = windows.get_mut(deployment) else {
            return;
        };
        let outcome = match status {
            200..=299 => 0,
            400..=499 => 1,
            _ => 2,
        };
        w.outcomes[outcome].inc();
        w.latency.observe(took.as_secs_f64());
        if let Some(rows) = batch_rows {
            w.batches.observe(rows as f64);
        }
        let now = now_s();
        let refused = u64::from((400..500).contains(&status));
        let error = u64::from(status >= 500);
        match w.seconds.back_mut() {
            Some((t, n, r, e)) if *t == now => {
                *n += 1;
                *r += refused;
                *e += error;
            }
            _ => w.seconds.push_back((now, 1, refused, error)),
        }
        while w
            .seconds
            .front()
            .is_some_and(|(t, ..)| *t <= now - SECONDS_KEPT as i64)
        {
            w.seconds.pop_front();
        }
        w.latencies_us.push_back((now, took.as_micros() as u64));
        if w.latencies_us.len() > LATENCIES_KEPT {
            w.latencies_us.pop_front();
        }
        if let Some(rows) = batch_rows {
            w.batch_rows.push_back((now, rows));
            if w.batch_rows.len() > LATENCIES_KEPT {
                w.batch_rows.pop_front();
            }
        }
    }

    /// A new deployment's window, its metrics registered.
    fn window(&self, deployment: &str) -> Window {
        let outcome = |code: &str| {
            self.requests
                .get_or_create(&Outcome {
                    deployment: deployment.to_string(),
                    code: code.into(),
                })
                .clone()
        };
        let named = Named {
            deployment: deployment.to_string(),
        };
        Window {
            outcomes: [outcome("2xx"), outcome("4xx"), outcome("5xx")],
            latency: self.latency.get_or_create(&named).clone(),
            batches: self.batches.get_or_create(&named).clone(),
            seconds: VecDeque::new(),
            latencies_us: VecDeque::new(),
            batch_rows: VecDeque::new(),
        }
    }

    /// A deployment's live numbers.
    pub fn summary(&self, deployment: &str) -> DeploymentStats {
        let Ok(windows) = self.windows.lock() else {
            return DeploymentStats::default();
        };
        let Some(w) = windows.get(deployment) else {
            return DeploymentStats::default();
        };
        let now = now_s();
        let fresh = |t: i64| t > now - SECONDS_KEPT as i64;
        let recent: u64 = w
            .seconds
            .iter()
            .filter(|(t, ..)| *t > now - 10)
            .map(|(_, n, ..)| n)
            .sum();
        let mut sorted: Vec<u64> = w
            .latencies_us
            .iter()
            .filter(|(t, _)| fresh(*t))
            .map(|(_, l)| *l)
            .collect();
        sorted.sort_unstable();
        let batches: Vec<u64> = w
            .batch_rows
            .iter()
            .filter(|(t, _)| fresh(*t))
            .map(|(_, r)| *r)
            .collect();
        let mean_batch_rows = (!batches.is_empty())
            .then(|| batches.iter().sum::<u64>() as f64 / batches.len() as f64);
        DeploymentStats {
            rate: recent as f64 / 10.0,
            p50_ms: percentile(&sorted, 0.5),
            p99_ms: percentile(&sorted, 0.99),
            mean_batch_rows,
            seconds: w
                .seconds
                .iter()
                .filter(|(t, ..)| fresh(*t))
                .map(|&(t, requests, refused, errors)| SecondStats {
                    t,
                    requests,
                    refused,
                    errors,
                })
                .collect(),
        }
    }

    /// Forgets an unserved deployment's window (its counters stay, as counters do).
    pub fn forget(&self, deployment: &str) {
        if let Ok(mut w) = self.windows.lock() {
            w.remove(deployment);
        }
    }

    /// The metrics in Prometheus' text format, without the closing `# EOF` (the daemon joins
    /// them with the queue's).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut out, &self.registry).is_err() {
            return String::new();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_timed_and_summarised() {
        let s = Stats::default();
        for i in 0..100u64 {
            s.record("iris", 200, Duration::from_micros(1000 + i * 10), Some(4));
        }
        s.record("iris", 503, Duration::from_micros(50), None);
        s.record("iris", 400, Duration::from_micros(50), None);
        let sum = s.summary("iris");
        assert!((sum.rate - 10.2).abs() < 1e-9, "{sum:?}");
        assert_eq!(sum.seconds.iter().map(|x| x.errors).sum::<u64>(), 1);
        assert_eq!(sum.seconds.iter().map(|x| x.refused).sum::<u64>(), 1);
        assert!(
            sum.p50_ms.unwrap() > 1.0 && sum.p99_ms.unwrap() < 2.0,
            "{sum:?}"
        );
        assert_eq!(sum.mean_batch_rows, Some(4.0));
        let text = s.render();
        assert!(
            text.contains("petri_serving_requests_total{deployment=\"iris\",code=\"2xx\"} 100"),
            "{text}"
        );
        assert!(text.contains("petri_serving_batch_rows_bucket"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        assert_eq!(s.summary("other"), DeploymentStats::default());
    }
}
