//! Key-cardinality flood: millions of distinct clients, each seen once, against the memory
//! store and against governor's keyed limiter. Each runs in a process of its own so that its
//! peak RSS is its own. Then the Redis side: a flood of distinct clients through the Redis
//! store, and the server's memory once their windows have passed.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::process::Command;
use std::time::{Duration, Instant};

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
        write_client_key(&mut key, i, "10/1hour");
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

/// The `i`-th client's counter key for `rate` (`10/1hour`), as the actix integration builds
/// them: prefix, `{client}`, scope, rate. Written over `key`.
fn write_client_key(key: &mut String, i: u64, rate: &str) {
    use std::fmt::Write;
    key.clear();
    let _ = write!(
        key,
        "LIMITER{{10.{}.{}.{}}}:/api:{rate}",
        i >> 16,
        (i >> 8) & 255,
        i & 255
    );
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

/// Floods the harness's own `redis` with `keys` distinct clients (64 tasks, one decision
/// each, fixed window of 2 s), then prints the server's keys and memory before, right
/// after, and as the windows pass: every key expires with its window (plus the grace), so
/// nothing is left to grow.
pub fn redis(keys: u64, redis: &crate::Redis) {
    use limiter_core::Storage;
    use limiter_core::storage::redis::RedisStore;

    const TASKS: u64 = 64;
    // The store as an application gets it: the default grace (a second), which the README's
    // "a second's grace" describes, rather than a shorter one that empties the server sooner.
    let builder = RedisStore::builder(&redis.url()).expect("the harness's Redis URL");
    let store = builder.build().expect("a Redis store");
    let rate = Rate::parse("10 per 2 seconds").expect("a valid rate");
    let clock = Clock::system();
    println!("\nRedis flood: {keys} distinct clients, one decision each (fixed window, 2 s)");
    println!("{:<34} {:>10} {:>12}", "", "keys", "used MB");
    let print = |when: &str, (count, used): (u64, f64)| {
        println!("{when:<34} {count:>10} {used:>12.1}");
    };
    print("before", redis.keys_and_used_mb());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (store, clock) = (store.clone(), clock.clone());
                tokio::spawn(async move {
                    let mut key = String::with_capacity(48);
                    for i in (task..keys).step_by(TASKS as usize) {
                        write_client_key(&mut key, i, "10/2second");
                        let hit = [Hit::new(&key, rate, Strategy::FixedWindow)];
                        black_box(store.decide(&hit, clock.now()).await.map(|d| d.admitted))
                            .expect("Redis answers");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("a flood task");
        }
    });
    let elapsed = started.elapsed();
    print(
        &format!(
            "right after ({:.0} decisions/s)",
            keys as f64 / elapsed.as_secs_f64()
        ),
        redis.keys_and_used_mb(),
    );
    // The last window ends 2 s after its first hit at the latest; then the grace. Polled from
    // right after the flood, so that the time printed last is when the server emptied, not a
    // fixed wait's end.
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(250));
        let now = redis.keys_and_used_mb();
        let waited = started.elapsed().as_secs_f64();
        print(&format!("{waited:.2} s after the flood began"), now);
        if now.0 == 0 {
            break;
        }
    }
}
