"""Petri's model format ("petri-mlp", version 1): save a scikit-learn MLPClassifier and apply it.

A model is a folder with two files (docs/model-format.md describes them completely):

- model.safetensors: float32 tensors `layers.<i>.weight` [out, in] and `layers.<i>.bias` [out];
- model.json: the architecture, the featurization of the raw columns, the inputs, the classes.

`save` writes the folder from a fitted MLPClassifier and the featurization that `featurize` wrote
(transform.json). `predict_proba` applies a saved model to a table of RAW columns with numpy only,
exactly as Petri's serving does natively, so a model that passes here serves the same.

This is the reference copy. The train and evaluate components carry identical copies in their own
folders, because Petri mounts only a component's own folder into its container and hashes only that
folder for the step cache; components/tests checks that the copies are the same as this file.
"""

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from safetensors.numpy import save as safetensors_bytes

FORMAT = "petri-mlp"
VERSION = 1
WEIGHTS = "model.safetensors"
METADATA = "model.json"


class ModelError(Exception):
    """A model folder that cannot be read or applied, or a table the model cannot take."""


def _input_type(values):
    """The JSON type of a categorical column's categories: string, integer, number or boolean."""
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "integer"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "number"
    return "string"


def feature_order(features):
    """The feature vector's layout: numeric columns first, then one slot per category."""
    order = [c["name"] for c in features["numeric"]]
    for c in features["categorical"]:
        order += [f"{c['name']}_{v}" for v in c["categories"]]
    return order


def save(model_dir, mlp, transform, training=None):
    """Writes `mlp` (a fitted MLPClassifier) and `transform` (featurize's transform.json, as a
    dict) to `model_dir` in Petri's model format; returns the model.json written.

    `training` is an optional dict of facts about the training (hyperparameters, accuracies)
    that is stored as `training` in model.json, for people; nothing reads it to predict.
    """
    if mlp.activation != "relu":
        raise ModelError(f"only relu networks are supported, not {mlp.activation}")
    if mlp.out_activation_ not in ("softmax", "logistic"):
        raise ModelError(f"only single-label classifiers are supported ({mlp.out_activation_})")
    features = {
        "numeric": [
            {"name": c["name"], "mean": float(c["mean"]), "scale": float(c["scale"])} for c in transform["numeric"]
        ],
        "categorical": [{"name": c["name"], "categories": list(c["categories"])} for c in transform["categorical"]],
        "order": list(transform["order"]),
    }
    if feature_order(features) != features["order"]:
        raise ModelError("the transform's feature order is not numeric columns, then categories")
    layers = [mlp.coefs_[0].shape[0]] + [w.shape[1] for w in mlp.coefs_]
    if layers[0] != len(features["order"]):
        raise ModelError(f"the network takes {layers[0]} features, the transform makes {len(features['order'])}")

    tensors = {}
    for i, (weight, bias) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        tensors[f"layers.{i}.weight"] = np.ascontiguousarray(weight.T, dtype=np.float32)
        tensors[f"layers.{i}.bias"] = np.ascontiguousarray(bias, dtype=np.float32)

    meta = {
        "format": FORMAT,
        "version": VERSION,
        "task": "classification",
        "architecture": {"layers": layers, "activation": "relu", "output": mlp.out_activation_},
        "features": features,
        "inputs": [{"name": c["name"], "type": "number"} for c in features["numeric"]]
        + [{"name": c["name"], "type": _input_type(c["categories"])} for c in features["categorical"]],
        "target": transform["target"],
        "classes": mlp.classes_.tolist(),
    }
    if training:
        meta["training"] = training

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / WEIGHTS).write_bytes(safetensors_bytes(tensors, metadata={"format": FORMAT, "version": str(VERSION)}))
    (model_dir / METADATA).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


class Model:
    """A model loaded from a folder in Petri's model format."""

    def __init__(self, model_dir):
        model_dir = Path(model_dir)
        try:
            self.meta = json.loads((model_dir / METADATA).read_text())
            tensors = load_file(str(model_dir / WEIGHTS))
        except FileNotFoundError as e:
            raise ModelError(f"{model_dir} is not a Petri model: {Path(e.filename).name} is missing") from e
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot read the model in {model_dir}: {e}") from e
        if self.meta.get("format") != FORMAT or self.meta.get("version") != VERSION:
            raise ModelError(
                f"{model_dir} holds format {self.meta.get('format')!r} version "
                f"{self.meta.get('version')!r}; this reader knows {FORMAT!r} version {VERSION}"
            )
        count = len(self.meta["architecture"]["layers"]) - 1
        try:
            self.layers = [(tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"]) for i in range(count)]
        except KeyError as e:
            raise ModelError(f"{model_dir}/{WEIGHTS} has no tensor {e}") from e
        self.features = self.meta["features"]
        self.classes = self.meta["classes"]
        self.target = self.meta["target"]

    @property
    def inputs(self):
        """The raw column names the model reads, in order."""
        return [i["name"] for i in self.meta["inputs"]]

    def featurize(self, raw):
        """The feature matrix (float64, [rows, features]) of a DataFrame of raw columns."""
        missing = [name for name in self.inputs if name not in raw.columns]
        if missing:
            raise ModelError(f"the table lacks the model's input column(s) {', '.join(missing)}")
        parts = []
        for c in self.features["numeric"]:
            try:
                values = raw[c["name"]].to_numpy(dtype=np.float64)
            except (TypeError, ValueError) as e:
                raise ModelError(f"column {c['name']} must hold numbers: {e}") from e
            parts.append(((values - c["mean"]) / c["scale"])[:, None])
        for c in self.features["categorical"]:
            values = raw[c["name"]].to_numpy(dtype=object)
            # One slot per known category; a category the model never saw sets none of them.
            parts.append(np.stack([values == v for v in c["categories"]], axis=1).astype(np.float64))
        return np.hstack(parts) if parts else np.zeros((len(raw), 0))

    def forward(self, x):
        """Class probabilities ([rows, classes]) from a feature matrix in the model's order."""
        h = np.asarray(x, dtype=np.float64)
        for i, (weight, bias) in enumerate(self.layers):
            h = h @ weight.T.astype(np.float64) + bias.astype(np.float64)
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        if self.meta["architecture"]["output"] == "logistic":
            # Two classes, one output unit: its sigmoid is the probability of classes[1].
            p = 1.0 / (1.0 + np.exp(-h[:, 0]))
            return np.stack([1.0 - p, p], axis=1)
        h = h - h.max(axis=1, keepdims=True)
        e = np.exp(h)
        return e / e.sum(axis=1, keepdims=True)

    def predict_proba(self, raw):
        """Class probabilities ([rows, classes], in the order of `classes`) of raw rows."""
        return self.forward(self.featurize(raw))

    def predict(self, raw):
        """The most probable class label of each raw row."""
        return np.asarray(self.classes)[self.predict_proba(raw).argmax(axis=1)]


def load(model_dir):
    """Loads a model folder; raises ModelError when it is not one this code can apply."""
    return Model(model_dir)


def predict_proba(model_dir, raw):
    """Applies the model saved in `model_dir` to a DataFrame of raw columns; returns the class
    probabilities [rows, classes] in the order of model.json's `classes`."""
    return load(model_dir).predict_proba(raw)
