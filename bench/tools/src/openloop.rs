//! P3's load generator for fixed rates, and its one-request-at-a-time timer.
//!
//!   openloop rate   URL [--method GET|POST] [--body FILE] [--header 'K: V']... --rate R
//!                   --duration S [--warmup S] [--connections C] [--threads N] [--tick-us T]
//!   openloop serial URL [--method GET|POST] [--body FILE] [--header 'K: V']... --requests N
//!                   [--warmup-requests N] [--fresh]
//!
//! `rate` is open-loop: request i is due at `start + i / R`, whatever the answers do. A timerfd
//! (microseconds, where Tokio's timers have milliseconds) wakes the runtime's thread at each due
//! instant, and the request goes to whichever of the C kept-alive connections is free; when none
//! is, it waits in line. Every latency is taken from the request's due instant to the end of its
//! answer, so a server that falls behind is charged for the wait it causes (no coordinated
//! omission, as in wrk2). With `--threads N` the schedule is dealt out to N shards (each its
//! own thread, single-threaded runtime, C/N connections and timer), as wrk's threads. With
//! `--tick-us T` a shard's timer wakes at most once per T µs and sends every request due by then
//! (wrk2's timers have 1 ms): fewer wake-ups of the generator's threads, the CPU it leaves to the
//! server on a small machine; a request sent up to T late still counts from its due instant, so
//! the delay is charged to the server, never hidden.
//! Requests due in the warm-up are sent but not counted. It prints one JSON object: what was
//! sent and answered, the latency percentiles, and apart from them the service time (from the
//! request's write), the wait in line (due to written) and the timer's lateness, which
//! show whether the generator itself kept the schedule.
//!
//! `serial` sends N requests one after another on one kept-alive connection (no load) and prints
//! the percentiles of their latencies; with `--fresh`, each on a new connection (connect timed).
//!
//! Every request is the same: a POST of the body with `Content-Type: application/json` (or a GET
//! without a body, for the health routes); any status but 200, a failed connection or an answer
//! later than 10 s is counted as an error. HTTP/1.1 with keep-alive, TCP_NODELAY.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

struct Target {
    method: String,
    addr: String,
    authority: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

struct Sample {
    scheduled: Instant,
    sent: Instant,
    done: Instant,
    ok: bool,
}

type Conn = SendRequest<Full<Bytes>>;

/// Longest a single request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn fail(message: &str) -> ! {
    eprintln!("openloop: {message}");
    std::process::exit(2);
}

async fn connect(t: &Target) -> Result<Conn, String> {
    let stream = TcpStream::connect(&t.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", t.addr))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request on `c`; Ok(true) for a 200 with its body read whole.
async fn call(c: &mut Conn, t: &Target) -> Result<bool, String> {
    c.ready().await.map_err(|e| e.to_string())?;
    let mut req = Request::builder()
        .method(t.method.as_str())
        .uri(&t.path)
        .header("host", &t.authority);
    if !t.body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    for (k, v) in &t.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Full::new(t.body.clone()))
        .map_err(|e| e.to_string())?;
    let resp = c.send_request(req).await.map_err(|e| e.to_string())?;
    let ok = resp.status().as_u16() == 200;
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(ok)
}

/// A call with a time limit; on any failure the connection is opened again.
async fn call_or_reconnect(c: &mut Conn, t: &Target) -> bool {
    match tokio::time::timeout(REQUEST_TIMEOUT, call(c, t)).await {
        Ok(Ok(ok)) => ok,
        _ => {
            if let Ok(fresh) = connect(t).await {
                *c = fresh;
            }
            false
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

/// `{"p50":…,"p90":…,"p99":…,"p99_9":…,"max":…,"min":…,"mean":…}` in microseconds.
fn summary(mut us: Vec<u64>) -> String {
    us.sort_unstable();
    let mean = if us.is_empty() {
        0.0
    } else {
        us.iter().sum::<u64>() as f64 / us.len() as f64
    };
    format!(
        r#"{{"p50":{},"p90":{},"p99":{},"p99_9":{},"max":{},"min":{},"mean":{:.1}}}"#,
        percentile(&us, 50.0),
        percentile(&us, 90.0),
        percentile(&us, 99.0),
        percentile(&us, 99.9),
        us.last().copied().unwrap_or(0),
        us.first().copied().unwrap_or(0),
        mean
    )
}

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// What one shard measured: its samples, its schedule's lateness, requests never sent.
struct Shard {
    samples: Vec<Sample>,
    late: Vec<u64>,
    unsent: u64,
}

/// A Linux timerfd on CLOCK_MONOTONIC (the clock of `Instant`), armed for absolute instants:
/// it wakes the runtime's own thread within microseconds, where Tokio's timers have a
/// resolution of one millisecond, and without a second thread to wake it.
struct Timer {
    fd: libc::c_int,
    /// The same instant on both clocks, to turn an `Instant` into a `timespec`.
    base: Instant,
    base_ns: i128,
}

impl std::os::fd::AsRawFd for Timer {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd
    }
}

impl Timer {
    fn new() -> Timer {
        let fd = unsafe {
            libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
        };
        if fd < 0 {
            fail("timerfd_create failed");
        }
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let base = Instant::now();
        unsafe {
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        }
        Timer {
            fd,
            base,
            base_ns: ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128,
        }
    }

    /// Fires at `at` (at once if it has passed).
    fn arm(&self, at: Instant) {
        let ns = self.base_ns
            + if at >= self.base {
                (at - self.base).as_nanos() as i128
            } else {
                -((self.base - at).as_nanos() as i128)
            };
        let ns = ns.max(1);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            },
        };
        unsafe {
            libc::timerfd_settime(self.fd, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut());
        }
    }

    /// Clears the expiry count after a wake.
    fn drain(&self) {
        let mut buf = [0u8; 8];
        unsafe {
            libc::read(self.fd, buf.as_mut_ptr().cast(), 8);
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        unsafe {
            libc::close(self.fd);
        }
    }
}

/// One shard: `conns` connections and the schedule `first`, `first + every`, ... until
/// `until`, on one thread (a single-threaded runtime).
fn shard(
    t: Arc<Target>,
    conns: usize,
    first: Instant,
    every: Duration,
    until: Instant,
    give_up: Instant,
    tick: Duration,
) -> Shard {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("no runtime: {e}")));
    rt.block_on(async move {
        let mut opened = Vec::with_capacity(conns);
        for _ in 0..conns {
            match connect(&t).await {
                Ok(c) => opened.push(c),
                Err(e) => fail(&e),
            }
        }
        // Each connection's task sends what it is handed and says when it is idle again.
        let (idle_tx, mut idle_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let mut to_conn = Vec::with_capacity(conns);
        let mut tasks = Vec::with_capacity(conns);
        for (i, mut c) in opened.into_iter().enumerate() {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
            to_conn.push(tx);
            let t = t.clone();
            let idle_tx = idle_tx.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                while let Some(scheduled) = rx.recv().await {
                    let sent = Instant::now();
                    let ok = call_or_reconnect(&mut c, &t).await;
                    out.push(Sample {
                        scheduled,
                        sent,
                        done: Instant::now(),
                        ok,
                    });
                    if idle_tx.send(i).is_err() {
                        break;
                    }
                }
                out
            }));
        }
        drop(idle_tx);
        // The scheduler: when the timer fires, every request now due joins the line; each in
        // line goes to an idle connection as soon as there is one.
        // SAFETY: the Timer owns its descriptor and closes it only when dropped, after the
        // AsyncFd that holds it.
        let timer = match unsafe { tokio::io::unix::AsyncFd::register(Timer::new()) } {
            Ok(t) => t,
            Err(e) => fail(&format!("timerfd: {e}")),
        };
        let mut at = first;
        timer.get_ref().arm(at);
        let mut late = Vec::new();
        // Idle connections take turns (first idle, first used), so that none sits unused long
        // enough for the server to close it (uvicorn closes one idle for 5 s).
        let mut idle: std::collections::VecDeque<usize> = (0..conns).collect();
        let mut line = std::collections::VecDeque::new();
        let mut dispatching = at < until;
        loop {
            if line.is_empty() && !dispatching {
                break;
            }
            tokio::select! {
                biased;
                Some(i) = idle_rx.recv() => idle.push_back(i),
                ready = timer.readable(), if dispatching => {
                    if let Ok(mut guard) = ready {
                        guard.get_inner().drain();
                        guard.clear_ready();
                    }
                    let now = Instant::now();
                    while at < until && at <= now {
                        late.push(micros(now - at));
                        line.push_back(at);
                        at += every;
                    }
                    if at < until {
                        timer.get_ref().arm(at.max(now + tick));
                    } else {
                        dispatching = false;
                    }
                }
                _ = tokio::time::sleep_until(give_up.into()), if !line.is_empty() && idle.is_empty() => break,
            }
            while let Ok(i) = idle_rx.try_recv() {
                idle.push_back(i);
            }
            while !line.is_empty() && !idle.is_empty() && Instant::now() <= give_up {
                let due = line.pop_front().unwrap_or(first);
                let i = idle.pop_front().unwrap_or(0);
                let _ = to_conn[i].send(due);
            }
            if Instant::now() > give_up {
                break;
            }
        }
        // Requests still due after give_up were never scheduled at all: not sent either.
        let mut unsent = line.len() as u64;
        while at < until {
            unsent += 1;
            at += every;
        }
        drop(to_conn);
        let mut samples = Vec::new();
        for task in tasks {
            if let Ok(mut s) = task.await {
                samples.append(&mut s);
            }
        }
        Shard {
            samples,
            late,
            unsent,
        }
    })
}

fn rate(
    t: Arc<Target>,
    conns: usize,
    threads: usize,
    rate: f64,
    (warmup, duration, tick): (f64, f64, Duration),
) -> String {
    let threads = threads.clamp(1, conns);
    let start = Instant::now() + Duration::from_millis(100);
    let measured_from = start + Duration::from_secs_f64(warmup);
    let end = measured_from + Duration::from_secs_f64(duration);
    // Requests still waiting in line this long after the last one was due are not sent.
    let give_up = end + Duration::from_secs(10);
    // Shard k sends requests k, k + threads, k + 2 threads, ... of the one schedule.
    let period = 1.0 / rate;
    let every = Duration::from_secs_f64(period * threads as f64);
    let mut handles = Vec::new();
    for k in 0..threads {
        let t = t.clone();
        let n = conns / threads + usize::from(k < conns % threads);
        let first = start + Duration::from_secs_f64(period * k as f64);
        handles.push(std::thread::spawn(move || shard(t, n, first, every, end, give_up, tick)));
    }
    let mut samples = Vec::new();
    let mut late = Vec::new();
    let mut unsent = 0;
    for h in handles {
        let Ok(mut s) = h.join() else {
            fail("a shard panicked")
        };
        samples.append(&mut s.samples);
        late.append(&mut s.late);
        unsent += s.unsent;
    }
    let total = samples.len() as u64 + unsent;
    let counted: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.scheduled >= measured_from)
        .collect();
    let ok = counted.iter().filter(|s| s.ok).count();
    let errors = counted.len() - ok;
    let answered_in_window = counted.iter().filter(|s| s.ok && s.done <= end).count();
    let latency: Vec<u64> = counted
        .iter()
        .filter(|s| s.ok)
        .map(|s| micros(s.done - s.scheduled))
        .collect();
    let service: Vec<u64> = counted
        .iter()
        .filter(|s| s.ok)
        .map(|s| micros(s.done - s.sent))
        .collect();
    let wait: Vec<u64> = counted
        .iter()
        .map(|s| micros(s.sent.saturating_duration_since(s.scheduled)))
        .collect();
    format!(
        concat!(
            r#"{{"mode":"rate","target_rate":{},"connections":{},"threads":{},"warmup_s":{},"#,
            r#""duration_s":{},"scheduled":{},"counted":{},"ok":{},"errors":{},"unsent":{},"#,
            r#""answered_in_window_per_s":{:.1},"latency_us":{},"service_us":{},"#,
            r#""wait_us":{},"schedule_late_us":{},"tick_us":{}}}"#
        ),
        rate,
        conns,
        threads,
        warmup,
        duration,
        total,
        counted.len(),
        ok,
        errors,
        unsent,
        answered_in_window as f64 / duration,
        summary(latency),
        summary(service),
        summary(wait),
        summary(late),
        tick.as_micros()
    )
}

async fn serial(t: Arc<Target>, n: usize, warmup: usize, fresh: bool) -> String {
    let mut c = match connect(&t).await {
        Ok(c) => c,
        Err(e) => fail(&e),
    };
    let mut us = Vec::with_capacity(n);
    let mut errors = 0usize;
    for i in 0..warmup + n {
        let began = Instant::now();
        if fresh {
            // A new connection for each request, its connect timed with it.
            c = match connect(&t).await {
                Ok(c) => c,
                Err(e) => fail(&e),
            };
        }
        let ok = call_or_reconnect(&mut c, &t).await;
        let took = micros(began.elapsed());
        if i >= warmup {
            if ok {
                us.push(took);
            } else {
                errors += 1;
            }
        }
    }
    format!(
        r#"{{"mode":"serial","fresh_connections":{},"requests":{},"errors":{},"latency_us":{}}}"#,
        fresh,
        n,
        errors,
        summary(us)
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: openloop rate|serial URL [--method M] [--body FILE] [--header 'K: V']... \
                 [--rate R --duration S --warmup S --connections C --threads N --tick-us T] \
                 [--requests N --warmup-requests N --fresh]";
    let mode = args.next().unwrap_or_else(|| fail(usage));
    let url = args.next().unwrap_or_else(|| fail(usage));
    let mut body = None;
    let mut method = "POST".to_string();
    let mut headers = Vec::new();
    let (mut rate_, mut duration, mut warmup, mut conns, mut threads) = (0.0, 10.0, 2.0, 64, 1);
    let (mut requests, mut warmup_requests, mut fresh) = (1000usize, 200usize, false);
    let mut tick_us = 0.0;
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| fail(&format!("{a} takes a value")));
        let number = |v: String| -> f64 { v.parse().unwrap_or_else(|_| fail(usage)) };
        match a.as_str() {
            "--body" => {
                let path = value();
                body = Some(std::fs::read(&path).unwrap_or_else(|e| fail(&format!("{path}: {e}"))));
            }
            "--method" => method = value(),
            "--fresh" => fresh = true,
            "--header" => {
                let h = value();
                let (k, v) = h.split_once(':').unwrap_or_else(|| fail("a header is 'Name: value'"));
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            "--rate" => rate_ = number(value()),
            "--duration" => duration = number(value()),
            "--warmup" => warmup = number(value()),
            "--connections" => conns = number(value()) as usize,
            "--threads" => threads = number(value()) as usize,
            "--tick-us" => tick_us = number(value()),
            "--requests" => requests = number(value()) as usize,
            "--warmup-requests" => warmup_requests = number(value()) as usize,
            _ => fail(usage),
        }
    }
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| fail("the URL must start with http://"));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if method == "POST" && body.is_none() {
        fail("a POST needs --body FILE");
    }
    let target = Arc::new(Target {
        method,
        addr: authority.to_string(),
        authority: authority.to_string(),
        path: path.to_string(),
        headers,
        body: Bytes::from(body.unwrap_or_default()),
    });
    let out = match mode.as_str() {
        "rate" => {
            if !(rate_ > 0.0) || conns == 0 {
                fail("rate needs --rate R above 0 and --connections C above 0");
            }
            let tick = Duration::from_micros(tick_us as u64);
            rate(target, conns, threads, rate_, (warmup, duration, tick))
        }
        "serial" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| fail(&format!("no runtime: {e}")))
            .block_on(serial(target, requests, warmup_requests, fresh)),
        _ => fail(usage),
    };
    println!("{out}");
}
