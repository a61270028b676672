#!/usr/bin/env python3
"""P4: a 200-step fan-out/fan-in DAG of no-op steps, Petri beside Snakemake, in one run.

Usage: bench.py --petri BIN --snakemake BIN [--rounds 3] [--cached-rounds 5] [--work DIR]

The DAG: one `start` step, 198 steps that each need it, one `end` step that needs all 198. Every
step runs `true` (with its own name as an argument, so that no two steps are the same command).
Two forms of it, each measured on both sides:

- explicit: the 198 middle steps written out one by one (Petri: 198 steps with `needs: [start]`;
            Snakemake: 198 rules);
- for_each: the middle as one step over a list of 198 items (Petri: `for_each`; Snakemake: one rule
            with a wildcard, its usual way to write a fan-out).

- snakemake: `snakemake --cores 2 -s Snakefile` in a fresh scratch folder each round, start-up
             included. Snakemake orders jobs by their files, so each rule touches an empty file as
             its output.
- petri:     one daemon (`petri serve`, 2 cpus of capacity: two 1-cpu steps at a time); each round
             times `petri pipeline run FILE --wait --no-cache` from the command's start to its end
             (the CLI's start-up included). Steps run as plain processes (no image). The daemon's
             own span (run recorded to run finished) is read back from the API.
- floors:    200 `true` with `xargs -P2` (bare spawn), and 200 `true` jobs submitted to the same
             daemon as one sweep without a pipeline (the queue alone).
- cached:    the same pipeline without `--no-cache`, once to fill the cache, then timed; every step
             must say `cached`.

Rounds alternate Snakemake and Petri (the shared machine's speed drifts); medians are reported.
"""
import argparse, json, os, shutil, subprocess, sys, time, urllib.request

MIDDLE = 198


def mid(i):
    return f"mid_{i:03d}"


def write_inputs(work):
    """The DAG as two Petri pipelines (explicit, for_each) and two Snakefiles, in `work`."""
    lines = ["name: p4-explicit", "steps:", "  start:", '    command: ["true", "start"]']
    for i in range(MIDDLE):
        lines += [f"  {mid(i)}:", "    needs: [start]", f'    command: ["true", "{mid(i)}"]']
    lines += ["  end:", f"    needs: [{', '.join(mid(i) for i in range(MIDDLE))}]",
              '    command: ["true", "end"]']
    explicit = os.path.join(work, "explicit.yaml")
    with open(explicit, "w") as f:
        f.write("\n".join(lines) + "\n")
    foreach = os.path.join(work, "foreach.yaml")
    with open(foreach, "w") as f:
        f.write(f"""name: p4-foreach
steps:
  start:
    command: ["true", "start"]
  middle:
    needs: [start]
    for_each: [{", ".join(str(i) for i in range(MIDDLE))}]
    command: ["true", "mid_${{{{ item }}}}"]
  end:
    needs: [middle]
    command: ["true", "end"]
""")
    # Snakemake, the same two ways: 198 rules written out, and one rule with a wildcard (its
    # usual way to write a fan-out). Each rule touches an empty file: Snakemake orders jobs by
    # their input and output files, so a rule without outputs could not be waited for.
    rules = ['rule all:\n    input: "done/end"\n',
             'rule start:\n    output: touch("done/start")\n    shell: "true start"\n']
    for i in range(MIDDLE):
        rules.append(f'rule {mid(i)}:\n    input: "done/start"\n    output: touch("done/{mid(i)}")\n'
                     f'    shell: "true {mid(i)}"\n')
    rules.append('rule end:\n    input: [' + ", ".join(f'"done/{mid(i)}"' for i in range(MIDDLE))
                 + ']\n    output: touch("done/end")\n    shell: "true end"\n')
    snake_explicit = os.path.join(work, "Snakefile.explicit")
    with open(snake_explicit, "w") as f:
        f.write("\n".join(rules))
    snake_wildcard = os.path.join(work, "Snakefile.wildcard")
    with open(snake_wildcard, "w") as f:
        f.write(f"""MIDDLE = [f"{{i:03d}}" for i in range({MIDDLE})]

rule all:
    input: "done/end"

rule start:
    output: touch("done/start")
    shell: "true start"

rule middle:
    input: "done/start"
    output: touch("done/mid_{{i}}")
    shell: "true mid_{{wildcards.i}}"

rule end:
    input: expand("done/mid_{{i}}", i=MIDDLE)
    output: touch("done/end")
    shell: "true end"
""")
    return explicit, foreach, snake_explicit, snake_wildcard


def snakemake_round(binary, snakefile, work, label, dry_run=False):
    """Seconds for one `snakemake --cores 2` of the DAG in a fresh folder, start-up included
    (with `dry_run`, `-n`: its start-up and DAG without running a job)."""
    scratch = os.path.join(work, f"snakemake-{label}")
    os.makedirs(scratch)
    shutil.copy(snakefile, os.path.join(scratch, "Snakefile"))
    env = dict(os.environ)
    # As on a workstation: Python may cache the bytecode it compiles.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with open(os.path.join(scratch, "snakemake.log"), "w") as log:
        t = time.perf_counter()
        subprocess.run([binary, "--cores", "2", "-s", "Snakefile"] + (["-n"] if dry_run else []),
                       cwd=scratch, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
        elapsed = time.perf_counter() - t
    if dry_run:
        return elapsed
    done = os.listdir(os.path.join(scratch, "done"))
    assert len(done) == MIDDLE + 2, f"snakemake made {len(done)} outputs"
    return elapsed


def start_petri(binary, home):
    os.makedirs(home)
    with open(os.path.join(home, "petri.toml"), "w") as f:
        f.write('log = "warn"\n[capacity]\ncpus = 2\n')
    env = dict(os.environ, PETRI_HOME=home)
    env.pop("PETRI_SERVER", None)
    proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0"], env=env,
                            stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(home, "daemon.log"), "w"))
    addr = os.path.join(home, "daemon.addr")
    for _ in range(600):
        if os.path.exists(addr) and open(addr).read().strip():
            break
        if proc.poll() is not None:
            sys.exit(f"petri serve exited with {proc.returncode}; see {home}/daemon.log")
        time.sleep(0.02)
    base = open(addr).read().strip()
    token = open(os.path.join(home, "token")).read().strip()
    return proc, base, token, env


def api(base, token, path):
    req = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def all_jobs(base, token):
    """Every job of the home, page after page (a page holds at most 1000)."""
    jobs, after = [], ""
    while True:
        page = api(base, token, "/api/v1/jobs?all=true&limit=1000" + (f"&after={after}" if after else ""))
        jobs += page["jobs"]
        if not page.get("next"):
            return jobs
        after = page["next"]


def finished(base, token):
    """Jobs finished so far, from the daemon's in-memory counters (no database read)."""
    req = urllib.request.Request(base + "/metrics", headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req) as r:
        text = r.read().decode()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("petri_jobs_finished_total{"))


def queue_alone(binary, env, base, token, n):
    """Seconds for the same number of `true` jobs submitted as one sweep, without a pipeline:
    what the queue itself takes (the floor for the pipeline's steps)."""
    before = finished(base, token)
    t = time.perf_counter()
    subprocess.run([binary, "submit", "--array", "i=" + ",".join(str(i) for i in range(n)),
                    "--", "true"], env=env, check=True, stdout=subprocess.DEVNULL)
    while finished(base, token) < before + n:
        time.sleep(0.005)
    return time.perf_counter() - t


def bare_spawn(n):
    """Seconds for `true` n times, two at a time, with nothing around it."""
    t = time.perf_counter()
    subprocess.run(f"seq {n} | xargs -P2 -n1 sh -c true", shell=True, check=True)
    return time.perf_counter() - t


def petri_run(binary, env, pipeline, no_cache):
    """Seconds for `petri pipeline run FILE --wait [--no-cache]`, and the run it printed."""
    cmd = [binary, "pipeline", "run", pipeline, "--wait", "--json"]
    if no_cache:
        cmd.append("--no-cache")
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE).stdout
    elapsed = time.perf_counter() - t
    return elapsed, json.loads(out)


def check_run(run, want):
    """The run succeeded, with every step (and every item of a `for_each` step) in a state of
    `want`."""
    assert run["state"] == "succeeded", (run["state"], run.get("reason"))
    assert len(run["steps"]) in (3, MIDDLE + 2), len(run["steps"])
    for s in run["steps"]:
        assert s["state"] in want, (s["name"], s["state"], s.get("reason"))
        for it in s.get("items", []):
            assert it["state"] in want, (s["name"], it)
    steps = sum(max(1, len(s.get("items", []))) for s in run["steps"])
    assert steps == MIDDLE + 2, steps


def timeline(run, jobs):
    """Where a run's time went, in ms after the daemon recorded it: the steps' jobs as the queue
    recorded them (submitted, started, finished)."""
    t0 = run["created_at"]
    by_step = {"start": [], "middle": [], "end": []}
    for s in run["steps"]:
        kind = s["name"] if s["name"] in ("start", "end") else "middle"
        refs = [it["job"] for it in s["items"]] if s.get("items") else [s["job"]]
        by_step[kind] += [jobs[r["id"]] for r in refs]
    start, end, middle = by_step["start"][0], by_step["end"][0], by_step["middle"]
    first = lambda key: min(j[key] for j in middle) - t0
    last = lambda key: max(j[key] for j in middle) - t0
    med = lambda xs: sorted(xs)[len(xs) // 2]
    return [
        ("run started", run["started_at"] - t0),
        ("start: job submitted / started / finished",
         f'{start["submitted_at_ms"] - t0} / {start["started_at_ms"] - t0} / {start["finished_at_ms"] - t0}'),
        ("middle: jobs submitted, first / last", f'{first("submitted_at_ms")} / {last("submitted_at_ms")}'),
        ("middle: jobs started, first / last", f'{first("started_at_ms")} / {last("started_at_ms")}'),
        ("middle: last job finished", last("finished_at_ms")),
        ("end: job submitted / started / finished",
         f'{end["submitted_at_ms"] - t0} / {end["started_at_ms"] - t0} / {end["finished_at_ms"] - t0}'),
        ("run finished", run["finished_at"] - t0),
        ("middle: median job submitted to started", med([j["started_at_ms"] - j["submitted_at_ms"] for j in middle])),
        ("middle: median job started to finished", med([j["finished_at_ms"] - j["started_at_ms"] for j in middle])),
    ]


def cached_timeline(run):
    """A cached run's steps: when each was served from the cache, in ms after the run was
    recorded."""
    t0 = run["created_at"]
    middle = [s for s in run["steps"] if s["name"] not in ("start", "end")]
    steps = {s["name"]: s for s in run["steps"]}
    return [
        ("run started", run["started_at"] - t0),
        ("start: cached", steps["start"]["finished_at"] - t0),
        ("middle: cached, first / last",
         f'{min(s["started_at"] for s in middle) - t0} / {max(s["finished_at"] for s in middle) - t0}'),
        ("end: cached", steps["end"]["finished_at"] - t0),
        ("run finished", run["finished_at"] - t0),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--petri", required=True)
    ap.add_argument("--snakemake", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cached-rounds", type=int, default=5)
    ap.add_argument("--work", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "out", "pipeline"))
    a = ap.parse_args()
    work = os.path.abspath(a.work)
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    version = subprocess.run([a.snakemake, "--version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    n = MIDDLE + 2
    print(f"snakemake {version}; {n} steps: start -> {MIDDLE} in parallel -> end", flush=True)
    explicit, foreach, snake_explicit, snake_wildcard = write_inputs(work)
    proc, base, token, env = start_petri(a.petri, os.path.join(work, "petri-home"))
    med = lambda xs: sorted(xs)[len(xs) // 2]
    try:
        # The CLI's own start-up and one small request, for scale.
        cli = []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run([a.petri, "pipeline", "ls", "--limit", "1", "--json"], env=env,
                           check=True, stdout=subprocess.DEVNULL)
            cli.append(time.perf_counter() - t)
        print(f"petri CLI start-up plus one request (median of 5): {med(cli) * 1000:.1f} ms", flush=True)

        forms = (("explicit", explicit, snake_explicit), ("for_each", foreach, snake_wildcard))
        for form, _, snakefile in forms:
            dry = [snakemake_round(a.snakemake, snakefile, work, f"dry-{form}-{i}", dry_run=True)
                   for i in range(3)]
            print(f"snakemake start-up and DAG without running a job ({form}, `-n`, median of 3): "
                  f"{med(dry):.2f} s", flush=True)
        times = {f: {"snakemake": [], "petri": [], "daemon": []} for f, _, _ in forms}
        floors = {"bare spawn": [], "queue alone": []}
        last = {}
        for r in range(a.rounds):
            floors["bare spawn"].append(bare_spawn(n))
            floors["queue alone"].append(queue_alone(a.petri, env, base, token, n))
            line = [f"{k} {v[-1]:.3f} s" for k, v in floors.items()]
            for form, pipeline, snakefile in forms:
                s = snakemake_round(a.snakemake, snakefile, work, f"{form}-{r}")
                p, run = petri_run(a.petri, env, pipeline, no_cache=True)
                check_run(run, ("succeeded",))
                d = (run["finished_at"] - run["created_at"]) / 1000
                times[form]["snakemake"].append(s)
                times[form]["petri"].append(p)
                times[form]["daemon"].append(d)
                last[form] = run
                line.append(f"{form}: snakemake {s:.2f} s, petri {p:.3f} s (daemon {d:.3f} s)")
            print(f"round {r + 1}: " + "; ".join(line), flush=True)
        for k, v in floors.items():
            print(f"median {k} ({n} `true` jobs, two at a time): {med(v):.3f} s = "
                  f"{med(v) / n * 1000:.2f} ms per job", flush=True)
        for form, _, _ in forms:
            s, p, d = (med(times[form][k]) for k in ("snakemake", "petri", "daemon"))
            print(f"median, {form}: snakemake {s:.2f} s = {s / n * 1000:.1f} ms per step; "
                  f"petri {p:.3f} s = {p / n * 1000:.2f} ms per step = {s / p:.1f}x faster "
                  f"(the daemon's own span, run recorded to run finished: {d:.3f} s = "
                  f"{d / n * 1000:.2f} ms per step)", flush=True)

        jobs = {j["id"]: j for j in all_jobs(base, token)}
        for form, _, _ in forms:
            print(f"where the last {form} run's time went (ms after the daemon recorded it):",
                  flush=True)
            for k, v in timeline(last[form], jobs):
                print(f"  {k:<45} {v}", flush=True)

        for form, pipeline, _ in forms:
            # Fills the cache (a step the other form already ran may be served from it).
            _, run = petri_run(a.petri, env, pipeline, no_cache=False)
            check_run(run, ("succeeded", "cached"))
            cached, daemon = [], []
            for _ in range(a.cached_rounds):
                t, run = petri_run(a.petri, env, pipeline, no_cache=False)
                check_run(run, ("cached",))
                cached.append(t)
                daemon.append(run["finished_at"] - run["created_at"])
            print(f"petri cached run, {form} (every step `cached`): median {med(cached) * 1000:.0f} ms "
                  f"(rounds: {', '.join(f'{x * 1000:.0f}' for x in cached)}); the daemon's own span "
                  f"{med(daemon)} ms", flush=True)
            for k, v in cached_timeline(run):
                print(f"  {k:<45} {v}", flush=True)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
