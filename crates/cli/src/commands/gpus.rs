use clap::Args;
use petri_client::Client;
use petri_domain::ByteSize;

use crate::output;

#[derive(Debug, Args)]
pub struct GpusArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: &Client, args: GpusArgs) -> anyhow::Result<()> {
    let report = client.gpus().await?;
    if args.json {
        return output::print_json(&report);
    }
    if !report.available || report.gpus.is_empty() {
        println!(
            "No GPUs: {}",
            report
                .reason
                .as_deref()
                .unwrap_or("NVML reports none; running CPU-only")
        );
        return Ok(());
    }
    let mut t = output::new_table(&[
        "GPU",
        "NAME",
        "MEMORY",
        "USED",
        "RESERVED",
        "FREE TO ADMIT",
        "UTIL",
        "HOLDERS",
    ]);
    for g in &report.gpus {
        let holders: Vec<String> = g
            .holders
            .iter()
            .map(|h| match (&h.kind[..], h.number) {
                ("job" | "notebook", Some(n)) => format!(
                    "#{n} {} {} ({}, devices {})",
                    h.name.as_deref().unwrap_or(""),
                    ByteSize(h.reserved),
                    h.isolation,
                    h.devices
                ),
                _ => format!(
                    "pid {} {} (not Petri's)",
                    h.pids.first().copied().unwrap_or(0),
                    ByteSize(h.used)
                ),
            })
            .collect();
        let mut holders = holders;
        if let Some(k) = &g.kept_for {
            holders.push(match k.until_ms {
                Some(until) => format!(
                    "kept for #{}: free for it within {} (time limits); shorter jobs may use it",
                    k.number,
                    output::short_duration(until - output::now_ms())
                ),
                None => format!("kept for #{} (draining)", k.number),
            });
        }
        t.add_row(vec![
            if g.healthy {
                g.index.to_string()
            } else {
                format!("{} LOST", g.index)
            },
            g.name.clone(),
            ByteSize(g.memory_total).to_string(),
            ByteSize(g.memory_used).to_string(),
            ByteSize(g.reserved).to_string(),
            ByteSize(g.free_to_admit).to_string(),
            format!("{}%", g.utilization),
            holders.join("\n"),
        ]);
    }
    println!("{t}");
    if !report.device_isolation.is_empty() {
        println!("Isolation: {}", report.device_isolation);
    }
    Ok(())
}
