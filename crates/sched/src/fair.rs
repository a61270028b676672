//! Team mode's two rules, both pure: quotas (what one user, or the users of one Unix group
//! together, may hold at once) and fair share (among waiting jobs of the same priority, the user
//! with the least recent usage goes first).
//!
//! Usage is measured in *machine-seconds*: a job that holds a quarter of the machine for an hour
//! adds 900. A job's share is its GPUs' part of all GPUs when it has GPUs, else its cpus' part of
//! all cpus. Usage decays with a half-life (a day by default), so what someone ran last month
//! does not hold them back today.

use std::collections::HashMap;

use petri_domain::{Quota, QuotaBook};

use crate::{Capacity, Gpu, GpuAsk, Request};

/// What a user (or a group) holds now, by the measures quotas limit.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Held {
    pub gpus: u32,
    pub gpu_memory: u64,
    pub cpu_millis: u64,
    pub running: u32,
}

impl Held {
    pub(crate) fn add(&mut self, r: &Request, gpus: &[Gpu]) {
        self.gpus += whole_gpus(r.gpu);
        self.gpu_memory = self.gpu_memory.saturating_add(gpu_memory(r.gpu, gpus));
        self.cpu_millis = self.cpu_millis.saturating_add(r.cpu_millis);
        self.running += 1;
    }

    /// The first limit of `quota` that holding `r` as well would pass, in words.
    pub(crate) fn over(&self, r: &Request, gpus: &[Gpu], quota: &Quota) -> Option<String> {
        let mut after = *self;
        after.add(r, gpus);
        if let Some(max) = quota.running
            && after.running > max
        {
            return Some(format!(
                "{max} running job{}",
                if max == 1 { "" } else { "s" }
            ));
        }
        if let Some(max) = quota.gpus
            && whole_gpus(r.gpu) > 0
            && after.gpus > max
        {
            return Some(format!("{max} GPU{}", if max == 1 { "" } else { "s" }));
        }
        if let Some(max) = quota.gpu_memory
            && gpu_memory(r.gpu, gpus) > 0
            && after.gpu_memory > max.0
        {
            return Some(format!("{max} of GPU memory"));
        }
        if let Some(max) = quota.cpus
            && r.cpu_millis > 0
            && after.cpu_millis as f64 > max * 1000.0 + 0.5
        {
            return Some(format!("{max} cpus"));
        }
        None
    }
}

fn whole_gpus(ask: GpuAsk) -> u32 {
    match ask {
        GpuAsk::Whole(n) => n,
        _ => 0,
    }
}

/// The GPU memory a request holds: a slice's bytes, a whole GPU's memory (the largest GPU's,
/// before it is placed), a MIG instance's share of its GPU (an eighth, the smallest profile's
/// upper bound being unknown here).
fn gpu_memory(ask: GpuAsk, gpus: &[Gpu]) -> u64 {
    let largest = gpus.iter().map(|g| g.memory_total).max().unwrap_or(0);
    match ask {
        GpuAsk::None => 0,
        GpuAsk::Memory(b) => b,
        GpuAsk::Whole(n) => largest.saturating_mul(n as u64),
        GpuAsk::Mig(_) => largest / 8,
    }
}

/// Whether a request could ever start under `quota` (it alone passes none of its limits).
pub fn fits_quota(r: &Request, gpus: &[Gpu], quota: &Quota) -> Option<String> {
    Held::default().over(r, gpus, quota)
}

/// The quotas that bind `user`: their own, then each group's they are in, with a label
/// (`alice`, `group ml`).
pub fn quotas_of<'q>(
    book: &'q QuotaBook,
    user: &'q str,
) -> impl Iterator<Item = (String, &'q Quota)> + 'q {
    book.users
        .get(user)
        .map(|q| (user.to_string(), q))
        .into_iter()
        .chain(
            book.groups
                .iter()
                .filter(move |g| g.members.contains(user))
                .map(|g| (format!("group {}", g.group), &g.quota)),
        )
}

/// A running job's share of the machine (0 to 1).
pub fn share(r: &Request, capacity: Capacity, gpus: &[Gpu]) -> f64 {
    let n = gpus.len() as f64;
    match r.gpu {
        GpuAsk::None => {
            if capacity.cpu_millis == 0 {
                0.0
            } else {
                (r.cpu_millis as f64 / capacity.cpu_millis as f64).min(1.0)
            }
        }
        _ if n == 0.0 => 0.0,
        GpuAsk::Whole(k) => (k as f64 / n).min(1.0),
        GpuAsk::Memory(b) => {
            let per = gpus
                .iter()
                .map(|g| g.memory_total)
                .max()
                .unwrap_or(1)
                .max(1) as f64;
            (b as f64 / per / n).min(1.0)
        }
        GpuAsk::Mig(_) => 1.0 / 8.0 / n,
    }
}

/// Each user's recent usage in machine-seconds, decaying with a half-life.
#[derive(Clone, Debug)]
pub struct Usage {
    half_life_ms: i64,
    /// Usage as of `at_ms`.
    by_user: HashMap<String, f64>,
    at_ms: i64,
}

impl Usage {
    pub fn new(half_life_ms: i64, now_ms: i64) -> Usage {
        Usage {
            half_life_ms: half_life_ms.max(1),
            by_user: HashMap::new(),
            at_ms: now_ms,
        }
    }

    /// Usage as it was kept at `at_ms` (after a restart): it decays from then on, as if the
    /// daemon had run on with nothing running.
    pub fn restored(half_life_ms: i64, by_user: HashMap<String, f64>, at_ms: i64) -> Usage {
        Usage {
            half_life_ms: half_life_ms.max(1),
            by_user,
            at_ms,
        }
    }

    /// As of when the usage is.
    pub fn at_ms(&self) -> i64 {
        self.at_ms
    }

    /// Brings the usage up to `now_ms`: what was there decays, and each running job adds its
    /// share for the time since the last call. Call it before the set of running jobs changes.
    pub fn accrue<'a>(&mut self, running: impl IntoIterator<Item = (&'a str, f64)>, now_ms: i64) {
        let dt = now_ms - self.at_ms;
        if dt <= 0 {
            return;
        }
        let decay = 0.5f64.powf(dt as f64 / self.half_life_ms as f64);
        for v in self.by_user.values_mut() {
            *v *= decay;
        }
        // A job running through the whole interval adds its share for it, decayed from the
        // interval's middle (close enough for intervals far shorter than the half-life).
        let mid = 0.5f64.powf(dt as f64 / 2.0 / self.half_life_ms as f64);
        let seconds = dt as f64 / 1000.0;
        for (user, share) in running {
            let add = share * seconds * mid;
            match self.by_user.get_mut(user) {
                Some(v) => *v += add,
                None => {
                    self.by_user.insert(user.to_string(), add);
                }
            }
        }
        self.by_user.retain(|_, v| *v > 1e-6);
        self.at_ms = now_ms;
    }

    /// A user's usage as of the last accrual (0 for a user not seen).
    pub fn of(&self, user: &str) -> f64 {
        self.by_user.get(user).copied().unwrap_or(0.0)
    }

    pub fn by_user(&self) -> &HashMap<String, f64> {
        &self.by_user
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_decays_by_its_half_life() {
        let mut u = Usage::new(3_600_000, 0);
        // Half the machine for an hour.
        u.accrue([("alice", 0.5)], 3_600_000);
        let after_hour = u.of("alice");
        // 1800 machine-seconds, decayed from the middle of the hour.
        assert!(
            (after_hour - 1800.0 * 0.5f64.powf(0.5)).abs() < 1.0,
            "{after_hour}"
        );
        u.accrue(std::iter::empty(), 7_200_000);
        assert!((u.of("alice") - after_hour / 2.0).abs() < 1.0);
        assert_eq!(u.of("bob"), 0.0);
    }

    #[test]
    fn quotas_count_what_a_user_holds() {
        let gpus = vec![Gpu {
            index: 0,
            memory_total: 16 << 30,
            foreign_used: 0,
            healthy: true,
            mig: vec![],
        }];
        let q = Quota {
            gpus: Some(1),
            running: Some(2),
            ..Quota::default()
        };
        let one_gpu = Request {
            cpu_millis: 1000,
            memory: 0,
            gpu: GpuAsk::Whole(1),
        };
        let mut held = Held::default();
        assert_eq!(held.over(&one_gpu, &gpus, &q), None);
        held.add(&one_gpu, &gpus);
        assert_eq!(held.over(&one_gpu, &gpus, &q).as_deref(), Some("1 GPU"));
        let cpu = Request {
            cpu_millis: 1000,
            memory: 0,
            gpu: GpuAsk::None,
        };
        assert_eq!(held.over(&cpu, &gpus, &q), None);
        held.add(&cpu, &gpus);
        assert_eq!(
            held.over(&cpu, &gpus, &q).as_deref(),
            Some("2 running jobs")
        );
        let two = Request {
            gpu: GpuAsk::Whole(2),
            ..one_gpu
        };
        assert_eq!(fits_quota(&two, &gpus, &q).as_deref(), Some("1 GPU"));
    }
}
