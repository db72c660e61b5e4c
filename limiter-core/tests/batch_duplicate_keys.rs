//! A batch may name one key twice ("two charges on one counter"). A denied batch still
//! charges nothing: every charge on the repeated key is rolled back.

use limiter_core::{Hit, MemoryStore, Rate, Strategy, Timestamp};

#[test]
fn a_denied_batch_rolls_back_both_charges_of_a_repeated_key() {
    let now = Timestamp::from_secs(1_700_000_000);
    let five: Rate = "5 per minute".parse().unwrap();
    let one: Rate = "1 per minute".parse().unwrap();
    // Untagged keys take the batch path that places every key first; keys of one `{client}`
    // the path that locks its shard and hashes each key as it goes.
    for (a, b) in [("a", "b"), ("L{c}:a", "L{c}:b")] {
        for strategy in Strategy::ALL {
            let store = MemoryStore::new(100);
            let full = [Hit::new(b, one, Strategy::FixedWindow)];
            assert!(store.decide_now(&full, now).admitted);
            let batch = [
                Hit::new(a, five, strategy),
                Hit::new(a, five, strategy),
                Hit::new(b, one, Strategy::FixedWindow),
            ];
            let d = store.decide_now(&batch, now);
            assert_eq!(d.breached, Some(2), "{a} {strategy}: {d:?}");
            // Nothing was charged on `a`: both entries report the untouched counter.
            assert_eq!(d.stats[0].remaining, 5, "{a} {strategy}");
            assert_eq!(d.stats[1].remaining, 5, "{a} {strategy}");
            let after = store.peek_now(&[Hit::new(a, five, strategy)], now);
            assert_eq!(after.stats[0].remaining, 5, "{a} {strategy}");
        }
    }
}

#[test]
fn a_denied_batch_charges_nothing_on_a_key_that_changes_strategy() {
    let now = Timestamp::from_secs(1_700_000_000);
    let three: Rate = "3 per minute".parse().unwrap();
    let one: Rate = "1 per minute".parse().unwrap();
    for other in [
        Strategy::FixedWindow,
        Strategy::FixedWindowElastic,
        Strategy::SlidingWindowCounter,
        Strategy::Gcra,
    ] {
        let store = MemoryStore::new(100);
        // "a" holds a moving-window log; "b" is full.
        assert!(
            store
                .decide_now(&[Hit::new("a", three, Strategy::MovingWindow)], now)
                .admitted
        );
        assert!(
            store
                .decide_now(&[Hit::new("b", one, Strategy::FixedWindow)], now)
                .admitted
        );
        // "a" under another strategy (it starts afresh), in a batch that "b" denies.
        let batch = [
            Hit::new("a", three, other),
            Hit::new("b", one, Strategy::FixedWindow),
        ];
        assert!(!store.decide_now(&batch, now).admitted, "{other}");
        // Later, "a" looks exactly like a key this strategy never charged.
        let later = now.saturating_add(std::time::Duration::from_micros(1));
        let a = store.peek_now(&[Hit::new("a", three, other)], later);
        let fresh = store.peek_now(&[Hit::new("never-used", three, other)], later);
        assert_eq!(a.stats, fresh.stats, "{other}");
    }
}

#[test]
fn an_expired_log_and_no_log_undo_alike() {
    // A repeated moving-window key whose second entry denies and records the hit: the undo
    // of the first entry must not depend on whether the key held an (expired) log before.
    let five: Rate = "5 per 2 seconds".parse().unwrap();
    let t0 = Timestamp::from_secs(1_700_000_000);
    let t1 = Timestamp::from_secs(1_700_000_010);
    let batch = [
        Hit::new("a", five, Strategy::MovingWindowElastic),
        Hit::new("a", five, Strategy::MovingWindowElastic).with_cost(5),
    ];
    let used = MemoryStore::new(100);
    assert!(used.decide_now(&batch[..1], t0).admitted); // a log that has expired by t1
    let fresh = MemoryStore::new(100);
    let a = used.decide_now(&batch, t1);
    let b = fresh.decide_now(&batch, t1);
    assert_eq!(a, b);
    assert_eq!(
        used.peek_now(&batch[..1], t1),
        fresh.peek_now(&batch[..1], t1)
    );
}

#[test]
fn elastic_denials_survive_the_rollback() {
    // Each key holds one hit from t0; the batch comes 10 seconds later and is denied by its
    // second entry: the same key charged again (cost 5 on top of 2 held), or another key
    // (cost 6). The first entry's charge is rolled back; the denied entry of an elastic
    // strategy records its hit as the same request alone would: a fixed window's expiry
    // moves to t1 + 60 s, a moving window's log keeps its 5 newest hits, all at t1.
    let five: Rate = "5 per minute".parse().unwrap();
    let t0 = Timestamp::from_secs(1_700_000_040);
    let t1 = Timestamp::from_secs(1_700_000_050);
    let seventy = Timestamp::from_secs(1_700_000_110);
    for strategy in [Strategy::FixedWindowElastic, Strategy::MovingWindowElastic] {
        for (what, denied_key, cost) in [("repeated key", "a", 5), ("other key", "b", 6)] {
            let held = |store: &MemoryStore| {
                for key in ["a", "b"] {
                    assert!(
                        store
                            .decide_now(&[Hit::new(key, five, strategy)], t0)
                            .admitted
                    );
                }
            };
            let store = MemoryStore::new(100);
            held(&store);
            let denied = Hit::new(denied_key, five, strategy).with_cost(cost);
            let d = store.decide_now(&[Hit::new("a", five, strategy), denied], t1);
            assert_eq!(d.breached, Some(1), "{strategy}, {what}: {d:?}");

            let alone = MemoryStore::new(100);
            held(&alone);
            assert!(!alone.decide_now(&[denied], t1).admitted);
            for key in ["a", "b"] {
                let hit = [Hit::new(key, five, strategy)];
                let after = store.peek_now(&hit, t1);
                assert_eq!(after, alone.peek_now(&hit, t1), "{strategy}, {what}: {key}");
            }
            let after = store.peek_now(&[denied.with_cost(1)], t1);
            assert_eq!(after.stats[0].reset, seventy, "{strategy}, {what}");
            if strategy == Strategy::MovingWindowElastic {
                assert_eq!(after.stats[0].remaining, 0, "{strategy}, {what}");
            }
        }
    }
}
