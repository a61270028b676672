//! Petri's artifact store: files kept by content (sha256), shared by pipeline steps, the step
//! cache, the model registry and remote clusters.
//!
//! Two layers:
//! - [`ArtifactStore`]: the blobs on disk under `<home>/artifacts/`, `sha256/ab/abcdef…`. A blob
//!   is written to a temporary file beside the blobs (`artifacts/tmp/`, same filesystem), synced
//!   and renamed into place, so a crash never leaves half a blob under a digest's name; it is
//!   read-only on disk, stored once however often it is put, and checked against its digest
//!   whenever it is read. A folder is its files' blobs plus a [`Manifest`] blob (sorted paths,
//!   each file's digest, size and executable bit, and the empty folders); the folder's digest is
//!   the manifest's. Symbolic links are refused (a folder with one is not stored), so nothing
//!   materialized can point outside its folder.
//! - [`Artifacts`]: the store with its records in SQLite (through `petri-store`): who holds which
//!   blob (`pipeline:<run>/<step>/<output>`, `cache:<key>`, `model:<name>/<version>`), when each
//!   was last used, and the garbage collector ([`gc::plan`], a pure function) that removes what
//!   nobody holds.

mod blobs;
pub mod gc;
mod handle;
mod manifest;
mod settings;

use std::path::{Path, PathBuf};

use petri_domain::{ErrorBody, ErrorCode};

pub use blobs::{ArtifactStore, BlobReader, Stored};
pub use gc::GcPolicy;
pub use handle::{Artifacts, Content};
pub use petri_domain::artifact::{
    ArtifactUsage, BlobCount, Digest, GcReport, GcRequest, Kind, Manifest, ManifestFile,
    RemovedBlob,
};
pub use settings::ArtifactSettings;

/// The holder prefix a folder's manifest holds its files with (`artifact:sha256:…`). Only the
/// store writes and drops such references.
pub const FOLDER_HOLDER_PREFIX: &str = "artifact:";

/// The holder prefix of step-cache entries: the only references the garbage collector drops by
/// itself.
pub const CACHE_HOLDER_PREFIX: &str = "cache:";

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{0}")]
    InvalidDigest(String),
    #[error("no artifact {0} in the store")]
    NotFound(Digest),
    #[error(
        "the artifact {digest} failed its content check ({why}) and was not served: the stored \
         copy was changed on disk. Store the content again to repair it"
    )]
    Corrupt { digest: Digest, why: String },
    #[error("{path}: {why}")]
    Unsupported { path: PathBuf, why: String },
    #[error("{0} already exists; an artifact is materialized only where nothing is")]
    DestinationExists(PathBuf),
    #[error("`{holder}` is not a holder name: {why}")]
    InvalidHolder { holder: String, why: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] petri_store::StoreError),
}

impl ArtifactError {
    pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| ArtifactError::Io { what, path, source }
    }

    /// The stable code this error leaves the process with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ArtifactError::InvalidDigest(_) => ErrorCode::InvalidDigest,
            ArtifactError::NotFound(_) => ErrorCode::ArtifactNotFound,
            ArtifactError::Corrupt { .. } => ErrorCode::ArtifactCorrupt,
            ArtifactError::Unsupported { .. } => ErrorCode::InvalidSpec,
            ArtifactError::InvalidHolder { .. } => ErrorCode::BadRequest,
            ArtifactError::DestinationExists(_)
            | ArtifactError::Io { .. }
            | ArtifactError::Store(_) => ErrorCode::Internal,
        }
    }
}

impl From<ArtifactError> for ErrorBody {
    fn from(e: ArtifactError) -> Self {
        let details = match &e {
            ArtifactError::NotFound(d) | ArtifactError::Corrupt { digest: d, .. } => {
                serde_json::json!({ "digest": d })
            }
            _ => serde_json::Value::Null,
        };
        ErrorBody::new(e.code(), e.to_string()).with_details(details)
    }
}

/// Parses a digest, with the error the API answers (`INVALID_DIGEST`).
pub fn parse_digest(s: &str) -> Result<Digest, ArtifactError> {
    s.parse().map_err(ArtifactError::InvalidDigest)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
