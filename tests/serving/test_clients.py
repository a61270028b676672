"""A served model called with stock clients: tritonclient's HTTP client (OIP v2, binary tensors
and JSON) and MLflow's scoring formats, through the daemon's address and token."""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import suite  # noqa: E402

HOME = os.environ["PETRI_TEST_HOME"]
BASE = open(os.path.join(HOME, "daemon.addr")).read().strip()
TOKEN = open(os.path.join(HOME, "token")).read().strip()


def auth():
    """A fresh header dict each call: tritonclient adds its own headers to the dict it is given."""
    return {"Authorization": f"Bearer {TOKEN}"}


def petri(*args):
    env = dict(os.environ, PETRI_HOME=HOME)
    done = subprocess.run([os.environ["PETRI_TEST_BIN"], *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def write_model(folder):
    """Two numbers and a site in, 'low' or 'high' out: high when x + y > 0 (site adds nothing)."""
    os.makedirs(folder, exist_ok=True)
    model = {
        "format": "petri-mlp", "version": 1, "task": "classification",
        "architecture": {"layers": [4, 2], "activation": "relu", "output": "softmax"},
        "features": {"numeric": [{"name": "x", "mean": 0.0, "scale": 1.0},
                                 {"name": "y", "mean": 0.0, "scale": 1.0}],
                     "categorical": [{"name": "site", "categories": ["a", "b"]}],
                     "order": ["x", "y", "site_a", "site_b"]},
        "inputs": [{"name": "x", "type": "number"}, {"name": "y", "type": "number"},
                   {"name": "site", "type": "string"}],
        "target": "level", "classes": ["low", "high"],
    }
    with open(os.path.join(folder, "model.json"), "w") as f:
        json.dump(model, f)
    weights = {"layers.0.weight": ([2, 4], [-1, -1, 0, 0, 1, 1, 0, 0]),
               "layers.0.bias": ([2], [0, 0])}
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(safetensors_with(weights))


def safetensors_with(tensors):
    """safetensors bytes of F32 tensors given as name -> (shape, values)."""
    import struct
    header, data = {}, b""
    for name, (shape, values) in tensors.items():
        raw = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def unserve(name):
    """Unserves `name` and waits until its replicas' jobs have ended (and the daemon has removed
    their containers), so nothing outlives the test's daemon."""
    d = json.loads(petri("model", "endpoints", "--json"))
    jobs = [r["job"] for x in d if x["name"] == name for r in x["replicas"]]
    petri("model", "unserve", name)
    for job in jobs:
        for _ in range(300):
            if json.loads(petri("show", job, "--json"))["state"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"replica {job} of {name} did not stop")
    # The daemon removes a container once it has recorded its end.
    for _ in range(100):
        left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=petri.home={HOME}"],
                              capture_output=True, text=True).stdout.strip()
        if not left:
            return
        time.sleep(0.1)
    raise AssertionError(f"containers of {name} were left behind: {left}")


def setup():
    with tempfile.TemporaryDirectory() as tmp:
        write_model(os.path.join(tmp, "m"))
        petri("model", "register", "sign", os.path.join(tmp, "m"), "--alias", "champion")
    d = json.loads(petri("model", "serve", "sign@champion", "--wait", "--json"))
    assert d["state"] == "ready", d


def client():
    return httpclient.InferenceServerClient(url=BASE.removeprefix("http://"))


def inputs(x, y, site, binary=True):
    out = []
    for name, values, dtype in (("x", x, np.float32), ("y", y, np.float32)):
        t = httpclient.InferInput(name, [len(values)], "FP32")
        t.set_data_from_numpy(np.array(values, dtype=dtype), binary_data=binary)
        out.append(t)
    s = httpclient.InferInput("site", [len(site)], "BYTES")
    s.set_data_from_numpy(np.array([v.encode() for v in site], dtype=np.object_), binary_data=binary)
    out.append(s)
    return out


def test_tritonclient_health_and_metadata():
    c = client()
    assert c.is_server_live(headers=auth()) and c.is_server_ready(headers=auth())
    assert c.is_model_ready("sign", headers=auth())
    meta = c.get_model_metadata("sign", headers=auth())
    assert [i["name"] for i in meta["inputs"]] == ["x", "y", "site"], meta
    assert meta["parameters"]["classes"] == ["low", "high"]


def test_tritonclient_infers_with_binary_and_json_tensors():
    c = client()
    for binary in (True, False):
        r = c.infer("sign", inputs([1.0, -2.0, 0.5], [0.5, 1.0, -3.0], ["a", "b", "zz"], binary),
                    headers=auth())
        assert [v.decode() for v in r.as_numpy("label")] == ["high", "low", "low"], binary
        p = r.as_numpy("probabilities")
        assert p.shape == (3, 2) and np.allclose(p.sum(axis=1), 1.0)
        # high = softmax([-(x+y), x+y])[1]
        assert abs(p[0, 1] - 1 / (1 + np.exp(-3.0))) < 1e-6, p
    # Binary outputs when asked.
    r = c.infer("sign", inputs([2.0], [2.0], ["a"]), headers=auth(),
                outputs=[httpclient.InferRequestedOutput("probabilities", binary_data=True),
                         httpclient.InferRequestedOutput("label", binary_data=True)])
    assert r.as_numpy("label")[0] == b"high"
    assert abs(r.as_numpy("probabilities")[0, 1] - 1 / (1 + np.exp(-8.0))) < 1e-6


def status_of(call):
    try:
        call()
    except InferenceServerException as e:
        return e.status(), e.message()
    raise AssertionError("no error")


def test_tritonclient_errors_say_what_was_expected():
    c = client()
    bad = inputs([1.0], [1.0], ["a"])[:2]  # no site
    status, message = status_of(lambda: c.infer("sign", bad, headers=auth()))
    assert status == "400" and "`site` (BYTES) is missing" in message, (status, message)
    wrong = inputs([1.0], [1.0], ["a"])
    wrong[0] = httpclient.InferInput("x", [1], "BYTES")
    wrong[0].set_data_from_numpy(np.array([b"1"], dtype=np.object_))
    status, message = status_of(lambda: c.infer("sign", wrong, headers=auth()))
    assert status == "400" and "expected FP64" in message, (status, message)
    misnamed = inputs([1.0], [1.0], ["a"])
    misnamed[1] = httpclient.InferInput("z", [1], "FP32")
    misnamed[1].set_data_from_numpy(np.array([1.0], dtype=np.float32))
    status, message = status_of(lambda: c.infer("sign", misnamed, headers=auth()))
    assert status == "400" and "unknown input `z`" in message and "y (FP64)" in message, (status, message)
    status, message = status_of(lambda: c.infer("nope", inputs([1.0], [1.0], ["a"]), headers=auth()))
    assert status == "404", (status, message)
    status, message = status_of(lambda: c.infer("sign", inputs([1.0], [1.0], ["a"]),
                                                headers={"Authorization": "Bearer wrong"}))
    assert status == "401", (status, message)


def post(path, body, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method="POST",
                                 headers=dict(auth(), **{"Content-Type": "application/json"}))
    try:
        with urllib.request.urlopen(req, timeout=30) as a:
            return a.status, json.loads(a.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_mlflow_scoring_formats():
    cols = ["x", "y", "site"]
    rows = [[1.0, 0.5, "a"], [-2.0, 1.0, "b"]]
    for body in (
        {"dataframe_split": {"columns": cols, "data": rows}},
        {"dataframe_records": [dict(zip(cols, r)) for r in rows]},
        {"inputs": {"x": [1.0, -2.0], "y": [0.5, 1.0], "site": ["a", "b"]}},
        {"instances": [dict(zip(cols, r)) for r in rows]},
    ):
        status, answer = post("/v2/models/sign/invocations", body)
        assert status == 200 and answer == {"predictions": ["high", "low"]}, (body, status, answer)
    status, answer = post("/v2/models/sign/invocations", {"dataframe_records": [{"x": 1, "q": 2}]})
    assert status == 400 and "unknown column `q`" in answer["error"], answer


def test_an_oversized_body_is_413_in_the_protocols_shape():
    # Over the daemon's limit (`max_body`, 4 MiB by default).
    status, answer = post("/v2/models/sign/infer", None, raw=b" " * (5 << 20))
    assert status == 413 and "error" in answer, (status, answer)


def replica_pid(name):
    """The pid of the model server a deployment's replica runs (a `petri model-server` process
    of this home)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            args = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        # The server itself (`petri model-server …`), not the job's shim that started it.
        if len(args) > 1 and args[1] == b"model-server" and name.encode() in args \
                and any(HOME.encode() in a for a in args):
            return int(entry)
    raise AssertionError(f"no model server of {name} runs")


def test_a_killed_replica_is_restarted_and_meanwhile_answers_503_with_a_reason():
    import signal
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]},
                       {"name": "y", "shape": [1], "datatype": "FP32", "data": [1.0]},
                       {"name": "site", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}
    assert post("/v2/models/sign/infer", body)[0] == 200
    os.kill(replica_pid("sign"), signal.SIGKILL)
    seen, began = [], time.monotonic()
    while time.monotonic() - began < 90:
        asked = time.monotonic()
        status, answer = post("/v2/models/sign/infer", body)
        # Never a hang: every answer comes at once, a 503 with what is going on, or the class.
        assert time.monotonic() - asked < 5, "a request to a dead replica hung"
        assert status in (200, 503), (status, answer)
        if status == 503:
            assert "restart" in answer["error"] or "ready" in answer["error"], answer
        seen.append(status)
        if status == 200 and 503 in seen:
            break
        time.sleep(0.05)
    assert 503 in seen and seen[-1] == 200, seen
    assert answer["outputs"][0]["data"] == ["high"], answer


TRAIN_SKLEARN = """
import mlflow
from sklearn.datasets import load_iris
from sklearn.neural_network import MLPClassifier
X, y = load_iris(return_X_y=True, as_frame=True)
X.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
m = MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=0).fit(X, y)
# MLflow 3's default (skops) refuses an MLPClassifier's optimizer unless told to trust it.
mlflow.sklearn.log_model(m, name="model", input_example=X.head(2), registered_model_name="iris-sk",
                         serialization_format="cloudpickle")
# Version 2: the same network fitted on arrays, as much code does; its signature is one tensor.
a = MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=0).fit(X.to_numpy(), y)
mlflow.sklearn.log_model(a, name="model", input_example=X.to_numpy()[:2], registered_model_name="iris-sk",
                         serialization_format="cloudpickle")
"""


def predict_matrix(c, name):
    """Two iris rows as one [2, 4] tensor named input-0: the MLflow model's predictions."""
    m = httpclient.InferInput("input-0", [2, 4], "FP64")
    m.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]), binary_data=False)
    r = c.infer(name, [m], headers=auth(),
                outputs=[httpclient.InferRequestedOutput("predictions", binary_data=False)])
    return r.as_numpy("predictions").tolist()


def test_an_mlflow_sklearn_model_logged_by_a_container_job_is_served_in_a_container():
    """The researcher's path: a job in Petri's image logs and registers a scikit-learn model
    with the stock client; Petri serves it with MLflow's own scoring server, behind the same
    routes and tokens."""
    job = json.loads(petri("submit", "--json", "--image", "petri/python:3.11", "--name", "train-sk",
                           "--", "python", "-c", TRAIN_SKLEARN))[0]
    for _ in range(600):
        shown = json.loads(petri("show", job["id"], "--json"))
        if shown["state"] in ("succeeded", "failed", "cancelled", "timed_out"):
            break
        time.sleep(0.2)
    assert shown["state"] == "succeeded", (shown, petri("logs", job["id"]))
    version = json.loads(petri("model", "show", "iris-sk/1", "--json"))
    assert version["runtime"] == "container" and "sklearn" in version["flavours"], version
    assert version["lineage"]["job"] == job["id"], version["lineage"]
    d = json.loads(petri("model", "serve", "iris-sk/1", "--wait", "--json"))
    try:
        assert d["state"] == "ready", d
        cols = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        status, answer = post("/v2/models/iris-sk/invocations",
                              {"dataframe_split": {"columns": cols, "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}})
        assert status == 200 and answer == {"predictions": [0, 2]}, (status, answer)
        c = client()
        tensors = []
        for name, v in zip(cols, ([5.1, 6.7], [3.5, 3.0], [1.4, 5.2], [0.2, 2.3])):
            t = httpclient.InferInput(name, [2], "FP64")
            t.set_data_from_numpy(np.array(v, dtype=np.float64), binary_data=False)
            tensors.append(t)
        r = c.infer("iris-sk", tensors, headers=auth(),
                    outputs=[httpclient.InferRequestedOutput("predictions", binary_data=False)])
        assert r.as_numpy("predictions").tolist() == [0, 2]
        # Every column at once, as one tensor named input-0; a tensor of another name is refused.
        assert predict_matrix(c, "iris-sk") == [0, 2]
        status, answer = post("/v2/models/iris-sk/infer", {"inputs": [
            {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]})
        assert status == 400 and "unknown input `x`" in answer["error"], (status, answer)
    finally:
        unserve("iris-sk")
    # Logged from arrays: the metadata gives the tensor whole, [-1, 4], and that is what it takes
    # (as the web UI's try-it form sends it).
    d = json.loads(petri("model", "serve", "iris-sk/2", "--name", "iris-np", "--wait", "--json"))
    try:
        assert d["state"] == "ready", d
        c = client()
        meta = c.get_model_metadata("iris-np", headers=auth())
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}], meta
        assert predict_matrix(c, "iris-np") == [0, 2]
        status, answer = post("/v2/models/iris-np/infer", {"inputs": [
            {"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [5.1, 3.5, 1.4]}]})
        assert status == 400, (status, answer)
    finally:
        unserve("iris-np")


def onnx_mlp(path, w1, b1, w2, b2):
    """An MLP as PyTorch exports one: Gemm (transB) → Relu → Gemm → Softmax."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.asarray(a, dtype=np.float32), name)
             for name, a in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2))]
    nodes = [
        helper.make_node("Gemm", ["input", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", len(w1[0])])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", len(w2)])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, path)


def test_an_onnx_mlp_is_served_natively():
    import subprocess as sp

    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(size=(8, 4)), rng.normal(size=8)
    w2, b2 = rng.normal(size=(3, 8)), rng.normal(size=3)
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "g"))
        onnx_mlp(os.path.join(tmp, "g", "model.onnx"), w1, b1, w2, b2)
        made = json.loads(petri("model", "register", "graph", os.path.join(tmp, "g"), "--json"))
        assert made["format"] == "onnx" and made["runtime"] == "native", made
        # Not an ONNX file: refused at registration, nothing registered.
        os.makedirs(os.path.join(tmp, "bad"))
        with open(os.path.join(tmp, "bad", "model.onnx"), "wb") as f:
            f.write(b"not a graph")
        env = dict(os.environ, PETRI_HOME=HOME)
        done = sp.run([os.environ["PETRI_TEST_BIN"], "model", "register", "graph",
                       os.path.join(tmp, "bad")], env=env, capture_output=True, text=True)
        assert done.returncode != 0 and "INVALID_MODEL" in done.stderr, done
    d = json.loads(petri("model", "serve", "graph", "--wait", "--json"))
    try:
        assert d["state"] == "ready", d
        x = rng.normal(size=(5, 4)).astype(np.float32)
        h = np.maximum(x @ np.asarray(w1, np.float32).T + np.asarray(b1, np.float32), 0)
        z = h @ np.asarray(w2, np.float32).T + np.asarray(b2, np.float32)
        want = np.exp(z - z.max(axis=1, keepdims=True))
        want /= want.sum(axis=1, keepdims=True)
        t = httpclient.InferInput("input", [5, 4], "FP32")
        t.set_data_from_numpy(x)
        r = client().infer("graph", [t], headers=auth())
        got = r.as_numpy("probs")
        assert got.shape == (5, 3) and np.allclose(got, want, atol=1e-5), (got, want)
        status, answer = post("/v2/models/graph/invocations", {"inputs": x[:2].tolist()})
        assert status == 200 and np.allclose(answer["predictions"], want[:2], atol=1e-5), answer
        bad = httpclient.InferInput("input", [1, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3), np.float32))
        status, message = status_of(lambda: client().infer("graph", [bad], headers=auth()))
        assert status == "400" and "expected [rows, 4]" in message, (status, message)
        # The graph's input goes by its name.
        status, answer = post("/v2/models/graph/infer", {"inputs": [
            {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})
        assert status == 400 and "unknown input `x`" in answer["error"] \
            and "`input` (FP32, [rows, 4])" in answer["error"], (status, answer)
        # Its metadata gives each output's shape past the rows.
        meta = client().get_model_metadata("graph", headers=auth())
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}], meta
        assert meta["outputs"] == [{"name": "probs", "datatype": "FP32", "shape": [-1, 3]}], meta
    finally:
        unserve("graph")


def test_a_pytorch_export_is_served_with_the_rows_of_its_requests_batched():
    """An MLP exported by PyTorch's own exporter (crates/ml/tests/fixtures, made by
    make_torch_mlp.py): PyTorch's answers through the daemon, and requests sent at once run as one
    batch in the replica."""
    import shutil
    import threading

    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates",
                            "ml", "tests", "fixtures")
    with open(os.path.join(fixtures, "torch_mlp.json")) as f:
        want = json.load(f)
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "t"))
        shutil.copy(os.path.join(fixtures, "torch_mlp.onnx"), os.path.join(tmp, "t", "model.onnx"))
        petri("model", "register", "torchmlp", os.path.join(tmp, "t"))
    # A wait long enough that requests sent together always meet in one batch.
    d = json.loads(petri("model", "serve", "torchmlp", "--max-delay", "300ms", "--wait", "--json"))
    try:
        assert d["state"] == "ready" and d["max_delay"] == "300ms", d
        # The daemon found the graph's rows apart: its front batches the requests.
        import glob
        assert glob.glob(os.path.join(HOME, "deployments", "torchmlp", "*",
                                      ".petri-graph-io.json")), "no graph front"
        rows = np.array(want["rows"], np.float32)
        answers, start = [None] * len(rows), threading.Barrier(len(rows), timeout=60)

        def ask(i):
            try:
                t = httpclient.InferInput("features", [1, 4], "FP32")
                t.set_data_from_numpy(rows[i:i + 1])
                start.wait()
                answers[i] = client().infer("torchmlp", [t], headers=auth())
            except Exception as e:  # noqa: BLE001 - reported below
                answers[i] = e

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(rows))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        failed = [a for a in answers if a is None or isinstance(a, Exception)]
        assert not failed, failed
        got = np.concatenate([a.as_numpy("probabilities") for a in answers])
        assert np.allclose(got, want["probabilities"], atol=1e-5), (got, want)
        # The replica's batches, as the daemon counted them: fewer than the requests.
        req = urllib.request.Request(BASE + "/metrics", headers=auth())
        with urllib.request.urlopen(req, timeout=30) as a:
            metrics = a.read().decode()
        count = [ln for ln in metrics.splitlines()
                 if ln.startswith("petri_serving_batch_rows_count") and "torchmlp" in ln]
        total = [ln for ln in metrics.splitlines()
                 if ln.startswith("petri_serving_batch_rows_sum") and "torchmlp" in ln]
        assert count and total, metrics
        requests, rows_summed = float(count[0].split()[-1]), float(total[0].split()[-1])
        # Each request counts the rows of the batch it ran in: more than one row on average.
        assert requests == len(rows) and rows_summed > requests, (count, total)
        # A sub-millisecond wait is refused, not rounded away.
        env = dict(os.environ, PETRI_HOME=HOME)
        done = subprocess.run([os.environ["PETRI_TEST_BIN"], "model", "serve", "torchmlp", "--name",
                               "t2", "--max-delay", "500us"], env=env, capture_output=True, text=True,
                              timeout=120)
        if done.returncode == 0:
            unserve("t2")
        assert done.returncode != 0 and "finer than a millisecond" in done.stderr, done
    finally:
        unserve("torchmlp")


def main():
    setup()
    try:
        passed = suite.run(globals(), "serving clients")
    finally:
        unserve("sign")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
