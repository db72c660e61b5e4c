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
