//! GPUs in the engine: fresh samples become the scheduler's view (with memory of processes that
//! are not Petri's counted as foreign), jobs get the environment of their share, and `petri gpus`
//! gets its report.

use std::collections::HashMap;

use petri_domain::{GpuHolder, GpuKeptFor, GpuReport, GpuView};
use petri_sched::{Gpu, GpuAsk};

use super::*;

impl State {
    /// Whose each GPU process is: `Some(job)` or foreign. Each executor says which of its runs a
    /// process belongs to (a local job owns its process group, a container job the processes of
    /// its container); the handles of running attempts say whose that run is.
    fn owners(&self) -> HashMap<u32, Option<JobId>> {
        let runs: HashMap<(&str, &RunHandle), JobId> = self
            .running
            .keys()
            .filter_map(|id| {
                let run = self.jobs.get(id)?.run.as_ref()?;
                Some(((run.target.as_str(), run.handle.as_ref()?), *id))
            })
            .collect();
        let mut owners = HashMap::new();
        let executors = self.executors.all();
        for info in &self.gpu_info {
            for p in &info.processes {
                let owner = executors.iter().find_map(|(target, exec)| {
                    let handle = exec.owner_of_process(p.pid)?;
                    runs.get(&(target.as_str(), &handle)).copied()
                });
                owners.insert(p.pid, owner);
            }
        }
        owners
    }

    pub(super) fn take_gpu_sample(
        &mut self,
        tx: &Tx<'_>,
        status: petri_gpu::NvmlStatus,
        gpus: Vec<petri_gpu::GpuInfo>,
        now: i64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        if status.available {
            fx.events.push(petri_domain::Event::GpusSampled(
                petri_domain::GpusSampled { at_ms: now },
            ));
        }
        self.gpu_status = status;
        self.gpu_info = gpus;
        let owners = self.owners();
        self.watch_slices(tx, &owners, now, fx)?;
        self.record_gpu_figures(&owners, now);
        let infos = std::mem::take(&mut self.gpu_info);
        let gpus = infos
            .iter()
            .map(|g| Gpu {
                mig: g
                    .mig
                    .iter()
                    .map(|m| self.mig_profile_id(&m.profile))
                    .collect(),
                index: g.index,
                memory_total: g.memory_total,
                foreign_used: g
                    .processes
                    .iter()
                    .filter(|p| owners.get(&p.pid).copied().flatten().is_none())
                    .map(|p| p.used_memory)
                    .sum(),
                healthy: g.healthy,
            })
            .collect();
        self.gpus = gpus;
        self.gpu_info = infos;
        if let Ok(mut view) = self.gpu_view.lock() {
            let mut profiles: Vec<String> = self
                .gpu_info
                .iter()
                .flat_map(|g| g.mig.iter().map(|m| m.profile.clone()))
                .collect();
            profiles.sort();
            profiles.dedup();
            *view = super::GpuView {
                gpus: self
                    .gpus
                    .iter()
                    .map(|g| Gpu {
                        foreign_used: 0,
                        ..g.clone()
                    })
                    .collect(),
                mig_profiles: profiles,
            };
        }
        Ok(())
    }

    /// Keeps the bounded history (about an hour at the default rate) and the /metrics gauges.
    fn record_gpu_figures(&mut self, owners: &HashMap<u32, Option<JobId>>, now: i64) {
        const KEEP: usize = 1800;
        // (History and gauges need no word on kept GPUs: no scheduling walk here.)
        let report = self.report_with(owners, &[]);
        for g in &report.gpus {
            let label = crate::metrics::GpuLabel {
                gpu: g.index.to_string(),
                uuid: g.uuid.clone(),
            };
            let m = &self.metrics;
            m.gpu_memory_total
                .get_or_create(&label)
                .set(g.memory_total as i64);
            m.gpu_memory_used
                .get_or_create(&label)
                .set(g.memory_used as i64);
            m.gpu_memory_reserved
                .get_or_create(&label)
                .set(g.reserved as i64);
            m.gpu_utilization
                .get_or_create(&label)
                .set(g.utilization as i64);
            m.gpu_healthy.get_or_create(&label).set(g.healthy as i64);
            self.gpu_history.push_back(petri_domain::GpuPoint {
                at_ms: now,
                index: g.index,
                memory_used: g.memory_used,
                reserved: g.reserved,
                utilization: g.utilization,
            });
        }
        let cap = KEEP * report.gpus.len().max(1);
        while self.gpu_history.len() > cap {
            self.gpu_history.pop_front();
        }
        // Each user's part of the GPUs at this sample (team mode's view over time).
        let mut by_user: std::collections::BTreeMap<&str, (f64, u64)> = Default::default();
        for g in &report.gpus {
            for h in &g.holders {
                let Some(active) = h.job.and_then(|id| self.jobs.get(&id)) else {
                    continue;
                };
                let part = if g.memory_total == 0 {
                    0.0
                } else {
                    (h.reserved as f64 / g.memory_total as f64).min(1.0)
                };
                let entry = by_user.entry(active.job.user.as_str()).or_default();
                entry.0 += part;
                entry.1 += h.used;
            }
        }
        for (user, (gpus, memory_used)) in by_user {
            self.gpu_user_history.push_back(petri_domain::UserGpuPoint {
                at_ms: now,
                user: user.to_string(),
                gpus,
                memory_used,
            });
        }
        while self.gpu_user_history.len() > KEEP * 16 {
            self.gpu_user_history.pop_front();
        }
    }

    /// A job whose processes use more GPU memory than its slice is flagged, and with
    /// `gpu.enforce = "kill"` stopped with that reason.
    fn watch_slices(
        &mut self,
        tx: &Tx<'_>,
        owners: &HashMap<u32, Option<JobId>>,
        now: i64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let mut used: HashMap<JobId, u64> = HashMap::new();
        for info in &self.gpu_info {
            for p in &info.processes {
                if let Some(Some(job)) = owners.get(&p.pid) {
                    *used.entry(*job).or_default() += p.used_memory;
                }
            }
        }
        for (id, bytes) in used {
            let Some(active) = self.jobs.get_mut(&id) else {
                continue;
            };
            let GpuAsk::Memory(slice) = active.waiting.request.gpu else {
                continue;
            };
            let Some(run) = active.run.as_mut() else {
                continue;
            };
            if bytes <= slice || run.over_gpu_limit {
                continue;
            }
            run.over_gpu_limit = true;
            let message = format!(
                "used {} of GPU memory, more than its slice of {}",
                petri_domain::ByteSize(bytes),
                petri_domain::ByteSize(slice)
            );
            tracing::warn!(job.id = %id, "{message}");
            if self.gpu_enforce == crate::settings::Enforce::Kill && run.stop.is_none() {
                active.job.reason = Some(format!("{message}; stopped (gpu.enforce = \"kill\")"));
                begin_stop(
                    active,
                    StopIntent::GpuLimit,
                    now,
                    self.kill_grace_ms,
                    tx,
                    fx,
                )?;
            }
        }
        Ok(())
    }

    /// The UUIDs of the GPUs (or MIG instances) an attempt holds.
    pub(super) fn gpu_uuids(&self, active: &Active) -> Vec<String> {
        let Some(run) = active.run.as_ref() else {
            return Vec::new();
        };
        run.gpus
            .iter()
            .filter_map(|i| self.gpu_info.iter().find(|g| g.index == *i))
            .map(|g| match run.mig_slot.and_then(|s| g.mig.get(s as usize)) {
                // A MIG instance is addressed by its own UUID.
                Some(m) => m.uuid.clone(),
                None => g.uuid.clone(),
            })
            .collect()
    }

    /// The MPS server a job's slice is a client of, if its GPU enforces slices through MPS.
    pub(super) fn mps_of(&self, active: &Active) -> Option<&petri_gpu::mps::Mps> {
        if !matches!(active.waiting.request.gpu, GpuAsk::Memory(_)) {
            return None;
        }
        let run = active.run.as_ref()?;
        run.gpus.first().and_then(|i| self.mps.get(i))
    }

    /// The environment that keeps a job on its share: `CUDA_VISIBLE_DEVICES` with the UUIDs it
    /// holds (empty for jobs without a GPU reservation, so they cannot wander onto one), and for a
    /// slice the limit and the frameworks' settings that keep it inside.
    pub(super) fn gpu_env(&self, active: &Active) -> Vec<(String, String)> {
        if self.gpu_info.is_empty() {
            return Vec::new();
        }
        let held = active
            .run
            .as_ref()
            .map(|r| r.gpus.clone())
            .unwrap_or_default();
        let uuids = self.gpu_uuids(active);
        let mut env = vec![("CUDA_VISIBLE_DEVICES".to_string(), uuids.join(","))];
        match active.waiting.request.gpu {
            GpuAsk::Memory(bytes) => {
                let total = held
                    .first()
                    .and_then(|i| self.gpu_info.iter().find(|g| g.index == *i))
                    .map(|g| g.memory_total)
                    .unwrap_or(0);
                env.push(("PETRI_GPU_MEMORY_LIMIT".into(), bytes.to_string()));
                match self.mps_of(active) {
                    Some(mps) => {
                        // The driver holds the client to these (device 0 = its only visible GPU).
                        env.push((
                            "CUDA_MPS_PIPE_DIRECTORY".into(),
                            mps.pipe_dir.display().to_string(),
                        ));
                        env.push((
                            "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT".into(),
                            format!("0={}M", bytes >> 20),
                        ));
                        if let Some(pct) = active.job.spec.resources.compute_percent() {
                            env.push(("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE".into(), pct.to_string()));
                        }
                        env.push(("PETRI_GPU_ISOLATION".into(), "mps-enforced".into()));
                    }
                    None => {
                        env.push(("PETRI_GPU_ISOLATION".into(), "shared-unenforced".into()));
                    }
                }
                if total > 0 {
                    let fraction = (bytes as f64 / total as f64).min(1.0);
                    env.push((
                        "XLA_PYTHON_CLIENT_MEM_FRACTION".into(),
                        format!("{fraction:.3}"),
                    ));
                }
                env.push(("XLA_PYTHON_CLIENT_PREALLOCATE".into(), "false".into()));
                env.push(("TF_FORCE_GPU_ALLOW_GROWTH".into(), "true".into()));
            }
            GpuAsk::Whole(_) => {
                env.push(("PETRI_GPU_ISOLATION".into(), "exclusive".into()));
            }
            GpuAsk::Mig(_) => {
                env.push(("PETRI_GPU_ISOLATION".into(), "mig".into()));
            }
            GpuAsk::None => {}
        }
        env
    }

    /// Per GPU: memory, reservations, what is still admissible, and every holder.
    pub(super) fn gpu_report(&self) -> GpuReport {
        // Which GPUs drain for a waiting job, as the scheduler sees it now.
        let kept = if self.gpu_info.is_empty() {
            Vec::new()
        } else {
            self.plan(super::now_ms(), true).kept
        };
        self.report_with(&self.owners(), &kept)
    }

    /// The report, with the owners of GPU processes already looked up (`/proc` is read once per
    /// sample).
    fn report_with(
        &self,
        owners: &HashMap<u32, Option<JobId>>,
        kept: &[petri_sched::Kept],
    ) -> GpuReport {
        let gpus = self
            .gpu_info
            .iter()
            .map(|info| {
                let mut holders = Vec::new();
                let (mut slices, mut exclusive) = (0u64, false);
                for id in self.running.keys() {
                    let Some(active) = self.jobs.get(id) else {
                        continue;
                    };
                    let Some(run) = active.run.as_ref() else {
                        continue;
                    };
                    if !run.gpus.contains(&info.index) {
                        continue;
                    }
                    let (reserved, isolation) = match active.waiting.request.gpu {
                        GpuAsk::Memory(bytes) => {
                            slices += bytes;
                            let isolation = if self.mps.contains_key(&info.index) {
                                "mps-enforced"
                            } else {
                                "shared-unenforced"
                            };
                            (bytes, isolation)
                        }
                        GpuAsk::Mig(_) => {
                            let memory = run
                                .mig_slot
                                .and_then(|s| info.mig.get(s as usize))
                                .map(|m| m.memory_total)
                                .unwrap_or(0);
                            slices += memory;
                            (memory, "mig")
                        }
                        _ => {
                            exclusive = true;
                            (info.memory_total, "exclusive")
                        }
                    };
                    let procs: Vec<&petri_gpu::GpuProcess> = info
                        .processes
                        .iter()
                        .filter(|p| owners.get(&p.pid).copied().flatten() == Some(*id))
                        .collect();
                    holders.push(GpuHolder {
                        kind: active.job.origin.holder_kind().into(),
                        job: Some(*id),
                        number: Some(active.job.number),
                        name: Some(active.job.name.clone()),
                        isolation: isolation.into(),
                        devices: if active.job.spec.image.is_some() {
                            "enforced"
                        } else {
                            "advisory"
                        }
                        .into(),
                        reserved,
                        used: procs.iter().map(|p| p.used_memory).sum(),
                        over_limit: matches!(isolation, "shared-unenforced" | "mps-enforced")
                            && procs.iter().map(|p| p.used_memory).sum::<u64>() > reserved,
                        pids: procs.iter().map(|p| p.pid).collect(),
                    });
                }
                let mut foreign = 0;
                for p in &info.processes {
                    if owners.get(&p.pid).copied().flatten().is_none() {
                        foreign += p.used_memory;
                        holders.push(GpuHolder {
                            kind: "foreign".into(),
                            job: None,
                            number: None,
                            name: None,
                            isolation: "none".into(),
                            devices: "none".into(),
                            reserved: 0,
                            used: p.used_memory,
                            over_limit: false,
                            pids: vec![p.pid],
                        });
                    }
                }
                let free_to_admit = if exclusive || !info.healthy || !info.mig.is_empty() {
                    0
                } else {
                    info.memory_total
                        .saturating_sub(self.gpu_reserve)
                        .saturating_sub(foreign)
                        .saturating_sub(slices)
                };
                GpuView {
                    index: info.index,
                    name: info.name.clone(),
                    uuid: info.uuid.clone(),
                    healthy: info.healthy,
                    memory_total: info.memory_total,
                    memory_used: info.memory_used,
                    reserved: if exclusive { info.memory_total } else { slices },
                    free_to_admit,
                    utilization: info.utilization,
                    temperature_c: info.temperature_c,
                    power_mw: info.power_mw,
                    holders,
                    kept_for: kept.iter().find(|k| k.gpu == info.index).and_then(|k| {
                        let active = self.jobs.get(&k.job)?;
                        Some(GpuKeptFor {
                            job: k.job,
                            number: active.job.number,
                            until_ms: k.until_ms,
                        })
                    }),
                }
            })
            .collect();
        GpuReport {
            available: self.gpu_status.available,
            reason: self.gpu_status.reason.clone(),
            gpus,
            device_isolation: DEVICE_ISOLATION.into(),
        }
    }
}

/// What keeps a job to its GPUs, as `petri gpus` and the GPU view say it.
const DEVICE_ISOLATION: &str = "containers see only the GPUs they reserved (the NVIDIA runtime gives them \
    those device files alone); local jobs are pointed at theirs by CUDA_VISIBLE_DEVICES, which is \
    advisory: a local job could open another GPU's device. On a shared machine, run GPU work in \
    containers (--image).";
