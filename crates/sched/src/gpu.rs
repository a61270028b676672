//! GPU reservations: whole GPUs held alone, and slices of one GPU's memory packed best-fit.
//!
//! Admission is by reservation, never by "looks free now": a GPU admits up to its memory minus a
//! configured reserve, minus what processes that are not Petri's use, minus the slices already
//! reserved on it. A GPU held whole takes no slices, and a GPU with slices is not given whole.
//!
//! A GPU claimed by a blocked job ahead in line takes nothing new, except jobs whose time limit
//! ends them before the claimant could start there anyway (backfill): when every job on it has a
//! time limit, the claim knows when it will be met.

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

/// Whether a blocked job ahead in line keeps a GPU for itself during this plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Claim {
    No,
    /// Kept for a job that can start here by this time (Unix ms) at the latest, going by the time
    /// limits of the jobs here: jobs that end by then may still use it.
    Until(i64),
    /// Kept, with no time known (a job here has no time limit): nothing new goes here.
    Unbounded,
}

#[derive(Clone, Debug)]
struct Book {
    index: u32,
    /// What may be reserved on this GPU in total (memory - reserve - foreign use).
    admissible: u64,
    healthy: bool,
    claim: Claim,
    /// The jobs on it (what is reserved here follows from them).
    holders: Vec<Holder>,
    /// MIG instances: (profile, held).
    mig: Vec<(u32, bool)>,
}

/// A job on a GPU.
#[derive(Clone, Copy, Debug)]
struct Holder {
    /// The memory of its slice; None when it holds the GPU whole.
    slice: Option<u64>,
    /// When it is gone at the latest (None: no time limit).
    gone_by: Option<i64>,
}

impl Book {
    fn reserved(&self) -> u64 {
        self.holders.iter().filter_map(|h| h.slice).sum()
    }
    fn slices(&self) -> usize {
        self.holders.iter().filter(|h| h.slice.is_some()).count()
    }
    fn exclusive(&self) -> bool {
        self.holders.iter().any(|h| h.slice.is_none())
    }
    fn free(&self) -> u64 {
        self.admissible.saturating_sub(self.reserved())
    }
    /// Usable for whole GPUs and slices (not for MIG), claimed or not.
    fn usable(&self) -> bool {
        self.healthy && !self.exclusive() && self.mig.is_empty()
    }
    /// Usable and unclaimed.
    fn open(&self) -> bool {
        self.usable() && self.claim == Claim::No
    }
    /// Usable by a job that ends by `ends_by` at the latest (None: no time limit).
    fn open_to(&self, ends_by: Option<i64>) -> bool {
        self.usable()
            && match self.claim {
                Claim::No => true,
                Claim::Until(until) => ends_by.is_some_and(|e| e <= until),
                Claim::Unbounded => false,
            }
    }
    /// When `bytes` of slices will be free here at the latest, going by the time limits of the
    /// slices here (None: not known, or never).
    fn free_by(&self, bytes: u64, now: i64) -> Option<i64> {
        let mut reserved = self.reserved();
        if self.admissible.saturating_sub(reserved) >= bytes {
            return Some(now);
        }
        let mut ending = self.holders.clone();
        ending.sort_by_key(|h| h.gone_by.unwrap_or(i64::MAX));
        for h in ending {
            let end = h.gone_by?;
            reserved = reserved.saturating_sub(h.slice.unwrap_or(0));
            if self.admissible.saturating_sub(reserved) >= bytes {
                return Some(end.max(now));
            }
        }
        None
    }
    /// When every job here will have ended at the latest.
    fn empty_by(&self, now: i64) -> Option<i64> {
        self.holders
            .iter()
            .try_fold(now, |latest, h| h.gone_by.map(|e| latest.max(e)))
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
        running: impl IntoIterator<Item = (GpuAsk, &'r GpuPlacement, Option<i64>)>,
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
                    healthy: g.healthy,
                    claim: Claim::No,
                    holders: Vec::new(),
                    mig: g.mig.iter().map(|p| (*p, false)).collect(),
                })
                .collect(),
        };
        for (ask, placement, ends_by) in running {
            book.take(ask, placement, ends_by);
        }
        book
    }

    fn get(&mut self, index: u32) -> Option<&mut Book> {
        self.gpus.iter_mut().find(|b| b.index == index)
    }

    /// Where `ask` would go now, if anywhere, for a job that ends by `ends_by` at the latest.
    pub(crate) fn place(&self, ask: GpuAsk, ends_by: Option<i64>) -> Option<GpuPlacement> {
        self.place_on(ask, |b| b.open_to(ends_by))
    }

    /// Where `ask` would go now among the GPUs that `may` allows.
    fn place_on(&self, ask: GpuAsk, may: impl Fn(&Book) -> bool) -> Option<GpuPlacement> {
        match ask {
            GpuAsk::None => Some(GpuPlacement::default()),
            GpuAsk::Whole(n) => {
                let empty: Vec<u32> = self
                    .gpus
                    .iter()
                    .filter(|b| may(b) && b.slices() == 0)
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
                .filter(|b| may(b) && b.free() >= bytes)
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

    /// When `ask` would fit now on GPUs kept for a job ahead (and on no other): until when they
    /// are kept (None: not known). None when it would not fit on them either.
    pub(crate) fn kept_until(&self, ask: GpuAsk) -> Option<Option<i64>> {
        let placement = self.place_on(ask, Book::usable)?;
        let mut until = Some(i64::MAX);
        for index in &placement.gpus {
            match self.gpus.iter().find(|b| b.index == *index)?.claim {
                Claim::No => {}
                Claim::Until(t) => until = until.map(|u| u.min(t)),
                Claim::Unbounded => until = None,
            }
        }
        Some(until.filter(|u| *u != i64::MAX))
    }

    /// The GPUs kept for the claimant, and until when (None: not known).
    pub(crate) fn kept(&self) -> impl Iterator<Item = (u32, Option<i64>)> + '_ {
        self.gpus.iter().filter_map(|b| match b.claim {
            Claim::No => None,
            Claim::Until(t) => Some((b.index, Some(t))),
            Claim::Unbounded => Some((b.index, None)),
        })
    }

    /// Books a placement for a job that ends by `ends_by` at the latest.
    pub(crate) fn take(&mut self, ask: GpuAsk, placement: &GpuPlacement, ends_by: Option<i64>) {
        for &index in &placement.gpus {
            if let Some(b) = self.get(index) {
                match ask {
                    GpuAsk::None => {}
                    GpuAsk::Whole(_) => b.holders.push(Holder {
                        slice: None,
                        gone_by: ends_by,
                    }),
                    GpuAsk::Memory(bytes) => b.holders.push(Holder {
                        slice: Some(bytes),
                        gone_by: ends_by,
                    }),
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
    /// jobs cannot keep taking them. Whole GPUs: the ones that the time limits of their jobs free
    /// first, else the ones with the fewest slices; a slice: the GPU where time limits free its
    /// memory first, else the one with the most free memory.
    pub(crate) fn claim_for(&mut self, ask: GpuAsk, now: i64) {
        // Known times first, earliest first.
        let when = |t: Option<i64>| t.unwrap_or(i64::MAX);
        match ask {
            // MIG instances are taken whole and in order: nothing to keep.
            GpuAsk::None | GpuAsk::Mig(_) => {}
            GpuAsk::Whole(n) => {
                let mut candidates: Vec<&mut Book> =
                    self.gpus.iter_mut().filter(|b| b.open()).collect();
                candidates
                    .sort_by_key(|b| (when(b.empty_by(now)), b.slices(), b.reserved(), b.index));
                candidates.truncate(n as usize);
                // The claimant starts when the last of them is empty.
                let by = candidates
                    .iter()
                    .try_fold(now, |latest, b| b.empty_by(now).map(|e| latest.max(e)));
                for b in candidates {
                    b.claim = by.map_or(Claim::Unbounded, Claim::Until);
                }
            }
            GpuAsk::Memory(bytes) => {
                if let Some(b) = self
                    .gpus
                    .iter_mut()
                    .filter(|b| b.open() && b.admissible >= bytes)
                    .min_by_key(|b| {
                        (
                            when(b.free_by(bytes, now)),
                            std::cmp::Reverse(b.free()),
                            b.index,
                        )
                    })
                {
                    b.claim = b.free_by(bytes, now).map_or(Claim::Unbounded, Claim::Until);
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
            .filter(|b| b.open())
            .map(Book::free)
            .max()
            .unwrap_or(0)
    }

    /// How many GPUs could be given whole now.
    pub(crate) fn empty_count(&self) -> u32 {
        self.gpus
            .iter()
            .filter(|b| b.open() && b.slices() == 0)
            .count() as u32
    }
}
