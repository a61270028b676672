//! The model registry: registered models (name, description, tags), their versions (numbered
//! 1, 2, …; a source, a run, status `READY`, tags, and files stored once by content in the
//! artifact store, checked on read, held as `model:<name>/<version>`), aliases (`@champion`)
//! with the history of every move, and each version's lineage (run, job, pipeline run, the
//! datasets the run read).
//!
//! The data lives in `PETRI_HOME/registry.db`, a SQLite file of its own. [`Registry`] is the
//! handle the daemon opens; its messages are MLflow's registry messages ([`wire`]), so the
//! routes under `/api/2.0/mlflow/registered-models` and `model-versions` only parse and
//! serialise. A version's files are checked at registration ([`validate`]): a broken model in
//! Petri's format is refused (`INVALID_MODEL`); MLflow models of other flavours are kept as they
//! are and marked `runtime: container`.

mod db;
mod error;
pub mod filter;
mod service;
pub mod validate;
pub mod wire;

pub use error::RegistryError;
pub use service::{
    HOLDER_PREFIX, PipelineOf, REGISTRY_ARTIFACTS, Registry, UPLOAD_PREFIX, futures_lite,
    parse_version,
};
