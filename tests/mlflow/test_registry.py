"""Petri's model registry, driven by the stock `mlflow` client.

Starts nothing: MLFLOW_TRACKING_URI and MLFLOW_TRACKING_TOKEN name a running daemon and a token
(tests/mlflow/run.sh sets them). Runs as plain python (each test_* function in turn) or under
pytest.
"""

import json
import os
import struct
import sys
import tempfile
import uuid

import mlflow

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import suite  # noqa: E402
from mlflow import MlflowClient
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


def safetensors_bytes(tensors):
    """A safetensors file of zero-filled F32 tensors: {name: shape}."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        n = 4
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"\0" * offset


def petri_model(folder, layers=(3, 4, 2), weights=None):
    """Writes a model in Petri's format (docs/model-format.md) into `folder`."""
    os.makedirs(folder, exist_ok=True)
    model = {
        "format": "petri-mlp",
        "version": 1,
        "task": "classification",
        "architecture": {"layers": list(layers), "activation": "relu", "output": "softmax"},
        "features": {"numeric": [{"name": f"f{i}", "mean": 0.0, "scale": 1.0} for i in range(layers[0])],
                     "categorical": [], "order": [f"f{i}" for i in range(layers[0])]},
        "inputs": [],
        "target": "y",
        "classes": [f"c{i}" for i in range(layers[-1])],
    }
    with open(os.path.join(folder, "model.json"), "w") as f:
        json.dump(model, f)
    if weights is None:
        weights = {}
        for i in range(len(layers) - 1):
            weights[f"layers.{i}.weight"] = [layers[i + 1], layers[i]]
            weights[f"layers.{i}.bias"] = [layers[i + 1]]
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(safetensors_bytes(weights))


def run_with_model(write, artifact_path="model"):
    """A run whose artifacts hold a model at `artifact_path`, written by `write(folder)`."""
    mlflow.set_experiment(unique("registry"))
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, artifact_path)
        write(folder)
        mlflow.log_artifacts(folder, artifact_path)
    return run.info.run_id


def test_register_a_run_artifact_then_versions_aliases_and_download():
    client = MlflowClient()
    name = unique("iris")
    run1 = run_with_model(petri_model)
    # A Petri-format folder is not an MLflow model (no MLmodel file), so the client's
    # register_model would look for a logged model; create_model_version takes the folder.
    client.create_registered_model(name)
    v1 = client.create_model_version(name, f"runs:/{run1}/model", run_id=run1)
    assert (v1.name, v1.version, v1.run_id) == (name, "1", run1), v1
    assert v1.status == "READY"
    run2 = run_with_model(petri_model)
    v2 = client.create_model_version(name, f"runs:/{run2}/model", run_id=run2)
    assert v2.version == "2"
    # The model exists once, with its latest version.
    model = client.get_registered_model(name)
    assert [v.version for v in model.latest_versions] == ["2"]
    # The alias is set, looked up, moved and looked up again.
    client.set_registered_model_alias(name, "champion", "1")
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    client.set_registered_model_alias(name, "champion", "2")
    got = client.get_model_version_by_alias(name, "champion")
    assert (got.version, got.run_id) == ("2", run2)
    assert client.get_registered_model(name).aliases == {"champion": "2"}
    # Loading by alias downloads version 2's files.
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(f"models:/{name}@champion", dst_path=tmp)
        assert sorted(os.listdir(path)) == ["model.json", "model.safetensors"], os.listdir(path)
    # Deleting the alias: looking it up is then an error.
    client.delete_registered_model_alias(name, "champion")
    assert error_code(lambda: client.get_model_version_by_alias(name, "champion")) == \
        "RESOURCE_DOES_NOT_EXIST"
    # Reserved alias names are refused as MLflow refuses them.
    assert error_code(lambda: client.set_registered_model_alias(name, "latest", "1")) == \
        "INVALID_PARAMETER_VALUE"


def test_an_mlflow_logged_model_of_another_flavour_is_kept():
    import mlflow.pyfunc

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [2 * x for x in model_input]

    mlflow.set_experiment(unique("registry"))
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="doubler", python_model=Doubler(),
                                       pip_requirements=[])
    name = unique("doubler")
    # By the logged model's URI and by the run's (the client finds the logged model).
    v = mlflow.register_model(info.model_uri, name)
    assert v.version == "1"
    v = mlflow.register_model(f"runs:/{run.info.run_id}/doubler", name)
    assert (v.version, v.run_id) == ("2", run.info.run_id), v
    MlflowClient().set_registered_model_alias(name, "champion", "2")
    for uri in (f"models:/{name}/1", f"models:/{name}@champion"):
        loaded = mlflow.pyfunc.load_model(uri)
        assert list(loaded.predict([1, 2])) == [2, 4], uri


def test_tags_descriptions_rename_search_and_delete():
    client = MlflowClient()
    name = unique("search")
    client.create_registered_model(name, tags={"team": "vision"}, description="first")
    assert error_code(lambda: client.create_registered_model(name)) == "RESOURCE_ALREADY_EXISTS"
    run = run_with_model(petri_model)
    v = client.create_model_version(name, f"runs:/{run}/model", run_id=run, tags={"stage": "qa"})
    assert v.version == "1" and v.tags == {"stage": "qa"}
    client.update_registered_model(name, description="second")
    client.update_model_version(name, "1", description="v1 notes")
    client.set_registered_model_tag(name, "owner", "ana")
    client.set_model_version_tag(name, "1", "checked", "yes")
    client.delete_model_version_tag(name, "1", "stage")
    model = client.get_registered_model(name)
    assert model.description == "second" and model.tags == {"team": "vision", "owner": "ana"}
    mv = client.get_model_version(name, "1")
    assert mv.description == "v1 notes" and mv.tags == {"checked": "yes"}
    # Searches by name, LIKE, tag and run.
    found = client.search_registered_models(filter_string=f"name = '{name}'")
    assert [m.name for m in found] == [name]
    found = client.search_registered_models(filter_string=f"name LIKE '{name[:-4]}%'")
    assert name in [m.name for m in found]
    found = client.search_registered_models(filter_string="tags.owner = 'ana'")
    assert name in [m.name for m in found]
    versions = client.search_model_versions(f"run_id = '{run}'")
    assert [(v.name, v.version) for v in versions] == [(name, "1")]
    versions = client.search_model_versions(f"name = '{name}'")
    assert [v.version for v in versions] == ["1"]
    assert error_code(lambda: client.search_registered_models(filter_string="bogus = 'x'")) == \
        "INVALID_PARAMETER_VALUE"
    # Renamed: the old name is gone, the version follows.
    client.rename_registered_model(name, name + "-new")
    assert error_code(lambda: client.get_registered_model(name)) == "RESOURCE_DOES_NOT_EXIST"
    assert client.get_model_version(name + "-new", "1").run_id == run
    client.delete_model_version(name + "-new", "1")
    assert error_code(lambda: client.get_model_version(name + "-new", "1")) == \
        "RESOURCE_DOES_NOT_EXIST"
    client.delete_registered_model(name + "-new")
    assert error_code(lambda: client.get_registered_model(name + "-new")) == \
        "RESOURCE_DOES_NOT_EXIST"


def test_errors_are_raised_as_mlflow_raises_them():
    client = MlflowClient()
    missing = unique("missing")
    assert error_code(lambda: client.get_registered_model(missing)) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: client.get_model_version(missing, "1")) == "RESOURCE_DOES_NOT_EXIST"
    name = unique("errs")
    client.create_registered_model(name)
    assert error_code(lambda: client.get_model_version(name, "7")) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: client.set_registered_model_alias(name, "champion", "7")) == \
        "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: client.create_model_version(name, "file:///etc/passwd")) == \
        "INVALID_PARAMETER_VALUE"
    assert error_code(lambda: client.create_model_version(name, "runs:/" + "0" * 32 + "/m")) == \
        "RESOURCE_DOES_NOT_EXIST"


def test_a_broken_petri_model_is_refused_at_registration():
    client = MlflowClient()
    name = unique("broken")
    client.create_registered_model(name)
    # The weights do not have the shapes model.json says.
    bad = run_with_model(lambda f: petri_model(f, weights={
        "layers.0.weight": [5, 3], "layers.0.bias": [5],
        "layers.1.weight": [2, 5], "layers.1.bias": [2]}))
    try:
        client.create_model_version(name, f"runs:/{bad}/model", run_id=bad)
    except MlflowException as e:
        # MLflow's client knows only its own codes: Petri's INVALID_MODEL leads the message.
        assert e.error_code == "INVALID_PARAMETER_VALUE", e.error_code
        assert "INVALID_MODEL" in e.message and "layers.0.weight" in e.message, e.message
    else:
        raise AssertionError("a broken model was registered")
    # Nothing was registered.
    assert client.search_model_versions(f"name = '{name}'") == []
    # A good one after it is version 1.
    good = run_with_model(petri_model)
    assert client.create_model_version(name, f"runs:/{good}/model", run_id=good).version == "1"


def test_stages_move_and_archive_as_mlflow_does():
    import warnings

    client = MlflowClient()
    name = unique("staged")
    client.create_registered_model(name)
    run = run_with_model(petri_model)
    for _ in range(3):
        client.create_model_version(name, f"runs:/{run}/model", run_id=run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stages are deprecated in MLflow; old code still uses them
        assert client.transition_model_version_stage(name, "1", "production").current_stage == "Production"
        client.transition_model_version_stage(name, "2", "Staging")
        moved = client.transition_model_version_stage(name, "3", "Production", archive_existing_versions=True)
        assert moved.current_stage == "Production"
        assert client.get_model_version(name, "1").current_stage == "Archived"
        assert client.get_model_version(name, "2").current_stage == "Staging"
        latest = {v.current_stage: v.version for v in client.get_latest_versions(name)}
        assert latest == {"Production": "3", "Staging": "2", "Archived": "1"}, latest
        assert [v.version for v in client.get_latest_versions(name, stages=["Staging"])] == ["2"]
        assert error_code(lambda: client.transition_model_version_stage(name, "1", "Live")) == \
            "INVALID_PARAMETER_VALUE"
        assert error_code(lambda: client.transition_model_version_stage(name, "9", "None")) == \
            "RESOURCE_DOES_NOT_EXIST"


def petri(*args, ok=True):
    """Runs the petri CLI against the test's daemon: (exit code, stdout, stderr)."""
    import subprocess

    env = dict(os.environ, PETRI_HOME=os.environ["PETRI_TEST_HOME"])
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN"):
        env.pop(var, None)
    done = subprocess.run(
        [os.environ["PETRI_TEST_BIN"], *args], env=env, capture_output=True, text=True, timeout=60
    )
    if ok:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def test_the_cli_registers_local_files_and_a_jobs_run_and_moves_aliases():
    if not os.environ.get("PETRI_TEST_BIN"):
        return
    client = MlflowClient()
    name = unique("cli")
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "m")
        petri_model(folder)
        os.makedirs(os.path.join(folder, "extra"))
        with open(os.path.join(folder, "extra", "notes.txt"), "w") as f:
            f.write("trained on iris\n")
        made = json.loads(petri(
            "model", "register", name, folder, "--tag", "team=ml", "--alias", "champion",
            "-d", "from disk", "--json").stdout)
        assert made["version"] == "1" and made["format"] == "petri-mlp", made
        assert made["runtime"] == "native", made
        assert sorted(f["path"] for f in made["files"]) == [
            "extra/notes.txt", "model.json", "model.safetensors"]
        # The stock client sees it, alias and all, and downloads its files.
        mv = client.get_model_version_by_alias(name, "champion")
        assert mv.version == "1" and mv.tags == {"team": "ml"} and mv.description == "from disk"
        out = mlflow.artifacts.download_artifacts(f"models:/{name}@champion", dst_path=os.path.join(tmp, "dl"))
        with open(os.path.join(out, "extra", "notes.txt")) as f:
            assert f.read() == "trained on iris\n"
        with open(os.path.join(out, "model.safetensors"), "rb") as a, \
                open(os.path.join(folder, "model.safetensors"), "rb") as b:
            assert a.read() == b.read()
        # A broken model from disk is refused, and nothing is registered.
        bad = os.path.join(tmp, "bad")
        petri_model(bad, weights={"layers.0.weight": [9, 9], "layers.0.bias": [9],
                                  "layers.1.weight": [2, 4], "layers.1.bias": [2]})
        refused = petri("model", "register", name, bad, ok=False)
        assert refused.returncode != 0 and "INVALID_MODEL" in refused.stderr, refused
    # From a run's artifact, then the alias moves; the history keeps every move.
    run = run_with_model(petri_model)
    second = json.loads(petri("model", "register", name, f"runs:/{run}/model", "--json").stdout)
    assert second["version"] == "2" and second["lineage"]["run"] == run, second
    petri("model", "alias", name, "champion", "2")
    shown = json.loads(petri("model", "show", name, "--json").stdout)
    moves = [(e["alias"], e["from_version"], e["to_version"]) for e in shown["alias_history"]]
    assert moves == [("champion", None, 1), ("champion", 1, 2)], moves
    assert "moved 1 → 2" in petri("model", "show", name).stdout
    assert "model.safetensors" in petri("model", "show", f"{name}@champion").stdout
    listed = petri("model", "ls").stdout
    assert name in listed and "@champion→2" in listed, listed
    petri("model", "alias", name, "champion", "--rm")
    assert client.get_registered_model(name).aliases == {}
    petri("model", "rm", f"{name}/1")
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["2"]
    petri("model", "rm", name)
    assert error_code(lambda: client.get_registered_model(name)) == "RESOURCE_DOES_NOT_EXIST"


def main():
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN"):
        if not os.environ.get(var):
            sys.exit(f"{var} must name the daemon and a token (tests/mlflow/run.sh sets them)")
    sys.exit(0 if suite.run(globals(), f"mlflow {mlflow.__version__}") else 1)


if __name__ == "__main__":
    main()
