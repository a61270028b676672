//! Executors for this machine. Today: supervised local processes. (Docker containers come next, in
//! this crate, which is the only one allowed to know bollard.)

mod local;

pub use local::LocalExecutor;
