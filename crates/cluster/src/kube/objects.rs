//! The objects of one attempt on Kubernetes, as Petri lowers a job to them: its `batch/v1` Job,
//! the Secret of its secrets, the ConfigMap of a small working directory, their labels; and
//! what Petri reads back of a Job and its pods (how it ended, its exit code, why it waits).

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{Job, JobSpec as KubeJobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HostPathVolumeSource, KeyToPath, Pod, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, Secret, SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use petri_domain::Launch;

use crate::engine::EngineView;

/// Where a pod's job writes its outputs (an `emptyDir`).
pub(super) const OUTPUT_MOUNT: &str = "/petri/output";
/// Where a pod sees its attempt's secret files (from the attempt's Secret).
pub(super) const SECRETS_MOUNT: &str = "/petri/secrets";
/// Where a pod without a shared path works: a copy of the job's working directory.
pub(super) const WORK_MOUNT: &str = "/petri/work";
/// Where that copy comes from: the attempt's ConfigMap.
pub(super) const WORK_IN: &str = "/petri/work-in";
/// The most a working directory may hold to travel in a ConfigMap (Kubernetes keeps an object
/// under 1 MiB).
pub const MAX_WORKDIR_MAP: u64 = 900 << 10;
/// The most files it may hold to travel so.
pub const MAX_WORKDIR_FILES: usize = 1000;
/// What ties a Job (and its pods and Secret) to the Petri job, attempt and user.
pub(super) fn job_labels(name: &str, launch: &Launch) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert(
        "app.kubernetes.io/managed-by".to_string(),
        "petri".to_string(),
    );
    labels.insert("petri.dev/job".to_string(), launch.key.job.to_string());
    labels.insert(
        "petri.dev/attempt".to_string(),
        launch.key.attempt.to_string(),
    );
    labels.insert("petri.dev/run".to_string(), name.to_string());
    if is_label_value(&launch.user) {
        labels.insert("petri.dev/user".to_string(), launch.user.clone());
    }
    labels
}

/// Where an attempt runs on a cluster with a shared path: the path (a `hostPath` volume at the
/// same path in the pod), the copy of the working directory, the environment with the output
/// folder moved there, and whom the pod runs as (the job's owner, so that its files on the
/// shared path are theirs).
pub struct OnShared<'a> {
    pub shared: &'a Path,
    pub workdir: &'a Path,
    pub env: &'a [(String, String)],
    pub uid: u32,
    pub gid: u32,
}

/// The Job of one attempt: the spec lowered to what a 1.20 server knows. With a shared path its
/// pod works there; without, its outputs go to an `emptyDir` (and stay in the pod), and its
/// working directory is a copy of the attempt's ConfigMap (`copied`: its keys and their paths)
/// when it was small enough for one, the image's own otherwise.
pub fn job_object(
    name: &str,
    launch: &Launch,
    image: &str,
    on: Option<OnShared<'_>>,
    copied: Option<&[KeyToPath]>,
) -> Job {
    let labels = job_labels(name, launch);
    let output = launch
        .env
        .iter()
        .find(|(k, _)| k == "PETRI_OUTPUT_DIR")
        .map(|(_, v)| v.clone());
    let secret = |k: &str| launch.secrets.iter().find(|s| s.name == k);
    let env: Vec<EnvVar> = on
        .as_ref()
        .map_or(&launch.env[..], |on| on.env)
        .iter()
        .map(|(k, v)| match secret(k) {
            // A secret's value comes from the attempt's Secret, never from the Job itself.
            Some(s) if !s.file => EnvVar {
                name: k.clone(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: name.to_string(),
                        key: k.clone(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            },
            // A secret file is the Secret's key of that name, mounted read-only.
            Some(_) => EnvVar {
                name: k.clone(),
                value: Some(format!("{SECRETS_MOUNT}/{k}")),
                ..EnvVar::default()
            },
            None => {
                // Paths in this machine's output folder name the pod's.
                let v = match &output {
                    Some(out) if on.is_none() && v.starts_with(out.as_str()) => {
                        format!("{OUTPUT_MOUNT}{}", &v[out.len()..])
                    }
                    _ => v.clone(),
                };
                EnvVar {
                    name: k.clone(),
                    value: Some(v),
                    ..EnvVar::default()
                }
            }
        })
        .collect();
    let files: Vec<KeyToPath> = launch
        .secrets
        .iter()
        .filter(|s| s.file)
        .map(|s| KeyToPath {
            key: s.name.clone(),
            path: s.name.clone(),
            mode: None,
        })
        .collect();
    let (mut mounts, mut volumes) = match &on {
        Some(on) => (
            vec![VolumeMount {
                name: "shared".to_string(),
                mount_path: on.shared.display().to_string(),
                ..VolumeMount::default()
            }],
            vec![Volume {
                name: "shared".to_string(),
                host_path: Some(HostPathVolumeSource {
                    path: on.shared.display().to_string(),
                    type_: Some("Directory".to_string()),
                }),
                ..Volume::default()
            }],
        ),
        None => (
            vec![VolumeMount {
                name: "output".to_string(),
                mount_path: OUTPUT_MOUNT.to_string(),
                ..VolumeMount::default()
            }],
            vec![Volume {
                name: "output".to_string(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            }],
        ),
    };
    if !files.is_empty() {
        mounts.push(VolumeMount {
            name: "secrets".to_string(),
            mount_path: SECRETS_MOUNT.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: "secrets".to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(name.to_string()),
                items: Some(files),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    let mut amounts = BTreeMap::new();
    if let Some(c) = launch.resources.cpus {
        amounts.insert(
            "cpu".to_string(),
            Quantity(format!("{}m", (c * 1000.0).ceil() as u64)),
        );
    }
    if let Some(m) = launch.resources.memory {
        amounts.insert("memory".to_string(), Quantity(m.0.to_string()));
    }
    let mut limits = amounts.clone();
    if let Some(g) = launch.resources.gpus.filter(|g| *g > 0) {
        limits.insert("nvidia.com/gpu".to_string(), Quantity(g.to_string()));
    }
    let mut init = Vec::new();
    let mut workdir = on.as_ref().map(|on| on.workdir.display().to_string());
    if let (None, Some(items)) = (&on, copied) {
        // The ConfigMap's files (links into its `..data`, read-only) are copied into a folder
        // the job may write, by the job's own image before the job starts.
        volumes.push(Volume {
            name: "work-in".to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: name.to_string(),
                items: Some(items.to_vec()),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        volumes.push(Volume {
            name: "work".to_string(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
        let work = VolumeMount {
            name: "work".to_string(),
            mount_path: WORK_MOUNT.to_string(),
            ..VolumeMount::default()
        };
        init.push(Container {
            name: "workdir".to_string(),
            image: Some(image.to_string()),
            command: Some(vec![
                "sh".to_string(),
                "-c".to_string(),
                format!(
                    "cd {WORK_IN} && for f in * .[!.]*; do if [ -e \"$f\" ]; then cp -RL \"$f\" \
                     {WORK_MOUNT}/ || exit 1; fi; done"
                ),
            ]),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "work-in".to_string(),
                    mount_path: WORK_IN.to_string(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
                work.clone(),
            ]),
            ..Container::default()
        });
        mounts.push(work);
        workdir = Some(WORK_MOUNT.to_string());
    }
    let container = Container {
        name: "job".to_string(),
        image: Some(image.to_string()),
        command: Some(launch.argv.clone()),
        env: Some(env),
        resources: Some(ResourceRequirements {
            requests: (!amounts.is_empty()).then_some(amounts),
            limits: (!limits.is_empty()).then_some(limits),
            ..ResourceRequirements::default()
        }),
        volume_mounts: Some(mounts),
        working_dir: workdir,
        ..Container::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(KubeJobSpec {
            // An attempt is one run: Petri retries, not the Job controller.
            backoff_limit: Some(0),
            active_deadline_seconds: launch.timeout_ms.map(|t| t.div_ceil(1000) as i64),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_string()),
                    security_context: on.as_ref().map(|on| PodSecurityContext {
                        run_as_user: Some(i64::from(on.uid)),
                        run_as_group: Some(i64::from(on.gid)),
                        ..PodSecurityContext::default()
                    }),
                    init_containers: (!init.is_empty()).then_some(init),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..KubeJobSpec::default()
        }),
        ..Job::default()
    }
}

/// The Secret of an attempt that has secrets: the same name and labels as its Job, one key per
/// variable (a value secret's value, a file secret's content). `None` for an attempt without.
pub fn secret_object(name: &str, launch: &Launch) -> std::io::Result<Option<Secret>> {
    if launch.secrets.is_empty() {
        return Ok(None);
    }
    let mut data = BTreeMap::new();
    for s in &launch.secrets {
        let Some((_, v)) = launch.env.iter().find(|(k, _)| *k == s.name) else {
            continue;
        };
        let bytes = if s.file {
            std::fs::read(v)?
        } else {
            v.as_bytes().to_vec()
        };
        data.insert(s.name.clone(), ByteString(bytes));
    }
    let labels = job_labels(name, launch);
    Ok(Some(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        data: Some(data),
        type_: Some("Opaque".to_string()),
        ..Secret::default()
    }))
}

/// How a working directory travels to a cluster without a shared path.
pub enum WorkdirMap {
    /// Nothing to carry.
    Empty,
    /// Too big for a ConfigMap: why.
    TooBig(String),
    /// The ConfigMap, and the items that put each of its keys back at its path.
    Map(Box<ConfigMap>, Vec<KeyToPath>),
}

/// The ConfigMap that carries a small working directory to a cluster without a shared path:
/// the same name and labels as the attempt's Job, one key (`f0`, `f1`, …) per file. Links and
/// what is not a plain file are left out.
pub fn workdir_map(name: &str, launch: &Launch) -> std::io::Result<WorkdirMap> {
    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut Vec<(String, Vec<u8>)>,
        total: &mut u64,
    ) -> std::io::Result<Option<String>> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let kind = e.file_type()?;
            if kind.is_dir() {
                if let Some(why) = walk(root, &e.path(), out, total)? {
                    return Ok(Some(why));
                }
            } else if kind.is_file() {
                *total += e.metadata()?.len();
                if *total > MAX_WORKDIR_MAP || out.len() >= MAX_WORKDIR_FILES {
                    return Ok(Some(format!(
                        "it holds more than the {} KiB or {MAX_WORKDIR_FILES} files a ConfigMap \
                         carries",
                        MAX_WORKDIR_MAP >> 10
                    )));
                }
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .unwrap_or(&e.path())
                    .to_path_buf();
                out.push((rel.display().to_string(), std::fs::read(e.path())?));
            }
        }
        Ok(None)
    }
    let mut files = Vec::new();
    if let Some(why) = walk(&launch.workdir, &launch.workdir, &mut files, &mut 0)? {
        return Ok(WorkdirMap::TooBig(why));
    }
    if files.is_empty() {
        return Ok(WorkdirMap::Empty);
    }
    let mut data = BTreeMap::new();
    let mut items = Vec::new();
    for (i, (path, bytes)) in files.into_iter().enumerate() {
        let key = format!("f{i}");
        items.push(KeyToPath {
            key: key.clone(),
            path,
            mode: None,
        });
        data.insert(key, ByteString(bytes));
    }
    Ok(WorkdirMap::Map(
        Box::new(ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(job_labels(name, launch)),
                ..ObjectMeta::default()
            },
            binary_data: Some(data),
            ..ConfigMap::default()
        }),
        items,
    ))
}

/// Whether a string can be a label's value (63 characters of `[A-Za-z0-9._-]`, alphanumeric at
/// both ends).
pub(super) fn is_label_value(s: &str) -> bool {
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// How a Job ended, from its status: `Some(Ok(()))` succeeded, `Some(Err(reason))` failed,
/// `None` not yet.
pub fn job_end(job: &Job) -> Option<Result<(), String>> {
    let status = job.status.as_ref()?;
    for c in status.conditions.iter().flatten() {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "Complete" => return Some(Ok(())),
            "Failed" => {
                return Some(Err(c
                    .reason
                    .clone()
                    .unwrap_or_else(|| "Failed".to_string())));
            }
            _ => {}
        }
    }
    if status.succeeded.unwrap_or(0) > 0 {
        return Some(Ok(()));
    }
    if status.failed.unwrap_or(0) > 0 {
        return Some(Err("BackoffLimitExceeded".to_string()));
    }
    None
}

/// The exit code of the job's container in the newest of the Job's pods.
pub fn pod_exit_code(pods: &[Pod]) -> Option<i32> {
    newest(pods)?
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == "job")?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

pub(super) fn newest(pods: &[Pod]) -> Option<&Pod> {
    pods.iter()
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// What the newest of a Job's pods says: its phase, and why it waits (its container's waiting
/// reason such as `ErrImagePull`, or why it is not scheduled). No pod yet waits too.
pub fn pod_state(pods: &[Pod]) -> EngineView {
    let Some(pod) = newest(pods) else {
        return EngineView {
            state: "Pending".to_string(),
            waiting: true,
            reason: Some("no pod yet".to_string()),
        };
    };
    let status = pod.status.as_ref();
    let phase = status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".to_string());
    let container = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == "job"))
        .and_then(|c| c.state.as_ref()?.waiting.as_ref())
        .map(|w| match &w.message {
            Some(m) => format!("{}: {m}", w.reason.clone().unwrap_or_default()),
            None => w.reason.clone().unwrap_or_default(),
        });
    let unscheduled = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        })
        .map(|c| match (&c.reason, &c.message) {
            (Some(r), Some(m)) => format!("{r}: {m}"),
            (r, m) => r.clone().or(m.clone()).unwrap_or_default(),
        });
    EngineView {
        waiting: phase == "Pending",
        reason: container
            .or(unscheduled)
            .or_else(|| status.and_then(|s| s.reason.clone()))
            .filter(|r| !r.is_empty()),
        state: phase,
    }
}
