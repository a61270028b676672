use super::*;

const GIB: u64 = 1 << 30;

struct World {
    capacity: Capacity,
    limits: HashMap<String, u32>,
    running: Vec<Running>,
    waiting: Vec<Waiting>,
    done: HashMap<JobId, DepState>,
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
                memory: 0,
            },
            held: false,
            after: Vec::new(),
            not_before_ms: 0,
        });
        id
    }

    fn plan(&mut self, now: i64, explain: bool) -> Plan {
        self.waiting
            .sort_by_key(|w| (std::cmp::Reverse(w.priority), w.number));
        let limits = Limits {
            capacity: self.capacity,
            queue_limits: &self.limits,
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
            memory: 0,
        },
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
                    memory: 0,
                },
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
