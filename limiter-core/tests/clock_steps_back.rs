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
