#!/usr/bin/env python3
"""P2: the stock mlflow client logging metrics to Petri, to `mlflow server` and to a server that
answers at once, in one run.

Usage: bench.py --petri BIN --mlflow BIN --empty-server BIN [--rounds 3] [--points 100000]
                [--calls 2000] [--raw-rounds 1] [--no-scale] [--scale-points 1000000]
                [--work DIR]

Run it with the Python that has `mlflow` (bench/tracking/run.sh does).

- The client: `MlflowClient(tracking_uri=...)`, one per server, in this process. Timed:
  `log_batch(run, metrics=[...])` of 100,000 points (10 keys x 10,000 steps, the Metric objects
  built before the clock starts; the client cuts them into requests of 1,000), and 2,000 single
  `log_metric(run, "acc", value, step=i)` calls, in a fresh run per server per round.
- The servers: Petri (`petri serve`, a fresh home, its admin token in MLFLOW_TRACKING_TOKEN);
  `mlflow server` with its SQLite backend (`--backend-store-uri sqlite:///...`, its defaults
  otherwise); and the empty server (bench/tracking/empty_server.rs), which answers every call at
  once with the least JSON the client accepts: the client's own limit.
- Rounds rotate the order of the three servers (the shared machine's speed drifts); medians are
  compared.
- Raw HTTP, apart from the client: the same requests, serialised beforehand and sent with
  `http.client` on one kept-alive connection, to each server. What the server itself costs per
  request (and that the empty server costs next to nothing).
- Scale, Petri only: a million points in one run (`log_batch`, 10 calls of 100,000), the history
  of one of its keys (100,000 points) by a raw GET and through the client, and `search_runs` with
  a filter over an experiment of 1,000 runs by a raw POST and through the client.
"""
import argparse, contextlib, http.client, io, json, os, random, shutil, signal, socket, subprocess, sys, time
import urllib.parse

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402

KEYS = 10
T0 = 1_760_000_000_000  # a fixed timestamp base (ms), the same for every server


def med(xs):
    return sorted(xs)[len(xs) // 2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, proc, what, log, tries=1200):
    for _ in range(tries):
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}; see {log}")
        try:
            u = urllib.parse.urlsplit(url)
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=2)
            c.request("GET", u.path)
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"{what} did not answer {url}; see {log}")


def start_petri(binary, home):
    os.makedirs(home)
    with open(os.path.join(home, "petri.toml"), "w") as f:
        f.write('log = "warn"\n')
    env = dict(os.environ, PETRI_HOME=home)
    env.pop("PETRI_SERVER", None)
    log = os.path.join(home, "daemon.log")
    proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    addr = os.path.join(home, "daemon.addr")
    for _ in range(600):
        if os.path.exists(addr) and open(addr).read().strip():
            break
        if proc.poll() is not None:
            sys.exit(f"petri serve exited with {proc.returncode}; see {log}")
        time.sleep(0.02)
    base = open(addr).read().strip().rstrip("/")
    token = open(os.path.join(home, "token")).read().strip()
    wait_http(base + "/healthz", proc, "petri serve", log)
    return proc, base, token


def start_mlflow(binary, work):
    os.makedirs(work)
    port = free_port()
    log = os.path.join(work, "server.log")
    # Its own process group: the server starts worker processes, stopped with it.
    proc = subprocess.Popen(
        [binary, "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", "sqlite:///" + os.path.join(work, "mlflow.db"),
         "--default-artifact-root", os.path.join(work, "artifacts")],
        cwd=work, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/health", proc, "mlflow server", log)
    return proc, base


def start_empty(binary, work):
    os.makedirs(work)
    proc = subprocess.Popen([binary], stdout=subprocess.PIPE, text=True)
    base = proc.stdout.readline().strip()
    if not base.startswith("http://"):
        sys.exit("the empty server did not start")
    return proc, base


def points(n, step0=0):
    """n points over KEYS keys, step by step, as a training loop would log them."""
    return [Metric(f"m{i % KEYS}", (i * 7919 % 1000) / 1000.0, T0 + step0 + i // KEYS,
                   step0 + i // KEYS) for i in range(n)]


def quiet(f, *args):
    """Calls f without the lines the client prints to stdout (a run's address, when it ends)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return f(*args)


def client_round(client, exp, batch, calls):
    """Seconds for log_batch of `batch` and for `calls` single log_metric calls, in a fresh run."""
    run = client.create_run(exp).info.run_id
    t = time.perf_counter()
    client.log_batch(run, metrics=batch)
    tb = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(calls):
        client.log_metric(run, "acc", (i * 31 % 100) / 100.0, timestamp=T0 + i, step=i)
    tm = time.perf_counter() - t
    quiet(client.set_terminated, run)
    return run, tb, tm


class Raw:
    """One kept-alive HTTP connection, as the client holds one, without the client."""

    def __init__(self, base, token):
        u = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port)
        # As the client's urllib3 does: without it, the last piece of a large body waits for
        # the server's delayed acknowledgement (Nagle's algorithm).
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}

    def call(self, method, route, body=None):
        """(status, body bytes) of one call; the body is read whole, not parsed."""
        self.conn.request(method, "/api/2.0/mlflow/" + route, body=body, headers=self.headers)
        r = self.conn.getresponse()
        data = r.read()
        return r.status, data

    def ok(self, method, route, body=None):
        status, data = self.call(method, route, body)
        if status != 200:
            sys.exit(f"{method} {route}: {status} {data[:300]!r}")
        return data


def raw_round(raw, exp, n_points, calls):
    """Seconds for the same requests as `client_round`, serialised beforehand, sent raw."""
    run = json.loads(raw.ok("POST", "runs/create",
                            json.dumps({"experiment_id": exp, "start_time": T0})))["run"]["info"]["run_id"]
    bodies = []
    for c0 in range(0, n_points, 1000):
        ms = [{"key": f"m{i % KEYS}", "value": (i * 7919 % 1000) / 1000.0,
               "timestamp": T0 + i // KEYS, "step": i // KEYS} for i in range(c0, min(c0 + 1000, n_points))]
        bodies.append(json.dumps({"run_id": run, "metrics": ms}))
    singles = [json.dumps({"run_id": run, "run_uuid": run, "key": "acc",
                           "value": (i * 31 % 100) / 100.0, "timestamp": T0 + i, "step": i})
               for i in range(calls)]
    t = time.perf_counter()
    for b in bodies:
        raw.ok("POST", "runs/log-batch", b)
    tb = time.perf_counter() - t
    t = time.perf_counter()
    for b in singles:
        raw.ok("POST", "runs/log-metric", b)
    tm = time.perf_counter() - t
    return tb, tm


def check_logged(client, run, n_points, calls):
    """The run holds what was logged: every key's history whole, the latest values."""
    hist = client.get_metric_history(run, "acc")
    assert len(hist) == calls, (run, len(hist))
    assert [m.step for m in hist] == list(range(calls))
    h0 = client.get_metric_history(run, "m0")
    assert len(h0) == n_points // KEYS, (run, len(h0))
    got = client.get_run(run).data.metrics
    assert len(got) == KEYS + 1, sorted(got)


def scale(client, raw, total):
    """Petri only: a million points in one run, a 100,000-point history, a 1,000-run search."""
    out = []
    exp = client.create_experiment(f"p2-scale-{int(time.time())}")
    run = client.create_run(exp).info.run_id
    chunk = min(total, 100_000)
    per_key = total // KEYS
    spent = 0.0
    for c0 in range(0, total, chunk):
        batch = points(chunk, step0=c0 // KEYS)
        t = time.perf_counter()
        client.log_batch(run, metrics=batch)
        spent += time.perf_counter() - t
    out.append(f"{total:,} points in one run through the client ({total // chunk} log_batch calls "
               f"of {chunk:,}, {total // 1000:,} requests): {spent:.2f} s = {total / spent:,.0f} points/s")
    # The same million, serialised beforehand and sent raw, into a second run: Petri's own part.
    run2 = json.loads(raw.ok("POST", "runs/create", json.dumps({"experiment_id": exp})))["run"]["info"]["run_id"]
    spent_raw = 0.0
    for c0 in range(0, total, chunk):
        bodies = []
        for b0 in range(c0, c0 + chunk, 1000):
            ms = [{"key": f"m{i % KEYS}", "value": (i * 7919 % 1000) / 1000.0,
                   "timestamp": T0 + i // KEYS, "step": i // KEYS} for i in range(b0, b0 + 1000)]
            bodies.append(json.dumps({"run_id": run2, "metrics": ms}))
        t = time.perf_counter()
        for b in bodies:
            raw.ok("POST", "runs/log-batch", b)
        spent_raw += time.perf_counter() - t
    out.append(f"{total:,} points in one run, raw HTTP ({total // 1000:,} log-batch requests "
               f"serialised beforehand): {spent_raw:.2f} s = {total / spent_raw:,.0f} points/s")

    # The history of one key of the million-point run: 100,000 points.
    q = urllib.parse.urlencode({"run_id": run, "metric_key": "m0"})
    times, size = [], 0
    for _ in range(11):
        t = time.perf_counter()
        data = raw.ok("GET", "metrics/get-history?" + q)
        times.append(time.perf_counter() - t)
        size = len(data)
    n = len(json.loads(data)["metrics"])
    assert n == per_key, n
    out.append(f"get-history of {per_key:,} points (one key of that run), raw GET, whole history in "
               f"one answer ({size / 1e6:.1f} MB), median of 11: {med(times) * 1000:.1f} ms "
               f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f})")
    paged = []
    for _ in range(5):
        t = time.perf_counter()
        token_, pages, got = None, 0, 0
        while True:
            params = {"run_id": run, "metric_key": "m0", "max_results": 25000}
            if token_:
                params["page_token"] = token_
            page = json.loads(raw.ok("GET", "metrics/get-history?" + urllib.parse.urlencode(params)))
            pages += 1
            got += len(page.get("metrics", []))
            token_ = page.get("next_page_token")
            if not token_:
                break
        paged.append(time.perf_counter() - t)
    assert got == per_key, got
    out.append(f"get-history of {per_key:,} points, raw GET in pages of 25,000 as the client asks "
               f"({pages} requests, JSON parsed), median of 5: {med(paged) * 1000:.1f} ms")
    via = []
    for _ in range(3):
        t = time.perf_counter()
        h = client.get_metric_history(run, "m0")
        via.append(time.perf_counter() - t)
    assert len(h) == per_key and h[0].step == 0 and h[-1].step == per_key - 1
    out.append(f"get_metric_history of {per_key:,} points through the client (its paging and "
               f"parsing), median of 3: {med(via) * 1000:.0f} ms")

    # An experiment of 1,000 runs, each with params, metrics and a tag; searched with a filter.
    sexp = client.create_experiment(f"p2-search-{int(time.time())}")
    rnd = random.Random(2)
    t = time.perf_counter()
    for i in range(1000):
        r = client.create_run(sexp, run_name=f"trial-{i:04d}").info.run_id
        client.log_batch(
            r,
            metrics=[Metric("acc", rnd.random(), T0, 0), Metric("loss", rnd.random(), T0, 0)],
            params=[Param("opt", rnd.choice(["adam", "sgd", "rmsprop"])),
                    Param("lr", str(rnd.choice([0.1, 0.01, 0.001])))],
            tags=[RunTag("team", rnd.choice(["vision", "nlp"]))])
        quiet(client.set_terminated, r)
    out.append(f"(1,000 runs made through the client: create, log_batch, end: "
               f"{time.perf_counter() - t:.1f} s)")
    searches = [
        ("metrics.acc > 0.9 and params.opt = 'adam'", []),
        ("metrics.acc > 0.9 and params.opt = 'adam'", ["metrics.acc DESC"]),
        ("params.lr = '0.01' and tags.team = 'vision' and attributes.status = 'FINISHED'", []),
        ("", []),
    ]
    for flt, order in searches:
        body = json.dumps({"experiment_ids": [sexp], "filter": flt, "max_results": 1000,
                           "order_by": order})
        times = []
        for _ in range(21):
            t = time.perf_counter()
            data = raw.ok("POST", "runs/search", body)
            times.append(time.perf_counter() - t)
        n = len(json.loads(data).get("runs", []))
        t = time.perf_counter()
        got = client.search_runs([sexp], filter_string=flt, order_by=order or None, max_results=1000)
        tc = time.perf_counter() - t
        assert len(got) == n, (len(got), n)
        what = f"filter {flt!r}" if flt else "no filter"
        if order:
            what += f", order_by {order[0]!r}"
        out.append(f"search_runs over 1,000 runs, {what}: {n} runs; raw POST median of 21 "
                   f"{med(times) * 1000:.1f} ms (min {min(times) * 1000:.1f}, max "
                   f"{max(times) * 1000:.1f}, {len(data) / 1e3:.0f} kB); through the client "
                   f"{tc * 1000:.0f} ms")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--petri", required=True)
    ap.add_argument("--mlflow", required=True, help="the mlflow command (its server)")
    ap.add_argument("--empty-server", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--raw-rounds", type=int, default=1)
    ap.add_argument("--no-scale", action="store_true")
    ap.add_argument("--scale-points", type=int, default=1_000_000)
    ap.add_argument("--work", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "..", "out", "tracking"))
    a = ap.parse_args()
    work = os.path.abspath(a.work)
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    import mlflow
    print(f"mlflow {mlflow.__version__} (client and server); {a.points:,} points with log_batch, "
          f"{a.calls:,} log_metric calls; {a.rounds} rounds", flush=True)

    procs = []
    try:
        p, petri_base, token = start_petri(a.petri, os.path.join(work, "petri-home"))
        procs.append(("petri", p))
        t = time.perf_counter()
        p, mlflow_base = start_mlflow(a.mlflow, os.path.join(work, "mlflow-server"))
        procs.append(("mlflow", p))
        print(f"mlflow server answered after {time.perf_counter() - t:.1f} s", flush=True)
        p, empty_base = start_empty(a.empty_server, os.path.join(work, "empty"))
        procs.append(("empty", p))
        # The client sends this token to every server; only Petri reads it.
        os.environ["MLFLOW_TRACKING_TOKEN"] = token
        servers = {"empty": empty_base, "petri": petri_base, "mlflow server": mlflow_base}
        clients = {k: MlflowClient(tracking_uri=v) for k, v in servers.items()}
        exps = {"empty": "0"}
        for k in ("petri", "mlflow server"):
            exps[k] = clients[k].create_experiment(f"p2-{int(time.time())}")
        batch = points(a.points)

        # Warm-up: connections open, code paths loaded, on every side.
        for k, c in clients.items():
            run, _, _ = client_round(c, exps[k], points(2000), 50)
            if k != "empty":
                check_logged(c, run, 2000, 50)

        names = list(servers)
        times = {k: {"batch": [], "single": []} for k in names}
        for r in range(a.rounds):
            order = names[r % 3:] + names[:r % 3]
            line = []
            for k in order:
                run, tb, tm = client_round(clients[k], exps[k], batch, a.calls)
                if r == 0 and k != "empty":
                    check_logged(clients[k], run, a.points, a.calls)
                times[k]["batch"].append(tb)
                times[k]["single"].append(tm)
                line.append(f"{k}: log_batch {tb:.2f} s, log_metric x{a.calls} {tm:.2f} s")
            print(f"round {r + 1}: " + "; ".join(line), flush=True)

        print("medians, through the client:", flush=True)
        floor_b, floor_m = (med(times["empty"][x]) for x in ("batch", "single"))
        for k in names:
            b, m = med(times[k]["batch"]), med(times[k]["single"])
            print(f"  {k:<14} log_batch {a.points:,} points: {b:6.2f} s = {a.points / b:9,.0f} points/s "
                  f"= {floor_b / b * 100:5.1f} % of the client's limit | log_metric: {m:6.2f} s = "
                  f"{m / a.calls * 1000:6.2f} ms per call = {floor_m / m * 100:5.1f} % of the limit",
                  flush=True)
        pb, pm = med(times["petri"]["batch"]), med(times["petri"]["single"])
        mb, mm = med(times["mlflow server"]["batch"]), med(times["mlflow server"]["single"])
        print(f"  Petri vs mlflow server: log_batch {mb / pb:.1f}x, log_metric {mm / pm:.1f}x",
              flush=True)

        # The same requests without the client: what each server costs per request.
        raws = {k: Raw(v, token) for k, v in servers.items()}
        rawt = {k: {"batch": [], "single": []} for k in names}
        for r in range(a.raw_rounds):
            for k in names:
                tb, tm = raw_round(raws[k], exps[k], a.points, a.calls)
                rawt[k]["batch"].append(tb)
                rawt[k]["single"].append(tm)
        print("raw HTTP (the same requests serialised beforehand, one kept-alive connection, "
              f"median of {a.raw_rounds}):", flush=True)
        for k in names:
            b, m = med(rawt[k]["batch"]), med(rawt[k]["single"])
            print(f"  {k:<14} {a.points // 1000} log-batch requests of 1,000 points: {b:6.3f} s = "
                  f"{b / (a.points // 1000) * 1000:7.2f} ms each | {a.calls} log-metric: {m:6.3f} s = "
                  f"{m / a.calls * 1000:6.3f} ms each", flush=True)

        if not a.no_scale:
            print("scale, Petri only:", flush=True)
            for line in scale(clients["petri"], raws["petri"], a.scale_points):
                print("  " + line, flush=True)
        for k, v in servers.items():
            if k != "empty":
                print(f"{k}: {v}", flush=True)
    finally:
        for k, p in procs:
            if k == "mlflow":
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            else:
                p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                if k == "mlflow":
                    os.killpg(p.pid, signal.SIGKILL)
                else:
                    p.kill()
                p.wait()
        home = os.path.join(work, "petri-home", "daemon.log")
        if os.path.exists(home) and "panicked" in open(home).read():
            print(f"the daemon panicked: see {home}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
