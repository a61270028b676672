use clap::Args;
use petri_client::Client;
use petri_domain::{ListOrder, ListQuery};

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
    /// Only this user's jobs.
    #[arg(long, conflicts_with = "mine")]
    pub user: Option<String>,
    /// Only your own jobs (on a shared machine).
    #[arg(long)]
    pub mine: bool,
    /// Jobs per page (100 unless given; at most 1000).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Start after this cursor: the one printed under the page before.
    #[arg(long, value_name = "CURSOR")]
    pub after: Option<String>,
    /// Newest or oldest first (newest with --all or --state, else the queue's order).
    #[arg(long, value_enum)]
    pub order: Option<Order>,
    /// Print the jobs as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Order {
    Newest,
    Oldest,
}

pub async fn run(client: &Client, args: LsArgs) -> anyhow::Result<()> {
    let user = match (args.user, args.mine) {
        (Some(u), _) => Some(u),
        (None, true) => Some(client.me().await?.name),
        (None, false) => None,
    };
    let query = ListQuery {
        all: args.all,
        state: args.state,
        queue: args.queue,
        user,
        limit: args.limit,
        after: args.after,
        order: args.order.map(|o| match o {
            Order::Newest => ListOrder::Newest,
            Order::Oldest => ListOrder::Oldest,
        }),
    };
    let page = client.list(&query).await?;
    if args.json {
        return output::print_json(&page);
    }
    if let Some(note) = &page.note {
        eprintln!("note: {note}");
    }
    let jobs = &page.jobs;
    if jobs.is_empty() && query.after.is_some() {
        println!("No more jobs.");
        return Ok(());
    }
    if jobs.is_empty() {
        if args.all {
            println!("No jobs yet. Queue one with `petri submit -- CMD ARGS`.");
        } else {
            println!("Nothing queued or running. `petri ls --all` shows finished jobs.");
        }
        return Ok(());
    }
    println!("{}", output::jobs_table(jobs));
    if let Some(next) = &page.next {
        println!("More: {}", next_command(&query, next));
    }
    Ok(())
}

/// The command that prints the next page: this one's filters with the new cursor.
fn next_command(q: &ListQuery, next: &str) -> String {
    let mut cmd = String::from("petri ls");
    if q.all {
        cmd.push_str(" --all");
    }
    if let Some(s) = &q.state {
        cmd.push_str(&format!(" --state {s}"));
    }
    if let Some(s) = &q.queue {
        cmd.push_str(&format!(
            " --queue {}",
            output::shell_words(std::slice::from_ref(s))
        ));
    }
    if let Some(u) = &q.user {
        cmd.push_str(&format!(
            " --user {}",
            output::shell_words(std::slice::from_ref(u))
        ));
    }
    if let Some(n) = q.limit {
        cmd.push_str(&format!(" --limit {n}"));
    }
    if let Some(o) = q.order {
        cmd.push_str(match o {
            ListOrder::Newest => " --order newest",
            ListOrder::Oldest => " --order oldest",
        });
    }
    cmd.push_str(&format!(" --after {next}"));
    cmd
}
