//! Where counters live, and the one operation that matters: an all-or-nothing decision over
//! every limit that applies to a request.

use std::future::Future;
use std::time::Duration;

use smallvec::SmallVec;

use crate::clock::Timestamp;
use crate::error::StorageError;
use crate::rate::Rate;
use crate::strategy::{LimitStats, Strategy};

mod bounded;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

/// One limit to apply to a request: the counter's key, its rate and strategy, and what the
/// request costs.
///
/// ```
/// use limiter_core::{keys::counter_key, Hit, Rate, Strategy};
/// let rate = Rate::parse("100 per hour").unwrap();
/// let key = counter_key("LIMITER", "10.0.0.1", "/api", &rate);
/// let hit = Hit::new(&key, rate, Strategy::SlidingWindowCounter);
/// assert_eq!(hit.key, "LIMITER{10.0.0.1}:/api:100/1hour");
/// assert_eq!(hit.cost, 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit<'a> {
    /// The counter's full key (see the README's key layout). Keys within one batch should be
    /// distinct: two entries with one key are two charges on one counter.
    pub key: &'a str,
    /// The rate to enforce.
    pub rate: Rate,
    /// How hits are counted.
    pub strategy: Strategy,
    /// Units this request takes (1 for a plain hit).
    pub cost: u64,
}

impl<'a> Hit<'a> {
    /// A hit of cost 1.
    ///
    /// ```
    /// use limiter_core::{Hit, Rate, Strategy};
    /// let hit = Hit::new("k", Rate::parse("5/second").unwrap(), Strategy::Gcra);
    /// assert_eq!((hit.key, hit.cost, hit.strategy), ("k", 1, Strategy::Gcra));
    /// ```
    pub fn new(key: &'a str, rate: Rate, strategy: Strategy) -> Self {
        Hit {
            key,
            rate,
            strategy,
            cost: 1,
        }
    }

    /// The same hit with another cost.
    ///
    /// ```
    /// use limiter_core::{Hit, MemoryStore, Rate, Strategy, Timestamp};
    /// let store = MemoryStore::default();
    /// let upload = Hit::new("k", Rate::parse("5 per minute").unwrap(), Strategy::FixedWindow).with_cost(3);
    /// let now = Timestamp::from_secs(60);
    /// assert_eq!(store.decide_now(&[upload], now).stats[0].remaining, 2);
    /// // Three more do not fit in the two left, and a denied request takes nothing.
    /// assert!(!store.decide_now(&[upload], now).admitted);
    /// assert!(store.decide_now(&[upload.with_cost(2)], now).admitted);
    /// ```
    pub fn with_cost(self, cost: u64) -> Self {
        Hit { cost, ..self }
    }
}

/// Per-limit stats, inline for up to three limits (no allocation on the common path).
///
/// ```
/// use limiter_core::{Decision, LimitStats, StatsList, Timestamp};
/// let mut stats = StatsList::new();
/// stats.push(LimitStats { admitted: true, limit: 5, remaining: 4, reset: Timestamp::from_secs(60), retry_after: None });
/// assert!(Decision::from_stats(stats).admitted);
/// ```
pub type StatsList = SmallVec<[LimitStats; 3]>;

/// The outcome of deciding a batch of limits for one request.
///
/// ```
/// use limiter_core::{parse_rates, Hit, MemoryStore, Strategy, Timestamp};
/// use std::time::Duration;
///
/// let store = MemoryStore::default();
/// let [per_second, per_minute] = parse_rates("1/second, 1/minute").unwrap()[..] else { panic!() };
/// let hits = [
///     Hit::new("{c}:1s", per_second, Strategy::FixedWindow),
///     Hit::new("{c}:1m", per_minute, Strategy::FixedWindow),
/// ];
/// let now = Timestamp::from_secs(60);
/// assert!(store.decide_now(&hits, now).admitted);
/// let denied = store.decide_now(&hits, now);
/// // Both limits deny; the first is named, and the retry waits for the later of the two.
/// assert_eq!(denied.breached, Some(0));
/// assert_eq!(denied.retry_after, Some(Duration::from_secs(60)));
/// assert!(!denied.stats[1].admitted);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// True when every limit admitted the request (and each was charged).
    pub admitted: bool,
    /// Each limit's stats, in the batch's order.
    pub stats: StatsList,
    /// The first limit in the batch that denied the request.
    pub breached: Option<usize>,
    /// For a denial: the time until every breached limit would admit the same request.
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// An admitted decision with no limits (nothing applied).
    ///
    /// ```
    /// use limiter_core::{Decision, StatsList};
    /// let decision = Decision::unlimited();
    /// assert!(decision.admitted && decision.stats.is_empty() && decision.retry_after.is_none());
    /// assert_eq!(decision, Decision::from_stats(StatsList::new()));
    /// ```
    #[inline]
    pub fn unlimited() -> Decision {
        Decision {
            admitted: true,
            stats: StatsList::new(),
            breached: None,
            retry_after: None,
        }
    }

    /// Builds the decision from per-limit stats.
    ///
    /// ```
    /// use limiter_core::{Decision, LimitStats, StatsList, Timestamp};
    /// use std::time::Duration;
    /// let stats = |admitted, retry: Option<u64>| LimitStats {
    ///     admitted,
    ///     limit: 1,
    ///     remaining: 0,
    ///     reset: Timestamp::from_secs(60),
    ///     retry_after: retry.map(Duration::from_secs),
    /// };
    /// let decision = Decision::from_stats(StatsList::from_iter([stats(true, None), stats(false, Some(20))]));
    /// assert!(!decision.admitted);
    /// assert_eq!((decision.breached, decision.retry_after), (Some(1), Some(Duration::from_secs(20))));
    /// ```
    #[inline]
    pub fn from_stats(stats: StatsList) -> Decision {
        let mut decision = Decision {
            stats,
            ..Decision::unlimited()
        };
        decision.conclude();
        decision
    }

    /// Makes this decision [`Decision::unlimited`] again, in place, keeping its storage.
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.admitted = true;
        self.stats.clear();
        self.breached = None;
        self.retry_after = None;
    }

    /// Sets `admitted`, `breached` and `retry_after` from `stats`, in place (moving a
    /// decision costs as much as making one).
    ///
    /// ```
    /// use limiter_core::{Decision, LimitStats, Timestamp};
    /// use std::time::Duration;
    /// let mut decision = Decision::unlimited();
    /// decision.stats.push(LimitStats {
    ///     admitted: false,
    ///     limit: 10,
    ///     remaining: 0,
    ///     reset: Timestamp::from_secs(3_600),
    ///     retry_after: Some(Duration::from_secs(5)),
    /// });
    /// decision.conclude();
    /// assert_eq!((decision.admitted, decision.breached), (false, Some(0)));
    /// assert_eq!(decision.retry_after, Some(Duration::from_secs(5)));
    /// ```
    #[inline]
    pub fn conclude(&mut self) {
        self.breached = self.stats.iter().position(|s| !s.admitted);
        self.admitted = self.breached.is_none();
        self.retry_after = self.stats.iter().filter_map(|s| s.retry_after).max();
    }
}

/// A counter store.
///
/// Every method takes "now" from the caller's clock, so back-ends never read a clock of their
/// own. Implementations must make [`Storage::decide`] atomic: no other decision on the same
/// keys interleaves with it.
///
/// ```
/// use limiter_core::{Hit, MemoryStore, Rate, Storage, StorageError, Strategy, Timestamp};
///
/// // Written against the trait, it runs on the memory store and on Redis alike.
/// async fn may_log_in(store: &impl Storage, user: &str, now: Timestamp) -> Result<bool, StorageError> {
///     let key = format!("LIMITER{{{user}}}:login");
///     let hit = Hit::new(&key, Rate::parse("3 per hour").unwrap(), Strategy::MovingWindow);
///     Ok(store.decide(&[hit], now).await?.admitted)
/// }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::default();
/// let now = Timestamp::from_secs(3_600);
/// for _ in 0..3 {
///     assert!(may_log_in(&store, "alice", now).await.unwrap());
/// }
/// assert!(!may_log_in(&store, "alice", now).await.unwrap());
/// assert!(may_log_in(&store, "bob", now).await.unwrap());
/// # });
/// ```
pub trait Storage: Send + Sync {
    /// Decides a batch all-or-nothing: the request is admitted only if every limit admits it,
    /// and only then is each charged its cost. A denied request charges nothing, except that
    /// elastic limits which themselves denied it record the hit.
    ///
    /// ```
    /// use limiter_core::{Hit, MemoryStore, Rate, Storage, Strategy, Timestamp};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryStore::default();
    /// let burst = Hit::new("{c}:burst", Rate::parse("1 per second").unwrap(), Strategy::FixedWindow);
    /// let hourly = Hit::new("{c}:hourly", Rate::parse("100 per hour").unwrap(), Strategy::FixedWindow);
    /// let now = Timestamp::from_secs(3_600);
    /// assert!(store.decide(&[burst, hourly], now).await.unwrap().admitted);
    /// let denied = store.decide(&[burst, hourly], now).await.unwrap();
    /// assert_eq!(denied.breached, Some(0));
    /// // All or nothing: the denied request took nothing from the hourly limit.
    /// assert_eq!(denied.stats[1].remaining, 99);
    /// # });
    /// ```
    fn decide(
        &self,
        hits: &[Hit<'_>],
        now: Timestamp,
    ) -> impl Future<Output = Result<Decision, StorageError>> + Send;

    /// Gives back what an earlier admitted [`Storage::decide`] of the same hits charged.
    ///
    /// Pass the `now` that decision was made with: the fixed windows and the sliding window
    /// counter find the window or bucket the charge went to by it (a sliding window's previous
    /// bucket still weighs). Given a later time, a charge whose window has ended since is not
    /// given back.
    ///
    /// ```
    /// use limiter_core::{Hit, MemoryStore, Rate, Storage, Strategy, Timestamp};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryStore::default();
    /// let hit = [Hit::new("k", Rate::parse("1 per minute").unwrap(), Strategy::SlidingWindowCounter)];
    /// let now = Timestamp::from_secs(60);
    /// assert!(store.decide(&hit, now).await.unwrap().admitted);
    /// // The request failed for reasons of its own: it should not count.
    /// store.refund(&hit, now).await.unwrap();
    /// assert!(store.decide(&hit, now).await.unwrap().admitted);
    /// # });
    /// ```
    fn refund(
        &self,
        hits: &[Hit<'_>],
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Gives back `refunds`, charged by an admitted decision moments ago (in the same windows
    /// as `now`), then decides `hits`, as [`Storage::refund`] then [`Storage::decide`]
    /// would. A store that can does both in one operation: Redis in one script call, where
    /// the two would be two round trips.
    ///
    /// ```
    /// use limiter_core::{Hit, MemoryStore, Rate, Storage, Strategy, Timestamp};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryStore::default();
    /// let rate = Rate::parse("1 per minute").unwrap();
    /// let now = Timestamp::from_secs(60);
    /// let before_routing = [Hit::new("LIMITER/client/default", rate, Strategy::FixedWindow)];
    /// assert!(store.decide(&before_routing, now).await.unwrap().admitted);
    /// // The route turned out to have a limit of its own: trade the charge for it.
    /// let route = [Hit::new("LIMITER/client/route", rate, Strategy::FixedWindow)];
    /// assert!(store.refund_and_decide(&before_routing, &route, now).await.unwrap().admitted);
    /// assert!(store.decide(&before_routing, now).await.unwrap().admitted);
    /// # });
    /// ```
    fn refund_and_decide(
        &self,
        refunds: &[Hit<'_>],
        hits: &[Hit<'_>],
        now: Timestamp,
    ) -> impl Future<Output = Result<Decision, StorageError>> + Send {
        async move {
            self.refund(refunds, now).await?;
            self.decide(hits, now).await
        }
    }

    /// Whether [`Storage::decide`] would admit `hits` now, without charging anything. The
    /// stats are the counters as they stand: `remaining` is what is left before this request,
    /// where an admitting `decide` reports what is left after it.
    ///
    /// ```
    /// use limiter_core::{Hit, MemoryStore, Rate, Storage, Strategy, Timestamp};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryStore::default();
    /// let hit = [Hit::new("k", Rate::parse("5 per minute").unwrap(), Strategy::FixedWindow)];
    /// let now = Timestamp::from_secs(60);
    /// store.decide(&hit, now).await.unwrap();
    /// let peeked = store.peek(&hit, now).await.unwrap();
    /// assert!(peeked.admitted);
    /// // What is left now, the peeked request not taken from it.
    /// assert_eq!(peeked.stats[0].remaining, 4);
    /// assert_eq!(store.peek(&hit, now).await.unwrap(), peeked);
    /// # });
    /// ```
    fn peek(
        &self,
        hits: &[Hit<'_>],
        now: Timestamp,
    ) -> impl Future<Output = Result<Decision, StorageError>> + Send;

    /// Forgets one counter.
    ///
    /// ```
    /// use limiter_core::{Hit, MemoryStore, Rate, Storage, Strategy, Timestamp};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryStore::default();
    /// let hit = [Hit::new("k", Rate::parse("1 per day").unwrap(), Strategy::FixedWindow)];
    /// let now = Timestamp::from_secs(86_400);
    /// store.decide(&hit, now).await.unwrap();
    /// assert!(!store.decide(&hit, now).await.unwrap().admitted);
    /// // An administrator lifts this client's block.
    /// store.clear("k").await.unwrap();
    /// assert!(store.decide(&hit, now).await.unwrap().admitted);
    /// # });
    /// ```
    fn clear(&self, key: &str) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Forgets every counter of this limiter.
    ///
    /// ```
    /// use limiter_core::{Hit, MemoryStore, Rate, Storage, Strategy, Timestamp};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryStore::default();
    /// let rate = Rate::parse("1 per day").unwrap();
    /// let now = Timestamp::from_secs(86_400);
    /// for key in ["a", "b"] {
    ///     store.decide(&[Hit::new(key, rate, Strategy::FixedWindow)], now).await.unwrap();
    /// }
    /// store.reset().await.unwrap();
    /// assert!(store.is_empty());
    /// # });
    /// ```
    fn reset(&self) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Whether the store answers.
    ///
    /// ```
    /// use limiter_core::{MemoryStore, Storage};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// // The memory store always answers; a Redis store answers with a PING.
    /// assert_eq!(MemoryStore::default().health_check().await, Ok(()));
    /// # });
    /// ```
    fn health_check(&self) -> impl Future<Output = Result<(), StorageError>> + Send;
}

/// The store a limiter uses, chosen by its storage URI.
///
/// ```
/// use limiter_core::{storage::Store, StorageUri};
/// let store = Store::from_uri(&StorageUri::parse("memory://?max_keys=10").unwrap()).unwrap();
/// assert!(matches!(store, Store::Memory(_)));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Store {
    /// `memory://`.
    Memory(memory::MemoryStore),
    /// `redis://`, `rediss://`, `redis+unix://`, `redis+cluster://`, `redis+sentinel://`
    /// and the `valkey` spellings.
    #[cfg(feature = "redis")]
    Redis(redis::RedisStore),
}

#[cfg(feature = "redis")]
impl From<redis::RedisStore> for Store {
    fn from(store: redis::RedisStore) -> Store {
        Store::Redis(store)
    }
}

impl From<memory::MemoryStore> for Store {
    fn from(store: memory::MemoryStore) -> Store {
        Store::Memory(store)
    }
}

impl Store {
    /// Builds the store a URI names, with the settings of its query. Nothing connects
    /// yet; for settings beyond the query, build a [`redis::RedisStore`] with its builder
    /// and convert it with `Store::from`.
    ///
    /// ```
    /// use limiter_core::{storage::Store, StorageUri};
    /// let store = Store::from_uri(&"memory://?max_keys=5000".parse::<StorageUri>().unwrap()).unwrap();
    /// let Store::Memory(memory) = store else { panic!("a memory URI makes a memory store") };
    /// assert_eq!(memory.max_keys(), 5_000);
    /// ```
    ///
    /// # Errors
    /// A URI whose back-end is not compiled in, or whose settings are wrong.
    pub fn from_uri(uri: &crate::config::StorageUri) -> Result<Store, crate::error::ConfigError> {
        use crate::config::StorageUri;
        match uri {
            StorageUri::Memory { max_keys } => {
                Ok(Store::Memory(memory::MemoryStore::new(*max_keys)))
            }
            #[cfg(feature = "redis")]
            StorageUri::Redis { .. } => Ok(Store::Redis(redis::RedisStore::from_uri(uri)?)),
            #[cfg(not(feature = "redis"))]
            StorageUri::Redis { uri, .. } => Err(crate::error::ConfigError::FeatureDisabled {
                uri: uri.clone(),
                feature: "redis",
            }),
        }
    }
}

impl Storage for Store {
    async fn decide(&self, hits: &[Hit<'_>], now: Timestamp) -> Result<Decision, StorageError> {
        match self {
            Store::Memory(m) => Ok(m.decide_now(hits, now)),
            #[cfg(feature = "redis")]
            // A blocked client is answered from the block cache before any allocation; the
            // round trip's future is boxed inside.
            Store::Redis(r) => r.decide(hits, now).await,
        }
    }

    async fn refund(&self, hits: &[Hit<'_>], now: Timestamp) -> Result<(), StorageError> {
        match self {
            Store::Memory(m) => m.refund(hits, now).await,
            #[cfg(feature = "redis")]
            Store::Redis(r) => Box::pin(r.refund(hits, now)).await,
        }
    }

    async fn refund_and_decide(
        &self,
        refunds: &[Hit<'_>],
        hits: &[Hit<'_>],
        now: Timestamp,
    ) -> Result<Decision, StorageError> {
        match self {
            Store::Memory(m) => {
                m.refund_now(refunds, now);
                Ok(m.decide_now(hits, now))
            }
            #[cfg(feature = "redis")]
            Store::Redis(r) => Box::pin(r.refund_and_decide(refunds, hits, now)).await,
        }
    }

    async fn peek(&self, hits: &[Hit<'_>], now: Timestamp) -> Result<Decision, StorageError> {
        match self {
            Store::Memory(m) => m.peek(hits, now).await,
            #[cfg(feature = "redis")]
            Store::Redis(r) => Box::pin(r.peek(hits, now)).await,
        }
    }

    async fn clear(&self, key: &str) -> Result<(), StorageError> {
        match self {
            Store::Memory(m) => m.clear(key).await,
            #[cfg(feature = "redis")]
            Store::Redis(r) => Box::pin(r.clear(key)).await,
        }
    }

    async fn reset(&self) -> Result<(), StorageError> {
        match self {
            Store::Memory(m) => m.reset().await,
            #[cfg(feature = "redis")]
            Store::Redis(r) => Box::pin(r.reset()).await,
        }
    }

    async fn health_check(&self) -> Result<(), StorageError> {
        match self {
            Store::Memory(m) => m.health_check().await,
            #[cfg(feature = "redis")]
            Store::Redis(r) => Box::pin(r.health_check()).await,
        }
    }
}
