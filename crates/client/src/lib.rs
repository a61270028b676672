//! A typed HTTP client for Petri's API, used by the CLI, the desktop shell and the tests.
//!
//! [`Client::discover`] finds the daemon the way users expect: `--server`/`PETRI_SERVER` first
//! (`unix:PATH` names a socket); else `PETRI_SOCKET`; else the Unix socket of the chosen home
//! (`--home`/`PETRI_HOME`/default), where the kernel tells the daemon who calls and no token is
//! needed; else the address that home's daemon wrote at start; else the system service's socket
//! (`/var/lib/petri/petri.sock`, a shared machine's daemon); else `http://127.0.0.1:7878`. The
//! token comes from `PETRI_TOKEN` or the home's `token`.

mod tls;

use std::path::{Path, PathBuf};

use futures_util::{Stream, StreamExt};
use petri_domain::{
    ErrorBody, ErrorCode, Event, Job, JobPage, JobSpec, ListQuery, SecretInfo, SecretKind,
    SecretRequest, Status,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7878";

/// The socket of the system service (`packaging/systemd`): a shared machine's daemon.
pub const SYSTEM_SOCKET: &str = "/var/lib/petri/petri.sock";

/// HTTP methods, for [`Client::call`].
pub use reqwest::Method;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no Petri daemon answers at {url}. Start one with `petri serve` (or `petri` for the \
         desktop app), or point PETRI_SERVER / --server at a running one"
    )]
    NoDaemon { url: String },
    #[error("{0}")]
    Api(ErrorBody),
    #[error("talking to the daemon at {url}: {message}")]
    Http { url: String, message: String },
    #[error("the daemon sent an answer this client does not understand: {0}")]
    Decode(String),
}

impl ClientError {
    /// The API error code, when the daemon refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api(b) => Some(b.code),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// The platform data folder, e.g. `~/.local/share/petri` (the daemon's default home too).
pub fn default_home() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("petri")
}

#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    /// The daemon's Unix socket, when that is how this client reaches it.
    socket: Option<PathBuf>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("socket", &self.socket)
            .finish()
    }
}

#[derive(Serialize)]
struct SubmitBody<'a> {
    jobs: &'a [JobSpec],
}

#[derive(Deserialize)]
struct SubmitAnswer {
    jobs: Vec<Job>,
}

/// One piece of a followed log.
#[derive(Clone, Debug, Deserialize)]
pub struct LogText {
    pub text: String,
}

/// The fingerprint to trust an `https` daemon by: `PETRI_FINGERPRINT`, else the home's
/// `tls/fingerprint` (the daemon's own, on its machine, or one copied from it).
fn fingerprint(home: &Path) -> Option<String> {
    std::env::var("PETRI_FINGERPRINT")
        .ok()
        .or_else(|| {
            std::fs::read_to_string(
                home.join(petri_domain::tls::TLS_DIR)
                    .join(petri_domain::tls::FINGERPRINT_FILE),
            )
            .ok()
        })
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

impl Client {
    pub fn new(base: impl Into<String>, token: Option<String>) -> Client {
        Client::pinned(base, token, None)
    }

    /// A client of a daemon over HTTPS whose certificate is trusted by its fingerprint (as
    /// `petri serve` logs it, and writes to `tls/fingerprint` in its home) rather than by an
    /// authority: how the generated, self-signed certificate is trusted. Without one, an
    /// `https` address is checked against the system's authorities.
    pub fn pinned(
        base: impl Into<String>,
        token: Option<String>,
        fingerprint: Option<String>,
    ) -> Client {
        let http = match fingerprint {
            Some(f) => reqwest::Client::builder()
                .use_preconfigured_tls(tls::pinned(&f))
                .build()
                .unwrap_or_default(),
            None => reqwest::Client::new(),
        };
        Client {
            base: base.into().trim_end_matches('/').to_string(),
            token,
            http,
            socket: None,
        }
    }

    /// A client of the daemon on the Unix socket `path`: the daemon knows the caller by their
    /// uid, so `token` may be `None`.
    pub fn on_socket(path: impl Into<PathBuf>, token: Option<String>) -> Client {
        let path = path.into();
        let http = reqwest::Client::builder()
            .unix_socket(path.clone())
            .build()
            .unwrap_or_default();
        Client {
            // The host is what the daemon sees in `Host` (links it builds name it).
            base: "http://localhost".into(),
            token,
            http,
            socket: Some(path),
        }
    }

    /// Finds the daemon and the token as described in the crate docs.
    pub fn discover(server: Option<&str>, home: Option<&Path>) -> Client {
        let home = home
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("PETRI_HOME").map(PathBuf::from))
            .unwrap_or_else(default_home);
        let given = std::env::var("PETRI_TOKEN").ok().filter(|s| !s.is_empty());
        let token = given.clone().or_else(|| {
            std::fs::read_to_string(home.join("token"))
                .ok()
                .map(|s| s.trim().to_string())
        });
        let named = server
            .map(str::to_string)
            .or_else(|| std::env::var("PETRI_SERVER").ok().filter(|s| !s.is_empty()));
        if let Some(server) = named {
            return match server.strip_prefix("unix:") {
                Some(path) => Client::on_socket(path, given),
                None => Client::pinned(server, token, fingerprint(&home)),
            };
        }
        if let Some(path) = std::env::var_os("PETRI_SOCKET").filter(|s| !s.is_empty()) {
            return Client::on_socket(path, given);
        }
        // Over a socket the kernel says who calls: only a token asked for is sent (a home's
        // token file may be an old daemon's).
        let own = home.join("petri.sock");
        if is_socket(&own) {
            return Client::on_socket(own, given);
        }
        if let Some(addr) = std::fs::read_to_string(home.join("daemon.addr"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
        {
            return Client::pinned(addr, token, fingerprint(&home));
        }
        if is_socket(Path::new(SYSTEM_SOCKET)) {
            return Client::on_socket(SYSTEM_SOCKET, given);
        }
        Client::new(DEFAULT_SERVER, token)
    }

    /// The Unix socket this client speaks over, if any.
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        // A certificate refused is not a daemon missing: say what was refused.
        let mut chain = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            chain = format!("{chain}: {s}");
            source = s.source();
        }
        if chain.contains("fingerprint") || chain.contains("certificate") {
            return ClientError::Http {
                url: self.base.clone(),
                message: chain,
            };
        }
        if e.is_connect() {
            ClientError::NoDaemon {
                url: match &self.socket {
                    Some(p) => format!("the socket {}", p.display()),
                    None => self.base.clone(),
                },
            }
        } else {
            ClientError::Http {
                url: self.base.clone(),
                message: e.to_string(),
            }
        }
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = rb.send().await.map_err(|e| self.transport(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => ClientError::Api(body),
            Err(_) => ClientError::Http {
                url: self.base.clone(),
                message: format!("{status}: {text}"),
            },
        })
    }

    async fn json<T: DeserializeOwned>(&self, rb: reqwest::RequestBuilder) -> Result<T> {
        let resp = self.send(rb).await?;
        resp.json::<T>()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Any route, JSON in and out (for areas whose types live in their capability crates).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let mut rb = self.request(method, path);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        // A `204 No Content` (a delete) is JSON `null`.
        let text = self
            .send(rb)
            .await?
            .text()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// PUTs a local file to `path`, streamed from disk (never held whole); JSON back.
    pub async fn put_file(&self, path: &str, file: &Path) -> Result<serde_json::Value> {
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|e| ClientError::Http {
                url: self.base.clone(),
                message: format!("reading {}: {e}", file.display()),
            })?;
        let len = f.metadata().await.map(|m| m.len()).ok();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(f));
        let mut rb = self
            .request(reqwest::Method::PUT, path)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(len) = len {
            rb = rb.header(reqwest::header::CONTENT_LENGTH, len);
        }
        self.json(rb).await
    }

    pub async fn health(&self) -> Result<()> {
        self.send(self.http.get(format!("{}/healthz", self.base)))
            .await
            .map(|_| ())
    }

    pub async fn submit(&self, specs: &[JobSpec]) -> Result<Vec<Job>> {
        let rb = self
            .request(reqwest::Method::POST, "/api/v1/jobs")
            .json(&SubmitBody { jobs: specs });
        Ok(self.json::<SubmitAnswer>(rb).await?.jobs)
    }

    /// A page of jobs; its `next` asks for the one after.
    pub async fn list(&self, q: &ListQuery) -> Result<JobPage> {
        let rb = self.request(reqwest::Method::GET, "/api/v1/jobs").query(q);
        self.json(rb).await
    }

    pub async fn job(&self, key: &str) -> Result<Job> {
        self.json(self.request(reqwest::Method::GET, &format!("/api/v1/jobs/{}", enc(key))))
            .await
    }

    async fn act(&self, key: &str, verb: &str) -> Result<Job> {
        self.json(self.request(
            reqwest::Method::POST,
            &format!("/api/v1/jobs/{}/{verb}", enc(key)),
        ))
        .await
    }
    pub async fn cancel(&self, key: &str) -> Result<Job> {
        self.act(key, "cancel").await
    }
    pub async fn hold(&self, key: &str) -> Result<Job> {
        self.act(key, "hold").await
    }
    pub async fn release(&self, key: &str) -> Result<Job> {
        self.act(key, "release").await
    }

    pub async fn notebook_start(
        &self,
        req: &petri_domain::NotebookRequest,
    ) -> Result<petri_domain::Notebook> {
        self.json(
            self.request(reqwest::Method::POST, "/api/v1/notebooks")
                .json(req),
        )
        .await
    }
    pub async fn notebooks(&self) -> Result<Vec<petri_domain::Notebook>> {
        self.json(self.request(reqwest::Method::GET, "/api/v1/notebooks"))
            .await
    }
    pub async fn notebook(&self, name: &str) -> Result<petri_domain::Notebook> {
        self.json(self.request(
            reqwest::Method::GET,
            &format!("/api/v1/notebooks/{}", enc(name)),
        ))
        .await
    }
    pub async fn notebook_stop(&self, name: &str) -> Result<petri_domain::Notebook> {
        self.json(self.request(
            reqwest::Method::POST,
            &format!("/api/v1/notebooks/{}/stop", enc(name)),
        ))
        .await
    }
    pub async fn notebook_remove(&self, name: &str) -> Result<petri_domain::Notebook> {
        self.json(self.request(
            reqwest::Method::DELETE,
            &format!("/api/v1/notebooks/{}", enc(name)),
        ))
        .await
    }
    /// A one-time sign-in link (absolute).
    pub async fn notebook_link(&self, name: &str) -> Result<String> {
        let link: petri_domain::NotebookLink = self
            .json(self.request(
                reqwest::Method::POST,
                &format!("/api/v1/notebooks/{}/open", enc(name)),
            ))
            .await?;
        Ok(link.url)
    }
    pub async fn images(&self) -> Result<Vec<petri_domain::Image>> {
        self.json(self.request(reqwest::Method::GET, "/api/v1/images"))
            .await
    }
    /// Queues a build of Petri's default image; the job's log shows the progress.
    pub async fn image_build(&self, force: bool) -> Result<Job> {
        self.json(
            self.request(reqwest::Method::POST, "/api/v1/images/build")
                .query(&[("force", force)]),
        )
        .await
    }

    /// Creates an API token; the answer holds its secret, shown this once.
    pub async fn token_create(
        &self,
        req: &petri_domain::token::TokenRequest,
    ) -> Result<petri_domain::token::NewToken> {
        self.json(
            self.request(reqwest::Method::POST, "/api/v1/tokens")
                .json(req),
        )
        .await
    }
    pub async fn tokens(&self) -> Result<Vec<petri_domain::token::TokenInfo>> {
        self.json(self.request(reqwest::Method::GET, "/api/v1/tokens"))
            .await
    }
    /// Revokes a token by id or name.
    pub async fn token_revoke(&self, key: &str) -> Result<petri_domain::token::TokenInfo> {
        self.json(self.request(
            reqwest::Method::DELETE,
            &format!("/api/v1/tokens/{}", enc(key)),
        ))
        .await
    }

    /// Who the daemon takes this client for.
    pub async fn me(&self) -> Result<petri_domain::Me> {
        self.json(self.request(reqwest::Method::GET, "/api/v1/me"))
            .await
    }
    /// Every user, with their role and own quota.
    pub async fn users(&self) -> Result<Vec<petri_domain::UserInfo>> {
        self.json(self.request(reqwest::Method::GET, "/api/v1/users"))
            .await
    }
    /// Adds a user, or sets their role (admins).
    pub async fn user_put(
        &self,
        name: &str,
        role: petri_domain::Role,
    ) -> Result<petri_domain::UserInfo> {
        self.json(
            self.request(
                reqwest::Method::PUT,
                &format!("/api/v1/users/{}", enc(name)),
            )
            .json(&petri_domain::UserRequest { role }),
        )
        .await
    }
    /// Sets the quota of a user or `group:NAME` (admins); an empty one removes it.
    pub async fn quota_set(
        &self,
        subject: &str,
        quota: &petri_domain::Quota,
    ) -> Result<petri_domain::Quota> {
        self.json(
            self.request(
                reqwest::Method::PUT,
                &format!("/api/v1/quotas/{}", enc(subject)),
            )
            .json(quota),
        )
        .await
    }
    /// What each user runs, waits for and has used lately.
    pub async fn shares(&self) -> Result<Vec<petri_domain::UserShare>> {
        self.json(self.request(reqwest::Method::GET, "/api/v1/shares"))
            .await
    }
    /// The audit log, newest first (admins).
    pub async fn audit(
        &self,
        q: &petri_domain::AuditQuery,
    ) -> Result<Vec<petri_domain::AuditEntry>> {
        self.json(self.request(reqwest::Method::GET, "/api/v1/audit").query(q))
            .await
    }

    /// Collects the artifact store's garbage (admin); with `dry_run`, only says what would go.
    pub async fn gc(&self, dry_run: bool) -> Result<petri_domain::artifact::GcReport> {
        self.json(
            self.request(reqwest::Method::POST, "/api/v1/gc")
                .json(&petri_domain::artifact::GcRequest { dry_run }),
        )
        .await
    }
    /// What the home holds by kind, the disk it is on, the retention limits.
    pub async fn usage(&self) -> Result<petri_domain::HomeUsage> {
        self.json(self.request(reqwest::Method::GET, "/api/v1/usage"))
            .await
    }
    /// How much the artifact store holds.
    pub async fn artifact_usage(&self) -> Result<petri_domain::artifact::ArtifactUsage> {
        self.json(self.request(reqwest::Method::GET, "/api/v1/artifacts/usage"))
            .await
    }
    /// A file artifact's bytes (checked by the daemon before it sends them).
    pub async fn artifact_bytes(&self, digest: &str) -> Result<Vec<u8>> {
        let resp = self
            .send(self.request(
                reqwest::Method::GET,
                &format!("/api/v1/artifacts/{}", enc(digest)),
            ))
            .await?;
        resp.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| self.transport(e))
    }

    /// The caller's secrets (every one for an admin): names and metadata, never a value.
    pub async fn secrets(&self) -> Result<Vec<SecretInfo>> {
        self.json(self.request(reqwest::Method::GET, "/api/v1/secrets"))
            .await
    }
    /// Sets (or replaces) a value secret: the text a job gets in an environment variable.
    pub async fn secret_set_value(&self, name: &str, value: &str) -> Result<SecretInfo> {
        self.secret_put(
            name,
            &SecretRequest {
                value: value.to_string(),
                kind: SecretKind::Value,
            },
        )
        .await
    }
    /// Sets (or replaces) a file secret: bytes a job gets as a private file.
    pub async fn secret_set_file(&self, name: &str, bytes: &[u8]) -> Result<SecretInfo> {
        use base64::Engine as _;
        self.secret_put(
            name,
            &SecretRequest {
                value: base64::engine::general_purpose::STANDARD.encode(bytes),
                kind: SecretKind::File,
            },
        )
        .await
    }
    async fn secret_put(&self, name: &str, req: &SecretRequest) -> Result<SecretInfo> {
        self.json(
            self.request(
                reqwest::Method::PUT,
                &format!("/api/v1/secrets/{}", enc(name)),
            )
            .json(req),
        )
        .await
    }
    /// Removes a secret.
    pub async fn secret_remove(&self, name: &str) -> Result<SecretInfo> {
        self.json(self.request(
            reqwest::Method::DELETE,
            &format!("/api/v1/secrets/{}", enc(name)),
        ))
        .await
    }

    /// Every cluster, without credentials.
    pub async fn clusters(&self) -> Result<Vec<petri_domain::ClusterInfo>> {
        self.json(self.request(reqwest::Method::GET, "/api/v1/clusters"))
            .await
    }
    /// Adds a cluster, or the caller's own credential for one that exists.
    pub async fn cluster_add(
        &self,
        req: &petri_domain::ClusterRequest,
    ) -> Result<petri_domain::ClusterInfo> {
        self.json(
            self.request(reqwest::Method::POST, "/api/v1/clusters")
                .json(req),
        )
        .await
    }
    pub async fn cluster_remove(&self, name: &str) -> Result<petri_domain::ClusterInfo> {
        self.json(self.request(
            reqwest::Method::DELETE,
            &format!("/api/v1/clusters/{}", enc(name)),
        ))
        .await
    }
    pub async fn cluster_check(&self, name: &str) -> Result<petri_domain::ClusterCheck> {
        self.json(self.request(
            reqwest::Method::GET,
            &format!("/api/v1/clusters/{}/check", enc(name)),
        ))
        .await
    }

    pub async fn gpus(&self) -> Result<petri_domain::GpuReport> {
        self.json(self.request(reqwest::Method::GET, "/api/v1/gpus"))
            .await
    }

    pub async fn status(&self) -> Result<Status> {
        self.json(self.request(reqwest::Method::GET, "/api/v1/status"))
            .await
    }

    /// The log from `offset`: the bytes, where to read next, and whether the job is done.
    pub async fn log(&self, key: &str, offset: u64) -> Result<(Vec<u8>, u64, bool)> {
        let rb = self
            .request(
                reqwest::Method::GET,
                &format!("/api/v1/jobs/{}/log", enc(key)),
            )
            .query(&[("offset", offset)]);
        let resp = self.send(rb).await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let next = header("x-petri-next-offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(offset);
        let done = header("x-petri-done").as_deref() == Some("true");
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        Ok((bytes.to_vec(), next, done))
    }

    async fn sse(
        &self,
        path: &str,
    ) -> Result<impl Stream<Item = Result<eventsource_stream::Event>> + use<>> {
        let resp = self
            .send(
                self.request(reqwest::Method::GET, path)
                    .header("accept", "text/event-stream"),
            )
            .await?;
        let base = self.base.clone();
        Ok(
            eventsource_stream::Eventsource::eventsource(resp.bytes_stream()).map(move |e| {
                e.map_err(|e| ClientError::Http {
                    url: base.clone(),
                    message: e.to_string(),
                })
            }),
        )
    }

    /// Follows a job's log until the job has finished.
    pub async fn follow_log(
        &self,
        key: &str,
    ) -> Result<impl Stream<Item = Result<LogText>> + use<>> {
        let events = self
            .sse(&format!("/api/v1/jobs/{}/log/stream", enc(key)))
            .await?;
        Ok(events
            .take_while(|e| {
                let go = !matches!(e, Ok(ev) if ev.event == "end");
                async move { go }
            })
            .filter_map(|e| async move {
                match e {
                    Ok(ev) if ev.event == "log" => Some(
                        serde_json::from_str::<LogText>(&ev.data)
                            .map_err(|e| ClientError::Decode(e.to_string())),
                    ),
                    Ok(ev) if ev.event == "error" => {
                        Some(Err(match serde_json::from_str::<ErrorBody>(&ev.data) {
                            Ok(b) => ClientError::Api(b),
                            Err(e) => ClientError::Decode(e.to_string()),
                        }))
                    }
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                }
            }))
    }

    /// The daemon's live events.
    pub async fn events(&self) -> Result<impl Stream<Item = Result<Event>> + use<>> {
        let events = self.sse("/api/v1/events").await?;
        Ok(events.filter_map(|e| async move {
            match e {
                Ok(ev) if ev.event == "lagged" => None,
                Ok(ev) => Some(
                    serde_json::from_str::<Event>(&ev.data)
                        .map_err(|e| ClientError::Decode(e.to_string())),
                ),
                Err(e) => Some(Err(e)),
            }
        }))
    }
}

/// Percent-encodes a path segment (job keys are numbers and ids, but users type anything).
pub fn enc(key: &str) -> String {
    key.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
