//! A model's work, without HTTP: a model behind its batcher, answering the OIP and MLflow
//! scoring bodies, and counting what it did. In a replica (`petri model-server`, the process a
//! deployment's job runs) the batcher runs the network itself; in the daemon, the deployment's
//! front ([`ModelServer::front`]) reads the requests, featurizes and batches them, and sends each
//! batch to a replica.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use petri_ml::spec::ModelSpec;
use petri_ml::{MlError, Mlp};
use serde_json::{Value, json};

use crate::batch::{BatchLimits, Batcher, Engine, Local, PredictError, RunError};
use crate::codec::{self, BadRequest, InferResponse};

/// Why a request was not answered: the caller's mistake (400), the model's failure (500), or no
/// replica to run it now (503).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Bad(String),
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<PredictError> for Refusal {
    fn from(e: PredictError) -> Self {
        match e {
            PredictError::Model(e) => e.into(),
            PredictError::Run(RunError::Failed(m)) => Refusal::Failed(m),
            PredictError::Run(RunError::Unavailable(m)) => Refusal::Unavailable(m),
        }
    }
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

/// What runs the requests: Petri's format behind its batcher, or an ONNX graph.
enum Loaded {
    Mlp(Batcher),
    Onnx(Arc<petri_ml::OnnxModel>),
}

/// A model being served.
pub struct ModelServer {
    pub name: String,
    pub version: String,
    model: Loaded,
    pub counters: Arc<Counters>,
}

impl ModelServer {
    /// Loads the model in `dir` (Petri's format, or an ONNX graph: `model.onnx` alone) and, for
    /// Petri's format, starts its batcher (on the current Tokio runtime).
    pub fn load(
        name: &str,
        version: &str,
        dir: &std::path::Path,
        device: &petri_ml::Device,
        limits: BatchLimits,
    ) -> Result<ModelServer, MlError> {
        let counters = Arc::new(Counters::default());
        let onnx = dir.join(petri_ml::onnx::ONNX_FILE).exists() && !dir.join("model.json").exists();
        let model = if onnx {
            Loaded::Onnx(Arc::new(petri_ml::OnnxModel::load(dir, device)?))
        } else {
            let model = Arc::new(Mlp::load(dir, device)?);
            let spec = Arc::new(model.spec().clone());
            Loaded::Mlp(Self::batcher(
                spec,
                Arc::new(Local(model)),
                limits,
                &counters,
            ))
        };
        Ok(ModelServer {
            name: name.to_string(),
            version: version.to_string(),
            model,
            counters,
        })
    }

    /// A model in Petri's format whose network runs elsewhere (`engine`): requests are read,
    /// featurized and batched here, and each batch goes to the engine.
    pub fn front(
        name: &str,
        version: &str,
        spec: Arc<ModelSpec>,
        engine: Arc<dyn Engine>,
        limits: BatchLimits,
    ) -> ModelServer {
        let counters = Arc::new(Counters::default());
        ModelServer {
            name: name.to_string(),
            version: version.to_string(),
            model: Loaded::Mlp(Self::batcher(spec, engine, limits, &counters)),
            counters,
        }
    }

    fn batcher(
        spec: Arc<ModelSpec>,
        engine: Arc<dyn Engine>,
        limits: BatchLimits,
        counters: &Arc<Counters>,
    ) -> Batcher {
        let c = counters.clone();
        Batcher::start(spec, engine, limits, move |rows| {
            c.batches.fetch_add(1, Ordering::Relaxed);
            c.batch_rows.fetch_add(rows as u64, Ordering::Relaxed);
        })
    }

    /// Requests queued or running (for Petri's format; an ONNX graph answers none later).
    pub fn pending(&self) -> usize {
        match &self.model {
            Loaded::Mlp(b) => b.pending(),
            Loaded::Onnx(_) => 0,
        }
    }

    /// A batch of feature vectors the daemon featurized and batched (`rows × width`): their
    /// probabilities, row after row, run at once (it is a batch already). For Petri's format
    /// only.
    pub async fn run_batch(&self, features: Vec<f32>, rows: usize) -> Result<Vec<f32>, Refusal> {
        let Loaded::Mlp(b) = &self.model else {
            return Err(Refusal::Bad(
                "this model takes requests, not feature vectors".into(),
            ));
        };
        let p = b.run_formed(features, rows).await?;
        let c = &self.counters;
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.batch_rows.fetch_add(rows as u64, Ordering::Relaxed);
        c.rows.fetch_add(rows as u64, Ordering::Relaxed);
        Ok(p.into_iter().flatten().collect())
    }

    /// Runs an ONNX graph on a blocking thread.
    async fn run_graph(
        g: &Arc<petri_ml::OnnxModel>,
        matrix: Vec<f32>,
        rows: usize,
    ) -> Result<Vec<petri_ml::onnx::Output>, Refusal> {
        let g = g.clone();
        tokio::task::spawn_blocking(move || g.run(matrix, rows))
            .await
            .map_err(|e| Refusal::Failed(e.to_string()))?
            .map_err(Refusal::from)
    }

    /// OIP model metadata: `GET /v2/models/{name}`.
    pub fn metadata(&self) -> Value {
        match &self.model {
            Loaded::Mlp(b) => {
                let spec = b.spec();
                json!({
                    "name": self.name,
                    "versions": [self.version],
                    "platform": "petri-candle",
                    "inputs": b.columns().iter().map(|i| json!({
                        "name": i.name, "datatype": codec::oip_type(&i.kind), "shape": [-1]
                    })).collect::<Vec<_>>(),
                    "outputs": [
                        {"name": "label", "datatype": codec::label_type(&spec.classes), "shape": [-1]},
                        {"name": "probabilities", "datatype": "FP32", "shape": [-1, spec.classes.len()]},
                    ],
                    "parameters": {"classes": spec.classes, "target": spec.target},
                })
            }
            Loaded::Onnx(g) => json!({
                "name": self.name,
                "versions": [self.version],
                "platform": "petri-candle-onnx",
                "inputs": [{"name": g.input(), "datatype": "FP32", "shape": [-1, g.width()]}],
                "outputs": g.outputs().iter().map(|o| json!({
                    "name": o, "datatype": "FP32", "shape": [-1]
                })).collect::<Vec<_>>(),
            }),
        }
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
        let mut req = codec::parse_infer(body, header_len)?;
        let (outputs, rows, batch) = match &self.model {
            Loaded::Mlp(b) => {
                let rows = codec::oip_rows(&mut req, b.columns())?;
                let (predictions, batch) = b.predict(&rows).await?;
                let outputs = codec::oip_outputs(&req, &predictions, &b.spec().classes)?;
                (outputs, rows.rows, batch)
            }
            Loaded::Onnx(g) => {
                let (matrix, rows) = codec::oip_matrix(&mut req, g.input(), g.width())?;
                let out = Self::run_graph(g, matrix, rows).await?;
                (codec::graph_outputs(&req, out)?, rows, rows)
            }
        };
        let response = InferResponse {
            model_name: &self.name,
            model_version: &self.version,
            id: req.id.as_deref(),
            outputs,
        };
        Ok((codec::encode_response(&req, &response), rows, batch))
    }

    /// `POST /invocations` (MLflow's scoring protocol); and the rows of the batch it ran in.
    pub async fn score(&self, body: &[u8]) -> Result<(Value, usize), Refusal> {
        let began = Instant::now();
        let r = async {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| Refusal::Bad(format!("the body is not JSON: {e}")))?;
            match &self.model {
                Loaded::Mlp(b) => {
                    let rows = codec::scoring_rows(&v, b.columns())?;
                    let (predictions, batch) = b.predict(&rows).await?;
                    Ok::<_, Refusal>((codec::scoring_answer(&predictions), rows.rows, batch))
                }
                Loaded::Onnx(g) => {
                    let (matrix, rows) = codec::scoring_matrix(&v, g.width())?;
                    let out = Self::run_graph(g, matrix, rows).await?;
                    // MLflow answers the (first) output, one entry per row.
                    let (_, shape, values) = out.into_iter().next().unwrap_or_default();
                    let per_row = shape.iter().skip(1).product::<usize>().max(1);
                    let predictions: Vec<Value> = values
                        .chunks(per_row)
                        .map(|c| if per_row == 1 { json!(c[0]) } else { json!(c) })
                        .collect();
                    Ok((json!({ "predictions": predictions }), rows, rows))
                }
            }
        }
        .await;
        let rows = r.as_ref().map(|x| x.1).unwrap_or(0);
        let r = r.map(|x| (x.0, x.2));
        self.count(began, &r, rows);
        r
    }
}
