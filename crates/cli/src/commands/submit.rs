use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use petri_client::Client;
use petri_domain::sweep::SweepValues;
use petri_domain::{ByteSize, JobSpec, Millis};

use crate::mounts::parse_mount;
use crate::output;

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// A job spec in YAML (several separated by `---`); flags given too override its fields.
    #[arg(short, long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[arg(long)]
    pub name: Option<String>,
    /// CPU cores to reserve (default 1).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Memory to reserve, e.g. 4GiB.
    #[arg(long, value_name = "SIZE")]
    pub mem: Option<ByteSize>,
    /// Whole GPUs.
    #[arg(long)]
    pub gpus: Option<u32>,
    /// A slice of one GPU's memory, e.g. 8GiB.
    #[arg(long, value_name = "SIZE")]
    pub gpu_mem: Option<ByteSize>,
    /// Higher runs first (-1000..1000).
    #[arg(long, allow_hyphen_values = true)]
    pub priority: Option<i32>,
    #[arg(long)]
    pub queue: Option<String>,
    /// Run only after these jobs succeeded (numbers, ids; repeat or separate with commas).
    #[arg(long, value_delimiter = ',', value_name = "ID")]
    pub after: Vec<String>,
    /// Retry a failed attempt up to N times.
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Wait before a retry (doubling each time), e.g. 30s.
    #[arg(long, value_name = "DURATION")]
    pub backoff: Option<Millis>,
    /// Stop an attempt after this long, e.g. 1h. A GPU job with a timeout may also use GPUs kept
    /// for a job ahead of it, when it would end before they are needed (backfill).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<Millis>,
    /// Run in this container image.
    #[arg(long)]
    pub image: Option<String>,
    /// A host folder for the container: HOST (the same path inside), HOST:CONTAINER, with :ro for
    /// read-only; repeatable, added to the file's `mounts:`. Container jobs only (with --image or
    /// `image:`), and only folders the daemon allows (`docker.mount_roots`, the Petri home).
    #[arg(long, value_name = "HOST[:CONTAINER][:ro]")]
    pub mount: Vec<String>,
    /// A sweep: one job per value, KEY=V1,V2,... or a range KEY=FROM..TO[:STEP] (both ends
    /// included: i=1..100000, lr=0.1..0.5:0.1); repeat for a grid.
    #[arg(long, value_name = "KEY=V1,V2|KEY=FROM..TO[:STEP]")]
    pub array: Vec<String>,
    /// local (default), a cluster name, or auto.
    #[arg(long)]
    pub target: Option<String>,
    /// Extra environment, KEY=VALUE (repeatable).
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// A secret the job receives (`petri secret set`), added to the file's `secrets:`: a value
    /// in the variable of its name, a file's path in its name upper-cased (repeatable).
    #[arg(long, value_name = "NAME")]
    pub secret: Vec<String>,
    /// Working directory (default: the current one).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Submit held: the job waits for `petri release`.
    #[arg(long)]
    pub hold: bool,
    /// A shell script to run instead of a command.
    #[arg(long, value_name = "SCRIPT", conflicts_with = "command")]
    pub run: Option<String>,
    /// Print the new jobs as JSON.
    #[arg(long)]
    pub json: bool,
    /// Do not pass this shell's PATH and Python environment (VIRTUAL_ENV, CONDA_PREFIX,
    /// CONDA_DEFAULT_ENV, PYTHONPATH) on to a local job; it then runs with the daemon's. A job in
    /// a container (--image, or `image:` in the file) never gets them: it runs with its image's.
    #[arg(long)]
    pub no_export: bool,
    /// The command and its arguments (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub async fn run(client: &Client, args: SubmitArgs) -> anyhow::Result<()> {
    let specs = build_specs(&args)?;
    let jobs = client.submit(&specs).await?;
    if args.json {
        return output::print_json(&jobs);
    }
    match jobs.as_slice() {
        [] => println!("No job was queued."),
        [one] => println!("Queued job #{} ({}), id {}", one.number, one.name, one.id),
        [first, .., last] => println!(
            "Queued {} jobs, #{} to #{} ({})",
            jobs.len(),
            first.number,
            last.number,
            first.name
        ),
    }
    Ok(())
}

fn build_specs(args: &SubmitArgs) -> anyhow::Result<Vec<JobSpec>> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let (specs, base) = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let specs = JobSpec::many_from_yaml(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let dir = path
                .parent()
                .map(|p| {
                    if p.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        p
                    }
                })
                .unwrap_or(Path::new("."));
            (specs, cwd.join(dir))
        }
        None => {
            if args.command.is_empty() && args.run.is_none() {
                anyhow::bail!(
                    "nothing to run: give a command after `--` (petri submit -- python train.py), \
                     --run SCRIPT, or -f job.yaml"
                );
            }
            (vec![JobSpec::default()], cwd.clone())
        }
    };
    complete(specs, args, &cwd, &base)
}

/// The specs read (or a blank one) with the flags laid over them, the shell's environment for
/// local jobs, and absolute working directories: relative ones in the file count from its folder
/// (`base`), the flag's from `cwd`.
fn complete(
    mut specs: Vec<JobSpec>,
    args: &SubmitArgs,
    cwd: &Path,
    base: &Path,
) -> anyhow::Result<Vec<JobSpec>> {
    let mounts = args
        .mount
        .iter()
        .map(|m| parse_mount(m, cwd))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for spec in &mut specs {
        overlay(spec, args)?;
        spec.mounts.extend(mounts.iter().cloned());
        // After the overlay, so that `--image` counts: the shell's PATH would hide the image's
        // own (its venv, its conda), and its paths mean nothing inside the container.
        if !args.no_export && spec.image.is_none() {
            export_env(spec);
        }
        spec.workdir = Some(match (&args.workdir, &spec.workdir) {
            (Some(w), _) => cwd.join(w),
            (None, Some(w)) => base.join(w),
            (None, None) => cwd.to_path_buf(),
        });
    }
    Ok(specs)
}

/// The variables that decide which programs a command finds: what a user expects a job to share
/// with the shell it was submitted from (Slurm exports the whole environment; Petri only these, so
/// no credentials end up in the queue). Values the spec sets win. Local jobs only: a container
/// runs with its image's environment.
const EXPORTED: [&str; 5] = [
    "PATH",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV",
    "PYTHONPATH",
];

fn export_env(spec: &mut JobSpec) {
    for key in EXPORTED {
        if let Ok(value) = std::env::var(key) {
            spec.env.entry(key.to_string()).or_insert(value);
        }
    }
}

fn overlay(spec: &mut JobSpec, a: &SubmitArgs) -> anyhow::Result<()> {
    if !a.command.is_empty() {
        spec.command = Some(a.command.clone());
        spec.run = None;
    }
    if let Some(r) = &a.run {
        spec.run = Some(r.clone());
        spec.command = None;
    }
    if a.name.is_some() {
        spec.name = a.name.clone();
    }
    if a.cpus.is_some() {
        spec.resources.cpus = a.cpus;
    }
    if a.mem.is_some() {
        spec.resources.memory = a.mem;
    }
    if a.gpus.is_some() {
        spec.resources.gpus = a.gpus;
    }
    if a.gpu_mem.is_some() {
        spec.resources.gpu_memory = a.gpu_mem;
    }
    if let Some(p) = a.priority {
        spec.priority = p;
    }
    if a.queue.is_some() {
        spec.queue = a.queue.clone();
    }
    spec.after
        .extend(a.after.iter().filter(|s| !s.is_empty()).cloned());
    if let Some(n) = a.retries {
        spec.retries.max = n;
    }
    if let Some(b) = a.backoff {
        spec.retries.backoff = b;
    }
    if a.timeout.is_some() {
        spec.timeout = a.timeout;
    }
    if a.image.is_some() {
        spec.image = a.image.clone();
    }
    if a.target.is_some() {
        spec.target = a.target.clone();
    }
    if a.hold {
        spec.hold = true;
    }
    for kv in &a.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--env `{kv}`: write it as KEY=VALUE"))?;
        spec.env.insert(k.to_string(), v.to_string());
    }
    for name in &a.secret {
        if !spec.secrets.iter().any(|s| &s.name == name) {
            spec.secrets
                .push(petri_domain::SecretUse::named(name.clone()));
        }
    }
    for item in &a.array {
        let (k, values) = item.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("--array `{item}`: write it as KEY=V1,V2,... or KEY=FROM..TO[:STEP]")
        })?;
        // A range stays one string however many jobs it makes: the daemon expands it.
        let values = if !values.contains(',') && values.contains("..") {
            SweepValues::Range(values.to_string())
        } else {
            SweepValues::List(values.split(',').map(str::to_string).collect())
        };
        spec.array.insert(k.to_string(), values);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use petri_domain::Mount;

    use super::*;
    use crate::{Cli, Command};

    fn args(argv: &[&str]) -> SubmitArgs {
        let cli = Cli::try_parse_from(["petri", "submit"].iter().chain(argv)).unwrap();
        match cli.command {
            Some(Command::Submit(a)) => *a,
            other => panic!("not a submit: {other:?}"),
        }
    }

    fn specs(yaml: Option<&str>, argv: &[&str]) -> Vec<JobSpec> {
        let read = match yaml {
            Some(text) => JobSpec::many_from_yaml(text).unwrap(),
            None => vec![JobSpec::default()],
        };
        complete(read, &args(argv), Path::new("/work"), Path::new("/work")).unwrap()
    }

    #[test]
    fn local_jobs_get_the_shells_path() {
        let path = std::env::var("PATH").expect("tests run with a PATH");
        let spec = &specs(None, &["--", "python", "train.py"])[0];
        assert_eq!(spec.env.get("PATH"), Some(&path));
        let spec = &specs(None, &["--no-export", "--", "python"])[0];
        assert_eq!(spec.env.get("PATH"), None);
    }

    #[test]
    fn container_jobs_keep_their_images_path() {
        let spec = &specs(None, &["--image", "petri/python:3.11", "--", "python"])[0];
        assert_eq!(spec.env.get("PATH"), None, "{:?}", spec.env);
        let yaml = "image: petri/python:3.11\ncommand: [python, train.py]\n";
        let spec = &specs(Some(yaml), &[])[0];
        assert!(
            EXPORTED.iter().all(|k| !spec.env.contains_key(*k)),
            "{:?}",
            spec.env
        );
        // What the user sets on purpose still goes in.
        let spec = &specs(None, &["--image", "i", "-e", "PATH=/x", "--", "python"])[0];
        assert_eq!(spec.env.get("PATH").map(String::as_str), Some("/x"));
    }

    #[test]
    fn mounts_come_from_the_flag_too() {
        let yaml = "image: i\ncommand: [x]\nmounts: [{source: /data}]\n";
        let argv = ["--mount", "/scratch:/tmp/s:ro", "--mount", "ckpt"];
        let spec = &specs(Some(yaml), &argv)[0];
        spec.validate().unwrap();
        let flag = |source: &str, target: Option<&str>, read_only| Mount {
            source: source.into(),
            target: target.map(PathBuf::from),
            read_only,
        };
        assert_eq!(
            spec.mounts,
            [
                flag("/data", None, false),
                flag("/scratch", Some("/tmp/s"), true),
                flag("/work/ckpt", None, false),
            ]
        );
        let err = build_specs(&args(&["--image", "i", "--mount", "/a:b", "--", "x"])).unwrap_err();
        assert!(err.to_string().contains("--mount `/a:b`"), "{err}");
    }

    #[test]
    fn secrets_come_from_the_flag_too() {
        let yaml = "command: [x]\nsecrets: [{name: kaggle.json, env: KAGGLE_CONFIG}]\n";
        let spec = &specs(
            Some(yaml),
            &["--secret", "HF_TOKEN", "--secret", "kaggle.json"],
        )[0];
        let names: Vec<&str> = spec.secrets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["kaggle.json", "HF_TOKEN"]);
        assert_eq!(spec.secrets[0].env.as_deref(), Some("KAGGLE_CONFIG"));
    }

    #[test]
    fn mounts_without_an_image_are_refused_as_in_a_file() {
        let spec = &specs(None, &["--mount", "/data", "--", "x"])[0];
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.contains("give `image` too"), "{err}");
    }
}
