//! Faults on the test's own server: kill it, pause it (SIGSTOP) past the deadline, restart
//! it, flush its scripts, close its clients, and a proxy that goes silent or drops a reply.
//! Nothing panics; the failure policy holds; every call returns within the deadline (plus
//! slack); no request is counted twice; the store goes back to Redis once it answers.
#![cfg(feature = "redis")]

mod common;

use std::time::{Duration, Instant};

use common::{RedisServer, all_keys, redis_available};
use limiter_core::storage::redis::{FailurePolicy, RedisStore};
use limiter_core::{Decision, Hit, Rate, Storage, StorageError, Strategy, Timestamp};

const DEADLINE: Duration = Duration::from_millis(100);
/// Generous slack over the deadline for a loaded CI machine.
const BOUND: Duration = Duration::from_millis(600);
const KEY: &str = "LIMITER{10.0.0.1}:/f:3/1minute";

fn store(server: &RedisServer, policy: FailurePolicy) -> RedisStore {
    store_probing(
        server,
        policy,
        Duration::from_millis(20),
        Duration::from_millis(200),
    )
}

/// [`store`] with the probes' backoff from `min` to `max`.
fn store_probing(
    server: &RedisServer,
    policy: FailurePolicy,
    min: Duration,
    max: Duration,
) -> RedisStore {
    RedisStore::builder(&server.url())
        .unwrap()
        .deadline(DEADLINE)
        .on_failure(policy)
        .probe_backoff(min, max)
        // A client the block cache answers never asks Redis, so it cannot notice an outage;
        // these tests watch every request reach the policy (tests/redis_block_cache.rs covers
        // the cache during an outage).
        .block_cache(0)
        .build()
        .unwrap()
}

fn hit(limit: &str) -> [Hit<'static>; 1] {
    let rate: Rate = limit.parse().unwrap();
    [Hit::new(KEY, rate, Strategy::FixedWindow)]
}

const NOW: Timestamp = Timestamp::from_secs(1_700_000_000);

/// Decides once and checks the call returned within the bound.
async fn timed(store: &RedisStore, hits: &[Hit<'_>]) -> Result<Decision, StorageError> {
    let start = Instant::now();
    let result = store.decide(hits, NOW).await;
    let took = start.elapsed();
    assert!(took < BOUND, "a decision took {took:?}");
    result
}

/// Decides until the store is back on Redis (a probe succeeded), within 3 s.
async fn until_back_on_redis(store: &RedisStore, hits: &[Hit<'_>]) -> Decision {
    let start = Instant::now();
    loop {
        let result = timed(store, hits).await;
        if !store.is_degraded() {
            return result.expect("redis answered");
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "never went back to redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What another worker, deciding on Redis alone, sees left of the 3-per-minute limit.
async fn remaining_on_redis(server: &RedisServer) -> u64 {
    let other = RedisStore::builder(&server.url())
        .unwrap()
        .deadline(Duration::from_secs(2))
        .on_failure(FailurePolicy::FailClosed)
        .build()
        .unwrap();
    other.peek(&hit("3 per minute"), NOW).await.unwrap().stats[0].remaining
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_to_memory_rides_out_every_fault() {
    if !redis_available() {
        return;
    }
    let mut server = RedisServer::start();
    let store = store(&server, FailurePolicy::FallbackToMemory);
    let hits = hit("3 per minute");

    assert!(timed(&store, &hits).await.unwrap().admitted);
    assert_eq!(remaining_on_redis(&server).await, 2);

    // SCRIPT FLUSH: NOSCRIPT is answered by sending the script again, on Redis.
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .exec(&mut server.admin())
        .unwrap();
    assert!(timed(&store, &hits).await.unwrap().admitted);
    assert!(!store.is_degraded());
    assert_eq!(remaining_on_redis(&server).await, 1);

    // Killed: the memory fallback decides, with the same limit, counting afresh.
    server.kill();
    let outcomes: Vec<bool> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(timed(&store, &hits).await.unwrap().admitted);
        }
        v
    };
    assert!(store.is_degraded());
    assert_eq!(outcomes, [true, true, true, false]);

    // Restarted (empty): a probe finds it and decisions go back to Redis.
    server.restart();
    let back = until_back_on_redis(&store, &hits).await;
    assert!(back.admitted);
    assert_eq!(remaining_on_redis(&server).await, 2);

    // Paused past the deadline: every call still answers in time, from memory.
    server.pause();
    let start = Instant::now();
    for _ in 0..5 {
        timed(&store, &hits).await.unwrap();
    }
    assert!(store.is_degraded());
    assert!(start.elapsed() < BOUND * 2);
    server.resume();
    until_back_on_redis(&store, &hits).await;
    assert!(all_keys(&mut server.admin()).contains(&KEY.to_string()));
    // The probe after the restart and the last call counted on Redis; the call that timed
    // out while the server was paused may have been counted too, when it woke up (a
    // timed-out call is at-least-once, never lost in the other direction).
    assert!(remaining_on_redis(&server).await <= 1);
    assert!(store.health_check().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_and_a_decision_together_follow_the_policy_while_redis_is_down() {
    if !redis_available() {
        return;
    }
    let mut server = RedisServer::start();
    let fallback = store(&server, FailurePolicy::FallbackToMemory);
    let closed = store(&server, FailurePolicy::FailClosed);
    let hits = hit("3 per minute");
    server.kill();
    // The fallback counts afresh: three admitted, then the limit is spent.
    for _ in 0..3 {
        assert!(timed(&fallback, &hits).await.unwrap().admitted);
    }
    assert!(!timed(&fallback, &hits).await.unwrap().admitted);
    // Trading a charge for the same limit gives it back on the fallback first.
    let start = Instant::now();
    let traded = fallback.refund_and_decide(&hits, &hits, NOW).await.unwrap();
    assert!(start.elapsed() < BOUND, "took {:?}", start.elapsed());
    assert!(traded.admitted);
    assert_eq!(traded.stats[0].remaining, 0);
    // Failing closed: an error, within the deadline.
    let start = Instant::now();
    assert!(closed.refund_and_decide(&hits, &hits, NOW).await.is_err());
    assert!(start.elapsed() < BOUND, "took {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_admits_while_redis_is_down() {
    if !redis_available() {
        return;
    }
    let mut server = RedisServer::start();
    let store = store(&server, FailurePolicy::FailOpen);
    let hits = hit("1 per minute");
    assert!(timed(&store, &hits).await.unwrap().admitted);
    assert!(!timed(&store, &hits).await.unwrap().admitted);

    server.kill();
    for _ in 0..5 {
        let d = timed(&store, &hits).await.unwrap();
        assert!(d.admitted);
        // Nothing counted it: no stats to show as headers.
        assert!(d.stats.is_empty(), "{d:?}");
    }
    assert!(store.is_degraded());
    assert!(store.health_check().await.is_err());

    server.restart();
    until_back_on_redis(&store, &hits).await;
    // On Redis again: the limit holds.
    assert!(!timed(&store, &hits).await.unwrap().admitted);

    server.pause();
    assert!(timed(&store, &hits).await.unwrap().admitted);
    server.resume();
    until_back_on_redis(&store, &hits).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_returns_errors_while_redis_is_down() {
    if !redis_available() {
        return;
    }
    let mut server = RedisServer::start();
    let store = store(&server, FailurePolicy::FailClosed);
    let hits = hit("5 per minute");
    assert!(timed(&store, &hits).await.unwrap().admitted);

    server.kill();
    for i in 0..3 {
        let err = timed(&store, &hits).await.unwrap_err();
        // The first call can be sent before the client has seen its connection close (about
        // one run in forty here): it then waits out the deadline. Either way it is an error.
        let first_timed_out = i == 0 && err == StorageError::Timeout(DEADLINE);
        assert!(
            matches!(err, StorageError::Unavailable(_)) || first_timed_out,
            "{err:?}"
        );
    }
    server.restart();
    until_back_on_redis(&store, &hits).await;

    server.pause();
    let err = timed(&store, &hits).await.unwrap_err();
    assert_eq!(err, StorageError::Timeout(DEADLINE));
    // Until the next probe, errors come at once.
    let start = Instant::now();
    assert!(timed(&store, &hits).await.is_err());
    assert!(start.elapsed() < DEADLINE);
    server.resume();
    let d = until_back_on_redis(&store, &hits).await;
    assert!(d.admitted);
    // Peek and refund follow the same policy and work again too.
    assert!(store.peek(&hits, NOW).await.is_ok());
    assert!(store.refund(&hits, NOW).await.is_ok());
}

/// A TCP proxy to `target` that fails as networks do. It can go silent on the connections it
/// already carries (it swallows their bytes both ways, as a dead host or a dropped conntrack
/// entry would) while new connections still get through. Or it can close a connection in
/// place of the next reply it carries: the server ran the command, the client never hears.
struct FaultyProxy {
    port: u16,
    /// Connections numbered below this are silent.
    silent_below: std::sync::Arc<std::sync::atomic::AtomicU64>,
    opened: std::sync::Arc<std::sync::atomic::AtomicU64>,
    cut_next_reply: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FaultyProxy {
    fn start(target: u16) -> FaultyProxy {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent_below = Arc::new(AtomicU64::new(0));
        let opened = Arc::new(AtomicU64::new(0));
        let cut_next_reply = Arc::new(AtomicBool::new(false));
        let (silent, count, cut) = (silent_below.clone(), opened.clone(), cut_next_reply.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    return;
                };
                let id = count.fetch_add(1, Ordering::SeqCst);
                for (mut from, mut to, replies) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        false,
                    ),
                    (server, client, true),
                ] {
                    let (silent, cut) = (silent.clone(), cut.clone());
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 {
                                return;
                            }
                            if replies && cut.swap(false, Ordering::SeqCst) {
                                let _ = to.shutdown(Shutdown::Both);
                                let _ = from.shutdown(Shutdown::Both);
                                return;
                            }
                            let quiet = id < silent.load(Ordering::SeqCst);
                            if !quiet && to.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        FaultyProxy {
            port,
            silent_below,
            opened,
            cut_next_reply,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Every connection open now goes silent for good.
    fn silence_open_connections(&self) {
        use std::sync::atomic::Ordering;
        let opened = self.opened.load(Ordering::SeqCst);
        self.silent_below.store(opened, Ordering::SeqCst);
    }

    /// The next reply from the server is not delivered: its connection is closed instead.
    fn cut_next_reply(&self) {
        self.cut_next_reply
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A store reaching Redis through `proxy` that fails closed, probes again soon and has no
/// block cache: every decision is a call that shows what the proxy did to it.
fn fail_closed_through(proxy: &FaultyProxy) -> RedisStore {
    RedisStore::builder(&proxy.url())
        .unwrap()
        .deadline(DEADLINE)
        .on_failure(FailurePolicy::FailClosed)
        .probe_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .block_cache(0)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_connection_gone_silent_is_replaced_after_a_timeout() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let proxy = FaultyProxy::start(server.port);
    let store = fail_closed_through(&proxy);
    let hits = hit("3 per minute");
    assert!(timed(&store, &hits).await.unwrap().admitted);
    // The socket stays open but nothing comes back: no error, only the deadline. The
    // next call must not wait on that socket for ever (the kernel gives up after minutes).
    proxy.silence_open_connections();
    assert!(matches!(
        timed(&store, &hits).await,
        Err(StorageError::Timeout(_))
    ));
    let decision = until_back_on_redis(&store, &hits).await;
    assert!(decision.admitted);
    assert_eq!(decision.stats[0].remaining, 1, "the first hit was counted");
}

#[tokio::test]
async fn a_reply_lost_with_its_connection_is_not_charged_twice() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let proxy = FaultyProxy::start(server.port);
    let store = fail_closed_through(&proxy);
    let hits = hit("3 per minute");
    assert!(timed(&store, &hits).await.unwrap().admitted);
    // The script runs on Redis, then the connection drops before its reply arrives. The
    // store cannot tell that from a call that never reached Redis, so it must not send the
    // call again: the failure policy answers, as for any outage.
    proxy.cut_next_reply();
    let lost = timed(&store, &hits).await;
    assert!(
        matches!(lost, Err(StorageError::Unavailable(_))),
        "{lost:?}"
    );
    assert_eq!(
        remaining_on_redis(&server).await,
        1,
        "the request whose reply was lost is counted once"
    );
    let back = until_back_on_redis(&store, &hits).await;
    assert!(back.admitted);
    assert_eq!(back.stats[0].remaining, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_closed_while_idle_is_replaced_without_an_outage() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let store = store(&server, FailurePolicy::FailClosed);
    let hits = hit("3 per minute");
    assert!(timed(&store, &hits).await.unwrap().admitted);
    // An idle timeout, a restart or a Sentinel failover closes the store's connections.
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(&mut server.admin())
        .unwrap();
    assert!(killed >= 1);
    // The store sees the socket close on its own (its connection task reads the EOF); a
    // moment for that task to run, not a wait for a window.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let d = timed(&store, &hits)
        .await
        .expect("decided on a fresh connection");
    assert!(d.admitted);
    assert!(!store.is_degraded());
    assert_eq!(remaining_on_redis(&server).await, 1);
}

/// No backoff (`probe_min_ms=0&probe_max_ms=0`: probe Redis on every request while it is
/// down) is a setting the URI and the builder accept: a failed probe must not panic, and the
/// policy keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_probe_backoff_probes_on_every_request_without_panicking() {
    if !redis_available() {
        return;
    }
    let mut server = RedisServer::start();
    let store = store_probing(
        &server,
        FailurePolicy::FailOpen,
        Duration::ZERO,
        Duration::ZERO,
    );
    let hits = hit("1 per minute");
    assert!(timed(&store, &hits).await.unwrap().admitted);
    assert!(!timed(&store, &hits).await.unwrap().admitted);

    server.kill();
    // The first failure opens the breaker; every later request is a probe, which fails.
    for _ in 0..5 {
        let d = timed(&store, &hits).await.unwrap();
        assert!(d.admitted);
    }
    assert!(store.is_degraded());

    server.restart();
    // No backoff: the very next request goes back to Redis (empty after the restart).
    assert!(timed(&store, &hits).await.unwrap().admitted);
    assert!(!store.is_degraded());
    assert!(!timed(&store, &hits).await.unwrap().admitted);
}
