//! P9: two users on one 4-GPU box, replayed through the real scheduler (`petri_sched::plan`) with
//! a simulated clock, with fair share (usage decayed by `fair::Usage`, as the daemon does) and
//! without it (first in, first out by submission):
//!
//! - **hana** queues a 200-job backlog at 00:00, each job one GPU for an hour;
//! - **leo** submits one job an hour from 00:30, each `--leo-gpus` GPUs for `--leo-hours` hours.
//!
//! It prints how long leo's jobs waited (p50, max) and each user's share of the GPUs, hour by hour
//! and over the first day. Run:
//! `cargo run --release -p petri-sched --example fair_share [-- --leo-gpus 1 --leo-hours 2 --half-life-hours 24]`.

use std::collections::HashMap;

use petri_domain::{JobId, QuotaBook};
use petri_sched::fair::Usage;
use petri_sched::{
    Capacity, DepState, Gpu, GpuAsk, GpuPlacement, Limits, Request, Running, Waiting,
};

const GPUS: u32 = 4;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const HANA_JOBS: usize = 200;

#[derive(Clone, Debug)]
struct Job {
    user: &'static str,
    arrival: i64,
    duration: i64,
    gpus: u32,
}

struct Live {
    job: usize,
    start: i64,
    gpus: Vec<u32>,
}

struct Outcome {
    /// Minutes each of leo's jobs of the first day waited.
    leo_waits: Vec<f64>,
    /// GPU-milliseconds per user per hour of the first day.
    hourly: Vec<HashMap<&'static str, f64>>,
}

fn jobs(leo_gpus: u32, leo_hours: i64) -> Vec<Job> {
    let mut jobs: Vec<Job> = (0..HANA_JOBS)
        .map(|_| Job {
            user: "hana",
            arrival: 0,
            duration: HOUR,
            gpus: 1,
        })
        .collect();
    for h in 0..48 {
        jobs.push(Job {
            user: "leo",
            arrival: h * HOUR + HOUR / 2,
            duration: leo_hours * HOUR,
            gpus: leo_gpus,
        });
    }
    jobs
}

fn simulate(jobs: &[Job], fair: bool, half_life_ms: i64) -> Outcome {
    let ids: Vec<JobId> = (0..jobs.len()).map(|_| JobId::new()).collect();
    let index: HashMap<JobId, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let gpus: Vec<Gpu> = (0..GPUS)
        .map(|i| Gpu {
            index: i,
            memory_total: 80 << 30,
            foreign_used: 0,
            healthy: true,
            mig: Vec::new(),
        })
        .collect();
    let queue_limits = HashMap::new();
    let quotas = QuotaBook::default();
    let share = |j: &Job| j.gpus as f64 / GPUS as f64;
    let mut usage = Usage::new(half_life_ms, 0);
    let mut now = 0i64;
    let mut waiting: Vec<usize> = Vec::new();
    let mut live: Vec<Live> = Vec::new();
    let mut arrivals: Vec<usize> = (0..jobs.len()).collect();
    arrivals.sort_by_key(|&j| (jobs[j].arrival, j));
    let mut next_arrival = 0;
    let mut out = Outcome {
        leo_waits: Vec::new(),
        hourly: vec![HashMap::new(); 24],
    };
    while now < DAY {
        let t_arr = arrivals
            .get(next_arrival)
            .map(|&j| jobs[j].arrival)
            .unwrap_or(i64::MAX);
        let t_end = live
            .iter()
            .map(|l| l.start + jobs[l.job].duration)
            .min()
            .unwrap_or(i64::MAX);
        // Also stop at each hour, to bucket the shares.
        let t_hour = (now / HOUR + 1) * HOUR;
        let t = t_arr.min(t_end).min(t_hour);
        // GPU time in [now, t), to the hour it falls in (t never passes an hour's end).
        let bucket = (now / HOUR) as usize;
        if bucket < 24 {
            for l in &live {
                *out.hourly[bucket].entry(jobs[l.job].user).or_default() +=
                    (t - now) as f64 * jobs[l.job].gpus as f64;
            }
        }
        usage.accrue(
            live.iter().map(|l| (jobs[l.job].user, share(&jobs[l.job]))),
            t,
        );
        now = t;
        while next_arrival < arrivals.len() && jobs[arrivals[next_arrival]].arrival <= now {
            waiting.push(arrivals[next_arrival]);
            next_arrival += 1;
        }
        live.retain(|l| l.start + jobs[l.job].duration > now);
        let running: Vec<Running> = live
            .iter()
            .map(|l| Running {
                queue: "default".into(),
                request: Request {
                    cpu_millis: 1,
                    memory: 0,
                    gpu: GpuAsk::Whole(jobs[l.job].gpus),
                },
                gpu: GpuPlacement {
                    gpus: l.gpus.clone(),
                    mig_slot: None,
                },
                deadline_ms: None,
                user: jobs[l.job].user.into(),
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
                    gpu: GpuAsk::Whole(jobs[j].gpus),
                },
                held: false,
                after: Vec::new(),
                not_before_ms: 0,
                since_ms: jobs[j].arrival,
                time_limit_ms: None,
                user: jobs[j].user.into(),
            })
            .collect();
        let limits = Limits {
            capacity: Capacity {
                cpu_millis: 1_000_000,
                memory: u64::MAX / 2,
            },
            queue_limits: &queue_limits,
            gpus: &gpus,
            gpu_reserve: 0,
            gpu_claim_after_ms: 15 * 60 * 1000,
            kill_grace_ms: 0,
            quotas: &quotas,
            usage: fair.then(|| usage.by_user()),
        };
        let plan = petri_sched::plan(&limits, &running, &w, |_| DepState::Succeeded, now, false);
        for id in &plan.start {
            let j = index[id];
            waiting.retain(|w| *w != j);
            if jobs[j].user == "leo" && jobs[j].arrival < DAY {
                out.leo_waits
                    .push((now - jobs[j].arrival) as f64 / 60_000.0);
            }
            live.push(Live {
                job: j,
                start: now,
                gpus: plan.placements[id].gpus.clone(),
            });
        }
    }
    // Leo's first-day jobs that never started wait until the day's end, at least.
    for &j in &waiting {
        if jobs[j].user == "leo" && jobs[j].arrival < DAY {
            out.leo_waits
                .push((DAY - jobs[j].arrival) as f64 / 60_000.0);
        }
    }
    out
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let mut leo_gpus = 1u32;
    let mut leo_hours = 2i64;
    let mut half_life_hours = 24i64;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: i64 = it
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number"));
        match flag.as_str() {
            "--leo-gpus" => leo_gpus = value as u32,
            "--leo-hours" => leo_hours = value,
            "--half-life-hours" => half_life_hours = value,
            _ => panic!("unknown flag {flag}"),
        }
    }
    let jobs = jobs(leo_gpus, leo_hours);
    println!(
        "4 GPUs; hana: {HANA_JOBS} jobs of 1 GPU x 1 h queued at 00:00; leo: a job of {leo_gpus} GPU x {leo_hours} h every hour from 00:30; half-life {half_life_hours} h"
    );
    for (name, fair) in [("fifo", false), ("fair share", true)] {
        let o = simulate(&jobs, fair, half_life_hours * HOUR);
        let day: f64 = o.hourly.iter().flat_map(|h| h.values()).sum();
        // (An empty sum is -0.0.)
        let leo_day: f64 = o.hourly.iter().filter_map(|h| h.get("leo")).sum::<f64>() + 0.0;
        let leo_hourly: Vec<String> = o
            .hourly
            .iter()
            .map(|h| {
                let all: f64 = h.values().sum();
                let leo = h.get("leo").copied().unwrap_or(0.0);
                format!("{:.0}", if all > 0.0 { leo / all * 100.0 } else { 0.0 })
            })
            .collect();
        println!(
            "{name:>10}: leo's waits p50 {:.0} min, max {:.0} min ({} jobs); first day: leo {:.0} %, hana {:.0} % of the GPU time",
            percentile(o.leo_waits.clone(), 0.5),
            percentile(o.leo_waits.clone(), 1.0),
            o.leo_waits.len(),
            leo_day / day * 100.0,
            (day - leo_day) / day * 100.0,
        );
        println!("{:>10}  leo's % by hour: {}", "", leo_hourly.join(" "));
    }
}
