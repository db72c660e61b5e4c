//! The block cache: a client that Redis denied is denied again without a script call until
//! its retry-after passes. Script calls are counted with INFO commandstats on the test's own
//! server; time is a manual "now" passed to the store.
#![cfg(feature = "redis")]

mod common;

use std::time::Duration;

use common::{RedisServer, command_calls, redis_available, strict_store};
use limiter_core::storage::redis::{FailurePolicy, RedisStore};
use limiter_core::{Hit, MemoryStore, Rate, Storage, Strategy, Timestamp, keys::counter_key};

const NON_ELASTIC: [Strategy; 4] = [
    Strategy::FixedWindow,
    Strategy::MovingWindow,
    Strategy::SlidingWindowCounter,
    Strategy::Gcra,
];

fn store(server: &RedisServer, block_cache: usize) -> RedisStore {
    strict_store(&server.url())
        .block_cache(block_cache)
        .build()
        .unwrap()
}

fn rate(s: &str) -> Rate {
    Rate::parse(s).unwrap()
}

fn t0() -> Timestamp {
    // Mid-minute, so that fixed windows do not end right away.
    Timestamp::from_secs(1_700_000_010)
}

/// Script calls (EVALSHA and EVAL) since the last reset of the server's stats.
fn script_calls(admin: &mut redis::Connection) -> u64 {
    command_calls(admin)
        .iter()
        .filter(|(c, _)| c == "evalsha" || c == "eval")
        .map(|(_, n)| n)
        .sum()
}

fn reset_stats(admin: &mut redis::Connection) {
    redis::cmd("CONFIG").arg("RESETSTAT").exec(admin).unwrap();
}

/// Decides `hit` at `now` until Redis denies it; returns the denial's retry-after.
async fn block(store: &RedisStore, hit: Hit<'_>, now: Timestamp) -> Duration {
    for _ in 0..=hit.rate.amount() {
        let d = store.decide(&[hit], now).await.unwrap();
        if !d.admitted {
            return d.retry_after.expect("a denial says when to retry");
        }
    }
    panic!("{hit:?} was never denied");
}

#[tokio::test]
async fn a_flood_from_blocked_clients_costs_no_script_call() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let cached = store(&server, 1_000);
    // The same server without the cache: Redis' own answer, to compare with.
    let truth = store(&server, 0);
    let r = rate("3 per minute");
    for strategy in NON_ELASTIC {
        let keys: Vec<String> = (0..10)
            .map(|c| {
                counter_key(
                    "LIMITER",
                    &format!("10.1.0.{c}"),
                    &format!("/{strategy}"),
                    &r,
                )
            })
            .collect();
        let mut blocked_until = Vec::new();
        for key in &keys {
            let retry = block(&cached, Hit::new(key, r, strategy), t0()).await;
            blocked_until.push(t0().saturating_add(retry));
        }

        reset_stats(&mut admin);
        const N: u64 = 30;
        let mut answers = Vec::new();
        for i in 0..N {
            // Time moves on, but stays within every block (the shortest is at least 1 s).
            let now = t0().saturating_add(Duration::from_millis(25 * i));
            for (key, until) in keys.iter().zip(&blocked_until) {
                let d = cached
                    .decide(&[Hit::new(key, r, strategy)], now)
                    .await
                    .unwrap();
                assert!(!d.admitted, "{strategy} {key} at {now}");
                assert_eq!(d.breached, Some(0));
                assert_eq!(
                    d.retry_after,
                    Some(until.saturating_since(now)),
                    "{strategy}"
                );
                assert_eq!(d.stats[0].limit, 3);
                assert_eq!(d.stats[0].remaining, 0);
                answers.push((key, now, d));
            }
        }
        assert_eq!(
            script_calls(&mut admin),
            0,
            "{strategy}: {} blocked requests reached Redis",
            N * keys.len() as u64
        );

        // Every local answer is the one Redis gives at the same instant.
        for (key, now, local) in answers.iter().step_by(7) {
            let redis = truth
                .peek(&[Hit::new(key, r, strategy)], *now)
                .await
                .unwrap();
            assert_eq!(&redis, local, "{strategy} {key} at {now}");
        }
    }
}

#[tokio::test]
async fn the_block_ends_exactly_when_redis_would_admit_again() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let store = store(&server, 1_000);
    for (strategy, rate_str) in NON_ELASTIC
        .iter()
        .flat_map(|s| [(*s, "2 per minute"), (*s, "5 per 7 seconds")])
    {
        let r = rate(rate_str);
        let key = counter_key("LIMITER", "10.2.0.1", &format!("/{strategy}"), &r);
        let hit = Hit::new(&key, r, strategy);
        let retry = block(&store, hit, t0()).await;
        let until = t0().saturating_add(retry);
        let reset = store.decide(&[hit], t0()).await.unwrap().stats[0].reset;

        reset_stats(&mut admin);
        let just_before = Timestamp::from_micros(until.as_micros() - 1);
        let d = store.decide(&[hit], just_before).await.unwrap();
        assert!(!d.admitted);
        assert_eq!(d.retry_after, Some(Duration::from_micros(1)));
        // Answered here, unless the denial's window or bucket has reset by then (a sliding
        // window's block can end a microsecond into the next bucket): Redis then tells the new
        // one's stats.
        let asked = u64::from(just_before >= reset);
        assert_eq!(script_calls(&mut admin), asked, "{strategy} {rate_str}");

        let d = store.decide(&[hit], until).await.unwrap();
        assert!(d.admitted, "{strategy} {rate_str}: {d:?}");
        assert_eq!(script_calls(&mut admin), asked + 1, "{strategy} {rate_str}");
    }
}

#[tokio::test]
async fn a_cheaper_request_or_another_rate_is_asked_of_redis() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let store = store(&server, 1_000);
    let r = rate("3 per minute");
    let key = counter_key("LIMITER", "10.3.0.1", "/cost", &r);
    let hit = Hit::new(&key, r, Strategy::FixedWindow);
    assert!(
        store
            .decide(&[hit.with_cost(2)], t0())
            .await
            .unwrap()
            .admitted
    );
    assert!(
        !store
            .decide(&[hit.with_cost(2)], t0())
            .await
            .unwrap()
            .admitted
    );

    // Each script is sent in full on its first call (NOSCRIPT, then EVAL): load the GCRA
    // script and the general one too, on other keys, so that the counts below are decisions.
    for (client, strategy) in [
        ("10.3.0.2", Strategy::Gcra),
        ("10.3.0.3", Strategy::MovingWindow),
    ] {
        let key = counter_key("LIMITER", client, "/cost", &r);
        store
            .decide(&[Hit::new(&key, r, strategy)], t0())
            .await
            .unwrap();
    }
    reset_stats(&mut admin);
    // Cost 2 or more repeats the denial: answered here.
    assert!(
        !store
            .decide(&[hit.with_cost(3)], t0())
            .await
            .unwrap()
            .admitted
    );
    assert_eq!(script_calls(&mut admin), 0);
    // Cost 1 fits in what is left: Redis is asked and admits it.
    assert!(store.decide(&[hit], t0()).await.unwrap().admitted);
    assert_eq!(script_calls(&mut admin), 1);
    // Another strategy on the same key is another request: asked too. Twice, this once: the
    // GCRA script finds a fixed window's state, writes nothing and hands over to the general
    // script, which replaces it. The next GCRA request is one call again.
    let gcra = Hit::new(&key, r, Strategy::Gcra);
    store.decide(&[gcra.with_cost(2)], t0()).await.unwrap();
    assert_eq!(script_calls(&mut admin), 3);
    assert!(store.decide(&[gcra], t0()).await.unwrap().admitted);
    assert_eq!(script_calls(&mut admin), 4);
}

#[tokio::test]
async fn a_denial_by_the_request_s_own_earlier_charge_is_not_cached() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let store = store(&server, 1_000);
    let memory = MemoryStore::new(1_000);
    let r = rate("1 per minute");
    for strategy in NON_ELASTIC {
        let key = counter_key("LIMITER", "10.4.1.1", &format!("/{strategy}"), &r);
        let hit = Hit::new(&key, r, strategy);
        // The first charge of the key leaves no room for the second: the batch is denied
        // and rolled back, so nothing is charged.
        let twice = [hit, hit];
        let d = store.decide(&twice, t0()).await.unwrap();
        assert_eq!(d, memory.decide_now(&twice, t0()), "{strategy}");
        assert_eq!(d.breached, Some(1), "{strategy}");

        // Alone, the request fits: Redis admits it, and so must the store.
        let later = Timestamp::from_micros(t0().as_micros() + 1_000);
        let alone = store.decide(&[hit], later).await.unwrap();
        assert!(alone.admitted, "{strategy}: {alone:?}");
        assert_eq!(alone, memory.decide_now(&[hit], later), "{strategy}");

        // Now the key is full: the batch's first charge is denied by Redis' own count, and
        // that denial is cached, with the stats Redis gave.
        let d = store.decide(&twice, later).await.unwrap();
        assert_eq!(d, memory.decide_now(&twice, later), "{strategy}");
        assert_eq!(d.breached, Some(0), "{strategy}");
        reset_stats(&mut admin);
        let local = store.decide(&[hit], later).await.unwrap();
        assert_eq!(script_calls(&mut admin), 0, "{strategy}");
        assert_eq!(local, memory.decide_now(&[hit], later), "{strategy}");
    }
}

#[tokio::test]
async fn the_other_limits_of_a_blocked_request_are_reported_unbreached() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let store = store(&server, 1_000);
    let route = rate("1 per minute");
    let app = rate("100 per hour");
    let route_key = counter_key("LIMITER", "10.4.0.1", "/r", &route);
    let app_key = counter_key("LIMITER", "10.4.0.1", "", &app);
    let hits = [
        Hit::new(&app_key, app, Strategy::MovingWindow),
        Hit::new(&route_key, route, Strategy::FixedWindow),
    ];
    assert!(store.decide(&hits, t0()).await.unwrap().admitted);
    let from_redis = store.decide(&hits, t0()).await.unwrap();
    assert_eq!(from_redis.breached, Some(1));

    reset_stats(&mut admin);
    let now = t0().saturating_add(Duration::from_secs(5));
    let local = store.decide(&hits, now).await.unwrap();
    assert_eq!(script_calls(&mut admin), 0);
    assert!(!local.admitted);
    assert_eq!(local.breached, Some(1));
    assert_eq!(
        local.retry_after,
        Some(from_redis.retry_after.unwrap() - Duration::from_secs(5))
    );
    assert_eq!(local.stats[1].remaining, 0);
    // Redis was not asked about the application limit: it is reported as an unused counter
    // would be (admitted, the whole amount left), never as breached.
    assert!(local.stats[0].admitted);
    assert_eq!(local.stats[0].limit, 100);
    assert_eq!(local.stats[0].remaining, 100);
    assert_eq!(local.stats[0].retry_after, None);
    // Peek says what decide would: the same, locally.
    assert_eq!(store.peek(&hits, now).await.unwrap(), local);
    assert_eq!(script_calls(&mut admin), 0);
}

#[tokio::test]
async fn elastic_strategies_are_never_cached() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let store = store(&server, 1_000);
    let r = rate("2 per minute");
    for strategy in [Strategy::FixedWindowElastic, Strategy::MovingWindowElastic] {
        let key = counter_key("LIMITER", "10.5.0.1", &format!("/{strategy}"), &r);
        let hit = Hit::new(&key, r, strategy);
        let first_retry = block(&store, hit, t0()).await;

        reset_stats(&mut admin);
        const N: u64 = 20;
        let mut now = t0();
        for _ in 0..N {
            now = now.saturating_add(Duration::from_secs(2));
            assert!(!store.decide(&[hit], now).await.unwrap().admitted);
        }
        assert_eq!(script_calls(&mut admin), N, "{strategy}");
        assert_eq!(store.block_cache_len(), 0, "{strategy}");
        // The rejected hits were recorded: the client is still blocked when the first
        // denial's retry-after has passed.
        let later = t0().saturating_add(first_retry);
        assert!(!store.decide(&[hit], later).await.unwrap().admitted);
    }

    // A blocked fixed-window limit does not spare an elastic one in the same request.
    let fixed_key = counter_key("LIMITER", "10.5.0.2", "/fixed", &r);
    let elastic_key = counter_key("LIMITER", "10.5.0.2", "/elastic", &r);
    block(&store, Hit::new(&fixed_key, r, Strategy::FixedWindow), t0()).await;
    let both = [
        Hit::new(&fixed_key, r, Strategy::FixedWindow),
        Hit::new(&elastic_key, r, Strategy::FixedWindowElastic),
    ];
    reset_stats(&mut admin);
    for _ in 0..5 {
        assert!(!store.decide(&both, t0()).await.unwrap().admitted);
    }
    assert_eq!(script_calls(&mut admin), 5);
}

#[tokio::test]
async fn clear_reset_and_refund_drop_entries() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let store = store(&server, 1_000);
    let r = rate("2 per minute");
    let keys: Vec<String> = (0..3)
        .map(|c| counter_key("LIMITER", &format!("10.6.0.{c}"), "/x", &r))
        .collect();
    let hits: Vec<Hit<'_>> = keys
        .iter()
        .map(|k| Hit::new(k, r, Strategy::FixedWindow))
        .collect();
    for hit in &hits {
        block(&store, *hit, t0()).await;
    }
    assert_eq!(store.block_cache_len(), 3);
    reset_stats(&mut admin);
    for hit in &hits {
        assert!(!store.decide(&[*hit], t0()).await.unwrap().admitted);
    }
    assert_eq!(script_calls(&mut admin), 0);

    store.clear(&keys[0]).await.unwrap();
    assert!(store.decide(&[hits[0]], t0()).await.unwrap().admitted);
    assert_eq!(script_calls(&mut admin), 1);

    // A refund of an admitted request makes room again.
    store.refund(&[hits[1]], t0()).await.unwrap();
    assert!(store.decide(&[hits[1]], t0()).await.unwrap().admitted);

    block(&store, hits[0], t0()).await;
    block(&store, hits[1], t0()).await;
    store.reset().await.unwrap();
    assert_eq!(store.block_cache_len(), 0);
    for hit in &hits {
        assert!(store.decide(&[*hit], t0()).await.unwrap().admitted);
    }
}

#[tokio::test]
async fn the_cap_holds_under_many_distinct_blocked_keys() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    const CAP: usize = 64;
    const CLIENTS: usize = 500;
    let store = store(&server, CAP);
    assert!(store.block_cache_capacity() <= CAP);
    let r = rate("1 per hour");
    for round in 0..2u64 {
        // The second round starts after every block of the first has ended: its entries are
        // reclaimed as new ones come in.
        let now = t0().saturating_add(Duration::from_secs(7_200 * round));
        let keys: Vec<String> = (0..CLIENTS)
            .map(|c| counter_key("LIMITER", &format!("10.7.{round}.{c}"), "/x", &r))
            .collect();
        for key in &keys {
            block(&store, Hit::new(key, r, Strategy::FixedWindow), now).await;
            assert!(store.block_cache_len() <= store.block_cache_capacity());
        }
        assert!(store.block_cache_evictions() > 0);

        // Every client is still denied, from the cache or from Redis; at most CAP of them
        // were answered here. Newest block first: the last one recorded is surely still
        // cached (no insertion came after it to evict it). In the order of the blocks, each
        // miss records its denial and evicts, and whether any early entry survives hundreds
        // of evictions among entries that all end together depends on where the table's
        // random hash put them.
        reset_stats(&mut admin);
        for key in keys.iter().rev() {
            let d = store
                .decide(&[Hit::new(key, r, Strategy::FixedWindow)], now)
                .await
                .unwrap();
            assert!(!d.admitted);
        }
        let calls = script_calls(&mut admin);
        assert!(calls >= (CLIENTS - CAP) as u64, "{calls}");
        assert!(
            calls < CLIENTS as u64,
            "the cache answered nothing: {calls}"
        );
        assert!(store.block_cache_len() <= store.block_cache_capacity());
    }
}

#[tokio::test]
async fn zero_turns_the_cache_off() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let url = format!("{}?block_cache=0&deadline_ms=5000", server.url());
    let store = RedisStore::builder(&url).unwrap().build().unwrap();
    assert_eq!(store.options().block_cache, 0);
    let r = rate("1 per minute");
    let key = counter_key("LIMITER", "10.8.0.1", "/x", &r);
    let hit = Hit::new(&key, r, Strategy::FixedWindow);
    block(&store, hit, t0()).await;
    reset_stats(&mut admin);
    for _ in 0..10 {
        assert!(!store.decide(&[hit], t0()).await.unwrap().admitted);
    }
    assert_eq!(script_calls(&mut admin), 10);
    assert_eq!(store.block_cache_len(), 0);
}

#[tokio::test]
async fn while_redis_is_down_the_failure_policy_answers() {
    if !redis_available() {
        return;
    }
    let mut server = RedisServer::start();
    let store = RedisStore::builder(&server.url())
        .unwrap()
        .deadline(Duration::from_millis(500))
        .probe_backoff(Duration::from_millis(1), Duration::from_millis(1))
        .on_failure(FailurePolicy::FailOpen)
        .build()
        .unwrap();
    let r = rate("1 per minute");
    let key = counter_key("LIMITER", "10.9.0.1", "/x", &r);
    let hit = [Hit::new(&key, r, Strategy::FixedWindow)];
    let retry = block(&store, hit[0], t0()).await;
    server.kill();
    // The first call after the crash is still answered by the cache: nothing has told the
    // store yet that Redis is down.
    let now = t0().saturating_add(Duration::from_secs(1));
    let d = store.decide(&hit, now).await.unwrap();
    assert!(!d.admitted);
    assert_eq!(d.retry_after, Some(retry - Duration::from_secs(1)));
    // Another client's request finds Redis down; from then on `open` admits everyone.
    let other_key = counter_key("LIMITER", "10.9.0.2", "/x", &r);
    let other = [Hit::new(&other_key, r, Strategy::FixedWindow)];
    assert!(store.decide(&other, now).await.unwrap().admitted);
    assert!(store.is_degraded());
    assert!(store.decide(&hit, now).await.unwrap().admitted);

    // Back on Redis (restarted empty), the entry applies again until its block ends.
    server.restart();
    let start = std::time::Instant::now();
    while store.is_degraded() {
        // Polling for the probe to find Redis back (not waiting out a window).
        store.decide(&other, now).await.unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never went back to redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut admin = server.admin();
    reset_stats(&mut admin);
    assert!(!store.decide(&hit, now).await.unwrap().admitted);
    assert_eq!(script_calls(&mut admin), 0);
}

/// A denial that was on its way back from Redis when this store refunded the same key must not
/// block the client afterwards: the refund ran after the denial, so Redis has room, and a
/// block recorded from the stale denial would refuse the client until its window ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_in_flight_during_a_refund_does_not_block_the_client() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let store = store(&server, 1_000);
    let truth = store_without_cache(&server);
    let r = rate("2 per hour");
    let key = counter_key("LIMITER", "10.10.0.1", "/login", &r);
    let hit = Hit::new(&key, r, Strategy::FixedWindow);
    for _ in 0..2 {
        assert!(store.decide(&[hit], t0()).await.unwrap().admitted);
    }
    // Redis stops reading: the denial is sent first, the refund queued behind it on the same
    // connection, so Redis runs the denial, then the refund.
    server.pause();
    let denial = tokio::spawn({
        let store = store.clone();
        let key = key.clone();
        async move {
            store
                .decide(&[Hit::new(&key, r, Strategy::FixedWindow)], t0())
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refund = tokio::spawn({
        let store = store.clone();
        let key = key.clone();
        async move {
            store
                .refund(&[Hit::new(&key, r, Strategy::FixedWindow)], t0())
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.resume();
    assert!(!denial.await.unwrap().unwrap().admitted);
    refund.await.unwrap().unwrap();
    // Redis has room for one more, and says so.
    let later = t0().saturating_add(Duration::from_secs(1));
    assert!(truth.peek(&[hit], later).await.unwrap().admitted);
    let d = store.decide(&[hit], later).await.unwrap();
    assert!(d.admitted, "refused after the refund: {d:?}");
}

fn store_without_cache(server: &RedisServer) -> RedisStore {
    store(server, 0)
}

/// A request of cost 2, 3 or 4 (which never fits) that Redis denied, repeated while it is still blocked: the local
/// 429 is the one Redis gives at that instant (README: "The 429 it gets is the one Redis would
/// give"), its remaining, reset and retry-after included, for every counting strategy.
#[tokio::test]
async fn a_costly_blocked_request_is_told_what_redis_would_tell_it() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let cached = store(&server, 1_000);
    let truth = store_without_cache(&server);
    let mut mismatches = Vec::new();
    // At the start of a minute, so that the fixed windows hold every hit below.
    let start = Timestamp::from_secs(1_699_999_980);
    for strategy in NON_ELASTIC {
        for rate_str in ["3 per minute", "3 per 10 seconds"] {
            let r = rate(rate_str);
            let p = r.period();
            let key = counter_key("LIMITER", "10.11.0.1", &format!("/{strategy}"), &r);
            let hit = Hit::new(&key, r, strategy);
            // Three hits, a twelfth of a period apart.
            for i in 0..3u32 {
                let at = start.saturating_add(p * i / 12);
                assert!(cached.decide(&[hit], at).await.unwrap().admitted);
            }
            let denied_at = start.saturating_add(p / 4);
            let d = cached.decide(&[hit.with_cost(2)], denied_at).await.unwrap();
            assert!(!d.admitted, "{strategy} {rate_str}");
            'steps: for k in 1..=40u32 {
                let now = denied_at.saturating_add(p * k / 40);
                for cost in [2, 3, 4] {
                    let costly = [hit.with_cost(cost)];
                    let redis = truth.peek(&costly, now).await.unwrap();
                    let local = cached.decide(&costly, now).await.unwrap();
                    if redis.admitted {
                        assert!(local.admitted, "{strategy} {rate_str} cost {cost} at {now}");
                        break 'steps;
                    }
                    if local != redis {
                        mismatches.push(format!(
                            "{strategy} {rate_str} cost {cost} at +{:?}: local {:?}, redis {:?}",
                            now.saturating_since(denied_at),
                            local.stats[0],
                            redis.stats[0]
                        ));
                    }
                }
            }
            cached.clear(&key).await.unwrap();
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// A refund of one client's key, made while another client's denial is on its way back, says
/// nothing about that other client: its denial is recorded, and its flood costs Redis nothing
/// after it (README: "a flood from blocked clients costs Redis nothing after the first denial
/// per key"). An app that refunds often (`deduct_when`, ambiguous routes) refunds during
/// nearly every round trip.
#[tokio::test]
async fn a_refund_of_another_key_does_not_keep_a_denial_out_of_the_cache() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let mut admin = server.admin();
    let store = store(&server, 1_000);
    let r = rate("1 per hour");
    let blocked_key = counter_key("LIMITER", "10.12.0.1", "/login", &r);
    let other_key = counter_key("LIMITER", "10.12.0.2", "/search", &r);
    let blocked = Hit::new(&blocked_key, r, Strategy::FixedWindow);
    let other = Hit::new(&other_key, r, Strategy::FixedWindow);
    assert!(store.decide(&[blocked], t0()).await.unwrap().admitted);
    assert!(store.decide(&[other], t0()).await.unwrap().admitted);
    // The denial is sent first; the other client's refund starts while it is in flight.
    let (blocked_hits, other_hits) = ([blocked], [other]);
    let (denial, refund) = tokio::join!(
        store.decide(&blocked_hits, t0()),
        store.refund(&other_hits, t0())
    );
    assert!(!denial.unwrap().admitted);
    refund.unwrap();

    reset_stats(&mut admin);
    for i in 0..10 {
        let now = t0().saturating_add(Duration::from_millis(100 * i));
        assert!(!store.decide(&[blocked], now).await.unwrap().admitted);
    }
    assert_eq!(
        script_calls(&mut admin),
        0,
        "the denial was not recorded: the blocked client reached Redis"
    );
}
