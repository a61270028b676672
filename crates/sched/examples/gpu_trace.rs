//! P5: replays a GPU job trace through the real scheduler (`petri_sched::plan`) with a simulated
//! clock on 4 simulated 16 GiB GPUs, beside two other policies:
//!
//! - exclusive FIFO: every job gets whole GPUs (a 0.25-GPU task still takes one), in arrival order;
//! - task-spooler style: start the next job on a GPU whose memory *looks* at least 90 % free, from
//!   what running jobs use at that moment (a job that just started has not allocated yet).
//!
//! The trace is shaped on Alibaba PAI's `cluster-trace-gpu-v2020`, where a task's GPU request
//! (`plan_gpu`) is in percent of one GPU; see bench/RESULTS.md for the figures it follows and where
//! they come from. Run:
//! `cargo run --release -p petri-sched --example gpu_trace [-- --mix pai|fractional --jobs 2000 --seed 7 --seeds 10 --claim-after 900]`.

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
/// In the time-limits variant, each job's limit is this many times its real run time (people
/// overestimate, so a limit rarely ends a job).
const LIMIT_FACTOR: f64 = 2.0;

/// Which requests the trace's jobs make: `plan_gpu` values and their weights (per mille).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mix {
    /// The shares counted in PAI's task table (tasks that ask for more than this box's 4 GPUs
    /// left out): 10 %: 11.8 %, 25 %: 27.7 %, 50 %: 13.9 %, 100 %: 45.0 %, 200 %: 1.6 %.
    Pai,
    /// A box where most work is fractional (a notebook-and-sweep workstation): 10 %: 30 %,
    /// 25 %: 30 %, 50 %: 20 %, 100 %: 15 %, 200 %: 5 %.
    Fractional,
}

impl Mix {
    fn weights(self) -> &'static [(u32, u32)] {
        match self {
            Mix::Pai => &[(10, 118), (25, 277), (50, 139), (100, 450), (200, 16)],
            Mix::Fractional => &[(10, 300), (25, 300), (50, 200), (100, 150), (200, 50)],
        }
    }
    fn name(self) -> &'static str {
        match self {
            Mix::Pai => "pai",
            Mix::Fractional => "fractional",
        }
    }
}

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

fn trace(n: usize, seed: u64, mix: Mix) -> Vec<TraceJob> {
    let mut rng = StdRng::seed_from_u64(seed);
    // Arrivals: Poisson, one every 40 s on average: far more than 4 GPUs can serve, so the queue
    // never empties and the rates measure capacity.
    let gaps = Exp::new(1.0 / 40.0).unwrap();
    // Durations: log-normal with PAI's median (614 s) and a σ of 2.1, fitted to its 90th and 99th
    // percentiles (12,390 s and 67,166 s); clamped to 30 s – 48 h.
    let durations = LogNormal::new(614f64.ln(), 2.1).unwrap();
    let weights = mix.weights();
    let total: u32 = weights.iter().map(|(_, w)| w).sum();
    let mut t = 0.0;
    (0..n)
        .map(|_| {
            t += gaps.sample(&mut rng);
            let mut pick = rng.random_range(0..total);
            let plan_gpu = weights
                .iter()
                .find(|(_, w)| {
                    let hit = pick < *w;
                    pick = pick.saturating_sub(*w);
                    hit
                })
                .map_or(100, |(p, _)| *p);
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
                duration: durations.sample(&mut rng).clamp(30.0, 172_800.0),
                plan_gpu,
                declared,
                used,
            }
        })
        .collect()
}

/// The most jobs per hour any policy could reach on this trace: every job's GPU share packed
/// perfectly (GPU-time = duration × share), and no job ending before its arrival plus duration.
fn perfect_packing_rate(jobs: &[TraceJob]) -> f64 {
    let area: f64 = jobs
        .iter()
        .map(|j| j.duration * j.plan_gpu as f64 / 100.0)
        .sum();
    let last = jobs
        .iter()
        .map(|j| j.arrival + j.duration)
        .fold(0.0, f64::max);
    jobs.len() as f64 / ((area / GPUS as f64).max(last) / 3600.0)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Policy {
    /// With `time_limits`, every job declares a time limit of `LIMIT_FACTOR` × its real run time.
    Petri {
        time_limits: bool,
    },
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
    let no_quotas = petri_domain::QuotaBook::default();
    let limits = Limits {
        capacity: Capacity {
            cpu_millis: 1_000_000,
            memory: u64::MAX / 2,
        },
        queue_limits: &queue_limits,
        gpus: &gpus,
        gpu_reserve: 0,
        gpu_claim_after_ms: claim_after_s * 1000,
        kill_grace_ms: 0,
        quotas: &no_quotas,
        usage: None,
    };
    let ask = |j: &TraceJob| match policy {
        Policy::Petri { .. } if j.plan_gpu < 100 => GpuAsk::Memory(j.declared),
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
                Policy::Petri { time_limits } => {
                    let limit_ms = |j: usize| {
                        time_limits.then(|| (jobs[j].duration * LIMIT_FACTOR * 1000.0) as i64)
                    };
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
                            deadline_ms: limit_ms(l.job).map(|d| (l.start * 1000.0) as i64 + d),
                            user: String::new(),
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
                            time_limit_ms: limit_ms(j),
                            user: String::new(),
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
            if matches!(policy, Policy::Petri { .. }) {
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

struct Args {
    mixes: Vec<Mix>,
    jobs: usize,
    seed: u64,
    seeds: u64,
    claim_after: i64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        mixes: vec![Mix::Pai, Mix::Fractional],
        jobs: 2000,
        seed: 7,
        seeds: 10,
        claim_after: DEFAULT_CLAIM_AFTER_S,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--mix" => {
                a.mixes = vec![match value.as_str() {
                    "pai" => Mix::Pai,
                    "fractional" => Mix::Fractional,
                    _ => return Err("--mix is pai or fractional".into()),
                }]
            }
            "--jobs" => a.jobs = number()? as usize,
            "--seed" => a.seed = number()?,
            "--seeds" => a.seeds = number()?,
            "--claim-after" => a.claim_after = number()? as i64,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gpu_trace: {e}");
            std::process::exit(2);
        }
    };
    for mix in &a.mixes {
        let jobs = trace(a.jobs, a.seed, *mix);
        let share =
            |p: u32| jobs.iter().filter(|j| j.plan_gpu == p).count() as f64 / a.jobs as f64 * 100.0;
        println!(
            "\nmix {}: {} jobs (seed {}); plan_gpu 10: {:.0}%, 25: {:.0}%, 50: {:.0}%, 100: {:.0}%, 200: {:.0}%; aging after {} s",
            mix.name(),
            a.jobs,
            a.seed,
            share(10),
            share(25),
            share(50),
            share(100),
            share(200),
            a.claim_after
        );
        println!("| policy | jobs/hour | GPU memory utilisation | mean wait | over-admissions |");
        println!("|---|---|---|---|---|");
        let mut fifo_rate = 0.0;
        for (name, policy) in [
            ("exclusive FIFO", Policy::ExclusiveFifo),
            ("looks ≥ 90 % free (task-spooler)", Policy::LooksFree),
            (
                "**Petri** (reservations, best-fit slices, aging)",
                Policy::Petri { time_limits: false },
            ),
            (
                "Petri, jobs declaring time limits (2× their run time)",
                Policy::Petri { time_limits: true },
            ),
        ] {
            let o = simulate(&jobs, policy, a.claim_after);
            if policy == Policy::ExclusiveFifo {
                fifo_rate = o.jobs_per_hour;
            }
            println!(
                "| {name} | {:.2} ({:.2}× FIFO) | {:.0} % | {:.0} min | {} |",
                o.jobs_per_hour,
                o.jobs_per_hour / fifo_rate,
                o.mem_utilisation * 100.0,
                o.mean_wait_min,
                o.over_admissions
            );
        }
        // Without aging a whole-GPU job may wait for ever; shown for what aging costs.
        let starving = simulate(
            &jobs,
            Policy::Petri { time_limits: false },
            i64::MAX / 4_000,
        );
        println!(
            "| Petri without aging (large requests may starve) | {:.2} ({:.2}× FIFO) | {:.0} % | {:.0} min | {} |",
            starving.jobs_per_hour,
            starving.jobs_per_hour / fifo_rate,
            starving.mem_utilisation * 100.0,
            starving.mean_wait_min,
            starving.over_admissions
        );
        let bound = perfect_packing_rate(&jobs);
        println!(
            "| perfect packing (a bound, not a policy) | {bound:.2} ({:.2}× FIFO) | | | |",
            bound / fifo_rate
        );
        if a.seeds > 0 {
            // The same comparison over other traces of this mix.
            let (mut petri, mut limited, mut ideal, mut over) =
                (Vec::new(), Vec::new(), Vec::new(), 0);
            for seed in 1..=a.seeds {
                let jobs = trace(a.jobs, seed, *mix);
                let fifo = simulate(&jobs, Policy::ExclusiveFifo, a.claim_after).jobs_per_hour;
                for (time_limits, rates) in [(false, &mut petri), (true, &mut limited)] {
                    let p = simulate(&jobs, Policy::Petri { time_limits }, a.claim_after);
                    over += p.over_admissions;
                    rates.push(p.jobs_per_hour / fifo);
                }
                ideal.push(perfect_packing_rate(&jobs) / fifo);
            }
            let range = |v: &[f64]| {
                let min = v.iter().copied().fold(f64::INFINITY, f64::min);
                let max = v.iter().copied().fold(0.0, f64::max);
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                format!("{min:.2}–{max:.2}× (mean {mean:.2}×)")
            };
            println!(
                "\nseeds 1–{}: Petri {} FIFO, with time limits {}, perfect packing {}; Petri over-admissions: {over}",
                a.seeds,
                range(&petri),
                range(&limited),
                range(&ideal)
            );
        }
    }
}
