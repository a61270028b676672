//! The masking filter of a local job that has secrets: a process of its own between the job's
//! output and its log.
//!
//! Why a process: it must outlive the daemon (a daemon killed with SIGKILL leaves its jobs
//! running, and their output must stay masked until they end), so it cannot be a thread of it.
//! Why forked rather than a program started from disk: it must work wherever a daemon runs (the
//! `petri` binary, the desktop app, a test binary with the daemon inside), and a forked copy
//! needs no program to be found. It is forked twice, so that nobody has to reap it and it is in
//! no job's process group (a stop of the job does not cut its output short), and it leaves the
//! daemon's session.
//!
//! The daemon has other threads, whose locks a forked copy must never wait for: after the fork
//! the filter uses only system calls and memory prepared before it (the masker, a buffer, room
//! for its output), as `Masker::mask` allocates nothing in room reserved for it.
//!
//! The end of the job: the supervisor holds one end of a "done" pipe and waits on an "ack" pipe
//! before it writes the exit code. When the job ends it closes "done"; the filter then takes
//! whatever is still in the output pipe (everything the job wrote is there once it has exited),
//! masks it, writes it and closes "ack". So an exit code on disk means the job's output is in the
//! log, for the daemon that started the job and for one that re-adopted it. The filter goes on
//! masking the output of anything the job left running in the background until that ends too.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, pipe2};

use crate::mask::Masker;

/// How much the filter reads at a time.
const CHUNK: usize = 64 * 1024;

/// The name the filter shows in `ps` (its `comm`).
pub(crate) const NAME: &[u8] = b"petri-mask\0";

/// The supervisor's ends of a started filter's pipes.
pub(crate) struct Filter {
    /// The job's stdout and stderr.
    pub output: OwnedFd,
    /// Closed by the supervisor when the job has ended (its fd 3).
    pub done: OwnedFd,
    /// Closed by the filter once the job's output is in the log (the supervisor's fd 4).
    pub ack: OwnedFd,
}

/// Starts the filter for `masker`, appending to `log`.
pub(crate) fn start(masker: &Masker, log: &File) -> io::Result<Filter> {
    let (output_r, output_w) = pipe2(OFlag::O_CLOEXEC)?;
    let (done_r, done_w) = pipe2(OFlag::O_CLOEXEC)?;
    let (ack_r, ack_w) = pipe2(OFlag::O_CLOEXEC)?;
    // Everything the filter will use, made before the fork.
    let room = CHUNK + masker.longest();
    let mut buf = vec![0u8; room];
    let mut out: Vec<u8> = Vec::with_capacity(3 * room);
    // SAFETY: the child calls only async-signal-safe functions (fork, _exit) before the
    // grandchild runs `filter`, which keeps to system calls and memory allocated above.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { child } => {
            // The middle process exits at once, with 0 once the filter is forked; reap it.
            let status = loop {
                match waitpid(child, None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other,
                }
            };
            if !matches!(status, Ok(WaitStatus::Exited(_, 0))) {
                return Err(io::Error::other(format!(
                    "the masking filter did not start ({status:?})"
                )));
            }
            Ok(Filter {
                output: output_w,
                done: done_w,
                ack: ack_r,
            })
        }
        ForkResult::Child => {
            // SAFETY: as above.
            let code = match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    let fds = Fds {
                        input: output_r.as_raw_fd(),
                        done: done_r.as_raw_fd(),
                        ack: ack_w.as_raw_fd(),
                        log: log.as_raw_fd(),
                    };
                    filter(masker, fds, &mut buf, &mut out)
                }
                Ok(ForkResult::Parent { .. }) => 0,
                Err(_) => 1,
            };
            // SAFETY: leaving the forked copy without running anything of the parent's.
            unsafe { libc::_exit(code) }
        }
    }
}

#[derive(Clone, Copy)]
struct Fds {
    input: RawFd,
    done: RawFd,
    ack: RawFd,
    log: RawFd,
}

/// The filter's life, in the forked copy. Never returns.
fn filter(masker: &Masker, fds: Fds, buf: &mut [u8], out: &mut Vec<u8>) -> ! {
    detach(fds);
    let mut kept = 0usize;
    let mut done_open = true;
    loop {
        let mut polls = [
            libc::pollfd {
                fd: fds.input,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if done_open { fds.done } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfd structs.
        let ready = unsafe { libc::poll(polls.as_mut_ptr(), 2, -1) };
        if ready < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        if done_open && polls[1].revents != 0 {
            // The job has ended: all it wrote is in the pipe. Take it, settle it, say so.
            let mut ended = false;
            while readable(fds.input) {
                match read_more(fds.input, buf, &mut kept, masker, out, fds.log) {
                    Some(true) => {}
                    _ => {
                        ended = true;
                        break;
                    }
                }
            }
            flush(masker, buf, &mut kept, out, fds.log);
            // SAFETY: our own descriptors, closed once.
            unsafe {
                libc::close(fds.ack);
                libc::close(fds.done);
            }
            done_open = false;
            if ended {
                break;
            }
            continue;
        }
        if polls[0].revents != 0 {
            match read_more(fds.input, buf, &mut kept, masker, out, fds.log) {
                Some(true) => {}
                _ => break,
            }
        }
    }
    flush(masker, buf, &mut kept, out, fds.log);
    // SAFETY: the end of the forked copy.
    unsafe { libc::_exit(0) }
}

/// Its own session and name, default signals, and no descriptor but its own four.
fn detach(fds: Fds) {
    // SAFETY: plain system calls with valid arguments.
    unsafe {
        libc::setsid();
        libc::prctl(libc::PR_SET_NAME, NAME.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        // SAFETY: setting the default disposition.
        let _ = unsafe { sigaction(sig, &default) };
    }
    let _ = SigSet::empty().thread_set_mask();
    let mut keep = [fds.input, fds.done, fds.ack, fds.log];
    keep.sort_unstable();
    let mut from: RawFd = 0;
    for fd in keep {
        close_range(from, fd - 1);
        from = fd + 1;
    }
    close_range(from, RawFd::MAX);
}

/// Closes every descriptor from `first` to `last`.
fn close_range(first: RawFd, last: RawFd) {
    if first > last {
        return;
    }
    // SAFETY: close_range takes plain integers.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0u32) };
    if r == 0 {
        return;
    }
    // A kernel before 5.9: one by one, up to the limit of open files.
    // SAFETY: sysconf and close take plain integers.
    let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.clamp(1024, 1 << 20) as RawFd;
    for fd in first..=last.min(max) {
        unsafe { libc::close(fd) };
    }
}

/// Whether `fd` has data (or its end) waiting, without waiting.
fn readable(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd struct.
    unsafe { libc::poll(&mut p, 1, 0) > 0 }
}

/// Reads once after what was kept back, masks, writes what settled. `Some(true)` while the
/// output goes on, `Some(false)` at its end, `None` on an error.
fn read_more(
    input: RawFd,
    buf: &mut [u8],
    kept: &mut usize,
    masker: &Masker,
    out: &mut Vec<u8>,
    log: RawFd,
) -> Option<bool> {
    let free = &mut buf[*kept..];
    let n = loop {
        // SAFETY: reading into the free part of our own buffer.
        let n = unsafe { libc::read(input, free.as_mut_ptr().cast(), free.len()) };
        if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        break n;
    };
    if n < 0 {
        return None;
    }
    if n == 0 {
        return Some(false);
    }
    let len = *kept + n as usize;
    out.clear();
    let settled = masker.mask(&buf[..len], false, out);
    write_all(log, out);
    buf.copy_within(settled..len, 0);
    *kept = len - settled;
    Some(true)
}

/// Writes what was kept back as it is (masking what it holds).
fn flush(masker: &Masker, buf: &[u8], kept: &mut usize, out: &mut Vec<u8>, log: RawFd) {
    out.clear();
    masker.mask(&buf[..*kept], true, out);
    write_all(log, out);
    *kept = 0;
}

/// Appends all of `data` to the log. A log that cannot be written loses the output (the job
/// must not die of a full disk), as it would without a filter.
fn write_all(log: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writing from our own buffer.
        let n = unsafe { libc::write(log, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        data = &data[n as usize..];
    }
}
