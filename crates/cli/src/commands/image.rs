//! `petri image build|ls`: Petri's default image, built without a registry; what the engine has.

use std::time::Duration;

use clap::{Args, Subcommand};
use petri_client::Client;
use petri_domain::{ByteSize, JobState};

use crate::output;

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build Petri's default Python + Jupyter image from Debian packages and PyPI.
    Build(BuildArgs),
    /// List the images the Docker engine has.
    Ls(LsArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Rebuild even when an image from the same recipe exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print the images as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: &Client, args: ImageArgs) -> anyhow::Result<()> {
    match args.command {
        ImageCommand::Build(a) => build(client, a).await,
        ImageCommand::Ls(a) => ls(client, a).await,
    }
}

/// The build runs as a job of the queue; this follows its log and shows the step it is at.
async fn build(client: &Client, a: BuildArgs) -> anyhow::Result<()> {
    let job = client.image_build(a.force).await?;
    let key = job.id.to_string();
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    bar.set_message(format!("queued as job #{}", job.number));
    let mut offset = 0;
    let mut pending = String::new();
    loop {
        let (bytes, next, done) = client.log(&key, offset).await?;
        offset = next;
        pending.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(i) = pending.find('\n') {
            let line: String = pending.drain(..=i).collect();
            let line = line.trim_end();
            if let Some(step) = line.strip_prefix("==> ") {
                bar.println(format!("  {step}"));
                bar.set_message(step.to_string());
            } else if line.starts_with("error:") {
                bar.println(line);
            }
        }
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    bar.finish_and_clear();
    let job = client.job(&key).await?;
    if job.state != JobState::Succeeded {
        anyhow::bail!(
            "the image build failed: {} (the whole log: `petri logs {}`)",
            job.reason.as_deref().unwrap_or("see its log"),
            job.number
        );
    }
    println!("done (log: `petri logs {}`)", job.number);
    Ok(())
}

async fn ls(client: &Client, a: LsArgs) -> anyhow::Result<()> {
    let images = client.images().await?;
    if a.json {
        return output::print_json(&images);
    }
    if images.is_empty() {
        println!(
            "The Docker engine has no images. Build Petri's default one with `petri image build`."
        );
        return Ok(());
    }
    let mut t = output::new_table(&["IMAGE", "ID", "SIZE", "CREATED", "RECIPE"]);
    let now = output::now_ms();
    for i in &images {
        t.add_row(vec![
            if i.tags.is_empty() {
                "<untagged>".to_string()
            } else {
                i.tags.join(", ")
            },
            i.id.trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect(),
            ByteSize(i.size).to_string(),
            format!("{} ago", output::short_duration(now - i.created * 1000)),
            i.recipe.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(())
}
