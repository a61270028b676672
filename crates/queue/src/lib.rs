//! The queue: the engine thread that owns it (admission, scheduling, launches, crash
//! recovery), service jobs, and the [`Queue`] handle that every other capability holds.
//!
//! The queue knows no capability above it: notebooks, pipelines, tracking and serving make jobs
//! through [`Queue::submit`] with an [`Origin`](petri_domain::Origin) of their own, and add their
//! launch environment through a [`LaunchHook`]; what every job gets whatever its origin (its
//! secrets) comes through an [`AttemptHook`], and the checks of every submission through an
//! [`AdmissionHook`]. It knows no executor either: the daemon hands it
//! a table of executors by target name.

mod engine;
mod error;
mod handle;
mod home;
mod keys;
mod launch;
pub mod logwatch;
mod metrics;
mod owners;
pub mod retention;
pub mod service;
mod settings;
mod submit;

pub use error::QueueError;
pub use handle::{LogChunk, Queue};
pub use home::Home;
pub use keys::ServiceKeys;
pub use launch::{AdmissionHook, AttemptHook, LaunchExtras, LaunchHook, LaunchHooks, Submitter};
pub use settings::{
    BurstSettings, CapacitySettings, DockerSettings, Enforce, FairShareSettings, GpuDevices,
    GpuSettings, QueueConfig, QueueSettings,
};
pub use submit::check_mount;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Gives back what `map` grew to hold: after a sweep of a million jobs has ended, its table would
/// otherwise keep a slot for each of them for as long as the daemon runs. It is rebuilt only once
/// it holds under a quarter of its room, so the rebuilds cost a constant share of the inserts
/// that grew it.
pub(crate) fn give_back_room<K: Eq + std::hash::Hash, V>(
    map: &mut std::collections::HashMap<K, V>,
) {
    if map.capacity() > 1024 && map.len() * 4 < map.capacity() {
        map.shrink_to_fit();
    }
}
