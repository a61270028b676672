"""P8: the overhead of going through Petri to a cluster, beside the engine's own client, in one run.

The same trivial job (write the time, sleep 1 s, write the time) is sent N times, one after the
other. Slurm: (a) with `sbatch` and followed with `squeue` every 50 ms, as a script would, and
(b) with `petri submit --target hpc` and followed through Petri's API every 50 ms. Ray: (a) with
`ray job submit` (the CLI waits for the job and returns when it ended), and (b) with `petri submit
--target ray`, followed the same way. The job's own clock marks
when it really started and ended on the node, so for both paths:

  submit -> start   from the client's submit call to the job's first line on the node
  end -> seen       from the job's last line to the client seeing it ended (state final)

Usage: python3 bench/cluster/bench.py --engine slurm|ray --petri PATH --home DIR --url URL --jobs N
       --dir SHARED_DIR --work DIR [--ray PATH]
(run.sh starts the cluster and the daemon and calls this).
"""

import argparse
import json
import os
import statistics
import subprocess
import time
import urllib.request

p = argparse.ArgumentParser()
p.add_argument("--petri", required=True)
p.add_argument("--home", required=True)
p.add_argument("--url", required=True)
p.add_argument("--dir", required=True, help="a folder the job may write (its stamps)")
p.add_argument("--jobs", type=int, default=10)
p.add_argument("--engine", choices=["slurm", "ray"], default="slurm")
p.add_argument("--ray", help="the ray command (for --engine ray)")
p.add_argument("--work", required=True, help="the jobs' working directory (sbatch's too)")
a = p.parse_args()

env = dict(os.environ, PETRI_HOME=a.home, NO_COLOR="1")
token = open(os.path.join(a.home, "token")).read().strip()


def api(path):
    req = urllib.request.Request(a.url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def script(stamp):
    return f"date +%s.%N > {stamp}.start; sleep 1; date +%s.%N > {stamp}.end"


def stamps(stamp):
    for _ in range(200):
        try:
            return float(open(stamp + ".start").read()), float(open(stamp + ".end").read())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise SystemExit(f"no stamps at {stamp}")


def drained():
    """Waits until Slurm holds no job (Ray runs each job's entrypoint at once: nothing to wait) (a job that ended may still be COMPLETING, holding its node
    until the next scheduling pass): each submission, by either path, meets an idle cluster."""
    if a.engine == "ray":
        time.sleep(0.5)
        return
    while subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip():
        time.sleep(0.05)
    time.sleep(0.5)


def via_sbatch(i):
    stamp = os.path.join(a.dir, f"sbatch-{i}")
    t0 = time.time()
    out = subprocess.run(
        ["sbatch", "--parsable", "-o", "/dev/null", "-D", a.work, "--wrap", script(stamp)],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    job = out.split(";")[0]
    while True:
        state = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True
        ).stdout.strip()
        if state in ("", "COMPLETED", "FAILED", "CANCELLED"):
            seen = time.time()
            break
        time.sleep(0.05)
    start, end = stamps(stamp)
    return start - t0, seen - end


def via_ray(i):
    stamp = os.path.join(a.dir, f"ray-{i}")
    t0 = time.time()
    # The CLI submits, follows the job's log and returns once the job ended.
    subprocess.run(
        [a.ray, "job", "submit", "--working-dir", a.work, "--", "sh", "-c", script(stamp)],
        check=True, capture_output=True, text=True,
    )
    seen = time.time()
    start, end = stamps(stamp)
    return start - t0, seen - end


def via_petri(i):
    stamp = os.path.join(a.dir, f"petri-{a.engine}-{i}")
    t0 = time.time()
    out = subprocess.run(
        # A small working directory: Petri copies it to the shared path for each attempt.
        [a.petri, "submit", "--json", "--target", target, "--workdir", a.work, "--run", script(stamp)],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    job = json.loads(out)[0]["id"]
    while True:
        state = api(f"/api/v1/jobs/{job}")["state"]
        if state in ("succeeded", "failed", "cancelled", "lost"):
            seen = time.time()
            break
        time.sleep(0.05)
    start, end = stamps(stamp)
    return start - t0, seen - end


def ms(xs):
    xs = sorted(xs)
    return {
        "p50": round(statistics.median(xs) * 1000),
        "max": round(xs[-1] * 1000),
    }


target = "hpc" if a.engine == "slurm" else "ray"
native = ("sbatch + squeue", via_sbatch) if a.engine == "slurm" else ("ray job submit", via_ray)
rows = {}
for name, f in (native, ("petri submit --target", via_petri)):
    f(-1)  # warm-up
    got = []
    for i in range(a.jobs):
        drained()
        got.append(f(i))
    rows[name] = {"submit_to_start": ms([g[0] for g in got]), "end_to_seen": ms([g[1] for g in got])}
print(json.dumps({"engine": a.engine, "jobs": a.jobs, "results": rows}, indent=2))
for name, r in rows.items():
    print(
        f"{name:24} submit->start p50 {r['submit_to_start']['p50']:5} ms (max {r['submit_to_start']['max']:5}) | "
        f"end->seen p50 {r['end_to_seen']['p50']:5} ms (max {r['end_to_seen']['max']:5})"
    )
