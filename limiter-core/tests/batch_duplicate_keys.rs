//! A batch may name one key twice ("two charges on one counter"). A denied batch still
//! charges nothing: every charge on the repeated key is rolled back.

use limiter_core::{Hit, MemoryStore, Rate, Strategy, Timestamp};

#[test]
fn a_denied_batch_rolls_back_both_charges_of_a_repeated_key() {
    let now = Timestamp::from_secs(1_700_000_000);
    let five: Rate = "5 per minute".parse().unwrap();
    let one: Rate = "1 per minute".parse().unwrap();
    for strategy in Strategy::ALL {
        let store = MemoryStore::new(100);
        let full = [Hit::new("b", one, Strategy::FixedWindow)];
        assert!(store.decide_now(&full, now).admitted);
        let batch = [
            Hit::new("a", five, strategy),
            Hit::new("a", five, strategy),
            Hit::new("b", one, Strategy::FixedWindow),
        ];
        let d = store.decide_now(&batch, now);
        assert_eq!(d.breached, Some(2), "{strategy}: {d:?}");
        // Nothing was charged on "a": both entries report the untouched counter.
        assert_eq!(d.stats[0].remaining, 5, "{strategy}");
        assert_eq!(d.stats[1].remaining, 5, "{strategy}");
        let after = store.peek_now(&[Hit::new("a", five, strategy)], now);
        assert_eq!(after.stats[0].remaining, 5, "{strategy}");
    }
}
