//! Local processes under a tiny supervisor.
//!
//! Each attempt runs as `/bin/sh -c SUPERVISOR petri-job ARGV...` in a new process group. The
//! supervisor shell claims the attempt's status file (an `O_EXCL` create holding its pid, so a
//! recovering daemon and a late-starting supervisor cannot both win), runs the job as its child,
//! and appends the exit code to the same file. It outlives the daemon: a daemon killed with SIGKILL
//! leaves its jobs running, and the next daemon reads their exit codes from the status files.
//!
//! One small file per attempt (not a folder with two files) on purpose: creating inodes is most of
//! the cost of a no-op job.
//!
//! A job with secrets to mask writes into a pipe to its masking filter (`filter.rs`), a process
//! of its own that appends the masked output to the log and outlives the daemon; the supervisor
//! records the exit code once the filter has written all the job wrote. A job without secrets
//! writes straight into its log file.
//!
//! The supervisor traps SIGTERM so that a polite stop of the process group reaches the job while
//! the supervisor stays to record how it ended. (A trapped signal is reset to the default in the
//! child, unlike an ignored one, so the job still sees SIGTERM normally.)

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgid};
use petri_domain::{
    ExecError, Executor, ExitReport, Launch, RunHandle, RunKey, RunProbe, StopSignal,
};

use crate::mask::Masker;

const SUPERVISOR: &str = r#"set -C
echo $$ > "$PETRI_STATUS_FILE" 2>/dev/null || exit 125
set +C
trap : TERM INT
"$@"
rc=$?
echo $rc >> "$PETRI_STATUS_FILE"
exit $rc"#;

/// The supervisor of a job whose output is masked (`filter.rs`): the job does not inherit the
/// filter's two pipes (fd 3, closed when the job has ended; fd 4, closed by the filter once the
/// job's output is in the log), and the exit code is written only after the filter said so (a
/// `read` cut short by a trapped signal, status above 128, waits again; a filter that is gone
/// reads as the end at once).
const SUPERVISOR_MASKED: &str = r#"set -C
echo $$ > "$PETRI_STATUS_FILE" 2>/dev/null || exit 125
set +C
trap : TERM INT
"$@" 3>&- 4<&-
rc=$?
exec 3>&-
while :; do read -r _ <&4; [ $? -gt 128 ] || break; done
echo $rc >> "$PETRI_STATUS_FILE"
exit $rc"#;

/// The `$0` of every supervisor shell; it marks our processes in `/proc/<pid>/cmdline`.
const MARKER: &str = "petri-job";

/// What a recovering daemon writes into a status file it claims.
const RECOVERED: &str = "recovered";

/// Runs jobs as supervised local processes.
pub struct LocalExecutor {
    runtime: tokio::runtime::Handle,
}

impl LocalExecutor {
    /// `runtime` reaps the supervisors (tokio's SIGCHLD driver).
    pub fn new(runtime: tokio::runtime::Handle) -> Self {
        LocalExecutor { runtime }
    }
}

impl Executor for LocalExecutor {
    fn start(
        &self,
        launch: Launch,
        on_exit: Box<dyn FnOnce(ExitReport) + Send>,
    ) -> Result<RunHandle, ExecError> {
        let prepare = |path: &Path, source| ExecError::Prepare {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = launch.status_file.parent().filter(|d| !d.is_dir()) {
            fs::create_dir_all(dir).map_err(|e| prepare(dir, e))?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log_path)
            .map_err(|e| prepare(&launch.log_path, e))?;
        let mut cmd = std::process::Command::new("/bin/sh");
        // A job without secrets writes straight into its log: no filter, no copy.
        match Masker::new(&launch.mask) {
            None => {
                let log2 = log.try_clone().map_err(|e| prepare(&launch.log_path, e))?;
                cmd.arg("-c").arg(SUPERVISOR).stdout(log).stderr(log2);
            }
            Some(masker) => {
                let filter = crate::filter::start(&masker, &log)
                    .map_err(|e| prepare(&launch.log_path, e))?;
                let output2 = filter
                    .output
                    .try_clone()
                    .map_err(|e| prepare(&launch.log_path, e))?;
                let (done, ack) = (filter.done, filter.ack);
                cmd.arg("-c")
                    .arg(SUPERVISOR_MASKED)
                    .stdout(Stdio::from(filter.output))
                    .stderr(Stdio::from(output2));
                // SAFETY: only fcntl and dup2 between fork and exec.
                unsafe {
                    cmd.pre_exec(move || place(&[(done.as_raw_fd(), 3), (ack.as_raw_fd(), 4)]));
                }
            }
        }
        cmd.arg(MARKER);
        // A job of another user runs as that user: the supervisor stays the daemon's (it
        // writes the status file), the job drops to the account through util-linux's setpriv.
        if let Some(to) = &launch.run_as {
            cmd.args(setpriv(to));
        }
        cmd.args(&launch.argv)
            .current_dir(&launch.workdir)
            .env("PETRI_STATUS_FILE", &launch.status_file)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .process_group(0);
        if let Some(to) = &launch.run_as {
            cmd.env("HOME", &to.home)
                .env("USER", &to.user)
                .env("LOGNAME", &to.user);
        }

        let program = launch.argv.first().cloned().unwrap_or_default();
        let mut cmd = tokio::process::Command::from(cmd);
        let child = {
            let _enter = self.runtime.enter();
            cmd.spawn()
                .map_err(|source| ExecError::Spawn { program, source })?
        };
        let pid = child.id().unwrap_or(0);
        let (job, attempt) = (launch.key.job, launch.key.attempt);
        self.runtime.spawn(async move {
            let mut child = child;
            let exit_code = match child.wait().await {
                Ok(status) => {
                    if status.signal().is_some() {
                        end_orphans(pid);
                    }
                    status.code().or_else(|| status.signal().map(|s| 128 + s))
                }
                Err(e) => {
                    tracing::warn!(job.id = %job, error = %e, "waiting for a job failed");
                    None
                }
            };
            on_exit(ExitReport {
                job,
                attempt,
                exit_code,
            });
        });
        Ok(RunHandle(pid.to_string()))
    }

    /// A fork of `sh`: quick enough for the engine thread.
    fn starts_inline(&self) -> bool {
        true
    }

    /// A local job owns its process group (the supervisor leads it).
    fn owner_of_process(&self, pid: u32) -> Option<RunHandle> {
        crate::process_group(pid).map(|g| RunHandle(g.to_string()))
    }

    fn stop(&self, _run: &RunKey, handle: &RunHandle, signal: StopSignal) -> Result<(), ExecError> {
        // The handle is the supervisor's pid, which leads the job's process group.
        let Ok(pid) = handle.as_str().parse::<u32>() else {
            return Ok(());
        };
        let sig = match signal {
            StopSignal::Terminate => Signal::SIGTERM,
            StopSignal::Kill => Signal::SIGKILL,
        };
        let Ok(raw) = i32::try_from(pid) else {
            return Ok(());
        };
        if raw <= 1 {
            return Ok(());
        }
        match killpg(Pid::from_raw(raw), sig) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(ExecError::Signal {
                handle: handle.clone(),
                message: e.desc().to_string(),
            }),
        }
    }

    fn probe(&self, _run: &RunKey, status_file: &Path) -> RunProbe {
        if let Status::Exited(code) = read_status(status_file) {
            return RunProbe::Exited(code);
        }
        // Claim the attempt; if that works the supervisor never began and now never will.
        if let Some(dir) = status_file.parent() {
            let _ = fs::create_dir_all(dir);
        }
        if let Ok(mut f) = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(status_file)
        {
            let _ = writeln!(f, "{RECOVERED}");
            return RunProbe::NeverStarted;
        }
        // The supervisor claimed it and wrote its pid (allow it a moment to finish the line).
        let mut status = Status::Unclaimed;
        for _ in 0..50 {
            status = read_status(status_file);
            if !matches!(status, Status::Unclaimed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        match status {
            Status::Exited(code) => RunProbe::Exited(code),
            Status::Recovered => RunProbe::NeverStarted,
            Status::Running(pid) if is_our_supervisor(pid) => {
                // Read again: the job may have ended between the two looks.
                match read_status(status_file) {
                    Status::Exited(code) => RunProbe::Exited(code),
                    _ => RunProbe::Alive {
                        handle: RunHandle(pid.to_string()),
                    },
                }
            }
            Status::Running(_) | Status::Unclaimed => match read_status(status_file) {
                Status::Exited(code) => RunProbe::Exited(code),
                _ => RunProbe::Lost,
            },
        }
    }
}

/// Ends what is left of a job whose supervisor was killed (SIGKILL from outside, the OOM
/// killer): the job and its children stay in the supervisor's process group, and without this
/// a server among them would keep its port and make the next attempt fail with "address in
/// use". The group's number cannot have been given to another process while any member lives;
/// it is signalled just after the supervisor is reaped, before the kernel could hand the
/// number round again.
fn end_orphans(pid: u32) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    if raw > 1 {
        match killpg(Pid::from_raw(raw), Signal::SIGKILL) {
            Ok(()) => tracing::warn!(
                pid,
                "a job's supervisor was killed; the processes it left were ended"
            ),
            Err(Errno::ESRCH) => {}
            Err(e) => tracing::warn!(pid, error = %e, "ending what a killed supervisor left"),
        }
    }
}

/// The words that run what follows as `to`: its uid, primary gid and supplementary groups,
/// with no capability kept.
fn setpriv(to: &petri_domain::RunAs) -> Vec<String> {
    let mut words = vec![
        "setpriv".to_string(),
        format!("--reuid={}", to.uid),
        format!("--regid={}", to.gid),
    ];
    if to.groups.is_empty() {
        words.push("--clear-groups".into());
    } else {
        let groups: Vec<String> = to.groups.iter().map(u32::to_string).collect();
        words.push(format!("--groups={}", groups.join(",")));
    }
    words.push("--inh-caps=-all".into());
    words.push("--".into());
    words
}

/// Puts each descriptor at its number in a child about to exec (without close-on-exec there),
/// by way of copies above the numbers asked for, so that no move overwrites another's source.
fn place(fds: &[(RawFd, RawFd)]) -> std::io::Result<()> {
    let mut copies = [0 as RawFd; 2];
    for (copy, (fd, _)) in copies.iter_mut().zip(fds) {
        // SAFETY: fcntl on a descriptor we hold.
        *copy = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10) };
        if *copy < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    for (copy, (_, at)) in copies.iter().zip(fds) {
        // SAFETY: dup2 onto a number the child's exec will keep.
        if unsafe { libc::dup2(*copy, *at) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What a status file says.
enum Status {
    /// Missing, or its first line not written yet.
    Unclaimed,
    /// Claimed by a recovering daemon: the attempt never ran.
    Recovered,
    Running(u32),
    Exited(i32),
}

fn read_status(path: &Path) -> Status {
    let Ok(text) = fs::read_to_string(path) else {
        return Status::Unclaimed;
    };
    let mut lines = text.lines();
    let first = match lines.next() {
        Some(l) if text.contains('\n') => l.trim(),
        _ => return Status::Unclaimed,
    };
    if first == RECOVERED {
        return Status::Recovered;
    }
    let Ok(pid) = first.parse::<u32>() else {
        return Status::Unclaimed;
    };
    // The exit line counts only once complete.
    match lines.next().map(str::trim) {
        Some(code) if text.ends_with('\n') => code
            .parse::<i32>()
            .map(Status::Exited)
            .unwrap_or(Status::Running(pid)),
        _ => Status::Running(pid),
    }
}

/// Is `pid` alive, a process-group leader, and one of our supervisor shells?
fn is_our_supervisor(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    let p = Pid::from_raw(raw);
    match kill(p, None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    if getpgid(Some(p)).ok() != Some(p) {
        return false;
    }
    if is_zombie(pid) {
        return false;
    }
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == MARKER.as_bytes()),
        // No procfs: trust the process group check.
        Err(_) => !Path::new("/proc/self").exists(),
    }
}

fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use petri_domain::JobId;
    use std::sync::mpsc;

    fn launch(dir: &Path, argv: &[&str]) -> Launch {
        Launch {
            key: key(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            workdir: dir.to_path_buf(),
            env: vec![("GREETING".into(), "hi".into())],
            log_path: dir.join("log"),
            status_file: dir.join("runs").join("job.1"),
            container: None,
            mask: Vec::new(),
            secrets: Vec::new(),
            run_as: None,
            user: "ada".into(),
            resources: Default::default(),
            timeout_ms: None,
        }
    }

    fn key() -> RunKey {
        RunKey {
            job: JobId::new(),
            attempt: 1,
            target: petri_domain::TARGET_LOCAL.into(),
        }
    }

    fn run(exec: &LocalExecutor, l: Launch) -> (RunHandle, i32) {
        let (tx, rx) = mpsc::channel();
        let started = exec
            .start(l, Box::new(move |r| tx.send(r).unwrap()))
            .unwrap();
        let report = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        (started, report.exit_code.unwrap())
    }

    #[test]
    fn records_exit_code_and_output() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let exec = LocalExecutor::new(rt.handle().clone());
        let dir = tempfile::tempdir().unwrap();
        let l = launch(dir.path(), &["/bin/sh", "-c", "echo $GREETING; exit 3"]);
        let (_, code) = run(&exec, l);
        assert_eq!(code, 3);
        assert_eq!(fs::read_to_string(dir.path().join("log")).unwrap(), "hi\n");
        assert_eq!(
            exec.probe(&key(), &dir.path().join("runs/job.1")),
            RunProbe::Exited(3)
        );
    }

    #[test]
    fn a_secret_is_masked_before_the_log_even_when_written_in_two_pieces() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let exec = LocalExecutor::new(rt.handle().clone());
        let dir = tempfile::tempdir().unwrap();
        let mut l = launch(
            dir.path(),
            &[
                "/bin/sh",
                "-c",
                "printf 'token=hf_se'; sleep 0.3; printf 'cret42 ok\n'; echo hf_secret42 >&2; \
                 fd=$(readlink /proc/$$/fd/1); echo \"$fd\" > out; exit 4",
            ],
        );
        l.mask = vec![b"hf_secret42".to_vec()];
        let (_, code) = run(&exec, l);
        assert_eq!(code, 4);
        // Once the exit is known the whole output is in the log, masked.
        assert_eq!(
            fs::read_to_string(dir.path().join("log")).unwrap(),
            "token=*** ok\n***\n"
        );
        // The job wrote into a pipe (the filter's), not into the log.
        let out = fs::read_to_string(dir.path().join("out")).unwrap();
        assert!(out.starts_with("pipe:"), "{out}");
    }

    #[test]
    fn a_stopped_job_with_secrets_ends_and_its_output_stays_masked() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let exec = LocalExecutor::new(rt.handle().clone());
        let dir = tempfile::tempdir().unwrap();
        let mut l = launch(
            dir.path(),
            &["/bin/sh", "-c", "echo hf_secret42; exec sleep 30"],
        );
        l.mask = vec![b"hf_secret42".to_vec()];
        let log = l.log_path.clone();
        let (tx, rx) = mpsc::channel();
        let started = exec
            .start(l, Box::new(move |r| tx.send(r).unwrap()))
            .unwrap();
        for _ in 0..500 {
            if fs::read_to_string(&log).is_ok_and(|t| !t.is_empty()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // As the daemon does: SIGTERM to the group, again until it ends.
        let mut report = None;
        for _ in 0..30 {
            exec.stop(&key(), &started, StopSignal::Terminate).unwrap();
            if let Ok(r) = rx.recv_timeout(Duration::from_secs(1)) {
                report = Some(r);
                break;
            }
        }
        assert_eq!(report.expect("the job ends").exit_code, Some(143));
        // (The supervisor shell adds "Terminated", as it does without a filter.)
        let text = fs::read_to_string(&log).unwrap();
        assert!(text.starts_with("***\n") && !text.contains("hf_"), "{text}");
    }

    #[test]
    fn a_job_without_secrets_writes_straight_into_its_log() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let exec = LocalExecutor::new(rt.handle().clone());
        let dir = tempfile::tempdir().unwrap();
        let l = launch(dir.path(), &["/bin/sh", "-c", "readlink /proc/$$/fd/1"]);
        let log = l.log_path.clone();
        run(&exec, l);
        let written = fs::read_to_string(&log).unwrap();
        assert_eq!(written.trim(), log.display().to_string());
    }

    #[test]
    fn the_filter_outlives_the_job_and_masks_what_it_left_running() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let exec = LocalExecutor::new(rt.handle().clone());
        let dir = tempfile::tempdir().unwrap();
        // The job ends at once; what it started in the background prints later.
        let mut l = launch(
            dir.path(),
            &[
                "/bin/sh",
                "-c",
                "echo first; (sleep 0.5; echo late hf_secret42) &",
            ],
        );
        l.mask = vec![b"hf_secret42".to_vec()];
        let log = l.log_path.clone();
        run(&exec, l);
        assert_eq!(fs::read_to_string(&log).unwrap(), "first\n");
        for _ in 0..500 {
            if fs::read_to_string(&log).unwrap().contains("late") {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(fs::read_to_string(&log).unwrap(), "first\nlate ***\n");
    }

    #[test]
    fn a_killed_supervisor_takes_its_job_with_it() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let exec = LocalExecutor::new(rt.handle().clone());
        let dir = tempfile::tempdir().unwrap();
        let l = launch(
            dir.path(),
            &["/bin/sh", "-c", "echo $$ > job.pid; exec sleep 300"],
        );
        let (tx, rx) = mpsc::channel();
        let started = exec
            .start(l, Box::new(move |r| tx.send(r).unwrap()))
            .unwrap();
        let pid_file = dir.path().join("job.pid");
        let mut job = None;
        for _ in 0..500 {
            job = fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok());
            if job.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let job = Pid::from_raw(job.expect("the job wrote its pid"));
        let supervisor = Pid::from_raw(started.as_str().parse().unwrap());
        kill(supervisor, Signal::SIGKILL).unwrap();
        let report = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(report.exit_code, Some(137));
        // Gone, or a zombie waiting for whoever adopted it: not running either way.
        let mut alive = true;
        for _ in 0..500 {
            let state = fs::read_to_string(format!("/proc/{job}/stat")).ok();
            alive = state.is_some_and(|s| !s.contains(") Z "));
            if !alive {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive, "the job outlived its supervisor");
    }

    #[test]
    fn a_claimed_run_never_starts() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let exec = LocalExecutor::new(rt.handle().clone());
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("runs/job.1");
        assert_eq!(exec.probe(&key(), &status), RunProbe::NeverStarted);
        assert_eq!(exec.probe(&key(), &status), RunProbe::NeverStarted);
        let l = launch(dir.path(), &["/bin/sh", "-c", "touch ran"]);
        let (_, code) = run(&exec, l);
        assert_eq!(code, 125);
        assert!(!dir.path().join("ran").exists());
    }

    #[test]
    fn terminate_reaches_the_job_and_the_supervisor_records_it() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let exec = LocalExecutor::new(rt.handle().clone());
        let dir = tempfile::tempdir().unwrap();
        let l = launch(dir.path(), &["sleep", "30"]);
        let (tx, rx) = mpsc::channel();
        let started = exec
            .start(l, Box::new(move |r| tx.send(r).unwrap()))
            .unwrap();
        let pid: u32 = started.as_str().parse().unwrap();
        let status = dir.path().join("runs/job.1");
        // Wait until the supervisor has claimed the run (probing earlier would claim it first).
        for _ in 0..500 {
            if fs::read_to_string(&status).is_ok_and(|s| s.ends_with('\n')) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            exec.probe(&key(), &status),
            RunProbe::Alive {
                handle: started.clone()
            }
        );
        // Wait for the job itself (the supervisor's child) to exist: a SIGTERM that reaches the
        // group before the child is forked only meets the supervisor, which traps it (the daemon
        // then escalates to SIGKILL after the grace period).
        let has_child = || {
            fs::read_dir("/proc").unwrap().flatten().any(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|p| p != pid && crate::process_group(p) == Some(pid))
            })
        };
        for _ in 0..500 {
            if has_child() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // As the daemon does: SIGTERM again after a second. One that lands while the forked child
        // still carries the supervisor's trap (before it execs the job) is lost.
        let mut report = None;
        for _ in 0..30 {
            exec.stop(&key(), &started, StopSignal::Terminate).unwrap();
            if let Ok(r) = rx.recv_timeout(Duration::from_secs(1)) {
                report = Some(r);
                break;
            }
        }
        let report = report.expect("the job ends after SIGTERM");
        assert_eq!(report.exit_code, Some(143));
        assert_eq!(exec.probe(&key(), &status), RunProbe::Exited(143));
    }
}
