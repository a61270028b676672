//! The single `petri` binary: plain `petri` opens the desktop window (feature `desktop`, when
//! there is a display; otherwise it runs headless like `petri serve`), `petri serve` runs the
//! daemon, every other verb is the CLI.

#[cfg(feature = "desktop")]
mod desktop;

use std::process::ExitCode;

use petri_cli::{Cli, Command};

/// mimalloc: the daemon's request paths allocate many small short-lived buffers across threads,
/// where glibc's malloc and free took 15 % of its CPU under load (P3's profile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = petri_cli::parse(cfg!(feature = "desktop"));
    let result = match &cli.command {
        None => open(&cli),
        Some(Command::Serve(args)) => serve(&cli, args.listen),
        Some(Command::ModelServer(args)) => model_server(args),
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
    // A CLI whose reader went away (`petri ls | head`) ends quietly, as `ls` does, instead of
    // panicking on its next line. Only the CLI: the daemon keeps ignoring SIGPIPE.
    // SAFETY: setting a signal's disposition to its default before any thread is started.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(petri_cli::run(cli))
}

/// `petri model-server`: one replica of a model deployment (the daemon starts it as a job).
/// One thread serves it (its reservation is half a core): the daemon sends it whole batches, and
/// a second worker only added wake-ups between the two. A batch that costs more than a few
/// microseconds runs on a blocking thread.
fn model_server(a: &petri_cli::ModelServerArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(petri_api::run_model_server(petri_api::ModelServerOptions {
        model: a.model.clone(),
        name: a.name.clone(),
        version: a.version.clone(),
        listen: a.listen,
        max_batch: a.max_batch,
        max_delay: std::time::Duration::from_micros(a.max_delay_us),
    }))
    .map_err(|e| anyhow::anyhow!(e))
}

/// `petri` alone: the desktop window where there is one, else the headless server.
fn open(cli: &Cli) -> anyhow::Result<()> {
    #[cfg(feature = "desktop")]
    if desktop::has_display() {
        let settings = petri_daemon::Settings::load(cli.home.as_deref())?;
        init_logging(&settings);
        return desktop::run(settings);
    }
    serve(cli, None)
}

fn init_logging(settings: &petri_daemon::Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&settings.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Runs the daemon on a thread of its own (for the desktop window); returns its address and a
/// sender that stops it. Listens on `settings.listen`, or on a free loopback port when that one
/// is taken.
#[cfg(feature = "desktop")]
fn start_daemon_thread(
    settings: petri_daemon::Settings,
) -> anyhow::Result<(std::net::SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    give_back_freed_memory();
    std::thread::Builder::new()
        .name("petri-daemon".into())
        .spawn(move || {
            let rt = match daemon_runtime().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow::anyhow!("starting the runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::bind(settings.listen).await {
                    Ok(l) => l,
                    Err(_) => match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(anyhow::anyhow!("cannot listen: {e}")));
                            return;
                        }
                    },
                };
                let addr = listener.local_addr();
                let home = settings.home.clone();
                // On a worker, as `serve` does: an accepted connection stays where it was accepted.
                let served = tokio::spawn(petri_api::run(settings, listener, async move {
                    let _ = stop_rx.await;
                }));
                // Ready once the daemon wrote its address (it has recovered the queue by then).
                let announce = async {
                    for _ in 0..600 {
                        if home.join("daemon.addr").exists() {
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    let _ = ready_tx.send(addr.map_err(anyhow::Error::from));
                };
                let (result, ()) = tokio::join!(served, announce);
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => eprintln!("error: the daemon stopped: {e}"),
                    Err(e) => eprintln!("error: the daemon stopped: {e}"),
                }
            });
        })?;
    let addr = ready_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("the daemon did not start"))??;
    Ok((addr, stop_tx))
}

// mimalloc's own entry point (`mimalloc.h`); the crate that links it does not export it.
unsafe extern "C" {
    fn mi_collect(force: bool);
}

/// Returns what the calling thread's heap holds free to the system.
fn collect_here() {
    // SAFETY: takes no pointers; mimalloc is the global allocator of this binary.
    unsafe { mi_collect(true) };
}

/// Returns what the C allocator holds free to the system. SQLite allocates with it, not with
/// mimalloc: its page caches and statements, on whichever thread used a connection, each in one
/// of glibc's per-thread arenas, which give back only what lies at their top. After a
/// million-job cascade and the reads that followed it, that was 20 MiB of an idle daemon's 140.
fn trim_c_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: takes no pointers; glibc's allocator locks each arena while it trims it.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Gives the memory a burst freed back to the system while the daemon is quiet. mimalloc keeps
/// what a thread freed in that thread's own heap until the thread allocates again: after a
/// million-job sweep has ended (its answer, a million events), an idle daemon would otherwise
/// keep its peak for as long as it runs. This thread returns what is free in mimalloc's shared
/// arenas and in the C allocator's every few seconds; the daemon's runtime threads return their
/// own (`daemon_runtime`).
fn give_back_freed_memory() {
    let started = std::thread::Builder::new()
        .name("petri-memory".into())
        .spawn(|| {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                collect_here();
                trim_c_heap();
            }
        });
    if let Err(e) = started {
        eprintln!("petri: memory is not given back while idle: {e}");
    }
}

/// The daemon's runtime. Its threads give back what they freed: a worker when it goes idle (at
/// most every 5 s), a blocking thread when it ends, which it does after 2 s without work (a
/// burst of database reads leaves dozens; each held what it had freed for as long as it lived;
/// calling the collection on every thread of a daemon after a 200,000-job cascade returned 16
/// to 72 MiB).
fn daemon_runtime() -> tokio::runtime::Builder {
    fn when_idle() {
        thread_local! {
            static LAST: std::cell::Cell<Option<std::time::Instant>> =
                const { std::cell::Cell::new(None) };
        }
        let now = std::time::Instant::now();
        let due = LAST.with(|last| {
            let due = last
                .get()
                .is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(5));
            if due {
                last.set(Some(now));
            }
            due
        });
        if due {
            collect_here();
        }
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .enable_all()
        .thread_name("petri")
        .on_thread_park(when_idle)
        .thread_keep_alive(std::time::Duration::from_secs(2))
        .on_thread_stop(collect_here);
    builder
}

fn serve(cli: &Cli, listen: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    let mut settings = petri_daemon::Settings::load(cli.home.as_deref())?;
    if let Some(addr) = listen {
        settings.listen = addr;
    }
    init_logging(&settings);
    give_back_freed_memory();
    let rt = daemon_runtime().build()?;
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
        // On a worker, not on this thread: `block_on` runs its future outside the runtime's
        // workers, so every accepted connection was a hand-off from this thread to a worker.
        tokio::spawn(petri_api::run(settings, listener, shutdown_signal())).await??;
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
