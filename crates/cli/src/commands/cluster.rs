//! `petri cluster add|ls|rm|check`: the clusters jobs can be sent to (`--target NAME`), and
//! `petri push JOB --to NAME`: the same job again, on a cluster.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use petri_client::Client;
use petri_domain::job::format_ms;
use petri_domain::{ByteSize, ClusterKind, ClusterRequest};

use crate::output;

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Add a cluster (or, for one that exists, your own credential for it). The credential is
    /// tried first and kept encrypted; each user's jobs go with their own.
    Add(AddArgs),
    /// List the clusters.
    Ls(LsArgs),
    /// Remove a cluster (yours, or any as an admin) once no job runs there.
    Rm(RmArgs),
    /// Whether a cluster answers and takes your credential; its version, size and partitions.
    Check(CheckArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    Slurm,
    Kubernetes,
    Ray,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// What `--target` and `target:` will say: lower-case letters, digits, `-`, `_`.
    pub name: String,
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Where its API answers: slurmrestd's http://HOST:PORT, or a Ray head's dashboard
    /// (http://HOST:8265, where its Jobs API answers).
    #[arg(long)]
    pub url: String,
    /// A file holding your token (Slurm: what `scontrol token` prints, `SLURM_JWT=` or not;
    /// Ray: the cluster's `RAY_AUTH_TOKEN`, from ~/.ray/auth_token on its head).
    #[arg(long, value_name = "FILE", required_unless_present = "kubeconfig")]
    pub token_file: Option<PathBuf>,
    /// Kubernetes: a kubeconfig whose current context holds your credential and the server's
    /// certificate authority (instead of `--token-file`); kept encrypted like a token.
    #[arg(long, value_name = "FILE", conflicts_with = "token_file")]
    pub kubeconfig: Option<PathBuf>,
    /// The account the cluster knows you by (default: your user name here). On a cluster
    /// running on this machine, the attempt's folder on the shared path is handed to it.
    #[arg(long)]
    pub user: Option<String>,
    /// The partition jobs go to (default: the cluster's own default); for Kubernetes, the
    /// namespace (default: `default`).
    #[arg(long, visible_alias = "namespace")]
    pub partition: Option<String>,
    /// A folder this machine and the cluster's nodes see under the same path; each attempt's
    /// working copy, log, outputs and exit status live there. Required for Slurm and Ray;
    /// optional for Kubernetes, whose pods then work in a copy of the job's folder there
    /// (a `hostPath` volume) and whose outputs come back.
    #[arg(long, value_name = "DIR")]
    pub shared: Option<PathBuf>,
    /// slurmrestd's OpenAPI version (default: v0.0.38, Slurm 22.05). Ray's Jobs API has none.
    #[arg(long)]
    pub api_version: Option<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print the clusters as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    pub name: String,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    pub name: String,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: &Client, args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Add(a) => {
            let file = a
                .kubeconfig
                .as_ref()
                .or(a.token_file.as_ref())
                .context("give --token-file FILE (or --kubeconfig FILE for Kubernetes)")?;
            let token = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let shared = match &a.shared {
                Some(s) => std::path::absolute(s).with_context(|| format!("{}", s.display()))?,
                None => PathBuf::new(),
            };
            let info = client
                .cluster_add(&ClusterRequest {
                    name: a.name,
                    kind: match a.kind {
                        Kind::Slurm => ClusterKind::Slurm,
                        Kind::Kubernetes => ClusterKind::Kubernetes,
                        Kind::Ray => ClusterKind::Ray,
                    },
                    url: a.url,
                    token,
                    user: a.user,
                    partition: a.partition,
                    shared,
                    api_version: a.api_version,
                })
                .await?;
            println!(
                "Cluster `{}` ({} at {}) is ready; send a job there with `petri submit --target \
                 {}` or `target: {}`.",
                info.name, info.kind, info.url, info.name, info.name
            );
            Ok(())
        }
        ClusterCommand::Ls(a) => {
            let all = client.clusters().await?;
            if a.json {
                return output::print_json(&all);
            }
            if all.is_empty() {
                println!(
                    "No clusters yet; add one with `petri cluster add NAME --kind slurm --url URL \
                     --shared DIR --token-file FILE`."
                );
                return Ok(());
            }
            let mut t = output::new_table(&[
                "NAME",
                "KIND",
                "URL",
                "PARTITION",
                "SHARED",
                "OWNER",
                "USERS",
                "ADDED",
            ]);
            for c in all {
                t.add_row(vec![
                    c.name,
                    c.kind.to_string(),
                    c.url,
                    c.partition.unwrap_or_else(|| "(default)".into()),
                    c.shared.display().to_string(),
                    c.owner,
                    c.users.join(","),
                    format_ms(c.created_at_ms),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        ClusterCommand::Rm(a) => {
            let c = client.cluster_remove(&a.name).await?;
            println!(
                "Cluster `{}` removed, with every credential for it.",
                c.name
            );
            Ok(())
        }
        ClusterCommand::Check(a) => {
            let c = client.cluster_check(&a.name).await?;
            if a.json {
                return output::print_json(&c);
            }
            let yes = |b: bool| if b { "yes" } else { "no" };
            println!("cluster:      {}", c.name);
            println!("reachable:    {}", yes(c.reachable));
            println!(
                "credentials:  {}",
                if c.credentials_valid {
                    "valid"
                } else {
                    "not valid"
                }
            );
            if let Some(v) = &c.version {
                println!("version:      {v}");
            }
            if let Some(cap) = &c.capacity {
                println!(
                    "capacity:     {} nodes, {} cpus, {} memory, {} GPUs (largest node: {} cpus, {}, {} GPUs)",
                    cap.nodes,
                    cap.cpus,
                    ByteSize(cap.memory),
                    cap.gpus,
                    cap.max_node_cpus,
                    ByteSize(cap.max_node_memory),
                    cap.max_node_gpus
                );
            }
            if !c.partitions.is_empty() {
                println!("partitions:   {}", c.partitions.join(", "));
            }
            if let Some(p) = &c.problem {
                println!("problem:      {p}");
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The job (id, number or unique id prefix) whose spec to send.
    pub job: String,
    /// The cluster to run it on.
    #[arg(long)]
    pub to: String,
    /// Print the new job as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Submits the job's own spec again with the cluster as its target.
pub async fn push(client: &Client, a: PushArgs) -> anyhow::Result<()> {
    let job = client.job(&a.job).await?;
    let mut spec = job.spec.clone();
    spec.target = Some(a.to.clone());
    // A sweep's values were given to this one job already; they are its environment now.
    spec.array.clear();
    let new = client
        .submit(&[spec])
        .await
        .with_context(|| format!("pushing job {} to `{}`", job.number, a.to))?
        .into_iter()
        .next()
        .context("the daemon accepted no job")?;
    if a.json {
        return output::print_json(&new);
    }
    println!(
        "Job {} is job {} on `{}` now (the first stays as it was; `petri cancel {}` if it \
         should not run here too).",
        job.number, new.number, a.to, job.number
    );
    Ok(())
}
