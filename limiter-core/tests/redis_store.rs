//! The Redis store as configured by its URI: Store::from_uri, the server's clock, clear and
//! reset (which deletes only this limiter's keys).
#![cfg(feature = "redis")]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{RedisServer, all_keys, redis_available, strict_store};
use limiter_core::storage::Store;
use limiter_core::{Hit, Rate, Storage, StorageUri, Strategy, Timestamp};

#[tokio::test]
async fn a_uri_configures_the_store() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let uri = format!(
        "valkey://127.0.0.1:{}/0?time=server&on_failure=closed&key_prefix=app&deadline_ms=2000",
        server.port
    );
    let store = Store::from_uri(&StorageUri::parse(&uri).unwrap()).unwrap();
    assert!(matches!(store, Store::Redis(_)));
    store.health_check().await.unwrap();

    // time=server: the caller's "now" (here the epoch) is ignored; windows follow Redis' TIME.
    let rate: Rate = "2 per minute".parse().unwrap();
    let hits = [Hit::new(
        "app{1.2.3.4}:/:2/1minute",
        rate,
        Strategy::MovingWindow,
    )];
    let d = store.decide(&hits, Timestamp::ZERO).await.unwrap();
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let reset = Duration::from_micros(d.stats[0].reset.as_micros());
    assert!(d.admitted);
    assert!(reset > wall + Duration::from_secs(55) && reset < wall + Duration::from_secs(65));

    // clear() forgets one counter; reset() every key of this prefix, and nothing else.
    let other = [Hit::new(
        "app{1.2.3.4}:/other:2/1minute",
        rate,
        Strategy::FixedWindow,
    )];
    store.decide(&other, Timestamp::ZERO).await.unwrap();
    redis::cmd("SET")
        .arg("not-ours")
        .arg("1")
        .exec(&mut admin)
        .unwrap();
    store.clear(hits[0].key).await.unwrap();
    let mut keys = all_keys(&mut admin);
    keys.sort();
    assert_eq!(keys, ["app{1.2.3.4}:/other:2/1minute", "not-ours"]);
    store.reset().await.unwrap();
    assert_eq!(all_keys(&mut admin), ["not-ours"]);
}

#[test]
fn bad_settings_fail_at_start_up() {
    let err = Store::from_uri(&StorageUri::parse("redis://localhost/0?on_failure=never").unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("on_failure"), "{err}");
    let err =
        Store::from_uri(&StorageUri::parse("redis+cluster://h:1,h:2?pool=3").unwrap()).unwrap_err();
    assert!(err.to_string().contains("unknown option \"pool\""), "{err}");
}

#[tokio::test]
async fn a_sliding_window_refund_after_its_bucket_ended_still_gives_the_units_back() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let uri = format!("redis://127.0.0.1:{}/0", server.port);
    let store = Store::from_uri(&StorageUri::parse(&uri).unwrap()).unwrap();
    let rate: Rate = "10 per second".parse().unwrap();
    let at = |millis: u64| Timestamp::from_micros(1_700_006_400_000_000 + millis * 1_000);
    // As in the memory store's test (tests/strategies.rs): a refund in the next bucket, dated
    // by its decision, after another decision rolled the state and before any did.
    for (key, rolled) in [("rolled", true), ("unrolled", false)] {
        let hit = |cost| [Hit::new(key, rate, Strategy::SlidingWindowCounter).with_cost(cost)];
        assert!(store.decide(&hit(10), at(950)).await.unwrap().admitted);
        let left = if rolled {
            let d = store.decide(&hit(1), at(1_050)).await.unwrap();
            assert_eq!(
                d.stats[0].remaining, 0,
                "the charge weighs in the next bucket"
            );
            store.refund(&hit(10), at(950)).await.unwrap();
            9
        } else {
            store.refund(&hit(10), at(950)).await.unwrap();
            10
        };
        for i in 0..left {
            let d = store.decide(&hit(1), at(1_100)).await.unwrap();
            assert!(d.admitted, "{key}: hit {i} after the refund");
        }
        assert!(
            !store.decide(&hit(1), at(1_100)).await.unwrap().admitted,
            "{key}"
        );
    }
}

#[tokio::test]
async fn the_query_s_db_selects_the_database() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let uri = format!("redis://127.0.0.1:{}?db=3", server.port);
    let store = Store::from_uri(&StorageUri::parse(&uri).unwrap()).unwrap();
    let rate: Rate = "2 per minute".parse().unwrap();
    let hit = [Hit::new("LIMITER{db}:k", rate, Strategy::FixedWindow)];
    assert!(
        store
            .decide(&hit, Timestamp::from_secs(1_700_000_000))
            .await
            .unwrap()
            .admitted
    );
    let in_db = |admin: &mut redis::Connection, db: u8| -> bool {
        redis::cmd("SELECT").arg(db).exec(admin).unwrap();
        redis::cmd("EXISTS")
            .arg("LIMITER{db}:k")
            .query(admin)
            .unwrap()
    };
    assert!(in_db(&mut admin, 3), "the counter is in database 3");
    assert!(!in_db(&mut admin, 0), "and not in database 0");
}

/// A caller's clock advanced as far as it goes (`u64::MAX` microseconds) gets an answer from
/// every strategy, never a panic: the fast modes work out a window's end and its TTL from that
/// time before the call (the script is given the time the memory store decides at).
#[tokio::test]
async fn a_caller_clock_at_the_end_of_time_never_panics() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let uri = format!("redis://127.0.0.1:{}/0?key_prefix=app", server.port);
    let store = Store::from_uri(&StorageUri::parse(&uri).unwrap()).unwrap();
    let rate: Rate = "2 per minute".parse().unwrap();
    for strategy in Strategy::ALL {
        let key = format!("app{{c}}:{strategy}:2/1minute");
        let hits = [Hit::new(&key, rate, strategy)];
        for t in [u64::MAX, u64::MAX - 1] {
            let now = Timestamp::from_micros(t);
            let decision = store.decide(&hits, now).await;
            assert!(decision.is_ok(), "{strategy} at {t}: {decision:?}");
            let _ = store.peek(&hits, now).await;
            let _ = store.refund(&hits, now).await;
        }
    }
}

#[tokio::test]
async fn with_the_server_clock_a_refund_goes_to_the_window_of_its_charge() {
    // time=server: the script reads Redis' TIME, and a refund after a window or bucket
    // boundary must still find the charge's window, as with the caller's clock. The script
    // is told how long ago the charge was made, on the callers' clock: the system's, or a
    // manual one years behind it (whose "now" does not date decisions here, Redis' TIME does).
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let manual = limiter_core::ManualClock::new(Timestamp::from_secs(1_700_006_400));
    for clock in [limiter_core::Clock::system(), manual.into()] {
        let store = strict_store(&server.url())
            .time(limiter_core::storage::redis::TimeSource::Server)
            .clock(clock.clone())
            .block_cache(0)
            .build()
            .unwrap();
        let day: Rate = "10 per day".parse().unwrap();
        for strategy in [Strategy::FixedWindow, Strategy::SlidingWindowCounter] {
            let manual = clock.is_manual();
            let key = format!("LIMITER{{c}}:/{manual}/{strategy}:10/1day");
            let hit = [Hit::new(&key, day, strategy).with_cost(10)];
            let one = [Hit::new(&key, day, strategy)];
            let now = clock.now();
            assert!(store.decide(&hit, now).await.unwrap().admitted);
            // A charge made two days before this one: its window is long gone, and today's
            // charge stays.
            let two_days_ago = Timestamp::from_micros(now.as_micros() - 2 * 86_400_000_000);
            store.refund(&hit, two_days_ago).await.unwrap();
            let left = store.peek(&one, now).await.unwrap().stats[0].remaining;
            assert_eq!(
                left, 0,
                "{strategy}, manual clock {manual}: a refund for two days ago gave back today's charge"
            );
            // This charge's refund gives it back.
            store.refund(&hit, now).await.unwrap();
            let left = store.peek(&one, clock.now()).await.unwrap().stats[0].remaining;
            assert_eq!(
                left, 10,
                "{strategy}, manual clock {manual}: the refund gave nothing back"
            );
        }
    }
}
