use super::*;

const GIB: u64 = 1 << 30;
const MINUTE: i64 = 60_000;

struct World {
    capacity: Capacity,
    limits: HashMap<String, u32>,
    running: Vec<Running>,
    waiting: Vec<Waiting>,
    done: HashMap<JobId, DepState>,
    gpus: Vec<Gpu>,
    gpu_reserve: u64,
    gpu_claim_after_ms: i64,
    /// The time of the last plan.
    now: i64,
    quotas: QuotaBook,
    usage: Option<HashMap<String, f64>>,
}

impl World {
    fn new(cpus: u64, mem_gib: u64) -> Self {
        World {
            capacity: Capacity {
                cpu_millis: cpus * 1000,
                memory: mem_gib * GIB,
            },
            limits: HashMap::new(),
            running: Vec::new(),
            waiting: Vec::new(),
            done: HashMap::new(),
            gpus: Vec::new(),
            gpu_reserve: 0,
            gpu_claim_after_ms: 0,
            now: 0,
            quotas: QuotaBook::default(),
            usage: None,
        }
    }

    fn submit(&mut self, priority: i32, cpus: u64, queue: &str) -> JobId {
        let id = JobId::new();
        let number = self.waiting.len() as u64 + 1;
        self.waiting.push(Waiting {
            id,
            number,
            priority,
            queue: queue.into(),
            request: Request {
                cpu_millis: cpus * 1000,
                ..Default::default()
            },
            held: false,
            after: Vec::new(),
            not_before_ms: 0,
            since_ms: 0,
            time_limit_ms: None,
            user: "me".into(),
        });
        id
    }

    fn plan(&mut self, now: i64, explain: bool) -> Plan {
        self.now = now;
        self.waiting
            .sort_by_key(|w| (std::cmp::Reverse(w.priority), w.number));
        let limits = Limits {
            capacity: self.capacity,
            queue_limits: &self.limits,
            gpus: &self.gpus,
            gpu_reserve: self.gpu_reserve,
            gpu_claim_after_ms: self.gpu_claim_after_ms,
            kill_grace_ms: 0,
            quotas: &self.quotas,
            usage: self.usage.as_ref(),
        };
        let done = &self.done;
        let numbers: HashMap<JobId, u64> = self.waiting.iter().map(|w| (w.id, w.number)).collect();
        plan(
            &limits,
            &self.running,
            &self.waiting,
            |id| {
                done.get(&id).copied().unwrap_or(DepState::Waiting {
                    number: numbers.get(&id).copied().unwrap_or(0),
                })
            },
            now,
            explain,
        )
    }
}

#[test]
fn higher_priority_starts_first_then_submission_order() {
    let mut w = World::new(2, 8);
    let a = w.submit(0, 1, "default");
    let b = w.submit(5, 1, "default");
    let c = w.submit(0, 1, "default");
    let p = w.plan(0, true);
    assert_eq!(p.start, vec![b, a]);
    assert_eq!(p.pending[&c].position, Some(1));
    assert!(matches!(
        p.pending[&c].reason,
        PendingReason::Resources { .. }
    ));
    assert_eq!(
        p.pending[&c].message,
        "waiting for resources: needs 1 cpu, 0 cpus free"
    );
}

#[test]
fn a_big_job_is_not_starved_by_small_ones() {
    let mut w = World::new(4, 8);
    w.running.push(Running {
        queue: "default".into(),
        request: Request {
            cpu_millis: 2000,
            ..Default::default()
        },
        gpu: GpuPlacement::default(),
        deadline_ms: None,
        user: "me".into(),
    });
    let big = w.submit(0, 4, "default");
    let small = w.submit(0, 1, "default");
    let p = w.plan(0, true);
    assert!(
        p.start.is_empty(),
        "the small job must not overtake the big one"
    );
    assert!(matches!(
        p.pending[&big].reason,
        PendingReason::Resources { .. }
    ));
    assert_eq!(
        p.pending[&small].reason,
        PendingReason::Priority { behind: big }
    );
}

#[test]
fn queue_limits_hold_back_only_their_queue() {
    let mut w = World::new(8, 8);
    w.limits.insert("gpu".into(), 1);
    let g1 = w.submit(0, 1, "gpu");
    let g2 = w.submit(0, 1, "gpu");
    let d = w.submit(0, 1, "default");
    let p = w.plan(0, true);
    assert_eq!(p.start, vec![g1, d]);
    assert_eq!(
        p.pending[&g2].reason,
        PendingReason::QueueLimit {
            queue: "gpu".into(),
            limit: 1
        }
    );
}

#[test]
fn held_dependent_and_backoff_jobs_wait_and_claim_nothing() {
    let mut w = World::new(1, 8);
    let first = w.submit(0, 1, "default");
    w.waiting[0].held = true;
    let dep = w.submit(0, 1, "default");
    w.waiting[1].after = vec![first];
    let backoff = w.submit(0, 1, "default");
    w.waiting[2].not_before_ms = 5_000;
    let free = w.submit(0, 1, "default");
    let p = w.plan(1_000, true);
    assert_eq!(p.start, vec![free]);
    assert_eq!(p.pending[&first].reason, PendingReason::Held);
    assert_eq!(
        p.pending[&first].position, None,
        "held jobs are not in line"
    );
    assert_eq!(p.pending[&dep].position, Some(1));
    assert!(matches!(
        p.pending[&dep].reason,
        PendingReason::Dependency { number: 1, .. }
    ));
    assert!(matches!(
        p.pending[&backoff].reason,
        PendingReason::Backoff { until_ms: 5_000 }
    ));
    assert_eq!(p.next_wake_ms, Some(5_000));
    // After the backoff the job may start, and once the dependency succeeded so may its dependant.
    w.waiting.retain(|x| x.id != free);
    w.waiting[0].held = false;
    w.done.insert(first, DepState::Succeeded);
    w.capacity.cpu_millis = 3000;
    let p = w.plan(6_000, false);
    assert_eq!(p.start, vec![first, dep, backoff]);
}

#[test]
fn memory_is_reserved_too() {
    let mut w = World::new(8, 8);
    let a = w.submit(0, 1, "default");
    w.waiting[0].request.memory = 6 * GIB;
    let b = w.submit(0, 1, "default");
    w.waiting[1].request.memory = 6 * GIB;
    let p = w.plan(0, true);
    assert_eq!(p.start, vec![a]);
    assert_eq!(
        p.pending[&b].message,
        "waiting for resources: needs 1 cpu and 6GiB memory, 7 cpus and 2GiB memory free"
    );
}

#[test]
fn the_walk_is_deterministic_under_a_simulated_clock() {
    // Replay: 50 one-cpu jobs with mixed priorities on 3 cpus, each running 10 ticks.
    let mut w = World::new(3, 8);
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(w.submit(i % 3, 1, "default"));
    }
    let mut clock = 0;
    let mut running: Vec<(i64, JobId)> = Vec::new();
    let mut order = Vec::new();
    while order.len() < 50 {
        running.retain(|(end, _)| *end > clock);
        w.running = running
            .iter()
            .map(|_| Running {
                queue: "default".into(),
                request: Request {
                    cpu_millis: 1000,
                    ..Default::default()
                },
                gpu: GpuPlacement::default(),
                deadline_ms: None,
                user: "me".into(),
            })
            .collect();
        let p = w.plan(clock, false);
        for id in p.start {
            order.push(id);
            running.push((clock + 10, id));
            w.waiting.retain(|x| x.id != id);
        }
        clock += 1;
    }
    // Priority 2 jobs all start before any priority 0 job that was waiting with them.
    let pos = |i: usize| order.iter().position(|x| *x == ids[i]).unwrap();
    assert!(pos(2) < pos(0));
    assert!(pos(47) < pos(3));
    assert_eq!(clock, 161);
}

// --- GPUs -------------------------------------------------------------------------------------

fn gpu(index: u32, foreign_gib: u64) -> Gpu {
    Gpu {
        index,
        memory_total: 16 * GIB,
        foreign_used: foreign_gib * GIB,
        healthy: true,
        mig: Vec::new(),
    }
}

impl World {
    fn submit_gpu(&mut self, ask: GpuAsk) -> JobId {
        let id = self.submit(0, 1, "default");
        self.waiting.last_mut().unwrap().request.gpu = ask;
        id
    }

    /// Moves the started jobs from waiting to running, with their placements (started at the
    /// time of the last plan).
    fn start(&mut self, plan: &Plan) {
        for id in &plan.start {
            let pos = self.waiting.iter().position(|w| w.id == *id).unwrap();
            let w = self.waiting.remove(pos);
            self.running.push(Running {
                queue: w.queue,
                request: w.request,
                gpu: plan.placements.get(id).cloned().unwrap_or_default(),
                deadline_ms: w.time_limit_ms.map(|d| self.now + d),
                user: w.user,
            });
        }
    }

    /// A GPU job with a time limit.
    fn submit_gpu_for(&mut self, ask: GpuAsk, minutes: i64) -> JobId {
        let id = self.submit_gpu(ask);
        self.waiting.last_mut().unwrap().time_limit_ms = Some(minutes * MINUTE);
        id
    }
}

fn placed_on(plan: &Plan, id: JobId) -> Vec<u32> {
    plan.placements[&id].gpus.clone()
}

#[test]
fn memory_slices_pack_two_to_a_gpu_and_the_rest_wait() {
    let mut w = World::new(16, 64);
    w.gpus = vec![gpu(0, 0), gpu(1, 0)];
    let jobs: Vec<JobId> = (0..8)
        .map(|_| w.submit_gpu(GpuAsk::Memory(7 * GIB)))
        .collect();
    let p = w.plan(0, true);
    assert_eq!(p.start, jobs[..4].to_vec());
    let mut per_gpu = [0, 0];
    for id in &p.start {
        per_gpu[placed_on(&p, *id)[0] as usize] += 1;
    }
    assert_eq!(per_gpu, [2, 2]);
    for id in &jobs[4..] {
        assert!(
            p.pending[id].message.starts_with("waiting for GPU memory"),
            "{}",
            p.pending[id].message
        );
    }
    // GPU jobs never block a CPU-only job behind them.
    let cpu = w.submit(0, 1, "default");
    let p = w.plan(0, false);
    assert!(p.start.contains(&cpu));
}

#[test]
fn a_whole_gpu_waits_for_an_empty_one_then_holds_it_alone() {
    let mut w = World::new(16, 64);
    w.gpus = vec![gpu(0, 0), gpu(1, 0)];
    let a = w.submit_gpu(GpuAsk::Memory(4 * GIB));
    let b = w.submit_gpu(GpuAsk::Memory(13 * GIB));
    let p = w.plan(0, false);
    w.start(&p);
    assert_ne!(
        placed_on(&p, a),
        placed_on(&p, b),
        "13GiB does not fit beside 4GiB"
    );
    let b_gpu = placed_on(&p, b);
    let whole = w.submit_gpu(GpuAsk::Whole(1));
    let late_slice = w.submit_gpu(GpuAsk::Memory(2 * GIB));
    let p = w.plan(0, true);
    assert_eq!(
        p.pending[&whole].reason,
        PendingReason::Gpus { needs: 1, free: 0 }
    );
    // The whole-GPU job keeps the GPU that empties first (fewest reserved) for itself: the later
    // slice may start, but only beside the 13GiB job (16 - 13 = 3), never on the kept GPU.
    assert_eq!(p.start, vec![late_slice]);
    assert_eq!(placed_on(&p, late_slice), b_gpu);
    w.start(&p);
    // The 4GiB job ends: its GPU is empty, the whole-GPU job takes it and holds it alone.
    let a_pos = w
        .running
        .iter()
        .position(|r| r.request.gpu == GpuAsk::Memory(4 * GIB))
        .unwrap();
    let freed = w.running.remove(a_pos).gpu.gpus[0];
    let p = w.plan(1, true);
    assert_eq!(p.start, vec![whole]);
    assert_eq!(placed_on(&p, whole), vec![freed]);
    w.start(&p);
    // Nothing is ever placed beside it.
    let another = w.submit_gpu(GpuAsk::Memory(GIB));
    let p = w.plan(2, true);
    assert_eq!(p.start, vec![another]);
    assert_ne!(placed_on(&p, another), vec![freed]);
}

#[test]
fn foreign_processes_and_the_reserve_shrink_what_a_gpu_admits() {
    let mut w = World::new(16, 64);
    w.gpus = vec![gpu(0, 10), gpu(1, 0)];
    let jobs: Vec<JobId> = (0..3)
        .map(|_| w.submit_gpu(GpuAsk::Memory(7 * GIB)))
        .collect();
    let p = w.plan(0, true);
    assert_eq!(p.start.len(), 2);
    for id in &p.start {
        assert_eq!(placed_on(&p, *id), vec![1], "GPU 0 has only 6GiB left");
    }
    assert!(p.pending.contains_key(&jobs[2]));

    let mut w = World::new(16, 64);
    w.gpus = vec![gpu(0, 0)];
    w.gpu_reserve = 3 * GIB;
    w.submit_gpu(GpuAsk::Memory(7 * GIB));
    let second = w.submit_gpu(GpuAsk::Memory(7 * GIB));
    let p = w.plan(0, true);
    assert_eq!(p.start.len(), 1, "16 - 3 reserve = 13: one 7GiB slice");
    assert!(p.pending.contains_key(&second));
}

#[test]
fn slices_go_where_they_fit_best_and_never_on_a_lost_gpu() {
    let mut w = World::new(16, 64);
    w.gpus = vec![gpu(0, 7), gpu(1, 0), gpu(2, 0)];
    w.gpus[2].healthy = false;
    let small = w.submit_gpu(GpuAsk::Memory(8 * GIB));
    let big = w.submit_gpu(GpuAsk::Memory(16 * GIB));
    let p = w.plan(0, true);
    assert_eq!(
        placed_on(&p, small),
        vec![0],
        "9GiB free on GPU 0 is the best fit for 8GiB"
    );
    assert_eq!(placed_on(&p, big), vec![1]);
    let lost_only = w.submit_gpu(GpuAsk::Whole(1));
    w.start(&p);
    let p = w.plan(0, true);
    assert!(!p.start.contains(&lost_only), "GPU 2 is lost");
    assert!(!gpu_request_fits(&w.gpus, 0, GpuAsk::Whole(3)));
    assert!(gpu_request_fits(&w.gpus, 0, GpuAsk::Whole(2)));
    assert!(!gpu_request_fits(&w.gpus, 0, GpuAsk::Memory(17 * GIB)));
}

#[test]
fn small_gpu_jobs_pass_a_whole_gpu_job_only_until_it_has_waited_long_enough() {
    let mut w = World::new(16, 64);
    w.gpus = vec![gpu(0, 0)];
    w.gpu_claim_after_ms = 600_000;
    w.submit_gpu(GpuAsk::Memory(4 * GIB));
    let p = w.plan(0, false);
    w.start(&p);
    let whole = w.submit_gpu(GpuAsk::Whole(1));
    let small = w.submit_gpu(GpuAsk::Memory(4 * GIB));
    // Young: the small job may pass it.
    let p = w.plan(60_000, true);
    assert_eq!(p.start, vec![small]);
    w.start(&p);
    // Old: the next small job may not; the GPU drains for the whole-GPU job.
    let late = w.submit_gpu(GpuAsk::Memory(4 * GIB));
    let p = w.plan(700_000, true);
    assert!(p.start.is_empty());
    assert!(p.pending.contains_key(&late) && p.pending.contains_key(&whole));
}

#[test]
fn mig_instances_are_taken_whole_and_only_by_mig_requests() {
    let mut w = World::new(16, 64);
    w.gpus = vec![gpu(0, 0), gpu(1, 0)];
    w.gpus[1].mig = vec![7, 7, 9]; // two instances of profile 7, one of profile 9
    let a = w.submit_gpu(GpuAsk::Mig(7));
    let b = w.submit_gpu(GpuAsk::Mig(7));
    let c = w.submit_gpu(GpuAsk::Mig(7));
    let slice = w.submit_gpu(GpuAsk::Memory(GIB));
    let p = w.plan(0, true);
    assert_eq!(p.start, vec![a, b, slice]);
    assert_eq!(p.placements[&a].mig_slot, Some(0));
    assert_eq!(p.placements[&b].mig_slot, Some(1));
    assert_eq!(
        p.placements[&slice].gpus,
        vec![0],
        "a slice never lands on a MIG GPU"
    );
    assert_eq!(p.pending[&c].reason, PendingReason::MigInstance { free: 0 });
    w.start(&p);
    // One ends: its instance is free again.
    let pos = w
        .running
        .iter()
        .position(|r| r.gpu.mig_slot == Some(0))
        .unwrap();
    w.running.remove(pos);
    let p = w.plan(1, false);
    assert_eq!(p.start, vec![c]);
    assert_eq!(p.placements[&c].mig_slot, Some(0));
    assert!(!gpu_request_fits(&w.gpus, 0, GpuAsk::Mig(3)));
    assert!(
        !gpu_request_fits(&w.gpus, 0, GpuAsk::Whole(2)),
        "GPU 1 is MIG-only"
    );
}

// --- Backfill by time limits ------------------------------------------------------------------

#[test]
fn a_claimed_gpu_takes_only_jobs_that_end_before_the_claimant_could_start() {
    let mut w = World::new(16, 64);
    w.gpus = vec![gpu(0, 0)];
    // An 8GiB slice that its time limit ends within the hour.
    w.submit_gpu_for(GpuAsk::Memory(8 * GIB), 60);
    let p = w.plan(0, false);
    w.start(&p);
    let whole = w.submit_gpu(GpuAsk::Whole(1));
    let short = w.submit_gpu_for(GpuAsk::Memory(4 * GIB), 30);
    let unlimited = w.submit_gpu(GpuAsk::Memory(GIB));
    let long = w.submit_gpu_for(GpuAsk::Memory(GIB), 90);
    let p = w.plan(5 * MINUTE, true);
    // The whole-GPU job has the GPU by the hour at the latest; only the job that ends before
    // then may use the memory left meanwhile.
    assert_eq!(p.start, vec![short]);
    assert_eq!(placed_on(&p, short), vec![0]);
    assert!(p.pending.contains_key(&whole));
    // The others are told what time limit would let them in.
    for waits in [unlimited, long] {
        assert_eq!(
            p.pending[&waits].reason,
            PendingReason::GpuKept {
                behind: whole,
                max_timeout: Some(petri_domain::Millis(55 * MINUTE as u64)),
            }
        );
    }
    assert_eq!(
        p.kept,
        vec![Kept {
            gpu: 0,
            job: whole,
            until_ms: Some(60 * MINUTE)
        }]
    );
    assert_eq!(
        p.pending[&long].message,
        "waiting for a GPU kept for a job ahead in line; a timeout of at most 55m would let \
         it start now"
    );
    w.start(&p);
    // Later, a job whose limit still ends before the hour fits beside them.
    let fits = w.submit_gpu_for(GpuAsk::Memory(2 * GIB), 20);
    let p = w.plan(30 * MINUTE, true);
    assert_eq!(p.start, vec![fits]);
    w.start(&p);
    // Once every job's limit has passed and they are gone, the whole-GPU job starts.
    w.running.clear();
    let p = w.plan(61 * MINUTE, true);
    assert_eq!(p.start[0], whole);
}

#[test]
fn a_job_without_a_time_limit_on_a_claimed_gpu_lets_nothing_pass() {
    let mut w = World::new(16, 64);
    w.gpus = vec![gpu(0, 0)];
    w.submit_gpu(GpuAsk::Memory(8 * GIB));
    let p = w.plan(0, false);
    w.start(&p);
    let whole = w.submit_gpu(GpuAsk::Whole(1));
    let short = w.submit_gpu_for(GpuAsk::Memory(GIB), 1);
    let p = w.plan(MINUTE, true);
    assert!(p.start.is_empty());
    assert!(p.pending.contains_key(&whole));
    assert_eq!(
        p.pending[&short].reason,
        PendingReason::GpuKept {
            behind: whole,
            max_timeout: None
        }
    );
}

#[test]
fn a_whole_gpu_claim_drains_the_gpu_that_time_limits_free_first() {
    let mut w = World::new(16, 64);
    w.gpus = vec![gpu(0, 0), gpu(1, 0)];
    // GPU 0: one slice for three hours. GPU 1: two slices for ten minutes.
    w.submit_gpu_for(GpuAsk::Memory(12 * GIB), 180);
    let p = w.plan(0, false);
    w.start(&p);
    assert_eq!(w.running[0].gpu.gpus, vec![0]);
    w.submit_gpu_for(GpuAsk::Memory(7 * GIB), 10);
    w.submit_gpu_for(GpuAsk::Memory(7 * GIB), 10);
    let p = w.plan(0, false);
    assert!(p.placements.values().all(|g| g.gpus == vec![1]));
    w.start(&p);
    let whole = w.submit_gpu(GpuAsk::Whole(1));
    // Going by slice counts GPU 0 would drain, for three hours; its time limits say GPU 1 is
    // free in ten minutes, so GPU 1 is kept, and a slice behind goes to GPU 0.
    let slice = w.submit_gpu(GpuAsk::Memory(2 * GIB));
    let p = w.plan(MINUTE, true);
    assert_eq!(p.start, vec![slice]);
    assert_eq!(placed_on(&p, slice), vec![0]);
    assert!(p.pending.contains_key(&whole));
}

#[test]
fn a_slice_claim_keeps_the_gpu_where_time_limits_free_its_memory_first() {
    let mut w = World::new(16, 64);
    w.gpus = vec![gpu(0, 0), gpu(1, 0)];
    // GPU 0: 6GiB for ever and 6GiB for an hour. GPU 1: 12GiB for ever. 4GiB free on each.
    w.submit_gpu(GpuAsk::Memory(6 * GIB));
    w.submit_gpu(GpuAsk::Memory(12 * GIB));
    let p = w.plan(0, false);
    w.start(&p);
    w.submit_gpu_for(GpuAsk::Memory(6 * GIB), 60);
    let p = w.plan(0, false);
    w.start(&p);
    let on = |w: &World, gib: u64| {
        w.running
            .iter()
            .filter(|r| r.request.gpu == GpuAsk::Memory(gib * GIB))
            .map(|r| r.gpu.gpus[0])
            .collect::<Vec<_>>()
    };
    assert_eq!(on(&w, 6), vec![0, 0]);
    assert_eq!(on(&w, 12), vec![1]);
    // A 10GiB slice can only ever run on GPU 0 (once the hour is over): it keeps GPU 0.
    let big = w.submit_gpu(GpuAsk::Memory(10 * GIB));
    let unlimited = w.submit_gpu(GpuAsk::Memory(3 * GIB));
    let short = w.submit_gpu_for(GpuAsk::Memory(3 * GIB), 30);
    let p = w.plan(MINUTE, true);
    assert!(p.pending.contains_key(&big));
    // The unlimited slice may only go to GPU 1; the short one may use GPU 0 meanwhile.
    assert_eq!(placed_on(&p, unlimited), vec![1]);
    assert_eq!(placed_on(&p, short), vec![0]);
}

#[test]
fn a_user_at_their_quota_waits_with_the_reason_and_claims_nothing() {
    let mut w = World::new(8, 64);
    w.quotas.users.insert(
        "alice".into(),
        petri_domain::Quota {
            running: Some(1),
            ..Default::default()
        },
    );
    let a1 = w.submit(0, 1, "default");
    let a2 = w.submit(0, 1, "default");
    let b1 = w.submit(0, 1, "default");
    for (i, w) in w.waiting.iter_mut().enumerate() {
        w.user = if i < 2 { "alice" } else { "bob" }.into();
    }
    let p = w.plan(0, true);
    assert_eq!(p.start, vec![a1, b1]);
    match &p.pending[&a2].reason {
        PendingReason::Quota { user, limit } => {
            assert_eq!((user.as_str(), limit.as_str()), ("alice", "1 running job"));
        }
        other => panic!("{other:?}"),
    }
    assert!(p.pending[&a2].message.starts_with("quota:"));
    // A group's members hold together.
    let mut w = World::new(8, 64);
    w.quotas.groups.push(petri_domain::GroupQuota {
        group: "ml".into(),
        quota: petri_domain::Quota {
            cpus: Some(2.0),
            ..Default::default()
        },
        members: ["alice".to_string(), "bob".to_string()].into(),
    });
    w.running.push(Running {
        queue: "default".into(),
        request: Request {
            cpu_millis: 2000,
            ..Default::default()
        },
        gpu: GpuPlacement::default(),
        deadline_ms: None,
        user: "alice".into(),
    });
    let b = w.submit(0, 1, "default");
    let c = w.submit(0, 1, "default");
    w.waiting[0].user = "bob".into();
    w.waiting[1].user = "carol".into();
    let p = w.plan(0, true);
    assert_eq!(p.start, vec![c]);
    assert!(
        matches!(&p.pending[&b].reason, PendingReason::Quota { user, .. } if user == "group ml")
    );
}

#[test]
fn fair_share_lets_the_least_used_user_go_first_within_a_priority() {
    let mut w = World::new(1, 8);
    let heavy: Vec<JobId> = (0..5).map(|_| w.submit(0, 1, "default")).collect();
    let light = w.submit(0, 1, "default");
    let urgent = w.submit(5, 1, "default");
    for (i, job) in w.waiting.iter_mut().enumerate() {
        job.user = match i {
            0..=4 => "heavy",
            5 => "light",
            _ => "heavy",
        }
        .into();
    }
    // Without usage: submission order.
    assert_eq!(w.plan(0, false).start, vec![urgent]);
    w.waiting.retain(|j| j.id != urgent);
    assert_eq!(w.plan(0, false).start, vec![heavy[0]]);
    // With usage: the light user's job passes the heavy user's backlog, not a higher priority.
    w.usage = Some([("heavy".to_string(), 5000.0)].into());
    let p = w.plan(0, true);
    assert_eq!(p.start, vec![light]);
    assert_eq!(p.pending[&heavy[0]].position, Some(1));
}
