//! P3's HTTP limit: a server that reads each request whole and answers one fixed Open Inference
//! Protocol response at once, with no auth and no model. Timing a load generator against it
//! measures what HTTP/1.1 itself costs on this machine, the generator included.
//!
//! Usage: fixed-answer [--body FILE] [--threads N] [--axum]
//!   --body FILE   the answer's bytes (bench.py gives it Petri's own answer to the same request,
//!                 so both send the same bytes back); a one-row OIP answer when absent.
//!   --threads N   Tokio worker threads (default: one per core, as Petri's daemon has).
//!   --axum        an axum handler on the OIP's infer route (the reference the issue names, and
//!                 the framework Petri's daemon is built on); without it, hyper alone with no
//!                 routing at all (a lower floor).
//!
//! Listens on 127.0.0.1 on a free port, prints `http://127.0.0.1:PORT` on the first line of
//! stdout and serves until killed. HTTP/1.1 with keep-alive, TCP_NODELAY on every connection.

use std::convert::Infallible;
use std::io::Write;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const ONE_ROW: &str = r#"{"model_name":"iris","model_version":"1","outputs":[{"name":"label","shape":[1],"datatype":"BYTES","data":["setosa"]},{"name":"probabilities","shape":[1,3],"datatype":"FP32","data":[0.98,0.015,0.005]}]}"#;

fn main() {
    let mut body = Bytes::from_static(ONE_ROW.as_bytes());
    let mut threads = 0usize;
    let mut axum = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--body" => {
                let path = args.next().unwrap_or_default();
                body = match std::fs::read(&path) {
                    Ok(b) => Bytes::from(b),
                    Err(e) => fail(&format!("cannot read {path}: {e}")),
                };
            }
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| fail("--threads takes a number"));
            }
            "--axum" => axum = true,
            _ => fail(&format!(
                "unknown argument {a}; usage: fixed-answer [--body FILE] [--threads N] [--axum]"
            )),
        }
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if threads > 0 {
        rt.worker_threads(threads);
    }
    let rt = rt.build().unwrap_or_else(|e| fail(&format!("no runtime: {e}")));
    if axum {
        rt.block_on(serve_axum(body));
    } else {
        rt.block_on(serve(body));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("fixed-answer: {message}");
    std::process::exit(2);
}

/// Listens on a free loopback port and prints its address.
async fn listen() -> TcpListener {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| fail(&format!("cannot listen: {e}")));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| fail(&format!("no address: {e}")));
    println!("http://{addr}");
    let _ = std::io::stdout().flush();
    listener
}

/// An axum router: `POST /v2/models/{name}/infer` takes the body whole and answers the fixed
/// bytes; any other request gets the same answer (the bench's GET timings use `/`).
async fn serve_axum(answer: Bytes) {
    use axum::serve::ListenerExt;
    let answer_to = move || {
        let answer = answer.clone();
        move |_body: Bytes| async move { ([(CONTENT_TYPE, "application/json")], answer) }
    };
    let app = axum::Router::new()
        .route("/v2/models/{name}/infer", axum::routing::post(answer_to()))
        .fallback(answer_to());
    let listener = listen().await.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    if let Err(e) = axum::serve(listener, app).await {
        fail(&format!("serving: {e}"));
    }
}

async fn serve(answer: Bytes) {
    let listener = listen().await;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let answer = answer.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let answer = answer.clone();
                async move {
                    // Read the request whole, as any server that answers it must.
                    let _ = req.into_body().collect().await;
                    let resp = Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(answer))
                        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
