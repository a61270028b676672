"""Tests of Petri's built-in pipeline components, their model format and the Iris sample pipeline.

Each component runs as the pipeline engine runs it: its command comes from its component.yaml, with
`${{ component.dir }}` and `${{ inputs.KEY }}` filled in, in its own output folder (the working
directory, $PETRI_OUTPUT_DIR), its values written to $PETRI_OUTPUTS, its file inputs read-only
copies. The chain is driven by samples/pipelines/iris.yaml itself.

Run with pytest or plain python (Python with pandas, scikit-learn, numpy, duckdb, pyarrow,
safetensors and PyYAML, as in Petri's image petri/python:3.11):

    python components/tests/test_components.py
    docker run --rm -v "$PWD:$PWD" -w "$PWD" petri/python:3.11 python components/tests/test_components.py
"""

import atexit
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import load_file
from sklearn.neural_network import MLPClassifier

try:
    import yaml
except ImportError:
    sys.exit("error: these tests read component.yaml files with PyYAML: pip install pyyaml")


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML speaks YAML 1.1, where `on`, `off`, `yes` and `no` are booleans; Petri reads YAML 1.2
    (serde_yaml_ng), where only true and false are, so that join-profile's input `on` is a name."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml(path):
    return yaml.load(Path(path).read_text(), Loader=Yaml12Loader)


sys.dont_write_bytecode = True
ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ROOT / "components"
PIPELINE = ROOT / "samples" / "pipelines" / "iris.yaml"
sys.path.insert(0, str(COMPONENTS / "_lib"))
import petri_model  # noqa: E402

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
REFERENCE = re.compile(r"steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)")
SCRATCH = Path(tempfile.mkdtemp(prefix="petri-components-"))


def _remove_scratch():
    # Materialised inputs are read-only, as in Petri; make them writable to remove them.
    for path in [SCRATCH, *SCRATCH.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR)
    shutil.rmtree(SCRATCH, ignore_errors=True)


atexit.register(_remove_scratch)


def new_folder(name):
    """A fresh folder under this run's scratch folder."""
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=SCRATCH))


def component(name):
    return read_yaml(COMPONENTS / name / "component.yaml")


def render_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def materialise(path, folder):
    """A read-only copy of an input file or folder in the step's inputs/ folder, as Petri gives it."""
    path = Path(path)
    if not path.exists():
        return path  # for the tests of a missing file: the script must say so
    folder.mkdir(parents=True)
    copy = folder / path.name
    if path.is_dir():
        shutil.copytree(path, copy)
        for p in sorted(copy.rglob("*"), reverse=True):
            p.chmod(0o555 if p.is_dir() else 0o444)
        copy.chmod(0o555)
    else:
        shutil.copyfile(path, copy)
        copy.chmod(0o444)
    return copy


class Step:
    """A finished component run: exit code, stderr, stdout and outputs (paths and values)."""

    def __init__(self, proc, outputs):
        self.returncode, self.stdout, self.stderr, self.outputs = proc.returncode, proc.stdout, proc.stderr, outputs

    def value(self, key):
        return json.loads(self.outputs[key])


_alone = {}


def component_dir(name):
    """A copy of the component's folder on its own: in a container, Petri mounts only that folder,
    so a script that reached into a sibling folder would fail here as it would there."""
    if name not in _alone:
        _alone[name] = new_folder("component") / name
        shutil.copytree(COMPONENTS / name, _alone[name], ignore=shutil.ignore_patterns("__pycache__"))
    return _alone[name]


def run_component(name, inputs):
    """Runs component `name` with `inputs` the way the pipeline engine does."""
    spec = component(name)
    unknown = set(inputs) - set(spec["inputs"])
    assert not unknown, f"{name} has no input {', '.join(sorted(unknown))}"
    out = new_folder(name)
    values = {}
    for key, declared in spec["inputs"].items():
        if key in inputs:
            value = inputs[key]
        else:
            assert "default" in declared, f"{name}: the required input {key} is missing"
            value = declared["default"]
        if declared["type"] in ("file", "dir"):
            value = materialise(value, out / "inputs" / key)
        values[key] = value

    def fill(match):
        expression = match.group(1)
        if expression == "component.dir":
            return str(component_dir(name))
        assert expression.startswith("inputs."), f"{name}: unexpected expression {expression}"
        return render_value(values[expression.removeprefix("inputs.")])

    command = [EXPRESSION.sub(fill, str(arg)) for arg in spec["command"]]
    if command[0] == "python":
        command[0] = sys.executable
    outputs_dir = out.parent / f"{out.name}.outputs"  # not created: the scripts make it
    env = {
        **os.environ,
        "PETRI_OUTPUT_DIR": str(out),
        "PETRI_OUTPUTS": str(outputs_dir),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    proc = subprocess.run(command, cwd=out, env=env, capture_output=True, text=True, timeout=600)
    outputs = {}
    if proc.returncode == 0:
        for key, declared in spec["outputs"].items():
            if declared["type"] == "value":
                assert (outputs_dir / key).is_file(), f"{name} did not write its value {key}"
                outputs[key] = (outputs_dir / key).read_text()
            else:
                path = out / declared["path"]
                assert path.exists(), f"{name} did not write its {declared['type']} {declared['path']}"
                outputs[key] = path
    return Step(proc, outputs)


def param_defaults(pipeline):
    return {k: (v["default"] if isinstance(v, dict) else v) for k, v in pipeline.get("params", {}).items()}


def run_pipeline(path):
    """Runs a pipeline of component steps in file order (a tiny stand-in for Petri's engine);
    returns {step: Step} (None for a skipped step)."""
    pipeline = read_yaml(path)
    params = param_defaults(pipeline)
    steps = {}

    def resolve(expression):
        if expression.startswith("params."):
            return params[expression.removeprefix("params.")]
        match = REFERENCE.fullmatch(expression)
        assert match, f"unsupported expression {expression}"
        output = steps[match.group(1)].outputs[match.group(2)]
        if isinstance(output, Path):
            return str(output)
        try:
            return json.loads(output)
        except ValueError:
            return output

    def render(text):
        if not isinstance(text, str):
            return text
        whole = EXPRESSION.fullmatch(text.strip())
        if whole:
            return resolve(whole.group(1))
        return EXPRESSION.sub(lambda m: render_value(resolve(m.group(1))), text)

    for name, step in pipeline["steps"].items():
        when = step.get("when")
        if when is not None:
            condition = EXPRESSION.fullmatch(when.strip()).group(1)
            condition = REFERENCE.sub(lambda m: repr(resolve(m.group(0))), condition)
            condition = re.sub(r"params\.(\w+)", lambda m: repr(params[m.group(1)]), condition)
            if not eval(condition.replace("&&", " and ").replace("||", " or "), {"__builtins__": {}}):
                steps[name] = None
                continue
        spec = component(step["uses"])
        inputs = {}
        for key, value in step.get("with", {}).items():
            value = render(value)
            if spec["inputs"][key]["type"] in ("file", "dir") and not Path(value).is_absolute():
                value = str((path.parent / value).resolve())  # relative to the pipeline file
            inputs[key] = value
        result = run_component(step["uses"], inputs)
        assert result.returncode == 0, f"step {name} failed:\n{result.stderr}"
        steps[name] = result
    return steps


_chain = None


def iris_chain():
    """The sample pipeline's steps, run once for all the tests that look at them."""
    global _chain
    if _chain is None:
        _chain = run_pipeline(PIPELINE)
    return _chain


def test_sample_pipeline_matches_the_components():
    pipeline = read_yaml(PIPELINE)
    params = param_defaults(pipeline)
    assert (PIPELINE.parent / params["data"]).is_file()
    assert (PIPELINE.parent / params["profiles"]).is_file()
    seen = {}
    for name, step in pipeline["steps"].items():
        spec = component(step["uses"])
        assert spec["name"] == step["uses"]
        given = step.get("with", {})
        assert set(given) <= set(spec["inputs"]), f"{name}: unknown inputs {set(given) - set(spec['inputs'])}"
        required = {k for k, v in spec["inputs"].items() if "default" not in v}
        assert required <= set(given), f"{name}: missing inputs {required - set(given)}"
        texts = [str(v) for v in given.values()] + [str(step.get("when", ""))]
        for text in texts:
            for expression in EXPRESSION.findall(text):
                for ref_step, ref_output in REFERENCE.findall(expression):
                    assert ref_step in seen, f"{name} refers to {ref_step}, which is not an earlier step"
                    assert ref_output in seen[ref_step]["outputs"], f"{name}: {ref_step} has no output {ref_output}"
                for param in re.findall(r"params\.(\w+)", expression):
                    assert param in params, f"{name}: no param {param}"
        for need in step.get("needs", []):
            assert need in seen
        seen[name] = spec


def test_components_are_complete():
    names = sorted(p.parent.name for p in COMPONENTS.glob("*/component.yaml"))
    assert names == sorted(["extract", "join-profile", "featurize", "split", "train", "evaluate", "deploy"])
    for name in names:
        spec = component(name)
        # Petri reads component.yaml strictly (unknown keys are errors): a comma in an unquoted
        # description inside {...} would make one.
        assert set(spec) <= {"name", "description", "image", "inputs", "outputs", "command", "run", "env", "resources"}
        assert all(set(i) <= {"type", "default", "description"} for i in spec["inputs"].values()), name
        assert all(set(o) <= {"type", "path", "description"} for o in spec["outputs"].values()), name
        assert spec["name"] == name and spec["description"] and spec["image"] == "petri/python:3.11"
        command = " ".join(spec["command"])
        used = set(re.findall(r"\$\{\{\s*inputs\.(\w+)\s*\}\}", command))
        assert used == set(spec["inputs"]), f"{name}: inputs {set(spec['inputs']) ^ used} not both declared and used"
        script = spec["command"][1].replace("${{ component.dir }}", str(COMPONENTS / name))
        assert Path(script).is_file(), f"{name}: no script {script}"
        for key, declared in spec["inputs"].items():
            assert declared["type"] in ("string", "number", "boolean", "file", "dir"), f"{name}.{key}"
        for key, declared in spec["outputs"].items():
            assert declared["type"] in ("value", "file", "dir"), f"{name}.{key}"
            assert (declared["type"] == "value") == ("path" not in declared), f"{name}.{key}"
    reference = (COMPONENTS / "_lib" / "petri_model.py").read_bytes()
    for name in ("train", "evaluate"):
        copy = COMPONENTS / name / "petri_model.py"
        assert copy.read_bytes() == reference, f"{copy} differs: copy components/_lib/petri_model.py over it"


def test_the_iris_chain_trains_evaluates_and_exports_a_model():
    steps = iris_chain()
    assert steps["extract"].value("rows") == 150
    assert steps["join"].value("rows") == 147 and steps["join"].value("unmatched") == 3
    transform = json.loads(steps["featurize"].outputs["transform"].read_text())
    # The model learns from the four measurements alone (featurize's `columns`), so it is asked
    # about a flower by them; the profile's site and year stay in the joined table.
    assert [c["name"] for c in transform["numeric"]] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    assert transform["categorical"] == []
    assert transform["target"] == "species" and transform["id"] == "sample_id"
    featurized = pd.read_parquet(steps["featurize"].outputs["data"])
    assert list(featurized.columns) == ["sample_id", *transform["order"], "species"]
    assert np.allclose(featurized["sepal_length"].mean(), 0) and np.allclose(featurized["sepal_length"].std(ddof=0), 1)

    split = steps["split"]
    counts = [split.value(f"{part}_rows") for part in ("train", "validation", "test")]
    assert sum(counts) == 147 and counts[2] == len(pd.read_parquet(split.outputs["test"]))
    assert set(pd.read_parquet(split.outputs["test"])["species"]) == {"setosa", "versicolor", "virginica"}

    train = steps["train"]
    assert train.value("train_accuracy") >= 0.9 and train.value("validation_accuracy") >= 0.8
    meta = json.loads((train.outputs["model"] / "model.json").read_text())
    assert meta["format"] == "petri-mlp" and meta["version"] == 1 and meta["task"] == "classification"
    assert meta["architecture"] == {"layers": [4, 16, 3], "activation": "relu", "output": "softmax"}
    assert meta["inputs"][0] == {"name": "sepal_length", "type": "number"}
    assert meta["inputs"][-1] == {"name": "petal_width", "type": "number"}
    assert meta["classes"] == ["setosa", "versicolor", "virginica"] and meta["target"] == "species"

    evaluate = steps["evaluate"]
    assert evaluate.value("accuracy") >= 0.9, evaluate.stdout
    metrics = json.loads(evaluate.outputs["metrics"].read_text())
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert 0 <= metrics[key] <= 1 and metrics[key] == evaluate.value(key)
    confusion = evaluate.value("confusion")
    assert confusion == metrics["confusion"] and len(confusion) == 3 and all(len(row) == 3 for row in confusion)
    assert sum(map(sum, confusion)) == counts[2]
    assert metrics["classes"] == meta["classes"]
    # Each test row's prediction, by its id: what a served model must answer for the same flower.
    predictions = pd.read_csv(evaluate.outputs["predictions"])
    test = pd.read_parquet(split.outputs["test"])
    assert list(predictions.columns) == ["sample_id", "species", "predicted", "p_setosa", "p_versicolor", "p_virginica"]
    assert predictions["sample_id"].tolist() == test["sample_id"].tolist()
    assert (predictions["predicted"] == predictions["species"]).mean() == evaluate.value("accuracy")
    assert np.allclose(predictions[["p_setosa", "p_versicolor", "p_virginica"]].sum(axis=1), 1)

    deploy = steps["deploy"]
    assert deploy is not None, "deploy was skipped although accuracy >= 0.9"
    assert deploy.outputs["registered"] == "false"
    assert Path(deploy.outputs["uri"]) == deploy.outputs["export"].resolve()
    assert "not registered" in deploy.stdout.lower()
    assert petri_model.load(deploy.outputs["uri"]).classes == meta["classes"]


def check_format_against_sklearn(raw, featurized, transform, hidden, seed=0):
    """Fits an MLP on featurize's columns, saves it in Petri's format and checks that the format,
    applied to the RAW columns with numpy, gives scikit-learn's own probabilities."""
    features = transform["order"]
    mlp = MLPClassifier(hidden_layer_sizes=hidden, max_iter=500, learning_rate_init=0.01, random_state=seed)
    mlp.fit(featurized[features].to_numpy(), featurized[transform["target"]].to_numpy())
    model_dir = new_folder("model") / "model"
    meta = petri_model.save(model_dir, mlp, transform)

    tensors = load_file(str(model_dir / "model.safetensors"))
    assert sorted(tensors) == sorted(
        f"layers.{i}.{kind}" for i in range(len(hidden) + 1) for kind in ("weight", "bias")
    )
    for i, (weight, bias) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        assert tensors[f"layers.{i}.weight"].dtype == np.float32
        assert tensors[f"layers.{i}.weight"].shape == weight.T.shape
        assert np.array_equal(tensors[f"layers.{i}.weight"], weight.T.astype(np.float32))
        assert tensors[f"layers.{i}.bias"].shape == bias.shape
    assert meta["architecture"]["layers"] == [
        len(features),
        *hidden,
        1 if len(mlp.classes_) == 2 else len(mlp.classes_),
    ]

    # Raw rows in the featurized rows' order (the id ties them).
    raw = raw.set_index("sample_id").loc[featurized["sample_id"]].reset_index()
    ours = petri_model.predict_proba(model_dir, raw)
    theirs = mlp.predict_proba(featurized[features].to_numpy())
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 1e-5, np.abs(ours - theirs).max()
    assert list(petri_model.load(model_dir).predict(raw)) == list(mlp.predict(featurized[features].to_numpy()))

    # A category never seen in training sets none of its column's slots.
    unseen = raw.head(3).assign(site="west")
    slots = featurized.head(3)[features].copy()
    slots[[f for f in features if f.startswith("site_")]] = 0.0
    assert np.abs(petri_model.predict_proba(model_dir, unseen) - mlp.predict_proba(slots.to_numpy())).max() < 1e-5
    return meta


def test_the_model_format_applies_to_raw_columns_as_sklearn_does():
    steps = iris_chain()
    raw = pd.read_parquet(steps["join"].outputs["data"])
    # Every column of the joined table: five numbers and the text column `site`, one-hot.
    every = run_component("featurize", {"data": steps["join"].outputs["data"], "target": "species", "id": "sample_id"})
    assert every.returncode == 0, every.stderr
    featurized = pd.read_parquet(every.outputs["data"])
    transform = json.loads(every.outputs["transform"].read_text())
    assert [c["name"] for c in transform["numeric"]][-1] == "collected_year"
    assert transform["categorical"] == [{"name": "site", "categories": ["east", "north", "south"]}]
    for hidden in ([16], [32, 16]):
        meta = check_format_against_sklearn(raw, featurized, transform, hidden)
        assert meta["architecture"]["output"] == "softmax"


def test_two_classes_use_one_logistic_output():
    steps = iris_chain()
    raw = pd.read_parquet(steps["join"].outputs["data"])
    # featurize on the two species that are hardest to tell apart, through extract.
    extract = run_component("extract", {"input": steps["join"].outputs["data"], "filter": "species != 'setosa'"})
    assert extract.returncode == 0, extract.stderr
    binary = run_component("featurize", {"data": extract.outputs["data"], "target": "species", "id": "sample_id"})
    assert binary.returncode == 0, binary.stderr
    featurized = pd.read_parquet(binary.outputs["data"])
    transform = json.loads(binary.outputs["transform"].read_text())
    meta = check_format_against_sklearn(raw, featurized, transform, [8])
    assert meta["architecture"]["output"] == "logistic" and meta["classes"] == ["versicolor", "virginica"]


def test_evaluate_takes_raw_rows_too():
    steps = iris_chain()
    model = steps["train"].outputs["model"]
    raw = run_component("evaluate", {"model": model, "test": steps["join"].outputs["data"], "raw": True})
    assert raw.returncode == 0, raw.stderr
    assert raw.value("accuracy") >= 0.9
    assert sum(map(sum, raw.value("confusion"))) == 147


def test_integer_labels_and_numeric_features_only():
    # Two classes numbered 1 and 2, and only numeric features: featurized and raw tables then have
    # the same column names, and evaluate's `raw` says which one it is given.
    labelled = run_component(
        "extract",
        {
            "input": ROOT / "samples" / "data" / "iris.csv",
            "sql": "SELECT * EXCLUDE (species), CASE species WHEN 'versicolor' THEN 1 ELSE 2 END AS label "
            "FROM data WHERE species != 'setosa'",
        },
    )
    featurize = run_component("featurize", {"data": labelled.outputs["data"], "target": "label", "id": "sample_id"})
    split = run_component("split", {"data": featurize.outputs["data"], "target": "label", "seed": 1})
    train = run_component(
        "train",
        {
            "train": split.outputs["train"],
            "validation": split.outputs["validation"],
            "transform": featurize.outputs["transform"],
            "hidden": "8",
        },
    )
    assert train.returncode == 0, train.stderr
    meta = json.loads((train.outputs["model"] / "model.json").read_text())
    assert meta["classes"] == [1, 2] and meta["architecture"]["output"] == "logistic"
    featurized = run_component("evaluate", {"model": train.outputs["model"], "test": split.outputs["test"]})
    raw = run_component("evaluate", {"model": train.outputs["model"], "test": labelled.outputs["data"], "raw": True})
    assert featurized.returncode == 0 and raw.returncode == 0, featurized.stderr + raw.stderr
    assert featurized.value("accuracy") >= 0.85 and raw.value("accuracy") >= 0.9
    assert sum(map(sum, featurized.value("confusion"))) == split.value("test_rows")
    assert sum(map(sum, raw.value("confusion"))) == 100


def test_sql_and_columns_select_like_a_query():
    data = ROOT / "samples" / "data" / "iris.csv"
    sql = run_component(
        "extract", {"input": data, "sql": "-- the long ones\nSELECT * FROM data WHERE petal_length > 5"}
    )
    query = run_component("extract", {"input": data, "filter": "petal_length > 5", "columns": "sample_id,species"})
    assert sql.returncode == 0 and query.returncode == 0, sql.stderr + query.stderr
    assert sql.value("rows") == query.value("rows") == 42
    assert list(pd.read_parquet(query.outputs["data"]).columns) == ["sample_id", "species"]
    assert (
        pd.read_parquet(sql.outputs["data"])["sample_id"].tolist()
        == pd.read_parquet(query.outputs["data"])["sample_id"].tolist()
    )
    # Parquet in, Parquet out.
    again = run_component("extract", {"input": query.outputs["data"], "filter": "species == 'virginica'"})
    assert again.returncode == 0 and 0 < again.value("rows") < 42


def test_bad_input_fails_with_one_clear_line():
    steps = iris_chain()
    iris = ROOT / "samples" / "data" / "iris.csv"
    profiles = ROOT / "samples" / "data" / "iris_profiles.csv"
    folder = new_folder("bad")
    corrupt = folder / "corrupt.parquet"
    corrupt.write_text("not parquet\n")
    text = folder / "notes.txt"
    text.write_text("sepal_length\n1\n")
    left = run_component("join-profile", {"samples": iris, "profile": profiles, "on": "sample_id", "how": "left"})
    assert left.returncode == 0 and left.value("rows") == 150
    # A featurization with the profile's columns (site one-hot), which iris.csv alone lacks.
    every = run_component("featurize", {"data": steps["join"].outputs["data"], "target": "species", "id": "sample_id"})
    assert every.returncode == 0, every.stderr
    narrow = run_component("extract", {"input": iris, "columns": "sepal_length,species"})
    assert narrow.returncode == 0, narrow.stderr

    cases = [
        ("extract", {"input": iris, "columns": "species,petal_size"}, "no column petal_size"),
        ("extract", {"input": iris, "filter": "petal_size > 1"}, "petal_size"),
        ("extract", {"input": iris, "filter": "sepal_length > 100"}, "empty"),
        ("extract", {"input": iris, "sql": "SELECT petal_size FROM data"}, "petal_size"),
        ("extract", {"input": iris, "filter": "sepal_length > 1", "sql": "SELECT 1"}, "either filter or sql"),
        ("extract", {"input": folder / "missing.csv"}, "no such file"),
        ("extract", {"input": corrupt}, "cannot read"),
        ("extract", {"input": text}, "expected a .csv or .parquet"),
        ("join-profile", {"samples": iris, "profile": profiles, "on": "site"}, "no column 'site'"),
        ("join-profile", {"samples": iris, "profile": profiles, "on": "sample_id", "how": "outer"}, "inner or left"),
        ("featurize", {"data": iris, "target": "kind"}, "no column kind"),
        ("featurize", {"data": left.outputs["data"], "target": "species"}, "missing values"),
        ("featurize", {"data": iris, "target": "sample_id", "numeric": "species"}, "not numeric"),
        ("featurize", {"data": iris, "target": "species", "columns": "sepal_length,petal_size"}, "no column petal_size"),
        (
            "featurize",
            {"data": iris, "target": "species", "columns": "sepal_length", "numeric": "petal_width"},
            "not among columns",
        ),
        ("split", {"data": iris, "ratios": "0.5,0.5"}, "ratios"),
        ("split", {"data": iris, "target": "kind"}, "no column kind"),
        (
            "train",
            {
                "train": steps["split"].outputs["train"],
                "validation": steps["split"].outputs["validation"],
                "transform": steps["featurize"].outputs["transform"],
                "hidden": "wide",
            },
            "hidden",
        ),
        (
            "train",
            {"train": iris, "validation": iris, "transform": every.outputs["transform"]},
            "lacks column",
        ),
        ("evaluate", {"model": folder, "test": steps["split"].outputs["test"]}, "not a Petri model"),
        ("evaluate", {"model": steps["train"].outputs["model"], "test": narrow.outputs["data"]}, "sepal_width"),
        ("deploy", {"model": folder, "name": "iris"}, "not a Petri model"),
        ("deploy", {"model": steps["train"].outputs["model"], "name": "my model"}, "name must be"),
    ]
    for name, inputs, expected in cases:
        result = run_component(name, inputs)
        message = result.stderr.strip()
        assert result.returncode != 0, f"{name} {inputs}: exited 0"
        assert "Traceback" not in message and "\n" not in message, f"{name} {inputs}: not one line:\n{message}"
        assert message.startswith("error: ") and expected in message, f"{name} {inputs}: {message!r}"


def main():
    tests = [(name, test) for name, test in globals().items() if name.startswith("test_") and callable(test)]
    failed = 0
    for name, test in tests:
        try:
            test()
            print(f"ok    {name}")
        except Exception:
            failed += 1
            traceback.print_exc()
            print(f"FAIL  {name}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
