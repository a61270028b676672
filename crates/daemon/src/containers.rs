//! What container jobs need from the machine before they are queued: their image in the engine,
//! mounts within the folders that may be mounted.

use std::path::{Path, PathBuf};

use petri_domain::{ErrorBody, ErrorCode, Job, JobSpec};

use crate::error::DaemonError;
use crate::service::Daemon;

/// The recipe of Petri's default image.
const IMAGE_RECIPE: &str = include_str!("../../../packaging/images/python/build.sh");

impl Daemon {
    /// Refuses container specs whose image is missing or whose mounts leave the allowed folders.
    /// Local specs pass untouched.
    pub(crate) async fn check_containers(&self, specs: &[JobSpec]) -> Result<(), DaemonError> {
        let mut images: Vec<&str> = specs.iter().filter_map(|s| s.image.as_deref()).collect();
        if images.is_empty() {
            return Ok(());
        }
        let roots = self.mount_roots();
        for spec in specs {
            // The shape first, so that a malformed spec gets the same answer as without Docker.
            spec.validate()
                .map_err(|e| DaemonError::Refused(e.into()))?;
            for m in &spec.mounts {
                check_mount(&m.source, &roots).map_err(DaemonError::Refused)?;
            }
        }
        images.sort_unstable();
        images.dedup();
        for image in images {
            let exists = self.docker().image_exists(image).await.map_err(|e| {
                DaemonError::refused(ErrorCode::ContainersUnavailable, e.to_string())
            })?;
            if !exists {
                return Err(DaemonError::Refused(
                    ErrorBody::new(
                        ErrorCode::ImageNotFound,
                        format!(
                            "the image `{image}` is not in the Docker engine (no registry is \
                             asked); build Petri's default image with `petri image build`, or \
                             load yours with `docker load`"
                        ),
                    )
                    .with_details(serde_json::json!({ "field": "image", "image": image })),
                ));
            }
        }
        Ok(())
    }

    /// Queues a build of Petri's default image (the recipe in `packaging/images/python`, built
    /// into this binary) as a job of the queue: its log shows the progress, `cancel` stops it.
    /// Unless `force`, an image built from the same recipe is kept.
    pub async fn image_build(&self, force: bool) -> Result<Job, DaemonError> {
        let dir = self.home().root().join("images");
        let script = dir.join("build-python.sh");
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&script, IMAGE_RECIPE))
            .map_err(|e| DaemonError::Io(format!("writing {}: {e}", script.display())))?;
        let mut command = vec!["/bin/sh".to_string(), script.display().to_string()];
        if !force {
            command.push("--if-changed".into());
        }
        command.push(self.settings().notebooks.image.clone());
        let spec = JobSpec {
            name: Some(format!("image-build:{}", self.settings().notebooks.image)),
            command: Some(command),
            workdir: Some(dir),
            ..Default::default()
        };
        let mut jobs = self.submit(vec![spec]).await?;
        jobs.pop()
            .ok_or_else(|| DaemonError::Io("the build was not queued".into()))
    }

    /// The folders under which mounts are allowed: the configured roots and Petri's home.
    pub(crate) fn mount_roots(&self) -> Vec<PathBuf> {
        let mut roots = self.settings().docker.mount_roots.clone();
        roots.push(self.home().root().to_path_buf());
        roots
    }
}

/// A mount's source must exist and, with symbolic links resolved, lie under one of `roots`.
pub(crate) fn check_mount(source: &Path, roots: &[PathBuf]) -> Result<PathBuf, ErrorBody> {
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
