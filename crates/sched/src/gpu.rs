//! GPU reservations: whole GPUs held alone, and slices of one GPU's memory packed best-fit.
//!
//! Admission is by reservation, never by "looks free now": a GPU admits up to its memory minus a
//! configured reserve, minus what processes that are not Petri's use, minus the slices already
//! reserved on it. A GPU held whole takes no slices, and a GPU with slices is not given whole.

use petri_domain::{ByteSize, PendingReason};

/// What a job asks of the GPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GpuAsk {
    #[default]
    None,
    /// This many GPUs, each exclusively.
    Whole(u32),
    /// This many bytes of one GPU's memory, beside other slices.
    Memory(u64),
    /// One MIG instance of this profile (profile ids are the caller's: the daemon numbers the
    /// profile names it has seen).
    Mig(u32),
}

/// One GPU as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpu {
    pub index: u32,
    pub memory_total: u64,
    /// Memory held by processes that are not Petri's.
    pub foreign_used: u64,
    /// False when NVML reports the GPU lost or in error: nothing starts on it.
    pub healthy: bool,
    /// With MIG enabled: the profile of each MIG instance, by slot. Such a GPU takes only MIG
    /// requests (and a GPU without MIG takes none).
    pub mig: Vec<u32>,
}

/// Where a job's GPU share lives: GPU indices (one for a slice or a MIG instance), and the MIG
/// instance's slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuPlacement {
    pub gpus: Vec<u32>,
    pub mig_slot: Option<u32>,
}

#[derive(Clone, Debug)]
struct Book {
    index: u32,
    /// What may be reserved on this GPU in total (memory - reserve - foreign use).
    admissible: u64,
    reserved: u64,
    slices: u32,
    exclusive: bool,
    healthy: bool,
    /// Claimed by a blocked job ahead in line: nothing new goes here in this plan.
    claimed: bool,
    /// MIG instances: (profile, held).
    mig: Vec<(u32, bool)>,
}

impl Book {
    fn free(&self) -> u64 {
        self.admissible.saturating_sub(self.reserved)
    }
    /// Usable for whole GPUs and slices (not for MIG).
    fn usable(&self) -> bool {
        self.healthy && !self.exclusive && !self.claimed && self.mig.is_empty()
    }
}

/// The GPUs' reservations during one scheduling walk.
#[derive(Clone, Debug)]
pub(crate) struct GpuBook {
    gpus: Vec<Book>,
}

impl GpuBook {
    pub(crate) fn new<'r>(
        gpus: &[Gpu],
        reserve: u64,
        running: impl IntoIterator<Item = (GpuAsk, &'r GpuPlacement)>,
    ) -> GpuBook {
        let mut book = GpuBook {
            gpus: gpus
                .iter()
                .map(|g| Book {
                    index: g.index,
                    admissible: g
                        .memory_total
                        .saturating_sub(reserve)
                        .saturating_sub(g.foreign_used),
                    reserved: 0,
                    slices: 0,
                    exclusive: false,
                    healthy: g.healthy,
                    claimed: false,
                    mig: g.mig.iter().map(|p| (*p, false)).collect(),
                })
                .collect(),
        };
        for (ask, placement) in running {
            book.take(ask, placement);
        }
        book
    }

    fn get(&mut self, index: u32) -> Option<&mut Book> {
        self.gpus.iter_mut().find(|b| b.index == index)
    }

    /// Where `ask` would go now, if anywhere.
    pub(crate) fn place(&self, ask: GpuAsk) -> Option<GpuPlacement> {
        match ask {
            GpuAsk::None => Some(GpuPlacement::default()),
            GpuAsk::Whole(n) => {
                let empty: Vec<u32> = self
                    .gpus
                    .iter()
                    .filter(|b| b.usable() && b.slices == 0)
                    .map(|b| b.index)
                    .take(n as usize)
                    .collect();
                (empty.len() == n as usize && n > 0).then_some(GpuPlacement {
                    gpus: empty,
                    mig_slot: None,
                })
            }
            GpuAsk::Memory(bytes) => self
                .gpus
                .iter()
                .filter(|b| b.usable() && b.free() >= bytes)
                // Best fit: the GPU this slice fills most; ties go to the lower index.
                .min_by_key(|b| (b.free() - bytes, b.index))
                .map(|b| GpuPlacement {
                    gpus: vec![b.index],
                    mig_slot: None,
                }),
            GpuAsk::Mig(profile) => self.gpus.iter().filter(|b| b.healthy).find_map(|b| {
                b.mig
                    .iter()
                    .position(|(p, held)| *p == profile && !held)
                    .map(|slot| GpuPlacement {
                        gpus: vec![b.index],
                        mig_slot: Some(slot as u32),
                    })
            }),
        }
    }

    /// Books a placement.
    pub(crate) fn take(&mut self, ask: GpuAsk, placement: &GpuPlacement) {
        for &index in &placement.gpus {
            if let Some(b) = self.get(index) {
                match ask {
                    GpuAsk::None => {}
                    GpuAsk::Whole(_) => b.exclusive = true,
                    GpuAsk::Memory(bytes) => {
                        b.reserved = b.reserved.saturating_add(bytes);
                        b.slices += 1;
                    }
                    GpuAsk::Mig(_) => {
                        if let Some(slot) =
                            placement.mig_slot.and_then(|s| b.mig.get_mut(s as usize))
                        {
                            slot.1 = true;
                        }
                    }
                }
            }
        }
    }

    /// A job ahead in line cannot be placed: keep for it the GPUs it is waiting for, so that later
    /// jobs cannot keep taking them (whole GPUs: the ones with the fewest slices; a slice: the GPU
    /// with the most free memory).
    pub(crate) fn claim_for(&mut self, ask: GpuAsk) {
        match ask {
            // MIG instances are taken whole and in order: nothing to keep.
            GpuAsk::None | GpuAsk::Mig(_) => {}
            GpuAsk::Whole(n) => {
                let mut candidates: Vec<&mut Book> =
                    self.gpus.iter_mut().filter(|b| b.usable()).collect();
                candidates.sort_by_key(|b| (b.slices, b.reserved, b.index));
                for b in candidates.into_iter().take(n as usize) {
                    b.claimed = true;
                }
            }
            GpuAsk::Memory(bytes) => {
                if let Some(b) = self
                    .gpus
                    .iter_mut()
                    .filter(|b| b.usable() && b.admissible >= bytes)
                    .max_by_key(|b| (b.free(), std::cmp::Reverse(b.index)))
                {
                    b.claimed = true;
                }
            }
        }
    }

    /// Could `ask` be placed on an idle machine? (Else it can never run here.)
    pub(crate) fn could_ever_fit(&self, ask: GpuAsk) -> bool {
        match ask {
            GpuAsk::None => true,
            GpuAsk::Whole(n) => {
                self.gpus
                    .iter()
                    .filter(|b| b.healthy && b.mig.is_empty())
                    .count()
                    >= n as usize
            }
            GpuAsk::Memory(bytes) => self
                .gpus
                .iter()
                .any(|b| b.healthy && b.mig.is_empty() && b.admissible >= bytes),
            GpuAsk::Mig(profile) => self
                .gpus
                .iter()
                .any(|b| b.healthy && b.mig.iter().any(|(p, _)| *p == profile)),
        }
    }

    /// Why `ask` cannot be placed now.
    pub(crate) fn why_waiting(&self, ask: GpuAsk) -> PendingReason {
        match ask {
            GpuAsk::Memory(bytes) => PendingReason::GpuMemory {
                needs: ByteSize(bytes).to_string(),
                free: ByteSize(self.largest_free()).to_string(),
            },
            GpuAsk::Mig(profile) => PendingReason::MigInstance {
                free: self
                    .gpus
                    .iter()
                    .filter(|b| b.healthy)
                    .flat_map(|b| b.mig.iter())
                    .filter(|(p, held)| *p == profile && !held)
                    .count() as u32,
            },
            // `None` always has a place; say "whole GPUs" for it rather than panic.
            GpuAsk::Whole(_) | GpuAsk::None => PendingReason::Gpus {
                needs: match ask {
                    GpuAsk::Whole(n) => n,
                    _ => 0,
                },
                free: self.empty_count(),
            },
        }
    }

    /// The most a slice could get now on one GPU.
    pub(crate) fn largest_free(&self) -> u64 {
        self.gpus
            .iter()
            .filter(|b| b.usable())
            .map(Book::free)
            .max()
            .unwrap_or(0)
    }

    /// How many GPUs could be given whole now.
    pub(crate) fn empty_count(&self) -> u32 {
        self.gpus
            .iter()
            .filter(|b| b.usable() && b.slices == 0)
            .count() as u32
    }
}
