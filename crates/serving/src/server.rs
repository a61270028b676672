//! A model's work, without HTTP: a model behind its batcher, answering the OIP and MLflow
//! scoring bodies, and counting what it did. In a replica (`petri model-server`, the process a
//! deployment's job runs) the batcher runs the network itself; in the daemon, the deployment's
//! front ([`ModelServer::front`]) reads the requests, featurizes and batches them, and sends each
//! batch to a replica.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use petri_ml::onnx::Output;
use petri_ml::spec::{Input, ModelSpec};
use petri_ml::{GraphIo, MlError, Mlp, OnnxModel, Prediction, Rows};
use serde_json::{Value, json};

use crate::batch::{BatchLimits, Batcher, Engine, Graph, Local, PredictError, RunError};
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

/// What runs the requests.
enum Loaded {
    /// Petri's format: `model.json` reads the rows and labels their answers; the batcher runs
    /// them (here, or in a replica).
    Mlp(Featurized),
    /// An ONNX graph: what it takes and answers, and how its requests run.
    Graph { io: GraphIo, run: GraphRun },
}

/// How an ONNX graph's requests run.
enum GraphRun {
    /// Each alone (the graph mixes its rows, or fixes their number).
    Alone(Arc<OnnxModel>),
    /// Batched: the rows of many requests at once, by the graph here ([`Graph`], in a replica)
    /// or by a replica (in the daemon's front).
    Batched(Batcher),
}

/// A model in Petri's format behind its batcher.
struct Featurized {
    spec: Arc<ModelSpec>,
    /// The inputs a request must carry (`ModelSpec::columns`, worked out once).
    columns: Box<[Input]>,
    batcher: Batcher,
}

impl Featurized {
    /// Each row's class and probabilities, batched with whatever else is waiting; and how many
    /// rows the batch held.
    async fn predict(
        &self,
        rows: &(dyn Rows + Sync),
    ) -> Result<(Vec<Prediction>, usize), PredictError> {
        if rows.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let features = self.spec.featurize(rows)?;
        let (probabilities, batch) = self.batcher.run(features, rows.len()).await?;
        Ok((self.spec.label(probabilities), batch))
    }
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
            // As the daemon's check found it: its front batches for this replica by that.
            let graph = Arc::new(OnnxModel::load_checked(dir, device)?);
            let io = graph.io().clone();
            let run = match Graph::new(graph.clone()) {
                Some(engine) => {
                    GraphRun::Batched(Self::batcher(io.width, Arc::new(engine), limits, &counters))
                }
                None => GraphRun::Alone(graph),
            };
            Loaded::Graph { io, run }
        } else {
            let model = Arc::new(Mlp::load(dir, device)?);
            let spec = Arc::new(model.spec().clone());
            Loaded::Mlp(Self::featurized(
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
            model: Loaded::Mlp(Self::featurized(spec, engine, limits, &counters)),
            counters,
        }
    }

    /// An ONNX graph that computes its rows apart whose rows run elsewhere (`engine`): requests
    /// are read and batched here, and each batch goes to the engine, which answers each row's
    /// slice of every output ([`Graph`]'s layout).
    pub fn graph_front(
        name: &str,
        version: &str,
        io: GraphIo,
        engine: Arc<dyn Engine>,
        limits: BatchLimits,
    ) -> ModelServer {
        let counters = Arc::new(Counters::default());
        let batcher = Self::batcher(io.width, engine, limits, &counters);
        ModelServer {
            name: name.to_string(),
            version: version.to_string(),
            model: Loaded::Graph {
                io,
                run: GraphRun::Batched(batcher),
            },
            counters,
        }
    }

    fn featurized(
        spec: Arc<ModelSpec>,
        engine: Arc<dyn Engine>,
        limits: BatchLimits,
        counters: &Arc<Counters>,
    ) -> Featurized {
        Featurized {
            columns: spec.columns().into(),
            batcher: Self::batcher(spec.width(), engine, limits, counters),
            spec,
        }
    }

    fn batcher(
        width: usize,
        engine: Arc<dyn Engine>,
        limits: BatchLimits,
        counters: &Arc<Counters>,
    ) -> Batcher {
        let c = counters.clone();
        Batcher::start(width, engine, limits, move |rows| {
            c.batches.fetch_add(1, Ordering::Relaxed);
            c.batch_rows.fetch_add(rows as u64, Ordering::Relaxed);
        })
    }

    /// Requests queued or running (those of a graph that runs each request alone are not
    /// counted).
    pub fn pending(&self) -> usize {
        match &self.model {
            Loaded::Mlp(m) => m.batcher.pending(),
            Loaded::Graph {
                run: GraphRun::Batched(b),
                ..
            } => b.pending(),
            Loaded::Graph { .. } => 0,
        }
    }

    /// A batch the daemon's front formed (`rows × width` numbers: a model in Petri's format's
    /// feature vectors, or a graph's rows): each row's answer, row after row, run at once (it is
    /// a batch already). A graph's row answers its slice of every output, one after another.
    pub async fn run_batch(&self, features: Vec<f32>, rows: usize) -> Result<Vec<f32>, Refusal> {
        let batcher = match &self.model {
            Loaded::Mlp(m) => &m.batcher,
            Loaded::Graph {
                run: GraphRun::Batched(b),
                ..
            } => b,
            Loaded::Graph { .. } => {
                return Err(Refusal::Bad(
                    "this graph mixes its rows: it takes requests, not batches".into(),
                ));
            }
        };
        let p = batcher.run_formed(features, rows).await?;
        let c = &self.counters;
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.batch_rows.fetch_add(rows as u64, Ordering::Relaxed);
        c.rows.fetch_add(rows as u64, Ordering::Relaxed);
        Ok(p.into_iter().flatten().collect())
    }

    /// Runs `rows` rows through an ONNX graph, batched with other requests or alone. Its
    /// outputs, and the rows of the batch.
    async fn run_graph(
        io: &GraphIo,
        run: &GraphRun,
        matrix: Vec<f32>,
        rows: usize,
    ) -> Result<(Vec<Output>, usize), Refusal> {
        let joined = |answers: &[Vec<f32>]| {
            io.join_rows(answers)
                .map_err(|e| Refusal::Failed(e.to_string()))
        };
        let graph = match (run, &io.row_shapes) {
            (GraphRun::Batched(batcher), Some(_)) => {
                if rows == 0 {
                    return Ok((joined(&[])?, 0));
                }
                let (answers, batch) = batcher.run(matrix, rows).await?;
                return Ok((joined(&answers)?, batch));
            }
            (GraphRun::Alone(graph), _) => graph.clone(),
            (GraphRun::Batched(_), None) => {
                return Err(Refusal::Failed(
                    "the graph is batched but says nothing of its rows".into(),
                ));
            }
        };
        let out = tokio::task::spawn_blocking(move || graph.run(matrix, rows))
            .await
            .map_err(|e| Refusal::Failed(e.to_string()))??;
        Ok((out, rows))
    }

    /// OIP model metadata: `GET /v2/models/{name}`.
    pub fn metadata(&self) -> Value {
        match &self.model {
            Loaded::Mlp(m) => {
                let spec = &m.spec;
                json!({
                    "name": self.name,
                    "versions": [self.version],
                    "platform": "petri-candle",
                    "inputs": m.columns.iter().map(|i| json!({
                        "name": i.name, "datatype": codec::oip_type(&i.kind), "shape": [-1]
                    })).collect::<Vec<_>>(),
                    "outputs": [
                        {"name": "label", "datatype": codec::label_type(&spec.classes), "shape": [-1]},
                        {"name": "probabilities", "datatype": "FP32", "shape": [-1, spec.classes.len()]},
                    ],
                    "parameters": {"classes": spec.classes, "target": spec.target},
                })
            }
            Loaded::Graph { io, .. } => json!({
                "name": self.name,
                "versions": [self.version],
                "platform": "petri-candle-onnx",
                "inputs": [{"name": io.input, "datatype": "FP32", "shape": [-1, io.width]}],
                // Each output's shape past the rows, where the check found the rows apart.
                "outputs": io.outputs.iter().enumerate().map(|(k, o)| {
                    let mut shape = vec![-1i64];
                    if let Some(row) = io.row_shapes.as_ref().and_then(|s| s.get(k)) {
                        shape.extend(row.iter().map(|d| *d as i64));
                    }
                    json!({"name": o, "datatype": "FP32", "shape": shape})
                }).collect::<Vec<_>>(),
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
            Loaded::Mlp(m) => {
                let rows = codec::oip_rows(&mut req, &m.columns)?;
                let (predictions, batch) = m.predict(&rows).await?;
                let outputs = codec::oip_outputs(&req, &predictions, &m.spec.classes)?;
                (outputs, rows.rows, batch)
            }
            Loaded::Graph { io, run } => {
                codec::known_outputs(&req, &io.outputs)?;
                let (matrix, rows) = codec::oip_matrix(&mut req, &io.input, io.width)?;
                let (out, batch) = Self::run_graph(io, run, matrix, rows).await?;
                (codec::graph_outputs(&req, out)?, rows, batch)
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
                Loaded::Mlp(m) => {
                    let rows = codec::scoring_rows(&v, &m.columns)?;
                    let (predictions, batch) = m.predict(&rows).await?;
                    Ok::<_, Refusal>((codec::scoring_answer(&predictions), rows.rows, batch))
                }
                Loaded::Graph { io, run } => {
                    let (matrix, rows) = codec::scoring_matrix(&v, io.width)?;
                    let (out, batch) = Self::run_graph(io, run, matrix, rows).await?;
                    // MLflow answers the (first) output, one entry per row.
                    let (_, shape, values) = out.into_iter().next().unwrap_or_default();
                    let per_row = shape.iter().skip(1).product::<usize>().max(1);
                    let predictions: Vec<Value> = values
                        .chunks(per_row)
                        .map(|c| if per_row == 1 { json!(c[0]) } else { json!(c) })
                        .collect();
                    Ok((json!({ "predictions": predictions }), rows, batch))
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

#[cfg(test)]
mod tests {
    use petri_ml::Device;

    use super::*;

    /// A folder holding the MLP PyTorch exported (petri-ml's fixture) as `model.onnx`.
    fn torch_graph() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../ml/tests/fixtures/torch_mlp.onnx");
        std::fs::copy(fixture, dir.path().join(petri_ml::onnx::ONNX_FILE)).unwrap();
        dir
    }

    fn body(rows: &[[f32; 4]]) -> Vec<u8> {
        serde_json::to_vec(&json!({"inputs": [{
            "name": "features", "datatype": "FP32", "shape": [rows.len(), 4],
            "data": rows.concat(),
        }]}))
        .unwrap()
    }

    fn probabilities(answer: &[u8]) -> (Vec<usize>, Vec<f32>) {
        let v: Value = serde_json::from_slice(answer).unwrap();
        let out = &v["outputs"][0];
        assert_eq!(out["name"], "probabilities", "{v}");
        (
            serde_json::from_value(out["shape"].clone()).unwrap(),
            serde_json::from_value(out["data"].clone()).unwrap(),
        )
    }

    fn rows() -> Vec<[f32; 4]> {
        (0..24)
            .map(|i| {
                let x = i as f32;
                [x / 8.0, 1.0 - x / 10.0, 0.5, -x / 5.0]
            })
            .collect()
    }

    /// Each row asked alone of `s`: what it must answer however it is batched.
    async fn alone(s: &ModelServer) -> Vec<Vec<f32>> {
        let mut alone = Vec::new();
        for r in rows() {
            let (answer, _, batch) = s.infer(&body(&[r]), None).await.unwrap();
            assert_eq!(batch, 1);
            alone.push(probabilities(&answer).1);
        }
        alone
    }

    /// Twelve requests of two rows each asked of `s` at once: each answers what its rows answer
    /// alone, and they ran in fewer batches than requests.
    async fn at_once(s: &Arc<ModelServer>, alone: &[Vec<f32>]) {
        let before = s.counters.batches.load(Ordering::Relaxed);
        let asked: Vec<_> = rows()
            .chunks(2)
            .map(|pair| {
                let (s, b) = (s.clone(), body(pair));
                tokio::spawn(async move { s.infer(&b, None).await.unwrap() })
            })
            .collect();
        let mut largest = 0;
        for (i, h) in asked.into_iter().enumerate() {
            let (answer, _, batch) = h.await.unwrap();
            largest = largest.max(batch);
            let (shape, got) = probabilities(&answer);
            assert_eq!(shape, vec![2, 3]);
            let want = [&alone[2 * i][..], &alone[2 * i + 1][..]].concat();
            assert!(
                got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
                "request {i}: {got:?} against {want:?}"
            );
        }
        let batches = s.counters.batches.load(Ordering::Relaxed) - before;
        assert!(
            batches < 12 && largest > 2,
            "{batches} batches, the largest {largest} rows"
        );
        assert_eq!(s.pending(), 0);
        // The MLflow scoring protocol takes the same path.
        let (v, _) = s
            .score(&serde_json::to_vec(&json!({"inputs": [rows()[3]]})).unwrap())
            .await
            .unwrap();
        let p: Vec<Vec<f32>> = serde_json::from_value(v["predictions"].clone()).unwrap();
        assert!(
            p[0].iter()
                .zip(&alone[3])
                .all(|(a, b)| (a - b).abs() < 1e-6)
        );
    }

    #[tokio::test]
    async fn an_onnx_graph_runs_the_rows_of_many_requests_at_once() {
        let dir = torch_graph();
        let limits = BatchLimits::default();
        let s = Arc::new(ModelServer::load("g", "1", dir.path(), &Device::Cpu, limits).unwrap());
        let alone = alone(&s).await;
        at_once(&s, &alone).await;
    }

    /// A replica reached in this process, as `deploy::Remote` reaches one over HTTP: a batch's
    /// rows to its `run_batch`, the flat answer cut into rows.
    struct InProcess(Arc<ModelServer>);

    impl Engine for InProcess {
        fn run(&self, features: Vec<f32>, rows: usize) -> crate::batch::Ran {
            let replica = self.0.clone();
            Box::pin(async move {
                let flat = replica
                    .run_batch(features, rows)
                    .await
                    .map_err(|e| RunError::Failed(e.to_string()))?;
                crate::batch::rows_of_flat(flat, rows)
            })
        }
    }

    #[tokio::test]
    async fn a_graphs_front_batches_requests_and_its_replica_runs_the_batches() {
        let dir = torch_graph();
        let limits = BatchLimits::default();
        let replica =
            Arc::new(ModelServer::load("g", "1", dir.path(), &Device::Cpu, limits).unwrap());
        let io = OnnxModel::load(dir.path(), &Device::Cpu)
            .unwrap()
            .io()
            .clone();
        let front = Arc::new(ModelServer::graph_front(
            "g",
            "1",
            io,
            Arc::new(InProcess(replica.clone())),
            limits,
        ));
        assert_eq!(front.metadata(), replica.metadata());
        // The metadata gives each output's shape past the rows.
        assert_eq!(
            replica.metadata()["outputs"],
            json!([{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}])
        );
        let alone = alone(&replica).await;
        let formed = replica.counters.batches.load(Ordering::Relaxed);
        at_once(&front, &alone).await;
        // The replica ran the front's batches as they came: as many as the front formed.
        assert_eq!(
            replica.counters.batches.load(Ordering::Relaxed) - formed,
            front.counters.batches.load(Ordering::Relaxed)
        );
        // A batch of the wrong width never reaches the graph.
        assert!(matches!(
            replica.run_batch(vec![1.0; 3], 1).await,
            Err(Refusal::Bad(_))
        ));
    }

    #[tokio::test]
    async fn a_request_a_graph_cannot_take_is_refused_before_it_runs() {
        let dir = torch_graph();
        let s =
            ModelServer::load("g", "1", dir.path(), &Device::Cpu, BatchLimits::default()).unwrap();
        let wrong = serde_json::to_vec(&json!({"inputs": [{
            "name": "features", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3],
        }]}))
        .unwrap();
        let Err(Refusal::Bad(m)) = s.infer(&wrong, None).await else {
            panic!("a row of 3 features was taken");
        };
        assert!(m.contains("expected [rows, 4]"), "{m}");
        // An output the graph does not have: refused before anything runs.
        let unknown = serde_json::to_vec(&json!({
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}],
            "outputs": [{"name": "logits"}],
        }))
        .unwrap();
        let Err(Refusal::Bad(m)) = s.infer(&unknown, None).await else {
            panic!("an unknown output was taken");
        };
        assert!(
            m.contains("unknown output `logits`") && m.contains("probabilities"),
            "{m}"
        );
        assert_eq!(s.counters.batches.load(Ordering::Relaxed), 0);
        assert_eq!(s.counters.refused.load(Ordering::Relaxed), 2);
        // No rows: an answer of no rows, each output named.
        let (answer, _, batch) = s.infer(&body(&[]), None).await.unwrap();
        assert_eq!((probabilities(&answer), batch), ((vec![0, 3], vec![]), 0));
    }
}
