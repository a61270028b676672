#!/usr/bin/env python3
"""P1b: a home that keeps everything. Petri with a million finished jobs and ten thousand queued,
beside pueue's `status` with ten thousand finished tasks, in one run.

Usage: bench.py --petri BIN --pueue-dir DIR --follow BIN [--finished 1000000] [--queued 10000]
                [--pueue-tasks 10000] [--followers 100] [--follow-jobs 2000] [--ui-scroll SCRIPT]

Everything is made through the API, never by writing to the database:
- the finished jobs: a held job that fails (`exit 1`) and sweeps of 100,000 jobs (`true`) that
  depend on it, submitted as ranges (`i=1..100000`); releasing the gate fails the gate, and the
  queue fails every dependant (state `failed`, reason: the dependency failed). They never run,
  which is what makes a million of them take minutes, not the 20 a million real runs would.
- the queued jobs: a sweep that depends on a held job, so it waits (state `queued`).
Then, on that home:
- the API's first page (`GET /api/v1/jobs?all=true`, and the active list, whose queued jobs carry
  why they wait) and one job (`GET /api/v1/jobs/N`, finished and queued), over a kept-alive
  connection: p50 and p99 of 300 requests each;
- `petri ls --all` on screen: wall time of the CLI beside `petri --version` (its start-up);
- the daemon's RSS after 10 s idle; restart (SIGTERM, start) until the first page is served;
- a 100,000-job sweep (held), from the request to the answer;
- 2,000 `true` jobs run without and then with 100 clients following logs (each client follows one
  job's log to its end, then the next one's, on one kept-alive connection as a browser does;
  then again with a new connection for every log; then with a new connection to the daemon's
  own socket for every log, as `petri logs -f` on its machine; the clients are bench/tools'
  `follow`, one thread), in turns for 5 rounds (`--follow-rounds`), the medians' throughput
  compared, with the daemon's CPU time per job in each (the machine's speed drifts; what a
  follower costs the daemon does much less);
- `petri logs -f` latency: a job prints its clock every 50 ms; the follower's clock on reading it;
- the jobs view in Chromium scrolled through the million (bench/scale/ui-scroll.mjs), if given;
- pueue: `pueued` with 10,000 finished `true` tasks; `pueue status` (and `--json`) wall time.
"""
import argparse, http.client, json, os, random, shutil, signal, statistics, subprocess, sys
import tempfile, time, urllib.parse


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


class Api:
    """One kept-alive connection to the daemon."""

    def __init__(self, base, token):
        u = urllib.parse.urlparse(base)
        self.host, self.port, self.token = u.hostname, u.port, token
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": "Bearer " + self.token}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                text = r.read()
                break
            except (http.client.HTTPException, ConnectionError, OSError):
                if attempt:
                    raise
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {text[:300]!r}")
        return json.loads(text) if text else None

    def call_text(self, path):
        self.conn.request("GET", path, headers={"Authorization": "Bearer " + self.token})
        return self.conn.getresponse().read().decode()

    def timed(self, method, path, body=None):
        t = time.perf_counter()
        out = self.call(method, path, body)
        return (time.perf_counter() - t) * 1000, out


def start(binary, home, settings=""):
    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, "petri.toml"), "w") as f:
        f.write('log = "warn"\n[capacity]\ncpus = 2\n[retention]\nevery = "0s"\n' + settings)
    env = dict(os.environ, PETRI_HOME=home)
    env.pop("PETRI_SERVER", None)
    addr = os.path.join(home, "daemon.addr")
    if os.path.exists(addr):
        os.remove(addr)
    t = time.perf_counter()
    proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not os.path.exists(addr):
        if proc.poll() is not None:
            sys.exit("the daemon exited")
        time.sleep(0.005)
    base = open(addr).read().strip()
    token = open(os.path.join(home, "token")).read().strip()
    api = Api(base, token)
    while True:
        try:
            api.call("GET", "/api/v1/jobs?all=true")
            break
        except (RuntimeError, OSError):
            time.sleep(0.005)
    return proc, api, env, time.perf_counter() - t


def wait_counts(api, pred, what, limit=3600):
    deadline = time.time() + limit
    while time.time() < deadline:
        counts = api.call("GET", "/api/v1/status")["counts"]
        if pred(counts):
            return counts
        time.sleep(0.5)
    sys.exit(f"timed out waiting for {what}")


def succeeded(api):
    """Jobs succeeded so far, from the in-memory counters on /metrics (no database read)."""
    text = api.call_text("/metrics")
    return sum(int(float(line.split()[-1])) for line in text.splitlines()
               if line.startswith("petri_jobs_finished_total{") and '"succeeded"' in line)


def rss_mib(pid):
    """The daemon's resident memory, MiB: (all of it, its own anonymous part). The rest is mapped
    files (the binary and the desktop build's libraries), shared with other processes."""
    out = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            out[key] = int(value.split()[0]) / 1024
    return out.get("VmRSS", 0.0), out.get("RssAnon", 0.0)


def rss_words(pid):
    total, anon = rss_mib(pid)
    return f"{total:.0f} MiB ({anon:.0f} MiB of it its own, the rest mapped files)"


def build_home(api, work, finished, queued):
    gate = api.call("POST", "/api/v1/jobs", {"jobs": [
        {"name": "gate", "run": "exit 1", "workdir": work, "hold": True}]})["jobs"][0]
    sweeps = []
    left = finished
    while left > 0:
        n = min(100_000, left)
        ms, out = api.timed("POST", "/api/v1/jobs", {"jobs": [
            {"name": "done", "run": "true", "workdir": work, "after": [gate["id"]],
             "array": {"i": f"1..{n}"}}]})
        sweeps.append(ms)
        left -= n
        print(f"  a {n}-job sweep (waiting on the gate) accepted in {ms / 1000:.2f} s", flush=True)
    t = time.perf_counter()
    api.call("POST", f"/api/v1/jobs/{gate['id']}/release")
    wait_counts(api, lambda c: c.get("failed", 0) >= finished + 1, "the dependants to fail")
    print(f"  the gate failed; {finished} dependants failed in {time.perf_counter() - t:.1f} s",
          flush=True)
    hold = api.call("POST", "/api/v1/jobs", {"jobs": [
        {"name": "hold", "run": "true", "workdir": work, "hold": True}]})["jobs"][0]
    api.call("POST", "/api/v1/jobs", {"jobs": [
        {"name": "waiting", "run": "true", "workdir": work, "after": [hold["id"]],
         "array": {"i": f"1..{queued}"}}]})
    return hold, sweeps


def latency(api, paths, n=300):
    times = []
    for i in range(n):
        ms, _ = api.timed("GET", paths[i % len(paths)])
        times.append(ms)
    return statistics.median(times), pct(times, 99)


def cli_time(binary, env, args, n=15):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([binary] + args, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def cpu_seconds(pid):
    """CPU time (user + system) a process has used, and that of its children it has reaped."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / hz, (int(fields[13]) + int(fields[14])) / hz


def run_jobs(api, work, n, followers, follow_bin, daemon_pid, new_connections=False, socket=None):
    """n `true` jobs; with followers, that many clients (bench/tools' `follow`, one thread) follow
    their logs meanwhile, each job's log to its end, on one kept-alive connection per client (or
    a new connection per log; on the daemon's own socket when `socket` is its path). Jobs per
    second, what the followers did, and the daemon's CPU per job (its own, and that of the jobs'
    processes it reaped)."""
    gate = api.call("POST", "/api/v1/jobs", {"jobs": [
        {"name": "go", "run": "true", "workdir": work, "hold": True}]})["jobs"][0]
    jobs = api.call("POST", "/api/v1/jobs", {"jobs": [
        {"name": "run", "run": "true", "workdir": work, "after": [gate["id"]],
         "array": {"i": f"1..{n}"}}]})["jobs"]
    follower = None
    if followers:
        ids = os.path.join(work, "follow-ids")
        with open(ids, "w") as f:
            f.write("\n".join(j["id"] for j in jobs))
        base = f"unix:{socket}" if socket else f"http://{api.host}:{api.port}"
        follower = subprocess.Popen([follow_bin, base, api.token, ids,
                                     "--clients", str(followers)]
                                    + (["--new-connections"] if new_connections else []),
                                    stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)  # every client is connected and waits on its first job
    before = succeeded(api)
    cpu0 = cpu_seconds(daemon_pid)
    t = time.perf_counter()
    api.call("POST", f"/api/v1/jobs/{gate['id']}/release")
    while succeeded(api) < before + n + 1:
        time.sleep(0.05)
    rate = n / (time.perf_counter() - t)
    cpu1 = cpu_seconds(daemon_pid)
    cpu = tuple((b - a) / n * 1e6 for a, b in zip(cpu0, cpu1))
    report = None
    if follower:
        out, _ = follower.communicate(timeout=120)
        report = json.loads(out)
        if report["errors"] or report["streams"] != n:
            print(f"  followers: {report}", flush=True)
    return rate, report, cpu


def follow_latency(binary, env, work, api):
    script = ("import time, sys\n"
              "for i in range(60):\n"
              "    print(repr(time.time()), flush=True)\n"
              "    time.sleep(0.05)\n")
    with open(os.path.join(work, "clock.py"), "w") as f:
        f.write(script)
    job = api.call("POST", "/api/v1/jobs", {"jobs": [
        {"name": "clock", "command": ["python3", "clock.py"], "workdir": work, "hold": True}]})["jobs"][0]
    follower = subprocess.Popen([binary, "logs", "-f", str(job["number"])], env=env,
                                stdout=subprocess.PIPE, bufsize=0)
    time.sleep(0.5)
    api.call("POST", f"/api/v1/jobs/{job['id']}/release")
    delays = []
    for line in iter(follower.stdout.readline, b""):
        now = time.time()
        try:
            delays.append((now - float(line)) * 1000)
        except ValueError:
            pass
    follower.wait()
    return statistics.median(delays), max(delays), len(delays)


def pueue_status(pueue_dir, tasks):
    base = tempfile.mkdtemp(prefix="pueue-scale-")
    cfg = os.path.join(base, "pueue.yml")
    with open(cfg, "w") as f:
        f.write(f"shared:\n  pueue_directory: {base}\n  runtime_directory: {base}\n"
                f"daemon:\n  default_parallel_tasks: 64\n")
    pueued = subprocess.Popen([os.path.join(pueue_dir, "pueued"), "-c", cfg],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pueue = [os.path.join(pueue_dir, "pueue"), "-c", cfg]
    try:
        for _ in range(200):
            if subprocess.run(pueue + ["status"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.05)
        subprocess.run(pueue + ["parallel", "64"], check=True, stdout=subprocess.DEVNULL)
        t = time.perf_counter()
        for _ in range(tasks):
            subprocess.run(pueue + ["add", "--", "true"], check=True, stdout=subprocess.DEVNULL)
        added = time.perf_counter() - t
        while True:
            out = subprocess.run(pueue + ["status", "--json"], check=True,
                                 capture_output=True).stdout
            states = json.loads(out)["tasks"].values()
            if all("Done" in json.dumps(s["status"]) for s in states):
                break
            time.sleep(1)
        status_ms = cli_time(pueue[0], None, pueue[1:] + ["status"], n=5)
        json_ms = cli_time(pueue[0], None, pueue[1:] + ["status", "--json"], n=5)
        return added, status_ms, json_ms
    finally:
        pueued.terminate()
        pueued.wait()
        shutil.rmtree(base, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--petri", required=True)
    ap.add_argument("--pueue-dir", required=True)
    ap.add_argument("--finished", type=int, default=1_000_000)
    ap.add_argument("--queued", type=int, default=10_000)
    ap.add_argument("--pueue-tasks", type=int, default=10_000, help="0: pueue is not run")
    ap.add_argument("--followers", type=int, default=100)
    ap.add_argument("--follow-jobs", type=int, default=2000)
    ap.add_argument("--follow-rounds", type=int, default=5)
    ap.add_argument("--follow", required=True, help="bench/tools' follow program")
    ap.add_argument("--ui-scroll", help="bench/scale/ui-scroll.mjs, to scroll the jobs view")
    ap.add_argument("--keep", help="keep the home here (reused when it exists)")
    a = ap.parse_args()

    home = a.keep or tempfile.mkdtemp(prefix="petri-scale-")
    work = os.path.join(home, "work")
    os.makedirs(work, exist_ok=True)
    reuse = a.keep and os.path.exists(os.path.join(home, "petri.db"))
    proc, api, env, _ = start(a.petri, home)
    print(f"P1b on {home}", flush=True)
    if not reuse:
        print(f"making {a.finished} finished and {a.queued} queued jobs through the API", flush=True)
        build_home(api, work, a.finished, a.queued)
    counts = api.call("GET", "/api/v1/status")["counts"]
    print(f"  the home: {counts}; petri.db {os.path.getsize(os.path.join(home, 'petri.db')) / 2**20:.0f} MiB",
          flush=True)

    # Reads.
    page = api.call("GET", "/api/v1/jobs?all=true")
    waiting = api.call("GET", "/api/v1/jobs")["jobs"]
    finished_paths = [f"/api/v1/jobs/{random.randint(2, a.finished)}" for _ in range(300)]
    queued_paths = [f"/api/v1/jobs/{j['number']}" for j in waiting]
    results = {}
    results["first page, all (newest 100)"] = latency(api, ["/api/v1/jobs?all=true"])
    results["first page, state=failed"] = latency(api, ["/api/v1/jobs?state=failed"])
    results["first page, active (queued, with why they wait)"] = latency(api, ["/api/v1/jobs"])
    tag = page["next"].split("-", 1)[1]
    results["a page half way down (after a cursor)"] = latency(
        api, [f"/api/v1/jobs?all=true&after={a.finished // 2}-{tag}"])
    results["one finished job"] = latency(api, finished_paths)
    results["one queued job (with why it waits)"] = latency(api, queued_paths)
    for k, (p50, p99) in results.items():
        print(f"  API {k}: p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)
    startup = cli_time(a.petri, env, ["--version"])
    ls_all = cli_time(a.petri, env, ["ls", "--all"])
    print(f"  petri ls --all: {ls_all:.1f} ms; petri --version (start-up): {startup:.1f} ms", flush=True)

    time.sleep(10)
    print(f"  daemon RSS after 10 s idle: {rss_words(proc.pid)}", flush=True)

    proc.send_signal(signal.SIGTERM)
    proc.wait()
    proc, api, env, restart = start(a.petri, home)
    print(f"  restart (start to the first page served): {restart * 1000:.0f} ms", flush=True)
    print(f"  daemon RSS just after the restart: {rss_words(proc.pid)}", flush=True)

    ms, out = api.timed("POST", "/api/v1/jobs", {"jobs": [
        {"name": "big", "run": "true", "workdir": work, "hold": True, "array": {"i": "1..100000"}}]})
    print(f"  a 100000-job sweep (held) accepted in {ms / 1000:.2f} s ({len(out['jobs'])} jobs answered)",
          flush=True)
    # Cancel none of them: held jobs wait and cost the queue nothing.

    p50, worst, n = follow_latency(a.petri, env, work, api)
    print(f"  petri logs -f: a line on screen {p50:.1f} ms after it was written (p50 of {n}; max {worst:.1f} ms)",
          flush=True)

    # Alone and followed, in turns (the machine's speed drifts): the medians of the rounds.
    # Followed three ways: each client on one kept-alive TCP connection (as the web UI's live
    # log in a browser, or any pooling HTTP client); on a new TCP connection for every log (a
    # client that does not pool); on a new connection to the daemon's own socket for every log
    # (as one `petri logs -f` per job on the daemon's machine).
    socket = os.path.join(home, "petri.sock")
    quiet, busy, fresh, local = [], [], [], []
    for _ in range(a.follow_rounds):
        alone, _, cpu_alone = run_jobs(api, work, a.follow_jobs, 0, a.follow, proc.pid)
        quiet.append(alone)
        rate, report, cpu = run_jobs(api, work, a.follow_jobs, a.followers, a.follow, proc.pid)
        busy.append(rate)
        rate_n, report_n, cpu_n = run_jobs(api, work, a.follow_jobs, a.followers, a.follow,
                                           proc.pid, new_connections=True)
        fresh.append(rate_n)
        rate_s, report_s, cpu_s = run_jobs(api, work, a.follow_jobs, a.followers, a.follow,
                                           proc.pid, new_connections=True, socket=socket)
        local.append(rate_s)
        print(f"  round: {alone:.0f} jobs/s alone, {rate:.0f} with {a.followers} followers "
              f"({report['streams']} logs followed to their end in {report['seconds']:.1f} s on "
              f"{report['connections']} connections, {report['errors']} errors), {rate_n:.0f} "
              f"with a new connection per log ({report_n['streams']} logs, "
              f"{report_n['errors']} errors), {rate_s:.0f} with a new connection per log on the "
              f"daemon's socket ({report_s['streams']} logs, {report_s['errors']} errors); the "
              f"daemon's CPU a job: {cpu_alone[0]:.0f} us alone, {cpu[0]:.0f} us followed, "
              f"{cpu_n[0]:.0f} us with new connections, {cpu_s[0]:.0f} us on the socket (the "
              f"jobs' own processes: {cpu_alone[1]:.0f} / {cpu[1]:.0f} / {cpu_n[1]:.0f} / "
              f"{cpu_s[1]:.0f} us)", flush=True)
    q, b, f, u = (statistics.median(quiet), statistics.median(busy), statistics.median(fresh),
                  statistics.median(local))
    print(f"  {a.follow_jobs} jobs: {q:.0f} jobs/s alone, {b:.0f} jobs/s with {a.followers} "
          f"clients following logs ({b / q * 100:.1f} %), {f:.0f} jobs/s with a new connection "
          f"per log ({f / q * 100:.1f} %), {u:.0f} jobs/s with a new connection per log on the "
          f"daemon's socket ({u / q * 100:.1f} %); medians of {a.follow_rounds} rounds",
          flush=True)

    if a.ui_scroll:
        out = subprocess.run(["node", a.ui_scroll, "--base", f"http://{api.host}:{api.port}",
                              "--token", api.token, "--limit-s", "90"],
                             capture_output=True, text=True)
        print(f"  jobs view in Chromium: {out.stdout.strip() or out.stderr.strip()[-500:]}", flush=True)

    proc.send_signal(signal.SIGTERM)
    proc.wait()

    if a.pueue_tasks:
        added, status_ms, json_ms = pueue_status(a.pueue_dir, a.pueue_tasks)
        print(f"  pueue with {a.pueue_tasks} finished tasks: `pueue status` {status_ms:.0f} ms, "
              f"`pueue status --json` {json_ms:.0f} ms (adding them took {added:.0f} s)", flush=True)
    print(f"  petri ls --all with {a.finished} finished jobs: {ls_all:.1f} ms", flush=True)
    if not a.keep:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
