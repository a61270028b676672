"""A replica of a Petri deployment whose model is an MLflow model (scikit-learn, or any pyfunc
flavour whose libraries the image has), run by the daemon in Petri's image: MLflow's own scoring
server (mlflow.pyfunc.scoring_server: /invocations, /ping, /health, /version) with the Open
Inference Protocol v2 beside it (/v2/...), and the replica's key (PETRI_MODEL_KEY, given at
launch) checked on every call but the health checks, so nothing reaches the model around
Petri's tokens.

Usage (by the daemon): python mlflow_server.py MODEL_DIR NAME VERSION PORT
"""

import os
import sys

import numpy as np
import pandas as pd
import uvicorn
from fastapi import Request
from fastapi.responses import JSONResponse

import mlflow.pyfunc
from mlflow.pyfunc import scoring_server

MODEL_DIR, NAME, VERSION, PORT = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
KEY = os.environ["PETRI_MODEL_KEY"]
OPEN = {"/v2/health/live", "/ping", "/health"}
# The one tensor that carries every column at once (the native models' name for it too).
MATRIX = "input-0"

model = mlflow.pyfunc.load_model(MODEL_DIR)
app = scoring_server.init(model)
schema = model.metadata.get_input_schema()
INPUTS = schema.input_names() if schema is not None and schema.has_input_names() else []
# The one unnamed tensor of a model logged from arrays (its dtype and shape), if that is what it takes.
TENSOR = (schema.inputs[0] if schema is not None and schema.is_tensor_spec() and len(schema.inputs) == 1
          and not INPUTS else None)


def error(status, message):
    return JSONResponse({"error": message}, status_code=status)


@app.middleware("http")
async def keyed(request: Request, call_next):
    if request.url.path not in OPEN and request.headers.get("authorization") != f"Bearer {KEY}":
        return error(401, "call this model through the Petri daemon (/v2/models/{name}/...), with a Petri token")
    return await call_next(request)


def datatype(array):
    kind = array.dtype.kind
    return {"f": "FP64", "i": "INT64", "u": "UINT64", "b": "BOOL"}.get(kind, "BYTES")


def tensor_type(dtype):
    """The OIP datatype of a numpy dtype: FP32, INT64…"""
    dtype = np.dtype(dtype)
    bits = dtype.itemsize * 8
    return {"f": f"FP{bits}", "i": f"INT{bits}", "u": f"UINT{bits}", "b": "BOOL"}.get(dtype.kind, "BYTES")


@app.get("/v2/health/live")
@app.get("/v2/health/ready")
async def health():
    return {"live": True, "ready": True}


@app.get("/v2/models/{name}")
async def metadata(name: str):
    if name != NAME:
        return error(404, f"this server serves `{NAME}`, not `{name}`")
    inputs = []
    if schema is not None and schema.is_tensor_spec():
        # A model logged from arrays: its tensor as a whole ([-1, k] for a matrix of k columns),
        # sent as one tensor named input-0 (or its own name).
        for spec in schema.inputs:
            shape = [-1 if d is None or d < 0 else int(d) for d in spec.shape] or [-1]
            inputs.append({"name": spec.name or MATRIX, "datatype": tensor_type(spec.type), "shape": shape})
    elif schema is not None:
        for spec in schema.inputs:
            kind = str(getattr(spec, "type", "")).lower()
            dt = "FP64" if ("double" in kind or "float" in kind) else (
                "INT64" if ("long" in kind or "integer" in kind) else (
                    "BOOL" if "boolean" in kind else "BYTES"))
            inputs.append({"name": getattr(spec, "name", None) or "input", "datatype": dt, "shape": [-1]})
    return {
        "name": NAME,
        "versions": [VERSION],
        "platform": "mlflow-" + "+".join(sorted(model.metadata.flavors)),
        "inputs": inputs,
        "outputs": [{"name": "predictions", "datatype": "BYTES", "shape": [-1]}],
    }


@app.get("/v2/models/{name}/ready")
async def model_ready(name: str):
    if name != NAME:
        return error(404, f"this server serves `{NAME}`, not `{name}`")
    return {"name": NAME, "ready": True}


def flatten(value):
    if isinstance(value, list):
        for item in value:
            yield from flatten(item)
    else:
        yield value


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request):
    if name != NAME:
        return error(404, f"this server serves `{NAME}`, not `{name}`")
    if "inference-header-content-length" in request.headers:
        return error(400, "this model takes JSON tensors (binary_data=False), not the binary extension")
    try:
        body = await request.json()
        tensors = body["inputs"]
    except Exception as e:  # noqa: BLE001 - any malformed body is the caller's
        return error(400, f"the body is not an inference request: {e}")
    try:
        columns = {}
        names = [t.get("name") for t in tensors]
        # Every column at once, in the signature's order: [rows, k], or [k] for one row. A model
        # whose signature names no columns takes one [rows, k] tensor by any name.
        unnamed = not INPUTS and len(tensors) == 1 and len(tensors[0].get("shape", [])) == 2
        if (MATRIX in names and MATRIX not in INPUTS) or unnamed:
            if len(tensors) != 1:
                return error(400, f"`{MATRIX}` holds every input at once; send it alone, or one tensor per input")
            t = tensors[0]
            shape = t.get("shape", [])
            if len(shape) == 1:
                shape = [1, shape[0]]
            if len(shape) != 2 or (INPUTS and shape[1] != len(INPUTS)):
                want = f"[rows, {len(INPUTS)}] ({', '.join(INPUTS)})" if INPUTS else "[rows, k]"
                return error(400, f"input `{t['name']}` has shape {t.get('shape')}; expected {want}")
            rows, width = shape
            data = list(flatten(t["data"]))
            if len(data) != rows * width:
                return error(400, f"input `{t['name']}` has shape {t['shape']} but its data holds {len(data)}")
            data = np.array(data).reshape(rows, width)
            if TENSOR is not None:
                # A model logged from arrays takes the array itself, in its own dtype.
                predictions = np.asarray(model.predict(data.astype(TENSOR.type)))
                return answer_of(predictions, body)
            for j, column in enumerate(INPUTS or range(width)):
                columns[column] = data[:, j]
        else:
            unknown = [n for n in names if n not in INPUTS] if INPUTS else []
            if unknown:
                return error(400, f"unknown input `{unknown[0]}`: the model takes {', '.join(INPUTS)}"
                                  f", or all of them as one [rows, {len(INPUTS)}] tensor `{MATRIX}`")
            for t in tensors:
                data = list(flatten(t["data"]))
                if len(data) != int(np.prod(t["shape"])):
                    return error(400, f"input `{t['name']}` has shape {t['shape']} but its data holds {len(data)}")
                columns[t["name"]] = data
        frame = pd.DataFrame(columns)
        if INPUTS:
            missing = [c for c in INPUTS if c not in frame.columns]
            if missing:
                return error(400, f"input `{missing[0]}` is missing; the model takes {', '.join(INPUTS)}")
            frame = frame[INPUTS]
        predictions = np.asarray(model.predict(frame))
    except Exception as e:  # noqa: BLE001 - the model's refusal is the caller's input
        return error(400, str(e))
    return answer_of(predictions, body)


def answer_of(predictions, body):
    out = {"name": "predictions", "shape": list(predictions.shape), "datatype": datatype(predictions),
           "data": predictions.reshape(-1).tolist()}
    answer = {"model_name": NAME, "model_version": VERSION, "outputs": [out]}
    if body.get("id") is not None:
        answer["id"] = body["id"]
    return answer


if __name__ == "__main__":
    uvicorn.run(app, host="0.0.0.0", port=PORT, log_level="warning")
