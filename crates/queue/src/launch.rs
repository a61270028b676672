//! What a job is launched with beyond its spec, set by Petri: who it is for (its origin and
//! user), and what the capability that made it adds to its environment.

use std::collections::HashMap;
use std::sync::Arc;

use petri_domain::{Job, Origin, OriginKind};

/// What the capability that made a job adds to its environment when an attempt launches.
pub type LaunchHook = Arc<dyn Fn(&Job) -> Vec<(String, String)> + Send + Sync>;

/// Launch hooks by origin kind, registered by the capabilities before the queue starts.
#[derive(Clone, Default)]
pub struct LaunchHooks {
    by_kind: HashMap<OriginKind, LaunchHook>,
}

impl LaunchHooks {
    pub fn register(&mut self, kind: OriginKind, hook: LaunchHook) {
        self.by_kind.insert(kind, hook);
    }
    pub(crate) fn get(&self, kind: OriginKind) -> Option<&LaunchHook> {
        self.by_kind.get(&kind)
    }
}

/// Who a submission is for: the capability that makes the jobs and the user they run for. Set
/// by Petri (the API from the caller, a notebook from its owner), never read from a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitter {
    pub origin: Origin,
    pub user: String,
}
