"""evaluate: score a model in Petri's model format on a test set.

    python evaluate.py --model model/ --test test.parquet --target species

The model is applied through the format (model.json + model.safetensors, with numpy), as serving
applies it, never through a pickled scikit-learn object. The test set holds featurize's columns
(split's test set), or with --raw true the raw columns the pipeline started from, which the model
featurizes itself. (A table cannot tell which: a numeric feature keeps its column's name.) Writes metrics.json and the values `accuracy`,
`precision`, `recall`, `f1` (macro averages), `roc_auc` (one-vs-rest macro average with more than two
classes; null when the test set lacks a class) and `confusion` (a JSON list of lists, rows = true
labels, columns = predicted labels, both in the model's class order) to $PETRI_OUTPUTS, and
predictions.csv: each test row's other columns (an id, when the test set has one), its label, the
predicted class and the probability of each class (`p_<class>`), for comparing with a served model.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--target", default="")
    parser.add_argument("--raw", default="false", choices=["true", "false"])
    args = parser.parse_args()

    try:
        model = petri_model.load(args.model)
    except petri_model.ModelError as e:
        fail(one_line(e))
    test = read_table(args.test)
    target = args.target or model.target
    if target not in test.columns:
        fail(f"the test set has no column {target}; it has: {', '.join(map(str, test.columns))}")
    if test[target].isna().any():
        fail(f"the test set's column {target} has missing labels")

    try:
        if args.raw == "true":
            proba = model.predict_proba(test)
        else:
            # Already featurized (featurize → split → here): only the network is applied.
            missing = [c for c in model.features["order"] if c not in test.columns]
            if missing:
                fail(f"the test set lacks the feature column(s) {', '.join(missing)}; for raw rows, set raw to true")
            proba = model.forward(test[model.features["order"]].to_numpy(dtype="float64"))
    except (petri_model.ModelError, TypeError, ValueError) as e:
        fail(one_line(e))

    classes = model.classes
    y_true = test[target].to_numpy()
    y_pred = np.asarray(classes)[proba.argmax(axis=1)]
    scores = {
        "accuracy": metrics.accuracy_score(y_true, y_pred),
        "precision": metrics.precision_score(y_true, y_pred, labels=classes, average="macro", zero_division=0),
        "recall": metrics.recall_score(y_true, y_pred, labels=classes, average="macro", zero_division=0),
        "f1": metrics.f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0),
    }
    try:
        if len(classes) == 2:
            scores["roc_auc"] = metrics.roc_auc_score(y_true == classes[1], proba[:, 1])
        else:
            scores["roc_auc"] = metrics.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=classes)
    except ValueError as e:
        print(f"note: no ROC AUC: {one_line(e)}")
        scores["roc_auc"] = None
    scores = {k: None if v is None else float(v) for k, v in scores.items()}
    confusion = metrics.confusion_matrix(y_true, y_pred, labels=classes).tolist()

    features = set(model.features["order"]) | set(model.inputs)
    kept = [c for c in test.columns if c not in features and c != target]
    predictions = test[kept + [target]].copy()
    predictions["predicted"] = y_pred
    for j, c in enumerate(classes):
        predictions[f"p_{c}"] = proba[:, j]
    predictions.to_csv("predictions.csv", index=False, float_format="%.9g")

    report = {**scores, "confusion": confusion, "classes": classes, "rows": len(test), "target": target}
    Path("metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, value in scores.items():
        set_output(name, json.dumps(value))
    set_output("confusion", json.dumps(confusion))
    print(
        f"evaluate: {len(test)} rows, accuracy {scores['accuracy']:.4f}, f1 {scores['f1']:.4f}, "
        f"roc_auc {'-' if scores['roc_auc'] is None else format(scores['roc_auc'], '.4f')}"
    )


if __name__ == "__main__":
    main()
