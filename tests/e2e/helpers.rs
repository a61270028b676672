//! Running the real binary: a `petri serve` in a temporary home, and CLI calls against it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use petri_domain::{Job, JobState};

pub const BIN: &str = env!("CARGO_BIN_EXE_petri");

/// `petri` with a clean environment pointing at `home`.
pub fn petri_cmd(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("PETRI_HOME", home)
        .env_remove("PETRI_SERVER")
        .env_remove("PETRI_TOKEN")
        .env("NO_COLOR", "1");
    cmd
}

pub fn petri(home: &Path, args: &[&str]) -> Output {
    petri_cmd(home).args(args).output().unwrap()
}

pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}");
}

pub struct Server {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Extra environment for the daemon.
    env: Vec<(String, String)>,
    /// Where it listens.
    listen: String,
}

impl Server {
    pub fn start(toml: &str) -> Server {
        Server::start_in(toml, &[], "127.0.0.1:0")
    }

    /// Like `start`, listening on `listen` (an address beyond loopback means TLS).
    pub fn start_on(toml: &str, listen: &str) -> Server {
        Server::start_in(toml, &[], listen)
    }

    /// Like `start`, with extra environment for the daemon (written into the home first).
    pub fn start_with(toml: &str, env: &[(&str, String)]) -> Server {
        Server::start_in(toml, env, "127.0.0.1:0")
    }

    /// Like `start`, with one GPU of `memory` bytes named `uuid`: the daemon loads the project's
    /// fake NVML through `PETRI_NVML_PATH`. The file that describes the GPU lives as long as the
    /// second value. None, with a note, where the fake library was not built (never under CI).
    pub fn with_fake_gpu(uuid: &str, memory: u64) -> Option<(Server, tempfile::NamedTempFile)> {
        let exe = std::env::current_exe().unwrap();
        let lib = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("libnvidia_ml.so");
        if !lib.exists() {
            assert!(
                std::env::var("CI").is_err(),
                "the fake NVML library was not built"
            );
            eprintln!(
                "SKIPPED: the fake NVML library was not built (run `cargo build -p petri-fake-nvml`)"
            );
            return None;
        }
        let config = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            config.path(),
            serde_json::json!({"gpus": [{"uuid": uuid, "memory_total": memory}]}).to_string(),
        )
        .unwrap();
        let server = Server::start_with(
            "",
            &[
                ("PETRI_NVML_PATH", lib.display().to_string()),
                ("PETRI_FAKE_NVML", config.path().display().to_string()),
            ],
        );
        Some((server, config))
    }

    fn start_in(toml: &str, env: &[(&str, String)], listen: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("petri.toml"), toml).unwrap();
        let mut s = Server {
            dir,
            child: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            listen: listen.into(),
        };
        s.restart();
        s
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    pub fn work(&self) -> PathBuf {
        let w = self.dir.path().join("work");
        std::fs::create_dir_all(&w).unwrap();
        w
    }

    /// Starts `petri serve` on a free port and waits until it answers.
    pub fn restart(&mut self) {
        let addr = self.home().join("daemon.addr");
        let _ = std::fs::remove_file(&addr);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home().join("daemon.log"))
            .unwrap();
        let child = petri_cmd(self.home())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["serve", "--listen", &self.listen])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_until("the daemon's address", Duration::from_secs(60), || {
            addr.exists()
        });
        wait_until("the daemon to answer", Duration::from_secs(60), || {
            petri(self.home(), &["ls"]).status.success()
        });
    }

    /// SIGKILL, no warning.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn client_jobs(&self, extra: &[&str]) -> Vec<Job> {
        let mut args = vec!["ls", "--json"];
        args.extend_from_slice(extra);
        let out = petri(self.home(), &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<petri_domain::JobPage>(&out.stdout)
            .unwrap()
            .jobs
    }

    /// Waits (two minutes at most) until the job has ended, and returns it as it ended.
    pub fn wait_final(&self, job: &Job) -> Job {
        let mut last = None;
        wait_until(
            &format!("job #{} to end", job.number),
            Duration::from_secs(120),
            || {
                let out = petri(self.home(), &["show", "--json", &job.id.to_string()]);
                let j: Option<Job> = serde_json::from_slice(&out.stdout).ok();
                let done = j.as_ref().is_some_and(|j| j.state.is_terminal());
                last = j;
                done
            },
        );
        last.unwrap()
    }

    pub fn wait_state(&self, job: &Job, state: JobState) {
        wait_until(
            &format!("job #{} to be {state}", job.number),
            Duration::from_secs(60),
            || {
                let out = petri(self.home(), &["show", "--json", &job.id.to_string()]);
                serde_json::from_slice::<Job>(&out.stdout).is_ok_and(|j| j.state == state)
            },
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM so the daemon stops cleanly; its jobs are the test's to forget.
            let _ = nix_kill(c.id());
            let _ = c.wait();
        }
    }
}

fn nix_kill(pid: u32) -> nix::Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
}

pub trait WaitOutput {
    fn wait_with_output_timeout(self, limit: Duration) -> Vec<u8>;
}

impl WaitOutput for Child {
    fn wait_with_output_timeout(self, limit: Duration) -> Vec<u8> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(self.wait_with_output());
        });
        let out = rx
            .recv_timeout(limit)
            .expect("the command did not finish")
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

/// What `petri logs` prints of a job.
pub fn log_of(home: &Path, job: &Job) -> String {
    let out = petri(home, &["logs", &job.id.to_string()]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}
