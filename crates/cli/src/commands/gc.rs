//! `petri gc [--dry-run] [--json]`: free space now: the logs and outputs of finished jobs beyond
//! the retention limits (`[retention]`, applied every `retention.every` too) and the artifact
//! store's garbage (every `artifacts.gc_every`).

use std::fmt::Write as _;

use clap::Args;
use petri_client::Client;
use petri_domain::artifact::GcReport;
use petri_domain::job::format_ms;
use petri_domain::{ByteSize, Millis, RetentionReport};

use crate::output;

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only say what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// At most this many removed blobs are listed (`--json` lists all).
const LISTED: usize = 20;

pub async fn run(client: &Client, args: GcArgs) -> anyhow::Result<()> {
    let report = client.gc(args.dry_run).await?;
    if args.json {
        return output::print_json(&report);
    }
    print!("{}", render(&report));
    Ok(())
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What a person reads: what went (or would go), what stays.
pub fn render(r: &GcReport) -> String {
    let mut out = String::new();
    if let Some(jobs) = &r.jobs {
        out.push_str(&render_jobs(jobs));
    }
    out.push_str(&render_artifacts(r));
    if r.dry_run {
        let _ = writeln!(
            out,
            "Dry run: nothing was changed. Run `petri gc` to collect."
        );
    }
    out
}

/// Finished jobs' logs and outputs: what the retention limits let go.
fn render_jobs(r: &RetentionReport) -> String {
    let mut out = String::new();
    let limits = &r.limits;
    let age = limits.max_age_ms.map_or_else(
        || "no age limit".to_string(),
        |ms| format!("older than {}", Millis(ms)),
    );
    let _ = writeln!(
        out,
        "Job logs and outputs (kept: {age}, at most {} in all; never a job that ended in the last {}):",
        ByteSize(limits.max_size),
        Millis(limits.min_age_ms),
    );
    let kept = format!(
        "{} ({}) kept",
        plural(r.kept_jobs as usize, "finished job", "finished jobs"),
        ByteSize(r.kept_bytes)
    );
    if r.removed_jobs == 0 {
        let _ = writeln!(out, "  nothing to remove; {kept}.");
        return out;
    }
    let verb = if r.dry_run { "would free" } else { "freed" };
    let _ = writeln!(
        out,
        "  {verb} {} of {}; {kept}.",
        ByteSize(r.freed_bytes),
        plural(r.removed_jobs as usize, "job", "jobs"),
    );
    let mut t = output::new_table(&["#", "ENDED", "SIZE", "WHY"]);
    for j in r.removed.iter().take(LISTED) {
        t.add_row(vec![
            j.number.to_string(),
            format_ms(j.finished_at_ms),
            ByteSize(j.bytes).to_string(),
            j.why.clone(),
        ]);
    }
    let _ = writeln!(out, "{t}");
    if r.removed_jobs as usize > LISTED {
        let _ = writeln!(
            out,
            "… and {} more (--json lists up to 1000).",
            r.removed_jobs as usize - LISTED
        );
    }
    out
}

fn render_artifacts(r: &GcReport) -> String {
    let mut out = String::new();
    out.push_str("Artifact store: ");
    let kept = format!(
        "{} ({}) kept",
        plural(r.kept.count as usize, "blob", "blobs"),
        ByteSize(r.kept.bytes)
    );
    if r.removed.is_empty() && r.dropped_holders.is_empty() {
        let _ = writeln!(out, "nothing to collect; {kept}.");
        return out;
    }
    let (verb, dropped) = if r.dry_run {
        ("would free", "would be dropped")
    } else {
        ("freed", "dropped")
    };
    let _ = writeln!(
        out,
        "{verb} {} in {}; {kept}.",
        ByteSize(r.freed_bytes),
        plural(r.removed.len(), "blob", "blobs"),
    );
    if !r.dropped_holders.is_empty() {
        let _ = writeln!(
            out,
            "Cache entries {dropped} (least recently used first): {}",
            r.dropped_holders.join(", ")
        );
    }
    if !r.removed.is_empty() {
        let mut t = output::new_table(&["DIGEST", "SIZE"]);
        for b in r.removed.iter().take(LISTED) {
            t.add_row(vec![b.digest.to_string(), ByteSize(b.size).to_string()]);
        }
        let _ = writeln!(out, "{t}");
        if r.removed.len() > LISTED {
            let _ = writeln!(
                out,
                "… and {} more (--json lists them all).",
                r.removed.len() - LISTED
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use petri_domain::artifact::{BlobCount, Digest, RemovedBlob};

    use super::*;

    #[test]
    fn a_report_says_what_went_in_sizes_people_read() {
        let d = Digest::from_sha256([0xab; 32]);
        let mut r = GcReport {
            dry_run: true,
            removed: vec![RemovedBlob {
                digest: d.clone(),
                size: 3 << 20,
            }],
            freed_bytes: 3 << 20,
            dropped_holders: vec!["cache:abc".into()],
            kept: BlobCount {
                count: 2,
                bytes: 1536,
            },
            jobs: None,
        };
        let text = render(&r);
        assert!(
            text.starts_with("Artifact store: would free 3MiB in 1 blob; 2 blobs (1.5KiB) kept."),
            "{text}"
        );
        assert!(text.contains("would be dropped (least recently used first): cache:abc"));
        assert!(text.contains(&d.to_string()), "{text}");
        assert!(text.contains("nothing was changed"), "{text}");
        r.dry_run = false;
        let text = render(&r);
        assert!(
            text.starts_with("Artifact store: freed 3MiB in 1 blob"),
            "{text}"
        );
        assert!(!text.contains("Dry run"), "{text}");
        let text = render(&GcReport::default());
        assert_eq!(
            text,
            "Artifact store: nothing to collect; 0 blobs (0B) kept.\n"
        );
    }
}
