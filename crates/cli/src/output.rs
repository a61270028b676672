//! How things look in a terminal: tables, times, JSON.

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Table};
use petri_domain::{Job, JobState};
use serde::Serialize;

pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// "3s", "4m 10s", "2h 5m": short, for tables.
pub fn short_duration(ms: i64) -> String {
    let s = (ms.max(0) / 1000) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

pub fn new_table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    t
}

/// What a table says about a job beside its state.
pub fn info(job: &Job) -> String {
    match job.state {
        JobState::Queued | JobState::Held => job
            .pending
            .as_ref()
            .map(|p| match p.position {
                Some(n) => format!("#{n} in line: {}", p.message),
                None => p.message.clone(),
            })
            .or_else(|| job.reason.clone())
            .unwrap_or_default(),
        JobState::Running => job
            .remote
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default(),
        JobState::Succeeded => String::new(),
        _ => job.reason.clone().unwrap_or_default(),
    }
}

/// Age for waiting jobs, run time for running and finished ones.
pub fn timing(job: &Job, now: i64) -> String {
    match (job.started_at_ms, job.finished_at_ms) {
        (Some(s), Some(f)) => short_duration(f - s),
        (Some(s), None) => short_duration(now - s),
        (None, Some(_)) => "-".into(),
        (None, None) => format!("waits {}", short_duration(now - job.submitted_at_ms)),
    }
}

/// The jobs as a table; with a USER column when they are more than one user's (a shared
/// machine).
pub fn jobs_table(jobs: &[Job]) -> Table {
    let now = now_ms();
    let shared = jobs.iter().any(|j| j.user != jobs[0].user);
    let mut header = vec!["#", "NAME", "STATE", "QUEUE", "PRIO", "TIME", "INFO"];
    if shared {
        header.insert(2, "USER");
    }
    let mut t = new_table(&header);
    for j in jobs {
        let mut row = vec![
            j.number.to_string(),
            j.name.clone(),
            j.state.to_string(),
            j.queue.clone(),
            j.priority.to_string(),
            timing(j, now),
            info(j),
        ];
        if shared {
            row.insert(2, j.user.clone());
        }
        t.add_row(row);
    }
    t
}

/// Words as a shell reads them back (quoted where they are not plain).
pub fn shell_words(words: &[String]) -> String {
    shlex::try_join(words.iter().map(String::as_str))
        .unwrap_or_else(|_| words.join(" ").replace('\0', "\\0"))
}
