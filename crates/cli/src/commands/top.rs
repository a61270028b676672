//! `petri top`: the queue and the machine, redrawn on every event (and every second).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use crossterm::event::{Event as TermEvent, EventStream, KeyCode, KeyModifiers};
use crossterm::{cursor, execute, terminal};
use futures_util::StreamExt;
use petri_client::Client;
use petri_domain::{ByteSize, ListQuery};

use crate::output;

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Print one frame and exit (also what happens when stdout is not a terminal).
    #[arg(long)]
    pub once: bool,
    /// Print one snapshot (status and jobs) as JSON and exit.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct Snapshot {
    status: petri_domain::Status,
    jobs: Vec<petri_domain::Job>,
}

pub async fn run(client: &Client, args: TopArgs) -> anyhow::Result<()> {
    if args.json {
        let snapshot = Snapshot {
            status: client.status().await?,
            jobs: client.list(&ListQuery::default()).await?.jobs,
        };
        return output::print_json(&snapshot);
    }
    if args.once || !std::io::stdout().is_terminal() {
        print!("{}", frame(client).await?);
        return Ok(());
    }
    let mut events = std::pin::pin!(client.events().await?);
    let mut keys = EventStream::new();
    let mut out = std::io::stdout();
    terminal::enable_raw_mode()?;
    execute!(out, terminal::EnterAlternateScreen, cursor::Hide)?;
    let result: anyhow::Result<()> = async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let text = frame(client).await?;
            execute!(out, cursor::MoveTo(0, 0), terminal::Clear(terminal::ClearType::All))?;
            out.write_all(text.replace('\n', "\r\n").as_bytes())?;
            out.write_all(b"\r\nq to quit\r\n")?;
            out.flush()?;
            tokio::select! {
                _ = tick.tick() => {}
                e = events.next() => if e.is_none() { anyhow::bail!("the daemon went away") },
                k = keys.next() => match k {
                    Some(Ok(TermEvent::Key(k))) if k.code == KeyCode::Char('q')
                        || k.code == KeyCode::Esc
                        || (k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL)) => break,
                    None => break,
                    _ => {}
                },
            }
        }
        Ok(())
    }
    .await;
    let _ = execute!(out, cursor::Show, terminal::LeaveAlternateScreen);
    let _ = terminal::disable_raw_mode();
    result
}

async fn frame(client: &Client) -> anyhow::Result<String> {
    let status = client.status().await?;
    let active = client.list(&ListQuery::default()).await?;
    let jobs = active.jobs;
    let recent = client
        .list(&ListQuery {
            all: true,
            state: Some("succeeded,failed,cancelled,timed_out".into()),
            limit: Some(5),
            ..Default::default()
        })
        .await?
        .jobs;
    let count = |s: &str| status.counts.get(s).copied().unwrap_or(0);
    let mut s = String::new();
    s.push_str(&format!(
        "Petri {} at {}   running {}  queued {}  held {}   done {}  failed {}\n",
        status.version,
        client.base(),
        count("running"),
        count("queued"),
        count("held"),
        count("succeeded"),
        count("failed") + count("timed_out") + count("cancelled"),
    ));
    s.push_str(&format!(
        "cpus {:.1}/{:.1} reserved   memory {}/{} reserved\n",
        status.reserved_cpus,
        status.capacity_cpus,
        ByteSize(status.reserved_memory),
        ByteSize(status.capacity_memory),
    ));
    let gpus = client.gpus().await?;
    if gpus.gpus.is_empty() {
        s.push_str(&format!(
            "GPUs: none ({})\n",
            gpus.reason.as_deref().unwrap_or("NVML reports none")
        ));
    }
    for g in &gpus.gpus {
        let holders: Vec<String> = g
            .holders
            .iter()
            .map(|h| match h.number {
                Some(n) => format!("#{n} {}", ByteSize(h.reserved)),
                None => format!(
                    "pid {} {}",
                    h.pids.first().copied().unwrap_or(0),
                    ByteSize(h.used)
                ),
            })
            .collect();
        let mut holders = holders;
        if let Some(k) = &g.kept_for {
            holders.push(format!("kept for #{}", k.number));
        }
        s.push_str(&format!(
            "GPU {} {}{}: used {}/{}, reserved {}, free to admit {}, util {}%  {}\n",
            g.index,
            g.name,
            if g.healthy { "" } else { " LOST" },
            ByteSize(g.memory_used),
            ByteSize(g.memory_total),
            ByteSize(g.reserved),
            ByteSize(g.free_to_admit),
            g.utilization,
            holders.join(", "),
        ));
    }
    s.push('\n');
    if jobs.is_empty() {
        s.push_str("Nothing queued or running.\n");
    } else {
        s.push_str(&output::jobs_table(&jobs).to_string());
        s.push('\n');
        if active.next.is_some() {
            let waiting = count("queued") + count("held") + count("running");
            s.push_str(&format!(
                "(the first {} of {waiting} jobs; `petri ls` pages through them)\n",
                jobs.len()
            ));
        }
    }
    if !recent.is_empty() {
        s.push_str("\nRecently finished\n");
        s.push_str(&output::jobs_table(&recent).to_string());
        s.push('\n');
    }
    Ok(s)
}
