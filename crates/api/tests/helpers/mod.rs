#![allow(dead_code)] // shared by several test binaries, each using a part
//! An in-process daemon in a temporary home, and waiting helpers.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use petri_client::Client;
use petri_domain::{Job, JobSpec, JobState};
use tokio::sync::oneshot;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub client: Client,
    pub base: String,
    pub token: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Fixture {
    /// Starts a daemon whose `petri.toml` is `toml`.
    pub async fn start(toml: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("petri.toml"), toml).unwrap();
        Self::start_in(dir).await
    }

    /// Starts a daemon on an existing home (a restart).
    pub async fn start_in(dir: tempfile::TempDir) -> Fixture {
        let settings = petri_daemon::Settings::load(Some(dir.path())).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            if let Err(e) = petri_api::run(settings, listener, async {
                let _ = stopped.await;
            })
            .await
            {
                panic!("the daemon did not start or stopped with an error: {e}");
            }
        });
        let token_path = dir.path().join("token");
        wait_until("the token file", || async { token_path.exists() }).await;
        let token = std::fs::read_to_string(&token_path)
            .unwrap()
            .trim()
            .to_string();
        let client = Client::new(base.clone(), Some(token.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while client.status().await.is_err() {
            if task.is_finished() {
                let err = task.await.err().map(|e| e.to_string()).unwrap_or_default();
                panic!("the daemon exited before answering: {err}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for the daemon to answer"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Fixture {
            dir,
            client,
            base,
            token,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// GET `path` with the token, as text.
    pub async fn get_text(&self, path: &str) -> String {
        reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// GET `path` with the token, as JSON.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        serde_json::from_str(&self.get_text(path).await).unwrap()
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    /// A file a job wrote into its output folder (`$PETRI_OUTPUT_DIR`).
    pub fn output(&self, job: &petri_domain::Job, file: &str) -> String {
        let path = self
            .home()
            .join("outputs")
            .join(job.id.to_string())
            .join(file);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    pub fn work(&self) -> PathBuf {
        let w = self.dir.path().join("work");
        std::fs::create_dir_all(&w).unwrap();
        w
    }

    /// A spec that runs `script` with `/bin/sh` in the work folder.
    pub fn script(&self, script: &str) -> JobSpec {
        JobSpec {
            run: Some(script.to_string()),
            workdir: Some(self.work()),
            ..Default::default()
        }
    }

    /// Every job of the home, finished ones too.
    /// Every job of the home, finished ones too, oldest first (page after page).
    pub async fn all_jobs(&self) -> Vec<Job> {
        let mut query = petri_domain::ListQuery {
            all: true,
            order: Some(petri_domain::ListOrder::Oldest),
            limit: Some(petri_domain::MAX_PAGE),
            ..Default::default()
        };
        let mut jobs = Vec::new();
        loop {
            let page = self.client.list(&query).await.unwrap();
            jobs.extend(page.jobs);
            match page.next {
                Some(next) => query.after = Some(next),
                None => return jobs,
            }
        }
    }

    pub async fn submit(&self, spec: JobSpec) -> Job {
        self.client.submit(&[spec]).await.unwrap().remove(0)
    }

    pub async fn wait_state(&self, job: &Job, pred: impl Fn(JobState) -> bool) -> Job {
        let key = job.id.to_string();
        let mut last = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            let j = self.client.job(&key).await.unwrap();
            if pred(j.state) {
                return j;
            }
            last = Some(j);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("job never reached the expected state; last seen: {last:#?}");
    }

    /// Waits until a job waits for the reason `pred` accepts, and returns it: "it did not start"
    /// is checked by the reason the scheduler gives, never by a sleep.
    pub async fn wait_pending(
        &self,
        job: &Job,
        pred: impl Fn(&petri_domain::PendingReason) -> bool,
    ) -> Job {
        let key = job.id.to_string();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let j = self.client.job(&key).await.unwrap();
            if j.pending.as_ref().is_some_and(|p| pred(&p.reason)) {
                return j;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job never waited for the expected reason; last seen: {j:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_done(&self, job: &Job) -> Job {
        self.wait_state(job, JobState::is_terminal).await
    }

    /// Stops the daemon and waits until it has let go of its home.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// The project's fake libnvidia-ml (`cargo build -p petri-fake-nvml`), next to the test binaries;
/// `None` (after a loud message) when it was not built, which `CI=true` does not accept.
pub fn fake_nvml() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let lib = exe.parent()?.parent()?.join("libnvidia_ml.so");
    if lib.exists() {
        return Some(lib);
    }
    assert!(
        std::env::var("CI").is_err(),
        "the fake NVML library was not built (cargo build -p petri-fake-nvml)"
    );
    eprintln!(
        "SKIPPED: the fake NVML library was not built (run `cargo build -p petri-fake-nvml`)"
    );
    None
}

/// GPUs described to the fake NVML: the library, and the config file it reads on every call
/// (write it again to change what the GPUs show).
pub struct FakeGpus {
    pub lib: PathBuf,
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeGpus {
    /// Writes `gpus` (the fake's JSON config) and points `PETRI_FAKE_NVML` at it, for the whole
    /// process: one such test per test binary, set up before its daemon starts.
    pub fn new(gpus: serde_json::Value) -> Option<FakeGpus> {
        let lib = fake_nvml()?;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gpus.json");
        std::fs::write(&config, gpus.to_string()).unwrap();
        // SAFETY: called before the daemon (and any thread that reads it) starts.
        unsafe { std::env::set_var("PETRI_FAKE_NVML", &config) };
        Some(FakeGpus {
            lib,
            config,
            _dir: dir,
        })
    }
}

impl Fixture {
    /// Waits until exactly `n` jobs run.
    pub async fn wait_running(&self, n: usize) {
        let client = self.client.clone();
        wait_until(&format!("{n} jobs running"), || {
            let client = client.clone();
            async move {
                client
                    .list(&petri_domain::ListQuery {
                        state: Some("running".into()),
                        ..Default::default()
                    })
                    .await
                    .map(|page| page.jobs.len() == n)
                    .unwrap_or(false)
            }
        })
        .await;
    }
}

/// Polls `cond` until it holds (at most 60 s).
pub async fn wait_until<F, Fut>(what: &str, cond: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The image container tests run (built by `scripts/test.sh`), when a Docker engine answers and
/// has it; `None` (after a loud message) otherwise, which `CI=true` does not accept.
pub fn docker_image() -> Option<String> {
    let image = std::env::var("PETRI_TEST_IMAGE").unwrap_or_else(|_| "petri/python:3.11".into());
    let has = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &image])
        .output()
        .is_ok_and(|o| o.status.success());
    if has {
        return Some(image);
    }
    let why = format!(
        "no Docker engine answers, or it lacks {image} (scripts/test.sh starts the engine and \
         builds the image)"
    );
    assert!(std::env::var("CI").is_err(), "{why}");
    eprintln!("SKIPPED: {why}");
    None
}

/// The containers Docker has for the Petri home `home` (running or not).
pub fn containers_of(home: &Path) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label=petri.home={}", home.display()),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
