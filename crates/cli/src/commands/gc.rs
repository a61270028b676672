//! `petri gc [--dry-run] [--json]`: collect the artifact store's garbage now (the daemon also does
//! it every `artifacts.gc_every`).

use std::fmt::Write as _;

use clap::Args;
use petri_client::Client;
use petri_domain::ByteSize;
use petri_domain::artifact::GcReport;

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
    let kept = format!(
        "{} ({}) kept",
        plural(r.kept.count as usize, "blob", "blobs"),
        ByteSize(r.kept.bytes)
    );
    if r.removed.is_empty() && r.dropped_holders.is_empty() {
        let _ = writeln!(out, "Nothing to collect; {kept}.");
        return out;
    }
    let (verb, dropped) = if r.dry_run {
        ("Would free", "would be dropped")
    } else {
        ("Freed", "dropped")
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
    if r.dry_run {
        let _ = writeln!(
            out,
            "Dry run: nothing was changed. Run `petri gc` to collect."
        );
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
        };
        let text = render(&r);
        assert!(
            text.starts_with("Would free 3MiB in 1 blob; 2 blobs (1.5KiB) kept."),
            "{text}"
        );
        assert!(text.contains("would be dropped (least recently used first): cache:abc"));
        assert!(text.contains(&d.to_string()), "{text}");
        assert!(text.contains("nothing was changed"), "{text}");
        r.dry_run = false;
        let text = render(&r);
        assert!(text.starts_with("Freed 3MiB in 1 blob"), "{text}");
        assert!(!text.contains("Dry run"), "{text}");
        let text = render(&GcReport::default());
        assert_eq!(text, "Nothing to collect; 0 blobs (0B) kept.\n");
    }
}
