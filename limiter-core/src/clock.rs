//! Time: microseconds since the Unix epoch, from the system clock or a manual one for tests.
//!
//! Every decision takes "now" as an argument, so storage back-ends (including Redis scripts)
//! never read a clock of their own and tests can drive them without sleeping.
//!
//! ```
//! use limiter_core::{Clock, ManualClock, Timestamp};
//! use std::time::Duration;
//!
//! let manual = ManualClock::new(Timestamp::from_secs(60));
//! let clock = Clock::from(manual.clone());
//! manual.advance(Duration::from_millis(1_500));
//! assert_eq!(clock.now(), Timestamp::from_micros(61_500_000));
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time: microseconds since the Unix epoch.
///
/// Microseconds keep every timestamp exact in a Lua number (a double) for the next 280 years,
/// which the Redis scripts rely on.
///
/// ```
/// use limiter_core::Timestamp;
/// use std::time::Duration;
///
/// let reset = Timestamp::from_secs(120);
/// assert_eq!(reset.as_micros(), 120_000_000);
/// assert_eq!(reset.to_string(), "120.000000");
/// assert_eq!(reset.saturating_since(Timestamp::from_secs(90)), Duration::from_secs(30));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The epoch itself.
    ///
    /// ```
    /// use limiter_core::Timestamp;
    /// assert_eq!(Timestamp::ZERO, Timestamp::default());
    /// assert_eq!(Timestamp::ZERO.as_micros(), 0);
    /// ```
    pub const ZERO: Timestamp = Timestamp(0);

    /// A timestamp `micros` microseconds after the epoch.
    ///
    /// ```
    /// use limiter_core::Timestamp;
    /// assert_eq!(Timestamp::from_micros(1_500_000).to_string(), "1.500000");
    /// ```
    pub const fn from_micros(micros: u64) -> Self {
        Timestamp(micros)
    }

    /// A timestamp `secs` seconds after the epoch (the latest one past 584 000 years).
    ///
    /// ```
    /// use limiter_core::Timestamp;
    /// assert_eq!(Timestamp::from_secs(2), Timestamp::from_micros(2_000_000));
    /// assert_eq!(Timestamp::from_secs(u64::MAX), Timestamp::from_micros(u64::MAX));
    /// ```
    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000))
    }

    /// Microseconds since the epoch.
    ///
    /// ```
    /// use limiter_core::Timestamp;
    /// assert_eq!(Timestamp::from_secs(3).as_micros(), 3_000_000);
    /// ```
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Seconds since the epoch, rounded up: what an `X-RateLimit-Reset` header shows.
    ///
    /// ```
    /// use limiter_core::Timestamp;
    /// assert_eq!(Timestamp::from_secs(60).as_secs_ceil(), 60);
    /// // A reset one microsecond past a second is announced as the next second.
    /// assert_eq!(Timestamp::from_micros(60_000_001).as_secs_ceil(), 61);
    /// ```
    pub const fn as_secs_ceil(self) -> u64 {
        self.0.div_ceil(1_000_000)
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    ///
    /// ```
    /// use limiter_core::Timestamp;
    /// use std::time::Duration;
    /// let (earlier, later) = (Timestamp::from_secs(10), Timestamp::from_micros(11_500_000));
    /// assert_eq!(later.saturating_since(earlier), Duration::from_millis(1_500));
    /// assert_eq!(earlier.saturating_since(later), Duration::ZERO);
    /// ```
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating.
    ///
    /// ```
    /// use limiter_core::Timestamp;
    /// use std::time::Duration;
    /// let t = Timestamp::from_secs(1).saturating_add(Duration::from_millis(250));
    /// assert_eq!(t, Timestamp::from_micros(1_250_000));
    /// assert_eq!(t.saturating_add(Duration::MAX).as_micros(), u64::MAX);
    /// ```
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_micros(d)))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

pub(crate) fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Where a limiter reads "now": the system clock (the default), or a [`ManualClock`] in
/// tests.
///
/// ```
/// use limiter_core::{Clock, ManualClock, Timestamp};
///
/// // Production code keeps the default; tests hand the same code a manual clock.
/// fn window_index(clock: &Clock) -> u64 {
///     clock.now().as_micros() / 60_000_000
/// }
/// let manual = ManualClock::new(Timestamp::from_secs(125));
/// assert_eq!(window_index(&Clock::from(manual)), 2);
/// assert!(window_index(&Clock::default()) > 0);
/// ```
#[derive(Clone, Debug)]
pub struct Clock {
    manual: Option<ManualClock>,
}

impl Clock {
    /// The system's wall clock (windows align to it: a minute window resets at the top of
    /// each minute).
    ///
    /// The first call in a process calibrates the CPU's time-stamp counter, which the clock
    /// reads, against the system clock: about a millisecond (more on a busy virtual machine),
    /// paid here, when a limiter is built, rather than by the first request.
    ///
    /// ```
    /// use limiter_core::{Clock, Timestamp};
    /// let clock = Clock::system();
    /// assert!(!clock.is_manual());
    /// assert!(clock.now() > Timestamp::from_secs(1_600_000_000)); // after September 2020
    /// ```
    pub fn system() -> Clock {
        tsc();
        Clock { manual: None }
    }

    /// The current time.
    ///
    /// ```
    /// use limiter_core::{Clock, ManualClock, Timestamp};
    /// let clock = Clock::from(ManualClock::new(Timestamp::from_secs(5)));
    /// assert_eq!(clock.now(), Timestamp::from_secs(5));
    /// ```
    #[inline]
    pub fn now(&self) -> Timestamp {
        match &self.manual {
            None => system_now(),
            Some(manual) => manual.now(),
        }
    }

    /// Whether this clock is a manual one.
    ///
    /// ```
    /// use limiter_core::{Clock, ManualClock};
    /// assert!(Clock::from(ManualClock::default()).is_manual());
    /// assert!(!Clock::system().is_manual());
    /// ```
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }
}

/// Wall-clock microseconds, read through the CPU's time-stamp counter.
///
/// Reading the system clock costs ~40 ns on some virtual machines, as much as the rest of a
/// decision. The TSC (through `quanta`) costs a few; its offset to the wall clock is
/// re-measured every second, so the result follows the system clock (NTP slews and steps
/// included) within a second.
fn system_now() -> Timestamp {
    static OFFSET: AtomicU64 = AtomicU64::new(0);
    static ANCHORED_AT: AtomicU64 = AtomicU64::new(0);
    let tsc = tsc();
    let mono = tsc.clock.delta_as_nanos(tsc.start, tsc.clock.raw()) / 1_000;
    // Acquire, paired with the Release below: a reader that sees an anchor sees the offset
    // stored with it (at start-up, the first offset rather than 0, a time in 1970).
    let anchored_at = ANCHORED_AT.load(Ordering::Acquire);
    if anchored_at == 0 || mono.wrapping_sub(anchored_at) > 1_000_000 {
        let wall = duration_micros(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        );
        OFFSET.store(wall.wrapping_sub(mono), Ordering::Relaxed);
        ANCHORED_AT.store(mono.max(1), Ordering::Release);
        return Timestamp(wall);
    }
    Timestamp(mono.wrapping_add(OFFSET.load(Ordering::Relaxed)))
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

/// The calibrated time-stamp counter [`system_now`] reads, and its reading when calibrated.
struct Tsc {
    clock: quanta::Clock,
    start: u64,
}

/// The process's [`Tsc`], calibrated on first use.
fn tsc() -> &'static Tsc {
    static TSC: OnceLock<Tsc> = OnceLock::new();
    TSC.get_or_init(|| {
        let clock = quanta::Clock::new();
        let start = clock.raw();
        Tsc { clock, start }
    })
}

impl From<ManualClock> for Clock {
    fn from(manual: ManualClock) -> Clock {
        Clock {
            manual: Some(manual),
        }
    }
}

/// A clock that moves only when told to; clones share the same time.
///
/// ```
/// use limiter_core::{Clock, ManualClock, Timestamp};
/// use std::time::Duration;
///
/// let manual = ManualClock::new(Timestamp::from_secs(60));
/// // The limiter keeps one clone; the test moves the other.
/// let clock = Clock::from(manual.clone());
/// manual.advance(Duration::from_secs(30));
/// assert_eq!(clock.now(), Timestamp::from_secs(90));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    micros: Arc<AtomicU64>,
}

impl ManualClock {
    /// A manual clock showing `start`.
    ///
    /// ```
    /// use limiter_core::{ManualClock, Timestamp};
    /// assert_eq!(ManualClock::new(Timestamp::from_secs(7)).now(), Timestamp::from_secs(7));
    /// // The default one starts at the epoch.
    /// assert_eq!(ManualClock::default().now(), Timestamp::ZERO);
    /// ```
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            micros: Arc::new(AtomicU64::new(start.0)),
        }
    }

    /// The time it shows.
    ///
    /// ```
    /// use limiter_core::{ManualClock, Timestamp};
    /// use std::time::Duration;
    /// let manual = ManualClock::new(Timestamp::from_secs(1));
    /// manual.advance(Duration::from_micros(1));
    /// assert_eq!(manual.now(), Timestamp::from_micros(1_000_001));
    /// ```
    pub fn now(&self) -> Timestamp {
        Timestamp(self.micros.load(Ordering::Acquire))
    }

    /// Moves it forward by `d` (up to the latest timestamp, never around to the earliest).
    ///
    /// ```
    /// use limiter_core::{ManualClock, Timestamp};
    /// use std::time::Duration;
    /// let manual = ManualClock::new(Timestamp::from_secs(59));
    /// manual.advance(Duration::from_millis(1_500));
    /// assert_eq!(manual.now(), Timestamp::from_micros(60_500_000));
    /// manual.advance(Duration::MAX);
    /// assert_eq!(manual.now(), Timestamp::from_micros(u64::MAX));
    /// ```
    pub fn advance(&self, d: Duration) {
        let step = duration_micros(d);
        // `fetch_update` only fails when the closure answers None, which it never does.
        let _ = self
            .micros
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(step))
            });
    }

    /// Sets it to `t` (which may be earlier: a clock stepping back must not break anything).
    ///
    /// ```
    /// use limiter_core::{Hit, ManualClock, MemoryStore, Rate, Strategy, Timestamp};
    ///
    /// let manual = ManualClock::new(Timestamp::from_secs(120));
    /// let store = MemoryStore::default();
    /// let hit = [Hit::new("k", Rate::parse("1 per minute").unwrap(), Strategy::FixedWindow)];
    /// assert!(store.decide_now(&hit, manual.now()).admitted);
    /// // A step back into the previous minute does not reopen it: the key stays in its window.
    /// manual.set(Timestamp::from_secs(90));
    /// assert!(!store.decide_now(&hit, manual.now()).admitted);
    /// ```
    pub fn set(&self, t: Timestamp) {
        self.micros.store(t.0, Ordering::Release);
    }
}
