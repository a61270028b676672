//! Clusters as the API names them: what `petri cluster add` sends, what `petri cluster ls`
//! shows and what `petri cluster check` finds. A credential appears only in the request that
//! sets it, whose `Debug` hides it; it is kept encrypted and never answered.

use serde::{Deserialize, Serialize};

/// The engines Petri hands jobs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClusterKind {
    /// Slurm through `slurmrestd` with a JWT.
    Slurm,
    /// Kubernetes: `batch/v1` Jobs.
    Kubernetes,
    /// Ray's Jobs API.
    Ray,
}

impl ClusterKind {
    /// The engine's own name, for sentences (`Slurm job 12`).
    pub fn title(self) -> &'static str {
        match self {
            ClusterKind::Slurm => "Slurm",
            ClusterKind::Kubernetes => "Kubernetes",
            ClusterKind::Ray => "Ray",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClusterKind::Slurm => "slurm",
            ClusterKind::Kubernetes => "kubernetes",
            ClusterKind::Ray => "ray",
        }
    }
}

impl std::fmt::Display for ClusterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of `POST /api/v1/clusters`: a cluster to add (or, with the name of one that
/// exists, the caller's own credential for it).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterRequest {
    /// What `target:` will say: lower-case letters, digits, `-` and `_`.
    pub name: String,
    pub kind: ClusterKind,
    /// Where its API answers: `http://host:6820` for slurmrestd, `http://head:8265` for Ray's
    /// Jobs API.
    pub url: String,
    /// The credential: a Slurm JWT (`scontrol token`), a Ray cluster's token
    /// (`RAY_AUTH_MODE=token`), or for Kubernetes a bearer token or a whole kubeconfig (its
    /// current context's user and certificate authority). Kept encrypted, per user; never
    /// shown.
    pub token: String,
    /// The account the cluster knows the caller by (Slurm's `X-SLURM-USER-NAME`); by default
    /// the caller's own user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The partition jobs go to; the cluster's default when none. For Kubernetes, the
    /// namespace (`default` when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// A folder this machine and the cluster's nodes both see under this path (NFS, or this
    /// machine's disk for a cluster on this machine). Each attempt's script, working copy,
    /// log, outputs and exit status live in a folder of their own under it. Slurm and Ray
    /// need one; Kubernetes does not (its pods run images).
    #[schema(value_type = String)]
    #[serde(default)]
    pub shared: std::path::PathBuf,
    /// The slurmrestd OpenAPI version (`v0.0.38`, Slurm 22.05, is the one spoken now); none
    /// for Ray.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
}

impl std::fmt::Debug for ClusterRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRequest")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("user", &self.user)
            .field("partition", &self.partition)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// A cluster as listed: everything but credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterInfo {
    pub name: String,
    pub kind: ClusterKind,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[schema(value_type = String)]
    pub shared: std::path::PathBuf,
    pub api_version: String,
    /// Who added it.
    pub owner: String,
    /// The users who have a credential for it (each one's jobs go with their own).
    pub users: Vec<String>,
    pub created_at_ms: i64,
}

/// What `petri cluster check` found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterCheck {
    pub name: String,
    /// Whether its API answered at all.
    pub reachable: bool,
    /// Whether it took the caller's credential.
    pub credentials_valid: bool,
    /// The engine's version (`22.05.8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Its nodes, cpus, memory and GPUs as the engine reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<ClusterCapacity>,
    /// The partitions it offers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<String>,
    /// What went wrong, in words, when anything did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A cluster's size.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterCapacity {
    pub nodes: u32,
    pub cpus: u64,
    /// Bytes, summed over the nodes.
    pub memory: u64,
    pub gpus: u64,
    /// The largest node: what one job can ask for at most.
    pub max_node_cpus: u64,
    pub max_node_memory: u64,
    pub max_node_gpus: u64,
}

impl ClusterCapacity {
    /// Counts one node of this size (bytes of memory).
    pub fn add_node(&mut self, cpus: u64, memory: u64, gpus: u64) {
        self.nodes += 1;
        self.cpus += cpus;
        self.memory += memory;
        self.gpus += gpus;
        self.max_node_cpus = self.max_node_cpus.max(cpus);
        self.max_node_memory = self.max_node_memory.max(memory);
        self.max_node_gpus = self.max_node_gpus.max(gpus);
    }
}
