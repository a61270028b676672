//! The single `petri` binary: `petri serve` (and, on a build without the desktop window, plain
//! `petri`) runs the daemon; every other verb is the CLI.

use std::process::ExitCode;

use clap::Parser;
use petri_cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        None => serve(&cli, None),
        Some(Command::Serve(args)) => serve(&cli, args.listen),
        Some(_) => client(cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn client(cli: Cli) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(petri_cli::run(cli))
}

fn serve(cli: &Cli, listen: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    let mut settings = petri_daemon::Settings::load(cli.home.as_deref())?;
    if let Some(addr) = listen {
        settings.listen = addr;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&settings.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("petri")
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {}: {e} (is another Petri running? choose another address \
                     with --listen)",
                    settings.listen
                )
            })?;
        let addr = listener.local_addr()?;
        let home = settings.home.clone();
        eprintln!(
            "Petri is running. Web UI and API: http://{addr}/  (sign in with the token in {})",
            home.join("token").display()
        );
        petri_api::run(settings, listener, shutdown_signal()).await?;
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = ctrl_c => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
    tracing::info!("shutting down; running jobs keep running and are re-adopted at the next start");
}
