//! What every cluster executor does the same way for one attempt: the claim of its status file
//! in the home and what that file says, the refusals of what no cluster can express, the
//! measure against the cluster's largest node, and the copy of its log.
//!
//! The status file: `submitting` once claimed, then the engine's name for the job, then (on a
//! second line) the exit code or `lost`; `recovered` when a restarted daemon claimed it first,
//! so the attempt never began.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use petri_domain::{ClusterCapacity, ErrorBody, ErrorCode, ExecError, JobSpec};
use petri_runtime::{MaskStream, Masker};

/// What an attempt's status file says.
pub(crate) enum Status {
    Missing,
    Recovered,
    /// Claimed; the engine's id once it took the job.
    Submitted(Option<String>),
    /// Ended, with its exit code (`None`: lost).
    Ended(Option<String>, Option<i32>),
}

pub(crate) fn read_status(path: &Path) -> Status {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Status::Missing;
    };
    let mut lines = text.lines();
    let id = match lines.next().map(str::trim) {
        None => return Status::Submitted(None),
        Some("recovered") => return Status::Recovered,
        Some("submitting" | "0" | "") => None,
        Some(n) => Some(n.to_string()),
    };
    match lines.next().map(str::trim) {
        Some("lost") => Status::Ended(id, None),
        Some(c) => match c.parse() {
            Ok(code) => Status::Ended(id, Some(code)),
            Err(_) => Status::Submitted(id),
        },
        None => Status::Submitted(id),
    }
}

/// Who holds an attempt's status file after [`claim`].
pub(crate) enum Claim {
    /// This start: it goes on to submit.
    Mine,
    /// A start before a crash (adopt what it made), or a recovery (it never begins).
    Earlier(Status),
}

/// Claims an attempt's status file for a start, atomically: a second start of the same attempt
/// (after a crash) finds the first one's claim and runs nothing twice.
pub(crate) fn claim(status: &Path) -> Result<Claim, ExecError> {
    use std::io::Write;
    let prepare = |path: &Path, source| ExecError::Prepare {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = status.parent() {
        std::fs::create_dir_all(dir).map_err(|e| prepare(dir, e))?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(status)
    {
        Ok(mut f) => f
            .write_all(b"submitting\n")
            .map(|()| Claim::Mine)
            .map_err(|e| prepare(status, e)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(Claim::Earlier(read_status(status)))
        }
        Err(e) => Err(prepare(status, e)),
    }
}

/// After a restart, claims the status file of an attempt no start ever claimed, so that none
/// will: `true` when this call marked it `recovered`, `false` when a start wrote it in between
/// (read it again).
pub(crate) fn claim_for_recovery(status: &Path) -> bool {
    use std::io::Write;
    if let Some(dir) = status.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(status)
        .and_then(|mut f| f.write_all(b"recovered\n"))
        .is_ok()
}

/// Appends one line to a job's log (what Petri says about the attempt, `petri: …`).
pub(crate) fn append_line(path: &Path, line: &str) {
    use std::io::Write;
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| writeln!(f, "{line}"));
}

/// The copy of a remote attempt's log into the job's log here: how far it got (also on disk
/// beside the attempt's status file, for a daemon that adopts the attempt after a restart), and
/// the attempt's secrets masked on the way (a secret cut between two rounds is kept back until
/// the next says whether it is one).
pub(crate) struct LogCopy {
    pub(crate) path: PathBuf,
    /// Bytes of the remote log copied so far (before masking).
    pub(crate) copied: u64,
    mark: PathBuf,
    mask: Option<MaskStream>,
}

impl LogCopy {
    /// The copy of an attempt whose status file is `status_file`, from where an earlier daemon
    /// left it (nothing copied for a new attempt).
    pub(crate) fn resume(path: PathBuf, status_file: &Path, mask: &[Vec<u8>]) -> LogCopy {
        let mut mark = status_file.as_os_str().to_owned();
        mark.push(".copied");
        let mark = PathBuf::from(mark);
        let copied = std::fs::read_to_string(&mark)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        LogCopy {
            path,
            copied,
            mark,
            mask: Masker::new(mask).map(|m| MaskStream::new(Arc::new(m))),
        }
    }

    /// Appends `piece`, the remote log's next bytes.
    pub(crate) fn append(&mut self, piece: &[u8]) {
        if piece.is_empty() {
            return;
        }
        let mut masked = Vec::new();
        let bytes = match self.mask.as_mut() {
            Some(m) => {
                m.push(piece, &mut masked);
                &masked[..]
            }
            None => piece,
        };
        if self.write(bytes) {
            self.copied += piece.len() as u64;
            // Not synced: at worst a restart copies one round's bytes again.
            let _ = std::fs::write(&self.mark, self.copied.to_string());
        }
    }

    /// Appends what `whole`, the remote log from its start, holds beyond what was copied.
    pub(crate) fn append_beyond(&mut self, whole: &[u8]) {
        if let Some(rest) = whole.get(self.copied as usize..) {
            self.append(rest);
        }
    }

    /// The remote log ended: what masking kept back goes too.
    pub(crate) fn finish(&mut self) {
        if let Some(m) = self.mask.as_mut() {
            let mut rest = Vec::new();
            m.finish(&mut rest);
            self.write(&rest);
        }
    }

    fn write(&self, bytes: &[u8]) -> bool {
        use std::io::Write;
        bytes.is_empty()
            || std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .and_then(|mut f| f.write_all(bytes))
                .is_ok()
    }
}

fn refused(message: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::TargetRefused, message)
}

/// What no cluster can express, whatever its engine: ports published back here, GPU memory
/// or MIG slices (clusters hand out whole GPUs by count), mounts of this machine's folders.
pub(crate) fn refuse_unexpressible(
    cluster: &str,
    kind: &str,
    spec: &JobSpec,
) -> Result<(), ErrorBody> {
    if !spec.ports.is_empty() {
        return Err(refused(format!(
            "cluster `{cluster}` cannot publish ports back to this machine: drop `ports`"
        )));
    }
    if spec.resources.gpu_memory.is_some() || spec.resources.mig.is_some() {
        return Err(refused(format!(
            "{kind} hands out whole GPUs by count: ask `gpus: N` instead of `gpu_memory` or \
             `mig` to run on `{cluster}`"
        )));
    }
    if !spec.mounts.is_empty() {
        return Err(refused(format!(
            "mounts name folders of this machine, which the nodes of `{cluster}` do not see; \
             there the job sees the nodes' own file systems"
        )));
    }
    Ok(())
}

/// Refuses a job the cluster's largest node could never hold. A cluster with no node now (one
/// still joining, an autoscaler that adds them) is not measured: its engine says later.
/// `cpus_unasked`: what a job that names no cpus gets there.
pub(crate) fn refuse_oversized(
    cluster: &str,
    spec: &JobSpec,
    cap: &ClusterCapacity,
    cpus_unasked: f64,
) -> Result<(), ErrorBody> {
    if cap.nodes == 0 {
        return Ok(());
    }
    let cpus = spec.resources.cpus.unwrap_or(cpus_unasked).ceil() as u64;
    let memory = spec.resources.memory.map_or(0, |m| m.0);
    let gpus = u64::from(spec.resources.gpus.unwrap_or(0));
    let mut over = Vec::new();
    if cpus > cap.max_node_cpus {
        over.push(format!(
            "{cpus} cpus (its largest node has {})",
            cap.max_node_cpus
        ));
    }
    if memory > cap.max_node_memory {
        over.push(format!(
            "{} of memory (its largest node has {})",
            petri_domain::ByteSize(memory),
            petri_domain::ByteSize(cap.max_node_memory)
        ));
    }
    if gpus > cap.max_node_gpus {
        over.push(format!(
            "{gpus} GPUs (its largest node has {})",
            cap.max_node_gpus
        ));
    }
    if over.is_empty() {
        return Ok(());
    }
    Err(refused(format!(
        "cluster `{cluster}` can never run this job: it asks for {}",
        over.join(" and ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copied_log_masks_secrets_cut_between_rounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let status = dir.path().join("1.status");
        let mut log = LogCopy::resume(path.clone(), &status, &[b"hunter2-secret".to_vec()]);
        log.append_beyond(b"token is hunter2-");
        log.append_beyond(b"token is hunter2-secret, ok\nlast hunter2");
        assert_eq!(log.copied, 40);
        log.finish();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "token is ***, ok\nlast hunter2"
        );
        let mut again = LogCopy::resume(path.clone(), &status, &[]);
        assert_eq!(
            again.copied, 40,
            "a restarted daemon goes on where the copy stopped"
        );
        again.append(b"!\n");
        assert_eq!(again.copied, 42);
    }

    #[test]
    fn a_status_file_reads_as_claimed_submitted_ended_or_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("runs").join("1.status");
        assert!(matches!(read_status(&p), Status::Missing));
        assert!(matches!(claim(&p).unwrap(), Claim::Mine));
        assert!(matches!(read_status(&p), Status::Submitted(None)));
        assert!(matches!(
            claim(&p).unwrap(),
            Claim::Earlier(Status::Submitted(None))
        ));
        std::fs::write(&p, "42\n").unwrap();
        assert!(matches!(read_status(&p), Status::Submitted(Some(id)) if id == "42"));
        std::fs::write(&p, "42\n3\n").unwrap();
        assert!(matches!(read_status(&p), Status::Ended(Some(_), Some(3))));
        std::fs::write(&p, "42\nlost\n").unwrap();
        assert!(matches!(read_status(&p), Status::Ended(Some(_), None)));
        assert!(
            !claim_for_recovery(&p),
            "a claimed file is not claimed again"
        );
        let q = dir.path().join("runs").join("2.status");
        assert!(claim_for_recovery(&q));
        assert!(matches!(read_status(&q), Status::Recovered));
        assert!(matches!(
            claim(&q).unwrap(),
            Claim::Earlier(Status::Recovered)
        ));
    }
}
