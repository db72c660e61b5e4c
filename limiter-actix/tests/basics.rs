//! Behaviour users rely on, through actix's test service with a manual clock.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::body::{MessageBody, to_bytes};
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use actix_web::{App, HttpRequest, HttpResponse, Responder, get, post, route, web};
mod auth;
mod guarded;

use auth::{FAILS_AFTER_THE_HANDLER, app_behind_auth, status_with_token};
use limiter_actix::{
    Breach, Headers, Limiter, ManualClock, ProxyHeader, RetryAfter, Timestamp, exempt, limit,
};

/// Top of a minute, an hour and a day: fixed windows start here.
const START: u64 = 1_700_006_400;

fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_secs(START))
}

fn peer(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 40_000)
}

fn get_from(uri: &str, ip: &str) -> TestRequest {
    TestRequest::get().uri(uri).peer_addr(peer(ip))
}

async fn body<B: MessageBody>(res: ServiceResponse<B>) -> String {
    let Ok(bytes) = to_bytes(res.into_body()).await else {
        panic!("body could not be read")
    };
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The status of `app`'s answer to `req`.
async fn status_of<S, R, B>(app: &S, req: R) -> StatusCode
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    test::call_service(app, req).await.status()
}

/// `|uri| async { the status of a GET of uri from 10.0.0.1 }` over `app`: the call most
/// tests make.
macro_rules! get_status {
    ($app:ident) => {
        |uri: &'static str| {
            let app = &$app;
            async move { status_of(app, get_from(uri, "10.0.0.1").to_request()).await }
        }
    };
}

fn header<'a, B>(res: &'a ServiceResponse<B>, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

/// What a fixed-window counter has left, read from the memory store where the documented key
/// layout (`LIMITER{client}:scope:rate`) puts it.
fn remaining_at(
    limiter: &Limiter,
    clock: &ManualClock,
    client: &str,
    scope: &str,
    rate: &str,
) -> u64 {
    use limiter_actix::core::Hit;
    use limiter_actix::core::keys::counter_key;
    use limiter_actix::{Rate, Store, Strategy};

    let Store::Memory(memory) = limiter.store() else {
        panic!("a memory store")
    };
    let rate = Rate::parse(rate).unwrap();
    let key = counter_key("LIMITER", client, scope, &rate);
    let hit = [Hit::new(&key, rate, Strategy::FixedWindow)];
    memory.peek_now(&hit, clock.now()).stats[0].remaining
}

#[get("/slow")]
#[limit("1 per minute")]
async fn slow() -> impl Responder {
    HttpResponse::Ok().json(serde_json::json!({"message": "This is a slow route."}))
}

#[limit("100 per hour")]
#[get("/fast")]
async fn fast() -> &'static str {
    "fast"
}

#[actix_web::test]
async fn n_allowed_then_429_with_message_and_retry_after() {
    let clock = clock();
    let limiter = Limiter::builder()
        .clock(clock.clone())
        .default_error_message("You've hit the rate limit!")
        .build()
        .unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(slow).service(fast)).await;

    let first = test::call_service(&app, get_from("/slow", "10.0.0.1").to_request()).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(body(first).await, r#"{"message":"This is a slow route."}"#);

    clock.advance(Duration::from_secs(20));
    let second = test::call_service(&app, get_from("/slow", "10.0.0.1").to_request()).await;
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&second, "retry-after"), Some("40"));
    assert_eq!(body(second).await, "You've hit the rate limit!");

    // Another client has its own bucket; another route too.
    let other = test::call_service(&app, get_from("/slow", "10.0.0.2").to_request()).await;
    assert_eq!(other.status(), StatusCode::OK);
    let other_route = test::call_service(&app, get_from("/fast", "10.0.0.1").to_request()).await;
    assert_eq!(other_route.status(), StatusCode::OK);

    // The window ends at the top of the next minute.
    clock.advance(Duration::from_secs(40));
    let later = test::call_service(&app, get_from("/slow", "10.0.0.1").to_request()).await;
    assert_eq!(later.status(), StatusCode::OK);
}

#[actix_web::test]
async fn a_decorated_handler_without_the_middleware_answers_500() {
    let limiter = Limiter::builder().clock(clock()).build().unwrap();
    // Not wrapped: neither alone nor with the limiter as plain app data does a decorated
    // handler find the state the middleware gives each worker.
    let bare = test::init_service(App::new().service(slow)).await;
    let as_data = test::init_service(App::new().app_data(limiter).service(slow)).await;
    // Twice: with a limit of 1 per minute, a second 500 shows nothing was counted either.
    for _ in 0..2 {
        for app in [&bare, &as_data] {
            let res = test::call_service(app, get_from("/slow", "10.0.0.1").to_request()).await;
            assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(body(res).await, "rate limiter not configured");
        }
    }
}

#[actix_web::test]
async fn default_message_is_the_breached_rate() {
    let limiter = Limiter::builder().clock(clock()).build().unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(slow).service(three)).await;
    test::call_service(&app, get_from("/slow", "10.0.0.1").to_request()).await;
    for _ in 0..3 {
        test::call_service(&app, get_from("/three", "10.0.0.1").to_request()).await;
    }
    // Rejections of two limits in turn: each body names its own rate.
    for (path, message) in [
        ("/slow", "1 per 1 minute"),
        ("/three", "3 per 1 minute"),
        ("/slow", "1 per 1 minute"),
        ("/three", "3 per 1 minute"),
    ] {
        let res = test::call_service(&app, get_from(path, "10.0.0.1").to_request()).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            header(&res, "content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(body(res).await, message);
    }
}

#[get("/three")]
#[limit("3 per minute")]
async fn three() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn headers_show_remaining_falling_and_reset_at_window_end() {
    let clock = clock();
    let limiter = Limiter::builder()
        .clock(clock.clone())
        .headers(Headers::XRateLimit)
        .build()
        .unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(three)).await;
    clock.advance(Duration::from_secs(15));
    let window_end = (START + 60).to_string();
    for remaining in ["2", "1", "0"] {
        let res = test::call_service(&app, get_from("/three", "10.0.0.1").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "x-ratelimit-limit"), Some("3"));
        assert_eq!(header(&res, "x-ratelimit-remaining"), Some(remaining));
        assert_eq!(header(&res, "x-ratelimit-reset"), Some(window_end.as_str()));
    }
    let res = test::call_service(&app, get_from("/three", "10.0.0.1").to_request()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "x-ratelimit-limit"), Some("3"));
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header(&res, "x-ratelimit-reset"), Some(window_end.as_str()));
    assert_eq!(header(&res, "retry-after"), Some("45"));
}

/// A handler that sets rate-limit headers of its own, twice over.
fn with_own_headers() -> HttpResponse {
    HttpResponse::Ok()
        .append_header(("x-ratelimit-remaining", "999"))
        .append_header(("x-ratelimit-remaining", "998"))
        .append_header(("x-ratelimit-limit", "999"))
        .append_header(("ratelimit", "\"own\";r=999;t=1"))
        .append_header(("ratelimit", "\"own\";r=998;t=1"))
        .finish()
}

#[get("/own-headers")]
#[limit("3 per minute")]
async fn own_headers_limited() -> HttpResponse {
    with_own_headers()
}

async fn own_headers_plain() -> HttpResponse {
    with_own_headers()
}

#[actix_web::test]
async fn the_limiters_headers_replace_the_handlers_own() {
    for style in [Headers::XRateLimit, Headers::Ietf] {
        let limiter = Limiter::builder()
            .clock(clock())
            .headers(style)
            .application_limits("5 per minute")
            .build()
            .unwrap();
        let app = test::init_service(
            App::new()
                .wrap(limiter)
                .service(own_headers_limited)
                .route("/plain", web::get().to(own_headers_plain)),
        )
        .await;
        // The `#[limit]` wrapper shows the route limit; the middleware, on the plain route, the
        // application limit. Either way each header holds one value, the limiter's.
        for (uri, limit, remaining, name) in [
            ("/own-headers", "3", "2", "route-0"),
            ("/plain", "5", "3", "application-0"),
        ] {
            let res = test::call_service(&app, get_from(uri, "10.0.0.1").to_request()).await;
            assert_eq!(res.status(), StatusCode::OK, "{uri}");
            let all = |name: &str| -> Vec<&str> {
                res.headers()
                    .get_all(name)
                    .map(|v| v.to_str().unwrap())
                    .collect()
            };
            if style == Headers::XRateLimit {
                assert_eq!(all("x-ratelimit-remaining"), [remaining], "{uri}");
                assert_eq!(all("x-ratelimit-limit"), [limit], "{uri}");
                assert_eq!(all("x-ratelimit-reset").len(), 1, "{uri}");
            } else {
                let ours = all("ratelimit");
                assert_eq!(ours.len(), 1, "{uri}: {ours:?}");
                let start = format!("\"{name}\";r={remaining};t=");
                assert!(ours[0].starts_with(&start), "{uri}: {ours:?}");
                assert_eq!(all("ratelimit-policy").len(), 1, "{uri}");
                // The handler's own X-RateLimit headers are not the limiter's to touch.
                assert_eq!(all("x-ratelimit-remaining"), ["999", "998"], "{uri}");
            }
        }
    }
}

async fn plain() -> &'static str {
    "plain"
}

#[actix_web::test]
async fn percent_encoded_paths_are_charged_as_the_route_they_reach() {
    // actix routes `/%61` to `/a` (it decodes the path first): the request must count against
    // `/a`'s default limit, whether the route was seen before or not.
    let limiter = Limiter::builder()
        .clock(clock())
        .default_limits("1 per minute")
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter)
            .route("/a", web::get().to(plain))
            .route("/b", web::get().to(plain))
            .route("/items/{id}", web::get().to(plain)),
    )
    .await;
    for (first, second) in [("/a", "/%61"), ("/%62", "/b"), ("/items/1", "/%69tems/1")] {
        let res = test::call_service(&app, get_from(first, "10.0.0.1").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK, "{first}");
        let res = test::call_service(&app, get_from(second, "10.0.0.1").to_request()).await;
        assert_eq!(
            res.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{second} after {first}"
        );
    }
}

#[actix_web::test]
async fn retry_after_never_names_a_time_before_the_request_would_pass() {
    let clock = clock();
    let limiter = |retry_after| {
        Limiter::builder()
            .clock(clock.clone())
            .strategy("moving-window")
            .retry_after(retry_after)
            .build()
            .unwrap()
    };
    let dated =
        test::init_service(App::new().wrap(limiter(RetryAfter::HttpDate)).service(slow)).await;
    let seconds =
        test::init_service(App::new().wrap(limiter(RetryAfter::Seconds)).service(slow)).await;
    // One hit at START + 0.5 s: the next passes at START + 60.5 s.
    clock.advance(Duration::from_millis(500));
    for app in [&dated, &seconds] {
        let res = test::call_service(app, get_from("/slow", "10.0.0.1").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    clock.advance(Duration::from_millis(30_400));
    let res = test::call_service(&dated, get_from("/slow", "10.0.0.1").to_request()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // START + 61 s; START + 60 s would be refused again.
    assert_eq!(
        header(&res, "retry-after"),
        Some("Wed, 15 Nov 2023 00:01:01 GMT")
    );
    // 29.6 s, rounded up.
    let res = test::call_service(&seconds, get_from("/slow", "10.0.0.1").to_request()).await;
    assert_eq!(header(&res, "retry-after"), Some("30"));
}

#[actix_web::test]
async fn header_names_ietf_fields_and_http_date() {
    let clock = clock();
    let limiter = Limiter::builder()
        .clock(clock.clone())
        .headers(Headers::XRateLimit)
        .header_names("RL-Limit", "RL-Left", "RL-Reset")
        .retry_after(RetryAfter::HttpDate)
        .build()
        .unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(slow)).await;
    let res = test::call_service(&app, get_from("/slow", "10.0.0.1").to_request()).await;
    assert_eq!(header(&res, "rl-limit"), Some("1"));
    assert_eq!(header(&res, "rl-left"), Some("0"));
    assert_eq!(header(&res, "x-ratelimit-limit"), None);

    // Well-known names, in any case, are kept as static names; they read the same.
    let limiter = Limiter::builder()
        .clock(clock.clone())
        .headers(Headers::XRateLimit)
        .header_names("RateLimit-Limit", "RATELIMIT-REMAINING", "ratelimit-reset")
        .build()
        .unwrap();
    let other = test::init_service(App::new().wrap(limiter).service(slow)).await;
    let res = test::call_service(&other, get_from("/slow", "10.0.0.1").to_request()).await;
    assert_eq!(header(&res, "ratelimit-limit"), Some("1"));
    assert_eq!(header(&res, "ratelimit-remaining"), Some("0"));
    assert!(header(&res, "ratelimit-reset").is_some());
    assert_eq!(header(&res, "x-ratelimit-limit"), None);
    clock.advance(Duration::from_secs(30));
    let res = test::call_service(&app, get_from("/slow", "10.0.0.1").to_request()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // START + 60 = 2023-11-15 00:01:00 UTC.
    assert_eq!(
        header(&res, "retry-after"),
        Some("Wed, 15 Nov 2023 00:01:00 GMT")
    );

    let clock = self::clock();
    let limiter = Limiter::builder()
        .clock(clock.clone())
        .headers(Headers::Ietf)
        .application_limits("10 per hour")
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter)
            .service(slow)
            .route("/plain", web::get().to(plain)),
    )
    .await;
    clock.advance(Duration::from_secs(20));
    let slow_route = (
        "/slow",
        "\"route-0\";q=1;w=60, \"application-0\";q=10;w=3600",
        "\"route-0\";r=0;t=40",
    );
    let plain_route = (
        "/plain",
        "\"application-0\";q=10;w=3600",
        "\"application-0\";r=9;t=3580",
    );
    // Routes with other sets of limits, in turns on one worker: each response names its own.
    for (client, (path, policy, field)) in [
        ("10.0.0.1", slow_route),
        ("10.0.0.2", plain_route),
        ("10.0.0.2", slow_route),
        ("10.0.0.3", plain_route),
        ("10.0.0.3", slow_route),
    ] {
        let res = test::call_service(&app, get_from(path, client).to_request()).await;
        assert_eq!(
            header(&res, "ratelimit-policy"),
            Some(policy),
            "{client} {path}"
        );
        assert_eq!(header(&res, "ratelimit"), Some(field), "{client} {path}");
    }
}

#[get("/stacked")]
#[limit("2 per minute")]
#[limit("3 per hour", error_message = "hourly quota used")]
async fn stacked() -> &'static str {
    "ok"
}

#[get("/chained")]
#[limit("2 per minute, 3 per hour")]
async fn chained() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn stacked_and_chained_limits_all_apply() {
    for (uri, hour_message) in [
        ("/stacked", "hourly quota used"),
        ("/chained", "3 per 1 hour"),
    ] {
        let clock = clock();
        let limiter = Limiter::builder().clock(clock.clone()).build().unwrap();
        let app =
            test::init_service(App::new().wrap(limiter).service(stacked).service(chained)).await;
        let call = || test::call_service(&app, get_from(uri, "10.0.0.1").to_request());
        assert_eq!(call().await.status(), StatusCode::OK);
        assert_eq!(call().await.status(), StatusCode::OK);
        let third = call().await;
        assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS, "{uri}");
        assert_eq!(body(third).await, "2 per 1 minute");
        clock.advance(Duration::from_secs(60));
        assert_eq!(call().await.status(), StatusCode::OK);
        let hourly = call().await;
        assert_eq!(hourly.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&hourly, "retry-after"), Some("3540"));
        assert_eq!(body(hourly).await, hour_message);
        // The rejected request charged nothing: the minute bucket still has room next minute,
        // but the hour is used up.
        clock.advance(Duration::from_secs(60));
        assert_eq!(call().await.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}

fn api_key(req: &HttpRequest) -> Option<&str> {
    req.headers().get("x-api-key")?.to_str().ok()
}

#[get("/keyed")]
#[limit("2 per minute", key = api_key)]
async fn keyed() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn key_by_header() {
    let limiter = Limiter::builder().clock(clock()).build().unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(keyed)).await;
    let with_key = |key: &str, ip: &str| {
        get_from("/keyed", ip)
            .insert_header(("x-api-key", key.to_string()))
            .to_request()
    };
    // One key from two addresses shares a bucket.
    assert_eq!(
        status_of(&app, with_key("alpha", "10.0.0.1")).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&app, with_key("alpha", "10.0.0.2")).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&app, with_key("alpha", "10.0.0.3")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another key from the same address does not.
    assert_eq!(
        status_of(&app, with_key("beta", "10.0.0.1")).await,
        StatusCode::OK
    );
    // No key, or an empty one: the limit is skipped (Flask-Limiter skips a limit whose key is
    // empty), rather than every such client sharing one bucket.
    for _ in 0..5 {
        let res = test::call_service(&app, get_from("/keyed", "10.0.0.1").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            status_of(&app, with_key("", "10.0.0.1")).await,
            StatusCode::OK
        );
    }
}

#[actix_web::test]
async fn limiter_key_fn_keys_every_limit() {
    let limiter = Limiter::builder()
        .clock(clock())
        .key_fn(|req| api_key(req).map(str::to_string))
        .default_limits("1 per minute")
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter)
            .route("/plain", web::get().to(|| async { "plain" })),
    )
    .await;
    let req = |key: &str, ip: &str| {
        get_from("/plain", ip)
            .insert_header(("x-api-key", key.to_string()))
            .to_request()
    };
    assert_eq!(status_of(&app, req("k1", "10.0.0.1")).await, StatusCode::OK);
    assert_eq!(
        status_of(&app, req("k1", "10.0.0.9")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(status_of(&app, req("k2", "10.0.0.1")).await, StatusCode::OK);
    // An empty key skips the limits, as no key does.
    for _ in 0..3 {
        assert_eq!(status_of(&app, req("", "10.0.0.1")).await, StatusCode::OK);
    }
}

/// `key_header`: the header's value keys the request wherever it comes from; without the
/// header (or with an empty one) the peer address does, and a value spelling an address does
/// not count against that address.
#[actix_web::test]
async fn key_header_keys_by_the_value_else_the_peer() {
    let clock = clock();
    let limiter = Limiter::builder()
        .clock(clock.clone())
        .key_header("X-API-Key")
        .application_limits("2 per minute")
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter.clone())
            .route("/plain", web::get().to(|| async { "plain" })),
    )
    .await;
    // (X-API-Key, peer, status), in order. No key: the address counts.
    let steps = [
        // One key from two addresses: one bucket.
        (Some("alpha"), "10.0.0.1", 200),
        (Some("alpha"), "10.0.0.2", 200),
        (Some("alpha"), "10.0.0.3", 429),
        // Another key from a used address: its own bucket.
        (Some("beta"), "10.0.0.1", 200),
        // Without the header, and with an empty one, the address counts: 10.0.0.1 is still
        // untouched, since its requests above counted against their keys.
        (None, "10.0.0.1", 200),
        (Some(""), "10.0.0.1", 200),
        (None, "10.0.0.1", 429),
        // A key spelling that address is not that address.
        (Some("10.0.0.1"), "10.0.0.5", 200),
    ];
    for (step, (key, ip, status)) in steps.into_iter().enumerate() {
        let mut req = get_from("/plain", ip);
        if let Some(key) = key {
            req = req.insert_header(("x-api-key", key));
        }
        let res = test::call_service(&app, req.to_request()).await;
        assert_eq!(
            res.status().as_u16(),
            status,
            "step {step}: {key:?} from {ip}"
        );
    }

    // The counters are where the documented layout puts them.
    let remaining = |client: &str| remaining_at(&limiter, &clock, client, "global", "2 per minute");
    assert_eq!(remaining("x-api-key=alpha"), 0);
    assert_eq!(remaining("x-api-key=beta"), 1);
    assert_eq!(remaining("x-api-key=10.0.0.1"), 1);
    assert_eq!(remaining("10.0.0.1"), 0);

    let error = Limiter::builder()
        .key_header("X API Key")
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("key_header") && error.contains("X API Key"),
        "{error}"
    );
}

#[get("/own-key")]
#[limit("1 per minute", key = api_key)]
async fn own_key() -> &'static str {
    "ok"
}

/// Client keys too long to store as written, or holding braces (which would break the
/// `{client}` hash tag), are stored under their hash, in the documented layout, whether the
/// limiter's key function or a limit's own gave them.
#[actix_web::test]
async fn long_and_braced_client_keys_are_stored_under_their_hash() {
    let clock = clock();
    let limiter = Limiter::builder()
        .clock(clock.clone())
        .key_fn(|req| api_key(req).map(str::to_string))
        .application_limits("5 per minute")
        .build()
        .unwrap();
    let app = test::init_service(App::new().wrap(limiter.clone()).service(own_key)).await;
    let remaining =
        |key: &str, scope: &str, rate: &str| remaining_at(&limiter, &clock, key, scope, rate);
    for key in ["k".repeat(100), "{tenant}".to_string(), "plain".to_string()] {
        let req = || {
            get_from("/own-key", "10.0.0.1")
                .insert_header(("x-api-key", key.clone()))
                .to_request()
        };
        assert_eq!(status_of(&app, req()).await, StatusCode::OK);
        assert_eq!(
            status_of(&app, req()).await,
            StatusCode::TOO_MANY_REQUESTS,
            "{key}"
        );
        assert_eq!(
            remaining(&key, "basics::own_key", "1 per minute"),
            0,
            "{key}"
        );
        // The denied request charged nothing: one hit on the application limit.
        assert_eq!(remaining(&key, "global", "5 per minute"), 4, "{key}");
    }
}

// Exemptions.
#[get("/health")]
#[exempt]
async fn health() -> &'static str {
    "up"
}

#[get("/no-app")]
#[exempt(application)]
async fn no_app() -> &'static str {
    "ok"
}

#[get("/no-defaults")]
#[exempt(defaults)]
async fn no_defaults() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn exemptions() {
    let limiter = Limiter::builder()
        .clock(clock())
        .default_limits("1 per minute")
        .application_limits("3 per minute")
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter)
            .service(health)
            .service(no_app)
            .service(no_defaults),
    )
    .await;
    let status = get_status!(app);
    // #[exempt]: neither defaults nor application limits, ever.
    for _ in 0..6 {
        assert_eq!(status("/health").await, StatusCode::OK);
    }
    // #[exempt(application)]: the default (1/minute, its own bucket) still applies; the
    // application bucket is untouched.
    assert_eq!(status("/no-app").await, StatusCode::OK);
    assert_eq!(status("/no-app").await, StatusCode::TOO_MANY_REQUESTS);
    // #[exempt(defaults)]: only the application limit (3 per minute) applies.
    assert_eq!(status("/no-defaults").await, StatusCode::OK);
    assert_eq!(status("/no-defaults").await, StatusCode::OK);
    assert_eq!(status("/no-defaults").await, StatusCode::OK);
    assert_eq!(status("/no-defaults").await, StatusCode::TOO_MANY_REQUESTS);
}

#[actix_web::test]
async fn defaults_on_undecorated_routes_from_their_first_request() {
    let clock = clock();
    let limiter = Limiter::builder()
        .clock(clock.clone())
        .default_limits("2 per minute")
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter)
            .route("/a", web::get().to(|| async { "a" }))
            .route("/items/{id}", web::get().to(|| async { "item" })),
    )
    .await;
    let status = get_status!(app);
    assert_eq!(status("/a").await, StatusCode::OK);
    assert_eq!(status("/a").await, StatusCode::OK);
    assert_eq!(status("/a").await, StatusCode::TOO_MANY_REQUESTS);
    // Defaults count per route: /items/{id} has its own bucket, shared by every id.
    assert_eq!(status("/items/1").await, StatusCode::OK);
    assert_eq!(status("/items/2").await, StatusCode::OK);
    assert_eq!(status("/items/3").await, StatusCode::TOO_MANY_REQUESTS);
    // A 404 is not charged the defaults.
    for _ in 0..4 {
        assert_eq!(status("/nowhere").await, StatusCode::NOT_FOUND);
    }
}

#[get("/get-only")]
async fn get_only() -> &'static str {
    "get"
}

#[get("/items/{id}/tag")]
async fn get_item_tag() -> &'static str {
    "tag"
}

#[limit("10 per minute")]
async fn versioned() -> &'static str {
    "v2"
}

#[actix_web::test]
async fn requests_no_route_takes_are_charged_the_application_limits_only() {
    // A 404 from a guard (`#[get]` puts one on its resource) reached no route: only the
    // application limits apply, as for a path no pattern matches, from the first such
    // request on. A handler's own 404 is an answer of its route, charged as any, and so is a
    // 405 (a resource's looks like a handler's own).
    let clock = clock();
    let limiter = Limiter::builder()
        .clock(clock.clone())
        .default_limits("1 per minute")
        .application_limits("100 per minute")
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter.clone())
            .service(get_only)
            .service(get_item_tag)
            .service(web::resource("/get-by-hand").route(web::get().to(|| async { "get" })))
            .service(
                web::resource("/versioned")
                    .guard(actix_web::guard::Header("x-version", "2"))
                    .route(web::get().to(versioned)),
            )
            .route(
                "/gone",
                web::get().to(|| async { HttpResponse::NotFound().finish() }),
            ),
    )
    .await;
    let call = |method: Method, uri: &'static str| {
        let app = &app;
        async move {
            let req = TestRequest::default()
                .method(method)
                .uri(uri)
                .peer_addr(peer("10.0.0.1"));
            status_of(app, req.to_request()).await
        }
    };
    let application = || remaining_at(&limiter, &clock, "10.0.0.1", "global", "100 per minute");
    for round in 1..=2 {
        assert_eq!(call(Method::POST, "/get-only").await, StatusCode::NOT_FOUND);
        assert_eq!(
            call(Method::HEAD, "/items/7/tag").await,
            StatusCode::NOT_FOUND
        );
        assert_eq!(application(), 100 - 2 * round, "round {round}");
    }
    // The routes' default limits are untouched: each admits its one request.
    for uri in ["/get-only", "/items/7/tag"] {
        assert_eq!(call(Method::GET, uri).await, StatusCode::OK, "{uri}");
        assert_eq!(
            call(Method::GET, uri).await,
            StatusCode::TOO_MANY_REQUESTS,
            "{uri}"
        );
    }
    for (method, uri, answer) in [
        (Method::GET, "/gone", StatusCode::NOT_FOUND),
        (Method::POST, "/get-by-hand", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        assert_eq!(call(method.clone(), uri).await, answer, "{uri}");
        assert_eq!(
            call(method, uri).await,
            StatusCode::TOO_MANY_REQUESTS,
            "{uri}"
        );
    }
    // A pattern seen unrouted, then reaching its decorated handler: the application limits
    // the middleware charged are given back by the wrapper, which charges them once.
    assert_eq!(call(Method::GET, "/versioned").await, StatusCode::NOT_FOUND);
    let before = application();
    let v2 = get_from("/versioned", "10.0.0.1").insert_header(("x-version", "2"));
    assert_eq!(status_of(&app, v2.to_request()).await, StatusCode::OK);
    assert_eq!(application(), before - 1);
}

#[get("/decorated")]
#[limit("3 per minute")]
async fn decorated() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn decorated_routes_are_never_charged_the_defaults() {
    let limiter = Limiter::builder()
        .clock(clock())
        .default_limits("1 per minute")
        .build()
        .unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(decorated)).await;
    // The first request finds the route unknown (charged defaults before routing, refunded by
    // the wrapper); later ones are deferred to the wrapper. Either way: 3 per minute, not 1.
    for _ in 0..3 {
        let res = test::call_service(&app, get_from("/decorated", "10.0.0.1").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = test::call_service(&app, get_from("/decorated", "10.0.0.1").to_request()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body(res).await, "3 per 1 minute");
}

#[get("/with-defaults")]
#[limit("5 per minute", override_defaults = false)]
async fn with_defaults() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn override_defaults_false_keeps_the_defaults() {
    let limiter = Limiter::builder()
        .clock(clock())
        .default_limits("2 per minute")
        .build()
        .unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(with_defaults)).await;
    let call = || test::call_service(&app, get_from("/with-defaults", "10.0.0.1").to_request());
    assert_eq!(call().await.status(), StatusCode::OK);
    assert_eq!(call().await.status(), StatusCode::OK);
    let res = call().await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body(res).await, "2 per 1 minute");
}

#[get("/items/{id}")]
#[limit("5 per minute", override_defaults = false)]
async fn item_with_defaults() -> &'static str {
    "ok"
}

/// The defaults a wrapper adds count in the same per-route bucket as the middleware's: on a
/// static route and on a pattern (shared by every path it matches), from the first request
/// (charged before routing, then given back) to the learned ones.
#[actix_web::test]
async fn defaults_added_by_a_wrapper_count_per_route() {
    let limiter = Limiter::builder()
        .clock(clock())
        .default_limits("3 per minute")
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter)
            .service(with_defaults)
            .service(item_with_defaults),
    )
    .await;
    let call = get_status!(app);
    for uri in ["/items/1", "/items/2", "/items/3"] {
        assert_eq!(call(uri).await, StatusCode::OK, "{uri}");
    }
    assert_eq!(call("/items/4").await, StatusCode::TOO_MANY_REQUESTS);
    // Another route has its own bucket.
    for _ in 0..3 {
        assert_eq!(call("/with-defaults").await, StatusCode::OK);
    }
    assert_eq!(call("/with-defaults").await, StatusCode::TOO_MANY_REQUESTS);
}

#[get("/one")]
#[limit("10 per minute")]
async fn one() -> &'static str {
    "one"
}

#[get("/two")]
#[limit("10 per minute")]
async fn two() -> &'static str {
    "two"
}

#[actix_web::test]
async fn application_limits_are_shared_across_routes() {
    let limiter = Limiter::builder()
        .clock(clock())
        .application_limits("3 per minute")
        .default_error_message("global quota")
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter)
            .service(one)
            .service(two)
            .route("/plain", web::get().to(|| async { "plain" })),
    )
    .await;
    let status = get_status!(app);
    assert_eq!(status("/one").await, StatusCode::OK);
    assert_eq!(status("/two").await, StatusCode::OK);
    assert_eq!(status("/plain").await, StatusCode::OK);
    assert_eq!(status("/one").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(status("/two").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(status("/plain").await, StatusCode::TOO_MANY_REQUESTS);
    // Even a 404 counts against the application limits.
    assert_eq!(status("/nowhere").await, StatusCode::TOO_MANY_REQUESTS);
    // Another client is untouched.
    let other = test::call_service(&app, get_from("/one", "10.0.0.2").to_request()).await;
    assert_eq!(other.status(), StatusCode::OK);
}

#[get("/public")]
#[limit("2 per minute", error_message = "route limit")]
async fn public() -> &'static str {
    "public"
}

#[actix_web::test]
async fn route_limit_reported_before_the_global_one() {
    let limiter = Limiter::builder()
        .clock(clock())
        .application_limits("2 per day")
        .default_error_message("global limit")
        .build()
        .unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(public)).await;
    let call = || test::call_service(&app, get_from("/public", "10.0.0.1").to_request());
    assert_eq!(call().await.status(), StatusCode::OK);
    assert_eq!(call().await.status(), StatusCode::OK);
    // Both are breached now: the route's limit is the one reported; Retry-After waits for both.
    let res = call().await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), Some("86400"));
    assert_eq!(body(res).await, "route limit");
}

#[route("/m", method = "GET", method = "POST", method = "PUT")]
#[limit("1 per minute", methods = [POST, "put"])]
async fn methods_only() -> &'static str {
    "ok"
}

#[route("/pm", method = "GET", method = "POST")]
#[limit("1 per minute", per_method)]
async fn per_method() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn methods_and_per_method() {
    let limiter = Limiter::builder().clock(clock()).build().unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter)
            .service(methods_only)
            .service(per_method),
    )
    .await;
    let call = |method: Method, uri: &'static str| {
        let app = &app;
        async move {
            let req = TestRequest::default()
                .method(method)
                .uri(uri)
                .peer_addr(peer("10.0.0.1"));
            status_of(app, req.to_request()).await
        }
    };
    // GET is not limited.
    for _ in 0..3 {
        assert_eq!(call(Method::GET, "/m").await, StatusCode::OK);
    }
    // POST and PUT share one bucket.
    assert_eq!(call(Method::POST, "/m").await, StatusCode::OK);
    assert_eq!(call(Method::PUT, "/m").await, StatusCode::TOO_MANY_REQUESTS);
    // per_method: one bucket per method.
    assert_eq!(call(Method::GET, "/pm").await, StatusCode::OK);
    assert_eq!(call(Method::POST, "/pm").await, StatusCode::OK);
    assert_eq!(
        call(Method::GET, "/pm").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        call(Method::POST, "/pm").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

fn heavy_cost(req: &HttpRequest) -> u32 {
    if req.query_string().contains("heavy") {
        3
    } else {
        1
    }
}

#[get("/cost")]
#[limit("5 per minute", cost = 2)]
async fn fixed_cost() -> &'static str {
    "ok"
}

#[get("/dyncost")]
#[limit("5 per minute", cost = heavy_cost)]
async fn dynamic_cost() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn cost() {
    let limiter = Limiter::builder()
        .clock(clock())
        .headers(Headers::XRateLimit)
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter)
            .service(fixed_cost)
            .service(dynamic_cost),
    )
    .await;
    let call = |uri: &'static str| {
        let app = &app;
        async move { test::call_service(app, get_from(uri, "10.0.0.1").to_request()).await }
    };
    let res = call("/cost").await;
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("3"));
    let res = call("/cost").await;
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("1"));
    // 1 left, a hit costs 2.
    assert_eq!(call("/cost").await.status(), StatusCode::TOO_MANY_REQUESTS);

    assert_eq!(call("/dyncost?heavy").await.status(), StatusCode::OK);
    assert_eq!(call("/dyncost").await.status(), StatusCode::OK);
    assert_eq!(
        call("/dyncost?heavy").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(call("/dyncost").await.status(), StatusCode::OK);
}

fn only_errors(res: &HttpResponse) -> bool {
    res.status().is_client_error() || res.status().is_server_error()
}

/// A login's answer: 200 for `good`, 401 otherwise.
fn login_outcome(outcome: &str) -> HttpResponse {
    if outcome == "good" {
        HttpResponse::Ok().finish()
    } else {
        HttpResponse::Unauthorized().finish()
    }
}

#[get("/login/{outcome}")]
#[limit("2 per minute", deduct_when = only_errors)]
async fn login(path: web::Path<String>) -> HttpResponse {
    login_outcome(&path)
}

#[actix_web::test]
async fn deduct_when_charges_only_matching_responses() {
    let limiter = Limiter::builder().clock(clock()).build().unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(login)).await;
    let call = get_status!(app);
    for _ in 0..5 {
        assert_eq!(call("/login/good").await, StatusCode::OK);
    }
    assert_eq!(call("/login/bad").await, StatusCode::UNAUTHORIZED);
    assert_eq!(call("/login/bad").await, StatusCode::UNAUTHORIZED);
    assert_eq!(call("/login/bad").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(call("/login/good").await, StatusCode::TOO_MANY_REQUESTS);
}

/// A slow login: the clock moves 100 ms while the handler runs.
#[get("/slow-login/{outcome}")]
#[limit("10 per second", strategy = "sliding-window-counter", cost = 10, deduct_when = only_errors)]
async fn slow_login(path: web::Path<String>, clock: web::Data<ManualClock>) -> HttpResponse {
    clock.advance(Duration::from_millis(100));
    login_outcome(&path)
}

#[actix_web::test]
async fn a_refund_that_comes_after_its_bucket_ended_gives_the_hits_back() {
    let clock = clock();
    let limiter = Limiter::builder().clock(clock.clone()).build().unwrap();
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(clock.clone()))
            .wrap(limiter)
            .service(slow_login),
    )
    .await;
    let call = get_status!(app);
    // The good login (which does not count) is charged at 0.95 s, in the first bucket, and
    // given back at 1.05 s, in the next, where the sliding window still weighs the first
    // bucket: the refund must reach it, or 9 of its 10 units would still count.
    clock.advance(Duration::from_millis(950));
    assert_eq!(call("/slow-login/good").await, StatusCode::OK);
    assert_eq!(call("/slow-login/bad").await, StatusCode::UNAUTHORIZED);
    assert_eq!(call("/slow-login/bad").await, StatusCode::TOO_MANY_REQUESTS);
}

#[actix_web::test]
async fn deduct_when_headers_count_the_refund() {
    let limiter = Limiter::builder()
        .clock(clock())
        .headers(Headers::XRateLimit)
        .build()
        .unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(login)).await;
    let remaining = |uri: &'static str| {
        let app = &app;
        async move {
            let res = test::call_service(app, get_from(uri, "10.0.0.2").to_request()).await;
            res.headers()
                .get("x-ratelimit-remaining")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        }
    };
    // A response the limit does not count is given back: both hits are still left.
    assert_eq!(remaining("/login/good").await, "2");
    assert_eq!(remaining("/login/bad").await, "1");
    assert_eq!(remaining("/login/good").await, "1");
    assert_eq!(remaining("/login/bad").await, "0");
}

fn is_internal(req: &HttpRequest) -> bool {
    req.headers().contains_key("x-internal")
}

#[get("/exempt-when")]
#[limit("1 per minute", exempt_when = is_internal)]
async fn exempt_when() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn exempt_when_skips_the_limit() {
    let limiter = Limiter::builder().clock(clock()).build().unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(exempt_when)).await;
    for _ in 0..3 {
        let req = get_from("/exempt-when", "10.0.0.1")
            .insert_header(("x-internal", "1"))
            .to_request();
        assert_eq!(status_of(&app, req).await, StatusCode::OK);
    }
    let call = || test::call_service(&app, get_from("/exempt-when", "10.0.0.1").to_request());
    assert_eq!(call().await.status(), StatusCode::OK);
    assert_eq!(call().await.status(), StatusCode::TOO_MANY_REQUESTS);
}

fn plan_rate(req: &HttpRequest) -> &'static str {
    match req.headers().get("x-plan").map(|v| v.as_bytes()) {
        Some(b"pro") => "3 per minute",
        _ => "1 per minute",
    }
}

#[get("/plan")]
#[limit(dynamic = plan_rate)]
async fn plan_route() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn dynamic_limits() {
    let limiter = Limiter::builder().clock(clock()).build().unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(plan_route)).await;
    let call = |plan: &'static str, ip: &'static str| {
        let app = &app;
        async move {
            let req = get_from("/plan", ip)
                .insert_header(("x-plan", plan))
                .to_request();
            test::call_service(app, req).await
        }
    };
    assert_eq!(call("free", "10.0.0.1").await.status(), StatusCode::OK);
    let res = call("free", "10.0.0.1").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body(res).await, "1 per 1 minute");
    for _ in 0..3 {
        assert_eq!(call("pro", "10.0.0.2").await.status(), StatusCode::OK);
    }
    let res = call("pro", "10.0.0.2").await;
    assert_eq!(body(res).await, "3 per 1 minute");
}

#[get("/shared-a")]
#[limit("3 per minute", shared = "search")]
async fn shared_a() -> &'static str {
    "a"
}

#[get("/shared-b")]
#[limit("3 per minute", shared = "search")]
async fn shared_b() -> &'static str {
    "b"
}

#[actix_web::test]
async fn shared_scopes_share_one_bucket() {
    let limiter = Limiter::builder().clock(clock()).build().unwrap();
    let app =
        test::init_service(App::new().wrap(limiter).service(shared_a).service(shared_b)).await;
    let call = get_status!(app);
    assert_eq!(call("/shared-a").await, StatusCode::OK);
    assert_eq!(call("/shared-b").await, StatusCode::OK);
    assert_eq!(call("/shared-a").await, StatusCode::OK);
    assert_eq!(call("/shared-b").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(call("/shared-a").await, StatusCode::TOO_MANY_REQUESTS);
}

fn teapot(_: &HttpRequest, breach: &Breach) -> HttpResponse {
    HttpResponse::ImATeapot().body(format!(
        "slow down: {} (retry in {}s)",
        breach.limit(),
        breach.retry_after().as_secs()
    ))
}

#[get("/breach")]
#[limit("1 per minute", on_breach = teapot)]
async fn breach_route() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn on_breach_responses() {
    let limiter = Limiter::builder()
        .clock(clock())
        .on_breach(|_, breach| {
            HttpResponse::TooManyRequests().json(serde_json::json!({"error": breach.message()}))
        })
        .build()
        .unwrap();
    let app =
        test::init_service(App::new().wrap(limiter).service(breach_route).service(slow)).await;
    let call = |uri: &'static str| {
        let app = &app;
        async move { test::call_service(app, get_from(uri, "10.0.0.1").to_request()).await }
    };
    call("/breach").await;
    let res = call("/breach").await;
    assert_eq!(res.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(header(&res, "retry-after"), Some("60"));
    assert_eq!(body(res).await, "slow down: 1 per 1 minute (retry in 60s)");
    // The limiter's on_breach for every other limit.
    call("/slow").await;
    let res = call("/slow").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), Some("60"));
    assert_eq!(body(res).await, r#"{"error":"1 per 1 minute"}"#);
}

#[derive(serde::Deserialize)]
struct Upload {
    name: String,
}

#[post("/upload")]
#[limit("1 per minute")]
async fn upload(body: web::Json<Upload>) -> String {
    format!("got {}", body.name)
}

#[actix_web::test]
async fn rejected_request_never_reads_its_body() {
    let limiter = Limiter::builder().clock(clock()).build().unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(upload)).await;
    let res = test::call_service(
        &app,
        TestRequest::post()
            .uri("/upload")
            .peer_addr(peer("10.0.0.1"))
            .set_json(serde_json::json!({"name": "a"}))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body(res).await, "got a");
    // Invalid JSON: had the body been read, this would be a 400.
    let res = test::call_service(
        &app,
        TestRequest::post()
            .uri("/upload")
            .peer_addr(peer("10.0.0.1"))
            .insert_header(("content-type", "application/json"))
            .set_payload("{not json")
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // And an admitted request with a bad body gets the extractor's error.
    let res = test::call_service(
        &app,
        TestRequest::post()
            .uri("/upload")
            .peer_addr(peer("10.0.0.2"))
            .insert_header(("content-type", "application/json"))
            .set_payload("{not json")
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[limit("2 per minute")]
async fn by_hand(path: web::Path<u32>) -> String {
    format!("item {path}")
}

#[actix_web::test]
async fn manual_registration() {
    let limiter = Limiter::builder().clock(clock()).build().unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter)
            .route("/hand/{id}", web::get().to(by_hand)),
    )
    .await;
    let res = test::call_service(&app, get_from("/hand/7", "10.0.0.1").to_request()).await;
    assert_eq!(body(res).await, "item 7");
    let res = test::call_service(&app, get_from("/hand/8", "10.0.0.1").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = test::call_service(&app, get_from("/hand/9", "10.0.0.1").to_request()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[actix_web::test]
async fn forwarded_headers_only_from_trusted_proxies() {
    let limiter = Limiter::builder()
        .clock(clock())
        .trusted_proxies(["10.0.0.0/8"])
        .build()
        .unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(slow)).await;
    let via = |peer_ip: &str, xff: &str| {
        get_from("/slow", peer_ip)
            .insert_header(("x-forwarded-for", xff.to_string()))
            .to_request()
    };
    // Untrusted peer: its header is ignored, the peer is the client.
    assert_eq!(
        status_of(&app, via("203.0.113.5", "198.51.100.1")).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&app, via("203.0.113.5", "198.51.100.2")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Trusted proxy: the rightmost untrusted hop is the client (a spoofed left entry is ignored).
    assert_eq!(
        status_of(&app, via("10.0.0.1", "1.1.1.1, 198.51.100.7, 10.0.0.2")).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&app, via("10.0.0.3", "9.9.9.9, 198.51.100.7")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status_of(&app, via("10.0.0.1", "198.51.100.8")).await,
        StatusCode::OK
    );
    // A garbage header falls back to the peer.
    assert_eq!(
        status_of(&app, via("10.0.0.4", "not an address")).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&app, via("10.0.0.4", "garbage")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// A request to `/slow` (1 per minute) from `peer`, with `headers` (any bytes).
fn slow_from(peer: &str, headers: &[(&str, &[u8])]) -> TestRequest {
    let mut req = get_from("/slow", peer);
    for (name, value) in headers {
        let value = actix_web::http::header::HeaderValue::from_bytes(value).unwrap();
        req = req.insert_header((*name, value));
    }
    req
}

/// The status `app` answers [`slow_from`]`(peer, headers)` with.
macro_rules! slow_status {
    ($app:expr, $peer:expr, $headers:expr) => {
        status_of($app, slow_from($peer, $headers).to_request()).await
    };
}

#[actix_web::test]
async fn only_the_configured_proxy_header_is_believed() {
    // The default: X-Forwarded-For. A Forwarded header is the client's own, passed through.
    let limiter = Limiter::builder()
        .clock(clock())
        .trusted_proxies(["10.0.0.0/8"])
        .build()
        .unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(slow)).await;
    let xff: (&str, &[u8]) = ("x-forwarded-for", b"203.0.113.5");
    let spoofed: [&[u8]; 2] = [b"for=1.1.1.1", b"for=2.2.2.2"];
    let first = slow_status!(&app, "10.0.0.1", &[xff, ("forwarded", spoofed[0])]);
    assert_eq!(first, StatusCode::OK);
    let second = slow_status!(&app, "10.0.0.1", &[xff, ("forwarded", spoofed[1])]);
    assert_eq!(second, StatusCode::TOO_MANY_REQUESTS);

    // Configured for Forwarded: its `for=` is the client, through any trusted proxy, and a
    // client's X-Forwarded-For changes nothing.
    let limiter = Limiter::builder()
        .clock(clock())
        .trusted_proxies(["10.0.0.0/8"])
        .proxy_header(ProxyHeader::Forwarded)
        .build()
        .unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(slow)).await;
    let forwarded: (&str, &[u8]) = ("forwarded", b"for=\"[2001:db8::1]:4711\";proto=https");
    let via_one = slow_status!(
        &app,
        "10.0.0.1",
        &[forwarded, ("x-forwarded-for", b"9.9.9.1")]
    );
    assert_eq!(via_one, StatusCode::OK);
    let via_other = slow_status!(
        &app,
        "10.0.0.9",
        &[forwarded, ("x-forwarded-for", b"9.9.9.2")]
    );
    assert_eq!(
        via_other,
        StatusCode::TOO_MANY_REQUESTS,
        "the same client, another proxy"
    );
    let proxy_itself = slow_status!(&app, "10.0.0.1", &[]);
    assert_eq!(proxy_itself, StatusCode::OK, "the proxy is another client");
}

#[actix_web::test]
async fn bytes_left_of_the_client_in_a_forwarding_header_change_nothing() {
    let limiter = Limiter::builder()
        .clock(clock())
        .trusted_proxies(["10.0.0.0/8"])
        .build()
        .unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(slow)).await;
    // The proxy appended the client's address to what the client sent (not text): still the
    // client 203.0.113.5, not the proxy.
    let junk: (&str, &[u8]) = ("x-forwarded-for", b"\xc3\xa9, 203.0.113.5");
    assert_eq!(slow_status!(&app, "10.0.0.1", &[junk]), StatusCode::OK);
    let plain: (&str, &[u8]) = ("x-forwarded-for", b"203.0.113.5");
    let again = slow_status!(&app, "10.0.0.1", &[plain]);
    assert_eq!(again, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(slow_status!(&app, "10.0.0.1", &[]), StatusCode::OK);
}

fn api_key_or_address(req: &HttpRequest) -> Option<String> {
    api_key(req)
        .map(str::to_owned)
        .or_else(|| limiter_actix::remote_address(req))
}

#[actix_web::test]
async fn remote_address_sees_through_trusted_proxies() {
    let limiter = Limiter::builder()
        .clock(clock())
        .trusted_proxies(["10.0.0.0/8"])
        .key_fn(api_key_or_address)
        .build()
        .unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(slow)).await;
    // Two clients behind one proxy: a bucket each, not the proxy's.
    let alice: (&str, &[u8]) = ("x-forwarded-for", b"198.51.100.1");
    let bob: (&str, &[u8]) = ("x-forwarded-for", b"198.51.100.2");
    assert_eq!(slow_status!(&app, "10.0.0.1", &[alice]), StatusCode::OK);
    assert_eq!(slow_status!(&app, "10.0.0.1", &[bob]), StatusCode::OK);
    let again = slow_status!(&app, "10.0.0.1", &[alice]);
    assert_eq!(again, StatusCode::TOO_MANY_REQUESTS);
}

#[actix_web::test]
async fn remote_address_sees_through_trusted_proxies_before_routing() {
    // On a plain route the key function runs in the middleware, before routing: there too
    // each client behind the proxy has its own application bucket, not the proxy's.
    let limiter = Limiter::builder()
        .clock(clock())
        .trusted_proxies(["10.0.0.0/8"])
        .key_fn(api_key_or_address)
        .application_limits("1 per minute")
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter)
            .route("/slow", web::get().to(plain)),
    )
    .await;
    let alice: (&str, &[u8]) = ("x-forwarded-for", b"198.51.100.1");
    let bob: (&str, &[u8]) = ("x-forwarded-for", b"198.51.100.2");
    assert_eq!(slow_status!(&app, "10.0.0.1", &[alice]), StatusCode::OK);
    assert_eq!(slow_status!(&app, "10.0.0.1", &[bob]), StatusCode::OK);
    let again = slow_status!(&app, "10.0.0.1", &[alice]);
    assert_eq!(again, StatusCode::TOO_MANY_REQUESTS);
}

#[actix_web::test]
async fn ipv6_clients_in_one_64_share_a_bucket() {
    let limiter = Limiter::builder().clock(clock()).build().unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(slow)).await;
    let call = |ip: &'static str| {
        let app = &app;
        async move { status_of(app, get_from("/slow", ip).to_request()).await }
    };
    assert_eq!(call("2001:db8:1:2::1").await, StatusCode::OK);
    assert_eq!(
        call("2001:db8:1:2:ffff:eeee:dddd:cccc").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(call("2001:db8:1:3::1").await, StatusCode::OK);
    // IPv4-mapped addresses are their IPv4 client.
    assert_eq!(call("192.0.2.1").await, StatusCode::OK);
    assert_eq!(
        call("::ffff:192.0.2.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[actix_web::test]
async fn decorated_handler_without_limiter_answers_500() {
    let app = test::init_service(App::new().service(slow)).await;
    let res = test::call_service(&app, get_from("/slow", "10.0.0.1").to_request()).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

/// Whether the handler finds the `Limiter` in its app data.
fn limiter_in_app_data(req: &HttpRequest) -> &'static str {
    match req.app_data::<Limiter>() {
        Some(_) => "found",
        None => "missing",
    }
}

#[get("/decorated-sees")]
#[limit("10 per minute")]
async fn decorated_sees(req: HttpRequest) -> &'static str {
    limiter_in_app_data(&req)
}

#[actix_web::test]
async fn handlers_find_the_limiter_in_app_data_on_every_path() {
    let limiter = Limiter::builder()
        .clock(clock())
        .default_limits("10 per minute")
        .request_filter(|req| req.peer_addr().is_some_and(|a| a.ip().is_loopback()))
        .build()
        .unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(decorated_sees).route(
        "/plain-sees",
        web::get().to(|req: HttpRequest| async move { limiter_in_app_data(&req) }),
    ))
    .await;
    // Charged by the middleware (plain), charged then refunded by a wrapper the table did
    // not know yet, decided by the wrapper alone, and let through by the request filter.
    for (uri, ip) in [
        ("/plain-sees", "10.0.0.1"),
        ("/decorated-sees", "10.0.0.1"),
        ("/decorated-sees", "10.0.0.1"),
        ("/plain-sees", "127.0.0.1"),
    ] {
        let res = test::call_service(&app, get_from(uri, ip).to_request()).await;
        assert_eq!(res.status(), StatusCode::OK, "{uri} from {ip}");
        assert_eq!(body(res).await, "found", "{uri} from {ip}");
    }
}

#[actix_web::test]
async fn enabled_switch_and_request_filter() {
    let disabled = Limiter::builder()
        .clock(clock())
        .enabled(false)
        .default_limits("1 per minute")
        .build()
        .unwrap();
    let loopback_exempt = Limiter::builder()
        .clock(clock())
        .default_limits("1 per minute")
        .request_filter(|req| req.peer_addr().is_some_and(|a| a.ip().is_loopback()))
        .build()
        .unwrap();
    // Each limiter, a client it never limits, and what another client's second request gets.
    for (limiter, unlimited, second_of_another) in [
        (disabled, "10.0.0.1", StatusCode::OK),
        (loopback_exempt, "127.0.0.1", StatusCode::TOO_MANY_REQUESTS),
    ] {
        let app = test::init_service(
            App::new()
                .wrap(limiter)
                .service(slow)
                .route("/p", web::get().to(|| async { "p" })),
        )
        .await;
        for uri in ["/slow", "/slow", "/p", "/p"] {
            let status = status_of(&app, get_from(uri, unlimited).to_request()).await;
            assert_eq!(status, StatusCode::OK, "{unlimited} {uri}");
        }
        let another = || get_from("/p", "10.0.0.2").to_request();
        assert_eq!(status_of(&app, another()).await, StatusCode::OK);
        assert_eq!(status_of(&app, another()).await, second_of_another);
    }
}

#[actix_web::test]
async fn build_rejects_bad_values_naming_them() {
    let err = |b: limiter_actix::LimiterBuilder| b.build().unwrap_err().to_string();
    assert!(
        err(Limiter::builder().default_limits("1 per minit")).contains("did you mean \"minute\"")
    );
    assert!(err(Limiter::builder().application_limits("x")).contains("application limits"));
    assert!(err(Limiter::builder().strategy("leaky-bucket")).contains("\"leaky-bucket\""));
    assert!(err(Limiter::builder().storage_uri("mongodb://x")).contains("mongodb"));
    assert!(err(Limiter::builder().trusted_proxies(["10.0.0.0/99"])).contains("10.0.0.0/99"));
    assert!(err(Limiter::builder().header_names("bad name", "b", "c")).contains("bad name"));
    assert!(err(Limiter::builder().storage_failure_status(StatusCode::OK)).contains("200"));
    assert!(err(Limiter::builder().key_prefix("app{1}")).contains("key_prefix"));
    // A storage URI's key_prefix is held to the same rule (nothing connects at start-up).
    assert!(
        err(Limiter::builder().storage_uri("redis://127.0.0.1:1/0?key_prefix=app{1}"))
            .contains("invalid key_prefix \"app{1}\"")
    );
}

#[actix_web::test]
async fn decorated_and_plain_routes_learned_under_one_middleware() {
    // Many requests across plain, decorated and overlapping routes: counts stay exact.
    let limiter = Limiter::builder()
        .clock(clock())
        .default_limits("2 per minute")
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter)
            .service(decorated)
            .route("/plain", web::get().to(|| async { "plain" })),
    )
    .await;
    let call = get_status!(app);
    assert_eq!(call("/plain").await, StatusCode::OK);
    assert_eq!(call("/decorated").await, StatusCode::OK);
    assert_eq!(call("/plain").await, StatusCode::OK);
    assert_eq!(call("/decorated").await, StatusCode::OK);
    assert_eq!(call("/plain").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(call("/decorated").await, StatusCode::OK);
    assert_eq!(call("/decorated").await, StatusCode::TOO_MANY_REQUESTS);
}

#[get("/api/data")]
#[limit("5 per minute")]
async fn api_data() -> &'static str {
    "data"
}

#[actix_web::test]
async fn moving_window_as_the_article_describes() {
    let clock = clock();
    let limiter = Limiter::builder()
        .clock(clock.clone())
        .strategy("moving-window")
        .build()
        .unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(api_data)).await;
    let call = || test::call_service(&app, get_from("/api/data", "10.0.0.1").to_request());
    // 5 requests at 00:00:01...
    clock.advance(Duration::from_secs(1));
    for _ in 0..5 {
        assert_eq!(call().await.status(), StatusCode::OK);
    }
    // ...a 6th at 00:00:59 is denied...
    clock.advance(Duration::from_secs(58));
    let sixth = call().await;
    assert_eq!(sixth.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&sixth, "retry-after"), Some("2"));
    // ...and still at 00:01:00, when a fixed window would have reset.
    clock.advance(Duration::from_secs(1));
    assert_eq!(call().await.status(), StatusCode::TOO_MANY_REQUESTS);
    // At 00:01:02 the first five have left the window.
    clock.advance(Duration::from_secs(2));
    assert_eq!(call().await.status(), StatusCode::OK);
}

#[get("/strict")]
#[limit("2 per minute", strategy = "fixed-window-elastic-expiry")]
async fn strict() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn per_limit_strategy() {
    let clock = clock();
    let limiter = Limiter::builder().clock(clock.clone()).build().unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(strict)).await;
    let call = || test::call_service(&app, get_from("/strict", "10.0.0.1").to_request());
    assert_eq!(call().await.status(), StatusCode::OK);
    assert_eq!(call().await.status(), StatusCode::OK);
    // Hammering keeps pushing the window's end: 50 s later it is still closed.
    clock.advance(Duration::from_secs(50));
    assert_eq!(call().await.status(), StatusCode::TOO_MANY_REQUESTS);
    clock.advance(Duration::from_secs(50));
    assert_eq!(call().await.status(), StatusCode::TOO_MANY_REQUESTS);
    clock.advance(Duration::from_secs(61));
    assert_eq!(call().await.status(), StatusCode::OK);
}

#[limit("2 per minute")]
async fn guarded() -> &'static str {
    "guarded"
}

#[actix_web::test]
async fn ambiguous_routes_charged_before_routing_and_refunded_by_the_wrapper() {
    let limiter = Limiter::builder()
        .clock(clock())
        .default_limits("5 per minute")
        .build()
        .unwrap();
    // Same method and pattern, told apart by a guard: one decorated, one plain.
    let app = guarded::guarded_pair(limiter, guarded).await;
    let call = |v2: bool| guarded::call(&app, get_from("/amb", "10.0.0.1"), v2);
    assert_eq!(call(true).await, (StatusCode::OK, "guarded".into()));
    assert_eq!(call(true).await, (StatusCode::OK, "guarded".into()));
    // The plain route: the pattern is now ambiguous.
    assert_eq!(call(false).await, (StatusCode::OK, "plain".into()));
    // The decorated one is still held to its own limit only...
    assert_eq!(
        call(true).await,
        (StatusCode::TOO_MANY_REQUESTS, "2 per 1 minute".into())
    );
    // ...and what the middleware charged it before routing was given back: the plain route
    // has 4 of its 5 default hits left.
    for _ in 0..4 {
        assert_eq!(call(false).await, (StatusCode::OK, "plain".into()));
    }
    assert_eq!(
        call(false).await,
        (StatusCode::TOO_MANY_REQUESTS, "5 per 1 minute".into())
    );
}

#[get("/guarded/{id}")]
#[limit("10 per minute")]
async fn behind_auth_pattern() -> &'static str {
    "pattern"
}

#[actix_web::test]
async fn requests_an_inner_middleware_fails_still_count_against_application_limits() {
    for uri in ["/one", "/guarded/7"] {
        let clock = clock();
        let limiter = Limiter::builder()
            .clock(clock.clone())
            .application_limits("4 per minute")
            .build()
            .unwrap();
        let app = app_behind_auth(limiter.clone(), (one, behind_auth_pattern)).await;
        let call = |token: bool| status_with_token(&app, get_from(uri, "10.0.0.1"), token);
        let left = || remaining_at(&limiter, &clock, "10.0.0.1", "global", "4 per minute");
        // The route decides for itself: its wrapper charges the application limit too.
        assert_eq!(call(true).await, StatusCode::OK, "{uri}");
        assert_eq!(left(), 3, "{uri}");
        // A request fails before reaching the wrapper. That one goes uncharged (nothing is
        // left to key it on); from then on the request is keyed before routing.
        assert_eq!(call(false).await, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(left(), 3, "{uri}");
        // A request that reaches the wrapper is still charged once, by the wrapper.
        assert_eq!(call(true).await, StatusCode::OK, "{uri}");
        assert_eq!(left(), 2, "{uri}");
        // So is one that fails after its wrapper ran.
        let expired = get_from(uri, "10.0.0.1").insert_header(FAILS_AFTER_THE_HANDLER);
        assert_eq!(
            status_with_token(&app, expired, false).await,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
        assert_eq!(left(), 1, "{uri}");
        // A failure is charged the application limit.
        assert_eq!(call(false).await, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(left(), 0, "{uri}");
        // Over the limit, the client is refused before the inner middleware runs.
        assert_eq!(call(false).await, StatusCode::TOO_MANY_REQUESTS, "{uri}");
        assert_eq!(call(true).await, StatusCode::TOO_MANY_REQUESTS, "{uri}");
    }
}

#[get("/x")]
#[limit("100 per minute")]
async fn scoped_roomy() -> &'static str {
    "x"
}

#[get("/z")]
#[limit("1 per minute")]
async fn scoped_strict() -> &'static str {
    "z"
}

#[actix_web::test]
async fn a_limiter_on_a_scope_and_one_on_the_app_each_apply_their_limits() {
    // The scope's limiter owns the `#[limit]`s inside it; the app's still charges its
    // application limits to every request it sees, decorated routes in the scope included.
    let outer = Limiter::builder()
        .clock(clock())
        .application_limits("3 per minute")
        .build()
        .unwrap();
    let scoped = Limiter::builder().clock(clock()).build().unwrap();
    let app = test::init_service(
        App::new().wrap(outer).service(
            web::scope("/api")
                .wrap(scoped)
                .service(scoped_roomy)
                .service(scoped_strict),
        ),
    )
    .await;
    let status = get_status!(app);
    let mut got = Vec::new();
    for uri in ["/api/z", "/api/z", "/api/x", "/api/x"] {
        got.push(status(uri).await.as_u16());
    }
    // The second `/api/z` is over its route limit (and the app's limiter counted it: the
    // two limiters decide apart); the second `/api/x` is the app's fourth request.
    assert_eq!(got, [200, 429, 200, 429]);
}

#[actix_web::test]
async fn failures_before_a_decorated_handler_are_not_charged_its_default_limits() {
    // `/one` has its own limit, so the default limits are not its: failures before its
    // wrapper count against the application limits only, and never refuse the route.
    let limiter = Limiter::builder()
        .clock(clock())
        .default_limits("1 per minute")
        .application_limits("100 per minute")
        .build()
        .unwrap();
    let app = app_behind_auth(limiter, one).await;
    let call = |token: bool| status_with_token(&app, get_from("/one", "10.0.0.1"), token);
    assert_eq!(call(true).await, StatusCode::OK);
    for _ in 0..3 {
        assert_eq!(call(false).await, StatusCode::UNAUTHORIZED);
        assert_eq!(call(true).await, StatusCode::OK);
    }
}

/// User functions named like the parameters of the code `#[limit]` writes, and attributes on a
/// decorated handler, keep their meaning.
mod names_and_attributes {
    use super::*;

    fn req(r: &HttpRequest) -> Option<&str> {
        r.headers().get("x-api-key")?.to_str().ok()
    }

    fn res(r: &HttpResponse) -> bool {
        r.status().is_success()
    }

    fn breach(_: &HttpRequest, b: &Breach) -> HttpResponse {
        HttpResponse::TooManyRequests().body(format!("over {}", b.limit()))
    }

    #[get("/names")]
    #[limit("1 per minute", key = req, deduct_when = res, on_breach = breach)]
    async fn names() -> &'static str {
        "ok"
    }

    // Deprecated for its callers; the code `#[limit]` writes must not call anything
    // deprecated itself (a warning on every build, an error here).
    #[deny(deprecated)]
    mod old {
        use limiter_actix::limit;

        #[deprecated = "use /names"]
        #[limit("5 per minute")]
        pub async fn old_names() -> &'static str {
            "old"
        }
    }

    #[actix_web::test]
    async fn user_functions_named_req_res_and_breach_are_the_ones_called() {
        let limiter = Limiter::builder().clock(clock()).build().unwrap();
        #[allow(deprecated)]
        let old = web::get().to(old::old_names);
        let app =
            test::init_service(App::new().wrap(limiter).service(names).route("/old", old)).await;
        let call = |key: &'static str| {
            let req = get_from("/names", "10.0.0.1").insert_header(("x-api-key", key));
            test::call_service(&app, req.to_request())
        };
        assert_eq!(call("k1").await.status(), StatusCode::OK);
        let res = call("k1").await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body(res).await, "over 1 per 1 minute");
        assert_eq!(call("k2").await.status(), StatusCode::OK, "keyed by `req`");
        let res = test::call_service(&app, get_from("/old", "10.0.0.1").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
}

fn misspelt_rate(_req: &HttpRequest) -> &'static str {
    "10 per minit"
}

#[get("/dynamic-misspelt")]
#[limit(dynamic = misspelt_rate)]
async fn dynamic_misspelt() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn a_dynamic_limit_that_does_not_parse_falls_back_to_the_defaults() {
    // As in Flask-Limiter: a rate string that cannot be parsed leaves the route under the
    // default limits (and logs), never under no limit at all.
    let limiter = Limiter::builder()
        .clock(clock())
        .default_limits("2 per minute")
        .build()
        .unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(dynamic_misspelt)).await;
    let call = get_status!(app);
    assert_eq!(call("/dynamic-misspelt").await, StatusCode::OK);
    assert_eq!(call("/dynamic-misspelt").await, StatusCode::OK);
    assert_eq!(
        call("/dynamic-misspelt").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

struct Items;

impl Items {
    fn name() -> &'static str {
        "items"
    }

    /// An associated function registered by hand, whose body names `Self`.
    #[limit("1 per minute")]
    async fn list(path: web::Path<u32>) -> String {
        format!("{} {path}", Self::name())
    }
}

#[actix_web::test]
async fn an_associated_handler_naming_self_is_limited() {
    let limiter = Limiter::builder().clock(clock()).build().unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter)
            .route("/items/{page}", web::get().to(Items::list)),
    )
    .await;
    let first = test::call_service(&app, get_from("/items/1", "10.0.0.1").to_request()).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(body(first).await, "items 1");
    let call = get_status!(app);
    assert_eq!(call("/items/2").await, StatusCode::TOO_MANY_REQUESTS);
}

struct Orders;

impl Orders {
    /// The same name and rate as `Items::list`, in the same module.
    #[limit("1 per minute")]
    async fn list() -> &'static str {
        "orders"
    }
}

#[actix_web::test]
async fn associated_handlers_of_one_name_in_one_module_count_apart() {
    // The default scope is the handler's: `Items::list` and `Orders::list` are two handlers,
    // two buckets, not one for every `list` of the module.
    let limiter = Limiter::builder().clock(clock()).build().unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter.clone())
            .route("/items/{page}", web::get().to(Items::list))
            .route("/orders", web::get().to(Orders::list)),
    )
    .await;
    let call = get_status!(app);
    assert_eq!(call("/items/1").await, StatusCode::OK);
    assert_eq!(call("/orders").await, StatusCode::OK);
    assert_eq!(call("/items/2").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(call("/orders").await, StatusCode::TOO_MANY_REQUESTS);
    // Under the type-qualified path, where a free function's scope stays `module::name`.
    let clock = clock();
    for scope in ["basics::Items::list", "basics::Orders::list"] {
        assert_eq!(
            remaining_at(&limiter, &clock, "10.0.0.1", scope, "1 per minute"),
            0
        );
    }
}

/// An HTTP date has four digits of year: a clock at the end of 9999 (or at the end of time)
/// whose retry lands past it is told in seconds, where formatting the date panicked.
#[actix_web::test]
async fn retry_after_past_the_year_9999_falls_back_to_seconds() {
    // 9999-12-31T23:59:30Z and the end of time: seconds; a year earlier, the date as before.
    for (start, date) in [
        (Timestamp::from_secs(253_402_300_770), None),
        (Timestamp::from_micros(u64::MAX), None),
        (
            Timestamp::from_secs(253_370_764_770),
            Some("Fri, 01 Jan 9999 00:00:00 GMT"),
        ),
    ] {
        let clock = ManualClock::new(start);
        let limiter = Limiter::builder()
            .clock(clock.clone())
            .retry_after(RetryAfter::HttpDate)
            .build()
            .unwrap();
        let app = test::init_service(App::new().wrap(limiter).service(slow)).await;
        let res = test::call_service(&app, get_from("/slow", "10.0.0.1").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
        let res = test::call_service(&app, get_from("/slow", "10.0.0.1").to_request()).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry_after = header(&res, "retry-after").unwrap();
        match date {
            Some(date) => assert_eq!(retry_after, date),
            None => {
                let secs: u64 = retry_after.parse().unwrap();
                assert!((1..=60).contains(&secs), "{secs}");
            }
        }
    }
}

/// The IETF draft (section 6): "If a response contains both the Retry-After and the RateLimit
/// header fields, the Retry-After field value SHOULD NOT reference a point in time earlier
/// than the reset parameter." Where a strategy's reset is later than the moment the request
/// would pass (GCRA's full bucket, the sliding window's bucket end), a 429's `t` is that
/// moment: more quota comes then, as its `Retry-After` says.
#[actix_web::test]
async fn ietf_reset_on_a_429_is_no_later_than_retry_after() {
    // Four hits at once, then one more: GCRA frees a unit every 15 s (the bucket is full again
    // in 60 s); the sliding window, its four hits a bucket old, lets one more pass in a second.
    for (strategy, wait, field, retry_after) in [
        ("gcra", 0, "\"default-0\";r=0;t=15", "15"),
        ("sliding-window-counter", 60, "\"default-0\";r=0;t=1", "1"),
    ] {
        let clock = clock();
        let limiter = Limiter::builder()
            .clock(clock.clone())
            .strategy(strategy)
            .headers(Headers::Ietf)
            .default_limits("4 per minute")
            .build()
            .unwrap();
        let app =
            test::init_service(App::new().wrap(limiter).route("/p", web::get().to(plain))).await;
        for _ in 0..4 {
            let res = test::call_service(&app, get_from("/p", "10.0.0.1").to_request()).await;
            assert_eq!(res.status(), StatusCode::OK, "{strategy}");
        }
        clock.advance(Duration::from_secs(wait));
        // Twice: the second refusal is known without a charge (a peek on the memory store).
        for _ in 0..2 {
            let res = test::call_service(&app, get_from("/p", "10.0.0.1").to_request()).await;
            assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{strategy}");
            assert_eq!(header(&res, "retry-after"), Some(retry_after), "{strategy}");
            assert_eq!(header(&res, "ratelimit"), Some(field), "{strategy}");
            assert_eq!(
                header(&res, "ratelimit-policy"),
                Some("\"default-0\";q=4;w=60"),
                "{strategy}"
            );
        }
        // The client waits as told, and is admitted.
        clock.advance(Duration::from_secs(retry_after.parse().unwrap()));
        let res = test::call_service(&app, get_from("/p", "10.0.0.1").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK, "{strategy}");
    }
}

/// The messages of the warnings logged on this thread while it is alive.
#[derive(Clone, Default)]
struct Warnings(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Warnings {
    fn taken(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message<'a>(&'a mut String);
        impl tracing::field::Visit for Message<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    *self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = String::new();
        event.record(&mut Message(&mut message));
        self.0.lock().unwrap().push(message);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[actix_web::test]
async fn a_path_rewritten_inside_the_limiter_is_warned_about_once() {
    // NormalizePath inside the limiter: the limiter sees `/p/`, which matches no route, and
    // cannot charge `/p`'s default limits. It says so, once, and how to register them.
    let warnings = Warnings::default();
    let _guard = tracing::subscriber::set_default(warnings.clone());
    let limiter = Limiter::builder()
        .clock(clock())
        .default_limits("1 per minute")
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(actix_web::middleware::NormalizePath::trim())
            .wrap(limiter)
            .route("/p", web::get().to(plain)),
    )
    .await;
    let get = get_status!(app);
    assert_eq!(get("/nowhere").await, StatusCode::NOT_FOUND);
    assert_eq!(get("/p").await, StatusCode::OK);
    assert_eq!(warnings.taken(), Vec::<String>::new());
    assert_eq!(get("/p/").await, StatusCode::OK);
    let warned = warnings.taken();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("route /p by a path"), "{}", warned[0]);
    assert!(
        warned[0].contains(".wrap(limiter).wrap(NormalizePath::trim())"),
        "{}",
        warned[0]
    );
    assert_eq!(get("/p//").await, StatusCode::OK);
    assert_eq!(warnings.taken(), Vec::<String>::new());

    // Registered outside the limiter, the rewrite happens first: `/p/` is `/p`, counted.
    let limiter = Limiter::builder()
        .clock(clock())
        .default_limits("1 per minute")
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter)
            .wrap(actix_web::middleware::NormalizePath::trim())
            .route("/p", web::get().to(plain)),
    )
    .await;
    let get = get_status!(app);
    assert_eq!(get("/p/").await, StatusCode::OK);
    assert_eq!(get("/p").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(warnings.taken(), Vec::<String>::new());

    // A default service that answers 200 (a single-page app's fallback) reaches no route:
    // nothing to warn about.
    let limiter = Limiter::builder().clock(clock()).build().unwrap();
    let app = test::init_service(
        App::new()
            .wrap(actix_web::middleware::NormalizePath::trim())
            .wrap(limiter)
            .route("/p", web::get().to(plain))
            .default_service(web::to(plain)),
    )
    .await;
    let get = get_status!(app);
    assert_eq!(get("/anything/else").await, StatusCode::OK);
    assert_eq!(warnings.taken(), Vec::<String>::new());
}

/// A handler declared in a function, as an app's `configure` function may.
fn nested_routes(cfg: &mut web::ServiceConfig) {
    #[limit("1 per minute")]
    async fn nested() -> &'static str {
        "nested"
    }
    cfg.route("/nested", web::get().to(nested));
}

#[actix_web::test]
async fn a_handler_declared_in_a_function_is_scoped_under_it() {
    // The default scope is the handler's path as Rust names it: a handler declared in a
    // function counts under that function's path too (in an `async fn`, its body's).
    #[limit("1 per minute")]
    async fn inner() -> &'static str {
        "inner"
    }
    let limiter = Limiter::builder().clock(clock()).build().unwrap();
    let app = test::init_service(
        App::new()
            .wrap(limiter.clone())
            .configure(nested_routes)
            .route("/inner", web::get().to(inner)),
    )
    .await;
    let call = get_status!(app);
    assert_eq!(call("/nested").await, StatusCode::OK);
    assert_eq!(call("/inner").await, StatusCode::OK);
    let clock = clock();
    for scope in [
        "basics::nested_routes::nested",
        "basics::a_handler_declared_in_a_function_is_scoped_under_it::{{closure}}::inner",
    ] {
        let remaining = remaining_at(&limiter, &clock, "10.0.0.1", scope, "1 per minute");
        assert_eq!(remaining, 0, "{scope}");
    }
}

/// Records the names of the spans created on the thread it is the default of.
struct SpanNames(std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>);

impl tracing::Subscriber for SpanNames {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        self.0.lock().unwrap().push(span.metadata().name());
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[get("/instrumented")]
#[limit("10 per minute")]
#[tracing::instrument]
async fn instrumented() -> &'static str {
    "ok"
}

#[actix_web::test]
async fn an_attribute_below_limit_sees_the_handlers_name() {
    // `#[tracing::instrument]` below `#[limit]` names its span after the function it is on:
    // the handler's body, which must keep the handler's name.
    let names = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let _guard = tracing::subscriber::set_default(SpanNames(names.clone()));
    let limiter = Limiter::builder().clock(clock()).build().unwrap();
    let app = test::init_service(App::new().wrap(limiter).service(instrumented)).await;
    let res = test::call_service(&app, get_from("/instrumented", "10.0.0.1").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        names.lock().unwrap().contains(&"instrumented"),
        "spans: {:?}",
        names.lock().unwrap()
    );
}
