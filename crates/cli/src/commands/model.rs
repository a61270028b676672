//! `petri model register|ls|show|alias|rm`: the model registry through `/api/v1/models`.
//! A version comes from a run's artifact (`runs:/<run>/<path>`, a job's run by `job:<n>/<path>`,
//! `models:/m-…`) or from a local file or folder, whose files are uploaded one by one, streamed,
//! then registered together.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use petri_client::{Client, Method, enc};
use petri_domain::job::format_ms;
use serde_json::{Value, json};

use crate::output;

#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    pub command: ModelCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Register a new version (the model is made when the name is new).
    Register(RegisterArgs),
    /// Registered models: latest version, aliases.
    Ls(LsArgs),
    /// A model's versions and alias history, or one version (`NAME@ALIAS`, `NAME/3`).
    Show(ShowArgs),
    /// Point an alias at a version, or remove it with --rm (every move is kept).
    Alias(AliasArgs),
    /// Remove a model, or one of its versions (`NAME/3`).
    Rm(RmArgs),
    /// Serve a version: NAME@ALIAS (follows the alias when it moves), NAME/VERSION, or NAME.
    Serve(ServeArgs),
    /// Stop serving a deployment.
    Unserve(UnserveArgs),
    /// The deployments: where to call them, their version, replicas and state.
    Endpoints(EndpointsArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// NAME@ALIAS, NAME/VERSION or NAME.
    pub model: String,
    /// The deployment's name in /v2/models/{name} (default: the model's).
    #[arg(long)]
    pub name: Option<String>,
    /// GPU memory each replica reserves, e.g. 2GiB (default: CPU only).
    #[arg(long, value_name = "SIZE")]
    pub gpu_mem: Option<String>,
    /// How many processes serve it.
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    /// The most rows one run of the network takes (1: no batching).
    #[arg(long, default_value_t = 64)]
    pub max_batch: usize,
    /// How long a request waits for others to batch with, e.g. 2ms (0ms: a batch is what
    /// queued while the replicas were busy; a lone request waits for nothing).
    #[arg(long, default_value = "0ms")]
    pub max_delay: String,
    /// Wait until it answers (or fails), then print its endpoints.
    #[arg(long)]
    pub wait: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UnserveArgs {
    pub name: String,
}

#[derive(Debug, Args)]
pub struct EndpointsArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The registered model's name.
    pub name: String,
    /// A local file or folder, or a run's artifact: `runs:/<run>/<path>`, `job:<n>/<path>`
    /// (the run of job n), `models:/m-<id>`.
    pub source: String,
    #[arg(long, short = 'd')]
    pub description: Option<String>,
    /// A tag of the version, KEY=VALUE (repeat for more).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// Point this alias at the new version.
    #[arg(long)]
    pub alias: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// A filter in MLflow's grammar, e.g. "name LIKE 'iris%'".
    #[arg(long, short = 'f')]
    pub filter: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// `NAME`, `NAME/VERSION` or `NAME@ALIAS`.
    pub model: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AliasArgs {
    pub name: String,
    pub alias: String,
    /// The version it points at (leave out with --rm).
    #[arg(required_unless_present = "rm")]
    pub version: Option<i64>,
    /// Remove the alias instead.
    #[arg(long, conflicts_with = "version")]
    pub rm: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// `NAME` (the model, every version) or `NAME/VERSION`.
    pub model: String,
}

pub async fn run(client: &Client, args: ModelArgs) -> anyhow::Result<()> {
    match args.command {
        ModelCommand::Register(a) => register(client, a).await,
        ModelCommand::Ls(a) => ls(client, a).await,
        ModelCommand::Show(a) => show(client, a).await,
        ModelCommand::Alias(a) => alias(client, a).await,
        ModelCommand::Rm(a) => rm(client, a).await,
        ModelCommand::Serve(a) => serve(client, a).await,
        ModelCommand::Unserve(a) => unserve(client, a).await,
        ModelCommand::Endpoints(a) => endpoints(client, a).await,
    }
}

/// `NAME/3` → (NAME, Some("3")); `NAME@champion` → (NAME, Some("champion")).
fn split_ref(r: &str) -> (String, Option<String>) {
    if let Some((n, a)) = r.rsplit_once('@') {
        return (n.to_string(), Some(a.to_string()));
    }
    match r.rsplit_once('/') {
        Some((n, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            (n.to_string(), Some(v.to_string()))
        }
        _ => (r.to_string(), None),
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Every file under `root` (or `root` itself), with its path inside the version.
fn files_of(root: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let meta = std::fs::metadata(root).with_context(|| format!("reading {}", root.display()))?;
    if meta.is_file() {
        let name = root
            .file_name()
            .and_then(|n| n.to_str())
            .context("the file's name is not UTF-8")?;
        return Ok(vec![(name.to_string(), root.to_path_buf())]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let e = e?;
            let path = e.path();
            let kind = e.file_type()?;
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                let rel = path
                    .strip_prefix(root)
                    .ok()
                    .and_then(|p| p.to_str())
                    .with_context(|| format!("{} is not a UTF-8 path", path.display()))?;
                out.push((rel.replace(std::path::MAIN_SEPARATOR, "/"), path));
            }
            // Symbolic links and other special files are not followed: a model is its files.
        }
    }
    out.sort();
    Ok(out)
}

async fn register(client: &Client, a: RegisterArgs) -> anyhow::Result<()> {
    let mut tags = serde_json::Map::new();
    for t in &a.tags {
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--tag takes KEY=VALUE, not `{t}`"))?;
        tags.insert(k.to_string(), json!(v));
    }
    let mut body = json!({ "description": a.description, "tags": tags });
    if let Some(rest) = a.source.strip_prefix("job:") {
        // The job's own run: its id is the job's UUID without dashes.
        let (job, path) = rest.split_once('/').unwrap_or((rest, ""));
        let job = client
            .job(job)
            .await
            .with_context(|| format!("no job `{job}`"))?;
        body["source"] = json!(format!("runs:/{}/{path}", job.id.0.simple()));
    } else if a.source.contains(":/") {
        body["source"] = json!(a.source);
    } else {
        let files = files_of(Path::new(&a.source))?;
        if files.is_empty() {
            anyhow::bail!("{} holds no files", a.source);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let upload = format!("cli-{}-{nanos}", std::process::id());
        for (rel, path) in &files {
            let route = format!(
                "/api/v1/model-uploads/{upload}/{}",
                rel.split('/').map(enc).collect::<Vec<_>>().join("/")
            );
            client
                .put_file(&route, path)
                .await
                .with_context(|| format!("uploading {}", path.display()))?;
        }
        body["upload"] = json!(upload);
    }
    let made = client
        .call(
            Method::POST,
            &format!("/api/v1/models/{}/versions", enc(&a.name)),
            Some(&body),
        )
        .await?;
    let version = made["version"].as_str().unwrap_or("").to_string();
    if let Some(alias) = &a.alias {
        client
            .call(
                Method::PUT,
                &format!("/api/v1/models/{}/aliases/{}", enc(&a.name), enc(alias)),
                Some(&json!({ "version": version.parse::<i64>().unwrap_or(0) })),
            )
            .await?;
    }
    if a.json {
        return output::print_json(&made);
    }
    println!(
        "registered {} version {version} ({}, runtime {}, {} file(s)){}",
        a.name,
        s(&made["format"]),
        s(&made["runtime"]),
        made["files"].as_array().map_or(0, Vec::len),
        a.alias
            .as_ref()
            .map(|al| format!(", @{al}"))
            .unwrap_or_default()
    );
    Ok(())
}

async fn ls(client: &Client, a: LsArgs) -> anyhow::Result<()> {
    let route = match &a.filter {
        Some(f) => format!("/api/v1/models?filter={}", enc(f)),
        None => "/api/v1/models".to_string(),
    };
    let models = client.call(Method::GET, &route, None).await?;
    if a.json {
        return output::print_json(&models);
    }
    let models = models.as_array().cloned().unwrap_or_default();
    if models.is_empty() {
        println!("no registered models");
        return Ok(());
    }
    let mut t = output::new_table(&["NAME", "LATEST", "ALIASES", "UPDATED", "DESCRIPTION"]);
    for m in &models {
        let aliases = m["aliases"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|x| format!("@{}→{}", s(&x["alias"]), s(&x["version"])))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        t.add_row(vec![
            s(&m["name"]),
            s(&m["latest_versions"][0]["version"]),
            aliases,
            m["last_updated_timestamp"]
                .as_i64()
                .map(format_ms)
                .unwrap_or_default(),
            s(&m["description"]),
        ]);
    }
    println!("{t}");
    Ok(())
}

fn lineage_line(l: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(r) = l["run"].as_str() {
        parts.push(format!("run {r}"));
    }
    if let Some(j) = l["job"].as_str() {
        parts.push(format!("job {j}"));
    }
    if let Some(p) = l["pipeline_run"].as_str() {
        parts.push(format!("pipeline run {p}"));
    }
    parts.join(", ")
}

async fn show(client: &Client, a: ShowArgs) -> anyhow::Result<()> {
    let (name, version) = split_ref(&a.model);
    if let Some(v) = version {
        let d = client
            .call(
                Method::GET,
                &format!("/api/v1/models/{}/versions/{}", enc(&name), enc(&v)),
                None,
            )
            .await?;
        if a.json {
            return output::print_json(&d);
        }
        return show_version(&d);
    }
    let d = client
        .call(Method::GET, &format!("/api/v1/models/{}", enc(&name)), None)
        .await?;
    if a.json {
        return output::print_json(&d);
    }
    let m = &d["model"];
    println!("model:   {}", s(&m["name"]));
    if !s(&m["description"]).is_empty() {
        println!("about:   {}", s(&m["description"]));
    }
    if let Some(c) = m["creation_timestamp"].as_i64() {
        println!("created: {}", format_ms(c));
    }
    let versions = d["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        println!("no versions");
    } else {
        let mut t = output::new_table(&[
            "VERSION", "ALIASES", "FORMAT", "RUNTIME", "CREATED", "BY", "FROM",
        ]);
        for v in &versions {
            let aliases = v["aliases"]
                .as_array()
                .map(|all| {
                    all.iter()
                        .map(|x| format!("@{}", s(x)))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            t.add_row(vec![
                s(&v["version"]),
                aliases,
                s(&v["format"]),
                s(&v["runtime"]),
                v["creation_timestamp"]
                    .as_i64()
                    .map(format_ms)
                    .unwrap_or_default(),
                s(&v["user_id"]),
                match lineage_line(&v["lineage"]) {
                    l if l.is_empty() => s(&v["source"]),
                    l => l,
                },
            ]);
        }
        println!("{t}");
    }
    let history = d["alias_history"].as_array().cloned().unwrap_or_default();
    if !history.is_empty() {
        println!("alias history:");
        for e in &history {
            let from = e["from_version"].as_i64();
            let to = e["to_version"].as_i64();
            let what = match (from, to) {
                (None, Some(t)) => format!("set to {t}"),
                (Some(f), Some(t)) => format!("moved {f} → {t}"),
                (Some(f), None) => format!("removed (was {f})"),
                (None, None) => "changed".to_string(),
            };
            println!(
                "  {}  @{} {what} by {}",
                e["time"].as_i64().map(format_ms).unwrap_or_default(),
                s(&e["alias"]),
                s(&e["user"])
            );
        }
    }
    Ok(())
}

fn show_version(d: &Value) -> anyhow::Result<()> {
    println!("model:    {} version {}", s(&d["name"]), s(&d["version"]));
    if let Some(a) = d["aliases"].as_array().filter(|a| !a.is_empty()) {
        let names: Vec<String> = a.iter().map(|x| format!("@{}", s(x))).collect();
        println!("aliases:  {}", names.join(" "));
    }
    println!("format:   {}", s(&d["format"]));
    let flavours: Vec<String> = d["flavours"]
        .as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default();
    if !flavours.is_empty() {
        println!("flavours: {}", flavours.join(", "));
    }
    println!("runtime:  {}", s(&d["runtime"]));
    println!("source:   {}", s(&d["source"]));
    if let Some(c) = d["creation_timestamp"].as_i64() {
        println!("created:  {} by {}", format_ms(c), s(&d["user_id"]));
    }
    if !s(&d["description"]).is_empty() {
        println!("about:    {}", s(&d["description"]));
    }
    let l = &d["lineage"];
    for (label, key) in [("run", "run"), ("job", "job"), ("pipeline", "pipeline_run")] {
        if let Some(v) = l[key].as_str() {
            println!("{label:<9} {v}");
        }
    }
    if let Some(inputs) = l["inputs"].as_array().filter(|a| !a.is_empty()) {
        println!("inputs:");
        for i in inputs {
            println!("  {}  {}", s(&i["name"]), s(&i["digest"]));
        }
    }
    if let Some(tags) = d["tags"].as_array().filter(|a| !a.is_empty()) {
        println!("tags:");
        for t in tags {
            println!("  {}={}", s(&t["key"]), s(&t["value"]));
        }
    }
    let files = d["files"].as_array().cloned().unwrap_or_default();
    println!("files:");
    let mut t = output::new_table(&["PATH", "SIZE", "DIGEST"]);
    for f in &files {
        t.add_row(vec![s(&f["path"]), s(&f["size"]), s(&f["digest"])]);
    }
    println!("{t}");
    Ok(())
}

async fn alias(client: &Client, a: AliasArgs) -> anyhow::Result<()> {
    let route = format!("/api/v1/models/{}/aliases/{}", enc(&a.name), enc(&a.alias));
    if a.rm {
        client.call(Method::DELETE, &route, None).await?;
        println!("removed @{} of {}", a.alias, a.name);
        return Ok(());
    }
    let version = a.version.context("name the version the alias points at")?;
    client
        .call(Method::PUT, &route, Some(&json!({ "version": version })))
        .await?;
    println!("{}@{} → version {version}", a.name, a.alias);
    Ok(())
}

async fn rm(client: &Client, a: RmArgs) -> anyhow::Result<()> {
    let (name, version) = split_ref(&a.model);
    match version {
        Some(v) => {
            client
                .call(
                    Method::DELETE,
                    &format!("/api/v1/models/{}/versions/{}", enc(&name), enc(&v)),
                    None,
                )
                .await?;
            println!("removed {name} version {v}");
        }
        None => {
            client
                .call(
                    Method::DELETE,
                    &format!("/api/v1/models/{}", enc(&name)),
                    None,
                )
                .await?;
            println!("removed {name} and every version");
        }
    }
    Ok(())
}

async fn serve(client: &Client, a: ServeArgs) -> anyhow::Result<()> {
    let body = json!({
        "model": a.model,
        "name": a.name,
        "replicas": a.replicas,
        "gpu_memory": a.gpu_mem,
        "max_batch": a.max_batch,
        "max_delay": a.max_delay,
    });
    let mut d = client
        .call(Method::POST, "/api/v1/deployments", Some(&body))
        .await?;
    let name = s(&d["name"]);
    if a.wait {
        let began = std::time::Instant::now();
        while !matches!(d["state"].as_str(), Some("ready" | "failed")) {
            if began.elapsed() > std::time::Duration::from_secs(180) {
                anyhow::bail!("{name} did not become ready within 3 minutes");
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            d = client
                .call(
                    Method::GET,
                    &format!("/api/v1/deployments/{}", enc(&name)),
                    None,
                )
                .await?;
        }
        if d["state"] == "failed" {
            anyhow::bail!(
                "{name} failed to start: {}",
                d["reason"]
                    .as_str()
                    .unwrap_or("see `petri model endpoints`")
            );
        }
    }
    if a.json {
        return output::print_json(&d);
    }
    println!(
        "serving {} version {} as {name} ({}): POST {}",
        s(&d["model"]),
        s(&d["version"]),
        s(&d["state"]),
        endpoint(client, &d)
    );
    Ok(())
}

async fn unserve(client: &Client, a: UnserveArgs) -> anyhow::Result<()> {
    client
        .call(
            Method::DELETE,
            &format!("/api/v1/deployments/{}", enc(&a.name)),
            None,
        )
        .await?;
    println!("unserved {}", a.name);
    Ok(())
}

/// Where a deployment answers: on the address this client reaches the daemon by, or (over the
/// daemon's socket, which no inference client speaks) the daemon's TCP address, as it says.
fn endpoint(client: &Client, d: &Value) -> String {
    match d["infer_url"].as_str() {
        Some(url) if client.socket().is_some() => url.to_string(),
        _ => format!("{}{}", client.base(), s(&d["infer_path"])),
    }
}

async fn endpoints(client: &Client, a: EndpointsArgs) -> anyhow::Result<()> {
    let all = client
        .call(Method::GET, "/api/v1/deployments", None)
        .await?;
    if a.json {
        return output::print_json(&all);
    }
    let all = all.as_array().cloned().unwrap_or_default();
    if all.is_empty() {
        println!("nothing is served; `petri model serve NAME@ALIAS` serves a registered model");
        return Ok(());
    }
    let mut t = output::new_table(&["NAME", "MODEL", "VERSION", "STATE", "REPLICAS", "ENDPOINT"]);
    for d in &all {
        let replicas = d["replicas"].as_array().cloned().unwrap_or_default();
        let ready = replicas.iter().filter(|r| r["state"] == "ready").count();
        let mut state = s(&d["state"]);
        if let Some(why) = d["reason"].as_str() {
            state = format!("{state}: {why}");
        }
        t.add_row(vec![
            s(&d["name"]),
            format!("{} ({})", s(&d["model"]), s(&d["selector"])),
            s(&d["version"]),
            state,
            format!("{ready}/{}", replicas.len()),
            endpoint(client, d),
        ]);
    }
    println!("{t}");
    Ok(())
}
