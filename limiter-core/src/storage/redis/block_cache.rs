//! The block cache: counter keys that Redis denied, and until when, so that a client over
//! its limit is rejected in this process without a round trip until its retry-after passes.
//!
//! Sharded like the memory store (a short lock around a hash table per shard) and bounded the
//! same way: every insertion of a new key sweeps a few buckets from a rotating cursor and drops
//! expired entries, and a full shard evicts the sampled entry whose block ends first. A lookup
//! that meets an expired entry drops it.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hashbrown::HashTable;

use crate::clock::Timestamp;
use crate::rate::Rate;
use crate::storage::memory::SpinLock;
use crate::storage::Hit;
use crate::strategy::{LimitStats, Strategy};

/// Buckets swept on every insertion of a new key.
const SWEEP_ON_INSERT: usize = 4;
/// Buckets sampled when a shard is full.
const SAMPLE_WHEN_FULL: usize = 8;

/// One denied limit. The rate, strategy and cost are kept so that a hit matches only the
/// denial it repeats: a cheaper request may fit where this one did not, and a key met with
/// another rate or strategy is another counter as far as the strategies go.
struct Entry {
    key: Box<str>,
    rate: Rate,
    strategy: Strategy,
    cost: u64,
    /// Micros since the epoch at which the denied request would pass.
    until: u64,
    /// The denial's stats: what is left (less than the cost) and when the window resets.
    remaining: u64,
    reset: Timestamp,
}

#[derive(Default)]
struct Shard {
    table: HashTable<Entry>,
    /// Where the incremental sweep goes on: a bucket index of `table`.
    cursor: usize,
}

pub(crate) struct BlockCache {
    shards: Box<[SpinLock<Shard>]>,
    shard_mask: u64,
    per_shard_cap: usize,
    hasher: foldhash::fast::FixedState,
    /// Entries held, expired ones not yet reclaimed included; lets the common case (nobody
    /// blocked) skip the lookups.
    len: AtomicUsize,
    evictions: AtomicU64,
}

impl BlockCache {
    /// A cache of at most `max_entries` (rounded down to a multiple of the shard count), or
    /// none for 0.
    pub(crate) fn new(max_entries: usize) -> Option<BlockCache> {
        if max_entries == 0 {
            return None;
        }
        let wanted = (max_entries / 1024).clamp(1, 64);
        let shard_count = 1usize << (usize::BITS - 1 - wanted.leading_zeros());
        Some(BlockCache {
            shards: (0..shard_count).map(|_| SpinLock::default()).collect(),
            shard_mask: shard_count as u64 - 1,
            per_shard_cap: (max_entries / shard_count).max(1),
            hasher: foldhash::fast::FixedState::with_seed(0x0062_6c6f_636b_6564),
            len: AtomicUsize::new(0),
            evictions: AtomicU64::new(0),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub(crate) fn capacity(&self) -> usize {
        self.per_shard_cap * self.shards.len()
    }

    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    #[inline]
    fn place(&self, key: &str) -> (u64, usize) {
        let hash = self.hasher.hash_one(key.as_bytes());
        (hash, ((hash >> 48) & self.shard_mask) as usize)
    }

    /// The stats of `hit` if a denial of the same request (same rate and strategy, a cost no
    /// larger) still holds at `now`.
    pub(crate) fn blocked(&self, hit: &Hit<'_>, now: Timestamp) -> Option<LimitStats> {
        let t = now.as_micros();
        let (hash, shard) = self.place(hit.key);
        let mut shard = self.shards[shard].lock();
        let entry = shard.table.find_entry(hash, |e| &*e.key == hit.key).ok()?;
        let e = entry.get();
        if e.until <= t {
            entry.remove();
            self.len.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        if e.rate != hit.rate || e.strategy != hit.strategy || hit.cost < e.cost {
            return None;
        }
        Some(LimitStats {
            admitted: false,
            limit: hit.rate.amount(),
            remaining: e.remaining,
            reset: e.reset,
            retry_after: Some(Duration::from_micros(e.until - t)),
        })
    }

    /// Remembers a denial of `hit` by Redis at `now`.
    pub(crate) fn record(&self, hit: &Hit<'_>, stats: &LimitStats, now: Timestamp) {
        let Some(retry) = stats.retry_after.filter(|r| !r.is_zero()) else {
            return;
        };
        let until = now.saturating_add(retry).as_micros();
        let (hash, shard) = self.place(hit.key);
        let mut shard = self.shards[shard].lock();
        if let Some(e) = shard.table.find_mut(hash, |e| &*e.key == hit.key) {
            e.rate = hit.rate;
            e.strategy = hit.strategy;
            e.cost = hit.cost;
            e.until = until;
            e.remaining = stats.remaining;
            e.reset = stats.reset;
            return;
        }
        let t = now.as_micros();
        if shard.table.len() < self.per_shard_cap {
            self.sweep(&mut shard, SWEEP_ON_INSERT, t);
        }
        while shard.table.len() >= self.per_shard_cap {
            let victim = self.sweep(&mut shard, SAMPLE_WHEN_FULL, t);
            if shard.table.len() < self.per_shard_cap {
                break;
            }
            if let Some(bucket) = victim {
                if let Ok(entry) = shard.table.get_bucket_entry(bucket) {
                    entry.remove();
                    self.len.fetch_sub(1, Ordering::Relaxed);
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("redis block cache full: evicted a live entry");
                }
            }
        }
        let entry = Entry {
            key: hit.key.into(),
            rate: hit.rate,
            strategy: hit.strategy,
            cost: hit.cost,
            until,
            remaining: stats.remaining,
            reset: stats.reset,
        };
        let hasher = &self.hasher;
        shard
            .table
            .insert_unique(hash, entry, |e| hasher.hash_one(e.key.as_bytes()));
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets `key`.
    pub(crate) fn remove(&self, key: &str) {
        let (hash, shard) = self.place(key);
        let mut shard = self.shards[shard].lock();
        if let Ok(entry) = shard.table.find_entry(hash, |e| &*e.key == key) {
            entry.remove();
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let dropped = shard.table.len();
            *shard = Shard::default();
            self.len.fetch_sub(dropped, Ordering::Relaxed);
        }
    }

    /// Looks at up to `budget` buckets from the shard's cursor, dropping expired entries.
    /// Returns the bucket of the looked-at live entry whose block ends first.
    fn sweep(&self, shard: &mut Shard, budget: usize, now: u64) -> Option<usize> {
        let buckets = shard.table.num_buckets();
        if shard.table.is_empty() || buckets == 0 {
            return None;
        }
        let mut soonest: Option<(u64, usize)> = None;
        for _ in 0..budget {
            let bucket = shard.cursor % buckets;
            shard.cursor = bucket + 1;
            let Ok(entry) = shard.table.get_bucket_entry(bucket) else {
                continue;
            };
            let until = entry.get().until;
            if until <= now {
                entry.remove();
                self.len.fetch_sub(1, Ordering::Relaxed);
            } else if soonest.is_none_or(|(u, _)| until < u) {
                soonest = Some((until, bucket));
            }
        }
        soonest.map(|(_, bucket)| bucket)
    }
}
