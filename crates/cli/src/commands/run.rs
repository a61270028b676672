//! `petri run ls|show`: tracking runs (MLflow's runs, logged by jobs or any MLflow client),
//! read through the daemon's MLflow routes.

use anyhow::Context;
use clap::{Args, Subcommand};
use petri_client::{Client, ClientError, Method, enc};
use petri_domain::job::format_ms;
use serde_json::{Value, json};

use crate::output;

/// The run tag that names the job a run belongs to (set by the daemon).
const JOB_TAG: &str = "petri.job_id";

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(subcommand)]
    pub command: RunCommand,
}

#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// Runs, newest first: their status, job and latest metrics.
    Ls(LsArgs),
    /// One run: its params, latest metrics, tags and job.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Runs of this experiment only (by name; default: every active experiment).
    #[arg(long, short = 'e')]
    pub experiment: Option<String>,
    /// A filter in MLflow's grammar, e.g. "metrics.acc > 0.9 and params.opt = 'adam'".
    #[arg(long, short = 'f')]
    pub filter: Option<String>,
    /// At most this many runs.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A run id, or a job's number or id (the job's own run).
    pub run: String,
    #[arg(long)]
    pub json: bool,
}

/// An MLflow route's refusal in its own words (`RESOURCE_DOES_NOT_EXIST: ...`).
fn explain(e: ClientError) -> anyhow::Error {
    if let ClientError::Http { message, .. } = &e
        && let Some(start) = message.find('{')
        && let Ok(body) = serde_json::from_str::<Value>(&message[start..])
        && let Some(msg) = body["message"].as_str()
    {
        let code = body["error_code"].as_str().unwrap_or("ERROR");
        return anyhow::anyhow!("{code}: {msg}");
    }
    e.into()
}

async fn call(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    client
        .call(method, &format!("/api/2.0/mlflow/{path}"), body.as_ref())
        .await
        .map_err(explain)
}

pub async fn run(client: &Client, args: RunArgs) -> anyhow::Result<()> {
    match args.command {
        RunCommand::Ls(a) => ls(client, a).await,
        RunCommand::Show(a) => show(client, a).await,
    }
}

fn tag<'a>(run: &'a Value, key: &str) -> Option<&'a str> {
    run["data"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
}

fn int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// An experiment's names by id.
async fn experiment_names(client: &Client) -> anyhow::Result<Vec<(String, String)>> {
    let found = call(
        client,
        Method::POST,
        "experiments/search",
        Some(json!({ "max_results": 50000 })),
    )
    .await?;
    Ok(found["experiments"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|e| {
                    (
                        e["experiment_id"].as_str().unwrap_or("").to_string(),
                        e["name"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

async fn ls(client: &Client, a: LsArgs) -> anyhow::Result<()> {
    let experiments = experiment_names(client).await?;
    let ids: Vec<String> = match &a.experiment {
        Some(name) => {
            let found = call(
                client,
                Method::GET,
                &format!("experiments/get-by-name?experiment_name={}", enc(name)),
                None,
            )
            .await?;
            vec![
                found["experiment"]["experiment_id"]
                    .as_str()
                    .context("the daemon answered an experiment without an id")?
                    .to_string(),
            ]
        }
        None => experiments.iter().map(|(id, _)| id.clone()).collect(),
    };
    let found = call(
        client,
        Method::POST,
        "runs/search",
        Some(json!({
            "experiment_ids": ids,
            "filter": a.filter.clone().unwrap_or_default(),
            "max_results": a.limit,
            "order_by": ["attributes.start_time DESC"],
        })),
    )
    .await?;
    let runs = found["runs"].as_array().cloned().unwrap_or_default();
    if a.json {
        return output::print_json(&runs);
    }
    if runs.is_empty() {
        println!("no runs");
        return Ok(());
    }
    let mut t = output::new_table(&[
        "RUN",
        "NAME",
        "EXPERIMENT",
        "STATUS",
        "STARTED",
        "JOB",
        "METRICS",
    ]);
    for r in &runs {
        let info = &r["info"];
        let exp_id = info["experiment_id"].as_str().unwrap_or("");
        let exp = experiments
            .iter()
            .find(|(id, _)| id == exp_id)
            .map_or(exp_id, |(_, name)| name.as_str());
        let metrics = r["data"]["metrics"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .take(4)
                    .map(|m| format!("{}={}", m["key"].as_str().unwrap_or(""), m["value"]))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        t.add_row(vec![
            info["run_id"].as_str().unwrap_or("").to_string(),
            info["run_name"].as_str().unwrap_or("").to_string(),
            exp.to_string(),
            info["status"].as_str().unwrap_or("").to_string(),
            int(&info["start_time"]).map(format_ms).unwrap_or_default(),
            tag(r, JOB_TAG).unwrap_or("").to_string(),
            metrics,
        ]);
    }
    println!("{t}");
    Ok(())
}

/// A run id as it is, or the run of a job named by its number or id.
async fn run_id_of(
    client: &Client,
    key: &str,
) -> anyhow::Result<(String, Option<petri_domain::Job>)> {
    if key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok((key.to_ascii_lowercase(), None));
    }
    let job = client
        .job(key)
        .await
        .with_context(|| format!("`{key}` is neither a run id (32 hex digits) nor a job"))?;
    Ok((job.id.0.simple().to_string(), Some(job)))
}

async fn show(client: &Client, a: ShowArgs) -> anyhow::Result<()> {
    let (id, job) = run_id_of(client, &a.run).await?;
    let found = match call(
        client,
        Method::GET,
        &format!("runs/get?run_id={}", enc(&id)),
        None,
    )
    .await
    {
        Ok(found) => found,
        Err(e) if job.is_some() && e.to_string().starts_with("RESOURCE_DOES_NOT_EXIST") => {
            let job = job.as_ref().map(|j| j.number).unwrap_or_default();
            anyhow::bail!("job {job} has not tracked anything yet: it has no run");
        }
        Err(e) => return Err(e),
    };
    let run = &found["run"];
    if a.json {
        return output::print_json(run);
    }
    let info = &run["info"];
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    println!("run:        {}", s(&info["run_id"]));
    println!("name:       {}", s(&info["run_name"]));
    println!("experiment: {}", s(&info["experiment_id"]));
    println!("status:     {}", s(&info["status"]));
    println!("user:       {}", s(&info["user_id"]));
    if let Some(start) = int(&info["start_time"]) {
        println!("started:    {}", format_ms(start));
    }
    if let Some(end) = int(&info["end_time"]) {
        println!("ended:      {}", format_ms(end));
    }
    println!("artifacts:  {}", s(&info["artifact_uri"]));
    if let Some(job_id) = tag(run, JOB_TAG) {
        let job = match job {
            Some(j) => Some(j),
            None => client.job(job_id).await.ok(),
        };
        match job {
            Some(j) => println!("job:        {} ({}, {})", j.number, j.name, j.state),
            None => println!("job:        {job_id} (no longer in the queue)"),
        }
    }
    let section = |title: &str, rows: Vec<(String, String)>| {
        if rows.is_empty() {
            return;
        }
        println!("{title}:");
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        for (k, v) in rows {
            println!("  {k:width$}  {v}");
        }
    };
    let pairs = |key: &str| -> Vec<(String, String)> {
        run["data"][key]
            .as_array()
            .map(|all| all.iter().map(|p| (s(&p["key"]), s(&p["value"]))).collect())
            .unwrap_or_default()
    };
    section("params", pairs("params"));
    let metrics = run["data"]["metrics"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|m| {
                    (
                        s(&m["key"]),
                        format!("{} (step {})", m["value"], int(&m["step"]).unwrap_or(0)),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    section("metrics", metrics);
    section("tags", pairs("tags"));
    Ok(())
}
