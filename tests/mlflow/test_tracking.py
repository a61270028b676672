"""Petri's MLflow tracking API, driven by the stock `mlflow` client.

Starts nothing: MLFLOW_TRACKING_URI and MLFLOW_TRACKING_TOKEN name a running daemon and a
token (tests/mlflow/run.sh sets them). Runs as plain python (each test_* function in turn) or
under pytest.
"""

import json
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import mlflow

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import suite  # noqa: E402
import mlflow.pyfunc
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def error_code(call):
    """Calls `call` and returns the MLflow error code it raised."""
    try:
        call()
    except MlflowException as e:
        return e.error_code
    raise AssertionError("the call did not raise")


def post(route, message):
    """POSTs a message to an MLflow route as the client would; returns (status, JSON answer)."""
    uri = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
    request = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/{route}",
        data=json.dumps(message).encode(),
        headers={
            "Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_experiments_create_get_search_rename_delete_restore():
    client = MlflowClient()
    name = unique("exp")
    exp_id = client.create_experiment(name, tags={"team": "vision"})
    exp = client.get_experiment(exp_id)
    assert exp.name == name and exp.lifecycle_stage == "active"
    assert exp.tags["team"] == "vision"
    assert exp.artifact_location.endswith(exp_id)
    assert client.get_experiment_by_name(name).experiment_id == exp_id
    assert client.get_experiment_by_name(unique("none")) is None
    assert client.get_experiment("0").name == "Default"

    assert error_code(lambda: client.create_experiment(name)) == "RESOURCE_ALREADY_EXISTS"
    assert error_code(lambda: client.get_experiment("987654")) == "RESOURCE_DOES_NOT_EXIST"

    names = [e.name for e in client.search_experiments()]
    assert name in names and "Default" in names

    new_name = unique("renamed")
    client.rename_experiment(exp_id, new_name)
    assert client.get_experiment(exp_id).name == new_name
    client.set_experiment_tag(exp_id, "stage", "dev")
    assert client.get_experiment(exp_id).tags["stage"] == "dev"

    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
    active = [e.experiment_id for e in client.search_experiments()]
    deleted = [e.experiment_id for e in client.search_experiments(view_type=ViewType.DELETED_ONLY)]
    assert exp_id not in active and exp_id in deleted
    # A deleted experiment takes no runs, and its name stays taken.
    assert error_code(lambda: client.create_run(exp_id)) == "INVALID_PARAMETER_VALUE"
    assert error_code(lambda: client.create_experiment(new_name)) == "RESOURCE_ALREADY_EXISTS"
    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"


def test_a_run_logs_params_metrics_tags_and_ends():
    exp = mlflow.set_experiment(unique("fluent"))
    with mlflow.start_run(run_name="first") as run:
        run_id = run.info.run_id
        assert run.info.status == "RUNNING"
        assert run.info.experiment_id == exp.experiment_id
        assert run.info.artifact_uri.endswith(f"{run_id}/artifacts")
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"opt": "adam", "layers": 3})
        # The very same value again is fine, as in MLflow.
        mlflow.log_param("lr", 0.01)
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.5, "f1": 0.25}, step=1)
        mlflow.log_metric("acc", 0.75, step=2)
        mlflow.set_tag("owner", "ada")
        mlflow.set_tags({"kind": "baseline", "gpu": "none"})
    got = MlflowClient().get_run(run_id)
    assert got.info.status == "FINISHED" and got.info.end_time is not None
    assert got.info.run_name == "first"
    assert got.data.params == {"lr": "0.01", "opt": "adam", "layers": "3"}
    assert got.data.metrics["loss"] == 0.2  # the latest step's value
    assert got.data.metrics["acc"] == 0.75
    assert got.data.tags["owner"] == "ada" and got.data.tags["kind"] == "baseline"
    assert got.data.tags["mlflow.runName"] == "first"


def test_metric_history_keeps_every_step_in_order():
    client = MlflowClient()
    run = client.create_run("0")
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    points = [Metric("curve", float(i) * 0.5, now + i, i) for i in range(2500)]
    for start in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=points[start:start + 1000])
    client.log_metric(run_id, "odd", float("nan"), step=0)
    client.log_metric(run_id, "odd", float("inf"), step=1)
    history = client.get_metric_history(run_id, "curve")
    assert [m.step for m in history] == list(range(2500))
    assert history[10].value == 5.0 and history[10].timestamp == now + 10
    odd = client.get_metric_history(run_id, "odd")
    assert math.isnan(odd[0].value) and odd[1].value == math.inf
    assert client.get_metric_history(run_id, "never-logged") == []
    client.set_terminated(run_id, "KILLED")
    assert client.get_run(run_id).info.status == "KILLED"


def test_search_runs_filters_and_orders():
    client = MlflowClient()
    exp_id = client.create_experiment(unique("search"))
    ids = {}
    for name, acc, opt in [("a", 0.91, "adam"), ("b", 0.85, "sgd"), ("c", 0.97, "adam")]:
        run = client.create_run(exp_id, run_name=name)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("acc", acc, 0, 0)],
            params=[Param("opt", opt)],
            tags=[RunTag("group", "g1" if name != "b" else "g2")],
        )
        client.set_terminated(run.info.run_id)
        ids[name] = run.info.run_id

    found = client.search_runs([exp_id], "metrics.acc > 0.9 and params.opt = 'adam'")
    assert sorted(r.info.run_name for r in found) == ["a", "c"]
    ordered = client.search_runs([exp_id], order_by=["metrics.acc DESC"])
    assert [r.info.run_name for r in ordered] == ["c", "a", "b"]
    ordered = client.search_runs([exp_id], order_by=["params.opt ASC", "metrics.acc ASC"])
    assert [r.info.run_name for r in ordered] == ["a", "c", "b"]
    assert [r.info.run_name for r in client.search_runs([exp_id], "tags.group = 'g2'")] == ["b"]
    like = client.search_runs([exp_id], "attributes.run_name LIKE 'a%'")
    assert [r.info.run_id for r in like] == [ids["a"]]
    status = client.search_runs([exp_id], "attributes.status = 'FINISHED'")
    assert len(status) == 3

    page = client.search_runs([exp_id], max_results=2, order_by=["metrics.acc DESC"])
    assert len(page) == 2 and page.token
    rest = client.search_runs(
        [exp_id], max_results=2, order_by=["metrics.acc DESC"], page_token=page.token
    )
    assert [r.info.run_name for r in rest] == ["b"] and not rest.token

    # Deleted runs are out of the default view, in the deleted one, and come back.
    client.delete_run(ids["b"])
    assert len(client.search_runs([exp_id])) == 2
    deleted = client.search_runs([exp_id], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [ids["b"]]
    client.restore_run(ids["b"])
    assert len(client.search_runs([exp_id])) == 3

    # The fluent search answers a data frame (pandas ships with mlflow).
    frame = mlflow.search_runs([exp_id], filter_string="metrics.acc < 0.9")
    assert list(frame["tags.mlflow.runName"]) == ["b"]

    assert (
        error_code(lambda: client.search_runs([exp_id], "metrics.acc >> 1"))
        == "INVALID_PARAMETER_VALUE"
    )


def test_tags_are_set_and_deleted():
    client = MlflowClient()
    run_id = client.create_run("0").info.run_id
    client.set_tag(run_id, "note", "keep")
    client.set_tag(run_id, "note", "changed")
    assert client.get_run(run_id).data.tags["note"] == "changed"
    client.delete_tag(run_id, "note")
    assert "note" not in client.get_run(run_id).data.tags
    assert error_code(lambda: client.delete_tag(run_id, "note")) == "RESOURCE_DOES_NOT_EXIST"
    client.update_run(run_id, name="renamed-run")
    got = client.get_run(run_id)
    assert got.info.run_name == "renamed-run" and got.data.tags["mlflow.runName"] == "renamed-run"


def test_errors_are_raised_as_mlflow_raises_them():
    client = MlflowClient()
    missing = uuid.uuid4().hex
    assert error_code(lambda: client.get_run(missing)) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: client.log_param(missing, "a", 1)) == "RESOURCE_DOES_NOT_EXIST"
    run_id = client.create_run("0").info.run_id
    client.log_param(run_id, "depth", 3)
    # A param logged again with another value is refused and keeps the first one.
    assert error_code(lambda: client.log_param(run_id, "depth", 5)) == "INVALID_PARAMETER_VALUE"
    assert client.get_run(run_id).data.params["depth"] == "3"
    assert error_code(lambda: client.log_metric(run_id, "bad*name", 1.0)) == "INVALID_PARAMETER_VALUE"
    assert error_code(lambda: client.log_metric(run_id, "../up", 1.0)) == "INVALID_PARAMETER_VALUE"
    # The client cuts big batches itself; the server refuses one over MLflow's limits whole.
    too_many = [{"key": f"m{i}", "value": 1.0, "timestamp": 0, "step": 0} for i in range(1001)]
    status, body = post("runs/log-batch", {"run_id": run_id, "metrics": too_many})
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE", (status, body)
    assert "at most 1000 metrics" in body["message"], body
    mixed = [{"key": "ok", "value": 1.0, "timestamp": 0, "step": 0}, {"key": "bad*", "value": 1.0}]
    status, body = post("runs/log-batch", {"run_id": run_id, "metrics": mixed})
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE", (status, body)
    # A refused batch changes nothing.
    assert "m0" not in client.get_run(run_id).data.metrics
    assert "ok" not in client.get_run(run_id).data.metrics
    # A deleted run takes no more data.
    client.delete_run(run_id)
    assert error_code(lambda: client.log_metric(run_id, "x", 1.0)) == "INVALID_PARAMETER_VALUE"


def put_artifact(path, data):
    """PUTs bytes to an artifact path as the client would; returns (status, JSON answer)."""
    uri = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
    request = urllib.request.Request(
        f"{uri}/api/2.0/mlflow-artifacts/artifacts/{path}",
        data=data,
        method="PUT",
        headers={"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"},
    )
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_artifacts_go_up_list_and_come_back_down():
    import tempfile

    mlflow.set_experiment(unique("artifacts"))
    with tempfile.TemporaryDirectory() as tmp:
        one = os.path.join(tmp, "notes.txt")
        with open(one, "w") as f:
            f.write("first file\n")
        folder = os.path.join(tmp, "outputs")
        os.makedirs(os.path.join(folder, "deep"))
        with open(os.path.join(folder, "a.bin"), "wb") as f:
            f.write(bytes(range(256)) * 1000)
        with open(os.path.join(folder, "deep", "b.txt"), "w") as f:
            f.write("b")
        with mlflow.start_run() as run:
            run_id = run.info.run_id
            assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
            mlflow.log_artifact(one)
            mlflow.log_artifact(one, artifact_path="copies")
            mlflow.log_artifacts(folder, artifact_path="out")
            mlflow.log_text("hello, text", "texts/hello.txt")
            mlflow.log_dict({"lr": 0.1, "layers": [1, 2]}, "config.json")

        client = MlflowClient()
        top = {(f.path, f.is_dir) for f in client.list_artifacts(run_id)}
        assert top == {
            ("notes.txt", False),
            ("copies", True),
            ("out", True),
            ("texts", True),
            ("config.json", False),
        }, top
        out = {f.path: f for f in client.list_artifacts(run_id, "out")}
        assert set(out) == {"out/a.bin", "out/deep"}, out
        assert out["out/a.bin"].file_size == 256000 and out["out/deep"].is_dir
        assert client.list_artifacts(run_id, "nothing-here") == []

        down = os.path.join(tmp, "down")
        os.makedirs(down)
        got = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="out", dst_path=down)
        with open(os.path.join(got, "a.bin"), "rb") as f:
            assert f.read() == bytes(range(256)) * 1000
        with open(os.path.join(got, "deep", "b.txt")) as f:
            assert f.read() == "b"
        everything = client.download_artifacts(run_id, "", os.path.join(tmp, "all"))
        with open(os.path.join(everything, "texts", "hello.txt")) as f:
            assert f.read() == "hello, text"
        assert mlflow.artifacts.load_dict(f"runs:/{run_id}/config.json") == {
            "lr": 0.1,
            "layers": [1, 2],
        }
        assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes.txt") == "first file\n"

        # The same path again replaces the file.
        with mlflow.start_run(run_id=run_id):
            mlflow.log_text("second", "texts/hello.txt")
        assert mlflow.artifacts.load_text(f"runs:/{run_id}/texts/hello.txt") == "second"

        # A file that is not there is the client's usual error.
        try:
            mlflow.artifacts.load_text(f"runs:/{run_id}/missing.txt")
        except Exception:
            pass
        else:
            raise AssertionError("a missing artifact was answered")

    # Paths that leave the run are refused, whoever sends them.
    exp = client.get_run(run_id).info.experiment_id
    for bad in ["..%2F..%2Fescape.txt", "a%5Cb.txt", "x%00y.txt", "..%2Fother%2Fartifacts%2Fx"]:
        status, body = put_artifact(f"{exp}/{run_id}/artifacts/{bad}", b"nope")
        assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE", (bad, status, body)
    status, body = put_artifact(f"{exp}/{uuid.uuid4().hex}/artifacts/x.txt", b"nope")
    assert status == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST", (status, body)
    names = {f.path for f in client.list_artifacts(run_id)}
    assert not any("escape" in n or n == "x.txt" for n in names), names


def test_a_big_upload_is_not_held_by_the_body_limit():
    # Bigger than the API's whole-body limit for JSON calls (4 MiB): streamed to the store.
    import tempfile

    client = MlflowClient()
    run_id = client.create_run("0").info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        big = os.path.join(tmp, "weights.bin")
        block = os.urandom(1 << 20)
        with open(big, "wb") as f:
            for _ in range(6):
                f.write(block)
        client.log_artifact(run_id, big, "model")
        [info] = client.list_artifacts(run_id, "model")
        assert info.file_size == 6 << 20
        got = client.download_artifacts(run_id, "model/weights.bin", os.path.join(tmp, "d"))
        with open(got, "rb") as f:
            assert f.read(1 << 20) == block
        assert os.path.getsize(got) == 6 << 20


def test_an_interrupted_upload_leaves_nothing_behind():
    import socket
    from urllib.parse import urlparse

    client = MlflowClient()
    run = client.create_run("0").info
    uri = urlparse(os.environ["MLFLOW_TRACKING_URI"])
    path = f"/api/2.0/mlflow-artifacts/artifacts/{run.experiment_id}/{run.run_id}/artifacts/cut.bin"
    with socket.create_connection((uri.hostname, uri.port)) as s:
        s.sendall(
            (
                f"PUT {path} HTTP/1.1\r\nHost: {uri.netloc}\r\n"
                f"Authorization: Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}\r\n"
                "Content-Length: 10000000\r\n\r\n"
            ).encode()
            + b"x" * 300_000
        )
        time.sleep(0.2)
    # The daemon notices the cut connection; its temporary file goes, nothing is recorded.
    tmp = os.path.join(os.environ.get("PETRI_TEST_HOME", ""), "artifacts", "tmp")
    for _ in range(50):
        if not os.environ.get("PETRI_TEST_HOME") or not os.listdir(tmp):
            break
        time.sleep(0.1)
    if os.environ.get("PETRI_TEST_HOME"):
        assert os.listdir(tmp) == [], os.listdir(tmp)
    assert client.list_artifacts(run.run_id) == []


def test_artifacts_are_deleted():
    client = MlflowClient()
    run_id = client.create_run("0").info.run_id
    client.log_text(run_id, "x", "dir/x.txt")
    client.log_text(run_id, "y", "dir/sub/y.txt")
    client.log_text(run_id, "keep", "keep.txt")
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repo = get_artifact_repository(client.get_run(run_id).info.artifact_uri)
    repo.delete_artifacts("dir")
    assert [f.path for f in client.list_artifacts(run_id)] == ["keep.txt"]


def petri(*args):
    """Runs the petri CLI against the test's daemon; returns its stdout."""
    import subprocess

    env = dict(os.environ, PETRI_HOME=os.environ["PETRI_TEST_HOME"])
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_RUN_ID"):
        env.pop(var, None)
    done = subprocess.run(
        [os.environ["PETRI_TEST_BIN"], *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def wait_for_job(job_id):
    for _ in range(300):
        job = json.loads(petri("show", job_id, "--json"))
        if job["state"] in ("succeeded", "failed", "cancelled", "timed_out"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end: {job}")


def test_a_job_logs_to_its_own_run():
    if not os.environ.get("PETRI_TEST_BIN"):
        return
    code = (
        "import mlflow, os; "
        "print('run', os.environ['MLFLOW_RUN_ID'], 'token', os.environ['MLFLOW_TRACKING_TOKEN']); "
        "mlflow.log_metric('x', 1); mlflow.log_param('p', 'v')"
    )
    [job] = json.loads(petri("submit", "--name", "tracked-job", "--json", "--", sys.executable, "-c", code))
    ended = wait_for_job(job["id"])
    log = petri("logs", job["id"])
    assert ended["state"] == "succeeded", (ended, log)
    run_id = job["id"].replace("-", "")
    # The job got its run's id and its own token, derived for tracking only.
    assert f"run {run_id} token petri_job.{job['id']}." in log, log
    run = MlflowClient().get_run(run_id)
    assert run.data.metrics["x"] == 1 and run.data.params["p"] == "v"
    assert run.data.tags["petri.job_id"] == job["id"]
    assert run.info.run_name == "tracked-job" and run.info.status == "FINISHED"
    found = MlflowClient().search_runs(["0"], f"tags.`petri.job_id` = '{job['id']}'")
    assert [r.info.run_id for r in found] == [run_id]

    # The CLI: the job names its run, the run in the listing (by filter too), and shown by its id or its job.
    assert f"run        {run_id} (petri run show {job['number']})" in petri("show", job["id"])
    listed = json.loads(petri("run", "ls", "--experiment", "Default", "--json"))
    assert run_id in [r["info"]["run_id"] for r in listed]
    table = petri("run", "ls", "--filter", "params.p = 'v' and metrics.x = 1")
    assert run_id in table and "tracked-job" in table, table
    assert run_id not in petri("run", "ls", "--filter", "metrics.x > 1")
    for key in (run_id, str(job["number"]), job["id"]):
        shown = petri("run", "show", key)
        assert f"run:        {run_id}" in shown, shown
        assert f"job:        {job['number']} (tracked-job, succeeded)" in shown, shown
        assert "p  v" in shown and "x  1.0 (step 0)" in shown, shown
    shown = json.loads(petri("run", "show", run_id, "--json"))
    assert shown["info"]["run_id"] == run_id

    # Petri's own read-only routes show the same run (a read token is enough there).
    uri = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
    auth = {"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"}

    def v1(path):
        with urllib.request.urlopen(urllib.request.Request(f"{uri}/api/v1/{path}", headers=auth)) as a:
            return json.loads(a.read())

    assert v1(f"runs/{run_id}")["info"]["run_name"] == "tracked-job"
    assert [m["value"] for m in v1(f"runs/{run_id}/metrics/x")] == [1.0]
    page = v1("runs?experiment_id=0&filter=" + urllib.parse.quote("metrics.x = 1"))
    assert run_id in [r["info"]["run_id"] for r in page["runs"]]
    assert "Default" in [e["name"] for e in v1("experiments")]

    # A job that never tracks has no run.
    [quiet] = json.loads(petri("submit", "--json", "--", sys.executable, "-c", "pass"))
    assert wait_for_job(quiet["id"])["state"] == "succeeded"
    missing = quiet["id"].replace("-", "")
    assert error_code(lambda: MlflowClient().get_run(missing)) == "RESOURCE_DOES_NOT_EXIST"
    import subprocess

    env = dict(os.environ, PETRI_HOME=os.environ["PETRI_TEST_HOME"])
    done = subprocess.run(
        [os.environ["PETRI_TEST_BIN"], "run", "show", quiet["id"]],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0 and "has not tracked anything" in done.stderr, done
    assert "run " not in petri("show", quiet["id"])


def test_a_jobs_token_writes_only_its_runs_and_dies_with_the_job():
    if not os.environ.get("PETRI_TEST_BIN"):
        return
    client = MlflowClient()
    foreign = client.create_run("0", run_name="not-the-jobs").info.run_id
    code = (
        "import mlflow, os, sys\n"
        "from mlflow import MlflowClient\n"
        "from mlflow.exceptions import MlflowException\n"
        "c = MlflowClient()\n"
        "print('token', os.environ['MLFLOW_TRACKING_TOKEN'])\n"
        "mlflow.log_metric('own', 1)\n"
        "made = c.create_run('0', run_name='made-by-job').info.run_id\n"
        "c.log_metric(made, 'child', 2)\n"
        "print('made', made)\n"
        f"print('read', c.get_run('{foreign}').info.run_name)\n"
        "try:\n"
        f"    c.log_metric('{foreign}', 'x', 1)\n"
        "except MlflowException as e:\n"
        "    print('refused', e.error_code, e.get_http_status_code())\n"
        "sys.stdout.flush()\n"
        # Ends without end_run (as a crash would): the run ends with the job.
        "os._exit(3)\n"
    )
    [job] = json.loads(petri("submit", "--name", "scoped-job", "--json", "--", sys.executable, "-c", code))
    ended = wait_for_job(job["id"])
    log = petri("logs", job["id"])
    assert ended["state"] == "failed", (ended, log)
    assert "read not-the-jobs" in log, log
    assert "refused PERMISSION_DENIED 403" in log, log
    made = log.split("made ")[1].split()[0]
    assert client.get_run(made).data.metrics["child"] == 2
    assert client.get_run(made).data.tags["petri.job_id"] == job["id"]
    assert "x" not in client.get_run(foreign).data.metrics
    # The job's own run ended with the job, as FAILED (the job failed), with an end time.
    own = client.get_run(job["id"].replace("-", ""))
    for _ in range(100):
        if own.info.status != "RUNNING":
            break
        time.sleep(0.05)
        own = client.get_run(own.info.run_id)
    assert own.info.status == "FAILED" and own.info.end_time, own.info
    # The job has ended: its token is refused.
    token = log.split("token ")[1].split()[0]
    uri = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
    request = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/experiments/get?experiment_id=0",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        urllib.request.urlopen(request)
    except urllib.error.HTTPError as e:
        assert e.code == 401, e.code
        assert "has ended" in e.read().decode()
    else:
        raise AssertionError("an ended job's token was accepted")


def test_a_job_that_sets_its_experiment_tracks_there():
    if not os.environ.get("PETRI_TEST_BIN"):
        return
    # The usual script: name the experiment, then start a run. The job's run (MLFLOW_RUN_ID) is
    # made in that experiment, so the client resumes it instead of refusing a run of another one.
    name = unique("job-experiment")
    code = (
        "import mlflow; "
        f"mlflow.set_experiment({name!r}); "
        "r = mlflow.start_run(); mlflow.log_metric('loss', 0.5); mlflow.end_run(); "
        "print('ran', r.info.run_id)"
    )
    [job] = json.loads(petri("submit", "--name", "exp-job", "--json", "--", sys.executable, "-c", code))
    ended = wait_for_job(job["id"])
    log = petri("logs", job["id"])
    assert ended["state"] == "succeeded", (ended, log)
    run_id = job["id"].replace("-", "")
    assert f"ran {run_id}" in log, log
    experiment = MlflowClient().get_experiment_by_name(name)
    run = MlflowClient().get_run(run_id)
    assert run.info.experiment_id == experiment.experiment_id
    assert run.data.metrics["loss"] == 0.5

    # MLFLOW_EXPERIMENT_NAME in the job's environment works the same way.
    name = unique("job-env-experiment")
    MlflowClient().create_experiment(name)
    code = "import mlflow; mlflow.log_metric('acc', 0.75)"
    [job] = json.loads(petri(
        "submit", "--json", "--env", f"MLFLOW_EXPERIMENT_NAME={name}", "--", sys.executable, "-c", code,
    ))
    ended = wait_for_job(job["id"])
    assert ended["state"] == "succeeded", (ended, petri("logs", job["id"]))
    run = MlflowClient().get_run(job["id"].replace("-", ""))
    assert run.info.experiment_id == MlflowClient().get_experiment_by_name(name).experiment_id


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [2 * x for x in model_input]


def test_a_logged_model_is_stored_found_and_loaded():
    import mlflow.pyfunc

    mlflow.set_experiment(unique("models"))
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="doubler", python_model=Doubler(), pip_requirements=[])
    assert info.model_id.startswith("m-"), info.model_id
    client = MlflowClient()
    model = client.get_logged_model(info.model_id)
    assert model.name == "doubler" and model.source_run_id == run.info.run_id
    assert str(model.status) in ("READY", "LoggedModelStatus.READY"), model.status
    found = client.search_logged_models([run.info.experiment_id], filter_string="name = 'doubler'")
    assert [m.model_id for m in found] == [info.model_id]
    # Loaded back by the model's URI and by the run's.
    for uri in (f"models:/{info.model_id}", f"runs:/{run.info.run_id}/doubler"):
        loaded = mlflow.pyfunc.load_model(uri)
        assert list(loaded.predict([1, 2])) == [2, 4], uri
    assert error_code(lambda: client.get_logged_model("m-" + "0" * 32)) == "RESOURCE_DOES_NOT_EXIST"


def test_a_wrong_token_is_refused_with_401():
    uri = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
    url = f"{uri}/api/2.0/mlflow/experiments/get?experiment_id=0"
    for headers in ({"Authorization": "Bearer not-a-petri-token"}, {}):
        request = urllib.request.Request(url, headers=headers)
        try:
            urllib.request.urlopen(request)
        except urllib.error.HTTPError as e:
            assert e.code == 401, e.code
        else:
            raise AssertionError("a call without a valid token was answered")
    # The stock client with a wrong token raises instead of answering.
    good = os.environ["MLFLOW_TRACKING_TOKEN"]
    os.environ["MLFLOW_TRACKING_TOKEN"] = "not-a-petri-token"
    try:
        try:
            MlflowClient().get_experiment("0")
        except MlflowException as e:
            assert e.error_code == "UNAUTHENTICATED", e.error_code
            assert e.get_http_status_code() == 401
        else:
            raise AssertionError("the client's call with a wrong token was answered")
    finally:
        os.environ["MLFLOW_TRACKING_TOKEN"] = good


def main():
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN"):
        if not os.environ.get(var):
            sys.exit(f"{var} must name the daemon and a token (tests/mlflow/run.sh sets them)")
    sys.exit(0 if suite.run(globals(), f"mlflow {mlflow.__version__}") else 1)


if __name__ == "__main__":
    main()
