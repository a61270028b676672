//! Dynamic batching: requests featurized on their own (so a bad row fails its own request
//! alone), then their feature vectors queued; a worker hands whatever has gathered, up to
//! `max_batch` rows, to an [`Engine`], waiting at most `max_delay` after the first for more
//! (with no delay, a batch is what queued while the engine was busy). One matrix product per
//! layer serves many requests.
//!
//! The engine is the network itself on a blocking thread ([`Local`], in a replica), or a
//! replica reached over HTTP (in the daemon, `deploy::Remote`): batching before that hop makes
//! its cost one exchange per batch, not per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use petri_ml::onnx::Output;
pub use petri_ml::{Device, reserved_device};
use petri_ml::{MlError, Mlp, OnnxModel};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Batching limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// The most rows one run of the network takes (1: no batching).
    pub max_batch: usize,
    /// How long the first request of a batch waits for others (zero: it takes what queued while
    /// the engine was busy, and waits for nothing).
    pub max_delay: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_batch: 64,
            max_delay: Duration::ZERO,
        }
    }
}

/// Why an engine did not answer a batch.
#[derive(Clone, Debug)]
pub enum RunError {
    /// The computation failed (a bug or a device fault).
    Failed(String),
    /// Nothing could run it now (no replica ready, one that died): worth asking again.
    Unavailable(String),
}

/// What a batch gave, one vector per row (for Petri's format, the class probabilities).
pub type Ran = Pin<Box<dyn Future<Output = Result<Vec<Vec<f32>>, RunError>> + Send>>;

/// What runs a batch of rows.
pub trait Engine: Send + Sync + 'static {
    /// The answers to `rows` rows (`rows × width` numbers, row after row), one vector a row.
    fn run(&self, features: Vec<f32>, rows: usize) -> Ran;
    /// How many batches may run at once.
    fn parallel(&self) -> usize {
        1
    }
}

/// The network in this process: a batch that costs little (under [`INLINE_COST`]
/// multiply-adds, microseconds) is computed where it is, without a hand-off to another thread;
/// a larger one on a blocking thread, so that the server keeps answering meanwhile.
pub struct Local(pub Arc<Mlp>);

/// The most multiply-adds a batch computed inline may take.
pub const INLINE_COST: usize = 250_000;

impl Engine for Local {
    fn run(&self, features: Vec<f32>, rows: usize) -> Ran {
        let m = self.0.clone();
        if m.cost(rows) <= INLINE_COST {
            let out = m
                .probabilities(features, rows)
                .map_err(|e| RunError::Failed(e.to_string()));
            return Box::pin(std::future::ready(out));
        }
        Box::pin(async move {
            tokio::task::spawn_blocking(move || m.probabilities(features, rows))
                .await
                .map_err(|e| RunError::Failed(e.to_string()))?
                .map_err(|e| RunError::Failed(e.to_string()))
        })
    }
}

/// An ONNX graph that computes each row on its own ([`OnnxModel::row_shapes`]) in this process:
/// a row's answer is its slice of every output ([`petri_ml::GraphIo::split_rows`]). Inline when
/// it costs little, as [`Local`] does.
pub struct Graph {
    pub graph: Arc<OnnxModel>,
}

impl Graph {
    /// `None` when the graph does not compute its rows apart.
    pub fn new(graph: Arc<OnnxModel>) -> Option<Graph> {
        graph.row_shapes()?;
        Some(Graph { graph })
    }

    fn rows_of(
        graph: &OnnxModel,
        out: Result<Vec<Output>, MlError>,
        rows: usize,
    ) -> Result<Vec<Vec<f32>>, RunError> {
        out.and_then(|out| graph.io().split_rows(out, rows))
            .map_err(|e| RunError::Failed(e.to_string()))
    }
}

impl Engine for Graph {
    fn run(&self, features: Vec<f32>, rows: usize) -> Ran {
        let g = self.graph.clone();
        if g.cost(rows) <= INLINE_COST {
            let out = Graph::rows_of(&g, g.run(features, rows), rows);
            return Box::pin(std::future::ready(out));
        }
        Box::pin(async move {
            let run = g.clone();
            let out = tokio::task::spawn_blocking(move || run.run(features, rows))
                .await
                .map_err(|e| RunError::Failed(e.to_string()))?;
            Graph::rows_of(&g, out, rows)
        })
    }
}

/// A batch's answer to one request: its rows' probabilities and the batch's size in rows.
type Answer = Result<(Vec<Vec<f32>>, usize), RunError>;

struct Pending {
    features: Vec<f32>,
    rows: usize,
    /// The probabilities, and how many rows the batch that ran them held.
    answer: oneshot::Sender<Answer>,
}

/// An engine behind a batching queue: rows of `width` numbers in, one vector per row out.
/// Cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    /// The numbers in a row.
    width: usize,
    engine: Arc<dyn Engine>,
    /// The engine's slots ([`Engine::parallel`]), shared by the queue's batches and the batches
    /// run at once, so that the engine never runs more than it says it can.
    slots: Arc<Semaphore>,
    queue: mpsc::Sender<Pending>,
    /// Requests queued or running.
    pending: Arc<AtomicUsize>,
}

/// Why a request was not answered.
#[derive(Debug)]
pub enum PredictError {
    Model(MlError),
    Run(RunError),
}

impl From<MlError> for PredictError {
    fn from(e: MlError) -> Self {
        PredictError::Model(e)
    }
}

impl Batcher {
    /// Starts the worker on the current Tokio runtime, for rows of `width` numbers.
    pub fn start(
        width: usize,
        engine: Arc<dyn Engine>,
        limits: BatchLimits,
        on_batch: impl Fn(usize) + Send + 'static,
    ) -> Batcher {
        let (tx, rx) = mpsc::channel::<Pending>(4096);
        let slots = Arc::new(Semaphore::new(engine.parallel().max(1)));
        tokio::spawn(work(engine.clone(), slots.clone(), limits, rx, on_batch));
        Batcher {
            width,
            engine,
            slots,
            queue: tx,
            pending: Arc::default(),
        }
    }

    /// How many requests are queued or running.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// The probabilities of `rows` feature vectors that already are a batch (the daemon's front
    /// formed it): run at once, past the queue.
    pub async fn run_formed(
        &self,
        features: Vec<f32>,
        rows: usize,
    ) -> Result<Vec<Vec<f32>>, PredictError> {
        self.check_width(&features, rows)?;
        let _pending = Counted::enter(&self.pending);
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| MlError::Compute("the model is closing".into()))?;
        // The slot is held by the run itself: a caller that gives up (its connection dropped)
        // does not free it while the engine still computes.
        let ran = self.engine.run(features, rows);
        tokio::spawn(async move {
            let out = ran.await;
            drop(slot);
            out
        })
        .await
        .map_err(|e| MlError::Compute(format!("the batch stopped: {e}")))?
        .map_err(PredictError::Run)
    }

    fn check_width(&self, features: &[f32], rows: usize) -> Result<(), MlError> {
        if Some(features.len()) != rows.checked_mul(self.width) {
            return Err(MlError::BadInput(format!(
                "{} values are not {rows} rows of {} features",
                features.len(),
                self.width
            )));
        }
        Ok(())
    }

    /// The probabilities of `rows` feature vectors, batched with whatever else is waiting; and
    /// how many rows the batch held.
    pub async fn run(
        &self,
        features: Vec<f32>,
        rows: usize,
    ) -> Result<(Vec<Vec<f32>>, usize), PredictError> {
        self.check_width(&features, rows)?;
        let (tx, rx) = oneshot::channel();
        let _pending = Counted::enter(&self.pending);
        self.queue
            .send(Pending {
                features,
                rows,
                answer: tx,
            })
            .await
            .map_err(|_| MlError::Compute("the batching worker has stopped".into()))?;
        rx.await
            .map_err(|_| MlError::Compute("the batching worker dropped the request".into()))?
            .map_err(PredictError::Run)
    }
}

/// Counts one in (a request queued or running, a batch in flight) while it lives, and out when
/// it is answered or given up.
pub(crate) struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    pub(crate) fn enter(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Counted(n)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn work(
    engine: Arc<dyn Engine>,
    slots: Arc<Semaphore>,
    limits: BatchLimits,
    mut rx: mpsc::Receiver<Pending>,
    on_batch: impl Fn(usize) + Send + 'static,
) {
    loop {
        // A slot is taken only once there is work: an idle worker holding one would keep the
        // batches run at once ([`Batcher::run_formed`]) waiting for ever.
        let Some(first) = rx.recv().await else { return };
        // A batch forms while every slot is busy.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
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
        let ran = engine.run(features, rows);
        tokio::spawn(async move {
            let out = ran.await;
            drop(slot);
            match out {
                Ok(mut all) if all.len() == rows => {
                    for p in batch {
                        let rest = all.split_off(p.rows);
                        let _ = p.answer.send(Ok((std::mem::replace(&mut all, rest), rows)));
                    }
                }
                Ok(all) => {
                    let e = RunError::Failed(format!(
                        "the engine answered {} rows for a batch of {rows}",
                        all.len()
                    ));
                    for p in batch {
                        let _ = p.answer.send(Err(e.clone()));
                    }
                }
                Err(e) => {
                    for p in batch {
                        let _ = p.answer.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

/// Feature vectors or probabilities on the wire between the daemon and a replica: f32 little
/// endian, row after row.
pub fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A replica's flat answer to a batch of `rows` rows, cut into one vector a row (each row holds
/// the same number of values, at least one).
pub fn rows_of_flat(values: Vec<f32>, rows: usize) -> Result<Vec<Vec<f32>>, RunError> {
    let each = values.len().checked_div(rows).unwrap_or(0);
    if each == 0 || !values.len().is_multiple_of(rows) {
        return Err(RunError::Failed(format!(
            "the replica answered {} values for {rows} rows",
            values.len()
        )));
    }
    Ok(values.chunks(each).map(<[f32]>::to_vec).collect())
}

/// The f32 values of `bytes` ([`to_bytes`]); `None` unless it holds whole values.
pub fn from_bytes(bytes: &[u8]) -> Option<Vec<f32>> {
    bytes.len().is_multiple_of(4).then(|| {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::SeqCst;

    use super::*;

    /// An engine that takes a moment per batch, answers `[x, 1 - x]` per row, and counts how
    /// many batches it ran at once.
    #[derive(Default)]
    struct Slow {
        running: AtomicUsize,
        most: AtomicUsize,
        batches: AtomicUsize,
    }

    impl Engine for Arc<Slow> {
        fn run(&self, features: Vec<f32>, rows: usize) -> Ran {
            let me = self.clone();
            Box::pin(async move {
                let now = me.running.fetch_add(1, SeqCst) + 1;
                me.most.fetch_max(now, SeqCst);
                me.batches.fetch_add(1, SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                me.running.fetch_sub(1, SeqCst);
                assert_eq!(features.len(), rows);
                Ok(features.iter().map(|x| vec![*x, 1.0 - x]).collect())
            })
        }
    }

    #[tokio::test]
    async fn formed_batches_and_queued_requests_share_the_engines_slots() {
        let engine = Arc::new(Slow::default());
        let b = Batcher::start(1, Arc::new(engine.clone()), BatchLimits::default(), |_| {});
        // The worker has started and waits for requests: it holds no slot meanwhile, so a formed
        // batch runs (it waited for ever when an idle worker held the engine's only slot).
        tokio::time::sleep(Duration::from_millis(50)).await;
        // A formed batch answers its own rows, in order, run as it came.
        let p = tokio::time::timeout(Duration::from_secs(5), b.run_formed(vec![0.25, 0.5], 2))
            .await
            .expect("a formed batch waited for a slot no one used")
            .unwrap();
        assert_eq!(p, vec![vec![0.25, 0.75], vec![0.5, 0.5]]);
        // Formed batches and queued requests at once: never more than one run at a time (the
        // engine's parallel() is 1), and every one answered with its own rows.
        let formed = (0..4).map(|i| {
            let b = b.clone();
            tokio::spawn(async move { b.run_formed(vec![i as f32; 3], 3).await.unwrap() })
        });
        let queued = (0..4).map(|i| {
            let b = b.clone();
            tokio::spawn(async move { b.run(vec![i as f32 + 10.0], 1).await.unwrap().0 })
        });
        let (formed, queued): (Vec<_>, Vec<_>) = (formed.collect(), queued.collect());
        for (i, h) in formed.into_iter().enumerate() {
            assert_eq!(h.await.unwrap(), vec![vec![i as f32, 1.0 - i as f32]; 3]);
        }
        for (i, h) in queued.into_iter().enumerate() {
            let x = i as f32 + 10.0;
            assert_eq!(h.await.unwrap(), vec![vec![x, 1.0 - x]]);
        }
        assert_eq!(engine.most.load(SeqCst), 1);
        // The four queued requests gathered while the engine was busy: fewer runs than requests.
        assert!(engine.batches.load(SeqCst) < 1 + 4 + 4);
        // A batch of the wrong width is refused before it runs.
        assert!(b.run_formed(vec![1.0, 2.0], 1).await.is_err());
        assert_eq!(b.pending(), 0);
    }
}
