use clap::Args;
use petri_client::Client;
use petri_domain::ListQuery;

use crate::output;

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Include finished jobs.
    #[arg(short, long)]
    pub all: bool,
    /// Only jobs in these states (comma-separated: queued,held,running,succeeded,failed,...).
    #[arg(long)]
    pub state: Option<String>,
    /// Only jobs of this queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// At most this many (the newest).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Print the jobs as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: &Client, args: LsArgs) -> anyhow::Result<()> {
    let jobs = client
        .list(&ListQuery {
            all: args.all,
            state: args.state,
            queue: args.queue,
            limit: args.limit,
        })
        .await?;
    if args.json {
        return output::print_json(&jobs);
    }
    if jobs.is_empty() {
        if args.all {
            println!("No jobs yet. Queue one with `petri submit -- CMD ARGS`.");
        } else {
            println!("Nothing queued or running. `petri ls --all` shows finished jobs.");
        }
        return Ok(());
    }
    println!("{}", output::jobs_table(&jobs));
    Ok(())
}
