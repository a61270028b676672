"""train: fit a scikit-learn MLPClassifier (relu) on featurized rows; save it in Petri's model format.

    python train.py --train train.parquet --validation validation.parquet --transform transform.json \
        --hidden 32,16 --epochs 500 --learning-rate 0.01 --seed 7

Writes the folder model/ (model.safetensors + model.json, see docs/model-format.md), which applies
to RAW rows because it carries the featurization, and the values `train_accuracy` and
`validation_accuracy` to $PETRI_OUTPUTS.
"""

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import pandas as pd
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

sys.dont_write_bytecode = True  # no __pycache__ in the component's folder (it may be read-only)
import petri_model  # noqa: E402  (Petri's model format: this folder's copy of components/_lib/petri_model.py)


def fail(message):
    sys.exit(f"error: {message}")


def one_line(error):
    return " ".join(str(error).split())


def read_table(path):
    """A CSV or Parquet file as a DataFrame, chosen by the file's extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        fail(f"{path}: expected a .csv or .parquet file")
    try:
        return pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except Exception as e:
        fail(f"cannot read {path}: {one_line(e)}")


def set_output(name, value):
    """Writes an output value to $PETRI_OUTPUTS/<name>, where Petri picks it up."""
    outputs = Path(os.environ.get("PETRI_OUTPUTS", "outputs"))
    outputs.mkdir(parents=True, exist_ok=True)
    (outputs / name).write_text(str(value))


def whole_number(name, text, least):
    try:
        value = int(float(text))
    except (ValueError, OverflowError):
        value = least - 1
    if value < least:
        fail(f"{name} must be a whole number from {least}, not {text!r}")
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--validation", required=True)
    parser.add_argument("--transform", required=True)
    parser.add_argument("--target", default="")
    parser.add_argument("--hidden", default="16")
    parser.add_argument("--epochs", default="500")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--learning-rate", default="0.01")
    args = parser.parse_args()
    try:
        hidden = [int(h) for h in args.hidden.split(",")]
    except ValueError:
        hidden = [0]
    if min(hidden) < 1:
        fail(f"hidden must be units per layer like 16 or 32,16, not {args.hidden!r}")
    epochs = whole_number("epochs", args.epochs, least=1)
    seed = whole_number("seed", args.seed, least=0)
    try:
        learning_rate = float(args.learning_rate)
    except ValueError:
        learning_rate = 0
    if not learning_rate > 0:
        fail(f"learning_rate must be a number above 0, not {args.learning_rate!r}")

    try:
        transform = json.loads(Path(args.transform).read_text())
        features = list(transform["order"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        fail(f"cannot read the transform {args.transform} (featurize's transform.json): {one_line(e)}")
    target = args.target or transform.get("target")
    if not target:
        fail("no target: give the label column")
    train, validation = read_table(args.train), read_table(args.validation)
    for name, table in (("train", train), ("validation", validation)):
        missing = [c for c in features + [target] if c not in table.columns]
        if missing:
            fail(f"the {name} set lacks column {', '.join(missing)}; is it featurize's output?")

    mlp = MLPClassifier(
        hidden_layer_sizes=hidden,
        activation="relu",
        max_iter=epochs,
        learning_rate_init=learning_rate,
        random_state=seed,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            x_train, y_train = train[features].to_numpy(dtype="float64"), train[target].to_numpy()
            x_validation = validation[features].to_numpy(dtype="float64")
            y_validation = validation[target].to_numpy()
            mlp.fit(x_train, y_train)
        except (TypeError, ValueError) as e:
            fail(f"cannot train: {one_line(e)}")
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        print(f"note: training stopped after {epochs} epochs before converging; more epochs may help")

    train_accuracy = float(mlp.score(x_train, y_train))
    validation_accuracy = float(mlp.score(x_validation, y_validation))
    training = {
        "hidden": hidden,
        "epochs": epochs,
        "iterations": int(mlp.n_iter_),
        "learning_rate": learning_rate,
        "seed": seed,
        "train_rows": len(train),
        "validation_rows": len(validation),
        "train_accuracy": train_accuracy,
        "validation_accuracy": validation_accuracy,
        "library": f"scikit-learn {sklearn.__version__}",
    }
    try:
        petri_model.save("model", mlp, {**transform, "target": target}, training=training)
    except (petri_model.ModelError, KeyError, TypeError) as e:
        fail(f"cannot save the model: {one_line(e)}")
    set_output("train_accuracy", train_accuracy)
    set_output("validation_accuracy", validation_accuracy)
    print(
        f"train: {mlp.n_iter_} epochs, train accuracy {train_accuracy:.4f}, "
        f"validation accuracy {validation_accuracy:.4f} -> model/"
    )


if __name__ == "__main__":
    main()
