//! `petri notebook start|ls|open|stop|rm`: Jupyter in a container, reached through the daemon.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use petri_client::Client;
use petri_domain::{ByteSize, Millis, Notebook, NotebookRequest, NotebookState};

use crate::mounts::parse_mount;
use crate::output;

#[derive(Debug, Args)]
pub struct NotebookArgs {
    #[command(subcommand)]
    pub command: NotebookCommand,
}

#[derive(Debug, Subcommand)]
pub enum NotebookCommand {
    /// Start a notebook (or resume a stopped one) and wait until Jupyter answers.
    Start(StartArgs),
    /// List notebooks.
    Ls(LsArgs),
    /// Print a sign-in link for a browser (and open it when there is a display).
    Open(NameArgs),
    /// Stop a notebook; its workspace is kept and `start` resumes it.
    Stop(NameArgs),
    /// Forget a stopped notebook (its workspace folder is kept).
    Rm(NameArgs),
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The notebook's name (part of its URL).
    pub name: String,
    /// The image (default: the daemon's notebooks.image, petri/python:3.11).
    #[arg(long, value_name = "IMG")]
    pub image: Option<String>,
    /// Reserve a slice of one GPU's memory, e.g. 4GiB.
    #[arg(long, value_name = "SIZE", conflicts_with = "gpus")]
    pub gpu_mem: Option<ByteSize>,
    /// Reserve whole GPUs.
    #[arg(long, value_name = "N")]
    pub gpus: Option<u32>,
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    #[arg(long, value_name = "SIZE")]
    pub mem: Option<ByteSize>,
    /// The folder to work in (default: PETRI_HOME/notebooks/NAME).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Another host folder to mount: HOST (the same path inside), HOST:CONTAINER, with :ro for
    /// read-only; repeatable.
    #[arg(long, value_name = "HOST[:CONTAINER][:ro]")]
    pub mount: Vec<String>,
    /// Stop it after this long without activity, e.g. 30m.
    #[arg(long, value_name = "DURATION")]
    pub idle: Option<Millis>,
    /// Return at once instead of waiting for Jupyter.
    #[arg(long)]
    pub no_wait: bool,
    /// Print the notebook as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print the notebooks as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    pub name: String,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: &Client, args: NotebookArgs) -> anyhow::Result<()> {
    match args.command {
        NotebookCommand::Start(a) => start(client, a).await,
        NotebookCommand::Ls(a) => ls(client, a).await,
        NotebookCommand::Open(a) => open(client, a).await,
        NotebookCommand::Stop(a) => {
            let nb = client.notebook_stop(&a.name).await?;
            if a.json {
                return output::print_json(&nb);
            }
            println!(
                "notebook {} is stopping; its workspace stays at {}",
                nb.name,
                nb.workspace.display()
            );
            Ok(())
        }
        NotebookCommand::Rm(a) => {
            let nb = client.notebook_remove(&a.name).await?;
            if a.json {
                return output::print_json(&nb);
            }
            println!(
                "notebook {} removed; its workspace is kept at {}",
                nb.name,
                nb.workspace.display()
            );
            Ok(())
        }
    }
}

async fn start(client: &Client, a: StartArgs) -> anyhow::Result<()> {
    let workspace = a
        .workspace
        .map(std::path::absolute)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--workspace: {e}"))?;
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let req = NotebookRequest {
        name: a.name.clone(),
        image: a.image,
        gpu_memory: a.gpu_mem,
        gpus: a.gpus,
        cpus: a.cpus,
        memory: a.mem,
        workspace,
        mounts: a
            .mount
            .iter()
            .map(|m| parse_mount(m, &cwd))
            .collect::<anyhow::Result<_>>()?,
        idle_timeout: a.idle,
    };
    let mut nb = client.notebook_start(&req).await?;
    if !a.no_wait {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        let began = std::time::Instant::now();
        loop {
            bar.set_message(match nb.state {
                NotebookState::Queued => "waiting in the queue (see `petri show`)".to_string(),
                _ => format!("starting Jupyter ({}s)", began.elapsed().as_secs()),
            });
            if matches!(nb.state, NotebookState::Running | NotebookState::Stopped) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            nb = client.notebook(&a.name).await?;
        }
        bar.finish_and_clear();
        if nb.state == NotebookState::Stopped {
            anyhow::bail!(
                "notebook {} stopped while starting: {} (see `petri logs {}`)",
                nb.name,
                nb.reason.as_deref().unwrap_or("no reason given"),
                nb.job.map(|j| j.to_string()).unwrap_or_default()
            );
        }
    }
    if a.json {
        return output::print_json(&nb);
    }
    println!(
        "notebook {} is {}: open it with `petri notebook open {}`",
        nb.name,
        state_word(nb.state),
        nb.name
    );
    Ok(())
}

async fn ls(client: &Client, a: LsArgs) -> anyhow::Result<()> {
    let notebooks = client.notebooks().await?;
    if a.json {
        return output::print_json(&notebooks);
    }
    if notebooks.is_empty() {
        println!("No notebooks. Start one with `petri notebook start NAME`.");
        return Ok(());
    }
    let mut t = output::new_table(&[
        "NAME",
        "STATE",
        "IMAGE",
        "GPU",
        "IDLE",
        "WORKSPACE / REASON",
    ]);
    let now = output::now_ms();
    for nb in &notebooks {
        t.add_row(vec![
            nb.name.clone(),
            state_word(nb.state).to_string(),
            nb.image.clone(),
            gpu_text(nb),
            nb.last_activity_ms
                .map(|t| format!("{} / {}", output::short_duration(now - t), nb.idle_timeout))
                .unwrap_or_default(),
            match (&nb.reason, nb.state) {
                (Some(r), NotebookState::Stopped) => r.clone(),
                _ => nb.workspace.display().to_string(),
            },
        ]);
    }
    println!("{t}");
    Ok(())
}

async fn open(client: &Client, a: NameArgs) -> anyhow::Result<()> {
    let url = client.notebook_link(&a.name).await?;
    if a.json {
        return output::print_json(&serde_json::json!({ "url": url }));
    }
    println!("{url}");
    eprintln!("(the link signs one browser in and works once, for a minute)");
    if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some() {
        let _ = std::process::Command::new("xdg-open")
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    Ok(())
}

fn state_word(s: NotebookState) -> &'static str {
    match s {
        NotebookState::Queued => "queued",
        NotebookState::Starting => "starting",
        NotebookState::Running => "running",
        NotebookState::Stopping => "stopping",
        NotebookState::Stopped => "stopped",
    }
}

fn gpu_text(nb: &Notebook) -> String {
    match (nb.gpus, nb.gpu_memory) {
        (Some(n), _) => format!("{n} GPU"),
        (None, Some(m)) => m.to_string(),
        _ => String::new(),
    }
}
