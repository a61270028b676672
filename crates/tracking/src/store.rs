//! The SQL of the tracking database: reads on any connection, changes inside the writer's
//! transaction. Values come back as the wire types of [`crate::wire`].

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::{Result, TrackingError};
use crate::wire::{
    ACTIVE, Dataset, DatasetInput, Experiment, KeyValue, Metric, Run, RunData, RunInfo, RunInputs,
};

/// The tag that holds a run's name, kept equal to it.
pub const RUN_NAME_TAG: &str = "mlflow.runName";

pub(crate) type Sql<T> = rusqlite::Result<T>;

/// An experiment id as MLflow writes it: a decimal number.
pub(crate) fn parse_experiment_id(id: &str) -> Result<i64> {
    id.trim().parse::<i64>().map_err(|_| {
        TrackingError::invalid(format!(
            "Invalid experiment ID '{id}'. Experiment ID must be a valid integer."
        ))
    })
}

fn experiment_of(row: &Row) -> Sql<Experiment> {
    Ok(Experiment {
        experiment_id: row.get::<_, i64>(0)?.to_string(),
        name: row.get(1)?,
        artifact_location: row.get(2)?,
        lifecycle_stage: row.get(3)?,
        creation_time: row.get(4)?,
        last_update_time: row.get(5)?,
        tags: Vec::new(),
    })
}

const EXPERIMENT_COLUMNS: &str =
    "id, name, artifact_location, lifecycle_stage, creation_time, last_update_time";

fn experiment_tags(conn: &Connection, id: i64) -> Sql<Vec<KeyValue>> {
    let mut stmt = conn.prepare_cached(
        "SELECT key, value FROM experiment_tags WHERE experiment_id = ?1 ORDER BY key",
    )?;
    stmt.query_map([id], |r| {
        Ok(KeyValue {
            key: r.get(0)?,
            value: r.get(1)?,
        })
    })?
    .collect()
}

pub(crate) fn experiment(conn: &Connection, id: i64) -> Sql<Option<Experiment>> {
    let found = conn
        .prepare_cached(&format!(
            "SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE id = ?1"
        ))?
        .query_row([id], experiment_of)
        .optional()?;
    found
        .map(|mut e| {
            e.tags = experiment_tags(conn, id)?;
            Ok(e)
        })
        .transpose()
}

pub(crate) fn experiment_by_name(conn: &Connection, name: &str) -> Sql<Option<Experiment>> {
    let id: Option<i64> = conn
        .prepare_cached("SELECT id FROM experiments WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    match id {
        Some(id) => experiment(conn, id),
        None => Ok(None),
    }
}

/// Every experiment, with its tags.
pub(crate) fn experiments(conn: &Connection) -> Sql<Vec<Experiment>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {EXPERIMENT_COLUMNS} FROM experiments"))?;
    let mut all: Vec<Experiment> = stmt.query_map([], experiment_of)?.collect::<Sql<_>>()?;
    let mut tags: HashMap<String, Vec<KeyValue>> = HashMap::new();
    let mut stmt =
        conn.prepare_cached("SELECT experiment_id, key, value FROM experiment_tags ORDER BY key")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?.to_string(),
            KeyValue {
                key: r.get(1)?,
                value: r.get(2)?,
            },
        ))
    })?;
    for row in rows {
        let (id, kv) = row?;
        tags.entry(id).or_default().push(kv);
    }
    for e in &mut all {
        e.tags = tags.remove(&e.experiment_id).unwrap_or_default();
    }
    Ok(all)
}

pub(crate) fn insert_experiment(
    conn: &Connection,
    name: &str,
    artifact_location: Option<&str>,
    now: i64,
) -> Sql<i64> {
    let id: i64 = conn.query_row(
        "SELECT COALESCE(MAX(id), -1) + 1 FROM experiments",
        [],
        |r| r.get(0),
    )?;
    let location = artifact_location
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("mlflow-artifacts:/{id}"));
    conn.execute(
        "INSERT INTO experiments (id, name, artifact_location, lifecycle_stage, creation_time, \
         last_update_time) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![id, name, location, ACTIVE, now],
    )?;
    Ok(id)
}

pub(crate) fn set_experiment_tag(conn: &Connection, id: i64, key: &str, value: &str) -> Sql<()> {
    conn.prepare_cached(
        "INSERT INTO experiment_tags (experiment_id, key, value) VALUES (?1, ?2, ?3) \
         ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![id, key, value])?;
    Ok(())
}

// ---- runs ----

/// A run's row number and lifecycle stage, by its id.
pub(crate) fn run_row(conn: &Connection, id: &str) -> Sql<Option<(i64, String)>> {
    conn.prepare_cached("SELECT seq, lifecycle_stage FROM runs WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

const RUN_COLUMNS: &str = "seq, id, name, experiment_id, user_id, status, start_time, end_time, \
                           artifact_uri, lifecycle_stage";

fn run_info_of(row: &Row) -> Sql<(i64, RunInfo)> {
    let id: String = row.get(1)?;
    Ok((
        row.get(0)?,
        RunInfo {
            run_uuid: id.clone(),
            run_id: id,
            run_name: row.get(2)?,
            experiment_id: row.get::<_, i64>(3)?.to_string(),
            user_id: row.get(4)?,
            status: row.get(5)?,
            start_time: row.get(6)?,
            end_time: row.get(7)?,
            artifact_uri: row.get(8)?,
            lifecycle_stage: row.get(9)?,
        },
    ))
}

pub(crate) fn run_info(conn: &Connection, id: &str) -> Sql<Option<(i64, RunInfo)>> {
    conn.prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))?
        .query_row([id], run_info_of)
        .optional()
}

fn key_values(conn: &Connection, table: &str, seq: i64) -> Sql<Vec<KeyValue>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT key, value FROM {table} WHERE run = ?1 ORDER BY key"
    ))?;
    stmt.query_map([seq], |r| {
        Ok(KeyValue {
            key: r.get(0)?,
            value: r.get(1)?,
        })
    })?
    .collect()
}

fn point_value(value: f64, is_nan: bool) -> f64 {
    if is_nan { f64::NAN } else { value }
}

fn latest_metrics(conn: &Connection, seq: i64) -> Sql<Vec<Metric>> {
    let mut stmt = conn.prepare_cached(
        "SELECT key, value, is_nan, timestamp, step FROM metric_series WHERE run = ?1 \
         ORDER BY key",
    )?;
    stmt.query_map([seq], |r| {
        Ok(Metric {
            key: r.get(0)?,
            value: point_value(r.get(1)?, r.get(2)?),
            timestamp: r.get(3)?,
            step: r.get(4)?,
        })
    })?
    .collect()
}

fn run_inputs(conn: &Connection, seq: i64) -> Sql<RunInputs> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.name, d.digest, d.source_type, d.source, d.schema, d.profile, i.tags \
         FROM run_inputs i JOIN datasets d ON d.id = i.dataset WHERE i.run = ?1 ORDER BY d.id",
    )?;
    let dataset_inputs = stmt
        .query_map([seq], |r| {
            let tags: String = r.get(6)?;
            Ok(DatasetInput {
                tags: serde_json::from_str(&tags).unwrap_or_default(),
                dataset: Dataset {
                    name: r.get(0)?,
                    digest: r.get(1)?,
                    source_type: r.get(2)?,
                    source: r.get(3)?,
                    schema: r.get(4)?,
                    profile: r.get(5)?,
                },
            })
        })?
        .collect::<Sql<_>>()?;
    Ok(RunInputs { dataset_inputs })
}

/// A whole run: info, params, tags, latest metrics, inputs.
pub(crate) fn run(conn: &Connection, id: &str) -> Sql<Option<Run>> {
    match run_info(conn, id)? {
        None => Ok(None),
        Some((seq, info)) => Ok(Some(full_run(conn, seq, info)?)),
    }
}

fn full_run(conn: &Connection, seq: i64, info: RunInfo) -> Sql<Run> {
    Ok(Run {
        info,
        data: RunData {
            metrics: latest_metrics(conn, seq)?,
            params: key_values(conn, "params", seq)?,
            tags: key_values(conn, "tags", seq)?,
        },
        inputs: run_inputs(conn, seq)?,
    })
}

/// Every run of these experiments, whole, in MLflow's default order (newest start first, then
/// by id).
pub(crate) fn runs_of(conn: &Connection, experiments: &[i64]) -> Sql<Vec<Run>> {
    let mut out = Vec::new();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE experiment_id = ?1"
    ))?;
    for exp in experiments {
        let infos = stmt
            .query_map([exp], run_info_of)?
            .collect::<Sql<Vec<_>>>()?;
        for (seq, info) in infos {
            out.push(full_run(conn, seq, info)?);
        }
    }
    out.sort_by(|a, b| {
        b.info
            .start_time
            .cmp(&a.info.start_time)
            .then_with(|| a.info.run_id.cmp(&b.info.run_id))
    });
    Ok(out)
}

pub(crate) fn insert_run(conn: &Connection, info: &RunInfo, experiment: i64) -> Sql<i64> {
    conn.execute(
        "INSERT INTO runs (id, experiment_id, name, user_id, status, start_time, end_time, \
         artifact_uri, lifecycle_stage) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            info.run_id,
            experiment,
            info.run_name,
            info.user_id,
            info.status,
            info.start_time,
            info.end_time,
            info.artifact_uri,
            info.lifecycle_stage
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

pub(crate) fn set_tag(conn: &Connection, seq: i64, key: &str, value: &str) -> Sql<()> {
    conn.prepare_cached(
        "INSERT INTO tags (run, key, value) VALUES (?1, ?2, ?3) \
         ON CONFLICT (run, key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![seq, key, value])?;
    Ok(())
}

pub(crate) fn param(conn: &Connection, seq: i64, key: &str) -> Sql<Option<String>> {
    conn.prepare_cached("SELECT value FROM params WHERE run = ?1 AND key = ?2")?
        .query_row(params![seq, key], |r| r.get(0))
        .optional()
}

pub(crate) fn insert_param(conn: &Connection, seq: i64, key: &str, value: &str) -> Sql<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO params (run, key, value) VALUES (?1, ?2, ?3)")?
        .execute(params![seq, key, value])?;
    Ok(())
}

/// Adds points to a run's metrics and moves each key's latest value, as MLflow decides it: the
/// greatest (step, timestamp, value), a NaN counting as 0.
pub(crate) fn insert_metrics(conn: &Connection, seq: i64, points: &[Metric]) -> Sql<()> {
    struct Series {
        id: i64,
        latest: (i64, i64, f64),
        latest_nan: bool,
        moved: bool,
    }
    let mut series: HashMap<&str, Series> = HashMap::new();
    let mut find = conn.prepare_cached(
        "SELECT id, step, timestamp, value, is_nan FROM metric_series WHERE run = ?1 AND key = ?2",
    )?;
    let mut create = conn.prepare_cached(
        "INSERT INTO metric_series (run, key, value, is_nan, timestamp, step) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut point = conn.prepare_cached(
        "INSERT OR IGNORE INTO metrics (series, timestamp, step, value, is_nan) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for m in points {
        let is_nan = m.value.is_nan();
        let stored = if is_nan { 0.0 } else { m.value };
        let order = (m.step, m.timestamp, stored);
        if !series.contains_key(m.key.as_str()) {
            let found = find
                .query_row(params![seq, m.key], |r| {
                    Ok(Series {
                        id: r.get(0)?,
                        latest: (r.get(1)?, r.get(2)?, r.get(3)?),
                        latest_nan: r.get(4)?,
                        moved: false,
                    })
                })
                .optional()?;
            let s = match found {
                Some(s) => s,
                None => {
                    create.execute(params![seq, m.key, stored, is_nan, m.timestamp, m.step])?;
                    Series {
                        id: conn.last_insert_rowid(),
                        latest: order,
                        latest_nan: is_nan,
                        moved: false,
                    }
                }
            };
            series.insert(m.key.as_str(), s);
        }
        let Some(s) = series.get_mut(m.key.as_str()) else {
            continue;
        };
        point.execute(params![s.id, m.timestamp, m.step, stored, is_nan])?;
        if later(order, s.latest) {
            s.latest = order;
            s.latest_nan = is_nan;
            s.moved = true;
        }
    }
    let mut update = conn.prepare_cached(
        "UPDATE metric_series SET step = ?2, timestamp = ?3, value = ?4, is_nan = ?5 WHERE id = ?1",
    )?;
    for s in series.values().filter(|s| s.moved) {
        let (step, timestamp, value) = s.latest;
        update.execute(params![s.id, step, timestamp, value, s.latest_nan])?;
    }
    Ok(())
}

fn later(a: (i64, i64, f64), b: (i64, i64, f64)) -> bool {
    (a.0, a.1).cmp(&(b.0, b.1)).then(a.2.total_cmp(&b.2)) == std::cmp::Ordering::Greater
}

/// A page of a metric's history, in MLflow's order (timestamp, step, value).
pub(crate) fn history(
    conn: &Connection,
    seq: i64,
    key: &str,
    offset: usize,
    limit: usize,
) -> Sql<Vec<Metric>> {
    let series: Option<i64> = conn
        .prepare_cached("SELECT id FROM metric_series WHERE run = ?1 AND key = ?2")?
        .query_row(params![seq, key], |r| r.get(0))
        .optional()?;
    let Some(series) = series else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT timestamp, step, value, is_nan FROM metrics WHERE series = ?1 \
         ORDER BY timestamp, step, value LIMIT ?2 OFFSET ?3",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    stmt.query_map(params![series, limit, offset], |r| {
        Ok(Metric {
            key: key.to_string(),
            timestamp: r.get(0)?,
            step: r.get(1)?,
            value: point_value(r.get(2)?, r.get(3)?),
        })
    })?
    .collect()
}

pub(crate) fn add_input(
    conn: &Connection,
    seq: i64,
    experiment: i64,
    input: &DatasetInput,
) -> Sql<()> {
    let d = &input.dataset;
    conn.prepare_cached(
        "INSERT INTO datasets (experiment_id, name, digest, source_type, source, schema, profile) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (experiment_id, name, digest) DO NOTHING",
    )?
    .execute(params![
        experiment,
        d.name,
        d.digest,
        d.source_type,
        d.source,
        d.schema,
        d.profile
    ])?;
    let dataset: i64 = conn
        .prepare_cached(
            "SELECT id FROM datasets WHERE experiment_id = ?1 AND name = ?2 AND digest = ?3",
        )?
        .query_row(params![experiment, d.name, d.digest], |r| r.get(0))?;
    let tags = serde_json::to_string(&input.tags).unwrap_or_else(|_| "[]".into());
    conn.prepare_cached(
        "INSERT INTO run_inputs (run, dataset, tags) VALUES (?1, ?2, ?3) \
         ON CONFLICT (run, dataset) DO UPDATE SET tags = excluded.tags",
    )?
    .execute(params![seq, dataset, tags])?;
    Ok(())
}
