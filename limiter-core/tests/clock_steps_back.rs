//! A clock that steps back (NTP, a manual clock set earlier) must not break a decision.

use limiter_core::{Hit, ManualClock, MemoryStore, Rate, Strategy, Timestamp};
use std::time::Duration;

#[test]
fn gcra_after_the_clock_steps_back_reports_zero_remaining() {
    let store = MemoryStore::new(100);
    let clock = ManualClock::new(Timestamp::from_secs(1_000));
    let rate: Rate = "2 per second".parse().unwrap();
    let hit = [Hit::new("k", rate, Strategy::Gcra)];
    assert!(store.decide_now(&hit, clock.now()).admitted);
    assert!(store.decide_now(&hit, clock.now()).admitted);
    clock.set(Timestamp::from_secs(990));
    let d = store.decide_now(&hit, clock.now());
    assert!(!d.admitted);
    assert_eq!(d.stats[0].remaining, 0);
}

#[test]
fn moving_window_with_an_out_of_order_log_gives_a_finite_retry() {
    let store = MemoryStore::new(100);
    let clock = ManualClock::new(Timestamp::from_secs(1_000));
    let rate: Rate = "2 per 10 seconds".parse().unwrap();
    let hit = [Hit::new("k", rate, Strategy::MovingWindow)];
    assert!(store.decide_now(&hit, clock.now()).admitted); // log [1000]
    clock.set(Timestamp::from_secs(985));
    assert!(store.decide_now(&hit, clock.now()).admitted); // log [1000, 985]
    clock.set(Timestamp::from_secs(1_001));
    // 985 + 10 <= 1001, but only the front of the log is popped: the log stays full.
    // A request of cost 2 must wait for both entries; the older one is already out of the
    // window, so the wait is the newer one's.
    let d = store.decide_now(&[hit[0].with_cost(2)], clock.now());
    assert!(!d.admitted);
    assert!(d.retry_after.unwrap() <= Duration::from_secs(10));
}

#[test]
fn a_hit_logged_after_the_clock_stepped_back_does_not_shorten_the_log() {
    // A log [1000 s], then a hit at 985 s after the clock stepped back: it is logged at
    // 1000 s, the newest time the log holds, so the log lives until 1010 s. Logged at 985 s,
    // the log would look expired from 995 s (and be reclaimed by the next insertions,
    // forgetting the hit at 1000 s, which still counts).
    let rate: Rate = "2 per 10 seconds".parse().unwrap();
    for strategy in [Strategy::MovingWindow, Strategy::MovingWindowElastic] {
        let store = MemoryStore::new(4);
        let clock = ManualClock::new(Timestamp::from_secs(1_000));
        let hit = [Hit::new("k", rate, strategy)];
        assert!(store.decide_now(&hit, clock.now()).admitted);
        clock.set(Timestamp::from_secs(985));
        assert!(store.decide_now(&hit, clock.now()).admitted);
        clock.set(Timestamp::from_secs(997));
        // Other clients come and go: every insertion sweeps part of the small table.
        for i in 0..8 {
            let other = format!("other-{i}");
            store.decide_now(&[Hit::new(&other, rate, strategy)], clock.now());
            store.clear_now(&other);
        }
        let d = store.decide_now(&hit, clock.now());
        assert!(!d.admitted, "{strategy}: {d:?}");
        assert_eq!(d.stats[0].reset, Timestamp::from_secs(1_010), "{strategy}");
        clock.set(Timestamp::from_secs(1_010));
        assert!(store.decide_now(&hit, clock.now()).admitted, "{strategy}");
    }
}

/// A window's boundary, a multiple of a minute (µs).
const BOUNDARY: u64 = 1_700_000_040_000_000;

/// `BOUNDARY` moved by `offset` µs.
fn around_boundary(offset: i64) -> Timestamp {
    Timestamp::from_micros(BOUNDARY.saturating_add_signed(offset))
}

#[test]
fn a_hit_dated_before_the_keys_window_counts_in_it() {
    // Two hosts whose clocks differ by a few microseconds, or two threads that read the clock
    // and then took the lock in the other order: hits around a boundary, out of order. A hit
    // dated before the window (or bucket) the key's state is in counts in that window, so
    // neither window admits more than its 2. (Starting the earlier window afresh, as these
    // strategies once did, admitted all six: the hit at -5 µs wiped the new window's count.)
    let rate: Rate = "2 per minute".parse().unwrap();
    let trace = [-10, -9, 1, -5, 2, 3];
    let minute = Duration::from_secs(60);
    for (strategy, expected) in [
        // -5 µs takes the new window's second place.
        (
            Strategy::FixedWindow,
            [true, true, true, true, false, false],
        ),
        // -5 µs counts at the bucket's start, the previous bucket's 2 weighing in whole.
        (
            Strategy::SlidingWindowCounter,
            [true, true, true, false, false, false],
        ),
    ] {
        let store = MemoryStore::new(100);
        let hit = [Hit::new("k", rate, strategy)];
        for (i, (offset, expected)) in trace.into_iter().zip(expected).enumerate() {
            let now = around_boundary(offset);
            let d = store.decide_now(&hit, now);
            assert_eq!(d.admitted, expected, "{strategy} at {offset} µs: {d:?}");
            let stats = d.stats[0];
            // Once the hit at +1 µs opened the new window, every hit is told about it.
            let window_end = if i >= 2 {
                around_boundary(0).saturating_add(minute)
            } else {
                around_boundary(0)
            };
            assert_eq!(stats.reset, window_end, "{strategy} at {offset} µs");
            if !d.admitted {
                assert_eq!(stats.remaining, 0, "{strategy} at {offset} µs");
                // The retry-after names the first instant the same request passes; peeks
                // write nothing, so they may look ahead.
                let retry = d.retry_after.unwrap();
                let before = now.saturating_add(retry - Duration::from_micros(1));
                assert!(
                    !store.peek_now(&hit, before).admitted,
                    "{strategy} at {offset} µs"
                );
                assert!(store.peek_now(&hit, now.saturating_add(retry)).admitted);
            }
        }
    }
}

#[test]
fn a_peek_or_a_denial_dated_later_leaves_the_window_as_it_was() {
    // A peek, or a request that can never pass, dated in the next window writes nothing (an
    // elastic window records a denial, by design): a hit dated earlier still counts in the
    // key's window, as on Redis, where neither writes.
    let rate: Rate = "2 per minute".parse().unwrap();
    for strategy in [
        Strategy::FixedWindow,
        Strategy::FixedWindowElastic,
        Strategy::SlidingWindowCounter,
        Strategy::Gcra,
    ] {
        let store = MemoryStore::new(100);
        let hit = [Hit::new("k", rate, strategy)];
        for _ in 0..2 {
            assert!(
                store.decide_now(&hit, around_boundary(-20)).admitted,
                "{strategy}"
            );
        }
        let later = around_boundary(70_000_000);
        assert!(store.peek_now(&hit, later).admitted, "{strategy}");
        if !strategy.is_elastic() {
            let impossible = [hit[0].with_cost(3)];
            assert!(!store.decide_now(&impossible, later).admitted, "{strategy}");
        }
        let d = store.decide_now(&hit, around_boundary(-10));
        assert!(!d.admitted, "{strategy}: {d:?}");
    }
}

#[test]
fn an_elastic_window_keeps_its_end_when_the_clock_steps_back() {
    // Hammering after the clock stepped back records each hit, but the window's end moves to
    // now + period only when that is later: it never comes closer.
    let rate: Rate = "1 per minute".parse().unwrap();
    let store = MemoryStore::new(100);
    let hit = [Hit::new("k", rate, Strategy::FixedWindowElastic)];
    assert!(store.decide_now(&hit, Timestamp::from_secs(1_000)).admitted);
    let d = store.decide_now(&hit, Timestamp::from_secs(990));
    assert!(!d.admitted);
    assert_eq!(d.stats[0].reset, Timestamp::from_secs(1_060));
    assert_eq!(d.retry_after, Some(Duration::from_secs(70)));
    assert!(!store.decide_now(&hit, Timestamp::from_secs(1_055)).admitted);
}
