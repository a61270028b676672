//! The HTTP face of the daemon: `/api/v1` (JSON, OpenAPI at `/api/v1/openapi.json`), live events
//! and log following over SSE, `/metrics`, `/healthz`, and the web UI; and, on an address of their
//! own, the notebooks (so that a notebook's pages never share an origin with the web UI). The only
//! crate that knows axum. Handlers parse, call a [`Daemon`] service, and map errors through one
//! table.

mod artifacts;
mod auth;
mod error;
mod events;
mod jobs;
mod mlflow;
mod mlflow_artifacts;
mod mlflow_registry;
mod model_server;
pub use model_server::{ModelServerOptions, run as run_model_server};
mod clusters;
mod models;
mod notebooks;
mod openapi;
mod pipelines;
mod proxy;
mod secrets;
mod serving;
mod system;
mod tls;
mod tokens;
mod tracking;
mod users;

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post};
pub use petri_daemon::{Daemon, Settings};
use tokio::sync::watch;

pub use error::ApiError;

/// The OpenAPI document the daemon serves at `/api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    openapi::ApiDoc::openapi()
}

/// Shared by every handler: one reference count to clone (axum clones the state for each
/// extractor of every request).
#[derive(Clone)]
pub(crate) struct AppState(std::sync::Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub(crate) struct Shared {
    pub daemon: Daemon,
    /// Flips to true at shutdown so that long-lived streams end.
    pub closing: watch::Receiver<bool>,
    /// Sends notebook requests on to Jupyter.
    pub proxy: proxy::ProxyClient,
    /// Where the API and the web UI are served.
    pub api_addr: SocketAddr,
    /// Where the notebooks are served.
    pub notebooks_addr: SocketAddr,
    /// `https` beyond loopback, else `http`.
    pub scheme: &'static str,
}

/// The API and the web UI over a started daemon.
fn api_router(state: AppState) -> Router {
    let api = Router::new()
        .route("/jobs", post(jobs::submit).get(jobs::list))
        .route("/jobs/{id}", get(jobs::show))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/jobs/{id}/hold", post(jobs::hold))
        .route("/jobs/{id}/release", post(jobs::release))
        .route("/jobs/{id}/log", get(jobs::log))
        .route("/jobs/{id}/log/stream", get(events::follow_log))
        .route("/events", get(events::stream))
        .route("/status", get(system::status))
        .route("/settings", get(system::settings))
        .route("/gpus", get(system::gpus))
        .route("/gpus/history", get(system::gpu_history))
        .route("/images", get(notebooks::images))
        .route("/images/build", post(notebooks::build_image))
        .route("/notebooks", post(notebooks::start).get(notebooks::list))
        .route(
            "/notebooks/{name}",
            get(notebooks::show).delete(notebooks::remove),
        )
        .route("/notebooks/{name}/stop", post(notebooks::stop))
        .route("/notebooks/{name}/open", post(notebooks::open))
        .route("/tokens", post(tokens::create).get(tokens::list))
        .route("/tokens/{token}", axum::routing::delete(tokens::revoke))
        .route("/clusters", get(clusters::list).post(clusters::add))
        .route("/clusters/{name}", axum::routing::delete(clusters::remove))
        .route("/clusters/{name}/check", get(clusters::check))
        .route("/secrets", get(secrets::list))
        .route(
            "/secrets/{name}",
            axum::routing::put(secrets::put).delete(secrets::remove),
        )
        .route("/me", get(users::me))
        .route("/users", get(users::list))
        .route("/users/{name}", axum::routing::put(users::put))
        .route("/quotas/{subject}", axum::routing::put(users::set_quota))
        .route("/shares", get(users::shares))
        .route("/audit", get(users::audit))
        .route("/gc", post(artifacts::gc))
        .route("/artifacts/usage", get(artifacts::usage))
        .route("/usage", get(artifacts::home_usage))
        .route("/artifacts/{digest}", get(artifacts::get))
        .route("/pipelines", get(pipelines::list))
        .route("/pipelines/validate", post(pipelines::validate))
        .route("/pipelines/schema", get(pipelines::schema))
        .route(
            "/pipelines/{name}",
            get(pipelines::show)
                .put(pipelines::save)
                .delete(pipelines::remove),
        )
        .route("/pipelines/{name}/backfill", post(pipelines::backfill))
        .route("/components", get(pipelines::components))
        .route("/pipeline-runs", post(pipelines::run).get(pipelines::runs))
        .route("/pipeline-runs/{id}", get(pipelines::show_run))
        .route("/pipeline-runs/{id}/cancel", post(pipelines::cancel))
        .route("/pipeline-runs/{id}/retry", post(pipelines::retry))
        .route("/experiments", get(tracking::experiments))
        .route("/runs", get(tracking::runs))
        .route("/runs/{id}", get(tracking::run))
        .route("/runs/{id}/metrics/{key}", get(tracking::metric_history))
        .route("/models", get(models::list))
        .route("/models/{name}", get(models::show).delete(models::delete))
        .route("/models/{name}/versions", post(models::register))
        .route(
            "/models/{name}/versions/{version}",
            get(models::version).delete(models::delete_version),
        )
        .route(
            "/models/{name}/versions/{version}/files/{*path}",
            get(models::file),
        )
        .route(
            "/models/{name}/aliases/{alias}",
            axum::routing::put(models::set_alias).delete(models::delete_alias),
        )
        .route(
            "/model-uploads/{upload}/{*path}",
            axum::routing::put(models::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/deployments", get(serving::list).post(serving::serve))
        .route(
            "/deployments/{name}",
            get(serving::show).delete(serving::unserve),
        )
        .route("/deployments/{name}/stats", get(serving::stats))
        .route("/openapi.json", get(openapi::document));
    let routes = Router::new()
        .nest("/api/v1", api)
        .merge(tracking_routes())
        .route("/v2", get(serving::server_metadata))
        .route("/v2/health/live", get(serving::live))
        .route("/v2/health/ready", get(serving::ready))
        .route("/v2/models/{*rest}", any(serving::forward))
        .route("/metrics", get(system::metrics))
        .route("/", get(system::ui));
    served(state, routes)
}

/// `routes` behind the token check, beside an open `/healthz`, with the body limit, panics
/// answered as 500s and, where the log asks for it, a trace of every request.
fn served(state: AppState, routes: Router<AppState>) -> Router {
    let max_body = state.daemon.settings().max_body.0 as usize;
    let protected = routes
        .fallback(system::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let router = Router::new()
        .route("/healthz", get(system::healthz))
        .merge(protected)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            error::panic_response,
        ));
    traced(router).with_state(state)
}

/// tower-http's trace of every request, where the log asks for it (`log =
/// "info,tower_http=debug"`). Its spans and events are DEBUG but for a 5xx, whose cause
/// `error.rs` logs already (an inference route's 503 while a replica restarts is an answer, not
/// a fault), so at the default level it would cost every request and log nothing new (P3's
/// A/B: about 5 µs of the daemon's CPU an inference request, a tenth of it).
fn traced(router: Router<AppState>) -> Router<AppState> {
    if tracing::enabled!(target: "tower_http::trace", tracing::Level::DEBUG) {
        router.layer(tower_http::trace::TraceLayer::new_for_http())
    } else {
        router
    }
}

/// MLflow's tracking, registry and artifact routes.
fn tracking_routes() -> Router<AppState> {
    Router::new()
        .nest(
            "/api/2.0/mlflow",
            mlflow::routes().merge(mlflow_registry::routes()),
        )
        .nest("/api/2.0/mlflow-artifacts", mlflow_artifacts::routes())
}

/// What containers reach on the Docker bridge: the tracking API alone, with the same tokens.
fn bridge_router(state: AppState) -> Router {
    served(state, tracking_routes())
}

/// Listens on the Docker bridge's gateway (the host as containers see it) once the engine is
/// there, so container jobs reach the tracking API at `host.docker.internal`. The port is the
/// API's when it is free there, else one the system picks. Only the bridge's address: nothing
/// beyond this machine's containers reaches it.
async fn serve_bridge(state: AppState, port: u16, mut closing: watch::Receiver<bool>) {
    let listener = loop {
        if let Some(gateway) = state.daemon.docker_bridge().await {
            let bound = match tokio::net::TcpListener::bind((gateway, port)).await {
                Ok(l) => Ok(l),
                Err(_) => tokio::net::TcpListener::bind((gateway, 0)).await,
            };
            match bound {
                Ok(l) => break l,
                Err(e) => {
                    tracing::warn!(%gateway, error = %e, "cannot listen on the Docker bridge; container jobs get no tracking address");
                    return;
                }
            }
        }
        // The engine may start after the daemon: look again a little later.
        tokio::select! {
            _ = closing.wait_for(|c| *c) => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
        }
    };
    let Ok(at) = listener.local_addr() else {
        return;
    };
    state
        .daemon
        .set_container_tracking_uri(format!("http://host.docker.internal:{}", at.port()));
    tracing::info!(%at, "container jobs reach tracking on the Docker bridge");
    let served = axum::serve(listener, bridge_router(state))
        .with_graceful_shutdown(async move {
            let _ = closing.wait_for(|c| *c).await;
        })
        .await;
    if let Err(e) = served {
        tracing::warn!(error = %e, "serving on the Docker bridge stopped");
    }
}

/// The notebooks, on their own address. They check their own auth: a bearer token or a browser's
/// notebook session.
fn notebook_router(state: AppState) -> Router {
    let router = Router::new()
        .route("/healthz", get(system::healthz))
        .route("/notebooks/{name}", any(proxy::forward))
        .route("/notebooks/{name}/{*rest}", any(proxy::forward))
        .fallback(system::not_found)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            error::panic_response,
        ));
    traced(router).with_state(state)
}

/// A TCP listener whose connections send an answer when it is written, not after the
/// acknowledgement of the one before (`TCP_NODELAY`), as HTTP servers do.
pub(crate) struct NoDelay(pub tokio::net::TcpListener);

impl axum::serve::Listener for NoDelay {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        let _ = io.set_nodelay(true);
        (io, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        axum::serve::Listener::local_addr(&self.0)
    }
}

/// Serves `router` on `listener`, through TLS when `tls` is given, until `shutdown`.
async fn serve_tcp(
    listener: tokio::net::TcpListener,
    tls: Option<&tls::Tls>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The caller's address goes with each request (the audit log says where a change came from).
    let app = router.into_make_service_with_connect_info::<auth::TcpPeer>();
    match tls {
        Some(tls) => {
            let listener = tls::TlsListener::new(listener, tls)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(NoDelay(listener), app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// The daemon's Unix socket, where the kernel says who calls (no token needed). Open to every
/// local user when the daemon runs as root (the system service of a shared machine: each user
/// is themselves), else to the daemon's own user alone. `None`, loudly, when it cannot be made:
/// the TCP address still serves.
fn bind_socket(path: &std::path::Path) -> Option<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener = match tokio::net::UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(socket = %path.display(), error = %e, "cannot listen on the Unix socket; local callers need a token");
            return None;
        }
    };
    let mode = if nix::unistd::geteuid().is_root() {
        0o666
    } else {
        0o600
    };
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        tracing::warn!(socket = %path.display(), error = %e, "cannot set the socket's mode; not serving on it");
        let _ = std::fs::remove_file(path);
        return None;
    }
    tracing::info!(socket = %path.display(), "local callers are known by their uid on this socket");
    Some(listener)
}

/// Starts the daemon and serves it on `listener` until `shutdown` resolves. Running jobs are left
/// running; the next start re-adopts them.
pub async fn run(
    settings: Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), petri_daemon::DaemonError> {
    let io = |e: std::io::Error| petri_daemon::DaemonError::Io(e.to_string());
    let addr: SocketAddr = listener.local_addr().map_err(io)?;
    // The notebooks' own address: by default the same interface, a port the system picks.
    let notebooks_at = settings
        .notebooks
        .listen
        .unwrap_or_else(|| SocketAddr::new(addr.ip(), 0));
    let notebooks = tokio::net::TcpListener::bind(notebooks_at)
        .await
        .map_err(|e| {
            petri_daemon::DaemonError::Io(format!(
                "cannot listen for notebooks on {notebooks_at}: {e} (set notebooks.listen)"
            ))
        })?;
    let notebooks_addr = notebooks.local_addr().map_err(io)?;
    let socket_path = settings.socket();
    // Beyond loopback, TLS: the user's certificate or a generated one.
    let tls = if addr.ip().is_loopback() && notebooks_addr.ip().is_loopback() {
        None
    } else {
        let tls = tls::load(
            &settings.home,
            settings.tls.cert.as_deref(),
            settings.tls.key.as_deref(),
            addr,
        )
        .map_err(|e| petri_daemon::DaemonError::Io(format!("TLS: {e}")))?;
        Some(tls)
    };
    // With TLS, jobs (and the stock mlflow client in them) reach the API on a plain loopback
    // address of their own.
    let jobs_listener = match &tls {
        Some(_) => Some(
            tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
                .await
                .map_err(io)?,
        ),
        None => None,
    };
    let daemon = Daemon::start(settings)?;
    // The daemon holds its home now: a socket file left there is a dead daemon's.
    let socket = bind_socket(&socket_path);
    // Jobs reach the daemon on this machine: loopback when it listens on every interface.
    let reachable = match &jobs_listener {
        Some(l) => l.local_addr().map_err(io)?,
        None if addr.ip().is_unspecified() => {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        None => addr,
    };
    daemon.set_tracking_uri(format!("http://{reachable}"));
    let scheme = if tls.is_some() { "https" } else { "http" };
    let addr_file = daemon.home().address_file();
    petri_domain::files::write_atomic(&addr_file, format!("{scheme}://{addr}\n").as_bytes(), 0o644)
        .map_err(|e| {
            petri_daemon::DaemonError::Io(format!("writing {}: {e}", addr_file.display()))
        })?;
    match &tls {
        Some(t) => {
            tracing::info!(%addr, %notebooks_addr, fingerprint = %t.fingerprint, home = %daemon.home().root().display(), "Petri is listening with TLS; clients trust it by this fingerprint (PETRI_FINGERPRINT)")
        }
        None => {
            tracing::info!(%addr, %notebooks_addr, home = %daemon.home().root().display(), "Petri is listening")
        }
    }
    let (close_tx, close_rx) = watch::channel(false);
    let state = AppState(std::sync::Arc::new(Shared {
        daemon: daemon.clone(),
        closing: close_rx.clone(),
        proxy: proxy::client(),
        api_addr: addr,
        notebooks_addr,
        scheme,
    }));
    let closed = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|closing| *closing).await;
    };
    tokio::spawn(serve_bridge(state.clone(), addr.port(), close_rx.clone()));
    let notebooks_served = serve_tcp(
        notebooks,
        tls.as_ref(),
        notebook_router(state.clone()),
        closed(close_rx.clone()),
    );
    let socket_state = state.clone();
    let socket_closed = closed(close_rx.clone());
    let socket_served = async move {
        let Some(socket) = socket else {
            return Ok(());
        };
        let app =
            api_router(socket_state).into_make_service_with_connect_info::<auth::SocketPeer>();
        axum::serve(socket, app)
            .with_graceful_shutdown(socket_closed)
            .await
    };
    let jobs_state = state.clone();
    let jobs_closed = closed(close_rx.clone());
    let jobs_served = async move {
        match jobs_listener {
            Some(l) => serve_tcp(l, None, api_router(jobs_state), jobs_closed).await,
            None => Ok(()),
        }
    };
    let api_served = serve_tcp(listener, tls.as_ref(), api_router(state), async move {
        shutdown.await;
        let _ = close_tx.send(true);
    });
    let (served, notebooks_served, socket_served, jobs_served) =
        tokio::join!(api_served, notebooks_served, socket_served, jobs_served);
    let served = served
        .and(notebooks_served)
        .and(socket_served)
        .and(jobs_served);
    daemon.shutdown().await;
    let _ = std::fs::remove_file(&addr_file);
    let _ = std::fs::remove_file(&socket_path);
    served.map_err(|e| petri_daemon::DaemonError::Io(format!("serving HTTP: {e}")))
}
