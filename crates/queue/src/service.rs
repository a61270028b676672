//! Service jobs: long-running jobs that serve something on a port (a notebook's Jupyter, a
//! model deployment). The shared parts live here so that every capability that runs a server gets
//! them the same way:
//!
//! - **endpoint lookup**: where the executor published the service's port, cached per attempt;
//! - **readiness**: an HTTP probe, and a watcher that asks until the service answers (or its job
//!   ends), so "ready" is announced without anyone looking;
//! - **restart with backoff** after a crash: a service job carries [`RESTART`] as its retries, so
//!   the queue starts it again (same reservation rules, doubling backoff) when it dies; a stop or
//!   a cull is a cancel, which is never retried;
//! - **idle culling**: a periodic round ([`Services::every`]) in which the capability decides
//!   what is idle (it knows what "activity" means) and stops it through the queue, which frees
//!   its reservation.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use petri_domain::{Job, JobId, JobState, Millis, Retries};

use crate::Queue;

/// How a service job is restarted after a crash: up to 5 times, 5 s, 10 s, 20 s... apart.
pub const RESTART: Retries = Retries {
    max: 5,
    backoff: Millis(5_000),
    exit_codes: Vec::new(),
};

/// What is known of one service beyond the database.
#[derive(Default)]
struct Live {
    /// The server (job, attempt) and where its port is published.
    endpoint: Option<(JobId, u32, SocketAddr)>,
    ready: bool,
    last_activity_ms: Option<i64>,
}

/// The live state of a capability's services (keyed by the capability's own name for each) and
/// an HTTP client to probe them.
pub struct Services {
    live: Mutex<HashMap<String, Live>>,
    http: Client<HttpConnector, Empty<Bytes>>,
}

impl Default for Services {
    fn default() -> Self {
        Services {
            live: Mutex::default(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

/// What a readiness watcher does after one look.
pub enum Watch {
    /// Ask again shortly.
    Again,
    /// Stop watching (ready, or gone).
    Done,
}

impl Services {
    /// Where `port` of the service's current attempt is reachable, cached until the attempt
    /// changes (a restarted service gets a fresh endpoint and must answer again).
    pub async fn endpoint(
        &self,
        queue: &Queue,
        key: &str,
        job: JobId,
        attempt: u32,
        port: u16,
    ) -> Option<SocketAddr> {
        if let Ok(live) = self.live.lock()
            && let Some((j, a, addr)) = live.get(key).and_then(|l| l.endpoint)
            && (j, a) == (job, attempt)
        {
            return Some(addr);
        }
        let addr = queue.endpoint(job, attempt, port).await?;
        if let Ok(mut live) = self.live.lock() {
            let l = live.entry(key.to_string()).or_default();
            if l.endpoint.is_some_and(|(j, a, _)| (j, a) != (job, attempt)) {
                *l = Live::default();
            }
            l.endpoint = Some((job, attempt, addr));
        }
        Some(addr)
    }

    /// Whether this attempt of the service has answered already.
    pub fn is_ready(&self, key: &str, job: JobId, attempt: u32) -> bool {
        self.live.lock().is_ok_and(|live| {
            live.get(key).is_some_and(|l| {
                l.ready && l.endpoint.is_some_and(|(j, a, _)| (j, a) == (job, attempt))
            })
        })
    }

    /// Notes that the service answered; true the first time (announce it then).
    pub fn mark_ready(&self, key: &str) -> bool {
        let Ok(mut live) = self.live.lock() else {
            return false;
        };
        let l = live.entry(key.to_string()).or_default();
        !std::mem::replace(&mut l.ready, true)
    }

    /// Forgets a service (stopped, or started afresh).
    pub fn forget(&self, key: &str) {
        if let Ok(mut live) = self.live.lock() {
            live.remove(key);
        }
    }

    pub fn last_activity(&self, key: &str) -> Option<i64> {
        self.live.lock().ok()?.get(key)?.last_activity_ms
    }
    pub fn set_last_activity(&self, key: &str, ms: i64) {
        if let Ok(mut live) = self.live.lock() {
            live.entry(key.to_string()).or_default().last_activity_ms = Some(ms);
        }
    }

    /// GETs `path_and_query` from a service with one header, and returns its JSON body. A
    /// service that does not answer within 3 s is not ready.
    pub async fn get_json(
        &self,
        addr: SocketAddr,
        path_and_query: &str,
        header: (&str, &str),
    ) -> Result<serde_json::Value, String> {
        let req = hyper::Request::get(format!("http://{addr}{path_and_query}"))
            .header(header.0, header.1)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(3), self.http.request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        let body = tokio::time::timeout(Duration::from_secs(3), resp.into_body().collect())
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }

    /// Watches a starting service job: while it waits, nothing is asked; once it runs, `look` is
    /// called every 250 ms until it says [`Watch::Done`], the job ends, or 30 minutes pass.
    pub fn watch_ready<F, Fut>(queue: Queue, job: JobId, mut look: F)
    where
        F: FnMut(Job) -> Fut + Send + 'static,
        Fut: Future<Output = Watch> + Send,
    {
        tokio::spawn(async move {
            let began = Instant::now();
            while began.elapsed() < Duration::from_secs(30 * 60) {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let Ok(j) = queue.stored_job(job).await else {
                    return;
                };
                match j.state {
                    JobState::Queued | JobState::Held => continue,
                    JobState::Running => {}
                    _ => return,
                }
                if let Watch::Done = look(j).await {
                    return;
                }
            }
        });
    }

    /// Runs `round` every `every` for as long as `owner` lives (idle culling).
    pub fn every<T, F, Fut>(every: Duration, owner: Weak<T>, mut round: F)
    where
        T: Send + Sync + 'static,
        F: FnMut(std::sync::Arc<T>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        if every.is_zero() {
            return;
        }
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(owner) = owner.upgrade() else { break };
                round(owner).await;
            }
        });
    }
}
