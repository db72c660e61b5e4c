//! The fast modes: batches of fixed-window limits (`fixed.lua`), of GCRA limits (`gcra.lua`)
//! or of sliding window counters (`sliding.lua`), each a script of its own, with the
//! arithmetic the general script (`decide.lua`) would do in Lua done here.
//!
//! Formatting and dividing large numbers in Lua cost more than the GET and SET of a decision.
//! Counted with callgrind inside `redis-server`, a lone call went from 66 000 to 48 000
//! instructions for a fixed window, from 137 000 to 55 000 for GCRA and from 145 000 to
//! 62 000 for a sliding window. In these modes the script only compares strings and adds
//! integers, and answers with integers: per limit, the value after charging when every limit
//! admits, else `-(value before) - 1` for each, nothing written (a sliding window adds its
//! previous bucket's count, unsigned). Every stat is derived here exactly as the general path
//! derives it, so the modes decide as the general path (and the memory store) does. A batch
//! is 1 to 8 limits of one strategy on distinct keys ([`FastMode::of`]), decided all or
//! nothing; a lone fixed-window or GCRA limit is answered with one integer, anything else with
//! an array. A key holding anything else answers nil before anything is written, and the
//! caller asks again through the general script. So does a fixed window or sliding bucket
//! later than the one holding the caller's time (its clock behind another's): the request
//! counts in that later one, whose start the caller did not know (rare, and its arithmetic
//! stays in one place).
//!
//! Separate scripts, not modes of `decide.lua`, because a mode is an argument, and every
//! argument costs a script about 1 300 instructions in `redis-server` (a Lua string made and
//! interned; fixed window: 47 000 instructions per call as a mode of `decide.lua`, 44 600 as a
//! script of its own), so no script takes a spare one.

use std::io::Write;
use std::time::Duration;

use ::redis::{Cmd, Value};
use smallvec::SmallVec;

use super::MAX_SCRIPT_PERIOD_MICROS;
use crate::clock::Timestamp;
use crate::error::StorageError;
use crate::storage::{Hit, StatsList};
use crate::strategy::{
    LimitStats, Strategy, gcra_interval, sliding_retry, sliding_weighted, window_start,
};

/// Most limits a fast-mode batch carries (the script's tables stay small).
const MAX_LIMITS: usize = 8;

/// Which fast mode a batch can take; each has a script of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FastMode {
    /// Fixed-window limits only.
    Fixed = 0,
    /// GCRA limits only.
    Gcra = 1,
    /// Sliding window counters only.
    Sliding = 2,
}

impl FastMode {
    /// Every mode, in the order of their values.
    pub(super) const ALL: [FastMode; 3] = [FastMode::Fixed, FastMode::Gcra, FastMode::Sliding];

    /// The mode's script; see the header of each file for its arguments.
    pub(super) fn source(self) -> &'static str {
        match self {
            FastMode::Fixed => include_str!("fixed.lua"),
            FastMode::Gcra => include_str!("gcra.lua"),
            FastMode::Sliding => include_str!("sliding.lua"),
        }
    }

    /// The mode `hits` can take: 1 to 8 limits of one strategy on distinct keys (a key named
    /// twice is shared state, which the general path handles). A GCRA or sliding limit of
    /// amount 0 takes the general path too: GCRA's interval divides by the amount.
    pub(super) fn of(hits: &[Hit<'_>]) -> Option<FastMode> {
        let first = hits.first()?;
        let mode = match first.strategy {
            Strategy::FixedWindow => FastMode::Fixed,
            Strategy::Gcra => FastMode::Gcra,
            Strategy::SlidingWindowCounter => FastMode::Sliding,
            _ => return None,
        };
        let fits = hits.len() <= MAX_LIMITS
            && hits.iter().all(|hit| {
                hit.strategy == first.strategy && (mode == FastMode::Fixed || hit.rate.amount() > 0)
            })
            && hits
                .iter()
                .enumerate()
                .all(|(i, hit)| hits[..i].iter().all(|earlier| earlier.key != hit.key));
        fits.then_some(mode)
    }

    /// The arguments the mode's script takes before the limits' own: GCRA's now and grace.
    pub(super) fn push_args(self, cmd: &mut Cmd, t: u64, grace_ms: u64) {
        if self == FastMode::Gcra {
            cmd.arg(t).arg(grace_ms);
        }
    }
}

/// One limit of a fast-mode batch.
pub(super) struct FastLimit {
    n: u64,
    /// Capped at `n + 1`, as the general path's cost: every larger cost decides alike.
    cost: u64,
    /// The period, capped as the general path's.
    period: u64,
    kind: Kind,
}

enum Kind {
    Fixed {
        start: u64,
        /// The key's TTL: until the window ends, in milliseconds rounded up, plus grace.
        ttl_ms: u64,
    },
    Gcra {
        interval: u64,
        tolerance: u64,
    },
    Sliding {
        start: u64,
        elapsed: u64,
        /// Until the bucket after this one ends, in milliseconds rounded up, plus grace.
        ttl_ms: u64,
    },
}

impl FastLimit {
    pub(super) fn new(mode: FastMode, hit: &Hit<'_>, t: u64, grace_ms: u64) -> FastLimit {
        let n = hit.rate.amount();
        let period = hit.rate.period_micros().min(MAX_SCRIPT_PERIOD_MICROS);
        let kind = match mode {
            FastMode::Fixed => {
                let start = window_start(t, period);
                Kind::Fixed {
                    start,
                    ttl_ms: ttl_ms(start + period, t, grace_ms),
                }
            }
            FastMode::Gcra => {
                let interval = gcra_interval(period, n);
                Kind::Gcra {
                    interval,
                    tolerance: n * interval,
                }
            }
            FastMode::Sliding => {
                let start = window_start(t, period);
                Kind::Sliding {
                    start,
                    elapsed: t - start,
                    ttl_ms: ttl_ms(start + 2 * period, t, grace_ms),
                }
            }
        };
        FastLimit {
            n,
            cost: hit.cost.min(n.saturating_add(1)),
            period,
            kind,
        }
    }

    pub(super) fn push_args(&self, cmd: &mut Cmd) {
        match self.kind {
            Kind::Fixed { start, ttl_ms } => {
                // "w:<start>:", the prefix of the key's value in this window.
                let mut digits = itoa::Buffer::new();
                let start = digits.format(start).as_bytes();
                let mut prefix = [0u8; 2 + 20 + 1];
                prefix[..2].copy_from_slice(b"w:");
                prefix[2..2 + start.len()].copy_from_slice(start);
                prefix[2 + start.len()] = b':';
                cmd.arg(&prefix[..3 + start.len()])
                    .arg(self.n)
                    .arg(self.cost)
                    .arg(ttl_ms);
            }
            Kind::Gcra {
                interval,
                tolerance,
            } => {
                cmd.arg(interval).arg(tolerance).arg(self.cost * interval);
            }
            Kind::Sliding {
                start,
                elapsed,
                ttl_ms,
            } => {
                cmd.arg(start);
                match start.checked_sub(self.period) {
                    Some(previous) => cmd.arg(previous),
                    None => cmd.arg("-"),
                };
                // The previous bucket's weight as the general path computes it; Display
                // writes the shortest digits that read back as the same double.
                let weight = (self.period - elapsed) as f64 / self.period as f64;
                let mut text = [0u8; 64];
                let len = {
                    let mut out = &mut text[..];
                    // 64 bytes hold any weight in (0, 1]: at most 16 zeros and 17 digits.
                    let _ = write!(out, "{weight}");
                    64 - out.len()
                };
                cmd.arg(&text[..len]).arg(self.n).arg(self.cost).arg(ttl_ms);
            }
        }
    }

    /// How many integers the script answers for this limit.
    fn values(&self) -> usize {
        match self.kind {
            Kind::Sliding { .. } => 2,
            Kind::Fixed { .. } | Kind::Gcra { .. } => 1,
        }
    }

    /// The limit's stats from the script's value for it (a fixed window's count, GCRA's
    /// arrival time, a sliding window's current count, with its previous bucket's count),
    /// after charging when `charged`, else before.
    fn stats(
        &self,
        value: u64,
        previous: Option<u64>,
        charged: bool,
        t: u64,
    ) -> Option<LimitStats> {
        let impossible = self.cost > self.n;
        let (admitted, remaining, reset, retry) = match self.kind {
            Kind::Fixed { start, .. } => {
                let admitted = charged || value.saturating_add(self.cost) <= self.n;
                let reset = start + self.period;
                (admitted, self.n.saturating_sub(value), reset, reset - t)
            }
            Kind::Gcra {
                interval,
                tolerance,
            } => {
                // Uncharged, `value` is max(stored arrival time, t), the general path's base;
                // a smaller one is a reply no script wrote.
                if value < t {
                    return None;
                }
                let new_tat = if charged {
                    value
                } else {
                    value + self.cost * interval
                };
                let admitted = charged || new_tat - t <= tolerance;
                let remaining = tolerance.saturating_sub(value - t) / interval;
                let retry = (new_tat - t).saturating_sub(tolerance);
                (admitted, remaining, value, retry)
            }
            Kind::Sliding { start, elapsed, .. } => {
                let previous = previous?;
                let current = if charged {
                    value.saturating_sub(self.cost)
                } else {
                    value
                };
                let weighted =
                    sliding_weighted(u32::try_from(previous).ok()?, self.period, elapsed) + current;
                let admitted = charged || weighted.saturating_add(self.cost) <= self.n;
                let used = if charged {
                    weighted + self.cost
                } else {
                    weighted
                };
                let retry = if admitted || impossible {
                    0
                } else {
                    sliding_retry(previous, current, self.n, self.cost, self.period, elapsed)
                };
                (
                    admitted,
                    self.n.saturating_sub(used),
                    start + self.period,
                    retry,
                )
            }
        };
        Some(LimitStats {
            admitted,
            limit: self.n,
            remaining,
            reset: Timestamp::from_micros(reset),
            retry_after: (!admitted)
                .then(|| Duration::from_micros(if impossible { self.period } else { retry })),
        })
    }
}

/// A key's TTL when its state is useful until `until` (µs): the milliseconds left, rounded
/// up, plus the grace.
fn ttl_ms(until: u64, t: u64, grace_ms: u64) -> u64 {
    (until - t).div_ceil(1_000).saturating_add(grace_ms)
}

/// The fast modes' reply: an integer for a lone one-value limit, else an array; nil when a
/// key held something else (or a later window), and the general path must decide.
pub(super) fn parse_reply(
    value: &Value,
    limits: &[FastLimit],
    t: u64,
) -> Result<Option<StatsList>, StorageError> {
    let bad = || StorageError::Backend(format!("unexpected script reply {value:?}"));
    let expected: usize = limits.iter().map(FastLimit::values).sum();
    let values: SmallVec<[i64; 8]> = match value {
        Value::Nil => return Ok(None),
        Value::Int(v) if expected == 1 && limits.len() == 1 => SmallVec::from_elem(*v, 1),
        Value::Array(items) if items.len() == expected && (expected > 1 || limits.len() > 1) => {
            items
                .iter()
                .map(|item| match item {
                    Value::Int(v) => Ok(*v),
                    _ => Err(bad()),
                })
                .collect::<Result<_, _>>()?
        }
        _ => return Err(bad()),
    };
    // Each limit's first value carries the sign, the same for all; a sliding window's
    // second is a plain count.
    let charged = values[0] >= 0;
    let mut rest = &values[..];
    let mut stats = StatsList::new();
    for limit in limits {
        let (own, tail) = rest.split_at(limit.values());
        rest = tail;
        if (own[0] >= 0) != charged || own[1..].iter().any(|&v| v < 0) {
            return Err(bad());
        }
        let value = if charged { own[0] } else { -1 - own[0] } as u64;
        let previous = own.get(1).map(|&v| v as u64);
        stats.push(limit.stats(value, previous, charged, t).ok_or_else(bad)?);
    }
    Ok(Some(stats))
}
