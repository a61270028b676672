//! P1b's log followers: C clients that follow job logs through the daemon's API while the jobs
//! run, as the web UI's live log or `petri logs -f` do, from one thread.
//!
//!   follow BASE_URL TOKEN JOBS_FILE [--clients C] [--new-connections]
//!
//! BASE_URL is `http://HOST:PORT` (TCP, as the web UI) or `unix:PATH`, the daemon's own socket
//! (as `petri logs -f` on the daemon's machine speaks to it).
//!
//! JOBS_FILE holds one job id per line. Client k follows the logs of jobs k, k+C, k+2C, ... one
//! after the other: `GET /api/v1/jobs/{id}/log/stream`, read until the stream's `end` event (the
//! job has finished and its log is read whole), then the next. Each client keeps its connection
//! alive from one log to the next, as a browser (the web UI) or any pooling HTTP client does;
//! with `--new-connections` it opens a new one for every log, as one `petri logs -f` per job
//! would. It exits when every client has followed its last job, and prints one JSON object: the
//! streams followed, the bytes read, the errors, the connections opened, and the seconds it ran.
//!
//! One thread with a single-threaded runtime: on a two-core machine the followers should cost
//! the daemon's cores as little as a client can (P1b's earlier followers were 100 Python
//! threads, and their own CPU set the throughput they measured).

use std::time::Instant;

use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

fn fail(message: &str) -> ! {
    eprintln!("follow: {message}");
    std::process::exit(2);
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>;

/// Where the daemon listens.
#[derive(Clone)]
enum Address {
    Tcp(String),
    Unix(String),
}

/// A new connection to the daemon.
async fn connect(addr: &Address) -> Result<Sender, String> {
    match addr {
        Address::Tcp(addr) => {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect {addr}: {e}"))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            handshake(stream).await
        }
        Address::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| format!("connect {path}: {e}"))?;
            handshake(stream).await
        }
    }
}

/// HTTP/1.1 on a new connection; its driver runs as a task of its own.
async fn handshake<S>(stream: S) -> Result<Sender, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Why following a log failed, and whether the request may be sent again on a new connection
/// (a kept-alive connection the daemon closed before it took the request).
struct Failed {
    message: String,
    again: bool,
}

/// Follows one job's log to its end over `sender`: the bytes read.
async fn follow(
    sender: &mut Sender,
    authority: &str,
    token: &str,
    job: &str,
) -> Result<u64, Failed> {
    let again = |e: hyper::Error| Failed {
        message: e.to_string(),
        again: true,
    };
    sender.ready().await.map_err(again)?;
    let req = Request::get(format!("/api/v1/jobs/{job}/log/stream"))
        .header("host", authority)
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<bytes::Bytes>::new())
        .expect("a valid request");
    let resp = sender.send_request(req).await.map_err(again)?;
    follow_body(resp, job).await.map_err(|message| Failed {
        message,
        again: false,
    })
}

/// Reads a log stream's answer to its end.
async fn follow_body(
    resp: hyper::Response<hyper::body::Incoming>,
    job: &str,
) -> Result<u64, String> {
    if resp.status() != 200 {
        return Err(format!("job {job}: status {}", resp.status()));
    }
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    let mut bytes = 0u64;
    let mut ended = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(data) = frame.data_ref() {
            bytes += data.len() as u64;
            // Keep only the tail that may hold a line cut in two.
            seen.extend_from_slice(data);
            if seen.windows(10).any(|w| w == b"event: end") {
                ended = true;
            }
            let keep = seen.len().saturating_sub(16);
            seen.drain(..keep);
        }
    }
    // The body is read to its close, so that the connection can carry the next request.
    if ended {
        Ok(bytes)
    } else {
        Err(format!("job {job}: the stream ended without its end event"))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        fail("usage: follow BASE_URL TOKEN JOBS_FILE [--clients C] [--new-connections]");
    }
    let base = args[0].trim_end_matches('/');
    let (address, authority) = match (base.strip_prefix("http://"), base.strip_prefix("unix:")) {
        (Some(at), _) => (Address::Tcp(at.to_string()), at.to_string()),
        (None, Some(path)) => (Address::Unix(path.to_string()), "localhost".to_string()),
        _ => fail("BASE_URL must be http://HOST:PORT or unix:PATH"),
    };
    let token = args[1].clone();
    let jobs: Vec<String> = std::fs::read_to_string(&args[2])
        .unwrap_or_else(|e| fail(&format!("{}: {e}", args[2])))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let clients: usize = match args.iter().position(|a| a == "--clients") {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| fail("--clients takes a number")),
        None => 100,
    };
    let new_connections = args.iter().any(|a| a == "--new-connections");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&e.to_string()));
    let start = Instant::now();
    let (streams, bytes, errors, connections) = rt.block_on(async {
        let mut tasks = Vec::new();
        for k in 0..clients {
            let mine: Vec<String> = jobs.iter().skip(k).step_by(clients).cloned().collect();
            let (address, authority, token) = (address.clone(), authority.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let (mut n, mut bytes, mut errors, mut connections) =
                    (0u64, 0u64, Vec::new(), 0u64);
                let mut sender: Option<Sender> = None;
                for job in mine {
                    for attempt in 0..2 {
                        if new_connections || sender.as_ref().is_none_or(|s| s.is_closed()) {
                            match connect(&address).await {
                                Ok(s) => {
                                    connections += 1;
                                    sender = Some(s);
                                }
                                Err(e) => {
                                    errors.push(e);
                                    break;
                                }
                            }
                        }
                        let s = sender.as_mut().expect("connected above");
                        match follow(s, &authority, &token, &job).await {
                            Ok(b) => {
                                n += 1;
                                bytes += b;
                                break;
                            }
                            // Once more on a new connection.
                            Err(Failed { again: true, .. }) if attempt == 0 => sender = None,
                            Err(e) => {
                                errors.push(e.message);
                                sender = None;
                                break;
                            }
                        }
                    }
                }
                (n, bytes, errors, connections)
            }));
        }
        let (mut n, mut bytes, mut errors, mut connections) = (0u64, 0u64, Vec::new(), 0u64);
        for t in tasks {
            let (a, b, e, c) = t.await.unwrap_or_else(|e| fail(&e.to_string()));
            n += a;
            bytes += b;
            errors.extend(e);
            connections += c;
        }
        (n, bytes, errors, connections)
    });
    let first: Vec<String> = errors.iter().take(3).map(|e| format!("{e:?}")).collect();
    println!(
        "{{\"streams\": {streams}, \"bytes\": {bytes}, \"errors\": {}, \"first_errors\": [{}], \"connections\": {connections}, \"seconds\": {:.3}}}",
        errors.len(),
        first.join(", "),
        start.elapsed().as_secs_f64()
    );
}
