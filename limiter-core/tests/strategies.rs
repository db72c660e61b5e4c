//! The six strategies, driven by a manual clock through the memory store.

use std::time::Duration;

use limiter_core::{
    Decision, Hit, MAX_AMOUNT, ManualClock, MemoryStore, Rate, Strategy, Timestamp, Unit,
};
use proptest::prelude::{ProptestConfig, any, prop_oneof, proptest};
use proptest::sample::select;

/// Midnight of some day: windows of a minute, an hour and a day all start here.
const MIDNIGHT: u64 = 1_700_006_400;

struct Bench {
    store: MemoryStore,
    clock: ManualClock,
}

impl Bench {
    fn new() -> Bench {
        Bench {
            store: MemoryStore::new(10_000),
            clock: ManualClock::new(Timestamp::from_secs(MIDNIGHT)),
        }
    }

    /// Moves the clock to `secs` seconds (and `millis`) after midnight.
    fn at(&self, secs: u64, millis: u64) {
        self.clock.set(Timestamp::from_micros(
            (MIDNIGHT + secs) * 1_000_000 + millis * 1_000,
        ));
    }

    fn hit(&self, rate: &str, strategy: Strategy, cost: u64) -> Decision {
        let rate = Rate::parse(rate).unwrap();
        let hit = Hit::new("k", rate, strategy).with_cost(cost);
        self.store.decide_now(&[hit], self.clock.now())
    }

    fn admitted(&self, rate: &str, strategy: Strategy) -> bool {
        self.hit(rate, strategy, 1).admitted
    }

    fn refund(&self, rate: &str, strategy: Strategy, cost: u64) {
        let hit = Hit::new("k", Rate::parse(rate).unwrap(), strategy).with_cost(cost);
        self.store.refund_now(&[hit], self.clock.now());
    }
}

fn secs(d: Option<Duration>) -> f64 {
    d.expect("a denial carries retry-after").as_secs_f64()
}

#[test]
fn moving_window_seed_scenario() {
    let b = Bench::new();
    b.at(1, 0);
    for _ in 0..5 {
        assert!(b.admitted("5 per minute", Strategy::MovingWindow));
    }
    b.at(2, 0);
    let sixth = b.hit("5 per minute", Strategy::MovingWindow, 1);
    assert!(!sixth.admitted);
    b.at(59, 0);
    let late = b.hit("5 per minute", Strategy::MovingWindow, 1);
    assert!(!late.admitted, "a 6th hit at 00:00:59 is denied");
    // The five hits of 00:00:01 leave the window at 00:01:01.
    assert_eq!(secs(late.retry_after), 2.0);
    assert_eq!(late.stats[0].reset, Timestamp::from_secs(MIDNIGHT + 61));
    b.at(62, 0);
    let next = b.hit("5 per minute", Strategy::MovingWindow, 1);
    assert!(next.admitted, "allowed again at 00:01:02");
    assert_eq!(next.stats[0].remaining, 4);
}

#[test]
fn moving_window_spreads_hits_over_the_rolling_period() {
    let b = Bench::new();
    for s in [0, 10, 20] {
        b.at(s, 0);
        assert!(b.admitted("3 per minute", Strategy::MovingWindow));
    }
    b.at(30, 0);
    let denied = b.hit("3 per minute", Strategy::MovingWindow, 1);
    assert_eq!(
        secs(denied.retry_after),
        30.0,
        "the hit of 00:00 leaves at 01:00"
    );
    b.at(60, 0);
    assert!(b.admitted("3 per minute", Strategy::MovingWindow));
    assert!(!b.admitted("3 per minute", Strategy::MovingWindow));
    b.at(70, 0);
    assert!(b.admitted("3 per minute", Strategy::MovingWindow));
}

#[test]
fn fixed_window_seed_scenario_is_clock_aligned() {
    let b = Bench::new();
    b.at(1, 0);
    for i in 0..5 {
        let d = b.hit("5 per minute", Strategy::FixedWindow, 1);
        assert!(d.admitted);
        assert_eq!(d.stats[0].remaining, 4 - i);
        assert_eq!(d.stats[0].reset, Timestamp::from_secs(MIDNIGHT + 60));
    }
    let denied = b.hit("5 per minute", Strategy::FixedWindow, 1);
    assert!(!denied.admitted);
    assert_eq!(secs(denied.retry_after), 59.0);
    // The window resets at the top of the minute, not 60 s after the first hit.
    b.at(60, 0);
    for _ in 0..5 {
        assert!(b.admitted("5 per minute", Strategy::FixedWindow));
    }
    assert!(!b.admitted("5 per minute", Strategy::FixedWindow));
}

#[test]
fn fixed_window_elastic_keeps_a_hammering_client_blocked() {
    let b = Bench::new();
    let s = Strategy::FixedWindowElastic;
    b.at(0, 0);
    assert!(b.admitted("2 per minute", s));
    assert!(b.admitted("2 per minute", s));
    // Hammer every 30 s for five minutes: each rejected hit moves the end to now + 60 s.
    for t in (30..=300).step_by(30) {
        b.at(t, 0);
        let d = b.hit("2 per minute", s, 1);
        assert!(!d.admitted, "still blocked at {t}s");
        assert_eq!(secs(d.retry_after), 60.0);
        assert_eq!(d.stats[0].reset, Timestamp::from_secs(MIDNIGHT + t + 60));
    }
    // A pause shorter than a period is not enough...
    b.at(359, 0);
    assert!(!b.admitted("2 per minute", s));
    // ...a full one is.
    b.at(419, 0);
    assert!(b.admitted("2 per minute", s));
}

#[test]
fn plain_fixed_window_lets_the_hammering_client_through_next_window() {
    let b = Bench::new();
    b.at(0, 0);
    assert!(b.admitted("2 per minute", Strategy::FixedWindow));
    assert!(b.admitted("2 per minute", Strategy::FixedWindow));
    b.at(30, 0);
    assert!(!b.admitted("2 per minute", Strategy::FixedWindow));
    b.at(60, 0);
    assert!(b.admitted("2 per minute", Strategy::FixedWindow));
}

#[test]
fn moving_window_elastic_keeps_a_hammering_client_blocked() {
    let b = Bench::new();
    let s = Strategy::MovingWindowElastic;
    b.at(0, 0);
    for _ in 0..3 {
        assert!(b.admitted("3 per minute", s));
    }
    // Hammer every 5 s for ten minutes: every rejected hit joins the log.
    for t in (5..=600).step_by(5) {
        b.at(t, 0);
        assert!(!b.admitted("3 per minute", s), "still blocked at {t}s");
    }
    // The log now holds 590, 595 and 600: a full quiet period lets the client in.
    b.at(660, 0);
    assert!(b.admitted("3 per minute", s));

    // The plain moving window lets the same client in a minute after its first hits.
    let plain = Bench::new();
    plain.at(0, 0);
    for _ in 0..3 {
        assert!(plain.admitted("3 per minute", Strategy::MovingWindow));
    }
    for t in (5..60).step_by(5) {
        plain.at(t, 0);
        assert!(!plain.admitted("3 per minute", Strategy::MovingWindow));
    }
    plain.at(60, 0);
    assert!(plain.admitted("3 per minute", Strategy::MovingWindow));
}

#[test]
fn sliding_window_counter_weights_the_previous_bucket() {
    let b = Bench::new();
    let s = Strategy::SlidingWindowCounter;
    // 42 hits in the previous minute.
    b.at(10, 0);
    for _ in 0..42 {
        assert!(b.admitted("50 per minute", s));
    }
    // 18 in the current one, 14 s into it (42 × 46/60 = 32.2, and 32 + 18 = 50 fits exactly).
    b.at(74, 0);
    for _ in 0..18 {
        assert!(b.admitted("50 per minute", s));
    }
    // 15 s in: 42 × 45/60 + 18 = 49.5, so exactly one more is admitted.
    b.at(75, 0);
    let d = b.hit("50 per minute", s, 1);
    assert!(d.admitted);
    assert_eq!(d.stats[0].remaining, 0);
    let denied = b.hit("50 per minute", s, 1);
    assert!(!denied.admitted);
    assert_eq!(denied.stats[0].reset, Timestamp::from_secs(MIDNIGHT + 120));
    // Now 19 in the current bucket: the next hit needs floor(42 × (60 − e)/60) ≤ 30, that is
    // e > 60 − 31 × 60/42 = 15.714285 s, so it passes 0.714286 s from now (to the microsecond).
    let retry = denied.retry_after.unwrap();
    assert_eq!(retry, Duration::from_micros(714_286));
    b.clock.set(b.clock.now().saturating_add(retry));
    assert!(b.admitted("50 per minute", s));
}

#[test]
fn sliding_window_retry_can_reach_into_the_next_bucket() {
    let b = Bench::new();
    let s = Strategy::SlidingWindowCounter;
    b.at(0, 0);
    for _ in 0..10 {
        assert!(b.admitted("10 per minute", s));
    }
    b.at(30, 0);
    let d = b.hit("10 per minute", s, 1);
    assert!(!d.admitted);
    // In the next bucket the 10 weigh 10 × (60 − e)/60, whose floor is 9 from e = 1 µs on.
    let retry = d.retry_after.unwrap();
    assert_eq!(retry, Duration::from_micros(30_000_001));
    b.clock.set(b.clock.now().saturating_add(retry));
    assert!(b.admitted("10 per minute", s));
    assert!(!b.admitted("10 per minute", s));
}

#[test]
fn gcra_allows_a_burst_then_spaces_hits() {
    let b = Bench::new();
    let s = Strategy::Gcra;
    b.at(0, 0);
    for i in 0..10 {
        let d = b.hit("10 per minute", s, 1);
        assert!(d.admitted, "burst hit {i}");
        assert_eq!(d.stats[0].remaining, 9 - i);
    }
    let denied = b.hit("10 per minute", s, 1);
    assert!(!denied.admitted);
    assert_eq!(secs(denied.retry_after), 6.0, "one more every 60 s / 10");
    assert_eq!(denied.stats[0].reset, Timestamp::from_secs(MIDNIGHT + 60));
    b.at(5, 999);
    assert!(!b.admitted("10 per minute", s));
    b.at(6, 0);
    assert!(b.admitted("10 per minute", s));
    assert!(!b.admitted("10 per minute", s));
    // Steady spacing: one every 6 s.
    for t in (12..=60).step_by(6) {
        b.at(t, 0);
        assert!(b.admitted("10 per minute", s), "spaced hit at {t}s");
        assert!(!b.admitted("10 per minute", s));
    }
    // A long pause refills the whole burst, and no more.
    b.at(600, 0);
    for _ in 0..10 {
        assert!(b.admitted("10 per minute", s));
    }
    assert!(!b.admitted("10 per minute", s));
}

#[test]
fn cost_takes_several_units_and_refund_gives_them_back() {
    for strategy in Strategy::ALL {
        let b = Bench::new();
        b.at(0, 0);
        let d = b.hit("10 per minute", strategy, 4);
        assert!(d.admitted, "{strategy}");
        assert_eq!(d.stats[0].remaining, 6, "{strategy}");
        let d = b.hit("10 per minute", strategy, 6);
        assert!(d.admitted, "{strategy}");
        assert_eq!(d.stats[0].remaining, 0, "{strategy}");
        let denied = b.hit("10 per minute", strategy, 1);
        assert!(!denied.admitted, "{strategy}");
        b.refund("10 per minute", strategy, 6);
        let d = b.hit("10 per minute", strategy, 6);
        assert!(d.admitted, "{strategy}: refund gave the units back");
        assert!(!b.admitted("10 per minute", strategy), "{strategy}");
    }
}

#[test]
fn a_sliding_window_refund_after_its_bucket_ended_still_gives_the_units_back() {
    let rate = "10 per second";
    let s = Strategy::SlidingWindowCounter;
    let refund_at = |b: &Bench, secs: u64, millis: u64| {
        let hit = Hit::new("k", Rate::parse(rate).unwrap(), s).with_cost(10);
        let at = Timestamp::from_micros((MIDNIGHT + secs) * 1_000_000 + millis * 1_000);
        b.store.refund_now(&[hit], at);
    };
    // The refund comes in the next bucket, dated by its decision (0.950 s): after another
    // decision rolled the state into the next bucket, and before any did.
    for rolled in [true, false] {
        let b = Bench::new();
        b.at(0, 950);
        assert!(b.hit(rate, s, 10).admitted);
        b.at(1, 50);
        // Without the refund, 9 of the 10 still weigh here.
        let left = if rolled {
            let d = b.hit(rate, s, 1);
            assert_eq!(
                d.stats[0].remaining, 0,
                "the charge weighs in the next bucket"
            );
            refund_at(&b, 0, 950);
            9
        } else {
            refund_at(&b, 0, 950);
            10
        };
        b.at(1, 100);
        for i in 0..left {
            assert!(
                b.admitted(rate, s),
                "rolled {rolled}: hit {i} after the refund"
            );
        }
        assert!(!b.admitted(rate, s), "rolled {rolled}: one more");
    }
}

/// A refund dated by its charge gives back that charge's hits, not those logged after it
/// (a `deduct_when` refund comes after the handler, when later requests may have been logged).
#[test]
fn a_moving_window_refund_gives_back_its_own_hits_not_later_ones() {
    for s in [Strategy::MovingWindow, Strategy::MovingWindowElastic] {
        // The charge is still in the log: the later hit stays, and counts until 110 s.
        let b = Bench::new();
        b.at(0, 0);
        assert!(b.hit("2 per minute", s, 1).admitted);
        b.at(50, 0);
        assert!(b.hit("2 per minute", s, 1).admitted);
        b.at(55, 0);
        let charge = Hit::new("k", Rate::parse("2 per minute").unwrap(), s);
        b.store
            .refund_now(&[charge], Timestamp::from_secs(MIDNIGHT));
        b.at(60, 0);
        let d = b.hit("2 per minute", s, 1);
        assert!(d.admitted, "{s}");
        assert_eq!(d.stats[0].remaining, 0, "{s}");
        assert_eq!(
            d.stats[0].reset,
            Timestamp::from_secs(MIDNIGHT + 110),
            "{s}"
        );
        let denied = b.store.peek_now(&[charge], b.clock.now());
        assert!(!denied.admitted, "{s}: the hit at 50 s still counts");
        assert_eq!(
            denied.stats[0].retry_after,
            Some(Duration::from_secs(50)),
            "{s}"
        );

        // The charge has expired since: nothing is left to give back.
        let b = Bench::new();
        b.at(0, 0);
        assert!(b.hit("1 per second", s, 1).admitted);
        b.at(1, 200);
        assert!(b.hit("1 per second", s, 1).admitted);
        let charge = Hit::new("k", Rate::parse("1 per second").unwrap(), s);
        b.store
            .refund_now(&[charge], Timestamp::from_secs(MIDNIGHT));
        b.at(1, 600);
        let denied = b.hit("1 per second", s, 1);
        assert!(!denied.admitted, "{s}: the hit at 1.2 s still counts");
        assert_eq!(denied.stats[0].remaining, 0, "{s}");
    }
}

/// A charge whose state was started over since (an elastic window that ended and began
/// again, a GCRA bucket that drained) no longer counts: a late refund of it gives nothing
/// back from what the later hits took. One kept going by later hits still gives it back.
#[test]
fn a_late_refund_gives_nothing_back_once_its_charge_stopped_counting() {
    // Strategy, then when the next hit may come after the hit at 1.2 s.
    for (s, retry) in [
        (Strategy::FixedWindowElastic, Duration::from_secs(1)),
        (Strategy::Gcra, Duration::from_millis(600)),
    ] {
        let rate = "1 per second";
        let charge = Hit::new("k", Rate::parse(rate).unwrap(), s);
        let b = Bench::new();
        b.at(0, 0);
        assert!(b.hit(rate, s, 1).admitted);
        // The charge stops counting at 1 s; the next hit comes at 1.2 s.
        b.at(1, 200);
        assert!(b.hit(rate, s, 1).admitted);
        b.store
            .refund_now(&[charge], Timestamp::from_secs(MIDNIGHT));
        b.at(1, 600);
        let denied = b.hit(rate, s, 1);
        assert!(!denied.admitted, "{s}: the hit at 1.2 s still counts");
        assert_eq!(denied.stats[0].remaining, 0, "{s}");
        assert_eq!(denied.stats[0].retry_after, Some(retry), "{s}");

        // Kept going by a later hit at 0.1 s: the refund gives the first hit back, so a third
        // passes at 0.2 s (without the refund it would be refused).
        let rate = "2 per second";
        let b = Bench::new();
        b.at(0, 0);
        assert!(b.hit(rate, s, 1).admitted);
        b.at(0, 100);
        assert!(b.hit(rate, s, 1).admitted);
        let charge = Hit::new("k", Rate::parse(rate).unwrap(), s);
        b.store
            .refund_now(&[charge], Timestamp::from_secs(MIDNIGHT));
        b.at(0, 200);
        let d = b.hit(rate, s, 1);
        assert!(d.admitted, "{s}: the refund gave the first hit back");
        assert_eq!(d.stats[0].remaining, 0, "{s}");
    }
}

#[test]
fn a_cost_above_the_amount_never_passes() {
    for strategy in Strategy::ALL {
        let b = Bench::new();
        b.at(0, 0);
        let d = b.hit("3 per minute", strategy, 4);
        assert!(!d.admitted, "{strategy}");
        assert_eq!(secs(d.retry_after), 60.0, "{strategy}");
        // ...and charges nothing (the elastic log records it, by definition).
        if strategy == Strategy::MovingWindowElastic {
            continue;
        }
        for _ in 0..3 {
            assert!(b.admitted("3 per minute", strategy), "{strategy}");
        }
    }
}

#[test]
fn zero_per_period_always_rejects() {
    for strategy in Strategy::ALL {
        let b = Bench::new();
        b.at(0, 0);
        let d = b.hit("0 per day", strategy, 1);
        assert!(!d.admitted, "{strategy}");
        assert_eq!(d.stats[0].remaining, 0, "{strategy}");
        assert!(d.retry_after.is_some(), "{strategy}");
    }
}

#[test]
fn retry_after_is_the_earliest_time_the_request_passes() {
    for strategy in Strategy::ALL {
        let b = Bench::new();
        b.at(7, 0);
        for _ in 0..5 {
            assert!(b.admitted("5 per 10 seconds", strategy), "{strategy}");
        }
        b.at(8, 250);
        let d = b.hit("5 per 10 seconds", strategy, 1);
        assert!(!d.admitted, "{strategy}");
        let retry = d.retry_after.unwrap();
        let denied_at = b.clock.now();
        // One microsecond earlier it is still denied (non-elastic strategies only: an elastic
        // probe would itself move the window).
        if !strategy.is_elastic() {
            b.clock
                .set(denied_at.saturating_add(retry - Duration::from_micros(1)));
            assert!(!b.admitted("5 per 10 seconds", strategy), "{strategy}");
        }
        b.clock.set(denied_at.saturating_add(retry));
        assert!(b.admitted("5 per 10 seconds", strategy), "{strategy}");
    }
}

/// Whether a request of `cost` on a store that took `charges` (time in µs, cost) passes at
/// `at`: a peek, which writes nothing, so the same store answers every probe.
fn probe(store: &MemoryStore, hit: Hit<'_>, cost: u64, at: u64) -> Decision {
    store.peek_now(&[hit.with_cost(cost)], Timestamp::from_micros(at))
}

/// Checks that a denial at `t` names, as its retry-after, the first microsecond at which the
/// same request passes: denied a microsecond before, admitted at it.
fn check_retry_is_exact(store: &MemoryStore, hit: Hit<'_>, cost: u64, t: u64) -> Option<u64> {
    let denied = probe(store, hit, cost, t);
    let retry = denied.retry_after?.as_micros() as u64;
    assert!(retry > 0, "{hit:?}, cost {cost} at {t}: {denied:?}");
    let before = probe(store, hit, cost, t + retry - 1);
    assert!(
        !before.admitted,
        "{hit:?}, cost {cost}: admitted at {t} + {retry} - 1 µs"
    );
    let at = probe(store, hit, cost, t + retry);
    assert!(
        at.admitted,
        "{hit:?}, cost {cost}: denied at {t} + {retry} µs: {at:?}"
    );
    Some(retry)
}

/// A store that took `charges` (time in µs, cost) of `hit`.
fn charged(hit: Hit<'_>, charges: &[(u64, u64)]) -> MemoryStore {
    let store = MemoryStore::new(10);
    for &(at, cost) in charges {
        store.decide_now(&[hit.with_cost(cost)], Timestamp::from_micros(at));
    }
    store
}

#[test]
fn sliding_retry_after_is_exact_where_doubles_crossed_a_microsecond_late() {
    // The crossing used to be computed from the closed form in doubles, which the decision's
    // own rounding could pass a microsecond earlier: 90 862 696 and 78 171 µs were named.
    let cases = [
        (
            "217 per 3 minutes",
            [
                (1_700_000_015_082_466, 11),
                (1_700_000_057_239_296, 87),
                (1_700_000_221_285_878, 150),
            ],
            (95, 1_700_000_221_537_305),
            90_862_695,
        ),
        (
            "259 per 2 seconds",
            [
                (1_700_000_000_169_172, 45),
                (1_700_000_001_025_406, 45),
                (1_700_000_001_402_067, 205),
            ],
            (197, 1_700_000_002_521_830),
            78_170,
        ),
    ];
    for (rate, charges, (cost, t), retry) in cases {
        let hit = Hit::new(
            "k",
            Rate::parse(rate).unwrap(),
            Strategy::SlidingWindowCounter,
        );
        let store = charged(hit, &charges);
        assert_eq!(
            check_retry_is_exact(&store, hit, cost, t),
            Some(retry),
            "{rate}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]
    /// Every strategy's retry-after is the first microsecond at which the same request
    /// passes, after three charges anywhere in a period or two, at any amount and cost.
    #[test]
    fn retry_after_is_exactly_the_first_microsecond_that_admits(
        strategy in select(&Strategy::ALL[..]),
        amount in prop_oneof![1u64..10, 1u64..1_000, 1u64..=MAX_AMOUNT],
        multiples in 1u64..=5,
        unit in select(&[Unit::Second, Unit::Minute, Unit::Hour, Unit::Day][..]),
        start in any::<u64>(),
        gaps in any::<[u64; 3]>(),
        costs in any::<[u64; 4]>(),
    ) {
        // A log holds one entry per unit: kept small.
        let logged = matches!(strategy, Strategy::MovingWindow | Strategy::MovingWindowElastic);
        let amount = if logged { amount % 1_000 + 1 } else { amount };
        let rate = Rate::new(amount, multiples, unit).unwrap();
        let p = rate.period_micros();
        let hit = Hit::new("k", rate, strategy);
        let mut t = 1_700_000_000_000_000 + start % p;
        let mut charges = Vec::new();
        for (gap, cost) in gaps.iter().zip(costs) {
            charges.push((t, 1 + cost % amount));
            t += gap % p;
        }
        let store = charged(hit, &charges);
        check_retry_is_exact(&store, hit, 1 + costs[3] % amount, t);
    }
}

#[test]
fn a_clock_stepping_back_does_not_break_anything() {
    // One hit at 100 s, then the clock steps back to 10 s. A key's state never moves back:
    // the windows aligned to the clock (fixed, sliding) count the hit in the window of 60 s
    // that holds the first one, the elastic window and the logs still hold it; GCRA's
    // theoretical arrival time lies more than its tolerance ahead, so it refuses until the
    // clock catches up.
    let expected = [
        (Strategy::FixedWindow, true, 0),
        (Strategy::FixedWindowElastic, true, 0),
        (Strategy::MovingWindow, true, 0),
        (Strategy::MovingWindowElastic, true, 0),
        (Strategy::SlidingWindowCounter, true, 0),
        (Strategy::Gcra, false, 0),
    ];
    assert_eq!(expected.len(), Strategy::ALL.len());
    for (strategy, admitted, remaining) in expected {
        let b = Bench::new();
        b.at(100, 0);
        assert!(b.admitted("2 per minute", strategy), "{strategy}");
        b.at(10, 0);
        let d = b.hit("2 per minute", strategy, 1);
        assert_eq!(d.admitted, admitted, "{strategy}");
        assert_eq!(d.stats[0].remaining, remaining, "{strategy}");
        if !admitted {
            // Admitted again once the clock is back at 100 s.
            assert_eq!(secs(d.retry_after), 90.0, "{strategy}");
        }
    }
}

#[test]
fn a_free_elastic_hit_on_a_log_a_larger_rate_left_does_not_panic() {
    // The same key first under 3 per minute, then under 1 per minute (a dynamic limit that
    // shrank): its log holds more hits than the new amount.
    let b = Bench::new();
    let s = Strategy::MovingWindowElastic;
    b.at(0, 0);
    for _ in 0..3 {
        assert!(b.admitted("3 per minute", s));
    }
    b.at(1, 0);
    let free = b.hit("1 per minute", s, 0);
    assert!(!free.admitted);
    // Its record trimmed the log to the newest hit: the same request passes now.
    assert_eq!(free.retry_after, Some(Duration::ZERO));
    assert_eq!(free.stats[0].remaining, 0);
    assert!(b.hit("1 per minute", s, 0).admitted);
    assert!(!b.admitted("1 per minute", s));
}
