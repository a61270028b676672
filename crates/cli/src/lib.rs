//! The `petri` command line: one file per verb under `commands/`. Every verb talks to the daemon
//! through `petri-client`; `serve` (and no verb at all) is handled by the binary, which owns the
//! daemon.

mod commands;
mod mounts;
mod output;

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use petri_client::Client;

pub use commands::completions::print_completions;

/// The command line with `--help` telling what plain `petri` does in this build: only the binary
/// knows whether it has the desktop window (its cargo feature `desktop`).
pub fn command(desktop: bool) -> clap::Command {
    Cli::command().long_about(if desktop {
        "An AI lab that fits on one workstation.\n\nWith no command, `petri` opens the desktop \
         window, with the daemon inside unless one already runs; where there is no display it \
         starts the daemon headless and prints the address of its web UI."
    } else {
        "An AI lab that fits on one workstation.\n\nWith no command, `petri` starts the daemon \
         (headless on this build) and prints the address of its web UI."
    })
}

/// Parses this process's arguments with [`command`]'s help; exits on `--help`, `--version` and
/// errors, as `Cli::parse` does.
pub fn parse(desktop: bool) -> Cli {
    let matches = command(desktop).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

#[derive(Debug, Parser)]
#[command(
    name = "petri",
    version,
    about = "An AI lab that fits on one workstation"
)]
pub struct Cli {
    /// The daemon to talk to: a URL, or unix:PATH for a socket (default: the socket of --home,
    /// else the address its daemon wrote, else the system service's socket, else
    /// http://127.0.0.1:7878).
    #[arg(long, global = true, env = "PETRI_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// The Petri home: state, logs, token (default: ~/.local/share/petri).
    #[arg(long, global = true, env = "PETRI_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon headless (the API and the web UI).
    Serve(ServeArgs),
    /// Queue a job (or a sweep of jobs).
    Submit(Box<commands::submit::SubmitArgs>),
    /// List queued and running jobs (--all for finished ones too).
    Ls(commands::ls::LsArgs),
    /// Show one job: state, why it waits, its attempts.
    Show(commands::show::ShowArgs),
    /// Print a job's output (-f to follow it while it runs).
    Logs(commands::logs::LogsArgs),
    /// Cancel jobs (a running job gets SIGTERM, then SIGKILL after the grace period).
    Cancel(commands::act::ActArgs),
    /// Hold queued jobs so they do not start.
    Hold(commands::act::ActArgs),
    /// Release held jobs.
    Release(commands::act::ActArgs),
    /// A live view of the queue and the machine.
    Top(commands::top::TopArgs),
    /// GPUs: memory, reservations, who holds what.
    Gpus(commands::gpus::GpusArgs),
    /// Jupyter notebooks in containers, reached through the daemon.
    Notebook(commands::notebook::NotebookArgs),
    /// Container images: build Petri's default one, list what the engine has.
    Image(commands::image::ImageArgs),
    /// API tokens: create (with scopes and an expiry), list, revoke.
    Token(commands::token::TokenArgs),
    /// Secrets jobs receive at launch (API keys, config files): set, list, remove.
    Secret(commands::secret::SecretArgs),
    /// Clusters jobs can be sent to (`--target NAME`): add, list, remove, check.
    Cluster(commands::cluster::ClusterArgs),
    /// Submit a job's own spec again, to run on a cluster.
    Push(commands::cluster::PushArgs),
    /// Collect the artifact store's garbage now: what nothing holds, old cache entries.
    Gc(commands::gc::GcArgs),
    /// Pipelines: validate, run, show, retry, cancel, backfill, save; the components.
    Pipeline(commands::pipeline::PipelineArgs),
    /// Tracking runs (what jobs and MLflow clients log): list, show.
    Run(commands::run::RunArgs),
    /// The model registry and serving: register, list, show, aliases, remove; serve a version,
    /// unserve it, list the endpoints.
    Model(commands::model::ModelArgs),
    /// One replica of a model deployment (the daemon starts it; not for people).
    #[command(hide = true)]
    ModelServer(ModelServerArgs),
    /// Print shell completions.
    Completions(commands::completions::CompletionsArgs),
    /// Who the daemon takes you for (your user, role, and how you signed in).
    Whoami(commands::user::WhoamiArgs),
    /// The users of a shared machine: roles, quotas, fair-share usage.
    User(commands::user::UserArgs),
    /// The log of every change: who, when, from where, what (admins).
    Audit(commands::user::AuditArgs),
}

#[derive(Debug, Args)]
pub struct ModelServerArgs {
    /// The version's folder (model.json, model.safetensors).
    #[arg(long)]
    pub model: std::path::PathBuf,
    /// The deployment's name, as in /v2/models/{name}.
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub version: String,
    #[arg(long)]
    pub listen: std::net::SocketAddr,
    #[arg(long, default_value_t = 64)]
    pub max_batch: usize,
    #[arg(long, default_value_t = 2000)]
    pub max_delay_us: u64,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:7878; loopback unless you mean to share).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
}

/// Runs a client verb; `serve` is not handled here.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::discover(cli.server.as_deref(), cli.home.as_deref());
    match cli.command {
        None | Some(Command::Serve(_)) | Some(Command::ModelServer(_)) => {
            anyhow::bail!("`serve` and `model-server` are run by the petri binary")
        }
        Some(Command::Submit(a)) => commands::submit::run(&client, *a).await,
        Some(Command::Notebook(a)) => commands::notebook::run(&client, a).await,
        Some(Command::Image(a)) => commands::image::run(&client, a).await,
        Some(Command::Ls(a)) => commands::ls::run(&client, a).await,
        Some(Command::Show(a)) => commands::show::run(&client, a).await,
        Some(Command::Logs(a)) => commands::logs::run(&client, a).await,
        Some(Command::Cancel(a)) => {
            commands::act::run(&client, a, commands::act::Verb::Cancel).await
        }
        Some(Command::Hold(a)) => commands::act::run(&client, a, commands::act::Verb::Hold).await,
        Some(Command::Release(a)) => {
            commands::act::run(&client, a, commands::act::Verb::Release).await
        }
        Some(Command::Top(a)) => commands::top::run(&client, a).await,
        Some(Command::Token(a)) => commands::token::run(&client, a).await,
        Some(Command::Secret(a)) => commands::secret::run(&client, a).await,
        Some(Command::Cluster(a)) => commands::cluster::run(&client, a).await,
        Some(Command::Push(a)) => commands::cluster::push(&client, a).await,
        Some(Command::Gpus(a)) => commands::gpus::run(&client, a).await,
        Some(Command::Gc(a)) => commands::gc::run(&client, a).await,
        Some(Command::Pipeline(a)) => commands::pipeline::run(&client, a).await,
        Some(Command::Run(a)) => commands::run::run(&client, a).await,
        Some(Command::Model(a)) => commands::model::run(&client, a).await,
        Some(Command::Completions(a)) => {
            print_completions(a.shell);
            Ok(())
        }
        Some(Command::Whoami(a)) => commands::user::whoami(&client, a).await,
        Some(Command::User(a)) => commands::user::run(&client, a).await,
        Some(Command::Audit(a)) => commands::user::audit(&client, a).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_headless_build_says_it_is_headless() {
        let help = |desktop| command(desktop).render_long_help().to_string();
        assert!(
            help(false).contains("(headless on this build)"),
            "{}",
            help(false)
        );
        assert!(!help(true).contains("on this build"), "{}", help(true));
        assert!(
            help(true).contains("opens the desktop window"),
            "{}",
            help(true)
        );
        let matches = command(true).try_get_matches_from(["petri", "ls", "--all"]);
        let cli = Cli::from_arg_matches(&matches.unwrap()).unwrap();
        assert!(matches!(cli.command, Some(Command::Ls(_))));
    }
}
