//! The limiter on Redis through actix: what a request gets when Redis is down or dies (each
//! failure policy), and several limiters (workers, hosts) sharing one budget in one Redis.
//! Tests that need a server start their own (limiter-core's helper) and never touch another.
#![cfg(feature = "redis")]

mod auth;
#[path = "../../limiter-core/tests/common/mod.rs"]
mod common;
mod guarded;

use std::future::Future;
use std::time::Duration;

use actix_web::body::{MessageBody, to_bytes};
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{App, get, web};
use auth::{app_behind_auth, status_with_token};
use common::{RedisServer, all_keys, free_port, redis_available};
use limiter_actix::core::Store;
use limiter_actix::core::storage::redis::RedisStore;
use limiter_actix::{Headers, Limiter, ManualClock, Timestamp, limit};

/// Top of a minute: fixed windows start here.
const START: u64 = 1_700_006_400;

#[get("/limited")]
#[limit("3 per minute")]
async fn limited() -> &'static str {
    "limited"
}

/// Undecorated: only the default limits apply.
async fn plain() -> &'static str {
    "plain"
}

fn get_req(uri: &str) -> TestRequest {
    TestRequest::get()
        .uri(uri)
        .peer_addr("10.0.0.1:40000".parse().unwrap())
}

async fn body<B: MessageBody>(res: ServiceResponse<B>) -> String {
    let Ok(bytes) = to_bytes(res.into_body()).await else {
        panic!("body could not be read")
    };
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn header<'a, B>(res: &'a ServiceResponse<B>, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

/// A Redis URI where nothing listens.
fn down_uri(policy: &str) -> String {
    format!(
        "redis://127.0.0.1:{}/0?on_failure={policy}&deadline_ms=50",
        free_port()
    )
}

fn builder(uri: &str, clock: &ManualClock) -> limiter_actix::LimiterBuilder {
    Limiter::builder()
        .storage_uri(uri)
        .clock(clock.clone())
        .headers(Headers::XRateLimit)
}

/// Script calls (`EVALSHA`, `EVAL`) `server` has run so far.
fn script_calls(server: &RedisServer) -> u64 {
    common::command_calls(&mut server.admin())
        .into_iter()
        .filter(|(name, _)| name == "evalsha" || name == "eval")
        .map(|(_, calls)| calls)
        .sum()
}

fn is_degraded(limiter: &Limiter) -> bool {
    match limiter.store() {
        Store::Redis(redis) => redis.is_degraded(),
        _ => panic!("the limiter should be on Redis"),
    }
}

/// The two limiters behind [`both_paths!`]: one without default limits, so the middleware
/// has nothing to decide and the `#[limit]` wrapper decides `/limited`; one with default
/// limits, which the middleware decides for the plain route.
fn two_limiters(uri: &str, status: Option<StatusCode>) -> [Limiter; 2] {
    let clock = ManualClock::new(Timestamp::from_secs(START));
    [
        builder(uri, &clock),
        builder(uri, &clock).default_limits("2 per minute"),
    ]
    .map(|b| match status {
        Some(status) => b.storage_failure_status(status),
        None => b,
    })
    .map(|b| b.build().unwrap())
}

/// `[("/limited", app), ("/plain", app)]`: the route each of [`two_limiters`] decides, and a
/// test app on it. (A macro: the apps' types cannot be named in a function's signature.)
macro_rules! both_paths {
    ($uri:expr, $status:expr) => {{
        let make = |limiter: Limiter| {
            App::new()
                .wrap(limiter)
                .service(limited)
                .route("/plain", web::get().to(plain))
        };
        let [wrapper, middleware] = two_limiters($uri, $status);
        [
            ("/limited", test::init_service(make(wrapper)).await),
            ("/plain", test::init_service(make(middleware)).await),
        ]
    }};
}

#[actix_web::test]
async fn redis_down_fail_closed_answers_503_with_retry_after() {
    for (path, app) in both_paths!(&down_uri("fail-closed"), None) {
        // The first call finds Redis down; the next ones are decided while degraded.
        for attempt in 0..3 {
            let res = test::call_service(&app, get_req(path).to_request()).await;
            assert_eq!(
                res.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "{path} #{attempt}"
            );
            assert_eq!(header(&res, "retry-after"), Some("1"), "{path}");
            assert_eq!(
                header(&res, "content-type"),
                Some("text/plain; charset=utf-8"),
                "{path}"
            );
            assert_eq!(body(res).await, "rate limit storage unavailable", "{path}");
        }
    }
}

#[actix_web::test]
async fn redis_down_fail_closed_answers_the_configured_429() {
    let apps = both_paths!(
        &down_uri("fail-closed"),
        Some(StatusCode::TOO_MANY_REQUESTS)
    );
    for (path, app) in apps {
        for _ in 0..2 {
            let res = test::call_service(&app, get_req(path).to_request()).await;
            assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
            assert_eq!(header(&res, "retry-after"), Some("1"), "{path}");
            assert_eq!(body(res).await, "rate limit storage unavailable", "{path}");
        }
    }
}

#[actix_web::test]
async fn redis_down_fail_open_admits_everything() {
    for (path, app) in both_paths!(&down_uri("fail-open"), None) {
        // Past both limits (3 and 2 per minute): nothing is counted, and no header claims
        // a count.
        for attempt in 0..5 {
            let res = test::call_service(&app, get_req(path).to_request()).await;
            assert_eq!(res.status(), StatusCode::OK, "{path} #{attempt}");
            for name in [
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
            ] {
                assert_eq!(header(&res, name), None, "{path} #{attempt}: {name}");
            }
            assert_eq!(body(res).await, &path[1..]);
        }
    }
}

#[actix_web::test]
async fn redis_down_fallback_limits_from_memory() {
    // No on_failure: the default policy, the in-memory fallback with the same limits.
    let uri = format!("redis://127.0.0.1:{}/0?deadline_ms=50", free_port());
    for ((path, app), limit) in both_paths!(&uri, None).into_iter().zip([3, 2]) {
        for remaining in (0..limit).rev() {
            let res = test::call_service(&app, get_req(path).to_request()).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            assert_eq!(
                header(&res, "x-ratelimit-remaining"),
                Some(remaining.to_string().as_str()),
                "{path}"
            );
        }
        let res = test::call_service(&app, get_req(path).to_request()).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert_eq!(header(&res, "retry-after"), Some("60"), "{path}");
        assert_eq!(body(res).await, format!("{limit} per 1 minute"));
    }
}

#[actix_web::test]
async fn redis_killed_mid_test_falls_back_to_memory_then_returns() {
    if !redis_available() {
        return;
    }
    let mut server = RedisServer::start();
    let uri = format!(
        "{}?deadline_ms=100&probe_min_ms=20&probe_max_ms=100",
        server.url()
    );
    let clock = ManualClock::new(Timestamp::from_secs(START));
    let limiter = builder(&uri, &clock).build().unwrap();
    let app = test::init_service(App::new().wrap(limiter.clone()).service(limited)).await;
    let remaining =
        |res: &ServiceResponse<_>| header(res, "x-ratelimit-remaining").map(String::from);

    // On Redis: two of three used, and the counter is in the test's server.
    for left in ["2", "1"] {
        let res = test::call_service(&app, get_req("/limited").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(remaining(&res).as_deref(), Some(left));
    }
    assert!(!is_degraded(&limiter));
    // The route's scope is its handler's path (module::function).
    assert_eq!(
        all_keys(&mut server.admin()),
        ["LIMITER{10.0.0.1}:redis::limited:3/1minute"]
    );

    // Killed: the fallback counts on its own, from zero, with the same limit and headers.
    server.kill();
    clock.advance(Duration::from_secs(15));
    for left in ["2", "1", "0"] {
        let res = test::call_service(&app, get_req("/limited").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(remaining(&res).as_deref(), Some(left));
    }
    assert!(is_degraded(&limiter));
    let res = test::call_service(&app, get_req("/limited").to_request()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), Some("45"));
    assert_eq!(body(res).await, "3 per 1 minute");

    // Back (empty): until a probe succeeds the fallback still denies; the request that
    // probes is decided by the fresh Redis, and so are the next ones.
    server.restart();
    let started = std::time::Instant::now();
    let res = loop {
        let res = test::call_service(&app, get_req("/limited").to_request()).await;
        if !is_degraded(&limiter) {
            break res;
        }
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never went back to redis"
        );
        // Real time only for the probe backoff (20-100 ms); windows follow the manual clock.
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(remaining(&res).as_deref(), Some("2"));
    let res = test::call_service(&app, get_req("/limited").to_request()).await;
    assert_eq!(remaining(&res).as_deref(), Some("1"));
}

#[get("/shared")]
#[limit("5 per minute")]
async fn shared() -> &'static str {
    "shared"
}

#[actix_web::test]
async fn two_limiters_on_one_redis_share_one_budget() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let clock = ManualClock::new(Timestamp::from_secs(START));
    // Two limiters, as two workers or hosts would build them from the same configuration.
    let make = || {
        let limiter = builder(&server.url(), &clock).build().unwrap();
        App::new().wrap(limiter).service(shared)
    };
    let hosts = [
        test::init_service(make()).await,
        test::init_service(make()).await,
    ];
    let window_end = (START + 60).to_string();

    // Alternating between the hosts, one second apart: one budget of 5 in total.
    for (i, left) in ["4", "3", "2", "1", "0"].into_iter().enumerate() {
        let res = test::call_service(&hosts[i % 2], get_req("/shared").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK, "request {}", i + 1);
        assert_eq!(header(&res, "x-ratelimit-limit"), Some("5"));
        assert_eq!(header(&res, "x-ratelimit-remaining"), Some(left));
        assert_eq!(header(&res, "x-ratelimit-reset"), Some(window_end.as_str()));
        clock.advance(Duration::from_secs(1));
    }
    // The 6th and 7th, one on each host, are refused alike until the window ends.
    for host in [1, 0] {
        let res = test::call_service(&hosts[host], get_req("/shared").to_request()).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "host {host}");
        assert_eq!(header(&res, "retry-after"), Some("55"));
        assert_eq!(header(&res, "x-ratelimit-limit"), Some("5"));
        assert_eq!(header(&res, "x-ratelimit-remaining"), Some("0"));
        assert_eq!(header(&res, "x-ratelimit-reset"), Some(window_end.as_str()));
        assert_eq!(body(res).await, "5 per 1 minute");
    }

    // Next window: the budget is back, still one for both.
    clock.advance(Duration::from_secs(55));
    for (i, left) in ["4", "3"].into_iter().enumerate() {
        let res = test::call_service(&hosts[i % 2], get_req("/shared").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "x-ratelimit-remaining"), Some(left));
    }
}

#[actix_web::test]
async fn a_blocked_client_is_refused_without_asking_redis() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let clock = ManualClock::new(Timestamp::from_secs(START));
    let limiter = builder(&server.url(), &clock).build().unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(shared)).await;
    let scripts = || script_calls(&server);
    for _ in 0..5 {
        let res = test::call_service(&app, get_req("/shared").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = test::call_service(&app, get_req("/shared").to_request()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // (The first request also sent the script's source once: EVALSHA, NOSCRIPT, EVAL.)
    let asked = scripts();
    assert!(asked >= 6, "every request so far asked Redis");
    // The denial is remembered: hammering costs no round trip, and every answer is right.
    for second in 0..50 {
        let res = test::call_service(&app, get_req("/shared").to_request()).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry = (60 - second).to_string();
        assert_eq!(header(&res, "retry-after"), Some(retry.as_str()));
        assert_eq!(header(&res, "x-ratelimit-remaining"), Some("0"));
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(
        scripts(),
        asked,
        "no script call while the client is blocked"
    );
    // When the window ends, Redis is asked again and admits.
    clock.advance(Duration::from_secs(10));
    let res = test::call_service(&app, get_req("/shared").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(scripts(), asked + 1);
}

#[actix_web::test]
async fn the_limiter_s_key_prefix_is_what_reset_deletes() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let clock = ManualClock::new(Timestamp::from_secs(START));
    // The prefix set on the limiter, or, left unset, the one of a store built elsewhere or
    // of the storage URI.
    let store = |prefix: &str| {
        let store = RedisStore::builder(&server.url())
            .unwrap()
            .key_prefix(prefix)
            .build()
            .unwrap();
        builder("memory://", &clock).store(Store::Redis(store))
    };
    let own = builder(&server.url(), &clock).key_prefix("myapp");
    let uri = builder(&format!("{}?key_prefix=viauri", server.url()), &clock);
    for (limiter, prefix) in [(own, "myapp"), (store("theirs"), "theirs"), (uri, "viauri")] {
        let limiter = limiter.default_limits("1 per minute").build().unwrap();
        let app = test::init_service(
            App::new()
                .wrap(limiter.clone())
                .route("/plain", web::get().to(plain)),
        )
        .await;
        let call = || test::call_service(&app, get_req("/plain").to_request());
        assert_eq!(call().await.status(), StatusCode::OK);
        assert_eq!(call().await.status(), StatusCode::TOO_MANY_REQUESTS);
        let keys = all_keys(&mut server.admin());
        assert!(
            !keys.is_empty() && keys.iter().all(|k| k.starts_with(&format!("{prefix}{{"))),
            "{prefix}: {keys:?}"
        );
        limiter.reset().await.unwrap();
        assert!(all_keys(&mut server.admin()).is_empty(), "{prefix}");
        assert_eq!(
            call().await.status(),
            StatusCode::OK,
            "{prefix}: reset forgot the count"
        );
        limiter.reset().await.unwrap();
    }

    // A URI naming another prefix contradicts the limiter's; so does a store built elsewhere.
    let uri = format!("{}?key_prefix=other", server.url());
    let err = builder(&uri, &clock)
        .key_prefix("myapp")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("key_prefix"), "{err}");
    for (theirs, ours) in [("LIMITER", "myapp"), ("theirs", "LIMITER")] {
        let err = store(theirs).key_prefix(ours).build().unwrap_err();
        let expected = format!("the store's key_prefix differs from the limiter's (\"{ours}\")");
        assert!(err.to_string().contains(&expected), "{err}");
    }
}

#[actix_web::test]
async fn reset_leaves_the_keys_of_a_longer_prefix_and_other_data_alone() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let clock = ManualClock::new(Timestamp::from_secs(START));
    // Two apps sharing one Redis, as `key_prefix` allows, one prefix the start of the other,
    // and a key of the application's own that begins with a limiter's prefix.
    redis::cmd("SET")
        .arg("api-sessions:42")
        .arg("alive")
        .exec(&mut server.admin())
        .unwrap();
    let [api, api2] = ["api", "api2"].map(|prefix| {
        builder(&server.url(), &clock)
            .key_prefix(prefix)
            .default_limits("1 per minute")
            .build()
            .unwrap()
    });
    let app = |limiter: &Limiter| {
        test::init_service(
            App::new()
                .wrap(limiter.clone())
                .route("/plain", web::get().to(plain)),
        )
    };
    let (api_app, api2_app) = (app(&api).await, app(&api2).await);
    for app in [&api_app, &api2_app] {
        assert_eq!(
            test::call_service(app, get_req("/plain").to_request())
                .await
                .status(),
            StatusCode::OK
        );
    }
    api.reset().await.unwrap();
    // api2's client is still over its limit, and the application's key is still there.
    assert_eq!(
        test::call_service(&api2_app, get_req("/plain").to_request())
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let mut keys = all_keys(&mut server.admin());
    keys.retain(|k| !k.starts_with("api2{"));
    assert_eq!(keys, ["api-sessions:42"]);
    // api's own count is gone.
    assert_eq!(
        test::call_service(&api_app, get_req("/plain").to_request())
            .await
            .status(),
        StatusCode::OK
    );
}

#[actix_web::test]
async fn a_failure_whose_response_is_dropped_is_still_charged() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let clock = ManualClock::new(Timestamp::from_secs(START));
    let limiter = builder(&server.url(), &clock)
        .application_limits("1 per minute")
        .build()
        .unwrap();
    let app = app_behind_auth(limiter.clone(), shared).await;
    assert_eq!(
        status_with_token(&app, get_req("/shared"), true).await,
        StatusCode::OK
    );
    // Uncounted: the route learns that it fails.
    assert_eq!(
        status_with_token(&app, get_req("/shared"), false).await,
        StatusCode::UNAUTHORIZED
    );
    // A failure whose client goes away while its charge is in flight: the response future is
    // polled once, then dropped (as when actix drops a connection).
    let mut pending = Box::pin(app.call(get_req("/shared").to_request()));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(
        pending.as_mut().poll(&mut cx).is_pending(),
        "the failure's charge should still be in flight"
    );
    drop(pending);
    // The charge completes anyway, and its denial reaches the block cache.
    let Store::Redis(redis) = limiter.store() else {
        panic!("a Redis store")
    };
    for _ in 0..250 {
        if redis.block_cache_len() > 0 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(redis.block_cache_len(), 1);
}

#[limit("3 per minute")]
async fn versioned() -> &'static str {
    "versioned"
}

#[actix_web::test]
async fn a_decorated_request_on_an_ambiguous_route_costs_two_scripts() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let clock = ManualClock::new(Timestamp::from_secs(START));
    let limiter = builder(&server.url(), &clock)
        .default_limits("5 per minute")
        .build()
        .unwrap();
    // Same method and pattern, told apart by a guard: one decorated, one plain.
    let app = guarded::guarded_pair(limiter, versioned).await;
    let call = |v2: bool| guarded::call(&app, get_req("/amb"), v2);
    let ok = |text: &str| (StatusCode::OK, text.to_string());
    let refused = (StatusCode::TOO_MANY_REQUESTS, "3 per 1 minute".to_string());
    assert_eq!(call(true).await, ok("versioned"));
    assert_eq!(call(true).await, ok("versioned"));
    // The plain handler answers: the pattern is ambiguous from now on, and every request on
    // it is charged before routing. The third decorated request also loads the scripts.
    assert_eq!(call(false).await, ok("plain"));
    assert_eq!(call(true).await, ok("versioned"));
    // A decorated request: the charge before routing, then one call that gives it back and
    // decides the route's own limit (a refund and a decision were two).
    let calls = script_calls(&server);
    assert_eq!(call(true).await, refused);
    assert_eq!(script_calls(&server), calls + 2);
    // Once the block cache knows the route's limit is spent, that call only gives back.
    assert_eq!(call(true).await, refused);
    assert_eq!(script_calls(&server), calls + 4);
    // Every charge made before a decorated request was given back: the plain handler still
    // has 4 of its 5 default hits.
    for _ in 0..4 {
        assert_eq!(call(false).await, ok("plain"));
    }
    assert_eq!(
        call(false).await,
        (StatusCode::TOO_MANY_REQUESTS, "5 per 1 minute".to_string())
    );
}

#[actix_web::test]
async fn a_route_behind_a_failing_middleware_still_costs_one_script_per_admitted_request() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let clock = ManualClock::new(Timestamp::from_secs(START));
    let limiter = builder(&server.url(), &clock)
        .application_limits("100 per minute")
        .build()
        .unwrap();
    let app = app_behind_auth(limiter, shared).await;
    let scripts = || script_calls(&server);
    let call = |token: bool| status_with_token(&app, get_req("/shared"), token);
    assert_eq!(call(true).await, StatusCode::OK);
    // (The first call also loaded the script: EVALSHA, NOSCRIPT, EVAL.)
    let mut calls = scripts();
    // The first failure is not counted; the route is keyed before routing from then on.
    assert_eq!(call(false).await, StatusCode::UNAUTHORIZED);
    assert_eq!(scripts(), calls);
    for _ in 0..3 {
        // Admitted requests: the wrapper's one call, nothing before routing.
        assert_eq!(call(true).await, StatusCode::OK);
        calls += 1;
        assert_eq!(scripts(), calls);
        // Failures: one call each, to charge them, made before the error is passed on.
        assert_eq!(call(false).await, StatusCode::UNAUTHORIZED);
        calls += 1;
        assert_eq!(scripts(), calls);
    }
}

#[actix_web::test]
async fn a_client_over_its_limit_on_a_failing_route_is_refused_from_the_block_cache() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let clock = ManualClock::new(Timestamp::from_secs(START));
    let limiter = builder(&server.url(), &clock)
        .application_limits("2 per minute")
        .build()
        .unwrap();
    let app = app_behind_auth(limiter.clone(), shared).await;
    let scripts = || script_calls(&server);
    let call = |token: bool| status_with_token(&app, get_req("/shared"), token);
    assert_eq!(call(true).await, StatusCode::OK); // the application limit: 1 of 2
    assert_eq!(call(false).await, StatusCode::UNAUTHORIZED); // uncounted: the route learns
    assert_eq!(call(false).await, StatusCode::UNAUTHORIZED); // charged: 2 of 2
    // Charged too, and denied. The error waited for that charge, so Redis' answer is in the
    // block cache before the client's next request.
    assert_eq!(call(false).await, StatusCode::UNAUTHORIZED);
    let Store::Redis(redis) = limiter.store() else {
        panic!("a Redis store")
    };
    assert_eq!(redis.block_cache_len(), 1);
    let asked = scripts();
    // From now on the client is refused before routing, without asking Redis.
    assert_eq!(call(false).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(call(true).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(scripts(), asked);
}

#[limit("50 per minute")]
async fn dav_limited() -> &'static str {
    "dav"
}

#[limiter_actix::exempt]
async fn dav_exempt() -> &'static str {
    "exempt"
}

#[actix_web::test]
async fn a_decorated_route_learned_for_a_method_outside_the_standard_ones_costs_one_script() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let clock = ManualClock::new(Timestamp::from_secs(START));
    let limiter = builder(&server.url(), &clock)
        .application_limits("3 per minute")
        .default_limits("100 per minute")
        .build()
        .unwrap();
    // Every method, WebDAV's among them.
    let app = test::init_service(
        App::new()
            .wrap(limiter)
            .route("/dav", web::route().to(dav_limited))
            .route("/free", web::route().to(dav_exempt))
            .route("/plain", web::get().to(plain)),
    )
    .await;
    let propfind = actix_web::http::Method::from_bytes(b"PROPFIND").unwrap();
    let call =
        |path: &str| test::call_service(&app, get_req(path).method(propfind.clone()).to_request());
    // The first request of each route teaches the limiter that its handler decides (and
    // loads the scripts): the exempt one is charged nothing in the end.
    assert_eq!(call("/dav").await.status(), StatusCode::OK);
    assert_eq!(call("/free").await.status(), StatusCode::OK);
    // From then on the decorated route's wrapper decides alone: one script per request.
    let before = script_calls(&server);
    let res = call("/dav").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("1"));
    assert_eq!(script_calls(&server), before + 1);
    // The exempt route costs nothing, and stays open to a client over its application
    // limit, which a plain route uses up.
    for status in [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS] {
        let res = test::call_service(&app, get_req("/plain").to_request()).await;
        assert_eq!(res.status(), status);
    }
    let before = script_calls(&server);
    for _ in 0..2 {
        assert_eq!(call("/free").await.status(), StatusCode::OK);
    }
    assert_eq!(script_calls(&server), before);
    assert_eq!(call("/dav").await.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// Counts only a response that is not a server error.
fn unless_5xx(res: &actix_web::HttpResponse) -> bool {
    !res.status().is_server_error()
}

#[limit("1 per minute", deduct_when = unless_5xx)]
async fn failing_sometimes(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    if req.query_string() == "fail" {
        actix_web::HttpResponse::InternalServerError().finish()
    } else {
        actix_web::HttpResponse::Ok().finish()
    }
}

#[actix_web::test]
async fn with_the_server_clock_and_a_manual_one_deduct_when_gives_back() {
    // time=server decides at Redis' TIME whatever the limiter's clock says; a refund is
    // aged on the limiter's clock, so a manual one (years behind the system's) still finds
    // the charge it gives back.
    if !redis_available() {
        return;
    }
    let server = RedisServer::start();
    let clock = ManualClock::new(Timestamp::from_secs(START));
    let uri = format!("{}?time=server", server.url());
    let limiter = builder(&uri, &clock).build().unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter)
            .route("/flaky", web::get().to(failing_sometimes)),
    )
    .await;
    let call = |uri: &'static str| test::call_service(&app, get_req(uri).to_request());
    assert_eq!(call("/flaky?fail").await.status(), 500);
    // The failed response was given back: the minute's one request is still there.
    assert_eq!(call("/flaky").await.status(), StatusCode::OK);
    assert_eq!(call("/flaky").await.status(), StatusCode::TOO_MANY_REQUESTS);
}
