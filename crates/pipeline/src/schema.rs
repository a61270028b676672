//! The JSON Schema of a pipeline file, for editors and the canvas's property panel: the
//! pipeline's own keys, and for a step the job spec's fields (from the same types the API's
//! OpenAPI document is made of) plus the step keys.

use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

fn collect<T: utoipa::ToSchema>(defs: &mut serde_json::Map<String, Value>) {
    let mut schemas: Vec<(String, RefOr<Schema>)> = Vec::new();
    T::schemas(&mut schemas);
    schemas.push((T::name().into_owned(), T::schema()));
    for (name, s) in schemas {
        defs.insert(name, serde_json::to_value(s).unwrap_or(Value::Null));
    }
}

pub fn pipeline_schema() -> Value {
    let mut defs = serde_json::Map::new();
    collect::<petri_domain::JobSpec>(&mut defs);
    collect::<crate::spec::OutputSpec>(&mut defs);
    collect::<crate::spec::CronTrigger>(&mut defs);
    collect::<crate::spec::WatchTrigger>(&mut defs);
    collect::<crate::spec::RunRetries>(&mut defs);
    let job_props = defs
        .get("JobSpec")
        .and_then(|j| j.get("properties"))
        .cloned()
        .unwrap_or(json!({}));
    let mut step_props = job_props.as_object().cloned().unwrap_or_default();
    step_props.remove("after");
    step_props.remove("array");
    step_props.remove("outputs");
    for (k, v) in [
        (
            "needs",
            json!({"type": "array", "items": {"type": "string"}, "description": "Steps that must succeed first."}),
        ),
        (
            "when",
            json!({"type": ["string", "boolean"], "description": "A condition, e.g. ${{ steps.eval.outputs.accuracy > 0.9 }}; false skips the step."}),
        ),
        (
            "for_each",
            json!({"type": ["array", "string"], "description": "One job per item of a list (or of an expression giving a JSON list); ${{ item }} inside."}),
        ),
        (
            "uses",
            json!({"type": "string", "description": "A component's name, or pipeline:NAME."}),
        ),
        (
            "with",
            json!({"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}, "description": "A component's inputs (or a nested pipeline's params)."}),
        ),
        (
            "outputs",
            json!({"type": "object", "additionalProperties": {"$ref": "#/$defs/OutputSpec"}, "description": "Values and files the step produces."}),
        ),
        (
            "cache",
            json!({"type": "boolean", "description": "false: always run; never reuse an earlier step's outputs."}),
        ),
        (
            "secrets",
            json!({"type": "array", "description": "Secrets the step's job receives."}),
        ),
    ] {
        step_props.insert(k.into(), v);
    }
    defs.insert(
        "Step".into(),
        json!({"type": "object", "additionalProperties": false, "properties": step_props}),
    );
    let doc = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Petri pipeline",
        "type": "object",
        "additionalProperties": false,
        "required": ["steps"],
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "params": {"type": "object", "additionalProperties": true, "description": "name: default, or {default, type, description}."},
            "secrets": {"type": "array"},
            "concurrency": {"type": "integer", "minimum": 1},
            "priority": {"type": "integer"},
            "retries": {"$ref": "#/$defs/RunRetries"},
            "triggers": {"type": "array", "items": {"anyOf": [{"$ref": "#/$defs/CronTrigger"}, {"$ref": "#/$defs/WatchTrigger"}]}},
            "outputs": {"type": "object", "additionalProperties": {"type": "string"}},
            "steps": {"type": "object", "additionalProperties": {"$ref": "#/$defs/Step"}}
        },
        "$defs": defs,
    });
    serde_json::from_str(&doc.to_string().replace("#/components/schemas/", "#/$defs/"))
        .unwrap_or(doc)
}
