//! The scheduler as a pure function: given what runs, what waits, the machine's capacity and the
//! time, decide what starts now and, when asked, why everything else waits.
//!
//! Policy (stated in ARCHITECTURE.md):
//! - Waiting jobs are considered in order: higher priority first, then submission order.
//! - Admission is by *reservation*: a job starts only if its declared cpus and memory fit in what
//!   running jobs have not reserved. Nothing is read from the live machine.
//! - No starvation: the first job that does not fit claims the free resources for itself, so
//!   smaller jobs behind it cannot keep overtaking it; they wait with the reason `priority`.
//! - Held jobs, jobs waiting for dependencies, jobs in backoff and jobs whose queue is at its limit
//!   are skipped and claim nothing.
//! - GPUs (see [`gpu`]): whole GPUs are exclusive; memory slices are packed best-fit. A job that
//!   waits for a GPU claims only GPUs, never cpus or memory, so GPU and CPU-only jobs do not block
//!   each other. Aging keeps a large GPU request from starving: once the first GPU job in line has
//!   waited `gpu_claim_after_ms`, it keeps the GPUs it waits for from the jobs behind it.
//! - Backfill (as Slurm's, by time limits): a claimed GPU still takes a job behind the claimant
//!   when that job's time limit makes it end before the running jobs' time limits free the GPU
//!   for the claimant, so the claimant starts no later than those limits promise.
//! - Quotas (see [`fair`]): a job whose user, or one of whose user's Unix groups, already holds
//!   what the quota allows waits with the reason `quota` and claims nothing.
//! - Fair share: with `usage` given, waiting jobs of the same priority go by their user's recent
//!   usage (least first), then submission order.

use std::collections::HashMap;

use petri_domain::{JobId, Pending, PendingReason, QuotaBook};

pub mod fair;
pub mod gpu;

use gpu::GpuBook;
pub use gpu::{Gpu, GpuAsk, GpuPlacement};

/// What the machine offers to jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory: u64,
}

/// A job's reservation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub cpu_millis: u64,
    pub memory: u64,
    pub gpu: GpuAsk,
}

impl Request {
    /// What a job that runs elsewhere (on a cluster) takes of this machine.
    pub const NOTHING: Request = Request {
        cpu_millis: 0,
        memory: 0,
        gpu: GpuAsk::None,
    };

    fn fits(&self, free: &Request) -> bool {
        self.cpu_millis <= free.cpu_millis && self.memory <= free.memory
    }
}

/// A job that waits to start.
#[derive(Clone, Debug)]
pub struct Waiting {
    pub id: JobId,
    pub number: u64,
    pub priority: i32,
    pub queue: String,
    pub request: Request,
    pub held: bool,
    pub after: Vec<JobId>,
    /// Unix milliseconds before which it may not start (retry backoff); 0 for none.
    pub not_before_ms: i64,
    /// Since when it could have started (submission, or the end of its backoff).
    pub since_ms: i64,
    /// Its time limit per attempt, if it has one.
    pub time_limit_ms: Option<i64>,
    /// Whose it is (quotas and fair share).
    pub user: String,
}

/// A job that runs and holds its reservation.
#[derive(Clone, Debug)]
pub struct Running {
    pub queue: String,
    pub request: Request,
    /// Where its GPU share is (empty without one).
    pub gpu: GpuPlacement,
    /// When its time limit is reached, if it has one.
    pub deadline_ms: Option<i64>,
    /// Whose it is.
    pub user: String,
}

/// How a dependency stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepState {
    Succeeded,
    /// Not finished yet (or not yet succeeded).
    Waiting {
        number: u64,
    },
    /// Finished without success: the dependant can never run.
    Failed,
}

/// The scheduler's answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Jobs to start now, in order.
    pub start: Vec<JobId>,
    /// Why each other visited job waits (only when explaining).
    pub pending: HashMap<JobId, Pending>,
    /// The earliest backoff deadline among visited jobs.
    pub next_wake_ms: Option<i64>,
    /// Where each started job that asked for GPUs goes.
    pub placements: HashMap<JobId, GpuPlacement>,
    /// GPUs kept for a job ahead in line that waits for them (only when explaining).
    pub kept: Vec<Kept>,
}

/// A GPU kept for a waiting job (it drains for it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    pub gpu: u32,
    pub job: JobId,
    /// When the time limits of the jobs on it free it for that job; jobs that end before then may
    /// still use it. None: not known (a job there has no time limit).
    pub until_ms: Option<i64>,
}

/// Inputs that do not change between decisions.
pub struct Limits<'a> {
    pub capacity: Capacity,
    /// Per-queue concurrency limits; queues not named are unlimited.
    pub queue_limits: &'a HashMap<String, u32>,
    /// The GPUs jobs may use (none on a machine without them).
    pub gpus: &'a [Gpu],
    /// Memory kept free on every GPU.
    pub gpu_reserve: u64,
    /// A job that has waited this long for a GPU keeps GPUs for itself (aging): smaller jobs may
    /// pass it until then, never after.
    pub gpu_claim_after_ms: i64,
    /// How long a job at its time limit may take to stop before it is killed.
    pub kill_grace_ms: i64,
    /// Per-user and per-group limits (empty: none).
    pub quotas: &'a QuotaBook,
    /// Each user's recent usage: when given, jobs of the same priority go least-used user
    /// first (fair share); when not, in submission order.
    pub usage: Option<&'a HashMap<String, f64>>,
}

/// Decides what starts now. `waiting` must come in scheduling order (priority, then number).
///
/// Without `explain`, the walk stops as soon as no cpu is left, because nothing more can start;
/// with it, every waiting job gets its reason and position.
pub fn plan<'w>(
    limits: &Limits<'_>,
    running: impl IntoIterator<Item = &'w Running>,
    waiting: impl IntoIterator<Item = &'w Waiting>,
    dep_state: impl Fn(JobId) -> DepState,
    now_ms: i64,
    explain: bool,
) -> Plan {
    let mut free = Request {
        cpu_millis: limits.capacity.cpu_millis,
        memory: limits.capacity.memory,
        gpu: GpuAsk::None,
    };
    let running: Vec<&Running> = running.into_iter().collect();
    let mut book = GpuBook::new(
        limits.gpus,
        limits.gpu_reserve,
        running.iter().map(|r| {
            let gone_by = r
                .deadline_ms
                .map(|d| d.saturating_add(limits.kill_grace_ms));
            (r.request.gpu, &r.gpu, gone_by)
        }),
    );
    let mut per_queue: HashMap<&str, u32> = HashMap::new();
    // What each user holds, when quotas apply.
    let quotas = !limits.quotas.is_empty();
    let mut held: HashMap<&str, fair::Held> = HashMap::new();
    for r in &running {
        free.cpu_millis = free.cpu_millis.saturating_sub(r.request.cpu_millis);
        free.memory = free.memory.saturating_sub(r.request.memory);
        *per_queue.entry(r.queue.as_str()).or_default() += 1;
        if quotas {
            held.entry(r.user.as_str())
                .or_default()
                .add(&r.request, limits.gpus);
        }
    }
    let waiting: Box<dyn Iterator<Item = &'w Waiting>> = match limits.usage {
        None => Box::new(waiting.into_iter()),
        Some(usage) => {
            let mut line: Vec<&Waiting> = waiting.into_iter().collect();
            let of = |w: &Waiting| usage.get(&w.user).copied().unwrap_or(0.0);
            line.sort_by(|a, b| {
                b.priority
                    .cmp(&a.priority)
                    .then(of(a).total_cmp(&of(b)))
                    .then(a.number.cmp(&b.number))
            });
            Box::new(line.into_iter())
        }
    };
    // `unclaimed` is what is free before reservations by blocked jobs; `free` is after them.
    let mut unclaimed = free;
    let mut blocker: Option<JobId> = None;
    // Only the first job that waits for a GPU keeps GPUs for itself; the ones behind it may use
    // what is left (claiming for all of them would leave the GPUs idle while they drain).
    let mut gpu_claimant: Option<JobId> = None;
    let mut plan = Plan::default();
    let mut position = 0u64;

    for w in waiting {
        if !explain && free.cpu_millis == 0 {
            break;
        }
        let mut wait = |reason: PendingReason, position: &mut u64| {
            if explain {
                // Held jobs are out of line until released.
                let place = (reason != PendingReason::Held).then(|| {
                    *position += 1;
                    *position
                });
                plan.pending.insert(
                    w.id,
                    Pending {
                        message: reason.to_string(),
                        reason,
                        position: place,
                    },
                );
            }
        };
        if w.held {
            wait(PendingReason::Held, &mut position);
            continue;
        }
        let mut dep_wait = None;
        for dep in &w.after {
            match dep_state(*dep) {
                DepState::Succeeded => {}
                DepState::Waiting { number } => {
                    dep_wait = Some((*dep, number));
                    break;
                }
                // The daemon fails such jobs as soon as the dependency ends; until then they wait.
                DepState::Failed => {
                    dep_wait = Some((*dep, 0));
                    break;
                }
            }
        }
        if let Some((job, number)) = dep_wait {
            wait(PendingReason::Dependency { job, number }, &mut position);
            continue;
        }
        if w.not_before_ms > now_ms {
            plan.next_wake_ms = Some(
                plan.next_wake_ms
                    .map_or(w.not_before_ms, |t| t.min(w.not_before_ms)),
            );
            wait(
                PendingReason::Backoff {
                    until_ms: w.not_before_ms,
                },
                &mut position,
            );
            continue;
        }
        let in_queue = per_queue.get(w.queue.as_str()).copied().unwrap_or(0);
        if let Some(&limit) = limits.queue_limits.get(&w.queue)
            && in_queue >= limit
        {
            wait(
                PendingReason::QueueLimit {
                    queue: w.queue.clone(),
                    limit,
                },
                &mut position,
            );
            continue;
        }
        if quotas {
            let over = fair::quotas_of(limits.quotas, &w.user).find_map(|(who, quota)| {
                let holds = match who.strip_prefix("group ") {
                    // A group's members hold together.
                    Some(group) => limits
                        .quotas
                        .groups
                        .iter()
                        .find(|g| g.group == group)
                        .map(|g| {
                            g.members.iter().fold(fair::Held::default(), |mut sum, m| {
                                if let Some(h) = held.get(m.as_str()) {
                                    sum.gpus += h.gpus;
                                    sum.gpu_memory += h.gpu_memory;
                                    sum.cpu_millis += h.cpu_millis;
                                    sum.running += h.running;
                                }
                                sum
                            })
                        })
                        .unwrap_or_default(),
                    None => held.get(w.user.as_str()).copied().unwrap_or_default(),
                };
                holds
                    .over(&w.request, limits.gpus, quota)
                    .map(|limit| (who, limit))
            });
            if let Some((who, limit)) = over {
                wait(PendingReason::Quota { user: who, limit }, &mut position);
                continue;
            }
        }
        if w.request.fits(&free) {
            // When it would be gone at the latest: its limit, then the grace before the kill.
            let gone_by = w.time_limit_ms.map(|d| {
                now_ms
                    .saturating_add(d)
                    .saturating_add(limits.kill_grace_ms)
            });
            let Some(placement) = book.place(w.request.gpu, gone_by) else {
                // (Only worked out when asked: the engine's own walks do not read it.)
                let kept = gpu_claimant
                    .filter(|_| explain)
                    .and_then(|behind| book.kept_until(w.request.gpu).map(|until| (behind, until)));
                let reason = match kept {
                    Some((behind, until)) => PendingReason::GpuKept {
                        behind,
                        max_timeout: until
                            .map(|t| t - now_ms - limits.kill_grace_ms)
                            // Whole seconds, rounded down: people read it.
                            .map(|d| d - d % 1000)
                            .filter(|d| *d > 0)
                            .map(|d| petri_domain::Millis(d as u64)),
                    },
                    _ => book.why_waiting(w.request.gpu),
                };
                wait(reason, &mut position);
                if gpu_claimant.is_none() && now_ms - w.since_ms >= limits.gpu_claim_after_ms {
                    book.claim_for(w.request.gpu, now_ms);
                    gpu_claimant = Some(w.id);
                }
                continue;
            };
            if w.request.gpu != GpuAsk::None {
                book.take(w.request.gpu, &placement, gone_by);
                plan.placements.insert(w.id, placement);
            }
            plan.start.push(w.id);
            free.cpu_millis -= w.request.cpu_millis;
            free.memory -= w.request.memory;
            unclaimed.cpu_millis = unclaimed.cpu_millis.saturating_sub(w.request.cpu_millis);
            unclaimed.memory = unclaimed.memory.saturating_sub(w.request.memory);
            *per_queue.entry(w.queue.as_str()).or_default() += 1;
            if quotas {
                held.entry(w.user.as_str())
                    .or_default()
                    .add(&w.request, limits.gpus);
            }
            continue;
        }
        let reason = match blocker {
            Some(behind) if w.request.fits(&unclaimed) => PendingReason::Priority { behind },
            _ => PendingReason::Resources {
                needs: describe(&w.request),
                free: describe(&Request {
                    cpu_millis: free.cpu_millis,
                    memory: if w.request.memory > 0 { free.memory } else { 0 },
                    gpu: GpuAsk::None,
                }),
            },
        };
        wait(reason, &mut position);
        if blocker.is_none() {
            blocker = Some(w.id);
        }
        // Claim what is free for this job, so later, smaller jobs cannot starve it.
        free.cpu_millis = free.cpu_millis.saturating_sub(w.request.cpu_millis);
        free.memory = free.memory.saturating_sub(w.request.memory);
    }
    if explain && let Some(job) = gpu_claimant {
        plan.kept = book
            .kept()
            .map(|(gpu, until_ms)| Kept { gpu, job, until_ms })
            .collect();
    }
    plan
}

/// Whether `ask` could ever be placed on these GPUs (for refusing impossible requests at submit).
pub fn gpu_request_fits(gpus: &[Gpu], reserve: u64, ask: GpuAsk) -> bool {
    GpuBook::new(gpus, reserve, std::iter::empty()).could_ever_fit(ask)
}

/// "2 cpus, 4GiB" — how a request or free capacity is shown in pending reasons.
pub fn describe(r: &Request) -> String {
    let cpus = r.cpu_millis as f64 / 1000.0;
    let cpus = if cpus.fract() == 0.0 {
        format!("{cpus:.0}")
    } else {
        format!("{cpus:.2}")
    };
    let unit = if r.cpu_millis == 1000 { "cpu" } else { "cpus" };
    if r.memory == 0 {
        format!("{cpus} {unit}")
    } else {
        format!(
            "{cpus} {unit} and {} memory",
            petri_domain::ByteSize(r.memory)
        )
    }
}

#[cfg(test)]
mod tests;
