//! `memory://`: counters in this process, sharded and bounded.
//!
//! Keys are spread over shards; each shard is a short lock around a hash table whose slots
//! hold the key and its state inline. The limits of one client share a shard (their keys
//! agree up to the end of their `{client}` hash tag), so a request takes one lock; a batch
//! over several shards locks them in ascending order (never deadlocking) and holds them for
//! the whole batch, which makes it atomic.
//!
//! Memory is bounded by `max_keys`: expired state is swept a few buckets at a time as new keys
//! arrive, never by a stop-the-world pass, and a shard at its cap evicts the sampled key whose
//! state expires first (it holds the least information). See `storage::bounded`.
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

use std::cell::UnsafeCell;
use std::future::{Future, ready};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use smallvec::SmallVec;
use thin_vec::ThinVec;

use crate::clock::Timestamp;
use crate::error::StorageError;
use crate::keys::tag_span;
use crate::storage::bounded::{Bounded, Expires, hash_bytes, shard_count, unpredictable_hasher};
use crate::storage::{Decision, Hit, StatsList, Storage};
use crate::strategy::{Action, State};

/// Default cap on keys: about 100 MB of state with typical keys.
///
/// ```
/// use limiter_core::{storage::memory::DEFAULT_MAX_KEYS, MemoryStore};
/// assert_eq!(MemoryStore::default().max_keys(), DEFAULT_MAX_KEYS);
/// ```
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

/// How long expired state stays while the shard has room (a GCRA key under its rate expires
/// between two of its client's requests).
const SWEEP_GRACE_MICROS: u64 = 1_000_000;

/// The in-process store. Cheap to share behind an `Arc`; every method takes `&self`.
///
/// ```
/// use limiter_core::{Hit, MemoryStore, Rate, Strategy, Timestamp};
/// use std::sync::Arc;
///
/// let store = Arc::new(MemoryStore::new(10_000));
/// let hit = [Hit::new("k", Rate::parse("10 per minute").unwrap(), Strategy::MovingWindow)];
/// let now = Timestamp::from_secs(60);
/// // Four workers hammer one key: exactly ten requests get through between them.
/// let admitted: usize = std::thread::scope(|s| {
///     let workers: Vec<_> = (0..4)
///         .map(|_| s.spawn(|| (0..10).filter(|_| store.decide_now(&hit, now).admitted).count()))
///         .collect();
///     workers.into_iter().map(|w| w.join().unwrap()).sum()
/// });
/// assert_eq!(admitted, 10);
/// ```
pub struct MemoryStore {
    shards: Box<[SpinLock<Shard>]>,
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

/// One key's entry, stored inline in the hash table: a lookup touches the table's control
/// bytes, this slot and the key's bytes, nothing else. A thin key (its length lives with its
/// bytes) and a 24-byte state make 32 bytes: two slots per cache line, none straddling two.
#[repr(align(32))]
struct Slot {
    key: ThinVec<u8>,
    state: State,
}

type Shard = Bounded<Slot>;

impl Expires for Slot {
    fn expires_at(&self) -> u64 {
        self.state.expires_at()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(DEFAULT_MAX_KEYS)
    }
}

impl MemoryStore {
    /// A store holding at most `max_keys` counters (at least one).
    ///
    /// ```
    /// use limiter_core::MemoryStore;
    /// assert_eq!(MemoryStore::new(5_000).max_keys(), 5_000);
    /// assert_eq!(MemoryStore::new(0).max_keys(), 1);
    /// ```
    pub fn new(max_keys: usize) -> MemoryStore {
        let max_keys = max_keys.max(1);
        // Small caps get few shards, so that each shard's share of the cap stays useful.
        let shard_count = shard_count(max_keys);
        MemoryStore {
            shards: (0..shard_count).map(|_| SpinLock::default()).collect(),
            shard_mask: shard_count as u64 - 1,
            per_shard_cap: max_keys / shard_count,
            hasher: unpredictable_hasher(),
            evictions: AtomicU64::new(0),
        }
    }

    /// The cap on keys this store keeps (rounded down to a multiple of its shard count).
    ///
    /// ```
    /// use limiter_core::MemoryStore;
    /// // 3 001 keys make two shards of 1 500.
    /// assert_eq!(MemoryStore::new(3_001).max_keys(), 3_000);
    /// ```
    pub fn max_keys(&self) -> usize {
        self.per_shard_cap * self.shards.len()
    }

    /// Keys held now, expired ones not yet reclaimed included.
    ///
    /// ```
    /// use limiter_core::{Hit, MemoryStore, Rate, Strategy, Timestamp};
    /// let store = MemoryStore::default();
    /// let hit = [Hit::new("k", Rate::parse("1 per second").unwrap(), Strategy::FixedWindow)];
    /// store.decide_now(&hit, Timestamp::from_secs(1));
    /// assert_eq!(store.len(), 1);
    /// // Long expired, it is still held until a later insertion sweeps it.
    /// store.peek_now(&hit, Timestamp::from_secs(3_600));
    /// assert_eq!(store.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().table.len()).sum()
    }

    /// Whether the store holds no key.
    ///
    /// ```
    /// use limiter_core::{Hit, MemoryStore, Rate, Strategy, Timestamp};
    /// let store = MemoryStore::default();
    /// let hit = [Hit::new("k", Rate::parse("1 per second").unwrap(), Strategy::FixedWindow)];
    /// store.peek_now(&hit, Timestamp::from_secs(1)); // a peek stores nothing
    /// assert!(store.is_empty());
    /// store.decide_now(&hit, Timestamp::from_secs(1));
    /// assert!(!store.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys evicted before their state expired because the store was full.
    ///
    /// ```
    /// use limiter_core::{Hit, MemoryStore, Rate, Strategy, Timestamp};
    /// let store = MemoryStore::new(2);
    /// let rate = Rate::parse("1 per day").unwrap();
    /// for key in ["a", "b", "c"] {
    ///     store.decide_now(&[Hit::new(key, rate, Strategy::FixedWindow)], Timestamp::from_secs(0));
    /// }
    /// // The third key pushed out a live one: that client's count starts over.
    /// assert_eq!((store.len(), store.evictions()), (2, 1));
    /// ```
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// [`Storage::decide`] without the future: the memory store never waits.
    ///
    /// ```
    /// use limiter_core::{Hit, ManualClock, MemoryStore, Rate, Strategy, Timestamp};
    /// use std::time::Duration;
    ///
    /// let store = MemoryStore::default();
    /// let clock = ManualClock::new(Timestamp::from_secs(10));
    /// let hit = [Hit::new("k", Rate::parse("2 per second").unwrap(), Strategy::Gcra)];
    /// assert!(store.decide_now(&hit, clock.now()).admitted);
    /// assert!(store.decide_now(&hit, clock.now()).admitted); // a burst of two
    /// let third = store.decide_now(&hit, clock.now());
    /// assert_eq!(third.retry_after, Some(Duration::from_millis(500))); // then one every 500 ms
    /// clock.advance(Duration::from_millis(500));
    /// assert!(store.decide_now(&hit, clock.now()).admitted);
    /// ```
    // Inlined, so that the decision is built where the caller keeps it: returned from a
    // call, its 192 bytes would be copied once more (a tenth of a decision's time).
    #[inline(always)]
    pub fn decide_now(&self, hits: &[Hit<'_>], now: Timestamp) -> Decision {
        let mut decision = Decision::unlimited();
        self.decide_into(hits, now, &mut decision);
        decision
    }

    /// [`MemoryStore::decide_now`], written into `decision` (whatever it held is replaced).
    ///
    /// For a caller that keeps the decision in a place of its own: a [`Decision`] is 192 bytes
    /// on x86-64, and returned then moved, it is read back right after being written, in wider
    /// loads than it was written with (a store-forwarding stall on the CPUs measured).
    ///
    /// ```
    /// use limiter_core::{Clock, Decision, Hit, MemoryStore, Rate, Strategy};
    ///
    /// let store = MemoryStore::new(1_000);
    /// let hit = [Hit::new("client", Rate::parse("1 per minute").unwrap(), Strategy::FixedWindow)];
    /// let now = Clock::system().now();
    /// let mut decision = Decision::unlimited();
    /// store.decide_into(&hit, now, &mut decision);
    /// assert!(decision.admitted);
    /// store.decide_into(&hit, now, &mut decision);
    /// assert!(!decision.admitted);
    /// // The first decision's stats were replaced, not added to.
    /// assert_eq!(decision.stats.len(), 1);
    /// ```
    #[inline]
    pub fn decide_into(&self, hits: &[Hit<'_>], now: Timestamp, decision: &mut Decision) {
        decision.clear();
        match hits {
            [hit] => self.decide_one(hit, now, decision),
            _ => self.decide_batch(hits, now, decision),
        }
    }

    /// The hot path: one key, one lock, one lookup.
    #[inline]
    fn decide_one(&self, hit: &Hit<'_>, now: Timestamp, decision: &mut Decision) {
        let (hash, shard) = self.place(hit.key.as_bytes());
        let mut shard = self.shards[shard].lock();
        let admitted = self.apply(
            &mut shard,
            hash,
            hit,
            now,
            Action::Hit,
            true,
            &mut decision.stats,
        );
        drop(shard);
        if !admitted {
            decision.conclude();
        }
    }

    /// Several limits, all or nothing (out of line: `decide_now` stays small to inline).
    #[inline(never)]
    fn decide_batch(&self, hits: &[Hit<'_>], now: Timestamp, decision: &mut Decision) {
        // The usual batch, one client's limits, shares a shard: one lock, the shared head
        // hashed once, and the rest of each key when it is reached. Otherwise every key is
        // placed first and its shards locked.
        match self.common_head(hits) {
            Some(head) => {
                let mut held = OneShard {
                    store: self,
                    hits,
                    head,
                    shard: self.shards[self.shard_of(head.hash)].lock(),
                };
                self.charge_all(&mut held, hits, now, decision);
            }
            None => {
                let mut held = ManyShards {
                    places: SmallVec::new(),
                    guards: Guards(SmallVec::new()),
                };
                self.place_all(hits, &mut held.places);
                self.lock_all(&held.places, &mut held.guards);
                self.charge_all(&mut held, hits, now, decision);
            }
        }
    }

    /// The batch decision, with the shards of `hits` locked in `held`.
    #[inline(always)]
    fn charge_all(
        &self,
        held: &mut impl Held,
        hits: &[Hit<'_>],
        now: Timestamp,
        decision: &mut Decision,
    ) {
        let stats = &mut decision.stats;
        // Charge optimistically, one lookup per limit, remembering how to undo each charge;
        // a denial rolls the earlier ones back. Same outcome as peeking every limit first.
        // The denial itself changes nothing yet (`Charge`): an elastic limit records it after
        // the rollback, which could otherwise undo the record when the key is named twice.
        let mut undo: SmallVec<[Option<State>; 4]> = SmallVec::new();
        // The snapshot is written where it is kept, never through a local: assembled field by
        // field and reloaded whole, it stalls on store forwarding. The verdict's admission is
        // read before the verdict is pushed: read back from the list, it waited on the push's
        // update of the list's length (a tenth of `decide_batch`'s samples on a Zen 3).
        let mut denied = hits.len();
        for (j, hit) in hits.iter().enumerate() {
            let (hash, shard) = held.shard(j);
            let slot = self.find_or_insert(shard, hash, hit.key, now, hits);
            // The last charge is never undone: admitted, so is the batch; denied, it changed
            // nothing.
            let undoable = j + 1 < hits.len();
            if undoable {
                undo.push(slot.state.snapshot(hit.strategy));
            }
            let verdict = slot
                .state
                .decide(hit.strategy, &hit.rate, now, hit.cost, Action::Charge);
            let admitted = verdict.admitted;
            stats.push(verdict);
            if !admitted {
                if undoable {
                    undo.pop();
                }
                denied = j;
                break;
            }
        }
        if denied == hits.len() {
            // Admitted: the decision is still as `decide_now` made it, admitted and with
            // nothing to retry (an admitting limit names no retry time).
            return;
        }
        // Newest charge first: a key named twice in the batch must end at its state before
        // the batch, not at the snapshot taken between its two charges. The keys are looked
        // up again (an insertion may have moved them): denials are the rare case.
        for (j, before) in undo.into_iter().enumerate().rev() {
            let hit = &hits[j];
            let (hash, shard) = held.shard(j);
            let slot = self.find_or_insert(shard, hash, hit.key, now, hits);
            match before {
                Some(state) => slot.state = state,
                None => slot.state.undo_logged(hit.cost),
            }
        }
        for (j, hit) in hits.iter().enumerate().take(denied) {
            let (hash, shard) = held.shard(j);
            let slot = self.find_or_insert(shard, hash, hit.key, now, hits);
            stats[j] = slot
                .state
                .decide(hit.strategy, &hit.rate, now, hit.cost, Action::Peek);
        }
        // The denying limit and those after it are not charged; the elastic ones that deny
        // record it. A key named earlier in the batch may have denied the first: undone, that
        // charge leaves it passing, and its verdict stays the denial the batch was given.
        for (j, hit) in hits.iter().enumerate().skip(denied) {
            let (hash, shard) = held.shard(j);
            let slot = self.find_or_insert(shard, hash, hit.key, now, hits);
            let mut verdict =
                slot.state
                    .decide(hit.strategy, &hit.rate, now, hit.cost, Action::Peek);
            if !verdict.admitted && hit.strategy.is_elastic() {
                verdict = slot
                    .state
                    .decide(hit.strategy, &hit.rate, now, hit.cost, Action::Hit);
            }
            if j > denied {
                stats.push(verdict);
            } else if !verdict.admitted {
                stats[j] = verdict;
            }
        }
        decision.conclude();
    }

    /// [`Storage::refund`] without the future.
    ///
    /// ```
    /// use limiter_core::{Hit, MemoryStore, Rate, Strategy, Timestamp};
    /// let store = MemoryStore::default();
    /// let hit = [Hit::new("k", Rate::parse("2 per minute").unwrap(), Strategy::FixedWindow)];
    /// let now = Timestamp::from_secs(60);
    /// store.decide_now(&hit, now);
    /// store.refund_now(&hit, now); // with the time the charge was made
    /// assert_eq!(store.decide_now(&hit, now).stats[0].remaining, 1);
    /// ```
    pub fn refund_now(&self, hits: &[Hit<'_>], now: Timestamp) {
        let mut places: SmallVec<[(u64, usize); 4]> = SmallVec::new();
        self.place_all(hits, &mut places);
        let mut guards = Guards(SmallVec::new());
        self.lock_all(&places, &mut guards);
        for (hit, &(hash, shard)) in hits.iter().zip(&places) {
            let shard = guards.get(shard);
            if let Some(slot) = shard.find(hash, hit.key) {
                slot.state.refund(hit.strategy, &hit.rate, now, hit.cost);
            }
        }
    }

    /// [`Storage::peek`] without the future.
    ///
    /// ```
    /// use limiter_core::{Hit, MemoryStore, Rate, Strategy, Timestamp};
    /// let store = MemoryStore::default();
    /// let hit = [Hit::new("k", Rate::parse("1 per minute").unwrap(), Strategy::FixedWindow)];
    /// let now = Timestamp::from_secs(60);
    /// assert!(store.peek_now(&hit, now).admitted);
    /// assert!(store.peek_now(&hit, now).admitted); // peeking charges nothing
    /// store.decide_now(&hit, now);
    /// assert!(!store.peek_now(&hit, now).admitted);
    /// ```
    pub fn peek_now(&self, hits: &[Hit<'_>], now: Timestamp) -> Decision {
        let mut places: SmallVec<[(u64, usize); 4]> = SmallVec::new();
        self.place_all(hits, &mut places);
        let mut guards = Guards(SmallVec::new());
        self.lock_all(&places, &mut guards);
        let mut stats = StatsList::new();
        for (hit, &(hash, shard)) in hits.iter().zip(&places) {
            let shard = guards.get(shard);
            self.apply(shard, hash, hit, now, Action::Peek, false, &mut stats);
        }
        Decision::from_stats(stats)
    }

    /// [`Storage::clear`] without the future.
    ///
    /// ```
    /// use limiter_core::{Hit, MemoryStore, Rate, Strategy, Timestamp};
    /// let store = MemoryStore::default();
    /// let hit = [Hit::new("k", Rate::parse("1 per hour").unwrap(), Strategy::FixedWindow)];
    /// let now = Timestamp::from_secs(3_600);
    /// store.decide_now(&hit, now);
    /// store.clear_now("k");
    /// assert!(store.is_empty());
    /// assert!(store.decide_now(&hit, now).admitted);
    /// ```
    pub fn clear_now(&self, key: &str) {
        let (hash, shard) = self.place(key.as_bytes());
        let mut shard = self.shards[shard].lock();
        if let Ok(entry) = shard
            .table
            .find_entry(hash, |slot| slot.key.as_slice() == key.as_bytes())
        {
            entry.remove();
        }
    }

    /// [`Storage::reset`] without the future.
    ///
    /// ```
    /// use limiter_core::{Hit, MemoryStore, Rate, Strategy, Timestamp};
    /// let store = MemoryStore::default();
    /// let rate = Rate::parse("1 per hour").unwrap();
    /// for key in ["a", "b"] {
    ///     store.decide_now(&[Hit::new(key, rate, Strategy::FixedWindow)], Timestamp::from_secs(0));
    /// }
    /// store.reset_now();
    /// assert_eq!(store.len(), 0);
    /// ```
    pub fn reset_now(&self) {
        for shard in self.shards.iter() {
            *shard.lock() = Shard::default();
        }
    }

    #[inline]
    fn hash_key(&self, key: &[u8]) -> u64 {
        hash_bytes(&self.hasher, key)
    }

    /// The table hash of a tagged key whose head (see [`MemoryStore::place`]) hashes to
    /// `head`: the rest of the key, hashed from there.
    #[inline]
    fn hash_tail(&self, head: u64, tail: &[u8]) -> u64 {
        hash_bytes(&foldhash::fast::FixedState::with_seed(head), tail)
    }

    /// A key's table hash and shard. A key with a `{client}` hash tag (see [`crate::keys`])
    /// is placed by its head, the bytes up to the end of its tag (`LIMITER{10.0.0.1`): every
    /// limit of one client shares the head, so they share a shard and a request takes one
    /// lock, however many limits apply. The table hash goes on from the head's over the rest,
    /// so a batch of one client's limits hashes the head once.
    #[inline]
    fn place(&self, key: &[u8]) -> (u64, usize) {
        match tag_span(key) {
            Some(tag) => {
                let (head, tail) = key.split_at(tag.end);
                let head = self.hash_key(head);
                (self.hash_tail(head, tail), self.shard_of(head))
            }
            None => {
                let hash = self.hash_key(key);
                (hash, self.shard_of(hash))
            }
        }
    }

    #[inline]
    fn shard_of(&self, placement: u64) -> usize {
        ((placement >> 48) & self.shard_mask) as usize
    }

    /// [`MemoryStore::place`] for every key of a batch whose keys do not share one head
    /// (see [`MemoryStore::common_head`] for those that do).
    /// Out-parameters: moving a `SmallVec` out of a call costs more than filling it.
    #[inline]
    fn place_all(&self, hits: &[Hit<'_>], places: &mut SmallVec<[(u64, usize); 4]>) {
        places.extend(hits.iter().map(|hit| self.place(hit.key.as_bytes())));
    }

    /// The head every key of `hits` shares, if they share one (see [`MemoryStore::place`]):
    /// each key starts like the first up to the end of its `{tag}`.
    #[inline]
    fn common_head(&self, hits: &[Hit<'_>]) -> Option<CommonHead> {
        let first = hits.first()?.key.as_bytes();
        let tag = tag_span(first)?;
        // With its closing brace: a longer tag in another key must not pass for this one.
        let braced = &first[..=tag.end];
        hits[1..]
            .iter()
            .all(|hit| {
                let key = hit.key.as_bytes();
                key.get(..braced.len())
                    .is_some_and(|head| same_bytes(head, braced))
            })
            .then(|| CommonHead {
                hash: self.hash_key(&first[..tag.end]),
                len: tag.end,
            })
    }

    /// Locks the distinct shards of `places` in ascending order.
    #[inline]
    fn lock_all<'a>(&'a self, places: &[(u64, usize)], guards: &mut Guards<'a>) {
        // The usual batch: the limits of one client, sharing its shard.
        if let [(_, first), rest @ ..] = places {
            if rest.iter().all(|(_, shard)| shard == first) {
                guards.0.push((*first, self.shards[*first].lock()));
                return;
            }
        }
        let mut ids: SmallVec<[usize; 4]> = SmallVec::new();
        for &(_, shard) in places {
            if !ids.contains(&shard) {
                ids.push(shard);
            }
        }
        ids.sort_unstable();
        for id in ids {
            guards.0.push((id, self.shards[id].lock()));
        }
    }

    /// Applies `action` to `hit`'s state, appends its stats to `out` and tells whether they
    /// admit; `create` inserts a missing key (a peek does not).
    // The stats are pushed here rather than returned: returned through memory, their reload
    // in the caller stalls on store forwarding. The admission is read before the push, as in
    // `charge_all`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn apply(
        &self,
        shard: &mut Shard,
        hash: u64,
        hit: &Hit<'_>,
        now: Timestamp,
        action: Action,
        create: bool,
        out: &mut StatsList,
    ) -> bool {
        let state = match shard.find(hash, hit.key) {
            Some(slot) => &mut slot.state,
            None if create => &mut self.insert(shard, hash, hit.key, now, &[]).state,
            // A peek of a missing key: decided on an empty state that nothing keeps.
            None => &mut State::Empty,
        };
        let verdict = state.decide(hit.strategy, &hit.rate, now, hit.cost, action);
        let admitted = verdict.admitted;
        out.push(verdict);
        admitted
    }

    /// The slot of `key`, inserted if missing, without evicting any key of `batch`.
    fn find_or_insert<'s>(
        &self,
        shard: &'s mut Shard,
        hash: u64,
        key: &str,
        now: Timestamp,
        batch: &[Hit<'_>],
    ) -> &'s mut Slot {
        // Found by index, then borrowed: returning the found slot from a `match` on
        // `find_mut` would keep the shard borrowed for the insertion.
        match shard.find_bucket(hash, key) {
            Some(bucket) => shard
                .table
                .get_bucket_mut(bucket)
                .expect("a found bucket is full"),
            None => self.insert(shard, hash, key, now, batch),
        }
    }

    /// Inserts `key`, making room first. A full shard evicts a live key, never one of
    /// `batch`: the request being decided may have charged it a moment ago.
    fn insert<'s>(
        &self,
        shard: &'s mut Shard,
        hash: u64,
        key: &str,
        now: Timestamp,
        batch: &[Hit<'_>],
    ) -> &'s mut Slot {
        let in_batch = |slot: &Slot| batch.iter().any(|hit| *slot.key == *hit.key.as_bytes());
        let dropped = shard.make_room(
            self.per_shard_cap,
            now.as_micros(),
            SWEEP_GRACE_MICROS,
            in_batch,
        );
        if dropped.evicted > 0 {
            self.evictions
                .fetch_add(dropped.evicted as u64, Ordering::Relaxed);
            tracing::debug!("memory store full: evicted a live key");
        }
        let slot = Slot {
            key: ThinVec::from(key.as_bytes()),
            state: State::Empty,
        };
        shard
            .table
            .insert_unique(hash, slot, |s| self.place(&s.key).0)
            .into_mut()
    }
}

/// `a == b`, without a call for a key's usual head: 8 to 32 bytes, where calling `memcmp`
/// costs about twice the comparison.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    if !(8..=32).contains(&len) {
        return a == b;
    }
    let differ = |at: usize| {
        let word = |s: &[u8]| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
        word(a) ^ word(b)
    };
    // The words overlap where the length is not a multiple of eight.
    if len <= 16 {
        differ(0) | differ(len - 8) == 0
    } else {
        differ(0) | differ(8) | differ(len - 16) | differ(len - 8) == 0
    }
}

struct Guards<'a>(SmallVec<[(usize, SpinGuard<'a, Shard>); 4]>);

/// The locked shards of a batch: where the `j`-th hit's key lives, and its table hash.
trait Held {
    fn shard(&mut self, j: usize) -> (u64, &mut Shard);
}

/// The head that every key of a batch shares (see [`MemoryStore::common_head`]).
#[derive(Clone, Copy)]
struct CommonHead {
    hash: u64,
    len: usize,
}

/// A batch whose keys share one head, so one shard (one client's limits): each key's hash
/// goes on from the head's when the key is reached.
struct OneShard<'s, 'h> {
    store: &'s MemoryStore,
    hits: &'h [Hit<'h>],
    head: CommonHead,
    shard: SpinGuard<'s, Shard>,
}

impl Held for OneShard<'_, '_> {
    #[inline(always)]
    fn shard(&mut self, j: usize) -> (u64, &mut Shard) {
        let tail = &self.hits[j].key.as_bytes()[self.head.len..];
        (self.store.hash_tail(self.head.hash, tail), &mut self.shard)
    }
}

/// Any other batch: every key placed, and its shards locked in ascending order.
struct ManyShards<'s> {
    places: SmallVec<[(u64, usize); 4]>,
    guards: Guards<'s>,
}

impl Held for ManyShards<'_> {
    #[inline(always)]
    fn shard(&mut self, j: usize) -> (u64, &mut Shard) {
        let (hash, shard) = self.places[j];
        (hash, self.guards.get(shard))
    }
}

impl Guards<'_> {
    #[inline]
    fn get(&mut self, shard: usize) -> &mut Shard {
        let (_, guard) = match self.0.as_mut_slice() {
            // The usual batch: one client's limits, one shard.
            [only] => only,
            all => all
                .iter_mut()
                .find(|(id, _)| *id == shard)
                .expect("every shard of the batch is locked"),
        };
        guard
    }
}

impl Shard {
    fn find(&mut self, hash: u64, key: &str) -> Option<&mut Slot> {
        self.table
            .find_mut(hash, |slot| slot.key.as_slice() == key.as_bytes())
    }

    fn find_bucket(&self, hash: u64, key: &str) -> Option<usize> {
        self.table
            .find_bucket_index(hash, |slot| slot.key.as_slice() == key.as_bytes())
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

/// A lock for critical sections of a few dozen nanoseconds: one atomic swap to take it, a plain
/// release store to give it back (a parking mutex pays a second atomic read-modify-write).
/// A waiter spins briefly, then yields its time slice, so a preempted holder is not starved.
#[derive(Default)]
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through a guard, and one guard exists at a time.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        let mut spins = 0u32;
        while self.locked.swap(true, Ordering::Acquire) {
            while self.locked.load(Ordering::Relaxed) {
                if spins < 64 {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
        SpinGuard {
            lock: self,
            _value: PhantomData,
        }
    }
}

pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    /// The guard hands out `&T` and `&mut T`: it is `Sync` only where `&mut T` is, so a
    /// shared guard never gives several threads a `&Cell` (the lock alone asks only `Send`).
    _value: PhantomData<&'a mut T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard holds the lock, and `&mut self` makes the borrow unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::same_bytes;
    use proptest::prelude::{prop, prop_assert_eq, proptest};

    proptest! {
        #[test]
        fn same_bytes_is_slice_equality(
            a in prop::collection::vec(prop::sample::select(&b"ab\x00\xff"[..]), 0..40),
            flip in prop::option::of(0usize..40),
            other_len in prop::option::of(0usize..40),
        ) {
            // Mostly equal lengths (the case the words compare), one byte changed or none.
            let mut b = a.clone();
            if let Some(at) = flip.filter(|&at| at < b.len()) {
                b[at] ^= 0x01;
            }
            if let Some(len) = other_len {
                b.resize(len, b'a');
            }
            prop_assert_eq!(same_bytes(&a, &b), a == b);
        }
    }
}
