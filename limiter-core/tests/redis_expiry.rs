//! Keys expire: TTLs follow each state's own expiry (plus the grace), and once the longest
//! window has passed the test's server holds no key of the limiter.
#![cfg(feature = "redis")]

mod common;

use std::time::Duration;

use common::{RedisServer, all_keys, redis_available, strict_store, wait_until};
use limiter_core::{Hit, ManualClock, Rate, Storage, Strategy, Timestamp};

#[tokio::test]
async fn no_key_outlives_its_longest_window() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let store = strict_store(&server.url())
        .ttl_grace(Duration::ZERO)
        .build()
        .unwrap();
    // Real wall-clock time, so the server's TTL countdown and the limiter's clock agree.
    let clock = limiter_core::Clock::system();
    let rate: Rate = "3 per second".parse().unwrap();
    let keys: Vec<String> = Strategy::ALL
        .iter()
        .map(|s| format!("LIMITER{{ttl}}:{s}:3/1second"))
        .collect();
    for (key, strategy) in keys.iter().zip(Strategy::ALL) {
        let hit = [Hit::new(key, rate, strategy)];
        for _ in 0..5 {
            store.decide(&hit, clock.now()).await.unwrap();
        }
    }
    let mut present = all_keys(&mut admin);
    present.sort();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(present, expected);
    for key in &keys {
        let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut admin).unwrap();
        // A state lives at most two periods (the sliding window's previous bucket).
        assert!(ttl > 0 && ttl <= 2_000, "{key}: PTTL {ttl}");
    }
    wait_until(Duration::from_millis(2_900), "every key to expire", || {
        all_keys(&mut admin).is_empty()
    });
}

#[tokio::test]
async fn ttls_follow_the_callers_clock_plus_the_grace() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let store = strict_store(&server.url())
        .ttl_grace(Duration::from_millis(1_000))
        .build()
        .unwrap();
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_020)); // hh:mm:40
    let rate: Rate = "2 per minute".parse().unwrap();
    let expected_ttl_ms = [
        (Strategy::FixedWindow, 20_000 + 1_000), // the window ends at :00
        (Strategy::FixedWindowElastic, 60_000 + 1_000), // now + period
        (Strategy::MovingWindow, 60_000 + 1_000), // newest hit + period
        (Strategy::MovingWindowElastic, 60_000 + 1_000),
        (Strategy::SlidingWindowCounter, 80_000 + 1_000), // the bucket's end + period
        (Strategy::Gcra, 30_000 + 1_000),                 // TAT: one emission interval
    ];
    for (strategy, ttl_ms) in expected_ttl_ms {
        let key = format!("LIMITER{{ttl}}:{strategy}");
        store
            .decide(&[Hit::new(&key, rate, strategy)], clock.now())
            .await
            .unwrap();
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut admin).unwrap();
        assert!(
            ttl <= ttl_ms && ttl > ttl_ms - 1_000,
            "{strategy}: PTTL {ttl}, expected about {ttl_ms}"
        );
    }
    // Past the longest window on the limiter's clock, the state is gone for the limiter,
    // whatever the server still holds: a new window admits again.
    clock.advance(Duration::from_secs(120));
    for strategy in Strategy::ALL {
        let key = format!("LIMITER{{ttl}}:{strategy}");
        let d = store
            .decide(&[Hit::new(&key, rate, strategy).with_cost(2)], clock.now())
            .await
            .unwrap();
        assert!(d.admitted, "{strategy}");
    }
}
