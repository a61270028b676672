//! Log following by events: one inotify watch (through `notify`) on the home's `logs/` folder
//! wakes whoever follows a job's log when bytes arrive in its file, whoever wrote them (a local
//! job's own process, the copier of a container's output, a job re-adopted after a restart).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use petri_domain::{Event, JobId};
use tokio::sync::{Notify, broadcast};

/// How long a follower sleeps at most without a wake-up: the safety net for a missed event (a
/// full inotify queue, a file system without inotify).
const FALLBACK: Duration = Duration::from_secs(2);

/// The watch on `logs/` and, by file name, who waits for it.
pub struct LogWatch {
    waiters: Arc<Mutex<HashMap<String, Vec<Weak<Notify>>>>>,
    /// `None` when the kernel refused a watch: followers then wake on their fallback timer.
    watcher: Option<notify::RecommendedWatcher>,
}

impl LogWatch {
    pub fn start(dir: &Path) -> LogWatch {
        let waiters: Arc<Mutex<HashMap<String, Vec<Weak<Notify>>>>> = Arc::default();
        let inner = Arc::downgrade(&waiters);
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else {
                return;
            };
            if !matches!(event.kind, EventKind::Modify(_) | EventKind::Create(_)) {
                return;
            }
            let Some(waiters) = inner.upgrade() else {
                return;
            };
            let mut waiters = waiters.lock().unwrap_or_else(|p| p.into_inner());
            for path in &event.paths {
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if let Some(list) = waiters.get_mut(name) {
                    // A permit is kept when nobody waits yet: no write is missed between a read
                    // and the wait after it.
                    list.retain(|w| w.upgrade().map(|n| n.notify_one()).is_some());
                    if list.is_empty() {
                        waiters.remove(name);
                    }
                }
            }
        })
        .and_then(|mut w| w.watch(dir, RecursiveMode::NonRecursive).map(|()| w));
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "cannot watch the logs folder ({e}); log following polls");
                None
            }
        };
        LogWatch { waiters, watcher }
    }

    /// What wakes when the job's log grows. Keep it for as long as the log is followed.
    pub fn subscribe(&self, job: JobId) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        let list = waiters.entry(format!("{job}.log")).or_default();
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(&notify));
        notify
    }

    /// Whether the kernel's watch is in place (else followers poll on their timer).
    pub fn is_watching(&self) -> bool {
        self.watcher.is_some()
    }
}

/// One follower of one job's log.
pub struct LogFollower {
    job: JobId,
    grew: Arc<Notify>,
    events: broadcast::Receiver<Event>,
}

impl LogFollower {
    pub(crate) fn new(job: JobId, grew: Arc<Notify>, events: broadcast::Receiver<Event>) -> Self {
        LogFollower { job, grew, events }
    }

    /// Returns when the log may have grown or the job may have changed state (its end, a new
    /// attempt), or after a short fallback wait; the caller reads again either way.
    pub async fn wait(&mut self) {
        let job = self.job;
        let events = &mut self.events;
        let changed = async {
            loop {
                match events.recv().await {
                    Ok(Event::JobChanged(c)) if c.id == job => return,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        };
        tokio::select! {
            () = self.grew.notified() => {}
            () = changed => {}
            () = tokio::time::sleep(FALLBACK) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_write_wakes_the_follower_of_that_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let watch = LogWatch::start(dir.path());
        assert!(watch.is_watching());
        let (a, b) = (JobId::new(), JobId::new());
        let wake_a = watch.subscribe(a);
        let wake_b = watch.subscribe(b);
        let mut f = std::fs::File::create(dir.path().join(format!("{a}.log"))).unwrap();
        f.write_all(b"hello\n").unwrap();
        tokio::time::timeout(Duration::from_secs(10), wake_a.notified())
            .await
            .expect("the write wakes its follower");
        assert!(
            tokio::time::timeout(Duration::from_millis(200), wake_b.notified())
                .await
                .is_err(),
            "another job's follower sleeps on"
        );
        drop(wake_a);
        f.write_all(b"more\n").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let waiters = watch.waiters.lock().unwrap();
        assert!(
            !waiters.contains_key(&format!("{a}.log")),
            "a gone follower is forgotten"
        );
    }
}
