//! The six strategies, as pure state machines over one key's state.
//!
//! Every storage back-end runs exactly this arithmetic (the Redis scripts mirror it line by
//! line, floating-point operations in the same order), so memory and Redis agree on every
//! decision. Times are microseconds since the epoch; `p` is the period, `n` the amount.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::error::ConfigError;
use crate::rate::{MAX_PERIOD_SECS, Rate};

mod hit_log;

use hit_log::HitLog;

/// The latest "now" a decision is made at: four of the longest periods short of the end of
/// `u64` (584 000 years on). A later time, from a manual clock set there, decides as this one,
/// so that the end of a window or bucket, up to two periods after it, never overflows.
pub(crate) const LATEST_MICROS: u64 = u64::MAX - 4 * MAX_PERIOD_SECS * 1_000_000;

/// How hits are counted against a rate; names as in Flask-Limiter's `strategy` setting.
///
/// ```
/// use limiter_core::Strategy;
/// assert_eq!("moving-window".parse::<Strategy>().unwrap(), Strategy::MovingWindow);
/// assert_eq!("token-bucket".parse::<Strategy>().unwrap(), Strategy::Gcra);
/// assert!("leaky".parse::<Strategy>().unwrap_err().to_string().contains("fixed-window"));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// A counter per clock-aligned window: a minute window resets at the top of each minute.
    #[default]
    FixedWindow,
    /// A fixed window whose end moves to now + period on every hit, rejected ones included:
    /// a client that keeps hammering stays blocked until it pauses for a full period.
    FixedWindowElastic,
    /// An exact log: at most N hits in any rolling period.
    MovingWindow,
    /// A moving window that records rejected hits too (the log keeps the N newest).
    MovingWindowElastic,
    /// Two clock-aligned buckets, the previous one weighted by the part of it still inside the
    /// rolling window (O(1) memory).
    SlidingWindowCounter,
    /// Generic cell rate algorithm: a burst of N, then one more every period / N.
    Gcra,
}

impl Strategy {
    /// Every strategy, in documentation order.
    ///
    /// ```
    /// use limiter_core::Strategy;
    /// // Every strategy's name parses back to it.
    /// for strategy in Strategy::ALL {
    ///     assert_eq!(strategy.name().parse::<Strategy>().unwrap(), strategy);
    /// }
    /// assert_eq!(Strategy::ALL[0], Strategy::default());
    /// ```
    pub const ALL: [Strategy; 6] = [
        Strategy::FixedWindow,
        Strategy::FixedWindowElastic,
        Strategy::MovingWindow,
        Strategy::MovingWindowElastic,
        Strategy::SlidingWindowCounter,
        Strategy::Gcra,
    ];

    /// The canonical name (`fixed-window`, `moving-window`, ...).
    ///
    /// ```
    /// use limiter_core::Strategy;
    /// assert_eq!(Strategy::FixedWindowElastic.name(), "fixed-window-elastic-expiry");
    /// assert_eq!(Strategy::Gcra.to_string(), "gcra");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            Strategy::FixedWindow => "fixed-window",
            Strategy::FixedWindowElastic => "fixed-window-elastic-expiry",
            Strategy::MovingWindow => "moving-window",
            Strategy::MovingWindowElastic => "moving-window-elastic",
            Strategy::SlidingWindowCounter => "sliding-window-counter",
            Strategy::Gcra => "gcra",
        }
    }

    /// Whether rejected hits are recorded too.
    ///
    /// ```
    /// use limiter_core::{Hit, MemoryStore, Rate, Strategy, Timestamp};
    /// use std::time::Duration;
    ///
    /// assert!(Strategy::FixedWindowElastic.is_elastic() && !Strategy::FixedWindow.is_elastic());
    /// let store = MemoryStore::default();
    /// let hit = [Hit::new("k", Rate::parse("1 per minute").unwrap(), Strategy::FixedWindowElastic)];
    /// assert!(store.decide_now(&hit, Timestamp::from_secs(0)).admitted);
    /// // A rejected hit at 50 s pushes the window's end to 110 s.
    /// let denied = store.decide_now(&hit, Timestamp::from_secs(50));
    /// assert_eq!(denied.retry_after, Some(Duration::from_secs(60)));
    /// ```
    pub const fn is_elastic(self) -> bool {
        matches!(
            self,
            Strategy::FixedWindowElastic | Strategy::MovingWindowElastic
        )
    }
}

/// Every name [`Strategy::from_str`] takes (after `_` becomes `-`, case aside), aliases
/// included.
pub(crate) const STRATEGY_NAMES: [(&str, Strategy); 9] = [
    ("fixed-window", Strategy::FixedWindow),
    ("fixed-window-elastic-expiry", Strategy::FixedWindowElastic),
    ("fixed-window-elastic", Strategy::FixedWindowElastic),
    ("moving-window", Strategy::MovingWindow),
    ("moving-window-elastic", Strategy::MovingWindowElastic),
    ("sliding-window-counter", Strategy::SlidingWindowCounter),
    ("sliding-window", Strategy::SlidingWindowCounter),
    ("gcra", Strategy::Gcra),
    ("token-bucket", Strategy::Gcra),
];

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let normalized = s.trim().to_ascii_lowercase().replace('_', "-");
        STRATEGY_NAMES
            .iter()
            .find(|(name, _)| *name == normalized)
            .map(|&(_, strategy)| strategy)
            .ok_or_else(|| ConfigError::UnknownStrategy {
                value: s.to_string(),
            })
    }
}

/// What one limit says about one request.
///
/// ```
/// use limiter_core::{Hit, LimitStats, MemoryStore, Rate, Strategy, Timestamp};
/// use std::time::Duration;
///
/// let store = MemoryStore::default();
/// let hit = [Hit::new("k", Rate::parse("2 per minute").unwrap(), Strategy::FixedWindow)];
/// let now = Timestamp::from_secs(90);
/// let first = store.decide_now(&hit, now).stats[0];
/// assert_eq!(
///     first,
///     LimitStats { admitted: true, limit: 2, remaining: 1, reset: Timestamp::from_secs(120), retry_after: None }
/// );
/// store.decide_now(&hit, now);
/// let third = store.decide_now(&hit, now).stats[0];
/// assert_eq!((third.remaining, third.retry_after), (0, Some(Duration::from_secs(30))));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitStats {
    /// Whether this limit admits the request.
    pub admitted: bool,
    /// The rate's amount.
    pub limit: u64,
    /// Hits left in the current window after this decision.
    pub remaining: u64,
    /// When the window resets (strategy-specific; see the README's strategy table).
    pub reset: Timestamp,
    /// For a denial: how long until the same request would pass.
    pub retry_after: Option<Duration>,
}

/// One key's state. Each strategy uses its own variant; a key met with another strategy
/// starts afresh. Every variant knows when it expires without being told the rate, and the
/// whole enum is 24 bytes, so a memory-store slot (key + state) fills half a cache line.
#[derive(Clone, Debug, Default)]
pub(crate) enum State {
    #[default]
    Empty,
    /// Fixed window: `end` is the current window's end.
    Window { end: u64, count: u64 },
    /// Elastic fixed window.
    Elastic(ElasticWindow),
    /// Sliding window counter: `expires` is the current bucket's end plus one period (when
    /// the current bucket stops weighing in). Counts saturate at `u32::MAX`.
    Sliding {
        expires: u64,
        current: u32,
        previous: u32,
    },
    /// GCRA's bucket.
    Gcra(GcraBucket),
    /// Moving window log: hit times, oldest first; never longer than the rate's amount.
    Log(HitLog),
}

/// An elastic fixed window: it began at `start` (a refund dated before that is for an earlier
/// window, which has ended) and ends at `expires`. The count never exceeds an amount, so fits
/// 32 bits; packed, the three fit beside the log's variant in 24 bytes (fields are read and
/// written by value, never borrowed).
#[derive(Clone, Copy, Debug)]
#[repr(C, packed(4))]
pub(crate) struct ElasticWindow {
    expires: u64,
    start: u64,
    count: u32,
}

/// GCRA's theoretical arrival time `tat`; when a charge last found the bucket drained
/// (`tat` at or before its time: the charges before it no longer count, so a refund dated
/// before `drained` gives nothing back); and the emission interval it was charged with, kept
/// to spare each decision a 64-bit division (checked against the rate every time; 0 when it
/// does not fit 32 bits, over 71 minutes, and is worked out each time). Packed, as
/// [`ElasticWindow`] is, to keep [`State`] at 24 bytes.
#[derive(Clone, Copy, Debug)]
#[repr(C, packed(4))]
pub(crate) struct GcraBucket {
    tat: u64,
    drained: u64,
    interval: u32,
}

// A slot is the key's 8 bytes and this: two slots to a cache line.
const _: () = assert!(std::mem::size_of::<State>() == 24);

/// Peek reports without changing what counts; Hit charges an admitted request and, for the
/// elastic strategies, records a rejected one; Charge charges an admitted request only (a
/// batch's charge, whose denial is recorded once the batch's earlier charges are undone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Peek,
    Charge,
    Hit,
}

fn stats(admitted: bool, n: u64, remaining: u64, reset: u64, retry: Option<u64>) -> LimitStats {
    LimitStats {
        admitted,
        limit: n,
        remaining,
        reset: Timestamp::from_micros(reset),
        retry_after: retry.map(Duration::from_micros),
    }
}

impl State {
    /// Decides one request of `cost` units at `now` and returns the limit's stats.
    // Inlined so the stats are written straight where the caller keeps them: returned through
    // memory, their reload stalls on store forwarding, a third of a decision's time.
    #[inline(always)]
    pub(crate) fn decide(
        &mut self,
        strategy: Strategy,
        rate: &Rate,
        now: Timestamp,
        cost: u64,
        action: Action,
    ) -> LimitStats {
        let (t, p, n) = (
            now.as_micros().min(LATEST_MICROS),
            rate.period_micros(),
            rate.amount(),
        );
        let hit = action != Action::Peek;
        let record_denial = action == Action::Hit;
        // A request that can never pass (cost over the amount, `0 per ...`) is told to retry
        // after a full period: there is no earlier time to name.
        let impossible = cost > n;
        match strategy {
            Strategy::FixedWindow => {
                // The state's own window spares the hot path a 64-bit division. A request
                // dated before it (a clock behind another's, or a thread that read the clock
                // before another took the lock) counts in it: a key's state never moves back.
                let count = match self {
                    State::Window { end, count } if t < *end => count,
                    // A window that has ended (or none) is replaced only by a request charged
                    // in the fresh one (it fits there unless it never can).
                    _ if !(hit && cost <= n) => {
                        return uncounted(window_start(t, p) + p, p, n, cost);
                    }
                    _ => {
                        *self = State::Window {
                            end: window_start(t, p) + p,
                            count: 0,
                        };
                        let State::Window { count, .. } = self else {
                            unreachable!()
                        };
                        count
                    }
                };
                let admitted = count.saturating_add(cost) <= n;
                if hit && admitted {
                    *count += cost;
                }
                let count = *count;
                let State::Window { end: reset, .. } = *self else {
                    unreachable!()
                };
                let retry = (!admitted).then(|| if impossible { p } else { reset - t });
                stats(admitted, n, n.saturating_sub(count), reset, retry)
            }
            Strategy::FixedWindowElastic => {
                let mut window = match self {
                    State::Elastic(window) if t < { window.expires } => *window,
                    // As for the fixed window: a window that has ended (or none) is replaced
                    // only by a hit that charges or records.
                    _ if !(hit && (cost <= n || record_denial)) => {
                        return uncounted(t + p, p, n, cost);
                    }
                    _ => ElasticWindow {
                        expires: t + p,
                        start: t,
                        count: 0,
                    },
                };
                let admitted = u64::from(window.count).saturating_add(cost) <= n;
                if hit && (admitted || record_denial) {
                    if admitted {
                        // At most the amount, which fits 32 bits.
                        window.count += cost as u32;
                    }
                    // Never back: after the clock stepped back, t + p may fall before the end
                    // a later hit set.
                    window.expires = { window.expires }.max(t + p);
                    *self = State::Elastic(window);
                }
                let reset = window.expires;
                let retry = (!admitted).then(|| if impossible { p } else { reset - t });
                stats(
                    admitted,
                    n,
                    n.saturating_sub(u64::from(window.count)),
                    reset,
                    retry,
                )
            }
            Strategy::MovingWindow | Strategy::MovingWindowElastic => {
                if !matches!(self, State::Log(_)) {
                    *self = State::Log(HitLog::new());
                }
                let State::Log(log) = self else {
                    unreachable!()
                };
                log.expire(t, p);
                let used = log.len();
                let admitted = used.saturating_add(cost) <= n;
                if hit && (admitted || record_denial && strategy == Strategy::MovingWindowElastic) {
                    // The log keeps the n newest of its entries and `record` hits at t. The
                    // oldest ones go before the push, so the log never outgrows n.
                    // After the clock stepped back, hits are logged at the newest time the
                    // log holds: the log stays in order, and its newest entry says when the
                    // whole log expires.
                    let at = log.back().map_or(t, |newest| newest.max(t));
                    let record = cost.min(n);
                    let excess = (used + record).saturating_sub(n);
                    log.drop_then_push(excess, at, record - excess.saturating_sub(used), p, n);
                }
                let used = log.len();
                let reset = log.front().map_or(t + p, |oldest| oldest + p);
                let retry = (!admitted).then(|| {
                    if impossible {
                        return p;
                    }
                    // The request fits once `used + cost - n` of the oldest hits have expired:
                    // none for a cost-0 elastic hit, whose record just trimmed a log that a
                    // smaller rate had left longer than n.
                    let must_expire = used + cost - n;
                    // Saturating, though the log is in order (see the push above) and its
                    // expired front is gone: the retry must never wrap.
                    must_expire
                        .checked_sub(1)
                        .map_or(0, |i| (log.get(i) + p).saturating_sub(t))
                });
                stats(admitted, n, n.saturating_sub(used), reset, retry)
            }
            Strategy::SlidingWindowCounter => match self {
                // The hot path: the state's current bucket, [expires - 2p, expires - p),
                // holds t. One wrapping comparison.
                State::Sliding {
                    expires,
                    current,
                    previous,
                } if t.wrapping_sub(expires.wrapping_sub(2 * p)) < p => {
                    let start = *expires - 2 * p;
                    sliding_decide(current, *previous, start, t - start, 0, p, n, cost, hit)
                }
                _ => self.decide_sliding_elsewhere(t, p, n, cost, hit),
            },
            Strategy::Gcra => {
                if n == 0 {
                    return stats(false, 0, 0, t, Some(p));
                }
                let mut bucket = match self {
                    State::Gcra(bucket) => *bucket,
                    // As for the windows, a fresh state is written only by a charge: a full
                    // bucket, which admits what can ever pass.
                    _ if !(hit && cost <= n) => return uncounted(t, p, n, cost),
                    _ => GcraBucket {
                        tat: t,
                        drained: t,
                        interval: 0,
                    },
                };
                let interval = match u64::from(bucket.interval) {
                    cached if is_gcra_interval(cached, p, n) => cached,
                    _ => gcra_interval(p, n),
                };
                let tolerance = n * interval;
                let tat = bucket.tat;
                let base = tat.max(t);
                let new_tat = base.saturating_add(cost.saturating_mul(interval));
                let admitted = new_tat - t <= tolerance;
                let after = if hit && admitted {
                    if tat <= t {
                        bucket.drained = t;
                    }
                    bucket.tat = new_tat;
                    bucket.interval = u32::try_from(interval).unwrap_or(0);
                    *self = State::Gcra(bucket);
                    new_tat
                } else {
                    base
                };
                // Saturating: after the clock stepped back, the TAT may lie further ahead
                // than the tolerance.
                let remaining = tolerance.saturating_sub(after - t) / interval;
                let retry = (!admitted).then(|| {
                    if impossible {
                        p
                    } else {
                        new_tat - t - tolerance
                    }
                });
                stats(admitted, n, remaining, after, retry)
            }
        }
    }

    /// The sliding window counter's slow path: `t` is outside the state's current bucket (or
    /// there is no sliding state). Decides in the bucket a request at `t` counts in: the
    /// state's own when `t` is before it (a key's state never moves back), else the one
    /// holding `t`, the state's current count becoming the previous one if adjacent. The
    /// state moves there only if the request is charged: a peek or a denial writes nothing
    /// (as on Redis), so a request dated earlier still counts in the state's bucket.
    // Inlined, rare as it is, like every slow path of `decide`: stats returned from a call
    // are written to memory and read back, and that stall showed on every strategy's hot
    // path (5 % more time for the same instructions).
    #[inline(always)]
    fn decide_sliding_elsewhere(
        &mut self,
        t: u64,
        p: u64,
        n: u64,
        cost: u64,
        hit: bool,
    ) -> LimitStats {
        let start = window_start(t, p);
        let (start, mut current, previous) = match *self {
            State::Sliding {
                expires,
                current,
                previous,
            } => {
                // Saturating: a state another rate left may end before 2p.
                let own = expires.saturating_sub(2 * p);
                if t < own + p {
                    (own, current, previous)
                } else if own + p == start {
                    (start, 0, current)
                } else {
                    (start, 0, 0)
                }
            }
            _ => (start, 0, 0),
        };
        // A request dated before the bucket counts as at its start (the previous bucket
        // weighs in whole), and waits for it.
        let (elapsed, wait) = (t.saturating_sub(start), start.saturating_sub(t));
        let stats = sliding_decide(
            &mut current,
            previous,
            start,
            elapsed,
            wait,
            p,
            n,
            cost,
            hit,
        );
        if hit && stats.admitted {
            *self = State::Sliding {
                expires: start + 2 * p,
                current,
                previous,
            };
        }
        stats
    }

    /// Gives back `cost` units that an earlier hit charged.
    pub(crate) fn refund(&mut self, strategy: Strategy, rate: &Rate, now: Timestamp, cost: u64) {
        let (t, p) = (now.as_micros().min(LATEST_MICROS), rate.period_micros());
        match (strategy, self) {
            (Strategy::FixedWindow, State::Window { end, count }) if t < *end && *end - t <= p => {
                *count = count.saturating_sub(cost);
            }
            // A charge made before the window began was for an earlier one (the client then
            // paused a full period), which has ended: nothing to give back in this one.
            (Strategy::FixedWindowElastic, State::Elastic(window))
                if window.start <= t && t < window.expires =>
            {
                let back = u32::try_from(cost).unwrap_or(u32::MAX);
                window.count = { window.count }.saturating_sub(back);
            }
            (Strategy::MovingWindow | Strategy::MovingWindowElastic, State::Log(log)) => {
                // `t` is when the charge was made: its hits were logged at `t` (later only
                // after the clock stepped back), and the log is in order. Hits logged after
                // them stay: the newest of those at most `t` go, none if the charge's have
                // expired since (taking later hits would let the client through early).
                let mut end = log.len();
                while end > 0 && log.get(end - 1) > t {
                    end -= 1;
                }
                log.remove_before(end, cost.min(end));
            }
            (
                Strategy::SlidingWindowCounter,
                State::Sliding {
                    expires,
                    current,
                    previous,
                },
            ) => {
                // `t` is when the charge was made (see `Storage::refund`). It stays in its
                // bucket, which weighs until the one after it ends: the current count, or the
                // previous one once the state has rolled past it. Whether a peek rolled the
                // state in between makes no difference.
                let start = *expires - 2 * p;
                let at = window_start(t, p);
                let cost = u32::try_from(cost).unwrap_or(u32::MAX);
                if at == start {
                    *current = current.saturating_sub(cost);
                } else if at.checked_add(p) == Some(start) {
                    *previous = previous.saturating_sub(cost);
                }
            }
            // A charge made before the bucket last drained no longer counts: nothing to give
            // back (taking an interval off the later charges would let the client through).
            (Strategy::Gcra, State::Gcra(bucket))
                if rate.amount() > 0 && { bucket.drained } <= t =>
            {
                let back = cost.saturating_mul(gcra_interval(p, rate.amount()));
                bucket.tat = { bucket.tat }.saturating_sub(back).max(t);
            }
            _ => {}
        }
    }

    /// Undoes the charge just made at the same time on a log (see [`State::snapshot`]): its
    /// hits are the newest, wherever the clock put them.
    pub(crate) fn undo_logged(&mut self, cost: u64) {
        if let State::Log(log) = self {
            log.truncate(log.len().saturating_sub(cost));
        }
    }

    /// A copy to restore if a charge of `strategy` must be undone, or `None` for the moving
    /// window's log met by its own strategies, whose charges [`State::undo_logged`] undoes (a
    /// copy would allocate).
    pub(crate) fn snapshot(&self, strategy: Strategy) -> Option<State> {
        let logged = matches!(
            strategy,
            Strategy::MovingWindow | Strategy::MovingWindowElastic
        );
        match self {
            // `undo_logged` undoes a charge on the log exactly (one that created the log from
            // nothing too, so an empty log and no state undo alike). A hit of another strategy
            // replaces the log, and a refund would not bring it back: that (rare) case clones it.
            State::Log(_) | State::Empty if logged => None,
            State::Log(log) => Some(State::Log(log.clone())),
            // SAFETY: every other variant holds only `Copy` data (no pointer, no `Drop`), so
            // a bitwise copy is a clone; the derived `clone` would branch on the variant.
            plain => Some(unsafe { std::ptr::read(plain) }),
        }
    }

    /// When this state becomes equivalent to no state at all, so storage may drop it.
    pub(crate) fn expires_at(&self) -> u64 {
        match self {
            State::Empty => 0,
            State::Window { end, .. } => *end,
            State::Elastic(window) => window.expires,
            State::Sliding { expires, .. } => *expires,
            State::Gcra(bucket) => bucket.tat,
            State::Log(log) => log.back().map_or(0, |newest| newest + log.period()),
        }
    }
}

/// The emission interval T of "n per p": at least one microsecond, rounded up so that a
/// steady client never gets more than n per p.
pub(crate) fn gcra_interval(p: u64, n: u64) -> u64 {
    p.div_ceil(n).max(1)
}

/// Whether `interval` is [`gcra_interval`]`(p, n)`, by two multiplications instead of a
/// division: `interval = max(1, ceil(p / n))` ⇔ `(interval − 1) · n < p ≤ interval · n`, or
/// `interval = 1` and `p ≤ n`.
#[inline]
fn is_gcra_interval(interval: u64, p: u64, n: u64) -> bool {
    match interval {
        0 => false,
        1 => p <= n,
        _ => {
            let above = interval.checked_mul(n).is_some_and(|v| p <= v);
            let below = (interval - 1).checked_mul(n).is_some_and(|v| v < p);
            above && below
        }
    }
}

/// The start of the window (or sliding bucket) of period `p` holding `t`: windows are
/// aligned to multiples of the period since the epoch, in memory and on Redis alike.
#[inline]
pub(crate) fn window_start(t: u64, p: u64) -> u64 {
    t - t % p
}

/// The stats of a fixed window that starts afresh, or a GCRA bucket that is full, for a
/// request not charged: a peek or a denial, which writes nothing (as on Redis), so that a
/// request dated earlier still counts in the state the key holds. Nothing is counted: it
/// admits what can ever pass, and names a full period for the rest.
// Inlined: see `State::decide_elastic_afresh`.
#[inline(always)]
fn uncounted(reset: u64, p: u64, n: u64, cost: u64) -> LimitStats {
    let admitted = cost <= n;
    stats(admitted, n, n, reset, (!admitted).then_some(p))
}

/// One sliding-window decision in the bucket that starts at `start`, `elapsed` into it, or
/// `wait` before it starts (a request dated before it). Charges `current` when `hit` admits.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn sliding_decide(
    current: &mut u32,
    previous: u32,
    start: u64,
    elapsed: u64,
    wait: u64,
    p: u64,
    n: u64,
    cost: u64,
    hit: bool,
) -> LimitStats {
    let weighted = sliding_weighted(previous, p, elapsed) + u64::from(*current);
    let admitted = weighted.saturating_add(cost) <= n;
    let mut used = weighted;
    if hit && admitted {
        *current = current.saturating_add(u32::try_from(cost).unwrap_or(u32::MAX));
        used += cost;
    }
    let retry = (!admitted).then(|| {
        // A request that can never pass: see `State::decide`.
        if cost > n {
            return p;
        }
        // Until the bucket starts, then until the weighted count lets it in.
        wait + sliding_retry(
            u64::from(previous),
            u64::from(*current),
            n,
            cost,
            p,
            elapsed,
        )
    });
    stats(admitted, n, n.saturating_sub(used), start + p, retry)
}

/// `floor(previous × (p − elapsed) / p)`: the previous bucket's share still inside the
/// rolling window. The Redis script computes the same doubles in the same order.
#[inline]
pub(crate) fn sliding_weighted(previous: u32, p: u64, elapsed: u64) -> u64 {
    // An empty previous bucket weighs nothing: no division.
    if previous == 0 {
        return 0;
    }
    // Through i64, one instruction per conversion: below 2^53 (every operand here) it gives
    // the same doubles as the unsigned conversions, and `elapsed <= p` makes the product
    // non-negative, where truncation is the floor.
    let weight = (p - elapsed) as i64 as f64 / p as i64 as f64;
    (f64::from(previous) * weight) as i64 as u64
}

/// How long until `floor(weighted) + cost <= n` holds again, for a denied sliding-window
/// request (`cost <= n`): exactly the first microsecond at which the decision admits it.
pub(crate) fn sliding_retry(
    previous: u64,
    current: u64,
    n: u64,
    cost: u64,
    p: u64,
    elapsed: u64,
) -> u64 {
    // Within this bucket, the previous share decays; it must fall to `room`.
    let room = n as i128 - current as i128 - cost as i128;
    if room >= 0 {
        let crossing = first_elapsed_below(previous, room as u64 + 1, p);
        return crossing.max(elapsed + 1) - elapsed;
    }
    // Otherwise wait for the next bucket, where this bucket's count becomes the decaying one.
    let crossing = first_elapsed_below(current, n - cost + 1, p);
    p - elapsed + crossing
}

/// The first elapsed time e in `0..=p` at which `floor(count × (p − e) / p) < bound`, as
/// [`sliding_weighted`] rounds it (at e = p the count weighs nothing), so that the retry-after
/// is the first microsecond the decision admits. The closed form `p − bound × p / count`, in
/// doubles, lands a microsecond off now and then; it is the first guess, from which a search
/// on the decision's own arithmetic (monotonic in e) steps to the crossing: two or three
/// evaluations, and never more than about 70 (bisection over the period).
fn first_elapsed_below(count: u64, bound: u64, p: u64) -> u64 {
    // Counts never exceed the amount, at most `u32::MAX`.
    let count = u32::try_from(count).unwrap_or(u32::MAX);
    let below = |e: u64| sliding_weighted(count, p, e) < bound;
    if below(0) {
        return 0;
    }
    let pf = p as f64;
    let x = pf - (bound as f64 * pf) / f64::from(count);
    let guess = if x < 0.0 {
        0
    } else {
        (x.floor() as u64 + 1).min(p)
    };
    // `lo` denies and `hi` admits, all along: the crossing is in (lo, hi]. The guess is right
    // or a microsecond off: a few steps from it, then (never in practice) bisection.
    let (mut lo, mut hi, mut probe) = (0, p, guess);
    for _ in 0..3 {
        if probe <= lo || probe >= hi {
            break;
        }
        if below(probe) {
            hi = probe;
            probe -= 1;
        } else {
            lo = probe;
            probe += 1;
        }
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if below(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::Unit;
    use proptest::prelude::{
        Just, ProptestConfig, any, prop, prop_assert_eq, prop_oneof, proptest,
    };
    use proptest::strategy::Strategy as Gen;

    /// The formula as the Redis script writes it: unsigned conversions and `floor`.
    fn weighted_as_written(previous: u64, p: u64, elapsed: u64) -> u64 {
        let weight = (p - elapsed) as f64 / p as f64;
        (previous as f64 * weight).floor() as u64
    }

    proptest! {
        #[test]
        fn sliding_weighted_matches_the_formula_as_written(
            previous in prop_oneof![Just(0u32), Just(1), Just(u32::MAX), any::<u32>()],
            p in 1u64..=31_104_000_000_000,
            at in any::<u64>(),
        ) {
            let elapsed = at % p;
            prop_assert_eq!(
                sliding_weighted(previous, p, elapsed),
                weighted_as_written(u64::from(previous), p, elapsed)
            );
        }
    }

    /// The moving window as it was written before the compact log (a `VecDeque` of absolute
    /// times): the model the log must agree with, decision by decision.
    #[derive(Clone, Default)]
    struct ModelLog {
        times: std::collections::VecDeque<u64>,
        period: u64,
    }

    impl ModelLog {
        fn decide(
            &mut self,
            elastic: bool,
            n: u64,
            p: u64,
            t: u64,
            cost: u64,
            hit: bool,
        ) -> LimitStats {
            let impossible = cost > n;
            self.period = p;
            let log = &mut self.times;
            while log.front().is_some_and(|&oldest| oldest + p <= t) {
                log.pop_front();
            }
            let used = log.len() as u64;
            let admitted = used.saturating_add(cost) <= n;
            if hit && (admitted || elastic) {
                let record = cost.min(n) as usize;
                let at = log.back().map_or(t, |&newest| newest.max(t));
                log.extend(std::iter::repeat_n(at, record));
                let excess = log.len().saturating_sub(n as usize);
                log.drain(..excess);
            }
            let used = log.len() as u64;
            let reset = log.front().map_or(t + p, |&oldest| oldest + p);
            let retry = (!admitted).then(|| {
                if impossible {
                    return p;
                }
                let must_expire = (used + cost - n) as usize;
                must_expire
                    .checked_sub(1)
                    .map_or(0, |i| (log[i] + p).saturating_sub(t))
            });
            stats(admitted, n, n.saturating_sub(used), reset, retry)
        }

        fn expires_at(&self) -> u64 {
            self.times.back().map_or(0, |&newest| newest + self.period)
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Decide {
            elastic: bool,
            rate: usize,
            cost: u64,
            peek: bool,
        },
        Refund {
            rate: usize,
            cost: u64,
        },
        /// Clones the state (a batch's snapshot) and goes on with the clone.
        Clone,
        /// Moves the clock, forward or back.
        Clock(i64),
    }

    /// Rates whose periods straddle the `u32` offsets' 71 minutes.
    const LOG_RATES: [(u64, u64, Unit); 6] = [
        (3, 1, Unit::Second),
        (20, 1, Unit::Second),
        (100, 1, Unit::Minute),
        (1, 1, Unit::Hour),
        (40, 1, Unit::Day),
        (0, 1, Unit::Second),
    ];

    fn op() -> impl Gen<Value = Op> {
        let clock = prop_oneof![
            4 => Just(0i64),
            4 => 0i64..2_000,
            4 => 0i64..2_000_000,
            2 => 0i64..100_000_000,
            1 => 0i64..5_000_000_000,
            // Around the offsets' range, and past it.
            1 => (1i64 << 32) - 3..(1i64 << 32) + 3,
            1 => 0i64..20_000_000_000,
            // Back, a little or a lot.
            1 => -2_000_000i64..0,
            1 => -10_000_000_000i64..0,
        ];
        prop_oneof![
            8 => (any::<bool>(), 0..LOG_RATES.len(), prop_oneof![8 => Just(1u64), 1 => 0u64..5, 1 => 0u64..50], prop::bool::weighted(0.1))
                .prop_map(|(elastic, rate, cost, peek)| Op::Decide { elastic, rate, cost, peek }),
            1 => (0..LOG_RATES.len(), 0u64..4).prop_map(|(rate, cost)| Op::Refund { rate, cost }),
            1 => Just(Op::Clone),
            6 => clock.prop_map(Op::Clock),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        #[test]
        fn the_log_decides_as_the_plain_deque_did(ops in prop::collection::vec(op(), 1..200)) {
            let mut state = State::Empty;
            let mut model = ModelLog::default();
            let mut t: u64 = 1_700_000_000_000_000;
            for op in ops {
                match op {
                    Op::Decide { elastic, rate, cost, peek } => {
                        let (amount, multiples, unit) = LOG_RATES[rate];
                        let rate = Rate::new(amount, multiples, unit).unwrap();
                        let strategy = if elastic {
                            Strategy::MovingWindowElastic
                        } else {
                            Strategy::MovingWindow
                        };
                        let action = if peek { Action::Peek } else { Action::Hit };
                        let got = state.decide(strategy, &rate, Timestamp::from_micros(t), cost, action);
                        let want = model.decide(elastic, amount, rate.period_micros(), t, cost, !peek);
                        prop_assert_eq!(got, want);
                    }
                    Op::Refund { rate, cost } => {
                        let (amount, multiples, unit) = LOG_RATES[rate];
                        let rate = Rate::new(amount, multiples, unit).unwrap();
                        state.refund(Strategy::MovingWindow, &rate, Timestamp::from_micros(t), cost);
                        // The newest hits logged at `t` or before, those after them kept.
                        let end = model.times.iter().rposition(|&at| at <= t).map_or(0, |i| i + 1);
                        let from = end.saturating_sub(cost as usize);
                        model.times.drain(from..end);
                    }
                    Op::Clone => state = state.clone(),
                    Op::Clock(by) => t = t.saturating_add_signed(by),
                }
                prop_assert_eq!(state.expires_at(), model.expires_at());
            }
        }
    }

    #[test]
    fn sliding_weighted_at_the_bucket_edges() {
        for p in [1, 2, 3, 1_000_000, 60_000_000, 31_104_000_000_000] {
            for previous in [0, 1, 7, 42, u32::MAX - 1, u32::MAX] {
                for elapsed in [0, 1, p / 2, p - 1] {
                    let elapsed = elapsed.min(p - 1);
                    assert_eq!(
                        sliding_weighted(previous, p, elapsed),
                        weighted_as_written(u64::from(previous), p, elapsed),
                        "previous {previous}, p {p}, elapsed {elapsed}"
                    );
                }
            }
        }
    }
}
