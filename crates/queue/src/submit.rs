//! Turning submitted specs into jobs: checks against the machine, sweeps, and dependencies.
//! Everything here runs before the queue is touched, so a refused submission changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use petri_domain::{ErrorBody, ErrorCode, JobId, JobSpec};
use petri_sched::{Capacity, Gpu, GpuAsk, Request, describe};

use crate::error::QueueError;

/// A job ready for the queue, with its dependencies resolved to ids.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub id: JobId,
    pub spec: JobSpec,
    pub array_values: BTreeMap<String, String>,
    pub depends_on: Vec<JobId>,
    /// This job's origin, when it is not the submission's (a batch of pipeline steps).
    pub origin: Option<petri_domain::Origin>,
}

/// Checks and expands a submission. `find` resolves an existing job by id or number.
pub(crate) fn prepare(
    specs: Vec<JobSpec>,
    machine: &Machine,
    find: impl Fn(&str) -> Result<Option<JobId>, QueueError>,
) -> Result<Vec<Prepared>, QueueError> {
    if specs.is_empty() {
        return Err(QueueError::refused(
            ErrorCode::InvalidSpec,
            "the submission holds no job",
        ));
    }
    let mut total = 0usize;
    for (i, spec) in specs.iter().enumerate() {
        check(spec, machine).map_err(|body| at_index(body, i, specs.len()))?;
        total = total.saturating_add(spec.array_len());
    }
    if total > petri_domain::spec::MAX_ARRAY_JOBS {
        return Err(QueueError::refused(
            ErrorCode::InvalidSpec,
            format!(
                "the submission makes {total} jobs; at most {} at once",
                petri_domain::spec::MAX_ARRAY_JOBS
            ),
        ));
    }

    // Names within this submission that `after` may refer to.
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, spec) in specs.iter().enumerate() {
        if let Some(name) = &spec.name {
            by_name.entry(name.as_str()).or_default().push(i);
        }
    }
    let mut local_deps: Vec<Vec<usize>> = vec![Vec::new(); specs.len()];
    let mut outside_deps: Vec<Vec<JobId>> = vec![Vec::new(); specs.len()];
    for (i, spec) in specs.iter().enumerate() {
        for key in &spec.after {
            if let Some(idx) = by_name.get(key.as_str()) {
                local_deps[i].extend(idx.iter().copied());
                continue;
            }
            match find(key)? {
                Some(id) => outside_deps[i].push(id),
                None => {
                    return Err(QueueError::Refused(
                        ErrorBody::new(
                            ErrorCode::UnknownDependency,
                            format!(
                                "`after: {key}` names no job: give a job number, id, or the name \
                                 of a job in the same submission"
                            ),
                        )
                        .with_details(serde_json::json!({ "after": key })),
                    ));
                }
            }
        }
    }
    let order = topological(&local_deps).ok_or_else(|| {
        QueueError::refused(
            ErrorCode::DependencyCycle,
            "the jobs of this submission depend on each other in a circle; remove one `after`",
        )
    })?;

    // Expand sweeps in dependency order, so ids of dependencies are known.
    let mut ids_of: Vec<Vec<JobId>> = vec![Vec::new(); specs.len()];
    let mut prepared_of: Vec<Vec<Prepared>> = (0..specs.len()).map(|_| Vec::new()).collect();
    for &i in &order {
        let mut deps = outside_deps[i].clone();
        for &d in &local_deps[i] {
            deps.extend(ids_of[d].iter().copied());
        }
        deps.sort();
        deps.dedup();
        for (spec, values) in specs[i].expand() {
            let id = JobId::new();
            ids_of[i].push(id);
            prepared_of[i].push(Prepared {
                id,
                spec,
                array_values: values,
                depends_on: deps.clone(),
                origin: None,
            });
        }
    }
    // Keep the user's order (and sweep order) for numbering.
    Ok(prepared_of.into_iter().flatten().collect())
}

fn at_index(body: ErrorBody, i: usize, n: usize) -> QueueError {
    if n == 1 {
        return QueueError::Refused(body);
    }
    let mut body = body;
    body.message = format!("job {} of {n}: {}", i + 1, body.message);
    QueueError::Refused(body)
}

/// Kahn's algorithm; `None` when there is a cycle.
fn topological(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    let n = deps.len();
    let mut indegree = vec![0usize; n];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            indegree[i] += 1;
            users[d].push(i);
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    ready.reverse();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop() {
        order.push(i);
        for &u in &users[i] {
            indegree[u] -= 1;
            if indegree[u] == 0 {
                ready.push(u);
            }
        }
    }
    (order.len() == n).then_some(order)
}

/// What a submission is checked against.
pub(crate) struct Machine {
    pub capacity: Capacity,
    /// The GPUs (foreign use left out: it may go away).
    pub gpus: Vec<Gpu>,
    pub gpu_reserve: u64,
    /// The MIG profiles this machine's GPUs offer.
    pub mig_profiles: Vec<String>,
    /// Folders container mounts may come from.
    pub mount_roots: Vec<PathBuf>,
    /// The executors, each of which admits the specs of its target (an image must be in the
    /// Docker engine, say).
    pub executors: petri_domain::Executors,
}

/// Checks one spec against this machine.
fn check(spec: &JobSpec, machine: &Machine) -> Result<(), ErrorBody> {
    let capacity = machine.capacity;
    spec.validate()?;
    if spec.image.is_some() {
        for m in &spec.mounts {
            check_mount(&m.source, &machine.mount_roots)?;
        }
    }
    let target = crate::engine::target_of_spec(spec);
    match machine.executors.get(target) {
        Some(exec) => exec.admit(spec)?,
        None if petri_domain::is_remote_target(target) => {
            return Err(ErrorBody::new(
                ErrorCode::UnknownTarget,
                format!(
                    "no cluster is called `{target}` (`petri cluster ls` lists them; `petri \
                     cluster add` adds one)"
                ),
            ));
        }
        None => {
            return Err(ErrorBody::new(
                ErrorCode::UnknownTarget,
                format!("this daemon has no executor for `{target}` jobs"),
            ));
        }
    }
    // The cluster checked what it can run; this machine's limits are not its.
    if petri_domain::is_remote_target(target) {
        return check_workdir(spec);
    }
    if spec.resources.wants_gpu() {
        check_gpus(spec, machine)?;
    }
    let request = Request {
        cpu_millis: spec.resources.cpu_millis().max(1),
        memory: spec.resources.memory_bytes(),
        ..Default::default()
    };
    if request.cpu_millis > capacity.cpu_millis || request.memory > capacity.memory {
        let offered = Request {
            cpu_millis: capacity.cpu_millis,
            memory: capacity.memory,
            ..Default::default()
        };
        return Err(ErrorBody::new(
            ErrorCode::ResourcesUnavailable,
            format!(
                "the job asks for {}, but this machine offers at most {} to jobs; ask for less",
                describe(&request),
                describe(&offered)
            ),
        )
        .with_details(serde_json::json!({
            "max_cpus": capacity.cpu_millis as f64 / 1000.0,
            "max_memory": petri_domain::ByteSize(capacity.memory).to_string(),
        })));
    }
    check_workdir(spec)?;
    // A container job's command is looked up in its image (the engine says if it is missing).
    if let Some(program) = spec
        .command
        .as_ref()
        .and_then(|c| c.first())
        .filter(|_| spec.image.is_none())
    {
        let path_var = spec
            .env
            .get("PATH")
            .cloned()
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_default();
        if find_program(program, spec.workdir.as_deref(), &path_var).is_none() {
            return Err(ErrorBody::new(
                ErrorCode::CommandNotFound,
                if program.contains('/') {
                    format!("`{program}` does not exist or is not executable")
                } else {
                    format!("`{program}` is not found on PATH; give its full path or fix PATH")
                },
            )
            .with_details(serde_json::json!({ "command": program })));
        }
    }
    Ok(())
}

/// The working directory, when the spec names one, is an absolute path to a folder.
fn check_workdir(spec: &JobSpec) -> Result<(), ErrorBody> {
    if let Some(dir) = &spec.workdir {
        if !dir.is_absolute() {
            return Err(ErrorBody::new(
                ErrorCode::InvalidSpec,
                format!("workdir `{}` must be an absolute path", dir.display()),
            )
            .with_details(serde_json::json!({ "field": "workdir" })));
        }
        if !dir.is_dir() {
            return Err(ErrorBody::new(
                ErrorCode::WorkdirNotFound,
                format!("the working directory {} does not exist", dir.display()),
            ));
        }
    }
    Ok(())
}

fn check_gpus(spec: &JobSpec, machine: &Machine) -> Result<(), ErrorBody> {
    if machine.gpus.is_empty() {
        return Err(ErrorBody::new(
            ErrorCode::NoGpus,
            "the job asks for a GPU, but Petri sees no GPUs on this machine (`petri gpus` says \
             why); drop `gpus`, `gpu_memory` and `mig` to run it on the CPU",
        ));
    }
    if let Some(profile) = &spec.resources.mig {
        if machine.mig_profiles.iter().any(|p| p == profile) {
            return Ok(());
        }
        let offered = if machine.mig_profiles.is_empty() {
            "no GPU here has MIG enabled".to_string()
        } else {
            format!(
                "the MIG profiles here are {}",
                machine.mig_profiles.join(", ")
            )
        };
        return Err(ErrorBody::new(
            ErrorCode::ResourcesUnavailable,
            format!("the job asks for a MIG instance of profile `{profile}`, but {offered}"),
        )
        .with_details(
            serde_json::json!({ "field": "resources.mig", "profiles": machine.mig_profiles }),
        ));
    }
    let ask = match (spec.resources.gpus, spec.resources.gpu_memory) {
        (Some(n), _) => GpuAsk::Whole(n),
        (_, Some(bytes)) => GpuAsk::Memory(bytes.0),
        _ => GpuAsk::None,
    };
    if petri_sched::gpu_request_fits(&machine.gpus, machine.gpu_reserve, ask) {
        return Ok(());
    }
    let healthy: Vec<&Gpu> = machine.gpus.iter().filter(|g| g.healthy).collect();
    let largest = healthy
        .iter()
        .map(|g| g.memory_total.saturating_sub(machine.gpu_reserve))
        .max()
        .unwrap_or(0);
    let (asked, fits) = match ask {
        GpuAsk::Whole(n) => (
            format!("{n} whole GPUs"),
            format!("{} whole GPUs", healthy.len()),
        ),
        GpuAsk::Memory(bytes) => (
            format!("{} of GPU memory", petri_domain::ByteSize(bytes)),
            format!("{} on one GPU", petri_domain::ByteSize(largest)),
        ),
        GpuAsk::None | GpuAsk::Mig(_) => (String::new(), String::new()),
    };
    Err(ErrorBody::new(
        ErrorCode::ResourcesUnavailable,
        format!("the job asks for {asked}; the largest request that fits here is {fits}"),
    )
    .with_details(serde_json::json!({
        "gpus": healthy.len(),
        "max_gpu_memory": petri_domain::ByteSize(largest).to_string(),
    })))
}

/// Finds an executable the way `execvp` would.
fn find_program(program: &str, workdir: Option<&Path>, path_var: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let p = Path::new(program);
        let p = match workdir {
            Some(w) if p.is_relative() => w.join(p),
            _ => p.to_path_buf(),
        };
        return executable(&p).then_some(p);
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| executable(p))
}

/// A mount's source must exist and, with symbolic links resolved, lie under one of `roots`.
pub fn check_mount(source: &Path, roots: &[PathBuf]) -> Result<PathBuf, ErrorBody> {
    let refuse = |code: ErrorCode, message: String| {
        Err(
            ErrorBody::new(code, message).with_details(serde_json::json!({
                "field": "mounts",
                "allowed": roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>(),
            })),
        )
    };
    let Ok(real) = source.canonicalize() else {
        return refuse(
            ErrorCode::InvalidSpec,
            format!("mounts: {} does not exist", source.display()),
        );
    };
    let allowed = roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .any(|root| real.starts_with(&root));
    if !allowed {
        let list: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        return refuse(
            ErrorCode::MountNotAllowed,
            format!(
                "{} may not be mounted: only folders under {} are allowed (setting \
                 docker.mount_roots)",
                source.display(),
                list.join(", ")
            ),
        );
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap() -> Machine {
        Machine {
            capacity: Capacity {
                cpu_millis: 2000,
                memory: 1 << 30,
            },
            gpus: Vec::new(),
            gpu_reserve: 0,
            mig_profiles: Vec::new(),
            mount_roots: Vec::new(),
            executors: {
                let e = petri_domain::Executors::default();
                e.register(petri_domain::TARGET_LOCAL, std::sync::Arc::new(AdmitAll));
                e
            },
        }
    }

    /// These tests check admission only: an executor that accepts every spec and is never asked
    /// to run one.
    struct AdmitAll;
    impl petri_domain::Executor for AdmitAll {
        fn start(
            &self,
            _: petri_domain::Launch,
            _: Box<dyn FnOnce(petri_domain::ExitReport) + Send>,
        ) -> Result<petri_domain::RunHandle, petri_domain::ExecError> {
            unreachable!("admission starts nothing")
        }
        fn stop(
            &self,
            _: &petri_domain::RunKey,
            _: &petri_domain::RunHandle,
            _: petri_domain::StopSignal,
        ) -> Result<(), petri_domain::ExecError> {
            unreachable!("admission stops nothing")
        }
        fn probe(&self, _: &petri_domain::RunKey, _: &Path) -> petri_domain::RunProbe {
            unreachable!("admission probes nothing")
        }
    }

    fn code(r: Result<Vec<Prepared>, QueueError>) -> ErrorCode {
        match r {
            Err(QueueError::Refused(b)) => b.code,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn specs(text: &str) -> Vec<JobSpec> {
        JobSpec::many_from_yaml(text).unwrap()
    }

    #[test]
    fn refusals_have_codes() {
        let none = |_: &str| Ok(None);
        assert_eq!(
            code(prepare(specs("command: [nope-not-here]"), &cap(), none)),
            ErrorCode::CommandNotFound
        );
        assert_eq!(
            code(prepare(
                specs("command: [\"true\"]\nresources: {cpus: 64}"),
                &cap(),
                none
            )),
            ErrorCode::ResourcesUnavailable
        );
        assert_eq!(
            code(prepare(
                specs("command: [\"true\"]\nresources: {memory: 64GiB}"),
                &cap(),
                none
            )),
            ErrorCode::ResourcesUnavailable
        );
        assert_eq!(
            code(prepare(
                specs("command: [\"true\"]\nafter: ['77']"),
                &cap(),
                none
            )),
            ErrorCode::UnknownDependency
        );
        assert_eq!(
            code(prepare(
                specs("command: [\"true\"]\nworkdir: /no/such/dir"),
                &cap(),
                none
            )),
            ErrorCode::WorkdirNotFound
        );
        assert_eq!(
            code(prepare(
                specs("command: [\"true\"]\nmounts: [{source: /tmp}]"),
                &cap(),
                none
            )),
            ErrorCode::InvalidSpec
        );
        assert_eq!(
            code(prepare(
                specs("command: [\"true\"]\nresources: {gpus: 1}"),
                &cap(),
                none
            )),
            ErrorCode::NoGpus
        );
        let cyclic = "name: a\ncommand: [\"true\"]\nafter: [b]\n---\nname: b\ncommand: [\"true\"]\nafter: [a]\n";
        assert_eq!(
            code(prepare(specs(cyclic), &cap(), none)),
            ErrorCode::DependencyCycle
        );
        let selfish = "name: a\ncommand: [\"true\"]\nafter: [a]\n";
        assert_eq!(
            code(prepare(specs(selfish), &cap(), none)),
            ErrorCode::DependencyCycle
        );
    }

    #[test]
    fn names_in_one_submission_resolve_to_every_job_of_a_sweep() {
        let text = "name: train\ncommand: [\"true\"]\narray: {lr: ['1', '2']}\n---\nname: report\ncommand: [\"true\"]\nafter: [train]\n";
        let jobs = prepare(specs(text), &cap(), |_| Ok(None)).unwrap();
        assert_eq!(jobs.len(), 3);
        assert_eq!(jobs[2].depends_on.len(), 2);
        assert!(jobs[2].depends_on.contains(&jobs[0].id));
        assert_eq!(jobs[1].array_values["lr"], "2");
    }

    #[test]
    fn mounts_stay_inside_their_roots() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), root.join("escape")).unwrap();
        let roots = vec![root.clone()];
        assert!(check_mount(&root.join("data"), &roots).is_ok());
        let code = |p: &Path| check_mount(p, &roots).unwrap_err().code;
        assert_eq!(
            code(&dir.path().join("outside")),
            ErrorCode::MountNotAllowed
        );
        // A link inside a root that points out of it is judged by where it points.
        assert_eq!(code(&root.join("escape")), ErrorCode::MountNotAllowed);
        assert_eq!(code(&root.join("missing")), ErrorCode::InvalidSpec);
        assert_eq!(code(Path::new("/etc")), ErrorCode::MountNotAllowed);
    }
}
