//! A hash table with a cap, whose entries expire: the shard of the memory store and of the
//! Redis store's block cache.
//!
//! Expired entries are reclaimed incrementally: every insertion of a new key sweeps a few
//! buckets from a rotating cursor, never the whole table. A table at its cap samples a few
//! more and evicts the sampled live entry that expires first (it holds the least
//! information).

use hashbrown::HashTable;

/// Buckets swept on every insertion of a new key (a table is at most 7/8 full, so this finds
/// about three entries).
const SWEEP_ON_INSERT: usize = 4;
/// Buckets sampled when a table is full (a full table is about half occupied, so this looks
/// at about four entries: each look is a cache miss).
const SAMPLE_WHEN_FULL: usize = 8;

/// An entry that knows when it stops mattering.
pub(crate) trait Expires {
    /// Micros since the epoch from which the entry is equivalent to no entry at all.
    fn expires_at(&self) -> u64;
}

/// How many shards a cap of `max_entries` gets: a power of two up to 64, few for small caps
/// so that each shard's share of the cap stays useful.
pub(crate) fn shard_count(max_entries: usize) -> usize {
    let wanted = (max_entries / 1024).clamp(1, 64);
    1usize << (usize::BITS - 1 - wanted.leading_zeros())
}

/// The hasher of a table whose keys clients choose (an API key, a forwarded address): seeded
/// afresh for every table, so that nobody can work out offline which keys collide and pile
/// them into one shard and one probe sequence. Seeded once: foldhash's `RandomState` looks
/// up its global seed on every hash, a sixth of a decision.
pub(crate) fn unpredictable_hasher() -> foldhash::fast::FixedState {
    use std::hash::BuildHasher;
    let seed = foldhash::fast::RandomState::default().hash_one(0u64);
    foldhash::fast::FixedState::with_seed(seed)
}

/// The table hash of a key: its bytes alone. `hash_one` would hash their length first, which
/// a table that compares whole keys does not need; that was a tenth of a memory-store decision.
#[inline]
pub(crate) fn hash_bytes(state: &foldhash::fast::FixedState, bytes: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = state.build_hasher();
    hasher.write(bytes);
    hasher.finish()
}

/// What [`Bounded::make_room`] dropped.
#[derive(Default)]
pub(crate) struct Dropped {
    /// Entries that had expired.
    pub(crate) expired: usize,
    /// Live entries evicted because the table was full.
    pub(crate) evicted: usize,
}

/// A table of `T` with a sweep cursor.
pub(crate) struct Bounded<T> {
    pub(crate) table: HashTable<T>,
    /// Where the incremental sweep goes on: a bucket index of `table`.
    cursor: usize,
}

impl<T> Default for Bounded<T> {
    fn default() -> Self {
        Bounded {
            table: HashTable::new(),
            cursor: 0,
        }
    }
}

impl<T: Expires> Bounded<T> {
    /// Makes room for one more entry under `cap`. With room to spare it only sweeps, sparing
    /// entries expired less than `grace` micros ago (their client is likely still about);
    /// at the cap it drops whatever expired and evicts live entries as needed, never one that
    /// `keep` holds on to (a batch's own keys). When every live entry is kept, the table
    /// goes over its cap by that one entry.
    pub(crate) fn make_room(
        &mut self,
        cap: usize,
        now: u64,
        grace: u64,
        keep: impl Fn(&T) -> bool,
    ) -> Dropped {
        let mut dropped = Dropped::default();
        if self.table.len() < cap {
            // Only expired entries go: no victim is looked for, so `keep` is not asked (with a
            // batch to keep, it reads each live entry's key, a cache miss in a large table).
            dropped.expired += self
                .sweep(
                    SWEEP_ON_INSERT,
                    now.saturating_sub(grace),
                    None::<&fn(&T) -> bool>,
                )
                .0;
        }
        // Buckets looked at since the last eviction: a whole table's worth means all is kept.
        let mut fruitless = 0;
        while self.table.len() >= cap && fruitless <= self.table.num_buckets() {
            // A sample can land on empty buckets only; the next one goes on from there.
            let (expired, victim) = self.sweep(SAMPLE_WHEN_FULL, now, Some(&keep));
            dropped.expired += expired;
            if self.table.len() < cap {
                break;
            }
            match victim.map(|b| self.table.get_bucket_entry(b)) {
                Some(Ok(entry)) => {
                    entry.remove();
                    dropped.evicted += 1;
                    fruitless = 0;
                }
                _ => fruitless += SAMPLE_WHEN_FULL,
            }
        }
        dropped
    }

    /// Looks at up to `budget` buckets from the cursor, dropping expired entries. Returns how
    /// many it dropped and, when `keep` is given, the bucket of the looked-at live entry, not
    /// one to `keep`, that expires first.
    fn sweep(
        &mut self,
        budget: usize,
        now: u64,
        keep: Option<&impl Fn(&T) -> bool>,
    ) -> (usize, Option<usize>) {
        let buckets = self.table.num_buckets();
        let mut expired = 0;
        if self.table.is_empty() || buckets == 0 {
            return (expired, None);
        }
        let mut soonest: Option<(u64, usize)> = None;
        for _ in 0..budget {
            let bucket = self.cursor % buckets;
            self.cursor = bucket + 1;
            let Ok(entry) = self.table.get_bucket_entry(bucket) else {
                continue;
            };
            let expires_at = entry.get().expires_at();
            if expires_at <= now {
                entry.remove();
                expired += 1;
            } else if let Some(keep) = keep {
                if soonest.is_none_or(|(e, _)| expires_at < e) && !keep(entry.get()) {
                    soonest = Some((expires_at, bucket));
                }
            }
        }
        (expired, soonest.map(|(_, bucket)| bucket))
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    #[test]
    fn every_table_hashes_keys_its_own_way() {
        let key = "LIMITER{10.0.0.1}";
        let hashes: Vec<u64> = (0..4)
            .map(|_| super::unpredictable_hasher().hash_one(key))
            .collect();
        // Four equal 64-bit hashes by chance: about one in 2^192.
        assert!(
            hashes.windows(2).any(|pair| pair[0] != pair[1]),
            "{hashes:?}"
        );
    }
}
