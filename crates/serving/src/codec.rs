//! The protocols' bodies, to and from the model's rows: the Open Inference Protocol v2's tensor
//! JSON (`inputs`/`outputs`, KServe's and Triton's REST form) and MLflow's scoring formats
//! (`dataframe_split`, `dataframe_records`, `inputs`, `instances`). Both become [`Columns`]: the
//! raw values of each of the model's input columns, row by row. Errors say what was expected.

use std::borrow::Cow;
use std::collections::HashMap;

use petri_ml::Prediction;
use petri_ml::spec::Input;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A batch of rows by column, as a request carried them: the values of each of the model's
/// inputs, in the model's order (a model has a handful: a scan finds one faster than a hash).
#[derive(Clone, Debug, PartialEq)]
pub struct Columns<'a> {
    pub rows: usize,
    inputs: &'a [Input],
    values: Vec<Vec<Value>>,
}

impl petri_ml::Rows for Columns<'_> {
    fn len(&self) -> usize {
        self.rows
    }
    fn value(&self, row: usize, column: &str) -> Option<&Value> {
        let i = self.inputs.iter().position(|i| i.name == column)?;
        self.values.get(i).and_then(|v| v.get(row))
    }
}

/// A request the protocol refuses (HTTP 400), with what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

fn bad(msg: impl Into<String>) -> BadRequest {
    BadRequest(msg.into())
}

/// The model's inputs as a request should name them, for error messages.
fn expected(inputs: &[Input]) -> String {
    inputs
        .iter()
        .map(|i| format!("{} ({})", i.name, oip_type(&i.kind)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The OIP datatype of a column's values.
pub fn oip_type(kind: &str) -> &'static str {
    match kind {
        "number" => "FP64",
        "integer" => "INT64",
        "boolean" => "BOOL",
        _ => "BYTES",
    }
}

// ---- Open Inference Protocol v2 ----------------------------------------------------------------

/// `POST /v2/models/{name}/infer`. Its names borrow the body's bytes where they can (a name
/// with no escapes in it).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferRequest<'a> {
    #[serde(default, borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(borrow)]
    pub inputs: Vec<InferInput<'a>>,
    #[serde(default, borrow)]
    pub outputs: Vec<RequestedOutput<'a>>,
}

/// One input tensor. Its `data` is in the JSON, or, with the binary data extension, in the
/// bytes after it (`parameters.binary_data_size`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferInput<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    pub shape: Vec<i64>,
    #[serde(borrow)]
    pub datatype: Cow<'a, str>,
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub data: Value,
}

/// An output the caller asks for (by default: all of them).
#[derive(Clone, Debug, Deserialize)]
pub struct RequestedOutput<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(default)]
    pub parameters: Option<Value>,
}

/// One output tensor of a response.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OutputTensor {
    pub name: Cow<'static, str>,
    pub shape: Vec<usize>,
    pub datatype: &'static str,
    pub data: TensorData,
}

/// An output tensor's elements: JSON values (labels), or FP32 numbers, written as the shortest
/// decimal that reads back as the same `f32`.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum TensorData {
    Values(Vec<Value>),
    Floats(Vec<f32>),
}

/// The answer to an inference request.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct InferResponse<'a> {
    pub model_name: &'a str,
    pub model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    pub outputs: Vec<OutputTensor>,
}

/// Parses an inference request's body. With the binary tensor data extension (Triton's, which
/// `tritonclient` uses by default), the JSON is the first `header_len` bytes (the
/// `Inference-Header-Content-Length` header) and each input that declares
/// `parameters.binary_data_size` takes that many bytes after it, in order: numbers little-endian,
/// BOOL one byte each, BYTES each a 4-byte little-endian length and the bytes.
pub fn parse_infer(body: &[u8], header_len: Option<usize>) -> Result<InferRequest<'_>, BadRequest> {
    let (json, mut rest) = match header_len {
        Some(n) if n <= body.len() => (&body[..n], &body[n..]),
        Some(n) => {
            return Err(bad(format!(
                "Inference-Header-Content-Length is {n} but the body holds {} bytes",
                body.len()
            )));
        }
        None => (body, &body[body.len()..]),
    };
    let mut req: InferRequest = serde_json::from_slice(json)
        .map_err(|e| bad(format!("the body is not an inference request: {e}")))?;
    for t in &mut req.inputs {
        let size = t
            .parameters
            .as_ref()
            .and_then(|p| p.get("binary_data_size"))
            .and_then(Value::as_u64);
        match size {
            Some(n) => {
                let n = n as usize;
                if n > rest.len() {
                    return Err(bad(format!(
                        "input `{}` declares {n} bytes of binary data but {} remain",
                        t.name,
                        rest.len()
                    )));
                }
                t.data = Value::Array(decode_binary(&t.name, &t.datatype, &rest[..n])?);
                rest = &rest[n..];
            }
            None if t.data.is_null() => {
                return Err(bad(format!(
                    "input `{}` has no data (neither `data` nor parameters.binary_data_size)",
                    t.name
                )));
            }
            None => {}
        }
    }
    Ok(req)
}

fn decode_binary(name: &str, datatype: &str, b: &[u8]) -> Result<Vec<Value>, BadRequest> {
    fn chunks<const N: usize>(name: &str, b: &[u8]) -> Result<Vec<[u8; N]>, BadRequest> {
        if !b.len().is_multiple_of(N) {
            return Err(bad(format!(
                "input `{name}`: {} bytes of binary data is not a whole number of {N}-byte values",
                b.len()
            )));
        }
        Ok(b.chunks_exact(N)
            .map(|c| c.try_into().expect("exact chunks"))
            .collect())
    }
    let float = |x: f64| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number);
    Ok(match datatype {
        "BOOL" => b.iter().map(|x| Value::Bool(*x != 0)).collect(),
        "UINT8" => b.iter().map(|x| json!(x)).collect(),
        "INT8" => b.iter().map(|x| json!(*x as i8)).collect(),
        "UINT16" => chunks::<2>(name, b)?
            .into_iter()
            .map(|c| json!(u16::from_le_bytes(c)))
            .collect(),
        "INT16" => chunks::<2>(name, b)?
            .into_iter()
            .map(|c| json!(i16::from_le_bytes(c)))
            .collect(),
        "UINT32" => chunks::<4>(name, b)?
            .into_iter()
            .map(|c| json!(u32::from_le_bytes(c)))
            .collect(),
        "INT32" => chunks::<4>(name, b)?
            .into_iter()
            .map(|c| json!(i32::from_le_bytes(c)))
            .collect(),
        "UINT64" => chunks::<8>(name, b)?
            .into_iter()
            .map(|c| json!(u64::from_le_bytes(c)))
            .collect(),
        "INT64" => chunks::<8>(name, b)?
            .into_iter()
            .map(|c| json!(i64::from_le_bytes(c)))
            .collect(),
        "FP32" => chunks::<4>(name, b)?
            .into_iter()
            .map(|c| float(f32::from_le_bytes(c) as f64))
            .collect(),
        "FP64" => chunks::<8>(name, b)?
            .into_iter()
            .map(|c| float(f64::from_le_bytes(c)))
            .collect(),
        "BYTES" => {
            let mut out = Vec::new();
            let mut rest = b;
            while !rest.is_empty() {
                if rest.len() < 4 {
                    return Err(bad(format!("input `{name}`: a BYTES element is cut short")));
                }
                let n = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
                let Some(value) = rest.get(4..4 + n) else {
                    return Err(bad(format!("input `{name}`: a BYTES element is cut short")));
                };
                let text = std::str::from_utf8(value).map_err(|_| {
                    bad(format!("input `{name}`: a BYTES element is not UTF-8 text"))
                })?;
                out.push(Value::String(text.to_string()));
                rest = &rest[4 + n..];
            }
            out
        }
        other => {
            return Err(bad(format!(
                "input `{name}`: binary data of datatype {other} is not supported; send it as JSON"
            )));
        }
    })
}

/// Which outputs the caller wants as binary data: all of them with the request's
/// `parameters.binary_data_output`, else those asked with `parameters.binary_data`.
fn binary_outputs(req: &InferRequest) -> Vec<String> {
    let all = req
        .parameters
        .as_ref()
        .and_then(|p| p.get("binary_data_output"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if all {
        return OUTPUTS.iter().map(|s| s.to_string()).collect();
    }
    req.outputs
        .iter()
        .filter(|o| {
            o.parameters
                .as_ref()
                .and_then(|p| p.get("binary_data"))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        })
        .map(|o| o.name.to_string())
        .collect()
}

fn encode_binary(t: &OutputTensor) -> Vec<u8> {
    let values = match &t.data {
        TensorData::Floats(x) => return x.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Values(v) => v,
    };
    let mut out = Vec::new();
    for v in values {
        match t.datatype {
            "FP32" => out.extend((v.as_f64().unwrap_or(f64::NAN) as f32).to_le_bytes()),
            "FP64" => out.extend(v.as_f64().unwrap_or(f64::NAN).to_le_bytes()),
            "INT64" => out.extend(v.as_i64().unwrap_or(0).to_le_bytes()),
            "BOOL" => out.push(u8::from(v.as_bool().unwrap_or(false))),
            _ => {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.extend((text.len() as u32).to_le_bytes());
                out.extend(text.as_bytes());
            }
        }
    }
    out
}

/// The response's body: JSON, or with binary outputs the JSON header and the outputs' bytes
/// after it, and the header's length (the `Inference-Header-Content-Length` to send).
pub fn encode_response(req: &InferRequest, resp: &InferResponse) -> (Vec<u8>, Option<usize>) {
    let binary = binary_outputs(req);
    if binary.is_empty() {
        // Room for the usual answer at once: the names, the labels and about a dozen bytes a
        // number.
        let numbers: usize = resp
            .outputs
            .iter()
            .map(|t| t.shape.iter().product::<usize>())
            .sum();
        let mut body = Vec::with_capacity(256 + 16 * numbers);
        return match serde_json::to_writer(&mut body, resp) {
            Ok(()) => (body, None),
            Err(_) => (Vec::new(), None),
        };
    }
    let mut tail = Vec::new();
    let outputs: Vec<Value> = resp
        .outputs
        .iter()
        .map(|t| {
            if binary.iter().any(|b| *b == t.name) {
                let bytes = encode_binary(t);
                let size = bytes.len();
                tail.extend(bytes);
                json!({"name": t.name, "shape": t.shape, "datatype": t.datatype,
                       "parameters": {"binary_data_size": size}})
            } else {
                serde_json::to_value(t).unwrap_or(Value::Null)
            }
        })
        .collect();
    let mut head = json!({
        "model_name": resp.model_name,
        "model_version": resp.model_version,
        "outputs": outputs,
    });
    if let Some(id) = &resp.id {
        head["id"] = json!(id);
    }
    let mut body = serde_json::to_vec(&head).unwrap_or_default();
    let header_len = body.len();
    body.extend(tail);
    (body, Some(header_len))
}

/// The outputs a model answers: the label of each row and each class's probability.
pub const OUTPUTS: [&str; 2] = ["label", "probabilities"];

fn flatten(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other.clone()),
    }
}

/// A tensor's elements, checked against its datatype (numbers for the numeric types, booleans
/// for BOOL, strings for BYTES) and its shape. Its data is taken: a flat list is used as it is.
fn elements(t: &mut InferInput) -> Result<Vec<Value>, BadRequest> {
    let data = match std::mem::take(&mut t.data) {
        Value::Array(items) if !items.iter().any(Value::is_array) => items,
        other => {
            let mut data = Vec::new();
            flatten(&other, &mut data);
            data
        }
    };
    if t.shape.iter().any(|d| *d < 0) {
        return Err(bad(format!(
            "input `{}` has shape {:?}: a request's dimensions are known (no -1)",
            t.name, t.shape
        )));
    }
    // Checked: a shape whose product overflows must not wrap around to the data's length.
    let n = t
        .shape
        .iter()
        .try_fold(1usize, |n, d| n.checked_mul(*d as usize));
    if n != Some(data.len()) {
        return Err(bad(format!(
            "input `{}` has shape {:?} ({} elements) but its data holds {}",
            t.name,
            t.shape,
            n.map_or("too many".to_string(), |n| n.to_string()),
            data.len()
        )));
    }
    let ok = |pred: fn(&Value) -> bool, what: &str| -> Result<(), BadRequest> {
        match data.iter().position(|v| !pred(v)) {
            None => Ok(()),
            Some(i) => Err(bad(format!(
                "input `{}` is {} but element {i} is {} (expected {what})",
                t.name, t.datatype, data[i]
            ))),
        }
    };
    match &*t.datatype {
        "FP16" | "FP32" | "FP64" => ok(Value::is_number, "a number")?,
        "INT8" | "INT16" | "INT32" | "INT64" => ok(|v| v.is_i64(), "an integer")?,
        "UINT8" | "UINT16" | "UINT32" | "UINT64" => ok(|v| v.is_u64(), "an unsigned integer")?,
        "BOOL" => ok(Value::is_boolean, "true or false")?,
        "BYTES" => ok(Value::is_string, "a string")?,
        other => {
            return Err(bad(format!(
                "input `{}` has datatype {other}; the protocol's are BOOL, UINT8…UINT64, \
                 INT8…INT64, FP16, FP32, FP64 and BYTES",
                t.name
            )));
        }
    }
    Ok(data)
}

/// Whether a tensor's datatype can carry a column of `kind`.
fn fits(datatype: &str, kind: &str) -> bool {
    let numeric = datatype.starts_with("FP") || datatype.contains("INT");
    match kind {
        "number" => numeric,
        "integer" => datatype.contains("INT"),
        "boolean" => datatype == "BOOL",
        _ => datatype == "BYTES",
    }
}

/// The rows of a matrix of `width` numbers a row: shape `[rows, width]`, or `[width]` for one.
/// A negative dimension is no shape at all.
fn matrix_rows(shape: &[i64], width: usize) -> Option<usize> {
    let dim = |d: &i64| usize::try_from(*d).ok();
    match shape {
        [r, w] if dim(w) == Some(width) => dim(r),
        [w] if dim(w) == Some(width) => Some(1),
        _ => None,
    }
}

/// The name of the one `[rows, k]` tensor that carries every column of an all-number model at
/// once, in the model's order (KServe's name for a scikit-learn model's matrix).
pub const MATRIX_INPUT: &str = "input-0";

/// The rows of an OIP request: one tensor per input column (shape `[N]` or `[N, 1]`), or, for a
/// model whose inputs are all numbers, one `[N, k]` tensor named [`MATRIX_INPUT`] holding them
/// in order. A tensor of any other name is refused.
pub fn oip_rows<'a>(
    req: &mut InferRequest,
    inputs: &'a [Input],
) -> Result<Columns<'a>, BadRequest> {
    if req.inputs.is_empty() {
        return Err(bad(format!(
            "the request has no inputs; the model takes {}",
            expected(inputs)
        )));
    }
    let by_name = |n: &str| inputs.iter().find(|i| i.name == n);
    let all_numbers = inputs.iter().all(|i| i.kind == "number");
    // One matrix of every (numeric) column.
    if req.inputs.iter().any(|t| t.name == MATRIX_INPUT) && by_name(MATRIX_INPUT).is_none() {
        let width = inputs.len();
        if !all_numbers {
            return Err(bad(format!(
                "one `{MATRIX_INPUT}` tensor works for a model whose inputs are all numbers; \
                 this model takes {}",
                expected(inputs)
            )));
        }
        let [t] = req.inputs.as_mut_slice() else {
            return Err(bad(format!(
                "`{MATRIX_INPUT}` holds every input at once; send it alone, or one tensor per \
                 input: {}",
                expected(inputs)
            )));
        };
        if !fits(&t.datatype, "number") {
            return Err(bad(format!(
                "input `{}` is {}; the model's inputs are numbers (FP32, FP64 or INT*)",
                t.name, t.datatype
            )));
        }
        let Some(rows) = matrix_rows(&t.shape, width) else {
            return Err(bad(format!(
                "input `{}` has shape {:?}; expected [rows, {width}] (the model's inputs in \
                 order: {})",
                t.name,
                t.shape,
                expected(inputs)
            )));
        };
        let data = elements(t)?;
        let values = (0..width)
            .map(|j| (0..rows).map(|r| data[r * width + j].clone()).collect())
            .collect();
        return Ok(Columns {
            rows,
            inputs,
            values,
        });
    }
    let mut rows = None;
    let mut values: Vec<Option<Vec<Value>>> = vec![None; inputs.len()];
    for t in &mut req.inputs {
        let Some(j) = inputs.iter().position(|i| i.name == t.name) else {
            let or_matrix = if all_numbers {
                format!(
                    ", or all of them as one [rows, {}] tensor `{MATRIX_INPUT}`",
                    inputs.len()
                )
            } else {
                String::new()
            };
            return Err(bad(format!(
                "unknown input `{}`: the model takes {}{or_matrix}",
                t.name,
                expected(inputs)
            )));
        };
        let col = &inputs[j];
        if !fits(&t.datatype, &col.kind) {
            return Err(bad(format!(
                "input `{}` is {}; expected {}",
                t.name,
                t.datatype,
                oip_type(&col.kind)
            )));
        }
        let data = elements(t)?;
        let n = match t.shape.as_slice() {
            [n] | [n, 1] => *n as usize,
            other => {
                return Err(bad(format!(
                    "input `{}` has shape {other:?}; a column is [rows] or [rows, 1]",
                    t.name
                )));
            }
        };
        if *rows.get_or_insert(n) != n {
            return Err(bad(format!(
                "input `{}` has {n} rows, the inputs before it {}",
                t.name,
                rows.unwrap_or(0)
            )));
        }
        if values[j].replace(data).is_some() {
            return Err(bad(format!("input `{}` is given twice", t.name)));
        }
    }
    let values = values
        .into_iter()
        .zip(inputs)
        .map(|(v, i)| {
            v.ok_or_else(|| {
                bad(format!(
                    "input `{}` ({}) is missing; the model takes {}",
                    i.name,
                    oip_type(&i.kind),
                    expected(inputs)
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Columns {
        rows: rows.unwrap_or(0),
        inputs,
        values,
    })
}

/// The response's output tensors: `label` (the classes' own JSON type) and `probabilities`
/// (`[rows, classes]`, FP32), or those the request named.
pub fn oip_outputs(
    req: &InferRequest,
    predictions: &[Prediction],
    classes: &[Value],
) -> Result<Vec<OutputTensor>, BadRequest> {
    for o in &req.outputs {
        if !OUTPUTS.contains(&&*o.name) {
            return Err(bad(format!(
                "unknown output `{}`: the model answers label and probabilities",
                o.name
            )));
        }
    }
    let want = |n: &str| req.outputs.is_empty() || req.outputs.iter().any(|o| o.name == n);
    let mut out = Vec::new();
    if want("label") {
        out.push(OutputTensor {
            name: Cow::Borrowed("label"),
            shape: vec![predictions.len()],
            datatype: label_type(classes),
            data: TensorData::Values(predictions.iter().map(|p| p.label.clone()).collect()),
        });
    }
    if want("probabilities") {
        out.push(OutputTensor {
            name: Cow::Borrowed("probabilities"),
            shape: vec![predictions.len(), classes.len()],
            datatype: "FP32",
            data: TensorData::Floats(
                predictions
                    .iter()
                    .flat_map(|p| p.probabilities.iter().copied())
                    .collect(),
            ),
        });
    }
    Ok(out)
}

/// The rows of an OIP request for a graph of one `[rows, width]` float input: one tensor of the
/// graph's input's name, shape `[rows, width]` or `[width]` (one row), numbers.
pub fn oip_matrix(
    req: &mut InferRequest,
    input: &str,
    width: usize,
) -> Result<(Vec<f32>, usize), BadRequest> {
    let n = req.inputs.len();
    let [t] = req.inputs.as_mut_slice() else {
        return Err(bad(format!(
            "the model takes one input, `{input}` (FP32, [rows, {width}]); the request has {n}"
        )));
    };
    if t.name != input {
        return Err(bad(format!(
            "unknown input `{}`: the model takes one input, `{input}` (FP32, [rows, {width}])",
            t.name
        )));
    }
    if !fits(&t.datatype, "number") {
        return Err(bad(format!(
            "input `{}` is {}; expected FP32 (or another number type)",
            t.name, t.datatype
        )));
    }
    let data = elements(t)?;
    let Some(rows) = matrix_rows(&t.shape, width) else {
        return Err(bad(format!(
            "input `{}` has shape {:?}; expected [rows, {width}]",
            t.name, t.shape
        )));
    };
    Ok((
        data.iter()
            .map(|v| v.as_f64().unwrap_or(f64::NAN) as f32)
            .collect(),
        rows,
    ))
}

/// Refuses a request that names an output the graph does not have (before anything runs).
pub fn known_outputs(req: &InferRequest, outputs: &[String]) -> Result<(), BadRequest> {
    match req
        .outputs
        .iter()
        .find(|o| !outputs.iter().any(|n| *n == o.name))
    {
        Some(o) => Err(bad(format!(
            "unknown output `{}`: the model answers {}",
            o.name,
            outputs.join(", ")
        ))),
        None => Ok(()),
    }
}

/// A graph's outputs as OIP tensors (FP32), or those the request named.
pub fn graph_outputs(
    req: &InferRequest,
    outputs: Vec<(String, Vec<usize>, Vec<f32>)>,
) -> Result<Vec<OutputTensor>, BadRequest> {
    let names: Vec<String> = outputs.iter().map(|(n, _, _)| n.clone()).collect();
    known_outputs(req, &names)?;
    Ok(outputs
        .into_iter()
        .filter(|(n, _, _)| req.outputs.is_empty() || req.outputs.iter().any(|o| &o.name == n))
        .map(|(name, shape, values)| OutputTensor {
            name: Cow::Owned(name),
            shape,
            datatype: "FP32",
            data: TensorData::Floats(values),
        })
        .collect())
}

/// The rows of an MLflow scoring request for a graph of `width` features: lists of numbers
/// (`inputs`, `instances`, or `dataframe_split`'s `data`).
pub fn scoring_matrix(body: &Value, width: usize) -> Result<(Vec<f32>, usize), BadRequest> {
    let rows = body
        .get("inputs")
        .or_else(|| body.get("instances"))
        .or_else(|| body.pointer("/dataframe_split/data"))
        .and_then(Value::as_array)
        .ok_or_else(|| {
            bad(format!(
                "the model takes rows of {width} numbers: {{\"inputs\": [[…], …]}} (or \
                 instances, or dataframe_split's data)"
            ))
        })?;
    let mut out = Vec::with_capacity(rows.len() * width);
    for (r, row) in rows.iter().enumerate() {
        let row = row
            .as_array()
            .filter(|a| a.len() == width)
            .ok_or_else(|| bad(format!("row {r} must be a list of {width} numbers")))?;
        for v in row {
            out.push(
                v.as_f64()
                    .ok_or_else(|| bad(format!("row {r} holds {v}, not a number")))?
                    as f32,
            );
        }
    }
    Ok((out, rows.len()))
}

/// The OIP datatype of the class labels.
pub fn label_type(classes: &[Value]) -> &'static str {
    match classes.first() {
        Some(Value::Bool(_)) => "BOOL",
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => "INT64",
        Some(Value::Number(_)) => "FP64",
        _ => "BYTES",
    }
}

// ---- MLflow's scoring protocol ---------------------------------------------------------------

/// The rows of an MLflow scoring request (`POST /invocations`, `application/json`):
/// `dataframe_split` (`columns`, `data`), `dataframe_records`, `inputs` (columns by name, or
/// rows as lists or records), or `instances` (the same forms).
pub fn scoring_rows<'a>(body: &Value, inputs: &'a [Input]) -> Result<Columns<'a>, BadRequest> {
    let Some(obj) = body.as_object() else {
        return Err(bad(
            "the body must be a JSON object with one of dataframe_split, dataframe_records, \
             inputs or instances",
        ));
    };
    let keys: Vec<&String> = obj.keys().filter(|k| k.as_str() != "params").collect();
    let [key] = keys.as_slice() else {
        return Err(bad(format!(
            "the body must hold exactly one of dataframe_split, dataframe_records, inputs or \
             instances (it has {})",
            if keys.is_empty() {
                "none".to_string()
            } else {
                keys.iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    };
    let v = &obj[key.as_str()];
    let records: Vec<HashMap<String, Value>> = match key.as_str() {
        "dataframe_split" => {
            let columns: Vec<String> = v
                .get("columns")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("dataframe_split needs `columns`, a list of names"))?
                .iter()
                .map(|c| c.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("dataframe_split's columns must be strings"))?;
            let data = v
                .get("data")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("dataframe_split needs `data`, a list of rows"))?;
            data.iter()
                .enumerate()
                .map(|(r, row)| {
                    let row = row
                        .as_array()
                        .filter(|row| row.len() == columns.len())
                        .ok_or_else(|| {
                            bad(format!(
                                "dataframe_split row {r} must be a list of {} values",
                                columns.len()
                            ))
                        })?;
                    Ok(columns.iter().cloned().zip(row.iter().cloned()).collect())
                })
                .collect::<Result<_, BadRequest>>()?
        }
        "dataframe_records" => records_of(v, "dataframe_records")?,
        "inputs" | "instances" => match v {
            // Columns by name: {"col": [v, v, ...]}.
            Value::Object(cols) => {
                let n = cols.values().next().and_then(Value::as_array).map(Vec::len);
                let n = n.ok_or_else(|| bad(format!("{key} by column needs lists of values")))?;
                (0..n)
                    .map(|r| {
                        cols.iter()
                            .map(|(c, vals)| {
                                let vals =
                                    vals.as_array().filter(|a| a.len() == n).ok_or_else(|| {
                                        bad(format!(
                                            "{key}: column `{c}` must be a list of {n} values"
                                        ))
                                    })?;
                                Ok((c.clone(), vals[r].clone()))
                            })
                            .collect::<Result<_, BadRequest>>()
                    })
                    .collect::<Result<_, BadRequest>>()?
            }
            // Rows as lists, in the model's input order.
            Value::Array(rows) if rows.iter().all(Value::is_array) => rows
                .iter()
                .enumerate()
                .map(|(r, row)| {
                    let row = row
                        .as_array()
                        .filter(|row| row.len() == inputs.len())
                        .ok_or_else(|| {
                            bad(format!(
                                "{key} row {r} must hold {} values: {}",
                                inputs.len(),
                                expected(inputs)
                            ))
                        })?;
                    Ok(inputs
                        .iter()
                        .map(|i| i.name.clone())
                        .zip(row.iter().cloned())
                        .collect())
                })
                .collect::<Result<_, BadRequest>>()?,
            other => records_of(other, key)?,
        },
        other => {
            return Err(bad(format!(
                "unknown key `{other}`: use dataframe_split, dataframe_records, inputs or instances"
            )));
        }
    };
    let values = inputs
        .iter()
        .map(|i| {
            records
                .iter()
                .map(|r| r.get(&i.name).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect();
    if let Some(r) = records.first()
        && let Some(unknown) = r.keys().find(|k| !inputs.iter().any(|i| &i.name == *k))
    {
        return Err(bad(format!(
            "unknown column `{unknown}`: the model takes {}",
            expected(inputs)
        )));
    }
    Ok(Columns {
        rows: records.len(),
        inputs,
        values,
    })
}

fn records_of(v: &Value, key: &str) -> Result<Vec<HashMap<String, Value>>, BadRequest> {
    v.as_array()
        .ok_or_else(|| bad(format!("{key} must be a list of records")))?
        .iter()
        .enumerate()
        .map(|(r, rec)| {
            rec.as_object()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .ok_or_else(|| bad(format!("{key} row {r} must be an object of column → value")))
        })
        .collect()
}

/// MLflow's answer: `{"predictions": [label, …]}`.
pub fn scoring_answer(predictions: &[Prediction]) -> Value {
    json!({ "predictions": predictions.iter().map(|p| p.label.clone()).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use petri_ml::Rows;

    fn inputs() -> Vec<Input> {
        serde_json::from_value(json!([
            {"name": "a", "type": "number"}, {"name": "b", "type": "number"},
            {"name": "site", "type": "string"}
        ]))
        .unwrap()
    }

    fn numeric() -> Vec<Input> {
        serde_json::from_value(
            json!([{"name": "a", "type": "number"}, {"name": "b", "type": "number"}]),
        )
        .unwrap()
    }

    /// A request as its body would bring it (its names borrow the body, which lives on).
    fn req(v: Value) -> InferRequest<'static> {
        let body = serde_json::to_vec(&v).unwrap().leak();
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn oip_columns_and_a_matrix_become_rows() {
        let r = req(json!({"inputs": [
            {"name": "a", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]},
            {"name": "b", "shape": [2, 1], "datatype": "INT64", "data": [[3], [4]]},
            {"name": "site", "shape": [2], "datatype": "BYTES", "data": ["x", "y"]}
        ]}));
        let (mut r, ins) = (r, inputs());
        let c = oip_rows(&mut r, &ins).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.value(1, "b"), Some(&json!(4)));
        assert_eq!(c.value(0, "site"), Some(&json!("x")));
        let m = req(json!({"inputs": [
            {"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}
        ]}));
        let (mut m, num) = (m, numeric());
        let c = oip_rows(&mut m, &num).unwrap();
        assert_eq!(c.value(1, "a"), Some(&json!(3)));
        assert_eq!(c.value(1, "b"), Some(&json!(4)));
    }

    #[test]
    fn oip_refusals_say_what_was_expected() {
        let ins = inputs();
        let err = |v: Value| oip_rows(&mut req(v), &ins).unwrap_err().0;
        let e =
            err(json!({"inputs": [{"name": "zz", "shape": [1], "datatype": "FP32", "data": [1]}]}));
        assert!(
            e.contains("unknown input `zz`") && e.contains("a (FP64)"),
            "{e}"
        );
        let e = err(
            json!({"inputs": [{"name": "a", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}),
        );
        assert!(
            e.contains("shape [3] (3 elements) but its data holds 2"),
            "{e}"
        );
        // A shape whose product overflows is not taken for the data's length (here none).
        let huge = 1i64 << 62;
        let e = oip_matrix(
            &mut req(
                json!({"inputs": [{"name": "x", "shape": [huge, 4], "datatype": "FP32", "data": []}]}),
            ),
            "x",
            4,
        )
        .unwrap_err()
        .0;
        assert!(e.contains("(too many elements)"), "{e}");
        let e = err(
            json!({"inputs": [{"name": "a", "shape": [1], "datatype": "BYTES", "data": ["1"]}]}),
        );
        assert!(e.contains("is BYTES; expected FP64"), "{e}");
        let e = err(
            json!({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": ["x"]}]}),
        );
        assert!(e.contains("element 0"), "{e}");
        let e =
            err(json!({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}]}));
        assert!(e.contains("input `b` (FP64) is missing"), "{e}");
        let e = err(
            json!({"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}),
        );
        assert!(e.contains("all numbers"), "{e}");
        // A matrix goes by its one name; a tensor of another name is refused, whatever its shape.
        let num = numeric();
        let e = oip_rows(
            &mut req(
                json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}),
            ),
            &num,
        )
        .unwrap_err()
        .0;
        assert!(
            e.contains("unknown input `x`") && e.contains("one [rows, 2] tensor `input-0`"),
            "{e}"
        );
        let e = oip_rows(
            &mut req(
                json!({"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}),
            ),
            &num,
        )
        .unwrap_err()
        .0;
        assert!(e.contains("expected [rows, 2]"), "{e}");
        // A negative dimension is refused as a shape, not taken for a huge one.
        assert_eq!(matrix_rows(&[-1, 2], 2), None);
        assert_eq!(matrix_rows(&[2, -2], usize::MAX - 1), None);
        let e = oip_rows(
            &mut req(
                json!({"inputs": [{"name": "input-0", "shape": [-1, 2], "datatype": "FP32", "data": []}]}),
            ),
            &num,
        )
        .unwrap_err()
        .0;
        assert!(e.contains("shape [-1, 2]"), "{e}");
        // One row may come flat.
        let c = oip_rows(
            &mut req(
                json!({"inputs": [{"name": "input-0", "shape": [2], "datatype": "FP64", "data": [5, 6]}]}),
            ),
            &num,
        )
        .unwrap();
        assert_eq!((c.rows, c.value(0, "b")), (1, Some(&json!(6))));
        // A graph takes its own input's name only.
        let e = oip_matrix(
            &mut req(
                json!({"inputs": [{"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
            ),
            "features",
            4,
        )
        .unwrap_err()
        .0;
        assert!(
            e.contains("unknown input `y`") && e.contains("`features` (FP32, [rows, 4])"),
            "{e}"
        );
    }

    #[test]
    fn binary_tensors_come_in_and_go_out_as_triton_sends_them() {
        let head = json!({"inputs": [
            {"name": "a", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
            {"name": "b", "shape": [2], "datatype": "INT64", "data": [3, 4]},
            {"name": "site", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 11}}
        ], "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}]});
        let mut body = serde_json::to_vec(&head).unwrap();
        let n = body.len();
        body.extend(1.5f32.to_le_bytes());
        body.extend(2.0f32.to_le_bytes());
        body.extend(1u32.to_le_bytes());
        body.extend(b"x");
        body.extend(2u32.to_le_bytes());
        body.extend(b"yz");
        let mut req = parse_infer(&body, Some(n)).unwrap();
        let ins = inputs();
        let c = oip_rows(&mut req, &ins).unwrap();
        assert_eq!(c.value(1, "a"), Some(&json!(2.0)));
        assert_eq!(c.value(1, "site"), Some(&json!("yz")));
        let resp = InferResponse {
            model_name: "m",
            model_version: "1",
            id: None,
            outputs: vec![OutputTensor {
                name: "probabilities".into(),
                shape: vec![1, 2],
                datatype: "FP32",
                data: TensorData::Floats(vec![0.25, 0.75]),
            }],
        };
        let (out, header) = encode_response(&req, &resp);
        let header = header.unwrap();
        let meta: Value = serde_json::from_slice(&out[..header]).unwrap();
        assert_eq!(meta["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(&out[header..header + 4], &0.25f32.to_le_bytes());
        // Cut short, or not there at all: refused with why.
        assert!(
            parse_infer(&body[..body.len() - 2], Some(n))
                .unwrap_err()
                .0
                .contains("remain")
        );
        let no_data = json!({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32"}]});
        let e = parse_infer(&serde_json::to_vec(&no_data).unwrap(), None).unwrap_err();
        assert!(e.0.contains("has no data"), "{e}");
    }

    #[test]
    fn mlflow_scoring_formats_become_the_same_rows() {
        let ins = inputs();
        let want = oip_rows(
            &mut req(json!({"inputs": [
                {"name": "a", "shape": [2], "datatype": "FP64", "data": [1, 3]},
                {"name": "b", "shape": [2], "datatype": "FP64", "data": [2, 4]},
                {"name": "site", "shape": [2], "datatype": "BYTES", "data": ["x", "y"]}
            ]})),
            &ins,
        )
        .unwrap();
        for body in [
            json!({"dataframe_split": {"columns": ["a", "b", "site"], "data": [[1, 2, "x"], [3, 4, "y"]]}}),
            json!({"dataframe_records": [{"a": 1, "b": 2, "site": "x"}, {"a": 3, "b": 4, "site": "y"}]}),
            json!({"inputs": {"a": [1, 3], "b": [2, 4], "site": ["x", "y"]}}),
            json!({"instances": [{"a": 1, "b": 2, "site": "x"}, {"a": 3, "b": 4, "site": "y"}]}),
            json!({"inputs": [[1, 2, "x"], [3, 4, "y"]]}),
        ] {
            assert_eq!(scoring_rows(&body, &ins).unwrap(), want, "{body}");
        }
        let e = scoring_rows(
            &json!({"dataframe_records": [{"a": 1, "zz": 2}]}),
            &inputs(),
        )
        .unwrap_err();
        assert!(e.0.contains("unknown column `zz`"), "{e}");
        let e = scoring_rows(&json!({"nope": 1}), &inputs()).unwrap_err();
        assert!(e.0.contains("unknown key"), "{e}");
    }
}
