"""deploy: export a model in Petri's model format for serving.

    python deploy.py --model model/ --name iris-mlp

Petri's model registry is not there yet, so this copies the model into export/ and writes the
values `registered` (false) and `uri` (the export folder) to $PETRI_OUTPUTS. Once the registry
exists, this step will register the model under `name` instead.
"""

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path


def fail(message):
    sys.exit(f"error: {message}")


def set_output(name, value):
    """Writes an output value to $PETRI_OUTPUTS/<name>, where Petri picks it up."""
    outputs = Path(os.environ.get("PETRI_OUTPUTS", "outputs"))
    outputs.mkdir(parents=True, exist_ok=True)
    (outputs / name).write_text(str(value))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--name", required=True)
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
    set_output("registered", "false")
    set_output("uri", export.resolve())
    print(
        f"deploy: exported model {args.name} to {export.resolve()}; it is NOT registered, "
        "because Petri's model registry is not there yet"
    )


if __name__ == "__main__":
    main()
