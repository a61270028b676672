//! Pipelines: YAML DAGs of steps that run as queue jobs (see `docs/pipelines.md`).
//!
//! The pure parts — the spec, one validation pass with line and column, the `${{ }}` expression
//! language, and `advance`, which decides a run's next steps — know no IO and are tested with
//! plain data. The reconciler (`service`) holds the `Queue` handle, carries the decisions out and
//! picks up exactly where it was after a daemon restart.

pub mod advance;
pub mod component;
pub mod expr;
pub mod locate;
mod schema;
pub mod service;
pub mod spec;
pub mod triggers;
pub mod validate;
mod watch;

pub use advance::{Decision, RunView, StepState, advance};
pub use service::{PipelineConfig, Pipelines, launch_hook};
pub use spec::PipelineSpec;
pub use validate::{Catalog, Diagnostic, Plan, validate};
