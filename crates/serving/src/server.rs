//! One replica's work, without HTTP: a loaded model behind its batcher, answering the OIP and
//! MLflow scoring bodies, and counting what it did. `petri model-server` (the process a
//! deployment's job runs) puts HTTP around it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use petri_ml::{MlError, Mlp};
use serde_json::{Value, json};

use crate::batch::{BatchLimits, Batcher};
use crate::codec::{self, BadRequest, InferResponse};

/// Why a request was not answered: the caller's mistake (400) or the model's failure (500).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Bad(String),
    #[error("{0}")]
    Failed(String),
}

impl From<BadRequest> for Refusal {
    fn from(e: BadRequest) -> Self {
        Refusal::Bad(e.0)
    }
}

impl From<MlError> for Refusal {
    fn from(e: MlError) -> Self {
        match e {
            MlError::BadInput(m) | MlError::InvalidModel(m) => Refusal::Bad(m),
            MlError::Compute(m) => Refusal::Failed(m),
        }
    }
}

/// Counters a replica keeps (its `/metrics` shows them).
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub refused: AtomicU64,
    pub rows: AtomicU64,
    pub batches: AtomicU64,
    pub batch_rows: AtomicU64,
    /// Latency of answered requests, in microseconds, summed.
    pub latency_us: AtomicU64,
}

/// A model being served.
pub struct ModelServer {
    pub name: String,
    pub version: String,
    batcher: Batcher,
    pub counters: Arc<Counters>,
}

impl ModelServer {
    /// Loads the model in `dir` and starts its batcher (on the current Tokio runtime).
    pub fn load(
        name: &str,
        version: &str,
        dir: &std::path::Path,
        device: &petri_ml::Device,
        limits: BatchLimits,
    ) -> Result<ModelServer, MlError> {
        let model = Arc::new(Mlp::load(dir, device)?);
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let batcher = Batcher::start(model, limits, move |rows| {
            c.batches.fetch_add(1, Ordering::Relaxed);
            c.batch_rows.fetch_add(rows as u64, Ordering::Relaxed);
        });
        Ok(ModelServer {
            name: name.to_string(),
            version: version.to_string(),
            batcher,
            counters,
        })
    }

    fn model(&self) -> &Mlp {
        self.batcher.model()
    }

    /// OIP model metadata: `GET /v2/models/{name}`.
    pub fn metadata(&self) -> Value {
        let spec = self.model().spec();
        json!({
            "name": self.name,
            "versions": [self.version],
            "platform": "petri-candle",
            "inputs": spec.columns().iter().map(|i| json!({
                "name": i.name, "datatype": codec::oip_type(&i.kind), "shape": [-1]
            })).collect::<Vec<_>>(),
            "outputs": [
                {"name": "label", "datatype": codec::label_type(&spec.classes), "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, spec.classes.len()]},
            ],
            "parameters": {"classes": spec.classes, "target": spec.target},
        })
    }

    fn count<T>(&self, began: Instant, r: &Result<T, Refusal>, rows: usize) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        match r {
            Ok(_) => {
                self.counters.rows.fetch_add(rows as u64, Ordering::Relaxed);
                self.counters
                    .latency_us
                    .fetch_add(began.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// `POST /v2/models/{name}/infer`: the body as it came (and the JSON header's length, with
    /// binary tensors). Answers the response's body, its JSON header's length when outputs are
    /// binary, and the rows of the batch it ran in.
    pub async fn infer(
        &self,
        body: &[u8],
        header_len: Option<usize>,
    ) -> Result<(Vec<u8>, Option<usize>, usize), Refusal> {
        let began = Instant::now();
        let r = self.infer_inner(body, header_len).await;
        let rows = r.as_ref().map(|x| x.1).unwrap_or(0);
        let r = r.map(|(answer, _, batch)| (answer.0, answer.1, batch));
        self.count(began, &r, rows);
        r
    }

    async fn infer_inner(
        &self,
        body: &[u8],
        header_len: Option<usize>,
    ) -> Result<((Vec<u8>, Option<usize>), usize, usize), Refusal> {
        let req = codec::parse_infer(body, header_len)?;
        let spec = self.model().spec();
        let rows = codec::oip_rows(&req, &spec.columns())?;
        let (predictions, batch) = self.batcher.predict(&rows).await?;
        let outputs = codec::oip_outputs(&req, &predictions, &spec.classes)?;
        let response = InferResponse {
            model_name: self.name.clone(),
            model_version: self.version.clone(),
            id: req.id.clone(),
            outputs,
        };
        Ok((codec::encode_response(&req, &response), rows.rows, batch))
    }

    /// `POST /invocations` (MLflow's scoring protocol); and the rows of the batch it ran in.
    pub async fn score(&self, body: &[u8]) -> Result<(Value, usize), Refusal> {
        let began = Instant::now();
        let r = async {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| Refusal::Bad(format!("the body is not JSON: {e}")))?;
            let rows = codec::scoring_rows(&v, &self.model().spec().columns())?;
            let (predictions, batch) = self.batcher.predict(&rows).await?;
            Ok::<_, Refusal>((codec::scoring_answer(&predictions), rows.rows, batch))
        }
        .await;
        let rows = r.as_ref().map(|x| x.1).unwrap_or(0);
        let r = r.map(|x| (x.0, x.2));
        self.count(began, &r, rows);
        r
    }
}
