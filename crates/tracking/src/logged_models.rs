//! MLflow 3's logged models: what `mlflow.<flavor>.log_model` makes (create, then the files
//! under the model's own `artifact_uri`, `mlflow-artifacts:/<experiment>/models/<id>/artifacts`,
//! then finalize), found again by id (`models:/m-…`) or by search, and linked to the run that
//! logged them (`runs/outputs`). Tags and params are kept as JSON objects on the model's row.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrackingError};
use crate::service::Tracking;
use crate::store::{self, parse_experiment_id};
use crate::wire::{ACTIVE, DELETED, Empty, KeyValue};

/// A logged model as MLflow's REST API writes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoggedModel {
    pub info: LoggedModelInfo,
    pub data: LoggedModelData,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoggedModelInfo {
    pub model_id: String,
    pub experiment_id: String,
    pub name: String,
    pub creation_timestamp_ms: i64,
    pub last_updated_timestamp_ms: i64,
    pub artifact_uri: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoggedModelData {
    #[serde(default)]
    pub params: Vec<KeyValue>,
    #[serde(default)]
    pub metrics: Vec<serde_json::Value>,
}

/// `{"model": …}`.
#[derive(Clone, Debug, Serialize)]
pub struct OneModel {
    pub model: LoggedModel,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct CreateLoggedModel {
    #[serde(default)]
    pub experiment_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default)]
    pub source_run_id: Option<String>,
    #[serde(default)]
    pub params: Vec<KeyValue>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct FinalizeLoggedModel {
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct KeyValues {
    #[serde(default, alias = "params")]
    pub tags: Vec<KeyValue>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct SearchLoggedModels {
    #[serde(default)]
    pub experiment_ids: Vec<String>,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub max_results: Option<i64>,
    #[serde(default)]
    pub page_token: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LoggedModels {
    pub models: Vec<LoggedModel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ModelOutput {
    #[serde(default)]
    pub model_id: String,
    #[serde(default, with = "crate::wire::opt_int64")]
    pub step: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct LogOutputs {
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub models: Vec<ModelOutput>,
}

const PENDING: &str = "LOGGED_MODEL_PENDING";
const STATUSES: [&str; 3] = [PENDING, "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED"];

const COLUMNS: &str = "id, experiment_id, name, artifact_uri, status, creator_id, model_type, \
                       source_run_id, status_message, creation_time, last_update_time, tags, params";

fn pairs(json: &str) -> Vec<KeyValue> {
    serde_json::from_str::<BTreeMap<String, String>>(json)
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| KeyValue { key, value })
        .collect()
}

fn model_of(r: &Row) -> rusqlite::Result<LoggedModel> {
    let tags: String = r.get(11)?;
    let params: String = r.get(12)?;
    Ok(LoggedModel {
        info: LoggedModelInfo {
            model_id: r.get(0)?,
            experiment_id: r.get::<_, i64>(1)?.to_string(),
            name: r.get(2)?,
            artifact_uri: r.get(3)?,
            status: r.get(4)?,
            creator_id: r.get(5)?,
            model_type: r.get(6)?,
            source_run_id: r.get(7)?,
            status_message: r.get(8)?,
            creation_timestamp_ms: r.get(9)?,
            last_updated_timestamp_ms: r.get(10)?,
            tags: pairs(&tags),
        },
        data: LoggedModelData {
            params: pairs(&params),
            metrics: Vec::new(),
        },
    })
}

pub(crate) fn model(c: &Connection, id: &str) -> rusqlite::Result<Option<LoggedModel>> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM logged_models WHERE id = ?1 AND lifecycle_stage = 'active'"
    ))?
    .query_row([id], model_of)
    .optional()
}

fn no_model(id: &str) -> TrackingError {
    TrackingError::not_found(format!("Logged model with ID '{id}' not found."))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One `field = 'value'` clause of a search's filter, on the fields the client filters by.
fn clauses(filter: &str) -> Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    let filter = filter.trim();
    if filter.is_empty() {
        return Ok(out);
    }
    let lower = filter.to_ascii_lowercase();
    let mut rest = filter;
    let mut lower_rest = lower.as_str();
    loop {
        let end = lower_rest.find(" and ").unwrap_or(rest.len());
        let clause = rest[..end].trim();
        let Some((field, value)) = clause.split_once('=') else {
            return Err(unsupported(filter));
        };
        let column = match field.trim().to_ascii_lowercase().as_str() {
            "name" | "attributes.name" => "name",
            "source_run_id" | "attributes.source_run_id" => "source_run_id",
            "model_id" | "attributes.model_id" => "id",
            "model_type" | "attributes.model_type" => "model_type",
            "status" | "attributes.status" => "status",
            _ => return Err(unsupported(filter)),
        };
        let value = value.trim();
        let unquoted = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
            .ok_or_else(|| unsupported(filter))?;
        out.push((column, unquoted.to_string()));
        if end == rest.len() {
            return Ok(out);
        }
        rest = &rest[end + 5..];
        lower_rest = &lower_rest[end + 5..];
    }
}

fn unsupported(filter: &str) -> TrackingError {
    TrackingError::invalid(format!(
        "Invalid filter '{filter}': logged models are searched by `name`, `source_run_id`, \
         `model_id`, `model_type` and `status` with `=`, joined by AND"
    ))
}

impl Tracking {
    pub async fn create_logged_model(&self, req: CreateLoggedModel) -> Result<OneModel> {
        let n = parse_experiment_id(&req.experiment_id)?;
        let sql = self.sql();
        self.write(move |c| {
            let e = store::experiment(c, n).map_err(&sql)?.ok_or_else(|| {
                TrackingError::not_found(format!("No Experiment with id={n} exists"))
            })?;
            if e.lifecycle_stage != ACTIVE {
                return Err(TrackingError::invalid(format!(
                    "The experiment {n} must be in the 'active' state."
                )));
            }
            let id = format!("m-{}", uuid::Uuid::now_v7().simple());
            let name = req
                .name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(crate::names::random_name);
            let artifact_uri = format!(
                "{}/models/{id}/artifacts",
                e.artifact_location.trim_end_matches('/')
            );
            let to_json = |kv: &[KeyValue]| {
                let map: BTreeMap<&str, &str> = kv
                    .iter()
                    .map(|p| (p.key.as_str(), p.value.as_str()))
                    .collect();
                serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
            };
            let now = now_ms();
            c.execute(
                "INSERT INTO logged_models (id, experiment_id, name, artifact_uri, status, \
                 creator_id, model_type, source_run_id, status_message, creation_time, \
                 last_update_time, tags, params, lifecycle_stage) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, ?9, ?9, ?10, ?11, ?12)",
                params![
                    id,
                    n,
                    name,
                    artifact_uri,
                    PENDING,
                    // MLflow's creator_id is a number (a Databricks user id): Petri's users
                    // are names, so it stays empty.
                    None::<i64>,
                    req.model_type,
                    req.source_run_id.filter(|r| !r.is_empty()),
                    now,
                    to_json(&req.tags),
                    to_json(&req.params),
                    ACTIVE
                ],
            )
            .map_err(&sql)?;
            let model = model(c, &id).map_err(&sql)?.ok_or_else(|| no_model(&id))?;
            Ok(OneModel { model })
        })
        .await
    }

    pub async fn get_logged_model(&self, id: &str) -> Result<OneModel> {
        let sql = self.sql();
        let id = id.to_string();
        self.read(move |c| {
            let model = model(c, &id).map_err(&sql)?.ok_or_else(|| no_model(&id))?;
            Ok(OneModel { model })
        })
        .await
    }

    pub async fn finalize_logged_model(
        &self,
        id: &str,
        req: FinalizeLoggedModel,
    ) -> Result<OneModel> {
        let status = req.status.unwrap_or_default();
        if !STATUSES.contains(&status.as_str()) {
            return Err(TrackingError::invalid(format!(
                "Invalid value '{status}' for parameter 'status': use one of {STATUSES:?}"
            )));
        }
        self.change_model(id, move |c, id| {
            c.execute(
                "UPDATE logged_models SET status = ?2, last_update_time = ?3 WHERE id = ?1",
                params![id, status, now_ms()],
            )
        })
        .await
    }

    /// Sets tags (`params` = false) or logs params (true) on a model.
    pub async fn set_logged_model_values(
        &self,
        id: &str,
        values: Vec<KeyValue>,
        params: bool,
    ) -> Result<Empty> {
        let column = if params { "params" } else { "tags" };
        self.change_model(id, move |c, id| {
            let now: String = c.query_row(
                &format!("SELECT {column} FROM logged_models WHERE id = ?1"),
                [id],
                |r| r.get(0),
            )?;
            let mut map: BTreeMap<String, String> = serde_json::from_str(&now).unwrap_or_default();
            for kv in &values {
                map.insert(kv.key.clone(), kv.value.clone());
            }
            c.execute(
                &format!(
                    "UPDATE logged_models SET {column} = ?2, last_update_time = ?3 WHERE id = ?1"
                ),
                params![
                    id,
                    serde_json::to_string(&map).unwrap_or_else(|_| "{}".into()),
                    now_ms()
                ],
            )
        })
        .await?;
        Ok(Empty {})
    }

    pub async fn delete_logged_model_tag(&self, id: &str, key: &str) -> Result<Empty> {
        let key = key.to_string();
        self.change_model(id, move |c, id| {
            let now: String =
                c.query_row("SELECT tags FROM logged_models WHERE id = ?1", [id], |r| {
                    r.get(0)
                })?;
            let mut map: BTreeMap<String, String> = serde_json::from_str(&now).unwrap_or_default();
            map.remove(&key);
            c.execute(
                "UPDATE logged_models SET tags = ?2 WHERE id = ?1",
                params![
                    id,
                    serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
                ],
            )
        })
        .await?;
        Ok(Empty {})
    }

    pub async fn delete_logged_model(&self, id: &str) -> Result<Empty> {
        self.change_model(id, |c, id| {
            c.execute(
                "UPDATE logged_models SET lifecycle_stage = ?2 WHERE id = ?1",
                params![id, DELETED],
            )
        })
        .await?;
        Ok(Empty {})
    }

    async fn change_model(
        &self,
        id: &str,
        f: impl FnOnce(&Connection, &str) -> rusqlite::Result<usize> + Send + 'static,
    ) -> Result<OneModel> {
        let sql = self.sql();
        let id = id.to_string();
        self.write(move |c| {
            model(c, &id).map_err(&sql)?.ok_or_else(|| no_model(&id))?;
            f(c, &id).map_err(&sql)?;
            let model = model(c, &id).map_err(&sql)?.ok_or_else(|| no_model(&id))?;
            Ok(OneModel { model })
        })
        .await
    }

    pub async fn search_logged_models(&self, req: SearchLoggedModels) -> Result<LoggedModels> {
        let experiments = req
            .experiment_ids
            .iter()
            .map(|e| parse_experiment_id(e))
            .collect::<Result<Vec<_>>>()?;
        let wanted = clauses(req.filter.as_deref().unwrap_or(""))?;
        let max = match req.max_results {
            None => 100,
            Some(n) if n > 0 => n as usize,
            Some(n) => {
                return Err(TrackingError::invalid(format!(
                    "Invalid value {n} for parameter 'max_results': it must be positive"
                )));
            }
        };
        let offset = crate::select::offset_of(req.page_token.as_deref())?;
        let sql = self.sql();
        let mut all = self
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM logged_models WHERE lifecycle_stage = 'active' \
                         ORDER BY creation_time DESC, id"
                    ))
                    .map_err(&sql)?;
                let rows = stmt
                    .query_map([], model_of)
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    .map_err(&sql)?;
                Ok(rows)
            })
            .await?;
        all.retain(|m| {
            (experiments.is_empty()
                || m.info
                    .experiment_id
                    .parse::<i64>()
                    .is_ok_and(|e| experiments.contains(&e)))
                && wanted.iter().all(|(column, value)| {
                    let got = match *column {
                        "name" => Some(&m.info.name),
                        "source_run_id" => m.info.source_run_id.as_ref(),
                        "id" => Some(&m.info.model_id),
                        "model_type" => m.info.model_type.as_ref(),
                        _ => Some(&m.info.status),
                    };
                    got == Some(value)
                })
        });
        let models: Vec<LoggedModel> = all.iter().skip(offset).take(max).cloned().collect();
        let next_page_token =
            (offset + models.len() < all.len()).then(|| crate::select::token_for(offset + max));
        Ok(LoggedModels {
            models,
            next_page_token,
        })
    }

    /// Records models as outputs of a run (`runs/outputs`).
    pub async fn log_outputs(&self, req: LogOutputs) -> Result<Empty> {
        let sql = self.sql();
        self.write(move |c| {
            let (seq, _) = store::run_info(c, &req.run_id)
                .map_err(&sql)?
                .ok_or_else(|| {
                    TrackingError::not_found(format!("Run with id={} not found", req.run_id))
                })?;
            for m in &req.models {
                model(c, &m.model_id)
                    .map_err(&sql)?
                    .ok_or_else(|| no_model(&m.model_id))?;
                c.execute(
                    "INSERT INTO run_outputs (run, model_id, step) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (run, model_id) DO UPDATE SET step = excluded.step",
                    params![seq, m.model_id, m.step.unwrap_or(0)],
                )
                .map_err(&sql)?;
            }
            Ok(Empty {})
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_name_the_fields_the_client_uses() {
        assert_eq!(
            clauses("name = 'model' AND source_run_id = \"abc\"").unwrap(),
            vec![
                ("name", "model".to_string()),
                ("source_run_id", "abc".to_string())
            ]
        );
        assert!(clauses("").unwrap().is_empty());
        assert!(clauses("metrics.acc > 1").is_err());
        assert!(clauses("name = model").is_err());
    }
}
