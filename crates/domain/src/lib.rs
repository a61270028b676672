//! Petri's vocabulary: identifiers, the job spec, job states and their rules, and the error codes
//! every boundary speaks. No IO and no async runtime live here, so every other crate can share it.

pub mod account;
pub mod api;
pub mod artifact;
pub mod cluster;
pub mod error;
pub mod executor;
pub mod files;
pub mod ids;
pub mod job;
pub mod notebook;
pub mod secret;
pub mod spec;
pub mod sweep;
pub mod tls;
pub mod token;
pub mod units;

pub use account::{
    AuditEntry, AuditQuery, GroupQuota, Me, Quota, QuotaBook, Role, UserInfo, UserRequest,
    UserShare,
};
pub use api::{
    DEFAULT_PAGE, Event, GpuHistory, GpuHolder, GpuKeptFor, GpuPoint, GpuPolicy, GpuReport,
    GpuView, GpusSampled, HomeUsage, Image, JobChange, JobFiles, JobPage, ListOrder, ListQuery,
    MAX_PAGE, NotebookChange, PipelineRunChange, PrunedJob, RetentionLimits, RetentionReport,
    SettingsView, Status, UserGpuPoint,
};
pub use cluster::{ClusterCapacity, ClusterCheck, ClusterInfo, ClusterKind, ClusterRequest};
pub use error::{ErrorBody, ErrorCode, SpecError};
pub use executor::{
    BindMount, ContainerLaunch, ExecError, Executor, Executors, ExitReport, Launch, RunAs,
    RunHandle, RunKey, RunProbe, SecretVar, StopSignal, TARGET_AUTO, TARGET_DOCKER, TARGET_LOCAL,
    check_cluster_name, is_remote_target,
};
pub use ids::JobId;
pub use job::{
    Job, JobState, Origin, OriginKind, Pending, PendingReason, Pruned, RemoteStatus, Run,
    RunOutcome, UserName,
};
pub use notebook::{Notebook, NotebookLink, NotebookRequest, NotebookState};
pub use secret::{SecretInfo, SecretKind, SecretRequest, SecretUse};
pub use spec::{JobSpec, Mount, Resources, Retries, did_you_mean, suggest};
pub use units::{ByteSize, Millis};
