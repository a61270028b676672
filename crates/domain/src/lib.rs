//! Petri's vocabulary: identifiers, the job spec, job states and their rules, and the error codes
//! every boundary speaks. No IO and no async runtime live here, so every other crate can share it.

pub mod api;
pub mod error;
pub mod executor;
pub mod ids;
pub mod job;
pub mod spec;
pub mod units;

pub use api::{
    Event, GpuHistory, GpuHolder, GpuPoint, GpuReport, GpuView, JobChange, ListQuery, Status,
};
pub use error::{ErrorBody, ErrorCode, SpecError};
pub use executor::{ExecError, Executor, ExitReport, Launch, RunProbe, StartedRun, StopSignal};
pub use ids::JobId;
pub use job::{Job, JobState, Pending, PendingReason, Run, RunOutcome};
pub use spec::{JobSpec, Resources, Retries};
pub use units::{ByteSize, Millis};
