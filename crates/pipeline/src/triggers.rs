//! Triggers: cron schedules with catch-up, and folder watches. What is pure lives here (checking a
//! trigger, the fires between two instants, what changed in a folder between two snapshots);
//! the reconciler keeps the last fire and the last snapshot in the store and starts the runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use chrono::{Local, TimeZone};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use crate::spec::Trigger;

/// How many missed fires one restart catches up at most, unless a trigger says otherwise.
pub const DEFAULT_MAX_CATCHUP: u32 = 10;

fn parse(expr: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .or_else(|_| Cron::from_str(expr))
        .map_err(|e| {
            format!(
                "`{expr}` is not a cron schedule ({e}); five fields: minute hour day month weekday"
            )
        })
}

/// Checks a trigger as written.
pub fn check(t: &Trigger) -> Result<(), String> {
    match t {
        Trigger::Cron(c) => parse(&c.cron).map(|_| ()),
        Trigger::Watch(w) if w.watch.trim().is_empty() => Err("`watch` names a folder".into()),
        Trigger::Watch(_) => Ok(()),
    }
}

/// The fire times (ms) of `expr` after `after_ms` and up to `until_ms` (both local time),
/// oldest first; at most `max` (the latest ones are kept: a catch-up runs the most recent).
pub fn fires_between(
    expr: &str,
    after_ms: i64,
    until_ms: i64,
    max: usize,
) -> Result<Vec<i64>, String> {
    let cron = parse(expr)?;
    // Fires fall on whole seconds, whatever the instant the walk starts from.
    let mut t = Local
        .timestamp_millis_opt(after_ms - after_ms.rem_euclid(1000))
        .single()
        .ok_or("a time out of range")?;
    let mut out = std::collections::VecDeque::new();
    // A bound on the walk, so a schedule every second over a month asleep stays cheap.
    for _ in 0..100_000 {
        let Ok(next) = cron.find_next_occurrence(&t, false) else {
            break;
        };
        let ms = next.timestamp_millis();
        if ms > until_ms {
            break;
        }
        out.push_back(ms);
        if out.len() > max {
            out.pop_front();
        }
        t = next;
    }
    Ok(out.into())
}

/// What a cron trigger should run now.
#[derive(Debug, PartialEq, Eq)]
pub struct Due {
    /// Fire times to run, oldest first, each with whether it was missed (a catch-up).
    pub run: Vec<(i64, bool)>,
    /// The newest fire up to now, run or not: where the next look starts.
    pub newest: Option<i64>,
}

/// The fires of `expr` after `last_ms` up to `now_ms`. A fire is missed when it was due before
/// this daemon started (`started_ms`) or more than 5 s ago (the machine slept); missed fires
/// run only with catch-up, at most `max_catchup` of them (the most recent). Fires due since the
/// start run in any case.
pub fn due_fires(
    expr: &str,
    last_ms: i64,
    now_ms: i64,
    started_ms: i64,
    catchup: bool,
    max_catchup: usize,
) -> Result<Due, String> {
    let fires = fires_between(expr, last_ms, now_ms, usize::MAX)?;
    let newest = fires.last().copied();
    let late = |f: i64| f < started_ms || now_ms - f > 5_000;
    let missed: Vec<i64> = fires.iter().copied().filter(|f| late(*f)).collect();
    let keep = if catchup {
        missed.len().min(max_catchup)
    } else {
        0
    };
    let mut run: Vec<(i64, bool)> = missed[missed.len() - keep..]
        .iter()
        .map(|f| (*f, true))
        .collect();
    run.extend(fires.into_iter().filter(|f| !late(*f)).map(|f| (f, false)));
    Ok(Due { run, newest })
}

/// The next fire after `after_ms`.
pub fn next_fire(expr: &str, after_ms: i64) -> Option<i64> {
    let cron = parse(expr).ok()?;
    let t = Local
        .timestamp_millis_opt(after_ms - after_ms.rem_euclid(1000))
        .single()?;
    cron.find_next_occurrence(&t, false)
        .ok()
        .map(|n| n.timestamp_millis())
}

/// A folder's files: relative path → (size, modified ms).
pub type Snapshot = BTreeMap<String, (u64, i64)>;

/// Reads a folder's files (recursively, at most 100,000).
pub fn snapshot(dir: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(p);
            } else if out.len() < 100_000 {
                let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                out.insert(rel, (meta.len(), mtime));
            }
        }
    }
    out
}

/// Paths added or changed from `before` to `after` (removed ones are not a reason to run).
pub fn changed(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_up_counts_the_missed_fires() {
        // Every minute, 3.5 minutes asleep: three fires.
        let start = 1_700_000_000_000 - (1_700_000_000_000 % 60_000);
        let fires = fires_between("* * * * *", start, start + 210_000, 10).unwrap();
        assert_eq!(fires.len(), 3);
        // Bounded: the latest ones.
        let fires = fires_between("* * * * *", start, start + 600_000, 2).unwrap();
        assert_eq!(fires, vec![start + 540_000, start + 600_000]);
        assert!(
            check(&Trigger::Cron(crate::spec::CronTrigger {
                cron: "every day".into(),
                catchup: false,
                max_catchup: None,
                params: Default::default(),
            }))
            .is_err()
        );
    }

    #[test]
    fn missed_fires_are_bounded_apart_from_the_ones_due_since_the_start() {
        let m = 1_700_000_000_000 - (1_700_000_000_000 % 60_000);
        // Every second; down from m to m + 5.2 s, then looked at 0.5 s after the start: five
        // fires were missed, three run.
        let due = due_fires("* * * * * *", m, m + 5_700, m + 5_200, true, 3).unwrap();
        assert_eq!(
            due.run,
            vec![(m + 3_000, true), (m + 4_000, true), (m + 5_000, true)]
        );
        assert_eq!(due.newest, Some(m + 5_000));
        // Without catch-up only what is due since the start runs.
        let due = due_fires("* * * * * *", m, m + 6_500, m + 5_200, false, 3).unwrap();
        assert_eq!(due.run, vec![(m + 6_000, false)]);
        // A machine that slept an hour while the daemon ran: the fires are missed too.
        let due = due_fires("* * * * *", m, m + 3_600_500, m, true, 2).unwrap();
        assert_eq!(
            due.run,
            vec![
                (m + 3_480_000, true),
                (m + 3_540_000, true),
                (m + 3_600_000, false)
            ]
        );
        // Sub-second instants: fires still fall on whole seconds.
        let due = due_fires("* * * * * *", m + 673, m + 2_100, m, true, 10).unwrap();
        assert_eq!(due.run, vec![(m + 1_000, false), (m + 2_000, false)]);
    }

    #[test]
    fn changes_are_new_or_modified_files() {
        let a = Snapshot::from([("x".into(), (1, 1)), ("y".into(), (1, 1))]);
        let b = Snapshot::from([
            ("x".into(), (1, 1)),
            ("y".into(), (2, 5)),
            ("z".into(), (1, 1)),
        ]);
        assert_eq!(changed(&a, &b), vec!["y".to_string(), "z".to_string()]);
    }
}
