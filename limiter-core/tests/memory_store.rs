//! The memory store: all-or-nothing batches, exactness under races, the key cap, and the
//! rest of the storage contract.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use limiter_core::storage::Store;
use limiter_core::{
    ConfigError, Hit, ManualClock, MemoryStore, Rate, Storage, StorageUri, Strategy, Timestamp,
};

const T0: u64 = 1_700_006_400;

fn rate(text: &str) -> Rate {
    Rate::parse(text).unwrap()
}

#[test]
fn a_batch_is_admitted_only_if_every_limit_admits() {
    let store = MemoryStore::new(1_000);
    let now = Timestamp::from_secs(T0);
    let route = rate("2 per minute");
    let app = rate("3 per minute");
    let batch = [
        Hit::new("route", route, Strategy::FixedWindow),
        Hit::new("app", app, Strategy::FixedWindow),
    ];
    assert!(store.decide_now(&batch, now).admitted);
    let d = store.decide_now(&batch, now);
    assert!(d.admitted);
    assert_eq!(d.stats[0].remaining, 0);
    assert_eq!(d.stats[1].remaining, 1);
    // The route limit is spent: the request is denied and the app limit is not charged.
    let denied = store.decide_now(&batch, now);
    assert!(!denied.admitted);
    assert_eq!(denied.breached, Some(0));
    assert_eq!(
        denied.stats[1].remaining, 1,
        "a denied request charges nothing"
    );
    let app_only = [Hit::new("app", app, Strategy::FixedWindow)];
    assert!(store.decide_now(&app_only, now).admitted);
    assert!(!store.decide_now(&app_only, now).admitted);
}

#[test]
fn the_first_breached_limit_is_reported_and_retry_waits_for_all() {
    let store = MemoryStore::new(1_000);
    let now = Timestamp::from_secs(T0);
    let batch = [
        Hit::new("a", rate("5 per hour"), Strategy::FixedWindow),
        Hit::new("b", rate("1 per second"), Strategy::FixedWindow),
        Hit::new("c", rate("1 per minute"), Strategy::FixedWindow),
    ];
    assert!(store.decide_now(&batch, now).admitted);
    let d = store.decide_now(&batch, now);
    assert_eq!(d.breached, Some(1));
    assert!(d.stats[0].admitted && !d.stats[1].admitted && !d.stats[2].admitted);
    assert_eq!(d.retry_after, Some(Duration::from_secs(60)));
}

#[test]
fn an_elastic_limit_records_its_own_denial_inside_a_batch() {
    let store = MemoryStore::new(1_000);
    let clock = ManualClock::new(Timestamp::from_secs(T0));
    let batch = [
        Hit::new("plain", rate("10 per minute"), Strategy::FixedWindow),
        Hit::new(
            "elastic",
            rate("1 per minute"),
            Strategy::FixedWindowElastic,
        ),
    ];
    assert!(store.decide_now(&batch, clock.now()).admitted);
    clock.advance(Duration::from_secs(50));
    let d = store.decide_now(&batch, clock.now());
    assert_eq!(d.breached, Some(1));
    // The elastic denial moved its window's end to now + 60 s.
    assert_eq!(d.stats[1].reset, Timestamp::from_secs(T0 + 110));
    clock.advance(Duration::from_secs(59));
    assert!(!store.decide_now(&batch, clock.now()).admitted);
    // The plain limit was never charged by the denials.
    let plain = store.peek_now(&batch[..1], clock.now());
    assert_eq!(plain.stats[0].remaining, 10);
}

#[test]
fn peek_clear_and_reset() {
    let store = MemoryStore::new(1_000);
    let now = Timestamp::from_secs(T0);
    let hit = [Hit::new("k", rate("2 per minute"), Strategy::MovingWindow)];
    assert_eq!(store.peek_now(&hit, now).stats[0].remaining, 2);
    assert!(store.is_empty(), "a peek does not create keys");
    store.decide_now(&hit, now);
    store.decide_now(&hit, now);
    let peeked = store.peek_now(&hit, now);
    assert!(!peeked.admitted);
    assert_eq!(peeked.stats[0].remaining, 0);
    assert!(
        !store.decide_now(&hit, now).admitted,
        "peeking charged nothing"
    );
    store.clear_now("k");
    assert!(store.decide_now(&hit, now).admitted);
    store.reset_now();
    assert!(store.is_empty());
}

#[test]
fn racing_threads_admit_exactly_the_limit_for_every_strategy() {
    const LIMIT: u64 = 500;
    const THREADS: usize = 8;
    const TRIES_PER_THREAD: usize = 200;
    for strategy in Strategy::ALL {
        // 64 shards: the two untagged keys almost always live in two, which every batch
        // locks together; half the threads name them in the other order.
        let store = Arc::new(MemoryStore::new(100_000));
        let admitted = Arc::new(AtomicU64::new(0));
        let barrier = Arc::new(Barrier::new(THREADS));
        let now = Timestamp::from_secs(T0);
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (store, admitted, barrier) = (store.clone(), admitted.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut batch = [
                        Hit::new("hot", rate("500 per hour"), strategy),
                        Hit::new("app", rate("100000 per hour"), strategy),
                    ];
                    if thread % 2 == 1 {
                        batch.reverse();
                    }
                    barrier.wait();
                    for _ in 0..TRIES_PER_THREAD {
                        if store.decide_now(&batch, now).admitted {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(admitted.load(Ordering::Relaxed), LIMIT, "{strategy}");
        let app = [Hit::new("app", rate("100000 per hour"), strategy)];
        assert_eq!(
            store.peek_now(&app, now).stats[0].remaining,
            100_000 - LIMIT,
            "{strategy}: the app limit was charged once per admitted request"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_tasks_through_the_async_trait_admit_exactly_the_limit() {
    let store = Arc::new(Store::from_uri(&StorageUri::parse("memory://").unwrap()).unwrap());
    let now = Timestamp::from_secs(T0);
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let hit = [Hit::new("k", rate("100 per minute"), Strategy::Gcra)];
                let mut admitted = 0;
                for _ in 0..10 {
                    if store.decide(&hit, now).await.unwrap().admitted {
                        admitted += 1;
                    }
                    tokio::task::yield_now().await;
                }
                admitted
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 100);
}

#[test]
fn a_flood_of_distinct_keys_stays_within_the_cap_and_keeps_deciding() {
    let store = MemoryStore::new(10_000);
    let clock = ManualClock::new(Timestamp::from_secs(T0));
    let limit = rate("1 per hour");
    for i in 0..200_000u32 {
        let key = format!("client-{i}");
        let hit = [Hit::new(&key, limit, Strategy::FixedWindow)];
        assert!(store.decide_now(&hit, clock.now()).admitted);
        assert!(store.len() <= store.max_keys());
    }
    assert!(store.max_keys() <= 10_000);
    assert!(store.len() >= store.max_keys() * 9 / 10, "the cap is used");
    // A client that keeps hitting is still limited while the flood goes on.
    let hot = [Hit::new("hot", limit, Strategy::FixedWindow)];
    assert!(store.decide_now(&hot, clock.now()).admitted);
    assert!(!store.decide_now(&hot, clock.now()).admitted);
}

#[test]
fn expired_state_is_reclaimed_before_anything_live_is_evicted() {
    let store = MemoryStore::new(1_000);
    let clock = ManualClock::new(Timestamp::from_secs(T0));
    let per_second = rate("1 per second");
    for i in 0..store.max_keys() {
        let key = format!("old-{i}");
        store.decide_now(
            &[Hit::new(&key, per_second, Strategy::FixedWindow)],
            clock.now(),
        );
    }
    assert_eq!(store.len(), store.max_keys());
    // Every old key's window ends within a second; new keys take their places.
    clock.advance(Duration::from_secs(2));
    for i in 0..store.max_keys() {
        let key = format!("new-{i}");
        store.decide_now(
            &[Hit::new(&key, per_second, Strategy::FixedWindow)],
            clock.now(),
        );
    }
    assert_eq!(store.evictions(), 0, "only expired state made room");
    assert!(store.len() <= store.max_keys());
}

#[test]
fn a_full_store_never_evicts_a_key_of_the_batch_it_is_deciding() {
    // A cap of 4 keys (one shard), three of them held for a day; every insertion past the cap
    // samples all of them and evicts the one that expires first. A batch of two new
    // per-second keys: the second must not evict the first, charged a moment before.
    let now = Timestamp::from_secs(T0);
    let per_second = rate("1 per second");
    for strategy in Strategy::ALL {
        let store = MemoryStore::new(4);
        for i in 0..3 {
            let key = format!("daily-{i}");
            let daily = [Hit::new(&key, rate("1 per day"), Strategy::FixedWindow)];
            assert!(store.decide_now(&daily, now).admitted);
        }
        let batch = [
            Hit::new("route", per_second, strategy),
            Hit::new("app", per_second, strategy),
        ];
        let first = store.decide_now(&batch, now);
        assert!(first.admitted, "{strategy}");
        // Both charges are held: the same request again is denied by the first limit.
        let again = store.decide_now(&batch, now);
        assert_eq!(again.breached, Some(0), "{strategy}: {again:?}");
        assert_eq!(store.len(), store.max_keys(), "{strategy}");
        assert_eq!(store.evictions(), 1, "{strategy}: a daily key made room");
    }
}

#[test]
fn a_batch_with_more_keys_than_the_cap_is_still_decided_whole() {
    // One key of room and a batch of three: the batch's own keys are never evicted, so the
    // store holds all three until later insertions bring it back under its cap.
    let store = MemoryStore::new(1);
    let now = Timestamp::from_secs(T0);
    let one = rate("1 per minute");
    let batch = [
        Hit::new("a", one, Strategy::FixedWindow),
        Hit::new("b", one, Strategy::MovingWindow),
        Hit::new("c", one, Strategy::Gcra),
    ];
    assert!(store.decide_now(&batch, now).admitted);
    assert_eq!(store.decide_now(&batch, now).breached, Some(0));
    assert_eq!(store.len(), 3);
    assert!(
        store
            .decide_now(&[Hit::new("d", one, Strategy::FixedWindow)], now)
            .admitted
    );
    assert_eq!(store.len(), 1);
}

#[test]
fn configuration_errors_name_the_bad_value_and_the_accepted_ones() {
    let err = "leaky-bucket".parse::<Strategy>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown strategy \"leaky-bucket\"; expected one of fixed-window, \
         fixed-window-elastic-expiry (or fixed-window-elastic), moving-window, \
         moving-window-elastic, sliding-window-counter (or sliding-window), gcra (or token-bucket)"
    );
    // Near misses are named, aliases and all; every name is taken in any case.
    for (typo, meant) in [
        ("fixed-windw", "fixed-window"),
        ("Moving Window", "moving-window"),
        ("sliding-window-counters", "sliding-window-counter"),
        ("token-buckets", "token-bucket"),
        ("gcr", "gcra"),
    ] {
        let err = typo.parse::<Strategy>().unwrap_err().to_string();
        assert!(
            err.ends_with(&format!("; did you mean \"{meant}\"?")),
            "{typo}: {err}"
        );
    }
    for (name, strategy) in [
        ("FIXED_WINDOW", Strategy::FixedWindow),
        ("fixed-window-elastic-expiry", Strategy::FixedWindowElastic),
        ("fixed-window-elastic", Strategy::FixedWindowElastic),
        ("moving-window", Strategy::MovingWindow),
        ("moving_window_elastic", Strategy::MovingWindowElastic),
        ("sliding-window-counter", Strategy::SlidingWindowCounter),
        ("sliding-window", Strategy::SlidingWindowCounter),
        (" gcra ", Strategy::Gcra),
        ("token-bucket", Strategy::Gcra),
    ] {
        assert_eq!(name.parse::<Strategy>(), Ok(strategy), "{name}");
    }
    let err = StorageUri::parse("mongodb://db:27017").unwrap_err();
    assert!(matches!(err, ConfigError::UnknownScheme { ref scheme, .. } if scheme == "mongodb"));
    assert_eq!(
        err.to_string(),
        "unknown storage scheme \"mongodb\" in \"mongodb://db:27017\"; expected one of memory://, \
         redis://, rediss://, redis+unix://, redis+cluster://, redis+sentinel:// (or the valkey \
         spellings)"
    );
    assert_eq!(
        StorageUri::parse("localhost:6379").unwrap_err().to_string(),
        "bad storage URI \"localhost:6379\": expected scheme://..., e.g. memory:// or \
         redis://localhost:6379/0"
    );
    assert_eq!(
        StorageUri::parse("memory://?max_keys=lots")
            .unwrap_err()
            .to_string(),
        "invalid max_keys \"lots\": expected a whole number above 0"
    );
    assert_eq!(
        StorageUri::parse("memory://?size=1")
            .unwrap_err()
            .to_string(),
        "bad storage URI \"memory://?size=1\": unknown option \"size\"; memory:// accepts max_keys"
    );
    assert_eq!(
        StorageUri::parse("redis+sentinel://h:26379")
            .unwrap_err()
            .to_string(),
        "bad storage URI \"redis+sentinel://h:26379\": no service name; write \
         redis+sentinel://host:26379,host:26380/mymaster"
    );
    for (alias, strategy) in [
        ("fixed-window-elastic", Strategy::FixedWindowElastic),
        ("token-bucket", Strategy::Gcra),
        ("MOVING_WINDOW", Strategy::MovingWindow),
    ] {
        assert_eq!(alias.parse::<Strategy>().unwrap(), strategy);
    }
}

#[test]
fn a_denial_late_in_the_batch_leaves_earlier_limits_as_they_were() {
    for strategy in Strategy::ALL {
        let store = MemoryStore::new(1_000);
        let clock = ManualClock::new(Timestamp::from_secs(T0));
        let batch = [
            Hit::new("L{c}:first", rate("5 per minute"), strategy),
            Hit::new("L{c}:second", rate("1 per minute"), Strategy::FixedWindow),
        ];
        let first = store.decide_now(&batch, clock.now());
        assert!(first.admitted, "{strategy}");
        let reset_before = first.stats[0].reset;
        clock.advance(Duration::from_secs(10));
        let denied = store.decide_now(&batch, clock.now());
        assert_eq!(denied.breached, Some(1), "{strategy}");
        assert_eq!(
            denied.stats[0].remaining, 4,
            "{strategy}: the first limit was given back"
        );
        // Nothing moved: not the count, not an elastic window's end.
        let alone = store.peek_now(&batch[..1], clock.now());
        assert_eq!(alone.stats[0].remaining, 4, "{strategy}");
        if strategy == Strategy::FixedWindowElastic {
            assert_eq!(alone.stats[0].reset, reset_before, "{strategy}");
        }
    }
}

/// A batch of new keys grows the shard's table while it is charged (each insertion may move
/// the keys before it); a denial at its end still finds and rolls back every one of them.
#[test]
fn a_denied_batch_of_new_keys_rolls_back_after_the_table_grew() {
    for strategy in Strategy::ALL {
        let store = MemoryStore::new(100_000);
        let clock = ManualClock::new(Timestamp::from_secs(T0));
        let keys: Vec<String> = (0..40).map(|i| format!("L{{c}}:limit-{i}")).collect();
        let mut batch: Vec<Hit<'_>> = keys
            .iter()
            .map(|key| Hit::new(key, rate("3 per minute"), strategy))
            .collect();
        batch.push(Hit::new("L{c}:closed", rate("0 per minute"), strategy));
        let denied = store.decide_now(&batch, clock.now());
        assert_eq!(denied.breached, Some(40), "{strategy}");
        assert!(
            denied.stats[..40].iter().all(|s| s.remaining == 3),
            "{strategy}: {:?}",
            denied.stats
        );
        let after = store.peek_now(&batch[..40], clock.now());
        assert!(
            after.stats.iter().all(|s| s.remaining == 3),
            "{strategy}: every limit as before the batch"
        );
        // And the same batch without the closed limit is admitted once per hit left.
        for left in (0..3).rev() {
            let admitted = store.decide_now(&batch[..40], clock.now());
            assert!(admitted.admitted, "{strategy}");
            assert!(
                admitted.stats.iter().all(|s| s.remaining == left),
                "{strategy}"
            );
        }
    }
}

#[test]
fn a_key_is_one_counter_however_it_is_reached() {
    // A tagged key is found by a lone decision, by a batch of its client's limits (which
    // hashes the shared head once), by a batch mixing clients, and by peek, refund and clear.
    let store = MemoryStore::new(100_000);
    let now = Timestamp::from_secs(T0);
    let limit = rate("100 per minute");
    let hit = |key| Hit::new(key, limit, Strategy::FixedWindow);
    let mine = "LIMITER{10.0.0.1}:/slow:100/1minute";
    let mine_too = "LIMITER{10.0.0.1}:app:100/1minute";
    // Same tag, another head: its own counter, wherever it is placed.
    let other_prefix = "OTHER{10.0.0.1}:/slow:100/1minute";
    let longer_tag = "LIMITER{10.0.0.12}:/slow:100/1minute";
    let remaining = |key| store.peek_now(&[hit(key)], now).stats[0].remaining;

    assert!(store.decide_now(&[hit(mine)], now).admitted);
    assert!(store.decide_now(&[hit(mine), hit(mine_too)], now).admitted);
    assert!(
        store
            .decide_now(&[hit(mine_too), hit(longer_tag)], now)
            .admitted
    );
    assert!(
        store
            .decide_now(&[hit(other_prefix), hit(mine)], now)
            .admitted
    );
    // Enough of the client's other keys to grow its shard's table mid-batch.
    let many: Vec<String> = (0..64)
        .map(|i| format!("LIMITER{{10.0.0.1}}:r{i}:100/1minute"))
        .collect();
    let mut batch = vec![hit(mine)];
    batch.extend(many.iter().map(|key| hit(key)));
    assert!(store.decide_now(&batch, now).admitted);

    assert_eq!(remaining(mine), 96);
    assert_eq!(remaining(mine_too), 98);
    assert_eq!(remaining(longer_tag), 99);
    assert_eq!(remaining(other_prefix), 99);
    assert!(many.iter().all(|key| remaining(key) == 99));

    store.refund_now(&[hit(mine_too), hit(mine)], now);
    assert_eq!(remaining(mine), 97);
    assert_eq!(remaining(mine_too), 99);
    let alone = store.decide_now(&[hit(mine)], now);
    assert_eq!(alone.stats[0].remaining, 96);
    store.clear_now(mine);
    assert_eq!(remaining(mine), 100);
    assert_eq!(remaining(mine_too), 99);
}
