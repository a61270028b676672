//! The `[artifacts]` section of the settings.

use petri_domain::{ByteSize, Millis};
use serde::{Deserialize, Serialize};

use crate::GcPolicy;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArtifactSettings {
    /// The most the artifact store may hold. Above it, the garbage collector drops step-cache
    /// entries, least recently used first; artifacts that runs, models or anything else hold are
    /// never dropped to make room.
    pub max_size: ByteSize,
    /// A step-cache entry not used for this long is dropped, whatever the store's size.
    pub max_age: Millis,
    /// How often the garbage collector runs in the daemon. 0 turns it off (`petri gc` still
    /// works).
    pub gc_every: Millis,
    /// An artifact that nothing refers to is kept this long after it was last written or used,
    /// so that one being written, and not yet referenced, is never collected.
    pub grace: Millis,
    /// A tracking run deleted this long ago is purged (its metrics, params, tags, and its hold
    /// on its artifacts) by the collector's round. MLflow keeps deleted runs until `mlflow gc`.
    pub purge_deleted_runs_after: Millis,
}

impl Default for ArtifactSettings {
    fn default() -> Self {
        ArtifactSettings {
            max_size: ByteSize(20 << 30),
            max_age: Millis(90 * 24 * 3600 * 1000),
            gc_every: Millis(3600 * 1000),
            grace: Millis(3600 * 1000),
            purge_deleted_runs_after: Millis(30 * 24 * 3600 * 1000),
        }
    }
}

impl ArtifactSettings {
    /// The garbage collector's policy from these settings.
    pub fn policy(&self) -> GcPolicy {
        let ms = |m: Millis| m.0.min(i64::MAX as u64) as i64;
        GcPolicy {
            grace_ms: ms(self.grace),
            max_size: self.max_size.0,
            max_age_ms: ms(self.max_age),
        }
    }
}
