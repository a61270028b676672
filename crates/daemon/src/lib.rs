//! The daemon: services over the store, the executor and the scheduler; the engine thread that
//! owns the queue; the event bus; crash recovery. It knows no HTTP: `petri-api` puts its routes in
//! front of [`Daemon`].

mod containers;
mod engine;
mod error;
mod home;
mod keys;
mod metrics;
mod notebooks;
mod service;
mod settings;
mod submit;

pub use error::DaemonError;
pub use home::Home;
pub use notebooks::{JUPYTER_PORT, Upstream};
pub use petri_domain::{Event, JobChange, ListQuery, Status};
pub use service::{Daemon, LogChunk};
pub use settings::{GpuSettings, QueueSettings, Settings, SettingsError};
