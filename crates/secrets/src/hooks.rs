//! How secrets reach jobs: the queue's admission check at submit, and its hook for every
//! attempt (environment, private files, mounts, what to mask; the files removed afterwards).

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use petri_domain::{
    BindMount, ErrorBody, ErrorCode, Job, JobId, JobSpec, RunKey, SecretKind, SecretVar,
};
use petri_queue::{AdmissionHook, AttemptHook, LaunchExtras, Submitter};

use crate::{Secrets, SecretsError};

/// Lines of a secret shorter than this many characters are not masked on their own (`{`, `}`,
/// `---` would mask ordinary output).
const MASK_LINES_LONGER_THAN: usize = 3;

impl Secrets {
    /// The queue's check of every submitted spec: each secret it names exists, is the
    /// submitter's, and has a variable to go in.
    pub fn admission_hook(&self) -> AdmissionHook {
        let secrets = self.clone();
        Arc::new(move |spec: &JobSpec, by: &Submitter| secrets.admit(spec, &by.user))
    }

    /// The queue's hook for every attempt.
    pub fn attempt_hook(&self) -> Arc<dyn AttemptHook> {
        Arc::new(SecretsHook {
            secrets: self.clone(),
        })
    }

    /// Whether `user` may submit `spec` as far as its secrets go. From memory: no value is read.
    pub fn admit(&self, spec: &JobSpec, user: &str) -> Result<(), ErrorBody> {
        let mut variables = HashSet::new();
        for used in &spec.secrets {
            let info = self.info(&used.name).ok_or_else(|| {
                ErrorBody::new(
                    ErrorCode::SecretNotFound,
                    format!(
                        "the job uses the secret `{0}`, which does not exist: set it with `petri \
                         secret set {0}` (`petri secret ls` lists yours)",
                        used.name
                    ),
                )
                .with_details(serde_json::json!({ "field": "secrets", "secret": used.name }))
            })?;
            if info.owner != user {
                return Err(ErrorBody::new(
                    ErrorCode::Forbidden,
                    format!(
                        "the secret `{}` belongs to {}; a job may only use its submitter's secrets",
                        used.name, info.owner
                    ),
                )
                .with_details(serde_json::json!({ "field": "secrets", "secret": used.name })));
            }
            let variable = used.variable(info.kind);
            let invalid = |message: String| {
                ErrorBody::new(ErrorCode::InvalidSpec, message)
                    .with_details(serde_json::json!({ "field": "secrets", "secret": used.name }))
            };
            if !is_env_name(&variable) {
                return Err(invalid(format!(
                    "the {} secret `{}` would go into the variable `{variable}`, which is not a \
                     variable name; say which with `{{name: {}, env: NAME}}`",
                    info.kind, used.name, used.name
                )));
            }
            if spec.env.contains_key(&variable) || !variables.insert(variable.clone()) {
                return Err(invalid(format!(
                    "the variable `{variable}` (for the secret `{}`) is set twice; choose another \
                     with `{{name: {}, env: NAME}}`",
                    used.name, used.name
                )));
            }
        }
        Ok(())
    }

    /// What an attempt of `job` gets: variables, files (written here), a mount, what to mask.
    fn extras(&self, job: &Job, write_files: bool) -> Result<LaunchExtras, SecretsError> {
        let mut extras = LaunchExtras::default();
        if job.spec.secrets.is_empty() {
            return Ok(extras);
        }
        let dir = self.run_dir(job.id);
        let mut has_files = false;
        for used in &job.spec.secrets {
            let (info, value) = self.reveal(&used.name)?;
            if info.owner != job.user {
                return Err(SecretsError::Refused(ErrorBody::new(
                    ErrorCode::Forbidden,
                    format!(
                        "the secret `{}` belongs to {}, not to the job's user {}",
                        used.name, info.owner, job.user
                    ),
                )));
            }
            let bytes = value.as_bytes();
            extras.mask.extend(masks(bytes, info.kind));
            let variable = used.variable(info.kind);
            match info.kind {
                SecretKind::Value => {
                    let text = String::from_utf8_lossy(bytes).into_owned();
                    extras.secrets.push(SecretVar {
                        name: variable.clone(),
                        file: false,
                    });
                    extras.env.push((variable, text));
                }
                SecretKind::File => {
                    has_files = true;
                    let path = dir.join(&used.name);
                    if write_files {
                        write_private(&dir, &path, bytes)?;
                    }
                    extras.secrets.push(SecretVar {
                        name: variable.clone(),
                        file: true,
                    });
                    extras.env.push((variable, path.display().to_string()));
                }
            }
        }
        if has_files && job.spec.image.is_some() {
            extras.mounts.push(BindMount {
                source: dir.clone(),
                target: dir,
                read_only: true,
            });
        }
        Ok(extras)
    }

    /// Removes the files of a job's secrets.
    fn remove_files(&self, job: JobId) {
        let dir = self.run_dir(job);
        match fs::remove_dir_all(&dir) {
            Ok(()) => tracing::debug!(job.id = %job, "removed the job's secret files"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "cannot remove a job's secret files: {e}")
            }
        }
    }
}

/// What to mask of a secret: a value whole, and each line (without its surrounding blanks) of
/// more than three characters, of a value and of a file alike.
pub(crate) fn masks(bytes: &[u8], kind: SecretKind) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if kind == SecretKind::Value && !bytes.is_empty() {
        out.push(bytes.to_vec());
    }
    for line in bytes.split(|b| *b == b'\n') {
        let line = line.trim_ascii();
        let chars = std::str::from_utf8(line).map_or(line.len(), |s| s.chars().count());
        if chars > MASK_LINES_LONGER_THAN {
            out.push(line.to_vec());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Writes `bytes` to `path` in `dir`: the folder private (0700), the file too (0600).
fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), SecretsError> {
    let io = |e: std::io::Error| SecretsError::Io(format!("writing {}: {e}", path.display()));
    fs::create_dir_all(dir).map_err(io)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
    petri_domain::files::write_private(path, bytes).map_err(io)
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct SecretsHook {
    secrets: Secrets,
}

impl AttemptHook for SecretsHook {
    fn launch(&self, job: &Job, _attempt: u32) -> Result<LaunchExtras, String> {
        self.secrets.extras(job, true).map_err(|e| {
            // A half-written set of files must not outlive the failed start.
            self.secrets.remove_files(job.id);
            format!("the job's secrets could not be given to it: {e}")
        })
    }

    fn mask(&self, job: &Job) -> Vec<Vec<u8>> {
        match self.secrets.extras(job, false) {
            Ok(extras) => extras.mask,
            Err(e) => {
                tracing::warn!(job.id = %job.id, "the output of a re-adopted job cannot be masked: {e}");
                Vec::new()
            }
        }
    }

    fn ended(&self, run: &RunKey) {
        self.secrets.remove_files(run.job);
    }

    fn sweep(&self, live: &[RunKey]) {
        let Ok(entries) = fs::read_dir(&self.secrets.inner.run_dir) else {
            return;
        };
        let live: HashSet<String> = live.iter().map(|k| k.job.to_string()).collect();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if live.contains(&name) {
                continue;
            }
            match name.parse::<JobId>() {
                Ok(job) => self.secrets.remove_files(job),
                Err(_) => {
                    tracing::warn!(entry = %entry.path().display(), "not a job's secret files; left alone")
                }
            }
        }
    }
}
