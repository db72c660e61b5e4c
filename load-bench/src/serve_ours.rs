//! This project's limiter: a route limit (`#[limit]`) and an application limit, headers on,
//! keyed by the same client header as the other variants (through `key_header`). The
//! `memory-app` variant is configured as governor is: one application limit, charged by the
//! middleware, and a plain handler; `memory-bare` is `memory-app` without rate-limit headers,
//! `memory-ietf` with the IETF draft's headers instead of `X-RateLimit-*`.

use actix_web::{HttpResponse, web};
use limiter_actix::{Headers, Limiter, limit};

use crate::Variant;
use crate::load::Scenario;
use crate::serve::{CLIENT_HEADER, hello, route_rate};

#[limit("1000000000 per minute")]
pub async fn hello_under() -> HttpResponse {
    HttpResponse::Ok().body("hello")
}

#[limit("10 per minute")]
pub async fn hello_over() -> HttpResponse {
    HttpResponse::Ok().body("hello")
}

/// This crate's limiter for `variant`: a route limit comes from the handler's `#[limit]`,
/// except for `memory-app`, `memory-bare` and `memory-ietf`, whose one limit is the application
/// limit at the route's rate.
pub fn limiter(variant: Variant, scenario: Scenario, redis: &str) -> std::io::Result<Limiter> {
    // The others' application limit is never reached, as the route's is when under it.
    let (amount, period) = route_rate(if variant.app_limit_only() {
        scenario
    } else {
        Scenario::Under
    });
    let application = format!("{amount} per {} seconds", period.as_secs());
    let (strategy, uri) = match variant {
        Variant::MemoryFixed | Variant::MemoryApp | Variant::MemoryBare | Variant::MemoryIetf => {
            ("fixed-window", "memory://")
        }
        Variant::MemoryGcra => ("gcra", "memory://"),
        Variant::MemoryMoving => ("moving-window", "memory://"),
        Variant::RedisFixed => ("fixed-window", redis),
        Variant::RedisMoving => ("moving-window", redis),
        other => unreachable!("{other:?} is not this crate's"),
    };
    // The Redis variants share the harness's server and alternate on the same client keys:
    // under one prefix, each would find the other's state on every key (a list where a
    // window's string should be), which costs a second script call per key and round.
    let prefix = match variant {
        Variant::RedisMoving => "LIMITER-MOVING",
        _ => "LIMITER",
    };
    Limiter::builder()
        .storage_uri(uri)
        .key_prefix(prefix)
        .strategy(strategy)
        .application_limits(&application)
        .headers(match variant {
            Variant::MemoryBare => Headers::Off,
            Variant::MemoryIetf => Headers::Ietf,
            _ => Headers::XRateLimit,
        })
        .key_header(CLIENT_HEADER.as_str())
        .build()
        .map_err(std::io::Error::other)
}

/// The `/hello` route for `variant`: the plain handler where the one limit is the
/// application's, else the `#[limit]` handler of `scenario`.
pub fn hello_route(variant: Variant, scenario: Scenario) -> actix_web::Route {
    match scenario {
        _ if variant.app_limit_only() => web::get().to(hello),
        Scenario::Over => web::get().to(hello_over),
        Scenario::Under | Scenario::Many => web::get().to(hello_under),
    }
}
