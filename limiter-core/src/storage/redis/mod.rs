//! `redis://` and friends: counters in Redis (or Valkey), shared by every worker and host.
//!
//! One Lua script (`decide.lua`) decides a whole batch, all the limits of one request, in one
//! `EVALSHA`: one round trip whatever the number of limits. The usual batches (fixed windows,
//! GCRA or sliding windows, one strategy) call a smaller script of their own instead (see
//! `fast`). The scripts are the memory store's arithmetic line by line (see
//! [`crate::strategy`]), so both stores agree on every decision.
//! "Now" is the caller's clock, passed as an argument ([`TimeSource::Server`] uses the
//! server's `TIME` instead); key TTLs only collect garbage.
//!
//! Deployments: one server (`redis://`, `rediss://` with the `redis-tls` feature,
//! `redis+unix://`), a Cluster (`redis+cluster://h:p,h:p`) and Sentinel
//! (`redis+sentinel://h:p,h:p/service[/db]`); the `valkey` spellings work too.
//!
//! On a Cluster the batch is split by hash slot, one script call per slot. Every key of one
//! client carries the client's `{hash tag}` (see [`crate::keys`]), so a request whose limits
//! all key on the same client is one slot: one atomic call. Limits keyed on different
//! clients (a per-IP and a per-API-key limit, say) land in different slots; they are decided
//! one slot after another, each slot atomically: if a later slot denies the request, the
//! slots already charged are refunded, and the slots after it only record what the elastic
//! strategies record. If a later slot's call fails, the charged slots are refunded too, and
//! the [`FailurePolicy`] answers. Between those calls other requests may see the charge (a
//! concurrent request can then be denied, never wrongly admitted), and the refund cannot move
//! back the window end of a `fixed-window-elastic-expiry` limit in an earlier slot.
//!
//! Every call has a deadline; when Redis fails, [`FailurePolicy`] decides.
//!
//! # Blocked clients cost no round trip
//!
//! When Redis denies a request, each limit that denied it is remembered in a bounded local
//! cache, the *block cache* (counter key, rate, strategy, cost, and the time at which the same
//! request would pass: now + its retry-after). Until then a request that repeats it (same key,
//! rate, strategy and cost; for a fixed window, a cost no smaller) is denied in this process,
//! without a script call, but no later than the denial's reset, after which its stats change.
//! Its stats are Redis': the blocked limit reports the denial's `remaining` (GCRA's as its
//! bucket drains) and `reset` and `retry_after` = blocked until − now; the request's other limits,
//! which Redis was not asked about, report what an unused counter would say (admitted,
//! `remaining` = the amount, an upper bound): a denied request charges nothing, so they were not
//! charged either way.
//!
//! This is exact for time-based expiry: the strategies' retry-after is the first instant at
//! which the request fits, so the cache never denies past the moment Redis would admit, and
//! charges made meanwhile by other processes only lengthen a block (which Redis reports when
//! asked again). A key named twice in one batch is cached only from its first mention: a
//! later one may have been denied by the batch's own earlier charge, which the rollback
//! undid, so the same limit alone would pass. What it cannot see: a `clear`/`reset` or a
//! refund done by *another* process (or by hand in Redis) takes effect here only when the
//! entry expires. This store's own [`Storage::clear`], [`Storage::reset`],
//! [`Storage::refund`] and the refund of [`Storage::refund_and_decide`] drop the entries they
//! touch once Redis has acted, and a denial still on its way back then is not recorded.
//!
//! [`Storage::refund_and_decide`] is one call of the general script too (its `swap` mode):
//! what a refund then a decision would do, in one round trip, when both batches are in one
//! slot. On a Cluster with more slots they are a refund, then a decision.
//!
//! Elastic strategies (`fixed-window-elastic-expiry`, `moving-window-elastic`) must record
//! every rejected hit on the server (that is what keeps a hammering client blocked), so they
//! never fill the cache, and a request with any elastic limit never takes it.
//!
//! While Redis is failing ([`RedisStore::is_degraded`]) the cache is bypassed and the
//! [`FailurePolicy`] answers every request as documented (`open` admits them all); its entries
//! are kept and apply again once Redis answers, if their block has not ended. It is filled from
//! Redis' answers only (the memory fallback answers a denial locally anyway).
//! [`Storage::peek`] answers from it too. When another limit of the same request would block
//! longer than the cached one, the local answer names the cached limit's retry-after, and
//! Redis names the longer one when asked again after it. The cap is `block_cache` entries
//! (default 100 000; 0 turns the cache off); expired entries are reclaimed incrementally,
//! and a full cache evicts the entries whose block ends first, which then cost a round trip
//! again.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use limiter_core::storage::redis::{FailurePolicy, RedisStore};
//! use limiter_core::{Hit, Rate, Storage, Strategy, Timestamp};
//! use std::time::Duration;
//!
//! let store = RedisStore::builder("redis://127.0.0.1:6379/0?pool_size=4")?
//!     .deadline(Duration::from_millis(50))
//!     .on_failure(FailurePolicy::FailOpen)
//!     .build()?;
//! let rate: Rate = "10 per minute".parse()?;
//! let hits = [Hit::new("LIMITER{10.0.0.1}:/api:10/1minute", rate, Strategy::MovingWindow)];
//! let decision = store.decide(&hits, Timestamp::from_secs(1_700_000_000)).await?;
//! assert!(decision.admitted);
//! # Ok(()) }
//! ```

mod block_cache;
mod conn;
mod fast;
mod options;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::redis::{Cmd, Value};
use smallvec::SmallVec;

pub use options::{FailurePolicy, RedisOptions, TimeSource};

use crate::clock::{Clock, Timestamp};
use crate::config::{RedisTopology, StorageUri};
use crate::error::{ConfigError, StorageError};
use crate::storage::memory::MemoryStore;
use crate::storage::{Decision, Hit, StatsList, Storage};
use crate::strategy::{Action, LATEST_MICROS, LimitStats, State, Strategy};
use block_cache::BlockCache;
use conn::{Pools, Repeat, key_slot};
use fast::{FastLimit, FastMode};
use options::Target;

/// The decision script; see the header of the file for its arguments. Batches with a fast
/// mode take a script of their own (see `fast`).
///
/// ```
/// use limiter_core::storage::redis::SCRIPT;
/// // Sent by its SHA1 (EVALSHA): the digest to look for with SCRIPT EXISTS.
/// let sha = redis::Script::new(SCRIPT).get_hash().to_string();
/// assert_eq!(sha.len(), 40);
/// ```
pub const SCRIPT: &str = include_str!("decide.lua");

/// A Lua script as the store sends it: by its SHA1, and in full when the server lost it.
struct Script {
    source: &'static str,
    sha: String,
}

impl Script {
    fn new(source: &'static str) -> Script {
        Script {
            source,
            sha: ::redis::Script::new(source).get_hash().to_string(),
        }
    }
}

/// Longest period the script is given. Lua numbers are doubles, exact up to 2^53 µs
/// (about 285 years) and the script adds up to two periods to "now"; periods beyond 100 years
/// of 360 days count as 100 years on Redis (no deployment lives to tell the difference).
///
/// ```
/// use limiter_core::{storage::redis::MAX_SCRIPT_PERIOD_MICROS, Rate};
/// assert_eq!(Rate::parse("1 per 100 years").unwrap().period_micros(), MAX_SCRIPT_PERIOD_MICROS);
/// // A valid rate, decided on Redis as if it were 1 per 100 years.
/// assert!(Rate::parse("1 per 1000 years").unwrap().period_micros() > MAX_SCRIPT_PERIOD_MICROS);
/// ```
pub const MAX_SCRIPT_PERIOD_MICROS: u64 = 100 * 360 * 86_400 * 1_000_000;

/// A store of counters in Redis. Cheap to clone; clones share pools and fallback.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use limiter_core::storage::redis::RedisStore;
/// use limiter_core::{Hit, Rate, Storage, Strategy, Timestamp};
///
/// let store = RedisStore::builder("redis://cache.internal:6379/0")?.build()?;
/// let worker = store.clone(); // same pools, same counters
/// let rate = Rate::parse("1 per minute")?;
/// let hit = [Hit::new("LIMITER{10.0.0.1}:/api:1/1minute", rate, Strategy::FixedWindow)];
/// let now = Timestamp::from_secs(1_700_000_040);
/// assert!(store.decide(&hit, now).await?.admitted);
/// assert!(!worker.decide(&hit, now).await?.admitted);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    uri: String,
    pools: Pools,
    cluster: bool,
    options: RedisOptions,
    /// `SCRIPT`, the general path.
    general: Script,
    /// The fast modes' scripts, indexed by `FastMode`.
    fast: [Script; 3],
    /// `ttl_grace` in milliseconds, the script's third argument.
    grace_ms: u64,
    /// The callers' clock, which dates their charges: with [`TimeSource::Server`], a
    /// refund's age is measured on it.
    clock: Clock,
    fallback: MemoryStore,
    breaker: Breaker,
    /// Limits Redis denied, until their retry-after passes; `None` when turned off.
    blocks: Option<BlockCache>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("uri", &redact(&self.inner.uri))
            .field("options", &self.inner.options)
            .field("degraded", &self.is_degraded())
            .finish()
    }
}

/// Hides a password in a URI meant for logs.
fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            format!("{}://***@{}", &uri[..start], &uri[at + 1..])
        }
        _ => uri.to_string(),
    }
}

/// Builds a [`RedisStore`]: settings from the URI's query, then from the builder's methods.
///
/// ```
/// use limiter_core::storage::redis::RedisStore;
/// use std::time::Duration;
///
/// // The query's settings first, then the builder's, which win.
/// let store = RedisStore::builder("redis://cache.internal:6379/0?deadline_ms=50&pool_size=4")?
///     .deadline(Duration::from_millis(20))
///     .build()?; // nothing connects yet
/// assert_eq!(store.options().deadline, Duration::from_millis(20));
/// assert_eq!(store.options().pool_size, 4);
/// # Ok::<(), limiter_core::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RedisStoreBuilder {
    uri: String,
    target: Target,
    options: RedisOptions,
    clock: Clock,
}

impl RedisStoreBuilder {
    /// Connections kept open (each multiplexed).
    ///
    /// ```
    /// use limiter_core::storage::redis::RedisStore;
    /// let builder = RedisStore::builder("redis://cache.internal/0")?.pool_size(0);
    /// assert_eq!(builder.current_options().pool_size, 1); // at least one
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    pub fn pool_size(mut self, size: usize) -> Self {
        self.options.pool_size = size.max(1);
        self
    }

    /// Longest wait for a free connection.
    ///
    /// ```
    /// use limiter_core::storage::redis::RedisStore;
    /// use std::time::Duration;
    /// let builder = RedisStore::builder("redis://cache.internal/0")?;
    /// assert_eq!(builder.current_options().pool_timeout, None); // the deadline
    /// let builder = builder.pool_timeout(Duration::from_millis(10));
    /// assert_eq!(builder.current_options().pool_timeout, Some(Duration::from_millis(10)));
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    pub fn pool_timeout(mut self, timeout: Duration) -> Self {
        self.options.pool_timeout = Some(timeout);
        self
    }

    /// Longest wait to open a connection.
    ///
    /// ```
    /// use limiter_core::storage::redis::RedisStore;
    /// use std::time::Duration;
    /// let builder = RedisStore::builder("redis://cache.internal/0")?.connect_timeout(Duration::from_secs(1));
    /// assert_eq!(builder.current_options().connect_timeout, Some(Duration::from_secs(1)));
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = Some(timeout);
        self
    }

    /// Deadline of every storage call (at least 1 ms).
    ///
    /// ```
    /// use limiter_core::storage::redis::RedisStore;
    /// use std::time::Duration;
    /// let builder = RedisStore::builder("redis://cache.internal/0")?.deadline(Duration::ZERO);
    /// assert_eq!(builder.current_options().deadline, Duration::from_millis(1));
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.options.deadline = deadline.max(Duration::from_millis(1));
        self
    }

    /// What to do when Redis fails.
    ///
    /// ```
    /// use limiter_core::storage::redis::{FailurePolicy, RedisStore};
    /// let builder = RedisStore::builder("redis://cache.internal/0")?.on_failure(FailurePolicy::FailClosed);
    /// assert_eq!(builder.current_options().on_failure, FailurePolicy::FailClosed);
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.options.on_failure = policy;
        self
    }

    /// Where "now" comes from.
    ///
    /// ```
    /// use limiter_core::storage::redis::{RedisStore, TimeSource};
    /// let builder = RedisStore::builder("redis://cache.internal/0")?.time(TimeSource::Server);
    /// assert_eq!(builder.current_options().time, TimeSource::Server);
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    pub fn time(mut self, source: TimeSource) -> Self {
        self.options.time = source;
        self
    }

    /// The clock the callers date their charges by (default: the system clock). With
    /// [`TimeSource::Server`], a refund is dated at the server's `TIME` less the charge's age
    /// on this clock: a caller deciding by a [`ManualClock`](crate::ManualClock) passes it
    /// here, or its refunds, dated years before the system clock's now, find no charge.
    ///
    /// ```
    /// use limiter_core::storage::redis::RedisStore;
    /// use limiter_core::{ManualClock, Timestamp};
    /// let clock = ManualClock::new(Timestamp::from_secs(1_700_006_400));
    /// let store = RedisStore::builder("redis://cache.internal/0?time=server")?.clock(clock).build()?;
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// Prefix of this limiter's keys, for [`Storage::reset`].
    ///
    /// ```
    /// use limiter_core::storage::redis::RedisStore;
    /// // The prefix the limiter's keys are built with (see `limiter_core::keys`).
    /// let builder = RedisStore::builder("redis://cache.internal/0")?.key_prefix("shop");
    /// assert_eq!(builder.current_options().key_prefix, "shop");
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.options.key_prefix = prefix.into();
        self
    }

    /// Added to every key's TTL.
    ///
    /// ```
    /// use limiter_core::storage::redis::RedisStore;
    /// use std::time::Duration;
    /// let builder = RedisStore::builder("redis://cache.internal/0")?.ttl_grace(Duration::from_secs(5));
    /// assert_eq!(builder.current_options().ttl_grace, Duration::from_secs(5));
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    pub fn ttl_grace(mut self, grace: Duration) -> Self {
        self.options.ttl_grace = grace;
        self
    }

    /// Cap on keys of the in-memory fallback.
    ///
    /// ```
    /// use limiter_core::storage::redis::RedisStore;
    /// let store = RedisStore::builder("redis://cache.internal/0")?.fallback_max_keys(500).build()?;
    /// assert_eq!(store.fallback().max_keys(), 500);
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    pub fn fallback_max_keys(mut self, max_keys: usize) -> Self {
        self.options.fallback_max_keys = max_keys.max(1);
        self
    }

    /// Cap on entries of the block cache (see the module docs); 0 turns it off.
    ///
    /// ```
    /// use limiter_core::storage::redis::RedisStore;
    /// let store = RedisStore::builder("redis://cache.internal/0")?.block_cache(0).build()?;
    /// assert_eq!(store.block_cache_capacity(), 0); // every request goes to Redis
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    pub fn block_cache(mut self, max_entries: usize) -> Self {
        self.options.block_cache = max_entries;
        self
    }

    /// First and longest wait between probes of a failed Redis.
    ///
    /// ```
    /// use limiter_core::storage::redis::RedisStore;
    /// use std::time::Duration;
    /// let builder = RedisStore::builder("redis://cache.internal/0")?
    ///     .probe_backoff(Duration::from_secs(1), Duration::from_millis(100));
    /// // A longest wait below the first is raised to it.
    /// assert_eq!(builder.current_options().probe_max, Duration::from_secs(1));
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    pub fn probe_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.options.probe_min = min;
        self.options.probe_max = max.max(min);
        self
    }

    /// Replaces every setting at once.
    ///
    /// ```
    /// use limiter_core::storage::redis::{RedisOptions, RedisStore};
    /// use std::time::Duration;
    /// let mut options = RedisOptions::default();
    /// options.key_prefix = "shop".into();
    /// let builder = RedisStore::builder("redis://cache.internal/0?deadline_ms=50")?.options(options);
    /// // The query's deadline is replaced too.
    /// assert_eq!(builder.current_options().deadline, Duration::from_millis(100));
    /// assert_eq!(builder.current_options().key_prefix, "shop");
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    pub fn options(mut self, options: RedisOptions) -> Self {
        self.options = options;
        self
    }

    /// The settings so far.
    ///
    /// ```
    /// use limiter_core::storage::redis::RedisStore;
    /// let builder = RedisStore::builder("redis://cache.internal/0?key_prefix=shop")?;
    /// assert_eq!(builder.current_options().key_prefix, "shop");
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    pub fn current_options(&self) -> &RedisOptions {
        &self.options
    }

    /// Builds the store. Nothing connects yet: the first call opens the first connection.
    ///
    /// ```
    /// use limiter_core::storage::redis::RedisStore;
    /// // No server is asked: building works while Redis is still starting.
    /// let store = RedisStore::builder("redis://cache.internal:6379/0")?.build()?;
    /// assert!(!store.is_degraded());
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// A URI that redis-rs rejects, or options set as a whole ([`Self::options`]) that the
    /// URI or the setters would not accept:
    ///
    /// ```
    /// use limiter_core::storage::redis::{RedisOptions, RedisStore};
    /// let mut options = RedisOptions::default();
    /// options.pool_size = 0;
    /// let err = RedisStore::builder("redis://cache.internal/0")?.options(options).build().unwrap_err();
    /// assert_eq!(err.to_string(), "invalid pool_size \"0\": expected a whole number above 0");
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    pub fn build(self) -> Result<RedisStore, ConfigError> {
        self.options.check()?;
        let pools = Pools::new(&self.uri, &self.target, &self.options)?;
        let backoff = duration_micros(self.options.probe_min);
        Ok(RedisStore {
            inner: Arc::new(Inner {
                cluster: matches!(self.target, Target::Cluster(_)),
                pools,
                general: Script::new(SCRIPT),
                fast: FastMode::ALL.map(|mode| Script::new(mode.source())),
                grace_ms: u64::try_from(self.options.ttl_grace.as_millis()).unwrap_or(u64::MAX),
                clock: self.clock,
                fallback: MemoryStore::new(self.options.fallback_max_keys),
                breaker: Breaker::new(backoff),
                blocks: BlockCache::new(self.options.block_cache),
                options: self.options,
                uri: self.uri,
            }),
        })
    }
}

impl RedisStore {
    /// A builder for a Redis URI (`redis://`, `rediss://`, `redis+unix://`,
    /// `redis+cluster://`, `redis+sentinel://` or a `valkey` spelling), with the settings
    /// of its query (see [`RedisOptions`]).
    ///
    /// ```
    /// use limiter_core::storage::redis::RedisStore;
    /// let builder = RedisStore::builder("valkey+cluster://10.0.0.1:7000,10.0.0.2:7000?pool_size=16")?;
    /// assert_eq!(builder.current_options().pool_size, 16);
    /// let err = RedisStore::builder("redis://cache.internal/0?on_failure=never").unwrap_err();
    /// assert!(err.to_string().starts_with("invalid on_failure \"never\""));
    /// assert!(RedisStore::builder("memory://").is_err());
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// A URI that is not a Redis one, or has bad settings.
    pub fn builder(uri: &str) -> Result<RedisStoreBuilder, ConfigError> {
        match StorageUri::parse(uri)? {
            StorageUri::Redis { uri, topology } => Self::builder_for(&uri, topology),
            _ => Err(ConfigError::BadUri {
                uri: uri.to_string(),
                reason: "not a Redis URI".into(),
            }),
        }
    }

    pub(crate) fn builder_for(
        uri: &str,
        topology: RedisTopology,
    ) -> Result<RedisStoreBuilder, ConfigError> {
        let (target, options) = options::parse(uri, topology)?;
        Ok(RedisStoreBuilder {
            uri: uri.to_string(),
            target,
            options,
            clock: Clock::default(),
        })
    }

    /// The store a parsed Redis URI names, with the settings of its query.
    ///
    /// ```
    /// use limiter_core::{storage::redis::RedisStore, StorageUri};
    /// let uri = StorageUri::parse("redis://cache.internal/0?key_prefix=shop")?;
    /// assert_eq!(RedisStore::from_uri(&uri)?.options().key_prefix, "shop");
    /// assert!(RedisStore::from_uri(&StorageUri::parse("memory://")?).is_err());
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// As [`RedisStore::builder`].
    pub fn from_uri(uri: &StorageUri) -> Result<RedisStore, ConfigError> {
        match uri {
            StorageUri::Redis { uri, topology } => Self::builder_for(uri, *topology)?.build(),
            other => Err(ConfigError::BadUri {
                uri: format!("{other:?}"),
                reason: "not a Redis URI".into(),
            }),
        }
    }

    /// The store's settings.
    ///
    /// ```
    /// use limiter_core::storage::redis::{FailurePolicy, RedisStore};
    /// let store = RedisStore::builder("redis://cache.internal/0?on_failure=open")?.build()?;
    /// assert_eq!(store.options().on_failure, FailurePolicy::FailOpen);
    /// assert_eq!(store.options().pool_size, 8); // the default
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    pub fn options(&self) -> &RedisOptions {
        &self.inner.options
    }

    /// Whether Redis failed and the store answers by its [`FailurePolicy`] until a probe
    /// finds Redis answering again.
    ///
    /// ```
    /// use limiter_core::storage::redis::RedisStore;
    /// use limiter_core::{Hit, Rate, Storage, Strategy, Timestamp};
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // A socket nobody listens on: every call fails at once.
    /// let store = RedisStore::builder("redis+unix:///nonexistent/redis.sock").unwrap().build().unwrap();
    /// assert!(!store.is_degraded());
    /// let hit = [Hit::new("k", Rate::parse("1 per minute").unwrap(), Strategy::FixedWindow)];
    /// // The default policy decides in memory meanwhile.
    /// assert!(store.decide(&hit, Timestamp::from_secs(60)).await.unwrap().admitted);
    /// assert!(store.is_degraded());
    /// # });
    /// ```
    pub fn is_degraded(&self) -> bool {
        self.inner.breaker.degraded.load(Ordering::Acquire)
    }

    /// The in-memory store that answers under [`FailurePolicy::FallbackToMemory`].
    ///
    /// ```
    /// use limiter_core::storage::redis::RedisStore;
    /// use limiter_core::{Hit, Rate, Storage, Strategy, Timestamp};
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = RedisStore::builder("redis+unix:///nonexistent/redis.sock").unwrap().build().unwrap();
    /// let hit = [Hit::new("k", Rate::parse("1 per minute").unwrap(), Strategy::FixedWindow)];
    /// let now = Timestamp::from_secs(60);
    /// assert!(store.decide(&hit, now).await.unwrap().admitted);
    /// // Redis did not answer: the request was counted here, and this process keeps counting.
    /// assert_eq!(store.fallback().len(), 1);
    /// assert!(!store.decide(&hit, now).await.unwrap().admitted);
    /// # });
    /// ```
    pub fn fallback(&self) -> &MemoryStore {
        &self.inner.fallback
    }

    /// Entries in the block cache now (expired ones not yet reclaimed included); 0 when it
    /// is turned off.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use limiter_core::storage::redis::RedisStore;
    /// use limiter_core::{Hit, Rate, Storage, Strategy, Timestamp};
    ///
    /// let store = RedisStore::builder("redis://cache.internal:6379/0")?.build()?;
    /// let key = "LIMITER{10.0.0.1}:/api:1/1minute";
    /// let hit = [Hit::new(key, Rate::parse("1 per minute")?, Strategy::FixedWindow)];
    /// let now = Timestamp::from_secs(1_700_000_040);
    /// store.decide(&hit, now).await?;
    /// assert!(!store.decide(&hit, now).await?.admitted);
    /// assert_eq!(store.block_cache_len(), 1); // Redis' denial, remembered
    /// store.clear(key).await?;
    /// assert_eq!(store.block_cache_len(), 0);
    /// # Ok(()) }
    /// ```
    pub fn block_cache_len(&self) -> usize {
        self.inner.blocks.as_ref().map_or(0, BlockCache::len)
    }

    /// The block cache's cap (`block_cache` rounded down to a multiple of its shard count).
    ///
    /// ```
    /// use limiter_core::storage::redis::RedisStore;
    /// let store = RedisStore::builder("redis://cache.internal/0?block_cache=1000")?.build()?;
    /// assert_eq!(store.block_cache_capacity(), 1_000);
    /// assert_eq!(store.block_cache_len(), 0);
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    pub fn block_cache_capacity(&self) -> usize {
        self.inner.blocks.as_ref().map_or(0, BlockCache::capacity)
    }

    /// Block cache entries evicted before their block ended because the cache was full.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use limiter_core::storage::redis::RedisStore;
    /// use limiter_core::{Hit, Rate, Storage, Strategy, Timestamp};
    ///
    /// let store = RedisStore::builder("redis://cache.internal:6379/0")?.block_cache(1).build()?;
    /// let rate = Rate::parse("1 per minute")?;
    /// let now = Timestamp::from_secs(1_700_000_040);
    /// for key in ["LIMITER{a}:/api", "LIMITER{b}:/api"] {
    ///     let hit = [Hit::new(key, rate, Strategy::FixedWindow)];
    ///     store.decide(&hit, now).await?;
    ///     assert!(!store.decide(&hit, now).await?.admitted);
    /// }
    /// // One entry fits: b's block pushed out a's, whose next request asks Redis again.
    /// assert_eq!(store.block_cache_evictions(), 1);
    /// # Ok(()) }
    /// ```
    pub fn block_cache_evictions(&self) -> u64 {
        self.inner.blocks.as_ref().map_or(0, BlockCache::evictions)
    }

    /// What [`Storage::decide`] and [`Storage::peek`] answer without a round trip, if
    /// anything: the denial of the block cache when one of `hits` is still blocked at `now`
    /// (see the module docs), or an admission for an empty batch. For callers that decide
    /// synchronously when they can; `decide` consults it first anyway.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use limiter_core::storage::redis::RedisStore;
    /// use limiter_core::{Hit, Rate, Storage, Strategy, Timestamp};
    /// use std::time::Duration;
    ///
    /// let store = RedisStore::builder("redis://cache.internal:6379/0")?.build()?;
    /// let hit = [Hit::new("LIMITER{10.0.0.1}:/api", Rate::parse("1 per minute")?, Strategy::FixedWindow)];
    /// let now = Timestamp::from_secs(1_700_000_020);
    /// assert!(store.decide_locally(&hit, now).is_none()); // nothing known: ask Redis
    /// store.decide(&hit, now).await?;
    /// assert!(!store.decide(&hit, now).await?.admitted);
    /// // Blocked until the minute ends: answered here, with no round trip.
    /// let local = store.decide_locally(&hit, now).unwrap();
    /// assert_eq!(local.retry_after, Some(Duration::from_secs(20)));
    /// assert!(store.decide_locally(&[], now).unwrap().admitted);
    /// # Ok(()) }
    /// ```
    pub fn decide_locally(&self, hits: &[Hit<'_>], now: Timestamp) -> Option<Decision> {
        if hits.is_empty() {
            return Some(Decision::unlimited());
        }
        // While degraded, the failure policy answers every request, as documented.
        if self.is_degraded() {
            return None;
        }
        self.cached_denial(hits, now)
    }

    /// The denial of `hits` from the block cache, if any of them is still blocked at `now`.
    fn cached_denial(&self, hits: &[Hit<'_>], now: Timestamp) -> Option<Decision> {
        let cache = self.inner.blocks.as_ref()?;
        // Elastic limits must record a rejected hit on the server.
        if cache.len() == 0 || hits.iter().any(|h| h.strategy.is_elastic()) {
            return None;
        }
        if let [hit] = hits {
            // The usual request: one limit, one lookup.
            let mut decision = Decision::unlimited();
            decision.stats.push(cache.blocked(hit, now)?);
            decision.conclude();
            return Some(decision);
        }
        let known: SmallVec<[Option<LimitStats>; 4]> =
            hits.iter().map(|h| cache.blocked(h, now)).collect();
        if known.iter().all(Option::is_none) {
            return None;
        }
        Some(Decision::from_stats(
            hits.iter()
                .zip(known)
                .map(|(hit, stats)| {
                    // Not asked: what an unused counter says (an upper bound on what is left).
                    stats.unwrap_or_else(|| {
                        State::Empty.decide(hit.strategy, &hit.rate, now, hit.cost, Action::Peek)
                    })
                })
                .collect(),
        ))
    }

    /// The block cache's generation of `hits` before a call whose denial [`Self::remember`]
    /// records.
    fn blocks_generation(&self, hits: &[Hit<'_>]) -> u64 {
        self.inner
            .blocks
            .as_ref()
            .map_or(0, |cache| cache.generation(hits))
    }

    /// Fills the block cache from a denial by Redis, to a call made at `generation` (see
    /// [`Self::blocks_generation`]): a refund or a clear of this store that overlapped the
    /// call may have run after it on Redis, so its denial is not recorded then.
    fn remember(&self, hits: &[Hit<'_>], decision: &Decision, now: Timestamp, generation: u64) {
        let Some(cache) = self.inner.blocks.as_ref() else {
            return;
        };
        if decision.admitted {
            return;
        }
        for (i, (hit, stats)) in hits.iter().zip(&decision.stats).enumerate() {
            // A key named earlier in the batch may have been denied by the batch's own
            // charge, rolled back since: Redis would admit the same request alone.
            if !stats.admitted
                && !hit.strategy.is_elastic()
                && !hits[..i].iter().any(|h| h.key == hit.key)
            {
                cache.record(hit, stats, now, hits, generation);
            }
        }
    }

    /// Drops the block cache's entries for the keys of `refunds`: a refund can make room for
    /// a request that was denied.
    fn unblock(&self, refunds: &[Hit<'_>]) {
        if let Some(cache) = &self.inner.blocks {
            for hit in refunds {
                cache.remove(hit.key);
            }
        }
    }

    /// Runs `op` against Redis under the deadline, unless the breaker says Redis is down
    /// and no probe is due. Records the outcome.
    async fn guarded<T, F: Future<Output = Result<T, StorageError>>>(
        &self,
        op: impl FnOnce() -> F,
    ) -> Result<T, StorageError> {
        let inner = &self.inner;
        let attempt = inner.breaker.attempt();
        if attempt == Attempt::Skip {
            return Err(StorageError::Unavailable(
                "redis failed recently; waiting for the next probe".into(),
            ));
        }
        // Frees the probe slot however this call ends, cancellation included.
        let _probe = (attempt == Attempt::Probe).then(|| ProbeSlot(&inner.breaker.probing));
        let deadline = inner.options.deadline;
        // The call's future is made where the deadline holds it: taken as an argument, it
        // would be kept twice in this future and copied from one to the other.
        let result = match tokio::time::timeout(deadline, op()).await {
            Ok(result) => result,
            Err(_) => {
                inner.pools.after_timeout();
                Err(StorageError::Timeout(deadline))
            }
        };
        match &result {
            Ok(_) => inner.breaker.success(attempt, &inner.fallback),
            // Every error counts as Redis failing, an error reply included: the ones a
            // healthy server gives (OOM, LOADING, READONLY, MASTERDOWN) are outages too, and
            // the script answers any key, whatever it holds, without one.
            Err(e) => inner.breaker.failure(attempt, e, &inner.options),
        }
        result
    }

    /// The script's "now": the caller's, no later than the memory store decides at (windows
    /// end up to two periods after it), or the server's TIME.
    fn now_arg(&self, now: Timestamp) -> ScriptNow {
        match self.inner.options.time {
            TimeSource::Caller => ScriptNow::Caller(now.as_micros().min(LATEST_MICROS)),
            TimeSource::Server => ScriptNow::Server { ago: 0 },
        }
    }

    /// The script's time for a refund of a charge made at `charged_at`: with the server's
    /// TIME, as long before it as the charge was made before now on the callers' clock
    /// ([`RedisStoreBuilder::clock`]), so that a refund after a window or bucket boundary
    /// finds the charge's window, as the caller's time would.
    fn charged_at_arg(&self, charged_at: Timestamp) -> ScriptNow {
        match self.now_arg(charged_at) {
            ScriptNow::Server { .. } => ScriptNow::Server {
                ago: self
                    .inner
                    .clock
                    .now()
                    .as_micros()
                    .saturating_sub(charged_at.as_micros()),
            },
            caller => caller,
        }
    }

    /// One script call over `hits` (all in one slot on a cluster).
    async fn call(
        &self,
        mode: &str,
        hits: &[Hit<'_>],
        now: ScriptNow,
    ) -> Result<StatsList, StorageError> {
        parse_stats(&self.call_general(mode, hits, now).await?, hits)
    }

    /// The general script's reply to `mode` over `hits`.
    async fn call_general(
        &self,
        mode: &str,
        hits: &[Hit<'_>],
        now: ScriptNow,
    ) -> Result<Value, StorageError> {
        self.run_script(hits, &self.inner.general, &|cmd| {
            cmd.arg(mode);
            match now {
                ScriptNow::Caller(micros) => cmd.arg(micros),
                ScriptNow::Server { ago: 0 } => cmd.arg(""),
                ScriptNow::Server { ago } => cmd.arg(-i64::try_from(ago).unwrap_or(i64::MAX)),
            };
            cmd.arg(self.inner.grace_ms);
            for hit in hits {
                let n = hit.rate.amount();
                cmd.arg(strategy_code(hit.strategy))
                    .arg(n)
                    .arg(hit.rate.period_micros().min(MAX_SCRIPT_PERIOD_MICROS))
                    // Every cost above the amount decides alike (it can never pass), and a
                    // capped cost keeps the script's products exact.
                    .arg(hit.cost.min(n.saturating_add(1)));
            }
        })
        .await
    }

    /// A fast mode's script (see `fast`): the batch's arithmetic done here, the script only
    /// compares and adds. `None` when a key holds something else (or a later window); the
    /// script wrote nothing then.
    async fn call_fast(
        &self,
        mode: FastMode,
        hits: &[Hit<'_>],
        t: u64,
    ) -> Result<Option<StatsList>, StorageError> {
        let grace_ms = self.inner.grace_ms;
        let limit = |hit: &Hit<'_>| FastLimit::new(mode, hit, t, grace_ms);
        // The limits are worked out again after the call rather than kept across it: kept,
        // they made every decision's future 232 bytes larger.
        let value = self
            .run_script(hits, &self.inner.fast[mode as usize], &|cmd| {
                mode.push_args(cmd, t, grace_ms);
                for hit in hits {
                    limit(hit).push_args(cmd);
                }
            })
            .await?;
        let limits: SmallVec<[FastLimit; 4]> = hits.iter().map(limit).collect();
        fast::parse_reply(&value, &limits, t)
    }

    /// Calls the script on `hits`' keys with the arguments `args` writes: by its SHA, and once
    /// more in full if the server lost it (`NOSCRIPT`).
    async fn run_script(
        &self,
        hits: &[Hit<'_>],
        script: &Script,
        args: &(dyn Fn(&mut Cmd) + Sync),
    ) -> Result<Value, StorageError> {
        let build = |verb: &str, text: &str| -> Cmd {
            // Sized up front: growing the buffers argument by argument cost more than
            // writing them.
            let keys: usize = hits.iter().map(|h| h.key.len()).sum();
            let mut cmd =
                Cmd::with_capacity(6 + 5 * hits.len(), 96 + text.len() + keys + 64 * hits.len());
            cmd.arg(verb).arg(text).arg(hits.len());
            for hit in hits {
                cmd.arg(hit.key);
            }
            args(&mut cmd);
            cmd
        };
        let evalsha = build("EVALSHA", &script.sha);
        let eval = || build("EVAL", script.source);
        self.inner
            .pools
            .query(&evalsha, Some(&eval), Repeat::OnlyIfNotRun)
            .await
    }

    /// The batch split by cluster hash slot, in order of first appearance, when it spans
    /// more than one; `None` when one script call takes it whole (always off a cluster).
    fn slot_groups(&self, hits: &[Hit<'_>]) -> Option<SmallVec<[SmallVec<[usize; 4]>; 1]>> {
        if !self.inner.cluster {
            return None;
        }
        let mut groups: SmallVec<[(u16, SmallVec<[usize; 4]>); 1]> = SmallVec::new();
        for (i, hit) in hits.iter().enumerate() {
            let slot = key_slot(hit.key);
            match groups.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, members)) => members.push(i),
                None => groups.push((slot, std::iter::once(i).collect())),
            }
        }
        (groups.len() > 1).then(|| groups.into_iter().map(|(_, members)| members).collect())
    }

    async fn redis_decide(
        &self,
        hits: &[Hit<'_>],
        now: Timestamp,
    ) -> Result<Decision, StorageError> {
        let now = self.now_arg(now);
        if let Some(groups) = self.slot_groups(hits) {
            // Boxed: inline, the loop's state (several calls' futures, the stats) made every
            // decision's future 8.9 KB, allocated per request; 1.2 KB without it.
            return Box::pin(self.decide_by_slot(hits, now, groups)).await;
        }
        if let Some((t, mode)) = now.caller().and_then(|t| Some((t, FastMode::of(hits)?))) {
            if let Some(stats) = self.call_fast(mode, hits, t).await? {
                return Ok(Decision::from_stats(stats));
            }
        }
        // The general script's reply parsed here, not through `call`: one layer of future
        // fewer to build and move.
        let value = self.call_general("decide", hits, now).await?;
        Ok(Decision::from_stats(parse_stats(&value, hits)?))
    }

    /// A batch over several cluster slots: each decided atomically, one after another (see
    /// the module docs), and the charged ones refunded after a denial.
    async fn decide_by_slot(
        &self,
        hits: &[Hit<'_>],
        now: ScriptNow,
        groups: SmallVec<[SmallVec<[usize; 4]>; 1]>,
    ) -> Result<Decision, StorageError> {
        let mut stats: SmallVec<[Option<LimitStats>; 4]> = SmallVec::from_elem(None, hits.len());
        let mut denied = false;
        let mut charged: SmallVec<[usize; 4]> = SmallVec::new();
        for (g, members) in groups.iter().enumerate() {
            let mode = if denied { "deny" } else { "decide" };
            let admitted = match self.call_group(mode, hits, members, now, &mut stats).await {
                Ok(admitted) => admitted,
                Err(e) => {
                    // The failure policy answers the request, not Redis: the slots it charged
                    // are given back, as far as Redis takes the refunds.
                    let _ = self
                        .refund_slots(hits, &groups, &charged, now, &mut stats)
                        .await;
                    return Err(e);
                }
            };
            if !denied {
                if admitted {
                    charged.push(g);
                } else {
                    denied = true;
                }
            }
        }
        if denied {
            self.refund_slots(hits, &groups, &charged, now, &mut stats)
                .await?;
        }
        Ok(Decision::from_stats(
            stats
                .into_iter()
                .map(|s| s.expect("every limit decided"))
                .collect(),
        ))
    }

    /// Refunds the slot groups `charged` of [`Self::decide_by_slot`], one call each, every
    /// one even when another fails (a charge left behind counts against the client); the
    /// refunded limits' stats go to `stats`. Returns the first error.
    async fn refund_slots(
        &self,
        hits: &[Hit<'_>],
        groups: &[SmallVec<[usize; 4]>],
        charged: &[usize],
        now: ScriptNow,
        stats: &mut [Option<LimitStats>],
    ) -> Result<(), StorageError> {
        let mut first_error = None;
        for &g in charged {
            if let Err(e) = self
                .call_group("refund", hits, &groups[g], now, stats)
                .await
            {
                tracing::debug!("redis refund of a slot's charge failed: {e}");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Runs `mode` on the limits `members` of `hits` (one slot's), their stats into `stats`
    /// at their places in the batch; whether all of them admitted.
    async fn call_group(
        &self,
        mode: &str,
        hits: &[Hit<'_>],
        members: &[usize],
        now: ScriptNow,
        stats: &mut [Option<LimitStats>],
    ) -> Result<bool, StorageError> {
        let sub: SmallVec<[Hit<'_>; 4]> = members.iter().map(|&i| hits[i]).collect();
        let group_stats = self.call(mode, &sub, now).await?;
        let admitted = group_stats.iter().all(|s| s.admitted);
        for (&i, s) in members.iter().zip(group_stats) {
            stats[i] = Some(s);
        }
        Ok(admitted)
    }

    /// Runs `mode` (peek or refund) slot by slot, stats in the batch's order.
    async fn redis_each(
        &self,
        mode: &str,
        hits: &[Hit<'_>],
        now: ScriptNow,
    ) -> Result<StatsList, StorageError> {
        let Some(groups) = self.slot_groups(hits) else {
            return self.call(mode, hits, now).await;
        };
        let mut stats: SmallVec<[Option<LimitStats>; 4]> = SmallVec::from_elem(None, hits.len());
        for members in &groups {
            self.call_group(mode, hits, members, now, &mut stats)
                .await?;
        }
        Ok(stats
            .into_iter()
            .map(|s| s.expect("every limit peeked"))
            .collect())
    }

    /// The policy's answer while Redis is unavailable.
    fn degraded_decision(
        &self,
        hits: &[Hit<'_>],
        now: Timestamp,
        error: StorageError,
        peek: bool,
    ) -> Result<Decision, StorageError> {
        match self.inner.options.on_failure {
            FailurePolicy::FallbackToMemory if peek => Ok(self.inner.fallback.peek_now(hits, now)),
            FailurePolicy::FallbackToMemory => Ok(self.inner.fallback.decide_now(hits, now)),
            // No stats: nothing was counted, so there is nothing to show (no rate-limit
            // headers, as with Flask-Limiter's `swallow_errors`) and nothing to give back.
            FailurePolicy::FailOpen => Ok(Decision::unlimited()),
            FailurePolicy::FailClosed => Err(error),
        }
    }

    async fn decide_inner(
        &self,
        hits: &[Hit<'_>],
        now: Timestamp,
    ) -> Result<Decision, StorageError> {
        let generation = self.blocks_generation(hits);
        match self.guarded(|| self.redis_decide(hits, now)).await {
            Ok(decision) => {
                self.remember(hits, &decision, now, generation);
                Ok(decision)
            }
            Err(e) => self.degraded_decision(hits, now, e, false),
        }
    }

    /// [`Storage::refund_and_decide`] once the block cache had no answer: one script call
    /// (`swap`), or a refund then a decision when the keys span several cluster slots.
    async fn refund_and_decide_inner(
        &self,
        refunds: &[Hit<'_>],
        hits: &[Hit<'_>],
        now: Timestamp,
    ) -> Result<Decision, StorageError> {
        let all: SmallVec<[Hit<'_>; 8]> = refunds.iter().chain(hits).copied().collect();
        if self.slot_groups(&all).is_some() {
            self.refund_inner(refunds, now).await?;
            return self.decide_inner(hits, now).await;
        }
        let mut mode = String::from("swap:");
        mode.push_str(itoa::Buffer::new().format(refunds.len()));
        let swap = || async {
            let value = self.call_general(&mode, &all, self.now_arg(now)).await?;
            parse_stats(&value, hits)
        };
        let generation = self.blocks_generation(hits);
        match self.guarded(swap).await {
            Ok(stats) => {
                let decision = Decision::from_stats(stats);
                self.remember(hits, &decision, now, generation);
                // A denial on its way back during the call may have been recorded for a key
                // this call only gave back (see `refund_inner`); a key it decided too is
                // charged again, as before.
                let given_back: SmallVec<[Hit<'_>; 4]> = refunds
                    .iter()
                    .filter(|r| hits.iter().all(|h| h.key != r.key))
                    .copied()
                    .collect();
                self.unblock(&given_back);
                Ok(decision)
            }
            Err(e) => {
                if self.inner.options.on_failure == FailurePolicy::FallbackToMemory {
                    self.inner.fallback.refund_now(refunds, now);
                }
                self.degraded_decision(hits, now, e, false)
            }
        }
    }

    async fn peek_inner(&self, hits: &[Hit<'_>], now: Timestamp) -> Result<Decision, StorageError> {
        match self
            .guarded(|| self.redis_each("peek", hits, self.now_arg(now)))
            .await
        {
            Ok(stats) => Ok(Decision::from_stats(stats)),
            Err(e) => self.degraded_decision(hits, now, e, true),
        }
    }

    async fn refund_inner(&self, hits: &[Hit<'_>], now: Timestamp) -> Result<(), StorageError> {
        if hits.is_empty() {
            return Ok(());
        }
        let result = self
            .guarded(|| self.redis_each("refund", hits, self.charged_at_arg(now)))
            .await;
        // Once Redis has it (or failed to): an entry from before, or from a denial that was on
        // its way back meanwhile, goes; a denial still on its way read the generation this
        // bumps, and is not recorded (see `BlockCache::record`). Until then the entry denies,
        // as it would have a moment before the refund.
        self.unblock(hits);
        match result {
            Ok(_) => Ok(()),
            Err(e) => match self.inner.options.on_failure {
                FailurePolicy::FallbackToMemory => {
                    self.inner.fallback.refund_now(hits, now);
                    Ok(())
                }
                FailurePolicy::FailOpen => Ok(()),
                FailurePolicy::FailClosed => Err(e),
            },
        }
    }

    async fn clear_inner(&self, key: &str) -> Result<(), StorageError> {
        self.inner.fallback.clear_now(key);
        let cmd = {
            let mut cmd = ::redis::cmd("DEL");
            cmd.arg(key);
            cmd
        };
        let result = self
            .guarded(|| self.inner.pools.query(&cmd, None, Repeat::Safe))
            .await;
        // After the DEL, as after a refund (see `refund_inner`).
        if let Some(cache) = &self.inner.blocks {
            cache.remove(key);
        }
        match result {
            Ok(_) => Ok(()),
            Err(e) if self.inner.options.on_failure == FailurePolicy::FailClosed => Err(e),
            Err(_) => Ok(()),
        }
    }

    async fn reset_inner(&self) -> Result<(), StorageError> {
        self.inner.fallback.reset_now();
        // Every counter key is `{prefix}{{client}}...` (see `crate::keys`): matching the brace
        // too leaves alone the keys of a longer prefix ("api2" beside "api") and anything
        // else that merely begins with this one ("api-sessions:42").
        let pattern = format!("{}{{*", glob_escape(&self.inner.options.key_prefix));
        let deadline = conn::admin_deadline(self.inner.options.deadline);
        let deleted = self.inner.pools.scan_delete(&pattern, deadline).await;
        // After the deletion, as after a refund (see `refund_inner`).
        if let Some(cache) = &self.inner.blocks {
            cache.clear();
        }
        let deleted = deleted?;
        tracing::info!("redis storage reset: deleted {deleted} keys matching {pattern}");
        Ok(())
    }

    async fn health_inner(&self) -> Result<(), StorageError> {
        let ping = ::redis::cmd("PING");
        let deadline = self.inner.options.deadline;
        match tokio::time::timeout(deadline, self.inner.pools.query(&ping, None, Repeat::Safe))
            .await
        {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(StorageError::Timeout(deadline)),
        }
    }
}

impl Storage for RedisStore {
    fn decide(
        &self,
        hits: &[Hit<'_>],
        now: Timestamp,
    ) -> impl Future<Output = Result<Decision, StorageError>> + Send {
        // Answered before the future exists: the round trip's future would be moved around
        // for nothing; it is boxed, and only made when needed. It is 1 032 bytes on x86-64,
        // just within what glibc serves from its per-thread cache (up to 1 032 bytes): keep it so.
        let local = self.decide_locally(hits, now);
        async move {
            match local {
                Some(decision) => Ok(decision),
                None => Box::pin(self.decide_inner(hits, now)).await,
            }
        }
    }

    fn refund(
        &self,
        hits: &[Hit<'_>],
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.refund_inner(hits, now)
    }

    /// One script call for both (a refund then a decision when the keys span several
    /// cluster slots); only the refund when the block cache already denies `hits`.
    async fn refund_and_decide(
        &self,
        refunds: &[Hit<'_>],
        hits: &[Hit<'_>],
        now: Timestamp,
    ) -> Result<Decision, StorageError> {
        if refunds.is_empty() || hits.is_empty() {
            self.refund_inner(refunds, now).await?;
            return self.decide(hits, now).await;
        }
        self.unblock(refunds);
        if let Some(decision) = self.decide_locally(hits, now) {
            // The denial stands whether or not the refund gets through.
            if let Err(error) = self.refund_inner(refunds, now).await {
                tracing::warn!(%error, "rate limit refund failed; the charge stands");
            }
            return Ok(decision);
        }
        Box::pin(self.refund_and_decide_inner(refunds, hits, now)).await
    }

    fn peek(
        &self,
        hits: &[Hit<'_>],
        now: Timestamp,
    ) -> impl Future<Output = Result<Decision, StorageError>> + Send {
        let local = self.decide_locally(hits, now);
        async move {
            match local {
                Some(decision) => Ok(decision),
                None => Box::pin(self.peek_inner(hits, now)).await,
            }
        }
    }

    fn clear(&self, key: &str) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.clear_inner(key)
    }

    /// Deletes the counter keys of the configured `key_prefix`, `prefix{...}` (SCAN MATCH
    /// `prefix{*` + UNLINK, on every primary of a cluster; each round trip has at least 2 s):
    /// other keys that merely begin with the prefix stay. And the fallback's counters.
    fn reset(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.reset_inner()
    }

    fn health_check(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.health_inner()
    }
}

fn strategy_code(strategy: Strategy) -> u8 {
    match strategy {
        Strategy::FixedWindow => 0,
        Strategy::FixedWindowElastic => 1,
        Strategy::MovingWindow => 2,
        Strategy::MovingWindowElastic => 3,
        Strategy::SlidingWindowCounter => 4,
        Strategy::Gcra => 5,
    }
}

/// The script's reply: one string of 4 integers per limit, separated by single spaces.
fn parse_stats(value: &Value, hits: &[Hit<'_>]) -> Result<StatsList, StorageError> {
    let bad = || StorageError::Backend(format!("unexpected script reply {value:?}"));
    let Value::BulkString(bytes) = value else {
        return Err(bad());
    };
    if hits.is_empty() && bytes.is_empty() {
        return Ok(StatsList::new());
    }
    let mut numbers = bytes
        .split(|&b| b == b' ')
        .map(|field| parse_integer(field).ok_or_else(bad));
    let mut next = || numbers.next().unwrap_or_else(|| Err(bad()));
    let stats = hits
        .iter()
        .map(|hit| {
            let (admitted, remaining, reset, retry) = (next()?, next()?, next()?, next()?);
            Ok(LimitStats {
                admitted: admitted == 1,
                limit: hit.rate.amount(),
                remaining: u64::try_from(remaining).map_err(|_| bad())?,
                reset: Timestamp::from_micros(u64::try_from(reset).map_err(|_| bad())?),
                retry_after: u64::try_from(retry).ok().map(Duration::from_micros),
            })
        })
        .collect::<Result<StatsList, StorageError>>()?;
    if numbers.next().is_some() {
        return Err(bad());
    }
    Ok(stats)
}

/// A decimal integer as the script writes it (`-?[0-9]+`), without the UTF-8 check and the
/// generic parser: four of them per limit are read on every decision.
fn parse_integer(field: &[u8]) -> Option<i64> {
    let (negative, digits) = match field {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, field),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for &b in digits {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i64::from(digit))?;
    }
    Some(if negative { -value } else { value })
}

/// Escapes glob characters so that SCAN MATCH takes the prefix literally.
fn glob_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 4);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Whether a call goes to Redis: always while healthy; while degraded, one call at a time
/// once the backoff has passed (the probe), and otherwise none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attempt {
    Healthy,
    Probe,
    Skip,
}

/// Tracks Redis' health: switches to the failure policy on the first failure and back on
/// the first success, logging each switch once.
struct Breaker {
    epoch: Instant,
    degraded: AtomicBool,
    probing: AtomicBool,
    /// Micros since `epoch` when degraded began, and when the next probe is due.
    since: AtomicU64,
    next_probe: AtomicU64,
    /// Current wait between probes, in micros.
    backoff: AtomicU64,
    initial_backoff: u64,
}

impl Breaker {
    fn new(initial_backoff: u64) -> Breaker {
        Breaker {
            epoch: Instant::now(),
            degraded: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            since: AtomicU64::new(0),
            next_probe: AtomicU64::new(0),
            backoff: AtomicU64::new(initial_backoff),
            initial_backoff,
        }
    }

    fn elapsed(&self) -> u64 {
        duration_micros(self.epoch.elapsed())
    }

    fn attempt(&self) -> Attempt {
        if !self.degraded.load(Ordering::Acquire) {
            return Attempt::Healthy;
        }
        if self.elapsed() >= self.next_probe.load(Ordering::Acquire)
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Attempt::Probe;
        }
        Attempt::Skip
    }

    fn success(&self, attempt: Attempt, fallback: &MemoryStore) {
        if attempt == Attempt::Healthy && !self.degraded.load(Ordering::Acquire) {
            return;
        }
        if self
            .degraded
            .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let outage = self
                .elapsed()
                .saturating_sub(self.since.load(Ordering::Acquire));
            // Counts made during the outage stay with this process; Redis has its own.
            fallback.reset_now();
            tracing::info!(
                "redis storage answers again after {:?}: deciding on redis again",
                Duration::from_micros(outage)
            );
        }
        self.backoff.store(self.initial_backoff, Ordering::Release);
    }

    fn failure(&self, attempt: Attempt, error: &StorageError, options: &RedisOptions) {
        let now = self.elapsed();
        match attempt {
            Attempt::Healthy => {
                if self
                    .degraded
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.since.store(now, Ordering::Release);
                    self.backoff.store(self.initial_backoff, Ordering::Release);
                    self.next_probe
                        .store(now.saturating_add(self.initial_backoff), Ordering::Release);
                    let what = match options.on_failure {
                        FailurePolicy::FallbackToMemory => "deciding in process memory",
                        FailurePolicy::FailOpen => "admitting every request",
                        FailurePolicy::FailClosed => "failing every request",
                    };
                    tracing::warn!(
                        "redis storage failed ({error}); {what} until it answers again \
                         (first probe in {:?})",
                        options.probe_min
                    );
                }
            }
            Attempt::Probe => {
                let max = duration_micros(options.probe_max).max(self.initial_backoff);
                // At least 1 µs before doubling (a backoff of 0 would never grow), at most
                // `max`, which may be 0: no backoff, a probe on every request.
                let backoff = self
                    .backoff
                    .load(Ordering::Acquire)
                    .saturating_mul(2)
                    .max(1)
                    .min(max);
                self.backoff.store(backoff, Ordering::Release);
                self.next_probe
                    .store(now.saturating_add(backoff), Ordering::Release);
                tracing::debug!(
                    "redis storage still failing ({error}); next probe in {:?}",
                    Duration::from_micros(backoff)
                );
            }
            Attempt::Skip => {}
        }
    }
}

/// Holds the breaker's single probe slot; dropping it frees the slot.
struct ProbeSlot<'a>(&'a AtomicBool);

impl Drop for ProbeSlot<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The time a script decides at.
#[derive(Clone, Copy, Debug)]
enum ScriptNow {
    /// The caller's, in microseconds.
    Caller(u64),
    /// The server's `TIME`, less `ago` microseconds.
    Server { ago: u64 },
}

impl ScriptNow {
    /// The caller's time, if the script decides at it.
    fn caller(self) -> Option<u64> {
        match self {
            ScriptNow::Caller(micros) => Some(micros),
            ScriptNow::Server { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_integer;

    #[test]
    fn script_integers_parse_and_anything_else_is_refused() {
        let cases: [(&[u8], Option<i64>); 10] = [
            (b"0", Some(0)),
            (b"-1", Some(-1)),
            (b"1795857443000000", Some(1_795_857_443_000_000)),
            (b"9223372036854775807", Some(i64::MAX)),
            (b"9223372036854775808", None),
            (b"", None),
            (b"-", None),
            (b"1.5", None),
            (b"+1", None),
            (b" 1", None),
        ];
        for (field, expected) in cases {
            assert_eq!(
                parse_integer(field),
                expected,
                "{:?}",
                String::from_utf8_lossy(field)
            );
        }
    }
}
