//! Key-cardinality flood: millions of distinct clients, each seen once, against the memory
//! store and against governor's keyed limiter. Each runs in a process of its own so that its
//! peak RSS is its own.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::process::Command;
use std::time::Instant;

use governor::{Quota, RateLimiter};
use limiter_core::{Clock, Hit, MemoryStore, Rate, Strategy};

/// Runs one side of the flood in this process and prints one line per checkpoint:
/// `keys ns_per_decision rss_mb` and finally `peak_rss_mb`.
pub fn run_side(side: &str, keys: u64) {
    let clock = Clock::system();
    let rate = Rate::parse("10 per hour").expect("a valid rate");
    let store = MemoryStore::default();
    let governor = RateLimiter::keyed(Quota::per_hour(NonZeroU32::new(10).expect("10 > 0")));
    let mut key = String::with_capacity(48);
    let checkpoint = (keys / 10).max(1);
    let mut started = Instant::now();
    for i in 0..keys {
        key.clear();
        // Client keys as the actix integration builds them: prefix, {client}, scope, rate.
        use std::fmt::Write;
        let _ = write!(
            key,
            "LIMITER{{10.{}.{}.{}}}:/api:10/1hour",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        );
        match side {
            "ours" => {
                let hit = [Hit::new(&key, rate, Strategy::FixedWindow)];
                black_box(store.decide_now(&hit, clock.now()).admitted);
            }
            _ => {
                black_box(governor.check_key(&key).is_ok());
            }
        }
        if (i + 1) % checkpoint == 0 {
            let ns = started.elapsed().as_nanos() as f64 / checkpoint as f64;
            println!("{} {:.1} {:.0}", i + 1, ns, rss_mb("VmRSS"));
            started = Instant::now();
        }
    }
    if side == "ours" {
        println!(
            "held {} of at most {} keys, {} evicted",
            store.len(),
            store.max_keys(),
            store.evictions()
        );
    }
    println!("peak {:.0}", rss_mb("VmHWM"));
}

fn rss_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Runs both sides as child processes and prints them side by side.
pub fn compare(keys: u64) {
    println!("\nflood: {keys} distinct client keys, each hit once (memory store cap: default)");
    let exe = std::env::current_exe().expect("own path");
    let mut outputs = Vec::new();
    for side in ["ours", "governor"] {
        let out = Command::new(&exe)
            .args(["flood-side", side, &keys.to_string()])
            .output()
            .expect("the flood runs");
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    println!(
        "{:>10} {:>12} {:>10} {:>14} {:>12}",
        "keys", "ours ns", "ours MB", "governor ns", "governor MB"
    );
    let rows = |s: &str| -> Vec<Vec<String>> {
        s.lines()
            .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    };
    let (ours, gov) = (rows(&outputs[0]), rows(&outputs[1]));
    for (o, g) in ours.iter().zip(&gov) {
        println!(
            "{:>10} {:>12} {:>10} {:>14} {:>12}",
            o[0], o[1], o[2], g[1], g[2]
        );
    }
    for (side, out) in ["ours", "governor"].iter().zip(&outputs) {
        for line in out
            .lines()
            .filter(|l| !l.starts_with(|c: char| c.is_ascii_digit()))
        {
            println!("{side}: {line}");
        }
    }
}
