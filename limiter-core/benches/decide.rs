//! One decision on the memory store, per strategy, beside governor's keyed limiter on the same
//! workload: a hot key, and a rotation over 100 000 keys. After criterion's own report it
//! prints our time over governor's for each workload (below 1.0: we are faster), twice: from
//! criterion's means, and from a pass that alternates the two in short rounds and takes
//! medians. Criterion measures one function for seconds before the next; on a host whose
//! speed swings over seconds (virtual machines sharing a core) its two means come from
//! different speeds, where the alternating rounds see the same swings alike.
//!
//! The rate is so high that nothing is ever denied, which makes a moving window's log as long
//! as the hits of the last second (millions for the hot key, dozens per key over 100 000
//! keys). The moving windows are measured once more at a rate clients actually run into,
//! `10 per second` (governor with the same quota): each of the 100 000 keys comes back every
//! few dozen milliseconds, so every log holds its 10 hits and most requests are denied.
//!
//! `cargo bench -p limiter-core --bench decide`

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

mod alternate;

use criterion::{Criterion, criterion_group};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use limiter_core::{Clock, Hit, MemoryStore, Rate, Strategy, keys};

const KEYS: usize = 100_000;

/// Large enough that the hot key stays under its limit for the whole run.
fn rate() -> Rate {
    Rate::parse("4000000000 per second").unwrap()
}

/// The realistic rate of the extra moving-window rows, and governor's quota for it.
const REALISTIC: &str = "10 per second";

fn realistic_quota() -> Quota {
    Quota::per_second(NonZeroU32::new(10).unwrap())
}

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("192.0.2.{i}")).collect()
}

/// Every strategy at the never-denied rate, then the moving windows at the realistic one.
fn groups() -> impl Iterator<Item = (Strategy, bool)> {
    let moving = [Strategy::MovingWindow, Strategy::MovingWindowElastic];
    Strategy::ALL
        .map(|s| (s, false))
        .into_iter()
        .chain(moving.map(|s| (s, true)))
}

/// A fresh store, our rate and governor's limiter at the same quota: the never-denied rate,
/// or the realistic one.
fn contenders(realistic: bool) -> (MemoryStore, Rate, DefaultKeyedRateLimiter<String>) {
    let (rate, quota) = if realistic {
        (Rate::parse(REALISTIC).unwrap(), realistic_quota())
    } else {
        (rate(), Quota::per_second(NonZeroU32::MAX))
    };
    (MemoryStore::new(1_000_000), rate, RateLimiter::keyed(quota))
}

/// The keys of a request's route, default and application limits, as the actix crate writes
/// them: the client's tag, then the scope and the rate.
fn request_keys() -> [String; 3] {
    ["/slow", "default", "app"]
        .map(|scope| keys::counter_key("LIMITER", "192.0.2.1", scope, &rate()))
}

/// A request with the first of `keys`' limits, and one with all three.
fn one_and_three(keys: &[String; 3]) -> ([Hit<'_>; 1], [Hit<'_>; 3]) {
    fn hit(key: &str) -> Hit<'_> {
        Hit::new(key, rate(), Strategy::FixedWindow)
    }
    (
        [hit(&keys[0])],
        [hit(&keys[0]), hit(&keys[1]), hit(&keys[2])],
    )
}

/// The head of a ratio table.
fn print_header() {
    println!(
        "{:<40} {:>9} {:>9} {:>7}",
        "workload", "ours ns", "gov ns", "ratio"
    );
}

/// One row of a ratio table: ours against governor's on `workload`.
fn print_row(strategy: Strategy, realistic: bool, workload: &str, ours: f64, gov: f64) {
    let name = if realistic {
        format!("{strategy} {workload} ({REALISTIC})")
    } else {
        format!("{strategy} {workload}")
    };
    println!("{name:<40} {ours:>9.1} {gov:>9.1} {:>7.2}", ours / gov);
}

/// The row of three limits against one.
fn print_three_vs_one(three: f64, one: f64) {
    println!(
        "{:<40} {three:>9.1} {one:>9.1} {:>7.2}  (3 limits over 1 limit)",
        "fixed-window, 3 limits vs 1",
        three / one
    );
}

/// The benchmark group of `strategy` at `rate` (the realistic rows carry it in their name).
fn group_name(strategy: Strategy, realistic: bool) -> String {
    if realistic {
        format!("decide/{strategy} at {REALISTIC}")
    } else {
        format!("decide/{strategy}")
    }
}

fn decisions(c: &mut Criterion) {
    let clock = Clock::system();
    let keys = keys();
    for (strategy, realistic) in groups() {
        // Each of our measurements sits beside governor's, taken moments apart, so that load
        // from elsewhere on the machine skews both alike.
        let mut group = c.benchmark_group(group_name(strategy, realistic));
        let (store, rate, governor) = contenders(realistic);
        group.bench_function("hot", |b| {
            let key = keys[0].as_str();
            b.iter(|| {
                let hit = [Hit::new(black_box(key), rate, strategy)];
                black_box(store.decide_now(&hit, clock.now()).admitted)
            })
        });
        group.bench_function("hot-governor", |b| {
            let key = &keys[0];
            b.iter(|| black_box(governor.check_key(black_box(key)).is_ok()))
        });
        let mut i = 0;
        group.bench_function("100k", |b| {
            b.iter(|| {
                i = (i + 1) % KEYS;
                let hit = [Hit::new(black_box(keys[i].as_str()), rate, strategy)];
                black_box(store.decide_now(&hit, clock.now()).admitted)
            })
        });
        group.bench_function("100k-governor", |b| {
            b.iter(|| {
                i = (i + 1) % KEYS;
                black_box(governor.check_key(black_box(&keys[i])).is_ok())
            })
        });
        group.finish();
    }
    let mut group = c.benchmark_group("decide/limits-per-request");
    let store = MemoryStore::new(1_000_000);
    let keys = request_keys();
    let (one, three) = one_and_three(&keys);
    for (name, hits) in [("1", &one[..]), ("3", &three[..])] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(store.decide_now(black_box(hits), clock.now()).admitted))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = decisions
}

/// Criterion's mean estimate (ns) of one benchmark, from its saved report.
fn mean_ns(id: &str) -> Option<f64> {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| {
        // Benches run from the package directory; the workspace's target is one level up.
        "../target".to_string()
    });
    let path = format!("{target}/criterion/{id}/new/estimates.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn print_ratios() {
    println!("\nour time / governor's time, measured side by side (below 1.0: we are faster)");
    print_header();
    for (strategy, realistic) in groups() {
        for workload in ["hot", "100k"] {
            // Criterion's directory for a group: its name, '/' made '_'.
            let group = group_name(strategy, realistic).replace('/', "_");
            let (Some(ours), Some(gov)) = (
                mean_ns(&format!("{group}/{workload}")),
                mean_ns(&format!("{group}/{workload}-governor")),
            ) else {
                continue;
            };
            print_row(strategy, realistic, workload, ours, gov);
        }
    }
    if let (Some(one), Some(three)) = (
        mean_ns("decide_limits-per-request/1"),
        mean_ns("decide_limits-per-request/3"),
    ) {
        print_three_vs_one(three, one);
    }
}

/// Rounds of the alternating pass, and calls per round (a few milliseconds each).
const ROUNDS: usize = 41;
const CALLS: u32 = 20_000;

/// Median time per call (ns) of `a` and of `b`, timed in alternating rounds.
fn alternating(mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    let [a, b] = alternate::medians([&mut a, &mut b], ROUNDS, CALLS);
    (a, b)
}

/// The ratio table again, from [`alternating`] rounds on fresh stores.
fn print_alternating() {
    println!(
        "\nthe same, alternating ours and governor's in {ROUNDS} rounds of {CALLS} calls (medians)"
    );
    print_header();
    let clock = Clock::system();
    let keys = keys();
    for (strategy, realistic) in groups() {
        let (store, rate, governor) = contenders(realistic);
        let hot = keys[0].as_str();
        let (ours_hot, gov_hot) = alternating(
            || {
                let hit = [Hit::new(black_box(hot), rate, strategy)];
                black_box(store.decide_now(&hit, clock.now()).admitted);
            },
            || {
                black_box(governor.check_key(black_box(&keys[0])).is_ok());
            },
        );
        let (mut i, mut j) = (0, 0);
        let (ours_many, gov_many) = alternating(
            || {
                i = (i + 1) % KEYS;
                let hit = [Hit::new(black_box(keys[i].as_str()), rate, strategy)];
                black_box(store.decide_now(&hit, clock.now()).admitted);
            },
            || {
                j = (j + 1) % KEYS;
                black_box(governor.check_key(black_box(&keys[j])).is_ok());
            },
        );
        for (workload, ours, gov) in [("hot", ours_hot, gov_hot), ("100k", ours_many, gov_many)] {
            print_row(strategy, realistic, workload, ours, gov);
        }
    }
    let store = MemoryStore::new(1_000_000);
    let keys = request_keys();
    let (one, three) = one_and_three(&keys);
    let (three_ns, one_ns) = alternating(
        || {
            black_box(store.decide_now(black_box(&three), clock.now()).admitted);
        },
        || {
            black_box(store.decide_now(black_box(&one), clock.now()).admitted);
        },
    );
    print_three_vs_one(three_ns, one_ns);
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_ratios();
    print_alternating();
}
