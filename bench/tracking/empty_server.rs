//! P2's third server: answers every MLflow call at once with the least JSON the client needs, so
//! that timing the client against it measures the client alone (its serialisation and HTTP).
//!
//! Standard library only, one file, built by bench/tracking/run.sh with `rustc -O` (not a crate
//! of the workspace). HTTP/1.1 with keep-alive, a thread per connection. It prints its address
//! (`http://127.0.0.1:PORT`) on the first line of stdout and serves until killed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

static RUNS: AtomicU64 = AtomicU64::new(0);

fn main() {
    let listener = match TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("empty server: cannot listen: {e}");
            std::process::exit(1);
        }
    };
    match listener.local_addr() {
        Ok(a) => println!("http://{a}"),
        Err(e) => {
            eprintln!("empty server: no address: {e}");
            std::process::exit(1);
        }
    }
    let _ = std::io::stdout().flush();
    for conn in listener.incoming().flatten() {
        thread::spawn(move || {
            let _ = serve(conn);
        });
    }
}

/// Answers the requests of one connection until the client closes it.
fn serve(conn: TcpStream) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut out = conn.try_clone()?;
    let mut input = BufReader::with_capacity(256 * 1024, conn);
    let mut line = String::new();
    let mut body = Vec::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split(' ').nth(1).unwrap_or("").to_string();
        let mut length = 0usize;
        let mut close = false;
        loop {
            line.clear();
            if input.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        body.resize(length, 0);
        input.read_exact(&mut body)?;
        let answer = answer(&path);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        out.write_all([head.as_bytes(), answer.as_bytes()].concat().as_slice())?;
        if close {
            return Ok(());
        }
    }
}

/// The least JSON each route's answer needs for the client to accept it; `{}` for the rest.
fn answer(path: &str) -> String {
    let route = path.split('?').next().unwrap_or("");
    let route = route.trim_start_matches("/api/2.0/mlflow/");
    match route {
        "runs/create" | "runs/get" => {
            let n = RUNS.fetch_add(1, Ordering::Relaxed) + 1;
            let id = format!("{n:032x}");
            format!(
                r#"{{"run":{{"info":{{"run_id":"{id}","run_uuid":"{id}","experiment_id":"0","run_name":"empty","user_id":"","status":"RUNNING","start_time":0,"artifact_uri":"","lifecycle_stage":"active"}},"data":{{}},"inputs":{{}}}}}}"#
            )
        }
        "experiments/create" => r#"{"experiment_id":"0"}"#.to_string(),
        "experiments/get" | "experiments/get-by-name" => {
            r#"{"experiment":{"experiment_id":"0","name":"Default","artifact_location":"","lifecycle_stage":"active"}}"#
                .to_string()
        }
        _ => "{}".to_string(),
    }
}
