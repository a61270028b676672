use clap::Args;
use petri_client::Client;

use crate::output;

#[derive(Debug, Args)]
pub struct ActArgs {
    /// Job numbers or ids.
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
    /// Print the jobs as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug)]
pub enum Verb {
    Cancel,
    Hold,
    Release,
}

pub async fn run(client: &Client, args: ActArgs, verb: Verb) -> anyhow::Result<()> {
    let mut jobs = Vec::new();
    let mut failed = 0;
    for id in &args.ids {
        let result = match verb {
            Verb::Cancel => client.cancel(id).await,
            Verb::Hold => client.hold(id).await,
            Verb::Release => client.release(id).await,
        };
        match result {
            Ok(job) => {
                if !args.json {
                    let what = match (verb, job.state) {
                        (Verb::Cancel, petri_domain::JobState::Running) => "stopping",
                        (Verb::Cancel, _) => "cancelled",
                        (Verb::Hold, _) => "held",
                        (Verb::Release, _) => "released",
                    };
                    println!("job #{} ({}) {what}", job.number, job.name);
                }
                jobs.push(job);
            }
            Err(e @ petri_client::ClientError::NoDaemon { .. }) => return Err(e.into()),
            Err(e) => {
                eprintln!("error: {id}: {e}");
                failed += 1;
            }
        }
    }
    if args.json {
        output::print_json(&jobs)?;
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} jobs could not be changed", args.ids.len());
    }
    Ok(())
}
