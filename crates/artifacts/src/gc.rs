//! What the garbage collector removes: a pure function of the blobs, who holds them, a policy and
//! the time, so the choice is tested with plain data ([`plan`]).
//!
//! Rules:
//! - a blob nobody holds is removed once it has not been written or used for the grace period
//!   (so a blob being written, and not yet referenced, is safe);
//! - a folder holds its files (holder `artifact:<folder digest>`) for as long as it is kept;
//! - step-cache entries (holders named `cache:…`) are dropped when unused for longer than
//!   `max_age`, and, oldest-used first, while the store would stay over `max_size`; a cache entry
//!   whose blobs others hold too frees nothing and is kept;
//! - no other holder is ever dropped by the collector.

use std::collections::HashMap;

use petri_domain::artifact::{BlobCount, Digest, RemovedBlob};

use crate::{CACHE_HOLDER_PREFIX, FOLDER_HOLDER_PREFIX};

/// When blobs and cache entries go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcPolicy {
    /// An unreferenced blob is kept this long after it was last written or used (ms).
    pub grace_ms: i64,
    /// Cache entries are dropped, oldest-used first, while the store holds more bytes.
    pub max_size: u64,
    /// A cache entry unused for longer than this is dropped (ms).
    pub max_age_ms: i64,
}

impl Default for GcPolicy {
    fn default() -> Self {
        crate::ArtifactSettings::default().policy()
    }
}

/// What the collector knows about one blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobFacts {
    pub digest: Digest,
    /// Bytes on disk (0 when only its record is left).
    pub size: u64,
    /// When it was last written, recorded or used (ms).
    pub last_active_ms: i64,
    pub holders: Vec<HolderRef>,
}

/// One holder's reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolderRef {
    pub holder: String,
    /// When the reference was made (ms).
    pub since_ms: i64,
}

/// The collector's decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcPlan {
    /// Cache holders to drop, oldest-used first.
    pub drop_holders: Vec<String>,
    /// Blobs to remove, by digest.
    pub remove: Vec<RemovedBlob>,
    pub freed_bytes: u64,
    /// What stays.
    pub kept: BlobCount,
}

/// Reference counts as holders go: `respect_grace` frees only blobs past the grace period (what
/// is removed now); without it, every blob that nothing holds counts as freed (what the store
/// will shrink to, used to decide whether it is over its size).
struct Sweep<'a> {
    blobs: &'a [BlobFacts],
    children: &'a [Vec<usize>],
    refs: Vec<u32>,
    freed: Vec<bool>,
    bytes: u64,
    past_grace: Option<Vec<bool>>,
}

impl Sweep<'_> {
    fn free(&mut self, first: usize) {
        let mut work = vec![first];
        while let Some(i) = work.pop() {
            if self.freed[i] || self.refs[i] > 0 {
                continue;
            }
            if let Some(past) = &self.past_grace
                && !past[i]
            {
                continue;
            }
            self.freed[i] = true;
            self.bytes += self.blobs[i].size;
            for &c in &self.children[i] {
                self.refs[c] = self.refs[c].saturating_sub(1);
                if self.refs[c] == 0 {
                    work.push(c);
                }
            }
        }
    }

    fn release(&mut self, i: usize) {
        self.refs[i] = self.refs[i].saturating_sub(1);
        if self.refs[i] == 0 {
            self.free(i);
        }
    }
}

/// Decides what a collection at `now_ms` removes. Deterministic: the same facts give the same
/// plan whatever their order.
pub fn plan(blobs: &[BlobFacts], policy: &GcPolicy, now_ms: i64) -> GcPlan {
    let index: HashMap<&Digest, usize> = blobs
        .iter()
        .enumerate()
        .map(|(i, b)| (&b.digest, i))
        .collect();
    let n = blobs.len();
    let mut children = vec![Vec::new(); n];
    let mut refs = vec![0u32; n];
    // cache holder -> (its blobs, when it was last used)
    let mut cache: HashMap<&str, (Vec<usize>, i64)> = HashMap::new();
    for (i, b) in blobs.iter().enumerate() {
        for h in &b.holders {
            if let Some(folder) = h.holder.strip_prefix(FOLDER_HOLDER_PREFIX) {
                // A folder that is gone holds nothing.
                if let Some(&p) = folder
                    .parse::<Digest>()
                    .ok()
                    .as_ref()
                    .and_then(|d| index.get(d))
                    && p != i
                {
                    children[p].push(i);
                    refs[i] += 1;
                }
                continue;
            }
            refs[i] += 1;
            if h.holder.starts_with(CACHE_HOLDER_PREFIX) {
                let entry = cache.entry(&h.holder).or_insert((Vec::new(), i64::MIN));
                entry.0.push(i);
                entry.1 = entry.1.max(h.since_ms).max(b.last_active_ms);
            }
        }
    }
    let past_grace: Vec<bool> = blobs
        .iter()
        .map(|b| now_ms.saturating_sub(b.last_active_ms) >= policy.grace_ms)
        .collect();
    let mut now = Sweep {
        blobs,
        children: &children,
        refs: refs.clone(),
        freed: vec![false; n],
        bytes: 0,
        past_grace: Some(past_grace),
    };
    let mut eventually = Sweep {
        blobs,
        children: &children,
        refs,
        freed: vec![false; n],
        bytes: 0,
        past_grace: None,
    };
    for i in 0..n {
        now.free(i);
        eventually.free(i);
    }

    let total: u64 = blobs.iter().map(|b| b.size).sum();
    let mut holders: Vec<(&str, Vec<usize>, i64)> =
        cache.into_iter().map(|(h, (b, t))| (h, b, t)).collect();
    holders.sort_by(|a, b| a.2.cmp(&b.2).then(a.0.cmp(b.0)));
    let mut drop_holders = Vec::new();
    for (holder, held, last_used) in holders {
        let stale = now_ms.saturating_sub(last_used) > policy.max_age_ms;
        let over = total - eventually.bytes > policy.max_size;
        let frees_something = held.iter().any(|&b| eventually.refs[b] == 1);
        if !(stale || (over && frees_something)) {
            continue;
        }
        for &b in &held {
            now.release(b);
            eventually.release(b);
        }
        drop_holders.push(holder.to_string());
    }

    let mut remove: Vec<RemovedBlob> = (0..n)
        .filter(|&i| now.freed[i])
        .map(|i| RemovedBlob {
            digest: blobs[i].digest.clone(),
            size: blobs[i].size,
        })
        .collect();
    remove.sort_by(|a, b| a.digest.cmp(&b.digest));
    GcPlan {
        drop_holders,
        kept: BlobCount {
            count: (n - remove.len()) as u64,
            bytes: total - now.bytes,
        },
        freed_bytes: now.bytes,
        remove,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const NOW: i64 = 1_000 * HOUR;

    fn d(n: u8) -> Digest {
        Digest::from_sha256([n; 32])
    }

    fn blob(n: u8, size: u64, age: i64, holders: &[(&str, i64)]) -> BlobFacts {
        BlobFacts {
            digest: d(n),
            size,
            last_active_ms: NOW - age,
            holders: holders
                .iter()
                .map(|(h, age)| HolderRef {
                    holder: h.to_string(),
                    since_ms: NOW - age,
                })
                .collect(),
        }
    }

    fn policy() -> GcPolicy {
        GcPolicy {
            grace_ms: HOUR,
            max_size: 1_000,
            max_age_ms: 90 * 24 * HOUR,
        }
    }

    fn removed(p: &GcPlan) -> Vec<Digest> {
        p.remove.iter().map(|r| r.digest.clone()).collect()
    }

    #[test]
    fn unreferenced_blobs_go_after_the_grace_period_and_held_ones_stay() {
        let blobs = [
            blob(1, 10, 2 * HOUR, &[]), // nobody holds it, old: goes
            blob(2, 20, HOUR / 2, &[]), // nobody holds it, just written: stays
            blob(3, 30, 500 * HOUR, &[("pipeline:r/s/o", 500 * HOUR)]), // held: stays
            blob(4, 40, 500 * HOUR, &[("model:m/1", HOUR)]),
        ];
        let p = plan(&blobs, &policy(), NOW);
        assert_eq!(removed(&p), vec![d(1)]);
        assert_eq!(p.freed_bytes, 10);
        assert_eq!(
            p.kept,
            BlobCount {
                count: 3,
                bytes: 90
            }
        );
        assert!(p.drop_holders.is_empty());
    }

    #[test]
    fn a_folder_holds_its_files_until_it_goes() {
        let folder = format!("artifact:{}", d(9));
        let kept_folder = format!("artifact:{}", d(8));
        let blobs = [
            blob(9, 5, 2 * HOUR, &[]), // an unreferenced folder
            blob(1, 10, 2 * HOUR, &[(&folder, 2 * HOUR)]),
            blob(
                2,
                10,
                2 * HOUR,
                &[(&folder, 2 * HOUR), (&kept_folder, HOUR)],
            ),
            blob(8, 5, 2 * HOUR, &[("pipeline:r/a/out", HOUR)]),
            // A folder that is gone holds nothing.
            blob(3, 7, 2 * HOUR, &[(&format!("artifact:{}", d(77)), HOUR)]),
        ];
        let p = plan(&blobs, &policy(), NOW);
        assert_eq!(removed(&p), vec![d(1), d(3), d(9)]);
        // A young folder keeps its files for now.
        let mut young = blobs.clone();
        young[0].last_active_ms = NOW - 1;
        assert_eq!(removed(&plan(&young, &policy(), NOW)), vec![d(3)]);
    }

    #[test]
    fn cache_entries_go_oldest_used_first_while_the_store_is_over_its_size() {
        let blobs = [
            blob(1, 400, 30 * HOUR, &[("cache:a", 30 * HOUR)]),
            blob(2, 400, 20 * HOUR, &[("cache:b", 20 * HOUR)]),
            blob(3, 400, 10 * HOUR, &[("cache:c", 10 * HOUR)]),
            // Shared with a run: dropping its cache entry frees nothing, so it stays.
            blob(
                4,
                300,
                40 * HOUR,
                &[("cache:d", 40 * HOUR), ("pipeline:r/s/o", 40 * HOUR)],
            ),
        ];
        // 1500 bytes, at most 1000: dropping a (400) leaves 1100, dropping b leaves 700.
        let p = plan(&blobs, &policy(), NOW);
        assert_eq!(p.drop_holders, vec!["cache:a", "cache:b"]);
        assert_eq!(removed(&p), vec![d(1), d(2)]);
        assert_eq!(
            p.kept,
            BlobCount {
                count: 2,
                bytes: 700
            }
        );

        // Under the limit nothing is dropped; the pipeline's own holders never are.
        let roomy = GcPolicy {
            max_size: 10_000,
            ..policy()
        };
        assert_eq!(
            plan(&blobs, &roomy, NOW),
            GcPlan {
                kept: BlobCount {
                    count: 4,
                    bytes: 1500
                },
                ..Default::default()
            }
        );
        let tiny = GcPolicy {
            max_size: 0,
            ..policy()
        };
        let p = plan(&blobs, &tiny, NOW);
        assert_eq!(p.drop_holders, vec!["cache:a", "cache:b", "cache:c"]);
        assert!(!removed(&p).contains(&d(4)));
    }

    #[test]
    fn a_cache_entry_unused_past_max_age_goes_even_under_the_size() {
        let policy = GcPolicy {
            max_size: u64::MAX,
            max_age_ms: 24 * HOUR,
            ..policy()
        };
        let blobs = [
            blob(1, 10, 30 * HOUR, &[("cache:old", 30 * HOUR)]),
            // Used recently, though referenced long ago: stays.
            blob(2, 10, 2 * HOUR, &[("cache:used", 30 * HOUR)]),
            blob(3, 10, 30 * HOUR, &[("model:m/1", 30 * HOUR)]),
        ];
        let p = plan(&blobs, &policy, NOW);
        assert_eq!(p.drop_holders, vec!["cache:old"]);
        assert_eq!(removed(&p), vec![d(1)]);
    }

    #[test]
    fn a_dropped_cache_entry_of_fresh_blobs_frees_them_only_after_the_grace() {
        let blobs = [
            blob(1, 600, 3 * HOUR, &[("cache:a", 3 * HOUR)]),
            blob(2, 600, HOUR / 4, &[("cache:b", HOUR / 4)]),
        ];
        let p = plan(&blobs, &policy(), NOW);
        // Dropping a brings the store to 600 in the end: b is not dropped.
        assert_eq!(p.drop_holders, vec!["cache:a"]);
        assert_eq!(removed(&p), vec![d(1)]);
    }

    #[test]
    fn the_plan_does_not_depend_on_the_order_of_the_facts() {
        let folder = format!("artifact:{}", d(9));
        let mut blobs = vec![
            blob(9, 5, 2 * HOUR, &[("cache:x", 50 * HOUR)]),
            blob(1, 600, 2 * HOUR, &[(&folder, 2 * HOUR)]),
            blob(2, 600, 2 * HOUR, &[("cache:y", 40 * HOUR)]),
            blob(3, 1, 3 * HOUR, &[]),
        ];
        let a = plan(&blobs, &policy(), NOW);
        blobs.reverse();
        assert_eq!(plan(&blobs, &policy(), NOW), a);
        assert_eq!(a.drop_holders, vec!["cache:x"]);
        assert_eq!(removed(&a), vec![d(1), d(3), d(9)]);
    }
}
