//! MLflow's limits on what is logged, with its messages: key names (letters, digits, `_`, `-`,
//! `.`, space, `:` and `/`, and nothing that a file system would read as another name), lengths,
//! batch sizes. Long param and tag values are cut to the limit, as MLflow does by default
//! (`MLFLOW_TRUNCATE_LONG_VALUES`); long keys are refused.

use crate::error::{Result, TrackingError};
use crate::wire::{KeyValue, Metric};

pub const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
pub const MAX_PARAM_VAL_LENGTH: usize = 6000;
pub const MAX_TAG_VAL_LENGTH: usize = 8000;
pub const MAX_EXPERIMENT_NAME_LENGTH: usize = 500;
pub const MAX_EXPERIMENT_TAG_KEY_LENGTH: usize = 250;
pub const MAX_EXPERIMENT_TAG_VAL_LENGTH: usize = 20000;
pub const MAX_ENTITY_KEY_LENGTH: usize = 250;
pub const MAX_DATASET_NAME_SIZE: usize = 500;
pub const MAX_DATASET_DIGEST_SIZE: usize = 36;
pub const MAX_DATASET_SOURCE_SIZE: usize = 65535;
pub const MAX_DATASETS_PER_BATCH: usize = 1000;

/// MLflow's message for a bad value of a request parameter.
fn invalid_value(path: &str, value: &str, why: &str) -> TrackingError {
    let shown = serde_json::to_string(value).unwrap_or_default();
    TrackingError::invalid(format!(
        "Invalid value {shown} for parameter '{path}' supplied: {why}"
    ))
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// A param, metric or tag key: the characters MLflow allows, and no name that a path would
/// normalise into another one (`a/../b`, `./a`, `/a`, `a/`).
pub fn key(name: &str, path: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid_value(path, name, "A key name must be provided."));
    }
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | ':' | '/');
    if !name.chars().all(allowed) {
        return Err(invalid_value(
            path,
            name,
            "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), \
             spaces ( ), colon(:) and slashes (/).",
        ));
    }
    if let Some(norm) = not_unique(name) {
        return Err(invalid_value(
            path,
            name,
            &format!(
                "Names may be treated as files in certain cases, and must not resolve to other \
                 names when treated as such. This name would resolve to '{norm}'"
            ),
        ));
    }
    Ok(())
}

/// What POSIX path normalisation makes of `name`, when that differs from it or leaves it.
fn not_unique(name: &str) -> Option<String> {
    let absolute = name.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if absolute => {}
            p => parts.push(p),
        }
    }
    let mut norm = parts.join("/");
    if absolute {
        norm.insert(0, '/');
    }
    if norm.is_empty() {
        norm.push('.');
    }
    (norm != name || norm == "." || norm.starts_with("..") || norm.starts_with('/')).then_some(norm)
}

fn too_long(what: &str, limit: usize) -> TrackingError {
    TrackingError::invalid(format!(
        "'{what}' exceeds the maximum length of {limit} characters"
    ))
}

fn limit(what: &str, value: &str, max: usize) -> Result<()> {
    if value.chars().count() > max {
        return Err(too_long(what, max));
    }
    Ok(())
}

fn cut(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        Some((at, _)) => {
            tracing::warn!(
                length = value.chars().count(),
                max,
                "a logged value was cut to MLflow's length limit"
            );
            value[..at].to_string()
        }
        None => value.to_string(),
    }
}

/// A param as it will be stored (its value cut to the limit).
pub fn param(p: &KeyValue, path: &str) -> Result<KeyValue> {
    key(&p.key, &join(path, "key"))?;
    limit("Param key", &p.key, MAX_ENTITY_KEY_LENGTH)?;
    Ok(KeyValue {
        key: p.key.clone(),
        value: cut(&p.value, MAX_PARAM_VAL_LENGTH),
    })
}

/// A run's tag as it will be stored (its value cut to the limit).
pub fn tag(t: &KeyValue, path: &str) -> Result<KeyValue> {
    key(&t.key, &join(path, "key"))?;
    limit(&join(path, "key"), &t.key, MAX_ENTITY_KEY_LENGTH)?;
    Ok(KeyValue {
        key: t.key.clone(),
        value: cut(&t.value, MAX_TAG_VAL_LENGTH),
    })
}

/// An experiment's tag (refused when too long).
pub fn experiment_tag(t: &KeyValue) -> Result<()> {
    key(&t.key, "key")?;
    limit("key", &t.key, MAX_EXPERIMENT_TAG_KEY_LENGTH)?;
    limit("value", &t.value, MAX_EXPERIMENT_TAG_VAL_LENGTH)
}

/// A metric point.
pub fn metric(m: &Metric, path: &str) -> Result<()> {
    key(&m.key, &join(path, "name"))?;
    if m.timestamp < 0 {
        return Err(invalid_value(
            &join(path, "timestamp"),
            &m.timestamp.to_string(),
            &format!(
                "metric '{}' (value={}). Timestamp must be a nonnegative long (64-bit integer) ",
                m.key, m.value
            ),
        ));
    }
    limit("Metric name", &m.key, MAX_ENTITY_KEY_LENGTH)
}

/// An experiment's name.
pub fn experiment_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(TrackingError::invalid(format!(
            "Invalid experiment name: '{name}'"
        )));
    }
    limit("name", name, MAX_EXPERIMENT_NAME_LENGTH)
}

/// The sizes of a `log-batch` request.
pub fn batch(metrics: usize, params: usize, tags: usize) -> Result<()> {
    let check = |what: &str, limit: usize, n: usize| {
        if n > limit {
            Err(TrackingError::invalid(format!(
                "A batch logging request can contain at most {limit} {what}. Got {n} {what}. \
                 Please split up {what} across multiple requests and try again."
            )))
        } else {
            Ok(())
        }
    };
    check("metrics", MAX_METRICS_PER_BATCH, metrics)?;
    check("params", MAX_PARAMS_TAGS_PER_BATCH, params)?;
    check("tags", MAX_PARAMS_TAGS_PER_BATCH, tags)?;
    check(
        "metrics, params, and tags",
        MAX_ENTITIES_PER_BATCH,
        metrics + params + tags,
    )
}

/// No key twice among the params of one batch.
pub fn unique_params(params: &[KeyValue]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let dupes: Vec<&str> = params
        .iter()
        .filter(|p| !seen.insert(p.key.as_str()))
        .map(|p| p.key.as_str())
        .collect();
    if dupes.is_empty() {
        Ok(())
    } else {
        Err(TrackingError::invalid(format!(
            "Duplicate parameter keys have been submitted: {dupes:?}. Please ensure the request \
             contains only one param value per param key."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_mlflow_rules() {
        for good in [
            "acc",
            "val/loss",
            "a b",
            "x:y",
            "lr-0.1",
            "ünïcode",
            "a/b/c",
        ] {
            key(good, "key").unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "", "a*b", "../a", "a/../b", "/abs", "a/", "./a", ".", "a//b", "a\"b",
        ] {
            assert!(key(bad, "key").is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn long_values_are_cut_and_long_keys_refused() {
        let long = "x".repeat(MAX_PARAM_VAL_LENGTH + 5);
        let p = param(
            &KeyValue {
                key: "k".into(),
                value: long,
            },
            "",
        )
        .unwrap();
        assert_eq!(p.value.len(), MAX_PARAM_VAL_LENGTH);
        let err = param(
            &KeyValue {
                key: "k".repeat(251),
                value: "v".into(),
            },
            "",
        )
        .unwrap_err();
        assert!(err.to_string().contains("maximum length of 250"), "{err}");
    }

    #[test]
    fn batches_are_bounded() {
        batch(1000, 0, 0).unwrap();
        assert!(batch(1001, 0, 0).is_err());
        assert!(batch(0, 101, 0).is_err());
        assert!(batch(900, 100, 1).is_err());
    }
}
