//! Redis and memory give the same decision and stats at every step of random traces of
//! hits, costs, refunds, peeks and clock moves, for every strategy (DESIGN §7).
#![cfg(feature = "redis")]

mod common;

use std::time::Duration;

use common::{
    RedisServer, Rng, calls_of, command_calls, redis_available, strict_store, trade_like_memory,
};
use limiter_core::storage::redis::{RedisStore, SCRIPT};
use limiter_core::storage::{Decision, StatsList};
use limiter_core::{Hit, LimitStats, ManualClock, MemoryStore, Rate, Storage, Strategy, Timestamp};

const RATES: [&str; 7] = [
    "3 per second",
    "5 per 2 seconds",
    "1 per second",
    "0 per second",
    "7 per 10 seconds",
    "4 per minute",
    "2 per 3 seconds",
];

/// A store on `server` whose every answer can be compared with the memory store's.
fn compared_store(server: &RedisServer) -> RedisStore {
    strict_store(&server.url())
        // Real time and the manual clock part ways here: TTLs must outlive the test.
        .ttl_grace(Duration::from_secs(600))
        // Every stat against memory's: the block cache answers a blocked request's other
        // limits without asking Redis (tests/redis_block_cache.rs covers it).
        .block_cache(0)
        .build()
        .unwrap()
}

struct Limit {
    key: String,
    rate: Rate,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_memory_agree_on_random_traces() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let store = compared_store(&server);

    let mut steps = 0;
    let (mut admitted, mut denied, mut peeks, mut refunds, mut swaps) = (0, 0, 0, 0, 0);
    let mut backs = 0;
    for seed in 1..=100u64 {
        let mut rng = Rng::new(seed);
        let memory = MemoryStore::new(100_000);
        let clock = ManualClock::new(Timestamp::from_micros(
            1_700_000_000_000_000 + rng.below(10_000_000),
        ));
        // Half the traces use one strategy throughout; the others mix them per limit, and
        // a key met with another strategy starts afresh on both stores.
        let fixed_strategy = (seed % 2 == 0).then(|| Strategy::ALL[(seed / 2) as usize % 6]);
        // In the traces of one window strategy, the clock steps back now and then, as
        // another host's clock would be behind: a hit dated before the key's window counts in
        // it on both stores. (Not yet the others': a memory log drops, on a peek or a denial,
        // hits that a request dated earlier would still count, where Redis keeps them; a GCRA
        // state left at its expiry instant, by a refund or a free hit, is deleted on Redis
        // and kept in memory, where a request dated earlier still meets it.)
        let steps_back = fixed_strategy.is_some_and(|s| {
            matches!(
                s,
                Strategy::FixedWindow
                    | Strategy::FixedWindowElastic
                    | Strategy::SlidingWindowCounter
            )
        });
        let limits: Vec<Limit> = (0..5)
            .map(|i| {
                let rate: Rate = rng.pick(&RATES).parse().unwrap();
                Limit {
                    key: format!("LIMITER{{client-{seed}}}:s{i}:{rate}"),
                    rate,
                }
            })
            .collect();
        let mut strategies: Vec<Strategy> = (0..limits.len())
            .map(|_| fixed_strategy.unwrap_or(*rng.pick(&Strategy::ALL)))
            .collect();
        // Admitted batches, with the time of their decision (a refund is dated by it).
        let mut history: Vec<(Vec<Hit<'_>>, Timestamp)> = Vec::new();

        for step in 0..150 {
            steps += 1;
            if fixed_strategy.is_none() && rng.chance(3) {
                let i = rng.below(limits.len() as u64) as usize;
                strategies[i] = *rng.pick(&Strategy::ALL);
            }
            // A batch of 1..=4 limits, now and then one key twice.
            let size = 1 + rng.below(4) as usize;
            let mut batch: Vec<Hit<'_>> = Vec::new();
            for _ in 0..size {
                let i = rng.below(limits.len() as u64) as usize;
                if batch.iter().any(|h| h.key == limits[i].key) && !rng.chance(10) {
                    continue;
                }
                let cost = match rng.below(10) {
                    0 => 2,
                    1 => 3 + rng.below(6),
                    _ => 1,
                };
                batch.push(Hit::new(&limits[i].key, limits[i].rate, strategies[i]).with_cost(cost));
            }
            let now = clock.now();
            let context = || format!("seed {seed} step {step} at {now}: {batch:?}");
            match rng.below(20) {
                0 => {
                    let expected = memory.peek_now(&batch, now);
                    let got = store.peek(&batch, now).await.expect("peek");
                    assert_eq!(got, expected, "peek, {}", context());
                    peeks += 1;
                }
                1 | 2 if !history.is_empty() => {
                    let (earlier, charged_at) =
                        history.swap_remove(rng.below(history.len() as u64) as usize);
                    memory.refund_now(&earlier, charged_at);
                    store.refund(&earlier, charged_at).await.expect("refund");
                    refunds += 1;
                }
                // The latest admitted batch traded for this one, as the actix wrapper trades
                // the charge made before routing for the route's own limits.
                3 | 4 if !history.is_empty() => {
                    let (earlier, _) = history.pop().expect("a batch to give back");
                    let got =
                        trade_like_memory(&store, &memory, &earlier, &batch, now, &context()).await;
                    if got.admitted {
                        history.push((batch.clone(), now));
                    }
                    swaps += 1;
                }
                _ => {
                    let expected = memory.decide_now(&batch, now);
                    let got = store.decide(&batch, now).await.expect("decide");
                    assert_eq!(got, expected, "decide, {}", context());
                    if got.admitted {
                        admitted += 1;
                        history.push((batch.clone(), now));
                    } else {
                        denied += 1;
                    }
                }
            }
            let advance = match rng.below(12) {
                0..=3 => 0,
                4 => 1,
                5 => rng.below(1_000),
                6..=8 => rng.below(400_000),
                9 => rng.below(2_000_000),
                10 => 1_000_000 - now.as_micros() % 1_000_000,
                _ => rng.below(12_000_000),
            };
            clock.advance(Duration::from_micros(advance));
            if steps_back && rng.chance(10) {
                let back = [1, rng.below(1_000), rng.below(3_000_000)][rng.below(3) as usize];
                clock.set(Timestamp::from_micros(clock.now().as_micros() - back));
                backs += 1;
            }
        }
    }
    println!(
        "redis and memory agreed on {steps} steps: {admitted} admitted, {denied} denied, \
         {peeks} peeks, {refunds} refunds, {swaps} swaps, {backs} steps back"
    );
    // The traces must exercise both outcomes, or agreement says little.
    assert!(admitted > 1_000 && denied > 1_000 && peeks > 200 && refunds > 200 && swaps > 200);
    assert!(backs > 200);
}

/// A lone fixed-window limit is answered without the general machinery (no TYPE): by the
/// fixed-window script, and by the general script's short path (`time=server`), which read
/// each other's writes. Both must agree with memory, and with the general path that reads their
/// writes, whatever the key held before: nothing, its own window, an ended window, another
/// strategy's state, a list, a hash or a string of someone else's.
#[tokio::test]
async fn a_lone_fixed_window_limit_agrees_with_memory_whatever_the_key_held() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let store = compared_store(&server);
    let memory = MemoryStore::new(1_000);
    let clock = ManualClock::new(Timestamp::from_micros(1_700_000_000_123_456));
    let rate: Rate = "3 per 2 seconds".parse().unwrap();
    let other: Rate = "2 per second".parse().unwrap();
    let key = "LIMITER{lone}:fixed:3/2seconds";
    let lone = |cost| [Hit::new(key, rate, Strategy::FixedWindow).with_cost(cost)];

    // Warms the script cache, then counts the commands the lone path runs.
    let hit = lone(1);
    assert_eq!(
        store.decide(&hit, clock.now()).await.unwrap(),
        memory.decide_now(&hit, clock.now())
    );
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .exec(&mut admin)
        .unwrap();
    let mut lone_decisions = 0;
    for step in 0..60u64 {
        let now = clock.now();
        match step % 12 {
            // Another strategy takes the key over (on both stores), then fixed window again.
            3 | 7 => {
                let strategy = if step % 12 == 3 {
                    Strategy::MovingWindow
                } else {
                    Strategy::Gcra
                };
                let hit = [Hit::new(key, other, strategy)];
                assert_eq!(
                    store.decide(&hit, now).await.unwrap(),
                    memory.decide_now(&hit, now),
                    "step {step}: {strategy}"
                );
            }
            // Values no strategy of this store wrote: each counts as a fresh key. The last
            // carries the current window's prefix, as the script's own values do.
            5 | 10 => {
                let period = rate.period_micros();
                let start = now.as_micros() / period * period;
                let value = if step % 24 == 22 {
                    format!("w:{start}:many")
                } else {
                    "w:not-a-window".to_string()
                };
                hold_foreign(&mut admin, key, step % 12 == 5, &value);
                memory.clear_now(key);
            }
            // A batch of two: the general path reads what the lone path wrote.
            11 => {
                let hits = [
                    Hit::new(key, rate, Strategy::FixedWindow),
                    Hit::new("LIMITER{lone}:other", other, Strategy::FixedWindow),
                ];
                assert_eq!(
                    store.decide(&hits, now).await.unwrap(),
                    memory.decide_now(&hits, now),
                    "step {step}: batch"
                );
            }
            _ => {
                // Costs that fit, that fill the window, that can never pass, and none.
                let cost = [1, 1, 2, 4, 0, 3][step as usize % 6];
                let hit = lone(cost);
                let got = decide_alternating(&store, &mut admin, &hit, now, step).await;
                assert_eq!(
                    got,
                    memory.decide_now(&hit, now),
                    "step {step}: cost {cost}"
                );
                lone_decisions += 1;
            }
        }
        clock.advance(Duration::from_millis(
            [0, 300, 900, 2_000, 50][step as usize % 5],
        ));
    }
    assert!(lone_decisions > 30);

    // On a key of its own, every call takes the lone path: a GET, a SET when admitted, and no
    // TYPE (the general path's first command).
    let hit = [Hit::new("LIMITER{lone}:fresh", rate, Strategy::FixedWindow)];
    let calls = ten_decisions_counted(&mut admin, &store, &memory, &clock, &hit).await;
    assert_eq!(calls_of(&calls, "evalsha"), 10, "{calls:?}");
    assert_eq!(calls_of(&calls, "get"), 10, "{calls:?}");
    assert_eq!(calls_of(&calls, "type"), 0, "{calls:?}");
}

/// GCRA and sliding-window batches take their fast scripts (`gcra.lua`, `sliding.lua`): the
/// caller does the arithmetic, the script compares and adds. They must agree with memory
/// alone and in pairs, at costs that pass, fill the limit, can never pass or are free, and
/// whatever a key held: another strategy's state, a string or a hash of someone else's.
#[tokio::test]
async fn gcra_and_sliding_batches_agree_with_memory_whatever_the_keys_held() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let store = compared_store(&server);
    let memory = MemoryStore::new(1_000);
    let clock = ManualClock::new(Timestamp::from_micros(1_700_000_000_321_987));
    let rates: [Rate; 2] = [
        "3 per 2 seconds".parse().unwrap(),
        "5 per minute".parse().unwrap(),
    ];
    for strategy in [Strategy::Gcra, Strategy::SlidingWindowCounter] {
        let keys = [
            format!("LIMITER{{{strategy}}}:route:3/2seconds"),
            format!("LIMITER{{{strategy}}}:global:5/1minute"),
        ];
        let mut fast_decisions = 0;
        for step in 0..120u64 {
            let now = clock.now();
            let key = &keys[(step / 5 % 2) as usize];
            match step % 13 {
                // Another strategy takes a key over (on both stores), then this one again.
                4 | 9 => {
                    let other =
                        [Strategy::FixedWindow, Strategy::MovingWindow][(step % 2) as usize];
                    let hit = [Hit::new(key, rates[0], other)];
                    assert_eq!(
                        store.decide(&hit, now).await.unwrap(),
                        memory.decide_now(&hit, now),
                        "{strategy} step {step}: {other} on {key}"
                    );
                }
                // Values no strategy of this store wrote: each counts as a fresh key.
                6 => {
                    hold_foreign(&mut admin, key, step % 2 == 0, "g:s:not-a-state");
                    memory.clear_now(key);
                }
                _ => {
                    let costs =
                        [[1, 1], [2, 1], [1, 4], [0, 0], [3, 1], [4, 6], [1, 0]][step as usize % 7];
                    let mut hits: Vec<Hit<'_>> = (0..2)
                        .map(|i| Hit::new(&keys[i], rates[i], strategy).with_cost(costs[i]))
                        .collect();
                    match step % 3 {
                        0 => hits.reverse(),
                        1 => hits.truncate(1),
                        _ => {}
                    }
                    assert_eq!(
                        store.decide(&hits, now).await.unwrap(),
                        memory.decide_now(&hits, now),
                        "{strategy} step {step}: costs {costs:?}"
                    );
                    fast_decisions += 1;
                }
            }
            clock.advance(Duration::from_millis(
                [0, 300, 700, 2_000, 50, 20_000][step as usize % 6],
            ));
        }
        assert!(fast_decisions > 80);

        // On a key of its own, every call is one GET and at most one SET: no TYPE.
        let fresh = format!("LIMITER{{{strategy}}}:fresh");
        let hit = [Hit::new(&fresh, rates[0], strategy)];
        let calls = ten_decisions_counted(&mut admin, &store, &memory, &clock, &hit).await;
        assert_eq!(calls_of(&calls, "evalsha"), 10, "{strategy}: {calls:?}");
        assert_eq!(calls_of(&calls, "get"), 10, "{strategy}: {calls:?}");
        assert_eq!(calls_of(&calls, "type"), 0, "{strategy}: {calls:?}");
    }
}

/// Decides fixed-window `hits` on Redis: on odd steps through the general script's short path
/// (which the store takes when Redis keeps the time, `time=server`), else through the store
/// (the fixed-window script). Each reads what the other wrote.
async fn decide_alternating(
    store: &RedisStore,
    admin: &mut redis::Connection,
    hits: &[Hit<'_>],
    now: Timestamp,
    step: u64,
) -> Decision {
    if step % 2 == 1 {
        decide_in_general_mode(admin, hits, now)
    } else {
        store.decide(hits, now).await.unwrap()
    }
}

/// Decides `hits` in the general script's mode "decide", with the arguments the store sends
/// there and `compared_store`'s grace (fixed windows alone take its short path). The store
/// itself takes it only when it does not know the time (`time=server`), a key holds another
/// strategy's state or a batch has no fast script, so the comparisons drive it directly.
fn decide_in_general_mode(
    admin: &mut redis::Connection,
    hits: &[Hit<'_>],
    now: Timestamp,
) -> Decision {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(SCRIPT).arg(hits.len());
    for hit in hits {
        cmd.arg(hit.key);
    }
    cmd.arg("decide").arg(now.as_micros()).arg(600_000);
    for hit in hits {
        let n = hit.rate.amount();
        // The script's strategy codes follow `Strategy::ALL`.
        let code = Strategy::ALL
            .iter()
            .position(|s| *s == hit.strategy)
            .unwrap();
        cmd.arg(code)
            .arg(n)
            .arg(hit.rate.period_micros())
            .arg(hit.cost.min(n + 1));
    }
    let reply: String = cmd.query(admin).unwrap();
    let numbers: Vec<i64> = reply.split(' ').map(|n| n.parse().unwrap()).collect();
    let stats: StatsList = hits
        .iter()
        .zip(numbers.chunks(4))
        .map(|(hit, n)| LimitStats {
            admitted: n[0] == 1,
            limit: hit.rate.amount(),
            remaining: n[1] as u64,
            reset: Timestamp::from_micros(n[2] as u64),
            retry_after: u64::try_from(n[3]).ok().map(Duration::from_micros),
        })
        .collect();
    assert_eq!(stats.len(), hits.len(), "{reply}");
    Decision::from_stats(stats)
}

/// A moving window on a key that holds a hash, a set or a sorted set (no strategy writes
/// those): a fresh key, as in memory, for a decision, a peek and a refund, and no error, so
/// the store never counts it as Redis failing.
#[tokio::test]
async fn moving_windows_take_over_keys_of_any_other_type() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let store = compared_store(&server);
    let rate: Rate = "2 per minute".parse().unwrap();
    let now = Timestamp::from_secs(1_700_000_000);
    for (i, command) in ["HSET", "SADD", "ZADD"].into_iter().enumerate() {
        for strategy in [Strategy::MovingWindow, Strategy::MovingWindowElastic] {
            let memory = MemoryStore::new(100);
            let key = format!("LIMITER{{{command}}}:{strategy}");
            let hit = [Hit::new(&key, rate, strategy)];
            let mut fill = redis::cmd(command);
            fill.arg(&key);
            if command == "ZADD" {
                fill.arg(1);
            }
            fill.arg("member");
            if command == "HSET" {
                fill.arg("value");
            }
            redis::cmd("DEL").arg(&key).exec(&mut admin).unwrap();
            fill.exec(&mut admin).unwrap();
            let context = format!("{strategy} on a key filled by {command}");
            assert_eq!(
                store.peek(&hit, now).await.unwrap(),
                memory.peek_now(&hit, now),
                "peek, {context}"
            );
            store.refund(&hit, now).await.unwrap();
            for _ in 0..3 {
                assert_eq!(
                    store.decide(&hit, now).await.unwrap(),
                    memory.decide_now(&hit, now),
                    "{context}"
                );
            }
            assert!(!store.is_degraded(), "{context}");
            let kind: String = redis::cmd("TYPE").arg(&key).query(&mut admin).unwrap();
            assert_eq!(kind, "list", "{context} (case {i})");
        }
    }
}

/// Replaces whatever `key` holds with `value`, a value no strategy of the store writes: as a
/// string, or as a field of a hash (a type no strategy uses).
fn hold_foreign(admin: &mut redis::Connection, key: &str, in_hash: bool, value: &str) {
    redis::cmd("DEL").arg(key).exec(admin).unwrap();
    if in_hash {
        redis::cmd("HSET")
            .arg(key)
            .arg("field")
            .arg(value)
            .exec(admin)
            .unwrap();
    } else {
        redis::cmd("SET").arg(key).arg(value).exec(admin).unwrap();
    }
}

/// Decides `hits` ten times, 700 ms apart, on Redis and in memory (they must agree), and
/// returns the commands the server ran for them.
async fn ten_decisions_counted(
    admin: &mut redis::Connection,
    store: &RedisStore,
    memory: &MemoryStore,
    clock: &ManualClock,
    hits: &[Hit<'_>],
) -> Vec<(String, u64)> {
    redis::cmd("CONFIG").arg("RESETSTAT").exec(admin).unwrap();
    for step in 0..10u64 {
        let now = clock.now();
        assert_eq!(
            store.decide(hits, now).await.unwrap(),
            memory.decide_now(hits, now),
            "fresh keys, step {step}"
        );
        clock.advance(Duration::from_millis(700));
    }
    command_calls(admin)
}

/// A batch of fixed-window limits only (a route's and the application's, the usual request)
/// takes the fixed-window script and the general script's short path too: every key read
/// first, all written only when all admit.
/// It must agree with memory whatever each key held, in either order, with costs that deny on
/// one key or the other; a batch naming a key twice takes the general path.
#[tokio::test]
async fn fixed_window_batches_agree_with_memory_whatever_the_keys_held() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let store = compared_store(&server);
    let memory = MemoryStore::new(1_000);
    let clock = ManualClock::new(Timestamp::from_micros(1_700_000_000_654_321));
    let route: Rate = "3 per 2 seconds".parse().unwrap();
    let app: Rate = "5 per 10 seconds".parse().unwrap();
    let other: Rate = "2 per second".parse().unwrap();
    let keys = [
        "LIMITER{pair}:route:3/2seconds",
        "LIMITER{pair}:global:5/10seconds",
    ];
    let rates = [route, app];
    let mut short_batches = 0;
    for step in 0..120u64 {
        let now = clock.now();
        let which = (step / 7 % 2) as usize;
        let key = keys[which];
        match step % 11 {
            // Another strategy takes one key over (on both stores).
            3 | 8 => {
                let strategy = [
                    Strategy::MovingWindow,
                    Strategy::Gcra,
                    Strategy::SlidingWindowCounter,
                ][(step / 11 % 3) as usize];
                let hit = [Hit::new(key, other, strategy)];
                assert_eq!(
                    store.decide(&hit, now).await.unwrap(),
                    memory.decide_now(&hit, now),
                    "step {step}: {strategy} on {key}"
                );
            }
            // A value no strategy of this store wrote: it counts as a fresh key.
            5 => {
                let value = if step % 2 == 0 {
                    "w:1:2"
                } else {
                    "w:not-a-window"
                };
                hold_foreign(&mut admin, key, step % 2 == 0, value);
                memory.clear_now(key);
            }
            // A key named twice: the general path, reading what the short path wrote.
            10 => {
                let hits = [
                    Hit::new(keys[0], route, Strategy::FixedWindow),
                    Hit::new(keys[1], app, Strategy::FixedWindow),
                    Hit::new(keys[0], route, Strategy::FixedWindow),
                ];
                assert_eq!(
                    store.decide(&hits, now).await.unwrap(),
                    memory.decide_now(&hits, now),
                    "step {step}: a key twice"
                );
            }
            _ => {
                // Costs that fit, that fill one window, that can never pass, and none.
                let costs =
                    [[1, 1], [2, 1], [1, 4], [0, 0], [4, 1], [1, 6], [3, 3]][step as usize % 7];
                let mut hits: Vec<Hit<'_>> = (0..2)
                    .map(|i| Hit::new(keys[i], rates[i], Strategy::FixedWindow).with_cost(costs[i]))
                    .collect();
                if step % 3 == 0 {
                    hits.reverse();
                }
                let got = decide_alternating(&store, &mut admin, &hits, now, step).await;
                assert_eq!(
                    got,
                    memory.decide_now(&hits, now),
                    "step {step}: costs {costs:?}"
                );
                short_batches += 1;
            }
        }
        clock.advance(Duration::from_millis(
            [0, 300, 900, 2_000, 50, 4_000][step as usize % 6],
        ));
    }
    assert!(short_batches > 60);

    // On keys of their own, a pair costs two GETs (and two SETs when admitted), no TYPE.
    let hits = [
        Hit::new("LIMITER{pair}:fresh-a", route, Strategy::FixedWindow),
        Hit::new("LIMITER{pair}:fresh-b", app, Strategy::FixedWindow),
    ];
    let calls = ten_decisions_counted(&mut admin, &store, &memory, &clock, &hits).await;
    assert_eq!(calls_of(&calls, "evalsha"), 10, "{calls:?}");
    assert_eq!(calls_of(&calls, "get"), 20, "{calls:?}");
    assert_eq!(calls_of(&calls, "type"), 0, "{calls:?}");
}

/// A free elastic hit on a moving-window log that a larger rate left longer than the new
/// amount: its record trims the log, so the same request would pass at once. Both stores say
/// so (the script used to read an unrelated entry for the retry-after, memory panicked).
#[tokio::test]
async fn a_free_elastic_hit_on_a_shrunk_log_agrees_with_memory() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let store = compared_store(&server);
    let memory = MemoryStore::new(1_000);
    let key = "LIMITER{shrunk}:s:log";
    let (wide, narrow): (Rate, Rate) = (
        "3 per minute".parse().unwrap(),
        "1 per minute".parse().unwrap(),
    );
    let s = Strategy::MovingWindowElastic;
    let mut now = Timestamp::from_secs(1_700_000_000);
    for _ in 0..3 {
        let hit = [Hit::new(key, wide, s)];
        assert_eq!(
            store.decide(&hit, now).await.unwrap(),
            memory.decide_now(&hit, now)
        );
    }
    now = now.saturating_add(Duration::from_secs(1));
    let free = [Hit::new(key, narrow, s).with_cost(0)];
    let got = store.decide(&free, now).await.unwrap();
    assert_eq!(got, memory.decide_now(&free, now));
    assert!(!got.admitted);
    assert_eq!(got.retry_after, Some(Duration::ZERO));
    let again = store.decide(&free, now).await.unwrap();
    assert_eq!(again, memory.decide_now(&free, now));
    assert!(again.admitted);
}

/// A batch denied by a key it names twice, on an elastic strategy: the first charge is
/// rolled back and the denial recorded as the same request alone would record it. Both
/// stores agree on the decision and on what each key holds afterwards.
#[tokio::test]
async fn an_elastic_denial_by_a_repeated_key_agrees_with_memory() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let store = compared_store(&server);
    let five: Rate = "5 per minute".parse().unwrap();
    let t0 = Timestamp::from_secs(1_700_000_040);
    let t1 = Timestamp::from_secs(1_700_000_050);
    for strategy in [Strategy::FixedWindowElastic, Strategy::MovingWindowElastic] {
        let memory = MemoryStore::new(100);
        let (a, b) = (
            format!("L{{x}}:a:{strategy}"),
            format!("L{{x}}:b:{strategy}"),
        );
        for key in [&a, &b] {
            let hit = [Hit::new(key, five, strategy)];
            assert_eq!(
                store.decide(&hit, t0).await.unwrap(),
                memory.decide_now(&hit, t0)
            );
        }
        let batch = [
            Hit::new(&a, five, strategy),
            Hit::new(&b, five, strategy),
            // Denied after `a`'s first charge (2 + 5 > 5), and alone too (1 + 5 > 5).
            Hit::new(&a, five, strategy).with_cost(5),
        ];
        let got = store.decide(&batch, t1).await.unwrap();
        assert_eq!(got, memory.decide_now(&batch, t1), "{strategy}");
        assert_eq!(got.breached, Some(2), "{strategy}");
        for key in [&a, &b] {
            let hit = [Hit::new(key, five, strategy)];
            let held = store.peek(&hit, t1).await.unwrap();
            assert_eq!(held, memory.peek_now(&hit, t1), "{strategy}: {key}");
        }
        // The denial was recorded on `a` (its window now ends a minute after t1), and `b`'s
        // charge undone.
        let a_now = memory.peek_now(&[Hit::new(&a, five, strategy)], t1);
        assert_eq!(a_now.stats[0].reset, Timestamp::from_secs(1_700_000_110));
        let b_now = memory.peek_now(&[Hit::new(&b, five, strategy)], t1);
        assert_eq!(b_now.stats[0].remaining, 4);
    }
}

/// After the clock stepped back, a moving window's hit is logged at the newest time its log
/// holds, on both stores: the decisions agree, and the Redis key lives until that newest hit
/// expires (its TTL dated by the hit at 985 s would drop the hit at 1000 s early).
#[tokio::test]
async fn a_moving_window_after_the_clock_stepped_back_agrees_with_memory() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let store = strict_store(&server.url())
        .ttl_grace(Duration::from_secs(1))
        .block_cache(0)
        .build()
        .unwrap();
    let rate: Rate = "2 per 10 seconds".parse().unwrap();
    for strategy in [Strategy::MovingWindow, Strategy::MovingWindowElastic] {
        let memory = MemoryStore::new(100);
        let key = format!("L{{x}}:stepped:{strategy}");
        let hit = [Hit::new(&key, rate, strategy)];
        for secs in [1_000, 985] {
            let now = Timestamp::from_secs(secs);
            let got = store.decide(&hit, now).await.unwrap();
            assert_eq!(got, memory.decide_now(&hit, now), "{strategy} at {secs}");
            assert!(got.admitted, "{strategy} at {secs}");
        }
        // Dated by the hit at 1 000 s, seen from 985 s: 25 s, plus the grace.
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut admin).unwrap();
        assert!(ttl > 25_000 && ttl <= 26_000, "{strategy}: {ttl} ms");
        for secs in [997, 1_010] {
            let now = Timestamp::from_secs(secs);
            let got = store.decide(&hit, now).await.unwrap();
            assert_eq!(got, memory.decide_now(&hit, now), "{strategy} at {secs}");
            assert_eq!(got.admitted, secs == 1_010, "{strategy} at {secs}");
        }
    }
}

/// Hits around a window boundary, out of order: two hosts whose clocks differ by a few
/// microseconds, or two threads that read the clock and took the lock in the other order. A
/// hit dated before the key's window (or bucket) counts in it, on both stores: through the
/// store, whose fast scripts leave a later window to the general script, and through the
/// general script alone. A peek dated a window later writes nothing on either. Neither
/// window admits more than its 2 (starting the earlier window afresh admitted all six).
#[tokio::test]
async fn hits_dated_before_the_keys_window_agree_with_memory() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let store = compared_store(&server);
    let rate: Rate = "2 per minute".parse().unwrap();
    let boundary = 1_700_000_040_000_000u64; // a multiple of a minute
    let minute = Duration::from_secs(60);
    // The counting strategies; the logs have a test of their own above.
    for strategy in [
        Strategy::FixedWindow,
        Strategy::FixedWindowElastic,
        Strategy::SlidingWindowCounter,
        Strategy::Gcra,
    ] {
        for general in [false, true] {
            let memory = MemoryStore::new(100);
            let key = format!("L{{x}}:skew:{strategy}:{general}");
            let hit = [Hit::new(&key, rate, strategy)];
            let mut admitted = Vec::new();
            for offset in [-10, -9, 1, -5, 2, 3] {
                let now = Timestamp::from_micros(boundary.saturating_add_signed(offset));
                let context = format!("{strategy} at {offset} µs, general script only: {general}");
                let later = now.saturating_add(minute);
                assert_eq!(
                    store.peek(&hit, later).await.unwrap(),
                    memory.peek_now(&hit, later),
                    "peek a minute later, {context}"
                );
                let got = if general {
                    decide_in_general_mode(&mut admin, &hit, now)
                } else {
                    store.decide(&hit, now).await.unwrap()
                };
                assert_eq!(got, memory.decide_now(&hit, now), "{context}");
                admitted.push(got.admitted);
            }
            let expected = match strategy {
                // The hit at -5 µs takes the new window's second place.
                Strategy::FixedWindow => [true, true, true, true, false, false],
                // At -5 µs, the bucket's start: the previous bucket's 2 weigh in whole.
                Strategy::SlidingWindowCounter => [true, true, true, false, false, false],
                // One window, whose end moves with each admitted hit.
                Strategy::FixedWindowElastic => [true, true, false, false, false, false],
                // 2 at once, then one more every 30 s.
                _ => [true, true, false, false, false, false],
            };
            assert_eq!(
                admitted, expected,
                "{strategy}, general script only: {general}"
            );
        }
    }
}

/// Three charges (time in µs, cost), then a request of `cost` at `at`.
struct RetryCase {
    rate: Rate,
    charges: [(u64, u64); 3],
    cost: u64,
    at: u64,
}

/// A sliding window's retry-after is the first microsecond at which the same request passes,
/// on Redis as in memory: through the fast script (whose stats are worked out here) and the
/// general script alike, where the closed form in doubles used to name a microsecond late
/// (the first two cases), and on random charges.
#[tokio::test]
async fn sliding_retry_after_agrees_with_memory_to_the_microsecond() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let store = compared_store(&server);
    let mut cases = vec![
        RetryCase {
            rate: "217 per 3 minutes".parse().unwrap(),
            charges: [
                (1_700_000_015_082_466, 11),
                (1_700_000_057_239_296, 87),
                (1_700_000_221_285_878, 150),
            ],
            cost: 95,
            at: 1_700_000_221_537_305,
        },
        RetryCase {
            rate: "259 per 2 seconds".parse().unwrap(),
            charges: [
                (1_700_000_000_169_172, 45),
                (1_700_000_001_025_406, 45),
                (1_700_000_001_402_067, 205),
            ],
            cost: 197,
            at: 1_700_000_002_521_830,
        },
    ];
    let mut rng = Rng::new(7);
    for _ in 0..200 {
        let amount = [10, 1_000, 1_000_000][rng.below(3) as usize];
        let rate = Rate::parse(&format!(
            "{} per {} {}",
            1 + rng.below(amount),
            1 + rng.below(5),
            rng.pick(&["second", "minute", "hour"])
        ))
        .unwrap();
        let (n, p) = (rate.amount(), rate.period_micros());
        let mut t = 1_700_000_000_000_000 + rng.below(p);
        let charges = [(); 3].map(|()| {
            let charge = (t, 1 + rng.below(n));
            t += rng.below(p);
            charge
        });
        let cost = 1 + rng.below(n);
        cases.push(RetryCase {
            rate,
            charges,
            cost,
            at: t,
        });
    }
    let mut denials = 0;
    for (i, case) in cases.into_iter().enumerate() {
        let RetryCase {
            rate,
            charges,
            cost,
            at: t,
        } = case;
        let memory = MemoryStore::new(10);
        let key = format!("L{{x}}:retry:{i}");
        let hit = [Hit::new(&key, rate, Strategy::SlidingWindowCounter)];
        for (at, cost) in charges {
            let (hit, at) = ([hit[0].with_cost(cost)], Timestamp::from_micros(at));
            assert_eq!(
                store.decide(&hit, at).await.unwrap(),
                memory.decide_now(&hit, at)
            );
        }
        let (hit, now) = ([hit[0].with_cost(cost)], Timestamp::from_micros(t));
        let context = format!("{rate}, cost {cost} at {now}");
        let peeked = memory.peek_now(&hit, now);
        assert_eq!(
            store.peek(&hit, now).await.unwrap(),
            peeked,
            "peek, {context}"
        );
        // Decided twice (charged if admitted): by the general script, then by the store.
        let general = decide_in_general_mode(&mut admin, &hit, now);
        assert_eq!(
            general,
            memory.decide_now(&hit, now),
            "general script, {context}"
        );
        let fast = store.decide(&hit, now).await.unwrap();
        assert_eq!(fast, memory.decide_now(&hit, now), "{context}");
        denials += u32::from(!peeked.admitted);
    }
    assert!(denials > 50, "{denials} denials");
}
