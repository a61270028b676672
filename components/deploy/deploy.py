"""deploy: register a model in Petri's model format with Petri's model registry, and export it.

    python deploy.py --model model/ --name iris-mlp

The model is always copied into export/. When the job has Petri's tracking environment
(MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN, MLFLOW_RUN_ID: every job gets them), its files are
uploaded to the job's run (model/) and registered under `name` as a new version, with plain HTTP
to the MLflow routes (the image need not have mlflow); the registry checks the model. Outputs:
`registered` (true/false), `version` (the new version, or empty), `uri` (models:/name/version,
or the export folder when it was not registered, with the reason printed).
"""

import argparse
import json
import os
import re
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path


def fail(message):
    sys.exit(f"error: {message}")


def set_output(name, value):
    """Writes an output value to $PETRI_OUTPUTS/<name>, where Petri picks it up."""
    outputs = Path(os.environ.get("PETRI_OUTPUTS", "outputs"))
    outputs.mkdir(parents=True, exist_ok=True)
    (outputs / name).write_text(str(value))


def call(method, route, message=None, data=None):
    """One call to Petri's MLflow API with the job's token; returns the JSON answer."""
    base = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
    headers = {"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"}
    url = f"{base}/api/2.0/{route}"
    if method == "GET" and message:
        url += "?" + urllib.parse.urlencode(message)
    elif message is not None:
        data = json.dumps(message).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as e:
        body = json.loads(e.read() or b"{}")
        raise RuntimeError(f"{body.get('error_code', e.code)}: {body.get('message', '')}") from e


def register(model, name, alias=""):
    """Uploads the model to the job's run and registers it; returns the new version."""
    run_id = os.environ["MLFLOW_RUN_ID"]
    run = call("GET", "mlflow/runs/get", {"run_id": run_id})["run"]
    experiment = run["info"]["experiment_id"]
    for file in sorted(p for p in model.rglob("*") if p.is_file()):
        rel = file.relative_to(model).as_posix()
        path = urllib.parse.quote(f"{experiment}/{run_id}/artifacts/model/{rel}")
        call("PUT", f"mlflow-artifacts/artifacts/{path}", data=file.read_bytes())
    try:
        call("POST", "mlflow/registered-models/create", {"name": name})
    except RuntimeError as e:
        if not str(e).startswith("RESOURCE_ALREADY_EXISTS"):
            raise
    version = call("POST", "mlflow/model-versions/create", {
        "name": name, "source": f"runs:/{run_id}/model", "run_id": run_id})
    version = version["model_version"]["version"]
    if alias:
        call("POST", "mlflow/registered-models/alias", {"name": name, "alias": alias, "version": version})
    return version


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--alias", default="")
    args = parser.parse_args()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.name):
        fail(f"name must be letters, digits, '.', '_' and '-', starting with a letter or digit (got {args.name!r})")
    model = Path(args.model)
    for file in ("model.json", "model.safetensors"):
        if not (model / file).is_file():
            fail(f"{model} is not a Petri model: {file} is missing")
    try:
        meta = json.loads((model / "model.json").read_text())
    except ValueError as e:
        fail(f"{model}/model.json is not JSON: {e}")
    if not isinstance(meta, dict) or (meta.get("format"), meta.get("version")) != ("petri-mlp", 1):
        fail(f"{model}/model.json is not in Petri's model format (format petri-mlp, version 1)")

    export = Path("export")
    # copyfile, not copy2: the input is read-only, the export should not be.
    shutil.copytree(model, export, copy_function=shutil.copyfile, dirs_exist_ok=True)
    if all(os.environ.get(v) for v in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_RUN_ID")):
        try:
            version = register(model, args.name, args.alias)
        except (OSError, RuntimeError, KeyError, ValueError) as e:
            why = f"the registry at {os.environ['MLFLOW_TRACKING_URI']} answered: {e}"
        else:
            set_output("registered", "true")
            set_output("version", version)
            set_output("uri", f"models:/{args.name}/{version}")
            moved = f", @{args.alias} now points at it" if args.alias else ""
            print(f"deploy: registered model {args.name} version {version} (models:/{args.name}/{version}){moved}; exported to {export.resolve()}")
            return
    else:
        why = "the job has no tracking environment (MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN, MLFLOW_RUN_ID)"
    set_output("registered", "false")
    set_output("version", "")
    set_output("uri", export.resolve())
    print(f"deploy: exported model {args.name} to {export.resolve()}; it is NOT registered: {why}")


if __name__ == "__main__":
    main()
