//! The Redis store, against a `redis-server` this bench starts on a free port (skipped, with a
//! message, when there is none): one decision from one task (about one round trip), decisions
//! per second from 64 concurrent tasks sharing the pool (on one thread, as in an actix worker,
//! and on a two-thread tokio runtime), and a rejection answered by the block
//! cache beside the same rejection asked of Redis and decided by the memory store, and a PING
//! and a trivial script over the same client library for the round trip's own cost. After
//! criterion's own report it prints a table of the means, and the one-task round trips again
//! from rounds that alternate the three (see `alternate`).
//!
//! `cargo bench -p limiter-core --features redis --bench redis`

mod alternate;
#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use limiter_core::storage::redis::{FailurePolicy, RedisStore};
use limiter_core::{Clock, Hit, MemoryStore, Rate, Storage, Strategy};

const TASKS: u64 = 64;

fn store(url: &str, block_cache: usize) -> RedisStore {
    RedisStore::builder(url)
        .unwrap()
        .deadline(Duration::from_secs(5))
        .on_failure(FailurePolicy::FailClosed)
        .block_cache(block_cache)
        .build()
        .unwrap()
}

/// Polls `f` once: the block cache answers without waiting, so its future is ready at once.
fn poll_once<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("expected an answer without a round trip"),
    }
}

/// Rounds of the alternating one-task pass, and calls per round (tens of milliseconds each).
const ROUNDS: usize = 21;
const CALLS: u32 = 100;

/// One task's round trips, medians of alternating rounds (ns): a PING, the trivial script,
/// one decision.
struct RoundTrips {
    ping: f64,
    script: f64,
    decision: f64,
}

fn bench(c: &mut Criterion, url: &str) -> RoundTrips {
    let clock = Clock::system();
    let admit = Rate::parse("1000000000 per second").unwrap();
    let deny = Rate::parse("1 per hour").unwrap();
    let one_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // An actix worker is a single-threaded runtime, like `one_thread`: the 64-task rows run on
    // it, and once more on tokio's multi-thread runtime, whose two threads share the two cores
    // with redis-server.
    let multi_thread = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // A connection's driver task lives on the runtime that opened it, so each runtime gets
    // its own store.
    let cached = store(url, 100_000);
    let uncached = store(url, 0);
    let on_multi_thread = store(url, 100_000);
    let mut group = c.benchmark_group("redis");

    // (a') For scale, over the same client library: a PING, and the cheapest script call
    // (EVAL of `return 1`), the round trips (a) cannot beat, in this run. Measured before
    // (a): the first row of a run reads high on some machines.
    let mut direct = one_thread
        .block_on(
            redis::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection(),
        )
        .unwrap();
    let mut script_conn = direct.clone();
    let mut ping = || -> String {
        one_thread
            .block_on(redis::cmd("PING").query_async(&mut direct))
            .unwrap()
    };
    let mut trivial_script = || -> i64 {
        one_thread
            .block_on(
                redis::cmd("EVAL")
                    .arg("return 1")
                    .arg(0)
                    .query_async(&mut script_conn),
            )
            .unwrap()
    };
    // (a) One task, one limit, admitted: about one round trip.
    let one_task_hit = [Hit::new(
        "L{bench-a}:/:1e9/1s",
        admit,
        Strategy::FixedWindow,
    )];
    let one_decision = || {
        one_thread
            .block_on(cached.decide(&one_task_hit, clock.now()))
            .unwrap()
            .admitted
    };
    group.bench_function("ping", |b| b.iter(|| black_box(ping())));
    group.bench_function("trivial-script", |b| b.iter(|| black_box(trivial_script())));
    group.bench_function("one-task", |b| b.iter(|| black_box(one_decision())));
    group.finish();

    // (a) again, the three taking turns.
    let [ping, script, decision] = alternate::medians(
        [
            &mut || {
                black_box(ping());
            },
            &mut || {
                black_box(trivial_script());
            },
            &mut || {
                black_box(one_decision());
            },
        ],
        ROUNDS,
        CALLS,
    );
    let round_trips = RoundTrips {
        ping,
        script,
        decision,
    };

    // (b) 64 tasks, each its own client, over the shared pool's multiplexed connections.
    // One iteration is one decision. Fixed window, GCRA and the sliding window counter, each
    // with a fast script mode. Every sample spawns the tasks, fills the pipeline and drains
    // it; criterion's default linear sampling starts at a few decisions per task, where that
    // weighs on the mean. Ten flat samples of equal, large size measure the steady state
    // (in a group of their own, so the other rows keep the defaults).
    let mut group = c.benchmark_group("redis");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    for (name, strategy, runtime, concurrent) in [
        ("64-tasks", Strategy::FixedWindow, &one_thread, &cached),
        ("64-tasks-gcra", Strategy::Gcra, &one_thread, &cached),
        (
            "64-tasks-sliding",
            Strategy::SlidingWindowCounter,
            &one_thread,
            &cached,
        ),
        (
            "64-tasks-multi-thread",
            Strategy::FixedWindow,
            &multi_thread,
            &on_multi_thread,
        ),
    ] {
        let keys: Vec<String> = (0..TASKS)
            .map(|t| format!("L{{bench-b{t}}}:{name}:1e9/1s"))
            .collect();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let per_task = iters.div_ceil(TASKS);
                let done = AtomicU64::new(0);
                let start = Instant::now();
                runtime.block_on(async {
                    let tasks: Vec<_> = keys
                        .iter()
                        .map(|key| {
                            let (store, key, clock) =
                                (concurrent.clone(), key.clone(), clock.clone());
                            tokio::spawn(async move {
                                let hit = [Hit::new(&key, admit, strategy)];
                                for _ in 0..per_task {
                                    black_box(store.decide(&hit, clock.now()).await.unwrap());
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                        done.fetch_add(per_task, Ordering::Relaxed);
                    }
                });
                let elapsed = start.elapsed();
                elapsed.mul_f64(iters as f64 / done.load(Ordering::Relaxed) as f64)
            })
        });
    }

    group.finish();
    let mut group = c.benchmark_group("redis");

    // (c) A blocked client's rejection: from the block cache, from Redis (cache off), and
    // from the memory store.
    let hit = [Hit::new("L{bench-c}:/:1/1h", deny, Strategy::FixedWindow)];
    one_thread.block_on(async {
        cached.decide(&hit, clock.now()).await.unwrap();
        assert!(!cached.decide(&hit, clock.now()).await.unwrap().admitted);
    });
    group.bench_function("rejection-block-cache", |b| {
        b.iter(|| {
            let d = poll_once(cached.decide(black_box(&hit), clock.now())).unwrap();
            black_box(d.admitted)
        })
    });
    group.bench_function("rejection-block-cache-sync", |b| {
        b.iter(|| {
            black_box(
                cached
                    .decide_locally(black_box(&hit), clock.now())
                    .is_some(),
            )
        })
    });
    group.bench_function("rejection-redis", |b| {
        b.iter(|| {
            let d = one_thread
                .block_on(uncached.decide(black_box(&hit), clock.now()))
                .unwrap();
            black_box(d.admitted)
        })
    });
    let memory = MemoryStore::new(100_000);
    memory.decide_now(&hit, clock.now());
    group.bench_function("rejection-memory", |b| {
        b.iter(|| black_box(memory.decide_now(black_box(&hit), clock.now()).admitted))
    });
    group.finish();
    round_trips
}

/// Criterion's mean estimate (ns) of one benchmark, from its saved report.
fn mean_ns(id: &str) -> Option<f64> {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "../target".to_string());
    let path = format!("{target}/criterion/{id}/new/estimates.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn print_table(round_trips: &RoundTrips) {
    let get = |name: &str| mean_ns(&format!("redis/{name}"));
    println!("\nRedis store, measured in one run against the bench's own redis-server");
    println!("{:<52} {:>12} {:>14}", "workload", "mean", "decisions/s");
    let row = |label: &str, ns: Option<f64>| {
        if let Some(ns) = ns {
            let time = if ns >= 1_000.0 {
                format!("{:.1} us", ns / 1_000.0)
            } else {
                format!("{ns:.1} ns")
            };
            println!("{label:<52} {time:>12} {:>14.0}", 1e9 / ns);
        }
    };
    row(
        "(a) one decision, 1 task, 1 limit, admitted",
        get("one-task"),
    );
    row(
        "    a PING round trip (redis crate), for scale",
        get("ping"),
    );
    row(
        "    a trivial script (EVAL 'return 1'), for scale",
        get("trivial-script"),
    );
    if let (Some(one), Some(ping), Some(script)) =
        (get("one-task"), get("ping"), get("trivial-script"))
    {
        println!(
            "one decision = a PING round trip + {:.1} us ({:.2}x), a trivial script + {:.1} us",
            (one - ping) / 1_000.0,
            one / ping,
            (one - script) / 1_000.0
        );
    }
    row(
        "(b) 64 concurrent tasks on one thread (per decision)",
        get("64-tasks"),
    );
    row("    the same, GCRA", get("64-tasks-gcra"));
    row(
        "    the same, sliding window counter",
        get("64-tasks-sliding"),
    );
    row(
        "    fixed window, on a 2-thread tokio runtime",
        get("64-tasks-multi-thread"),
    );
    row(
        "(c) rejection from the block cache (Storage::decide)",
        get("rejection-block-cache"),
    );
    row(
        "    the same, RedisStore::decide_locally (no future)",
        get("rejection-block-cache-sync"),
    );
    row(
        "    the same rejection from Redis (cache off)",
        get("rejection-redis"),
    );
    row(
        "    the same rejection from MemoryStore::decide_now",
        get("rejection-memory"),
    );
    if let (Some(cache), Some(sync), Some(memory), Some(redis)) = (
        get("rejection-block-cache"),
        get("rejection-block-cache-sync"),
        get("rejection-memory"),
        get("rejection-redis"),
    ) {
        println!(
            "rejection time over the memory store's: block cache {:.2} (decide_locally {:.2}); \
             asking Redis instead costs {:.0}x the block cache",
            cache / memory,
            sync / memory,
            redis / cache
        );
    }
    let RoundTrips {
        ping,
        script,
        decision,
    } = *round_trips;
    println!(
        "\n(a) again, a PING, the trivial script and one decision taking turns, {ROUNDS} rounds \
         of {CALLS} calls (medians):\nPING {:.1} us, trivial script {:.1} us, one decision \
         {:.1} us = a PING + {:.1} us ({:.2}x), the trivial script + {:.1} us",
        ping / 1_000.0,
        script / 1_000.0,
        decision / 1_000.0,
        (decision - ping) / 1_000.0,
        decision / ping,
        (decision - script) / 1_000.0
    );
}

fn main() {
    if !common::redis_available() {
        println!("redis bench skipped: no redis-server on PATH");
        return;
    }
    let server = common::RedisServer::start();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let round_trips = bench(&mut c, &server.url());
    c.final_summary();
    drop(server);
    print_table(&round_trips);
}
