//! Clocks at the ends of the timestamp range: a manual clock at the epoch, or advanced as far
//! as it goes (`ManualClock::advance` saturates at `u64::MAX` microseconds), decides like any
//! other time and never panics or wraps.

use limiter_core::{Hit, ManualClock, MemoryStore, Rate, Strategy, Timestamp};
use std::time::Duration;

const RATES: [&str; 4] = [
    "1 per second",
    "2 per 7 seconds",
    "3 per 1000 years",
    "0 per second",
];

/// Every strategy and rate, each a few requests (and a refund) at `times` in turn.
fn decide_at(times: &[u64]) {
    for strategy in Strategy::ALL {
        for text in RATES {
            let rate = Rate::parse(text).unwrap();
            let store = MemoryStore::new(100);
            for cost in [0, 1, 2, u64::MAX] {
                let hit = [Hit::new("{c}:a", rate, strategy).with_cost(cost)];
                for &t in times {
                    let now = Timestamp::from_micros(t);
                    let decision = store.decide_now(&hit, now);
                    let stats = decision.stats[0];
                    assert!(
                        stats.remaining <= rate.amount(),
                        "{strategy} {text} cost {cost} at {t}: {stats:?}"
                    );
                    store.peek_now(&hit, now);
                    store.refund_now(&hit, now);
                    let batch = [hit[0], Hit::new("{c}:b", rate, strategy)];
                    store.decide_now(&batch, now);
                }
            }
        }
    }
}

#[test]
fn a_clock_at_the_epoch_decides() {
    decide_at(&[0, 0, 1, 0]);
}

#[test]
fn a_clock_advanced_to_the_end_of_time_decides_without_overflow() {
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    clock.advance(Duration::MAX);
    let end = clock.now().as_micros();
    assert_eq!(end, u64::MAX);
    decide_at(&[
        end,
        end - 1,
        end - 1_000_000,
        end,
        end - 3_000_000_000_000_000_000,
    ]);
}

#[test]
fn at_the_end_of_time_a_limit_still_holds() {
    let rate = Rate::parse("2 per minute").unwrap();
    for strategy in Strategy::ALL {
        let store = MemoryStore::new(100);
        let hit = [Hit::new("k", rate, strategy)];
        let now = Timestamp::from_micros(u64::MAX);
        assert!(store.decide_now(&hit, now).admitted, "{strategy}");
        assert!(store.decide_now(&hit, now).admitted, "{strategy}");
        let third = store.decide_now(&hit, now);
        assert!(!third.admitted, "{strategy}");
        assert!(third.retry_after.unwrap() <= rate.period(), "{strategy}");
    }
}
