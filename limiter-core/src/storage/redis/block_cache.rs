//! The block cache: counter keys that Redis denied, and until when, so that a client over
//! its limit is rejected in this process without a round trip until its retry-after passes.
//!
//! Sharded and bounded like the memory store, by the same table (`storage::bounded`): a
//! short lock per shard, expired entries swept as new ones arrive, and a full shard evicting
//! the sampled entry whose block ends first. A lookup that meets an expired entry drops it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::clock::Timestamp;
use crate::rate::Rate;
use crate::storage::Hit;
use crate::storage::bounded::{Bounded, Expires, hash_bytes, shard_count, unpredictable_hasher};
use crate::storage::memory::SpinLock;
use crate::strategy::{LimitStats, Strategy, gcra_interval};

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

type Shard = Bounded<Entry>;

impl Entry {
    /// Until when this entry answers: its block, and no further than the denial's reset. A
    /// window or bucket that ends, or a logged hit that leaves, changes the stats the denial
    /// reported (a request of cost 2 or more can still be blocked then, with other stats).
    fn ends(&self) -> u64 {
        self.until.min(self.reset.as_micros())
    }
}

impl Expires for Entry {
    fn expires_at(&self) -> u64 {
        self.ends()
    }
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
    /// Bumped by every removal of a key of the stripe (a refund, a clear): a denial whose call
    /// overlapped the removal of its key may be older than the refund that made room, and is
    /// not recorded. Striped by key, so that the refunds of other clients, which a busy app
    /// makes during nearly every round trip, do not keep every denial out of the cache.
    stripes: Box<[AtomicU64]>,
    /// Bumped by every [`BlockCache::clear`] (a reset): no denial in flight then is recorded.
    epoch: AtomicU64,
}

/// Generation stripes: a removal makes the denials in flight of about 1/256 of the keys
/// unrecordable, where one counter for all would make every one of them so.
const STRIPES: usize = 256;

impl BlockCache {
    /// A cache of at most `max_entries` (rounded down to a multiple of the shard count), or
    /// none for 0.
    pub(crate) fn new(max_entries: usize) -> Option<BlockCache> {
        if max_entries == 0 {
            return None;
        }
        let shard_count = shard_count(max_entries);
        Some(BlockCache {
            shards: (0..shard_count).map(|_| SpinLock::default()).collect(),
            shard_mask: shard_count as u64 - 1,
            per_shard_cap: (max_entries / shard_count).max(1),
            hasher: unpredictable_hasher(),
            len: AtomicUsize::new(0),
            evictions: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            epoch: AtomicU64::new(0),
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
        let hash = hash_bytes(&self.hasher, key.as_bytes());
        (hash, ((hash >> 48) & self.shard_mask) as usize)
    }

    /// The stats of `hit` if a denial of the same request (same rate and strategy, the same
    /// cost, or for a fixed window one no smaller) still holds at `now`: the stats Redis
    /// would report.
    pub(crate) fn blocked(&self, hit: &Hit<'_>, now: Timestamp) -> Option<LimitStats> {
        let t = now.as_micros();
        let (hash, shard) = self.place(hit.key);
        let mut shard = self.shards[shard].lock();
        let entry = shard.table.find_entry(hash, |e| &*e.key == hit.key).ok()?;
        let e = entry.get();
        if e.ends() <= t {
            entry.remove();
            self.len.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let n = hit.rate.amount();
        let possible = |cost: u64| cost <= n;
        // A costlier request waits longer, except in a fixed window, which every request
        // that can ever pass waits out alike (and one that never can, a full period).
        let same_wait = hit.cost == e.cost
            || (hit.strategy == Strategy::FixedWindow
                && hit.cost > e.cost
                && possible(hit.cost) == possible(e.cost));
        if e.rate != hit.rate || e.strategy != hit.strategy || !same_wait {
            return None;
        }
        let p = hit.rate.period_micros();
        let retry = if possible(hit.cost) { e.until - t } else { p };
        let remaining = match hit.strategy {
            // What is left of a bucket grows as it drains, the reset (its arrival time) stays.
            Strategy::Gcra if n > 0 => {
                let interval = gcra_interval(p, n);
                (n * interval).saturating_sub(e.reset.as_micros() - t) / interval
            }
            _ => e.remaining,
        };
        Some(LimitStats {
            admitted: false,
            limit: n,
            remaining,
            reset: e.reset,
            retry_after: Some(Duration::from_micros(retry)),
        })
    }

    #[inline]
    fn stripe(&self, hash: u64) -> &AtomicU64 {
        &self.stripes[hash as usize & (STRIPES - 1)]
    }

    /// The generation of the keys of `hits`: read before a call to Redis, and given to
    /// [`BlockCache::record`] with its denial. A sum of counters that only grow: it changes
    /// whenever one of them does.
    pub(crate) fn generation(&self, hits: &[Hit<'_>]) -> u64 {
        hits.iter()
            .fold(self.epoch.load(Ordering::Acquire), |sum, hit| {
                let (hash, _) = self.place(hit.key);
                sum.wrapping_add(self.stripe(hash).load(Ordering::Acquire))
            })
    }

    /// Remembers a denial of `hit` (one of `hits`) by Redis at `now`, from a call made at
    /// `generation` (of `hits`): not if a removal of one of their keys (a refund, a clear, a
    /// reset of this store) came since, which Redis may have run after the denial, making room
    /// the denial does not show.
    pub(crate) fn record(
        &self,
        hit: &Hit<'_>,
        stats: &LimitStats,
        now: Timestamp,
        hits: &[Hit<'_>],
        generation: u64,
    ) {
        let Some(retry) = stats.retry_after.filter(|r| !r.is_zero()) else {
            return;
        };
        let n = hit.rate.amount();
        let changes_before_the_block_ends = match hit.strategy {
            // The previous bucket's share decays: what is left grows while the request is
            // still denied, unless one unit more would admit it.
            Strategy::SlidingWindowCounter => stats.remaining + 1 < hit.cost.min(n + 1),
            // An empty log (a request that never fits): its reset follows the clock.
            Strategy::MovingWindow => stats.remaining >= n,
            _ => false,
        };
        if changes_before_the_block_ends || stats.reset <= now {
            return;
        }
        let until = now.saturating_add(retry).as_micros();
        let (hash, shard) = self.place(hit.key);
        let mut shard = self.shards[shard].lock();
        // Checked under the shard's lock, which a removal of this key takes after its bump.
        if self.generation(hits) != generation {
            return;
        }
        if let Some(e) = shard.table.find_mut(hash, |e| &*e.key == hit.key) {
            e.rate = hit.rate;
            e.strategy = hit.strategy;
            e.cost = hit.cost;
            e.until = until;
            e.remaining = stats.remaining;
            e.reset = stats.reset;
            return;
        }
        let dropped = shard.make_room(self.per_shard_cap, now.as_micros(), 0, |_| false);
        self.len
            .fetch_sub(dropped.expired + dropped.evicted, Ordering::Relaxed);
        if dropped.evicted > 0 {
            self.evictions
                .fetch_add(dropped.evicted as u64, Ordering::Relaxed);
            tracing::debug!("redis block cache full: evicted a live entry");
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
            .insert_unique(hash, entry, |e| hash_bytes(hasher, e.key.as_bytes()));
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets `key`, and makes the denials in flight of its keys unrecordable (see
    /// [`BlockCache::record`]).
    pub(crate) fn remove(&self, key: &str) {
        let (hash, shard) = self.place(key);
        self.stripe(hash).fetch_add(1, Ordering::AcqRel);
        let mut shard = self.shards[shard].lock();
        if let Ok(entry) = shard.table.find_entry(hash, |e| &*e.key == key) {
            entry.remove();
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Forgets everything, and makes every denial in flight unrecordable.
    pub(crate) fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let dropped = shard.table.len();
            *shard = Shard::default();
            self.len.fetch_sub(dropped, Ordering::Relaxed);
        }
    }
}
