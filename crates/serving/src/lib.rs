//! Serving: registered versions behind the Open Inference Protocol v2 and MLflow's scoring
//! protocol. [`deploy`] keeps deployments (each replica a service job of the queue running
//! `petri model-server`), routes requests to ready replicas and moves a deployment when the
//! alias it follows moves; [`server`] is one replica's work without HTTP (a model behind its
//! [`batch`]er); [`codec`] turns the protocols' bodies into rows and answers.

pub mod batch;
pub mod codec;
mod db;
pub mod deploy;
pub mod server;
pub mod stats;

pub use deploy::{Deployment, Replica, ServeRequest, Serving, ServingError};
pub use stats::{DeploymentStats, Stats};
