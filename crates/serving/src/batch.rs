//! Dynamic batching: requests featurized on their own (so a bad row fails its own request
//! alone), then their feature vectors queued; one worker runs the network on whatever has
//! gathered, up to `max_batch` rows, waiting at most `max_delay` after the first for more.
//! One matrix product per layer serves many requests.

use std::sync::Arc;
use std::time::Duration;

pub use petri_ml::{Device, reserved_device};
use petri_ml::{MlError, Mlp, Prediction, Rows};
use tokio::sync::{mpsc, oneshot};

/// Batching limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// The most rows one run of the network takes (1: no batching).
    pub max_batch: usize,
    /// How long the first request of a batch waits for others.
    pub max_delay: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_batch: 64,
            max_delay: Duration::from_millis(2),
        }
    }
}

/// A batch's answer to one request: its rows' probabilities and the batch's size in rows.
type Answer = Result<(Vec<Vec<f32>>, usize), String>;

struct Pending {
    features: Vec<f32>,
    rows: usize,
    /// The probabilities, and how many rows the batch that ran them held.
    answer: oneshot::Sender<Answer>,
}

/// A model behind a batching queue. Cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    model: Arc<Mlp>,
    queue: mpsc::Sender<Pending>,
    /// Called with each batch's size in rows (for the metrics).
    _limits: BatchLimits,
}

impl Batcher {
    /// Starts the worker (on the current Tokio runtime; the network runs on a blocking thread).
    pub fn start(
        model: Arc<Mlp>,
        limits: BatchLimits,
        on_batch: impl Fn(usize) + Send + 'static,
    ) -> Batcher {
        let (tx, rx) = mpsc::channel::<Pending>(1024);
        tokio::spawn(work(model.clone(), limits, rx, on_batch));
        Batcher {
            model,
            queue: tx,
            _limits: limits,
        }
    }

    /// The model.
    pub fn model(&self) -> &Mlp {
        &self.model
    }

    /// Each row's class and probabilities, batched with whatever else is waiting; and how many
    /// rows the batch held.
    pub async fn predict(
        &self,
        rows: &(dyn Rows + Sync),
    ) -> Result<(Vec<Prediction>, usize), MlError> {
        let n = rows.len();
        if n == 0 {
            return Ok((Vec::new(), 0));
        }
        let features = self.model.featurize(rows)?;
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(Pending {
                features,
                rows: n,
                answer: tx,
            })
            .await
            .map_err(|_| MlError::Compute("the batching worker has stopped".into()))?;
        let (probabilities, batch) = rx
            .await
            .map_err(|_| MlError::Compute("the batching worker dropped the request".into()))?
            .map_err(MlError::Compute)?;
        Ok((self.model.label(probabilities), batch))
    }
}

async fn work(
    model: Arc<Mlp>,
    limits: BatchLimits,
    mut rx: mpsc::Receiver<Pending>,
    on_batch: impl Fn(usize) + Send + 'static,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let mut rows = batch[0].rows;
        let deadline = tokio::time::Instant::now() + limits.max_delay;
        while rows < limits.max_batch {
            // What is already queued joins at once; then wait out the delay for more.
            let next = match rx.try_recv() {
                Ok(p) => Some(p),
                Err(mpsc::error::TryRecvError::Empty) if !limits.max_delay.is_zero() => {
                    tokio::time::timeout_at(deadline, rx.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(_) => None,
            };
            match next {
                Some(p) => {
                    rows += p.rows;
                    batch.push(p);
                }
                None => break,
            }
        }
        on_batch(rows);
        let features: Vec<f32> = batch
            .iter()
            .flat_map(|p| p.features.iter().copied())
            .collect();
        let m = model.clone();
        let out = tokio::task::spawn_blocking(move || m.probabilities(features, rows))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match out {
            Ok(mut all) => {
                for p in batch {
                    let rest = all.split_off(p.rows);
                    let _ = p.answer.send(Ok((std::mem::replace(&mut all, rest), rows)));
                }
            }
            Err(e) => {
                for p in batch {
                    let _ = p.answer.send(Err(e.clone()));
                }
            }
        }
    }
}
