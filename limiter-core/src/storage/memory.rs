//! `memory://`: counters in this process, sharded and bounded.
//!
//! Keys are spread over shards by hash; each shard is a mutex around a slot vector and a hash
//! index into it. A decision locks the shards of its keys in ascending order (so batches never
//! deadlock) and holds them for the whole batch, which makes it atomic.
//!
//! Memory is bounded by `max_keys`. Every insertion of a new key sweeps a couple of slots from
//! a rotating cursor and drops those whose state has expired, so expired state is reclaimed
//! incrementally, never by a stop-the-world sweep. A shard at its cap sweeps a larger sample
//! and, if nothing in it has expired, evicts the sampled key whose state expires first (it
//! holds the least information).
//!
//! ```
//! use limiter_core::{parse_rates, Hit, MemoryStore, Strategy, Timestamp};
//!
//! let store = MemoryStore::new(1_000);
//! let rate = parse_rates("2 per minute").unwrap()[0];
//! let now = Timestamp::from_secs(120);
//! let hit = [Hit::new("client-1", rate, Strategy::FixedWindow)];
//! assert!(store.decide_now(&hit, now).admitted);
//! assert!(store.decide_now(&hit, now).admitted);
//! let third = store.decide_now(&hit, now);
//! assert!(!third.admitted);
//! assert_eq!(third.retry_after.unwrap().as_secs(), 60);
//! ```

use std::future::{ready, Future};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::HashTable;
use parking_lot::{Mutex, MutexGuard};
use smallvec::SmallVec;

use crate::clock::Timestamp;
use crate::error::StorageError;
use crate::storage::{decide_batch, Decision, Hit, Storage};
use crate::strategy::{Action, LimitStats, State};

/// Default cap on keys: about 100 MB of state with typical keys.
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

/// Slots swept on every insertion of a new key.
const SWEEP_ON_INSERT: usize = 2;
/// Slots sampled when a shard is full.
const SAMPLE_WHEN_FULL: usize = 16;

/// The in-process store. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    shard_mask: u64,
    per_shard_cap: usize,
    hasher: foldhash::fast::FixedState,
    evictions: AtomicU64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .field("max_keys", &self.max_keys())
            .field("len", &self.len())
            .finish()
    }
}

struct Slot {
    hash: u64,
    expires_at: u64,
    key: Box<str>,
    state: State,
}

#[derive(Default)]
struct Shard {
    index: HashTable<u32>,
    slots: Vec<Slot>,
    cursor: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(DEFAULT_MAX_KEYS)
    }
}

impl MemoryStore {
    /// A store holding at most `max_keys` counters (at least one).
    pub fn new(max_keys: usize) -> MemoryStore {
        let max_keys = max_keys.max(1);
        // Small caps get few shards, so that each shard's share of the cap stays useful.
        let wanted = (max_keys / 1024).clamp(1, 64);
        let shard_count = 1usize << (usize::BITS - 1 - wanted.leading_zeros());
        MemoryStore {
            shards: (0..shard_count).map(|_| Mutex::default()).collect(),
            shard_mask: shard_count as u64 - 1,
            per_shard_cap: max_keys / shard_count,
            hasher: foldhash::fast::FixedState::with_seed(0x006c_696d_6974_6572),
            evictions: AtomicU64::new(0),
        }
    }

    /// The cap on keys this store keeps (rounded down to a multiple of its shard count).
    pub fn max_keys(&self) -> usize {
        self.per_shard_cap * self.shards.len()
    }

    /// Keys held now, expired ones not yet reclaimed included.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().slots.len()).sum()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys evicted before their state expired because the store was full.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// [`Storage::decide`] without the future: the memory store never waits.
    pub fn decide_now(&self, hits: &[Hit<'_>], now: Timestamp) -> Decision {
        if let [hit] = hits {
            // The hot path: one key, one lock, one pass.
            let hash = self.hasher.hash_one(hit.key);
            let mut shard = self.shard(hash);
            let stats = self.apply(&mut shard, hash, hit, now, Action::Hit, true);
            return Decision::from_stats(std::iter::once(stats).collect());
        }
        let hashes: SmallVec<[u64; 4]> = hits.iter().map(|h| self.hasher.hash_one(h.key)).collect();
        let mut guards = self.lock_all(&hashes);
        decide_batch(hits, |i, action| {
            let shard = guards.get(self.shard_of(hashes[i]));
            self.apply(shard, hashes[i], &hits[i], now, action, true)
        })
    }

    /// [`Storage::refund`] without the future.
    pub fn refund_now(&self, hits: &[Hit<'_>], now: Timestamp) {
        let hashes: SmallVec<[u64; 4]> = hits.iter().map(|h| self.hasher.hash_one(h.key)).collect();
        let mut guards = self.lock_all(&hashes);
        for (hit, &hash) in hits.iter().zip(&hashes) {
            let shard = guards.get(self.shard_of(hash));
            if let Some(i) = shard.find(hash, hit.key) {
                let slot = &mut shard.slots[i];
                slot.state.refund(hit.strategy, &hit.rate, now, hit.cost);
                slot.expires_at = slot.state.expires_at(&hit.rate);
            }
        }
    }

    /// [`Storage::peek`] without the future.
    pub fn peek_now(&self, hits: &[Hit<'_>], now: Timestamp) -> Decision {
        let hashes: SmallVec<[u64; 4]> = hits.iter().map(|h| self.hasher.hash_one(h.key)).collect();
        let mut guards = self.lock_all(&hashes);
        let stats = hits
            .iter()
            .zip(&hashes)
            .map(|(hit, &hash)| {
                let shard = guards.get(self.shard_of(hash));
                self.apply(shard, hash, hit, now, Action::Peek, false)
            })
            .collect();
        Decision::from_stats(stats)
    }

    /// [`Storage::clear`] without the future.
    pub fn clear_now(&self, key: &str) {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash);
        if let Some(i) = shard.find(hash, key) {
            shard.remove(i);
        }
    }

    /// [`Storage::reset`] without the future.
    pub fn reset_now(&self) {
        for shard in self.shards.iter() {
            *shard.lock() = Shard::default();
        }
    }

    fn shard_of(&self, hash: u64) -> usize {
        // The low bits pick the table bucket; the shard comes from the high ones.
        ((hash >> 48) & self.shard_mask) as usize
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        self.shards[self.shard_of(hash)].lock()
    }

    /// Locks the distinct shards of `hashes` in ascending order.
    fn lock_all(&self, hashes: &[u64]) -> Guards<'_> {
        let mut ids: SmallVec<[usize; 4]> = hashes.iter().map(|&h| self.shard_of(h)).collect();
        ids.sort_unstable();
        ids.dedup();
        Guards(
            ids.into_iter()
                .map(|id| (id, self.shards[id].lock()))
                .collect(),
        )
    }

    /// Applies `action` to `hit`'s state; `create` inserts a missing key (a peek does not).
    fn apply(
        &self,
        shard: &mut Shard,
        hash: u64,
        hit: &Hit<'_>,
        now: Timestamp,
        action: Action,
        create: bool,
    ) -> LimitStats {
        let index = match shard.find(hash, hit.key) {
            Some(i) => i,
            None if create => self.insert(shard, hash, hit.key, now),
            None => {
                return State::Empty.decide(hit.strategy, &hit.rate, now, hit.cost, action);
            }
        };
        let slot = &mut shard.slots[index];
        let stats = slot
            .state
            .decide(hit.strategy, &hit.rate, now, hit.cost, action);
        slot.expires_at = slot.state.expires_at(&hit.rate);
        stats
    }

    fn insert(&self, shard: &mut Shard, hash: u64, key: &str, now: Timestamp) -> usize {
        let now = now.as_micros();
        shard.sweep(SWEEP_ON_INSERT, now);
        if shard.slots.len() >= self.per_shard_cap {
            let victim = shard.sweep(SAMPLE_WHEN_FULL, now);
            if shard.slots.len() >= self.per_shard_cap {
                if let Some(i) = victim {
                    shard.remove(i);
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("memory store full: evicted a live key");
                }
            }
        }
        let index = shard.slots.len();
        shard.slots.push(Slot {
            hash,
            expires_at: 0,
            key: key.into(),
            state: State::Empty,
        });
        let slots = &shard.slots;
        shard
            .index
            .insert_unique(hash, index as u32, |&i| slots[i as usize].hash);
        index
    }
}

struct Guards<'a>(SmallVec<[(usize, MutexGuard<'a, Shard>); 4]>);

impl Guards<'_> {
    fn get(&mut self, shard: usize) -> &mut Shard {
        let (_, guard) = self
            .0
            .iter_mut()
            .find(|(id, _)| *id == shard)
            .expect("every shard of the batch is locked");
        guard
    }
}

impl Shard {
    fn find(&self, hash: u64, key: &str) -> Option<usize> {
        self.index
            .find(hash, |&i| &*self.slots[i as usize].key == key)
            .map(|&i| i as usize)
    }

    /// Removes slot `i`, moving the last slot into its place.
    fn remove(&mut self, i: usize) {
        let hash = self.slots[i].hash;
        if let Ok(entry) = self.index.find_entry(hash, |&j| j as usize == i) {
            entry.remove();
        }
        let last = self.slots.len() - 1;
        self.slots.swap_remove(i);
        if i != last {
            let moved = self.slots[i].hash;
            if let Some(j) = self.index.find_mut(moved, |&j| j as usize == last) {
                *j = i as u32;
            }
        }
    }

    /// Looks at up to `budget` slots from the cursor, dropping expired ones. Returns the
    /// looked-at live slot that expires first.
    fn sweep(&mut self, budget: usize, now: u64) -> Option<usize> {
        let mut soonest: Option<(u64, usize)> = None;
        for _ in 0..budget {
            if self.slots.is_empty() {
                return None;
            }
            if self.cursor >= self.slots.len() {
                self.cursor = 0;
            }
            let i = self.cursor;
            let expires_at = self.slots[i].expires_at;
            if expires_at <= now {
                // The last slot moves into `i`: look at `i` again next.
                self.remove(i);
                if let Some((e, j)) = soonest {
                    if j == self.slots.len() {
                        soonest = Some((e, i));
                    }
                }
            } else {
                if soonest.is_none_or(|(e, _)| expires_at < e) {
                    soonest = Some((expires_at, i));
                }
                self.cursor += 1;
            }
        }
        soonest.map(|(_, i)| i)
    }
}

impl Storage for MemoryStore {
    fn decide(
        &self,
        hits: &[Hit<'_>],
        now: Timestamp,
    ) -> impl Future<Output = Result<Decision, StorageError>> + Send {
        ready(Ok(self.decide_now(hits, now)))
    }

    fn refund(
        &self,
        hits: &[Hit<'_>],
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.refund_now(hits, now);
        ready(Ok(()))
    }

    fn peek(
        &self,
        hits: &[Hit<'_>],
        now: Timestamp,
    ) -> impl Future<Output = Result<Decision, StorageError>> + Send {
        ready(Ok(self.peek_now(hits, now)))
    }

    fn clear(&self, key: &str) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.clear_now(key);
        ready(Ok(()))
    }

    fn reset(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.reset_now();
        ready(Ok(()))
    }

    fn health_check(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        ready(Ok(()))
    }
}
