//! P5: replays a GPU job trace through the real scheduler (`petri_sched::plan`) with a simulated
//! clock on 4 simulated 16 GiB GPUs, beside two other policies:
//!
//! - exclusive FIFO: every job gets whole GPUs (a 0.25-GPU task still takes one), in arrival order;
//! - task-spooler style: start the next job on a GPU whose memory *looks* at least 90 % free, from
//!   what running jobs use at that moment (a job that just started has not allocated yet).
//!
//! The trace is shaped on Alibaba PAI's `cluster-trace-gpu-v2020`, where a task's GPU request
//! (`plan_gpu`) is in percent of one GPU and most tasks ask for a fraction of one; see
//! bench/RESULTS.md for the parameters and how they were chosen. Run:
//! `cargo run --release -p petri-sched --example gpu_trace [-- --jobs 2000 --seed 7 --claim-after 900]`.

use std::collections::HashMap;

use petri_domain::JobId;
use petri_sched::{
    Capacity, DepState, Gpu, GpuAsk, GpuPlacement, Limits, Request, Running, Waiting,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal};

const GIB: u64 = 1 << 30;
const GPU_MEM: u64 = 16 * GIB;
const GPUS: u32 = 4;
/// A job allocates its memory this long after it starts (model load, first batch).
const RAMP_S: f64 = 60.0;
/// Petri's aging: after this long, the first GPU job in line keeps GPUs for itself (the default).
const DEFAULT_CLAIM_AFTER_S: i64 = 900;

#[derive(Clone, Debug)]
struct TraceJob {
    arrival: f64,
    duration: f64,
    /// Requested share of a GPU, in hundredths (PAI's plan_gpu): 25, 50, 100, 200...
    plan_gpu: u32,
    /// What it declares (slices) and what it really uses at its peak.
    declared: u64,
    used: u64,
}

fn trace(n: usize, seed: u64) -> Vec<TraceJob> {
    let mut rng = StdRng::seed_from_u64(seed);
    // Arrivals: Poisson, one every 40 s on average, which keeps 4 GPUs busy under every policy.
    let gaps = Exp::new(1.0 / 40.0).unwrap();
    // Durations: log-normal, median 10 minutes, a long tail.
    let durations = LogNormal::new((600.0f64).ln(), 1.0).unwrap();
    let mut t = 0.0;
    (0..n)
        .map(|_| {
            t += gaps.sample(&mut rng);
            let plan_gpu = match rng.random_range(0..100) {
                0..=29 => 10,
                30..=59 => 25,
                60..=79 => 50,
                80..=94 => 100,
                _ => 200,
            };
            let declared = if plan_gpu >= 100 {
                0
            } else {
                GPU_MEM * plan_gpu as u64 / 100
            };
            // Jobs use 60-100 % of what they declare (whole-GPU jobs: of a GPU).
            let basis = if plan_gpu >= 100 { GPU_MEM } else { declared };
            let used = (basis as f64 * rng.random_range(0.6..1.0)) as u64;
            TraceJob {
                arrival: t,
                duration: durations.sample(&mut rng).clamp(30.0, 36_000.0),
                plan_gpu,
                declared,
                used,
            }
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Policy {
    Petri,
    ExclusiveFifo,
    LooksFree,
}

struct Live {
    job: usize,
    start: f64,
    gpus: Vec<u32>,
}

struct Outcome {
    jobs_per_hour: f64,
    mem_utilisation: f64,
    mean_wait_min: f64,
    over_admissions: usize,
}

fn simulate(jobs: &[TraceJob], policy: Policy, claim_after_s: i64) -> Outcome {
    let ids: Vec<JobId> = (0..jobs.len()).map(|_| JobId::new()).collect();
    let index: HashMap<JobId, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let gpus: Vec<Gpu> = (0..GPUS)
        .map(|i| Gpu {
            index: i,
            memory_total: GPU_MEM,
            foreign_used: 0,
            healthy: true,
            mig: Vec::new(),
        })
        .collect();
    let queue_limits = HashMap::new();
    let limits = Limits {
        capacity: Capacity {
            cpu_millis: 1_000_000,
            memory: u64::MAX / 2,
        },
        queue_limits: &queue_limits,
        gpus: &gpus,
        gpu_reserve: 0,
        gpu_claim_after_ms: claim_after_s * 1000,
    };
    let ask = |j: &TraceJob| match policy {
        Policy::Petri if j.plan_gpu < 100 => GpuAsk::Memory(j.declared),
        _ => GpuAsk::Whole(j.plan_gpu.div_ceil(100)),
    };

    let mut now = 0.0f64;
    let mut next_arrival = 0usize;
    let mut waiting: Vec<usize> = Vec::new();
    let mut live: Vec<Live> = Vec::new();
    let (mut waits, mut done) = (0.0, 0usize);
    let mut mem_time = 0.0; // integral of real memory use over time
    let mut over = vec![false; jobs.len()];
    let used_at = |live: &[Live], gpu: u32, t: f64| -> u64 {
        live.iter()
            .filter(|l| l.gpus.contains(&gpu) && t - l.start >= RAMP_S)
            .map(|l| jobs[l.job].used / l.gpus.len() as u64)
            .sum()
    };
    while done < jobs.len() {
        // Next event: an arrival, a completion, or a job finishing its ramp (ts looks again).
        let t_arr = jobs
            .get(next_arrival)
            .map(|j| j.arrival)
            .unwrap_or(f64::INFINITY);
        let t_end = live
            .iter()
            .map(|l| l.start + jobs[l.job].duration)
            .fold(f64::INFINITY, f64::min);
        let t_ramp = live
            .iter()
            .map(|l| l.start + RAMP_S)
            .filter(|t| *t > now)
            .fold(f64::INFINITY, f64::min);
        let t = t_arr.min(t_end).min(t_ramp);
        // Memory in use between now and t (a GPU cannot hold more than it has: the rest OOMs).
        for g in 0..GPUS {
            mem_time += used_at(&live, g, now).min(GPU_MEM) as f64 * (t - now);
        }
        now = t;
        if t == t_arr {
            waiting.push(next_arrival);
            next_arrival += 1;
        }
        live.retain(|l| {
            let end = l.start + jobs[l.job].duration;
            if end <= now {
                done += 1;
                false
            } else {
                true
            }
        });
        // Start what the policy allows.
        loop {
            let started: Vec<(usize, Vec<u32>)> = match policy {
                Policy::Petri => {
                    let running: Vec<Running> = live
                        .iter()
                        .map(|l| Running {
                            queue: "default".into(),
                            request: Request {
                                cpu_millis: 1,
                                memory: 0,
                                gpu: ask(&jobs[l.job]),
                            },
                            gpu: GpuPlacement {
                                gpus: l.gpus.clone(),
                                mig_slot: None,
                            },
                        })
                        .collect();
                    let w: Vec<Waiting> = waiting
                        .iter()
                        .map(|&j| Waiting {
                            id: ids[j],
                            number: j as u64,
                            priority: 0,
                            queue: "default".into(),
                            request: Request {
                                cpu_millis: 1,
                                memory: 0,
                                gpu: ask(&jobs[j]),
                            },
                            held: false,
                            after: Vec::new(),
                            not_before_ms: 0,
                            since_ms: (jobs[j].arrival * 1000.0) as i64,
                        })
                        .collect();
                    let plan = petri_sched::plan(
                        &limits,
                        &running,
                        &w,
                        |_| DepState::Succeeded,
                        (now * 1000.0) as i64,
                        false,
                    );
                    plan.start
                        .iter()
                        .map(|id| (index[id], plan.placements[id].gpus.clone()))
                        .collect()
                }
                Policy::ExclusiveFifo => {
                    let Some(&head) = waiting.first() else { break };
                    let n = jobs[head].plan_gpu.div_ceil(100) as usize;
                    let free: Vec<u32> = (0..GPUS)
                        .filter(|g| !live.iter().any(|l| l.gpus.contains(g)))
                        .take(n)
                        .collect();
                    if free.len() < n {
                        vec![]
                    } else {
                        vec![(head, free)]
                    }
                }
                Policy::LooksFree => {
                    let Some(&head) = waiting.first() else { break };
                    let n = jobs[head].plan_gpu.div_ceil(100) as usize;
                    // One start per GPU per look: a GPU given a job at this instant is not
                    // looked at again until the next event.
                    let looks_free: Vec<u32> = (0..GPUS)
                        .filter(|g| used_at(&live, *g, now) as f64 <= 0.1 * GPU_MEM as f64)
                        .filter(|g| !live.iter().any(|l| l.start == now && l.gpus.contains(g)))
                        .take(n)
                        .collect();
                    if looks_free.len() < n {
                        vec![]
                    } else {
                        vec![(head, looks_free)]
                    }
                }
            };
            if started.is_empty() {
                break;
            }
            for (j, gpus) in started {
                waiting.retain(|w| *w != j);
                waits += now - jobs[j].arrival;
                live.push(Live {
                    job: j,
                    start: now,
                    gpus,
                });
            }
            if policy == Policy::Petri {
                break; // one plan starts everything that fits
            }
        }
        // Over-admission: a GPU whose jobs' real peaks add up to more than it has.
        for g in 0..GPUS {
            let peak: u64 = live
                .iter()
                .filter(|l| l.gpus.contains(&g))
                .map(|l| jobs[l.job].used / l.gpus.len() as u64)
                .sum();
            if peak > GPU_MEM {
                for l in live.iter().filter(|l| l.gpus.contains(&g)) {
                    over[l.job] = true;
                }
            }
        }
    }
    let hours = now / 3600.0;
    Outcome {
        jobs_per_hour: jobs.len() as f64 / hours,
        mem_utilisation: mem_time / (now * (GPUS as u64 * GPU_MEM) as f64),
        mean_wait_min: waits / jobs.len() as f64 / 60.0,
        over_admissions: over.iter().filter(|o| **o).count(),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut n, mut seed, mut claim_after) = (2000usize, 7u64, DEFAULT_CLAIM_AFTER_S);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--jobs" => n = args.next().and_then(|v| v.parse().ok()).unwrap_or(n),
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()).unwrap_or(seed),
            "--claim-after" => {
                claim_after = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(claim_after)
            }
            _ => {}
        }
    }
    let jobs = trace(n, seed);
    let share = |p: u32| jobs.iter().filter(|j| j.plan_gpu == p).count() as f64 / n as f64 * 100.0;
    println!(
        "trace: {n} jobs (seed {seed}); plan_gpu 10: {:.0}%, 25: {:.0}%, 50: {:.0}%, 100: {:.0}%, 200: {:.0}%",
        share(10),
        share(25),
        share(50),
        share(100),
        share(200)
    );
    println!("| policy | jobs/hour | GPU memory utilisation | mean wait | over-admissions |");
    println!("|---|---|---|---|---|");
    let mut fifo_rate = 0.0;
    for (name, policy) in [
        ("exclusive FIFO", Policy::ExclusiveFifo),
        ("looks ≥90 % free (task-spooler)", Policy::LooksFree),
        (
            "Petri (reservations, best-fit slices, aging)",
            Policy::Petri,
        ),
    ] {
        let o = simulate(&jobs, policy, claim_after);
        if policy == Policy::ExclusiveFifo {
            fifo_rate = o.jobs_per_hour;
        }
        println!(
            "| {name} | {:.1} ({:.2}× FIFO) | {:.0} % | {:.0} min | {} |",
            o.jobs_per_hour,
            o.jobs_per_hour / fifo_rate,
            o.mem_utilisation * 100.0,
            o.mean_wait_min,
            o.over_admissions
        );
    }
}
