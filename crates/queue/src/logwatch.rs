//! Log following by events: one inotify watch on the home's `logs/` folder
//! wakes whoever follows a job's log when bytes arrive in its file, whoever wrote them (a local
//! job's own process, the copier of a container's output, a job re-adopted after a restart); the
//! bus wakes them when their job ends. A follower is woken for its own job only: a
//! hundred followers cost nothing while other jobs start and end.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use petri_domain::{Event, JobId};
use tokio::sync::{Notify, broadcast};

/// How long a follower sleeps at most without a wake-up: the safety net for a missed event (a
/// full inotify queue, a file system without inotify).
const FALLBACK: Duration = Duration::from_secs(2);

/// How long a follower woken by bytes gathers further writes before it reads: a job's lines
/// that come within a few milliseconds are then one read and one event. Well within the 20 ms
/// in which `logs -f` shows a line. A follower woken by its job's end reads at once.
const GATHER: Duration = Duration::from_millis(2);

/// What one follower is woken by: the log's growth or its job's change of state, and whether
/// that change was the job's end.
#[derive(Default)]
pub(crate) struct Slot {
    woken: Notify,
    ended: AtomicBool,
}

/// Who follows which job's log. A follower is listed from `subscribe` until it leaves (its
/// `LogFollower` is dropped).
#[derive(Clone, Default)]
pub(crate) struct Followers(Arc<Mutex<HashMap<JobId, Vec<Arc<Slot>>>>>);

impl Followers {
    fn subscribe(&self, job: JobId) -> Arc<Slot> {
        let slot = Arc::new(Slot::default());
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(job).or_default().push(slot.clone());
        slot
    }

    /// Wakes the followers of `job`'s log, telling them when the job has ended. A permit is
    /// kept when one is not waiting yet: no change is missed between a read and the wait after
    /// it.
    pub(crate) fn wake(&self, job: JobId, ended: bool) {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for slot in map.get(&job).into_iter().flatten() {
            if ended {
                slot.ended.store(true, Ordering::Release);
            }
            slot.woken.notify_one();
        }
    }

    /// Takes `slot` off `job`'s list.
    fn leave(&self, job: JobId, slot: &Arc<Slot>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = map.get_mut(&job) {
            list.retain(|s| !Arc::ptr_eq(s, slot));
            if list.is_empty() {
                map.remove(&job);
            }
        }
    }

    /// Wakes every follower (the watch lost events).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn wake_all(&self) {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for slot in map.values().flatten() {
            slot.woken.notify_one();
        }
    }
}

/// What a log's reader needs of an active job (queued, held or running), kept by the engine as
/// it commits each change: whose job it is, its state, and whether an attempt started (a job
/// that never started has no log). A stream opened on an active job's log then needs no read
/// of the database, whose page cache every commit of the queue drops.
#[derive(Clone, Debug)]
pub(crate) struct LiveJob {
    pub(crate) number: u64,
    /// Shared by the user's jobs: an entry holds no allocation of its own (some 50 to 100
    /// bytes a job with its table's slot, against the engine's two kilobytes and more).
    pub(crate) user: Arc<str>,
    pub(crate) state: petri_domain::JobState,
    pub(crate) attempts: u32,
}

/// The active jobs' [`LiveJob`]s. The engine brings an entry up to date once the change is
/// committed and before anything is launched or told of it; a job that ended is taken out
/// before its followers are woken, so a reader that finds no entry reads the database and
/// finds the job's end there.
#[derive(Clone, Default)]
pub(crate) struct LiveJobs(Arc<std::sync::RwLock<Live>>);

#[derive(Default)]
struct Live {
    jobs: HashMap<JobId, LiveJob>,
    /// The users' names, each once.
    users: std::collections::HashSet<Arc<str>>,
}

impl Live {
    /// The engine's rule for its maps (`give_back_room`); the names of users with no job
    /// left go when the table is rebuilt.
    fn give_back_room(&mut self) {
        let room = self.jobs.capacity();
        crate::give_back_room(&mut self.jobs);
        if self.jobs.capacity() < room {
            self.users.retain(|user| Arc::strong_count(user) > 1);
        }
    }

    /// Lists `job` as it is now, or takes it off once it has ended.
    fn set(&mut self, id: JobId, job: Option<&petri_domain::Job>) {
        let Some(job) = job.filter(|j| !j.state.is_terminal()) else {
            self.jobs.remove(&id);
            return;
        };
        // A job's number and user never change.
        if let Some(listed) = self.jobs.get_mut(&id) {
            listed.state = job.state;
            listed.attempts = job.attempts;
            return;
        }
        let user = match self.users.get(job.user.as_str()) {
            Some(user) => user.clone(),
            None => {
                let user: Arc<str> = job.user.as_str().into();
                self.users.insert(user.clone());
                user
            }
        };
        let facts = LiveJob {
            number: job.number,
            user,
            state: job.state,
            attempts: job.attempts,
        };
        self.jobs.insert(id, facts);
    }
}

/// How many changes [`LiveJobs::update`] applies under one hold of the lock: readers (a stream
/// opening, on a runtime worker) wait for one stretch, not for a whole sweep of 100,000 jobs.
const LIVE_STRETCH: usize = 4096;

impl LiveJobs {
    pub(crate) fn get(&self, job: JobId) -> Option<LiveJob> {
        let live = self.0.read().unwrap_or_else(|p| p.into_inner());
        live.jobs.get(&job).cloned()
    }

    /// Brings the listed jobs up to date: each as it is now (`None`: not active, as a job
    /// that ended).
    pub(crate) fn update<'a>(
        &self,
        changes: impl IntoIterator<Item = (JobId, Option<&'a petri_domain::Job>)>,
    ) {
        let mut changes = changes.into_iter().peekable();
        while changes.peek().is_some() {
            let mut live = self.0.write().unwrap_or_else(|p| p.into_inner());
            for (id, job) in changes.by_ref().take(LIVE_STRETCH) {
                live.set(id, job);
            }
            live.give_back_room();
        }
    }

    /// Lists the active ones of `jobs` (the engine's, as loaded at recovery) and no others.
    /// The new list is made before the lock is taken.
    pub(crate) fn reset<'a>(&self, jobs: impl IntoIterator<Item = &'a petri_domain::Job>) {
        let mut fresh = Live::default();
        for job in jobs {
            fresh.set(job.id, Some(job));
        }
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }
}

/// The event bus: every event goes to its subscribers, and a job's change of state also wakes
/// the followers of its log.
#[derive(Clone)]
pub(crate) struct Bus {
    events: broadcast::Sender<Event>,
    followers: Followers,
    live: LiveJobs,
}

impl Bus {
    pub(crate) fn new(capacity: usize) -> Bus {
        Bus {
            events: broadcast::channel(capacity).0,
            followers: Followers::default(),
            live: LiveJobs::default(),
        }
    }

    /// The active jobs, for log readers.
    pub(crate) fn live(&self) -> &LiveJobs {
        &self.live
    }

    pub(crate) fn send(&self, event: Event) {
        // Only the job's end matters to a follower: a start, a hold or a retry adds no bytes,
        // and the bytes wake it through the watch.
        if let Event::JobChanged(change) = &event
            && change.state.is_terminal()
        {
            self.followers.wake(change.id, true);
        }
        let _ = self.events.send(event);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub(crate) fn followers(&self) -> &Followers {
        &self.followers
    }
}

/// The watch on `logs/`; it wakes the followers of the file that grew.
pub struct LogWatch {
    followers: Followers,
    /// `None` when the kernel refused a watch: followers then wake on their fallback timer.
    watcher: Option<kernel::Watch>,
}

/// The job whose log a file in `logs/` is (`<id>.log`).
fn job_of(name: &std::ffi::OsStr) -> Option<JobId> {
    name.to_str()?.strip_suffix(".log")?.parse().ok()
}

impl LogWatch {
    pub(crate) fn start(dir: &Path, followers: Followers) -> LogWatch {
        let watcher = match kernel::Watch::start(dir, followers.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "cannot watch the logs folder ({e}); log following polls");
                None
            }
        };
        LogWatch { followers, watcher }
    }

    /// What wakes when the job's log grows or the job changes state. Keep it for as long as the
    /// log is followed.
    pub fn follow(&self, job: JobId) -> LogFollower {
        LogFollower {
            slot: self.followers.subscribe(job),
            job,
            followers: self.followers.clone(),
        }
    }

    /// Whether the kernel's watch is in place (else followers poll on their timer).
    pub fn is_watching(&self) -> bool {
        self.watcher.as_ref().is_some_and(kernel::Watch::is_alive)
    }
}

/// Linux: inotify itself, asked for written bytes (`IN_MODIFY`) and files renamed into place
/// (`IN_MOVED_TO`) only, and read by a task on the runtime. (notify's watcher always asks for
/// opens, closes and creations too: each open of a log, a follower's own reads included, woke
/// its thread for an event it then dropped.)
#[cfg(target_os = "linux")]
mod kernel {
    use std::io;
    use std::path::Path;

    use inotify::{EventMask, Inotify, WatchMask};
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    use super::{Followers, job_of};

    /// The task that reads the watch's events; it ends when the watch is dropped (or when the
    /// watch fails, or the runtime stops).
    pub(super) struct Watch(tokio::task::JoinHandle<()>);

    impl Watch {
        /// Whether the task still reads the watch's events.
        pub(super) fn is_alive(&self) -> bool {
            !self.0.is_finished()
        }

        /// Must be called within the runtime (a task or a blocking thread of it).
        pub(super) fn start(dir: &Path, followers: Followers) -> io::Result<Watch> {
            let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
            let inotify = Inotify::init()?;
            inotify
                .watches()
                .add(dir, WatchMask::MODIFY | WatchMask::MOVED_TO)?;
            let mut fd = {
                let _in = runtime.enter();
                // SAFETY: `Inotify` owns its descriptor, which stays open and the same until it
                // is dropped with the `AsyncFd` (nothing here closes it or asks for another).
                unsafe { AsyncFd::register_with_interest(inotify, Interest::READABLE) }
                    .map_err(io::Error::from)?
            };
            Ok(Watch(runtime.spawn(async move {
                let mut buffer = vec![0u8; 16 * 1024];
                loop {
                    let Ok(mut ready) = fd.readable_mut().await else {
                        return;
                    };
                    match ready.get_inner_mut().read_events(&mut buffer) {
                        Ok(events) => {
                            for event in events {
                                if event.mask.contains(EventMask::Q_OVERFLOW) {
                                    // Events were lost: every follower reads again.
                                    followers.wake_all();
                                } else if let Some(job) = event.name.and_then(job_of) {
                                    followers.wake(job, false);
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            tracing::warn!(
                                "the logs folder's watch failed ({e}); log following polls"
                            );
                            return;
                        }
                    }
                }
            })))
        }
    }

    impl Drop for Watch {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
}

/// Elsewhere: notify's watcher, on a thread of its own.
#[cfg(not(target_os = "linux"))]
mod kernel {
    use std::path::Path;

    use notify::{EventKind, RecursiveMode, Watcher};

    use super::{Followers, job_of};

    pub(super) struct Watch(#[allow(dead_code)] notify::RecommendedWatcher);

    impl Watch {
        /// notify's thread lives as long as the watcher.
        pub(super) fn is_alive(&self) -> bool {
            true
        }

        pub(super) fn start(dir: &Path, followers: Followers) -> notify::Result<Watch> {
            let mut watcher =
                notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                    let Ok(event) = res else {
                        return;
                    };
                    // Bytes written, or a file renamed into place; a file created empty, opened
                    // or closed adds nothing to read.
                    if !matches!(event.kind, EventKind::Modify(_)) {
                        return;
                    }
                    for job in event.paths.iter().filter_map(|p| job_of(p.file_name()?)) {
                        followers.wake(job, false);
                    }
                })?;
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
            Ok(Watch(watcher))
        }
    }
}

/// One follower of one job's log.
pub struct LogFollower {
    slot: Arc<Slot>,
    job: JobId,
    followers: Followers,
}

impl Drop for LogFollower {
    /// A follower that leaves takes its place in the map with it (a job's end wakes its
    /// followers but leaves them listed: without this, every job ever followed stayed there).
    fn drop(&mut self) {
        self.followers.leave(self.job, &self.slot);
    }
}

impl LogFollower {
    /// Returns when the log may have grown or the job may have ended: `true`; or after a short
    /// fallback wait with no wake-up: `false` (then nothing says the job has not ended, and the
    /// caller asks the database).
    pub async fn wait(&mut self) -> bool {
        let woken = tokio::time::timeout(FALLBACK, self.slot.woken.notified())
            .await
            .is_ok();
        // After the job's end nothing more will come to gather: the follower reads at once.
        if woken && !self.ended() {
            tokio::time::sleep(GATHER).await;
        }
        woken
    }

    /// Whether the job's end was announced since this follower was taken. Checked before a
    /// read of the log, it means that read sees every byte the job wrote.
    pub fn ended(&self) -> bool {
        self.slot.ended.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;

    /// Whether `n` is woken (or holds a permit) within `within`.
    async fn woken(slot: &Slot, within: Duration) -> bool {
        tokio::time::timeout(within, slot.woken.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_write_wakes_the_follower_of_that_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let watch = LogWatch::start(dir.path(), Followers::default());
        assert!(watch.is_watching());
        let (a, b) = (JobId::new(), JobId::new());
        let follower_a = watch.follow(a);
        let follower_b = watch.follow(b);
        let (wake_a, wake_b) = (follower_a.slot.clone(), follower_b.slot.clone());
        let path = dir.path().join(format!("{a}.log"));
        let mut f = std::fs::File::create(&path).unwrap();
        assert!(
            !woken(&wake_a, Duration::from_millis(200)).await,
            "a log created empty has nothing to read"
        );
        f.write_all(b"hello\n").unwrap();
        assert!(
            woken(&wake_a, Duration::from_secs(10)).await,
            "the write wakes its follower"
        );
        assert!(
            !woken(&wake_b, Duration::from_millis(200)).await,
            "another job's follower sleeps on"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"hello\n");
        assert!(
            !woken(&wake_a, Duration::from_millis(200)).await,
            "a reader's open and read of the log wake no one"
        );
        drop(follower_a);
        f.write_all(b"more\n").unwrap();
        let gone = || !watch.followers.0.lock().unwrap().contains_key(&a);
        assert!(gone(), "a gone follower is forgotten");
    }

    #[tokio::test]
    async fn a_follower_that_leaves_is_taken_off_the_list_even_after_its_job_ended() {
        let bus = Bus::new(16);
        let dir = tempfile::tempdir().unwrap();
        let watch = LogWatch::start(dir.path(), bus.followers().clone());
        let a = JobId::new();
        let first = watch.follow(a);
        let second = watch.follow(a);
        bus.followers().wake(a, true);
        assert!(first.ended() && second.ended());
        drop(first);
        assert_eq!(
            bus.followers().0.lock().unwrap()[&a].len(),
            1,
            "the other stays"
        );
        drop(second);
        assert!(
            bus.followers().0.lock().unwrap().is_empty(),
            "no job is listed once its last follower left"
        );
    }

    #[tokio::test]
    async fn a_log_renamed_into_place_wakes_its_follower() {
        let dir = tempfile::tempdir().unwrap();
        let watch = LogWatch::start(dir.path(), Followers::default());
        let a = JobId::new();
        let wake_a = watch.followers.subscribe(a);
        let elsewhere = dir.path().join("incoming");
        std::fs::write(&elsewhere, b"copied whole\n").unwrap();
        std::fs::rename(&elsewhere, dir.path().join(format!("{a}.log"))).unwrap();
        assert!(
            woken(&wake_a, Duration::from_secs(10)).await,
            "a log renamed into place wakes its follower"
        );
    }

    #[tokio::test]
    async fn the_end_of_a_job_wakes_the_followers_of_that_job_only() {
        let bus = Bus::new(16);
        let (a, b) = (JobId::new(), JobId::new());
        let wake_a = bus.followers().subscribe(a);
        let wake_b = bus.followers().subscribe(b);
        let change = |id| petri_domain::JobChange {
            id,
            number: 1,
            name: "j".into(),
            state: petri_domain::JobState::Succeeded,
            attempt: 1,
            exit_code: Some(0),
            reason: None,
        };
        bus.send(Event::JobSubmitted(change(a)));
        assert!(
            !woken(&wake_a, Duration::from_millis(100)).await,
            "only a change of state wakes a follower"
        );
        let mut started = change(a);
        started.state = petri_domain::JobState::Running;
        bus.send(Event::JobChanged(started));
        assert!(
            !woken(&wake_a, Duration::from_millis(100)).await,
            "a start adds nothing to read: the follower sleeps on"
        );
        bus.send(Event::JobChanged(change(a)));
        assert!(
            woken(&wake_a, Duration::from_secs(10)).await,
            "the job's end wakes its follower"
        );
        assert!(
            wake_a.ended.load(Ordering::Acquire),
            "the follower is told of its job's end"
        );
        assert!(
            !woken(&wake_b, Duration::from_millis(100)).await,
            "another job's follower sleeps on"
        );
    }

    #[test]
    fn live_jobs_list_each_active_job_as_last_committed() {
        use petri_domain::JobState;
        let live = LiveJobs::default();
        let job = |user: &str, number: u64| -> petri_domain::Job {
            serde_json::from_value(serde_json::json!({
                "id": JobId::new(), "number": number, "name": "j", "state": "queued",
                "queue": "default", "priority": 0, "user": user, "spec": {},
                "submitted_at_ms": 0, "attempts": 0,
            }))
            .unwrap()
        };
        let mut jobs: Vec<petri_domain::Job> = (0..3000).map(|n| job("mia", n)).collect();
        jobs.push(job("max", 3000));
        live.update(jobs.iter().map(|j| (j.id, Some(j))));
        let max = live.get(jobs[3000].id).unwrap();
        assert_eq!((max.number, &*max.user), (3000, "max"));
        // One name a user, shared by the user's jobs.
        let (a, b) = (live.get(jobs[0].id).unwrap(), live.get(jobs[1].id).unwrap());
        assert!(Arc::ptr_eq(&a.user, &b.user) && &*a.user == "mia");
        // A start is seen (the log is then looked for).
        jobs[0].state = JobState::Running;
        jobs[0].attempts = 1;
        live.update([(jobs[0].id, Some(&jobs[0]))]);
        let started = live.get(jobs[0].id).unwrap();
        assert_eq!((started.state, started.attempts), (JobState::Running, 1));
        // An ended job, or one the engine no longer has, is taken off.
        jobs[0].state = JobState::Succeeded;
        live.update([(jobs[0].id, Some(&jobs[0])), (jobs[1].id, None)]);
        assert!(live.get(jobs[0].id).is_none() && live.get(jobs[1].id).is_none());
        drop((max, a, b, started));
        // Once most have ended, the table gives its room back.
        let room = live.0.read().unwrap().jobs.capacity();
        live.update(jobs[2..].iter().map(|j| (j.id, None)));
        assert!(live.0.read().unwrap().jobs.capacity() < room / 4);
        // ... and forgets the names of users with no job left.
        assert!(live.0.read().unwrap().users.is_empty());
        // Recovery lists exactly the active jobs it loaded.
        jobs[5].state = JobState::Held;
        jobs[6].state = JobState::Failed;
        live.reset([&jobs[5], &jobs[6]]);
        assert_eq!(live.get(jobs[5].id).unwrap().state, JobState::Held);
        assert!(live.get(jobs[6].id).is_none() && live.get(jobs[7].id).is_none());
    }
}
