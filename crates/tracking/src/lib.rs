//! Experiment tracking with MLflow's semantics: experiments, runs, params, metrics (value,
//! step, timestamp; the latest per key and the whole history), tags and dataset inputs.
//!
//! The data lives in `PETRI_HOME/tracking.db`, a SQLite file of its own with its own writer, so
//! metric writes never contend with the queue's database. [`Tracking`] is the handle the daemon
//! opens and the API calls; its requests and answers are MLflow's REST messages ([`wire`]), so
//! the routes under `/api/2.0/mlflow/` only parse and serialise. Errors carry MLflow's codes
//! (`RESOURCE_DOES_NOT_EXIST`, `RESOURCE_ALREADY_EXISTS`, `INVALID_PARAMETER_VALUE`).

pub mod artifacts;
mod db;
mod error;
pub mod jobs;
pub mod logged_models;
mod names;
pub mod search;
mod select;
mod service;
mod store;
pub mod validate;
pub mod wire;

pub use error::TrackingError;
pub use service::Tracking;
pub use store::RUN_NAME_TAG;
