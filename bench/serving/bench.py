#!/usr/bin/env python3
"""P3: model serving. The iris model served by Petri, by `mlflow models serve` and, beside them,
by a server that answers a fixed response at once (the HTTP limit of this machine), in one run.

Usage: bench.py --petri BIN --mlflow BIN --fixed-answer BIN --openloop BIN [--rounds 5]
                [--duration 10] [--rate-duration 15] [--serial 2000] [--connections 64]
                [--wrk-threads 2] [--openloop-threads 2] [--tick-us 250] [--perf N] [--work DIR]

Run it with the Python that has mlflow and scikit-learn (bench/serving/run.sh does).

- Petri: `petri serve` on a fresh home; `petri pipeline run samples/pipelines/iris.yaml --wait`
  (Docker, the image petri/python:3.11) registers iris-mlp and points @champion at it; then
  `petri model serve iris-mlp@champion --name iris --wait` (the default batching: up to 64 rows,
  no wait: a batch is what queued while the replica was busy) and the same with
  `--max-batch 1 --name iris-b1` (no batching) and with `--max-delay 2ms --name iris-d2` (the
  first request of a batch waits 2 ms for more). Requests go to the daemon's
  `POST /v2/models/{name}/infer` (Open Inference Protocol v2, one row of the four measurements)
  with the home's token; the daemon reads and featurizes each, batches them and sends each
  batch to the replica.
- MLflow: a scikit-learn Pipeline (StandardScaler on the four measurements, MLPClassifier with
  one hidden layer of 16 relu units, 500 epochs, learning rate 0.01, seed 0: the pipeline's own
  featurization and training settings) fitted on samples/data/iris.csv joined with
  iris_profiles.csv on sample_id (the pipeline's rows), saved with `mlflow.sklearn.save_model`, served by
  `mlflow models serve --env-manager local --workers 2`; the same row as `dataframe_split` to
  `POST /invocations`.
- The fixed answer: bench/tools (fixed-answer), answering Petri's own answer bytes, twice: an
  axum handler on the infer route (the reference the targets are measured against, as the issue
  names it; Petri's daemon is an axum app too) and hyper alone with no routing (a lower floor).
- Peak: `wrk -t2 -c64 -d10s` per server (bench/serving/post.lua: the body and the Authorization
  header, sent to every server; only Petri reads it), rounds rotating the order; medians.
- Fixed rate: bench/tools (openloop) at half of each server's median peak, 64
  connections, 2 s of warm-up then 15 s counted; latency from each request's scheduled instant
  (no coordinated omission); its timer wakes at most every 250 µs (--tick-us) and sends what is
  due, so the generator's own wake-ups cost the server's two cores less (a request sent late
  still counts from its due instant); rounds rotating the order; medians of p50 and p99.
- One request at a time: 2,000 requests in a row on one kept-alive connection, per server; and
  500 on a new connection each (the connect timed with it).
- CPU per request: during every wrk run, the CPU time (/proc) of each server's processes (the
  daemon and the replica apart), and wrk's own.
- Where Petri's time goes: the same peak and single-request timings for the daemon's own
  `GET /v2/health/ready` (auth and routing, nothing forwarded), `GET /v2/models/iris/ready`
  (forwarded to the replica, which checks its key and answers without the model), the
  replica's `GET /v2/health/live` on its own port (no key needed: the replica's HTTP alone), and
  the infer request with an API token from `petri token create` instead of the owner's.
  With --perf N, perf's flat profile of the daemon and a replica under wrk, N seconds each.
"""
import argparse, http.client, json, os, resource, shutil, signal, socket, subprocess, sys, time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def med(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def say(*a):
    print(*a, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(base, method, path, body=None, token=None, timeout=30):
    u = urllib.parse.urlsplit(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def wait_http(base, path, proc, what, log, tries=2400):
    for _ in range(tries):
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}; see {log}")
        try:
            if request(base, "GET", path, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"{what} did not answer {base}{path}; see {log}")


class Petri:
    def __init__(self, binary, home):
        self.binary, self.home = binary, home
        os.makedirs(home)
        with open(os.path.join(home, "petri.toml"), "w") as f:
            f.write('log = "warn"\n')
        self.env = dict(os.environ, PETRI_HOME=home)
        self.env.pop("PETRI_SERVER", None)
        self.log = os.path.join(home, "daemon.log")
        self.proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0"], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        addr = os.path.join(home, "daemon.addr")
        for _ in range(1500):
            if os.path.exists(addr) and open(addr).read().strip():
                break
            if self.proc.poll() is not None:
                sys.exit(f"petri serve exited with {self.proc.returncode}; see {self.log}")
            time.sleep(0.02)
        self.base = open(addr).read().strip().rstrip("/")
        self.token = open(os.path.join(home, "token")).read().strip()
        wait_http(self.base, "/healthz", self.proc, "petri serve", self.log)

    def cli(self, *args, timeout=1800):
        r = subprocess.run([self.binary, *args], env=self.env, cwd=ROOT, capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode != 0:
            sys.exit(f"petri {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def replica_pids(self):
        """Processes listening on the deployments' replica ports (found through /proc)."""
        try:
            deps = json.loads(self.cli("model", "endpoints", "--json"))
        except SystemExit:
            return []
        ports = {r["port"] for d in deps for r in d.get("replicas", [])}
        return listening_pids(ports)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def listening_pids(ports):
    """The pids of processes with a listening TCP socket on one of `ports` (IPv4 loopback)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            port = int(f[1].rsplit(":", 1)[1], 16)
            if f[3] == "0A" and port in ports:  # LISTEN
                inodes.add(f[9])
    pids = set()
    if not inodes:
        return []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    pids.add(int(pid))
        except OSError:
            continue
    return sorted(pids)


def train_mlflow_model(path):
    """The same network and featurization as the iris pipeline, as one scikit-learn Pipeline
    that takes the raw columns, saved in MLflow's format."""
    import warnings
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    data = pd.read_csv(os.path.join(ROOT, "samples/data/iris.csv")).merge(
        pd.read_csv(os.path.join(ROOT, "samples/data/iris_profiles.csv")), on="sample_id",
        how="inner")
    x, y = data[COLUMNS], data["species"]
    model = Pipeline([
        ("features", StandardScaler()),
        ("mlp", MLPClassifier(hidden_layer_sizes=(16,), activation="relu", max_iter=500,
                              learning_rate_init=0.01, random_state=0)),
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    accuracy = float((model.predict(x) == y).mean())
    example = x.head(1)
    # mlflow 3 saves with skops, which asks that the optimizer's type be named as trusted.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mlflow.sklearn.save_model(
            model, path, input_example=example,
            signature=infer_signature(example, model.predict(example)),
            skops_trusted_types=["sklearn.neural_network._stochastic_optimizers.AdamOptimizer"])
    return len(data), accuracy


def start_mlflow(binary, model_dir, work, workers):
    port = free_port()
    log = os.path.join(work, "mlflow-serve.log")
    env = dict(os.environ, PATH=os.path.dirname(binary) + os.pathsep + os.environ.get("PATH", ""),
               MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    # Its own session: the server starts worker processes, stopped with it (by its group id).
    proc = subprocess.Popen(
        [binary, "models", "serve", "-m", model_dir, "--env-manager", "local",
         "--workers", str(workers), "-h", "127.0.0.1", "-p", str(port)],
        cwd=work, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    wait_http(base, "/ping", proc, "mlflow models serve", log)
    return proc, base


# The fixed answers: the reference (an axum handler), and hyper alone.
FIXED = "fixed answer (axum)"
BARE = "fixed answer (hyper)"


def start_fixed(binary, answer_file, *flags):
    proc = subprocess.Popen([binary, "--body", answer_file, *flags], stdout=subprocess.PIPE,
                            text=True)
    base = proc.stdout.readline().strip()
    if not base.startswith("http://"):
        sys.exit("the fixed-answer server did not start")
    return proc, base


def stop_group(proc):
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Target:
    def __init__(self, name, url, body_file, method="POST", cpu=None, deployment=None):
        self.name, self.url, self.body_file, self.method = name, url, body_file, method
        self.deployment = deployment  # Petri's deployment, whose stats to read after a run
        self.cpu = cpu or {}  # {part: [pid]}: whose CPU time to count during wrk


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU seconds of a process (all its threads) so far."""
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def group_pids(pgid):
    """The processes of a process group (MLflow's server and its workers)."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                if int(f[2]) == pgid:
                    out.append(int(pid))
            except (OSError, IndexError, ValueError):
                pass
    return out


def busy_seconds():
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...: not irq and softirq, which no process
    # is charged for (the loopback traffic of this bench's own requests is mostly softirq).
    return (f[0] + f[1] + f[2] + f[7]) / TICK


class Machine:
    """What the rest of this shared machine uses: its busy CPU minus this bench's processes
    (the servers, and wrk, openloop and this script)."""

    def __init__(self):
        self.pids = []

    def mine(self):
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        return (sum(cpu_seconds(p) for p in self.pids) + children.ru_utime + children.ru_stime
                + me.ru_utime + me.ru_stime)

    def start(self):
        self.t, self.busy, self.me = time.monotonic(), busy_seconds(), self.mine()

    def others(self):
        """Cores the rest of the machine used since start()."""
        dt = time.monotonic() - self.t
        return max(0.0, (busy_seconds() - self.busy) - (self.mine() - self.me)) / max(dt, 1e-3)

    def settle(self, limit, most):
        """Waits (at most `most` seconds) until the rest of the machine uses under `limit`
        cores over 2 s; returns what it used in the last 2 s."""
        deadline = time.monotonic() + most
        while True:
            self.start()
            time.sleep(2)
            used = self.others()
            if used < limit or time.monotonic() > deadline:
                return used


MACHINE = Machine()


def run_wrk(t, auth, seconds, conns, threads, cpu=None):
    """wrk against `t`; with `cpu` ({part: [pid]}), the CPU seconds each part spent, and wrk's."""
    env = dict(os.environ, WRK_METHOD=t.method, WRK_BODY=t.body_file or "", WRK_AUTH=auth)
    cpu = cpu or {}
    before = {k: sum(cpu_seconds(p) for p in pids) for k, pids in cpu.items()}
    MACHINE.start()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s",
                        "-s", os.path.join(HERE, "post.lua"), t.url],
                       env=env, capture_output=True, text=True, timeout=seconds + 60)
    line = next((l for l in r.stdout.splitlines() if l.startswith("WRK_JSON ")), None)
    if r.returncode != 0 or line is None:
        sys.exit(f"wrk against {t.name} failed:\n{r.stdout}\n{r.stderr}")
    out = json.loads(line[len("WRK_JSON "):])
    out["rps"] = out["requests"] / (out["duration_us"] / 1e6)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["cpu_s"] = {k: sum(cpu_seconds(p) for p in pids) - before[k] for k, pids in cpu.items()}
    out["cpu_s"]["wrk"] = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    out["others_cores"] = MACHINE.others()
    out["load"] = os.getloadavg()[0]
    return out


def run_openloop(binary, t, auth, *args):
    cmd = [binary, args[0], t.url, "--method", t.method, "--header", "Authorization: " + auth]
    if t.body_file:
        cmd += ["--body", t.body_file]
    cmd += [str(a) for a in args[1:]]
    MACHINE.start()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        sys.exit(f"openloop against {t.name} failed:\n{r.stdout}\n{r.stderr}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["others_cores"] = MACHINE.others()
    out["load"] = os.getloadavg()[0]
    return out


def deployment_stats(petri, name):
    """Petri's own view of a deployment's traffic, where the daemon has it (else None)."""
    try:
        status, data = request(petri.base, "GET", f"/api/v1/deployments/{name}/stats",
                               token=petri.token)
        return json.loads(data) if status == 200 else None
    except (OSError, ValueError):
        return None


def pids_exe(pids):
    """The program file of the first of `pids`."""
    try:
        return os.readlink(f"/proc/{pids[0]}/exe")
    except OSError:
        return "petri"


def profile(t, auth, a, pids, out):
    """perf's flat profile of `pids` while wrk drives `t` (symbols need the profiling build)."""
    env = dict(os.environ, WRK_METHOD=t.method, WRK_BODY=t.body_file or "", WRK_AUTH=auth)
    wrk = subprocess.Popen(["wrk", f"-t{a.wrk_threads}", f"-c{a.connections}",
                            f"-d{a.perf + 3}s", "-s", os.path.join(HERE, "post.lua"), t.url],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        data = out + ".data"
        subprocess.run(["perf", "record", "-F", "997", "-o", data, "-p",
                        ",".join(str(p) for p in pids), "--", "sleep", str(a.perf)],
                       capture_output=True, timeout=a.perf + 60)
        # By process (the daemon's threads are named petri, a replica's tokio-rt-worker) and
        # library, then the functions.
        text = ""
        for extra in (["--sort", "comm,dso", "--percent-limit", "1"],
                      ["--sort", "comm,dso,sym", "--percent-limit", "0.7"],
                      # Petri's own code alone, finer.
                      ["--sort", "comm,sym", "--dsos", os.path.basename(pids_exe(pids)),
                       "--percent-limit", "0.25"]):
            r = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", *extra],
                               capture_output=True, text=True, timeout=300)
            text += r.stdout
        with open(out, "w") as f:
            f.write(text)
        os.remove(data)
    finally:
        wrk.wait(timeout=a.perf + 60)
    return [l for l in text.splitlines() if l.strip() and not l.startswith("#")][:100]


def ms(us):
    return f"{us / 1000:.2f} ms"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--petri", required=True)
    ap.add_argument("--mlflow", required=True)
    ap.add_argument("--fixed-answer", required=True)
    ap.add_argument("--openloop", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    ap.add_argument("--rate-duration", type=float, default=15, help="counted seconds per fixed rate")
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--serial", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--openloop-threads", type=int, default=2)
    ap.add_argument("--tick-us", type=int, default=250,
                    help="the fixed-rate generator's timer wakes at most this often (µs); 0: at every due instant")
    ap.add_argument("--mlflow-workers", type=int, default=2)
    ap.add_argument("--quiet-below", type=float, default=0.3,
                    help="before each measurement, wait until the rest of the machine uses fewer "
                         "cores than this over 2 s ...")
    ap.add_argument("--quiet-wait", type=float, default=60, help="... for at most this many seconds")
    ap.add_argument("--perf", type=int, default=0,
                    help="seconds of `perf record` on the daemon and a replica under wrk, per deployment")
    ap.add_argument("--work", default=os.path.join(ROOT, "bench", "out", "serving"))
    a = ap.parse_args()
    work = os.path.abspath(a.work)
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    import mlflow
    import sklearn
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "crates", "Cargo.lock"],
                           capture_output=True, text=True).stdout.strip()
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    say(f"P3: Petri at {commit}{' (crates/ with uncommitted changes)' if dirty else ''}; "
        f"mlflow {mlflow.__version__}, scikit-learn {sklearn.__version__}; {wrk_v.split(' [')[0]}; "
        f"{os.cpu_count()} cores; {a.rounds} rounds; wrk -t{a.wrk_threads} -c{a.connections} "
        f"-d{a.duration}s; fixed rate {a.warmup:g}+{a.rate_duration:g} s, {a.openloop_threads} threads, "
        f"timer tick {a.tick_us} µs; {a.serial} single requests")

    # A copy of the binary: the daemon starts its replicas from its own file, and a build in
    # the shared cache may replace that file during the run.
    shutil.copy2(a.petri, os.path.join(work, "petri"))
    a.petri = os.path.join(work, "petri")
    petri = None
    procs = []
    results = {"args": vars(a), "commit": commit, "dirty": bool(dirty),
               "mlflow": mlflow.__version__}
    try:
        # --- Petri: a fresh home, the iris pipeline, two deployments of its model.
        t0 = time.perf_counter()
        petri = Petri(a.petri, os.path.join(work, "petri-home"))
        say(f"petri serve answered after {time.perf_counter() - t0:.2f} s at {petri.base}")
        t0 = time.perf_counter()
        petri.cli("pipeline", "run", "samples/pipelines/iris.yaml", "--wait")
        say(f"the iris pipeline ran in {time.perf_counter() - t0:.1f} s")
        model = json.loads(petri.cli("model", "show", "iris-mlp", "--json"))
        aliases = model.get("model", model).get("aliases", [])
        say(f"registered: iris-mlp, aliases {json.dumps(aliases)}")
        variants = (("iris", []), ("iris-b1", ["--max-batch", "1"]),
                    ("iris-d2", ["--max-delay", "2ms"]))
        for name, extra in variants:
            t0 = time.perf_counter()
            petri.cli("model", "serve", "iris-mlp@champion", "--name", name, "--wait", *extra)
            say(f"petri model serve --name {name} {' '.join(extra)}: ready after "
                f"{time.perf_counter() - t0:.2f} s")
        endpoints = json.loads(petri.cli("model", "endpoints", "--json"))
        results["endpoints"] = endpoints
        replica_port = {d["name"]: d["replicas"][0]["port"] for d in endpoints}
        for d in endpoints:
            say(f"  {d['name']}: version {d['version']}, max_batch {d['max_batch']}, max_delay "
                f"{d['max_delay']}, {len(d['replicas'])} replica(s) on port(s) "
                f"{[r['port'] for r in d['replicas']]}, {d['state']}")

        oip = {"inputs": [
            {"name": c, "shape": [1], "datatype": "FP64",
             "data": [ROW[c]]} for c in COLUMNS]}
        oip_file = os.path.join(work, "oip.json")
        with open(oip_file, "w") as f:
            json.dump(oip, f, separators=(",", ":"))
        scoring = {"dataframe_split": {"columns": COLUMNS, "data": [[ROW[c] for c in COLUMNS]]}}
        scoring_file = os.path.join(work, "dataframe_split.json")
        with open(scoring_file, "w") as f:
            json.dump(scoring, f, separators=(",", ":"))
        status, answer = request(petri.base, "POST", "/v2/models/iris/infer",
                                 open(oip_file, "rb").read(), petri.token)
        if status != 200:
            sys.exit(f"Petri answered {status}: {answer[:300]!r}")
        answer_file = os.path.join(work, "petri-answer.json")
        with open(answer_file, "wb") as f:
            f.write(answer)
        petri_label = next(o["data"][0] for o in json.loads(answer)["outputs"]
                           if o["name"] == "label")
        say(f"Petri's answer ({len(answer)} bytes): {answer.decode()[:300]}")

        # --- MLflow: the equivalent scikit-learn model behind `mlflow models serve`.
        model_dir = os.path.join(work, "mlflow-model")
        rows, acc = train_mlflow_model(model_dir)
        say(f"scikit-learn model trained on {rows} joined rows (training accuracy {acc:.3f}), "
            f"saved with mlflow.sklearn.save_model")
        t0 = time.perf_counter()
        mlflow_proc, mlflow_base = start_mlflow(a.mlflow, model_dir, work, a.mlflow_workers)
        procs.append(mlflow_proc)
        say(f"mlflow models serve --workers {a.mlflow_workers} answered after "
            f"{time.perf_counter() - t0:.1f} s")
        status, data = request(mlflow_base, "POST", "/invocations",
                               open(scoring_file, "rb").read(), petri.token)
        if status != 200:
            sys.exit(f"mlflow answered {status}: {data[:300]!r}")
        say(f"MLflow's answer: {data.decode()[:200]}")
        mlflow_label = json.loads(data)["predictions"][0]
        if mlflow_label != petri_label:
            sys.exit(f"the two models disagree on the row: Petri {petri_label}, MLflow {mlflow_label}")

        # --- The fixed answer: Petri's own bytes, at once; from an axum handler (the reference
        # the issue names, and Petri's own framework) and from hyper alone (a lower floor).
        fixed_proc, fixed_base = start_fixed(a.fixed_answer, answer_file, "--axum")
        bare_proc, bare_base = start_fixed(a.fixed_answer, answer_file)
        procs += [fixed_proc, bare_proc]
        for base in (fixed_base, bare_base):
            status, data = request(base, "POST", "/v2/models/iris/infer",
                                   open(oip_file, "rb").read(), petri.token)
            assert status == 200 and data == answer

        auth = "Bearer " + petri.token
        daemon = [petri.proc.pid]
        replica = {d: listening_pids({replica_port[d]}) for d in replica_port}
        MACHINE.pids = (daemon + [p for d in replica.values() for p in d]
                        + [fixed_proc.pid, bare_proc.pid] + group_pids(mlflow_proc.pid))

        def settle():
            return MACHINE.settle(a.quiet_below, a.quiet_wait)
        servers = [
            Target(FIXED, fixed_base + "/v2/models/iris/infer", oip_file,
                   cpu={"server": [fixed_proc.pid]}),
            Target(BARE, bare_base + "/v2/models/iris/infer", oip_file,
                   cpu={"server": [bare_proc.pid]}),
            Target("Petri", petri.base + "/v2/models/iris/infer", oip_file,
                   cpu={"daemon": daemon, "replica": replica["iris"]}, deployment="iris"),
            Target("Petri --max-batch 1", petri.base + "/v2/models/iris-b1/infer", oip_file,
                   cpu={"daemon": daemon, "replica": replica["iris-b1"]}, deployment="iris-b1"),
            Target("Petri --max-delay 2ms", petri.base + "/v2/models/iris-d2/infer", oip_file,
                   cpu={"daemon": daemon, "replica": replica["iris-d2"]}, deployment="iris-d2"),
            Target("mlflow models serve", mlflow_base + "/invocations", scoring_file,
                   cpu={"server": group_pids(mlflow_proc.pid)}),
        ]
        names = [s.name for s in servers]

        # Warm-up: every server, a few seconds at full load.
        for s in servers:
            run_wrk(s, auth, 3, a.connections, a.wrk_threads)

        # --- Peak: wrk, closed loop, 64 connections.
        peak = {n: [] for n in names}
        wrk_runs = {n: [] for n in names}
        for r in range(a.rounds):
            order = servers[r % len(servers):] + servers[:r % len(servers)]
            line = []
            for s in order:
                quiet = settle()
                w = run_wrk(s, auth, a.duration, a.connections, a.wrk_threads, s.cpu)
                w["others_before"] = quiet
                if s.deployment:
                    w["petri_stats"] = deployment_stats(petri, s.deployment)
                errors = sum(w["errors"].values())
                if w["errors"]["status"] or w["errors"]["timeout"]:
                    say(f"  note: {s.name} had errors under wrk: {w['errors']}")
                peak[s.name].append(w["rps"])
                wrk_runs[s.name].append(w)
                line.append(f"{s.name} {w['rps']:,.0f}/s" + (f" ({errors} errors)" if errors else "")
                            + f" [others {quiet:.2f}/{w['others_cores']:.2f} cores]")
            say(f"peak round {r + 1}: " + "; ".join(line))
        results["peak"] = peak
        results["wrk"] = wrk_runs
        pk = {n: med(peak[n]) for n in names}
        say("peak, median of rounds: " + "; ".join(f"{n} {pk[n]:,.0f}/s" for n in names))

        # --- Fixed rate: half of each server's median peak, open loop.
        fixed = {n: [] for n in names}
        for r in range(a.rounds):
            order = servers[r % len(servers):] + servers[:r % len(servers)]
            line = []
            for s in order:
                quiet = settle()
                o = run_openloop(a.openloop, s, auth, "rate", "--rate", f"{pk[s.name] / 2:.1f}",
                                 "--duration", a.rate_duration, "--warmup", a.warmup,
                                 "--connections", a.connections, "--threads", a.openloop_threads,
                                 "--tick-us", a.tick_us)
                o["others_before"] = quiet
                if s.deployment:
                    # What the daemon saw of the same traffic: its forwarding time, batch sizes.
                    o["petri_stats"] = deployment_stats(petri, s.deployment)
                fixed[s.name].append(o)
                lat = o["latency_us"]
                line.append(f"{s.name} at {o['target_rate']:,.0f}/s: p50 {ms(lat['p50'])}, "
                            f"p99 {ms(lat['p99'])}"
                            + (f", {o['errors']} errors" if o["errors"] else "")
                            + (f", {o['unsent']} unsent" if o["unsent"] else "")
                            + f" [others {quiet:.2f}/{o['others_cores']:.2f} cores]")
            say(f"fixed-rate round {r + 1}: " + "; ".join(line))
        results["fixed_rate"] = fixed

        # --- One request at a time.
        serial, serial_fresh = {}, {}
        for s in servers:
            settle()
            serial[s.name] = run_openloop(a.openloop, s, auth, "serial", "--requests", a.serial,
                                          "--warmup-requests", 200)
            # The same with a new connection for each request (as curl would): MLflow's server
            # answers a kept-alive connection in two writes, the second held back ~40 ms by
            # Nagle's algorithm until the client's delayed ACK; a new connection escapes it.
            serial_fresh[s.name] = run_openloop(a.openloop, s, auth, "serial", "--fresh",
                                                "--requests", min(a.serial, 500),
                                                "--warmup-requests", 20)
        results["serial"] = serial
        results["serial_fresh"] = serial_fresh

        # --- Where Petri's time goes: the same timings without the model, without the hop.
        probes = [
            Target("Petri daemon, GET /v2/health/ready (auth, routing)",
                   petri.base + "/v2/health/ready", None, "GET", cpu={"daemon": daemon}),
            Target("Petri daemon -> replica, GET /v2/models/iris/ready (forwarded, no model)",
                   petri.base + "/v2/models/iris/ready", None, "GET",
                   cpu={"daemon": daemon, "replica": replica["iris"]}),
            Target("Petri replica alone, GET /v2/health/live on its port (its HTTP alone)",
                   f"http://127.0.0.1:{replica_port['iris']}/v2/health/live", None, "GET",
                   cpu={"replica": replica["iris"]}),
            Target(FIXED + ", GET", fixed_base + "/", None, "GET",
                   cpu={"server": servers[0].cpu["server"]}),
        ]
        # A client with an API token (`petri token create`), not the owner's: the daemon looks
        # its hash up in SQLite on a blocking thread, on every request.
        api_token = json.loads(petri.cli("token", "create", "p3-bench", "--scope", "submit",
                                         "--json"))["token"]
        probes.append(Target("Petri, infer with an API token (submit scope), not the owner's",
                             servers[2].url, oip_file, cpu=servers[2].cpu))
        probe = {}
        for s in probes:
            key = ("Bearer " + api_token) if "API token" in s.name else auth
            settle()
            w = run_wrk(s, key, a.duration, a.connections, a.wrk_threads, s.cpu)
            o = run_openloop(a.openloop, s, key, "serial", "--requests", a.serial,
                             "--warmup-requests", 200)
            probe[s.name] = {"wrk": w, "serial": o}
        results["probes"] = probe
        if a.perf:
            for s, d in ((servers[3], "iris-b1"), (servers[2], "iris")):
                out = os.path.join(work, f"perf-{d}.txt")
                top = profile(s, auth, a, daemon + replica[d], out)
                say(f"perf, {s.name} under wrk (daemon pid {daemon[0]}, replica pid "
                    f"{replica[d][0]}); whole report in {out}:")
                for line in top:
                    say("  " + line)

        # --- The summary.
        say("")
        say(f"{'':<26} {'peak (wrk)':>12} {'vs fixed':>9} {'half-peak rate':>15} "
            f"{'p50':>9} {'p99':>9} {'single p50':>11} {'single p99':>11} {'new conn p50':>13}")
        p50 = {n: med([o["latency_us"]["p50"] for o in fixed[n]]) for n in names}
        p99 = {n: med([o["latency_us"]["p99"] for o in fixed[n]]) for n in names}
        for n in names:
            say(f"{n:<26} {pk[n]:>10,.0f}/s {pk[n] / pk[FIXED] * 100:>8.1f}% "
                f"{pk[n] / 2:>13,.0f}/s {ms(p50[n]):>9} {ms(p99[n]):>9} "
                f"{ms(serial[n]['latency_us']['p50']):>11} {ms(serial[n]['latency_us']['p99']):>11} "
                f"{ms(serial_fresh[n]['latency_us']['p50']):>13}")
        def per_request(w):
            return ", ".join(f"{k} {v / w['requests'] * 1e6:.0f} µs"
                             for k, v in w["cpu_s"].items())
        say("CPU per request at the peak (median round), by process:")
        for n in names:
            runs = sorted(wrk_runs[n], key=lambda w: w["rps"])
            say(f"  {n}: {per_request(runs[len(runs) // 2])}")
        say("where Petri's time goes (wrk peak, CPU per request; one request at a time p50):")
        for n, v in probe.items():
            say(f"  {n}: {v['wrk']['rps']:,.0f}/s ({per_request(v['wrk'])}); "
                f"{ms(v['serial']['latency_us']['p50'])}")
        say("the daemon's own view (GET /api/v1/deployments/{name}/stats: forwarding time of its "
            "last requests, rows per batch), median of rounds:")
        for n in names:
            for phase, runs in (("peak", wrk_runs[n]), ("half peak", fixed[n])):
                st = [r["petri_stats"] for r in runs if r.get("petri_stats")]
                if st and all(x.get("p50_ms") is not None for x in st):
                    say(f"  {n}, {phase}: p50 {med([x['p50_ms'] for x in st]):.2f} ms, p99 "
                        f"{med([x['p99_ms'] for x in st]):.2f} ms, "
                        f"{med([x['mean_batch_rows'] or 0 for x in st]):.1f} rows per batch")
        peaks_o = [w["others_cores"] for n in names for w in wrk_runs[n]]
        rates_o = [o["others_cores"] for n in names for o in fixed[n]]
        say(f"the rest of the machine used, during the peak runs: median {med(peaks_o):.2f} cores "
            f"(max {max(peaks_o):.2f}); during the fixed-rate runs: median {med(rates_o):.2f} "
            f"(max {max(rates_o):.2f})")
        ratio_mlflow = pk["Petri"] / pk["mlflow models serve"]
        share = pk["Petri"] / pk[FIXED]
        say("targets (Petri, default batching):")
        say(f"  >= 30x mlflow models serve: {ratio_mlflow:.1f}x -> "
            f"{'met' if ratio_mlflow >= 30 else 'MISSED'}")
        say(f"  >= 50 % of the fixed answer (axum): {share * 100:.1f} % -> "
            f"{'met' if share >= 0.5 else 'MISSED'} (of hyper alone: "
            f"{pk['Petri'] / pk[BARE] * 100:.1f} %)")
        # This machine's speed drifts between rounds (and the reference with it): each round's
        # Petri beside that round's fixed answer, to show how far one run's share can move.
        shares = [p / f for p, f in zip(peak["Petri"], peak[FIXED])]
        results["share_by_round"] = shares
        say(f"     round by round: {', '.join(f'{x * 100:.1f} %' for x in shares)}; "
            f"median {med(shares) * 100:.1f} %")
        say(f"  p99 <= 5 ms at half of its peak: {ms(p99['Petri'])} -> "
            f"{'met' if p99['Petri'] <= 5000 else 'MISSED'}")
        for v in ("Petri --max-batch 1", "Petri --max-delay 2ms"):
            say(f"  ({v}: {pk[v] / pk['mlflow models serve']:.1f}x mlflow, "
                f"{pk[v] / pk[FIXED] * 100:.1f} % of the fixed answer, p99 {ms(p99[v])})")
        with open(os.path.join(work, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        say(f"everything measured: {os.path.join(work, 'results.json')}")
    finally:
        if petri is not None:
            left = petri.replica_pids() if petri.proc.poll() is None else []
            for d in ("iris", "iris-b1", "iris-d2"):
                if petri.proc.poll() is None:
                    subprocess.run([petri.binary, "model", "unserve", d], env=petri.env,
                                   capture_output=True, timeout=60)
            # The replicas stop after unserve; any that still listens is stopped by its pid.
            deadline = time.time() + 20
            while left and time.time() < deadline:
                left = [p for p in left if os.path.exists(f"/proc/{p}")]
                time.sleep(0.2)
            for pid in left:
                try:
                    os.kill(pid, signal.SIGTERM)
                    say(f"stopped a replica left running (pid {pid})")
                except ProcessLookupError:
                    pass
            petri.stop()
            if os.path.exists(petri.log) and "panicked" in open(petri.log).read():
                say(f"the daemon panicked: see {petri.log}")
        for p in procs:
            if p.args[0] == a.mlflow:
                stop_group(p)
            else:
                p.terminate()
                p.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
