//! One request is one script call, whatever the number of limits (DESIGN §4), counted with
//! INFO commandstats on the test's own server.
#![cfg(feature = "redis")]

mod common;

use std::time::{Duration, Instant};

use common::{RedisServer, calls_of, command_calls, redis_available, strict_store};
use limiter_core::{Hit, Storage, Strategy, Timestamp, keys::counter_key, parse_rates};

#[tokio::test]
async fn n_requests_with_four_limits_cost_n_script_calls() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let store = strict_store(&server.url())
        // Denied requests must reach Redis too: this counts what one request costs there.
        .block_cache(0)
        .build()
        .unwrap();
    let rates = parse_rates("50 per second, 100 per minute, 1000 per hour, 5000 per day").unwrap();
    let strategies = [
        Strategy::FixedWindow,
        Strategy::MovingWindow,
        Strategy::SlidingWindowCounter,
        Strategy::Gcra,
    ];
    let keys: Vec<String> = rates
        .iter()
        .map(|r| counter_key("LIMITER", "10.0.0.7", "/api", r))
        .collect();
    let hits: Vec<Hit<'_>> = keys
        .iter()
        .zip(&rates)
        .zip(strategies)
        .map(|((k, r), s)| Hit::new(k, *r, s))
        .collect();
    let now = Timestamp::from_secs(1_700_000_000);

    // The first call loads the script (NOSCRIPT, then EVAL); count from the second on.
    assert!(store.decide(&hits, now).await.unwrap().admitted);
    let mut admin = server.admin();
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .exec(&mut admin)
        .unwrap();

    const N: u64 = 200;
    let mut admitted = 0;
    for _ in 0..N {
        if store.decide(&hits, now).await.unwrap().admitted {
            admitted += 1;
        }
    }
    // 50 per second at a fixed instant: the first call took one, 49 more pass.
    assert_eq!(admitted, 49);

    let calls = command_calls(&mut admin);
    let count = |name: &str| calls_of(&calls, name);
    // commandstats also counts what the script runs inside the server; everything else
    // came from a client.
    const INSIDE_SCRIPT: [&str; 10] = [
        "type", "get", "set", "del", "llen", "lindex", "lpop", "rpush", "ltrim", "pexpire",
    ];
    let other: Vec<&(String, u64)> = calls
        .iter()
        .filter(|(c, _)| {
            !INSIDE_SCRIPT.contains(&c.as_str())
                && !["evalsha", "config|resetstat", "info"].contains(&c.as_str())
        })
        .collect();
    println!(
        "script calls per request: {}",
        count("evalsha") as f64 / N as f64
    );
    println!("commands run inside the script: {calls:?}");
    assert_eq!(count("evalsha"), N, "{calls:?}");
    assert_eq!(count("eval"), 0, "{calls:?}");
    // Nothing else travels from the store: no PING per checkout, no reads around the script.
    assert!(other.is_empty(), "{other:?}");
}

/// Trading a charge for another batch, as the actix wrapper trades what the middleware
/// charged before routing for the route's own limits, is one script call, not a refund and
/// a decision; once the block cache knows the new batch is denied, only the refund travels.
#[tokio::test]
async fn a_refund_and_a_decision_together_cost_one_script_call() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let store = strict_store(&server.url()).build().unwrap();
    let rate = |text: &str| parse_rates(text).unwrap()[0];
    let (app_rate, default_rate, route_rate) = (
        rate("10 per minute"),
        rate("5 per minute"),
        rate("2 per minute"),
    );
    let [app, default, route] = [
        (app_rate, "app"),
        (default_rate, "default"),
        (route_rate, "/r"),
    ]
    .map(|(r, scope)| counter_key("LIMITER", "10.0.0.9", scope, &r));
    let fixed = |key, r| Hit::new(key, r, Strategy::FixedWindow);
    let before_routing = [fixed(&app, app_rate), fixed(&default, default_rate)];
    let route_limits = [fixed(&route, route_rate), fixed(&app, app_rate)];
    let now = Timestamp::from_secs(1_700_000_000);

    // The first call of each script loads it (NOSCRIPT, then EVAL): a decision takes the
    // fixed-window script, the rest the general one. Count once both are loaded.
    assert!(store.decide(&before_routing, now).await.unwrap().admitted);
    store.refund(&before_routing, now).await.unwrap();
    let mut admin = server.admin();
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .exec(&mut admin)
        .unwrap();
    let script_calls = |admin: &mut redis::Connection| {
        let calls = command_calls(admin);
        calls_of(&calls, "evalsha") + calls_of(&calls, "eval")
    };

    let mut verdicts = Vec::new();
    for _ in 0..4 {
        assert!(store.decide(&before_routing, now).await.unwrap().admitted);
        let decision = store
            .refund_and_decide(&before_routing, &route_limits, now)
            .await
            .unwrap();
        let remaining: Vec<u64> = decision.stats.iter().map(|s| s.remaining).collect();
        verdicts.push((decision.admitted, remaining));
    }
    assert_eq!(
        verdicts,
        [
            (true, vec![1, 9]),
            (true, vec![0, 8]),
            // Denied by the route's limit: the application limit is not charged.
            (false, vec![0, 8]),
            // From the block cache, which shows a limit it did not ask as unused.
            (false, vec![0, 10]),
        ]
    );
    // Two calls per request (the charge, then the trade), but the last trade's decision came
    // from the block cache: one call, its refund.
    assert_eq!(script_calls(&mut admin), 4 + 3 + 1);
    // Every charge made before routing was given back: the default limit is untouched, and
    // the application limit holds the two admitted requests.
    let left = store.peek(&before_routing, now).await.unwrap();
    let left: Vec<u64> = left.stats.iter().map(|s| s.remaining).collect();
    assert_eq!(left, [8, 5]);
}

/// Decision latency on the test's own server: `cargo test -p limiter-core --features redis
/// --release --test redis_round_trips -- --ignored --nocapture`.
///
/// Every decision admits: the rates are never reached, so none is answered by the block
/// cache (a denied client's next requests would be, in nanoseconds) and each is a round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn decision_latency() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let store = strict_store(&server.url()).build().unwrap();
    let rates = parse_rates(
        "1000000 per second, 10000000 per minute, 100000000 per hour, 1000000000 per day",
    )
    .unwrap();
    for (limits, strategy) in [
        (1, Strategy::FixedWindow),
        (4, Strategy::FixedWindow),
        (4, Strategy::Gcra),
        (4, Strategy::SlidingWindowCounter),
        (4, Strategy::MovingWindow),
    ] {
        let keys: Vec<String> = rates[..limits]
            .iter()
            .map(|r| counter_key("LIMITER", "10.0.0.7", &format!("/{strategy}"), r))
            .collect();
        let hits: Vec<Hit<'_>> = keys
            .iter()
            .zip(&rates)
            .map(|(k, r)| Hit::new(k, *r, strategy))
            .collect();
        let mut now = Timestamp::from_secs(1_700_000_000);
        store.decide(&hits, now).await.unwrap();
        let mut samples = Vec::with_capacity(5_000);
        for _ in 0..5_000 {
            now = now.saturating_add(Duration::from_micros(1_000));
            let start = Instant::now();
            let decision = store.decide(&hits, now).await.unwrap();
            samples.push(start.elapsed());
            assert!(decision.admitted, "a denial would time the block cache");
        }
        samples.sort();
        let pct = |p: usize| samples[samples.len() * p / 100];
        println!(
            "{limits} limit(s), {strategy}: p50 {:?}, p99 {:?} over {} sequential decisions",
            pct(50),
            pct(99),
            samples.len()
        );
    }
    // Many concurrent callers over the pool's multiplexed connections.
    let keys: Vec<String> = rates
        .iter()
        .map(|r| counter_key("LIMITER", "10.0.0.8", "/c", r))
        .collect();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..64 {
        let store = store.clone();
        let keys = keys.clone();
        let rates = rates.clone();
        tasks.push(tokio::spawn(async move {
            let hits: Vec<Hit<'_>> = keys
                .iter()
                .zip(&rates)
                .map(|(k, r)| Hit::new(k, *r, Strategy::FixedWindow))
                .collect();
            for i in 0..200u64 {
                let now = Timestamp::from_micros(1_700_000_000_000_000 + t * 1_000 + i);
                let decision = store.decide(&hits, now).await.unwrap();
                assert!(decision.admitted, "a denial would time the block cache");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "64 tasks x 200 decisions of 4 limits: {:.0} decisions/s",
        12_800.0 / elapsed.as_secs_f64()
    );
}
