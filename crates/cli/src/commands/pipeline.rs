//! `petri pipeline validate|run|ls|show|retry|cancel|backfill|save|components`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use petri_client::Method;
use petri_client::{Client, ClientError, enc};
use petri_domain::ErrorCode;
use petri_domain::job::format_ms;
use serde_json::{Value, json};

use crate::output;

#[derive(Debug, Args)]
pub struct PipelineArgs {
    #[command(subcommand)]
    pub command: PipelineCommand,
}

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Check a pipeline file: every problem with its line and column; nothing runs.
    Validate(FileArgs),
    /// Run a pipeline file or a saved pipeline.
    Run(RunArgs),
    /// Saved pipelines and recent runs.
    Ls(LsArgs),
    /// A run's steps as a tree, with states and durations.
    Show(ShowArgs),
    /// Run a finished run again: from a step (and what depends on it), or its failed steps.
    Retry(RetryArgs),
    /// Cancel a run: its running steps are stopped.
    Cancel(KeyArgs),
    /// One run per fire of a saved pipeline's cron trigger in a time window.
    Backfill(BackfillArgs),
    /// Save a pipeline file under its `name:` (the canvas opens it; triggers start watching).
    Save(FileArgs),
    /// The components steps can `use`: built-in and your own.
    Components(JsonArgs),
}

#[derive(Debug, Args)]
pub struct FileArgs {
    pub file: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JsonArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A pipeline file, or the name of a saved pipeline.
    pub pipeline: String,
    /// A param, KEY=VALUE (repeat).
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Run every step; reuse no earlier outputs.
    #[arg(long)]
    pub no_cache: bool,
    /// Wait for the run to end, showing its steps (exit status 1 when it fails).
    #[arg(long, short = 'w')]
    pub wait: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Runs of this pipeline only.
    pub pipeline: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run's number or id.
    pub run: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    pub run: String,
    /// Rerun this step and everything after it; the rest keeps its outputs.
    #[arg(long)]
    pub from: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    pub run: String,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    pub name: String,
    /// Start of the window: RFC 3339 (2026-11-01T00:00:00Z) or milliseconds since the epoch.
    #[arg(long)]
    pub from: String,
    /// End of the window (inclusive).
    #[arg(long)]
    pub to: String,
}

fn read_file(file: &Path) -> anyhow::Result<(String, String)> {
    let yaml =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let abs = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let base = abs
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Ok((yaml, base))
}

/// Prints a pipeline's problems as `FILE:LINE:COL: message`.
fn print_errors(file: &str, errors: &[Value]) {
    for e in errors {
        let msg = e["message"].as_str().unwrap_or("");
        match (e["line"].as_u64(), e["column"].as_u64()) {
            (Some(l), Some(c)) => eprintln!("{file}:{l}:{c}: {msg}"),
            _ => eprintln!("{file}: {}: {msg}", e["path"].as_str().unwrap_or("")),
        }
    }
}

fn explain(file: &str, e: ClientError) -> anyhow::Error {
    if let ClientError::Api(body) = &e
        && body.code == ErrorCode::InvalidPipeline
        && let Some(errors) = body.details["errors"].as_array()
    {
        print_errors(file, errors);
        return anyhow::anyhow!("{} problem(s) in {file}; nothing was queued", errors.len());
    }
    e.into()
}

pub async fn run(client: &Client, args: PipelineArgs) -> anyhow::Result<()> {
    match args.command {
        PipelineCommand::Validate(a) => {
            let (yaml, _) = read_file(&a.file)?;
            let v = client
                .call(
                    Method::POST,
                    "/api/v1/pipelines/validate",
                    Some(&json!({ "yaml": yaml })),
                )
                .await?;
            if a.json {
                return output::print_json(&v);
            }
            let name = a.file.display().to_string();
            if v["valid"].as_bool() == Some(true) {
                let steps = v["steps"].as_array().map(|s| s.len()).unwrap_or(0);
                println!("{name}: valid, {steps} step(s)");
                Ok(())
            } else {
                let errors = v["errors"].as_array().cloned().unwrap_or_default();
                print_errors(&name, &errors);
                anyhow::bail!("{} problem(s) in {name}", errors.len())
            }
        }
        PipelineCommand::Save(a) => {
            let (yaml, base) = read_file(&a.file)?;
            let name = serde_yaml_ng::from_str::<Value>(&yaml)
                .ok()
                .and_then(|v| v["name"].as_str().map(str::to_string))
                .ok_or_else(|| {
                    anyhow::anyhow!("{} has no `name:` to save it under", a.file.display())
                })?;
            let saved = client
                .call(
                    Method::PUT,
                    &format!("/api/v1/pipelines/{}", enc(&name)),
                    Some(&json!({ "yaml": yaml, "base_dir": base })),
                )
                .await
                .map_err(|e| explain(&a.file.display().to_string(), e))?;
            if a.json {
                return output::print_json(&saved);
            }
            println!("saved pipeline `{name}`");
            Ok(())
        }
        PipelineCommand::Run(a) => {
            let mut params = serde_json::Map::new();
            for p in &a.params {
                let (k, v) = p
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--param takes KEY=VALUE, not `{p}`"))?;
                params.insert(k.to_string(), Value::String(v.to_string()));
            }
            let path = Path::new(&a.pipeline);
            let mut body = json!({ "params": params });
            if a.no_cache {
                body["cache"] = json!(false);
            }
            let label = if path.is_file() {
                let (yaml, base) = read_file(path)?;
                body["yaml"] = json!(yaml);
                body["base_dir"] = json!(base);
                a.pipeline.clone()
            } else {
                body["pipeline"] = json!(a.pipeline);
                a.pipeline.clone()
            };
            // Listen before the run exists, so that its end is not missed.
            let events = if a.wait {
                client.events().await.ok()
            } else {
                None
            };
            let run = client
                .call(Method::POST, "/api/v1/pipeline-runs", Some(&body))
                .await
                .map_err(|e| explain(&label, e))?;
            if !a.wait {
                if a.json {
                    return output::print_json(&run);
                }
                println!(
                    "run {} of `{}` queued; follow it with `petri pipeline show {}`",
                    run["number"],
                    run["pipeline"].as_str().unwrap_or(""),
                    run["number"]
                );
                return Ok(());
            }
            let key = run["id"].as_str().unwrap_or_default().to_string();
            // The run's end comes as an event; without the event stream, or should one be
            // missed, it is asked for again every second.
            let mut events = events.map(Box::pin);
            let last = loop {
                let r = client
                    .call(Method::GET, &format!("/api/v1/pipeline-runs/{key}"), None)
                    .await?;
                if is_over(&r["state"]) {
                    break r;
                }
                let ended = async {
                    match events.as_mut() {
                        Some(stream) => {
                            while let Some(Ok(ev)) = stream.next().await {
                                if let petri_domain::Event::PipelineRunChanged(c) = ev
                                    && c.id == key
                                    && is_over(&Value::from(c.state))
                                {
                                    return;
                                }
                            }
                            // The stream ended: poll from now on.
                            events = None;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), ended).await;
            };
            if a.json {
                output::print_json(&last)?;
            } else {
                print_run(&last);
            }
            if last["state"] != "succeeded" {
                anyhow::bail!(
                    "run {} {}",
                    last["number"],
                    last["state"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        PipelineCommand::Ls(a) => {
            let mut path = format!("/api/v1/pipeline-runs?limit={}", a.limit);
            if let Some(p) = &a.pipeline {
                path.push_str(&format!("&pipeline={}", enc(p)));
            }
            let runs = client.call(Method::GET, &path, None).await?;
            let saved = client.call(Method::GET, "/api/v1/pipelines", None).await?;
            if a.json {
                return output::print_json(&json!({ "pipelines": saved, "runs": runs }));
            }
            if let Some(list) = saved.as_array().filter(|l| !l.is_empty()) {
                println!(
                    "{:<24} {:>5}  {:<28} LAST RUN",
                    "PIPELINE", "STEPS", "TRIGGERS"
                );
                for p in list {
                    let trig: Vec<&str> = p["triggers"]
                        .as_array()
                        .map(|t| t.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let last = &p["last_run"];
                    println!(
                        "{:<24} {:>5}  {:<28} {}",
                        p["name"].as_str().unwrap_or(""),
                        p["steps"],
                        if trig.is_empty() {
                            "-".to_string()
                        } else {
                            trig.join(", ")
                        },
                        if last.is_null() {
                            "-".into()
                        } else {
                            format!(
                                "{} {}",
                                last["number"],
                                last["state"].as_str().unwrap_or("")
                            )
                        }
                    );
                }
                println!();
            }
            println!(
                "{:>5}  {:<24} {:<10} {:<20} {:<10} TRIGGER",
                "RUN", "PIPELINE", "STATE", "CREATED", "TOOK"
            );
            for r in runs.as_array().cloned().unwrap_or_default() {
                println!(
                    "{:>5}  {:<24} {:<10} {:<20} {:<10} {}",
                    r["number"].as_u64().unwrap_or(0),
                    r["pipeline"].as_str().unwrap_or(""),
                    r["state"].as_str().unwrap_or(""),
                    r["created_at"].as_i64().map(format_ms).unwrap_or_default(),
                    took(&r),
                    r["trigger"]["kind"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        PipelineCommand::Show(a) => {
            let r = client
                .call(
                    Method::GET,
                    &format!("/api/v1/pipeline-runs/{}", enc(&a.run)),
                    None,
                )
                .await?;
            if a.json {
                return output::print_json(&r);
            }
            print_run(&r);
            Ok(())
        }
        PipelineCommand::Retry(a) => {
            let r = client
                .call(
                    Method::POST,
                    &format!("/api/v1/pipeline-runs/{}/retry", enc(&a.run)),
                    Some(&json!({ "from": a.from })),
                )
                .await?;
            println!("run {} runs again (attempt {})", r["number"], r["attempt"]);
            Ok(())
        }
        PipelineCommand::Cancel(a) => {
            let r = client
                .call(
                    Method::POST,
                    &format!("/api/v1/pipeline-runs/{}/cancel", enc(&a.run)),
                    None,
                )
                .await?;
            println!("run {} is canceling", r["number"]);
            Ok(())
        }
        PipelineCommand::Backfill(a) => {
            let from = instant(&a.from)?;
            let to = instant(&a.to)?;
            let runs = client
                .call(
                    Method::POST,
                    &format!("/api/v1/pipelines/{}/backfill", enc(&a.name)),
                    Some(&json!({ "from": from, "to": to })),
                )
                .await?;
            let n = runs.as_array().map(|r| r.len()).unwrap_or(0);
            println!("{n} run(s) of `{}` queued", a.name);
            Ok(())
        }
        PipelineCommand::Components(a) => {
            let list = client.call(Method::GET, "/api/v1/components", None).await?;
            if a.json {
                return output::print_json(&list);
            }
            for c in list.as_array().cloned().unwrap_or_default() {
                let inputs: Vec<String> = c["inputs"]
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                match c["error"].as_str() {
                    Some(err) => println!(
                        "{:<14} {:<8} BROKEN: {err}",
                        c["name"].as_str().unwrap_or(""),
                        c["source"].as_str().unwrap_or("")
                    ),
                    None => println!(
                        "{:<14} {:<8} {}  (inputs: {})",
                        c["name"].as_str().unwrap_or(""),
                        c["source"].as_str().unwrap_or(""),
                        c["description"].as_str().unwrap_or(""),
                        inputs.join(", ")
                    ),
                }
            }
            Ok(())
        }
    }
}

fn is_over(state: &Value) -> bool {
    matches!(state.as_str(), Some("succeeded" | "failed" | "canceled"))
}

fn instant(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(s)
        .map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0)
        })
        .map_err(|e| anyhow::anyhow!("`{s}` is not a time (RFC 3339 or ms since the epoch): {e}"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn took(v: &Value) -> String {
    match (v["started_at"].as_i64(), v["finished_at"].as_i64()) {
        (Some(s), Some(f)) => format!("{:.1}s", (f - s) as f64 / 1000.0),
        (Some(s), None) => format!("{:.0}s…", (now_ms() - s) as f64 / 1000.0),
        _ => "-".into(),
    }
}

/// An output as one short piece of text: a file by its name, a long value cut.
fn short_output(v: &Value) -> String {
    if let Some(name) = v
        .get("$artifact")
        .and(v.get("name"))
        .and_then(Value::as_str)
    {
        let slash = if v["dir"] == true { "/" } else { "" };
        return format!("{name}{slash}");
    }
    let text = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(short_output)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    };
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(59).collect::<String>())
    } else {
        text
    }
}

fn print_run(r: &Value) {
    println!(
        "run {} of `{}`: {}{}",
        r["number"],
        r["pipeline"].as_str().unwrap_or(""),
        r["state"].as_str().unwrap_or(""),
        r["reason"]
            .as_str()
            .map(|x| format!(" — {x}"))
            .unwrap_or_default()
    );
    let steps = r["steps"].as_array().cloned().unwrap_or_default();
    // A tree by `needs`: each step under the last of its needs.
    let mut printed = std::collections::HashSet::new();
    fn line(s: &Value, depth: usize) {
        let job = s["job"]["number"]
            .as_u64()
            .map(|n| format!(" job {n}"))
            .unwrap_or_default();
        let items = s["items"]
            .as_array()
            .map(|i| format!(" ({} items)", i.len()))
            .filter(|_| s["items"].as_array().is_some_and(|i| !i.is_empty()))
            .unwrap_or_default();
        let cached = s["cached_from"]
            .as_str()
            .map(|c| format!(" from {c}"))
            .unwrap_or_default();
        println!(
            "{}{} {:<12} {:<9} {:>8}{job}{items}{cached}",
            "  ".repeat(depth + 1),
            if depth == 0 { "●" } else { "└" },
            s["name"].as_str().unwrap_or(""),
            s["state"].as_str().unwrap_or(""),
            took(s),
        );
        if let Some(why) = s["reason"]
            .as_str()
            .filter(|_| s["state"] == "failed" || s["state"] == "skipped")
        {
            for l in why.lines().take(12) {
                println!("{}    {l}", "  ".repeat(depth + 1));
            }
        }
        // What the step gave: values as they are, files by name.
        if let Some(outs) = s["outputs"].as_object().filter(|o| !o.is_empty()) {
            let shown: Vec<String> = outs
                .iter()
                .map(|(k, v)| format!("{k}={}", short_output(v)))
                .collect();
            println!("{}    {}", "  ".repeat(depth + 1), shown.join("  "));
        }
    }
    fn walk(
        name: &str,
        steps: &[Value],
        depth: usize,
        printed: &mut std::collections::HashSet<String>,
    ) {
        for s in steps.iter().filter(|s| {
            s["needs"]
                .as_array()
                .and_then(|n| n.last())
                .and_then(Value::as_str)
                == Some(name)
        }) {
            let n = s["name"].as_str().unwrap_or("").to_string();
            if printed.insert(n.clone()) {
                line(s, depth);
                walk(&n, steps, depth + 1, printed);
            }
        }
    }
    for s in steps
        .iter()
        .filter(|s| s["needs"].as_array().is_none_or(|n| n.is_empty()))
    {
        let n = s["name"].as_str().unwrap_or("").to_string();
        if printed.insert(n.clone()) {
            line(s, 0);
            walk(&n, &steps, 1, &mut printed);
        }
    }
}
