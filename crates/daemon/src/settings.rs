//! One `Settings` type loaded in layers: defaults, then `PETRI_HOME/petri.toml`, then `PETRI_*`
//! environment variables (`PETRI_CAPACITY__CPUS=4` sets `capacity.cpus`), then command-line flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
pub use petri_artifacts::ArtifactSettings;
use petri_domain::{ByteSize, Millis};
pub use petri_notebooks::NotebookSettings;
pub use petri_queue::retention::RetentionSettings;
pub use petri_queue::{CapacitySettings, DockerSettings, GpuSettings, QueueConfig, QueueSettings};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where Petri keeps its state. Default: the platform data folder (`~/.local/share/petri`).
    pub home: PathBuf,
    /// The address the API listens on. Loopback unless you mean to share the machine.
    pub listen: SocketAddr,
    /// The largest request body accepted.
    pub max_body: ByteSize,
    /// How long a stopped job has between SIGTERM and SIGKILL.
    pub kill_grace: Millis,
    /// What jobs may reserve on this machine.
    pub capacity: CapacitySettings,
    /// Named queues and their limits; a job may name any queue, unlisted ones are unlimited.
    pub queues: BTreeMap<String, QueueSettings>,
    /// The log filter (`info`, `debug`, `petri_daemon=trace`...).
    pub log: String,
    /// GPUs.
    pub gpu: GpuSettings,
    /// Containers.
    pub docker: DockerSettings,
    /// Jupyter notebooks.
    pub notebooks: NotebookSettings,
    /// The artifact store (`PETRI_HOME/artifacts`): its size, how long cache entries live, how
    /// often garbage is collected.
    pub artifacts: ArtifactSettings,
    /// Pipelines.
    pub pipeline: PipelineSettings,
    /// How long the logs and output folders of finished jobs are kept, and within what size.
    pub retention: RetentionSettings,
    /// The desktop app.
    pub desktop: DesktopSettings,
    /// Team mode: who may join, fair share, the Unix socket.
    pub team: TeamSettings,
    /// `target: auto`: which cluster a job bursts to, and after how long a wait here.
    pub burst: petri_queue::BurstSettings,
    /// TLS, which an address beyond loopback requires: your certificate and key, or (neither
    /// set) one generated at first start into the home's `tls/`.
    pub tls: TlsSettings,
}

/// Your own certificate for an address beyond loopback (both PEM files, or neither).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// A shared machine's settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeamSettings {
    /// A Unix user who calls over the socket for the first time: added as a `member` (the
    /// default), as a `viewer`, or refused (`none`) with how an admin adds them.
    pub join: petri_accounts::Join,
    /// Fair share among users.
    pub fair_share: petri_queue::FairShareSettings,
    /// Where the daemon's Unix socket is. Default: `petri.sock` in the home.
    pub socket: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DesktopSettings {
    /// Closing the window keeps Petri (and its daemon) in the tray; quit from the tray's menu.
    pub keep_in_tray: bool,
}

impl Default for DesktopSettings {
    fn default() -> Self {
        DesktopSettings { keep_in_tray: true }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            home: default_home(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            max_body: ByteSize(4 << 20),
            kill_grace: Millis(10_000),
            capacity: CapacitySettings::default(),
            queues: BTreeMap::new(),
            log: "info".into(),
            gpu: GpuSettings::default(),
            docker: DockerSettings::default(),
            notebooks: NotebookSettings::default(),
            artifacts: ArtifactSettings::default(),
            pipeline: PipelineSettings::default(),
            retention: RetentionSettings::default(),
            desktop: DesktopSettings::default(),
            team: TeamSettings::default(),
            tls: TlsSettings::default(),
            burst: petri_queue::BurstSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings: {0}")]
    Invalid(String),
}

const DAEMON_KEYS: &[&str] = &[
    "listen",
    "tls",
    "max_body",
    "kill_grace",
    "capacity",
    "queues",
    "log",
    "gpu",
    "docker",
    "notebooks",
    "artifacts",
    "pipeline",
    "retention",
    "desktop",
    "team",
    "burst",
];

/// The platform data folder, e.g. `~/.local/share/petri`.
pub fn default_home() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("petri")
}

impl Settings {
    /// Loads the layers. `home` (from `--home`) wins over `PETRI_HOME`; the chosen home's
    /// `petri.toml` is read.
    pub fn load(home: Option<&Path>) -> Result<Settings, SettingsError> {
        let home = home
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("PETRI_HOME").map(PathBuf::from))
            .unwrap_or_else(default_home);
        Self::load_from(home, Env::prefixed("PETRI_"))
    }

    fn load_from(home: PathBuf, env: Env) -> Result<Settings, SettingsError> {
        let toml = home.join("petri.toml");
        let env = env
            .split("__")
            // Only daemon settings: client-side variables (PETRI_SERVER, PETRI_TOKEN...) share the
            // prefix, and PETRI_HOME was read above.
            .filter(|k| {
                let top = k
                    .as_str()
                    .split('.')
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                DAEMON_KEYS.contains(&top.as_str())
            });
        let mut settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(&toml))
            .merge(env)
            .extract()
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        settings.home = home;
        if let Some(path) = std::env::var_os("PETRI_NVML_PATH").filter(|p| !p.is_empty()) {
            settings.gpu.nvml_path = Some(PathBuf::from(path));
        }
        settings.validate()?;
        Ok(settings)
    }

    /// The sections the queue reads, with the home.
    pub fn queue_config(&self) -> QueueConfig {
        QueueConfig {
            home: petri_queue::Home::new(&self.home),
            kill_grace: self.kill_grace,
            capacity: self.capacity.clone(),
            queues: self.queues.clone(),
            gpu: self.gpu.clone(),
            docker: self.docker.clone(),
            fair_share: self.team.fair_share.clone(),
            burst: self.burst.clone(),
        }
    }

    /// Where the daemon's Unix socket is.
    pub fn socket(&self) -> PathBuf {
        self.team
            .socket
            .clone()
            .unwrap_or_else(|| self.home.join("petri.sock"))
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(c) = self.capacity.cpus
            && (!c.is_finite() || c <= 0.0)
        {
            return Err(SettingsError::Invalid(
                "capacity.cpus must be more than 0".into(),
            ));
        }
        for (name, q) in &self.queues {
            if q.concurrency == Some(0) {
                return Err(SettingsError::Invalid(format!(
                    "queues.{name}.concurrency must be at least 1"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's own error type
    fn layers_apply_in_order_and_unknown_keys_fail() {
        figment::Jail::expect_with(|jail| {
            let home = jail.directory().to_path_buf();
            jail.create_file(
                "petri.toml",
                "kill_grace = \"3s\"\n[queues.gpu]\nconcurrency = 2\n\
                 [artifacts]\nmax_size = \"5GiB\"\nmax_age = \"30d\"\n",
            )?;
            jail.set_env("PETRI_CAPACITY__CPUS", "6");
            jail.set_env("PETRI_SERVER", "http://elsewhere");
            let s = Settings::load_from(home.clone(), Env::prefixed("PETRI_")).unwrap();
            assert_eq!(s.kill_grace.0, 3000);
            assert_eq!(s.queues["gpu"].concurrency, Some(2));
            assert_eq!(s.queue_config().capacity().cpu_millis, 6000);
            assert_eq!(s.artifacts.max_size.0, 5 << 30);
            assert_eq!(s.artifacts.policy().max_age_ms, 30 * 86_400_000);
            assert_eq!(s.artifacts.gc_every, ArtifactSettings::default().gc_every);
            jail.create_file("petri.toml", "kill_grase = \"3s\"\n")?;
            let err = Settings::load_from(home, Env::prefixed("PETRI_")).unwrap_err();
            assert!(err.to_string().contains("kill_grase"), "{err}");
            Ok(())
        });
    }
}

/// `[pipeline]`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSettings {
    /// The folder of your own components (each a folder with a `component.yaml`); default
    /// `PETRI_HOME/components`.
    pub components: Option<std::path::PathBuf>,
}
