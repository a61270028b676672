//! The triggers' loop: cron schedules (with catch-up of the fires missed while the daemon was
//! down, bounded) and folder watches (notify wakes it; a change starts a run once the folder has
//! been quiet for the debounce time; files that changed while the daemon was down start one run
//! at start). Each run records what triggered it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use serde_json::{Value, json};

use crate::service::{Pipelines, RunRequest};
use crate::spec::{PipelineSpec, Trigger};
use crate::triggers::{self, Snapshot};

#[derive(Default)]
struct Watching {
    /// Folder → the last time notify said something changed in it (ms).
    dirty: HashMap<PathBuf, i64>,
}

pub(crate) fn spawn(p: Pipelines) {
    let state = Arc::new(Mutex::new(Watching::default()));
    let seen = state.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && let Ok(mut s) = seen.lock()
        {
            let now = petri_queue::now_ms();
            for path in ev.paths {
                let mut p = path.as_path();
                // Mark every watched ancestor (we do not know which one is the root here).
                while let Some(parent) = p.parent() {
                    s.dirty.insert(parent.to_path_buf(), now);
                    p = parent;
                }
            }
        }
    });
    let weak = Arc::downgrade(&p.inner_arc());
    drop(p);
    let started = petri_queue::now_ms();
    tokio::spawn(async move {
        let mut watcher = watcher.ok();
        let mut watched: Vec<PathBuf> = Vec::new();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Some(inner) = weak.upgrade() else { return };
            let p = Pipelines::from_inner(inner);
            let st = state.clone();
            let want = match tokio::task::spawn_blocking({
                let p = p.clone();
                move || tick(&p, &st, started)
            })
            .await
            {
                Ok(w) => w,
                Err(_) => continue,
            };
            if let Some(w) = watcher.as_mut() {
                for d in &want {
                    if !watched.contains(d) && w.watch(d, RecursiveMode::Recursive).is_ok() {
                        watched.push(d.clone());
                    }
                }
                watched.retain(|d| {
                    let keep = want.contains(d);
                    if !keep {
                        let _ = w.unwatch(d);
                    }
                    keep
                });
            }
            p.wake();
        }
    });
}

/// One round over the saved pipelines' triggers; returns the folders to watch.
fn tick(p: &Pipelines, state: &Arc<Mutex<Watching>>, started: i64) -> Vec<PathBuf> {
    let now = petri_queue::now_ms();
    let mut folders = Vec::new();
    let Ok(saved) = p.saved_for_triggers() else {
        return folders;
    };
    for (name, yaml, base, owner) in saved {
        let Ok(spec) = serde_yaml_ng::from_str::<PipelineSpec>(&yaml) else {
            continue;
        };
        for (i, t) in spec.triggers.iter().enumerate() {
            let key = format!("{i}");
            match t {
                Trigger::Cron(c) => {
                    let key = format!("{key}:cron:{}", c.cron);
                    let last = match p.trigger_state(&name, &key) {
                        Some((last, _)) => last,
                        None => {
                            p.put_trigger_state(&name, &key, now, "{}");
                            continue;
                        }
                    };
                    let max = c.max_catchup.unwrap_or(triggers::DEFAULT_MAX_CATCHUP) as usize;
                    let Ok(due) = triggers::due_fires(&c.cron, last, now, started, c.catchup, max)
                    else {
                        continue;
                    };
                    let Some(newest) = due.newest else {
                        continue;
                    };
                    for (fire, late) in due.run {
                        if p.has_run_for_fire(&name, fire) {
                            continue;
                        }
                        let req = RunRequest {
                            pipeline: Some(name.clone()),
                            params: c.params.clone(),
                            ..Default::default()
                        };
                        let trig = json!({ "kind": "cron", "cron": c.cron, "scheduled_at": fire, "catchup": late });
                        if let Err(e) = p.create_run_blocking(req, &owner, trig) {
                            tracing::warn!(pipeline = %name, error = %e, "a cron trigger could not start a run");
                        }
                        p.put_trigger_state(&name, &key, fire, "{}");
                    }
                    p.put_trigger_state(&name, &key, newest, "{}");
                }
                Trigger::Watch(w) => {
                    let dir = match &base {
                        Some(b) if !Path::new(&w.watch).is_absolute() => {
                            Path::new(b).join(&w.watch)
                        }
                        _ => PathBuf::from(&w.watch),
                    };
                    let key = format!("{key}:watch:{}", dir.display());
                    if !dir.is_dir() {
                        continue;
                    }
                    folders.push(dir.clone());
                    let debounce = w.debounce.map(|d| d.0 as i64).unwrap_or(2_000);
                    let stored: Option<Snapshot> = p
                        .trigger_state(&name, &key)
                        .and_then(|(_, data)| serde_json::from_str(&data).ok());
                    let Some(before) = stored else {
                        let snap = triggers::snapshot(&dir);
                        p.put_trigger_state(
                            &name,
                            &key,
                            now,
                            &serde_json::to_string(&snap).unwrap_or_default(),
                        );
                        continue;
                    };
                    // Look when notify saw something quiet for the debounce, and once at start
                    // (the state's time is older than this process's first round).
                    let last_event = state.lock().ok().and_then(|s| s.dirty.get(&dir).copied());
                    let first_round = p.first_round(&key);
                    let due = match last_event {
                        Some(t) => now - t >= debounce,
                        None => first_round,
                    };
                    if !due {
                        continue;
                    }
                    if let Ok(mut s) = state.lock() {
                        s.dirty.remove(&dir);
                    }
                    let after = triggers::snapshot(&dir);
                    let changed = triggers::changed(&before, &after);
                    p.put_trigger_state(
                        &name,
                        &key,
                        now,
                        &serde_json::to_string(&after).unwrap_or_default(),
                    );
                    if changed.is_empty() {
                        continue;
                    }
                    let param = w.param.clone().unwrap_or_else(|| "changed".into());
                    let mut params = indexmap::IndexMap::new();
                    if spec.params.contains_key(&param) {
                        let paths: Vec<Value> = changed
                            .iter()
                            .map(|c| Value::String(dir.join(c).display().to_string()))
                            .collect();
                        params.insert(param, Value::String(Value::Array(paths).to_string()));
                    }
                    let req = RunRequest {
                        pipeline: Some(name.clone()),
                        params,
                        ..Default::default()
                    };
                    let trig = json!({ "kind": "watch", "folder": dir.display().to_string(), "changed": changed, "at_start": last_event.is_none() });
                    if let Err(e) = p.create_run_blocking(req, &owner, trig) {
                        tracing::warn!(pipeline = %name, error = %e, "a folder watch could not start a run");
                    }
                }
            }
        }
    }
    folders
}

/// Keys of triggers looked at once already by this process.
pub(crate) type Seen = Mutex<BTreeSet<String>>;
